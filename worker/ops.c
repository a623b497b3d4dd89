#include "ops.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "image.h"
#include "job.h"

/* no_op: the output is the input (convert, copy or metadata only); it has no parameters, and so
 * nothing to check either. */
static int op_no_op(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    return 0;
}

static const struct op ops_core[] = {
    {"no_op", op_no_op, false},
    {NULL, NULL, false},
};

/* Every table of operations; each ends with a NULL name. */
static const struct op *const tables[] = {ops_core, ops_geometry, ops_color, ops_draw};

const struct op *op_at(size_t i)
{
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (const struct op *o = tables[t]; o->name != NULL; o++) {
            if (i-- == 0) {
                return o;
            }
        }
    }
    return NULL;
}

const struct op *op_find(const char *name)
{
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (const struct op *o = tables[t]; o->name != NULL; o++) {
            if (strcmp(name, o->name) == 0) {
                return o;
            }
        }
    }
    return NULL;
}

int op_check_size(double w, double h, const struct op_ctx *ctx, const char *fn, struct err *e)
{
    if (w > (double)OP_MAX_SIDE || h > (double)OP_MAX_SIDE || w * h > (double)ctx->max_pixels) {
        return err_set(e,
                       "Function '%s' would make a %.0fx%.0f image, over the limit of %ld pixels "
                       "(PIXQ_MAX_PIXELS) and %ld per side",
                       fn, w, h, ctx->max_pixels, OP_MAX_SIDE);
    }
    MagickSizeType wl = GetMagickResourceLimit(WidthResource);
    MagickSizeType hl = GetMagickResourceLimit(HeightResource);
    if (w > (double)wl || h > (double)hl) {
        return err_set(e,
                       "Function '%s' would make a %.0fx%.0f image, beyond ImageMagick's largest "
                       "side (%llux%llu)",
                       fn, w, h, (unsigned long long)wl, (unsigned long long)hl);
    }
    return 0;
}

MagickWand *op_region(MagickWand *w, long width, long height, long x, long y)
{
    size_t pw = 0, ph = 0;
    ssize_t px = 0, py = 0;
    (void)MagickGetImagePage(w, &pw, &ph, &px, &py);
    (void)MagickSetImagePage(w, 0, 0, 0, 0); /* ImageMagick crops within the virtual canvas */
    MagickWand *region = MagickGetImageRegion(w, (size_t)width, (size_t)height, x, y);
    (void)MagickSetImagePage(w, pw, ph, px, py);
    if (region != NULL) {
        (void)MagickSetImagePage(region, 0, 0, 0, 0);
    }
    return region;
}

MagickWand *op_rows(MagickWand *w, long y0, long n)
{
    return op_region(w, (long)MagickGetImageWidth(w), n, 0, y0);
}

int op_fits_in_time(MagickWand *w, const char *fn, double out_pixels, op_run_fn run,
                    const void *arg, struct err *e)
{
    long left = img_time_left_ms(w);
    double cols = (double)MagickGetImageWidth(w), rows = (double)MagickGetImageHeight(w);
    if (left >= 0 && out_pixels * OP_SLOW_NS_PER_PIXEL / 1e6 > (double)left) {
        /* a sample of the image's shape, 1/OP_SAMPLE_SIDE of each side, from its middle: its
         * result has the same share of pixels inside the image as the whole one's */
        size_t sw = (size_t)ceil(cols / OP_SAMPLE_SIDE), sh = (size_t)ceil(rows / OP_SAMPLE_SIDE);
        long t0 = clock_mono_ms();
        MagickWand *sample = op_region(w, (long)sw, (long)sh, (long)((cols - (double)sw) / 2),
                                       (long)((rows - (double)sh) / 2));
        bool ran = sample != NULL && run(sample, arg) == MagickTrue;
        /* the deadline passed while the sample was cut or measured (the time was nearly gone
         * before: a large source's decoding on a loaded machine): the whole would not fit
         * either, and nothing ran on the image, so it is refused as below, its estimate from
         * the sample's time so far (a lower bound) */
        bool late = !ran && img_past_deadline(sample != NULL ? sample : w);
        if (!ran && !late) {
            img_fail(sample != NULL ? sample : w, fn, e);
            if (sample != NULL) {
                DestroyMagickWand(sample);
            }
            return -1;
        }
        double done =
            ran ? (double)MagickGetImageWidth(sample) * (double)MagickGetImageHeight(sample)
                : (double)sw * (double)sh;
        if (sample != NULL) {
            DestroyMagickWand(sample);
        }
        double need = (double)(clock_mono_ms() - t0) * out_pixels / (done > 1.0 ? done : 1.0);
        left = img_time_left_ms(w);
        if (late || need > (double)left) {
            return err_set(e,
                           "%s: would take longer than the limit of %ld s (PIXQ_MAGICK_TIME_S: "
                           "about %.1f s more for %.0f pixels, %.1f s left)",
                           fn, img_time_limit_s(), need / 1000.0, out_pixels,
                           (double)left / 1000.0);
        }
    }
    return 0;
}

int op_within_time(MagickWand *w, const char *fn, double out_pixels, op_run_fn run, const void *arg,
                   struct err *e)
{
    if (op_fits_in_time(w, fn, out_pixels, run, arg, e) < 0) {
        return -1;
    }
    if (run(w, arg) == MagickFalse || img_past_deadline(w)) {
        return img_fail(w, fn, e);
    }
    return 0;
}

/* clang-format off */
static const struct {
    const char *name;
    GravityType gravity;
} gravities[] = {
    {"NorthWestGravity", NorthWestGravity}, {"NorthGravity", NorthGravity},
    {"NorthEastGravity", NorthEastGravity}, {"WestGravity", WestGravity},
    {"CenterGravity", CenterGravity},       {"EastGravity", EastGravity},
    {"SouthWestGravity", SouthWestGravity}, {"SouthGravity", SouthGravity},
    {"SouthEastGravity", SouthEastGravity},
};
/* clang-format on */

/* A gravity whose default is `def` (NULL: none, recorded so, and `absent` when absent). */
static int gravity_param(json_object *params, const char *fn, const char *name, const char *def,
                         GravityType absent, GravityType *out, struct err *e)
{
    const char *s;
    job_param_declare(fn, name, "gravity", NULL);
    if (job_param_string(params, fn, name, def, &s, e) < 0) {
        return -1;
    }
    if (s == NULL) {
        *out = absent;
        return 0;
    }
    *out = CenterGravity; /* Blitline: an unknown gravity is Center */
    for (size_t i = 0; i < sizeof gravities / sizeof gravities[0]; i++) {
        size_t short_len = strlen(gravities[i].name) - strlen("Gravity");
        if (strcasecmp(s, gravities[i].name) == 0 ||
            (strlen(s) == short_len && strncasecmp(s, gravities[i].name, short_len) == 0)) {
            *out = gravities[i].gravity;
            return 0;
        }
    }
    return 0;
}

int op_gravity(json_object *params, const char *fn, const char *name, GravityType *out,
               struct err *e)
{
    return gravity_param(params, fn, name, "CenterGravity", CenterGravity, out, e);
}

int op_gravity_or(json_object *params, const char *fn, const char *name, GravityType absent,
                  GravityType *out, struct err *e)
{
    return gravity_param(params, fn, name, NULL, absent, out, e);
}

PixelWand *op_color(json_object *params, const char *fn, const char *name, const char *def,
                    struct err *e)
{
    const char *s;
    job_param_declare(fn, name, "colour", NULL);
    if (job_param_string(params, fn, name, def, &s, e) < 0) {
        return NULL;
    }
    PixelWand *p = NewPixelWand();
    if (strlen(s) > 64 || PixelSetColor(p, s) == MagickFalse) {
        DestroyPixelWand(p);
        err_set(e, "Invalid parameter '%s' for function '%s': '%.64s' is not a colour", name, fn,
                s);
        return NULL;
    }
    return p;
}

int op_color_for(const MagickWand *w, json_object *params, const char *fn, const char *name,
                 const char *def, PixelWand **out, struct err *e)
{
    *out = op_color(params, fn, name, def, e);
    if (*out == NULL) {
        return -1;
    }
    if (w == NULL) {
        *out = DestroyPixelWand(*out);
        return 0;
    }
    return 1;
}
