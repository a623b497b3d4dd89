/* The supervisor of `pixq-worker --processes N` (worker/supervisor.c), run in a process of its
 * own with children that do no job work: each child's run is a function of this file, and what
 * the children see (when they ran, which signal reached them) goes to memory shared with this
 * process. The supervisor's log (its stderr) goes to a file this test reads back.
 *
 * - a child that keeps dying young waits before it starts again, PIXQ_RESTART_BACKOFF_MIN_MS
 *   doubling up to PIXQ_RESTART_BACKOFF_MAX_MS (the first restart at once); one that lived past
 *   PIXQ_RESTART_QUICK_EXIT_MS starts again at once and the count begins anew; its neighbour
 *   is left alone; SIGTERM stops both gracefully;
 * - SIGPIPE does not end the supervisor; SIGINT reaches the children as SIGTERM; children
 *   that do not stop are killed PIXQ_SHUTDOWN_TIMEOUT_MS + PIXQ_STOP_GRACE_MS after the stop
 *   began, and the supervisor exits 1;
 * - a child's SUPERVISOR_EXIT_CONFIG stops the fleet without a restart: the supervisor exits
 *   with it; children that exit non-zero once stopping (SIGQUIT) are logged at warn, and the
 *   supervisor exits 0, SUPERVISOR_EXIT_CONFIG then being no config error;
 * - PIXQ_CPU_AFFINITY=1 pins the child of slot i to the i-th CPU the supervisor may use, and a
 *   single process (supervisor_pin_single()) to the first, only then;
 * - a fork that fails is tried again PIXQ_RESTART_BACKOFF_MIN_MS later, not sooner; SIGHUP
 *   stops the supervisor. */
#define _GNU_SOURCE /* timegm, sched_getaffinity */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "check.h"
#include "clock.h"
#include "err.h"
#include "metrics.h"
#include "supervisor.h"

#define MAX_RUNS      16
#define QUICK_EXIT_MS 1500 /* PIXQ_RESTART_QUICK_EXIT_MS: well above a dying child's uptime */
/* the longest a scenario may take: only a broken supervisor comes near */
#define LIMIT_MS 20000

/* Written by the children, read by this process. */
struct shared {
    int runs; /* child_run calls so far; each takes the next index */
    pid_t pid[MAX_RUNS];
    long start_ms[MAX_RUNS]; /* monotonic, as the run began */
    long end_ms[MAX_RUNS];   /* monotonic, as it returned */
    int signal[MAX_RUNS];    /* the first stop signal the run saw, 0: none */
    int cpu[MAX_RUNS];       /* the one CPU the run may use, -1: several */
};

static struct shared *sh;
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    if (got_signal == 0) {
        got_signal = sig;
    }
}

/* In each child before its signals are let in, as the worker installs its handlers. */
static void child_setup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
}

static int run_begin(void)
{
    int k = __atomic_fetch_add(&sh->runs, 1, __ATOMIC_SEQ_CST);
    if (k >= MAX_RUNS) {
        _exit(99); /* a supervisor that restarts too often: the counts tell */
    }
    sh->pid[k] = getpid();
    sh->start_ms[k] = clock_mono_ms();
    cpu_set_t set;
    sh->cpu[k] = -1;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1) {
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
            sh->cpu[k] = CPU_ISSET(cpu, &set) ? cpu : sh->cpu[k];
        }
    }
    __atomic_store_n(&sh->signal[k], 0, __ATOMIC_SEQ_CST);
    return k;
}

/* Waits for a stop signal and records it; with `stay`, keeps waiting (only SIGKILL ends it). */
static int await_stop(int k, int stay)
{
    sigset_t stops, old;
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGHUP);
    sigaddset(&stops, SIGQUIT);
    sigprocmask(SIG_BLOCK, &stops, &old);
    while (got_signal == 0) {
        sigsuspend(&old);
    }
    __atomic_store_n(&sh->signal[k], (int)got_signal, __ATOMIC_SEQ_CST);
    while (stay) {
        sigsuspend(&old);
    }
    sh->end_ms[k] = clock_mono_ms();
    return 0;
}

/* ---------------------------------------------------------------- running a supervisor */

static char log_path[64];
static pid_t supervisor_pid; /* of the last run_supervisor() */
static bool forks_refused;   /* run_supervisor(): the supervisor's fork(2) fails with EAGAIN */
static const char *stop_on;  /* run_supervisor(): the stop signal once the log has ... */
static int stop_on_count;    /* ... this many lines of event `stop_on` */

/* Valgrind 3.19 leaves every signal blocked after a fork that fails (its fork restores the mask
 * only on success). The guest's stack grows by a SIGSEGV that valgrind serves, so the first
 * growth after such a fork killed the supervisor with signal 11. Grown here beforehand. */
static void __attribute__((noinline)) grow_stack(void)
{
    volatile char pad[256 * 1024];
    for (size_t i = sizeof pad; i > 0; i -= 1024) {
        pad[i - 1] = 0;
    }
}

/* Makes every clone(2) of this process fail with EAGAIN, as a full pids cgroup does (a seccomp
 * filter). Returns 0, or -1 if it cannot here. */
static int refuse_forks(void)
{
    grow_stack();
#if defined(__x86_64__)
    const unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned arch = AUDIT_ARCH_AARCH64;
#else
    return -1;
#endif
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
        return -1;
    }
    return 0;
}

/* How many lines of the log at log_path are of `event`. */
static int logged(const char *event)
{
    char pat[64], line[512];
    snprintf(pat, sizeof pat, " event=%s ", event);
    int n = 0;
    FILE *f = fopen(log_path, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, pat) != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

/* Runs supervisor_run() in a process of its own with these settings and child runs, its log in
 * log_path. `stop_when_ready`: once that many runs wait for a signal (or once the log shows
 * stop_on_count lines of `stop_on`, if set), the supervisor gets `stop_sig`. Returns its exit
 * status, or -1 if it took LIMIT_MS (it and its children are killed then). */
static int run_supervisor(const struct cfg *cfg, int (*child_run)(const struct cfg *),
                          int stop_when_ready, int stop_sig)
{
    memset(sh, 0, sizeof *sh);
    unlink(log_path); /* no lines of the last run counted by logged() */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0) {
            _exit(98);
        }
        close(fd);
        if (forks_refused && refuse_forks() < 0) {
            _exit(97);
        }
        const struct supervisor_opts o = {cfg, NULL, child_setup, child_run};
        _exit(supervisor_run(&o));
    }
    CHECK(pid > 0);
    supervisor_pid = pid;
    if (pid < 0) {
        return -1;
    }
    long deadline = clock_mono_ms() + LIMIT_MS;
    int status = 0;
    bool stopped = stop_when_ready == 0 && stop_on == NULL;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        if (!stopped &&
            (stop_on != NULL ? logged(stop_on) >= stop_on_count
                             : __atomic_load_n(&sh->runs, __ATOMIC_SEQ_CST) >= stop_when_ready)) {
            /* the children run child_setup() before they count themselves: they hear it. First
             * a SIGPIPE, as a write to a metrics client that hung up raises: ignored */
            kill(pid, SIGPIPE);
            kill(pid, stop_sig);
            stopped = true;
        }
        if (clock_mono_ms() > deadline) {
            fprintf(stderr, "the supervisor did not end within %d ms\n", LIMIT_MS);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            for (int k = 0; k < MAX_RUNS && k < sh->runs; k++) {
                kill(sh->pid[k], SIGKILL);
            }
            CHECK(0);
            return -1;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "the supervisor was killed by signal %d\n", WTERMSIG(status));
    }
    CHECK(WIFEXITED(status));
    /* a supervisor returns once it has reaped every child: none may be left */
    for (int k = 0; k < MAX_RUNS && k < sh->runs; k++) {
        if (kill(sh->pid[k], 0) == 0 || errno != ESRCH) {
            fprintf(stderr, "child %ld is still there\n", (long)sh->pid[k]);
            kill(sh->pid[k], SIGKILL);
            CHECK(!WIFEXITED(status)); /* already failed otherwise */
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* pixq_worker_restarts_total in the metrics this process shares with the supervisors it forks
 * (-1 if it is not there). */
static long restarts_total(void)
{
    struct buf b;
    buf_init(&b, 0);
    long n = -1;
    if (metrics_render(&b) == 0 && b.data != NULL) { /* NUL-terminated */
        const char *line = strstr(b.data, "\npixq_worker_restarts_total ");
        n = line != NULL ? strtol(line + strlen("\npixq_worker_restarts_total "), NULL, 10) : -1;
    }
    buf_finish(&b);
    return n;
}

/* ---------------------------------------------------------------- reading its log */

#define MAX_LINES 64

struct event {
    char line[512];
};

static struct event events[MAX_LINES];
static int n_events;

static void read_log(void)
{
    n_events = 0;
    FILE *f = fopen(log_path, "r");
    CHECK(f != NULL);
    if (f == NULL) {
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        if (n_events < MAX_LINES) {
            snprintf(events[n_events++].line, sizeof events[0].line, "%s", line);
        }
    }
    fclose(f);
}

/* The value of `key=` in `line` (up to the next space), into `out`; "" if there is none. */
static const char *field(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    size_t n = strlen(pat);
    const char *p = line;
    while (p != NULL && !(strncmp(p, pat, n) == 0 && (p == line || p[-1] == ' '))) {
        p = strstr(p + 1, pat);
    }
    out[0] = '\0';
    if (p != NULL) {
        p += n;
        size_t len = strcspn(p, " \n");
        snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), p);
    }
    return out;
}

static long field_long(const char *line, const char *key)
{
    char v[64];
    field(line, key, v, sizeof v);
    return v[0] != '\0' ? strtol(v, NULL, 10) : -999;
}

/* Whether `line` (NULL: none) is at `level`. */
static bool at_level(const char *line, const char *level)
{
    char v[16];
    return line != NULL && strcmp(field(line, "level", v, sizeof v), level) == 0;
}

/* The k-th line (from 0) of `event`, or NULL. */
static const char *nth(const char *event, int k)
{
    char v[64];
    for (int i = 0; i < n_events; i++) {
        if (strcmp(field(events[i].line, "event", v, sizeof v), event) == 0 && k-- == 0) {
            return events[i].line;
        }
    }
    return NULL;
}

static int count(const char *event)
{
    int n = 0;
    while (nth(event, n) != NULL) {
        n++;
    }
    return n;
}

/* The child_start line of `pid`, or NULL. */
static const char *start_of(pid_t pid)
{
    const char *s;
    for (int i = 0; (s = nth("child_start", i)) != NULL; i++) {
        if (field_long(s, "child_pid") == pid) {
            return s;
        }
    }
    return NULL;
}

/* A line's ts as unix milliseconds. */
static long long ts_ms(const char *line)
{
    char v[64];
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    if (line == NULL ||
        sscanf(field(line, "ts", v, sizeof v), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7) {
        CHECK(0);
        return 0;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000 + ms;
}

static void base_cfg(struct cfg *c)
{
    cfg_defaults(c);
    c->processes = 2;
    c->restart_quick_exit_ms = QUICK_EXIT_MS;
    c->restart_backoff_min_ms = 40;
    c->restart_backoff_max_ms = 150;
    /* children that hear the stop end well before this, even under valgrind on a loaded machine
     * (3 of them pinned to one CPU took over 600 ms there); stragglers_killed shortens it */
    c->shutdown_timeout_ms = 4000;
    c->stop_grace_ms = 1000;
}

/* ---------------------------------------------------------------- back-off */

#define DYING        8 /* runs of the dying slot: the 6th lives past the quick-exit time */
#define LONG_LIFE_MS (QUICK_EXIT_MS + 300)

/* The first run stays until stopped; the others die, young but for the 6th; the last stops
 * the supervisor. */
static int backoff_child(const struct cfg *cfg)
{
    (void)cfg;
    int k = run_begin();
    if (k == 0) {
        return await_stop(k, 0);
    }
    if (k == DYING) {
        kill(getppid(), SIGTERM);
        return await_stop(k, 0);
    }
    if (k == 6) {
        struct timespec ts = {LONG_LIFE_MS / 1000, (LONG_LIFE_MS % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
    sh->end_ms[k] = clock_mono_ms();
    return 1;
}

static void test_backoff(void)
{
    struct cfg c;
    base_cfg(&c);
    long restarts = restarts_total();
    CHECK_INT(run_supervisor(&c, backoff_child, 0, 0), 0);
    read_log();
    /* pixq_worker_restarts_total: every start but the first two */
    CHECK_INT(restarts_total() - restarts, DYING - 1);
    CHECK_INT(sh->runs, DYING + 1);
    CHECK_INT(count("child_start"), DYING + 1);
    /* runs 1..7 died (status 1), then runs 0 and 8 stopped */
    CHECK_INT(count("child_exit"), DYING + 1);
    const long want[DYING - 1] = {0, 40, 80, 150, 150, 0, 0}; /* 160 capped at 150 */
    long late = 0; /* how much later than said the restarts began, in all */
    for (int k = 1; k < DYING; k++) {
        const char *e = nth("child_exit", k - 1);
        CHECK(e != NULL);
        if (e == NULL) {
            return;
        }
        CHECK_INT(field_long(e, "child_pid"), sh->pid[k]);
        CHECK_INT(field_long(e, "status"), 1);
        CHECK_INT(field_long(e, "restart_in_ms"), want[k - 1]);
        CHECK(at_level(e, "warn"));
        /* the next run began no sooner than the supervisor said */
        long gap = sh->start_ms[k + 1] - sh->end_ms[k];
        if (gap < want[k - 1]) {
            fprintf(stderr, "run %d began %ld ms after run %d ended, want >= %ld\n", k + 1, gap, k,
                    want[k - 1]);
            CHECK(0);
        }
        late += gap - want[k - 1];
    }
    /* and not much later: the supervisor looks at least every 100 ms (a generous margin for a
     * loaded machine) */
    if (late > 3500) {
        fprintf(stderr, "the restarts began %ld ms later than said, in all\n", late);
        CHECK(0);
    }
    CHECK(field_long(nth("child_exit", 5), "uptime_ms") >= QUICK_EXIT_MS);
    /* every restart was of the dying slot (the first two runs may have begun in either order) */
    char stay[16], dying[16], slot[16];
    field(start_of(sh->pid[0]), "slot", stay, sizeof stay);
    field(start_of(sh->pid[1]), "slot", dying, sizeof dying);
    CHECK(strcmp(stay, dying) != 0);
    for (int i = 1; i <= DYING; i++) {
        CHECK_STR(field(start_of(sh->pid[i]), "slot", slot, sizeof slot), dying);
        if (i >= 2) { /* and in the order the runs began */
            CHECK_INT(field_long(nth("child_start", i), "child_pid"), sh->pid[i]);
        }
    }
    /* both stopped on the SIGTERM, cleanly */
    for (int i = DYING - 1; i <= DYING; i++) {
        const char *e = nth("child_exit", i);
        CHECK_INT(field_long(e, "status"), 0);
        CHECK_INT(field_long(e, "restart_in_ms"), -1);
        CHECK(at_level(e, "info"));
    }
    CHECK_INT(sh->signal[0], SIGTERM);
    CHECK_INT(sh->signal[DYING], SIGTERM);
    CHECK_INT(field_long(nth("supervisor_stop", 0), "killed"), 0);
    /* the supervisor's lines name it: children log to the same stderr */
    CHECK_INT(field_long(nth("supervisor_start", 0), "pid"), supervisor_pid);
    CHECK_INT(field_long(nth("child_exit", 0), "pid"), supervisor_pid);
}

/* ---------------------------------------------------------------- stop and kill */

static int stubborn_child(const struct cfg *cfg)
{
    (void)cfg;
    return await_stop(run_begin(), 1);
}

static int stopping_child(const struct cfg *cfg)
{
    (void)cfg;
    return await_stop(run_begin(), 0);
}

static void test_stragglers_killed(void)
{
    struct cfg c;
    base_cfg(&c);
    c.shutdown_timeout_ms = 300;
    c.stop_grace_ms = 300;
    CHECK_INT(run_supervisor(&c, stubborn_child, 2, SIGINT), 1);
    read_log();
    CHECK_INT(sh->runs, 2);
    CHECK_INT(sh->signal[0], SIGTERM); /* forwarded as SIGTERM */
    CHECK_INT(sh->signal[1], SIGTERM);
    const char *stopping = nth("supervisor_stopping", 0), *killed = nth("children_killed", 0);
    CHECK_INT(field_long(stopping, "signal"), SIGINT);
    CHECK_INT(field_long(stopping, "children"), 2);
    CHECK_INT(field_long(killed, "children"), 2);
    CHECK_INT(field_long(killed, "waited_ms"), 600);
    CHECK_INT(count("children_killed"), 1); /* once */
    /* not before PIXQ_SHUTDOWN_TIMEOUT_MS + PIXQ_STOP_GRACE_MS (less the time between the
     * supervisor's look at its clock and its log line) */
    long long waited = ts_ms(killed) - ts_ms(stopping);
    if (waited < 550) {
        fprintf(stderr, "children killed %lld ms after the stop, want >= 600\n", waited);
        CHECK(0);
    }
    CHECK_INT(count("child_exit"), 2);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(field_long(nth("child_exit", i), "signal"), SIGKILL);
        CHECK(at_level(nth("child_exit", i), "warn")); /* not a clean stop */
        CHECK_INT(field_long(nth("child_exit", i), "restart_in_ms"), -1);
    }
    CHECK_INT(count("child_start"), 2);
    CHECK_INT(field_long(nth("supervisor_stop", 0), "killed"), 1);
}

/* ---------------------------------------------------------------- a child's config error */

static int config_child(const struct cfg *cfg)
{
    (void)cfg;
    int k = run_begin();
    if (k == 0) {
        return await_stop(k, 0);
    }
    return SUPERVISOR_EXIT_CONFIG; /* run 0 has its handlers: it hears the stop */
}

static void test_config_error(void)
{
    struct cfg c;
    base_cfg(&c);
    CHECK_INT(run_supervisor(&c, config_child, 0, 0), SUPERVISOR_EXIT_CONFIG);
    read_log();
    CHECK_INT(sh->runs, 2);
    CHECK_INT(count("child_start"), 2);
    CHECK_INT(count("child_config_error"), 1);
    CHECK_INT(field_long(nth("child_config_error", 0), "child_pid"), sh->pid[1]);
    CHECK_INT(field_long(nth("supervisor_stopping", 0), "signal"), SIGTERM);
    CHECK_INT(sh->signal[0], SIGTERM);
    CHECK_INT(count("child_exit"), 2);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(field_long(nth("child_exit", i), "restart_in_ms"), -1);
    }
    CHECK_INT(field_long(nth("supervisor_stop", 0), "killed"), 0);
}

/* Stopped: run 0 fails (status 1), run 1 says SUPERVISOR_EXIT_CONFIG. */
static int failing_stop_child(const struct cfg *cfg)
{
    (void)cfg;
    int k = run_begin();
    await_stop(k, 0);
    return k == 0 ? 1 : SUPERVISOR_EXIT_CONFIG;
}

static void test_failing_stop(void)
{
    struct cfg c;
    base_cfg(&c);
    CHECK_INT(run_supervisor(&c, failing_stop_child, 2, SIGQUIT), 0);
    read_log();
    CHECK_INT(sh->runs, 2);
    CHECK_INT(sh->signal[0], SIGTERM);
    CHECK_INT(sh->signal[1], SIGTERM);
    CHECK_INT(field_long(nth("supervisor_stopping", 0), "signal"), SIGQUIT);
    CHECK_INT(count("child_config_error"), 0); /* the stop's, not the settings' */
    CHECK_INT(count("child_exit"), 2);
    for (int i = 0; i < 2; i++) {
        const char *e = nth("child_exit", i);
        long pid = field_long(e, "child_pid");
        CHECK_INT(field_long(e, "status"), pid == sh->pid[0] ? 1 : SUPERVISOR_EXIT_CONFIG);
        CHECK_INT(field_long(e, "restart_in_ms"), -1);
        CHECK(at_level(e, "warn")); /* not a clean stop */
    }
    CHECK_INT(field_long(nth("supervisor_stop", 0), "killed"), 0);
}

/* ---------------------------------------------------------------- CPU affinity */

/* With PIXQ_CPU_AFFINITY=1 the child of slot i runs on the i-th CPU the supervisor may use,
 * counting round past the last: here all of this process's CPUs but the first, so that
 * counting from CPU 0 instead would show, if that leaves two or more (with one, every slot
 * would have the same CPU, whichever slot's it took); else all of them. */
static void test_affinity(void)
{
    cpu_set_t all, some;
    if (sched_getaffinity(0, sizeof all, &all) < 0 || CPU_COUNT(&all) < 2) {
        printf("supervisor: affinity not tested: fewer than 2 CPUs here\n");
        return;
    }
    int cpus[CPU_SETSIZE], n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &all)) {
            cpus[n++] = cpu;
        }
    }
    int skip = n >= 3 ? 1 : 0; /* the CPUs given: cpus[skip] on */
    CPU_ZERO(&some);
    for (int i = skip; i < n; i++) {
        CPU_SET(cpus[i], &some);
    }
    CHECK(sched_setaffinity(0, sizeof some, &some) == 0);
    struct cfg c;
    base_cfg(&c);
    c.processes = n - skip + 1; /* one more than the CPUs it is given: the last counts round */
    c.cpu_affinity = true;
    CHECK_INT(run_supervisor(&c, stopping_child, (int)c.processes, SIGTERM), 0);
    CHECK(sched_setaffinity(0, sizeof all, &all) == 0);
    read_log();
    CHECK_INT(sh->runs, c.processes);
    CHECK_INT(count("child_start"), c.processes);
    for (int k = 0; k < sh->runs && k < MAX_RUNS; k++) {
        const char *s = start_of(sh->pid[k]);
        long slot = field_long(s, "slot");
        CHECK(slot >= 0 && slot < c.processes);
        int want = cpus[skip + slot % (n - skip)];
        CHECK_INT(sh->cpu[k], want);
        CHECK_INT(field_long(s, "cpu"), want);
    }
    CHECK_INT(count("cpu_affinity"), c.processes);
    CHECK_INT(count("cpu_affinity_failed"), 0);
}

/* supervisor_pin_single(), in a child given every CPU of this process's but the first: without
 * PIXQ_CPU_AFFINITY it leaves the CPUs alone; with it, keeps the process on the first it may
 * use. The child's exit status: a bit for each check that failed. */
static void test_pin_single(void)
{
    cpu_set_t all, some, now;
    if (sched_getaffinity(0, sizeof all, &all) < 0 || CPU_COUNT(&all) < 2) {
        printf("supervisor: pin_single not tested: fewer than 2 CPUs here\n");
        return;
    }
    int first = -1, second = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && second < 0; cpu++) {
        if (CPU_ISSET(cpu, &all)) {
            *(first < 0 ? &first : &second) = cpu;
        }
    }
    some = all;
    CPU_CLR(first, &some);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd < 0 || dup2(fd, 2) < 0 || sched_setaffinity(0, sizeof some, &some) != 0) {
            _exit(64);
        }
        struct cfg c;
        base_cfg(&c);
        c.processes = 1;
        int bad = supervisor_pin_single(&c) != -1;
        bad |= (sched_getaffinity(0, sizeof now, &now) != 0 || !CPU_EQUAL(&now, &some)) << 1;
        c.cpu_affinity = true;
        bad |= (supervisor_pin_single(&c) != second) << 2;
        bad |= (sched_getaffinity(0, sizeof now, &now) != 0 || CPU_COUNT(&now) != 1 ||
                !CPU_ISSET(second, &now))
               << 3;
        _exit(bad);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), 0);
}

/* ---------------------------------------------------------------- fork(2) failing */

/* A fork that fails (a full pids cgroup) is tried again PIXQ_RESTART_BACKOFF_MIN_MS later, for
 * each slot, until it works or the fleet stops: 250 ms, more than a tick (100 ms), so that a
 * try at each look would show. */
static void test_fork_failed(void)
{
    struct cfg c;
    base_cfg(&c);
    c.restart_backoff_min_ms = 250;
    forks_refused = true;
    /* two tries for each slot; stopped then, not at a set time, which a loaded machine may reach
     * before the supervisor has its signal handlers (SIGPIPE would kill it) */
    stop_on = "child_fork_failed";
    stop_on_count = 4;
    long restarts = restarts_total();
    CHECK_INT(run_supervisor(&c, stopping_child, 0, SIGHUP), 0);
    /* no worker was started, again or at all: pixq_worker_restarts_total stays */
    CHECK_INT(restarts_total() - restarts, 0);
    forks_refused = false;
    stop_on = NULL;
    read_log();
    CHECK_INT(sh->runs, 0);
    CHECK_INT(count("child_start"), 0);
    int tries[2] = {0, 0};
    long long last[2] = {0, 0}; /* the last try's ts */
    const char *e;
    for (int i = 0; (e = nth("child_fork_failed", i)) != NULL; i++) {
        long slot = field_long(e, "slot");
        CHECK(slot == 0 || slot == 1);
        tries[slot == 1] += slot == 0 || slot == 1;
        CHECK_INT(field_long(e, "retry_ms"), 250);
        /* logged before the supervisor reads its clock for the retry: no less apart than that
         * (but for the ts's rounding to the millisecond) */
        long long at = ts_ms(e);
        if (tries[slot == 1] > 1 && at - last[slot == 1] < 249) {
            fprintf(stderr, "slot %ld tried again %lld ms later\n", slot, at - last[slot == 1]);
            CHECK(0);
        }
        last[slot == 1] = at;
        /* the reason quoted, as a value with spaces must be */
        char want[128];
        snprintf(want, sizeof want, " error=\"%s\" ", strerror(EAGAIN));
        CHECK(strstr(e, want) != NULL);
    }
    /* at 0 ms, then at each look (every 100 ms) from 250 ms after the last */
    CHECK(tries[0] >= 2);
    CHECK(tries[1] >= 2);
    CHECK_INT(field_long(nth("supervisor_stopping", 0), "signal"), SIGHUP);
    CHECK_INT(field_long(nth("supervisor_stopping", 0), "children"), 0);
    CHECK_INT(field_long(nth("supervisor_stop", 0), "killed"), 0);
}

/* Runs one scenario; prints the supervisor's log if it failed a check. */
static void scenario(const char *name, void (*fn)(void))
{
    int failed = check_failed;
    fn();
    if (check_failed != failed || getenv("PIXQ_TEST_SUPERVISOR_LOG") != NULL) {
        fprintf(stderr, "--- %s: the supervisor's log\n", name);
        for (int i = 0; i < n_events; i++) {
            fputs(events[i].line, stderr);
        }
    }
}

int main(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    if (sh == MAP_FAILED) {
        return check_summary("supervisor");
    }
    snprintf(log_path, sizeof log_path, "/tmp/pixq-test-supervisor-%ld.log", (long)getpid());
    struct err e = {{0}};
    CHECK_INT(metrics_init(&e), 0); /* shared with the supervisors forked here */
    scenario("backoff", test_backoff);
    scenario("stragglers_killed", test_stragglers_killed);
    scenario("config_error", test_config_error);
    scenario("failing_stop", test_failing_stop);
    scenario("affinity", test_affinity);
    scenario("pin_single", test_pin_single);
    scenario("fork_failed", test_fork_failed);
    unlink(log_path);
    munmap(sh, sizeof *sh);
    return check_summary("supervisor");
}
