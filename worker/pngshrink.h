/* pngshrink: a PNG decoded by libpng row by row and box-averaged on the fly to 1/2, 1/4 or 1/8.
 *
 * ImageMagick reads a PNG whole into its 16-bit pixel cache (66 MB for 3840x2160) before
 * shrink-on-load box-filters it (process.c). This reader keeps one decoded row and one row of
 * sums: each output pixel is the mean of its factor x factor box of source pixels (the boxes at
 * the right and bottom edges, cut short, over the pixels they have), rounded to nearest; with
 * alpha, the colour is weighted by alpha (premultiplied, then divided back; a fully transparent
 * box gives 0,0,0,0), as ImageMagick's scale does. The output is ceil(width / factor) x
 * ceil(height / factor), the size libjpeg gives at scale 1/factor.
 *
 * Only what ImageMagick would read to the same image is accepted: 8-bit RGB or RGBA (colour
 * types 2 and 6), not interlaced, no tRNS or PLTE chunk, no text chunk (tEXt, zTXt, iTXt:
 * ImageMagick's read keeps them as properties, its ping, which gives the headers, skips them),
 * and nothing but IDAT and IEND from the first IDAT on. The chunk list is walked (bounds-checked)
 * before libpng starts; anything else, and any libpng error (bad CRC, truncated data, zlib errors),
 * is declined, and the caller reads the file through ImageMagick as before. The input is untrusted
 * (tests/fuzz/fuzz_pngshrink.c). */
#ifndef PIXQ_PNGSHRINK_H
#define PIXQ_PNGSHRINK_H

#include <stddef.h>

struct pngshrink_image {
    long width, height;    /* ceil(width / factor) x ceil(height / factor) of the PNG's */
    int channels;          /* 3 (RGB) or 4 (RGBA, not premultiplied) */
    unsigned char *pixels; /* width x height x channels bytes, rows top down; free() */
};

/* Decodes the `len` bytes at `data` shrunk by `factor` (2, 4 or 8) into `out`. `deadline` is a
 * clock_mono_ms() time (0: none), checked every few dozen rows. Returns 0, or -1 when the file
 * is not one this reader takes, is damaged, is larger than `max_pixels`, the deadline passed
 * ("deadline") or memory ran out, with `*why` naming the reason (a static string, for the debug
 * log); `out` is then empty. */
int pngshrink_decode(const void *data, size_t len, int factor, long max_pixels, long deadline,
                     struct pngshrink_image *out, const char **why);

/* Frees the pixels of a decoded image (a zeroed one is fine). */
void pngshrink_free(struct pngshrink_image *img);

#endif
