#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

enum log_level log_threshold = LOG_LEVEL_INFO;
enum log_format log_output = LOG_FORMAT_TEXT;

static long log_pid;                    /* 0: lines carry no pid */
static _Thread_local char log_job[128]; /* "": no job context */

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"text", "json"};

#define TRUNCATED_MARK    ",\"log_truncated\":true}"
#define BYTES_MARK_MAX    48 /* ,"log_truncated_bytes":N in JSON, " log_truncated_bytes=N" */
#define MAX_NUMBER_DIGITS 18 /* digits before the point of a value written as a JSON number */
#define MAX_FRACTION      9  /* digits after it */

int log_parse_level(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_parse_format(const char *s, enum log_format *out)
{
    for (int i = 0; i < 2; i++) {
        if (strcmp(s, format_names[i]) == 0) {
            *out = (enum log_format)i;
            return 0;
        }
    }
    return -1;
}

void log_set_pid(long pid)
{
    log_pid = pid;
}

void log_set_job(const char *job_id)
{
    snprintf(log_job, sizeof log_job, "%s", job_id != NULL ? job_id : "");
}

/* Whether the fields name a job_id already (a key of theirs, not text inside a value). */
static bool has_job_id(const char *fields);

/* Formats the fields, after `job_id=<context>` when this thread runs a job they do not name.
 * Returns how many bytes of them did not fit `cap` (0: none). */
__attribute__((format(printf, 3, 0))) static size_t format_fields(char *out, size_t cap,
                                                                  const char *fmt, va_list ap)
{
    out[0] = '\0';
    size_t dropped = 0;
    if (fmt != NULL) {
        int full = vsnprintf(out, cap, fmt, ap);
        dropped = full > 0 && (size_t)full >= cap ? (size_t)full - (cap - 1) : 0;
    }
    if (log_job[0] == '\0' || has_job_id(out)) {
        return dropped;
    }
    char q[sizeof log_job + 16];
    log_quote(log_job, q, sizeof q);
    size_t qlen = strlen(q), len = strlen(out);
    if (qlen + 9 >= cap) {
        return dropped;
    }
    size_t keep = len + qlen + 9 >= cap ? cap - qlen - 9 : len; /* cut the end of long fields */
    dropped += len - keep;
    len = keep;
    memmove(out + 7 + qlen + 1, out, len);
    memcpy(out, "job_id=", 7);
    memcpy(out + 7, q, qlen);
    if (len > 0) {
        out[7 + qlen] = ' ';
    }
    out[7 + qlen + (len > 0) + len] = '\0';
    return dropped;
}

/* ---------------------------------------------------------------- a JSON writer */

/* A bounded output buffer: a write that does not fit sets `over` and writes nothing. */
struct jbuf {
    char *p;
    size_t cap, len;
    bool over;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->over || n > b->cap - b->len) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void jb_puts(struct jbuf *b, const char *s)
{
    jb_put(b, s, strlen(s));
}

/* One ASCII byte as JSON string content. */
static void jb_ascii(struct jbuf *b, unsigned char c)
{
    char esc[8];
    const char *named = c == '"'    ? "\\\""
                        : c == '\\' ? "\\\\"
                        : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t"
                                    : NULL;
    if (named != NULL) {
        jb_puts(b, named);
    } else if (c < 0x20 || c == 0x7f) {
        snprintf(esc, sizeof esc, "\\u%04x", c);
        jb_puts(b, esc);
    } else {
        jb_put(b, (const char *)&c, 1);
    }
}

/* The length of what at `s` (`n` > 0 bytes left) a line must not hold as it is: a control
 * character (C0, DEL, C1) or a byte that is not UTF-8, and U+2028 and U+2029, line breaks to many
 * readers as C1's NEL is (Python's splitlines(), JavaScript): a job's URL in an error would start
 * a line of its own there. 0 when the character at `s` is safe. */
static size_t unsafe_len(const unsigned char *s, size_t n)
{
    size_t len = utf8_seq(s, n);
    if (len == 0) {
        return 1;
    }
    if (len == 1) {
        return s[0] < 0x20 || s[0] == 0x7f ? 1 : 0;
    }
    if (len == 2 && s[0] == 0xc2 && s[1] < 0xa0) {
        return 2;
    }
    if (len == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9)) {
        return 3;
    }
    return 0;
}

/* `n` bytes as a JSON string: escaped (C1 controls, U+2028 and U+2029 as \uXXXX too), with every
 * byte that is not UTF-8 as U+FFFD. */
static void jb_string(struct jbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    jb_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(u + i, n - i);
        if (len == 1) {
            jb_ascii(b, u[i]);
        } else if (len > 1 && unsafe_len(u + i, n - i) > 0) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x",
                     len == 2 ? u[i + 1] : 0x2000u | (u[i + 2] & 0x3fu));
            jb_puts(b, esc);
        } else if (len > 1) {
            jb_put(b, s + i, len);
        } else {
            jb_puts(b, "\\ufffd");
        }
        i += len > 0 ? len : 1;
    }
    jb_put(b, "\"", 1);
}

/* ---------------------------------------------------------------- key=value fields */

/* One field of the text form. A bare word (no valid key before '=') has klen 0. */
struct token {
    const char *key, *val;
    size_t klen, vlen;
    bool quoted;
};

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* The length of a quoted value's inside, from just after its opening quote to the closing one
 * (or to the end of the text, when a cut line lost it); *end is set after the closing quote. */
static size_t quoted_len(const char *s, const char **end)
{
    size_t i = 0;
    while (s[i] != '\0' && s[i] != '"') {
        i += s[i] == '\\' && s[i + 1] != '\0' ? 2 : 1;
    }
    *end = s[i] == '"' ? s + i + 1 : s + i;
    return i;
}

/* Reads the field at *p (after spaces) and moves *p past it. Returns false at the end. */
static bool next_token(const char **p, struct token *t)
{
    const char *s = *p + strspn(*p, " ");
    if (*s == '\0') {
        *p = s;
        return false;
    }
    size_t k = 0;
    while (key_char(s[k])) {
        k++;
    }
    memset(t, 0, sizeof *t);
    if (k > 0 && s[k] == '=') {
        t->key = s;
        t->klen = k;
        s += k + 1;
    }
    if (t->klen > 0 && *s == '"') {
        t->quoted = true;
        t->val = s + 1;
        t->vlen = quoted_len(s + 1, p);
        return true;
    }
    t->val = s;
    t->vlen = strcspn(s, " ");
    *p = s + t->vlen;
    return true;
}

static bool has_job_id(const char *fields)
{
    const char *p = fields;
    struct token t;
    while (next_token(&p, &t)) {
        if (t.klen == 6 && memcmp(t.key, "job_id", 6) == 0) {
            return true;
        }
    }
    return false;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes a quoted value's inside (\" \\ \xNN) into `out`; returns the length (cut at `cap`). */
static size_t unquote(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o < cap; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            c = s[++i];
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (c == 'x' && hi >= 0 && lo >= 0) {
                c = (char)(hi * 16 + lo);
                i += 2;
            }
        }
        out[o++] = c;
    }
    return o;
}

/* Whether an unquoted value is a plain decimal number, written as a JSON number. */
static bool plain_number(const char *s, size_t n)
{
    size_t i = n > 0 && s[0] == '-' ? 1 : 0, digits = 0, frac = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
        digits++;
    }
    size_t first = s[0] == '-' ? 1 : 0;
    if (digits == 0 || digits > MAX_NUMBER_DIGITS || (digits > 1 && s[first] == '0')) {
        return false;
    }
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            frac++;
        }
        if (frac == 0 || frac > MAX_FRACTION) {
            return false;
        }
    }
    return i == n;
}

static void jb_key(struct jbuf *b, const char *key, size_t klen)
{
    static const char *const reserved[] = {"ts", "level", "event", "pid"};
    char name[256];
    size_t n = klen < sizeof name - 2 ? klen : sizeof name - 2;
    size_t off = 0;
    for (size_t i = 0; i < 4; i++) {
        if (strlen(reserved[i]) == klen && memcmp(reserved[i], key, klen) == 0) {
            name[off++] = '_';
        }
    }
    memcpy(name + off, key, n);
    jb_put(b, ",", 1);
    jb_string(b, name, off + n);
    jb_put(b, ":", 1);
}

/* Whether a key names an identifier ("id", "worker", "*_id"), whose value stays a JSON string
 * even when it looks like a number: a job id "123" is not the number 123. */
static bool identifier_key(const char *key, size_t klen)
{
    return (klen == 2 && memcmp(key, "id", 2) == 0) ||
           (klen == 6 && memcmp(key, "worker", 6) == 0) ||
           (klen > 3 && memcmp(key + klen - 3, "_id", 3) == 0);
}

/* One member: the token's value, then `tail` (bare words that continue it, as written). */
static void jb_member(struct jbuf *b, const struct token *t, const char *tail, size_t tail_len)
{
    jb_key(b, t->klen > 0 ? t->key : "msg", t->klen > 0 ? t->klen : 3);
    if (!t->quoted && tail_len == 0) {
        if (!identifier_key(t->key, t->klen) && plain_number(t->val, t->vlen)) {
            jb_put(b, t->val, t->vlen);
        } else {
            jb_string(b, t->val, t->vlen);
        }
        return;
    }
    if (!t->quoted) {
        jb_string(b, t->val, (size_t)(tail - t->val) + tail_len);
        return;
    }
    char value[LOG_TEXT_MAX];
    size_t n = unquote(t->val, t->vlen, value, sizeof value);
    size_t more = tail_len < sizeof value - n ? tail_len : sizeof value - n;
    memcpy(value + n, tail, more);
    jb_string(b, value, n + more);
}

/* Extends a field with the bare words after it; returns where they start (their text runs to
 * *p) and sets *len. */
static const char *continuation(const char **p, size_t *len)
{
    const char *start = *p, *end = *p;
    for (;;) {
        const char *at = *p;
        struct token u;
        if (!next_token(p, &u) || u.klen > 0) {
            *p = at;
            break;
        }
        end = *p;
    }
    *len = (size_t)(end - start);
    return start;
}

/* Appends a member for every field of `fields`; returns the bytes of text of those left out
 * (0: none was). */
static size_t jb_fields(struct jbuf *b, const char *fields)
{
    size_t lost = 0;
    const char *p = fields;
    struct token t;
    while (next_token(&p, &t)) {
        const char *start = t.klen > 0 ? t.key : t.val;
        size_t tail_len;
        const char *tail = continuation(&p, &tail_len);
        size_t mark = b->len;
        jb_member(b, &t, tail, tail_len);
        if (b->over) {
            b->len = mark;
            b->over = false;
            lost += (size_t)(p - start);
        }
    }
    return lost;
}

/* log_line_json(), for fields of which `dropped` bytes were cut off already. */
static size_t json_line(char *out, size_t cap, const char *ts, enum log_level level,
                        const char *event, long pid, const char *fields, size_t dropped)
{
    /* room for the marks: with the count of bytes lost when the line is not tiny */
    size_t reserve = sizeof TRUNCATED_MARK + (cap >= 512 ? BYTES_MARK_MAX : 0);
    struct jbuf b = {out, cap - reserve, 0, false};
    char num[BYTES_MARK_MAX]; /* the longer of the pid and the bytes-lost members */
    jb_puts(&b, "{\"ts\":");
    jb_string(&b, ts, strlen(ts));
    jb_puts(&b, ",\"level\":");
    jb_string(&b, level_names[level], strlen(level_names[level]));
    jb_puts(&b, ",\"event\":");
    jb_string(&b, event, strlen(event));
    if (pid > 0) {
        snprintf(num, sizeof num, ",\"pid\":%ld", pid);
        jb_puts(&b, num);
    }
    bool cut = b.over; /* the head never fills 64 bytes unless the event name is huge */
    if (cut) {
        b.len = 0;
        b.over = false;
        jb_puts(&b, "{\"event\":\"log_line_too_long\"");
    }
    size_t lost = dropped + (fields != NULL ? jb_fields(&b, fields) : 0);
    b.cap = cap - 1;
    if (cut || lost > 0) {
        jb_puts(&b, ",\"log_truncated\":true");
    }
    if (lost > 0) {
        snprintf(num, sizeof num, ",\"log_truncated_bytes\":%zu", lost);
        size_t mark = b.len;
        jb_puts(&b, num);
        if (b.over) { /* a tiny line: the mark alone */
            b.len = mark;
            b.over = false;
        }
    }
    jb_puts(&b, "}");
    out[b.len] = '\0';
    return b.len;
}

size_t log_line_json(char *out, size_t cap, const char *ts, enum log_level level, const char *event,
                     long pid, const char *fields)
{
    return json_line(out, cap, ts, level, event, pid, fields, 0);
}

/* ---------------------------------------------------------------- writing */

/* "2026-11-28T06:01:02" (at most 20 bytes) of the second `sec`, formatted once a second per
 * thread: a worker logs several lines a millisecond. */
static const char *time_base(time_t sec, size_t *len)
{
    static _Thread_local time_t cached_sec;
    static _Thread_local bool cached;
    static _Thread_local char base[24];
    static _Thread_local size_t base_len;
    if (!cached || sec != cached_sec) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        char full[32];
        strftime(full, sizeof full, "%Y-%m-%dT%H:%M:%S", &tm);
        base_len = (size_t)snprintf(base, sizeof base, "%.20s", full);
        cached_sec = sec;
        cached = true;
    }
    *len = base_len;
    return base;
}

/* The line's time stamp, "2026-11-28T06:01:02.345Z", into `out` (at least 26 bytes). */
static void format_time(char *out)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    size_t n;
    const char *base = time_base(tv.tv_sec, &n);
    int ms = (int)(tv.tv_usec / 1000) % 1000;
    memcpy(out, base, n);
    out[n] = '.';
    out[n + 1] = (char)('0' + ms / 100);
    out[n + 2] = (char)('0' + ms / 10 % 10);
    out[n + 3] = (char)('0' + ms % 10);
    out[n + 4] = 'Z';
    out[n + 5] = '\0';
}

/* Writes the whole line with one write(2) where the kernel allows (pipes: up to PIPE_BUF). */
static void write_line(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

/* Appends the C string `s` to the `*n` bytes of `out`, cut to fit `cap` with its NUL (as
 * snprintf cuts). */
static void put(char *out, size_t cap, size_t *n, const char *s)
{
    size_t len = strlen(s), room = cap - 1 - *n;
    len = len < room ? len : room;
    memcpy(out + *n, s, len);
    *n += len;
    out[*n] = '\0';
}

/* Cuts the key=value text `f` to at most `keep` bytes where it stays readable: not inside a
 * UTF-8 sequence, nor inside an escape (\" \\ \xNN) of a quoted value, whose quote it closes
 * then (one byte past what is kept: `f` must have room for it). Returns how many bytes of `f` are
 * kept. */
static size_t cut_fields(char *f, size_t keep)
{
    size_t n = strlen(f);
    keep = keep < n ? keep : n;
    size_t s = keep; /* back over the continuation bytes at the end to their lead byte */
    while (s > 0 && keep - s < 3 && ((unsigned char)f[s - 1] & 0xc0) == 0x80) {
        s--;
    }
    if (s > 0 && (unsigned char)f[s - 1] >= 0xc0) {
        unsigned char lead = (unsigned char)f[s - 1];
        size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
        keep = keep - (s - 1) < want ? s - 1 : keep;
    }
    f[keep] = '\0';
    const char *p = f;
    struct token t, last = {0};
    while (next_token(&p, &t)) {
        last = t;
    }
    if (!last.quoted || last.val[last.vlen] == '"') {
        return keep; /* the cut is not inside a quoted value */
    }
    size_t i = 0;
    while (i < last.vlen) {
        size_t esc = last.val[i] != '\\' ? 1 : last.val[i + 1] == 'x' ? 4 : 2;
        if (i + esc > last.vlen) {
            break;
        }
        i += esc;
    }
    keep = (size_t)(last.val - f) + i;
    f[keep] = '"';
    f[keep + 1] = '\0';
    return keep;
}

/* "ts=... level=... event=...[ pid=...][ fields]", at most cap - 1 bytes. When the fields do
 * not fit, or `dropped` bytes of them were cut off already, they are cut (cut_fields()) and the
 * line ends with " log_truncated_bytes=N": the bytes of the fields the line lost. */
static size_t text_line(char *out, size_t cap, const char *ts, enum log_level level,
                        const char *event, char *fields, size_t dropped)
{
    size_t n = 0;
    out[0] = '\0';
    put(out, cap, &n, "ts=");
    put(out, cap, &n, ts);
    put(out, cap, &n, " level=");
    put(out, cap, &n, level_names[level]);
    put(out, cap, &n, " event=");
    put(out, cap, &n, event);
    if (log_pid > 0) {
        char pid[32];
        snprintf(pid, sizeof pid, " pid=%ld", log_pid);
        put(out, cap, &n, pid);
    }
    size_t len = strlen(fields);
    if (len == 0 || n + 2 + BYTES_MARK_MAX >= cap) {
        return n;
    }
    if (dropped > 0 || n + 1 + len > cap - 1) {
        size_t kept = cut_fields(fields, cap - 1 - n - 1 - 1 - BYTES_MARK_MAX);
        dropped += len - kept;
    }
    put(out, cap, &n, " ");
    put(out, cap, &n, fields);
    if (dropped > 0) {
        char mark[BYTES_MARK_MAX];
        snprintf(mark, sizeof mark, " log_truncated_bytes=%zu", dropped);
        put(out, cap, &n, mark);
    }
    return n;
}

void log_event(enum log_level level, const char *event, const char *fields, ...)
{
    char ts[40];
    char text[LOG_TEXT_MAX];
    char line[LOG_JSON_MAX];
    format_time(ts);
    va_list ap;
    va_start(ap, fields);
    size_t dropped = format_fields(text, sizeof text, fields, ap);
    va_end(ap);
    size_t n;
    if (log_output == LOG_FORMAT_JSON) {
        n = json_line(line, sizeof line - 1, ts, level, event, log_pid, text, dropped);
    } else {
        n = text_line(line, LOG_TEXT_MAX - 1, ts, level, event, text, dropped);
    }
    line[n++] = '\n';
    write_line(line, n);
}

static bool needs_quotes(const char *s)
{
    if (*s == '\0') {
        return true;
    }
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i += utf8_seq(u + i, n - i)) {
        if (u[i] <= ' ' || u[i] == '=' || u[i] == '"' || unsafe_len(u + i, n - i) > 0) {
            return true; /* unsafe_len() is 1 where utf8_seq() is 0: never a step of 0 */
        }
    }
    return false;
}

const char *log_quote(const char *s, char *out, unsigned cap)
{
    if (s == NULL) {
        s = "";
    }
    if (!needs_quotes(s)) {
        snprintf(out, cap, "%s", s);
        return out;
    }
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    unsigned o = 0;
    out[o++] = '"';
    while (i < n) {
        unsigned char c = u[i];
        size_t bad = unsafe_len(u + i, n - i), len = bad > 0 ? bad : utf8_seq(u + i, n - i);
        unsigned width = bad > 0 ? 4 * (unsigned)bad : c == '"' || c == '\\' ? 2 : (unsigned)len;
        if (o + width + 5 > cap) {
            break; /* room for it, then "...", the closing quote and the NUL */
        }
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (bad > 0) {
            for (size_t k = 0; k < bad; k++) {
                o += (unsigned)snprintf(out + o, cap - o, "\\x%02x", u[i + k]);
            }
        } else {
            memcpy(out + o, s + i, len);
            o += (unsigned)len;
        }
        i += len;
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
