/* sigv4: AWS Signature Version 4 (header-based) for S3 and for generic AWS services.
 *
 * sigv4_sign() turns a request into the value of its Authorization header:
 *
 *   canonical request = METHOD \n URI \n QUERY \n HEADERS \n \n SIGNED-HEADERS \n PAYLOAD-HASH
 *   string to sign    = AWS4-HMAC-SHA256 \n amz-date \n yyyymmdd/region/service/aws4_request \n
 *                       hex(SHA-256(canonical request))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, yyyymmdd), region), service),
 *                       "aws4_request")
 *   Authorization     = AWS4-HMAC-SHA256 Credential=AK/yyyymmdd/region/service/aws4_request,
 *                       SignedHeaders=a;b;c, Signature=hex(HMAC(signing key, string to sign))
 *
 * The pieces of the canonical request:
 *   URI      SIGV4_S3: the wire path with every byte encoded exactly once: %XX escapes are decoded
 *            and re-encoded (uppercase hex; %2F stays %2F, literal '/' stays '/'), other bytes
 *            outside A-Z a-z 0-9 - . _ ~ / are encoded. No dot-segment or slash normalisation:
 *            "a//b/../c" is a valid S3 key. An empty path is "/".
 *            SIGV4_GENERIC: dot segments removed and repeated slashes collapsed (RFC 3986 5.2.4),
 *            then every byte, '%' included, encoded once more: the path is "encoded twice".
 *   QUERY    split on '&' (empty pieces ignored) and at the first '='; names and values are
 *            %-decoded ('+' is a literal plus) and re-encoded, then sorted by name, then value.
 *            A name without '=' gets an empty value ("lifecycle" -> "lifecycle=").
 *   HEADERS  every header given is signed: names lowercased, values trimmed and inner runs of
 *            spaces and tabs collapsed to one space, repeated names joined with ',' in the order
 *            given, sorted by name.
 *
 * The module does no I/O, keeps no state, never logs and never reads the clock: the time is
 * passed in. All working memory is capped (see the limits below). */
#ifndef PIXQ_SIGV4_H
#define PIXQ_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"

#define SIGV4_AMZ_DATE_LEN     17          /* "20150830T123600Z" plus NUL */
#define SIGV4_AUTHZ_MAX        8192        /* bytes for an Authorization header value */
#define SIGV4_MAX_HEADERS      64          /* headers one request may sign */
#define SIGV4_MAX_QUERY_PARAMS 256         /* query parameters one request may carry */
#define SIGV4_CREQ_MAX         (64 * 1024) /* bytes of a canonical request */

struct sigv4_header {
    const char *name;
    const char *value;
};

enum sigv4_mode {
    SIGV4_S3,      /* S3: the path is encoded once and never normalised */
    SIGV4_GENERIC, /* other services: dot segments and double slashes normalised, path encoded twice
                    */
};

struct sigv4_request {
    const char *method; /* "GET", "PUT", "HEAD", "POST" */
    const char *path;   /* the path exactly as sent on the wire (already %-encoded) */
    const char *query;  /* query string as sent, without '?'; NULL or "" if none */
    const struct sigv4_header *headers; /* every header to sign; must include host and x-amz-date */
    size_t n_headers;
    const char *payload_hash; /* lowercase hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
};

struct sigv4_key {
    const char *access_key;
    const char *secret_key;
    const char *region;  /* "us-east-1" */
    const char *service; /* "s3" */
};

/* Formats `t` as an x-amz-date ("YYYYMMDDTHHMMSSZ", UTC). Writes an empty string if `t` cannot
 * be represented (a year past 9999). */
void sigv4_amz_date(time_t t, char out[SIGV4_AMZ_DATE_LEN]);

/* Appends `s` to `out` URI-encoded as SigV4 wants: every byte but A-Z a-z 0-9 - . _ ~ becomes %XX
 * (uppercase hex); '/' is kept when `keep_slash`. Returns 0, or -1 if `out` is full (then `out`
 * is unchanged). */
int sigv4_uri_encode(struct buf *out, const char *s, bool keep_slash);

/* Signs `req` made at `amz_date` (must equal the x-amz-date header) with `key`, and writes the
 * Authorization header value into `authz` (SIGV4_AUTHZ_MAX bytes). When `creq` or `sts` are not
 * NULL they are emptied and receive the canonical request and the string to sign (for tests and
 * debugging). Returns 0, or -1 with the reason in `e`: a missing host or x-amz-date header, a
 * malformed date, a header name that is not an HTTP token, a header value with a control
 * character (CR and LF included), more than SIGV4_MAX_HEADERS headers or
 * SIGV4_MAX_QUERY_PARAMS parameters, or a result over its cap. On error `authz` is untouched and
 * `creq` and `sts` are empty. */
int sigv4_sign(const struct sigv4_request *req, const struct sigv4_key *key, const char *amz_date,
               enum sigv4_mode mode, char authz[SIGV4_AUTHZ_MAX], struct buf *creq, struct buf *sts,
               struct err *e);

#endif
