/* jobinfo: `pixq job JOB_ID`: where one job is and what became of it, in every queue of
 * PIXQ_QUEUE: on a worker, waiting, delayed, its outputs parked, its result, its postback, its
 * dead entry. */
#ifndef PIXQ_JOBINFO_H
#define PIXQ_JOBINFO_H

#include "cfg.h"

#define JOBINFO_SCAN_DEFAULT     10000    /* entries of `jobs` and of `dead` searched, per queue */
#define JOBINFO_SCAN_MAX         10000000 /* --scan at most */
#define JOBINFO_JOBS_PAGE        256      /* entries of `jobs` read per round trip */
#define JOBINFO_DEAD_PAGE        32       /* dead entries read per round trip (they may be large) */
#define JOBINFO_ACTIVE_CHUNK     1000     /* workers' active lists read per round trip */
#define JOBINFO_WAIT_DEFAULT_S   300      /* --wait at most this long without --timeout */
#define JOBINFO_WAIT_MAX_S       86400    /* --timeout at most */
#define JOBINFO_WAIT_POLL_MIN_MS 100      /* --wait: the first pause between searches, doubling */
#define JOBINFO_WAIT_POLL_MAX_MS 1000     /* to this (and at least 4 times a search's own time) */

/* `pixq job JOB_ID [--json] [--scan N] [--wait [--timeout S]]`. argv[0] is "job". Returns the
 * exit status: CLI_OK when the job was found in some queue (with --wait: when it succeeded),
 * CLI_FAILED when it was not (with --wait: when it failed, or had no outcome in time), or Redis
 * failed. */
int job_main(const struct cfg *cfg, int argc, char **argv);

#endif
