/* ops: the image operations of Blitline's function catalogue, one table row each.
 *
 * An operation changes the wand in place, reading its parameters with job_param_*() so that
 * numbers and booleans may also come as strings. Adding an operation is one function and one row
 * in ops.c. */
#ifndef PIXQ_OPS_H
#define PIXQ_OPS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <wand/MagickWand.h>

#include "buf.h"
#include "err.h"

#define OP_MAX_SIDE 65535L /* largest width or height a parameter may ask for, pixels */
/* largest bound of resize_to_fit: a bound that does not bind costs nothing (Blitline's jobs pass
 * "height": 100000 to fit a width only), one that binds makes a side check_size() refuses */
#define OP_MAX_BOUND 1000000000L

/* Loads another image a function names (composite, tile, append...): `src` is a URL string,
 * "&identifier", or an object {"name": "s3"|"canvas", ...}. Returns a new wand (the caller
 * destroys it) or NULL with the reason in `e`. */
typedef MagickWand *(*op_load_fn)(void *user, json_object *src, struct err *e);

/* Fetches the bytes of a file a function names that is no image (add_profile's ICC profile):
 * `src` is a URL string or {"name": "s3", ...}; `out` is emptied first. Returns 0, or -1 with
 * the reason in `e`. */
typedef int (*op_fetch_fn)(void *user, json_object *src, struct buf *out, struct err *e);

/* What every operation may need besides its parameters. */
struct op_ctx {
    long max_pixels;        /* largest image an operation may produce */
    long max_profile_bytes; /* largest ICC profile add_profile applies; 0: the default */
    op_load_fn load;        /* NULL: the operation cannot load other images */
    op_fetch_fn fetch;      /* NULL: the operation cannot fetch other files */
    void *load_user;        /* passed to both */
};

/* Runs an operation on `w`: 0, or -1 with the reason in `e`.
 *
 * Check-only mode: with `w` NULL, the operation reads and validates its parameters as it does
 * before touching the image (the same errors, word for word) and returns 0 or -1 without doing
 * anything else: it calls no MagickWand function on an image, does not call ctx->load (other
 * images are not loaded; only their parameters are checked) and keeps nothing it allocates.
 * What only the image can tell is left to the run: a range bound to the image's size (stegano's
 * offset, contrast_stretch_channel's points, the radii of rectangle and ellipse: their value is
 * only checked to be a number), and the limits of the result's size (op_check_size()) and time.
 * proc_check() runs every function of a job so before its source is fetched. An operation may
 * then meet in the run an error the check did not (one that depends on the image, or on an
 * other image it loads): the check stops a job at its first bad parameter, before anything that
 * only the run can find in an earlier parameter or function. */
typedef int (*op_fn)(MagickWand *w, json_object *params, const struct op_ctx *ctx, struct err *e);

struct op {
    const char *name;
    op_fn run;
    /* ImageMagick's operation reads a CMYK image's cyan, magenta and yellow as red, green and
     * blue (modulate's brightness darkened it, sepia_tone turned it blue, threshold,
     * gamma_channel, level and levelize inverted, auto_enhance made a white page black, deskew
     * found no turn): run_fn() makes a CMYK image sRGB for it, and CMYK again after. */
    bool in_rgb;
};

/* The operation tables, one per file, each ending with {NULL, NULL}. */
extern const struct op ops_geometry[];
extern const struct op ops_color[];
extern const struct op ops_draw[];

/* The i-th operation of all the tables, in table order (no_op first), or NULL past the last. */
const struct op *op_at(size_t i);

/* The operation called `name`, or NULL. */
const struct op *op_find(const char *name);

/* Reads a gravity parameter ("NorthWestGravity"... or "NorthWest"); absent or unknown names
 * are CenterGravity, as in Blitline. Returns 0, or -1 if the value is not a string. */
int op_gravity(json_object *params, const char *fn, const char *name, GravityType *out,
               struct err *e);

/* As op_gravity(), for a function where an absent gravity means a placement of its own (x, y
 * from the top-left corner): `absent` then, and no default in pixq-worker --functions ("none"
 * in docs/FUNCTIONS.md, not a Center the function never uses). */
int op_gravity_or(json_object *params, const char *fn, const char *name, GravityType absent,
                  GravityType *out, struct err *e);

/* Reads a colour parameter ("#rrggbb", "#rrggbbaa", "transparent", ImageMagick names) with
 * default `def`. Returns a PixelWand to destroy with DestroyPixelWand(), or NULL with an error
 * naming the function and the parameter. */
PixelWand *op_color(json_object *params, const char *fn, const char *name, const char *def,
                    struct err *e);

/* op_color() for an operation on `w` (NULL: its parameters are only checked). Returns 1 with the
 * colour in *out (to destroy), 0 when `w` is NULL and the colour is good (nothing to destroy),
 * or -1 with the error in `e`. */
int op_color_for(const MagickWand *w, json_object *params, const char *fn, const char *name,
                 const char *def, PixelWand **out, struct err *e);

/* Refuses a result of w x h pixels that function `fn` would make beyond ctx->max_pixels,
 * OP_MAX_SIDE per side, or ImageMagick's width and height resource limits (policy.xml: 16000 on
 * Debian), which ImageMagick itself reports only as "pixel cache: width or height exceeds
 * limit". Returns 0, or -1 with "Function 'fn' would make a WxH image, ..." in `e`. */
int op_check_size(double w, double h, const struct op_ctx *ctx, const char *fn, struct err *e);

/* A new wand of the width x height pixels of `w` at x, y (counted from its first pixel, whatever
 * its virtual canvas), with no canvas offset; NULL with the reason left on `w`. */
MagickWand *op_region(MagickWand *w, long width, long height, long x, long y);

/* A new wand of the `n` rows of `w` from row y0 (counted from its first pixel, whatever its
 * virtual canvas), with no canvas offset; NULL with the reason left on `w`. */
MagickWand *op_rows(MagickWand *w, long y0, long n);

/* ImageMagick's distortions (rotate, deskew's turn, photograph's) look at the deadline row by row
 * but do not stop there, and its measures of a whole image (auto_gamma, auto_level) do not look
 * at it: such an operation goes through op_within_time(), whose cost is about proportional to
 * the pixels it makes. */
typedef MagickBooleanType (*op_run_fn)(MagickWand *w, const void *arg);
#define OP_SLOW_NS_PER_PIXEL 1000.0 /* an output pixel costs less than this: no need to measure */
#define OP_SAMPLE_SIDE       6.0    /* the sample measured is 1/6 of each side, 1/36 of the image */

/* Runs `run` on `w`, which makes an image of about `out_pixels`, if it can end before the
 * deadline (PIXQ_MAGICK_TIME_S): when the time left might not be enough, `run` first goes over
 * a sample of the image, and the whole is refused ("fn: would take longer than the limit of N
 * s ...") if it would take longer than the time left at the sample's pace. Returns 0, or -1 with
 * the reason in `e` (also when `run` ends past the deadline). */
int op_within_time(MagickWand *w, const char *fn, double out_pixels, op_run_fn run, const void *arg,
                   struct err *e);

/* The check of op_within_time() alone: 0 if `run` over all of `w` can end in time (the caller
 * then runs it), or -1 with "fn: would take longer than the limit ..." in `e`. */
int op_fits_in_time(MagickWand *w, const char *fn, double out_pixels, op_run_fn run,
                    const void *arg, struct err *e);

/* Sizes from Blitline's resize_to_fit rule for a w x h image into at most W x H (0 = free):
 * scale = min of the given W/w and H/h, each side rounded half up, at least 1. Exposed for
 * tests. */
void op_fit_size(long w, long h, long W, long H, long *out_w, long *out_h);

#endif
