/* ops_geometry: resizing, cropping, padding, rotating and trimming (BLITLINE.md 4.1). */
#include <math.h>
#include <string.h>

#include "image.h"
#include "job.h"
#include "ops.h"

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

static int resize_checked(MagickWand *w, long nw, long nh, const struct op_ctx *ctx, const char *fn,
                          struct err *e)
{
    if (nw > ctx->max_pixels / nh) {
        return err_set(e, "%s would make a %ldx%ld image, more than the limit of %ld pixels", fn,
                       nw, nh, ctx->max_pixels);
    }
    if (MagickResizeImage(w, (size_t)nw, (size_t)nh, UndefinedFilter, 1.0) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return 0;
}

/* resize_to_fit: scale keeping the aspect ratio to fit inside width x height (either may be
 * omitted); scales up unless only_shrink_larger. */
static int op_resize_to_fit(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "resize_to_fit";
    long W, H;
    bool only_shrink;
    if (job_param_long(p, fn, "width", 0, 0, OP_MAX_SIDE, &W, e) < 0 ||
        job_param_long(p, fn, "height", 0, 0, OP_MAX_SIDE, &H, e) < 0 ||
        job_param_bool(p, fn, "only_shrink_larger", false, &only_shrink, e) < 0) {
        return -1;
    }
    if (W == 0 && H == 0) {
        return err_set(e, "Invalid parameter 'width' for function '%s': width or height required",
                       fn);
    }
    long iw = (long)MagickGetImageWidth(w), ih = (long)MagickGetImageHeight(w);
    if (only_shrink && (W == 0 || iw < W) && (H == 0 || ih < H)) {
        return 0;
    }
    long nw, nh;
    op_fit_size(iw, ih, W, H, &nw, &nh);
    if (nw == iw && nh == ih) {
        return 0;
    }
    return resize_checked(w, nw, nh, ctx, fn, e);
}

/* clang-format off */
const struct op ops_geometry[] = {
    {"resize_to_fit", op_resize_to_fit},
    {NULL, NULL},
};
/* clang-format on */
