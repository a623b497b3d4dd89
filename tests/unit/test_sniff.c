/* Unit tests of worker/sniff.c's JPEG walk: the size from SOF, and `truncated` (no EOI marker
 * after the first scan), whatever the bytes around the markers; and of its BMP headers. */
#include <stdbool.h>
#include <string.h>

#include "check.h"
#include "sniff.h"

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

/* Every cut of a JPEG that ends in EOI is truncated; the whole file is not. */
static void test_cuts(void)
{
    unsigned char data[sizeof head + 40];
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

int main(void)
{
    test_size();
    test_eoi();
    test_cuts();
    test_bmp();
    return check_summary("sniff");
}
