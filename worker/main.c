/* pixq-worker: takes Blitline-style jobs from Redis, processes them with MagickWand, uploads the
 * outputs to S3 and posts the results back. See README.md and DESIGN.md.
 *
 * With --processes 1 (the default) this process is the worker; with N > 1 it is a supervisor
 * of N worker processes (supervisor.h). Either way, --metrics-addr serves Prometheus metrics. */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "awscreds.h"
#include "awsmeta.h"
#include "cfg.h"
#include "clock.h"
#include "credproc.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "opdoc.h"
#include "rq.h"
#include "supervisor.h"
#include "version.h"
#include "worker.h"

static volatile sig_atomic_t stop_requested; /* the signal that asked (0: none yet) */

static void on_signal(int sig)
{
    if (stop_requested == 0) {
        stop_requested = sig;
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: pixq-worker [--config FILE] [--SETTING VALUE]... [--print-config]\n"
                 "       pixq-worker --functions [--json | --markdown]\n"
                 "       pixq-worker --version\n\n"
                 "Serves the queues named by PIXQ_QUEUE until SIGTERM, SIGINT, SIGHUP or SIGQUIT.\n"
                 "With --processes N, a supervisor runs N worker processes and restarts any that\n"
                 "die. --functions prints the parameters of each function a job may name (type,\n"
                 "default, range, required), as the worker reads them, and exits.\n\n");
    cfg_usage(out);
}

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

extern char **environ;

static void warn_unknown(const char *name, void *user)
{
    if (user != NULL) { /* --print-config: the operator is reading */
        fprintf(user, "pixq-worker: warning: %s in the environment is not a setting (ignored)\n",
                name);
    } else {
        LOG_WARN("unknown_setting", "name=%s where=environment", name);
    }
}

/* An `export` line in the --config file (cfg.export_line): read here, but dropped by systemd's
 * EnvironmentFile=, so the setting would be lost under the unit README gives. */
static void warn_export(const struct cfg *cfg, FILE *user)
{
    if (cfg->export_line[0] == '\0') {
        return;
    }
    if (user != NULL) {
        fprintf(user,
                "pixq-worker: warning: %s: an 'export' line, which systemd's EnvironmentFile= "
                "ignores: write KEY=value\n",
                cfg->export_line);
    } else {
        char q[sizeof cfg->export_line + 16];
        LOG_WARN("config_export_line", "at=%s action=read_here_ignored_by_systemd",
                 log_quote(cfg->export_line, q, sizeof q));
    }
}

static void log_setting(const char *var, const char *value, void *user)
{
    char q[CFG_STR_MAX + 16];
    LOG_INFO("config", "%s=%s", var, log_quote(value, q, sizeof q));
}

/* A postback retry posts the result finish.lua stored for PIXQ_RESULT_TTL_S: warns when the
 * retries' waits (PIXQ_POSTBACK_RETRY_DELAYS_S, each stretched up to PIXQ_RETRY_AFTER_MAX_MS by a
 * receiver's Retry-After) may add up to more, the last retries then finding it gone
 * (postback_given_up reason=result_gone). A warning only: a short TTL may be meant. */
static void warn_postback_retries(const struct cfg *cfg)
{
    struct cfg_delays d;
    struct err e = {{0}};
    if (cfg_delays(cfg->postback_retry_delays_s, &d, &e) < 0) {
        return; /* refused by cfg_load() already */
    }
    long total_ms = 0, longest_ms = 0;
    for (size_t i = 0; i < d.n; i++) {
        long ms = d.s[i] * 1000;
        total_ms += ms;
        longest_ms += cfg->retry_after_max_ms > ms ? cfg->retry_after_max_ms : ms;
    }
    if (longest_ms <= cfg->result_ttl_s * 1000) {
        return;
    }
    char q[CFG_STR_MAX + 16];
    LOG_WARN("postback_retry_past_result_ttl",
             "postback_retry_delays_s=%s delays_total_s=%ld retry_after_max_ms=%ld "
             "longest_total_s=%ld result_ttl_s=%ld error=%s",
             log_quote(cfg->postback_retry_delays_s, q, sizeof q), total_ms / 1000,
             cfg->retry_after_max_ms, (longest_ms + 999) / 1000, cfg->result_ttl_s,
             total_ms > cfg->result_ttl_s * 1000
                 ? "\"the postback retries (PIXQ_POSTBACK_RETRY_DELAYS_S) last longer than "
                   "PIXQ_RESULT_TTL_S keeps the result they post: the last ones find it gone\""
                 : "\"a receiver's Retry-After (up to PIXQ_RETRY_AFTER_MAX_MS) may stretch the "
                   "postback retries past PIXQ_RESULT_TTL_S, which keeps the result they post: "
                   "the last ones would find it gone\"");
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);  /* a closed terminal, a "reload" habit: stop as gracefully */
    sigaction(SIGQUIT, &sa, NULL); /* nginx's and unicorn's graceful stop (no core dump) */
    signal(SIGPIPE, SIG_IGN);
}

/* Starts ImageMagick behind the image guard (formats, security policy, limits). Returns -1 if
 * it cannot: the worker must not start without it (fail closed). */
static int start_images(const struct cfg *cfg)
{
    struct img_config ic;
    struct err e = {{0}};
    if (img_config_from(cfg, &ic, &e) < 0 || img_start(&ic, &e) < 0) {
        char q[ERR_MSG_MAX + 16];
        LOG_ERROR("image_guard_failed", "error=%s", log_quote(e.msg, q, sizeof q));
        return -1;
    }
    return 0;
}

#define REFUSALS_FINAL      3 /* refusals of the login or database in a row that end the worker */
#define REFUSAL_WAIT_MAX_MS 1000 /* the longest wait after one: a setting to fix ends it soon */

/* Creates the worker, waiting out a Redis that is not up yet until stopped: as a worker waits
 * for a Redis lost later, PIXQ_REDIS_RETRY_MIN_MS doubling to PIXQ_REDIS_RETRY_MAX_MS, each
 * wait drawn between half its step and the step, so that a fleet started (or restarted) while
 * Redis is away does not come back to it all at once. A Redis that refuses the login or the
 * database is a setting to fix: tried again at most REFUSAL_WAIT_MAX_MS later (a password being
 * rolled out), whatever the outage waits are, and NULL with *refused at the third refusal. */
static struct worker *start_worker(const struct cfg *cfg, bool *refused)
{
    long step_ms = cfg->redis_retry_min_ms;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid(); /* one per process of a fleet */
    int refusals = 0; /* in a row: a wrong password is refused every time */
    bool failed = false;
    *refused = false;
    while (!stop_requested) {
        struct err e = {{0}};
        struct worker *w = worker_create(cfg, &stop_requested, failed, &e);
        if (w != NULL) {
            return w;
        }
        char q[ERR_MSG_MAX + 16];
        refusals = rq_refused_for_good(e.msg) ? refusals + 1 : 0;
        if (refusals == REFUSALS_FINAL) {
            LOG_ERROR("start_refused", "error=%s", log_quote(e.msg, q, sizeof q));
            fprintf(stderr, "pixq-worker: %s (check PIXQ_REDIS_URL)\n", e.msg);
            *refused = true;
            return NULL;
        }
        long wait_ms = step_ms / 2 + (long)(rand_r(&seed) % (unsigned)(step_ms / 2 + 1));
        if (refusals > 0 && wait_ms > REFUSAL_WAIT_MAX_MS) {
            wait_ms = REFUSAL_WAIT_MAX_MS;
        }
        LOG_WARN("start_failed", "error=%s retry_ms=%ld", log_quote(e.msg, q, sizeof q), wait_ms);
        failed = true;
        /* in naps: one nanosleep of the whole wait missed a stop sent as the start_failed line
         * was read (two times in three), and slept on up to PIXQ_REDIS_RETRY_MAX_MS */
        clock_nap_ms(wait_ms, &stop_requested);
        step_ms = step_ms * 2 > cfg->redis_retry_max_ms ? cfg->redis_retry_max_ms : step_ms * 2;
    }
    return NULL;
}

/* One worker process: ImageMagick, curl and Redis are set up here, after any fork. Returns the
 * exit status. An image guard that cannot be set up (a policy.xml time limit, a policy
 * ImageMagick refuses) is the machine's configuration: SUPERVISOR_EXIT_CONFIG, which stops a
 * supervisor's fleet and which systemd does not restart, rather than a crash loop. */
static int run_worker(const struct cfg *cfg)
{
    if (start_images(cfg) < 0) {
        return SUPERVISOR_EXIT_CONFIG;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    bool refused = false;
    struct worker *w = start_worker(cfg, &refused);
    if (w != NULL) {
        worker_run(w);
        worker_destroy(w);
    } /* else stopped before Redis could be reached, or refused by it */
    img_shutdown();
    curl_global_cleanup();
    return refused ? SUPERVISOR_EXIT_CONFIG : 0;
}

/* Handles the worker's own flags; returns -1 to exit with `*status`. */
static int parse_own_flags(int argc, char **argv, bool *print_config, int *status)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            *status = 0;
            return -1;
        }
        if (strcmp(argv[i], "--print-config") == 0) {
            *print_config = true;
            continue;
        }
        fprintf(stderr, "pixq-worker: unknown argument '%s' (see --help)\n", argv[i]);
        *status = 2;
        return -1;
    }
    return 0;
}

static void setup_logging(const struct cfg *cfg)
{
    log_threshold = (enum log_level)cfg->log_level;
    enum log_format f = LOG_FORMAT_TEXT;
    if (log_parse_format(cfg->log_format, &f) == 0) { /* cfg accepts nothing else */
        log_output = f;
    }
}

/* The shared counters and, with an address, the listening socket, opened once here: the
 * supervisor of --processes N keeps it and serves it, its children never bind (a child it
 * restarts finds no port to take). Returns 0, or the exit status if it cannot listen: an operator
 * who asked for metrics gets an error, not a silent worker. SUPERVISOR_EXIT_CONFIG when
 * PIXQ_METRICS_ADDR is unusable on this host (malformed, unresolvable, not one of its
 * addresses, a port it may not take): a setting to fix, which no restart mends. 1 when it may
 * pass: above all the port held by another process (an instance or program still running with
 * the same port); systemd restarts the worker (at most 5 starts in 60 s, then the unit fails). */
static int start_metrics(const struct cfg *cfg, struct mhttp **out)
{
    *out = NULL;
    if (cfg->metrics_addr[0] == '\0') {
        return 0;
    }
    struct err e = {{0}};
    bool lasting = false;
    if (metrics_init(&e) == 0) {
        const struct mhttp_limits lim = {(int)cfg->metrics_max_connections,
                                         (size_t)cfg->metrics_max_request_bytes,
                                         cfg->metrics_timeout_ms};
        *out = mhttp_create(cfg->metrics_addr, &lim, &lasting, &e);
    }
    if (*out == NULL) {
        char q[ERR_MSG_MAX + 16];
        int status = lasting ? SUPERVISOR_EXIT_CONFIG : 1;
        LOG_ERROR("metrics_failed", "setting=PIXQ_METRICS_ADDR error=%s exit=%d",
                  log_quote(e.msg, q, sizeof q), status);
        fprintf(stderr, "pixq-worker: PIXQ_METRICS_ADDR: %s (%s)\n", e.msg,
                lasting ? "unusable on this host: check PIXQ_METRICS_ADDR"
                        : "this may pass: exit status 1, to be started again; check "
                          "PIXQ_METRICS_ADDR if it persists");
        return status;
    }
    LOG_INFO("metrics_listening", "addr=%s path=/metrics", cfg->metrics_addr);
    return 0;
}

/* --processes 1: this process is the worker; metrics come from a thread. */
static int run_single(const struct cfg *cfg, struct mhttp *metrics)
{
    (void)supervisor_pin_single(cfg);
    install_signals();
    struct err e = {{0}};
    if (metrics != NULL && mhttp_start_thread(metrics, &e) < 0) {
        /* as start_metrics() says its failures: the operator asked for metrics */
        char q[ERR_MSG_MAX + 16];
        LOG_ERROR("metrics_failed", "error=%s exit=1", log_quote(e.msg, q, sizeof q));
        fprintf(stderr, "pixq-worker: PIXQ_METRICS_ADDR: %s (exit status 1, to be started again)\n",
                e.msg);
        return 1;
    }
    return run_worker(cfg);
}

/* Two sources of S3 keys set at once, which the settings alone tell (--print-config checks it
 * too): keys in the environment or a credentials file beside PIXQ_S3_INSTANCE_CREDENTIALS, keys
 * beside the file. Returns -1 (said on stderr) or 0. */
static int credentials_conflict(const struct cfg *cfg)
{
    bool keys = cfg->aws_access_key_id[0] != '\0' || cfg->aws_secret_access_key[0] != '\0' ||
                cfg->aws_session_token[0] != '\0';
    if (cfg->s3_instance_credentials && (keys || cfg->aws_shared_credentials_file[0] != '\0')) {
        fprintf(stderr,
                "pixq-worker: PIXQ_S3_INSTANCE_CREDENTIALS and %s are both set: the keys "
                "come from one or the other\n",
                keys ? "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN"
                     : "AWS_SHARED_CREDENTIALS_FILE");
        return -1;
    }
    if (keys && cfg->aws_shared_credentials_file[0] != '\0') {
        fprintf(stderr, "pixq-worker: AWS_SHARED_CREDENTIALS_FILE and AWS_ACCESS_KEY_ID, "
                        "AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN are both set: the keys come "
                        "from one or the other\n");
        return -1;
    }
    return 0;
}

/* S3's keys at start: from the environment (a warning when they are missing: every upload will
 * fail), from AWS_SHARED_CREDENTIALS_FILE, which must then be readable and hold the profile's
 * keys if it is there (a warning if it is not yet), or from a metadata endpoint whose settings
 * must make sense (it is asked by each worker process). The AWS SDKs' order: keys in the
 * environment, then the file, then a container's endpoint, then the instance's (which pixq asks
 * only when PIXQ_S3_INSTANCE_CREDENTIALS says so: not with keys or a file). A session token
 * alone is not keys (the SDKs want the key pair). Returns -1 (said on stderr) for a setting to
 * fix. */
static int check_credentials(const struct cfg *cfg)
{
    if (credentials_conflict(cfg) < 0) {
        return -1;
    }
    bool key_pair = cfg->aws_access_key_id[0] != '\0' || cfg->aws_secret_access_key[0] != '\0';
    if (cfg->aws_shared_credentials_file[0] == '\0' && !key_pair && awsmeta_configured(cfg)) {
        struct err e = {{0}};
        struct awsmeta *m = malloc(sizeof *m);
        int rc = m != NULL ? awsmeta_init(m, cfg, &e) : err_set(&e, "out of memory");
        if (rc < 0) {
            fprintf(stderr, "pixq-worker: %s\n", e.msg);
        } else { /* which of the sources the environment names was taken: said once */
            char url[sizeof m->url + 8];
            LOG_INFO("s3_credentials", "source=%s url=%s", awsmeta_source(m),
                     awsmeta_url_shown(m, url, sizeof url));
        }
        free(m);
        return rc;
    }
    if (cfg->aws_shared_credentials_file[0] == '\0') {
        if (cfg->aws_access_key_id[0] == '\0' || cfg->aws_secret_access_key[0] == '\0') {
            LOG_WARN("s3_credentials_missing", "error=%s",
                     "\"AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set: every upload and "
                     "every S3 source will fail\"");
        } else {
            size_t n = strlen(cfg->aws_access_key_id);
            LOG_INFO("s3_credentials", "source=environment access_key_id_ends=%s",
                     cfg->aws_access_key_id + (n > 4 ? n - 4 : 0));
        }
        return 0;
    }
    char path[CFG_STR_MAX + 16], profile[CFG_STR_MAX + 16]; /* quoted for the log */
    log_quote(cfg->aws_shared_credentials_file, path, sizeof path);
    log_quote(cfg->aws_profile, profile, sizeof profile);
    struct stat st;
    if (stat(cfg->aws_shared_credentials_file, &st) < 0 && errno == ENOENT) {
        /* not written yet (its keeper starts with the worker): each worker process says so
         * (s3_credentials_refused), each S3 request looks for it, and uploads wait for it as
         * for an outage */
        LOG_INFO("s3_credentials", "source=file path=%s profile=%s", path, profile);
        return 0;
    }
    struct err e = {{0}};
    struct awscreds *creds = malloc(sizeof *creds); /* 11 KB: a token may be 8 KB */
    /* read, and a credential_process's command checked, but not run: each worker process runs
     * it for its own keys */
    if (creds == NULL || awscreds_init(creds, cfg, false, &e) < 0) {
        fprintf(stderr, "pixq-worker: AWS_SHARED_CREDENTIALS_FILE %s: %s\n",
                cfg->aws_shared_credentials_file, creds == NULL ? "out of memory" : e.msg);
        free(creds);
        return -1;
    }
    if (creds->from_endpoint && credproc_check(creds->meta.command, &e) < 0) {
        fprintf(stderr,
                "pixq-worker: AWS_SHARED_CREDENTIALS_FILE %s: profile [%s]: "
                "credential_process: %s\n",
                cfg->aws_shared_credentials_file, creds->profile, e.msg);
        free(creds);
        return -1;
    }
    if (creds->from_endpoint) {
        char url[sizeof creds->meta.url + 16];
        LOG_INFO("s3_credentials", "source=process path=%s profile=%s url=%s", path, profile,
                 log_quote(creds->meta.url, url, sizeof url));
    } else {
        LOG_INFO("s3_credentials", "source=file path=%s profile=%s", path, profile);
    }
    free(creds);
    return 0;
}

/* --functions [--json | --markdown]: prints each function's parameters (opdoc.h). Returns -1
 * when argv asks for something else, else the exit status. */
static int print_functions(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--functions") != 0) {
        return -1;
    }
    if (argc > 3) {
        fprintf(stderr, "pixq-worker: unknown argument '%s' (see --help)\n", argv[3]);
        return 2;
    }
    enum opdoc_format f = OPDOC_TEXT;
    if (argc == 3 && strcmp(argv[2], "--json") == 0) {
        f = OPDOC_JSON;
    } else if (argc == 3 && strcmp(argv[2], "--markdown") == 0) {
        f = OPDOC_MARKDOWN;
    } else if (argc == 3) {
        fprintf(stderr, "pixq-worker: --functions takes --json or --markdown, not '%s'\n", argv[2]);
        return 2;
    }
    struct err e = {{0}};
    if (opdoc_print(stdout, f, &e) < 0) {
        fprintf(stderr, "pixq-worker: %s\n", e.msg);
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) { /* needs no configuration */
        char magick[64];
        printf("pixq-worker %s (revision %s; %s)\n", PIXQ_VERSION, PIXQ_REVISION,
               img_library_version(magick, sizeof magick));
        return fflush(stdout) == 0 ? 0 : 1;
    }
    int listed = print_functions(argc, argv); /* needs no configuration */
    if (listed >= 0) {
        return listed;
    }
    struct cfg cfg;
    struct err e = {{0}};
    struct img_config images; /* PIXQ_IMAGE_FORMATS checked before --print-config or a fork */
    if (cfg_load(&cfg, &argc, argv, env_lookup, &e) < 0 || img_config_from(&cfg, &images, &e) < 0) {
        fprintf(stderr, "pixq-worker: %s\n", e.msg);
        /* --help still answers: the settings it describes may be what the reader came to fix */
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                usage(stdout);
                return 0;
            }
        }
        return 2;
    }
    bool print_config = false;
    int status = 0;
    if (parse_own_flags(argc, argv, &print_config, &status) < 0) {
        return status;
    }
    if (print_config) {
        cfg_unknown_env(environ, warn_unknown, stderr);
        warn_export(&cfg, stderr);
        if (credentials_conflict(&cfg) < 0) {
            return 2;
        }
        cfg_print(&cfg, stdout);
        return 0;
    }
    setup_logging(&cfg);
    if (cfg.processes > 1) {
        log_set_pid((long)getpid()); /* several processes share stderr: from the first line */
    }
    cfg_unknown_env(environ, warn_unknown, NULL);
    warn_export(&cfg, NULL);
    cfg_each(&cfg, log_setting, NULL);
    if (check_credentials(&cfg) < 0) {
        return 2;
    }
    warn_postback_retries(&cfg);
    struct mhttp *metrics = NULL;
    status = start_metrics(&cfg, &metrics);
    if (status != 0) {
        return status;
    }
    if (cfg.processes > 1) {
        const struct supervisor_opts o = {&cfg, metrics, install_signals, run_worker};
        status = supervisor_run(&o);
    } else {
        status = run_single(&cfg, metrics);
    }
    mhttp_destroy(metrics);
    return status;
}
