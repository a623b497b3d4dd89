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
#include "source.h"

struct proc_opts {
    long max_pixels;
    long max_profile_bytes; /* PIXQ_MAX_PROFILE_BYTES */
    long default_quality;
    size_t max_output_bytes;
    size_t max_job_output_bytes; /* all the outputs of one proc_run() together */
    op_load_fn load;             /* how functions load other images; NULL: they cannot */
    op_fetch_fn fetch;           /* how they fetch other files; NULL: they cannot */
    void *load_user;             /* passed to both */
    /* an output this job refers to ("&identifier") keeps its image as saved (proc_output.image);
     * NULL: none does */
    const struct job *keep_refs_of;
};

struct proc_output {
    const struct job_save *save; /* borrowed from the job */
    struct img_output img;
    MagickWand *image; /* with proc_opts.keep_refs_of: the image as saved, stripped as the save
                          says and in its format, not encoded; else NULL */
};

struct proc_result {
    json_object *original_meta;         /* owned; NULL until the source was described */
    long decoded_width, decoded_height; /* the size the source was decoded at (shrink-on-load) */
    struct proc_output *outputs;
    size_t n_outputs;
    size_t output_bytes; /* the outputs' encoded bytes, together */
};

/* Where what pre_process makes goes: the worker uploads it, pixq-apply writes files. */
struct proc_sink {
    /* One output of a pre_process job whose save has an s3_destination. Returns 0, or -1 to
     * fail the job. */
    int (*output)(void *user, const struct job *pre, const struct proc_output *o, struct err *e);
    /* move_original: `len` bytes of `content_type` go to `dest`. Returns 0 or -1 (fails the
     * job). */
    int (*move)(void *user, const struct job_save *dest, const void *data, size_t len,
                const char *content_type, struct err *e);
    void *user;
};

/* Checks that every function of the tree (and of its pre_process jobs) exists and that its
 * parameters are valid, as far as they can be without the image (the check-only mode of ops.h),
 * so that a bad job fails before its source is fetched. Returns 0, or -1 with Blitline's message
 * "Unknown function named 'X'" or the error the function would have failed with at run time
 * ("Invalid parameter ...", "Missing parameter ...", after "pre_process job: " for a pre_process
 * job's, as its run says). */
int proc_check(const struct job *j, struct err *e);

/* Decodes a loaded source if it is still pending (at the smallest size the tree allows when
 * PIXQ_SHRINK_ON_LOAD is on and the source is a JPEG: see shrink.h), describes it
 * (original_meta), auto-orients it (unless the job says not to), walks the tree and encodes
 * each save into `out` (initialised here; release with
 * proc_result_finish(), also after a failure, which may leave original_meta set). The source's
 * wand is consumed: the tree's last function at the top level works on it rather than on a copy
 * (src->wand is then NULL; src_image_finish() still releases the rest). The job must have passed
 * proc_check() (its pre_process jobs with it): the tree is not checked again here. Returns 0 or
 * -1. */
int proc_run(const struct job *j, struct src_image *src, const struct proc_opts *o,
             struct proc_result *out, struct err *e);

/* Runs the job's pre_process steps in order (BLITLINE.md 2.5). A nested job runs in full
 * (src_open, proc_run): every output is kept in `refs` (which `l` should also name, so that
 * later steps and the main job can use "&identifier") and those with an s3_destination go to
 * sink->output. move_original loads the job's src into `main_src` (initialised here; release
 * with src_image_finish()) and sends its untouched bytes to sink->move, converted when the
 * destination key's extension names another format; the caller processes that `main_src`
 * rather than loading the src again (main_src->wand is NULL when no step loaded it).
 * Returns 0, or -1 with the reason in `e`. */
int proc_pre_process(const struct job *j, const struct src_loader *l, struct src_refs *refs,
                     const struct proc_opts *o, const struct proc_sink *sink,
                     struct src_image *main_src, struct err *e);

/* Releases the outputs and original_meta. */
void proc_result_finish(struct proc_result *r);

#endif
