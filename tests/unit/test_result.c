#include <json-c/json.h>

#include "check.h"
#include "result.h"

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

int main(void)
{
    test_success_shape();
    test_failure_shape();
    test_partial_failure();
    test_original_meta();
    test_extended_meta();
    return check_summary("result");
}
