#include "process.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "ops.h"
#include "shrink.h"
#include "source.h"

struct walk {
    const struct proc_opts *opts;
    struct op_ctx ctx;
    struct proc_result *out;
    size_t cap;
};

/* Checks every function of a tree: that it exists, then its parameters (the operation's
 * check-only mode, ops.h). A pre_process job's errors are wrapped as its run wraps them, but for
 * an unknown function, which proc_check() has always named alone. */
static int check_tree(const struct job_fn *fns, size_t n, bool pre, struct err *e)
{
    const struct op_ctx ctx = {0}; /* no limits and no loader: the check needs neither */
    for (size_t i = 0; i < n; i++) {
        const struct op *op = op_find(fns[i].name);
        if (op == NULL) {
            return err_set(e, "Unknown function named '%s'", fns[i].name);
        }
        if (op->run(NULL, fns[i].params, &ctx, e) < 0) {
            return pre ? err_wrap(e, "pre_process job") : -1;
        }
        if (check_tree(fns[i].children, fns[i].n_children, pre, e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* proc_check() of a job, `pre` when it is a pre_process job. */
static int check_job(const struct job *j, bool pre, struct err *e)
{
    for (size_t i = 0; i < j->n_pre; i++) {
        if (j->pre[i].job != NULL && check_job(j->pre[i].job, true, e) < 0) {
            return -1;
        }
    }
    return check_tree(j->functions, j->n_functions, pre, e);
}

int proc_check(const struct job *j, struct err *e)
{
    return check_job(j, false, e);
}

static int save_output(struct walk *wk, MagickWand *w, const struct job_save *save, struct err *e)
{
    if (save->skip) {
        return 0;
    }
    if (wk->out->n_outputs == wk->cap) {
        size_t cap = wk->cap == 0 ? 4 : wk->cap * 2;
        struct proc_output *p = realloc(wk->out->outputs, cap * sizeof *p);
        if (p == NULL) {
            return err_set(e, "out of memory");
        }
        wk->out->outputs = p;
        wk->cap = cap;
    }
    img_label_colour(w);                   /* and so for its children */
    MagickWand *copy = CloneMagickWand(w); /* encoding strips metadata: keep w intact */
    if (copy == NULL) {
        return err_set(e, "out of memory");
    }
    struct proc_output *o = &wk->out->outputs[wk->out->n_outputs];
    o->save = save;
    o->image = NULL;
    int rc = 0;
    if (wk->opts->keep_refs_of != NULL &&
        job_refers_to(wk->opts->keep_refs_of, save->image_identifier)) {
        o->image = CloneMagickWand(w);
        rc = o->image == NULL ? err_set(e, "out of memory") : img_as_saved(o->image, save, e);
    }
    if (rc == 0) {
        rc = img_encode(copy, save, wk->opts->default_quality, wk->opts->max_output_bytes, &o->img,
                        e);
    }
    DestroyMagickWand(copy);
    /* the outputs wait in memory for the whole tree, a parked one in Redis too: 50 saves of 100
     * MiB would be 5 GB of one job */
    size_t total = wk->out->output_bytes + (rc == 0 ? o->img.len : 0);
    if (rc == 0 && total > wk->opts->max_job_output_bytes) {
        img_output_finish(&o->img);
        rc = err_set(e,
                     "the job's outputs would be more than %zu bytes together (%zu with '%s'), "
                     "PIXQ_MAX_JOB_OUTPUT_BYTES",
                     wk->opts->max_job_output_bytes, total, save->image_identifier);
    }
    if (rc == 0) {
        wk->out->n_outputs++;
        wk->out->output_bytes = total;
    } else if (o->image != NULL) {
        o->image = DestroyMagickWand(o->image);
    }
    return rc;
}

static int walk_tree(struct walk *wk, MagickWand **parent, const struct job_fn *fns, size_t n,
                     struct err *e);

/* Runs one function on a copy of *parent, or on *parent itself when `take` (its last user): the
 * wand is then consumed and *parent set to NULL. */
static int run_fn(struct walk *wk, MagickWand **parent, bool take, const struct job_fn *f,
                  struct err *e)
{
    MagickWand *w = take ? *parent : CloneMagickWand(*parent);
    if (w == NULL) {
        return err_set(e, "out of memory");
    }
    if (take) {
        *parent = NULL;
    }
    const struct op *op = op_find(f->name);
    bool cmyk = op->in_rgb && MagickGetImageColorspace(w) == CMYKColorspace;
    int rc = cmyk && MagickTransformImageColorspace(w, sRGBColorspace) == MagickFalse
                 ? img_fail(w, f->name, e)
                 : 0;
    rc = rc == 0 ? op->run(w, f->params, &wk->ctx, e) : rc;
    if (rc == 0 && cmyk && MagickTransformImageColorspace(w, CMYKColorspace) == MagickFalse) {
        rc = img_fail(w, f->name, e);
    }
    if (rc == 0) {
        img_forget_type(w);
    }
    /* an operation that does not look at the clock (or ends just past it) returns in success: the
     * job stops here, at the first function boundary after the deadline, and says which function
     * ran past it, rather than going on to its save, its children and the next function */
    if (rc == 0 && img_past_deadline(w)) {
        rc = img_fail(w, f->name, e);
    }
    if (rc == 0 && f->save != NULL) {
        rc = save_output(wk, w, f->save, e);
    }
    if (rc == 0) {
        rc = walk_tree(wk, &w, f->children, f->n_children, e);
    }
    if (w != NULL) {
        DestroyMagickWand(w);
    }
    return rc;
}

/* Runs every function of a level; the last one takes the parent, which no one needs after it. */
static int walk_tree(struct walk *wk, MagickWand **parent, const struct job_fn *fns, size_t n,
                     struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (run_fn(wk, parent, i + 1 == n, &fns[i], e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A decoded source still at its stored size is brought to the plan's size with a box filter
 * (what libjpeg's DCT scaling amounts to): for sources no decoder can shrink (PNG, GIF, an
 * animated WebP...), the rest of the tree then resizes a small image instead of the whole one. */
static int shrink_after_load(struct src_image *src, const struct shrink_plan *plan, struct err *e)
{
    MagickWand *w = src->wand;
    if ((long)MagickGetImageWidth(w) != src->width ||
        (long)MagickGetImageHeight(w) != src->height) {
        return 0;
    }
    /* from 1/4 or less, sample to twice the plan first (as ImageMagick's thumbnail samples to
     * five times the output): the box filter then reads a quarter of the pixels */
    bool sample = plan->scale * 4 <= SHRINK_DENOM;
    if ((sample &&
         MagickSampleImage(w, (size_t)plan->width * 2, (size_t)plan->height * 2) == MagickFalse) ||
        MagickScaleImage(w, (size_t)plan->width, (size_t)plan->height) == MagickFalse) {
        return img_fail(w, "shrink", e);
    }
    return 0;
}

/* Decodes a pending source, at the smallest size the job allows (shrink.h): a JPEG through
 * libjpeg's scaling, a still WebP through libwebp's, anything else decoded in full then shrunk
 * (an animated WebP, already decoded by the probe, too). */
static int decode_source(const struct job *j, struct src_image *src, struct proc_result *out,
                         struct err *e)
{
    struct shrink_plan plan;
    bool fresh = src->pending || src->probe.decoded; /* from bytes, not used yet */
    bool shrink = fresh && img_shrink_on_load() &&
                  shrink_plan(j, src->width, src->height, src->probe.orientation, &plan);
    /* a JPEG, a still WebP and an 8-bit RGB(A), palette or grey PNG shrink while decoding (libjpeg,
     * libwebp, pngshrink.h); a PNG pngshrink declines is read whole and shrunk below */
    bool by_decoder =
        src->pending && (src->probe.format == SNIFF_JPEG || src->probe.format == SNIFF_WEBP ||
                         src->probe.format == SNIFF_PNG);
    long t0 = clock_mono_ms();
    long stored_w = src->width, stored_h = src->height;
    if (src_decode(src, shrink && by_decoder ? &plan : NULL, e) < 0) {
        return src_blame(j->src, src, e);
    }
    if (shrink && (src->width != stored_w || src->height != stored_h)) { /* a TIFF's first page */
        shrink = shrink_plan(j, src->width, src->height, src->probe.orientation, &plan);
    }
    by_decoder = by_decoder && (long)MagickGetImageWidth(src->wand) != src->width;
    if (shrink && shrink_after_load(src, &plan, e) < 0) {
        return -1;
    }
    out->decoded_width = (long)MagickGetImageWidth(src->wand);
    out->decoded_height = (long)MagickGetImageHeight(src->wand);
    if (fresh) {
        const char *by = !shrink ? "none" : by_decoder ? "decoder" : "box";
        LOG_DEBUG("decoded", "source=%ldx%ld decoded=%ldx%ld scale=%d/8 by=%s ms=%ld", src->width,
                  src->height, out->decoded_width, out->decoded_height,
                  shrink ? plan.scale : SHRINK_DENOM, by, clock_mono_ms() - t0);
    }
    return 0;
}

int proc_run(const struct job *j, struct src_image *src, const struct proc_opts *o,
             struct proc_result *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    if (decode_source(j, src, out, e) < 0) {
        return -1;
    }
    out->original_meta = src_describe(j, src, e);
    if (out->original_meta == NULL) {
        return -1;
    }
    if (!j->suppress_auto_orient && img_auto_orient(src->wand, e) < 0) {
        return -1;
    }
    struct walk wk = {
        .opts = o,
        .ctx = {.max_pixels = o->max_pixels,
                .max_profile_bytes = o->max_profile_bytes,
                .load = o->load,
                .fetch = o->fetch,
                .load_user = o->load_user},
        .out = out,
    };
    return walk_tree(&wk, &src->wand, j->functions, j->n_functions, e);
}

void proc_result_finish(struct proc_result *r)
{
    for (size_t i = 0; i < r->n_outputs; i++) {
        img_output_finish(&r->outputs[i].img);
        if (r->outputs[i].image != NULL) {
            DestroyMagickWand(r->outputs[i].image);
        }
    }
    free(r->outputs);
    json_object_put(r->original_meta);
    r->original_meta = NULL;
    r->outputs = NULL;
    r->n_outputs = 0;
}

/* ---------------------------------------------------------------- pre_process */

/* Keeps the outputs of a pre_process job that the job refers to ("&identifier") and sends on
 * those with a destination. */
static int keep_outputs(const struct job *pre, const struct proc_result *pr, struct src_refs *refs,
                        const struct proc_sink *sink, struct err *e)
{
    for (size_t i = 0; i < pr->n_outputs; i++) {
        const struct proc_output *o = &pr->outputs[i];
        if (o->image != NULL && src_refs_add(refs, o->save->image_identifier, o->image, o->img.blob,
                                             o->img.len, e) < 0) {
            return -1;
        }
        if (o->save->bucket != NULL && sink->output(sink->user, pre, o, e) < 0) {
            return -1;
        }
    }
    return 0;
}

static int run_pre_job(const struct job *top, const struct job *pre, const struct src_loader *l,
                       struct src_refs *refs, const struct proc_opts *o,
                       const struct proc_sink *sink, struct err *e)
{
    struct src_image im;
    struct proc_result pr = {0};
    struct proc_opts keep = *o;
    keep.keep_refs_of = top;
    int rc = src_open(l, pre->src, &im, e) < 0 ? src_blame(pre->src, &im, e) : 0;
    if (rc == 0) {
        rc = proc_run(pre, &im, &keep, &pr, e);
    }
    if (rc == 0) {
        rc = keep_outputs(pre, &pr, refs, sink, e);
    }
    proc_result_finish(&pr);
    src_image_finish(&im);
    return rc < 0 ? err_wrap(e, "pre_process job") : 0;
}

/* Whether move_original must re-encode: the destination names a format other than the
 * source's (a canvas has no bytes: always encoded, as PNG without an extension). */
static int move_needs_encoding(const struct job_save *dest, const struct src_image *src,
                               bool *encode, struct err *e)
{
    const char *magick = NULL, *mime = NULL;
    if (dest->format[0] != '\0' && !img_format_for(dest->format, &magick, &mime)) {
        return err_set(e, "Unsupported output format '%s' for move_original", dest->format);
    }
    if (src->bytes.len == 0) {
        *encode = true;
        return 0;
    }
    const char *cur = img_source_magick(&src->probe);
    *encode = dest->format[0] != '\0' && (cur == NULL || strcmp(cur, magick) != 0);
    return 0;
}

/* Keeps the job's source (`src`, loaded from `from`) as it came, or converted to the format
 * `dest` names. */
static int move_original(const struct job_save *dest, json_object *from, struct src_image *src,
                         const struct proc_opts *o, const struct proc_sink *sink, struct err *e)
{
    bool encode = false;
    if (move_needs_encoding(dest, src, &encode, e) < 0) {
        return -1;
    }
    if (!encode) {
        return sink->move(sink->user, dest, src->bytes.data, src->bytes.len,
                          img_content_type(img_source_magick(&src->probe)), e);
    }
    struct job_save as = *dest;
    if (as.format[0] == '\0') {
        snprintf(as.format, sizeof as.format, "png");
    }
    if (src_decode(src, NULL, e) < 0) { /* a converted copy is the whole image */
        return src_blame(from, src, e);
    }
    MagickWand *copy = CloneMagickWand(src->wand);
    if (copy == NULL) {
        return err_set(e, "out of memory");
    }
    struct img_output out;
    int rc = img_encode(copy, &as, o->default_quality, o->max_output_bytes, &out, e);
    DestroyMagickWand(copy);
    if (rc == 0) {
        rc = sink->move(sink->user, &as, out.blob, out.len, out.content_type, e);
    }
    img_output_finish(&out);
    return rc;
}

int proc_pre_process(const struct job *j, const struct src_loader *l, struct src_refs *refs,
                     const struct proc_opts *o, const struct proc_sink *sink,
                     struct src_image *main_src, struct err *e)
{
    memset(main_src, 0, sizeof *main_src);
    buf_init(&main_src->bytes, 0);
    for (size_t i = 0; i < j->n_pre; i++) {
        const struct job_pre *step = &j->pre[i];
        if (step->job != NULL) {
            if (run_pre_job(j, step->job, l, refs, o, sink, e) < 0) {
                return -1;
            }
            continue;
        }
        if (main_src->wand == NULL && src_open(l, j->src, main_src, e) < 0) {
            return src_blame(j->src, main_src, e);
        }
        if (move_original(step->move, j->src, main_src, o, sink, e) < 0) {
            return err_wrap(e, "move_original");
        }
    }
    return 0;
}
