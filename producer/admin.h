/* admin: `pixq dead` and `pixq limit`, the operator's handles on dead jobs and bucket limits. */
#ifndef PIXQ_ADMIN_H
#define PIXQ_ADMIN_H

#include <json-c/json.h>

#include "cfg.h"
#include "rq.h"

/* `pixq dead list [--limit N] [--json]`, `pixq dead retry all|[--] JOB_ID`,
 * `pixq dead purge [all|--no-id|[--] JOB_ID]`. argv[0] is "dead". Returns the exit status. */
int dead_main(const struct cfg *cfg, int argc, char **argv);

/* The job id of dead entry `d` (parsed), or NULL when it has none to show or name: not an
 * object, no job_id, or one that is not a string of its own (empty, or holding a NUL). */
const char *admin_dead_id(json_object *d);

/* `pixq limit show [--json]`, `pixq limit set BUCKET RATE BURST`, `pixq limit reset BUCKET`:
 * the per-bucket upload limits shared by the fleet. argv[0] is "limit". */
int limit_main(const struct cfg *cfg, int argc, char **argv);

/* Every bucket's limiter state (SCAN pixq:rl:{*}, rl_show.lua): a JSON array of {"bucket",
 * "rate", "burst", "effective_rate", "backlog_ms", "throttle_signals", "decreases", "replans",
 * "region", "override"}, owned by the caller; NULL, with the reason in `e`, if Redis failed or
 * refused a command (a user without SCAN or without the limiter keys), rather than a list short of
 * them. */
json_object *limit_collect(struct rq *rq, const struct cfg *cfg, struct err *e);

/* Prints limit_collect()'s array as a table, each line starting with `indent`. */
void limit_print(json_object *list, const char *indent);

#endif
