/* The worker's metrics server (worker/metrics_http.c), served round by round with mhttp_serve()
 * from this thread (one test from its own thread) and talked to over loopback sockets: what
 * mhttp_create() refuses, the routes and the exact bytes of each answer, a request head that
 * comes in pieces, the request size limit, the connection slots, the timeout, and that the
 * server closes its sockets when it is done with them (counted in /proc/self/fd). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "clock.h"
#include "loopback.h"
#include "metrics.h"
#include "metrics_http.h"

#define WAIT_MS 2000 /* the longest a test waits for what should come at once */

#define NOT_FOUND_HEAD                                                                             \
    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"                 \
    "Connection: close\r\n\r\n"
#define NOT_FOUND NOT_FOUND_HEAD "404 Not Found\n"
#define BAD_REQUEST                                                                                \
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"               \
    "Connection: close\r\n\r\n400 Bad Request\n"
#define NOT_ALLOWED                                                                                \
    "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n"        \
    "Connection: close\r\nAllow: GET, HEAD\r\n\r\n405 Method Not Allowed\n"
#define TOO_LARGE                                                                                  \
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"                 \
    "Content-Length: 36\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large\n"

/* A server on 127.0.0.1 with these limits, its port in *port. */
static struct mhttp *server(int max_conns, size_t max_request, long timeout_ms, int *port)
{
    const struct mhttp_limits lim = {max_conns, max_request, timeout_ms};
    for (int attempt = 0; attempt < 20; attempt++) {
        int fd = loopback_listen(port); /* a port that was free a moment ago */
        if (fd < 0) {
            break;
        }
        close(fd);
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", *port);
        bool lasting;
        struct err e;
        struct mhttp *s = mhttp_create(addr, &lim, &lasting, &e);
        if (s != NULL || lasting) {
            CHECK(s != NULL);
            return s;
        }
    }
    CHECK(!"no metrics server");
    return NULL;
}

/* A client; with `rcvbuf` > 0 its receive buffer that small. */
static int connect_with(int port, int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    CHECK(fd >= 0);
    return fd;
}

static int connect_to(int port)
{
    return connect_with(port, 0);
}

static void send_text(int fd, const char *text)
{
    CHECK_INT(send(fd, text, strlen(text), MSG_NOSIGNAL), strlen(text));
}

/* Serves rounds for `ms` milliseconds. */
static void serve_for(struct mhttp *s, long ms)
{
    long until = clock_mono_ms() + ms;
    do {
        mhttp_serve(s, 5);
    } while (clock_mono_ms() < until);
}

/* Serves rounds, reading what the server sends on `fd` into `out` (NUL-terminated), until it
 * ends the stream (*eof), resets it or `wait_ms` pass. Every answer is text: a NUL byte in it is
 * a failure (and would hide from CHECK_STR what follows it). */
static size_t receive(struct mhttp *s, int fd, char *out, size_t cap, long wait_ms, bool *eof)
{
    size_t len = 0;
    long until = clock_mono_ms() + wait_ms;
    *eof = false;
    while (len < cap - 1 && clock_mono_ms() < until) {
        mhttp_serve(s, 5);
        ssize_t n = recv(fd, out + len, cap - 1 - len, MSG_DONTWAIT);
        if (n > 0) {
            len += (size_t)n;
        } else if (n == 0) {
            *eof = true;
            break;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            break;
        }
    }
    out[len] = '\0';
    CHECK(memchr(out, '\0', len) == NULL);
    return len;
}

/* Whether nothing came on `fd` (and the stream did not end) while the server served `ms`. */
static bool silent(struct mhttp *s, int fd, long ms)
{
    char c;
    serve_for(s, ms);
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Sends `request` on a new connection and checks that the answer is `want`, then the end. */
static void ask(struct mhttp *s, int port, const char *request, const char *want)
{
    static char got[1 << 16];
    bool eof;
    int fd = connect_to(port);
    if (fd < 0) {
        return;
    }
    send_text(fd, request);
    receive(s, fd, got, sizeof got, WAIT_MS, &eof);
    close(fd);
    if (!eof || strcmp(got, want) != 0) {
        fprintf(stderr, "request: %s\n", request);
    }
    CHECK(eof);
    CHECK_STR(got, want);
}

/* Open descriptors of this process; those without FD_CLOEXEC in *inherited. */
static int open_fds(int *inherited)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *ent;
    *inherited = 0;
    while (d != NULL && (ent = readdir(d)) != NULL) {
        int fd = atoi(ent->d_name);
        if (ent->d_name[0] == '.' || fd == dirfd(d)) {
            continue;
        }
        n++;
        *inherited += (fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

#define FD_LIMIT 1024

/* Which descriptors below FD_LIMIT are open. */
static void fd_set_of(bool open[FD_LIMIT])
{
    for (int fd = 0; fd < FD_LIMIT; fd++) {
        open[fd] = fcntl(fd, F_GETFD) >= 0;
    }
}

/* A descriptor open now that was not in `before`, other than `except`; -1 if none. */
static int new_fd(const bool before[FD_LIMIT], int except)
{
    for (int fd = 0; fd < FD_LIMIT; fd++) {
        if (!before[fd] && fd != except && fcntl(fd, F_GETFD) >= 0) {
            return fd;
        }
    }
    return -1;
}

/* The 200 answer: metrics_render()'s text; only its head for HEAD. */
static void metrics_answer(struct buf *want, bool head)
{
    struct buf text;
    buf_init(&text, 0);
    CHECK_INT(metrics_render(&text), 0);
    buf_printf(want,
               "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
               text.len, head ? "" : text.data);
    buf_finish(&text);
}

static void check_refused(const char *addr, const struct mhttp_limits *lim, bool want_lasting,
                          const char *want_msg)
{
    bool lasting = !want_lasting;
    struct err e = {""};
    struct mhttp *s = mhttp_create(addr, lim, &lasting, &e);
    CHECK(s == NULL);
    mhttp_destroy(s);
    if (lasting != want_lasting || strstr(e.msg, want_msg) == NULL) {
        fprintf(stderr, "%s: lasting %d: %s\n", addr, lasting, e.msg);
    }
    CHECK(lasting == want_lasting);
    CHECK(strstr(e.msg, want_msg) != NULL);
}

/* A port below net.ipv4.ip_unprivileged_port_start, asked for without the privilege (in a child
 * that gives root's up): EACCES, a setting to fix (lasting). */
static void check_privileged_port(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
    int first = 0;
    if (f == NULL || fscanf(f, "%d", &first) != 1) {
        first = 0;
    }
    if (f != NULL) {
        fclose(f);
    }
    if (first < 2) {
        printf("check_privileged_port: skipped, every port is unprivileged here\n");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (getuid() == 0 && setuid(65534) != 0) {
            _exit(2);
        }
        const struct mhttp_limits ok = {1, 64, 1};
        bool lasting = false;
        struct err e = {""};
        struct mhttp *s = mhttp_create("127.0.0.1:1", &ok, &lasting, &e);
        bool right = s == NULL && lasting && strstr(e.msg, "Permission denied") != NULL;
        if (!right) {
            fprintf(stderr, "127.0.0.1:1 without the privilege: lasting %d: %s\n", lasting, e.msg);
        }
        mhttp_destroy(s);
        _exit(right ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Limits out of range and addresses that cannot serve are refused, saying whether trying again
 * could help. */
static void test_create_refuses(void)
{
    const struct mhttp_limits ok = {1, 64, 1};
    const struct mhttp_limits bad[] = {{0, 64, 1}, {1, 63, 1}, {1, 64, 0}};
    int port;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        check_refused("127.0.0.1:0", &bad[i], true, "limits out of range");
    }
    check_refused("127.0.0.1", &ok, true, "is not HOST:PORT");
    check_refused(":9464", &ok, true, "is not HOST:PORT");
    check_refused("[]:9464", &ok, true, "is not HOST:PORT");
    /* a bracket only opened is part of the name, which does not resolve: not 127.0.0.1 */
    check_refused("[127.0.0.11:0", &ok, true, "cannot listen on [127.0.0.11:0 for metrics: ");
    char long_host[300]; /* a host of 256 characters does not fit the 255 of a name */
    memset(long_host, 'a', 256);
    snprintf(long_host + 256, sizeof long_host - 256, ":9464");
    check_refused(long_host, &ok, true, "is not HOST:PORT");
    check_refused("192.0.2.1:9464", &ok, true, "Cannot assign requested address");
    int held = loopback_listen(&port);
    CHECK(held >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    check_refused(addr, &ok, false, "Address already in use");
    close(held);
    check_privileged_port();

    /* the smallest limits, and an IPv6 address in brackets (where this host has ::1) */
    bool lasting;
    struct err e;
    struct mhttp *s = mhttp_create("127.0.0.1:0", &ok, &lasting, &e);
    CHECK(s != NULL);
    mhttp_destroy(s);
    int v6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (v6 >= 0 && bind(v6, (struct sockaddr *)&lo6, sizeof lo6) == 0) {
        s = mhttp_create("[::1]:0", &ok, &lasting, &e);
        CHECK(s != NULL);
        mhttp_destroy(s);
    }
    if (v6 >= 0) {
        close(v6);
    }
}

/* GET and HEAD of /metrics (a query string allowed), 404, 405 and 400, each answer exactly. */
static void test_routes(void)
{
    int port;
    struct mhttp *s = server(4, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    struct buf get, head;
    buf_init(&get, 0);
    buf_init(&head, 0);
    metrics_answer(&get, false);
    metrics_answer(&head, true);
    ask(s, port, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", get.data);
    ask(s, port, "GET /metrics?name[]=up HTTP/1.0\r\n\r\n", get.data);
    ask(s, port, "GET /metrics HTTP/1.1\n\n", get.data); /* bare line feeds */
    ask(s, port, "HEAD /metrics HTTP/1.1\r\n\r\n", head.data);
    ask(s, port, "GET /metricsx HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET /metric HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET /metricz HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET /metrics/ HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET / HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "HEAD /health HTTP/1.1\r\n\r\n", NOT_FOUND_HEAD);
    ask(s, port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NOT_ALLOWED);
    ask(s, port, "GE /metrics HTTP/1.1\r\n\r\n", NOT_ALLOWED);
    ask(s, port, "HEADS /metrics HTTP/1.1\r\n\r\n", NOT_ALLOWED);
    ask(s, port, "get /metrics HTTP/1.1\r\n\r\n", NOT_ALLOWED);
    ask(s, port, "GETS /metrics HTTP/1.1\r\n\r\n", NOT_ALLOWED);
    ask(s, port, "GET /metrics HTTP/2.0\r\n\r\n", BAD_REQUEST);
    ask(s, port, "GET /metrics HTTP/10\r\n\r\n", BAD_REQUEST); /* HTTP/1.x, not 1x */
    ask(s, port, "GET /metrics HTTP/1\r\n\r\n", BAD_REQUEST);
    ask(s, port, "GET /metrics\r\n\r\n", BAD_REQUEST);
    ask(s, port, "GET /metrics\r\nHTTP/1.1 x\r\n\r\n", BAD_REQUEST); /* the request line only */
    ask(s, port, "GET /metrics\r HTTP/1.1\r\n\r\n", BAD_REQUEST);    /* a bare CR ends it */
    ask(s, port, "GET\t/metrics \tHTTP/1.1\r\n\r\n", get.data);      /* blanks, as sscanf's */
    ask(s, port, "\r\n\r\n", BAD_REQUEST);
    /* the absolute form, which an HTTP/1.1 server must take (RFC 9112 3.2.2) */
    ask(s, port, "GET http://127.0.0.1:9464/metrics HTTP/1.1\r\n\r\n", get.data);
    ask(s, port, "GET HTTPS://[::1]:9464/metrics?a=b HTTP/1.1\r\n\r\n", get.data);
    ask(s, port, "HEAD http://h/metrics HTTP/1.1\r\n\r\n", head.data);
    ask(s, port, "GET Http://h/metrics HTTP/1.1\r\n\r\n", get.data); /* the scheme in any case */
    ask(s, port, "GET http://h/metricsx HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET http://h/other/metrics HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET http://h?/metrics HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET http://metrics HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET http:/metrics HTTP/1.1\r\n\r\n", NOT_FOUND);
    ask(s, port, "GET ftp://h/metrics HTTP/1.1\r\n\r\n", NOT_FOUND);

    /* a long target or method, well within the 8192 bytes of head, is answered as a short one:
     * a GET of /metrics with its query, 404 for another path, 405 for another method */
    static char request[4096];
    char pad[2049];
    memset(pad, 'a', 2048);
    pad[2048] = '\0';
    snprintf(request, sizeof request, "GET /metrics?q=%s HTTP/1.1\r\n\r\n", pad);
    ask(s, port, request, get.data);
    snprintf(request, sizeof request, "GET /%s HTTP/1.1\r\n\r\n", pad);
    ask(s, port, request, NOT_FOUND);
    snprintf(request, sizeof request, "HEAD /metrics/%s HTTP/1.1\r\n\r\n", pad);
    ask(s, port, request, NOT_FOUND_HEAD);
    ask(s, port, "VERSION-CONTROL-X /metrics HTTP/1.1\r\n\r\n", NOT_ALLOWED); /* 17 bytes */
    snprintf(request, sizeof request, "%s /metrics HTTP/1.1\r\n\r\n", pad);
    ask(s, port, request, NOT_ALLOWED);
    snprintf(request, sizeof request, "GET /metrics %s\r\n\r\n", pad);
    ask(s, port, request, BAD_REQUEST);
    buf_finish(&get);
    buf_finish(&head);
    mhttp_destroy(s);
}

/* A head is answered once its empty line has come, whatever the pieces, also in a slot whose
 * last request was longer; the request line alone is not enough. A NUL byte ends it at once. */
static void test_head_in_pieces(void)
{
    int port;
    char got[256];
    bool eof;
    struct mhttp *s = server(1, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    ask(s, port, "GET /x HTTP/1.1\r\nHost: a-long-host-name.example\r\n\r\n", NOT_FOUND);
    int fd = connect_to(port);
    send_text(fd, "GET /x HTTP/1.1\r\n");
    CHECK(silent(s, fd, 50));
    send_text(fd, "Host: a\r\n");
    CHECK(silent(s, fd, 50));
    send_text(fd, "\r\n");
    receive(s, fd, got, sizeof got, WAIT_MS, &eof);
    CHECK(eof);
    CHECK_STR(got, NOT_FOUND);
    close(fd);
    /* a NUL byte, in a head's first piece or a later one, is answered 400 at once; it was
     * waited on until the timeout (10 s here), the head's end never found past it */
    static const char nul_head[] = "GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n";
    for (size_t split = 0; split < 2; split++) {
        fd = connect_to(port);
        size_t first = split == 0 ? sizeof nul_head - 1 : 17;
        CHECK_INT(send(fd, nul_head, first, MSG_NOSIGNAL), first);
        if (split == 1) {
            CHECK(silent(s, fd, 50));
            CHECK_INT(send(fd, nul_head + first, sizeof nul_head - 1 - first, MSG_NOSIGNAL),
                      sizeof nul_head - 1 - first);
        }
        receive(s, fd, got, sizeof got, WAIT_MS, &eof);
        CHECK(eof);
        CHECK_STR(got, BAD_REQUEST);
        close(fd);
    }
    mhttp_destroy(s);
}

/* max_request is the longest head served, "431 past it" (README, PIXQ_METRICS_MAX_REQUEST_BYTES):
 * 64 bytes of 64 are a request, unanswered until complete; 64 without the empty line can only
 * become more, and are answered 431 at once, as are 65 with it. */
static void test_request_limit(void)
{
    int port;
    char got[256];
    bool eof;
    struct mhttp *s = server(2, 64, 10000, &port);
    if (s == NULL) {
        return;
    }
    const char *line = "GET /x HTTP/1.1\r\nX: "; /* 20 bytes, + 40 + 4 = 64 */
    char pad[42];
    memset(pad, 'a', 41);
    pad[41] = '\0';
    char request[128];
    snprintf(request, sizeof request, "%s%.40s\r\n\r\n", line, pad);
    CHECK_INT(strlen(request), 64);
    ask(s, port, request, NOT_FOUND);
    snprintf(request, sizeof request, "%s%.41s\r\n\r\n", line, pad);
    CHECK_INT(strlen(request), 65);
    ask(s, port, request, TOO_LARGE);

    snprintf(request, sizeof request, "%s%.40s\r\n\r", line, pad); /* 63 bytes: wait for more */
    int fd = connect_to(port);
    send_text(fd, request);
    CHECK(silent(s, fd, 50));
    send_text(fd, "x"); /* 64 bytes, no end */
    receive(s, fd, got, sizeof got, WAIT_MS, &eof);
    CHECK(eof);
    CHECK_STR(got, TOO_LARGE);
    close(fd);

    memset(request, 'a', 100); /* more than fits, at once */
    request[100] = '\0';
    ask(s, port, request, TOO_LARGE);
    mhttp_destroy(s);
}

/* A client gone before its request is complete is closed at once, not at the timeout. */
static void test_client_leaves(void)
{
    int port, inherited;
    char got[64];
    bool eof;
    struct mhttp *s = server(2, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    int fd = connect_to(port);
    send_text(fd, "GET /metrics HT");
    serve_for(s, 20);
    int before = open_fds(&inherited);
    shutdown(fd, SHUT_WR);
    long t0 = clock_mono_ms();
    CHECK_INT(receive(s, fd, got, sizeof got, WAIT_MS, &eof), 0);
    CHECK(eof);
    CHECK(clock_mono_ms() - t0 < WAIT_MS);
    CHECK_INT(open_fds(&inherited), before - 1); /* the server's end */
    close(fd);
    mhttp_destroy(s);
}

/* timeout_ms from accept: an idle client is closed then, and an answered one that does not
 * close; a server started again binds the port at once though the closed connections wait in
 * TIME_WAIT. */
static void test_timeout(void)
{
    int port, inherited;
    char got[1024];
    bool eof;
    const long timeout = 300;
    struct mhttp *s = server(2, 8192, timeout, &port);
    if (s == NULL) {
        return;
    }
    long t0 = clock_mono_ms();
    int idle = connect_to(port);
    send_text(idle, "GET /metrics HTTP/1.1\r\n");
    CHECK_INT(receive(s, idle, got, sizeof got, 4 * timeout, &eof), 0);
    long took = clock_mono_ms() - t0;
    CHECK(eof);
    if (took < timeout || took >= 2 * timeout) {
        fprintf(stderr, "the idle client was closed after %ld ms\n", took);
    }
    CHECK(took >= timeout && took < 2 * timeout);
    close(idle);

    int fd = connect_to(port);
    send_text(fd, "GET /x HTTP/1.1\r\n\r\n");
    receive(s, fd, got, sizeof got, WAIT_MS, &eof);
    CHECK_STR(got, NOT_FOUND);
    int open = open_fds(&inherited);
    serve_for(s, 2 * timeout);
    CHECK_INT(open_fds(&inherited), open - 1);
    close(fd);
    mhttp_destroy(s);

    const struct mhttp_limits lim = {1, 64, 1};
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    bool lasting;
    struct err e;
    s = mhttp_create(addr, &lim, &lasting, &e);
    CHECK(s != NULL);
    mhttp_destroy(s);
}

/* After its answer the server keeps reading until the client closes (what the client still sends
 * must not reset the answer away), then closes its end. */
static void test_drain(void)
{
    int port, inherited;
    char got[1024];
    bool eof;
    struct mhttp *s = server(1, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    int fd = connect_to(port);
    send_text(fd, "GET /x HTTP/1.1\r\n\r\n");
    receive(s, fd, got, sizeof got, WAIT_MS, &eof);
    CHECK(eof);
    CHECK_STR(got, NOT_FOUND);
    int open = open_fds(&inherited);
    send_text(fd, "a body nobody asked for");
    serve_for(s, 30);
    CHECK_INT(open_fds(&inherited), open);
    close(fd);
    serve_for(s, 30);
    CHECK_INT(open_fds(&inherited), open - 2);
    mhttp_destroy(s);
}

/* max_conns: a new client takes a free slot or the slot of the oldest connection (idle here);
 * the others stay. */
static void test_slots(void)
{
    int port;
    char got[1024];
    bool eof;
    struct mhttp *s = server(2, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    int a = connect_to(port);
    serve_for(s, 20);
    int b = connect_to(port);
    send_text(b, "GET /x HTTP/1.1\r\n\r\n");
    receive(s, b, got, sizeof got, WAIT_MS, &eof);
    CHECK_STR(got, NOT_FOUND);
    close(b);
    serve_for(s, 20);
    ask(s, port, "GET /y HTTP/1.1\r\n\r\n", NOT_FOUND); /* b's slot is free again: a stays */
    CHECK(silent(s, a, 20));

    b = connect_to(port);
    serve_for(s, 20);
    int c = connect_to(port);
    send_text(c, "GET /z HTTP/1.1\r\n\r\n");
    receive(s, c, got, sizeof got, WAIT_MS, &eof);
    CHECK_STR(got, NOT_FOUND);
    CHECK_INT(receive(s, a, got, sizeof got, WAIT_MS, &eof), 0); /* the oldest, closed */
    CHECK(eof);
    CHECK(silent(s, b, 20));
    close(a);
    close(b);
    close(c);
    mhttp_destroy(s);

    /* an answered client that has not closed (its connection drains) gives its slot up too */
    s = server(1, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    a = connect_to(port);
    send_text(a, "GET /x HTTP/1.1\r\n\r\n");
    receive(s, a, got, sizeof got, WAIT_MS, &eof);
    CHECK(eof);
    CHECK_STR(got, NOT_FOUND);
    ask(s, port, "GET /y HTTP/1.1\r\n\r\n", NOT_FOUND);
    close(a);
    mhttp_destroy(s);
}

/* The server's sockets are closed on exec (a credential helper must not hold the port) and when
 * it is destroyed. */
static void test_sockets(void)
{
    int port, inherited, inherited_before;
    char got[1024];
    bool eof;
    int before = open_fds(&inherited_before);
    struct mhttp *s = server(2, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    int fd = connect_to(port);
    send_text(fd, "GET /x HTTP/1.1\r\n");
    serve_for(s, 20);
    CHECK_INT(open_fds(&inherited), before + 3); /* the listener, fd and the server's end */
    CHECK_INT(inherited, inherited_before);
    send_text(fd, "\r\n");
    receive(s, fd, got, sizeof got, WAIT_MS, &eof);
    CHECK(eof);
    mhttp_destroy(s);
    close(fd);
    CHECK_INT(open_fds(&inherited), before);
}

/* Whether a thread of this process other than the main one blocks each of `sigs` (from the
 * SigBlk line of /proc/self/task/TID/status, a bit for each signal, 1 << (signal - 1)). */
static bool other_thread_blocks(const int *sigs, int n)
{
    bool found = false;
    DIR *d = opendir("/proc/self/task");
    struct dirent *ent;
    while (d != NULL && (ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' || atoi(ent->d_name) == getpid()) {
            continue;
        }
        char path[300], line[256];
        unsigned long long blocked = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", ent->d_name);
        FILE *f = fopen(path, "r");
        while (f != NULL && fgets(line, sizeof line, f) != NULL &&
               sscanf(line, "SigBlk: %llx", &blocked) != 1) {
        }
        if (f != NULL) {
            fclose(f);
        }
        bool all = true;
        for (int i = 0; i < n; i++) {
            all = all && (blocked >> (sigs[i] - 1) & 1) != 0;
        }
        found = found || all;
    }
    if (d != NULL) {
        closedir(d);
    }
    return found;
}

/* From its own thread, as a single worker process serves. The thread blocks the signals (they
 * stay with the worker's own threads) and the caller's mask is as it was; mhttp_destroy() stops
 * the thread soon, also while it waits in a round with nothing to serve. */
static void test_thread(void)
{
    int port, inherited;
    struct err e;
    struct mhttp *s = server(2, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGPIPE};
    const int nsigs = (int)(sizeof sigs / sizeof sigs[0]);
    sigset_t mask;
    int fds_before = open_fds(&inherited);
    CHECK(!other_thread_blocks(sigs, nsigs));
    CHECK_INT(mhttp_start_thread(s, &e), 0);
    CHECK_INT(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
    for (int i = 0; i < nsigs; i++) {
        CHECK(!sigismember(&mask, sigs[i]));
    }
    struct buf want;
    buf_init(&want, 0);
    metrics_answer(&want, false);
    int fd = connect_to(port);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    send_text(fd, "GET /metrics HTTP/1.1\r\n\r\n");
    char got[1 << 16];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof got - 1 && (n = recv(fd, got + len, sizeof got - 1 - len, 0)) > 0) {
        len += (size_t)n;
    }
    got[len] = '\0';
    CHECK_INT(len, want.len);
    CHECK_STR(got, want.data);
    /* (looked at once it has served: a new thread blocks every signal until it has started) */
    CHECK(other_thread_blocks(sigs, nsigs));
    close(fd);
    buf_finish(&want);
    /* once the server has closed its end, its thread waits in a round of its own */
    long until = clock_mono_ms() + WAIT_MS;
    while (open_fds(&inherited) != fds_before && clock_mono_ms() < until) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    CHECK_INT(open_fds(&inherited), fds_before);
    long t0 = clock_mono_ms();
    mhttp_destroy(s); /* at once: the worker stops on SIGTERM */
    CHECK(clock_mono_ms() - t0 < 1000);
}

/* A connection being answered keeps its slot: with every slot busy so, a new client is closed
 * at once. The answer is long here (every S3 status counted) and both socket buffers small, so
 * that the server writes it in many pieces, each when the socket has room again. */
static void test_busy_slot(void)
{
    int port;
    bool eof;
    static char got[1 << 20];
    for (int m = 0; m < METRICS_S3_COUNT; m++) {
        for (long code = 100; code <= 599; code++) {
            metrics_count_s3((enum metrics_s3)m, code);
        }
    }
    struct mhttp *s = server(1, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    struct buf want;
    buf_init(&want, 0);
    metrics_answer(&want, false);
    bool before[FD_LIMIT];
    fd_set_of(before);
    int a = connect_with(port, 4096);
    serve_for(s, 20);
    int end = new_fd(before, a); /* the server's end: its send buffer small too */
    int small = 4096;
    CHECK(end >= 0 && setsockopt(end, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    send_text(a, "GET /metrics HTTP/1.1\r\n\r\n");
    serve_for(s, 50);
    int b = connect_to(port);
    CHECK_INT(receive(s, b, got, sizeof got, WAIT_MS, &eof), 0);
    CHECK(eof);
    close(b);
    receive(s, a, got, sizeof got, WAIT_MS, &eof);
    CHECK(eof);
    CHECK_STR(got, want.data);
    close(a);
    buf_finish(&want);
    mhttp_destroy(s);
}

/* A client gone while its answer is being written (its connection reset) is closed at once, not
 * at the timeout. The answer is long (test_busy_slot counted every S3 status) and both socket
 * buffers small, so that the server still has to write when the reset comes. SIGPIPE is ignored,
 * as the worker and its supervisor ignore it. */
static void test_reset_while_answered(void)
{
    int port, inherited;
    struct mhttp *s = server(1, 8192, 10000, &port);
    if (s == NULL) {
        return;
    }
    bool before[FD_LIMIT];
    fd_set_of(before);
    int a = connect_with(port, 4096);
    serve_for(s, 20);
    int end = new_fd(before, a);
    int small = 4096;
    CHECK(end >= 0 && setsockopt(end, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    int open = open_fds(&inherited);
    send_text(a, "GET /metrics HTTP/1.1\r\n\r\n");
    serve_for(s, 50); /* the answer fills both buffers */
    struct linger reset = {1, 0};
    CHECK(setsockopt(a, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
    close(a);
    long until = clock_mono_ms() + WAIT_MS;
    while (open_fds(&inherited) != open - 2 && clock_mono_ms() < until) {
        mhttp_serve(s, 5);
    }
    CHECK_INT(open_fds(&inherited), open - 2);
    mhttp_destroy(s);
}

/* With no descriptor left for accept(2), a client waiting is no reason to spin: a round still
 * waits (the listener unwatched for a while, a longer round ending with that pause), and the
 * client is served once descriptors are free again. */
static void test_no_descriptors(void)
{
    int port;
    char got[1024];
    bool eof;
    struct rlimit old;
    struct mhttp *s = server(1, 8192, 10000, &port);
    const char *preload = getenv("LD_PRELOAD");
    if (preload != NULL && strstr(preload, "vgpreload") != NULL) {
        /* valgrind keeps its own descriptor limit: it closes what accept(2) returns past it */
        printf("test_no_descriptors: skipped under valgrind\n");
        mhttp_destroy(s);
        return;
    }
    if (s == NULL || getrlimit(RLIMIT_NOFILE, &old) != 0) {
        mhttp_destroy(s);
        return;
    }
    int fd = connect_to(port);
    send_text(fd, "GET /x HTTP/1.1\r\n\r\n");
    int lowest = dup(fd); /* the lowest free descriptor: each one below it is open */
    close(lowest);
    struct rlimit low = {(rlim_t)lowest, old.rlim_max};
    CHECK_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rounds = 0;
    long until = clock_mono_ms() + 300;
    for (; clock_mono_ms() < until && rounds < 1000; rounds++) {
        mhttp_serve(s, 100);
    }
    long t0 = clock_mono_ms();
    mhttp_serve(s, 4 * WAIT_MS); /* a round ends with the pause, to watch the listener again */
    mhttp_serve(s, 4 * WAIT_MS); /* (the one before may have ended one) */
    long took = clock_mono_ms() - t0;
    CHECK_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
    if (rounds > 30) {
        fprintf(stderr, "%d rounds of mhttp_serve(100 ms) in 300 ms\n", rounds);
    }
    CHECK(rounds <= 30);
    CHECK(took < WAIT_MS);
    receive(s, fd, got, sizeof got, WAIT_MS, &eof);
    CHECK(eof);
    CHECK_STR(got, NOT_FOUND);
    close(fd);
    mhttp_destroy(s);
}

int main(void)
{
    struct err e;
    signal(SIGPIPE, SIG_IGN);
    CHECK_INT(metrics_init(&e), 0);
    metrics_count_s3(METRICS_S3_PUT, 200);
    metrics_set_processes(2);
    test_create_refuses();
    test_routes();
    test_head_in_pieces();
    test_request_limit();
    test_client_leaves();
    test_timeout();
    test_drain();
    test_slots();
    test_sockets();
    test_thread();
    test_busy_slot();
    test_reset_while_answered();
    test_no_descriptors();
    return check_summary("metrics_http");
}
