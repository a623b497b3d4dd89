#include "webp.h"

#include <stdlib.h>
#include <webp/decode.h>
#include <webp/mux.h>

#include "image.h"

bool webp_still(const void *data, size_t len, long *width, long *height)
{
    WebPBitstreamFeatures f;
    if (data == NULL || WebPGetFeatures(data, len, &f) != VP8_STATUS_OK || f.has_animation) {
        return false;
    }
    *width = f.width;
    *height = f.height;
    return f.width > 0 && f.height > 0;
}

/* The ICC, EXIF and XMP chunks as profiles (as ImageMagick's reader names them), and the
 * orientation from EXIF (as ImageMagick's ReadImage() sets it). */
static int attach_profiles(MagickWand *w, const void *data, size_t len, struct err *e)
{
    static const struct {
        const char *chunk, *profile;
    } map[] = {{"ICCP", "icc"}, {"EXIF", "exif"}, {"XMP ", "xmp"}};
    WebPData content = {data, len};
    WebPMux *mux = WebPMuxCreate(&content, 0);
    int rc = 0;
    for (size_t i = 0; mux != NULL && rc == 0 && i < sizeof map / sizeof map[0]; i++) {
        WebPData chunk = {NULL, 0};
        if (WebPMuxGetChunk(mux, map[i].chunk, &chunk) == WEBP_MUX_OK && chunk.size > 0 &&
            MagickSetImageProfile(w, map[i].profile, chunk.bytes, chunk.size) == MagickFalse) {
            rc = err_set(e, "cannot keep the WebP image's %s profile", map[i].profile);
        }
    }
    WebPMuxDelete(mux);
    /* the exif:* properties, made once as ReadImage() makes them */
    MagickRelinquishMemory(rc == 0 ? MagickGetImageProperty(w, "exif:*") : NULL);
    const char *o = rc == 0 ? img_property_made(w, "exif:Orientation") : NULL;
    long v = o != NULL ? strtol(o, NULL, 10) : 0;
    if (v >= TopLeftOrientation && v <= LeftBottomOrientation) {
        MagickSetImageOrientation(w, (OrientationType)v);
    }
    return rc;
}

/* A wand of one image made of `pixels` (RGB or RGBA, 8 bits), format WEBP. */
static MagickWand *constitute(long width, long height, bool alpha, const unsigned char *pixels,
                              struct err *e)
{
    MagickWand *w = NewMagickWand();
    if (w == NULL ||
        MagickConstituteImage(w, (size_t)width, (size_t)height, alpha ? "RGBA" : "RGB", CharPixel,
                              pixels) == MagickFalse ||
        MagickSetImageFormat(w, "WEBP") == MagickFalse) {
        err_set(e, "cannot read the WebP image (out of memory, or beyond ImageMagick's limits)");
        return w != NULL ? DestroyMagickWand(w) : NULL;
    }
    return w;
}

MagickWand *webp_headers(const void *data, size_t len, struct err *e)
{
    static const unsigned char pixel[3] = {0, 0, 0};
    MagickWand *w = constitute(1, 1, false, pixel, e);
    if (w != NULL && attach_profiles(w, data, len, e) < 0) {
        w = DestroyMagickWand(w);
    }
    return w;
}

/* What a failed WebPDecode() means, in words (its status's number means nothing to a user). */
static const char *status_words(VP8StatusCode st)
{
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY:
        return "out of memory";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        return "it uses a feature the WebP decoder does not support";
    case VP8_STATUS_NOT_ENOUGH_DATA:
        return "corrupt: its data ends before its pixels do";
    case VP8_STATUS_BITSTREAM_ERROR:
        return "corrupt: its data is damaged";
    default:
        return "corrupt";
    }
}

MagickWand *webp_read(const void *data, size_t len, long width, long height, struct err *e)
{
    WebPDecoderConfig c;
    if (!WebPInitDecoderConfig(&c) || WebPGetFeatures(data, len, &c.input) != VP8_STATUS_OK) {
        err_set(e, "cannot read the WebP image (corrupt)");
        return NULL;
    }
    bool alpha = c.input.has_alpha != 0;
    c.output.colorspace = alpha ? MODE_RGBA : MODE_RGB;
    if (width != c.input.width || height != c.input.height) {
        c.options.use_scaling = 1;
        c.options.scaled_width = (int)width;
        c.options.scaled_height = (int)height;
    }
    VP8StatusCode st = WebPDecode(data, len, &c);
    MagickWand *w = NULL;
    if (st != VP8_STATUS_OK || c.output.width != width || c.output.height != height ||
        c.output.u.RGBA.stride != (int)width * (alpha ? 4 : 3)) {
        err_set(e, "cannot read the WebP image (%s)", status_words(st));
    } else {
        w = constitute(width, height, alpha, c.output.u.RGBA.rgba, e);
    }
    WebPFreeDecBuffer(&c.output);
    if (w != NULL && attach_profiles(w, data, len, e) < 0) {
        w = DestroyMagickWand(w);
    }
    return w;
}
