/* clock: the few time functions pixq needs, in milliseconds. */
#ifndef PIXQ_CLOCK_H
#define PIXQ_CLOCK_H

#include <signal.h>

/* Monotonic milliseconds (for durations and deadlines within one process). */
long clock_mono_ms(void);

/* Milliseconds of a clock that also runs while the machine is suspended (CLOCK_BOOTTIME): for
 * how long ago something held, such as a lease, that Redis counts on its own clock. */
long clock_boot_ms(void);

/* Monotonic microseconds (for short durations logged precisely). */
long clock_mono_us(void);

/* Milliseconds since the Unix epoch (for timestamps shown to people or shared between hosts). */
long clock_wall_ms(void);

/* Sleeps `ms` milliseconds (nothing for ms <= 0), resuming after signals. */
void clock_sleep_ms(long ms);

/* Sleeps `ms` milliseconds in naps of at most CLOCK_NAP_MS, until *stop is set (by a signal
 * handler): a signal that comes between a check and the nap after it is seen at the next check,
 * where one sleep of the whole time would sleep on. */
#define CLOCK_NAP_MS 100
void clock_nap_ms(long ms, const volatile sig_atomic_t *stop);

/* A wait drawn evenly from `lo` to `hi` ms, both included (`lo` when hi <= lo), with rand_r()'s
 * `seed`: the waits of a fleet's workers, spread apart rather than all at once. */
long clock_jitter_ms(long lo, long hi, unsigned *seed);

#endif
