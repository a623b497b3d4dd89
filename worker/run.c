#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "awsmeta.h"
#include "clock.h"
#include "hash.h"
#include "log.h"
#include "metrics.h"
#include "opdoc.h"
#include "process.h"
#include "s3.h"
#include "upload.h"
#include "utf8.h"

#define MAX_POSTBACK_BODY 65536 /* bytes of a postback response read */
#define MAX_OUT_HEADERS   32    /* headers on one upload */
#define SRC_REGION_HOPS   2     /* wrong-region answers followed for one s3 source */

/* One job while it runs. */
struct run_state {
    struct runner *runner;
    const struct job *job;
    struct result *result;
    char *first_error; /* ERR_MSG_MAX bytes, the caller's */
};

/* ---------------------------------------------------------------- failures */

#define JOB_FAILED "Image processing failed. " /* Blitline's words before a job's failure */

/* Blitline's "Image processing failed. <why>" for the whole job, the first error if none came
 * before. */
static void job_error(struct run_state *t, const char *why)
{
    char msg[ERR_MSG_MAX + 32];
    snprintf(msg, sizeof msg, JOB_FAILED "%s", why);
    result_add_error(t->result, msg);
    if (t->first_error[0] == '\0') {
        snprintf(t->first_error, ERR_MSG_MAX, "%.*s", ERR_MSG_MAX - 1, msg);
    }
}

/* Whether an output of the current run waits in Redis for its upload. */
static bool parked(const struct runner *w, const char *image_identifier)
{
    for (size_t i = 0; w != NULL && i < w->n_parked; i++) {
        json_object *id = NULL;
        json_object_object_get_ex(w->parked[i].task, "image_identifier", &id);
        if (id != NULL && strcmp(json_object_get_string(id), image_identifier) == 0) {
            return true;
        }
    }
    return false;
}

/* Every identifier of the job neither uploaded nor waiting for its upload is failed. */
static void fail_remaining(struct run_state *t)
{
    json_object *ids = json_object_new_array();
    json_object *left = json_object_new_array();
    job_identifiers(t->job, ids);
    for (size_t i = 0; i < json_object_array_length(ids); i++) {
        json_object *id = json_object_array_get_idx(ids, i);
        if (!parked(t->runner, json_object_get_string(id))) {
            json_object_array_add(left, json_object_get(id));
        }
    }
    result_fail_remaining(t->result, left);
    json_object_put(left);
    json_object_put(ids);
}

/* Records a job-level failure: the error, and every identifier not uploaded is failed. */
static void fail_job(struct run_state *t, const char *why)
{
    job_error(t, why);
    fail_remaining(t);
}

/* Records an upload's failure in `errors`; the job carries on. */
static void upload_error(struct run_state *t, const char *why)
{
    result_add_error(t->result, why);
    if (t->first_error[0] == '\0') {
        snprintf(t->first_error, ERR_MSG_MAX, "%s", why);
    }
}

/* Records the failure of one output; the others carry on. */
static void fail_output(struct run_state *t, const char *image_identifier, const char *why)
{
    upload_error(t, why);
    result_add_failed(t->result, image_identifier);
}

/* A source's failure that ends a job run before says so: "... (the job ran 3 times, each
 * failing on a source)" (a run that fails otherwise does not run again), the reason cut so that
 * the whole, after JOB_FAILED, fits in a first_error (the dead entry's). */
static void say_runs(const struct job *j, struct err *e)
{
    long runs = job_attempt(j);
    if (runs < 2) {
        return;
    }
    char tail[96];
    int n = snprintf(tail, sizeof tail, " (the job ran %ld times, each failing on a source)", runs);
    size_t room = sizeof e->msg - 1 - (sizeof JOB_FAILED - 1);
    size_t keep = strlen(e->msg);
    if (keep + (size_t)n > room) {
        keep = utf8_cut(e->msg, room - (size_t)n);
    }
    snprintf(e->msg + keep, sizeof e->msg - keep, "%s", tail);
}

/* ---------------------------------------------------------------- source */

/* Remembers the worst source failure of the run: a final one beats a transient one. */
static void note_fetch_failure(struct runner *w, enum run_status s)
{
    if (w->fetch_status != RUN_SOURCE_FAILED && !w->past_job_limit) {
        w->fetch_status = s;
    }
}

/* The run went past one of the job's own limits (PIXQ_MAX_SOURCES, PIXQ_JOB_DOWNLOAD_TIMEOUT_MS):
 * a run again would too, so the failure is the job's own (RUN_DONE), as a bad parameter's, and
 * not even wait_retry_delay runs it again. */
static void note_job_limit(struct runner *w)
{
    w->fetch_status = RUN_DONE;
    w->past_job_limit = true;
}

/* What is left of the job's PIXQ_JOB_DOWNLOAD_TIMEOUT_MS, ms (times.fetch_us counts the job's
 * downloads so far). */
static long download_time_left(const struct runner *w)
{
    return w->cfg->job_download_timeout_ms - w->times.fetch_us / 1000;
}

/* A source's download cut at PIXQ_MAX_SRC_BYTES: its error names the setting, as the errors of
 * the other limits do. */
static void name_src_cap(struct err *e)
{
    char why[ERR_MSG_MAX];
    memcpy(why, e->msg, sizeof why);
    err_set(e, "%.480s (PIXQ_MAX_SRC_BYTES)", why);
}

static int fetch_url(struct runner *w, const char *url, struct buf *out, struct err *e)
{
    long left = download_time_left(w);
    bool capped = left < w->cfg->download_timeout_ms; /* the job's time ends first */
    const struct http_request req = {
        .method = "GET",
        .url = url,
        .connect_timeout_ms = w->cfg->connect_timeout_ms,
        .timeout_ms = capped ? left : w->cfg->download_timeout_ms,
        .max_body = (size_t)w->cfg->max_src_bytes,
        .max_redirects = (int)w->cfg->max_redirects,
        .guard = &w->guard,
        .low_speed_bytes_per_s = w->cfg->low_speed_bytes_per_s,
        .low_speed_time_s = w->cfg->low_speed_time_s,
    };
    struct http_response resp;
    http_response_init(&resp);
    long t0 = clock_mono_ms();
    int rc = http_perform(w->http, &req, &resp, e);
    /* a 4xx or 5xx is the last answer (none is followed): its status says whether a run again
     * may help, whatever befell its error page (over the cap, cut short) */
    bool error_page = resp.status >= 400 && !resp.refused;
    if (rc < 0 && capped && clock_mono_ms() - t0 >= left) {
        note_job_limit(w);
        err_set(e, "the job's sources took more than PIXQ_JOB_DOWNLOAD_TIMEOUT_MS (%ld ms) in all",
                w->cfg->job_download_timeout_ms);
    } else if (rc < 0 && !error_page) {
        bool final = resp.too_large || resp.refused || resp.bad_url || resp.bad_answer ||
                     strstr(e->msg, "redirects followed") != NULL;
        note_fetch_failure(w, final ? RUN_SOURCE_FAILED : RUN_SOURCE_TRANSIENT);
        if (resp.too_large) {
            name_src_cap(e);
        }
    } else if (resp.status / 100 != 2) {
        bool transient = resp.status >= 500 || resp.status == 429 || resp.status == 408;
        note_fetch_failure(w, transient ? RUN_SOURCE_TRANSIENT : RUN_SOURCE_FAILED);
        long after = http_retry_after_ms(&resp, time(NULL), w->cfg->retry_after_max_ms);
        w->retry_after_ms = after > w->retry_after_ms ? after : w->retry_after_ms;
        if (rc < 0) {
            char why[ERR_MSG_MAX];
            memcpy(why, e->msg, sizeof why);
            err_set(e, "server answered HTTP %ld (its body cut short: %.200s)", resp.status, why);
        } else {
            rc = err_set(e, "server answered HTTP %ld", resp.status);
        }
    }
    if (rc == 0) {
        buf_finish(out);
        *out = resp.body;
        buf_init(&resp.body, 0);
    }
    http_response_finish(&resp);
    if (rc < 0) {
        char shown[512];
        cfg_redact_url(url, shown, sizeof shown); /* a password in the URL stays out of errors */
        return err_wrap(e, "Failed to download %.300s", shown);
    }
    return 0;
}

/* An s3 src names a valid object in a bucket the deployment lets jobs read. */
static int check_s3_src(struct runner *w, const struct s3_object *o, struct err *e)
{
    if (job_check_s3_object(o->bucket, o->region, o->key, e) < 0) {
        return err_wrap(e, "Failed to download from s3");
    }
    if (!cfg_bucket_allowed(w->cfg, o->bucket)) {
        return err_set(e, "Failed to download from s3: bucket '%.100s' is not allowed", o->bucket);
    }
    return 0;
}

/* The slot of the region an earlier S3 source's GET learned for `bucket`, or NULL. */
static struct run_region *region_slot(struct runner *w, const char *bucket)
{
    for (size_t i = 0; i < RUN_REGIONS; i++) {
        if (strcmp(w->regions[i].bucket, bucket) == 0) {
            return &w->regions[i];
        }
    }
    return NULL;
}

/* Keeps the region S3 named for `bucket` (a valid name, s3_redirect_region()), for the next jobs'
 * sources: without it each met S3's redirect again. */
static void learn_region(struct runner *w, const char *bucket, const char *region)
{
    struct run_region *slot = region_slot(w, bucket);
    if (slot == NULL) {
        slot = &w->regions[w->next_region];
        w->next_region = (w->next_region + 1) % RUN_REGIONS;
    }
    snprintf(slot->bucket, sizeof slot->bucket, "%s", bucket);
    snprintf(slot->region, sizeof slot->region, "%s", region);
}

static int fetch_s3(struct runner *w, json_object *src, struct buf *out, struct err *e)
{
    struct s3_object o;
    job_s3_src(src, &o.bucket, &o.region, &o.key);
    if (o.bucket == NULL || o.key == NULL) {
        return err_set(e, "an s3 src needs a bucket and a key");
    }
    if (check_s3_src(w, &o, e) < 0) {
        note_fetch_failure(w, RUN_SOURCE_FAILED);
        return -1;
    }
    struct s3_reply reply;
    char region[64];
    int rc;
    bool resigned = false, capped = false;
    const struct run_region *known =
        o.region == NULL || o.region[0] == '\0' ? region_slot(w, o.bucket) : NULL;
    if (known != NULL) { /* the job names no region: the one S3 named for an earlier job */
        snprintf(region, sizeof region, "%s", known->region);
        o.region = region;
    }
    /* as a URL's, the GETs end when the job's PIXQ_JOB_DOWNLOAD_TIMEOUT_MS does */
    long deadline = clock_mono_ms() + download_time_left(w);
    struct s3_config c = w->s3;
    for (int hop = 0;; hop++) { /* as uploads do: where S3 says the bucket lives, re-signed */
        long left = deadline - clock_mono_ms();
        capped = left < w->s3.timeout_ms;
        c.timeout_ms = capped ? (left > 1 ? left : 1) : w->s3.timeout_ms;
        c.connect_timeout_ms =
            w->s3.connect_timeout_ms < c.timeout_ms ? w->s3.connect_timeout_ms : c.timeout_ms;
        double t0 = metrics_clock();
        rc = s3_get(w->http, &c, &o, (size_t)w->cfg->max_src_bytes, s3_clock(), out, &reply, e);
        if (!reply.not_sent) {
            metrics_count_s3(METRICS_S3_GET, reply.status);
        }
        LOG_DEBUG("s3_get", "job_id=%s method=GET bucket=%s status=%ld bytes=%zu ms=%.3f",
                  w->job_id, o.bucket, reply.status, rc == 0 ? out->len : 0,
                  (metrics_clock() - t0) * 1e3);
        if (rc < 0 && !resigned && s3_clock_corrected(&reply, w->job_id, o.bucket)) {
            resigned = true;
            hop--; /* the same hop, signed again at S3's time */
            continue;
        }
        if (rc == 0 || hop == SRC_REGION_HOPS || clock_mono_ms() >= deadline ||
            !s3_redirect_region(w->http, &c, &o, s3_clock(), &reply, e)) {
            break;
        }
        snprintf(region, sizeof region, "%s", reply.region);
        LOG_WARN("bucket_region", "job_id=%s bucket=%s region=%s", w->job_id, o.bucket, region);
        o.region = region;
        learn_region(w, o.bucket, region);
    }
    if (rc < 0 && capped && reply.status == 0 && !reply.not_sent && clock_mono_ms() >= deadline) {
        note_job_limit(w);
        return err_set(e,
                       "the job's sources took more than PIXQ_JOB_DOWNLOAD_TIMEOUT_MS (%ld ms) in "
                       "all",
                       w->cfg->job_download_timeout_ms);
    }
    if (rc < 0) {
        bool transient = s3_transient(&reply);
        note_fetch_failure(w, transient ? RUN_SOURCE_TRANSIENT : RUN_SOURCE_FAILED);
        if (reply.status / 100 == 2) { /* the object over the cap (s3_get()) */
            name_src_cap(e);
        }
        /* a 429 or 503's Retry-After, as a URL source's (fetch_url()) */
        long after = reply.retry_after_ms;
        w->retry_after_ms = after > w->retry_after_ms ? after : w->retry_after_ms;
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
    if (srccache_get(&w->sources, src, out)) {
        LOG_DEBUG("source_reused", "bytes=%zu", out->len);
        return 0;
    }
    if (w->downloads >= w->cfg->max_sources) {
        note_job_limit(w);
        return err_set(e, "the job needs more than PIXQ_MAX_SOURCES (%ld) source downloads",
                       w->cfg->max_sources);
    }
    w->downloads++;
    if (download_time_left(w) <= 0) {
        note_job_limit(w);
        return err_set(e,
                       "the job's sources took more than PIXQ_JOB_DOWNLOAD_TIMEOUT_MS (%ld ms) in "
                       "all",
                       w->cfg->job_download_timeout_ms);
    }
    long t0 = clock_mono_us();
    int rc = json_object_is_type(src, json_type_string)
                 ? fetch_url(w, json_object_get_string(src), out, e)
                 : fetch_s3(w, src, out, e);
    w->times.fetch_us += clock_mono_us() - t0;
    if (rc == 0) {
        srccache_put(&w->sources, src, out->data, out->len);
    }
    return rc;
}

/* ---------------------------------------------------------------- upload */

struct header_set {
    struct http_header h[MAX_OUT_HEADERS];
    size_t n;
};

/* Sets a header, replacing one of the same name; an empty value removes it. */
static int header_put(struct header_set *s, const char *name, const char *value, struct err *e)
{
    if (!http_header_valid(name, value)) { /* job_parse() refused such jobs already */
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

/* Whether the job's s3_destination.headers name an x-amz-grant-* header, with any value. */
static bool names_a_grant(const json_object *headers)
{
    static const char prefix[] = "x-amz-grant-";
    json_object_object_foreach((json_object *)headers, name, v)
    {
        (void)v;
        if (strncasecmp(name, prefix, sizeof prefix - 1) == 0) {
            return true;
        }
    }
    return false;
}

/* Content-Type and the default ACL, then s3_destination.headers merged over them. As in
 * Blitline, where an account with a canonical ID had grant headers for defaults instead of the
 * canned ACL: a job that names an x-amz-grant-* header gets no default x-amz-acl. S3 refuses a
 * canned ACL beside grants, and `"x-amz-grant-read": ""` was Blitline's documented way to keep
 * an object private. */
static int upload_headers(const struct job_save *save, const char *content_type,
                          const char *default_acl, struct header_set *s, struct err *e)
{
    s->n = 0;
    const char *acl = save->headers != NULL && names_a_grant(save->headers) ? "" : default_acl;
    if (header_put(s, "Content-Type", content_type, e) < 0 ||
        header_put(s, "x-amz-acl", acl, e) < 0) {
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

/* With the job's extended_metadata, what Blitline adds to an output's meta: {"filesize",
 * "density" ("72x72": ImageMagick's default when the output names none), "depth", "quality"};
 * else NULL. */
static json_object *extended_meta(const struct job *j, const struct img_output *img)
{
    if (!j->extended_metadata) {
        return NULL;
    }
    char density[64];
    double x = img->density_x > 0 ? img->density_x : 72,
           y = img->density_y > 0 ? img->density_y : 72;
    snprintf(density, sizeof density, "%gx%g", x, y);
    json_object *m = json_object_new_object();
    json_object_object_add(m, "filesize", json_object_new_int64((int64_t)img->len));
    json_object_object_add(m, "density", json_object_new_string(density));
    json_object_object_add(m, "depth", json_object_new_int64(img->depth));
    json_object_object_add(m, "quality", json_object_new_int64(img->quality));
    return m;
}

/* Blitline's temporary-bucket layout: <YYYYMMDDHH>/<job_id>/<image_identifier>-<n>.<ext>, the
 * hour the job was first seen, so that every run of it writes the same objects. */
static void default_key(struct runner *w, const struct job *j, const struct job_save *s, char *out,
                        size_t cap)
{
    long seen = w->first_seen != NULL ? w->first_seen(w->first_seen_user) : -1;
    if (seen <= 0 && w->first_seen != NULL) {
        char qi[JOB_IDENTIFIER_MAX + 16];
        LOG_WARN("first_seen_unknown", "job_id=%s image_identifier=%s key_hour=this_host", j->id,
                 log_quote(s->image_identifier, qi, sizeof qi));
    }
    time_t t = seen > 0 ? (time_t)(seen / 1000) : time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char hour[16];
    strftime(hour, sizeof hour, "%Y%m%d%H", &tm);
    snprintf(out, cap, "%s/%s/%s-%d.%s", hour, j->id, s->image_identifier, s->index, s->format);
}

/* What one upload sends. */

/* PUTs one object where its save says (or to the default bucket); `url` receives its URL. */
/* Why an output of a job taken from this worker (runner.taken) is not uploaded. */
#define TAKEN_ERROR "not uploaded: the job was taken from this worker (its lease ran out)"

/* A first attempt's upload task (see upload.h) of `obj` with headers `hs`. */
static json_object *new_task(const char *job_id, const char *identifier,
                             const struct s3_object *obj, const struct header_set *hs)
{
    json_object *task = json_object_new_object();
    json_object *headers = json_object_new_object();
    for (size_t i = 0; i < hs->n; i++) {
        json_object_object_add(headers, hs->h[i].name, json_object_new_string(hs->h[i].value));
    }
    json_object_object_add(task, "job_id", json_object_new_string(job_id));
    json_object_object_add(task, "image_identifier", json_object_new_string(identifier));
    json_object_object_add(task, "bucket", json_object_new_string(obj->bucket));
    if (obj->region != NULL) {
        json_object_object_add(task, "region", json_object_new_string(obj->region));
    }
    json_object_object_add(task, "key", json_object_new_string(obj->key));
    json_object_object_add(task, "headers", headers);
    json_object_object_add(task, "attempt", json_object_new_int(1));
    return task;
}

/* Builds the upload task of one output (see upload.h); NULL with the reason in `e`. */
static json_object *build_task(struct runner *w, struct run_state *t, const struct proc_output *o,
                               struct err *e)
{
    char key[2048];
    const struct job_save *save = o->save;
    struct s3_object obj = {save->bucket, save->location, save->key};
    if (obj.bucket == NULL) {
        if (w->cfg->default_bucket[0] == '\0') {
            err_set(e, "'%s' has no s3_destination and PIXQ_DEFAULT_BUCKET is not set",
                    save->image_identifier);
            return NULL;
        }
        obj.bucket = w->cfg->default_bucket;
        default_key(w, t->job, save, key, sizeof key);
        obj.key = key;
    }
    struct header_set hs;
    if (upload_headers(save, o->img.content_type, w->cfg->s3_default_acl, &hs, e) < 0) {
        return NULL;
    }
    json_object *task = new_task(t->job->id, save->image_identifier, &obj, &hs);
    json_object_object_add(task, "n", json_object_new_int(save->index));
    if (save->return_keys) {
        json_object_object_add(task, "return_keys", json_object_new_boolean(1));
    }
    if (o->img.blank) {
        json_object_object_add(task, "is_blank", json_object_new_boolean(1));
    }
    json_object *extended = extended_meta(t->job, &o->img);
    if (extended != NULL) { /* for the postback of a parked output */
        json_object_object_add(task, "extended_meta", extended);
    }
    json_object_object_add(task, "width", json_object_new_int64(o->img.width));
    json_object_object_add(task, "height", json_object_new_int64(o->img.height));
    return task;
}

/* Keeps an output whose upload must wait: its task and a copy of its bytes. */
static int park_output(struct runner *w, json_object *task, const struct proc_output *o,
                       long delay_ms, struct err *e)
{
    if (w->n_parked == w->cap_parked) {
        size_t cap = w->cap_parked == 0 ? 4 : w->cap_parked * 2;
        struct run_parked *p = realloc(w->parked, cap * sizeof *p);
        if (p == NULL) {
            return err_set(e, "out of memory");
        }
        w->parked = p;
        w->cap_parked = cap;
    }
    struct run_parked *p = &w->parked[w->n_parked];
    p->data = malloc(o->img.len);
    if (p->data == NULL) {
        return err_set(e, "out of memory");
    }
    memcpy(p->data, o->img.blob, o->img.len);
    p->len = o->img.len;
    p->task = json_object_get(task);
    p->due_ms = clock_mono_ms() + delay_ms;
    w->n_parked++;
    return 0;
}

/* Notes an uploaded object for wait_for_s3. */
static void note_object(struct runner *w, json_object *task)
{
    struct s3_object o = up_object(task);
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "bucket", json_object_new_string(o.bucket));
    if (o.region != NULL) {
        json_object_object_add(obj, "region", json_object_new_string(o.region));
    }
    json_object_object_add(obj, "key", json_object_new_string(o.key));
    json_object_array_add(w->objs, obj);
}

/* Tells runner.uploaded the size of an upload S3 took. */
static void count_upload(struct runner *r, enum up_outcome out, size_t len)
{
    if (out == UP_DONE && r->uploaded != NULL) {
        r->uploaded(r->uploaded_user, len);
    }
}

enum up_outcome run_send(struct runner *r, json_object *task, const void *data, size_t len,
                         struct buf *url, long *delay, struct err *e)
{
    long t0 = clock_mono_us();
    enum up_outcome out = up_send(&r->up, task, data, len, url, delay, e);
    r->times.upload_us += clock_mono_us() - t0;
    count_upload(r, out, len);
    return out;
}

/* The bucket a save goes to, for the log: its own, else PIXQ_DEFAULT_BUCKET ("" if unset). */
static const char *save_bucket(const struct runner *w, const struct job_save *s)
{
    return s->bucket != NULL ? s->bucket : w->cfg->default_bucket;
}

/* Uploads one output (or parks it). `listed`: its entry goes into the result's images; a
 * pre_process job's outputs are not listed, as Blitline's worker ran that job apart and kept only
 * its images for references (their failures are reported all the same, as move_original's). */
static void upload_output(struct run_state *t, const struct proc_output *o, bool listed)
{
    struct runner *w = t->runner;
    struct buf url;
    buf_init(&url, 0);
    struct err e = {{0}};
    long delay = 0;
    if (w->taken != NULL && w->taken(w->taken_user)) {
        /* a later run may have written the same key since: this run's outcome goes nowhere */
        fail_output(t, o->save->image_identifier, TAKEN_ERROR);
        buf_finish(&url);
        return;
    }
    json_object *task = build_task(w, t, o, &e);
    if (task != NULL && !listed) {
        json_object_object_add(task, "listed", json_object_new_boolean(0)); /* if it parks */
    }
    enum up_outcome out =
        task == NULL ? UP_FAILED : run_send(w, task, o->img.blob, o->img.len, &url, &delay, &e);
    if (task == NULL) {
        metrics_count_output(METRICS_OUTPUT_FAILED); /* up_send() counts the others */
    }
    if (out == UP_PARK && park_output(w, task, o, delay, &e) < 0) {
        out = UP_FAILED;
    }
    if (out == UP_FAILED) {
        char q[ERR_MSG_MAX + 16], qi[JOB_IDENTIFIER_MAX + 16], qb[4 * S3_BUCKET_MAX + 8];
        LOG_WARN("upload_failed", "job_id=%s image_identifier=%s bucket=%s error=%s", t->job->id,
                 log_quote(o->save->image_identifier, qi, sizeof qi),
                 log_quote(save_bucket(w, o->save), qb, sizeof qb), log_quote(e.msg, q, sizeof q));
        fail_output(t, o->save->image_identifier, e.msg);
    } else if (out == UP_DONE && !listed) {
        note_object(w, task);
    } else if (out == UP_DONE) {
        note_object(w, task);
        result_add_image(t->result, o->save->image_identifier, url.data,
                         o->save->return_keys ? o->save->key : NULL, o->img.width, o->img.height);
        result_image_number(t->result, o->save->index);
        if (o->img.blank) {
            result_mark_image(t->result, "is_blank");
        }
        /* build_task computed them, for a parked output's postback */
        result_extend_image_meta(t->result,
                                 json_object_get(json_object_object_get(task, "extended_meta")));
    } else {
        char qi[JOB_IDENTIFIER_MAX + 16];
        LOG_INFO("upload_parked", "job_id=%s image_identifier=%s delay_ms=%ld", t->job->id,
                 log_quote(o->save->image_identifier, qi, sizeof qi), delay);
    }
    json_object_put(task);
    buf_finish(&url);
}

static int sink_output(void *user, const struct job *pre, const struct proc_output *o,
                       struct err *e)
{
    upload_output(user, o, false);
    return 0;
}

/* move_original: the untouched (or converted) source goes to its destination now; waiting for a
 * slot blocks here, since the job cannot go on without it. */
static int sink_move(void *user, const struct job_save *dest, const void *data, size_t len,
                     const char *content_type, struct err *e)
{
    struct run_state *t = user;
    struct proc_output o = {.save = dest};
    o.img.blob = (unsigned char *)data;
    o.img.len = len;
    o.img.content_type = content_type;
    json_object *task = build_task(t->runner, t, &o, e);
    enum up_outcome out = UP_FAILED;
    struct buf url;
    buf_init(&url, 0);
    long t0 = clock_mono_us(); /* the waits for a slot are the upload's time too */
    for (long delay = 0; task != NULL;) {
        struct runner *w = t->runner;
        if (w->taken != NULL && w->taken(w->taken_user)) { /* asked again after each wait */
            err_set(e, TAKEN_ERROR);
            out = UP_FAILED;
            break;
        }
        out = up_send(&t->runner->up, task, data, len, &url, &delay, e);
        if (out != UP_PARK) {
            break;
        }
        struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    t->runner->times.upload_us += clock_mono_us() - t0;
    count_upload(t->runner, out, len);
    json_object_put(task);
    buf_finish(&url);
    if (out != UP_DONE) { /* as Blitline: the error is reported, the job goes on */
        char why[ERR_MSG_MAX], q[ERR_MSG_MAX + 16], qb[4 * S3_BUCKET_MAX + 8];
        snprintf(why, sizeof why, "move_original: %.480s", e->msg);
        LOG_WARN("upload_failed", "job_id=%s image_identifier=move_original bucket=%s error=%s",
                 t->job->id, log_quote(save_bucket(t->runner, dest), qb, sizeof qb),
                 log_quote(why, q, sizeof q));
        upload_error(t, why);
    }
    return 0;
}

/* ---------------------------------------------------------------- one job */

/* Logs the parameters of the job that no function reads (job_params_ignored, opdoc.h): the run
 * ignores them, as Blitline's worker did, and this line is all that tells of a misspelt one.
 * Should the functions' parameters not be learned (opdoc_print() would fail as well), says so
 * once a process. */
static void say_unread(const struct job *j)
{
    static bool unlearned_said;
    if (LOG_LEVEL_WARN < log_threshold) {
        return;
    }
    struct opdoc_unread u;
    struct err e = {{0}};
    char q[4 * OPDOC_UNREAD_TEXT + 8]; /* every byte may be written \xNN */
    if (opdoc_unread(j, &u, &e) < 0) {
        if (!unlearned_said) {
            unlearned_said = true;
            LOG_WARN("job_params_unchecked", "job_id=%s error=%s", j->id,
                     log_quote(e.msg, q, sizeof q));
        }
        return;
    }
    if (u.count > 0) {
        LOG_WARN("job_params_ignored", "job_id=%s count=%zu params=%s", j->id, u.count,
                 log_quote(u.text, q, sizeof q));
    }
}

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
    say_unread(t->job); /* also before a failed check: a misspelt required parameter is missing */
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
    if (src_open(&w->loader, t->job->src, im, e) < 0) {
        return src_blame(t->job->src, im, e);
    }
    return 0;
}

static void process(struct runner *w, struct run_state *t)
{
    struct err e = {{0}};
    struct src_image im;
    struct proc_result pr = {0};
    struct src_refs *refs = src_refs_create();
    long t0 = clock_mono_us();
    if (prepare(w, t, refs, &im, &e) < 0 || proc_run(t->job, &im, &w->popts, &pr, &e) < 0) {
        /* as in Blitline, what was saved before the failure still goes: unless the job runs
         * again, which saves it anew (it does not once a pre_process output was parked) */
        bool again = w->n_parked == 0 && w->fetch_status != RUN_DONE && w->reruns != NULL &&
                     w->reruns(w->reruns_user, t->job, w->fetch_status);
        if (!again && w->fetch_status != RUN_DONE) {
            say_runs(t->job, &e);
        }
        job_error(t, e.msg);
        for (size_t i = 0; !again && i < pr.n_outputs; i++) {
            upload_output(t, &pr.outputs[i], true);
        }
        fail_remaining(t);
        goto out;
    }
    long us = clock_mono_us() - t0;
    metrics_observe_processing((double)us / 1e6);
    /* ms and us: the whole of it, sources' downloads included; fetch_us: those downloads */
    LOG_DEBUG("processed", "job_id=%s outputs=%zu ms=%ld us=%ld fetch_us=%ld", t->job->id,
              pr.n_outputs, us / 1000, us, w->times.fetch_us);
    result_set_original_meta(t->result, json_object_get(pr.original_meta));
    for (size_t i = 0; i < pr.n_outputs; i++) {
        upload_output(t, &pr.outputs[i], true);
    }
out:
    /* what is left of the time is the job's own work (move_original's uploads run in prepare) */
    w->times.process_us = clock_mono_us() - t0 - w->times.fetch_us - w->times.upload_us;
    proc_result_finish(&pr);
    src_image_finish(&im);
    w->loader.refs = NULL;
    src_refs_destroy(refs);
}

/* Content-Type (application/json, or a form for old versions), then the job's postback_headers
 * merged over it (Blitline sent them only with JSON; they are sent with forms too). A header
 * that cannot be sent (CR/LF in it, too many, one that frames the request) is left out:
 * job_parse() made such a job fail with a clear error, and that failure still has to be posted
 * back. */
static void postback_headers(const struct job *j, const char *content_type, struct header_set *s)
{
    struct err e = {{0}};
    s->n = 0;
    header_put(s, "Content-Type", content_type, &e);
    if (j->postback_headers == NULL ||
        !json_object_is_type(j->postback_headers, json_type_object)) {
        return;
    }
    bool form = strcmp(content_type, "application/json") != 0;
    json_object_object_foreach(j->postback_headers, name, v)
    {
        const char *value = json_object_get_string(v);
        if (form && strcasecmp(name, "Content-Type") == 0) {
            continue; /* a form is a form, whatever the job's headers say */
        }
        if (strcasecmp(name, "X-Pixq-Timestamp") == 0 ||
            strcasecmp(name, "X-Pixq-Signature") == 0) {
            continue; /* sign_postback()'s, with PIXQ_POSTBACK_SECRET or not: never the job's */
        }
        if (!json_object_is_type(v, json_type_string) ||
            (size_t)json_object_get_string_len(v) != strlen(value) || /* "\u0000" */
            job_header_refused(name, false) != NULL || header_put(s, name, value, &e) < 0) {
            LOG_DEBUG("postback_header_dropped", "job_id=%s", j->id);
        }
    }
}

/* X-Pixq-Timestamp: <unix seconds> and X-Pixq-Signature: v1=<hex HMAC-SHA256 of
 * "<timestamp>.<body>" under `secret`>, over whatever the job's headers said; nothing when the
 * secret is empty. The strings are written into `ts` and `sig`, which must outlive the header
 * set. Returns 0 or -1. */
static int sign_postback(struct header_set *s, const char *secret, time_t now, const char *body,
                         char ts[32], char sig[8 + HASH_SHA256_HEX], struct err *e)
{
    if (secret[0] == '\0') {
        return 0;
    }
    struct buf msg;
    buf_init(&msg, 0);
    snprintf(ts, 32, "%lld", (long long)now);
    if (buf_printf(&msg, "%s.", ts) < 0 || buf_puts(&msg, body) < 0) {
        buf_finish(&msg);
        return err_set(e, "out of memory");
    }
    uint8_t mac[HASH_SHA256_LEN];
    hash_hmac_sha256(secret, strlen(secret), msg.data, msg.len, mac);
    buf_finish(&msg);
    memcpy(sig, "v1=", 3);
    hash_hex(mac, sizeof mac, sig + 3);
    if (header_put(s, "X-Pixq-Timestamp", ts, e) < 0 ||
        header_put(s, "X-Pixq-Signature", sig, e) < 0) {
        return -1;
    }
    return 0;
}

/* `url` for a log line: without a password (cfg_redact_url) and without its query and fragment,
 * where receivers often carry a token; quoted for the log. */
static const char *postback_url_for_log(const char *url, char *out, size_t cap)
{
    char plain[1024];
    cfg_redact_url(url, plain, sizeof plain);
    plain[strcspn(plain, "?#")] = '\0';
    return log_quote(plain, out, (unsigned)cap);
}

/* Posts the result document `json` back in the shape of the job's version. Returns 0, -1 or
 * RUN_POSTBACK_REFUSED with the reason in `out`, as run_postback(). */
static int post_back(struct runner *w, const struct job *job, const char *json, struct err *out)
{
    const char *url = job->postback_url;
    if (url == NULL) {
        return 0;
    }
    bool as_json = false, form = false;
    struct err e = {{0}};
    char q[ERR_MSG_MAX + 16], where[1100];
    postback_url_for_log(url, where, sizeof where);
    w->postback_retry_after_ms = -1;
    /* the URL itself refused (not http(s), no host, a literal address the guard refuses): no
     * later try can be sent either. A name whose address is refused is not final: that is DNS's
     * answer of the moment (see http_perform's refusal at connect time, retried as any other) */
    if (netguard_check_url(&w->guard, url, &e) < 0) {
        LOG_WARN("postback_failed", "job_id=%s url=%s error=%s", job->id, where,
                 log_quote(e.msg, q, sizeof q));
        *out = e;
        return RUN_POSTBACK_REFUSED;
    }
    if (job_param_bool(job->root, "job", "content_type_json", false, &as_json, &e) < 0) {
        as_json = false; /* job_parse() made such a job fail; its failure is still posted */
    }
    char *body = result_postback_body(json, job->v, as_json, &form);
    if (body == NULL) {
        LOG_WARN("postback_failed", "job_id=%s url=%s error=\"out of memory\"", job->id, where);
        return -1;
    }
    struct header_set hs;
    postback_headers(job, form ? "application/x-www-form-urlencoded" : "application/json", &hs);
    char ts[32], sig[8 + HASH_SHA256_HEX];
    int rc = sign_postback(&hs, w->cfg->postback_secret, time(NULL), body, ts, sig, &e);
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
        .guard = &w->guard,
        /* no low-speed limit: a receiver is silent while it works on the postback, and it has
         * PIXQ_POSTBACK_TIMEOUT_MS for that (cut at PIXQ_LOW_SPEED_TIME_S, 10 s, a receiver
         * answering 200 after 12 s was posted again by retry_postback) */
    };
    struct http_response resp;
    http_response_init(&resp);
    long t0 = clock_mono_us();
    rc = rc < 0 ? rc : http_perform(w->http, &req, &resp, &e);
    long us = clock_mono_us() - t0;
    w->times.postback_us += us;
    double ms = (double)us / 1000.0;
    if (rc < 0 && resp.status / 100 == 2 && !resp.refused) {
        rc = 0; /* its status came: taken, whatever befell the body (over the cap, cut, late) */
    }
    if (rc < 0 && resp.status >= 300 && !resp.refused) {
        /* refused, whatever befell its error page: the status says why, not the page's bytes */
        char why[ERR_MSG_MAX];
        memcpy(why, e.msg, sizeof why);
        rc = err_set(&e, "postback answered HTTP %ld (its body cut short: %.200s)", resp.status,
                     why);
    }
    if (rc == 0 && resp.status / 100 != 2) {
        rc = err_set(&e, "postback answered HTTP %ld", resp.status);
    }
    if (rc < 0) {
        LOG_WARN("postback_failed", "job_id=%s url=%s error=%s", job->id, where,
                 log_quote(e.msg, q, sizeof q));
        w->postback_retry_after_ms =
            http_retry_after_ms(&resp, time(NULL), w->cfg->retry_after_max_ms);
        rc = resp.bad_url ? RUN_POSTBACK_REFUSED : -1; /* a URL libcurl cannot send, ever */
    } else {
        LOG_DEBUG("postback_sent", "job_id=%s status=%ld ms=%.3f", job->id, resp.status, ms);
    }
    http_response_finish(&resp);
    free(body);
    *out = e;
    return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------- the job guard */

/* A save with an s3_destination goes to a bucket that the deployment lets jobs write to (saves
 * without one go to PIXQ_DEFAULT_BUCKET); job_check_destinations() checked its name. */
static int check_save(const struct cfg *c, const struct job_save *s, struct err *e)
{
    if (s != NULL && s->bucket == NULL && !s->skip && c->default_bucket[0] == '\0') {
        /* BLITLINE.md: the job fails, before anything is fetched or uploaded */
        return err_set(e, "'%.100s' has no s3_destination and PIXQ_DEFAULT_BUCKET is not set",
                       s->image_identifier);
    }
    if (s == NULL || s->bucket == NULL || cfg_bucket_allowed(c, s->bucket)) {
        return 0;
    }
    return err_set(e, "s3_destination of '%.100s': bucket '%.100s' is not allowed",
                   s->image_identifier, s->bucket);
}

static int check_saves(const struct cfg *c, const struct job_fn *fns, size_t n, struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (check_save(c, fns[i].save, e) < 0 ||
            check_saves(c, fns[i].children, fns[i].n_children, e) < 0) {
            return -1;
        }
    }
    return 0;
}

static int check_destinations(const struct cfg *c, const struct job *j, struct err *e)
{
    if (j->postback_save != NULL && check_save(c, j->postback_save, e) < 0) {
        return -1;
    }
    for (size_t i = 0; i < j->n_pre; i++) {
        int rc = j->pre[i].job != NULL ? check_destinations(c, j->pre[i].job, e)
                                       : check_save(c, j->pre[i].move, e);
        if (rc < 0) {
            return -1;
        }
    }
    return check_saves(c, j->functions, j->n_functions, e);
}

/* What a valid job may ask for in this deployment, checked before anything is fetched: the
 * number of outputs, where they go, and a postback_url that can be reached at all (an http(s)
 * URL; a literal address must pass the network guard, a name is checked when it resolves). */
static int guard_job(struct runner *w, const struct job *j, struct err *e)
{
    if (job_check_saves(j, w->cfg->max_saves, e) < 0) {
        return -1;
    }
    if (j->postback_url != NULL && netguard_check_url(&w->guard, j->postback_url, e) < 0) {
        char shown[512];
        cfg_redact_url(j->postback_url, shown, sizeof shown);
        return err_wrap(e, "postback_url %.300s", shown);
    }
    if (job_check_destinations(j, e) < 0) {
        return -1;
    }
    return check_destinations(w->cfg, j, e);
}

void run_fail(const struct job *job, struct result *res, char first_error[ERR_MSG_MAX],
              const char *why)
{
    struct run_state t = {NULL, job, res, first_error};
    fail_job(&t, why);
}

/* run_job() without the log context. */
static enum run_status run(struct runner *r, const struct job *job, struct result *res,
                           char first_error[ERR_MSG_MAX])
{
    struct run_state t = {r, job, res, first_error};
    r->fetch_status = RUN_DONE;
    r->times = (struct run_times){0};
    r->downloads = 0;
    r->past_job_limit = false;
    r->retry_after_ms = -1;
    run_release(r);
    if (job->error[0] != '\0') {
        fail_job(&t, job->error);
        return RUN_DONE;
    }
    struct err e = {{0}};
    if (guard_job(r, job, &e) < 0) {
        fail_job(&t, e.msg);
        return RUN_DONE;
    }
    if (srccache_start(&r->sources, job->root, (size_t)r->cfg->source_cache_bytes) < 0) {
        LOG_WARN("source_cache_off", "error=out_of_memory"); /* each naming is downloaded */
    }
    process(r, &t);
    srccache_clear(&r->sources);
    if (r->n_parked > 0) {
        return RUN_PARKED;
    }
    return first_error[0] != '\0' ? r->fetch_status : RUN_DONE;
}

enum run_status run_job(struct runner *r, const struct job *job, struct result *res,
                        char first_error[ERR_MSG_MAX])
{
    r->job_id = job->id;
    log_set_job(job->id); /* every line of the run names the job */
    enum run_status st = run(r, job, res, first_error);
    log_set_job(NULL);
    r->job_id = "";
    return st;
}

/* The upload task (upload.h) of the result JSON that postback_url's save names; NULL with the
 * reason when the deployment does not let jobs write there (PIXQ_S3_BUCKETS). */
static json_object *result_task(const struct cfg *c, const struct job *job, struct err *e)
{
    const struct job_save *save = job->postback_save;
    /* asked here too: a job that failed before its guard (bad JSON in a field, say) is posted */
    if (job_check_s3_object(save->bucket, save->location, save->key, e) < 0) {
        return NULL;
    }
    if (!cfg_bucket_allowed(c, save->bucket)) {
        err_set(e, "bucket '%.100s' is not allowed", save->bucket);
        return NULL;
    }
    struct header_set hs;
    /* as Blitline's worker wrote it: the result is the job owner's, never public; no ACL where
     * the deployment sends none (PIXQ_S3_DEFAULT_ACL "": a store that refuses them) */
    const char *acl = c->s3_default_acl[0] != '\0' ? "bucket-owner-full-control" : "";
    if (upload_headers(save, "application/json", acl, &hs, e) < 0) {
        return NULL;
    }
    const struct s3_object obj = {save->bucket, save->location, save->key};
    return new_task(job->id, "postback_url", &obj, &hs);
}

/* postback_url {"save": {"s3_destination": ...}}: the result JSON goes to that object, as
 * Blitline's worker wrote it, through the bucket's rate limit; a throttled or failing PUT is
 * tried again here, with the uploads' back-off, while PIXQ_POSTBACK_TIMEOUT_MS lasts (a postback
 * that fails is retried later with retry_postback, as a POST is). Returns 0 stored, -1 failed,
 * RUN_POSTBACK_REFUSED when the deployment refuses the object (PIXQ_S3_BUCKETS), with the
 * reason in `res`. */
static int post_to_s3(struct runner *w, const struct job *job, const char *json, struct err *res)
{
    struct err e = {{0}};
    json_object *task = result_task(w->cfg, job, &e);
    bool refused = task == NULL && e.msg[0] != '\0'; /* the destination itself: final */
    long t0 = clock_mono_us(), deadline = clock_mono_ms() + w->cfg->postback_timeout_ms;
    enum up_outcome out = UP_FAILED;
    struct buf url;
    buf_init(&url, 0);
    /* in the job's version's shape, always JSON (a form body is for a POST) */
    bool form = false;
    char *body = task != NULL ? result_postback_body(json, job->v, true, &form) : NULL;
    if (task != NULL && body == NULL) {
        err_set(&e, "out of memory");
    }
    while (body != NULL) {
        /* every try within the time left: each PUT's timeouts, and a slot of the bucket's rate
         * no further ahead (a slot taken past it would be left unused, the bucket's other
         * uploads pushed back for nothing) */
        long left = deadline - clock_mono_ms();
        struct s3_config s3 = *w->up.s3;
        s3.timeout_ms = left < s3.timeout_ms ? (left > 1 ? left : 1) : s3.timeout_ms;
        s3.connect_timeout_ms =
            s3.connect_timeout_ms < s3.timeout_ms ? s3.connect_timeout_ms : s3.timeout_ms;
        struct uploader up = w->up;
        up.s3 = &s3;
        up.horizon_ms = left > 1 ? left : 1;
        long delay = 0;
        out = up_send(&up, task, body, strlen(body), &url, &delay, &e);
        if (out != UP_PARK) {
            break;
        }
        if (clock_mono_ms() + delay > deadline) {
            char why[ERR_MSG_MAX];
            memcpy(why, e.msg, sizeof why);
            err_set(&e, "S3 did not take the result within PIXQ_POSTBACK_TIMEOUT_MS (%ld ms)%s%s",
                    w->cfg->postback_timeout_ms, why[0] ? ": " : "", why);
            out = UP_FAILED;
            break;
        }
        clock_sleep_ms(delay);
        e = (struct err){{0}};
    }
    long us = clock_mono_us() - t0;
    w->times.postback_us += us;
    char q[ERR_MSG_MAX + 16];
    if (out != UP_DONE) {
        LOG_WARN("postback_failed", "job_id=%s to=s3 error=%s", job->id,
                 log_quote(e.msg, q, sizeof q));
    } else {
        LOG_DEBUG("postback_sent", "job_id=%s to=s3 url=%s ms=%.3f", job->id,
                  log_quote(url.data != NULL ? url.data : "", q, sizeof q), (double)us / 1000.0);
    }
    json_object_put(task);
    free(body);
    buf_finish(&url);
    *res = e;
    return out == UP_DONE ? 0 : refused ? RUN_POSTBACK_REFUSED : -1;
}

int run_postback(struct runner *r, const struct job *job, const char *body, struct err *e)
{
    *e = (struct err){{0}};
    r->postback_retry_after_ms = -1;
    return job->postback_save != NULL ? post_to_s3(r, job, body, e) : post_back(r, job, body, e);
}

void run_init(struct runner *r, const struct cfg *c, struct http *http)
{
    r->cfg = c;
    r->http = http;
    r->uploaded = NULL;
    r->retry_after_ms = -1;
    r->postback_retry_after_ms = -1;
    memset(r->regions, 0, sizeof r->regions);
    r->next_region = 0;
    struct err e = {{0}};
    if (netguard_init(&r->guard, c->allow_private_networks, c->allowed_networks, &e) < 0) {
        /* cfg validated the list at start-up; should it not parse, only public addresses pass */
        char q[ERR_MSG_MAX + 16];
        LOG_ERROR("allowed_networks_ignored", "error=%s", log_quote(e.msg, q, sizeof q));
    }
    r->s3 = (struct s3_config){
        .endpoint = c->s3_endpoint,
        .path_style = cfg_s3_path_style(c),
        .region = c->aws_region,
        .access_key = c->aws_access_key_id,
        .secret_key = c->aws_secret_access_key,
        .session_token = c->aws_session_token,
        .connect_timeout_ms = c->connect_timeout_ms,
        .timeout_ms = c->s3_timeout_ms,
        .max_idle_ms = c->s3_idle_ms,
        .last_used_ms = &r->s3_last_used_ms,
        .retry_after_max_ms = c->retry_after_max_ms,
        .expect_continue_bytes = (size_t)c->s3_expect_continue_bytes,
        .expect_continue_ms = c->s3_expect_continue_ms,
    };
    if (c->aws_shared_credentials_file[0] != '\0') {
        r->s3.creds = &r->creds;
        if (awscreds_init(&r->creds, c, true, &e) < 0) {
            /* not there yet, or gone since the check at start: each request looks again */
            char q[ERR_MSG_MAX + 16], qp[CFG_STR_MAX + 16], qn[CFG_STR_MAX + 16];
            LOG_WARN("s3_credentials_refused",
                     "path=%s profile=%s error=%s action=none_to_sign_with",
                     log_quote(r->creds.path, qp, sizeof qp),
                     log_quote(r->creds.profile, qn, sizeof qn), log_quote(e.msg, q, sizeof q));
        }
    } else if (c->aws_access_key_id[0] == '\0' && c->aws_secret_access_key[0] == '\0' &&
               awsmeta_configured(c)) {
        /* checked at start (status 2 when wrong); a fetch that fails is logged and tried again
         * by the requests */
        if (awscreds_init_endpoint(&r->creds, c, &e) == 0) {
            r->s3.creds = &r->creds;
        } else {
            char q[ERR_MSG_MAX + 16];
            LOG_ERROR("s3_credentials_refused", "error=%s action=none_to_sign_with",
                      log_quote(e.msg, q, sizeof q));
        }
    }
    r->up = (struct uploader){.cfg = c, .http = http, .s3 = &r->s3};
    r->objs = json_object_new_array();
    r->job_id = "";
    srccache_init(&r->sources);
    r->loader = (struct src_loader){
        .fetch = fetch_bytes,
        .fetch_user = r,
        .max_pixels = c->max_pixels,
    };
    r->popts = (struct proc_opts){
        .max_pixels = c->max_pixels,
        .max_profile_bytes = c->max_profile_bytes,
        .default_quality = c->default_quality,
        .max_output_bytes = (size_t)c->max_output_bytes,
        .max_job_output_bytes = (size_t)c->max_job_output_bytes,
        .load = src_load,
        .fetch = src_fetch,
        .load_user = &r->loader,
    };
}

void run_set_redis(struct runner *r, struct rq *rq)
{
    r->up.rq = rq;
}

void run_release(struct runner *r)
{
    for (size_t i = 0; i < r->n_parked; i++) {
        json_object_put(r->parked[i].task);
        free(r->parked[i].data);
    }
    r->n_parked = 0;
    json_object_put(r->objs);
    r->objs = json_object_new_array();
}

void run_finish(struct runner *r)
{
    run_release(r);
    srccache_clear(&r->sources);
    free(r->parked);
    r->parked = NULL;
    r->cap_parked = 0;
    json_object_put(r->objs);
    r->objs = NULL;
}
