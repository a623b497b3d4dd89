/* ops_geometry: resizing, cropping, padding, rotating and trimming (BLITLINE.md 4.1), and
 * background_color (4.3), which is pad with a size of 0.
 *
 * Placement follows ImageMagick's gravity rule (GravityAdjustGeometry), so that every operation
 * matches the `convert -gravity G ...` command a test compares it with. Every operation that
 * makes a bigger image checks the result with op_check_size() first. */
#include <math.h>

#include "image.h"
#include "job.h"
#include "ops.h"

#define RAD_PER_DEG    (3.14159265358979323846 / 180.0)
#define ROTATE_MAX_DEG 1e6 /* amount: any number of turns up to this, taken modulo 360 */

/* ---------------------------------------------------------------- sizes and placement */

void op_fit_size(long w, long h, long W, long H, long *out_w, long *out_h)
{
    double sw = W > 0 ? (double)W / (double)w : INFINITY;
    double sh = H > 0 ? (double)H / (double)h : INFINITY;
    double s = sw < sh ? sw : sh;
    long nw = (long)floor((double)w * s + 0.5);
    long nh = (long)floor((double)h * s + 0.5);
    *out_w = nw < 1 ? 1 : nw;
    *out_h = nh < 1 ? 1 : nh;
}

/* A side computed in floating point: rounded half up, at least 1, and capped (far above
 * OP_MAX_SIDE, which op_check_size() enforces) so that the cast cannot overflow. */
static long side_of(double d)
{
    double r = floor(d + 0.5);
    if (r < 1.0) {
        return 1;
    }
    return r > 1e12 ? 1000000000000L : (long)r;
}

static long width_of(MagickWand *w)
{
    return (long)MagickGetImageWidth(w);
}

static long height_of(MagickWand *w)
{
    return (long)MagickGetImageHeight(w);
}

/* Blitline's only_shrink_larger test: the image is strictly smaller than every given
 * constraint (a constraint of 0 is no constraint). */
static bool below_constraints(long iw, long ih, long W, long H)
{
    return (W == 0 || iw < W) && (H == 0 || ih < H);
}

/* Top-left corner (x, y) of a bw x bh box placed in an aw x ah area at gravity `g`, moved by
 * (dx, dy) inward from the gravity's edges, exactly as ImageMagick's GravityAdjustGeometry. */
static void gravity_place(GravityType g, long aw, long ah, long bw, long bh, long dx, long dy,
                          long *x, long *y)
{
    switch (g) {
    case NorthEastGravity:
    case EastGravity:
    case SouthEastGravity:
        *x = aw - bw - dx;
        break;
    case NorthGravity:
    case SouthGravity:
    case CenterGravity:
        *x = aw / 2 - bw / 2 + dx;
        break;
    default:
        *x = dx;
    }
    switch (g) {
    case SouthWestGravity:
    case SouthGravity:
    case SouthEastGravity:
        *y = ah - bh - dy;
        break;
    case WestGravity:
    case EastGravity:
    case CenterGravity:
        *y = ah / 2 - bh / 2 + dy;
        break;
    default:
        *y = dy;
    }
}

/* ---------------------------------------------------------------- checked wand calls */

/* A required whole-number parameter in [min, max]. */
static int required_long(json_object *p, const char *fn, const char *name, long min, long max,
                         long *out, struct err *e)
{
    if (job_param_required(p, fn, name, true, e) < 0) {
        return -1;
    }
    return job_param_long(p, fn, name, 0, min, max, out, e);
}

/* Forgets the virtual canvas (`+repage`), so that offsets count from the first pixel. */
static int reset_page(MagickWand *w, const char *fn, struct err *e)
{
    if (MagickSetImagePage(w, 0, 0, 0, 0) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return 0;
}

/* A light unsharp mask for resized images (autosharpen). Blitline documents the switch but not
 * its strength: this is the common post-downscale setting `-unsharp 0x0.75+0.75+0.008`. */
static int autosharpen(MagickWand *w, const char *fn, struct err *e)
{
    if (MagickUnsharpMaskImage(w, 0.0, 0.75, 0.75, 0.008) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return 0;
}

/* Resizes to nw x nh with ImageMagick's default filter (as `-resize WxH!`); nothing to do at the
 * same size. */
static int resize_to(MagickWand *w, long nw, long nh, bool sharpen, const struct op_ctx *ctx,
                     const char *fn, struct err *e)
{
    if (nw == width_of(w) && nh == height_of(w)) {
        return 0;
    }
    if (op_check_size(nw, nh, ctx, fn, e) < 0) {
        return -1;
    }
    if (img_resize(w, nw, nh, fn, e) < 0) {
        return -1;
    }
    return sharpen ? autosharpen(w, fn, e) : 0;
}

/* Keeps the part of the cw x ch region at (x, y) that lies on the image, then resets the page
 * (`-crop WxH+X+Y +repage`). A region entirely off the image is an error, where ImageMagick
 * would return a transparent pixel. */
static int crop_region(MagickWand *w, long cw, long ch, long x, long y, const char *fn,
                       struct err *e)
{
    long iw = width_of(w), ih = height_of(w);
    bool x_off = x >= iw || x + cw <= 0, y_off = y >= ih || y + ch <= 0;
    if (x_off || y_off) {
        return err_set(e,
                       "Invalid parameter '%s' for function '%s': the %ldx%ld region at %+ld%+ld "
                       "lies outside the %ldx%ld image",
                       x_off ? "x" : "y", fn, cw, ch, x, y, iw, ih);
    }
    if (reset_page(w, fn, e) < 0) {
        return -1;
    }
    if (MagickCropImage(w, (size_t)cw, (size_t)ch, x, y) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return reset_page(w, fn, e);
}

/* Puts the image on a new aw x ah canvas of `color`, its top-left corner at (x, y), composited
 * over the colour (transparency is flattened onto it). `color` becomes the image's background
 * colour, which a later rotate fills its corners with. */
static int extent_onto(MagickWand *w, const PixelWand *color, long aw, long ah, long x, long y,
                       const struct op_ctx *ctx, const char *fn, struct err *e)
{
    if (op_check_size(aw, ah, ctx, fn, e) < 0 || reset_page(w, fn, e) < 0) {
        return -1;
    }
    if (MagickSetImageBackgroundColor(w, color) == MagickFalse ||
        MagickExtentImage(w, (size_t)aw, (size_t)ah, -x, -y) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return reset_page(w, fn, e);
}

/* ---------------------------------------------------------------- resizing */

/* resize_to_fit: scale keeping the aspect ratio to fit inside width x height (either may be
 * omitted); scales up unless only_shrink_larger. */
static int op_resize_to_fit(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "resize_to_fit";
    long W, H;
    bool only_shrink, sharpen;
    if (job_param_long(p, fn, "width", 0, 0, OP_MAX_BOUND, &W, e) < 0 ||
        job_param_long(p, fn, "height", 0, 0, OP_MAX_BOUND, &H, e) < 0 ||
        job_param_bool(p, fn, "only_shrink_larger", false, &only_shrink, e) < 0 ||
        job_param_bool(p, fn, "autosharpen", false, &sharpen, e) < 0) {
        return -1;
    }
    job_param_declare(fn, "width", NULL, "width or height is required");
    job_param_declare(fn, "height", NULL, "width or height is required");
    if (W == 0 && H == 0 && !job_param_recording()) {
        return err_set(e, "Missing parameter 'width' or 'height' for function '%s'", fn);
    }
    if (w == NULL) {
        return 0;
    }
    long iw = width_of(w), ih = height_of(w);
    if (only_shrink && below_constraints(iw, ih, W, H)) {
        return 0;
    }
    long nw, nh;
    op_fit_size(iw, ih, W, H, &nw, &nh);
    return resize_to(w, nw, nh, sharpen, ctx, fn, e);
}

/* resize_to_fill: cover width x height keeping the aspect ratio (scale = the larger of W/w and
 * H/h, sides rounded half up), then crop to exactly width x height at gravity. */
static int op_resize_to_fill(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "resize_to_fill";
    long W, H;
    bool only_shrink, sharpen;
    GravityType g;
    if (required_long(p, fn, "width", 1, OP_MAX_SIDE, &W, e) < 0 ||
        required_long(p, fn, "height", 1, OP_MAX_SIDE, &H, e) < 0 ||
        op_gravity(p, fn, "gravity", &g, e) < 0 ||
        job_param_bool(p, fn, "only_shrink_larger", false, &only_shrink, e) < 0 ||
        job_param_bool(p, fn, "autosharpen", false, &sharpen, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    long iw = width_of(w), ih = height_of(w);
    if ((only_shrink && below_constraints(iw, ih, W, H)) || (iw == W && ih == H)) {
        return 0;
    }
    double s = fmax((double)W / (double)iw, (double)H / (double)ih);
    long nw = side_of(s * (double)iw), nh = side_of(s * (double)ih);
    nw = nw < W ? W : nw;
    nh = nh < H ? H : nh;
    if (resize_to(w, nw, nh, sharpen, ctx, fn, e) < 0) {
        return -1;
    }
    long x, y;
    gravity_place(g, nw, nh, W, H, 0, 0, &x, &y);
    return crop_region(w, W, H, x, y, fn, e);
}

/* The size resize and scale ask for: width x height (both required), or the image's size times
 * scale_factor (which wins when both are given), sides rounded half up (0 x 0 when `w` is NULL:
 * the parameters checked only). */
static int exact_size(MagickWand *w, json_object *p, const char *fn, long *nw, long *nh,
                      struct err *e)
{
    *nw = *nh = 0;
    if (job_param_number_given(p, "scale_factor")) {
        double f;
        if (job_param_double(p, fn, "scale_factor", 1.0, 0.0, (double)OP_MAX_SIDE, &f, e) < 0) {
            return -1;
        }
        if (f <= 0.0) {
            return err_set(e,
                           "Invalid parameter 'scale_factor' for function '%s': must be more "
                           "than 0",
                           fn);
        }
        if (w == NULL) {
            return 0;
        }
        *nw = side_of(f * (double)width_of(w));
        *nh = side_of(f * (double)height_of(w));
        return 0;
    }
    job_param_declare(fn, "width", NULL, "unless scale_factor is given");
    job_param_declare(fn, "height", NULL, "unless scale_factor is given");
    if (required_long(p, fn, "width", 1, OP_MAX_SIDE, nw, e) < 0 ||
        required_long(p, fn, "height", 1, OP_MAX_SIDE, nh, e) < 0) {
        return -1;
    }
    return 0;
}

/* resize: exactly width x height (the aspect ratio is not kept), or by scale_factor. */
static int op_resize(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    long nw, nh;
    if (exact_size(w, p, "resize", &nw, &nh, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return resize_to(w, nw, nh, false, ctx, "resize", e);
}

/* scale: as resize, with ImageMagick's box-filter scale (`-scale WxH!`). */
static int op_scale(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "scale";
    long nw, nh;
    if (exact_size(w, p, fn, &nw, &nh, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (nw == width_of(w) && nh == height_of(w)) {
        return 0;
    }
    if (op_check_size(nw, nh, ctx, fn, e) < 0) {
        return -1;
    }
    if (MagickScaleImage(w, (size_t)nw, (size_t)nh) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return 0;
}

/* thumbnail: exactly width x height (the aspect ratio is not kept) with ImageMagick's thumbnail
 * resize, which also drops the image's profiles (`-thumbnail WxH!`; a worker function of
 * Blitline's). */
static int op_thumbnail(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "thumbnail";
    long nw, nh;
    if (required_long(p, fn, "width", 1, OP_MAX_SIDE, &nw, e) < 0 ||
        required_long(p, fn, "height", 1, OP_MAX_SIDE, &nh, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0; /* the size's limits are the run's, as for every operation */
    }
    if (op_check_size(nw, nh, ctx, fn, e) < 0) {
        return -1;
    }
    if (MagickThumbnailImage(w, (size_t)nw, (size_t)nh) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return 0;
}

/* resize_to_fit_with_wrap: the smallest size of the image's aspect ratio that covers width x
 * height (1.0 each by default), sides truncated, as Blitline's worker function; nothing when
 * only_shrink_larger and the image is smaller than both. Unlike resize_to_fill nothing is
 * cropped. */
static int op_resize_to_fit_with_wrap(MagickWand *w, json_object *p, const struct op_ctx *ctx,
                                      struct err *e)
{
    const char *fn = "resize_to_fit_with_wrap";
    double W, H;
    bool only_shrink;
    if (job_param_double(p, fn, "width", 1.0, 1.0, (double)OP_MAX_SIDE, &W, e) < 0 ||
        job_param_double(p, fn, "height", 1.0, 1.0, (double)OP_MAX_SIDE, &H, e) < 0 ||
        job_param_bool(p, fn, "only_shrink_larger", false, &only_shrink, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    long iw = width_of(w), ih = height_of(w);
    if (only_shrink && below_constraints(iw, ih, (long)W, (long)H)) {
        return 0;
    }
    /* the image at least as wide as the box (iw/ih >= W/H, cross-multiplied): the height is
     * covered exactly and the width follows from it, else the other way round; one product and
     * one quotient, so that a whole side stays whole (W * (iw/ih) / (W/H) was 99.999... for
     * 200x150 to 100x75, truncated to 99) */
    bool wider = (double)iw * H >= W * (double)ih;
    double nw = wider ? H * (double)iw / (double)ih : W;
    double nh = wider ? H : W * (double)ih / (double)iw;
    long tw = nw < 1.0 ? 1 : nw > 1e12 ? 1000000000000L : (long)nw;
    long th = nh < 1.0 ? 1 : nh > 1e12 ? 1000000000000L : (long)nh;
    return resize_to(w, tw, th, false, ctx, fn, e);
}

/* ---------------------------------------------------------------- cropping */

/* The largest region with the aspect ratio of W x H that fits in the image (crop's
 * preserve_aspect_if_smaller). */
static void aspect_region(long iw, long ih, long *W, long *H)
{
    double s = fmin((double)iw / (double)*W, (double)ih / (double)*H);
    long rw = side_of(s * (double)*W), rh = side_of(s * (double)*H);
    *W = rw > iw ? iw : rw;
    *H = rh > ih ? ih : rh;
}

/* crop: width x height (height 0 or absent: the full height) at x, y. Without gravity x, y count
 * from the top-left corner; with gravity they are offsets inward from the gravity's edges. */
static int op_crop(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "crop";
    long W, H, dx, dy;
    bool only_shrink, preserve;
    GravityType g;
    if (required_long(p, fn, "width", 1, OP_MAX_SIDE, &W, e) < 0 ||
        job_param_long(p, fn, "height", 0, 0, OP_MAX_SIDE, &H, e) < 0 ||
        job_param_long(p, fn, "x", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &dx, e) < 0 ||
        job_param_long(p, fn, "y", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &dy, e) < 0 ||
        op_gravity_or(p, fn, "gravity", NorthWestGravity, &g, e) < 0 ||
        job_param_bool(p, fn, "only_shrink_larger", false, &only_shrink, e) < 0 ||
        job_param_bool(p, fn, "preserve_aspect_if_smaller", false, &preserve, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    long iw = width_of(w), ih = height_of(w);
    if (only_shrink && below_constraints(iw, ih, W, H)) {
        return 0;
    }
    if (preserve && H > 0 && (iw < W || ih < H)) {
        aspect_region(iw, ih, &W, &H);
    }
    H = H == 0 ? ih : H;
    long x, y;
    gravity_place(g, iw, ih, W, H, dx, dy, &x, &y);
    return crop_region(w, W, H, x, y, fn, e);
}

/* crop_to_square: the square of side min(width, height) at gravity, moved by x, y. */
static int op_crop_to_square(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "crop_to_square";
    long dx, dy;
    GravityType g;
    if (op_gravity(p, fn, "gravity", &g, e) < 0 ||
        job_param_long(p, fn, "x", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &dx, e) < 0 ||
        job_param_long(p, fn, "y", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &dy, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    long iw = width_of(w), ih = height_of(w);
    long side = iw < ih ? iw : ih;
    long x, y;
    gravity_place(g, iw, ih, side, side, dx, dy, &x, &y);
    return crop_region(w, side, side, x, y, fn, e);
}

/* trim: crop away the border of the corner colour; fuzz (0-1, a fraction of the quantum range)
 * lets near colours count as border (`-fuzz F% -trim +repage`). An image of one colour becomes a
 * single transparent pixel, as ImageMagick (and so Blitline) does. */
static int op_trim(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "trim";
    double fuzz;
    if (job_param_double(p, fn, "fuzz", 0.0, 0.0, 1.0, &fuzz, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (reset_page(w, fn, e) < 0) {
        return -1;
    }
    if (MagickTrimImage(w, fuzz * QuantumRange) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    MagickClearException(w); /* a uniform image warns and becomes one pixel, as with convert */
    return reset_page(w, fn, e);
}

/* ---------------------------------------------------------------- padding and rotating */

/* pad: `size` pixels of `color` on the gravity's side (North, South, East, West), or on all four
 * sides (Center and the corner gravities). The image is composited over the colour. */
static int op_pad(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "pad";
    long size;
    GravityType g;
    if (required_long(p, fn, "size", 0, OP_MAX_SIDE, &size, e) < 0 ||
        op_gravity(p, fn, "gravity", &g, e) < 0) {
        return -1;
    }
    PixelWand *color;
    int go = op_color_for(w, p, fn, "color", "#ffffff", &color, e);
    if (go <= 0) {
        return go;
    }
    long aw = width_of(w), ah = height_of(w);
    bool vertical = g == NorthGravity || g == SouthGravity;
    bool horizontal = g == WestGravity || g == EastGravity;
    aw += vertical ? 0 : horizontal ? size : 2 * size;
    ah += horizontal ? 0 : vertical ? size : 2 * size;
    long x = g == EastGravity || vertical ? 0 : size;
    long y = g == SouthGravity || horizontal ? 0 : size;
    int rc = extent_onto(w, color, aw, ah, x, y, ctx, fn, e);
    DestroyPixelWand(color);
    return rc;
}

/* background_color: flatten transparency onto `color` (Blitline: pad with size 0). */
static int op_background_color(MagickWand *w, json_object *p, const struct op_ctx *ctx,
                               struct err *e)
{
    const char *fn = "background_color";
    PixelWand *color;
    int go = op_color_for(w, p, fn, "color", "#ffffff", &color, e);
    if (go <= 0) {
        return go;
    }
    int rc = extent_onto(w, color, width_of(w), height_of(w), 0, 0, ctx, fn, e);
    DestroyPixelWand(color);
    return rc;
}

/* Fits the image into W x H (unless only_larger and it already fits) and centres it at gravity
 * on a W x H canvas of `color`. */
static int letterbox(MagickWand *w, long W, long H, bool only_larger, GravityType g,
                     const PixelWand *color, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "pad_resize_to_fit";
    long iw = width_of(w), ih = height_of(w), nw = iw, nh = ih;
    if (op_check_size(W, H, ctx, fn, e) < 0) {
        return -1;
    }
    if (!only_larger || iw > W || ih > H) {
        op_fit_size(iw, ih, W, H, &nw, &nh);
    }
    if (resize_to(w, nw, nh, false, ctx, fn, e) < 0) {
        return -1;
    }
    long x, y;
    gravity_place(g, W, H, nw, nh, 0, 0, &x, &y);
    return extent_onto(w, color, W, H, x, y, ctx, fn, e);
}

/* pad_resize_to_fit: fit inside width x height (scaling up unless only_resize_larger), then pad
 * to exactly width x height with `color`, the image placed at gravity (letterbox). */
static int op_pad_resize_to_fit(MagickWand *w, json_object *p, const struct op_ctx *ctx,
                                struct err *e)
{
    const char *fn = "pad_resize_to_fit";
    long W, H;
    bool only_larger;
    GravityType g;
    if (required_long(p, fn, "width", 1, OP_MAX_SIDE, &W, e) < 0 ||
        required_long(p, fn, "height", 1, OP_MAX_SIDE, &H, e) < 0 ||
        op_gravity(p, fn, "gravity", &g, e) < 0 ||
        job_param_bool(p, fn, "only_resize_larger", false, &only_larger, e) < 0) {
        return -1;
    }
    PixelWand *color;
    int go = op_color_for(w, p, fn, "color", "#ffffff", &color, e);
    if (go <= 0) {
        return go;
    }
    int rc = letterbox(w, W, H, only_larger, g, color, ctx, e);
    DestroyPixelWand(color);
    return rc;
}

/* A turn of rotate: `deg` degrees over `bg`. */
struct turn {
    PixelWand *bg;
    double deg;
};

/* op_run_fn: turns the image as `arg`, a struct turn, says. */
static MagickBooleanType turn(MagickWand *w, const void *arg)
{
    const struct turn *t = arg;
    return MagickRotateImage(w, t->bg, t->deg);
}

/* Makes `c`, an sRGB colour, the CMYK one (no black) that ImageMagick's turn fills a CMYK image's
 * corners with: it reads the background colour's red, green and blue as cyan, magenta and
 * yellow (the default white came out black, a background_color's green magenta). */
static void cmyk_fill(PixelWand *c)
{
    PixelSetRed(c, 1.0 - PixelGetRed(c));
    PixelSetGreen(c, 1.0 - PixelGetGreen(c));
    PixelSetBlue(c, 1.0 - PixelGetBlue(c));
}

/* rotate: `amount` degrees clockwise (default 90, as Blitline's worker; any turn, as
 * ImageMagick takes it: 450 is 90). The canvas grows to the
 * rotated bounding box; the corners take the image's background colour (white unless the
 * source or an earlier pad/background_color set one). */
static int op_rotate(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "rotate";
    double deg;
    if (job_param_double(p, fn, "amount", 90.0, -ROTATE_MAX_DEG, ROTATE_MAX_DEG, &deg, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    deg = fmod(deg, 360.0);
    double rad = deg * RAD_PER_DEG, c = fabs(cos(rad)), s = fabs(sin(rad));
    double iw = (double)width_of(w), ih = (double)height_of(w);
    if (op_check_size(side_of(iw * c + ih * s + 2.0), side_of(iw * s + ih * c + 2.0), ctx, fn, e) <
        0) {
        return -1;
    }
    struct turn t = {.bg = NewPixelWand(), .deg = deg};
    int rc = 0;
    if (MagickGetImageBackgroundColor(w, t.bg) == MagickFalse) {
        rc = img_fail(w, fn, e);
    } else if (fmod(deg, 90.0) == 0.0) { /* a quarter turn moves pixels, row by row */
        rc = turn(w, &t) == MagickFalse ? img_fail(w, fn, e) : 0;
    } else {
        bool cmyk = MagickGetImageColorspace(w) == CMYKColorspace;
        PixelWand *bg = cmyk ? ClonePixelWand(t.bg) : NULL;
        if (cmyk) {
            cmyk_fill(t.bg);
        }
        rc = op_within_time(w, fn, (iw * c + ih * s) * (iw * s + ih * c), turn, &t, e);
        /* the turn made the fill the image's background colour: a later turn reads it */
        if (bg != NULL && rc == 0 && MagickSetImageBackgroundColor(w, bg) == MagickFalse) {
            rc = img_fail(w, fn, e);
        }
        if (bg != NULL) {
            DestroyPixelWand(bg);
        }
    }
    DestroyPixelWand(t.bg);
    return rc == 0 ? reset_page(w, fn, e) : rc;
}

/* clang-format off */
const struct op ops_geometry[] = {
    {"resize_to_fit", op_resize_to_fit, false},
    {"resize_to_fill", op_resize_to_fill, false},
    {"resize", op_resize, false},
    {"scale", op_scale, false},
    {"thumbnail", op_thumbnail, false},
    {"resize_to_fit_with_wrap", op_resize_to_fit_with_wrap, false},
    {"crop", op_crop, false},
    {"crop_to_square", op_crop_to_square, false},
    {"pad", op_pad, false},
    {"pad_resize_to_fit", op_pad_resize_to_fit, false},
    {"rotate", op_rotate, false},
    {"trim", op_trim, false},
    {"background_color", op_background_color, false},
    {NULL, NULL, false},
};
/* clang-format on */
