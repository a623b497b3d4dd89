/* props-dump [--plain] FILE [WIDTH HEIGHT]: every property of an image, one "name=value" line
 * each in ImageMagick's order (by name), as the worker reads it (img_probe, then img_read with
 * the size hint WIDTH x HEIGHT: a reduced decoder where one takes the file) or, with --plain, as
 * ImageMagick's own MagickReadImageBlob() reads it. tests/shrink/test_pngshrink.py compares the
 * two for PNGs with text chunks. Exit 0, 1 on errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "err.h"
#include "image.h"
#include "log.h"
#include "shrinkio.h"

static void print_properties(MagickWand *w)
{
    size_t n = 0;
    char **names = MagickGetImageProperties(w, "*", &n);
    for (size_t i = 0; i < n; i++) {
        char *v = MagickGetImageProperty(w, names[i]);
        printf("%s=%s\n", names[i], v != NULL ? v : "(null)");
        MagickRelinquishMemory(v);
        MagickRelinquishMemory(names[i]);
    }
    MagickRelinquishMemory(names);
}

/* The worker's reading of `data` with the hint w x h (0 x 0: none), or NULL with `e` set. */
static MagickWand *worker_read(const unsigned char *data, size_t len, long w, long h, struct err *e)
{
    struct img_probe p;
    MagickWand *wand = img_probe(data, len, 100000000L, &p, e);
    if (wand != NULL && !p.decoded) {
        DestroyMagickWand(wand);
        wand = img_read(data, len, &p, w, h, e);
    }
    return wand;
}

int main(int argc, char **argv)
{
    int a = argc > 1 && strcmp(argv[1], "--plain") == 0 ? 2 : 1;
    if (argc != a + 1 && argc != a + 3) {
        fprintf(stderr, "usage: props-dump [--plain] FILE [WIDTH HEIGHT]\n");
        return 1;
    }
    struct cfg cfg;
    if (shrinkio_start("props-dump", &cfg) < 0) {
        return 1;
    }
    log_threshold = (enum log_level)cfg.log_level; /* PIXQ_LOG_LEVEL=debug: the readers' events */
    struct err e = {{0}};
    size_t len = 0;
    unsigned char *data = shrinkio_slurp(argv[a], &len);
    long w = argc == a + 3 ? strtol(argv[a + 1], NULL, 10) : 0;
    long h = argc == a + 3 ? strtol(argv[a + 2], NULL, 10) : 0;
    MagickWand *wand = NULL;
    if (a == 2) {
        wand = NewMagickWand();
        if (MagickReadImageBlob(wand, data, len) == MagickFalse) {
            wand = DestroyMagickWand(wand);
            snprintf(e.msg, sizeof e.msg, "ImageMagick cannot read %s", argv[a]);
        }
    } else {
        wand = worker_read(data, len, w, h, &e);
    }
    free(data);
    if (wand != NULL) {
        print_properties(wand);
        DestroyMagickWand(wand);
    } else {
        fprintf(stderr, "props-dump: %s\n", e.msg);
    }
    img_shutdown();
    return wand != NULL && fflush(stdout) == 0 ? 0 : 1;
}
