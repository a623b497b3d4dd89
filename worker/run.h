/* run: what happens to one job between reserving and settling it: fetch the source, process it,
 * upload the outputs, build the result, post it back. No queue logic here: worker.c decides what
 * happens to the job in Redis.
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

struct runner {
    const struct cfg *cfg;
    struct http *http; /* borrowed */
    struct s3_config s3;
    struct proc_opts popts;
};

/* Prepares `r` from the configuration (which must outlive it) and an HTTP client. */
void run_init(struct runner *r, const struct cfg *cfg, struct http *http);

/* Runs a parsed job (valid or not) and records everything in `res`; `first_error` (ERR_MSG_MAX
 * bytes, empty on entry) receives the first failure. */
void run_job(struct runner *r, const struct job *job, struct result *res,
             char first_error[ERR_MSG_MAX]);

/* Records a job-level failure that happened outside run_job(). */
void run_fail(const struct job *job, struct result *res, char first_error[ERR_MSG_MAX],
              const char *why);

/* POSTs `body` to the job's postback_url (if any) with its postback_headers; failures are logged.
 */
void run_postback(struct runner *r, const struct job *job, const char *body);

#endif
