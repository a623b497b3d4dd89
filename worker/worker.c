#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "hash.h"
#include "http.h"
#include "id.h"
#include "image.h"
#include "job.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "result.h"
#include "rq.h"
#include "run.h"
#include "s3.h"
#include "upload.h"
#include "version.h"

#define MIN_BLOCK_MS      10   /* shortest blocking wait for a job */
#define STOP_RETRY_MAX_MS 1000 /* while stopping, a refused write is tried again this often */
#define REDIS_TICK_MS     100  /* a blocking wait may end this late (Redis's default hz 10) */
#define POLL_SLACK_MS     10   /* a blocking wait of several queues ends this much early */
#define STALE_NAP_MS      50   /* look again this soon whether an overdue lease holds again */
#define EPOCH_MAX         48   /* bytes of a queue's data token (pixq:{Q}:epoch) kept */
#define RUN_BY_MAX        330  /* a run's run_by: the worker's id (300), '/', a count */
/* the stats counter of postbacks that failed with no retry to come (`pixq stats`) */
#define POSTBACKS_GIVEN_UP "postbacks_given_up"
/* script_retried() stops trying well within the hour the key of a split.lua or adopt.lua call
 * lives (pixq:{Q}:split:<call>, pixq:{Q}:adopt:<job_id>) */
#define CALL_RETRY_MAX_MS (50L * 60 * 1000)

/* One queue the worker serves (PIXQ_QUEUE names them, highest priority first), with its keys:
 * every key of a queue carries its {name} hash tag, so each queue settles on its own. */
struct wqueue {
    char name[CFG_STR_MAX];
    char jobs_key[RQ_KEY_MAX];
    char active_key[RQ_KEY_MAX];
    char dead_key[RQ_KEY_MAX];
    char stats_key[RQ_KEY_MAX];
    char delayed_key[RQ_KEY_MAX];
    char recov_key[RQ_KEY_MAX];
    char tput_key[RQ_KEY_MAX];
    char parked_key[RQ_KEY_MAX]; /* the queue's parked outputs and their bytes (park.lua) */
    char epoch_key[RQ_KEY_MAX];  /* the token of the queue's data (note_epoch) */
    char epoch[EPOCH_MAX];       /* its value, read on connection epoch_conn ("" unknown) */
    unsigned long epoch_conn;
    char prefix[RQ_KEY_MAX]; /* "pixq:{name}:", which every per-job key starts with */
    size_t prefix_len;
    long next_promote_at; /* monotonic ms */
    bool due_soon;        /* next_promote_at is a delayed job's due time, not a routine look */
    bool gated;           /* past PIXQ_MAX_PARKED_MB when last told: only tasks are taken */
    long gate_at;         /* when that was told (monotonic ms; 0: never) */
    long gated_since;     /* when it last went past it */
    long gate_logged_at;  /* when queue_gated was last logged (0: never) */
};

#define UNSETTLED_MAX      8      /* settlements kept while Redis refuses them */
#define GATE_RECHECK_MS    1000   /* an idle worker asks a queue's parked limit this often */
#define GATED_NAP_MS       200    /* a queue past it is looked at for tasks this often */
#define GATE_LOG_MS        60000  /* queue_gated is logged at most this often per queue */
#define GATE_SCAN_MS       "5000" /* take.lua looks past the consumer end this often, fleet-wide */
#define POISON_NESTING_MAX 8      /* pills in pills unwrapped (see handle_poison) */

/* A settlement settle() gave up on (Redis down or refusing writes): its payload stays on the
 * active list and comes back; it is then settled as it was decided, not run (and posted back)
 * again. One that may settle a job Redis lost (forgotten_ok) is settled again, so, once every
 * active list is found empty: its payload will not come back from there. The strings are
 * copies. */
struct unsettled {
    struct buf payload;     /* empty: a free slot */
    const struct wqueue *q; /* the queue whose active list holds it */
    unsigned long seq;      /* when it was kept: the oldest goes first when all are taken */
    char *job_id, *result, *dead, *posted_id, *posted, *retry;
    const char *counter; /* a literal */
    long retry_ms;
    char *run_by;      /* as the settlement's */
    bool forgotten_ok; /* as the settlement's */
    char *task_of;     /* as the settlement's */
};

struct worker {
    const struct cfg *cfg;
    volatile sig_atomic_t *stop;
    struct rq *rq;
    struct lease *lease;
    struct http *http;
    struct runner runner;
    struct job_limits limits;
    struct cfg_delays postback_delays; /* PIXQ_POSTBACK_RETRY_DELAYS_S */
    char id[300];
    char ttl_arg[32], dead_max_arg[32], dead_age_arg[32]; /* settings as script arguments */
    char parked_max_arg[32];                              /* PIXQ_MAX_PARKED_MB, bytes */
    struct wqueue q[LEASE_QUEUES_MAX];
    size_t nq;
    struct wqueue *cur; /* the queue of the payload in hand: it settles there */
    /* cur's name and keys (use_queue), so that each step names the queue its payload came from */
    const char *queue, *jobs_key, *active_key, *dead_key, *stats_key, *delayed_key, *recov_key;
    struct buf next;       /* a payload finish.lua reserved for the next turn, in next_q */
    struct wqueue *next_q; /* NULL while `next` holds nothing */
    /* the token of the data the payload in hand, and `next`, were reserved in (note_epoch):
     * adopt.lua and split.lua tell a reservation Redis lost from one taken from us */
    char reserved_on[EPOCH_MAX], next_on[EPOCH_MAX];
    unsigned long records_lost; /* lease_records_lost() when the tokens were last read */
    unsigned long io_at_start;  /* rq_breaks() when the payload in hand was reserved */
    /* the payload in hand, lease_records_lost() before it was reserved (and before finish.lua
     * reserved `next`, and before the finish.lua call in flight), and whether it was found taken
     * from this worker since (job_taken) */
    const struct buf *in_hand;
    unsigned long lost_at_start, next_lost, lost_at_call;
    bool taken;
    unsigned long jobs;  /* payloads handled, for the round trips per job at the end */
    unsigned seed;       /* for retry jitter */
    bool check_active;   /* a Redis error happened: our active list may hold a reserved job */
    bool stale;          /* the lease is overdue: no new job is taken until it holds */
    long full_at;        /* a reservation last refused as full (redis_full), monotonic ms */
    long full_since;     /* when a spell of a full Redis began (note_full); 0: none */
    bool full_now;       /* redis_full() as the reservation under way began (note_full) */
    long strand_wait_ms; /* nap before a stranded task runs again (stranded()) */
    bool stranded_now;   /* the task in hand was stranded */
    bool begin_ahead;    /* the job in hand's begin.lua was sent ahead, its answer not read */
    long first_seen_ms;  /* else what its answer said (runner.first_seen), -1 if nothing */
    struct unsettled unsettled[UNSETTLED_MAX];
    unsigned long unsettled_seq; /* settlements kept so far */
    unsigned long runs_begun;    /* begin.lua calls made, for each run's run_by */
    /* the postback retry whose stored result Redis failed to read, and how many times in a row */
    char unread_id[JOB_ID_MAX];
    long unread_tries;
};

/* One reserved job while it is being worked on. */
struct task {
    struct buf payload; /* the bytes on the active list */
    struct job *job;
    long run; /* this run's number (begin.lua's count); 0 or -1: not known */
    /* what begin.lua stored as this run's (`run_by` in the job's hash, finish.lua's ARGV[16]),
     * "" when begin.lua was not sent or failed */
    char run_by[RUN_BY_MAX];
    long started_ms; /* wall clock when it began (metrics_job_reserved) */
    bool unnoted;    /* begun by handle_payload, not yet noted by begin_noted() */
    struct result *result;
    char first_error[ERR_MSG_MAX]; /* empty while nothing failed */
};

/* The wait after `ms` (0: none yet) when Redis fails again: PIXQ_REDIS_RETRY_MIN_MS (100 ms)
 * doubling to PIXQ_REDIS_RETRY_MAX_MS (5 s). */
static long next_backoff(const struct worker *w, long ms)
{
    long lo = w->cfg->redis_retry_min_ms, hi = w->cfg->redis_retry_max_ms;
    return ms == 0 ? lo : ms * 2 > hi ? hi : ms * 2;
}

/* Sleeps `ms`, waking early when asked to stop. */
static void nap(struct worker *w, long ms)
{
    clock_nap_ms(ms, w->stop);
}

/* Whether Redis refused a command with `msg` ("redis: OOM command not allowed...") for one of
 * the reasons in `codes` (n of them, each "CODE "). */
static bool refused_for(const char *msg, const char *const *codes, size_t n)
{
    const char *p = strncmp(msg, "redis: ", 7) == 0 ? msg + 7 : msg;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(p, codes[i], strlen(codes[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether a write Redis refused with `msg` may pass by itself: Redis full, a failed save, too
 * few replicas, loading its data, busy with a script, without its master, a failover under
 * way. */
static bool refusal_passes(const char *msg)
{
    static const char *const codes[] = {"OOM ",      "MISCONF ",  "NOREPLICAS ",
                                        "LOADING ",  "BUSY ",     "MASTERDOWN ",
                                        "TRYAGAIN ", "READONLY ", "CLUSTERDOWN "};
    return refused_for(msg, codes, sizeof codes / sizeof codes[0]);
}

/* Whether Redis refused a command with `msg` for want of memory (maxmemory with noeviction). */
static bool refused_as_full(const char *msg)
{
    static const char *const codes[] = {"OOM "};
    return refused_for(msg, codes, 1);
}

/* Whether Redis is full (maxmemory with noeviction): the last heartbeat said so, or Redis
 * refused a reservation as full (it takes an LMOVE for a command that adds data) within
 * PIXQ_REDIS_RETRY_MAX_MS. Then the worker takes pixq's own entries only, through take.lua
 * (which a full Redis takes) and without blocking: parked uploads free memory, and a fresh job
 * would settle into more than its payload (its result and the job's hash), past the memory
 * Redis was given. */
static bool redis_full(const struct worker *w)
{
    return lease_redis_full(w->lease) ||
           (w->full_at != 0 && clock_mono_ms() - w->full_at < w->cfg->redis_retry_max_ms);
}

/* Notes whether Redis is full for the reservation that begins (full_now: its steps agree, the
 * lease thread may change its mind meanwhile), and logs a spell of a full Redis as it begins and
 * ends (redis_full, redis_room). */
static void note_full(struct worker *w)
{
    bool full = redis_full(w);
    w->full_now = full;
    long now = clock_mono_ms();
    if (full && w->full_since == 0) {
        LOG_WARN("redis_full", "worker=%s action=own_entries_only", w->id);
        w->full_since = now;
    } else if (!full && w->full_since != 0) {
        LOG_INFO("redis_room", "worker=%s full_ms=%ld action=taking_jobs", w->id,
                 now - w->full_since);
        w->full_since = 0;
    }
}

/* Whether a stop ends the retries of a Redis write that failed with `msg`. While Redis answers
 * but refuses for a passing reason (refusal_passes), a stop waits for it, up to the lease's
 * shutdown deadline, rather than spend the tries at once and leave the work done (a job posted
 * back, a retry decided) to be done again from the active list; a Redis that cannot be reached,
 * or another error, ends them: a stop is not held by an outage. */
static bool stop_ends_retries(const struct worker *w, const char *msg)
{
    return *w->stop && (rq_disconnected(w->rq) || !refusal_passes(msg));
}

/* The wait of `ms` between retries of a Redis write that failed with `msg`: a stop ends it
 * unless it waits for the refusal to pass (stop_ends_retries), trying again at least every
 * STOP_RETRY_MAX_MS (PIXQ_REDIS_RETRY_MAX_MS may be a minute). */
static void retry_nap(struct worker *w, long ms, const char *msg)
{
    if (*w->stop && !stop_ends_retries(w, msg)) {
        clock_sleep_ms(ms < STOP_RETRY_MAX_MS ? ms : STOP_RETRY_MAX_MS);
    } else {
        nap(w, ms);
    }
}

/* A back-off wait of `ms` with equal jitter, between ms/2 and ms: the workers of a fleet that
 * lost Redis together come back apart, not all at once every 5 s while it loads its AOF. */
static long jittered(struct worker *w, long ms)
{
    return clock_jitter_ms(ms / 2, ms, &w->seed);
}

/* Whether Redis refused a command because its key holds another type (WRONGTYPE): a key of
 * pixq's written by hand or by another program, which no retry can get past. */
static bool wrong_type(const struct err *e)
{
    return strncmp(e->msg, "redis: WRONGTYPE", 16) == 0;
}

/* Logs that step `step` of job `job_id` found `keys` ("KEY" or "KEY=TYPE ...", the job's own or
 * the queue's counts) holding another type than pixq's, and what it did about it (`action`). */
static void log_foreign(const char *step, const char *job_id, const char *keys, const char *action)
{
    char q[ERR_MSG_MAX + 16];
    LOG_ERROR("job_key_foreign",
              "job_id=%s step=%s keys=%s action=%s reason=\"a key pixq writes holds another "
              "type than pixq's: written by hand or by another program\"",
              job_id, step, log_quote(keys, q, sizeof q), action);
}

/* ---------------------------------------------------------------- set-up */

/* Makes queue `q` (w->q[i]) the one the payload in hand belongs to. */
static void use_queue(struct worker *w, struct wqueue *q)
{
    w->cur = q;
    w->queue = q->name;
    w->jobs_key = q->jobs_key;
    w->active_key = q->active_key;
    w->dead_key = q->dead_key;
    w->stats_key = q->stats_key;
    w->delayed_key = q->delayed_key;
    w->recov_key = q->recov_key;
}

static int queue_keys(struct wqueue *q, const char *wid, struct err *e)
{
    char active[RQ_KEY_MAX];
    snprintf(active, sizeof active, "active:%.300s", wid);
    if (rq_key(q->jobs_key, RQ_KEY_MAX, q->name, "jobs") < 0 ||
        rq_key(q->active_key, RQ_KEY_MAX, q->name, active) < 0 ||
        rq_key(q->dead_key, RQ_KEY_MAX, q->name, "dead") < 0 ||
        rq_key(q->stats_key, RQ_KEY_MAX, q->name, "stats") < 0 ||
        rq_key(q->delayed_key, RQ_KEY_MAX, q->name, "delayed") < 0 ||
        rq_key(q->recov_key, RQ_KEY_MAX, q->name, "recov") < 0 ||
        rq_key(q->tput_key, RQ_KEY_MAX, q->name, "tput") < 0 ||
        rq_key(q->parked_key, RQ_KEY_MAX, q->name, "parked") < 0 ||
        rq_key(q->epoch_key, RQ_KEY_MAX, q->name, "epoch") < 0 ||
        rq_key(q->prefix, RQ_KEY_MAX, q->name, "") < 0) {
        return err_set(e, "PIXQ_QUEUE: queue name '%.100s' too long", q->name);
    }
    q->prefix_len = strlen(q->prefix);
    return 0;
}

/* The queues of PIXQ_QUEUE ("urgent,default": highest priority first; cfg_load() checked the
 * list) and their keys. */
static int make_keys(struct worker *w, struct err *e)
{
    _Static_assert(LEASE_QUEUES_MAX == CFG_QUEUES_MAX, "one limit on the queues of a worker");
    struct cfg_queues list;
    if (cfg_queues(w->cfg->queue, &list, e) < 0) {
        return -1;
    }
    for (w->nq = 0; w->nq < list.n; w->nq++) {
        struct wqueue *q = &w->q[w->nq];
        snprintf(q->name, sizeof q->name, "%s", list.name[w->nq]);
        if (queue_keys(q, w->id, e) < 0) {
            return -1;
        }
    }
    use_queue(w, &w->q[0]);
    return 0;
}

static int init_settings(struct worker *w, struct err *e)
{
    const struct cfg *c = w->cfg;
    w->limits = (struct job_limits){
        .max_bytes = (size_t)c->max_job_bytes,
        .max_depth = (int)c->max_json_depth,
        .max_functions = (size_t)c->max_functions,
        .own_bytes = JOB_OWN_BYTES, /* the job_id and run number it writes itself */
        .max_batch_bytes = (size_t)c->max_batch_bytes,
    };
    snprintf(w->ttl_arg, sizeof w->ttl_arg, "%ld", c->result_ttl_s);
    snprintf(w->dead_max_arg, sizeof w->dead_max_arg, "%ld", c->dead_max);
    snprintf(w->dead_age_arg, sizeof w->dead_age_arg, "%ld", c->dead_max_age_s * 1000);
    snprintf(w->parked_max_arg, sizeof w->parked_max_arg, "%lld",
             (long long)c->max_parked_mb << 20);
    return cfg_delays(c->postback_retry_delays_s, &w->postback_delays, e); /* cfg_load checked */
}

/* runner.uploaded: the bytes go to the stats of the queue of the payload in hand. */
static void count_uploaded(void *user, size_t bytes)
{
    struct worker *w = user;
    lease_count_uploaded(w->lease, (size_t)(w->cur - w->q), bytes);
}

/* Whether the payload in hand was taken from this worker: asked before each upload, of Redis
 * only when the lease may have run out meanwhile (it is overdue, the worker frozen or cut off
 * from Redis past it, or a heartbeat found the record gone since the payload was taken), for
 * then the fleet may have reaped the job, another run finished it, and a later job written the
 * same keys: a stale upload would put the older output back over them. Not taken when Redis lost
 * its data instead (the token changed: this run holds the job's only copy), nor when Redis
 * cannot say (the uploads go on, as before). */
static bool job_taken(struct worker *w, const struct buf *payload, const char *step,
                      const char *job_id)
{
    if (w->taken) {
        return true;
    }
    if (payload == NULL ||
        (lease_fresh_ms(w->lease) > 0 && lease_records_lost(w->lease) == w->lost_at_start)) {
        return false;
    }
    const char *lpos[] = {"LPOS", w->active_key, payload->data};
    const char *get[] = {"GET", w->cur->epoch_key};
    size_t lens[] = {4, strlen(w->active_key), payload->len};
    struct rq_cmd cmds[2] = {{3, lpos, lens}, {2, get, NULL}};
    redisReply *rep[2];
    struct err e = {{0}};
    rq_pipeline(w->rq, 2, cmds, rep, &e);
    /* the same data as when the payload was reserved: "" (the token unknown) cannot tell */
    bool same_data = rep[1] != NULL && rep[1]->type == REDIS_REPLY_STRING &&
                     w->reserved_on[0] != '\0' && strcmp(rep[1]->str, w->reserved_on) == 0;
    w->taken = rep[0] != NULL && rep[0]->type == REDIS_REPLY_NIL && same_data;
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    if (w->taken) {
        LOG_WARN("lease_lost", "job_id=%s step=%s action=%s", job_id != NULL ? job_id : "", step,
                 strcmp(step, "upload") == 0 ? "not_uploaded" : "not_forgotten");
    }
    return w->taken;
}

/* The "forgotten" argument of a script that settles, parks or schedules `payload` even off the
 * active list when Redis no longer knows the job (its hash gone): "" when the job was taken from
 * this worker instead, and the hash merely expired meanwhile (PIXQ_RESULT_TTL_S, shorter than
 * the stall): that stale run would be posted, stored or run again beside the live one. */
static const char *forgotten_arg(struct worker *w, const struct buf *payload, const char *step,
                                 const char *job_id)
{
    return job_taken(w, payload, step, job_id) ? "" : "forgotten";
}

/* runner.taken: job_taken() of the payload in hand. */
static bool in_hand_taken(void *user)
{
    struct worker *w = user;
    return job_taken(w, w->in_hand, "upload", w->runner.job_id);
}

#define REPLAN_LOOK_MAX 10000 /* most delayed entries of a queue replan.lua looks at */

/* uploader.replanned: the bucket's limiter re-planned at a higher rate: its parked uploads in
 * every queue of this worker are brought forward (replan.lua), and each queue where some were
 * is looked at again at once. Those of queues this worker does not serve keep their times. */
static void replan_parked(void *user, const char *bucket, long interval_us, long epoch)
{
    struct worker *w = user;
    char step[32], most[32], ep[32];
    snprintf(step, sizeof step, "%ld", interval_us);
    snprintf(most, sizeof most, "%d", REPLAN_LOOK_MAX);
    snprintf(ep, sizeof ep, "%ld", epoch);
    for (size_t i = 0; i < w->nq; i++) {
        struct wqueue *q = &w->q[i];
        const char *keys[] = {q->delayed_key};
        const char *args[] = {bucket, step, most, ep};
        struct err e = {{0}};
        redisReply *r = rq_script(w->rq, RQ_SCRIPT_REPLAN, 1, keys, 4, args, NULL, &e);
        if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
            LOG_INFO("uploads_replanned", "queue=%s bucket=%s count=%lld interval_ms=%.1f", q->name,
                     bucket, r->integer, interval_us / 1000.0);
            q->next_promote_at = 0;
        } else if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
            char qe[ERR_MSG_MAX + 16];
            LOG_WARN("uploads_replanned", "queue=%s bucket=%s error=%s", q->name, bucket,
                     log_quote(e.msg[0] ? e.msg : "bad reply", qe, sizeof qe));
        }
        freeReplyObject(r);
    }
}

/* {first_seen, runs}'s first_seen, or -1. */
static long reply_first_seen(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   r->element[0]->type == REDIS_REPLY_INTEGER
               ? (long)r->element[0]->integer
               : -1;
}

/* runner.first_seen: from begin.lua's answer, read now if it was sent ahead (an upload waits for
 * it anyway). */
static long job_first_seen(void *user)
{
    struct worker *w = user;
    return w->begin_ahead ? reply_first_seen(rq_sent_reply(w->rq)) : w->first_seen_ms;
}

static bool reruns(const struct worker *w, const struct job *j, enum run_status st);

/* runner.reruns. */
static bool job_reruns(void *user, const struct job *j, enum run_status st)
{
    return reruns(user, j, st);
}

/* Warns at start of what in the server's settings can lose jobs or stop the fleet. */
static void warn_redis_settings(const struct worker *w, const struct rq_server *info)
{
    char q[ERR_MSG_MAX + 16];
    if (info->refused[0] != '\0') {
        LOG_WARN("redis_info_unavailable",
                 "error=%s note=\"not checked: a Cluster node, the eviction policy, maxmemory "
                 "against PIXQ_MAX_PARKED_MB (allow INFO: +info)\"",
                 log_quote(info->refused, q, sizeof q));
    }
    if (info->policy[0] != '\0' && strcmp(info->policy, "noeviction") != 0) {
        /* volatile-*: only keys with a TTL, then writes refused as under noeviction */
        bool volatile_only = strncmp(info->policy, "volatile-", 9) == 0;
        LOG_WARN("redis_eviction_policy",
                 "policy=%s error=\"Redis may evict keys under memory pressure, %s: set "
                 "maxmemory-policy noeviction\"",
                 info->policy,
                 volatile_only ? "those with a TTL: parked outputs, results and job hashes"
                               : "whole queues with them");
    }
    /* each queue may park up to the limit: their sum past half of maxmemory leaves the queues
     * too little room, and a full Redis refuses every write */
    unsigned long long parked = (unsigned long long)w->cfg->max_parked_mb * w->nq << 20;
    if (info->maxmemory > 0 && (parked == 0 || parked > info->maxmemory / 2)) {
        LOG_WARN("parked_limit_high",
                 "max_parked_mb=%ld queues=%zu maxmemory_mb=%llu error=\"parked outputs may fill "
                 "Redis: set PIXQ_MAX_PARKED_MB under half of maxmemory, shared by the queues\"",
                 w->cfg->max_parked_mb, w->nq, info->maxmemory >> 20);
    }
}

struct worker *worker_create(const struct cfg *cfg, volatile sig_atomic_t *stop, bool rejoin,
                             struct err *e)
{
    struct worker *w = calloc(1, sizeof *w);
    if (w == NULL) {
        err_set(e, "out of memory");
        return NULL;
    }
    w->cfg = cfg;
    w->stop = stop;
    w->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    buf_init(&w->next, 0);
    if (init_settings(w, e) < 0) {
        goto fail;
    }
    if (id_worker(w->id, sizeof w->id) < 0) {
        err_set(e, "cannot make a worker id");
        goto fail;
    }
    /* the id is random: containers started in the same second have the same pid, not the same
     * back-off draws */
    for (const char *c = w->id; *c != '\0'; c++) {
        w->seed = w->seed * 31u + (unsigned char)*c;
    }
    if (make_keys(w, e) < 0) {
        goto fail;
    }
    w->rq = rq_create(cfg->redis_url, cfg->redis_timeout_ms, e);
    struct rq_server info;
    if (w->rq == NULL || rq_server_check(w->rq, &info, e) < 0) {
        goto fail;
    }
    warn_redis_settings(w, &info);
    const char *names[LEASE_QUEUES_MAX];
    for (size_t i = 0; i < w->nq; i++) {
        names[i] = w->q[i].name;
    }
    w->lease = lease_start(cfg, names, w->nq, w->id, rejoin, stop, e);
    if (w->lease == NULL) {
        goto fail;
    }
    w->http = http_create(e);
    if (w->http == NULL) {
        goto fail;
    }
    run_init(&w->runner, cfg, w->http);
    w->runner.uploaded = count_uploaded;
    w->runner.uploaded_user = w;
    w->runner.first_seen = job_first_seen;
    w->runner.first_seen_user = w;
    w->runner.reruns = job_reruns;
    w->runner.reruns_user = w;
    w->runner.taken = in_hand_taken;
    w->runner.taken_user = w;
    w->runner.up.replanned = replan_parked;
    w->runner.up.replanned_user = w;
    run_set_redis(&w->runner, w->rq);
    img_init();
    return w;
fail:
    worker_destroy(w);
    return NULL;
}

static void forget_unsettled(struct unsettled *u)
{
    buf_finish(&u->payload);
    free(u->job_id);
    free(u->result);
    free(u->dead);
    free(u->posted_id);
    free(u->posted);
    free(u->retry);
    free(u->run_by);
    free(u->task_of);
    *u = (struct unsettled){.counter = ""};
}

/* The job a settlement is for, for the logs: the job settled, the one whose postback it marks,
 * or the task's (an upload, a postback retry); "" for none (a wake-up token). */
static const char *settled_job(const char *job_id, const char *posted_id, const char *task_of)
{
    return job_id != NULL ? job_id : posted_id != NULL ? posted_id : task_of != NULL ? task_of : "";
}

static const char *unsettled_job(const struct unsettled *u)
{
    return settled_job(u->job_id, u->posted_id, u->task_of);
}

void worker_destroy(struct worker *w)
{
    if (w == NULL) {
        return;
    }
    lease_stop(w->lease);
    run_finish(&w->runner);
    rq_destroy(w->rq);
    http_destroy(w->http);
    buf_finish(&w->next);
    for (size_t i = 0; i < UNSETTLED_MAX; i++) {
        struct unsettled *u = &w->unsettled[i];
        if (u->payload.len > 0) {
            /* its payload is still on its active list: it runs again from there, or, once
             * reaped, elsewhere (unless Redis lost the job: then its outcome, posted back, is
             * recorded nowhere) */
            LOG_WARN("unsettled_dropped",
                     "job_id=%s reason=stopping action=run_again_from_active_list",
                     unsettled_job(u));
        }
        forget_unsettled(u);
    }
    free(w);
}

const char *worker_id(const struct worker *w)
{
    return w->id;
}

/* Appends `n` bytes of `s` to the `*len` bytes of `out`, cut to fit `cap` with its NUL. */
static void key_put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    size_t room = cap - 1 - *len;
    n = n < room ? n : room;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

/* pixq:{Q}:<what>:<job_id>, or pixq:{Q}:<what>:<job_id>:<n> when n >= 0 (the queue in use). */
static void job_key(struct worker *w, const char *job_id, const char *what, int n, char *out,
                    size_t cap)
{
    size_t len = 0;
    key_put(out, cap, &len, w->cur->prefix, w->cur->prefix_len);
    key_put(out, cap, &len, what, strlen(what));
    key_put(out, cap, &len, ":", 1);
    key_put(out, cap, &len, job_id, strlen(job_id));
    if (n >= 0) {
        char num[16];
        int k = snprintf(num, sizeof num, ":%d", n);
        key_put(out, cap, &len, num, (size_t)k);
    }
}

/* ---------------------------------------------------------------- settling in Redis */

/* A payload up to the largest PIXQ_MAX_JOB_BYTES is kept whole in its dead-letter entry (it may
 * run under another setting); a larger one, which no setting runs, only its first bytes: written
 * out as JSON, control bytes take 6 each, and past Redis's 512 MB for one argument the entry
 * could never be written (the worker tried for ever). */
#define DEAD_JOB_MAX  (16L * 1024 * 1024)
#define DEAD_JOB_HEAD (64 * 1024)

/* The dead-letter entry: {"job": payload, "job_id", "error", "attempts", "failed_at" (ms)}; for
 * a payload over DEAD_JOB_MAX, "job_head" (its first DEAD_JOB_HEAD bytes) and "job_bytes"
 * instead of "job" (`pixq dead retry` leaves such an entry alone). */
static char *dead_envelope(const char *payload, size_t len, const char *job_id, const char *error,
                           long attempts)
{
    json_object *d = json_object_new_object();
    if (len > (size_t)DEAD_JOB_MAX) {
        json_object_object_add(d, "job_head", json_object_new_string_len(payload, DEAD_JOB_HEAD));
        json_object_object_add(d, "job_bytes", json_object_new_int64((int64_t)len));
    } else {
        json_object_object_add(d, "job", json_object_new_string_len(payload, (int)len));
    }
    if (job_id != NULL) {
        json_object_object_add(d, "job_id", json_object_new_string(job_id));
    }
    json_object_object_add(d, "error", json_object_new_string(error));
    json_object_object_add(d, "attempts", json_object_new_int64(attempts));
    json_object_object_add(d, "failed_at", json_object_new_int64(clock_wall_ms()));
    char *s = strdup(
        json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(d);
    return s;
}

struct settlement {
    const char *job_id;    /* NULL: no result is stored */
    const char *result;    /* "" when job_id is NULL */
    const char *dead;      /* dead-letter envelope, or NULL */
    const char *counter;   /* finish.lua's ARGV[6]: "succeeded", "failed" or "", and others */
    const char *posted_id; /* the job whose postback was just delivered (marked), or NULL */
    const char *posted;    /* set with posted_id: that postback's digest (postback_digest) */
    const char *retry;     /* a postback retry task to schedule with the settlement, or NULL */
    long retry_ms;         /* when it is due, ms from now */
    const char *run_by;    /* the run_by of the run settled (struct task), NULL or "": unknown */
    bool forgotten_ok;     /* settle job_id even off the active list if Redis lost the job */
    const char *task_of;   /* for the logs: the job whose task this is (an upload, a postback
                            * retry) when job_id and posted_id name none, or NULL */
};

/* finish.lua's keys and arguments (see its header). */
struct finish_call {
    char result_key[RQ_KEY_MAX], job_hash[RQ_KEY_MAX];
    char retry_ms[32];
    const char *keys[10], *args[16];
    size_t lens[16];
};

static void finish_call_init(struct worker *w, const struct buf *payload,
                             const struct settlement *s, bool next, struct finish_call *c)
{
    job_key(w, s->job_id != NULL ? s->job_id : "", "result", -1, c->result_key,
            sizeof c->result_key);
    const char *hash_id = s->posted_id != NULL ? s->posted_id : s->job_id;
    job_key(w, hash_id != NULL ? hash_id : "", "job", -1, c->job_hash, sizeof c->job_hash);
    snprintf(c->retry_ms, sizeof c->retry_ms, "%ld", s->retry_ms);
    const char *keys[] = {w->active_key,  c->result_key,     w->dead_key, w->stats_key,
                          w->recov_key,   w->cur->tput_key,  c->job_hash, w->jobs_key,
                          w->delayed_key, w->cur->parked_key};
    const char *args[] = {payload->data,
                          s->result,
                          w->ttl_arg,
                          s->dead != NULL ? s->dead : "",
                          w->dead_max_arg,
                          s->counter,
                          w->dead_age_arg,
                          s->posted != NULL ? s->posted : "",
                          next ? "next" : "",
                          s->retry != NULL ? s->retry : "",
                          c->retry_ms,
                          RQ_WAKE_TOKEN,
                          w->parked_max_arg,
                          RQ_TASK_MARK,
                          s->forgotten_ok && s->job_id != NULL ? "forgotten" : "",
                          s->run_by != NULL ? s->run_by : ""};
    memcpy(c->keys, keys, sizeof keys);
    memcpy(c->args, args, sizeof args);
    c->lens[0] = payload->len;
    for (int i = 1; i < 16; i++) {
        c->lens[i] = strlen(args[i]);
    }
}

/* Whether finish.lua may reserve the next job in the same call: the loop goes on, no Redis error
 * since this payload was reserved (else the active list may hold a stray to look at first), the
 * queue is the first one (a lower queue's next job must not overtake a higher queue's), the
 * lease holds (as for any reservation: reserve), and Redis is not full (redis_full). */
static bool may_fold(const struct worker *w)
{
    return !*w->stop && !w->check_active && w->cur == &w->q[0] && w->next_q == NULL &&
           rq_breaks(w->rq) == w->io_at_start && lease_fresh_ms(w->lease) > 0 && !redis_full(w);
}

/* Notes whether `q` is past PIXQ_MAX_PARKED_MB (finish.lua's or take.lua's answer `flag`). Near
 * the limit each park and each upload may cross it: a spell past it is logged when it starts
 * (once a minute at most) and when it ends after a second or more. */
static void note_gate(struct worker *w, struct wqueue *q, const redisReply *flag)
{
    bool gated = flag != NULL && flag->type == REDIS_REPLY_INTEGER && flag->integer == 1;
    long now = clock_mono_ms();
    if (gated && !q->gated) {
        q->gated_since = now;
        if (q->gate_logged_at == 0 || now - q->gate_logged_at >= GATE_LOG_MS) {
            LOG_WARN("queue_gated", "queue=%s max_parked_mb=%ld action=tasks_only", q->name,
                     w->cfg->max_parked_mb);
            q->gate_logged_at = now;
        }
    } else if (!gated && q->gated && now - q->gated_since >= 1000) {
        LOG_INFO("queue_ungated", "queue=%s gated_ms=%ld action=taking_jobs", q->name,
                 now - q->gated_since);
    }
    q->gated = gated;
    q->gate_at = now;
}

/* The token of queue `q`'s data on the connection in use (pixq:{Q}:epoch, made if missing) into
 * `out`, for a payload just reserved from `q` on it: adopt.lua and split.lua tell from it a
 * reservation lost with Redis's data from one reaped (lib/data_lost.lua). Read once a
 * connection, in one round trip, and again once the heartbeat finds the worker's record lost (a
 * flush keeps the connection); "" unknown (the connection failed). */
static void note_epoch(struct worker *w, struct wqueue *q, char out[EPOCH_MAX])
{
    unsigned long lost = lease_records_lost(w->lease);
    /* Redis lost its data since (a flush, say, which kept the connection): read them again */
    if (lost != w->records_lost) {
        w->records_lost = lost;
        for (size_t i = 0; i < w->nq; i++) {
            w->q[i].epoch_conn = 0;
        }
    }
    unsigned long conn = rq_connection(w->rq);
    if (conn != 0 && q->epoch_conn != conn) {
        char token[ID_JOB_LEN];
        q->epoch[0] = '\0';
        if (id_job(token) == 0) {
            const char *set[] = {"SET", q->epoch_key, token, "NX"};
            const char *get[] = {"GET", q->epoch_key};
            struct rq_cmd cmds[2] = {{4, set, NULL}, {2, get, NULL}};
            redisReply *rep[2];
            struct err e = {{0}};
            rq_pipeline(w->rq, 2, cmds, rep, &e);
            if (rep[1] != NULL && rep[1]->type == REDIS_REPLY_STRING) {
                snprintf(q->epoch, sizeof q->epoch, "%s", rep[1]->str);
            }
            freeReplyObject(rep[0]);
            freeReplyObject(rep[1]);
        }
        q->epoch_conn = conn;
    }
    snprintf(out, EPOCH_MAX, "%s", conn != 0 && rq_connection(w->rq) == conn ? q->epoch : "");
}

/* finish.lua's answer for job `job_id` (NULL: none): 1 settled, 0 not ours. A payload it
 * reserved is kept for the next turn; keys that it left alone (the job's, the queue's counts),
 * holding another type than pixq's, are logged. */
static int finish_reply(struct worker *w, const redisReply *r, const char *job_id)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer == 1 || r->integer == 2 ? (int)r->integer : 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
        return 0;
    }
    if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_INTEGER) {
        note_gate(w, w->cur, r->element[2]);
    }
    if (r->elements == 4 && r->element[3]->type == REDIS_REPLY_STRING) {
        log_foreign("finish", job_id != NULL ? job_id : "", r->element[3]->str, "left_alone");
    }
    const redisReply *next = r->element[1];
    if (next->type == REDIS_REPLY_STRING) {
        buf_reset(&w->next);
        if (buf_append(&w->next, next->str, next->len) == 0) {
            w->next_q = w->cur;
            w->next_lost = w->lost_at_call;
            note_epoch(w, w->cur, w->next_on);
        } else {
            w->check_active = true; /* out of memory: take it from the active list later */
        }
    }
    const redisReply *done = r->element[0];
    return done->type == REDIS_REPLY_INTEGER && (done->integer == 1 || done->integer == 2)
               ? (int)done->integer
               : 0;
}

static void keep_unsettled(struct worker *w, const struct buf *payload, const struct settlement *s);

/* Runs finish.lua, retrying through Redis outages. Returns 1 settled, 2 settled although Redis had
 * lost the job (s->forgotten_ok), 0 not ours, -1 gave up (the settlement is kept for when the
 * payload comes back from the active list). */
static int settle(struct worker *w, const struct buf *payload, const struct settlement *s)
{
    struct finish_call c;
    finish_call_init(w, payload, s, may_fold(w), &c);
    const char *id = settled_job(s->job_id, s->posted_id, s->task_of); /* for the log */
    long backoff = w->cfg->redis_retry_min_ms;
    for (long attempt = 0; attempt < w->cfg->settle_attempts; attempt++) {
        struct err e = {{0}};
        w->lost_at_call = lease_records_lost(w->lease); /* for a `next` it reserves */
        redisReply *r = rq_script(w->rq, RQ_SCRIPT_FINISH, 10, c.keys, 16, c.args, c.lens, &e);
        if (r != NULL) {
            int settled = finish_reply(w, r, id);
            freeReplyObject(r);
            return settled;
        }
        char q[ERR_MSG_MAX + 16];
        const char *named = id[0] != '\0' ? " job_id=" : ""; /* a wake-up token's names none */
        if (attempt + 1 >= w->cfg->settle_attempts) { /* the last: no wait for a try to come */
            LOG_WARN("redis_error", "step=finish%s%s queue=%s attempt=%ld error=%s", named, id,
                     w->cur->name, attempt + 1, log_quote(e.msg, q, sizeof q));
            break;
        }
        long wait = jittered(w, backoff);
        LOG_WARN("redis_error", "step=finish%s%s queue=%s attempt=%ld error=%s retry_ms=%ld", named,
                 id, w->cur->name, attempt + 1, log_quote(e.msg, q, sizeof q), wait);
        retry_nap(w, wait, e.msg); /* a stop waits for a refusal to pass: no second run */
        backoff = next_backoff(w, backoff);
        c.args[8] = ""; /* after a lost reply, a reserved next job would be a stray */
        c.lens[8] = 0;
    }
    w->check_active = true; /* still on the active list: settle it later */
    keep_unsettled(w, payload, s);
    return -1;
}

static char *copy_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void keep_unsettled(struct worker *w, const struct buf *payload, const struct settlement *s)
{
    if (s->job_id == NULL && s->posted_id == NULL && s->dead == NULL && s->retry == NULL) {
        return; /* nothing decided (a wake-up token): handling it again is harmless */
    }
    struct unsettled *u = &w->unsettled[0];
    for (size_t i = 0; i < UNSETTLED_MAX && u->payload.len > 0; i++) {
        struct unsettled *v = &w->unsettled[i];
        u = v->payload.len == 0 || v->seq < u->seq ? v : u; /* a free slot, else the oldest */
    }
    if (u->payload.len > 0) {
        LOG_WARN("unsettled_dropped",
                 "job_id=%s reason=more_than_kept kept=%d action=run_again_from_active_list",
                 unsettled_job(u), UNSETTLED_MAX);
    }
    forget_unsettled(u);
    buf_init(&u->payload, 0);
    u->q = w->cur;
    u->seq = ++w->unsettled_seq;
    u->job_id = copy_or_null(s->job_id);
    u->result = copy_or_null(s->result);
    u->dead = copy_or_null(s->dead);
    u->posted_id = copy_or_null(s->posted_id);
    u->posted = copy_or_null(s->posted);
    u->retry = copy_or_null(s->retry);
    u->counter = s->counter;
    u->retry_ms = s->retry_ms;
    u->run_by = copy_or_null(s->run_by);
    u->forgotten_ok = s->forgotten_ok;
    u->task_of = copy_or_null(s->task_of);
    if (buf_append(&u->payload, payload->data, payload->len) < 0 ||
        (s->job_id != NULL && u->job_id == NULL) || (s->result != NULL && u->result == NULL) ||
        (s->dead != NULL && u->dead == NULL) || (s->posted_id != NULL && u->posted_id == NULL) ||
        (s->posted != NULL && u->posted == NULL) || (s->retry != NULL && u->retry == NULL) ||
        (s->run_by != NULL && u->run_by == NULL) || (s->task_of != NULL && u->task_of == NULL)) {
        forget_unsettled(u); /* out of memory: it runs again from the active list */
    }
}

/* Settles the kept settlement `u` (of payload `payload`, in w->cur) as it was decided, and
 * frees its slot; settle() keeps it again (in a slot of its choice) if Redis still fails. */
static int settle_again(struct worker *w, struct unsettled *u, const struct buf *payload)
{
    struct unsettled kept = *u; /* settle() may keep it again, in another slot */
    *u = (struct unsettled){.counter = ""};
    const struct settlement s = {.job_id = kept.job_id,
                                 .result = kept.result != NULL ? kept.result : "",
                                 .dead = kept.dead,
                                 .counter = kept.counter,
                                 .posted_id = kept.posted_id,
                                 .posted = kept.posted,
                                 .retry = kept.retry,
                                 .retry_ms = kept.retry_ms,
                                 .run_by = kept.run_by,
                                 .forgotten_ok = kept.forgotten_ok,
                                 .task_of = kept.task_of};
    LOG_INFO("settle_resumed", "job_id=%s", unsettled_job(&kept));
    int settled = settle(w, payload == NULL ? &kept.payload : payload, &s);
    forget_unsettled(&kept);
    return settled;
}

/* A payload back from the active list whose settlement was decided: settles it as decided.
 * Returns whether it was one. */
static bool settle_kept(struct worker *w, const struct buf *payload)
{
    for (size_t i = 0; i < UNSETTLED_MAX; i++) {
        struct unsettled *u = &w->unsettled[i];
        if (u->payload.len == 0 || u->q != w->cur || u->payload.len != payload->len ||
            memcmp(u->payload.data, payload->data, payload->len) != 0) {
            continue;
        }
        settle_again(w, u, payload);
        return true;
    }
    return false;
}

/* Every active list was found empty: the kept settlements that may settle a job Redis lost
 * (forgotten_ok; their payload gone with the rest) are settled again, since their payload will
 * not come back from there. finish.lua stores a lost job's outcome (job_forgotten), or finds the
 * job another worker's (it was reaped meanwhile: lease_lost); one Redis still refuses is kept
 * again, for the next time the lists are found empty. Returns whether one was kept again. */
static bool settle_forgotten(struct worker *w)
{
    bool again = false;
    unsigned long upto = w->unsettled_seq; /* not those kept again meanwhile */
    for (size_t i = 0; i < UNSETTLED_MAX; i++) {
        struct unsettled *u = &w->unsettled[i];
        if (u->payload.len == 0 || !u->forgotten_ok || u->seq > upto) {
            continue;
        }
        use_queue(w, &w->q[u->q - w->q]);
        char job_id[JOB_ID_MAX];
        snprintf(job_id, sizeof job_id, "%s", u->job_id != NULL ? u->job_id : "");
        int settled = settle_again(w, u, NULL);
        again = again || settled < 0;
        if (settled == 2) {
            LOG_WARN("job_forgotten", "job_id=%s step=finish action=settled resumed=1", job_id);
        } else if (settled == 0) {
            LOG_WARN("lease_lost", "job_id=%s step=finish resumed=1", job_id);
        }
    }
    return again;
}

static void bury_unparseable(struct worker *w, const struct buf *payload, const char *why)
{
    char *dead = dead_envelope(payload->data, payload->len, NULL, why, 1);
    char q[ERR_MSG_MAX + 16];
    LOG_ERROR("job_unparseable", "queue=%s bytes=%zu error=%s", w->cur->name, payload->len,
              log_quote(why, q, sizeof q));
    metrics_count_job(METRICS_JOB_DEAD);
    if (dead != NULL) {
        const struct settlement s = {.result = "", .dead = dead, .counter = "failed"};
        settle(w, payload, &s);
    }
    free(dead);
}

/* Runs script `s` with the payload in hand's Redis steps: asked again through Redis outages,
 * as settle() does, the same call each time (the scripts that take the payload off the active
 * list this way find their own work done, or the payload lost with Redis's data, when an answer
 * was lost). Returns the answer, or NULL when Redis never gave one (or the worker stops, unless
 * Redis refuses for a passing reason: stop_ends_retries). */
static redisReply *script_retried(struct worker *w, const char *step, enum rq_script s, int nkeys,
                                  const char **keys, int nargs, const char **args,
                                  const size_t *lens, struct err *e)
{
    long backoff = w->cfg->redis_retry_min_ms;
    long t0 = clock_mono_ms();
    for (long attempt = 1;; attempt++) {
        redisReply *r = rq_script(w->rq, s, nkeys, keys, nargs, args, lens, e);
        long wait = jittered(w, backoff);
        /* no try may reach Redis once the call's own key (split.lua's, adopt.lua's KEYS[6])
         * could have expired: that call would do its work again */
        bool late = clock_mono_ms() - t0 + wait + 2 * w->cfg->redis_timeout_ms > CALL_RETRY_MAX_MS;
        if (r != NULL || attempt >= w->cfg->settle_attempts || stop_ends_retries(w, e->msg) ||
            late) {
            return r;
        }
        char q[ERR_MSG_MAX + 16];
        LOG_WARN("redis_error", "step=%s queue=%s attempt=%ld error=%s retry_ms=%ld", step,
                 w->cur->name, attempt, log_quote(e->msg, q, sizeof q), wait);
        retry_nap(w, wait, e->msg);
        backoff = next_backoff(w, backoff);
    }
}

/* Gives a job without a job_id one, and keeps the rewritten payload on the active list. When
 * Redis lost the reservation (it restarted without its data since), the job is kept there all
 * the same: this worker holds its only copy. */
static int adopt(struct worker *w, struct task *t, struct err *e)
{
    struct buf fresh;
    buf_init(&fresh, 0);
    if (job_assign_id(t->job, &fresh, e) < 0) {
        buf_finish(&fresh);
        return -1;
    }
    /* adopt.lua's KEYS[6]: this call kept the job after Redis lost it (the new id is its own) */
    char kept_key[RQ_KEY_MAX];
    job_key(w, t->job->id, "adopt", -1, kept_key, sizeof kept_key);
    const char *keys[] = {w->active_key, w->recov_key,      w->jobs_key,
                          w->stats_key,  w->cur->epoch_key, kept_key};
    const char *args[] = {t->payload.data, fresh.data, w->reserved_on};
    size_t lens[] = {t->payload.len, fresh.len, strlen(w->reserved_on)};
    redisReply *r = script_retried(w, "adopt", RQ_SCRIPT_ADOPT, 6, keys, 3, args, lens, e);
    long answer = r != NULL && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1;
    bool replied = r != NULL;
    freeReplyObject(r);
    if (answer != 1 && answer != 2) {
        buf_finish(&fresh);
        return replied ? err_set(e, "job was taken from this worker") : -1;
    }
    buf_finish(&t->payload);
    t->payload = fresh;
    if (answer == 2) {
        LOG_WARN("job_forgotten",
                 "job_id=%s step=adopt action=kept reason=\"Redis no longer knew the job it had "
                 "reserved: restarted without its data, or a failover or a flush lost it\"",
                 t->job->id);
    }
    return 0;
}

/* begin.lua's keys and arguments for task `t`'s job, and a new run_by for this run in t->run_by. */
struct begin_call {
    char key[RQ_KEY_MAX];
    const char *keys[2];
    const char *args[2];
};

static void begin_call_init(struct worker *w, struct task *t, struct begin_call *c)
{
    job_key(w, t->job->id, "job", -1, c->key, sizeof c->key);
    snprintf(t->run_by, sizeof t->run_by, "%s/%lu", w->id, ++w->runs_begun);
    c->keys[0] = c->key;
    c->keys[1] = w->stats_key;
    c->args[0] = w->ttl_arg;
    c->args[1] = t->run_by;
}

/* Sends begin.lua, which counts this run of the job, without waiting: begin_noted() reads its
 * answer once the job has run and settled, so that the round trip passes while the job fetches
 * its source and works, and finish.lua's goes with it (written behind it: rq_script), which
 * needs only the run's run_by, made here. A command the job sends Redis meanwhile (an upload's
 * rate limit) reads the answer first, and an upload waits for it (rq_wait_sent), so when Redis
 * answers the run is counted before any output leaves the worker (when it does not, the job
 * goes on, as it always did after a failed begin.lua). Returns whether it was sent. */
static bool begin_send(struct worker *w, struct task *t)
{
    struct begin_call c;
    begin_call_init(w, t, &c);
    struct err e = {{0}};
    return rq_script_send(w->rq, RQ_SCRIPT_BEGIN, 2, c.keys, 2, c.args, NULL, &e) == 0;
}

/* The run number in begin.lua's answer `r` ({first_seen, runs}; freed), 1 for the first, or -1
 * when there is none: then the run may or may not be counted (the call may have run and its
 * answer been lost), which the log says; the job goes on (its run_by unknown from then on). An
 * answer of another shape (begin.lua gives none) is taken as a first run. */
static long begin_answer(struct worker *w, struct task *t, redisReply *r, const struct err *e)
{
    w->first_seen_ms = reply_first_seen(r);
    if (r != NULL) {
        long runs =
            r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? (long)r->element[1]->integer : 1;
        freeReplyObject(r);
        return runs;
    }
    char q[ERR_MSG_MAX + 16];
    LOG_WARN("job_begin_failed", "job_id=%s error=%s", t->job->id, log_quote(e->msg, q, sizeof q));
    t->run_by[0] = '\0';
    return -1;
}

/* begin.lua run now, waiting for its answer: when it could not be sent ahead. The run number, or
 * -1. */
static long begin_now(struct worker *w, struct task *t)
{
    struct begin_call c;
    begin_call_init(w, t, &c);
    struct err e = {{0}};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_BEGIN, 2, c.keys, 2, c.args, NULL, &e);
    return begin_answer(w, t, r, &e);
}

/* The run number begin_send() counted (1 for the first), or -1 if Redis did not answer. */
static long begin_reply(struct worker *w, struct task *t)
{
    struct err e = {{0}};
    redisReply *r = rq_script_reply(w->rq, &e);
    return begin_answer(w, t, r, &e);
}

/* What `posted` in pixq:{Q}:job:<id> holds once a postback was delivered: an HMAC-SHA256 of the
 * result keyed by what else shapes the postback (its URL, v, content_type_json and
 * postback_headers). A run that would post the same is a rerun of a delivered one; a run with
 * another outcome (a stale run's failure, then the live run's success), or a job pushed again
 * under its id with other work, is not, and posts. */
static void postback_digest(const struct job *job, const char *json, char out[HASH_SHA256_HEX])
{
    bool as_json = false;
    struct err ignored;
    if (job_param_bool(job->root, "job", "content_type_json", false, &as_json, &ignored) < 0) {
        as_json = false;
    }
    struct buf key, to;
    buf_init(&key, 0);
    buf_init(&to, 0);
    if (job->postback_url == NULL && job->postback_save != NULL) { /* the result goes to S3 */
        buf_printf(&to, "s3://%s/%s", job->postback_save->bucket, job->postback_save->key);
    }
    const char *url = job->postback_url != NULL ? job->postback_url : to.data ? to.data : "";
    int rc = buf_printf(
        &key, "%s\n%g\n%d\n%s", url, job->v, as_json ? 1 : 0,
        job->postback_headers != NULL
            ? json_object_to_json_string_ext(job->postback_headers, JSON_C_TO_STRING_PLAIN)
            : "");
    uint8_t d[HASH_SHA256_LEN];
    const char *k = rc == 0 ? key.data : url; /* no memory: the URL alone */
    hash_hmac_sha256(k, strlen(k), json, strlen(json), d);
    hash_hex(d, sizeof d, out);
    buf_finish(&key);
    buf_finish(&to);
}

enum posting { POSTING_LOST, POSTING_DONE, POSTING_GO, POSTING_FORGOTTEN };

/* posting.lua, right before a postback: whether `payload` is still on this worker's active list
 * (a run whose lease was lost must not post: the run that has the job now does) and whether this
 * very postback was delivered; or whether Redis lost the job (POSTING_FORGOTTEN: post, this run
 * is the only one). When Redis cannot answer, post: at least once. */
static enum posting posting_check(struct worker *w, const struct buf *payload, const char *job_id,
                                  const char *digest)
{
    char key[RQ_KEY_MAX];
    job_key(w, job_id, "job", -1, key, sizeof key);
    const char *keys[] = {w->active_key, key};
    const char *args[] = {payload->data, digest};
    size_t lens[] = {payload->len, strlen(digest)};
    struct err e = {{0}};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_POSTING, 2, keys, 2, args, lens, &e);
    if (r == NULL && rq_disconnected(w->rq)) {
        /* the connection failed under it (a server that restarted closed it, and the close had
         * not reached us yet): posting.lua only reads, so it is asked once more, on a new one */
        e = (struct err){{0}};
        r = rq_script(w->rq, RQ_SCRIPT_POSTING, 2, keys, 2, args, lens, &e);
    }
    enum posting p = POSTING_GO;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        p = POSTING_LOST;
    } else if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        p = POSTING_DONE;
    } else if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 3) {
        p = POSTING_FORGOTTEN;
    }
    freeReplyObject(r);
    return p;
}

/* Whether the job has a postback to make for its result `json`: not when it names none, nor when
 * it asked for one only on failure (postback_error_only) and did not fail. */
static bool postback_due(const struct job *job, const char *json)
{
    if (job->postback_url == NULL && job->postback_save == NULL) {
        return false;
    }
    bool error_only = false;
    struct err e;
    return !(job_param_bool(job->root, "job", "postback_error_only", false, &error_only, &e) == 0 &&
             error_only && !result_json_failed(json));
}

/* Posts the result unless this run lost its job or the same postback was delivered already (a
 * rerun). The delivery is recorded by the finish.lua call that settles the payload right after
 * (settlement.posted_id and .posted, set when *sent, the digest in `digest`): a postback is
 * marked only once delivered, so a worker dying with it in flight leaves it to the rerun: at
 * least once. Redis is asked on every run, the first included: a run counted first may be the
 * stale one (its lease lost while it was paused) after another run posted. Returns 0 delivered
 * (or nothing to deliver), -1 failed, -2 the job is no longer this worker's (nothing posted),
 * RUN_POSTBACK_REFUSED failed for good (no retry can help; why in `e`). */
static int post_once(struct worker *w, const struct buf *payload, const struct job *job,
                     const char *json, char digest[HASH_SHA256_HEX], bool *sent, struct err *why)
{
    *sent = false;
    if (!postback_due(job, json)) {
        if (job->postback_url != NULL || job->postback_save != NULL) {
            LOG_DEBUG("postback_skipped", "job_id=%s reason=error_only", job->id);
        }
        return 0;
    }
    postback_digest(job, json, digest);
    switch (posting_check(w, payload, job->id, digest)) {
    case POSTING_LOST:
        return -2;
    case POSTING_DONE:
        LOG_INFO("postback_skipped", "job_id=%s reason=already_sent", job->id);
        return 0;
    case POSTING_FORGOTTEN:
        if (job_taken(w, payload, "before_postback", job->id)) { /* its hash merely expired */
            return -2;
        }
        LOG_WARN("job_forgotten", "job_id=%s step=before_postback action=post", job->id);
        break;
    case POSTING_GO:
        break;
    }
    int rc = run_postback(&w->runner, job, json, why);
    if (rc < 0) {
        return rc == RUN_POSTBACK_REFUSED ? rc : -1;
    }
    *sent = true;
    return 0;
}

static bool wants_postback_retry(struct worker *w, const struct job *j)
{
    bool retry = false;
    struct err e;
    return w->cfg->postback_retry ||
           (job_param_bool(j->root, "job", "retry_postback", false, &retry, &e) == 0 && retry);
}

/* One of pixq's own entries: RQ_TASK_MARK and the JSON of `env` (malloc'd; NULL: no memory). */
static char *task_text(json_object *env)
{
    const char *json = json_object_to_json_string_ext(env, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = strlen(json);
    char *s = malloc(RQ_TASK_MARK_LEN + n + 1);
    if (s != NULL) {
        memcpy(s, RQ_TASK_MARK, RQ_TASK_MARK_LEN);
        memcpy(s + RQ_TASK_MARK_LEN, json, n + 1);
    }
    return s;
}

/* The retry after failed postback attempt `attempt` (1-based; at most as many as
 * PIXQ_POSTBACK_RETRY_DELAYS_S has waits, Blitline's 1, 3, 15 and 600 s by default) of a job:
 * pixq-task:{"pixq_postback": {"job", "job_id", "attempt"}}, its body the stored result:<id>.
 * finish.lua schedules it (on Redis's clock) in the step that settles the payload, so that neither
 * a lost answer nor a crash between the two drops it. Sets s->retry and s->retry_ms; returns the
 * text (malloc'd, to free once settled; NULL: no memory, and no retry). */
static char *postback_retry(struct worker *w, const char *job_text, const char *job_id,
                            long attempt, struct settlement *s)
{
    json_object *env = json_object_new_object(), *task = json_object_new_object();
    json_object_object_add(task, "job", json_object_new_string(job_text));
    json_object_object_add(task, "job_id", json_object_new_string(job_id));
    json_object_object_add(task, "attempt", json_object_new_int64(attempt));
    json_object_object_add(env, "pixq_postback", task);
    char *text = task_text(env);
    json_object_put(env);
    s->retry = text;
    s->retry_ms = w->postback_delays.s[attempt - 1] * 1000;
    /* the receiver's Retry-After (429, 503), up to PIXQ_RETRY_AFTER_MAX_MS, when it is longer */
    if (w->runner.postback_retry_after_ms > s->retry_ms) {
        s->retry_ms = w->runner.postback_retry_after_ms;
    }
    return text;
}

static void log_postback_retry(const char *job_id, long attempt, const struct settlement *s,
                               int settled)
{
    /* not settled: another worker took the job, or Redis ran the call and its answer was lost */
    LOG_INFO("postback_retry", "job_id=%s attempt=%ld in_ms=%ld scheduled=%s", job_id, attempt + 1,
             s->retry_ms, settled == 1 ? "1" : "unknown");
}

/* Counts how a postback attempt ended: post_once()'s `posted` (nothing for -2, a lost job),
 * whether it `sent` one, whether a retry of it was asked for (`retry`), and settle()'s answer:
 * a failed attempt whose settlement found the lease lost (0) is not counted, the retry not
 * scheduled (finish.lua wrote nothing) and the job another worker's, whose run posts back. */
static void count_postback(int posted, bool sent, bool retry, int settled)
{
    if (posted == 0 && sent) {
        metrics_count_postback(METRICS_POSTBACK_DELIVERED);
    } else if (posted == RUN_POSTBACK_REFUSED) {
        metrics_count_postback(METRICS_POSTBACK_REFUSED);
    } else if (posted == -1 && settled != 0) {
        metrics_count_postback(retry ? METRICS_POSTBACK_RETRIED : METRICS_POSTBACK_GIVEN_UP);
    }
}

/* A postback whose target is refused for good (RUN_POSTBACK_REFUSED): no retry is scheduled. */
static void log_postback_refused(const char *job_id, long attempt, const struct err *why)
{
    char q[ERR_MSG_MAX + 16];
    LOG_ERROR("postback_given_up", "job_id=%s reason=refused attempt=%ld error=%s", job_id, attempt,
              log_quote(why->msg, q, sizeof q));
}

/* ---------------------------------------------------------------- parked uploads */

static char *task_envelope(json_object *task)
{
    json_object *env = json_object_new_object();
    json_object_object_add(env, "pixq_upload", json_object_get(task));
    char *s = task_text(env);
    json_object_put(env);
    return s;
}

#define PARK_FIXED_ARGS 5 /* park.lua's arguments before those of the outputs */

/* The arguments of one park.lua call (see its header): 6 fixed keys and 5 args, then per parked
 * output a blob key and three args. */
struct park_call {
    size_t n;
    const char **keys, **args;
    size_t *lens;
    char (*blob_keys)[RQ_KEY_MAX];
    char (*delays)[32];
    char **envs;
};

static void park_call_free(struct park_call *c)
{
    for (size_t i = 0; c->envs != NULL && i < c->n; i++) {
        free(c->envs[i]);
    }
    free(c->envs);
    free(c->delays);
    free(c->blob_keys);
    free(c->lens);
    free(c->args);
    free(c->keys);
}

static int park_call_init(struct park_call *c, size_t n)
{
    c->n = n;
    c->keys = calloc(6 + n, sizeof *c->keys);
    c->args = calloc(PARK_FIXED_ARGS + 3 * n, sizeof *c->args);
    c->lens = calloc(PARK_FIXED_ARGS + 3 * n, sizeof *c->lens);
    c->blob_keys = calloc(n + 1, RQ_KEY_MAX);
    c->delays = calloc(n + 1, 32);
    c->envs = calloc(n + 1, sizeof *c->envs);
    return c->keys && c->args && c->lens && c->blob_keys && c->delays && c->envs ? 0 : -1;
}

/* Fills the per-output keys and args from the runner's parked outputs. */
static int park_call_outputs(struct worker *w, const char *job_id, struct park_call *c)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct run_parked *p = &w->runner.parked[i];
        int n = json_object_get_int(json_object_object_get(p->task, "n"));
        job_key(w, job_id, "blob", n, c->blob_keys[i], RQ_KEY_MAX);
        c->envs[i] = task_envelope(p->task);
        if (c->envs[i] == NULL) {
            return -1;
        }
        long delay = p->due_ms - clock_mono_ms(); /* the job went on since the output parked */
        snprintf(c->delays[i], 32, "%ld", delay > 0 ? delay : 0);
        c->keys[6 + i] = c->blob_keys[i];
        c->args[PARK_FIXED_ARGS + 3 * i] = c->envs[i];
        c->lens[PARK_FIXED_ARGS + 3 * i] = strlen(c->envs[i]);
        c->args[PARK_FIXED_ARGS + 1 + 3 * i] = c->delays[i];
        c->lens[PARK_FIXED_ARGS + 1 + 3 * i] = strlen(c->delays[i]);
        c->args[PARK_FIXED_ARGS + 2 + 3 * i] = (const char *)p->data;
        c->lens[PARK_FIXED_ARGS + 2 + 3 * i] = p->len;
    }
    return 0;
}

/* Plans the next look at `wq`'s delayed work for `wake` (monotonic ms) if that is sooner: a due
 * time, so the reservation stops a Redis tick early (due_soon) rather than wake when Redis's
 * blocking timeout, checked once a tick, ends up to a tick late. */
static void plan_due(struct wqueue *wq, long wake)
{
    if (wake < wq->next_promote_at) {
        wq->next_promote_at = wake;
        wq->due_soon = true;
    }
}

static void stranded(struct worker *w, const char *step, const char *job_id, const char *why);

/* The job hash holds another type than pixq's (park.lua's {-2, "KEY=TYPE"}, `foreign`): the
 * outputs cannot wait in Redis for their upload. Each fails, with the reason in the result, and
 * the job completes now. */
static void park_refused(struct worker *w, struct task *t, const char *foreign)
{
    char msg[ERR_MSG_MAX];
    log_foreign("park", t->job->id, foreign, "outputs_failed");
    const char *eq = strrchr(foreign, '=');
    int key_len = eq != NULL ? (int)(eq - foreign) : (int)strlen(foreign);
    snprintf(msg, sizeof msg,
             "Image processing failed. Outputs waiting for their turn to upload (the bucket's "
             "rate limit) cannot wait in Redis: key %.*s holds a %s, not this job's state "
             "(written there by hand or by another program); remove it and submit the job again",
             key_len, foreign, eq != NULL ? eq + 1 : "value of another type");
    result_add_error(t->result, msg);
    if (t->first_error[0] == '\0') {
        snprintf(t->first_error, sizeof t->first_error, "%s", msg);
    }
    for (size_t i = 0; i < w->runner.n_parked; i++) {
        json_object *id = NULL;
        json_object_object_get_ex(w->runner.parked[i].task, "image_identifier", &id);
        result_add_failed(t->result, id != NULL ? json_object_get_string(id) : "");
        metrics_count_output(METRICS_OUTPUT_FAILED); /* counted parked when it was deferred */
    }
}

/* park.lua: the job leaves the active list; its parked outputs wait in Redis. Returns false, or
 * true when the job is to complete now instead (park_refused()). */
static bool park_job(struct worker *w, struct task *t)
{
    struct park_call c = {0};
    char job_hash[RQ_KEY_MAX], ttl[32];
    struct err e = {{0}};
    redisReply *r = NULL;
    job_key(w, t->job->id, "job", -1, job_hash, sizeof job_hash);
    snprintf(ttl, sizeof ttl, "%ld", w->cfg->blob_ttl_s);
    const char *objs = json_object_to_json_string_ext(w->runner.objs, JSON_C_TO_STRING_PLAIN);
    const char *fixed_keys[] = {w->active_key, job_hash,     w->delayed_key,
                                w->stats_key,  w->recov_key, w->cur->parked_key};
    char *base = result_json_numbered(t->result); /* its images' save numbers: see assembly */
    /* "forgotten": parked all the same when Redis lost the job (park.lua), else it is lost */
    const char *fixed_args[PARK_FIXED_ARGS] = {t->payload.data, base, ttl, objs,
                                               forgotten_arg(w, &t->payload, "park", t->job->id)};
    if (base != NULL && park_call_init(&c, w->runner.n_parked) == 0 &&
        park_call_outputs(w, t->job->id, &c) == 0) {
        for (size_t i = 0; i < PARK_FIXED_ARGS; i++) {
            c.args[i] = fixed_args[i];
            c.lens[i] = i == 0 ? t->payload.len : strlen(fixed_args[i]);
        }
        memcpy(c.keys, fixed_keys, sizeof fixed_keys);
        r = rq_script(w->rq, RQ_SCRIPT_PARK, (int)(6 + c.n), c.keys,
                      (int)(PARK_FIXED_ARGS + 3 * c.n), c.args, c.lens, &e);
    }
    /* {parked or -1, 1 if Redis had lost the job}; without "forgotten", parked or -1 */
    bool pair = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[1]->type == REDIS_REPLY_INTEGER;
    const redisReply *parked = pair ? r->element[0] : r;
    bool answered = parked != NULL && parked->type == REDIS_REPLY_INTEGER;
    bool refused = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == -2 &&
                   r->element[1]->type == REDIS_REPLY_STRING;
    char q[ERR_MSG_MAX + 16];
    if (refused) {
        park_refused(w, t, r->element[1]->str);
    } else if (answered && parked->integer >= 0) {
        if (pair && r->element[1]->integer == 1) {
            LOG_WARN("job_forgotten",
                     "job_id=%s step=park action=parked reason=\"Redis no longer knew the job: "
                     "restarted without its data, or a failover or a flush lost it\"",
                     t->job->id);
        }
        LOG_INFO("job_parked", "job_id=%s outputs=%zu", t->job->id, c.n);
        metrics_count_job(METRICS_JOB_PARKED);
        w->cur->gate_at = 0; /* the parked bytes grew: asked at the next reservation */
        for (size_t i = 0; i < c.n; i++) {
            plan_due(w->cur, w->runner.parked[i].due_ms);
        }
    } else if (!answered) { /* still on the active list: run it again */
        stranded(w, "park", t->job->id,
                 e.msg[0]    ? e.msg
                 : r == NULL ? "out of memory"
                             : "bad reply");
    } else {
        LOG_WARN("park_failed", "job_id=%s error=%s", t->job->id,
                 log_quote("lease lost", q, sizeof q));
    }
    freeReplyObject(r);
    park_call_free(&c);
    free(base);
    return refused;
}

/* A task that met a Redis error where it should have left the active list stays there and runs
 * again from there: each step of an upload task can run twice (the PUT of the same bytes,
 * upload_done.lua's HSETNX), a job runs again as after a crash. It runs again after a nap that
 * doubles each time tasks strand in a row (PIXQ_REDIS_RETRY_MIN_MS up to PIXQ_REDIS_RETRY_MAX_MS):
 * a Redis that answers reads but refuses writes (out of memory, a failed save) does not turn it
 * into a loop of PUTs or downloads. */
static void stranded(struct worker *w, const char *step, const char *job_id, const char *why)
{
    w->strand_wait_ms = next_backoff(w, w->strand_wait_ms);
    long wait = jittered(w, w->strand_wait_ms);
    char q[ERR_MSG_MAX + 16];
    LOG_WARN("task_stranded", "job_id=%s step=%s error=%s retry_ms=%ld", job_id, step,
             log_quote(why != NULL ? why : "", q, sizeof q), wait);
    w->check_active = true;
    w->stranded_now = true;
    nap(w, wait);
}

/* What send_parked() and record_upload() return besides the outputs still pending (>= 0). */
enum {
    PARKED_GONE = -1,    /* the job hash is gone (expired): nothing to complete */
    PARKED_DELAYED = -2, /* the task went back to `delayed` */
    PARKED_LEFT = -3,    /* not to settle here: another worker took the task, or a Redis error
                            stranded it (it stays on the active list and runs again) */
    PARKED_OTHERS = -4,  /* recorded before; another output's task completes the job */
    PARKED_FOREIGN = -5, /* the job hash holds another type than pixq's: nothing to complete */
};

/* upload_done.lua: records how parked output n ended. Returns the outputs still pending, or a
 * PARKED_ code: GONE, OTHERS, FOREIGN (logged here), or LEFT on a Redis error (stranded()). */
static long record_upload(struct worker *w, const char *job_id, int n, const char *kind,
                          const char *a, const char *b)
{
    char job_hash[RQ_KEY_MAX], blob[RQ_KEY_MAX], nbuf[16];
    job_key(w, job_id, "job", -1, job_hash, sizeof job_hash);
    job_key(w, job_id, "blob", n, blob, sizeof blob);
    snprintf(nbuf, sizeof nbuf, "%d", n);
    const char *keys[] = {job_hash, blob, w->cur->parked_key};
    const char *args[] = {nbuf, kind, a, b};
    struct err e = {{0}};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_UPLOAD_DONE, 3, keys, 4, args, NULL, &e);
    long pending = PARKED_LEFT;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        pending = r->integer == -2   ? PARKED_OTHERS
                  : r->integer == -3 ? PARKED_FOREIGN
                  : r->integer < 0   ? PARKED_GONE
                                     : (long)r->integer;
        if (pending == PARKED_FOREIGN) {
            log_foreign("upload_done", job_id, job_hash, "job_state_lost");
        }
    } else {
        stranded(w, "upload_done", job_id, e.msg[0] ? e.msg : "bad reply");
    }
    freeReplyObject(r);
    return pending;
}

struct field_entry {
    long n;
    const char *value;
};

static int by_n(const void *a, const void *b)
{
    long x = ((const struct field_entry *)a)->n, y = ((const struct field_entry *)b)->n;
    return (x > y) - (x < y);
}

/* Appends the values of the hash fields "<prefix>:<n>" to `arr`, in n order (parsed as JSON
 * when `parse`, else as strings), and each one's n to `numbers` unless it is NULL (room for
 * h->elements / 2). Returns how many. */
static size_t add_fields(const redisReply *h, const char *prefix, json_object *arr, bool parse,
                         long *numbers)
{
    size_t plen = strlen(prefix), count = 0;
    struct field_entry *v = calloc(h->elements / 2 + 1, sizeof *v);
    for (size_t i = 0; v != NULL && i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str;
        char *end;
        if (strncmp(f, prefix, plen) == 0 && f[plen] == ':') {
            long n = strtol(f + plen + 1, &end, 10);
            if (*end == '\0') {
                v[count++] = (struct field_entry){n, h->element[i + 1]->str};
            }
        }
    }
    qsort(v, count, sizeof *v, by_n);
    for (size_t i = 0; i < count; i++) {
        json_object_array_add(arr, parse ? json_tokener_parse(v[i].value)
                                         : json_object_new_string(v[i].value));
        if (numbers != NULL) {
            numbers[i] = v[i].n;
        }
    }
    free(v);
    return count;
}

static void deliver(struct worker *w, struct task *t, const struct job *job, const char *json,
                    const char *first_error, long t0);
static int requeue(struct worker *w, struct task *t, const char *next, long delay,
                   const char *counter, const char *parked_id, int parked_n, struct err *e);

struct numbered_image {
    long n;
    json_object *img;
};

static int by_number(const void *a, const void *b)
{
    long x = ((const struct numbered_image *)a)->n, y = ((const struct numbered_image *)b)->n;
    return (x > y) - (x < y);
}

/* Puts the images back in the order of their saves: the first `base` of `images` were
 * uploaded with the job (numbered by RESULT_ORDER_MEMBER), the `parked` after them are numbered
 * by `numbers`. Without numbers (a state written by an older worker) the order stays as it is:
 * the job's own first. */
static void order_images(json_object *results, size_t base, const long *numbers, size_t parked)
{
    json_object *images = json_object_object_get(results, "images");
    json_object *own = json_object_object_get(results, RESULT_ORDER_MEMBER);
    size_t n = json_object_array_length(images);
    bool numbered = numbers != NULL && base + parked == n &&
                    json_object_is_type(own, json_type_array) &&
                    json_object_array_length(own) == base;
    struct numbered_image *v = numbered ? calloc(n + 1, sizeof *v) : NULL;
    if (v != NULL) {
        for (size_t i = 0; i < n; i++) {
            v[i].n = i < base ? (long)json_object_get_int64(json_object_array_get_idx(own, i))
                              : numbers[i - base];
            v[i].img = json_object_array_get_idx(images, i);
        }
        qsort(v, n, sizeof *v, by_number);
        json_object *sorted = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
            json_object_array_add(sorted, json_object_get(v[i].img));
        }
        json_object_object_add(results, "images", sorted);
    }
    free(v);
    json_object_object_del(results, RESULT_ORDER_MEMBER);
}

/* Adds the parked outputs' outcomes (hash `h`) to the result document and `objs_out`. */
static void assemble_parked(const redisReply *h, json_object *results, json_object *objs_out,
                            const char *objs)
{
    const char *names[] = {"images", "errors", "failed_image_identifiers"};
    const char *prefixes[] = {"img", "err", "fail"};
    json_object *own = json_object_object_get(results, "images");
    size_t base = own != NULL ? json_object_array_length(own) : 0, parked = 0;
    long *numbers = calloc(h->elements / 2 + 1, sizeof *numbers); /* of the parked images */
    for (int i = 0; i < 3; i++) {
        json_object *arr = json_object_object_get(results, names[i]);
        if (arr == NULL) {
            arr = json_object_new_array();
            json_object_object_add(results, names[i], arr);
        }
        size_t added = add_fields(h, prefixes[i], arr, i == 0, i == 0 ? numbers : NULL);
        parked = i == 0 ? added : parked;
        if (i > 0 && json_object_array_length(arr) == 0) {
            json_object_object_del(results, names[i]); /* present only when something failed */
        }
    }
    json_object *before = objs != NULL ? json_tokener_parse(objs) : NULL;
    for (size_t i = 0; before != NULL && i < json_object_array_length(before); i++) {
        json_object_array_add(objs_out, json_object_get(json_object_array_get_idx(before, i)));
    }
    json_object_put(before);
    add_fields(h, "obj", objs_out, true, NULL);
    order_images(results, base, numbers, parked);
    free(numbers);
}

static const char *first_string(json_object *arr)
{
    return arr != NULL && json_object_array_length(arr) > 0
               ? json_object_get_string(json_object_array_get_idx(arr, 0))
               : "";
}

/* The parked job's last output is settled: assemble its result from the job hash and deliver. */
static void complete_parked(struct worker *w, struct task *t, const char *job_id, long t0)
{
    char job_hash[RQ_KEY_MAX];
    job_key(w, job_id, "job", -1, job_hash, sizeof job_hash);
    struct err e = {{0}};
    redisReply *h = rq_command(w->rq, &e, "HGETALL %s", job_hash);
    if (h == NULL && wrong_type(&e)) {
        log_foreign("complete", job_id, job_hash, "job_state_lost");
        const struct settlement s = {.result = "", .counter = "", .task_of = job_id};
        settle(w, &t->payload, &s);
        return;
    }
    if (h == NULL || h->type != REDIS_REPLY_ARRAY) {
        stranded(w, "complete", job_id, e.msg[0] ? e.msg : "bad reply");
        freeReplyObject(h);
        return;
    }
    const char *payload = NULL, *base = NULL, *objs = NULL;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str, *v = h->element[i + 1]->str;
        payload = strcmp(f, "payload") == 0 ? v : payload;
        base = strcmp(f, "base") == 0 ? v : base;
        objs = strcmp(f, "objs") == 0 ? v : objs;
    }
    struct job *job = payload != NULL ? job_parse(payload, strlen(payload), &w->limits, &e) : NULL;
    json_object *doc = base != NULL ? json_tokener_parse(base) : NULL;
    json_object *results = doc != NULL ? json_object_object_get(doc, "results") : NULL;
    if (job == NULL || results == NULL) {
        LOG_ERROR("parked_job_lost", "job_id=%s reason=state_unreadable", job_id);
        const struct settlement s = {.result = "", .counter = "", .task_of = job_id};
        settle(w, &t->payload, &s);
    } else {
        run_release(&w->runner); /* the objects of this job only, for wait_for_s3 */
        assemble_parked(h, results, w->runner.objs, objs);
        const char *first = first_string(json_object_object_get(results, "errors"));
        deliver(w, t, job,
                json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE),
                first, t0);
    }
    json_object_put(doc);
    job_destroy(job);
    freeReplyObject(h);
}

/* Fetches a parked output's bytes: 1; 2 if the blob is gone because an earlier run of the task
 * recorded the output (upload_done.lua deletes it), 0 if it is gone otherwise (expired, or the
 * job hash it would be recorded in holds another type than pixq's), 3 if the blob's key holds
 * another type than pixq's (log_foreign()); -1 on a Redis error or out of memory (stranded()). */
static int load_blob(struct worker *w, const char *job_id, int n, struct buf *out)
{
    char key[RQ_KEY_MAX], job_hash[RQ_KEY_MAX];
    job_key(w, job_id, "blob", n, key, sizeof key);
    job_key(w, job_id, "job", -1, job_hash, sizeof job_hash);
    struct err e = {{0}};
    redisReply *r = rq_command(w->rq, &e, "GET %s", key);
    if (r == NULL && wrong_type(&e)) {
        log_foreign("load_blob", job_id, key, "output_failed");
        return 3;
    }
    if (r != NULL && r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        r = rq_command(w->rq, &e, "HEXISTS %s done:%d", job_hash, n);
        if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
            int rc = r->integer == 1 ? 2 : 0;
            freeReplyObject(r);
            return rc;
        }
        if (r == NULL && wrong_type(&e)) {
            return 0; /* upload_done.lua tells and drops the job */
        }
    }
    int rc =
        r != NULL && r->type == REDIS_REPLY_STRING && buf_append(out, r->str, r->len) == 0 ? 1 : -1;
    if (rc < 0) {
        stranded(w, "load_blob", job_id, e.msg[0] ? e.msg : "bad reply or out of memory");
    }
    freeReplyObject(r);
    return rc;
}

/* An upload task's member `name` ("image_identifier", "bucket"), "" when it has none as a
 * string: a task pixq did not write (by hand, or damaged) is one of its own entries all the
 * same, and fails its output. */
static const char *task_member(json_object *task, const char *name)
{
    json_object *v = json_object_object_get(task, name);
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* Records a parked output that is now uploaded: its image entry for the postback and its object
 * for wait_for_s3. Returns what record_upload() returns. */
static long record_uploaded(struct worker *w, json_object *task, const char *job_id, int n,
                            const char *url)
{
    /* build_task wrote these members */
    const char *id = task_member(task, "image_identifier");
    const char *key = json_object_get_string(json_object_object_get(task, "key"));
    bool keys = json_object_get_boolean(json_object_object_get(task, "return_keys"));
    json_object *img =
        result_image(id, url, keys ? key : NULL,
                     (long)json_object_get_int64(json_object_object_get(task, "width")),
                     (long)json_object_get_int64(json_object_object_get(task, "height")));
    result_image_add_meta(img, json_object_object_get(task, "extended_meta"));
    if (json_object_get_boolean(json_object_object_get(task, "is_blank"))) {
        json_object_object_add(img, "is_blank", json_object_new_boolean(1)); /* check_blank */
    }
    json_object *obj = json_object_new_object();
    const char *names[] = {"bucket", "region", "key"};
    for (int i = 0; i < 3; i++) {
        json_object *v = json_object_object_get(task, names[i]);
        if (v != NULL) {
            json_object_object_add(obj, names[i], json_object_get(v));
        }
    }
    const int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    json_object *listed = json_object_object_get(task, "listed"); /* a pre_process output's */
    bool unlisted = listed != NULL && !json_object_get_boolean(listed);
    long pending = record_upload(w, job_id, n, unlisted ? "obj" : "img",
                                 unlisted ? "" : json_object_to_json_string_ext(img, flags),
                                 json_object_to_json_string_ext(obj, flags));
    json_object_put(img);
    json_object_put(obj);
    return pending;
}

/* Sends a parked output; returns the outputs of its job still pending, or a PARKED_ code. */
static long send_parked(struct worker *w, struct task *t, json_object *task, const char *job_id,
                        int n)
{
    const char *id = task_member(task, "image_identifier");
    struct buf blob, url;
    buf_init(&blob, 0);
    buf_init(&url, 0);
    struct err e = {{0}};
    long delay = 0, pending;
    enum up_outcome out = UP_FAILED;
    int got = load_blob(w, job_id, n, &blob);
    if (got == 0 || got == 3) {
        err_set(&e,
                got == 0 ? "the encoded output '%.200s' expired before it could be uploaded"
                         : "the encoded output '%.200s' could not be read back for its upload: "
                           "its Redis key holds another type than pixq's (written there by hand "
                           "or by another program)",
                id);
        metrics_count_output(METRICS_OUTPUT_FAILED);
    } else if (got == 1) {
        out = run_send(&w->runner, task, blob.data, blob.len, &url, &delay, &e);
    }
    if (got < 0) {
        pending = PARKED_LEFT;
    } else if (got == 2) { /* recorded by a run that then met a Redis error: changes nothing */
        pending = record_upload(w, job_id, n, "err", "", id);
    } else if (out == UP_PARK) {
        char *next = task_envelope(task);
        int rc = next != NULL ? requeue(w, t, next, delay, "throttled", job_id, n, &e) : -1;
        if (rc < 0) {
            stranded(w, "requeue", job_id, next != NULL ? e.msg : "out of memory");
        } else if (rc == 0) {
            LOG_WARN("lease_lost", "job_id=%s step=requeue", job_id);
        }
        pending = rc == 1 ? PARKED_DELAYED : PARKED_LEFT;
        free(next);
    } else if (out == UP_DONE) {
        pending = record_uploaded(w, task, job_id, n, url.data);
    } else {
        char q[ERR_MSG_MAX + 16], qi[JOB_IDENTIFIER_MAX + 16], qb[4 * S3_BUCKET_MAX + 8];
        LOG_WARN("upload_failed", "job_id=%s image_identifier=%s bucket=%s error=%s", job_id,
                 log_quote(id, qi, sizeof qi),
                 log_quote(task_member(task, "bucket"), qb, sizeof qb),
                 log_quote(e.msg, q, sizeof q));
        pending = record_upload(w, job_id, n, "err", e.msg, id);
    }
    buf_finish(&blob);
    buf_finish(&url);
    return pending;
}

/* Why a parked output's job state is gone: "data_lost" when the token of the queue's data
 * (note_epoch) is no longer the one the task was reserved in (Redis restarted without its data,
 * failed over to a replica that never had it, was flushed), else "state_expired" (kept
 * PIXQ_BLOB_TTL_S past its due time). */
static const char *state_gone_reason(struct worker *w)
{
    if (w->reserved_on[0] == '\0') {
        return "state_expired";
    }
    struct err e = {{0}};
    redisReply *r = rq_command(w->rq, &e, "GET %s", w->cur->epoch_key);
    bool lost = r != NULL && (r->type == REDIS_REPLY_NIL || (r->type == REDIS_REPLY_STRING &&
                                                             strcmp(r->str, w->reserved_on) != 0));
    freeReplyObject(r);
    return lost ? "data_lost" : "state_expired";
}

/* An upload task (park.lua): {"pixq_upload": task}. A task that crashed its workers too often
 * (`poisoned`: why, else NULL) is not tried again: its output fails, and the job completes
 * without it when it was the last. */
static void handle_upload(struct worker *w, struct task *t, json_object *task, const char *poisoned)
{
    long t0 = clock_mono_ms();
    json_object *idv = json_object_object_get(task, "job_id");
    const char *job_id = idv != NULL ? json_object_get_string(idv) : "";
    int n = json_object_get_int(json_object_object_get(task, "n"));
    long pending;
    if (poisoned == NULL && job_taken(w, &t->payload, "upload", job_id)) {
        return; /* the task went back to the queue: whoever has it now uploads */
    }
    if (poisoned == NULL) {
        pending = send_parked(w, t, task, job_id, n);
    } else {
        const char *id = task_member(task, "image_identifier");
        char why[ERR_MSG_MAX], q[ERR_MSG_MAX + 16], qi[JOB_IDENTIFIER_MAX + 16],
            qb[4 * S3_BUCKET_MAX + 8];
        snprintf(why, sizeof why, "the upload of '%.100s' failed: %.200s", id, poisoned);
        LOG_ERROR("upload_poisoned", "job_id=%s image_identifier=%s bucket=%s error=%s", job_id,
                  log_quote(id, qi, sizeof qi),
                  log_quote(task_member(task, "bucket"), qb, sizeof qb),
                  log_quote(why, q, sizeof q));
        metrics_count_output(METRICS_OUTPUT_FAILED);
        pending = record_upload(w, job_id, n, "err", why, id);
    }
    if (pending == 0) {
        complete_parked(w, t, job_id, t0);
    }
    if (pending == 0 || pending == PARKED_DELAYED || pending == PARKED_LEFT) {
        return; /* completed, back in delayed, or not to settle here */
    }
    if (pending == PARKED_GONE) {
        LOG_WARN("parked_job_lost", "job_id=%s reason=%s", job_id, state_gone_reason(w));
    }
    /* other outputs still pending */
    const struct settlement s = {.result = "", .counter = "", .task_of = job_id};
    settle(w, &t->payload, &s);
}

/* ---------------------------------------------------------------- one job */

/* Whether the job asked to wait until its objects can be read (Blitline's wait_for_s3). */
static bool job_wants_wait_for_s3(const struct job *j)
{
    bool wait = false;
    struct err e;
    return job_param_bool(j->root, "job", "wait_for_s3", false, &wait, &e) == 0 && wait;
}

/* The job's payload without the run number pixq wrote into it (a retried dead job starts afresh),
 * in `out`; short of memory, the job's document as json-c writes it. */
static const char *job_text(const struct job *job, struct buf *out)
{
    if (job_text_afresh(job, out) == 0) {
        return out->data;
    }
    json_object_object_del(job->root, "pixq_attempt");
    return json_object_to_json_string_ext(job->root,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* What a postback retry task keeps of the job to post its result again: its payload (job_text()),
 * or, of a salvaged job (up to JOB_SALVAGE_MAX bytes, read again at each try), the members a
 * postback reads, its id among them. */
static const char *postback_text(const struct job *job, struct buf *out)
{
    if (!job->salvaged) {
        return job_text(job, out);
    }
    json_object_object_add(job->root, "job_id", json_object_new_string(job->id));
    return json_object_to_json_string_ext(job->root,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* Reads begin.lua's answer if it was sent ahead and is not read yet, and notes the run: in the
 * log if it is a rerun, in the metrics. Once a job, after its settlement went out (complete) or
 * once it is parked or put back to run later: reading the answer sooner would cost a no-op job a
 * round trip of its own. */
static void begin_noted(struct worker *w, struct task *t)
{
    if (!t->unnoted) {
        return;
    }
    t->unnoted = false;
    if (w->begin_ahead) {
        w->begin_ahead = false;
        t->run = begin_reply(w, t);
    }
    if (t->run > 1) {
        LOG_INFO("job_rerun", "job_id=%s run=%ld", t->job->id, t->run);
    }
    metrics_job_reserved(t->job, t->run, t->started_ms);
}

/* Posts a finished job's result back (once) and settles it: the common end of a job, whether its
 * last output was uploaded by the worker that ran it or by the one that ran a parked upload.
 * `payload` is what this worker holds on its active list (the job, or an upload task). */
static void deliver(struct worker *w, struct task *t, const struct job *job, const char *json,
                    const char *first_error, long t0)
{
    bool failed = first_error[0] != '\0';
    lease_delivering(w->lease, true); /* until settled: a stop's deadline waits for it */
    if (job_wants_wait_for_s3(job)) {
        long w0 = clock_mono_us();
        up_wait_for_s3(&w->runner.up, w->runner.objs, job->id);
        w->runner.times.s3_wait_us += clock_mono_us() - w0;
    }
    bool sent = false;
    char digest[HASH_SHA256_HEX] = "";
    struct err why = {{0}};
    int posted = post_once(w, &t->payload, job, json, digest, &sent, &why);
    if (posted == -2) {
        LOG_WARN("lease_lost", "job_id=%s step=before_postback", job->id);
    } else if (posted == RUN_POSTBACK_REFUSED && wants_postback_retry(w, job)) {
        log_postback_refused(job->id, 1, &why);
    }
    long attempts = job_attempt(job);
    struct buf text;
    buf_init(&text, 0);
    const char *dead_job = failed ? job_text(job, &text) : NULL; /* made only when needed */
    char *dead =
        failed ? dead_envelope(dead_job, strlen(dead_job), job->id, first_error, attempts) : NULL;
    struct settlement s = {.job_id = job->id,
                           .result = json,
                           .dead = dead,
                           .posted_id = sent ? job->id : NULL,
                           .posted = sent ? digest : NULL,
                           .run_by = t->run_by,
                           .forgotten_ok = !job_taken(w, &t->payload, "finish", job->id)};
    char *retry = NULL;
    if (posted == -1 && wants_postback_retry(w, job)) {
        retry = postback_retry(w, postback_text(job, &text), job->id, 1, &s);
    }
    /* a postback that failed with no retry to come (none asked for, or none made: out of
     * memory) is counted too (postbacks_given_up, in `pixq stats`): its result reached nobody,
     * which the outcome alone does not say */
    bool given_up = posted == RUN_POSTBACK_REFUSED || (posted == -1 && retry == NULL);
    s.counter = failed ? (given_up ? "failed," POSTBACKS_GIVEN_UP : "failed")
                       : (given_up ? "succeeded," POSTBACKS_GIVEN_UP : "succeeded");
    int settled = settle(w, &t->payload, &s);
    begin_noted(w, t); /* begin.lua's answer came with finish.lua's */
    buf_finish(&text);
    count_postback(posted, sent, retry != NULL, settled);
    lease_delivering(w->lease, false);
    free(dead);
    /* how the postback went, on the job's last line: a job whose result reached nobody; "none"
     * when none was due (none named, or postback_error_only and the job did not fail) */
    const char *postback = !postback_due(job, json) ? "none"
                           : posted == 0            ? (sent ? "delivered" : "delivered_before")
                           : posted == RUN_POSTBACK_REFUSED ? "refused"
                           : retry != NULL                  ? "retry_scheduled"
                                                            : "failed";
    bool reached = posted == 0; /* delivered, now or before, or nothing to deliver */
    if (retry != NULL) {
        log_postback_retry(job->id, 1, &s, settled);
        free(retry);
    }
    metrics_count_job(settled == 0 ? METRICS_JOB_LEASE_LOST
                      : failed     ? METRICS_JOB_FAILED
                                   : METRICS_JOB_SUCCEEDED);
    char q[ERR_MSG_MAX + 16], times[160];
    const struct run_times *rt = &w->runner.times;
    snprintf(times, sizeof times,
             "fetch_ms=%.3f process_ms=%.3f upload_ms=%.3f s3_wait_ms=%.3f postback_ms=%.3f",
             (double)rt->fetch_us / 1e3, (double)rt->process_us / 1e3, (double)rt->upload_us / 1e3,
             (double)rt->s3_wait_us / 1e3, (double)rt->postback_us / 1e3);
    if (settled == 0) {
        LOG_WARN("lease_lost", "job_id=%s step=finish", job->id);
    } else if (settled == 2) {
        /* no job_done/job_failed line: this one says how it ended */
        LOG_WARN("job_forgotten",
                 "job_id=%s step=finish action=settled outcome=%s ms=%ld %s reason=\"Redis no "
                 "longer knew the job: restarted without its data, or a failover or a flush "
                 "lost it\"",
                 job->id, failed ? "failed" : "succeeded", clock_mono_ms() - t0, times);
    } else if (settled < 0) {
        LOG_WARN("job_unsettled", "job_id=%s ms=%ld %s action=settle_when_redis_takes_it", job->id,
                 clock_mono_ms() - t0, times);
    } else if (failed) {
        LOG_WARN("job_failed", "job_id=%s ms=%ld %s postback=%s error=%s", job->id,
                 clock_mono_ms() - t0, times, postback, log_quote(first_error, q, sizeof q));
    } else if (reached) {
        LOG_INFO("job_done", "job_id=%s ms=%ld %s postback=%s", job->id, clock_mono_ms() - t0,
                 times, postback);
    } else { /* done, but its result reached nobody yet: a warning, as postback_failed is */
        LOG_WARN("job_done", "job_id=%s ms=%ld %s postback=%s", job->id, clock_mono_ms() - t0,
                 times, postback);
    }
}

static void complete(struct worker *w, struct task *t, long t0)
{
    deliver(w, t, t->job, result_json(t->result), t->first_error, t0);
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
        LOG_WARN("adopt_failed", "queue=%s error=%s", w->cur->name, log_quote(e.msg, q, sizeof q));
        /* then it may still be on our list */
        w->check_active = w->check_active || rq_disconnected(w->rq);
        return -1;
    }
    lease_job_id(w->lease, t->job->id);
    t->result = result_create(t->job->id);
    return t->result != NULL ? 0 : -1;
}

static void handle_postback(struct worker *w, struct task *t, json_object *task,
                            const char *poisoned);

/* A poison pill (reap.lua): pixq-task:{"pixq_poison": payload, "error": why}. Post the failure back
 * and bury the job without running it again. pixq's own tasks are not jobs: a parked output's
 * upload fails (its job completes without it), a postback retry is given up. */
static void handle_poison(struct worker *w, struct task *t, json_object *env)
{
    long t0 = clock_mono_ms();
    json_object *inner = NULL, *why = NULL;
    json_object_object_get_ex(env, "pixq_poison", &inner);
    json_object_object_get_ex(env, "error", &why);
    const char *text = json_object_get_string(inner);
    const char *reason = why != NULL ? json_object_get_string(why) : "";
    json_object *own = NULL, *outer = NULL; /* outer: the pill `text` is in, when nested */
    for (int depth = 0; depth < POISON_NESTING_MAX; depth++) {
        /* a pill in a pill (an older reap.lua wrapped one whose postback a kill cut short) */
        const char *task_json = rq_task_json(text, strlen(text));
        own = task_json != NULL ? json_tokener_parse(task_json) : NULL;
        json_object *nested = NULL;
        if (own == NULL || !json_object_object_get_ex(own, "pixq_poison", &nested) ||
            !json_object_is_type(nested, json_type_string)) {
            break;
        }
        json_object_put(outer);
        outer = own;
        own = NULL;
        text = json_object_get_string(nested);
    }
    json_object *task = NULL;
    if (own != NULL && json_object_object_get_ex(own, "pixq_upload", &task) &&
        json_object_is_type(task, json_type_object)) {
        handle_upload(w, t, task, reason);
    } else if (own != NULL && json_object_object_get_ex(own, "pixq_postback", &task) &&
               json_object_is_type(task, json_type_object)) {
        handle_postback(w, t, task, reason);
    }
    json_object_put(own);
    if (task == NULL && parse(w, t, text, strlen(text)) == 0) {
        char q[ERR_MSG_MAX + 16];
        LOG_ERROR("job_poisoned", "job_id=%s queue=%s error=%s", t->job->id, w->cur->name,
                  log_quote(reason, q, sizeof q));
        run_fail(t->job, t->result, t->first_error, reason);
        complete(w, t, t0);
    }
    json_object_put(outer);
}

/* A postback retry's read of its stored result failed (the error in `e`). An error is not an
 * answer that the result is gone: the task strands, to run again once Redis answers (0). It is
 * given up (-1; `e` says why) when another type of key holds the result's place, which can never
 * be read, or when the read failed PIXQ_SETTLE_ATTEMPTS times in a row while Redis answered the
 * rest (an error that persists would hold the worker on this task for ever). */
static int result_unread(struct worker *w, const char *job_id, struct err *e)
{
    if (wrong_type(e)) {
        return -1;
    }
    if (strcmp(w->unread_id, job_id) != 0) {
        snprintf(w->unread_id, sizeof w->unread_id, "%s", job_id);
        w->unread_tries = 0;
    }
    if (++w->unread_tries >= w->cfg->settle_attempts) {
        char why[ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", e->msg);
        w->unread_id[0] = '\0';
        return err_set(e, "%.400s (failed %ld times in a row: PIXQ_SETTLE_ATTEMPTS)", why,
                       w->cfg->settle_attempts);
    }
    stranded(w, "postback_result", job_id, e->msg);
    return 0;
}

/* A postback retry (postback_retry): post the stored result again, or schedule the next try;
 * given up when the task crashed its workers too often (`poisoned`: why, else NULL). */
static void handle_postback(struct worker *w, struct task *t, json_object *task,
                            const char *poisoned)
{
    const char *text = json_object_get_string(json_object_object_get(task, "job"));
    long attempt = (long)json_object_get_int64(json_object_object_get(task, "attempt"));
    struct err e = {{0}};
    struct job *job = text != NULL ? job_parse(text, strlen(text), &w->limits, &e) : NULL;
    char key[RQ_KEY_MAX];
    redisReply *r = NULL;
    bool unreadable = false;
    if (job != NULL && poisoned == NULL) { /* a poisoned retry posts nothing */
        job_key(w, job->id, "result", -1, key, sizeof key);
        r = rq_command(w->rq, &e, "LINDEX %s 0", key);
        if (r == NULL && result_unread(w, job->id, &e) == 0) {
            job_destroy(job);
            return;
        }
        unreadable = r == NULL;
        w->unread_id[0] = '\0'; /* read, or given up: a later failure counts from 1 */
    }
    bool sent = false;
    char digest[HASH_SHA256_HEX] = "";
    struct settlement s = {.result = "", .counter = "", .task_of = job != NULL ? job->id : NULL};
    char *retry = NULL;
    int posted = 0;
    lease_delivering(w->lease, true);
    if (poisoned != NULL) {
        s.counter = POSTBACKS_GIVEN_UP;
        metrics_count_postback(METRICS_POSTBACK_GIVEN_UP);
        char q[ERR_MSG_MAX + 16];
        LOG_ERROR("postback_given_up", "job_id=%s reason=poisoned attempt=%ld error=%s",
                  job != NULL ? job->id : "", attempt + 1, log_quote(poisoned, q, sizeof q));
    } else if (unreadable) {
        s.counter = POSTBACKS_GIVEN_UP;
        metrics_count_postback(METRICS_POSTBACK_GIVEN_UP);
        char q[ERR_MSG_MAX + 16];
        LOG_ERROR("postback_given_up", "job_id=%s reason=result_unreadable attempt=%ld error=%s",
                  job->id, attempt + 1, log_quote(e.msg, q, sizeof q));
    } else if (r == NULL || r->type != REDIS_REPLY_STRING) {
        s.counter = POSTBACKS_GIVEN_UP;
        metrics_count_postback(METRICS_POSTBACK_GIVEN_UP);
        LOG_WARN("postback_given_up", "job_id=%s reason=result_gone attempt=%ld",
                 job != NULL ? job->id : "", attempt + 1);
    } else if ((posted = post_once(w, &t->payload, job, r->str, digest, &sent, &e)) == -2) {
        LOG_WARN("lease_lost", "job_id=%s step=before_postback", job->id);
    } else if (posted == RUN_POSTBACK_REFUSED) {
        s.counter = POSTBACKS_GIVEN_UP;
        log_postback_refused(job->id, attempt + 1, &e);
    } else if (posted < 0) {
        if (attempt >= 1 && attempt < (long)w->postback_delays.n) {
            retry = postback_retry(w, text, job->id, attempt + 1, &s);
        }
        if (retry == NULL) { /* the last attempt, or out of memory */
            s.counter = POSTBACKS_GIVEN_UP;
            char q[ERR_MSG_MAX + 16];
            LOG_ERROR("postback_given_up",
                      "job_id=%s reason=retries_exhausted attempts=%ld error=%s", job->id,
                      attempt + 1, log_quote(e.msg, q, sizeof q));
        }
    }
    freeReplyObject(r);
    s.posted_id = sent ? job->id : NULL;
    s.posted = sent ? digest : NULL;
    int settled = settle(w, &t->payload, &s);
    count_postback(posted, sent, retry != NULL, settled);
    lease_delivering(w->lease, false);
    if (retry != NULL) {
        log_postback_retry(job->id, attempt + 1, &s, settled);
        free(retry);
    }
    job_destroy(job);
}

/* Pixq's own entries on the queue (wake-up tokens, and tasks behind RQ_TASK_MARK: parked
 * uploads, postback retries, poison pills); true if it was one. */
static bool handle_internal(struct worker *w, struct task *t)
{
    if (strcmp(t->payload.data, RQ_WAKE_TOKEN) == 0) {
        const struct settlement s = {.result = "", .counter = ""};
        settle(w, &t->payload, &s);
        w->cur->next_promote_at = 0; /* a delayed job became the earliest: look now */
        return true;
    }
    const char *task_json = rq_task_json(t->payload.data, t->payload.len);
    if (task_json == NULL) {
        return false;
    }
    json_object *env = json_tokener_parse(task_json);
    json_object *inner = NULL;
    bool poison = env != NULL && json_object_object_get_ex(env, "pixq_poison", &inner) &&
                  json_object_is_type(inner, json_type_string);
    bool upload = env != NULL && json_object_object_get_ex(env, "pixq_upload", &inner) &&
                  json_object_is_type(inner, json_type_object);
    bool postback = env != NULL && json_object_object_get_ex(env, "pixq_postback", &inner) &&
                    json_object_is_type(inner, json_type_object);
    if (poison) {
        handle_poison(w, t, env);
    } else if (upload) {
        handle_upload(w, t, json_object_object_get(env, "pixq_upload"), NULL);
    } else if (postback) {
        handle_postback(w, t, json_object_object_get(env, "pixq_postback"), NULL);
    }
    json_object_put(env);
    return poison || upload || postback;
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

/* Replaces the reserved batch with its jobs on the queue (split.lua); when Redis lost the
 * reservation (it restarted without its data since), the jobs are queued all the same. */
static void queue_split(struct worker *w, struct task *t, struct split *sp)
{
    const char **args = calloc(sp->n + 2, sizeof *args);
    size_t *lens = calloc(sp->n + 2, sizeof *lens);
    struct err e = {{0}};
    redisReply *r = NULL;
    if (args != NULL && lens != NULL) {
        args[0] = t->payload.data;
        lens[0] = t->payload.len;
        args[1] = w->reserved_on;
        lens[1] = strlen(w->reserved_on);
        for (size_t i = 0; i < sp->n; i++) {
            args[i + 2] = sp->jobs[i];
            lens[i + 2] = sp->lens[i];
        }
        /* a key of this call's own (split.lua's KEYS[6]), the same for every try */
        char call[ID_JOB_LEN], call_key[RQ_KEY_MAX];
        int nkeys = id_job(call) == 0 ? 6 : 5;
        job_key(w, nkeys == 6 ? call : "", "split", -1, call_key, sizeof call_key);
        const char *keys[] = {w->active_key, w->jobs_key,       w->stats_key,
                              w->recov_key,  w->cur->epoch_key, call_key};
        r = script_retried(w, "split", RQ_SCRIPT_SPLIT, nkeys, keys, (int)sp->n + 2, args, lens,
                           &e);
    }
    /* {jobs queued or -1, 1 if Redis had lost the batch} */
    bool answered = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                    r->element[0]->type == REDIS_REPLY_INTEGER &&
                    r->element[1]->type == REDIS_REPLY_INTEGER;
    char q[ERR_MSG_MAX + 16];
    if (!answered) { /* still on the active list, if Redis has it: split again */
        const char *why = e.msg[0] ? e.msg : r != NULL ? "unexpected answer" : "out of memory";
        LOG_WARN("batch_split_failed", "queue=%s jobs=%zu error=%s", w->cur->name, sp->n,
                 log_quote(why, q, sizeof q));
        stranded(w, "split", "", why);
    } else if (r->element[0]->integer < 0) {
        /* reaped from this worker meanwhile: the batch is whoever took it's to split */
        LOG_WARN("batch_split_failed", "queue=%s jobs=%zu error=%s", w->cur->name, sp->n,
                 log_quote("lease lost", q, sizeof q));
    } else if (r->element[1]->integer == 1) {
        LOG_WARN("job_forgotten",
                 "step=split action=queued jobs=%zu reason=\"Redis no longer knew the batch it "
                 "had reserved: restarted without its data, or a failover or a flush lost it\"",
                 sp->n);
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

/* Whether the job asked for Blitline's wait_retry_delay. */
static bool waits_retry(const struct job *j)
{
    json_object *wrd = NULL;
    return json_object_object_get_ex(j->root, "wait_retry_delay", &wrd) && wrd != NULL;
}

/* Whether a run of the job that ends with `st` (a source failure) runs again: Blitline's
 * wait_retry_delay covers any source failure, at most 5 runs; otherwise only transient ones are
 * retried, PIXQ_MAX_ATTEMPTS runs in all. */
static bool reruns(const struct worker *w, const struct job *j, enum run_status st)
{
    long attempt = job_attempt(j);
    if (waits_retry(j)) {
        return attempt < 5;
    }
    return st == RUN_SOURCE_TRANSIENT && attempt < w->cfg->max_attempts;
}

/* How long to wait before running the job again, or -1 not to: wait_retry_delay's seconds
 * (outside 0..100 it is 5), else exponential back-off with equal jitter (between half the step
 * and the step: with full jitter a retry could come at once, and a source down for a second
 * failed the job for good); or, when longer, what a source answering 429 or 503 asked for with
 * Retry-After (at most PIXQ_RETRY_AFTER_MAX_MS: the runner's retry_after_ms). */
static long retry_delay_ms(struct worker *w, const struct job *j, enum run_status st)
{
    if (!reruns(w, j, st)) {
        return -1;
    }
    long attempt = job_attempt(j), delay;
    if (waits_retry(j)) {
        long secs = 5;
        struct err e;
        if (job_param_long(j->root, "job", "wait_retry_delay", 5, 0, 100, &secs, &e) < 0) {
            secs = 5;
        }
        delay = secs * 1000;
    } else {
        long cap = w->cfg->retry_base_ms;
        for (long i = 1; i < attempt && cap < w->cfg->retry_max_ms; i++) {
            cap *= 2;
        }
        cap = cap > w->cfg->retry_max_ms ? w->cfg->retry_max_ms : cap;
        delay = jittered(w, cap);
    }
    return w->runner.retry_after_ms > delay ? w->runner.retry_after_ms : delay;
}

/* requeue.lua: the reserved payload leaves the active list; `next` runs in `delay` ms. For the
 * upload task of output `parked_n` of job `parked_id` (else NULL), its blob and the job hash are
 * kept until then and PIXQ_BLOB_TTL_S longer; for a job run again (parked_id NULL), its job hash
 * until then, and the retry is scheduled even off the active list when Redis lost the job (its
 * hash gone too: requeue.lua's "forgotten"). Returns 1, 2 if scheduled although Redis had lost
 * the job, 0 if the payload was no longer on the active list (another worker took it), or -1 on a
 * Redis error (`e`). */
static int requeue(struct worker *w, struct task *t, const char *next, long delay,
                   const char *counter, const char *parked_id, int parked_n, struct err *e)
{
    char ms[32], ttl[32], blob[RQ_KEY_MAX], job_hash[RQ_KEY_MAX];
    bool parked = parked_id != NULL;
    snprintf(ms, sizeof ms, "%ld", delay);
    snprintf(ttl, sizeof ttl, "%ld", parked ? w->cfg->blob_ttl_s : 0L);
    const char *keys[] = {w->active_key, w->delayed_key, w->stats_key,
                          w->recov_key,  blob,           job_hash};
    const char *args[] = {t->payload.data, next, ms, counter, ttl, ""};
    size_t lens[] = {t->payload.len, strlen(next), strlen(ms), strlen(counter), strlen(ttl), 0};
    job_key(w, parked ? parked_id : t->job->id, "job", -1, job_hash, sizeof job_hash);
    if (parked) {
        job_key(w, parked_id, "blob", parked_n, blob, sizeof blob);
    } else {
        keys[4] = job_hash; /* the only extra key */
        args[5] = forgotten_arg(w, &t->payload, "retry", t->job->id);
        lens[5] = strlen(args[5]);
    }
    redisReply *r =
        rq_script(w->rq, RQ_SCRIPT_REQUEUE, parked ? 6 : 5, keys, parked ? 5 : 6, args, lens, e);
    /* an integer, or with "forgotten" {wait, 1 if Redis had lost the job} */
    const redisReply *wait = r;
    long forgotten = 0;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER) {
        wait = r->element[0];
        forgotten = (long)r->element[1]->integer;
    }
    int rc = -1;
    if (wait != NULL && wait->type == REDIS_REPLY_INTEGER) {
        rc = wait->integer >= 0 ? (forgotten == 1 ? 2 : 1) : 0;
        if (rc > 0) {
            plan_due(w->cur, clock_mono_ms() + (long)wait->integer);
        } else {
            err_set(e, "lease lost");
        }
    } else if (r != NULL) {
        err_set(e, "requeue.lua: bad reply");
    }
    freeReplyObject(r);
    return rc;
}

/* Schedules the job to run again in `delay` ms, with its attempt count raised (requeue.lua).
 * No postback is sent for this attempt. Returns false, scheduling nothing, when that run would
 * find the job over PIXQ_MAX_JOB_BYTES: the job ends now with its failure. */
static bool retry_later(struct worker *w, struct task *t, long delay)
{
    long attempt = job_attempt(t->job);
    struct buf payload;
    buf_init(&payload, 0);
    struct err e = {{0}};
    char q[ERR_MSG_MAX + 16];
    if (job_set_attempt(t->job, attempt + 1, &payload, &e) < 0) {
        buf_finish(&payload);
        stranded(w, "retry", t->job->id, e.msg); /* runs again from the active list */
        return true;
    }
    if (payload.len > w->limits.max_bytes + w->limits.own_bytes) {
        /* json-c wrote out again what it alone takes (comments, single quotes), escaping the raw
         * control characters it took: the next run would fail for the size alone */
        LOG_WARN("job_retry_skipped", "job_id=%s bytes=%zu limit=%zu error=%s", t->job->id,
                 payload.len, w->limits.max_bytes, log_quote(t->first_error, q, sizeof q));
        json_object_object_add(t->job->root, "pixq_attempt", json_object_new_int64(attempt));
        buf_finish(&payload);
        return false;
    }
    const char *next = payload.data;
    /* requeue.lua alone is retried while Redis fails or refuses it: running the job again would
     * download and process it again, and lose the attempt count and the delay */
    int rc = requeue(w, t, next, delay, "retried", NULL, -1, &e);
    long backoff = w->cfg->redis_retry_min_ms;
    for (long tries = 1; rc < 0 && tries < w->cfg->settle_attempts && !stop_ends_retries(w, e.msg);
         tries++) {
        long wait = jittered(w, backoff);
        LOG_WARN("redis_error", "step=retry job_id=%s queue=%s attempt=%ld error=%s retry_ms=%ld",
                 t->job->id, w->cur->name, tries, log_quote(e.msg, q, sizeof q), wait);
        retry_nap(w, wait, e.msg);
        backoff = next_backoff(w, backoff);
        e = (struct err){{0}};
        rc = requeue(w, t, next, delay, "retried", NULL, -1, &e);
    }
    if (rc == 2) {
        LOG_WARN("job_forgotten",
                 "job_id=%s step=retry action=scheduled reason=\"Redis no longer knew the job: "
                 "restarted without its data, or a failover or a flush lost it\"",
                 t->job->id);
    }
    if (rc > 0) {
        LOG_INFO("job_retry", "job_id=%s attempt=%ld delay_ms=%ld error=%s", t->job->id,
                 attempt + 1, delay, log_quote(t->first_error, q, sizeof q));
        metrics_count_job(METRICS_JOB_RETRIED);
    } else if (rc == 0) { /* no longer the worker's: the run that took the job over settles it */
        if (!w->taken) {  /* else job_taken() said so already */
            LOG_WARN("lease_lost", "job_id=%s step=retry", t->job->id);
        }
        metrics_count_job(METRICS_JOB_LEASE_LOST);
    } else {
        stranded(w, "retry", t->job->id, e.msg); /* gave up: runs again from the active list */
    }
    buf_finish(&payload);
    return true;
}

/* Task `t`'s job after it ran (`st`): parked, put back to run later, or complete. */
static void settle_job(struct worker *w, struct task *t, enum run_status st, long t0)
{
    if (st == RUN_PARKED) {
        if (!park_job(w, t)) {
            return;
        }
        st = RUN_DONE; /* its waiting outputs failed: the job completes now */
    }
    long delay = st != RUN_DONE ? retry_delay_ms(w, t->job, st) : -1;
    if (delay >= 0 && retry_later(w, t, delay)) {
        return;
    }
    complete(w, t, t0);
}

static void handle_payload(struct worker *w, struct task *t)
{
    long t0 = clock_mono_ms();
    w->runner.times = (struct run_times){0}; /* what job_done shows of a task that runs no job */
    if (settle_kept(w, &t->payload) || handle_internal(w, t) || handle_batch(w, t) ||
        parse(w, t, t->payload.data, t->payload.len) < 0) {
        return;
    }
    t->started_ms = clock_wall_ms();
    t->unnoted = true;
    bool sent = begin_send(w, t);
    w->begin_ahead = sent;
    t->run = sent ? 0 : begin_now(w, t); /* not sent ahead: before the job, as ever */
    LOG_INFO("job_start", "job_id=%s queue=%s", t->job->id, w->queue);
    enum run_status st = run_job(&w->runner, t->job, t->result, t->first_error);
    settle_job(w, t, st, t0);
    begin_noted(w, t);
}

static void handle(struct worker *w, struct task *t)
{
    w->stranded_now = false;
    handle_payload(w, t);
    if (!w->stranded_now) {
        w->strand_wait_ms = 0; /* Redis answered this task's calls */
    }
}

/* ---------------------------------------------------------------- the loop */

/* Moves queue q's due delayed work onto its jobs list when it is time, and plans the next look. */
static void promote_queue(struct worker *w, struct wqueue *q)
{
    long now = clock_mono_ms();
    if (now < q->next_promote_at) {
        return;
    }
    char batch[32];
    snprintf(batch, sizeof batch, "%ld", w->cfg->promote_batch);
    const char *keys[] = {q->delayed_key, q->jobs_key, q->stats_key};
    const char *args[] = {batch};
    struct err e = {{0}};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_PROMOTE, 3, keys, 1, args, NULL, &e);
    long wait = w->cfg->reserve_timeout_ms;
    q->due_soon = false;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        long next = (long)r->element[1]->integer;
        q->due_soon = next >= 0 && next < wait;
        wait = q->due_soon ? next : wait;
        if (r->element[0]->integer > 0) {
            LOG_DEBUG("promoted", "queue=%s count=%lld next_ms=%ld", q->name,
                      r->element[0]->integer, next);
        }
    }
    freeReplyObject(r);
    q->next_promote_at = now + wait;
}

/* Promotion in every queue, each on its own schedule. */
static void promote(struct worker *w)
{
    for (size_t i = 0; i < w->nq; i++) {
        promote_queue(w, &w->q[i]);
    }
}

/* Copies a reply's string into `payload`: 1, or -1 out of memory (0 if it is not a string). */
static int take_reply(const redisReply *r, struct buf *payload, struct err *e)
{
    if (r->type != REDIS_REPLY_STRING) {
        return 0;
    }
    return buf_append(payload, r->str, r->len) == 0 ? 1 : err_set(e, "out of memory");
}

/* The oldest payload on one of this worker's active lists: after a Redis error it may hold a job
 * that a reservation reserved although its answer was lost, or one that could not be settled. It
 * is ours (the lease holds): run it rather than leave it stranded. Returns 1 with it (its queue
 * in use), 0 if every list is empty (no need to look again until the next error), -1 on error. */
static int take_stranded(struct worker *w, struct buf *payload, struct err *e)
{
    for (size_t i = 0; i < w->nq; i++) {
        redisReply *r = rq_command(w->rq, e, "LINDEX %s -1", w->q[i].active_key);
        if (r == NULL) {
            return -1;
        }
        int got = take_reply(r, payload, e);
        freeReplyObject(r);
        if (got != 0) {
            LOG_WARN("job_stranded", "worker=%s queue=%s bytes=%zu", w->id, w->q[i].name,
                     payload->len);
            use_queue(w, &w->q[i]);
            return got;
        }
    }
    w->check_active = true; /* meanwhile: finish.lua reserves no next job */
    w->check_active = settle_forgotten(w);
    return 0;
}

/* The answer of an LMOVE or BLMOVE from `q` (freed here; NULL: the call failed): 1 with the
 * payload (its queue in use), 0 if none came, -1. */
static int took_from(struct worker *w, struct wqueue *q, redisReply *r, struct buf *payload,
                     struct err *e)
{
    if (r == NULL) {
        return -1;
    }
    int got = take_reply(r, payload, e);
    freeReplyObject(r);
    if (got == 1) {
        use_queue(w, q);
    }
    return got;
}

/* LMOVE (not blocking) one job of `q` into its active list: 1 with it, 0 if none is queued, -1. */
static int take_now(struct worker *w, struct wqueue *q, struct buf *payload, struct err *e)
{
    return took_from(w, q,
                     rq_command(w->rq, e, "LMOVE %s %s RIGHT LEFT", q->jobs_key, q->active_key),
                     payload, e);
}

/* BLMOVE one job of `q` into its active list, blocking at most `block` ms. Returns 1 with the
 * payload (its queue in use), 0 on timeout, -1 on error. */
static int block_on(struct worker *w, struct wqueue *q, long block, struct buf *payload,
                    struct err *e)
{
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%.3f", (double)block / 1000.0);
    const char *argv[] = {"BLMOVE", q->jobs_key, q->active_key, "RIGHT", "LEFT", timeout};
    return took_from(w, q, rq_commandv(w->rq, block, 6, argv, NULL, e), payload, e);
}

/* Whether a reservation from `q` goes through take.lua: Redis is full (full_now), or
 * PIXQ_MAX_PARKED_MB is set, and the queue was past it when last told or has not been asked for
 * GATE_RECHECK_MS (a busy worker is told by every finish.lua that reserves its next job). */
static bool gate_check_due(const struct worker *w, const struct wqueue *q)
{
    return w->full_now ||
           (w->cfg->max_parked_mb > 0 &&
            (q->gated || q->gate_at == 0 || clock_mono_ms() - q->gate_at >= GATE_RECHECK_MS));
}

/* take.lua: one entry of `q` into its active list, a fresh job only while the queue is within
 * PIXQ_MAX_PARKED_MB and Redis is not full. Returns 1 with the payload (its queue in use), 0 if
 * none was taken, -1. */
static int take_gated(struct worker *w, struct wqueue *q, struct buf *payload, struct err *e)
{
    bool full = w->full_now;
    const char *keys[] = {q->jobs_key, q->active_key, q->parked_key};
    const char *args[] = {full ? "-1" : w->parked_max_arg, RQ_TASK_MARK, RQ_WAKE_TOKEN,
                          GATE_SCAN_MS};
    redisReply *r = rq_script(w->rq, RQ_SCRIPT_TAKE, 3, keys, 4, args, NULL, e);
    if (r == NULL) {
        return -1;
    }
    int got = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        if (!full) { /* else the flag says nothing of the queue's parked outputs */
            note_gate(w, q, r->element[1]);
        }
        got = take_reply(r->element[0], payload, e);
        if (got == 1) {
            use_queue(w, q);
        } else if (got < 0) {
            w->check_active = true; /* out of memory: it is on the active list */
        }
    } else {
        err_set(e, "take.lua answered %d", r->type);
    }
    freeReplyObject(r);
    return got;
}

/* A queue past its parked limit with no task to take: a look again in GATED_NAP_MS, or at the
 * next promotion if sooner (it may bring tasks). */
static void nap_gated(struct worker *w, long next_promote_at)
{
    long until = next_promote_at - clock_mono_ms();
    nap(w, until < GATED_NAP_MS ? (until > 0 ? until : 0) : GATED_NAP_MS);
}

/* `block`, or less: a wait for a job ends while the lease surely holds (lease_fresh_ms). A
 * worker frozen in BLMOVE is reaped only after the wait is over in Redis, so that the wait cannot
 * move a job onto the list of a reaped worker. */
static long until_lease_ends(const struct worker *w, long block)
{
    long left = lease_fresh_ms(w->lease);
    return left < block ? left : block;
}

/* One queue: BLMOVE, blocking at most until the next promotion is due. */
static int reserve_one(struct worker *w, struct buf *payload, struct err *e)
{
    struct wqueue *q = &w->q[0];
    if (gate_check_due(w, q)) {
        int got = take_gated(w, q, payload, e);
        bool full = w->full_now; /* BLMOVE would be refused */
        if (got == 0 && (q->gated || full)) {
            nap_gated(w, q->next_promote_at);
        }
        if (got != 0 || q->gated || full) {
            return got;
        }
    }
    long block = q->next_promote_at - clock_mono_ms();
    if (q->due_soon) {
        /* Redis may end the wait up to a tick late: stop a tick early and, rather than block,
         * take what is already queued (without waiting) or sleep the rest here */
        block -= REDIS_TICK_MS;
        if (block < MIN_BLOCK_MS) {
            int got = take_now(w, q, payload, e);
            if (got == 0) {
                nap(w, q->next_promote_at - clock_mono_ms());
            }
            return got;
        }
    }
    block = block > w->cfg->reserve_timeout_ms ? w->cfg->reserve_timeout_ms : block;
    block = until_lease_ends(w, block);
    block = block < MIN_BLOCK_MS ? MIN_BLOCK_MS : block;
    return block_on(w, q, block, payload, e);
}

/* Hands jobs that a sweep took from lower queues back to the consumer end of their queues: each
 * is at the head of our active list of its queue, where LMOVE ... RIGHT LEFT put it. */
static void give_back(struct worker *w, const size_t *which, size_t n)
{
    struct rq_cmd cmds[LEASE_QUEUES_MAX];
    const char *argv[LEASE_QUEUES_MAX][5];
    redisReply *rep[LEASE_QUEUES_MAX];
    for (size_t i = 0; i < n; i++) {
        const struct wqueue *q = &w->q[which[i]];
        const char *a[] = {"LMOVE", q->active_key, q->jobs_key, "LEFT", "RIGHT"};
        memcpy(argv[i], a, sizeof a);
        cmds[i] = (struct rq_cmd){5, argv[i], NULL};
    }
    struct err e = {{0}};
    if (rq_pipeline(w->rq, n, cmds, rep, &e) < 0) {
        w->check_active = true; /* then they are run from our active lists instead */
    }
    for (size_t i = 0; i < n; i++) {
        freeReplyObject(rep[i]);
    }
}

/* Several queues, without blocking: LMOVE from every queue in one pipelined round trip. The job
 * of the highest-priority queue that had one is kept; jobs taken from lower queues in the same
 * trip go straight back (give_back). Returns 1 with the payload, 0 if all were empty, -1. */
static int sweep(struct worker *w, struct buf *payload, struct err *e)
{
    struct rq_cmd cmds[LEASE_QUEUES_MAX];
    const char *argv[LEASE_QUEUES_MAX][5];
    redisReply *rep[LEASE_QUEUES_MAX];
    for (size_t i = 0; i < w->nq; i++) {
        const char *a[] = {"LMOVE", w->q[i].jobs_key, w->q[i].active_key, "RIGHT", "LEFT"};
        memcpy(argv[i], a, sizeof a);
        cmds[i] = (struct rq_cmd){5, argv[i], NULL};
    }
    int rc = rq_pipeline(w->rq, w->nq, cmds, rep, e);
    int got = 0;
    size_t extra[LEASE_QUEUES_MAX], n_extra = 0;
    for (size_t i = 0; i < w->nq; i++) {
        if (rep[i] != NULL && rep[i]->type == REDIS_REPLY_STRING) {
            if (got == 0) {
                got = take_reply(rep[i], payload, e);
                use_queue(w, &w->q[i]);
            } else {
                extra[n_extra++] = i;
            }
        }
        freeReplyObject(rep[i]);
    }
    if (n_extra > 0) {
        give_back(w, extra, n_extra);
    }
    return got != 0 ? got : (rc < 0 ? -1 : 0);
}

/* sweep(), or while a queue's parked limit is to be asked (gate_check_due), one queue after the
 * other in priority order, through take.lua where it is: the first entry taken is kept. */
static int sweep_gated(struct worker *w, struct buf *payload, struct err *e)
{
    bool gates = false;
    for (size_t i = 0; i < w->nq && !gates; i++) {
        gates = gate_check_due(w, &w->q[i]);
    }
    if (!gates) {
        return sweep(w, payload, e);
    }
    for (size_t i = 0; i < w->nq; i++) {
        struct wqueue *q = &w->q[i];
        int got = gate_check_due(w, q) ? take_gated(w, q, payload, e) : take_now(w, q, payload, e);
        if (got != 0) {
            return got;
        }
    }
    return 0;
}

/* Several queues. BLMOVE takes one source, so after an empty sweep the worker blocks on the
 * first (highest-priority) queue only, for at most PIXQ_QUEUE_POLL_MS, then sweeps again: a job
 * pushed onto the first queue is taken at once, one pushed onto a lower queue of an idle worker
 * waits at most the poll interval (a busy worker sweeps between jobs and never waits). The price
 * is one sweep per poll interval while idle. */
static int reserve_multi(struct worker *w, struct buf *payload, struct err *e)
{
    int got = sweep_gated(w, payload, e);
    if (got != 0) {
        return got;
    }
    struct wqueue *soonest = &w->q[0];
    for (size_t i = 1; i < w->nq; i++) {
        soonest = w->q[i].next_promote_at < soonest->next_promote_at ? &w->q[i] : soonest;
    }
    if (w->q[0].gated || w->full_now) { /* blocking would take a fresh job, or be refused */
        nap_gated(w, soonest->next_promote_at);
        return 0;
    }
    long block = soonest->next_promote_at - clock_mono_ms();
    if (soonest->due_soon) {
        block -= REDIS_TICK_MS; /* as in reserve_one: Redis may wake a tick late */
        if (block < MIN_BLOCK_MS) {
            nap(w, soonest->next_promote_at - clock_mono_ms());
            return 0;
        }
    }
    long poll = w->cfg->queue_poll_ms < w->cfg->reserve_timeout_ms ? w->cfg->queue_poll_ms
                                                                   : w->cfg->reserve_timeout_ms;
    long floor = poll < MIN_BLOCK_MS ? poll : MIN_BLOCK_MS;
    /* Redis ends a blocking wait at its next tick (every 100 ms at its default hz 10): an idle
     * worker sweeps just after a tick, and a wait of the whole interval from there ended a tick
     * late, every time (200 ms apart for the 100 ms default). 10 ms less ends at the tick. */
    long cap = poll - POLL_SLACK_MS > floor ? poll - POLL_SLACK_MS : poll;
    block = block > cap ? cap : block;
    block = until_lease_ends(w, block);
    block = block < floor ? floor : block;
    return block_on(w, &w->q[0], block, payload, e);
}

/* reserve() when finish.lua reserved nothing: a stranded payload, or a fresh reservation. */
static int reserve_fresh(struct worker *w, struct buf *payload, struct err *e)
{
    note_full(w);
    if (w->check_active) {
        int got = take_stranded(w, payload, e);
        if (got != 0) {
            return got;
        }
    }
    if (lease_fresh_ms(w->lease) <= 0) {
        /* should this worker die now, a job taken onto its list might never be looked at */
        if (!w->stale) {
            LOG_WARN("lease_overdue", "worker=%s action=no_new_jobs", w->id);
        }
        w->stale = true;
        nap(w, STALE_NAP_MS);
        return 0;
    }
    if (w->stale) {
        LOG_INFO("lease_renewed", "worker=%s action=taking_jobs", w->id);
        w->stale = false;
    }
    return w->nq > 1 ? reserve_multi(w, payload, e) : reserve_one(w, payload, e);
}

/* The next payload: one finish.lua reserved already, a stranded one after a Redis error, or a
 * fresh reservation. Returns 1 with it (its queue in use), 0 if none came in time, -1 on error. */
static int reserve(struct worker *w, struct buf *payload, struct err *e)
{
    if (w->next_q != NULL) {
        use_queue(w, w->next_q);
        w->next_q = NULL;
        memcpy(w->reserved_on, w->next_on, sizeof w->reserved_on);
        w->lost_at_start = w->next_lost;
        return buf_append(payload, w->next.data, w->next.len) == 0 ? 1
                                                                   : err_set(e, "out of memory");
    }
    /* before the reservation: a reap (and registering again) from here on makes job_taken ask */
    unsigned long lost = lease_records_lost(w->lease);
    int got = reserve_fresh(w, payload, e);
    if (got == 1) { /* its answer came on the connection in use, if it is still up */
        w->lost_at_start = lost;
        note_epoch(w, w->cur, w->reserved_on);
    }
    return got;
}

/* The job_id a reserved payload names, into `out` (`cap` bytes), for a line about it before it
 * is parsed: "" when it names none (a batch, one of pixq's own entries, a job without one, a
 * payload that is not a JSON object). */
static void payload_job_id(const struct buf *payload, char *out, size_t cap)
{
    out[0] = '\0';
    json_object *root = json_tokener_parse(payload->data);
    json_object *id = NULL;
    if (root != NULL && json_object_is_type(root, json_type_object) &&
        json_object_object_get_ex(root, "job_id", &id) && id != NULL) {
        snprintf(out, cap, "%s", json_object_get_string(id));
    }
    json_object_put(root);
}

int worker_run(struct worker *w)
{
    long backoff = w->cfg->redis_retry_min_ms;
    LOG_INFO("worker_start", "worker=%s queue=%s version=%s revision=%s", w->id, w->cfg->queue,
             PIXQ_VERSION, PIXQ_REVISION);
    while (!*w->stop) {
        struct task t = {0};
        buf_init(&t.payload, 0);
        struct err e = {{0}};
        promote(w);
        int got = reserve(w, &t.payload, &e);
        if (got < 0) {
            w->check_active = true;
            w->full_at = refused_as_full(e.msg) ? clock_mono_ms() : w->full_at;
            char q[ERR_MSG_MAX + 16];
            long wait = jittered(w, backoff);
            LOG_WARN("redis_error", "step=reserve error=%s retry_ms=%ld",
                     log_quote(e.msg, q, sizeof q), wait);
            nap(w, wait);
            backoff = next_backoff(w, backoff);
        } else {
            backoff = w->cfg->redis_retry_min_ms;
        }
        if (got == 1 && *w->stop) {
            /* reserved while the stop came (a reservation blocks up to PIXQ_RESERVE_TIMEOUT_MS):
             * not begun, it stays on the active list, which lease_stop gives back */
            char id[JOB_ID_MAX], q[JOB_ID_MAX + 16];
            payload_job_id(&t.payload, id, sizeof id);
            LOG_INFO("job_not_started", "job_id=%s reason=stopping action=given_back",
                     log_quote(id, q, sizeof q));
        } else if (got == 1) {
            w->io_at_start = rq_breaks(w->rq);
            w->in_hand = &t.payload;
            w->taken = false;
            lease_job_begins(w->lease, (size_t)(w->cur - w->q));
            handle(w, &t);
            w->in_hand = NULL;
            lease_job_ends(w->lease);
            w->jobs++;
            /* a command lost to Redis, or a restart (a connection found closed), may have left
             * the job (or a stray) on our list */
            w->check_active = w->check_active || rq_breaks(w->rq) != w->io_at_start;
        }
        result_destroy(t.result);
        job_destroy(t.job);
        buf_finish(&t.payload);
    }
    /* a job finish.lua reserved for a next turn stays on the active list: lease_stop gives it back
     */
    LOG_INFO("worker_stop", "worker=%s jobs=%lu redis_round_trips=%lu", w->id, w->jobs,
             rq_round_trips(w->rq));
    return 0;
}
