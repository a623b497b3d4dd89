/* test_metaguard: worker/metaguard.c. The EXIF cost of blocks built here (IFDs, pointers, loops,
 * values in and out of the block, several headers, the limit), the EXIF resources of Photoshop
 * resource blocks, the metadata chunks of PNG files, and the guard itself: SetImageProfile() while
 * armed and not. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wand/MagickWand.h>
#include <zlib.h>

#include "check.h"
#include "err.h"
#include "metaguard.h"

#define BIG       UINT64_MAX
#define E         METAGUARD_ENTRY_COST /* an entry's cost */
#define BLOCK_MAX (256 * 1024)

/* A profile being built: "Exif\0\0", then a little-endian TIFF structure. */
struct block {
    unsigned char b[BLOCK_MAX];
    size_t len;
};

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* "Exif\0\0" and a TIFF header whose first IFD is at `ifd0` (TIFF offsets); `len` bytes. */
static void start(struct block *k, uint32_t ifd0, size_t len)
{
    memset(k->b, 0, sizeof k->b);
    memcpy(k->b, "Exif\0\0II*\0", 10);
    put32(k->b + 10, ifd0);
    k->len = 6 + len;
}

/* The TIFF offset `at` as a pointer into the block. */
static unsigned char *at(struct block *k, size_t off)
{
    return k->b + 6 + off;
}

/* An IFD of `n` entries at `off`, each (tag, type, count, value), and its next-IFD link. */
static void ifd(struct block *k, size_t off, int n, const uint32_t (*e)[4], uint32_t next)
{
    put16(at(k, off), (unsigned)n);
    for (int i = 0; i < n; i++) {
        unsigned char *q = at(k, off + 2 + 12 * (size_t)i);
        put16(q, e[i][0]);
        put16(q + 2, e[i][1]);
        put32(q + 4, e[i][2]);
        put32(q + 8, e[i][3]);
    }
    put32(at(k, off + 2 + 12 * (size_t)n), next);
}

static uint64_t cost(const struct block *k)
{
    return metaguard_exif_cost(k->b, k->len, BIG);
}

static void test_no_exif(void)
{
    CHECK_INT(metaguard_exif_cost(NULL, 0, BIG), 0);
    CHECK_INT(metaguard_exif_cost((const unsigned char *)"Exif\0\0", 6, BIG), 0);
    CHECK_INT(metaguard_exif_cost((const unsigned char *)"no header here, only text", 25, BIG), 0);
    struct block k;
    start(&k, 8, 100);
    memcpy(at(&k, 0), "XX", 2); /* not a byte order */
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x0112, 3, 1, 1}}, 0);
    CHECK_INT(cost(&k), 0);
    start(&k, 8, 10); /* shorter than ImageMagick reads */
    CHECK_INT(cost(&k), 0);
}

/* One IFD: 1, and each entry E plus its values: inline (SHORT x 1), out of line (ASCII x 20),
 * out of the block (RATIONAL x 100: skipped by ImageMagick), a type that is none (stops
 * ImageMagick's IFD: counted on). */
static void test_entries(void)
{
    struct block k;
    start(&k, 8, 200);
    ifd(&k, 8, 4,
        (const uint32_t[][4]){
            {0x0112, 3, 1, 6}, {0x010f, 2, 20, 100}, {0x011a, 5, 100, 120}, {0x0110, 99, 1000, 0}},
        0);
    CHECK_INT(cost(&k), 1 + 4 * E + 1 + 20);
    /* values that end exactly at the end of the block count; one byte further does not */
    start(&k, 8, 120);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 20, 100}}, 0);
    CHECK_INT(cost(&k), 1 + E + 20);
    start(&k, 8, 119);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 20, 100}}, 0);
    CHECK_INT(cost(&k), 1 + E);
    /* an IFD cut by the end of the block: the entries inside it */
    start(&k, 8, 8 + 2 + 12 + 5);
    ifd(&k, 8, 2, (const uint32_t[][4]){{0x0112, 3, 1, 6}, {0x0112, 3, 1, 6}}, 0);
    CHECK_INT(cost(&k), 1 + E + 1);
}

/* The EXIF, GPS and interoperability pointers and the next-IFD link are followed; each IFD is
 * counted once however often it is reached (a loop ends). */
static void test_pointers_and_loops(void)
{
    struct block k;
    start(&k, 8, 400);
    ifd(&k, 8, 2, (const uint32_t[][4]){{0x8769, 4, 1, 100}, {0x8825, 4, 1, 200}}, 300);
    ifd(&k, 100, 2, (const uint32_t[][4]){{0xa005, 4, 1, 150}, {0x9286, 7, 30, 350}}, 8);
    ifd(&k, 150, 1, (const uint32_t[][4]){{0x0001, 2, 4, 0}}, 150);
    ifd(&k, 200, 1, (const uint32_t[][4]){{0x0002, 5, 3, 360}}, 0);
    ifd(&k, 300, 1, (const uint32_t[][4]){{0x8769, 4, 1, 8}}, 300);
    /* five IFDs, seven entries, and the values: four pointers (1 each), the EXIF IFD's 30
     * bytes, the interoperability IFD's 4 characters, GPS's 3 fractions (x 4) */
    CHECK_INT(cost(&k), 5 + 7 * E + 1 + 1 + 1 + 30 + 4 + 12 + 1);
    /* a first IFD at offset 0 is read (its count is the byte order's "II": as many entries as
     * the block holds) */
    start(&k, 0, 8 + 2 + 12 * 3);
    CHECK_INT(cost(&k), 1 + 3 * E);
}

/* Entries sharing one value area: the attack. The cost is exact without a limit, and counting
 * stops past one; more IFDs than METAGUARD_MAX_IFDS are over any limit. */
static void test_shared_values_and_limit(void)
{
    static struct block k;
    int n = 1000;
    start(&k, 8, 8 + 2 + 12 * (size_t)n + 4 + 20000);
    uint32_t(*e)[4] = calloc((size_t)n, sizeof *e);
    for (int i = 0; i < n; i++) {
        e[i][0] = 0x9286;
        e[i][1] = 6;
        e[i][2] = 20000;
        e[i][3] = (uint32_t)(8 + 2 + 12 * n + 4);
    }
    ifd(&k, 8, n, (const uint32_t(*)[4])e, 0);
    free(e);
    CHECK_INT(cost(&k), 1 + (uint64_t)n * (E + 20000));
    uint64_t c = metaguard_exif_cost(k.b, k.len, 1000000);
    CHECK(c > 1000000 && c <= 1000000 + E + 20000);
    /* a chain of IFDs, each linking to the next */
    int chain = METAGUARD_MAX_IFDS + 10;
    start(&k, 8, 8 + 6 * (size_t)chain + 6);
    for (int i = 0; i < chain; i++) {
        ifd(&k, 8 + 6 * (size_t)i, 0, NULL, (uint32_t)(8 + 6 * (i + 1)));
    }
    CHECK(metaguard_exif_cost(k.b, k.len, 1000000) > 1000000);
    CHECK(metaguard_exif_cost(k.b, k.len, BIG) > BIG / 4);
    start(&k, 8, 8 + 6 * 100 + 6);
    for (int i = 0; i < 100; i++) {
        ifd(&k, 8 + 6 * (size_t)i, 0, NULL, (uint32_t)(8 + 6 * (i + 1)));
    }
    CHECK_INT(metaguard_exif_cost(k.b, k.len, 1000000), 101);
}

/* Every "Exif\0\0" header counts (ImageMagick reads one of them: which, depends on the bytes
 * before it). */
static void test_several_headers(void)
{
    static struct block k, two;
    start(&k, 8, 200);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 50, 100}}, 0);
    uint64_t one = cost(&k);
    CHECK_INT(one, 1 + E + 50);
    memcpy(two.b, "EExif", 5); /* a near miss first */
    memcpy(two.b + 5, k.b, k.len);
    memcpy(two.b + 5 + k.len, k.b, k.len);
    two.len = 5 + 2 * k.len;
    /* the first block runs on into the second: its entry's values still lie inside */
    CHECK_INT(metaguard_exif_cost(two.b, two.len, BIG), 2 * one);
}

/* The edges of the walk: a limit reached exactly is not past it; the block's last bytes are
 * read, one further is not; a pointer of no type, values of 5 to 8 bytes out of the block, a
 * TIFF of 16 bytes, big-endian, a wrong magic number; counting stops once past the limit. */
static void test_walk_edges(void)
{
    static struct block k;
    start(&k, 8, 100);
    ifd(&k, 8, 2, (const uint32_t[][4]){{0x0112, 3, 1, 6}, {0x0112, 3, 1, 6}}, 0);
    CHECK_INT(metaguard_exif_cost(k.b, k.len, 1 + 2 * (E + 1)), 1 + 2 * (E + 1));
    CHECK(metaguard_exif_cost(k.b, k.len, 1 + E + 1) > 1 + E + 1);
    /* next-IFD links to the block's last byte and to just past it */
    start(&k, 8, 100);
    ifd(&k, 8, 0, NULL, 99);
    CHECK_INT(cost(&k), 2);
    ifd(&k, 8, 0, NULL, 100);
    CHECK_INT(cost(&k), 1);
    /* a pointer entry ending the block, to an empty IFD at 8; a next-IFD link ending it */
    start(&k, 10, 24);
    ifd(&k, 10, 1, (const uint32_t[][4]){{0x8769, 4, 1, 8}}, 0);
    CHECK_INT(cost(&k), 1 + E + 1 + 1);
    start(&k, 10, 16);
    ifd(&k, 10, 0, NULL, 8);
    CHECK_INT(cost(&k), 2);
    /* a pointer of type 0 is not followed; 8 bytes of ASCII out of the block are skipped */
    start(&k, 8, 200);
    ifd(&k, 8, 2, (const uint32_t[][4]){{0x8769, 0, 1, 100}, {0x010f, 2, 8, 5000}}, 0);
    ifd(&k, 100, 1, (const uint32_t[][4]){{0x0112, 3, 1, 6}}, 0);
    CHECK_INT(cost(&k), 1 + 2 * E);
    /* the shortest TIFF structure ImageMagick reads */
    start(&k, 8, 16);
    ifd(&k, 8, 0, NULL, 0);
    CHECK_INT(cost(&k), 1);
    start(&k, 8, 15);
    CHECK_INT(cost(&k), 0);
    /* not 42 */
    start(&k, 8, 100);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x0112, 3, 1, 6}}, 0);
    at(&k, 2)[0] = 43;
    CHECK_INT(cost(&k), 0);
    /* big-endian ("MM"): one ASCII entry of 20 values at 100 */
    static const unsigned char mm[] = "Exif\0\0MM\0\x2a\0\0\0\x08"
                                      "\0\x01\x01\x0f\0\x02\0\0\0\x14\0\0\0\x64\0\0\0\0";
    memset(k.b, 0, sizeof k.b);
    memcpy(k.b, mm, sizeof mm - 1);
    k.len = 6 + 200;
    CHECK_INT(cost(&k), 1 + E + 20);
    /* past the limit in one of three IFDs: the other two are not walked */
    start(&k, 8, 500);
    ifd(&k, 8, 3,
        (const uint32_t[][4]){{0x8769, 4, 1, 100}, {0x8769, 4, 1, 200}, {0x8769, 4, 1, 300}}, 0);
    for (uint32_t off = 100; off <= 300; off += 100) {
        ifd(&k, off, 1, (const uint32_t[][4]){{0x010f, 2, 50, 400}}, 0);
    }
    CHECK_INT(metaguard_exif_cost(k.b, k.len, 20), 1 + 3 * (E + 1) + 1 + E + 50);
    /* more pointers than IFDs can be pending: over, even when they all lead back to one */
    int n = METAGUARD_MAX_IFDS + 1;
    start(&k, 8, 8 + 2 + 12 * (size_t)n + 4);
    uint32_t(*e)[4] = calloc((size_t)n, sizeof *e);
    for (int i = 0; i < n; i++) {
        e[i][0] = 0x8769;
        e[i][1] = 4;
        e[i][2] = 1;
        e[i][3] = 8;
    }
    ifd(&k, 8, n, (const uint32_t(*)[4])e, 0);
    free(e);
    CHECK(metaguard_exif_cost(k.b, k.len, 1000000) > 1000000);
}

/* A header right before the TIFF structure of another is found; "Exif" alone is not one. */
static void test_header_edges(void)
{
    static struct block k, two;
    start(&k, 8, 200);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 50, 100}}, 0);
    memcpy(two.b, "Exif\0\0", 6);
    memcpy(two.b + 6, k.b, k.len);
    two.len = 6 + k.len;
    CHECK_INT(metaguard_exif_cost(two.b, two.len, BIG), 1 + E + 50);
    k.b[4] = k.b[5] = 'X';
    CHECK_INT(cost(&k), 0);
}

/* A Photoshop resource block: 8BIM, id, Pascal name padded to even, size, data. */
static size_t resource(unsigned char *p, unsigned id, const char *name, const unsigned char *data,
                       size_t n)
{
    size_t q = 0, nl = strlen(name);
    memcpy(p, "8BIM", 4);
    p[4] = (unsigned char)(id >> 8);
    p[5] = (unsigned char)id;
    p[6] = (unsigned char)nl;
    memcpy(p + 7, name, nl);
    q = 7 + nl + ((nl + 1) % 2);
    p[q] = (unsigned char)(n >> 24);
    p[q + 1] = (unsigned char)(n >> 16);
    p[q + 2] = (unsigned char)(n >> 8);
    p[q + 3] = (unsigned char)n;
    memcpy(p + q + 4, data, n);
    return q + 4 + n + (n % 2);
}

static uint64_t bim_exif(const unsigned char *p, size_t n)
{
    uint64_t exif, xmp;
    metaguard_8bim_cost(p, n, BIG, &exif, &xmp);
    return exif;
}

static uint64_t bim_xmp(const unsigned char *p, size_t n)
{
    uint64_t exif, xmp;
    metaguard_8bim_cost(p, n, BIG, &exif, &xmp);
    return xmp;
}

/* Records one after the other, as ImageMagick walks them: EXIF (0x0422) and XMP (0x0424) ones
 * count, others not; the walk ends at the first that is not a record, or runs past the end. */
static void test_8bim(void)
{
    static struct block k;
    static unsigned char p[2 * BLOCK_MAX];
    start(&k, 8, 200);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 50, 100}}, 0);
    uint64_t one = cost(&k);
    const char *x = "<x:xmpmeta><a/><b/></x:xmpmeta>";
    size_t n = resource(p, 0x0404, "", (const unsigned char *)"iptc", 4);
    n += resource(p + n, 0x0422, "", k.b, k.len);
    n += resource(p + n, 0x0424, "", (const unsigned char *)x, strlen(x));
    CHECK_INT(bim_exif(p, n), one);
    CHECK_INT(bim_xmp(p, n), 3);
    /* named (padding after an even and an odd name); another id with the same data */
    n = resource(p, 0x0422, "ab", k.b, k.len);
    n += resource(p + n, 0x0422, "abc", k.b, k.len);
    n += resource(p + n, 0x0405, "", k.b, k.len);
    CHECK_INT(bim_exif(p, n), 2 * one);
    /* a size past the end, and a record after something that is not one: nothing */
    n = resource(p, 0x0422, "", k.b, k.len);
    CHECK_INT(bim_exif(p, n - 10), 0);
    n = resource(p, 0x0404, "", (const unsigned char *)"iptc", 4);
    p[n++] = 'x';
    n += resource(p + n, 0x0422, "", k.b, k.len);
    CHECK_INT(bim_exif(p, n), 0);
    CHECK_INT(bim_exif(NULL, 0), 0);
    /* "8BIM" everywhere, each record claiming the rest: walked once, not once a signature */
    n = 0;
    while (n + 12 <= 100000) {
        memcpy(p + n, "8BIM\x04\x22\0\0", 8);
        uint32_t rest = (uint32_t)(100000 - n - 12);
        p[n + 8] = (unsigned char)(rest >> 24);
        p[n + 9] = (unsigned char)(rest >> 16);
        p[n + 10] = (unsigned char)(rest >> 8);
        p[n + 11] = (unsigned char)rest;
        n += 12;
    }
    CHECK_INT(bim_exif(p, n), 0);
}

/* The walk's edges: a record of 16 bytes is not read, of 17 it is; data ending the block; an
 * odd size's padding; several XMP resources add up; an unreadable one ends the walk, as does
 * EXIF past the limit; the limit counts as UINT64_MAX / 4 at most. */
static void test_8bim_edges(void)
{
    static struct block k;
    static unsigned char p[2 * BLOCK_MAX];
    uint64_t exif, xmp;
    size_t n = resource(p, 0x0424, "", (const unsigned char *)"<a/>", 4);
    CHECK_INT(n, 16);
    CHECK_INT(bim_xmp(p, n), 0);
    p[n] = 0;
    CHECK_INT(bim_xmp(p, n + 1), 1);
    n = resource(p, 0x0424, "", (const unsigned char *)"<a/><b/>", 8);
    CHECK_INT(bim_xmp(p, n), 2);
    n += resource(p + n, 0x0424, "", (const unsigned char *)"<a/><b/>", 8);
    CHECK_INT(bim_xmp(p, n), 4);
    start(&k, 8, 200);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 50, 100}}, 0);
    uint64_t one = cost(&k);
    n = resource(p, 0x0404, "", (const unsigned char *)"abc", 3);
    n += resource(p + n, 0x0422, "", k.b, k.len);
    CHECK_INT(bim_exif(p, n), one);
    n = resource(p, 0x0424, "", (const unsigned char *)"<!DOCTYPE x><x/>", 16);
    n += resource(p + n, 0x0422, "", k.b, k.len);
    metaguard_8bim_cost(p, n, BIG, &exif, &xmp);
    CHECK_INT(exif, 0);
    CHECK(xmp == METAGUARD_XMP_UNREADABLE);
    n = resource(p, 0x0422, "", k.b, k.len);
    n += resource(p + n, 0x0424, "", (const unsigned char *)"<a/><b/>", 8);
    metaguard_8bim_cost(p, n, 10, &exif, &xmp);
    CHECK(exif > 10);
    CHECK_INT(xmp, 0);
    /* more IFDs than METAGUARD_MAX_IFDS, and no limit */
    int chain = METAGUARD_MAX_IFDS + 10;
    start(&k, 8, 8 + 6 * (size_t)chain + 6);
    for (int i = 0; i < chain; i++) {
        ifd(&k, 8 + 6 * (size_t)i, 0, NULL, (uint32_t)(8 + 6 * (i + 1)));
    }
    n = resource(p, 0x0422, "", k.b, k.len);
    CHECK(bim_exif(p, n) > BIG / 4);
}

/* Fractions count 4 a value. */
static void test_weights(void)
{
    struct block k;
    start(&k, 8, 400);
    ifd(&k, 8, 2, (const uint32_t[][4]){{0x011a, 5, 10, 100}, {0x9201, 10, 10, 200}}, 0);
    CHECK_INT(cost(&k), 1 + 2 * (E + 40));
    start(&k, 8, 400);
    ifd(&k, 8, 2, (const uint32_t[][4]){{0x0101, 3, 10, 100}, {0x0101, 12, 10, 200}}, 0);
    CHECK_INT(cost(&k), 1 + 2 * (E + 10));
    CHECK_INT(metaguard_xmp_cost((const unsigned char *)"<a><b/></a>", 11), 2);
    const char *xml = "<?xml version='1.0'?><!-- x --><a b='1' c=\"2\"><d/></a><";
    CHECK_INT(metaguard_xmp_cost((const unsigned char *)xml, strlen(xml)), 3);
    /* refused: a DTD, another encoding, not XML, an element of too many attributes; a '>' or
     * an '=' in an attribute's value changes nothing */
    const char *refused[] = {"<?xml version='1.0'?><!DOCTYPE x [<!ATTLIST e a CDATA 'v'>]><x/>",
                             "<?xml version='1.0' encoding='IBM037'?><x/>",
                             "<?xml version='1.0' encoding=\"UTF-7\"?><x/>", "Lo\xa7\x94"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK(metaguard_xmp_cost((const unsigned char *)refused[i], strlen(refused[i])) ==
              METAGUARD_XMP_UNREADABLE);
    }
    const char *ok = "\xef\xbb\xbf <?xml version='1.0' encoding='UTF-8'?><e a='>=' b=\"=>\"/>";
    CHECK_INT(metaguard_xmp_cost((const unsigned char *)ok, strlen(ok)), 1);
    char named[200];
    snprintf(named, sizeof named, "<%0*d/><%0*d>", METAGUARD_XMP_NAME_UNIT - 1, 0,
             2 * METAGUARD_XMP_NAME_UNIT, 0);
    CHECK_INT(metaguard_xmp_cost((const unsigned char *)named, strlen(named)), 1 + 3);
    static char many[16 * METAGUARD_XMP_ATTRIBUTES + 64];
    for (int n = METAGUARD_XMP_ATTRIBUTES; n <= METAGUARD_XMP_ATTRIBUTES + 1; n++) {
        size_t at = (size_t)snprintf(many, sizeof many, "<e");
        for (int a = 0; a < n; a++) {
            at += (size_t)snprintf(many + at, sizeof many - at, " a%d='>'", a);
        }
        snprintf(many + at, sizeof many - at, "/>");
        uint64_t c = metaguard_xmp_cost((const unsigned char *)many, strlen(many));
        CHECK(n == METAGUARD_XMP_ATTRIBUTES ? c == 1 : c == METAGUARD_XMP_UNREADABLE);
    }
    CHECK_INT(metaguard_xmp_cost(NULL, 0), 0);
}

/* What XMP is read: white space before it, UTF-16 with or without a byte-order mark, an
 * encoding declared within its first 256 bytes; each DTD declaration alone is refused; the
 * attributes are counted for each element anew; a '<' ending the packet is an element. */
static uint64_t xmp_of(const char *s, size_t n)
{
    return metaguard_xmp_cost((const unsigned char *)s, n);
}

static void test_xmp_edges(void)
{
    CHECK_INT(xmp_of("\r\n\t <a/>", 8), 1);
    CHECK_INT(xmp_of("\xff\xfe<\0a\0/\0>\0", 10), 1);
    CHECK_INT(xmp_of("\0<\0a\0/\0>", 9), 1);
    char decl[512];
    snprintf(decl, sizeof decl, "<?xml version='1.0'%100s encoding='IBM037'?><x/>", "");
    CHECK(xmp_of(decl, strlen(decl)) == METAGUARD_XMP_UNREADABLE);
    CHECK_INT(xmp_of("<?xml version='1.0' encoding='utf-8", 35), 0);
    /* libxml2 reads a declaration's encoding with white space around its '=', however far
     * white space pushes it: UTF-7 hides a '<' as "+ADw-" */
    const char *utf7 = "<?xml version='1.0' encoding = 'UTF-7'?>+ADw-x/+AD4-";
    CHECK(xmp_of(utf7, strlen(utf7)) == METAGUARD_XMP_UNREADABLE);
    CHECK_INT(xmp_of("<?xml version='1.0' encoding\t=\n\"UTF-8\"?><x/>", 42), 1);
    for (int bad = 0; bad < 2; bad++) {
        snprintf(decl, sizeof decl, "<?xml version='1.0'%240s encoding='%s'?><x/>", "",
                 bad ? "UTF-7" : "UTF-8");
        CHECK(xmp_of(decl, strlen(decl)) == (bad ? METAGUARD_XMP_UNREADABLE : 1));
    }
    CHECK_INT(xmp_of("<x>encoding</x>", 15), 1);
    CHECK_INT(xmp_of("<?xml version='1.0' encoding=utf-8?><x/>", 40), 1); /* unquoted: read */
    /* the encodings like ASCII (its '<', '=' and quotes), as their names begin, are read */
    const char *like[] = {"UTF-8", "utf8",        "UTF-16", "UTF-32",       "US-ASCII",
                          "ascii", "ISO-8859-15", "latin1", "windows-1252", "CP1252"};
    for (size_t i = 0; i < sizeof like / sizeof like[0]; i++) {
        snprintf(decl, sizeof decl, "<?xml version='1.0' encoding='%s'?><x/>", like[i]);
        CHECK_INT(xmp_of(decl, strlen(decl)), 1);
    }
    snprintf(decl, sizeof decl, "\xef\xbb\xbf<?xml version='1.0'%240s encoding='UTF-7'?><x/>", "");
    CHECK(xmp_of(decl, strlen(decl)) == METAGUARD_XMP_UNREADABLE);
    const char *dtd[] = {"<!DOCTYPE x><x/>", "<!ATTLIST e a CDATA 'v'><x/>", "<!ENTITY e 'v'><x/>"};
    for (size_t i = 0; i < sizeof dtd / sizeof dtd[0]; i++) {
        CHECK(xmp_of(dtd[i], strlen(dtd[i])) == METAGUARD_XMP_UNREADABLE);
    }
    static char two[2 * 12 * METAGUARD_XMP_ATTRIBUTES];
    size_t at = 0;
    for (int el = 0; el < 2; el++) {
        at += (size_t)snprintf(two + at, sizeof two - at, "<e");
        for (int a = 0; a < METAGUARD_XMP_ATTRIBUTES * 3 / 4; a++) {
            at += (size_t)snprintf(two + at, sizeof two - at, " a%d='1'", a);
        }
        at += (size_t)snprintf(two + at, sizeof two - at, "/>");
    }
    CHECK_INT(xmp_of(two, at), 2);
    const char cut[] = "<a/></"; /* only "<a/><" is the packet */
    CHECK_INT(xmp_of(cut, 5), 2);
}

/* `s` as UTF-16 (`width` 2) or UTF-32 (4), little- or big-endian, with its byte-order mark,
 * into `out`; its length. */
static size_t wide(const char *s, int width, bool big, unsigned char *out)
{
    static const unsigned char bom[2][2][4] = {{{0xff, 0xfe}, {0xfe, 0xff}},
                                               {{0xff, 0xfe, 0, 0}, {0, 0, 0xfe, 0xff}}};
    size_t n = (size_t)width;
    memcpy(out, bom[width == 4][big], n);
    for (; *s != '\0'; s++, n += (size_t)width) {
        memset(out + n, 0, (size_t)width);
        out[big ? n + (size_t)width - 1 : n] = (unsigned char)*s;
    }
    return n;
}

/* XMP in UTF-16 and UTF-32, which xmp_readable() lets through: a DTD is refused as in UTF-8 (its
 * markup has NULs between its characters), a closing tag is no element, and a name's bytes
 * count. And the count is linear in the packet: a name ends at the next '<' at the latest (a
 * packet of 64 KiB of '<', each an element, took 3.5 s when the name went on to the end). */
static void test_xmp_wide(void)
{
    char named[200];
    unsigned char p[4 * (sizeof named + 1)]; /* the longest text in UTF-32, with its mark */
    const char *dtd[] = {"<!DOCTYPE x [<!ATTLIST e a CDATA 'v'>]><x/>", "<!ENTITY e 'v'><x/>",
                         "<x/><!ATTLIST e a CDATA 'v'>"};
    for (int width = 2; width <= 4; width += 2) {
        for (int big = 0; big < 2; big++) {
            for (size_t i = 0; i < sizeof dtd / sizeof dtd[0]; i++) {
                CHECK(metaguard_xmp_cost(p, wide(dtd[i], width, big, p)) ==
                      METAGUARD_XMP_UNREADABLE);
            }
            CHECK_INT(metaguard_xmp_cost(p, wide("<a><b/></a><!-- c -->", width, big, p)), 2);
            snprintf(named, sizeof named, "<%0*d></%0*d>", METAGUARD_XMP_NAME_UNIT, 0,
                     METAGUARD_XMP_NAME_UNIT, 0);
            CHECK(metaguard_xmp_cost(p, wide(named, width, big, p)) >= 1 + (uint64_t)width);
        }
    }
    const char *escaped = "<a>&lt;!DOCTYPE</a><b/>"; /* no DTD */
    CHECK_INT(xmp_of(escaped, strlen(escaped)), 2);
    CHECK(xmp_of("<!DOCTYP<!DOCTYPE x><x/>", 24) == METAGUARD_XMP_UNREADABLE);

    size_t n = 64 * 1024;
    unsigned char *lt = malloc(n);
    memset(lt, '<', n);
    CHECK_INT(metaguard_xmp_cost(lt, n), n);
    for (size_t i = 1; i < n; i += 2) {
        lt[i] = 'a';
    }
    CHECK_INT(metaguard_xmp_cost(lt, n), n / 2);
    free(lt);
}

static StringInfo *profile_of(const unsigned char *p, size_t n)
{
    StringInfo *s = AcquireStringInfo(n);
    SetStringInfoDatum(s, p);
    return s;
}

static void arm(struct metaguard *g, uint64_t bytes, uint64_t exif, uint64_t xmp)
{
    const struct metaguard_limits l = {.max_bytes = bytes, .max_exif = exif, .max_xmp = xmp};
    metaguard_arm(g, &l);
}

/* The armed read refused a profile, and says `fragment`. */
static void refused_saying(const struct metaguard *g, const char *fragment)
{
    struct err e = {{0}};
    CHECK(metaguard_disarm());
    metaguard_error(g, &e);
    CHECK(strstr(e.msg, fragment) != NULL);
}

/* SetImageProfile() armed: within the bounds a profile is set; past one it is not, the earlier
 * one of that name goes, and so does every later profile of the read. A profile of one image
 * handed over again replaces what it counted, but for the bytes handled; another image's
 * counts apart. Unarmed: always set. */
static void test_guard(void)
{
    static struct block k;
    struct err e = {{0}};
    MagickCoreGenesis(NULL, MagickFalse);
    CHECK_INT(metaguard_init(&e), 0);
    ImageInfo *info = AcquireImageInfo();
    Image *im = AcquireImage(info), *im2 = AcquireImage(info);
    start(&k, 8, 200);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 50, 100}}, 0); /* 52 */
    StringInfo *small = profile_of(k.b, k.len), *icc = profile_of(k.b, 150);
    const char *x = "<x:xmpmeta><a/><b/><c/></x:xmpmeta>";
    StringInfo *xmp = profile_of((const unsigned char *)x, strlen(x));

    struct metaguard g;
    arm(&g, 1000, 100, 100);
    CHECK(SetImageProfile(im, "exif", small) == MagickTrue);
    CHECK(SetImageProfile(im, "EXIF", small) == MagickTrue); /* again: replaces, 52 */
    CHECK(GetImageProfile(im, "exif") != NULL);
    CHECK(SetImageProfile(im2, "exif", small) == MagickFalse); /* another image: 104 */
    CHECK(GetImageProfile(im2, "exif") == NULL);
    CHECK(SetImageProfile(im, "icc", icc) == MagickFalse); /* after a refusal */
    refused_saying(&g, "more than 100 values to format (PIXQ_EXIF_MAX_VALUES");
    CHECK_STR(g.refused, "exif");
    CHECK(!metaguard_disarm());

    CHECK(SetImageProfile(im2, "exif", small) == MagickTrue); /* unarmed */
    CHECK(GetImageProfile(im2, "exif") != NULL);

    arm(&g, 1000, 100, 6);
    CHECK(SetImageProfile(im, "xmp", xmp) == MagickTrue); /* 4 elements */
    CHECK(SetImageProfile(im2, "xmp", xmp) == MagickFalse);
    CHECK(GetImageProfile(im2, "xmp") == NULL);
    refused_saying(&g, "its XMP data has more than 6 elements (PIXQ_XMP_MAX_ELEMENTS)");

    const char *dtd = "<!DOCTYPE x [<!ATTLIST e a CDATA 'v'>]><x><e/></x>";
    StringInfo *with_dtd = profile_of((const unsigned char *)dtd, strlen(dtd));
    arm(&g, 1000, 100, 6);
    CHECK(SetImageProfile(im2, "xmp", with_dtd) == MagickFalse);
    refused_saying(&g, "its XMP data has a DTD, an element of more than 1000 attributes");
    DestroyStringInfo(with_dtd);

    /* the XMP of an 8bim block stays counted when a later block of the image has none */
    static unsigned char bim[4096];
    size_t with = resource(bim, 0x0424, "", (const unsigned char *)x, strlen(x));
    size_t without = resource(bim + with, 0x0405, "", k.b, 200);
    StringInfo *bim_xmp_block = profile_of(bim, with), *bim_other = profile_of(bim + with, without);
    arm(&g, 1 << 20, 1000000, 6);
    CHECK(SetImageProfile(im2, "8bim", bim_xmp_block) == MagickTrue);  /* 4 */
    CHECK(SetImageProfile(im2, "8bim", bim_other) == MagickTrue);      /* still 4 */
    CHECK(SetImageProfile(im2, "8bim", bim_xmp_block) == MagickFalse); /* 8 */
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_XMP);

    /* an iptc hand-over counts the image's 8bim block too (212 bytes; ImageMagick copies it when
     * it holds an IPTC resource, the guard always): 4 x 222 within 4 x 250 */
    CHECK(SetImageProfile(im2, "8bim", bim_other) == MagickTrue); /* unarmed */
    StringInfo *iptc = profile_of(k.b, 10);
    arm(&g, 250, 1000000, 100);
    for (int i = 0; i < 4; i++) {
        CHECK(SetImageProfile(im2, "iptc", iptc) == MagickTrue);
    }
    CHECK(SetImageProfile(im2, "iptc", iptc) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_HANDLED);
    DestroyStringInfo(bim_xmp_block);
    DestroyStringInfo(bim_other);
    DestroyStringInfo(iptc);

    arm(&g, 250, 1000000, 100);
    CHECK(SetImageProfile(im, "icc", icc) == MagickTrue);
    CHECK(SetImageProfile(im, "icc", icc) == MagickTrue);   /* again: 150 held */
    CHECK(SetImageProfile(im2, "icc", icc) == MagickFalse); /* 300 held */
    CHECK(GetImageProfile(im2, "icc") == NULL);
    refused_saying(&g, "more than 0 MB of profiles (icc profile; PIXQ_METADATA_MAX_MB)");

    /* handed over again and again: 4 x 250 bytes in all, an XMP profile's counting 16 times */
    arm(&g, 250, 1000000, 100);
    for (int i = 0; i < 6; i++) {
        CHECK(SetImageProfile(im, "icc", icc) == MagickTrue);
    }
    CHECK(SetImageProfile(im, "icc", icc) == MagickFalse); /* 1050 handled */
    CHECK(GetImageProfile(im, "icc") == NULL);
    refused_saying(&g, "its icc profile comes in too many pieces");
    arm(&g, 250, 1000000, 100);
    CHECK(SetImageProfile(im, "xmp", xmp) == MagickTrue); /* 35 x 16 = 560 */
    CHECK(SetImageProfile(im, "xmp", xmp) == MagickFalse);
    CHECK(metaguard_disarm());

    DestroyStringInfo(small);
    DestroyStringInfo(icc);
    DestroyStringInfo(xmp);
    DestroyImage(im);
    DestroyImage(im2);
    DestroyImageInfo(info);
    MagickCoreTerminus();
}

/* The guard's edges: each bound reached exactly is not past it; an 8bim block's EXIF stays
 * counted; an XMP profile handed over again replaces its count; a refused read counts its EXIF
 * only as far as what was left; an 8bim block holding XMP counts 16 times handled, an icm
 * hand-over the 8bim block too; names of 15 bytes are held, and 64 of them; the name is matched
 * and reported in any case; limits beyond UINT64_MAX / 4. */
static void test_guard_edges(void)
{
    static struct block k, chain;
    static unsigned char bim[4096];
    struct err e = {{0}};
    MagickCoreGenesis(NULL, MagickFalse);
    CHECK_INT(metaguard_init(&e), 0);
    ImageInfo *info = AcquireImageInfo();
    Image *im[4];
    for (int i = 0; i < 4; i++) {
        im[i] = AcquireImage(info);
    }
    start(&k, 8, 200);
    ifd(&k, 8, 1, (const uint32_t[][4]){{0x010f, 2, 50, 100}}, 0); /* 1 + E + 50 */
    StringInfo *small = profile_of(k.b, k.len), *icc = profile_of(k.b, 150);
    const char *x = "<x:xmpmeta><a/><b/><c/></x:xmpmeta>";
    StringInfo *xmp = profile_of((const unsigned char *)x, strlen(x));
    struct metaguard g;

    arm(&g, 206, 1 + E + 50, 4);
    CHECK(SetImageProfile(im[0], "exif", small) == MagickTrue); /* 206 bytes */
    CHECK(!metaguard_disarm());
    arm(&g, 1000, 100, 4);
    CHECK(SetImageProfile(im[0], "xmp", xmp) == MagickTrue); /* 4 elements */
    CHECK(SetImageProfile(im[0], "xmp", xmp) == MagickTrue); /* again: still 4 */
    CHECK(!metaguard_disarm());
    arm(&g, 150, BIG, 100);
    for (int i = 0; i < 4; i++) { /* 600 handled: 4 x 150 */
        CHECK(SetImageProfile(im[1], "icc", icc) == MagickTrue);
    }
    CHECK(SetImageProfile(im[1], "ICC", icc) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_HANDLED);
    CHECK_STR(g.refused, "icc");

    /* the EXIF of an 8bim block stays counted when a later block of the image has none */
    size_t with = resource(bim, 0x0422, "", k.b, k.len);
    size_t without = resource(bim + with, 0x0405, "", k.b, 20);
    StringInfo *bim_exif_block = profile_of(bim, with),
               *bim_other = profile_of(bim + with, without);
    arm(&g, 1 << 20, 60, 100);
    CHECK(SetImageProfile(im[2], "8bim", bim_exif_block) == MagickTrue);  /* 53 */
    CHECK(SetImageProfile(im[2], "8bim", bim_other) == MagickTrue);       /* still 53 */
    CHECK(SetImageProfile(im[2], "8bim", bim_exif_block) == MagickFalse); /* 106 */
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_EXIF);
    CHECK(SetImageProfile(im[2], "8bim", bim_other) == MagickTrue); /* unarmed: 32 bytes */
    DestroyStringInfo(bim_exif_block);
    DestroyStringInfo(bim_other);

    /* 100 entries of 3: counted to just past the 47 left */
    uint32_t e100[100][4];
    for (int i = 0; i < 100; i++) {
        e100[i][0] = 0x0112;
        e100[i][1] = 3;
        e100[i][2] = 1;
        e100[i][3] = 1;
    }
    static struct block many;
    start(&many, 8, 8 + 2 + 12 * 100 + 4);
    ifd(&many, 8, 100, (const uint32_t(*)[4])e100, 0);
    StringInfo *costly = profile_of(many.b, many.len);
    arm(&g, 1 << 20, 100, 100);
    CHECK(SetImageProfile(im[3], "exif", small) == MagickTrue);
    CHECK(SetImageProfile(im[2], "exif", costly) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK(g.exif > 100 && g.exif <= 100 + E + 1);
    DestroyStringInfo(costly);

    /* an 8bim block with XMP: 48 bytes, handled 16 times; an upper-case name is the same */
    size_t n = resource(bim, 0x0424, "", (const unsigned char *)x, strlen(x));
    StringInfo *bim_xmp_block = profile_of(bim, n);
    arm(&g, 250, BIG, 100);
    CHECK(SetImageProfile(im[3], "8bim", bim_xmp_block) == MagickTrue);
    CHECK(SetImageProfile(im[3], "8bim", bim_xmp_block) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_HANDLED);
    arm(&g, 1 << 20, BIG, 3);
    CHECK(SetImageProfile(im[3], "8BIM", bim_xmp_block) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_XMP);
    DestroyStringInfo(bim_xmp_block);

    /* icm counts the image's 8bim block too (im[2]'s: 32 bytes) */
    StringInfo *ten = profile_of(k.b, 10);
    arm(&g, 45, BIG, 100);
    for (int i = 0; i < 4; i++) { /* 4 x 42 within 4 x 45 */
        CHECK(SetImageProfile(im[2], "icm", ten) == MagickTrue);
    }
    CHECK(SetImageProfile(im[2], "icm", ten) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_HANDLED);

    /* a name of 15 bytes is held (replaced when handed over again), one of 16 is not */
    arm(&g, 250, BIG, 100);
    CHECK(SetImageProfile(im[3], "abcdefghijklmno", icc) == MagickTrue);
    CHECK(SetImageProfile(im[3], "abcdefghijklmno", icc) == MagickTrue);
    CHECK(!metaguard_disarm());
    arm(&g, 250, BIG, 100);
    CHECK(SetImageProfile(im[3], "abcdefghijklmnop", icc) == MagickTrue);
    CHECK(SetImageProfile(im[3], "abcdefghijklmnop", icc) == MagickFalse);
    CHECK(metaguard_disarm());
    /* METAGUARD_HELD names are held; past them a hand-over only adds */
    arm(&g, 10 * METAGUARD_HELD + 5, BIG, 100);
    char name[16];
    for (int i = 0; i < METAGUARD_HELD; i++) {
        snprintf(name, sizeof name, "p%d", i);
        CHECK(SetImageProfile(im[1], name, ten) == MagickTrue);
    }
    CHECK(SetImageProfile(im[1], name, ten) == MagickTrue);
    CHECK(SetImageProfile(im[1], "another", ten) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_BYTES);
    /* a name of 16 bytes, not held, takes none of their places */
    arm(&g, 10 * METAGUARD_HELD + 15, BIG, 100);
    CHECK(SetImageProfile(im[1], "abcdefghijklmnop", ten) == MagickTrue);
    for (int i = 0; i < METAGUARD_HELD; i++) {
        snprintf(name, sizeof name, "p%d", i);
        CHECK(SetImageProfile(im[1], name, ten) == MagickTrue);
    }
    CHECK(SetImageProfile(im[1], name, ten) == MagickTrue); /* the last one held too */
    CHECK(!metaguard_disarm());
    DestroyStringInfo(ten);

    /* limits past UINT64_MAX / 4: no product wraps, and too many IFDs stay over */
    int links = METAGUARD_MAX_IFDS + 10;
    start(&chain, 8, 8 + 6 * (size_t)links + 6);
    for (int i = 0; i < links; i++) {
        ifd(&chain, 8 + 6 * (size_t)i, 0, NULL, (uint32_t)(8 + 6 * (i + 1)));
    }
    StringInfo *linked = profile_of(chain.b, chain.len);
    arm(&g, (uint64_t)1 << 62, BIG, BIG);
    CHECK(SetImageProfile(im[3], "icc", icc) == MagickTrue);
    CHECK(SetImageProfile(im[3], "exif", linked) == MagickFalse);
    CHECK(metaguard_disarm());
    CHECK_INT(g.over, METAGUARD_OVER_EXIF);
    DestroyStringInfo(linked);

    g.over = METAGUARD_OVER_BYTES;
    g.max_bytes = (uint64_t)5 << 20;
    metaguard_error(&g, &e);
    CHECK(strstr(e.msg, "more than 5 MB of profiles") != NULL);

    DestroyStringInfo(small);
    DestroyStringInfo(icc);
    DestroyStringInfo(xmp);
    for (int i = 0; i < 4; i++) {
        DestroyImage(im[i]);
    }
    DestroyImageInfo(info);
}

/* ---- PNG text chunks ---- */

struct png {
    unsigned char *b;
    size_t len, cap;
};

static void png_put(struct png *g, const void *p, size_t n)
{
    if (g->len + n > g->cap) {
        g->cap = (g->len + n) * 2;
        g->b = realloc(g->b, g->cap);
    }
    memcpy(g->b + g->len, p, n);
    g->len += n;
}

/* A chunk of `type` holding `head` (`hn` bytes) then `body` (`bn` bytes), zlib-compressed when
 * `deflate`. The CRC is not checked: 0. */
static void png_chunk(struct png *g, const char *type, const void *head, size_t hn,
                      const void *body, size_t bn, bool deflate)
{
    uLongf zn = compressBound((uLong)bn);
    unsigned char *z = malloc(zn);
    if (deflate) {
        compress2(z, &zn, body, (uLong)bn, 9);
    } else {
        memcpy(z, body, bn);
        zn = bn;
    }
    size_t n = hn + zn;
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    png_put(g, len, 4);
    png_put(g, type, 4);
    png_put(g, head, hn);
    png_put(g, z, zn);
    png_put(g, "\0\0\0\0", 4);
    free(z);
}

static void png_start(struct png *g)
{
    g->len = 0;
    png_put(g, "\x89PNG\r\n\x1a\n", 8);
    png_chunk(g, "IHDR", "\0\0\0\1\0\0\0\1\x08\x02\0\0\0", 13, "", 0, false);
}

static uint64_t png_text(const struct png *g, uint64_t limit)
{
    return metaguard_png_text_bytes(g->b, g->len, limit);
}

static void test_png_text(void)
{
    size_t big = 8 * 1024 * 1024;
    unsigned char *a = malloc(big);
    memset(a, 'A', big);
    struct png g = {0};
    png_start(&g);
    CHECK_INT(png_text(&g, BIG), 0);
    png_chunk(&g, "tEXt", "Comment\0", 8, "hello", 5, false);
    CHECK_INT(png_text(&g, BIG), 8 + 5);
    png_chunk(&g, "zTXt", "Comment\0\0", 9, a, 1000, true);
    CHECK_INT(png_text(&g, BIG), 13 + 1000);
    png_chunk(&g, "iTXt", "Comment\0\1\0en\0Kommentar\0", 23, a, 300, true);
    png_chunk(&g, "iTXt", "Comment\0\0\0\0\0", 12, a, 200, false);
    CHECK_INT(png_text(&g, BIG), 13 + 1000 + 300 + 200);
    png_chunk(&g, "iCCP", "icc\0\0", 5, a, 4000, true);
    CHECK_INT(png_text(&g, BIG), 13 + 1000 + 300 + 200 + 4000);
    png_chunk(&g, "IDAT", "", 0, a, 10, true); /* not metadata */
    CHECK_INT(png_text(&g, BIG), 13 + 1000 + 300 + 200 + 4000);
    /* a chunk of 8 MB inflated from a few KB: counted to just past the limit only */
    png_chunk(&g, "zTXt", "Comment\0\0", 9, a, big, true);
    CHECK(g.len < 64 * 1024);
    CHECK_INT(png_text(&g, BIG), 13 + 1000 + 300 + 200 + 4000 + big);
    uint64_t c = png_text(&g, 1000000);
    CHECK(c > 1000000 && c <= 1000000 + 16384 + 13 + 1000 + 300 + 200 + 4000);
    /* after IEND, or in a chunk the file does not hold whole, nothing more is read */
    size_t whole = g.len;
    png_chunk(&g, "IEND", "", 0, "", 0, false);
    png_chunk(&g, "tEXt", "Comment\0", 8, a, 100, false);
    CHECK_INT(png_text(&g, BIG), 13 + 1000 + 300 + 200 + 4000 + big);
    g.len = whole;
    png_chunk(&g, "tEXt", "Comment\0", 8, a, 100, false);
    CHECK_INT(metaguard_png_text_bytes(g.b, g.len - 5, BIG), 13 + 1000 + 300 + 200 + 4000 + big);
    /* a keyword without its NUL, a stream cut short (counted as far as it inflates) */
    png_start(&g);
    png_chunk(&g, "zTXt", "Comment", 7, "", 0, false);
    CHECK_INT(png_text(&g, BIG), 0);
    png_chunk(&g, "zTXt", "Comment\0\0", 9, a, big, true);
    CHECK_INT(metaguard_png_text_bytes(g.b, g.len - 4 - 100, BIG), 0); /* not whole: not read */
    uLongf zn = compressBound((uLong)big);
    unsigned char *z = malloc(zn);
    compress2(z, &zn, a, (uLong)big, 9);
    png_start(&g);
    png_chunk(&g, "zTXt", "Comment\0\0", 9, z, zn / 2, false);
    c = png_text(&g, BIG);
    CHECK(c > big / 4 && c < big);
    free(z);
    CHECK_INT(metaguard_png_text_bytes(NULL, 0, BIG), 0);
    free(g.b);
    free(a);
}

/* The limit reached exactly by an inflated chunk is not past it; a keyword of 79 bytes and one
 * of 85; an iTXt compression flag other than 1 (not inflated); several chunks share one limit,
 * and none is inflated once it is past. */
static void test_png_edges(void)
{
    size_t big = 8 * 1024 * 1024;
    unsigned char *a = malloc(big);
    memset(a, 'A', big);
    struct png g = {0};
    png_start(&g);
    png_chunk(&g, "zTXt", "Comment\0\0", 9, a, 40000, true);
    CHECK(png_text(&g, 16384) > 16384);
    char key[100];
    for (int len = 79; len <= 85; len += 6) {
        memset(key, 'k', (size_t)len);
        key[len] = 0;
        key[len + 1] = 0;
        png_start(&g);
        png_chunk(&g, "zTXt", key, (size_t)len + 2, a, 1000, true);
        CHECK_INT(png_text(&g, BIG), len == 79 ? 1000 : 0);
    }
    png_start(&g);
    png_chunk(&g, "iTXt", "Comment\0\2\0\0\0", 12, a, 200, false);
    CHECK_INT(png_text(&g, BIG), 200);
    png_start(&g);
    png_chunk(&g, "tEXt", "Comment\0", 8, a, 40000 - 8, false);
    png_chunk(&g, "zTXt", "Comment\0\0", 9, a, big, true);
    png_chunk(&g, "zTXt", "Comment\0\0", 9, a, big, true);
    uint64_t c = png_text(&g, 50000);
    CHECK(c > 50000 && c <= 50000 + 16384);
    free(g.b);
    free(a);
}

int main(void)
{
    test_no_exif();
    test_entries();
    test_pointers_and_loops();
    test_shared_values_and_limit();
    test_several_headers();
    test_walk_edges();
    test_header_edges();
    test_8bim();
    test_8bim_edges();
    test_png_text();
    test_png_edges();
    test_weights();
    test_xmp_edges();
    test_xmp_wide();
    test_guard_edges();
    test_guard();
    return check_summary("metaguard");
}
