#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

long clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long clock_boot_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_nap_ms(long ms, const volatile sig_atomic_t *stop)
{
    while (ms > 0 && !*stop) {
        long step = ms < CLOCK_NAP_MS ? ms : CLOCK_NAP_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
        nanosleep(&ts, NULL); /* a signal ends it early */
        ms -= step;
    }
}

void clock_sleep_ms(long ms)
{
    if (ms <= 0) {
        return;
    }
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

long clock_jitter_ms(long lo, long hi, unsigned *seed)
{
    if (hi <= lo) {
        return lo;
    }
    unsigned long span = (unsigned long)(hi - lo) + 1;
    return lo + (long)((unsigned long)rand_r(seed) % span);
}
