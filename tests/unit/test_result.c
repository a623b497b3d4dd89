#include <json-c/json.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "result.h"
#include "utf8.h"

/* Blitline's documented success payload (BLITLINE.md 6.2), with pixq's values. */
static void test_success_shape(void)
{
    struct result *r = result_create("2m-Ir2YMXQ3yec0NV476xag");
    result_set_original_size(r, 421, 163);
    result_add_image(r, "MY_CLIENT_ID", "http://s3.amazonaws.com/blitline/x.jpg", NULL, 421, 163);
    CHECK_STR(result_json(r),
              "{\"results\":{\"original_meta\":{\"width\":421,\"height\":163},"
              "\"images\":[{\"image_identifier\":\"MY_CLIENT_ID\","
              "\"s3_url\":\"http://s3.amazonaws.com/blitline/x.jpg\","
              "\"meta\":{\"width\":421,\"height\":163}}],\"job_id\":\"2m-Ir2YMXQ3yec0NV476xag\"}}");
    CHECK_INT(result_error_count(r), 0);
    result_destroy(r);
}

/* The documented failure payload: original_meta {}, images [], errors, failed identifiers. */
static void test_failure_shape(void)
{
    struct result *r = result_create("4weK03Kd0j-D_ttohR7GTcg");
    result_add_error(r, "Image processing failed. Unknown function named 'blu3r'");
    json_object *ids = json_tokener_parse("[\"MY_CLIENT_ID\",\"MY_CLIENT_ID\",\"other\"]");
    result_fail_remaining(r, ids);
    json_object_put(ids);
    json_object *doc = json_tokener_parse(result_json(r));
    json_object *results = json_object_object_get(doc, "results");
    CHECK(results != NULL);
    CHECK_STR(json_object_to_json_string_ext(json_object_object_get(results, "original_meta"),
                                             JSON_C_TO_STRING_PLAIN),
              "{}");
    CHECK_INT(json_object_array_length(json_object_object_get(results, "images")), 0);
    CHECK_STR(json_object_get_string(json_object_object_get(results, "job_id")),
              "4weK03Kd0j-D_ttohR7GTcg");
    json_object *errors = json_object_object_get(results, "errors");
    CHECK_INT(json_object_array_length(errors), 1);
    CHECK_STR(json_object_get_string(json_object_array_get_idx(errors, 0)),
              "Image processing failed. Unknown function named 'blu3r'");
    json_object *failed = json_object_object_get(results, "failed_image_identifiers");
    CHECK_STR(json_object_to_json_string_ext(failed, JSON_C_TO_STRING_PLAIN),
              "[\"MY_CLIENT_ID\",\"other\"]"); /* listed once each */
    json_object_put(doc);
    result_destroy(r);
    /* as the documented text: errors before failed_image_identifiers, whatever was added (and
     * written) first */
    r = result_create("4weK03Kd0j-D_ttohR7GTcg");
    result_add_failed(r, "MY_CLIENT_ID");
    CHECK(strstr(result_json(r), "\"errors\"") == NULL);
    result_add_error(r, "Image processing failed. Unknown function named 'blu3r'");
    CHECK_STR(
        result_json(r),
        "{\"results\":{\"original_meta\":{},\"images\":[],\"job_id\":\"4weK03Kd0j-D_ttohR7GTcg\","
        "\"errors\":[\"Image processing failed. Unknown function named 'blu3r'\"],"
        "\"failed_image_identifiers\":[\"MY_CLIENT_ID\"]}}");
    CHECK_INT(result_error_count(r), 1); /* the errors, not the failed identifiers */
    result_add_failed(r, "other");
    CHECK_INT(result_error_count(r), 1);
    result_destroy(r);
}

/* A failed upload of one output: the other stays in images, the failed one is listed. */
static void test_partial_failure(void)
{
    struct result *r = result_create("j");
    result_set_original_size(r, 10, 20);
    result_add_image(r, "ok", "http://h/b/ok.jpg", NULL, 5, 10);
    result_add_error(r, "S3 PUT http://h/b/bad.jpg: HTTP 403 AccessDenied");
    result_add_failed(r, "bad");
    json_object *ids = json_tokener_parse("[\"ok\",\"bad\"]");
    result_fail_remaining(r, ids); /* "ok" was uploaded: not failed */
    json_object_put(ids);
    json_object *doc = json_tokener_parse(result_json(r));
    json_object *results = json_object_object_get(doc, "results");
    CHECK_INT(json_object_array_length(json_object_object_get(results, "images")), 1);
    CHECK_STR(
        json_object_to_json_string_ext(json_object_object_get(results, "failed_image_identifiers"),
                                       JSON_C_TO_STRING_PLAIN),
        "[\"bad\"]");
    json_object_put(doc);
    /* calling result_json twice gives the same document */
    char first[2048];
    snprintf(first, sizeof first, "%s", result_json(r));
    CHECK_STR(result_json(r), first);
    result_destroy(r);
}

/* original_meta replaced by what the worker described (EXIF, hash...), keeping its place. */
static void test_original_meta(void)
{
    struct result *r = result_create("j");
    result_set_original_meta(
        r, json_tokener_parse("{\"width\":400,\"height\":300,\"date_created\":\"2014:08:02 "
                              "20:17:55\",\"lat\":52.5,\"hash\":2432290274}"));
    result_set_original_meta(r, NULL);                        /* ignored */
    result_set_original_meta(r, json_object_new_string("x")); /* not an object: ignored, freed */
    result_add_image(r, "o", "http://h/b/o.jpg", "b/o.jpg", 300, 400);
    CHECK_STR(result_json(r),
              "{\"results\":{\"original_meta\":{\"width\":400,\"height\":300,"
              "\"date_created\":\"2014:08:02 20:17:55\",\"lat\":52.5,\"hash\":2432290274},"
              "\"images\":[{\"image_identifier\":\"o\",\"s3_url\":\"http://h/b/o.jpg\","
              "\"s3_key\":\"b/o.jpg\",\"meta\":{\"width\":300,\"height\":400}}],"
              "\"job_id\":\"j\"}}");
    result_destroy(r);
    /* the size then goes into the meta that replaced the first */
    r = result_create("j");
    result_set_original_meta(r, json_tokener_parse("{\"hash\":\"ab\"}"));
    result_set_original_size(r, 3, 4);
    CHECK_STR(result_json(r), "{\"results\":{\"original_meta\":{\"hash\":\"ab\",\"width\":3,"
                              "\"height\":4},\"images\":[],\"job_id\":\"j\"}}");
    result_destroy(r);
}

/* check_blank: "is_blank": true in the entry of the image added last, and only there. */
static void test_mark_image(void)
{
    struct result *r = result_create("j");
    result_mark_image(r, "is_blank"); /* no image yet: nothing */
    result_add_image(r, "a", "http://h/b/a.jpg", NULL, 1, 2);
    result_add_image(r, "b", "http://h/b/b.jpg", NULL, 3, 4);
    result_mark_image(r, "is_blank");
    CHECK_STR(result_json(r),
              "{\"results\":{\"original_meta\":{},\"images\":[{\"image_identifier\":\"a\","
              "\"s3_url\":\"http://h/b/a.jpg\",\"meta\":{\"width\":1,\"height\":2}},"
              "{\"image_identifier\":\"b\",\"s3_url\":\"http://h/b/b.jpg\",\"meta\":{\"width\":3,"
              "\"height\":4},\"is_blank\":true}],\"job_id\":\"j\"}}");
    result_destroy(r);
}

/* extended_metadata: fields added to the meta of the image added last. */
static void test_extended_meta(void)
{
    struct result *r = result_create("j");
    result_extend_image_meta(r, json_tokener_parse("{\"filesize\":1}")); /* no image: freed */
    result_add_image(r, "a", "http://h/b/a.jpg", NULL, 1, 2);
    result_add_image(r, "b", "http://h/b/b.jpg", NULL, 3, 4);
    result_extend_image_meta(r, json_tokener_parse("{\"filesize\":10,\"density\":\"72x72\"}"));
    result_extend_image_meta(r, NULL);
    CHECK_STR(result_json(r),
              "{\"results\":{\"original_meta\":{},\"images\":[{\"image_identifier\":\"a\","
              "\"s3_url\":\"http://h/b/a.jpg\",\"meta\":{\"width\":1,\"height\":2}},"
              "{\"image_identifier\":\"b\",\"s3_url\":\"http://h/b/b.jpg\",\"meta\":{\"width\":3,"
              "\"height\":4,\"filesize\":10,\"density\":\"72x72\"}}],\"job_id\":\"j\"}}");
    result_destroy(r);
}

/* A result with one output, two errors and two failed identifiers. */
static struct result *mixed(void)
{
    struct result *r = result_create("j");
    result_add_image(r, "ok", "http://h/b/ok.jpg", NULL, 1, 2);
    result_add_error(r, "bad & ugly");
    result_add_error(r, "second");
    result_add_failed(r, "x");
    result_add_failed(r, "y");
    return r;
}

static void check_body(struct result *r, double v, bool content_type_json, const char *want,
                       bool want_form)
{
    bool form = !want_form;
    char *body = result_postback_body(result_json(r), v, content_type_json, &form);
    CHECK(body != NULL);
    CHECK_STR(body != NULL ? body : "", want);
    CHECK_INT(form, want_form);
    free(body);
}

#define OK_IMAGE                                                                                   \
    "{\"image_identifier\":\"ok\",\"s3_url\":\"http://h/b/ok.jpg\",\"meta\":{\"width\":1,"         \
    "\"height\":2}}"

/* Blitline's postbacks by version (BLITLINE.md 6.2 and 8). */
static void test_postback_body_by_version(void)
{
    struct result *r = mixed();
    /* 1.20 on: the document as it is */
    check_body(r, 1.21, false, result_json(r), false);
    check_body(r, 1.2, false, result_json(r), false);
    /* 1.18 and 1.19: the errors in images, the first with the failed identifiers */
    const char *v118 = "{\"results\":{\"original_meta\":{},\"images\":[" OK_IMAGE
                       ",{\"error\":\"bad & ugly\",\"failed_image_identifiers\":[\"x\",\"y\"]},"
                       "{\"error\":\"second\"}],\"job_id\":\"j\"}}";
    check_body(r, 1.19, false, v118, false);
    check_body(r, 1.18, true, v118, false);
    /* 1.17 and before: {"error"} entries and one {"failed_image_identifiers"} */
    const char *v117 = "{\"results\":{\"original_meta\":{},\"images\":[" OK_IMAGE
                       ",{\"error\":\"bad & ugly\"},{\"error\":\"second\"},"
                       "{\"failed_image_identifiers\":[\"x\",\"y\"]}],\"job_id\":\"j\"}}";
    check_body(r, 1.17, true, v117, false);
    /* ... as a form without content_type_json, "error": "true" beside job_id */
    const char *form117 =
        "results=%7B%22original_meta%22%3A%7B%7D%2C%22images%22%3A%5B%7B%22image_identifier"
        "%22%3A%22ok%22%2C%22s3_url%22%3A%22http%3A%2F%2Fh%2Fb%2Fok.jpg%22%2C%22meta%22%3A%7B"
        "%22width%22%3A1%2C%22height%22%3A2%7D%7D%2C%7B%22error%22%3A%22bad%20%26%20ugly%22"
        "%7D%2C%7B%22error%22%3A%22second%22%7D%2C%7B%22failed_image_identifiers%22%3A%5B"
        "%22x%22%2C%22y%22%5D%7D%5D%2C%22job_id%22%3A%22j%22%2C%22error%22%3A%22true%22%7D";
    check_body(r, 1.0, false, form117, true);
    check_body(r, 1.17, false, form117, true);
    /* Blitline compared v > 1.19: a 1.195 is past it */
    check_body(r, 1.195, false, result_json(r), false);
    result_destroy(r);
    /* a success has no "error" */
    r = result_create("k");
    check_body(r, 1.0, false,
               "results=%7B%22original_meta%22%3A%7B%7D%2C%22images%22%3A%5B%5D%2C%22job_id%22%3A"
               "%22k%22%7D",
               true);
    check_body(r, 1.18, false,
               "{\"results\":{\"original_meta\":{},\"images\":[],\"job_id\":\"k\"}}", false);
    result_destroy(r);
    /* every byte but the unreserved ones as %XX, UTF-8's (over 0x7F) included */
    r = result_create("\xc3\xa9 ~/+");
    check_body(r, 1.0, false,
               "results=%7B%22original_meta%22%3A%7B%7D%2C%22images%22%3A%5B%5D%2C%22job_id%22%3A"
               "%22%C3%A9%20~%2F%2B%22%7D",
               true);
    result_destroy(r);
    r = result_create("k");
    /* failed identifiers without an error message */
    result_add_failed(r, "z");
    check_body(r, 1.19, false,
               "{\"results\":{\"original_meta\":{},\"images\":[{\"failed_image_identifiers\":"
               "[\"z\"]}],\"job_id\":\"k\"}}",
               false);
    /* ... which failed as well: the form says "error": "true" */
    check_body(r, 1.0, false,
               "results=%7B%22original_meta%22%3A%7B%7D%2C%22images%22%3A%5B%7B%22failed_image_"
               "identifiers%22%3A%5B%22z%22%5D%7D%5D%2C%22job_id%22%3A%22k%22%2C%22error%22%3A"
               "%22true%22%7D",
               true);
    result_destroy(r);
    /* postback_error_only's question */
    r = mixed();
    CHECK(result_json_failed(result_json(r)));
    result_destroy(r);
    r = result_create("k");
    CHECK(!result_json_failed(result_json(r)));
    result_add_failed(r, "z");
    CHECK(result_json_failed(result_json(r)));
    result_destroy(r);
    CHECK(result_json_failed("nonsense"));
    /* not a result document */
    bool form = true;
    CHECK(result_postback_body("[1]", 1.0, false, &form) == NULL);
    CHECK(result_postback_body("{\"results\":{}}", 1.18, false, &form) == NULL);
    CHECK(result_postback_body("{\"results\":{\"images\":{}}}", 1.18, false, &form) == NULL);
    CHECK(!form);
}

/* A document that lists errors and failed identifiers, both empty: nothing failed. */
static void test_postback_body_empty_lists(void)
{
    const char *doc = "{\"results\":{\"original_meta\":{},\"images\":[],\"job_id\":\"k\","
                      "\"errors\":[],\"failed_image_identifiers\":[]}}";
    CHECK(!result_json_failed(doc));
    bool form = false;
    char *body = result_postback_body(doc, 1.0, false, &form);
    CHECK_STR(body != NULL ? body : "",
              "results=%7B%22original_meta%22%3A%7B%7D%2C%22images%22%3A%5B%5D%2C%22job_id%22%3A"
              "%22k%22%7D");
    CHECK(form);
    free(body);
    body = result_postback_body(doc, 1.19, false, &form);
    CHECK_STR(body != NULL ? body : "",
              "{\"results\":{\"original_meta\":{},\"images\":[],\"job_id\":\"k\"}}");
    CHECK(!form);
    free(body);
}

/* The form's encoding: letters, digits and "-._~" as they are, every other byte as %XX (its
 * bytes three times over when all are such). */
static void test_postback_form_encoding(void)
{
    struct result *r = result_create("AZaz09-._~*/ @[`{:");
    char percents[301], want[2048];
    memset(percents, '%', 300);
    percents[300] = '\0';
    result_add_error(r, percents);
    int n = snprintf(want, sizeof want, "%s",
                     "results=%7B%22original_meta%22%3A%7B%7D%2C%22images%22%3A%5B%7B%22error"
                     "%22%3A%22");
    for (int i = 0; i < 300; i++) {
        n += snprintf(want + n, sizeof want - (size_t)n, "%%25");
    }
    snprintf(want + n, sizeof want - (size_t)n, "%s",
             "%22%7D%5D%2C%22job_id%22%3A%22AZaz09-._~%2A%2F%20%40%5B%60%7B%3A%22%2C%22error%22"
             "%3A%22true%22%7D");
    check_body(r, 1.0, false, want, true);
    result_destroy(r);
}

/* The save numbers of a parked job's own images go with its stored state, not its result. */
static void test_numbered(void)
{
    struct result *r = result_create("j");
    result_add_image(r, "a", "http://h/b/a.jpg", NULL, 1, 2);
    result_image_number(r, 3);
    result_add_image(r, "b", "http://h/b/b.jpg", NULL, 1, 2);
    result_image_number(r, 5);
    char *text = result_json_numbered(r);
    json_object *doc = json_tokener_parse(text);
    json_object *numbers =
        json_object_object_get(json_object_object_get(doc, "results"), RESULT_ORDER_MEMBER);
    CHECK_STR(json_object_to_json_string_ext(numbers, JSON_C_TO_STRING_PLAIN), "[3,5]");
    json_object_put(doc);
    free(text);
    CHECK(strstr(result_json(r), RESULT_ORDER_MEMBER) == NULL);
    result_add_image(r, "c", "http://h/b/c.jpg", NULL, 1, 2); /* no number: none listed */
    text = result_json_numbered(r);
    CHECK(strstr(text, RESULT_ORDER_MEMBER) == NULL);
    free(text);
    result_destroy(r);
    /* an image's second number is ignored; after an image without one, every number is */
    r = result_create("j");
    result_add_image(r, "a", "http://h/b/a.jpg", NULL, 1, 2);
    result_image_number(r, 3);
    result_image_number(r, 4);
    text = result_json_numbered(r);
    doc = json_tokener_parse(text);
    numbers = json_object_object_get(json_object_object_get(doc, "results"), RESULT_ORDER_MEMBER);
    CHECK_STR(json_object_to_json_string_ext(numbers, JSON_C_TO_STRING_PLAIN), "[3]");
    json_object_put(doc);
    free(text);
    result_add_image(r, "b", "http://h/b/b.jpg", NULL, 1, 2);
    result_add_image(r, "c", "http://h/b/c.jpg", NULL, 1, 2);
    result_image_number(r, 5);
    result_image_number(r, 6);
    text = result_json_numbered(r);
    CHECK(strstr(text, RESULT_ORDER_MEMBER) == NULL);
    free(text);
    result_destroy(r);
}

/* Error texts are UTF-8 in the postback whatever their bytes: a URL cut in the middle of "é",
 * a byte that is no UTF-8 at all; valid text (and "é" whole) unchanged. */
static void test_errors_are_utf8(void)
{
    struct result *r = result_create("j");
    result_add_error(r, "Failed to download http://h/x\xc3");
    result_add_error(r, "Unknown function named '\xff\xfe'");
    result_add_error(r, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    result_add_error(r, "\xed\xa0\x80 \xc0\xaf"); /* a surrogate, an overlong '/' */
    json_object *doc = json_tokener_parse(result_json(r));
    json_object *errors = json_object_object_get(json_object_object_get(doc, "results"), "errors");
    CHECK_STR(json_object_get_string(json_object_array_get_idx(errors, 0)),
              "Failed to download http://h/x\xef\xbf\xbd");
    CHECK_STR(json_object_get_string(json_object_array_get_idx(errors, 1)),
              "Unknown function named '\xef\xbf\xbd\xef\xbf\xbd'");
    CHECK_STR(json_object_get_string(json_object_array_get_idx(errors, 2)),
              "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    CHECK_STR(json_object_get_string(json_object_array_get_idx(errors, 3)),
              "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd");
    json_object_put(doc);
    result_destroy(r);
    /* identifiers too (a job's strings are not checked for UTF-8: its postback says what was
     * wrong), matched as written */
    r = result_create("j");
    result_add_image(r, "ok\xff", "http://h/b/ok.jpg", NULL, 1, 2);
    json_object *ids = json_tokener_parse("[\"ok\\u00ff\"]"); /* not the same string */
    json_object_array_add(ids, json_object_new_string("ok\xff"));
    json_object_array_add(ids, json_object_new_string("bad\xfe"));
    result_fail_remaining(r, ids);
    result_add_failed(r, "bad\xfe");
    json_object_put(ids);
    CHECK_STR(
        result_json(r),
        "{\"results\":{\"original_meta\":{},\"images\":[{\"image_identifier\":\"ok\xef\xbf\xbd\","
        "\"s3_url\":\"http://h/b/ok.jpg\",\"meta\":{\"width\":1,\"height\":2}}],\"job_id\":\"j\","
        "\"failed_image_identifiers\":[\"ok\xc3\xbf\",\"bad\xef\xbf\xbd\"]}}");
    result_destroy(r);
}

/* utf8_cut(): a cut that quotes a string never ends inside a character. */
static void test_utf8_cut(void)
{
    CHECK_INT(utf8_cut("abc", 5), 3);
    CHECK_INT(utf8_cut("abc", 3), 3);
    CHECK_INT(utf8_cut("abc", 2), 2);
    CHECK_INT(utf8_cut("a\xc3\xa9"
                       "b",
                       2),
              1); /* not inside the 'é' */
    CHECK_INT(utf8_cut("a\xc3\xa9"
                       "b",
                       3),
              3);
    CHECK_INT(utf8_cut("\xe2\x82\xac\xe2\x82\xac", 5), 3); /* 3-byte euro signs */
    CHECK_INT(utf8_cut("\xf0\x9f\x98\x80!", 3), 0);        /* a 4-byte emoji */
    CHECK_INT(utf8_cut("", 0), 0);
    CHECK_INT(utf8_cut("x", 0), 0);
}

int main(void)
{
    test_utf8_cut();
    test_errors_are_utf8();
    test_success_shape();
    test_failure_shape();
    test_partial_failure();
    test_original_meta();
    test_extended_meta();
    test_postback_body_by_version();
    test_postback_body_empty_lists();
    test_postback_form_encoding();
    test_mark_image();
    test_numbered();
    return check_summary("result");
}
