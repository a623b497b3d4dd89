/* Unit tests for settags: set_exif's checks, and the EXIF, IPTC and Photoshop blocks it writes,
 * read back by a reader of the test's own. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "settags.h"

static json_object *parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    if (o == NULL) {
        fprintf(stderr, "bad JSON in test: %s\n", text);
        exit(1);
    }
    return o;
}

/* settags_check()'s message for `set` and `format`, "" when it passes. */
static const char *checked(const char *set, const char *format)
{
    static struct err e;
    json_object *o = parse(set);
    e.msg[0] = '\0';
    int rc = settags_check(o, format, "'x'", &e);
    json_object_put(o);
    return rc == 0 ? "" : e.msg;
}

static void append(char *to, size_t cap, const char *s)
{
    size_t n = strlen(to);
    snprintf(to + n, cap - n, "%s", s);
}

/* set_exif values, the output's format, and what settags_check() says ("" when it passes). */
static const struct {
    const char *set, *format, *message;
} checks[] = {
    {"{\"Copyright\": \"me\", \"keywords\": [\"a\", \"b\"], \"IPTC:ObjectName\": "
     "\"o\", \"exif:artist\": 42, \"Make\": \"\", \"Model\": null}",
     "jpg", ""},
    {"{\"ModifyDate\": \"2026:12:01 10:11:12\", \"DateCreated\": \"20261201\"}", "png", ""},
    {"{\"Copyright\": \"c\"}", "webp", ""},
    {"[]", "jpg", "set_exif of 'x' must be an object of tag names and values"},
    {"{\"Title\": \"t\"}", "jpg",
     "set_exif of 'x': 'Title' is not a tag pixq writes (EXIF: Artist, Copyright, "
     "ImageDescription...; IPTC: ObjectName, Keywords, Caption-Abstract...: see README)"},
    {"{\"EXIF:Keywords\": \"k\"}", "jpg",
     "set_exif of 'x': 'EXIF:Keywords' is not a tag pixq writes (EXIF: Artist, Copyright, "
     "ImageDescription...; IPTC: ObjectName, Keywords, Caption-Abstract...: see README)"},
    /* an unknown name is quoted as ASCII, its first 60 bytes */
    {"{\"T\\u0007\u00e9"
     "0123456789012345678901234567890123456789012345678901234567XYZ\": 1}",
     "jpg",
     "set_exif of 'x': 'T???01234567890123456789012345678901234567890123456789012345' is not a "
     "tag pixq writes (EXIF: Artist, Copyright, ImageDescription...; IPTC: ObjectName, Keywords, "
     "Caption-Abstract...: see README)"},
    {"{\"ObjectName\": "
     "\"0123456789012345678901234567890123456789012345678901234567890123X\"}",
     "jpg", "set_exif of 'x': ObjectName is 65 bytes, more than IPTC allows (64)"},
    {"{\"Copyright\": [\"a\"]}", "jpg", "set_exif of 'x': Copyright takes one value, not a list"},
    {"{\"Keywords\": [\"a\", {}]}", "jpg",
     "set_exif of 'x': Keywords must be text, or a list of texts"},
    {"{\"Artist\": true}", "jpg", "set_exif of 'x': Artist must be text"},
    {"{\"Artist\": \"a\\u0007b\"}", "jpg",
     "set_exif of 'x': Artist must be UTF-8 without control characters (but tab and "
     "line breaks)"},
    {"{\"Caption-Abstract\": \"line\\nline\\ttab\"}", "jpg", ""},
    {"{\"Artist\": \"a\\u0085b\"}", "jpg",
     "set_exif of 'x': Artist must be UTF-8 without control characters (but tab and "
     "line breaks)"},
    {"{\"ModifyDate\": \"2026-12-01 10:11:12\"}", "jpg",
     "set_exif of 'x': ModifyDate must be a date (YYYY:MM:DD HH:MM:SS)"},
    {"{\"DateCreated\": \"2026/12/01\"}", "jpg",
     "set_exif of 'x': DateCreated must be a date (YYYY:MM:DD)"},
    {"{\"Keywords\": \"k\"}", "webp",
     "set_exif of 'x': a webp output holds no IPTC tags (Keywords): JPEG and PNG outputs "
     "hold them"},
    {"{\"ObjectName\": \"one\", \"IPTC:ObjectName\": \"two\"}", "jpg",
     "set_exif of 'x': 'ObjectName' and 'IPTC:ObjectName' name the same tag"},
    {"{\"DateTime\": null, \"ModifyDate\": \"2020:01:02 03:04:05\"}", "jpg",
     "set_exif of 'x': 'DateTime' and 'ModifyDate' name the same tag"},
    {"{\"Copyright\": \"c\"}", "gif",
     "set_exif of 'x': a gif output holds no EXIF tags (Copyright): JPEG, PNG and WebP "
     "outputs hold them"},
    {"{\"Keywords\": \"k\"}", "jpeg", ""},
    /* a group is EXIF, IFD0 or IPTC, the whole of it */
    {"{\"IFD0:Copyright\": \"c\"}", "jpg", ""},
    {"{\"EXIFX:Copyright\": \"c\"}", "jpg",
     "set_exif of 'x': 'EXIFX:Copyright' is not a tag pixq writes (EXIF: Artist, Copyright, "
     "ImageDescription...; IPTC: ObjectName, Keywords, Caption-Abstract...: see README)"},
    {"{\"XMP:Copyright\": \"c\"}", "jpg",
     "set_exif of 'x': 'XMP:Copyright' is not a tag pixq writes (EXIF: Artist, Copyright, "
     "ImageDescription...; IPTC: ObjectName, Keywords, Caption-Abstract...: see README)"},
    /* lengths: at most IPTC's, that length itself allowed */
    {"{\"ObjectName\": "
     "\"0123456789012345678901234567890123456789012345678901234567890123\"}",
     "jpg", ""},
    {"{\"Category\": \"abc\"}", "jpg", ""},
    {"{\"Category\": \"abcd\"}", "jpg",
     "set_exif of 'x': Category is 4 bytes, more than IPTC allows (3)"},
    /* the control characters: C0 but tab, LF and CR; DEL; C1 (U+0080 to U+009F) */
    {"{\"Artist\": \"a\\r\\nb\\u00a0\"}", "jpg", ""},
    {"{\"Artist\": \"a\\u001fb\"}", "jpg",
     "set_exif of 'x': Artist must be UTF-8 without control characters (but tab and "
     "line breaks)"},
    {"{\"Artist\": \"a\\u007fb\"}", "jpg",
     "set_exif of 'x': Artist must be UTF-8 without control characters (but tab and "
     "line breaks)"},
    {"{\"Artist\": \"a\\u009fb\"}", "jpg",
     "set_exif of 'x': Artist must be UTF-8 without control characters (but tab and "
     "line breaks)"},
    {"{\"Artist\": \"a\xff\"}", "jpg",
     "set_exif of 'x': Artist must be UTF-8 without control characters (but tab and "
     "line breaks)"},
    /* a number is its text */
    {"{\"Artist\": 1.5, \"Make\": 7}", "jpg", ""},
    /* dates: every separator and digit checked; "" deletes */
    {"{\"ModifyDate\": \"2019:09:29 19:59:59\", \"DateCreated\": \"1999:09:09\"}", "jpg", ""},
    {"{\"ModifyDate\": \"\", \"DateCreated\": \"\"}", "jpg", ""},
    {"{\"ModifyDate\": \"2026-12:01 10:11:12\"}", "jpg",
     "set_exif of 'x': ModifyDate must be a date (YYYY:MM:DD HH:MM:SS)"},
    {"{\"ModifyDate\": \"2026:12:01T10:11:12\"}", "jpg",
     "set_exif of 'x': ModifyDate must be a date (YYYY:MM:DD HH:MM:SS)"},
    {"{\"ModifyDate\": \"2026:12:01 10:11:1x\"}", "jpg",
     "set_exif of 'x': ModifyDate must be a date (YYYY:MM:DD HH:MM:SS)"},
    {"{\"ModifyDate\": \"2026:12:01 10:11:12 \"}", "jpg",
     "set_exif of 'x': ModifyDate must be a date (YYYY:MM:DD HH:MM:SS)"},
    {"{\"DateCreated\": \"2026120x\"}", "jpg",
     "set_exif of 'x': DateCreated must be a date (YYYY:MM:DD)"},
    {"{\"DateCreated\": \"2026-12:01\"}", "jpg",
     "set_exif of 'x': DateCreated must be a date (YYYY:MM:DD)"},
    {"{\"DateCreated\": \"2026:12-01\"}", "jpg",
     "set_exif of 'x': DateCreated must be a date (YYYY:MM:DD)"},
};

static void test_check(void)
{
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        const char *got = checked(checks[i].set, checks[i].format);
        if (strcmp(got, checks[i].message) != 0) {
            fprintf(stderr, "  %s (%s)\n", checks[i].set, checks[i].format);
        }
        CHECK_STR(got, checks[i].message);
    }

    char many[2048] = "{";
    for (int i = 0; i <= SETTAGS_MAX_TAGS; i++) {
        char one[32];
        snprintf(one, sizeof one, "%s\"K%d\": \"k\"", i > 0 ? ", " : "", i);
        append(many, sizeof many, one);
    }
    append(many, sizeof many, "}");
    CHECK_STR(checked(many, "jpg"), "set_exif of 'x' has more than 32 tags");
    /* 32 names are not too many: each is then checked (the first is no tag) */
    many[strlen(many) - strlen(", \"K32\": \"k\"}")] = '\0';
    append(many, sizeof many, "}");
    CHECK_STR(checked(many, "jpg"),
              "set_exif of 'x': 'K0' is not a tag pixq writes (EXIF: Artist, Copyright, "
              "ImageDescription...; IPTC: ObjectName, Keywords, Caption-Abstract...: see README)");
    char list[2048] = "{\"Keywords\": [";
    for (int i = 0; i <= SETTAGS_MAX_VALUES; i++) {
        append(list, sizeof list, i > 0 ? ", \"k\"" : "\"k\"");
    }
    append(list, sizeof list, "]}");
    CHECK_STR(checked(list, "jpg"), "set_exif of 'x': Keywords has more than 64 values");
    list[strlen(list) - strlen(", \"k\"]}")] = '\0'; /* 64 of them */
    append(list, sizeof list, "]}");
    CHECK_STR(checked(list, "jpg"), "");
    char caption[2100] = "{\"Caption-Abstract\": \"";
    size_t at = strlen(caption);
    memset(caption + at, 'c', 2000);
    snprintf(caption + at + 2000, sizeof caption - at - 2000, "\"}");
    CHECK_STR(checked(caption, "jpg"), "");
    snprintf(caption + at + 2000, sizeof caption - at - 2000, "c\"}");
    CHECK_STR(checked(caption, "jpg"),
              "set_exif of 'x': Caption-Abstract is 2001 bytes, more than IPTC allows (2000)");

    /* the name pixq gives a key, and its group */
    enum settags_group group = SETTAGS_EXIF;
    CHECK_STR(settags_name("iptc:KEYWORDS", &group), "Keywords");
    CHECK_INT(group, SETTAGS_IPTC);
    CHECK_STR(settags_name("datetime", &group), "DateTime");
    CHECK_INT(group, SETTAGS_EXIF);
    CHECK(settags_name("Title", &group) == NULL);

    json_object *o = parse("{\"Copyright\": \"c\"}");
    CHECK(settags_has(o, SETTAGS_EXIF));
    CHECK(!settags_has(o, SETTAGS_IPTC));
    json_object_put(o);
}

/* ---- a reader of TIFF structures ---- */

static unsigned rd16(const unsigned char *p, bool be)
{
    return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static unsigned long rd32(const unsigned char *p, bool be)
{
    return be ? (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 |
                    p[3]
              : (unsigned long)p[3] << 24 | (unsigned long)p[2] << 16 | (unsigned long)p[1] << 8 |
                    p[0];
}

static void wr16(unsigned char *p, unsigned v, bool be)
{
    p[be ? 0 : 1] = (unsigned char)(v >> 8);
    p[be ? 1 : 0] = (unsigned char)v;
}

static void wr32(unsigned char *p, unsigned long v, bool be)
{
    for (int i = 0; i < 4; i++) {
        p[be ? 3 - i : i] = (unsigned char)(v >> (8 * i));
    }
}

/* The IFD at `ifd` of the TIFF at `t`: its entry count, and the entry with `tag` (NULL: none). */
static const unsigned char *ifd_entry(const unsigned char *t, bool be, unsigned long ifd,
                                      unsigned tag, unsigned *count)
{
    *count = rd16(t + ifd, be);
    for (unsigned i = 0; i < *count; i++) {
        const unsigned char *e = t + ifd + 2 + 12 * i;
        if (rd16(e, be) == tag) {
            return e;
        }
    }
    return NULL;
}

/* The ASCII value of `tag` in IFD0 of the EXIF block `b`, or NULL. */
static const char *exif_text(const struct buf *b, unsigned tag)
{
    static char text[4096];
    const unsigned char *t = (const unsigned char *)b->data + 6;
    bool be = t[0] == 'M';
    unsigned n;
    const unsigned char *e = ifd_entry(t, be, rd32(t + 4, be), tag, &n);
    if (e == NULL || rd16(e + 2, be) != 2) {
        return NULL;
    }
    unsigned long count = rd32(e + 4, be);
    const unsigned char *v = count <= 4 ? e + 8 : t + rd32(e + 8, be);
    if (count == 0 || count > sizeof text || v[count - 1] != '\0') {
        return NULL;
    }
    memcpy(text, v, count);
    return text;
}

/* What write_tags() passes for a JPEG of 300 dpi, and for a PNG without a density. */
static const struct settags_image JPEG_300 = {.x_res = 300, .y_res = 300, .unit = 2, .jpeg = true};
static const struct settags_image PNG_NONE = {.x_res = 1, .y_res = 1, .unit = 1, .jpeg = false};

/* The value of the one-valued SHORT or RATIONAL (its numerator, over 1) `tag` in IFD0 of `b`;
 * -1 if it is not there, or not such, or not over 1. */
static long exif_number(const struct buf *b, unsigned tag)
{
    const unsigned char *t = (const unsigned char *)b->data + 6;
    bool be = t[0] == 'M';
    unsigned n;
    const unsigned char *e = ifd_entry(t, be, rd32(t + 4, be), tag, &n);
    if (e == NULL || rd32(e + 4, be) != 1) {
        return -1;
    }
    if (rd16(e + 2, be) == 3) {
        return (long)rd16(e + 8, be);
    }
    const unsigned char *v = t + rd32(e + 8, be);
    return rd16(e + 2, be) == 5 && rd32(v + 4, be) == 1 ? (long)rd32(v, be) : -1;
}

static void test_exif_new(void)
{
    struct buf b;
    struct err e;
    buf_init(&b, 0);
    json_object *set = parse("{\"Copyright\": \"(c) 2026 Ann\", \"make\": \"ab\", \"Keywords\": "
                             "\"k\", \"Model\": \"\", \"DateTime\": \"2026:12:01 10:11:12\"}");
    CHECK_INT(settags_exif(set, NULL, 0, &JPEG_300, &b, &e), 0);
    CHECK(b.len > 14 && memcmp(b.data, "Exif\0\0II*\0", 10) == 0);
    const unsigned char *t = (const unsigned char *)b.data + 6;
    unsigned n = 0;
    ifd_entry(t, false, rd32(t + 4, false), 0, &n);
    /* Make, DateTime, Copyright (Model "" is not written, Keywords is IPTC), and the four tags
     * EXIF requires in IFD0 (as exiftool writes them): XResolution, YResolution, ResolutionUnit
     * and YCbCrPositioning, in the order of their tags */
    CHECK_INT(n, 7);
    unsigned long ifd = rd32(t + 4, false);
    static const unsigned order[] = {0x010f, 0x011a, 0x011b, 0x0128, 0x0132, 0x0213, 0x8298};
    for (unsigned i = 0; i < 7; i++) {
        CHECK_INT(rd16(t + ifd + 2 + 12 * i, false), order[i]);
    }
    CHECK_INT(rd32(t + ifd + 2 + 12 * 7, false), 0); /* no IFD1 */
    CHECK_STR(exif_text(&b, 0x010f), "ab");          /* 3 bytes: in the entry */
    CHECK_STR(exif_text(&b, 0x8298), "(c) 2026 Ann");
    CHECK_STR(exif_text(&b, 0x0132), "2026:12:01 10:11:12");
    CHECK_INT(exif_number(&b, 0x011a), 300);
    CHECK_INT(exif_number(&b, 0x011b), 300);
    CHECK_INT(exif_number(&b, 0x0128), 2); /* inches */
    CHECK_INT(exif_number(&b, 0x0213), 1); /* centred */
    /* the values after the IFD, each in its own bytes */
    size_t end = ifd + 2 + 12 * 7 + 4 + 8 + 8 + 20 + 14;
    CHECK_INT(b.len, end + 6);

    /* another format: no YCbCrPositioning; no density is 1:1 without a unit */
    CHECK_INT(settags_exif(set, NULL, 0, &PNG_NONE, &b, &e), 0);
    t = (const unsigned char *)b.data + 6;
    ifd_entry(t, false, rd32(t + 4, false), 0, &n);
    CHECK_INT(n, 6);
    CHECK_INT(exif_number(&b, 0x011a), 1);
    CHECK_INT(exif_number(&b, 0x0128), 1);
    CHECK_INT(exif_number(&b, 0x0213), -1);
    json_object_put(set);

    /* every EXIF tag at its number (TIFF 6.0's); a value of 3 bytes (4 with its NUL) in the
     * entry, nothing after the IFD for it; XResolution and YResolution each their own */
    set = parse("{\"DocumentName\": \"dn\", \"ImageDescription\": \"id\", \"Make\": \"ma\", "
                "\"Model\": \"mo\", \"Software\": \"so\", \"ModifyDate\": \"2026:12:01 10:11:12\", "
                "\"Artist\": \"abc\", \"HostComputer\": \"hc\", \"Copyright\": \"co\"}");
    static const struct settags_image PNG_300_200 = {.x_res = 300, .y_res = 200, .unit = 2};
    CHECK_INT(settags_exif(set, NULL, 0, &PNG_300_200, &b, &e), 0);
    static const struct {
        unsigned tag;
        const char *text;
    } numbers[] = {{0x010d, "dn"},  {0x010e, "id"}, {0x010f, "ma"},
                   {0x0110, "mo"},  {0x0131, "so"}, {0x0132, "2026:12:01 10:11:12"},
                   {0x013b, "abc"}, {0x013c, "hc"}, {0x8298, "co"}};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        CHECK_STR(exif_text(&b, numbers[i].tag), numbers[i].text);
    }
    CHECK_INT(exif_number(&b, 0x011a), 300);
    CHECK_INT(exif_number(&b, 0x011b), 200);
    CHECK_INT(b.len, 6 + 8 + 2 + 12 * 12 + 4 + 20 + 8 + 8);
    json_object_put(set);

    set = parse("{\"Copyright\": \"\", \"Keywords\": \"k\"}"); /* nothing to write, nothing old */
    CHECK_INT(settags_exif(set, NULL, 0, &JPEG_300, &b, &e), 0);
    CHECK_INT(b.len, 0);
    json_object_put(set);
    buf_finish(&b);
}

/* An EXIF block of a camera, big-endian: IFD0 (Make, Orientation, the EXIF IFD's pointer, then
 * IFD1) with Make's text after it, the EXIF IFD (ExposureTime as RATIONAL) and IFD1. */
static size_t camera_exif(unsigned char *p)
{
    memset(p, 0, 200);
    memcpy(p, "Exif\0\0MM\0*", 10);
    unsigned char *t = p + 6;
    wr32(t + 4, 8, true);
    wr16(t + 8, 3, true);
    unsigned char *e = t + 10;
    wr16(e, 0x010f, true); /* Make "CameraCo" at 60 */
    wr16(e + 2, 2, true);
    wr32(e + 4, 9, true);
    wr32(e + 8, 60, true);
    wr16(e + 12, 0x0112, true); /* Orientation 6, inline */
    wr16(e + 14, 3, true);
    wr32(e + 16, 1, true);
    wr16(e + 20, 6, true);
    wr16(e + 24, 0x8769, true); /* EXIF IFD at 70 */
    wr16(e + 26, 4, true);
    wr32(e + 28, 1, true);
    wr32(e + 32, 70, true);
    wr32(t + 46, 100, true); /* IFD1 at 100 */
    memcpy(t + 60, "CameraCo", 9);
    wr16(t + 70, 1, true); /* ExposureTime 1/640 at 88 */
    wr16(t + 72, 0x829a, true);
    wr16(t + 74, 5, true);
    wr32(t + 76, 1, true);
    wr32(t + 80, 88, true);
    wr32(t + 84, 0, true);
    wr32(t + 88, 1, true);
    wr32(t + 92, 640, true);
    wr16(t + 100, 0, true); /* an empty IFD1 */
    wr32(t + 102, 0, true);
    return 6 + 106;
}

/* An EXIF block, big-endian, whose IFD0 has Make's text (`make_n` bytes at `make_at`, which may
 * be any bytes of the block), Model's, the EXIF IFD's pointer (to `exif_at`), the GPS IFD's, and
 * a LONG whose value is the offset of Make's text were it at 189, where it is in most tests.
 * The EXIF IFD (80: ExposureTime RATIONAL at 112, the interoperability IFD 122), GPS IFD (142)
 * and IFD1 (162) each have an entry; Model's text is at 180, its end where that 189 begins. */
static size_t linked_exif(unsigned char *p, unsigned long make_at, unsigned long make_n,
                          unsigned long exif_at)
{
    memset(p, 0, 256);
    memcpy(p, "Exif\0\0MM\0*", 10);
    unsigned char *t = p + 6;
    wr32(t + 4, 8, true);
    static const struct {
        unsigned tag, type;
        unsigned long count, value;
    } ifd0[] = {{0x010f, 2, 0, 0},
                {0x0110, 2, 9, 180},
                {0x8769, 4, 1, 0},
                {0x8825, 4, 1, 142},
                {0xc000, 4, 1, 189}};
    wr16(t + 8, 5, true);
    for (unsigned i = 0; i < 5; i++) {
        unsigned char *e = t + 10 + 12 * i;
        wr16(e, ifd0[i].tag, true);
        wr16(e + 2, ifd0[i].type, true);
        wr32(e + 4, i == 0 ? make_n : ifd0[i].count, true);
        wr32(e + 8, i == 0 ? make_at : i == 2 ? exif_at : ifd0[i].value, true);
    }
    wr32(t + 70, 162, true); /* IFD1 */
    wr16(t + 80, 2, true);   /* the EXIF IFD */
    wr16(t + 82, 0x829a, true);
    wr16(t + 84, 5, true);
    wr32(t + 86, 1, true);
    wr32(t + 90, 112, true);
    wr16(t + 94, 0xa005, true);
    wr16(t + 96, 4, true);
    wr32(t + 98, 1, true);
    wr32(t + 102, 122, true);
    wr32(t + 112, 1, true); /* 1/640 */
    wr32(t + 116, 640, true);
    wr16(t + 122, 1, true); /* the interoperability IFD: InteropIndex "R98" */
    wr16(t + 124, 0x0001, true);
    wr16(t + 126, 2, true);
    wr32(t + 128, 4, true);
    memcpy(t + 132, "R98", 4);
    wr16(t + 142, 1, true); /* the GPS IFD: GPSVersionID 2.2.0.0 */
    wr16(t + 146, 1, true);
    wr32(t + 148, 4, true);
    memcpy(t + 152, "\2\2\0\0", 4);
    wr16(t + 162, 1, true); /* IFD1: Compression 6 */
    wr16(t + 164, 0x0103, true);
    wr16(t + 166, 3, true);
    wr32(t + 168, 1, true);
    wr16(t + 172, 6, true);
    memcpy(t + 180, "ModelXYZ", 9);
    memcpy(t + 189, "CameraCo", 9);
    return 6 + 198;
}

/* A source's block of `n` IFD0 entries (8 EXIF IFD pointers to one IFD of `n` entries, then
 * Makes sharing one text) and that IFD, little-endian, into `t` (malloc'd); its length. */
static size_t many_makes(unsigned n, unsigned char **t)
{
    size_t text = 8 + 2 + 12 * (size_t)n + 4, ifd = text + 8, len = ifd + 2 + 12 * (size_t)n + 4;
    unsigned char *p = *t = calloc(1, len);
    memcpy(p, "II*\0", 4);
    wr32(p + 4, 8, false);
    wr16(p + 8, n, false);
    for (unsigned i = 0; i < n; i++) {
        unsigned char *e = p + 10 + 12 * (size_t)i;
        wr16(e, i < 8 ? 0x8769 : 0x010f, false);
        wr16(e + 2, i < 8 ? 4 : 2, false);
        wr32(e + 4, i < 8 ? 1 : 6, false);
        wr32(e + 8, i < 8 ? ifd : text, false);
    }
    memcpy(p + text, "Maker", 6);
    wr16(p + ifd, n, false);
    for (unsigned i = 0; i < n; i++) { /* UserComment, its 4 bytes in the entry */
        unsigned char *e = p + ifd + 2 + 12 * (size_t)i;
        wr16(e, 0x9286, false);
        wr16(e + 2, 7, false);
        wr32(e + 4, 4, false);
    }
    return len;
}

/* The old block is walked once, not once for each entry dropped: a 0.5 MB block of 20,000 Makes
 * and an EXIF IFD of 20,000 entries, Make set, took 6.5 s (1 MB, 27 s: ImageMagick's time limit
 * does not reach it); now milliseconds. */
static void test_exif_linear(void)
{
    struct buf b;
    struct err e;
    buf_init(&b, 0);
    unsigned char *old;
    size_t len = many_makes(20000, &old);
    json_object *set = parse("{\"Make\": \"pixq\"}");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_INT(settags_exif(set, old, len, &PNG_NONE, &b, &e), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (took >= 1) {
        fprintf(stderr, "  settags_exif() took %.1f s\n", took);
    }
    CHECK(took < 1);
    CHECK_STR(exif_text(&b, 0x010f), "pixq");
    bool left = false; /* the old text, dropped, zeroed */
    for (size_t i = 0; i + 6 <= b.len && !left; i++) {
        left = memcmp(b.data + i, "Maker", 6) == 0;
    }
    CHECK(!left);
    json_object_put(set);
    free(old);
    buf_finish(&b);
}

/* Make deleted: its text zeroed, unless what the block keeps uses its bytes. */
static void test_exif_shared_bytes(void)
{
    struct buf b;
    struct err e;
    buf_init(&b, 0);
    json_object *set = parse("{\"Make\": null}");
    static const struct {
        unsigned long at, n; /* Make's text */
        bool kept;
    } cases[] = {
        {189, 9, false}, /* right after Model's text; the LONG's value is no offset */
        {80, 9, true},   /* the EXIF IFD's directory */
        {116, 5, true},  /* ExposureTime's denominator */
        {122, 9, true},  /* the interoperability IFD */
        {142, 9, true},  /* the GPS IFD */
        {162, 9, true},  /* IFD1 */
        {180, 9, true},  /* Model's text */
        {188, 9, true},  /* its last byte only */
    };
    unsigned char old[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t old_len = linked_exif(old, cases[i].at, cases[i].n, 80);
        CHECK_INT(settags_exif(set, old, old_len, &JPEG_300, &b, &e), 0);
        const unsigned char *t = (const unsigned char *)b.data + 6;
        static const unsigned char zeros[9];
        bool same = memcmp(t + cases[i].at, old + 6 + cases[i].at, cases[i].n) == 0;
        bool zeroed = memcmp(t + cases[i].at, zeros, cases[i].n) == 0;
        if (!(cases[i].kept ? same : zeroed)) {
            fprintf(stderr, "  Make's text at %lu\n", cases[i].at);
        }
        CHECK(cases[i].kept ? same : zeroed);
        unsigned n = 0;
        CHECK(ifd_entry(t, true, rd32(t + 4, true), 0x010f, &n) == NULL);
        CHECK_INT(n, 4);
    }
    /* over the header: it stays; past the block's end: nothing zeroed */
    size_t old_len = linked_exif(old, 2, 9, 80);
    CHECK_INT(settags_exif(set, old, old_len, &JPEG_300, &b, &e), 0);
    CHECK(memcmp(b.data, "Exif\0\0MM\0*", 10) == 0);
    old_len = linked_exif(old, 195, 4096, 80);
    CHECK_INT(settags_exif(set, old, old_len, &JPEG_300, &b, &e), 0);
    CHECK(memcmp(b.data + 6 + 80, old + 6 + 80, old_len - 6 - 80) == 0);
    /* an EXIF IFD that is IFD0 itself: the old IFD0 is not zeroed */
    old_len = linked_exif(old, 189, 9, 8);
    CHECK_INT(settags_exif(set, old, old_len, &JPEG_300, &b, &e), 0);
    CHECK(memcmp(b.data + 6 + 8, old + 6 + 8, 66) == 0);
    json_object_put(set);
    buf_finish(&b);
}

static bool contains(const struct buf *b, const char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i + n <= b->len; i++) {
        if (memcmp(b->data + i, text, n) == 0) {
            return true;
        }
    }
    return false;
}

static void test_exif_merged(void)
{
    struct buf b;
    struct err e;
    buf_init(&b, 0);
    unsigned char old[256];
    size_t old_len = camera_exif(old);
    json_object *set = parse("{\"Make\": null, \"Copyright\": \"mine\", \"Artist\": \"Bo\"}");
    CHECK_INT(settags_exif(set, old, old_len, &JPEG_300, &b, &e), 0);
    const unsigned char *t = (const unsigned char *)b.data + 6;
    CHECK(memcmp(b.data, "Exif\0\0MM\0*", 10) == 0); /* its byte order kept */
    /* the old bytes where they were (the EXIF IFD and IFD1 at 70 to 106), but the old IFD0 and
     * the deleted Make's text, zeroed (8 to 70) */
    CHECK(memcmp(t + 70, old + 6 + 70, old_len - 6 - 70) == 0);
    static const unsigned char zeros[62];
    CHECK(memcmp(t + 8, zeros, sizeof zeros) == 0);
    unsigned long ifd = rd32(t + 4, true);
    CHECK(ifd >= old_len - 6 && ifd % 2 == 0);
    unsigned n = 0;
    CHECK(ifd_entry(t, true, ifd, 0x010f, &n) == NULL); /* Make deleted */
    CHECK(!contains(&b, "CameraCo"));
    CHECK_INT(n, 4); /* Orientation, Artist, EXIF, Copyright */
    const unsigned char *o = ifd_entry(t, true, ifd, 0x0112, &n);
    CHECK(o != NULL && rd16(o + 8, true) == 6);
    unsigned tags[4];
    for (unsigned i = 0; i < 4; i++) {
        tags[i] = rd16(t + ifd + 2 + 12 * i, true);
    }
    CHECK(tags[0] == 0x0112 && tags[1] == 0x013b && tags[2] == 0x8298 && tags[3] == 0x8769);
    const unsigned char *x = ifd_entry(t, true, ifd, 0x8769, &n);
    CHECK(x != NULL && rd32(x + 8, true) == 70);
    const unsigned char *exposure = ifd_entry(t, true, 70, 0x829a, &n);
    CHECK(exposure != NULL && rd32(t + rd32(exposure + 8, true) + 4, true) == 640);
    CHECK_INT(rd32(t + ifd + 2 + 12 * 4, true), 100); /* IFD1 still follows */
    CHECK_STR(exif_text(&b, 0x8298), "mine");
    CHECK_STR(exif_text(&b, 0x013b), "Bo");
    json_object_put(set);

    /* twice: the block written before is merged again, the first value replaced */
    struct buf again;
    buf_init(&again, 0);
    set = parse("{\"Copyright\": \"theirs\"}");
    CHECK_INT(settags_exif(set, (const unsigned char *)b.data, b.len, &JPEG_300, &again, &e), 0);
    CHECK_STR(exif_text(&again, 0x8298), "theirs");
    CHECK_STR(exif_text(&again, 0x013b), "Bo");
    CHECK(!contains(&again, "mine")); /* the value replaced is gone from the block */
    buf_finish(&again);

    /* a value another IFD shares stays: the EXIF IFD's entry made an ASCII tag on Make's text */
    unsigned char shared[256];
    size_t shared_len = camera_exif(shared);
    wr16(shared + 6 + 72, 0x9003, true); /* DateTimeOriginal, ASCII, 9 bytes at 60 */
    wr16(shared + 6 + 74, 2, true);
    wr32(shared + 6 + 76, 9, true);
    wr32(shared + 6 + 80, 60, true);
    json_object *no_make = parse("{\"Make\": null}");
    CHECK_INT(settags_exif(no_make, shared, shared_len, &JPEG_300, &again, &e), 0);
    json_object_put(no_make);
    t = (const unsigned char *)again.data + 6;
    CHECK(memcmp(t + 60, "CameraCo", 9) == 0);
    CHECK(ifd_entry(t, true, rd32(t + 4, true), 0x010f, &n) == NULL); /* yet Make is gone */
    buf_finish(&again);

    /* a block that does not parse (IFD0 past its end) is replaced */
    wr32(old + 6 + 4, 5000, true);
    CHECK_INT(settags_exif(set, old, old_len, &JPEG_300, &b, &e), 0);
    CHECK(memcmp(b.data, "Exif\0\0II*\0", 10) == 0);
    CHECK_STR(exif_text(&b, 0x8298), "theirs");
    t = (const unsigned char *)b.data + 6;
    ifd_entry(t, false, rd32(t + 4, false), 0, &n);
    CHECK_INT(n, 5); /* Copyright and the four mandatory tags of a new IFD0 */

    /* nor does one with IFD0 over its header, with IFD0 cut before its next IFD's offset, or
     * with another mark than "II*\0" or "MM\0*" */
    for (int i = 0; i < 3; i++) {
        old_len = camera_exif(old);
        if (i == 0) {
            wr32(old + 6 + 4, 4, true);
        } else if (i == 1) {
            old_len = 6 + 8 + 2 + 12 * 3 + 3;
        } else {
            old[6 + 3] = '+';
        }
        CHECK_INT(settags_exif(set, old, old_len, &JPEG_300, &b, &e), 0);
        CHECK(memcmp(b.data, "Exif\0\0II*\0", 10) == 0);
        CHECK_STR(exif_text(&b, 0x8298), "theirs");
    }

    /* an old block of an odd length: the new IFD0 at the next even offset */
    old_len = camera_exif(old);
    CHECK_INT(settags_exif(set, old, old_len + 1, &JPEG_300, &b, &e), 0);
    CHECK_INT(rd32((const unsigned char *)b.data + 6 + 4, true), old_len + 1 - 6 + 1);
    CHECK_STR(exif_text(&b, 0x8298), "theirs");
    json_object_put(set);

    /* the only tag of an IFD0 deleted: the block is written, its IFD0 empty */
    set = parse("{\"Make\": null}");
    static const unsigned char make_only[] = {'M', 'M', 0, '*', 0, 0,   0, 8, 0, 1, 0x01, 0x0f, 0,
                                              2,   0,   0, 0,   2, 'a', 0, 0, 0, 0, 0,    0,    0};
    CHECK_INT(settags_exif(set, make_only, sizeof make_only, &PNG_NONE, &b, &e), 0);
    CHECK(b.len > 14 && memcmp(b.data, "Exif\0\0MM\0*", 10) == 0);
    t = (const unsigned char *)b.data + 6;
    CHECK(ifd_entry(t, true, rd32(t + 4, true), 0x010f, &n) == NULL);
    CHECK_INT(n, 0);
    json_object_put(set);

    /* too large for a JPEG's APP1 */
    size_t big_len = 64000;
    unsigned char *big = calloc(1, big_len);
    size_t camera_len = camera_exif(big);
    (void)camera_len;
    char value[SETTAGS_EXIF_MAX + 1];
    memset(value, 'v', SETTAGS_EXIF_MAX);
    value[SETTAGS_EXIF_MAX] = '\0';
    set = json_object_new_object();
    json_object_object_add(set, "Copyright", json_object_new_string(value));
    CHECK_INT(settags_exif(set, big, big_len, &JPEG_300, &b, &e), -1);
    CHECK_STR(e.msg, "the EXIF block would be 66056 bytes, more than 65533");
    CHECK_INT(settags_exif(set, big, big_len, &PNG_NONE, &b, &e), 0); /* not a JPEG's */
    CHECK_STR(exif_text(&b, 0x8298), value);
    /* the limit itself: 65534 bytes are too many (a block's size is even), 65532 are not */
    size_t fit = big_len - (b.len - 65534);
    CHECK_INT(settags_exif(set, big, fit, &JPEG_300, &b, &e), -1);
    CHECK_STR(e.msg, "the EXIF block would be 65534 bytes, more than 65533");
    CHECK_INT(settags_exif(set, big, fit - 2, &JPEG_300, &b, &e), 0);
    CHECK_INT(b.len, 65532);
    json_object_put(set);
    free(big);
    buf_finish(&b);
}

/* The datasets of an IPTC block as "r:d=value;" text. */
static const char *datasets(const struct buf *b)
{
    static char text[4096];
    const unsigned char *p = (const unsigned char *)b->data;
    size_t o = 0;
    text[0] = '\0';
    for (size_t i = 0; i + 5 <= b->len && o < sizeof text - 100;) {
        size_t n = (size_t)p[i + 3] << 8 | p[i + 4];
        if (p[i] != 0x1c || i + 5 + n > b->len) {
            return "(bad)";
        }
        o += (size_t)snprintf(text + o, sizeof text - o, "%u:%u=", p[i + 1], p[i + 2]);
        for (size_t k = 0; k < n && o < sizeof text - 8; k++) {
            unsigned char c = p[i + 5 + k];
            o += (size_t)snprintf(text + o, sizeof text - o,
                                  c >= 0x20 && c < 0x7f ? "%c" : "\\%02x", c);
        }
        o += (size_t)snprintf(text + o, sizeof text - o, ";");
        i += 5 + n;
    }
    return text;
}

static void test_iptc(void)
{
    struct buf b;
    struct err e;
    buf_init(&b, 0);
    json_object *set = parse("{\"Keywords\": [\"b\", \"a\", \"\\u00e9t\\u00e9\"], \"ObjectName\": "
                             "\"obj\", \"DateCreated\": \"2026:12:01\", \"Copyright\": \"exif\"}");
    CHECK_INT(settags_iptc(set, NULL, 0, &b, &e), 0);
    CHECK_STR(
        datasets(&b),
        "1:90=\\1b%G;2:0=\\00\\04;2:5=obj;2:25=b;2:25=a;2:25=\\c3\\a9t\\c3\\a9;2:55=20261201;");
    json_object_put(set);

    /* merged: the old datasets but those set, one of them with an extended length */
    static const unsigned char old[] = {
        0x1c, 2,  0, 0, 2,   0,   2,    0x1c, 2,    5, 0,  3,   'o', 'l',  'd', 0x1c,
        2,    25, 0, 2, 'k', '1', 0x1c, 2,    25,   0, 2,  'k', '2', 0x1c, 2,   120,
        0x80, 2,  0, 4, 'c', 'a', 'p',  't',  0x1c, 3, 10, 0,   1,   'z',  0,   0};
    set = parse("{\"Keywords\": \"new\", \"ObjectName\": \"\"}");
    CHECK_INT(settags_iptc(set, old, sizeof old, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\02;2:25=new;2:120=capt;3:10=z;");
    json_object_put(set);

    /* an old block that does not parse is replaced */
    static const unsigned char bad[] = {0x1c, 2, 5, 0, 9, 'x'};
    set = parse("{\"City\": \"Oslo\"}");
    CHECK_INT(settags_iptc(set, bad, sizeof bad, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:90=Oslo;");
    /* as is one with another mark than 0x1c, or an extended length of no bytes */
    static const unsigned char marked[] = {0x1d, 2, 5, 0, 1, 'x'};
    CHECK_INT(settags_iptc(set, marked, sizeof marked, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:90=Oslo;");
    static const unsigned char no_length[] = {0x1c, 2, 5, 0x80, 0, 0x1c, 2, 7, 0, 1, 'x'};
    CHECK_INT(settags_iptc(set, no_length, sizeof no_length, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:90=Oslo;");
    /* or an extended length of more than 4 bytes (IIM's most) */
    static const unsigned char long_length[] = {0x1c, 2, 5, 0x80, 5, 0, 0, 0, 0, 1, 'x'};
    CHECK_INT(settags_iptc(set, long_length, sizeof long_length, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:90=Oslo;");
    /* or one of more datasets than are kept (4096): none is kept */
    size_t many_len = 5 * 4097;
    unsigned char *many = malloc(many_len);
    for (size_t i = 0; i < many_len; i += 5) {
        memcpy(many + i, "\x1c\x03\x0a\x00\x00", 5);
    }
    CHECK_INT(settags_iptc(set, many, many_len, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:90=Oslo;");
    CHECK_INT(settags_iptc(set, many, many_len - 5, &b, &e), 0); /* 4096 are */
    CHECK_INT(b.len, 5 * 4096 + 7 + 9);
    free(many);

    /* a kept dataset of 32768 bytes or more: its length extended, 4 bytes big-endian */
    unsigned char *big = calloc(1, SETTAGS_IPTC_BLOCK + 100);
    memcpy(big, "\x1c\x03\x0a\x80\x04\x00\x00\x80\x00", 9);
    CHECK_INT(settags_iptc(set, big, 9 + 0x8000, &b, &e), 0);
    CHECK_INT(b.len, 7 + 9 + 9 + 0x8000);
    CHECK(b.len > 25 && memcmp(b.data + 16, big, 9) == 0);
    /* the block's limit: 65500 bytes (2:0, 2:90 and the head of 3:10 take 25) */
    big[7] = 0xff;
    big[8] = 0xc3; /* 65475 */
    CHECK_INT(settags_iptc(set, big, 9 + 65475, &b, &e), 0);
    CHECK_INT(b.len, SETTAGS_IPTC_BLOCK);
    big[8] = 0xc4;
    CHECK_INT(settags_iptc(set, big, 9 + 65476, &b, &e), -1);
    CHECK_STR(e.msg, "the IPTC block would be 65501 bytes, more than 65500");
    CHECK_INT(b.len, 0);
    free(big);
    json_object_put(set);

    /* another record's dataset kept, though its number is that of a tag set, and without
     * record 2 no version added */
    static const unsigned char record3[] = {0x1c, 3, 25, 0, 2, 'r', '3'};
    set = parse("{\"ObjectName\": null}");
    CHECK_INT(settags_iptc(set, record3, sizeof record3, &b, &e), 0);
    CHECK_STR(datasets(&b), "3:25=r3;");
    json_object_put(set);
    set = parse("{\"Keywords\": \"k\"}");
    CHECK_INT(settags_iptc(set, record3, sizeof record3, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:25=k;3:25=r3;");
    json_object_put(set);

    /* UTF-8 declared once */
    static const unsigned char declared[] = {0x1c, 1, 90, 0, 3, 0x1b, '%', 'G'};
    set = parse("{\"City\": \"Z\\u00fcrich\"}");
    CHECK_INT(settags_iptc(set, declared, sizeof declared, &b, &e), 0);
    CHECK_STR(datasets(&b), "1:90=\\1b%G;2:0=\\00\\04;2:90=Z\\c3\\bcrich;");
    json_object_put(set);

    /* UTF-8 set into a block of Latin-1 (none declared, its text no UTF-8: City "Z\xfcrich",
     * ObjectName "\x80t\xe9"): the text of record 2 kept is made UTF-8 too, which the block now
     * says it is (exiftool read "Z\xfcrich" as "Z?rich"); record 3's bytes stay */
    static const unsigned char latin[] = {0x1c, 2, 90,   0,    6, 'Z', 0xfc, 'r', 'i',  'c', 'h',
                                          0x1c, 2, 25,   0,    3, 'o', 'l',  'd', 0x1c, 3,   10,
                                          0,    1, 0xff, 0x1c, 2, 5,   0,    3,   0x80, 't', 0xe9};
    set = parse("{\"Keywords\": \"caf\\u00e9\"}");
    CHECK_INT(settags_iptc(set, latin, sizeof latin, &b, &e), 0);
    CHECK_STR(datasets(&b), "1:90=\\1b%G;2:0=\\00\\04;2:5=\\c2\\80t\\c3\\a9;2:25=caf\\c3\\a9;"
                            "2:90=Z\\c3\\bcrich;3:10=\\ff;");
    json_object *o = settags_iptc_read((const unsigned char *)b.data, b.len), *v = NULL;
    CHECK(json_object_object_get_ex(o, "City", &v));
    CHECK_STR(json_object_get_string(v), "Z\xc3\xbcrich");
    json_object_put(o);
    /* ... and one that declares another character set (ISO 8859-1) says UTF-8 instead */
    static const unsigned char declared_latin[] = {0x1c, 1, 90, 0, 3, 0x1b, '.', 'A',
                                                   0x1c, 2, 90, 0, 2, 'Z',  0xfc};
    CHECK_INT(settags_iptc(set, declared_latin, sizeof declared_latin, &b, &e), 0);
    CHECK_STR(datasets(&b), "1:90=\\1b%G;2:0=\\00\\04;2:25=caf\\c3\\a9;2:90=Z\\c3\\bc;");
    json_object_put(set);
    /* ASCII set: the Latin-1 stays as it was, undeclared */
    set = parse("{\"Keywords\": \"cafe\"}");
    CHECK_INT(settags_iptc(set, latin, sizeof latin, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:5=\\80t\\e9;2:25=cafe;2:90=Z\\fcrich;3:10=\\ff;");
    json_object_put(set);
    /* UTF-8 set into a block whose text is UTF-8 already, undeclared: kept as it is */
    static const unsigned char utf8[] = {0x1c, 2, 90, 0, 3, 'Z', 0xc3, 0xbc};
    set = parse("{\"Keywords\": \"caf\\u00e9\"}");
    CHECK_INT(settags_iptc(set, utf8, sizeof utf8, &b, &e), 0);
    CHECK_STR(datasets(&b), "1:90=\\1b%G;2:0=\\00\\04;2:25=caf\\c3\\a9;2:90=Z\\c3\\bc;");
    json_object_put(set);

    /* every IPTC tag at its number (IIM 4.2's) */
    set = parse("{\"ObjectName\": \"a\", \"EditStatus\": \"b\", \"Category\": \"c\", "
                "\"SupplementalCategories\": \"d\", \"Keywords\": \"e\", "
                "\"SpecialInstructions\": \"f\", \"DateCreated\": \"20260101\", "
                "\"By-line\": \"g\", \"By-lineTitle\": \"h\", \"City\": \"i\", "
                "\"Sub-location\": \"j\", \"Province-State\": \"k\", "
                "\"Country-PrimaryLocationCode\": \"l\", \"Country-PrimaryLocationName\": \"m\", "
                "\"OriginalTransmissionReference\": \"n\", \"Headline\": \"o\", \"Credit\": \"p\", "
                "\"Source\": \"q\", \"CopyrightNotice\": \"r\", \"Contact\": \"s\", "
                "\"Caption-Abstract\": \"t\", \"Writer-Editor\": \"u\"}");
    CHECK_INT(settags_iptc(set, NULL, 0, &b, &e), 0);
    CHECK_STR(datasets(&b), "2:0=\\00\\04;2:5=a;2:7=b;2:15=c;2:20=d;2:25=e;2:40=f;2:55=20260101;"
                            "2:80=g;2:85=h;2:90=i;2:92=j;2:95=k;2:100=l;2:101=m;2:103=n;2:105=o;"
                            "2:110=p;2:115=q;2:116=r;2:118=s;2:120=t;2:122=u;");
    json_object_put(set);
    buf_finish(&b);
}

/* The text settags_iptc_read() gives the first value of `name` in the block `p`. */
static const char *read_one(const unsigned char *p, size_t n, const char *name)
{
    static char text[SETTAGS_READ_MAX + 16]; /* room to show a value too long */
    json_object *o = settags_iptc_read(p, n), *v = NULL;
    snprintf(text, sizeof text, "%s",
             json_object_object_get_ex(o, name, &v) ? json_object_get_string(v) : "(none)");
    json_object_put(o);
    return text;
}

/* original_meta.iptc of an IPTC block given as bytes. */
static const char *read_back(const unsigned char *p, size_t n)
{
    static char text[8192];
    json_object *o = settags_iptc_read(p, n);
    snprintf(text, sizeof text, "%s", o != NULL ? json_object_to_json_string(o) : "(null)");
    json_object_put(o);
    return text;
}

static void test_iptc_read(void)
{
    /* UTF-8 declared; a repeated tag as a list, another's first value; a date; other datasets
     * (the version, 2:200 preview data) left out */
    static const unsigned char declared[] = {
        0x1c, 1,   90,   0,    3,    0x1b, '%',  'G',  0x1c, 2,   0,    0,   2,    0,    4, 0x1c,
        2,    5,   0,    2,    'o',  '1',  0x1c, 2,    5,    0,   2,    'o', '2',  0x1c, 2, 25,
        0,    2,   0xc3, 0xa5, 0x1c, 2,    25,   0,    1,    'b', 0x1c, 2,   55,   0,    8, '2',
        '0',  '2', '6',  '1',  '2',  '0',  '1',  0x1c, 2,    200, 0,    2,   0xff, 0xfe};
    CHECK_STR(read_back(declared, sizeof declared),
              "{ \"ObjectName\": \"o1\", \"Keywords\": [ \"\u00e5\", \"b\" ], \"DateCreated\": "
              "\"2026:12:01\" }");
    /* no character set and bytes that are no UTF-8: Latin-1 */
    static const unsigned char latin[] = {0x1c, 2, 90, 0, 5, 'M', 0xfc, 'n', 'c', 'h'};
    CHECK_STR(read_back(latin, sizeof latin), "{ \"City\": \"M\u00fcnch\" }");
    /* a writer's trailing NULs left out; the datasets before a broken one kept */
    static const unsigned char padded[] = {0x1c, 2,    5, 0,  4, 'D', 'o', 'g',
                                           0,    0x1c, 2, 25, 0, 9,   'x'};
    CHECK_STR(read_back(padded, sizeof padded), "{ \"ObjectName\": \"Dog\" }");
    /* a block that does not parse, and none */
    static const unsigned char bad[] = {0x1c, 2, 5, 0, 9, 'x'};
    CHECK_STR(read_back(bad, sizeof bad), "{ }");
    CHECK_STR(read_back(NULL, 0), "{ }");
    /* a long value cut at SETTAGS_READ_MAX bytes, at a character's start */
    size_t n = 5 + 2 * 1500;
    unsigned char *big = malloc(n);
    memcpy(big, "\x1c\x02\x78\x0b\xb8", 5); /* 2:120, 3000 bytes */
    for (size_t i = 5; i < n; i += 2) {
        big[i] = 0xc3;
        big[i + 1] = 0xa9;
    }
    json_object *o = settags_iptc_read(big, n), *v = NULL;
    CHECK(json_object_object_get_ex(o, "Caption-Abstract", &v));
    CHECK_INT(json_object_get_string_len(v), SETTAGS_READ_MAX);
    json_object_put(o);
    /* ... and one of ASCII at SETTAGS_READ_MAX bytes too */
    memset(big + 5, 'a', n - 5);
    CHECK_INT(strlen(read_one(big, n, "Caption-Abstract")), SETTAGS_READ_MAX);
    free(big);
    /* Latin-1: 0x80 too is a character of its own (U+0080) */
    static const unsigned char c1[] = {0x1c, 2, 90, 0, 2, 'a', 0x80};
    CHECK_STR(read_one(c1, sizeof c1, "City"), "a\xc2\x80");
    /* a date that is no 8 digits as it is; every trailing NUL left out */
    static const unsigned char odd_date[] = {0x1c, 2,   55,  0,   8,   '2',  '0', '2',
                                             '6',  '1', '2', '0', 'x', 0x1c, 2,   5,
                                             0,    5,   'D', 'o', 'g', 0,    0};
    CHECK_STR(read_back(odd_date, sizeof odd_date),
              "{ \"DateCreated\": \"2026120x\", \"ObjectName\": \"Dog\" }");
    /* UTF-8 is declared by record 1's CodedCharacterSet only; else record 2's values tell */
    static const unsigned char declared3[] = {
        0x1c, 3, 90, 0, 3, 0x1b, '%', 'G', 0x1c, 2, 90, 0, 2, 0xc3, 0xa9, 0x1c, 2, 95, 0, 1, 0xfc};
    CHECK_STR(read_one(declared3, sizeof declared3, "City"), "\xc3\x83\xc2\xa9");
    CHECK_STR(read_one(declared3, sizeof declared3, "Province-State"), "\xc3\xbc");
    static const unsigned char other3[] = {0x1c, 3, 10, 0, 1, 0xff, 0x1c, 2, 90, 0, 2, 0xc3, 0xa9};
    CHECK_STR(read_one(other3, sizeof other3, "City"), "\xc3\xa9");
}

static void test_8bim(void)
{
    struct buf b;
    struct err e;
    buf_init(&b, 0);
    static const unsigned char iptc[] = {0x1c, 2, 5, 0, 1, 'n'}; /* 6 bytes */
    CHECK_INT(settags_8bim(NULL, 0, iptc, sizeof iptc, &b, &e), 0);
    static const unsigned char alone[] = {'8', 'B', 'I', 'M',  4, 4, 0, 0, 0,
                                          0,   0,   6,   0x1c, 2, 5, 0, 1, 'n'};
    CHECK(b.len == sizeof alone && memcmp(b.data, alone, sizeof alone) == 0);

    /* resolution info (a 1-byte name, padded; odd data, padded), old IPTC, its digest */
    static const unsigned char old[] = {
        '8', 'B', 'I', 'M', 3,   0xed, 1, 'r', 0, 0, 0, 3, 1, 2, 3,
        0,   '8', 'B', 'I', 'M', 4,    4, 0,   0, 0, 0, 0, 2, 9, 9,
        '8', 'B', 'I', 'M', 4,   0x25, 0, 0,   0, 0, 0, 2, 7, 7,
    };
    CHECK_INT(settags_8bim(old, sizeof old, iptc, sizeof iptc, &b, &e), 0);
    static const unsigned char want[] = {
        '8', 'B', 'I', 'M', 3, 0xed, 1, 'r', 0, 0, 0, 3,    1, 2, 3, 0, '8',
        'B', 'I', 'M', 4,   4, 0,    0, 0,   0, 0, 6, 0x1c, 2, 5, 0, 1, 'n',
    };
    CHECK(b.len == sizeof want && memcmp(b.data, want, sizeof want) == 0);

    /* the last resource's padding byte missing (its data odd): read to the end, no further */
    static const unsigned char unpadded[] = {'8', 'B', 'I', 'M', 4, 0, 0, 0, 0, 0, 0, 1, 7};
    CHECK_INT(settags_8bim(unpadded, sizeof unpadded, iptc, sizeof iptc, &b, &e), 0);
    CHECK(b.len == 14 + sizeof alone && memcmp(b.data, unpadded, 13) == 0 && b.data[13] == 0 &&
          memcmp(b.data + 14, alone, sizeof alone) == 0);

    /* no IPTC left: the resource goes */
    CHECK_INT(settags_8bim(old, sizeof old, NULL, 0, &b, &e), 0);
    CHECK(b.len == 16 && memcmp(b.data, old, 16) == 0);

    /* a resource after one of odd data kept, and one of 12 bytes (no name, no data) at the end;
     * zeros after the last resource, which make no resource, dropped */
    static const unsigned char kept[] = {'8', 'B', 'I', 'M', 3,   0xed, 0, 0,    0, 0, 0, 3, 1, 2,
                                         3,   0,   '8', 'B', 'I', 'M',  3, 0xee, 0, 0, 0, 0, 0, 2,
                                         5,   6,   '8', 'B', 'I', 'M',  4, 0,    0, 0, 0, 0, 0, 0,
                                         0,   0,   0,   0,   0,   0,    0, 0,    0, 0, 0, 0};
    CHECK_INT(settags_8bim(kept, sizeof kept, iptc, sizeof iptc, &b, &e), 0);
    CHECK(b.len == 42 + sizeof alone && memcmp(b.data, kept, 42) == 0 &&
          memcmp(b.data + 42, alone, sizeof alone) == 0);
    CHECK_INT(settags_8bim(kept, 42, iptc, sizeof iptc, &b, &e), 0);
    CHECK(b.len == 42 + sizeof alone && memcmp(b.data, kept, 42) == 0 &&
          memcmp(b.data + 42, alone, sizeof alone) == 0);

    /* two IPTC resources: the new one in the first's place, once */
    static const unsigned char twice[] = {'8', 'B', 'I', 'M', 4, 4,    0, 0, 0, 0, 0, 2, 9, 9,
                                          '8', 'B', 'I', 'M', 3, 0xed, 0, 0, 0, 0, 0, 2, 1, 2,
                                          '8', 'B', 'I', 'M', 4, 4,    0, 0, 0, 0, 0, 2, 8, 8};
    CHECK_INT(settags_8bim(twice, sizeof twice, iptc, sizeof iptc, &b, &e), 0);
    CHECK(b.len == sizeof alone + 14 && memcmp(b.data, alone, sizeof alone) == 0 &&
          memcmp(b.data + sizeof alone, twice + 14, 14) == 0);

    /* resources of the other signatures kept as they are, and those after them: an id of
     * theirs that 8BIM's IPTC or digest has is not taken for it */
    static const unsigned char others[] = {'M', 'e', 'S', 'a', 4, 4,    0, 0, 0, 0, 0, 2, 1, 1,
                                           'P', 'H', 'U', 'T', 4, 0x25, 0, 0, 0, 0, 0, 2, 2, 2,
                                           'A', 'g', 'H', 'g', 7, 0xd0, 0, 0, 0, 0, 0, 1, 3, 0,
                                           'D', 'C', 'S', 'R', 3, 0xed, 0, 0, 0, 0, 0, 2, 4, 4,
                                           '8', 'B', 'I', 'M', 3, 0xee, 0, 0, 0, 0, 0, 2, 5, 6};
    CHECK_INT(settags_8bim(others, sizeof others, iptc, sizeof iptc, &b, &e), 0);
    CHECK(b.len == sizeof others + sizeof alone && memcmp(b.data, others, sizeof others) == 0 &&
          memcmp(b.data + sizeof others, alone, sizeof alone) == 0);
    /* a signature of none of them ends the block */
    static const unsigned char unknown[] = {'8', 'B', 'I', 'M', 3,   0xed, 0,    0, 0, 0, 0, 2, 1,
                                            2,   'X', 'Y', 'Z', 'W', 3,    0xee, 0, 0, 0, 0, 0, 0};
    CHECK_INT(settags_8bim(unknown, sizeof unknown, iptc, sizeof iptc, &b, &e), 0);
    CHECK(b.len == 14 + sizeof alone && memcmp(b.data, unknown, 14) == 0 &&
          memcmp(b.data + 14, alone, sizeof alone) == 0);

    /* a resource cut in its size: read no further */
    unsigned char *cut = malloc(12);
    memcpy(cut,
           "8BIM\x03\xed\x03"
           "abc\0\0",
           12);
    CHECK_INT(settags_8bim(cut, 12, iptc, sizeof iptc, &b, &e), 0);
    CHECK(b.len == sizeof alone && memcmp(b.data, alone, sizeof alone) == 0);
    free(cut);
    buf_finish(&b);
}

int main(void)
{
    test_check();
    test_exif_new();
    test_exif_merged();
    test_exif_shared_bytes();
    test_exif_linear();
    test_iptc();
    test_iptc_read();
    test_8bim();
    return check_summary("settags");
}
