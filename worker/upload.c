#include "upload.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

#define MAX_REGION_HOPS 2   /* wrong-region answers followed for one upload */
#define SLOT_GRACE_MS   100 /* a reserved slot still counts when the task comes this late */
#define SLOT_RETAKES    3   /* slots taken in a row when each was voided during its wait */

static const char *task_string(json_object *task, const char *name)
{
    json_object *v = NULL;
    json_object_object_get_ex(task, name, &v);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static long task_long(json_object *task, const char *name, long def)
{
    json_object *v = NULL;
    json_object_object_get_ex(task, name, &v);
    return v != NULL ? (long)json_object_get_int64(v) : def;
}

struct s3_object up_object(json_object *task)
{
    struct s3_object o = {task_string(task, "bucket"), task_string(task, "region"),
                          task_string(task, "key")};
    return o;
}

static void limiter_key(const char *bucket, char *out, size_t cap)
{
    snprintf(out, cap, "pixq:rl:{%s}", bucket);
}

/* ---------------------------------------------------------------- the limiter */

struct slot {
    int status; /* 0 go, 1 reserved in wait_ms, 2 nothing reserved, wait_ms away */
    long wait_ms;
    char region[64];
    long epoch;   /* the bucket's epoch (decreases and re-plans) when the slot was given */
    long late_ms; /* how late the slot may still be used (burst intervals) */
    bool ok;      /* the limiter answered */
};

/* rl_acquire.lua for `cost` tokens (0: only the bucket's epoch, after a re-plan if one is due).
 * A Redis failure lets the upload go (S3 itself still pushes back). */
static void acquire(const struct uploader *u, const char *bucket, const char *job_id,
                    const char *cost, struct slot *s)
{
    memset(s, 0, sizeof *s);
    if (u->rq == NULL) {
        return;
    }
    const struct cfg *c = u->cfg;
    char key[RQ_KEY_MAX], rate[32], burst[32], horizon[32], min_rate[32], ttl[32];
    limiter_key(bucket, key, sizeof key);
    snprintf(rate, sizeof rate, "%g", c->s3_rate);
    snprintf(burst, sizeof burst, "%ld", c->s3_burst);
    snprintf(horizon, sizeof horizon, "%ld", u->horizon_ms > 0 ? u->horizon_ms : c->s3_horizon_ms);
    snprintf(min_rate, sizeof min_rate, "%g", c->s3_min_rate);
    snprintf(ttl, sizeof ttl, "%ld", c->rl_idle_ttl_s * 1000);
    const char *keys[] = {key};
    const char *args[] = {rate, burst, cost, horizon, min_rate, ttl};
    struct err e = {{0}};
    redisReply *r = rq_script(u->rq, RQ_SCRIPT_RL_ACQUIRE, 1, keys, 6, args, NULL, &e);
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 7) {
        s->ok = true;
        s->status = (int)r->element[0]->integer;
        s->wait_ms = (long)r->element[1]->integer;
        s->epoch = (long)r->element[4]->integer;
        s->late_ms = (long)r->element[6]->integer;
        snprintf(s->region, sizeof s->region, "%s", r->element[2]->str ? r->element[2]->str : "");
        long eff = (long)r->element[3]->integer; /* tokens per 1000 s */
        if (r->element[5]->integer == 1 && eff > 0) {
            LOG_INFO("bucket_replanned", "job_id=%s bucket=%s rate=%.3f", job_id, bucket,
                     eff / 1000.0);
            if (u->replanned != NULL) {
                u->replanned(u->replanned_user, bucket, 1000000000L / eff, s->epoch);
            }
        }
    } else {
        char q[ERR_MSG_MAX + 16];
        LOG_WARN("limiter_unavailable", "job_id=%s bucket=%s error=%s", job_id, bucket,
                 log_quote(e.msg, q, sizeof q));
    }
    freeReplyObject(r);
}

/* rl_feedback.lua: S3 throttled this bucket. */
static void slow_down(const struct uploader *u, const char *bucket, const char *job_id)
{
    if (u->rq == NULL) {
        return;
    }
    char key[RQ_KEY_MAX], rate[32], cooldown[32], min_rate[32], burst[32], ttl[32];
    limiter_key(bucket, key, sizeof key);
    snprintf(rate, sizeof rate, "%g", u->cfg->s3_rate);
    snprintf(cooldown, sizeof cooldown, "%ld", u->cfg->s3_cooldown_ms);
    snprintf(min_rate, sizeof min_rate, "%g", u->cfg->s3_min_rate);
    snprintf(burst, sizeof burst, "%ld", u->cfg->s3_burst); /* the tokens a decrease keeps */
    snprintf(ttl, sizeof ttl, "%ld", u->cfg->rl_idle_ttl_s * 1000);
    const char *keys[] = {key};
    const char *args[] = {rate, cooldown, min_rate, burst, ttl};
    struct err e = {{0}};
    redisReply *r = rq_script(u->rq, RQ_SCRIPT_RL_FEEDBACK, 1, keys, 5, args, NULL, &e);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        LOG_INFO("bucket_slowed", "job_id=%s bucket=%s", job_id, bucket);
    }
    freeReplyObject(r);
}

static void remember_region(const struct uploader *u, const char *bucket, const char *region)
{
    if (u->rq == NULL) {
        return;
    }
    char key[RQ_KEY_MAX];
    limiter_key(bucket, key, sizeof key);
    struct err e = {{0}};
    freeReplyObject(rq_command(u->rq, &e, "HSET %s region %s", key, region));
}

/* ---------------------------------------------------------------- sending */

/* The task's headers as an array for s3_put (borrowed from the task). */
static size_t task_headers(json_object *task, struct http_header *h, size_t cap)
{
    json_object *hs = NULL;
    size_t n = 0;
    json_object_object_get_ex(task, "headers", &hs);
    if (hs == NULL || !json_object_is_type(hs, json_type_object)) {
        return 0;
    }
    json_object_object_foreach(hs, name, v)
    {
        if (n < cap) {
            h[n++] = (struct http_header){name, json_object_get_string(v)};
        }
    }
    return n;
}

/* PUTs, following wrong-region answers (re-signed for the bucket's region). */
static int put(const struct uploader *u, json_object *task, struct s3_object *o, const void *data,
               size_t len, struct s3_reply *reply, struct err *e)
{
    struct http_header h[HTTP_MAX_HEADERS - 8];
    size_t nh = task_headers(task, h, sizeof h / sizeof h[0]);
    char region[64];
    const char *job_id = task_string(task, "job_id");
    bool resigned = false;
    for (int hop = 0;; hop++) {
        double t0 = metrics_clock();
        int rc = s3_put(u->http, u->s3, o, data, len, h, nh, s3_clock(), reply, e);
        double secs = metrics_clock() - t0;
        if (!reply->not_sent) { /* no credentials: no request went, no answer to count */
            metrics_observe_upload(secs, reply->status);
        }
        LOG_DEBUG("s3_put",
                  "job_id=%s method=PUT bucket=%s key_bytes=%zu status=%ld code=%s bytes=%zu "
                  "ms=%.3f",
                  job_id, o->bucket, strlen(o->key), reply->status, reply->code, len, secs * 1e3);
        if (rc < 0 && !resigned && s3_clock_corrected(reply, job_id, o->bucket)) {
            resigned = true;
            hop--; /* the same hop, signed again at S3's time */
            continue;
        }
        if (rc == 0 || hop == MAX_REGION_HOPS ||
            !s3_redirect_region(u->http, u->s3, o, s3_clock(), reply, e)) {
            return rc;
        }
        snprintf(region, sizeof region, "%s", reply->region);
        LOG_WARN("bucket_region", "job_id=%s bucket=%s region=%s", job_id, o->bucket, region);
        remember_region(u, o->bucket, region);
        json_object_object_add(task, "region", json_object_new_string(region));
        o->region = task_string(task, "region");
    }
}

/* After a throttling answer the base is larger (PIXQ_S3_THROTTLE_RETRY_BASE_MS, 1 s, as the AWS
 * SDKs' 2026 retry mode): while the fleet's rate comes down, retries spaced by 200 ms met five
 * SlowDowns in a row. */
long up_backoff_ms(const struct cfg *c, long attempt, bool throttled)
{
    long cap = throttled ? c->s3_throttle_retry_base_ms : c->s3_retry_base_ms;
    for (long i = 1; i < attempt && cap < c->s3_retry_max_ms; i++) {
        cap *= 2;
    }
    cap = cap > c->s3_retry_max_ms ? c->s3_retry_max_ms : cap;
    static unsigned seed;
    if (seed == 0) {
        seed = (unsigned)time(NULL) ^ (unsigned)clock_mono_ms();
    }
    return (long)(rand_r(&seed) % (unsigned)(cap + 1));
}

/* The host of an object URL, for "<host> refused the S3 credentials". */
static void url_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    snprintf(out, cap, "%.*s", (int)strcspn(p, "/"), p);
}

/* After S3's AccessControlListNotSupported (a bucket with ACLs disabled, S3's default for new
 * buckets since April 2023, refuses every x-amz-acl but bucket-owner-full-control): says which
 * setting to change after S3's reason, cutting that reason if both do not fit. */
static void acl_hint(const struct s3_reply *r, struct err *e)
{
    static const char hint[] = "; set PIXQ_S3_DEFAULT_ACL empty to send no x-amz-acl header (a "
                               "job's own x-amz-acl or x-amz-grant-* headers are refused too)";
    if (e == NULL || strcmp(r->code, "AccessControlListNotSupported") != 0) {
        return;
    }
    char why[ERR_MSG_MAX];
    memcpy(why, e->msg, sizeof why);
    err_set(e, "%.*s%s", (int)(sizeof why - sizeof hint), why, hint);
}

/* After a failed PUT: park for another attempt, or fail for good. */
static enum up_outcome after_failure(const struct uploader *u, json_object *task,
                                     const struct s3_reply *r, const char *url, long *delay_ms,
                                     struct err *e)
{
    long attempt = task_long(task, "attempt", 1);
    if (s3_throttled(r)) {
        slow_down(u, task_string(task, "bucket"), task_string(task, "job_id"));
    }
    if (!s3_transient(r)) {
        acl_hint(r, e);
        return UP_FAILED;
    }
    if (attempt < u->cfg->s3_max_attempts) {
        *delay_ms = up_backoff_ms(u->cfg, attempt, s3_throttled(r));
        /* a 503's or 429's Retry-After (some S3-compatible stores send one), at most
         * PIXQ_RETRY_AFTER_MAX_MS (s3.c reads it so), when it asks for longer */
        if (r->retry_after_ms > *delay_ms) {
            *delay_ms = r->retry_after_ms;
        }
        /* why, for the operator: a reset, a timeout, a 500 and SlowDown each show here */
        char q[ERR_MSG_MAX + 16], qi[JOB_IDENTIFIER_MAX + 16];
        const char *id = task_string(task, "image_identifier"),
                   *job_id = task_string(task, "job_id");
        LOG_INFO("upload_retry",
                 "job_id=%s image_identifier=%s attempt=%ld status=%ld code=%s delay_ms=%ld "
                 "error=%s",
                 job_id != NULL ? job_id : "", log_quote(id != NULL ? id : "", qi, sizeof qi),
                 attempt, r->status, r->code, *delay_ms, log_quote(e->msg, q, sizeof q));
        json_object_object_add(task, "attempt", json_object_new_int64(attempt + 1));
        json_object_object_add(task, "reserved", json_object_new_boolean(0));
        return UP_PARK;
    }
    char host[256];
    url_host(url, host, sizeof host);
    if (r->refreshable && r->code[0] != '\0') { /* not an outage: keys their keeper never renewed */
        err_set(e,
                "%s refused the S3 credentials %ld times (%s), and their source gave no others "
                "(the log's s3_credentials_* lines say more)",
                host, attempt, r->code);
        return UP_FAILED;
    }
    /* the last attempt's error names the object and what S3 said (S3 PUT <url>: HTTP 503
     * SlowDown: <its message>) or what went wrong (a reset, a timeout): the URL and S3's message
     * are cut to 200 bytes each, so it fits after this */
    err_wrap(e, "S3 temporarily unavailable after %ld attempts", attempt);
    return UP_FAILED;
}

/* The bucket's epoch (its `decreases` and `replans` counters added): a slot reserved before the
 * last decrease or re-plan is void. Read through rl_acquire.lua for no token, which re-plans
 * first when the rate has climbed back: when every parked upload holds a slot and no other
 * upload comes, nothing else would, and they would go at the spacing of their low rate to the
 * last. Returns -2 when it cannot be read (then no reservation is trusted); `late_ms`: the
 * bucket's burst intervals now (an operator may have lowered its burst or rate since). */
static long current_epoch(const struct uploader *u, json_object *task, long *late_ms)
{
    const char *bucket = task_string(task, "bucket");
    *late_ms = 0;
    if (u->rq == NULL || bucket == NULL) {
        return -2;
    }
    struct slot s;
    acquire(u, bucket, task_string(task, "job_id"), "0", &s);
    *late_ms = s.late_ms;
    return s.ok ? s.epoch : -2;
}

/* Whether the task holds a slot reserved when it was parked that is still good: a slot missed by
 * more than PIXQ_S3_LOCAL_WAIT_MS, SLOT_GRACE_MS and the bucket's burst intervals when it was
 * reserved (`slot_late_ms`, rl_acquire.lua) is not used, since sending that late would bunch it
 * with the slots after it past the burst, nor one reserved before the bucket's last decrease or
 * re-plan. Clears the reservation either way. */
static bool holds_slot(const struct uploader *u, json_object *task)
{
    json_object *reserved = NULL;
    json_object_object_get_ex(task, "reserved", &reserved);
    bool held = reserved != NULL && json_object_get_boolean(reserved);
    long slot_at = task_long(task, "slot_at", 0);
    json_object_object_add(task, "reserved", json_object_new_boolean(0));
    if (!held) {
        return false;
    }
    long late = clock_wall_ms() - slot_at;
    long grace =
        u->cfg->s3_local_wait_ms > SLOT_GRACE_MS ? u->cfg->s3_local_wait_ms : SLOT_GRACE_MS;
    long burst = task_long(task, "slot_late_ms", 0), burst_now = 0;
    long epoch = late <= grace || late <= burst ? current_epoch(u, task, &burst_now) : -2;
    /* past the grace, the burst intervals of when the slot was reserved and of now: a slot held
     * while an operator lowered the burst (pixq limit set) would go as late as the old burst
     * allowed, bunched with the slots after it past the new one */
    if (late > grace && (late > burst || late > burst_now)) {
        LOG_DEBUG("slot_missed", "job_id=%s bucket=%s late_ms=%ld", task_string(task, "job_id"),
                  task_string(task, "bucket"), late);
        return false;
    }
    return epoch == task_long(task, "epoch", -1);
}

/* After a wait in the process for a slot of `epoch`: whether a decrease or a re-plan (S3's
 * SlowDown, pixq limit set) voided it meanwhile. Sent all the same, the slots of every worker
 * waiting so went at the old pace: after a lowering from 100/s to 2/s, up to 10 in 100 ms. */
static bool slot_voided(const struct uploader *u, json_object *task, long epoch)
{
    long late_ms, now = current_epoch(u, task, &late_ms);
    return now != -2 && now != epoch;
}

/* Takes the task's slot: go now (0), or park until it (1). */
static int wait_for_slot(const struct uploader *u, json_object *task, struct s3_object *o,
                         long *delay_ms)
{
    if (holds_slot(u, task)) {
        return 0; /* the slot was taken when the task was parked: it is now */
    }
    const char *job_id = task_string(task, "job_id");
    struct slot s;
    for (int taken = 1;; taken++) {
        acquire(u, o->bucket, job_id, "1", &s);
        /* the region S3 named (remember_region), checked again: it goes into a host name */
        if (o->region == NULL && s.region[0] != '\0' && s3_valid_region(s.region)) {
            json_object_object_add(task, "region", json_object_new_string(s.region));
            o->region = task_string(task, "region");
        }
        if (s.status == 2 || s.wait_ms > u->cfg->s3_local_wait_ms) {
            break; /* parked until the slot */
        }
        if (s.wait_ms <= 0) {
            return 0;
        }
        metrics_throttle_wait(METRICS_WAIT_LOCAL, s.wait_ms);
        clock_sleep_ms(s.wait_ms);
        /* a new slot at the new rate; after a few (the epoch changing at each), the last goes */
        if (taken >= SLOT_RETAKES || !slot_voided(u, task, s.epoch)) {
            return 0;
        }
        LOG_DEBUG("slot_voided", "job_id=%s bucket=%s epoch=%ld", job_id, o->bucket, s.epoch);
    }
    metrics_throttle_wait(METRICS_WAIT_PARK, s.wait_ms);
    json_object_object_add(task, "reserved", json_object_new_boolean(s.status == 1));
    json_object_object_add(task, "slot_at", json_object_new_int64(clock_wall_ms() + s.wait_ms));
    json_object_object_add(task, "epoch", json_object_new_int64(s.epoch));
    json_object_object_add(task, "slot_late_ms", json_object_new_int64(s.late_ms));
    *delay_ms = s.wait_ms;
    return 1;
}

/* up_send() without counting. */
static enum up_outcome send_task(const struct uploader *u, json_object *task, const void *data,
                                 size_t len, struct buf *url, long *delay_ms, struct err *e)
{
    struct s3_object o = up_object(task);
    *delay_ms = 0;
    if (o.bucket == NULL || o.key == NULL) {
        err_set(e, "upload task without a bucket or key");
        return UP_FAILED;
    }
    if (wait_for_slot(u, task, &o, delay_ms) == 1) {
        return UP_PARK;
    }
    if (u->rq != NULL) {
        rq_wait_sent(u->rq); /* a script call sent ahead (the job's begin.lua) has run */
    }
    struct s3_reply reply;
    if (put(u, task, &o, data, len, &reply, e) == 0) {
        return s3_object_url(u->s3, &o, url, e) == 0 ? UP_DONE : UP_FAILED;
    }
    struct buf where;
    buf_init(&where, 0);
    s3_object_url(u->s3, &o, &where, NULL);
    enum up_outcome out = after_failure(u, task, &reply, where.data ? where.data : "", delay_ms, e);
    buf_finish(&where);
    return out;
}

enum up_outcome up_send(const struct uploader *u, json_object *task, const void *data, size_t len,
                        struct buf *url, long *delay_ms, struct err *e)
{
    enum up_outcome out = send_task(u, task, data, len, url, delay_ms, e);
    metrics_count_output(out == UP_DONE   ? METRICS_OUTPUT_UPLOADED
                         : out == UP_PARK ? METRICS_OUTPUT_PARKED
                                          : METRICS_OUTPUT_FAILED);
    return out;
}

/* ---------------------------------------------------------------- wait_for_s3 */

/* HEADs the objects not known readable yet, each within the time left before `deadline`
 * (clock_mono_ms()); returns how many are still unreadable, those not tried included. */
static int count_unreadable(const struct uploader *u, json_object *objs, bool *readable,
                            long deadline, const char *job_id)
{
    int left = 0;
    size_t n = json_object_array_length(objs);
    for (size_t i = 0; i < n; i++) {
        if (readable[i]) {
            continue;
        }
        struct s3_object o = up_object(json_object_array_get_idx(objs, i));
        long rest = deadline - clock_mono_ms();
        if (o.bucket == NULL || o.key == NULL || rest <= 0) {
            left++;
            continue;
        }
        struct s3_config c = *u->s3; /* a HEAD ends by the deadline, whatever PIXQ_S3_TIMEOUT_MS */
        c.timeout_ms = c.timeout_ms > rest ? rest : c.timeout_ms;
        c.connect_timeout_ms = c.connect_timeout_ms > rest ? rest : c.connect_timeout_ms;
        struct s3_reply reply;
        struct err e = {{0}};
        double t0 = metrics_clock();
        readable[i] = s3_head(u->http, &c, &o, s3_clock(), &reply, &e) == 0;
        if (!reply.not_sent) {
            metrics_count_s3(METRICS_S3_HEAD, reply.status);
        }
        LOG_DEBUG("s3_head", "job_id=%s method=HEAD bucket=%s status=%ld ms=%.3f", job_id, o.bucket,
                  reply.status, (metrics_clock() - t0) * 1e3);
        left += !readable[i];
    }
    return left;
}

int up_wait_for_s3(const struct uploader *u, json_object *objs, const char *job_id)
{
    size_t n = objs != NULL ? json_object_array_length(objs) : 0;
    bool *readable = calloc(n > 0 ? n : 1, sizeof *readable);
    if (readable == NULL) {
        return (int)n;
    }
    /* a pass every interval while PIXQ_WAIT_FOR_S3_MAX_MS lasts, the first at once and the last
     * when it is over (PIXQ_WAIT_FOR_S3_MAX_MS=0: the first only); a pass's HEADs end by one
     * interval after it is over, however long PIXQ_S3_TIMEOUT_MS */
    long t0 = clock_mono_ms(), max = u->cfg->wait_for_s3_max_ms;
    long interval = u->cfg->wait_for_s3_interval_ms, cutoff = t0 + max + interval;
    int left = count_unreadable(u, objs, readable, cutoff, job_id);
    while (left > 0 && clock_mono_ms() - t0 < max) {
        long rest = max - (clock_mono_ms() - t0);
        clock_sleep_ms(rest < interval ? rest : interval);
        left = count_unreadable(u, objs, readable, cutoff, job_id);
    }
    free(readable);
    if (left > 0) { /* the postback lists URLs that may not be readable yet */
        LOG_WARN("wait_for_s3", "job_id=%s objects=%zu unreadable=%d ms=%ld action=post_anyway",
                 job_id, n, left, clock_mono_ms() - t0);
    } else {
        LOG_INFO("wait_for_s3", "job_id=%s objects=%zu unreadable=0 ms=%ld", job_id, n,
                 clock_mono_ms() - t0);
    }
    return left;
}
