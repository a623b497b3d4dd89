/* test_tmpdir: worker/tmpdir.c in a directory of its own (TMPDIR): which directories the start
 * removes (this host's and this user's, not links, whose lock it can take), the process's own
 * directory (0700, its lock held, ImageMagick's temporary path), and its removal at the finish;
 * which variable names the base directory; a start that cannot make its directory; and, in a
 * UTS namespace of its own where the test may make one, a host name to clean up. */
#define _GNU_SOURCE /* unshare */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wand/MagickWand.h>

#include "check.h"
#include "err.h"
#include "tmpdir.h"

static char base[256];

static void path_of(char *out, size_t cap, const char *host, const char *tail)
{
    snprintf(out, cap, "%s/pixq-magick-%s-%s", base, host, tail);
}

/* A directory with a leftover file, and a lock file unless `lock` is false. */
static void make_dir(const char *dir, bool lock)
{
    char f[600];
    CHECK(mkdir(dir, 0700) == 0);
    const char *names[] = {"magick-leftover", "lock"};
    for (size_t i = 0; i < (lock ? 2u : 1u); i++) {
        snprintf(f, sizeof f, "%s/%s", dir, names[i]);
        FILE *fp = fopen(f, "w");
        CHECK(fp != NULL);
        if (fp != NULL) {
            fclose(fp);
        }
    }
}

/* Opens the directory's lock file and locks it (-1 if either fails). */
static int take_lock(const char *dir)
{
    char f[600];
    snprintf(f, sizeof f, "%s/lock", dir);
    int fd = open(f, O_RDWR);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void remove_all(const char *dir)
{
    char f[600];
    const char *names[] = {"magick-leftover", "lock"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(f, sizeof f, "%s/%s", dir, names[i]);
        unlink(f);
    }
    rmdir(dir);
}

/* How many file descriptors this process has open. */
static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        n += e->d_name[0] != '.';
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* The first absolute one of MAGICK_TEMPORARY_PATH, MAGICK_TMPDIR and TMPDIR, else /tmp. Leaves
 * TMPDIR at `base` and the others unset. */
static void test_base_order(void)
{
    setenv("MAGICK_TEMPORARY_PATH", "/mtp", 1);
    setenv("MAGICK_TMPDIR", "/mt", 1);
    setenv("TMPDIR", "/t", 1);
    CHECK_STR(tmpdir_base(), "/mtp");
    setenv("MAGICK_TEMPORARY_PATH", "relative", 1); /* not absolute: skipped */
    CHECK_STR(tmpdir_base(), "/mt");
    unsetenv("MAGICK_TEMPORARY_PATH");
    setenv("MAGICK_TMPDIR", "", 1);
    CHECK_STR(tmpdir_base(), "/t");
    unsetenv("MAGICK_TMPDIR");
    setenv("TMPDIR", "t", 1);
    CHECK_STR(tmpdir_base(), "/tmp");
    unsetenv("TMPDIR");
    CHECK_STR(tmpdir_base(), "/tmp");
    setenv("TMPDIR", base, 1);
}

/* A base directory that is not there: the start fails, says where, and leaves nothing set. */
static void test_cannot_make(void)
{
    char missing[300], want[400];
    snprintf(missing, sizeof missing, "%s/missing", base);
    setenv("TMPDIR", missing, 1);
    int swept = -1;
    struct err e = {{0}};
    CHECK_INT(tmpdir_start(&swept, &e), -1);
    snprintf(want, sizeof want, "cannot make a temporary directory in %s: %s", missing,
             strerror(ENOENT));
    CHECK_STR(e.msg, want);
    CHECK_INT(swept, 0);
    CHECK_STR(tmpdir_path(), "");
    setenv("TMPDIR", base, 1);
}

/* In a new UTS namespace (a child process): a host name of the most letters Linux allows (64),
 * with characters that are not kept, names the directory; and a base just long enough that the
 * directory's path (512 bytes with its NUL) would not fit is refused as too long. */
static int host_name_child(void)
{
    const char *raw = "Web_1 (a-b.c)/"; /* becomes Web_1__a-b.c__ */
    char host[65], clean[65];
    snprintf(host, sizeof host, "%s%050d", raw, 7);
    snprintf(clean, sizeof clean, "Web_1__a-b.c__%050d", 7);
    CHECK_INT(strlen(host), 64);
    if (sethostname(host, strlen(host)) != 0) {
        perror("sethostname");
        return 1;
    }
    MagickCoreGenesis(NULL, MagickFalse);
    int swept = -1;
    struct err e = {{0}};
    CHECK_INT(tmpdir_start(&swept, &e), 0);
    char prefix[512];
    path_of(prefix, sizeof prefix, clean, "");
    CHECK(strncmp(tmpdir_path(), prefix, strlen(prefix)) == 0);
    CHECK_INT(strlen(tmpdir_path()), strlen(prefix) + 6);
    tmpdir_finish();

    /* BASE "/" PREFIX HOST "-XXXXXX": 1 + 12 + 64 + 7 bytes after BASE, 512 in all (no room
     * for the NUL) */
    char long_base[512];
    size_t len = 512 - (1 + 12 + 64 + 7);
    for (size_t i = 0; i < len; i++) { /* "/xx.../xx...": no name past NAME_MAX */
        long_base[i] = i % 100 == 0 ? '/' : 'x';
    }
    long_base[len] = '\0';
    setenv("TMPDIR", long_base, 1);
    CHECK_INT(tmpdir_start(&swept, &e), -1);
    char want[600];
    snprintf(want, sizeof want, "cannot make a temporary directory in %s: %s", long_base,
             strerror(ENAMETOOLONG));
    CHECK_STR(e.msg, want);
    long_base[len - 1] = '\0'; /* one shorter fits, and is not there */
    setenv("TMPDIR", long_base, 1);
    CHECK_INT(tmpdir_start(&swept, &e), -1);
    snprintf(want, sizeof want, "cannot make a temporary directory in %s: %s", long_base,
             strerror(ENOENT));
    CHECK_STR(e.msg, want);
    MagickCoreTerminus();
    return check_failed == 0 ? 0 : 1;
}

static void test_host_name(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWUTS) != 0) {
            _exit(77); /* not allowed here */
        }
        _exit(host_name_child());
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        printf("tmpdir: host names not tested: no UTS namespace of our own here\n");
        return;
    }
    CHECK_INT(WEXITSTATUS(status), 0);
}

int main(void)
{
    char host[128] = {0}, dead[512], alive[512], unlocked_other[512], no_lock[512], link[512],
         target[512], short_name[512], long_name[512], no_dash[512], same_length[512],
         not_mine[512], twin[128], f[600];
    snprintf(base, sizeof base, "/tmp/test_tmpdir.XXXXXX");
    if (mkdtemp(base) == NULL || gethostname(host, sizeof host - 1) != 0) {
        perror("test_tmpdir");
        return 1;
    }
    setenv("TMPDIR", base, 1);
    unsetenv("MAGICK_TEMPORARY_PATH");
    unsetenv("MAGICK_TMPDIR");
    path_of(dead, sizeof dead, host, "AAAAAA");
    path_of(alive, sizeof alive, host, "BBBBBB");
    path_of(no_lock, sizeof no_lock, host, "CCCCCC");
    path_of(unlocked_other, sizeof unlocked_other, "another-host", "DDDDDD");
    path_of(link, sizeof link, host, "EEEEEE");
    path_of(short_name, sizeof short_name, host, "123");
    path_of(long_name, sizeof long_name, host, "ABCDEFG"); /* not mkdtemp's six */
    snprintf(no_dash, sizeof no_dash, "%s/pixq-magick-%sxABCDEF", base, host);
    snprintf(twin, sizeof twin, "%s", host); /* another host with a name as long */
    twin[0] = twin[0] == 'a' ? 'b' : 'a';
    path_of(same_length, sizeof same_length, twin, "FFFFFF");
    path_of(not_mine, sizeof not_mine, host, "GGGGGG"); /* another user's, if we can chown */
    snprintf(target, sizeof target, "%s/target", base);
    make_dir(dead, true);
    make_dir(alive, true);
    make_dir(no_lock, false);
    make_dir(unlocked_other, true);
    make_dir(target, true);
    make_dir(short_name, true);
    make_dir(long_name, true);
    make_dir(no_dash, true);
    make_dir(same_length, true);
    make_dir(not_mine, true);
    bool chowned = geteuid() == 0 && chown(not_mine, 4321, 4321) == 0;
    if (!chowned) {
        printf("tmpdir: another user's directory not tested: not root here\n");
    }
    CHECK(symlink(target, link) == 0);
    int held = take_lock(alive); /* a live process's */
    CHECK(held >= 0);

    test_base_order();
    test_host_name();

    MagickCoreGenesis(NULL, MagickFalse);
    int fds = open_fds();
    int swept = -1;
    struct err e = {{0}};
    CHECK_INT(tmpdir_start(&swept, &e), 0);
    CHECK_INT(swept, chowned ? 1 : 2); /* not_mine too unless given away */
    CHECK(!exists(dead));
    CHECK(exists(alive) && exists(no_lock) && exists(unlocked_other) && exists(short_name));
    CHECK(exists(long_name) && exists(no_dash) && exists(same_length));
    CHECK(exists(not_mine) == chowned);
    CHECK(exists(link) && exists(target)); /* a link is not followed, */
    snprintf(f, sizeof f, "%s/magick-leftover", target);
    CHECK(exists(f)); /* nor what it points to emptied */

    const char *own = tmpdir_path();
    char prefix[512];
    path_of(prefix, sizeof prefix, host, "");
    CHECK(strncmp(own, prefix, strlen(prefix)) == 0 && strlen(own) == strlen(prefix) + 6);
    struct stat st;
    CHECK(stat(own, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK(take_lock(own) < 0 && errno == EWOULDBLOCK); /* held while the process lives */
    char own_copy[512];
    snprintf(own_copy, sizeof own_copy, "%s", own);
    ExceptionInfo *x = AcquireExceptionInfo();
    const char *registered = GetImageRegistry(StringRegistryType, "temporary-path", x);
    CHECK_STR(registered, own_copy);
    RelinquishMagickMemory((void *)registered);
    DestroyExceptionInfo(x);
    tmpdir_finish();
    CHECK(!exists(own_copy));
    CHECK_STR(tmpdir_path(), "");
    CHECK_INT(open_fds(), fds); /* its lock file closed too */
    test_cannot_make();
    MagickCoreTerminus();

    close(held);
    const char *dirs[] = {alive,     no_lock, unlocked_other, target,  short_name,
                          long_name, no_dash, same_length,    not_mine};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        remove_all(dirs[i]);
    }
    unlink(link);
    CHECK(rmdir(base) == 0);
    return check_summary("tmpdir");
}
