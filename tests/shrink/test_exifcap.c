/* test_exifcap: worker/exifcap.c on EXIF blocks built here, and ImageMagick's reading of JPEGs
 * through the worker (img_probe, img_read: exifcap on) against its plain reading of the same
 * bytes: the same exif:* properties, the same EXIF profile (the file's bytes), orientation and
 * resolution. Arguments: JPEG files to compare as well (the corpus, the test images). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/check.h"
#include "buf.h"
#include "cfg.h"
#include "err.h"
#include "exifcap.h"
#include "image.h"
#include "shrinkio.h"

#define MAX_ENTRIES 8
#define DATA_AT     600 /* where the out-of-line values of the block built here start */

/* An IFD entry to build: values of `count` x `size` bytes (out of line when over 4). */
struct entry {
    unsigned tag, type, count, size;
    long at; /* where its values go (0: next free place; -1: past the end of the block) */
};

struct block {
    unsigned char b[64 * 1024];
    size_t len, free;
    bool be;
};

static void put(struct block *k, size_t at, uint32_t v, int n)
{
    for (int i = 0; i < n; i++) {
        k->b[at + (size_t)i] = (unsigned char)(v >> (8 * (k->be ? n - 1 - i : i)));
    }
}

/* The IFD at `at` (TIFF offset; the block's byte 6 + at) with its entries and values; `next`
 * is the next IFD's offset. Returns the offset of each entry's count field in `counts`. */
static void ifd(struct block *k, size_t at, const struct entry *e, int n, uint32_t next,
                size_t *counts)
{
    unsigned char *t = k->b + 6;
    put(k, 6 + at, (uint32_t)n, 2);
    for (int i = 0; i < n; i++) {
        size_t q = at + 2 + 12 * (size_t)i, bytes = (size_t)e[i].count * e[i].size;
        put(k, 6 + q, e[i].tag, 2);
        put(k, 6 + q + 2, e[i].type, 2);
        put(k, 6 + q + 4, e[i].count, 4);
        counts[i] = 6 + q + 4;
        size_t v = e[i].at > 0 ? (size_t)e[i].at : k->free;
        if (bytes <= 4) {
            put(k, 6 + q + 8, 6, (int)bytes);
            continue;
        }
        put(k, 6 + q + 8, e[i].at < 0 ? 0x7fff0000u : (uint32_t)v, 4);
        for (size_t j = 0; e[i].at >= 0 && j < bytes; j++) {
            t[v + j] = e[i].type == 2 ? (unsigned char)('a' + j % 26) : (unsigned char)(j * 7);
        }
        if (e[i].at == 0) {
            k->free += bytes + (bytes & 1);
        }
    }
    put(k, 6 + at + 2 + 12 * (size_t)n, next, 4);
}

/* An EXIF block: IFD0 (a long BYTE array, a long ASCII string, orientation 6, XResolution, the
 * EXIF pointer), IFD1 (a long SHORT array), and the EXIF IFD (a maker note of 5000 bytes, a
 * user comment under the limit, an array whose values lie past the end, a long RATIONAL array).
 * With `overlap`, IFD0's BYTE array's values cover the EXIF IFD's table. `counts` gets the
 * offsets of the count fields of the four arrays that can be shortened. */
static void build(struct block *k, bool be, bool overlap, size_t counts[4])
{
    memset(k, 0, sizeof *k);
    k->be = be;
    k->free = DATA_AT;
    memcpy(k->b, "Exif\0\0", 6);
    memcpy(k->b + 6, be ? "MM" : "II", 2);
    put(k, 8, 0x2a, 2);
    put(k, 10, 8, 4);
    size_t c0[MAX_ENTRIES], c1[MAX_ENTRIES], c2[MAX_ENTRIES];
    const struct entry ifd0[] = {{0x02bc, 1, 3000, 1, overlap ? 300 : 0},
                                 {0x010f, 2, 2000, 1, 0},
                                 {0x0112, 3, 1, 2, 0},
                                 {0x011a, 5, 1, 8, 0},
                                 {0x8769, 4, 1, 4, 0}};
    const struct entry ifd1[] = {{0x0141, 3, 1500, 2, 0}};
    const struct entry exif[] = {{0x927c, 7, 5000, 1, 0},
                                 {0x9286, 7, 1000, 1, 0},
                                 {0xa420, 7, 3000, 1, -1},
                                 {0x9204, 10, 1500, 8, 0},
                                 {0x9003, 2, 20, 1, 0}};
    ifd(k, 8, ifd0, 5, 200, c0);
    put(k, 6 + 8 + 2 + 12 * 4 + 8, 300, 4); /* the EXIF pointer's value */
    ifd(k, 200, ifd1, 1, 0, c1);
    ifd(k, 300, exif, 5, 0, c2);
    k->len = 6 + k->free;
    counts[0] = c0[0];
    counts[1] = c1[0];
    counts[2] = c2[0];
    counts[3] = c2[3];
}

/* A small baseline JPEG made by ImageMagick with `app1` (n bytes) inserted after SOI. */
static unsigned char *jpeg_with(const unsigned char *app1, size_t n, size_t *len)
{
    MagickWand *w = NewMagickWand();
    PixelWand *grey = NewPixelWand();
    PixelSetColor(grey, "#808080");
    MagickNewImage(w, 64, 48, grey);
    MagickSetImageFormat(w, "JPEG");
    size_t jn = 0;
    unsigned char *j = MagickGetImageBlob(w, &jn);
    unsigned char *out = malloc(jn + n + 4);
    memcpy(out, j, 2);
    out[2] = 0xff;
    out[3] = 0xe1;
    out[4] = (unsigned char)((n + 2) >> 8);
    out[5] = (unsigned char)(n + 2);
    memcpy(out + 6, app1, n);
    memcpy(out + 6 + n, j + 2, jn - 2);
    *len = jn + n + 4;
    MagickRelinquishMemory(j);
    DestroyPixelWand(grey);
    DestroyMagickWand(w);
    return out;
}

static uint32_t count_at(const unsigned char *p, bool be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* exifcap_prepare() on the block built with `be` and `overlap`: which counts are lowered. */
static void check_block(bool be, bool overlap)
{
    struct block k;
    size_t counts[4], len;
    build(&k, be, overlap, counts);
    unsigned char *jpeg = jpeg_with(k.b, k.len, &len);
    struct exifcap c;
    CHECK_INT(exifcap_prepare(jpeg, len, &c), 0);
    CHECK(c.copy != NULL);
    CHECK_INT(c.fixes, overlap ? 2 : 4); /* with the overlap, the EXIF IFD's arrays stay */
    const unsigned char *p = c.copy != NULL ? c.copy + c.payload : jpeg + 6;
    const uint32_t want[4] = {EXIFCAP_KEEP, EXIFCAP_KEEP, overlap ? 5000 : EXIFCAP_KEEP,
                              overlap ? 1500 : EXIFCAP_KEEP};
    for (int i = 0; i < 4; i++) {
        CHECK_INT(count_at(p + counts[i], be), want[i]);
    }
    CHECK_INT(count_at(p + counts[2] + 12, be), 1000); /* under the limit */
    CHECK_INT(count_at(p + counts[2] + 24, be), 3000); /* values past the end */
    unsigned char profile[sizeof k.b];
    memcpy(profile, p, k.len);
    CHECK(!exifcap_restore(&c, profile, k.len - 1));
    CHECK(exifcap_restore(&c, profile, k.len));
    CHECK(memcmp(profile, k.b, k.len) == 0);
    profile[0] ^= 1;
    CHECK(!exifcap_restore(&c, profile, k.len));
    exifcap_free(&c);
    free(jpeg);
}

/* Two APP1 "exif" segments (ImageMagick joins them), a damaged IFD0 offset, a cut file: no
 * copy. */
static void check_left_alone(void)
{
    struct block k;
    size_t counts[4], len, len2;
    build(&k, false, false, counts);
    unsigned char *one = jpeg_with(k.b, k.len, &len);
    size_t seg = 4 + k.len; /* the APP1 segment after SOI */
    unsigned char *two = malloc(len + seg);
    memcpy(two, one, 2 + seg);
    memcpy(two + 2 + seg, one + 2, len - 2);
    struct exifcap c;
    CHECK_INT(exifcap_prepare(two, len + seg, &c), 0);
    CHECK(c.copy == NULL);
    put(&k, 10, 0x7fffffff, 4);
    unsigned char *bad = jpeg_with(k.b, k.len, &len2);
    CHECK_INT(exifcap_prepare(bad, len2, &c), 0);
    CHECK(c.copy == NULL);
    CHECK_INT(exifcap_prepare(one, 100, &c), 0); /* cut inside the APP1 */
    CHECK(c.copy == NULL);
    CHECK_INT(exifcap_prepare(one, len, &c), 0);
    CHECK(c.copy != NULL);
    exifcap_free(&c);
    free(one);
    free(two);
    free(bad);
}

/* What exifcap could change in a read: the exif:* properties, the EXIF profile, orientation
 * and resolution, as text. */
static char *describe(MagickWand *w)
{
    struct buf b;
    buf_init(&b, 0);
    size_t n = 0;
    char **names = MagickGetImageProperties(w, "exif:*", &n);
    for (size_t i = 0; i < n; i++) {
        char *v = MagickGetImageProperty(w, names[i]);
        buf_printf(&b, "%s=%s\n", names[i], v != NULL ? v : "(null)");
        MagickRelinquishMemory(v);
        MagickRelinquishMemory(names[i]);
    }
    MagickRelinquishMemory(names);
    size_t plen = 0;
    unsigned char *profile = MagickGetImageProfile(w, "exif", &plen);
    uint64_t h = 14695981039346656037u; /* FNV-1a of the profile's bytes */
    for (size_t i = 0; i < plen; i++) {
        h = (h ^ profile[i]) * 1099511628211u;
    }
    buf_printf(&b, "exif profile %zu bytes, FNV-1a %016llx", plen, (unsigned long long)h);
    MagickRelinquishMemory(profile);
    double x = 0, y = 0;
    MagickGetImageResolution(w, &x, &y);
    buf_printf(&b, "\norientation %d resolution %g %g units %d\n",
               (int)MagickGetImageOrientation(w), x, y, (int)MagickGetImageUnits(w));
    return buf_take(&b);
}

/* ImageMagick's own reading of the bytes, described. */
static char *plain(const unsigned char *data, size_t len)
{
    MagickWand *w = NewMagickWand();
    char *d = MagickReadImageBlob(w, data, len) != MagickFalse ? describe(w) : NULL;
    DestroyMagickWand(w);
    return d;
}

/* The worker's reading (img_probe, then img_read at full size or at 1/8), described. */
static char *worker(const unsigned char *data, size_t len, bool eighth)
{
    struct img_probe p;
    struct err e = {{0}};
    MagickWand *w = img_probe(data, len, 100000000L, &p, &e);
    if (w != NULL && !p.decoded) {
        DestroyMagickWand(w);
        w = eighth ? img_read(data, len, &p, (p.width + 7) / 8, (p.height + 7) / 8, &e)
                   : img_read(data, len, &p, 0, 0, &e);
    }
    if (w == NULL) {
        fprintf(stderr, "worker read: %s\n", e.msg);
        return NULL;
    }
    char *d = describe(w);
    DestroyMagickWand(w);
    return d;
}

/* The worker reads `data` as ImageMagick does, at full size and at 1/8. */
static void check_same(const char *name, const unsigned char *data, size_t len)
{
    char *want = plain(data, len), *full = worker(data, len, false),
         *eighth = worker(data, len, true);
    fprintf(stderr, "%s: %zu bytes of description\n", name, want != NULL ? strlen(want) : 0);
    CHECK_STR(full, want);
    CHECK_STR(eighth, want);
    free(want);
    free(full);
    free(eighth);
}

/* `jpeg` (`*len` bytes, ending in EOI) with a small second "exif" APP1 before EOI: libjpeg reads
 * it after the scan and ImageMagick joins it to the first, so the profile it keeps is not the
 * copy's APP1 and the worker must read the file as it is. */
static unsigned char *with_trailing_exif(const unsigned char *jpeg, size_t *len)
{
    static const unsigned char app1[] = {0xff, 0xe1, 0, 22, 'E', 'x', 'i', 'f', 0, 0, 'I', 'I',
                                         42,   0,    8, 0,  0,   0,   0,   0,   0, 0, 0,   0};
    unsigned char *out = malloc(*len + sizeof app1);
    memcpy(out, jpeg, *len - 2);
    memcpy(out + *len - 2, app1, sizeof app1);
    memcpy(out + *len - 2 + sizeof app1, jpeg + *len - 2, 2);
    *len += sizeof app1;
    return out;
}

static void check_built(bool be, bool overlap)
{
    struct block k;
    size_t counts[4], len;
    build(&k, be, overlap, counts);
    unsigned char *jpeg = jpeg_with(k.b, k.len, &len);
    check_same(be ? "built, big-endian" : "built, little-endian", jpeg, len);
    char *d = plain(jpeg, len);
    CHECK(d != NULL && strstr(d, "exif:MakerNote=0, 7, 14, 21") != NULL);
    CHECK(d != NULL && strstr(d, "orientation 6") != NULL);
    CHECK(d != NULL && strstr(d, "exif profile 0 bytes") == NULL);
    free(d);
    unsigned char *two = with_trailing_exif(jpeg, &len);
    check_same("built, a second EXIF block after the scan", two, len);
    free(two);
    free(jpeg);
}

/* --seeds DIR: writes the JPEGs built here to DIR (the seeds of tests/fuzz/fuzz_exifcap). */
static int write_seeds(const char *dir)
{
    for (int v = 0; v < 4; v++) {
        struct block k;
        size_t counts[4], len;
        build(&k, v & 1, v & 2, counts);
        unsigned char *jpeg = jpeg_with(k.b, k.len, &len);
        char path[4096];
        snprintf(path, sizeof path, "%s/built-%s%s.jpg", dir, v & 1 ? "be" : "le",
                 v & 2 ? "-overlap" : "");
        FILE *f = fopen(path, "wb");
        bool ok = f != NULL && fwrite(jpeg, 1, len, f) == len;
        ok = f != NULL && fclose(f) == 0 && ok;
        free(jpeg);
        if (!ok) {
            fprintf(stderr, "test_exifcap: cannot write %s\n", path);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct cfg cfg;
    if (shrinkio_start("test_exifcap", &cfg) < 0) {
        return 1;
    }
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0) {
        int rc = write_seeds(argv[2]);
        img_shutdown();
        return rc;
    }
    for (int be = 0; be <= 1; be++) {
        check_block(be, false);
        check_block(be, true);
        check_built(be, false);
        check_built(be, true);
    }
    check_left_alone();
    for (int i = 1; i < argc; i++) {
        size_t len = 0;
        unsigned char *data = shrinkio_slurp(argv[i], &len);
        check_same(argv[i], data, len);
        free(data);
    }
    img_shutdown();
    return check_summary("exifcap");
}
