#include "ops.h"

#include <string.h>
#include <strings.h>

#include "image.h"
#include "job.h"

/* no_op: the output is the input (convert, copy or metadata only). */
static int op_no_op(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    return 0;
}

static const struct op ops_core[] = {
    {"no_op", op_no_op},
    {NULL, NULL},
};

/* Every table of operations; each ends with a NULL name. */
static const struct op *const tables[] = {ops_core, ops_geometry, ops_color, ops_draw};

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
                       "and %ld per side",
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

int op_gravity(json_object *params, const char *fn, const char *name, GravityType *out,
               struct err *e)
{
    const char *s;
    if (job_param_string(params, fn, name, "CenterGravity", &s, e) < 0) {
        return -1;
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

PixelWand *op_color(json_object *params, const char *fn, const char *name, const char *def,
                    struct err *e)
{
    const char *s;
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
