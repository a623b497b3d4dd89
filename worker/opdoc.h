/* opdoc: the parameters of each function a job may name, as the operations themselves read them
 * (pixq-worker --functions).
 *
 * Nothing here lists a parameter: each operation runs in check-only mode (ops.h) on an empty
 * params object under job_param_record() (job.h), which reports every job_param_*() call it
 * makes. Parameters are kept per function, in the order first read, once each. */
#ifndef PIXQ_OPDOC_H
#define PIXQ_OPDOC_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"
#include "job.h"

#define OPDOC_UNREAD_NAMES 32   /* most parameters an opdoc_unread list names */
#define OPDOC_UNREAD_TEXT  1024 /* bytes of its list, with NUL */
#define OPDOC_UNREAD_PART  64   /* bytes of a function's or a parameter's name in it, at most */

enum opdoc_format {
    OPDOC_TEXT,     /* a block per function, a line per parameter */
    OPDOC_JSON,     /* [{"function": ..., "parameters": [{"name": ...}...]}...] */
    OPDOC_MARKDOWN, /* a heading and a table per function (docs/FUNCTIONS.md) */
};

/* Prints every function's parameters to `out` in `format`. Returns 0, or -1 with the reason in
 * `e` when an operation failed while recorded (a parameter after its failure would be missed)
 * or read more parameters than one can hold. */
int opdoc_print(FILE *out, enum opdoc_format format, struct err *e);

/* The parameters of a job that no function reads (a misspelt "widht"), which the job's run
 * ignores as Blitline's worker did. */
struct opdoc_unread {
    size_t count;                 /* every one found, those the list leaves out too */
    size_t listed;                /* those named in `text` */
    char text[OPDOC_UNREAD_TEXT]; /* "resize_to_fit.widht,composite.scale_to_fit.hieght" */
};

/* Finds, in every function of `j` (children and pre_process jobs' functions too, in document
 * order, each time one is given), each parameter its function does not read as opdoc_print()
 * learns them: neither by its name nor by its alias; in an object parameter whose members the
 * function reads ("scale_to_fit.width"), each member it does not read. An unknown function, and
 * the members of any other object (a src), are not looked at. Names are cut to
 * OPDOC_UNREAD_PART bytes each; the list stops at OPDOC_UNREAD_NAMES names or at the first that
 * does not fit in `text`, `count` goes on. The first call learns every function's parameters
 * (the process keeps them; not thread-safe, like job_param_record()). Returns 0 with `out`
 * filled, or -1 with the reason in `e` when they cannot be learned (as opdoc_print() fails). */
int opdoc_unread(const struct job *j, struct opdoc_unread *out, struct err *e);

#endif
