#include "rq.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "buf.h"
#include "hash.h"
#include "log.h"
#include "utf8.h"

extern const char lua_finish[], lua_adopt[], lua_heartbeat[], lua_expired[], lua_reap[],
    lua_promote[], lua_requeue[], lua_delay[], lua_begin[], lua_dead_retry[], lua_split[],
    lua_rl_acquire[], lua_rl_feedback[], lua_rl_show[], lua_park[], lua_upload_done[],
    lua_posting[], lua_take[], lua_parked_forget[], lua_claim[], lua_replan[], lua_rl_set[],
    lua_dead_trim[];

static const char *const script_text[RQ_SCRIPT_COUNT] = {
    lua_finish,        lua_adopt,   lua_heartbeat, lua_expired,     lua_reap,      lua_promote,
    lua_requeue,       lua_delay,   lua_begin,     lua_dead_retry,  lua_split,     lua_rl_acquire,
    lua_rl_feedback,   lua_rl_show, lua_park,      lua_upload_done, lua_posting,   lua_take,
    lua_parked_forget, lua_claim,   lua_replan,    lua_rl_set,      lua_dead_trim,
};
static const char *const script_name[RQ_SCRIPT_COUNT] = {
    "finish",        "adopt",   "heartbeat", "expired",     "reap",      "promote",
    "requeue",       "delay",   "begin",     "dead_retry",  "split",     "rl_acquire",
    "rl_feedback",   "rl_show", "park",      "upload_done", "posting",   "take",
    "parked_forget", "claim",   "replan",    "rl_set",      "dead_trim",
};

/* park.lua with PIXQ_MAX_SAVES (at most 1000) outputs takes 11 + 4 keys and arguments a save */
#define MAX_ARGS       4096   /* most keys plus arguments of one script call */
#define STACK_ARGS     32     /* a script call with at most this many words allocates no vector */
#define CMD_KEEP_BYTES 65536  /* a command buffer larger than this is freed after its command */
#define IDLE_CHECK_US  250000 /* a connection unused this long is looked at before a command */

struct rq {
    redisContext *ctx; /* NULL while disconnected */
    struct rq_url url;
    long timeout_ms;
    bool io_error;
    unsigned long io_errors;    /* commands lost to I/O failures since the start */
    unsigned long closed_found; /* connections found closed before a command went on them */
    unsigned long round_trips;  /* waits for an answer since the start (rq_round_trips) */
    char sha[RQ_SCRIPT_COUNT][2 * SHA_DIGEST_LENGTH + 1];
    struct buf cmd; /* the command being sent, in RESP, kept for the next one (see append_cmd) */
    /* a script call sent by rq_script_send() whose reply is not read yet (`sent`), or was read by
     * a later command and kept for rq_script_reply() (`held`; `lost`: the connection went
     * before it came) */
    bool sent, lost;
    redisReply *held;
    enum rq_script sent_script;
    long long sent_us;
    struct buf sent_cmd;          /* its bytes, sent again if Redis answers NOSCRIPT */
    bool loaded[RQ_SCRIPT_COUNT]; /* scripts known to be in the server's cache since connecting */
    unsigned long connections;    /* connections made so far (rq_connection) */
    long long used_us; /* when the connection last carried a command or a reply (mono_us) */
    /* the server answered READONLY on this connection: a failover made it a replica. The next
     * command connects again, so that a name or a proxy the failover moved to the new primary
     * leads there; the connection made before would keep to the old server for ever. */
    bool replica_seen;
    enum log_level reconnect_level; /* of the redis_reconnect line */
};

/* ---------------------------------------------------------------- URL parsing */

static int hexval(int c)
{
    if (isdigit(c)) {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copies `n` bytes of `s` into `out` (`cap` bytes), decoding %XX. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) {
                return -1;
            }
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= cap) {
            return -1;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_userinfo(const char *s, size_t n, struct rq_url *out, struct err *e)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL) {
        /* redis://password@host is accepted as a password for the default user */
        if (pct_decode(s, n, out->password, sizeof out->password) < 0) {
            return err_set(e, "PIXQ_REDIS_URL: bad password encoding");
        }
        return 0;
    }
    size_t ulen = (size_t)(colon - s);
    if (pct_decode(s, ulen, out->user, sizeof out->user) < 0 ||
        pct_decode(colon + 1, n - ulen - 1, out->password, sizeof out->password) < 0) {
        return err_set(e, "PIXQ_REDIS_URL: bad user or password encoding");
    }
    return 0;
}

static int parse_db(const char *s, int *db, struct err *e)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 10000) {
        return err_set(e, "PIXQ_REDIS_URL: bad database number '%s'", s);
    }
    *db = (int)v;
    return 0;
}

/* The port after a host ("6379", `n` bytes): 0, or -1 with the reason. */
static int parse_port(const char *s, size_t n, int *out, struct err *e)
{
    char port[16];
    if (n == 0 || n >= sizeof port) {
        return err_set(e, "PIXQ_REDIS_URL: bad port");
    }
    memcpy(port, s, n);
    port[n] = '\0';
    char *end;
    long p = strtol(port, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535) {
        /* not echoed: in "redis://user:password" (no host) the password is read as a port */
        return err_set(e, "PIXQ_REDIS_URL: bad port (not a number from 1 to 65535)");
    }
    *out = (int)p;
    return 0;
}

/* An IPv6 literal in brackets, "[::1]" or "[::1]:6380" (`n` bytes at `s`, which starts with
 * '['): the address without its brackets into out->host. */
static int parse_bracketed(const char *s, size_t n, struct rq_url *out, struct err *e)
{
    const char *close = memchr(s, ']', n);
    size_t hlen = close != NULL ? (size_t)(close - s - 1) : 0;
    struct in6_addr a;
    if (close == NULL || hlen == 0 || hlen >= sizeof out->host) {
        return err_set(e, "PIXQ_REDIS_URL: an IPv6 address goes in brackets: [::1]:6379");
    }
    memcpy(out->host, s + 1, hlen);
    out->host[hlen] = '\0';
    if (inet_pton(AF_INET6, out->host, &a) != 1) {
        return err_set(e, "PIXQ_REDIS_URL: '%s' in brackets is not an IPv6 address", out->host);
    }
    size_t rest = n - hlen - 2; /* after the ']' */
    if (rest == 0) {
        return 0;
    }
    if (close[1] != ':') {
        return err_set(e, "PIXQ_REDIS_URL: bad port after ']'");
    }
    return parse_port(close + 2, rest - 1, &out->port, e);
}

static int parse_hostport(const char *s, size_t n, struct rq_url *out, struct err *e)
{
    out->port = 6379;
    if (n > 0 && s[0] == '[') {
        return parse_bracketed(s, n, out, e);
    }
    const char *colon = memchr(s, ':', n);
    size_t hlen = colon != NULL ? (size_t)(colon - s) : n;
    if (hlen == 0 || hlen >= sizeof out->host) {
        return err_set(e, "PIXQ_REDIS_URL: missing or too long host");
    }
    memcpy(out->host, s, hlen);
    out->host[hlen] = '\0';
    if (colon == NULL) {
        return 0;
    }
    return parse_port(colon + 1, n - hlen - 1, &out->port, e);
}

static int parse_unix(const char *rest, struct rq_url *out, struct err *e)
{
    const char *q = strchr(rest, '?');
    size_t n = q != NULL ? (size_t)(q - rest) : strlen(rest);
    if (n == 0 || n >= sizeof out->unix_path || rest[0] != '/') {
        return err_set(e, "PIXQ_REDIS_URL: unix:// needs an absolute socket path");
    }
    memcpy(out->unix_path, rest, n);
    out->unix_path[n] = '\0';
    if (q == NULL) {
        return 0;
    }
    if (strncmp(q, "?db=", 4) != 0) {
        return err_set(e, "PIXQ_REDIS_URL: only ?db=N is understood after a socket path");
    }
    return parse_db(q + 4, &out->db, e);
}

int rq_parse_url(const char *url, struct rq_url *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    if (strncmp(url, "unix://", 7) == 0) {
        return parse_unix(url + 7, out, e);
    }
    if (strncmp(url, "rediss://", 9) == 0) {
        /* a managed Redis's TLS address, copied as it is given: saying "must start with" alone
         * left the operator to guess that redis:// there would not work either */
        return err_set(e, "PIXQ_REDIS_URL: rediss:// (Redis over TLS) is not supported: reach "
                          "that Redis through a TLS tunnel on this host (stunnel, for one) at a "
                          "redis:// or unix:// address");
    }
    if (strncmp(url, "redis://", 8) != 0) {
        return err_set(e, "PIXQ_REDIS_URL: must start with redis:// or unix://");
    }
    const char *auth = url + 8;
    const char *slash = strchr(auth, '/');
    const char *end = slash != NULL ? slash : auth + strlen(auth);
    const char *at = NULL;
    for (const char *p = auth; p < end; p++) {
        at = *p == '@' ? p : at;
    }
    if (strchr(end, '@') != NULL) {
        /* a '/' in the user or password ended the authority early: saying what was read as a
         * port or database would show a piece of the password */
        return err_set(e, "PIXQ_REDIS_URL: a '/' in the user or password must be "
                          "percent-encoded as %%2F");
    }
    const char *hp = auth;
    if (at != NULL) {
        if (parse_userinfo(auth, (size_t)(at - auth), out, e) < 0) {
            return -1;
        }
        hp = at + 1;
    }
    if (parse_hostport(hp, (size_t)(end - hp), out, e) < 0) {
        return -1;
    }
    if (slash != NULL && slash[1] != '\0') {
        return parse_db(slash + 1, &out->db, e);
    }
    return 0;
}

/* ---------------------------------------------------------------- connection */

static struct timeval ms_to_tv(long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

static void drop(struct rq *r)
{
    if (r->ctx != NULL) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
    if (r->sent) { /* its reply can no longer come */
        r->sent = false;
        r->lost = true;
    }
}

/* Why an I/O on `c` failed, in words: hiredis's message, except for a read that timed out,
 * which hiredis words as its errno, "Resource temporarily unavailable" (EAGAIN): that is Redis
 * not answering within the timeout (frozen, swapping, or busy with a long command). */
static const char *io_reason(const redisContext *c, long timeout_ms, char *buf, size_t cap)
{
    if (c == NULL || c->errstr[0] == '\0') {
        return "connection lost";
    }
    if (c->err == REDIS_ERR_IO && (strcmp(c->errstr, strerror(EAGAIN)) == 0 ||
                                   strcmp(c->errstr, strerror(EWOULDBLOCK)) == 0)) {
        snprintf(buf, cap, "no reply within %ld ms (PIXQ_REDIS_TIMEOUT_MS)", timeout_ms);
        return buf;
    }
    return c->errstr;
}

/* What to do about Redis's NOAUTH, which it answers when no AUTH was sent (PIXQ_REDIS_URL has
 * no password; a wrong one fails at AUTH: "redis AUTH refused"), or its OOM (past maxmemory
 * under noeviction, refusing what adds data until it has room), or "". */
static const char *refusal_hint(const char *msg)
{
    if (strncmp(msg, "OOM ", 4) == 0) {
        return " (Redis is full: past its maxmemory it refuses what adds data until keys expire "
               "or maxmemory is raised, `pixq stats` showing its memory)";
    }
    return strncmp(msg, "NOAUTH ", 7) == 0
               ? " (PIXQ_REDIS_URL gives no password: redis://[USER]:PASSWORD@HOST:PORT/DB)"
               : "";
}

/* Checks a reply of a set-up command; frees it. */
static int expect_ok(const struct rq *r, redisReply *rep, const char *what, struct err *e)
{
    if (rep == NULL) {
        char why[96];
        return err_set(e, "redis %s: %s", what, io_reason(r->ctx, r->timeout_ms, why, sizeof why));
    }
    int rc = 0;
    if (rep->type == REDIS_REPLY_ERROR) {
        rc = err_set(e, "redis %s refused: %.200s%s", what, rep->str, refusal_hint(rep->str));
    }
    freeReplyObject(rep);
    return rc;
}

bool rq_refused_for_good(const char *msg)
{
    static const char *steps[] = {
        "redis AUTH refused: ", "redis SELECT refused: ", "redis server refused: "};
    /* what Redis answers a wrong login or database, and nothing else: "ERR max number of
     * clients reached", LOADING, BUSY, MASTERDOWN or a proxy's error pass with time */
    static const char *final[] = {"WRONGPASS",
                                  "NOAUTH",
                                  "NOPERM",
                                  "ERR invalid password",
                                  "ERR AUTH <password> called without any password configured",
                                  "ERR Client sent AUTH, but no password is set",
                                  "ERR DB index is out of range",
                                  "ERR invalid DB index",
                                  "ERR SELECT is not allowed in cluster mode",
                                  "Redis Cluster"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = strlen(steps[i]);
        if (strncmp(msg, steps[i], n) != 0) {
            continue;
        }
        for (size_t k = 0; k < sizeof final / sizeof final[0]; k++) {
            if (strncmp(msg + n, final[k], strlen(final[k])) == 0) {
                return true;
            }
        }
    }
    return false;
}

static int authenticate(struct rq *r, struct err *e)
{
    const struct rq_url *u = &r->url;
    redisReply *rep;
    if (u->password[0] == '\0') {
        return 0;
    }
    if (u->user[0] != '\0') {
        rep = redisCommand(r->ctx, "AUTH %s %s", u->user, u->password);
    } else {
        rep = redisCommand(r->ctx, "AUTH %s", u->password);
    }
    return expect_ok(r, rep, "AUTH", e);
}

/* Microseconds of the monotonic clock, for the timing lines and the idle check. */
static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int connect_now(struct rq *r, struct err *e)
{
    struct timeval tv = ms_to_tv(r->timeout_ms);
    if (r->url.unix_path[0] != '\0') {
        r->ctx = redisConnectUnixWithTimeout(r->url.unix_path, tv);
    } else {
        r->ctx = redisConnectWithTimeout(r->url.host, r->url.port, tv);
    }
    if (r->ctx == NULL || r->ctx->err != 0) {
        const char *why = r->ctx != NULL ? r->ctx->errstr : "out of memory";
        if (r->url.unix_path[0] != '\0') { /* a socket path has no port */
            err_set(e, "cannot connect to redis at %s: %s", r->url.unix_path, why);
        } else {
            bool v6 = strchr(r->url.host, ':') != NULL; /* written as in the URL: [::1]:6379 */
            err_set(e, "cannot connect to redis at %s%s%s:%d: %s", v6 ? "[" : "", r->url.host,
                    v6 ? "]" : "", r->url.port, why);
        }
        drop(r);
        return -1;
    }
    redisSetTimeout(r->ctx, tv);
    if (authenticate(r, e) < 0 ||
        (r->url.db != 0 &&
         expect_ok(r, redisCommand(r->ctx, "SELECT %d", r->url.db), "SELECT", e) < 0)) {
        drop(r);
        return -1;
    }
    r->io_error = false;
    memset(r->loaded, 0, sizeof r->loaded); /* perhaps a new server, or one restarted */
    r->connections++;
    r->used_us = mono_us();
    return 0;
}

static void compute_shas(struct rq *r)
{
    for (int i = 0; i < RQ_SCRIPT_COUNT; i++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)script_text[i], strlen(script_text[i]), d);
        hash_hex(d, sizeof d, r->sha[i]);
    }
}

/* The value of `field` in an INFO text ("field:value\r\n"), into out; false if absent. */
static bool info_field(const char *info, const char *field, char *out, size_t cap)
{
    size_t n = strlen(field);
    const char *p = info;
    while (p != NULL && *p != '\0') {
        if (strncmp(p, field, n) == 0 && p[n] == ':') {
            snprintf(out, cap, "%.*s", (int)strcspn(p + n + 1, "\r\n"), p + n + 1);
            return true;
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return false;
}

int rq_server_check(struct rq *r, struct rq_server *out, struct err *e)
{
    memset(out, 0, sizeof *out);
    struct err why = {{0}};
    redisReply *rep = rq_command(r, &why, "INFO");
    if (rep == NULL && rq_disconnected(r)) {
        return err_set(e, "%s", why.msg);
    }
    if (rep == NULL) { /* not allowed, or renamed (a managed Redis): nothing to check */
        snprintf(out->refused, sizeof out->refused, "%s", why.msg);
        return 0;
    }
    char cluster[8] = "", maxmemory[32] = "", used[32] = "", not_counted[32] = "";
    if (rep->type == REDIS_REPLY_STRING) {
        info_field(rep->str, "cluster_enabled", cluster, sizeof cluster);
        info_field(rep->str, "maxmemory_policy", out->policy, sizeof out->policy);
        info_field(rep->str, "maxmemory", maxmemory, sizeof maxmemory);
        out->memory_known = info_field(rep->str, "used_memory", used, sizeof used);
        info_field(rep->str, "mem_not_counted_for_evict", not_counted, sizeof not_counted);
    }
    freeReplyObject(rep);
    out->maxmemory = strtoull(maxmemory, NULL, 10);
    out->used_memory = strtoull(used, NULL, 10);
    out->not_counted = strtoull(not_counted, NULL, 10);
    if (strcmp(cluster, "1") == 0) {
        return err_set(e, "redis server refused: Redis Cluster is not supported: pixq's client "
                          "talks to one server and does not follow MOVED or ASK redirects "
                          "(point PIXQ_REDIS_URL at a standalone Redis or a primary with "
                          "replicas)");
    }
    return 0;
}

bool rq_server_full(const struct rq_server *s)
{
    unsigned long long counted =
        s->used_memory > s->not_counted ? s->used_memory - s->not_counted : 0;
    return s->memory_known && s->maxmemory > 0 && counted > s->maxmemory;
}

unsigned long rq_connection(const struct rq *r)
{
    return r->ctx != NULL && !r->io_error ? r->connections : 0;
}

struct rq *rq_create(const char *url, long timeout_ms, struct err *e)
{
    struct rq *r = calloc(1, sizeof *r);
    if (r == NULL) {
        err_set(e, "out of memory");
        return NULL;
    }
    r->timeout_ms = timeout_ms;
    r->reconnect_level = LOG_LEVEL_INFO;
    buf_init(&r->cmd, 0);
    buf_init(&r->sent_cmd, 0);
    if (rq_parse_url(url, &r->url, e) < 0 || connect_now(r, e) < 0) {
        free(r);
        return NULL;
    }
    compute_shas(r);
    return r;
}

void rq_set_reconnect_log_level(struct rq *r, enum log_level level)
{
    r->reconnect_level = level;
}

void rq_destroy(struct rq *r)
{
    if (r == NULL) {
        return;
    }
    drop(r);
    freeReplyObject(r->held);
    buf_finish(&r->cmd);
    buf_finish(&r->sent_cmd);
    free(r);
}

bool rq_disconnected(const struct rq *r)
{
    return r->ctx == NULL || r->io_error;
}

/* After an I/O failure: hiredis's message into `e` (may be NULL), the connection dropped, the
 * failure counted. Returns -1. */
static int connection_lost(struct rq *r, struct err *e)
{
    char why[96];
    err_set(e, "redis: %s", io_reason(r->ctx, r->timeout_ms, why, sizeof why));
    r->io_error = true;
    r->io_errors++;
    drop(r);
    return -1;
}

/* Whether `s` starts with at least one digit; *end is set after the digits. */
static bool leading_digits(const char *s, const char **end)
{
    size_t n = strspn(s, "0123456789");
    *end = s + n;
    return n > 0;
}

void rq_clean_error(char *msg)
{
    /* Redis 6: "ERR Error running script (call to f_<sha1>): @user_script:<N>: <message>" */
    static const char run6[] = "ERR Error running script (call to f_";
    const char *at = strstr(msg, "): @user_script:"), *end;
    if (strncmp(msg, run6, sizeof run6 - 1) == 0 && at != NULL && leading_digits(at + 16, &end) &&
        strncmp(end, ": ", 2) == 0) {
        memmove(msg, end + 2, strlen(end + 2) + 1);
    }
    /* Redis 7: "<message> script: <sha1>, on @user_script:<N>." */
    for (char *p = strstr(msg, " script: "); p != NULL; p = strstr(p + 1, " script: ")) {
        const char *q = p + 9;
        if (strspn(q, "0123456789abcdef") == 40 && strncmp(q + 40, ", on @user_script:", 18) == 0 &&
            leading_digits(q + 58, &end) && (strcmp(end, ".") == 0 || *end == '\0')) {
            *p = '\0';
            break;
        }
    }
    /* Redis 7, for an error the script raised: "ERR user_script:<N>: <message>" */
    char *word = strchr(msg, ' ');
    if (word != NULL && strncmp(word + 1, "user_script:", 12) == 0 &&
        leading_digits(word + 13, &end) && strncmp(end, ": ", 2) == 0) {
        memmove(word + 1, end + 2, strlen(end + 2) + 1);
    }
}

/* The key a command names (its first argument: `len` bytes of `arg`, NULL when it has none),
 * for an error: NULL for a script's call, whose first argument is no key (a script's own
 * WRONGTYPE names its key). */
struct key_arg {
    const char *arg;
    size_t len;
};

static struct key_arg command_key(int argc, const char **argv, const size_t *lens)
{
    size_t len0 = lens != NULL ? lens[0] : strlen(argv[0]);
    bool script = (len0 >= 4 && strncasecmp(argv[0], "EVAL", 4) == 0) ||
                  (len0 >= 5 && strncasecmp(argv[0], "FCALL", 5) == 0);
    if (argc < 2 || script) {
        return (struct key_arg){NULL, 0};
    }
    return (struct key_arg){argv[1], lens != NULL ? lens[1] : strlen(argv[1])};
}

/* An error reply's message into `e` (may be NULL), "redis: <message>", without what Redis adds
 * to a script's errors (rq_clean_error()). A replica's READONLY
 * (PIXQ_REDIS_URL names a server that a failover made a replica, or a replica from the start)
 * says what to do about it: writes will be refused until it is promoted or the URL changes.
 * A NOAUTH says where the password goes, an OOM what it means (refusal_hint()). A WRONGTYPE names
 * the command's `key` (a key of another type, set by hand, which Redis's message leaves unsaid), as
 * the scripts' own do. Returns -1. */
static int reply_error(struct rq *r, const char *reply, struct key_arg key, struct err *e)
{
    char msg[ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", reply);
    rq_clean_error(msg);
    bool replica = strncmp(msg, "READONLY ", 9) == 0;
    r->replica_seen = r->replica_seen || replica;
    if (strncmp(msg, "WRONGTYPE ", 10) == 0 && key.arg != NULL) {
        char name[RQ_KEY_MAX], shown[UTF8_SHOWN_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)(key.len < sizeof name ? key.len : 0), key.arg);
        return err_set(e, "redis: %.400s (key '%s')", msg,
                       utf8_ascii_shown(name, shown, sizeof shown));
    }
    return err_set(e, "redis: %.400s%s", msg,
                   replica ? " (PIXQ_REDIS_URL names a read-only replica: point it at the "
                             "primary)"
                           : refusal_hint(msg));
}

/* A reply that came: itself, or NULL for an error reply, whose message goes into `e`. */
static redisReply *answer(struct rq *r, redisReply *rep, struct key_arg key, struct err *e)
{
    if (rep->type == REDIS_REPLY_ERROR) {
        reply_error(r, rep->str, key, e);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* Turns a raw reply into the rq convention: error replies and I/O failures become NULL. */
static redisReply *check_reply(struct rq *r, redisReply *rep, struct key_arg key, struct err *e)
{
    if (rep == NULL) {
        connection_lost(r, e);
        return NULL;
    }
    return answer(r, rep, key, e);
}

/* What waits on `c`'s socket: 1 bytes, 0 nothing yet, -1 the server closed the connection (its
 * end of stream, or an error). A peek that does not block and takes nothing from the stream. */
static int socket_state(const redisContext *c)
{
    char byte;
    ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        return 1;
    }
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ? -1 : 0;
}

/* Why `c`'s connection, with no command outstanding, cannot carry the next one, or NULL: the
 * server closed it, or bytes nobody asked for wait there (the stream is out of step: they would
 * be read as the next command's answer). */
static const char *not_clean(const redisContext *c)
{
    int state = socket_state(c);
    return state > 0 ? "unexpected_bytes" : state < 0 ? "closed_while_idle" : NULL;
}

/* Whether bytes read from `c`'s connection with an answer, after it, wait in hiredis's buffer
 * with no command outstanding (the bytes nobody asked for of not_clean(), come in with the last
 * answer: a peek at the socket cannot see them). */
static bool unread_bytes(const redisContext *c)
{
    return c->reader != NULL && c->reader->len > c->reader->pos;
}

/* Connects when there is no connection. One left unused for IDLE_CHECK_US is looked at first,
 * and replaced if the server closed it meanwhile (Redis restarted while this process was paused
 * or waiting on something else; an idle timeout of Redis's or of a proxy): sent on it, the
 * command would fail with it, and the caller could not tell whether it ran. A worker paused past
 * its lease while Redis restarted then asked posting.lua on such a connection, got no answer,
 * and posted a job that another worker had already run and posted (chaos). Bytes nobody asked
 * for, come in with the last answer, replace it whenever it is used. */
static int ensure_connected(struct rq *r, struct err *e)
{
    long long now = mono_us();
    const char *why = r->ctx == NULL                      ? NULL
                      : r->replica_seen                   ? "read_only_replica"
                      : unread_bytes(r->ctx)              ? "unexpected_bytes"
                      : now - r->used_us >= IDLE_CHECK_US ? not_clean(r->ctx)
                                                          : NULL;
    r->replica_seen = false;
    if (why != NULL) {
        LOG_AT(r->reconnect_level, "redis_reconnect", "reason=%s idle_ms=%lld", why,
               (now - r->used_us) / 1000);
        r->closed_found++;
        drop(r);
    }
    r->used_us = now;
    if (r->ctx != NULL) {
        return 0;
    }
    if (connect_now(r, e) < 0) {
        r->io_errors++;
        return -1;
    }
    return 0;
}

unsigned long rq_io_errors(const struct rq *r)
{
    return r->io_errors;
}

unsigned long rq_breaks(const struct rq *r)
{
    return r->io_errors + r->closed_found;
}

/* The debug line of one round trip: the command's name (`len` bytes), the script's, how long. */
static void log_round_trip(const char *cmd, int len, const char *script, long long t0_us,
                           const redisReply *rep)
{
    LOG_DEBUG("redis", "cmd=%.*s%s%s ms=%.3f ok=%d", len, cmd, script != NULL ? " script=" : "",
              script != NULL ? script : "", (double)(mono_us() - t0_us) / 1000.0,
              rep != NULL && rep->type != REDIS_REPLY_ERROR);
}

/* Loads script `s` into the server's cache (SCRIPT LOAD). Returns 0, or -1: an error answer, or
 * the connection lost (then dropped). */
static int load_script(struct rq *r, enum rq_script s, struct err *e)
{
    LOG_DEBUG("redis_script_load", "script=%s", script_name[s]);
    redisReply *rep = rq_command(r, e, "SCRIPT LOAD %s", script_text[s]);
    if (rep == NULL) {
        return -1;
    }
    freeReplyObject(rep);
    r->loaded[s] = true;
    return 0;
}

/* Reads the reply of the script call rq_script_send() sent, if it is still on its way, and keeps
 * it for rq_script_reply(): a command sent after it must not take it for its own. A NOSCRIPT
 * answer (the server lost its scripts: SCRIPT FLUSH) means the call did not run: the script is
 * loaded and the call sent again, and that answer is kept. An I/O failure drops the connection
 * (the next command reconnects) and marks the reply lost.
 *
 * `behind`: NULL, or where the reply of the one command appended after the call goes (written
 * before the call's reply was read: evalsha_behind), read next, NULL if the connection failed
 * first (then the connection is left for the caller to drop, with hiredis's reason). A NOSCRIPT
 * call is sent again only after that command has run (after a SCRIPT FLUSH, which took the
 * command's script too unless another client loaded it again in between). */
static void collect_sent(struct rq *r, redisReply **behind)
{
    if (!r->sent) {
        return;
    }
    r->sent = false;
    const char *name = script_name[r->sent_script];
    if (behind == NULL && !unread_bytes(r->ctx) && socket_state(r->ctx) == 0) {
        r->round_trips++; /* the answer has not come: this read waits for it */
    }
    void *rep = NULL;
    /* (used_us stays the send's: this reply may have waited here since long before a close) */
    bool io = redisGetReply(r->ctx, &rep) == REDIS_OK && rep != NULL;
    redisReply *got = rep;
    /* `ms`: from sending the call to reading its answer, the caller's work in between included */
    LOG_DEBUG("redis", "cmd=EVALSHA script=%s ahead=1 ms=%.3f ok=%d", name,
              (double)(mono_us() - r->sent_us) / 1000.0, io && got->type != REDIS_REPLY_ERROR);
    if (behind != NULL) {
        void *own = NULL;
        if (!io || redisGetReply(r->ctx, &own) != REDIS_OK || own == NULL) {
            *behind = NULL;
            r->held = io ? got : NULL; /* the call's answer came: it ran */
            r->lost = !io;
            if (!io) {
                freeReplyObject(got);
            }
            return;
        }
        *behind = own;
    }
    if (io && got->type == REDIS_REPLY_ERROR && strncmp(got->str, "NOSCRIPT", 8) == 0) {
        if (load_script(r, r->sent_script, NULL) == 0) { /* loaded: the call again */
            freeReplyObject(got);
            rep = NULL;
            long long t0 = mono_us();
            io = redisAppendFormattedCommand(r->ctx, r->sent_cmd.data, r->sent_cmd.len) ==
                     REDIS_OK &&
                 redisGetReply(r->ctx, &rep) == REDIS_OK && rep != NULL;
            got = rep;
            log_round_trip("EVALSHA", 7, name, t0, got);
            r->round_trips++;
        } else if (r->ctx == NULL) { /* the connection went during the load (counted there) */
            freeReplyObject(got);
            r->lost = true;
            return;
        } /* else an error answer to the load: the NOSCRIPT one is kept */
    }
    if (!io) {
        freeReplyObject(got);
        connection_lost(r, NULL);
        r->lost = true;
        return;
    }
    r->held = got;
}

/* ---------------------------------------------------------------- commands in RESP */

static size_t digits(size_t n)
{
    size_t d = 1;
    for (; n >= 10; n /= 10) {
        d++;
    }
    return d;
}

/* Writes "<kind><n>\r\n" (RESP's "*3\r\n" or "$7\r\n") at `p`; returns the end. */
static char *put_head(char *p, char kind, size_t n)
{
    size_t d = digits(n);
    p[0] = kind;
    for (size_t i = d; i > 0; i--, n /= 10) {
        p[i] = (char)('0' + n % 10);
    }
    p[d + 1] = '\r';
    p[d + 2] = '\n';
    return p + d + 3;
}

/* Formats an argument vector (`lens` NULL for C strings) into r->cmd: the bytes
 * redisFormatCommandArgv makes, without its per-argument sds formatting. */
static int format_argv(struct rq *r, int argc, const char **argv, const size_t *lens, struct err *e)
{
    size_t total = digits((size_t)argc) + 3;
    for (int i = 0; i < argc; i++) {
        size_t len = lens != NULL ? lens[i] : strlen(argv[i]);
        total += digits(len) + len + 5;
    }
    buf_reset(&r->cmd);
    if (buf_reserve(&r->cmd, total) < 0) {
        return err_set(e, "out of memory");
    }
    char *p = put_head(r->cmd.data, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t len = lens != NULL ? lens[i] : strlen(argv[i]);
        p = put_head(p, '$', len);
        memcpy(p, argv[i], len);
        p[len] = '\r';
        p[len + 1] = '\n';
        p += len + 2;
    }
    r->cmd.len = (size_t)(p - r->cmd.data);
    return 0;
}

/* Hands r->cmd to hiredis's output buffer, sent when a reply is read. Returns 0, or -1 if hiredis
 * ran out of memory. A large buffer (a parked image) is not kept for the next command. */
static int append_cmd(struct rq *r)
{
    int rc = redisAppendFormattedCommand(r->ctx, r->cmd.data, r->cmd.len);
    if (r->cmd.cap > CMD_KEEP_BYTES) {
        buf_finish(&r->cmd);
    }
    return rc == REDIS_OK ? 0 : -1;
}

/* Sends r->cmd and waits for its reply (redisCommandArgv's steps): the reply, or NULL on I/O
 * failure (hiredis's message in r->ctx->errstr). */
static redisReply *send_cmd(struct rq *r)
{
    void *rep = NULL;
    if (append_cmd(r) < 0 || redisGetReply(r->ctx, &rep) != REDIS_OK) {
        return NULL;
    }
    return rep;
}

/* Runs the command formatted in r->cmd: `name` (`len` bytes) and the script's name (NULL: not a
 * script) are for the timing line. As rq_commandv. */
static redisReply *round_trip(struct rq *r, long extra_timeout_ms, const char *name, int len,
                              const char *script, struct key_arg key, struct err *e)
{
    if (extra_timeout_ms > 0) {
        redisSetTimeout(r->ctx, ms_to_tv(r->timeout_ms + extra_timeout_ms));
    }
    r->round_trips++;
    long long t0 = mono_us();
    redisReply *rep = send_cmd(r);
    r->used_us = mono_us();
    log_round_trip(name, len, script, t0, rep);
    if (extra_timeout_ms > 0 && r->ctx != NULL && rep != NULL) {
        redisSetTimeout(r->ctx, ms_to_tv(r->timeout_ms));
    }
    return check_reply(r, rep, key, e);
}

/* rq_commandv, with the script's name for the timing line (NULL: not a script). */
static redisReply *commandv(struct rq *r, long extra_timeout_ms, int argc, const char **argv,
                            const size_t *lens, const char *script, struct err *e)
{
    collect_sent(r, NULL);
    if (ensure_connected(r, e) < 0 || format_argv(r, argc, argv, lens, e) < 0) {
        return NULL;
    }
    int len = lens != NULL ? (int)lens[0] : (int)strlen(argv[0]);
    return round_trip(r, extra_timeout_ms, argv[0], len, script,
                      script != NULL ? (struct key_arg){NULL, 0} : command_key(argc, argv, lens),
                      e);
}

redisReply *rq_commandv(struct rq *r, long extra_timeout_ms, int argc, const char **argv,
                        const size_t *lens, struct err *e)
{
    return commandv(r, extra_timeout_ms, argc, argv, lens, NULL, e);
}

/* The second word of a command in RESP (`*N $len word $len word...`, as redisvFormatCommand()
 * writes it), or {NULL, 0}. Points into `cmd`. */
static struct key_arg resp_second_word(const char *cmd, size_t n)
{
    const char *p = cmd, *end = cmd + n;
    for (int word = 0; word < 2; word++) {
        p = memchr(p, '\n', (size_t)(end - p)); /* past "*N\r\n", then past a word's "\r\n" */
        if (p == NULL || ++p >= end || *p != '$') {
            return (struct key_arg){NULL, 0};
        }
        char *after;
        unsigned long len = strtoul(p + 1, &after, 10);
        if (after + 2 > end || len > (size_t)(end - (after + 2))) {
            return (struct key_arg){NULL, 0};
        }
        if (word == 1) {
            return (struct key_arg){after + 2, len};
        }
        p = after + 2 + len;
    }
    return (struct key_arg){NULL, 0};
}

redisReply *rq_command(struct rq *r, struct err *e, const char *fmt, ...)
{
    collect_sent(r, NULL);
    if (ensure_connected(r, e) < 0) {
        return NULL;
    }
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    r->round_trips++;
    long long t0 = mono_us();
    redisReply *rep = redisvCommand(r->ctx, fmt, ap);
    va_end(ap);
    r->used_us = mono_us();
    log_round_trip(fmt, (int)strcspn(fmt, " "), NULL, t0, rep);
    /* a WRONGTYPE names the key: the command formatted again, its second word read */
    char *cmd = NULL;
    struct key_arg key = {NULL, 0};
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "WRONGTYPE", 9) == 0) {
        int n = redisvFormatCommand(&cmd, fmt, again);
        key = n > 0 ? resp_second_word(cmd, (size_t)n) : key;
    }
    va_end(again);
    redisReply *out = check_reply(r, rep, key, e);
    redisFreeCommand(cmd);
    return out;
}

unsigned long rq_round_trips(const struct rq *r)
{
    return r->round_trips;
}

/* After an I/O failure in a pipeline: frees the replies read so far and drops the connection. */
static int pipeline_lost(struct rq *r, size_t got, redisReply **replies, struct err *e)
{
    for (size_t i = 0; i < got; i++) {
        freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
    return connection_lost(r, e);
}

int rq_pipeline(struct rq *r, size_t n, const struct rq_cmd *cmds, redisReply **replies,
                struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        replies[i] = NULL;
    }
    collect_sent(r, NULL);
    if (ensure_connected(r, e) < 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (format_argv(r, cmds[i].argc, cmds[i].argv, cmds[i].lens, e) < 0) {
            drop(r); /* the commands appended already must not reach Redis */
            return -1;
        }
        if (append_cmd(r) < 0) {
            return pipeline_lost(r, 0, replies, e);
        }
    }
    r->round_trips++;
    long long t0 = mono_us();
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *rep = NULL;
        if (redisGetReply(r->ctx, &rep) != REDIS_OK || rep == NULL) {
            return pipeline_lost(r, i, replies, e);
        }
        replies[i] = rep;
        if (replies[i]->type == REDIS_REPLY_ERROR) {
            /* the first error says why: a refused MULTI's EXEC answers only EXECABORT */
            rc = rc < 0 ? rc
                        : reply_error(r, replies[i]->str,
                                      command_key(cmds[i].argc, cmds[i].argv, cmds[i].lens), e);
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    }
    r->used_us = mono_us();
    LOG_DEBUG("redis", "cmd=pipeline commands=%zu ms=%.3f ok=%d", n,
              (double)(mono_us() - t0) / 1000.0, rc == 0);
    return rc;
}

/* Fills argv and lens (nkeys + nargs + 3 words) with EVALSHA <sha> <nkeys> keys... args... */
static void script_argv(struct rq *r, enum rq_script s, const char *nk, int nkeys,
                        const char **keys, int nargs, const char **args, const size_t *arglens,
                        const char **argv, size_t *lens)
{
    argv[0] = "EVALSHA";
    argv[1] = r->sha[s];
    argv[2] = nk;
    int n = 3;
    for (int i = 0; i < nkeys; i++, n++) {
        argv[n] = keys[i];
        lens[n] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++, n++) {
        argv[n] = args[i];
        lens[n] = arglens != NULL ? arglens[i] : strlen(args[i]);
    }
    for (int i = 0; i < 3; i++) {
        lens[i] = strlen(argv[i]);
    }
}

/* Formats EVALSHA <sha> <nkeys> keys... args... into r->cmd. Returns 0, or -1. */
static int format_script(struct rq *r, enum rq_script s, int nkeys, const char **keys, int nargs,
                         const char **args, const size_t *arglens, struct err *e)
{
    size_t total = (size_t)nkeys + (size_t)nargs + 3;
    const char *argv_stack[STACK_ARGS];
    size_t lens_stack[STACK_ARGS];
    bool small = total <= STACK_ARGS;
    const char **argv = small ? argv_stack : malloc(total * sizeof *argv);
    size_t *lens = small ? lens_stack : malloc(total * sizeof *lens);
    int rc;
    if (argv == NULL || lens == NULL) {
        rc = err_set(e, "out of memory");
    } else {
        char nk[16];
        snprintf(nk, sizeof nk, "%d", nkeys);
        script_argv(r, s, nk, nkeys, keys, nargs, args, arglens, argv, lens);
        rc = format_argv(r, (int)total, argv, lens, e);
    }
    if (!small) {
        free(argv);
        free(lens);
    }
    return rc;
}

/* A script call made while the answer of the one rq_script_send() sent is on its way: appended
 * behind it and written at once, and both answers read in one wait, the first kept for
 * rq_script_reply() (a job's finish.lua behind its begin.lua): one round trip for both, counted
 * here. The connection is in use: no idle check (the answer ahead may wait on it). */
static redisReply *evalsha_behind(struct rq *r, enum rq_script s, int nkeys, const char **keys,
                                  int nargs, const char **args, const size_t *arglens,
                                  struct err *e)
{
    if (format_script(r, s, nkeys, keys, nargs, args, arglens, e) < 0) {
        return NULL;
    }
    if (append_cmd(r) < 0) {
        drop(r); /* hiredis ran out of memory: whatever it holds must not reach Redis */
        err_set(e, "out of memory");
        return NULL;
    }
    r->round_trips++; /* one wait for both answers */
    long long t0 = mono_us();
    redisReply *rep = NULL;
    collect_sent(r, &rep);
    r->used_us = mono_us();
    LOG_DEBUG("redis", "cmd=EVALSHA script=%s behind=1 ms=%.3f ok=%d answered=%d", script_name[s],
              (double)(mono_us() - t0) / 1000.0, rep != NULL && rep->type != REDIS_REPLY_ERROR,
              rep != NULL);
    return check_reply(r, rep, (struct key_arg){NULL, 0}, e);
}

/* Whether a script call may be written behind the call rq_script_send() sent before its answer
 * is read: that answer has not come yet (when it has, reading it first costs no wait), nothing
 * on the socket says the connection is closed (as after a restart during the job: the call
 * would be lost with it, where read first, the lost answer lets the call go on a new
 * connection), and the call ahead went less than IDLE_CHECK_US ago. A peek that takes nothing. */
static bool may_go_behind(const struct rq *r)
{
    return r->sent && r->ctx != NULL && !unread_bytes(r->ctx) &&
           mono_us() - r->sent_us < IDLE_CHECK_US && socket_state(r->ctx) == 0;
}

static redisReply *evalsha(struct rq *r, enum rq_script s, int nkeys, const char **keys, int nargs,
                           const char **args, const size_t *arglens, struct err *e)
{
    if (may_go_behind(r)) {
        return evalsha_behind(r, s, nkeys, keys, nargs, args, arglens, e);
    }
    collect_sent(r, NULL);
    if (ensure_connected(r, e) < 0 ||
        format_script(r, s, nkeys, keys, nargs, args, arglens, e) < 0) {
        return NULL;
    }
    return round_trip(r, 0, "EVALSHA", 7, script_name[s], (struct key_arg){NULL, 0}, e);
}

redisReply *rq_script(struct rq *r, enum rq_script s, int nkeys, const char **keys, int nargs,
                      const char **args, const size_t *arglens, struct err *e)
{
    if (nkeys < 0 || nargs < 0 || nkeys + nargs > MAX_ARGS) {
        err_set(e, "redis script %s: too many arguments", script_name[s]);
        return NULL;
    }
    struct err local;
    redisReply *rep = evalsha(r, s, nkeys, keys, nargs, args, arglens, &local);
    if (rep != NULL) {
        r->loaded[s] = true;
        return rep;
    }
    if (strstr(local.msg, "NOSCRIPT") == NULL) {
        err_set(e, "%s", local.msg);
        return NULL;
    }
    if (load_script(r, s, e) < 0) {
        return NULL;
    }
    return evalsha(r, s, nkeys, keys, nargs, args, arglens, e);
}

int rq_script_send(struct rq *r, enum rq_script s, int nkeys, const char **keys, int nargs,
                   const char **args, const size_t *arglens, struct err *e)
{
    collect_sent(r, NULL);
    freeReplyObject(r->held); /* an earlier call's reply nobody asked for */
    r->held = NULL;
    r->lost = false;
    if (nkeys < 0 || nargs < 0 || nkeys + nargs > MAX_ARGS) {
        return err_set(e, "redis script %s: too many arguments", script_name[s]);
    }
    if (ensure_connected(r, e) < 0) {
        return -1;
    }
    /* once a connection: the call must run when it arrives, not answer NOSCRIPT */
    if (!r->loaded[s] && load_script(r, s, e) < 0) {
        return -1;
    }
    if (format_script(r, s, nkeys, keys, nargs, args, arglens, e) < 0) {
        return -1;
    }
    buf_reset(&r->sent_cmd);
    if (buf_append(&r->sent_cmd, r->cmd.data, r->cmd.len) < 0) {
        return err_set(e, "out of memory");
    }
    if (append_cmd(r) < 0) {
        drop(r); /* hiredis ran out of memory: whatever it holds must not reach Redis */
        return err_set(e, "out of memory");
    }
    /* written now, not with the next read: the round trip runs while the caller works */
    int done = 0;
    while (!done) {
        if (redisBufferWrite(r->ctx, &done) != REDIS_OK) {
            return connection_lost(r, e);
        }
    }
    r->sent = true;
    r->sent_script = s;
    r->sent_us = mono_us();
    return 0;
}

void rq_wait_sent(struct rq *r)
{
    collect_sent(r, NULL);
}

const redisReply *rq_sent_reply(struct rq *r)
{
    collect_sent(r, NULL);
    return r->held;
}

redisReply *rq_script_reply(struct rq *r, struct err *e)
{
    collect_sent(r, NULL);
    redisReply *rep = r->held;
    r->held = NULL;
    if (rep == NULL) {
        err_set(e, r->lost ? "redis: connection lost before the reply" : "redis: nothing was sent");
        r->lost = false;
        return NULL;
    }
    return answer(r, rep, (struct key_arg){NULL, 0}, e);
}

int rq_key(char *out, size_t cap, const char *queue, const char *suffix)
{
    int n = snprintf(out, cap, "pixq:{%s}:%s", queue, suffix);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

const char *rq_script_source(enum rq_script s)
{
    return script_text[s];
}

const char *rq_script_name(enum rq_script s)
{
    return script_name[s];
}

const char *rq_task_json(const char *payload, size_t len)
{
    return len > RQ_TASK_MARK_LEN && memcmp(payload, RQ_TASK_MARK, RQ_TASK_MARK_LEN) == 0
               ? payload + RQ_TASK_MARK_LEN
               : NULL;
}
