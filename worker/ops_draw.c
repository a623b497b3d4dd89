/* ops_draw: text, drawing and compositing functions (BLITLINE.md 4.2 and 4.3): annotate,
 * watermark, caption, line, rectangle, ellipse, composite, dissolve, append and tile.
 *
 * Text is drawn with ImageMagick's annotate, so `x`, `y` and `gravity` mean what
 * `convert -gravity G -annotate +x+y` means (offsets point inward from the gravity's edges), and
 * the text is drawn as given: no `%` escapes, no `@file`.
 *
 * Fonts. A font name is never handed to ImageMagick as the job spells it (it could be a file
 * path); resolve_font() turns it into an installed fontconfig family, a weight and a style:
 *   - Blitline's defaults Arial and Helvetica (and Liberation Sans, Arimo, sans-serif) become
 *     Nimbus Sans (Debian's fonts-urw-base35, metric-compatible with Helvetica and so with
 *     Arial); Times / Times New Roman / serif become Nimbus Roman, Courier / Courier New /
 *     monospace Nimbus Mono PS, and the PostScript names (AvantGarde, Bookman, Palatino,
 *     NewCenturySchlbk, ZapfChancery) their URW equivalents: see font_aliases[];
 *   - any other installed family is used by name: "DejaVu-Sans-Bold" is DejaVu Sans, bold;
 *   - anything else (unknown, or not a plain name) is Nimbus Sans, or DejaVu Sans (fontconfig's
 *     own dependency) where fonts-urw-base35 is missing, and font_missing says so in the log.
 * A weight or style word at the end of the name ("-Bold", "-Italic", "-Light") wins over the
 * font_weight and style parameters. Of a family, pick_face() takes the TrueType or OpenType file
 * closest to the weight, style and stretch, and hands ImageMagick that file (from its own font
 * list), so that `convert -font NimbusSans-Bold` draws the same.
 *
 * Other images (composite, dissolve, append, tile) come through ctx->load; a failure names the
 * src. Costs are bounded: text length and text length x point size^2 (the glyphs rasterised),
 * stroke widths, coordinates, radii (twice the image's larger side: ImageMagick's curves cost
 * memory per pixel of radius), the number of images append loads, and every image made here
 * against ctx->max_pixels. Layers (watermark, drop shadow, caption) are at most the image's size;
 * tile composites one row of tiles, then that row down the image, so that a tiny tile does not
 * mean a composite per tile. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "ops.h"
#include "source.h"

#define MAX_TEXT_BYTES    1000    /* longest text, bytes */
#define MAX_POINT_SIZE    1000.0  /* largest point size */
#define MAX_TEXT_INK      1.0e8   /* text bytes x point size^2: bounds the glyphs rasterised */
#define MAX_KERNING       1000.0  /* largest kerning either way, pixels */
#define MAX_STROKE_WIDTH  1000.0  /* widest line or outline, pixels */
#define MAX_COORD         65535.0 /* coordinates lie within +-MAX_COORD (OP_MAX_SIDE), pixels */
#define MAX_SHADOW_OFFSET 1000L   /* largest drop shadow offset either way, pixels */
#define MAX_PERCENT       1000.0  /* largest "N%" size */
#define MAX_OTHER_IMAGES  10      /* most images one append loads */
#define MAX_NAME_BYTES    64      /* longest font or operator name, bytes */
#define MITER_REACH                                                                                \
    6.0 /* an outline reaches at most this times its width past a shape (miter limit 10: 5) */
#define DRAW_BAND_PIXELS                                                                           \
    1048576L /* line, rectangle, ellipse: pixels drawn between looks at the deadline */
#define MAX_FACE_PATH    512 /* longest font file path kept, bytes with the NUL */
#define MISSING_SAID_MAX 32  /* font names said missing (font_missing), a process */

#define DEFAULT_FONT    "Helvetica"   /* Blitline's default font_family */
#define DEFAULT_FAMILY  "Nimbus Sans" /* what Helvetica and Arial become */
#define FALLBACK_FAMILY "DejaVu Sans" /* where fonts-urw-base35 is missing */
#define DEFAULT_WEIGHT  700           /* Blitline's font_weight default: bold */

#define ANNOTATE_POINTS   32.0      /* annotate point_size default */
#define CAPTION_POINTS    32.0      /* caption point_size when the box has no height to fill */
#define WATERMARK_POINTS  94.0      /* watermark point_size default */
#define WATERMARK_OPACITY 0.45      /* watermark opacity default */
#define WATERMARK_SHADOW  "#555555" /* watermark's shadow, 1 pixel down and right of the text */
#define SHADOW_OFFSET     3L        /* annotate dropshadow_offset default (doc), pixels */
#define SHADOW_SIGMA      1.0       /* blur of annotate's drop shadow */
/* pixels around its text that the drop shadow's blur reaches, and more: ImageMagick's kernel for
 * sigma 1 has a radius of 5 at most (Q16), applied across then down */
#define SHADOW_REACH 16L

/* ---------------------------------------------------------------- parameters */

static int missing(const char *fn, const char *name, struct err *e)
{
    return err_set(e, "Missing parameter '%s' for function '%s'", name, fn);
}

static int invalid(const char *fn, const char *name, const char *why, struct err *e)
{
    return err_set(e, "Invalid parameter '%s' for function '%s': %s", name, fn, why);
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

/* Of two names for one parameter, the one the params use (`a` when they use neither). */
static const char *either(json_object *p, const char *fn, const char *a, const char *b)
{
    job_param_alias(fn, a, b);
    return job_param_present(p, a) || !job_param_present(p, b) ? a : b;
}

/* An object parameter, or NULL when it is absent. */
static int object_param(json_object *p, const char *fn, const char *name, json_object **out,
                        struct err *e)
{
    *out = NULL;
    job_param_declare(fn, name, "object", NULL);
    if (!job_param_present(p, name)) {
        return 0;
    }
    if (job_param_recording()) {
        *out = p; /* its members are read from the (empty) params, named "name.member" */
        return 0;
    }
    json_object_object_get_ex(p, name, out);
    if (!json_object_is_type(*out, json_type_object)) {
        *out = NULL;
        return invalid(fn, name, "expected an object {\"width\", \"height\"}", e);
    }
    return 0;
}

/* The value of the ImageMagick option name `s` (letters only) in table `kind`, or -1. */
static long option_value(CommandOption kind, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > MAX_NAME_BYTES) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalpha((unsigned char)s[i])) {
            return -1;
        }
    }
    return (long)ParseCommandOption(kind, MagickFalse, s);
}

static long width_of(MagickWand *w)
{
    return (long)MagickGetImageWidth(w);
}

static long height_of(MagickWand *w)
{
    return (long)MagickGetImageHeight(w);
}

/* A transparent w x h image to put on `of`, under the deadline of `of` (img_layer()). */
static MagickWand *new_layer(MagickWand *of, long w, long h, const char *fn, struct err *e)
{
    PixelWand *none = NewPixelWand();
    MagickWand *layer = NULL;
    if (PixelSetColor(none, "none") == MagickFalse) {
        err_set(e, "%s: cannot make a transparent layer", fn);
    } else {
        layer = img_layer(of, w, h, none, e);
    }
    DestroyPixelWand(none);
    return layer;
}

/* Makes `layer`, a new sRGB image to put on `w`, CMYK too when `w` is: ImageMagick's composite
 * only relabels its source as the image's colorspace, and the black channel it then reads was
 * never written (valgrind: uninitialised values from the heap into the output, which differed
 * run to run), while the colours themselves would be read as cyan, magenta and yellow. A CMYK
 * layer (a CMYK JPEG logo, tile or other image) put on an image that is not CMYK is made sRGB:
 * its inks were read as red, green and blue (it came out as a negative, its black lost). */
static int match_colorspace(MagickWand *w, MagickWand *layer, const char *fn, struct err *e)
{
    bool cmyk = MagickGetImageColorspace(w) == CMYKColorspace;
    if (cmyk == (MagickGetImageColorspace(layer) == CMYKColorspace)) {
        return 0;
    }
    if (MagickTransformImageColorspace(layer, cmyk ? CMYKColorspace : sRGBColorspace) ==
        MagickFalse) {
        return img_fail(layer, fn, e);
    }
    return 0;
}

/* Puts `layer`, a transparent sRGB layer of w's size with what was drawn for `w` on it, Over `w`,
 * made CMYK first. ImageMagick draws a colour's red, green and blue into a CMYK image's cyan,
 * magenta and yellow and leaves its black as it was (red text or a red rectangle came out cyan,
 * darkened by the black under it): on a CMYK image, text and shapes are drawn on such a layer. */
static int put_drawn(MagickWand *w, MagickWand *layer, const char *fn, struct err *e)
{
    if (match_colorspace(w, layer, fn, e) < 0) {
        return -1;
    }
    if (MagickCompositeImage(w, layer, OverCompositeOp, 0, 0) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    return 0;
}

/* ---------------------------------------------------------------- fonts */

/* Words at the end of a font name that set its weight (0: unchanged) or style (-1: unchanged). */
/* clang-format off */
static const struct {
    const char *word;
    size_t weight;
    int style;
} font_words[] = {
    {"thin", 100, -1},      {"extralight", 200, -1}, {"ultralight", 200, -1}, {"light", 300, -1},
    {"normal", 400, -1},    {"regular", 400, -1},    {"book", 400, -1},       {"medium", 500, -1},
    {"semibold", 600, -1},  {"demibold", 600, -1},   {"demi", 600, -1},       {"bold", 700, -1},
    {"extrabold", 800, -1}, {"ultrabold", 800, -1},  {"black", 900, -1},      {"heavy", 900, -1},
    {"italic", 0, ItalicStyle},       {"oblique", 0, ObliqueStyle},
    {"bolditalic", 700, ItalicStyle}, {"boldoblique", 700, ObliqueStyle},
};

/* Font names (lower case, words separated by one space) and the installed family they use. */
static const struct {
    const char *name;
    const char *family;
} font_aliases[] = {
    {"arial", DEFAULT_FAMILY},        {"helvetica", DEFAULT_FAMILY},
    {"helvetica neue", DEFAULT_FAMILY}, {"liberation sans", DEFAULT_FAMILY},
    {"arimo", DEFAULT_FAMILY},        {"sans", DEFAULT_FAMILY},
    {"sans serif", DEFAULT_FAMILY},
    {"arial narrow", "Nimbus Sans Narrow"}, {"helvetica narrow", "Nimbus Sans Narrow"},
    {"liberation sans narrow", "Nimbus Sans Narrow"},
    {"times", "Nimbus Roman"},        {"times roman", "Nimbus Roman"},
    {"times new roman", "Nimbus Roman"}, {"liberation serif", "Nimbus Roman"},
    {"tinos", "Nimbus Roman"},        {"serif", "Nimbus Roman"},
    {"courier", "Nimbus Mono PS"},    {"courier new", "Nimbus Mono PS"},
    {"liberation mono", "Nimbus Mono PS"}, {"cousine", "Nimbus Mono PS"},
    {"monospace", "Nimbus Mono PS"},
    {"avantgarde", "URW Gothic"},     {"avant garde", "URW Gothic"},
    {"bookman", "URW Bookman"},       {"palatino", "P052"},
    {"newcenturyschlbk", "C059"},     {"new century schoolbook", "C059"},
    {"century schoolbook", "C059"},   {"zapfchancery", "Z003"},
    {"zapf chancery", "Z003"},
};
/* clang-format on */

struct text_style {
    char face[MAX_FACE_PATH]; /* the font file; "": ImageMagick's default face */
    size_t weight;            /* 100 to 900 */
    StyleType style;
    StretchType stretch;
    double point_size; /* 0: caption fits the text to its box */
    double kerning;    /* pixels between letters, when has_kerning */
    bool has_kerning;
};

/* Whether a font of ImageMagick's list is a TrueType or OpenType file (they load ten times
 * faster than Type 1 fonts, which matters to caption's measuring). */
static bool outline_font(const TypeInfo *t)
{
    size_t n = t->glyphs != NULL ? strlen(t->glyphs) : 0;
    return n > 4 && n < MAX_FACE_PATH &&
           (strcasecmp(t->glyphs + n - 4, ".otf") == 0 ||
            strcasecmp(t->glyphs + n - 4, ".ttf") == 0);
}

/* A stretch's place from ultra-condensed (1) through normal (5) to ultra-expanded (9). */
static long stretch_rank(StretchType s)
{
    if (s < UltraCondensedStretch || s > UltraExpandedStretch) {
        return 5;
    }
    return s <= SemiCondensedStretch ? (long)s - 1 : (long)s;
}

/* How far a font is from the wanted weight, style and stretch (0: the same). */
static long font_distance(const TypeInfo *t, const struct text_style *ts)
{
    bool slanted = t->style == ItalicStyle || t->style == ObliqueStyle;
    bool want_slanted = ts->style == ItalicStyle || ts->style == ObliqueStyle;
    long d = labs((long)t->weight - (long)ts->weight);
    d += t->style == ts->style ? 0 : (slanted == want_slanted ? 50 : 1000);
    return d + 100 * labs(stretch_rank(t->stretch) - stretch_rank(ts->stretch));
}

/* Sets ts->face to the closest TrueType or OpenType font of `family` (case-insensitive) in
 * ImageMagick's font list (fontconfig's fonts). Returns false if the family has none. */
static bool pick_face(const char *family, struct text_style *ts)
{
    size_t n = 0;
    ExceptionInfo *ex = AcquireExceptionInfo();
    const TypeInfo **list = GetTypeInfoList("*", &n, ex);
    const TypeInfo *best = NULL;
    long best_d = 0;
    for (size_t i = 0; list != NULL && i < n; i++) {
        if (list[i]->family == NULL || strcasecmp(list[i]->family, family) != 0 ||
            !outline_font(list[i])) {
            continue;
        }
        long d = font_distance(list[i], ts);
        if (best == NULL || d < best_d) {
            best = list[i];
            best_d = d;
        }
    }
    if (best != NULL) {
        snprintf(ts->face, sizeof ts->face, "%s", best->glyphs);
    }
    if (list != NULL) {
        RelinquishMagickMemory((void *)list);
    }
    DestroyExceptionInfo(ex);
    return best != NULL;
}

/* Copies `name` into `out` in lower case with '-', '_' and runs of spaces as one space. Returns
 * -1 if it is empty, too long or holds anything but letters, digits, those and '.'. */
static int normalize_font(const char *name, char *out)
{
    size_t n = 0;
    for (const char *s = name; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool sep = c == ' ' || c == '-' || c == '_';
        if (!sep && !isalnum(c) && c != '.') {
            return -1;
        }
        if (sep && (n == 0 || out[n - 1] == ' ')) {
            continue;
        }
        if (n == MAX_NAME_BYTES) {
            return -1;
        }
        out[n++] = sep ? ' ' : (char)tolower(c);
    }
    while (n > 0 && out[n - 1] == ' ') {
        n--;
    }
    out[n] = '\0';
    return n > 0 ? 0 : -1;
}

/* Takes weight and style words off the end of a normalized name, applying them to `ts`. */
static void strip_font_words(char *name, struct text_style *ts)
{
    char *last = strrchr(name, ' ');
    while (last != NULL) {
        size_t i = 0;
        size_t n = sizeof font_words / sizeof font_words[0];
        while (i < n && strcmp(last + 1, font_words[i].word) != 0) {
            i++;
        }
        if (i == n) {
            return;
        }
        ts->weight = font_words[i].weight != 0 ? font_words[i].weight : ts->weight;
        ts->style = font_words[i].style >= 0 ? (StyleType)font_words[i].style : ts->style;
        *last = '\0';
        last = strrchr(name, ' ');
    }
}

/* Logs that the font a job named is not drawn, and what is drawn instead (font_missing, the run's
 * job_id on the line): once a process for each of the first MISSING_SAID_MAX names. */
static void say_missing(const char *name, const char *used)
{
    static char said[MISSING_SAID_MAX][MAX_NAME_BYTES + 1];
    static size_t n_said;
    char cut[MAX_NAME_BYTES + 1];
    snprintf(cut, sizeof cut, "%s", name);
    for (size_t i = 0; i < n_said; i++) {
        if (strcmp(said[i], cut) == 0) {
            return;
        }
    }
    if (n_said == MISSING_SAID_MAX) {
        return;
    }
    memcpy(said[n_said++], cut, sizeof cut);
    char qn[2 * MAX_NAME_BYTES + 8], qu[2 * MAX_NAME_BYTES + 8];
    LOG_WARN("font_missing", "font=%s drawn_in=%s", log_quote(cut, qn, sizeof qn),
             log_quote(used, qu, sizeof qu));
}

/* Sets ts->face (and maybe weight and style) from a font name; see the file comment. */
static void resolve_font(const char *name, struct text_style *ts)
{
    char buf[MAX_NAME_BYTES + 1];
    const char *want = DEFAULT_FAMILY;
    bool plain = normalize_font(name, buf) == 0;
    if (plain) {
        strip_font_words(buf, ts);
        want = buf;
        for (size_t i = 0; i < sizeof font_aliases / sizeof font_aliases[0]; i++) {
            if (strcmp(buf, font_aliases[i].name) == 0) {
                want = font_aliases[i].family;
                break;
            }
        }
    }
    ts->face[0] = '\0';
    const char *used = want;
    if (!pick_face(want, ts)) {
        used = pick_face(DEFAULT_FAMILY, ts)    ? DEFAULT_FAMILY
               : pick_face(FALLBACK_FAMILY, ts) ? FALLBACK_FAMILY
                                                : "ImageMagick's default font";
    }
    if (!plain || used != want) {
        say_missing(name, used);
    }
}

/* font_weight (or the worker's `weight`): "bold", "normal"..., or 100 to 900. */
static int read_weight(json_object *p, const char *fn, size_t *out, struct err *e)
{
    const char *key = either(p, fn, "font_weight", "weight");
    const char *s = NULL;
    *out = DEFAULT_WEIGHT;
    job_param_declare(fn, key, "name or integer", "\"bold\", \"normal\"... or 100 to 900");
    if (job_param_string(p, fn, key, NULL, &s, e) < 0) {
        return -1;
    }
    if (s == NULL) {
        return 0;
    }
    if (isdigit((unsigned char)s[0]) || s[0] == '+' || s[0] == '-' || s[0] == '.') {
        long w;
        if (job_param_long(p, fn, key, DEFAULT_WEIGHT, 100, 900, &w, e) < 0) {
            return -1;
        }
        *out = (size_t)w;
        return 0;
    }
    for (size_t i = 0; i < sizeof font_words / sizeof font_words[0]; i++) {
        if (font_words[i].weight != 0 && strcasecmp(s, font_words[i].word) == 0) {
            *out = font_words[i].weight;
        }
    }
    return 0; /* an unknown name keeps the default, as in Blitline */
}

/* Reads font (or font_family), font_weight (or weight), style, stretch, point_size (default
 * `points`) and kerning. Unknown style and stretch names are normal, as in Blitline. The font is
 * looked for (ts->face) when `resolve`, which only the run needs (a font name is never wrong). */
static int read_text_style(json_object *p, const char *fn, double points, bool resolve,
                           struct text_style *ts, struct err *e)
{
    const char *font, *style, *stretch;
    if (job_param_string(p, fn, either(p, fn, "font", "font_family"), DEFAULT_FONT, &font, e) < 0 ||
        job_param_string(p, fn, "style", "normal", &style, e) < 0 ||
        job_param_string(p, fn, "stretch", "normal", &stretch, e) < 0 ||
        job_param_double(p, fn, "point_size", points, 1.0, MAX_POINT_SIZE, &ts->point_size, e) <
            0 ||
        job_param_double(p, fn, "kerning", 0.0, -MAX_KERNING, MAX_KERNING, &ts->kerning, e) < 0 ||
        read_weight(p, fn, &ts->weight, e) < 0) {
        return -1;
    }
    ts->has_kerning = job_param_present(p, "kerning");
    long v = option_value(MagickStyleOptions, style);
    ts->style = v < 0 || v == AnyStyle ? NormalStyle : (StyleType)v;
    v = option_value(MagickStretchOptions, stretch);
    ts->stretch = v < 0 || v == AnyStretch ? NormalStretch : (StretchType)v;
    if (resolve) {
        resolve_font(font, ts);
    }
    return 0;
}

/* ---------------------------------------------------------------- text */

/* What annotate, watermark and caption draw. */
struct text {
    const char *text; /* borrowed from the job (caption: its wrapped copy) */
    struct text_style ts;
    GravityType gravity;
    long x, y;         /* offsets, as -annotate +x+y */
    long box_w, box_h; /* annotate's width and height: the box the text is placed in (0 x 0: the
                          image), at x, y */
    PixelWand *color;  /* owned */
    PixelWand *stroke; /* owned; NULL: none */
};

static void text_finish(struct text *t)
{
    if (t->color != NULL) {
        t->color = DestroyPixelWand(t->color);
    }
    if (t->stroke != NULL) {
        t->stroke = DestroyPixelWand(t->stroke);
    }
}

/* The required `text`, at most MAX_TEXT_BYTES long. */
static int read_text(json_object *p, const char *fn, const char **out, struct err *e)
{
    if (job_param_required(p, fn, "text", false, e) < 0) {
        return -1;
    }
    if (job_param_string(p, fn, "text", "", out, e) < 0) {
        return -1;
    }
    if (strlen(*out) > MAX_TEXT_BYTES) {
        return err_set(e, "Invalid parameter 'text' for function '%s': longer than %d bytes", fn,
                       MAX_TEXT_BYTES);
    }
    return 0;
}

/* Refuses text whose glyphs at `points` would take too long to rasterise. */
static int check_ink(const char *text, double points, const char *fn, struct err *e)
{
    if ((double)strlen(text) * points * points > MAX_TEXT_INK) {
        return err_set(e,
                       "Invalid parameter 'point_size' for function '%s': %g points is too large "
                       "for %zu bytes of text",
                       fn, points, strlen(text));
    }
    return 0;
}

/* annotate's and caption's parameters: text, style (its font looked for when `resolve`),
 * gravity (`gravity_key`), x, y, color and stroke. t's colours are set even on failure: release
 * them with text_finish(). */
static int read_text_params(json_object *p, const char *fn, double points, const char *gravity_key,
                            bool resolve, struct text *t, struct err *e)
{
    if (read_text(p, fn, &t->text, e) < 0 ||
        read_text_style(p, fn, points, resolve, &t->ts, e) < 0 ||
        op_gravity(p, fn, gravity_key, &t->gravity, e) < 0 ||
        job_param_long(p, fn, "x", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &t->x, e) < 0 ||
        job_param_long(p, fn, "y", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &t->y, e) < 0) {
        return -1;
    }
    if (t->ts.point_size > 0 && check_ink(t->text, t->ts.point_size, fn, e) < 0) {
        return -1;
    }
    t->color = op_color(p, fn, "color", "#ffffff", e);
    if (t->color == NULL) {
        return -1;
    }
    if (job_param_present(p, "stroke")) {
        t->stroke = op_color(p, fn, "stroke", "transparent", e);
        return t->stroke == NULL ? -1 : 0;
    }
    return 0;
}

/* A DrawingWand for t's style and stroke, filled with `fill`; NULL if out of memory. */
static DrawingWand *text_wand(const struct text *t, const PixelWand *fill)
{
    DrawingWand *d = NewDrawingWand();
    if (d == NULL) {
        return NULL;
    }
    MagickBooleanType ok =
        t->ts.face[0] != '\0' ? DrawSetFont(d, t->ts.face) : DrawSetFontFamily(d, DEFAULT_FAMILY);
    if (ok == MagickFalse) {
        return DestroyDrawingWand(d);
    }
    DrawSetFontWeight(d, t->ts.weight);
    DrawSetFontStyle(d, t->ts.style);
    DrawSetFontStretch(d, t->ts.stretch);
    DrawSetFontSize(d, t->ts.point_size);
    if (t->ts.has_kerning) {
        DrawSetTextKerning(d, t->ts.kerning);
    }
    DrawSetFillColor(d, fill);
    if (t->stroke != NULL) {
        DrawSetStrokeColor(d, t->stroke);
    }
    DrawSetGravity(d, t->gravity);
    return d;
}

/* MagickAnnotateImage() with the box of width x height at (x, y) that RMagick's
 * Draw#annotate(img, width, height, x, y, text), and so Blitline's annotate, gave ImageMagick
 * (geometry WxH+X+Y): gravity places the text in that box rather than in the whole image. The
 * reason of a failure is the image's. */
static int annotate_in_box(MagickWand *w, const DrawingWand *d, const struct text *t, double x,
                           double y, const char *fn, struct err *e)
{
    DrawInfo *info = PeekDrawingWand(d);
    if (info == NULL) {
        return err_set(e, "%s: out of memory", fn);
    }
    char geometry[128];
    snprintf(geometry, sizeof geometry, "%ldx%ld%+g%+g", t->box_w, t->box_h, x, y);
    (void)CloneString(&info->text, t->text);
    (void)CloneString(&info->geometry, geometry);
    Image *im = GetImageFromMagickWand(w);
    MagickBooleanType ok = AnnotateImage(im, info);
    DestroyDrawInfo(info);
    if (ok != MagickFalse) {
        return 0;
    }
    if (img_past_deadline(w) || im->exception.reason == NULL) {
        return img_fail(w, fn, e);
    }
    char words[ERR_MSG_MAX];
    return err_set(e, "%s: %s", fn, img_magick_words(im->exception.reason, words, sizeof words));
}

/* Draws t->text on `w` in `fill` at t->gravity, moved by (x, y) as -annotate +x+y, or placed in
 * t's box at (x, y). */
static int draw_text(MagickWand *w, const struct text *t, const PixelWand *fill, double x, double y,
                     const char *fn, struct err *e)
{
    if (MagickGetImageColorspace(w) == CMYKColorspace) {
        MagickWand *layer = new_layer(w, width_of(w), height_of(w), fn, e);
        if (layer == NULL) {
            return -1;
        }
        int rc = draw_text(layer, t, fill, x, y, fn, e);
        rc = rc == 0 ? put_drawn(w, layer, fn, e) : rc;
        DestroyMagickWand(layer);
        return rc;
    }
    DrawingWand *d = text_wand(t, fill);
    if (d == NULL) {
        return err_set(e, "%s: out of memory", fn);
    }
    int rc = 0;
    if (t->box_w > 0 || t->box_h > 0) {
        rc = annotate_in_box(w, d, t, x, y, fn, e);
    } else if (MagickAnnotateImage(w, d, x, y, 0.0, t->text) == MagickFalse) {
        rc = img_fail(w, fn, e);
    }
    DestroyDrawingWand(d);
    return rc;
}

/* The -annotate x offset that moves text `d` pixels right at gravity `g` (offsets point inward
 * from the east edge), and the y offset that moves it `d` pixels down. */
static long right_by(GravityType g, long d)
{
    return g == NorthEastGravity || g == EastGravity || g == SouthEastGravity ? -d : d;
}

static long down_by(GravityType g, long d)
{
    return g == SouthWestGravity || g == SouthGravity || g == SouthEastGravity ? -d : d;
}

/* Puts `layer` (the image's size) on `w` with DissolveCompositeOp: the layer's alpha times
 * `src`, w's times `dst` (both 0 to 1), as `-compose dissolve -define compose:args=SxD`. */
static int dissolve_layer(MagickWand *w, MagickWand *layer, double src, double dst, long x, long y,
                          const char *fn, struct err *e)
{
    char args[64];
    snprintf(args, sizeof args, "%gx%g", 100.0 * src, 100.0 * dst);
    if (MagickSetImageArtifact(w, "compose:args", args) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    if (MagickSetImageArtifact(layer, "compose:args", args) == MagickFalse) {
        return img_fail(layer, fn, e);
    }
    int rc = match_colorspace(w, layer, fn, e);
    if (rc == 0 && MagickCompositeImage(w, layer, DissolveCompositeOp, x, y) == MagickFalse) {
        rc = img_fail(w, fn, e);
    }
    if (MagickDeleteImageArtifact(w, "compose:args") == MagickFalse && rc == 0) {
        rc = img_fail(w, fn, e);
    }
    return rc;
}

/* The part of watermark and caption that grows with the image: a transparent layer of box_w x
 * box_h made (ImageMagick fills it without looking at the deadline, on disk beyond
 * PIXQ_MAGICK_MEMORY_MB) and put on an image of cols x rows. The text drawn on it does not grow
 * with the image (check_ink() bounds it). */
struct layer_cost {
    double box_w, box_h, cols, rows;
    double opacity; /* < 0: put Over, else dissolved at this opacity */
};

/* op_run_fn: the layer of `arg` (a struct layer_cost), scaled as `w` is to the whole image, made
 * and put on `w`. */
static MagickBooleanType layer_run(MagickWand *w, const void *arg)
{
    const struct layer_cost *c = arg;
    double lw = ceil(c->box_w * (double)width_of(w) / c->cols);
    double lh = ceil(c->box_h * (double)height_of(w) / c->rows);
    struct err e;
    MagickWand *layer = new_layer(w, (long)fmax(lw, 1.0), (long)fmax(lh, 1.0), "layer", &e);
    if (layer == NULL) {
        return MagickFalse;
    }
    int rc = c->opacity >= 0.0 ? dissolve_layer(w, layer, c->opacity, 1.0, 0, 0, "layer", &e)
             : match_colorspace(w, layer, "layer", &e) == 0 &&
                     MagickCompositeImage(w, layer, OverCompositeOp, 0, 0) == MagickTrue
                 ? 0
                 : -1;
    DestroyMagickWand(layer);
    return rc == 0 ? MagickTrue : MagickFalse;
}

/* Refuses, when the time left might be short, a layer of box_w x box_h on `w` that would not be
 * made and put on in time (timed on a sample: op_fits_in_time()). */
static int layer_fits_in_time(MagickWand *w, double box_w, double box_h, double opacity,
                              const char *fn, struct err *e)
{
    struct layer_cost c = {box_w, box_h, (double)width_of(w), (double)height_of(w), opacity};
    return op_fits_in_time(w, fn, c.cols * c.rows, layer_run, &c, e);
}

/* Whether the pixel of `w` at x, y is fully transparent. */
static bool clear_at(MagickWand *w, long x, long y)
{
    PixelWand *p = NewPixelWand();
    bool clear = MagickGetImagePixelColor(w, x, y, p) == MagickTrue && PixelGetAlpha(p) == 0.0;
    DestroyPixelWand(p);
    return clear;
}

/* The part of the drop shadow's full-size `*layer` that its blur can change: the box of the text
 * drawn on it grown by SHADOW_REACH on every side (within the layer). A blur of the whole layer
 * makes two more images of its size, which past PIXQ_MAGICK_MEMORY_MB and PIXQ_MAGICK_MAP_MB
 * ImageMagick keeps on disk (a 5000x5000 image: over 60 s instead of 2); the pixels beyond that
 * box stay transparent, and put on the image Over change nothing. `*layer` becomes that part
 * (NULL: no text on the layer, nothing to blur or put on), whose place on the image is *x, *y;
 * it stays whole when its corners are not clear (ImageMagick's search for the box compares
 * with them). Returns 0, or -1 with the reason. */
static int shadow_part(MagickWand **layer, long *x, long *y, const char *fn, struct err *e)
{
    long W = width_of(*layer), H = height_of(*layer);
    *x = 0;
    *y = 0;
    if (!clear_at(*layer, 0, 0) || !clear_at(*layer, W - 1, 0) || !clear_at(*layer, 0, H - 1) ||
        !clear_at(*layer, W - 1, H - 1)) {
        return 0;
    }
    ExceptionInfo *ex = AcquireExceptionInfo();
    RectangleInfo box = GetImageBoundingBox(GetImageFromMagickWand(*layer), ex);
    DestroyExceptionInfo(ex);
    if (box.width == 0 || box.height == 0 || box.x >= W || box.y >= H) {
        DestroyMagickWand(*layer); /* all clear: nothing drawn */
        *layer = NULL;
        return 0;
    }
    long x0 = (long)box.x - SHADOW_REACH, y0 = (long)box.y - SHADOW_REACH;
    long x1 = (long)box.x + (long)box.width + SHADOW_REACH;
    long y1 = (long)box.y + (long)box.height + SHADOW_REACH;
    x0 = x0 > 0 ? x0 : 0;
    y0 = y0 > 0 ? y0 : 0;
    x1 = x1 < W ? x1 : W;
    y1 = y1 < H ? y1 : H;
    if (x0 == 0 && y0 == 0 && x1 == W && y1 == H) {
        return 0;
    }
    MagickWand *part = op_region(*layer, x1 - x0, y1 - y0, x0, y0);
    if (part == NULL) {
        return img_fail(*layer, fn, e);
    }
    DestroyMagickWand(*layer);
    *layer = part;
    *x = x0;
    *y = y0;
    return 0;
}

/* annotate's drop shadow: the text in dropshadow_color, dropshadow_offset pixels down and right
 * of it, on a transparent layer blurred with sigma 1 and composited under the text. With `w`
 * NULL, its parameters are checked only. */
static int drop_shadow(MagickWand *w, json_object *p, const struct text *t, const char *fn,
                       struct err *e)
{
    long off;
    if (job_param_long(p, fn, "dropshadow_offset", SHADOW_OFFSET, -MAX_SHADOW_OFFSET,
                       MAX_SHADOW_OFFSET, &off, e) < 0) {
        return -1;
    }
    PixelWand *color;
    int go = op_color_for(w, p, fn, "dropshadow_color", "#000000", &color, e);
    if (go <= 0) {
        return go;
    }
    MagickWand *layer = new_layer(w, width_of(w), height_of(w), fn, e);
    int rc = layer != NULL ? 0 : -1;
    if (rc == 0) {
        rc = draw_text(layer, t, color, t->x + right_by(t->gravity, off),
                       t->y + down_by(t->gravity, off), fn, e);
    }
    long x = 0, y = 0;
    if (rc == 0) {
        rc = shadow_part(&layer, &x, &y, fn, e);
    }
    if (rc == 0 && layer != NULL &&
        MagickBlurImageChannel(layer, AllChannels, 0.0, SHADOW_SIGMA) == MagickFalse) {
        rc = img_fail(layer, fn, e);
    }
    if (rc == 0 && layer != NULL) {
        rc = match_colorspace(w, layer, fn, e);
    }
    if (rc == 0 && layer != NULL &&
        MagickCompositeImage(w, layer, OverCompositeOp, x, y) == MagickFalse) {
        rc = img_fail(w, fn, e);
    }
    if (layer != NULL) {
        DestroyMagickWand(layer);
    }
    DestroyPixelWand(color);
    return rc;
}

/* annotate: draws text (required) at gravity (Center) moved by x, y, in color (#ffffff), with
 * an optional stroke colour and a drop shadow when dropshadow_color is given. Defaults: bold
 * Helvetica (Nimbus Sans), 32 points. With the worker's width and height (0 each: none), gravity
 * places the text in the box of that size whose corner is at x, y. */
static int op_annotate(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "annotate";
    struct text t = {0};
    int rc = read_text_params(p, fn, ANNOTATE_POINTS, "gravity", w != NULL, &t, e);
    if (rc == 0 && (job_param_long(p, fn, "width", 0, 0, OP_MAX_SIDE, &t.box_w, e) < 0 ||
                    job_param_long(p, fn, "height", 0, 0, OP_MAX_SIDE, &t.box_h, e) < 0)) {
        rc = -1;
    }
    if (rc == 0 && job_param_present(p, "dropshadow_color")) {
        rc = drop_shadow(w, p, &t, fn, e);
    }
    if (rc == 0 && w != NULL) {
        rc = draw_text(w, &t, t.color, t.x, t.y, fn, e);
    }
    text_finish(&t);
    return rc;
}

/* The watermark layer: the text in #555555 one pixel down and right, then in white. */
static int watermark_layer(MagickWand *layer, const struct text *t, const char *fn, struct err *e)
{
    PixelWand *shadow = NewPixelWand(), *white = NewPixelWand();
    int rc = 0;
    if (PixelSetColor(shadow, WATERMARK_SHADOW) == MagickFalse ||
        PixelSetColor(white, "#ffffff") == MagickFalse) {
        rc = err_set(e, "%s: cannot set the text colours", fn);
    }
    if (rc == 0) {
        rc = draw_text(layer, t, shadow, right_by(t->gravity, 1), down_by(t->gravity, 1), fn, e);
    }
    if (rc == 0) {
        rc = draw_text(layer, t, white, 0, 0, fn, e);
    }
    DestroyPixelWand(shadow);
    DestroyPixelWand(white);
    return rc;
}

/* watermark: text (required) at gravity (Center), bold Helvetica (Nimbus Sans) of point_size
 * (94), white over a #555555 shadow, drawn on a transparent layer dissolved over the image at
 * opacity (0.45). The image itself stays opaque (Blitline's 2014 worker also faded it to 75%). */
static int op_watermark(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "watermark";
    struct text t = {0};
    double opacity;
    if (read_text(p, fn, &t.text, e) < 0 ||
        read_text_style(p, fn, WATERMARK_POINTS, w != NULL, &t.ts, e) < 0 ||
        op_gravity(p, fn, "gravity", &t.gravity, e) < 0 ||
        job_param_double(p, fn, "opacity", WATERMARK_OPACITY, 0.0, 1.0, &opacity, e) < 0 ||
        check_ink(t.text, t.ts.point_size, fn, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    if (layer_fits_in_time(w, (double)width_of(w), (double)height_of(w), opacity, fn, e) < 0) {
        return -1;
    }
    MagickWand *layer = new_layer(w, width_of(w), height_of(w), fn, e);
    if (layer == NULL) {
        return -1;
    }
    int rc = watermark_layer(layer, &t, fn, e);
    if (rc == 0) {
        rc = dissolve_layer(w, layer, opacity, 1.0, 0, 0, fn, e);
    }
    DestroyMagickWand(layer);
    return rc;
}

/* ---------------------------------------------------------------- caption
 *
 * caption lays text out as ImageMagick's caption: coder does (so that `convert -size WxH
 * caption:TEXT` draws the same): a space becomes a line break where the line would grow wider
 * than the box; when the box has no height, a word wider than the box is also broken before the
 * character that overflows; without a point size the text takes the size caption:'s search
 * finds (doubling from 12 points while the text fits, then halving the interval). Lines are
 * measured one by one, found by galloping over the spaces, so that a long text costs a few
 * measures per line rather than one per character.
 *
 * One difference, on purpose: in a box with a height, after a word wider than the box caption:
 * measures the rest of the line from after that word, so that the next words overflow too;
 * here the long word keeps a line of its own and the next line is measured whole. */

#define CAPTION_FIT_START 12.0 /* caption:'s first point size when it fits text to a box */

struct caption {
    struct text t;      /* t.gravity is text_gravity: where the text sits in the box */
    GravityType place;  /* where the box sits on the image */
    long box_w, box_h;  /* box_h 0: as tall as the text */
    bool split;         /* break words wider than the box (the box has no height) */
    double shift;       /* caption:'s offset of text whose last line starts left of its origin */
    char *lines;        /* the wrapped text (room for a break per character); owned */
    DrawingWand *probe; /* measures text; owned */
};

/* A side given in pixels or as "N%" of `whole`; 0 when absent. */
static int read_side(json_object *p, const char *fn, const char *name, long whole, long *out,
                     struct err *e)
{
    const char *s = NULL;
    *out = 0;
    job_param_declare(fn, name, "pixels or \"N%\"", NULL);
    if (job_param_string(p, fn, name, NULL, &s, e) < 0) {
        return -1;
    }
    if (s == NULL && job_param_recording()) { /* the range of pixels */
        return job_param_long(p, fn, name, 0, 1, OP_MAX_SIDE, out, e);
    }
    if (s == NULL) {
        return 0;
    }
    size_t n = strlen(s);
    if (n == 0 || s[n - 1] != '%') {
        return job_param_long(p, fn, name, 0, 1, OP_MAX_SIDE, out, e);
    }
    char *end;
    errno = 0;
    double pct = strtod(s, &end);
    if (errno != 0 || end == s || *end != '%' || end[1] != '\0' || !(pct > 0.0) ||
        pct > MAX_PERCENT) {
        return invalid(fn, name, "expected pixels or a percentage in (0%, 1000%]", e);
    }
    double v = floor((double)whole * pct / 100.0 + 0.5);
    *out = v < 1.0 ? 1 : (v > (double)OP_MAX_SIDE ? OP_MAX_SIDE + 1 : (long)v);
    return 0;
}

/* A text width or height as caption: counts it: the stroke width added, rounded. */
static long caption_extent(double v, const DrawingWand *d)
{
    return (long)floor(v + DrawGetStrokeWidth(d) + 0.5);
}

/* Metrics (see MagickQueryFontMetrics: [2] ascent, [3] descent, [4] width, [7] left bound) of
 * c->lines from `start` up to `end` (excluded), at the probe's point size. The layout measures
 * the text many times, at up to thousands of points, without ImageMagick looking at the clock
 * (a 1000-byte text fitted to a 7000x7000 box: about a second): each measure first checks the
 * deadline of `w`. */
static int measure(MagickWand *w, struct caption *c, char *start, char *end, double m[13],
                   const char *fn, struct err *e)
{
    if (img_past_deadline(w)) {
        return img_fail(w, fn, e);
    }
    char keep = *end;
    *end = '\0';
    double *r = MagickQueryFontMetrics(w, c->probe, start);
    *end = keep;
    if (r == NULL) {
        return img_fail(w, fn, e);
    }
    memcpy(m, r, 13 * sizeof *r);
    MagickRelinquishMemory(r);
    return 0;
}

/* Whether c->lines from `line` up to `end` (excluded) fits the box's width. */
static int line_fits(MagickWand *w, struct caption *c, char *line, char *end, bool *fits,
                     const char *fn, struct err *e)
{
    double m[13];
    int rc = measure(w, c, line, end, m, fn, e);
    *fits = rc == 0 && caption_extent(m[4], c->probe) <= c->box_w;
    return rc;
}

/* The last of the n breaks brk[] up to which the line from `line` fits, found by galloping then
 * bisecting (a line only grows with its words); 0 when none does. */
static int last_fit(MagickWand *w, struct caption *c, char *line, char **brk, size_t n, size_t *out,
                    const char *fn, struct err *e)
{
    size_t good = 0, bad = n;
    bool fits = true;
    for (size_t step = 1; fits && step < bad; step *= 2) {
        if (line_fits(w, c, line, brk[step], &fits, fn, e) < 0) {
            return -1;
        }
        if (fits) {
            good = step;
        } else {
            bad = step;
        }
    }
    while (bad - good > 1) {
        size_t mid = good + (bad - good) / 2;
        if (line_fits(w, c, line, brk[mid], &fits, fn, e) < 0) {
            return -1;
        }
        if (fits) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    *out = good;
    return 0;
}

/* Breaks the word from `line` to `end`, wider than the box, before its first character that
 * overflows (never before its first character), and sets *next to the line after the break.
 * Returns 1 for a word of one character, which cannot be broken. */
static int split_word(MagickWand *w, struct caption *c, char *line, char *end, char **next,
                      const char *fn, struct err *e)
{
    char *at[MAX_TEXT_BYTES + 1]; /* at[k]: where the prefix of k + 1 characters ends */
    size_t n = 0, good = 1, bad;
    for (char *s = line + 1; s < end; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) {
            at[n++] = s;
        }
    }
    if (n == 0) {
        return 1;
    }
    for (bad = n + 1; bad - good > 1;) { /* the whole word (n + 1 characters) does not fit */
        size_t mid = good + (bad - good) / 2;
        bool fits;
        if (line_fits(w, c, line, at[mid - 1], &fits, fn, e) < 0) {
            return -1;
        }
        if (fits) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    char *cut = at[good - 1];
    memmove(cut + 1, cut, strlen(cut) + 1);
    *cut = '\n';
    *next = cut + 1;
    return 0;
}

/* Wraps the line that starts at `line` in place and sets *next to where the following line
 * starts, or NULL after the last. */
static int wrap_line(MagickWand *w, struct caption *c, char *line, char **next, const char *fn,
                     struct err *e)
{
    char *brk[MAX_TEXT_BYTES + 1]; /* the spaces, then the end of the paragraph */
    char *end = line + strcspn(line, "\n");
    size_t n = 0, i = 0;
    for (char *s = line; s < end; s++) {
        if (*s == ' ') {
            brk[n++] = s;
        }
    }
    brk[n++] = end;
    bool fits = true;
    if (last_fit(w, c, line, brk, n, &i, fn, e) < 0 ||
        (i == 0 && c->split && line_fits(w, c, line, brk[0], &fits, fn, e) < 0)) {
        return -1;
    }
    int rc = fits ? 1 : split_word(w, c, line, brk[0], next, fn, e);
    if (rc <= 0) {
        return rc;
    }
    if (i == n - 1) {
        *next = *end == '\n' ? end + 1 : NULL;
        return 0;
    }
    *brk[i] = '\n';
    *next = brk[i] + 1;
    return 0;
}

/* The size of wrapped text as caption: counts it. */
struct block {
    long width, height; /* the widest line; lines x rounded line height; each plus the stroke */
    double line_height; /* ascent - descent */
    size_t lines;
    double shift; /* how far right caption: draws text whose last line starts left of 0 */
};

/* Wraps the text at `points` and measures the block line by line. */
static int layout_at(MagickWand *w, struct caption *c, double points, struct block *b,
                     const char *fn, struct err *e)
{
    double m[13] = {0}, widest = 0.0;
    memcpy(c->lines, c->t.text, strlen(c->t.text) + 1);
    DrawSetFontSize(c->probe, points);
    for (char *p = c->lines; p != NULL;) {
        if (wrap_line(w, c, p, &p, fn, e) < 0) {
            return -1;
        }
    }
    b->lines = 0;
    for (char *line = c->lines; line != NULL; b->lines++) {
        char *end = line + strcspn(line, "\n");
        if (end > line && measure(w, c, line, end, m, fn, e) < 0) {
            return -1;
        }
        widest = end > line && m[4] > widest ? m[4] : widest;
        line = *end == '\0' ? NULL : end + 1;
    }
    b->line_height = m[2] - m[3];
    b->width = caption_extent(widest, c->probe);
    b->height = caption_extent((double)b->lines * floor(b->line_height + 0.5), c->probe);
    b->shift = m[7] < 0.0 ? -m[7] : 0.0;
    return 0;
}

/* caption:'s search for the point size that fits the box: double from 12 points until the text
 * no longer fits (width and height strictly less than the box's), then bisect with half-point
 * steps; the result is rounded down, at least 1. */
static int fit_points(MagickWand *w, struct caption *c, double *out, const char *fn, struct err *e)
{
    double most = fmin(MAX_POINT_SIZE, sqrt(MAX_TEXT_INK / (double)(strlen(c->t.text) + 1)));
    double low = 1.0, high = CAPTION_FIT_START;
    struct block b;
    for (int n = 0; n < 32 && high < most; n++, high *= 2.0) {
        if (layout_at(w, c, high, &b, fn, e) < 0) {
            return -1;
        }
        if (b.width >= c->box_w || b.height >= c->box_h) {
            break;
        }
    }
    high = fmin(high, most);
    while (high - low > 0.5) {
        double mid = (low + high) / 2.0;
        if (layout_at(w, c, mid, &b, fn, e) < 0) {
            return -1;
        }
        if (b.width < c->box_w && b.height < c->box_h) {
            low = mid + 0.5;
        } else {
            high = mid - 0.5;
        }
    }
    *out = fmax(1.0, floor((low + high) / 2.0 - 0.5));
    return 0;
}

/* Chooses the point size (given, fitted to the box, or CAPTION_POINTS), wraps the text, and
 * sizes a box without height to it: lines x (line height + stroke width), as caption: does. */
static int layout_caption(MagickWand *w, struct caption *c, const char *fn, struct err *e)
{
    c->lines = malloc(2 * strlen(c->t.text) + 1);
    c->probe = text_wand(&c->t, c->t.color);
    if (c->lines == NULL || c->probe == NULL) {
        return err_set(e, "%s: out of memory", fn);
    }
    c->split = c->box_h == 0;
    if (c->t.ts.point_size == 0) {
        c->t.ts.point_size = CAPTION_POINTS;
        if (c->box_h > 0 && fit_points(w, c, &c->t.ts.point_size, fn, e) < 0) {
            return -1;
        }
    }
    struct block b;
    if (layout_at(w, c, c->t.ts.point_size, &b, fn, e) < 0) {
        return -1;
    }
    if (c->box_h == 0) {
        double h = (double)b.lines * (b.line_height + DrawGetStrokeWidth(c->probe));
        c->box_h = (long)fmax(1.0, floor(h + 0.5));
    }
    c->shift = b.shift;
    c->t.text = c->lines;
    return 0;
}

/* Top-left corner of a bw x bh box placed on a w x h image at gravity `g` and moved by (dx, dy)
 * inward from the gravity's edges, as ImageMagick's GravityAdjustGeometry. */
static void gravity_place(GravityType g, long w, long h, long bw, long bh, long dx, long dy,
                          long *x, long *y)
{
    bool east = g == NorthEastGravity || g == EastGravity || g == SouthEastGravity;
    bool mid_x = g == NorthGravity || g == SouthGravity || g == CenterGravity;
    bool south = g == SouthWestGravity || g == SouthGravity || g == SouthEastGravity;
    bool mid_y = g == WestGravity || g == EastGravity || g == CenterGravity;
    *x = east ? w - bw - dx : (mid_x ? w / 2 - bw / 2 + dx : dx);
    *y = south ? h - bh - dy : (mid_y ? h / 2 - bh / 2 + dy : dy);
}

/* caption's parameters; with `w` NULL, checked only (the box's size is the run's). */
static int read_caption(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct caption *c,
                        const char *fn, struct err *e)
{
    if (read_text_params(p, fn, 0.0, "text_gravity", w != NULL, &c->t, e) < 0 ||
        op_gravity(p, fn, "gravity", &c->place, e) < 0 ||
        read_side(p, fn, "width", w != NULL ? width_of(w) : 0, &c->box_w, e) < 0 ||
        read_side(p, fn, "height", w != NULL ? height_of(w) : 0, &c->box_h, e) < 0) {
        return -1;
    }
    job_param_declare(fn, "point_size", NULL,
                      "absent: the largest that fits a box with a height, else 32");
    job_param_declare(fn, "width", NULL, "absent: the image's width");
    job_param_declare(fn, "height", NULL, "absent: the text's height");
    if (w == NULL) {
        return 0;
    }
    c->box_w = c->box_w > 0 ? c->box_w : width_of(w);
    return c->box_h > 0 ? op_check_size(c->box_w, c->box_h, ctx, fn, e) : 0;
}

/* Draws the laid-out caption on a transparent layer of the box's size and puts it on the image
 * at c->place, moved by x, y. */
static int draw_caption(MagickWand *w, struct caption *c, const struct op_ctx *ctx, const char *fn,
                        struct err *e)
{
    if (op_check_size(c->box_w, c->box_h, ctx, fn, e) < 0 ||
        layer_fits_in_time(w, (double)c->box_w, (double)c->box_h, -1.0, fn, e) < 0) {
        return -1;
    }
    MagickWand *layer = new_layer(w, c->box_w, c->box_h, fn, e);
    if (layer == NULL) {
        return -1;
    }
    int rc = draw_text(layer, &c->t, c->t.color, c->shift, 0, fn, e);
    if (rc == 0) {
        rc = match_colorspace(w, layer, fn, e);
    }
    if (rc == 0) {
        long x, y;
        gravity_place(c->place, width_of(w), height_of(w), c->box_w, c->box_h, c->t.x, c->t.y, &x,
                      &y);
        if (MagickCompositeImage(w, layer, OverCompositeOp, x, y) == MagickFalse) {
            rc = img_fail(w, fn, e);
        }
    }
    DestroyMagickWand(layer);
    return rc;
}

/* caption: text (required) wrapped to a box of width x height (pixels or "N%" of the image;
 * width defaults to the image's, height to the text's), aligned in it by text_gravity (Center),
 * the box placed at gravity (Center) moved by x, y. Without point_size the text takes the
 * largest size that fits a box with a height, else 32 points. Otherwise as annotate. */
static int op_caption(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "caption";
    struct caption c = {0};
    int rc = read_caption(w, p, ctx, &c, fn, e);
    if (rc == 0 && w != NULL && c.t.text[0] != '\0') {
        rc = layout_caption(w, &c, fn, e);
        if (rc == 0) {
            rc = draw_caption(w, &c, ctx, fn, e);
        }
    }
    if (c.probe != NULL) {
        DestroyDrawingWand(c.probe);
    }
    free(c.lines);
    text_finish(&c.t);
    return rc;
}

/* ---------------------------------------------------------------- shapes */

/* How rectangle and ellipse paint: an outline in `color` when stroke_width > 0, filled with
 * fill_color (default: color). */
struct paint {
    PixelWand *stroke, *fill; /* owned */
    double stroke_width, stroke_opacity, fill_opacity;
};

static void paint_finish(struct paint *s)
{
    if (s->stroke != NULL) {
        s->stroke = DestroyPixelWand(s->stroke);
    }
    if (s->fill != NULL) {
        s->fill = DestroyPixelWand(s->fill);
    }
}

static int read_paint(json_object *p, const char *fn, struct paint *s, struct err *e)
{
    const char *color;
    if (job_param_string(p, fn, "color", "#ffffff", &color, e) < 0 ||
        job_param_double(p, fn, "stroke_width", 0.0, 0.0, MAX_STROKE_WIDTH, &s->stroke_width, e) <
            0 ||
        job_param_double(p, fn, "stroke_opacity", 1.0, 0.0, 1.0, &s->stroke_opacity, e) < 0 ||
        job_param_double(p, fn, "fill_opacity", 1.0, 0.0, 1.0, &s->fill_opacity, e) < 0) {
        return -1;
    }
    /* fill_color without a default of its own (the parameter table shows none): absent, the
     * outline's colour is read again for the inside */
    const char *fill;
    job_param_declare(fn, "fill_color", "colour", NULL);
    if (job_param_string(p, fn, "fill_color", NULL, &fill, e) < 0) {
        return -1;
    }
    s->stroke = op_color(p, fn, "color", "#ffffff", e);
    s->fill = s->stroke == NULL ? NULL
              : fill != NULL    ? op_color(p, fn, "fill_color", fill, e)
                                : op_color(p, fn, "color", color, e);
    if (s->fill == NULL) {
        return -1;
    }
    /* the opacities scale the colours' own alpha ("#ff000080" at fill_opacity 0.5 is 25%) */
    PixelSetAlpha(s->stroke, PixelGetAlpha(s->stroke) * s->stroke_opacity);
    PixelSetAlpha(s->fill, PixelGetAlpha(s->fill) * s->fill_opacity);
    return 0;
}

/* A DrawingWand that paints as `s` says; NULL if out of memory. */
static DrawingWand *paint_wand(const struct paint *s)
{
    DrawingWand *d = NewDrawingWand();
    if (d == NULL) {
        return NULL;
    }
    DrawSetFillColor(d, s->fill);
    if (s->stroke_width > 0.0) {
        DrawSetStrokeColor(d, s->stroke);
        DrawSetStrokeWidth(d, s->stroke_width);
    }
    return d;
}

/* Draws the MVG `primitive` on the rows of `w` from y0, `rows` of them, and puts them back. */
static int draw_band(MagickWand *w, const char *primitive, long y0, long rows, const char *fn,
                     struct err *e)
{
    MagickWand *band = op_rows(w, y0, rows);
    if (band == NULL) {
        return img_fail(w, fn, e);
    }
    DrawInfo *info = CloneDrawInfo(NULL, NULL);
    char shift[64];
    snprintf(shift, sizeof shift, "translate 0,%ld\n", -y0);
    size_t n = strlen(shift) + strlen(primitive) + 1;
    char *mvg = AcquireQuantumMemory(n, 1);
    int rc = 0;
    if (info == NULL || mvg == NULL) {
        rc = err_set(e, "%s: out of memory", fn);
    } else {
        snprintf(mvg, n, "%s%s", shift, primitive);
        info->primitive = mvg;
        mvg = NULL;
        Image *im = GetImageFromMagickWand(band);
        if (DrawImage(im, info) == MagickFalse) {
            char words[ERR_MSG_MAX];
            rc = err_set(
                e, "%s: %s", fn,
                img_magick_words(im->exception.reason != NULL ? im->exception.reason : "failed",
                                 words, sizeof words));
        } else if (MagickCompositeImage(w, band, CopyCompositeOp, 0, y0) == MagickFalse) {
            rc = img_fail(w, fn, e);
        }
    }
    if (mvg != NULL) {
        RelinquishMagickMemory(mvg);
    }
    if (info != NULL) {
        DestroyDrawInfo(info);
    }
    DestroyMagickWand(band);
    return rc;
}

/* Draws what `d` holds on `w` and destroys `d`. What it draws lies within rows ylo to yhi (any
 * numbers: they are clipped to the image). ImageMagick draws a shape without looking at the
 * deadline (a rectangle's 1000-pixel outline over 49 MP took 11 s against a 2 s limit): a large
 * image is drawn DRAW_BAND_PIXELS at a time, each band the same MVG moved up by whole rows (the
 * same pixels as drawn at once), and the deadline looked at between bands. */
static int render(MagickWand *w, DrawingWand *d, double ylo, double yhi, const char *fn,
                  struct err *e)
{
    if (d == NULL) {
        return err_set(e, "%s: out of memory", fn);
    }
    if (MagickGetImageColorspace(w) == CMYKColorspace) {
        MagickWand *layer = new_layer(w, width_of(w), height_of(w), fn, e);
        if (layer == NULL) {
            DestroyDrawingWand(d);
            return -1;
        }
        int rc = render(layer, d, ylo, yhi, fn, e);
        rc = rc == 0 ? put_drawn(w, layer, fn, e) : rc;
        DestroyMagickWand(layer);
        return rc;
    }
    long cols = width_of(w), rows = height_of(w);
    long step = DRAW_BAND_PIXELS / cols > 0 ? DRAW_BAND_PIXELS / cols : 1;
    long first = ylo > 0.0 ? (long)fmin(floor(ylo), (double)rows) : 0;
    long last = yhi < (double)rows ? (long)fmax(ceil(yhi), -1.0) : rows - 1;
    if (rows <= step) {
        MagickBooleanType ok = MagickDrawImage(w, d);
        DestroyDrawingWand(d);
        return ok == MagickFalse ? img_fail(w, fn, e) : 0;
    }
    DrawInfo *info = PeekDrawingWand(d);
    DestroyDrawingWand(d);
    if (info == NULL || info->primitive == NULL) {
        if (info != NULL) {
            DestroyDrawInfo(info);
        }
        return err_set(e, "%s: out of memory", fn);
    }
    int rc = 0;
    for (long y = first; rc == 0 && y <= last; y += step) {
        if (img_past_deadline(w)) {
            rc = img_fail(w, fn, e);
        } else {
            rc = draw_band(w, info->primitive, y, last - y + 1 < step ? last - y + 1 : step, fn, e);
        }
    }
    DestroyDrawInfo(info);
    return rc;
}

/* The largest radius an ellipse or a rounded corner may have on `w`: twice its larger side
 * (ImageMagick traces curves with a point per pixel of radius, a few kilobytes each). */
static double max_radius(MagickWand *w)
{
    double side = (double)(width_of(w) > height_of(w) ? width_of(w) : height_of(w));
    return fmin(MAX_COORD, 2.0 * side);
}

/* A required radius (rectangle's cw and ch, ellipse's radii) in [0, max_radius(w)]; with `w`
 * NULL only checked to be a number, its range being the image's. */
static int required_radius(MagickWand *w, json_object *p, const char *fn, const char *name,
                           double *out, struct err *e)
{
    *out = 0.0;
    if (w != NULL) {
        return required_double(p, fn, name, 0.0, max_radius(w), out, e);
    }
    if (job_param_required(p, fn, name, true, e) < 0) {
        return -1;
    }
    return job_param_check_number(p, fn, name, false, e);
}

/* The required x, y, x1, y1 of line and rectangle. */
static int read_corners(json_object *p, const char *fn, double v[4], struct err *e)
{
    static const char *const names[] = {"x", "y", "x1", "y1"};
    for (size_t i = 0; i < 4; i++) {
        if (required_double(p, fn, names[i], -MAX_COORD, MAX_COORD, &v[i], e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* line: from (x, y) to (x1, y1) (all required), width (1) pixels of color (#ffffff) at opacity
 * (1.0), line_cap butt (default), round or square. */
static int op_line(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "line";
    double v[4], width, opacity;
    const char *cap;
    if (read_corners(p, fn, v, e) < 0 ||
        job_param_double(p, fn, "width", 1.0, 0.0, MAX_STROKE_WIDTH, &width, e) < 0 ||
        job_param_double(p, fn, "opacity", 1.0, 0.0, 1.0, &opacity, e) < 0 ||
        job_param_string(p, fn, "line_cap", "butt", &cap, e) < 0) {
        return -1;
    }
    PixelWand *color;
    int go = op_color_for(w, p, fn, "color", "#ffffff", &color, e);
    if (go <= 0) {
        return go;
    }
    long lc = option_value(MagickLineCapOptions, cap);
    DrawingWand *d = NewDrawingWand();
    if (d != NULL) {
        DrawSetStrokeColor(d, color);
        DrawSetFillColor(d, color);
        DrawSetStrokeWidth(d, width);
        DrawSetOpacity(d, opacity);
        DrawSetStrokeLineCap(d, lc > 0 ? (LineCap)lc : ButtCap);
        DrawLine(d, v[0], v[1], v[2], v[3]);
    }
    DestroyPixelWand(color);
    double m = MITER_REACH * width + 2.0; /* a square cap reaches width / 2 past the end */
    return render(w, d, fmin(v[1], v[3]) - m, fmax(v[1], v[3]) + m, fn, e);
}

/* rectangle: corners (x, y) and (x1, y1) (required), painted as read_paint() says; cw and ch
 * (together) round the corners with that width and height. */
static int op_rectangle(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "rectangle";
    double v[4], cw, ch;
    bool round = job_param_number_given(p, "cw") || job_param_number_given(p, "ch");
    job_param_declare(fn, "cw", NULL, "required with ch: rounded corners");
    job_param_declare(fn, "ch", NULL, "required with cw: rounded corners");
    if (read_corners(p, fn, v, e) < 0 || (round && (required_radius(w, p, fn, "cw", &cw, e) < 0 ||
                                                    required_radius(w, p, fn, "ch", &ch, e) < 0))) {
        return -1;
    }
    struct paint s = {0};
    int rc = read_paint(p, fn, &s, e);
    if (rc < 0 || w == NULL) {
        paint_finish(&s);
        return rc;
    }
    DrawingWand *d = paint_wand(&s);
    paint_finish(&s);
    if (d != NULL && round) {
        DrawRoundRectangle(d, v[0], v[1], v[2], v[3], cw, ch);
    } else if (d != NULL) {
        DrawRectangle(d, v[0], v[1], v[2], v[3]);
    }
    double m = MITER_REACH * s.stroke_width + 2.0;
    return render(w, d, fmin(v[1], v[3]) - m, fmax(v[1], v[3]) + m, fn, e);
}

/* ellipse: centred on (origin_x, origin_y) with ellipse_width and ellipse_height (all required)
 * as its horizontal and vertical radii, as Blitline drew it; painted as rectangle. */
static int op_ellipse(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "ellipse";
    double ox, oy, rx, ry;
    if (required_double(p, fn, "origin_x", -MAX_COORD, MAX_COORD, &ox, e) < 0 ||
        required_double(p, fn, "origin_y", -MAX_COORD, MAX_COORD, &oy, e) < 0 ||
        required_radius(w, p, fn, "ellipse_width", &rx, e) < 0 ||
        required_radius(w, p, fn, "ellipse_height", &ry, e) < 0) {
        return -1;
    }
    struct paint s = {0};
    int rc = read_paint(p, fn, &s, e);
    if (rc < 0 || w == NULL) {
        paint_finish(&s);
        return rc;
    }
    DrawingWand *d = paint_wand(&s);
    paint_finish(&s);
    if (d != NULL) {
        DrawEllipse(d, ox, oy, rx, ry, 0.0, 360.0);
    }
    double m = MITER_REACH * s.stroke_width + 2.0;
    return render(w, d, oy - ry - m, oy + ry + m, fn, e);
}

/* ---------------------------------------------------------------- other images */

/* Names the src in the loader's error `e`, unless the loader did (a failed download names the
 * URL it tried, its password hidden): the URL once, so that the reason after it stays within
 * ERR_MSG_MAX. */
static void name_src(json_object *src, const char *fn, const char *name, struct err *e)
{
    if (src_quoted_in(src, e)) {
        err_wrap(e, "Function '%s' could not load %s", fn, name);
        return;
    }
    char shown[SRC_SHOWN_MAX + 2];
    src_shown(src, shown);
    err_wrap(e, "Function '%s' could not load %s '%s'", fn, name, shown);
}

/* Checks that `src` (parameter `name` of `fn`) may name an image: a string or an object. */
static int check_src(json_object *src, const char *fn, const char *name, struct err *e)
{
    if (!json_object_is_type(src, json_type_string) &&
        !json_object_is_type(src, json_type_object)) {
        return invalid(fn, name, "expected a URL, \"&identifier\" or an object", e);
    }
    return 0;
}

/* Loads the image `src` names (parameter `name` of `fn`). Returns a wand to destroy, or NULL
 * with an error that names the src. */
static MagickWand *load_other(json_object *src, const struct op_ctx *ctx, const char *fn,
                              const char *name, struct err *e)
{
    if (check_src(src, fn, name, e) < 0) {
        return NULL;
    }
    if (ctx->load == NULL) {
        char shown[SRC_SHOWN_MAX + 2];
        src_shown(src, shown);
        err_set(e, "Function '%s' cannot load %s '%s' here", fn, name, shown);
        return NULL;
    }
    MagickWand *o = ctx->load(ctx->load_user, src, e);
    if (o == NULL) {
        name_src(src, fn, name, e);
    }
    return o;
}

/* The required `src`, checked (check_src()) but not loaded. */
static int src_param(json_object *p, const char *fn, json_object **src, struct err *e)
{
    *src = NULL;
    job_param_declare(fn, "src", "image source", NULL);
    if (job_param_required(p, fn, "src", false, e) < 0) {
        return -1;
    }
    if (!json_object_object_get_ex(p, "src", src)) {
        return 0; /* recorded (job_param_record()): there is no value */
    }
    return check_src(*src, fn, "src", e);
}

/* Where an overlay goes: at gravity when the params give one (x and y are then ignored, as in
 * Blitline), else with its top-left corner at (x, y). */
struct placement {
    bool by_gravity;
    GravityType gravity;
    long x, y;
};

static int read_placement(json_object *p, const char *fn, struct placement *at, struct err *e)
{
    at->by_gravity = job_param_present(p, "gravity");
    if (op_gravity_or(p, fn, "gravity", CenterGravity, &at->gravity, e) < 0 ||
        job_param_long(p, fn, "x", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &at->x, e) < 0 ||
        job_param_long(p, fn, "y", 0, -OP_MAX_SIDE, OP_MAX_SIDE, &at->y, e) < 0) {
        return -1;
    }
    if (at->by_gravity) {
        at->x = at->y = 0;
    }
    return 0;
}

/* composite_op: an ImageMagick CompositeOperator name ("MultiplyCompositeOp" or "Multiply"). */
static int read_compose(json_object *p, const char *fn, CompositeOperator *out, struct err *e)
{
    const char *s;
    char name[MAX_NAME_BYTES + 1];
    if (job_param_string(p, fn, "composite_op", "OverCompositeOp", &s, e) < 0) {
        return -1;
    }
    size_t n = strlen(s), suffix = strlen("CompositeOp");
    if (n > suffix && strcasecmp(s + n - suffix, "CompositeOp") == 0) {
        n -= suffix;
    }
    snprintf(name, sizeof name, "%.*s", (int)(n < MAX_NAME_BYTES ? n : MAX_NAME_BYTES), s);
    long v = n <= MAX_NAME_BYTES ? option_value(MagickComposeOptions, name) : -1;
    if (v < 0) {
        return err_set(e,
                       "Invalid parameter 'composite_op' for function '%s': '%.*s' is not a "
                       "composite operator",
                       fn, MAX_NAME_BYTES, s);
    }
    *out = (CompositeOperator)v;
    return 0;
}

/* Resizes the overlay to nw x nh (as -resize), within the limits. */
static int resize_overlay(MagickWand *src, long nw, long nh, const struct op_ctx *ctx,
                          const char *fn, struct err *e)
{
    if (op_check_size(nw, nh, ctx, fn, e) < 0) {
        return -1;
    }
    return img_resize(src, nw, nh, fn, e);
}

/* scale_to_fit {width, height} (either may be omitted): resize keeping the aspect ratio to fit
 * inside, as -resize WxH. Sides are pixels or "N%" of the image's. With `w` and `src` NULL, the
 * box is checked only (and so in prepare_overlay() and size_overlay()). */
static int fit_overlay(MagickWand *w, MagickWand *src, json_object *box, const struct op_ctx *ctx,
                       struct err *e)
{
    const char *fn = "composite scale_to_fit";
    long W, H, nw, nh;
    if (read_side(box, fn, "width", w != NULL ? width_of(w) : 0, &W, e) < 0 ||
        read_side(box, fn, "height", w != NULL ? height_of(w) : 0, &H, e) < 0) {
        return -1;
    }
    job_param_declare(fn, "width", NULL, "width or height is required");
    job_param_declare(fn, "height", NULL, "width or height is required");
    if (W == 0 && H == 0 && !job_param_recording()) {
        return missing(fn, "width", e);
    }
    if (src == NULL) {
        return 0;
    }
    op_fit_size(width_of(src), height_of(src), W, H, &nw, &nh);
    return resize_overlay(src, nw, nh, ctx, fn, e);
}

/* scale_to_fill {width, height} (both required): resize keeping the aspect ratio to cover
 * width x height, then crop the centre, as -resize WxH^ -gravity center -crop WxH+0+0. */
static int fill_overlay(MagickWand *w, MagickWand *src, json_object *box, const struct op_ctx *ctx,
                        struct err *e)
{
    const char *fn = "composite scale_to_fill";
    long W, H;
    if (read_side(box, fn, "width", w != NULL ? width_of(w) : 0, &W, e) < 0 ||
        read_side(box, fn, "height", w != NULL ? height_of(w) : 0, &H, e) < 0) {
        return -1;
    }
    job_param_declare(fn, "width", NULL, "required with scale_to_fill");
    job_param_declare(fn, "height", NULL, "required with scale_to_fill");
    if (W == 0 || H == 0) {
        return missing(fn, W == 0 ? "width" : "height", e);
    }
    if (src == NULL) {
        return 0;
    }
    double sw = (double)W / (double)width_of(src), sh = (double)H / (double)height_of(src);
    double s = sw > sh ? sw : sh;
    long nw = (long)fmax(1.0, floor((double)width_of(src) * s + 0.5));
    long nh = (long)fmax(1.0, floor((double)height_of(src) * s + 0.5));
    if (resize_overlay(src, nw, nh, ctx, fn, e) < 0) {
        return -1;
    }
    if (MagickCropImage(src, (size_t)W, (size_t)H, nw / 2 - W / 2, nh / 2 - H / 2) == MagickFalse ||
        MagickSetImagePage(src, 0, 0, 0, 0) == MagickFalse) {
        return img_fail(src, fn, e);
    }
    return 0;
}

/* Sizes the overlay: scale_to_match (the image's size, as -scale WxH!), scale_to_fit or
 * scale_to_fill. */
static int size_overlay(MagickWand *w, MagickWand *src, json_object *p, const struct op_ctx *ctx,
                        const char *fn, struct err *e)
{
    bool match;
    json_object *fit, *fill;
    if (job_param_bool(p, fn, "scale_to_match", false, &match, e) < 0 ||
        object_param(p, fn, "scale_to_fit", &fit, e) < 0 ||
        object_param(p, fn, "scale_to_fill", &fill, e) < 0) {
        return -1;
    }
    if (match && src == NULL) {
        return 0;
    }
    if (match) {
        if (MagickScaleImage(src, (size_t)width_of(w), (size_t)height_of(w)) == MagickFalse) {
            return img_fail(src, fn, e);
        }
        return 0;
    }
    if (job_param_recording()) { /* both boxes, which a job gives one of */
        return fit_overlay(w, src, fit, ctx, e) < 0 ? -1 : fill_overlay(w, src, fill, ctx, e);
    }
    if (fit != NULL) {
        return fit_overlay(w, src, fit, ctx, e);
    }
    return fill != NULL ? fill_overlay(w, src, fill, ctx, e) : 0;
}

/* Sizes the overlay, then as_mask: the image gets an alpha channel and the overlay's is switched
 * off, so that CopyOpacityCompositeOp turns the overlay's grey levels into the image's alpha. */
static int prepare_overlay(MagickWand *w, MagickWand *src, json_object *p, const struct op_ctx *ctx,
                           const char *fn, struct err *e)
{
    bool as_mask;
    if (job_param_bool(p, fn, "as_mask", false, &as_mask, e) < 0 ||
        size_overlay(w, src, p, ctx, fn, e) < 0) {
        return -1;
    }
    if (!as_mask || src == NULL) {
        return 0;
    }
    if (MagickSetImageAlphaChannel(w, SetAlphaChannel) == MagickFalse) {
        return img_fail(w, fn, e);
    }
    if (MagickSetImageAlphaChannel(src, DeactivateAlphaChannel) == MagickFalse) {
        return img_fail(src, fn, e);
    }
    return 0;
}

/* Composites `src` onto `w` with `op` where `at` says (gravity as -gravity G -composite). */
static int place(MagickWand *w, MagickWand *src, CompositeOperator op, const struct placement *at,
                 const char *fn, struct err *e)
{
    /* CopyOpacity takes the grey levels of a src without alpha (as_mask's) for the image's alpha:
     * on a CMYK image ImageMagick reads them from its cyan, magenta and yellow, all 0 once the
     * grey is made CMYK (its black), and the mask was lost (the image left opaque). The grey
     * levels (of a CMYK mask made sRGB: its inks are no grey levels) are made its alpha first,
     * which CopyOpacity takes as it is in any colorspace. */
    if (op == CopyOpacityCompositeOp && MagickGetImageColorspace(w) == CMYKColorspace &&
        MagickGetImageAlphaChannel(src) == MagickFalse) {
        if ((MagickGetImageColorspace(src) == CMYKColorspace &&
             MagickTransformImageColorspace(src, sRGBColorspace) == MagickFalse) ||
            MagickSetImageAlphaChannel(src, CopyAlphaChannel) == MagickFalse) {
            return img_fail(src, fn, e);
        }
    }
    if (match_colorspace(w, src, fn, e) < 0) {
        return -1;
    }
    MagickBooleanType ok = at->by_gravity ? MagickCompositeImageGravity(w, src, op, at->gravity)
                                          : MagickCompositeImage(w, src, op, at->x, at->y);
    return ok == MagickFalse ? img_fail(w, fn, e) : 0;
}

/* composite: puts src (required: URL, "&identifier", {"name":"s3"|"canvas",...}) on the image
 * with composite_op (OverCompositeOp) at x, y or at gravity, after as_mask, scale_to_match,
 * scale_to_fit or scale_to_fill. */
static int op_composite(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "composite";
    struct placement at;
    CompositeOperator op = OverCompositeOp;
    json_object *src_p;
    /* the overlay's parameters are checked before it is loaded, then read again to size it */
    if (read_placement(p, fn, &at, e) < 0 || read_compose(p, fn, &op, e) < 0 ||
        src_param(p, fn, &src_p, e) < 0 || prepare_overlay(NULL, NULL, p, ctx, fn, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    MagickWand *src = load_other(src_p, ctx, fn, "src", e);
    if (src == NULL) {
        return -1;
    }
    int rc = prepare_overlay(w, src, p, ctx, fn, e);
    if (rc == 0) {
        rc = place(w, src, op, &at, fn, e);
    }
    DestroyMagickWand(src);
    return rc;
}

/* dissolve: as composite with DissolveCompositeOp: src's alpha times src_percentage (0.25), the
 * image's times dst_percentage (1.0), both fractions from 0 to 1. */
static int op_dissolve(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "dissolve";
    struct placement at;
    double sp, dp;
    json_object *src_p;
    if (read_placement(p, fn, &at, e) < 0 ||
        job_param_double(p, fn, "src_percentage", 0.25, 0.0, 1.0, &sp, e) < 0 ||
        job_param_double(p, fn, "dst_percentage", 1.0, 0.0, 1.0, &dp, e) < 0 ||
        src_param(p, fn, &src_p, e) < 0 || prepare_overlay(NULL, NULL, p, ctx, fn, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    MagickWand *src = load_other(src_p, ctx, fn, "src", e);
    if (src == NULL) {
        return -1;
    }
    int rc = prepare_overlay(w, src, p, ctx, fn, e);
    if (rc == 0 && at.by_gravity) {
        gravity_place(at.gravity, width_of(w), height_of(w), width_of(src), height_of(src), 0, 0,
                      &at.x, &at.y);
    }
    if (rc == 0) {
        rc = dissolve_layer(w, src, sp, dp, at.x, at.y, fn, e);
    }
    DestroyMagickWand(src);
    return rc;
}

/* other_images: a comma-separated string of sources, or an array of them. Returns a new array
 * (the caller puts it) of at most MAX_OTHER_IMAGES, or NULL. */
static json_object *read_other_images(json_object *p, const char *fn, struct err *e)
{
    json_object *v = NULL;
    job_param_declare(fn, "other_images", "image sources", "a comma-separated string or an array");
    json_object_object_get_ex(p, "other_images", &v);
    json_object *out = v != NULL ? src_list(v) : json_object_new_array();
    if (out == NULL) {
        invalid(fn, "other_images", "expected a comma-separated string or an array", e);
        return NULL;
    }
    if (json_object_array_length(out) > MAX_OTHER_IMAGES) {
        json_object_put(out);
        err_set(e, "Invalid parameter 'other_images' for function '%s': more than %d images", fn,
                MAX_OTHER_IMAGES);
        return NULL;
    }
    return out;
}

/* Loads every source into `list` (which holds the image), checking the appended size. */
static int load_others(MagickWand *w, MagickWand *list, json_object *srcs, bool vertical,
                       const struct op_ctx *ctx, const char *fn, struct err *e)
{
    long aw = width_of(list), ah = height_of(list);
    for (size_t i = 0; i < json_object_array_length(srcs); i++) {
        MagickWand *o = load_other(json_object_array_get_idx(srcs, i), ctx, fn, "other_images", e);
        if (o == NULL) {
            return -1;
        }
        long ow = width_of(o), oh = height_of(o);
        aw = vertical ? (aw > ow ? aw : ow) : aw + ow;
        ah = vertical ? ah + oh : (ah > oh ? ah : oh);
        /* ImageMagick's append copies each image's channels as they are into the first one's */
        int rc = op_check_size(aw, ah, ctx, fn, e) < 0 ? -1 : match_colorspace(w, o, fn, e);
        if (rc == 0 && MagickAddImage(list, o) == MagickFalse) {
            rc = img_fail(list, fn, e);
        }
        DestroyMagickWand(o);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* Replaces w's image with the images of `list` appended. */
static int append_into(MagickWand *w, MagickWand *list, bool vertical, const char *fn,
                       struct err *e)
{
    MagickResetIterator(list);
    MagickWand *joined = MagickAppendImages(list, vertical ? MagickTrue : MagickFalse);
    if (joined == NULL) {
        return img_fail(list, fn, e);
    }
    int rc = 0;
    if (MagickRemoveImage(w) == MagickFalse || MagickAddImage(w, joined) == MagickFalse) {
        rc = img_fail(w, fn, e);
    }
    DestroyMagickWand(joined);
    return rc;
}

/* append: the image followed by other_images (comma-separated sources, at most 10), side by side
 * top-aligned, or stacked left-aligned when vertical; gaps take the background colour, as
 * `convert IMAGE OTHER... +append` (-append). */
static int op_append(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "append";
    bool vertical;
    if (job_param_bool(p, fn, "vertical", false, &vertical, e) < 0) {
        return -1;
    }
    json_object *srcs = read_other_images(p, fn, e);
    if (srcs == NULL) {
        return -1;
    }
    for (size_t i = 0; i < json_object_array_length(srcs); i++) { /* before any is loaded */
        if (check_src(json_object_array_get_idx(srcs, i), fn, "other_images", e) < 0) {
            json_object_put(srcs);
            return -1;
        }
    }
    if (w == NULL) {
        json_object_put(srcs);
        return 0;
    }
    MagickWand *list = NewMagickWand();
    int rc = 0;
    if (json_object_array_length(srcs) > 0) {
        rc = MagickAddImage(list, w) == MagickFalse ? img_fail(list, fn, e) : 0;
        if (rc == 0) {
            rc = load_others(w, list, srcs, vertical, ctx, fn, e);
        }
        if (rc == 0) {
            rc = append_into(w, list, vertical, fn, e);
        }
    }
    DestroyMagickWand(list);
    json_object_put(srcs);
    return rc;
}

/* tile's sizing: width x height when both are given (tw, th), else the scale factor. */
struct tile_size {
    double scale;
    long tw, th;
};

static int read_tile_size(json_object *p, const char *fn, struct tile_size *ts, struct err *e)
{
    if (job_param_double(p, fn, "scale", 1.0, 0.001, 100.0, &ts->scale, e) < 0 ||
        job_param_long(p, fn, "width", 0, 0, OP_MAX_SIDE, &ts->tw, e) < 0 ||
        job_param_long(p, fn, "height", 0, 0, OP_MAX_SIDE, &ts->th, e) < 0) {
        return -1;
    }
    return 0;
}

/* Resizes the tile as `ts` says. */
static int size_tile(MagickWand *tile, const struct tile_size *ts, const struct op_ctx *ctx,
                     const char *fn, struct err *e)
{
    long tw = ts->tw, th = ts->th;
    if (tw == 0 || th == 0) {
        if (ts->scale == 1.0) {
            return 0;
        }
        tw = (long)fmax(1.0, floor((double)width_of(tile) * ts->scale + 0.5));
        th = (long)fmax(1.0, floor((double)height_of(tile) * ts->scale + 0.5));
    }
    return resize_overlay(tile, tw, th, ctx, fn, e);
}

/* Composites `tile` over all of `w` from the top-left corner: one row of tiles is copied into a
 * transparent band, and the band composited down the image. */
static int tile_over(MagickWand *w, MagickWand *tile, const char *fn, struct err *e)
{
    long W = width_of(w), H = height_of(w), tw = width_of(tile), th = height_of(tile);
    if (MagickSetImageAlphaChannel(tile, SetAlphaChannel) == MagickFalse) {
        return img_fail(tile, fn, e);
    }
    MagickWand *band = new_layer(w, W, th < H ? th : H, fn, e);
    if (band == NULL) {
        return -1;
    }
    int rc = match_colorspace(band, tile, fn, e); /* a CMYK tile: the band is sRGB */
    for (long x = 0; rc == 0 && x < W; x += tw) {
        if (MagickCompositeImage(band, tile, CopyCompositeOp, x, 0) == MagickFalse) {
            rc = img_fail(band, fn, e);
        }
    }
    if (rc == 0) {
        rc = match_colorspace(w, band, fn, e);
    }
    for (long y = 0; rc == 0 && y < H; y += th) {
        if (MagickCompositeImage(w, band, OverCompositeOp, 0, y) == MagickFalse) {
            rc = img_fail(w, fn, e);
        }
    }
    DestroyMagickWand(band);
    return rc;
}

/* tile: src (required) repeated over the whole image from its top-left corner, composited over
 * it; the tile is first resized to width x height (both given) or by scale (1.0). */
static int op_tile(MagickWand *w, json_object *p, const struct op_ctx *ctx, struct err *e)
{
    const char *fn = "tile";
    struct tile_size ts;
    json_object *src_p;
    if (read_tile_size(p, fn, &ts, e) < 0 || src_param(p, fn, &src_p, e) < 0) {
        return -1;
    }
    if (w == NULL) {
        return 0;
    }
    MagickWand *tile = load_other(src_p, ctx, fn, "src", e);
    if (tile == NULL) {
        return -1;
    }
    int rc = size_tile(tile, &ts, ctx, fn, e);
    if (rc == 0) {
        rc = tile_over(w, tile, fn, e);
    }
    DestroyMagickWand(tile);
    return rc;
}

/* clang-format off */
const struct op ops_draw[] = {
    {"annotate", op_annotate, false},
    {"watermark", op_watermark, false},
    {"caption", op_caption, false},
    {"line", op_line, false},
    {"rectangle", op_rectangle, false},
    {"ellipse", op_ellipse, false},
    {"composite", op_composite, false},
    {"dissolve", op_dissolve, false},
    {"append", op_append, false},
    {"tile", op_tile, false},
    {NULL, NULL, false},
};
/* clang-format on */
