#include "process.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"

struct walk {
    const struct proc_opts *opts;
    struct op_ctx ctx;
    struct proc_result *out;
    size_t cap;
};

static int check_tree(const struct job_fn *fns, size_t n, struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (op_find(fns[i].name) == NULL) {
            return err_set(e, "Unknown function named '%s'", fns[i].name);
        }
        if (check_tree(fns[i].children, fns[i].n_children, e) < 0) {
            return -1;
        }
    }
    return 0;
}

int proc_check(const struct job *j, struct err *e)
{
    return check_tree(j->functions, j->n_functions, e);
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
    MagickWand *copy = CloneMagickWand(w); /* encoding strips metadata: keep w intact */
    struct proc_output *o = &wk->out->outputs[wk->out->n_outputs];
    o->save = save;
    int rc =
        img_encode(copy, save, wk->opts->default_quality, wk->opts->max_output_bytes, &o->img, e);
    DestroyMagickWand(copy);
    if (rc == 0) {
        wk->out->n_outputs++;
    }
    return rc;
}

static int walk_tree(struct walk *wk, MagickWand *parent, const struct job_fn *fns, size_t n,
                     struct err *e);

static int run_fn(struct walk *wk, MagickWand *parent, const struct job_fn *f, struct err *e)
{
    MagickWand *w = CloneMagickWand(parent);
    if (w == NULL) {
        return err_set(e, "out of memory");
    }
    int rc = op_find(f->name)->run(w, f->params, &wk->ctx, e);
    if (rc == 0 && f->save != NULL) {
        rc = save_output(wk, w, f->save, e);
    }
    if (rc == 0) {
        rc = walk_tree(wk, w, f->children, f->n_children, e);
    }
    DestroyMagickWand(w);
    return rc;
}

static int walk_tree(struct walk *wk, MagickWand *parent, const struct job_fn *fns, size_t n,
                     struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (run_fn(wk, parent, &fns[i], e) < 0) {
            return -1;
        }
    }
    return 0;
}

int proc_run(const struct job *j, const void *src, size_t len, const struct proc_opts *o,
             struct proc_result *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    if (proc_check(j, e) < 0) {
        return -1;
    }
    MagickWand *w = img_decode(src, len, o->max_pixels, &out->orig_width, &out->orig_height, e);
    if (w == NULL) {
        return -1;
    }
    int rc = j->suppress_auto_orient ? 0 : img_auto_orient(w, e);
    struct walk wk = {
        .opts = o,
        .ctx = {.max_pixels = o->max_pixels, .load = o->load, .load_user = o->load_user},
        .out = out,
    };
    if (rc == 0) {
        rc = walk_tree(&wk, w, j->functions, j->n_functions, e);
    }
    DestroyMagickWand(w);
    return rc;
}

void proc_result_finish(struct proc_result *r)
{
    for (size_t i = 0; i < r->n_outputs; i++) {
        img_output_finish(&r->outputs[i].img);
    }
    free(r->outputs);
    r->outputs = NULL;
    r->n_outputs = 0;
}
