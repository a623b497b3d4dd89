/* jobinfo: `pixq job JOB_ID`: where one job is and what became of it, in every queue of
 * PIXQ_QUEUE: on a worker, waiting, delayed, its outputs parked, its result, its postback, its
 * dead entry. */
#ifndef PIXQ_JOBINFO_H
#define PIXQ_JOBINFO_H

#include "cfg.h"

#define JOBINFO_SCAN_DEFAULT 10000    /* entries of `jobs` and of `dead` searched, per queue */
#define JOBINFO_SCAN_MAX     10000000 /* --scan at most */
#define JOBINFO_JOBS_PAGE    256      /* entries of `jobs` read per round trip */
#define JOBINFO_DEAD_PAGE    32       /* dead entries read per round trip (they may be large) */
#define JOBINFO_ACTIVE_CHUNK 1000     /* workers' active lists read per round trip */

/* `pixq job JOB_ID [--json] [--scan N]`. argv[0] is "job". Returns the exit status: CLI_OK
 * when the job was found in some queue, CLI_FAILED when it was not (or Redis failed). */
int job_main(const struct cfg *cfg, int argc, char **argv);

#endif
