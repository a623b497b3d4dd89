#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http.h"
#include "id.h"
#include "image.h"
#include "job.h"
#include "lease.h"
#include "log.h"
#include "result.h"
#include "rq.h"
#include "run.h"

#define BACKOFF_MIN_MS  100  /* first wait after a Redis failure */
#define BACKOFF_MAX_MS  5000 /* longest wait between Redis retries */
#define FINISH_ATTEMPTS 50   /* tries to settle a job before leaving it to recovery */
#define MIN_BLOCK_MS    10   /* shortest blocking wait for a job */
#define REDIS_TICK_MS   100  /* a blocking wait may end this late (Redis's default hz 10) */

struct worker {
    const struct cfg *cfg;
    volatile sig_atomic_t *stop;
    struct rq *rq;
    struct lease *lease;
    struct http *http;
    struct runner runner;
    struct job_limits limits;
    char id[300];
    const char *queue;
    char queue_buf[CFG_STR_MAX];
    char jobs_key[RQ_KEY_MAX];
    char active_key[RQ_KEY_MAX];
    char dead_key[RQ_KEY_MAX];
    char stats_key[RQ_KEY_MAX];
    char delayed_key[RQ_KEY_MAX];
    char recov_key[RQ_KEY_MAX];
    long next_promote_at; /* monotonic ms */
    unsigned seed;        /* for retry jitter */
    bool due_soon;        /* next_promote_at is a delayed job's due time, not a routine look */
    bool check_active;    /* a Redis error happened: our active list may hold a reserved job */
};

/* One reserved job while it is being worked on. */
struct task {
    struct buf payload; /* the bytes on the active list */
    struct job *job;
    struct result *result;
    char first_error[ERR_MSG_MAX]; /* empty while nothing failed */
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
        rq_key(w->stats_key, RQ_KEY_MAX, w->queue, "stats") < 0 ||
        rq_key(w->delayed_key, RQ_KEY_MAX, w->queue, "delayed") < 0 ||
        rq_key(w->recov_key, RQ_KEY_MAX, w->queue, "recov") < 0) {
        return err_set(e, "queue name too long");
    }
    return 0;
}

static void init_settings(struct worker *w)
{
    const struct cfg *c = w->cfg;
    w->limits = (struct job_limits){
        .max_bytes = (size_t)c->max_job_bytes,
        .max_depth = (int)c->max_json_depth,
        .max_functions = (size_t)c->max_functions,
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
    w->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    init_settings(w);
    if (id_worker(w->id, sizeof w->id) < 0 || make_keys(w, e) < 0) {
        err_set(e, "cannot make a worker id");
        goto fail;
    }
    w->rq = rq_create(cfg->redis_url, cfg->redis_timeout_ms, e);
    if (w->rq == NULL) {
        goto fail;
    }
    w->lease = lease_start(cfg, w->queue, w->id, stop, e);
    if (w->lease == NULL) {
        goto fail;
    }
    w->http = http_create(e);
    if (w->http == NULL) {
        goto fail;
    }
    run_init(&w->runner, cfg, w->http);
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
    lease_stop(w->lease);
    rq_destroy(w->rq);
    http_destroy(w->http);
    free(w);
}

const char *worker_id(const struct worker *w)
{
    return w->id;
}

/* ---------------------------------------------------------------- settling in Redis */

/* The dead-letter entry: {"job": payload, "job_id", "error", "attempts", "failed_at" (ms)}. */
static char *dead_envelope(const char *payload, size_t len, const char *job_id, const char *error)
{
    json_object *d = json_object_new_object();
    json_object_object_add(d, "job", json_object_new_string_len(payload, (int)len));
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

struct settlement {
    const char *job_id;  /* NULL: no result is stored */
    const char *result;  /* "" when job_id is NULL */
    const char *dead;    /* dead-letter envelope, or NULL */
    const char *counter; /* "succeeded", "failed" or "" */
};

/* Runs finish.lua, retrying through Redis outages. Returns 1 settled, 0 not ours, -1 gave up. */
static int settle(struct worker *w, const struct buf *payload, const struct settlement *s)
{
    char result_key[RQ_KEY_MAX] = "", suffix[JOB_ID_MAX + 16];
    snprintf(suffix, sizeof suffix, "result:%s", s->job_id != NULL ? s->job_id : "");
    rq_key(result_key, sizeof result_key, w->queue, suffix);
    char ttl[32], dead_max[32], dead_age[32];
    snprintf(ttl, sizeof ttl, "%ld", w->cfg->result_ttl_s);
    snprintf(dead_max, sizeof dead_max, "%ld", w->cfg->dead_max);
    snprintf(dead_age, sizeof dead_age, "%ld", w->cfg->dead_max_age_s * 1000);
    const char *keys[] = {w->active_key, result_key, w->dead_key, w->stats_key, w->recov_key};
    const char *args[] = {payload->data, s->result,  ttl,     s->dead != NULL ? s->dead : "",
                          dead_max,      s->counter, dead_age};
    size_t lens[7] = {payload->len};
    for (int i = 1; i < 7; i++) {
        lens[i] = strlen(args[i]);
    }
    long backoff = BACKOFF_MIN_MS;
    for (int attempt = 0; attempt < FINISH_ATTEMPTS; attempt++) {
        struct err e = {{0}};
        redisReply *r = rq_script(w->rq, RQ_SCRIPT_FINISH, 5, keys, 7, args, lens, &e);
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
    w->check_active = true; /* still on the active list: settle it later */
    return -1;
}

static void bury_unparseable(struct worker *w, const struct buf *payload, const char *why)
{
    char *dead = dead_envelope(payload->data, payload->len, NULL, why);
    char q[ERR_MSG_MAX + 16];
    LOG_ERROR("job_unparseable", "bytes=%zu error=%s", payload->len, log_quote(why, q, sizeof q));
    if (dead != NULL) {
        const struct settlement s = {NULL, "", dead, "failed"};
        settle(w, payload, &s);
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

/* Counts this run of the job (begin.lua). Returns the run number (1 for the first), or -1. */
static long begin_run(struct worker *w, const struct job *j, struct err *e)
{
    char key[RQ_KEY_MAX], suffix[JOB_ID_MAX + 8], ttl[32];
    snprintf(suffix, sizeof suffix, "job:%s", j->id);
    rq_key(key, sizeof key, w->queue, suffix);
    snprintf(ttl, sizeof ttl, "%ld", w->cfg->result_ttl_s);
    const char *keys[] = {key, w->stats_key};
    const char *args[] = {ttl};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_BEGIN, 2, keys, 1, args, NULL, e);
    if (r == NULL) {
        return -1;
    }
    long runs = r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? (long)r->element[1]->integer : 1;
    freeReplyObject(r);
    return runs;
}

/* Claims the job's one postback (HSETNX on pixq:{Q}:job:<id>). True if this run should send it;
 * when Redis cannot answer, sends it (at least once beats never). */
static bool claim_postback(struct worker *w, const struct job *j)
{
    char key[RQ_KEY_MAX], suffix[JOB_ID_MAX + 8];
    snprintf(suffix, sizeof suffix, "job:%s", j->id);
    rq_key(key, sizeof key, w->queue, suffix);
    struct err e = {{0}};
    redisReply *r = rq_command(w->rq, &e, "HSETNX %s posted %ld", key, wall_ms());
    bool claim = r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer == 1;
    freeReplyObject(r);
    return claim;
}

/* Whether the payload is still on this worker's active list. After a lease loss it may not be
 * (it went back to the queue and another worker runs it), or it may (the worker was reaped while
 * idle, then reserved this job). When Redis cannot answer, assume it is. */
static bool still_reserved(struct worker *w, const struct task *t)
{
    const char *argv[] = {"LPOS", w->active_key, t->payload.data};
    size_t lens[] = {4, strlen(w->active_key), t->payload.len};
    struct err e = {{0}};
    redisReply *r = rq_commandv(w->rq, 0, 3, argv, lens, &e);
    bool held = r == NULL || r->type == REDIS_REPLY_INTEGER;
    freeReplyObject(r);
    return held;
}

/* ---------------------------------------------------------------- one job */

static void complete(struct worker *w, struct task *t, long t0)
{
    const char *json = result_json(t->result);
    bool failed = t->first_error[0] != '\0';
    if (lease_take_lost(w->lease) && !still_reserved(w, t)) {
        LOG_WARN("lease_lost", "job_id=%s step=before_postback", t->job->id);
    } else if (claim_postback(w, t->job)) {
        run_postback(&w->runner, t->job, json);
    } else {
        LOG_INFO("postback_skipped", "job_id=%s reason=already_sent", t->job->id);
    }
    char *dead =
        failed ? dead_envelope(t->payload.data, t->payload.len, t->job->id, t->first_error) : NULL;
    const struct settlement s = {t->job->id, json, dead, failed ? "failed" : "succeeded"};
    int settled = settle(w, &t->payload, &s);
    free(dead);
    char q[ERR_MSG_MAX + 16];
    if (settled == 0) {
        LOG_WARN("lease_lost", "job_id=%s step=finish", t->job->id);
    } else if (failed) {
        LOG_WARN("job_failed", "job_id=%s ms=%ld errors=%zu error=%s", t->job->id, now_ms() - t0,
                 result_error_count(t->result), log_quote(t->first_error, q, sizeof q));
    } else {
        LOG_INFO("job_done", "job_id=%s ms=%ld", t->job->id, now_ms() - t0);
    }
}

/* Parses the payload into t->job; NULL payloads are buried. Returns 0 to go on. */
static int parse(struct worker *w, struct task *t, const char *text, size_t len)
{
    struct err e = {{0}};
    t->job = job_parse(text, len, &w->limits, &e);
    if (t->job == NULL) {
        bury_unparseable(w, &t->payload, e.msg);
        return -1;
    }
    if (t->job->id[0] == '\0' && adopt(w, t, &e) < 0) {
        char q[ERR_MSG_MAX + 16];
        LOG_WARN("adopt_failed", "error=%s", log_quote(e.msg, q, sizeof q));
        w->check_active = rq_disconnected(w->rq); /* then it may still be on our list */
        return -1;
    }
    t->result = result_create(t->job->id);
    return t->result != NULL ? 0 : -1;
}

/* A poison pill (reap.lua): {"pixq_poison": payload, "error": why}. Post the failure back and
 * bury the job without running it again. */
static void handle_poison(struct worker *w, struct task *t, json_object *env)
{
    long t0 = now_ms();
    json_object *inner = NULL, *why = NULL;
    json_object_object_get_ex(env, "pixq_poison", &inner);
    json_object_object_get_ex(env, "error", &why);
    const char *text = json_object_get_string(inner);
    if (parse(w, t, text, strlen(text)) < 0) {
        return;
    }
    LOG_ERROR("job_poisoned", "job_id=%s", t->job->id);
    run_fail(t->job, t->result, t->first_error, why != NULL ? json_object_get_string(why) : "");
    complete(w, t, t0);
}

/* Pixq's own entries on the queue (wake-up tokens, poison pills); true if it was one. */
static bool handle_internal(struct worker *w, struct task *t)
{
    if (t->payload.len == 0 || t->payload.data[0] != '{' ||
        strncmp(t->payload.data, "{\"pixq_", 7) != 0) {
        return false;
    }
    if (strcmp(t->payload.data, RQ_WAKE_TOKEN) == 0) {
        const struct settlement s = {NULL, "", NULL, ""};
        settle(w, &t->payload, &s);
        w->next_promote_at = 0; /* a delayed job became the earliest: look now */
        return true;
    }
    json_object *env = json_tokener_parse(t->payload.data);
    json_object *inner = NULL;
    bool poison = env != NULL && json_object_object_get_ex(env, "pixq_poison", &inner) &&
                  json_object_is_type(inner, json_type_string);
    if (poison) {
        handle_poison(w, t, env);
    }
    json_object_put(env);
    return poison;
}

/* ---------------------------------------------------------------- batches and retries */

struct split {
    char **jobs;
    size_t *lens;
    size_t n, cap;
};

static int collect_job(void *user, const char *job, size_t len)
{
    struct split *sp = user;
    if (sp->n == sp->cap) {
        size_t cap = sp->cap == 0 ? 16 : sp->cap * 2;
        char **jobs = realloc(sp->jobs, cap * sizeof *jobs);
        size_t *lens = jobs != NULL ? realloc(sp->lens, cap * sizeof *lens) : NULL;
        if (jobs != NULL) {
            sp->jobs = jobs;
        }
        if (lens == NULL) {
            return -1;
        }
        sp->lens = lens;
        sp->cap = cap;
    }
    sp->jobs[sp->n] = strndup(job, len);
    sp->lens[sp->n] = len;
    return sp->jobs[sp->n++] != NULL ? 0 : -1;
}

/* Replaces the reserved batch with its jobs on the queue (split.lua). */
static void queue_split(struct worker *w, struct task *t, struct split *sp)
{
    const char **args = calloc(sp->n + 1, sizeof *args);
    size_t *lens = calloc(sp->n + 1, sizeof *lens);
    struct err e = {{0}};
    redisReply *r = NULL;
    if (args != NULL && lens != NULL) {
        args[0] = t->payload.data;
        lens[0] = t->payload.len;
        for (size_t i = 0; i < sp->n; i++) {
            args[i + 1] = sp->jobs[i];
            lens[i + 1] = sp->lens[i];
        }
        const char *keys[] = {w->active_key, w->jobs_key, w->stats_key};
        r = rq_script(w->rq, RQ_SCRIPT_SPLIT, 3, keys, (int)sp->n + 1, args, lens, &e);
    }
    char q[ERR_MSG_MAX + 16];
    if (r == NULL) {
        LOG_WARN("batch_split_failed", "error=%s", log_quote(e.msg, q, sizeof q));
    } else {
        LOG_INFO("batch_split", "jobs=%zu", sp->n);
    }
    freeReplyObject(r);
    free(args);
    free(lens);
}

/* A payload that is a JSON array is several jobs: queue them one by one. True if it was one. */
static bool handle_batch(struct worker *w, struct task *t)
{
    if (!job_is_batch(t->payload.data, t->payload.len)) {
        return false;
    }
    struct split sp = {0};
    struct err e = {{0}};
    if (job_split_batch(t->payload.data, t->payload.len, &w->limits, collect_job, &sp, &e) < 0) {
        bury_unparseable(w, &t->payload, e.msg);
    } else {
        queue_split(w, t, &sp);
    }
    for (size_t i = 0; i < sp.n; i++) {
        free(sp.jobs[i]);
    }
    free(sp.jobs);
    free(sp.lens);
    return true;
}

/* The run number kept in the payload by requeue (1 for the first run). */
static long job_attempt(const struct job *j)
{
    json_object *v = NULL;
    json_object_object_get_ex(j->root, "pixq_attempt", &v);
    long a = v != NULL ? (long)json_object_get_int64(v) : 1;
    return a < 1 ? 1 : a;
}

/* How long to wait before running the job again, or -1 not to. Blitline's wait_retry_delay
 * (seconds; at most 5 runs; outside 0..100 it is 5) covers any source failure; otherwise only
 * transient ones are retried, PIXQ_MAX_ATTEMPTS times with full-jitter exponential back-off. */
static long retry_delay_ms(struct worker *w, const struct job *j, enum run_status st)
{
    long attempt = job_attempt(j);
    json_object *wrd = NULL;
    if (json_object_object_get_ex(j->root, "wait_retry_delay", &wrd) && wrd != NULL) {
        long secs = 5;
        struct err e;
        if (job_param_long(j->root, "job", "wait_retry_delay", 5, 0, 100, &secs, &e) < 0) {
            secs = 5;
        }
        return attempt < 5 ? secs * 1000 : -1;
    }
    if (st != RUN_SOURCE_TRANSIENT || attempt >= w->cfg->max_attempts) {
        return -1;
    }
    long cap = w->cfg->retry_base_ms;
    for (long i = 1; i < attempt && cap < w->cfg->retry_max_ms; i++) {
        cap *= 2;
    }
    cap = cap > w->cfg->retry_max_ms ? w->cfg->retry_max_ms : cap;
    return (long)(rand_r(&w->seed) % (unsigned)(cap + 1));
}

/* Schedules the job to run again in `delay` ms, with its attempt count raised (requeue.lua).
 * No postback is sent for this attempt. */
static void retry_later(struct worker *w, struct task *t, long delay)
{
    long attempt = job_attempt(t->job);
    json_object_object_add(t->job->root, "pixq_attempt", json_object_new_int64(attempt + 1));
    const char *next = json_object_to_json_string_ext(
        t->job->root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char ms[32];
    snprintf(ms, sizeof ms, "%ld", delay);
    const char *keys[] = {w->active_key, w->delayed_key, w->stats_key};
    const char *args[] = {t->payload.data, next, ms, "retried"};
    size_t lens[] = {t->payload.len, strlen(next), strlen(ms), 7};
    struct err e = {{0}};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_REQUEUE, 3, keys, 4, args, lens, &e);
    char q[ERR_MSG_MAX + 16];
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        long wake = now_ms() + (long)r->integer;
        w->next_promote_at = wake < w->next_promote_at ? wake : w->next_promote_at;
        LOG_INFO("job_retry", "job_id=%s attempt=%ld delay_ms=%ld error=%s", t->job->id,
                 attempt + 1, delay, log_quote(t->first_error, q, sizeof q));
    } else {
        LOG_WARN("job_retry_failed", "job_id=%s error=%s", t->job->id,
                 log_quote(r == NULL ? e.msg : "lease lost", q, sizeof q));
    }
    freeReplyObject(r);
}

static void handle(struct worker *w, struct task *t)
{
    long t0 = now_ms();
    if (handle_internal(w, t) || handle_batch(w, t) ||
        parse(w, t, t->payload.data, t->payload.len) < 0) {
        return;
    }
    struct err e = {{0}};
    long run = begin_run(w, t->job, &e);
    LOG_INFO("job_start", "job_id=%s queue=%s run=%ld", t->job->id, w->queue, run);
    enum run_status st = run_job(&w->runner, t->job, t->result, t->first_error);
    long delay = st != RUN_DONE ? retry_delay_ms(w, t->job, st) : -1;
    if (delay >= 0) {
        retry_later(w, t, delay);
        return;
    }
    complete(w, t, t0);
}

/* ---------------------------------------------------------------- the loop */

/* Moves due delayed work onto the queue when it is time, and plans the next look. */
static void promote(struct worker *w)
{
    long now = now_ms();
    if (now < w->next_promote_at) {
        return;
    }
    char batch[32];
    snprintf(batch, sizeof batch, "%ld", w->cfg->promote_batch);
    const char *keys[] = {w->delayed_key, w->jobs_key, w->stats_key};
    const char *args[] = {batch};
    struct err e = {{0}};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_PROMOTE, 3, keys, 1, args, NULL, &e);
    long wait = w->cfg->reserve_timeout_ms;
    w->due_soon = false;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        long next = (long)r->element[1]->integer;
        w->due_soon = next >= 0 && next < wait;
        wait = w->due_soon ? next : wait;
        if (r->element[0]->integer > 0) {
            LOG_DEBUG("promoted", "count=%lld next_ms=%ld", r->element[0]->integer, next);
        }
    }
    freeReplyObject(r);
    w->next_promote_at = now + wait;
}

/* The oldest payload on this worker's own active list: after a Redis error it may hold a job
 * that a BLMOVE reserved although its answer was lost, or one that could not be settled. It is
 * ours (the lease holds): run it rather than leave it stranded. Returns 1 with it, 0 if the list
 * is empty (no need to look again until the next error), -1 on error. */
static int take_stranded(struct worker *w, struct buf *payload, struct err *e)
{
    redisReply *r = rq_command(w->rq, e, "LINDEX %s -1", w->active_key);
    if (r == NULL) {
        return -1;
    }
    int got = 0;
    if (r->type == REDIS_REPLY_STRING) {
        got = buf_append(payload, r->str, r->len) == 0 ? 1 : -1;
        LOG_WARN("job_stranded", "worker=%s bytes=%zu", w->id, (size_t)r->len);
    }
    freeReplyObject(r);
    w->check_active = got != 0;
    return got < 0 ? err_set(e, "out of memory") : got;
}

/* BLMOVE one job into the active list, blocking at most until the next promotion is due.
 * Returns 1 with the payload, 0 on timeout, -1 on error. */
static int reserve(struct worker *w, struct buf *payload, struct err *e)
{
    if (w->check_active) {
        int got = take_stranded(w, payload, e);
        if (got != 0) {
            return got;
        }
    }
    long block = w->next_promote_at - now_ms();
    if (w->due_soon) {
        /* Redis may end the wait up to a tick late: stop a tick early, sleep the rest here */
        block -= REDIS_TICK_MS;
        if (block < MIN_BLOCK_MS) {
            nap(w, w->next_promote_at - now_ms());
            return 0;
        }
    }
    block = block < MIN_BLOCK_MS ? MIN_BLOCK_MS : block;
    block = block > w->cfg->reserve_timeout_ms ? w->cfg->reserve_timeout_ms : block;
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%.3f", (double)block / 1000.0);
    const char *argv[] = {"BLMOVE", w->jobs_key, w->active_key, "RIGHT", "LEFT", timeout};
    redisReply *r = rq_commandv(w->rq, block, 6, argv, NULL, e);
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
        promote(w);
        int got = reserve(w, &t.payload, &e);
        if (got < 0) {
            w->check_active = true;
            char q[ERR_MSG_MAX + 16];
            LOG_WARN("redis_error", "step=reserve error=%s retry_ms=%ld",
                     log_quote(e.msg, q, sizeof q), backoff);
            nap(w, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        } else {
            backoff = BACKOFF_MIN_MS;
        }
        if (got == 1) {
            lease_take_lost(w->lease); /* a loss before this job concerns none of ours */
            handle(w, &t);
        }
        result_destroy(t.result);
        job_destroy(t.job);
        buf_finish(&t.payload);
    }
    LOG_INFO("worker_stop", "worker=%s", w->id);
    return 0;
}
