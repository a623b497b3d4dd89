/* thumbs_bench: pixq-worker's processing path timed in a loop, steady state, without network.
 *
 *   thumbs_bench [--runs N] [--warmup N] SIZE IMAGE...
 *
 * For each IMAGE the job
 *   {"src": ..., "functions": [{"name": "resize_to_fit", "params": {"width": SIZE,
 *    "height": SIZE}, "save": {"image_identifier": "thumb"}}]}
 * (a JPEG at the default quality, metadata stripped, as the save block says) runs `warmup` times
 * untimed, then `runs` times timed, each time from the encoded bytes as pixq-worker runs a
 * downloaded source: src_open_bytes() (the image guard), proc_run() (decoding with
 * shrink-on-load, the tree, the encoding), then everything released. The settings come from the
 * PIXQ_* environment, as the worker's (PIXQ_SHRINK_ON_LOAD=0: full decodes). One JSON line per
 * image:
 *   {"image", "size", "runs", "median_ms", "min_ms", "mean_ms", "decoded": [w, h],
 *    "output": [w, h], "bytes"}
 * or {"image", "error"} (exit status 1). Bad usage exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "cfg.h"
#include "err.h"
#include "image.h"
#include "job.h"
#include "log.h"
#include "process.h"
#include "source.h"

#define MAX_RUNS      10000
#define MAX_FILE_SIZE (256L * 1024 * 1024)

struct bench {
    struct cfg cfg;
    struct src_loader loader;
    struct proc_opts opts;
    long runs, warmup, size;
};

struct run_out {
    double ms;
    long decoded_w, decoded_h, out_w, out_h;
    size_t bytes;
};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int read_all(const char *path, struct buf *out, struct err *e)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return err_set(e, "cannot open %.300s", path);
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > (size_t)MAX_FILE_SIZE || buf_append(out, chunk, n) < 0) {
            rc = err_set(e, "%.300s is too large", path);
        }
    }
    fclose(f);
    return rc;
}

static struct job *make_job(long size, struct err *e)
{
    char text[512];
    snprintf(text, sizeof text,
             "{\"src\": \"bench\", \"functions\": [{\"name\": \"resize_to_fit\", \"params\": "
             "{\"width\": %ld, \"height\": %ld}, \"save\": {\"image_identifier\": \"thumb\"}}]}",
             size, size);
    const struct job_limits lim = {1 << 20, 32, 100, 0, 0};
    struct job *j = job_parse(text, strlen(text), &lim, e);
    if (j != NULL && j->error[0] != '\0') {
        err_set(e, "%s", j->error);
        job_destroy(j);
        return NULL;
    }
    if (j != NULL && proc_check(j, e) < 0) { /* as the worker, once before its runs */
        job_destroy(j);
        return NULL;
    }
    return j;
}

/* One run of the worker's path on a copy of `data` (the copy is not timed). */
static int run_once(struct bench *b, const struct job *j, const struct buf *data, struct run_out *r,
                    struct err *e)
{
    struct buf bytes;
    buf_init(&bytes, 0);
    if (buf_append(&bytes, data->data, data->len) < 0) {
        return err_set(e, "out of memory");
    }
    struct src_image im;
    struct proc_result pr = {0};
    double t0 = now_ms();
    int rc = src_open_bytes(&b->loader, &bytes, &im, e);
    if (rc == 0) {
        rc = proc_run(j, &im, &b->opts, &pr, e);
    }
    if (rc == 0 && pr.n_outputs != 1) {
        rc = err_set(e, "%zu outputs, not 1", pr.n_outputs);
    }
    if (rc == 0) {
        *r = (struct run_out){0,
                              pr.decoded_width,
                              pr.decoded_height,
                              pr.outputs[0].img.width,
                              pr.outputs[0].img.height,
                              pr.outputs[0].img.len};
    }
    proc_result_finish(&pr);
    src_image_finish(&im);
    r->ms = now_ms() - t0;
    buf_finish(&bytes);
    return rc;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_figures(const char *image, long size, double *ms, long n,
                          const struct run_out *last)
{
    double sum = 0;
    for (long i = 0; i < n; i++) {
        sum += ms[i];
    }
    qsort(ms, (size_t)n, sizeof ms[0], by_value);
    double median = n % 2 == 1 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "image", json_object_new_string(image));
    json_object_object_add(o, "size", json_object_new_int64(size));
    json_object_object_add(o, "runs", json_object_new_int64(n));
    json_object_object_add(o, "median_ms", json_object_new_double(median));
    json_object_object_add(o, "min_ms", json_object_new_double(ms[0]));
    json_object_object_add(o, "mean_ms", json_object_new_double(sum / (double)n));
    json_object *d = json_object_new_array(), *out = json_object_new_array();
    json_object_array_add(d, json_object_new_int64(last->decoded_w));
    json_object_array_add(d, json_object_new_int64(last->decoded_h));
    json_object_array_add(out, json_object_new_int64(last->out_w));
    json_object_array_add(out, json_object_new_int64(last->out_h));
    json_object_object_add(o, "decoded", d);
    json_object_object_add(o, "output", out);
    json_object_object_add(o, "bytes", json_object_new_int64((int64_t)last->bytes));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
}

/* Warm-up runs, then timed runs of one image; prints its line. Returns 0 or -1. */
static int bench_image(struct bench *b, const struct job *j, const char *path, struct err *e)
{
    struct buf data;
    buf_init(&data, 0);
    double *ms = calloc((size_t)b->runs, sizeof *ms);
    struct run_out r = {0};
    int rc = ms == NULL ? err_set(e, "out of memory") : read_all(path, &data, e);
    for (long i = 0; rc == 0 && i < b->warmup; i++) {
        rc = run_once(b, j, &data, &r, e);
    }
    for (long i = 0; rc == 0 && i < b->runs; i++) {
        rc = run_once(b, j, &data, &r, e);
        ms[i] = r.ms;
    }
    const char *slash = strrchr(path, '/');
    if (rc == 0) {
        print_figures(slash != NULL ? slash + 1 : path, b->size, ms, b->runs, &r);
    }
    free(ms);
    buf_finish(&data);
    return rc;
}

static const char *env(const char *name)
{
    return getenv(name);
}

static int setup(struct bench *b, struct err *e)
{
    struct img_config ic;
    cfg_defaults(&b->cfg);
    if (cfg_load_env(&b->cfg, env, e) < 0 || img_config_from(&b->cfg, &ic, e) < 0 ||
        img_start(&ic, e) < 0) {
        return -1;
    }
    log_threshold = (enum log_level)b->cfg.log_level;
    b->loader = (struct src_loader){.max_pixels = b->cfg.max_pixels};
    b->opts = (struct proc_opts){
        .max_pixels = b->cfg.max_pixels,
        .default_quality = b->cfg.default_quality,
        .max_output_bytes = (size_t)b->cfg.max_output_bytes,
        .max_job_output_bytes = (size_t)b->cfg.max_job_output_bytes,
    };
    return 0;
}

/* --runs N, --warmup N, SIZE; returns the index of the first image, or -1. */
static int parse_args(struct bench *b, int argc, char **argv)
{
    int i = 1;
    b->runs = 10;
    b->warmup = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        long v = strtol(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--runs") == 0 && v >= 1 && v <= MAX_RUNS) {
            b->runs = v;
        } else if (strcmp(argv[i], "--warmup") == 0 && v >= 0 && v <= MAX_RUNS) {
            b->warmup = v;
        } else {
            return -1;
        }
    }
    if (argc - i < 2) {
        return -1;
    }
    b->size = strtol(argv[i], NULL, 10);
    return b->size >= 1 && b->size <= 65535 ? i + 1 : -1;
}

int main(int argc, char **argv)
{
    static struct bench b;
    int first = parse_args(&b, argc, argv);
    if (first < 0) {
        fprintf(stderr, "usage: thumbs_bench [--runs N] [--warmup N] SIZE IMAGE...\n");
        return 2;
    }
    struct err e = {{0}};
    struct job *j = NULL;
    int status = 0;
    if (setup(&b, &e) < 0 || (j = make_job(b.size, &e)) == NULL) {
        fprintf(stderr, "thumbs_bench: %s\n", e.msg);
        return 1;
    }
    for (int i = first; i < argc; i++) {
        if (bench_image(&b, j, argv[i], &e) < 0) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "image", json_object_new_string(argv[i]));
            json_object_object_add(o, "error", json_object_new_string(e.msg));
            printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
            json_object_put(o);
            status = 1;
        }
    }
    job_destroy(j);
    img_shutdown();
    return status;
}
