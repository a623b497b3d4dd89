/* log: one line per event on stderr, `key=value` fields (or JSON), with a level.
 *
 *   LOG_INFO("job_done", "job_id=%s ms=%ld", id, ms);
 *   -> ts=2026-11-28T06:01:02.345Z level=info event=job_done job_id=abc ms=12
 *   -> {"ts":"2026-11-28T06:01:02.345Z","level":"info","event":"job_done","job_id":"abc","ms":12}
 *
 * The second form is written with log_output = LOG_FORMAT_JSON: the call sites stay the same and
 * their key=value fields become JSON members (see log_line_json()). Each line goes to stderr in
 * one write(2), so lines of several processes sharing stderr do not interleave. The level is
 * checked before anything is formatted. Per STYLE.md, common/ logs at debug level and the
 * programs log where they decide, but for the few decisions common/ makes on its own inside a
 * request, which an operator must hear of and no caller sees: S3 keys reloaded or refused
 * (awscreds.c, s3.c), S3's clock taken for ours (s3.c), a store refusing Expect (http.c). */
#ifndef PIXQ_LOG_H
#define PIXQ_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of a key=value line, with its newline, and of an event's key=value fields in either
 * format: a longer line is cut and ends with " log_truncated_bytes=N" (the bytes it lost). */
#define LOG_TEXT_MAX 4096
#define LOG_JSON_MAX 8192 /* bytes of a JSON line; members that do not fit are left out */

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

enum log_format {
    LOG_FORMAT_TEXT, /* ts=... level=... event=... key=value... */
    LOG_FORMAT_JSON, /* one JSON object per line */
};

extern enum log_level log_threshold; /* events below it are dropped; default INFO */
extern enum log_format log_output;   /* default TEXT */

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 if `s` is none of them. */
int log_parse_level(const char *s, enum log_level *out);

/* Parses "text" or "json". Returns 0, or -1 if `s` is neither. */
int log_parse_format(const char *s, enum log_format *out);

/* From now on every line carries `pid=<pid>` after its event (0: none, the default). A
 * supervisor and its worker processes set it, since their lines share one stderr. */
void log_set_pid(long pid);

/* Until log_set_job(NULL), this thread's lines that name no job_id carry `job_id=<job_id>` (the
 * lines of the code a job runs through, e.g. Redis timings, name no job themselves). The id is
 * copied (at most 127 bytes). */
void log_set_job(const char *job_id);

/* Writes one event line. `fields` is a printf format for the `key=value` pairs (may be NULL).
 * Values that contain spaces or quotes should be passed through log_quote() first. */
void log_event(enum log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes `s` for a key=value line when it needs it (spaces, '=', '"', control characters), into
 * `out` of `cap` bytes (at least 6); returns `out`. Long values are cut with "...". */
const char *log_quote(const char *s, char *out, unsigned cap);

/* Builds the JSON form of one event into `out` (`cap` bytes, at least 64), without a newline:
 * {"ts": ts, "level", "event", "pid"? (when pid > 0), then one member per field of `fields`}.
 * `fields` is the formatted key=value text: a quoted value ("a \"b\" \x01") is unescaped and
 * becomes a JSON string; an unquoted one is a JSON number when it is a plain decimal number
 * (-?(0|[1-9][0-9]*)(.[0-9]+)?, at most 18 digits before and 9 after the point), else a string;
 * a word without '=' continues the value before it (a value logged without log_quote) or, first,
 * becomes "msg". Field names "ts", "level", "event" and "pid" get a leading '_'. Bytes that are not
 * UTF-8 become U+FFFD. Members that do not fit are left out and "log_truncated":true is added,
 * then, when `cap` is at least 512, "log_truncated_bytes": the bytes of text of those members.
 * Returns the length written (always a complete JSON object). */
size_t log_line_json(char *out, size_t cap, const char *ts, enum log_level level, const char *event,
                     long pid, const char *fields);

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
