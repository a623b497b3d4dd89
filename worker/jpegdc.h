/* jpegdc: a progressive JPEG decoded at 1/8 of its size from its DC coefficients alone.
 *
 * At 1/8 scale libjpeg's inverse DCT of a block is its DC coefficient (jpeg_idct_1x1): the
 * value of each output pixel of a full-resolution component is DC x quantizer / 8 + 128. But
 * libjpeg keeps every coefficient of a progressive image until its last scan and
 * entropy-decodes every AC scan whatever the output scale: for a 5120x2880 4:4:4 image that
 * is 88.5 MB of coefficients and about 200 ms of Huffman decoding for a 640x360 result. A
 * progressive file puts the DC coefficients in scans of their own (first scan, then
 * refinement scans of one bit each), so this decoder reads those and skips the bytes of
 * every AC scan: one coefficient per block, a few ms, a few MB.
 *
 * The result is the image libjpeg-turbo gives at scale 1/8 (same size, ceil(width / 8) x
 * ceil(height / 8)): byte for byte for components at full resolution and for chroma halved one
 * way (4:2:2, 4:4:0), whose samples libjpeg repeats at that scale (its "fancy" upsampling is off
 * at 1/8); for chroma halved both ways (4:2:0) libjpeg decodes the chroma block with a 2x2
 * inverse DCT (a few low AC coefficients) where this decoder interpolates the DC values of
 * neighbouring blocks with a triangle filter, so those chroma values differ slightly.
 *
 * Only what it can decode as libjpeg would is accepted: 8-bit Huffman progressive (SOF2) JPEGs,
 * grey or YCbCr, each component at full or half resolution each way, DC scans complete down to
 * their last bit, and every component with an AC scan of its lowest coefficients (without one,
 * libjpeg's block smoothing would change the DC values). Anything else (baseline, arithmetic
 * coding, 12-bit, CMYK, Adobe RGB, markers libjpeg refuses, a damaged or truncated DC scan,
 * more than 1023 scans, which ImageMagick refuses) is declined, and the caller decodes the file
 * with libjpeg through ImageMagick as before. Every read is bounds-checked: the input is untrusted
 * (tests/fuzz/fuzz_jpegdc.c). */
#ifndef PIXQ_JPEGDC_H
#define PIXQ_JPEGDC_H

#include <stddef.h>

struct jpegdc_image {
    long width, height;    /* ceil(width / 8) x ceil(height / 8) of the JPEG's */
    int channels;          /* 1 (grey) or 3 (RGB) */
    unsigned char *pixels; /* width x height x channels bytes, rows top down; free() */
};

/* Decodes the `len` bytes at `data` at 1/8 scale into `out`. Returns 0, or -1 when the file is
 * not one this decoder takes, is larger than `max_pixels` (at full size), or memory ran out,
 * with `*why` naming the reason (a static string, for the debug log); `out` is then empty. */
int jpegdc_decode(const void *data, size_t len, long max_pixels, struct jpegdc_image *out,
                  const char **why);

/* Frees the pixels of a decoded image (a zeroed one is fine). */
void jpegdc_free(struct jpegdc_image *img);

#endif
