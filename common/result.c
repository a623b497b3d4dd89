#include "result.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

struct result {
    json_object *doc;     /* {"results": results} */
    json_object *results; /* borrowed from doc */
    json_object *meta;    /* original_meta */
    json_object *images;
    json_object *errors; /* created on the first error; owned until attached */
    json_object *failed;
    json_object *order; /* the save number of each entry of images (result_image_number) */
};

struct result *result_create(const char *job_id)
{
    struct result *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->doc = json_object_new_object();
    r->results = json_object_new_object();
    r->meta = json_object_new_object();
    r->images = json_object_new_array();
    r->errors = json_object_new_array();
    r->failed = json_object_new_array();
    r->order = json_object_new_array();
    json_object_object_add(r->doc, "results", r->results);
    json_object_object_add(r->results, "original_meta", r->meta);
    json_object_object_add(r->results, "images", r->images);
    json_object_object_add(r->results, "job_id", json_object_new_string(job_id));
    return r;
}

void result_destroy(struct result *r)
{
    if (r == NULL) {
        return;
    }
    json_object_put(r->doc);
    json_object_put(r->errors);
    json_object_put(r->failed);
    json_object_put(r->order);
    free(r);
}

void result_set_original_size(struct result *r, long width, long height)
{
    json_object_object_add(r->meta, "width", json_object_new_int64(width));
    json_object_object_add(r->meta, "height", json_object_new_int64(height));
}

void result_set_original_meta(struct result *r, json_object *meta)
{
    if (meta == NULL || !json_object_is_type(meta, json_type_object)) {
        json_object_put(meta);
        return;
    }
    r->meta = meta;
    json_object_object_add(r->results, "original_meta", meta);
}

/* A JSON string of `s` with U+FFFD for what is not UTF-8 (utf8_valid_dup()): a job's identifier
 * or a message quoting a URL cut at a byte count, or a server's bytes, go into the postback,
 * which must be UTF-8 for a strict receiver to read it. */
static json_object *utf8_string(const char *s)
{
    char *valid = utf8_valid_dup(s);
    json_object *o = json_object_new_string(valid != NULL ? valid : "(no memory)");
    free(valid);
    return o;
}

json_object *result_image(const char *image_identifier, const char *s3_url, const char *s3_key,
                          long width, long height)
{
    json_object *img = json_object_new_object();
    json_object *meta = json_object_new_object();
    json_object_object_add(img, "image_identifier", utf8_string(image_identifier));
    json_object_object_add(img, "s3_url", json_object_new_string(s3_url));
    if (s3_key != NULL) {
        json_object_object_add(img, "s3_key", json_object_new_string(s3_key));
    }
    json_object_object_add(meta, "width", json_object_new_int64(width));
    json_object_object_add(meta, "height", json_object_new_int64(height));
    json_object_object_add(img, "meta", meta);
    return img;
}

void result_image_add_meta(json_object *img, json_object *fields)
{
    json_object *meta = NULL;
    if (!json_object_is_type(fields, json_type_object) ||
        !json_object_object_get_ex(img, "meta", &meta)) {
        return;
    }
    json_object_object_foreach(fields, name, v)
    {
        json_object_object_add(meta, name, json_object_get(v));
    }
}

void result_add_image(struct result *r, const char *image_identifier, const char *s3_url,
                      const char *s3_key, long width, long height)
{
    json_object_array_add(r->images, result_image(image_identifier, s3_url, s3_key, width, height));
}

void result_image_number(struct result *r, int n)
{
    if (json_object_array_length(r->order) + 1 == json_object_array_length(r->images)) {
        json_object_array_add(r->order, json_object_new_int(n));
    }
}

char *result_json_numbered(struct result *r)
{
    bool all = json_object_array_length(r->order) == json_object_array_length(r->images);
    if (all) {
        json_object_object_add(r->results, RESULT_ORDER_MEMBER, json_object_get(r->order));
    }
    char *text = strdup(result_json(r));
    json_object_object_del(r->results, RESULT_ORDER_MEMBER);
    return text;
}

void result_mark_image(struct result *r, const char *name)
{
    size_t n = json_object_array_length(r->images);
    if (n > 0) {
        json_object_object_add(json_object_array_get_idx(r->images, n - 1), name,
                               json_object_new_boolean(1));
    }
}

void result_extend_image_meta(struct result *r, json_object *fields)
{
    size_t n = json_object_array_length(r->images);
    if (n > 0) {
        result_image_add_meta(json_object_array_get_idx(r->images, n - 1), fields);
    }
    json_object_put(fields);
}

void result_add_error(struct result *r, const char *message)
{
    json_object_array_add(r->errors, utf8_string(message));
}

static int contains(json_object *arr, const char *s)
{
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), s) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Adds an identifier as utf8_string() wrote it (`id`, taken) to the failed ones, once. */
static void add_failed(struct result *r, json_object *id)
{
    if (!contains(r->failed, json_object_get_string(id))) {
        json_object_array_add(r->failed, id);
    } else {
        json_object_put(id);
    }
}

void result_add_failed(struct result *r, const char *image_identifier)
{
    add_failed(r, utf8_string(image_identifier));
}

/* Whether an image named `id` (as utf8_string() writes it) is in `images`. */
static int uploaded(const struct result *r, const char *id)
{
    size_t n = json_object_array_length(r->images);
    for (size_t i = 0; i < n; i++) {
        json_object *v = NULL;
        json_object_object_get_ex(json_object_array_get_idx(r->images, i), "image_identifier", &v);
        if (v != NULL && strcmp(json_object_get_string(v), id) == 0) {
            return 1;
        }
    }
    return 0;
}

void result_fail_remaining(struct result *r, json_object *ids)
{
    size_t n = json_object_array_length(ids);
    for (size_t i = 0; i < n; i++) {
        json_object *id = utf8_string(json_object_get_string(json_object_array_get_idx(ids, i)));
        if (!uploaded(r, json_object_get_string(id))) {
            add_failed(r, id);
        } else {
            json_object_put(id);
        }
    }
}

size_t result_error_count(const struct result *r)
{
    return json_object_array_length(r->errors);
}

/* Attaches or detaches an optional array so that it appears only when non-empty. */
static void sync_optional(json_object *results, const char *name, json_object *arr)
{
    json_object_object_del(results, name);
    if (json_object_array_length(arr) > 0) {
        json_object_object_add(results, name, json_object_get(arr));
    }
}

const char *result_json(struct result *r)
{
    sync_optional(r->results, "errors", r->errors);
    sync_optional(r->results, "failed_image_identifiers", r->failed);
    return json_object_to_json_string_ext(r->doc,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

bool result_json_failed(const char *json)
{
    json_object *doc = json_tokener_parse(json), *results = NULL, *arr = NULL;
    bool failed = !json_object_object_get_ex(doc, "results", &results);
    const char *names[] = {"errors", "failed_image_identifiers"};
    for (size_t i = 0; !failed && i < sizeof names / sizeof names[0]; i++) {
        failed =
            json_object_object_get_ex(results, names[i], &arr) && json_object_array_length(arr) > 0;
    }
    json_object_put(doc);
    return failed;
}

/* Appends `s` form-encoded (application/x-www-form-urlencoded: unreserved bytes as they are,
 * every other as %XX). */
static char *form_encode(const char *prefix, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t p = strlen(prefix), n = strlen(s);
    char *out = malloc(p + 3 * n + 1);
    if (out == NULL) {
        return NULL;
    }
    memcpy(out, prefix, p);
    char *o = out + p;
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '.' || *c == '_' || *c == '~') {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* Moves `errors` and `failed` into `images` as Blitline's versions before 1.20 listed them. */
static void errors_into_images(json_object *images, json_object *errors, json_object *failed,
                               bool combined)
{
    size_t n = errors != NULL ? json_object_array_length(errors) : 0;
    bool any_failed = failed != NULL && json_object_array_length(failed) > 0;
    for (size_t i = 0; i < n; i++) {
        json_object *entry = json_object_new_object();
        json_object_object_add(entry, "error",
                               json_object_get(json_object_array_get_idx(errors, i)));
        if (combined && i == 0 && any_failed) {
            json_object_object_add(entry, "failed_image_identifiers", json_object_get(failed));
        }
        json_object_array_add(images, entry);
    }
    if (any_failed && (!combined || n == 0)) {
        json_object *entry = json_object_new_object();
        json_object_object_add(entry, "failed_image_identifiers", json_object_get(failed));
        json_object_array_add(images, entry);
    }
}

char *result_postback_body(const char *json, double v, bool content_type_json, bool *form)
{
    *form = false;
    if (v > 1.19) {
        return strdup(json);
    }
    json_object *doc = json_tokener_parse(json), *results = NULL, *images = NULL;
    if (!json_object_object_get_ex(doc, "results", &results) ||
        !json_object_object_get_ex(results, "images", &images) ||
        !json_object_is_type(images, json_type_array)) {
        json_object_put(doc);
        return NULL;
    }
    json_object *errors = NULL, *failed = NULL;
    json_object_object_get_ex(results, "errors", &errors);
    json_object_object_get_ex(results, "failed_image_identifiers", &failed);
    bool failure = (errors != NULL && json_object_array_length(errors) > 0) ||
                   (failed != NULL && json_object_array_length(failed) > 0);
    errors_into_images(images, errors, failed, v > 1.17);
    json_object_object_del(results, "errors"); /* images holds references of its own */
    json_object_object_del(results, "failed_image_identifiers");
    char *body = NULL;
    if (v > 1.17 || content_type_json) {
        body = strdup(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE));
    } else {
        if (failure) {
            json_object_object_add(results, "error", json_object_new_string("true"));
        }
        /* the form's one field is the JSON of what `results` holds */
        const int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
        body = form_encode("results=", json_object_to_json_string_ext(results, flags));
        *form = body != NULL;
    }
    json_object_put(doc);
    return body;
}
