/* test_resize: worker/resize.c against ImageMagick's own resize (MagickResizeImage with
 * UndefinedFilter, blur 1) on the same image: the corpus files given as arguments, opaque and
 * with an alpha channel made of their own intensity, and images built here (noise with and
 * without alpha, grey, 1-pixel rows and columns, a page offset), each to several sizes, smaller
 * (Lanczos; Mitchell with alpha) and larger (Mitchell). The 16-bit samples, colours premultiplied
 * by alpha, may differ by at most RESIZE_Q16_MAX (resize.c sums opaque images in single precision
 * where ImageMagick sums in double, so a sum near a half rounds the other way now and then), the
 * 8-bit ones by at most 1 and in at most DIFF8_MAX_PPM samples in a million; size, page geometry,
 * colourspace, properties and tile offset must be the same, and a flat colour stays exactly that
 * colour. The images resize.c must leave to ImageMagick (palette, CMYK, the same size, a filter
 * artifact) are declined untouched; a progress monitor that says stop fails the resize, and one
 * that lets it go on is called now and then, within its span; kept filters go least recently
 * used first; a size the pixel cache refuses fails the resize, the image keeping its size. */
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../unit/check.h"
#include "cfg.h"
#include "image.h"
#include "resize.h"
#include "shrinkio.h"

#define RESIZE_Q16_MAX 2   /* largest difference of a 16-bit sample */
#define DIFF8_MAX_PPM  200 /* most 8-bit samples in a million that may differ (by 1) */
#define BUDGET_PIXELS  4e6 /* a corpus image larger than this is first scaled below it */
#ifdef __SANITIZE_ADDRESS__
#define MEMORY_COUNTS false /* AddressSanitizer's allocator: freed blocks stay mapped a while */
#else
#define MEMORY_COUNTS true /* the heap's and the address space's sizes tell leaks */
#endif

struct diff {
    long q16_max, c8_max;
    double c8_ppm; /* 8-bit samples that differ, per million */
};

static unsigned short *pixels16(MagickWand *w, size_t *n)
{
    size_t cols = MagickGetImageWidth(w), rows = MagickGetImageHeight(w);
    *n = cols * rows * 4;
    unsigned short *p = malloc(*n * sizeof *p);
    if (p != NULL &&
        MagickExportImagePixels(w, 0, 0, cols, rows, "RGBA", ShortPixel, p) == MagickFalse) {
        free(p);
        p = NULL;
    }
    return p;
}

static unsigned char *pixels8(MagickWand *w)
{
    size_t cols = MagickGetImageWidth(w), rows = MagickGetImageHeight(w);
    unsigned char *p = malloc(cols * rows * 4);
    if (p != NULL &&
        MagickExportImagePixels(w, 0, 0, cols, rows, "RGBA", CharPixel, p) == MagickFalse) {
        free(p);
        p = NULL;
    }
    return p;
}

static bool compare(MagickWand *a, MagickWand *b, struct diff *d)
{
    size_t n = 0, m = 0;
    unsigned short *pa = pixels16(a, &n), *pb = pixels16(b, &m);
    unsigned char *ca = pixels8(a), *cb = pixels8(b);
    bool ok = pa != NULL && pb != NULL && ca != NULL && cb != NULL && n == m;
    *d = (struct diff){0, 0, 0.0};
    long differ = 0;
    for (size_t i = 0; ok && i < n; i++) {
        /* a colour counts as much as its pixel's alpha: ImageMagick's colour of a pixel whose
         * weights of alpha nearly cancel out moves a lot with a unit of its terms (16-bit: the
         * colours premultiplied; 8-bit: as they are) */
        size_t at = i - i % 4 + 3;
        double fa = i == at ? 1.0 : pa[at] / 65535.0, fb = i == at ? 1.0 : pb[at] / 65535.0;
        long q = lround(fabs(pa[i] * fa - pb[i] * fb)), c = labs((long)ca[i] - (long)cb[i]);
        d->q16_max = q > d->q16_max ? q : d->q16_max;
        d->c8_max = c > d->c8_max ? c : d->c8_max;
        differ += c != 0;
    }
    d->c8_ppm = n > 0 ? 1e6 * (double)differ / (double)n : 0.0;
    free(pa);
    free(pb);
    free(ca);
    free(cb);
    return ok;
}

static char *props(MagickWand *w)
{
    size_t n = 0;
    char **names = MagickGetImageProperties(w, "*", &n);
    size_t len = 1;
    char *out = calloc(1, 1);
    for (size_t i = 0; out != NULL && i < n; i++) {
        char *v = MagickGetImageProperty(w, names[i]);
        size_t add = strlen(names[i]) + (v ? strlen(v) : 0) + 2;
        char *grown = realloc(out, len + add);
        if (grown == NULL) {
            free(out);
            out = NULL;
        } else {
            out = grown;
            snprintf(out + len - 1, add + 1, "%s=%s\n", names[i], v ? v : "");
            len += add;
        }
        MagickRelinquishMemory(v);
        MagickRelinquishMemory(names[i]);
    }
    MagickRelinquishMemory(names);
    return out;
}

/* `src` resized to cols x rows both ways: resize.c must take it, and the results agree. */
static void same_as_imagemagick(const char *what, MagickWand *src, size_t cols, size_t rows)
{
    MagickWand *ours = CloneMagickWand(src), *theirs = CloneMagickWand(src);
    const char *why = NULL;
    enum resize_result r = resize_fast(ours, cols, rows, &why);
    if (r != RESIZE_DONE) {
        fprintf(stderr, "%s to %zux%zu: not done (%s)\n", what, cols, rows, why ? why : "?");
    }
    CHECK(r == RESIZE_DONE);
    CHECK(MagickResizeImage(theirs, cols, rows, UndefinedFilter, 1.0) == MagickTrue);
    CHECK_INT(MagickGetImageWidth(ours), cols);
    CHECK_INT(MagickGetImageHeight(ours), rows);
    struct diff d;
    CHECK(compare(ours, theirs, &d));
    if (d.q16_max > RESIZE_Q16_MAX || d.c8_max > 1 || d.c8_ppm > DIFF8_MAX_PPM) {
        fprintf(stderr, "%s to %zux%zu: q16 max %ld, 8-bit max %ld, %.1f ppm differ\n", what, cols,
                rows, d.q16_max, d.c8_max, d.c8_ppm);
    }
    CHECK(d.q16_max <= RESIZE_Q16_MAX);
    CHECK(d.c8_max <= 1);
    CHECK(d.c8_ppm <= DIFF8_MAX_PPM);
    size_t pw[2], ph[2];
    ssize_t px[2], py[2];
    MagickGetImagePage(ours, &pw[0], &ph[0], &px[0], &py[0]);
    MagickGetImagePage(theirs, &pw[1], &ph[1], &px[1], &py[1]);
    CHECK(pw[0] == pw[1] && ph[0] == ph[1] && px[0] == px[1] && py[0] == py[1]);
    const Image *io = GetImageFromMagickWand(ours), *it = GetImageFromMagickWand(theirs);
    CHECK(io->tile_offset.x == it->tile_offset.x && io->tile_offset.y == it->tile_offset.y);
    CHECK_INT(MagickGetImageColorspace(ours), MagickGetImageColorspace(theirs));
    char *po = props(ours), *pt = props(theirs);
    CHECK(po != NULL && pt != NULL && strcmp(po, pt) == 0);
    free(po);
    free(pt);
    printf("%-28s %5zux%-5zu q16 max %ld, 8-bit max %ld, %.1f ppm differ\n", what, cols, rows,
           d.q16_max, d.c8_max, d.c8_ppm);
    DestroyMagickWand(ours);
    DestroyMagickWand(theirs);
}

/* resize.c must decline: the image stays as it was. */
static void declined(const char *what, MagickWand *src, size_t cols, size_t rows)
{
    MagickWand *w = CloneMagickWand(src);
    size_t c0 = MagickGetImageWidth(w), r0 = MagickGetImageHeight(w);
    const char *why = NULL;
    CHECK(resize_fast(w, cols, rows, &why) == RESIZE_DECLINED);
    CHECK(why != NULL);
    CHECK_INT(MagickGetImageWidth(w), c0);
    CHECK_INT(MagickGetImageHeight(w), r0);
    printf("%-28s %5zux%-5zu declined: %s\n", what, cols, rows, why ? why : "?");
    DestroyMagickWand(w);
}

/* Random 16-bit samples; with `alpha`, random alpha too, about a quarter of the pixels fully
 * transparent and a quarter opaque. */
static MagickWand *noise_of(size_t cols, size_t rows, unsigned seed, bool alpha)
{
    size_t channels = alpha ? 4 : 3, n = cols * rows * channels;
    unsigned short *p = malloc(n * sizeof *p);
    uint32_t s = seed;
    for (size_t i = 0; p != NULL && i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (unsigned short)(s >> 16);
        if (alpha && i % 4 == 3 && (s >> 8) % 4 < 2) {
            p[i] = (s >> 8) % 4 == 0 ? 0 : 65535;
        }
    }
    MagickWand *w = NewMagickWand();
    PixelWand *background = NewPixelWand();
    PixelSetColor(background, alpha ? "none" : "black");
    CHECK(MagickNewImage(w, cols, rows, background) == MagickTrue);
    if (alpha) {
        CHECK(MagickSetImageAlphaChannel(w, ActivateAlphaChannel) == MagickTrue);
    }
    CHECK(p != NULL && MagickImportImagePixels(w, 0, 0, cols, rows, alpha ? "RGBA" : "RGB",
                                               ShortPixel, p) == MagickTrue);
    DestroyPixelWand(background);
    free(p);
    return w;
}

static MagickWand *noise(size_t cols, size_t rows, unsigned seed)
{
    return noise_of(cols, rows, seed, false);
}

static MagickBooleanType stop_now(const char *text, const MagickOffsetType offset,
                                  const MagickSizeType span, void *data)
{
    (void)text;
    (void)offset;
    (void)span;
    (void)data;
    return MagickFalse;
}

/* A resize of `src` to cols x rows under the progress monitor `m`: its result. */
static enum resize_result watched(MagickWand *src, size_t cols, size_t rows,
                                  MagickProgressMonitor m, void *data)
{
    MagickWand *w = CloneMagickWand(src);
    MagickSetImageProgressMonitor(w, m, data);
    const char *why = NULL;
    enum resize_result r = resize_fast(w, cols, rows, &why);
    DestroyMagickWand(w);
    return r;
}

/* What a progress monitor that lets the resize go on saw of it. */
struct seen {
    long calls, beyond; /* calls, and calls whose offset was past their span */
};

static MagickBooleanType watch(const char *text, const MagickOffsetType offset,
                               const MagickSizeType span, void *data)
{
    struct seen *s = data;
    if (strncmp(text, "Resize/Image", 12) == 0) {
        s->calls++;
        s->beyond += offset < 0 || (MagickSizeType)offset > span;
    }
    return MagickTrue;
}

/* The pages of the process's address space (/proc/self/statm), or -1. */
static long mapped_pages(void)
{
    long pages = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL && fscanf(f, "%ld", &pages) != 1) {
        pages = -1;
    }
    if (f != NULL) {
        fclose(f);
    }
    return pages;
}

/* How many filters one resize of `src` to cols x rows built (none: kept ones served). */
static unsigned long built_by(MagickWand *src, size_t cols, size_t rows)
{
    unsigned long before = resize_filters_built();
    MagickWand *w = CloneMagickWand(src);
    const char *why = NULL;
    CHECK(resize_fast(w, cols, rows, &why) == RESIZE_DONE);
    DestroyMagickWand(w);
    return resize_filters_built() - before;
}

/* A cols x rows image of one colour (16-bit red, green, blue, alpha; without an alpha channel
 * when opaque) resized to to_cols x to_rows: every output sample is exactly the source's (the
 * weights sum to 1, the sums round to nearest), as in ImageMagick's. */
static void flat(size_t cols, size_t rows, const unsigned short rgba[4], size_t to_cols,
                 size_t to_rows)
{
    size_t n = cols * rows;
    unsigned short *p = malloc(n * 4 * sizeof *p);
    for (size_t i = 0; p != NULL && i < 4 * n; i++) {
        p[i] = rgba[i % 4];
    }
    bool alpha = rgba[3] != 65535;
    MagickWand *w = noise_of(cols, rows, 0, alpha);
    CHECK(p != NULL &&
          MagickImportImagePixels(w, 0, 0, cols, rows, "RGBA", ShortPixel, p) == MagickTrue);
    free(p);
    same_as_imagemagick(alpha ? "flat colour+alpha" : "flat colour", w, to_cols, to_rows);
    const char *why = NULL;
    CHECK(resize_fast(w, to_cols, to_rows, &why) == RESIZE_DONE);
    size_t m = 0;
    unsigned short *q = pixels16(w, &m);
    long off = 0;
    for (size_t i = 0; q != NULL && i < m; i++) {
        off += q[i] != rgba[i % 4];
    }
    if (off != 0) {
        fprintf(stderr, "flat colour to %zux%zu: %ld samples changed\n", to_cols, to_rows, off);
    }
    CHECK(q != NULL && m == 4 * to_cols * to_rows && off == 0);
    free(q);
    DestroyMagickWand(w);
}

static void corpus(const char *path)
{
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    MagickWand *w = shrinkio_read(path);
    if (w == NULL) {
        fprintf(stderr, "%s: cannot read\n", path);
        CHECK(false);
        return;
    }
    size_t cols = MagickGetImageWidth(w), rows = MagickGetImageHeight(w);
    if ((double)cols * (double)rows > BUDGET_PIXELS) { /* keep the test quick */
        double f = sqrt(BUDGET_PIXELS / ((double)cols * (double)rows));
        cols = (size_t)((double)cols * f);
        rows = (size_t)((double)rows * f);
        CHECK(MagickScaleImage(w, cols, rows) == MagickTrue);
    }
    if (MagickGetImageAlphaChannel(w) == MagickTrue) {
        CHECK(MagickSetImageAlphaChannel(w, DeactivateAlphaChannel) == MagickTrue);
    }
    same_as_imagemagick(name, w, 800, 800 * rows / cols);
    same_as_imagemagick(name, w, 200, 200 * rows / cols);
    same_as_imagemagick(name, w, cols * 5 / 6, rows * 5 / 6);
    same_as_imagemagick(name, w, cols / 3 + 1, rows);
    /* with an alpha channel, the picture's own intensity (Mitchell, colours weighed by alpha) */
    char alpha_name[96];
    snprintf(alpha_name, sizeof alpha_name, "%.80s+alpha", name);
    CHECK(MagickSetImageAlphaChannel(w, CopyAlphaChannel) == MagickTrue);
    same_as_imagemagick(alpha_name, w, 800, 800 * rows / cols);
    same_as_imagemagick(alpha_name, w, cols / 3 + 1, rows);
    DestroyMagickWand(w);
}

int main(int argc, char **argv)
{
    struct cfg cfg;
    if (shrinkio_start("test_resize", &cfg) < 0) {
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        corpus(argv[i]);
    }

    const char *why = NULL;
    MagickWand *n = noise(301, 203, 1);
    same_as_imagemagick("noise", n, 150, 101);
    same_as_imagemagick("noise", n, 299, 203); /* one side only, just smaller */
    same_as_imagemagick("noise", n, 301, 7);   /* the other only, far smaller */
    same_as_imagemagick("noise", n, 1, 1);     /* to a single pixel */
    same_as_imagemagick("noise", n, 400, 100); /* wider, a smaller area: still Lanczos */
    same_as_imagemagick("noise", n, 37, 190);  /* each side its own factor */
    same_as_imagemagick("noise", n, 302, 204); /* larger: Mitchell */
    same_as_imagemagick("noise", n, 650, 220);
    same_as_imagemagick("noise", n, 280, 400); /* a larger area, one side smaller: Mitchell */
    declined("noise", n, 301, 203);            /* the same size: a copy */
    declined("noise", n, 0, 10);
    declined("noise", n, 10, 0);
    /* an area neither larger nor smaller (x_factor * y_factor == 1): Lanczos, as ImageMagick */
    MagickWand *n2 = noise(200, 100, 15);
    same_as_imagemagick("noise, the same area", n2, 100, 200);
    same_as_imagemagick("noise, the same area", n2, 400, 50);
    DestroyMagickWand(n2);
    /* a flat colour stays exactly that colour: odd widths (put_row's last pixel alone),
     * smaller and larger, opaque and with alpha */
    static const unsigned short opaque[4] = {12345, 54321, 777, 65535};
    static const unsigned short glass[4] = {40000, 3, 65534, 30001};
    flat(37, 23, opaque, 11, 7);
    flat(37, 23, opaque, 101, 51);
    flat(37, 23, opaque, 1, 1);
    flat(37, 23, glass, 13, 9);
    flat(37, 23, glass, 91, 47);

    MagickWand *na = noise_of(301, 203, 11, true);
    same_as_imagemagick("noise+alpha", na, 150, 101);
    same_as_imagemagick("noise+alpha", na, 37, 190);
    same_as_imagemagick("noise+alpha", na, 1, 1);
    same_as_imagemagick("noise+alpha", na, 500, 300);

    MagickWand *row = noise(997, 1, 2), *col = noise(1, 499, 3);
    same_as_imagemagick("one row", row, 100, 1);
    same_as_imagemagick("one column", col, 1, 50);
    MagickWand *narrow = noise(5, 1500, 18); /* to one column: put_row's last pixel only */
    same_as_imagemagick("narrow", narrow, 1, 1000);
    DestroyMagickWand(narrow);

    MagickWand *grey = noise(160, 120, 4);
    CHECK(MagickTransformImageColorspace(grey, GRAYColorspace) == MagickTrue);
    same_as_imagemagick("grey", grey, 64, 48);

    MagickWand *paged = noise(200, 100, 5);
    CHECK(MagickSetImagePage(paged, 640, 480, 33, -17) == MagickTrue);
    same_as_imagemagick("page offset", paged, 120, 60);
    same_as_imagemagick("page offset", paged, 150, 30); /* x and y scaled apart */
    same_as_imagemagick("page offset", paged, 90, 160);
    /* scaled page and tile offsets that round (CloneImage: sizes to nearest, offsets half down) */
    CHECK(MagickSetImagePage(paged, 643, 481, 32, -18) == MagickTrue);
    GetImageFromMagickWand(paged)->tile_offset = (RectangleInfo){0, 0, 12, 22};
    same_as_imagemagick("page offset, rounded", paged, 120, 60);
    /* offsets that scale to exactly a half (10 x 0.75, 6 x 0.25): rounded down, not up */
    CHECK(MagickSetImagePage(paged, 640, 480, 10, 6) == MagickTrue);
    same_as_imagemagick("page offset, a half", paged, 150, 25);

    MagickWand *alpha = noise(100, 100, 6); /* an alpha channel, opaque throughout */
    CHECK(MagickSetImageAlphaChannel(alpha, OpaqueAlphaChannel) == MagickTrue);
    same_as_imagemagick("opaque alpha", alpha, 50, 50);

    MagickWand *palette = noise(100, 100, 7);
    CHECK(MagickQuantizeImage(palette, 16, sRGBColorspace, 0, MagickFalse, MagickFalse) ==
          MagickTrue);
    CHECK(MagickSetImageType(palette, PaletteType) == MagickTrue);
    declined("palette", palette, 50, 50);

    MagickWand *cmyk = noise(100, 100, 8);
    CHECK(MagickTransformImageColorspace(cmyk, CMYKColorspace) == MagickTrue);
    declined("cmyk", cmyk, 50, 50);

    MagickWand *artifact = noise(100, 100, 9);
    CHECK(MagickSetImageArtifact(artifact, "filter:support", "2") == MagickTrue);
    declined("filter artifact", artifact, 50, 50);

    /* filters kept between resizes (filter_get): a kept filter is used again without being built
     * again, and gives what a new one gives, also once other sizes pushed it out and it was
     * built anew; a filter too large to keep is built for each resize */
    resize_forget();
    unsigned long built = resize_filters_built();
    MagickWand *fresh = CloneMagickWand(n);
    CHECK(resize_fast(fresh, 150, 101, &why) == RESIZE_DONE);
    CHECK_INT(resize_filters_built() - built, 2); /* 301 to 150, 203 to 101 */
    static const size_t others[][2] = {{140, 90}, {130, 80}, {120, 70}, {110, 60}, {100, 50}};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        same_as_imagemagick("noise, filters kept", n, others[i][0], others[i][1]);
    }
    for (int round = 0; round < 2; round++) { /* pushed out and built again, then kept */
        built = resize_filters_built();
        MagickWand *again = CloneMagickWand(n);
        CHECK(resize_fast(again, 150, 101, &why) == RESIZE_DONE);
        CHECK_INT(resize_filters_built() - built, round == 0 ? 2 : 0);
        size_t na16 = 0, nf16 = 0;
        unsigned short *pa = pixels16(again, &na16), *pf = pixels16(fresh, &nf16);
        CHECK(pa != NULL && pf != NULL && na16 == nf16 && memcmp(pa, pf, na16 * 2) == 0);
        free(pa);
        free(pf);
        DestroyMagickWand(again);
    }
    DestroyMagickWand(fresh);
    same_as_imagemagick("noise, filters kept", n, 150, 101);
    /* least recently used out: four filters kept (two resizes), the one used again stays */
    resize_forget();
    CHECK_INT(built_by(n, 150, 101), 2);
    CHECK_INT(built_by(n, 140, 90), 2);
    CHECK_INT(built_by(n, 150, 101), 0); /* both sizes kept at once */
    CHECK_INT(built_by(n, 130, 80), 2);  /* pushes out 140x90's, used less recently */
    CHECK_INT(built_by(n, 150, 101), 0);
    resize_forget(); /* every slot */
    CHECK_INT(built_by(n, 130, 80), 2);
    CHECK_INT(built_by(n, 150, 101), 2);
    MagickWand *long_row = noise(16000, 1, 14); /* 8000 taps of 15 weights: over 256 KB */
    for (int round = 0; round < 2; round++) {
        built = resize_filters_built();
        same_as_imagemagick("long row, filter not kept", long_row, 8000, 1);
        /* the wide one each time; the one of a single row (1 to 1) only the first time */
        CHECK_INT(resize_filters_built() - built, round == 0 ? 2 : 1);
    }
    /* the filters a resize builds for itself are freed after it: the heap does not grow over
     * resizes that each build an 8000-tap filter (600 KB); not under AddressSanitizer */
    size_t heap = 0;
    for (int round = 0; MEMORY_COUNTS && round < 6; round++) {
        heap = round == 1 ? mallinfo2().uordblks : heap; /* after a first one, for a steady state */
        MagickWand *again = CloneMagickWand(long_row);
        CHECK(resize_fast(again, 8000, 1, &why) == RESIZE_DONE);
        DestroyMagickWand(again);
    }
    CHECK(!MEMORY_COUNTS || mallinfo2().uordblks < heap + (1 << 20));
    DestroyMagickWand(long_row);
    /* a kept filter pushed out gives its pages back: the address space does not grow over
     * resizes to new sizes that each keep a 150 KB filter in the place of another */
    MagickWand *mid_row = noise(4000, 1, 19);
    resize_forget();
    long space = 0;
    for (int round = 0; MEMORY_COUNTS && round < 24; round++) {
        space = round == 4 ? mapped_pages() : space; /* once every slot is taken */
        CHECK_INT(built_by(mid_row, 2000 + (size_t)round, 1), round == 0 ? 2 : 1);
    }
    CHECK(!MEMORY_COUNTS || mapped_pages() - space < (1 << 20) / sysconf(_SC_PAGESIZE));
    DestroyMagickWand(mid_row);
    resize_forget();

    /* a progress monitor that stops it (the job's deadline): the resize fails */
    MagickWand *stopped = noise(400, 400, 10);
    MagickSetImageProgressMonitor(stopped, stop_now, NULL);
    CHECK(resize_fast(stopped, 100, 100, &why) == RESIZE_FAILED);
    CHECK(resize_fast(stopped, 600, 500, &why) == RESIZE_FAILED);
    CHECK(resize_fast(stopped, 300, 100, &why) == RESIZE_FAILED); /* horizontal pass first */
    CHECK(why != NULL && strstr(why, "progress monitor") != NULL);
    /* to 2x2: too few output rows to look at the monitor after; the source rows read do */
    MagickWand *big = noise(1000, 1000, 12);
    MagickSetImageProgressMonitor(big, stop_now, NULL);
    CHECK(resize_fast(big, 2, 2, &why) == RESIZE_FAILED);
    CHECK(why != NULL && strstr(why, "progress monitor") != NULL);
    CHECK(watched(big, 500, 2, stop_now, NULL) == RESIZE_FAILED); /* horizontal pass first */
    DestroyMagickWand(big);
    /* a small source to many output rows, both orders: the output rows look at the monitor */
    MagickWand *few = noise(30, 30, 16);
    CHECK(watched(few, 300, 200, stop_now, NULL) == RESIZE_FAILED); /* horizontal first */
    CHECK(watched(few, 200, 300, stop_now, NULL) == RESIZE_FAILED);
    DestroyMagickWand(few);
    /* the monitor's offsets stay within their spans (each source row read once), and it is
     * looked at now and then, not for every row (it reads the clock) */
    MagickWand *watch_me = noise(400, 400, 17);
    static const size_t sizes[][2] = {{100, 100}, {300, 100}, {600, 500}, {7, 390}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct seen s = {0, 0};
        CHECK(watched(watch_me, sizes[i][0], sizes[i][1], watch, &s) == RESIZE_DONE);
        CHECK(s.calls > 0);
        CHECK_INT(s.beyond, 0);
        CHECK(s.calls <= (long)(400 + sizes[i][1]) / 8);
    }
    DestroyMagickWand(watch_me);

    /* a far smaller output of a large image: the ring would hold 3000 rows of 3000 pixels */
    MagickWand *huge = noise(3000, 3000, 13);
    declined("large to tiny", huge, 6, 6);
    CHECK(resize_fast(huge, 6, 6, &why) == RESIZE_DECLINED && strcmp(why, "too large") == 0);
    DestroyMagickWand(huge);

    /* the output's pixels count in ImageMagick's memory limit while they are built: 3000x3000
     * (72 MB) has no room under 64 MB; 150x101 has, and is given back */
    MagickSizeType limit = GetMagickResourceLimit(MemoryResource);
    MagickSizeType used = GetMagickResource(MemoryResource);
    CHECK(SetMagickResourceLimit(MemoryResource, used + 64 * 1024 * 1024) != MagickFalse);
    declined("over the memory limit", n, 3000, 3000);
    CHECK(resize_fast(n, 3000, 3000, &why) == RESIZE_DECLINED &&
          strcmp(why, "beyond ImageMagick's memory limit") == 0);
    CHECK_INT(GetMagickResource(MemoryResource), used);
    MagickWand *small = CloneMagickWand(n);
    CHECK(resize_fast(small, 150, 101, &why) == RESIZE_DONE);
    DestroyMagickWand(small);
    CHECK_INT(GetMagickResource(MemoryResource), used);
    CHECK(SetMagickResourceLimit(MemoryResource, limit) != MagickFalse);

    /* ImageMagick's cache refuses the new size (its width limit): the resize fails, and the
     * image has its old size back */
    MagickSizeType width_limit = GetMagickResourceLimit(WidthResource);
    CHECK(SetMagickResourceLimit(WidthResource, 400) != MagickFalse);
    MagickWand *refused = CloneMagickWand(n);
    CHECK(resize_fast(refused, 500, 300, &why) == RESIZE_FAILED);
    CHECK(why != NULL && strcmp(why, "pixel cache") == 0);
    CHECK_INT(MagickGetImageWidth(refused), 301);
    CHECK_INT(MagickGetImageHeight(refused), 203);
    DestroyMagickWand(refused);
    CHECK(SetMagickResourceLimit(WidthResource, width_limit) != MagickFalse);

    MagickWand *all[] = {n, na, row, col, grey, paged, alpha, palette, cmyk, artifact, stopped};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        DestroyMagickWand(all[i]);
    }
    MagickWandTerminus();
    return check_summary("test_resize");
}
