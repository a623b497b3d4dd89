/* test_s3: bucket names, the URL each object is addressed at, S3 connections' reuse, and what
 * the requests send and make of S3's answers, against one-answer stubs on loopback ports
 * (common/s3.c). */
#include <ctype.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "awscreds.h"
#include "buf.h"
#include "cfg.h"
#include "check.h"
#include "clock.h"
#include "err.h"
#include "hash.h"
#include "http.h"
#include "loopback.h"
#include "s3.h"
#include "sigv4.h"

static void test_bucket_names(void)
{
    CHECK(s3_valid_bucket("pixq-test"));
    CHECK(s3_valid_bucket("a.b.c"));
    CHECK(s3_valid_bucket("My_Bucket")); /* legacy us-east-1 */
    CHECK(s3_legacy_bucket("My_Bucket"));
    CHECK(s3_legacy_bucket("UPPER"));
    CHECK(!s3_legacy_bucket("pixq-test"));
    CHECK(!s3_valid_bucket("ab"));
    CHECK(s3_valid_bucket("abc")); /* 3 bytes: the shortest */
    CHECK(s3_valid_bucket("a-1"));
    CHECK(!s3_valid_bucket("_leading"));
    CHECK(!s3_valid_bucket("trailing_"));
    CHECK(!s3_valid_bucket("a/b"));
    CHECK(!s3_valid_bucket("a b"));
    CHECK(!s3_valid_bucket("a%2fb"));
    CHECK(!s3_valid_bucket("abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij"));
    CHECK(!s3_legacy_bucket("a/B"));
}

static void check_url(const struct s3_config *c, const char *bucket, const char *key,
                      const char *want)
{
    struct s3_object o = {.bucket = bucket, .key = key};
    struct buf url;
    buf_init(&url, 0);
    struct err e = {{0}};
    int rc = s3_object_url(c, &o, &url, &e);
    CHECK_INT(rc, want != NULL ? 0 : -1);
    if (rc == 0 && want != NULL) {
        CHECK_STR(url.data, want);
    }
    buf_finish(&url);
}

/* Virtual-host addressing unless the name cannot be a host name (legacy) or breaks TLS name
 * checks (a dot, over https), or the deployment asks for path style. */
static void test_addressing(void)
{
    struct s3_config aws = {.region = "us-east-1"};
    check_url(&aws, "pixq-test", "a/b.jpg", "https://pixq-test.s3.amazonaws.com/a/b.jpg");
    check_url(&aws, "My_Bucket", "a/b.jpg", "https://s3.amazonaws.com/My_Bucket/a/b.jpg");
    check_url(&aws, "a.b.c", "k", "https://s3.amazonaws.com/a.b.c/k");
    check_url(&aws, "a/b", "k", NULL);
    struct s3_config eu = {.region = "eu-west-1"};
    check_url(&eu, "pixq-test", "k", "https://pixq-test.s3.eu-west-1.amazonaws.com/k");
    /* README's s3_url: path style for a bucket with a dot, in any region */
    check_url(&eu, "a.b.c", "k", "https://s3.eu-west-1.amazonaws.com/a.b.c/k");
    struct s3_config local = {.endpoint = "http://127.0.0.1:9000", .region = "us-east-1"};
    check_url(&local, "pixq-test", "k", "http://pixq-test.127.0.0.1:9000/k");
    check_url(&local, "Legacy_Bucket", "k", "http://127.0.0.1:9000/Legacy_Bucket/k");
    local.path_style = true;
    check_url(&local, "pixq-test", "k", "http://127.0.0.1:9000/pixq-test/k");
    /* no key: the bucket itself (the HEAD that asks where it lives) */
    check_url(&local, "pixq-test", "", "http://127.0.0.1:9000/pixq-test");
    check_url(&aws, "pixq-test", "", "https://pixq-test.s3.amazonaws.com/");
    check_url(&aws, "a.b.c", "", "https://s3.amazonaws.com/a.b.c");
}

/* A key goes into the URL as S3 keeps it (IMAGE_S3 C.6: encoded once, never normalised): each
 * byte outside A-Z a-z 0-9 - . _ ~ / as %XX, a '%' too, and a leading '/', an empty segment or
 * a trailing '/' left in place: they are part of the key ("/images/x.jpg" in a Blitline job is
 * the object "/images/x.jpg", which job_check_s3_key() accepts). */
static void test_key_as_given(void)
{
    struct s3_config aws = {.region = "us-east-1"};
    check_url(&aws, "pixq-test", "/images/x.jpg",
              "https://pixq-test.s3.amazonaws.com//images/x.jpg");
    check_url(&aws, "pixq-test", "a//b/", "https://pixq-test.s3.amazonaws.com/a//b/");
    check_url(&aws, "pixq-test", "my photo+1 $\xc3\xa9%20~.jpg",
              "https://pixq-test.s3.amazonaws.com/my%20photo%2B1%20%24%C3%A9%2520~.jpg");
    struct s3_config local = {
        .endpoint = "http://127.0.0.1:9000", .region = "us-east-1", .path_style = true};
    check_url(&local, "pixq-test", "/images/x.jpg",
              "http://127.0.0.1:9000/pixq-test//images/x.jpg");
    check_url(&local, "pixq-test", "/", "http://127.0.0.1:9000/pixq-test//");
}

/* The answers that name the bucket's region: followed only to a region name. */
static void test_wrong_region(void)
{
    struct s3_reply r = {
        .status = 400, .code = "IllegalLocationConstraintException", .region = "af-south-1"};
    CHECK(s3_wrong_region(&r));
    snprintf(r.code, sizeof r.code, "AuthorizationHeaderMalformed");
    CHECK(s3_wrong_region(&r));
    snprintf(r.code, sizeof r.code, "InvalidArgument");
    CHECK(!s3_wrong_region(&r));
    r = (struct s3_reply){.status = 301, .region = "eu-west-1"};
    CHECK(s3_wrong_region(&r));
    r.status = 307;
    CHECK(s3_wrong_region(&r));
    snprintf(r.region, sizeof r.region, "evil.example/x");
    CHECK(!s3_wrong_region(&r));
    r = (struct s3_reply){.status = 403, .code = "AccessDenied", .region = "eu-west-1"};
    CHECK(!s3_wrong_region(&r));
}

/* S3's <Message> as an error quotes it: control bytes as spaces, cut to the buffer. */
static void test_error_message(void)
{
    char out[16];
    s3_error_message("<Error><Code>AccessControlListNotSupported</Code><Message>No ACLs"
                     "</Message></Error>",
                     out, sizeof out);
    CHECK_STR(out, "No ACLs");
    s3_error_message("<Error><Message>a\r\nb\x1b[31mc\x7f</Message></Error>", out, sizeof out);
    CHECK_STR(out, "a  b [31mc ");
    s3_error_message("<Message>The bucket does not allow ACLs</Message>", out, sizeof out);
    CHECK_STR(out, "The bucket does");
    s3_error_message("<Error><Code>SlowDown</Code></Error>", out, sizeof out);
    CHECK_STR(out, "");
    s3_error_message("<Message>cut short, no end", out, sizeof out);
    CHECK_STR(out, "");
    s3_error_message(NULL, out, sizeof out);
    CHECK_STR(out, "");
    /* plain text (s3rver's 404 for an empty key segment), less the blanks around it */
    s3_error_message(" Not Found\r\n", out, sizeof out);
    CHECK_STR(out, "Not Found");
    s3_error_message("a very long text answer", out, sizeof out);
    CHECK_STR(out, "a very long tex");
    s3_error_message("<html><body>Bad Gateway</body></html>", out, sizeof out);
    CHECK_STR(out, ""); /* a page: no text to pick */
    s3_error_message("", out, sizeof out);
    CHECK_STR(out, "");
    s3_error_message(" \n", out, sizeof out);
    CHECK_STR(out, "");
}

/* Which answers are worth a retry (s3_transient), which slow the bucket (s3_throttled), and the
 * clock's correction from a RequestTimeTooSkewed that says S3's time. */
static void test_answers(void)
{
    static const long transient[] = {307, 500, 502, 504, 503, 429};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++) {
        struct s3_reply r = {.status = transient[i]};
        CHECK(s3_transient(&r));
    }
    static const long lasting[] = {200, 301, 400, 403, 404, 409, 411, 412, 501, 505};
    for (size_t i = 0; i < sizeof lasting / sizeof lasting[0]; i++) {
        struct s3_reply r = {.status = lasting[i]};
        CHECK(!s3_transient(&r));
        CHECK(!s3_throttled(&r));
    }
    struct s3_reply r = {.status = 0}; /* no answer: a reset, a timeout */
    CHECK(s3_transient(&r));
    r.not_sent = true; /* no request could be made: trying again won't help */
    CHECK(!s3_transient(&r));
    r = (struct s3_reply){.status = 400, .code = "RequestTimeout"};
    CHECK(s3_transient(&r));
    r = (struct s3_reply){.status = 400, .code = "SlowDown"};
    CHECK(s3_throttled(&r));
    CHECK(s3_transient(&r));
    r = (struct s3_reply){.status = 403, .code = "ExpiredToken", .refreshable = true};
    CHECK(s3_transient(&r));
    r.refreshable = false;
    CHECK(!s3_transient(&r));
    r = (struct s3_reply){.status = 429};
    CHECK(s3_throttled(&r));
    r.status = 503;
    CHECK(s3_throttled(&r));

    time_t before = s3_clock();
    r = (struct s3_reply){.status = 403, .code = "RequestTimeTooSkewed"};
    CHECK(!s3_clock_corrected(&r, "j", "b")); /* S3's time not said */
    CHECK(s3_clock() - before <= 1);
    r.server_time = time(NULL) + 3600;
    CHECK(s3_clock_corrected(&r, "j", "b"));
    CHECK(s3_clock() - time(NULL) >= 3599 && s3_clock() - time(NULL) <= 3601);
    r = (struct s3_reply){.status = 403, .code = "AccessDenied", .server_time = time(NULL)};
    CHECK(!s3_clock_corrected(&r, "j", "b"));
    r = (struct s3_reply){.status = 403, .code = "RequestTimeTooSkewed", .server_time = time(NULL)};
    CHECK(s3_clock_corrected(&r, "j", "b")); /* back to this host's clock */
    CHECK(s3_clock() - time(NULL) <= 1);
}

/* A redirect that names the region the request was signed for is not followed (S3's DNS catching
 * up with a new bucket: s3_transient), one that names another is; both known without a request. */
static void test_redirect_named_region(void)
{
    struct s3_config aws = {.region = "us-east-1"};
    struct s3_object o = {"pixq-test", NULL, "k"};
    struct err e = {{0}};
    struct s3_reply r = {.status = 307, .region = "us-east-1"};
    CHECK(!s3_redirect_region(NULL, &aws, &o, 0, &r, &e));
    CHECK(s3_transient(&r));
    r = (struct s3_reply){.status = 301, .region = "eu-west-1"};
    CHECK(s3_redirect_region(NULL, &aws, &o, 0, &r, &e));
    CHECK_STR(r.region, "eu-west-1");
    o.region = "eu-west-1"; /* the object's own region is the one signed for */
    CHECK(!s3_redirect_region(NULL, &aws, &o, 0, &r, &e));
    r = (struct s3_reply){.status = 403, .code = "AccessDenied"}; /* says nothing of regions */
    CHECK(!s3_redirect_region(NULL, &aws, &o, 0, &r, &e));
}

/* `out` holding `n` bytes `c` and a NUL. */
static char *filled(char *out, char c, size_t n)
{
    memset(out, c, n);
    out[n] = '\0';
    return out;
}

/* The edges of names: a region of 32 bytes and no more, letters, digits and '-' only; a bucket of
 * 63 bytes and no more; keys with a "." or ".." segment refused; the region an object names. */
static void test_name_edges(void)
{
    char name[70];
    CHECK(s3_valid_region(filled(name, 'a', 32)));
    CHECK(!s3_valid_region(filled(name, 'a', 33)));
    CHECK(s3_valid_region("eu-west-1"));
    CHECK(!s3_valid_region("eu.west-1"));
    CHECK(!s3_valid_region(""));
    CHECK(s3_valid_bucket(filled(name, 'b', 63)));
    CHECK(!s3_valid_bucket(filled(name, 'b', 64)));

    struct s3_config aws = {.region = "us-east-1"};
    check_url(&aws, "pixq-test", "a/./b.jpg", NULL);
    check_url(&aws, "pixq-test", "../other/k", NULL);
    check_url(&aws, "pixq-test", "a/..", NULL);
    check_url(&aws, "pixq-test", "a/.../b..c/.d",
              "https://pixq-test.s3.amazonaws.com/a/.../b..c/.d");
    struct s3_object o = {.bucket = "pixq-test", .key = "k", .region = ""};
    struct buf url;
    buf_init(&url, 0);
    struct err e = {{0}};
    CHECK_INT(s3_object_url(&aws, &o, &url, &e), 0); /* an empty region: the configuration's */
    CHECK_STR(url.data, "https://pixq-test.s3.amazonaws.com/k");
    o.region = "ap-south-1";
    CHECK_INT(s3_object_url(&aws, &o, &url, &e), 0);
    CHECK_STR(url.data, "https://pixq-test.s3.ap-south-1.amazonaws.com/k");
    buf_finish(&url);
    /* an endpoint's "/" is no part of its host; a dotted bucket over http keeps the virtual host
     * (no certificate to break) */
    struct s3_config local = {.endpoint = "http://127.0.0.1:9000/", .region = "us-east-1"};
    check_url(&local, "pixq-test", "k", "http://pixq-test.127.0.0.1:9000/k");
    check_url(&local, "a.b.c", "k", "http://a.b.c.127.0.0.1:9000/k");
    struct s3_config tls = {.endpoint = "https://minio.internal:9000", .region = "us-east-1"};
    check_url(&tls, "a.b.c", "k", "https://minio.internal:9000/a.b.c/k");
    /* 400 PermanentRedirect names the region too */
    struct s3_reply r = {.status = 400, .code = "PermanentRedirect", .region = "eu-west-1"};
    CHECK(s3_wrong_region(&r));
}

/* A message of exactly the buffer's size is cut by one byte for its NUL; 0x1f is a control byte. */
static void test_error_message_edges(void)
{
    char out[8];
    s3_error_message("<Message>12345678</Message>", out, sizeof out);
    CHECK_STR(out, "1234567");
    s3_error_message("<Message>1234567</Message>", out, sizeof out);
    CHECK_STR(out, "1234567");
    s3_error_message("<Message>a\x1f"
                     "b\x20"
                     "c</Message>",
                     out, sizeof out);
    CHECK_STR(out, "a b c");
}

/* A keep-alive server on a loopback port: each connection it accepts is counted (a byte to the
 * pipe `conns`) and served by a process of its own, a 200 to every request, until it closes. */
struct keepalive {
    pid_t pid;
    int port;
    int conns;
};

static void keepalive_conn(int c)
{
    char req[8192];
    size_t got = 0;
    ssize_t r;
    while ((r = read(c, req + got, sizeof req - 1 - got)) > 0) {
        got += (size_t)r;
        req[got] = '\0';
        char *end;
        while ((end = strstr(req, "\r\n\r\n")) != NULL) { /* HEADs: no body */
            static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            if (write(c, ok, sizeof ok - 1) < 0) {
                _exit(0);
            }
            got -= (size_t)(end + 4 - req);
            memmove(req, end + 4, got + 1);
        }
        if (got == sizeof req - 1) {
            _exit(0);
        }
    }
    _exit(0);
}

static void keepalive_start(struct keepalive *k)
{
    int p[2], fd = loopback_listen(&k->port);
    CHECK(fd >= 0 && pipe(p) == 0);
    k->pid = fork();
    if (k->pid == 0) {
        setpgid(0, 0);
        close(p[0]);
        for (;;) {
            int c = accept(fd, NULL, NULL);
            if (c < 0 || write(p[1], "c", 1) < 0) {
                _exit(0);
            }
            if (fork() == 0) {
                keepalive_conn(c);
            }
            close(c);
        }
    }
    setpgid(k->pid, k->pid);
    close(p[1]);
    close(fd);
    k->conns = p[0];
}

/* Stops the server and its connections' processes; how many connections it accepted. */
static int keepalive_finish(struct keepalive *k)
{
    kill(-k->pid, SIGKILL);
    waitpid(k->pid, NULL, 0);
    char seen[64];
    ssize_t n = read(k->conns, seen, sizeof seen);
    close(k->conns);
    return n > 0 ? (int)n : 0;
}

static int head(struct http *h, const struct keepalive *k, long *last_used, long max_idle_ms)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", k->port);
    const struct s3_config c = {.endpoint = endpoint,
                                .path_style = true,
                                .region = "us-east-1",
                                .access_key = "AKIDTEST",
                                .secret_key = "secret",
                                .connect_timeout_ms = 5000,
                                .timeout_ms = 5000,
                                .max_idle_ms = max_idle_ms,
                                .last_used_ms = last_used};
    const struct s3_object o = {"pixq-test", NULL, "k"};
    struct s3_reply r;
    struct err e = {{0}};
    int rc = s3_head(h, &c, &o, time(NULL), &r, &e);
    if (rc != 0) {
        fprintf(stderr, "HEAD: %s\n", e.msg);
    }
    return rc;
}

/* PIXQ_S3_IDLE_MS holds for each connection: one to host A idle 1.6 s, while host B's took a
 * request every 0.2 s, is not reused past a limit of 1 s (with virtual-host addressing each
 * bucket is a host of its own). One idle 0.2 s is. */
static void test_idle_connection_per_host(void)
{
    struct keepalive a, b;
    keepalive_start(&a);
    keepalive_start(&b);
    struct err e = {{0}};
    struct http *h = http_create(&e);
    CHECK(h != NULL);
    long last_used = 0; /* one for the process's S3 requests, as the worker's */
    CHECK_INT(head(h, &a, &last_used, 1000), 0);
    for (int i = 0; i < 8; i++) {
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
        CHECK_INT(head(h, &b, &last_used, 1000), 0);
    }
    CHECK_INT(head(h, &a, &last_used, 1000), 0); /* idle 1.6 s: a new connection */
    CHECK_INT(head(h, &a, &last_used, 1000), 0); /* idle a moment: that one again */
    http_destroy(h);
    CHECK_INT(keepalive_finish(&a), 2);
    CHECK_INT(keepalive_finish(&b), 1);
}

/* A one-answer S3 on a loopback port, served by a process of its own: each request's head goes to
 * the pipe `log` (a NUL after each), a body of its Content-Length is read (after "100 Continue"
 * when asked, unless `mute_continue`), then `answer` is written and the connection closed. */
struct stub {
    pid_t pid;
    int port;
    int log;
    char endpoint[64];
};

/* When set, the stub renames the first over the second before it answers (once: then the first
 * is gone): a credentials file rewritten while the request was on its way. */
static const char *stub_swap[2];

/* Reads one request's head into `req` (`cap` bytes), and in *got how many bytes were read (the
 * body's first ones with it); the head's length, or 0 at EOF or when it is too long. */
static size_t stub_read_head(int c, char *req, size_t cap, size_t *got)
{
    for (*got = 0; *got < cap - 1;) {
        ssize_t r = read(c, req + *got, cap - 1 - *got);
        if (r <= 0) {
            return 0;
        }
        *got += (size_t)r;
        req[*got] = '\0';
        char *end = strstr(req, "\r\n\r\n");
        if (end != NULL) {
            return (size_t)(end + 4 - req);
        }
    }
    return 0;
}

static void stub_serve(int c, const char *answer, bool mute_continue, int log)
{
    char req[32 * 1024], body[4096];
    size_t got, head = stub_read_head(c, req, sizeof req, &got);
    if (head == 0 || write(log, req, head) < 0 || write(log, "", 1) < 0) {
        return;
    }
    const char *cl = strstr(req, "\r\nContent-Length: ");
    long left = cl != NULL ? strtol(cl + 18, NULL, 10) : 0;
    left -= (long)(got - head); /* body bytes read with the head */
    if (left > 0 && strstr(req, "\r\nExpect: 100-continue") != NULL && !mute_continue) {
        static const char go[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (write(c, go, sizeof go - 1) < 0) {
            return;
        }
    }
    for (ssize_t r = 1; left > 0 && r > 0; left -= r) {
        r = read(c, body, sizeof body);
    }
    if (stub_swap[0] != NULL) {
        rename(stub_swap[0], stub_swap[1]);
    }
    if (write(c, answer, strlen(answer)) < 0) {
        return;
    }
}

static void stub_start(struct stub *s, const char *answer, bool mute_continue)
{
    int p[2], fd = loopback_listen(&s->port);
    CHECK(fd >= 0 && pipe(p) == 0);
    snprintf(s->endpoint, sizeof s->endpoint, "http://127.0.0.1:%d", s->port);
    s->pid = fork();
    if (s->pid == 0) {
        close(p[0]);
        for (;;) {
            int c = accept(fd, NULL, NULL);
            if (c < 0) {
                _exit(0);
            }
            stub_serve(c, answer, mute_continue, p[1]);
            close(c);
        }
    }
    close(p[1]);
    close(fd);
    s->log = p[0];
}

/* Stops the stub; the heads of the requests it took, one after another, in `heads` (`cap`
 * bytes, NULs between them as spaces); how many. */
static int stub_finish(struct stub *s, char *heads, size_t cap)
{
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    size_t got = 0;
    for (ssize_t r = 1; r > 0 && got < cap - 1; got += (size_t)r) {
        r = read(s->log, heads + got, cap - 1 - got);
        r = r < 0 ? 0 : r;
    }
    close(s->log);
    heads[got] = '\0';
    int n = 0;
    for (size_t i = 0; i < got; i++) {
        n += heads[i] == '\0';
        heads[i] = heads[i] == '\0' ? ' ' : heads[i];
    }
    return n;
}

static struct s3_config stub_config(const struct stub *s)
{
    return (struct s3_config){.endpoint = s->endpoint,
                              .path_style = true,
                              .region = "us-east-1",
                              .access_key = "AKIDTEST",
                              .secret_key = "secret",
                              .connect_timeout_ms = 5000,
                              .timeout_ms = 5000};
}
/* Writes into `out` (`cap` bytes) an answer of status line `status`, the header lines `headers`
 * ("" or "Name: value\r\n"...) and `body` with its Content-Length; returns `out`. */
static const char *answer_of(char *out, size_t cap, const char *status, const char *headers,
                             const char *body)
{
    snprintf(out, cap, "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n%s", status, headers,
             strlen(body), body);
    return out;
}

/* A final answer: its status, S3's code and message in the error after the URL, which a long key
 * has cut to leave them room. */
static void test_stub_final_answer(void)
{
    struct stub s;
    char heads[4096], key[1001], answer[512];
    stub_start(
        &s,
        answer_of(answer, sizeof answer, "403 Forbidden", "",
                  "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"),
        false);
    struct s3_config c = stub_config(&s);
    struct s3_object o = {"pixq-test", NULL, filled(key, 'k', 1000)};
    struct err e = {{0}};
    struct http *h = http_create(&e);
    struct buf out;
    struct s3_reply r;
    buf_init(&out, 0);
    CHECK_INT(s3_get(h, &c, &o, 1024, time(NULL), &out, &r, &e), -1);
    CHECK_INT(r.status, 403);
    CHECK_STR(r.code, "AccessDenied");
    CHECK(!r.not_sent && !s3_transient(&r));
    CHECK(strncmp(e.msg, "S3 GET http://127.0.0.1:", 24) == 0);
    CHECK(strstr(e.msg, "kkk...: HTTP 403 AccessDenied: Access Denied") != NULL);
    http_destroy(h);
    buf_finish(&out);
    CHECK_INT(stub_finish(&s, heads, sizeof heads), 1);
    CHECK(strncmp(heads, "GET /pixq-test/kkk", 18) == 0);
}

/* Answers `answer` to one GET of pixq-test/k (at most `max_bytes`): its result, the reply in *r. */
static int stub_get(const char *answer, size_t max_bytes, struct s3_reply *r, struct err *e)
{
    struct stub s;
    char heads[4096];
    stub_start(&s, answer, false);
    struct s3_config c = stub_config(&s);
    struct s3_object o = {"pixq-test", NULL, "k"};
    struct http *h = http_create(e);
    struct buf out;
    buf_init(&out, 0);
    int rc = s3_get(h, &c, &o, max_bytes, time(NULL), &out, r, e);
    http_destroy(h);
    buf_finish(&out);
    CHECK_INT(stub_finish(&s, heads, sizeof heads), 1);
    return rc;
}

/* Where the bucket lives: x-amz-bucket-region first, else the XML's <Region>; a code too long
 * for the reply is none, not a prefix of it. */
static void test_stub_region_and_code(void)
{
    struct s3_reply r;
    struct err e = {{0}};
    char a[512], body[256], code[65];
    CHECK_INT(stub_get(answer_of(a, sizeof a, "400 Bad Request", "",
                                 "<Error><Code>AuthorizationHeaderMalformed</Code>"
                                 "<Region>eu-west-1</Region></Error>"),
                       1024, &r, &e),
              -1);
    CHECK_STR(r.region, "eu-west-1");
    CHECK(s3_wrong_region(&r));
    CHECK_INT(stub_get(answer_of(a, sizeof a, "301 Moved Permanently",
                                 "x-amz-bucket-region: eu-central-1\r\n",
                                 "<Error><Region>eu-west-1</Region></Error>"),
                       1024, &r, &e),
              -1);
    CHECK_STR(r.region, "eu-central-1");
    snprintf(body, sizeof body, "<Error><Code>%s</Code></Error>", filled(code, 'C', 64));
    CHECK_INT(stub_get(answer_of(a, sizeof a, "400 Bad Request", "", body), 1024, &r, &e), -1);
    CHECK_INT(r.status, 400);
    CHECK_STR(r.code, "");
}

/* A 2xx that is not 200 is a success; an object over the caller's limit is S3's answer (its
 * 2xx, not retried); a 200 whose body was cut off is no answer (retried). */
static void test_stub_body_answers(void)
{
    struct s3_reply r;
    struct err e = {{0}};
    char a[512];
    CHECK_INT(stub_get(answer_of(a, sizeof a, "203 OK", "", "ok"), 1024, &r, &e), 0);
    CHECK_INT(r.status, 203);
    CHECK_INT(stub_get(answer_of(a, sizeof a, "200 OK", "", "01234567890123456789"), 10, &r, &e),
              -1);
    CHECK_INT(r.status, 200);
    CHECK(!s3_transient(&r) && !r.not_sent);
    CHECK(strncmp(e.msg, "S3 GET http://127.0.0.1:", 24) == 0);
    CHECK_INT(stub_get("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789", 1024, &r, &e),
              -1);
    CHECK_INT(r.status, 0);
    CHECK(s3_transient(&r) && !r.not_sent);
}

/* Whether the lowercase form of header `name` is in the SignedHeaders list `list` ("a;b;c"). */
static bool in_signed_list(const char *list, const char *name)
{
    char want[256];
    size_t n = 0;
    for (; name[n] != '\0' && n < sizeof want - 3; n++) {
        want[n + 1] = (char)tolower((unsigned char)name[n]);
    }
    want[0] = ';';
    want[n + 1] = ';';
    want[n + 2] = '\0';
    char all[4096];
    snprintf(all, sizeof all, ";%.*s;", (int)strcspn(list, ","), list);
    return strstr(all, want) != NULL;
}

/* Checks the Authorization of the request whose head is `head` (one request): signing what was
 * sent, the headers SignedHeaders names, with the stubs' keys for `region`, gives the same. */
static void check_signed(const char *head, const char *region)
{
    char copy[8192], method[16], path[4096], authz[SIGV4_AUTHZ_MAX];
    const char *sent = "", *list = "", *date = "", *hash = "";
    struct sigv4_header h[SIGV4_MAX_HEADERS];
    size_t n = 0;
    snprintf(copy, sizeof copy, "%s", head);
    CHECK(sscanf(copy, "%15s %4095s", method, path) == 2);
    for (char *line = strstr(copy, "\r\n"); line != NULL && line[2] != '\r';) {
        char *name = line + 2, *colon = strstr(name, ": ");
        line = strstr(name, "\r\n");
        if (colon == NULL || line == NULL || n == SIGV4_MAX_HEADERS) {
            break;
        }
        *colon = *line = '\0';
        const char *value = colon + 2;
        sent = strcmp(name, "Authorization") == 0 ? value : sent;
        list = strcmp(name, "Authorization") == 0 ? strstr(value, "SignedHeaders=") + 14 : list;
        date = strcmp(name, "x-amz-date") == 0 ? value : date;
        hash = strcmp(name, "x-amz-content-sha256") == 0 ? value : hash;
        h[n++] = (struct sigv4_header){name, value};
    }
    size_t signed_n = 0;
    for (size_t i = 0; i < n; i++) {
        if (in_signed_list(list, h[i].name)) {
            h[signed_n++] = h[i];
        }
    }
    const struct sigv4_request req = {method, path, NULL, h, signed_n, hash};
    const struct sigv4_key key = {"AKIDTEST", "secret", region, "s3"};
    struct err e = {{0}};
    CHECK_INT(sigv4_sign(&req, &key, date, SIGV4_S3, authz, NULL, NULL, &e), 0);
    CHECK_STR(sent, authz);
}

/* PUTs `len` bytes of "x" with `n` headers x-amz-meta-N as `c` says, to a stub answering 200 (or
 * leaving "Expect: 100-continue" unanswered when `mute`); the result, the request's head in
 * `head` ("" if none came). */
static int stub_put(struct s3_config *c, size_t len, size_t n, bool mute, char *head, size_t cap,
                    struct s3_reply *r, struct err *e)
{
    static char names[HTTP_MAX_HEADERS + 1][32], body[4096];
    struct http_header extra[HTTP_MAX_HEADERS + 1];
    for (size_t i = 0; i < n && i < HTTP_MAX_HEADERS + 1; i++) {
        snprintf(names[i], sizeof names[i], "x-amz-meta-%zu", i);
        extra[i] = (struct http_header){names[i], "v"};
    }
    memset(body, 'x', sizeof body);
    struct stub s;
    char a[128];
    stub_start(&s, answer_of(a, sizeof a, "200 OK", "", ""), mute);
    c->endpoint = s.endpoint;
    struct s3_object o = {"pixq-test", NULL, "k"};
    struct http *h = http_create(e);
    int rc = s3_put(h, c, &o, body, len, extra, n, time(NULL), r, e);
    http_destroy(h);
    int heads = stub_finish(&s, head, cap);
    CHECK_INT(heads, r->not_sent ? 0 : 1);
    if (rc == 0) {
        char hash[HASH_SHA256_HEX], line[128];
        hash_sha256_hex(body, len, hash);
        snprintf(line, sizeof line, "\r\nx-amz-content-sha256: %s\r\n", hash);
        CHECK(strstr(head, line) != NULL);
        check_signed(head, "us-east-1");
    }
    return rc;
}

/* The security token is sent and signed when there is one, and no empty header when there is
 * none; a request without keys is never sent. */
static void test_stub_credentials(void)
{
    struct stub unused = {.endpoint = ""};
    struct s3_config c = stub_config(&unused);
    struct s3_reply r;
    struct err e = {{0}};
    char head[8192];
    static const char *const no_token[] = {NULL, ""};
    for (size_t i = 0; i < sizeof no_token / sizeof no_token[0]; i++) {
        c.session_token = no_token[i];
        CHECK_INT(stub_put(&c, 1, 0, false, head, sizeof head, &r, &e), 0);
        CHECK(strstr(head, "x-amz-security-token") == NULL);
        CHECK(strstr(head, "SignedHeaders=host;x-amz-content-sha256;x-amz-date, ") != NULL);
    }
    c.session_token = "tok";
    CHECK_INT(stub_put(&c, 1, 0, false, head, sizeof head, &r, &e), 0);
    CHECK(strstr(head, "\r\nx-amz-security-token: tok\r\n") != NULL);
    CHECK(
        strstr(head, "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "));
    static const char *const none[][2] = {{"", "secret"}, {"AKIDTEST", ""}, {NULL, "secret"}};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        c.access_key = none[i][0];
        c.secret_key = none[i][1];
        CHECK_INT(stub_put(&c, 1, 0, false, head, sizeof head, &r, &e), -1);
        CHECK(r.not_sent && !s3_transient(&r));
        CHECK(strstr(e.msg, "no S3 credentials") != NULL);
    }
}

/* HTTP_MAX_HEADERS - 8 extra headers are the most, with a session token too: all are sent and
 * signed; one more is refused before anything is sent. */
static void test_stub_header_limit(void)
{
    struct stub unused = {.endpoint = ""};
    struct s3_config c = stub_config(&unused);
    struct s3_reply r;
    struct err e = {{0}};
    char head[16384];
    c.session_token = "tok";
    CHECK_INT(stub_put(&c, 1, HTTP_MAX_HEADERS - 8, false, head, sizeof head, &r, &e), 0);
    CHECK(strstr(head, "\r\nx-amz-meta-55: v\r\n") != NULL);
    CHECK(strstr(head, ";x-amz-meta-55;") != NULL);
    CHECK_INT(stub_put(&c, 1, HTTP_MAX_HEADERS - 7, false, head, sizeof head, &r, &e), -1);
    CHECK(r.not_sent && strstr(e.msg, "too many headers") != NULL);
    CHECK_INT(stub_put(&c, 1, HTTP_MAX_HEADERS + 1, false, head, sizeof head, &r, &e), -1);
    CHECK(r.not_sent && strstr(e.msg, "too many headers") != NULL);
}

/* A PUT of PIXQ_S3_EXPECT_CONTINUE_BYTES or more asks first, a smaller one does not; a store that
 * never answers the question gets the body after half the request's time at most. */
static void test_stub_expect_continue(void)
{
    struct stub unused = {.endpoint = ""};
    struct s3_config c = stub_config(&unused);
    struct s3_reply r;
    struct err e = {{0}};
    char head[8192];
    c.expect_continue_bytes = 100;
    c.expect_continue_ms = 1000;
    CHECK_INT(stub_put(&c, 100, 0, false, head, sizeof head, &r, &e), 0);
    CHECK(strstr(head, "\r\nExpect: 100-continue\r\n") != NULL);
    CHECK_INT(stub_put(&c, 99, 0, false, head, sizeof head, &r, &e), 0);
    CHECK(strstr(head, "Expect:") == NULL);
    c.expect_continue_ms = 60000; /* longer than the request may take */
    c.timeout_ms = 2000;
    CHECK_INT(stub_put(&c, 4096, 0, true, head, sizeof head, &r, &e), 0);
    CHECK(strstr(head, "\r\nExpect: 100-continue\r\n") != NULL);
}

/* A bucket's region asked of S3 with a HEAD of the bucket: followed when named; when that HEAD
 * failed for a passing reason, its answer is the one to retry. */
static void test_stub_bucket_region(void)
{
    char a[256], heads[4096];
    struct stub s;
    struct s3_object o = {"pixq-test", NULL, "k"};
    struct err e = {{0}};
    struct http *h = http_create(&e);
    const struct s3_reply opt_in = {.status = 400, .code = "IllegalLocationConstraintException"};
    struct s3_reply r = opt_in;
    stub_start(&s, answer_of(a, sizeof a, "200 OK", "x-amz-bucket-region: af-south-1\r\n", ""),
               false);
    struct s3_config c = stub_config(&s);
    CHECK(s3_redirect_region(h, &c, &o, time(NULL), &r, &e));
    CHECK_STR(r.region, "af-south-1");
    CHECK_INT(stub_finish(&s, heads, sizeof heads), 1);
    CHECK(strncmp(heads, "HEAD /pixq-test HTTP/1.1\r\n", 26) == 0);
    r = opt_in;
    stub_start(&s, answer_of(a, sizeof a, "503 Slow Down", "", ""), false);
    c = stub_config(&s);
    CHECK(!s3_redirect_region(h, &c, &o, time(NULL), &r, &e));
    CHECK_INT(r.status, 503);
    CHECK(s3_transient(&r));
    CHECK(strstr(e.msg, "finding the bucket's region: S3 HEAD") != NULL);
    CHECK_INT(stub_finish(&s, heads, sizeof heads), 1);
    http_destroy(h);
}

/* PIXQ_S3_IDLE_MS=0 reuses connections however long they were idle. */
static void test_idle_zero_reuses(void)
{
    struct keepalive a;
    keepalive_start(&a);
    struct err e = {{0}};
    struct http *h = http_create(&e);
    long last_used = 0;
    CHECK_INT(head(h, &a, &last_used, 0), 0);
    struct timespec pause = {0, 50 * 1000000L};
    nanosleep(&pause, NULL);
    CHECK_INT(head(h, &a, &last_used, 0), 0);
    http_destroy(h);
    CHECK_INT(keepalive_finish(&a), 1);
}

/* Writes a credentials file of the default profile with `access_key` at `path`. */
static void write_keys(const char *path, const char *access_key)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fprintf(f, "[default]\naws_access_key_id=%s\naws_secret_access_key=S\n", access_key);
        fclose(f);
    }
}

/* With keys from a file rewritten between the look and S3's answer: a HEAD's bare 403 (no body to
 * say why) may be the keys refused, and is sent once more with the new ones; another request's
 * bare 403 is not (S3's body would have said so). */
static void test_stub_keys_rewritten(void)
{
    char dir[] = "/tmp/pixq-s3-XXXXXX", path[512], next[520], heads[8192];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/credentials", dir);
    snprintf(next, sizeof next, "%s.next", path);
    struct awscreds *creds = malloc(sizeof *creds);
    struct cfg *cfg = malloc(sizeof *cfg);
    cfg_defaults(cfg);
    snprintf(cfg->aws_shared_credentials_file, sizeof cfg->aws_shared_credentials_file, "%s", path);
    cfg->aws_profile[0] = '\0';
    struct err e = {{0}};
    write_keys(path, "AKID1");
    CHECK_INT(awscreds_init(creds, cfg, true, &e), 0);
    static const char *const methods[] = {"HEAD", "PUT", "GET"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        struct stub s;
        struct s3_reply r;
        char key[16];
        snprintf(key, sizeof key, "AKID%zu", i + 2);
        write_keys(next, key);
        stub_swap[0] = next, stub_swap[1] = path;
        stub_start(&s, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", false);
        stub_swap[0] = NULL;
        struct s3_config c = stub_config(&s);
        c.creds = creds;
        struct s3_object o = {"pixq-test", NULL, "k"};
        struct http *h = http_create(&e);
        struct buf out;
        buf_init(&out, 0);
        int rc = i == 0   ? s3_head(h, &c, &o, time(NULL), &r, &e)
                 : i == 1 ? s3_put(h, &c, &o, "x", 1, NULL, 0, time(NULL), &r, &e)
                          : s3_get(h, &c, &o, 1024, time(NULL), &out, &r, &e);
        CHECK_INT(rc, -1);
        CHECK_INT(r.status, 403);
        CHECK(!r.refreshable); /* a file's keys refused: only an expired token waits for it */
        http_destroy(h);
        buf_finish(&out);
        CHECK_INT(stub_finish(&s, heads, sizeof heads), i == 0 ? 2 : 1);
        CHECK(strstr(heads, "Credential=AKID") != NULL);
        CHECK((strstr(heads, key) != NULL) == (i == 0)); /* sent again with the new keys */
    }
    unlink(next);
    unlink(path);
    CHECK_INT(rmdir(dir), 0);
    free(creds);
    free(cfg);
}

/* A request is signed for its object's region, else the configured one, and the signature covers
 * the request as sent: signing the path and signed headers the stub received gives the same. */
static void test_stub_signed_region(void)
{
    static const char *const regions[][2] = {{NULL, "/us-east-1/s3/aws4_request, "},
                                             {"", "/us-east-1/s3/aws4_request, "},
                                             {"eu-west-1", "/eu-west-1/s3/aws4_request, "}};
    for (size_t i = 0; i < sizeof regions / sizeof regions[0]; i++) {
        struct stub s;
        char a[128], heads[4096];
        stub_start(&s, answer_of(a, sizeof a, "200 OK", "", ""), false);
        struct s3_config c = stub_config(&s);
        struct s3_object o = {"pixq-test", regions[i][0], "k"};
        struct s3_reply r;
        struct err e = {{0}};
        struct http *h = http_create(&e);
        CHECK_INT(s3_head(h, &c, &o, time(NULL), &r, &e), 0);
        http_destroy(h);
        CHECK_INT(stub_finish(&s, heads, sizeof heads), 1);
        CHECK(strstr(heads, regions[i][1]) != NULL);
        check_signed(heads,
                     regions[i][0] != NULL && regions[i][0][0] ? regions[i][0] : "us-east-1");
    }
}

/* Sends one `method` of pixq-test/k with `creds` to a stub answering `answer`; the reply in *r. */
static void stub_with_creds(struct awscreds *creds, const char *method, const char *answer,
                            struct s3_reply *r)
{
    struct stub s;
    char heads[4096];
    struct err e = {{0}};
    stub_start(&s, answer, false);
    struct s3_config c = stub_config(&s);
    c.creds = creds;
    struct s3_object o = {"pixq-test", NULL, "k"};
    struct http *h = http_create(&e);
    struct buf out;
    buf_init(&out, 0);
    int rc = strcmp(method, "HEAD") == 0 ? s3_head(h, &c, &o, time(NULL), r, &e)
                                         : s3_get(h, &c, &o, 1024, time(NULL), &out, r, &e);
    CHECK_INT(rc, -1);
    http_destroy(h);
    buf_finish(&out);
    CHECK(stub_finish(&s, heads, sizeof heads) >= 1);
}

/* Keys from a container credentials endpoint: a stub started in `meta` that serves one pair, and
 * its first fetch. free() the keys and *cfg. */
static struct awscreds *endpoint_creds(struct stub *meta, struct cfg **cfg)
{
    char a[256];
    stub_start(meta,
               answer_of(a, sizeof a, "200 OK", "Content-Type: application/json\r\n",
                         "{\"AccessKeyId\":\"AKIDTEST\",\"SecretAccessKey\":\"secret\"}"),
               false);
    struct awscreds *creds = malloc(sizeof *creds);
    *cfg = malloc(sizeof **cfg);
    cfg_defaults(*cfg);
    snprintf((*cfg)->aws_container_credentials_full_uri,
             sizeof(*cfg)->aws_container_credentials_full_uri, "%s/creds", meta->endpoint);
    struct err e = {{0}};
    CHECK_INT(awscreds_init_endpoint(creds, *cfg, &e), 0);
    CHECK(creds->loaded);
    return creds;
}

/* With keys from an endpoint: S3 refusing them makes the reply refreshable (the endpoint may give
 * others), but not a HEAD's bare 403 (as likely a bucket of another account) nor
 * SignatureDoesNotMatch (rather the request's own fault). */
static void test_stub_endpoint_keys(void)
{
    struct stub meta;
    struct cfg *cfg;
    struct awscreds *creds = endpoint_creds(&meta, &cfg);
    char a[256], heads[4096];
    struct s3_reply r;
    stub_with_creds(creds, "HEAD", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &r);
    CHECK(!r.refreshable && !s3_transient(&r));
    static const char *const codes[][2] = {{"SignatureDoesNotMatch", "0"},
                                           {"InvalidAccessKeyId", "1"}};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "<Error><Code>%s</Code></Error>", codes[i][0]);
        stub_with_creds(creds, "GET", answer_of(a, sizeof a, "403 Forbidden", "", body), &r);
        CHECK_STR(r.code, codes[i][0]);
        CHECK_INT(r.refreshable, codes[i][1][0] == '1');
    }
    stub_finish(&meta, heads, sizeof heads);
    free(creds);
    free(cfg);
}

/* With keys from an endpoint that are due but have not expired, a request with less time left
 * than a fetch may take goes with them (no fetch); with no time left, nothing is fetched, not
 * even when forced (a fetch given 0 ms would have no limit at all); with the time, the due keys
 * are fetched. */
static void test_endpoint_keys_within_budget(void)
{
    struct stub meta;
    struct cfg *cfg;
    struct awscreds *creds = endpoint_creds(&meta, &cfg); /* the first fetch */
    char heads[4096];
    struct err e = {{0}};
    long now = clock_mono_ms();
    creds->due_ms = now - 1;
    creds->next_try_ms = now - 1;
    creds->expires_ms = now + 60000;
    long short_of = creds->meta.timeout_ms - 1;
    CHECK_INT(awscreds_refresh_within(creds, false, time(NULL), short_of, &e), 0);
    CHECK_INT(awscreds_refresh_within(creds, true, time(NULL), 0, &e), 0);
    /* as they were before: a fetch above would have moved them */
    creds->due_ms = creds->next_try_ms = clock_mono_ms() - 1;
    CHECK_INT(awscreds_refresh_within(creds, false, time(NULL), LONG_MAX, &e), 0); /* fetched */
    CHECK_INT(stub_finish(&meta, heads, sizeof heads), 2);
    free(creds);
    free(cfg);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_bucket_names();
    test_addressing();
    test_key_as_given();
    test_wrong_region();
    test_error_message();
    test_answers();
    test_redirect_named_region();
    test_name_edges();
    test_error_message_edges();
    test_idle_connection_per_host();
    test_idle_zero_reuses();
    test_stub_final_answer();
    test_stub_region_and_code();
    test_stub_body_answers();
    test_stub_credentials();
    test_stub_header_limit();
    test_stub_expect_continue();
    test_stub_bucket_region();
    test_stub_keys_rewritten();
    test_stub_signed_region();
    test_stub_endpoint_keys();
    test_endpoint_keys_within_budget();
    return check_summary("s3");
}
