#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "http.h"
#include "id.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "process.h"
#include "result.h"
#include "rq.h"
#include "s3.h"

#define BACKOFF_MIN_MS    100   /* first wait after a Redis failure */
#define BACKOFF_MAX_MS    5000  /* longest wait between Redis retries */
#define FINISH_ATTEMPTS   50    /* tries to settle a job before leaving it to recovery */
#define MAX_POSTBACK_BODY 65536 /* bytes of a postback response read */
#define SRC_REDIRECTS     5     /* redirects followed for a source */
#define MAX_OUT_HEADERS   32    /* headers on one upload */

struct worker {
    const struct cfg *cfg;
    volatile sig_atomic_t *stop;
    struct rq *rq;
    struct http *http;
    struct s3_config s3;
    struct job_limits limits;
    struct proc_opts popts;
    char id[300];
    const char *queue;
    char queue_buf[CFG_STR_MAX];
    char jobs_key[RQ_KEY_MAX];
    char active_key[RQ_KEY_MAX];
    char dead_key[RQ_KEY_MAX];
    char stats_key[RQ_KEY_MAX];
};

/* One reserved job while it is being worked on. */
struct task {
    struct buf payload; /* the bytes on the active list */
    struct job *job;
    struct result *result;
    char first_error[ERR_MSG_MAX];
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps `ms`, waking early when asked to stop. */
static void nap(struct worker *w, long ms)
{
    while (ms > 0 && !*w->stop) {
        long step = ms < 100 ? ms : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* ---------------------------------------------------------------- set-up */

static int make_keys(struct worker *w, struct err *e)
{
    snprintf(w->queue_buf, sizeof w->queue_buf, "%s", w->cfg->queue);
    char *comma = strchr(w->queue_buf, ',');
    if (comma != NULL) {
        *comma = '\0'; /* this worker serves the first queue named */
    }
    w->queue = w->queue_buf;
    char active[RQ_KEY_MAX];
    snprintf(active, sizeof active, "active:%.300s", w->id);
    if (rq_key(w->jobs_key, RQ_KEY_MAX, w->queue, "jobs") < 0 ||
        rq_key(w->active_key, RQ_KEY_MAX, w->queue, active) < 0 ||
        rq_key(w->dead_key, RQ_KEY_MAX, w->queue, "dead") < 0 ||
        rq_key(w->stats_key, RQ_KEY_MAX, w->queue, "stats") < 0) {
        return err_set(e, "queue name too long");
    }
    return 0;
}

static void init_settings(struct worker *w)
{
    const struct cfg *c = w->cfg;
    w->s3 = (struct s3_config){
        .endpoint = c->s3_endpoint,
        .path_style = cfg_s3_path_style(c),
        .region = c->aws_region,
        .access_key = c->aws_access_key_id,
        .secret_key = c->aws_secret_access_key,
        .session_token = c->aws_session_token,
        .connect_timeout_ms = c->connect_timeout_ms,
        .timeout_ms = c->s3_timeout_ms,
    };
    w->limits = (struct job_limits){
        .max_bytes = (size_t)c->max_job_bytes,
        .max_depth = (int)c->max_json_depth,
        .max_functions = (size_t)c->max_functions,
    };
    w->popts = (struct proc_opts){
        .max_pixels = c->max_pixels,
        .default_quality = c->default_quality,
        .max_output_bytes = (size_t)c->max_output_bytes,
    };
}

struct worker *worker_create(const struct cfg *cfg, volatile sig_atomic_t *stop, struct err *e)
{
    struct worker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        err_set(e, "out of memory");
        return NULL;
    }
    w->cfg = cfg;
    w->stop = stop;
    init_settings(w);
    if (id_worker(w->id, sizeof w->id) < 0 || make_keys(w, e) < 0) {
        err_set(e, "cannot make a worker id");
        goto fail;
    }
    w->rq = rq_create(cfg->redis_url, cfg->redis_timeout_ms, e);
    if (w->rq == NULL) {
        goto fail;
    }
    w->http = http_create(e);
    if (w->http == NULL) {
        goto fail;
    }
    img_init();
    return w;
fail:
    worker_destroy(w);
    return NULL;
}

void worker_destroy(struct worker *w)
{
    if (w == NULL) {
        return;
    }
    rq_destroy(w->rq);
    http_destroy(w->http);
    free(w);
}

const char *worker_id(const struct worker *w)
{
    return w->id;
}

/* ---------------------------------------------------------------- failures */

/* Records a job-level failure: Blitline's "Image processing failed. <why>", and every identifier
 * not uploaded is failed. */
static void fail_job(struct task *t, const char *why)
{
    char msg[ERR_MSG_MAX + 32];
    snprintf(msg, sizeof msg, "Image processing failed. %s", why);
    result_add_error(t->result, msg);
    if (t->first_error[0] == '\0') {
        snprintf(t->first_error, sizeof t->first_error, "%.*s", ERR_MSG_MAX - 1, msg);
    }
    json_object *ids = json_object_new_array();
    job_identifiers(t->job, ids);
    result_fail_remaining(t->result, ids);
    json_object_put(ids);
}

/* Records the failure of one output; the others carry on. */
static void fail_output(struct task *t, const char *image_identifier, const char *why)
{
    result_add_error(t->result, why);
    result_add_failed(t->result, image_identifier);
    if (t->first_error[0] == '\0') {
        snprintf(t->first_error, sizeof t->first_error, "%s", why);
    }
}

/* ---------------------------------------------------------------- source */

static int fetch_url(struct worker *w, const char *url, struct buf *out, struct err *e)
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
    if (rc == 0 && resp.status / 100 != 2) {
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

static int fetch_s3(struct worker *w, json_object *src, struct buf *out, struct err *e)
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
        return err_wrap(e, "Failed to download from s3");
    }
    return 0;
}

static int fetch_source(struct worker *w, const struct job *j, struct buf *out, struct err *e)
{
    const char *url = job_src_url(j);
    if (url != NULL) {
        return fetch_url(w, url, out, e);
    }
    json_object *name = NULL;
    json_object_object_get_ex(j->src, "name", &name);
    const char *kind = name != NULL ? json_object_get_string(name) : "";
    if (strcmp(kind, "s3") == 0) {
        return fetch_s3(w, j->src, out, e);
    }
    return err_set(e, "src of type '%.100s' is not supported", kind);
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

static int upload_headers(struct worker *w, const struct proc_output *o, struct header_set *s,
                          struct err *e)
{
    s->n = 0;
    if (header_put(s, "Content-Type", o->img.content_type, e) < 0 ||
        header_put(s, "x-amz-acl", w->cfg->s3_default_acl, e) < 0) {
        return -1;
    }
    if (o->save->headers == NULL) {
        return 0;
    }
    json_object_object_foreach(o->save->headers, name, v)
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

static int upload_one(struct worker *w, struct task *t, const struct proc_output *o,
                      struct buf *url, struct err *e)
{
    char key[2048];
    struct s3_object obj = {o->save->bucket, o->save->location, o->save->key};
    if (obj.bucket == NULL) {
        if (w->cfg->default_bucket[0] == '\0') {
            return err_set(e, "'%s' has no s3_destination and PIXQ_DEFAULT_BUCKET is not set",
                           o->save->image_identifier);
        }
        obj.bucket = w->cfg->default_bucket;
        default_key(t->job, o->save, key, sizeof key);
        obj.key = key;
    }
    struct header_set hs;
    struct s3_reply reply;
    if (upload_headers(w, o, &hs, e) < 0 || s3_object_url(&w->s3, &obj, url, e) < 0) {
        return -1;
    }
    long t0 = now_ms();
    int rc =
        s3_put(w->http, &w->s3, &obj, o->img.blob, o->img.len, hs.h, hs.n, time(NULL), &reply, e);
    LOG_DEBUG("s3_put", "job_id=%s bucket=%s status=%ld bytes=%zu ms=%ld", t->job->id, obj.bucket,
              reply.status, o->img.len, now_ms() - t0);
    return rc;
}

static void upload_all(struct worker *w, struct task *t, const struct proc_result *pr)
{
    struct buf url;
    buf_init(&url, 0);
    for (size_t i = 0; i < pr->n_outputs; i++) {
        const struct proc_output *o = &pr->outputs[i];
        struct err e = {{0}};
        if (upload_one(w, t, o, &url, &e) < 0) {
            char q[ERR_MSG_MAX + 16];
            LOG_WARN("upload_failed", "job_id=%s image_identifier=%s error=%s", t->job->id,
                     o->save->image_identifier, log_quote(e.msg, q, sizeof q));
            fail_output(t, o->save->image_identifier, e.msg);
            continue;
        }
        result_add_image(t->result, o->save->image_identifier, url.data, o->img.width,
                         o->img.height);
    }
    buf_finish(&url);
}

/* ---------------------------------------------------------------- one job */

static void process(struct worker *w, struct task *t)
{
    struct err e = {{0}};
    struct buf src;
    buf_init(&src, 0);
    struct proc_result pr = {0};
    if (proc_check(t->job, &e) < 0 || fetch_source(w, t->job, &src, &e) < 0) {
        fail_job(t, e.msg);
        goto out;
    }
    long t0 = now_ms();
    if (proc_run(t->job, src.data, src.len, &w->popts, &pr, &e) < 0) {
        fail_job(t, e.msg);
        goto out;
    }
    LOG_DEBUG("processed", "job_id=%s outputs=%zu ms=%ld", t->job->id, pr.n_outputs, now_ms() - t0);
    result_set_original_size(t->result, pr.orig_width, pr.orig_height);
    upload_all(w, t, &pr);
out:
    proc_result_finish(&pr);
    buf_finish(&src);
}

static int postback_headers(const struct job *j, struct http_header *h, size_t *n, struct err *e)
{
    *n = 0;
    h[(*n)++] = (struct http_header){"Content-Type", "application/json"};
    if (j->postback_headers == NULL) {
        return 0;
    }
    json_object_object_foreach(j->postback_headers, name, v)
    {
        const char *value = json_object_get_string(v);
        if (*n == HTTP_MAX_HEADERS || !header_safe(name) || !header_safe(value)) {
            return err_set(e, "postback_headers: too many, or a forbidden character");
        }
        h[(*n)++] = (struct http_header){name, value};
    }
    return 0;
}

static void post_back(struct worker *w, struct task *t, const char *body)
{
    const char *url = t->job->postback_url;
    if (url == NULL) {
        return;
    }
    struct http_header headers[HTTP_MAX_HEADERS];
    struct http_request req = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
        .connect_timeout_ms = w->cfg->connect_timeout_ms,
        .timeout_ms = w->cfg->postback_timeout_ms,
        .max_body = MAX_POSTBACK_BODY,
    };
    struct http_response resp;
    http_response_init(&resp);
    struct err e = {{0}};
    int rc = postback_headers(t->job, headers, &req.n_headers, &e);
    rc = rc < 0 ? rc : http_perform(w->http, &req, &resp, &e);
    if (rc == 0 && resp.status / 100 != 2) {
        rc = err_set(&e, "postback answered HTTP %ld", resp.status);
    }
    char q[ERR_MSG_MAX + 16];
    if (rc < 0) {
        LOG_WARN("postback_failed", "job_id=%s error=%s", t->job->id,
                 log_quote(e.msg, q, sizeof q));
    } else {
        LOG_DEBUG("postback_sent", "job_id=%s status=%ld", t->job->id, resp.status);
    }
    http_response_finish(&resp);
}

/* ---------------------------------------------------------------- settling in Redis */

/* The dead-letter entry: {"job": payload, "job_id", "error", "attempts", "failed_at" (ms)}. */
static char *dead_envelope(const struct buf *payload, const char *job_id, const char *error)
{
    json_object *d = json_object_new_object();
    json_object_object_add(d, "job", json_object_new_string_len(payload->data, (int)payload->len));
    if (job_id != NULL) {
        json_object_object_add(d, "job_id", json_object_new_string(job_id));
    }
    json_object_object_add(d, "error", json_object_new_string(error));
    json_object_object_add(d, "attempts", json_object_new_int(1));
    json_object_object_add(d, "failed_at", json_object_new_int64(wall_ms()));
    char *s = strdup(
        json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(d);
    return s;
}

/* Runs finish.lua, retrying through Redis outages. Returns 1 settled, 0 not ours, -1 gave up. */
static int settle(struct worker *w, const struct buf *payload, const char *job_id,
                  const char *result_json, const char *dead)
{
    char result_key[RQ_KEY_MAX] = "";
    char suffix[JOB_ID_MAX + 16];
    snprintf(suffix, sizeof suffix, "result:%s", job_id != NULL ? job_id : "");
    rq_key(result_key, sizeof result_key, w->queue, suffix);
    char ttl[32], dead_max[32];
    snprintf(ttl, sizeof ttl, "%ld", w->cfg->result_ttl_s);
    snprintf(dead_max, sizeof dead_max, "%ld", w->cfg->dead_max);
    const char *keys[] = {w->active_key, result_key, w->dead_key, w->stats_key};
    const char *args[] = {payload->data, result_json,
                          ttl,           dead != NULL ? dead : "",
                          dead_max,      dead != NULL ? "failed" : "succeeded"};
    size_t lens[6] = {payload->len};
    for (int i = 1; i < 6; i++) {
        lens[i] = strlen(args[i]);
    }
    long backoff = BACKOFF_MIN_MS;
    for (int attempt = 0; attempt < FINISH_ATTEMPTS; attempt++) {
        struct err e = {{0}};
        redisReply *r = rq_script(w->rq, RQ_SCRIPT_FINISH, 4, keys, 6, args, lens, &e);
        if (r != NULL) {
            int settled = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
            freeReplyObject(r);
            return settled;
        }
        char q[ERR_MSG_MAX + 16];
        LOG_WARN("redis_error", "step=finish attempt=%d error=%s", attempt + 1,
                 log_quote(e.msg, q, sizeof q));
        nap(w, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return -1;
}

static void bury_unparseable(struct worker *w, const struct buf *payload, const char *why)
{
    char *dead = dead_envelope(payload, NULL, why);
    char q[ERR_MSG_MAX + 16];
    LOG_ERROR("job_unparseable", "bytes=%zu error=%s", payload->len, log_quote(why, q, sizeof q));
    if (dead != NULL) {
        settle(w, payload, NULL, "", dead);
    }
    free(dead);
}

/* Gives a job without a job_id one, and keeps the rewritten payload on the active list. */
static int adopt(struct worker *w, struct task *t, struct err *e)
{
    struct buf fresh;
    buf_init(&fresh, 0);
    if (job_assign_id(t->job, &fresh, e) < 0) {
        buf_finish(&fresh);
        return -1;
    }
    const char *keys[] = {w->active_key};
    const char *args[] = {t->payload.data, fresh.data};
    size_t lens[] = {t->payload.len, fresh.len};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_ADOPT, 1, keys, 2, args, lens, e);
    bool replied = r != NULL;
    bool ok = replied && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!ok) {
        buf_finish(&fresh);
        return replied ? err_set(e, "job was taken from this worker") : -1;
    }
    buf_finish(&t->payload);
    t->payload = fresh;
    return 0;
}

/* ---------------------------------------------------------------- the loop */

static void complete(struct worker *w, struct task *t, long t0)
{
    const char *json = result_json(t->result);
    post_back(w, t, json);
    char *dead =
        t->first_error[0] != '\0' ? dead_envelope(&t->payload, t->job->id, t->first_error) : NULL;
    int settled = settle(w, &t->payload, t->job->id, json, dead);
    free(dead);
    char q[ERR_MSG_MAX + 16];
    if (settled == 0) {
        LOG_WARN("lease_lost", "job_id=%s", t->job->id);
    } else if (t->first_error[0] != '\0') {
        LOG_WARN("job_failed", "job_id=%s ms=%ld errors=%zu error=%s", t->job->id, now_ms() - t0,
                 result_error_count(t->result), log_quote(t->first_error, q, sizeof q));
    } else {
        LOG_INFO("job_done", "job_id=%s ms=%ld", t->job->id, now_ms() - t0);
    }
}

static void handle(struct worker *w, struct task *t)
{
    long t0 = now_ms();
    struct err e = {{0}};
    t->job = job_parse(t->payload.data, t->payload.len, &w->limits, &e);
    if (t->job == NULL) {
        bury_unparseable(w, &t->payload, e.msg);
        return;
    }
    if (t->job->id[0] == '\0' && adopt(w, t, &e) < 0) {
        char q[ERR_MSG_MAX + 16];
        LOG_WARN("adopt_failed", "error=%s", log_quote(e.msg, q, sizeof q));
        return; /* still on the active list: recovered with it */
    }
    LOG_INFO("job_start", "job_id=%s queue=%s", t->job->id, w->queue);
    t->result = result_create(t->job->id);
    if (t->job->error[0] != '\0') {
        fail_job(t, t->job->error);
    } else {
        process(w, t);
    }
    complete(w, t, t0);
}

/* BLMOVE one job into the active list. Returns 1 with the payload, 0 on timeout, -1 on error. */
static int reserve(struct worker *w, struct buf *payload, struct err *e)
{
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%.3f", (double)w->cfg->reserve_timeout_ms / 1000.0);
    const char *argv[] = {"BLMOVE", w->jobs_key, w->active_key, "RIGHT", "LEFT", timeout};
    redisReply *r = rq_commandv(w->rq, w->cfg->reserve_timeout_ms, 6, argv, NULL, e);
    if (r == NULL) {
        return -1;
    }
    int got = 0;
    if (r->type == REDIS_REPLY_STRING) {
        got = buf_append(payload, r->str, r->len) == 0 ? 1 : -1;
    }
    freeReplyObject(r);
    return got < 0 ? err_set(e, "out of memory") : got;
}

int worker_run(struct worker *w)
{
    long backoff = BACKOFF_MIN_MS;
    LOG_INFO("worker_start", "worker=%s queue=%s", w->id, w->queue);
    while (!*w->stop) {
        struct task t = {0};
        buf_init(&t.payload, 0);
        struct err e = {{0}};
        int got = reserve(w, &t.payload, &e);
        if (got < 0) {
            char q[ERR_MSG_MAX + 16];
            LOG_WARN("redis_error", "step=reserve error=%s retry_ms=%ld",
                     log_quote(e.msg, q, sizeof q), backoff);
            nap(w, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        } else if (got == 1) {
            backoff = BACKOFF_MIN_MS;
            handle(w, &t);
        }
        result_destroy(t.result);
        job_destroy(t.job);
        buf_finish(&t.payload);
    }
    LOG_INFO("worker_stop", "worker=%s", w->id);
    return 0;
}
