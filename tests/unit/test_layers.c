/* Unit tests of the deadline of the images an operation makes for an image (worker/image.c's
 * img_layer(), worker/ops_draw.c's layers and bands): they carry the deadline of the image they
 * are made for, as its clones do, not PIXQ_MAGICK_TIME_S of their own.
 *
 * The image-level test shortens a canvas's deadline and looks at its layer's time left. The
 * operation-level tests put a monitor of their own on the image (ImageMagick's progress monitor,
 * which is where the deadline lives) and check that the work done on a layer or a band (the drop
 * shadow's blur, the copies of the tile into its band) reported to it: a layer with a deadline of
 * its own reports to pixq's monitor instead.
 *
 * Then op_fits_in_time() and op_within_time() (worker/ops.c) with a run of the test's own, which
 * records the wand it is given and sleeps, fails, grows it or ends past the deadline: which
 * sample is measured, and what its pace says. Nothing here depends on the machine's speed, but
 * for one bound: cutting and growing a 67x50 sample take less than 200 ms. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wand/MagickWand.h>

#include "cfg.h"
#include "check.h"
#include "clock.h"
#include "err.h"
#include "image.h"
#include "magick_test.h"
#include "ops.h"

#define IMAGE_W 400
#define IMAGE_H 300
#define TILE_W  30
#define TILE_H  20

/* What the test's monitor saw. */
struct watch {
    long calls;
    long blur;       /* calls of a blur ("Blur/Image"...) */
    long tile_rows;  /* composite calls over TILE_H rows: the band's */
    long image_rows; /* composite calls over IMAGE_H rows: the image's */
};

static MagickBooleanType watch_monitor(const char *text, const MagickOffsetType offset,
                                       const MagickSizeType span, void *data)
{
    struct watch *s = data;
    (void)offset;
    s->calls++;
    if (strncmp(text, "Blur", 4) == 0 || strncmp(text, "Morphology", 10) == 0 ||
        strncmp(text, "Convolve", 8) == 0) {
        s->blur++;
    }
    if (strncmp(text, "Composite", 9) == 0 && span == TILE_H) {
        s->tile_rows++;
    }
    if (strncmp(text, "Composite", 9) == 0 && span == IMAGE_H) {
        s->image_rows++;
    }
    return MagickTrue;
}

/* op_load_fn: the tile, a source of its own (30x20, red). */
static MagickWand *load_tile(void *user, json_object *src, struct err *e)
{
    (void)user;
    (void)src;
    (void)e;
    return solid(TILE_W, TILE_H, "#ff0000");
}

/* Runs function `name` with `params` (JSON) on a white IMAGE_W x IMAGE_H image watched by `s`. */
static int run_watched(const char *name, const char *params, struct watch *s, struct err *e)
{
    MagickWand *w = solid(IMAGE_W, IMAGE_H, "#ffffff");
    if (w == NULL) {
        return -1;
    }
    MagickSetImageProgressMonitor(w, watch_monitor, s);
    json_object *p = json_tokener_parse(params);
    const struct op *op = op_find(name);
    struct op_ctx ctx = {.max_pixels = 50000000L, .load = load_tile};
    CHECK(p != NULL && op != NULL);
    int rc = p != NULL && op != NULL ? op->run(w, p, &ctx, e) : -1;
    json_object_put(p);
    DestroyMagickWand(w);
    return rc;
}

/* annotate's drop shadow is blurred on a layer: that blur is the image's work. */
static void test_drop_shadow_layer(void)
{
    struct watch s = {0};
    struct err e = {{0}};
    CHECK_INT(run_watched("annotate",
                          "{\"text\": \"Shadow\", \"color\": \"#ffffff\", "
                          "\"dropshadow_color\": \"#000000\", \"dropshadow_offset\": 4}",
                          &s, &e),
              0);
    CHECK(s.blur > 0);
}

/* tile copies its tile into a band of the image's width, then puts the band down the image: the
 * copies are the image's work too. */
static void test_tile_band(void)
{
    struct watch s = {0};
    struct err e = {{0}};
    CHECK_INT(run_watched("tile", "{\"src\": \"tile\"}", &s, &e), 0);
    CHECK(s.image_rows > 0);                               /* the band put on the image */
    CHECK(s.tile_rows >= (IMAGE_W / TILE_W + 1) * TILE_H); /* a tile into the band, row by row */
}

/* A layer made for an image has no more time than the image, however much that has left; a
 * canvas (a source of its own) has the whole limit. */
static void test_layer_time_left(void)
{
    MagickWand *w = solid(IMAGE_W, IMAGE_H, "#ffffff");
    if (w == NULL) {
        return;
    }
    long limit_ms = img_time_limit_s() * 1000;
    CHECK(img_time_left_ms(w) > limit_ms / 2);
    /* as if most of the limit had passed: 60 s of an hour left (the deadline is the monotonic
     * ms in the monitor's data, see worker/image.c) */
    const Image *im = GetImageFromMagickWand(w);
    MagickSetImageProgressMonitor(w, im->progress_monitor,
                                  (void *)(intptr_t)(clock_mono_ms() + 60000));
    long image_left = img_time_left_ms(w);
    CHECK(image_left > 0 && image_left <= 60000);

    PixelWand *none = NewPixelWand();
    PixelSetColor(none, "none");
    struct err e = {{0}};
    MagickWand *layer = img_layer(w, 50, 40, none, &e);
    CHECK(layer != NULL);
    if (layer != NULL) {
        long left = img_time_left_ms(layer);
        CHECK(left >= 0 && left <= image_left);
        CHECK(img_past_deadline(layer) == false);
        DestroyMagickWand(layer);
    }
    MagickWand *canvas = img_solid(50, 40, none, &e);
    CHECK(canvas != NULL && img_time_left_ms(canvas) > limit_ms / 2);
    if (canvas != NULL) {
        DestroyMagickWand(canvas);
    }

    /* an image past its deadline: so is its layer */
    MagickSetImageProgressMonitor(w, im->progress_monitor, (void *)(intptr_t)(clock_mono_ms() - 1));
    layer = img_layer(w, 50, 40, none, &e);
    CHECK(layer != NULL && img_past_deadline(layer) && img_time_left_ms(layer) == 0);
    if (layer != NULL) {
        DestroyMagickWand(layer);
    }
    /* an image without a deadline: a layer without one */
    MagickSetImageProgressMonitor(w, NULL, NULL);
    layer = img_layer(w, 50, 40, none, &e);
    CHECK(layer != NULL && img_time_left_ms(layer) == -1);
    if (layer != NULL) {
        DestroyMagickWand(layer);
    }
    DestroyPixelWand(none);
    DestroyMagickWand(w);
}

/* `w` (may be NULL), its deadline moved to `ms` from now (it is the monotonic ms in the
 * monitor's data, see worker/image.c). */
static MagickWand *with_time_left(MagickWand *w, long ms)
{
    if (w != NULL) {
        const Image *im = GetImageFromMagickWand(w);
        MagickSetImageProgressMonitor(w, im->progress_monitor,
                                      (void *)(intptr_t)(clock_mono_ms() + ms));
    }
    return w;
}

/* `w` (may be NULL), its deadline moved to a millisecond ago. */
static MagickWand *expired(MagickWand *w)
{
    return with_time_left(w, -1);
}

/* caption's layout (fitting a long text to a large box) measures the text many times without
 * ImageMagick looking at the clock: on an image past its deadline it stops at once, not after
 * the layout (about a second here for this text and box) and its refusal. */
static void test_caption_layout_stops(void)
{
    MagickWand *w = expired(solid(IMAGE_W, IMAGE_H, "#ffffff"));
    if (w == NULL) {
        return;
    }
    char params[2048], *o = params;
    o += sprintf(o, "{\"width\": 7000, \"height\": 7000, \"text\": \"");
    for (int i = 0; i < 150 && o - params < 1000; i++) {
        o += sprintf(o, "word%d ", i);
    }
    sprintf(o, "end\"}");
    json_object *p = json_tokener_parse(params);
    struct op_ctx ctx = {.max_pixels = 50000000L};
    struct err e = {{0}};
    long t0 = clock_mono_ms();
    CHECK(p != NULL && op_find("caption")->run(w, p, &ctx, &e) == -1);
    long took = clock_mono_ms() - t0;
    CHECK(strstr(e.msg, "took longer than the limit") != NULL);
    if (took >= 250) {
        fprintf(stderr, "caption on an image past its deadline took %ld ms\n", took);
    }
    CHECK(took < 250); /* the layout alone takes about a second */
    json_object_put(p);
    DestroyMagickWand(w);
}

/* An encoding that fails (here: the image's time ran out as it was written) names the output and
 * its format; one with time left is made. */
static void test_encode_names_its_output(void)
{
    MagickWand *w = solid(IMAGE_W, IMAGE_H, "#336699");
    if (w == NULL) {
        return;
    }
    struct job_save save = {.image_identifier = "thumb", .format = "jpg"};
    struct img_output out;
    struct err e = {{0}};
    CHECK_INT(img_encode(w, &save, 75, 1 << 30, &out, &e), 0);
    CHECK(out.blob != NULL && out.len > 0);
    img_output_finish(&out);
    expired(w);
    CHECK_INT(img_encode(w, &save, 75, 1 << 30, &out, &e), -1);
    char want[128];
    snprintf(want, sizeof want,
             "encode of 'thumb' as jpg: took longer than the limit of %ld s (PIXQ_MAGICK_TIME_S)",
             img_time_limit_s());
    CHECK_STR(e.msg, want);
    CHECK(out.blob == NULL && out.len == 0);
    DestroyMagickWand(w);
}

/* An operation timed on a sample first (op_fits_in_time()) on an image whose time ran out
 * before it started (a large source's decoding on a loaded machine took the limit): refused up
 * front, "would take longer", as when the sample's pace says so; before, cutting the sample
 * failed on the deadline and the refusal read as if the operation had run ("took longer"). */
static void test_measure_past_the_deadline(void)
{
    MagickWand *w = expired(solid(IMAGE_W, IMAGE_H, "#808080"));
    if (w == NULL) {
        return;
    }
    json_object *p = json_tokener_parse("{}");
    struct op_ctx ctx = {.max_pixels = 50000000L};
    struct err e = {{0}};
    CHECK(p != NULL && op_find("auto_gamma")->run(w, p, &ctx, &e) == -1);
    if (strstr(e.msg, "auto_gamma: would take longer than the limit") == NULL) {
        fprintf(stderr, "auto_gamma past the deadline: %s\n", e.msg);
        CHECK(false);
    }
    json_object_put(p);
    DestroyMagickWand(w);
}

/* ---------------------------------------------------------------- op_fits_in_time() */

/* What the run below saw (the wand of its first call) and what it does on every call. */
static struct probe {
    int calls;
    size_t width, height; /* of the wand of the first call */
    bool marked;          /* that wand's middle pixel was red (the mark in the image's middle) */
    long sleep_ms;        /* each call takes this long */
    bool fail;            /* each call fails */
    bool expire;          /* each call moves its wand's deadline to a moment ago */
    bool grow;            /* each call doubles its wand's sides (as a turn makes more pixels) */
} probe;

/* op_run_fn: records the wand in `probe` and does what it says. */
static MagickBooleanType probe_run(MagickWand *w, const void *arg)
{
    (void)arg;
    if (probe.calls++ == 0) {
        probe.width = MagickGetImageWidth(w);
        probe.height = MagickGetImageHeight(w);
        PixelWand *c = NewPixelWand();
        probe.marked = MagickGetImagePixelColor(w, (ssize_t)probe.width / 2,
                                                (ssize_t)probe.height / 2, c) == MagickTrue &&
                       PixelGetRed(c) > 0.9 && PixelGetGreen(c) < 0.1;
        DestroyPixelWand(c);
    }
    if (probe.sleep_ms > 0) {
        struct timespec ts = {0, probe.sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (probe.expire) {
        with_time_left(w, -1);
    }
    if (probe.grow && MagickExtentImage(w, 2 * MagickGetImageWidth(w), 2 * MagickGetImageHeight(w),
                                        0, 0) == MagickFalse) {
        return MagickFalse;
    }
    return probe.fail ? MagickFalse : MagickTrue;
}

/* A white IMAGE_W x IMAGE_H image with a red 20x20 mark in its middle and `left_ms` to go. */
static MagickWand *marked(long left_ms)
{
    MagickWand *w = solid(IMAGE_W, IMAGE_H, "#ffffff");
    MagickWand *mark = solid(20, 20, "#ff0000");
    if (w != NULL && mark != NULL) {
        CHECK(MagickCompositeImage(w, mark, OverCompositeOp, IMAGE_W / 2 - 10, IMAGE_H / 2 - 10) ==
              MagickTrue);
    }
    if (mark != NULL) {
        DestroyMagickWand(mark);
    }
    return with_time_left(w, left_ms);
}

/* An operation whose output would take longer than the time left at OP_SLOW_NS_PER_PIXEL is first
 * run on a sample, 1/6 of each side from the image's middle; one that would not is not (the
 * threshold's constant in ns, or its scale, lived as mutants). */
static void test_time_sample(void)
{
    MagickWand *w = marked(1000);
    if (w == NULL) {
        return;
    }
    struct err e = {{0}};
    probe = (struct probe){0};
    CHECK_INT(op_fits_in_time(w, "rotate", 5e5, probe_run, NULL, &e), 0); /* 0.5 s, at most */
    CHECK_INT(probe.calls, 0);
    probe = (struct probe){0};
    (void)op_fits_in_time(w, "rotate", 2e6, probe_run, NULL, &e); /* 2 s at most: measured */
    CHECK_INT(probe.calls, 1);
    CHECK_INT(probe.width, (IMAGE_W + 5) / 6);
    CHECK_INT(probe.height, (IMAGE_H + 5) / 6);
    CHECK(probe.marked);
    DestroyMagickWand(w);
}

/* The sample's pace, scaled to the whole output, against the time left: 20 ms for a sample of
 * 67x50 pixels says 12 s for 2,000,000, refused with a second left (the time not scaled lived as
 * a mutant); a sample that fails is the operation's failure, not a refusal for time (a mutant
 * said "would take longer"). */
static void test_time_sample_pace(void)
{
    MagickWand *w = marked(1000);
    if (w == NULL) {
        return;
    }
    struct err e = {{0}};
    probe = (struct probe){.sleep_ms = 20};
    CHECK_INT(op_fits_in_time(w, "rotate", 2e6, probe_run, NULL, &e), -1);
    const char *want =
        "rotate: would take longer than the limit of 3600 s (PIXQ_MAGICK_TIME_S: about ";
    if (strncmp(e.msg, want, strlen(want)) != 0) {
        fprintf(stderr, "a slow sample: '%s'\n", e.msg);
        CHECK(false);
    }
    CHECK_INT(probe.calls, 1);
    /* the pace is per pixel of the sample's result: one 4 times the sample's size took 100 ms,
     * the whole output would take about 2,000,000 / (4 x 67 x 50) x 0.1 = 15 s (the sample's
     * own size said 60 s as a mutant); up to 45 s leaves room for a loaded or valgrind run */
    probe = (struct probe){.sleep_ms = 100, .grow = true};
    CHECK_INT(op_fits_in_time(w, "rotate", 2e6, probe_run, NULL, &e), -1);
    const char *about = strstr(e.msg, " about ");
    double more = 0;
    if (about == NULL || sscanf(about, " about %lf s more", &more) != 1 || more < 14.0 ||
        more > 45.0) {
        fprintf(stderr, "a sample that grew: '%s'\n", e.msg);
        CHECK(false);
    }
    probe = (struct probe){.fail = true};
    CHECK_INT(op_fits_in_time(w, "rotate", 2e6, probe_run, NULL, &e), -1);
    CHECK_STR(e.msg, "rotate failed");
    DestroyMagickWand(w);
}

/* op_within_time() runs on the whole image once the estimate fits, and an operation that ends
 * past the deadline without failing (ImageMagick's distortions do) is refused all the same (a
 * mutant let it pass). */
static void test_within_time(void)
{
    MagickWand *w = marked(1000);
    if (w == NULL) {
        return;
    }
    struct err e = {{0}};
    probe = (struct probe){0};
    CHECK_INT(op_within_time(w, "rotate", 100.0, probe_run, NULL, &e), 0);
    CHECK_INT(probe.calls, 1);
    CHECK(probe.width == IMAGE_W && probe.height == IMAGE_H && probe.marked);
    probe = (struct probe){.expire = true};
    CHECK_INT(op_within_time(w, "rotate", 100.0, probe_run, NULL, &e), -1);
    CHECK_STR(e.msg, "rotate: took longer than the limit of 3600 s (PIXQ_MAGICK_TIME_S)");
    DestroyMagickWand(w);
}

/* Whether some pixel of `w` (any colorspace) is red in sRGB, or white when `white`. */
static bool has_ink(MagickWand *w, bool white)
{
    MagickWand *rgb = CloneMagickWand(w);
    size_t n = (size_t)IMAGE_W * IMAGE_H * 3;
    float *px = malloc(n * sizeof *px);
    bool red = false;
    if (px != NULL && MagickTransformImageColorspace(rgb, sRGBColorspace) == MagickTrue &&
        MagickExportImagePixels(rgb, 0, 0, IMAGE_W, IMAGE_H, "RGB", FloatPixel, px) == MagickTrue) {
        for (size_t i = 0; i < n && !red; i += 3) {
            red = px[i] > 0.8f && (px[i + 1] < 0.2f) != white && (px[i + 2] < 0.2f) != white;
        }
    }
    free(px);
    DestroyMagickWand(rgb);
    return red;
}

/* A layer, band or overlay (sRGB) put on a CMYK image is made CMYK first: ImageMagick's
 * composite would relabel it CMYK, its red read as cyan and its black channel never written
 * (valgrind: uninitialised values into the output). Red ink on a white CMYK image stays red,
 * watermark's white text on a red one white (which the old code also gave, its uninitialised
 * reads found by the suite's valgrind run). */
static void test_cmyk_image(void)
{
    static const struct {
        const char *name, *params;
        bool white; /* on red, white ink (else on white, red ink) */
    } cases[] = {
        {"annotate",
         "{\"text\": \"RED\", \"point_size\": 60, \"color\": \"#ff0000\", "
         "\"dropshadow_color\": \"#ff0000\"}",
         false},
        {"watermark",
         "{\"text\": \"RED\", \"point_size\": 60, \"color\": \"#ff0000\", "
         "\"opacity\": 1.0}",
         true},
        {"caption", "{\"text\": \"RED\", \"point_size\": 60, \"color\": \"#ff0000\"}", false},
        {"tile", "{\"src\": \"tile\"}", false},
        {"composite", "{\"src\": \"tile\", \"x\": 10, \"y\": 10}", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        MagickWand *w = solid(IMAGE_W, IMAGE_H, cases[i].white ? "#ff0000" : "#ffffff");
        if (w == NULL) {
            return;
        }
        CHECK(MagickTransformImageColorspace(w, CMYKColorspace) == MagickTrue);
        json_object *p = json_tokener_parse(cases[i].params);
        struct op_ctx ctx = {.max_pixels = 50000000L, .load = load_tile};
        struct err e = {{0}};
        CHECK(p != NULL && op_find(cases[i].name)->run(w, p, &ctx, &e) == 0);
        CHECK(MagickGetImageColorspace(w) == CMYKColorspace);
        if (!has_ink(w, cases[i].white)) {
            fprintf(stderr, "%s on a CMYK image: no %s pixel (%s)\n", cases[i].name,
                    cases[i].white ? "white" : "red", e.msg);
            CHECK(false);
        }
        json_object_put(p);
        DestroyMagickWand(w);
    }
}

int main(void)
{
    if (test_img_start("layers") < 0) {
        return 1;
    }
    test_drop_shadow_layer();
    test_tile_band();
    test_layer_time_left();
    test_caption_layout_stops();
    test_encode_names_its_output();
    test_cmyk_image();
    test_measure_past_the_deadline();
    test_time_sample();
    test_time_sample_pace();
    test_within_time();
    int rc = check_summary("layers");
    img_shutdown();
    return rc;
}
