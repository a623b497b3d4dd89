#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include "supervisor.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

#define TICK_MS 100 /* longest wait between looks at children and signals */

/* One worker process slot. */
struct child {
    pid_t pid;          /* 0: not running */
    long started_ms;    /* monotonic */
    long restart_at_ms; /* monotonic; when pid is 0 */
    int quick_exits;    /* deaths in a row, each within PIXQ_RESTART_QUICK_EXIT_MS of its start */
    bool ran;           /* a child of this slot has been started */
};

struct sup {
    const struct supervisor_opts *o;
    struct child *kids;
    long n;
    pid_t self;
    bool stopping;
    long stop_deadline_ms; /* monotonic: children still there then are killed */
    bool killed;
    bool config_error; /* a child exited with SUPERVISOR_EXIT_CONFIG: the fleet stops */
};

static volatile sig_atomic_t stop_signal; /* the SIGTERM, SIGINT, SIGHUP or SIGQUIT, 0: none */

static void on_stop(int sig)
{
    stop_signal = sig;
}

static void on_child(int sig)
{
    (void)sig; /* only wakes the loop up */
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---------------------------------------------------------------- CPU affinity */

/* The slot-th of the CPUs in `allowed`, counting round again past the last; -1 if none. */
static int slot_cpu(const cpu_set_t *allowed, long slot)
{
    int count = CPU_COUNT(allowed);
    if (count == 0 || slot < 0) {
        return -1;
    }
    long k = slot % count;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, allowed) && k-- == 0) {
            return cpu;
        }
    }
    return -1;
}

/* The CPU of `slot` among those this process may use now (a cpuset can change while the
 * supervisor runs); -1 with a warning if they cannot be read (up to CPU_SETSIZE, 1024, CPUs). */
static int assigned_cpu(long slot)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0) {
        LOG_WARN("cpu_affinity_failed", "slot=%ld error=\"%s\"", slot, strerror(errno));
        return -1;
    }
    return slot_cpu(&allowed, slot);
}

/* Keeps this process on `cpu` and logs the outcome: cpu_affinity, or cpu_affinity_failed (a
 * system call filter can refuse it) after which the process runs unpinned. */
static int pin_self(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) < 0) {
        LOG_WARN("cpu_affinity_failed", "cpu=%d error=\"%s\"", cpu, strerror(errno));
        return -1;
    }
    LOG_INFO("cpu_affinity", "cpu=%d", cpu);
    return 0;
}

int supervisor_pin_single(const struct cfg *cfg)
{
    if (!cfg->cpu_affinity) {
        return -1;
    }
    int cpu = assigned_cpu(0);
    return cpu >= 0 && pin_self(cpu) == 0 ? cpu : -1;
}

/* ---------------------------------------------------------------- children */

/* In the child of slot `slot`: never returns. The supervisor's signals are still blocked here. */
static void child_main(struct sup *s, long slot, int cpu, const sigset_t *unblocked)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != s->self) {
        _exit(0); /* the supervisor died before the request took effect */
    }
    log_set_pid((long)getpid());
    if (cpu >= 0) {
        (void)pin_self(cpu); /* before ImageMagick and its memory are set up */
    }
    mhttp_forget(s->o->metrics);
    metrics_use_slot(slot); /* where its lease's time goes */
    free(s->kids);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    s->o->child_setup();
    sigprocmask(SIG_SETMASK, unblocked, NULL);
    exit(s->o->child_run(s->o->cfg));
}

/* Starts the child of slot `i`; returns whether it was (else it is tried again later). */
static bool spawn(struct sup *s, long i)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    int cpu = s->o->cfg->cpu_affinity ? assigned_cpu(i) : -1;
    pid_t pid = fork();
    if (pid == 0) {
        child_main(s, i, cpu, &old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    struct child *c = &s->kids[i];
    if (pid < 0) {
        long wait = s->o->cfg->restart_backoff_min_ms;
        LOG_ERROR("child_fork_failed", "slot=%ld error=\"%s\" retry_ms=%ld", i, strerror(errno),
                  wait);
        c->restart_at_ms = clock_mono_ms() + wait;
        return false;
    }
    c->pid = pid;
    c->started_ms = clock_mono_ms();
    c->ran = true;
    if (cpu >= 0) {
        LOG_INFO("child_start", "slot=%ld child_pid=%ld cpu=%d", i, (long)pid, cpu);
    } else {
        LOG_INFO("child_start", "slot=%ld child_pid=%ld", i, (long)pid);
    }
    return true;
}

/* When a child that just died may start again: at once, unless it keeps dying young. */
static long plan_restart(const struct cfg *cfg, struct child *c, long uptime_ms, long now)
{
    c->quick_exits = uptime_ms < cfg->restart_quick_exit_ms ? c->quick_exits + 1 : 0;
    long delay = 0, max = cfg->restart_backoff_max_ms;
    if (c->quick_exits >= 2) {
        delay = cfg->restart_backoff_min_ms;
        for (int i = 2; i < c->quick_exits && delay < max; i++) {
            delay *= 2;
        }
        delay = delay > max ? max : delay;
    }
    c->restart_at_ms = now + delay;
    return delay;
}

static void child_exited(struct sup *s, pid_t pid, int status)
{
    long i = 0;
    while (i < s->n && s->kids[i].pid != pid) {
        i++;
    }
    if (i == s->n) {
        return;
    }
    struct child *c = &s->kids[i];
    long now = clock_mono_ms(), uptime = now - c->started_ms;
    c->pid = 0;
    metrics_clear_slot(i); /* its lease is the fleet's to take now, not this machine's to hold */
    if (!s->stopping && WIFEXITED(status) && WEXITSTATUS(status) == SUPERVISOR_EXIT_CONFIG) {
        /* restarting cannot help: every child has the same settings */
        LOG_ERROR("child_config_error", "slot=%ld child_pid=%ld status=%d", i, (long)pid,
                  WEXITSTATUS(status));
        s->config_error = true;
        stop_signal = stop_signal != 0 ? stop_signal : SIGTERM;
    }
    long delay = s->stopping || s->config_error ? -1 : plan_restart(s->o->cfg, c, uptime, now);
    bool clean = s->stopping && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    enum log_level level = clean ? LOG_LEVEL_INFO : LOG_LEVEL_WARN;
    if (WIFSIGNALED(status)) {
        LOG_AT(level, "child_exit",
               "slot=%ld child_pid=%ld signal=%d uptime_ms=%ld restart_in_ms=%ld", i, (long)pid,
               WTERMSIG(status), uptime, delay);
    } else {
        LOG_AT(level, "child_exit",
               "slot=%ld child_pid=%ld status=%d uptime_ms=%ld restart_in_ms=%ld", i, (long)pid,
               WEXITSTATUS(status), uptime, delay);
    }
}

static void reap(struct sup *s)
{
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            return;
        }
        child_exited(s, pid, status);
    }
}

static long live(const struct sup *s)
{
    long n = 0;
    for (long i = 0; i < s->n; i++) {
        n += s->kids[i].pid > 0;
    }
    return n;
}

/* ---------------------------------------------------------------- the loop */

static void restart_due(struct sup *s)
{
    if (stop_signal != 0) { /* a stop begins on the next turn (a child's config error) */
        return;
    }
    long now = clock_mono_ms();
    for (long i = 0; i < s->n; i++) {
        if (s->kids[i].pid == 0 && now >= s->kids[i].restart_at_ms) {
            /* a worker started again: not a fork that failed, nor a slot's first start */
            bool again = s->kids[i].ran;
            if (spawn(s, i) && again) {
                metrics_count_restart();
            }
        }
    }
}

static void signal_all(struct sup *s, int sig)
{
    for (long i = 0; i < s->n; i++) {
        if (s->kids[i].pid > 0) {
            kill(s->kids[i].pid, sig);
        }
    }
}

static void begin_stop(struct sup *s)
{
    s->stopping = true;
    s->stop_deadline_ms =
        clock_mono_ms() + s->o->cfg->shutdown_timeout_ms + s->o->cfg->stop_grace_ms;
    LOG_INFO("supervisor_stopping", "signal=%d children=%ld", (int)stop_signal, live(s));
    signal_all(s, SIGTERM);
}

static void enforce_deadline(struct sup *s)
{
    if (s->killed || clock_mono_ms() < s->stop_deadline_ms) {
        return;
    }
    LOG_ERROR("children_killed", "children=%ld waited_ms=%ld", live(s),
              s->o->cfg->shutdown_timeout_ms + s->o->cfg->stop_grace_ms);
    signal_all(s, SIGKILL);
    s->killed = true;
}

/* Waits a tick, serving metrics meanwhile; a signal ends the wait early. */
static void wait_tick(struct sup *s)
{
    if (s->o->metrics != NULL) {
        mhttp_serve(s->o->metrics, TICK_MS);
        return;
    }
    struct timespec ts = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L};
    nanosleep(&ts, NULL);
}

int supervisor_run(const struct supervisor_opts *o)
{
    struct sup s = {.o = o, .n = o->cfg->processes, .self = getpid()};
    s.kids = calloc((size_t)s.n, sizeof *s.kids);
    if (s.kids == NULL) {
        LOG_ERROR("supervisor_failed", "error=\"out of memory\"");
        return 1;
    }
    log_set_pid((long)s.self);
    install_signals();
    LOG_INFO("supervisor_start", "processes=%ld", s.n);
    for (long i = 0; i < s.n; i++) {
        spawn(&s, i);
    }
    for (;;) {
        if (stop_signal != 0 && !s.stopping) {
            begin_stop(&s);
        }
        reap(&s);
        long alive = live(&s);
        metrics_set_processes(alive);
        if (s.stopping && alive == 0) {
            break;
        }
        if (s.stopping) {
            enforce_deadline(&s);
        } else {
            restart_due(&s);
        }
        wait_tick(&s);
    }
    LOG_INFO("supervisor_stop", "killed=%d", s.killed);
    free(s.kids);
    return s.config_error ? SUPERVISOR_EXIT_CONFIG : s.killed ? 1 : 0;
}
