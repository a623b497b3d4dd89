/* result: the Blitline result document, the body of every postback and of pixq:{Q}:result:<id>.
 *
 *   {"results": {"original_meta": {...}, "images": [...], "job_id": "...",
 *                "errors": [...], "failed_image_identifiers": [...]}}
 *
 * `errors` and `failed_image_identifiers` appear only when something failed (Blitline v1.21). */
#ifndef PIXQ_RESULT_H
#define PIXQ_RESULT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

struct result;

/* Starts an empty result for `job_id` (original_meta {}, images []). NULL if out of memory. */
struct result *result_create(const char *job_id);

/* Frees the result; NULL is allowed. */
void result_destroy(struct result *r);

/* Sets original_meta.width and .height (the source before auto-orient). */
void result_set_original_size(struct result *r, long width, long height);

/* Replaces original_meta with `meta` (a JSON object; ownership passes to `r`). */
void result_set_original_meta(struct result *r, json_object *meta);

/* An uploaded output's entry: {"image_identifier", "s3_url", "s3_key" (when not NULL), "meta":
 * {"width", "height"}} (the caller owns it). */
json_object *result_image(const char *image_identifier, const char *s3_url, const char *s3_key,
                          long width, long height);

/* Adds the members of `fields` (an object, borrowed; anything else: nothing) to an entry's
 * `meta`. */
void result_image_add_meta(json_object *img, json_object *fields);

/* Adds result_image()'s entry to `images`. */
void result_add_image(struct result *r, const char *image_identifier, const char *s3_url,
                      const char *s3_key, long width, long height);

/* Notes the save number (job_save.index) of the image added last: the order a parked job's
 * images are put back in (result_json_numbered). Ignored unless every image before it has one. */
void result_image_number(struct result *r, int n);

/* The member of a stored partial result that lists its images' save numbers. */
#define RESULT_ORDER_MEMBER "pixq_image_numbers"

/* result_json() with RESULT_ORDER_MEMBER in `results` (when every image has a number), for the
 * state of a job whose other outputs are parked; malloc'd, NULL if out of memory. */
char *result_json_numbered(struct result *r);

/* Sets `name` to true in the entry of the image added last (check_blank's "is_blank"). */
void result_mark_image(struct result *r, const char *name);

/* Adds the members of `fields` (an object, taken; NULL: nothing) to the `meta` of the image
 * added last (Blitline's extended_metadata: filesize, density, depth, quality). */
void result_extend_image_meta(struct result *r, json_object *fields);

/* Adds an error message (to `errors`). */
void result_add_error(struct result *r, const char *message);

/* Adds an identifier to `failed_image_identifiers`, once. */
void result_add_failed(struct result *r, const char *image_identifier);

/* Adds every identifier of the JSON array `ids` that was not uploaded to
 * `failed_image_identifiers` (a job-level failure: Blitline lists all of them). */
void result_fail_remaining(struct result *r, json_object *ids);

/* Number of errors so far. */
size_t result_error_count(const struct result *r);

/* The document as compact JSON, owned by `r` and valid until it changes. */
const char *result_json(struct result *r);

/* Whether the result document `json` lists an error or a failed identifier (true as well if it
 * cannot be read). */
bool result_json_failed(const char *json);

/* The postback body Blitline sent a job of version `v` (BLITLINE.md 6.2 and 8), made from the
 * document `json` (the shape above):
 *   v > 1.19            the document as it is (JSON);
 *   1.17 < v <= 1.19    JSON; errors stay in `images`: {"error": e1, "failed_image_identifiers":
 *                       [...]}, then {"error": e2}...;
 *   v <= 1.17           {"error": e} entries, then one {"failed_image_identifiers": [...]}; JSON
 *                       with content_type_json, else the form `results=<JSON>` with "error":
 *                       "true" beside job_id when something failed.
 * Returns a malloc'd body and sets `*form` (form-encoded rather than JSON); NULL if out of
 * memory or `json` is not a result document. */
char *result_postback_body(const char *json, double v, bool content_type_json, bool *form);

#endif
