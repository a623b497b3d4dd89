/* ops_color: colour and filter functions (BLITLINE.md 4.4).
 *
 * Each operation is one ImageMagick call (or a few) with Blitline's parameter names and
 * defaults; the comment above each names the equivalent `convert` options and says where pixq
 * departs from Blitline's 2014 worker, and why.
 *
 * Kernel sizes are bounded so that one operation on an image at the default pixel limit
 * (50 MP) takes about a minute of one core at most. Measured with `convert -limit thread 1` on a
 * 4 MP photo (times 12.5 for 50 MP): blur 0x30 2.4 s and 100x30 2.2 s (a separable kernel:
 * the cost grows with its width), sharpen 0x4 4.0 s and 12x0 3.5 s (a square kernel: the cost
 * grows with its area; 0x20 took 54 s), median 5x5 3.8 s (7x7: 6.5 s), sketch 0x3 6.2 s and 5x0
 * 6.1 s (30x0: 94 s). */
#include <lcms2.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image.h"
#include "job.h"
#include "ops.h"

#define BLUR_SIGMA_MAX     30.0  /* blur, unsharp_mask, vignette: separable Gaussian, pixels */
#define BLUR_RADIUS_MAX    100.0 /* pixels */
#define SHARPEN_SIGMA_MAX  4.0   /* sharpen: a square kernel, pixels */
#define SHARPEN_RADIUS_MAX 12.0
#define SKETCH_SIGMA_MAX   3.0 /* sketch: noise, a motion blur and blends, pixels */
#define SKETCH_RADIUS_MAX  5.0
#define MEAN_CHECK_ROWS    64      /* auto_enhance: rows between looks at the deadline */
#define MEDIAN_RADIUS_MAX  2.0     /* median_filter: a 5x5 window at most */
#define LEVEL_MAX          65535.0 /* level/levelize points are on Blitline's 16-bit scale */
#define GAMMA_MIN          0.01
#define GAMMA_MAX          10.0
#define DPI_LIMIT          10000 /* density, resample: dots per inch */
#define DPI_MAX            ((double)DPI_LIMIT)
#define STEGANO_MAX_PIXELS 1000000L /* stegano: one pixel access per watermark pixel and bit */
#define NAME_MAX_LEN       64       /* longest channel or colorspace name */
#define PROFILE_NAME_MAX   256
#define PROFILE_MAX_BYTES  (4L * 1024 * 1024) /* PIXQ_MAX_PROFILE_BYTES's default */
#define PROFILE_NAME_STARS 3                  /* wildcards in a delete_profile glob */
#define MAGICK_PI          3.14159265358979323846264338327950288419716939937510 /* as MagickPI */

/* ---------------------------------------------------------------- helpers */

/* 0, or -1 with ImageMagick's reason when a wand call returned MagickFalse. */
static int done(MagickWand *w, MagickBooleanType ok, const char *fn, struct err *e)
{
    return ok == MagickFalse ? img_fail(w, fn, e) : 0;
}

/* The pixels of w's image: what an operation that keeps its size makes (op_within_time()). */
static double pixels_of(MagickWand *w)
{
    return (double)MagickGetImageWidth(w) * (double)MagickGetImageHeight(w);
}

/* A required number in [min, max]. */
static int required_double(json_object *p, const char *fn, const char *name, double min, double max,
                           double *out, struct err *e)
{
    if (job_param_required(p, fn, name, true, e) < 0) {
        return -1;
    }
    return job_param_double(p, fn, name, 0.0, min, max, out, e);
}

/* A required whole number in [min, max]. */
static int required_long(json_object *p, const char *fn, const char *name, long min, long max,
                         long *out, struct err *e)
{
    if (job_param_required(p, fn, name, true, e) < 0) {
        return -1;
    }
    return job_param_long(p, fn, name, 0, min, max, out, e);
}

/* The Gaussian pair every blur-like function takes: radius (0.0: chosen from sigma) and sigma
 * (`sigma_def`), each bounded as the operation's cost allows. */
static int radius_sigma(json_object *p, const char *fn, double radius_max, double sigma_max,
                        double sigma_def, double *radius, double *sigma, struct err *e)
{
    if (job_param_double(p, fn, "radius", 0.0, 0.0, radius_max, radius, e) < 0 ||
        job_param_double(p, fn, "sigma", sigma_def, 0.0, sigma_max, sigma, e) < 0) {
        return -1;
    }
    return 0;
}

/* Copies `s` without a trailing `suffix` ("RedChannel" -> "Red"), case-insensitively; `out`
 * may be `s`. */
static int strip_suffix(const char *s, const char *suffix, char *out, size_t cap)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n >= cap) {
        return -1;
    }
    if (n > k && strcasecmp(s + n - k, suffix) == 0) {
        n -= k;
    }
    memmove(out, s, n);
    out[n] = '\0';
    return 0;
}

/* A channel parameter: "AllChannels", "RedChannel", "Red", "red,green", "RGB"... */
static int channel_param(json_object *p, const char *fn, const char *name, const char *def,
                         ChannelType *out, struct err *e)
{
    const char *s;
    char base[NAME_MAX_LEN];
    if (job_param_string(p, fn, name, def, &s, e) < 0) {
        return -1;
    }
    ssize_t c = -1;
    if (strip_suffix(s, "Channels", base, sizeof base) == 0 &&
        strip_suffix(base, "Channel", base, sizeof base) == 0 && base[0] != '\0') {
        c = ParseChannelOption(base);
    }
    if (c <= 0) {
        return err_set(e, "Invalid parameter '%s' for function '%s': '%.64s' is not a channel",
                       name, fn, s);
    }
    *out = (ChannelType)c;
    return 0;
}

/* A colorspace parameter: "RGBColorspace", "sRGB", "GRAYColorspace", "Lab"... */
static int colorspace_of(const char *s, const char *fn, const char *name, ColorspaceType *out,
                         struct err *e)
{
    char base[NAME_MAX_LEN];
    ssize_t c = -1;
    if (strip_suffix(s, "Colorspace", base, sizeof base) == 0 && base[0] != '\0') {
        c = ParseCommandOption(MagickColorspaceOptions, MagickFalse, base);
    }
    if (c <= (ssize_t)UndefinedColorspace) {
        return err_set(e, "Invalid parameter '%s' for function '%s': '%.64s' is not a colorspace",
                       name, fn, s);
    }
    *out = (ColorspaceType)c;
    return 0;
}

/* A number Blitline's docs spell one way and its worker another ("Brightness", "brightness"):
 * `name` wins when both are given. */
static int either_double(json_object *p, const char *fn, const char *name, const char *alias,
                         double def, double min, double max, double *out, struct err *e)
{
    const char *key =
        job_param_number_given(p, name) || !job_param_number_given(p, alias) ? name : alias;
    job_param_alias(fn, name, alias);
    return job_param_double(p, fn, key, def, min, max, out, e);
}

/* ---------------------------------------------------------------- blur and sharpen */

/* A radius and sigma (1.0 by default) within the bounds, then `op` with them. */
static int radius_sigma_op(MagickWand *w, json_object *p, const char *fn, double radius_max,
                           double sigma_max, MagickBooleanType (*op)(MagickWand *, double, double),
                           struct err *e)
{
    double radius, sigma;
    if (radius_sigma(p, fn, radius_max, sigma_max, 1.0, &radius, &sigma, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, op(w, radius, sigma), fn, e);
}

/* blur: Gaussian blur, sigma 1.0, radius 0.0 (`-blur RxS`). */
static int op_blur(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    return radius_sigma_op(w, p, "blur", BLUR_RADIUS_MAX, BLUR_SIGMA_MAX, MagickBlurImage, e);
}

/* sharpen: sigma 1.0, radius 0.0 (`-sharpen RxS`). */
static int op_sharpen(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    return radius_sigma_op(w, p, "sharpen", SHARPEN_RADIUS_MAX, SHARPEN_SIGMA_MAX,
                           MagickSharpenImage, e);
}

/* adaptive_blur: sigma 1.0, radius 0.0, blurring less across edges (`-adaptive-blur RxS`; a
 * worker function of Blitline's). Its kernel is square: sharpen's bounds. */
static int op_adaptive_blur(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    return radius_sigma_op(w, p, "adaptive_blur", SHARPEN_RADIUS_MAX, SHARPEN_SIGMA_MAX,
                           MagickAdaptiveBlurImage, e);
}

/* adaptive_sharpen: sigma 1.0, radius 0.0, sharpening more at edges (`-adaptive-sharpen RxS`). */
static int op_adaptive_sharpen(MagickWand *w, json_object *p, const struct op_ctx *ctx,
                               struct err *e)
{
    return radius_sigma_op(w, p, "adaptive_sharpen", SHARPEN_RADIUS_MAX, SHARPEN_SIGMA_MAX,
                           MagickAdaptiveSharpenImage, e);
}

/* blue_shift: factor 1.5, a moonlit night (`-blue-shift F`). */
static int op_blue_shift(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    double factor;
    if (job_param_double(p, "blue_shift", "factor", 1.5, 0.0, 100.0, &factor, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickBlueShiftImage(w, factor), "blue_shift", e);
}

/* threshold: threshold_value 0.5 (a fraction of the range): each channel to 0 or the maximum
 * (`-threshold 50%`). */
static int op_threshold(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    double t;
    if (job_param_double(p, "threshold", "threshold_value", 0.5, 0.0, 1.0, &t, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickThresholdImage(w, t * QuantumRange), "threshold", e);
}

/* unsharp_mask: sigma 1.0, radius 0.0, amount 1.0 (fraction of the difference added back),
 * threshold 0.05 (fraction of the range) (`-unsharp RxS+A+T`). */
static int op_unsharp_mask(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "unsharp_mask";
    double radius, sigma, amount, threshold;
    if (radius_sigma(p, fn, BLUR_RADIUS_MAX, BLUR_SIGMA_MAX, 1.0, &radius, &sigma, e) < 0 ||
        job_param_double(p, fn, "amount", 1.0, 0.0, 10.0, &amount, e) < 0 ||
        job_param_double(p, fn, "threshold", 0.05, 0.0, 1.0, &threshold, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickUnsharpMaskImage(w, radius, sigma, amount, threshold), fn, e);
}

/* median_filter: each pixel becomes the median of the (2r+1) x (2r+1) square around it, r =
 * radius (1.0: 3x3; `-statistic median 3x3`). The 2014 worker passed the radius to ImageMagick
 * as the window's width, which made its default a 1x1 window (no change); pixq follows the
 * documented meaning. */
static int op_median_filter(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "median_filter";
    double radius;
    if (job_param_double(p, fn, "radius", 1.0, 0.0, MEDIAN_RADIUS_MAX, &radius, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    size_t width = 2 * (size_t)ceil(radius) + 1;
    return done(w, MagickStatisticImage(w, MedianStatistic, width, width), fn, e);
}

/* op_run_fn: despeckle. ImageMagick's looks at the deadline once per channel only. */
static MagickBooleanType despeckle(MagickWand *w, const void *arg)
{
    (void)arg;
    return MagickDespeckleImage(w);
}

/* despeckle: reduces speckle noise, keeps edges (`-despeckle`). */
static int op_despeckle(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    if (w == NULL) {
        return 0;
    }
    return op_within_time(w, "despeckle", pixels_of(w), despeckle, NULL, e);
}

#define ENHANCE_MIN_SIDE 5 /* ImageMagick's filter refuses (says nothing) a smaller image */

/* enhance: a noise-reducing filter (`-enhance`). An image with a side under ENHANCE_MIN_SIDE is
 * left as it is, as `convert -enhance` leaves it (the job failed with "enhance failed"). */
static int op_enhance(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    if (w == NULL || MagickGetImageWidth(w) < ENHANCE_MIN_SIDE ||
        MagickGetImageHeight(w) < ENHANCE_MIN_SIDE) {
        return 0;
    }
    return done(w, MagickEnhanceImage(w), "enhance", e);
}

/* ---------------------------------------------------------------- tone and colour */

/* op_run_fn: sepia tone at the threshold (in quantum units) `arg` points to. ImageMagick's ends
 * in a normalize and a contrast whose stops it does not look at. */
static MagickBooleanType sepia_tone(MagickWand *w, const void *arg)
{
    return MagickSepiaToneImage(w, *(const double *)arg);
}

/* sepia_tone: threshold 0.80, a fraction of the range (`-sepia-tone 80%`). */
static int op_sepia_tone(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    double threshold;
    if (job_param_double(p, "sepia_tone", "threshold", 0.80, 0.0, 1.0, &threshold, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    threshold *= QuantumRange;
    return op_within_time(w, "sepia_tone", pixels_of(w), sepia_tone, &threshold, e);
}

/* What quantize_colors() makes: colors colours in colorspace cs, dithered or not. */
struct quantize {
    size_t colors;
    ColorspaceType cs;
    MagickBooleanType dither;
};

/* op_run_fn: ImageMagick's quantize as `arg` (a struct quantize) says. Its classification stops
 * at the deadline, the reduction of its colour tree and the mapping do not look at it (a 49 MP
 * photo ran 1.2 to 2.2 s past the limit). */
static MagickBooleanType quantize_colors(MagickWand *w, const void *arg)
{
    const struct quantize *q = arg;
    return MagickQuantizeImage(w, q->colors, q->cs, 0, q->dither, MagickFalse);
}

/* gray_colorspace: greyscale, as the 2014 worker made it: quantized in the GRAY colorspace to
 * 65535 colours without dithering (`-quantize gray +dither -colors 65535`). ImageMagick's colour
 * tree is 8 levels deep: at most 256 grey levels come out, even from a 16-bit image. */
static int op_gray_colorspace(MagickWand *w, json_object *p, const struct op_ctx *ctx,
                              struct err *e)
{
    if (w == NULL) {
        return 0;
    }
    const struct quantize q = {65535, GRAYColorspace, MagickFalse};
    return op_within_time(w, "gray_colorspace", pixels_of(w), quantize_colors, &q, e);
}

/* modulate: brightness, saturation and hue as factors (1.0: unchanged; hue 0 and 2 turn it by
 * 180 degrees) (`-modulate B*100,S*100,H*100`). The docs spell the keys "Brightness",
 * "Saturation", "Hue", the worker lower case: both are read, lower case first. */
static int op_modulate(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "modulate";
    double b, s, h;
    if (either_double(p, fn, "brightness", "Brightness", 1.0, 0.0, 10.0, &b, e) < 0 ||
        either_double(p, fn, "saturation", "Saturation", 1.0, 0.0, 10.0, &s, e) < 0 ||
        either_double(p, fn, "hue", "Hue", 1.0, 0.0, 2.0, &h, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickModulateImage(w, b * 100.0, s * 100.0, h * 100.0), fn, e);
}

/* contrast: sharpen false lowers the contrast (`+contrast`), true raises it (`-contrast`).
 * Unlike the 2014 worker, which tested the raw value (so "false" raised it), the string
 * "false" is false. */
static int op_contrast(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    bool sharpen;
    if (job_param_bool(p, "contrast", "sharpen", false, &sharpen, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickContrastImage(w, sharpen ? MagickTrue : MagickFalse), "contrast", e);
}

/* contrast_stretch_channel: black_point (required) is how many pixels may turn black;
 * white_point, as in RMagick and the 2014 worker, counts from the dark end: the pixels above it
 * turn white, and its default, all pixels - black_point, burns as many at the top as
 * black_point does at the bottom (`-contrast-stretch B` then; B x (pixels - white_point)
 * otherwise). */
static int op_contrast_stretch_channel(MagickWand *w, json_object *p, const struct op_ctx *ctx,
                                       struct err *e)
{
    const char *fn = "contrast_stretch_channel";
    if (w == NULL) { /* their range is the image's pixels */
        if (job_param_required(p, fn, "black_point", true, e) < 0) {
            return -1;
        }
        job_param_declare(fn, "white_point", NULL,
                          "from the dark end; default: pixels - black_point");
        return job_param_check_number(p, fn, "black_point", false, e) < 0 ||
                       job_param_check_number(p, fn, "white_point", false, e) < 0
                   ? -1
                   : 0;
    }
    double pixels = (double)MagickGetImageWidth(w) * (double)MagickGetImageHeight(w);
    double black, white;
    if (required_double(p, fn, "black_point", 0.0, pixels, &black, e) < 0 ||
        job_param_double(p, fn, "white_point", pixels - black, 0.0, pixels, &white, e) < 0) {
        return -1;
    }
    return done(w, MagickContrastStretchImage(w, black, white), fn, e);
}

/* gamma_channel: gamma (required; "usually 0.8 to 2.3") (`-gamma G`). The docs make it
 * required; the 2014 worker defaulted to 0.8. */
static int op_gamma_channel(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "gamma_channel";
    double gamma;
    if (required_double(p, fn, "gamma", GAMMA_MIN, GAMMA_MAX, &gamma, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickGammaImage(w, gamma), fn, e);
}

/* level and levelize: channel (AllChannels), black_point (0.0), white_point (65535.0) on a
 * 16-bit scale whatever ImageMagick's own depth, gamma (1.0). */
static int level_common(MagickWand *w, json_object *p, const char *fn, bool inverse, struct err *e)
{
    ChannelType channel = AllChannels;
    double black, white, gamma;
    if (channel_param(p, fn, "channel", "AllChannels", &channel, e) < 0 ||
        job_param_double(p, fn, "black_point", 0.0, 0.0, LEVEL_MAX, &black, e) < 0 ||
        job_param_double(p, fn, "white_point", LEVEL_MAX, 0.0, LEVEL_MAX, &white, e) < 0 ||
        job_param_double(p, fn, "gamma", 1.0, GAMMA_MIN, GAMMA_MAX, &gamma, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    black *= QuantumRange / LEVEL_MAX;
    white *= QuantumRange / LEVEL_MAX;
    MagickBooleanType ok = inverse ? MagickLevelizeImageChannel(w, channel, black, gamma, white)
                                   : MagickLevelImageChannel(w, channel, black, gamma, white);
    return done(w, ok, fn, e);
}

/* level: maps black_point..white_point to the full range (`-level B,W,G`). */
static int op_level(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    return level_common(w, p, "level", false, e);
}

/* levelize: the inverse, maps the full range into black_point..white_point (`+level B,W,G`). */
static int op_levelize(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    return level_common(w, p, "levelize", true, e);
}

/* ImageMagick's auto-gamma and auto-level measure the image (GetImageChannelStatistics(), once
 * per channel for auto-gamma) without looking at the deadline: 1.2 s over the whole of a 47 MP
 * image against a 1 s limit. They go through op_within_time(), which times them on a sample
 * first when the time left might be short. */
static const ChannelType all_channels = DefaultChannels;
static const ChannelType rgb_channels = RedChannel | GreenChannel | BlueChannel;

/* op_run_fn: auto-level of the channels `arg` points to. */
static MagickBooleanType auto_level(MagickWand *w, const void *arg)
{
    const ChannelType *c = arg;
    return *c == DefaultChannels ? MagickAutoLevelImage(w) : MagickAutoLevelImageChannel(w, *c);
}

/* op_run_fn: auto-gamma of the channels `arg` points to. */
static MagickBooleanType auto_gamma(MagickWand *w, const void *arg)
{
    const ChannelType *c = arg;
    return *c == DefaultChannels ? MagickAutoGammaImage(w) : MagickAutoGammaImageChannel(w, *c);
}

/* auto_level: stretches the colour channels together to the full range (`-auto-level`). The
 * 2014 worker also stretched alpha (AllChannels); the docs speak of the colour channels. */
static int op_auto_level(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    if (w == NULL) {
        return 0;
    }
    return op_within_time(w, "auto_level", pixels_of(w), auto_level, &all_channels, e);
}

/* auto_gamma: chooses the gamma that brings the mean to the middle (`-auto-gamma`). */
static int op_auto_gamma(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    if (w == NULL) {
        return 0;
    }
    return op_within_time(w, "auto_gamma", pixels_of(w), auto_gamma, &all_channels, e);
}

/* The mean over all pixels of HSB brightness, max(R, G, B), as a fraction of the range; the
 * deadline is looked at every MEAN_CHECK_ROWS rows (ImageMagick's monitor does not see this
 * loop: 1.4 s past a 2 s limit on a 49 MP photo). */
static int mean_brightness(MagickWand *w, double *out, struct err *e)
{
    size_t cols = MagickGetImageWidth(w), rows = MagickGetImageHeight(w);
    double *row = malloc(cols * 3 * sizeof *row);
    if (row == NULL) {
        return err_set(e, "auto_enhance: out of memory");
    }
    double sum = 0.0;
    for (size_t y = 0; y < rows; y++) {
        if (y % MEAN_CHECK_ROWS == 0 && img_past_deadline(w)) {
            free(row);
            return img_fail(w, "auto_enhance", e);
        }
        if (MagickExportImagePixels(w, 0, (ssize_t)y, cols, 1, "RGB", DoublePixel, row) ==
            MagickFalse) {
            free(row);
            return img_fail(w, "auto_enhance", e);
        }
        for (size_t x = 0; x < cols; x++) {
            const double *px = row + 3 * x;
            sum += fmax(px[0], fmax(px[1], px[2]));
        }
    }
    free(row);
    *out = sum / ((double)cols * (double)rows);
    return 0;
}

/* auto_enhance: Blitline's "magic wand", as its worker's script did it: the red, green and
 * blue channels each auto-levelled, after an auto-gamma when the image is dark or bright (mean
 * HSB brightness under 30% or over 70%) (`-channel rgb [-auto-gamma] -auto-level`). */
static int op_auto_enhance(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    if (w == NULL) {
        return 0;
    }
    const char *fn = "auto_enhance";
    double brightness = 0.0;
    if (mean_brightness(w, &brightness, e) < 0) {
        return -1;
    }
    if ((brightness < 0.30 || brightness > 0.70) &&
        op_within_time(w, fn, pixels_of(w), auto_gamma, &rgb_channels, e) < 0) {
        return -1;
    }
    return op_within_time(w, fn, pixels_of(w), auto_level, &rgb_channels, e);
}

/* equalize: histogram equalisation (`-equalize`). */
static int op_equalize(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickEqualizeImage(w), "equalize", e);
}

/* normalize: stretches the histogram, clipping 2% dark and 1% light pixels (`-normalize`). */
static int op_normalize(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickNormalizeImage(w), "normalize", e);
}

/* quantize: number_colors (required; the 2014 worker defaulted to 8), color_space (the docs) or
 * colorspace (the worker) (RGBColorspace, i.e. linear RGB), dither (false)
 * (`-quantize RGB +dither -colors N`). */
static int op_quantize(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "quantize";
    const char *key = job_param_present(p, "color_space") ? "color_space" : "colorspace";
    job_param_alias(fn, "color_space", "colorspace");
    const char *cs_name;
    long colors;
    bool dither;
    ColorspaceType cs = RGBColorspace;
    if (required_long(p, fn, "number_colors", 1, 65536, &colors, e) < 0 ||
        job_param_string(p, fn, key, "RGBColorspace", &cs_name, e) < 0 ||
        colorspace_of(cs_name, fn, key, &cs, e) < 0 ||
        job_param_bool(p, fn, "dither", false, &dither, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    const struct quantize q = {(size_t)colors, cs, dither ? MagickTrue : MagickFalse};
    return op_within_time(w, fn, pixels_of(w), quantize_colors, &q, e);
}

/* ---------------------------------------------------------------- effects */

/* vignette of a CMYK image, whose colours ImageMagick's own would read as red, green and blue
 * (it turned the middle of a CMYK photo black and left its edges): the vignette of a white sRGB
 * image is its mask, and `color` through the negated mask, made CMYK, is put Over the image:
 * what ImageMagick's vignette flattens, image x mask + color x (1 - mask). */
static int cmyk_vignette(MagickWand *w, const PixelWand *color, double radius, double sigma, long x,
                         long y, struct err *e)
{
    const char *fn = "vignette";
    long iw = (long)MagickGetImageWidth(w), ih = (long)MagickGetImageHeight(w);
    PixelWand *white = NewPixelWand(), *black = NewPixelWand();
    MagickWand *mask = NULL, *layer = NULL;
    int rc = PixelSetColor(white, "#ffffff") == MagickFalse ||
                     PixelSetColor(black, "#000000") == MagickFalse
                 ? err_set(e, "%s: cannot set the mask colours", fn)
                 : 0;
    if (rc == 0 && ((mask = img_layer(w, iw, ih, white, e)) == NULL ||
                    (layer = img_layer(w, iw, ih, color, e)) == NULL)) {
        rc = -1;
    }
    if (rc == 0) {
        rc = done(mask, MagickSetImageBackgroundColor(mask, black), fn, e);
    }
    if (rc == 0) {
        rc = done(mask, MagickVignetteImage(mask, radius, sigma, x, y), fn, e);
    }
    if (rc == 0) {
        rc = done(mask, MagickNegateImage(mask, MagickFalse), fn, e);
    }
    if (rc == 0) {
        rc = done(mask, MagickSetImageAlphaChannel(mask, DeactivateAlphaChannel), fn, e);
    }
    if (rc == 0) {
        rc = done(layer, MagickCompositeImage(layer, mask, CopyOpacityCompositeOp, 0, 0), fn, e);
    }
    if (rc == 0) {
        rc = done(layer, MagickTransformImageColorspace(layer, CMYKColorspace), fn, e);
    }
    if (rc == 0) {
        rc = done(w, MagickCompositeImage(w, layer, OverCompositeOp, 0, 0), fn, e);
    }
    if (mask != NULL) {
        DestroyMagickWand(mask);
    }
    if (layer != NULL) {
        DestroyMagickWand(layer);
    }
    DestroyPixelWand(white);
    DestroyPixelWand(black);
    return rc;
}

/* vignette: the edges fade into color (#000000) through a blurred ellipse x (10) and y (10)
 * pixels inside the borders; sigma 10.0, radius 0.0 (`-background C -vignette RxS+X+Y`). The
 * docs also list a threshold (0.0 to 1.0), which ImageMagick's vignette has no use for: it is
 * checked and ignored. The image's background colour is restored afterwards. */
static int op_vignette(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "vignette";
    double radius, sigma, threshold;
    long x, y;
    if (radius_sigma(p, fn, BLUR_RADIUS_MAX, BLUR_SIGMA_MAX, 10.0, &radius, &sigma, e) < 0 ||
        job_param_long(p, fn, "x", 10, 0, OP_MAX_SIDE, &x, e) < 0 ||
        job_param_long(p, fn, "y", 10, 0, OP_MAX_SIDE, &y, e) < 0 ||
        job_param_double(p, fn, "threshold", 0.05, 0.0, 1.0, &threshold, e) < 0) {
        return -1;
    }
    PixelWand *color;
    int go = op_color_for(w, p, fn, "color", "#000000", &color, e);
    if (go <= 0) {
        return go;
    }
    /* a grey image would take the colour's grey: its pixels are sRGB's too */
    if (MagickGetImageColorspace(w) == GRAYColorspace &&
        MagickSetImageColorspace(w, sRGBColorspace) == MagickFalse) {
        DestroyPixelWand(color);
        return img_fail(w, fn, e);
    }
    if (MagickGetImageColorspace(w) == CMYKColorspace) {
        int rc = cmyk_vignette(w, color, radius, sigma, x, y, e);
        DestroyPixelWand(color);
        return rc;
    }
    PixelWand *old = NewPixelWand();
    int rc = done(w, MagickGetImageBackgroundColor(w, old), fn, e);
    if (rc == 0) {
        rc = done(w, MagickSetImageBackgroundColor(w, color), fn, e);
    }
    if (rc == 0) {
        rc = done(w, MagickVignetteImage(w, radius, sigma, x, y), fn, e);
    }
    if (rc == 0) {
        rc = done(w, MagickSetImageBackgroundColor(w, old), fn, e);
    }
    DestroyPixelWand(old);
    DestroyPixelWand(color);
    return rc;
}

/* sketch: a pencil sketch; sigma 0.0 (the docs; the 2014 worker used 1.0), radius 0.0, angle
 * 0.0 degrees (`-sketch RxS+A`). ImageMagick draws it from random noise, so two runs differ
 * slightly. */
static int op_sketch(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "sketch";
    double radius, sigma, angle;
    if (radius_sigma(p, fn, SKETCH_RADIUS_MAX, SKETCH_SIGMA_MAX, 0.0, &radius, &sigma, e) < 0 ||
        job_param_double(p, fn, "angle", 0.0, -360.0, 360.0, &angle, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickSketchImage(w, radius, sigma, angle), fn, e);
}

/* The size of a photograph of `w` at most: the polaroid frame adds less than a tenth of each side
 * plus a few pixels, then the picture turns by `angle`. */
static void photograph_size(MagickWand *w, double angle, double *rw, double *rh)
{
    double a = fabs(angle) * (3.14159265358979323846 / 180.0);
    double fw = (double)MagickGetImageWidth(w) * 1.1 + 40.0;
    double fh = (double)MagickGetImageHeight(w) * 1.1 + 40.0;
    *rw = fw * fabs(cos(a)) + fh * fabs(sin(a));
    *rh = fw * fabs(sin(a)) + fh * fabs(cos(a));
}

/* Makes the polaroid with MagickCore: MagickPolaroidImage() of ImageMagick 6.9.11 leaks the
 * DrawInfo it borrows from its DrawingWand (valgrind shows it). The wand's image is replaced. */
static int polaroid(MagickWand *w, double angle, struct err *e)
{
    /* PolaroidImage() writes the image's own "Caption" under the print, its %-escapes expanded
     * (%[fx:...], %[Caption]...) and measured a character at a time, out of reach of the
     * deadline: a PNG's text chunk held a worker for minutes and gigabytes. The source's text is
     * no caption here; it goes back on the image as metadata. */
    Image *im = GetImageFromMagickWand(w);
    const char *caption = GetImageProperty(im, "Caption");
    char *kept = caption != NULL ? AcquireString(caption) : NULL;
    if (kept != NULL) {
        DeleteImageProperty(im, "Caption");
    }
    DrawInfo *draw = CloneDrawInfo(NULL, NULL);
    ExceptionInfo *ex = AcquireExceptionInfo();
    Image *out = PolaroidImage(im, draw, angle, ex);
    if (kept != NULL) {
        SetImageProperty(im, "Caption", kept);
        if (out != NULL) {
            SetImageProperty(out, "Caption", kept);
        }
        kept = DestroyString(kept);
    }
    int rc = 0;
    if (out == NULL && img_past_deadline(w)) { /* stopped by the monitor, with no reason */
        rc = img_fail(w, "photograph", e);
    } else if (out == NULL) {
        rc = err_set(e, "photograph: %s", ex->reason != NULL ? ex->reason : "failed");
    } else {
        MagickWand *tmp = NewMagickWandFromImage(out);
        rc = done(w, MagickSetImage(w, tmp), "photograph", e);
        DestroyMagickWand(tmp);
        DestroyImage(out);
    }
    DestroyExceptionInfo(ex);
    DestroyDrawInfo(draw);
    return rc;
}

/* op_run_fn: the polaroid of `w` at the angle `arg` points to (for op_fits_in_time(): its turn is
 * a distortion, which does not stop at the deadline). */
static MagickBooleanType polaroid_run(MagickWand *w, const void *arg)
{
    struct err e = {0};
    return polaroid(w, *(const double *)arg, &e) == 0 ? MagickTrue : MagickFalse;
}

/* photograph: a polaroid print with a curl and a shadow, turned by angle degrees (the docs give
 * no default; the 2014 worker's -5.0) (`-polaroid A`). The corners outside the turned print are
 * transparent: save as PNG to keep them. */
static int op_photograph(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "photograph";
    double angle, rw = 0.0, rh = 0.0;
    if (job_param_double(p, fn, "angle", -5.0, -360.0, 360.0, &angle, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    photograph_size(w, angle, &rw, &rh); /* a result that could pass the limits is refused */
    if (op_check_size(rw, rh, ctx, fn, e) < 0 ||
        op_fits_in_time(w, fn, rw * rh, polaroid_run, &angle, e) < 0) {
        return -1;
    }
    return polaroid(w, angle, e);
}

/* Replaces the area with its pixelated self: scaled down by `f` and back up with the box
 * filter, which leaves blocks of about 1/f pixels. */
static int pixelate_area(MagickWand *w, long x, long y, long aw, long ah, double f, struct err *e)
{
    MagickWand *area = MagickGetImageRegion(w, (size_t)aw, (size_t)ah, x, y);
    if (area == NULL) {
        return img_fail(w, "pixelate", e);
    }
    double sw = floor((double)aw * f + 0.5), sh = floor((double)ah * f + 0.5);
    MagickBooleanType ok = MagickScaleImage(area, sw < 1 ? 1 : (size_t)sw, sh < 1 ? 1 : (size_t)sh);
    if (ok != MagickFalse) {
        ok = MagickScaleImage(area, (size_t)aw, (size_t)ah);
    }
    if (ok == MagickFalse) {
        img_fail(area, "pixelate", e);
        DestroyMagickWand(area);
        return -1;
    }
    int rc = done(w, MagickCompositeImage(w, area, CopyCompositeOp, x, y), "pixelate", e);
    DestroyMagickWand(area);
    return rc;
}

/* pixelate: the area at x, y (0, 0) of width x height (the whole image), clipped to the image,
 * becomes blocks of 100/amount pixels; amount 1-100 (10; 100 changes nothing). The area is
 * replaced, not laid over (the 2014 worker composited it Over, which lets the original show
 * through where the image is transparent). */
static int op_pixelate(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "pixelate";
    /* the defaults of width and height, the image's size, are not checked (without an image:
     * 0, out of their range, which the parameter recorder reports as no default) */
    long iw = w != NULL ? (long)MagickGetImageWidth(w) : 0;
    long ih = w != NULL ? (long)MagickGetImageHeight(w) : 0;
    long x, y, aw, ah;
    double amount;
    if (job_param_long(p, fn, "x", 0, 0, OP_MAX_SIDE, &x, e) < 0 ||
        job_param_long(p, fn, "y", 0, 0, OP_MAX_SIDE, &y, e) < 0 ||
        job_param_long(p, fn, "width", iw, 1, OP_MAX_SIDE, &aw, e) < 0 ||
        job_param_long(p, fn, "height", ih, 1, OP_MAX_SIDE, &ah, e) < 0 ||
        job_param_double(p, fn, "amount", 10.0, 1.0, 100.0, &amount, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (x >= iw || y >= ih) {
        return err_set(e,
                       "Invalid parameter 'x' or 'y' for function '%s': (%ld, %ld) is outside "
                       "the %ldx%ld image",
                       fn, x, y, iw, ih);
    }
    aw = aw < iw - x ? aw : iw - x;
    ah = ah < ih - y ? ah : ih - y;
    return pixelate_area(w, x, y, aw, ah, amount / 100.0, e);
}

/* deskew's angle is ImageMagick's (DeskewImage(), `-deskew`), found here so that the deadline is
 * checked as it goes: ImageMagick's Radon transform looks at no progress monitor, and its
 * matrices, beside a large image, go to disk (a 49 MP image took 15 s against a 3 s limit). The
 * image is cut into cells of 8 pixels of a row, each counting its pixels with a channel under the
 * threshold; the cells of each row are summed along lines of every slope from 0 to 1 (the
 * transform of Brady's fast algorithm: log2 steps, each pairing columns), the cells in one order
 * for slopes down, reversed for slopes up; the slope whose sums vary most from row to row wins.
 * The sums are 16-bit, wrapping as ImageMagick's do. */
struct radon {
    size_t width, rows; /* width: a power of two, at least the cells of a row */
    uint16_t *a, *b;    /* width columns of `rows` sums each, column by column */
};

#define DESKEW_CHECK_ROWS 64 /* rows between looks at the deadline */

/* Fills r->a with the cells of each row, the first cell of a row at column 0 (`reversed`:
 * the last one). Returns 0, or -1 when the deadline passed or the pixels cannot be read. */
static int radon_cells(MagickWand *w, struct radon *r, double threshold, bool reversed,
                       uint16_t *row)
{
    size_t cols = MagickGetImageWidth(w), cells = (cols + 7) / 8;
    memset(r->a, 0, r->width * r->rows * sizeof *r->a);
    for (size_t y = 0; y < r->rows; y++) {
        if (y % DESKEW_CHECK_ROWS == 0 && img_past_deadline(w)) {
            return -1;
        }
        if (MagickExportImagePixels(w, 0, (ssize_t)y, cols, 1, "RGB", ShortPixel, row) ==
            MagickFalse) {
            return -1;
        }
        for (size_t c = 0; c < cells; c++) {
            uint16_t n = 0;
            for (size_t x = 8 * c; x < 8 * c + 8 && x < cols; x++) {
                const uint16_t *px = row + 3 * x;
                n += (double)px[0] < threshold || (double)px[1] < threshold ||
                     (double)px[2] < threshold;
            }
            size_t col = reversed ? cells - 1 - c : c;
            r->a[col * r->rows + y] = n;
        }
    }
    return 0;
}

/* One pairing of a step: the columns `near` and `far` (its partner `step` columns on) make the
 * columns `even` (far moved up k rows) and `odd` (k + 1 rows) of the next step. */
static void radon_pair(const uint16_t *near, const uint16_t *far, uint16_t *even, uint16_t *odd,
                       ptrdiff_t rows, ptrdiff_t k)
{
    ptrdiff_t y = 0;
    for (; y < rows - k - 1; y++) {
        even[y] = (uint16_t)(near[y] + far[y + k]);
        odd[y] = (uint16_t)(near[y] + far[y + k + 1]);
    }
    for (; y < rows - k; y++) {
        even[y] = (uint16_t)(near[y] + far[y + k]);
        odd[y] = near[y];
    }
    for (; y < rows; y++) {
        even[y] = near[y];
        odd[y] = near[y];
    }
}

/* The sum of the squared differences from row to row of the column `col`. */
static uint64_t radon_variation(const uint16_t *col, size_t rows)
{
    uint64_t sum = 0;
    for (size_t y = 0; y + 1 < rows; y++) {
        int64_t d = (int64_t)col[y] - (int64_t)col[y + 1];
        sum += (uint64_t)(d * d);
    }
    return sum;
}

/* The projection of r->a, in `out[width - 1 + sign * x]` for slope x. Returns 0, or -1 when the
 * deadline passed. */
static int radon_project(MagickWand *w, struct radon *r, long sign, uint64_t *out)
{
    const size_t n = r->rows;
    uint16_t *p = r->a, *q = r->b;
    for (size_t step = 1; step < r->width; step *= 2) {
        if (img_past_deadline(w)) {
            return -1;
        }
        for (size_t x = 0; x < r->width; x += 2 * step) {
            for (size_t i = 0; i < step; i++) {
                radon_pair(p + (x + i) * n, p + (x + i + step) * n, q + (x + 2 * i) * n,
                           q + (x + 2 * i + 1) * n, (ptrdiff_t)n, (ptrdiff_t)i);
            }
        }
        uint16_t *t = p;
        p = q;
        q = t;
    }
    for (size_t x = 0; x < r->width; x++) {
        out[(ptrdiff_t)r->width - 1 + sign * (ptrdiff_t)x] = radon_variation(p + x * n, n);
    }
    return 0;
}

/* The skew of the image in degrees, as DeskewImage() finds it. Returns 0, or -1 with the reason
 * (the deadline: "took longer than the limit"). */
static int deskew_angle(MagickWand *w, double threshold, double *degrees, struct err *e)
{
    struct radon r = {.width = 1, .rows = MagickGetImageHeight(w)};
    size_t cols = MagickGetImageWidth(w);
    while (r.width < (cols + 7) / 8) {
        r.width <<= 1;
    }
    r.a = malloc(r.width * r.rows * sizeof *r.a);
    r.b = malloc(r.width * r.rows * sizeof *r.b);
    uint16_t *row = malloc(cols * 3 * sizeof *row);
    uint64_t *projection = calloc(2 * r.width - 1, sizeof *projection);
    int rc = 0;
    if (r.a == NULL || r.b == NULL || row == NULL || projection == NULL) {
        rc = err_set(e, "deskew: out of memory");
    } else if (radon_cells(w, &r, threshold, true, row) < 0 ||
               radon_project(w, &r, -1, projection) < 0 ||
               radon_cells(w, &r, threshold, false, row) < 0 ||
               radon_project(w, &r, 1, projection) < 0) {
        rc = img_fail(w, "deskew", e);
    }
    if (rc == 0) {
        uint64_t best = 0;
        long skew = 0;
        for (size_t i = 0; i < 2 * r.width - 1; i++) {
            if (projection[i] > best) {
                skew = (long)i - (long)r.width + 1;
                best = projection[i];
            }
        }
        *degrees = 180.0 * -atan((double)skew / (double)r.width / 8.0) / MAGICK_PI;
    }
    free(projection);
    free(row);
    free(r.b);
    free(r.a);
    return rc;
}

/* op_run_fn: the affine distortion of deskew, `arg` its six coefficients. */
static MagickBooleanType turn(MagickWand *w, const void *arg)
{
    return MagickDistortImage(w, AffineProjectionDistortion, 6, arg, MagickTrue);
}

/* deskew: straightens a scan turned by a small angle; threshold 0.40 is a fraction of the range
 * (`-deskew 40%`). The corners the turn uncovers take the background colour. The angle is found
 * as ImageMagick finds it (deskew_angle()), then the image turned as it turns it: an affine
 * distortion to the best-fitting canvas over the background virtual pixels. */
static int op_deskew(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "deskew";
    double threshold, degrees = 0.0;
    if (job_param_double(p, fn, "threshold", 0.40, 0.0, 1.0, &threshold, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (deskew_angle(w, threshold * QuantumRange, &degrees, e) < 0) {
        return -1;
    }
    char angle[64];
    snprintf(angle, sizeof angle, "%g", degrees);
    double rad = MAGICK_PI * fmod(degrees, 360.0) / 180.0;
    const double affine[6] = {cos(rad), sin(rad), -sin(rad), cos(rad), 0.0, 0.0};
    (void)MagickSetImageVirtualPixelMethod(w, BackgroundVirtualPixelMethod);
    if (MagickSetImageArtifact(w, "deskew:angle", angle) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    double c = fabs(affine[0]), s = fabs(affine[1]);
    double iw = (double)MagickGetImageWidth(w), ih = (double)MagickGetImageHeight(w);
    return op_within_time(w, fn, (iw * c + ih * s + 2.0) * (iw * s + ih * c + 2.0), turn, affine,
                          e);
}

/* ---------------------------------------------------------------- resolution and metadata */

#define TEXT_OF_(x) #x
#define TEXT_OF(x)  TEXT_OF_(x) /* a number's macro as a string literal */

#define BLANKS " \t\n\v\f\r" /* isspace()'s, which job_param_double() skips after a number */

/* Reads dpi as a number or, like the 2014 worker's density string, "XxY"; blanks may come
 * around either number, as around any number parameter (job_param_double()). */
static int dpi_param(json_object *p, const char *fn, double *x, double *y, struct err *e)
{
    const char *s;
    if (job_param_required(p, fn, "dpi", false, e) < 0) {
        return -1;
    }
    job_param_declare(fn, "dpi", "number or \"XxY\"", "each in [1, " TEXT_OF(DPI_LIMIT) "]");
    if (job_param_string(p, fn, "dpi", NULL, &s, e) < 0) {
        return -1;
    }
    if (s == NULL) { /* recorded (job_param_record()): there is no value */
        *x = *y = 1.0;
        return 0;
    }
    /* the separator, found first: strtod() alone reads "0x300" as the hexadecimal 768 */
    const char *sep = strpbrk(s, "xX");
    char *end;
    *x = strtod(s, &end);
    *y = *x;
    if (end != s) {
        end += strspn(end, BLANKS);
    }
    if (sep != NULL && end != sep) {
        end = (char *)s; /* "0x300", "1e2.5x3": the first number does not end at the x */
    } else if (sep != NULL) {
        const char *second = sep + 1;
        *y = strtod(second, &end);
        end =
            end == second || strpbrk(second, "xX") != NULL ? (char *)s : end + strspn(end, BLANKS);
    }
    if (end == s || *end != '\0' || !(*x >= 1.0 && *x <= DPI_MAX) ||
        !(*y >= 1.0 && *y <= DPI_MAX)) {
        return err_set(e,
                       "Invalid parameter 'dpi' for function '%s': expected a number or XxY in "
                       "[1, %g]",
                       fn, DPI_MAX);
    }
    return 0;
}

/* density: sets the resolution in dots per inch (dpi, required), pixels unchanged
 * (`-units PixelsPerInch -density D`). */
static int op_density(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    double x = 0.0, y = 0.0;
    if (dpi_param(p, "density", &x, &y, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (MagickSetImageUnits(w, PixelsPerInchResolution) == MagickFalse) {
        return img_fail(w, "density", e);
    }
    return done(w, MagickSetImageResolution(w, x, y), "density", e);
}

/* convert_to_dpi: dpi 72; the image's resolution in dots per inch (Blitline's worker function
 * drew the image on a new canvas of that density). */
static int op_convert_to_dpi(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "convert_to_dpi";
    long dpi;
    if (job_param_long(p, fn, "dpi", 72, 1, (long)DPI_MAX, &dpi, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (MagickSetImageUnits(w, PixelsPerInchResolution) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return done(w, MagickSetImageResolution(w, (double)dpi, (double)dpi), fn, e);
}

/* interlace: `type` (an ImageMagick interlace name, as the save option; an unknown one is
 * NoInterlace) for the saves of this image and its children that name none. */
static int op_interlace(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *type;
    if (job_param_string(p, "interlace", "type", "NoInterlace", &type, e) < 0) {
        return -1;
    }
    if (strlen(type) > NAME_MAX_LEN) {
        return err_set(e, "Invalid parameter 'type' for function 'interlace': too long");
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickSetImageArtifact(w, IMG_INTERLACE_ARTIFACT, type), "interlace", e);
}

/* Gives the image its resolution in dots per inch: a resolution per centimetre is converted,
 * none at all (or without units) counts as dots per inch, 0 as 72. */
static int to_inches(MagickWand *w, const char *fn, struct err *e)
{
    double x, y;
    if (done(w, MagickGetImageResolution(w, &x, &y), fn, e) < 0) {
        return -1;
    }
    double k = MagickGetImageUnits(w) == PixelsPerCentimeterResolution ? 2.54 : 1.0;
    x = x > 0.0 ? x * k : 72.0;
    y = y > 0.0 ? y * k : 72.0;
    if (done(w, MagickSetImageUnits(w, PixelsPerInchResolution), fn, e) < 0) {
        return -1;
    }
    return done(w, MagickSetImageResolution(w, x, y), fn, e);
}

/* resample: resizes the image so that it keeps its physical size at density (72.0) dots per
 * inch (`-units PixelsPerInch -resample D`). The docs call the parameter amount; their sample
 * and the 2014 worker, density: both are read, density first. ImageMagick alone (and so the
 * 2014 worker) took the density in the image's own unit, a 2.54 times larger image for a
 * resolution in dots per centimetre, as PNG stores it. */
static int op_resample(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "resample";
    double d, rx, ry;
    if (either_double(p, fn, "density", "amount", 72.0, 1.0, DPI_MAX, &d, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (to_inches(w, fn, e) < 0 || done(w, MagickGetImageResolution(w, &rx, &ry), fn, e) < 0) {
        return -1;
    }
    double nw = floor(d * (double)MagickGetImageWidth(w) / rx + 0.5);
    double nh = floor(d * (double)MagickGetImageHeight(w) / ry + 0.5);
    if (nw < 1.0 || nh < 1.0) {
        return err_set(e, "Function '%s' would make a %.0fx%.0f image, smaller than 1x1", fn, nw,
                       nh);
    }
    if (op_check_size(nw, nh, ctx, fn, e) < 0) {
        return -1;
    }
    return done(w, MagickResampleImage(w, d, d, UndefinedFilter, 1.0), fn, e);
}

/* delete_profile: removes the profiles called name (required): "icc", "exif", "8bim", "iptc",
 * "xmp", a glob ("*" for all) or a comma-separated list (`+profile NAME`). The 2014 worker
 * also took the URL of an ICC file, whose downloaded path then matched no profile: such a
 * name changes nothing here either. */
static int op_delete_profile(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "delete_profile";
    const char *name;
    if (job_param_required(p, fn, "name", false, e) < 0) {
        return -1;
    }
    if (job_param_string(p, fn, "name", NULL, &name, e) < 0) {
        return -1;
    }
    if (name == NULL) { /* recorded (job_param_record()): there is no value */
        return 0;
    }
    if (name[0] == '\0' || strlen(name) > PROFILE_NAME_MAX) {
        return err_set(e, "Invalid parameter 'name' for function '%s': expected 1 to %d bytes", fn,
                       PROFILE_NAME_MAX);
    }
    if (strncasecmp(name, "http", 4) == 0) {
        return 0;
    }
    /* ImageMagick matches the glob against each profile name by backtracking, unchecked by the
     * deadline: 8 stars against a PNG's 62-byte profile name ran for minutes; 3 stay within a
     * millisecond */
    size_t stars = 0;
    for (const char *c = name; *c != '\0'; c++) {
        stars += *c == '*';
    }
    if (stars > PROFILE_NAME_STARS) {
        return err_set(e, "Invalid parameter 'name' for function '%s': at most %d '*'", fn,
                       PROFILE_NAME_STARS);
    }
    if (w == NULL) {
        return 0;
    }
    return done(w, MagickProfileImage(w, name, NULL, 0), fn, e);
}

/* add_profile's src (required): a URL string or an {"name": "s3"} object; not an image
 * reference or a canvas, which are no files. */
static int profile_src_param(json_object *p, json_object **src, struct err *e)
{
    const char *fn = "add_profile";
    json_object *kind = NULL;
    *src = NULL;
    job_param_declare(fn, "src", "URL or s3 object", "the ICC profile");
    if (job_param_required(p, fn, "src", false, e) < 0) {
        return -1;
    }
    if (!json_object_object_get_ex(p, "src", src)) {
        return 0; /* recorded (job_param_record()): there is no value */
    }
    bool url =
        json_object_is_type(*src, json_type_string) && json_object_get_string(*src)[0] != '&';
    bool s3 = json_object_is_type(*src, json_type_object) &&
              json_object_object_get_ex(*src, "name", &kind) &&
              json_object_is_type(kind, json_type_string) &&
              strcmp(json_object_get_string(kind), "s3") == 0;
    if (!url && !s3) {
        return err_set(e,
                       "Invalid parameter 'src' for function '%s': expected a URL or an s3 "
                       "object",
                       fn);
    }
    return 0;
}

/* The colour space an ICC profile's header names ("RGB", "GRAY", "CMYK"...), or NULL when the
 * `n` bytes at `icc` are no ICC profile (no "acsp" signature, or a size other than n). */
static const char *icc_space(const unsigned char *icc, size_t n, char out[5])
{
    if (n < 132 || memcmp(icc + 36, "acsp", 4) != 0 ||
        ((size_t)icc[0] << 24 | (size_t)icc[1] << 16 | (size_t)icc[2] << 8 | icc[3]) != n) {
        return NULL;
    }
    for (int i = 0; i < 4; i++) {
        out[i] = icc[16 + i] >= 0x20 && icc[16 + i] < 0x7f ? (char)icc[16 + i] : '?';
    }
    out[4] = '\0';
    for (int i = 3; i > 0 && out[i] == ' '; i--) {
        out[i] = '\0'; /* "RGB " */
    }
    return out;
}

/* Whether lcms can convert from the profile (of colour space `space`: "RGB", "GRAY" or
 * "CMYK"), as it must for an image tagged with it: ImageMagick tags an image without opening
 * the profile, and a broken one would fail only when a later save converts through it. */
static bool icc_usable(const unsigned char *icc, size_t n, const char *space)
{
    cmsUInt32Number format = strcmp(space, "CMYK") == 0   ? TYPE_CMYK_8
                             : strcmp(space, "GRAY") == 0 ? TYPE_GRAY_8
                                                          : TYPE_RGB_8;
    cmsHPROFILE from = cmsOpenProfileFromMem(icc, (cmsUInt32Number)n);
    cmsHPROFILE lab = from != NULL ? cmsCreateLab4Profile(NULL) : NULL;
    cmsHTRANSFORM t = lab != NULL ? cmsCreateTransform(from, format, lab, TYPE_Lab_DBL,
                                                       INTENT_PERCEPTUAL, cmsFLAGS_NOCACHE)
                                  : NULL;
    if (t != NULL) {
        cmsDeleteTransform(t);
    }
    if (lab != NULL) {
        cmsCloseProfile(lab);
    }
    if (from != NULL) {
        cmsCloseProfile(from);
    }
    return t != NULL;
}

/* The ICC colour space of the image's pixels. */
static const char *image_space(MagickWand *w)
{
    ColorspaceType c = MagickGetImageColorspace(w);
    return c == CMYKColorspace ? "CMYK" : c == GRAYColorspace ? "GRAY" : "RGB";
}

/* Checks the `n` profile bytes at `icc` for the image `w` (which has an ICC profile when `had`):
 * 0, or -1 with the reason. */
static int check_profile(MagickWand *w, const unsigned char *icc, size_t n, bool had, long max,
                         struct err *e)
{
    const char *fn = "add_profile";
    char space[5];
    if (n > (size_t)max) {
        return err_set(e,
                       "Invalid parameter 'src' for function '%s': the profile is %zu bytes, more "
                       "than PIXQ_MAX_PROFILE_BYTES (%ld)",
                       fn, n, max);
    }
    if (icc_space(icc, n, space) == NULL) {
        return err_set(e, "Invalid parameter 'src' for function '%s': not an ICC profile", fn);
    }
    if (had) {
        return 0; /* converted to: ImageMagick's transform fails on a profile it cannot use */
    }
    if (strcmp(space, image_space(w)) != 0) {
        return err_set(e,
                       "Invalid parameter 'src' for function '%s': the profile is for %s pixels; "
                       "the image, with no profile to convert from, has %s pixels",
                       fn, space, image_space(w));
    }
    if (!icc_usable(icc, n, space)) {
        return err_set(e, "Invalid parameter 'src' for function '%s': not a usable ICC profile",
                       fn);
    }
    return 0;
}

/* add_profile (Blitline's worker): the ICC profile at src (a URL or an s3 object, at most
 * PIXQ_MAX_PROFILE_BYTES) applied as `convert -profile FILE` applies it: an image with an ICC
 * profile is converted from that profile to this one; one without is tagged with it, which the
 * profile's colour space must then match (an RGB profile for an RGB image...: ImageMagick would
 * tag a grey image with a CMYK profile, and the output would be read through it). A save that
 * drops the profile keeps the pixels as they are then (IMG_ADDED_PROFILE_ARTIFACT). */
static int op_add_profile(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "add_profile";
    json_object *src;
    if (profile_src_param(p, &src, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (ctx->fetch == NULL) {
        return err_set(e, "Function '%s' cannot fetch files here", fn);
    }
    struct buf icc;
    buf_init(&icc, 0);
    if (ctx->fetch(ctx->load_user, src, &icc, e) < 0) {
        buf_finish(&icc);
        return err_wrap(e, "add_profile");
    }
    const unsigned char *data = (const unsigned char *)icc.data;
    size_t had = 0;
    unsigned char *own = MagickGetImageProfile(w, "icc", &had);
    MagickRelinquishMemory(own);
    long max = ctx->max_profile_bytes > 0 ? ctx->max_profile_bytes : PROFILE_MAX_BYTES;
    int rc = check_profile(w, data, icc.len, had > 0, max, e);
    if (rc == 0) {
        rc = done(w, MagickProfileImage(w, "icc", data, icc.len), fn, e);
    }
    if (rc == 0 && MagickSetImageArtifact(w, IMG_ADDED_PROFILE_ARTIFACT, "1") == MagickFalse) {
        rc = img_fail(w, fn, e);
    }
    buf_finish(&icc);
    return rc;
}

/* The stegano watermark's source, watermark_url (required): a string. */
static int watermark_param(json_object *p, json_object **src, struct err *e)
{
    const char *fn = "stegano";
    *src = NULL;
    job_param_declare(fn, "watermark_url", "URL or \"&identifier\"", NULL);
    if (job_param_required(p, fn, "watermark_url", false, e) < 0) {
        return -1;
    }
    if (!json_object_object_get_ex(p, "watermark_url", src)) {
        return 0; /* recorded (job_param_record()): there is no value */
    }
    if (!json_object_is_type(*src, json_type_string)) {
        return err_set(e, "Invalid parameter 'watermark_url' for function '%s': expected a string",
                       fn);
    }
    return 0;
}

/* Loads the stegano watermark `src`. */
static MagickWand *load_watermark(json_object *src, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "stegano";
    if (ctx->load == NULL) {
        err_set(e, "Function '%s' cannot load images here", fn);
        return NULL;
    }
    MagickWand *wm = ctx->load(ctx->load_user, src, e);
    if (wm == NULL) {
        err_wrap(e, "stegano watermark");
    }
    return wm;
}

/* stegano: hides watermark_url (a greyscale image, at most 1 MP) in the low bits of the
 * image, from pixel offset (0) on; ImageMagick's `composite -stegano OFFSET` (read back with
 * `convert -size WxH+OFFSET stegano:FILE`). Only a lossless save keeps it: save as PNG. */
static int op_stegano(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "stegano";
    json_object *src;
    if (w == NULL) { /* offset's range is the image's pixels */
        return job_param_check_number(p, fn, "offset", true, e) < 0 ||
                       watermark_param(p, &src, e) < 0
                   ? -1
                   : 0;
    }
    long pixels = (long)(MagickGetImageWidth(w) * MagickGetImageHeight(w));
    long offset;
    if (job_param_long(p, fn, "offset", 0, 0, pixels - 1, &offset, e) < 0 ||
        watermark_param(p, &src, e) < 0) {
        return -1;
    }
    MagickWand *wm = load_watermark(src, ctx, e);
    if (wm == NULL) {
        return -1;
    }
    if ((long)MagickGetImageWidth(wm) > STEGANO_MAX_PIXELS / (long)MagickGetImageHeight(wm)) {
        DestroyMagickWand(wm);
        return err_set(e,
                       "Invalid parameter 'watermark_url' for function '%s': the watermark "
                       "has more than %ld pixels",
                       fn, STEGANO_MAX_PIXELS);
    }
    MagickWand *out = MagickSteganoImage(w, wm, offset);
    DestroyMagickWand(wm);
    if (out == NULL) {
        return img_fail(w, fn, e);
    }
    int rc = done(w, MagickSetImage(w, out), fn, e);
    DestroyMagickWand(out);
    return rc;
}

/* clang-format off */
const struct op ops_color[] = {
    {"blur", op_blur, false},
    {"sharpen", op_sharpen, false},
    {"adaptive_blur", op_adaptive_blur, false},
    {"adaptive_sharpen", op_adaptive_sharpen, false},
    {"blue_shift", op_blue_shift, true},
    {"threshold", op_threshold, true},
    {"convert_to_dpi", op_convert_to_dpi, false},
    {"interlace", op_interlace, false},
    {"unsharp_mask", op_unsharp_mask, false},
    {"median_filter", op_median_filter, false},
    {"despeckle", op_despeckle, false},
    {"enhance", op_enhance, false},
    {"sepia_tone", op_sepia_tone, true},
    {"gray_colorspace", op_gray_colorspace, false},
    {"modulate", op_modulate, true},
    {"contrast", op_contrast, false},
    {"contrast_stretch_channel", op_contrast_stretch_channel, true},
    {"gamma_channel", op_gamma_channel, true},
    {"level", op_level, true},
    {"levelize", op_levelize, true},
    {"auto_level", op_auto_level, false},
    {"auto_gamma", op_auto_gamma, true},
    {"auto_enhance", op_auto_enhance, true},
    {"equalize", op_equalize, true},
    {"normalize", op_normalize, true},
    {"quantize", op_quantize, false},
    {"vignette", op_vignette, false},
    {"sketch", op_sketch, true},
    {"photograph", op_photograph, true},
    {"pixelate", op_pixelate, false},
    {"deskew", op_deskew, true},
    {"density", op_density, false},
    {"resample", op_resample, false},
    {"delete_profile", op_delete_profile, false},
    {"add_profile", op_add_profile, false},
    {"stegano", op_stegano, false},
    {NULL, NULL, false},
};
/* clang-format on */
