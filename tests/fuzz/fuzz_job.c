/* fuzz_job: libFuzzer target for the job parser (common/job.c).
 *
 * Each input is a payload as a producer could push it: job_parse() (and, for a JSON array,
 * job_split_batch() with every element parsed in turn), then everything the worker reads from a
 * parsed job: the function tree with every parameter through each job_param_*() getter, the
 * pre_process jobs, the identifiers, the save count, the src, and job_assign_id(). Built only
 * with -Dfuzz=true (see scripts/fuzz). */
#include <float.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "job.h"
#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The worker's defaults (PIXQ_MAX_JOB_BYTES, PIXQ_MAX_JSON_DEPTH, PIXQ_MAX_FUNCTIONS). */
static const struct job_limits limits = {250000, 32, 100, JOB_OWN_BYTES, 0};

/* Reads every parameter of one function with every getter, as the operations would. */
static void read_params(json_object *params, const char *fn)
{
    if (params == NULL || !json_object_is_type(params, json_type_object)) {
        return;
    }
    json_object_object_foreach(params, name, value)
    {
        (void)value;
        struct err e = {{0}};
        long l;
        double d;
        bool b;
        const char *s;
        job_param_long(params, fn, name, 1, LONG_MIN, LONG_MAX, &l, &e);
        job_param_long(params, fn, name, 1, 0, 65535, &l, &e);
        job_param_double(params, fn, name, 1.0, -DBL_MAX, DBL_MAX, &d, &e);
        job_param_double(params, fn, name, 1.0, 0.0, 100.0, &d, &e);
        job_param_bool(params, fn, name, false, &b, &e);
        job_param_string(params, fn, name, "", &s, &e);
        job_param_present(params, name);
    }
}

static void walk(const struct job_fn *fns, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        read_params(fns[i].params, fns[i].name);
        walk(fns[i].children, fns[i].n_children);
    }
}

/* The document json-c reads from `len` bytes of `text` less pixq's own members (job_id,
 * pixq_attempt), or NULL. */
static json_object *doc_less_own(const char *text, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(64);
    json_object *doc = tok != NULL ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    json_tokener_free(tok);
    if (doc != NULL && json_object_is_type(doc, json_type_object)) {
        json_object_object_del(doc, "job_id");
        json_object_object_del(doc, "pixq_attempt");
    }
    return doc;
}

/* The payload the worker wrote into the client's bytes (JSON as jscan reads it: what json-c
 * alone takes is written out again by json-c, as the worker read it) is, but for pixq's own
 * members, the document it was given. */
static void check_same_document(const char *text, size_t len, const struct buf *payload)
{
    size_t open;
    if (jscan_members(text, len, NULL, 0, &open) < 0) {
        return;
    }
    json_object *before = doc_less_own(text, len);
    json_object *after = before != NULL ? doc_less_own(payload->data, payload->len) : NULL;
    if (before != NULL && (after == NULL || !json_object_equal(before, after))) {
        abort();
    }
    json_object_put(before);
    json_object_put(after);
}

/* A payload the worker wrote (a job given its id, then its run number) reads back with that id
 * and run number, salvaged as before (a salvaged job only grows), or whole when the job fitted
 * PIXQ_MAX_JOB_BYTES (what the worker writes fits its room for it). */
static void check_rewritten(const struct job *j, const struct buf *payload, long attempt,
                            bool fitted)
{
    struct err e = {{0}};
    struct job *again = job_parse(payload->data, payload->len, &limits, &e);
    json_object *a = NULL;
    if (again == NULL || strcmp(again->id, j->id) != 0 ||
        (j->salvaged ? !again->salvaged : fitted && again->salvaged) ||
        (attempt > 0 && !(json_object_object_get_ex(again->root, "pixq_attempt", &a) &&
                          json_object_get_int64(a) == attempt))) {
        abort();
    }
    job_destroy(again);
}

static void use_job(struct job *j, const char *text, size_t len)
{
    walk(j->functions, j->n_functions);
    for (size_t i = 0; i < j->n_pre; i++) {
        if (j->pre[i].job != NULL) {
            walk(j->pre[i].job->functions, j->pre[i].job->n_functions);
        }
    }
    json_object *ids = json_object_new_array();
    job_identifiers(j, ids);
    json_object_put(ids);
    job_count_saves(j);
    job_src_url(j);
    if (j->id[0] == '\0') {
        struct buf payload, afresh;
        struct err e = {{0}};
        buf_init(&payload, 0);
        buf_init(&afresh, 0);
        bool fitted = len <= limits.max_bytes;
        if (job_assign_id(j, &payload, &e) == 0) {
            check_rewritten(j, &payload, 0, fitted);
            check_same_document(text, len, &payload);
            if (!j->salvaged && job_set_attempt(j, 12, &payload, &e) == 0) {
                check_rewritten(j, &payload, 12, fitted);
                check_same_document(text, len, &payload);
                /* the run number off again: the payload as given its id */
                if (job_text_afresh(j, &afresh) == 0) {
                    check_rewritten(j, &afresh, 0, fitted);
                }
            }
        }
        buf_finish(&payload);
        buf_finish(&afresh);
    }
}

static void parse_one(const char *text, size_t len)
{
    struct err e = {{0}};
    struct job *j = job_parse(text, len, &limits, &e);
    if (j != NULL) {
        use_job(j, text, len);
    }
    job_destroy(j);
}

/* job_each_fn: one element of a batch. */
static int each(void *user, const char *job, size_t len)
{
    (void)user;
    parse_one(job, len);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* the worker's payloads are NUL-terminated too */
    if (text == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(text, data, size);
    }
    text[size] = '\0';
    parse_one(text, size);
    if (job_is_batch(text, size)) {
        struct err e = {{0}};
        job_split_batch(text, size, &limits, each, NULL, &e);
    }
    free(text);
    return 0;
}
