/* Unit tests of the operations' check-only mode (worker/ops.h: `w` NULL) and of proc_check(),
 * which runs it for every function of a job before its source is fetched.
 *
 * Every operation of every table is checked with no params, empty params and a valid set: it
 * must neither crash (a MagickWand call on a NULL wand aborts) nor load an image, and say what
 * its run on an image says. Known-bad parameters must be refused with the run's very error, and
 * proc_check() must refuse them in a job's tree, its children and its pre_process jobs. Then
 * proc_run() and proc_pre_process() on canvas sources: the job's output limit, a function ending
 * past the deadline, a pre_process job's outputs and references, move_original of a canvas. Last,
 * the bounds every operation shares (worker/ops.c): a colour's length, op_check_size()'s limits.
 * Leaks (PixelWands, DrawingWands, JSON) show under AddressSanitizer's LeakSanitizer (build-asan)
 * and valgrind (scripts/test). */
#include <lcms2.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wand/MagickWand.h>

#include "buf.h"
#include "cfg.h"
#include "check.h"
#include "clock.h"
#include "err.h"
#include "image.h"
#include "job.h"
#include "magick_test.h"
#include "ops.h"
#include "process.h"
#include "source.h"

#define IMAGE_W 100
#define IMAGE_H 80

static long loads; /* images the loader gave */

/* op_load_fn: any src is a 20x10 grey image. */
static MagickWand *load_any(void *user, json_object *src, struct err *e)
{
    (void)user;
    (void)src;
    (void)e;
    loads++;
    return solid(20, 10, "#808080");
}

static long fetches; /* files the fetcher gave */

/* op_fetch_fn: any src is lcms's sRGB profile. */
static int fetch_any(void *user, json_object *src, struct buf *out, struct err *e)
{
    (void)user;
    (void)src;
    cmsHPROFILE srgb = cmsCreate_sRGBProfile();
    cmsUInt32Number n = 0;
    buf_reset(out);
    int rc = srgb != NULL && cmsSaveProfileToMem(srgb, NULL, &n) && buf_reserve(out, n) == 0 &&
                     cmsSaveProfileToMem(srgb, out->data, &n)
                 ? 0
                 : err_set(e, "no sRGB profile");
    out->len = rc == 0 ? n : 0;
    if (srgb != NULL) {
        cmsCloseProfile(srgb);
    }
    fetches++;
    return rc;
}

static const struct op_ctx ctx = {.max_pixels = 50000000L, .load = load_any, .fetch = fetch_any};

/* Runs `op` with `params` (JSON text, or NULL for no params) in check-only mode; the loader must
 * not be called. */
static int check_only(const struct op *op, const char *params, struct err *e)
{
    json_object *p = params != NULL ? json_tokener_parse(params) : NULL;
    CHECK(params == NULL || p != NULL);
    long before = loads, fetched = fetches;
    int rc = op->run(NULL, p, &ctx, e);
    if (loads != before || fetches != fetched) {
        fprintf(stderr, "  %s %s: the check loaded an image or fetched a file\n", op->name, params);
    }
    CHECK(loads == before && fetches == fetched);
    json_object_put(p);
    return rc;
}

/* Runs `op` with `params` on a IMAGE_W x IMAGE_H image, as a job would. */
static int run_on_image(const struct op *op, const char *params, struct err *e)
{
    json_object *p = params != NULL ? json_tokener_parse(params) : NULL;
    MagickWand *w = solid(IMAGE_W, IMAGE_H, "#336699");
    int rc = w != NULL ? op->run(w, p, &ctx, e) : -1;
    if (w != NULL) {
        DestroyMagickWand(w);
    }
    json_object_put(p);
    return rc;
}

/* The check and the run of `op` with `params` agree: both succeed, or both fail with the same
 * error (an operation whose required parameters are missing). */
static void check_agrees(const struct op *op, const char *params)
{
    struct err ce = {{0}}, re = {{0}};
    int crc = check_only(op, params, &ce);
    int rrc = run_on_image(op, params, &re);
    if (crc != rrc || (crc < 0 && strcmp(ce.msg, re.msg) != 0)) {
        fprintf(stderr, "  %s %s: check %d '%s', run %d '%s'\n", op->name,
                params != NULL ? params : "(none)", crc, ce.msg, rrc, re.msg);
    }
    CHECK_INT(crc, rrc);
    if (crc < 0) {
        CHECK_STR(ce.msg, re.msg);
        CHECK(strncmp(ce.msg, "Missing parameter", 17) == 0);
    }
}

/* A valid set of parameters for each operation, exercising what its check allocates (colours,
 * a stroke, a drop shadow) and what it must not do (load other images, look for fonts). */
static const struct {
    const char *name, *params;
} valid[] = {
    {"no_op", "{}"},
    {"resize_to_fit", "{\"width\": 50, \"only_shrink_larger\": true, \"autosharpen\": \"true\"}"},
    {"resize_to_fill", "{\"width\": 40, \"height\": \"30\", \"gravity\": \"North\"}"},
    {"resize", "{\"scale_factor\": 0.5}"},
    {"scale", "{\"width\": 30, \"height\": 20}"},
    {"thumbnail", "{\"width\": 30, \"height\": 20}"},
    {"resize_to_fit_with_wrap", "{\"width\": 30, \"height\": 30}"},
    {"crop", "{\"width\": 20, \"height\": 10, \"x\": 5, \"y\": 5, \"gravity\": \"SouthEast\"}"},
    {"crop_to_square", "{\"gravity\": \"East\"}"},
    {"pad", "{\"size\": 4, \"color\": \"#ff000080\", \"gravity\": \"North\"}"},
    {"pad_resize_to_fit", "{\"width\": 60, \"height\": 60, \"color\": \"transparent\"}"},
    {"rotate", "{\"amount\": 30}"},
    {"trim", "{\"fuzz\": 0.1}"},
    {"background_color", "{\"color\": \"red\"}"},
    {"blur", "{\"radius\": 2, \"sigma\": 1}"},
    {"sharpen", "{\"sigma\": 1}"},
    {"adaptive_blur", "{}"},
    {"adaptive_sharpen", "{}"},
    {"blue_shift", "{\"factor\": 2}"},
    {"threshold", "{\"threshold_value\": 0.3}"},
    {"convert_to_dpi", "{\"dpi\": 150}"},
    {"interlace", "{\"type\": \"PlaneInterlace\"}"},
    {"unsharp_mask", "{\"amount\": 2, \"threshold\": 0.1}"},
    {"median_filter", "{\"radius\": 1}"},
    {"despeckle", "{}"},
    {"enhance", "{}"},
    {"sepia_tone", "{\"threshold\": 0.5}"},
    {"gray_colorspace", "{}"},
    {"modulate", "{\"Brightness\": 1.2, \"saturation\": 0.5, \"hue\": 1.5}"},
    {"contrast", "{\"sharpen\": true}"},
    {"contrast_stretch_channel", "{\"black_point\": 10, \"white_point\": 7000}"},
    {"gamma_channel", "{\"gamma\": 1.5}"},
    {"level", "{\"channel\": \"RedChannel\", \"black_point\": 100, \"white_point\": 60000}"},
    {"levelize", "{\"channel\": \"Blue\", \"gamma\": 0.8}"},
    {"auto_level", "{}"},
    {"auto_gamma", "{}"},
    {"auto_enhance", "{}"},
    {"equalize", "{}"},
    {"normalize", "{}"},
    {"quantize", "{\"number_colors\": 8, \"color_space\": \"GRAYColorspace\", \"dither\": 1}"},
    {"vignette", "{\"color\": \"#102030\", \"x\": 5, \"y\": 5}"},
    {"sketch", "{\"sigma\": 1}"},
    {"photograph", "{\"angle\": 10}"},
    {"pixelate", "{\"amount\": 20, \"width\": 50}"},
    {"deskew", "{\"threshold\": 0.5}"},
    {"density", "{\"dpi\": \"300x200\"}"},
    {"resample", "{\"density\": 36}"},
    {"delete_profile", "{\"name\": \"exif,icc\"}"},
    {"stegano", "{\"watermark_url\": \"http://example.com/wm.png\", \"offset\": 3}"},
    {"add_profile", "{\"src\": \"http://example.com/sRGB.icc\"}"},
    {"annotate",
     "{\"text\": \"Hi\", \"color\": \"#ffff00\", \"stroke\": \"#000000\", \"dropshadow_color\": "
     "\"#000000\", \"dropshadow_offset\": 2, \"font_family\": \"Times-Bold\", \"width\": 50, "
     "\"height\": 20}"},
    {"watermark", "{\"text\": \"W\", \"point_size\": 20, \"opacity\": 0.5}"},
    {"caption",
     "{\"text\": \"a caption\", \"width\": \"50%\", \"height\": 30, \"stroke\": \"red\", "
     "\"text_gravity\": \"North\"}"},
    {"line", "{\"x\": 0, \"y\": 0, \"x1\": 50, \"y1\": 40, \"color\": \"red\", \"width\": 3}"},
    {"rectangle",
     "{\"x\": 5, \"y\": 5, \"x1\": 50, \"y1\": 40, \"cw\": 4, \"ch\": 4, \"fill_color\": "
     "\"#00ff0080\", \"stroke_width\": 2}"},
    {"ellipse",
     "{\"origin_x\": 50, \"origin_y\": 40, \"ellipse_width\": 20, \"ellipse_height\": 10, "
     "\"color\": \"blue\"}"},
    {"composite",
     "{\"src\": \"http://example.com/o.png\", \"composite_op\": \"Multiply\", \"as_mask\": "
     "false, \"scale_to_fit\": {\"width\": \"50%\"}, \"gravity\": \"Center\"}"},
    {"dissolve",
     "{\"src\": {\"name\": \"canvas\"}, \"src_percentage\": 0.5, \"scale_to_fill\": {\"width\": "
     "30, \"height\": \"20\"}}"},
    {"append", "{\"other_images\": \"http://example.com/a.png, http://example.com/b.png\"}"},
    {"tile", "{\"src\": \"http://example.com/t.png\", \"scale\": 0.5}"},
};

static const char *valid_params(const char *name)
{
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        if (strcmp(valid[i].name, name) == 0) {
            return valid[i].params;
        }
    }
    return NULL;
}

/* Every operation of every table: no params, {} and its valid set, checked without a crash, a
 * load or a leak, as its run on an image says. */
static void test_every_op(void)
{
    const struct op *const tables[] = {op_find("no_op"), ops_geometry, ops_color, ops_draw};
    size_t n = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        CHECK(tables[t] != NULL);
        for (const struct op *op = tables[t]; op != NULL && op->name != NULL; op++) {
            n++;
            check_agrees(op, NULL);
            check_agrees(op, "{}");
            const char *params = valid_params(op->name);
            if (params == NULL) {
                fprintf(stderr, "  %s: no valid params in this test\n", op->name);
            }
            CHECK(params != NULL);
            struct err e = {{0}};
            if (params != NULL && check_only(op, params, &e) != 0) {
                fprintf(stderr, "  %s %s: %s\n", op->name, params, e.msg);
                CHECK(false);
            }
            if (params != NULL && run_on_image(op, params, &e) != 0) {
                fprintf(stderr, "  %s %s (run): %s\n", op->name, params, e.msg);
                CHECK(false);
            }
            if (t == 0) {
                break; /* op_find() gives no_op, not its table */
            }
        }
    }
    CHECK_INT(n, sizeof valid / sizeof valid[0]);
}

/* Bad parameters, refused by the check with the error their run gives. */
static const struct {
    const char *name, *params, *error;
} bad[] = {
    {"crop", "{\"height\": 5}", "Missing parameter 'width' for function 'crop'"},
    {"resize", "{\"width\": -5, \"height\": 10}",
     "Invalid parameter 'width' for function 'resize': -5 is out of range [1, 65535]"},
    {"resize", "{\"scale_factor\": 0}",
     "Invalid parameter 'scale_factor' for function 'resize': must be more than 0"},
    {"resize_to_fit", "{\"only_shrink_larger\": true}",
     "Missing parameter 'width' or 'height' for function 'resize_to_fit'"},
    {"thumbnail", "{\"width\": 10}", "Missing parameter 'height' for function 'thumbnail'"},
    {"crop_to_square", "{\"x\": \"left\"}",
     "Invalid parameter 'x' for function 'crop_to_square': expected a whole number"},
    {"rotate", "{\"amount\": \"ninety\"}",
     "Invalid parameter 'amount' for function 'rotate': expected a number"},
    {"pad", "{\"size\": 5, \"color\": \"bogus\"}",
     "Invalid parameter 'color' for function 'pad': 'bogus' is not a colour"},
    {"trim", "{\"fuzz\": 2}",
     "Invalid parameter 'fuzz' for function 'trim': 2 is out of range [0, 1]"},
    {"blur", "{\"sigma\": \"abc\"}",
     "Invalid parameter 'sigma' for function 'blur': expected a number"},
    {"level", "{\"channel\": \"Purple\"}",
     "Invalid parameter 'channel' for function 'level': 'Purple' is not a channel"},
    {"quantize", "{\"number_colors\": 8, \"colorspace\": \"Nope\"}",
     "Invalid parameter 'colorspace' for function 'quantize': 'Nope' is not a colorspace"},
    {"contrast", "{\"sharpen\": \"maybe\"}",
     "Invalid parameter 'sharpen' for function 'contrast': expected true or false"},
    {"contrast_stretch_channel", "{\"white_point\": 5}",
     "Missing parameter 'black_point' for function 'contrast_stretch_channel'"},
    {"contrast_stretch_channel", "{\"black_point\": 5, \"white_point\": \"x\"}",
     "Invalid parameter 'white_point' for function 'contrast_stretch_channel': expected a number"},
    {"pixelate", "{\"amount\": 0}",
     "Invalid parameter 'amount' for function 'pixelate': 0 is out of range [1, 100]"},
    {"density", "{\"dpi\": \"abc\"}",
     "Invalid parameter 'dpi' for function 'density': expected a number or XxY in [1, 10000]"},
    {"density", "{\"dpi\": \"0x300\"}", /* X 0, not the hexadecimal 768 */
     "Invalid parameter 'dpi' for function 'density': expected a number or XxY in [1, 10000]"},
    {"density", "{\"dpi\": \"300x0x10\"}",
     "Invalid parameter 'dpi' for function 'density': expected a number or XxY in [1, 10000]"},
    {"delete_profile", "{\"name\": \"****\"}",
     "Invalid parameter 'name' for function 'delete_profile': at most 3 '*'"},
    {"stegano", "{\"offset\": \"x\", \"watermark_url\": \"u\"}",
     "Invalid parameter 'offset' for function 'stegano': expected a whole number"},
    {"stegano", "{\"offset\": 2}", "Missing parameter 'watermark_url' for function 'stegano'"},
    {"add_profile", "{\"src\": 5}",
     "Invalid parameter 'src' for function 'add_profile': expected a URL or an s3 object"},
    {"stegano", "{\"watermark_url\": 5}",
     "Invalid parameter 'watermark_url' for function 'stegano': expected a string"},
    {"annotate", "{\"text\": \"hi\", \"dropshadow_color\": \"notacolour\"}",
     "Invalid parameter 'dropshadow_color' for function 'annotate': 'notacolour' is not a colour"},
    {"annotate", "{\"text\": \"hi\", \"stroke\": \"#zzz\"}",
     "Invalid parameter 'stroke' for function 'annotate': '#zzz' is not a colour"},
    {"annotate", "{\"text\": \"hi\", \"width\": -1}",
     "Invalid parameter 'width' for function 'annotate': -1 is out of range [0, 65535]"},
    {"watermark", "{\"text\": \"x\", \"opacity\": 2}",
     "Invalid parameter 'opacity' for function 'watermark': 2 is out of range [0, 1]"},
    {"caption", "{\"text\": \"hi\", \"width\": \"0%\"}",
     "Invalid parameter 'width' for function 'caption': expected pixels or a percentage in (0%, "
     "1000%]"},
    {"caption", "{\"text\": \"hi\", \"point_size\": 2000}",
     "Invalid parameter 'point_size' for function 'caption': 2000 is out of range [1, 1000]"},
    {"line", "{\"x\": 0, \"y\": 0, \"x1\": 5, \"y1\": 5, \"color\": \"bogus\"}",
     "Invalid parameter 'color' for function 'line': 'bogus' is not a colour"},
    {"rectangle", "{\"x\": 0, \"y\": 0, \"x1\": 5, \"y1\": 5, \"cw\": \"wide\", \"ch\": 3}",
     "Invalid parameter 'cw' for function 'rectangle': expected a number"},
    {"rectangle", "{\"x\": 0, \"y\": 0, \"x1\": 5, \"y1\": 5, \"cw\": 3}",
     "Missing parameter 'ch' for function 'rectangle'"},
    {"rectangle", "{\"x\": 0, \"y\": 0, \"x1\": 5, \"y1\": 5, \"fill_color\": \"nope\"}",
     "Invalid parameter 'fill_color' for function 'rectangle': 'nope' is not a colour"},
    {"ellipse", "{\"origin_x\": 1, \"origin_y\": 1, \"ellipse_width\": 3}",
     "Missing parameter 'ellipse_height' for function 'ellipse'"},
    {"composite", "{\"src\": \"http://x/y.png\", \"composite_op\": \"Nope\"}",
     "Invalid parameter 'composite_op' for function 'composite': 'Nope' is not a composite "
     "operator"},
    {"composite", "{\"src\": 5}",
     "Invalid parameter 'src' for function 'composite': expected a URL, \"&identifier\" or an "
     "object"},
    {"composite", "{\"src\": \"u\", \"scale_to_fit\": {}}",
     "Missing parameter 'width' for function 'composite scale_to_fit'"},
    {"composite", "{\"src\": \"u\", \"as_mask\": \"yes\"}",
     "Invalid parameter 'as_mask' for function 'composite': expected true or false"},
    {"dissolve", "{\"src\": \"u\", \"scale_to_fill\": {\"width\": 10}}",
     "Missing parameter 'height' for function 'composite scale_to_fill'"},
    {"dissolve", "{\"src\": \"u\", \"scale_to_fit\": 3}",
     "Invalid parameter 'scale_to_fit' for function 'dissolve': expected an object {\"width\", "
     "\"height\"}"},
    {"append", "{\"other_images\": [\"a\", 5]}",
     "Invalid parameter 'other_images' for function 'append': expected a URL, \"&identifier\" or "
     "an object"},
    {"append", "{\"other_images\": 5}",
     "Invalid parameter 'other_images' for function 'append': expected a comma-separated string "
     "or an array"},
    {"tile", "{\"src\": \"u\", \"scale\": 0}",
     "Invalid parameter 'scale' for function 'tile': 0 is out of range [0.001, 100]"},
    {"tile", "{\"scale\": 2}", "Missing parameter 'src' for function 'tile'"},
};

static void test_bad_params(void)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct op *op = op_find(bad[i].name);
        CHECK(op != NULL);
        if (op == NULL) {
            continue;
        }
        struct err ce = {{0}}, re = {{0}};
        long before = loads;
        CHECK_INT(check_only(op, bad[i].params, &ce), -1);
        CHECK_STR(ce.msg, bad[i].error);
        CHECK_INT(run_on_image(op, bad[i].params, &re), -1);
        CHECK_STR(re.msg, bad[i].error);
        CHECK_INT(loads, before); /* the run too refuses them before loading anything */
    }
}

/* What only the image can tell is left to the run: ranges bound to its size. */
static void test_left_to_the_run(void)
{
    static const struct {
        const char *name, *params, *error;
    } cases[] = {
        {"stegano", "{\"offset\": 8000, \"watermark_url\": \"u\"}",
         "Invalid parameter 'offset' for function 'stegano': 8000 is out of range [0, 7999]"},
        {"contrast_stretch_channel", "{\"black_point\": -1}",
         "Invalid parameter 'black_point' for function 'contrast_stretch_channel': -1 is out of "
         "range [0, 8000]"},
        {"ellipse",
         "{\"origin_x\": 1, \"origin_y\": 1, \"ellipse_width\": 201, \"ellipse_height\": 3}",
         "Invalid parameter 'ellipse_width' for function 'ellipse': 201 is out of range [0, 200]"},
        {"crop", "{\"width\": 10, \"x\": 500}",
         "Invalid parameter 'x' for function 'crop': the 10x80 region at +500+0 lies outside the "
         "100x80 image"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct op *op = op_find(cases[i].name);
        struct err ce = {{0}}, re = {{0}};
        CHECK_INT(check_only(op, cases[i].params, &ce), 0);
        CHECK_INT(run_on_image(op, cases[i].params, &re), -1);
        CHECK_STR(re.msg, cases[i].error);
    }
}

static const struct job_limits limits = {250000, 32, 100, 0, 0};

/* The job `text` parsed, or NULL with why in `msg` (a failed check). */
static struct job *parsed(const char *text, char msg[ERR_MSG_MAX])
{
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &limits, &e);
    CHECK(j != NULL);
    if (j == NULL) {
        snprintf(msg, ERR_MSG_MAX, "(parse failed: %.400s)", e.msg);
    }
    return j;
}

/* proc_check() of the job `text`: its return, its error in `msg`. */
static int check_job(const char *text, char msg[ERR_MSG_MAX])
{
    struct err e = {{0}};
    struct job *j = parsed(text, msg);
    if (j == NULL) {
        return -2;
    }
    CHECK_STR(j->error, "");
    int rc = proc_check(j, &e);
    snprintf(msg, ERR_MSG_MAX, "%s", rc < 0 ? e.msg : "");
    job_destroy(j);
    return rc;
}

#define JOB_HEAD "{\"application_id\": \"a\", \"src\": \"http://example.com/s.jpg\", "

static void test_proc_check(void)
{
    char msg[ERR_MSG_MAX];
    long before = loads;
    /* a good job: its first function's valid parameters and all */
    CHECK_INT(check_job(JOB_HEAD "\"functions\": [{\"name\": \"resize_to_fit\", \"params\": "
                                 "{\"width\": 100}, \"save\": {\"image_identifier\": \"a\"}, "
                                 "\"functions\": [{\"name\": \"composite\", \"params\": {\"src\": "
                                 "\"http://example.com/o.png\"}}]}]}",
                        msg),
              0);
    /* the second function's bad parameter, after a save */
    CHECK_INT(check_job(JOB_HEAD "\"functions\": [{\"name\": \"resize_to_fit\", \"params\": "
                                 "{\"width\": 100}, \"save\": {\"image_identifier\": \"a\"}}, "
                                 "{\"name\": \"crop\", \"params\": {\"height\": 5}}]}",
                        msg),
              -1);
    CHECK_STR(msg, "Missing parameter 'width' for function 'crop'");
    /* a child's */
    CHECK_INT(check_job(JOB_HEAD "\"functions\": [{\"name\": \"no_op\", \"functions\": [{\"name\": "
                                 "\"blur\", \"params\": {\"sigma\": \"soft\"}}]}]}",
                        msg),
              -1);
    CHECK_STR(msg, "Invalid parameter 'sigma' for function 'blur': expected a number");
    /* a function without params that needs some */
    CHECK_INT(check_job(JOB_HEAD "\"functions\": [{\"name\": \"thumbnail\"}]}", msg), -1);
    CHECK_STR(msg, "Missing parameter 'width' for function 'thumbnail'");
    /* a pre_process job's, named as its run names it */
    CHECK_INT(check_job(JOB_HEAD
                        "\"pre_process\": {\"job\": {\"src\": \"http://example.com/p.jpg\", "
                        "\"functions\": [{\"name\": \"pad\", \"params\": {\"size\": -1}}]}}, "
                        "\"functions\": [{\"name\": \"no_op\"}]}",
                        msg),
              -1);
    CHECK_STR(msg, "pre_process job: Invalid parameter 'size' for function 'pad': -1 is out of "
                   "range [0, 65535]");
    /* an unknown function, in a pre_process job too, is named alone as before */
    CHECK_INT(check_job(JOB_HEAD
                        "\"pre_process\": {\"job\": {\"src\": \"http://example.com/p.jpg\", "
                        "\"functions\": [{\"name\": \"nope\"}]}}, "
                        "\"functions\": [{\"name\": \"no_op\"}]}",
                        msg),
              -1);
    CHECK_STR(msg, "Unknown function named 'nope'");
    CHECK_INT(check_job(JOB_HEAD "\"functions\": [{\"name\": \"crop\", \"params\": {}}, {\"name\": "
                                 "\"nope\"}]}",
                        msg),
              -1);
    CHECK_STR(msg, "Missing parameter 'width' for function 'crop'");
    /* Blitline's worker's preset filters are not pixq's (README): each is an unknown function,
     * refused before the source is fetched rather than run as something else */
    static const char *const presets[] = {"lomo",    "vintage",  "xpro",
                                          "celsius", "savannah", "stackhouse"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        char job[256], want[96];
        snprintf(job, sizeof job,
                 JOB_HEAD "\"functions\": [{\"name\": \"%s\", \"save\": "
                          "{\"image_identifier\": \"a\"}}]}",
                 presets[i]);
        snprintf(want, sizeof want, "Unknown function named '%s'", presets[i]);
        CHECK_INT(check_job(job, msg), -1);
        CHECK_STR(msg, want);
    }
    CHECK_INT(loads, before);
}

/* ---------------------------------------------------------------- proc_run() */

#define CANVAS_HEAD                                                                                \
    "{\"application_id\": \"a\", \"src\": {\"name\": \"canvas\", \"width\": 20, \"height\": 10}, "

struct run {
    int rc;
    char msg[ERR_MSG_MAX];
    size_t n_outputs;
    size_t lens[4];
    bool src_taken; /* proc_run() consumed the source's wand (src->wand NULL after it) */
};

/* proc_run() of the job `text` on its canvas src, with at most `max_job_output_bytes` of outputs;
 * `past` moves the canvas's deadline to a moment ago, as if its decoding had used all its time. */
static struct run run_job(const char *text, size_t max_job_output_bytes, bool past)
{
    struct run r = {.rc = -2};
    struct err e = {{0}};
    struct job *j = parsed(text, r.msg);
    if (j == NULL) {
        return r;
    }
    const struct src_loader l = {.max_pixels = 1000000};
    struct src_image im;
    if (src_open(&l, j->src, &im, &e) < 0) {
        snprintf(r.msg, ERR_MSG_MAX, "(src_open failed: %.400s)", e.msg);
        CHECK(false);
        job_destroy(j);
        return r;
    }
    if (past) {
        const Image *first = GetImageFromMagickWand(im.wand);
        MagickSetImageProgressMonitor(im.wand, first->progress_monitor,
                                      (void *)(intptr_t)(clock_mono_ms() - 1));
        CHECK(img_past_deadline(im.wand));
    }
    const struct proc_opts o = {.max_pixels = 1000000,
                                .default_quality = 85,
                                .max_output_bytes = SIZE_MAX,
                                .max_job_output_bytes = max_job_output_bytes};
    struct proc_result pr;
    r.rc = proc_run(j, &im, &o, &pr, &e);
    r.src_taken = im.wand == NULL;
    snprintf(r.msg, ERR_MSG_MAX, "%s", r.rc < 0 ? e.msg : "");
    r.n_outputs = pr.n_outputs;
    for (size_t i = 0; i < pr.n_outputs && i < sizeof r.lens / sizeof r.lens[0]; i++) {
        r.lens[i] = pr.outputs[i].img.len;
    }
    proc_result_finish(&pr);
    src_image_finish(&im);
    job_destroy(j);
    return r;
}

/* PIXQ_MAX_JOB_OUTPUT_BYTES is the most the outputs may be together: exactly that passes. */
static void test_job_output_limit(void)
{
    const char *text = CANVAS_HEAD
        "\"functions\": [{\"name\": \"no_op\", \"save\": {\"image_identifier\": \"a\", "
        "\"extension\": \".bmp\"}}, {\"name\": \"no_op\", \"save\": {\"image_identifier\": "
        "\"b\", \"extension\": \".bmp\"}}]}";
    struct run all = run_job(text, SIZE_MAX, false);
    CHECK_STR(all.msg, "");
    CHECK_INT(all.rc, 0);
    CHECK_INT(all.n_outputs, 2);
    size_t total = all.lens[0] + all.lens[1];
    CHECK(all.lens[0] > 600 && all.lens[1] == all.lens[0]); /* 20 x 10 x 3 and a header */
    CHECK(all.src_taken); /* the last function worked on the source itself, not on a copy */
    struct run exact = run_job(text, total, false);
    CHECK_STR(exact.msg, "");
    CHECK_INT(exact.rc, 0);
    CHECK_INT(exact.n_outputs, 2);
    struct run over = run_job(text, total - 1, false);
    CHECK_INT(over.rc, -1);
    CHECK_INT(over.n_outputs, 1);
    char want[ERR_MSG_MAX];
    snprintf(want, sizeof want,
             "the job's outputs would be more than %zu bytes together (%zu with 'b'), "
             "PIXQ_MAX_JOB_OUTPUT_BYTES",
             total - 1, total);
    CHECK_STR(over.msg, want);
}

/* A function that ends past the deadline without looking at the clock (no_op) stops the job
 * there: its save and its children do not run, and the error names it. */
static void test_past_deadline(void)
{
    struct run r = run_job(CANVAS_HEAD "\"functions\": [{\"name\": \"no_op\", \"save\": "
                                       "{\"image_identifier\": \"a\"}, \"functions\": [{\"name\": "
                                       "\"no_op\", \"save\": {\"image_identifier\": \"b\"}}]}]}",
                           SIZE_MAX, true);
    CHECK_INT(r.rc, -1);
    CHECK_INT(r.n_outputs, 0);
    if (strncmp(r.msg, "no_op: ", 7) != 0 || strstr(r.msg, "took longer than the limit") == NULL) {
        fprintf(stderr, "  past the deadline: '%s'\n", r.msg);
        CHECK(false);
    }
}

/* ---------------------------------------------------------------- pre_process */

/* A proc_sink that keeps what it was given. */
struct sunk {
    char outputs[64]; /* the identifiers sent on, space-separated */
    int moves;
    char formats[4][16]; /* of each move */
    size_t lens[4];
    char move_key[32], move_type[32], move_format[16];
    size_t move_width, move_height;
    const char *fail_move; /* the move fails with this error */
};

static int sink_output(void *user, const struct job *pre, const struct proc_output *o,
                       struct err *e)
{
    (void)pre;
    (void)e;
    struct sunk *s = user;
    size_t n = strlen(s->outputs);
    snprintf(s->outputs + n, sizeof s->outputs - n, "%s ", o->save->image_identifier);
    return 0;
}

static int sink_move(void *user, const struct job_save *dest, const void *data, size_t len,
                     const char *content_type, struct err *e)
{
    struct sunk *s = user;
    s->moves++;
    if (s->fail_move != NULL) {
        return err_set(e, "%s", s->fail_move);
    }
    snprintf(s->move_key, sizeof s->move_key, "%s", dest->key != NULL ? dest->key : "");
    snprintf(s->move_type, sizeof s->move_type, "%s", content_type != NULL ? content_type : "");
    MagickWand *w = NewMagickWand();
    if (len > 0 && MagickReadImageBlob(w, data, len) == MagickTrue) {
        char *f = MagickGetImageFormat(w);
        snprintf(s->move_format, sizeof s->move_format, "%s", f);
        MagickRelinquishMemory(f);
        s->move_width = MagickGetImageWidth(w);
        s->move_height = MagickGetImageHeight(w);
    }
    if (s->moves <= 4) {
        snprintf(s->formats[s->moves - 1], sizeof s->formats[0], "%s", s->move_format);
        s->lens[s->moves - 1] = len;
    }
    DestroyMagickWand(w);
    return 0;
}

static long src_fetches;
static size_t fetched_len; /* of the last fetch */

/* src_fetch_fn: any URL is a 20x10 PNG. */
static int fetch_png(void *user, json_object *src, struct buf *out, struct err *e)
{
    (void)user;
    (void)src;
    src_fetches++;
    MagickWand *w = solid(20, 10, "#0000ff");
    size_t len = 0;
    unsigned char *blob = NULL;
    if (w != NULL && MagickSetImageFormat(w, "PNG") == MagickTrue) {
        blob = MagickGetImageBlob(w, &len);
    }
    buf_reset(out);
    int rc = blob != NULL && buf_reserve(out, len) == 0 ? 0 : err_set(e, "no PNG");
    if (rc == 0) {
        memcpy(out->data, blob, len);
        out->len = len;
        fetched_len = len;
    }
    if (blob != NULL) {
        MagickRelinquishMemory(blob);
    }
    if (w != NULL) {
        DestroyMagickWand(w);
    }
    return rc;
}

/* proc_pre_process() of the job `text`, its sources loaded with at most `max_pixels`: what the
 * sink got in `s`, the error in `msg`; `ref` (if not NULL) is then opened as a src, its width
 * in *ref_width (0 if it could not be). */
static int pre_process(const char *text, long max_pixels, struct sunk *s, char msg[ERR_MSG_MAX],
                       const char *ref, size_t *ref_width)
{
    struct err e = {{0}};
    struct job *j = parsed(text, msg);
    if (j == NULL) {
        return -2;
    }
    CHECK_STR(j->error, "");
    struct src_refs *refs = src_refs_create();
    const struct src_loader l = {.fetch = fetch_png, .refs = refs, .max_pixels = max_pixels};
    const struct proc_opts o = {.max_pixels = max_pixels,
                                .default_quality = 85,
                                .max_output_bytes = SIZE_MAX,
                                .max_job_output_bytes = SIZE_MAX};
    const struct proc_sink sink = {.output = sink_output, .move = sink_move, .user = s};
    struct src_image main_src;
    int rc = proc_pre_process(j, &l, refs, &o, &sink, &main_src, &e);
    snprintf(msg, ERR_MSG_MAX, "%s", rc < 0 ? e.msg : "");
    src_image_finish(&main_src);
    if (ref != NULL) {
        json_object *src = json_object_new_string(ref);
        struct src_image im;
        *ref_width = 0;
        if (src_open(&l, src, &im, &e) == 0) {
            *ref_width = (size_t)im.width;
            src_image_finish(&im);
        }
        json_object_put(src);
    }
    src_refs_destroy(refs);
    job_destroy(j);
    return rc;
}

#define PRE_JOB                                                                                    \
    "{\"job\": {\"src\": {\"name\": \"canvas\", \"width\": 8, \"height\": 6}, \"functions\": "     \
    "[{\"name\": \"no_op\", \"save\": {\"image_identifier\": \"p\", \"extension\": \".png\", "     \
    "\"s3_destination\": {\"bucket\": \"b\", \"key\": \"pre/p.png\"}}}, {\"name\": \"no_op\", "    \
    "\"save\": {\"image_identifier\": \"q\"}}]}}"
#define MOVE_ORIGINAL(key)                                                                         \
    "{\"move_original\": {\"s3_destination\": {\"bucket\": \"b\", \"key\": \"" key "\"}}}"
/* A job whose src is PRE_JOB's output p ("&p"), moved by move_original to `key`. */
#define MOVE_OF_REF(key)                                                                           \
    "{\"application_id\": \"a\", \"src\": \"&p\", \"pre_process\": [" PRE_JOB                      \
    ", " MOVE_ORIGINAL(key) "], \"functions\": [{\"name\": \"no_op\"}]}"

/* A pre_process job: its outputs with a destination go to the sink, the ones the job refers to
 * are kept for "&identifier"; move_original of a canvas (no bytes to copy) encodes it, as PNG
 * when the key names no format. Their failures say where they come from. */
static void test_pre_process(void)
{
    char msg[ERR_MSG_MAX];
    size_t width = 0;
    struct sunk s = {0};
    CHECK_INT(pre_process(CANVAS_HEAD "\"pre_process\": [" PRE_JOB ", " MOVE_ORIGINAL(
                              "orig/c") "], "
                                        "\"functions\": [{\"name\": \"composite\", \"params\": "
                                        "{\"src\": \"&p\"}}]}",
                          1000000, &s, msg, "&p", &width),
              0);
    CHECK_STR(msg, "");
    CHECK_STR(s.outputs, "p ");
    CHECK_INT(width, 8); /* kept: the job refers to it */
    CHECK_INT(s.moves, 1);
    CHECK_STR(s.move_key, "orig/c");
    CHECK_STR(s.move_type, "image/png");
    CHECK_STR(s.move_format, "PNG");
    CHECK(s.move_width == 20 && s.move_height == 10);

    /* a reference the job does not make is not kept */
    struct sunk none = {0};
    CHECK_INT(pre_process(CANVAS_HEAD "\"pre_process\": " PRE_JOB ", \"functions\": [{\"name\": "
                                      "\"no_op\"}]}",
                          1000000, &none, msg, "&p", &width),
              0);
    CHECK_STR(none.outputs, "p ");
    CHECK_INT(width, 0);

    /* a fetched PNG, loaded once for two moves: copied as it came where the key names no format,
     * converted where it names another */
    struct sunk two = {0};
    long fetched = src_fetches;
    CHECK_INT(pre_process(JOB_HEAD "\"pre_process\": [" MOVE_ORIGINAL("orig/a") ", " MOVE_ORIGINAL(
                              "orig/b.jpg") "], \"functions\": [{\"name\": \"no_op\"}]}",
                          1000000, &two, msg, NULL, NULL),
              0);
    CHECK_STR(msg, "");
    CHECK_INT(src_fetches - fetched, 1);
    CHECK_INT(two.moves, 2);
    CHECK_STR(two.formats[0], "PNG");
    CHECK_INT(two.lens[0], fetched_len);
    CHECK_STR(two.formats[1], "JPEG");
    CHECK_STR(two.move_type, "image/jpeg");

    /* a job whose src is a pre_process job's output: its bytes, sniffed by no probe, are
     * converted to the format the key names */
    struct sunk ref = {0};
    CHECK_INT(pre_process(MOVE_OF_REF("orig/r.jpg"), 1000000, &ref, msg, NULL, NULL), 0);
    CHECK_STR(msg, "");
    CHECK_INT(ref.moves, 1);
    CHECK_STR(ref.move_format, "JPEG");
    CHECK_STR(ref.move_type, "image/jpeg");
    CHECK(ref.move_width == 8 && ref.move_height == 6);
    /* ... and copied as they are, with their content type, to a key that names no format (they
     * went as application/octet-stream) */
    struct sunk as_is = {0};
    CHECK_INT(pre_process(MOVE_OF_REF("orig/r"), 1000000, &as_is, msg, NULL, NULL), 0);
    CHECK_STR(msg, "");
    CHECK_INT(as_is.moves, 1);
    CHECK_STR(as_is.move_format, "PNG");
    CHECK_STR(as_is.move_type, "image/png");

    /* a pre_process job that fails, and a move_original */
    struct sunk small = {0};
    CHECK_INT(pre_process(CANVAS_HEAD "\"pre_process\": " PRE_JOB ", \"functions\": [{\"name\": "
                                      "\"no_op\"}]}",
                          40, &small, msg, NULL, NULL),
              -1);
    CHECK_STR(msg, "pre_process job: canvas of 8x6 is more than the limit of 40 pixels "
                   "(PIXQ_MAX_PIXELS)");
    struct sunk refused = {.fail_move = "refused"};
    CHECK_INT(pre_process(CANVAS_HEAD "\"pre_process\": " MOVE_ORIGINAL(
                              "orig/c.jpg") ", "
                                            "\"functions\": [{\"name\": \"no_op\"}]}",
                          1000000, &refused, msg, NULL, NULL),
              -1);
    CHECK_STR(msg, "move_original: refused");
}

/* op_check_size() at its bounds: PIXQ_MAX_PIXELS and OP_MAX_SIDE allow exactly their value, and
 * the error names the limit met; then ImageMagick's width and height limits, each on its own side
 * (mutants with >=, without the height's side, with the limits swapped or without them lived:
 * Debian's 16000 for both sides hid them). The limits are lowered for good (ImageMagick's API
 * cannot raise one): this test runs last. */
static void test_check_size(void)
{
    const struct op_ctx small = {.max_pixels = 1000};
    const struct op_ctx big = {.max_pixels = LONG_MAX};
    struct err e = {{0}};
    CHECK_INT(op_check_size(100, 10, &small, "f", &e), 0);
    CHECK_INT(op_check_size(1001, 1, &small, "f", &e), -1);
    CHECK_STR(e.msg, "Function 'f' would make a 1001x1 image, over the limit of 1000 pixels "
                     "(PIXQ_MAX_PIXELS) and 65535 per side");
    const double sides[][2] = {{65535, 1}, {1, 65535}, {65536, 1}, {1, 65536}};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        e.msg[0] = '\0';
        int rc = op_check_size(sides[i][0], sides[i][1], &big, "f", &e);
        bool over = sides[i][0] + sides[i][1] > 65536; /* past OP_MAX_SIDE */
        /* 65535 is pixq's largest side, ImageMagick's policy may refuse it (Debian: 16000) */
        bool ok = over ? rc == -1 && strstr(e.msg, "65535 per side") != NULL
                       : rc == 0 || strstr(e.msg, "beyond ImageMagick's largest side") != NULL;
        if (!ok) {
            fprintf(stderr, "  %.0fx%.0f: %d '%s'\n", sides[i][0], sides[i][1], rc, e.msg);
            CHECK(false);
        }
    }
    CHECK(SetMagickResourceLimit(WidthResource, 1000) == MagickTrue);
    CHECK(SetMagickResourceLimit(HeightResource, 2000) == MagickTrue);
    CHECK_INT(op_check_size(1000, 1, &big, "f", &e), 0);
    CHECK_INT(op_check_size(1, 2000, &big, "f", &e), 0);
    CHECK_INT(op_check_size(1, 1500, &big, "f", &e), 0);
    CHECK_INT(op_check_size(1500, 1, &big, "f", &e), -1);
    CHECK_STR(e.msg, "Function 'f' would make a 1500x1 image, beyond ImageMagick's largest side "
                     "(1000x2000)");
    CHECK_INT(op_check_size(1, 2001, &big, "f", &e), -1);
    CHECK_STR(e.msg, "Function 'f' would make a 1x2001 image, beyond ImageMagick's largest side "
                     "(1000x2000)");
}

/* Whether pixel (x, y) of `w` is red. */
static bool red_at(MagickWand *w, long x, long y)
{
    PixelWand *c = NewPixelWand();
    bool red = MagickGetImagePixelColor(w, x, y, c) == MagickTrue && PixelGetRed(c) > 0.9 &&
               PixelGetGreen(c) < 0.1;
    DestroyPixelWand(c);
    return red;
}

/* op_region() and op_rows() count from the image's first pixel, whatever its virtual canvas (a
 * GIF frame's, a crop's), give a wand without one, and leave the image's as it was. Mutants that
 * lived: the region cut within the canvas, keeping its offset, the image's canvas not put back. */
static void test_region(void)
{
    MagickWand *w = solid(IMAGE_W, IMAGE_H, "#ffffff");
    MagickWand *mark = solid(10, 10, "#ff0000");
    if (w == NULL || mark == NULL) {
        return;
    }
    CHECK(MagickCompositeImage(w, mark, OverCompositeOp, 45, 35) == MagickTrue);
    CHECK(MagickSetImagePage(w, 200, 150, 30, 20) == MagickTrue);
    MagickWand *parts[] = {op_region(w, 10, 10, 45, 35), op_rows(w, 35, 10)};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        CHECK(parts[i] != NULL);
        if (parts[i] == NULL) {
            continue;
        }
        size_t pw = 1, ph = 1;
        ssize_t px = 1, py = 1;
        CHECK(MagickGetImagePage(parts[i], &pw, &ph, &px, &py) == MagickTrue);
        CHECK(pw == 0 && ph == 0 && px == 0 && py == 0);
        CHECK_INT(MagickGetImageWidth(parts[i]), i == 0 ? 10 : IMAGE_W);
        CHECK_INT(MagickGetImageHeight(parts[i]), 10);
        CHECK(red_at(parts[i], i == 0 ? 0 : 45, 0) && red_at(parts[i], i == 0 ? 9 : 54, 9));
        DestroyMagickWand(parts[i]);
    }
    size_t pw = 0, ph = 0;
    ssize_t px = 0, py = 0;
    CHECK(MagickGetImagePage(w, &pw, &ph, &px, &py) == MagickTrue);
    CHECK(pw == 200 && ph == 150 && px == 30 && py == 20);
    DestroyMagickWand(mark);
    DestroyMagickWand(w);
}

/* A gravity by its name or without "Gravity", in any case; a name that is no gravity, a part of
 * one or none is the centre (README). Mutants that lived: case mattered in the whole names, a
 * short name's prefix matched ("North" was NorthWest), the last name (SouthEast) was not looked
 * at, an unknown name was NorthWest. */
static void test_gravity(void)
{
    /* want: op_gravity()'s; want_or: op_gravity_or()'s with NorthWest for an absent one (the
     * caller's own placement), a given one read as op_gravity() reads it */
    static const struct {
        const char *params;
        GravityType want, want_or;
    } cases[] = {
        {"{\"gravity\": \"NorthWestGravity\"}", NorthWestGravity, NorthWestGravity},
        {"{\"gravity\": \"northwestgravity\"}", NorthWestGravity, NorthWestGravity},
        {"{\"gravity\": \"SOUTHGRAVITY\"}", SouthGravity, SouthGravity},
        {"{\"gravity\": \"NorthWest\"}", NorthWestGravity, NorthWestGravity},
        {"{\"gravity\": \"north\"}", NorthGravity, NorthGravity},
        {"{\"gravity\": \"North\"}", NorthGravity, NorthGravity},
        {"{\"gravity\": \"South\"}", SouthGravity, SouthGravity},
        {"{\"gravity\": \"SouthEast\"}", SouthEastGravity, SouthEastGravity},
        {"{\"gravity\": \"SouthEastGravity\"}", SouthEastGravity, SouthEastGravity},
        {"{\"gravity\": \"East\"}", EastGravity, EastGravity},
        {"{\"gravity\": \"Nowhere\"}", CenterGravity, CenterGravity},
        {"{\"gravity\": \"NorthWestGrav\"}", CenterGravity, CenterGravity},
        {"{\"gravity\": \"Gravity\"}", CenterGravity, CenterGravity},
        {"{\"gravity\": \"\"}", CenterGravity, CenterGravity},
        {"{\"gravity\": 5}", CenterGravity, CenterGravity},
        {"{\"gravity\": null}", CenterGravity, NorthWestGravity},
        {"{}", CenterGravity, NorthWestGravity},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *p = json_tokener_parse(cases[i].params);
        GravityType g = UndefinedGravity, g_or = UndefinedGravity;
        struct err e = {{0}};
        CHECK_INT(op_gravity(p, "f", "gravity", &g, &e), 0);
        CHECK_INT(op_gravity_or(p, "f", "gravity", NorthWestGravity, &g_or, &e), 0);
        if (g != cases[i].want || g_or != cases[i].want_or) {
            fprintf(stderr, "  %s: gravity %d and %d, want %d and %d\n", cases[i].params, (int)g,
                    (int)g_or, (int)cases[i].want, (int)cases[i].want_or);
            CHECK(false);
        }
        json_object_put(p);
    }
    json_object *p = json_tokener_parse("{\"gravity\": [\"North\"]}");
    GravityType g = UndefinedGravity;
    struct err e = {{0}};
    CHECK_INT(op_gravity(p, "f", "gravity", &g, &e), -1);
    CHECK_STR(e.msg, "Invalid parameter 'gravity' for function 'f': expected a string");
    json_object_put(p);
}

/* A colour is at most 64 bytes: ImageMagick reads longer ones ("rgb(255," and 53 blanks and
 * "0,0)" is red), and the error quotes no more than that (without the bound, a mutant that
 * lived, a 65-byte colour was taken). */
static void test_colour_length(void)
{
    for (int len = 64; len <= 65; len++) {
        char colour[80], params[160], want[ERR_MSG_MAX];
        snprintf(colour, sizeof colour, "rgb(255,%*s0,0)", len - 12, "");
        CHECK_INT(strlen(colour), len);
        snprintf(params, sizeof params, "{\"size\": 1, \"color\": \"%s\"}", colour);
        snprintf(want, sizeof want,
                 "Invalid parameter 'color' for function 'pad': '%.64s' is not a colour", colour);
        struct err ce = {{0}}, re = {{0}};
        CHECK_INT(check_only(op_find("pad"), params, &ce), len == 64 ? 0 : -1);
        CHECK_INT(run_on_image(op_find("pad"), params, &re), len == 64 ? 0 : -1);
        CHECK_STR(ce.msg, len == 64 ? "" : want);
        CHECK_STR(re.msg, len == 64 ? "" : want);
    }
}

/* Validation's formats (job_format_writable(), in common/) are the encoder's (img_format_for()). */
static void test_output_formats(void)
{
    static const char *const exts[] = {"jpg",  "jpeg", "png", "webp", "gif",  "bmp",  "tif",
                                       "tiff", "pdf",  "bpg", "avif", "heic", "heif", "jp2",
                                       "jxl",  "svg",  "ico", "psd",  "eps",  "tga",  "JPG",
                                       "",     "jpe",  "ppm", "txt"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        const char *magick, *mime;
        if (job_format_writable(exts[i]) != img_format_for(exts[i], &magick, &mime)) {
            fprintf(stderr, "  format '%s': validation and the encoder disagree\n", exts[i]);
            CHECK(false);
        }
    }
    size_t n = 0;
    for (const char *ext; (ext = img_format_ext(n)) != NULL; n++) { /* one added to image.c */
        if (!job_format_writable(ext)) {
            fprintf(stderr, "  format '%s': the encoder writes it, validation refuses it\n", ext);
            CHECK(false);
        }
    }
    CHECK_INT(n, 8); /* a format added to image.c: this, and job_format_writable(), learn it */
}

/* ImageMagick's messages reach the user without its source places (img_magick_words()). */
static void test_magick_words(void)
{
    static const char *const cases[][2] = {
        {"too many scans `' @ error/jpeg.c/JPEGProgressHandler/361", "too many scans"},
        {"improper image header `x.png' @ error/png.c/ReadPNGImage/3941",
         "improper image header `x.png'"},
        {"width or height exceeds limit `' @ error/cache.c/OpenPixelCache/3909",
         "width or height exceeds limit"},
        {"an @ b", "an @ b"},                                             /* not a place: kept */
        {"mail me @ home/now/x/7 today", "mail me @ home/now/x/7 today"}, /* not at the end */
        {"a @ b @ warning/x.c/F/12", "a @ b"},                            /* the last one */
        {"", ""},
        {"nothing to strip", "nothing to strip"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[ERR_MSG_MAX];
        CHECK_STR(img_magick_words(cases[i][0], out, sizeof out), cases[i][1]);
    }
    char small[8]; /* cut to the buffer */
    CHECK_STR(img_magick_words("too many scans `' @ error/jpeg.c/J/1", small, sizeof small),
              "too man");
}

int main(void)
{
    if (test_img_start("opcheck") < 0) {
        return 1;
    }
    test_every_op();
    test_bad_params();
    test_left_to_the_run();
    test_proc_check();
    test_job_output_limit();
    test_past_deadline();
    test_pre_process();
    test_output_formats();
    test_magick_words();
    test_region();
    test_gravity();
    test_colour_length();
    test_check_size(); /* last: it lowers ImageMagick's limits */
    int rc = check_summary("opcheck");
    img_shutdown();
    return rc;
}
