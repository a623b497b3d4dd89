/* Unit tests of worker/sniff.c: the format from the magic bytes alone (a prefix of a signature is
 * not the format), the names of what is not decoded; the JPEG walk: the size from SOF, and
 * `truncated` (no EOI marker after the first scan), whatever the bytes around the markers; the
 * sizes and frames of GIF, WebP, TIFF, HEIF and PNG headers, where they stop, and the frame cap;
 * and BMP headers. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sniff.h"

/* ---------------------------------------------------------------- bytes */

/* Bytes a test builds up. */
struct bytes {
    unsigned char b[1024];
    size_t n;
};

static void put(struct bytes *s, const void *p, size_t n)
{
    if (n > sizeof s->b - s->n) {
        CHECK(!"a test's bytes do not fit");
        return;
    }
    if (n == 0) { /* p may be NULL then, which memcpy may not take */
        return;
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void put_str(struct bytes *s, const char *t)
{
    put(s, t, strlen(t));
}

static void put_byte(struct bytes *s, unsigned long v)
{
    unsigned char c = (unsigned char)v;
    put(s, &c, 1);
}

static void put_le(struct bytes *s, unsigned long v, int len)
{
    for (int i = 0; i < len; i++) {
        put_byte(s, v >> (8 * i));
    }
}

static void put_be(struct bytes *s, unsigned long v, int len)
{
    for (int i = len - 1; i >= 0; i--) {
        put_byte(s, v >> (8 * i));
    }
}

static struct sniff_info sniffed(const void *data, size_t n)
{
    struct sniff_info o;
    sniff_image(data, n, &o);
    return o;
}

/* ---------------------------------------------------------------- JPEG */

/* SOI, SOF0 of 300 x 200 with one component, then SOS with its 8-byte header: 27 bytes. */
static const unsigned char head[] = {
    0xFF, 0xD8,                                                 /* SOI */
    0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0xC8, 0x01, 0x2C, 0x01, /* SOF0 200 rows, 300 columns */
    0x01, 0x11, 0x00,                                           /* component 1, 1x1, table 0 */
    0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, /* SOS */
};

/* sniff_image of `head` followed by the `n` bytes at `tail`. */
static struct sniff_info sniff_with(const unsigned char *tail, size_t n)
{
    unsigned char data[sizeof head + 128];
    memcpy(data, head, sizeof head);
    if (n > 0) {
        memcpy(data + sizeof head, tail, n);
    }
    struct sniff_info o;
    sniff_image(data, sizeof head + n, &o);
    return o;
}

static bool truncated(const unsigned char *tail, size_t n)
{
    return sniff_with(tail, n).truncated;
}

static void test_size(void)
{
    const unsigned char eoi[] = {0x12, 0xFF, 0xD9};
    struct sniff_info o = sniff_with(eoi, sizeof eoi);
    CHECK_INT(o.format, SNIFF_JPEG);
    CHECK_INT(o.width, 300);
    CHECK_INT(o.height, 200);
    CHECK_INT(o.frames, 1);
    CHECK(!o.truncated);
}

static void test_eoi(void)
{
    const unsigned char at_end[] = {0x12, 0x34, 0xFF, 0xD9};
    const unsigned char stuffed[] = {0xFF, 0x00, 0xFF, 0xD0, 0x55, 0xFF, 0xD9};
    const unsigned char fill[] = {0x12, 0xFF, 0xFF, 0xFF, 0xD9};    /* fill bytes, then EOI */
    const unsigned char garbage[] = {0x01, 0xFF, 0xD9, 0xFF, 0x33}; /* data after EOI */
    const unsigned char none[] = {0x12, 0xFF, 0x00, 0xD9, 0x34};    /* D9 not after FF */
    const unsigned char last_ff[] = {0x12, 0x34, 0xFF};             /* cut after the FF */
    const unsigned char ff_only[] = {0xFF, 0xFF, 0xFF, 0xFF};       /* never a D9 */
    const unsigned char d9_first[] = {0xD9, 0x00, 0x01};            /* D9 right after SOS */
    CHECK(!truncated(at_end, sizeof at_end));
    CHECK(!truncated(stuffed, sizeof stuffed));
    CHECK(!truncated(fill, sizeof fill));
    CHECK(!truncated(garbage, sizeof garbage));
    CHECK(truncated(none, sizeof none));
    CHECK(truncated(last_ff, sizeof last_ff));
    CHECK(truncated(ff_only, sizeof ff_only));
    CHECK(truncated(d9_first, sizeof d9_first));
    CHECK(truncated(NULL, 0));
    /* an EOI right after the SOS marker, where its length would be: the first two bytes looked
     * at are looked at */
    unsigned char eoi_first[sizeof head];
    memcpy(eoi_first, head, sizeof head - 8);
    eoi_first[sizeof head - 8] = 0xFF;
    eoi_first[sizeof head - 7] = 0xD9;
    CHECK(!sniffed(eoi_first, sizeof head - 6).truncated);
    /* the end is looked at first (64 bytes), then everything from the front */
    unsigned char long_garbage[96] = {0x01, 0xFF, 0xD9}; /* EOI, then 93 bytes after it */
    unsigned char long_none[96] = {0x01, 0xFF, 0x00};
    for (size_t i = 3; i < sizeof long_garbage; i++) {
        long_garbage[i] = long_none[i] = (unsigned char)(i % 2 ? 0xFF : 0x00);
    }
    CHECK(!truncated(long_garbage, sizeof long_garbage));
    CHECK(truncated(long_none, sizeof long_none));
    long_none[sizeof long_none - 2] = 0xFF;
    long_none[sizeof long_none - 1] = 0xD9;
    CHECK(!truncated(long_none, sizeof long_none));
}

/* The segments before the first scan: which markers are a frame's size, which have no length. */
static void test_markers(void)
{
    /* DHT, JPG and DAC segments holding what a SOF would read as 8192 x 4096, then head's SOF */
    static const unsigned char not_sof[] = {0xC4, 0xC8, 0xCC};
    for (size_t k = 0; k < sizeof not_sof; k++) {
        struct bytes s = {.n = 0};
        put(&s, head, 2);
        put(&s,
            (const unsigned char[]){0xFF, not_sof[k], 0x00, 0x0A, 0x08, 0x10, 0x00, 0x20, 0x00,
                                    0x01, 0x11, 0x00},
            12);
        put(&s, head + 2, sizeof head - 2);
        put(&s, (const unsigned char[]){0xFF, 0xD9}, 2);
        struct sniff_info o = sniffed(s.b, s.n);
        CHECK_INT(o.width, 300);
        CHECK_INT(o.height, 200);
        CHECK(!o.truncated);
    }
    /* every other marker from C0 to CF is a SOF (CF: lossless, arithmetic coding) */
    for (unsigned m = 0xC0; m <= 0xCF; m++) {
        unsigned char d[sizeof head];
        memcpy(d, head, sizeof head);
        d[3] = (unsigned char)m;
        bool sof = m != 0xC4 && m != 0xC8 && m != 0xCC;
        CHECK_INT(sniffed(d, sizeof d).width, sof ? 300 : 0);
    }
    /* one fill byte, two, TEM and RST7 (no length) before the SOF */
    static const unsigned char lone[][3] = {
        {1, 0xFF}, {2, 0xFF, 0xFF}, {2, 0xFF, 0x01}, {2, 0xFF, 0xD7}};
    for (size_t k = 0; k < sizeof lone / sizeof lone[0]; k++) {
        struct bytes s = {.n = 0};
        put(&s, head, 2);
        put(&s, lone[k] + 1, lone[k][0]);
        put(&s, head + 2, sizeof head - 2);
        put(&s, (const unsigned char[]){0xFF, 0xD9}, 2);
        struct sniff_info o = sniffed(s.b, s.n);
        CHECK_INT(o.width, 300);
        CHECK(!o.truncated);
    }
    /* an EOI before any scan ends the walk: what follows is not read */
    struct bytes s = {.n = 0};
    put(&s, (const unsigned char[]){0xFF, 0xD8, 0xFF, 0xD9, 0x00, 0x02}, 6);
    put(&s, head + 2, sizeof head - 2);
    struct sniff_info o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 0);
    CHECK(o.truncated);
    /* a length below 2 */
    const unsigned char short_len[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0x00, 0x00};
    CHECK(sniffed(short_len, sizeof short_len).truncated);
    /* a segment one byte longer than the data (the bytes after it in memory are not read) */
    const unsigned char long_seg[16] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x05, 0xAA, 0xAA};
    CHECK(sniffed(long_seg, 8).truncated);
    /* bytes that are not a marker: left for the decoder to judge */
    const unsigned char no_marker[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x00, 0x00, 0xFF, 0xD9};
    o = sniffed(no_marker, sizeof no_marker);
    CHECK_INT(o.format, SNIFF_JPEG);
    CHECK(!o.truncated);
    /* the data ends right after the SOF's width: the size is read, the file is truncated */
    o = sniffed(head, 11);
    CHECK_INT(o.width, 300);
    CHECK_INT(o.height, 200);
    CHECK(o.truncated);
    o = sniffed(head, 10);
    CHECK_INT(o.width, 0);
    CHECK(o.truncated);
    /* every cut before the first scan */
    int cut_truncated = 0;
    for (size_t n = 3; n < sizeof head; n++) {
        cut_truncated += sniffed(head, n).truncated;
    }
    CHECK_INT(cut_truncated, (long)(sizeof head - 3));
}

/* Past the last 64 bytes, the scan from the front: a fill byte before EOI, an FF at the very end
 * whose D9 lies beyond the data. */
static void test_eoi_front(void)
{
    unsigned char d[sizeof head + 101] = {0};
    memcpy(d, head, sizeof head);
    unsigned char *tail = d + sizeof head;
    memcpy(tail, (const unsigned char[]){0x01, 0xFF, 0xFF, 0xD9}, 4); /* then 96 zero bytes */
    CHECK(!sniffed(d, sizeof head + 100).truncated);
    memset(tail, 0, 101);
    tail[99] = 0xFF;
    tail[100] = 0xD9; /* in memory, not in the data */
    CHECK(sniffed(d, sizeof head + 100).truncated);
    CHECK(!sniffed(d, sizeof head + 101).truncated);
}

/* Every cut of a JPEG that ends in EOI is truncated; the whole file is not. */
static void test_cuts(void)
{
    unsigned char data[sizeof head + 100];
    memcpy(data, head, sizeof head);
    for (size_t i = sizeof head; i < sizeof data; i++) {
        data[i] = (unsigned char)(i % 3 == 0 ? 0xFF : i % 3 == 1 ? 0x00 : 0x5A);
    }
    data[sizeof data - 2] = 0xFF;
    data[sizeof data - 1] = 0xD9;
    struct sniff_info o;
    sniff_image(data, sizeof data, &o);
    CHECK(!o.truncated);
    int cut_truncated = 0;
    for (size_t n = sizeof head; n < sizeof data; n++) {
        sniff_image(data, n, &o);
        cut_truncated += o.truncated;
    }
    CHECK_INT(cut_truncated, (long)(sizeof data - sizeof head));
}

/* A BMP's 14-byte file header and an info header of `size` bytes (12: OS/2's 16-bit sides). */
static struct sniff_info bmp(unsigned size, long w, long h, size_t n)
{
    unsigned char d[54] = {'B', 'M'};
    d[14] = (unsigned char)size;
    for (int i = 0; i < (size == 12 ? 2 : 4); i++) {
        int at = size == 12 ? 2 : 4;
        d[18 + i] = (unsigned char)((unsigned long)w >> (8 * i));
        d[18 + at + i] = (unsigned char)((unsigned long)h >> (8 * i));
    }
    struct sniff_info o;
    sniff_image(d, n, &o);
    return o;
}

static void test_bmp(void)
{
    struct sniff_info o = bmp(40, 640, -480, 54); /* rows top down */
    CHECK_INT(o.format, SNIFF_BMP);
    CHECK_STR(o.name, "BMP");
    CHECK_INT(o.width, 640);
    CHECK_INT(o.height, 480);
    CHECK_INT(o.frames, 1);
    CHECK(!o.truncated);
    o = bmp(124, 30000, 30000, 54);
    CHECK_INT(o.width, 30000);
    CHECK_INT(o.height, 30000);
    o = bmp(40, 3, -2147483647L - 1, 54); /* the most negative height: its size, not an overflow */
    CHECK_INT(o.height, 2147483648L);
    o = bmp(12, 65535, 200, 54); /* OS/2: signed 16 bits, as ImageMagick reads them */
    CHECK_INT(o.width, 1);
    CHECK_INT(o.height, 200);
    o = bmp(12, 32767, 300, 54);
    CHECK_INT(o.width, 32767);
    o = bmp(20, 100, 100, 54); /* a size ImageMagick refuses: nothing declared */
    CHECK_INT(o.width, 0);
    o = bmp(40, 100, 100, 25);
    CHECK_INT(o.format, SNIFF_BMP);
    CHECK(o.truncated);
    CHECK_INT(sniff_format_named("BMP"), SNIFF_BMP);
    CHECK_STR(sniff_format_name(SNIFF_BMP), "bmp");
}

/* ---------------------------------------------------------------- GIF */

/* A GIF89a of a `sw` x `sh` screen with a global colour table (4 entries of 0x2C, the image
 * separator), a graphic control extension, the `n` frames w x h (the first with a local colour
 * table of 0x21 bytes, every one with its data in two sub-blocks), a comment, the trailer. */
static void gif(struct bytes *s, long sw, long sh, const long (*frames)[2], size_t n)
{
    put_str(s, "GIF89a");
    put_le(s, (unsigned long)sw, 2);
    put_le(s, (unsigned long)sh, 2);
    put(s, "\x81\x00\x00", 3);
    for (int i = 0; i < 12; i++) {
        put_byte(s, 0x2C);
    }
    put(s, "\x21\xF9\x04\x00\x00\x00\x00\x00", 8);
    for (size_t k = 0; k < n; k++) {
        put_byte(s, 0x2C);
        put_le(s, 1, 2); /* left, top */
        put_le(s, 2, 2);
        put_le(s, (unsigned long)frames[k][0], 2);
        put_le(s, (unsigned long)frames[k][1], 2);
        put_byte(s, k == 0 ? 0x81 : 0x00);
        for (int i = 0; k == 0 && i < 12; i++) {
            put_byte(s, 0x21);
        }
        put(s, "\x02\x02\x2C\x2C\x01\x21\x00", 7); /* LZW code size, sub-blocks, end */
    }
    put(s,
        "\x21\xFE\x03"
        "abc\x00\x3B",
        8);
}

static void test_gif(void)
{
    const long frames[][2] = {{20, 30}, {5, 5}, {7, 8}};
    struct bytes s = {.n = 0};
    gif(&s, 10, 10, frames, 3);
    struct sniff_info o = sniffed(s.b, s.n);
    CHECK_INT(o.format, SNIFF_GIF);
    CHECK_STR(o.name, "GIF");
    CHECK_INT(o.width, 20);
    CHECK_INT(o.height, 30);
    CHECK_INT(o.frames, 3);
    CHECK(!o.truncated);
    s.n = 0;
    gif(&s, 640, 480, frames, 3); /* the screen is larger than every frame */
    o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 640);
    CHECK_INT(o.height, 480);
    CHECK_INT(o.frames, 3);
    /* of two frames of the same area, the longer sides (either order) */
    const long same_area[][2] = {{20, 20}, {10, 40}, {20, 20}};
    for (size_t k = 0; k < 2; k++) {
        s.n = 0;
        gif(&s, 1, 1, same_area + k, 2);
        o = sniffed(s.b, s.n);
        CHECK_INT(o.width, 10);
        CHECK_INT(o.height, 40);
    }
    /* the data ends within the first image descriptor (its 9 bytes, then the LZW code size) */
    s.n = 0;
    gif(&s, 10, 10, frames, 1);
    size_t descriptor = 13 + 12 + 8 + 1;
    for (size_t n = descriptor; n <= descriptor + 9; n++) {
        o = sniffed(s.b, n);
        CHECK_INT(o.frames, 0);
        CHECK(o.truncated);
    }
    o = sniffed(s.b, 12); /* before the end of the screen descriptor */
    CHECK_INT(o.format, SNIFF_GIF);
    CHECK(o.truncated);
    o = sniffed(s.b, 13);
    CHECK_INT(o.width, 10);
    CHECK(!o.truncated);
}

/* ---------------------------------------------------------------- WebP */

static void webp_head(struct bytes *s)
{
    put_str(s, "RIFF");
    put_le(s, 0, 4);
    put_str(s, "WEBP");
}

/* A chunk of `n` bytes at `d`, padded to an even size. */
static void webp_chunk(struct bytes *s, const char *fourcc, const void *d, size_t n)
{
    put_str(s, fourcc);
    put_le(s, n, 4);
    put(s, d, n);
    if (n % 2 != 0) {
        put_byte(s, 0);
    }
}

/* An ANMF chunk's header: a frame of w x h at (3, 4), then `extra` bytes of data. */
static void webp_anmf(struct bytes *s, unsigned long w, unsigned long h)
{
    struct bytes d = {.n = 0};
    put_le(&d, 3, 3);
    put_le(&d, 4, 3);
    put_le(&d, w - 1, 3);
    put_le(&d, h - 1, 3);
    put_le(&d, 100, 3); /* duration */
    put_byte(&d, 0);
    webp_chunk(s, "ANMF", d.b, d.n);
}

static void webp_vp8x(struct bytes *s, unsigned long w, unsigned long h)
{
    struct bytes d = {.n = 0};
    put_le(&d, 0x02, 4); /* animation */
    put_le(&d, w - 1, 3);
    put_le(&d, h - 1, 3);
    webp_chunk(s, "VP8X", d.b, d.n);
}

static void test_webp(void)
{
    /* lossy: 14-bit sides after the start code (the top 2 bits scale, not size) */
    struct bytes s = {.n = 0};
    webp_head(&s);
    webp_chunk(&s, "VP8 ", "\x00\x00\x00\x9D\x01\x2A\x90\xC1\x2C\x41", 10);
    struct sniff_info o = sniffed(s.b, s.n);
    CHECK_INT(o.format, SNIFF_WEBP);
    CHECK_STR(o.name, "WebP");
    CHECK_INT(o.width, 400);
    CHECK_INT(o.height, 300);
    CHECK_INT(o.frames, 1);
    CHECK(!o.truncated);
    s.n = 0; /* another start code */
    webp_head(&s);
    webp_chunk(&s, "VP8 ", "\x00\x00\x00\x9D\x01\x2B\x90\xC1\x2C\x41", 10);
    CHECK_INT(sniffed(s.b, s.n).width, 0);
    /* lossless, after an odd-sized chunk and its padding: (sides - 1) in 14 bits each */
    unsigned long v = 399 | 299UL << 14 | 1UL << 28;
    unsigned char vp8l[5] = {0x2F, (unsigned char)v, (unsigned char)(v >> 8),
                             (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    s.n = 0;
    webp_head(&s);
    webp_chunk(&s, "XMP ", "<x>", 3);
    webp_chunk(&s, "VP8L", vp8l, sizeof vp8l);
    o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 400);
    CHECK_INT(o.height, 300);
    CHECK_INT(o.frames, 1);
    CHECK(!o.truncated);
    vp8l[0] = 0x2E; /* not the signature */
    s.n = 0;
    webp_head(&s);
    webp_chunk(&s, "VP8L", vp8l, sizeof vp8l);
    o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 0);
    CHECK_INT(o.frames, 0); /* no image chunk: no frame */
    /* animated: the canvas, and every frame */
    s.n = 0;
    webp_head(&s);
    webp_vp8x(&s, 640, 480);
    webp_anmf(&s, 300, 200);
    webp_anmf(&s, 100, 50);
    o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 640);
    CHECK_INT(o.height, 480);
    CHECK_INT(o.frames, 2);
    CHECK(!o.truncated);
    s.n = 0; /* a frame larger than its canvas */
    webp_head(&s);
    webp_vp8x(&s, 100, 100);
    webp_anmf(&s, 3000, 2000);
    o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 3000);
    CHECK_INT(o.height, 2000);
    CHECK_INT(o.frames, 1);
    /* a chunk longer than the data, by one byte */
    s.n = 0;
    webp_head(&s);
    webp_chunk(&s, "VP8 ", "\x00\x00\x00\x9D\x01\x2A\x90\xC1\x2C\x41\x00\x00", 12);
    o = sniffed(s.b, s.n - 1);
    CHECK_INT(o.width, 400);
    CHECK(o.truncated);
}

/* ---------------------------------------------------------------- TIFF */

/* One IFD entry of `type` (3 SHORT, 4 LONG, 5 RATIONAL) with the value `v`. */
static void tiff_entry(struct bytes *s, bool le, unsigned tag, unsigned type, unsigned long v)
{
    void (*num)(struct bytes *, unsigned long, int) = le ? put_le : put_be;
    num(s, tag, 2);
    num(s, type, 2);
    num(s, 1, 4);
    if (type == 3) {
        num(s, v, 2); /* left-justified in the 4 bytes */
        num(s, 0, 2);
    } else {
        num(s, v, 4);
    }
}

/* A TIFF of two IFDs: 640 (SHORT) x 70000 (LONG) with another tag, then 100 x 50. */
static void tiff(struct bytes *s, bool le)
{
    void (*num)(struct bytes *, unsigned long, int) = le ? put_le : put_be;
    put(s, le ? "II\x2A\x00" : "MM\x00\x2A", 4);
    num(s, 8, 4);
    num(s, 3, 2);
    tiff_entry(s, le, 256, 3, 640);
    tiff_entry(s, le, 257, 4, 70000);
    tiff_entry(s, le, 258, 3, 8);
    num(s, 8 + 2 + 36 + 4, 4);
    num(s, 2, 2);
    tiff_entry(s, le, 256, 4, 100);
    tiff_entry(s, le, 257, 3, 50);
    num(s, 0, 4);
}

static void test_tiff(void)
{
    for (int le = 0; le < 2; le++) {
        struct bytes s = {.n = 0};
        tiff(&s, le);
        struct sniff_info o = sniffed(s.b, s.n);
        CHECK_INT(o.format, SNIFF_TIFF);
        CHECK_STR(o.name, "TIFF");
        CHECK_INT(o.width, 640);
        CHECK_INT(o.height, 70000);
        CHECK_INT(o.frames, 2);
        CHECK(!o.truncated);
        /* cut in the second IFD, or in its next IFD's offset */
        o = sniffed(s.b, s.n - 2);
        CHECK_INT(o.frames, 1);
        CHECK(o.truncated);
        o = sniffed(s.b, s.n - 26);
        CHECK_INT(o.frames, 1);
        CHECK(o.truncated);
        o = sniffed(s.b, 7);
        CHECK_INT(o.format, SNIFF_TIFF);
        CHECK(o.truncated);
    }
    /* a width of another type is not read; the next IFD: beyond the data, going back, inside
     * the previous one, in the header */
    struct bytes s = {.n = 0};
    put(&s, "II\x2A\x00\x08\x00\x00\x00\x01\x00", 10);
    tiff_entry(&s, true, 256, 5, 640);
    size_t next = s.n;
    put_le(&s, 0, 4);
    struct sniff_info o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 0);
    CHECK_INT(o.frames, 1);
    /* ... or its own next-IFD offset (the 4 bytes after its entries) */
    const unsigned long offsets[] = {1000, 8, 10, 4, (unsigned long)next};
    for (size_t k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
        s.n = next;
        put_le(&s, offsets[k], 4);
        o = sniffed(s.b, s.n);
        CHECK_INT(o.frames, 1);
        CHECK(o.truncated == (offsets[k] > s.n));
    }
    o = sniffed("II\x2A\x00\x04\x00\x00\x00", 8); /* the first IFD in the header */
    CHECK_INT(o.frames, 0);
    CHECK(!o.truncated);
    /* BigTIFF (either byte order) is recognised, not walked */
    o = sniffed("II\x2B\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x01", 20);
    CHECK_INT(o.format, SNIFF_TIFF);
    CHECK_INT(o.frames, 0);
    CHECK_INT(o.width, 0);
    CHECK(!o.truncated);
    CHECK_INT(sniffed("MM\x00\x2B\x00\x08\x00\x00", 8).format, SNIFF_TIFF);
}

/* ---------------------------------------------------------------- HEIF */

static size_t box_open(struct bytes *s, const char *type)
{
    size_t at = s->n;
    put_be(s, 0, 4);
    put_str(s, type);
    return at;
}

static void box_close(struct bytes *s, size_t at)
{
    unsigned long n = (unsigned long)(s->n - at);
    for (int i = 0; i < 4; i++) {
        s->b[at + (size_t)i] = (unsigned char)(n >> (8 * (3 - i)));
    }
}

/* ftyp of `major`, the minor version's 4 bytes and the compatible brands (4 bytes each). */
static void ftyp(struct bytes *s, const char *major, const char *minor, const char *compatible)
{
    size_t at = box_open(s, "ftyp");
    put(s, major, 4);
    put(s, minor, 4);
    put_str(s, compatible);
    box_close(s, at);
}

static void ispe(struct bytes *s, unsigned long w, unsigned long h)
{
    size_t at = box_open(s, "ispe");
    put_be(s, 0, 4); /* version, flags */
    put_be(s, w, 4);
    put_be(s, h, 4);
    box_close(s, at);
}

/* meta's contents: version and flags, hdlr, then iprp/ipco with a 4000x3000 and a 320x240 ispe,
 * after `before` (bytes put in ipco first). */
static void meta_body(struct bytes *s, const void *before, size_t n)
{
    put_be(s, 0, 4);
    size_t hdlr = box_open(s, "hdlr");
    put(s, "\x00\x00\x00\x00\x00\x00\x00\x00pict", 12);
    box_close(s, hdlr);
    size_t iprp = box_open(s, "iprp");
    size_t ipco = box_open(s, "ipco");
    put(s, before, n);
    size_t colr = box_open(s, "colr");
    put_str(s, "nclx");
    box_close(s, colr);
    ispe(s, 4000, 3000);
    ispe(s, 320, 240);
    box_close(s, ipco);
    box_close(s, iprp);
}

static void test_heif(void)
{
    struct bytes s = {.n = 0};
    ftyp(&s, "heic", "\x00\x00\x00\x00", "mif1heic");
    size_t meta = box_open(&s, "meta");
    meta_body(&s, NULL, 0);
    box_close(&s, meta);
    size_t mdat = s.n;
    put(&s, "\x00\x00\x00\x08mdat", 8);
    struct sniff_info o = sniffed(s.b, s.n);
    CHECK_INT(o.format, SNIFF_HEIC);
    CHECK_STR(o.name, "HEIC");
    CHECK_INT(o.width, 4000);
    CHECK_INT(o.height, 3000);
    CHECK(!o.truncated);
    /* meta as the last box, of size 0 (up to the end) */
    s.b[meta] = s.b[meta + 1] = s.b[meta + 2] = s.b[meta + 3] = 0;
    CHECK_INT(sniffed(s.b, mdat).width, 4000);
    /* a box that ends before its header does: the boxes after it are not read */
    s.n = meta;
    meta = box_open(&s, "meta");
    meta_body(&s, "\x00\x00\x00\x04", 4);
    box_close(&s, meta);
    CHECK_INT(sniffed(s.b, s.n).width, 0);
    /* meta with a 64-bit size, and one over 2^32 */
    for (unsigned long hi = 0; hi < 2; hi++) {
        s.n = meta;
        put_be(&s, 1, 4);
        put_str(&s, "meta");
        put_be(&s, hi, 4);
        size_t lo = s.n;
        put_be(&s, 0, 4);
        meta_body(&s, NULL, 0);
        box_close(&s, lo);
        s.b[lo + 3] = (unsigned char)(s.b[lo + 3] + 12); /* the size counts its 16-byte header */
        CHECK_INT(sniffed(s.b, s.n).width, hi == 0 ? 4000 : 0);
    }
}

/* Which brands of ftyp are AVIF and which HEIC. */
static void test_brands(void)
{
    static const struct {
        const char *major, *minor, *compatible;
        enum sniff_format f;
    } cases[] = {
        {"avif", "\x00\x00\x00\x00", "mif1miaf", SNIFF_AVIF},
        {"mif1", "\x00\x00\x00\x00", "avismiaf", SNIFF_AVIF},
        {"msf1", "\x00\x00\x00\x00", "", SNIFF_HEIC},
        {"heix", "\x00\x00\x00\x00", "", SNIFF_HEIC},
        {"mif1", "avif", "", SNIFF_HEIC}, /* the minor version is no brand */
        {"isom", "\x00\x00\x00\x00", "isomavc1", SNIFF_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bytes s = {.n = 0};
        ftyp(&s, cases[i].major, cases[i].minor, cases[i].compatible);
        struct sniff_info o = sniffed(s.b, s.n);
        CHECK_INT(o.format, cases[i].f);
        CHECK_STR(o.name, cases[i].f == SNIFF_AVIF   ? "AVIF"
                          : cases[i].f == SNIFF_HEIC ? "HEIC"
                                                     : "MP4/QuickTime");
    }
}

/* ---------------------------------------------------------------- PNG */

static void test_png(void)
{
    struct bytes s = {.n = 0};
    put(&s, "\x89PNG\r\n\x1A\n\x00\x00\x00\x0DIHDR", 16);
    put_be(&s, 640, 4);
    put_be(&s, 480, 4);
    struct sniff_info o = sniffed(s.b, s.n);
    CHECK_INT(o.format, SNIFF_PNG);
    CHECK_STR(o.name, "PNG");
    CHECK_INT(o.width, 640);
    CHECK_INT(o.height, 480);
    CHECK_INT(o.frames, 1);
    s.b[15] = 'X'; /* not IHDR first */
    o = sniffed(s.b, s.n);
    CHECK_INT(o.width, 0);
    CHECK_INT(o.frames, 1);
}

/* ---------------------------------------------------------------- the frame cap */

/* 1,000,001 GIF frames, TIFF IFDs and WebP frames: counted up to SNIFF_MAX_COUNT. */
static void test_max_count(void)
{
    size_t n = (size_t)SNIFF_MAX_COUNT + 1;
    unsigned char *d = calloc(13 + 12 * n + 1, 1);
    CHECK(d != NULL);
    if (d == NULL) {
        return;
    }
    memcpy(d, "GIF89a\x01\x00\x01\x00", 10);
    for (size_t k = 0; k < n; k++) {
        unsigned char *f = d + 13 + 12 * k; /* 1x1, no colour table, code size 2, no data */
        memcpy(f, "\x2C\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x00", 12);
    }
    d[13 + 12 * n] = 0x3B;
    CHECK_INT(sniffed(d, 13 + 12 * n + 1).frames, SNIFF_MAX_COUNT);
    free(d);
    d = calloc(8 + 6 * n, 1);
    CHECK(d != NULL);
    if (d == NULL) {
        return;
    }
    memcpy(d, "II\x2A\x00\x08\x00\x00\x00", 8);
    for (size_t k = 0; k + 1 < n; k++) { /* no entries, then the next IFD's offset */
        unsigned long next = (unsigned long)(8 + 6 * (k + 1));
        for (int i = 0; i < 4; i++) {
            d[8 + 6 * k + 2 + (size_t)i] = (unsigned char)(next >> (8 * i));
        }
    }
    CHECK_INT(sniffed(d, 8 + 6 * n).frames, SNIFF_MAX_COUNT);
    free(d);
    d = calloc(12 + 24 * n, 1); /* WebP: ANMF chunks of a 1x1 frame */
    CHECK(d != NULL);
    if (d == NULL) {
        return;
    }
    memcpy(d, "RIFF\x00\x00\x00\x00WEBP", 12);
    for (size_t k = 0; k < n; k++) {
        memcpy(d + 12 + 24 * k, "ANMF\x10\x00\x00\x00", 8);
    }
    CHECK_INT(sniffed(d, 12 + 24 * n).frames, SNIFF_MAX_COUNT);
    free(d);
}

/* ---------------------------------------------------------------- magic and names */

/* What a few bytes are: a signature's prefix is not the format. */
static void test_magic(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        enum sniff_format f;
        const char *name;
    } cases[] = {
        {"\xFF\xD8\xFF", 3, SNIFF_JPEG, "JPEG"},
        {"\xFF\xD8\xFF", 2, SNIFF_OTHER, "text"},
        {"\xFF\xD8\x00\x00", 4, SNIFF_OTHER, "unknown"},
        {"\x89PNG\r\n\x1A\n", 8, SNIFF_PNG, "PNG"},
        {"\x89PNG\r\n\x1A\n", 7, SNIFF_OTHER, "unknown"},
        {"\x89PNG\r\n\x00\n", 8, SNIFF_OTHER, "unknown"},
        {"GIF87a", 6, SNIFF_GIF, "GIF"},
        {"GIF89a", 5, SNIFF_OTHER, "text"},
        {"GIF87b", 6, SNIFF_OTHER, "text"},
        {"RIFF\x00\x00\x00\x00WEBP", 12, SNIFF_WEBP, "WebP"},
        {"RIFF\x00\x00\x00\x00WEBP", 11, SNIFF_OTHER, "RIFF"},
        {"RIFF\x00\x00\x00\x00"
         "AVI LIST",
         16, SNIFF_OTHER, "AVI"},
        {"RIFF\x00\x00\x00\x00WAVEfmt ", 16, SNIFF_OTHER, "WAV"},
        {"RIFF\x00\x00\x00\x00WEBQ", 12, SNIFF_OTHER, "RIFF"},
        {"II\x2B\x00", 4, SNIFF_TIFF, "TIFF"},
        {"MM\x00\x2A", 3, SNIFF_OTHER, "unknown"},
        {"BM", 2, SNIFF_BMP, "BMP"},
        {"BA\x00\x00", 4, SNIFF_OTHER, "unknown"},
        {"\x00\x00\x00\x18"
         "ftypheic",
         11, SNIFF_OTHER, "unknown"},
        {"%PDF-1.4\n", 9, SNIFF_OTHER, "PDF"},
        {"%!PS-Adobe-3.0", 14, SNIFF_OTHER, "PostScript"},
        {"\x8BJNG\r\n\x1A\n", 8, SNIFF_OTHER, "JNG"},
        {"", 0, SNIFF_OTHER, "empty file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sniff_info o = sniffed(cases[i].bytes, cases[i].len);
        CHECK_INT(o.format, cases[i].f);
        CHECK_STR(o.name, cases[i].name);
    }
    struct sniff_info o = sniffed(NULL, 5);
    CHECK_INT(o.format, SNIFF_OTHER);
    CHECK_STR(o.name, "empty file");
}

/* The names of text files and PNM. */
static void test_text(void)
{
    static const struct {
        const char *text, *name;
    } cases[] = {
        {"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"},
        {"\xEF\xBB\xBF \n<SVG/>", "SVG"},
        {"<?xml version='1.0'?><!DOCTYPE svg PUBLIC '-//W3C//DTD SVG 1.1//EN'>", "SVG"},
        {"<!DOCTYPE html><p>", "HTML"},
        {"<p>x</p><HTML", "HTML"},
        {"<head>", "HTML"},
        {"<msl><image size='1x1'/></msl>", "MSL"},
        {"<msl><group/></msl>", "MSL"},
        {"<a><b/></a>", "XML"},
        {"push graphic-context\nviewbox 0 0 1 1\n", "MVG"},
        {"viewbox 0 0 10 10\n", "MVG"},
        {"see viewbox 0 0 1 1", "text"},
        {"hello\tworld\r\n\f\v", "text"},
        {" \n\t", "unknown"},
        {"ab\x01", "unknown"},
        {"P7\nWIDTH 1\n", "PNM"},
        {"P1 1 1\n1\n", "PNM"},
        {"P8 1 1\n", "text"},
        {"P6", "text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sniff_info o = sniffed(cases[i].text, strlen(cases[i].text));
        CHECK_INT(o.format, SNIFF_OTHER);
        CHECK_STR(o.name, cases[i].name);
    }
    /* only the first 4096 bytes after the blanks are searched */
    char big[4200];
    memset(big, ' ', sizeof big);
    memcpy(big + 10, "<x>", 3);
    memcpy(big + 10 + 4096 - 4, "<svg", 4);
    CHECK_STR(sniffed(big, sizeof big).name, "SVG");
    memcpy(big + 10 + 4096 - 4, "<sv ", 4);
    memcpy(big + 10 + 4096 - 3, "<svg", 4);
    CHECK_STR(sniffed(big, sizeof big).name, "XML");
}

static void test_format_names(void)
{
    static const char *const names[] = {"jpeg", "png",  "gif",  "webp",
                                        "tiff", "heic", "avif", "bmp"};
    for (int f = SNIFF_JPEG; f < SNIFF_N_FORMATS; f++) {
        CHECK_STR(sniff_format_name((enum sniff_format)f), names[f - SNIFF_JPEG]);
        CHECK_INT(sniff_format_named(names[f - SNIFF_JPEG]), f);
    }
    CHECK(sniff_format_name(SNIFF_OTHER) == NULL);
    CHECK(sniff_format_name(SNIFF_N_FORMATS) == NULL);
    CHECK_INT(sniff_format_named("JPG"), SNIFF_JPEG);
    CHECK_INT(sniff_format_named("Tif"), SNIFF_TIFF);
    CHECK_INT(sniff_format_named("heif"), SNIFF_HEIC);
    CHECK_INT(sniff_format_named("svg"), SNIFF_OTHER);
    CHECK_INT(sniff_format_named(""), SNIFF_OTHER);
}

int main(void)
{
    test_size();
    test_eoi();
    test_markers();
    test_eoi_front();
    test_cuts();
    test_gif();
    test_webp();
    test_tiff();
    test_heif();
    test_brands();
    test_png();
    test_max_count();
    test_magic();
    test_text();
    test_format_names();
    test_bmp();
    return check_summary("sniff");
}
