/* metrics: the worker's Prometheus counters, shared by every process of one machine.
 *
 * metrics_init() maps one anonymous MAP_SHARED region before the supervisor forks its workers;
 * each process updates it with C11 atomics (lock-free on every platform pixq builds for) and
 * the supervisor (or a thread of the single worker process) renders it for GET /metrics. Every
 * label has a fixed, small set of values: no bucket, key or job labels. Until metrics_init() is
 * called (metrics off, tools, tests) every hook does nothing.
 *
 * Exposed (text format 0.0.4), all prefixed pixq_:
 *   jobs_total{outcome}                 succeeded, failed, retried, parked, dead, lease_lost
 *   outputs_total{outcome}              uploaded, failed, parked
 *   postbacks_total{outcome}            delivered, retried, given_up, refused: how each postback
 *                                       attempt (a POST, or the result's PUT) ended
 *   s3_responses_total{method,code}     PUT/GET/HEAD by HTTP status; code="transport" when no
 *                                       answer came (reset, timeout); only codes seen
 *   throttle_waits_total{kind}          uploads that waited for their bucket's slot: "local" (in
 *   throttle_wait_seconds_total{kind}   the worker) or "park" (in Redis), and how long in all
 *   processing_seconds                  histogram: fetch, decode, process, encode of one job
 *   upload_seconds                      histogram: one S3 PUT
 *   queue_wait_seconds                  histogram: from "pixq_enqueued_at" (pixq submit) to
 *                                       the first reserve; jobs without it (or with one before
 *                                       2000 or over 5 minutes ahead) are not counted
 *   lease_renewals_total{outcome}       heartbeats in each queue: renewed, lost (the worker's
 *                                       record was gone: reaped, or lost by Redis; it joins
 *                                       again), failed (no answer, or an error)
 *   lease_age_seconds                   gauge: the longest any live worker process has gone
 *                                       since its lease last surely held in every queue (past
 *                                       PIXQ_LEASE_MS the fleet takes its job); no sample before
 *                                       a process registered
 *   worker_processes                    gauge: live worker processes
 *   worker_restarts_total               worker processes the supervisor started again
 *   process_start_time_seconds          gauge: when the supervisor (or the worker) started */
#ifndef PIXQ_METRICS_H
#define PIXQ_METRICS_H

#include <stdbool.h>

#include "buf.h"
#include "err.h"
#include "job.h"

enum metrics_job {
    METRICS_JOB_SUCCEEDED,  /* settled with every output uploaded */
    METRICS_JOB_FAILED,     /* settled with a failure (postback and dead letter) */
    METRICS_JOB_RETRIED,    /* scheduled to run again (a transient source failure) */
    METRICS_JOB_PARKED,     /* outputs wait in Redis for their upload slot */
    METRICS_JOB_DEAD,       /* unparseable: buried without a postback */
    METRICS_JOB_LEASE_LOST, /* another worker took it over: not settled here */
    METRICS_JOB_COUNT,
};

enum metrics_output {
    METRICS_OUTPUT_UPLOADED,
    METRICS_OUTPUT_FAILED,
    METRICS_OUTPUT_PARKED, /* deferred: its upload waits in Redis (throttled or retrying) */
    METRICS_OUTPUT_COUNT,
};

enum metrics_postback {
    METRICS_POSTBACK_DELIVERED, /* 2xx, or the result stored in S3 */
    METRICS_POSTBACK_RETRIED,   /* failed; a retry is scheduled (retry_postback) */
    METRICS_POSTBACK_GIVEN_UP,  /* failed, and no retry comes: none asked, the last one, or the
                                 * retry task poisoned or its result gone */
    METRICS_POSTBACK_REFUSED, /* refused by the deployment (its URL or bucket): given up at once */
    METRICS_POSTBACK_COUNT,
};

enum metrics_lease {
    METRICS_LEASE_RENEWED, /* the heartbeat found the worker's record and renewed it */
    METRICS_LEASE_LOST,    /* the record was gone (reaped, or lost by Redis) */
    METRICS_LEASE_FAILED,  /* no answer from Redis, or an error */
    METRICS_LEASE_COUNT,
};

#define METRICS_SLOTS 256 /* worker processes of one supervisor (PIXQ_PROCESSES' most) */

enum metrics_s3 {
    METRICS_S3_PUT,
    METRICS_S3_GET,
    METRICS_S3_HEAD,
    METRICS_S3_COUNT,
};

enum metrics_wait {
    METRICS_WAIT_LOCAL, /* the worker slept until the slot */
    METRICS_WAIT_PARK,  /* the output was parked until the slot */
    METRICS_WAIT_COUNT,
};

/* Maps the shared counters (once; before any fork). Returns 0, or -1 with the reason in `e`. */
int metrics_init(struct err *e);

/* Whether metrics_init() was called. */
bool metrics_enabled(void);

/* Counts a job's outcome. */
void metrics_count_job(enum metrics_job outcome);

/* Counts an output's outcome (one upload attempt's end: done, failed for good, or parked). */
void metrics_count_output(enum metrics_output outcome);

/* Counts how a postback attempt ended. */
void metrics_count_postback(enum metrics_postback outcome);

/* One S3 answer (`status` 0: none came). */
void metrics_count_s3(enum metrics_s3 method, long status);

/* One PUT: its duration for the upload histogram, and its answer as metrics_count_s3(). */
void metrics_observe_upload(double seconds, long status);

/* The time one job spent fetching, decoding, processing and encoding. */
void metrics_observe_processing(double seconds);

/* A job's `run`-th run (1: the first) started at `started_ms` (unix ms, when the worker took it
 * up after reserving and parsing it): on the first run, the time from its "pixq_enqueued_at"
 * (unix ms) to then goes to the queue wait histogram (nothing without it). */
void metrics_job_reserved(const struct job *j, long run, long started_ms);

/* An upload waited `ms` for its bucket's slot, in the worker or parked in Redis. */
void metrics_throttle_wait(enum metrics_wait kind, long ms);

/* How one heartbeat in one queue ended. */
void metrics_count_lease(enum metrics_lease outcome);

/* The calling process's lease surely held in every queue as of `boot_ms` (clock_boot_ms(): the
 * time its renewal was sent). */
void metrics_lease_held(long boot_ms);

/* The supervisor's slot the calling process runs in (0 until set: a single worker process), where
 * metrics_lease_held() writes; and a slot emptied when its process ended (no lease of its own
 * any more), slots outside 0..METRICS_SLOTS-1 ignored. */
void metrics_use_slot(long slot);
void metrics_clear_slot(long slot);

/* The supervisor's view: live worker processes, and one more restart. */
void metrics_set_processes(long n);
void metrics_count_restart(void);

/* Monotonic seconds, for timing what is observed. */
double metrics_clock(void);

/* Appends the Prometheus text exposition (format 0.0.4) to `out`. Returns 0 or -1 (memory). */
int metrics_render(struct buf *out);

#endif
