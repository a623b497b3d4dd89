/* cfg: pixq's configuration, one table for every setting.
 *
 * Each setting has a flag name (`--redis-url`), an environment variable (`PIXQ_REDIS_URL`), a type
 * with bounds, a default and a secret mark. Sources apply in this order, later ones winning:
 * defaults, the `KEY=value` file named by `--config FILE` (or PIXQ_CONFIG), the environment, then
 * flags. Every value is validated when it is set; the result is read-only afterwards. */
#ifndef PIXQ_CFG_H
#define PIXQ_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "err.h"

#define CFG_STR_MAX 1024 /* bytes for a string setting, with NUL */
#define CFG_TOKEN_MAX                                                                              \
    8192                       /* bytes for AWS_SESSION_TOKEN, with NUL: AWS says "typically less  \
                                * than 4096", and an instance role's passes 1023 */
#define CFG_QUEUES_MAX     16  /* most queues named in PIXQ_QUEUE */
#define CFG_QUEUE_NAME_MAX 200 /* bytes of one queue name, with NUL */
#define CFG_DELAYS_MAX     16  /* most retries named in PIXQ_POSTBACK_RETRY_DELAYS_S */
#define CFG_DELAY_MAX_S    86400

/* The queues of PIXQ_QUEUE, highest priority first. */
struct cfg_queues {
    char name[CFG_QUEUES_MAX][CFG_QUEUE_NAME_MAX];
    size_t n;
};

/* The waits of PIXQ_POSTBACK_RETRY_DELAYS_S, seconds: s[i] after failed attempt i + 1. */
struct cfg_delays {
    long s[CFG_DELAYS_MAX];
    size_t n;
};

struct cfg {
    char redis_url[CFG_STR_MAX];
    char queue[CFG_STR_MAX]; /* comma-separated, highest priority first */
    char aws_access_key_id[CFG_STR_MAX];
    char aws_secret_access_key[CFG_STR_MAX];
    char aws_session_token[CFG_TOKEN_MAX];
    char aws_shared_credentials_file[CFG_STR_MAX];            /* "" none: the three keys above */
    char aws_profile[CFG_STR_MAX];                            /* the file's profile */
    char aws_container_credentials_full_uri[CFG_STR_MAX];     /* "" none */
    char aws_container_credentials_relative_uri[CFG_STR_MAX]; /* "" none; before FULL_URI */
    char aws_container_authorization_token[CFG_TOKEN_MAX];
    char aws_container_authorization_token_file[CFG_STR_MAX]; /* before the token above */
    bool s3_instance_credentials;                             /* keys from IMDSv2 */
    char aws_web_identity_token_file[CFG_STR_MAX];            /* with AWS_ROLE_ARN: STS's keys */
    char aws_role_arn[CFG_STR_MAX];
    char aws_role_session_name[CFG_STR_MAX];
    char aws_endpoint_url_sts[CFG_STR_MAX]; /* "": https://sts.<AWS_REGION>.amazonaws.com */
    char aws_ec2_metadata_service_endpoint[CFG_STR_MAX];
    bool aws_ec2_metadata_v1_disabled;      /* no IMDSv1 fallback */
    long s3_credentials_timeout_ms;         /* one fetch from a metadata endpoint */
    long s3_credentials_process_timeout_ms; /* one run of a credential_process */
    long s3_credentials_refresh_ms;         /* fetched again this long before the keys expire */
    long s3_credentials_retry_ms;           /* least time between two fetches */
    long s3_credentials_retry_max_ms;       /* ... after failures in a row, doubled up to this */
    char aws_region[CFG_STR_MAX];
    char s3_endpoint[CFG_STR_MAX]; /* "" means AWS */
    int s3_path_style;             /* -1 auto: path-style with a custom endpoint, else vhost */
    char default_bucket[CFG_STR_MAX];
    char s3_default_acl[CFG_STR_MAX]; /* x-amz-acl on every PUT unless the job overrides; "" none */
    double s3_rate;                   /* PUT/s per bucket, from PIXQ_S3_RATE */
    long s3_burst;                    /* tokens, from PIXQ_S3_RATE */
    char postback_secret[CFG_STR_MAX];
    bool allow_private_networks;
    int log_level; /* enum log_level */
    long max_src_bytes;
    long max_profile_bytes;  /* of an ICC profile add_profile fetches */
    long max_sources;        /* downloads of one job */
    long source_cache_bytes; /* of a job's sources named twice or more, kept for its run */
    long max_output_bytes;
    long max_job_output_bytes;
    long max_job_bytes;
    long max_batch_bytes;
    long max_json_depth;
    long max_functions;
    long max_pixels;
    long connect_timeout_ms;
    long download_timeout_ms;
    long job_download_timeout_ms;
    long s3_timeout_ms;
    long postback_timeout_ms;
    long default_quality;
    long result_ttl_s;
    long dead_max;
    long reserve_timeout_ms;
    long queue_poll_ms; /* several queues: idle workers block on the first one this long */
    long redis_timeout_ms;
    long redis_outage_ms; /* stats --watch, submit and job --wait: Redis away this long ends them */
    long redis_retry_min_ms; /* a worker's waits between Redis tries: from this, doubling... */
    long redis_retry_max_ms; /* ...up to this */
    long settle_attempts;
    long lease_ms;
    long heartbeat_ms;
    long reap_interval_ms;
    long max_recoveries;
    long job_hang_s;
    long max_attempts;
    long retry_base_ms;
    long retry_max_ms;
    long retry_after_max_ms; /* longest Retry-After honoured; 0: none is */
    long dead_max_age_s;
    long shutdown_timeout_ms;
    long promote_batch;
    long s3_max_attempts;
    long s3_retry_base_ms;
    long s3_retry_max_ms;
    long s3_throttle_retry_base_ms; /* the first delay after 503, 429 or SlowDown */
    long s3_local_wait_ms;
    long s3_horizon_ms;
    double s3_min_rate;
    long s3_cooldown_ms;
    long s3_idle_ms;
    long s3_expect_continue_bytes; /* uploads this large ask first (Expect: 100-continue)... */
    long s3_expect_continue_ms;    /* ...and send the body after this long without answer */
    long rl_idle_ttl_s;
    long blob_ttl_s;
    long max_parked_mb; /* of one queue; 0: no limit */
    long wait_for_s3_interval_ms;
    long wait_for_s3_max_ms;
    bool postback_retry;
    char postback_retry_delays_s[CFG_STR_MAX]; /* comma-separated seconds (cfg_delays) */
    char allowed_networks[CFG_STR_MAX];        /* CIDRs src/postbacks may reach although private */
    long max_redirects;                        /* redirects followed for a source */
    long low_speed_bytes_per_s;                /* with low_speed_time_s: slower transfers are cut */
    long low_speed_time_s;
    long max_saves;               /* most outputs of one job */
    char s3_buckets[CFG_STR_MAX]; /* buckets jobs may use, comma-separated; "" any */

    /* the image guard (worker/image.c) */
    char image_formats[CFG_STR_MAX]; /* source formats accepted, comma-separated */
    long max_frames;                 /* most frames (pages) in a source */
    long magick_memory_mb;           /* ImageMagick resource limits, MiB */
    long magick_map_mb;
    long magick_disk_mb;
    long magick_time_s;  /* longest ImageMagick works on one source and its outputs, s */
    bool shrink_on_load; /* hint the JPEG/WebP decoder with the size the outputs need */
    bool jpeg_dc;        /* a progressive JPEG wanted at 1/8 read from its DC scans alone */
    bool png_shrink;     /* a PNG wanted at 1/2, 1/4 or 1/8 box-averaged by pngshrink.c */
    bool fast_resize;    /* ImageMagick's default resize done by resize.c where it can */

    long exif_max_values;  /* EXIF entries and values ImageMagick may format reading one image */
    long metadata_max_mb;  /* profile bytes ImageMagick may be handed reading one image, MiB */
    long xmp_max_elements; /* XMP elements ImageMagick may parse reading one image */

    /* running a fleet */
    long processes;                 /* worker processes under one supervisor (1: no supervisor) */
    bool cpu_affinity;              /* worker process i runs on the i-th allowed CPU only */
    long restart_quick_exit_ms;     /* a worker dying sooner after its start is crash-looping */
    long restart_backoff_min_ms;    /* its wait before the second quick restart, then doubling */
    long restart_backoff_max_ms;    /* longest wait before a restart */
    long stop_grace_ms;             /* past the shutdown timeout, remaining workers are killed */
    char metrics_addr[CFG_STR_MAX]; /* HOST:PORT to serve Prometheus metrics on; "" off */
    long metrics_max_connections;   /* the metrics server's connections at once */
    long metrics_max_request_bytes; /* ... bytes of request head */
    long metrics_timeout_ms;        /* ... time from accept to the end of an answer */
    char log_format[CFG_STR_MAX];   /* "text" (key=value) or "json" */
    /* not a setting: "FILE:LINE" of the first `export KEY=value` line of the --config file, or
     * "". pixq reads it; systemd's EnvironmentFile=, which README has read the same file, ignores
     * the line (no valid name before its '='), so the worker warns of it */
    char export_line[CFG_STR_MAX + 16];
};

/* Fills `c` with every default. */
void cfg_defaults(struct cfg *c);

/* Sets one setting by flag name ("redis-url") or variable ("PIXQ_REDIS_URL") from text.
 * Returns 0, 1 if `key` names no setting (then `c` is unchanged), or -1 if the value is invalid
 * (the message names the setting; a secret's value is never echoed). */
int cfg_set(struct cfg *c, const char *key, const char *value, struct err *e);

/* Reads `KEY=value` lines from `path` (blank lines and `#` comments allowed; a value may be quoted
 * with " or '). Unknown keys are an error. Returns 0 or -1. */
int cfg_load_file(struct cfg *c, const char *path, struct err *e);

/* Applies every variable of the table found through `get` (getenv, or a test's lookup).
 * Returns 0 or -1. */
int cfg_load_env(struct cfg *c, const char *(*get)(const char *name), struct err *e);

/* The whole start-up sequence: defaults, file, environment, flags. Flags are `--name value` or
 * `--name=value`, plus `--config FILE`; boolean flags may stand alone. Arguments that are not
 * settings are kept, in order, in argv[1..*argc-1] for the program to parse. Returns 0 or -1. */
int cfg_load(struct cfg *c, int *argc, char **argv, const char *(*get)(const char *name),
             struct err *e);

/* Prints the effective configuration, one `VARIABLE=value` line per setting, secrets replaced
 * with "(set)" and the password in PIXQ_REDIS_URL with "***". */
void cfg_print(const struct cfg *c, FILE *out);

/* Calls `fn` with each setting's variable and its value as cfg_print() shows it. */
void cfg_each(const struct cfg *c, void (*fn)(const char *var, const char *value, void *user),
              void *user);

/* Calls `fn` with the name of each PIXQ_* variable of `env` (an environ) that is no setting (a
 * typo such as PIXQ_PROCESS is otherwise ignored without a word; PIXQ_CONFIG is known). */
void cfg_unknown_env(char *const *env, void (*fn)(const char *name, void *user), void *user);

/* Writes `url` with any password replaced by "***" into `out` (`cap` bytes), and the value of
 * each query parameter that carries a credential too: a presigned URL's signature or session
 * token (X-Amz-Signature, X-Amz-Security-Token, Signature, X-Goog-Signature, sig), access_token
 * and token, named in any case ("?X-Amz-Expires=60&X-Amz-Signature=***"). */
void cfg_redact_url(const char *url, char *out, size_t cap);

/* Whether a job may write to or read from `bucket`: PIXQ_S3_BUCKETS is empty, names it, or it
 * is PIXQ_DEFAULT_BUCKET. */
bool cfg_bucket_allowed(const struct cfg *c, const char *bucket);

/* Whether S3 requests use path-style addressing, resolving the automatic default. */
bool cfg_s3_path_style(const struct cfg *c);

/* How many of the arguments after `arg` are its value as cfg_load() reads it (`next` is the
 * argument after it, or NULL when it cannot be a value: cfg_load() reads no boolean word after a
 * command word): 1 for `--config` and for a setting's flag without `=value` that is not boolean,
 * or is boolean and followed by a boolean word (`--cpu-affinity 1`); else 0 (a boolean flag
 * alone means 1). */
int cfg_flag_values(const char *arg, const char *next);

/* Prints the settings with their variables, defaults and meaning (for --help). */
void cfg_usage(FILE *out);

/* The names of a PIXQ_QUEUE list ("urgent, default"): 1 to CFG_QUEUES_MAX comma-separated names
 * of 1 to CFG_QUEUE_NAME_MAX - 1 bytes, blanks around each dropped, none with a brace (a queue's
 * keys share its name as their hash tag) or named twice. Returns 0, or -1 with `e` set. cfg_load()
 * has checked PIXQ_QUEUE with it. */
int cfg_queues(const char *list, struct cfg_queues *out, struct err *e);

/* The waits of a PIXQ_POSTBACK_RETRY_DELAYS_S list ("1, 3, 15, 600"): 1 to CFG_DELAYS_MAX
 * comma-separated whole seconds from 1 to CFG_DELAY_MAX_S, blanks around each dropped. Returns
 * 0, or -1 with `e` set. cfg_load() has checked the setting with it. */
int cfg_delays(const char *list, struct cfg_delays *out, struct err *e);

#endif
