/* magick_test: what the unit tests of operations share: ImageMagick started as the worker starts
 * it, and images of one colour. */
#ifndef PIXQ_TEST_MAGICK_TEST_H
#define PIXQ_TEST_MAGICK_TEST_H

#include <stdio.h>
#include <wand/MagickWand.h>

#include "cfg.h"
#include "check.h"
#include "err.h"
#include "image.h"

/* Starts ImageMagick with the default configuration and an hour for each operation, so that a
 * slow machine (valgrind) is never past the deadline. Returns 0, or -1 after printing why under
 * the test's `name`. */
static inline int test_img_start(const char *name)
{
    static struct cfg cfg;
    struct img_config ic;
    struct err e = {{0}};
    cfg_defaults(&cfg);
    if (img_config_from(&cfg, &ic, &e) == 0) {
        ic.time_s = 3600;
        if (img_start(&ic, &e) == 0) {
            return 0;
        }
    }
    fprintf(stderr, "%s: %s\n", name, e.msg);
    return -1;
}

/* A w x h image of `color`, to destroy; NULL (a CHECK failed) if it could not be made. */
static inline MagickWand *solid(long w, long h, const char *color)
{
    PixelWand *p = NewPixelWand();
    PixelSetColor(p, color);
    struct err e = {{0}};
    MagickWand *wand = img_solid(w, h, p, &e);
    DestroyPixelWand(p);
    CHECK(wand != NULL);
    return wand;
}

#endif
