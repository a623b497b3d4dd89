/* img_start: ImageMagick started for a unit test of operations, as the worker starts it (the
 * default configuration), with an hour for each operation so that a slow machine (valgrind) is
 * never past the deadline. */
#ifndef PIXQ_TEST_IMG_START_H
#define PIXQ_TEST_IMG_START_H

#include <stdio.h>

#include "cfg.h"
#include "err.h"
#include "image.h"

/* Returns 0, or -1 after printing why under the test's `name`. */
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

#endif
