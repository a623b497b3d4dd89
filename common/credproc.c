/* credproc: S3 keys from a program (credproc.h). */
#define _GNU_SOURCE /* pipe2 */
#include "credproc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        } else if (*p == '"') { /* a backslash escapes only \ " $ ` and a line's end */
            for (p++; *p != '\0' && *p != '"'; p++) {
                if (*p == '\\' && p[1] != '\0' && strchr("\\\"$`\n", p[1]) != NULL) {
                    p++;
                    if (*p == '\n') {
                        continue;
                    }
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
            if (p[1] != '\n') {
                *w++ = p[1];
            }
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

/* The signals a worker catches or ignores, set back to their defaults in the program. */
static void default_signals(sigset_t *s)
{
    static const int sigs[] = {SIGPIPE, SIGINT,  SIGTERM, SIGHUP,  SIGQUIT,
                               SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM, SIGXCPU};
    sigemptyset(s);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        sigaddset(s, sigs[i]);
    }
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

/* Starts a.argv with its output on *out_fd and its errors on *err_fd (the read ends). Returns
 * the pid, or -1 with why. */
static pid_t start(const struct credproc_argv *a, int *out_fd, int *err_fd, struct err *e)
{
    char **env = program_environment();
    if (env == NULL) {
        return err_set(e, "out of memory");
    }
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        int err = errno;
        for (int i = 0; i < 2; i++) {
            if (po[i] >= 0) {
                close(po[i]);
            }
        }
        free(env);
        return err_set(e, "cannot make a pipe: %s", strerror(err));
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    sigemptyset(&none);
    default_signals(&dfl);
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0) {
        rc = posix_spawnattr_init(&at);
        if (rc != 0) {
            posix_spawn_file_actions_destroy(&fa);
        }
    }
    pid_t pid = -1;
    if (rc == 0) {
        rc = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        rc = rc != 0 ? rc : posix_spawn_file_actions_adddup2(&fa, po[1], STDOUT_FILENO);
        rc = rc != 0 ? rc : posix_spawn_file_actions_adddup2(&fa, pe[1], STDERR_FILENO);
        rc = rc != 0 ? rc : posix_spawnattr_setsigmask(&at, &none);
        rc = rc != 0 ? rc : posix_spawnattr_setsigdefault(&at, &dfl);
        rc = rc != 0 ? rc : posix_spawnattr_setpgroup(&at, 0);
        rc = rc != 0
                 ? rc
                 : posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                     POSIX_SPAWN_SETSIGDEF);
        rc = rc != 0 ? rc : posix_spawnp(&pid, a->argv[0], &fa, &at, a->argv, env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
    }
    free(env);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        close(po[0]);
        close(pe[0]);
        return err_set(e, "cannot run %s: %s", a->argv[0], strerror(rc));
    }
    *out_fd = po[0];
    *err_fd = pe[0];
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

int credproc_run(const char *cmd, long timeout_ms, struct buf *out, struct err *e)
{
    struct credproc_argv a;
    if (credproc_split(cmd, &a, e) < 0) {
        return -1;
    }
    int fds[2] = {-1, -1};
    pid_t pid = start(&a, &fds[0], &fds[1], e);
    if (pid < 0) {
        credproc_argv_free(&a);
        return -1;
    }
    long deadline = clock_mono_ms() + timeout_ms;
    char errs[CREDPROC_STDERR_MAX + 1];
    size_t errs_len = 0;
    bool late = false, too_much = false, no_memory = false;
    struct pollfd pfd[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0 && !too_much && !no_memory) {
        long left = deadline - clock_mono_ms();
        if (left <= 0) {
            late = true;
            break;
        }
        if (poll(pfd, 2, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR) {
            late = true; /* cannot wait for it: ended as one that ran out of time */
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || pfd[i].revents == 0) {
                continue;
            }
            char chunk[4096];
            ssize_t got = read(pfd[i].fd, chunk, sizeof chunk);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
                continue;
            }
            if (got <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                open_fds--;
            } else if (i == 0 && out->len + (size_t)got > CREDPROC_OUTPUT_MAX) {
                too_much = true;
                break;
            } else if (i == 0) {
                no_memory = buf_append(out, chunk, (size_t)got) < 0;
            } else if (errs_len < CREDPROC_STDERR_MAX) {
                size_t keep = (size_t)got < CREDPROC_STDERR_MAX - errs_len
                                  ? (size_t)got
                                  : CREDPROC_STDERR_MAX - errs_len;
                memcpy(errs + errs_len, chunk, keep);
                errs_len += keep;
            }
        }
    }
    errs[errs_len] = '\0';
    for (int i = 0; i < 2; i++) {
        if (pfd[i].fd >= 0) {
            close(pfd[i].fd);
        }
    }
    /* both pipes closed: the program is ending (or left a child holding them); wait for it up
     * to the deadline, then end its whole process group */
    bool killed = late || too_much || no_memory;
    if (killed) {
        kill(-pid, SIGKILL);
    }
    int status = 0, wait_error = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, killed ? 0 : WNOHANG);
        if (w == pid) {
            break;
        }
        if (w < 0 && errno != EINTR) {
            wait_error = errno;
            break;
        }
        if (w == 0 && clock_mono_ms() >= deadline) {
            kill(-pid, SIGKILL);
            killed = late = true;
        } else if (w == 0) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
    const char *prog = a.argv[0];
    int rc = -1;
    tidy(errs);
    if (no_memory) {
        err_set(e, "out of memory");
    } else if (wait_error != 0) {
        err_set(e, "cannot wait for %s: %s", prog, strerror(wait_error));
    } else if (too_much) {
        err_set(e, "%s wrote more than %d bytes", prog, CREDPROC_OUTPUT_MAX);
    } else if (late) {
        err_set(e, "%s did not end within %ld ms (PIXQ_S3_CREDENTIALS_TIMEOUT_MS)", prog,
                timeout_ms);
    } else if (WIFSIGNALED(status)) {
        err_set(e, "%s was ended by signal %d%s%s", prog, WTERMSIG(status),
                errs[0] != '\0' ? ": " : "", errs);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        err_set(e, "%s ended with status %d%s%s", prog,
                WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                errs[0] != '\0' ? ": " : " (nothing on its standard error)", errs);
    } else {
        rc = 0;
    }
    credproc_argv_free(&a);
    return rc;
}
