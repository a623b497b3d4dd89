#include "shrink.h"

#include <math.h>
#include <string.h>
#include <wand/MagickWand.h>

#include "err.h"
#include "ops.h"

struct dims {
    long w, h;
};

/* A sizing function: the size it makes from an `in` image (`out`) and the size it resizes to
 * before cropping or padding (`target`). Mirrors the function in ops_geometry.c; returns -1
 * when it cannot tell (bad or missing parameters: the function itself reports them). */
typedef int (*size_fn)(json_object *p, struct dims in, struct dims *out, struct dims *target);

struct rule {
    const char *name;
    size_fn size;      /* NULL: works pixel by pixel, the size does not change */
    bool exact_target; /* the resized part must have the same size too (it is cropped or
                          placed: the same size keeps the same offsets) */
};

/* ---------------------------------------------------------------- sizes */

static bool below_constraints(struct dims in, long W, long H)
{
    return (W == 0 || in.w < W) && (H == 0 || in.h < H);
}

static long side_of(double d)
{
    double r = floor(d + 0.5);
    return r < 1.0 ? 1 : r > 1e12 ? 1000000000000L : (long)r;
}

/* width and height, both required (1..OP_MAX_SIDE). */
static int both_sides(json_object *p, const char *fn, long *W, long *H, struct err *e)
{
    if (!job_param_number_given(p, "width") || !job_param_number_given(p, "height")) {
        return -1;
    }
    if (job_param_long(p, fn, "width", 0, 1, OP_MAX_SIDE, W, e) < 0 ||
        job_param_long(p, fn, "height", 0, 1, OP_MAX_SIDE, H, e) < 0) {
        return -1;
    }
    return 0;
}

static int fit_size(json_object *p, struct dims in, struct dims *out, struct dims *target)
{
    const char *fn = "resize_to_fit";
    struct err e;
    long W, H;
    bool only;
    if (job_param_long(p, fn, "width", 0, 0, OP_MAX_BOUND, &W, &e) < 0 ||
        job_param_long(p, fn, "height", 0, 0, OP_MAX_BOUND, &H, &e) < 0 ||
        job_param_bool(p, fn, "only_shrink_larger", false, &only, &e) < 0 || (W == 0 && H == 0)) {
        return -1;
    }
    *out = in;
    if (!only || !below_constraints(in, W, H)) {
        op_fit_size(in.w, in.h, W, H, &out->w, &out->h);
    }
    *target = *out;
    return 0;
}

static int fill_size(json_object *p, struct dims in, struct dims *out, struct dims *target)
{
    const char *fn = "resize_to_fill";
    struct err e;
    long W, H;
    bool only;
    if (both_sides(p, fn, &W, &H, &e) < 0 ||
        job_param_bool(p, fn, "only_shrink_larger", false, &only, &e) < 0) {
        return -1;
    }
    if ((only && below_constraints(in, W, H)) || (in.w == W && in.h == H)) {
        *out = *target = in;
        return 0;
    }
    double s = fmax((double)W / (double)in.w, (double)H / (double)in.h);
    long nw = side_of(s * (double)in.w), nh = side_of(s * (double)in.h);
    *target = (struct dims){nw < W ? W : nw, nh < H ? H : nh};
    *out = (struct dims){W, H};
    return 0;
}

/* resize and scale with width and height (scale_factor is relative to the source: not here). */
static int exact_size(json_object *p, struct dims in, struct dims *out, struct dims *target)
{
    struct err e;
    long W, H;
    if (job_param_number_given(p, "scale_factor") || both_sides(p, "resize", &W, &H, &e) < 0) {
        return -1;
    }
    *out = *target = (struct dims){W, H};
    return 0;
}

static int pad_fit_size(json_object *p, struct dims in, struct dims *out, struct dims *target)
{
    const char *fn = "pad_resize_to_fit";
    struct err e;
    long W, H;
    bool only;
    if (both_sides(p, fn, &W, &H, &e) < 0 ||
        job_param_bool(p, fn, "only_resize_larger", false, &only, &e) < 0) {
        return -1;
    }
    *target = in;
    if (!only || in.w > W || in.h > H) {
        op_fit_size(in.w, in.h, W, H, &target->w, &target->h);
    }
    *out = (struct dims){W, H};
    return 0;
}

/* ---------------------------------------------------------------- the tree */

/* The functions that may come before the first sizing one (pixel by pixel), and the sizing
 * ones. Every other function keeps the full decode. */
static const struct rule rules[] = {
    {"no_op", NULL, false},
    {"gray_colorspace", NULL, false},
    {"sepia_tone", NULL, false},
    {"modulate", NULL, false},
    {"contrast", NULL, false},
    {"gamma_channel", NULL, false},
    {"level", NULL, false},
    {"levelize", NULL, false},
    {"density", NULL, false},
    {"delete_profile", NULL, false},
    {"resize_to_fit", fit_size, false},
    {"resize_to_fill", fill_size, true},
    {"resize", exact_size, false},
    {"scale", exact_size, false},
    {"pad_resize_to_fit", pad_fit_size, true},
};

/* Functions whose output size depends on pixel values: not anywhere in a shrunk tree. */
static const char *const value_sized[] = {"trim", "deskew"};

static const struct rule *rule_for(const char *name)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (strcmp(rules[i].name, name) == 0) {
            return &rules[i];
        }
    }
    return NULL;
}

/* Whether no function of the subtrees derives a size from pixel values. */
static bool sizes_fixed(const struct job_fn *fns, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof value_sized / sizeof value_sized[0]; k++) {
            if (strcmp(fns[i].name, value_sized[k]) == 0) {
                return false;
            }
        }
        if (!sizes_fixed(fns[i].children, fns[i].n_children)) {
            return false;
        }
    }
    return true;
}

static bool same(struct dims a, struct dims b)
{
    return a.w == b.w && a.h == b.h;
}

static bool tree_ok(const struct job_fn *fns, size_t n, struct dims full, struct dims red);

/* One function seeing the full image (`full`) or the reduced one (`red`), no sizing before. */
static bool fn_ok(const struct job_fn *f, struct dims full, struct dims red)
{
    const struct rule *r = rule_for(f->name);
    if (r == NULL) {
        return false;
    }
    if (r->size == NULL) {
        return f->save == NULL && tree_ok(f->children, f->n_children, full, red);
    }
    struct dims out_f, tgt_f, out_r, tgt_r;
    if (r->size(f->params, full, &out_f, &tgt_f) < 0 ||
        r->size(f->params, red, &out_r, &tgt_r) < 0) {
        return false;
    }
    if (!same(out_f, out_r) || tgt_r.w > red.w || tgt_r.h > red.h) {
        return false; /* another size, or the reduced image enlarged */
    }
    if (r->exact_target && !same(tgt_f, tgt_r)) {
        return false;
    }
    return sizes_fixed(f->children, f->n_children);
}

static bool tree_ok(const struct job_fn *fns, size_t n, struct dims full, struct dims red)
{
    for (size_t i = 0; i < n; i++) {
        if (!fn_ok(&fns[i], full, red)) {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- the scale */

int shrink_libjpeg_scale(long width, long height, long hint_w, long hint_h)
{
    if (hint_w <= 0 || hint_h <= 0) {
        return SHRINK_DENOM;
    }
    double f = (double)width / (double)hint_w, fh = (double)height / (double)hint_h;
    f = fh < f ? fh : f;
    long denom = f < 1.0 ? 0 : f > 1000.0 ? 1000 : (long)f;
    for (int m = 1; m <= SHRINK_DENOM; m++) {
        if (SHRINK_DENOM <= denom * m) {
            return m;
        }
    }
    return SHRINK_DENOM; /* (a denominator of 0 would make libjpeg enlarge: never hinted) */
}

static long scaled(long side, int m)
{
    return (side * m + SHRINK_DENOM - 1) / SHRINK_DENOM; /* libjpeg rounds up */
}

/* Orientations that swap width and height (LeftTop, RightTop, RightBottom, LeftBottom). */
static bool swaps(int orientation)
{
    return orientation >= LeftTopOrientation && orientation <= LeftBottomOrientation;
}

bool shrink_plan(const struct job *j, long width, long height, int orientation,
                 struct shrink_plan *out)
{
    static const int scales[] = {1, 2, 3, 4}; /* what ImageMagick's hint can ask for */
    /* an unknown orientation (-1): the tree must work both ways */
    bool turned = !j->suppress_auto_orient && (orientation < 0 || swaps(orientation));
    bool upright = j->suppress_auto_orient || orientation < 0 || !swaps(orientation);
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        int m = scales[i], d = SHRINK_DENOM / m + (SHRINK_DENOM % m != 0);
        struct dims red = {scaled(width, m), scaled(height, m)};
        long hw = width / d, hh = height / d;
        if (shrink_libjpeg_scale(width, height, hw, hh) != m) {
            continue;
        }
        if ((!upright ||
             tree_ok(j->functions, j->n_functions, (struct dims){width, height}, red)) &&
            (!turned || tree_ok(j->functions, j->n_functions, (struct dims){height, width},
                                (struct dims){red.h, red.w}))) {
            *out = (struct shrink_plan){hw, hh, red.w, red.h, m};
            return true;
        }
    }
    return false;
}
