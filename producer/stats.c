#include "stats.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "cli.h"
#include "clock.h"
#include "outage.h"
#include "rq.h"

/* One collection: the connection, Redis's clock, and whether any command failed. */
struct sctx {
    const struct cfg *cfg;
    struct rq *rq;
    long long now_ms;
    char error[ERR_MSG_MAX]; /* the first failure, "" if none */
    bool passing;            /* collect(): that failure may pass with time (outage_passing()) */
};

/* Runs a command (its arguments as strings); NULL on failure, remembered in s->error. */
static redisReply *run(struct sctx *s, int argc, const char **argv)
{
    struct err e = {{0}};
    redisReply *r = rq_commandv(s->rq, 0, argc, argv, NULL, &e);
    if (r == NULL && s->error[0] == '\0') {
        snprintf(s->error, sizeof s->error, "%s", e.msg);
    }
    return r;
}

/* A command on pixq:{q}:<suffix> with up to eight more arguments (NULL-terminated). */
static redisReply *on_key(struct sctx *s, const char *cmd, const char *q, const char *suffix, ...)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, q, suffix);
    const char *argv[10] = {cmd, key};
    int argc = 2;
    va_list ap;
    va_start(ap, suffix);
    for (const char *a = va_arg(ap, const char *); a != NULL && argc < 10;
         a = va_arg(ap, const char *)) {
        argv[argc++] = a;
    }
    va_end(ap);
    return run(s, argc, argv);
}

static long long int_on_key(struct sctx *s, const char *cmd, const char *q, const char *suffix)
{
    redisReply *r = on_key(s, cmd, q, suffix, NULL);
    long long v = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return v;
}

/* Bytes of the queue's parked outputs (pixq:{q}:parked's total, kept by park.lua, upload_done.lua
 * and parked_forget.lua). */
static long long parked_bytes(struct sctx *s, const char *q)
{
    redisReply *r = on_key(s, "HGET", q, "parked", "total", NULL);
    long long v = r != NULL && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return v > 0 ? v : 0;
}

/* Jobs waiting on pixq:{q}:jobs: its length less the wake-up tokens among the entries at its
 * consuming end (where delay.lua and finish.lua push them; a worker takes them first), which are
 * no work. */
static long long waiting_jobs(struct sctx *s, const char *q)
{
    char scan[16];
    snprintf(scan, sizeof scan, "%d", STATS_WAKE_SCAN);
    long long n = int_on_key(s, "LLEN", q, "jobs");
    redisReply *r = n > 0 ? on_key(s, "LPOS", q, "jobs", RQ_WAKE_TOKEN, "RANK", "-1", "COUNT", "0",
                                   "MAXLEN", scan, NULL)
                          : NULL;
    long long tokens = r != NULL && r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : 0;
    freeReplyObject(r);
    return n > tokens ? n - tokens : 0;
}

static long long redis_ms(struct sctx *s)
{
    const char *argv[] = {"TIME"};
    redisReply *r = run(s, 1, argv);
    long long ms = 0;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
             strtoll(r->element[1]->str, NULL, 10) / 1000;
    }
    freeReplyObject(r);
    return ms;
}

static json_object *int_or_null(const char *s)
{
    return s != NULL ? json_object_new_int64(strtoll(s, NULL, 10)) : NULL;
}

/* ---------------------------------------------------------------- what workers hold */

const char *stats_entry_id(json_object *doc, bool task, const char **kind)
{
    static const char *const tasks[] = {"pixq_upload", "pixq_postback", "pixq_poison"};
    json_object *id = NULL, *inner = NULL;
    *kind = "job";
    for (size_t i = 0; task && i < sizeof tasks / sizeof *tasks; i++) {
        if (json_object_object_get_ex(doc, tasks[i], &inner)) {
            *kind = tasks[i] + 5;
            if (json_object_is_type(inner, json_type_string)) {
                /* a poison pill holds the entry it was made of as text (a job, or a pill or a
                 * task of its own): its id, from that entry parsed, kept in `doc` */
                bool held_task;
                const char *held_kind;
                json_object *held = stats_parse_entry(json_object_get_string(inner), &held_task);
                json_object_object_add(doc, STATS_PILL_ENTRY, held);
                return held != NULL ? stats_entry_id(held, held_task, &held_kind) : NULL;
            }
            json_object_object_get_ex(inner, "job_id", &id);
            return id != NULL ? json_object_get_string(id) : NULL;
        }
    }
    if (json_object_object_get_ex(doc, "pixq_wake", NULL)) {
        *kind = "wake";
        return NULL;
    }
    json_object_object_get_ex(doc, "job_id", &id);
    return id != NULL && !json_object_is_type(id, json_type_object) ? json_object_get_string(id)
                                                                    : NULL;
}

/* Runs `cmd key [a1 [a2]]` for each of `n` keys in one pipelined round trip; replies[i] is
 * NULL if that command failed. Returns 0, or -1 (s->error set). */
static int each_key(struct sctx *s, const char *cmd, char (*keys)[RQ_KEY_MAX], size_t n,
                    const char *a1, const char *a2, redisReply **replies)
{
    const char **argv = malloc(n * 4 * sizeof *argv);
    struct rq_cmd *cmds = malloc(n * sizeof *cmds);
    struct err e = {{0}};
    int rc = argv != NULL && cmds != NULL ? 0 : err_set(&e, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char **a = argv + 4 * i;
        a[0] = cmd;
        a[1] = keys[i];
        a[2] = a1;
        a[3] = a2;
        cmds[i] = (struct rq_cmd){a2 != NULL ? 4 : a1 != NULL ? 3 : 2, a, NULL};
    }
    rc = rc == 0 ? rq_pipeline(s->rq, n, cmds, replies, &e) : rc;
    if (rc < 0 && s->error[0] == '\0') {
        snprintf(s->error, sizeof s->error, "%s", e.msg);
    }
    free(argv);
    free(cmds);
    return rc;
}

json_object *stats_parse_entry(const char *payload, bool *task)
{
    const char *json = rq_task_json(payload, strlen(payload));
    *task = json != NULL;
    return json_tokener_parse(json != NULL ? json : payload);
}

/* {"job_id", "kind"} of one active-list entry; timings are added by add_timings(). */
static json_object *held_entry(const char *payload)
{
    bool task;
    json_object *doc = stats_parse_entry(payload, &task);
    const char *kind = "unparseable";
    const char *id = doc != NULL ? stats_entry_id(doc, task, &kind) : NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "job_id", id != NULL ? json_object_new_string(id) : NULL);
    json_object_object_add(o, "kind", json_object_new_string(kind));
    json_object_put(doc);
    return o;
}

/* Adds "started_at_ms" (when the job first began running: begin.lua's first_seen), "running_ms"
 * and "runs" to `entry` from an HMGET reply; null where unknown. */
static void add_timing(struct sctx *s, json_object *entry, const redisReply *r)
{
    bool known = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
    const char *first = known ? r->element[0]->str : NULL;
    json_object_object_add(entry, "started_at_ms", int_or_null(first));
    json_object_object_add(
        entry, "running_ms",
        first != NULL ? json_object_new_int64(s->now_ms - strtoll(first, NULL, 10)) : NULL);
    json_object_object_add(entry, "runs", int_or_null(known ? r->element[1]->str : NULL));
}

/* The timings of every entry of every worker in `list`: one pipelined HMGET per entry. */
static void add_timings(struct sctx *s, const char *q, json_object *list)
{
    json_object *entries = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *jobs = cli_get(json_object_array_get_idx(list, i), "jobs");
        for (size_t k = 0; k < json_object_array_length(jobs); k++) {
            json_object_array_add(entries, json_object_get(json_object_array_get_idx(jobs, k)));
        }
    }
    size_t n = json_object_array_length(entries);
    char(*keys)[RQ_KEY_MAX] = calloc(n + 1, sizeof *keys);
    redisReply **replies = calloc(n + 1, sizeof *replies);
    for (size_t i = 0; keys != NULL && i < n; i++) {
        char suffix[RQ_KEY_MAX];
        snprintf(suffix, sizeof suffix, "job:%.400s",
                 cli_str(json_object_array_get_idx(entries, i), "job_id", ""));
        rq_key(keys[i], RQ_KEY_MAX, q, suffix);
    }
    if (n > 0 && keys != NULL && replies != NULL) {
        each_key(s, "HMGET", keys, n, "first_seen", "runs", replies);
    }
    for (size_t i = 0; i < n; i++) {
        json_object *entry = json_object_array_get_idx(entries, i);
        add_timing(s, entry,
                   cli_get(entry, "job_id") != NULL && replies != NULL ? replies[i] : NULL);
        freeReplyObject(replies != NULL ? replies[i] : NULL);
    }
    free(keys);
    free(replies);
    json_object_put(entries);
}

static json_object *worker_entry(const char *id, long long left, const redisReply *held)
{
    json_object *w = json_object_new_object(), *jobs = json_object_new_array();
    json_object_object_add(w, "id", json_object_new_string(id));
    json_object_object_add(w, "lease_ms_left", json_object_new_int64(left));
    json_object_object_add(w, "alive", json_object_new_boolean(left >= 0));
    for (size_t i = 0; held != NULL && held->type == REDIS_REPLY_ARRAY && i < held->elements; i++) {
        json_object_array_add(jobs, held_entry(held->element[i]->str));
    }
    json_object_object_add(w, "jobs", jobs);
    return w;
}

/* [{"id", "lease_ms_left", "alive", "jobs": [...]}] of the workers registered on queue q: the
 * lease set, then every active list, then every job's timing, three round trips in all. */
static json_object *workers(struct sctx *s, const char *q)
{
    char last[32];
    snprintf(last, sizeof last, "%d", STATS_WORKERS_MAX - 1);
    redisReply *r = on_key(s, "ZRANGE", q, "workers", "0", last, "WITHSCORES", NULL);
    size_t n = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    char(*keys)[RQ_KEY_MAX] = calloc(n + 1, sizeof *keys);
    redisReply **held = calloc(n + 1, sizeof *held);
    for (size_t i = 0; keys != NULL && i < n; i++) {
        char suffix[RQ_KEY_MAX];
        snprintf(suffix, sizeof suffix, "active:%.400s", r->element[2 * i]->str);
        rq_key(keys[i], RQ_KEY_MAX, q, suffix);
    }
    if (n > 0 && keys != NULL && held != NULL) {
        each_key(s, "LRANGE", keys, n, "0", "-1", held);
    }
    json_object *list = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        long long left = strtoll(r->element[2 * i + 1]->str, NULL, 10) - s->now_ms;
        json_object_array_add(
            list, worker_entry(r->element[2 * i]->str, left, held != NULL ? held[i] : NULL));
        freeReplyObject(held != NULL ? held[i] : NULL);
    }
    add_timings(s, q, list);
    freeReplyObject(r);
    free(keys);
    free(held);
    return list;
}

/* ---------------------------------------------------------------- counts over every worker */

/* The ids in pixq:{q}:workers (scores: lease deadlines, ms on Redis's clock), all of them or,
 * with `live`, those whose lease has not run out at s->now_ms (as worker_entry()'s "alive"). One
 * reply, ids only; NULL if it failed. */
static redisReply *worker_ids(struct sctx *s, const char *q, bool live)
{
    char now[32];
    snprintf(now, sizeof now, "%lld", s->now_ms);
    return on_key(s, "ZRANGEBYSCORE", q, "workers", live ? now : "-inf", "+inf", NULL);
}

/* Workers of queue q whose lease holds: every one, not only those listed. */
static long long live_workers(struct sctx *s, const char *q)
{
    char now[32];
    snprintf(now, sizeof now, "%lld", s->now_ms);
    redisReply *r = on_key(s, "ZCOUNT", q, "workers", now, "+inf", NULL);
    long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return n;
}

/* Entries on the active lists of every worker registered on queue q: its ids, then a pipelined
 * LLEN of STATS_LLEN_CHUNK lists per round trip (all keys of q: one hash slot). */
static long long active_entries(struct sctx *s, const char *q)
{
    redisReply *r = worker_ids(s, q, false);
    size_t n = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    char(*keys)[RQ_KEY_MAX] = calloc(STATS_LLEN_CHUNK, sizeof *keys);
    redisReply **lens = calloc(STATS_LLEN_CHUNK, sizeof *lens);
    long long total = 0;
    for (size_t at = 0; keys != NULL && lens != NULL && at < n && s->error[0] == '\0';
         at += STATS_LLEN_CHUNK) {
        size_t k = n - at < STATS_LLEN_CHUNK ? n - at : STATS_LLEN_CHUNK;
        for (size_t i = 0; i < k; i++) {
            char suffix[RQ_KEY_MAX];
            snprintf(suffix, sizeof suffix, "active:%.400s", r->element[at + i]->str);
            rq_key(keys[i], RQ_KEY_MAX, q, suffix);
        }
        each_key(s, "LLEN", keys, k, NULL, NULL, lens);
        for (size_t i = 0; i < k; i++) {
            total += lens[i] != NULL && lens[i]->type == REDIS_REPLY_INTEGER ? lens[i]->integer : 0;
            freeReplyObject(lens[i]);
        }
    }
    if (n > 0 && (keys == NULL || lens == NULL) && s->error[0] == '\0') {
        snprintf(s->error, sizeof s->error, "out of memory");
    }
    freeReplyObject(r);
    free(keys);
    free(lens);
    return total;
}

/* ---------------------------------------------------------------- queue figures */

/* {"job_id", "enqueued_at_ms", "age_ms"} of the job at entry `payload`, or NULL if the entry
 * is one of pixq's own (a wake-up token, a task). An entry that is not JSON is a job (without
 * an id or a stamp), as a worker takes it. */
static json_object *job_entry(struct sctx *s, const char *payload)
{
    bool task;
    json_object *doc = stats_parse_entry(payload, &task), *at = NULL;
    const char *kind = task ? "task" : "job";
    const char *id = doc != NULL ? stats_entry_id(doc, task, &kind) : NULL;
    if (strcmp(kind, "job") != 0) {
        json_object_put(doc); /* a wake-up token or a task, not a job */
        return NULL;
    }
    json_object_object_get_ex(doc, "pixq_enqueued_at", &at);
    bool stamped = at != NULL && json_object_is_type(at, json_type_int);
    long long when = stamped ? json_object_get_int64(at) : 0;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "job_id", id != NULL ? json_object_new_string(id) : NULL);
    json_object_object_add(o, "enqueued_at_ms", stamped ? json_object_new_int64(when) : NULL);
    /* a stamp ahead of Redis's clock (a producer's clock ahead) is a job just enqueued */
    long long age = when >= s->now_ms ? 0 : when < 0 ? s->now_ms : s->now_ms - when;
    json_object_object_add(o, "age_ms", stamped ? json_object_new_int64(age) : NULL);
    json_object_put(doc);
    return o;
}

/* The job at the consuming end of pixq:{q}:jobs, pixq's own entries skipped (upload tasks
 * promoted there by the hundred while a bucket is throttled, wake-up tokens): read from that
 * end STATS_OLDEST_SCAN entries first, then STATS_OLDEST_PAGE at a time, as far as
 * STATS_OLDEST_SCAN_MAX. NULL when no job waits (within that reach). */
static json_object *oldest_job(struct sctx *s, const char *q)
{
    json_object *o = NULL;
    long from = 0; /* entries looked at, from the consuming end */
    while (o == NULL && from < STATS_OLDEST_SCAN_MAX && s->error[0] == '\0') {
        long n = from == 0 ? STATS_OLDEST_SCAN : STATS_OLDEST_PAGE;
        n = n < STATS_OLDEST_SCAN_MAX - from ? n : STATS_OLDEST_SCAN_MAX - from; /* the last page */
        char first[32], last[32];
        snprintf(first, sizeof first, "%ld", -(from + n));
        snprintf(last, sizeof last, "%ld", -(from + 1));
        redisReply *r = on_key(s, "LRANGE", q, "jobs", first, last, NULL);
        size_t got = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (size_t i = got; i > 0 && o == NULL; i--) {
            o = job_entry(s, r->element[i - 1]->str);
        }
        freeReplyObject(r);
        if (got < (size_t)n) {
            break; /* the whole list was read */
        }
        from += n;
    }
    return o;
}

/* {"window_s", "succeeded", "failed"}: finish.lua's per-second counts of the last window. */
static json_object *throughput(struct sctx *s, const char *q)
{
    long long since = s->now_ms / 1000 - STATS_TPUT_WINDOW_S;
    long long ok = 0, failed = 0;
    redisReply *r = on_key(s, "HGETALL", q, "tput", NULL);
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        char *end;
        long long sec = strtoll(r->element[i]->str, &end, 10);
        long long n = strtoll(r->element[i + 1]->str, NULL, 10);
        if (sec > since && strcmp(end, ":succeeded") == 0) {
            ok += n;
        } else if (sec > since && strcmp(end, ":failed") == 0) {
            failed += n;
        }
    }
    freeReplyObject(r);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "window_s", json_object_new_int(STATS_TPUT_WINDOW_S));
    json_object_object_add(o, "succeeded", json_object_new_int64(ok));
    json_object_object_add(o, "failed", json_object_new_int64(failed));
    return o;
}

static json_object *counters(struct sctx *s, const char *q)
{
    json_object *c = json_object_new_object();
    redisReply *r = on_key(s, "HGETALL", q, "stats", NULL);
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        json_object_object_add(c, r->element[i]->str,
                               json_object_new_int64(strtoll(r->element[i + 1]->str, NULL, 10)));
    }
    freeReplyObject(r);
    return c;
}

/* A queue's depths: what `pixq queues` shows of it, and the first fields of `pixq stats`. */
static json_object *depths(struct sctx *s, const char *q)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "queue", json_object_new_string(q));
    json_object_object_add(o, "jobs", json_object_new_int64(waiting_jobs(s, q)));
    json_object_object_add(o, "delayed",
                           json_object_new_int64(int_on_key(s, "ZCARD", q, "delayed")));
    json_object_object_add(o, "dead", json_object_new_int64(int_on_key(s, "LLEN", q, "dead")));
    json_object_object_add(o, "active", json_object_new_int64(active_entries(s, q)));
    return o;
}

/* When the earliest entry of pixq:{q}:delayed (a retry, a throttled upload, a delayed job) is
 * due, ms from now on Redis's clock: negative when it is overdue, which a waiting worker never
 * lets it be for long (a wake-up token calls it to promote): delayed work that no worker takes,
 * or workers all busy. NULL when nothing is delayed. */
static json_object *next_delayed(struct sctx *s, const char *q)
{
    redisReply *r = on_key(s, "ZRANGE", q, "delayed", "0", "0", "WITHSCORES", NULL);
    json_object *o = NULL;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        o = json_object_new_int64((long long)strtod(r->element[1]->str, NULL) - s->now_ms);
    }
    freeReplyObject(r);
    return o;
}

static json_object *queue_stats(struct sctx *s, const char *q)
{
    json_object *ws = workers(s, q);
    json_object *o = depths(s, q);
    json_object_object_add(o, "parked_bytes", json_object_new_int64(parked_bytes(s, q)));
    json_object_object_add(o, "oldest_job", oldest_job(s, q));
    json_object_object_add(o, "next_delayed_ms", next_delayed(s, q));
    json_object_object_add(o, "throughput", throughput(s, q));
    json_object_object_add(o, "live_workers", json_object_new_int64(live_workers(s, q)));
    json_object_object_add(o, "registered_workers",
                           json_object_new_int64(int_on_key(s, "ZCARD", q, "workers")));
    json_object_object_add(o, "workers", ws);
    json_object_object_add(o, "counters", counters(s, q));
    return o;
}

/* ---------------------------------------------------------------- one collection */

static json_object *totals(json_object *queues)
{
    long long ok = 0, failed = 0;
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *t = json_object_object_get(json_object_array_get_idx(queues, i), "throughput");
        ok += json_object_get_int64(json_object_object_get(t, "succeeded"));
        failed += json_object_get_int64(json_object_object_get(t, "failed"));
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "window_s", json_object_new_int(STATS_TPUT_WINDOW_S));
    json_object_object_add(o, "succeeded", json_object_new_int64(ok));
    json_object_object_add(o, "failed", json_object_new_int64(failed));
    return o;
}

/* Every queue's counters added up, by name. */
static json_object *sum_counters(json_object *queues)
{
    json_object *sum = json_object_new_object();
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        json_object *c = json_object_object_get(json_object_array_get_idx(queues, i), "counters");
        json_object_object_foreach(c, name, v)
        {
            json_object *have = json_object_object_get(sum, name);
            json_object_object_add(
                sum, name,
                json_object_new_int64(json_object_get_int64(have) + json_object_get_int64(v)));
        }
    }
    return sum;
}

/* Live workers across the queues of qs, each counted once (a worker may serve several queues):
 * every live id of every queue, not only those listed. */
static long long distinct_live(struct sctx *s, const struct cfg_queues *qs)
{
    json_object *seen = json_object_new_object();
    for (size_t i = 0; i < qs->n && s->error[0] == '\0'; i++) {
        redisReply *r = worker_ids(s, qs->name[i], true);
        for (size_t k = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
            json_object_object_add(seen, r->element[k]->str, NULL);
        }
        freeReplyObject(r);
    }
    long long n = json_object_object_length(seen);
    json_object_put(seen);
    return n;
}

/* What the server's INFO says of its memory (rq_server_check()): each field null when INFO did not
 * say it, the server's refusal of INFO (an ACL without +info) in info_refused. */
static json_object *redis_memory(struct sctx *s)
{
    struct rq_server srv;
    struct err e = {{0}};
    if (rq_server_check(s->rq, &srv, &e) < 0) {
        if (s->error[0] == '\0') {
            snprintf(s->error, sizeof s->error, "%s", e.msg);
        }
        return NULL;
    }
    bool known = srv.memory_known, answered = srv.refused[0] == '\0';
    json_object *o = json_object_new_object();
    json_object_object_add(o, "used_memory",
                           known ? json_object_new_int64((int64_t)srv.used_memory) : NULL);
    json_object_object_add(o, "not_counted_for_evict",
                           known ? json_object_new_int64((int64_t)srv.not_counted) : NULL);
    json_object_object_add(o, "maxmemory",
                           answered ? json_object_new_int64((int64_t)srv.maxmemory) : NULL);
    json_object_object_add(o, "maxmemory_policy",
                           srv.policy[0] != '\0' ? json_object_new_string(srv.policy) : NULL);
    json_object_object_add(o, "full", known ? json_object_new_boolean(rq_server_full(&srv)) : NULL);
    json_object_object_add(o, "info_refused",
                           answered ? NULL : json_object_new_string(srv.refused));
    return o;
}

/* Everything `pixq stats` shows, as one JSON object; NULL (reason in s->error) if Redis failed. */
static json_object *collect(struct sctx *s, const struct cfg_queues *qs)
{
    unsigned long io_before = rq_io_errors(s->rq);
    s->error[0] = '\0';
    s->now_ms = redis_ms(s);
    json_object *o = json_object_new_object(), *queues = json_object_new_array();
    for (size_t i = 0; i < qs->n && s->error[0] == '\0'; i++) {
        json_object_array_add(queues, queue_stats(s, qs->name[i]));
    }
    json_object_object_add(o, "time_ms", json_object_new_int64(s->now_ms));
    json_object_object_add(o, "live_workers", json_object_new_int64(distinct_live(s, qs)));
    json_object_object_add(o, "throughput", totals(queues));
    json_object_object_add(o, "counters", sum_counters(queues));
    json_object_object_add(o, "queues", queues);
    struct err e = {{0}};
    json_object *limits = s->error[0] == '\0' ? limit_collect(s->rq, s->cfg, &e) : NULL;
    if (limits == NULL && s->error[0] == '\0') {
        snprintf(s->error, sizeof s->error, "%s", e.msg);
    }
    json_object_object_add(o, "limits", limits);
    json_object_object_add(o, "redis", s->error[0] == '\0' ? redis_memory(s) : NULL);
    if (s->error[0] == '\0' && rq_io_errors(s->rq) != io_before) {
        snprintf(s->error, sizeof s->error, "redis: connection lost");
    }
    s->passing = s->error[0] != '\0' && outage_passing(s->rq, io_before, s->error);
    if (s->error[0] != '\0') {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------- text */

/* Prints a job_id as a producer wrote it (not checked yet: it may be waiting), escaped. */
static void print_job_id(const char *before, const char *id, const char *after)
{
    char *shown = cli_printable(id);
    printf("%s%s%s", before, shown != NULL ? shown : "(out of memory)", after);
    free(shown);
}

static void print_oldest(json_object *q)
{
    json_object *old = cli_get(q, "oldest_job");
    if (old == NULL) {
        printf("  oldest job     none waiting\n");
    } else if (cli_get(old, "age_ms") == NULL) {
        print_job_id("  oldest job     unknown (", cli_str(old, "job_id", "no job_id"),
                     ": pushed without pixq_enqueued_at)\n");
    } else {
        printf("  oldest job     %.1f s ", (double)cli_int(old, "age_ms") / 1000.0);
        print_job_id("(", cli_str(old, "job_id", "no job_id"), ")\n");
    }
}

static void print_next_delayed(json_object *q)
{
    json_object *due = cli_get(q, "next_delayed_ms");
    if (due == NULL) {
        printf("  next delayed   none\n");
    } else if (json_object_get_int64(due) >= 0) {
        printf("  next delayed   due in %.1f s\n", (double)json_object_get_int64(due) / 1000.0);
    } else {
        printf("  next delayed   overdue by %.1f s\n",
               -(double)json_object_get_int64(due) / 1000.0);
    }
}

static void print_worker(json_object *w)
{
    json_object *jobs = cli_get(w, "jobs");
    print_job_id("    ", cli_str(w, "id", ""), ""); /* a worker id is escaped as a job id */
    printf("  %s  lease %.1f s  jobs [",
           json_object_get_boolean(cli_get(w, "alive")) ? "alive" : "EXPIRED",
           (double)cli_int(w, "lease_ms_left") / 1000.0);
    for (size_t i = 0; i < json_object_array_length(jobs); i++) {
        json_object *j = json_object_array_get_idx(jobs, i);
        const char *id = cli_str(j, "job_id", NULL);
        printf("%s", i > 0 ? "," : "");
        if (id != NULL) {
            print_job_id("\"", id, "\"");
        } else {
            printf("(%s)", cli_str(j, "kind", ""));
        }
    }
    printf("]\n");
    for (size_t i = 0; i < json_object_array_length(jobs); i++) {
        json_object *j = json_object_array_get_idx(jobs, i);
        print_job_id("      ", cli_str(j, "job_id", "(no id yet)"), "  ");
        printf("%s", cli_str(j, "kind", ""));
        if (cli_get(j, "running_ms") != NULL) {
            printf(", running since %.1f s, run %lld", (double)cli_int(j, "running_ms") / 1000.0,
                   cli_int(j, "runs"));
        }
        printf("\n");
    }
}

/* "  counters" and a line per counter of `counters`; names are what some client wrote in Redis:
 * shown, not sent to the terminal. */
static void print_counters(json_object *counters)
{
    printf("  counters\n");
    json_object_object_foreach(counters, name, v)
    {
        char *shown = cli_printable(name);
        printf("    %-18s %s\n", shown != NULL ? shown : "(out of memory)",
               json_object_get_string(v));
        free(shown);
    }
}

static void print_queue(json_object *q)
{
    json_object *t = cli_get(q, "throughput");
    printf("queue %s\n", cli_str(q, "queue", ""));
    printf("  jobs waiting   %lld\n", cli_int(q, "jobs"));
    printf("  delayed        %lld\n", cli_int(q, "delayed"));
    printf("  dead           %lld\n", cli_int(q, "dead"));
    printf("  active         %lld\n", cli_int(q, "active"));
    printf("  parked bytes   %lld\n", cli_int(q, "parked_bytes"));
    print_oldest(q);
    print_next_delayed(q);
    printf("  last minute    %lld succeeded, %lld failed\n", cli_int(t, "succeeded"),
           cli_int(t, "failed"));
    printf("  live workers   %lld\n", cli_int(q, "live_workers"));
    json_object *ws = cli_get(q, "workers");
    size_t listed = json_object_array_length(ws);
    for (size_t i = 0; i < listed; i++) {
        print_worker(json_object_array_get_idx(ws, i));
    }
    if (cli_int(q, "registered_workers") > (long long)listed) {
        printf("    ... and %lld more workers (%zu listed)\n",
               cli_int(q, "registered_workers") - (long long)listed, listed);
    }
    print_counters(cli_get(q, "counters"));
}

/* What maxmemory-policy `policy` does past maxmemory, in the policy line and in FULL's (`full`):
 * noeviction (or unknown) refuses what adds data; allkeys-* evicts any key, a whole queue among
 * them; volatile-* only keys with a TTL, never a queue, then refuses as noeviction does. */
static const char *policy_meaning(const char *policy, bool full)
{
    if (strncmp(policy, "allkeys-", 8) == 0) {
        return full ? "Redis is evicting keys"
                    : ": Redis evicts keys when full, a whole queue among them (set noeviction)";
    }
    if (strncmp(policy, "volatile-", 9) == 0) {
        return full ? "Redis evicts keys with a TTL, and refuses producers' pushes once none is "
                      "left"
                    : ": Redis evicts keys with a TTL when full (job hashes, results, parked "
                      "uploads), then refuses what adds data (set noeviction)";
    }
    return full ? "Redis refuses producers' pushes; workers settle what they hold and take no "
                  "fresh job until it has room"
                : "";
}

long long stats_redis_counted(json_object *redis)
{
    long long counted = cli_int(redis, "used_memory") - cli_int(redis, "not_counted_for_evict");
    return counted > 0 ? counted : 0;
}

/* Redis's memory against its maxmemory, and what a full Redis means for the fleet. */
static void print_redis(json_object *r)
{
    printf("redis\n");
    if (cli_get(r, "used_memory") == NULL) {
        printf("  memory         unknown (%s)\n",
               cli_str(r, "info_refused", "INFO does not say used_memory"));
        return;
    }
    const char *policy = cli_str(r, "maxmemory_policy", "");
    long long counted = stats_redis_counted(r), max = cli_int(r, "maxmemory");
    if (max <= 0) {
        printf("  memory         %lld bytes, no maxmemory\n", counted);
    } else {
        double pct = 100.0 * (double)counted / (double)max;
        printf("  memory         %lld of maxmemory %lld bytes (%s%.0f %%)\n", counted, max,
               pct > 999 ? "over " : "", pct > 999 ? 999.0 : pct);
    }
    printf("  policy         %s%s\n", policy[0] != '\0' ? policy : "unknown",
           policy_meaning(policy, false));
    if (json_object_get_boolean(cli_get(r, "full"))) {
        printf("  FULL           %s\n", policy_meaning(policy, true));
    }
}

static void print_text(json_object *s)
{
    json_object *queues = cli_get(s, "queues");
    for (size_t i = 0; i < json_object_array_length(queues); i++) {
        print_queue(json_object_array_get_idx(queues, i));
    }
    json_object *t = cli_get(s, "throughput");
    printf("fleet\n  live workers   %lld\n  last minute    %lld succeeded, %lld failed\n",
           cli_int(s, "live_workers"), cli_int(t, "succeeded"), cli_int(t, "failed"));
    print_counters(cli_get(s, "counters")); /* summed over the queues */
    print_redis(cli_get(s, "redis"));
    printf("limits\n");
    limit_print(cli_get(s, "limits"), "  ");
}

/* ---------------------------------------------------------------- pixq stats */

static const char STATS_USAGE[] =
    "usage: pixq stats [--json | --prometheus] [--watch [SECONDS] [--count N]]\n"
    "\n"
    "For every queue of PIXQ_QUEUE (highest priority first): jobs waiting, delayed, dead and\n"
    "active; the bytes of its outputs parked in Redis (PIXQ_MAX_PARKED_MB); the oldest waiting\n"
    "job's age (by its pixq_enqueued_at stamp; \"unknown\" for jobs pushed without it); when\n"
    "the earliest delayed entry is due (overdue: no worker has promoted it); jobs\n"
    "succeeded and failed in the last minute; the live workers and what each holds, since when\n"
    "(the first 1000 workers by lease deadline are listed; every one is counted); the queue's\n"
    "counters. Then Redis's memory against its maxmemory, and whether it is full (its INFO,\n"
    "which an ACL must allow: +info), and the upload limiter of every S3 bucket (as pixq\n"
    "limit show).\n"
    "\n"
    "  --json            one JSON object per refresh\n"
    "  --prometheus      the Prometheus text exposition format\n"
    "  --watch [SECONDS] refresh every SECONDS (default 2) until interrupted; on a terminal\n"
    "                    the screen is cleared first\n"
    "  --count N         with --watch: stop after N refreshes\n"
    "With --watch, a Redis that is not up yet, goes away or is loading is tried again for\n"
    "up to PIXQ_REDIS_OUTAGE_MS (a line on stderr says so).\n"
    "\n"
    "Exit status: 0 done, 1 Redis failed, 2 bad usage.\n";

enum stats_format { FMT_TEXT, FMT_JSON, FMT_PROMETHEUS };

struct stats_opts {
    enum stats_format format;
    bool watch;
    double every_s;
    long count; /* 0: until interrupted */
};

static int stats_option(int argc, char **argv, int *i, struct stats_opts *o)
{
    const char *a = argv[*i];
    if (strcmp(a, "--json") == 0 || strcmp(a, "--prometheus") == 0) {
        enum stats_format f = strcmp(a, "--json") == 0 ? FMT_JSON : FMT_PROMETHEUS;
        if (o->format != FMT_TEXT && o->format != f) {
            return cli_usage("stats", "--json and --prometheus exclude each other");
        }
        o->format = f;
        return 0;
    }
    if (strcmp(a, "--watch") == 0) {
        o->watch = true;
        if (*i + 1 < argc && argv[*i + 1][0] != '-') {
            if (!cli_double(argv[++*i], 0.1, 86400, &o->every_s)) {
                return cli_usage("stats", "--watch takes 0.1 to 86400 seconds, not '%s'", argv[*i]);
            }
        }
        return 0;
    }
    if (strcmp(a, "--count") == 0) {
        if (*i + 1 >= argc || !cli_long(argv[*i + 1], 1, 1000000, &o->count)) {
            return cli_usage("stats", "--count takes 1 to 1000000 refreshes");
        }
        ++*i;
        return 0;
    }
    return cli_usage("stats", "unknown argument '%s'", a);
}

static int stats_opts(int argc, char **argv, struct stats_opts *o)
{
    *o = (struct stats_opts){FMT_TEXT, false, STATS_WATCH_S, 0};
    for (int i = 1; i < argc; i++) {
        if (stats_option(argc, argv, &i, o) != 0) {
            return CLI_USAGE;
        }
    }
    if (o->count > 0 && !o->watch) {
        return cli_usage("stats", "--count needs --watch");
    }
    return 0;
}

static void render(json_object *s, enum stats_format f)
{
    if (f == FMT_JSON) {
        cli_print_json(s);
    } else if (f == FMT_PROMETHEUS) {
        stats_print_prometheus(s);
    } else {
        print_text(s);
    }
    (void)cli_flush();
}

/* A collection that failed, under --watch: the wait (ms) before the next one while Redis may come
 * back, or -1 with the reason in s->error. */
static long watch_failed(struct sctx *s, struct outage *out, const struct stats_opts *o)
{
    struct err e = {{0}};
    long wait_ms = o->watch && s->passing ? outage_failed(out, s->error, clock_mono_ms(), &e) : -1;
    if (wait_ms < 0 && e.msg[0] != '\0') {
        snprintf(s->error, sizeof s->error, "%s", e.msg);
    }
    return wait_ms;
}

static int watch_loop(struct sctx *s, const struct cfg_queues *qs, const struct stats_opts *o)
{
    bool clear = o->watch && isatty(STDOUT_FILENO) == 1;
    struct outage out;
    outage_init(&out, "stats", s->cfg->redis_outage_ms, false);
    for (long n = 1;;) { /* n: the refreshes shown, which --count counts */
        json_object *st = collect(s, qs);
        if (st == NULL) {
            long wait_ms = watch_failed(s, &out, o);
            if (wait_ms < 0) {
                return cli_fail("stats: %s", s->error);
            }
            clock_sleep_ms(wait_ms);
            continue;
        }
        outage_over(&out, clock_mono_ms());
        if (clear) {
            fputs("\033[H\033[2J", stdout);
        }
        render(st, o->format);
        json_object_put(st);
        if (cli_output_errno() != 0) {
            return CLI_FAILED; /* main() says why */
        }
        if (!o->watch || (o->count > 0 && n >= o->count)) {
            return CLI_OK;
        }
        n++;
        clock_sleep_ms((long)(o->every_s * 1000));
    }
}

/* The connection; with --watch, a Redis not up yet (or loading) is waited for as one that goes
 * away later is (outage.h). NULL with the reason in `e`. */
static struct rq *connect_watching(const struct cfg *cfg, bool watch, struct err *e)
{
    struct outage out;
    outage_init(&out, "stats", cfg->redis_outage_ms, false);
    for (;;) {
        struct rq *r = cli_connect(cfg, e);
        if (r != NULL) {
            outage_over(&out, clock_mono_ms());
            return r;
        }
        if (!watch || rq_refused_for_good(e->msg)) {
            return NULL;
        }
        struct err why = *e;
        long wait_ms = outage_failed(&out, why.msg, clock_mono_ms(), e);
        if (wait_ms < 0) {
            return NULL;
        }
        clock_sleep_ms(wait_ms);
    }
}

int stats_main(const struct cfg *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(STATS_USAGE, stdout);
        return CLI_OK;
    }
    struct stats_opts o;
    struct cfg_queues qs;
    if (stats_opts(argc, argv, &o) != 0 || cli_queues(cfg, &qs) < 0) {
        return CLI_USAGE;
    }
    struct err e = {{0}};
    struct sctx s = {cfg, connect_watching(cfg, o.watch, &e), 0, "", false};
    if (s.rq == NULL) {
        return cli_fail("stats: %s", e.msg);
    }
    int rc = watch_loop(&s, &qs, &o);
    rq_destroy(s.rq);
    return rc;
}

/* ---------------------------------------------------------------- pixq queues */

static const char QUEUES_USAGE[] =
    "usage: pixq queues [--json]\n"
    "\n"
    "Lists the queues found in Redis (keys pixq:{Q}:jobs, :delayed, :dead or :workers), by name,\n"
    "with their depths: jobs waiting, delayed, dead, and active (on the workers' active lists).\n"
    "  --json   one JSON array of {\"queue\", \"jobs\", \"delayed\", \"dead\", \"active\"}\n"
    "\n"
    "Exit status: 0 done, 1 Redis failed, 2 bad usage.\n";

/* Adds the queue of `key` to `names` (a JSON object used as a set) if it is one of pixq's
 * per-queue lists or sets. A name longer than a queue name may be (pushed by another client) is
 * not cut to one, which would show another queue's depths: it is counted in `*too_long`. */
static void note_queue(json_object *names, const char *key, size_t *too_long)
{
    static const char *const kinds[] = {"}:jobs", "}:delayed", "}:dead", "}:workers"};
    const char *open = key + strlen("pixq:{");
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        size_t n = strlen(key), k = strlen(kinds[i]);
        if (n > k + 6 && strcmp(key + n - k, kinds[i]) == 0 && strncmp(key, "pixq:{", 6) == 0) {
            if (n - k - 6 >= CFG_QUEUE_NAME_MAX) {
                ++*too_long;
                continue;
            }
            char name[CFG_QUEUE_NAME_MAX];
            snprintf(name, sizeof name, "%.*s", (int)(n - k - 6), open);
            json_object_object_add(names, name, NULL);
        }
    }
}

static json_object *find_queues(struct sctx *s, size_t *too_long)
{
    json_object *names = json_object_new_object();
    char cursor[32] = "0";
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", "pixq:{*}:*", "COUNT", "1000"};
        redisReply *r = run(s, 6, argv);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            note_queue(names, r->element[1]->element[i]->str, too_long);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return names;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(
        json_object_get_string(json_object_object_get(*(json_object *const *)a, "queue")),
        json_object_get_string(json_object_object_get(*(json_object *const *)b, "queue")));
}

static void print_queues(json_object *list, bool json)
{
    if (json) {
        cli_print_json(list);
        return;
    }
    printf("%-30s %10s %10s %10s %10s\n", "queue", "jobs", "delayed", "dead", "active");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *q = json_object_array_get_idx(list, i);
        /* a name is what some client wrote in Redis: shown, not sent to the terminal */
        char *name = cli_printable(cli_str(q, "queue", ""));
        printf("%-30s %10lld %10lld %10lld %10lld\n", name != NULL ? name : "(out of memory)",
               cli_int(q, "jobs"), cli_int(q, "delayed"), cli_int(q, "dead"), cli_int(q, "active"));
        free(name);
    }
}

int queues_main(const struct cfg *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(QUEUES_USAGE, stdout);
        return CLI_OK;
    }
    bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !json)) {
        return cli_usage("queues", "unknown argument '%s'", argv[argc == 2 ? 1 : 2]);
    }
    struct err e = {{0}};
    struct sctx s = {cfg, cli_connect(cfg, &e), 0, "", false};
    if (s.rq == NULL) {
        return cli_fail("queues: %s", e.msg);
    }
    size_t too_long = 0;
    json_object *names = find_queues(&s, &too_long), *list = json_object_new_array();
    json_object_object_foreach(names, name, unused)
    {
        (void)unused;
        json_object_array_add(list, depths(&s, name));
    }
    json_object_array_sort(list, by_name);
    if (s.error[0] == '\0') {
        print_queues(list, json);
    }
    if (s.error[0] == '\0' && too_long > 0) {
        fprintf(stderr,
                "pixq: warning: queues: %zu key(s) of queues whose names are longer than %d "
                "bytes (more than a queue name may have) not listed\n",
                too_long, CFG_QUEUE_NAME_MAX - 1);
    }
    json_object_put(names);
    json_object_put(list);
    rq_destroy(s.rq);
    return s.error[0] == '\0' ? CLI_OK : cli_fail("queues: %s", s.error);
}
