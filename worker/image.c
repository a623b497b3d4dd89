#include "image.h"

#include <string.h>

static bool started;

void img_init(void)
{
    if (started) {
        return;
    }
    MagickWandGenesis();
    /* one OpenMP thread: parallelism comes from worker processes, not from inside ImageMagick */
    MagickSetResourceLimit(ThreadResource, 1);
    started = true;
}

void img_shutdown(void)
{
    if (started) {
        MagickWandTerminus();
        started = false;
    }
}

int img_fail(MagickWand *w, const char *what, struct err *e)
{
    ExceptionType severity = UndefinedException;
    char *text = w != NULL ? MagickGetException(w, &severity) : NULL;
    if (text != NULL && text[0] != '\0') {
        err_set(e, "%s: %s", what, text);
    } else {
        err_set(e, "%s failed", what);
    }
    if (text != NULL) {
        MagickRelinquishMemory(text);
    }
    if (w != NULL) {
        MagickClearException(w);
    }
    return -1;
}

/* Reads the header only: dimensions without decoding pixels. */
static int ping_size(MagickWand *w, const void *data, size_t len, long *width, long *height,
                     struct err *e)
{
    if (MagickPingImageBlob(w, data, len) == MagickFalse) {
        return img_fail(w, "not a readable image", e);
    }
    MagickSetFirstIterator(w);
    *width = (long)MagickGetImageWidth(w);
    *height = (long)MagickGetImageHeight(w);
    ClearMagickWand(w);
    return 0;
}

/* Drops every frame after the first (animated GIF/WebP become their first frame). */
static MagickWand *first_frame(MagickWand *w)
{
    if (MagickGetNumberImages(w) <= 1) {
        return w;
    }
    MagickSetFirstIterator(w);
    MagickWand *one = MagickGetImage(w);
    DestroyMagickWand(w);
    return one;
}

MagickWand *img_decode(const void *data, size_t len, long max_pixels, long *width, long *height,
                       struct err *e)
{
    MagickWand *w = NewMagickWand();
    if (ping_size(w, data, len, width, height, e) < 0) {
        DestroyMagickWand(w);
        return NULL;
    }
    if (*width <= 0 || *height <= 0 || *width > max_pixels / *height) {
        err_set(e, "image is %ldx%ld, more than the limit of %ld pixels", *width, *height,
                max_pixels);
        DestroyMagickWand(w);
        return NULL;
    }
    if (MagickReadImageBlob(w, data, len) == MagickFalse) {
        img_fail(w, "cannot decode image", e);
        DestroyMagickWand(w);
        return NULL;
    }
    w = first_frame(w);
    if (w == NULL) {
        err_set(e, "cannot take the first frame");
    }
    return w;
}

MagickWand *img_solid(long width, long height, const PixelWand *color, struct err *e)
{
    MagickWand *w = NewMagickWand();
    if (MagickNewImage(w, (size_t)width, (size_t)height, color) == MagickFalse) {
        img_fail(w, "canvas", e);
        return DestroyMagickWand(w);
    }
    if (PixelGetAlpha(color) < 1.0 &&
        MagickSetImageAlphaChannel(w, ActivateAlphaChannel) == MagickFalse) {
        img_fail(w, "canvas alpha", e);
        return DestroyMagickWand(w);
    }
    return w;
}

int img_auto_orient(MagickWand *w, struct err *e)
{
    if (MagickGetImageOrientation(w) <= TopLeftOrientation) {
        return 0;
    }
    if (MagickAutoOrientImage(w) == MagickFalse) {
        return img_fail(w, "auto-orient", e);
    }
    return 0;
}

struct format {
    const char *ext;
    const char *magick;
    const char *mime;
};

static const struct format formats[] = {
    {"jpg", "JPEG", "image/jpeg"},  {"jpeg", "JPEG", "image/jpeg"}, {"png", "PNG", "image/png"},
    {"webp", "WEBP", "image/webp"}, {"gif", "GIF", "image/gif"},    {"bmp", "BMP", "image/bmp"},
    {"tif", "TIFF", "image/tiff"},  {"tiff", "TIFF", "image/tiff"},
};

const char *img_content_type(const char *magick)
{
    for (size_t i = 0; magick != NULL && i < sizeof formats / sizeof formats[0]; i++) {
        if (strcmp(magick, formats[i].magick) == 0) {
            return formats[i].mime;
        }
    }
    return "application/octet-stream";
}

bool img_format_for(const char *ext, const char **magick, const char **content_type)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (strcmp(ext, formats[i].ext) == 0) {
            *magick = formats[i].magick;
            *content_type = formats[i].mime;
            return true;
        }
    }
    return false;
}

static InterlaceType interlace_named(const char *name)
{
    static const struct {
        const char *name;
        InterlaceType type;
    } names[] = {
        {"NoInterlace", NoInterlace},       {"LineInterlace", LineInterlace},
        {"PlaneInterlace", PlaneInterlace}, {"PartitionInterlace", PartitionInterlace},
        {"JPEGInterlace", JPEGInterlace},   {"GIFInterlace", GIFInterlace},
        {"PNGInterlace", PNGInterlace},     {"UndefinedInterlace", UndefinedInterlace},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            return names[i].type;
        }
    }
    return NoInterlace; /* Blitline's fallback for an unknown name */
}

/* Strips metadata unless asked to keep it, keeping the ICC profile when `keep_icc`. */
static int strip_metadata(MagickWand *w, bool keep_icc, struct err *e)
{
    size_t icc_len = 0;
    unsigned char *icc = keep_icc ? MagickGetImageProfile(w, "icc", &icc_len) : NULL;
    int rc = 0;
    if (MagickStripImage(w) == MagickFalse) {
        rc = img_fail(w, "strip metadata", e);
    } else if (icc != NULL && icc_len > 0 &&
               MagickSetImageProfile(w, "icc", icc, icc_len) == MagickFalse) {
        rc = img_fail(w, "keep ICC profile", e);
    }
    if (icc != NULL) {
        MagickRelinquishMemory(icc);
    }
    return rc;
}

static int apply_save_options(MagickWand *w, const struct job_save *save, const char *magick,
                              long default_quality, struct err *e)
{
    if (!save->save_metadata && strip_metadata(w, save->save_profiles, e) < 0) {
        return -1;
    }
    if (MagickSetImageFormat(w, magick) == MagickFalse) {
        return img_fail(w, "set output format", e);
    }
    bool lossy = strcmp(magick, "JPEG") == 0 || strcmp(magick, "WEBP") == 0;
    long q = save->quality > 0 ? save->quality : default_quality;
    if (lossy && MagickSetImageCompressionQuality(w, (size_t)q) == MagickFalse) {
        return img_fail(w, "set quality", e);
    }
    /* the encoders read the wand's (image_info) scheme, the image's is kept for consistency */
    InterlaceType il = save->interlace != NULL ? interlace_named(save->interlace) : NoInterlace;
    if (MagickSetInterlaceScheme(w, il) == MagickFalse ||
        MagickSetImageInterlaceScheme(w, il) == MagickFalse) {
        return img_fail(w, "set interlace", e);
    }
    if (save->png_quantize && strcmp(magick, "PNG") == 0 &&
        MagickQuantizeImage(w, 256, sRGBColorspace, 0, MagickFalse, MagickFalse) == MagickFalse) {
        return img_fail(w, "png_quantize", e);
    }
    return 0;
}

int img_encode(MagickWand *w, const struct job_save *save, long default_quality, size_t max_bytes,
               struct img_output *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    const char *magick;
    if (!img_format_for(save->format, &magick, &out->content_type)) {
        return err_set(e, "Unsupported output format '%s' for '%s'", save->format,
                       save->image_identifier);
    }
    if (apply_save_options(w, save, magick, default_quality, e) < 0) {
        return -1;
    }
    out->width = (long)MagickGetImageWidth(w);
    out->height = (long)MagickGetImageHeight(w);
    MagickResetIterator(w);
    out->blob = MagickGetImageBlob(w, &out->len);
    if (out->blob == NULL || out->len == 0) {
        img_output_finish(out);
        return img_fail(w, "encode", e);
    }
    if (out->len > max_bytes) {
        size_t len = out->len;
        img_output_finish(out);
        return err_set(e, "output '%s' is %zu bytes, more than the limit of %zu",
                       save->image_identifier, len, max_bytes);
    }
    return 0;
}

void img_output_finish(struct img_output *out)
{
    if (out->blob != NULL) {
        MagickRelinquishMemory(out->blob);
    }
    out->blob = NULL;
    out->len = 0;
}
