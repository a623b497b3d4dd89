#include "job.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "id.h"
#include "jscan.h"
#include "s3.h"
#include "settags.h"
#include "utf8.h"

/* ---------------------------------------------------------------- recording */

static job_record_fn recorder;
static void *recorder_user;
static bool recorder_present;

void job_param_record(job_record_fn fn, void *user, bool present)
{
    recorder = fn;
    recorder_user = user;
    recorder_present = present;
}

void job_param_alias(const char *fn, const char *name, const char *alias)
{
    if (recorder != NULL) {
        struct job_param_desc d = {.fn = fn, .name = name, .alias = alias};
        recorder(recorder_user, &d);
    }
}

bool job_param_recording(void)
{
    return recorder != NULL;
}

/* Reports one parameter to the recorder. */
static void record(const char *fn, const char *name, const char *type, const char *def)
{
    struct job_param_desc d = {.fn = fn, .name = name, .type = type, .def = def};
    recorder(recorder_user, &d);
}

static void record_number(const char *fn, const char *name, bool whole, double def, double min,
                          double max)
{
    char text[64];
    snprintf(text, sizeof text, whole ? "%.0f" : "%g", def);
    /* a default out of the range is no value a job could give: the function tells "absent" by
     * it (the image's size, a size that fits...), so none is reported */
    struct job_param_desc d = {.fn = fn,
                               .name = name,
                               .type = whole ? "integer" : "number",
                               .def = def < min || def > max ? NULL : text,
                               .ranged = true,
                               .min = min,
                               .max = max};
    recorder(recorder_user, &d);
}

int job_param_required(json_object *params, const char *fn, const char *name, bool number,
                       struct err *e)
{
    if (recorder != NULL) {
        struct job_param_desc d = {.fn = fn, .name = name, .required = true};
        recorder(recorder_user, &d);
        return 0;
    }
    bool given = number ? job_param_number_given(params, name) : job_param_present(params, name);
    if (!given) {
        return err_set(e, "Missing parameter '%s' for function '%s'", name, fn);
    }
    return 0;
}

void job_param_declare(const char *fn, const char *name, const char *type, const char *note)
{
    if (recorder != NULL) {
        struct job_param_desc d = {
            .fn = fn, .name = name, .type = type, .declared = type != NULL, .note = note};
        recorder(recorder_user, &d);
    }
}

/* ---------------------------------------------------------------- parameters */

static json_object *param(json_object *params, const char *name)
{
    json_object *v = NULL;
    if (params == NULL || !json_object_is_type(params, json_type_object) ||
        !json_object_object_get_ex(params, name, &v)) {
        return NULL;
    }
    return v; /* NULL for a JSON null too */
}

/* A number parameter's value, or NULL when it is absent, null or "": Blitline's worker read ""
 * as 0 (its to_i), which its functions take as no value ("width": "" fits the height alone). */
static json_object *number_param(json_object *params, const char *name)
{
    json_object *v = param(params, name);
    return json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0 ? NULL
                                                                                          : v;
}

bool job_param_number_given(json_object *params, const char *name)
{
    if (recorder != NULL) {
        return recorder_present;
    }
    return number_param(params, name) != NULL;
}

bool job_param_present(json_object *params, const char *name)
{
    if (recorder != NULL) {
        return recorder_present;
    }
    return param(params, name) != NULL;
}

static int bad_type(struct err *e, const char *fn, const char *name, const char *want)
{
    return err_set(e, "Invalid parameter '%s' for function '%s': expected %s", name, fn, want);
}

/* The number in `v` (a JSON number or a numeric string): 0, or -1 if it is neither, or -2 if it
 * is a number past what a double holds (1e400, which JSON allows and json-c reads as infinity). */
static int number_of(json_object *v, double *out)
{
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        *out = json_object_get_double(v);
        if (isinf(*out)) {
            /* json-c reads its Infinity and -Infinity tokens as infinity too: words, not numbers
             * (json-c keeps a parsed number's text: an overflow's has digits) */
            return strpbrk(json_object_get_string(v), "0123456789") != NULL ? -2 : -1;
        }
        return isfinite(*out) ? 0 : -1;
    }
    if (!json_object_is_type(v, json_type_string)) {
        return -1;
    }
    const char *s = json_object_get_string(v);
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s) { /* no number read: " " is not 0 */
        return -1;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    if (*end != '\0' || isnan(d)) {
        return -1;
    }
    if (isinf(d)) {
        /* "1e400" overflows (ERANGE); "inf" and "infinity" are words, not numbers */
        return errno == ERANGE ? -2 : -1;
    }
    *out = d; /* an underflow ("1e-400", ERANGE) is its nearest double, 0 or a subnormal */
    return 0;
}

/* The error for a parameter whose number is past what a double holds, with the number as given
 * (json-c keeps a parsed number's text). */
static int too_big(struct err *e, const char *fn, const char *name, json_object *v, double min,
                   double max, bool whole)
{
    const char *text = json_object_get_string(v); /* a JSON number's text as written */
    if (whole) {
        return err_set(
            e, "Invalid parameter '%s' for function '%s': %.40s is out of range [%.0f, %.0f]", name,
            fn, text, min, max);
    }
    return err_set(e, "Invalid parameter '%s' for function '%s': %.40s is out of range [%g, %g]",
                   name, fn, text, min, max);
}

int job_param_double(json_object *params, const char *fn, const char *name, double def, double min,
                     double max, double *out, struct err *e)
{
    if (recorder != NULL) {
        record_number(fn, name, false, def, min, max);
        *out = fmax(min, fmin(def, max));
        return 0;
    }
    json_object *v = number_param(params, name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    double d;
    int rc = number_of(v, &d);
    if (rc == -2) {
        return too_big(e, fn, name, v, min, max, false);
    }
    if (rc < 0) {
        return bad_type(e, fn, name, "a number");
    }
    if (d < min || d > max) {
        return err_set(e, "Invalid parameter '%s' for function '%s': %g is out of range [%g, %g]",
                       name, fn, d, min, max);
    }
    *out = d;
    return 0;
}

int job_param_long(json_object *params, const char *fn, const char *name, long def, long min,
                   long max, long *out, struct err *e)
{
    if (recorder != NULL) {
        record_number(fn, name, true, (double)def, (double)min, (double)max);
        *out = def < min ? min : def > max ? max : def;
        return 0;
    }
    json_object *v = number_param(params, name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    double d;
    int rc = number_of(v, &d);
    if (rc == -2) {
        return too_big(e, fn, name, v, (double)min, (double)max, true);
    }
    if (rc < 0) {
        return bad_type(e, fn, name, "a whole number");
    }
    d = trunc(d); /* Blitline's worker used to_i: "100.7" is 100 */
    if (d < (double)min || d > (double)max) {
        return err_set(e,
                       "Invalid parameter '%s' for function '%s': %.0f is out of range [%ld, %ld]",
                       name, fn, d, min, max);
    }
    *out = (long)d;
    return 0;
}

int job_param_check_number(json_object *params, const char *fn, const char *name, bool whole,
                           struct err *e)
{
    if (recorder != NULL) {
        struct job_param_desc d = {
            .fn = fn, .name = name, .type = whole ? "integer" : "number", .image_range = true};
        recorder(recorder_user, &d);
        return 0;
    }
    json_object *v = number_param(params, name);
    double d;
    if (v != NULL && number_of(v, &d) == -1) {
        return bad_type(e, fn, name, whole ? "a whole number" : "a number");
    }
    return 0;
}

int job_param_bool(json_object *params, const char *fn, const char *name, bool def, bool *out,
                   struct err *e)
{
    if (recorder != NULL) {
        record(fn, name, "boolean", def ? "true" : "false");
        *out = def;
        return 0;
    }
    json_object *v = param(params, name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (json_object_is_type(v, json_type_boolean)) {
        *out = json_object_get_boolean(v);
        return 0;
    }
    if (json_object_is_type(v, json_type_int)) {
        int64_t i = json_object_get_int64(v);
        if (i == 0 || i == 1) {
            *out = i == 1;
            return 0;
        }
    }
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 || *s == '\0') {
            *out = false;
            return 0;
        }
    }
    return bad_type(e, fn, name, "true or false");
}

int job_param_string(json_object *params, const char *fn, const char *name, const char *def,
                     const char **out, struct err *e)
{
    if (recorder != NULL) {
        record(fn, name, "string", def);
        *out = def;
        return 0;
    }
    json_object *v = param(params, name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array)) {
        return bad_type(e, fn, name, "a string");
    }
    *out = json_object_get_string(v);
    return 0;
}

/* ---------------------------------------------------------------- guards */

/* The length of the UTF-8 sequence at `p` and its code point, or 0 if it is not valid (overlong,
 * surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_char(const unsigned char *p, uint32_t *cp)
{
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n = p[0] < 0x80             ? 1
               : (p[0] & 0xe0) == 0xc0 ? 2
               : (p[0] & 0xf0) == 0xe0 ? 3
               : (p[0] & 0xf8) == 0xf0 ? 4
                                       : 0;
    if (n == 0) {
        return 0;
    }
    uint32_t c = n == 1 ? p[0] : p[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (p[i] & 0x3fu);
    }
    if (c < min_of[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return 0;
    }
    *cp = c;
    return n;
}

/* Whether `s` is UTF-8 without control characters (C0, DEL, C1). */
static bool clean_text(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        uint32_t c;
        size_t n = utf8_char(p, &c);
        if (n == 0 || c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
            return false;
        }
        p += n;
    }
    return true;
}

/* Whether every byte of `s` is ASCII. */
static bool ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80) {
            return false;
        }
    }
    return true;
}

/* A number or a boolean where Blitline takes a string (a header's value, an image_identifier
 * from a database id) becomes that string, as JSON writes it: `obj`'s member `name` is replaced.
 * Returns the member. */
static json_object *scalar_as_string(json_object *obj, const char *name)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, name, &v) ||
        !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double) ||
          json_object_is_type(v, json_type_boolean))) {
        return v;
    }
    json_object *s = json_object_new_string(json_object_to_json_string(v));
    if (s == NULL) {
        return v; /* out of memory: refused as it is */
    }
    json_object_object_add(obj, name, s);
    return s;
}

/* For every request, the headers that frame the message or the connection: a job's
 * Content-Length before pixq's body would split one request into two (a desync at the receiver
 * or a proxy). For an S3 PUT also the ones that sign it or make it another operation:
 * x-amz-copy-source turns the upload into a copy from any bucket the credentials can read. */
const char *job_header_refused(const char *name, bool s3)
{
    static const char *const framing[] = {
        "content-length", "transfer-encoding", "host",      "connection", "expect", "te",
        "upgrade",        "trailer",           "keep-alive"};
    for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++) {
        if (strcasecmp(name, framing[i]) == 0) {
            return "frames the request";
        }
    }
    if (strncasecmp(name, "proxy-", 6) == 0) {
        return "frames the request";
    }
    static const char *const signing[] = {"authorization", "x-amz-date", "x-amz-content-sha256",
                                          "x-amz-security-token"};
    for (size_t i = 0; s3 && i < sizeof signing / sizeof signing[0]; i++) {
        if (strcasecmp(name, signing[i]) == 0) {
            return "is pixq's to sign the upload with";
        }
    }
    static const char *const other_operation[] = {"x-amz-copy-source", "x-amz-object-lock-",
                                                  "x-amz-website-redirect-location"};
    for (size_t i = 0; s3 && i < sizeof other_operation / sizeof other_operation[0]; i++) {
        if (strncasecmp(name, other_operation[i], strlen(other_operation[i])) == 0) {
            return "would make the upload something else";
        }
    }
    return NULL;
}

/* Whether `value`, a job's Content-Type for an upload, names what an output is: an image type
 * other than SVG (a browser runs an SVG's scripts), or bytes without a type. Parameters after ';'
 * and case do not matter. A type a browser renders as a page (text/html, image/svg+xml,
 * application/xhtml+xml, text/javascript...) would let a job serve its own script from the
 * deployment's bucket: a JPEG whose comment holds a page is a valid source, and move_original
 * stores its bytes as they are. The result JSON that postback_url's save writes may also be
 * application/json (`result`), its own type. */
static bool upload_type_allowed(const char *value, bool result)
{
    static const char *const allowed[] = {"application/octet-stream", "binary/octet-stream"};
    char type[128];
    size_t n = strcspn(value, ";");
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) {
        n--;
    }
    size_t skip = strspn(value, " \t");
    n = skip < n ? n - skip : 0;
    if (n == 0) {
        return value[strspn(value, " \t")] == '\0'; /* "": no type at all, as Blitline's "" */
    }
    if (n >= sizeof type) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        type[i] = (char)tolower((unsigned char)value[skip + i]);
    }
    type[n] = '\0';
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        if (strcmp(type, allowed[i]) == 0) {
            return true;
        }
    }
    if (result && strcmp(type, "application/json") == 0) {
        return true;
    }
    return strncmp(type, "image/", 6) == 0 && type[6] != '\0' && strstr(type, "svg") == NULL &&
           strpbrk(type + 6, "/ \t") == NULL;
}

/* An upload's header given as null is given as "", which removes it: Blitline's worker dropped
 * a header whose value was nil or empty alike. */
static void null_as_empty(json_object *headers, const char *name)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(headers, name, &v) && v == NULL) {
        json_object *s = json_object_new_string("");
        if (s != NULL) { /* out of memory: refused as it is */
            json_object_object_add(headers, name, s);
        }
    }
}

/* job_check_headers(), for the headers of the result JSON's object when `result`. */
static int check_headers(json_object *headers, const char *what, bool result, struct err *e)
{
    bool s3 = strncmp(what, "s3_destination", 14) == 0;
    if (!json_object_is_type(headers, json_type_object)) {
        return err_set(e, "%s must be an object", what);
    }
    size_t n = 0;
    const char *names[JOB_MAX_HEADERS + 1];
    json_object_object_foreach(headers, key, val)
    {
        (void)val;
        if (n <= JOB_MAX_HEADERS) {
            names[n++] = key;
        }
    }
    for (size_t i = 0; i < n; i++) {
        scalar_as_string(headers, names[i]); /* replaces values, keeps the keys */
        if (s3) {
            null_as_empty(headers, names[i]);
        }
    }
    if (json_object_object_length(headers) > JOB_MAX_HEADERS) {
        return err_set(e, "%s has more than %d headers", what, JOB_MAX_HEADERS);
    }
    char q[UTF8_SHOWN_MAX + 1];
    json_object_object_foreach(headers, name, v)
    {
        if (!json_object_is_type(v, json_type_string)) {
            return err_set(e, "%s.%s must be a string", what, utf8_ascii_shown(name, q, sizeof q));
        }
        const char *value = json_object_get_string(v);
        bool nul = (size_t)json_object_get_string_len(v) != strlen(value); /* "\u0000" */
        if (nul || !http_header_valid(name, value)) {
            return err_set(e,
                           "%s: header '%s' has a forbidden character (CR, LF, another control "
                           "character, or a name that is not a token)",
                           what, utf8_ascii_shown(name, q, sizeof q));
        }
        if (s3 && !ascii(value)) {
            return err_set(e,
                           "%s: header '%s' has a value that is not ASCII, whose signature S3 "
                           "refuses (it reads header bytes as ISO-8859-1): encode it first (S3 "
                           "decodes RFC 2047's =?UTF-8?B?...?= in x-amz-meta-* values)",
                           what, utf8_ascii_shown(name, q, sizeof q));
        }
        if (strlen(name) > JOB_HEADER_NAME_MAX) {
            return err_set(e, "%s: header name '%s' is longer than %d bytes", what,
                           utf8_ascii_shown(name, q, sizeof q), JOB_HEADER_NAME_MAX);
        }
        if (strlen(value) > JOB_HEADER_VALUE_MAX) {
            return err_set(e, "%s: header '%s' is longer than %d bytes", what, name,
                           JOB_HEADER_VALUE_MAX);
        }
        const char *why = job_header_refused(name, s3);
        if (why != NULL) {
            return err_set(e, "%s: header '%s' may not come from a job: it %s", what,
                           utf8_ascii_shown(name, q, sizeof q), why);
        }
        if (s3 && strcasecmp(name, "Content-Type") == 0 && !upload_type_allowed(value, result)) {
            const char *is = result ? "the result is application/json"
                                    : "an output is an image (image/*, not SVG) or "
                                      "application/octet-stream";
            return err_set(e,
                           "%s: Content-Type '%s' may not come from a job: %s, never a type a "
                           "browser would run from the bucket",
                           what, utf8_ascii_shown(value, q, sizeof q), is);
        }
    }
    return 0;
}

int job_check_headers(json_object *headers, const char *what, struct err *e)
{
    return check_headers(headers, what, false, e);
}

int job_check_s3_key(const char *location, const char *key, struct err *e)
{
    char q[UTF8_SHOWN_MAX + 1];
    if (location != NULL && location[0] != '\0' && !s3_valid_region(location)) {
        return err_set(e, "bucket location '%s' is not a region name",
                       utf8_ascii_shown(location, q, sizeof q));
    }
    size_t n = key != NULL ? strlen(key) : 0;
    if (n == 0 || n > JOB_S3_KEY_MAX) {
        return err_set(e, "key must be 1 to %d bytes, not %zu", JOB_S3_KEY_MAX, n);
    }
    if (!clean_text(key)) {
        return err_set(e, "key '%s' is not UTF-8 without control characters",
                       utf8_ascii_shown(key, q, sizeof q));
    }
    if (s3_key_has_dot_segment(key)) {
        /* S3 keeps it as a key, but S3-compatible stores and proxies resolve the path:
         * "../other-bucket/k" would reach a bucket outside PIXQ_S3_BUCKETS */
        return err_set(e, "key '%s' has a '.' or '..' segment", utf8_ascii_shown(key, q, sizeof q));
    }
    return 0;
}

int job_check_s3_object(const char *bucket, const char *location, const char *key, struct err *e)
{
    char q[UTF8_SHOWN_MAX + 1];
    if (bucket == NULL || !s3_valid_bucket(bucket)) {
        return err_set(e,
                       "bucket name '%s' is not valid (3-63 characters of a-z 0-9 . -; "
                       "A-Z and _ in a legacy us-east-1 name)",
                       bucket != NULL ? utf8_ascii_shown(bucket, q, sizeof q) : "");
    }
    return job_check_s3_key(location, key, e);
}

static int check_destination(const struct job_save *s, struct err *e)
{
    if (s == NULL || s->bucket == NULL) {
        return 0; /* PIXQ_DEFAULT_BUCKET's, checked at start */
    }
    if (job_check_s3_object(s->bucket, s->location, s->key, e) < 0) {
        return err_wrap(e, "s3_destination of '%.100s'", s->image_identifier);
    }
    return 0;
}

static int check_fn_destinations(const struct job_fn *fns, size_t n, struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (check_destination(fns[i].save, e) < 0 ||
            check_fn_destinations(fns[i].children, fns[i].n_children, e) < 0) {
            return -1;
        }
    }
    return 0;
}

int job_check_destinations(const struct job *j, struct err *e)
{
    if (check_destination(j->postback_save, e) < 0) {
        return -1;
    }
    for (size_t i = 0; i < j->n_pre; i++) {
        int rc = j->pre[i].job != NULL ? job_check_destinations(j->pre[i].job, e)
                                       : check_destination(j->pre[i].move, e);
        if (rc < 0) {
            return -1;
        }
    }
    return check_fn_destinations(j->functions, j->n_functions, e);
}

static size_t count_saves(const struct job_fn *fns, size_t n)
{
    size_t saves = 0;
    for (size_t i = 0; i < n; i++) {
        saves += (fns[i].save != NULL ? 1 : 0) + count_saves(fns[i].children, fns[i].n_children);
    }
    return saves;
}

size_t job_count_saves(const struct job *j)
{
    size_t saves = count_saves(j->functions, j->n_functions);
    for (size_t i = 0; i < j->n_pre; i++) {
        saves += j->pre[i].job != NULL ? job_count_saves(j->pre[i].job) : 1;
    }
    return saves;
}

int job_check_saves(const struct job *j, long max_saves, struct err *e)
{
    size_t saves = job_count_saves(j);
    if (saves > (size_t)max_saves) {
        return err_set(e, "too many saves (%zu, at most %ld)", saves, max_saves);
    }
    return 0;
}

/* ---------------------------------------------------------------- the function tree */

#define FN_PATH_DEPTH 16 /* levels of a function's place said in errors; "..." past them */

struct tree_ctx {
    struct job *job;
    size_t max_functions;
    size_t n_functions;
    struct err *e;
    size_t depth;             /* of the function being read: 1 at the top */
    size_t at[FN_PATH_DEPTH]; /* its index at each level */
};

/* Where the function being read is, "functions[0].functions[2]", for an error about one with
 * no name to go by; `functions` ends it with ".functions" (its children). */
static const char *fn_place(const struct tree_ctx *t, bool functions, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t d = 0; d < t->depth && len < cap; d++) {
        int w = d < FN_PATH_DEPTH
                    ? snprintf(out + len, cap - len, "%sfunctions[%zu]", d > 0 ? "." : "", t->at[d])
                    : snprintf(out + len, cap - len, "...");
        len += w > 0 ? (size_t)w : 0;
        if (d >= FN_PATH_DEPTH) {
            break;
        }
    }
    if (functions && len < cap) {
        snprintf(out + len, cap - len, ".functions");
    }
    return out;
}

static json_object *member(json_object *obj, const char *name)
{
    json_object *v = NULL;
    if (obj == NULL || !json_object_object_get_ex(obj, name, &v)) {
        return NULL;
    }
    return v;
}

static const char *string_member(json_object *obj, const char *name)
{
    json_object *v = member(obj, name);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* Lower-case extension of the last path segment of `key`, without the dot; "" if none. */
static void key_extension(const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    const char *slash = strrchr(key, '/');
    const char *base = slash != NULL ? slash + 1 : key;
    const char *dot = strrchr(base, '.');
    if (dot == NULL || dot[1] == '\0' || strlen(dot + 1) >= cap) {
        return;
    }
    size_t i = 0;
    for (const char *p = dot + 1; *p != '\0'; p++) {
        out[i++] = (char)tolower((unsigned char)*p);
    }
    out[i] = '\0';
}

/* Whether `ext` (lower case) names an image format: one pixq writes (worker/image.c's formats),
 * or one it does not, so that a key such as `doc.pdf` fails with a clear error rather than
 * holding a JPEG. A key's other extensions (`user.123`, `photo.v2`) are part of its name. */
static bool image_extension(const char *ext)
{
    static const char *const known[] = {"jpg",  "jpeg", "png", "webp", "gif",  "bmp",  "tif",
                                        "tiff", "pdf",  "bpg", "avif", "heic", "heif", "jp2",
                                        "jxl",  "svg",  "ico", "psd",  "eps",  "tga"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(ext, known[i]) == 0) {
            return true;
        }
    }
    return false;
}

bool job_format_writable(const char *ext)
{
    static const char *const writable[] = {"jpg", "jpeg", "png", "webp",
                                           "gif", "bmp",  "tif", "tiff"};
    for (size_t i = 0; i < sizeof writable / sizeof writable[0]; i++) {
        if (strcmp(ext, writable[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Output format, as Blitline's worker chose it: force_type (the destination's, then the save's)
 * overrides the destination key's extension when that names an image format, then the save's
 * extension, then jpg. */
static void resolve_format(struct job_save *s, json_object *save, json_object *dest)
{
    const char *candidates[] = {
        string_member(dest, "force_type"),
        string_member(save, "force_type"),
        NULL, /* the key's extension goes here */
        string_member(save, "extension"),
    };
    char key_ext[sizeof s->format] = "";
    if (s->key != NULL) {
        key_extension(s->key, key_ext, sizeof key_ext);
    }
    candidates[2] = image_extension(key_ext) ? key_ext : NULL;
    for (size_t i = 0; s->format[0] == '\0' && i < 4; i++) {
        if (candidates[i] != NULL && candidates[i][0] != '\0') {
            char tmp[sizeof s->format + 2];
            snprintf(tmp, sizeof tmp, ".%s",
                     candidates[i][0] == '.' ? candidates[i] + 1 : candidates[i]);
            key_extension(tmp, s->format, sizeof s->format);
            if (s->format[0] == '\0' && i != 2) { /* "image/png", "png.": a format, not one */
                snprintf(s->format, sizeof s->format, "%.*s", (int)sizeof s->format - 1, tmp + 1);
            }
        }
    }
    if (s->format[0] == '\0') {
        snprintf(s->format, sizeof s->format, "jpg");
    }
}

static int parse_destination(struct job_save *s, json_object *dest, struct err *e)
{
    if (dest == NULL) {
        return 0;
    }
    if (!json_object_is_type(dest, json_type_object)) {
        return err_set(e, "s3_destination of '%.100s' must be an object", s->image_identifier);
    }
    if (member(dest, "signed_url") != NULL) {
        return err_set(
            e, "s3_destination.signed_url of '%.100s' is not supported: give a bucket and a key",
            s->image_identifier);
    }
    json_object *bucket = member(dest, "bucket");
    if (bucket != NULL && json_object_is_type(bucket, json_type_object)) {
        s->bucket = string_member(bucket, "name");
        const char *location = string_member(bucket, "location");
        s->location = location != NULL && location[0] != '\0' ? location : NULL; /* "": none */
    } else if (bucket != NULL && json_object_is_type(bucket, json_type_string)) {
        s->bucket = json_object_get_string(bucket);
    }
    s->key = string_member(dest, "key");
    if (s->bucket == NULL || s->key == NULL || s->key[0] == '\0') {
        return err_set(e, "s3_destination of '%.100s' needs a bucket and a key",
                       s->image_identifier);
    }
    if ((size_t)json_object_get_string_len(member(dest, "key")) != strlen(s->key)) {
        return err_set(e, "s3_destination of '%.100s': key has a NUL character",
                       s->image_identifier);
    }
    if (job_check_s3_key(s->location, s->key, e) < 0) {
        return err_wrap(e, "s3_destination of '%.100s'", s->image_identifier);
    }
    if (job_param_bool(dest, "s3_destination", "return_keys", false, &s->return_keys, e) < 0) {
        return -1;
    }
    s->headers = member(dest, "headers");
    if (s->headers != NULL && !json_object_is_type(s->headers, json_type_object)) {
        return err_set(e, "s3_destination.headers of '%.100s' must be an object",
                       s->image_identifier);
    }
    /* "json" is the format of postback_url's save alone: an output's is an image's */
    bool result = strcmp(s->format, "json") == 0;
    return s->headers != NULL ? check_headers(s->headers, "s3_destination.headers", result, e) : 0;
}

/* save.encoding_options: settings of the WebP encoder, each given to it as `-define webp:k=v`
 * (Blitline's worker), used when the output is WebP. A name is what ImageMagick's webp: defines
 * are made of (a-z, 0-9, '-', '_'); a value longer than 8 characters is left out, as Blitline left
 * it out, and so is one that is no string, number or boolean. */
static int parse_encoding_options(struct job_save *s, json_object *save, struct err *e)
{
    json_object *opts = member(save, "encoding_options");
    if (opts == NULL) {
        return 0;
    }
    if (!json_object_is_type(opts, json_type_object)) {
        return err_set(e, "encoding_options of '%.100s' must be an object", s->image_identifier);
    }
    if (json_object_object_length(opts) > JOB_MAX_ENCODING_OPTIONS) {
        return err_set(e, "encoding_options of '%.100s' has more than %d settings",
                       s->image_identifier, JOB_MAX_ENCODING_OPTIONS);
    }
    char q[UTF8_SHOWN_MAX + 1];
    json_object_object_foreach(opts, name, v)
    {
        (void)v;
        size_t n = strlen(name);
        if (n == 0 || n > JOB_ENCODING_NAME_MAX ||
            strspn(name, "abcdefghijklmnopqrstuvwxyz"
                         "0123456789-_") != n) {
            return err_set(e,
                           "encoding_options of '%.100s': '%s' is not a setting name (a-z 0-9 - _, "
                           "at most %d)",
                           s->image_identifier, utf8_ascii_shown(name, q, sizeof q),
                           JOB_ENCODING_NAME_MAX);
        }
    }
    s->encoding_options = opts;
    return 0;
}

const char *job_encoding_value(json_object *v)
{
    if (!(json_object_is_type(v, json_type_string) || json_object_is_type(v, json_type_int) ||
          json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_boolean))) {
        return NULL;
    }
    const char *s = json_object_get_string(v);
    size_t n = strlen(s);
    if (n == 0 || n > JOB_ENCODING_VALUE_MAX || !clean_text(s) ||
        (json_object_is_type(v, json_type_string) && (size_t)json_object_get_string_len(v) != n)) {
        return NULL;
    }
    return s;
}

static int parse_save_options(struct job_save *s, json_object *save, double v, struct err *e)
{
    if (parse_encoding_options(s, save, e) < 0) {
        return -1;
    }
    const char *fn = "save";
    if (job_param_long(save, fn, "quality", 0, 1, 100, &s->quality, e) < 0 ||
        job_param_bool(save, fn, "skip", false, &s->skip, e) < 0 ||
        job_param_bool(save, fn, "check_blank", false, &s->check_blank, e) < 0 ||
        job_param_long(save, fn, "max_filesize", 0, 0, LONG_MAX, &s->max_filesize, e) < 0 ||
        job_param_bool(save, fn, "save_metadata", false, &s->save_metadata, e) < 0 ||
        job_param_bool(save, fn, "save_profiles", v >= 1.20, &s->save_profiles, e) < 0 ||
        job_param_string(save, fn, "interlace", NULL, &s->interlace, e) < 0) {
        return -1;
    }
    json_object *q = member(save, "png_quantize");
    double speed;
    if (q != NULL && !json_object_is_type(q, json_type_boolean) && number_of(q, &speed) == 0) {
        /* bool or int (pngquant's speed): a number, "5" as well, turns it on unless 0 */
        s->png_quantize = speed != 0;
        return 0;
    }
    return job_param_bool(save, fn, "png_quantize", false, &s->png_quantize, e);
}

/* Parses a save block into a new *out (owned by the function, even when this fails). */
static int parse_save(struct tree_ctx *t, const char *fn, json_object *save, struct job_save **out)
{
    if (!json_object_is_type(save, json_type_object)) {
        return err_set(t->e, "save of function '%s' must be an object", fn);
    }
    struct job_save *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return err_set(t->e, "out of memory");
    }
    *out = s;
    scalar_as_string(save, "image_identifier");
    s->image_identifier = string_member(save, "image_identifier");
    if (s->image_identifier == NULL || s->image_identifier[0] == '\0') {
        return err_set(t->e, "Save must have an image_identifier (function '%s')", fn);
    }
    if (strlen(s->image_identifier) > JOB_IDENTIFIER_MAX || !clean_text(s->image_identifier)) {
        return err_set(t->e,
                       "image_identifier of function '%s' must be UTF-8 without control "
                       "characters, at most %d bytes",
                       fn, JOB_IDENTIFIER_MAX);
    }
    static const char *const elsewhere[] = {"azure_destination", "ftp_destination",
                                            "signed_destination"};
    for (size_t i = 0; i < sizeof elsewhere / sizeof *elsewhere; i++) {
        if (member(save, elsewhere[i]) != NULL) {
            return err_set(t->e,
                           "%s of '%.100s' is not supported: pixq saves to S3 (s3_destination)",
                           elsewhere[i], s->image_identifier);
        }
    }
    if (parse_destination(s, member(save, "s3_destination"), t->e) < 0) {
        return -1;
    }
    if (parse_save_options(s, save, t->job->v, t->e) < 0) {
        /* "... for function 'save': ..." names no save of the several a job may have */
        char *at = strstr(t->e->msg, " for function 'save'");
        if (at != NULL) {
            char rest[ERR_MSG_MAX];
            snprintf(rest, sizeof rest, "%s", at + strlen(" for function 'save'"));
            snprintf(at, sizeof t->e->msg - (size_t)(at - t->e->msg), " of the save of '%.100s'%s",
                     s->image_identifier, rest);
        }
        return -1;
    }
    resolve_format(s, save, member(save, "s3_destination"));
    if (!s->skip && !job_format_writable(s->format)) { /* found before any source is fetched */
        return err_set(t->e, "Unsupported output format '%s' for '%.100s'", s->format,
                       s->image_identifier);
    }
    s->set_exif = member(save, "set_exif");
    if (s->set_exif != NULL && !s->skip) {
        char what[112];
        snprintf(what, sizeof what, "'%.100s'", s->image_identifier);
        return settags_check(s->set_exif, s->format, what, t->e);
    }
    return 0;
}

static int parse_functions(struct tree_ctx *t, json_object *arr, struct job_fn **out, size_t *n);

static int parse_fn(struct tree_ctx *t, json_object *obj, struct job_fn *f)
{
    char place[FN_PATH_DEPTH * 32];
    if (!json_object_is_type(obj, json_type_object)) {
        return err_set(t->e, "each function must be an object (%s is %s)",
                       fn_place(t, false, place, sizeof place),
                       json_type_to_name(json_object_get_type(obj)));
    }
    if (++t->n_functions > t->max_functions) {
        return err_set(t->e, "too many functions (at most %zu)", t->max_functions);
    }
    f->name = string_member(obj, "name");
    if (f->name == NULL || f->name[0] == '\0') {
        return err_set(t->e, "a function has no name (%s)",
                       fn_place(t, false, place, sizeof place));
    }
    f->params = member(obj, "params");
    if (f->params != NULL && !json_object_is_type(f->params, json_type_object)) {
        return err_set(t->e, "params of function '%s' must be an object", f->name);
    }
    json_object *save = member(obj, "save");
    if (save != NULL && parse_save(t, f->name, save, &f->save) < 0) {
        return -1;
    }
    json_object *kids = member(obj, "functions");
    if (kids == NULL) {
        return 0;
    }
    return parse_functions(t, kids, &f->children, &f->n_children);
}

static int parse_functions(struct tree_ctx *t, json_object *arr, struct job_fn **out, size_t *n)
{
    if (!json_object_is_type(arr, json_type_array)) {
        char place[FN_PATH_DEPTH * 32];
        return err_set(t->e, "functions must be an array (%s)",
                       fn_place(t, true, place, sizeof place));
    }
    size_t len = json_object_array_length(arr);
    if (len > t->max_functions) {
        return err_set(t->e, "too many functions (at most %zu)", t->max_functions);
    }
    *out = calloc(len > 0 ? len : 1, sizeof **out);
    if (*out == NULL) {
        return err_set(t->e, "out of memory");
    }
    *n = len;
    t->depth++;
    for (size_t i = 0; i < len; i++) {
        if (t->depth <= FN_PATH_DEPTH) {
            t->at[t->depth - 1] = i;
        }
        if (parse_fn(t, json_object_array_get_idx(arr, i), &(*out)[i]) < 0) {
            return -1;
        }
    }
    t->depth--;
    return 0;
}

static void free_functions(struct job_fn *fns, size_t n)
{
    if (fns == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free_functions(fns[i].children, fns[i].n_children);
        free(fns[i].save);
    }
    free(fns);
}

/* ---------------------------------------------------------------- the job */

/* A reset tokener of `depth` levels, kept per thread: a worker parses a job every few
 * microseconds, and a new tokener costs two allocations of about 1 KB. NULL if out of memory. */
static json_tokener *tokener(int depth)
{
    static _Thread_local json_tokener *tok;
    static _Thread_local int tok_depth;
    if (tok != NULL && tok_depth == depth) {
        return tok;
    }
    json_tokener *fresh = json_tokener_new_ex(depth);
    if (fresh == NULL) {
        return NULL;
    }
    if (tok != NULL) {
        json_tokener_free(tok);
    }
    tok = fresh;
    tok_depth = depth;
    return tok;
}

/* What json-c's tokener error `jerr` means, in words; success here means text after the value. */
static const char *json_error_text(enum json_tokener_error jerr)
{
    switch (jerr) {
    case json_tokener_success:
        return "trailing data";
    case json_tokener_continue:
    case json_tokener_error_parse_eof:
        return "unexpected end of input";
    default:
        return json_tokener_error_desc(jerr);
    }
}

/* Parses `text` as one JSON value within the limits into *out (NULL for JSON's null). Returns 0,
 * or -1 with the reason in `e`; *unread then tells whether it was for the size or depth limits
 * alone, json-c having not read the text or not to its end. */
static int parse_text(const char *text, size_t len, const struct job_limits *lim, json_object **out,
                      bool *unread, struct err *e)
{
    *out = NULL;
    *unread = false;
    if (len > lim->max_bytes + lim->own_bytes) {
        *unread = true;
        return err_set(e, "job is %zu bytes, more than the limit of %zu (PIXQ_MAX_JOB_BYTES)", len,
                       lim->max_bytes);
    }
    json_tokener *tok = tokener(lim->max_depth);
    if (tok == NULL) {
        return err_set(e, "out of memory");
    }
    json_object *root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (root == NULL && jerr == json_tokener_continue) {
        /* the text ended inside a value: the end of input (a NUL) completes a bare number or a
         * null, and leaves anything else unfinished */
        root = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    json_tokener_reset(tok);
    /* json-c 0.16's reset leaves a \uD800-\uDBFF escape a payload ended after waiting for its
     * low half: the next payload's first \u escape would be joined to it ("\u0041bc" read as
     * U+FFFD "Abc", a lone \uDC00 as U+1F400) */
    tok->high_surrogate = 0;
    /* a NULL root parsed with success is JSON's null */
    while (jerr == json_tokener_success && end < len && isspace((unsigned char)text[end])) {
        end++;
    }
    if (jerr != json_tokener_success || end != len) {
        json_object_put(root);
        if (jerr == json_tokener_error_depth) { /* valid JSON, for all json-c can tell */
            *unread = true;
            return err_set(e, "job nests deeper than %d levels (PIXQ_MAX_JSON_DEPTH)",
                           lim->max_depth);
        }
        if (jerr == json_tokener_continue || jerr == json_tokener_error_parse_eof) {
            return err_set(e, "job is not valid JSON: %s", json_error_text(jerr));
        }
        /* where, counted from 1: the byte json-c stopped at, or the first after the value */
        return err_set(e, "job is not valid JSON: %s at byte %zu of %zu", json_error_text(jerr),
                       (end < len ? end : len - 1) + 1, len);
    }
    *out = root;
    return 0;
}

/* The parsed payload of type `want` (an object, or an array for a batch), or NULL; *unread as
 * parse_text() says it (false when the payload is valid JSON of another kind). */
static json_object *parse_payload(const char *text, size_t len, const struct job_limits *lim,
                                  json_type want, bool *unread, struct err *e)
{
    json_object *root;
    if (parse_text(text, len, lim, &root, unread, e) < 0) {
        return NULL;
    }
    if (!json_object_is_type(root, want)) {
        err_set(e, want == json_type_object ? "job must be a JSON object"
                                            : "a batch of jobs must be a JSON array");
        json_object_put(root);
        return NULL;
    }
    return root;
}

static size_t skip_blanks(const char *text, size_t len, size_t i)
{
    while (i < len && isspace((unsigned char)text[i])) {
        i++;
    }
    return i;
}

/* Whether `text` is a Blitline request body: one JSON object whose only member is "json" (the
 * form field Blitline's API read, {"json": {job}}, {"json": [jobs]} or {"json": "<their JSON
 * text>"}, as its own worker and clients posted it). Its value's bytes in *at, *vlen. */
static bool request_body(const char *text, size_t len, size_t *at, size_t *vlen)
{
    static const char name[] = "\"json\"";
    size_t key = skip_blanks(text, len, 0);
    if (key >= len || text[key] != '{') {
        return false;
    }
    key = skip_blanks(text, len, key + 1);
    if (len - key < sizeof name - 1 || memcmp(text + key, name, sizeof name - 1) != 0) {
        return false; /* the cheap test, for every payload: a job's first member is another */
    }
    struct jscan_member m = {.name = "json"};
    size_t open;
    if (jscan_members(text, len, &m, 1, &open) < 0 || m.len == 0) {
        return false;
    }
    /* nothing but the one member: '{' "json" ':' before its value, '}' after it */
    size_t colon = skip_blanks(text, len, key + sizeof name - 1);
    size_t close = skip_blanks(text, len, m.at + m.len);
    if (text[colon] != ':' || skip_blanks(text, len, colon + 1) != m.at || close >= len ||
        text[close] != '}' || skip_blanks(text, len, close + 1) != len) {
        return false;
    }
    *at = m.at;
    *vlen = m.len;
    return true;
}

bool job_is_batch(const char *text, size_t len)
{
    size_t i = skip_blanks(text, len, 0), at, vlen;
    return (i < len && text[i] == '[') || request_body(text, len, &at, &vlen);
}

/* jscan_elements()'s visitor for job_split_batch(): counts the elements (each == NULL), or
 * passes them on. */
struct batch_scan {
    job_each_fn each;
    void *user;
    size_t n;
};

static int batch_element(void *user, const char *element, size_t len)
{
    struct batch_scan *b = user;
    b->n++;
    return b->each != NULL ? b->each(b->user, element, len) : 0;
}

static int split_request_body(const char *value, size_t len, const struct job_limits *lim,
                              job_each_fn each, void *user, struct err *e);

int job_split_batch(const char *text, size_t len, const struct job_limits *lim, job_each_fn each,
                    void *user, struct err *e)
{
    size_t max = lim->max_batch_bytes > 0 ? lim->max_batch_bytes : lim->max_bytes;
    if (len > max) {
        return err_set(e, "a batch is %zu bytes, more than the limit of %zu (PIXQ_MAX_BATCH_BYTES)",
                       len, max);
    }
    size_t value, vlen;
    if (request_body(text, len, &value, &vlen)) {
        return split_request_body(text + value, vlen, lim, each, user, e);
    }
    /* the elements as written, however large the whole (each is a job of its own limits), in
     * two passes: the first finds the text one JSON array of at most JOB_MAX_BATCH elements */
    struct batch_scan b = {NULL, NULL, 0};
    size_t at = 0;
    if (jscan_elements(text, len, batch_element, &b, &at) == 0) {
        if (b.n > JOB_MAX_BATCH) {
            return err_set(e, "a batch holds %zu jobs, more than the limit of %d", b.n,
                           JOB_MAX_BATCH);
        }
        b = (struct batch_scan){each, user, 0};
        if (jscan_elements(text, len, batch_element, &b, &at) < 0) {
            return err_set(e, "job %zu of the batch could not be queued", b.n - 1);
        }
        return (int)b.n;
    }
    if (len > lim->max_bytes + lim->own_bytes) { /* more than json-c is given */
        return at >= len ? err_set(e, "batch is not valid JSON: unexpected end of input")
                         : err_set(e, "batch is not valid JSON at byte %zu of %zu", at + 1, len);
    }
    /* what json-c takes besides JSON (single quotes, comments...), and its words for a fault; the
     * array one level more than a job may nest, which each of its jobs is held to on its own */
    struct job_limits array = *lim;
    array.max_depth = lim->max_depth + 1;
    bool unread;
    json_object *root = parse_payload(text, len, &array, json_type_array, &unread, e);
    if (root == NULL && unread) { /* deeper than that (it was not too large) */
        return err_set(e,
                       "a batch nests deeper than %d levels: its jobs %d (PIXQ_MAX_JSON_DEPTH), "
                       "and one for the array",
                       array.max_depth, lim->max_depth);
    }
    if (root == NULL) {
        return -1;
    }
    size_t n = json_object_array_length(root);
    int rc = n > JOB_MAX_BATCH
                 ? err_set(e, "a batch holds %zu jobs, more than the limit of %d", n, JOB_MAX_BATCH)
                 : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *job =
            json_object_to_json_string_ext(json_object_array_get_idx(root, i),
                                           JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (each(user, job, strlen(job)) < 0) {
            rc = err_set(e, "job %zu of the batch could not be queued", i);
        }
    }
    json_object_put(root);
    return rc < 0 ? -1 : (int)n;
}

/* The job or jobs of a request body's "json" member (`value`, `len` bytes as written): a job
 * alone is passed on as one element, an array is split as a batch, and a string is their JSON
 * text, read so once unescaped (not a request body in its turn). */
static int split_request_body(const char *value, size_t len, const struct job_limits *lim,
                              job_each_fn each, void *user, struct err *e)
{
    static const char what[] = "the \"json\" member of a Blitline request body holds";
    bool text = value[0] == '"';
    json_object *s = NULL;
    if (text) { /* a string the scan found well formed */
        json_tokener *tok = json_tokener_new();
        if (tok != NULL) {
            s = json_tokener_parse_ex(tok, value, (int)len);
            json_tokener_free(tok);
        }
        if (!json_object_is_type(s, json_type_string)) {
            json_object_put(s);
            return err_set(e,
                           "%s no job (out of memory): a job, an array of jobs, or their JSON "
                           "text",
                           what);
        }
        size_t n = (size_t)json_object_get_string_len(s);
        value = json_object_get_string(s);
        size_t i = skip_blanks(value, n, 0);
        value += i;
        len = n - i;
    }
    int rc;
    if (len > 0 && value[0] == '[') {
        rc = job_split_batch(value, len, lim, each, user, e);
    } else if (len > 0 && value[0] == '{') {
        rc = each(user, value, len) < 0 ? err_set(e, "its job could not be queued") : 1;
    } else if (text) {
        rc = err_set(e, "%s text that is neither a job nor an array of jobs", what);
    } else {
        rc = err_set(e, "%s no job (another value): a job, an array of jobs, or their JSON text",
                     what);
    }
    json_object_put(s);
    return rc;
}

static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= JOB_ID_MAX) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && strchr("-_.:", *s) == NULL) {
            return false;
        }
    }
    return true;
}

/* An integer job_id as the payload writes it, into `out` (`cap` bytes, cut to fit: a cut id is
 * too long for valid_id()): json-c saturates one beyond 64 bits (to 18446744073709551615 or
 * -9223372036854775808), so two different ids would read the same. Returns 0, or -1 when the
 * text is not at hand. */
static int integer_as_written(const struct job *j, char *out, size_t cap)
{
    struct jscan_member m = {.name = "job_id"};
    size_t open = 0;
    if (j->text == NULL || jscan_members(j->text, j->text_len, &m, 1, &open) < 0 || m.len == 0) {
        return -1;
    }
    size_t n = m.len < cap ? m.len : cap - 1;
    memcpy(out, j->text + m.at, n);
    out[n] = '\0';
    return 0;
}

/* Reads job_id; an absent one is assigned later, a malformed one makes the job invalid. */
static int read_id(struct job *j, struct err *e)
{
    json_object *v = member(j->root, "job_id");
    if (v == NULL) {
        return 0;
    }
    const char *s = json_object_get_string(v);
    bool nul = json_object_is_type(v, json_type_string) &&
               (size_t)json_object_get_string_len(v) != strlen(s); /* "a\u0000b": "a" */
    if (!json_object_is_type(v, json_type_string) && !json_object_is_type(v, json_type_int)) {
        return err_set(
            e, "job_id must be a string of 1-%d characters of A-Z a-z 0-9 - _ . :", JOB_ID_MAX - 1);
    }
    char digits[JOB_ID_MAX + 1];
    if (json_object_is_type(v, json_type_int)) {
        s = integer_as_written(j, digits, sizeof digits) == 0 ? digits : s;
    }
    if (nul || !valid_id(s)) {
        return err_set(e, "job_id '%.64s%s' must be 1-%d characters of A-Z a-z 0-9 - _ . :", s,
                       strlen(s) > 64 ? "..." : "", JOB_ID_MAX - 1);
    }
    snprintf(j->id, sizeof j->id, "%s", s);
    return 0;
}

/* postback_url {"save": {"s3_destination": {bucket, key, headers}}}: where the result JSON goes. */
static int read_postback_save(struct job *j, json_object *url, struct err *e)
{
    json_object *save = member(url, "save");
    json_object *dest = save != NULL && json_object_is_type(save, json_type_object)
                            ? member(save, "s3_destination")
                            : NULL;
    if (dest == NULL) {
        return err_set(e, "postback_url must be a URL, or {\"save\": {\"s3_destination\": "
                          "{\"bucket\": ..., \"key\": ...}}} to write the result to S3");
    }
    struct job_save *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return err_set(e, "out of memory");
    }
    s->image_identifier = "postback_url";
    snprintf(s->format, sizeof s->format, "json");
    if (parse_destination(s, dest, e) < 0) {
        free(s); /* nowhere to say so: the job goes to dead with the reason */
        return -1;
    }
    j->postback_save = s;
    return 0;
}

static int read_postback(struct job *j, struct err *e)
{
    json_object *url = member(j->root, "postback_url");
    if (url != NULL && json_object_is_type(url, json_type_object)) {
        if (read_postback_save(j, url, e) < 0) {
            return -1;
        }
        url = NULL;
    } else if (url != NULL && !json_object_is_type(url, json_type_string)) {
        return err_set(e, "postback_url must be a string");
    }
    j->postback_url =
        url != NULL && json_object_get_string_len(url) > 0 ? json_object_get_string(url) : NULL;
    j->postback_headers = member(j->root, "postback_headers");
    if (j->postback_headers == NULL) {
        return 0;
    }
    return job_check_headers(j->postback_headers, "postback_headers", e);
}

/* Blitline's src_type: an image ("image", or "smart_image", which is the same for an image) is
 * all pixq reads; the others (multi_page, burst_pdf, screen_shot_url, gif, zip...) would give
 * other outputs than the client waits for, so they fail, saying so. */
static int read_src_type(const struct job *j, struct err *e)
{
    json_object *t = member(j->root, "src_type");
    if (t == NULL) {
        return 0;
    }
    json_object *name = json_object_is_type(t, json_type_object) ? member(t, "name") : t;
    const char *s = name != NULL && json_object_is_type(name, json_type_string)
                        ? json_object_get_string(name)
                        : NULL;
    if (s == NULL) {
        return err_set(e, "src_type must be a string");
    }
    if (strcmp(s, "image") != 0 && strcmp(s, "smart_image") != 0) {
        char q[UTF8_SHOWN_MAX + 1];
        return err_set(e, "src_type '%s' is not supported (pixq reads images only)",
                       utf8_ascii_shown(s, q, sizeof q));
    }
    return 0;
}

/* Blitline's switches for analyses by other programs and services (Apache Tika, AWS
 * Rekognition, Imagga, a reverse image search): pixq runs none, and a job that turns one on
 * fails, saying so, rather than succeed without the data it waits for (as a perceptual hash
 * does). Off, or absent, they are nothing. */
static int read_analyses(const struct job *j, struct err *e)
{
    static const char *const names[] = {"get_tika", "detect_faces", "detect_labels", "imagga_tags",
                                        "find_on_web"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        bool on = false;
        if (job_param_bool(j->root, "job", names[i], false, &on, e) < 0) {
            return -1;
        }
        if (on) {
            return err_set(e,
                           "%s is not supported (pixq runs no Tika, Rekognition, Imagga or "
                           "reverse image search)",
                           names[i]);
        }
    }
    return 0;
}

static int read_envelope(struct job *j, struct err *e)
{
    /* the names of pixq's own tasks (behind RQ_TASK_MARK): a job carrying one is a forgery */
    static const char *const reserved[] = {"pixq_upload", "pixq_postback", "pixq_poison",
                                           "pixq_wake"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        if (member(j->root, reserved[i]) != NULL) {
            return err_set(e, "'%s' is pixq's own: a job may not carry it", reserved[i]);
        }
    }
    const char *fn = "job";
    if (job_param_double(j->root, fn, "v", 1.21, 0, 100, &j->v, e) < 0 ||
        job_param_bool(j->root, fn, "suppress_auto_orient", false, &j->suppress_auto_orient, e) <
            0 ||
        job_param_bool(j->root, fn, "get_exif", false, &j->get_exif, e) < 0 ||
        job_param_bool(j->root, fn, "extended_metadata", false, &j->extended_metadata, e) < 0 ||
        job_param_bool(j->root, fn, "include_iptc", false, &j->include_iptc, e) < 0 ||
        job_param_string(j->root, fn, "hash", NULL, &j->hash, e) < 0 || read_analyses(j, e) < 0) {
        return -1;
    }
    /* in any case, as Blitline lowercased it; a name it did not know it left out (the job went
     * on without the hash), as pixq does: only the perceptual hashes, which Blitline computed
     * and pixq does not, fail the job rather than leave out a value asked for */
    if (j->hash != NULL &&
        (strcasecmp(j->hash, "phash_dct") == 0 || strcasecmp(j->hash, "phash_mh") == 0)) {
        return err_set(e, "hash '%s' is not supported (pixq computes md5, sha256 and crc32)",
                       j->hash);
    }
    j->src = member(j->root, "src");
    if (j->src == NULL || (!json_object_is_type(j->src, json_type_string) &&
                           !json_object_is_type(j->src, json_type_object))) {
        return err_set(e, "No source for processing: src must be a URL or an object");
    }
    return read_src_type(j, e);
}

static int read_tree(struct job *j, size_t max_functions, size_t *n_functions, struct err *e)
{
    json_object *fns = member(j->root, "functions");
    if (fns != NULL && !json_object_is_type(fns, json_type_array)) {
        return err_set(e, "functions must be an array of functions");
    }
    if (fns == NULL) { /* [] is a job all the same, as in Blitline: the source's metadata */
        return err_set(e, "Functions are required, or we aren't doing anything (null op)");
    }
    struct tree_ctx t = {
        .job = j, .max_functions = max_functions, .n_functions = *n_functions, .e = e};
    int rc = parse_functions(&t, fns, &j->functions, &j->n_functions);
    *n_functions = t.n_functions;
    return rc;
}

/* ---------------------------------------------------------------- pre_process */

/* The context of one parse: limits, and the functions counted over the nested jobs too. */
struct parse_ctx {
    const struct job_limits *lim;
    size_t n_functions;
};

static struct job *job_new(json_object *root)
{
    struct job *j = calloc(1, sizeof *j);
    if (j != NULL) {
        j->root = root;
    }
    return j;
}

static int read_job(struct job *j, struct parse_ctx *p, bool nested, struct err *e);

/* pre_process.move_original: {"s3_destination": {bucket, key, headers}}. */
static int read_move(struct job_pre *step, json_object *spec, struct err *e)
{
    struct job_save *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return err_set(e, "out of memory");
    }
    step->move = s;
    s->image_identifier = "move_original";
    s->save_metadata = true; /* the untouched original */
    json_object *dest =
        json_object_is_type(spec, json_type_object) ? member(spec, "s3_destination") : NULL;
    if (dest == NULL) {
        return err_set(e, "pre_process move_original needs an s3_destination");
    }
    if (parse_destination(s, dest, e) < 0) {
        return -1;
    }
    key_extension(s->key, s->format, sizeof s->format);
    if (!image_extension(s->format)) {
        s->format[0] = '\0'; /* `orig/user.123`: the source's format, as without one */
    }
    if (s->format[0] != '\0' && !job_format_writable(s->format)) {
        return err_set(e, "Unsupported output format '%s' for move_original", s->format);
    }
    return 0;
}

/* pre_process.job: a whole job, without pre_process of its own. */
static int read_nested(struct job *parent, struct job_pre *step, json_object *spec,
                       struct parse_ctx *p, struct err *e)
{
    if (!json_object_is_type(spec, json_type_object)) {
        return err_set(e, "pre_process job must be an object");
    }
    step->job = job_new(json_object_get(spec));
    if (step->job == NULL) {
        json_object_put(spec);
        return err_set(e, "out of memory");
    }
    snprintf(step->job->id, sizeof step->job->id, "%s", parent->id);
    if (read_job(step->job, p, true, e) < 0) {
        return err_wrap(e, "pre_process job");
    }
    return 0;
}

static int read_step(struct job *j, json_object *step, struct parse_ctx *p, struct err *e)
{
    if (!json_object_is_type(step, json_type_object) || json_object_object_length(step) != 1) {
        return err_set(e, "each pre_process step must be an object with one key");
    }
    if (j->n_pre == JOB_MAX_PRE) {
        return err_set(e, "too many pre_process steps (at most %d)", JOB_MAX_PRE);
    }
    struct job_pre *pre = &j->pre[j->n_pre++];
    json_object_object_foreach(step, name, spec)
    {
        if (strcmp(name, "job") == 0) {
            return read_nested(j, pre, spec, p, e);
        }
        if (strcmp(name, "move_original") == 0 || strcmp(name, "convert_original") == 0) {
            return read_move(pre, spec, e);
        }
        return err_set(e, "pre_process '%.100s' is not supported", name);
    }
    return 0;
}

static int read_pre_process(struct job *j, struct parse_ctx *p, bool nested, struct err *e)
{
    json_object *pre = member(j->root, "pre_process");
    if (pre == NULL) {
        return 0;
    }
    if (nested) {
        return err_set(e, "a pre_process job cannot have a pre_process of its own");
    }
    bool one = json_object_is_type(pre, json_type_object);
    if (!one && !json_object_is_type(pre, json_type_array)) {
        return err_set(e, "pre_process must be an object or an array of objects");
    }
    j->pre = calloc(JOB_MAX_PRE, sizeof *j->pre);
    if (j->pre == NULL) {
        return err_set(e, "out of memory");
    }
    size_t n = one ? 1 : json_object_array_length(pre);
    for (size_t i = 0; i < n; i++) {
        if (read_step(j, one ? pre : json_object_array_get_idx(pre, i), p, e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The job's v first of all, for the shape of the postback of a job that fails before
 * read_envelope() checks it: pixq's decision, an absent (or bad) v behaves as 1.21. */
static void read_version(struct job *j)
{
    struct err ignored;
    if (job_param_double(j->root, "job", "v", 1.21, 0, 100, &j->v, &ignored) < 0) {
        j->v = 1.21;
    }
}

static int read_job(struct job *j, struct parse_ctx *p, bool nested, struct err *e)
{
    read_version(j);
    /* the postback first: a job whose job_id is refused is still told why (under the id the
     * worker gives it) */
    struct err id_error = {{0}};
    int id = nested ? 0 : read_id(j, &id_error);
    if (read_postback(j, e) < 0) {
        return -1;
    }
    if (id < 0) {
        *e = id_error;
        return -1;
    }
    if (read_envelope(j, e) < 0 || read_pre_process(j, p, nested, e) < 0) {
        return -1;
    }
    return read_tree(j, p->lim->max_functions, &p->n_functions, e);
}

static void number_functions(struct job_fn *f, size_t n, int *next)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i].save != NULL) {
            f[i].save->index = (*next)++;
        }
        number_functions(f[i].children, f[i].n_children, next);
    }
}

/* Numbers every save of the job, its pre_process steps' (run first) included, from 0 in the
 * order they run: the number names an output in Redis (a parked output's blob and outcome) and
 * in default keys, so a pre_process job's outputs must not share the main job's numbers. */
static void number_saves(struct job *j, int *next)
{
    for (size_t i = 0; i < j->n_pre; i++) {
        if (j->pre[i].job != NULL) {
            number_saves(j->pre[i].job, next);
        } else if (j->pre[i].move != NULL) {
            j->pre[i].move->index = (*next)++;
        }
    }
    number_functions(j->functions, j->n_functions, next);
}

/* The members of a job that say how its failure is posted, and under which id (and when it was
 * queued, for the queue wait histogram, and its run number). */
static const char *const postback_members[] = {"job_id",
                                               "postback_url",
                                               "postback_headers",
                                               "v",
                                               "content_type_json",
                                               "postback_error_only",
                                               "retry_postback",
                                               "pixq_enqueued_at",
                                               "pixq_attempt"};
#define N_POSTBACK_MEMBERS (sizeof postback_members / sizeof postback_members[0])

/* Keeps a copy of the payload `j` was read from in j->text. Returns 0 or -1. */
static int keep_text(struct job *j, const char *text, size_t len)
{
    j->text = malloc(len + 1);
    if (j->text == NULL) {
        return -1;
    }
    memcpy(j->text, text, len);
    j->text[len] = '\0';
    j->text_len = len;
    return 0;
}

/* A payload json-c did not read (over PIXQ_MAX_JOB_BYTES) or not to its end (deeper than
 * PIXQ_MAX_JSON_DEPTH) that a scan finds to be one JSON object still has a postback_url to tell:
 * a job of its postback members alone (each read within the limits, one level down, as in the
 * payload), failing with `why`. NULL when the payload is not such an object, or a member breaks
 * the limits. */
static struct job *salvage(const char *text, size_t len, const struct job_limits *lim,
                           const char *why)
{
    struct jscan_member m[N_POSTBACK_MEMBERS];
    for (size_t k = 0; k < N_POSTBACK_MEMBERS; k++) {
        m[k].name = postback_members[k];
    }
    size_t open = 0;
    if (len > JOB_SALVAGE_MAX || jscan_members(text, len, m, N_POSTBACK_MEMBERS, &open) < 0) {
        return NULL;
    }
    struct job_limits inside = *lim;
    inside.max_depth = lim->max_depth > 1 ? lim->max_depth - 1 : 1;
    json_object *root = json_object_new_object();
    for (size_t k = 0; root != NULL && k < N_POSTBACK_MEMBERS; k++) {
        json_object *v;
        bool unread;
        struct err ignored;
        if (m[k].len == 0) {
            continue;
        }
        if (parse_text(text + m[k].at, m[k].len, &inside, &v, &unread, &ignored) < 0 ||
            json_object_object_add(root, m[k].name, v) < 0) {
            json_object_put(v);
            json_object_put(root);
            root = NULL;
        }
    }
    struct job *j = root != NULL ? job_new(root) : NULL;
    if (j == NULL) {
        json_object_put(root);
        return NULL;
    }
    if (keep_text(j, text, len) < 0) {
        job_destroy(j);
        return NULL;
    }
    /* no source, no functions: the error that counts is `why` */
    struct err ignored = {{0}};
    struct parse_ctx p = {.lim = lim};
    read_job(j, &p, false, &ignored);
    snprintf(j->error, sizeof j->error, "%s", why);
    j->salvaged = true;
    return j;
}

struct job *job_parse(const char *text, size_t len, const struct job_limits *lim, struct err *e)
{
    bool unread = false;
    json_object *root = parse_payload(text, len, lim, json_type_object, &unread, e);
    if (root == NULL) {
        return unread ? salvage(text, len, lim, e->msg) : NULL;
    }
    struct job *j = job_new(root);
    if (j == NULL || keep_text(j, text, len) < 0) {
        job_destroy(j);
        json_object_put(j == NULL ? root : NULL);
        err_set(e, "out of memory");
        return NULL;
    }
    struct err why = {{0}};
    struct parse_ctx p = {.lim = lim};
    read_job(j, &p, false, &why);
    int next = 0;
    number_saves(j, &next);
    snprintf(j->error, sizeof j->error, "%s", why.msg);
    return j;
}

void job_destroy(struct job *j)
{
    if (j == NULL) {
        return;
    }
    for (size_t i = 0; i < j->n_pre; i++) {
        job_destroy(j->pre[i].job);
        free(j->pre[i].move);
    }
    free(j->pre);
    free(j->postback_save);
    free(j->text);
    free_functions(j->functions, j->n_functions);
    json_object_put(j->root);
    free(j);
}

/* The object's closing '}' in `text` (`len` bytes): its offset, or `len` when the text does not
 * end with it (blanks aside). */
static size_t closing_brace(const char *text, size_t len)
{
    size_t end = len;
    while (end > 0 && isspace((unsigned char)text[end - 1])) {
        end--;
    }
    return end >= 2 && text[end - 1] == '}' ? end - 1 : len;
}

/* Where the member `,"name":<digits>` that pixq wrote last into `text` starts: right before the
 * object's '}' at `close`; `close` when there is none. */
static size_t own_member_at(const char *text, size_t close, const char *name)
{
    size_t v = close;
    while (v > 0 && isdigit((unsigned char)text[v - 1])) {
        v--;
    }
    char head[64];
    int hn = snprintf(head, sizeof head, ",\"%s\":", name);
    if (v < close && hn > 0 && v >= (size_t)hn &&
        memcmp(text + v - (size_t)hn, head, (size_t)hn) == 0) {
        return v - (size_t)hn;
    }
    return close;
}

/* `text` (`len` bytes, a JSON object) with `"name":value` written as its last member into `out`:
 * in place of a number pixq wrote last under that name when `replace` (own_member_at()), else
 * after the others, so that json-c, which keeps the last of a name, reads it there; the rest of the
 * payload is kept byte for byte (json-c would write out again, escaped, a raw control character it
 * took, making the payload larger than its client sent it). Returns 0, 1 when the text is not JSON
 * as jscan reads it (a comment, which may hold the last '}', single quotes, a trailing comma), or
 * -1 when out of memory. */
static int set_last_member(const char *text, size_t len, const char *name, const char *value,
                           bool replace, struct buf *out)
{
    size_t open;
    size_t close = closing_brace(text, len);
    if (close == len || jscan_members(text, len, NULL, 0, &open) < 0) {
        return 1;
    }
    size_t at = replace ? own_member_at(text, close, name) : close;
    size_t before = at;
    while (before > 0 && isspace((unsigned char)text[before - 1])) {
        before--;
    }
    bool comma = at != close || text[before - 1] != '{'; /* none in an empty object */
    if (buf_append(out, text, at) < 0 ||
        buf_printf(out, "%s\"%s\":%s", comma ? "," : "", name, value) < 0 ||
        buf_append(out, text + close, len - close) < 0) {
        return -1;
    }
    return 0;
}

/* Writes j->text again with `"name":value` as its last member (set_last_member()) into
 * `payload`, or, where it is not JSON as jscan reads it, the job's document as json-c writes it
 * (never a salvaged job's, which jscan read); j->text becomes the new payload. Returns 0 or -1. */
static int rewrite_text(struct job *j, const char *name, const char *value, bool replace,
                        struct buf *payload, struct err *e)
{
    buf_reset(payload);
    int rc =
        j->text != NULL ? set_last_member(j->text, j->text_len, name, value, replace, payload) : 1;
    if (rc > 0 && j->salvaged) { /* its document holds a few members of the payload only */
        rc = -1;
    } else if (rc > 0) {
        buf_reset(payload);
        const char *doc = json_object_to_json_string_ext(
            j->root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        rc = doc != NULL && buf_puts(payload, doc) == 0 ? 0 : -1;
    }
    char *copy = rc == 0 ? malloc(payload->len + 1) : NULL;
    if (copy == NULL) {
        return err_set(e, "cannot write the job with its %s", name);
    }
    memcpy(copy, payload->data, payload->len);
    copy[payload->len] = '\0';
    free(j->text);
    j->text = copy;
    j->text_len = payload->len;
    return 0;
}

long job_attempt(const struct job *j)
{
    json_object *v = NULL;
    json_object_object_get_ex(j->root, "pixq_attempt", &v);
    long a = v != NULL ? (long)json_object_get_int64(v) : 1;
    return a < 1 ? 1 : a;
}

int job_set_attempt(struct job *j, long attempt, struct buf *payload, struct err *e)
{
    char value[32];
    snprintf(value, sizeof value, "%ld", attempt);
    json_object_object_add(j->root, "pixq_attempt", json_object_new_int64(attempt));
    return rewrite_text(j, "pixq_attempt", value, true, payload, e);
}

int job_text_afresh(const struct job *j, struct buf *out)
{
    buf_reset(out);
    if (j->text == NULL) {
        return -1;
    }
    size_t close = closing_brace(j->text, j->text_len);
    size_t at = close < j->text_len ? own_member_at(j->text, close, "pixq_attempt") : close;
    return buf_append(out, j->text, at) < 0 ||
                   buf_append(out, j->text + close, j->text_len - close) < 0
               ? -1
               : 0;
}

int job_assign_id(struct job *j, struct buf *payload, struct err *e)
{
    char id[ID_JOB_LEN];
    if (id_job(id) < 0) {
        return err_set(e, "cannot generate a job id: no randomness");
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    j->id_assigned = true;
    for (size_t i = 0; i < j->n_pre; i++) {
        if (j->pre[i].job != NULL) {
            snprintf(j->pre[i].job->id, sizeof j->pre[i].job->id, "%s", id);
        }
    }
    json_object_object_add(j->root, "job_id", json_object_new_string(id));
    char value[ID_JOB_LEN + 2];
    snprintf(value, sizeof value, "\"%s\"", id);
    /* never in place of one: a job_id refused stays where it was, and the payload as large and
     * as deep as it came (a salvaged job's could fit the limits without it) */
    return rewrite_text(j, "job_id", value, false, payload, e);
}

static void collect_identifiers(json_object *fns, json_object *out, int depth)
{
    if (fns == NULL || !json_object_is_type(fns, json_type_array) || depth > 64) {
        return;
    }
    size_t n = json_object_array_length(fns);
    for (size_t i = 0; i < n; i++) {
        json_object *f = json_object_array_get_idx(fns, i);
        json_object *save = member(f, "save");
        if (json_object_is_type(save, json_type_object)) {
            scalar_as_string(save, "image_identifier"); /* as parse_save would have */
        }
        const char *id = string_member(save, "image_identifier");
        if (id != NULL) {
            json_object_array_add(out, json_object_new_string(id));
        }
        collect_identifiers(member(f, "functions"), out, depth + 1);
    }
}

#define JOB_SCAN_DEPTH_MAX 64 /* deeper than any JSON job_parse() accepts */

/* Whether a string anywhere under `v` is "&" followed by `identifier`. */
static bool refers(json_object *v, const char *identifier, int depth)
{
    if (depth > JOB_SCAN_DEPTH_MAX) {
        return false;
    }
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        return s[0] == '&' && strcmp(s + 1, identifier) == 0;
    }
    if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (refers(json_object_array_get_idx(v, i), identifier, depth + 1)) {
                return true;
            }
        }
        return false;
    }
    if (json_object_is_type(v, json_type_object)) {
        json_object_object_foreach(v, key, val)
        {
            (void)key;
            if (refers(val, identifier, depth + 1)) {
                return true;
            }
        }
    }
    return false;
}

bool job_refers_to(const struct job *j, const char *identifier)
{
    return refers(j->root, identifier, 0);
}

void job_identifiers(const struct job *j, json_object *out)
{
    collect_identifiers(member(j->root, "functions"), out, 0);
}

const char *job_src_url(const struct job *j)
{
    return j->src != NULL && json_object_is_type(j->src, json_type_string)
               ? json_object_get_string(j->src)
               : NULL;
}

void job_s3_src(json_object *src, const char **bucket, const char **region, const char **key)
{
    json_object *b = NULL, *k = NULL;
    json_object_object_get_ex(src, "bucket", &b);
    json_object_object_get_ex(src, "key", &k);
    *key = k != NULL ? json_object_get_string(k) : NULL;
    *bucket = *region = NULL;
    if (b != NULL && json_object_is_type(b, json_type_object)) {
        json_object *name = NULL, *loc = NULL;
        json_object_object_get_ex(b, "name", &name);
        json_object_object_get_ex(b, "location", &loc);
        *bucket = name != NULL ? json_object_get_string(name) : NULL;
        *region = loc != NULL ? json_object_get_string(loc) : NULL;
    } else if (b != NULL) {
        *bucket = json_object_get_string(b);
    }
}

int job_check_src_object(json_object *src, struct err *e)
{
    json_object *name = NULL;
    const char *kind =
        json_object_object_get_ex(src, "name", &name) && json_object_is_type(name, json_type_string)
            ? json_object_get_string(name)
            : "";
    if (strcmp(kind, "canvas") == 0) {
        return 0;
    }
    if (strcmp(kind, "s3") != 0) {
        char q[UTF8_SHOWN_MAX + 1];
        return err_set(e, "src of type '%s' is not supported", utf8_ascii_shown(kind, q, sizeof q));
    }
    const char *bucket, *region, *key;
    job_s3_src(src, &bucket, &region, &key);
    if (bucket == NULL || key == NULL) {
        return err_set(e, "an s3 src needs a bucket and a key");
    }
    return job_check_s3_object(bucket, region, key, e);
}
