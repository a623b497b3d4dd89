/* ops: the image operations of Blitline's function catalogue, one table row each.
 *
 * An operation changes the wand in place, reading its parameters with job_param_*() so that
 * numbers and booleans may also come as strings. Adding an operation is one function and one row
 * in ops.c. */
#ifndef PIXQ_OPS_H
#define PIXQ_OPS_H

#include <json-c/json.h>
#include <wand/MagickWand.h>

#include "err.h"

/* What every operation may need besides its parameters. */
struct op_ctx {
    long max_pixels; /* largest image an operation may produce */
};

typedef int (*op_fn)(MagickWand *w, json_object *params, const struct op_ctx *ctx, struct err *e);

struct op {
    const char *name;
    op_fn run;
};

/* The operation called `name`, or NULL. */
const struct op *op_find(const char *name);

/* Sizes from Blitline's resize_to_fit rule for a w x h image into at most W x H (0 = free):
 * scale = min of the given W/w and H/h, each side rounded half up, at least 1. Exposed for
 * tests. */
void op_fit_size(long w, long h, long W, long H, long *out_w, long *out_h);

#endif
