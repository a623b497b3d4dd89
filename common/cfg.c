#include "cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "netguard.h"
#include "rq.h"
#include "s3.h"

#define DOUBLE_MAX 1e6 /* largest T_DOUBLE (PUT/s) */

enum cfg_type {
    T_STR,    /* free text */
    T_URL,    /* text that must be an http(s) URL, or empty */
    T_LONG,   /* integer within [min, max] */
    T_BOOL,   /* 0/1, true/false, yes/no, on/off */
    T_LEVEL,  /* log level name */
    T_RATE,   /* "10/s,burst=20" into s3_rate and s3_burst */
    T_AUTO01, /* "auto", "0" or "1" into an int (-1 for auto) */
    T_DOUBLE, /* decimal number above 0, at most DOUBLE_MAX */
    T_NETS,   /* comma-separated CIDRs (netguard), or empty */
    T_BUCKETS /* comma-separated S3 bucket names, or empty */
};

struct cfg_entry {
    const char *flag;
    const char *var;
    enum cfg_type type;
    size_t off;
    long min, max; /* a number's range; a T_STR's field size when not CFG_STR_MAX (max) */
    const char *def;
    bool secret;
    const char *help;
};

#define F(field) offsetof(struct cfg, field)
#define KB       1024L
#define MB       (1024L * 1024L)

/* clang-format off */
static const struct cfg_entry table[] = {
    {"redis-url", "PIXQ_REDIS_URL", T_STR, F(redis_url), 0, 0, "redis://127.0.0.1:6379/0", false,
     "redis://[user:password@]host:port/db ([::1] for an IPv6 host) or unix:///path/redis.sock"},
    {"queue", "PIXQ_QUEUE", T_STR, F(queue), 0, 0, "default", false,
     "queue names served, comma-separated, highest priority first"},
    {"aws-access-key-id", "AWS_ACCESS_KEY_ID", T_STR, F(aws_access_key_id), 0, 0, "", true,
     "S3 access key id"},
    {"aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", T_STR, F(aws_secret_access_key), 0, 0, "",
     true, "S3 secret access key"},
    {"aws-session-token", "AWS_SESSION_TOKEN", T_STR, F(aws_session_token), 0, CFG_TOKEN_MAX, "",
     true,
     "S3 session token (temporary credentials)"},
    {"aws-shared-credentials-file", "AWS_SHARED_CREDENTIALS_FILE", T_STR,
     F(aws_shared_credentials_file), 0, 0, "", false,
     "AWS credentials file to take the S3 keys from instead (read again whenever it changes)"},
    {"aws-profile", "AWS_PROFILE", T_STR, F(aws_profile), 0, 0, "default", false,
     "profile of AWS_SHARED_CREDENTIALS_FILE"},
    {"aws-container-credentials-full-uri", "AWS_CONTAINER_CREDENTIALS_FULL_URI", T_STR,
     F(aws_container_credentials_full_uri), 0, 0, "", false,
     "container credentials endpoint to fetch the S3 keys from (EKS Pod Identity, ECS)"},
    {"aws-container-credentials-relative-uri", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", T_STR,
     F(aws_container_credentials_relative_uri), 0, 0, "", false,
     "path on the ECS agent (169.254.170.2) to fetch the S3 keys from (an ECS task role)"},
    {"aws-container-authorization-token", "AWS_CONTAINER_AUTHORIZATION_TOKEN", T_STR,
     F(aws_container_authorization_token), 0, CFG_TOKEN_MAX, "", true,
     "Authorization value for the container credentials endpoint"},
    {"aws-container-authorization-token-file", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", T_STR,
     F(aws_container_authorization_token_file), 0, 0, "", false,
     "file holding that Authorization value, read at each fetch (EKS Pod Identity)"},
    {"aws-web-identity-token-file", "AWS_WEB_IDENTITY_TOKEN_FILE", T_STR,
     F(aws_web_identity_token_file), 0, 0, "", false,
     "web identity token (EKS IAM Roles for Service Accounts) to take AWS_ROLE_ARN's keys with"},
    {"aws-role-arn", "AWS_ROLE_ARN", T_STR, F(aws_role_arn), 0, 0, "", false,
     "role whose keys STS gives for the web identity token"},
    {"aws-role-session-name", "AWS_ROLE_SESSION_NAME", T_STR, F(aws_role_session_name), 0, 0,
     "", false, "session name of those keys, in CloudTrail (empty: pixq-HOST-PID)"},
    {"aws-endpoint-url-sts", "AWS_ENDPOINT_URL_STS", T_URL, F(aws_endpoint_url_sts), 0, 0, "",
     false, "STS endpoint (empty: the region's, https://sts.AWS_REGION.amazonaws.com)"},
    {"s3-instance-credentials", "PIXQ_S3_INSTANCE_CREDENTIALS", T_BOOL,
     F(s3_instance_credentials), 0, 1, "0", false,
     "fetch the S3 keys of the EC2 instance's role from the instance metadata service (IMDSv2)"},
    {"aws-ec2-metadata-service-endpoint", "AWS_EC2_METADATA_SERVICE_ENDPOINT", T_URL,
     F(aws_ec2_metadata_service_endpoint), 0, 0, "http://169.254.169.254", false,
     "the instance metadata service"},
    {"aws-ec2-metadata-v1-disabled", "AWS_EC2_METADATA_V1_DISABLED", T_BOOL,
     F(aws_ec2_metadata_v1_disabled), 0, 1, "0", false,
     "never fall back to IMDSv1 (no session token) when IMDSv2's token is refused or not "
     "answered"},
    {"s3-credentials-timeout-ms", "PIXQ_S3_CREDENTIALS_TIMEOUT_MS", T_LONG,
     F(s3_credentials_timeout_ms), 100, 60000, "2000", false,
     "whole time for one fetch of the S3 keys from a metadata endpoint"},
    {"s3-credentials-process-timeout-ms", "PIXQ_S3_CREDENTIALS_PROCESS_TIMEOUT_MS", T_LONG,
     F(s3_credentials_process_timeout_ms), 100, 600000, "10000", false,
     "whole time for one run of a credentials file profile's credential_process"},
    {"s3-credentials-refresh-ms", "PIXQ_S3_CREDENTIALS_REFRESH_MS", T_LONG,
     F(s3_credentials_refresh_ms), 0, 43200000L, "300000", false,
     "fetched S3 keys are fetched again this long before they expire"},
    {"s3-credentials-retry-ms", "PIXQ_S3_CREDENTIALS_RETRY_MS", T_LONG,
     F(s3_credentials_retry_ms), 100, 600000, "1000", false,
     "least time between two fetches of the S3 keys"},
    {"s3-credentials-retry-max-ms", "PIXQ_S3_CREDENTIALS_RETRY_MAX_MS", T_LONG,
     F(s3_credentials_retry_max_ms), 100, 3600000, "30000", false,
     "after fetches of the S3 keys that failed in a row, that time doubled up to this"},
    {"aws-region", "AWS_REGION", T_STR, F(aws_region), 0, 0, "us-east-1", false,
     "default region of destination buckets"},
    {"s3-endpoint", "PIXQ_S3_ENDPOINT", T_URL, F(s3_endpoint), 0, 0, "", false,
     "endpoint of an S3-compatible store (empty: AWS)"},
    {"s3-path-style", "PIXQ_S3_PATH_STYLE", T_AUTO01, F(s3_path_style), 0, 0, "auto", false,
     "path-style addressing: auto (on with a custom endpoint), 0 or 1"},
    {"default-bucket", "PIXQ_DEFAULT_BUCKET", T_STR, F(default_bucket), 0, 0, "", false,
     "bucket for saves without s3_destination"},
    {"s3-default-acl", "PIXQ_S3_DEFAULT_ACL", T_STR, F(s3_default_acl), 0, 0, "public-read", false,
     "x-amz-acl sent with every upload unless the job's headers override it: empty (none) or a canned ACL (private, public-read, ...)"},
    {"s3-rate", "PIXQ_S3_RATE", T_RATE, 0, 0, 0, "10/s,burst=20", false,
     "default PUT rate and burst per destination bucket"},
    {"postback-secret", "PIXQ_POSTBACK_SECRET", T_STR, F(postback_secret), 0, 0, "", true,
     "HMAC key that signs postbacks"},
    {"allow-private-networks", "PIXQ_ALLOW_PRIVATE_NETWORKS", T_BOOL, F(allow_private_networks),
     0, 1, "0", false, "let src and postback_url reach loopback and private addresses"},
    {"log-level", "PIXQ_LOG_LEVEL", T_LEVEL, F(log_level), 0, 0, "info", false,
     "debug, info, warn or error"},
    {"max-src-bytes", "PIXQ_MAX_SRC_BYTES", T_LONG, F(max_src_bytes), KB, 2048 * MB, "50331648",
     false, "largest source download, bytes"},
    {"max-profile-bytes", "PIXQ_MAX_PROFILE_BYTES", T_LONG, F(max_profile_bytes), KB, 16 * MB,
     "4194304", false, "largest ICC profile add_profile applies (it goes into every output), bytes"},
    {"max-sources", "PIXQ_MAX_SOURCES", T_LONG, F(max_sources), 1, 10000, "100", false,
     "most source downloads of one job (its src, composites', other_images'...; a source named again counts once while PIXQ_SOURCE_CACHE_BYTES keeps it)"},
    {"source-cache-bytes", "PIXQ_SOURCE_CACHE_BYTES", T_LONG, F(source_cache_bytes), 0,
     2048 * MB, "50331648", false,
     "most bytes of a job's sources named more than once kept for its run, so each is downloaded once (0: none)"},
    {"max-output-bytes", "PIXQ_MAX_OUTPUT_BYTES", T_LONG, F(max_output_bytes), KB, 2048 * MB,
     "104857600", false, "largest encoded output, bytes"},
    {"max-job-output-bytes", "PIXQ_MAX_JOB_OUTPUT_BYTES", T_LONG, F(max_job_output_bytes), KB,
     16384 * MB, "268435456", false,
     "most bytes of encoded outputs a job holds before they are uploaded (its saves, all together)"},
    {"max-job-bytes", "PIXQ_MAX_JOB_BYTES", T_LONG, F(max_job_bytes), 256, 16 * MB, "250000", false,
     "largest job JSON, bytes"},
    {"max-batch-bytes", "PIXQ_MAX_BATCH_BYTES", T_LONG, F(max_batch_bytes), 256, 256 * MB,
     "16777216", false,
     "largest batch (a JSON array of jobs pushed as one entry), bytes; each job obeys "
     "PIXQ_MAX_JOB_BYTES"},
    {"max-json-depth", "PIXQ_MAX_JSON_DEPTH", T_LONG, F(max_json_depth), 4, 1000, "32", false,
     "deepest nesting of job JSON"},
    {"max-functions", "PIXQ_MAX_FUNCTIONS", T_LONG, F(max_functions), 1, 10000, "100", false,
     "most functions in one job's tree"},
    {"max-pixels", "PIXQ_MAX_PIXELS", T_LONG, F(max_pixels), 1, 1000000000L, "50000000", false,
     "most pixels in a source or output image"},
    {"connect-timeout-ms", "PIXQ_CONNECT_TIMEOUT_MS", T_LONG, F(connect_timeout_ms), 100, 120000,
     "5000", false, "TCP+TLS connect timeout for every HTTP request"},
    {"download-timeout-ms", "PIXQ_DOWNLOAD_TIMEOUT_MS", T_LONG, F(download_timeout_ms), 100,
     3600000, "60000", false, "whole-transfer timeout for a source download"},
    {"job-download-timeout-ms", "PIXQ_JOB_DOWNLOAD_TIMEOUT_MS", T_LONG,
     F(job_download_timeout_ms), 100, 86400000L, "300000", false,
     "all of one job's source downloads together (its src, composites' and other_images')"},
    {"s3-timeout-ms", "PIXQ_S3_TIMEOUT_MS", T_LONG, F(s3_timeout_ms), 100, 3600000, "60000", false,
     "whole-request timeout for one S3 request"},
    {"postback-timeout-ms", "PIXQ_POSTBACK_TIMEOUT_MS", T_LONG, F(postback_timeout_ms), 100,
     600000, "15000", false, "whole-request timeout for a postback (Blitline: 15 s)"},
    {"default-quality", "PIXQ_DEFAULT_QUALITY", T_LONG, F(default_quality), 1, 100, "75", false,
     "JPEG/WebP quality when a save gives none"},
    {"result-ttl-s", "PIXQ_RESULT_TTL_S", T_LONG, F(result_ttl_s), 1, 30 * 86400L, "86400", false,
     "how long pixq:{Q}:result:<id> is kept, seconds"},
    {"dead-max", "PIXQ_DEAD_MAX", T_LONG, F(dead_max), 1, 10000000L, "10000", false,
     "most entries kept in pixq:{Q}:dead"},
    {"reserve-timeout-ms", "PIXQ_RESERVE_TIMEOUT_MS", T_LONG, F(reserve_timeout_ms), 10, 60000,
     "1000", false, "longest blocking wait for a job before the worker looks around again"},
    {"queue-poll-ms", "PIXQ_QUEUE_POLL_MS", T_LONG, F(queue_poll_ms), 1, 60000, "100", false,
     "with several queues: longest wait for a job of a lower-priority queue while idle"},
    {"redis-timeout-ms", "PIXQ_REDIS_TIMEOUT_MS", T_LONG, F(redis_timeout_ms), 100, 600000, "5000",
     false, "connect and reply timeout for Redis, on top of any blocking wait"},
    {"redis-outage-ms", "PIXQ_REDIS_OUTAGE_MS", T_LONG, F(redis_outage_ms), 0, 86400000L,
     "300000", false,
     "pixq stats --watch, pixq submit --wait and pixq job --wait: how long they keep "
     "reconnecting to a Redis that went away or is loading before they give up (0: at the "
     "first failure)"},
    {"redis-retry-min-ms", "PIXQ_REDIS_RETRY_MIN_MS", T_LONG, F(redis_retry_min_ms), 1, 60000,
     "100", false,
     "a worker's first wait after a Redis failure, doubling up to PIXQ_REDIS_RETRY_MAX_MS (each "
     "wait 50-100 % of its step)"},
    {"redis-retry-max-ms", "PIXQ_REDIS_RETRY_MAX_MS", T_LONG, F(redis_retry_max_ms), 1, 60000,
     "5000", false, "a worker's longest wait between tries of a Redis that fails"},
    {"settle-attempts", "PIXQ_SETTLE_ATTEMPTS", T_LONG, F(settle_attempts), 1, 1000, "50", false,
     "tries (PIXQ_REDIS_RETRY_MIN_MS doubling to PIXQ_REDIS_RETRY_MAX_MS apart) to record a job's "
     "outcome through a Redis outage before "
     "keeping it to record when the job comes back from the worker's active list; also the "
     "failed reads in a row of a postback retry's stored result that give the retry up"},
    {"lease-ms", "PIXQ_LEASE_MS", T_LONG, F(lease_ms), 1000, 3600000, "20000", false,
     "a worker silent for this long is dead and its job goes back to the queue"},
    {"heartbeat-ms", "PIXQ_HEARTBEAT_MS", T_LONG, F(heartbeat_ms), 100, 1200000, "5000", false,
     "how often a worker renews its lease (at most a third of the lease)"},
    {"reap-interval-ms", "PIXQ_REAP_INTERVAL_MS", T_LONG, F(reap_interval_ms), 100, 600000, "5000",
     false, "how often each worker looks for expired leases"},
    {"max-recoveries", "PIXQ_MAX_RECOVERIES", T_LONG, F(max_recoveries), 1, 100, "3", false,
     "crashes of its worker after which a job is a poison pill and goes to dead"},
    {"job-hang-s", "PIXQ_JOB_HANG_S", T_LONG, F(job_hang_s), 1, 86400, "600", false,
     "a job that used more CPU than this, seconds, is taken for hung: the worker gives it back, "
     "counted as a crash, and exits to be restarted (ImageMagick can spend unbounded time where "
     "its deadline does not reach; waits for the network cost no CPU)"},
    {"max-attempts", "PIXQ_MAX_ATTEMPTS", T_LONG, F(max_attempts), 1, 100, "3", false,
     "runs of a job whose source failed transiently (timeout, reset, 5xx) before it fails"},
    {"retry-base-ms", "PIXQ_RETRY_BASE_MS", T_LONG, F(retry_base_ms), 1, 3600000, "1000", false,
     "first retry delay; doubles per attempt, each wait drawn between half its step and the step"},
    {"retry-max-ms", "PIXQ_RETRY_MAX_MS", T_LONG, F(retry_max_ms), 1, 86400000L, "60000", false,
     "longest retry delay"},
    {"retry-after-max-ms", "PIXQ_RETRY_AFTER_MAX_MS", T_LONG, F(retry_after_max_ms), 0, 86400000L,
     "300000", false,
     "longest wait a source's or postback receiver's Retry-After (with 429 or 503) may set before "
     "the retry; a longer one waits this long; 0: Retry-After is ignored"},
    {"dead-max-age-s", "PIXQ_DEAD_MAX_AGE_S", T_LONG, F(dead_max_age_s), 60, 3650 * 86400L,
     "15552000", false, "oldest entry kept in pixq:{Q}:dead, seconds (180 days)"},
    {"shutdown-timeout-ms", "PIXQ_SHUTDOWN_TIMEOUT_MS", T_LONG, F(shutdown_timeout_ms), 0, 3600000,
     "25000", false, "on SIGTERM, how long the current job may finish before it is given back"},
    {"promote-batch", "PIXQ_PROMOTE_BATCH", T_LONG, F(promote_batch), 1, 100000, "500", false,
     "most delayed payloads moved to the queue in one step"},
    {"s3-max-attempts", "PIXQ_S3_MAX_ATTEMPTS", T_LONG, F(s3_max_attempts), 1, 100, "5", false,
     "tries of one upload through throttling, 5xx, resets and timeouts before it fails"},
    {"s3-retry-base-ms", "PIXQ_S3_RETRY_BASE_MS", T_LONG, F(s3_retry_base_ms), 1, 3600000, "200",
     false, "first upload retry delay; doubles per attempt, with full jitter"},
    {"s3-throttle-retry-base-ms", "PIXQ_S3_THROTTLE_RETRY_BASE_MS", T_LONG,
     F(s3_throttle_retry_base_ms), 1, 3600000, "1000", false,
     "first upload retry delay after a throttling answer (503, 429, SlowDown); doubles per attempt"},
    {"s3-retry-max-ms", "PIXQ_S3_RETRY_MAX_MS", T_LONG, F(s3_retry_max_ms), 1, 86400000L, "20000",
     false, "longest upload retry delay"},
    {"s3-local-wait-ms", "PIXQ_S3_LOCAL_WAIT_MS", T_LONG, F(s3_local_wait_ms), 0, 600000, "100",
     false, "longest a worker waits for its upload slot before parking the output in Redis"},
    {"s3-horizon-ms", "PIXQ_S3_HORIZON_MS", T_LONG, F(s3_horizon_ms), 1000, 86400000L, "600000",
     false, "furthest upload slot reserved ahead; beyond it an output is parked unreserved"},
    {"s3-min-rate", "PIXQ_S3_MIN_RATE", T_DOUBLE, F(s3_min_rate), 0, 0, "0.5", false,
     "lowest rate the adaptive limiter slows a bucket to, PUT/s"},
    {"s3-cooldown-ms", "PIXQ_S3_COOLDOWN_MS", T_LONG, F(s3_cooldown_ms), 0, 600000, "1000", false,
     "throttling answers within this of a decrease count as the same congestion episode"},
    {"s3-expect-continue-bytes", "PIXQ_S3_EXPECT_CONTINUE_BYTES", T_LONG,
     F(s3_expect_continue_bytes), 0, 1073741824L, "1048576", false,
     "an upload of this many bytes or more asks S3 first (Expect: 100-continue), so that a "
     "refusal (SlowDown, a wrong region) comes before the body is sent; 0: never"},
    {"s3-expect-continue-ms", "PIXQ_S3_EXPECT_CONTINUE_MS", T_LONG, F(s3_expect_continue_ms), 1,
     60000, "1000", false, "the body is sent anyway after this long without S3's answer"},
    {"s3-idle-ms", "PIXQ_S3_IDLE_MS", T_LONG, F(s3_idle_ms), 1000, 3600000, "20000", false,
     "an S3 connection idle this long is not reused (S3 closes idle ones at about 20 s)"},
    {"rl-idle-ttl-s", "PIXQ_RL_IDLE_TTL_S", T_LONG, F(rl_idle_ttl_s), 60, 365 * 86400L, "86400",
     false, "a bucket's limiter state unused this long expires (unless it has an override)"},
    {"blob-ttl-s", "PIXQ_BLOB_TTL_S", T_LONG, F(blob_ttl_s), 60, 30 * 86400L, "86400", false,
     "how long a parked output and its job's state are kept past the time the output is due"},
    {"max-parked-mb", "PIXQ_MAX_PARKED_MB", T_LONG, F(max_parked_mb), 0, 1048576L, "256", false,
     "most MB of a queue's outputs parked in Redis: past it workers take only uploads and other "
     "tasks from that queue, no new job, until uploads bring it under (0: no limit)"},
    {"wait-for-s3-interval-ms", "PIXQ_WAIT_FOR_S3_INTERVAL_MS", T_LONG,
     F(wait_for_s3_interval_ms), 100, 600000, "2000", false,
     "wait_for_s3: pause between checks that the uploaded objects are readable"},
    {"wait-for-s3-max-ms", "PIXQ_WAIT_FOR_S3_MAX_MS", T_LONG, F(wait_for_s3_max_ms), 0, 3600000,
     "10000", false, "wait_for_s3: longest wait before posting back regardless"},
    {"postback-retry", "PIXQ_POSTBACK_RETRY", T_BOOL, F(postback_retry), 0, 1, "0", false,
     "retry failed postbacks of every job, not only those with retry_postback"},
    {"postback-retry-delays-s", "PIXQ_POSTBACK_RETRY_DELAYS_S", T_STR, F(postback_retry_delays_s),
     0, 0, "1,3,15,600", false,
     "waits before each postback retry, seconds, comma-separated (1 to 16 waits of 1 to 86400): "
     "one retry each"},
    /* hostile input: what a job may reach and ask for */
    {"allowed-networks", "PIXQ_ALLOWED_NETWORKS", T_NETS, F(allowed_networks), 0, 0, "", false,
     "networks (comma-separated CIDRs) that src and postback_url may reach although private"},
    {"max-redirects", "PIXQ_MAX_REDIRECTS", T_LONG, F(max_redirects), 0, 20, "3", false,
     "redirects followed for a source download, each checked like the first request"},
    {"low-speed-bytes-per-s", "PIXQ_LOW_SPEED_BYTES_PER_S", T_LONG, F(low_speed_bytes_per_s), 0,
     1000000000L, "1024", false,
     "a source download slower than this for PIXQ_LOW_SPEED_TIME_S is cut (0: never)"},
    {"low-speed-time-s", "PIXQ_LOW_SPEED_TIME_S", T_LONG, F(low_speed_time_s), 1, 3600, "10",
     false, "seconds below PIXQ_LOW_SPEED_BYTES_PER_S after which a transfer is cut"},
    /* at most 1000: parking them all (11 + 4 keys and arguments a save) must fit one script call
     * (rq.c's MAX_ARGS) */
    {"max-saves", "PIXQ_MAX_SAVES", T_LONG, F(max_saves), 1, 1000, "50", false,
     "most saves (outputs) in one job, pre_process included"},
    {"s3-buckets", "PIXQ_S3_BUCKETS", T_BUCKETS, F(s3_buckets), 0, 0, "", false,
     "the only buckets jobs may write to and read from, comma-separated (empty: any)"},
    /* hostile input: the image guard (worker/image.c) */
    {"image-formats", "PIXQ_IMAGE_FORMATS", T_STR, F(image_formats), 0, 0, "jpeg,png,gif,webp",
     false, "source formats accepted (by content), comma-separated: jpeg, png, gif, webp, tiff, "
     "heic, avif, bmp"},
    {"max-frames", "PIXQ_MAX_FRAMES", T_LONG, F(max_frames), 1, 100000, "100", false,
     "most frames (or pages) in a source image"},
    {"magick-memory-mb", "PIXQ_MAGICK_MEMORY_MB", T_LONG, F(magick_memory_mb), 16, 1048576, "256",
     false, "ImageMagick's pixel memory, MiB (can only lower its policy.xml)"},
    {"magick-map-mb", "PIXQ_MAGICK_MAP_MB", T_LONG, F(magick_map_mb), 16, 1048576, "512", false,
     "ImageMagick's memory-mapped pixel cache, MiB (can only lower its policy.xml)"},
    {"magick-disk-mb", "PIXQ_MAGICK_DISK_MB", T_LONG, F(magick_disk_mb), 0, 1048576, "1024", false,
     "ImageMagick's pixel cache on disk, MiB (can only lower its policy.xml)"},
    {"magick-time-s", "PIXQ_MAGICK_TIME_S", T_LONG, F(magick_time_s), 1, 86400, "60", false,
     "longest ImageMagick may work on one source and what is made of it, seconds"},
    {"exif-max-values", "PIXQ_EXIF_MAX_VALUES", T_LONG, F(exif_max_values), 100000, 1000000000,
     "1000000", false,
     "most EXIF values ImageMagick may format as text reading one image, a fraction counting 4 "
     "(a camera's make 1,000 to 70,000; 1,000,000 take about 0.1 s each time ImageMagick walks "
     "them, a few times a read)"},
    {"xmp-max-elements", "PIXQ_XMP_MAX_ELEMENTS", T_LONG, F(xmp_max_elements), 1000, 10000000,
     "20000", false,
     "most XMP elements ImageMagick may parse reading one image (its parser is quadratic: "
     "20,000 siblings take about 0.3 s; an edited photo's XMP has hundreds to thousands)"},
    {"metadata-max-mb", "PIXQ_METADATA_MAX_MB", T_LONG, F(metadata_max_mb), 1, 4096, "64", false,
     "most MiB of profiles (EXIF, ICC, XMP...) one image may hold; as a JPEG's segments are "
     "joined, ImageMagick may copy 4 times that in all (an XMP profile counting 16 times)"},
    {"shrink-on-load", "PIXQ_SHRINK_ON_LOAD", T_BOOL, F(shrink_on_load), 0, 1, "1", false,
     "decode a source at the smallest size the job's outputs need: JPEG and WebP by their "
     "decoders, PNG (PIXQ_PNG_SHRINK) and the rest shrunk after decoding (0: full size, and "
     "PIXQ_JPEG_DC and PIXQ_PNG_SHRINK unused)"},
    {"jpeg-dc", "PIXQ_JPEG_DC", T_BOOL, F(jpeg_dc), 0, 1, "1", false,
     "read a progressive JPEG needed at 1/8 from its DC coefficients alone (0: libjpeg decodes "
     "every scan)"},
    {"png-shrink", "PIXQ_PNG_SHRINK", T_BOOL, F(png_shrink), 0, 1, "1", false,
     "decode an 8-bit RGB(A), a palette or a grey PNG needed at 1/2, 1/4 or 1/8 itself "
     "(libdeflate), box-averaging row by row (0: ImageMagick reads it whole)"},
    {"fast-resize", "PIXQ_FAST_RESIZE", T_BOOL, F(fast_resize), 0, 1, "1", false,
     "resize a true-colour image with pixq's own filters (ImageMagick's choice), in one "
     "streaming pass (0: ImageMagick's resize)"},
    /* running a fleet */
    {"processes", "PIXQ_PROCESSES", T_LONG, F(processes), 1, 256, "1", false,
     "worker processes, each single-threaded, under one supervisor that restarts any that die"},
    {"cpu-affinity", "PIXQ_CPU_AFFINITY", T_BOOL, F(cpu_affinity), 0, 1, "0", false,
     "pin worker process i to the i-th of the CPUs pixq-worker may use (wrapping round): for "
     "machines that run little besides the workers"},
    {"restart-quick-exit-ms", "PIXQ_RESTART_QUICK_EXIT_MS", T_LONG, F(restart_quick_exit_ms), 1000,
     3600000, "10000", false,
     "a worker process that dies sooner than this after its start is crash-looping"},
    {"restart-backoff-min-ms", "PIXQ_RESTART_BACKOFF_MIN_MS", T_LONG, F(restart_backoff_min_ms),
     10, 3600000, "1000", false,
     "wait before a crash-looping worker's second quick restart, doubling after each"},
    {"restart-backoff-max-ms", "PIXQ_RESTART_BACKOFF_MAX_MS", T_LONG, F(restart_backoff_max_ms),
     10, 3600000, "30000", false, "longest wait before a worker process is started again"},
    {"stop-grace-ms", "PIXQ_STOP_GRACE_MS", T_LONG, F(stop_grace_ms), 0, 3600000, "5000", false,
     "on stop, worker processes still running this long after PIXQ_SHUTDOWN_TIMEOUT_MS are killed"},
    {"metrics-addr", "PIXQ_METRICS_ADDR", T_STR, F(metrics_addr), 0, 0, "", false,
     "HOST:PORT to serve Prometheus metrics on (e.g. 127.0.0.1:9464); empty: off"},
    {"metrics-max-connections", "PIXQ_METRICS_MAX_CONNECTIONS", T_LONG,
     F(metrics_max_connections), 1, 4096, "16", false,
     "connections the metrics server serves at once (a new one replaces the oldest idle one)"},
    {"metrics-max-request-bytes", "PIXQ_METRICS_MAX_REQUEST_BYTES", T_LONG,
     F(metrics_max_request_bytes), 256, 1048576, "8192", false,
     "longest request line and headers the metrics server reads (431 past it)"},
    {"metrics-timeout-ms", "PIXQ_METRICS_TIMEOUT_MS", T_LONG, F(metrics_timeout_ms), 100, 600000,
     "5000", false, "the metrics server drops a connection this long after accepting it"},
    {"log-format", "PIXQ_LOG_FORMAT", T_STR, F(log_format), 0, 0, "text", false,
     "text (key=value) or json, one line per event"},
};
/* clang-format on */

#define N_ENTRIES (sizeof table / sizeof table[0])

static const struct cfg_entry *find_entry(const char *key)
{
    for (size_t i = 0; i < N_ENTRIES; i++) {
        if (strcmp(key, table[i].flag) == 0 || strcmp(key, table[i].var) == 0) {
            return &table[i];
        }
    }
    return NULL;
}

/* Whether the first `n` bytes of `s` are a plain decimal: an optional '-', digits and, with
 * `fraction`, at most one '.' among them; not the blanks, '+', exponents or hex that strtol and
 * strtod also take (" 5", "+7", "0x10", "1e3" were settings' values). */
static bool decimal_text(const char *s, size_t n, bool fraction)
{
    size_t i = n > 0 && s[0] == '-' ? 1 : 0;
    bool digit = false, dot = false;
    for (; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            digit = true;
        } else if (s[i] == '.' && fraction && !dot) {
            dot = true;
        } else {
            return false;
        }
    }
    return digit;
}

/* -1: not a plain decimal; -2: a plain decimal past what a long holds (out of any range). */
static int parse_long(const char *s, long *out)
{
    if (!decimal_text(s, strlen(s), false)) {
        return -1;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE) {
        return -2;
    }
    if (errno != 0 || end == s || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* "10/s,burst=20", "2.5/s", "10/s, burst=0". */
static int parse_rate(const char *s, double *rate, long *burst)
{
    if (!decimal_text(s, strcspn(s, "/"), true)) {
        return -1;
    }
    char *end;
    errno = 0;
    double r = strtod(s, &end);
    /* the range `pixq limit set` takes */
    if (errno != 0 || end == s || !isfinite(r) || r < 0.001 || r > 1e6 ||
        strncmp(end, "/s", 2) != 0) {
        return -1;
    }
    end += 2;
    long b = *burst;
    if (*end == ',') {
        end++;
        while (*end == ' ') {
            end++;
        }
        if (strncmp(end, "burst=", 6) != 0 || parse_long(end + 6, &b) < 0 || b < 0 || b > 1000000) {
            return -1;
        }
    } else if (*end != '\0') {
        return -1;
    }
    *rate = r;
    *burst = b;
    return 0;
}

/* The next item of the comma-separated list at `*p`, without the blanks around it (`a, b`, as
 * PIXQ_QUEUE and PIXQ_ALLOWED_NETWORKS take): its start, its length in `*len`; `*p` moves past
 * it and its comma. */
static const char *list_item(const char **p, size_t *len)
{
    const char *s = *p + strspn(*p, " \t");
    size_t n = strcspn(s, ",");
    *p = s[n] == ',' ? s + n + 1 : s + n;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    *len = n;
    return s;
}

/* Validates the items of a T_NETS or T_BUCKETS list; other types pass. */
static int check_list(const struct cfg_entry *en, const char *value, struct err *e)
{
    if (en->type == T_NETS) {
        struct netguard g;
        return netguard_init(&g, false, value, e) < 0 ? err_wrap(e, "%s", en->var) : 0;
    }
    if (en->type != T_BUCKETS) {
        return 0;
    }
    for (const char *p = value; *p != '\0';) {
        char name[128];
        size_t n;
        const char *item = list_item(&p, &n);
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), item);
        if (n >= sizeof name || !s3_valid_bucket(name)) {
            return err_set(e, "%s: '%s' is not a valid bucket name", en->var, name);
        }
    }
    return 0;
}

/* http:// or https://, a host with an optional :port, then an optional path (set_string()
 * takes none but "/"); no spaces or control characters anywhere. */
static bool valid_http_url(const char *v)
{
    const char *p = strncmp(v, "http://", 7) == 0    ? v + 7
                    : strncmp(v, "https://", 8) == 0 ? v + 8
                                                     : NULL;
    if (p == NULL) {
        return false;
    }
    size_t host = strcspn(p, "/?#");
    if (host == 0 || p[0] == ':' || memchr(p, '@', host) != NULL ||
        (p[host] != '\0' && p[host] != '/')) {
        return false; /* s3.c signs for the authority up to the first '/': no user@, ? or # */
    }
    for (const char *q = p; *q != '\0'; q++) {
        if ((unsigned char)*q <= ' ' || *q == 0x7f) {
            return false;
        }
    }
    return true;
}

static int set_string(struct cfg *c, const struct cfg_entry *en, const char *value, struct err *e)
{
    size_t n = strlen(value);
    long cap = en->type == T_STR && en->max > 0 ? en->max : CFG_STR_MAX; /* the field's size */
    if (n >= (size_t)cap) {
        return err_set(e, "%s: value longer than %ld bytes", en->var, cap - 1);
    }
    char shown[CFG_STR_MAX + 8] = ""; /* a URL as errors show it: a password in it as *** */
    if (en->type == T_URL) {
        cfg_redact_url(value, shown, sizeof shown);
    }
    if (en->type == T_URL && n > 0 && !valid_http_url(value)) {
        return err_set(e,
                       "%s: '%s' is not an http:// or https:// URL with a host (and no "
                       "user:password@, query, fragment, blank or control character)",
                       en->var, shown);
    }
    const char *path = en->type == T_URL && n > 0 ? strchr(strstr(value, "//") + 2, '/') : NULL;
    if (path != NULL && strcmp(path, "/") != 0) { /* s3.c addresses buckets at the root */
        return err_set(e,
                       "%s: '%s' has a path; buckets are addressed at the endpoint's root (a "
                       "store under a path prefix is not supported)",
                       en->var, shown);
    }
    if (check_list(en, value, e) < 0) {
        return -1;
    }
    memcpy((char *)c + en->off, value, n + 1);
    return 0;
}

static int set_long(struct cfg *c, const struct cfg_entry *en, const char *value, struct err *e)
{
    long v;
    int rc = parse_long(value, &v);
    if (rc == -2) {
        return err_set(e, "%s: %s is out of range [%ld, %ld]", en->var, value, en->min, en->max);
    }
    if (rc < 0) {
        return err_set(e, "%s: '%s' is not a whole number", en->var, value);
    }
    if (v < en->min || v > en->max) {
        return err_set(e, "%s: %ld is out of range [%ld, %ld]", en->var, v, en->min, en->max);
    }
    *(long *)((char *)c + en->off) = v;
    return 0;
}

/* A T_DOUBLE: a plain decimal number above 0 and at most DOUBLE_MAX. */
static int set_double(struct cfg *c, const struct cfg_entry *en, const char *value, struct err *e)
{
    char *end;
    double d = strtod(value, &end);
    if (!decimal_text(value, strlen(value), true) || end == value || *end != '\0' || !isfinite(d)) {
        return err_set(e, "%s: '%s' is not a decimal number", en->var, value);
    }
    if (d <= 0 || d > DOUBLE_MAX) {
        return err_set(e, "%s: %s is out of range (above 0, at most %.0f)", en->var, value,
                       DOUBLE_MAX);
    }
    *(double *)((char *)c + en->off) = d;
    return 0;
}

static int set_typed(struct cfg *c, const struct cfg_entry *en, const char *value, struct err *e)
{
    char *field = (char *)c + en->off;
    switch (en->type) {
    case T_STR:
    case T_URL:
    case T_NETS:
    case T_BUCKETS:
        return set_string(c, en, value, e);
    case T_LONG:
        return set_long(c, en, value, e);
    case T_DOUBLE:
        return set_double(c, en, value, e);
    case T_BOOL:
        if (parse_bool(value, (bool *)field) < 0) {
            return err_set(e, "%s: '%s' is not a boolean (0/1, true/false, yes/no, on/off)",
                           en->var, value);
        }
        return 0;
    case T_LEVEL: {
        enum log_level lv;
        if (log_parse_level(value, &lv) < 0) {
            return err_set(e, "%s: '%s' is not debug, info, warn or error", en->var, value);
        }
        *(int *)field = (int)lv;
        return 0;
    }
    case T_RATE:
        if (parse_rate(value, &c->s3_rate, &c->s3_burst) < 0) {
            return err_set(e,
                           "%s: '%s' is not of the form '10/s,burst=20' (0.001/s to 1000000/s, "
                           "burst 0 to 1000000)",
                           en->var, value);
        }
        return 0;
    case T_AUTO01:
        if (strcmp(value, "auto") == 0) {
            *(int *)field = -1;
            return 0;
        }
        bool b;
        if (parse_bool(value, &b) < 0) {
            return err_set(e, "%s: '%s' is not auto or a boolean (0/1, true/false, yes/no, on/off)",
                           en->var, value);
        }
        *(int *)field = b ? 1 : 0;
        return 0;
    }
    return err_set(e, "%s: unknown type", en->var);
}

void cfg_defaults(struct cfg *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_ENTRIES; i++) {
        int rc = set_typed(c, &table[i], table[i].def, NULL);
        (void)rc; /* the defaults are constants checked by the unit tests */
    }
}

int cfg_set(struct cfg *c, const char *key, const char *value, struct err *e)
{
    const struct cfg_entry *en = find_entry(key);
    if (en == NULL) {
        return 1;
    }
    return set_typed(c, en, value, e);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

static char *unquote(char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        return v + 1;
    }
    return v;
}

static int load_line(struct cfg *c, char *line, const char *path, int lineno, struct err *e)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';') { /* comments, as systemd's EnvironmentFile= */
        return 0;
    }
    if (strncmp(s, "export ", 7) == 0) {
        s = trim(s + 7);
        if (c->export_line[0] == '\0') {
            snprintf(c->export_line, sizeof c->export_line, "%.*s:%d", CFG_STR_MAX - 1, path,
                     lineno);
        }
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        return err_set(e, "%s:%d: expected KEY=value", path, lineno);
    }
    *eq = '\0';
    int rc = cfg_set(c, trim(s), unquote(trim(eq + 1)), e);
    if (rc == 1) {
        return err_set(e, "%s:%d: unknown setting '%s'", path, lineno, trim(s));
    }
    if (rc < 0) {
        return err_wrap(e, "%s:%d", path, lineno);
    }
    return 0;
}

int cfg_load_file(struct cfg *c, const char *path, struct err *e)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return err_set(e, "cannot open config file %s: %s", path, strerror(errno));
    }
    char line[CFG_TOKEN_MAX + 128];
    int lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = err_set(e, "%s:%d: line too long", path, lineno);
            break;
        }
        rc = load_line(c, line, path, lineno, e);
    }
    if (rc == 0 && ferror(f)) { /* a directory opens, then fails to read (EISDIR) */
        rc = err_set(e, "cannot read config file %s: %s", path, strerror(errno));
    }
    fclose(f);
    return rc;
}

int cfg_load_env(struct cfg *c, const char *(*get)(const char *name), struct err *e)
{
    for (size_t i = 0; i < N_ENTRIES; i++) {
        const char *v = get(table[i].var);
        if (v != NULL && set_typed(c, &table[i], v, e) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Finds `--config FILE` / `--config=FILE` in argv, or PIXQ_CONFIG (empty: none, as unset). */
static const char *config_path(int argc, char **argv, const char *(*get)(const char *name))
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            break;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            return argv[i + 1];
        }
        if (strncmp(argv[i], "--config=", 9) == 0) {
            return argv[i] + 9;
        }
    }
    const char *path = get("PIXQ_CONFIG");
    return path != NULL && path[0] != '\0' ? path : NULL;
}

/* The setting a flag's name (after "--") names: by flag, never by variable. */
static const struct cfg_entry *flag_entry(const char *name)
{
    return strchr(name, '_') == NULL ? find_entry(name) : NULL;
}

/* Applies argv[*i] if it is a setting flag, consuming its value; returns 1 if it is not one. */
static int apply_flag(struct cfg *c, int argc, char **argv, int *i, bool words, struct err *e)
{
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0) {
        return 1;
    }
    char name[128];
    const char *eq = strchr(arg, '=');
    size_t n = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    if (n >= sizeof name) {
        return 1;
    }
    memcpy(name, arg + 2, n);
    name[n] = '\0';
    if (strcmp(name, "config") == 0) {
        if (eq == NULL && *i + 1 >= argc) { /* else the file would be left unread, unsaid */
            return err_set(e, "--config needs a value");
        }
        *i += eq == NULL ? 1 : 0;
        return 0;
    }
    const struct cfg_entry *en = flag_entry(name);
    if (en == NULL) {
        return 1;
    }
    const char *value = eq != NULL ? eq + 1 : NULL;
    if (value == NULL && en->type == T_BOOL) {
        const char *next = words && *i + 1 < argc ? argv[*i + 1] : NULL;
        value = cfg_flag_values(arg, next) > 0 ? argv[++*i] : "1";
    } else if (value == NULL) {
        if (*i + 1 >= argc) {
            return err_set(e, "--%s needs a value", name);
        }
        value = argv[++*i];
    }
    return set_typed(c, en, value, e);
}

int cfg_flag_values(const char *arg, const char *next)
{
    if (strncmp(arg, "--", 2) != 0 || strchr(arg, '=') != NULL) {
        return 0;
    }
    const char *name = arg + 2;
    if (strcmp(name, "config") == 0) {
        return 1;
    }
    const struct cfg_entry *en = flag_entry(name);
    bool b;
    if (en != NULL && en->type == T_BOOL) {
        return next != NULL && parse_bool(next, &b) == 0 ? 1 : 0;
    }
    return en != NULL ? 1 : 0;
}

/* What is wrong with `s` as a listening address HOST:PORT (or [IPv6]:PORT), or NULL when nothing
 * is. A host of digits and dots must be an IPv4 address and a bracketed one an IPv6 address: else
 * the resolver would take it for a name and ask the name servers (256.1.1.1). */
static const char *host_port_fault(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0') {
        return "it needs a host, a ':' and a port";
    }
    long port;
    if (parse_long(colon + 1, &port) < 0 || port < 1 || port > 65535) {
        return "the port must be a number from 1 to 65535";
    }
    for (const char *p = s; p < colon; p++) {
        if (!isalnum((unsigned char)*p) && strchr(".-_:[]", *p) == NULL) {
            return "the host may hold only letters, digits and . - _ : [ ]";
        }
    }
    char host[CFG_STR_MAX];
    size_t n = (size_t)(colon - s);
    if (n >= sizeof host) {
        return "the host is too long";
    }
    memcpy(host, s, n);
    host[n] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    if (host[0] == '[') {
        if (n < 3 || host[n - 1] != ']') {
            return "a host in brackets must be an IPv6 address";
        }
        host[n - 1] = '\0';
        return inet_pton(AF_INET6, host + 1, addr) == 1
                   ? NULL
                   : "a host in brackets must be an IPv6 address";
    }
    return strspn(host, "0123456789.") < n || inet_pton(AF_INET, host, addr) == 1
               ? NULL
               : "a numeric host must be an IP address";
}

/* Copies the `n` bytes of one queue name at `s`, without the blanks around it, into `out`. */
static int add_queue(struct cfg_queues *out, const char *s, size_t n, const char *list,
                     struct err *e)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    if (n == 0 || n >= CFG_QUEUE_NAME_MAX) {
        return err_set(e, "PIXQ_QUEUE '%.200s': a queue name must have 1 to %d bytes", list,
                       CFG_QUEUE_NAME_MAX - 1);
    }
    if (memchr(s, '{', n) != NULL || memchr(s, '}', n) != NULL) {
        return err_set(e, "PIXQ_QUEUE '%.200s': a queue name cannot have braces", list);
    }
    if (out->n == CFG_QUEUES_MAX) {
        return err_set(e, "PIXQ_QUEUE '%.200s': at most %d queues", list, CFG_QUEUES_MAX);
    }
    memcpy(out->name[out->n], s, n);
    out->name[out->n][n] = '\0';
    for (size_t i = 0; i < out->n; i++) {
        if (strcmp(out->name[i], out->name[out->n]) == 0) {
            return err_set(e, "PIXQ_QUEUE '%.200s': queue '%s' named twice", list, out->name[i]);
        }
    }
    out->n++;
    return 0;
}

int cfg_queues(const char *list, struct cfg_queues *out, struct err *e)
{
    out->n = 0;
    const char *s = list;
    for (;;) {
        size_t n = strcspn(s, ",");
        if (add_queue(out, s, n, list, e) < 0) {
            return -1;
        }
        if (s[n] == '\0') {
            return 0;
        }
        s += n + 1;
    }
}

int cfg_delays(const char *list, struct cfg_delays *out, struct err *e)
{
    out->n = 0;
    for (const char *s = list;; s++) {
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        char *end;
        errno = 0;
        long v = *s >= '0' && *s <= '9' ? strtol(s, &end, 10) : -1;
        if (v >= 0) {
            while (*end == ' ' || *end == '\t') {
                end++;
            }
        }
        if (v < 1 || v > CFG_DELAY_MAX_S || errno != 0 || (*end != ',' && *end != '\0')) {
            return err_set(e,
                           "PIXQ_POSTBACK_RETRY_DELAYS_S: '%.100s' is not a list of 1 to %d whole "
                           "seconds from 1 to %d",
                           list, CFG_DELAYS_MAX, CFG_DELAY_MAX_S);
        }
        if (out->n == CFG_DELAYS_MAX) {
            return err_set(e, "PIXQ_POSTBACK_RETRY_DELAYS_S: more than %d waits", CFG_DELAYS_MAX);
        }
        out->s[out->n++] = v;
        if (*end == '\0') {
            return 0;
        }
        s = end;
    }
}

/* The canned ACLs S3 takes in x-amz-acl. */
static const char *const CANNED_ACLS[] = {
    "private",       "public-read",       "public-read-write",         "authenticated-read",
    "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
};

/* Whether `acl` is "" (no x-amz-acl header) or one of S3's canned ACLs. */
static bool valid_acl(const char *acl)
{
    for (size_t i = 0; i < sizeof CANNED_ACLS / sizeof CANNED_ACLS[0]; i++) {
        if (strcmp(acl, CANNED_ACLS[i]) == 0) {
            return true;
        }
    }
    return acl[0] == '\0';
}

/* Checks the S3 settings that agree with each other or with S3's rules. */
static int cross_check_s3(const struct cfg *c, struct err *e)
{
    if (c->s3_retry_base_ms > c->s3_retry_max_ms) {
        return err_set(e, "PIXQ_S3_RETRY_BASE_MS (%ld) must not exceed PIXQ_S3_RETRY_MAX_MS (%ld)",
                       c->s3_retry_base_ms, c->s3_retry_max_ms);
    }
    if (c->s3_throttle_retry_base_ms > c->s3_retry_max_ms) {
        return err_set(e,
                       "PIXQ_S3_THROTTLE_RETRY_BASE_MS (%ld) must not exceed PIXQ_S3_RETRY_MAX_MS "
                       "(%ld)",
                       c->s3_throttle_retry_base_ms, c->s3_retry_max_ms);
    }
    if (!s3_valid_region(c->aws_region)) {
        return err_set(e, "AWS_REGION: '%s' is not a region name (letters, digits and -)",
                       c->aws_region);
    }
    if (c->default_bucket[0] != '\0' && !s3_valid_bucket(c->default_bucket)) {
        return err_set(e, "PIXQ_DEFAULT_BUCKET: '%s' is not a valid S3 bucket name",
                       c->default_bucket);
    }
    if (!valid_acl(c->s3_default_acl)) {
        return err_set(e,
                       "PIXQ_S3_DEFAULT_ACL: '%s' is not empty or a canned ACL (private, "
                       "public-read, public-read-write, authenticated-read, aws-exec-read, "
                       "bucket-owner-read, bucket-owner-full-control)",
                       c->s3_default_acl);
    }
    return 0;
}

/* Checks that settings agree with each other, and the lists and URL parsed only later. */
static int cross_check(const struct cfg *c, struct err *e)
{
    struct cfg_queues queues;
    struct rq_url url;
    struct cfg_delays delays;
    if (cfg_queues(c->queue, &queues, e) < 0 || rq_parse_url(c->redis_url, &url, e) < 0 ||
        cfg_delays(c->postback_retry_delays_s, &delays, e) < 0) {
        return -1;
    }
    if (c->heartbeat_ms * 3 > c->lease_ms) {
        return err_set(e, "PIXQ_HEARTBEAT_MS (%ld) must be at most a third of PIXQ_LEASE_MS (%ld)",
                       c->heartbeat_ms, c->lease_ms);
    }
    if (c->redis_retry_min_ms > c->redis_retry_max_ms) {
        return err_set(
            e, "PIXQ_REDIS_RETRY_MIN_MS (%ld) must not exceed PIXQ_REDIS_RETRY_MAX_MS (%ld)",
            c->redis_retry_min_ms, c->redis_retry_max_ms);
    }
    if (c->retry_base_ms > c->retry_max_ms) {
        return err_set(e, "PIXQ_RETRY_BASE_MS (%ld) must not exceed PIXQ_RETRY_MAX_MS (%ld)",
                       c->retry_base_ms, c->retry_max_ms);
    }
    if (strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0) {
        return err_set(e, "PIXQ_LOG_FORMAT: '%s' is not text or json", c->log_format);
    }
    if (c->restart_backoff_min_ms > c->restart_backoff_max_ms) {
        return err_set(e,
                       "PIXQ_RESTART_BACKOFF_MIN_MS (%ld) must not exceed "
                       "PIXQ_RESTART_BACKOFF_MAX_MS (%ld)",
                       c->restart_backoff_min_ms, c->restart_backoff_max_ms);
    }
    const char *fault = c->metrics_addr[0] != '\0' ? host_port_fault(c->metrics_addr) : NULL;
    if (fault != NULL) {
        return err_set(e, "PIXQ_METRICS_ADDR: '%s' is not HOST:PORT (%s)", c->metrics_addr, fault);
    }
    return cross_check_s3(c, e);
}

int cfg_load(struct cfg *c, int *argc, char **argv, const char *(*get)(const char *name),
             struct err *e)
{
    cfg_defaults(c);
    /* AWS_DEFAULT_REGION, the AWS CLI's and botocore's name, is AWS_REGION's default, as there:
     * an AWS_REGION in the file, the environment or a flag comes first */
    const char *region = get("AWS_DEFAULT_REGION");
    if (region != NULL && region[0] != '\0') {
        if (!s3_valid_region(region)) {
            return err_set(e,
                           "AWS_DEFAULT_REGION: '%s' is not a region name (letters, digits and "
                           "-)",
                           region);
        }
        snprintf(c->aws_region, sizeof c->aws_region, "%s", region);
    }
    const char *path = config_path(*argc, argv, get);
    if (path != NULL && cfg_load_file(c, path, e) < 0) {
        return -1;
    }
    if (cfg_load_env(c, get, e) < 0) {
        return -1;
    }
    int out = 1;
    bool words = true; /* a switch may take a boolean word: not after a command word (`pixq
                        * submit --allow-private-networks yes 1` names the files yes and 1) */
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < *argc) {
                argv[out++] = argv[i++];
            }
            break;
        }
        int rc = apply_flag(c, *argc, argv, &i, words, e);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1) {
            words = words && argv[i][0] == '-';
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    return cross_check(c, e);
}

/* Whether a query parameter named [name, name + n) carries a credential: a presigned URL's
 * signature or session token (S3's SigV4 and SigV2, Google Cloud Storage's, an Azure SAS's
 * `sig`), or a bearer token. */
static bool secret_param(const char *name, size_t n)
{
    static const char *const names[] = {"X-Amz-Signature",
                                        "X-Amz-Security-Token",
                                        "Signature",
                                        "X-Goog-Signature",
                                        "sig",
                                        "access_token",
                                        "token"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0) {
            return true;
        }
    }
    return false;
}

/* Rewrites the query of the URL in `out` (`cap` bytes) with the value of each secret_param() as
 * "***"; the other parameters and a fragment stay as they are. */
static void redact_query(char *out, size_t cap)
{
    char *q = strchr(out, '?');
    char *query = q != NULL ? strdup(q + 1) : NULL;
    if (query == NULL) {
        if (q != NULL) {
            q[1] = '\0'; /* no memory to look at it: none of it shown */
        }
        return;
    }
    size_t at = (size_t)(q + 1 - out);
    const char *p = query;
    while (*p != '\0' && *p != '#' && at + 1 < cap) {
        size_t n = strcspn(p, "&#"), name = strcspn(p, "=&#");
        int w = name < n && secret_param(p, name)
                    ? snprintf(out + at, cap - at, "%.*s=***", (int)name, p)
                    : snprintf(out + at, cap - at, "%.*s", (int)n, p);
        at += w > 0 ? (size_t)w : 0;
        if (at >= cap) { /* cut short: out ends there */
            break;
        }
        p += n;
        if (*p == '&' && at + 1 < cap) {
            out[at++] = *p++;
            out[at] = '\0';
        }
    }
    if (*p == '#' && at + 1 < cap) {
        snprintf(out + at, cap - at, "%s", p);
    }
    free(query);
}

/* Writes `url` with any password replaced by "***" into `out` (`cap` bytes, at least 1). */
static void redact_userinfo(const char *url, char *out, size_t cap)
{
    const char *scheme = strstr(url, "://");
    const char *start = scheme != NULL ? scheme + 3 : url;
    const char *end = start + strcspn(start, "/");
    const char *at = NULL;
    for (const char *p = start; p < end; p++) {
        at = *p == '@' ? p : at;
    }
    if (at == NULL && *start != '[') {
        /* "user:pa/ss@host": a '/' in the password ended the authority early, at what reads as
         * a port that is no number; the password runs to the last '@' before a query */
        const char *colon = memchr(start, ':', (size_t)(end - start));
        if (colon != NULL && strspn(colon + 1, "0123456789") != (size_t)(end - colon - 1)) {
            const char *stop = end + strcspn(end, "?#");
            for (const char *p = end; p < stop; p++) {
                at = *p == '@' ? p : at;
            }
        }
    }
    if (at == NULL) {
        snprintf(out, cap, "%s", url);
        return;
    }
    const char *colon = memchr(start, ':', (size_t)(at - start));
    const char *keep = colon != NULL ? colon + 1 : start; /* the user name stays visible */
    snprintf(out, cap, "%.*s***%s", (int)(keep - url), url, at);
}

void cfg_redact_url(const char *url, char *out, size_t cap)
{
    if (cap > 0) {
        redact_userinfo(url, out, cap);
        redact_query(out, cap);
    }
}

static void format_value(const struct cfg *c, const struct cfg_entry *en, char *out, size_t cap)
{
    const char *field = (const char *)c + en->off;
    switch (en->type) {
    case T_STR:
    case T_URL:
    case T_NETS:
    case T_BUCKETS:
        if (en->secret) {
            snprintf(out, cap, "%s", *field != '\0' ? "(set)" : "");
        } else if (strstr(field, "://") != NULL ||
                   strcmp(en->var, "AWS_CONTAINER_CREDENTIALS_FULL_URI") == 0) {
            /* PIXQ_REDIS_URL's password, or one in AWS_CONTAINER_CREDENTIALS_FULL_URI (sent as
             * the request's Basic credentials), which is checked only at start, after its config
             * line: "user:pw@host" without a scheme is refused there, its password shown as ***,
             * and must be here too */
            cfg_redact_url(field, out, cap);
        } else {
            snprintf(out, cap, "%s", field);
        }
        return;
    case T_LONG:
        snprintf(out, cap, "%ld", *(const long *)field);
        return;
    case T_DOUBLE:
        snprintf(out, cap, "%g", *(const double *)field);
        return;
    case T_BOOL:
        snprintf(out, cap, "%d", *(const bool *)field ? 1 : 0);
        return;
    case T_LEVEL: {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        snprintf(out, cap, "%s", names[*(const int *)field]);
        return;
    }
    case T_RATE:
        snprintf(out, cap, "%g/s,burst=%ld", c->s3_rate, c->s3_burst);
        return;
    case T_AUTO01: {
        int v = *(const int *)field;
        snprintf(out, cap, "%s", v < 0 ? "auto" : v ? "1" : "0");
        return;
    }
    }
}

void cfg_each(const struct cfg *c, void (*fn)(const char *var, const char *value, void *user),
              void *user)
{
    char value[CFG_STR_MAX + 16];
    for (size_t i = 0; i < N_ENTRIES; i++) {
        format_value(c, &table[i], value, sizeof value);
        fn(table[i].var, value, user);
    }
}

void cfg_unknown_env(char *const *env, void (*fn)(const char *name, void *user), void *user)
{
    for (; env != NULL && *env != NULL; env++) {
        const char *eq = strchr(*env, '=');
        size_t n = eq != NULL ? (size_t)(eq - *env) : strlen(*env);
        char name[128];
        if (strncmp(*env, "PIXQ_", 5) != 0 || n >= sizeof name) {
            continue;
        }
        memcpy(name, *env, n);
        name[n] = '\0';
        const struct cfg_entry *en = find_entry(name);
        if ((en == NULL || strcmp(en->var, name) != 0) && strcmp(name, "PIXQ_CONFIG") != 0) {
            fn(name, user);
        }
    }
}

static void print_line(const char *var, const char *value, void *user)
{
    fprintf(user, "%s=%s\n", var, value);
}

void cfg_print(const struct cfg *c, FILE *out)
{
    cfg_each(c, print_line, out);
}

bool cfg_bucket_allowed(const struct cfg *c, const char *bucket)
{
    if (c->s3_buckets[0] == '\0' ||
        (c->default_bucket[0] != '\0' && strcmp(bucket, c->default_bucket) == 0)) {
        return true;
    }
    size_t n = strlen(bucket);
    for (const char *p = c->s3_buckets; *p != '\0';) {
        size_t len;
        const char *item = list_item(&p, &len);
        if (len == n && strncmp(item, bucket, n) == 0) {
            return true;
        }
    }
    return false;
}

bool cfg_s3_path_style(const struct cfg *c)
{
    if (c->s3_path_style >= 0) {
        return c->s3_path_style == 1;
    }
    return c->s3_endpoint[0] != '\0';
}

void cfg_usage(FILE *out)
{
    fprintf(out, "Settings (flag, environment variable, default; the range of a number):\n");
    for (size_t i = 0; i < N_ENTRIES; i++) {
        char range[64] = "";
        if (table[i].type == T_LONG) {
            snprintf(range, sizeof range, " (%ld to %ld)", table[i].min, table[i].max);
        } else if (table[i].type == T_DOUBLE) {
            snprintf(range, sizeof range, " (above 0, at most %.0f)", DOUBLE_MAX);
        }
        fprintf(out, "  --%-24s %-28s [%s]\n      %s%s\n", table[i].flag, table[i].var,
                table[i].def, table[i].help, range);
    }
}
