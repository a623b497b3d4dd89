#include "admin.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "job.h"
#include "rq.h"
#include "s3.h"
#include "utf8.h"

struct admin {
    struct rq *rq;
    struct cfg_queues qs; /* PIXQ_QUEUE's queues, highest priority first */
};

/* Connects and splits PIXQ_QUEUE. Returns 0, or -1 (message printed). */
static int open_admin(const struct cfg *cfg, struct admin *a, const char *cmd)
{
    if (cli_queues(cfg, &a->qs) < 0) {
        return -1;
    }
    struct err e = {{0}};
    a->rq = cli_connect(cfg, &e);
    if (a->rq == NULL) {
        cli_fail("%s: %s", cmd, e.msg); /* as the other commands: "pixq: dead: ..." */
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- pixq dead */

/* Dead entries read per round trip (LRANGE): a page, not the whole list, so that a list of
 * 10,000 entries of 200 KB (2 GB) is neither held in memory at once nor sent in one reply that
 * outlasts PIXQ_REDIS_TIMEOUT_MS. */
#define DEAD_PAGE 32

/* One queue's dead entries as dead_list reads them, a page at a time, the next one to print
 * parsed. */
struct dead_cursor {
    struct rq *rq;
    const char *queue;
    char key[RQ_KEY_MAX];   /* pixq:{Q}:dead, newest first */
    long wanted;            /* entries still to read (--limit) */
    char stats[RQ_KEY_MAX]; /* pixq:{Q}:stats */
    long from;              /* index in the list of the entry after the page */
    redisReply *r;          /* the page being read */
    long asked;             /* entries r was read for (fewer: the list ended) */
    long long pushed;       /* the entries ever pushed on the list (stats "dead") as r was read */
    size_t next;            /* index of `head` in r */
    json_object *head;      /* r->element[next] parsed (NULL if it is not JSON); owned */
    long long failed_at;    /* head's, ms */
};

static bool dead_cursor_done(const struct dead_cursor *c)
{
    return c->r == NULL || c->r->type != REDIS_REPLY_ARRAY || c->next >= c->r->elements;
}

/* Reads of the page after another one while entries keep landing at the head of the list. */
#define DEAD_LANDED_READS 3

static bool same_entry(const redisReply *a, const redisReply *b)
{
    return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}

/* Reads `n` entries of the list from index `from` into c->r, and in the same MULTI the count of
 * entries ever pushed on it into c->pushed: the queue's stats "dead", which finish.lua and
 * reap.lua raise with each push. Between two reads, its rise is how far the entries read before
 * moved down the list. Returns 0, or -1 (reason in `e`) if Redis failed. */
static int dead_read(struct dead_cursor *c, long from, long n, struct err *e)
{
    char first[24], last[24];
    snprintf(first, sizeof first, "%ld", from);
    snprintf(last, sizeof last, "%ld", from + n - 1);
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *hget[] = {"HGET", c->stats, "dead"};
    const char *lrange[] = {"LRANGE", c->key, first, last};
    const struct rq_cmd cmds[] = {
        {1, multi, NULL}, {3, hget, NULL}, {4, lrange, NULL}, {1, exec, NULL}};
    redisReply *rep[4] = {NULL};
    int rc = rq_pipeline(c->rq, 4, cmds, rep, e);
    redisReply *x = rep[3];
    if (rc == 0 && (x->type != REDIS_REPLY_ARRAY || x->elements != 2)) {
        rc = err_set(e, "redis: EXEC gave no page of %s", c->key);
    } else if (rc == 0 && x->element[1]->type == REDIS_REPLY_ERROR) {
        rc = err_set(e, "redis: %s (key '%s')", x->element[1]->str, c->key); /* WRONGTYPE */
    }
    if (rc == 0) {
        const redisReply *count = x->element[0];
        c->pushed = count->type == REDIS_REPLY_STRING ? strtoll(count->str, NULL, 10) : 0;
        c->r = x->element[1];
        x->element[1] = NULL; /* c's now */
        c->asked = n;
        c->from = from + (c->r->type == REDIS_REPLY_ARRAY ? (long)c->r->elements : 0);
        c->next = 0;
    }
    for (size_t i = 0; i < 4; i++) {
        freeReplyObject(rep[i]);
    }
    return rc;
}

/* Where the newest entry of page `prev` still in the list is now (`*anchor`), found by its
 * text (LPOS): for when the entries read before moved otherwise than by pushes at the head (a
 * retry or purge of entries listed already moved them up, an entry pushed without its count).
 * LPOS gives every copy of an entry: the first at or past where the entry was is taken, else
 * the last before. `end` is where the entry after `prev` was. Returns the index (`end`, and
 * `*anchor` NULL, if no entry of `prev` is left), or -1 (reason in `e`) if Redis failed. */
static long dead_find(const struct dead_cursor *c, const redisReply *prev, long end,
                      const redisReply **anchor, struct err *e)
{
    *anchor = NULL;
    for (size_t j = prev->elements; j > 0; j--) {
        const redisReply *el = prev->element[j - 1];
        long was = end - (long)(prev->elements - j) - 1;
        redisReply *r = rq_command(c->rq, e, "LPOS %s %b COUNT 0", c->key, el->str, el->len);
        if (r == NULL) {
            return -1;
        }
        long at = -1;
        for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
            at = (long)r->element[k]->integer;
            if (at >= was) {
                break;
            }
        }
        freeReplyObject(r);
        if (at >= 0) {
            *anchor = el;
            return at;
        }
    }
    return end;
}

/* Reads the `n` entries after page `prev` (an array of at least one entry), which workers may
 * have moved down the list meanwhile by dying jobs pushed at its head (a fleet failing jobs
 * while a long list prints into a pager): from prev's last entry, where the count of entries
 * pushed since says it is now, read again to be sure of it, and skipped with the entries that
 * landed. When it is not there, it is looked for (dead_find()); the entries that landed
 * between that look and the read are then skipped as those before the first copy of it on the
 * page. Returns 0, or -1 (reason in `e`) if Redis failed. */
static int dead_read_after(struct dead_cursor *c, const redisReply *prev, long n, struct err *e)
{
    const redisReply *anchor = prev->element[prev->elements - 1];
    long end = c->from, was = end - 1; /* where anchor was */
    long long pushed = c->pushed;
    long at = was;
    for (int tries = 0; tries < DEAD_LANDED_READS; tries++) {
        if (dead_read(c, at, n + 1, e) < 0) {
            return -1;
        }
        long long landed = c->pushed - pushed;
        long got = (long)c->r->elements; /* an array: dead_read() took no other */
        long idx = landed >= 0 && landed <= LONG_MAX - was ? was + (long)landed - at : -1;
        if (idx >= 0 && idx < got && same_entry(c->r->element[idx], anchor)) {
            c->next = (size_t)idx + 1;
            return 0;
        }
        freeReplyObject(c->r);
        c->r = NULL;
        if (idx < got || got < n + 1) {
            break; /* not where the count says */
        }
        at = was + (long)landed;
    }
    long from = dead_find(c, prev, end, &anchor, e);
    if (from < 0 || dead_read(c, from, n + (anchor != NULL), e) < 0) {
        return -1;
    }
    for (size_t j = 0; anchor != NULL && j < c->r->elements; j++) {
        if (same_entry(c->r->element[j], anchor)) {
            c->next = j + 1;
            break;
        }
    }
    return 0;
}

/* Moves `c` to entry `i` of its page, reading the next page when `i` is past this one. Returns
 * 0, or -1 (reason in `e`) if Redis failed. */
static int dead_cursor_at(struct dead_cursor *c, size_t i, struct err *e)
{
    json_object_put(c->head);
    c->head = NULL;
    c->next = i;
    while (dead_cursor_done(c) && c->wanted > 0) {
        long n = c->wanted < DEAD_PAGE ? c->wanted : DEAD_PAGE;
        redisReply *prev = c->r; /* kept until the next page is read */
        c->r = NULL;
        int rc = prev != NULL && prev->type == REDIS_REPLY_ARRAY && prev->elements > 0
                     ? dead_read_after(c, prev, n, e)
                     : dead_read(c, c->from, n, e);
        freeReplyObject(prev);
        if (rc < 0) {
            return -1;
        }
        long got = c->r->type == REDIS_REPLY_ARRAY ? (long)c->r->elements : 0;
        c->wanted = got < c->asked ? 0 : c->wanted - (got - (long)c->next);
    }
    if (!dead_cursor_done(c)) {
        c->head = json_tokener_parse(c->r->element[c->next]->str);
        json_object *at = json_object_object_get(c->head, "failed_at");
        if (json_object_is_type(at, json_type_int)) {
            c->failed_at = json_object_get_int64(at);
        } /* else unknown: as new as the entry before it in its list (newest first), so that it
           * neither holds back its queue's newer entries nor jumps ahead of older ones */
    }
    return 0;
}

const char *admin_dead_id(json_object *d)
{
    json_object *id =
        json_object_is_type(d, json_type_object) ? json_object_object_get(d, "job_id") : NULL;
    if (!json_object_is_type(id, json_type_string)) {
        return NULL;
    }
    const char *s = json_object_get_string(id);
    return s[0] != '\0' && strlen(s) == (size_t)json_object_get_string_len(id) ? s : NULL;
}

/* Prints the entry under `c`: with --json, the entry with its "queue" added; otherwise "ID  WHEN
 * attempts=N  [queue=Q  ]ERROR", the queue named when PIXQ_QUEUE names several. */
static void dead_print(const struct dead_cursor *c, bool json, bool several)
{
    if (json && !json_object_is_type(c->head, json_type_object)) {
        /* not a dead entry (not JSON, or JSON of another kind): its text as a string, so that
         * each line stays one JSON object, and one line (the text may hold line feeds, even
         * lines that look like entries of their own) */
        const redisReply *el = c->r->element[c->next];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "entry", json_object_new_string_len(el->str, (int)el->len));
        json_object_object_add(o, "queue", json_object_new_string(c->queue));
        cli_print_json(o);
        json_object_put(o);
        return;
    }
    if (json) {
        json_object_object_add(c->head, "queue", json_object_new_string(c->queue));
        cli_print_json(c->head);
        return;
    }
    /* what a job wrote (its URL in the error, its job_id) is shown, not sent to the terminal */
    if (!json_object_is_type(c->head, json_type_object)) {
        char *entry = cli_printable(c->r->element[c->next]->str);
        printf("(not a dead entry)  %s\n", entry != NULL ? entry : "(out of memory)");
        free(entry);
        return;
    }
    char when[48];
    json_object *at = json_object_object_get(c->head, "failed_at");
    cli_iso_utc(json_object_is_type(at, json_type_int) ? json_object_get_int64(at) : 0, when,
                sizeof when);
    const char *job_id = admin_dead_id(c->head);
    char *id = cli_printable(job_id != NULL ? job_id : "(no id)");
    char *attempts = cli_printable(cli_str(c->head, "attempts", "?"));
    char *error = cli_printable(cli_str(c->head, "error", ""));
    const char *oom = "(out of memory)";
    printf("%s  %s  attempts=%s  %s%s%s%s\n", id != NULL ? id : oom, when,
           attempts != NULL ? attempts : oom, several ? "queue=" : "", several ? c->queue : "",
           several ? "  " : "", error != NULL ? error : oom);
    free(id);
    free(attempts);
    free(error);
}

/* The cursor whose entry failed last (the first queue's on a tie), or NULL when all are done. */
static struct dead_cursor *dead_newest(struct dead_cursor *c, size_t n)
{
    struct dead_cursor *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!dead_cursor_done(&c[i]) && (best == NULL || c[i].failed_at > best->failed_at)) {
            best = &c[i];
        }
    }
    return best;
}

/* The newest `limit` dead entries of all the queues, newest first (each queue's list is). */
static int dead_list(struct admin *a, long limit, bool json)
{
    struct dead_cursor c[CFG_QUEUES_MAX] = {{0}};
    int rc = CLI_OK;
    struct err e = {{0}};
    for (size_t i = 0; i < a->qs.n && rc == CLI_OK; i++) {
        c[i].rq = a->rq;
        c[i].queue = a->qs.name[i];
        c[i].wanted = limit;
        c[i].failed_at = LLONG_MAX; /* until an entry says when */
        rq_key(c[i].key, sizeof c[i].key, a->qs.name[i], "dead");
        rq_key(c[i].stats, sizeof c[i].stats, a->qs.name[i], "stats");
        rc = dead_cursor_at(&c[i], 0, &e) == 0 ? CLI_OK : cli_fail("dead list: %s", e.msg);
    }
    struct dead_cursor *next;
    for (long k = 0; rc == CLI_OK && k < limit && (next = dead_newest(c, a->qs.n)) != NULL; k++) {
        dead_print(next, json, a->qs.n > 1);
        rc = dead_cursor_at(next, next->next + 1, &e) == 0 ? CLI_OK
                                                           : cli_fail("dead list: %s", e.msg);
    }
    for (size_t i = 0; i < a->qs.n; i++) {
        json_object_put(c[i].head);
        freeReplyObject(c[i].r);
    }
    return rc;
}

/* Dead entries dead_retry.lua looks at per call: a window, so that no call holds Redis (and
 * every worker) for long, however large the list and its entries are. */
#define DEAD_RETRY_WINDOW 32

/* Where the window of a dead list that dead_retry.lua is about to look at begins now: `window`
 * entries, the oldest of the first `upto` of the list as it was when the retry began, moved down
 * by the entries pushed at its head since, as many as the queue's stats "dead" (hash `stats`)
 * rose since it was `dead_count` (as the script counts them). Returns the index, or -1 (reason
 * in `e`). */
static long dead_window_at(struct admin *a, const char *stats, long upto, long window,
                           long long dead_count, struct err *e)
{
    redisReply *r = rq_command(a->rq, e, "HGET %s dead", stats);
    if (r == NULL) {
        return -1;
    }
    long long now = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    long long pushed = now > dead_count ? now - dead_count : 0;
    return (upto > window ? upto - window : 0) + (pushed < INT_MAX ? (long)pushed : 0);
}

/* Forgets that the dead jobs of the window of queue `q`'s dead list that dead_retry.lua is
 * about to look at (dead_window_at(): `window` entries from index `from`, `which`: "all" or a
 * job id) were posted back (the "posted" claim in pixq:{Q}:job:<id>), so that each re-run posts
 * its new outcome. Done before they are re-queued: a claim cleared for a job that then stays
 * dead is harmless. Returns the window's size (0: nothing there), or -1 (reason in `e`). */
static long forget_postbacks(struct admin *a, const char *q, const char *which, long from,
                             long window, struct err *e)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, q, "dead");
    redisReply *r = rq_command(a->rq, e, "LRANGE %s %ld %ld", key, from, from + window - 1);
    if (r == NULL) {
        return -1;
    }
    long n = r->type == REDIS_REPLY_ARRAY ? (long)r->elements : 0;
    bool all = strcmp(which, "all") == 0;
    for (long i = 0; i < n; i++) {
        const redisReply *el = r->element[i];
        if (!all && (el->type != REDIS_REPLY_STRING || strstr(el->str, which) == NULL)) {
            continue; /* cannot be the job's: not parsed */
        }
        json_object *d = json_tokener_parse(el->str);
        const char *id = json_object_get_string(json_object_object_get(d, "job_id"));
        /* an id longer than any job's has no job hash; cut, it would name another job's */
        if (id != NULL && strlen(id) < JOB_ID_MAX && (all || strcmp(which, id) == 0)) {
            char suffix[JOB_ID_MAX + 8], job_key[RQ_KEY_MAX];
            snprintf(suffix, sizeof suffix, "job:%.*s", JOB_ID_MAX - 1, id);
            rq_key(job_key, sizeof job_key, q, suffix);
            redisReply *h = rq_command(a->rq, e, "HDEL %s posted", job_key);
            if (h == NULL) { /* the window is not retried: its re-runs would not post back */
                json_object_put(d);
                freeReplyObject(r);
                return -1;
            }
            freeReplyObject(h);
        }
        json_object_put(d);
    }
    freeReplyObject(r);
    return n;
}

/* Says why retrying queue `q` stopped part-way, and how many jobs went back before that
 * (when any did): `total`, and when the connection was lost before Redis answered a dead_retry.lua
 * call, up to `window` more that call may have put back. */
static void dead_retry_failed(const char *jobs, const struct err *e, long long total, long window,
                              bool unknown)
{
    if (unknown) {
        cli_fail("dead retry: %s; %lld job(s) were put back on %s before the failure, and up to "
                 "%ld more may have been (no answer came for them); the rest are still dead",
                 e->msg, total, jobs, window);
    } else if (total == 0) {
        cli_fail("dead retry: %s", e->msg); /* nothing done */
    } else {
        cli_fail("dead retry: %s; %lld job(s) were put back on %s before the failure; the rest "
                 "are still dead",
                 e->msg, total, jobs);
    }
}

/* Retries the dead jobs `which` of queue `q`, a window of its dead list at a time, oldest first.
 * Returns how many, or -1 (message printed, with how many went back before the failure). */
static long long dead_retry_queue(struct admin *a, const char *q, const char *which)
{
    char dead[RQ_KEY_MAX], jobs[RQ_KEY_MAX], stats[RQ_KEY_MAX], upto_text[32], window[32];
    char count_text[32];
    rq_key(dead, sizeof dead, q, "dead");
    rq_key(jobs, sizeof jobs, q, "jobs");
    rq_key(stats, sizeof stats, q, "stats");
    const char *keys[] = {dead, jobs, stats};
    const char *args[] = {which, upto_text, window, count_text};
    long long total = 0;
    /* Only the entries there now, and its count of entries ever pushed with them (one MULTI): a
     * job put back that dies again while the windows go on (its cause not fixed) is pushed at
     * the head, and would be put back again, and again; the windows are counted from the head,
     * moved down by the pushes counted since (dead_window_at()), so that the oldest entries
     * trimmed at the tail meanwhile (a list at PIXQ_DEAD_MAX) neither make them skip entries nor
     * take new ones in. */
    struct err e = {{0}};
    const char *multi[] = {"MULTI"}, *llen[] = {"LLEN", dead}, *hget[] = {"HGET", stats, "dead"};
    const char *exec[] = {"EXEC"};
    const struct rq_cmd cmds[] = {
        {1, multi, NULL}, {2, llen, NULL}, {3, hget, NULL}, {1, exec, NULL}};
    redisReply *rep[4] = {NULL};
    if (rq_pipeline(a->rq, 4, cmds, rep, &e) < 0) {
        dead_retry_failed(jobs, &e, 0, 0, false);
        return -1;
    }
    const redisReply *x = rep[3];
    bool began = x->type == REDIS_REPLY_ARRAY && x->elements == 2;
    if (!began || x->element[0]->type == REDIS_REPLY_ERROR) {
        if (began) {
            err_set(&e, "redis: %s (key '%s')", x->element[0]->str, dead); /* WRONGTYPE */
        } else {
            err_set(&e, "redis: EXEC gave no length of %s", dead);
        }
        for (size_t i = 0; i < 4; i++) {
            freeReplyObject(rep[i]);
        }
        dead_retry_failed(jobs, &e, 0, 0, false);
        return -1;
    }
    long long upto =
        began && x->element[0]->type == REDIS_REPLY_INTEGER ? x->element[0]->integer : 0;
    long long dead_count = began && x->element[1]->type == REDIS_REPLY_STRING
                               ? strtoll(x->element[1]->str, NULL, 10)
                               : 0;
    snprintf(count_text, sizeof count_text, "%lld", dead_count);
    for (size_t i = 0; i < 4; i++) {
        freeReplyObject(rep[i]);
    }
    for (; upto > 0; upto -= DEAD_RETRY_WINDOW) {
        long count = upto < DEAD_RETRY_WINDOW ? (long)upto : DEAD_RETRY_WINDOW;
        long from = dead_window_at(a, stats, (long)upto, count, dead_count, &e);
        long seen = from < 0 ? -1 : forget_postbacks(a, q, which, from, count, &e);
        if (seen < 0) {
            dead_retry_failed(jobs, &e, total, 0, false);
            return -1;
        }
        if (seen == 0) {
            continue; /* trimmed at the tail meanwhile: the next may hold some */
        }
        snprintf(upto_text, sizeof upto_text, "%lld", upto);
        snprintf(window, sizeof window, "%ld", count);
        unsigned long io_errors = rq_io_errors(a->rq);
        redisReply *r = rq_script(a->rq, RQ_SCRIPT_DEAD_RETRY, 3, keys, 4, args, NULL, &e);
        if (r == NULL) {
            dead_retry_failed(jobs, &e, total, seen, rq_io_errors(a->rq) != io_errors);
            return -1;
        }
        bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                  r->element[0]->type == REDIS_REPLY_INTEGER &&
                  r->element[1]->type == REDIS_REPLY_INTEGER;
        long long n = ok ? r->element[0]->integer : 0;
        freeReplyObject(r);
        if (!ok) {
            struct err bad = {{0}};
            err_set(&bad, "redis: dead_retry.lua answered something else than {retried, kept}");
            dead_retry_failed(jobs, &bad, total, seen, true);
            return -1;
        }
        total += n;
    }
    printf("%lld job(s) put back on %s\n", total, jobs);
    return total;
}

/* `dead retry|purge JOB_ID` found the id in no queue's dead list: says so. Returns CLI_FAILED. */
static int no_dead_job(const struct admin *a, const char *cmd, const char *job_id)
{
    cli_fail("dead %s: no dead job %s in %s", cmd, job_id,
             a->qs.n == 1 ? a->qs.name[0] : "these queues");
    return CLI_FAILED;
}

/* Retries `which` in every queue: a job id is looked for in each. */
static int dead_retry(struct admin *a, const char *which)
{
    long long total = 0;
    for (size_t i = 0; i < a->qs.n; i++) {
        long long n = dead_retry_queue(a, a->qs.name[i], which);
        if (n < 0) {
            return CLI_FAILED;
        }
        total += n;
    }
    if (total == 0 && strcmp(which, "all") != 0) {
        return no_dead_job(a, "retry", which);
    }
    return CLI_OK;
}

/* Whether dead entry `el` is job `job_id`'s or, with `job_id` NULL, one `dead list` shows
 * without an id (admin_dead_id()): a payload that was not a job ("(no id)") or an entry that is no
 * dead letter at all. */
static bool dead_entry_of(const redisReply *el, const char *job_id)
{
    if (el->type != REDIS_REPLY_STRING || (job_id != NULL && strstr(el->str, job_id) == NULL)) {
        return false; /* cannot be the job's: not parsed */
    }
    json_object *d = json_tokener_parse(el->str);
    const char *id = admin_dead_id(d);
    bool of = job_id != NULL ? id != NULL && strcmp(id, job_id) == 0 : id == NULL;
    json_object_put(d);
    return of;
}

/* Removes the dead entries of job `job_id` (NULL: those without an id, dead_entry_of()) from
 * list `key`, read a page at a time, until the end of the list or the first command that fails
 * (the reason in `e`: a command after it would reconnect and go on with a purge reported as
 * failed). Returns how many. */
static long long purge_one(struct admin *a, const char *key, const char *job_id, struct err *e)
{
    long long n = 0;
    long from = 0;
    for (;;) {
        redisReply *r = rq_command(a->rq, e, "LRANGE %s %ld %ld", key, from, from + DEAD_PAGE - 1);
        size_t got = r != NULL && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        long removed = 0;
        for (size_t i = 0; i < got && e->msg[0] == '\0'; i++) {
            const redisReply *el = r->element[i];
            if (dead_entry_of(el, job_id)) {
                redisReply *x = rq_command(a->rq, e, "LREM %s 1 %b", key, el->str, el->len);
                long long k = x != NULL && x->type == REDIS_REPLY_INTEGER ? x->integer : 0;
                n += k;
                removed += (long)k;
                freeReplyObject(x);
            }
        }
        freeReplyObject(r);
        if (got < DEAD_PAGE || e->msg[0] != '\0') {
            return n;
        }
        from += (long)got - removed; /* the entries after those removed moved up */
    }
}

/* What `dead retry` puts back (every entry, or one job's) or `dead purge` drops (every entry,
 * one job's, or those without an id). */
struct purge_what {
    const char *job_id; /* NULL: all of them, or (no_id) those without an id */
    bool no_id;
};

/* Removes the dead entries of queue `q` that `w` names. Returns how many (the reason in `e` if a
 * command failed). */
static long long purge_queue(struct admin *a, const char *q, const struct purge_what *w,
                             struct err *e)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, q, "dead");
    if (w->job_id != NULL || w->no_id) {
        return purge_one(a, key, w->job_id, e);
    }
    /* a list first (a key of another type is not dropped: WRONGTYPE), then counted and dropped
     * in one MULTI: an entry pushed between the two (a job dying meanwhile) is not dropped
     * uncounted */
    redisReply *r = rq_command(a->rq, e, "LLEN %s", key);
    if (r == NULL) {
        return 0; /* stop: a DEL would reconnect and drop what a failed purge did not count */
    }
    freeReplyObject(r);
    const char *multi[] = {"MULTI"}, *llen[] = {"LLEN", key}, *del[] = {"DEL", key};
    const char *exec[] = {"EXEC"};
    const struct rq_cmd cmds[] = {
        {1, multi, NULL}, {2, llen, NULL}, {2, del, NULL}, {1, exec, NULL}};
    redisReply *rep[4] = {NULL};
    long long n = 0;
    if (rq_pipeline(a->rq, 4, cmds, rep, e) == 0) {
        const redisReply *x = rep[3];
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
            x->element[0]->type == REDIS_REPLY_INTEGER) {
            n = x->element[0]->integer;
        } else if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
                   x->element[0]->type == REDIS_REPLY_ERROR) {
            err_set(e, "redis: %s", x->element[0]->str); /* made another type meanwhile */
        } else {
            err_set(e, "redis: EXEC gave no count of %s", key);
        }
    }
    for (size_t i = 0; i < 4; i++) {
        freeReplyObject(rep[i]);
    }
    return n;
}

/* Removes the dead entries `w` names from every queue. A job id found in none fails, as `dead
 * retry` does: a typo or a job retried meanwhile is told, not taken as done. */
static int dead_purge(struct admin *a, const struct purge_what *w)
{
    long long total = 0;
    for (size_t i = 0; i < a->qs.n; i++) {
        struct err e = {{0}};
        unsigned long io_before = rq_io_errors(a->rq);
        long long n = purge_queue(a, a->qs.name[i], w, &e);
        if (rq_io_errors(a->rq) != io_before || e.msg[0] != '\0') {
            return cli_fail("dead purge: %s", e.msg[0] != '\0' ? e.msg : "redis: connection lost");
        }
        char key[RQ_KEY_MAX];
        rq_key(key, sizeof key, a->qs.name[i], "dead");
        printf("%lld dead job(s) purged from %s\n", n, key);
        total += n;
    }
    if (total == 0 && w->job_id != NULL) {
        return no_dead_job(a, "purge", w->job_id);
    }
    return CLI_OK;
}

static const char DEAD_USAGE[] =
    "usage: pixq dead list [--limit N] [--json]\n"
    "       pixq dead retry all|[--] JOB_ID\n"
    "       pixq dead purge [all|--no-id|[--] JOB_ID]\n"
    "\n"
    "The jobs that failed for good, in every queue of PIXQ_QUEUE (or --queue NAME for one):\n"
    "list the newest N (default 100) of them all, newest first, one line each: job id, when it\n"
    "failed (UTC), attempts, the queue (when PIXQ_QUEUE names several), error (--json: one dead\n"
    "entry per line, {\"job\", \"job_id\", \"error\", \"attempts\", \"failed_at\" (unix ms),\n"
    "\"queue\"}); put them back on their queue (a JOB_ID is looked for in every queue; their next\n"
    "outcome is posted back again); or drop them (purge alone, as purge all, drops them all;\n"
    "--no-id, those listed without an id: payloads that were not jobs).\n"
    "retry and purge print a line per queue. After --, a JOB_ID that begins with - (such as -h\n"
    "or --no-id); all is never a JOB_ID.\n"
    "\n"
    "Exit status: 0 done, 1 Redis failed or no dead job JOB_ID was found, 2 bad usage.\n";

/* Parses `dead list [--limit N] [--json]` (before connecting: a usage error exits 2 even when
 * Redis is down). Returns 0 or CLI_USAGE (reason printed). */
static int dead_list_args(int argc, char **argv, long *limit, bool *json)
{
    *limit = 100;
    *json = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else if (strcmp(argv[i], "--limit") == 0) {
            if (i + 1 >= argc || !cli_long(argv[++i], 1, 1000000, limit)) {
                return cli_usage("dead", "--limit takes 1 to 1000000 entries");
            }
        } else {
            return cli_usage("dead", "unknown argument '%s' for list", argv[i]);
        }
    }
    return 0;
}

/* Parses the word after `retry` or `purge`: all, a JOB_ID, --no-id (purge only), or `--` and a
 * JOB_ID taken as it is (one such as -h, --help or --no-id). `purge` alone is `purge all`.
 * Returns 0 or CLI_USAGE (reason printed). */
static int dead_target_args(int argc, char **argv, struct purge_what *t)
{
    bool purge = strcmp(argv[1], "purge") == 0;
    int at = argc > 2 && strcmp(argv[2], "--") == 0 ? 3 : 2; /* the word after any -- */
    if (at == 3 && argc != 4) {
        return cli_usage("dead", "%s -- takes one JOB_ID after it", argv[1]);
    }
    if (argc - at > 1 || (!purge && argc == at)) {
        return purge ? cli_usage("dead", "purge takes at most one argument: all, a JOB_ID or "
                                         "--no-id")
                     : cli_usage("dead", "retry takes one argument: all or a JOB_ID");
    }
    if (argc == at) {
        return 0;
    }
    /* "all" is never taken as a job id, not even after --: it is every entry */
    t->no_id = purge && at == 2 && strcmp(argv[at], "--no-id") == 0;
    t->job_id = t->no_id || strcmp(argv[at], "all") == 0 ? NULL : argv[at];
    return 0;
}

/* Checks the words after `dead`. Returns 0 or CLI_USAGE (reason printed). */
static int dead_args(int argc, char **argv, long *limit, bool *json, struct purge_what *t)
{
    const char *cmd = argc >= 2 ? argv[1] : "";
    if (strcmp(cmd, "list") == 0) {
        return dead_list_args(argc, argv, limit, json);
    }
    if (strcmp(cmd, "retry") == 0 || strcmp(cmd, "purge") == 0) {
        return dead_target_args(argc, argv, t);
    }
    return argc < 2 ? cli_usage("dead", "list, retry or purge expected")
                    : cli_usage("dead", "unknown subcommand '%s'", cmd);
}

int dead_main(const struct cfg *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(DEAD_USAGE, stdout);
        return CLI_OK;
    }
    long limit = 0;
    bool json = false;
    struct purge_what t = {0};
    if (dead_args(argc, argv, &limit, &json, &t) != 0) {
        return CLI_USAGE;
    }
    struct admin a;
    if (open_admin(cfg, &a, "dead") < 0) {
        return CLI_FAILED;
    }
    int rc = strcmp(argv[1], "list") == 0    ? dead_list(&a, limit, json)
             : strcmp(argv[1], "retry") == 0 ? dead_retry(&a, t.job_id != NULL ? t.job_id : "all")
                                             : dead_purge(&a, &t);
    rq_destroy(a.rq);
    return rc;
}

/* ---------------------------------------------------------------- pixq limit */

static const char LIMIT_USAGE[] =
    "usage: pixq limit show [--json]\n"
    "       pixq limit set BUCKET RATE BURST\n"
    "       pixq limit reset BUCKET\n"
    "\n"
    "The upload rate limit of each S3 bucket, shared by the whole fleet (pixq:rl:{BUCKET}):\n"
    "show every bucket's configured rate and burst, effective rate (after adaptive slowing),\n"
    "reserved backlog, throttling answers seen and region (--json: one JSON array); set an\n"
    "override (RATE PUT/s, 0.001 to 1000000; BURST 0 to 1000000), or reset a\n"
    "bucket to PIXQ_S3_RATE. Changes apply to every worker at once, and to the outputs\n"
    "already parked: the slots they hold are re-planned at the new rate.\n"
    "\n"
    "Exit status: 0 done, 1 Redis failed, 2 bad usage.\n";

/* A rate given in thousandths, as a JSON number with three decimals at most. */
static json_object *rate_value(long long milli)
{
    char text[32];
    snprintf(text, sizeof text, "%lld.%03lld", milli / 1000, milli % 1000);
    return json_object_new_double_s((double)milli / 1000, text);
}

static bool rl_show_reply_ok(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 9) {
        return false;
    }
    for (size_t i = 0; i < 9; i++) {
        if (r->element[i]->type != (i == 6 ? REDIS_REPLY_STRING : REDIS_REPLY_INTEGER)) {
            return false;
        }
    }
    return true;
}

/* rl_show.lua for one limiter key, as a JSON object; NULL if it could not be read (the reason
 * in `e`: Redis refused the script, say NOPERM for a user without the key). */
static json_object *limit_state(struct rq *rq, const struct cfg *cfg, const char *key,
                                struct err *e)
{
    char rate[32], burst[32], min_rate[32];
    snprintf(rate, sizeof rate, "%g", cfg->s3_rate);
    snprintf(burst, sizeof burst, "%ld", cfg->s3_burst);
    snprintf(min_rate, sizeof min_rate, "%g", cfg->s3_min_rate);
    const char *keys[] = {key};
    const char *args[] = {rate, burst, min_rate};
    redisReply *r = rq_script(rq, RQ_SCRIPT_RL_SHOW, 1, keys, 3, args, NULL, e);
    if (!rl_show_reply_ok(r)) {
        if (r != NULL) {
            err_set(e, "redis: rl_show.lua gave an unexpected answer for %.300s", key);
        }
        freeReplyObject(r);
        return NULL;
    }
    const char *open = strchr(key, '{');
    json_object *o = json_object_new_object();
    json_object_object_add(o, "bucket",
                           json_object_new_string_len(open + 1, (int)strlen(open + 1) - 1));
    json_object_object_add(o, "rate", rate_value(r->element[0]->integer));
    json_object_object_add(o, "burst", json_object_new_int64(r->element[1]->integer));
    json_object_object_add(o, "effective_rate", rate_value(r->element[2]->integer));
    json_object_object_add(o, "backlog_ms", json_object_new_int64(r->element[3]->integer));
    json_object_object_add(o, "throttle_signals", json_object_new_int64(r->element[4]->integer));
    json_object_object_add(o, "decreases", json_object_new_int64(r->element[5]->integer));
    json_object_object_add(o, "replans", json_object_new_int64(r->element[8]->integer));
    json_object_object_add(o, "region", json_object_new_string(r->element[6]->str));
    json_object_object_add(o, "override", json_object_new_boolean(r->element[7]->integer == 1));
    freeReplyObject(r);
    return o;
}

json_object *limit_collect(struct rq *rq, const struct cfg *cfg, struct err *e)
{
    json_object *list = json_object_new_array();
    /* SCAN may give a key twice (the keyspace was resized meanwhile): each bucket is listed
     * once, or `limit show` would print it twice and `stats --prometheus` repeat its series */
    json_object *seen = json_object_new_object();
    char cursor[32] = "0";
    int rc = 0;
    do {
        redisReply *r = rq_command(rq, e, "SCAN %s MATCH pixq:rl:{* COUNT 1000", cursor);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            rc = r == NULL ? -1 : err_set(e, "redis: SCAN gave an unexpected answer");
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; rc == 0 && i < r->element[1]->elements; i++) {
            const char *key = r->element[1]->element[i]->str;
            if (json_object_object_get_ex(seen, key, NULL)) {
                continue;
            }
            json_object_object_add(seen, key, NULL);
            json_object *o = limit_state(rq, cfg, key, e);
            rc = o != NULL ? json_object_array_add(list, o) : err_wrap(e, "%.300s", key);
        }
        freeReplyObject(r);
    } while (rc == 0 && strcmp(cursor, "0") != 0);
    json_object_put(seen);
    if (rc < 0) {
        json_object_put(list);
        return NULL;
    }
    return list;
}

void limit_print(json_object *list, const char *indent)
{
    printf("%s%-40s %10s %6s %10s %10s %8s %s\n", indent, "bucket", "rate/s", "burst", "effective",
           "backlog_ms", "throttle", "region");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *o = json_object_array_get_idx(list, i);
        /* names and regions are what some client wrote in Redis: shown, not sent to the
         * terminal */
        char *bucket = cli_printable(json_object_get_string(json_object_object_get(o, "bucket")));
        char *region = cli_printable(json_object_get_string(json_object_object_get(o, "region")));
        printf("%s%-40s %10.3f %6s %10.3f %10s %8s %s%s\n", indent,
               bucket != NULL ? bucket : "(out of memory)",
               json_object_get_double(json_object_object_get(o, "rate")),
               json_object_get_string(json_object_object_get(o, "burst")),
               json_object_get_double(json_object_object_get(o, "effective_rate")),
               json_object_get_string(json_object_object_get(o, "backlog_ms")),
               json_object_get_string(json_object_object_get(o, "throttle_signals")),
               region != NULL ? region : "(out of memory)",
               json_object_get_boolean(json_object_object_get(o, "override")) ? " (override)" : "");
        free(bucket);
        free(region);
    }
}

static int limit_show(struct admin *a, const struct cfg *cfg, bool json)
{
    struct err e = {{0}};
    json_object *list = limit_collect(a->rq, cfg, &e);
    int rc = list != NULL ? CLI_OK : cli_fail("limit: %s", e.msg);
    if (rc == CLI_OK && json) {
        cli_print_json(list);
    } else if (rc == CLI_OK) {
        limit_print(list, "");
    }
    json_object_put(list);
    return rc;
}

/* rl_set.lua on the bucket's limiter: "set" with the rate and burst as stored, or "reset". It
 * writes the override and the rate the reserved slots were planned at, in one script: an upload
 * or another `pixq limit` cannot land between them, and the next rl_acquire.lua re-plans the
 * slots reserved at the old rate. Returns 1 when a reset removed an override (a rate, a burst or
 * both), else 0; or -1 with the reason (Redis's refusal). */
static int limit_write(struct admin *a, const struct cfg *cfg, const char *bucket, const char *rate,
                       const char *burst, struct err *e)
{
    char key[RQ_KEY_MAX], def_rate[32], ttl[32];
    snprintf(key, sizeof key, "pixq:rl:{%s}", bucket);
    snprintf(def_rate, sizeof def_rate, "%g", cfg->s3_rate);
    snprintf(ttl, sizeof ttl, "%lld", (long long)cfg->rl_idle_ttl_s * 1000);
    const char *keys[] = {key};
    const char *set[] = {"set", def_rate, rate, burst}, *reset[] = {"reset", def_rate, "", "", ttl};
    redisReply *r = rate != NULL ? rq_script(a->rq, RQ_SCRIPT_RL_SET, 1, keys, 4, set, NULL, e)
                                 : rq_script(a->rq, RQ_SCRIPT_RL_SET, 1, keys, 5, reset, NULL, e);
    int rc = r != NULL ? 0 : -1;
    if (r == NULL && strncmp(e->msg, "redis: WRONGTYPE ", 17) == 0) { /* set by hand: which */
        struct err why = *e;
        err_set(e, "%s (key '%s')", why.msg, key);
    }
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer > 0) {
        rc = 1;
    }
    freeReplyObject(r);
    return rc;
}

/* Sets the bucket's override: the rate as a plain decimal ("0x10" and "1.6e1" are 16), both
 * in Redis and in what is printed. */
static int limit_set(struct admin *a, const struct cfg *cfg, const char *bucket, double rate_n,
                     long burst_n)
{
    char burst[32], rate[32];
    snprintf(burst, sizeof burst, "%ld", burst_n);
    snprintf(rate, sizeof rate, "%.15g", rate_n);
    struct err e = {{0}};
    if (limit_write(a, cfg, bucket, rate, burst, &e) < 0) {
        return cli_fail("limit set: %s", e.msg);
    }
    printf("%s: %s PUT/s, burst %s (fleet-wide, now)\n", bucket, rate, burst);
    return CLI_OK;
}

/* The override goes, and the hash expires after PIXQ_RL_IDLE_TTL_S again, as any bucket's (an
 * upload's rl_acquire.lua sets it anew; without one it stayed for good). */
static int limit_reset(struct admin *a, const struct cfg *cfg, const char *bucket)
{
    struct err e = {{0}};
    int override = limit_write(a, cfg, bucket, NULL, NULL, &e);
    if (override < 0) {
        return cli_fail("limit reset: %s", e.msg);
    }
    /* said, so that a misspelt bucket is seen: the reset itself changes nothing then */
    printf(override == 1 ? "%s: back to the default rate\n"
                         : "%s: had no limit of its own (at the default rate already)\n",
           bucket);
    return CLI_OK;
}

/* A usage error naming the word of `limit SUB` that is wrong: `what` ("bucket name", "RATE"...)
 * `word`, and what it must be. Returns CLI_USAGE. */
static int limit_bad(const char *sub, const char *what, const char *word, const char *must)
{
    char shown[UTF8_SHOWN_MAX + 1];
    return cli_usage("limit", "%s: %s '%s' is not valid (%s)", sub, what,
                     utf8_ascii_shown(word, shown, sizeof shown), must);
}

#define BUCKET_RULE "3-63 characters of a-z 0-9 . -; A-Z and _ in a legacy us-east-1 name"

/* Checks the words after `limit` before connecting. Returns 0 or CLI_USAGE (reason printed: the
 * word that is wrong, and what it must be). */
static int limit_args(int argc, char **argv, double *rate, long *burst)
{
    const char *cmd = argc >= 2 ? argv[1] : "";
    if (strcmp(cmd, "show") == 0) {
        return argc == 2 || (argc == 3 && strcmp(argv[2], "--json") == 0)
                   ? 0
                   : cli_usage("limit", "show takes only --json");
    }
    if (strcmp(cmd, "set") == 0) {
        if (argc != 5) {
            return cli_usage("limit", "set takes BUCKET RATE BURST");
        }
        return !s3_valid_bucket(argv[2]) ? limit_bad("set", "bucket name", argv[2], BUCKET_RULE)
               : !cli_double(argv[3], 0.001, 1e6, rate)
                   ? limit_bad("set", "RATE", argv[3], "a number of 0.001 to 1000000 PUT/s")
               : !cli_long(argv[4], 0, 1000000, burst)
                   ? limit_bad("set", "BURST", argv[4], "a whole number of 0 to 1000000")
                   : 0;
    }
    if (strcmp(cmd, "reset") == 0) {
        return argc != 3                  ? cli_usage("limit", "reset takes one bucket name")
               : s3_valid_bucket(argv[2]) ? 0
                                          : limit_bad("reset", "bucket name", argv[2], BUCKET_RULE);
    }
    return argc < 2 ? cli_usage("limit", "show, set or reset expected")
                    : cli_usage("limit", "unknown subcommand '%s'", cmd);
}

int limit_main(const struct cfg *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(LIMIT_USAGE, stdout);
        return CLI_OK;
    }
    long burst = 0;
    double rate = 0;
    if (limit_args(argc, argv, &rate, &burst) != 0) {
        return CLI_USAGE;
    }
    struct admin a;
    if (open_admin(cfg, &a, "limit") < 0) {
        return CLI_FAILED;
    }
    int rc = strcmp(argv[1], "show") == 0  ? limit_show(&a, cfg, argc == 3)
             : strcmp(argv[1], "set") == 0 ? limit_set(&a, cfg, argv[2], rate, burst)
                                           : limit_reset(&a, cfg, argv[2]);
    rq_destroy(a.rq);
    return rc;
}
