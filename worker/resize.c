#include "resize.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define LOBES            3.0           /* Lanczos: sinc windowed by sinc, 3 lobes */
#define MITCHELL_SUPPORT 2.0           /* Mitchell-Netravali: a cubic of B = C = 1/3 */
#define MONITOR_EVERY    16            /* output rows between calls of the progress monitor */
#define WORK_BYTES_MAX   (64UL << 20)  /* beyond this, ImageMagick's resize and its pixel cache */
#define READS_PER_CHECK  64            /* source rows read between calls of the progress monitor */
#define FILTERS_KEPT     4             /* filters kept for the next resizes (filter_get) */
#define FILTER_KEPT_MAX  (256UL << 10) /* bytes: a larger filter serves its own resize only */

/* The functions of the hot loops start on a cache line: their speed then does not hang on the
 * size of the code linked before them (16 bytes more of process.c made a resize 20% slower) */
#define HOT_CODE __attribute__((aligned(64)))

/* One output sample's source span and normalised weights (n of them, from `start`). */
struct taps {
    long start;
    int n;
};

/* The filter ImageMagick's ResizeImage picks (for UndefinedFilter): Lanczos to shrink an opaque
 * true-colour image, Mitchell to enlarge it or for an image with alpha. */
struct kind {
    double (*weight)(double x); /* the filter at distance x, blur 1 */
    double support;             /* where it ends, at scale 1 */
    bool alpha;                 /* colours weighed by alpha (ImageMagick's matte images) */
};

struct filter {
    struct taps *taps; /* one per output sample */
    float *weights;    /* taps[i]'s weights at weights + i * max */
    int max;           /* most taps of any sample */
};

static double sinc(double x)
{
    if (x == 0.0) {
        return 1.0;
    }
    x *= 3.14159265358979323846; /* pi */
    return sin(x) / x;
}

/* ImageMagick's Lanczos weight: sinc(x) windowed by sinc(x / 3), blur 1. */
static double lanczos(double x)
{
    x = fabs(x);
    return sinc(x) * sinc(x / LOBES);
}

/* ImageMagick's Mitchell filter (its CubicBC with B = C = 1/3, no window). */
static double mitchell(double x)
{
    const double b = 1.0 / 3.0, c = 1.0 / 3.0;
    x = fabs(x);
    if (x < 1.0) {
        return ((6.0 - 2.0 * b) +
                x * x * ((-18.0 + 12.0 * b + 6.0 * c) + x * (12.0 - 9.0 * b - 6.0 * c))) /
               6.0;
    }
    if (x < 2.0) {
        return ((8.0 * b + 24.0 * c) +
                x * ((-12.0 * b - 48.0 * c) + x * ((6.0 * b + 30.0 * c) + x * (-b - 6.0 * c)))) /
               6.0;
    }
    return 0.0;
}

/* ImageMagick's PerceptibleReciprocal. */
static double reciprocal(double x)
{
    double sign = x < 0.0 ? -1.0 : 1.0;
    return sign * x >= MagickEpsilon ? 1.0 / x : sign / MagickEpsilon;
}

static void filter_free(struct filter *f)
{
    free(f->taps);
    free(f->weights);
    f->taps = NULL;
    f->weights = NULL;
}

/* The taps of each of `out` samples from `in` (ImageMagick's HorizontalFilter/VerticalFilter:
 * sample x centred at (x + 0.5) / factor, the filter stretched by 1 / factor when shrinking, the
 * weights divided by their sum). Returns 0, or -1 out of memory. */
static int filter_init(struct filter *f, const struct kind *k, size_t in, size_t out)
{
    double factor = (double)out / (double)in;
    double scale = fmax(1.0 / factor + MagickEpsilon, 1.0);
    double support = scale * k->support;
    scale = 1.0 / scale;
    f->max = (int)(2.0 * support) + 3;
    f->taps = calloc(out, sizeof *f->taps);
    f->weights = calloc(out * (size_t)f->max, sizeof *f->weights);
    double *w = malloc((size_t)f->max * sizeof *w);
    if (f->taps == NULL || f->weights == NULL || w == NULL) {
        filter_free(f);
        free(w);
        return -1;
    }
    for (size_t x = 0; x < out; x++) {
        double bisect = ((double)x + 0.5) / factor + MagickEpsilon;
        long start = (long)fmax(bisect - support + 0.5, 0.0);
        long stop = (long)fmin(bisect + support + 0.5, (double)in);
        int n = (int)(stop - start);
        n = n < 0 ? 0 : n > f->max ? f->max : n;
        double density = 0.0;
        for (int i = 0; i < n; i++) {
            w[i] = k->weight(scale * ((double)(start + i) - bisect + 0.5));
            density += w[i];
        }
        if (density != 0.0 && density != 1.0) {
            double r = reciprocal(density);
            for (int i = 0; i < n; i++) {
                w[i] *= r;
            }
        }
        f->taps[x] = (struct taps){start, n};
        for (int i = 0; i < n; i++) {
            f->weights[x * (size_t)f->max + (size_t)i] = (float)w[i];
        }
    }
    free(w);
    return 0;
}

/* Filters kept from earlier resizes: a fleet resizes the same sizes over and over, and building
 * a filter (two sines a Lanczos tap) takes as long as a pass of a 200-px thumbnail. Per thread,
 * least recently used first out. A kept filter is a copy in pages of its own (mmap), outside
 * malloc's heap: kept there, it moved where libjpeg's buffers of the next decode landed, and its
 * 3x3 scaled IDCT, most of an 800-px thumbnail of a progressive JPEG, took 15 % longer for two
 * of the corpus images (tests/bench/RESULTS.md). The resize that builds a filter uses and frees
 * the heap's copy, as it would without keeping. */
struct kept {
    double (*weight)(double x);
    double support;
    size_t in, out;
    unsigned long used; /* 0: empty */
    struct filter f;    /* in one mapping (filter_bytes), from f.taps */
};
static _Thread_local struct kept kept[FILTERS_KEPT];
static _Thread_local unsigned long kept_clock, built;

/* The bytes of a filter of `out` samples: its taps, then its weights. */
static size_t filter_bytes(const struct filter *f, size_t out)
{
    return out * (sizeof *f->taps + (size_t)f->max * sizeof *f->weights);
}

static void unkeep(struct kept *c)
{
    if (c->used != 0) {
        munmap(c->f.taps, filter_bytes(&c->f, c->out));
    }
    *c = (struct kept){0};
}

/* Keeps a copy of `f` (k, in to out) in slot c, if the pages can be had. */
static void keep(struct kept *c, const struct filter *f, const struct kind *k, size_t in,
                 size_t out)
{
    size_t bytes = filter_bytes(f, out), taps = out * sizeof *f->taps;
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        return;
    }
    memcpy(m, f->taps, taps);
    memcpy((char *)m + taps, f->weights, bytes - taps); /* (16-byte taps: floats stay aligned) */
    unkeep(c);
    *c = (struct kept){
        .weight = k->weight, .support = k->support, .in = in, .out = out, .used = ++kept_clock};
    c->f = (struct filter){m, (float *)(void *)((char *)m + taps), f->max};
}

/* The filter from `in` to `out` samples of kind k: a kept one (*own stays empty), or one built
 * now into *own, for the caller to free, and kept if small. NULL: out of memory. */
static const struct filter *filter_get(const struct kind *k, size_t in, size_t out,
                                       struct filter *own)
{
    struct kept *oldest = &kept[0];
    for (size_t i = 0; i < FILTERS_KEPT; i++) {
        struct kept *c = &kept[i];
        if (c->used != 0 && c->weight == k->weight && c->support == k->support && c->in == in &&
            c->out == out) {
            c->used = ++kept_clock;
            return &c->f;
        }
        oldest = c->used < oldest->used ? c : oldest;
    }
    if (filter_init(own, k, in, out) < 0) {
        return NULL;
    }
    built++;
    if (filter_bytes(own, out) <= FILTER_KEPT_MAX) {
        keep(oldest, own, k, in, out);
    }
    return own;
}

unsigned long resize_filters_built(void)
{
    return built;
}

void resize_forget(void)
{
    for (size_t i = 0; i < FILTERS_KEPT; i++) {
        unkeep(&kept[i]);
    }
}

/* The filter ImageMagick's ResizeImage would pick for this image and size into `*k`, or why this
 * resize is left to ImageMagick. */
static const char *choose(const Image *im, size_t columns, size_t rows, struct kind *k)
{
#if MAGICKCORE_QUANTUM_DEPTH != 16 || defined(MAGICKCORE_HDRI_SUPPORT)
    return "not ImageMagick Q16"; /* the passes store 16-bit integer samples */
#endif
    if (im->columns == 0 || im->rows == 0 || columns == 0 || rows == 0) {
        return "empty";
    }
    double x_factor = (double)columns / (double)im->columns;
    double y_factor = (double)rows / (double)im->rows;
    if (x_factor == 1.0 && y_factor == 1.0) {
        return "same size";
    }
    if (im->storage_class != DirectClass) {
        return "palette";
    }
    if (im->colorspace == CMYKColorspace) {
        return "cmyk";
    }
    ResetImageArtifactIterator(im);
    for (const char *a = GetNextImageArtifact(im); a != NULL; a = GetNextImageArtifact(im)) {
        if (strncmp(a, "filter:", 7) == 0) {
            return "filter artifact";
        }
    }
    bool alpha = im->matte != MagickFalse;
    *k = alpha || x_factor * y_factor > 1.0 ? (struct kind){mitchell, MITCHELL_SUPPORT, alpha}
                                            : (struct kind){lanczos, LOBES, false};
    return NULL;
}

/* A pixel as ImageMagick's PixelPacket holds it: blue, green, red, opacity, one Quantum each. The
 * passes filter all four (the opacity of an opaque image is 0 throughout and stays so), which
 * keeps every loop a plain run over the samples. */
#define SAMPLES 4
_Static_assert(sizeof(PixelPacket) == SAMPLES * sizeof(Quantum), "PixelPacket is 4 Quantum");

/* ImageMagick's ClampToQuantum as an int, written so that the compiler can do it four at a
 * time (the float to int conversion truncates, as ImageMagick's cast does). */
static int32_t to_quantum(float v)
{
    v = v > 0.0f ? v : 0.0f;
    v = v < (float)QuantumRange ? v : (float)QuantumRange;
    return (int32_t)(v + 0.5f);
}

/* `in` (in_columns pixels) filtered horizontally into `out` (columns pixels). */
HOT_CODE static void filter_h(const float *in, const struct filter *h, size_t columns, float *out)
{
    for (size_t x = 0; x < columns; x++) {
        const struct taps *t = &h->taps[x];
        const float *w = &h->weights[x * (size_t)h->max];
        const float *s = &in[SAMPLES * (size_t)t->start];
        float a[SAMPLES] = {0};
        for (int i = 0; i < t->n; i++) {
            for (int c = 0; c < SAMPLES; c++) {
                a[c] += w[i] * s[SAMPLES * i + c];
            }
        }
        for (int c = 0; c < SAMPLES; c++) {
            out[SAMPLES * x + c] = a[c];
        }
    }
}

/* How ImageMagick filters an image with alpha, a pixel at a time, in double precision (with a
 * filter's negative lobes the sum of the alpha weights can be small beside its terms): each
 * colour weighed by its pixel's alpha as well, the opacity as it is, and in the end the colours
 * divided by the sum of the alpha weights. `a` holds ALPHA_SUMS sums: the four samples' and the
 * alpha weights'. */
#define ALPHA_SUMS 5

static inline void alpha_add(double *a, const float *p, double w)
{
    double alpha = w * (1.0 / (double)QuantumRange) * ((double)QuantumRange - p[3]);
    a[0] += alpha * p[0];
    a[1] += alpha * p[1];
    a[2] += alpha * p[2];
    a[3] += w * (double)p[3];
    a[4] += alpha;
}

static inline void alpha_finish(const double *a, float *out)
{
    double g = reciprocal(a[4]);
    out[0] = (float)(g * a[0]);
    out[1] = (float)(g * a[1]);
    out[2] = (float)(g * a[2]);
    out[3] = (float)a[3];
}

/* filter_h for an image with alpha. */
HOT_CODE static void filter_h_alpha(const float *in, const struct filter *h, size_t columns,
                                    float *out)
{
    for (size_t x = 0; x < columns; x++) {
        const struct taps *t = &h->taps[x];
        const float *w = &h->weights[x * (size_t)h->max];
        const float *s = &in[SAMPLES * (size_t)t->start];
        double a[ALPHA_SUMS] = {0};
        for (int i = 0; i < t->n; i++) {
            alpha_add(a, &s[SAMPLES * i], w[i]);
        }
        alpha_finish(a, &out[SAMPLES * x]);
    }
}

/* Source row y as floats into `out` (im->columns pixels). */
static const char *get_row(Image *im, long y, float *out)
{
    const PixelPacket *p = GetVirtualPixels(im, 0, (ssize_t)y, im->columns, 1, &im->exception);
    if (p == NULL) {
        return "pixel cache";
    }
    const Quantum *q = (const Quantum *)p;
    for (size_t k = 0; k < SAMPLES * im->columns; k++) {
        out[k] = (float)q[k];
    }
    return NULL;
}

/* A ring of rows, each made once, for the vertical filter: row r is in slot r % count. */
struct ring {
    float *rows;
    long *held; /* the row in each slot, or -1 */
    size_t count, width;
};

/* Row y's slot; `*fresh` says whether the caller must make the row there first. */
static float *ring_slot(struct ring *r, long y, bool *fresh)
{
    size_t slot = (size_t)y % r->count;
    *fresh = r->held[slot] != y;
    r->held[slot] = y;
    return &r->rows[slot * r->width];
}

static void add_weighted(float *restrict acc, const float *restrict row, float w, size_t width)
{
    for (size_t k = 0; k < width; k++) {
        acc[k] += w * row[k];
    }
}

/* add_weighted for an image with alpha: `sums` holds ALPHA_SUMS a pixel, finished by
 * alpha_divide. */
static void add_weighted_alpha(double *sums, const float *row, float w, size_t pixels)
{
    for (size_t x = 0; x < pixels; x++) {
        alpha_add(&sums[ALPHA_SUMS * x], &row[SAMPLES * x], w);
    }
}

static void alpha_divide(const double *sums, size_t pixels, float *out)
{
    for (size_t x = 0; x < pixels; x++) {
        alpha_finish(&sums[ALPHA_SUMS * x], &out[SAMPLES * x]);
    }
}

/* Zeroes the vertical sums of `pixels` pixels: acc, or with alpha sums. */
static void clear_sums(const struct kind *k, float *acc, double *sums, size_t pixels)
{
    memset(acc, 0, SAMPLES * pixels * sizeof *acc);
    if (k->alpha) {
        memset(sums, 0, ALPHA_SUMS * pixels * sizeof *sums);
    }
}

/* One vertical step: row (`pixels` wide) weighed by w into acc, or into sums with alpha. */
static void add_row(const struct kind *k, float *acc, double *sums, const float *row, float w,
                    size_t pixels)
{
    if (k->alpha) {
        add_weighted_alpha(sums, row, w, pixels);
    } else {
        add_weighted(acc, row, w, SAMPLES * pixels);
    }
}

#ifdef __SSE2__
/* Four samples at once: to_quantum's clamp (MAXPS and MINPS keep the second operand for a NaN,
 * as its comparisons do) and truncation. */
static __m128i to_quantum4(__m128 v)
{
    v = _mm_max_ps(v, _mm_setzero_ps());
    v = _mm_min_ps(v, _mm_set1_ps((float)QuantumRange));
    return _mm_cvttps_epi32(_mm_add_ps(v, _mm_set1_ps(0.5f)));
}
#endif

/* Rounds and clamps an intermediate row as ImageMagick stores its intermediate image. */
static void quantize(float *row, size_t width)
{
    size_t k = 0;
#ifdef __SSE2__
    for (; k + 4 <= width; k += 4) {
        _mm_storeu_ps(row + k, _mm_cvtepi32_ps(to_quantum4(_mm_loadu_ps(row + k))));
    }
#endif
    for (; k < width; k++) {
        row[k] = (float)to_quantum(row[k]);
    }
}

/* A row of finished samples into the output's pixels. */
HOT_CODE static void put_row(const float *row, size_t columns, PixelPacket *out)
{
    Quantum *q = (Quantum *)out;
    size_t k = 0, n = SAMPLES * columns;
#ifdef __SSE2__
    /* 0 to 65535 as signed 16 bits for PACKSSDW, and back */
    const __m128i half = _mm_set1_epi32(32768), flip = _mm_set1_epi16((short)0x8000);
    for (; k + 8 <= n; k += 8) {
        __m128i a = _mm_sub_epi32(to_quantum4(_mm_loadu_ps(row + k)), half);
        __m128i b = _mm_sub_epi32(to_quantum4(_mm_loadu_ps(row + k + 4)), half);
        _mm_storeu_si128((__m128i *)(void *)(q + k), _mm_xor_si128(_mm_packs_epi32(a, b), flip));
    }
#endif
    for (; k < n; k++) {
        q[k] = (Quantum)to_quantum(row[k]);
    }
}

/* The buffers of a resize, all allocated before anything is changed (a failure declines). */
struct work {
    struct ring ring; /* h_first: filtered rows, `columns` wide; v_first: source rows */
    float *row;       /* a source row (h_first) or the intermediate row (v_first) */
    float *out;       /* the output row's sums, `columns` wide */
    double *sums;     /* with alpha, ALPHA_SUMS a pixel of the rows summed vertically */
    long reads;       /* source rows read so far */
};

static void work_free(struct work *w)
{
    free(w->ring.rows);
    free(w->ring.held);
    free(w->row);
    free(w->out);
    free(w->sums);
    memset(w, 0, sizeof *w);
}

/* Allocates the buffers; more than WORK_BYTES_MAX of them declines instead. */
static const char *work_init(struct work *w, const Image *im, const struct kind *k,
                             const struct filter *v, size_t columns, bool h_first)
{
    memset(w, 0, sizeof *w);
    size_t ring_px = h_first ? columns : im->columns;
    w->ring.count = (size_t)v->max < im->rows ? (size_t)v->max : im->rows;
    w->ring.width = SAMPLES * ring_px;
    double bytes = (double)w->ring.count * (double)w->ring.width * sizeof(float) +
                   (double)w->ring.count * sizeof(long) +
                   (double)(SAMPLES * im->columns + SAMPLES * columns) * sizeof(float) +
                   (k->alpha ? (double)(ALPHA_SUMS * ring_px) * sizeof(double) : 0.0);
    if (bytes > (double)WORK_BYTES_MAX) {
        return "too large";
    }
    w->ring.rows = malloc(w->ring.count * w->ring.width * sizeof *w->ring.rows);
    w->ring.held = malloc(w->ring.count * sizeof *w->ring.held);
    w->row = malloc(SAMPLES * im->columns * sizeof *w->row);
    w->out = malloc(SAMPLES * columns * sizeof *w->out);
    w->sums = k->alpha ? malloc(ALPHA_SUMS * ring_px * sizeof *w->sums) : NULL;
    if (w->ring.rows == NULL || w->ring.held == NULL || w->row == NULL || w->out == NULL ||
        (k->alpha && w->sums == NULL)) {
        work_free(w);
        return "out of memory";
    }
    for (size_t i = 0; i < w->ring.count; i++) {
        w->ring.held[i] = -1;
    }
    return NULL;
}

/* The image's progress monitor (the job's deadline): NULL to go on, or why it stops. */
static const char *monitor(const Image *im, MagickOffsetType done, MagickSizeType span)
{
    return SetImageProgress(im, "Resize/Image", done, span) == MagickFalse
               ? "stopped by the progress monitor"
               : NULL;
}

/* Source row y into `out`, with a look at the monitor every READS_PER_CHECK rows read (a far
 * smaller output has few rows of its own to look at it after). */
HOT_CODE static const char *read_row(Image *im, struct work *w, long y, float *out)
{
    const char *why = ++w->reads % READS_PER_CHECK == 0 ? monitor(im, w->reads, im->rows) : NULL;
    return why != NULL ? why : get_row(im, y, out);
}

/* After output row y: the monitor every MONITOR_EVERY rows. */
static const char *row_done(Image *im, size_t y, size_t rows)
{
    return y % MONITOR_EVERY == MONITOR_EVERY - 1 ? monitor(im, (MagickOffsetType)y, rows) : NULL;
}

/* Horizontal pass first (ImageMagick's order when the width grows more, or shrinks less, than
 * the height): each source row filtered once into the ring; each output row the weighted sum of
 * its ring rows. */
static const char *h_first(Image *im, const struct kind *k, const struct filter *h,
                           const struct filter *v, struct work *wk, size_t columns, size_t rows,
                           PixelPacket *pixels)
{
    size_t width = SAMPLES * columns;
    const char *why = NULL;
    for (size_t y = 0; why == NULL && y < rows; y++) {
        const struct taps *t = &v->taps[y];
        const float *w = &v->weights[y * (size_t)v->max];
        clear_sums(k, wk->out, wk->sums, columns);
        for (int i = 0; i < t->n; i++) {
            bool fresh;
            float *row = ring_slot(&wk->ring, t->start + i, &fresh);
            if (fresh) {
                if ((why = read_row(im, wk, t->start + i, wk->row)) != NULL) {
                    break;
                }
                (k->alpha ? filter_h_alpha : filter_h)(wk->row, h, columns, row);
                quantize(row, width);
            }
            add_row(k, wk->out, wk->sums, row, w[i], columns);
        }
        if (why != NULL) {
            break;
        }
        if (k->alpha) {
            alpha_divide(wk->sums, columns, wk->out);
        }
        put_row(wk->out, columns, pixels + y * columns);
        why = row_done(im, y, rows);
    }
    return why;
}

/* Vertical pass first (ImageMagick's order otherwise): each source row read once into the ring;
 * each output row the weighted sum of its ring rows, rounded as ImageMagick's intermediate image,
 * then filtered horizontally. */
static const char *v_first(Image *im, const struct kind *k, const struct filter *h,
                           const struct filter *v, struct work *wk, size_t columns, size_t rows,
                           PixelPacket *pixels)
{
    size_t width = SAMPLES * im->columns;
    const char *why = NULL;
    for (size_t y = 0; why == NULL && y < rows; y++) {
        const struct taps *t = &v->taps[y];
        const float *w = &v->weights[y * (size_t)v->max];
        clear_sums(k, wk->row, wk->sums, im->columns);
        for (int i = 0; i < t->n; i++) {
            bool fresh;
            float *row = ring_slot(&wk->ring, t->start + i, &fresh);
            if (fresh && (why = read_row(im, wk, t->start + i, row)) != NULL) {
                break;
            }
            add_row(k, wk->row, wk->sums, row, w[i], im->columns);
        }
        if (why != NULL) {
            break;
        }
        if (k->alpha) {
            alpha_divide(wk->sums, im->columns, wk->row);
        }
        quantize(wk->row, width);
        (k->alpha ? filter_h_alpha : filter_h)(wk->row, h, columns, wk->out);
        put_row(wk->out, columns, pixels + y * columns);
        why = row_done(im, y, rows);
    }
    return why;
}

/* The scaled page geometry ImageMagick's CloneImage gives an image resized from from_columns x
 * from_rows to columns x rows. */
static void scale_page(Image *im, size_t from_columns, size_t from_rows, size_t columns,
                       size_t rows)
{
    double sx = (double)columns / (double)from_columns, sy = (double)rows / (double)from_rows;
    im->page.width = (size_t)floor(sx * (double)im->page.width + 0.5);
    im->page.height = (size_t)floor(sy * (double)im->page.height + 0.5);
    im->page.x = (ssize_t)ceil(sx * (double)im->page.x - 0.5);
    im->page.y = (ssize_t)ceil(sy * (double)im->page.y - 0.5);
    im->tile_offset.x = (ssize_t)ceil(sx * (double)im->tile_offset.x - 0.5);
    im->tile_offset.y = (ssize_t)ceil(sy * (double)im->tile_offset.y - 0.5);
}

/* Copies the finished pixels into the image, resized to columns x rows, its page geometry scaled.
 * If ImageMagick's cache refuses the new size, the image gets its old size back but its pixels
 * may be gone: the caller fails the job. */
static const char *store(Image *im, const PixelPacket *pixels, size_t columns, size_t rows)
{
    size_t old_columns = im->columns, old_rows = im->rows;
    if (SetImageExtent(im, columns, rows) == MagickFalse) {
        im->columns = old_columns;
        im->rows = old_rows;
        return "pixel cache";
    }
    scale_page(im, old_columns, old_rows, columns, rows);
    for (size_t y = 0; y < rows; y++) {
        PixelPacket *q = QueueAuthenticPixels(im, 0, (ssize_t)y, columns, 1, &im->exception);
        if (q == NULL) {
            return "pixel cache";
        }
        memcpy(q, pixels + y * columns, columns * sizeof *q);
        if (SyncAuthenticPixels(im, &im->exception) == MagickFalse) {
            return "pixel cache";
        }
    }
    return NULL;
}

HOT_CODE enum resize_result resize_fast(MagickWand *w, size_t columns, size_t rows,
                                        const char **why)
{
    Image *im = GetImageFromMagickWand(w);
    struct kind k;
    *why = im == NULL ? "no image" : choose(im, columns, rows, &k);
    if (*why != NULL) {
        return RESIZE_DECLINED;
    }
    bool horizontal_first = (double)columns / (double)im->columns > (double)rows / (double)im->rows;
    struct filter own_h = {0}, own_v = {0}; /* filters built for this resize (filter_get) */
    const struct filter *h = NULL, *v = NULL;
    struct work wk = {0};
    PixelPacket *pixels = NULL;
    MagickSizeType held = 0; /* the output's bytes, counted in ImageMagick's memory resource */
    if (columns > SIZE_MAX / sizeof *pixels / rows ||
        (h = filter_get(&k, im->columns, columns, &own_h)) == NULL ||
        (v = filter_get(&k, im->rows, rows, &own_v)) == NULL) {
        *why = "out of memory";
    } else {
        *why = work_init(&wk, im, &k, v, columns, horizontal_first);
    }
    if (*why == NULL) {
        size_t bytes = columns * rows * sizeof *pixels;
        if (AcquireMagickResource(MemoryResource, bytes) == MagickFalse) {
            *why = "beyond ImageMagick's memory limit";
        } else {
            held = bytes;
            pixels = malloc(bytes);
            *why = pixels == NULL ? "out of memory" : NULL;
        }
    }
    if (*why != NULL) { /* nothing changed yet: ImageMagick may still manage */
        RelinquishMagickResource(MemoryResource, held);
        work_free(&wk);
        filter_free(&own_h);
        filter_free(&own_v);
        return RESIZE_DECLINED;
    }
    *why = horizontal_first ? h_first(im, &k, h, v, &wk, columns, rows, pixels)
                            : v_first(im, &k, h, v, &wk, columns, rows, pixels);
    if (*why == NULL) {
        *why = store(im, pixels, columns, rows);
    }
    work_free(&wk);
    filter_free(&own_h);
    filter_free(&own_v);
    free(pixels);
    RelinquishMagickResource(MemoryResource, held);
    return *why == NULL ? RESIZE_DONE : RESIZE_FAILED;
}
