/* The worker's shared counters (worker/metrics.c) and their text, metrics_render(). Each case
 * runs in a child process of its own that maps a fresh region with metrics_init(), so that it
 * sees only its own counts; its CHECK tallies come back through a pipe.
 *
 * - before metrics_init() every hook does nothing and the text is empty;
 * - a fresh region's whole text (HELP and TYPE lines, every label value at 0, the bucket
 *   bounds), the start time taken from the wall clock, a second metrics_init() keeping both;
 * - each label value counted on its own; enum values past the last change nothing;
 * - S3 answers by method and status: 0 "transport", 100..599 as themselves, anything else
 *   "other", only those seen;
 * - histograms: a value equal to a bound in that bucket (le), one microsecond more in the next,
 *   cumulative buckets, +Inf equal to the count, the sum in seconds rounded to microseconds,
 *   negative values as 0;
 * - the queue wait: only a first run's integer pixq_enqueued_at from 2000 on and at most 5
 *   minutes ahead of the start, a stamp ahead observed as 0;
 * - throttle waits, the processes gauge and restarts;
 * - heartbeats by outcome; the lease age from the slot whose lease held longest ago, none
 *   before one held, a slot emptied when its process ended, slots out of range ignored;
 * - counts from a forked child show in the parent;
 * - a text over the buffer's cap fails, and stops at the first line that did not fit. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "clock.h"
#include "job.h"
#include "metrics.h"
#include "version.h"

#define T_MS         1700000000000L /* a job's start (unix ms) in the queue wait cases */
#define MIN_STAMP_MS 946684800000L  /* 2000-01-01T00:00:00Z */
#define AHEAD_MS     300000L        /* how far ahead of the start a stamp may be */

/* The text of a fresh region, START for the start time's value. */
static const char zero_text[] =
    "# HELP pixq_jobs_total Jobs by how their run ended.\n"
    "# TYPE pixq_jobs_total counter\n"
    "pixq_jobs_total{outcome=\"succeeded\"} 0\n"
    "pixq_jobs_total{outcome=\"failed\"} 0\n"
    "pixq_jobs_total{outcome=\"retried\"} 0\n"
    "pixq_jobs_total{outcome=\"parked\"} 0\n"
    "pixq_jobs_total{outcome=\"dead\"} 0\n"
    "pixq_jobs_total{outcome=\"lease_lost\"} 0\n"
    "# HELP pixq_outputs_total Outputs by how their upload ended.\n"
    "# TYPE pixq_outputs_total counter\n"
    "pixq_outputs_total{outcome=\"uploaded\"} 0\n"
    "pixq_outputs_total{outcome=\"failed\"} 0\n"
    "pixq_outputs_total{outcome=\"parked\"} 0\n"
    "# HELP pixq_postbacks_total Postback attempts by how they ended (given_up and refused: "
    "never delivered).\n"
    "# TYPE pixq_postbacks_total counter\n"
    "pixq_postbacks_total{outcome=\"delivered\"} 0\n"
    "pixq_postbacks_total{outcome=\"retried\"} 0\n"
    "pixq_postbacks_total{outcome=\"given_up\"} 0\n"
    "pixq_postbacks_total{outcome=\"refused\"} 0\n"
    "# HELP pixq_s3_responses_total S3 answers by method and HTTP status (transport: no answer "
    "came).\n"
    "# TYPE pixq_s3_responses_total counter\n"
    "# HELP pixq_throttle_waits_total Uploads that waited for their bucket's rate limit, in the "
    "worker or parked.\n"
    "# TYPE pixq_throttle_waits_total counter\n"
    "pixq_throttle_waits_total{kind=\"local\"} 0\n"
    "pixq_throttle_waits_total{kind=\"park\"} 0\n"
    "# HELP pixq_throttle_wait_seconds_total Time uploads waited for their bucket's rate limit.\n"
    "# TYPE pixq_throttle_wait_seconds_total counter\n"
    "pixq_throttle_wait_seconds_total{kind=\"local\"} 0.000000\n"
    "pixq_throttle_wait_seconds_total{kind=\"park\"} 0.000000\n"
    "# HELP pixq_processing_seconds Time to fetch, decode, process and encode one job.\n"
    "# TYPE pixq_processing_seconds histogram\n"
    "pixq_processing_seconds_bucket{le=\"0.01\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"0.025\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"0.05\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"0.1\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"0.25\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"0.5\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"1\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"2.5\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"5\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"10\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"30\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"60\"} 0\n"
    "pixq_processing_seconds_bucket{le=\"+Inf\"} 0\n"
    "pixq_processing_seconds_sum 0.000000\n"
    "pixq_processing_seconds_count 0\n"
    "# HELP pixq_upload_seconds Time of one S3 PUT.\n"
    "# TYPE pixq_upload_seconds histogram\n"
    "pixq_upload_seconds_bucket{le=\"0.005\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"0.01\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"0.025\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"0.05\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"0.1\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"0.25\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"0.5\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"1\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"2.5\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"5\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"10\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"30\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"60\"} 0\n"
    "pixq_upload_seconds_bucket{le=\"+Inf\"} 0\n"
    "pixq_upload_seconds_sum 0.000000\n"
    "pixq_upload_seconds_count 0\n"
    "# HELP pixq_queue_wait_seconds Time from enqueue (pixq_enqueued_at) to the first reserve.\n"
    "# TYPE pixq_queue_wait_seconds histogram\n"
    "pixq_queue_wait_seconds_bucket{le=\"0.005\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"0.01\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"0.05\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"0.1\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"0.5\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"1\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"5\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"10\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"30\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"60\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"300\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"600\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"1800\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"3600\"} 0\n"
    "pixq_queue_wait_seconds_bucket{le=\"+Inf\"} 0\n"
    "pixq_queue_wait_seconds_sum 0.000000\n"
    "pixq_queue_wait_seconds_count 0\n"
    "# HELP pixq_lease_renewals_total Heartbeats in each queue by how they ended (lost: the "
    "worker's record was gone, and it joined again; failed: Redis did not answer).\n"
    "# TYPE pixq_lease_renewals_total counter\n"
    "pixq_lease_renewals_total{outcome=\"renewed\"} 0\n"
    "pixq_lease_renewals_total{outcome=\"lost\"} 0\n"
    "pixq_lease_renewals_total{outcome=\"failed\"} 0\n"
    "# HELP pixq_lease_age_seconds Longest time a live worker process has gone since its lease "
    "last surely held (past PIXQ_LEASE_MS the fleet takes its job).\n"
    "# TYPE pixq_lease_age_seconds gauge\n"
    "# HELP pixq_build_info 1, labelled with the version and source revision of the pixq-worker "
    "serving these metrics.\n"
    "# TYPE pixq_build_info gauge\n"
    "pixq_build_info{version=\"" PIXQ_VERSION "\",revision=\"" PIXQ_REVISION "\"} 1\n"
    "# HELP pixq_worker_processes Live worker processes.\n"
    "# TYPE pixq_worker_processes gauge\n"
    "pixq_worker_processes 1\n"
    "# HELP pixq_worker_restarts_total Worker processes the supervisor started again after they "
    "died.\n"
    "# TYPE pixq_worker_restarts_total counter\n"
    "pixq_worker_restarts_total 0\n"
    "# HELP pixq_process_start_time_seconds Start time of the supervisor (or single worker) "
    "since the Unix epoch.\n"
    "# TYPE pixq_process_start_time_seconds gauge\n"
    "pixq_process_start_time_seconds START\n";

/* ---------------------------------------------------------------- helpers */

/* Runs `fn` in a child process and takes over its CHECK tallies; a child that dies or exits
 * non-zero (valgrind's or a sanitizer's error) is a failure. */
static void run_case(const char *name, void (*fn)(void))
{
    int p[2];
    int tally[2] = {-1, -1};
    fflush(NULL);
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        fn();
        tally[0] = check_passed;
        tally[1] = check_failed;
        exit(write(p[1], tally, sizeof tally) == (ssize_t)sizeof tally ? 0 : 1);
    }
    close(p[1]);
    ssize_t n = pid > 0 ? read(p[0], tally, sizeof tally) : -1;
    close(p[0]);
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    if (n != (ssize_t)sizeof tally || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: the case's process failed (status %d)\n", name, status);
        check_failed++;
        return;
    }
    check_passed = tally[0];
    check_failed = tally[1];
}

/* Maps this case's region, as the worker's main() does before its supervisor forks. */
static void start(void)
{
    struct err e;
    CHECK_INT(metrics_init(&e), 0);
    CHECK(metrics_enabled());
}

/* The whole text (free() it). */
static char *render(void)
{
    struct buf b;
    buf_init(&b, 0);
    CHECK_INT(metrics_render(&b), 0);
    return buf_take(&b);
}

/* The lines of the text that start with `prefix`, in order. */
static char *lines(const char *prefix)
{
    char *text = render();
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "");
    size_t n = strlen(prefix);
    for (const char *l = text; *l != '\0';) {
        size_t len = strcspn(l, "\n") + 1;
        if (strncmp(l, prefix, n) == 0) {
            buf_append(&b, l, len);
        }
        l += len;
    }
    free(text);
    return buf_take(&b);
}

static void check_lines(const char *prefix, const char *want)
{
    char *got = lines(prefix);
    CHECK_STR(got, want);
    free(got);
}

/* The value of the series `name` (its name and labels as shown), or -1 if it is not shown. */
static double value(const char *name)
{
    char *text = render();
    double v = -1;
    size_t n = strlen(name);
    for (const char *l = text; *l != '\0'; l += strcspn(l, "\n") + 1) {
        if (strncmp(l, name, n) == 0 && l[n] == ' ') {
            v = strtod(l + n + 1, NULL);
            break;
        }
    }
    free(text);
    return v;
}

/* A job with `stamp` as the text of its "pixq_enqueued_at" (NULL: none). */
static struct job *stamped(const char *stamp)
{
    char text[256];
    snprintf(text, sizeof text,
             "{\"src\":\"http://x/a.jpg\",\"functions\":[{\"name\":\"no_op\"}]%s%s}",
             stamp != NULL ? ",\"pixq_enqueued_at\":" : "", stamp != NULL ? stamp : "");
    const struct job_limits lim = {250000, 32, 100, 0, 0};
    struct err e = {""};
    struct job *j = job_parse(text, strlen(text), &lim, &e);
    CHECK(j != NULL);
    return j;
}

/* The job's run `run` started at `started_ms`, the job enqueued at `at_ms`. */
static void reserved(long at_ms, long run, long started_ms)
{
    char stamp[32];
    snprintf(stamp, sizeof stamp, "%ld", at_ms);
    struct job *j = stamped(stamp);
    metrics_job_reserved(j, run, started_ms);
    job_destroy(j);
}

/* Each hook once. */
static void call_every_hook(void)
{
    metrics_count_job(METRICS_JOB_SUCCEEDED);
    metrics_count_output(METRICS_OUTPUT_UPLOADED);
    metrics_count_postback(METRICS_POSTBACK_DELIVERED);
    metrics_count_s3(METRICS_S3_GET, 200);
    metrics_observe_upload(0.2, 201);
    metrics_observe_processing(0.3);
    reserved(T_MS - 4000, 1, T_MS);
    metrics_throttle_wait(METRICS_WAIT_LOCAL, 10);
    metrics_set_processes(3);
    metrics_count_restart();
    metrics_count_lease(METRICS_LEASE_LOST);
    metrics_lease_held(clock_boot_ms());
}

/* ---------------------------------------------------------------- off, fresh */

/* Before metrics_init() the hooks do nothing and the text is empty; after it the same calls
 * count. */
static void test_off(void)
{
    CHECK(!metrics_enabled());
    call_every_hook();
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "x\n");
    CHECK_INT(metrics_render(&b), 0);
    CHECK_STR(b.data, "x\n");
    buf_finish(&b);

    start();
    call_every_hook();
    CHECK(value("pixq_jobs_total{outcome=\"succeeded\"}") == 1);
    CHECK(value("pixq_outputs_total{outcome=\"uploaded\"}") == 1);
    CHECK(value("pixq_postbacks_total{outcome=\"delivered\"}") == 1);
    CHECK(value("pixq_s3_responses_total{method=\"GET\",code=\"200\"}") == 1);
    CHECK(value("pixq_s3_responses_total{method=\"PUT\",code=\"201\"}") == 1);
    CHECK(value("pixq_upload_seconds_count") == 1);
    CHECK(value("pixq_processing_seconds_count") == 1);
    CHECK(value("pixq_queue_wait_seconds_count") == 1);
    CHECK(value("pixq_throttle_waits_total{kind=\"local\"}") == 1);
    CHECK(value("pixq_worker_processes") == 3);
    CHECK(value("pixq_worker_restarts_total") == 1);
    CHECK(value("pixq_lease_renewals_total{outcome=\"lost\"}") == 1);
    CHECK(value("pixq_lease_age_seconds") >= 0 && value("pixq_lease_age_seconds") < 5);
}

/* The text of a fresh region as a whole; its start time the wall clock's when metrics_init()
 * ran, kept (with the counts) by a second call. */
static void test_fresh(void)
{
    long before = clock_wall_ms();
    start();
    long after = clock_wall_ms();
    double v = value("pixq_process_start_time_seconds");
    long ms = (long)(v * 1000 + 0.5);
    CHECK(ms >= before && ms <= after);
    struct buf want;
    buf_init(&want, 0);
    const char *mark = strstr(zero_text, "START");
    buf_append(&want, zero_text, (size_t)(mark - zero_text));
    buf_printf(&want, "%ld.%03ld\n", ms / 1000, ms % 1000);
    char *text = render();
    CHECK_STR(text, want.data);
    free(text);
    buf_finish(&want);

    metrics_count_job(METRICS_JOB_DEAD);
    struct err e;
    CHECK_INT(metrics_init(&e), 0);
    CHECK(value("pixq_jobs_total{outcome=\"dead\"}") == 1);
    CHECK(value("pixq_process_start_time_seconds") == v);
}

/* ---------------------------------------------------------------- counters */

/* Each label value counted a different number of times. */
static void test_counters(void)
{
    start();
    for (int i = 0; i < METRICS_JOB_COUNT; i++) {
        for (int k = 0; k <= i; k++) {
            metrics_count_job((enum metrics_job)i);
        }
    }
    for (int i = 0; i < METRICS_OUTPUT_COUNT; i++) {
        for (int k = 0; k <= i + 1; k++) {
            metrics_count_output((enum metrics_output)i);
        }
    }
    for (int i = 0; i < METRICS_POSTBACK_COUNT; i++) {
        for (int k = 0; k <= i + 2; k++) {
            metrics_count_postback((enum metrics_postback)i);
        }
    }
    check_lines("pixq_jobs_total{", "pixq_jobs_total{outcome=\"succeeded\"} 1\n"
                                    "pixq_jobs_total{outcome=\"failed\"} 2\n"
                                    "pixq_jobs_total{outcome=\"retried\"} 3\n"
                                    "pixq_jobs_total{outcome=\"parked\"} 4\n"
                                    "pixq_jobs_total{outcome=\"dead\"} 5\n"
                                    "pixq_jobs_total{outcome=\"lease_lost\"} 6\n");
    check_lines("pixq_outputs_total{", "pixq_outputs_total{outcome=\"uploaded\"} 2\n"
                                       "pixq_outputs_total{outcome=\"failed\"} 3\n"
                                       "pixq_outputs_total{outcome=\"parked\"} 4\n");
    check_lines("pixq_postbacks_total{", "pixq_postbacks_total{outcome=\"delivered\"} 3\n"
                                         "pixq_postbacks_total{outcome=\"retried\"} 4\n"
                                         "pixq_postbacks_total{outcome=\"given_up\"} 5\n"
                                         "pixq_postbacks_total{outcome=\"refused\"} 6\n");
}

/* A value past an enum's last is ignored: nothing in the text changes (the counter after the last
 * in the region would). */
static void test_out_of_range(void)
{
    start();
    call_every_hook();
    metrics_clear_slot(0); /* the lease age, which moves with the clock between renderings */
    char *before = render();
    metrics_count_job(METRICS_JOB_COUNT);
    metrics_count_job((enum metrics_job)1000);
    metrics_count_output(METRICS_OUTPUT_COUNT);
    metrics_count_postback(METRICS_POSTBACK_COUNT);
    metrics_count_s3(METRICS_S3_COUNT, 0);
    metrics_count_s3(METRICS_S3_COUNT, 200);
    metrics_throttle_wait(METRICS_WAIT_COUNT, 50);
    metrics_count_lease(METRICS_LEASE_COUNT);
    char *after = render();
    CHECK_STR(after, before);
    free(after);
    free(before);
}

/* Status 0 is "transport", 100..599 themselves, anything else "other"; only codes seen, by
 * method, then code. An upload counts as a PUT. */
static void test_s3(void)
{
    start();
    const long other[] = {1, 99, 600, 601, 1000, -1, -200};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        metrics_count_s3(METRICS_S3_GET, other[i]);
    }
    metrics_count_s3(METRICS_S3_GET, 100);
    metrics_count_s3(METRICS_S3_GET, 599);
    metrics_count_s3(METRICS_S3_GET, 0);
    metrics_count_s3(METRICS_S3_HEAD, 404);
    metrics_count_s3(METRICS_S3_HEAD, 404);
    metrics_count_s3(METRICS_S3_PUT, 200);
    metrics_observe_upload(0.5, 200);
    metrics_observe_upload(0.5, 0);
    metrics_observe_upload(0.5, 503);
    check_lines("pixq_s3_responses_total{",
                "pixq_s3_responses_total{method=\"PUT\",code=\"transport\"} 1\n"
                "pixq_s3_responses_total{method=\"PUT\",code=\"200\"} 2\n"
                "pixq_s3_responses_total{method=\"PUT\",code=\"503\"} 1\n"
                "pixq_s3_responses_total{method=\"GET\",code=\"transport\"} 1\n"
                "pixq_s3_responses_total{method=\"GET\",code=\"100\"} 1\n"
                "pixq_s3_responses_total{method=\"GET\",code=\"599\"} 1\n"
                "pixq_s3_responses_total{method=\"GET\",code=\"other\"} 7\n"
                "pixq_s3_responses_total{method=\"HEAD\",code=\"404\"} 2\n");
    CHECK(value("pixq_upload_seconds_count") == 3);
}

/* Waits counted by kind, their milliseconds shown in seconds; a negative wait counts as 0. */
static void test_throttle(void)
{
    start();
    metrics_throttle_wait(METRICS_WAIT_LOCAL, 1500);
    metrics_throttle_wait(METRICS_WAIT_LOCAL, 1);
    metrics_throttle_wait(METRICS_WAIT_PARK, -20);
    metrics_throttle_wait(METRICS_WAIT_PARK, 0);
    metrics_throttle_wait(METRICS_WAIT_PARK, 0);
    check_lines("pixq_throttle_wait", "pixq_throttle_waits_total{kind=\"local\"} 2\n"
                                      "pixq_throttle_waits_total{kind=\"park\"} 3\n"
                                      "pixq_throttle_wait_seconds_total{kind=\"local\"} 1.501000\n"
                                      "pixq_throttle_wait_seconds_total{kind=\"park\"} 0.000000\n");
    metrics_throttle_wait(METRICS_WAIT_PARK, 86400000);
    check_lines("pixq_throttle_wait_seconds_total{kind=\"park\"}",
                "pixq_throttle_wait_seconds_total{kind=\"park\"} 86400.000000\n");
}

/* The supervisor's gauge and restarts. */
static void test_process(void)
{
    start();
    metrics_set_processes(4);
    metrics_count_restart();
    metrics_count_restart();
    check_lines("pixq_worker", "pixq_worker_processes 4\npixq_worker_restarts_total 2\n");
    metrics_set_processes(0);
    check_lines("pixq_worker_processes", "pixq_worker_processes 0\n");
}

/* Whether the lease age shown is `s` seconds, give or take the time the check takes. */
static bool lease_age_is(double s)
{
    double v = value("pixq_lease_age_seconds");
    if (v < s - 0.001 || v > s + 0.5) {
        fprintf(stderr, "lease age %.3f s, not %.3f s\n", v, s);
        return false;
    }
    return true;
}

/* Heartbeats by outcome; the lease age of the slot that held longest ago (the single worker's
 * slot 0 until another is set), none before any held, an emptied slot no longer counted, and
 * slots out of range ignored. */
static void test_lease(void)
{
    start();
    metrics_count_lease(METRICS_LEASE_RENEWED);
    metrics_count_lease(METRICS_LEASE_RENEWED);
    metrics_count_lease(METRICS_LEASE_FAILED);
    metrics_count_lease(METRICS_LEASE_COUNT);
    check_lines("pixq_lease", "pixq_lease_renewals_total{outcome=\"renewed\"} 2\n"
                              "pixq_lease_renewals_total{outcome=\"lost\"} 0\n"
                              "pixq_lease_renewals_total{outcome=\"failed\"} 1\n");
    long now = clock_boot_ms();
    metrics_lease_held(now - 2500);
    CHECK(lease_age_is(2.5));
    metrics_use_slot(3);
    metrics_lease_held(now - 9000);
    CHECK(lease_age_is(9));
    metrics_lease_held(now - 1000); /* slot 3 renewed: slot 0's is the oldest */
    CHECK(lease_age_is(2.5));
    metrics_clear_slot(0);
    CHECK(lease_age_is(1));
    metrics_use_slot(METRICS_SLOTS); /* ignored: slot 3 still */
    metrics_use_slot(-1);
    metrics_lease_held(now - 4000);
    CHECK(lease_age_is(4));
    metrics_clear_slot(METRICS_SLOTS);
    metrics_clear_slot(-1);
    CHECK(lease_age_is(4));
    metrics_use_slot(METRICS_SLOTS - 1);
    metrics_lease_held(now - 6000);
    CHECK(lease_age_is(6));
    metrics_clear_slot(METRICS_SLOTS - 1);
    metrics_clear_slot(3);
    check_lines("pixq_lease_age_seconds ", "");
}

/* ---------------------------------------------------------------- histograms */

enum hist { PROCESSING, UPLOAD, QUEUE_WAIT };

static const char *const hist_names[] = {"pixq_processing_seconds", "pixq_upload_seconds",
                                         "pixq_queue_wait_seconds"};

/* Each histogram's bounds in microseconds, ended by 0. */
static const long bounds_us[][16] = {
    [PROCESSING] = {10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
                    10000000, 30000000, 60000000, 0},
    [UPLOAD] = {5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
                10000000, 30000000, 60000000, 0},
    [QUEUE_WAIT] = {5000, 10000, 50000, 100000, 500000, 1000000, 5000000, 10000000, 30000000,
                    60000000, 300000000, 600000000, 1800000000, 3600000000, 0},
};

/* Observes `us` microseconds as the worker does: a job's time, an upload's, or a first run's
 * wait (whole milliseconds). */
static void observe(enum hist h, long us)
{
    if (h == PROCESSING) {
        metrics_observe_processing((double)us / 1e6);
    } else if (h == UPLOAD) {
        metrics_observe_upload((double)us / 1e6, 200);
    } else {
        reserved(T_MS - us / 1000, 1, T_MS);
    }
}

/* The histogram's cumulative bucket counts, +Inf last, and its count; the number of buckets. */
static int buckets(enum hist h, double counts[17], double *count)
{
    char prefix[64], name[64];
    snprintf(prefix, sizeof prefix, "%s_bucket{", hist_names[h]);
    snprintf(name, sizeof name, "%s_count", hist_names[h]);
    char *text = lines(prefix);
    int n = 0;
    for (const char *l = text; *l != '\0' && n < 17; l += strcspn(l, "\n") + 1) {
        counts[n++] = strtod(strchr(l, ' ') + 1, NULL);
    }
    free(text);
    *count = value(name);
    return n;
}

/* The bucket one observation of `us` went to (the +Inf one: the number of bounds), or -1 if
 * the counts did not grow as one observation's do: 0 below its bucket, 1 from it on. */
static int placed(enum hist h, long us)
{
    double was[17], now[17], count_was, count_now;
    int n = buckets(h, was, &count_was);
    observe(h, us);
    CHECK_INT(buckets(h, now, &count_now), n);
    int b = -1;
    for (int i = 0; i < n; i++) {
        double d = now[i] - was[i];
        if (b < 0 && d == 1) {
            b = i;
        }
        if (d != (b < 0 ? 0 : 1)) {
            return -1;
        }
    }
    return b >= 0 && count_now - count_was == 1 ? b : -1;
}

/* At, just below and just above each bound, and 0, far past the last and below 0. */
static void check_placement(enum hist h)
{
    long step = h == QUEUE_WAIT ? 1000 : 1;
    int n = 0;
    for (; bounds_us[h][n] != 0; n++) {
        long b = bounds_us[h][n];
        CHECK_INT(placed(h, b), n);
        CHECK_INT(placed(h, b - step), n);
        CHECK_INT(placed(h, b + step), n + 1);
    }
    CHECK_INT(placed(h, 0), 0);
    CHECK_INT(placed(h, -step), 0);
    CHECK_INT(placed(h, 86400000000L), n);
}

static void test_placement(void)
{
    start();
    check_placement(PROCESSING);
    check_placement(UPLOAD);
    check_placement(QUEUE_WAIT);
}

/* Cumulative buckets, +Inf equal to the count, the sum rounded to microseconds, a negative time
 * as 0. */
static void test_histogram_text(void)
{
    start();
    const double seconds[] = {-1, 0.0000014, 0.0000016, 0.01, 0.3, 0.3, 2.5, 61, 100};
    for (size_t i = 0; i < sizeof seconds / sizeof seconds[0]; i++) {
        metrics_observe_processing(seconds[i]);
    }
    check_lines("pixq_processing_seconds_", "pixq_processing_seconds_bucket{le=\"0.01\"} 4\n"
                                            "pixq_processing_seconds_bucket{le=\"0.025\"} 4\n"
                                            "pixq_processing_seconds_bucket{le=\"0.05\"} 4\n"
                                            "pixq_processing_seconds_bucket{le=\"0.1\"} 4\n"
                                            "pixq_processing_seconds_bucket{le=\"0.25\"} 4\n"
                                            "pixq_processing_seconds_bucket{le=\"0.5\"} 6\n"
                                            "pixq_processing_seconds_bucket{le=\"1\"} 6\n"
                                            "pixq_processing_seconds_bucket{le=\"2.5\"} 7\n"
                                            "pixq_processing_seconds_bucket{le=\"5\"} 7\n"
                                            "pixq_processing_seconds_bucket{le=\"10\"} 7\n"
                                            "pixq_processing_seconds_bucket{le=\"30\"} 7\n"
                                            "pixq_processing_seconds_bucket{le=\"60\"} 7\n"
                                            "pixq_processing_seconds_bucket{le=\"+Inf\"} 9\n"
                                            "pixq_processing_seconds_sum 164.110003\n"
                                            "pixq_processing_seconds_count 9\n");
    metrics_observe_upload(0.004, 200);
    metrics_observe_upload(-0.5, 200);
    metrics_observe_upload(7200, 200);
    metrics_observe_upload(0.0078125, 200); /* 2^-7: exactly 7812.5 microseconds, rounded up */
    check_lines("pixq_upload_seconds_bucket{le=\"0.005\"}",
                "pixq_upload_seconds_bucket{le=\"0.005\"} 2\n");
    check_lines("pixq_upload_seconds_bucket{le=\"60\"}",
                "pixq_upload_seconds_bucket{le=\"60\"} 3\n");
    check_lines("pixq_upload_seconds_s", "pixq_upload_seconds_sum 7200.011813\n");
    check_lines("pixq_upload_seconds_c", "pixq_upload_seconds_count 4\n");
    check_lines("pixq_queue_wait_seconds_count", "pixq_queue_wait_seconds_count 0\n");
}

/* ---------------------------------------------------------------- queue wait */

/* The queue wait's count and sum now. */
static void waits(double *count, double *sum)
{
    *count = value("pixq_queue_wait_seconds_count");
    *sum = value("pixq_queue_wait_seconds_sum");
}

/* Whether the job counted as one wait of `want` seconds; `j` is destroyed. */
static void check_wait(struct job *j, long run, long started_ms, double want)
{
    double count, sum, count2, sum2;
    waits(&count, &sum);
    metrics_job_reserved(j, run, started_ms);
    job_destroy(j);
    waits(&count2, &sum2);
    if (want < 0) {
        CHECK(count2 == count && sum2 == sum);
    } else {
        CHECK(count2 == count + 1 && sum2 - sum > want - 5e-7 && sum2 - sum < want + 5e-7);
    }
}

static struct job *at_ms(long ms)
{
    char stamp[32];
    snprintf(stamp, sizeof stamp, "%ld", ms);
    return stamped(stamp);
}

/* Only a first run's integer stamp from 2000 on and at most 5 minutes ahead of the start
 * counts; one ahead is a wait of 0. */
static void test_queue_wait(void)
{
    start();
    check_wait(at_ms(T_MS - 2500), 1, T_MS, 2.5);
    check_wait(at_ms(T_MS - 2500), 2, T_MS, -1);
    check_wait(at_ms(T_MS - 2500), 0, T_MS, -1);
    check_wait(at_ms(T_MS - 2500), -1, T_MS, -1);
    check_wait(NULL, 1, T_MS, -1);
    check_wait(stamped(NULL), 1, T_MS, -1);
    check_wait(stamped("\"1699999997500\""), 1, T_MS, -1);
    check_wait(stamped("1699999997500.0"), 1, T_MS, -1);
    check_wait(stamped("1.6999999975e12"), 1, T_MS, -1);
    check_wait(stamped("true"), 1, T_MS, -1);
    check_wait(stamped("null"), 1, T_MS, -1);
    check_wait(stamped("[1699999997500]"), 1, T_MS, -1);
    check_wait(at_ms(T_MS / 1000), 1, T_MS, -1); /* seconds, not milliseconds */
    check_wait(at_ms(-1), 1, T_MS, -1);
    check_wait(at_ms(MIN_STAMP_MS), 1, MIN_STAMP_MS + 1500, 1.5);
    check_wait(at_ms(MIN_STAMP_MS - 1), 1, MIN_STAMP_MS + 1500, -1);
    check_wait(at_ms(T_MS + 1), 1, T_MS, 0);
    check_wait(at_ms(T_MS + AHEAD_MS), 1, T_MS, 0);
    check_wait(at_ms(T_MS + AHEAD_MS + 1), 1, T_MS, -1);
    check_wait(at_ms(T_MS - 3 * 86400000L), 1, T_MS, 259200);
    check_wait(at_ms(T_MS - 1), 1, T_MS, 0.001);
    CHECK(value("pixq_queue_wait_seconds_bucket{le=\"0.005\"}") == 3);
    CHECK(value("pixq_queue_wait_seconds_bucket{le=\"5\"}") == 5);
    CHECK(value("pixq_queue_wait_seconds_bucket{le=\"3600\"}") == 5);
    CHECK(value("pixq_queue_wait_seconds_bucket{le=\"+Inf\"}") == 6);
}

/* ---------------------------------------------------------------- fork, cap, clock */

/* A child's counts show in its parent, two children counting at once lose none. */
static void test_fork(void)
{
    start();
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            for (int i = 0; i < 5000; i++) {
                metrics_count_job(METRICS_JOB_FAILED);
                metrics_observe_processing(0.02);
            }
            metrics_count_s3(METRICS_S3_HEAD, 0);
            metrics_set_processes(7);
            metrics_use_slot(k + 1);
            metrics_lease_held(clock_boot_ms() - 3000 * (k + 1));
            exit(0);
        }
        CHECK(kids[k] > 0);
    }
    for (int k = 0; k < 2; k++) {
        int status = -1;
        CHECK(kids[k] > 0 && waitpid(kids[k], &status, 0) == kids[k]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    metrics_count_job(METRICS_JOB_FAILED);
    CHECK(value("pixq_jobs_total{outcome=\"failed\"}") == 10001);
    CHECK(value("pixq_processing_seconds_bucket{le=\"0.025\"}") == 10000);
    CHECK(value("pixq_processing_seconds_sum") == 200);
    CHECK(value("pixq_s3_responses_total{method=\"HEAD\",code=\"transport\"}") == 2);
    CHECK(value("pixq_worker_processes") == 7);
    CHECK(lease_age_is(6)); /* the second child's, in its slot */
}

/* metrics_render() into a buffer of at most `max` bytes fails, and what it holds is the text up
 * to the first line that did not fit. Returns whether it did so. */
static bool cut_at(const char *full, size_t max)
{
    struct buf b;
    buf_init(&b, max);
    int rc = metrics_render(&b);
    bool ok = rc == -1 && b.len <= max && (b.len == 0 || memcmp(b.data, full, b.len) == 0);
    if (!ok) {
        fprintf(stderr, "cap %zu: rc %d, %zu bytes\n", max, rc, b.len);
    }
    buf_finish(&b);
    return ok;
}

/* A buffer too small for the text, by one byte at the end of each line (where what comes after
 * is shorter, it would fit) or cut just after it: -1, and the text up to the first line that did
 * not fit. Text already in the buffer is kept. */
static void test_cap(void)
{
    start();
    call_every_hook();
    metrics_clear_slot(0); /* the lease age, which moves with the clock between renderings */
    metrics_count_s3(METRICS_S3_PUT, 0);
    metrics_count_s3(METRICS_S3_HEAD, 700);
    char *full = render();
    size_t len = strlen(full);
    int bad = !cut_at(full, 1);
    for (size_t end = 1; end < len && bad < 5; end++) {
        if (full[end - 1] == '\n') {
            bad += !cut_at(full, end - 1) + !cut_at(full, end);
        }
    }
    CHECK_INT(bad, 0);
    struct buf b;
    buf_init(&b, len + 2);
    buf_puts(&b, "x\n");
    CHECK_INT(metrics_render(&b), 0);
    CHECK(b.len == len + 2 && strncmp(b.data, "x\n", 2) == 0 && strcmp(b.data + 2, full) == 0);
    buf_finish(&b);
    free(full);
}

/* metrics_clock() is the monotonic clock in seconds. */
static void test_clock(void)
{
    long a = clock_mono_us();
    double t = metrics_clock();
    long b = clock_mono_us();
    CHECK(t >= (double)a / 1e6 - 1e-6 && t <= (double)b / 1e6 + 1e-6);
    CHECK(metrics_clock() >= t);
}

int main(void)
{
    run_case("off", test_off);
    run_case("fresh", test_fresh);
    run_case("counters", test_counters);
    run_case("out_of_range", test_out_of_range);
    run_case("s3", test_s3);
    run_case("throttle", test_throttle);
    run_case("process", test_process);
    run_case("lease", test_lease);
    run_case("placement", test_placement);
    run_case("histogram_text", test_histogram_text);
    run_case("queue_wait", test_queue_wait);
    run_case("fork", test_fork);
    run_case("cap", test_cap);
    run_case("clock", test_clock);
    return check_summary("metrics");
}
