/* check: the unit tests' tiny harness.
 *
 * CHECK(cond) records a failure with its location and goes on; CHECK_STR and CHECK_INT show both
 * values. A test program ends with `return check_summary("name");`, which prints
 * "name: N passed, N failed" and returns the exit status meson expects. */
#ifndef PIXQ_CHECK_H
#define PIXQ_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_passed;
static int check_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0) {                                     \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: %s\n  got:  %s\n  want: %s\n", __FILE__, __LINE__, #got,       \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");                                       \
        }                                                                                          \
    } while (0)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ == w_) {                                                                            \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: %s: got %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); \
        }                                                                                          \
    } while (0)

/* Writes `text` to `path` as a credentials helper or a mounted secret's update replaces a file:
 * aside, then renamed over it. */
static inline void check_replace_file(const char *path, const char *text)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        check_failed++;
        fprintf(stderr, "cannot write %s\n", tmp);
        return;
    }
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

/* check_capture(fd) sends file descriptor `fd` (1 or 2) into a file of its own until
 * check_captured(fd, ...) reads it back into `out` and gives `fd` back: what a function printed.
 * One capture at a time. */
static char check_capture_path[64] __attribute__((unused));
static int check_capture_saved __attribute__((unused)) = -1;

static inline void check_capture(int fd)
{
    fflush(stdout);
    fflush(stderr);
    snprintf(check_capture_path, sizeof check_capture_path, "/tmp/pixq-test-capture-XXXXXX");
    int f = mkstemp(check_capture_path);
    CHECK(f >= 0);
    if (f < 0) {
        return;
    }
    check_capture_saved = dup(fd);
    dup2(f, fd);
    close(f);
}

static inline const char *check_captured(int fd, char *out, size_t cap)
{
    out[0] = '\0';
    fflush(stdout);
    fflush(stderr);
    if (check_capture_saved < 0) {
        return out;
    }
    dup2(check_capture_saved, fd);
    close(check_capture_saved);
    check_capture_saved = -1;
    FILE *f = fopen(check_capture_path, "r");
    size_t n = f != NULL ? fread(out, 1, cap - 1, f) : 0;
    out[n] = '\0';
    if (f != NULL) {
        fclose(f);
    }
    unlink(check_capture_path);
    return out;
}

static inline int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed == 0 && check_passed > 0 ? 0 : 1;
}

#endif
