/* test_s3: bucket names, the URL each object is addressed at, and S3 connections' reuse
 * (common/s3.c). */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "err.h"
#include "http.h"
#include "loopback.h"
#include "s3.h"

static void test_bucket_names(void)
{
    CHECK(s3_valid_bucket("pixq-test"));
    CHECK(s3_valid_bucket("a.b.c"));
    CHECK(s3_valid_bucket("My_Bucket")); /* legacy us-east-1 */
    CHECK(s3_legacy_bucket("My_Bucket"));
    CHECK(s3_legacy_bucket("UPPER"));
    CHECK(!s3_legacy_bucket("pixq-test"));
    CHECK(!s3_valid_bucket("ab"));
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

static int head(struct http *h, const struct keepalive *k, long *last_used)
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
                                .max_idle_ms = 1000,
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
    CHECK_INT(head(h, &a, &last_used), 0);
    for (int i = 0; i < 8; i++) {
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
        CHECK_INT(head(h, &b, &last_used), 0);
    }
    CHECK_INT(head(h, &a, &last_used), 0); /* idle 1.6 s: a new connection */
    CHECK_INT(head(h, &a, &last_used), 0); /* idle a moment: that one again */
    http_destroy(h);
    CHECK_INT(keepalive_finish(&a), 2);
    CHECK_INT(keepalive_finish(&b), 1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    test_bucket_names();
    test_addressing();
    test_wrong_region();
    test_error_message();
    test_answers();
    test_name_edges();
    test_error_message_edges();
    test_idle_connection_per_host();
    return check_summary("s3");
}
