/* credproc: S3 keys from a program (credproc.h). */
#define _GNU_SOURCE /* pipe2, closefrom */
#include "credproc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

extern char **environ;

static bool word_break(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void credproc_argv_free(struct credproc_argv *a)
{
    free(a->text);
    free(a->argv);
    memset(a, 0, sizeof *a);
}

int credproc_split(const char *cmd, struct credproc_argv *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(cmd);
    /* every word is at most its input, and its NUL takes the place of a blank or a quote ('' is
     * a word of two input bytes) */
    char *text = malloc(2 * n + 2);
    char **argv = calloc(CREDPROC_ARGS_MAX + 1, sizeof *argv);
    if (text == NULL || argv == NULL) {
        free(text);
        free(argv);
        return err_set(e, "out of memory");
    }
    char *w = text, *start = NULL;
    size_t argc = 0;
    const char *why = NULL;
    for (const char *p = cmd; why == NULL;) {
        if (*p == '\0' || word_break(*p)) {
            if (start != NULL) {
                *w++ = '\0';
                if (argc == CREDPROC_ARGS_MAX) {
                    why = "has too many words";
                    break;
                }
                argv[argc++] = start;
                start = NULL;
            }
            if (*p == '\0') {
                break;
            }
            p++;
            continue;
        }
        start = start != NULL ? start : w;
        if (*p == '\'') { /* literal up to the next ' */
            const char *end = strchr(p + 1, '\'');
            if (end == NULL) {
                why = "has a ' that is not closed";
                break;
            }
            memcpy(w, p + 1, (size_t)(end - p - 1));
            w += end - p - 1;
            p = end + 1;
        } else if (*p == '"') { /* a backslash escapes only \ and " (as shlex reads it) */
            for (p++; *p != '\0' && *p != '"'; p++) {
                if (*p == '\\' && (p[1] == '\\' || p[1] == '"')) {
                    p++;
                }
                *w++ = *p;
            }
            if (*p == '\0') {
                why = "has a \" that is not closed";
                break;
            }
            p++;
        } else if (*p == '\\') {
            if (p[1] == '\0') {
                why = "ends with a backslash";
                break;
            }
            *w++ = p[1];
            p += 2;
        } else {
            *w++ = *p++;
        }
    }
    if (why == NULL && argc == 0) {
        why = "is empty";
    }
    if (why != NULL) {
        free(text);
        free(argv);
        return strcmp(why, "has too many words") == 0
                   ? err_set(e, "the command has more than %d words", CREDPROC_ARGS_MAX)
                   : err_set(e, "the command %s", why);
    }
    out->argv = argv;
    out->argc = argc;
    out->text = text;
    return 0;
}

/* Whether `path` is a regular file this process may execute: 0, or an errno. */
static int runnable(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        return errno;
    }
    if (!S_ISREG(st.st_mode)) {
        return EACCES;
    }
    return access(path, X_OK) == 0 ? 0 : errno;
}

/* Looks for `prog` as execvp would: at its path when it has a '/', else in each directory of PATH
 * (glibc's default without one). Returns 0 with its path in `full`, or an errno: "not allowed"
 * found anywhere beats "not there". */
static int locate(const char *prog, char *full, size_t cap)
{
    if (strchr(prog, '/') != NULL) {
        int n = snprintf(full, cap, "%s", prog);
        return n < 0 || (size_t)n >= cap ? ENAMETOOLONG : runnable(full);
    }
    const char *path = getenv("PATH");
    path = path != NULL ? path : "/bin:/usr/bin";
    int why = ENOENT;
    /* an empty element (a leading, doubled or trailing ':', or PATH="") is the current
     * directory */
    for (bool more = true; why != 0 && more;) {
        size_t n = strcspn(path, ":");
        int k = snprintf(full, cap, "%.*s%s%s", (int)n, path, n > 0 ? "/" : "", prog);
        if (k > 0 && (size_t)k < cap) {
            int r = runnable(full);
            why = r == 0 || why == ENOENT ? r : why;
        }
        more = path[n] == ':';
        path += n + (more ? 1 : 0);
    }
    return why;
}

int credproc_check(const char *cmd, struct err *e)
{
    struct credproc_argv a;
    if (credproc_split(cmd, &a, e) < 0) {
        return -1;
    }
    const char *prog = a.argv[0];
    char full[PATH_MAX];
    int why = locate(prog, full, sizeof full);
    int rc = why == 0 ? 0
             : strchr(prog, '/') == NULL && why == ENOENT
                 ? err_set(e, "%s is not found on PATH (%s)", prog,
                           getenv("PATH") != NULL ? getenv("PATH") : "")
                 : err_set(e, "%s cannot be run: %s", prog, strerror(why));
    credproc_argv_free(&a);
    return rc;
}

/* The worker's environment less pixq's own settings (PIXQ_*: Redis's password, the postback
 * secret, the metrics token are none of the program's business). NULL when out of memory. */
static char **program_environment(void)
{
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **env = calloc(n + 1, sizeof *env);
    if (env == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "PIXQ_", 5) != 0) {
            env[k++] = environ[i];
        }
    }
    return env;
}

/* Where the child tells why its exec failed: an errno on this descriptor, which the exec closes. */
#define REPORT_FD 3

/* In the child, between fork() and exec: only what a signal handler may call. Never returns. */
static void child_exec(const char *path, char *const argv[], char *const env[], const int src[3],
                       pid_t parent)
{
    /* ended with the worker's thread that started it: a worker killed while its program hangs
     * leaves none behind (what the program started itself is not reached) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) {
        _exit(127);
    }
    setpgid(0, 0);
    /* every signal to its default (none the worker ignores stays ignored), then unblocked */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++) {
        (void)sigaction(sig, &dfl, NULL); /* SIGKILL, SIGSTOP and glibc's own refuse: no matter */
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* its output, errors and report above 0 to 3 first, so that no dup2 below closes another */
    int high[3];
    for (int i = 0; i < 3; i++) {
        high[i] = fcntl(src[i], F_DUPFD, REPORT_FD + 1);
        if (high[i] < 0) {
            _exit(127);
        }
    }
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(high[0], STDOUT_FILENO) < 0 ||
        dup2(high[1], STDERR_FILENO) < 0 || dup2(high[2], REPORT_FD) < 0 ||
        fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC) < 0) {
        _exit(127);
    }
    /* none of the worker's other descriptors (Redis's and S3's connections are not
     * close-on-exec) */
    closefrom(REPORT_FD + 1);
    execve(path, argv, env);
    int why = errno;
    ssize_t rc = write(REPORT_FD, &why, sizeof why);
    (void)rc;
    _exit(127);
}

/* Starts a.argv with its output on *out_fd and its errors on *err_fd (the read ends). Returns
 * the pid, or -1 with why. */
static pid_t start(const struct credproc_argv *a, int *out_fd, int *err_fd, struct err *e)
{
    const char *prog = a->argv[0];
    char path[PATH_MAX];
    int why = locate(prog, path, sizeof path);
    if (why != 0) {
        return err_set(e, "cannot run %s: %s", prog, strerror(why));
    }
    char **env = program_environment();
    if (env == NULL) {
        return err_set(e, "out of memory");
    }
    int p[6] = {-1, -1, -1, -1, -1, -1}; /* output, errors, report: read end, write end */
    pid_t pid = -1;
    sigset_t all, old;
    sigfillset(&all);
    if (pipe2(p, O_CLOEXEC) == 0 && pipe2(p + 2, O_CLOEXEC) == 0 && pipe2(p + 4, O_CLOEXEC) == 0) {
        /* the worker's handlers must not run in the child before it sets them to default */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid_t self = getpid();
        pid = fork();
        if (pid == 0) {
            child_exec(path, a->argv, env, (const int[3]){p[1], p[3], p[5]}, self);
        }
        why = pid < 0 ? errno : 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    } else {
        why = errno;
    }
    free(env);
    for (int i = 1; i < 6; i += 2) {
        if (p[i] >= 0) {
            close(p[i]);
        }
    }
    if (pid > 0) { /* its report: nothing once the exec has closed it */
        ssize_t got;
        do {
            got = read(p[4], &why, sizeof why);
        } while (got < 0 && errno == EINTR);
        why = got == (ssize_t)sizeof why ? why : 0;
        if (why != 0) {
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
        }
    }
    if (p[4] >= 0) {
        close(p[4]);
    }
    if (why != 0) {
        for (int i = 0; i < 4; i += 2) {
            if (p[i] >= 0) {
                close(p[i]);
            }
        }
        return err_set(e, "cannot run %s: %s", prog, strerror(why));
    }
    *out_fd = p[0];
    *err_fd = p[2];
    return pid;
}

/* What the program wrote on its standard error, for a message: one line, control bytes as
 * blanks, blanks around cut. */
static void tidy(char *s)
{
    for (char *p = s; *p != '\0'; p++) {
        *p = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
    }
    size_t n = strlen(s), i = 0;
    while (n > 0 && s[n - 1] == ' ') {
        s[--n] = '\0';
    }
    while (s[i] == ' ') {
        i++;
    }
    memmove(s, s + i, n - i + 1);
}

/* How long, once the program has ended, what it wrote is still read: a child it left behind may
 * hold its pipes open for ever. */
#define CREDPROC_AFTER_EXIT_MS 100
#define CREDPROC_LOOK_MS       50 /* while its output is read, how often it is looked at */

/* The state of one run. */
struct run {
    pid_t pid;
    struct pollfd pfd[2]; /* its standard output and error (fd -1: closed) */
    char errs[CREDPROC_STDERR_MAX + 1];
    size_t errs_len;
    bool reaped; /* ended, with `status` */
    int status;
    int wait_error; /* errno of a waitpid() that failed */
};

/* Reads what is there on r's pipes into `out` and r->errs. Returns -1 when the output is past
 * CREDPROC_OUTPUT_MAX (`too_much`), else 0. */
static int read_pipes(struct run *r, struct buf *out, bool *too_much)
{
    for (int i = 0; i < 2; i++) {
        if (r->pfd[i].fd < 0 || r->pfd[i].revents == 0) {
            continue;
        }
        char chunk[4096];
        ssize_t got = read(r->pfd[i].fd, chunk, sizeof chunk);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (got <= 0) {
            close(r->pfd[i].fd);
            r->pfd[i].fd = -1;
        } else if (i == 0 && out->len + (size_t)got > CREDPROC_OUTPUT_MAX) {
            *too_much = true;
        } else if (i == 0) {
            buf_append(out, chunk, (size_t)got); /* reserved whole: cannot fail */
        } else if (r->errs_len < CREDPROC_STDERR_MAX) {
            size_t room = CREDPROC_STDERR_MAX - r->errs_len;
            size_t keep = (size_t)got < room ? (size_t)got : room;
            memcpy(r->errs + r->errs_len, chunk, keep);
            r->errs_len += keep;
        }
        explicit_bzero(chunk, sizeof chunk); /* the keys: not left on the stack */
        if (*too_much) {
            return -1;
        }
    }
    return 0;
}

/* Whether the program has ended (reaped now or before). */
static bool ended(struct run *r, int flags)
{
    while (!r->reaped && r->wait_error == 0) {
        pid_t w = waitpid(r->pid, &r->status, flags);
        if (w == r->pid) {
            r->reaped = true;
        } else if (w < 0 && errno != EINTR) {
            r->wait_error = errno;
        } else if (w == 0) {
            break;
        }
    }
    return r->reaped || r->wait_error != 0;
}

int credproc_run(const char *cmd, long timeout_ms, struct buf *out, struct err *e)
{
    struct credproc_argv a;
    if (credproc_split(cmd, &a, e) < 0) {
        return -1;
    }
    if (buf_reserve(out, CREDPROC_OUTPUT_MAX) < 0) { /* no realloc leaves keys behind */
        credproc_argv_free(&a);
        return err_set(e, "out of memory");
    }
    struct run r = {.pid = -1};
    int fds[2] = {-1, -1};
    r.pid = start(&a, &fds[0], &fds[1], e);
    if (r.pid < 0) {
        credproc_argv_free(&a);
        return -1;
    }
    r.pfd[0] = (struct pollfd){.fd = fds[0], .events = POLLIN};
    r.pfd[1] = (struct pollfd){.fd = fds[1], .events = POLLIN};
    long deadline = clock_mono_ms() + timeout_ms, stop_reading = deadline;
    bool late = false, too_much = false;
    /* its output until both pipes close; looked at every CREDPROC_LOOK_MS meanwhile: once it
     * has ended, what comes within CREDPROC_AFTER_EXIT_MS is read, and no more */
    while ((r.pfd[0].fd >= 0 || r.pfd[1].fd >= 0) && !too_much) {
        long now = clock_mono_ms();
        if (now >= deadline) {
            late = !r.reaped;
            break;
        }
        if (now >= stop_reading) {
            break;
        }
        long wait = stop_reading - now < CREDPROC_LOOK_MS ? stop_reading - now : CREDPROC_LOOK_MS;
        int n = poll(r.pfd, 2, (int)wait);
        if (n < 0 && errno != EINTR) {
            late = true; /* cannot wait for it: ended as one that ran out of time */
            break;
        }
        if (n > 0 && read_pipes(&r, out, &too_much) < 0) {
            break;
        }
        if (!r.reaped && ended(&r, WNOHANG) && r.wait_error == 0) {
            long after = clock_mono_ms() + CREDPROC_AFTER_EXIT_MS;
            stop_reading = after < deadline ? after : deadline;
        }
    }
    r.errs[r.errs_len] = '\0';
    for (int i = 0; i < 2; i++) {
        if (r.pfd[i].fd >= 0) {
            close(r.pfd[i].fd);
        }
    }
    /* the pipes closed: the program is ending; waited for up to the deadline, then its whole
     * process group (what it started too) is ended */
    bool killed = late || too_much;
    if (killed && !r.reaped) {
        kill(-r.pid, SIGKILL);
    }
    while (!ended(&r, killed ? 0 : WNOHANG)) {
        if (clock_mono_ms() >= deadline) {
            kill(-r.pid, SIGKILL);
            killed = late = true;
        } else {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
    const char *prog = a.argv[0];
    int rc = -1;
    tidy(r.errs);
    if (too_much) {
        err_set(e, "%s wrote more than %d bytes", prog, CREDPROC_OUTPUT_MAX);
    } else if (late) {
        err_set(e, "%s did not end within %ld ms (PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS)", prog,
                timeout_ms);
    } else if (r.wait_error != 0) {
        err_set(e, "cannot wait for %s: %s", prog, strerror(r.wait_error));
    } else if (WIFSIGNALED(r.status)) {
        err_set(e, "%s was ended by signal %d%s%s", prog, WTERMSIG(r.status),
                r.errs[0] != '\0' ? ": " : "", r.errs);
    } else if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        err_set(e, "%s ended with status %d%s%s", prog,
                WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1,
                r.errs[0] != '\0' ? ": " : " (nothing on its standard error)", r.errs);
    } else {
        rc = 0;
    }
    credproc_argv_free(&a);
    return rc;
}
