#include "lease.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "rq.h"

#define TICK_MS          50   /* the thread's longest sleep between checks */
#define REAP_BATCH       16   /* expired workers a call lists (calls repeat while full) */
#define ERROR_BACKOFF_MS 1000 /* wait after a Redis error before the next try */

/* One queue's keys. */
struct lease_queue {
    char name[CFG_STR_MAX];
    char workers_key[RQ_KEY_MAX];
    char jobs_key[RQ_KEY_MAX];
    char recov_key[RQ_KEY_MAX];
    char stats_key[RQ_KEY_MAX];
    char reaped_key[RQ_KEY_MAX];
    char dead_key[RQ_KEY_MAX];
    char parked_key[RQ_KEY_MAX];
    char parked_cursor[32];       /* where check_parked() goes on (HSCAN) */
    char blob_prefix[RQ_KEY_MAX]; /* "pixq:{Q}:blob:": the blob keys among its fields */
    size_t blob_len;
    _Atomic unsigned long long uploaded_bytes; /* counted by the worker, not yet in stats */
    long renewed_ms; /* clock_boot_ms when the last heartbeat that held the lease was sent */
};

#define STOP_GRACE_MARGIN_MS 1000 /* of PIXQ_STOP_GRACE_MS kept to give a job back and exit */
#define PARKED_CHECK_COUNT   100  /* parked outputs looked at a reap pass (HSCAN's COUNT) */
#define PARKED_CHECK_MAX     400  /* most passed to parked_forget.lua (COUNT is a hint) */
#define DEAD_TRIM_BATCH      100  /* dead letters past PIXQ_DEAD_MAX_AGE_S dropped a pass */

struct lease {
    const struct cfg *cfg;
    volatile sig_atomic_t *stop;
    struct rq *rq; /* the thread's own connection */
    pthread_t thread;
    atomic_bool quit;
    atomic_long fresh_until;   /* clock_boot_ms: until then the lease surely holds in every queue */
    atomic_ulong records_lost; /* lease_records_lost() */
    atomic_bool redis_full;    /* lease_redis_full() */
    clockid_t worker_cpu;     /* the CPU time of the thread that runs jobs (lease_start's caller) */
    atomic_long job_cpu_ms;   /* its CPU time when the job in hand began; -1: no job */
    atomic_ulong job_gen;     /* jobs begun so far: which job a look at job_cpu_ms concerns */
    atomic_size_t job_queue;  /* the queue it came from */
    atomic_bool delivering;   /* its outcome is being posted back and settled */
    pthread_mutex_t job_lock; /* guards job_id */
    char job_id[128];         /* the id of the job in hand, for job_hung; "" unknown */
    char wid[300];
    unsigned seed; /* for the reap passes' jitter, from the (random) worker id */
    size_t n;
    struct lease_queue q[LEASE_QUEUES_MAX];
};

/* rq_script() of `script` in queue `q`: a Redis error (NULL, its message in `e`) is logged as
 * redis_error step=`step`. */
static redisReply *queue_script(struct lease *l, const struct lease_queue *q, const char *step,
                                enum rq_script script, int nkeys, const char **keys, int nargs,
                                const char **args, struct err *e)
{
    redisReply *r = rq_script(l->rq, script, nkeys, keys, nargs, args, NULL, e);
    if (r == NULL) {
        char quoted[ERR_MSG_MAX + 16];
        LOG_WARN("redis_error", "step=%s queue=%s error=%s", step, q->name,
                 log_quote(e->msg, quoted, sizeof quoted));
    }
    return r;
}

/* Runs heartbeat.lua in queue `q`; returns 1 held, 0 lost, -1 on a Redis error (its message in
 * `e`, which may be NULL). A lease held notes whether Redis said it is full. */
static int beat(struct lease *l, const struct lease_queue *q, const char *mode, struct err *e)
{
    char lease_ms[32];
    snprintf(lease_ms, sizeof lease_ms, "%ld", l->cfg->lease_ms);
    const char *keys[] = {q->workers_key};
    const char *args[] = {l->wid, lease_ms, mode};
    struct err why = {{0}};
    redisReply *r = queue_script(l, q, "heartbeat", RQ_SCRIPT_HEARTBEAT, 1, keys, 3, args, &why);
    if (r == NULL) {
        return e != NULL ? err_set(e, "%s", why.msg) : -1;
    }
    int held = r->type == REDIS_REPLY_INTEGER && (r->integer == 1 || r->integer == 2);
    if (held) {
        atomic_store(&l->redis_full, r->integer == 2);
    }
    freeReplyObject(r);
    return held;
}

#define REAP_FAILED (-2) /* reap_one: Redis did not run reap.lua */

/* Runs reap.lua for one worker in queue `q`; returns the jobs given back, -1 when the script
 * left the worker alone (its lease renewed, its note not due), or REAP_FAILED. */
static long reap_one(struct lease *l, const struct lease_queue *q, const char *wid,
                     const char *mode)
{
    char active[RQ_KEY_MAX], suffix[RQ_KEY_MAX], max[32], hold[32], dead_max[32];
    snprintf(suffix, sizeof suffix, "active:%.300s", wid);
    rq_key(active, sizeof active, q->name, suffix);
    snprintf(max, sizeof max, "%ld", l->cfg->max_recoveries);
    /* a reservation the worker sent before it was reaped (or stopped) may still reach Redis
     * and move a job onto its list afterwards: for as long as it waits, and as its worker
     * waits for an answer (a call held up on the way), and a second */
    snprintf(hold, sizeof hold, "%ld",
             l->cfg->reserve_timeout_ms + l->cfg->redis_timeout_ms + 1000);
    const char *keys[] = {q->workers_key, active,        q->jobs_key, q->recov_key,
                          q->stats_key,   q->reaped_key, q->dead_key};
    snprintf(dead_max, sizeof dead_max, "%ld", l->cfg->dead_max);
    const char *args[] = {wid, mode, max, hold, dead_max};
    struct err e = {{0}};
    redisReply *r = rq_script(l->rq, RQ_SCRIPT_REAP, 7, keys, 5, args, NULL, &e);
    if (r == NULL) {
        char quoted[ERR_MSG_MAX + 16];
        LOG_WARN("redis_error", "step=reap queue=%s worker=%s error=%s", q->name, wid,
                 log_quote(e.msg, quoted, sizeof quoted));
        return REAP_FAILED;
    }
    long n = r->type == REDIS_REPLY_INTEGER ? (long)r->integer : REAP_FAILED;
    freeReplyObject(r);
    return n;
}

/* Gives back what this worker holds in every queue (graceful): the total, or -1 on an error. */
static long give_back_all(struct lease *l)
{
    long total = 0;
    for (size_t i = 0; i < l->n; i++) {
        long n = reap_one(l, &l->q[i], l->wid, "graceful");
        total = n < 0 || total < 0 ? -1 : total + n; /* graceful mode never leaves one alone */
    }
    return total;
}

/* The i-th list of expired.lua's answer `r`, or NULL. */
static const redisReply *ids_of(const redisReply *r, size_t i)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[i]->type != REDIS_REPLY_ARRAY) {
        return NULL;
    }
    return r->element[i];
}

/* Finds the workers of queue `q` whose lease ran out and gives their jobs back; then takes the
 * second look at reaped workers that is due (reap.lua, orphan mode). REAP_BATCH of each at a
 * time, and batch after batch while they come full and every reap worked, until `until`
 * (clock_boot_ms): a node pool lost at once (hundreds of workers) is reaped in one pass, not
 * REAP_BATCH an interval. Returns 0, or -1 on a Redis error (a Redis that answers reads but
 * refuses writes lists the same workers again: no second batch then, and the error's back-off).
 */
static int reap_expired(struct lease *l, const struct lease_queue *q, long until)
{
    char batch[16], lease_ms[32];
    snprintf(batch, sizeof batch, "%d", REAP_BATCH);
    snprintf(lease_ms, sizeof lease_ms, "%ld", l->cfg->lease_ms);
    const char *keys[] = {q->workers_key, q->reaped_key};
    const char *args[] = {batch, lease_ms};
    bool full = true, failed = false;
    while (full && !failed) {
        struct err e = {{0}};
        redisReply *r = queue_script(l, q, "expired", RQ_SCRIPT_EXPIRED, 2, keys, 2, args, &e);
        if (r == NULL) {
            return -1;
        }
        const redisReply *expired = ids_of(r, 0), *due = ids_of(r, 1);
        for (size_t i = 0; expired != NULL && i < expired->elements; i++) {
            const char *wid = expired->element[i]->str;
            if (strcmp(wid, l->wid) == 0) {
                /* our own lease ran out (heartbeats refused: OOM, READONLY...) but we are alive
                 * and hold our job: the next heartbeat renews it; the fleet may still reap us */
                continue;
            }
            long n = reap_one(l, q, wid, "crash");
            failed = failed || n == REAP_FAILED;
            if (n >= 0) {
                LOG_WARN("worker_reaped", "worker=%s queue=%s jobs_returned=%ld by=%s", wid,
                         q->name, n, l->wid);
            }
        }
        for (size_t i = 0; due != NULL && i < due->elements; i++) {
            const char *wid = due->element[i]->str;
            long n = reap_one(l, q, wid, "orphan");
            failed = failed || n == REAP_FAILED;
            if (n > 0) { /* jobs a reaped worker took after its reap, and never ran */
                LOG_WARN("orphans_returned", "worker=%s queue=%s jobs_returned=%ld by=%s", wid,
                         q->name, n, l->wid);
            }
        }
        full = ((expired != NULL && expired->elements >= REAP_BATCH) ||
                (due != NULL && due->elements >= REAP_BATCH)) &&
               clock_boot_ms() < until && !atomic_load(&l->quit) && !*l->stop;
        freeReplyObject(r);
    }
    return failed ? -1 : 0;
}

/* Reaps expired workers in every queue. Returns 0, or -1 if any queue failed. */
static int reap_all(struct lease *l)
{
    int rc = 0;
    /* one limit for all queues: a pass never holds up the next heartbeat */
    long until = clock_boot_ms() + l->cfg->heartbeat_ms / 2;
    for (size_t i = 0; i < l->n; i++) {
        rc = reap_expired(l, &l->q[i], until) < 0 ? -1 : rc;
    }
    return rc;
}

/* Counts out the parked outputs of `q` whose blob went without upload_done.lua (it expired unsent,
 * or a worker of an older build uploaded it): PARKED_CHECK_COUNT of
 * them a pass, from where the last pass left off (HSCAN), through parked_forget.lua, which looks
 * at each blob again. Else their bytes would keep the queue past PIXQ_MAX_PARKED_MB for good. */
static void check_parked(struct lease *l, struct lease_queue *q)
{
    struct err e = {{0}};
    redisReply *r = rq_command(l->rq, &e, "HSCAN %s %s COUNT %d", q->parked_key, q->parked_cursor,
                               PARKED_CHECK_COUNT);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return;
    }
    snprintf(q->parked_cursor, sizeof q->parked_cursor, "%s", r->element[0]->str);
    /* a small hash comes whole, whatever COUNT says: in calls of PARKED_CHECK_MAX blobs */
    const redisReply *fields = r->element[1];
    const char *keys[PARKED_CHECK_MAX + 1] = {q->parked_key};
    long long forgotten = 0;
    for (size_t i = 0; i < fields->elements;) {
        int n = 1;
        for (; i < fields->elements && n <= PARKED_CHECK_MAX; i += 2) {
            const redisReply *f = fields->element[i];
            if (f->type == REDIS_REPLY_STRING &&
                strncmp(f->str, q->blob_prefix, q->blob_len) == 0) {
                keys[n++] = f->str;
            }
        }
        redisReply *g =
            n > 1 ? rq_script(l->rq, RQ_SCRIPT_PARKED_FORGET, n, keys, 0, NULL, NULL, &e) : NULL;
        forgotten += g != NULL && g->type == REDIS_REPLY_INTEGER ? g->integer : 0;
        freeReplyObject(g);
    }
    if (forgotten > 0) {
        LOG_INFO("parked_forgotten", "queue=%s outputs=%lld", q->name, forgotten);
    }
    freeReplyObject(r);
}

/* Drops from the old end of `q`'s dead list the entries past PIXQ_DEAD_MAX_AGE_S, at most
 * DEAD_TRIM_BATCH a pass (dead_trim.lua: the tail alone is looked at, a call a pass, not a job).
 * finish.lua trims by age only as a job dies: in a queue where none died, entries stayed for
 * good. */
static void trim_dead(struct lease *l, const struct lease_queue *q)
{
    char age_ms[32], batch[16];
    snprintf(age_ms, sizeof age_ms, "%ld", l->cfg->dead_max_age_s * 1000);
    snprintf(batch, sizeof batch, "%d", DEAD_TRIM_BATCH);
    const char *keys[] = {q->dead_key};
    const char *args[] = {age_ms, batch};
    struct err e = {{0}};
    redisReply *r = queue_script(l, q, "dead_trim", RQ_SCRIPT_DEAD_TRIM, 1, keys, 2, args, &e);
    if (r == NULL) {
        return;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        LOG_INFO("dead_trimmed", "queue=%s entries=%lld max_age_s=%ld", q->name, r->integer,
                 l->cfg->dead_max_age_s);
    }
    freeReplyObject(r);
}

/* Adds the bytes the worker counted since the last time to each queue's stats (uploaded_bytes).
 * What Redis did not take is kept for the next time, unless the stats hold another type. Returns
 * 0, or -1 on a Redis error. Not while Redis is full (lease_redis_full), which refuses HINCRBY:
 * kept, and no error (a failed flush beat every second, each a redis_error line, while Redis was
 * full: the worker says redis_full once). */
static int flush_counts(struct lease *l)
{
    if (atomic_load(&l->redis_full)) {
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < l->n; i++) {
        struct lease_queue *q = &l->q[i];
        unsigned long long n = atomic_exchange(&q->uploaded_bytes, 0);
        if (n == 0) {
            continue;
        }
        struct err e = {{0}};
        redisReply *r = rq_command(l->rq, &e, "HINCRBY %s uploaded_bytes %llu", q->stats_key, n);
        if (r == NULL && strncmp(e.msg, "redis: WRONGTYPE", 16) == 0) {
            /* the queue's counts hold another type (set by hand): left alone, as finish.lua
             * leaves them, the bytes with them; kept, they were tried again at every heartbeat,
             * each a redis_error line, the heartbeats at the error's back-off */
            continue;
        }
        if (r == NULL) { /* no answer, or an error answer (its message in e) */
            atomic_fetch_add(&q->uploaded_bytes, n);
            char quoted[ERR_MSG_MAX + 16];
            LOG_WARN("redis_error", "step=stats queue=%s error=%s", q->name,
                     log_quote(e.msg, quoted, sizeof quoted));
            rc = -1;
        }
        freeReplyObject(r);
    }
    return rc;
}

/* CPU time of the thread that runs jobs, ms; -1 if it cannot be read. */
static long worker_cpu_ms(const struct lease *l)
{
    struct timespec ts;
    if (clock_gettime(l->worker_cpu, &ts) != 0) {
        return -1;
    }
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies the id of the job in hand (lease_job_id(): "" unknown) into `out`, taken from the
 * worker's thread under job_lock. */
static void job_in_hand(struct lease *l, char out[sizeof l->job_id])
{
    pthread_mutex_lock(&l->job_lock);
    memcpy(out, l->job_id, sizeof l->job_id);
    pthread_mutex_unlock(&l->job_lock);
}

/* The job in hand used more than PIXQ_JOB_HANG_S of CPU: the main thread is stuck where no
 * deadline reaches (a library parsing a crafted file, say) and cannot be interrupted.
 * Waiting for the network, Redis or a slot costs no CPU, so no legitimate wait counts. Give the
 * job back counted as a crash (after PIXQ_MAX_RECOVERIES of them it is a poison pill: posted back
 * as a failure, not run again) and exit, for the supervisor (--processes, systemd) to restart
 * us. */
static void give_up_hung_job(struct lease *l, long cpu_ms)
{
    size_t i = atomic_load(&l->job_queue);
    const struct lease_queue *q = &l->q[i < l->n ? i : 0];
    long n = reap_one(l, q, l->wid, "hung");
    flush_counts(l);
    char job_id[sizeof l->job_id];
    job_in_hand(l, job_id);
    LOG_ERROR("job_hung",
              "job_id=%s worker=%s queue=%s cpu_ms=%ld limit_s=%ld jobs_returned=%ld "
              "action=exit",
              job_id, l->wid, q->name, cpu_ms, l->cfg->job_hang_s, n);
    fflush(stderr);
    _exit(LEASE_EXIT_HUNG);
}

/* Past the shutdown deadline: give the running job back to the head of the queue and exit, so
 * that it is run once, by someone else, rather than cut off half way by a SIGKILL. */
static void give_back_and_exit(struct lease *l)
{
    long n = give_back_all(l); /* first: the job matters more than the count */
    flush_counts(l);
    char job_id[sizeof l->job_id];
    job_in_hand(l, job_id);
    LOG_WARN("shutdown_deadline", "job_id=%s worker=%s jobs_returned=%ld timeout_ms=%ld", job_id,
             l->wid, n, l->cfg->shutdown_timeout_ms);
    fflush(stderr);
    _exit(n >= 0 ? 0 : 1);
}

/* The lease was renewed in every queue by calls sent at `sent` (clock_boot_ms) or later: it holds
 * until sent + lease. The worker takes new jobs, and waits for them, until a heartbeat before
 * that, so that a lease two heartbeats overdue stops it taking any (lease_fresh_ms). */
static void renewed(struct lease *l, long sent)
{
    atomic_store(&l->fresh_until, sent + l->cfg->lease_ms - l->cfg->heartbeat_ms);
    metrics_lease_held(sent);
}

/* One heartbeat's answer (beat()'s) counted. */
static int counted(int held)
{
    metrics_count_lease(held > 0    ? METRICS_LEASE_RENEWED
                        : held == 0 ? METRICS_LEASE_LOST
                                    : METRICS_LEASE_FAILED);
    return held;
}

/* One heartbeat in every queue: renew, and where the lease was taken, note it and register
 * again; then, if Redis answered, the counts. */
static long renew(struct lease *l, long now)
{
    long sent = clock_boot_ms();
    bool failed = false;
    for (size_t i = 0; i < l->n; i++) {
        struct lease_queue *q = &l->q[i];
        long beat_sent = clock_boot_ms();
        int held = counted(beat(l, q, "beat", NULL));
        if (held == 0) {
            /* Redis ran the beat by now: if that is less than a lease after the last renewal
             * was sent, the lease had not run out there, so no reap took the record (reap.lua
             * leaves a lease that holds alone): Redis lost it (a restart without its data, a
             * failover, a flush), and no job of ours went back to the queue. */
            long since = clock_boot_ms() - q->renewed_ms;
            /* either way the worker reads its data tokens again: a record found gone late may
             * have gone with a flush all the same (the worker paused meanwhile), and a token
             * read again after a mere reap is the same one */
            atomic_fetch_add(&l->records_lost, 1);
            if (since < l->cfg->lease_ms) {
                LOG_WARN("worker_reregistered",
                         "worker=%s queue=%s reason=record_lost since_renewal_ms=%ld lease_ms=%ld",
                         l->wid, q->name, since, l->cfg->lease_ms);
            } else {
                LOG_WARN("lease_lost", "worker=%s queue=%s", l->wid, q->name);
            }
            beat_sent = clock_boot_ms();
            held = counted(beat(l, q, "rejoin", NULL)); /* alive all along: a lapse is an outage */
        }
        if (held == 1) {
            q->renewed_ms = beat_sent;
        }
        failed = failed || held < 0;
    }
    if (!failed) {
        renewed(l, sent);
    }
    failed = failed || flush_counts(l) < 0;
    return failed ? now + ERROR_BACKOFF_MS : now + l->cfg->heartbeat_ms;
}

static void *run_thread(void *arg)
{
    struct lease *l = arg;
    long now = clock_mono_ms();
    long next_beat = now + l->cfg->heartbeat_ms;
    long next_reap = now; /* reap once at start-up: workers that died while others held leases */
    long deadline = 0;
    bool extended = false;
    while (!atomic_load(&l->quit)) {
        now = clock_mono_ms();
        if (*l->stop && deadline == 0) {
            deadline = now + l->cfg->shutdown_timeout_ms;
            /* said at once: the job may take until the deadline, and the loop says nothing
             * before worker_stop */
            LOG_INFO("worker_stopping", "worker=%s signal=%d job=%s shutdown_timeout_ms=%ld",
                     l->wid, (int)*l->stop, atomic_load(&l->job_cpu_ms) >= 0 ? "running" : "none",
                     l->cfg->shutdown_timeout_ms);
        }
        if (deadline != 0 && now >= deadline) {
            /* a job whose postback is on its way is let finish that (given back, it would be
             * run and posted back again), within PIXQ_STOP_GRACE_MS less a second: the
             * supervisor (and the unit, and Kubernetes) kill us at the grace's end, and a job
             * killed there is neither settled nor given back */
            long grace = l->cfg->postback_timeout_ms + l->cfg->connect_timeout_ms +
                         l->cfg->wait_for_s3_max_ms + l->cfg->wait_for_s3_interval_ms +
                         2 * l->cfg->redis_timeout_ms; /* wait_for_s3's HEADs end by then */
            long room = l->cfg->stop_grace_ms - STOP_GRACE_MARGIN_MS;
            grace = room < 0 ? 0 : grace < room ? grace : room;
            if (!atomic_load(&l->delivering) || now >= deadline + grace) {
                give_back_and_exit(l);
            }
            if (!extended) {
                extended = true;
                LOG_INFO("shutdown_deadline_postback", "worker=%s wait_ms_max=%ld", l->wid, grace);
            }
        }
        unsigned long gen = atomic_load(&l->job_gen);
        long began = atomic_load(&l->job_cpu_ms), cpu = began >= 0 ? worker_cpu_ms(l) : -1;
        if (began >= 0 && cpu - began > l->cfg->job_hang_s * 1000 &&
            atomic_load(&l->job_gen) == gen && atomic_load(&l->job_cpu_ms) == began) {
            give_up_hung_job(l, cpu - began); /* the same job, still running */
        }
        if (now >= next_beat) {
            next_beat = renew(l, now);
        }
        if (now >= next_reap) {
            int rc = reap_all(l);
            for (size_t i = 0; i < l->n && rc == 0; i++) {
                check_parked(l, &l->q[i]);
                trim_dead(l, &l->q[i]);
            }
            /* a tenth of the interval earlier or later at random: workers started together
             * (a deployment's rollout) do not all look at once, pass after pass */
            long every = l->cfg->reap_interval_ms;
            next_reap =
                now + (rc < 0 ? ERROR_BACKOFF_MS
                              : clock_jitter_ms(every - every / 10, every + every / 10, &l->seed));
        }
        clock_sleep_ms(TICK_MS);
    }
    return NULL;
}

static int make_keys(struct lease_queue *q, const char *queue, struct err *e)
{
    snprintf(q->name, sizeof q->name, "%s", queue);
    if (rq_key(q->workers_key, RQ_KEY_MAX, queue, "workers") < 0 ||
        rq_key(q->jobs_key, RQ_KEY_MAX, queue, "jobs") < 0 ||
        rq_key(q->recov_key, RQ_KEY_MAX, queue, "recov") < 0 ||
        rq_key(q->stats_key, RQ_KEY_MAX, queue, "stats") < 0 ||
        rq_key(q->reaped_key, RQ_KEY_MAX, queue, "reaped") < 0 ||
        rq_key(q->dead_key, RQ_KEY_MAX, queue, "dead") < 0 ||
        rq_key(q->parked_key, RQ_KEY_MAX, queue, "parked") < 0 ||
        rq_key(q->blob_prefix, RQ_KEY_MAX, queue, "blob:") < 0) {
        return err_set(e, "queue name too long");
    }
    snprintf(q->parked_cursor, sizeof q->parked_cursor, "0");
    q->blob_len = strlen(q->blob_prefix);
    return 0;
}

/* Keys for every queue and registration in each. Returns 0 or -1. */
static int register_all(struct lease *l, const char *const *queues, bool rejoin, struct err *e)
{
    for (size_t i = 0; i < l->n; i++) {
        if (make_keys(&l->q[i], queues[i], e) < 0) {
            return -1;
        }
    }
    l->rq = rq_create(l->cfg->redis_url, l->cfg->redis_timeout_ms, e);
    if (l->rq == NULL) {
        return -1;
    }
    long sent = clock_boot_ms();
    for (size_t i = 0; i < l->n; i++) {
        struct err why = {{0}};
        l->q[i].renewed_ms = sent;
        if (beat(l, &l->q[i], rejoin ? "rejoin" : "register", &why) != 1) {
            return err_set(e, "cannot register the worker in %s: %s", l->q[i].workers_key,
                           why.msg[0] != '\0' ? why.msg : "unexpected answer");
        }
    }
    renewed(l, sent);
    return 0;
}

struct lease *lease_start(const struct cfg *cfg, const char *const *queues, size_t n,
                          const char *wid, bool rejoin, volatile sig_atomic_t *stop, struct err *e)
{
    if (n == 0 || n > LEASE_QUEUES_MAX) {
        err_set(e, "a worker serves 1 to %d queues, not %zu", LEASE_QUEUES_MAX, n);
        return NULL;
    }
    struct lease *l = calloc(1, sizeof *l);
    if (l == NULL) {
        err_set(e, "out of memory");
        return NULL;
    }
    l->cfg = cfg;
    l->stop = stop;
    l->n = n;
    snprintf(l->wid, sizeof l->wid, "%s", wid);
    for (const char *c = wid; *c != '\0'; c++) {
        l->seed = l->seed * 31u + (unsigned char)*c;
    }
    atomic_init(&l->quit, false);
    atomic_init(&l->fresh_until, 0);
    atomic_init(&l->redis_full, false);
    atomic_init(&l->job_cpu_ms, -1);
    atomic_init(&l->job_gen, 0);
    atomic_init(&l->job_queue, 0);
    if (pthread_getcpuclockid(pthread_self(), &l->worker_cpu) != 0 ||
        pthread_mutex_init(&l->job_lock, NULL) != 0) {
        err_set(e, "cannot read the worker thread's CPU clock, or make a lock");
        free(l);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        atomic_init(&l->q[i].uploaded_bytes, 0);
    }
    if (register_all(l, queues, rejoin, e) < 0) {
        goto fail;
    }
    if (pthread_create(&l->thread, NULL, run_thread, l) != 0) {
        err_set(e, "cannot start the heartbeat thread");
        goto fail;
    }
    return l;
fail:
    rq_destroy(l->rq);
    pthread_mutex_destroy(&l->job_lock);
    free(l);
    return NULL;
}

void lease_count_uploaded(struct lease *l, size_t queue, unsigned long long bytes)
{
    if (l != NULL && queue < l->n && bytes > 0) {
        atomic_fetch_add(&l->q[queue].uploaded_bytes, bytes);
    }
}

void lease_job_begins(struct lease *l, size_t queue)
{
    if (l != NULL) {
        atomic_store(&l->job_queue, queue);
        atomic_fetch_add(&l->job_gen, 1);
        lease_job_id(l, "");
        atomic_store(&l->job_cpu_ms, worker_cpu_ms(l));
    }
}

void lease_job_id(struct lease *l, const char *job_id)
{
    if (l != NULL) {
        pthread_mutex_lock(&l->job_lock);
        snprintf(l->job_id, sizeof l->job_id, "%s", job_id);
        pthread_mutex_unlock(&l->job_lock);
    }
}

void lease_job_ends(struct lease *l)
{
    if (l != NULL) {
        atomic_store(&l->job_cpu_ms, -1);
    }
}

void lease_delivering(struct lease *l, bool on)
{
    /* After a stop the worker takes nothing more: once the job is settled it is on its way out
     * (unregistering, lease_stop()), and a deadline passing meanwhile would give back nothing
     * but cut that way short. So a stop keeps the mark until lease_stop(), within the same
     * bound as the delivery (run_thread). */
    if (l != NULL && (on || !*l->stop)) {
        atomic_store(&l->delivering, on);
    }
}

long lease_fresh_ms(struct lease *l)
{
    return l == NULL ? LONG_MAX : atomic_load(&l->fresh_until) - clock_boot_ms();
}

unsigned long lease_records_lost(struct lease *l)
{
    return l == NULL ? 0 : atomic_load(&l->records_lost);
}

bool lease_redis_full(struct lease *l)
{
    return l != NULL && atomic_load(&l->redis_full);
}

void lease_stop(struct lease *l)
{
    if (l == NULL) {
        return;
    }
    atomic_store(&l->quit, true);
    pthread_join(l->thread, NULL);
    flush_counts(l);
    long n = give_back_all(l); /* also removes the worker from every queue's fleet */
    LOG_INFO("worker_unregistered", "worker=%s jobs_returned=%ld", l->wid, n);
    rq_destroy(l->rq);
    pthread_mutex_destroy(&l->job_lock);
    free(l);
}
