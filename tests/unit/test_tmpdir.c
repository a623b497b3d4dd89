/* test_tmpdir: worker/tmpdir.c in a directory of its own (TMPDIR): which directories the start
 * removes (this host's and this user's, not links, whose lock it can take), the process's own
 * directory (0700, its lock held, ImageMagick's temporary path), and its removal at the finish. */
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

int main(void)
{
    char host[128] = {0}, dead[512], alive[512], unlocked_other[512], no_lock[512], link[512],
         target[512], short_name[512];
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
    snprintf(target, sizeof target, "%s/target", base);
    make_dir(dead, true);
    make_dir(alive, true);
    make_dir(no_lock, false);
    make_dir(unlocked_other, true);
    make_dir(target, true);
    make_dir(short_name, true);
    CHECK(symlink(target, link) == 0);
    int held = take_lock(alive); /* a live process's */
    CHECK(held >= 0);

    MagickCoreGenesis(NULL, MagickFalse);
    int swept = -1;
    struct err e = {{0}};
    CHECK_INT(tmpdir_start(&swept, &e), 0);
    CHECK_INT(swept, 1);
    CHECK(!exists(dead));
    CHECK(exists(alive) && exists(no_lock) && exists(unlocked_other) && exists(short_name));
    CHECK(exists(link) && exists(target)); /* a link is not followed */

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
    MagickCoreTerminus();

    close(held);
    const char *dirs[] = {alive, no_lock, unlocked_other, target, short_name};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        remove_all(dirs[i]);
    }
    unlink(link);
    CHECK(rmdir(base) == 0);
    return check_summary("tmpdir");
}
