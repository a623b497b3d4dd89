/* fuzz_settags: libFuzzer target for the blocks a save's set_exif merges into (common/settags.c).
 *
 * The old EXIF, IPTC and Photoshop blocks come from the source image when the save keeps its
 * metadata: untrusted. The first byte picks the block (0: EXIF, 1: IPTC, 2: Photoshop), the rest
 * is the old block. The merged block must read back whole: EXIF's header and IFD0 inside it,
 * IFD0's entries in the order of their tags, each tag set there with its text; IPTC's datasets to
 * its last byte, in record order, the keywords set there; the Photoshop resources to the last
 * byte, one IPTC resource and no digest. Merging the result again must give the same IFD0 (or the
 * same IPTC block). Seeds: tests/fuzz/seeds/fuzz_settags/. Built only with -Dfuzz=true. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "settags.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_object *set;

static const char set_json[] =
    "{\"Copyright\": \"(c) fuzz\", \"Make\": \"\", \"Artist\": \"abc\", \"ModifyDate\": "
    "\"2026:12:01 10:11:12\", \"Keywords\": [\"k1\", \"k2\"], \"ObjectName\": null, \"City\": "
    "\"\\u00c5s\"}";

static unsigned rd16(const unsigned char *p, bool be)
{
    return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t rd32(const unsigned char *p, bool be)
{
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Checks the EXIF block; returns where its IFD0 is. */
static size_t check_exif(const struct buf *b)
{
    const unsigned char *p = (const unsigned char *)b->data, *t = p + 6;
    size_t len = b->len - 6;
    if (b->len < 14 || memcmp(p, "Exif\0\0", 6) != 0 ||
        !(memcmp(t, "II*\0", 4) == 0 || memcmp(t, "MM\0*", 4) == 0) || b->len > SETTAGS_EXIF_JPEG) {
        abort();
    }
    bool be = t[0] == 'M';
    size_t ifd = rd32(t + 4, be);
    if (ifd > len || len - ifd < 6) {
        abort();
    }
    unsigned n = rd16(t + ifd, be);
    if ((len - ifd - 6) / 12 < n) {
        abort();
    }
    static const struct {
        unsigned tag;
        const char *text;
    } want[] = {{0x0132, "2026:12:01 10:11:12"}, {0x013b, "abc"}, {0x8298, "(c) fuzz"}};
    unsigned found = 0, last = 0;
    for (unsigned i = 0; i < n; i++) {
        const unsigned char *e = t + ifd + 2 + 12 * i;
        unsigned tag = rd16(e, be);
        if (tag < last || tag == 0x010f) { /* in order; Make deleted */
            abort();
        }
        last = tag;
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            if (tag != want[k].tag) {
                continue;
            }
            size_t count = rd32(e + 4, be);
            const unsigned char *v = count <= 4 ? e + 8 : t + rd32(e + 8, be);
            if (rd16(e + 2, be) != 2 || count != strlen(want[k].text) + 1 ||
                (count > 4 && rd32(e + 8, be) > len - count) ||
                memcmp(v, want[k].text, count) != 0) {
                abort();
            }
            found++;
        }
    }
    if (found != 3) {
        abort();
    }
    return ifd;
}

static void fuzz_exif(const uint8_t *data, size_t size)
{
    static const struct settags_image jpeg = {.x_res = 72, .y_res = 72, .unit = 2, .jpeg = true};
    struct buf b, again;
    struct err e;
    buf_init(&b, 0);
    buf_init(&again, 0);
    if (settags_exif(set, data, size, &jpeg, &b, &e) == 0) {
        size_t ifd = check_exif(&b);
        bool be = b.data[6] == 'M';
        size_t entries = 2 + 12 * rd16((const unsigned char *)b.data + 6 + ifd, be);
        if (settags_exif(set, (const unsigned char *)b.data, b.len, &jpeg, &again, &e) == 0) {
            size_t ifd2 = check_exif(&again);
            if (memcmp(b.data + 6 + ifd, again.data + 6 + ifd2, 2) != 0) {
                abort();
            }
            for (size_t i = 2; i < entries; i += 12) { /* the same tags, types and counts */
                if (memcmp(b.data + 6 + ifd + i, again.data + 6 + ifd2 + i, 8) != 0) {
                    abort();
                }
            }
        }
    } else if (strncmp(e.msg, "the EXIF block would be ", 24) != 0) {
        abort(); /* only a block too large may fail */
    }
    buf_finish(&b);
    buf_finish(&again);
}

/* Checks the IPTC block: datasets to its end, in record order, with the keywords set. */
static void check_iptc(const struct buf *b)
{
    const unsigned char *p = (const unsigned char *)b->data;
    unsigned last = 0, keywords = 0;
    for (size_t i = 0; i < b->len;) {
        if (b->len - i < 5 || p[i] != 0x1c || p[i + 1] < last) {
            abort();
        }
        last = p[i + 1];
        size_t n = (size_t)p[i + 3] << 8 | p[i + 4], head = 5;
        if (n & 0x8000) {
            if ((n & 0x7fff) != 4 || b->len - i < 9) {
                abort();
            }
            n = rd32(p + i + 5, true);
            head = 9;
        }
        if (b->len - i - head < n) {
            abort();
        }
        if (p[i + 1] == 2 && p[i + 2] == 5) {
            abort(); /* ObjectName deleted */
        }
        if (p[i + 1] == 2 && p[i + 2] == 25) {
            keywords++;
            if (n != 2 || p[i + head] != 'k') {
                abort();
            }
        }
        i += head + n;
    }
    if (keywords != 2) {
        abort();
    }
}

static void fuzz_iptc(const uint8_t *data, size_t size)
{
    struct buf b, again;
    struct err e;
    buf_init(&b, 0);
    buf_init(&again, 0);
    json_object *read = settags_iptc_read(data, size); /* original_meta.iptc */
    if (read == NULL || json_object_to_json_string(read) == NULL) {
        abort();
    }
    json_object_put(read);
    if (settags_iptc(set, data, size, &b, &e) == 0) {
        check_iptc(&b);
        if (settags_iptc(set, (const unsigned char *)b.data, b.len, &again, &e) != 0 ||
            again.len != b.len || memcmp(again.data, b.data, b.len) != 0) {
            abort(); /* merging again changes nothing */
        }
    } else if (strncmp(e.msg, "the IPTC block would be ", 24) != 0) {
        abort();
    }
    buf_finish(&b);
    buf_finish(&again);
}

static void fuzz_8bim(const uint8_t *data, size_t size)
{
    static const char *const signatures[] = {"8BIM", "MeSa", "PHUT", "AgHg", "DCSR"};
    static const unsigned char iptc[] = {0x1c, 2, 25, 0, 3, 'k', 'e', 'y'};
    struct buf b;
    struct err e;
    buf_init(&b, 0);
    if (settags_8bim(data, size, iptc, sizeof iptc, &b, &e) != 0) {
        abort();
    }
    const unsigned char *p = (const unsigned char *)b.data;
    unsigned placed = 0;
    for (size_t i = 0; i < b.len;) {
        /* the signatures settags keeps (ImageReady's and others' beside 8BIM) */
        bool sig = false;
        for (size_t k = 0; k < sizeof signatures / sizeof signatures[0]; k++) {
            sig = sig || (b.len - i >= 12 && memcmp(p + i, signatures[k], 4) == 0);
        }
        if (!sig) {
            abort();
        }
        unsigned id = rd16(p + i + 4, true);
        size_t name = 1 + (size_t)p[i + 6];
        size_t at = i + 6 + name + (name & 1);
        if (at > b.len || b.len - at < 4) {
            abort();
        }
        size_t n = rd32(p + at, true);
        bool own = memcmp(p + i, "8BIM", 4) == 0; /* others' ids are never IPTC or its digest */
        if (b.len - at - 4 < n + (n & 1) || (own && id == 0x0425)) {
            abort();
        }
        if (own && id == 0x0404) {
            placed++;
            if (n != sizeof iptc || memcmp(p + at + 4, iptc, n) != 0) {
                abort();
            }
        }
        i = at + 4 + n + (n & 1);
    }
    if (placed != 1) {
        abort();
    }
    buf_finish(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (set == NULL) {
        set = json_tokener_parse(set_json);
        struct err e;
        if (set == NULL || settags_check(set, "jpg", "'fuzz'", &e) != 0) {
            abort();
        }
    }
    if (size < 1) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        fuzz_exif(data + 1, size - 1);
        break;
    case 1:
        fuzz_iptc(data + 1, size - 1);
        break;
    default:
        fuzz_8bim(data + 1, size - 1);
        break;
    }
    return 0;
}
