/* awscreds: S3 credentials that change: from an AWS shared credentials file, read again when it
 * changes, or from a metadata endpoint (awsmeta), fetched again before they expire.
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
#include <time.h>

#include "awsmeta.h"
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

    char process[CFG_STR_MAX]; /* the profile's credential_process, when it has no keys */

    /* from a metadata endpoint or the credential_process instead of the file */
    bool from_endpoint;
    struct awsmeta meta;
    long process_timeout_ms;  /* PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS */
    long lead_ms;             /* keys are fetched again this long before they expire */
    long retry_ms;            /* no two fetches closer than this, */
    long retry_max_ms;        /* and after failures in a row, twice as far apart up to this */
    long due_ms;              /* monotonic ms of the next fetch that is not forced */
    long expires_ms;          /* monotonic ms when the keys expire (LONG_MAX: never) */
    long next_try_ms;         /* monotonic ms before which no fetch is made */
    int failures;             /* fetches failed in a row */
    char failed[ERR_MSG_MAX]; /* why the last fetch failed ("": it did not) */
    bool imds_v1;             /* the last keys came through IMDSv1 (said once in a row) */
};

/* Sets up `c` for the configuration's AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE ("" is
 * "default") and reads it. Returns 0, or -1 with why when it cannot be read or the profile lacks
 * a key (then c->loaded is false, and awscreds_refresh() reads it once it changes). A profile
 * with a credential_process and no keys makes `c` take its keys from the program from then on
 * (credproc.h), as from an endpoint; it is run at once when `fetch` (a run that fails is logged
 * and tried again by awscreds_refresh()). */
int awscreds_init(struct awscreds *c, const struct cfg *cfg, bool fetch, struct err *e);

/* Sets up `c` for keys from the metadata endpoint that the configuration names (awsmeta_init())
 * and fetches them. Returns -1 with why only when the configuration is wrong; a fetch that fails
 * is logged (s3_credentials_refused) and tried again by awscreds_refresh(). */
int awscreds_init_endpoint(struct awscreds *c, const struct cfg *cfg, struct err *e);

/* Names where the keys come from, for messages. */
const char *awscreds_origin(const struct awscreds *c, char *out, size_t cap);

/* Parses the credentials file text `text` (NUL-terminated) into c's keys for c->profile.
 * Returns 0, or -1 with why. `c` is left as it was on failure. */
int awscreds_parse(struct awscreds *c, const char *text, struct err *e);

/* Reads the file again when it changed since it was last read (its inode, size, mtime or ctime:
 * a rename over it, a rewrite, Kubernetes' swap of a secret's files), or always when `force`.
 * Returns 1 when the keys changed, 0 when they did not (or the file did not change), -1 when the
 * file changed but could not be read or lacks a key: the keys in use stay (once per change
 * logged as s3_credentials_refused).
 * With an endpoint: fetches the keys again when none were fetched yet, when they expire within
 * lead_ms, or when `force`; never twice within retry_ms (further apart after failures). A failed
 * fetch leaves the keys in use (logged once for each new reason). */
int awscreds_refresh(struct awscreds *c, bool force, struct err *e);

/* awscreds_refresh() for a request: `now` is the time by the caller's clock (S3's, when it
 * corrected ours), which the keys' Expiration is read against; a fetch takes at most
 * `budget_ms` (what is left of the request's time), none when that is 0 or less; with less than
 * a fetch's time (PIXQ_S3_CREDENTIALS_TIMEOUT_MS) left, keys due but not expired are used as
 * they are, and a fetch that runs out of the request's time is not the endpoint's failure. */
int awscreds_refresh_within(struct awscreds *c, bool force, time_t now, long budget_ms,
                            struct err *e);

#define AWSCREDS_EXPIRED_WAIT_MS                                                                   \
    60000L /* keys served already expired by our clock: asked                                      \
            * again after this (S3 may still take them) */

/* When keys fetched at `at_ms` (monotonic) with `lifetime_ms` left (LONG_MAX: they do not
 * expire) are next fetched: `lead_ms` before they expire, or, when that is past (the endpoint
 * still serves keys about to expire), after a quarter of what is left, at least `retry_ms`. */
long awscreds_due_ms(long at_ms, long lifetime_ms, long lead_ms, long retry_ms);

/* The least wait after the `failures`-th failed fetch in a row: retry_ms, doubled with each
 * further failure, up to retry_max_ms. */
long awscreds_backoff_ms(int failures, long retry_ms, long retry_max_ms);

#endif
