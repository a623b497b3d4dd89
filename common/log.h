/* log: one line per event on stderr, `key=value` fields (or JSON), with a level.
 *
 *   LOG_INFO("job_done", "job_id=%s ms=%ld", id, ms);
 *   -> ts=2026-11-28T06:01:02.345Z level=info event=job_done job_id=abc ms=12
 *
 * The level is checked before anything is formatted. Per STYLE.md, common/ logs only at debug
 * level; the programs log where they decide. */
#ifndef PIXQ_LOG_H
#define PIXQ_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

extern enum log_level log_threshold; /* events below it are dropped; default INFO */

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 if `s` is none of them. */
int log_parse_level(const char *s, enum log_level *out);

/* Writes one event line. `fields` is a printf format for the `key=value` pairs (may be NULL).
 * Values that contain spaces or quotes should be passed through log_quote() first. */
void log_event(enum log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes `s` for a key=value line when it needs it (spaces, '=', '"', control characters), into
 * `out` of `cap` bytes; returns `out`. Long values are cut with "...". */
const char *log_quote(const char *s, char *out, unsigned cap);

#define LOG_AT(lvl, event, ...)                                                                    \
    do {                                                                                           \
        if ((lvl) >= log_threshold) {                                                              \
            log_event((lvl), (event), __VA_ARGS__);                                                \
        }                                                                                          \
    } while (0)

#define LOG_DEBUG(event, ...) LOG_AT(LOG_LEVEL_DEBUG, event, __VA_ARGS__)
#define LOG_INFO(event, ...)  LOG_AT(LOG_LEVEL_INFO, event, __VA_ARGS__)
#define LOG_WARN(event, ...)  LOG_AT(LOG_LEVEL_WARN, event, __VA_ARGS__)
#define LOG_ERROR(event, ...) LOG_AT(LOG_LEVEL_ERROR, event, __VA_ARGS__)

#endif
