/* admin: `pixq stats` and `pixq dead`, the operator's view of a queue. */
#ifndef PIXQ_ADMIN_H
#define PIXQ_ADMIN_H

#include "cfg.h"

/* `pixq stats [--json]`: queue depth, delayed, dead, live workers and what each holds, counters.
 * argv[0] is "stats". Returns the exit status. */
int stats_main(const struct cfg *cfg, int argc, char **argv);

/* `pixq dead list [--limit N] [--json]`, `pixq dead retry all|JOB_ID`,
 * `pixq dead purge [JOB_ID]`. argv[0] is "dead". Returns the exit status. */
int dead_main(const struct cfg *cfg, int argc, char **argv);

/* `pixq limit show [--json]`, `pixq limit set BUCKET RATE BURST`, `pixq limit reset BUCKET`:
 * the per-bucket upload limits shared by the fleet. argv[0] is "limit". */
int limit_main(const struct cfg *cfg, int argc, char **argv);

#endif
