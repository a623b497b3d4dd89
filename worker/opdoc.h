/* opdoc: the parameters of each function a job may name, as the operations themselves read them
 * (pixq-worker --functions).
 *
 * Nothing here lists a parameter: each operation runs in check-only mode (ops.h) on an empty
 * params object under job_param_record() (job.h), which reports every job_param_*() call it
 * makes. Parameters are kept per function, in the order first read, once each. */
#ifndef PIXQ_OPDOC_H
#define PIXQ_OPDOC_H

#include <stdio.h>

#include "err.h"

enum opdoc_format {
    OPDOC_TEXT,     /* a block per function, a line per parameter */
    OPDOC_JSON,     /* [{"function": ..., "parameters": [{"name": ...}...]}...] */
    OPDOC_MARKDOWN, /* a heading and a table per function (docs/FUNCTIONS.md) */
};

/* Prints every function's parameters to `out` in `format`. Returns 0, or -1 with the reason in
 * `e` when an operation failed while recorded (a parameter after its failure would be missed)
 * or read more parameters than one can hold. */
int opdoc_print(FILE *out, enum opdoc_format format, struct err *e);

#endif
