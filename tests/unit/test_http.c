#include <stdio.h>

#include "check.h"
#include "http.h"

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

int main(void)
{
    test_retry_after();
    return check_summary("http");
}
