#include "submit.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "job.h"
#include "rq.h"

#define MAX_INPUT_BYTES (64L * 1024 * 1024) /* largest submission file */
#define MAX_BATCH       10000               /* most jobs in one submission */

struct submit_opts {
    const char *path;
    bool wait;
    long timeout_s;
    long delay_ms; /* 0: enqueue now */
};

struct batch {
    char **payloads;
    char (*ids)[JOB_ID_MAX];
    size_t n;
};

static int read_input(const char *path, struct buf *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "pixq submit: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(out, chunk, n) < 0) {
            fprintf(stderr, "pixq submit: %s is larger than %ld bytes\n", path, MAX_INPUT_BYTES);
            rc = -1;
            break;
        }
    }
    if (f != stdin) {
        fclose(f);
    }
    return rc;
}

static int parse_opts(int argc, char **argv, struct submit_opts *o)
{
    *o = (struct submit_opts){.timeout_s = 300};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0) {
            o->wait = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            o->timeout_s = strtol(argv[++i], &end, 10);
            if (*end != '\0' || o->timeout_s < 1 || o->timeout_s > 86400) {
                fprintf(stderr, "pixq submit: --timeout takes 1 to 86400 seconds\n");
                return -1;
            }
        } else if (strcmp(argv[i], "--delay") == 0 && i + 1 < argc) {
            char *end;
            o->delay_ms = strtol(argv[++i], &end, 10);
            if (*end != '\0' || o->delay_ms < 0 || o->delay_ms > 30L * 86400 * 1000) {
                fprintf(stderr, "pixq submit: --delay takes 0 to 2592000000 milliseconds\n");
                return -1;
            }
        } else if (o->path == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
            o->path = argv[i];
        } else {
            fprintf(stderr, "pixq submit: unexpected argument '%s'\n", argv[i]);
            return -1;
        }
    }
    if (o->path == NULL) {
        fprintf(stderr, "usage: pixq submit FILE|- [--wait] [--timeout SECONDS] [--delay MS]\n");
        return -1;
    }
    return 0;
}

/* Validates one job and stores its payload (with a job_id) at index i. */
static int add_job(const struct cfg *cfg, json_object *obj, struct batch *b, size_t i)
{
    const struct job_limits lim = {(size_t)cfg->max_job_bytes, (int)cfg->max_json_depth,
                                   (size_t)cfg->max_functions};
    const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    struct err e = {{0}};
    struct job *j = job_parse(text, strlen(text), &lim, &e);
    if (j == NULL || j->error[0] != '\0') {
        fprintf(stderr, "pixq submit: job %zu is invalid: %s\n", i + 1,
                j != NULL ? j->error : e.msg);
        job_destroy(j);
        return -1;
    }
    struct buf payload;
    buf_init(&payload, 0);
    int rc = j->id[0] == '\0' ? job_assign_id(j, &payload, &e) : buf_puts(&payload, text);
    if (rc < 0) {
        fprintf(stderr, "pixq submit: job %zu: %s\n", i + 1, e.msg);
    } else {
        snprintf(b->ids[i], JOB_ID_MAX, "%s", j->id);
        b->payloads[i] = buf_take(&payload);
    }
    buf_finish(&payload);
    job_destroy(j);
    return rc < 0 ? -1 : 0;
}

static int build_batch(const struct cfg *cfg, const struct buf *in, struct batch *b)
{
    json_tokener *tok = json_tokener_new_ex((int)cfg->max_json_depth + 1);
    json_object *root = json_tokener_parse_ex(tok, in->data, (int)in->len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (root == NULL || jerr != json_tokener_success) {
        fprintf(stderr, "pixq submit: not valid JSON: %s\n", json_tokener_error_desc(jerr));
        json_object_put(root);
        return -1;
    }
    bool many = json_object_is_type(root, json_type_array);
    size_t n = many ? json_object_array_length(root) : 1;
    if (n == 0 || n > MAX_BATCH) {
        fprintf(stderr, "pixq submit: expected 1 to %d jobs, got %zu\n", MAX_BATCH, n);
        json_object_put(root);
        return -1;
    }
    b->payloads = calloc(n, sizeof *b->payloads);
    b->ids = calloc(n, sizeof *b->ids);
    b->n = n;
    int rc = b->payloads != NULL && b->ids != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = add_job(cfg, many ? json_object_array_get_idx(root, i) : root, b, i);
    }
    json_object_put(root);
    return rc;
}

static void batch_finish(struct batch *b)
{
    for (size_t i = 0; b->payloads != NULL && i < b->n; i++) {
        free(b->payloads[i]);
    }
    free(b->payloads);
    free(b->ids);
}

static int enqueue(struct rq *r, const char *queue, const struct batch *b)
{
    char key[RQ_KEY_MAX];
    rq_key(key, sizeof key, queue, "jobs");
    const char **argv = calloc(b->n + 2, sizeof *argv);
    if (argv == NULL) {
        return -1;
    }
    argv[0] = "LPUSH";
    argv[1] = key;
    for (size_t i = 0; i < b->n; i++) {
        argv[i + 2] = b->payloads[i];
    }
    struct err e = {{0}};
    redisReply *rep = rq_commandv(r, 0, (int)b->n + 2, argv, NULL, &e);
    free(argv);
    if (rep == NULL) {
        fprintf(stderr, "pixq submit: %s\n", e.msg);
        return -1;
    }
    freeReplyObject(rep);
    return 0;
}

/* Enqueues each job to run after `delay_ms` (delay.lua: wakes a worker when it is the earliest). */
static int enqueue_delayed(struct rq *r, const char *queue, const struct batch *b, long delay_ms)
{
    char delayed[RQ_KEY_MAX], jobs[RQ_KEY_MAX], delay[32];
    rq_key(delayed, sizeof delayed, queue, "delayed");
    rq_key(jobs, sizeof jobs, queue, "jobs");
    snprintf(delay, sizeof delay, "%ld", delay_ms);
    const char *keys[] = {delayed, jobs};
    for (size_t i = 0; i < b->n; i++) {
        const char *args[] = {b->payloads[i], delay, RQ_WAKE_TOKEN};
        struct err e = {{0}};
        redisReply *rep = rq_script(r, RQ_SCRIPT_DELAY, 2, keys, 3, args, NULL, &e);
        if (rep == NULL) {
            fprintf(stderr, "pixq submit: %s\n", e.msg);
            return -1;
        }
        freeReplyObject(rep);
    }
    return 0;
}

/* Waits for one result without consuming it (BLMOVE of a list onto itself). 1 if the result
 * reports errors, 0 if not, -1 on timeout or failure. */
static int wait_result(struct rq *r, const char *queue, const char *id, time_t deadline)
{
    char key[RQ_KEY_MAX], suffix[JOB_ID_MAX + 8], timeout[32];
    snprintf(suffix, sizeof suffix, "result:%s", id);
    rq_key(key, sizeof key, queue, suffix);
    long left = (long)(deadline - time(NULL));
    snprintf(timeout, sizeof timeout, "%ld", left > 0 ? left : 1);
    const char *argv[] = {"BLMOVE", key, key, "RIGHT", "LEFT", timeout};
    struct err e = {{0}};
    redisReply *rep = rq_commandv(r, (left > 0 ? left : 1) * 1000, 6, argv, NULL, &e);
    if (rep == NULL || rep->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "pixq submit: no result for %s: %s\n", id,
                rep == NULL ? e.msg : "timed out");
        freeReplyObject(rep);
        return -1;
    }
    printf("%s\n", rep->str);
    int failed = strstr(rep->str, "\"errors\":") != NULL;
    freeReplyObject(rep);
    return failed;
}

int submit_main(const struct cfg *cfg, int argc, char **argv)
{
    struct submit_opts o;
    if (parse_opts(argc, argv, &o) < 0) {
        return 2;
    }
    struct buf in;
    buf_init(&in, MAX_INPUT_BYTES);
    struct batch b = {0};
    struct err e = {{0}};
    struct rq *r = NULL;
    int status = 1;
    if (read_input(o.path, &in) < 0 || build_batch(cfg, &in, &b) < 0) {
        goto out;
    }
    r = rq_create(cfg->redis_url, cfg->redis_timeout_ms, &e);
    if (r == NULL) {
        fprintf(stderr, "pixq submit: %s\n", e.msg);
        goto out;
    }
    char queue[CFG_STR_MAX];
    snprintf(queue, sizeof queue, "%.*s", (int)strcspn(cfg->queue, ","), cfg->queue);
    if ((o.delay_ms > 0 ? enqueue_delayed(r, queue, &b, o.delay_ms) : enqueue(r, queue, &b)) < 0) {
        goto out;
    }
    for (size_t i = 0; i < b.n; i++) {
        printf("%s\n", b.ids[i]);
    }
    fflush(stdout);
    status = 0;
    time_t deadline = time(NULL) + o.timeout_s;
    for (size_t i = 0; o.wait && i < b.n; i++) {
        status = wait_result(r, queue, b.ids[i], deadline) != 0 ? 1 : status;
    }
out:
    rq_destroy(r);
    batch_finish(&b);
    buf_finish(&in);
    return status;
}
