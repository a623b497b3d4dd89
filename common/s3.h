/* s3: the S3 client: addressing, SigV4 signing and object requests over `struct http`.
 *
 * Addressing follows the configuration: virtual-host (`https://bucket.s3.region.amazonaws.com/key`)
 * on AWS, path-style (`<endpoint>/bucket/key`) with a custom endpoint or when asked. Every request
 * carries x-amz-content-sha256 and is signed afresh with the current time. */
#ifndef PIXQ_S3_H
#define PIXQ_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "awscreds.h"
#include "buf.h"
#include "err.h"
#include "http.h"

struct s3_config {
    const char *endpoint; /* "" or NULL: AWS */
    bool path_style;
    const char *region; /* default region */
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* "" or NULL: none */
    struct awscreds *creds; /* when not NULL, the keys come from it (a file, an endpoint), not the
                             * three above */
    long connect_timeout_ms;
    long timeout_ms;
    long max_idle_ms;        /* a cached connection idle this long is not reused (S3 drops
                                idle ones at about 20 s): after this long without an S3 request
                                none is, and each connection is held to it too (a host per
                                bucket with virtual-host addressing); 0: always reuse */
    long *last_used_ms;      /* monotonic ms of the last request through this config, or NULL */
    long retry_after_max_ms; /* a 429's or 503's Retry-After is read up to this; 0: not read */
    size_t expect_continue_bytes; /* a PUT of this many bytes or more asks "Expect: 100-continue"
                                   * (S3 refuses before the body goes); 0: never */
    long expect_continue_ms;      /* and sends the body anyway after this long without answer */
};

struct s3_object {
    const char *bucket;
    const char *region; /* NULL: the configured default */
    const char *key;    /* without a leading '/' */
};

/* What S3 answered. */
struct s3_reply {
    long status;         /* HTTP status (a 2xx for a GET's object over the caller's limit); 0
                            when no usable response came */
    char code[64];       /* S3 error code from the XML body ("SlowDown"), or "" */
    char region[64];     /* x-amz-bucket-region, or "" */
    bool not_sent;       /* the request could not be made: no credentials, a bucket or region that
                            cannot be addressed or signed for (status 0); trying again won't help */
    bool refreshable;    /* ExpiredToken or TokenRefreshRequired with a credentials file or an
                            endpoint, keys refused while the endpoint has no others, or none
                            read or fetched yet: their keeper may yet give new keys
                            (s3_transient) */
    time_t server_time;  /* the answer's Date (unix s), 0 when it had none */
    long retry_after_ms; /* the wait a 429 or 503 asked for with Retry-After, ms, at most the
                            config's retry_after_max_ms; -1: none */
};

/* The time requests are signed at: this host's clock, corrected by the offset the last
 * RequestTimeTooSkewed answer showed (kept for the process: S3 refuses a signature more than
 * 15 minutes from its own clock, and a worker host's clock can be off). */
time_t s3_clock(void);

/* After a failed request: when S3 refused the signature's time (RequestTimeTooSkewed) and said
 * its own in Date, sets s3_clock()'s offset to the difference, logs clock_skew (with the job and
 * bucket) and returns true: sign again and retry at once. Else false. */
bool s3_clock_corrected(const struct s3_reply *r, const char *job_id, const char *bucket);

/* Writes the object's URL (the one requests go to and postbacks report) into `out`.
 * Returns 0, or -1 if the bucket name cannot be used. */
int s3_object_url(const struct s3_config *c, const struct s3_object *o, struct buf *out,
                  struct err *e);

/* PUTs `len` bytes as the object with the given extra headers (Content-Type, x-amz-acl,
 * Cache-Control, x-amz-meta-*...), signed at `now`. Returns 0 when S3 answered 2xx; otherwise -1
 * with `reply` filled in (status 0 for a transport failure) and the reason in `e`. */
int s3_put(struct http *h, const struct s3_config *c, const struct s3_object *o, const void *body,
           size_t len, const struct http_header *headers, size_t n_headers, time_t now,
           struct s3_reply *reply, struct err *e);

/* GETs the object into `out` (at most `max_bytes`), signed at `now`. As s3_put. */
int s3_get(struct http *h, const struct s3_config *c, const struct s3_object *o, size_t max_bytes,
           time_t now, struct buf *out, struct s3_reply *reply, struct err *e);

/* HEADs the object, signed at `now`. As s3_put (404 is a failure with status 404). */
int s3_head(struct http *h, const struct s3_config *c, const struct s3_object *o, time_t now,
            struct s3_reply *reply, struct err *e);

/* Whether the reply is throttling: 503, 429 or the code SlowDown. */
bool s3_throttled(const struct s3_reply *r);

/* Whether the request may pass if tried again: no response (a reset, a timeout; not a request
 * that could not be made, not_sent), throttling,
 * 500, 502, 504 or the code RequestTimeout, the answers the AWS SDKs retry, and an expired token
 * while the credentials come from a file (`refreshable`). Other 5xx (501 Not Implemented, 505)
 * are the same on every attempt. */
bool s3_transient(const struct s3_reply *r);

/* Writes S3's explanation in an XML error body (`body`, NUL-terminated, or NULL) into `out`
 * (`cap` bytes, at least 1): the text of its <Message>, control bytes as spaces, cut at cap - 1
 * bytes; "" when it has none. The text is S3's as sent (XML escapes stay). A body of plain text
 * (no '<': a proxy's or an S3-like store's "Not Found") is taken whole, less blanks around it. */
void s3_error_message(const char *body, char *out, size_t cap);

#define S3_BUCKET_MAX 63 /* bytes of a bucket name (s3_valid_bucket) */

/* Whether `name` is a bucket name S3 accepts: 3-63 of a-z 0-9 . -, starting and ending with a
 * letter or digit, or such a name with capitals and underscores too (a legacy us-east-1 bucket
 * made before March 2018, which S3 still serves; longer legacy names are not taken). */
bool s3_valid_bucket(const char *name);

/* Whether `name` is valid only as a legacy us-east-1 name (capitals or underscores): such a
 * bucket is addressed path-style, its name being no host name. */
bool s3_legacy_bucket(const char *name);

/* Whether the answer says the bucket lives in another region, and which (r->region, a region
 * name): a 301, a 307 (a bucket created lately, whose name does not resolve to its region yet) or
 * a 400 AuthorizationHeaderMalformed, PermanentRedirect or IllegalLocationConstraintException
 * naming it. */
bool s3_wrong_region(const struct s3_reply *r);

/* After a failed request for `o`: whether to send it again signed for another region, which is
 * then in r->region. As s3_wrong_region(), and when the answer says the bucket lives elsewhere
 * without naming the region (S3's 400 IllegalLocationConstraintException for a bucket in a region
 * one must opt in to, af-south-1, ap-east-1..., addressed through another, or the other way
 * round; a 301 without x-amz-bucket-region), HEADs the bucket, signed at `now`, whose answer
 * names it. Never to the region the request was signed for (a 307 naming it is S3's DNS catching
 * up: s3_transient()). When that HEAD failed for a passing reason (SlowDown, a reset, a
 * timeout) its answer replaces *r, and its reason `e`'s: the request is then one to retry, not
 * a bucket in an unknown region. */
bool s3_redirect_region(struct http *h, const struct s3_config *c, const struct s3_object *o,
                        time_t now, struct s3_reply *r, struct err *e);

/* Whether a "/"-separated segment of `key` is "." or "..": S3 keeps such a key as it is, but
 * libcurl, S3-compatible stores and proxies resolve the path ("../other-bucket/k"). pixq sends no
 * such key. */
bool s3_key_has_dot_segment(const char *key);

/* Whether `s` is a region name as AWS spells them ("us-east-1"): 1 to 32 letters, digits and
 * '-'. A region goes into a host name: nothing else may. */
bool s3_valid_region(const char *s);

#endif
