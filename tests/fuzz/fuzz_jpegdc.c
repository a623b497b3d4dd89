/* fuzz_jpegdc: libFuzzer target for the progressive JPEG DC decoder (worker/jpegdc.c).
 *
 * Each input is a downloaded source as the worker hands it to jpegdc_decode() when a JPEG is
 * wanted at 1/8: markers, tables, frame and scan headers, the DC scans' Huffman and refinement
 * bits with their restart markers, the skipped AC scans, then the upsampling and colour
 * conversion of what it accepts. max_pixels is large (50 MP) so that a small input can declare a
 * large frame (its block grids are allocated before any scan); an accepted image's pixels are all
 * read, so that a short buffer shows (unwritten bytes are valgrind's: tests/tools/jpegdc-dump).
 * Seeds (tests/fuzz/seeds/fuzz_jpegdc/): tiny progressive JPEGs made with `cjpeg -progressive
 * -quality 80` from noisy 37x29, 20x9 (PPM) and 23x17 (PGM) images: -sample 1x1, 2x2, 2x1, 1x2
 * and -grayscale, some with -restart 1B, and the dc-sa ones with a -scans script that sends each
 * component's DC in a scan of its own with successive approximation (Al=2, then two one-bit
 * refinements) among AC scans; dc-only.jpg (one DC scan: libjpeg smooths it, so it is declined)
 * and mcu-12-blocks.jpg (p444.jpg with every component's sampling patched to 2x2, which libjpeg
 * refuses in an interleaved scan). Built only with -Dfuzz=true (see scripts/fuzz). */
#include <stddef.h>
#include <stdint.h>

#include "jpegdc.h"

#define FUZZ_MAX_PIXELS 50000000L

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jpegdc_image img;
    const char *why = NULL;
    if (jpegdc_decode(data, size, FUZZ_MAX_PIXELS, &img, &why) == 0) {
        size_t n = (size_t)(img.width * img.height * img.channels);
        unsigned sum = 0;
        for (size_t i = 0; i < n; i++) {
            sum += img.pixels[i];
        }
        /* an accepted image is never empty, and a declined one always has a reason */
        if (n == 0 || (img.channels != 1 && img.channels != 3)) {
            __builtin_trap();
        }
        __asm__ volatile("" : : "r"(sum));
    } else if (why == NULL) {
        __builtin_trap();
    }
    jpegdc_free(&img);
    return 0;
}
