#include "submit.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "input.h"
#include "job.h"
#include "netguard.h"
#include "rq.h"
#include "wait.h"

#define MAX_INPUT_BYTES   (64L * 1024 * 1024) /* largest submission file */
#define MAX_BATCH         10000               /* most jobs in one submission */
#define MAX_FILES         256                 /* most FILE arguments */
#define LPUSH_CHUNK_BYTES (8L * 1024 * 1024)  /* payload bytes per LPUSH / ZADD command */
#define STAMP_KEY         "pixq_enqueued_at"  /* Redis time (unix ms) a job was enqueued */
#define STAMP_BYTES       (sizeof ",\"" STAMP_KEY "\":" - 1 + 13) /* ms: 13 digits until 2286 */

static const char USAGE[] =
    "usage: pixq submit FILE|-... [--wait] [--timeout SECONDS] [--delay MS] [--json]\n"
    "                   [--no-progress] [--progress-interval SECONDS]\n"
    "\n"
    "Validates every job of every FILE (- is standard input; after --, every word is a FILE,\n"
    "even one that begins with -), then enqueues them all on pixq:{QUEUE}:jobs (QUEUE: the\n"
    "first of PIXQ_QUEUE, or --queue NAME) and prints their ids. A FILE holds one job, a\n"
    "JSON array of jobs, or JSON lines (one job per line). A job without a job_id gets one;\n"
    "every job is stamped \"" STAMP_KEY "\": <unix ms>.\n"
    "Nothing is enqueued if any job is invalid (the error names the file and line), or if\n"
    "a job_id is in use (given twice, waiting, or kept with its record or result).\n"
    "\n"
    "  --wait                 wait for each result and print it (one JSON per line, as they\n"
    "                         arrive), after the ids (with --json, every line is JSON);\n"
    "                         exit 1 if a job failed or timed out\n"
    "  --timeout SECONDS      longest --wait (default 300), from the jobs' due time with\n"
    "                         --delay; a Redis that goes away meanwhile is tried again for up\n"
    "                         to PIXQ_REDIS_OUTAGE_MS\n"
    "  --delay MS             run the jobs MS milliseconds from now\n"
    "  --json                 print {\"queue\", \"job_ids\"} as one JSON line instead of the ids\n"
    "  --no-progress          no progress on stderr while waiting for a batch\n"
    "  --progress-interval S  when stderr is not a terminal, a progress line every S seconds\n"
    "                         (default 2; on a terminal the bar is redrawn in place)\n"
    "\n"
    "Exit status: 0 done, 1 a job was invalid, failed or timed out, or Redis failed, 2 bad "
    "usage.\n";

struct submit_opts {
    const char *paths[MAX_FILES];
    size_t n_paths;
    bool wait, json, progress;
    long timeout_s;
    long delay_ms; /* 0: enqueue now */
    long progress_ms;
};

/* The validated jobs, ready to enqueue: compact JSON with a job_id, stamped just before. */
struct batch {
    const struct cfg *cfg;
    char **payloads;
    char (*id_text)[JOB_ID_MAX];
    const char **ids; /* ids[i] points at id_text[i] (filled once the batch is complete) */
    size_t n, cap;
    size_t bad;                        /* invalid jobs seen */
    char first_bad[ERR_MSG_MAX + 300]; /* where and why the first one was invalid */
};

static int option_value(int argc, char **argv, int *i, const char **out)
{
    if (*i + 1 >= argc) {
        return cli_usage("submit", "%s needs a value", argv[*i]);
    }
    *out = argv[++*i];
    return 0;
}

/* Parses one option at argv[*i] (consuming its value). Returns 0 or CLI_USAGE. */
static int parse_option(int argc, char **argv, int *i, struct submit_opts *o)
{
    const char *a = argv[*i], *v = NULL;
    double secs = 0;
    if (strcmp(a, "--wait") == 0) {
        o->wait = true;
        return 0;
    }
    if (strcmp(a, "--json") == 0) {
        o->json = true;
        return 0;
    }
    if (strcmp(a, "--no-progress") == 0) {
        o->progress = false;
        return 0;
    }
    if (strcmp(a, "--timeout") == 0) {
        return option_value(argc, argv, i, &v) != 0 ? CLI_USAGE
               : cli_long(v, 1, 86400, &o->timeout_s)
                   ? 0
                   : cli_usage("submit", "--timeout takes 1 to 86400 seconds, not '%s'", v);
    }
    if (strcmp(a, "--delay") == 0) {
        return option_value(argc, argv, i, &v) != 0 ? CLI_USAGE
               : cli_long(v, 0, 30L * 86400 * 1000, &o->delay_ms)
                   ? 0
                   : cli_usage("submit", "--delay takes 0 to 2592000000 milliseconds, not '%s'", v);
    }
    if (strcmp(a, "--progress-interval") == 0) {
        if (option_value(argc, argv, i, &v) != 0 || !cli_double(v, 0.05, 3600, &secs)) {
            return cli_usage("submit", "--progress-interval takes 0.05 to 3600 seconds");
        }
        o->progress_ms = (long)(secs * 1000);
        return 0;
    }
    return cli_usage("submit", "unknown option '%s'", a);
}

static int parse_opts(int argc, char **argv, struct submit_opts *o)
{
    *o = (struct submit_opts){.timeout_s = 300, .progress = true, .progress_ms = 2000};
    bool stdin_used = false, operands = false; /* after `--`, every word is a FILE */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!operands && strcmp(a, "--") == 0) {
            operands = true;
            continue;
        }
        if (!operands && a[0] == '-' && strcmp(a, "-") != 0) {
            if (parse_option(argc, argv, &i, o) != 0) {
                return CLI_USAGE;
            }
            continue;
        }
        if (strcmp(a, "-") == 0 && stdin_used) {
            return cli_usage("submit", "standard input (-) can be read only once");
        }
        if (o->n_paths == MAX_FILES) {
            return cli_usage("submit", "at most %d files", MAX_FILES);
        }
        stdin_used |= strcmp(a, "-") == 0;
        o->paths[o->n_paths++] = a;
    }
    return o->n_paths == 0 ? cli_usage("submit", "no FILE given (- reads standard input)") : 0;
}

static void batch_finish(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->payloads[i]);
    }
    free(b->payloads);
    free(b->id_text);
    free(b->ids);
}

static int batch_grow(struct batch *b, struct err *e)
{
    size_t cap = b->cap == 0 ? 64 : b->cap * 2;
    char **payloads = realloc(b->payloads, cap * sizeof *payloads);
    if (payloads != NULL) {
        b->payloads = payloads;
    }
    char(*ids)[JOB_ID_MAX] = payloads != NULL ? realloc(b->id_text, cap * sizeof *ids) : NULL;
    if (ids == NULL) {
        return err_set(e, "out of memory");
    }
    b->id_text = ids;
    b->cap = cap;
    return 0;
}

/* netguard_check_url_form() of a URL of the job (`what`: "postback_url", "src"), the URL in the
 * reason as the worker shows it (credentials redacted). */
static int url_form(const char *what, const char *url, struct err *e)
{
    if (netguard_check_url_form(url, e) < 0) {
        char shown[512];
        cfg_redact_url(url, shown, sizeof shown);
        return err_wrap(e, "%s %.300s", what, shown);
    }
    return 0;
}

/* url_form() of the job's src when it is a URL (not an "&identifier"), job_check_src_object()
 * when it is an object, and the same of its pre_process jobs': the worker would fail the job
 * for good on it, after its queue wait. */
static int src_form(const struct job *j, const char *what, struct err *e)
{
    const char *url = job_src_url(j);
    if (url != NULL && url[0] != '&' && url_form(what, url, e) < 0) {
        return -1;
    }
    if (url == NULL && j->src != NULL && job_check_src_object(j->src, e) < 0) {
        return err_wrap(e, "%s", what);
    }
    for (size_t i = 0; i < j->n_pre; i++) {
        if (j->pre[i].job != NULL && src_form(j->pre[i].job, "pre_process src", e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Whether `obj`'s job_id is an integer json-c read beyond 64 bits: it keeps 18446744073709551615
 * or -9223372036854775808 in its place, and the digits written are gone by the time the job
 * is written again for the queue. */
static bool id_saturated(json_object *obj)
{
    json_object *id = NULL;
    return json_object_object_get_ex(obj, "job_id", &id) &&
           json_object_is_type(id, json_type_int) &&
           (json_object_get_int64(id) == INT64_MIN || json_object_get_uint64(id) == UINT64_MAX);
}

/* Validates one job and gives it a job_id if it has none. Returns it, or NULL (reason in `e`). */
static struct job *check_job(const struct cfg *cfg, json_object *obj, struct err *e)
{
    if (id_saturated(obj)) {
        err_set(e, "job_id is an integer beyond 64 bits, which JSON readers round: give it as a "
                   "string");
        return NULL;
    }
    const struct job_limits lim = {(size_t)cfg->max_job_bytes, (int)cfg->max_json_depth,
                                   (size_t)cfg->max_functions, 0, 0};
    const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    struct job *j = job_parse(text, strlen(text), &lim, e);
    if (j == NULL) {
        return NULL;
    }
    if (j->error[0] != '\0') {
        err_set(e, "%s", j->error);
        job_destroy(j);
        return NULL;
    }
    /* as the worker's guard: PIXQ_MAX_SAVES, a bucket S3 refuses, a postback_url no worker
     * could reach (its network policy is the workers' own: a literal address is theirs to
     * check), the worker could not even say why; a src no worker can download */
    if (job_check_saves(j, cfg->max_saves, e) < 0 || job_check_destinations(j, e) < 0 ||
        (j->postback_url != NULL && url_form("postback_url", j->postback_url, e) < 0) ||
        src_form(j, "src", e) < 0) {
        job_destroy(j);
        return NULL;
    }
    struct buf scratch;
    buf_init(&scratch, 0);
    if (j->id[0] == '\0' && job_assign_id(j, &scratch, e) < 0) {
        job_destroy(j);
        j = NULL;
    }
    buf_finish(&scratch);
    return j;
}

/* input_read()'s callback: checks a job and keeps its payload (an invalid one is counted and
 * the first reported; reading goes on, so that every error is counted). */
static int collect(void *user, json_object *obj, const char *file, long line, struct err *e)
{
    struct batch *b = user;
    if (b->n + b->bad >= MAX_BATCH) {
        return err_set(e, "%s:%ld: more than %d jobs in one submission", file, line, MAX_BATCH);
    }
    struct err why = {{0}};
    struct job *j = check_job(b->cfg, obj, &why);
    if (j == NULL) {
        if (b->bad++ == 0) {
            snprintf(b->first_bad, sizeof b->first_bad, "%s:%ld: invalid job: %s", file, line,
                     why.msg);
        }
        return 0;
    }
    json_object_object_del(j->root, STAMP_KEY); /* stamp() adds this submission's */
    const char *text = json_object_to_json_string_ext(j->root, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
    /* what the worker will read: this text, with its job_id, and the stamp */
    size_t bytes = text != NULL ? strlen(text) + STAMP_BYTES : 0;
    if (bytes > (size_t)b->cfg->max_job_bytes) {
        if (b->bad++ == 0) {
            snprintf(b->first_bad, sizeof b->first_bad,
                     "%s:%ld: invalid job: job is %zu bytes with its job_id and " STAMP_KEY
                     ", more than the limit of %ld (PIXQ_MAX_JOB_BYTES)",
                     file, line, bytes, b->cfg->max_job_bytes);
        }
        job_destroy(j);
        return 0;
    }
    int rc = b->n < b->cap ? 0 : batch_grow(b, e);
    char *copy = rc == 0 && text != NULL ? strdup(text) : NULL;
    if (copy != NULL) {
        snprintf(b->id_text[b->n], JOB_ID_MAX, "%s", j->id);
        b->payloads[b->n++] = copy;
    }
    job_destroy(j);
    return copy != NULL ? 0 : err_set(e, "out of memory");
}

/* Reads and checks every input before anything is enqueued. Prints the first error (file and
 * line) and how many invalid jobs there are. Returns 0 or -1. */
static int read_batch(const struct submit_opts *o, struct batch *b)
{
    const struct input_limits lim = {MAX_INPUT_BYTES, (int)b->cfg->max_json_depth};
    for (size_t i = 0; i < o->n_paths; i++) {
        struct err e = {{0}};
        if (input_read(o->paths[i], &lim, collect, b, &e) < 0) {
            cli_fail("submit: %s; nothing was enqueued", e.msg);
            return -1;
        }
    }
    if (b->bad > 1) {
        cli_fail("submit: %s (and %zu more invalid jobs); nothing was enqueued", b->first_bad,
                 b->bad - 1);
        return -1;
    }
    if (b->bad == 1) {
        cli_fail("submit: %s; nothing was enqueued", b->first_bad);
        return -1;
    }
    b->ids = malloc(b->n * sizeof *b->ids);
    if (b->ids == NULL) {
        cli_fail("submit: out of memory");
        return -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        b->ids[i] = b->id_text[i];
    }
    return 0;
}

/* Adds "pixq_enqueued_at": at_ms as the last member of every payload (each is a compact JSON
 * object without it, with a job_id at least, so it ends with a member and '}'). */
static int stamp(struct batch *b, long long at_ms)
{
    for (size_t i = 0; i < b->n; i++) {
        size_t len = strlen(b->payloads[i]);
        char *p = realloc(b->payloads[i], len + 64);
        if (p == NULL) {
            cli_fail("submit: out of memory");
            return -1;
        }
        snprintf(p + len - 1, 65, ",\"" STAMP_KEY "\":%lld}", at_ms);
        b->payloads[i] = p;
    }
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first job_id given twice in the batch, or NULL. */
static const char *repeated_id(const struct batch *b)
{
    const char **sorted = malloc(b->n * sizeof *sorted);
    if (sorted == NULL) {
        return NULL;
    }
    memcpy(sorted, b->ids, b->n * sizeof *sorted);
    qsort(sorted, b->n, sizeof *sorted, by_id);
    const char *twice = NULL;
    for (size_t i = 1; twice == NULL && i < b->n; i++) {
        twice = strcmp(sorted[i - 1], sorted[i]) == 0 ? sorted[i] : NULL;
    }
    free(sorted);
    return twice;
}

#define CLAIM_CHUNK 1000 /* ids per claim.lua call (2 keys each, under rq's MAX_ARGS) */

/* The keys of ids [from, to) of `b` on `queue`: job hash, result, job hash, result... */
static char (*id_keys(const char *queue, const struct batch *b, size_t from, size_t to))[RQ_KEY_MAX]
{
    char(*keys)[RQ_KEY_MAX] = malloc(2 * (to - from) * sizeof *keys);
    for (size_t i = from; keys != NULL && i < to; i++) {
        char suffix[JOB_ID_MAX + 16];
        snprintf(suffix, sizeof suffix, "job:%s", b->ids[i]);
        rq_key(keys[2 * (i - from)], RQ_KEY_MAX, queue, suffix);
        snprintf(suffix, sizeof suffix, "result:%s", b->ids[i]);
        rq_key(keys[2 * (i - from) + 1], RQ_KEY_MAX, queue, suffix);
    }
    return keys;
}

/* Gives back the claims on ids [first, n) of `b` (their job hashes, written by claim.lua a moment
 * ago: none of those jobs is enqueued, so no worker has written to them). Best effort: a claim
 * left behind expires with PIXQ_RESULT_TTL_S. */
static void unclaim(struct rq *r, const char *queue, const struct batch *b, size_t first, size_t n)
{
    for (size_t from = first; from < n; from += CLAIM_CHUNK) {
        size_t to = n - from > CLAIM_CHUNK ? from + CLAIM_CHUNK : n;
        char(*keys)[RQ_KEY_MAX] = id_keys(queue, b, from, to);
        const char **argv = malloc((to - from + 1) * sizeof *argv);
        if (keys != NULL && argv != NULL) {
            argv[0] = "DEL";
            for (size_t i = 0; i < to - from; i++) {
                argv[i + 1] = keys[2 * i];
            }
            struct err e = {{0}};
            redisReply *rep = rq_commandv(r, 0, (int)(to - from + 1), argv, NULL, &e);
            freeReplyObject(rep);
        }
        free(keys);
        free(argv);
    }
}

/* Claims the batch's job_ids (claim.lua), refusing a batch with an id used twice in it, or one
 * that the queue still knows: a job record (of a job that ran, or of one submitted and still
 * waiting) or a result. Workers would take the new job for a re-run of the old one, skip its
 * postback as sent, and --wait would print the old result. A claim is the id's job hash, kept
 * PIXQ_RESULT_TTL_S past the jobs' due time (`delay_ms` from now): a job that waits in delayed
 * longer than the TTL keeps its id claimed. Returns 0, or CLI_FAILED (message printed, no claim
 * left). */
static int claim_ids(struct rq *r, const char *queue, const struct batch *b, long delay_ms)
{
    const char *twice = repeated_id(b);
    if (twice != NULL) {
        return cli_fail("submit: job_id '%s' is given to two jobs; nothing was enqueued", twice);
    }
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%ld", b->cfg->result_ttl_s + (delay_ms + 999) / 1000);
    const char *args[] = {ttl};
    int rc = 0;
    size_t claimed = 0; /* ids [0, claimed) are claimed */
    for (size_t from = 0; rc == 0 && from < b->n; from += CLAIM_CHUNK) {
        size_t to = b->n - from > CLAIM_CHUNK ? from + CLAIM_CHUNK : b->n;
        char(*keys)[RQ_KEY_MAX] = id_keys(queue, b, from, to);
        const char **kv = malloc(2 * (to - from) * sizeof *kv);
        redisReply *rep = NULL;
        struct err e = {{0}};
        if (keys == NULL || kv == NULL) {
            rc = cli_fail("submit: out of memory");
        } else {
            for (size_t i = 0; i < 2 * (to - from); i++) {
                kv[i] = keys[i];
            }
            rep = rq_script(r, RQ_SCRIPT_CLAIM, (int)(2 * (to - from)), kv, 1, args, NULL, &e);
        }
        if (rc == 0 && (rep == NULL || rep->type != REDIS_REPLY_INTEGER)) {
            rc = cli_fail("submit: claiming the job_ids: %s; nothing was enqueued",
                          rep == NULL ? e.msg : "claim.lua gave no count");
        } else if (rc == 0 && rep->integer > 0) {
            rc = cli_fail("submit: job_id '%s' was used already in %s (a job with it is waiting, "
                          "or its record or result is kept until it expires): give the job "
                          "another job_id, or none to get a fresh one; nothing was enqueued",
                          b->ids[from + (size_t)rep->integer - 1], queue);
        } else if (rc == 0) {
            claimed = to;
        }
        freeReplyObject(rep);
        free(keys);
        free(kv);
    }
    if (rc != 0) {
        unclaim(r, queue, b, 0, claimed); /* not the chunk that failed: its ids may be another's */
    }
    return rc;
}

/* Redis's clock, unix ms (the stamp and stats' ages use it, not this host's). */
static long long redis_now_ms(struct rq *rq, struct err *e)
{
    redisReply *r = rq_command(rq, e, "TIME");
    if (r == NULL) {
        return -1;
    }
    long long ms = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
             strtoll(r->element[1]->str, NULL, 10) / 1000;
    } else {
        err_set(e, "redis: TIME gave no time");
    }
    freeReplyObject(r);
    return ms;
}

/* Sends `head` (LPUSH key, or ZADD key) followed by payloads[from..n) (each preceded by `score`
 * unless it is NULL), in as many commands as keep each under LPUSH_CHUNK_BYTES, pipelined.
 * `from` < b->n. Returns 0 or -1; `*taken` grows by the jobs of the commands Redis took (those
 * before the first it refused: a chunk is taken whole or not at all). */
static int push_chunks(struct rq *r, const char **head, int n_head, const struct batch *b,
                       size_t from, const char *score, size_t *taken, struct err *e)
{
    size_t per = score != NULL ? 2 : 1;
    size_t max_args = ((size_t)n_head + per) * (b->n - from); /* a head per chunk at worst */
    const char **argv = malloc(max_args * sizeof *argv);
    struct rq_cmd *cmds = malloc((b->n - from) * sizeof *cmds);
    redisReply **replies = malloc((b->n - from) * sizeof *replies);
    size_t n_cmds = 0, used = 0;
    int rc = argv != NULL && cmds != NULL && replies != NULL ? 0 : err_set(e, "out of memory");
    for (size_t i = from; rc == 0 && i < b->n;) {
        const char **a = argv + used;
        memcpy(a, head, (size_t)n_head * sizeof *a);
        size_t argc = (size_t)n_head, bytes = 0;
        while (i < b->n && (argc == (size_t)n_head || bytes < LPUSH_CHUNK_BYTES)) {
            if (score != NULL) {
                a[argc++] = score;
            }
            a[argc++] = b->payloads[i];
            bytes += strlen(b->payloads[i++]);
        }
        cmds[n_cmds++] = (struct rq_cmd){(int)argc, a, NULL};
        used += argc;
    }
    bool sent = rc == 0;
    rc = sent ? rq_pipeline(r, n_cmds, cmds, replies, e) : rc; /* error replies fail it */
    for (size_t i = 0; sent && i < n_cmds; i++) {
        *taken += replies[i] != NULL ? (size_t)(cmds[i].argc - n_head) / per : 0;
        freeReplyObject(replies[i]);
    }
    free(argv);
    free(cmds);
    free(replies);
    return rc;
}

static int enqueue_now(struct rq *r, const char *queue, const struct batch *b, size_t *taken,
                       struct err *e)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, queue, "jobs");
    const char *head[] = {"LPUSH", key};
    return push_chunks(r, head, 2, b, 0, NULL, taken, e);
}

/* The first job goes through delay.lua (which wakes a worker if it is now the earliest delayed
 * entry); the others get the same due time with ZADD, so none of them is earlier. */
static int enqueue_delayed(struct rq *r, const char *queue, const struct batch *b, long delay_ms,
                           size_t *taken, struct err *e)
{
    char delayed[RQ_KEY_MAX], jobs[RQ_KEY_MAX], delay[32];
    rq_key(delayed, sizeof delayed, queue, "delayed");
    rq_key(jobs, sizeof jobs, queue, "jobs");
    snprintf(delay, sizeof delay, "%ld", delay_ms);
    const char *keys[] = {delayed, jobs};
    const char *args[] = {b->payloads[0], delay, RQ_WAKE_TOKEN};
    redisReply *rep = rq_script(r, RQ_SCRIPT_DELAY, 2, keys, 3, args, NULL, e);
    char due[32];
    snprintf(due, sizeof due, "%lld", rep != NULL ? rep->integer : 0LL);
    int rc = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? 0 : -1;
    freeReplyObject(rep);
    *taken = rc == 0 ? 1 : 0;
    if (rc == 0 && b->n > 1) {
        const char *head[] = {"ZADD", delayed};
        rc = push_chunks(r, head, 2, b, 1, due, taken, e);
    }
    return rc;
}

/* Prints the ids of the first `n` jobs of the batch. */
static void print_ids(const char *queue, const struct batch *b, size_t n, bool json)
{
    if (!json) {
        for (size_t i = 0; i < n; i++) {
            printf("%s\n", b->ids[i]);
        }
        (void)cli_flush();
        return;
    }
    json_object *o = json_object_new_object(), *ids = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object_array_add(ids, json_object_new_string(b->ids[i]));
    }
    json_object_object_add(o, "queue", json_object_new_string(queue));
    json_object_object_add(o, "job_ids", ids);
    cli_print_json(o);
    (void)cli_flush();
    json_object_put(o);
}

/* --wait: prints every result; returns the exit status. */
static int await(struct rq *r, const char *queue, const struct batch *b,
                 const struct submit_opts *o)
{
    const struct wait_opts wo = {queue,          o->timeout_s,
                                 o->delay_ms,    o->progress && b->n > 1,
                                 o->progress_ms, b->cfg->redis_outage_ms};
    struct wait_outcome out;
    struct err e = {{0}};
    if (wait_results(r, &wo, b->ids, b->n, &out, &e) < 0) {
        return cli_fail("submit: waiting for results: %s; %zu of %zu jobs have no result yet "
                        "(%s%s): they may still finish",
                        e.msg, out.timed_out, b->n, out.first_timed_out,
                        out.timed_out > 1 ? ", ..." : "");
    }
    if (out.timed_out > 0) {
        return cli_fail("submit: timed out after %ld s%s: %zu of %zu jobs have no result yet "
                        "(%s%s), %zu failed",
                        o->timeout_s, o->delay_ms > 0 ? " from their due time" : "", out.timed_out,
                        b->n, out.first_timed_out, out.timed_out > 1 ? ", ..." : "", out.failed);
    }
    if (out.failed > 0) {
        return cli_fail("submit: %zu of %zu jobs failed", out.failed, b->n);
    }
    return CLI_OK;
}

/* Enqueueing failed (`why`): says what became of the jobs, and prints the ids of those that are,
 * or may be, on the queue, so that they are not submitted again unawares. The connection lost
 * once the commands were sent leaves each one unknown; a refusal (out of memory, a read-only
 * replica) leaves those before it enqueued (`taken`) and the rest not. */
static void enqueue_failed(struct rq *r, const char *queue, const struct batch *b, bool lost,
                           size_t taken, bool json, const char *why)
{
    if (lost) { /* their claims stay */
        print_ids(queue, b, b->n, json);
        cli_fail("submit: enqueueing: %s: the connection was lost before Redis answered, so the "
                 "%zu job(s) printed may or may not be on the queue: look for them before "
                 "submitting them again",
                 why, b->n);
        return;
    }
    unclaim(r, queue, b, taken, b->n); /* those jobs are not on the queue */
    if (taken > 0) {
        print_ids(queue, b, taken, json);
        cli_fail("submit: enqueueing: %s: %zu of %zu jobs were enqueued (their ids are printed), "
                 "the others not",
                 why, taken, b->n);
    } else {
        cli_fail("submit: enqueueing: %s; nothing was enqueued", why);
    }
}

/* Stamps and enqueues the batch, whose ids are claimed, on `queue`, then prints the ids. Returns
 * 0 or -1 (message printed). The claims of jobs that are not on the queue are given back; those
 * of jobs that may be stay. */
static int enqueue(struct rq *r, const char *queue, struct batch *b, long delay_ms, bool json)
{
    struct err e = {{0}};
    long long now = redis_now_ms(r, &e);
    if (now < 0 || stamp(b, now + delay_ms) < 0) {
        if (now < 0) {
            cli_fail("submit: %s", e.msg);
        }
        unclaim(r, queue, b, 0, b->n);
        return -1;
    }
    unsigned long io_before = rq_io_errors(r), trips_before = rq_round_trips(r);
    size_t taken = 0;
    int rc = delay_ms > 0 ? enqueue_delayed(r, queue, b, delay_ms, &taken, &e)
                          : enqueue_now(r, queue, b, &taken, &e);
    if (rc < 0) {
        /* lost: commands went out (a round trip began), and the connection went */
        bool lost = rq_io_errors(r) != io_before && rq_round_trips(r) != trips_before;
        enqueue_failed(r, queue, b, lost, taken, json, e.msg);
        return -1;
    }
    print_ids(queue, b, b->n, json);
    return 0;
}

int submit_main(const struct cfg *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return CLI_OK;
    }
    struct submit_opts o;
    struct cfg_queues q;
    if (parse_opts(argc, argv, &o) != 0) {
        return CLI_USAGE;
    }
    if (cli_queues(cfg, &q) < 0) {
        return CLI_USAGE;
    }
    struct batch b = {.cfg = cfg};
    struct rq *r = NULL;
    struct err e = {{0}};
    int status = CLI_FAILED;
    if (read_batch(&o, &b) < 0) {
        goto out;
    }
    r = cli_connect(cfg, &e);
    if (r == NULL) {
        cli_fail("submit: %s", e.msg);
        goto out;
    }
    if (claim_ids(r, q.name[0], &b, o.delay_ms) != 0) {
        goto out;
    }
    if (enqueue(r, q.name[0], &b, o.delay_ms, o.json) < 0) {
        goto out;
    }
    status = o.wait ? await(r, q.name[0], &b, &o) : CLI_OK;
out:
    rq_destroy(r);
    batch_finish(&b);
    return status;
}
