/* pngshrink: a PNG inflated whole by libdeflate, unfiltered row by row and box-averaged on the
 * fly to 1/2, 1/4 or 1/8.
 *
 * ImageMagick reads a PNG whole into its 16-bit pixel cache (8 bytes a pixel: 66 MB for
 * 3840x2160) before shrink-on-load box-filters it (process.c). This reader inflates the IDAT data
 * in one call into one buffer of height x (1 + width x channels) bytes (the raw rows, 3 or 4
 * bytes a pixel: 24.9 MB for 3840x2160 RGB; a palette or grey image's 1 to 8 bits a pixel), plus
 * a copy of the compressed data when it is split over several IDAT chunks, then undoes each row's
 * filter in place (Paeth in SSE2 where the compiler targets it, two Paeth rows at once; a
 * palette or grey image's rows a byte at a time, each then looked up in the palette, or in the
 * grey levels scaled to 8 bits as libpng does, into a row of RGB or RGBA pixels) and adds it to a
 * row of sums. The output is ceil(width / factor) x ceil(height / factor), the size libjpeg gives
 * at scale 1/factor, and each output pixel is the area average of the source under it, the whole
 * picture at one scale: a source pixel weighs its overlap with the output pixel (when a side is a
 * multiple of the factor, every box is factor pixels of weight 1 along it; else a box is side /
 * ceil(side / factor) pixels, its edge pixels counted in part), rounded to nearest; with alpha, the
 * colour is weighted by alpha (premultiplied, then divided back; a fully transparent box gives
 * 0,0,0,0), as ImageMagick's scale does.
 *
 * Only what ImageMagick would read to the same image is accepted: 8-bit RGB or RGBA (colour
 * types 2 and 6, without a tRNS or PLTE chunk) or a palette of 1, 2, 4 or 8 bits (colour type 3:
 * one PLTE chunk of at most 2^depth colours, an optional tRNS chunk of at most as many alphas
 * after it, both before IDAT; with tRNS the pixels are RGBA, else RGB; an index past the
 * palette's colours is declined once met), grey of 1, 2, 4 or 8 bits (colour type 0, without
 * tRNS or PLTE: RGB pixels of equal samples) or 8-bit grey+alpha (colour type 4, without tRNS or
 * PLTE: RGBA pixels of equal colour samples), not interlaced or Adam7 (interlace method 1: the
 * seven passes inflated whole as the rows are, each pass unfiltered as an image of its own, then
 * each row of the image put together from them into one row buffer and averaged as above), and
 * nothing but IDAT, text chunks and IEND from the first IDAT on (the IDAT chunks one after
 * another).
 *
 * Text: ImageMagick's read keeps each tEXt and zTXt chunk, before or after the image data, as a
 * property (its ping, which gives the rest of the headers, skips them), and has libpng skip
 * iTXt. This reader gives those properties as ImageMagick 6.9's reader sets them (`texts`: the
 * keyword, "png:" before "version" and "width"; the text, a zTXt's inflated, up to its first
 * NUL), and declines a text chunk it would treat otherwise or libpng would drop: a bad CRC, a
 * keyword empty, longer than 79 bytes or without its NUL, "Raw profile type ..." (a hex-coded
 * profile), a keyword that SetImageProperty() turns into an image setting ("density", "page",
 * "gamma"...) or that starts with "png:" (or "exif:", "xmp:"...: computed from profiles), a zTXt
 * of another compression method or with a bad zlib stream, a chunk or zTXt text over 64 KB, more
 * than PNGSHRINK_TEXTS_MAX of them. (The caller leaves out the texts whose property ImageMagick's
 * ReadImage() sets after the reader: date:create and date:modify.)
 *
 * The chunk list is walked (bounds-checked) first, and whatever libpng (ImageMagick's reader)
 * would fail on is declined too: a bad CRC in IHDR, PLTE, IDAT or IEND (or tRNS, which libpng
 * would drop), an unknown critical chunk, a chunk type that is not four letters, a chunk longer
 * than libpng takes. Then the zlib stream must be whole and good (Adler-32 included), fill the
 * rows exactly and end with the last IDAT byte (stricter than libpng, which only warns about data
 * after the stream or a bad Adler-32 once the rows are read); a stream declaring a window smaller
 * than 32 KB over more data than that is declined (libpng's zlib would refuse distances beyond it);
 * a filter type over 4 is declined. A declined file is read through ImageMagick as before, by the
 * caller. The input is untrusted (tests/fuzz/fuzz_pngshrink.c). */
#ifndef PIXQ_PNGSHRINK_H
#define PIXQ_PNGSHRINK_H

#include <stddef.h>

#define PNGSHRINK_TEXTS_MAX 64 /* most tEXt and zTXt chunks taken */

/* One text chunk as the property ImageMagick's reader sets for it (NUL-terminated). */
struct pngshrink_text {
    char *key, *value;
};

struct pngshrink_image {
    long width, height;           /* ceil(width / factor) x ceil(height / factor) of the PNG's */
    int channels;                 /* 3 (RGB) or 4 (RGBA, not premultiplied; a palette with tRNS) */
    unsigned char *pixels;        /* width x height x channels bytes, rows top down */
    struct pngshrink_text *texts; /* the tEXt and zTXt chunks' properties, in the file's order */
    size_t ntext;
};

/* Decodes the `len` bytes at `data` shrunk by `factor` (2, 4 or 8) into `out`. `deadline` is a
 * clock_mono_ms() time (0: none), checked before and after inflating and every few dozen rows.
 * Memory: the raw rows (width x height x channels bytes, fewer for a palette, and a byte a
 * row; an Adam7 image's passes a little more, and two raw rows besides: one put together, one of
 * zeros), the compressed data again when in several IDAT chunks, libdeflate's decompressor (some
 * 10 KB), three rows of sums, a row of pixels for a palette, grey or grey+alpha image, a zTXt's
 * text (64 KB at most) while it is inflated; all freed before returning but the output and the
 * texts, which the caller frees with pngshrink_free(). Returns 0, or -1 when the file is not one
 * this reader takes, is damaged, is larger than `max_pixels`, the deadline passed ("deadline") or
 * memory ran out, with `*why` naming the reason (a static string, for the debug log); `out` is
 * then empty. */
int pngshrink_decode(const void *data, size_t len, int factor, long max_pixels, long deadline,
                     struct pngshrink_image *out, const char **why);

/* Frees the pixels and texts of a decoded image (a zeroed one is fine). */
void pngshrink_free(struct pngshrink_image *img);

#endif
