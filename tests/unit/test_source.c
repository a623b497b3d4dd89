/* Unit tests of a job's sources (worker/source.c) through its public functions: the store of
 * pre_process images and its limit, canvas sources and the pixel limit, how a src is named in an
 * error (src_shown, src_quoted_in, src_blame), src_list's two shapes, and src_describe's
 * original_meta from EXIF properties set on an image of one colour (GPS in decimal degrees, the
 * ISO date's checks, the count of EXIF entries, the hashes and density_info). No network: URL
 * sources come from a fetch callback that hands over fixed bytes. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wand/MagickWand.h>

#include "check.h"
#include "err.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "magick_test.h"
#include "process.h"
#include "shrink.h"
#include "source.h"

/* src_fetch_fn: the bytes of the NUL-terminated string `user`, whatever the src. */
static int fetch_text(void *user, json_object *src, struct buf *out, struct err *e)
{
    (void)src;
    const char *text = user;
    if (buf_append(out, text, strlen(text)) < 0) {
        return err_set(e, "out of memory");
    }
    return 0;
}

/* ---------------------------------------------------------------- references */

static void test_reference_missing_without_a_store(void)
{
    struct src_loader l = {.max_pixels = 1000000};
    struct src_image im;
    struct err e = {{0}};
    json_object *src = json_object_new_string("&nothing");
    CHECK_INT(src_open(&l, src, &im, &e), -1);
    CHECK_STR(e.msg, "Image reference 'nothing' not found. Preprocessing probably failed.");
    src_image_finish(&im);
    json_object_put(src);

    /* the identifier is quoted up to 200 bytes */
    char id[302];
    id[0] = '&';
    memset(id + 1, 'x', 300);
    id[301] = '\0';
    char want[400];
    snprintf(want, sizeof want,
             "Image reference '%.200s' not found. Preprocessing probably failed.", id + 1);
    src = json_object_new_string(id);
    CHECK_INT(src_open(&l, src, &im, &e), -1);
    CHECK_STR(e.msg, want);
    src_image_finish(&im);
    json_object_put(src);
}

/* The reference `id` opens as a `width`-pixel-wide image with the encoded bytes `bytes`. */
static void check_reference(const struct src_loader *l, const char *id, long width,
                            const char *bytes)
{
    char ref[64];
    snprintf(ref, sizeof ref, "&%s", id);
    json_object *src = json_object_new_string(ref);
    struct src_image im;
    struct err e = {{0}};
    CHECK_INT(src_open(l, src, &im, &e), 0);
    CHECK_INT(im.width, width);
    CHECK_INT(im.bytes.len, strlen(bytes));
    CHECK(im.bytes.len == strlen(bytes) && memcmp(im.bytes.data, bytes, im.bytes.len) == 0);
    CHECK(!im.fetched);
    src_image_finish(&im);
    json_object_put(src);
}

/* SRC_MAX_REFS identifiers fit, one more does not; every one is found again, and an identifier
 * saved again replaces its image and bytes. */
static void test_store_holds_up_to_its_limit(void)
{
    struct src_refs *refs = src_refs_create();
    struct src_loader l = {.refs = refs, .max_pixels = 1000000};
    struct err e = {{0}};
    char id[32], bytes[32];
    for (int i = 0; i < SRC_MAX_REFS; i++) {
        MagickWand *w = solid(1 + i, 1, "red");
        snprintf(id, sizeof id, "img%d", i);
        snprintf(bytes, sizeof bytes, "bytes of %d", i);
        CHECK_INT(src_refs_add(refs, id, w, bytes, strlen(bytes), &e), 0);
        DestroyMagickWand(w);
    }
    MagickWand *w = solid(7, 1, "blue");
    CHECK_INT(src_refs_add(refs, "one-more", w, "x", 1, &e), -1);
    CHECK_STR(e.msg, "too many pre_process images (at most 256)");
    CHECK_INT(src_refs_add(refs, "img5", w, "new bytes", 9, &e), 0); /* a replacement fits */
    DestroyMagickWand(w);
    for (int i = 0; i < SRC_MAX_REFS; i++) {
        snprintf(id, sizeof id, "img%d", i);
        snprintf(bytes, sizeof bytes, "bytes of %d", i);
        if (i == 5) {
            check_reference(&l, id, 7, "new bytes");
        } else {
            check_reference(&l, id, 1 + i, bytes);
        }
    }
    json_object *src = json_object_new_string("&one-more");
    struct src_image im;
    CHECK_INT(src_open(&l, src, &im, &e), -1);
    src_image_finish(&im);
    json_object_put(src);
    src_refs_destroy(refs);
    src_refs_destroy(NULL);
}

/* ---------------------------------------------------------------- canvas and fetched sources */

/* src_open() of the JSON `json` with a limit of `max_pixels`: 0 and the size, or -1 and `err`. */
static void check_canvas(const char *json, long max_pixels, long width, long height,
                         const char *err)
{
    struct src_loader l = {.max_pixels = max_pixels};
    json_object *src = json_tokener_parse(json);
    struct src_image im;
    struct err e = {{0}};
    int rc = src_open(&l, src, &im, &e);
    if (err == NULL) {
        CHECK_INT(rc, 0);
        CHECK_INT(im.width, width);
        CHECK_INT(im.height, height);
        CHECK(!im.pending && !im.fetched);
    } else {
        CHECK_INT(rc, -1);
        CHECK_STR(e.msg, err);
    }
    src_image_finish(&im);
    json_object_put(src);
}

static void test_canvas(void)
{
    check_canvas("{\"name\": \"canvas\"}", 100, 10, 10, NULL);
    check_canvas("{\"name\": \"canvas\", \"width\": 100, \"height\": 50}", 5000, 100, 50, NULL);
    check_canvas("{\"name\": \"canvas\", \"width\": 100, \"height\": 50}", 4999, 0, 0,
                 "canvas of 100x50 is more than the limit of 4999 pixels (PIXQ_MAX_PIXELS)");
    check_canvas("{\"name\": \"canvas\", \"width\": 50, \"height\": 100}", 4999, 0, 0,
                 "canvas of 50x100 is more than the limit of 4999 pixels (PIXQ_MAX_PIXELS)");
}

/* The canvas sides' bounds, and ImageMagick's largest side within them. */
static void test_canvas_side_bounds(void)
{
    const char *bad[][2] = {
        {"{\"name\": \"canvas\", \"width\": 65536, \"height\": 1}",
         "Invalid parameter 'width' for function 'canvas': 65536 is out of range [1, 65535]"},
        {"{\"name\": \"canvas\", \"width\": 1, \"height\": 65536}",
         "Invalid parameter 'height' for function 'canvas': 65536 is out of range [1, 65535]"},
        {"{\"name\": \"canvas\", \"width\": 0, \"height\": 1}",
         "Invalid parameter 'width' for function 'canvas': 0 is out of range [1, 65535]"},
        {"{\"name\": \"canvas\", \"width\": 65535, \"height\": 1}",
         "canvas: image is 65535x1, beyond ImageMagick's largest side (16000x16000)"},
        {"{\"name\": \"canvas\", \"width\": 1, \"height\": 65535}",
         "canvas: image is 1x65535, beyond ImageMagick's largest side (16000x16000)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        check_canvas(bad[i][0], 1L << 40, 0, 0, bad[i][1]);
    }
}

/* src_fetch(): what it refuses, and the bytes of what it takes. */
static void test_fetch(void)
{
    struct src_loader l = {.fetch = fetch_text, .fetch_user = "the bytes"};
    struct buf out;
    struct err e = {{0}};
    buf_init(&out, 0);
    json_object *src = json_object_new_string("http://example.test/icc.icm");
    CHECK_INT(src_fetch(&l, src, &out, &e), 0);
    CHECK(out.len == 9 && memcmp(out.data, "the bytes", 9) == 0);
    json_object_put(src);
    buf_finish(&out);

    const char *refused[][2] = {
        {"\"&saved\"", "src must be a URL or an s3 object, not an image reference"},
        {"{\"name\": \"azure\"}", "src of type 'azure' is not supported"},
        {"{\"name\": 5}", "src of type '' is not supported"},
        {"{\"bucket\": \"b\"}", "src of type '' is not supported"},
        {"5", "src must be a URL, \"&identifier\" or an object"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        buf_init(&out, 0);
        src = json_tokener_parse(refused[i][0]);
        CHECK_INT(src_fetch(&l, src, &out, &e), -1);
        CHECK_STR(e.msg, refused[i][1]);
        json_object_put(src);
        buf_finish(&out);
    }

    buf_init(&out, 0);
    src = json_tokener_parse("{\"name\": \"s3\", \"bucket\": \"b\", \"key\": \"k\"}");
    CHECK_INT(src_fetch(&l, src, &out, &e), 0);
    struct src_loader none = {0};
    CHECK_INT(src_fetch(&none, src, &out, &e), -1);
    CHECK_STR(e.msg, "cannot load 's3' here");
    json_object_put(src);
    buf_finish(&out);
}

/* Bytes that came but are no image: the error is the image's own and names its src. */
static void test_blame_of_fetched_bytes(void)
{
    struct src_loader l = {.fetch = fetch_text, .fetch_user = "no image", .max_pixels = 1000};
    json_object *src = json_object_new_string("http://user:secret@example.test/a.png");
    struct src_image im;
    struct err e = {{0}};
    CHECK_INT(src_open(&l, src, &im, &e), -1);
    CHECK(im.fetched);
    char reason[ERR_MSG_MAX];
    snprintf(reason, sizeof reason, "%s", e.msg);
    CHECK_INT(src_blame(src, &im, &e), -1);
    char want[ERR_MSG_MAX + 64];
    snprintf(want, sizeof want, "Failed to load image at 'http://user:***@example.test/a.png': %s",
             reason);
    CHECK_STR(e.msg, want);
    src_image_finish(&im);

    struct buf bytes;
    buf_init(&bytes, 0);
    buf_append(&bytes, "no image", 8);
    CHECK_INT(src_open_bytes(&l, &bytes, &im, &e), -1);
    CHECK(im.fetched);
    CHECK_INT(bytes.len, 0);
    snprintf(reason, sizeof reason, "%s", e.msg);
    CHECK_INT(src_blame(src, &im, &e), -1);
    snprintf(want, sizeof want, "Failed to load image at 'http://user:***@example.test/a.png': %s",
             reason);
    CHECK_STR(e.msg, want);
    src_image_finish(&im);
    json_object_put(src);
}

/* A failure before the bytes came, or one that names the src already, is left as it is. */
static void test_blame_leaves_other_errors(void)
{
    json_object *src = json_object_new_string("http://example.test/a.png");
    struct src_image im = {0};
    struct err e = {{0}};
    err_set(&e, "Failed to download http://example.test/a.png");
    im.fetched = true;
    CHECK(src_quoted_in(src, &e));
    CHECK_INT(src_blame(src, &im, &e), -1);
    CHECK_STR(e.msg, "Failed to download http://example.test/a.png");
    err_set(&e, "timed out");
    im.fetched = false;
    CHECK(!src_quoted_in(src, &e));
    CHECK_INT(src_blame(src, &im, &e), -1);
    CHECK_STR(e.msg, "timed out");
    im.fetched = true;
    CHECK_INT(src_blame(NULL, &im, &e), -1);
    CHECK_STR(e.msg, "timed out");
    json_object_put(src);

    /* an object src is never taken as quoted: the message names it */
    src = json_tokener_parse("{\"name\": \"s3\", \"bucket\": \"b\", \"key\": \"k\"}");
    err_set(&e, "bad");
    CHECK(!src_quoted_in(src, &e));
    CHECK_INT(src_blame(src, &im, &e), -1);
    CHECK_STR(e.msg,
              "Failed to load image at '{\"name\":\"s3\",\"bucket\":\"b\",\"key\":\"k\"}': bad");
    json_object_put(src);
}

/* ---------------------------------------------------------------- src_decode */

/* The encoding in `format` of a `w` x `h` image (two frames when `frames` is 2) into `out`. */
static void encode(const char *format, long w, long h, int frames, struct buf *out)
{
    MagickWand *wand = solid(w, h, "gray");
    if (frames == 2) {
        MagickWand *second = solid(w, h, "red");
        MagickSetLastIterator(wand);
        MagickAddImage(wand, second);
        DestroyMagickWand(second);
    }
    size_t len = 0;
    MagickResetIterator(wand);
    CHECK(MagickSetFormat(wand, format) == MagickTrue);
    unsigned char *blob = MagickGetImagesBlob(wand, &len);
    buf_init(out, 0);
    CHECK(blob != NULL && buf_append(out, blob, len) == 0);
    MagickRelinquishMemory(blob);
    DestroyMagickWand(wand);
}

/* src_decode() with its log lines (stderr) in `log` (`cap` bytes, NUL-terminated). */
static int decode_logged(struct src_image *im, const struct shrink_plan *plan, char *log,
                         size_t cap)
{
    struct err e = {{0}};
    check_capture(2);
    int rc = src_decode(im, plan, &e);
    check_captured(2, log, cap);
    return rc;
}

/* Opens the bytes `format` makes of a w x h image and decodes them with `plan` (NULL: none): the
 * decoded size is want_w x want_h, the source's size stays w x h, and the decode was done again
 * in full (with a warning) if `missed`. */
static void check_decode(const char *format, long w, long h, const struct shrink_plan *plan,
                         long want_w, long want_h, bool missed)
{
    struct src_loader l = {.max_pixels = 10000000};
    struct buf bytes;
    struct src_image im;
    struct err e = {{0}};
    encode(format, w, h, 1, &bytes);
    CHECK_INT(src_open_bytes(&l, &bytes, &im, &e), 0);
    CHECK(im.pending);
    char log[4096];
    CHECK_INT(decode_logged(&im, plan, log, sizeof log), 0);
    CHECK(!im.pending);
    CHECK((strstr(log, "event=shrink_on_load_missed") != NULL) == missed);
    CHECK_INT(MagickGetImageWidth(im.wand), want_w);
    CHECK_INT(MagickGetImageHeight(im.wand), want_h);
    CHECK_INT(im.width, w);
    CHECK_INT(im.height, h);
    CHECK_INT(src_decode(&im, plan, &e), 0); /* done already: nothing to do */
    CHECK_INT(MagickGetImageWidth(im.wand), want_w);
    src_image_finish(&im);
    buf_finish(&bytes);
}

static void test_decode(void)
{
    /* libjpeg takes the hint: 801x601 at 1/8 is 101x76 */
    struct shrink_plan eighth = {.hint_w = 100, .hint_h = 75, .width = 101, .height = 76};
    check_decode("JPEG", 801, 601, NULL, 801, 601, false);
    check_decode("JPEG", 801, 601, &eighth, 101, 76, false);
    /* a decode that did not shrink at all is kept: no second one */
    struct shrink_plan none = {.hint_w = 801, .hint_h = 601, .width = 101, .height = 76};
    check_decode("JPEG", 801, 601, &none, 801, 601, false);
    /* a size other than the plan's, in either side, is decoded again in full */
    struct shrink_plan wrong_w = {.hint_w = 100, .hint_h = 75, .width = 102, .height = 76};
    struct shrink_plan wrong_h = {.hint_w = 100, .hint_h = 75, .width = 101, .height = 77};
    check_decode("JPEG", 801, 601, &wrong_w, 801, 601, true);
    check_decode("JPEG", 801, 601, &wrong_h, 801, 601, true);
    /* libwebp takes the size itself */
    struct shrink_plan webp = {.hint_w = 100, .hint_h = 75, .width = 200, .height = 150};
    check_decode("WEBP", 800, 600, &webp, 200, 150, false);

    /* an animated WebP is decoded by the image guard already */
    struct src_loader l = {.max_pixels = 10000000};
    struct buf bytes;
    struct src_image im;
    struct err e = {{0}};
    encode("WEBP", 40, 30, 2, &bytes);
    CHECK_INT(src_open_bytes(&l, &bytes, &im, &e), 0);
    CHECK(!im.pending);
    CHECK_INT(im.width, 40);
    src_image_finish(&im);
    buf_finish(&bytes);
}

/* ---------------------------------------------------------------- src_shown, src_list */

static void test_shown_cut(void)
{
    char text[SRC_SHOWN_MAX + 8], out[SRC_SHOWN_MAX + 2];
    memset(text, 'a', SRC_SHOWN_MAX);
    text[SRC_SHOWN_MAX] = '\0';
    json_object *src = json_object_new_string(text);
    CHECK_INT(src_shown(src, out), SRC_SHOWN_MAX); /* exactly the limit: whole */
    CHECK_STR(out, text);
    json_object_put(src);

    text[SRC_SHOWN_MAX] = 'b';
    text[SRC_SHOWN_MAX + 1] = '\0';
    src = json_object_new_string(text);
    CHECK_INT(src_shown(src, out), SRC_SHOWN_MAX - 3);
    CHECK_INT(strlen(out), SRC_SHOWN_MAX);
    CHECK(memcmp(out, text, SRC_SHOWN_MAX - 3) == 0);
    CHECK_STR(out + SRC_SHOWN_MAX - 3, "...");
    /* quoted in an error when its first SRC_SHOWN_MAX - 3 bytes are */
    struct err e = {{0}};
    err_set(&e, "Failed to download %.*s", SRC_SHOWN_MAX - 3, text);
    CHECK(src_quoted_in(src, &e));
    json_object_put(src);

    /* a two-byte character across the cut is left out whole */
    memset(text, 'a', SRC_SHOWN_MAX - 4);
    memcpy(text + SRC_SHOWN_MAX - 4, "\xc3\xa9zzzzz", 8);
    src = json_object_new_string(text);
    CHECK_INT(src_shown(src, out), SRC_SHOWN_MAX - 4);
    CHECK_STR(out + SRC_SHOWN_MAX - 4, "...");
    json_object_put(src);
}

/* src_list(json) is the array `want` (as JSON), or NULL when want is NULL. */
static void check_list(const char *json, const char *want)
{
    json_object *v = json_tokener_parse(json);
    json_object *got = src_list(v);
    if (want == NULL) {
        CHECK(got == NULL);
    } else {
        CHECK_STR(got != NULL ? json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN) : NULL,
                  want);
    }
    json_object_put(got);
    json_object_put(v);
}

static void test_list(void)
{
    check_list("\"a, b ,,\\tc \\t,  \"", "[\"a\",\"b\",\"c\"]");
    check_list("\"a  ,b\"", "[\"a\",\"b\"]");
    check_list("\"a,\\n b\\r\\n\"", "[\"a\",\"b\"]"); /* blanks of a line cut off both ends */
    check_list("\"one\"", "[\"one\"]");
    check_list("\" , ,\"", "[]");
    check_list("\"\"", "[]");
    check_list("[\"x, y\", {\"name\": \"canvas\"}, 3]", "[\"x, y\",{\"name\":\"canvas\"},3]");
    check_list("[]", "[]");
    check_list("{\"name\": \"canvas\"}", NULL);
    check_list("7", NULL);
}

/* ---------------------------------------------------------------- src_describe */

/* A 4x3 image of one colour with the EXIF properties `props` (name, value, ..., NULL), as a
 * source whose bytes are `bytes`. */
static void make_source(struct src_image *im, const char *bytes, const char *const *props)
{
    memset(im, 0, sizeof *im);
    im->wand = solid(4, 3, "white");
    im->width = 4;
    im->height = 3;
    buf_init(&im->bytes, 0);
    buf_append(&im->bytes, bytes, strlen(bytes));
    for (size_t i = 0; props != NULL && props[i] != NULL; i += 2) {
        CHECK(MagickSetImageProperty(im->wand, props[i], props[i + 1]) == MagickTrue);
    }
}

/* src_describe() of the image with `props` for the job `j`; NULL if it failed. */
static json_object *describe(const struct job *j, const char *const *props)
{
    struct src_image im;
    make_source(&im, "encoded", props);
    struct err e = {{0}};
    json_object *meta = src_describe(j, &im, &e);
    src_image_finish(&im);
    return meta;
}

/* The member `key` of `meta`, or NULL. */
static json_object *member(json_object *meta, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(meta, key, &v) ? v : NULL;
}

/* lat and lng from the four GPS properties (NULL: not set); nan for none. */
static void check_gps(const char *lat, const char *lat_ref, const char *lng, const char *lng_ref,
                      double want_lat, double want_lng)
{
    const char *props[10];
    size_t n = 0;
    const char *given[][2] = {{"exif:GPSLatitude", lat},
                              {"exif:GPSLatitudeRef", lat_ref},
                              {"exif:GPSLongitude", lng},
                              {"exif:GPSLongitudeRef", lng_ref}};
    for (size_t i = 0; i < 4; i++) {
        if (given[i][1] != NULL) {
            props[n++] = given[i][0];
            props[n++] = given[i][1];
        }
    }
    props[n] = NULL;
    struct job j = {.v = 1.2};
    json_object *meta = describe(&j, props);
    json_object *la = member(meta, "lat"), *ln = member(meta, "lng");
    if (isnan(want_lat)) {
        CHECK(la == NULL && ln == NULL);
    } else {
        CHECK(la != NULL && fabs(json_object_get_double(la) - want_lat) < 1e-9);
        CHECK(ln != NULL && fabs(json_object_get_double(ln) - want_lng) < 1e-9);
        if (la == NULL || ln == NULL || fabs(json_object_get_double(la) - want_lat) >= 1e-9 ||
            fabs(json_object_get_double(ln) - want_lng) >= 1e-9) {
            fprintf(stderr, "  gps %s %s %s %s: %s\n", lat, lat_ref ? lat_ref : "-", lng,
                    lng_ref ? lng_ref : "-", json_object_to_json_string(meta));
        }
    }
    json_object_put(meta);
}

static void test_gps(void)
{
    double lat = 52 + 31 / 60.0 + 12.34 / 3600, lng = 13 + 24 / 60.0 + 36 / 3600.0;
    check_gps("52/1, 31/1, 1234/100", "N", "13/1, 24/1, 36/1", "E", lat, lng);
    check_gps("52/1, 31/1, 1234/100", "S", "13/1, 24/1, 36/1", "W", -lat, -lng);
    check_gps("52/1, 31/1, 1234/100", "S", "13/1, 24/1, 36/1", "E", -lat, lng);
    check_gps("52/1, 31/1, 1234/100", "N", "13/1, 24/1, 36/1", "W", lat, -lng);
    check_gps("52/1, 31/1, 1234/100", NULL, "13/1, 24/1, 36/1", NULL, lat, lng);
    check_gps("52.5", "N", "13", "E", 52.5, 13);                /* degrees alone */
    check_gps("52/1, 0/0, 0/0", "N", "1/2,30/1", "E", 52, 1.0); /* a zero denominator: 0 */
    check_gps("1/1, 2/1, 3/1, 4/1", "N", "0/1", "E", 1 + 2 / 60.0 + 3 / 3600.0, 0);
    check_gps("abc", "N", "13/1", "E", NAN, NAN); /* no number: no position */
    check_gps("52/1", "N", "", "E", NAN, NAN);
    check_gps("52/1", "N", NULL, "E", NAN, NAN); /* half a position is none */
    check_gps(NULL, "N", "13/1", "E", NAN, NAN);
    check_gps("1e308/1, 1e308/0.001", "N", "13/1", "E", NAN, NAN); /* not finite */
}

/* iso_date_created of date_created `date` in a job of version `v`; NULL: none. */
static void check_iso(const char *date, double v, const char *want)
{
    const char *props[] = {"exif:DateTimeOriginal", date, NULL};
    struct job j = {.v = v};
    json_object *meta = describe(&j, props);
    json_object *iso = member(meta, "iso_date_created");
    CHECK_STR(json_object_get_string(member(meta, "date_created")), date);
    if (want == NULL) {
        CHECK(iso == NULL);
        if (iso != NULL) {
            fprintf(stderr, "  %s: %s\n", date, json_object_get_string(iso));
        }
    } else {
        CHECK_STR(json_object_get_string(iso), want);
    }
    json_object_put(meta);
}

static void test_iso_date(void)
{
    check_iso("2014:08:02 20:17:55", 1.2, "2014-08-02T20:17:55.0000+00:00");
    check_iso("2014:08:02 20:17:55", 1.19, NULL); /* from v 1.20 */
    check_iso("0001:01:01 00:00:00", 1.2, "0001-01-01T00:00:00.0000+00:00");
    check_iso("9999:12:31 23:59:60", 1.2, "9999-12-31T23:59:60.0000+00:00");
    /* the days of each month: 29 February in a leap year only (2000 was one, 1900 not) */
    check_iso("2024:02:29 12:00:00", 1.2, "2024-02-29T12:00:00.0000+00:00");
    check_iso("2000:02:29 12:00:00", 1.2, "2000-02-29T12:00:00.0000+00:00");
    check_iso("2014:04:30 12:00:00", 1.2, "2014-04-30T12:00:00.0000+00:00");
    check_iso("2014:12:31 12:00:00", 1.2, "2014-12-31T12:00:00.0000+00:00");
    const char *bad[] = {
        "0000:01:01 00:00:00", "2014:00:01 00:00:00", "2014:13:01 00:00:00", "2014:01:00 00:00:00",
        "2014:01:32 00:00:00", "2014:01:01 24:00:00", "2014:01:01 -1:00:00", "2014:01:01 00:60:00",
        "2014:01:01 00:-1:00", "2014:01:01 00:00:61", "2014:01:01 00:00:-1", "2014:08:02 20:17:55Z",
        "2014:08:02 20:17",    "2014-08-02 20:17:55", "    :  :     :  :  ", "2014:02:29 12:00:00",
        "1900:02:29 12:00:00", "2024:02:30 12:00:00", "2014:04:31 12:00:00", "2014:06:31 12:00:00",
        "2014:09:31 12:00:00", "2014:11:31 12:00:00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        check_iso(bad[i], 1.2, NULL);
    }
}

static void test_exif_entries(void)
{
    /* more EXIF properties than are reported, and one that only looks like EXIF */
    size_t n = SRC_EXIF_MAX_ITEMS + 10;
    const char **props = calloc(2 * n + 3, sizeof *props);
    char(*names)[32] = calloc(n, sizeof *names);
    CHECK(props != NULL && names != NULL);
    if (props == NULL || names == NULL) {
        free(props);
        free(names);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "exif:Tag%04zu", i);
        props[2 * i] = names[i];
        props[2 * i + 1] = "v";
    }
    props[2 * n] = "exifx:Other";
    props[2 * n + 1] = "v";
    struct job j = {.v = 1.2, .get_exif = true, .extended_metadata = true};
    json_object *meta = describe(&j, props);
    json_object *exif = member(meta, "original_exif"), *all = member(meta, "all_exif");
    CHECK_INT(json_object_get_int64(member(meta, "width")), 4);
    CHECK_INT(json_object_get_int64(member(meta, "height")), 3);
    CHECK_INT(json_object_object_length(exif), SRC_EXIF_MAX_ITEMS);
    CHECK_INT(json_object_array_length(all), SRC_EXIF_MAX_ITEMS);
    CHECK_STR(json_object_get_string(member(exif, "Tag0000")), "v");
    CHECK(member(exif, "Other") == NULL && member(exif, "x:Other") == NULL);
    json_object *first = json_object_array_get_idx(all, 0);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(first, 0)), "Tag0000");
    CHECK_INT(json_object_get_int64(member(meta, "filesize")), strlen("encoded"));
    json_object_put(meta);

    /* only exif: properties, by the name after "exif:"; an object, {}, when the source has no
     * IPTC */
    const char *few[] = {"exif:Make", "pixq", "exifx:Other", "v", "xexif:Model", "v", NULL};
    j.include_iptc = true;
    meta = describe(&j, few);
    CHECK_STR(json_object_to_json_string_ext(member(meta, "original_exif"), JSON_C_TO_STRING_PLAIN),
              "{\"Make\":\"pixq\"}");
    CHECK_STR(json_object_to_json_string_ext(member(meta, "all_exif"), JSON_C_TO_STRING_PLAIN),
              "[[\"Make\",\"pixq\"]]");
    CHECK_STR(json_object_to_json_string_ext(member(meta, "iptc"), JSON_C_TO_STRING_PLAIN), "{}");
    json_object_put(meta);
    j.include_iptc = false;

    /* date_created from DateTimeOriginal, else from DateTime */
    const char *both[] = {"exif:DateTime", "2015:01:01 10:00:00", "exif:DateTimeOriginal",
                          "2014:08:02 20:17:55", NULL};
    meta = describe(&j, both);
    CHECK_STR(json_object_get_string(member(meta, "date_created")), "2014:08:02 20:17:55");
    json_object_put(meta);
    const char *plain[] = {"exif:DateTime", "2015:01:01 10:00:00", NULL};
    meta = describe(&j, plain);
    CHECK_STR(json_object_get_string(member(meta, "date_created")), "2015:01:01 10:00:00");
    json_object_put(meta);
    free(props);
    free(names);
}

/* original_meta.hash of the bytes `bytes` with the job's `hash`, as JSON ("null": none). */
static void check_hash(const char *bytes, const char *hash, const char *want)
{
    struct src_image im;
    make_source(&im, bytes, NULL);
    if (bytes[0] == '\0') {
        buf_finish(&im.bytes); /* no bytes at all, as a canvas has */
    }
    struct job j = {.v = 1.2, .hash = hash};
    struct err e = {{0}};
    json_object *meta = src_describe(&j, &im, &e);
    json_object *v = member(meta, "hash");
    CHECK_STR(v != NULL ? json_object_to_json_string(v) : "null", want);
    json_object_put(meta);
    src_image_finish(&im);
}

static void test_hash(void)
{
    check_hash("123456789", "crc32", "3421780262"); /* the CRC-32 check value, 0xcbf43926 */
    check_hash("abc", "CRC32", "891568578");
    check_hash("", "crc32", "0");
    check_hash("abc", "md5", "\"900150983cd24fb0d6963f7d28e17f72\"");
    check_hash("", "Md5", "\"d41d8cd98f00b204e9800998ecf8427e\"");
    check_hash("abc", "sha256",
               "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"");
    check_hash("abc", "sha1", "null");
}

/* density_info of an image with resolution x, y in `units`, as JSON. */
static void check_density(double x, double y, ResolutionType units, const char *want)
{
    struct src_image im;
    make_source(&im, "b", NULL);
    MagickSetImageResolution(im.wand, x, y);
    MagickSetImageUnits(im.wand, units);
    struct job j = {.v = 1.2, .get_exif = true};
    struct err e = {{0}};
    json_object *meta = src_describe(&j, &im, &e);
    CHECK_STR(json_object_to_json_string_ext(member(meta, "density_info"), JSON_C_TO_STRING_PLAIN),
              want);
    CHECK(json_object_is_type(member(meta, "original_exif"), json_type_object));
    CHECK_INT(json_object_get_int64(member(meta, "filesize")), 1);
    json_object_put(meta);
    src_image_finish(&im);
}

static void test_density(void)
{
    check_density(0, 0, UndefinedResolution,
                  "{\"density_x\":72,\"density_y\":72,\"units\":\"Undefined\"}");
    check_density(300, 150, PixelsPerInchResolution,
                  "{\"density_x\":300,\"density_y\":150,\"units\":\"PixelsPerInch\"}");
    check_density(28.5, 0, PixelsPerCentimeterResolution,
                  "{\"density_x\":28.5,\"density_y\":72,\"units\":\"PixelsPerCentimeter\"}");

    /* a whole number too large for an integer stays a number */
    struct src_image im;
    make_source(&im, "b", NULL);
    MagickSetImageResolution(im.wand, 1e15, 1e14);
    struct job j = {.v = 1.2, .get_exif = true};
    struct err e = {{0}};
    json_object *meta = src_describe(&j, &im, &e);
    json_object *x = member(member(meta, "density_info"), "density_x");
    json_object *y = member(member(meta, "density_info"), "density_y");
    CHECK(json_object_is_type(x, json_type_double) && json_object_get_double(x) == 1e15);
    CHECK(json_object_is_type(y, json_type_int) && json_object_get_int64(y) == 100000000000000);
    json_object_put(meta);
    src_image_finish(&im);
}

/* A job that shrinks a 400x300 source of `format` (`frames` images) to 40 px wide, through
 * proc_run(): its debug line "decoded" says how the source was brought down (`by`: the decoder
 * itself, a box filter after a full decode, or not at all) and at what size. */
static void check_decoded_by(const char *format, int frames, const char *by, long decoded_w,
                             long decoded_h)
{
    static const struct job_limits limits = {250000, 32, 100, 0, 0};
    const char *text = "{\"src\": \"http://x.test/a\", \"functions\": [{\"name\": "
                       "\"resize_to_fit\", \"params\": {\"width\": 40}, \"save\": "
                       "{\"image_identifier\": \"a\"}}]}";
    struct src_loader l = {.max_pixels = 10000000};
    struct buf bytes;
    struct src_image im;
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &limits, &e);
    CHECK(j != NULL);
    encode(format, 400, 300, frames, &bytes);
    CHECK_INT(src_open_bytes(&l, &bytes, &im, &e), 0);
    const struct proc_opts o = {.max_pixels = 10000000,
                                .default_quality = 85,
                                .max_output_bytes = SIZE_MAX,
                                .max_job_output_bytes = SIZE_MAX};
    struct proc_result pr;
    char log[8192], want[64];
    enum log_level was = log_threshold;
    log_threshold = LOG_LEVEL_DEBUG;
    check_capture(2);
    CHECK_INT(j != NULL ? proc_run(j, &im, &o, &pr, &e) : -1, 0);
    check_captured(2, log, sizeof log);
    log_threshold = was;
    snprintf(want, sizeof want, "decoded=%ldx%ld scale=", decoded_w, decoded_h);
    CHECK(strstr(log, want) != NULL);
    snprintf(want, sizeof want, " by=%s ", by);
    CHECK(strstr(log, want) != NULL);
    if (strstr(log, want) == NULL) {
        fprintf(stderr, "%s, %d image(s): %s\n", format, frames, log);
    }
    CHECK_INT(pr.decoded_width, decoded_w);
    CHECK_INT(pr.n_outputs, 1);
    proc_result_finish(&pr);
    src_image_finish(&im);
    buf_finish(&bytes);
    job_destroy(j);
}

static void test_decoded_by(void)
{
    check_decoded_by("JPEG", 1, "decoder", 100, 75); /* libjpeg at 2/8 */
    check_decoded_by("WEBP", 1, "decoder", 50, 38);  /* libwebp to the plan's size */
    check_decoded_by("PNG", 1, "decoder", 50, 38);   /* pngshrink */
    check_decoded_by("WEBP", 2, "box", 50, 38);      /* animated: decoded whole by the guard */
    check_decoded_by("GIF", 1, "box", 50, 38);       /* no decoder shrinks a GIF */
}

int main(void)
{
    if (test_img_start("source") < 0) {
        return 1;
    }
    test_reference_missing_without_a_store();
    test_store_holds_up_to_its_limit();
    test_canvas();
    test_canvas_side_bounds();
    test_fetch();
    test_blame_of_fetched_bytes();
    test_blame_leaves_other_errors();
    test_decode();
    test_decoded_by();
    test_shown_cut();
    test_list();
    test_gps();
    test_iso_date();
    test_exif_entries();
    test_hash();
    test_density();
    int rc = check_summary("source");
    img_shutdown();
    return rc;
}
