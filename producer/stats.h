/* stats: `pixq stats` (every queue of PIXQ_QUEUE: depths, workers and what each is doing,
 * throughput over the last minute, the oldest waiting job's age, per-bucket limiter state) and
 * `pixq queues` (the queues found in Redis and their depths). */
#ifndef PIXQ_STATS_H
#define PIXQ_STATS_H

#include <json-c/json.h>
#include <stdbool.h>

#include "cfg.h"

#define STATS_WORKERS_MAX     1000 /* workers listed per queue (every one is counted) */
#define STATS_LLEN_CHUNK      1000 /* active lists measured per round trip */
#define STATS_TPUT_WINDOW_S   60   /* throughput is summed over this many seconds */
#define STATS_OLDEST_SCAN     16   /* entries at the consuming end searched for the oldest job, */
#define STATS_OLDEST_PAGE     64   /* then this many per round trip past pixq's own entries, */
#define STATS_OLDEST_SCAN_MAX 4096 /* as far as this */
#define STATS_WAKE_SCAN       1000 /* entries at the consuming end searched for wake-up tokens */
#define STATS_WATCH_S         2.0  /* default --watch interval */

/* One entry of a queue, an active list or `delayed`, parsed: a job, or one of pixq's own (`task`,
 * behind RQ_TASK_MARK). NULL if it is not JSON. Put the result. */
json_object *stats_parse_entry(const char *payload, bool *task);

/* The job id an entry parsed by stats_parse_entry() is about (NULL if none), and in `kind` what
 * it is: "job", "upload", "postback", "poison" or "wake". Borrowed from `doc`: a poison pill's
 * id is that of the entry it holds (as text), which is parsed and added to `doc` as
 * STATS_PILL_ENTRY. */
#define STATS_PILL_ENTRY "pixq_pill_entry"
const char *stats_entry_id(json_object *doc, bool task, const char **kind);

/* `pixq stats [--json|--prometheus] [--watch [SECONDS] [--count N]]`. argv[0] is "stats".
 * Returns the exit status. */
int stats_main(const struct cfg *cfg, int argc, char **argv);

/* Prints a collection (the object `pixq stats --json` prints) in the Prometheus text format. */
void stats_print_prometheus(json_object *s);

/* Redis's memory as it compares it with maxmemory, from stats' `redis` object: used_memory less
 * not_counted_for_evict, never below 0. */
long long stats_redis_counted(json_object *redis);

/* `pixq queues [--json]`. argv[0] is "queues". Returns the exit status. */
int queues_main(const struct cfg *cfg, int argc, char **argv);

#endif
