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
#include "result.h"
#include "rq.h"
#include "run.h"

#define BACKOFF_MIN_MS  100  /* first wait after a Redis failure */
#define BACKOFF_MAX_MS  5000 /* longest wait between Redis retries */
#define FINISH_ATTEMPTS 50   /* tries to settle a job before leaving it to recovery */

struct worker {
    const struct cfg *cfg;
    volatile sig_atomic_t *stop;
    struct rq *rq;
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
        rq_key(w->stats_key, RQ_KEY_MAX, w->queue, "stats") < 0) {
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
    run_postback(&w->runner, t->job, json);
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
    run_job(&w->runner, t->job, t->result, t->first_error);
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
