/* lease: a worker's liveness in Redis, kept by a thread of its own.
 *
 * The worker is registered in pixq:{Q}:workers of every queue Q it serves, with a deadline (Redis
 * clock) that the thread renews every heartbeat. The same thread reaps, every reap interval and in
 * every queue, the workers whose deadline passed: their reserved jobs go back to the queue they
 * came from (reap.lua). A reaped or stopped worker's list gets a second look later
 * (pixq:{Q}:reaped): a job that a reservation held up on the way moved onto it after the reap goes
 * back too, unless the worker registered again. If this worker's own lease was taken in any queue
 * (it stalled longer than the lease), the thread notes it (lease_lost) and registers again. After a
 * stop is requested, the thread also enforces the shutdown deadline: past it, the job still running
 * is given back to the head of the queue and the process exits.
 *
 * The thread also adds the worker's counts of uploaded bytes to each queue's stats, at every
 * heartbeat and at the end, and each reap pass drops from every queue's dead list a few entries
 * past PIXQ_DEAD_MAX_AGE_S (dead_trim.lua). It has its own Redis connection; the worker's main
 * thread never waits for it. */
#ifndef PIXQ_LEASE_H
#define PIXQ_LEASE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "err.h"

#define LEASE_QUEUES_MAX 16 /* most queues one worker serves */
#define LEASE_EXIT_HUNG  3  /* the exit status of a worker that gave up a hung job */

struct lease;

/* Registers worker `wid` in each of the `n` queues (1..LEASE_QUEUES_MAX) and starts the thread.
 * `stop` is the process's stop flag. `rejoin`: the worker saw Redis fail before (its start had
 * to wait for Redis): after a time in which no lease was renewed, it renews every lease as it
 * registers, an outage's and not a dead fleet's (heartbeat.lua). Returns NULL with the reason
 * in `e`. */
struct lease *lease_start(const struct cfg *cfg, const char *const *queues, size_t n,
                          const char *wid, bool rejoin, volatile sig_atomic_t *stop, struct err *e);

/* Counts `bytes` uploaded for a job of queue `queue` (the index into the queues given to
 * lease_start()); the next heartbeat adds them to pixq:{Q}:stats uploaded_bytes. NULL allowed. */
void lease_count_uploaded(struct lease *l, size_t queue, unsigned long long bytes);

/* The job in hand began (from queue `queue`, an index as for lease_count_uploaded), or ended;
 * called by the thread that called lease_start(), which runs the jobs. A job that used more than
 * PIXQ_JOB_HANG_S of that thread's CPU is given back, counted as a crash, and the process exits
 * with LEASE_EXIT_HUNG (log job_hung). NULL allowed. */
void lease_job_begins(struct lease *l, size_t queue);
void lease_job_ends(struct lease *l);

/* The id of the job in hand once known (after lease_job_begins), for the lease thread's lines
 * about it (job_hung). */
void lease_job_id(struct lease *l, const char *job_id);

/* The job in hand is being posted back and settled (`on`), or no longer. Past the shutdown
 * deadline such a job is not given back (it would be posted twice) while that lasts, up to a
 * postback's timeout and wait_for_s3's longest wait more. Once a stop has begun, the mark stays
 * until lease_stop(): the worker, its job settled, is on its way out. NULL allowed. */
void lease_delivering(struct lease *l, bool on);

/* How long the lease surely holds, in ms: until a heartbeat before it runs out, counted from the
 * last renewal in every queue (<= 0: overdue). A worker takes no new job while its lease is
 * overdue (frozen, or its thread cut off from Redis), nor waits for one (BLMOVE) longer than
 * this, so that no job lands on its list once the fleet may have reaped it. NULL: LONG_MAX. */
long lease_fresh_ms(struct lease *l);

/* How many times a heartbeat found the worker's record gone: Redis lost its data (a restart
 * without it, a failover, a flush; worker_reregistered reason=record_lost), or, found late
 * (lease_lost), the worker was reaped, or a flush came while it was paused. A flush ends no
 * connection: the worker reads its queues' data tokens again when this changes. NULL: 0. */
unsigned long lease_records_lost(struct lease *l);

/* Whether the last heartbeat that reached Redis found it full (maxmemory with noeviction:
 * heartbeat.lua). NULL: false. */
bool lease_redis_full(struct lease *l);

/* Stops the thread, gives back anything left on the worker's active lists (each to its own queue)
 * and unregisters the worker. NULL is allowed. */
void lease_stop(struct lease *l);

#endif
