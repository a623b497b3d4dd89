/* Unit tests of worker/shrink.c: the scale shrink-on-load chooses for a function tree. */
#include <stdbool.h>
#include <string.h>
#include <wand/MagickWand.h>

#include "check.h"
#include "job.h"
#include "shrink.h"

/* The plan for the job `functions` (a JSON array) on a w x h source; scale 8 when none. */
static int scale_for(const char *functions, long w, long h, int orientation, bool suppress,
                     struct shrink_plan *plan)
{
    char text[2048];
    snprintf(text, sizeof text, "{\"src\": \"x\", \"suppress_auto_orient\": %s, \"functions\": %s}",
             suppress ? "true" : "false", functions);
    const struct job_limits lim = {1 << 20, 32, 100, 0, 0};
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &lim, &e);
    CHECK(j != NULL && j->error[0] == '\0');
    if (j == NULL) {
        return -1;
    }
    struct shrink_plan p;
    int m = shrink_plan(j, w, h, orientation, &p) ? p.scale : SHRINK_DENOM;
    if (plan != NULL) {
        *plan = p;
    }
    job_destroy(j);
    return m;
}

#define FIT(W, H)                                                                                  \
    "{\"name\": \"resize_to_fit\", \"params\": {\"width\": " #W ", \"height\": " #H "}, "          \
    "\"save\": {\"image_identifier\": \"a\"}}"

static void test_libjpeg_rule(void)
{
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 320, 200), 1);  /* denominator 8 */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 640, 400), 2);  /* 4: 2/8 */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 853, 533), 3);  /* 3: 3/8 */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 1280, 800), 4); /* 2: 4/8 */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 500, 400), 2);  /* min(5.1, 4) = 4 */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 2560, 1600), 8);
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 0, 0), 8);
}

static void test_sizes(void)
{
    struct shrink_plan p;
    CHECK_INT(scale_for("[" FIT(200, 200) "]", 2560, 1600, 0, false, &p), 1);
    CHECK_INT(p.width, 320);
    CHECK_INT(p.height, 200);
    CHECK_INT(p.hint_w, 320);
    CHECK_INT(p.hint_h, 200);
    CHECK_INT(scale_for("[" FIT(800, 800) "]", 2560, 1600, 0, false, &p), 3);
    CHECK_INT(p.width, 960);
    CHECK_INT(scale_for("[" FIT(1500, 1500) "]", 2560, 1600, 0, false, NULL), 8);
    /* the largest output decides: siblings */
    CHECK_INT(scale_for("[" FIT(100, 100) ", " FIT(600, 600) "]", 2560, 1600, 0, false, NULL), 2);
    /* an upscale: no reduced decode */
    CHECK_INT(scale_for("[" FIT(3000, 3000) "]", 2560, 1600, 0, false, NULL), 8);
}

static void test_orientation(void)
{
    /* 4000x1000 stored, 200 px tall box: upright the width binds (800x200 needs 1/4 of 4000
     * wide: 1000x250), turned (1000x4000 -> 50x200) 1/8 would do, but unknown must do both */
    const char *tree = "[" FIT(800, 200) "]";
    CHECK_INT(scale_for(tree, 4000, 1000, TopLeftOrientation, false, NULL), 2);
    CHECK_INT(scale_for(tree, 4000, 1000, RightTopOrientation, false, NULL), 1);
    CHECK_INT(scale_for(tree, 4000, 1000, -1, false, NULL), 2);
    /* suppress_auto_orient: the stored orientation counts */
    CHECK_INT(scale_for(tree, 4000, 1000, RightTopOrientation, true, NULL), 2);
}

static void test_refused(void)
{
    /* a crop in source pixels first, a full-size save, relative sizes, sizes from pixel values */
    CHECK_INT(scale_for("[{\"name\": \"crop\", \"params\": {\"x\": 10, \"y\": 10, \"width\": 500, "
                        "\"height\": 500}, \"functions\": [" FIT(100, 100) "]}]",
                        2560, 1600, 0, false, NULL),
              8);
    CHECK_INT(scale_for("[{\"name\": \"no_op\", \"save\": {\"image_identifier\": \"b\"}}, " FIT(
                            100, 100) "]",
                        2560, 1600, 0, false, NULL),
              8);
    CHECK_INT(scale_for("[{\"name\": \"resize\", \"params\": {\"scale_factor\": 0.1}, \"save\": "
                        "{\"image_identifier\": \"c\"}}]",
                        2560, 1600, 0, false, NULL),
              8);
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fit\", \"params\": {\"width\": 100}, "
                        "\"functions\": [{\"name\": \"trim\", \"save\": {\"image_identifier\": "
                        "\"d\"}}]}]",
                        2560, 1600, 0, false, NULL),
              8);
    CHECK_INT(scale_for("[{\"name\": \"blur\", \"functions\": [" FIT(100, 100) "]}]", 2560, 1600, 0,
                        false, NULL),
              8);
}

static void test_allowed(void)
{
    /* pixel-by-pixel functions first, crops after the resize (same coordinates either way) */
    CHECK_INT(scale_for("[{\"name\": \"modulate\", \"params\": {\"saturation\": 1.2}, "
                        "\"functions\": [{\"name\": \"resize_to_fill\", \"params\": {\"width\": "
                        "150, \"height\": 150}, \"functions\": [{\"name\": \"crop\", \"params\": "
                        "{\"x\": 5, \"y\": 5, \"width\": 50, \"height\": 50}, \"save\": "
                        "{\"image_identifier\": \"e\"}}]}]}]",
                        2560, 1600, 0, false, NULL),
              1);
    /* only_shrink_larger on an image already smaller: it would stay at its size, so full */
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fit\", \"params\": {\"width\": 3000, "
                        "\"only_shrink_larger\": true}, \"save\": {\"image_identifier\": "
                        "\"f\"}}]",
                        2560, 1600, 0, false, NULL),
              8);
    /* 2500x1505 fits 200x200 as 200x120, its 1/8 and 1/4 decodes (313x189, 625x377) as
     * 200x121: 3/8 (938x565) */
    CHECK_INT(scale_for("[" FIT(200, 200) "]", 2500, 1505, 0, false, NULL), 3);
}

int main(void)
{
    test_libjpeg_rule();
    test_sizes();
    test_orientation();
    test_refused();
    test_allowed();
    return check_summary("shrink");
}
