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
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 320, 400), 2);   /* min(8, 4): the smaller */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 883, 552), 4);   /* 2.9: floored to 2, not 3 */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 320, 0), 8);     /* either side missing */
    CHECK_INT(shrink_libjpeg_scale(2560, 1600, 3000, 2000), 8); /* denominator 0: never hinted */
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

/* The sizing functions' own rules, each where it decides the scale. */
static void test_sizing_fns(void)
{
    /* only_shrink_larger: the full image and the 3/8 decode are shrunk (to 800x500); the 1/8 and
     * 1/4 ones, smaller than both sides, would be kept as they are */
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fit\", \"params\": {\"width\": 3000, \"height\": "
                        "500, \"only_shrink_larger\": true}, \"save\": {\"image_identifier\": "
                        "\"a\"}}]",
                        2560, 1600, 0, false, NULL),
              3);
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fit\", \"params\": {\"width\": 200, \"height\": "
                        "200, \"only_shrink_larger\": true}, \"save\": {\"image_identifier\": "
                        "\"a\"}}]",
                        2560, 1600, 0, false, NULL),
              1);
    /* no size at all, resize without its height, resize with scale_factor too: full */
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fit\", \"save\": {\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              8);
    CHECK_INT(scale_for("[{\"name\": \"resize\", \"params\": {\"width\": 300}, \"save\": "
                        "{\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              8);
    CHECK_INT(scale_for("[{\"name\": \"resize\", \"params\": {\"width\": 300, \"height\": 100, "
                        "\"scale_factor\": 0.5}, \"save\": {\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              8);
    /* resize and scale: exactly W x H, from a decode at least that large on both sides */
    CHECK_INT(scale_for("[{\"name\": \"scale\", \"params\": {\"width\": 300, \"height\": 100}, "
                        "\"save\": {\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              1);
    CHECK_INT(scale_for("[{\"name\": \"resize\", \"params\": {\"width\": 320, \"height\": 200}, "
                        "\"save\": {\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              1);
    CHECK_INT(scale_for("[{\"name\": \"resize\", \"params\": {\"width\": 300, \"height\": 250}, "
                        "\"save\": {\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              2);
    /* resize_to_fill crops what it resized: that must have the same size (2500x1505 filling
     * 50x72 resizes to 120x72, its 1/8 and 1/4 decodes to 119x72), sides rounded half up
     * (50x50: 83x50 from every decode) */
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fill\", \"params\": {\"width\": 50, \"height\": "
                        "72}, \"save\": {\"image_identifier\": \"a\"}}]",
                        2500, 1505, 0, false, NULL),
              3);
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fill\", \"params\": {\"width\": 50, \"height\": "
                        "50}, \"save\": {\"image_identifier\": \"a\"}}]",
                        2500, 1505, 0, false, NULL),
              1);
    /* a decode exactly as wide as the box but taller (320x200 for 320x100) is resized and
     * cropped as the full image is, not kept as it is: 1/8 */
    CHECK_INT(scale_for("[{\"name\": \"resize_to_fill\", \"params\": {\"width\": 320, \"height\": "
                        "100}, \"save\": {\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              1);
    /* pad_resize_to_fit places what it resized: the same size too (200x120 from 2500x1505 and
     * its 3/8 decode, 200x121 from the 1/8 and 1/4 ones) */
    CHECK_INT(scale_for("[{\"name\": \"pad_resize_to_fit\", \"params\": {\"width\": 200, "
                        "\"height\": 200}, \"save\": {\"image_identifier\": \"a\"}}]",
                        2500, 1505, 0, false, NULL),
              3);
    /* a box that is not square: 210x131 from 2560x1600 and its 1/8 decode (320x200), which
     * 330x210 would enlarge */
    CHECK_INT(scale_for("[{\"name\": \"pad_resize_to_fit\", \"params\": {\"width\": 210, "
                        "\"height\": 330}, \"save\": {\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              1);
    /* only_resize_larger, the image taller than the box: resized as without it */
    CHECK_INT(scale_for("[{\"name\": \"pad_resize_to_fit\", \"params\": {\"width\": 3000, "
                        "\"height\": 500, \"only_resize_larger\": true}, \"save\": "
                        "{\"image_identifier\": \"a\"}}]",
                        2560, 1600, 0, false, NULL),
              3);
    /* an 8x8 JPEG to 3x3: the 3/8 hint (2x2) would make libjpeg decode at 2/8 (2x2): 4/8 */
    CHECK_INT(scale_for("[{\"name\": \"resize\", \"params\": {\"width\": 3, \"height\": 3}, "
                        "\"save\": {\"image_identifier\": \"a\"}}]",
                        8, 8, 0, false, NULL),
              4);
}

/* Every pixel-by-pixel function may come first; nothing sized by pixel values may come later. */
static void test_functions(void)
{
    static const char *const pixel[] = {
        "no_op",         "gray_colorspace", "sepia_tone", "modulate", "contrast",
        "gamma_channel", "level",           "levelize",   "density",  "delete_profile",
    };
    char tree[512];
    for (size_t i = 0; i < sizeof pixel / sizeof pixel[0]; i++) {
        snprintf(tree, sizeof tree, "[{\"name\": \"%s\", \"functions\": [" FIT(200, 200) "]}]",
                 pixel[i]);
        CHECK_INT(scale_for(tree, 2560, 1600, 0, false, NULL), 1);
    }
    /* a pixel-by-pixel function before a crop in source pixels */
    CHECK_INT(scale_for("[{\"name\": \"modulate\", \"functions\": [{\"name\": \"crop\", "
                        "\"params\": {\"width\": 50, \"height\": 50}, \"save\": "
                        "{\"image_identifier\": \"a\"}}]}]",
                        2560, 1600, 0, false, NULL),
              8);
    static const char *const value_sized[] = {"trim", "deskew"};
    for (size_t i = 0; i < sizeof value_sized / sizeof value_sized[0]; i++) {
        /* two levels below the resize */
        snprintf(tree, sizeof tree,
                 "[{\"name\": \"resize_to_fit\", \"params\": {\"width\": 100}, \"functions\": "
                 "[{\"name\": \"no_op\", \"functions\": [{\"name\": \"%s\", \"save\": "
                 "{\"image_identifier\": \"d\"}}]}]}]",
                 value_sized[i]);
        CHECK_INT(scale_for(tree, 2560, 1600, 0, false, NULL), 8);
    }
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
    /* LeftTop to LeftBottom turn the image, the others do not */
    for (int o = UndefinedOrientation; o <= LeftBottomOrientation; o++) {
        CHECK_INT(scale_for(tree, 4000, 1000, o, false, NULL), o >= LeftTopOrientation ? 1 : 2);
    }
    /* a tall box: turned, 1000x4000 needs 1/4 (250x1000) for 200x800; unknown orientation but
     * suppress_auto_orient: upright only, 1/8 */
    CHECK_INT(scale_for("[" FIT(200, 800) "]", 4000, 1000, -1, true, NULL), 1);
    CHECK_INT(scale_for("[" FIT(200, 800) "]", 4000, 1000, -1, false, NULL), 2);
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
    test_sizing_fns();
    test_functions();
    test_orientation();
    test_refused();
    test_allowed();
    return check_summary("shrink");
}
