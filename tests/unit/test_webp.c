/* test_webp: worker/webp.c, still WebP sources decoded by libwebp: the ICCP and EXIF chunks
 * become the image's profiles, the EXIF orientation (each of 1 to 8) its orientation, and an
 * opaque image stays without an alpha channel, a translucent one keeps it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wand/MagickWand.h>

#include "check.h"
#include "magick_test.h"
#include "webp.h"

static const unsigned char icc[] = "not really an ICC profile: its bytes are carried as they are";

static void put_le32(unsigned char *p, size_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* EXIF with its "Exif\0\0" header: a little-endian TIFF header and IFD0 holding Orientation
 * (ImageMagick reads exif:* only after that header, and its WebP writer drops it). */
static size_t exif_block(unsigned char out[32], int orientation)
{
    static const unsigned char head[] = {'E', 'x', 'i', 'f', 0,    0,    'I', 'I', 42, 0, 8, 0,
                                         0,   0,   1,   0,   0x12, 0x01, 3,   0,   1,  0, 0, 0};
    memcpy(out, head, sizeof head);
    out[sizeof head] = (unsigned char)orientation;
    memset(out + sizeof head + 1, 0, 7); /* the value's high byte, padding, no next IFD */
    return sizeof head + 8;
}

/* A WebP (free() it) of a 16 x 8 image of `color` with the ICC profile, its EXIF
 * chunk replaced by `exif` (n bytes). */
static unsigned char *webp_of(const char *color, const unsigned char *exif, size_t n, size_t *len)
{
    MagickWand *w = solid(16, 8, color);
    unsigned char placeholder[32];
    size_t pn = exif_block(placeholder, 1);
    CHECK(MagickSetImageProfile(w, "icc", icc, sizeof icc) == MagickTrue);
    CHECK(MagickSetImageProfile(w, "exif", placeholder, pn) == MagickTrue);
    MagickSetImageFormat(w, "WEBP");
    size_t bn = 0;
    unsigned char *b = MagickGetImageBlob(w, &bn);
    unsigned char *out = malloc(bn + n + 16);
    size_t o = 12, found = 0;
    memcpy(out, b, 12);
    for (size_t i = 12; i + 8 <= bn;) {
        size_t size = (size_t)b[i + 4] | (size_t)b[i + 5] << 8 | (size_t)b[i + 6] << 16 |
                      (size_t)b[i + 7] << 24;
        size_t padded = size + (size & 1);
        if (memcmp(b + i, "EXIF", 4) == 0) {
            found++;
            memcpy(out + o, "EXIF", 4);
            put_le32(out + o + 4, n);
            memcpy(out + o + 8, exif, n);
            o += 8 + n;
            if (n & 1) {
                out[o++] = 0;
            }
        } else {
            memcpy(out + o, b + i, 8 + padded);
            o += 8 + padded;
        }
        i += 8 + padded;
    }
    CHECK_INT(found, 1);
    put_le32(out + 4, o - 8);
    *len = o;
    MagickRelinquishMemory(b);
    DestroyMagickWand(w);
    return out;
}

static bool same_profile(MagickWand *w, const char *name, const unsigned char *want, size_t n)
{
    size_t len = 0;
    unsigned char *p = MagickGetImageProfile(w, name, &len);
    bool same = p != NULL && len == n && memcmp(p, want, n) == 0;
    MagickRelinquishMemory(p);
    return same;
}

int main(void)
{
    if (test_img_start("webp") < 0) {
        return 1;
    }
    for (int orientation = 1; orientation <= 8; orientation++) {
        unsigned char exif[32];
        size_t n = exif_block(exif, orientation), len = 0;
        unsigned char *b = webp_of("#3366cc", exif, n, &len);
        long w = 0, h = 0;
        CHECK(webp_still(b, len, &w, &h) && w == 16 && h == 8);
        struct err e = {{0}};
        MagickWand *wand = webp_read(b, len, 16, 8, &e);
        CHECK(wand != NULL);
        if (wand != NULL) {
            CHECK_INT(MagickGetImageOrientation(wand), orientation);
            CHECK(same_profile(wand, "icc", icc, sizeof icc));
            CHECK(same_profile(wand, "exif", exif, n));
            CHECK(MagickGetImageAlphaChannel(wand) == MagickFalse);
            DestroyMagickWand(wand);
        }
        free(b);
    }
    /* translucent: the alpha channel kept */
    unsigned char exif[32];
    size_t n = exif_block(exif, 1), len = 0;
    unsigned char *b = webp_of("#3366cc80", exif, n, &len);
    struct err e = {{0}};
    MagickWand *wand = webp_read(b, len, 16, 8, &e);
    CHECK(wand != NULL && MagickGetImageAlphaChannel(wand) == MagickTrue);
    if (wand != NULL) {
        DestroyMagickWand(wand);
    }
    free(b);
    return check_summary("webp");
}
