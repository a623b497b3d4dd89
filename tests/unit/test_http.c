#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "http.h"
#include "loopback.h"

/* A response with `status` and the header lines `head` (CRLF-ended). */
static long after(long status, const char *head, time_t now, long max_ms)
{
    struct http_response r;
    http_response_init(&r);
    r.status = status;
    buf_puts(&r.head, "HTTP/1.1 503 Service Unavailable\r\n");
    buf_puts(&r.head, head);
    buf_puts(&r.head, "\r\n");
    long ms = http_retry_after_ms(&r, now, max_ms);
    http_response_finish(&r);
    return ms;
}

/* Retry-After: delay-seconds or an HTTP-date, with 429 and 503 only, capped. */
static void test_retry_after(void)
{
    const time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    CHECK_INT(after(503, "Retry-After: 30\r\n", now, 300000), 30000);
    CHECK_INT(after(429, "retry-after:7 \r\n", now, 300000), 7000);
    CHECK_INT(after(503, "Retry-After: 0\r\n", now, 300000), 0);
    /* capped, however many digits */
    CHECK_INT(after(503, "Retry-After: 3600\r\n", now, 60000), 60000);
    CHECK_INT(after(503, "Retry-After: 99999999999999999999999\r\n", now, 60000), 60000);
    CHECK_INT(after(503, "Retry-After: 61\r\n", now, 60500), 60500);
    CHECK_INT(after(503, "Retry-After: 60\r\n", now, 60500), 60000);
    /* tabs around the value; a longer name that starts the same is another header */
    CHECK_INT(after(503, "Retry-After:\t7\t\r\n", now, 300000), 7000);
    CHECK_INT(after(503, "Retry-After-Ms: 5\r\nRetry-After: 30\r\n", now, 300000), 30000);
    /* the three HTTP-date forms, counted from now; a date past is no wait */
    CHECK_INT(after(503, "Retry-After: Wed, 21 Oct 2015 07:28:30 GMT\r\n", now, 300000), 30000);
    CHECK_INT(after(503, "Retry-After: Wednesday, 21-Oct-15 07:28:45 GMT\r\n", now, 300000), 45000);
    CHECK_INT(after(503, "Retry-After: Wed Oct 21 07:29:00 2015\r\n", now, 300000), 60000);
    CHECK_INT(after(503, "Retry-After: Wed, 21 Oct 2015 07:00:00 GMT\r\n", now, 300000), 0);
    CHECK_INT(after(503, "Retry-After: Thu, 22 Oct 2015 07:28:00 GMT\r\n", now, 300000), 300000);
    /* an HTTP-date counted from the answer's Date (the server's clock), here 20 s before ours
     * and 5 min after it; a Date that cannot be read leaves ours */
    CHECK_INT(after(503,
                    "Date: Wed, 21 Oct 2015 07:27:40 GMT\r\n"
                    "Retry-After: Wed, 21 Oct 2015 07:28:30 GMT\r\n",
                    now, 300000),
              50000);
    CHECK_INT(after(503,
                    "Retry-After: Wed, 21 Oct 2015 07:33:30 GMT\r\n"
                    "Date: Wed, 21 Oct 2015 07:33:00 GMT\r\n",
                    now, 300000),
              30000);
    CHECK_INT(
        after(503, "Date: whenever\r\nRetry-After: Wed, 21 Oct 2015 07:28:30 GMT\r\n", now, 300000),
        30000);
    /* delay-seconds need no clock */
    CHECK_INT(after(503, "Date: Wed, 21 Oct 2015 07:00:00 GMT\r\nRetry-After: 30\r\n", now, 300000),
              30000);
    /* none: another status, no header, one that is no delay, Retry-After turned off */
    CHECK_INT(after(500, "Retry-After: 30\r\n", now, 300000), -1);
    CHECK_INT(after(200, "Retry-After: 30\r\n", now, 300000), -1);
    CHECK_INT(after(503, "Content-Type: text/plain\r\n", now, 300000), -1);
    CHECK_INT(after(503, "Retry-After: soon\r\n", now, 300000), -1);
    CHECK_INT(after(503, "Retry-After: -5\r\n", now, 300000), -1);
    CHECK_INT(after(503, "Retry-After: \r\n", now, 300000), -1);
    CHECK_INT(after(503, "Retry-After: 30\r\n", now, 0), -1);
}

/* A header's name is a token (RFC 9110), its value has no control character but a tab. */
static void test_header_valid(void)
{
    CHECK(http_header_valid("x-amz-meta-a.b_c~1", "v a\tl\xc3\xa9"));
    CHECK(http_header_valid("x", "\xc2\xa0\xc3\x85\xe2\x80\xa6")); /* NBSP, Å, an ellipsis */
    CHECK(http_header_valid("!#$%&'*+-.^_`|~", ""));
    CHECK(!http_header_valid("", "v"));
    const char *names[] = {"a:b", "a b", "a\tb", "a\"b", "a(b", "a/b", "a\xc3\xa9", "a\r\nb"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        CHECK(!http_header_valid(names[i], "v"));
    }
    /* C0 controls and DEL, and the C1 controls (U+0080 to U+009F) in UTF-8 */
    const char *values[] = {"a\rb",
                            "a\nb",
                            "a\x01",
                            "a\x0b",
                            "a\x0c",
                            "a\x1f",
                            "a\x7f",
                            "a\xc2\x80",
                            "a\xc2\x9f",
                            "1\xc2\x85"
                            "X-Injected: yes"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        CHECK(!http_header_valid("x", values[i]));
    }
}

/* The first header line of that name (any case), its value without the blanks before it. */
static void test_response_header(void)
{
    struct http_response r;
    http_response_init(&r);
    buf_puts(&r.head, "HTTP/1.1 200 OK\r\nETag-X: no\r\nETag\r\netag: \t\"a\"\r\nETag: b\r\n");
    char v[8] = "";
    CHECK(http_response_header(&r, "ETag", v, sizeof v));
    CHECK_STR(v, "\"a\"");
    CHECK(!http_response_header(&r, "Content-Type", v, sizeof v));
    CHECK(!http_response_header(&r, "ETag-", v, sizeof v));
    http_response_finish(&r);
}

/* A server on a loopback port the kernel picks: one answer a connection, the request lines
 * written to a pipe. */
struct stub {
    pid_t pid;
    int port;
    int lines; /* the read end of the pipe */
};

static void stub_serve(int fd, int out, const char *const *answers, int n)
{
    for (int i = 0; i < n; i++) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) {
            break;
        }
        char req[8192];
        size_t got = 0;
        ssize_t r;
        while (got < sizeof req - 1 && (r = read(c, req + got, sizeof req - 1 - got)) > 0) {
            got += (size_t)r;
            req[got] = '\0';
            if (strstr(req, "\r\n\r\n") != NULL) {
                break;
            }
        }
        size_t line = strcspn(req, "\r\n");
        if (write(out, req, line) < 0 || write(out, "\n", 1) < 0 ||
            write(c, answers[i], strlen(answers[i])) < 0) {
            perror("write");
        }
        close(c);
    }
    _exit(0);
}

static void stub_start(struct stub *s, const char *const *answers, int n)
{
    int p[2], fd = loopback_listen(&s->port);
    CHECK(fd >= 0 && pipe(p) == 0);
    s->pid = fork();
    if (s->pid == 0) {
        close(p[0]);
        stub_serve(fd, p[1], answers, n);
    }
    close(p[1]);
    close(fd);
    s->lines = p[0];
}

/* Stops the server; the request lines it read into `out`. */
static void stub_finish(struct stub *s, char *out, size_t cap)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    ssize_t n = read(s->lines, out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(s->lines);
}

/* One GET of `path` from the stub, the body held to `max_body` bytes. */
static int get(struct http *h, const struct stub *s, const char *path, size_t max_body,
               struct http_response *r, struct err *e)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    struct http_request req = {.method = "GET",
                               .url = url,
                               .connect_timeout_ms = 5000,
                               .timeout_ms = 5000,
                               .max_body = max_body,
                               .max_redirects = 1};
    return http_perform(h, &req, r, e);
}

/* What a request sends and how the answer's header lines are read: a URL's spaces, control
 * characters and UTF-8 percent-encoded, and the brackets (as Blitline's worker sent them; an IPv6
 * host's are kept, test_ipv6_host_brackets_kept) and " < > \ ^ ` { | } of its path and query, a
 * "%" kept; the headers of the last
 * response only (after a redirect, whose length is not held against the cap, and a line that starts
 * "HTTP" without being a status line); a 2xx's Content-Length over the cap; a 417 to a request that
 * did not ask to continue. */
static void test_perform(void)
{
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        "HTTP/1.1 302 Found\r\nLocation: /b\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        "0123456789",
        "HTTP/1.1 200 OK\r\nHTTPX: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!",
        "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nConnection: close\r\n\r\nab"};
    struct stub s;
    stub_start(&s, answers, 6);
    struct err e = {{0}};
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    if (h == NULL) {
        stub_finish(&s, e.msg, sizeof e.msg);
        return;
    }
    struct http_response r;
    http_response_init(&r);
    CHECK_INT(get(h, &s, "/a b\x01\x7f\xc3\xa9~[1]?k[]=1&q=\"<>\\^`{|}%41", 0, &r, &e), 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(get(h, &s, "/a", 5, &r, &e), 0);
    CHECK_INT(r.status, 200);
    CHECK(r.body.data != NULL && strcmp(r.body.data, "hello") == 0);
    CHECK(r.head.data != NULL && strncmp(r.head.data, "HTTP/1.1 200 OK\r\n", 17) == 0 &&
          strstr(r.head.data, "302") == NULL);
    char v[16] = "";
    CHECK(http_response_header(&r, "HTTPX", v, sizeof v) && strcmp(v, "1") == 0);
    CHECK_INT(get(h, &s, "/c", 5, &r, &e), -1);
    CHECK(r.too_large);
    CHECK_INT(get(h, &s, "/d", 0, &r, &e), 0);
    CHECK_INT(r.status, 417);
    /* the length in any case is held against the cap before the body: a server that sends less
     * than it declares, then closes, fails as too large, not as a body cut short */
    CHECK_INT(get(h, &s, "/e", 5, &r, &e), -1);
    CHECK(r.too_large);
    CHECK_STR(e.msg, "response larger than the limit of 5 bytes");
    http_response_finish(&r);
    http_destroy(h);
    char lines[1024];
    stub_finish(&s, lines, sizeof lines);
    CHECK_STR(lines, "GET /a%20b%01%7F%C3%A9~%5B1%5D?k%5B%5D=1&q=%22%3C%3E%5C%5E%60%7B%7C%7D%41"
                     " HTTP/1.1\n"
                     "GET /a HTTP/1.1\n"
                     "GET /b HTTP/1.1\n"
                     "GET /c HTTP/1.1\nGET /d HTTP/1.1\nGET /e HTTP/1.1\n");
}

/* The brackets of an IPv6 host are the URL's own, not escaped as a path's are: the request is
 * made (and refused by the closed port), not taken for a malformed URL. */
static void test_ipv6_host_brackets_kept(void)
{
    struct err e = {{0}};
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    if (h == NULL) {
        return;
    }
    struct http_response r;
    http_response_init(&r);
    struct http_request req = {.method = "GET",
                               .url = "http://[::1]:1/a[1].jpg",
                               .connect_timeout_ms = 2000,
                               .timeout_ms = 2000,
                               .max_body = 16};
    CHECK_INT(http_perform(h, &req, &r, &e), -1);
    CHECK(!r.bad_url);
    if (r.bad_url) {
        fprintf(stderr, "  error was: '%s'\n", e.msg);
    }
    http_response_finish(&r);
    http_destroy(h);
}

/* What http_perform() sends as given, or not at all: a path's dot segments with path_as_is (an
 * S3 key, as signed), and no request with a header that holds a control character (job.c
 * refuses such headers first: this is the promise of http.h whoever calls). */
static void test_sent_as_given(void)
{
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"};
    struct stub s;
    stub_start(&s, answers, 2);
    struct err e = {{0}};
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    struct http_response r;
    http_response_init(&r);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/k/./../other-bucket/x", s.port);
    struct http_request req = {.method = "GET",
                               .url = url,
                               .connect_timeout_ms = 5000,
                               .timeout_ms = 5000,
                               .path_as_is = true};
    CHECK(h != NULL && http_perform(h, &req, &r, &e) == 0 && r.status == 200);
    const char *bad[] = {"a\r\nX-Injected: yes", "a\nb", "a\x01", "\xc2\x85"};
    for (size_t i = 0; h != NULL && i < sizeof bad / sizeof bad[0]; i++) {
        const struct http_header hd = {.name = "X-Note", .value = bad[i]};
        snprintf(url, sizeof url, "http://127.0.0.1:%d/bad", s.port);
        req = (struct http_request){.method = "POST",
                                    .url = url,
                                    .headers = &hd,
                                    .n_headers = 1,
                                    .body = "x",
                                    .body_len = 1,
                                    .connect_timeout_ms = 5000,
                                    .timeout_ms = 5000};
        CHECK_INT(http_perform(h, &req, &r, &e), -1);
        CHECK_STR(e.msg, "header 'X-Note' has a forbidden character");
    }
    http_response_finish(&r);
    http_destroy(h);
    char lines[1024];
    stub_finish(&s, lines, sizeof lines);
    CHECK_STR(lines, "GET /k/./../other-bucket/x HTTP/1.1\n"); /* none of the bad ones */
}

/* Every request on a kept-alive connection answered (Content-Length: 2, "ok"), its request line
 * written to `out` after the number of its connection ("1 GET /a HTTP/1.1"), until the client
 * closes it; then the next connection, `conns` in all. */
static void stub_serve_kept(int fd, int out, int conns)
{
    for (int k = 1; k <= conns; k++) {
        int c = accept(fd, NULL, NULL);
        char req[8192];
        size_t got = 0;
        ssize_t r;
        while (c >= 0 && got < sizeof req - 1 &&
               (r = read(c, req + got, sizeof req - 1 - got)) > 0) {
            got += (size_t)r;
            req[got] = '\0';
            char *end = strstr(req, "\r\n\r\n");
            if (end == NULL) {
                continue;
            }
            static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if (dprintf(out, "%d %.*s\n", k, (int)strcspn(req, "\r\n"), req) < 0 ||
                write(c, answer, sizeof answer - 1) < 0) {
                perror("write");
            }
            size_t used = (size_t)(end + 4 - req);
            memmove(req, req + used, got - used + 1);
            got -= used;
        }
        if (c >= 0) {
            close(c);
        }
    }
    _exit(0);
}

/* stub_serve_kept() in a child, on listening socket `fd` (closed here). */
static void stub_start_kept_on(struct stub *s, int fd, int conns)
{
    int p[2];
    CHECK(fd >= 0 && pipe(p) == 0);
    s->pid = fork();
    if (s->pid == 0) {
        close(p[0]);
        stub_serve_kept(fd, p[1], conns);
    }
    close(p[1]);
    close(fd);
    s->lines = p[0];
}

/* stub_serve_kept() in a child, on a loopback port the kernel picks. */
static void stub_start_kept(struct stub *s, int conns)
{
    stub_start_kept_on(s, loopback_listen(&s->port), conns);
}

/* A guarded request on the connection an unguarded one (S3 at its endpoint, on the same handle)
 * left open is checked too: curl opens no socket for it, so only the check before each request
 * sees the peer. A job's URL naming the endpoint's host would otherwise reach it. */
static void test_guard_on_reused_connection(void)
{
    struct stub s;
    stub_start_kept(&s, 1);
    struct err e = {{0}};
    struct netguard g;
    CHECK(netguard_init(&g, false, NULL, &e) == 0);
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    char url[256];
    struct http_response r;
    http_response_init(&r);
    struct http_request req = {
        .method = "GET", .url = url, .connect_timeout_ms = 5000, .timeout_ms = 5000};
    snprintf(url, sizeof url, "http://localhost:%d/unguarded", s.port);
    CHECK(h != NULL && http_perform(h, &req, &r, &e) == 0 && r.status == 200);
    snprintf(url, sizeof url, "http://localhost:%d/guarded", s.port);
    req.guard = &g;
    CHECK(h != NULL && http_perform(h, &req, &r, &e) < 0);
    CHECK(r.refused);
    CHECK(strstr(e.msg, "is not allowed (loopback)") != NULL);
    http_response_finish(&r);
    http_destroy(h); /* closes the connection: the server ends */
    char lines[1024];
    stub_finish(&s, lines, sizeof lines);
    CHECK_STR(lines, "1 GET /unguarded HTTP/1.1\n");
}

/* A refused address is refused before curl connects to it: no connection reaches the server
 * (the check of the peer before the request would refuse it too, but after a TCP handshake, and
 * an https one's TLS handshake, with a host the job must not reach). "localhost" is a name, so
 * that the URL's own check lets it through to the connect. */
static void test_guard_refuses_before_connecting(void)
{
    int port, fd = loopback_listen(&port);
    CHECK(fd >= 0);
    struct err e = {{0}};
    struct netguard g;
    CHECK(netguard_init(&g, false, NULL, &e) == 0);
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    char url[256];
    snprintf(url, sizeof url, "http://localhost:%d/x", port);
    struct http_request req = {
        .method = "GET", .url = url, .connect_timeout_ms = 5000, .timeout_ms = 5000, .guard = &g};
    struct http_response r;
    http_response_init(&r);
    CHECK(h != NULL && http_perform(h, &req, &r, &e) < 0);
    CHECK(r.refused);
    CHECK(strstr(e.msg, "is not allowed (loopback)") != NULL);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_INT(poll(&p, 1, 0), 0); /* no connection waits to be accepted */
    http_response_finish(&r);
    http_destroy(h);
    close(fd);
}

/* A name with a refused address and an allowed one ("localhost": libcurl's own answer, 127.0.0.1
 * and ::1, the refused one first): the allowed one is connected to, and the request succeeds; the
 * refusal of the other is no failure of the request. Without IPv6 there is nothing to see. */
static void test_guard_takes_the_allowed_address(void)
{
    struct stub s;
    int fd = loopback6_listen(&s.port);
    if (fd < 0) {
        fprintf(stderr, "  (no IPv6 loopback: test_guard_takes_the_allowed_address skipped)\n");
        return;
    }
    stub_start_kept_on(&s, fd, 1);
    struct err e = {{0}};
    struct netguard g;
    CHECK(netguard_init(&g, false, "::1", &e) == 0); /* not 127.0.0.1 */
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    char url[256];
    snprintf(url, sizeof url, "http://localhost:%d/both", s.port);
    struct http_request req = {
        .method = "GET", .url = url, .connect_timeout_ms = 5000, .timeout_ms = 5000, .guard = &g};
    struct http_response r;
    http_response_init(&r);
    int rc = h != NULL ? http_perform(h, &req, &r, &e) : -1;
    if (rc != 0) {
        fprintf(stderr, "  %s\n", e.msg);
    }
    CHECK(rc == 0 && r.status == 200 && !r.refused);
    CHECK_STR(r.ip, "::1");
    http_response_finish(&r);
    http_destroy(h);
    char lines[1024];
    stub_finish(&s, lines, sizeof lines);
    CHECK_STR(lines, "1 GET /both HTTP/1.1\n");
}

/* max_conn_idle_ms: a cached connection idle that long or more is not reused. libcurl counts
 * whole seconds idle against CURLOPT_MAXAGE_CONN: 1500 ms keeps none idle a whole second (with
 * MAXAGE_CONN 1, one idle 1.2 s went out again, past the limit). */
static void test_max_conn_idle(void)
{
    struct stub s;
    stub_start_kept(&s, 2);
    struct err e = {{0}};
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    char url[256];
    struct http_response r;
    http_response_init(&r);
    struct http_request req = {.method = "GET",
                               .url = url,
                               .connect_timeout_ms = 5000,
                               .timeout_ms = 5000,
                               .max_conn_idle_ms = 1500};
    const char *paths[] = {"/a", "/b", "/c"};
    for (int i = 0; h != NULL && i < 3; i++) {
        if (i == 2) {
            clock_sleep_ms(1200); /* idle 1.2 s: within 1500 ms, but a whole second */
        }
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s.port, paths[i]);
        CHECK(http_perform(h, &req, &r, &e) == 0 && r.status == 200);
    }
    http_response_finish(&r);
    http_destroy(h);
    char lines[1024];
    stub_finish(&s, lines, sizeof lines);
    CHECK_STR(lines, "1 GET /a HTTP/1.1\n1 GET /b HTTP/1.1\n2 GET /c HTTP/1.1\n");
}

/* A request whose answer stalls: the headers and one byte of a body of 1000, then nothing (the
 * connection held until the client closes it). */
static void stub_serve_stalled(int fd)
{
    int c = accept(fd, NULL, NULL);
    char req[8192];
    ssize_t r = c >= 0 ? read(c, req, sizeof req) : -1;
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nx";
    if (r > 0 && write(c, answer, sizeof answer - 1) > 0) {
        while (read(c, req, sizeof req) > 0) {
        }
    }
    _exit(0);
}

/* low_speed_bytes_per_s for low_speed_time_s cuts a transfer, at the least time a setting takes
 * (PIXQ_LOW_SPEED_TIME_S=1) too, long before its timeout; the message says it timed out, and how.
 */
static void test_low_speed(void)
{
    struct stub s = {.lines = -1};
    int fd = loopback_listen(&s.port);
    CHECK(fd >= 0);
    s.pid = fork();
    if (s.pid == 0) {
        stub_serve_stalled(fd);
    }
    close(fd);
    struct err e = {{0}};
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow", s.port);
    struct http_request req = {.method = "GET",
                               .url = url,
                               .connect_timeout_ms = 5000,
                               .timeout_ms = 8000,
                               .low_speed_bytes_per_s = 100,
                               .low_speed_time_s = 1};
    struct http_response r;
    http_response_init(&r);
    long t0 = clock_mono_ms();
    CHECK(h != NULL && http_perform(h, &req, &r, &e) < 0);
    long took = clock_mono_ms() - t0;
    CHECK(strncmp(e.msg, "timed out (Operation too slow.", 30) == 0);
    if (took >= 6000 || strncmp(e.msg, "timed out (Operation too slow.", 30) != 0) {
        fprintf(stderr, "  after %ld ms: %s\n", took, e.msg);
    }
    CHECK(took < 6000);
    CHECK(!r.too_large && !r.refused);
    http_response_finish(&r);
    http_destroy(h);
    kill(s.pid, SIGTERM);
    waitpid(s.pid, NULL, 0);
}

/* A fresh connection that ends without an answer is not sent again: only a kept-alive one that
 * the server closed as the request went out is (http_perform()). */
static void test_fresh_connection_dying_is_not_sent_again(void)
{
    static const char *const answers[] = {"", ""}; /* closed at once, twice */
    struct stub s;
    stub_start(&s, answers, 2);
    struct err e = {{0}};
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    struct http_response r;
    http_response_init(&r);
    CHECK(h != NULL && get(h, &s, "/nothing", 0, &r, &e) < 0);
    CHECK_STR(e.msg, "Empty reply from server");
    CHECK_INT(r.status, 0);
    http_response_finish(&r);
    http_destroy(h);
    char lines[1024];
    stub_finish(&s, lines, sizeof lines);
    CHECK_STR(lines, "GET /nothing HTTP/1.1\n");
}

int main(void)
{
    test_retry_after();
    test_header_valid();
    test_response_header();
    test_perform();
    test_ipv6_host_brackets_kept();
    test_sent_as_given();
    test_guard_on_reused_connection();
    test_guard_refuses_before_connecting();
    test_guard_takes_the_allowed_address();
    test_max_conn_idle();
    test_low_speed();
    test_fresh_connection_dying_is_not_sent_again();
    return check_summary("http");
}
