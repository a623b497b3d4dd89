/* tmpdir: each worker process's ImageMagick temporary directory (tmpdir.h). */
#include "tmpdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wand/MagickWand.h>

#define PREFIX     "pixq-magick-"
#define LOCK       "lock"     /* the file whose lock says the directory's process lives */
#define LOCK_NEW   "lock.new" /* ... locked before it takes that name */
#define HOST_MAX   64
#define RANDOM_LEN 6 /* mkdtemp's XXXXXX */

static char own[TMPDIR_PATH_MAX]; /* this process's directory, "" when none */
static int own_lock = -1;         /* its lock file, locked while the process lives */

/* The directory the process's temporary files go to, from the environment, as ImageMagick
 * looks for it. */
static const char *base_dir(void)
{
    const char *names[] = {"MAGICK_TEMPORARY_PATH", "MAGICK_TMPDIR", "TMPDIR"};
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
    char h[HOST_MAX + 1] = {0}; /* Linux's longest (64) and its NUL */
    size_t n = 0;
    if (gethostname(h, sizeof h) == 0) {
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

/* Whether `name` is PREFIX HOST "-" and mkdtemp's six characters. */
static bool ours(const char *name, const char *host)
{
    size_t p = strlen(PREFIX), h = strlen(host);
    return strncmp(name, PREFIX, p) == 0 && strncmp(name + p, host, h) == 0 && name[p + h] == '-' &&
           strlen(name + p + h + 1) == RANDOM_LEN;
}

/* Empties the open directory `fd` (its files; it holds nothing else). */
static void empty_dir(int fd)
{
    int again = dup(fd);
    DIR *d = again >= 0 ? fdopendir(again) : NULL;
    if (d == NULL) {
        if (again >= 0) {
            close(again);
        }
        return;
    }
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            unlinkat(fd, e->d_name, 0);
        }
    }
    closedir(d);
}

/* Removes the directory `name` in `base` when it is this user's, not a link, and its lock file
 * can be locked: its process is gone (a lock dies with its process, whatever its pid namespace).
 * A directory without a lock file (being made) is left. */
static bool remove_if_unlocked(int base, const char *name)
{
    int fd = openat(base, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    /* for writing: NFS gives an exclusive lock only so; not blocking on a FIFO of that name */
    int lock = openat(fd, LOCK, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    bool removed = false;
    if (lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) == 0) {
        empty_dir(fd);
        removed = unlinkat(base, name, AT_REMOVEDIR) == 0;
    }
    if (lock >= 0) {
        close(lock);
    }
    close(fd);
    return removed;
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
        if (ours(e->d_name, host) && remove_if_unlocked(fd, e->d_name)) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Makes `own` (a new directory, mode 0700) and its lock file, locked before it takes its name,
 * so that no sweep finds it unlocked. Returns 0, or -1 with errno. */
static int make_own(const char *base, const char *host)
{
    int n = snprintf(own, sizeof own, "%s/%s%s-XXXXXX", base, PREFIX, host);
    if (n < 0 || (size_t)n >= sizeof own) {
        own[0] = '\0';
        errno = ENAMETOOLONG;
        return -1;
    }
    if (mkdtemp(own) == NULL) {
        int err = errno;
        own[0] = '\0';
        errno = err;
        return -1;
    }
    int dir = open(own, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    own_lock = dir >= 0 ? openat(dir, LOCK_NEW, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    int rc =
        own_lock >= 0 && flock(own_lock, LOCK_EX) == 0 && renameat(dir, LOCK_NEW, dir, LOCK) == 0
            ? 0
            : -1;
    int err = errno;
    if (dir >= 0) {
        close(dir);
    }
    errno = err;
    return rc;
}

int tmpdir_start(int *swept, struct err *e)
{
    char host[HOST_MAX + 1];
    const char *base = base_dir();
    host_name(host, sizeof host);
    *swept = sweep(base, host);
    if (make_own(base, host) != 0) {
        int err = errno;
        tmpdir_finish();
        return err_set(e, "cannot make a temporary directory in %s: %s", base, strerror(err));
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

const char *tmpdir_base(void)
{
    return base_dir();
}

const char *tmpdir_path(void)
{
    return own;
}

void tmpdir_finish(void)
{
    if (own_lock >= 0) { /* closed first: NFS keeps a removed file that is open */
        close(own_lock);
        own_lock = -1;
    }
    int dir = own[0] != '\0' ? open(own, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (dir >= 0) {
        empty_dir(dir);
        close(dir);
        rmdir(own);
    }
    own[0] = '\0';
}
