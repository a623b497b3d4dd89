/* outage: how the commands that keep watching Redis (`pixq stats --watch`, `--wait` of submit and
 * job) ride out a Redis that goes away for a while (a restart, a failover, a network cut) or is
 * still loading its data: which failures may pass, the back-off between tries, and the lines on
 * stderr while Redis is away. The rq connection reconnects by itself at the next command; this
 * module only decides whether, and when, to send one. */
#ifndef PIXQ_OUTAGE_H
#define PIXQ_OUTAGE_H

#include <stdbool.h>

#include "err.h"
#include "rq.h"

#define OUTAGE_BACKOFF_MIN_MS 100  /* the first wait after a failure, doubling... */
#define OUTAGE_BACKOFF_MAX_MS 2000 /* ...up to this */

struct outage {
    const char *what;       /* the command, as its lines name it: "stats" */
    long limit_ms;          /* PIXQ_REDIS_OUTAGE_MS: how long an outage is ridden out */
    bool clear_line;        /* erase a progress bar drawn on stderr before writing a line */
    long since_ms;          /* monotonic ms of the outage's first failure; -1: none going on */
    long backoff_ms;        /* the wait after the next failure */
    char said[ERR_MSG_MAX]; /* the reason last written on stderr */
};

/* Sets up `o` for a command named `what` (a string that outlives `o`). */
void outage_init(struct outage *o, const char *what, long limit_ms, bool clear_line);

/* Whether a failure (`msg`, of commands on `r` begun when rq_io_errors(r) was `io_before`) may
 * pass with time: the connection lost, not made, or timed out (except a login or database that
 * Redis refuses, rq_refused_for_good()), or Redis answering LOADING, BUSY, MASTERDOWN or
 * TRYAGAIN. Any other error answer is for good. */
bool outage_passing(const struct rq *r, unsigned long io_before, const char *msg);

/* A failure that may pass (`msg`) at monotonic `now_ms`. Writes "pixq: <what>: redis unavailable
 * (<msg>); trying again for up to N s (PIXQ_REDIS_OUTAGE_MS)" on stderr when the outage begins,
 * and the reason again when it changes. Returns the wait (ms) before the next try, or -1 when the
 * outage has lasted limit_ms: then "redis unavailable for N s (PIXQ_REDIS_OUTAGE_MS): <msg>" is
 * in `e`. */
long outage_failed(struct outage *o, const char *msg, long now_ms, struct err *e);

/* Redis answered at `now_ms`: ends an outage going on, with "pixq: <what>: redis is back after
 * X s" on stderr. Does nothing otherwise. */
void outage_over(struct outage *o, long now_ms);

#endif
