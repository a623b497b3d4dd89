/* cli: what every pixq subcommand shares: --help, usage errors and failures on one line,
 * number arguments, the queue list, and JSON output.
 *
 * Exit statuses: CLI_OK (done), CLI_FAILED (the operation failed: a job failed or timed out,
 * Redis unreachable, bad input data), CLI_USAGE (bad arguments; nothing was done). */
#ifndef PIXQ_CLI_H
#define PIXQ_CLI_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "rq.h"

#define CLI_OK     0
#define CLI_FAILED 1
#define CLI_USAGE  2

/* Whether argv[1..argc-1] holds --help or -h before any `--` (after it, they are operands). */
bool cli_wants_help(int argc, char **argv);

/* Prints "pixq: <cmd>: <reason> (usage: pixq <cmd> --help)" on stderr; returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "pixq: <reason>" on stderr; returns CLI_FAILED. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a whole decimal integer within [min, max]. Returns false if `s` is not one. */
bool cli_long(const char *s, long min, long max, long *out);

/* Parses a whole decimal number within [min, max] (no NaN, no infinity). */
bool cli_double(const char *s, double min, double max, double *out);

/* Splits cfg->queue into `q` (cfg_queues()). Returns 0, or -1 with the reason printed. */
int cli_queues(const struct cfg *cfg, struct cfg_queues *q);

/* Connects to PIXQ_REDIS_URL (rq_create()) and refuses a Redis Cluster node (rq_server_check():
 * pixq's client follows no MOVED or ASK, so a node's keys would be a part of the queues'), as
 * the worker does. NULL with the reason in `e`. */
struct rq *cli_connect(const struct cfg *cfg, struct err *e);

/* Member `k` of object `o` (NULL if absent or `o` is not an object): borrowed. */
json_object *cli_get(json_object *o, const char *k);

/* Member `k` of `o` as an integer (0 if absent). */
long long cli_int(json_object *o, const char *k);

/* Member `k` of `o` as a string (`absent` if it is absent or null). */
const char *cli_str(json_object *o, const char *k, const char *absent);

/* A malloc'd copy of `s` that a terminal shows as it is written: every control character (C0,
 * DEL, and C1 in UTF-8) and every byte that is not valid UTF-8 written as \xNN, so that text from
 * Redis (a job's URL in an error, a job_id a producer chose) cannot move the cursor, rewrite the
 * screen or print lines of its own. NULL if out of memory. Free the result. */
char *cli_printable(const char *s);

/* "2026-03-01T10:00:00.123Z": unix time `ms` in UTC, or "(unknown time)" for one <= 0. */
void cli_iso_utc(long long ms, char *out, size_t cap);

/* Prints `o` as one line of compact JSON on stdout (slashes not escaped). A byte of a string that
 * is not part of valid UTF-8 (a name some client wrote in Redis) is written as the text \xNN, as
 * the text views show it: JSON is UTF-8, and a strict reader refuses the whole line. */
void cli_print_json(json_object *o);

/* Flushes stdout. Returns 0, or -1 if anything printed so far could not be written (a full disk, a
 * closed file): the first failure's errno is kept for cli_output_errno(). */
int cli_flush(void);

/* 0 if everything printed on stdout so far was written (flushed or not), else the errno of the
 * first write that failed (EIO when it is not known). */
int cli_output_errno(void);

#endif
