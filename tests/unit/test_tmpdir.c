/* test_tmpdir: worker/tmpdir.c in a directory of its own (TMPDIR): which directories the start
 * removes (this host's, of processes that are gone, not links), the process's own directory
 * (made 0700, emptied when an earlier process of the same pid left it, ImageMagick's temporary
 * path), and its removal at the finish. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wand/MagickWand.h>

#include "check.h"
#include "err.h"
#include "tmpdir.h"

#define DEAD_PID 2147483000L /* above any pid_max */

static char base[256];

static void path_of(char *out, size_t cap, const char *host, long pid)
{
    snprintf(out, cap, "%s/pixq-magick-%s-%ld", base, host, pid);
}

static void make_dir_with_file(const char *dir)
{
    char f[512];
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(f, sizeof f, "%s/magick-leftover", dir);
    FILE *fp = fopen(f, "w");
    CHECK(fp != NULL);
    if (fp != NULL) {
        fputs("pixels", fp);
        fclose(fp);
    }
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e = d != NULL ? readdir(d) : NULL; e != NULL; e = readdir(d)) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

int main(void)
{
    char host[128] = {0}, dead[512], other_host[512], alive[512], own[512], link[512], target[512],
         f[600];
    snprintf(base, sizeof base, "/tmp/test_tmpdir.XXXXXX");
    if (mkdtemp(base) == NULL || gethostname(host, sizeof host - 1) != 0) {
        perror("test_tmpdir");
        return 1;
    }
    setenv("TMPDIR", base, 1);
    unsetenv("MAGICK_TEMPORARY_PATH");
    path_of(dead, sizeof dead, host, DEAD_PID);
    path_of(other_host, sizeof other_host, "another-host", DEAD_PID);
    path_of(alive, sizeof alive, host, 1);
    path_of(own, sizeof own, host, (long)getpid());
    path_of(link, sizeof link, host, DEAD_PID - 1);
    snprintf(target, sizeof target, "%s/target", base);
    make_dir_with_file(dead);
    make_dir_with_file(other_host);
    make_dir_with_file(alive);
    make_dir_with_file(own);
    make_dir_with_file(target);
    CHECK(symlink(target, link) == 0);

    MagickCoreGenesis(NULL, MagickFalse);
    int swept = -1;
    struct err e = {{0}};
    CHECK_INT(tmpdir_start(&swept, &e), 0);
    CHECK_INT(swept, 1);
    CHECK(!exists(dead));
    CHECK(exists(other_host) && entries(other_host) == 1);
    CHECK(exists(alive) && entries(alive) == 1); /* pid 1 */
    CHECK(exists(link) && entries(target) == 1); /* a link is not followed */
    CHECK_STR(tmpdir_path(), own);
    struct stat st;
    CHECK(stat(own, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK_INT(entries(own), 0); /* the earlier process's file is gone */
    ExceptionInfo *x = AcquireExceptionInfo();
    const char *registered = GetImageRegistry(StringRegistryType, "temporary-path", x);
    CHECK_STR(registered, own);
    RelinquishMagickMemory((void *)registered);
    DestroyExceptionInfo(x);
    tmpdir_finish();
    CHECK(!exists(own));
    CHECK_STR(tmpdir_path(), "");
    MagickCoreTerminus();

    /* clean up what the test made */
    const char *dirs[] = {other_host, alive, target};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(f, sizeof f, "%s/magick-leftover", dirs[i]);
        unlink(f);
        rmdir(dirs[i]);
    }
    unlink(link);
    CHECK(rmdir(base) == 0);
    return check_summary("tmpdir");
}
