/* id (common/id.c) and clock (common/clock.c): a job id is one digit then 22 characters of
 * URL-safe base64 of 16 random bytes, each position using its whole alphabet (the last one its
 * 2 bits' four letters) and the digit bits of its own; a worker id is host:pid:8 hex digits; the
 * clocks and clock_sleep_ms(), which sleeps its whole time through a signal. */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "id.h"

#define N_IDS    4000
#define ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

static int by_text(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_job_ids(void)
{
    static char ids[N_IDS][ID_JOB_LEN];
    /* seen[position][character]: how many ids have that character there */
    static unsigned seen[ID_JOB_LEN - 1][256];
    unsigned odd_with_q = 0, odd_without_q = 0, even_with_q = 0;
    bool shaped = true;
    for (size_t i = 0; i < N_IDS; i++) {
        CHECK_INT(id_job(ids[i]), 0);
        const char *id = ids[i];
        shaped = shaped && strlen(id) == ID_JOB_LEN - 1 && id[0] >= '0' && id[0] <= '9' &&
                 strspn(id + 1, ALPHABET) == ID_JOB_LEN - 2;
        for (size_t p = 0; p < ID_JOB_LEN - 1; p++) {
            seen[p][(unsigned char)id[p]]++;
        }
        /* the last character's low 2 bits: Q (01) and w (11) have the lower one set */
        bool q = id[ID_JOB_LEN - 2] == 'Q' || id[ID_JOB_LEN - 2] == 'w';
        bool odd = (id[0] - '0') % 2 == 1;
        odd_with_q += odd && q;
        odd_without_q += odd && !q;
        even_with_q += !odd && q;
    }
    CHECK(shaped);
    qsort(ids, N_IDS, sizeof ids[0], by_text);
    size_t repeats = 0;
    for (size_t i = 1; i < N_IDS; i++) {
        repeats += strcmp(ids[i - 1], ids[i]) == 0;
    }
    CHECK_INT(repeats, 0);
    /* the digit: each of the ten (about 400 times each in 4000) */
    for (char d = '0'; d <= '9'; d++) {
        CHECK(seen[0][(unsigned char)d] > 200);
    }
    /* positions 1 to 21 hold 6 random bits each: every letter of the alphabet (about 62 times) */
    size_t missing = 0;
    for (size_t p = 1; p < ID_JOB_LEN - 2; p++) {
        for (const char *c = ALPHABET; *c != '\0'; c++) {
            missing += seen[p][(unsigned char)*c] < 10;
        }
    }
    CHECK_INT(missing, 0);
    /* the last holds the 128th and 127th bits, followed by four zero bits: A, Q, g or w */
    const unsigned *last = seen[ID_JOB_LEN - 2];
    CHECK_INT(last['A'] + last['Q'] + last['g'] + last['w'], N_IDS);
    CHECK(last['A'] > 500 && last['Q'] > 500 && last['g'] > 500 && last['w'] > 500);
    /* the digit comes from a byte of its own, not from the last ones (about 1000 ids each) */
    CHECK(odd_with_q > 500 && odd_without_q > 500 && even_with_q > 500);
}

static void test_worker_ids(void)
{
    char a[300], b[300], host[256] = "";
    CHECK_INT(id_worker(a, sizeof a), 0);
    CHECK_INT(id_worker(b, sizeof b), 0);
    CHECK(gethostname(host, sizeof host - 1) == 0);
    char want[300];
    int n = snprintf(want, sizeof want, "%s:%ld:", host, (long)getpid());
    CHECK(strncmp(a, want, (size_t)n) == 0);
    CHECK_INT(strlen(a), n + 8);
    CHECK_INT(strspn(a + n, "0123456789abcdef"), 8);
    CHECK(strcmp(a, b) != 0); /* the random part differs */
    CHECK(strncmp(b, want, (size_t)n) == 0);
    char small[8];
    CHECK_INT(id_worker(small, sizeof small), 0); /* cut to fit, terminated */
    CHECK_INT(strlen(small), 7);
}

static volatile sig_atomic_t stop_at_alarm; /* set by on_stop_alarm() */

static void on_alarm(int sig)
{
    (void)sig;
}

static void on_stop_alarm(int sig)
{
    stop_at_alarm = sig;
}

/* SIGALRM to `handler` (no SA_RESTART) in 50 ms; the handler it had in *old. */
static void alarm_in_50ms(void (*handler)(int), struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, old) == 0);
    struct itimerval it = {.it_value = {.tv_sec = 0, .tv_usec = 50000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
}

static void test_clocks(void)
{
    long wall = clock_wall_ms(), now = (long)time(NULL) * 1000;
    CHECK(wall >= now - 1000 && wall <= now + 2000); /* the Unix epoch's, not the boot's */
    long us = clock_mono_us(), ms = clock_mono_ms();
    CHECK(ms - us / 1000 >= 0 && ms - us / 1000 < 1000);
    CHECK(clock_boot_ms() >= ms - 1); /* CLOCK_BOOTTIME: never behind CLOCK_MONOTONIC */

    long t0 = clock_mono_us();
    clock_sleep_ms(0);
    clock_sleep_ms(-5);
    CHECK(clock_mono_us() - t0 < 5000);

    t0 = clock_mono_us();
    clock_sleep_ms(30);
    long slept = clock_mono_us() - t0;
    CHECK(slept >= 30000);

    /* a signal 50 ms into a 300 ms sleep (no SA_RESTART): the sleep goes on to its end */
    struct sigaction old;
    alarm_in_50ms(on_alarm, &old);
    t0 = clock_mono_us();
    clock_sleep_ms(300);
    slept = clock_mono_us() - t0;
    CHECK(slept >= 300000);
    if (slept < 300000) {
        fprintf(stderr, "slept %ld us of 300000\n", slept);
    }
    sigaction(SIGALRM, &old, NULL);
}

/* clock_nap_ms(): the whole time when no stop comes, none when one was asked, and a stop asked
 * 50 ms into a 2-s nap ends it within a nap (CLOCK_NAP_MS) of it. */
static void test_nap(void)
{
    long t0 = clock_mono_us();
    clock_nap_ms(250, &stop_at_alarm);
    CHECK(clock_mono_us() - t0 >= 250000);

    struct sigaction old;
    alarm_in_50ms(on_stop_alarm, &old);
    t0 = clock_mono_us();
    clock_nap_ms(2000, &stop_at_alarm);
    long slept = clock_mono_us() - t0;
    CHECK(stop_at_alarm == SIGALRM);
    CHECK(slept >= 50000 && slept < 1000000);
    t0 = clock_mono_us();
    clock_nap_ms(2000, &stop_at_alarm); /* asked already: at once */
    CHECK(clock_mono_us() - t0 < 5000);
    sigaction(SIGALRM, &old, NULL);
}

/* clock_jitter_ms(): every draw within its bounds, both bounds drawn, the lower one alone when
 * the upper is not above it, and two seeds (two workers) drawing apart. */
static void test_jitter(void)
{
    unsigned seed = 1, other = 2;
    int seen[3] = {0}, same = 0;
    for (int i = 0; i < 300; i++) {
        long ms = clock_jitter_ms(4500, 4502, &seed);
        CHECK(ms >= 4500 && ms <= 4502);
        if (ms >= 4500 && ms <= 4502) {
            seen[ms - 4500]++;
        }
        same += clock_jitter_ms(0, 600000, &other) == clock_jitter_ms(0, 600000, &seed);
    }
    CHECK(seen[0] > 50 && seen[1] > 50 && seen[2] > 50);
    CHECK(same < 3);
    CHECK_INT(clock_jitter_ms(7, 7, &seed), 7);
    CHECK_INT(clock_jitter_ms(7, 3, &seed), 7);
}

int main(void)
{
    test_job_ids();
    test_worker_ids();
    test_clocks();
    test_nap();
    test_jitter();
    return check_summary("id");
}
