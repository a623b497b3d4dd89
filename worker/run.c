#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "process.h"

#define MAX_POSTBACK_BODY 65536 /* bytes of a postback response read */
#define SRC_REDIRECTS     5     /* redirects followed for a source */
#define MAX_OUT_HEADERS   32    /* headers on one upload */

/* One job while it runs. */
struct run_state {
    struct runner *runner;
    const struct job *job;
    struct result *result;
    char *first_error; /* ERR_MSG_MAX bytes, the caller's */
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- failures */

/* Records a job-level failure: Blitline's "Image processing failed. <why>", and every identifier
 * not uploaded is failed. */
static void fail_job(struct run_state *t, const char *why)
{
    char msg[ERR_MSG_MAX + 32];
    snprintf(msg, sizeof msg, "Image processing failed. %s", why);
    result_add_error(t->result, msg);
    if (t->first_error[0] == '\0') {
        snprintf(t->first_error, ERR_MSG_MAX, "%.*s", ERR_MSG_MAX - 1, msg);
    }
    json_object *ids = json_object_new_array();
    job_identifiers(t->job, ids);
    result_fail_remaining(t->result, ids);
    json_object_put(ids);
}

/* Records the failure of one output; the others carry on. */
static void fail_output(struct run_state *t, const char *image_identifier, const char *why)
{
    result_add_error(t->result, why);
    result_add_failed(t->result, image_identifier);
    if (t->first_error[0] == '\0') {
        snprintf(t->first_error, ERR_MSG_MAX, "%s", why);
    }
}

/* ---------------------------------------------------------------- source */

/* Remembers the worst source failure of the run: a final one beats a transient one. */
static void note_fetch_failure(struct runner *w, enum run_status s)
{
    if (w->fetch_status != RUN_SOURCE_FAILED) {
        w->fetch_status = s;
    }
}

static int fetch_url(struct runner *w, const char *url, struct buf *out, struct err *e)
{
    const struct http_request req = {
        .method = "GET",
        .url = url,
        .connect_timeout_ms = w->cfg->connect_timeout_ms,
        .timeout_ms = w->cfg->download_timeout_ms,
        .max_body = (size_t)w->cfg->max_src_bytes,
        .max_redirects = SRC_REDIRECTS,
    };
    struct http_response resp;
    http_response_init(&resp);
    int rc = http_perform(w->http, &req, &resp, e);
    if (rc < 0) {
        bool too_big = resp.body.len >= req.max_body || strstr(e->msg, "larger than") != NULL;
        note_fetch_failure(w, too_big ? RUN_SOURCE_FAILED : RUN_SOURCE_TRANSIENT);
    } else if (resp.status / 100 != 2) {
        bool transient = resp.status >= 500 || resp.status == 429 || resp.status == 408;
        note_fetch_failure(w, transient ? RUN_SOURCE_TRANSIENT : RUN_SOURCE_FAILED);
        rc = err_set(e, "server answered HTTP %ld", resp.status);
    }
    if (rc == 0) {
        buf_finish(out);
        *out = resp.body;
        buf_init(&resp.body, 0);
    }
    http_response_finish(&resp);
    if (rc < 0) {
        return err_wrap(e, "Failed to download %.300s", url);
    }
    return 0;
}

static int fetch_s3(struct runner *w, json_object *src, struct buf *out, struct err *e)
{
    json_object *bucket = NULL, *key = NULL;
    json_object_object_get_ex(src, "bucket", &bucket);
    json_object_object_get_ex(src, "key", &key);
    struct s3_object o = {.key = key != NULL ? json_object_get_string(key) : NULL};
    if (bucket != NULL && json_object_is_type(bucket, json_type_object)) {
        json_object *name = NULL, *loc = NULL;
        json_object_object_get_ex(bucket, "name", &name);
        json_object_object_get_ex(bucket, "location", &loc);
        o.bucket = name != NULL ? json_object_get_string(name) : NULL;
        o.region = loc != NULL ? json_object_get_string(loc) : NULL;
    } else if (bucket != NULL) {
        o.bucket = json_object_get_string(bucket);
    }
    if (o.bucket == NULL || o.key == NULL) {
        return err_set(e, "an s3 src needs a bucket and a key");
    }
    struct s3_reply reply;
    if (s3_get(w->http, &w->s3, &o, (size_t)w->cfg->max_src_bytes, time(NULL), out, &reply, e) <
        0) {
        bool transient = reply.status == 0 || reply.status >= 500 || reply.status == 429;
        note_fetch_failure(w, transient ? RUN_SOURCE_TRANSIENT : RUN_SOURCE_FAILED);
        char why[ERR_MSG_MAX];
        memcpy(why, e->msg, sizeof why);
        return err_set(e, "Failed to download from s3 (%.400s)", why);
    }
    return 0;
}

/* src_fetch_fn: the bytes of a URL string or an {"name":"s3", ...} source. */
static int fetch_bytes(void *user, json_object *src, struct buf *out, struct err *e)
{
    struct runner *w = user;
    if (json_object_is_type(src, json_type_string)) {
        return fetch_url(w, json_object_get_string(src), out, e);
    }
    return fetch_s3(w, src, out, e);
}

/* ---------------------------------------------------------------- upload */

struct header_set {
    struct http_header h[MAX_OUT_HEADERS];
    size_t n;
};

static bool header_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

/* Sets a header, replacing one of the same name; an empty value removes it. */
static int header_put(struct header_set *s, const char *name, const char *value, struct err *e)
{
    if (!header_safe(name) || !header_safe(value) || name[0] == '\0' || strchr(name, ':')) {
        return err_set(e, "header '%.100s' has a forbidden character", name);
    }
    for (size_t i = 0; i < s->n; i++) {
        if (strcasecmp(s->h[i].name, name) == 0) {
            s->h[i] = s->h[--s->n];
            break;
        }
    }
    if (value[0] == '\0') {
        return 0;
    }
    if (s->n == MAX_OUT_HEADERS) {
        return err_set(e, "too many headers");
    }
    s->h[s->n++] = (struct http_header){name, value};
    return 0;
}

/* Content-Type and the default ACL, then s3_destination.headers merged over them. */
static int upload_headers(struct runner *w, const struct job_save *save, const char *content_type,
                          struct header_set *s, struct err *e)
{
    s->n = 0;
    if (header_put(s, "Content-Type", content_type, e) < 0 ||
        header_put(s, "x-amz-acl", w->cfg->s3_default_acl, e) < 0) {
        return -1;
    }
    if (save->headers == NULL) {
        return 0;
    }
    json_object_object_foreach(save->headers, name, v)
    {
        if (!json_object_is_type(v, json_type_string)) {
            return err_set(e, "s3_destination.headers.%.100s must be a string", name);
        }
        if (header_put(s, name, json_object_get_string(v), e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Blitline's temporary-bucket layout: <YYYYMMDDHH>/<job_id>/<image_identifier>-<n>.<ext>. */
static void default_key(const struct job *j, const struct job_save *s, char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char hour[16];
    strftime(hour, sizeof hour, "%Y%m%d%H", &tm);
    snprintf(out, cap, "%s/%s/%s-%d.%s", hour, j->id, s->image_identifier, s->index, s->format);
}

/* What one upload sends. */
struct upload {
    const struct job_save *save;
    const void *data;
    size_t len;
    const char *content_type;
};

/* PUTs one object where its save says (or to the default bucket); `url` receives its URL. */
static int upload_one(struct runner *w, struct run_state *t, const struct upload *u,
                      struct buf *url, struct err *e)
{
    char key[2048];
    struct s3_object obj = {u->save->bucket, u->save->location, u->save->key};
    if (obj.bucket == NULL) {
        if (w->cfg->default_bucket[0] == '\0') {
            return err_set(e, "'%s' has no s3_destination and PIXQ_DEFAULT_BUCKET is not set",
                           u->save->image_identifier);
        }
        obj.bucket = w->cfg->default_bucket;
        default_key(t->job, u->save, key, sizeof key);
        obj.key = key;
    }
    struct header_set hs;
    struct s3_reply reply;
    if (upload_headers(w, u->save, u->content_type, &hs, e) < 0 ||
        s3_object_url(&w->s3, &obj, url, e) < 0) {
        return -1;
    }
    long t0 = now_ms();
    int rc = s3_put(w->http, &w->s3, &obj, u->data, u->len, hs.h, hs.n, time(NULL), &reply, e);
    LOG_DEBUG("s3_put", "job_id=%s bucket=%s status=%ld bytes=%zu ms=%ld", t->job->id, obj.bucket,
              reply.status, u->len, now_ms() - t0);
    return rc;
}

/* Uploads one output and records it: in `images`, or as a failed output (the others go on). */
static void upload_output(struct run_state *t, const struct proc_output *o)
{
    const struct upload u = {o->save, o->img.blob, o->img.len, o->img.content_type};
    struct buf url;
    buf_init(&url, 0);
    struct err e = {{0}};
    if (upload_one(t->runner, t, &u, &url, &e) < 0) {
        char q[ERR_MSG_MAX + 16];
        LOG_WARN("upload_failed", "job_id=%s image_identifier=%s error=%s", t->job->id,
                 o->save->image_identifier, log_quote(e.msg, q, sizeof q));
        fail_output(t, o->save->image_identifier, e.msg);
    } else {
        result_add_image(t->result, o->save->image_identifier, url.data, o->img.width,
                         o->img.height);
    }
    buf_finish(&url);
}

/* ---------------------------------------------------------------- pre_process */

/* proc_sink.output: a pre_process job's output with a destination is uploaded and reported
 * like the main job's. */
static int sink_output(void *user, const struct job *pre, const struct proc_output *o,
                       struct err *e)
{
    upload_output(user, o);
    return 0;
}

/* proc_sink.move: move_original's copy of the source; a failure fails the job. */
static int sink_move(void *user, const struct job_save *dest, const void *data, size_t len,
                     const char *content_type, struct err *e)
{
    struct run_state *t = user;
    const struct upload u = {dest, data, len, content_type};
    struct buf url;
    buf_init(&url, 0);
    int rc = upload_one(t->runner, t, &u, &url, e);
    buf_finish(&url);
    return rc;
}

/* ---------------------------------------------------------------- one job */

/* Runs pre_process, then loads the source unless pre_process already did. */
static int prepare(struct runner *w, struct run_state *t, struct src_refs *refs,
                   struct src_image *im, struct err *e)
{
    const struct proc_sink sink = {sink_output, sink_move, t};
    w->loader.refs = refs;
    if (refs == NULL) {
        memset(im, 0, sizeof *im);
        return err_set(e, "out of memory");
    }
    if (proc_check(t->job, e) < 0) {
        memset(im, 0, sizeof *im);
        return -1;
    }
    if (proc_pre_process(t->job, &w->loader, refs, &w->popts, &sink, im, e) < 0) {
        return -1;
    }
    if (im->wand != NULL) {
        return 0;
    }
    src_image_finish(im);
    return src_open(&w->loader, t->job->src, im, e);
}

static void process(struct runner *w, struct run_state *t)
{
    struct err e = {{0}};
    struct src_image im;
    struct proc_result pr = {0};
    struct src_refs *refs = src_refs_create();
    long t0 = now_ms();
    if (prepare(w, t, refs, &im, &e) < 0 || proc_run(t->job, &im, &w->popts, &pr, &e) < 0) {
        fail_job(t, e.msg);
        goto out;
    }
    LOG_DEBUG("processed", "job_id=%s outputs=%zu ms=%ld", t->job->id, pr.n_outputs, now_ms() - t0);
    result_set_original_meta(t->result, json_object_get(pr.original_meta));
    for (size_t i = 0; i < pr.n_outputs; i++) {
        upload_output(t, &pr.outputs[i]);
    }
out:
    proc_result_finish(&pr);
    src_image_finish(&im);
    w->loader.refs = NULL;
    src_refs_destroy(refs);
}

/* Content-Type: application/json, then the job's postback_headers merged over it. A header
 * that cannot be sent (CR/LF in it, too many) is left out: the postback still goes. */
static void postback_headers(const struct job *j, struct header_set *s)
{
    struct err e = {{0}};
    s->n = 0;
    header_put(s, "Content-Type", "application/json", &e);
    if (j->postback_headers == NULL) {
        return;
    }
    json_object_object_foreach(j->postback_headers, name, v)
    {
        if (header_put(s, name, json_object_get_string(v), &e) < 0) {
            char q[ERR_MSG_MAX + 16];
            LOG_WARN("postback_header_dropped", "job_id=%s error=%s", j->id,
                     log_quote(e.msg, q, sizeof q));
        }
    }
}

static void post_back(struct runner *w, const struct job *job, const char *body)
{
    const char *url = job->postback_url;
    if (url == NULL) {
        return;
    }
    struct header_set hs;
    postback_headers(job, &hs);
    struct http_request req = {
        .method = "POST",
        .url = url,
        .headers = hs.h,
        .n_headers = hs.n,
        .body = body,
        .body_len = strlen(body),
        .connect_timeout_ms = w->cfg->connect_timeout_ms,
        .timeout_ms = w->cfg->postback_timeout_ms,
        .max_body = MAX_POSTBACK_BODY,
    };
    struct http_response resp;
    http_response_init(&resp);
    struct err e = {{0}};
    int rc = http_perform(w->http, &req, &resp, &e);
    if (rc == 0 && resp.status / 100 != 2) {
        rc = err_set(&e, "postback answered HTTP %ld", resp.status);
    }
    char q[ERR_MSG_MAX + 16];
    if (rc < 0) {
        LOG_WARN("postback_failed", "job_id=%s error=%s", job->id, log_quote(e.msg, q, sizeof q));
    } else {
        LOG_DEBUG("postback_sent", "job_id=%s status=%ld", job->id, resp.status);
    }
    http_response_finish(&resp);
}

void run_fail(const struct job *job, struct result *res, char first_error[ERR_MSG_MAX],
              const char *why)
{
    struct run_state t = {NULL, job, res, first_error};
    fail_job(&t, why);
}

enum run_status run_job(struct runner *r, const struct job *job, struct result *res,
                        char first_error[ERR_MSG_MAX])
{
    struct run_state t = {r, job, res, first_error};
    r->fetch_status = RUN_DONE;
    if (job->error[0] != '\0') {
        fail_job(&t, job->error);
        return RUN_DONE;
    }
    process(r, &t);
    return first_error[0] != '\0' ? r->fetch_status : RUN_DONE;
}

void run_postback(struct runner *r, const struct job *job, const char *body)
{
    post_back(r, job, body);
}

void run_init(struct runner *r, const struct cfg *c, struct http *http)
{
    r->cfg = c;
    r->http = http;
    r->s3 = (struct s3_config){
        .endpoint = c->s3_endpoint,
        .path_style = cfg_s3_path_style(c),
        .region = c->aws_region,
        .access_key = c->aws_access_key_id,
        .secret_key = c->aws_secret_access_key,
        .session_token = c->aws_session_token,
        .connect_timeout_ms = c->connect_timeout_ms,
        .timeout_ms = c->s3_timeout_ms,
    };
    r->loader = (struct src_loader){
        .fetch = fetch_bytes,
        .fetch_user = r,
        .max_pixels = c->max_pixels,
    };
    r->popts = (struct proc_opts){
        .max_pixels = c->max_pixels,
        .default_quality = c->default_quality,
        .max_output_bytes = (size_t)c->max_output_bytes,
        .load = src_load,
        .load_user = &r->loader,
    };
}
