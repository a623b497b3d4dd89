#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "metrics.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#include "clock.h"
#include "version.h"

#define STATUS_SLOTS 602 /* 0: no answer, 100-599: the status, 601: anything else */
#define STATUS_OTHER 601
#define MAX_BUCKETS  16 /* finite buckets of one histogram (+Inf comes on top) */

/* A pixq_enqueued_at outside these is not a time pixq submit wrote (seconds for ms, a mistake):
 * not a wait. Any wait after 2000 counts, a backlog days old after an outage too (in +Inf); a
 * stamp a little ahead of this host's clock is the skew of two hosts' clocks (observed as 0). */
#define MIN_STAMP_MS       946684800000LL /* 2000-01-01T00:00:00Z */
#define MAX_STAMP_AHEAD_MS 300000LL       /* 5 minutes */

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "shared counters need lock-free 64-bit atomics");

enum histogram_id { HIST_PROCESSING, HIST_UPLOAD, HIST_QUEUE_WAIT, HIST_COUNT };

struct histogram {
    atomic_ullong counts[MAX_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
    atomic_ullong sum_us;
};

/* The shared region. Every field is updated with relaxed atomics: each is a counter on its own,
 * and a scrape that sees one a moment before another is fine. */
struct shared {
    atomic_ullong jobs[METRICS_JOB_COUNT];
    atomic_ullong outputs[METRICS_OUTPUT_COUNT];
    atomic_ullong postbacks[METRICS_POSTBACK_COUNT];
    atomic_ullong s3[METRICS_S3_COUNT][STATUS_SLOTS];
    atomic_ullong waits[METRICS_WAIT_COUNT];
    atomic_ullong wait_us[METRICS_WAIT_COUNT];
    struct histogram hist[HIST_COUNT];
    atomic_ullong leases[METRICS_LEASE_COUNT];
    atomic_llong lease_held_ms[METRICS_SLOTS]; /* clock_boot_ms, per process slot; 0: none */
    atomic_llong processes;
    atomic_ullong restarts;
    atomic_llong start_ms; /* unix ms */
};

static struct shared *shm; /* NULL: metrics off */
static long my_slot;       /* this process's slot in lease_held_ms */

/* Bucket upper bounds in seconds, ascending, ended by 0. */
static const double bounds[HIST_COUNT][MAX_BUCKETS + 1] = {
    [HIST_PROCESSING] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 0},
    [HIST_UPLOAD] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 0},
    [HIST_QUEUE_WAIT] = {0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 0},
};

static const char *const job_names[METRICS_JOB_COUNT] = {
    "succeeded", "failed", "retried", "parked", "dead", "lease_lost",
};
static const char *const output_names[METRICS_OUTPUT_COUNT] = {"uploaded", "failed", "parked"};
static const char *const postback_names[METRICS_POSTBACK_COUNT] = {"delivered", "retried",
                                                                   "given_up", "refused"};
static const char *const lease_names[METRICS_LEASE_COUNT] = {"renewed", "lost", "failed"};
static const char *const s3_names[METRICS_S3_COUNT] = {"PUT", "GET", "HEAD"};
static const char *const wait_names[METRICS_WAIT_COUNT] = {"local", "park"};

int metrics_init(struct err *e)
{
    if (shm != NULL) {
        return 0;
    }
    void *p = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return err_set(e, "cannot map the shared metrics region");
    }
    shm = p; /* zero-filled by the kernel: every counter starts at 0 */
    atomic_store(&shm->start_ms, clock_wall_ms());
    atomic_store(&shm->processes, 1);
    return 0;
}

double metrics_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool metrics_enabled(void)
{
    return shm != NULL;
}

static void add(atomic_ullong *c, unsigned long long n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void metrics_count_job(enum metrics_job outcome)
{
    if (shm != NULL && outcome < METRICS_JOB_COUNT) {
        add(&shm->jobs[outcome], 1);
    }
}

void metrics_count_output(enum metrics_output outcome)
{
    if (shm != NULL && outcome < METRICS_OUTPUT_COUNT) {
        add(&shm->outputs[outcome], 1);
    }
}

void metrics_count_postback(enum metrics_postback outcome)
{
    if (shm != NULL && outcome < METRICS_POSTBACK_COUNT) {
        add(&shm->postbacks[outcome], 1);
    }
}

void metrics_count_s3(enum metrics_s3 method, long status)
{
    if (shm == NULL || method >= METRICS_S3_COUNT) {
        return;
    }
    long slot = status == 0 ? 0 : status >= 100 && status <= 599 ? status : STATUS_OTHER;
    add(&shm->s3[method][slot], 1);
}

static void observe(enum histogram_id h, double seconds)
{
    if (shm == NULL) {
        return;
    }
    seconds = seconds < 0 ? 0 : seconds;
    int b = 0;
    while (bounds[h][b] != 0 && seconds > bounds[h][b]) {
        b++;
    }
    add(&shm->hist[h].counts[b], 1);
    add(&shm->hist[h].sum_us, (unsigned long long)(seconds * 1e6 + 0.5));
}

void metrics_observe_upload(double seconds, long status)
{
    observe(HIST_UPLOAD, seconds);
    metrics_count_s3(METRICS_S3_PUT, status);
}

void metrics_observe_processing(double seconds)
{
    observe(HIST_PROCESSING, seconds);
}

void metrics_job_reserved(const struct job *j, long run, long started_ms)
{
    json_object *at = NULL;
    if (shm == NULL || j == NULL || run != 1 ||
        !json_object_object_get_ex(j->root, "pixq_enqueued_at", &at) ||
        !json_object_is_type(at, json_type_int)) {
        return;
    }
    long long at_ms = (long long)json_object_get_int64(at);
    if (at_ms >= MIN_STAMP_MS && at_ms <= (long long)started_ms + MAX_STAMP_AHEAD_MS) {
        observe(HIST_QUEUE_WAIT, (double)(started_ms - at_ms) / 1000.0); /* a little negative: 0 */
    }
}

void metrics_throttle_wait(enum metrics_wait kind, long ms)
{
    if (shm != NULL && kind < METRICS_WAIT_COUNT) {
        add(&shm->waits[kind], 1);
        add(&shm->wait_us[kind], (unsigned long long)(ms > 0 ? ms : 0) * 1000ULL);
    }
}

void metrics_count_lease(enum metrics_lease outcome)
{
    if (shm != NULL && outcome < METRICS_LEASE_COUNT) {
        add(&shm->leases[outcome], 1);
    }
}

void metrics_lease_held(long boot_ms)
{
    if (shm != NULL) {
        atomic_store(&shm->lease_held_ms[my_slot], boot_ms > 0 ? boot_ms : 1);
    }
}

void metrics_use_slot(long slot)
{
    if (slot >= 0 && slot < METRICS_SLOTS) {
        my_slot = slot;
    }
}

void metrics_clear_slot(long slot)
{
    if (shm != NULL && slot >= 0 && slot < METRICS_SLOTS) {
        atomic_store(&shm->lease_held_ms[slot], 0);
    }
}

void metrics_set_processes(long n)
{
    if (shm != NULL) {
        atomic_store(&shm->processes, n);
    }
}

void metrics_count_restart(void)
{
    if (shm != NULL) {
        add(&shm->restarts, 1);
    }
}

/* ---------------------------------------------------------------- rendering */

static unsigned long long get(atomic_ullong *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static int head(struct buf *out, const char *name, const char *type, const char *help)
{
    return buf_printf(out, "# HELP pixq_%s %s\n# TYPE pixq_%s %s\n", name, help, name, type);
}

/* A counter with its HELP and TYPE lines and one label whose values are all shown, zeros
 * included. */
static int labelled(struct buf *out, const char *name, const char *help, const char *label,
                    const char *const *names, atomic_ullong *values, int n, double scale)
{
    int rc = head(out, name, "counter", help);
    for (int i = 0; i < n && rc == 0; i++) {
        if (scale == 1) {
            rc = buf_printf(out, "pixq_%s{%s=\"%s\"} %llu\n", name, label, names[i],
                            get(&values[i]));
        } else {
            rc = buf_printf(out, "pixq_%s{%s=\"%s\"} %.6f\n", name, label, names[i],
                            (double)get(&values[i]) * scale);
        }
    }
    return rc;
}

static int render_s3(struct buf *out)
{
    int rc = head(out, "s3_responses_total", "counter",
                  "S3 answers by method and HTTP status (transport: no answer came).");
    for (int m = 0; m < METRICS_S3_COUNT && rc == 0; m++) {
        for (int s = 0; s < STATUS_SLOTS && rc == 0; s++) {
            unsigned long long v = get(&shm->s3[m][s]);
            char code[16];
            snprintf(code, sizeof code, "%d", s);
            if (v > 0) {
                rc = buf_printf(out, "pixq_s3_responses_total{method=\"%s\",code=\"%s\"} %llu\n",
                                s3_names[m],
                                s == 0              ? "transport"
                                : s == STATUS_OTHER ? "other"
                                                    : code,
                                v);
            }
        }
    }
    return rc;
}

/* Buckets are cumulative and the +Inf bucket is the count, from one reading of each. */
static int render_histogram(struct buf *out, enum histogram_id h, const char *name,
                            const char *help)
{
    int rc = head(out, name, "histogram", help);
    unsigned long long total = 0;
    int b = 0;
    for (; bounds[h][b] != 0 && rc == 0; b++) {
        total += get(&shm->hist[h].counts[b]);
        rc = buf_printf(out, "pixq_%s_bucket{le=\"%g\"} %llu\n", name, bounds[h][b], total);
    }
    total += get(&shm->hist[h].counts[b]);
    if (rc == 0) {
        rc = buf_printf(out,
                        "pixq_%s_bucket{le=\"+Inf\"} %llu\npixq_%s_sum %.6f\npixq_%s_count %llu\n",
                        name, total, name, (double)get(&shm->hist[h].sum_us) / 1e6, name, total);
    }
    return rc;
}

static int render_counters(struct buf *out)
{
    int rc = labelled(out, "jobs_total", "Jobs by how their run ended.", "outcome", job_names,
                      shm->jobs, METRICS_JOB_COUNT, 1);
    rc = rc ? rc
            : labelled(out, "outputs_total", "Outputs by how their upload ended.", "outcome",
                       output_names, shm->outputs, METRICS_OUTPUT_COUNT, 1);
    rc = rc ? rc
            : labelled(out, "postbacks_total",
                       "Postback attempts by how they ended (given_up and refused: never "
                       "delivered).",
                       "outcome", postback_names, shm->postbacks, METRICS_POSTBACK_COUNT, 1);
    rc = rc ? rc : render_s3(out);
    rc =
        rc ? rc
           : labelled(out, "throttle_waits_total",
                      "Uploads that waited for their bucket's rate limit, in the worker or parked.",
                      "kind", wait_names, shm->waits, METRICS_WAIT_COUNT, 1);
    rc = rc ? rc
            : labelled(out, "throttle_wait_seconds_total",
                       "Time uploads waited for their bucket's rate limit.", "kind", wait_names,
                       shm->wait_us, METRICS_WAIT_COUNT, 1e-6);
    return rc;
}

/* The lease gauge: from the process whose lease held longest ago; no sample before any held. */
static int render_lease(struct buf *out)
{
    int rc = labelled(out, "lease_renewals_total",
                      "Heartbeats in each queue by how they ended (lost: the worker's record was "
                      "gone, and it joined again; failed: Redis did not answer).",
                      "outcome", lease_names, shm->leases, METRICS_LEASE_COUNT, 1);
    rc = rc ? rc
            : head(out, "lease_age_seconds", "gauge",
                   "Longest time a live worker process has gone since its lease last surely held "
                   "(past PIXQ_LEASE_MS the fleet takes its job).");
    long now = clock_boot_ms(), oldest = 0;
    for (int i = 0; i < METRICS_SLOTS; i++) {
        long held = (long)atomic_load(&shm->lease_held_ms[i]);
        oldest = held != 0 && (oldest == 0 || held < oldest) ? held : oldest;
    }
    if (rc == 0 && oldest != 0) {
        rc = buf_printf(out, "pixq_lease_age_seconds %.3f\n",
                        (double)(now > oldest ? now - oldest : 0) / 1000.0);
    }
    return rc;
}

static int render_process(struct buf *out)
{
    int rc = head(out, "build_info", "gauge",
                  "1, labelled with the version and source revision of the pixq-worker serving "
                  "these metrics.");
    rc = rc ? rc
            : buf_printf(out, "pixq_build_info{version=\"%s\",revision=\"%s\"} 1\n", PIXQ_VERSION,
                         PIXQ_REVISION);
    rc = rc ? rc : head(out, "worker_processes", "gauge", "Live worker processes.");
    rc = rc ? rc : buf_printf(out, "pixq_worker_processes %lld\n", atomic_load(&shm->processes));
    rc = rc ? rc
            : head(out, "worker_restarts_total", "counter",
                   "Worker processes the supervisor started again after they died.");
    rc = rc ? rc : buf_printf(out, "pixq_worker_restarts_total %llu\n", get(&shm->restarts));
    rc = rc ? rc
            : head(out, "process_start_time_seconds", "gauge",
                   "Start time of the supervisor (or single worker) since the Unix epoch.");
    rc = rc ? rc
            : buf_printf(out, "pixq_process_start_time_seconds %.3f\n",
                         (double)atomic_load(&shm->start_ms) / 1000.0);
    return rc;
}

int metrics_render(struct buf *out)
{
    if (shm == NULL) {
        return 0;
    }
    int rc = render_counters(out);
    rc = rc ? rc
            : render_histogram(out, HIST_PROCESSING, "processing_seconds",
                               "Time to fetch, decode, process and encode one job.");
    rc = rc ? rc : render_histogram(out, HIST_UPLOAD, "upload_seconds", "Time of one S3 PUT.");
    rc = rc ? rc
            : render_histogram(out, HIST_QUEUE_WAIT, "queue_wait_seconds",
                               "Time from enqueue (pixq_enqueued_at) to the first reserve.");
    rc = rc ? rc : render_lease(out);
    rc = rc ? rc : render_process(out);
    return rc;
}
