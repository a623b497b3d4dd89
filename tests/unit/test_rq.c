#include "check.h"
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
    CHECK_INT(rq_parse_url("redis://h:99999", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://h:1/x", &u, &e), -1);
    CHECK_INT(rq_parse_url("redis://u:bad%zzpass@h", &u, &e), -1);
    CHECK(strstr(e.msg, "bad%zzpass") == NULL); /* never echoes the password */
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

/* Whether every redis.call() of `src` names its key as KEYS[n] (TIME takes none): a key built
 * inside a script would break Redis Cluster. Returns the number of calls, or -1 on a bad one. */
static int count_declared_calls(const char *src)
{
    int calls = 0;
    for (const char *p = strstr(src, "redis.call("); p != NULL; p = strstr(p + 1, "redis.call(")) {
        const char *args = strchr(p, ',');
        const char *close = strchr(p, ')');
        calls++;
        if (strncmp(p, "redis.call('TIME')", 18) == 0) {
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
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cases[i][0]);
        rq_clean_error(msg);
        CHECK_STR(msg, cases[i][1]);
    }
}

int main(void)
{
    test_clean_error();
    test_refused_for_good();
    test_urls();
    test_keys();
    test_scripts_declare_keys();
    return check_summary("rq");
}
