/* wait: `pixq submit --wait`: waits for the results of enqueued jobs, prints each as it arrives,
 * and shows a progress bar on stderr for batches. */
#ifndef PIXQ_WAIT_H
#define PIXQ_WAIT_H

#include <stdbool.h>
#include <stddef.h>

#include "rq.h"

#define WAIT_POLL_MIN_MS     100   /* result keys are polled at most this often... */
#define WAIT_POLL_MAX_MS     2000  /* ...and at least this often, */
#define WAIT_POLL_KEYS_PER_S 10000 /* keeping the poll under this many reads per second */
#define WAIT_TTY_REDRAW_MS   200   /* a progress bar on a terminal is redrawn this often */

struct wait_opts {
    const char *queue;
    long timeout_s;   /* counted from the jobs' due time: delay_ms after the wait begins */
    long delay_ms;    /* `pixq submit --delay`: no job can have a result before it */
    bool progress;    /* show progress on stderr (batches only) */
    long progress_ms; /* when stderr is not a terminal: one line this often */
    long outage_ms;   /* Redis away this long (PIXQ_REDIS_OUTAGE_MS) ends the wait */
};

/* What became of the jobs. */
struct wait_outcome {
    size_t succeeded, failed, timed_out; /* timed_out: no result when the wait ended */
    char first_timed_out[128];           /* a job id, for the message */
};

/* Whether a Blitline result JSON reports a failure: a non-empty "errors" in "results" (or it is
 * not such a result). */
bool wait_result_failed(const char *text);

/* Waits for result:<id> of every id (no result is consumed), printing each result JSON on its
 * own line of stdout as it arrives, until every job has one or o->timeout_s has passed since the
 * jobs were due (o->delay_ms from now). A Redis that goes away or is loading is waited for, with a
 * line on stderr (outage.h), for up to o->outage_ms within the timeout. Returns 0, or -1 if Redis
 * failed for good or stayed away (reason in `e`; out->timed_out then counts the jobs still without
 * a result). */
int wait_results(struct rq *r, const struct wait_opts *o, const char *const *ids, size_t n,
                 struct wait_outcome *out, struct err *e);

#endif
