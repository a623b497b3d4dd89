/* http: HTTP requests through one reused libcurl handle (keep-alive across requests).
 *
 * Every response body has a cap enforced while reading, every request a connect and a total
 * timeout. Only http and https are spoken, on redirects too. A request made on a job's behalf
 * (a source, a postback) carries a netguard policy: its URL must be http(s), and every address
 * it connects to (each DNS answer, each redirect hop, a reused connection too) must pass the
 * policy before a byte is sent; such requests ignore proxy variables of the environment and never
 * decode a Content-Encoding. No header with a control character (CR, LF, NUL...) is ever sent.
 * Call curl_global_init() once in main() before http_create(). */
#ifndef PIXQ_HTTP_H
#define PIXQ_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "netguard.h"

#define HTTP_MAX_HEADERS 64 /* most request headers of one request */

struct http_header {
    const char *name;
    const char *value;
};

struct http_request {
    const char *method; /* "GET", "PUT", "POST", "HEAD" */
    const char *url;
    const struct http_header *headers;
    size_t n_headers;
    const void *body; /* request body for PUT/POST, or NULL */
    size_t body_len;
    long connect_timeout_ms;
    long timeout_ms;              /* whole request */
    size_t max_body;              /* most response-body bytes accepted */
    int max_redirects;            /* 0: do not follow redirects */
    bool fresh_connect;           /* open a new connection instead of reusing a cached one */
    long max_conn_idle_ms;        /* > 0: a cached connection idle this long or more is not
                                   * reused (libcurl counts whole seconds: from this rounded
                                   * down to one, sooner); 0: libcurl's default (118 s) */
    const struct netguard *guard; /* NULL: any address (S3 at the configured endpoint); else
                                   * the URL and every address connected to must pass it */
    long low_speed_bytes_per_s;   /* with low_speed_time_s: a slower transfer fails; 0: off */
    long low_speed_time_s;
    bool path_as_is; /* send the path exactly as given, "." and ".." segments too (an S3 key:
                      * the signature covers the path, and "../other-bucket/" is a key there) */
    long expect_continue_ms; /* > 0: send "Expect: 100-continue" and the body only once the
                              * server says so (a refusal comes before it), or this many ms
                              * without an answer; 0: the body goes at once. A server answering
                              * 417 gets it at once, and the client never asks again */
};

struct http_response {
    long status;     /* HTTP status, 0 if no response */
    struct buf body; /* response body */
    struct buf head; /* raw response headers of the last response */
    char ip[64];     /* peer address, when known */
    bool refused;    /* the request's guard refused the URL or an address (the message says
                      * which): retrying cannot help */
    bool too_large;  /* the answer's body passed the request's max_body (a redirect that is
                      * followed is no answer): retrying cannot help either, but for what the
                      * status of an error page says */
    bool bad_url;    /* the URL cannot be requested (malformed, not http or https): nor here */
    bool bad_answer; /* the answer cannot be read (a header line over libcurl's 100 KiB): nor
                      * here */
};

struct http;

/* Creates a client with its own curl handle. Returns NULL if curl could not start. */
struct http *http_create(struct err *e);

/* Frees the client; NULL is allowed. */
void http_destroy(struct http *h);

/* Prepares `r` for http_perform(). */
void http_response_init(struct http_response *r);

/* Frees what the response holds. */
void http_response_finish(struct http_response *r);

/* Sends the request and reads the response into `resp` (initialised by the caller; reset here).
 * A request on a kept-alive connection that dies before any answer (the server closed it as the
 * request went out: a reset, a broken pipe while the body is sent) is sent once more on a new
 * connection (libcurl itself does so only when the close shows while it reads the answer).
 * Returns 0 when a response arrived (any status), or -1 on a transport failure (the message says
 * which: timeout, connection refused, reset, body larger than the cap, "address 10.0.0.1 is not
 * allowed (private)" with `resp->refused` set...). Messages never contain a URL's password. */
int http_perform(struct http *h, const struct http_request *req, struct http_response *resp,
                 struct err *e);

/* Whether a header can be sent as it is: the name a token of RFC 9110 (letters, digits and
 * !#$%&'*+-.^_`|~), the value free of control characters but TAB (no CR or LF that would start
 * another header, no NUL that would cut it, no C1 control such as U+0085, a line break to some
 * readers) in UTF-8; other bytes past ASCII are sent as they are. */
bool http_header_valid(const char *name, const char *value);

/* The wait that a 429 or 503 answer asks for with Retry-After, in ms, at most `max_ms`: its
 * delay-seconds, or its HTTP-date (any of RFC 9110's three forms) less the answer's Date, or
 * less `now` when it has none that can be read (a date past: 0).
 * -1 for another status, no header, one that cannot be read, or `max_ms` 0. */
long http_retry_after_ms(const struct http_response *r, time_t now, long max_ms);

/* Copies the value of response header `name` (case-insensitive) into `out`; returns false if it
 * is absent. */
bool http_response_header(const struct http_response *r, const char *name, char *out, size_t cap);

#endif
