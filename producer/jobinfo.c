#define _GNU_SOURCE /* memmem */
#include "jobinfo.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "clock.h"
#include "job.h"
#include "outage.h"
#include "rq.h"
#include "stats.h"
#include "wait.h"

#define JOB_USAGE                                                                                  \
    "usage: pixq job [--json] [--scan N] [--wait [--timeout SECONDS]] [--] JOB_ID\n"               \
    "\n"                                                                                           \
    "Where job JOB_ID is and what became of it, in every queue of PIXQ_QUEUE (--queue NAME for\n"  \
    "one): held by a worker (running, uploading, posting back), waiting (its place from the\n"     \
    "front of the queue), delayed (a retry or --delay, and when it is due), outputs parked for\n"  \
    "their upload, a postback retry, its result (kept PIXQ_RESULT_TTL_S), whether its postback\n"  \
    "was delivered, its dead entry. The queue's waiting jobs are searched from the front and\n"    \
    "its dead entries from the newest, N of each (--scan, 10000); the rest is read whole.\n"       \
    "\n"                                                                                           \
    "  --json       one JSON object: {\"job_id\", \"time_ms\", \"queues\": [...]}, one for\n"      \
    "               each queue where the job was found\n"                                          \
    "  --scan N     entries of the queue and of the dead list searched, each (1 to 10000000)\n"    \
    "  --wait       search again until the job has its outcome (succeeded, failed or dead; a\n"    \
    "               postback retry still due does not change it), then show it as above\n"         \
    "  --timeout S  longest --wait, 1 to 86400 seconds (default 300)\n"                            \
    "  --           ends the options: a JOB_ID that begins with - follows it\n"                    \
    "\n"                                                                                           \
    "Exit status: 0 found (with --wait: succeeded), 1 not found anywhere (with --wait: failed,\n"  \
    "dead or still without its outcome at --timeout), or Redis failed, 2 bad usage.\n"

/* One queue's search for one job. */
struct look {
    struct rq *rq;
    const char *q;    /* the queue */
    const char *id;   /* the job id */
    long scan;        /* entries of `jobs` and of `dead` searched, each */
    long long now_ms; /* Redis's clock */
    struct err e;     /* the first failure ("" if none) */
    json_object *o;   /* what was found: the queue's object of --json */
};

/* pixq:{q}:<prefix><id> (or pixq:{q}:<prefix> when `id` is NULL). */
static void look_key(const struct look *l, const char *prefix, const char *id, char *out)
{
    char suffix[RQ_KEY_MAX];
    snprintf(suffix, sizeof suffix, "%s%s", prefix, id != NULL ? id : "");
    rq_key(out, RQ_KEY_MAX, l->q, suffix);
}

/* Runs a command; NULL (the reason in l->e, if it is the first) if it failed. */
static redisReply *look_run(struct look *l, int argc, const char **argv)
{
    struct err e = {{0}};
    redisReply *r = rq_commandv(l->rq, 0, argc, argv, NULL, &e);
    if (r == NULL && l->e.msg[0] == '\0') {
        l->e = e;
    }
    return r;
}

/* Runs `n` commands in one round trip; -1 (the reason in l->e) if any failed. */
static int look_pipeline(struct look *l, size_t n, const struct rq_cmd *cmds, redisReply **replies)
{
    struct err e = {{0}};
    int rc = rq_pipeline(l->rq, n, cmds, replies, &e);
    if (rc < 0 && l->e.msg[0] == '\0') {
        l->e = e;
    }
    return rc;
}

/* The place of the job in a batch entry (a JSON array of jobs, as Blitline took them and as
 * `redis-cli LPUSH` may push them): its index from 1 and the batch's number of jobs; index 0
 * when the entry is the job itself. */
struct in_batch {
    long index, jobs;
};

/* Whether `doc`, a JSON array, holds the job l->id: its place in *b. */
static bool batch_holds(const struct look *l, json_object *doc, struct in_batch *b)
{
    size_t n = json_object_array_length(doc);
    for (size_t i = 0; i < n; i++) {
        const char *kind;
        const char *id = stats_entry_id(json_object_array_get_idx(doc, i), false, &kind);
        if (id != NULL && strcmp(id, l->id) == 0) {
            *b = (struct in_batch){(long)i + 1, (long)n};
            return true;
        }
    }
    return false;
}

/* The kind of entry `payload` is ("job", "upload", "postback", "poison") if it is about job
 * l->id, else NULL; a batch that holds the job is of kind "job", its place in *b. The id is
 * looked for in the text first: most entries are not parsed. */
static const char *entry_kind(const struct look *l, const char *payload, size_t len,
                              struct in_batch *b)
{
    *b = (struct in_batch){0, 0};
    if (memmem(payload, len, l->id, strlen(l->id)) == NULL) {
        return NULL;
    }
    bool task;
    json_object *doc = stats_parse_entry(payload, &task);
    const char *kind = NULL;
    bool ours;
    if (!task && json_object_is_type(doc, json_type_array)) {
        kind = "job";
        ours = batch_holds(l, doc, b);
    } else {
        const char *id = doc != NULL ? stats_entry_id(doc, task, &kind) : NULL;
        ours = id != NULL && strcmp(id, l->id) == 0;
    }
    json_object_put(doc);
    return ours ? kind : NULL; /* stats_entry_id()'s kinds are static strings */
}

/* Adds to `o` the job's place in a batch entry, "batch": {"index", "jobs"}, if it is in one. */
static void add_batch(json_object *o, const struct in_batch *b)
{
    if (b->index > 0) {
        json_object *place = json_object_new_object();
        json_object_object_add(place, "index", json_object_new_int64(b->index));
        json_object_object_add(place, "jobs", json_object_new_int64(b->jobs));
        json_object_object_add(o, "batch", place);
    }
}

/* The length of array `a`, 0 if it is no array (absent). */
static size_t length_of(json_object *a)
{
    return json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

/* Element `i` of array `a`, NULL if there is none. */
static json_object *item_of(json_object *a, size_t i)
{
    return i < length_of(a) ? json_object_array_get_idx(a, i) : NULL;
}

/* Adds to l->o's array `name` (made on first use) the object `v`. */
static void add_to(struct look *l, const char *name, json_object *v)
{
    json_object *a = cli_get(l->o, name);
    if (a == NULL) {
        a = json_object_new_array();
        json_object_object_add(l->o, name, a);
    }
    json_object_array_add(a, v);
}

static json_object *int_field(const char *s)
{
    return json_object_new_int64(strtoll(s, NULL, 10));
}

/* ---------------------------------------------------------------- where to look */

/* Redis's clock, the result (result:<id>, "result" and "outcome") and the job's record
 * (job:<id>: "submitted_at_ms", "first_run_at_ms", "runs", "postback_delivered",
 * "parked_outputs"), in one round trip. */
static void find_record(struct look *l)
{
    char rkey[RQ_KEY_MAX], hkey[RQ_KEY_MAX];
    look_key(l, "result:", l->id, rkey);
    look_key(l, "job:", l->id, hkey);
    const char *time[] = {"TIME"}, *result[] = {"LINDEX", rkey, "0"}, *hash[] = {"HGETALL", hkey};
    struct rq_cmd cmds[] = {{1, time, NULL}, {3, result, NULL}, {2, hash, NULL}};
    redisReply *r[3] = {NULL, NULL, NULL};
    if (look_pipeline(l, 3, cmds, r) == 0) {
        if (r[0]->type == REDIS_REPLY_ARRAY && r[0]->elements == 2) {
            l->now_ms = strtoll(r[0]->element[0]->str, NULL, 10) * 1000 +
                        strtoll(r[0]->element[1]->str, NULL, 10) / 1000;
        }
        if (r[1]->type == REDIS_REPLY_STRING) {
            json_object *doc = json_tokener_parse(r[1]->str);
            json_object_object_add(l->o, "result",
                                   doc != NULL ? doc : json_object_new_string(r[1]->str));
            json_object_object_add(
                l->o, "outcome",
                json_object_new_string(wait_result_failed(r[1]->str) ? "failed" : "succeeded"));
        }
        for (size_t i = 0; r[2]->type == REDIS_REPLY_ARRAY && i + 1 < r[2]->elements; i += 2) {
            const char *f = r[2]->element[i]->str, *v = r[2]->element[i + 1]->str;
            static const char *const names[][2] = {{"submitted", "submitted_at_ms"},
                                                   {"first_seen", "first_run_at_ms"},
                                                   {"runs", "runs"},
                                                   {"pending", "parked_outputs"}};
            for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
                if (strcmp(f, names[k][0]) == 0) {
                    json_object_object_add(l->o, names[k][1], int_field(v));
                }
            }
            if (strcmp(f, "posted") == 0) {
                json_object_object_add(l->o, "postback_delivered", json_object_new_boolean(1));
            }
        }
    }
    for (size_t i = 0; i < 3; i++) {
        freeReplyObject(r[i]);
    }
}

/* The entries about the job on active list `list` (a reply of LRANGE) of worker `worker`, its
 * lease deadline `score` (none if `reaped`): "held_by". */
static void find_held_on(struct look *l, const redisReply *list, const char *worker,
                         long long score, bool reaped)
{
    for (size_t j = 0; list->type == REDIS_REPLY_ARRAY && j < list->elements; j++) {
        struct in_batch b;
        const char *kind = entry_kind(l, list->element[j]->str, list->element[j]->len, &b);
        if (kind == NULL) {
            continue;
        }
        json_object *h = json_object_new_object();
        json_object_object_add(h, "worker", json_object_new_string(worker));
        json_object_object_add(h, "kind", json_object_new_string(kind));
        json_object_object_add(h, "alive", json_object_new_boolean(!reaped && score >= l->now_ms));
        json_object_object_add(h, "lease_ms_left",
                               reaped ? NULL : json_object_new_int64(score - l->now_ms));
        add_batch(h, &b);
        add_to(l, "held_by", h);
    }
}

/* The entries about the job on the active lists of `ids` (a ZRANGE ... WITHSCORES reply of
 * worker ids and lease deadlines, or of reaped workers and their second looks: `reaped`),
 * JOBINFO_ACTIVE_CHUNK lists per round trip: "held_by". */
static void find_held_in(struct look *l, const redisReply *ids, bool reaped)
{
    size_t n = ids->type == REDIS_REPLY_ARRAY ? ids->elements / 2 : 0;
    char(*keys)[RQ_KEY_MAX] = calloc(JOBINFO_ACTIVE_CHUNK, sizeof *keys);
    const char **argv = calloc(4 * JOBINFO_ACTIVE_CHUNK, sizeof *argv);
    struct rq_cmd *cmds = calloc(JOBINFO_ACTIVE_CHUNK, sizeof *cmds);
    redisReply **lists = calloc(JOBINFO_ACTIVE_CHUNK, sizeof *lists);
    if (n > 0 && (keys == NULL || argv == NULL || cmds == NULL || lists == NULL)) {
        err_set(&l->e, "out of memory");
    }
    for (size_t at = 0; at < n && l->e.msg[0] == '\0'; at += JOBINFO_ACTIVE_CHUNK) {
        size_t k = n - at < JOBINFO_ACTIVE_CHUNK ? n - at : JOBINFO_ACTIVE_CHUNK;
        for (size_t i = 0; i < k; i++) {
            look_key(l, "active:", ids->element[2 * (at + i)]->str, keys[i]);
            const char **a = argv + 4 * i;
            a[0] = "LRANGE";
            a[1] = keys[i];
            a[2] = "0";
            a[3] = "-1";
            cmds[i] = (struct rq_cmd){4, a, NULL};
        }
        bool ok = look_pipeline(l, k, cmds, lists) == 0;
        for (size_t i = 0; i < k; i++) {
            if (ok) {
                redisReply **w = ids->element + 2 * (at + i); /* worker, score */
                find_held_on(l, lists[i], w[0]->str, strtoll(w[1]->str, NULL, 10), reaped);
            }
            /* after an error answer (a list of another type) the other replies are answers */
            freeReplyObject(lists[i]);
            lists[i] = NULL;
        }
    }
    free(keys);
    free(argv);
    free(cmds);
    free(lists);
}

/* On the active list of a registered worker, or of a reaped or stopped one not looked at
 * again yet: "held_by". */
static void find_held(struct look *l)
{
    static const char *const sets[] = {"workers", "reaped"};
    for (size_t i = 0; i < 2 && l->e.msg[0] == '\0'; i++) {
        char key[RQ_KEY_MAX];
        look_key(l, sets[i], NULL, key);
        const char *argv[] = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
        redisReply *r = look_run(l, 5, argv);
        if (r != NULL) {
            find_held_in(l, r, i == 1);
        }
        freeReplyObject(r);
    }
}

/* In `delayed` (a retry, a --delay submission, a parked output's upload, a postback retry):
 * ZSCAN with the id as the pattern, every entry it names parsed. "delayed". */
static void find_delayed(struct look *l)
{
    char key[RQ_KEY_MAX], match[JOB_ID_MAX + 2], cursor[32] = "0";
    look_key(l, "delayed", NULL, key);
    snprintf(match, sizeof match, "*%s*", l->id); /* an id holds no pattern character */
    do {
        const char *argv[] = {"ZSCAN", key, cursor, "MATCH", match, "COUNT", "1000"};
        redisReply *r = look_run(l, 7, argv);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *m = r->element[1];
        for (size_t i = 0; i + 1 < m->elements; i += 2) {
            struct in_batch b;
            const char *kind = entry_kind(l, m->element[i]->str, m->element[i]->len, &b);
            if (kind == NULL) {
                continue;
            }
            long long due = strtoll(m->element[i + 1]->str, NULL, 10);
            json_object *d = json_object_new_object();
            json_object_object_add(d, "kind", json_object_new_string(kind));
            json_object_object_add(d, "due_at_ms", json_object_new_int64(due));
            json_object_object_add(d, "due_in_ms",
                                   json_object_new_int64(due > l->now_ms ? due - l->now_ms : 0));
            add_batch(d, &b);
            add_to(l, "delayed", d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
}

/* The length of list pixq:{q}:<name> (-1 if the command failed). */
static long long list_length(struct look *l, const char *name)
{
    char key[RQ_KEY_MAX];
    look_key(l, name, NULL, key);
    const char *argv[] = {"LLEN", key};
    redisReply *r = look_run(l, 2, argv);
    long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

/* Calls visit(l, entry, n) for entries n = 1, 2... of list pixq:{q}:<name> counted from its
 * right end (`from_right`: the consuming end of `jobs`) or its left (the newest of `dead`),
 * `page` per round trip, l->scan at most. Returns the entries read. */
static long scan_list(struct look *l, const char *name, bool from_right, long page,
                      void (*visit)(struct look *, const redisReply *, long))
{
    char key[RQ_KEY_MAX];
    look_key(l, name, NULL, key);
    long from = 0;
    while (from < l->scan && l->e.msg[0] == '\0') {
        long n = l->scan - from < page ? l->scan - from : page;
        char first[32], last[32];
        snprintf(first, sizeof first, "%ld", from_right ? -(from + n) : from);
        snprintf(last, sizeof last, "%ld", from_right ? -(from + 1) : from + n - 1);
        const char *argv[] = {"LRANGE", key, first, last};
        redisReply *r = look_run(l, 4, argv);
        size_t got = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        for (size_t k = 0; k < got; k++) { /* from the right: the reply's last element first */
            visit(l, r->element[from_right ? got - 1 - k : k], from + (long)k + 1);
        }
        freeReplyObject(r);
        from += (long)got;
        if (got < (size_t)n) {
            break; /* the whole list was read */
        }
    }
    return from;
}

/* An entry of `jobs` about the job: "waiting", with its "position" (1: the next one a worker
 * takes; pixq's own entries count). */
static void visit_waiting(struct look *l, const redisReply *el, long position)
{
    struct in_batch b;
    const char *kind = entry_kind(l, el->str, el->len, &b);
    if (kind != NULL) {
        json_object *w = json_object_new_object();
        json_object_object_add(w, "kind", json_object_new_string(kind));
        json_object_object_add(w, "position", json_object_new_int64(position));
        add_batch(w, &b);
        add_to(l, "waiting", w);
    }
}

/* Whether dead entry `d` without a job_id holds a batch (its "job" a JSON array: one a worker
 * could not split, over JOB_MAX_BATCH jobs or PIXQ_MAX_BATCH_BYTES) with the job l->id in it:
 * its place in *b. A batch kept only by its first bytes ("job_head") is not looked into. */
static bool dead_batch_holds(const struct look *l, json_object *d, struct in_batch *b)
{
    json_object *job = cli_get(d, "job");
    if (!json_object_is_type(job, json_type_string) ||
        !job_is_batch(json_object_get_string(job), (size_t)json_object_get_string_len(job))) {
        return false;
    }
    json_object *doc = json_tokener_parse(json_object_get_string(job));
    bool held = json_object_is_type(doc, json_type_array) && batch_holds(l, doc, b);
    json_object_put(doc);
    return held;
}

/* A dead entry of the job: "dead", as stored (with "batch" when it is a batch that holds it). */
static void visit_dead(struct look *l, const redisReply *el, long position)
{
    (void)position;
    if (memmem(el->str, el->len, l->id, strlen(l->id)) == NULL) {
        return;
    }
    json_object *d = json_tokener_parse(el->str);
    const char *id = d != NULL ? admin_dead_id(d) : NULL;
    struct in_batch b = {0, 0};
    if (id != NULL ? strcmp(id, l->id) == 0 : dead_batch_holds(l, d, &b)) {
        add_batch(d, &b);
        add_to(l, "dead", d);
    } else {
        json_object_put(d);
    }
}

/* The first entry of array `name` in `o` whose "kind" is `kind` (NULL: any), or NULL. */
static json_object *first_of(json_object *o, const char *name, const char *kind)
{
    json_object *a = cli_get(o, name);
    for (size_t i = 0; i < length_of(a); i++) {
        json_object *e = item_of(a, i);
        if (kind == NULL || strcmp(cli_str(e, "kind", ""), kind) == 0) {
            return e;
        }
    }
    return NULL;
}

/* What the job is doing or what became of it, from what was found (NULL: nothing was). */
static const char *state_of(json_object *o)
{
    json_object *held = cli_get(o, "held_by");
    for (size_t i = 0; i < length_of(held); i++) {
        json_object *h = item_of(held, i);
        const char *kind = cli_str(h, "kind", "");
        if (cli_get(h, "batch") == NULL) { /* a batch held is being split: still waiting */
            return strcmp(kind, "upload") == 0                                    ? "uploading"
                   : strcmp(kind, "postback") == 0 || strcmp(kind, "poison") == 0 ? "posting back"
                                                                                  : "running";
        }
    }
    if (length_of(held) > 0 || first_of(o, "waiting", "job") != NULL ||
        first_of(o, "waiting", "poison") != NULL) {
        return "waiting";
    }
    if (first_of(o, "delayed", "job") != NULL) {
        return "delayed";
    }
    if (first_of(o, "waiting", "upload") != NULL || first_of(o, "delayed", "upload") != NULL ||
        cli_int(o, "parked_outputs") > 0) {
        return "outputs parked";
    }
    if (first_of(o, "delayed", "postback") != NULL || first_of(o, "waiting", "postback") != NULL) {
        return "postback retry";
    }
    if (cli_get(o, "outcome") != NULL) {
        return cli_str(o, "outcome", "");
    }
    if (cli_get(o, "dead") != NULL) {
        return "dead";
    }
    if (cli_get(o, "first_run_at_ms") != NULL) {
        return "started";
    }
    return cli_get(o, "submitted_at_ms") != NULL ? "submitted" : NULL;
}

/* Looks for the job in queue `q`: its object for --json (with "queue", "state", and
 * "searched" {"jobs", "jobs_total", "dead", "dead_total"}), or NULL if Redis failed (reason in
 * `e`). "state" is null when nothing was found. */
static json_object *look_in(struct rq *rq, const char *q, const char *id, long scan,
                            long long *now_ms, struct err *e)
{
    struct look l = {.rq = rq, .q = q, .id = id, .scan = scan, .o = json_object_new_object()};
    json_object_object_add(l.o, "queue", json_object_new_string(q));
    find_record(&l);
    if (l.e.msg[0] == '\0') {
        find_held(&l);
    }
    if (l.e.msg[0] == '\0') {
        find_delayed(&l);
    }
    long long jobs_total = l.e.msg[0] == '\0' ? list_length(&l, "jobs") : 0;
    long long dead_total = l.e.msg[0] == '\0' ? list_length(&l, "dead") : 0;
    long jobs = scan_list(&l, "jobs", true, JOBINFO_JOBS_PAGE, visit_waiting);
    long dead = scan_list(&l, "dead", false, JOBINFO_DEAD_PAGE, visit_dead);
    if (l.e.msg[0] != '\0') {
        *e = l.e;
        json_object_put(l.o);
        return NULL;
    }
    json_object *searched = json_object_new_object();
    json_object_object_add(searched, "jobs", json_object_new_int64(jobs));
    json_object_object_add(searched, "jobs_total", json_object_new_int64(jobs_total));
    json_object_object_add(searched, "dead", json_object_new_int64(dead));
    json_object_object_add(searched, "dead_total", json_object_new_int64(dead_total));
    json_object_object_add(l.o, "searched", searched);
    const char *state = state_of(l.o);
    json_object_object_add(l.o, "state", state != NULL ? json_object_new_string(state) : NULL);
    *now_ms = l.now_ms;
    return l.o;
}

/* ---------------------------------------------------------------- printing */

/* Prints "  LABEL  TEXT" with TEXT shown as a terminal shows it safely (cli_printable()). */
static void print_line(const char *label, const char *fmt_text)
{
    char *shown = cli_printable(fmt_text);
    printf("  %-12s %s\n", label, shown != NULL ? shown : "(out of memory)");
    free(shown);
}

static void print_when(const char *label, long long ms, const char *after)
{
    char when[48], line[1400];
    cli_iso_utc(ms, when, sizeof when);
    snprintf(line, sizeof line, "%s%s", when, after);
    print_line(label, line);
}

static void print_result(json_object *q)
{
    json_object *results = cli_get(cli_get(q, "result"), "results");
    json_object *images = cli_get(results, "images"), *errors = cli_get(results, "errors");
    size_t n = length_of(images);
    char line[1200];
    if (strcmp(cli_str(q, "outcome", ""), "failed") == 0) {
        json_object *first = item_of(errors, 0);
        snprintf(line, sizeof line, "failed: %.1000s",
                 first != NULL ? json_object_get_string(first) : "(no error given)");
        print_line("result", line);
        return;
    }
    snprintf(line, sizeof line, "succeeded, %zu image%s", n, n == 1 ? "" : "s");
    print_line("result", line);
    for (size_t i = 0; i < n; i++) {
        json_object *img = item_of(images, i);
        snprintf(line, sizeof line, "%.200s  %.900s", cli_str(img, "image_identifier", "?"),
                 cli_str(img, "s3_url", "(no url)"));
        print_line("", line);
    }
}

/* " (job I of a batch of N, pushed as one entry)" if `o` says the job is in a batch, else "". */
static const char *batch_note(json_object *o, char *out, size_t size)
{
    json_object *b = cli_get(o, "batch");
    if (b == NULL) {
        return "";
    }
    snprintf(out, size, " (job %lld of a batch of %lld, pushed as one entry)", cli_int(b, "index"),
             cli_int(b, "jobs"));
    return out;
}

/* What a poison pill of the job is (reap.lua made it after PIXQ_MAX_RECOVERIES crashes). */
#define POISON_TEXT "its poison pill (not run again: its failure is posted back, then dead)"

static void print_held(json_object *h)
{
    char line[700], place[100]; /* a worker name of 400 bytes, the longest `what`, a place */
    const char *kind = cli_str(h, "kind", "");
    const char *what = strcmp(kind, "upload") == 0     ? "an output's upload"
                       : strcmp(kind, "postback") == 0 ? "its postback retry"
                       : strcmp(kind, "poison") == 0   ? POISON_TEXT
                       : cli_get(h, "batch") != NULL   ? "the batch that holds the job, to split"
                                                       : "the job";
    if (cli_get(h, "lease_ms_left") == NULL) {
        snprintf(line, sizeof line, "%.400s (reaped or stopped, being given back): %s%s",
                 cli_str(h, "worker", ""), what, batch_note(h, place, sizeof place));
    } else {
        long long left = cli_int(h, "lease_ms_left");
        snprintf(line, sizeof line, "%.400s (%s %.1f s): %s%s", cli_str(h, "worker", ""),
                 left >= 0 ? "lease" : "lease ran out", (double)(left >= 0 ? left : -left) / 1e3,
                 what, batch_note(h, place, sizeof place));
    }
    print_line("worker", line);
}

static void print_delayed(json_object *d)
{
    const char *kind = cli_str(d, "kind", "");
    char after[300], place[100];
    snprintf(after, sizeof after, " (in %.1f s): %s%s", (double)cli_int(d, "due_in_ms") / 1000.0,
             strcmp(kind, "upload") == 0     ? "an output's upload (parked)"
             : strcmp(kind, "postback") == 0 ? "a postback retry"
             : cli_get(d, "batch") != NULL   ? "the job"
                                             : "the job (a retry, or submitted with --delay)",
             batch_note(d, place, sizeof place));
    print_when("due", cli_int(d, "due_at_ms"), after);
}

static void print_dead(json_object *d)
{
    char after[1300], place[100];
    snprintf(after, sizeof after, "%s, %lld attempt%s: %.1000s", batch_note(d, place, sizeof place),
             cli_int(d, "attempts"), cli_int(d, "attempts") == 1 ? "" : "s",
             cli_str(d, "error", ""));
    print_when("dead", cli_int(d, "failed_at"), after);
}

static void print_queue(const char *id, json_object *q)
{
    char *shown = cli_printable(id);
    printf("job %s in queue %s: %s\n", shown != NULL ? shown : "(out of memory)",
           cli_str(q, "queue", ""), cli_str(q, "state", ""));
    free(shown);
    json_object *a;
    char line[300], place[100];
    a = cli_get(q, "held_by");
    for (size_t i = 0; i < length_of(a); i++) {
        print_held(item_of(a, i));
    }
    a = cli_get(q, "waiting");
    json_object *searched = cli_get(q, "searched");
    for (size_t i = 0; i < length_of(a); i++) {
        json_object *w = item_of(a, i);
        const char *kind = cli_str(w, "kind", "");
        snprintf(line, sizeof line, "%s%s, number %lld from the front of %lld entries",
                 strcmp(kind, "job") == 0        ? "the job"
                 : strcmp(kind, "postback") == 0 ? "a postback retry"
                 : strcmp(kind, "poison") == 0   ? POISON_TEXT
                                                 : "an output's upload",
                 batch_note(w, place, sizeof place), cli_int(w, "position"),
                 cli_int(searched, "jobs_total"));
        print_line("waiting", line);
    }
    a = cli_get(q, "delayed");
    for (size_t i = 0; i < length_of(a); i++) {
        print_delayed(item_of(a, i));
    }
    if (cli_get(q, "submitted_at_ms") != NULL) {
        print_when("submitted", cli_int(q, "submitted_at_ms"), "");
    }
    if (cli_get(q, "first_run_at_ms") != NULL) {
        snprintf(line, sizeof line, ", %lld run%s", cli_int(q, "runs"),
                 cli_int(q, "runs") == 1 ? "" : "s");
        print_when("first run", cli_int(q, "first_run_at_ms"), line);
    }
    if (cli_int(q, "parked_outputs") > 0) {
        snprintf(line, sizeof line, "%lld still to upload", cli_int(q, "parked_outputs"));
        print_line("outputs", line);
    }
    if (cli_get(q, "result") != NULL) {
        print_result(q);
    }
    if (cli_get(q, "postback_delivered") != NULL) {
        print_line("postback", "delivered");
    }
    a = cli_get(q, "dead");
    for (size_t i = 0; i < length_of(a); i++) {
        print_dead(item_of(a, i));
    }
}

/* "searched ..." when the queue or its dead list was longer than what --scan let be read, and
 * only its record was found (submitted or started: it may be in the part not read). */
static void print_searched(json_object *q)
{
    const char *state = cli_str(q, "state", "");
    if (strcmp(state, "submitted") != 0 && strcmp(state, "started") != 0) {
        return;
    }
    json_object *s = cli_get(q, "searched");
    if (cli_int(s, "jobs") < cli_int(s, "jobs_total")) {
        printf("  (searched the %lld waiting entries nearest the front of %lld: --scan)\n",
               cli_int(s, "jobs"), cli_int(s, "jobs_total"));
    }
    if (cli_int(s, "dead") < cli_int(s, "dead_total")) {
        printf("  (searched the newest %lld of %lld dead entries: --scan)\n", cli_int(s, "dead"),
               cli_int(s, "dead_total"));
    }
}

/* ---------------------------------------------------------------- the command */

/* A job id as a job may carry it (job.c: letters, digits, "-_.:"), so that it is no pattern. */
static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && strchr("-_.:", s[i]) == NULL) {
            return false;
        }
    }
    return n > 0 && n < JOB_ID_MAX;
}

struct job_opts {
    const char *id;
    bool json;
    long scan;
    bool wait;
    long timeout_s; /* of --wait */
};

static int job_args(int argc, char **argv, struct job_opts *o)
{
    bool timeout = false, operands = false; /* operands: after "--", every word is a JOB_ID */
    for (int i = 1; i < argc; i++) {
        if (operands || argv[i][0] != '-' || argv[i][1] == '\0') {
            if (o->id != NULL) {
                return cli_usage("job", "one JOB_ID at a time");
            }
            o->id = argv[i];
        } else if (strcmp(argv[i], "--") == 0) {
            operands = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            o->json = true;
        } else if (strcmp(argv[i], "--wait") == 0) {
            o->wait = true;
        } else if (strcmp(argv[i], "--scan") == 0) {
            if (i + 1 >= argc || !cli_long(argv[i + 1], 1, JOBINFO_SCAN_MAX, &o->scan)) {
                return cli_usage("job", "--scan takes a whole number from 1 to %ld",
                                 (long)JOBINFO_SCAN_MAX);
            }
            i++;
        } else if (strcmp(argv[i], "--timeout") == 0) {
            if (i + 1 >= argc || !cli_long(argv[i + 1], 1, JOBINFO_WAIT_MAX_S, &o->timeout_s)) {
                return cli_usage("job", "--timeout takes 1 to %d seconds", JOBINFO_WAIT_MAX_S);
            }
            timeout = true;
            i++;
        } else {
            return cli_usage("job", "unknown option '%s'", argv[i]);
        }
    }
    if (o->id == NULL) {
        return cli_usage("job", "a JOB_ID is needed");
    }
    if (!id_ok(o->id)) {
        return cli_usage("job",
                         "'%.200s' is no job_id: 1 to %d letters, digits and '-', '_', '.', ':'",
                         o->id, JOB_ID_MAX - 1);
    }
    if (timeout && !o->wait) {
        return cli_usage("job", "--timeout is the longest --wait: it needs --wait");
    }
    return 0;
}

/* What one search of every queue found. */
struct sighting {
    json_object *found; /* the queues where the job was found (their objects of --json) */
    long long now_ms;   /* Redis's clock */
    char partial[400];  /* what --scan left unread where the job was not found */
    long took_ms;       /* how long the search took (look_twice()) */
};

/* Looks for the job in every queue of `qs`: 0, or -1 if Redis failed (reason in `e`). */
static int look_all(struct rq *rq, const struct cfg_queues *qs, const struct job_opts *o,
                    struct sighting *s, struct err *e)
{
    *s = (struct sighting){.found = json_object_new_array()};
    for (size_t i = 0; i < qs->n; i++) {
        json_object *q = look_in(rq, qs->name[i], o->id, o->scan, &s->now_ms, e);
        if (q == NULL) {
            return -1;
        }
        if (cli_get(q, "state") != NULL) {
            json_object_array_add(s->found, q);
            continue;
        }
        json_object *sc = cli_get(q, "searched");
        if (s->partial[0] == '\0' && cli_int(sc, "jobs") < cli_int(sc, "jobs_total")) {
            snprintf(s->partial, sizeof s->partial,
                     "; searched the %lld waiting entries nearest the front of %lld%s%s "
                     "(--scan)",
                     cli_int(sc, "jobs"), cli_int(sc, "jobs_total"), qs->n > 1 ? " in " : "",
                     qs->n > 1 ? qs->name[i] : "");
        } else if (s->partial[0] == '\0' && cli_int(sc, "dead") < cli_int(sc, "dead_total")) {
            snprintf(s->partial, sizeof s->partial,
                     "; searched the newest %lld of %lld dead entries%s%s (--scan)",
                     cli_int(sc, "dead"), cli_int(sc, "dead_total"), qs->n > 1 ? " in " : "",
                     qs->n > 1 ? qs->name[i] : "");
        }
        json_object_put(q);
    }
    return 0;
}

/* look_all(), and once more at once when the job was found nowhere. One search reads the active
 * lists, then the waiting list: a job taken in between (LMOVE onto a worker's active list) is
 * in neither as they are read, and a job pushed with any Redis client has no record until its
 * run begins. The second search finds it on the worker's list (or its record, or its outcome). */
static int look_twice(struct rq *rq, const struct cfg_queues *qs, const struct job_opts *o,
                      struct sighting *s, struct err *e)
{
    long t0 = clock_mono_ms();
    if (look_all(rq, qs, o, s, e) < 0) {
        return -1;
    }
    if (length_of(s->found) == 0) {
        json_object_put(s->found);
        if (look_all(rq, qs, o, s, e) < 0) {
            return -1;
        }
    }
    s->took_ms = clock_mono_ms() - t0;
    return 0;
}

/* Whether a state found is an outcome: the job has its result or its dead entry, and nothing of
 * it runs, waits or is delayed (a postback retry still due changes no outcome). */
static bool is_outcome(const char *state)
{
    return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
           strcmp(state, "dead") == 0 || strcmp(state, "postback retry") == 0;
}

/* Whether the job has its outcome in every queue where it was found (and was found). */
static bool settled(json_object *found)
{
    for (size_t i = 0; i < length_of(found); i++) {
        if (!is_outcome(cli_str(item_of(found, i), "state", ""))) {
            return false;
        }
    }
    return length_of(found) > 0;
}

/* --wait: searches again until the job has its outcome, or is found nowhere, or --timeout has
 * passed (*timed_out), riding out a Redis that goes away for a while (outage.h). Each search
 * follows a pause of 100 ms doubling to a second, and at least 4 times the last search's own
 * time: a search of a long queue (--scan) takes no more than a fifth of a Redis connection.
 * An outcome is taken when two searches in a row find it, the second at once: a job that moves
 * between one search's reads (taken off the waiting list after the active lists were read) is
 * seen by it in neither place, and then a result kept from an earlier run (`dead retry`) would
 * pass for the outcome. At --timeout the last search's finding stands. Returns 0, or -1 if
 * Redis failed for good or stayed away (reason in `e`). */
static int wait_outcome(struct rq *rq, const struct cfg *cfg, const struct cfg_queues *qs,
                        const struct job_opts *o, struct sighting *s, bool *timed_out,
                        struct err *e)
{
    long deadline = clock_mono_ms() + o->timeout_s * 1000;
    long pause =
        JOBINFO_WAIT_POLL_MIN_MS > 4 * s->took_ms ? JOBINFO_WAIT_POLL_MIN_MS : 4 * s->took_ms;
    long nap = settled(s->found) ? 0 : pause; /* before the next search */
    bool after_outcome = false;               /* the search before the last found the outcome too */
    struct outage out;
    outage_init(&out, "job", cfg->redis_outage_ms, false);
    *timed_out = false;
    while (length_of(s->found) > 0) {
        bool outcome = settled(s->found);
        if (outcome && after_outcome) {
            return 0;
        }
        long now = clock_mono_ms();
        if (now >= deadline) {
            *timed_out = !outcome;
            return 0;
        }
        clock_sleep_ms(nap < deadline - now ? nap : deadline - now);
        unsigned long io_before = rq_io_errors(rq);
        struct sighting next;
        struct err why = {{0}};
        if (look_twice(rq, qs, o, &next, &why) < 0) {
            json_object_put(next.found);
            if (!outage_passing(rq, io_before, why.msg)) {
                return err_set(e, "%s", why.msg);
            }
            nap = outage_failed(&out, why.msg, clock_mono_ms(), e);
            if (nap < 0) {
                return -1;
            }
            continue;
        }
        outage_over(&out, clock_mono_ms());
        json_object_put(s->found);
        *s = next;
        after_outcome = outcome;
        pause = pause * 2 < JOBINFO_WAIT_POLL_MAX_MS ? pause * 2 : JOBINFO_WAIT_POLL_MAX_MS;
        pause = pause > 4 * s->took_ms ? pause : 4 * s->took_ms;
        nap = settled(s->found) ? 0 : pause;
    }
    return 0;
}

/* The exit status of --wait, with its line on stderr when the job has not succeeded (at
 * --timeout, the state of the first queue where it has no outcome yet). */
static int waited_status(const struct job_opts *o, json_object *found, bool timed_out)
{
    json_object *q = item_of(found, 0);
    if (timed_out) {
        for (size_t i = 0; i < length_of(found); i++) {
            if (!is_outcome(cli_str(item_of(found, i), "state", ""))) {
                q = item_of(found, i);
                break;
            }
        }
        return cli_fail("job: job '%s' is still %s after %ld s (--timeout)", o->id,
                        cli_str(q, "state", ""), o->timeout_s);
    }
    for (size_t i = 0; i < length_of(found); i++) {
        q = item_of(found, i);
        const char *outcome = cli_str(q, "outcome", "");
        if (strcmp(outcome, "succeeded") != 0) {
            return cli_fail("job: job '%s' %s", o->id,
                            outcome[0] != '\0' ? outcome : "is dead (failed for good)");
        }
    }
    return CLI_OK;
}

int job_main(const struct cfg *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(JOB_USAGE, stdout);
        return CLI_OK;
    }
    struct job_opts o = {.scan = JOBINFO_SCAN_DEFAULT, .timeout_s = JOBINFO_WAIT_DEFAULT_S};
    if (job_args(argc, argv, &o) != 0) {
        return CLI_USAGE;
    }
    struct cfg_queues qs;
    if (cli_queues(cfg, &qs) < 0) {
        return CLI_FAILED;
    }
    struct err e = {{0}};
    struct rq *rq = cli_connect(cfg, &e);
    if (rq == NULL) {
        return cli_fail("job: %s", e.msg);
    }
    struct sighting s;
    bool timed_out = false;
    int rc = look_twice(rq, &qs, &o, &s, &e) == 0 ? CLI_OK : cli_fail("job: %s", e.msg);
    if (rc == CLI_OK && o.wait && wait_outcome(rq, cfg, &qs, &o, &s, &timed_out, &e) < 0) {
        rc = cli_fail("job: waiting for its outcome: %s", e.msg);
    }
    rq_destroy(rq);
    size_t n = length_of(s.found);
    if (rc == CLI_OK && o.json) {
        json_object *out = json_object_new_object();
        json_object_object_add(out, "job_id", json_object_new_string(o.id));
        json_object_object_add(out, "time_ms", json_object_new_int64(s.now_ms));
        json_object_object_add(out, "queues", json_object_get(s.found));
        cli_print_json(out);
        json_object_put(out);
    }
    for (size_t i = 0; rc == CLI_OK && !o.json && i < n; i++) {
        print_queue(o.id, item_of(s.found, i));
        print_searched(item_of(s.found, i));
    }
    if (rc == CLI_OK && n == 0) {
        rc = cli_fail("job: no trace of job '%s' in %s%s: not held, waiting, delayed or dead, and "
                      "no result or record (kept PIXQ_RESULT_TTL_S, %ld s)%s",
                      o.id, qs.n > 1 ? "the queues of PIXQ_QUEUE, " : "",
                      qs.n > 1 ? cfg->queue : qs.name[0], cfg->result_ttl_s, s.partial);
    } else if (rc == CLI_OK && o.wait) {
        rc = waited_status(&o, s.found, timed_out);
    }
    json_object_put(s.found);
    return rc;
}
