/* fuzz_exifcap: libFuzzer target for the EXIF count shortening (worker/exifcap.c).
 *
 * Each input is a downloaded JPEG as the worker hands it to exifcap_prepare() before ImageMagick
 * reads it: the marker walk to the one "exif" APP1, the TIFF header, the IFD walk (pointers, next
 * links, loops, values past the end) and the overlap checks. A copy may differ from the input only
 * in the count fields it lists, each now EXIFCAP_KEEP and once larger, and exifcap_restore() on
 * the copy's payload must give the input's bytes back. Seeds (tests/fuzz/seeds/fuzz_exifcap/):
 * the markers of corpus and test JPEGs up to their first scan (cups' EXIF has a 35 KB maker
 * note), and the EXIF blocks test_exifcap builds. The same input goes through metaguard's
 * measures of the EXIF work ImageMagick would do (worker/metaguard.c): a limit either changes
 * nothing or is exceeded. Built only with -Dfuzz=true (scripts/fuzz). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exifcap.h"
#include "metaguard.h"

#define COST_LIMIT 5000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t read32(const unsigned char *p, bool big_endian)
{
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* The copy is the input but for the listed count fields, each lowered to EXIFCAP_KEEP. */
static void check_copy(const uint8_t *data, size_t size, const struct exifcap *c)
{
    if (c->len != size || c->fixes <= 0 || c->payload + c->payload_len > size) {
        abort();
    }
    unsigned char *back = malloc(size);
    memcpy(back, c->copy, size);
    bool big_endian = c->copy[c->payload + 6] == 'M';
    for (int i = 0; i < c->fixes; i++) {
        const unsigned char *field = c->copy + c->payload + c->fix[i].at;
        if (read32(field, big_endian) != EXIFCAP_KEEP ||
            read32(c->fix[i].original, big_endian) <= EXIFCAP_KEEP) {
            abort();
        }
    }
    if (!exifcap_restore(c, back + c->payload, c->payload_len) || memcmp(back, data, size) != 0) {
        abort();
    }
    free(back);
}

/* Counting to a limit gives the full count when that is within it, and more than it when not. */
static void check_cost(uint64_t (*cost)(const unsigned char *, size_t, uint64_t),
                       const uint8_t *data, size_t size)
{
    uint64_t full = cost(data, size, UINT64_MAX), capped = cost(data, size, COST_LIMIT);
    if (full <= COST_LIMIT ? capped != full : capped <= COST_LIMIT) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_cost(metaguard_exif_cost, data, size);
    uint64_t exif, xmp, capped, capped_xmp;
    metaguard_8bim_cost(data, size, UINT64_MAX, &exif, &xmp);
    metaguard_8bim_cost(data, size, COST_LIMIT, &capped, &capped_xmp);
    if ((exif <= COST_LIMIT ? capped != exif : capped <= COST_LIMIT) ||
        xmp > metaguard_xmp_cost(data, size)) {
        abort();
    }
    struct exifcap c;
    if (exifcap_prepare(data, size, &c) == 0 && c.copy != NULL) {
        check_copy(data, size, &c);
    }
    exifcap_free(&c);
    return 0;
}
