/* tmpdir: each worker process's ImageMagick temporary directory (tmpdir.h). */
#include "tmpdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wand/MagickWand.h>

#define PREFIX   "pixq-magick-"
#define HOST_MAX 64

static char own[TMPDIR_PATH_MAX]; /* this process's directory, "" when none */

/* The directory the process's temporary files go to, from the environment. */
static const char *base_dir(void)
{
    const char *names[] = {"MAGICK_TEMPORARY_PATH", "TMPDIR"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v != NULL && v[0] == '/') {
            return v;
        }
    }
    return "/tmp";
}

/* The host name, keeping letters, digits, '.' and '-' ("host" if there is none). */
static void host_name(char *out, size_t cap)
{
    char h[HOST_MAX + 1] = {0};
    size_t n = 0;
    if (gethostname(h, HOST_MAX) == 0) {
        for (size_t i = 0; h[i] != '\0' && n + 1 < cap; i++) {
            char c = h[i];
            bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '-';
            out[n++] = keep ? c : '_';
        }
    }
    if (n == 0) {
        snprintf(out, cap, "host");
        return;
    }
    out[n] = '\0';
}

/* The pid a directory named PREFIX HOST "-" PID belongs to, or 0 when `name` is not one of
 * this host's. */
static long pid_of(const char *name, const char *host)
{
    size_t p = strlen(PREFIX), h = strlen(host);
    if (strncmp(name, PREFIX, p) != 0 || strncmp(name + p, host, h) != 0 || name[p + h] != '-') {
        return 0;
    }
    const char *digits = name + p + h + 1;
    char *end;
    errno = 0;
    long pid = strtol(digits, &end, 10);
    return digits[0] >= '0' && digits[0] <= '9' && *end == '\0' && errno == 0 && pid > 0 ? pid : 0;
}

/* Empties the directory `name` in `base` (its files; it holds nothing else) and removes it,
 * unless it is not a directory of this user. */
static bool remove_dir(int base, const char *name)
{
    int fd = openat(base, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return false;
    }
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            unlinkat(fd, e->d_name, 0);
        }
    }
    closedir(d);
    return unlinkat(base, name, AT_REMOVEDIR) == 0;
}

/* remove_dir() on a path. */
static bool remove_path(const char *path)
{
    char parent[TMPDIR_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        return false;
    }
    *slash = '\0';
    int fd = open(parent[0] != '\0' ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool removed = fd >= 0 && remove_dir(fd, slash + 1);
    if (fd >= 0) {
        close(fd);
    }
    return removed;
}

/* Makes `own`, mode 0700: new, or an earlier process's of this pid (the sweep spares this
 * process's name) emptied and made again. One that is not this user's directory (another
 * user's, a link) is not used. Returns 0, or -1 with errno. */
static int make_own(void)
{
    if (mkdir(own, 0700) == 0) {
        return 0;
    }
    if (errno != EEXIST) {
        return -1;
    }
    if (!remove_path(own)) {
        errno = EEXIST;
        return -1;
    }
    return mkdir(own, 0700);
}

/* Removes the directories of this host's processes that are gone; returns how many. */
static int sweep(const char *base, const char *host)
{
    int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        long pid = pid_of(e->d_name, host);
        if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH &&
            remove_dir(fd, e->d_name)) {
            n++;
        }
    }
    closedir(d);
    return n;
}

int tmpdir_start(int *swept, struct err *e)
{
    char host[HOST_MAX + 1];
    const char *base = base_dir();
    host_name(host, sizeof host);
    *swept = sweep(base, host);
    int n = snprintf(own, sizeof own, "%s/%s%s-%ld", base, PREFIX, host, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof own) {
        own[0] = '\0';
        return err_set(e, "the temporary directory's path is too long (%s)", base);
    }
    if (make_own() != 0) {
        int err = errno;
        char path[TMPDIR_PATH_MAX];
        snprintf(path, sizeof path, "%s", own);
        own[0] = '\0';
        return err_set(e, "cannot make the temporary directory %s: %s", path, strerror(err));
    }
    ExceptionInfo *x = AcquireExceptionInfo();
    MagickBooleanType ok = SetImageRegistry(StringRegistryType, "temporary-path", own, x);
    DestroyExceptionInfo(x);
    if (ok == MagickFalse) {
        tmpdir_finish();
        return err_set(e, "ImageMagick refused its temporary directory");
    }
    return 0;
}

const char *tmpdir_path(void)
{
    return own;
}

void tmpdir_finish(void)
{
    if (own[0] != '\0') {
        remove_path(own);
        own[0] = '\0';
    }
}
