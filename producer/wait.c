#include "wait.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "outage.h"
#include "rq.h"

#define BAR_WIDTH 30 /* characters of the bar on a terminal */

struct waiter {
    const struct wait_opts *o;
    const char *const *ids;
    size_t n;
    size_t *pending; /* indices of ids without a result yet */
    size_t n_pending;
    long start_ms;
    long next_draw_ms;
    bool tty;
    struct wait_outcome *out;
};

bool wait_result_failed(const char *text)
{
    json_object *doc = json_tokener_parse(text);
    json_object *results = NULL, *errors = NULL;
    bool failed =
        doc == NULL || !json_object_object_get_ex(doc, "results", &results) ||
        (json_object_object_get_ex(results, "errors", &errors) &&
         !(json_object_is_type(errors, json_type_array) && json_object_array_length(errors) == 0));
    json_object_put(doc);
    return failed;
}

static void draw(struct waiter *w, bool last)
{
    size_t done = w->n - w->n_pending;
    long now = clock_mono_ms();
    double secs = (double)(now - w->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    char line[256];
    snprintf(line, sizeof line, "%zu/%zu done, %zu failed, %zu remaining, %.1f jobs/s", done, w->n,
             w->out->failed, w->n_pending, rate);
    if (!w->tty) {
        fprintf(stderr, "progress: %s, %.1f s\n", line, secs);
        return;
    }
    char bar[BAR_WIDTH + 1];
    size_t full = w->n > 0 ? done * BAR_WIDTH / w->n : 0;
    memset(bar, '#', full);
    memset(bar + full, '.', BAR_WIDTH - full);
    bar[BAR_WIDTH] = '\0';
    fprintf(stderr, "\r\033[K[%s] %s%s", bar, line, last ? "\n" : "");
    fflush(stderr);
}

static void maybe_draw(struct waiter *w)
{
    long now = clock_mono_ms();
    if (w->o->progress && now >= w->next_draw_ms) {
        draw(w, false);
        w->next_draw_ms = now + (w->tty ? WAIT_TTY_REDRAW_MS : w->o->progress_ms);
    }
}

/* One result arrived: print it and count it. */
static void take(struct waiter *w, const redisReply *r)
{
    if (w->tty && w->o->progress) {
        fputs("\r\033[K", stderr); /* the bar is redrawn below the result */
        fflush(stderr);
    }
    printf("%s\n", r->str);
    (void)cli_flush();
    if (wait_result_failed(r->str)) {
        w->out->failed++;
    } else {
        w->out->succeeded++;
    }
}

/* Reads result:<id> (LINDEX 0: not consumed) of every pending job in one pipelined pass. */
static int poll_once(struct rq *r, struct waiter *w, struct err *e)
{
    size_t n = w->n_pending;
    char(*keys)[RQ_KEY_MAX] = malloc(n * sizeof *keys);
    const char **argv = malloc(n * 3 * sizeof *argv);
    struct rq_cmd *cmds = malloc(n * sizeof *cmds);
    redisReply **replies = malloc(n * sizeof *replies);
    int rc = keys != NULL && argv != NULL && cmds != NULL && replies != NULL
                 ? 0
                 : err_set(e, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char suffix[RQ_KEY_MAX];
        snprintf(suffix, sizeof suffix, "result:%s", w->ids[w->pending[i]]);
        rq_key(keys[i], RQ_KEY_MAX, w->o->queue, suffix);
        const char **a = argv + 3 * i;
        a[0] = "LINDEX";
        a[1] = keys[i];
        a[2] = "0";
        cmds[i] = (struct rq_cmd){3, a, NULL};
    }
    bool sent = rc == 0;
    rc = sent ? rq_pipeline(r, n, cmds, replies, e) : rc;
    size_t kept = 0;
    for (size_t i = 0; sent && i < n; i++) {
        if (rc == 0 && replies[i]->type == REDIS_REPLY_STRING) {
            take(w, replies[i]);
        } else {
            w->pending[kept++] = w->pending[i];
        }
        freeReplyObject(replies[i]); /* NULL after an error reply */
    }
    w->n_pending = sent ? kept : w->n_pending;
    free(keys);
    free(argv);
    free(cmds);
    free(replies);
    return rc;
}

/* How long to wait before the next poll: longer with more keys to read. */
static long poll_interval_ms(size_t pending)
{
    long ms = (long)(pending * 1000 / WAIT_POLL_KEYS_PER_S);
    return ms < WAIT_POLL_MIN_MS ? WAIT_POLL_MIN_MS : ms > WAIT_POLL_MAX_MS ? WAIT_POLL_MAX_MS : ms;
}

/* One poll, through a Redis that went away for a while (`out`): the wait (ms) before the next
 * one, or -1 if Redis failed for good or stayed away past PIXQ_REDIS_OUTAGE_MS (reason in `e`).
 * The jobs carry on in the fleet meanwhile: their results wait in Redis, read when it is back. */
static long poll_step(struct rq *r, struct waiter *w, struct outage *out, struct err *e)
{
    unsigned long io_before = rq_io_errors(r);
    struct err why = {{0}};
    if (poll_once(r, w, &why) == 0) {
        outage_over(out, clock_mono_ms());
        return poll_interval_ms(w->n_pending);
    }
    if (!outage_passing(r, io_before, why.msg)) {
        err_set(e, "%s", why.msg);
        return -1;
    }
    return outage_failed(out, why.msg, clock_mono_ms(), e);
}

static int wait_loop(struct rq *r, struct waiter *w, struct err *e)
{
    long deadline = w->start_ms + w->o->delay_ms + w->o->timeout_s * 1000;
    long next_poll = w->start_ms;
    struct outage out;
    outage_init(&out, "submit", w->o->outage_ms, w->tty && w->o->progress);
    for (;;) {
        long now = clock_mono_ms();
        /* a last look at the deadline, as `pixq job --wait` takes: a poll may be a second or two
         * away, and a result written meanwhile is there */
        bool last = now >= deadline;
        if (now >= next_poll || last) {
            long wait_ms = poll_step(r, w, &out, e);
            if (wait_ms < 0) {
                return -1;
            }
            next_poll = clock_mono_ms() + wait_ms;
        }
        if (w->n_pending == 0 || last) {
            return 0;
        }
        maybe_draw(w);
        long wake = next_poll < deadline ? next_poll : deadline;
        if (w->o->progress && w->next_draw_ms < wake) {
            wake = w->next_draw_ms;
        }
        clock_sleep_ms(wake - clock_mono_ms());
    }
}

int wait_results(struct rq *r, const struct wait_opts *o, const char *const *ids, size_t n,
                 struct wait_outcome *out, struct err *e)
{
    *out = (struct wait_outcome){0};
    struct waiter w = {o, ids, n, calloc(n, sizeof(size_t)), n, clock_mono_ms(), 0, false, out};
    if (w.pending == NULL) {
        return err_set(e, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        w.pending[i] = i;
    }
    w.tty = isatty(STDERR_FILENO) == 1;
    w.next_draw_ms = w.start_ms + (w.tty ? WAIT_TTY_REDRAW_MS : o->progress_ms);
    int rc = wait_loop(r, &w, e);
    if (rc == 0 && o->progress) {
        draw(&w, true);
    }
    out->timed_out = w.n_pending; /* or, when Redis failed, still without a result */
    if (out->timed_out > 0) {
        snprintf(out->first_timed_out, sizeof out->first_timed_out, "%s", ids[w.pending[0]]);
    }
    free(w.pending);
    return rc;
}
