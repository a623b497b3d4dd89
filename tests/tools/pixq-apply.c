/* pixq-apply: runs a job's function tree on a local file, with the worker's own code.
 *
 *   pixq-apply [--data DIR] JOB.json SRC_IMAGE_FILE OUTDIR
 *
 * The job goes through job_parse(), src_open() and proc_run() with the worker's settings (its
 * defaults, and the PIXQ_* environment variables: PIXQ_SHRINK_ON_LOAD=0 decodes every source in
 * full, PIXQ_LOG_LEVEL=debug logs the decoding), exactly as pixq-worker runs it, but nothing
 * touches the network: SRC_IMAGE_FILE replaces the job's `src` ("-" keeps the job's own src, e.g. a
 * canvas), and sources that functions or pre_process jobs load are read from files: "file:NAME" is
 * tests/data/corpus/NAME or tests/data/images/NAME (DIR is tests/data); http(s) and s3 sources
 * are refused. pre_process runs as in the worker. Each output is written to
 * OUTDIR/<n>-<image_identifier>.<ext> (n counts files from 0 in the order they are made:
 * pre_process outputs that have an s3_destination and move_original copies first, then the
 * main job's saves) and one JSON line is printed:
 *   {"original_meta": {...}, "decoded": {"width", "height"},
 *    "outputs": [{"image_identifier", "file", "width", "height"}]}
 * ("decoded": the size the main source was decoded at, smaller than original_meta's with
 * shrink-on-load; width and height are 0 for move_original copies, written as they are)
 * or {"error": "Image processing failed. ..."} with exit status 1. Bad usage exits 2.
 *
 *   pixq-apply [--data DIR] --batch
 *
 * runs one job after another in the same process, as a worker does: each line of stdin is
 * JOB.json, SRC_IMAGE_FILE and OUTDIR separated by tabs, and each job prints its JSON line (the
 * same line as above) as soon as it is done. Exits 0 at the end of stdin, 2 on a line that is
 * not three fields. The settings are read once, at start. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cfg.h"
#include "err.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "process.h"
#include "source.h"

#ifndef PIXQ_TEST_DATA
#define PIXQ_TEST_DATA "tests/data"
#endif

#define MAX_FILE_BYTES (256L * 1024 * 1024)        /* largest job or image file read */
#define MAIN_SRC       "pixq-apply:SRC_IMAGE_FILE" /* the job's src, replaced by the file given */

struct apply {
    const char *data_dir;
    const char *src_file; /* "-": the job's own src */
    const char *out_dir;
    const char *job_file;
    struct cfg cfg;
    struct src_loader loader;
    struct proc_opts opts;
    json_object *outputs; /* the "outputs" array printed */
    size_t n_written;
    long decoded_width, decoded_height;
};

static int read_file(const char *path, struct buf *out, struct err *e)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return err_set(e, "cannot open %.300s", path);
    }
    buf_reset(out);
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > (size_t)MAX_FILE_BYTES || buf_append(out, chunk, n) < 0) {
            rc = err_set(e, "%.300s is too large", path);
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = err_set(e, "cannot read %.300s", path);
    }
    fclose(f);
    return rc;
}

/* src_fetch_fn: "file:NAME" from the test data; everything else is refused. */
static int fetch_file(void *user, json_object *src, struct buf *out, struct err *e)
{
    const struct apply *a = user;
    const char *s = json_object_is_type(src, json_type_string) ? json_object_get_string(src) : "";
    if (strcmp(s, MAIN_SRC) == 0) {
        return read_file(a->src_file, out, e);
    }
    if (strncmp(s, "file:", 5) != 0) {
        return err_set(e, "Failed to download %.300s: pixq-apply reads only file:NAME sources",
                       json_object_get_string(src));
    }
    const char *name = s + 5;
    if (name[0] == '\0' || strchr(name, '/') != NULL || strstr(name, "..") != NULL) {
        return err_set(e, "Failed to download %.300s: not a file name", s);
    }
    static const char *const dirs[] = {"corpus", "images"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/%s", a->data_dir, dirs[i], name);
        FILE *f = fopen(path, "rb");
        if (f != NULL) {
            fclose(f);
            return read_file(path, out, e);
        }
    }
    return err_set(e, "Failed to download %.300s: no such file in %s/corpus or images", s,
                   a->data_dir);
}

static int write_file(const char *path, const void *data, size_t len, struct err *e)
{
    FILE *f = fopen(path, "wb");
    bool ok = f != NULL && fwrite(data, 1, len, f) == len;
    if (f != NULL && fclose(f) != 0) {
        ok = false;
    }
    return ok ? 0 : err_set(e, "cannot write %s", path);
}

/* Records one written file in a->outputs. */
static void add_output(struct apply *a, const char *identifier, const char *path, long width,
                       long height)
{
    json_object *item = json_object_new_object();
    json_object_object_add(item, "image_identifier", json_object_new_string(identifier));
    json_object_object_add(item, "file", json_object_new_string(path));
    json_object_object_add(item, "width", json_object_new_int64(width));
    json_object_object_add(item, "height", json_object_new_int64(height));
    json_object_array_add(a->outputs, item);
    a->n_written++;
}

/* Writes one output and records it in a->outputs. */
static int write_output(struct apply *a, const struct proc_output *o, struct err *e)
{
    if (strchr(o->save->image_identifier, '/') != NULL) {
        return err_set(e, "image_identifier '%s' cannot be a file name", o->save->image_identifier);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%zu-%s.%s", a->out_dir, a->n_written, o->save->image_identifier,
             o->save->format);
    if (write_file(path, o->img.blob, o->img.len, e) < 0) {
        return -1;
    }
    add_output(a, o->save->image_identifier, path, o->img.width, o->img.height);
    return 0;
}

static void print_json(json_object *o)
{
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
}

static int print_error(const char *msg)
{
    char text[ERR_MSG_MAX + 32];
    snprintf(text, sizeof text, "Image processing failed. %s", msg);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", json_object_new_string(text));
    print_json(o);
    json_object_put(o);
    return 1;
}

/* proc_sink.output: a pre_process job's output with a destination is written like any other. */
static int sink_output(void *user, const struct job *pre, const struct proc_output *o,
                       struct err *e)
{
    return write_output(user, o, e);
}

/* proc_sink.move: move_original writes the bytes as <n>-move_original.<ext>. */
static int sink_move(void *user, const struct job_save *dest, const void *data, size_t len,
                     const char *content_type, struct err *e)
{
    struct apply *a = user;
    const char *slash = strrchr(content_type, '/');
    char path[4096];
    snprintf(path, sizeof path, "%s/%zu-move_original.%s", a->out_dir, a->n_written,
             dest->format[0] != '\0' ? dest->format
             : slash != NULL         ? slash + 1
                                     : "bin");
    if (write_file(path, data, len, e) < 0) {
        return -1;
    }
    add_output(a, "move_original", path, 0, 0);
    return 0;
}

/* Runs the job as the worker does (pre_process, source, tree); returns 0 with every output
 * written, or -1 with the reason. */
static int apply_job(struct apply *a, const struct job *j, json_object **meta, struct err *e)
{
    struct src_refs *refs = src_refs_create();
    a->loader.refs = refs;
    const struct proc_sink sink = {sink_output, sink_move, a};
    struct src_image im;
    struct proc_result pr = {0};
    int rc = proc_check(j, e);
    if (rc == 0) {
        rc = proc_pre_process(j, &a->loader, refs, &a->opts, &sink, &im, e);
    } else {
        memset(&im, 0, sizeof im);
    }
    if (rc == 0 && im.wand == NULL) {
        src_image_finish(&im);
        rc = src_open(&a->loader, j->src, &im, e);
    }
    if (rc == 0) {
        rc = proc_run(j, &im, &a->opts, &pr, e);
    }
    for (size_t i = 0; rc == 0 && i < pr.n_outputs; i++) {
        rc = write_output(a, &pr.outputs[i], e);
    }
    a->decoded_width = pr.decoded_width;
    a->decoded_height = pr.decoded_height;
    if (rc == 0) {
        *meta = json_object_get(pr.original_meta);
    }
    proc_result_finish(&pr);
    src_image_finish(&im);
    src_refs_destroy(refs);
    return rc;
}

/* The job file as JSON text, its src replaced by MAIN_SRC unless SRC_IMAGE_FILE is "-". */
static int job_text(struct apply *a, struct buf *text, struct err *e)
{
    if (read_file(a->job_file, text, e) < 0) {
        return -1;
    }
    if (strcmp(a->src_file, "-") == 0) {
        return 0;
    }
    json_object *doc = json_tokener_parse(text->data != NULL ? text->data : "");
    if (doc == NULL || !json_object_is_type(doc, json_type_object)) {
        json_object_put(doc);
        return 0; /* job_parse() reports it */
    }
    json_object_object_add(doc, "src", json_object_new_string(MAIN_SRC));
    buf_reset(text);
    int rc = buf_puts(text, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN));
    json_object_put(doc);
    return rc < 0 ? err_set(e, "out of memory") : 0;
}

static struct job *load_job(struct apply *a, struct err *e)
{
    struct buf text;
    buf_init(&text, 0);
    struct job *j = NULL;
    if (job_text(a, &text, e) == 0) {
        const struct job_limits lim = {(size_t)a->cfg.max_job_bytes, (int)a->cfg.max_json_depth,
                                       (size_t)a->cfg.max_functions, 0, 0};
        j = job_parse(text.data != NULL ? text.data : "", text.len, &lim, e);
    }
    buf_finish(&text);
    if (j != NULL && j->error[0] != '\0') {
        err_set(e, "%s", j->error);
        job_destroy(j);
        return NULL;
    }
    return j;
}

/* Returns 1 for --batch, 0 for one job (its files in a), -1 after printing the usage. */
static int parse_args(struct apply *a, int argc, char **argv)
{
    int i = 1;
    a->data_dir = PIXQ_TEST_DATA;
    if (argc > 2 && strcmp(argv[1], "--data") == 0) {
        a->data_dir = argv[2];
        i = 3;
    }
    if (argc - i == 1 && strcmp(argv[i], "--batch") == 0) {
        return 1;
    }
    if (argc - i != 3) {
        fprintf(stderr, "usage: pixq-apply [--data DIR] JOB.json SRC_IMAGE_FILE|- OUTDIR\n"
                        "       pixq-apply [--data DIR] --batch  (JOB\tSRC\tOUTDIR lines)\n");
        return -1;
    }
    a->job_file = argv[i];
    a->src_file = argv[i + 1];
    a->out_dir = argv[i + 2];
    return 0;
}

static const char *env(const char *name)
{
    return getenv(name);
}

/* The worker's settings (defaults and PIXQ_* variables) and ImageMagick behind the image guard.
 * Returns 0, or -1 with the reason printed. */
static int setup(struct apply *a)
{
    struct err e = {{0}};
    struct img_config ic;
    cfg_defaults(&a->cfg);
    if (cfg_load_env(&a->cfg, env, &e) < 0 || img_config_from(&a->cfg, &ic, &e) < 0 ||
        img_start(&ic, &e) < 0) {
        fprintf(stderr, "pixq-apply: %s\n", e.msg);
        return -1;
    }
    log_threshold = (enum log_level)a->cfg.log_level;
    a->loader = (struct src_loader){
        .fetch = fetch_file,
        .fetch_user = a,
        .max_pixels = a->cfg.max_pixels,
    };
    a->opts = (struct proc_opts){
        .max_pixels = a->cfg.max_pixels,
        .max_profile_bytes = a->cfg.max_profile_bytes,
        .default_quality = a->cfg.default_quality,
        .max_output_bytes = (size_t)a->cfg.max_output_bytes,
        .max_job_output_bytes = (size_t)a->cfg.max_job_output_bytes,
        .load = src_load,
        .fetch = src_fetch,
        .load_user = &a->loader,
    };
    return 0;
}

static json_object *size_object(long width, long height)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "width", json_object_new_int64(width));
    json_object_object_add(o, "height", json_object_new_int64(height));
    return o;
}

/* Runs the job a names and prints its line; returns 0, or 1 when it failed. */
static int run_one(struct apply *a)
{
    struct err e = {{0}};
    json_object *meta = NULL;
    a->outputs = json_object_new_array();
    a->n_written = 0;
    a->decoded_width = a->decoded_height = 0;
    struct job *j = load_job(a, &e);
    int status = 0;
    if (j == NULL || apply_job(a, j, &meta, &e) < 0) {
        status = print_error(e.msg);
    } else {
        json_object *doc = json_object_new_object();
        json_object_object_add(doc, "original_meta", meta);
        json_object_object_add(doc, "decoded", size_object(a->decoded_width, a->decoded_height));
        json_object_object_add(doc, "outputs", json_object_get(a->outputs));
        print_json(doc);
        json_object_put(doc);
    }
    fflush(stdout);
    json_object_put(a->outputs);
    a->outputs = NULL;
    job_destroy(j);
    return status;
}

/* --batch: one job a line of stdin, JOB\tSRC\tOUTDIR. Returns 0 at the end of stdin, 2 on a
 * line that is not three fields. */
static int run_batch(struct apply *a)
{
    char line[3 * 4096];
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "pixq-apply --batch: a line longer than %zu bytes\n", len);
            return 2;
        }
        line[strcspn(line, "\r\n")] = '\0';
        char *src = strchr(line, '\t');
        char *out = src != NULL ? strchr(src + 1, '\t') : NULL;
        if (out == NULL || strchr(out + 1, '\t') != NULL) {
            fprintf(stderr, "pixq-apply --batch: a line is three tab-separated fields: %.200s\n",
                    line);
            return 2;
        }
        *src++ = '\0';
        *out++ = '\0';
        a->job_file = line;
        a->src_file = src;
        a->out_dir = out;
        run_one(a);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct apply a;
    int mode = parse_args(&a, argc, argv);
    if (mode < 0 || setup(&a) < 0) {
        return 2;
    }
    int status = mode == 1 ? run_batch(&a) : run_one(&a);
    img_shutdown();
    return status;
}
