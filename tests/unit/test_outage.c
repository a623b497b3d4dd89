/* outage (producer/outage.c): how `pixq stats --watch` and the --wait of submit and job ride out
 * a Redis that went away. The waits between tries (100 ms doubling up to 2 s, the last one cut
 * to the time left), the end after PIXQ_REDIS_OUTAGE_MS, the lines on stderr (once per reason,
 * over a progress bar when one is drawn) and which failures may pass: a lost connection (but
 * not a login Redis refuses) and the answers Redis gives while it cannot serve for a moment. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "outage.h"
#include "rq.h"

/* The waits of one outage: 100 ms doubling, up to 2 s; each try at the time the last wait ends. */
static void test_backoff(void)
{
    struct outage o;
    outage_init(&o, "stats", 60000, false);
    struct err e = {{0}};
    const long want[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
    long now = 0; /* the monotonic clock's first moment is a time like another */
    check_capture(2);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        long wait = outage_failed(&o, "redis: connection lost", now, &e);
        CHECK_INT(wait, want[i]);
        now += wait;
    }
    char out[2048];
    /* one line for the outage: the reason did not change */
    CHECK_STR(check_captured(2, out, sizeof out),
              "pixq: stats: redis unavailable (redis: connection lost); "
              "trying again for up to 60 s (PIXQ_REDIS_OUTAGE_MS)\n");
    CHECK_STR(e.msg, "");
}

/* The end: the last wait is cut to the time left, and the failure at the limit is the error. A
 * new reason is written, with the time left to a tenth of a second. */
static void test_limit(void)
{
    struct outage o;
    outage_init(&o, "job", 5000, false);
    struct err e = {{0}};
    check_capture(2);
    CHECK_INT(outage_failed(&o, "redis: A", 1000, &e), 100);
    CHECK_INT(outage_failed(&o, "redis: A", 1100, &e), 200);
    CHECK_INT(outage_failed(&o, "redis: B", 1300, &e), 400);
    CHECK_INT(outage_failed(&o, "redis: B", 1700, &e), 800);
    CHECK_INT(outage_failed(&o, "redis: B", 2500, &e), 1600);
    CHECK_INT(outage_failed(&o, "redis: B", 4100, &e), 1900); /* 2000, but 1900 are left */
    CHECK_STR(e.msg, "");
    CHECK_INT(outage_failed(&o, "redis: C", 5999, &e), 1); /* a millisecond left */
    CHECK_STR(e.msg, "");
    CHECK_INT(outage_failed(&o, "redis: D", 6000, &e), -1);
    CHECK_STR(e.msg, "redis unavailable for 5.0 s (PIXQ_REDIS_OUTAGE_MS): redis: D");
    char out[2048];
    CHECK_STR(check_captured(2, out, sizeof out),
              "pixq: job: redis unavailable (redis: A); trying again for up to 5 s "
              "(PIXQ_REDIS_OUTAGE_MS)\n"
              "pixq: job: redis unavailable (redis: B); trying again for up to 4.7 s "
              "(PIXQ_REDIS_OUTAGE_MS)\n"
              "pixq: job: redis unavailable (redis: C); trying again for up to 0.0 s "
              "(PIXQ_REDIS_OUTAGE_MS)\n");
    /* PIXQ_REDIS_OUTAGE_MS=0: the first failure is the error, and nothing is said before it */
    outage_init(&o, "submit", 0, false);
    e = (struct err){{0}};
    check_capture(2);
    CHECK_INT(outage_failed(&o, "redis: gone", 42, &e), -1);
    CHECK_STR(e.msg, "redis unavailable for 0.0 s (PIXQ_REDIS_OUTAGE_MS): redis: gone");
    CHECK_STR(check_captured(2, out, sizeof out), "");
}

/* Redis back: a line with the outage's length, once; the next outage begins anew (its waits
 * from 100 ms, its limit from its own first failure, its reason written again). */
static void test_over(void)
{
    struct outage o;
    outage_init(&o, "submit", 3000, true);
    struct err e = {{0}};
    check_capture(2);
    outage_over(&o, 100); /* no outage going on: nothing */
    CHECK_INT(outage_failed(&o, "redis: lost", 1000, &e), 100);
    CHECK_INT(outage_failed(&o, "redis: lost", 1100, &e), 200);
    CHECK_INT(outage_failed(&o, "redis: lost", 1300, &e), 400);
    outage_over(&o, 2200);
    outage_over(&o, 2300);
    CHECK_INT(outage_failed(&o, "redis: lost", 10000, &e), 100);
    CHECK_INT(outage_failed(&o, "redis: lost", 12900, &e), 100); /* 2.9 s of its 3 */
    CHECK_STR(e.msg, "");
    CHECK_INT(outage_failed(&o, "redis: lost", 13000, &e), -1);
    CHECK_STR(e.msg, "redis unavailable for 3.0 s (PIXQ_REDIS_OUTAGE_MS): redis: lost");
    char out[2048];
    /* over a progress bar: each line begins by erasing it */
    CHECK_STR(check_captured(2, out, sizeof out),
              "\r\033[Kpixq: submit: redis unavailable (redis: lost); trying again for up to 3 s "
              "(PIXQ_REDIS_OUTAGE_MS)\n"
              "\r\033[Kpixq: submit: redis is back after 1.2 s\n"
              "\r\033[Kpixq: submit: redis unavailable (redis: lost); trying again for up to 3 s "
              "(PIXQ_REDIS_OUTAGE_MS)\n");
}

/* Which failures may pass. A connection to a socket of this test that it closes at once makes
 * an I/O failure, as a Redis that went away does. */
static void test_passing(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 4) == 0 &&
          getsockname(ls, (struct sockaddr *)&a, &len) == 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    struct err e = {{0}};
    struct rq *r = rq_create(url, 2000, &e); /* no password, database 0: nothing is sent */
    CHECK(r != NULL);
    if (r == NULL) {
        close(ls);
        return;
    }
    unsigned long before = rq_io_errors(r);
    /* no I/O failure: only Redis's answers of a moment pass, whole words of them */
    CHECK(outage_passing(r, before, "redis: LOADING Redis is loading the dataset in memory"));
    CHECK(outage_passing(r, before, "redis: BUSY Redis is busy running a script."));
    CHECK(outage_passing(r, before, "redis: MASTERDOWN Link with MASTER is down"));
    CHECK(outage_passing(r, before, "redis: TRYAGAIN Multiple keys request during rehashing"));
    CHECK(!outage_passing(r, before, "redis: BUSYKEY Target key name already exists."));
    CHECK(!outage_passing(r, before, "redis: BUSYGROUP Consumer Group name already exists"));
    CHECK(!outage_passing(r, before, "redis: WRONGTYPE Operation against a key"));
    CHECK(!outage_passing(r, before, "redis: OOM command not allowed"));
    const char *words[] = {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "redis: %sX other", words[i]);
        CHECK(!outage_passing(r, before, msg));
    }
    CHECK(!outage_passing(r, before, "LOADING without the prefix"));
    CHECK(!outage_passing(r, before, "redis: loading"));
    int fd = accept(ls, NULL, NULL);
    CHECK(fd >= 0);
    close(fd);
    close(ls);
    redisReply *reply = rq_command(r, &e, "PING");
    CHECK(reply == NULL);
    freeReplyObject(reply);
    CHECK(rq_io_errors(r) != before);
    /* the commands were cut short: whatever the message, it may pass... */
    CHECK(outage_passing(r, before, e.msg));
    CHECK(outage_passing(r, before, "redis: ERR anything"));
    CHECK(outage_passing(r, before, "cannot connect to redis at 127.0.0.1:1: Connection refused"));
    /* ...but for a login or database Redis refuses when the connection is made again */
    CHECK(!outage_passing(r, before, "redis AUTH refused: WRONGPASS invalid username-password"));
    CHECK(!outage_passing(r, before, "redis SELECT refused: ERR DB index is out of range"));
    CHECK(outage_passing(r, before, "redis AUTH refused: LOADING Redis is loading"));
    /* with no failure since: the message alone decides */
    CHECK(!outage_passing(r, rq_io_errors(r), e.msg));
    rq_destroy(r);
}

int main(void)
{
    test_backoff();
    test_limit();
    test_over();
    test_passing();
    return check_summary("outage");
}
