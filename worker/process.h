/* process: runs a job's function tree on a decoded source and encodes every save.
 *
 * Children work on their parent's output; siblings each start from the same parent image (a
 * clone, never a second decode); outputs come out in document order. No network here: the
 * caller fetches the source and uploads the outputs. */
#ifndef PIXQ_PROCESS_H
#define PIXQ_PROCESS_H

#include <stddef.h>

#include "err.h"
#include "image.h"
#include "job.h"
#include "ops.h"

struct proc_opts {
    long max_pixels;
    long default_quality;
    size_t max_output_bytes;
    op_load_fn load; /* how functions load other images; NULL: they cannot */
    void *load_user;
};

struct proc_output {
    const struct job_save *save; /* borrowed from the job */
    struct img_output img;
};

struct proc_result {
    long orig_width, orig_height; /* the source before auto-orient */
    struct proc_output *outputs;
    size_t n_outputs;
};

/* Checks that every function of the tree exists. Returns 0, or -1 with Blitline's message
 * "Unknown function named 'X'". */
int proc_check(const struct job *j, struct err *e);

/* Decodes `len` bytes of source, auto-orients it (unless the job says not to), walks the tree
 * and encodes each save into `out` (initialised here; release with proc_result_finish(), also
 * after a failure, which may leave the sizes set). Returns 0 or -1. */
int proc_run(const struct job *j, const void *src, size_t len, const struct proc_opts *o,
             struct proc_result *out, struct err *e);

/* Releases the outputs. */
void proc_result_finish(struct proc_result *r);

#endif
