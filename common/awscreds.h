/* awscreds: S3 credentials from an AWS shared credentials file, read again when it changes.
 *
 * The file is the AWS tools' INI form (`[profile]` sections with aws_access_key_id,
 * aws_secret_access_key and aws_session_token), as a credentials helper, a sidecar or a mounted
 * secret keeps it up to date with temporary credentials. A worker looks at the file (one stat())
 * before each S3 request and reads it again when it was replaced or rewritten; a file that cannot
 * be read or lacks a key then leaves the credentials in use as they were. */
#ifndef PIXQ_AWSCREDS_H
#define PIXQ_AWSCREDS_H

#include <stdbool.h>
#include <sys/stat.h>

#include "cfg.h"
#include "err.h"

#define AWSCREDS_FILE_MAX (1024 * 1024) /* bytes of a credentials file read */

struct awscreds {
    char path[CFG_STR_MAX];
    char profile[CFG_STR_MAX];
    char access_key[CFG_STR_MAX];
    char secret_key[CFG_STR_MAX];
    char session_token[CFG_TOKEN_MAX]; /* "" when the profile has none */
    bool loaded;                       /* the keys above were read (once at least) */
    struct stat st; /* as it was when last read, or last refused (st_ino 0: not there) */
};

/* Sets up `c` for the file `path` and the profile `profile` ("" is "default") and reads it.
 * Returns 0, or -1 with why when it cannot be read or the profile lacks a key (then c->loaded is
 * false, and awscreds_refresh() reads it once it changes). */
int awscreds_init(struct awscreds *c, const char *path, const char *profile, struct err *e);

/* Parses the credentials file text `text` (NUL-terminated) into c's keys for c->profile.
 * Returns 0, or -1 with why. `c` is left as it was on failure. */
int awscreds_parse(struct awscreds *c, const char *text, struct err *e);

/* Reads the file again when it changed since it was last read (its inode, size, mtime or ctime:
 * a rename over it, a rewrite, Kubernetes' swap of a secret's files), or always when `force`.
 * Returns 1 when the keys changed, 0 when they did not (or the file did not change), -1 when the
 * file changed but could not be read or lacks a key: the keys in use stay (once per change
 * logged as s3_credentials_refused). */
int awscreds_refresh(struct awscreds *c, bool force, struct err *e);

#endif
