/* run: what happens to one job between reserving and settling it: run its pre_process steps,
 * fetch the source (HTTP, S3, a canvas or a pre_process image), process it, upload the outputs
 * (Content-Type from the format, x-amz-acl by default, s3_destination.headers merged over them, an
 * empty value removing one), build the result, post it back with the job's postback_headers. No
 * queue logic here: worker.c decides what happens to the job in Redis. (A payload that is a JSON
 * array of jobs is split by the caller with job_split_batch() before any of this.)
 *
 * Failures never abort: they become Blitline errors in the result ("Image processing failed. ..."
 * for the whole job, the S3 message for one output), and the first of them is copied into
 * `first_error` so that the caller can tell a failed job from a good one. */
#ifndef PIXQ_RUN_H
#define PIXQ_RUN_H

#include "cfg.h"
#include "err.h"
#include "http.h"
#include "job.h"
#include "process.h"
#include "result.h"
#include "s3.h"
#include "source.h"
#include "srccache.h"
#include "upload.h"

/* How a run ended, for the caller's retry decision. */
enum run_status {
    RUN_DONE,             /* the result says it all (success, or a failure retrying won't fix) */
    RUN_SOURCE_TRANSIENT, /* a source download failed in a way that may pass: timeout, reset,
                             refused, HTTP 5xx/429/408 */
    RUN_SOURCE_FAILED,    /* a source download failed for good (4xx, too large) */
    RUN_PARKED,           /* some outputs wait for their upload slot: see runner.parked */
};

/* An output whose upload waits in Redis: its task (upload.h) and its encoded bytes. */
struct run_parked {
    json_object *task;
    unsigned char *data;
    size_t len;
    long due_ms; /* when the task is due, clock_mono_ms(): the job may go on for a while after
                    parking it (its other outputs), and park.lua counts the delay from its call */
};

/* Where the current task's time went, microseconds: run_job() starts them at 0, run_send() and
 * run_postback() add theirs, the worker its wait_for_s3. The worker's job_done and job_failed
 * lines show them. */
struct run_times {
    long fetch_us;    /* downloading sources */
    long process_us;  /* the rest of the job's work: decoding, the functions, encoding */
    long upload_us;   /* uploading outputs (the rate limit's waits and retries included) */
    long s3_wait_us;  /* wait_for_s3: until the uploaded objects could be read */
    long postback_us; /* posting the result back */
};

#define RUN_REGIONS 32 /* buckets whose region an S3 source's GET learned, kept per process */

/* A bucket's region, as S3 named it. */
struct run_region {
    char bucket[64]; /* "" : free */
    char region[64];
};

struct runner {
    const struct cfg *cfg;
    enum run_status fetch_status; /* the worst source download failure of the current run */
    struct http *http;            /* borrowed */
    struct s3_config s3;
    struct awscreds creds;    /* keys from AWS_SHARED_CREDENTIALS_FILE or an endpoint (s3.creds) */
    struct src_loader loader; /* refs set while a job runs */
    struct proc_opts popts;
    struct uploader up;
    long s3_last_used_ms; /* for not reusing S3 connections past PIXQ_S3_IDLE_MS */
    struct run_region regions[RUN_REGIONS]; /* for S3 sources' buckets; the oldest replaced */
    size_t next_region;
    struct netguard guard;     /* what sources and postbacks may reach */
    struct run_parked *parked; /* outputs of the last run waiting for upload */
    size_t n_parked, cap_parked;
    json_object *objs;       /* objects uploaded by the last run: [{"bucket","region","key"}] */
    const char *job_id;      /* of the job running, for log lines; "" between jobs */
    struct run_times times;  /* of the current job */
    struct srccache sources; /* of the current job: those it names more than once */
    long downloads;          /* by the current job, against PIXQ_MAX_SOURCES */
    long retry_after_ms;     /* the longest wait a transient source failure of the current run
                                asked for (Retry-After, at most PIXQ_RETRY_AFTER_MAX_MS); -1:
                                none did */
    long postback_retry_after_ms; /* the same, of the last failed postback POST; -1: none */
    bool past_job_limit;          /* the current run went past PIXQ_MAX_SOURCES or
                                     PIXQ_JOB_DOWNLOAD_TIMEOUT_MS: no run again fixes it, not even
                                     wait_retry_delay's */
    /* whether a run of the job that ends with `st` (a source failure) runs again (then a failed
     * run's finished outputs are not uploaded); or NULL: none does */
    bool (*reruns)(void *user, const struct job *j, enum run_status st);
    void *reruns_user;
    /* asked before each upload: whether the job in hand was taken from this worker (its lease
     * ran out, and the fleet gave it to another), when the output is not sent; or NULL */
    bool (*taken)(void *user);
    void *taken_user;
    /* told the size of every upload S3 took, at once (the stats' uploaded_bytes); or NULL */
    void (*uploaded)(void *user, size_t bytes);
    void *uploaded_user;
    /* when the job in hand was first seen (ms since the epoch, Redis's clock; begin.lua), for the
     * hour of default keys, so that a rerun writes the same objects; -1 when unknown (then the
     * clock of this host); or NULL */
    long (*first_seen)(void *user);
    void *first_seen_user;
};

/* Prepares `r` from the configuration (which must outlive it) and an HTTP client. */
void run_init(struct runner *r, const struct cfg *cfg, struct http *http);

/* Runs a parsed job (valid or not) and records everything in `res`; `first_error` (ERR_MSG_MAX
 * bytes, empty on entry) receives the first failure. A failed upload of one output is recorded
 * (errors, failed_image_identifiers) and the other outputs still go. Returns whether a source
 * download failed, and how, so that the caller may run the job again later instead of posting
 * the failure back. */
enum run_status run_job(struct runner *r, const struct job *job, struct result *res,
                        char first_error[ERR_MSG_MAX]);

/* up_send() of the runner's uploader, its time added to times.upload_us: for an upload that a
 * later task makes (a parked output). */
enum up_outcome run_send(struct runner *r, json_object *task, const void *data, size_t len,
                         struct buf *url, long *delay, struct err *e);

/* Lets uploads use the fleet's shared rate limits through `rq` (the worker's connection). */
void run_set_redis(struct runner *r, struct rq *rq);

/* Drops what the last run left (parked outputs, uploaded objects). */
void run_release(struct runner *r);

/* Frees everything the runner holds. */
void run_finish(struct runner *r);

/* Records a job-level failure that happened outside run_job(). */
void run_fail(const struct job *job, struct result *res, char first_error[ERR_MSG_MAX],
              const char *why);

#define RUN_POSTBACK_REFUSED (-3) /* run_postback(): the target is refused for good */

/* POSTs `body` to the job's postback_url (if any) with its postback_headers, signed when a secret
 * is configured. Returns 0 when delivered (2xx) or when the job has no postback_url, -1 when it
 * failed (logged; a later try may succeed), RUN_POSTBACK_REFUSED when no try can (logged): the
 * URL is not http(s), has no host or is malformed, or is a literal address the network guard
 * refuses; a postback_url save to a bucket PIXQ_S3_BUCKETS does not allow. A name that
 * resolves to a refused address is -1: DNS may answer otherwise later. The reason is in `e`. */
int run_postback(struct runner *r, const struct job *job, const char *body, struct err *e);

#endif
