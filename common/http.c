#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg.h"
#include "log.h"

#define MAX_HEAD_BYTES (64 * 1024)   /* response header bytes kept */
#define GET_BUFFER     (256L * 1024) /* bytes a GET reads at a time (curl's default: 16 KiB) */

struct http {
    CURL *curl;
    bool no_expect; /* a server answered "Expect: 100-continue" 417: never asked again */
};

struct sink {
    struct buf *b;
    bool overflow;
    struct buf *head;    /* the last response's header lines */
    long status;         /* the status line's, of the response whose headers are coming */
    bool check_length;   /* a 2xx's Content-Length is held against b->max */
    bool expecting;      /* the request asked "Expect: 100-continue" */
    bool expect_refused; /* ...and was answered 417 Expectation Failed */
};

/* The guard of one request, as curl's callbacks see it. */
struct guard_ctx {
    const struct netguard *guard;
    bool refused;
    char why[ERR_MSG_MAX]; /* the first refusal */
};

struct http *http_create(struct err *e)
{
    struct http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        err_set(e, "out of memory");
        return NULL;
    }
    h->curl = curl_easy_init();
    if (h->curl == NULL) {
        free(h);
        err_set(e, "curl_easy_init failed");
        return NULL;
    }
    return h;
}

void http_destroy(struct http *h)
{
    if (h == NULL) {
        return;
    }
    curl_easy_cleanup(h->curl);
    free(h);
}

void http_response_init(struct http_response *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, 0);
    buf_init(&r->head, MAX_HEAD_BYTES);
}

void http_response_finish(struct http_response *r)
{
    buf_finish(&r->body);
    buf_finish(&r->head);
}

static size_t write_cb(char *p, size_t size, size_t n, void *user)
{
    struct sink *s = user;
    if (buf_append(s->b, p, size * n) < 0) {
        /* past the cap, not out of memory; returning less makes curl stop (CURLE_WRITE_ERROR) */
        s->overflow = size * n > s->b->max - s->b->len;
        return 0;
    }
    return size * n;
}

/* The number after `skip` bytes of the header line p[0..len) (its status, its value), or -1. */
static long long header_number(const char *p, size_t len, size_t skip)
{
    char text[64];
    if (len <= skip) {
        return -1;
    }
    snprintf(text, sizeof text, "%.*s", (int)(len - skip), p + skip);
    char *end;
    long long v = strtoll(text, &end, 10);
    return end != text && v >= 0 ? v : -1;
}

static size_t header_cb(char *p, size_t size, size_t n, void *user)
{
    struct sink *s = user;
    size_t len = size * n;
    /* a new status line starts a new response (after a redirect or 100-continue) */
    if (len > 5 && strncmp(p, "HTTP/", 5) == 0) {
        buf_reset(s->head);
        const char *space = memchr(p, ' ', len);
        s->status = space != NULL ? header_number(p, len, (size_t)(space - p)) : -1;
        if (s->expecting && s->status == 417) {
            /* libcurl would send it again asking again (the header is ours, not its own, which
             * it drops after a 417), and again: thousands of times */
            s->expect_refused = true;
            return 0;
        }
    }
    buf_append(s->head, p, len); /* overflow only loses headers, never the request */
    /* a 2xx that says it is larger than the cap fails before its body is read; another answer's
     * length is not held against it: libcurl skips the body of a redirect it follows (with
     * CURLOPT_MAXFILESIZE, a redirect whose page was over the cap failed the download), and an
     * error page is cut at the cap by write_cb() */
    if (s->check_length && s->status / 100 == 2 && len > 15 &&
        strncasecmp(p, "Content-Length:", 15) == 0) {
        long long declared = header_number(p, len, 15);
        if (declared >= 0 && (unsigned long long)declared > s->b->max) {
            s->overflow = true;
            return 0; /* curl stops: CURLE_WRITE_ERROR */
        }
    }
    return len;
}

bool http_header_valid(const char *name, const char *value)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (name[0] == '\0') {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if (!isalnum(*p) && strchr(tchar, *p) == NULL) {
            return false;
        }
    }
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if ((*p < ' ' && *p != '\t') || *p == 0x7f) {
            return false;
        }
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            return false; /* a C1 control character in UTF-8, U+0085 (NEL) among them */
        }
    }
    return true;
}

/* Whether the request's own headers name `name` (any case). */
static bool has_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether the request asks "Expect: 100-continue" before its body. */
static bool expects_continue(const struct http_request *req)
{
    return req->expect_continue_ms > 0 && req->body_len > 0;
}

static struct curl_slist *build_headers(const struct http_request *req, struct err *e)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (!http_header_valid(req->headers[i].name, req->headers[i].value)) {
            err_set(e, "header '%.100s' has a forbidden character", req->headers[i].name);
            return NULL;
        }
    }
    struct curl_slist *list = NULL;
    /* curl would send "Expect: 100-continue" for large bodies: one round trip lost, unless the
     * request asks for it */
    list = curl_slist_append(list, expects_continue(req) ? "Expect: 100-continue" : "Expect:");
    /* and a body without a Content-Type its POST's application/x-www-form-urlencoded: S3 would
     * store an upload whose job removed the type ("Content-Type": "") as a form */
    if (list != NULL && !has_header(req, "Content-Type")) {
        struct curl_slist *next = curl_slist_append(list, "Content-Type:");
        if (next == NULL) {
            curl_slist_free_all(list);
        }
        list = next;
    }
    for (size_t i = 0; list != NULL && i < req->n_headers; i++) {
        char line[10240]; /* a name, and up to 8191 bytes of AWS_SESSION_TOKEN */
        int n = snprintf(line, sizeof line, "%s: %s", req->headers[i].name, req->headers[i].value);
        if (n < 0 || (size_t)n >= sizeof line) {
            curl_slist_free_all(list);
            err_set(e, "header %s too long", req->headers[i].name);
            return NULL;
        }
        /* curl would drop a header whose value is blank ("name:"), as SigV4 signed it (trimmed,
         * empty): it is sent empty, "name;" being curl's way to */
        if (req->headers[i].value[strspn(req->headers[i].value, " \t")] == '\0') {
            snprintf(line, sizeof line, "%s;", req->headers[i].name);
        }
        struct curl_slist *next = curl_slist_append(list, line);
        if (next == NULL) {
            curl_slist_free_all(list);
            list = NULL;
        } else {
            list = next;
        }
    }
    if (list == NULL) {
        err_set(e, "out of memory");
    }
    return list;
}

static void set_method(CURL *c, const struct http_request *req)
{
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        return;
    }
    if (strcmp(req->method, "GET") == 0) {
        return;
    }
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    if (strcmp(req->method, "POST") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    }
}

static void refuse(struct guard_ctx *g, const char *why)
{
    if (!g->refused) {
        snprintf(g->why, sizeof g->why, "%s", why);
    }
    g->refused = true;
}

/* CURLOPT_OPENSOCKETFUNCTION: every address curl is about to connect to, before it does. */
static curl_socket_t open_socket_cb(void *user, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct guard_ctx *g = user;
    struct netguard_addr addr;
    struct err e = {{0}};
    if (purpose != CURLSOCKTYPE_IPCXN || netguard_from_sockaddr(&a->addr, a->addrlen, &addr) < 0) {
        refuse(g, "only IPv4 and IPv6 connections are allowed");
        return CURL_SOCKET_BAD;
    }
    if (netguard_check(g->guard, &addr, &e) < 0) {
        refuse(g, e.msg);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* CURLOPT_PREREQFUNCTION: the peer of every request, also on a reused connection (which the
 * open-socket check never saw). */
static int prereq_cb(void *user, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    struct guard_ctx *g = user;
    struct netguard_addr addr;
    struct err e = {{0}};
    if (primary_ip == NULL || netguard_parse_addr(primary_ip, &addr) < 0) {
        refuse(g, "the peer's address is unknown");
        return CURL_PREREQFUNC_ABORT;
    }
    if (netguard_check(g->guard, &addr, &e) < 0) {
        refuse(g, e.msg);
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/* A request on a job's behalf: its addresses checked, no proxy, no content decoding. */
static void set_guard(CURL *c, struct guard_ctx *g)
{
    if (g->guard == NULL) {
        return;
    }
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, g);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, prereq_cb);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, g);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* a proxy would be the only address checked */
    curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
}

static void set_options(CURL *c, const struct http_request *req, struct curl_slist *headers,
                        struct sink *body, char *errbuf)
{
    curl_easy_reset(c); /* keeps the connection cache: keep-alive across requests */
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "pixq/0.1");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (req->expect_continue_ms > 0) {
        curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, req->expect_continue_ms);
    }
    /* a HEAD has no body to cap: its Content-Length is not held against the cap (the answer to
     * a wait_for_s3 HEAD of an object over 64 KiB was lost) */
    body->check_length = req->max_body > 0 && strcmp(req->method, "HEAD") != 0;
    /* a source of 750 KB took 47 recv() and 49 poll() calls in 16 KiB reads, 3 and 5 in these */
    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, GET_BUFFER);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, body);
    if (req->fresh_connect) {
        curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    }
    if (req->max_conn_idle_ms > 0) {
        /* libcurl keeps a connection while its idle whole seconds are at most MAXAGE_CONN: one
         * second less, so that none idle max_conn_idle_ms or more is reused */
        long s = req->max_conn_idle_ms / 1000 - 1;
        curl_easy_setopt(c, CURLOPT_MAXAGE_CONN, s > 0 ? s : 0L);
    }
    if (req->path_as_is) {
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    }
    if (req->max_redirects > 0) {
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)req->max_redirects);
    }
    if (req->low_speed_bytes_per_s > 0 && req->low_speed_time_s > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, req->low_speed_bytes_per_s);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, req->low_speed_time_s);
    }
    set_method(c, req);
}

/* The refusal, naming the hop when a redirect led there. */
static int refusal_error(CURL *c, const struct guard_ctx *g, struct err *e)
{
    char *last = NULL;
    long hops = 0;
    if (curl_easy_getinfo(c, CURLINFO_REDIRECT_COUNT, &hops) != CURLE_OK || hops == 0 ||
        curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &last) != CURLE_OK || last == NULL) {
        return err_set(e, "%s", g->why);
    }
    char shown[512];
    cfg_redact_url(last, shown, sizeof shown);
    return err_set(e, "%s (redirected to %.300s)", g->why, shown);
}

static int transport_error(CURLcode rc, const struct sink *body, size_t max_body,
                           const char *errbuf, struct err *e)
{
    if (body->overflow || rc == CURLE_FILESIZE_EXCEEDED) {
        return err_set(e, "response larger than the limit of %zu bytes", max_body);
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        return err_set(e, "timed out (%s)", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
    return err_set(e, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

static void reset_response(const struct http_request *req, struct http_response *resp)
{
    buf_reset(&resp->body);
    buf_reset(&resp->head);
    resp->body.max = req->max_body > 0 ? req->max_body : SIZE_MAX - 1;
    resp->status = 0;
    resp->ip[0] = '\0';
    resp->refused = false;
    resp->too_large = false;
    resp->bad_url = false;
    resp->bad_answer = false;
}

/* Whether a URL byte must be percent-encoded before libcurl takes it: a space, a control
 * character or a byte of a UTF-8 sequence (users' file names in URLs, as Blitline's worker
 * encoded them), and past the host (`in_path`) a character RFC 3986 does not allow in a URL:
 * a bracket, which Blitline's worker encoded too (`photo[1].jpg`), and " < > \ ^ ` { | }
 * (Tomcat, for one, refuses each raw with a 400); the brackets of an IPv6 host are its own. A
 * "%" is taken for an escape already made, and the other characters are sent as written. */
static bool url_needs_escape(unsigned char c, bool in_path)
{
    return c <= 0x20 || c >= 0x7f || (in_path && strchr("[]\"<>\\^`{|}", c));
}

/* Where `url`'s path (or query, or fragment) begins: after "scheme://host:port", or at once
 * when it has no "://". */
static size_t url_path_start(const char *url)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL) {
        return 0;
    }
    size_t host = (size_t)(sep - url) + 3;
    return host + strcspn(url + host, "/?#");
}

/* `url` with such bytes percent-encoded, or NULL when it has none (or out of memory: then the
 * URL goes as it is, and libcurl says what is wrong with it). Free the result. */
static char *url_escaped(const char *url)
{
    size_t n = 0, len = strlen(url), path = url_path_start(url);
    for (size_t i = 0; i < len; i++) {
        n += url_needs_escape((unsigned char)url[i], i >= path);
    }
    char *out = n > 0 ? malloc(len + 2 * n + 1) : NULL;
    if (out == NULL) {
        return NULL;
    }
    static const char hex[] = "0123456789ABCDEF";
    char *p = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (url_needs_escape(c, i >= path)) {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        } else {
            *p++ = (char)c;
        }
    }
    *p = '\0';
    return out;
}

/* http_perform() once; *died tells whether the request went out on a kept-alive connection that
 * died before a byte of an answer came back. */
static int perform_once(struct http *h, const struct http_request *req, struct http_response *resp,
                        bool *died, bool *expect_refused, struct err *e)
{
    *died = false;
    *expect_refused = false;
    reset_response(req, resp);
    if (req->guard != NULL && netguard_check_url(req->guard, req->url, e) < 0) {
        resp->refused = true;
        return -1;
    }
    struct curl_slist *headers = build_headers(req, e);
    if (headers == NULL) {
        return -1;
    }
    struct sink body = {.b = &resp->body, .head = &resp->head, .expecting = expects_continue(req)};
    struct guard_ctx guard = {.guard = req->guard};
    char errbuf[CURL_ERROR_SIZE] = "";
    char *escaped = url_escaped(req->url);
    struct http_request sent = *req;
    sent.url = escaped != NULL ? escaped : req->url;
    set_options(h->curl, &sent, headers, &body, errbuf);
    set_guard(h->curl, &guard);
    CURLcode rc = curl_easy_perform(h->curl);
    curl_slist_free_all(headers);
    free(escaped);
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    char *ip = NULL;
    if (curl_easy_getinfo(h->curl, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip != NULL) {
        snprintf(resp->ip, sizeof resp->ip, "%s", ip);
    }
    if (rc != CURLE_OK && guard.refused &&
        (rc == CURLE_COULDNT_CONNECT || rc == CURLE_ABORTED_BY_CALLBACK)) {
        resp->refused = true;
        return refusal_error(h->curl, &guard, e);
    }
    if (rc == CURLE_OUT_OF_MEMORY && errbuf[0] == '\0' && resp->head.len > 0) {
        /* libcurl 7.88 answers a header line over CURL_MAX_HTTP_HEADER so, and says nothing */
        resp->bad_answer = true;
        return err_set(e, "the answer has a header line over libcurl's limit of %d bytes",
                       CURL_MAX_HTTP_HEADER);
    }
    *expect_refused = body.expect_refused;
    if (rc != CURLE_OK) {
        long connects = -1; /* 0: the transfer reused a connection */
        curl_easy_getinfo(h->curl, CURLINFO_NUM_CONNECTS, &connects);
        *died = connects == 0 && resp->status == 0 && resp->head.len == 0 && !guard.refused &&
                (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING);
        resp->bad_url = rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL;
        /* the body of the answer itself: libcurl hands write_cb() none of a redirect it
         * follows, so a 3xx whose page passed the cap was not followed (no Location, or
         * max_redirects 0) and is the answer, as final as a 2xx over the cap (an error page's
         * status says more: the callers read it first) */
        resp->too_large = body.overflow || rc == CURLE_FILESIZE_EXCEEDED;
        return transport_error(rc, &body, req->max_body, errbuf, e);
    }
    return 0;
}

int http_perform(struct http *h, const struct http_request *req, struct http_response *resp,
                 struct err *e)
{
    bool died, no_expect;
    struct http_request plain = *req;
    plain.expect_continue_ms = h->no_expect ? 0 : req->expect_continue_ms;
    int rc = perform_once(h, &plain, resp, &died, &no_expect, e);
    if (rc < 0 && no_expect) {
        /* a store that does not take "Expect: 100-continue" (417): the body goes at once, now
         * and from now on */
        LOG_INFO("http_expect_refused", "method=%s action=send_without_expect", req->method);
        h->no_expect = true;
        plain.expect_continue_ms = 0;
        rc = perform_once(h, &plain, resp, &died, &no_expect, e);
    }
    if (rc < 0 && died) {
        /* the server closed the connection as the request went out on it (idle too long on its
         * side): nothing was answered, so the request is sent once more, on a new connection.
         * libcurl does so itself when the close shows while it reads, not while it is still
         * sending the body (a large PUT: "Send failure: Broken pipe") */
        char q[ERR_MSG_MAX + 16];
        LOG_DEBUG("http_connection_died", "method=%s error=%s", req->method,
                  log_quote(e->msg, q, sizeof q));
        struct http_request fresh = plain;
        fresh.fresh_connect = true;
        rc = perform_once(h, &fresh, resp, &died, &no_expect, e);
    }
    return rc;
}

long http_retry_after_ms(const struct http_response *r, time_t now, long max_ms)
{
    char v[128];
    if ((r->status != 429 && r->status != 503) || max_ms <= 0 ||
        !http_response_header(r, "Retry-After", v, sizeof v)) {
        return -1;
    }
    size_t len = strlen(v);
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
        v[--len] = '\0';
    }
    long long secs;
    if (len > 0 && strspn(v, "0123456789") == len) {
        /* delay-seconds; more digits than a long long holds is more than any cap */
        secs = len > 12 ? LLONG_MAX / 1000 : strtoll(v, NULL, 10);
    } else {
        time_t at = curl_getdate(v, NULL);
        if (len == 0 || at == -1) {
            return -1;
        }
        /* counted from the answer's own Date when it has one: the server's clock, not ours,
         * set the date (a worker whose clock is a minute off would wait a minute more, or
         * none) */
        char d[128];
        time_t sent = http_response_header(r, "Date", d, sizeof d) ? curl_getdate(d, NULL) : -1;
        now = sent != -1 ? sent : now;
        secs = at > now ? (long long)(at - now) : 0;
    }
    if (secs > max_ms / 1000) {
        return max_ms;
    }
    long ms = (long)secs * 1000;
    return ms < max_ms ? ms : max_ms;
}

bool http_response_header(const struct http_response *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *p = r->head.data;
    while (p != NULL && *p != '\0') {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (len > n && p[n] == ':' && strncasecmp(p, name, n) == 0) {
            const char *v = p + n + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            snprintf(out, cap, "%.*s", (int)(len - (size_t)(v - p)), v);
            return true;
        }
        p = eol != NULL ? eol + 2 : NULL;
    }
    return false;
}
