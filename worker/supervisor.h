/* supervisor: `pixq-worker --processes N`, N single-threaded worker processes on one machine.
 *
 * The supervisor forks N children and does no job work itself: each child initialises
 * ImageMagick, curl and its Redis connections after the fork and serves jobs under its own worker
 * id. A child that dies is started again (logged as child_exit with its pid and exit status or
 * signal); a child that dies within PIXQ_RESTART_QUICK_EXIT_MS (10 s) of its start counts as a
 * crash loop and waits before its next start, PIXQ_RESTART_BACKOFF_MIN_MS (1 s) doubling up to
 * PIXQ_RESTART_BACKOFF_MAX_MS (30 s) (the first such restart is immediate). SIGTERM, SIGINT,
 * SIGHUP or SIGQUIT is forwarded to every child as SIGTERM, their graceful stop
 * (PIXQ_SHUTDOWN_TIMEOUT_MS); the supervisor waits for all of them. A child still there
 * PIXQ_STOP_GRACE_MS (5 s) after that timeout is killed. Each child asks the kernel for SIGTERM
 * when the supervisor dies (PR_SET_PDEATHSIG), so none is left behind even after a SIGKILL.
 *
 * With PIXQ_CPU_AFFINITY=1 the child of slot i runs only on the i-th of the CPUs the supervisor
 * may use when it starts the child (counting round again past the last), and so do the children
 * that replace it; child_start names the CPU assigned, and the child logs cpu_affinity once it
 * runs there (or cpu_affinity_failed, and runs unpinned). On a machine that runs little besides
 * the workers, each worker then keeps a core and its caches to itself, and the cores stay busier
 * (tests/bench/RESULTS.md).
 *
 * The supervisor also serves the metrics endpoint, if any, from its own loop (it never starts a
 * thread, so forking stays safe). */
#ifndef PIXQ_SUPERVISOR_H
#define PIXQ_SUPERVISOR_H

#include "cfg.h"
#include "metrics_http.h"

/* A child's exit status for settings it cannot work with (Redis refusing the login): the
 * supervisor stops every child and exits with it too. */
#define SUPERVISOR_EXIT_CONFIG 2

struct supervisor_opts {
    const struct cfg *cfg;     /* cfg->processes children */
    struct mhttp *metrics;     /* served by the supervisor; closed in the children; NULL: none */
    void (*child_setup)(void); /* in each child, before signals are let in: install handlers */
    int (*child_run)(const struct cfg *cfg); /* the child's work; returns its exit status */
};

/* Runs the supervisor until it is asked to stop and every child has exited. Returns the exit
 * status: 0, or 1 if a child had to be killed at the end. Never returns in a child. */
int supervisor_run(const struct supervisor_opts *o);

/* --processes 1 with PIXQ_CPU_AFFINITY=1: keeps this process on the first CPU it may use and
 * logs cpu_affinity. Returns that CPU, or -1: affinity off, or it failed (logged). */
int supervisor_pin_single(const struct cfg *cfg);

#endif
