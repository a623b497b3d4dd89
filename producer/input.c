#include "input.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* The text of one input file, where it came from, and the parser for it. */
struct text {
    const char *path;
    const char *data;
    size_t len;
    json_tokener *tok; /* nesting limit: a job's, plus one */
    int max_depth;     /* a job's (PIXQ_MAX_JSON_DEPTH) */
    input_job_fn each;
    void *user;
};

static int read_all(const char *path, size_t max_bytes, struct buf *out, struct err *e)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        return err_set(e, "cannot open %s: %s", path, strerror(errno));
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(out, chunk, n) < 0) {
            rc = err_set(e, "%s is larger than %zu bytes", path, max_bytes);
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = err_set(e, "cannot read %s: %s", path, strerror(errno));
    }
    if (f != stdin) {
        fclose(f);
    }
    return rc;
}

/* A position and its line number, moved forward through the text so that numbering every job
 * costs one pass over it. */
struct cursor {
    size_t off;
    long line; /* 1-based line of `off` */
};

static long line_of(const struct text *t, struct cursor *c, size_t off)
{
    if (off < c->off) {
        *c = (struct cursor){0, 1};
    }
    for (; c->off < off && c->off < t->len; c->off++) {
        c->line += t->data[c->off] == '\n';
    }
    return c->line;
}

static long line_at(const struct text *t, size_t off)
{
    struct cursor c = {0, 1};
    return line_of(t, &c, off);
}

static size_t skip_blank(const struct text *t, size_t off)
{
    while (off < t->len && strchr(" \t\r\n", t->data[off]) != NULL && t->data[off] != '\0') {
        off++;
    }
    return off;
}

/* Parses one JSON value at data[off..end) into `*out` (NULL for JSON's null, a value too).
 * Returns 0, with `*stop` where the value ended, or -1 with `*stop` at the error. */
static int parse_value(const struct text *t, size_t off, size_t end, size_t *stop,
                       enum json_tokener_error *why, json_object **out)
{
    json_tokener_reset(t->tok);
    json_object *v = json_tokener_parse_ex(t->tok, t->data + off, (int)(end - off));
    *why = json_tokener_get_error(t->tok);
    *stop = off + json_tokener_get_parse_end(t->tok);
    if (v == NULL && *why == json_tokener_continue) {
        /* the text ended inside a value: the end of input completes a bare number, or a null
         * (the tokener waits for a byte after its last letter) */
        v = json_tokener_parse_ex(t->tok, "", 1);
        *why = json_tokener_get_error(t->tok);
        *why = *why == json_tokener_continue ? json_tokener_error_parse_eof : *why;
        *stop = end;
    }
    if (*why != json_tokener_success) {
        json_object_put(v);
        *out = NULL;
        return -1;
    }
    *out = v;
    return 0;
}

static int json_error(const struct text *t, size_t at, enum json_tokener_error why, struct err *e)
{
    if (why == json_tokener_error_depth) { /* as a job one level too deep is told (job.c) */
        return err_set(e,
                       "%s:%ld: invalid job: job nests deeper than %d levels "
                       "(PIXQ_MAX_JSON_DEPTH)",
                       t->path, line_at(t, at), t->max_depth);
    }
    return err_set(e, "%s:%ld: not valid JSON: %s", t->path, line_at(t, at),
                   why == json_tokener_error_parse_eof ? "unexpected end of input"
                                                       : json_tokener_error_desc(why));
}

/* The value of a Blitline request body's one member "json" ({"json": {job}}, {"json": [jobs]}
 * or {"json": "<their JSON text>"}, the body Blitline's API read), or NULL when `doc` is none. */
static json_object *request_body(json_object *doc)
{
    json_object *inner = NULL;
    return json_object_is_type(doc, json_type_object) && json_object_object_length(doc) == 1 &&
                   json_object_object_get_ex(doc, "json", &inner)
               ? inner
               : NULL;
}

/* The job or jobs of a request body's member `inner` to the caller, all from line `line`. */
static int hand_out_body(const struct text *t, json_object *inner, long line, struct err *e)
{
    json_object *parsed = NULL;
    if (json_object_is_type(inner, json_type_string)) { /* their JSON text: read once more */
        json_tokener_reset(t->tok);
        parsed = json_tokener_parse_ex(t->tok, json_object_get_string(inner),
                                       json_object_get_string_len(inner) + 1);
        inner = parsed;
    }
    size_t n = json_object_is_type(inner, json_type_array) ? json_object_array_length(inner) : 1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_object *job = json_object_is_type(inner, json_type_array)
                               ? json_object_array_get_idx(inner, i)
                               : inner;
        rc = json_object_is_type(job, json_type_object)
                 ? t->each(t->user, job, t->path, line, e)
                 : err_set(e,
                           "%s:%ld: the \"json\" member of a Blitline request body holds no "
                           "job: a job, an array of jobs, or their JSON text",
                           t->path, line);
    }
    if (rc == 0 && n == 0) {
        rc = err_set(e, "%s:%ld: an empty array holds no job", t->path, line);
    }
    json_object_put(parsed);
    return rc;
}

/* Hands one parsed job to the caller (and releases it); a Blitline request body, its jobs. */
static int hand_out(const struct text *t, struct cursor *c, json_object *job, size_t at,
                    struct err *e)
{
    json_object *inner = request_body(job);
    int rc = inner != NULL ? hand_out_body(t, inner, line_of(t, c, at), e)
                           : t->each(t->user, job, t->path, line_of(t, c, at), e);
    json_object_put(job);
    return rc;
}

/* A JSON array of jobs, each element parsed and handed out on its own. */
static int read_array(const struct text *t, size_t open, struct err *e)
{
    struct cursor c = {0, 1};
    size_t pos = skip_blank(t, open + 1);
    if (pos < t->len && t->data[pos] == ']') {
        return err_set(e, "%s:%ld: an empty array holds no job", t->path, line_at(t, open));
    }
    for (size_t n = 1;; n++) {
        size_t stop;
        enum json_tokener_error why;
        json_object *job;
        if (parse_value(t, pos, t->len, &stop, &why, &job) < 0) {
            return json_error(t, stop, why, e);
        }
        if (!json_object_is_type(job, json_type_object)) {
            json_object_put(job);
            return err_set(e, "%s:%ld: element %zu of the array is not a JSON object", t->path,
                           line_at(t, pos), n);
        }
        if (hand_out(t, &c, job, pos, e) < 0) {
            return -1;
        }
        pos = skip_blank(t, stop);
        char next = pos < t->len ? t->data[pos] : '\0';
        if (next == ']') {
            size_t after = skip_blank(t, pos + 1);
            return after < t->len
                       ? err_set(e, "%s:%ld: text after the array", t->path, line_at(t, after))
                       : 0;
        }
        if (next != ',') {
            return err_set(e, "%s:%ld: not valid JSON: ',' or ']' expected after a job", t->path,
                           line_at(t, pos));
        }
        pos = skip_blank(t, pos + 1);
    }
}

/* JSON lines from data[from] on: every non-blank line is one job. */
static int read_lines(const struct text *t, size_t from, struct err *e)
{
    struct cursor c = {0, 1};
    for (size_t off = from; off < t->len;) {
        const char *nl = memchr(t->data + off, '\n', t->len - off);
        size_t end = nl != NULL ? (size_t)(nl - t->data) : t->len;
        size_t first = skip_blank(t, off);
        if (first < end) {
            size_t stop;
            enum json_tokener_error why;
            json_object *v;
            if (parse_value(t, first, end, &stop, &why, &v) < 0) {
                return json_error(t, stop, why, e);
            }
            if (skip_blank(t, stop) < end) {
                json_object_put(v);
                return err_set(e, "%s:%ld: one job per line expected, more text follows it",
                               t->path, line_at(t, stop));
            }
            if (hand_out(t, &c, v, first, e) < 0) {
                return -1;
            }
        }
        off = end + 1;
    }
    return 0;
}

static int parse_text(const struct text *t, struct err *e)
{
    /* a UTF-8 byte order mark (Windows editors write one; JSON parsers may ignore it, RFC 8259
     * 8.1) is not the "invalid utf-8 string" json-c calls it */
    size_t bom = t->len >= 3 && memcmp(t->data, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    size_t start = skip_blank(t, bom);
    if (start >= t->len) {
        return err_set(e, "%s: no job in it (empty)", t->path);
    }
    if (t->data[start] == '[') {
        return read_array(t, start, e);
    }
    size_t stop;
    enum json_tokener_error why;
    json_object *doc;
    if (parse_value(t, start, t->len, &stop, &why, &doc) < 0) {
        return json_error(t, stop, why, e);
    }
    if (skip_blank(t, stop) >= t->len) {
        struct cursor c = {0, 1};
        return hand_out(t, &c, doc, start, e);
    }
    json_object_put(doc); /* more follows: JSON lines, read again line by line */
    return read_lines(t, bom, e);
}

int input_read(const char *path, const struct input_limits *lim, input_job_fn each, void *user,
               struct err *e)
{
    struct buf b;
    buf_init(&b, lim->max_bytes);
    json_tokener *tok = json_tokener_new_ex(lim->max_depth + 1);
    if (tok != NULL) {
        json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8); /* told now, not in a postback */
    }
    int rc = tok != NULL ? read_all(path, lim->max_bytes, &b, e) : err_set(e, "out of memory");
    if (rc == 0) {
        const struct text t = {.path = strcmp(path, "-") == 0 ? "(stdin)" : path,
                               .data = b.data,
                               .len = b.len,
                               .tok = tok,
                               .max_depth = lim->max_depth,
                               .each = each,
                               .user = user};
        rc = parse_text(&t, e);
    }
    if (tok != NULL) {
        json_tokener_free(tok);
    }
    buf_finish(&b);
    return rc;
}
