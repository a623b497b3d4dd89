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

/* An empty block: the TIFF header, IFD0 at `ifd0`. */
static void start(struct block *k, bool be, uint32_t ifd0)
{
    memset(k, 0, sizeof *k);
    k->be = be;
    k->free = DATA_AT;
    memcpy(k->b, "Exif\0\0", 6);
    memcpy(k->b + 6, be ? "MM" : "II", 2);
    put(k, 8, 0x2a, 2);
    put(k, 10, ifd0, 4);
}

/* An EXIF block: IFD0 (a long BYTE array, a long ASCII string, orientation 6, XResolution, the
 * EXIF pointer), IFD1 (a long SHORT array), and the EXIF IFD (a maker note of 5000 bytes, a
 * user comment under the limit, an array whose values lie past the end, a long RATIONAL array).
 * With `overlap`, IFD0's BYTE array's values cover the EXIF IFD's table. `counts` gets the
 * offsets of the count fields of the four arrays that can be shortened. */
static void build(struct block *k, bool be, bool overlap, size_t counts[4])
{
    start(k, be, 8);
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

/* How many counts exifcap_prepare() lowers in `jpeg` (0 when it makes no copy). */
static int fixes_in(const unsigned char *jpeg, size_t len)
{
    struct exifcap c;
    CHECK_INT(exifcap_prepare(jpeg, len, &c), 0);
    int n = c.copy != NULL ? c.fixes : 0;
    exifcap_free(&c);
    return n;
}

/* The same for the block `k` in a JPEG. */
static int fixes_of(const struct block *k)
{
    size_t len;
    unsigned char *jpeg = jpeg_with(k->b, k->len, &len);
    int n = fixes_in(jpeg, len);
    free(jpeg);
    return n;
}

/* A block whose IFD0 holds `e` (n entries) and points to IFD0 again or to no next IFD, without
 * its last `cut` bytes. */
static int fixes_ifd0_cut(bool be, const struct entry *e, int n, uint32_t next, size_t cut)
{
    struct block k;
    size_t counts[MAX_ENTRIES];
    start(&k, be, 8);
    ifd(&k, 8, e, n, next, counts);
    k.len = 6 + k.free - cut;
    return fixes_of(&k);
}

static int fixes_ifd0(bool be, const struct entry *e, int n, uint32_t next)
{
    return fixes_ifd0_cut(be, e, n, next, 0);
}

/* A block whose IFD0 points with `tag` to an IFD at 300 holding a long BYTE array, and holds a
 * BYTE array of 8 values at `at` (0: with the other values). */
static int fixes_pointed(bool be, unsigned tag, long at)
{
    struct block k;
    size_t c0[MAX_ENTRIES], c1[MAX_ENTRIES];
    start(&k, be, 8);
    const struct entry ifd0[] = {{tag, 4, 1, 4, 0}, {0x0100, 1, 8, 1, at}};
    const struct entry sub[] = {{0x927c, 7, 5000, 1, 0}};
    ifd(&k, 8, ifd0, 2, 0, c0);
    put(&k, c0[0] + 4, 300, 4);
    ifd(&k, 300, sub, 1, 0, c1);
    k.len = 6 + k.free;
    return fixes_of(&k);
}

/* IFD0 the last bytes of the block: the EXIF pointer its last entry, or (with `next`) an entry
 * and the offset of IFD1 its last 4 bytes; the IFD it leads to holds a long BYTE array. */
static int fixes_at_end(bool be, bool next)
{
    struct block k;
    size_t c0[MAX_ENTRIES], c1[MAX_ENTRIES];
    start(&k, be, 0);
    const struct entry sub[] = {{0x927c, 7, 5000, 1, 0}};
    ifd(&k, 100, sub, 1, 0, c1);
    size_t at = k.free;
    put(&k, 10, (uint32_t)at, 4);
    const struct entry ptr[] = {{0x8769, 4, 1, 4, 0}};
    const struct entry plain[] = {{0x0112, 3, 1, 2, 0}};
    ifd(&k, at, next ? plain : ptr, 1, next ? 100 : 0, c0);
    if (!next) {
        put(&k, c0[0] + 4, 100, 4);
    }
    k.len = 6 + at + 2 + 12 + (next ? 4 : 0);
    return fixes_of(&k);
}

/* What ImageMagick stops at, where an array's values and the IFDs lie: the counts lowered. */
static void check_walk(void)
{
    for (int be = 0; be <= 1; be++) {
        /* an entry of no type (0, 13) or of more than 0x7fffffff values ends its IFD */
        const struct entry big = {0x02bc, 1, 3000, 1, 0};
        const struct entry type0[] = {{0x0100, 0, 2000, 1, 0}, big};
        const struct entry type13[] = {{0x0100, 13, 2000, 4, 0}, big};
        const struct entry over[] = {{0x0100, 1, 0x80000000u, 1, -1}, big};
        const struct entry most[] = {{0x0100, 1, 0x7fffffffu, 1, -1}, big};
        CHECK_INT(fixes_ifd0(be, type0, 2, 0), 0);
        CHECK_INT(fixes_ifd0(be, type13, 2, 0), 0);
        CHECK_INT(fixes_ifd0(be, over, 2, 0), 0);
        CHECK_INT(fixes_ifd0(be, most, 2, 0), 1);
        /* EXIFCAP_KEEP values stay as they are; values up to the block's last byte are read */
        const struct entry keep[] = {{0x02bc, 1, EXIFCAP_KEEP, 1, 0}};
        const struct entry more[] = {{0x02bc, 1, EXIFCAP_KEEP + 2, 1, 0}};
        CHECK_INT(fixes_ifd0(be, keep, 1, 0), 0);
        CHECK_INT(fixes_ifd0(be, more, 1, 0), 1);
        CHECK_INT(fixes_ifd0(be, &big, 1, 0), 1);
        /* values that end one byte past the block are not (ImageMagick skips the entry), nor
         * SRATIONALs taken for 4 bytes each: 1500 of them (12,000 bytes) in 6,000 */
        CHECK_INT(fixes_ifd0_cut(be, &big, 1, 0, 1), 0);
        const struct entry srational[] = {{0x9204, 10, 1500, 4, 0}};
        CHECK_INT(fixes_ifd0(be, srational, 1, 0), 0);
        /* an IFD that is its own next IFD is walked once */
        CHECK_INT(fixes_ifd0(be, &big, 1, 8), 1);
        /* the EXIF, GPS and interoperability pointers are followed */
        CHECK_INT(fixes_pointed(be, 0x8769, 0), 1);
        CHECK_INT(fixes_pointed(be, 0x8825, 0), 1);
        CHECK_INT(fixes_pointed(be, 0xa005, 0), 1);
        CHECK_INT(fixes_pointed(be, 0x0131, 0), 0);
        /* values whose last byte is the count's first, or whose first is its last, hold it;
         * values just after it do not (the count field is the IFD's at 300 + 6) */
        CHECK_INT(fixes_pointed(be, 0x8769, 299), 0);
        CHECK_INT(fixes_pointed(be, 0x8769, 309), 0);
        CHECK_INT(fixes_pointed(be, 0x8769, 310), 1);
        /* an IFD that ends the block, with its last entry or the offset of the next IFD */
        CHECK_INT(fixes_at_end(be, false), 1);
        CHECK_INT(fixes_at_end(be, true), 1);
    }
    /* A count field that is also the offset of another IFD's next IFD stays: IFD0 (at 8) holds
     * the EXIF pointer to 28 and a LONG whose count's last 2 bytes are the EXIF IFD's number of
     * entries (1), whose value is its entry's tag and type (0x0100, SHORT); that entry's count
     * is IFD0's next-IFD offset (2000), its 4000 bytes of values at 100. Big-endian only. */
    struct block k;
    start(&k, true, 8);
    put(&k, 6 + 8, 2, 2);
    const uint32_t words[][3] = {{0x8769, 4, 1}, {0x0131, 4, 1}};
    for (int i = 0; i < 2; i++) {
        put(&k, 6 + 10 + 12 * (size_t)i, words[i][0], 2);
        put(&k, 6 + 12 + 12 * (size_t)i, words[i][1], 2);
        put(&k, 6 + 14 + 12 * (size_t)i, words[i][2], 4);
    }
    put(&k, 6 + 18, 28, 4);
    put(&k, 6 + 30, 0x01000003, 4);
    put(&k, 6 + 34, 2000, 4);
    put(&k, 6 + 38, 100, 4);
    k.len = 6 + 4100;
    CHECK_INT(fixes_of(&k), 0);
}

/* IFD0 with `n` entries: `small` BYTE arrays of 8 values out of line (a region each), then
 * EXIF pointers to the IFD at 200 that holds one long BYTE array, then long BYTE arrays. */
static int fixes_many(int small, int pointers, int big)
{
    static struct entry e[600];
    static size_t counts[600];
    struct block k;
    int n = 0;
    start(&k, false, 8);
    k.free = 8 + 2 + 12 * (size_t)(small + pointers + big) + 4 + 300;
    for (int i = 0; i < small; i++) {
        e[n++] = (struct entry){0x0100, 1, 8, 1, 0};
    }
    for (int i = 0; i < pointers; i++) {
        e[n++] = (struct entry){0x8769, 4, 1, 4, 0};
    }
    for (int i = 0; i < big; i++) {
        e[n++] = (struct entry){0x02bc, 1, EXIFCAP_KEEP + 2, 1, 0};
    }
    ifd(&k, 8, e, n, 0, counts);
    size_t sub = 8 + 2 + 12 * (size_t)n + 4 + 100;
    for (int i = small; i < small + pointers; i++) {
        put(&k, counts[i] + 4, (uint32_t)sub, 4);
    }
    const struct entry one[] = {{0x927c, 7, 5000, 1, 0}};
    ifd(&k, sub, one, 1, 0, counts);
    k.len = 6 + k.free;
    return fixes_of(&k);
}

/* IFD0 and `n` - 1 IFDs after it, each the next of the one before; the last holds a long BYTE
 * array. */
static int fixes_chain(int n)
{
    struct block k;
    size_t counts[MAX_ENTRIES];
    start(&k, false, 8);
    const struct entry plain[] = {{0x0112, 3, 1, 2, 0}};
    const struct entry big[] = {{0x02bc, 1, 3000, 1, 0}};
    for (int i = 0; i < n; i++) {
        size_t at = 8 + 20 * (size_t)i;
        ifd(&k, at, i < n - 1 ? plain : big, 1, i < n - 1 ? (uint32_t)at + 20 : 0, counts);
    }
    k.len = 6 + k.free;
    return fixes_of(&k);
}

/* The limits of a walk (16 IFDs, 64 waiting, 512 regions) are reached, not passed; the first 32
 * long arrays are shortened. */
static void check_limits(void)
{
    CHECK_INT(fixes_chain(16), 1);
    CHECK_INT(fixes_chain(17), 0);
    CHECK_INT(fixes_many(0, 64, 0), 1);
    CHECK_INT(fixes_many(0, 65, 0), 0);
    CHECK_INT(fixes_many(510, 0, 1), 1); /* IFD0's table, 510 arrays, the long one's values */
    CHECK_INT(fixes_many(511, 0, 1), 0);
    CHECK_INT(fixes_many(0, 0, 33), EXIFCAP_FIXES);
}

/* `jpeg` with `n` bytes inserted at `at`. */
static unsigned char *spliced(const unsigned char *jpeg, size_t len, size_t at, const char *bytes,
                              size_t n)
{
    unsigned char *out = malloc(len + n);
    memcpy(out, jpeg, at);
    memcpy(out + at, bytes, n);
    memcpy(out + at + n, jpeg + at, len - at);
    return out;
}

/* The markers before the EXIF block: those without a length (TEM, RST, SOI) are stepped over,
 * EOI ends the walk; an APP1 of 4 bytes "Exif" is no EXIF profile, one "EXIF..." is another. A
 * byte where a marker should start, the block cut by one byte, and a TIFF header that is not 42
 * leave it alone. */
static void check_markers(void)
{
    struct block k;
    size_t counts[4], len;
    build(&k, false, false, counts);
    unsigned char *one = jpeg_with(k.b, k.len, &len);
    const struct {
        const char *bytes;
        size_t n;
        int fixes;
    } cases[] = {{"\xff\x01", 2, 4},
                 {"\xff\xd0", 2, 4},
                 {"\xff\xd8", 2, 4},
                 {"\xff\xd9\x00\x02", 4, 0},
                 {"\xff\xe1\x00\x06\x45xif", 8, 4},
                 {"\xff\xe1\x00\x08\x45XIF\0\0", 10, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *j = spliced(one, len, 2, cases[i].bytes, cases[i].n);
        CHECK_INT(fixes_in(j, len + cases[i].n), cases[i].fixes);
        free(j);
    }
    /* a byte that starts no marker after the EXIF block: damaged markers */
    unsigned char *j = spliced(one, len, 2 + 4 + k.len, "\0", 1);
    CHECK_INT(fixes_in(j, len + 1), 0);
    free(j);
    CHECK_INT(fixes_in(one, 2 + 4 + k.len), 4);
    CHECK_INT(fixes_in(one, 2 + 4 + k.len - 1), 0);
    put(&k, 8, 0x2b, 2);
    unsigned char *bad = jpeg_with(k.b, k.len, &len);
    CHECK_INT(fixes_in(bad, len), 0);
    free(bad);
    /* a segment length under 2 (its own 2 bytes) at the very end: nothing after it is read */
    for (unsigned char seg = 0; seg < 2; seg++) {
        unsigned char *end = malloc(6);
        memcpy(end, "\xff\xd8\xff\xe1\x00", 5);
        end[5] = seg;
        CHECK_INT(fixes_in(end, 6), 0);
        free(end);
    }
    free(one);
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
    check_walk();
    check_markers();
    check_limits();
    for (int i = 1; i < argc; i++) {
        size_t len = 0;
        unsigned char *data = shrinkio_slurp(argv[i], &len);
        check_same(argv[i], data, len);
        free(data);
    }
    img_shutdown();
    return check_summary("exifcap");
}
