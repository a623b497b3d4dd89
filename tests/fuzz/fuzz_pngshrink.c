/* fuzz_pngshrink: libFuzzer target for the PNG reader that box-averages row by row
 * (worker/pngshrink.c).
 *
 * Each input is a downloaded source as the worker hands it to pngshrink_decode() when a PNG is
 * wanted at 1/2, 1/4 or 1/8: the chunk walk (lengths, IHDR, CRCs, what is declined), the IDAT
 * data joined and inflated by libdeflate, the rows unfiltered (SSE2 Paeth, two rows at once; a
 * palette image's a byte at a time, then looked up in PLTE and tRNS; an Adam7 image's passes each
 * on its own, then put together row by row) and the running area average.
 * The input's last byte chooses the factor (2, 4 or 8), so that every factor meets every input,
 * and whether the CRCs are rewritten first (fix_crcs()).
 * max_pixels is large (50 MP) so that a small input can declare a large image (the inflated
 * buffer is allocated before inflating: libdeflate then fails on the missing data); an
 * accepted image's pixels are all read, so that a short buffer shows. Seeds
 * (tests/fuzz/seeds/fuzz_pngshrink/): tiny 8-bit RGB and RGBA PNGs (odd sizes, a 1-pixel-wide
 * one, two IDAT chunks each, gAMA/pHYs before the pixels) made with png() and pixels() of
 * tests/shrink/test_pngshrink.py, and one of each kind the reader declines (16-bit, tRNS,
 * a text chunk after IDAT), an Adam7 one made with convert and Adam7 RGB, RGBA, 2-bit palette
 * and 1-bit grey ones made with png(..., interlace=1) (adam7-*.png), palette ones of 1, 2, 4 and 8
 * bits, with and without tRNS (palette-13x9.png made with convert, the others with
 * palette_image() of the same file), grey ones of 8, 2 and 1 bits (grey_image()), grey+alpha ones,
 * plain and Adam7 (grey_alpha_image()), and RGB, RGBA and
 * palette ones whose rows use every filter type, in many IDAT chunks (filters-*.png, made with
 * png() and tie_pixels() of the same file). Built only with -Dfuzz=true (see scripts/fuzz). */
#include <libdeflate.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pngshrink.h"

#define FUZZ_MAX_PIXELS 50000000L

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rewrites the CRC of every whole chunk: a mutated chunk would almost always fail the CRC
 * check, and the fuzzer would never reach the zlib data, the filters and the average behind. */
static void fix_crcs(uint8_t *d, size_t size)
{
    for (size_t pos = 8; pos <= size && size - pos >= 12;) {
        size_t n =
            (size_t)d[pos] << 24 | (size_t)d[pos + 1] << 16 | (size_t)d[pos + 2] << 8 | d[pos + 3];
        if (n > size - pos - 12) {
            return;
        }
        uint32_t crc = libdeflate_crc32(0, d + pos + 4, n + 4);
        for (int i = 0; i < 4; i++) {
            d[pos + 8 + n + (size_t)i] = (uint8_t)(crc >> (24 - 8 * i));
        }
        pos += 12 + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pngshrink_image img;
    const char *why = NULL;
    unsigned last = size > 0 ? data[size - 1] : 0;
    int factor = 2 << (last % 3);
    uint8_t *copy = malloc(size + 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    if (last / 3 % 2 == 0) {
        fix_crcs(copy, size);
    }
    int rc = pngshrink_decode(copy, size, factor, FUZZ_MAX_PIXELS, 0, &img, &why);
    free(copy);
    if (rc == 0) {
        size_t n = (size_t)(img.width * img.height * img.channels);
        unsigned sum = 0;
        for (size_t i = 0; i < n; i++) {
            sum += img.pixels[i];
        }
        /* an accepted image is never empty, and a declined one always has a reason */
        if (n == 0 || (img.channels != 3 && img.channels != 4)) {
            __builtin_trap();
        }
        __asm__ volatile("" : : "r"(sum));
    } else if (why == NULL) {
        __builtin_trap();
    }
    pngshrink_free(&img);
    return 0;
}
