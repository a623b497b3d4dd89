/* resize_bench: worker/resize.h's resize against ImageMagick's own (MagickResizeImage with
 * UndefinedFilter, blur 1: what PIXQ_FAST_RESIZE=0 runs), on the same image, in one process.
 *
 *   resize_bench [--runs N] [--alpha] --source WxH IMAGE TARGET...
 *
 * IMAGE is read (its format from its name: .jpg, .png, .webp), scaled to the source size WxH
 * with a box filter, and given an alpha channel of its own intensity with --alpha. For each
 * TARGET (WxH) both resizes run on clones of it, alternately, N times (default 21), one untimed
 * pair first. One JSON line per target:
 *   {"source": [w, h], "target": [w, h], "alpha": 0|1, "runs": N, "pixq_ms": median,
 *    "imagemagick_ms": median, "taken": 0|1}
 * ("taken": whether resize.h took it rather than declining). Bad usage exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "image.h"
#include "resize.h"
#include "shrinkio.h"

#define MAX_RUNS 1000

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static bool size_of(const char *s, size_t *w, size_t *h)
{
    char *end;
    unsigned long a = strtoul(s, &end, 10);
    if (end == s || *end != 'x') {
        return false;
    }
    const char *t = end + 1;
    unsigned long b = strtoul(t, &end, 10);
    *w = a;
    *h = b;
    return end != t && *end == '\0' && a > 0 && b > 0 && a <= 65535 && b <= 65535;
}

static MagickWand *load(const char *path, size_t w, size_t h, bool alpha)
{
    MagickWand *m = shrinkio_read(path);
    if (m != NULL && (MagickScaleImage(m, w, h) == MagickFalse ||
                      MagickSetImageAlphaChannel(
                          m, alpha ? CopyAlphaChannel : DeactivateAlphaChannel) == MagickFalse)) {
        return DestroyMagickWand(m);
    }
    return m;
}

int main(int argc, char **argv)
{
    long runs = 21;
    bool alpha = false;
    size_t sw = 0, sh = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--alpha") == 0) {
            alpha = true;
        } else if (strcmp(argv[i], "--source") == 0 && i + 1 < argc &&
                   size_of(argv[i + 1], &sw, &sh)) {
            i++;
        } else {
            break;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || sw == 0 || argc - i < 2) {
        fprintf(stderr, "usage: resize_bench [--runs N] [--alpha] --source WxH IMAGE TARGET...\n");
        return 2;
    }
    struct cfg cfg;
    if (shrinkio_start("resize_bench", &cfg) < 0) {
        return 1;
    }
    MagickWand *src = load(argv[i], sw, sh, alpha);
    if (src == NULL) {
        fprintf(stderr, "resize_bench: cannot read %s\n", argv[i]);
        return 1;
    }
    double *ours = calloc((size_t)runs, sizeof *ours),
           *theirs = calloc((size_t)runs, sizeof *theirs);
    for (int t = i + 1; t < argc && ours != NULL && theirs != NULL; t++) {
        size_t tw, th;
        if (!size_of(argv[t], &tw, &th)) {
            fprintf(stderr, "resize_bench: bad target %s\n", argv[t]);
            return 2;
        }
        bool taken = true;
        for (long r = -1; r < runs; r++) {
            MagickWand *a = CloneMagickWand(src), *b = CloneMagickWand(src);
            const char *why;
            double t0 = now_ms();
            taken = resize_fast(a, tw, th, &why) == RESIZE_DONE;
            double t1 = now_ms();
            MagickResizeImage(b, tw, th, UndefinedFilter, 1.0);
            double t2 = now_ms();
            if (r >= 0) {
                ours[r] = t1 - t0;
                theirs[r] = t2 - t1;
            }
            DestroyMagickWand(a);
            DestroyMagickWand(b);
        }
        qsort(ours, (size_t)runs, sizeof *ours, by_value);
        qsort(theirs, (size_t)runs, sizeof *theirs, by_value);
        printf("{\"source\": [%zu, %zu], \"target\": [%zu, %zu], \"alpha\": %d, \"runs\": %ld, "
               "\"pixq_ms\": %.3f, \"imagemagick_ms\": %.3f, \"taken\": %d}\n",
               sw, sh, tw, th, alpha ? 1 : 0, runs, ours[runs / 2], theirs[runs / 2],
               taken ? 1 : 0);
    }
    free(ours);
    free(theirs);
    DestroyMagickWand(src);
    return 0;
}
