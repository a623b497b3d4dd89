/* tmpdir: a directory of its own for each worker process's ImageMagick disk pixel cache, and
 * the leftovers of dead workers removed.
 *
 * An image whose pixels do not fit PIXQ_MAGICK_MEMORY_MB and PIXQ_MAGICK_MAP_MB is cached on
 * disk, in files of up to PIXQ_MAGICK_DISK_MB (1 GB) that ImageMagick deletes when it is done.
 * A worker killed meanwhile (SIGKILL, the OOM killer, PIXQ_JOB_HANG_S) leaves them behind, with
 * random names, for good: a job that keeps crashing workers fills the disk a gigabyte a crash.
 *
 * So each process that starts ImageMagick caches in a directory of its own, made mode 0700:
 * BASE/pixq-magick-HOST-XXXXXX (BASE: the MAGICK_TEMPORARY_PATH, MAGICK_TMPDIR or TMPDIR of the
 * environment, else /tmp; HOST: the host name, so that hosts sharing BASE keep apart; XXXXXX:
 * mkdtemp's). The process holds a lock (flock) on the file "lock" in it while it lives: its
 * lock file is locked before it takes that name. On its start it removes every such directory
 * of its host that belongs to its user, is not a link and whose lock it can take: the process is
 * gone, whatever its pid or pid namespace. A clean exit removes its own. A directory without a
 * lock file (a process stopped between making it and naming its lock) is left. */
#ifndef PIXQ_TMPDIR_H
#define PIXQ_TMPDIR_H

#include <stddef.h>

#include "err.h"

#define TMPDIR_PATH_MAX 512

/* Removes the dead processes' directories, makes this process's, and tells ImageMagick to use it
 * (its "temporary-path" registry entry; ImageMagick must be started). `swept` gets how many
 * directories were removed. Returns 0, or -1 when the directory cannot be made. */
int tmpdir_start(int *swept, struct err *e);

/* The directory tmpdir_start() made ("" before). */
const char *tmpdir_path(void);

/* Where ImageMagick makes its temporary files when it has no directory from tmpdir_start(): the
 * first absolute one of MAGICK_TEMPORARY_PATH, MAGICK_TMPDIR and TMPDIR, else /tmp (the directory
 * tmpdir_start() makes its own in). */
const char *tmpdir_base(void);

/* Removes this process's directory and what is left in it. */
void tmpdir_finish(void);

#endif
