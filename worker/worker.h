/* worker: the consumer loop. Reserve a job, fetch its source, process it, upload the outputs,
 * post the result back, and settle the job in Redis.
 *
 * Delivery is at least once: a job is moved atomically from pixq:{Q}:jobs into this worker's
 * pixq:{Q}:active:<id> list (BLMOVE, LMOVE, or finish.lua reserving the next job while it settles
 * the last) and leaves it only in finish.lua, together with its result (and its dead letter when
 * it failed). A job that cannot be parsed is buried with its error; any other failure reaches the
 * job's postback.
 *
 * PIXQ_QUEUE may name several queues, highest priority first ("urgent,default"): each has its own
 * keys, and a payload settles in the queue it came from. Between jobs the worker sweeps every
 * queue in one pipelined round trip and keeps the first queue's job; idle, it blocks on the
 * first queue for at most PIXQ_QUEUE_POLL_MS (see reserve_multi() in worker.c). */
#ifndef PIXQ_WORKER_H
#define PIXQ_WORKER_H

#include <signal.h>
#include <stdbool.h>

#include "cfg.h"
#include "err.h"

struct worker;

/* Connects to Redis and prepares HTTP, S3 and ImageMagick for `cfg` (which must outlive the
 * worker). `stop` is polled between and during steps: set it from a signal handler. `rejoin`:
 * an earlier try failed (Redis down or refusing), see lease_start(). Returns NULL with the
 * reason in `e`. */
struct worker *worker_create(const struct cfg *cfg, volatile sig_atomic_t *stop, bool rejoin,
                             struct err *e);

/* Frees the worker; NULL is allowed. */
void worker_destroy(struct worker *w);

/* Serves jobs until *stop is set. Redis outages are waited out with back-off. Returns 0. */
int worker_run(struct worker *w);

/* The worker's id ("host:pid:random"). */
const char *worker_id(const struct worker *w);

#endif
