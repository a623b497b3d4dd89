#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "check.h"
#include "loopback.h"
#include "rq.h"

static void test_urls(void)
{
    struct rq_url u;
    struct err e;
    CHECK_INT(rq_parse_url("redis://127.0.0.1:6379/0", &u, &e), 0);
    CHECK_STR(u.host, "127.0.0.1");
    CHECK_INT(u.port, 6379);
    CHECK_INT(u.db, 0);
    CHECK_STR(u.password, "");
    CHECK_INT(rq_parse_url("redis://alice:p%40ss@redis.internal:7000/3", &u, &e), 0);
    CHECK_STR(u.user, "alice");
    CHECK_STR(u.password, "p@ss");
    CHECK_STR(u.host, "redis.internal");
    CHECK_INT(u.port, 7000);
    CHECK_INT(u.db, 3);
    CHECK_INT(rq_parse_url("redis://:secret@h", &u, &e), 0);
    CHECK_STR(u.user, "");
    CHECK_STR(u.password, "secret");
    CHECK_INT(u.port, 6379);
    CHECK_INT(rq_parse_url("redis://onlypass@h:1", &u, &e), 0);
    CHECK_STR(u.password, "onlypass");
    CHECK_INT(rq_parse_url("unix:///run/redis.sock?db=2", &u, &e), 0);
    CHECK_STR(u.unix_path, "/run/redis.sock");
    CHECK_INT(u.db, 2);
    CHECK_INT(rq_parse_url("http://h:1", &u, &e), -1);
    CHECK_STR(e.msg, "PIXQ_REDIS_URL: must start with redis:// or unix://");
    CHECK_INT(rq_parse_url("rediss://default:pw@cache.internal:6380/0", &u, &e), -1);
    CHECK(strstr(e.msg, "rediss:// (Redis over TLS) is not supported") != NULL);
    CHECK(strstr(e.msg, "pw") == NULL);
    CHECK_INT(rq_parse_url("redis://h:99999", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://h:1/x", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://u:bad%zzpass@h", &u, &e), -1);
    CHECK(strstr(e.msg, "bad%zzpass") == NULL); /* never echoes the password */
    /* nor a piece of it: an unencoded '/' ends the authority early (the password's head read
     * as a port, its tail and the host as a database), and without an '@' a password is read
     * as a port */
    static const char *const slipped[] = {
        "redis://bob:s3/cret@h:1/0",
        "redis://:s3/cret@h:6379/0",
        "redis://bob:s3cret",
        "redis://:s3cret/x@h:6379/0",
    };
    for (size_t i = 0; i < sizeof slipped / sizeof slipped[0]; i++) {
        CHECK_INT(rq_parse_url(slipped[i], &u, &e), -1);
        if (strstr(e.msg, "s3") != NULL || strstr(e.msg, "cret") != NULL) {
            fprintf(stderr, "  %s: %s\n", slipped[i], e.msg);
            CHECK(false);
        }
    }
    CHECK_INT(rq_parse_url("redis://bob:s3/cret@h:1/0", &u, &e), -1);
    CHECK(strstr(e.msg, "%2F") != NULL); /* says what to do */
    CHECK_INT(rq_parse_url("unix://relative.sock", &u, &e), -1);
    /* an IPv6 literal in brackets, as in any URL */
    CHECK_INT(rq_parse_url("redis://u:pw@[::1]:6380/4", &u, &e), 0);
    CHECK_STR(u.host, "::1");
    CHECK_INT(u.port, 6380);
    CHECK_INT(u.db, 4);
    CHECK_STR(u.password, "pw");
    CHECK_INT(rq_parse_url("redis://[fd00:1::5]", &u, &e), 0);
    CHECK_STR(u.host, "fd00:1::5");
    CHECK_INT(u.port, 6379);
    CHECK_INT(rq_parse_url("redis://[::1]/2", &u, &e), 0);
    CHECK_INT(u.port, 6379);
    CHECK_INT(u.db, 2);
    CHECK_INT(rq_parse_url("redis://[::1:6379", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://[]:6379", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://[redis.internal]:6379", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://[::1]6379", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://[::1]:", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://[::1]:0", &u, &e), -1);
}

static void test_keys(void)
{
    char k[RQ_KEY_MAX];
    CHECK_INT(rq_key(k, sizeof k, "default", "jobs"), 0);
    CHECK_STR(k, "pixq:{default}:jobs");
    CHECK_INT(rq_key(k, 10, "default", "jobs"), -1);
}

/* Whether every redis.call() and redis.pcall() of `src` names its key as KEYS[n] (TIME takes
 * none): a key built inside a script would break Redis Cluster. Returns the number of calls, or
 * -1 on a bad one. */
static int count_declared_calls(const char *src)
{
    int calls = 0;
    for (const char *p = strstr(src, "call("); p != NULL; p = strstr(p + 1, "call(")) {
        bool call = p - src >= 6 && strncmp(p - 6, "redis.", 6) == 0;
        bool pcall = p - src >= 7 && strncmp(p - 7, "redis.p", 7) == 0;
        if (!call && !pcall) {
            continue;
        }
        const char *args = strchr(p, ',');
        const char *close = strchr(p, ')');
        calls++;
        if (strncmp(p, "call('TIME')", 12) == 0) {
            continue;
        }
        const char *end = args != NULL ? strchr(args, ']') : NULL;
        if (args == NULL || (close != NULL && close < args) || strncmp(args, ", KEYS[", 7) != 0 ||
            end == NULL || (end[1] != ',' && end[1] != ')')) {
            fprintf(stderr, "  (expected) undeclared key at: %.60s\n", p);
            return -1;
        }
    }
    return calls;
}

static void test_scripts_declare_keys(void)
{
    for (int s = 0; s < RQ_SCRIPT_COUNT; s++) {
        const char *src = rq_script_source((enum rq_script)s);
        CHECK(strstr(src, "-- KEYS[1]") != NULL); /* the header documents the keys */
        CHECK(count_declared_calls(src) > 0);
    }
    CHECK(count_declared_calls("redis.call('GET', 'pixq:{q}:x')") == -1);
    CHECK(count_declared_calls("redis.call('GET', KEYS[1] .. 'x')") == -1);
    CHECK(count_declared_calls("redis.call('GET', KEYS[1])") == 1);
    CHECK(count_declared_calls("redis.pcall('GET', KEYS[1])") == 1);
    CHECK(count_declared_calls("redis.pcall('GET', 'pixq:{q}:x')") == -1);
    CHECK(count_declared_calls("x = call('GET', 'k'); redis.call('TIME')") == 1);
}

/* Which set-up refusals end a worker rather than being waited out. */
static void test_refused_for_good(void)
{
    CHECK(rq_refused_for_good("redis AUTH refused: WRONGPASS invalid username-password pair"));
    CHECK(rq_refused_for_good("redis AUTH refused: ERR AUTH <password> called without any "
                              "password configured for the default user"));
    CHECK(rq_refused_for_good("redis SELECT refused: ERR DB index is out of range"));
    CHECK(rq_refused_for_good("redis SELECT refused: NOAUTH Authentication required."));
    CHECK(!rq_refused_for_good("redis SELECT refused: LOADING Redis is loading the dataset"));
    CHECK(!rq_refused_for_good("redis AUTH refused: BUSY Redis is busy running a script"));
    CHECK(!rq_refused_for_good("redis AUTH refused: ERR max number of clients reached"));
    CHECK(!rq_refused_for_good("redis SELECT refused: ERR upstream unavailable"));
    CHECK(rq_refused_for_good("redis AUTH refused: ERR Client sent AUTH, but no password is set"));
    CHECK(rq_refused_for_good("redis AUTH refused: ERR invalid password"));
    CHECK(!rq_refused_for_good("redis AUTH: Connection reset by peer"));
    CHECK(!rq_refused_for_good("cannot connect to redis at 127.0.0.1:1: Connection refused"));
}

/* What Redis adds to a script's error around the script's own message is stripped. */
static void test_clean_error(void)
{
    static const char *const cases[][2] = {
        {"NOREPLICAS Not enough good replicas to write. script: "
         "0831e2c9533e8cbed57da1d2a40c4d744e66cf6c, on @user_script:57.",
         "NOREPLICAS Not enough good replicas to write."},
        {"OOM command not allowed when used memory > 'maxmemory'. script: "
         "4eae107ee6a8971c22ae3f766040813387b8be6c, on @user_script:1.",
         "OOM command not allowed when used memory > 'maxmemory'."},
        {"ERR user_script:12: boom script: 82903a0434f1503e152f89c03c9acd881a0e8150, on "
         "@user_script:12.",
         "ERR boom"},
        {"ERR Error running script (call to f_0831e2c9533e8cbed57da1d2a40c4d744e66cf6c): "
         "@user_script:3: WRONGTYPE Operation against a key holding the wrong kind of value",
         "WRONGTYPE Operation against a key holding the wrong kind of value"},
        /* no script's: left alone */
        {"WRONGTYPE Operation against a key holding the wrong kind of value",
         "WRONGTYPE Operation against a key holding the wrong kind of value"},
        {"ERR the script: abc, on @user_script:1.", "ERR the script: abc, on @user_script:1."},
        {"ERR user_script: x", "ERR user_script: x"},
        /* Redis 6's words only at the start, Redis 7's only right after the first word */
        {"ERR my script (v2): @user_script:3: boom", "ERR my script (v2): @user_script:3: boom"},
        {"ERR ratelimited:7: user_script:5: boom", "ERR ratelimited:7: user_script:5: boom"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cases[i][0]);
        rq_clean_error(msg);
        CHECK_STR(msg, cases[i][1]);
    }
}

/* `out` holding `n` bytes `c` and a NUL. */
static char *filled(char *out, char c, size_t n)
{
    memset(out, c, n);
    out[n] = '\0';
    return out;
}

/* rq_parse_url() of the URL `before` `part` `after`. */
static int parse_with(struct rq_url *u, struct err *e, const char *before, const char *part,
                      const char *after)
{
    char url[700];
    snprintf(url, sizeof url, "%s%s%s", before, part, after);
    return rq_parse_url(url, u, e);
}

/* The edges of a URL's parts: %XX in either case and nothing else after '%', the last '@' ending
 * the user part, each part's size, the port's and database's ranges and trailing bytes. */
static void test_url_edges(void)
{
    struct rq_url u;
    struct err e;
    CHECK_INT(rq_parse_url("redis://u:p%4Fs%4fs%2a@h", &u, &e), 0);
    CHECK_STR(u.password, "pOsOs*");
    CHECK_INT(rq_parse_url("redis://u%3a1:pw@h", &u, &e), 0);
    CHECK_STR(u.user, "u:1");
    const char *bad_pct[] = {"redis://u:p%g0@h", "redis://u:p%4z@h", "redis://u:p%4@h",
                             "redis://p%@h"};
    for (size_t i = 0; i < sizeof bad_pct / sizeof bad_pct[0]; i++) {
        CHECK_INT(rq_parse_url(bad_pct[i], &u, &e), -1);
        CHECK(strstr(e.msg, "encoding") != NULL);
    }
    CHECK_INT(rq_parse_url("redis://u:p@ss@h:7/1", &u, &e), 0); /* an '@' in the password */
    CHECK_STR(u.user, "u");
    CHECK_STR(u.password, "p@ss");
    CHECK_STR(u.host, "h");
    CHECK_INT(u.port, 7);
    CHECK_INT(u.db, 1);
    /* the password's field holds 255 bytes, the host's and the socket path's too */
    char text[300];
    CHECK_INT(parse_with(&u, &e, "redis://u:", filled(text, 'p', 255), "@h"), 0);
    CHECK_INT((long)strlen(u.password), 255);
    CHECK_INT(parse_with(&u, &e, "redis://u:", filled(text, 'p', 256), "@h"), -1);
    CHECK_INT(parse_with(&u, &e, "redis://", filled(text, 'h', 255), ":1"), 0);
    CHECK_INT((long)strlen(u.host), 255);
    CHECK_INT(parse_with(&u, &e, "redis://", filled(text, 'h', 256), ":1"), -1);
    CHECK(strstr(e.msg, "missing or too long host") != NULL);
    CHECK_INT(parse_with(&u, &e, "unix:///", filled(text, 's', 254), ""), 0);
    CHECK_INT((long)strlen(u.unix_path), 255);
    CHECK_INT(parse_with(&u, &e, "unix:///", filled(text, 's', 255), ""), -1);
    const char *no_host[] = {"redis://:6379", "redis://", "redis://u:pw@:1", "redis:///0"};
    for (size_t i = 0; i < sizeof no_host / sizeof no_host[0]; i++) {
        CHECK_INT(rq_parse_url(no_host[i], &u, &e), -1);
        CHECK(strstr(e.msg, "missing or too long host") != NULL);
    }
    CHECK_INT(rq_parse_url("redis://[]:6379", &u, &e), -1);
    CHECK(strstr(e.msg, "goes in brackets") != NULL);
    CHECK_INT(rq_parse_url("redis://h:65535/10000", &u, &e), 0);
    CHECK_INT(u.port, 65535);
    CHECK_INT(u.db, 10000);
    CHECK_INT(rq_parse_url("redis://h:1/", &u, &e), 0); /* an empty database is 0 */
    CHECK_INT(u.db, 0);
    const char *bad[] = {"redis://h:65536", "redis://h:63x",          "redis://h/10001",
                         "redis://h/3x",    "unix:///run/r.sock?db=", "unix:///run/r.sock?db=3x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(rq_parse_url(bad[i], &u, &e), -1);
    }
    CHECK_INT(rq_parse_url("unix:///run/r.sock?database=2", &u, &e), -1);
    CHECK(strstr(e.msg, "only ?db=N") != NULL);
    /* no negative database, strtol's sign notwithstanding */
    CHECK_INT(rq_parse_url("redis://h/-1", &u, &e), -1);
    CHECK_INT(rq_parse_url("unix:///run/r.sock?db=-1", &u, &e), -1);
    /* a port of 15 bytes is read (zeros first), one of 16 is refused */
    CHECK_INT(rq_parse_url("redis://h:000000000006380", &u, &e), 0);
    CHECK_INT(u.port, 6380);
    CHECK_INT(rq_parse_url("redis://h:0000000000006380", &u, &e), -1);
    CHECK(strstr(e.msg, "bad port") != NULL);
    /* a lone '[' is no host, nor the start of an address that then goes on */
    static const char *const bracket[] = {"redis://[", "redis://u:pw@[", "redis://[/1"};
    for (size_t i = 0; i < sizeof bracket / sizeof bracket[0]; i++) {
        CHECK_INT(rq_parse_url(bracket[i], &u, &e), -1);
        CHECK(strstr(e.msg, "goes in brackets") != NULL);
    }
    /* in brackets, 255 bytes are read as an address (not one), 256 are too long for the field */
    CHECK_INT(parse_with(&u, &e, "redis://[", filled(text, '1', 255), "]:1"), -1);
    CHECK(strstr(e.msg, "is not an IPv6 address") != NULL);
    CHECK_INT(parse_with(&u, &e, "redis://[", filled(text, '1', 256), "]:1"), -1);
    CHECK(strstr(e.msg, "goes in brackets") != NULL);
}

/* The other refusals for good, after each set-up step. */
static void test_refused_for_good_edges(void)
{
    const char *steps[] = {
        "redis AUTH refused: ", "redis SELECT refused: ", "redis server refused: "};
    const char *final[] = {"NOPERM this user has no permissions", "ERR invalid DB index",
                           "ERR SELECT is not allowed in cluster mode",
                           "Redis Cluster (cluster_enabled:1) is not supported"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        for (size_t k = 0; k < sizeof final / sizeof final[0]; k++) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s%s", steps[i], final[k]);
            CHECK(rq_refused_for_good(msg));
        }
    }
    CHECK(!rq_refused_for_good("redis PING refused: NOPERM this user has no permissions"));
    /* the refusal begins right after the step: not a proxy's error that names one further on */
    CHECK(!rq_refused_for_good("redis AUTH refused: ERR upstream answered WRONGPASS"));
}

/* What looks like what Redis adds, but is not quite, is left alone; what is, is cut. */
static void test_clean_error_edges(void)
{
    static const char sha[] = "0831e2c9533e8cbed57da1d2a40c4d744e66cf6c";
    char cases[][2][256] = {
        {"ERR user_script:: boom", "ERR user_script:: boom"},
        {"ERR user_script:3:boom", "ERR user_script:3:boom"},
        {"", ""}, /* the Redis 6 form, below */
        {"", ""}, /* the Redis 7 form without its '.' */
        {"", ""}, /* ... with more after it */
        {"", ""}, /* ... with a 41-digit sha */
        {"", ""}, /* " script: " twice, the second Redis's */
    };
    snprintf(cases[2][0], 256, "ERR Error running script (call to f_%s): @user_script:3:boom", sha);
    snprintf(cases[2][1], 256, "%s", cases[2][0]);
    snprintf(cases[3][0], 256, "ERR boom script: %s, on @user_script:57", sha);
    snprintf(cases[3][1], 256, "ERR boom");
    snprintf(cases[4][0], 256, "ERR boom script: %s, on @user_script:57. more", sha);
    snprintf(cases[4][1], 256, "%s", cases[4][0]);
    snprintf(cases[5][0], 256, "ERR boom script: %sa, on @user_script:57.", sha);
    snprintf(cases[5][1], 256, "%s", cases[5][0]);
    snprintf(cases[6][0], 256, "ERR the script: abc script: %s, on @user_script:1.", sha);
    snprintf(cases[6][1], 256, "ERR the script: abc");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rq_clean_error(cases[i][0]);
        CHECK_STR(cases[i][0], cases[i][1]);
    }
}

/* A key that just fits, one that does not; an entry of pixq's own only with JSON after its mark. */
static void test_key_and_task_edges(void)
{
    char k[RQ_KEY_MAX];
    CHECK_INT(rq_key(k, 10, "d", "j"), -1); /* "pixq:{d}:j" and its NUL: 11 bytes */
    CHECK_INT(rq_key(k, 11, "d", "j"), 0);
    CHECK_STR(k, "pixq:{d}:j");
    CHECK(rq_task_json(RQ_TASK_MARK, RQ_TASK_MARK_LEN) == NULL);
    const char task[] = RQ_TASK_MARK "{}";
    CHECK(rq_task_json(task, sizeof task - 1) == task + RQ_TASK_MARK_LEN);
    CHECK(rq_task_json("pixq-tusk:{}", 12) == NULL);
}

/* Reads up to `len` bytes from `fd` (fewer at its end) into `out`; how many. */
static size_t read_full(int fd, char *out, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, out + got, len - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    return got;
}

/* One exchange of the fake Redis: it reads `len` bytes of requests, then writes `answer`; or,
 * with no answer, waits `hang_ms` and closes the connection, taking the next one for the next
 * exchange. */
struct fake_step {
    size_t len;
    const char *answer;
    long hang_ms;
};

/* The child standing in for Redis: takes a connection on `ls`, runs the `n` steps, and copies
 * every byte it read, up to the client's close, into `to`. */
static void fake_redis_serve(int ls, const struct fake_step *steps, size_t n, int to)
{
    int fd = accept(ls, NULL, NULL);
    bool ok = fd >= 0;
    for (size_t i = 0; ok && i < n; i++) {
        char *req = malloc(steps[i].len);
        size_t got = req != NULL ? read_full(fd, req, steps[i].len) : 0;
        ok = got == steps[i].len && write(to, req, got) == (ssize_t)got;
        free(req);
        if (ok && steps[i].answer != NULL) {
            ok = write(fd, steps[i].answer, strlen(steps[i].answer)) ==
                 (ssize_t)strlen(steps[i].answer);
        } else if (ok) {
            struct timespec hang = {steps[i].hang_ms / 1000, steps[i].hang_ms % 1000 * 1000000};
            nanosleep(&hang, NULL);
            close(fd);
            fd = i + 1 < n ? accept(ls, NULL, NULL) : -1;
            ok = fd >= 0 || i + 1 == n;
        }
    }
    char more[512];
    ssize_t got = ok && fd >= 0 ? read(fd, more, sizeof more) : 0;
    while (got > 0 && write(to, more, (size_t)got) == got) {
        got = read(fd, more, sizeof more);
    }
    _exit(ok && got == 0 ? 0 : 1);
}

struct fake_redis {
    pid_t pid;
    int from; /* what it read comes out here */
};

/* A connection, with `timeout_ms`, to a child process of this test that stands in for Redis,
 * running `n` steps (each answered only once its request came: the connection is clean
 * whenever the client looks at it). NULL when it could not be made. */
static struct rq *fake_redis_steps(struct fake_redis *f, long timeout_ms,
                                   const struct fake_step *steps, size_t n)
{
    int port = 0, p[2];
    int ls = loopback_listen(&port);
    if (ls < 0 || pipe(p) != 0) {
        return NULL;
    }
    f->pid = fork();
    if (f->pid == 0) {
        close(p[0]);
        fake_redis_serve(ls, steps, n, p[1]);
    }
    close(p[1]);
    close(ls);
    f->from = p[0];
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    struct err e = {{0}};
    /* no password, database 0: sends nothing */
    struct rq *r = f->pid > 0 ? rq_create(url, timeout_ms, &e) : NULL;
    if (r == NULL && f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    if (r == NULL) {
        close(f->from);
    }
    return r;
}

/* fake_redis_steps() of one step that answers `answer` to `len` bytes. */
static struct rq *fake_redis(struct fake_redis *f, size_t len, const char *answer)
{
    const struct fake_step step = {len, answer, 0};
    return fake_redis_steps(f, 2000, &step, 1);
}

/* Closes `r` and reads what the fake Redis read, every byte, into `out` (`cap` bytes with a
 * NUL); their number. */
static size_t fake_redis_read(struct fake_redis *f, struct rq *r, char *out, size_t cap)
{
    rq_destroy(r);
    size_t got = read_full(f->from, out, cap - 1);
    out[got] = '\0';
    close(f->from);
    int status = -1;
    waitpid(f->pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return got;
}

/* A pipeline's error is the first error reply's: EXEC's EXECABORT after a refused command of its
 * MULTI says only that there was one. */
static void test_pipeline_first_error(void)
{
    static const char want[] = "*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nNOPE\r\n*1\r\n$4\r\nEXEC\r\n";
    struct fake_redis f;
    struct rq *r = fake_redis(&f, sizeof want - 1,
                              "+OK\r\n-ERR unknown command 'NOPE'\r\n"
                              "-EXECABORT Transaction discarded because of previous errors.\r\n");
    CHECK(r != NULL);
    if (r == NULL) {
        return;
    }
    const char *multi[] = {"MULTI"}, *nope[] = {"NOPE"}, *exec[] = {"EXEC"};
    struct rq_cmd cmds[] = {{1, multi, NULL}, {1, nope, NULL}, {1, exec, NULL}};
    redisReply *replies[3];
    struct err e = {{0}};
    CHECK_INT(rq_pipeline(r, 3, cmds, replies, &e), -1);
    CHECK(replies[0] != NULL && replies[0]->type == REDIS_REPLY_STATUS);
    CHECK(replies[1] == NULL && replies[2] == NULL);
    CHECK_STR(e.msg, "redis: ERR unknown command 'NOPE'");
    freeReplyObject(replies[0]);
    char got[128];
    fake_redis_read(&f, r, got, sizeof got);
    CHECK_STR(got, want);
}

/* A script call takes 4096 keys and arguments in all, all sent; one more is refused before
 * anything is. */
static void test_script_words(void)
{
    enum { WORDS = 4096 };
    /* *4099, EVALSHA, the sha, "1", the key (10 bytes: "$10"), then each "a" */
    size_t len = 7 + 13 + 47 + 7 + 17 + 7 * (WORDS - 1);
    struct fake_redis f;
    struct rq *r = fake_redis(&f, len, ":1\r\n");
    char *got = malloc(len + 16);
    CHECK(r != NULL && got != NULL);
    if (r == NULL || got == NULL) {
        free(got);
        rq_destroy(r);
        return;
    }
    const char *keys[] = {"pixq:{q}:x"};
    static const char *args[WORDS];
    for (size_t i = 0; i < WORDS; i++) {
        args[i] = "a";
    }
    struct err e = {{0}};
    redisReply *rep = rq_script(r, RQ_SCRIPT_FINISH, 1, keys, WORDS - 1, args, NULL, &e);
    CHECK(rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1);
    freeReplyObject(rep);
    rep = rq_script(r, RQ_SCRIPT_FINISH, 1, keys, WORDS, args, NULL, &e);
    CHECK(rep == NULL);
    CHECK_STR(e.msg, "redis script finish: too many arguments");
    CHECK_INT(fake_redis_read(&f, r, got, len + 16), len); /* the first call, and nothing more */
    CHECK(strncmp(got, "*4099\r\n$7\r\nEVALSHA\r\n$40\r\n", 24) == 0);
    CHECK(strncmp(got + 67, "$1\r\n1\r\n$10\r\npixq:{q}:x\r\n$1\r\na\r\n", 31) == 0);
    free(got);
}

/* After a blocking command's longer wait, the next command waits PIXQ_REDIS_TIMEOUT_MS again: a
 * server that says nothing is given up after 100 ms, not when it closes the connection. */
static void test_timeout_after_blocking(void)
{
    static const char blmove[] = "*6\r\n$6\r\nBLMOVE\r\n$1\r\nj\r\n$1\r\na\r\n$5\r\nRIGHT\r\n"
                                 "$4\r\nLEFT\r\n$2\r\n60\r\n";
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    const struct fake_step steps[] = {{sizeof blmove - 1, "*-1\r\n", 0},
                                      {sizeof ping - 1, NULL, 1000}};
    struct fake_redis f;
    struct rq *r = fake_redis_steps(&f, 100, steps, 2);
    CHECK(r != NULL);
    if (r == NULL) {
        return;
    }
    const char *argv[] = {"BLMOVE", "j", "a", "RIGHT", "LEFT", "60"};
    struct err e = {{0}};
    redisReply *rep = rq_commandv(r, 60000, 6, argv, NULL, &e);
    CHECK(rep != NULL && rep->type == REDIS_REPLY_NIL);
    freeReplyObject(rep);
    CHECK(rq_command(r, &e, "PING") == NULL);
    CHECK_STR(e.msg, "redis: no reply within 100 ms (PIXQ_REDIS_TIMEOUT_MS)");
    char got[256];
    fake_redis_read(&f, r, got, sizeof got);
}

/* A call of finish.lua by its SHA-1 with the one key "k", as RESP: EVALSHA <sha> 1 k */
#define FINISH_CALL_LEN (4 + 13 + 47 + 7 + 7)

/* A script is loaded again on a new connection (the server may have restarted without it) before
 * a call is sent ahead, so that the call runs when it arrives. */
static void test_script_loaded_again_after_reconnecting(void)
{
    const char *text = rq_script_source(RQ_SCRIPT_FINISH);
    char head[64];
    int n =
        snprintf(head, sizeof head, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%zu\r\n", strlen(text));
    size_t load = (size_t)n + strlen(text) + 2;
    size_t call = FINISH_CALL_LEN;
    const struct fake_step steps[] = {{load, "+OK\r\n", 0},
                                      {call, ":1\r\n", 0},
                                      {14, NULL, 0}, /* a PING: closed */
                                      {load, "+OK\r\n", 0},
                                      {call, ":2\r\n", 0}};
    struct fake_redis f;
    struct rq *r = fake_redis_steps(&f, 2000, steps, sizeof steps / sizeof steps[0]);
    CHECK(r != NULL);
    if (r == NULL) {
        return;
    }
    const char *keys[] = {"k"};
    struct err e = {{0}};
    for (long want = 1; want <= 2; want++) {
        CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
        redisReply *rep = rq_script_reply(r, &e);
        CHECK(rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == want);
        freeReplyObject(rep);
        if (want == 1) {
            CHECK(rq_command(r, &e, "PING") == NULL); /* the server closed the connection */
        }
    }
    char *got = malloc(2 * (load + call) + 64);
    if (got != NULL) {
        CHECK_INT(fake_redis_read(&f, r, got, 2 * (load + call) + 64), 2 * (load + call) + 14);
        CHECK(strncmp(got + load + call + 14, head, (size_t)n) == 0);
    }
    free(got);
}

/* Whether `rep` (freed) is the integer `want`: the fake servers below answer each call so. */
static bool answer_is(redisReply *rep, long long want)
{
    bool is = rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == want;
    freeReplyObject(rep);
    return is;
}

/* A client of a fake Redis that runs `steps`, the first of which answers finish.lua's call on
 * key "k" with 1, made here: the script is known loaded from then on (a call sent ahead goes
 * without SCRIPT LOAD). NULL if the fake did not start. */
static struct rq *finish_loaded(struct fake_redis *f, const struct fake_step *steps, size_t n)
{
    struct rq *r = fake_redis_steps(f, 2000, steps, n);
    CHECK(r != NULL);
    if (r != NULL) {
        const char *keys[] = {"k"};
        struct err e = {{0}};
        CHECK(answer_is(rq_script(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 1));
    }
    return r;
}

/* finish.lua sent ahead on "k", then called behind it, when the fake closes the connection
 * after both: the call behind fails as a lost connection. */
static void lost_behind(struct rq *r)
{
    const char *keys[] = {"k"};
    struct err e = {{0}};
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    CHECK(rq_script(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e) == NULL);
    CHECK(strncmp(e.msg, "redis: ", 7) == 0);
    CHECK(rq_disconnected(r));
}

/* A script called with rq_script() is known loaded: a call sent ahead then goes without SCRIPT
 * LOAD. rq_script_reply() says whether the reply was lost or nothing was sent. */
static void test_script_reply(void)
{
    size_t call = FINISH_CALL_LEN;
    const struct fake_step steps[] = {{call, ":1\r\n", 0}, {call, ":2\r\n", 0}, {call, NULL, 0}};
    struct fake_redis f;
    struct rq *r = finish_loaded(&f, steps, sizeof steps / sizeof steps[0]);
    if (r == NULL) {
        return;
    }
    const char *keys[] = {"k"};
    struct err e = {{0}};
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    CHECK(answer_is(rq_script_reply(r, &e), 2));
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    CHECK(rq_script_reply(r, &e) == NULL); /* the server closed the connection */
    CHECK_STR(e.msg, "redis: connection lost before the reply");
    CHECK(rq_script_reply(r, &e) == NULL);
    CHECK_STR(e.msg, "redis: nothing was sent");
    char got[512];
    CHECK_INT(fake_redis_read(&f, r, got, sizeof got), 3 * call);
}

/* A script call made while the answer of a call sent ahead is on its way is written behind it at
 * once, and both answers are read in one wait (one round trip): the server here answers only once
 * it has both. The first answer is kept for rq_script_reply(). When the connection goes before
 * the answers come, both are lost. */
static void test_script_behind_sent(void)
{
    size_t call = FINISH_CALL_LEN;
    const struct fake_step steps[] = {
        {call, ":1\r\n", 0}, {2 * call, ":2\r\n:3\r\n", 0}, {2 * call, NULL, 0}};
    struct fake_redis f;
    struct rq *r = finish_loaded(&f, steps, sizeof steps / sizeof steps[0]);
    if (r == NULL) {
        return;
    }
    const char *keys[] = {"k"};
    struct err e = {{0}};
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    CHECK(answer_is(rq_script(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 3));
    CHECK_INT(rq_round_trips(r), 2);
    CHECK(answer_is(rq_script_reply(r, &e), 2));
    lost_behind(r);
    CHECK(rq_script_reply(r, &e) == NULL);
    CHECK_STR(e.msg, "redis: connection lost before the reply");
    char got[1024];
    CHECK_INT(fake_redis_read(&f, r, got, sizeof got), 5 * call);
}

/* A script call does not go behind the call sent ahead when that call's answer came already
 * (read first, it costs no wait: a round trip of the call's own) or the connection was closed
 * meanwhile (a restart during the job): the answer is read first, found lost, and the call goes
 * on a new connection rather than being lost with the old one. */
static void test_script_not_behind(void)
{
    size_t call = FINISH_CALL_LEN;
    const struct fake_step steps[] = {{call, ":1\r\n", 0},
                                      {call, ":2\r\n", 0},
                                      {call, ":3\r\n", 0},
                                      {call, NULL, 0},
                                      {call, ":4\r\n", 0}};
    struct fake_redis f;
    struct rq *r = finish_loaded(&f, steps, sizeof steps / sizeof steps[0]);
    if (r == NULL) {
        return;
    }
    const char *keys[] = {"k"};
    struct err e = {{0}};
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
    nanosleep(&pause, NULL); /* the answer comes meanwhile */
    CHECK(answer_is(rq_script(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 3));
    CHECK_INT(rq_round_trips(r), 2); /* the answer ahead was not waited for */
    CHECK(answer_is(rq_script_reply(r, &e), 2));
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    nanosleep(&pause, NULL); /* the server closes the connection meanwhile */
    CHECK(answer_is(rq_script(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 4));
    CHECK_INT(rq_round_trips(r), 3);
    CHECK(rq_script_reply(r, &e) == NULL);
    CHECK_STR(e.msg, "redis: connection lost before the reply");
    char got[1024];
    CHECK_INT(fake_redis_read(&f, r, got, sizeof got), 5 * call);
}

/* The bytes of finish.lua called with the one key `k`, by its SHA-1 (FINISH_CALL_LEN of them),
 * into `out`. */
static void finish_call(const char *k, char *out, size_t cap)
{
    snprintf(out, cap, "*4\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n$1\r\n%s\r\n",
             "0000000000000000000000000000000000000000", k);
}

/* Whether `got` (what the fake Redis read) holds the calls of keys `order` (one letter each) at
 * `at[i]`, each a finish.lua call with that key: EVALSHA's arguments but the SHA-1, compared. */
static bool calls_at(const char *got, const char *order, const size_t *at)
{
    char want[FINISH_CALL_LEN + 1];
    for (size_t i = 0; order[i] != '\0'; i++) {
        char k[2] = {order[i], '\0'};
        finish_call(k, want, sizeof want);
        const char *call = got + at[i];
        /* the head up to the SHA-1, then what comes after it */
        if (strncmp(call, want, 22) != 0 ||
            strncmp(call + 62, want + 62, FINISH_CALL_LEN - 62) != 0) {
            return false;
        }
    }
    return true;
}

/* A NOSCRIPT answer to the call ahead (a SCRIPT FLUSH since it was loaded) with a call behind
 * it: both answers are read in that one wait, the call behind's is its caller's, and the call
 * ahead is sent again once its script is loaded, its answer the one kept for rq_script_reply();
 * the stream stays in step. When both are NOSCRIPT, each is loaded and sent again, in order. */
static void test_script_behind_noscript(void)
{
    const char *text = rq_script_source(RQ_SCRIPT_FINISH);
    char head[64];
    int h =
        snprintf(head, sizeof head, "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$%zu\r\n", strlen(text));
    size_t load = (size_t)h + strlen(text) + 2;
    size_t call = FINISH_CALL_LEN;
    const struct fake_step steps[] = {
        {call, ":1\r\n", 0},
        {2 * call, "-NOSCRIPT No matching script. Please use EVAL.\r\n:3\r\n", 0},
        {load, "+OK\r\n", 0},
        {call, ":2\r\n", 0},
        {2 * call, "-NOSCRIPT No matching script.\r\n-NOSCRIPT No matching script.\r\n", 0},
        {load, "+OK\r\n", 0},
        {call, ":4\r\n", 0},
        {load, "+OK\r\n", 0},
        {call, ":5\r\n", 0}};
    struct fake_redis f;
    struct rq *r = finish_loaded(&f, steps, sizeof steps / sizeof steps[0]);
    if (r == NULL) {
        return;
    }
    const char *a[] = {"a"}, *b[] = {"b"};
    struct err e = {{0}};
    for (long want = 2; want <= 4; want += 2) {
        CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, a, 0, NULL, NULL, &e), 0);
        CHECK(answer_is(rq_script(r, RQ_SCRIPT_FINISH, 1, b, 0, NULL, NULL, &e), want + 1));
        CHECK(answer_is(rq_script_reply(r, &e), want));
        CHECK(!rq_disconnected(r));
    }
    char *got = malloc(4 * load + 9 * call + 64);
    if (got == NULL) {
        return;
    }
    size_t n = fake_redis_read(&f, r, got, 4 * load + 9 * call + 64);
    CHECK_INT(n, 3 * load + 8 * call);
    /* k; a b (NOSCRIPT, 3), load, a; a b (both NOSCRIPT), load, a, load, b */
    const size_t at[] = {0,
                         call,
                         2 * call,
                         3 * call + load,
                         4 * call + load,
                         5 * call + load,
                         6 * call + 2 * load,
                         7 * call + 3 * load};
    CHECK(n == 3 * load + 8 * call && calls_at(got, "kabaabab", at) &&
          strncmp(got + 3 * call, head, (size_t)h) == 0);
    free(got);
}

/* Answers to a call ahead and to the one behind it that are errors other than NOSCRIPT (the
 * server refused one: OOM) are each its own call's, nothing sent again; and when the connection
 * goes after the answer ahead came, that answer is kept (the call ran) and only the call behind
 * fails. */
static void test_script_behind_errors(void)
{
    size_t call = FINISH_CALL_LEN;
    const struct fake_step steps[] = {
        {call, ":1\r\n", 0},
        {2 * call, "-OOM command not allowed when used memory > 'maxmemory'.\r\n:3\r\n", 0},
        {2 * call, ":2\r\n-ERR boom\r\n", 0},
        {2 * call, ":4\r\n", 0},
        {0, NULL, 0}};
    struct fake_redis f;
    struct rq *r = finish_loaded(&f, steps, sizeof steps / sizeof steps[0]);
    if (r == NULL) {
        return;
    }
    const char *keys[] = {"k"};
    struct err e = {{0}};
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    CHECK(answer_is(rq_script(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 3));
    CHECK(rq_script_reply(r, &e) == NULL);
    CHECK(strstr(e.msg, "OOM command not allowed") != NULL);
    CHECK(strstr(e.msg, "maxmemory'. (Redis is full: past its maxmemory it refuses what adds data "
                        "until keys expire or maxmemory is raised, `pixq stats` showing its "
                        "memory)") != NULL);
    CHECK_INT(rq_script_send(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e), 0);
    e = (struct err){{0}};
    CHECK(rq_script(r, RQ_SCRIPT_FINISH, 1, keys, 0, NULL, NULL, &e) == NULL);
    CHECK(strstr(e.msg, "boom") != NULL);
    CHECK(!rq_disconnected(r));
    CHECK(answer_is(rq_script_reply(r, &e), 2));
    lost_behind(r);
    /* it ran: its answer came before the connection went */
    CHECK(answer_is(rq_script_reply(r, &e), 4));
    CHECK_INT(rq_round_trips(r), 4);
    char got[1024];
    CHECK_INT(fake_redis_read(&f, r, got, sizeof got), 7 * call);
}

/* INFO's fields are found by their whole names, in any order: "maxmemory" is not the start of
 * "maxmemory_human" (a server other than Redis may list that first). */
static void test_server_check_fields(void)
{
    static const char info[] = "# Memory\r\nused_memory_human:1.00G\r\n"
                               "used_memory_rss:9\r\nused_memory:1073741900\r\n"
                               "maxmemory_human:1.00G\r\n"
                               "maxmemory_policy:allkeys-lru\r\nmaxmemory:1073741824\r\n"
                               "mem_not_counted_for_evict:100\r\n"
                               "# Cluster\r\ncluster_enabled:0\r\n";
    char answer[512];
    snprintf(answer, sizeof answer, "$%zu\r\n%s\r\n", sizeof info - 1, info);
    struct fake_redis f;
    struct rq *r = fake_redis(&f, 14, answer); /* *1 INFO */
    CHECK(r != NULL);
    if (r == NULL) {
        return;
    }
    struct rq_server srv;
    struct err e = {{0}};
    CHECK_INT(rq_server_check(r, &srv, &e), 0);
    CHECK_INT(srv.maxmemory, 1073741824);
    CHECK_STR(srv.policy, "allkeys-lru");
    CHECK_STR(srv.refused, "");
    CHECK(srv.memory_known);
    CHECK_INT(srv.used_memory, 1073741900);
    CHECK_INT(srv.not_counted, 100);
    CHECK(!rq_server_full(&srv)); /* 76 bytes past maxmemory, but 100 of them not counted */
    srv.not_counted = 75;
    CHECK(rq_server_full(&srv));
    srv.maxmemory = 0; /* none */
    CHECK(!rq_server_full(&srv));
    srv.maxmemory = 1;
    srv.memory_known = false;
    CHECK(!rq_server_full(&srv));
    char got[64];
    fake_redis_read(&f, r, got, sizeof got);
    CHECK_STR(got, "*1\r\n$4\r\nINFO\r\n");
}

int main(void)
{
    test_clean_error();
    test_refused_for_good();
    test_urls();
    test_keys();
    test_scripts_declare_keys();
    test_url_edges();
    test_refused_for_good_edges();
    test_clean_error_edges();
    test_key_and_task_edges();
    test_pipeline_first_error();
    test_script_words();
    test_timeout_after_blocking();
    test_script_loaded_again_after_reconnecting();
    test_script_reply();
    test_script_behind_sent();
    test_script_not_behind();
    test_script_behind_noscript();
    test_script_behind_errors();
    test_server_check_fields();
    return check_summary("rq");
}
