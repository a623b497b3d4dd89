#include "s3.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "log.h"
#include "sigv4.h"

#define URL_MAX         4096        /* bytes for an object URL */
#define MAX_ERR_BODY    (64 * 1024) /* bytes of an error body read */
#define MAX_ERR_URL     200         /* bytes of the URL an error message quotes */
#define MAX_ERR_MESSAGE 200         /* bytes of S3's <Message> an error message quotes */
#define S3_HEADERS      (HTTP_MAX_HEADERS - 8)

/* The parts of a request that the URL and the signature share. */
struct target {
    struct buf url;
    char host[512];  /* authority as sent in Host */
    size_t path_off; /* where the path starts in url */
};

static long clock_offset_s; /* s3_clock() - time(NULL), from S3's last skew answer */

time_t s3_clock(void)
{
    return time(NULL) + clock_offset_s;
}

bool s3_clock_corrected(const struct s3_reply *r, const char *job_id, const char *bucket)
{
    if (strcmp(r->code, "RequestTimeTooSkewed") != 0 || r->server_time <= 0) {
        return false;
    }
    clock_offset_s = (long)(r->server_time - time(NULL));
    LOG_WARN("clock_skew",
             "job_id=%s bucket=%s offset_s=%ld error=\"this host's clock is off from S3's: "
             "requests are signed at S3's time from now on (check NTP)\"",
             job_id, bucket, clock_offset_s);
    return true;
}

bool s3_throttled(const struct s3_reply *r)
{
    return r->status == 503 || r->status == 429 || strcmp(r->code, "SlowDown") == 0;
}

bool s3_transient(const struct s3_reply *r)
{
    /* 307 without a region to go to: S3's DNS for a new bucket, which catches up */
    return (r->status == 0 && !r->not_sent) || r->status == 307 || r->status == 500 ||
           r->status == 502 || r->status == 504 || s3_throttled(r) ||
           strcmp(r->code, "RequestTimeout") == 0 || r->refreshable;
}

/* Whether the answer says the bucket lives in another region than the request was signed for,
 * whether or not it says which (307 aside). */
static bool elsewhere(const struct s3_reply *r)
{
    return r->status == 301 ||
           (r->status == 400 && (strcmp(r->code, "AuthorizationHeaderMalformed") == 0 ||
                                 strcmp(r->code, "PermanentRedirect") == 0 ||
                                 strcmp(r->code, "IllegalLocationConstraintException") == 0));
}

bool s3_wrong_region(const struct s3_reply *r)
{
    return (elsewhere(r) || r->status == 307) && s3_valid_region(r->region);
}

bool s3_key_has_dot_segment(const char *key)
{
    for (const char *p = key; *p != '\0';) {
        size_t n = strcspn(p, "/");
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            return true;
        }
        p += p[n] == '/' ? n + 1 : n;
    }
    return false;
}

bool s3_valid_region(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && *s != '-') {
            return false;
        }
    }
    return true;
}

/* 3-63 bytes, a letter or digit first and last; `legacy`: A-Z and _ too. */
static bool bucket_shape(const char *name, bool legacy)
{
    size_t n = strlen(name);
    if (n < 3 || n > S3_BUCKET_MAX || !isalnum((unsigned char)name[0]) ||
        !isalnum((unsigned char)name[n - 1])) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!(islower(ch) || isdigit(ch) || ch == '.' || ch == '-' ||
              (legacy && (isupper(ch) || ch == '_')))) {
            return false;
        }
    }
    return true;
}

bool s3_valid_bucket(const char *name)
{
    return bucket_shape(name, true);
}

bool s3_legacy_bucket(const char *name)
{
    return bucket_shape(name, true) && !bucket_shape(name, false);
}

/* Splits the configured endpoint (or AWS's for `region`) into scheme and authority. */
static void endpoint_parts(const struct s3_config *c, const char *region, char *scheme, size_t scap,
                           char *host, size_t hcap)
{
    if (c->endpoint == NULL || c->endpoint[0] == '\0') {
        snprintf(scheme, scap, "https");
        if (strcmp(region, "us-east-1") == 0) {
            snprintf(host, hcap, "s3.amazonaws.com");
        } else {
            snprintf(host, hcap, "s3.%s.amazonaws.com", region);
        }
        return;
    }
    const char *sep = strstr(c->endpoint, "://");
    snprintf(scheme, scap, "%.*s", (int)(sep - c->endpoint), c->endpoint);
    const char *auth = sep + 3;
    size_t n = strcspn(auth, "/");
    snprintf(host, hcap, "%.*s", (int)n, auth);
}

static int build_target(const struct s3_config *c, const struct s3_object *o, struct target *t,
                        struct err *e)
{
    if (!s3_valid_bucket(o->bucket)) {
        return err_set(e, "invalid bucket name '%.100s'", o->bucket);
    }
    if (s3_key_has_dot_segment(o->key)) { /* any key: a job's, or one made of its fields */
        return err_set(e, "key '%.100s' has a '.' or '..' segment", o->key);
    }
    const char *region = o->region != NULL && o->region[0] ? o->region : c->region;
    char scheme[16], base[256];
    endpoint_parts(c, region, scheme, sizeof scheme, base, sizeof base);
    /* a dotted bucket breaks TLS name checks under virtual-host addressing, and a legacy name
     * is no host name at all */
    bool path_style = c->path_style || s3_legacy_bucket(o->bucket) ||
                      (strchr(o->bucket, '.') && strcmp(scheme, "https") == 0);
    if (path_style) {
        snprintf(t->host, sizeof t->host, "%s", base);
    } else {
        snprintf(t->host, sizeof t->host, "%s.%s", o->bucket, base);
    }
    buf_init(&t->url, URL_MAX);
    int rc = buf_printf(&t->url, "%s://%s", scheme, t->host);
    t->path_off = t->url.len;
    if (path_style) {
        rc = rc < 0 ? rc : buf_printf(&t->url, "/%s", o->bucket);
    }
    if (!path_style || o->key[0] != '\0') { /* no key: the bucket itself, "/bucket" or "/" */
        rc = rc < 0 ? rc : buf_puts(&t->url, "/");
    }
    rc = rc < 0 ? rc : sigv4_uri_encode(&t->url, o->key, true);
    if (rc < 0) {
        buf_finish(&t->url);
        return err_set(e, "object URL longer than %d bytes", URL_MAX);
    }
    return 0;
}

int s3_object_url(const struct s3_config *c, const struct s3_object *o, struct buf *out,
                  struct err *e)
{
    struct target t;
    if (build_target(c, o, &t, e) < 0) {
        return -1;
    }
    buf_reset(out);
    int rc = buf_append(out, t.url.data, t.url.len);
    buf_finish(&t.url);
    return rc < 0 ? err_set(e, "object URL too long") : 0;
}

/* Reads <Tag>...</Tag> (Code, Region) from an S3 XML error body; leaves `out` alone if absent. */
static void xml_field(const struct buf *body, const char *tag, char *out, size_t cap)
{
    char open[32], close[32];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *p = body->data != NULL ? strstr(body->data, open) : NULL;
    if (p == NULL) {
        return;
    }
    p += strlen(open);
    const char *end = strstr(p, close);
    if (end != NULL && (size_t)(end - p) < cap) {
        snprintf(out, cap, "%.*s", (int)(end - p), p);
    }
}

void s3_error_message(const char *body, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = body != NULL ? strstr(body, "<Message>") : NULL;
    const char *end = p != NULL ? strstr(p, "</Message>") : NULL;
    if (end != NULL) {
        p += strlen("<Message>");
    } else if (body != NULL && strchr(body, '<') == NULL) {
        /* plain text, as a proxy or an S3-like store answers ("Not Found"): the text itself */
        for (p = body; *p == ' ' || (*p >= '\t' && *p <= '\r'); p++) {
        }
        for (end = p + strlen(p);
             end > p && (end[-1] == ' ' || (end[-1] >= '\t' && end[-1] <= '\r')); end--) {
        }
    } else {
        return;
    }
    size_t n = (size_t)(end - p) < cap ? (size_t)(end - p) : cap - 1;
    for (size_t i = 0; i < n; i++) { /* control bytes (a line break, an escape) as spaces */
        unsigned char c = (unsigned char)p[i];
        out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[n] = '\0';
}

/* Whether cached connections may have been dropped by S3 for idleness, idle since the end of
 * the last request (noted by used_connection()): then the request opens a new one instead of
 * finding out through a reset. */
static bool stale_connection(const struct s3_config *c)
{
    if (c->last_used_ms == NULL) {
        return false;
    }
    long now = clock_mono_ms();
    return *c->last_used_ms != 0 && c->max_idle_ms > 0 && now - *c->last_used_ms > c->max_idle_ms;
}

/* Notes that a request just ended: its connection was busy until now. */
static void used_connection(const struct s3_config *c)
{
    if (c->last_used_ms != NULL) {
        *c->last_used_ms = clock_mono_ms();
    }
}

struct s3_call {
    const char *method;
    const void *body;
    size_t len;
    const struct http_header *extra;
    size_t n_extra;
    size_t max_body;
    time_t now;
};

struct signed_headers {
    struct sigv4_header sig[HTTP_MAX_HEADERS];
    struct http_header http[HTTP_MAX_HEADERS];
    size_t n;
    char payload_hash[HASH_SHA256_HEX];
    char amz_date[SIGV4_AMZ_DATE_LEN];
    char authz[SIGV4_AUTHZ_MAX];
};

static void add_header(struct signed_headers *s, const char *name, const char *value)
{
    s->sig[s->n] = (struct sigv4_header){name, value};
    s->http[s->n] = (struct http_header){name, value};
    s->n++;
}

static int sign_request(const struct s3_config *c, const struct s3_object *o,
                        const struct s3_call *call, const struct target *t,
                        struct signed_headers *s, struct err *e)
{
    if (call->n_extra > S3_HEADERS) {
        return err_set(e, "too many headers (%zu)", call->n_extra);
    }
    const struct awscreds *f = c->creds;
    const char *access_key = f != NULL ? f->access_key : c->access_key;
    const char *secret_key = f != NULL ? f->secret_key : c->secret_key;
    const char *token = f != NULL ? f->session_token : c->session_token;
    if (f != NULL && !f->loaded) {
        char origin[CFG_STR_MAX + 64];
        return err_set(e, "no S3 credentials: %s %s (the log's s3_credentials_refused says why)",
                       awscreds_origin(f, origin, sizeof origin),
                       f->from_endpoint ? "gave none" : "could not be read");
    }
    if (access_key == NULL || access_key[0] == '\0' || secret_key == NULL ||
        secret_key[0] == '\0') {
        return err_set(e, "no S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must "
                          "both be set");
    }
    hash_sha256_hex(call->body != NULL ? call->body : "", call->len, s->payload_hash);
    sigv4_amz_date(call->now, s->amz_date);
    s->n = 0;
    add_header(s, "host", t->host);
    add_header(s, "x-amz-content-sha256", s->payload_hash);
    add_header(s, "x-amz-date", s->amz_date);
    if (token != NULL && token[0] != '\0') {
        add_header(s, "x-amz-security-token", token);
    }
    for (size_t i = 0; i < call->n_extra; i++) {
        add_header(s, call->extra[i].name, call->extra[i].value);
    }
    const struct sigv4_request req = {
        .method = call->method,
        .path = t->url.data + t->path_off,
        .query = NULL,
        .headers = s->sig,
        .n_headers = s->n,
        .payload_hash = s->payload_hash,
    };
    const struct sigv4_key key = {
        .access_key = access_key,
        .secret_key = secret_key,
        .region = o->region != NULL && o->region[0] ? o->region : c->region,
        .service = "s3",
    };
    if (sigv4_sign(&req, &key, s->amz_date, SIGV4_S3, s->authz, NULL, NULL, e) < 0) {
        return -1;
    }
    s->http[s->n++] = (struct http_header){"Authorization", s->authz};
    return 0;
}

/* "S3 PUT <url>: HTTP 400 <Code>: <Message>" for an answer that is no success, with " (its body
 * cut short: <why>)" when `answered` (the reason of the failed transfer in `e`). The URL is cut to
 * MAX_ERR_URL bytes, so that the code and S3's message fit in ERR_MSG_MAX after it. */
static void answer_error(const struct s3_call *call, const struct target *t,
                         const struct http_response *resp, const struct s3_reply *reply,
                         bool answered, struct err *e)
{
    char message[MAX_ERR_MESSAGE + 1];
    s3_error_message(resp->body.data, message, sizeof message);
    char cut[ERR_MSG_MAX];
    snprintf(cut, sizeof cut, " (its body cut short: %.200s)", answered ? e->msg : "");
    bool long_url = t->url.len > MAX_ERR_URL;
    int url_shown = long_url ? MAX_ERR_URL - 3 : (int)t->url.len;
    err_set(e, "S3 %s %.*s%s: HTTP %ld%s%s%s%s%s", call->method, url_shown, t->url.data,
            long_url ? "..." : "", resp->status, reply->code[0] ? " " : "", reply->code,
            message[0] ? ": " : "", message, answered ? cut : "");
}

/* How long a PUT waits for S3's "100 Continue" before sending its body (0: it does not ask):
 * PIXQ_S3_EXPECT_CONTINUE_MS for a body of PIXQ_S3_EXPECT_CONTINUE_BYTES or more, at most half of
 * the request's time (a store that never answers 100 would spend it all). */
static long asks_first(const struct s3_config *c, const struct s3_call *call)
{
    if (c->expect_continue_bytes == 0 || call->len < c->expect_continue_bytes ||
        strcmp(call->method, "PUT") != 0) {
        return 0;
    }
    long half = c->timeout_ms / 2;
    return c->expect_continue_ms < half ? c->expect_continue_ms : half > 0 ? half : 1;
}

static int request_once(struct http *h, const struct s3_config *c, const struct s3_object *o,
                        const struct s3_call *call, struct http_response *resp,
                        struct s3_reply *reply, struct err *e)
{
    memset(reply, 0, sizeof *reply);
    reply->retry_after_ms = -1;
    struct target t;
    if (build_target(c, o, &t, e) < 0) {
        reply->not_sent = true;
        return -1;
    }
    struct signed_headers s;
    int rc = sign_request(c, o, call, &t, &s, e);
    reply->not_sent = rc < 0; /* no credentials, a region that cannot be signed for... */
    if (rc == 0) {
        const struct http_request req = {
            .method = call->method,
            .url = t.url.data,
            .headers = s.http,
            .n_headers = s.n,
            .body = call->body,
            .body_len = call->len,
            .connect_timeout_ms = c->connect_timeout_ms,
            .timeout_ms = c->timeout_ms,
            .max_body = call->max_body,
            .fresh_connect = stale_connection(c),
            .max_conn_idle_ms = c->max_idle_ms, /* each connection's own idle time: with
                                                 * virtual-host addressing, a host per bucket */
            .path_as_is = true,
            .expect_continue_ms = asks_first(c, call),
        };
        rc = http_perform(h, &req, resp, e);
        used_connection(c);
    }
    /* an answer whose status arrived is that answer, even when its body did not (over the cap,
     * cut off): a 403 with a large error page is final, not an outage to retry */
    bool answered =
        rc < 0 && !reply->not_sent && !resp->refused && !resp->bad_url && resp->status >= 300;
    if (rc < 0 && !answered) {
        /* a GET's object larger than the caller's limit: S3 answered (a 2xx), nothing to retry */
        reply->status = resp->too_large ? resp->status : 0;
        /* the URL cut as answer_error() cuts it: a long key left no room for the reason */
        bool long_url = t.url.len > MAX_ERR_URL;
        err_wrap(e, "S3 %s %.*s%s", call->method, long_url ? MAX_ERR_URL - 3 : (int)t.url.len,
                 t.url.data, long_url ? "..." : "");
        buf_finish(&t.url);
        return -1;
    }
    reply->status = resp->status;
    http_response_header(resp, "x-amz-bucket-region", reply->region, sizeof reply->region);
    char date[64];
    if (http_response_header(resp, "Date", date, sizeof date)) {
        time_t when = curl_getdate(date, NULL);
        reply->server_time = when > 0 ? when : 0;
    }
    reply->retry_after_ms = http_retry_after_ms(resp, time(NULL), c->retry_after_max_ms);
    if (resp->status / 100 != 2) {
        xml_field(&resp->body, "Code", reply->code, sizeof reply->code);
        if (reply->region[0] == '\0') {
            xml_field(&resp->body, "Region", reply->region, sizeof reply->region);
        }
        answer_error(call, &t, resp, reply, answered, e);
        rc = -1;
    }
    buf_finish(&t.url);
    return rc;
}

/* Whether S3 refused the request's credentials (a HEAD's answer has no body to say why: any 400
 * or 403 of one may be that). */
static bool credentials_refused(const struct s3_call *call, const struct s3_reply *r)
{
    static const char *const codes[] = {"ExpiredToken",          "InvalidToken",
                                        "TokenRefreshRequired",  "InvalidAccessKeyId",
                                        "SignatureDoesNotMatch", "InvalidClientTokenId"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (strcmp(r->code, codes[i]) == 0) {
            return true;
        }
    }
    return strcmp(call->method, "HEAD") == 0 && r->code[0] == '\0' &&
           (r->status == 400 || r->status == 403);
}

/* One request; with credentials from a file, the file is looked at first (read again if it
 * changed), and a request whose credentials S3 refused is sent once more, at once, when the file
 * then holds other keys (rewritten between the look and the answer), within what is left of the
 * request's timeout. An expired token, or no file to read, is `refreshable`: the file's keeper
 * may yet write new keys. Keys from a metadata endpoint alike: fetched again first when they
 * are about to expire, and at once when S3 refused them. */
static int s3_request(struct http *h, const struct s3_config *c, const struct s3_object *o,
                      const struct s3_call *call, struct http_response *resp,
                      struct s3_reply *reply, struct err *e)
{
    if (c->creds == NULL) {
        return request_once(h, c, o, call, resp, reply, e);
    }
    struct err ignored = {{0}}; /* said in the log (s3_credentials_refused); the keys in use stay */
    time_t started = time(NULL);
    long t0 = clock_mono_ms();
    bool endpoint = c->creds->from_endpoint;
    struct s3_config left = *c; /* a fetch and the sendings share the caller's time */
    awscreds_refresh_within(c->creds, false, call->now, c->timeout_ms, &ignored);
    left.timeout_ms = c->timeout_ms - (clock_mono_ms() - t0);
    struct s3_call first = *call; /* signed after the fetch */
    first.now = call->now + (time(NULL) - started);
    int rc;
    if (left.timeout_ms > 0) {
        rc = request_once(h, &left, o, &first, resp, reply, e);
    } else { /* the fetch took the request's time: as a timeout, transient */
        memset(reply, 0, sizeof *reply);
        reply->retry_after_ms = -1;
        rc = err_set(e, "timed out (the S3 credentials' fetch took the request's time)");
    }
    if (rc == 0) {
        return rc;
    }
    /* a HEAD's bare 400 or 403 may be refused keys, or only a bucket of another account: a
     * file is read again for it, an endpoint not asked */
    bool refused = credentials_refused(call, reply) && (!endpoint || reply->code[0] != '\0');
    left.timeout_ms = c->timeout_ms - (clock_mono_ms() - t0);
    if (refused && left.timeout_ms > 0 &&
        awscreds_refresh_within(c->creds, true, call->now + (time(NULL) - started), left.timeout_ms,
                                &ignored) == 1 &&
        (left.timeout_ms = c->timeout_ms - (clock_mono_ms() - t0)) > 0) {
        LOG_INFO("s3_credentials_retry", "method=%s bucket=%s status=%ld code=%s", call->method,
                 o->bucket, reply->status, reply->code);
        http_response_finish(resp);
        http_response_init(resp);
        if (e != NULL) {
            *e = (struct err){{0}};
        }
        struct s3_call again = *call; /* signed afresh: the first answer may have been slow */
        again.now = call->now + (time(NULL) - started);
        rc = request_once(h, &left, o, &again, resp, reply, e);
        refused = credentials_refused(call, reply) && (!endpoint || reply->code[0] != '\0');
    }
    /* the keeper of the keys may yet give others: the file's, or the endpoint (keys revoked
     * early, a fetch that failed or came too soon after the last) */
    /* (SignatureDoesNotMatch aside: with an endpoint's keys, rather a request's own fault) */
    reply->refreshable =
        rc < 0 && (strcmp(reply->code, "ExpiredToken") == 0 ||
                   strcmp(reply->code, "TokenRefreshRequired") == 0 || !c->creds->loaded ||
                   (endpoint && refused && strcmp(reply->code, "SignatureDoesNotMatch") != 0));
    return rc;
}

int s3_put(struct http *h, const struct s3_config *c, const struct s3_object *o, const void *body,
           size_t len, const struct http_header *headers, size_t n_headers, time_t now,
           struct s3_reply *reply, struct err *e)
{
    const struct s3_call call = {"PUT", body, len, headers, n_headers, MAX_ERR_BODY, now};
    struct http_response resp;
    http_response_init(&resp);
    int rc = s3_request(h, c, o, &call, &resp, reply, e);
    http_response_finish(&resp);
    return rc;
}

int s3_get(struct http *h, const struct s3_config *c, const struct s3_object *o, size_t max_bytes,
           time_t now, struct buf *out, struct s3_reply *reply, struct err *e)
{
    const struct s3_call call = {"GET", NULL, 0, NULL, 0, max_bytes, now};
    struct http_response resp;
    http_response_init(&resp);
    int rc = s3_request(h, c, o, &call, &resp, reply, e);
    if (rc == 0) {
        buf_finish(out);
        *out = resp.body;
        buf_init(&resp.body, 0);
    }
    http_response_finish(&resp);
    return rc;
}

int s3_head(struct http *h, const struct s3_config *c, const struct s3_object *o, time_t now,
            struct s3_reply *reply, struct err *e)
{
    const struct s3_call call = {"HEAD", NULL, 0, NULL, 0, MAX_ERR_BODY, now};
    struct http_response resp;
    http_response_init(&resp);
    int rc = s3_request(h, c, o, &call, &resp, reply, e);
    http_response_finish(&resp);
    return rc;
}

bool s3_redirect_region(struct http *h, const struct s3_config *c, const struct s3_object *o,
                        time_t now, struct s3_reply *r, struct err *e)
{
    const char *signed_for = o->region != NULL && o->region[0] ? o->region : c->region;
    if (!elsewhere(r) || r->region[0] != '\0') {
        return s3_wrong_region(r) && strcmp(r->region, signed_for) != 0;
    }
    /* HeadBucket: S3 names the bucket's region in x-amz-bucket-region whatever it answers (200,
     * 301, 400 for an opt-in region, 403) */
    const struct s3_object bucket = {o->bucket, o->region, ""};
    const struct s3_call call = {"HEAD", NULL, 0, NULL, 0, MAX_ERR_BODY, now};
    struct http_response resp;
    http_response_init(&resp);
    struct s3_reply head;
    struct err he = {{0}};
    long t0 = clock_mono_us();
    s3_request(h, c, &bucket, &call, &resp, &head, &he);
    http_response_finish(&resp);
    LOG_DEBUG("s3_head_bucket", "method=HEAD bucket=%s status=%ld region=%s ms=%.3f", o->bucket,
              head.status, s3_valid_region(head.region) ? head.region : "",
              (double)(clock_mono_us() - t0) / 1000.0);
    if (!s3_valid_region(head.region) && s3_transient(&head)) {
        *r = head;
        char why[ERR_MSG_MAX];
        memcpy(why, he.msg, sizeof why);
        err_set(e, "finding the bucket's region: %s", why);
        return false;
    }
    if (!s3_valid_region(head.region) || strcmp(head.region, signed_for) == 0) {
        return false; /* nothing learned, or the same request again */
    }
    snprintf(r->region, sizeof r->region, "%s", head.region);
    return true;
}
