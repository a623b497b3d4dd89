#include "opdoc.h"

#include <json-c/json.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "ops.h"
#include "utf8.h"

#define OPDOC_MAX_PARAMS 48   /* most parameters one function reads */
#define OPDOC_NAME_MAX   64   /* bytes of a parameter's name ("scale_to_fit.width"), with NUL */
#define OPDOC_TEXT_MAX   64   /* bytes of a type or a default, with NUL */
#define OPDOC_NOTE_MAX   128  /* bytes of a note, with NUL */
#define OPDOC_UNBOUNDED  1e15 /* a bound this far is shown as none */
#define OPDOC_RANGE_MAX  80   /* bytes of a range as text ("[min, max]"), with NUL */

struct param {
    char name[OPDOC_NAME_MAX];
    char type[OPDOC_TEXT_MAX];
    bool declared; /* `type` came from job_param_declare() */
    char note[OPDOC_NOTE_MAX];
    char alias[OPDOC_NAME_MAX]; /* another spelling the function reads */
    char def[OPDOC_TEXT_MAX];
    bool has_def;
    bool ranged;
    double min, max;
    bool image_range;
    bool required;
};

struct fn_doc {
    const char *fn;
    struct param params[OPDOC_MAX_PARAMS];
    size_t n;
    bool overflow;
};

/* ---------------------------------------------------------------- recording */

/* The parameter's name as the function's: a call naming another function ("composite
 * scale_to_fit", for the box inside scale_to_fit) reads a member of the parameter named last. */
static void full_name(const struct fn_doc *d, const struct job_param_desc *r, char *out, size_t cap)
{
    const char *space = strrchr(r->fn, ' ');
    if (strcmp(r->fn, d->fn) == 0 || space == NULL) {
        snprintf(out, cap, "%s", r->name);
        return;
    }
    snprintf(out, cap, "%s.%s", space + 1, r->name);
}

/* The parameter called `name` or spelt so (its alias), added if new. */
static struct param *find_or_add(struct fn_doc *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->params[i].name, name) == 0 || strcmp(d->params[i].alias, name) == 0) {
            return &d->params[i];
        }
    }
    if (d->n == OPDOC_MAX_PARAMS) {
        d->overflow = true;
        return NULL;
    }
    struct param *p = &d->params[d->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    return p;
}

/* Merges one report into the parameter: a declared type wins over the call's, the first call
 * with a default and range gives them, required sticks. */
static void on_param(void *user, const struct job_param_desc *r)
{
    struct fn_doc *d = user;
    char name[OPDOC_NAME_MAX];
    full_name(d, r, name, sizeof name);
    struct param *p = find_or_add(d, name);
    if (p == NULL) {
        return;
    }
    p->required |= r->required;
    if (r->note != NULL && p->note[0] == '\0') {
        snprintf(p->note, sizeof p->note, "%s", r->note);
    }
    if (r->alias != NULL && p->alias[0] == '\0') {
        snprintf(p->alias, sizeof p->alias, "%s", r->alias);
    }
    p->image_range |= r->image_range;
    if (r->type != NULL && (r->declared || (!p->declared && p->type[0] == '\0'))) {
        snprintf(p->type, sizeof p->type, "%s", r->type);
        p->declared = r->declared;
    }
    if (r->def != NULL && !p->has_def) {
        snprintf(p->def, sizeof p->def, "%s", r->def);
        p->has_def = true;
    }
    if (r->ranged && !p->ranged) {
        p->ranged = true;
        p->min = r->min;
        p->max = r->max;
    }
}

/* Runs `op` in check-only mode under the recorder, every parameter present, then none (the
 * two sides of `if (job_param_present(...))`). Returns 0, or -1 with the reason in `e`. */
static int record_op(const struct op *op, struct fn_doc *d, struct err *e)
{
    const struct op_ctx ctx = {0};
    json_object *empty = json_object_new_object();
    d->fn = op->name;
    d->n = 0;
    d->overflow = false;
    int rc = 0;
    for (int present = 1; present >= 0 && rc == 0; present--) {
        job_param_record(on_param, d, present == 1);
        rc = op->run(NULL, empty, &ctx, e);
        job_param_record(NULL, NULL, false);
    }
    json_object_put(empty);
    if (rc < 0) {
        return err_wrap(e, "function '%s' stopped while its parameters were recorded", op->name);
    }
    if (d->overflow) {
        return err_set(e, "function '%s' reads more than %d parameters", op->name,
                       OPDOC_MAX_PARAMS);
    }
    return 0;
}

/* ---------------------------------------------------------------- printing */

/* One bound as text: "inf", "-inf", or the number (whole for an integer). */
static void bound_text(const struct param *p, double v, char *out, size_t cap)
{
    if (fabs(v) >= OPDOC_UNBOUNDED) {
        snprintf(out, cap, "%s", v < 0 ? "-inf" : "inf");
    } else {
        /* whole bounds in full (1000000, not 1e+06), whatever the declared type */
        snprintf(out, cap, v == trunc(v) ? "%.0f" : "%.15g", v);
    }
}

/* The range as "[min, max]", "depends on the image", or "". */
static void range_text(const struct param *p, char *out, size_t cap)
{
    char lo[32], hi[32];
    if (p->image_range) {
        snprintf(out, cap, "depends on the image");
    } else if (p->ranged) {
        bound_text(p, p->min, lo, sizeof lo);
        bound_text(p, p->max, hi, sizeof hi);
        snprintf(out, cap, "[%s, %s]", lo, hi);
    } else {
        out[0] = '\0';
    }
}

/* The default as shown: "required", the default, or "none". */
static const char *shown_default(const struct param *p)
{
    return p->required ? "required" : p->has_def ? p->def : "none";
}

static void print_text(FILE *out, const struct fn_doc *d)
{
    fprintf(out, "%s\n", d->fn);
    if (d->n == 0) {
        fputs("  (no parameters)\n", out);
    }
    for (size_t i = 0; i < d->n; i++) {
        const struct param *p = &d->params[i];
        char range[OPDOC_RANGE_MAX],
            line[OPDOC_NAME_MAX * 2 + OPDOC_TEXT_MAX * 2 + OPDOC_NOTE_MAX + 128];
        range_text(p, range, sizeof range);
        snprintf(line, sizeof line, "  %-26s %-18s %-14s %s%s%s%s%s", p->name, p->type,
                 shown_default(p), range, p->alias[0] != '\0' ? "  (or " : "", p->alias,
                 p->alias[0] != '\0' ? ")" : "", p->note[0] != '\0' ? "  " : "");
        size_t n = strlen(line);
        while (n > 0 && line[n - 1] == ' ') { /* the columns' padding, when nothing follows */
            line[--n] = '\0';
        }
        fprintf(out, "%s%s%s\n", line, p->note[0] != '\0' ? "  " : "", p->note);
    }
}

static void print_markdown(FILE *out, const struct fn_doc *d)
{
    fprintf(out, "### %s\n\n", d->fn);
    if (d->n == 0) {
        fputs("No parameters.\n\n", out);
        return;
    }
    fputs("| Parameter | Type | Default | Range | Note |\n|---|---|---|---|---|\n", out);
    for (size_t i = 0; i < d->n; i++) {
        const struct param *p = &d->params[i];
        fprintf(out, "| `%s`", p->name);
        if (p->alias[0] != '\0') {
            fprintf(out, " (or `%s`)", p->alias);
        }
        fprintf(out, " | %s | %s%s%s | ", p->type, p->has_def && !p->required ? "`" : "",
                shown_default(p), p->has_def && !p->required ? "`" : "");
        char range[OPDOC_RANGE_MAX];
        range_text(p, range, sizeof range);
        fprintf(out, "%s | %s |\n", range, p->note);
    }
    fputc('\n', out);
}

static json_object *bound_json(const struct param *p, double v)
{
    if (fabs(v) >= OPDOC_UNBOUNDED) {
        return NULL;
    }
    return strcmp(p->type, "integer") == 0 ? json_object_new_int64((int64_t)v)
                                           : json_object_new_double(v);
}

static json_object *param_json(const struct param *p)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(p->name));
    json_object_object_add(o, "type", json_object_new_string(p->type));
    json_object_object_add(o, "required", json_object_new_boolean(p->required));
    json_object_object_add(o, "default",
                           p->has_def && !p->required ? json_object_new_string(p->def) : NULL);
    json_object_object_add(o, "min", p->ranged ? bound_json(p, p->min) : NULL);
    json_object_object_add(o, "max", p->ranged ? bound_json(p, p->max) : NULL);
    json_object_object_add(o, "range_depends_on_image", json_object_new_boolean(p->image_range));
    json_object_object_add(o, "alias",
                           p->alias[0] != '\0' ? json_object_new_string(p->alias) : NULL);
    json_object_object_add(o, "note", p->note[0] != '\0' ? json_object_new_string(p->note) : NULL);
    return o;
}

static json_object *fn_json(const struct fn_doc *d)
{
    json_object *o = json_object_new_object();
    json_object *params = json_object_new_array();
    for (size_t i = 0; i < d->n; i++) {
        json_object_array_add(params, param_json(&d->params[i]));
    }
    json_object_object_add(o, "function", json_object_new_string(d->fn));
    json_object_object_add(o, "parameters", params);
    return o;
}

int opdoc_print(FILE *out, enum opdoc_format format, struct err *e)
{
    static struct fn_doc d; /* large: not on the stack */
    json_object *all = format == OPDOC_JSON ? json_object_new_array() : NULL;
    int rc = 0;
    for (size_t i = 0; op_at(i) != NULL; i++) {
        rc = record_op(op_at(i), &d, e);
        if (rc < 0) {
            break;
        }
        if (format == OPDOC_JSON) {
            json_object_array_add(all, fn_json(&d));
        } else if (format == OPDOC_MARKDOWN) {
            print_markdown(out, &d);
        } else {
            print_text(out, &d);
        }
    }
    if (all != NULL && rc == 0) {
        fprintf(out, "%s\n",
                json_object_to_json_string_ext(all, JSON_C_TO_STRING_PRETTY |
                                                        JSON_C_TO_STRING_SPACED |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE));
    }
    json_object_put(all);
    return rc;
}

/* ---------------------------------------------------------------- unread parameters */

/* What one function reads: each parameter's name and alias, "object.member" for a member. */
struct reads {
    const char *fn;
    char (*names)[OPDOC_NAME_MAX];
    size_t n;
};

static struct reads *learned; /* one per operation, in op_at() order; NULL until learned */
static size_t n_learned;
static char unlearned[ERR_MSG_MAX]; /* why learning failed ("": it did not) */

/* Records `op` (as opdoc_print() does) into `r`. Returns 0, or -1 with the reason in `e`. */
static int learn_op(const struct op *op, struct reads *r, struct err *e)
{
    static struct fn_doc d; /* large: not on the stack */
    if (record_op(op, &d, e) < 0) {
        return -1;
    }
    r->fn = op->name;
    r->names = calloc(2 * d.n + 1, sizeof *r->names);
    if (r->names == NULL) {
        return err_set(e, "out of memory");
    }
    for (size_t i = 0; i < d.n; i++) {
        memcpy(r->names[r->n++], d.params[i].name, OPDOC_NAME_MAX);
        if (d.params[i].alias[0] != '\0') {
            memcpy(r->names[r->n++], d.params[i].alias, OPDOC_NAME_MAX);
        }
    }
    return 0;
}

static void forget(struct reads *all, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(all[i].names);
    }
    free(all);
}

/* Learns what every operation reads, once a process. Returns 0, or -1 with the reason in `e`
 * (the same each time: the operations do not change). */
static int learn(struct err *e)
{
    if (learned != NULL) {
        return 0;
    }
    if (unlearned[0] != '\0') {
        return err_set(e, "%s", unlearned);
    }
    size_t n = 0;
    while (op_at(n) != NULL) {
        n++;
    }
    struct reads *all = calloc(n, sizeof *all);
    if (all == NULL) {
        return err_set(e, "out of memory"); /* may go better next time */
    }
    for (size_t i = 0; i < n; i++) {
        if (learn_op(op_at(i), &all[i], e) < 0) {
            forget(all, n);
            snprintf(unlearned, sizeof unlearned, "%s", e->msg);
            return -1;
        }
    }
    learned = all;
    n_learned = n;
    return 0;
}

/* What function `fn` reads, or NULL for an unknown function. */
static const struct reads *reads_of(const char *fn)
{
    for (size_t i = 0; fn != NULL && i < n_learned; i++) {
        if (strcmp(learned[i].fn, fn) == 0) {
            return &learned[i];
        }
    }
    return NULL;
}

static bool reads_name(const struct reads *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether the function reads members of the object parameter `name` ("name.width"). */
static bool reads_members(const struct reads *r, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < r->n; i++) {
        if (strncmp(r->names[i], name, len) == 0 && r->names[i][len] == '.') {
            return true;
        }
    }
    return false;
}

/* The bytes of `s` shown in a list: at most OPDOC_UNREAD_PART, no UTF-8 character cut. */
static int part(const char *s)
{
    return (int)utf8_cut(s, OPDOC_UNREAD_PART);
}

/* Counts fn.name(.member) and adds it to the list while there is room. */
static void add_unread(struct opdoc_unread *u, const char *fn, const char *name, const char *member)
{
    u->count++;
    if (u->listed == OPDOC_UNREAD_NAMES || u->listed < u->count - 1) {
        return; /* the list is full, or stopped at a name that did not fit */
    }
    char one[3 * OPDOC_UNREAD_PART + 4];
    size_t at = strlen(u->text);
    int len = snprintf(one, sizeof one, "%s%.*s.%.*s%s%.*s", at > 0 ? "," : "", part(fn), fn,
                       part(name), name, member != NULL ? "." : "",
                       member != NULL ? part(member) : 0, member != NULL ? member : "");
    if (at + (size_t)len >= sizeof u->text) {
        return;
    }
    memcpy(u->text + at, one, (size_t)len + 1);
    u->listed++;
}

/* The members of the object parameter `name` that the function does not read. */
static void check_members(const struct reads *r, const char *name, json_object *obj,
                          struct opdoc_unread *u)
{
    json_object_object_foreach(obj, member, v)
    {
        (void)v;
        char full[OPDOC_NAME_MAX];
        int n = snprintf(full, sizeof full, "%s.%s", name, member);
        if ((size_t)n >= sizeof full || !reads_name(r, full)) {
            add_unread(u, r->fn, name, member);
        }
    }
}

static void check_params(const struct reads *r, json_object *params, struct opdoc_unread *u)
{
    json_object_object_foreach(params, name, v)
    {
        if (!reads_name(r, name)) {
            add_unread(u, r->fn, name, NULL);
        } else if (json_object_is_type(v, json_type_object) && reads_members(r, name)) {
            check_members(r, name, v, u);
        }
    }
}

static void check_fns(const struct job_fn *fns, size_t n, struct opdoc_unread *u)
{
    for (size_t i = 0; i < n; i++) {
        const struct reads *r = reads_of(fns[i].name);
        if (r != NULL && json_object_is_type(fns[i].params, json_type_object)) {
            check_params(r, fns[i].params, u);
        }
        check_fns(fns[i].children, fns[i].n_children, u);
    }
}

static void check_job(const struct job *j, struct opdoc_unread *u)
{
    for (size_t i = 0; i < j->n_pre; i++) {
        if (j->pre[i].job != NULL) {
            check_job(j->pre[i].job, u);
        }
    }
    check_fns(j->functions, j->n_functions, u);
}

int opdoc_unread(const struct job *j, struct opdoc_unread *out, struct err *e)
{
    if (learn(e) < 0) {
        return -1;
    }
    memset(out, 0, sizeof *out);
    check_job(j, out);
    return 0;
}
