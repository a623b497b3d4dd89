/* input: the jobs in `pixq submit`'s inputs. A file (or "-", standard input) holds one job, a
 * JSON array of jobs, or JSON lines (one job per line, blank lines ignored). Jobs are handed out
 * one at a time, with the file and line each starts on, so that a large batch is never held as
 * parsed JSON all at once. */
#ifndef PIXQ_INPUT_H
#define PIXQ_INPUT_H

#include <json-c/json.h>
#include <stddef.h>

#include "err.h"

/* Limits of what input_read() accepts. */
struct input_limits {
    size_t max_bytes; /* of one file */
    int max_depth;    /* JSON nesting of one job */
};

/* Called with each job (borrowed: released after the call), its file (as given, "(stdin)" for
 * "-") and 1-based line. Returns 0 to go on, or -1 to stop reading (reason in `e`). */
typedef int (*input_job_fn)(void *user, json_object *job, const char *file, long line,
                            struct err *e);

/* Reads `path` ("-": standard input) and calls `each` for every job in it, in order. Returns 0,
 * or -1 with a message naming the file and line in `e` (unreadable file, JSON that is not valid,
 * an empty file or array, or `each` stopped). Jobs before a JSON error were already handed out:
 * callers enqueue only after every input was read. */
int input_read(const char *path, const struct input_limits *lim, input_job_fn each, void *user,
               struct err *e);

#endif
