/* test_upload: the delay before an upload's next attempt (up_backoff_ms, worker/upload.c): full
 * jitter, from 0 to a cap that starts at the base that applies (PIXQ_S3_THROTTLE_RETRY_BASE_MS
 * after a throttling answer, PIXQ_S3_RETRY_BASE_MS after another) and doubles at each attempt up
 * to PIXQ_S3_RETRY_MAX_MS, however many attempts. Each cap is checked by its draws: none above
 * it, and the largest of DRAWS within a tenth of it (all below that by chance: 0.9^2000). */
#include <stdbool.h>
#include <stdio.h>

#include "cfg.h"
#include "check.h"
#include "upload.h"

#define DRAWS 2000 /* per attempt */

static void check_cap(const struct cfg *c, long attempt, bool throttled, long cap)
{
    long least = cap, most = -1;
    for (int i = 0; i < DRAWS; i++) {
        long d = up_backoff_ms(c, attempt, throttled);
        least = d < least ? d : least;
        most = d > most ? d : most;
    }
    bool ok = least >= 0 && most <= cap && most >= cap - cap / 10;
    CHECK(ok);
    if (!ok) {
        fprintf(stderr, "attempt %ld%s: draws from %ld to %ld, cap %ld\n", attempt,
                throttled ? " (throttled)" : "", least, most, cap);
    }
}

/* The defaults: 200 ms, 1 s after a throttling answer, at most 20 s. */
static void test_ladders(void)
{
    struct cfg c = {0};
    c.s3_retry_base_ms = 200;
    c.s3_throttle_retry_base_ms = 1000;
    c.s3_retry_max_ms = 20000;
    static const long plain[] = {200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000};
    static const long throttled[] = {1000, 2000, 4000, 8000, 16000, 20000, 20000};
    for (long i = 0; i < (long)(sizeof plain / sizeof plain[0]); i++) {
        check_cap(&c, i + 1, false, plain[i]);
    }
    for (long i = 0; i < (long)(sizeof throttled / sizeof throttled[0]); i++) {
        check_cap(&c, i + 1, true, throttled[i]);
    }
}

/* The configuration's extremes: a 1-ms base doubled for PIXQ_S3_MAX_ATTEMPTS' largest (100)
 * stops at the largest PIXQ_S3_RETRY_MAX_MS (a day) without overflowing; a base equal to the
 * most; a 1-ms cap still draws 0 or 1. */
static void test_extremes(void)
{
    struct cfg c = {0};
    c.s3_retry_base_ms = 1;
    c.s3_throttle_retry_base_ms = 1;
    c.s3_retry_max_ms = 86400000L;
    check_cap(&c, 1, false, 1);
    check_cap(&c, 2, true, 2);
    check_cap(&c, 27, false, 67108864L);
    check_cap(&c, 28, false, 86400000L);
    check_cap(&c, 99, false, 86400000L);
    check_cap(&c, 100, true, 86400000L);
    c.s3_retry_base_ms = 5000;
    c.s3_throttle_retry_base_ms = 5000;
    c.s3_retry_max_ms = 5000;
    check_cap(&c, 1, false, 5000);
    check_cap(&c, 4, true, 5000);
}

int main(void)
{
    test_ladders();
    test_extremes();
    return check_summary("upload");
}
