/* The log line formats: key=value fields converted to JSON members (quoting, escapes, numbers,
 * continuation words, UTF-8, truncation), and log_event() writing one line. */
#include <json-c/json.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

#define TS "2026-11-28T06:01:02.345Z"

/* The JSON line for `fields`, into a static buffer. */
static const char *json_of(const char *fields)
{
    static char out[LOG_JSON_MAX];
    log_line_json(out, sizeof out, TS, LOG_LEVEL_INFO, "e", 0, fields);
    return out;
}

/* Whether `line` is one JSON object that json-c parses completely. */
static bool valid_json(const char *line)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, line, (int)strlen(line));
    bool ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
              (size_t)json_tokener_get_parse_end(tok) == strlen(line) &&
              json_object_is_type(o, json_type_object);
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

struct json_case {
    const char *fields;
    const char *want; /* the members after "event" */
};

static const struct json_case cases[] = {
    {"", ""},
    {"job_id=abc ms=12", ",\"job_id\":\"abc\",\"ms\":12"},
    /* numbers: plain decimals only */
    {"a=0 b=-3 c=007 d=1.5 e=1e5 f=1. g=- h=+1 i=0x10",
     ",\"a\":0,\"b\":-3,\"c\":\"007\",\"d\":1.5,\"e\":\"1e5\",\"f\":\"1.\",\"g\":\"-\",\"h\":\"+"
     "1\","
     "\"i\":\"0x10\""},
    /* identifiers stay strings even when they look like numbers */
    {"job_id=123 id=7 worker=42 child_id=9 n=5",
     ",\"job_id\":\"123\",\"id\":\"7\",\"worker\":\"42\",\"child_id\":\"9\",\"n\":5"},
    {"big=1234567890123456789 ok=123456789012345678",
     ",\"big\":\"1234567890123456789\",\"ok\":123456789012345678"},
    /* quoted values are strings, unescaped and escaped again for JSON */
    {"n=\"42\" s=\"a b\" q=\"say \\\"hi\\\"\" bs=\"c:\\\\dir\" ctl=\"x\\x01y\\x0az\\x1f\\x7f\"",
     ",\"n\":\"42\",\"s\":\"a b\",\"q\":\"say \\\"hi\\\"\",\"bs\":\"c:\\\\dir\","
     "\"ctl\":\"x\\u0001y\\nz\\u001f\\u007f\""},
    /* an escape that is not one stays as written: \x4z is x4z */
    {"h=\"\\x4z\"", ",\"h\":\"x4z\""},
    /* the longest fraction a number keeps; a leading zero makes a string */
    {"f=1.123456789 g=1.1234567890 z=00", ",\"f\":1.123456789,\"g\":\"1.1234567890\",\"z\":\"00\""},
    /* "_id" alone is no identifier's suffix; "a_id" is one */
    {"_id=5 a_id=5", ",\"_id\":5,\"a_id\":\"5\""},
    /* no key before '=', a quote that opens no value: bare words */
    {"=x \"a b\" n=1", ",\"msg\":\"=x \\\"a b\\\"\",\"n\":1"},
    {"\"a b\" n=1", ",\"msg\":\"\\\"a b\\\"\",\"n\":1"},
    {"empty= quoted=\"\" last=1", ",\"empty\":\"\",\"quoted\":\"\",\"last\":1"},
    /* a raw value with a backslash was not escaped: it stays as written */
    {"path=C:\\x41", ",\"path\":\"C:\\\\x41\""},
    /* a value logged without log_quote: the words after it belong to it */
    {"error=no such file  code=2", ",\"error\":\"no such file\",\"code\":2"},
    {"error=\"a b\" tail words n=1", ",\"error\":\"a b tail words\",\"n\":1"},
    {"hello world n=1", ",\"msg\":\"hello world\",\"n\":1"},
    {"url=http://h/?a=1&b=2 k=v", ",\"url\":\"http://h/?a=1&b=2\",\"k\":\"v\""},
    /* names that would clash with the line's own members */
    {"ts=1 level=x event=y pid=3 msg=z",
     ",\"_ts\":1,\"_level\":\"x\",\"_event\":\"y\",\"_pid\":3,\"msg\":\"z\""},
    {"PIXQ_REDIS_URL=redis://h:1/0 a.b-c=1", ",\"PIXQ_REDIS_URL\":\"redis://h:1/0\",\"a.b-c\":1"},
    /* a cut line: the quote never closes */
    {"a=1 b=\"unterminated value", ",\"a\":1,\"b\":\"unterminated value\""},
    {"b=\"ends in backslash\\", ",\"b\":\"ends in backslash\\\\\""},
    /* UTF-8 kept, anything else replaced */
    {"u=caf\xc3\xa9 e=\xe2\x82\xac", ",\"u\":\"caf\xc3\xa9\",\"e\":\"\xe2\x82\xac\""},
    {"bad=\xff\xc0\xaf x=\xed\xa0\x80 t=\xe2\x82",
     ",\"bad\":\"\\ufffd\\ufffd\\ufffd\",\"x\":\"\\ufffd\\ufffd\\ufffd\","
     "\"t\":\"\\ufffd\\ufffd\""},
    {"tab=a\tb", ",\"tab\":\"a\\tb\""},
    /* C1 controls (NEL) and U+2028, U+2029 break lines for many readers: escaped, raw or quoted */
    {"a=x\xc2\x85y b=\xe2\x80\xa8 c=\"\\xe2\\x80\\xa9\\xc2\\x9b\" d=\xc2\xa0\xe2\x80\xa7",
     ",\"a\":\"x\\u0085y\",\"b\":\"\\u2028\",\"c\":\"\\u2029\\u009b\",\"d\":"
     "\"\xc2\xa0\xe2\x80\xa7\""},
};

static void test_cases(void)
{
    char want[LOG_JSON_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(want, sizeof want, "{\"ts\":\"" TS "\",\"level\":\"info\",\"event\":\"e\"%s}",
                 cases[i].want);
        const char *got = json_of(cases[i].fields);
        CHECK_STR(got, want);
        CHECK(valid_json(got));
    }
}

/* Whatever log_quote() makes of a string comes back as the same string. */
static void test_round_trip(void)
{
    const char *values[] = {"plain",
                            "with space",
                            "q\"uote",
                            "back\\slash",
                            "nl\nand\ttab\r",
                            "",
                            "a=b",
                            "\x01\x1f\x7f",
                            "\"\\\"",
                            "end\\",
                            "x\\x41",
                            "utf8 \xc3\xa9",
                            "nel\xc2\x85 csi\xc2\x9b ls\xe2\x80\xa8 ps\xe2\x80\xa9"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char q[256], fields[300];
        snprintf(fields, sizeof fields, "v=%s n=1", log_quote(values[i], q, sizeof q));
        const char *line = json_of(fields);
        json_object *o = json_tokener_parse(line);
        json_object *v = NULL, *n = NULL;
        CHECK(o != NULL && json_object_object_get_ex(o, "v", &v));
        CHECK(v != NULL && json_object_is_type(v, json_type_string));
        CHECK_STR(v != NULL ? json_object_get_string(v) : NULL, values[i]);
        CHECK(o != NULL && json_object_object_get_ex(o, "n", &n) &&
              json_object_is_type(n, json_type_int));
        json_object_put(o);
    }
}

/* What a line must not hold as it is (a control character, C1 included, U+2028 and U+2029: line
 * breaks to Python's splitlines(), and a byte that is not UTF-8) is quoted and written \xNN; other
 * UTF-8 is kept. */
static void test_quote_escapes(void)
{
    char q[64];
    CHECK_STR(log_quote("caf\xc3\xa9", q, sizeof q), "caf\xc3\xa9");
    CHECK_STR(log_quote("a\xc2\x85z", q, sizeof q), "\"a\\xc2\\x85z\"");
    CHECK_STR(log_quote("\xe2\x80\xa8\xe2\x80\xa9", q, sizeof q),
              "\"\\xe2\\x80\\xa8\\xe2\\x80\\xa9\"");
    CHECK_STR(log_quote("x\xffy\xc3", q, sizeof q), "\"x\\xffy\\xc3\"");
    CHECK_STR(log_quote("\xc2\xa0\xe2\x80\xa7", q, sizeof q), "\xc2\xa0\xe2\x80\xa7");
    /* the edges of the ranges: US, DEL, the last C1 control */
    CHECK_STR(log_quote("a\x1f", q, sizeof q), "\"a\\x1f\"");
    CHECK_STR(log_quote("a\x7f", q, sizeof q), "\"a\\x7f\"");
    CHECK_STR(log_quote("a\xc2\x9f", q, sizeof q), "\"a\\xc2\\x9f\"");
    /* an empty value is quoted, a backslash in a quoted value is escaped */
    CHECK_STR(log_quote("", q, sizeof q), "\"\"");
    CHECK_STR(log_quote("a\\b c", q, sizeof q), "\"a\\\\b c\"");
    /* the text of a quoted value has no byte a reader takes for a line break */
    const char *v = "u\xc2\x85ts=1 level=error event=forged\xe2\x80\xa8\n";
    log_quote(v, q, sizeof q);
    CHECK(strstr(q, "\xc2\x85") == NULL && strstr(q, "\xe2\x80\xa8") == NULL &&
          strchr(q, '\n') == NULL);
}

/* A value cut to fit stays within `cap` whatever the width of its last escape (a control byte
 * takes 4 bytes: a cut after one wrote 2 bytes past the buffer), and ends in `..."`. */
static void test_quote_cut_fits(void)
{
    const char *fills[] = {
        "\x01",    "\"",       "a b",           "\x01x",     "x\x7f\"",
        "\\\x02 ", "\xc2\x85", "\xe2\x80\xa8x", "\xc3\xa9 ", "=\xf0\x9f\x98\x80"};
    for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
        char long_value[700] = "";
        while (strlen(long_value) + strlen(fills[f]) < sizeof long_value) {
            strcat(long_value, fills[f]);
        }
        for (unsigned cap = 6; cap <= 540; cap++) {
            char out[560];
            memset(out, 0x5a, sizeof out);
            log_quote(long_value, out, cap);
            size_t n = strnlen(out, cap);
            CHECK(n < cap);
            CHECK(n >= 5 && strcmp(out + n - 4, "...\"") == 0);
            CHECK(out[cap] == 0x5a && out[cap + 1] == 0x5a);
        }
    }
}

static void test_head(void)
{
    char out[256];
    log_line_json(out, sizeof out, TS, LOG_LEVEL_ERROR, "job_failed", 4242, "job_id=j1");
    CHECK_STR(out, "{\"ts\":\"" TS "\",\"level\":\"error\",\"event\":\"job_failed\",\"pid\":4242,"
                   "\"job_id\":\"j1\"}");
    log_line_json(out, sizeof out, TS, LOG_LEVEL_DEBUG, "ev\"il", 0, NULL);
    CHECK_STR(out, "{\"ts\":\"" TS "\",\"level\":\"debug\",\"event\":\"ev\\\"il\"}");
    /* an event name too long for the line: a line of its own, marked though no field is lost */
    char event[251];
    memset(event, 'e', sizeof event - 1);
    event[sizeof event - 1] = '\0';
    log_line_json(out, sizeof out, TS, LOG_LEVEL_INFO, event, 0, "a=1");
    CHECK_STR(out, "{\"event\":\"log_line_too_long\",\"a\":1,\"log_truncated\":true}");
}

/* Members that do not fit are left out; the line stays one valid object within `cap`, and says
 * how many bytes of the fields' text it lost (but for a tiny line). */
static void test_truncation(void)
{
    char fields[LOG_TEXT_MAX];
    size_t o = 0, tokens = 0; /* the fields' text without the spaces between them */
    for (int i = 0; o + 40 < sizeof fields; i++) {
        int w = snprintf(fields + o, sizeof fields - o, "field%d=\"value %d\" ", i, i);
        o += (size_t)w;
        tokens += (size_t)w - 1;
    }
    for (size_t cap = 64; cap <= 1024; cap += 37) {
        char *out = malloc(cap);
        size_t n = log_line_json(out, cap, TS, LOG_LEVEL_WARN, "e", 1, fields);
        CHECK(n < cap && strlen(out) == n);
        CHECK(valid_json(out));
        if (cap < 512) {
            CHECK(strstr(out, "\"log_truncated\":true}") != NULL);
            free(out);
            continue;
        }
        CHECK(strstr(out, "\"log_truncated\":true,\"log_truncated_bytes\":") != NULL);
        json_object *obj = json_tokener_parse(out), *v = NULL;
        size_t kept = 0;
        json_object_object_foreach(obj, key, val)
        {
            if (strncmp(key, "field", 5) == 0) {
                kept += strlen(key) + 3 + strlen(json_object_get_string(val));
            }
        }
        CHECK(kept > 0);
        CHECK(json_object_object_get_ex(obj, "log_truncated_bytes", &v));
        CHECK_INT(json_object_get_int64(v), (long long)(tokens - kept));
        json_object_put(obj);
        free(out);
    }
    /* the count from a cap of 512 bytes exactly, not below */
    char edge[512];
    log_line_json(edge, sizeof edge, TS, LOG_LEVEL_WARN, "e", 1, fields);
    CHECK(valid_json(edge) && strstr(edge, ",\"log_truncated_bytes\":") != NULL);
    log_line_json(edge, sizeof edge - 1, TS, LOG_LEVEL_WARN, "e", 1, fields);
    CHECK(valid_json(edge) && strstr(edge, "log_truncated_bytes") == NULL);
    char big[LOG_JSON_MAX];
    log_line_json(big, sizeof big, TS, LOG_LEVEL_WARN, "e", 1, fields);
    CHECK(valid_json(big));
    CHECK(strstr(big, "log_truncated") == NULL);
    /* control characters grow sixfold: a value too long for the line is left out entirely */
    char ctl[2000];
    memset(ctl, 0, sizeof ctl);
    memcpy(ctl, "a=1 c=", 6);
    memset(ctl + 6, '\x01', sizeof ctl - 7);
    char small[2048];
    log_line_json(small, sizeof small, TS, LOG_LEVEL_INFO, "e", 0, ctl);
    CHECK(valid_json(small));
    CHECK(strstr(small, "\"a\":1,\"log_truncated\":true,\"log_truncated_bytes\":1995}") != NULL);
}

static void test_parse(void)
{
    enum log_format f = LOG_FORMAT_TEXT;
    CHECK_INT(log_parse_format("json", &f), 0);
    CHECK_INT(f, LOG_FORMAT_JSON);
    CHECK_INT(log_parse_format("text", &f), 0);
    CHECK_INT(f, LOG_FORMAT_TEXT);
    CHECK_INT(log_parse_format("JSON", &f), -1);
    enum log_level l = LOG_LEVEL_INFO;
    CHECK_INT(log_parse_level("warn", &l), 0);
    CHECK_INT(l, LOG_LEVEL_WARN);
    CHECK_INT(log_parse_level("verbose", &l), -1);
    const char *names[] = {"debug", "info", "warn", "error"}; /* every level, as README names */
    for (int i = 0; i < 4; i++) {
        l = (enum log_level) - 1;
        CHECK_INT(log_parse_level(names[i], &l), 0);
        CHECK_INT(l, i);
    }
    CHECK_INT(log_parse_level("ERROR", &l), -1);
}

/* Reads what log_event() wrote to stderr (a pipe) while `fn` ran. */
static void capture(void (*fn)(void), char *out, size_t cap)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fds[0]);
}

static void emit_json(void)
{
    char q[64];
    log_output = LOG_FORMAT_JSON;
    log_set_pid(77);
    LOG_INFO("job_done", "job_id=%s ms=%d error=%s", "j-1", 12, log_quote("a \"b\"", q, sizeof q));
    LOG_DEBUG("dropped", "x=1"); /* below the threshold */
    log_set_pid(0);
    log_output = LOG_FORMAT_TEXT;
}

static void emit_text(void)
{
    log_set_pid(9);
    LOG_WARN("w", "k=v");
    log_set_pid(0);
    LOG_INFO("bare", NULL);
}

static void emit_in_job(void)
{
    log_set_job("job 7");
    LOG_INFO("in_job", "cmd=GET ms=%d", 3);
    LOG_INFO("named", "job_id=other n=1");
    LOG_INFO("bare", NULL);
    /* a job's text naming a job_id inside a quoted value, or as part of a key, names none */
    char q[64];
    LOG_INFO("forged", "url=%s", log_quote("http://h/ job_id=victim", q, sizeof q));
    LOG_INFO("suffix", "xjob_id=1 job_idx=2 bucket=b");
    static char big[5000];
    memset(big, 'a', sizeof big - 1);
    LOG_INFO("long", "v=%s", big);
    log_set_job(NULL);
    LOG_INFO("after", "x=1");
    static char exact[LOG_TEXT_MAX - 1]; /* "v=" and these: one byte more than the fields hold */
    memset(exact, 'c', sizeof exact - 1);
    LOG_INFO("exact", "v=%s", exact);
}

/* The bytes a text line's fields `f` (up to its newline) kept, plus those its
 * log_truncated_bytes says it lost; -1 when they do not start `head` or have no such mark. */
static long lost_bytes(const char *f, const char *head)
{
    const char *mark = strstr(f, " log_truncated_bytes=");
    if (strncmp(f, head, strlen(head)) != 0 || mark == NULL || mark > f + strcspn(f, "\n")) {
        return -1;
    }
    return (long)(mark - f) + strtol(mark + 21, NULL, 10);
}

/* The job context: lines that name no job get job_id first. */
static void test_job_context(void)
{
    static char out[4 * LOG_JSON_MAX];
    capture(emit_in_job, out, sizeof out);
    CHECK(strstr(out, " event=in_job job_id=\"job 7\" cmd=GET ms=3\n") != NULL);
    CHECK(strstr(out, " event=named job_id=other n=1\n") != NULL);
    CHECK(strstr(out, " event=bare job_id=\"job 7\"\n") != NULL);
    CHECK(strstr(out, " event=forged job_id=\"job 7\" url=\"http://h/ job_id=victim\"\n") != NULL);
    CHECK(strstr(out, " event=suffix job_id=\"job 7\" xjob_id=1 job_idx=2 bucket=b\n") != NULL);
    CHECK(strstr(out, " event=after x=1\n") != NULL);
    const char *lng = strstr(out, " event=long job_id=\"job 7\" v=aaaa");
    CHECK(lng != NULL);
    size_t len = lng != NULL ? strcspn(lng, "\n") : 0;
    CHECK(len > 3000 && len < LOG_TEXT_MAX);
    /* the bytes lost: of the fields with the job_id before them, and of fields cut by one */
    CHECK_INT(lost_bytes(lng + 12, "job_id=\"job 7\" v="), 14 + 1 + 2 + 4999);
    const char *exact = strstr(out, " event=exact ");
    CHECK_INT(exact != NULL ? lost_bytes(exact + 13, "v=") : 0, 2 + LOG_TEXT_MAX - 2);
}

static void emit_long(void)
{
    static char big[5000];
    memset(big, 'b', sizeof big - 1);
    LOG_INFO("long", "v=%s", big);
    LOG_INFO("a", "x=1");
    LOG_INFO("b", "y=2");
}

/* A quoted value with escapes (\x01, \") across the cut, then UTF-8 across it. */
static char quoted_big[LOG_TEXT_MAX * 2];
static char utf8_big[LOG_TEXT_MAX * 2];

static void emit_cut_inside(void)
{
    LOG_INFO("quoted", "n=1 error=%s", quoted_big);
    LOG_INFO("utf8", "n=2 v=%s", utf8_big);
}

static void emit_long_json(void)
{
    log_output = LOG_FORMAT_JSON;
    emit_long();
    emit_cut_inside();
    log_output = LOG_FORMAT_TEXT;
}

/* Whether `ts` reads YYYY-MM-DDTHH:MM:SS.mmmZ. */
static bool ts_shape(const char *ts)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        bool ok = shape[i] == 'd' ? ts[i] >= '0' && ts[i] <= '9' : ts[i] == shape[i];
        if (!ok) {
            return false;
        }
    }
    return ts[sizeof shape - 1] == ' ';
}

/* A text line is cut to LOG_TEXT_MAX - 1 bytes with its newline, and ends with
 * " log_truncated_bytes=N", N the bytes of the fields it lost; time stamps have one shape, and
 * lines logged in a row carry the same second or a later one. */
static void test_text_lines(void)
{
    static char out[4 * LOG_TEXT_MAX];
    capture(emit_long, out, sizeof out);
    size_t len = strcspn(out, "\n");
    CHECK(len <= LOG_TEXT_MAX - 2 && len > LOG_TEXT_MAX - 100);
    const char *v = strstr(out, " v=");
    const char *mark = strstr(out, " log_truncated_bytes=");
    CHECK(v != NULL && mark != NULL && mark < out + len);
    if (v != NULL && mark != NULL) {
        size_t kept = strspn(v + 3, "b");
        CHECK(v + 3 + kept == mark); /* the value, then the mark */
        CHECK_INT(strtol(mark + 21, NULL, 10), 4999 - (long)kept);
        CHECK(mark[21 + strspn(mark + 21, "0123456789")] == '\n');
    }
    const char *a = strstr(out, "\nts=");
    const char *b = a != NULL ? strstr(a + 1, "\nts=") : NULL;
    CHECK(a != NULL && b != NULL);
    if (a == NULL || b == NULL) {
        return;
    }
    CHECK(ts_shape(out + 3) && ts_shape(a + 4) && ts_shape(b + 4));
    CHECK(strncmp(out + 3, a + 4, 19) <= 0 && strncmp(a + 4, b + 4, 19) <= 0);
    CHECK(strstr(a, " level=info event=a x=1\n") != NULL);
    CHECK(strstr(b, " level=info event=b y=2\n") != NULL);
}

static char cut_event[LOG_TEXT_MAX];
static char cut_value[LOG_TEXT_MAX * 2];

static void emit_cut(void)
{
    LOG_INFO(cut_event, "v=%s", cut_value);
}

/* The text line of the event `cut_event` with the fields "v=<cut_value>", into `out`; returns
 * where its fields start (NULL: none), the length of its head into *head. */
static const char *cut_line(char *out, size_t cap, size_t *head)
{
    capture(emit_cut, out, cap);
    out[strcspn(out, "\n")] = '\0';
    const char *f = strstr(out, " v=");
    *head = f != NULL ? (size_t)(f - out) : 0;
    return f != NULL ? f + 1 : NULL;
}

/* `value`, of units of `width` bytes (UTF-8 characters, or log_quote() escapes after its quote),
 * cut at every offset of a unit: whole units kept, as many as fit (the cut keeps 51 bytes for
 * the space, the mark and a closing quote), and every byte counted. */
static void check_cut_units(const char *value, size_t width, bool quoted)
{
    static char out[2 * LOG_TEXT_MAX];
    snprintf(cut_value, sizeof cut_value, "%s", value);
    for (size_t shift = 0; shift < 2 * width; shift++) {
        memset(cut_event, 'e', shift + 1);
        cut_event[shift + 1] = '\0';
        size_t head = 0;
        const char *f = cut_line(out, sizeof out, &head);
        const char *mark = f != NULL ? strstr(f, " log_truncated_bytes=") : NULL;
        CHECK(mark != NULL);
        if (mark == NULL) {
            return;
        }
        size_t kept = (size_t)(mark - f) - (quoted ? 1 : 0), room = LOG_TEXT_MAX - 1 - 51 - head;
        CHECK(kept <= room && kept + width > room);
        CHECK_INT((kept - 2 - (quoted ? 1 : 0)) % width, 0);
        CHECK(!quoted || mark[-1] == '"');
        CHECK_INT(lost_bytes(f, "v="), 2 + (long)strlen(value) + (quoted ? 1 : 0));
    }
}

/* Fields cut inside 3- and 4-byte characters and \xNN escapes; fields one byte too long for
 * the line; a head that leaves no room for them. */
static void test_text_cut_units(void)
{
    static char v[LOG_TEXT_MAX * 2], raw[LOG_TEXT_MAX];
    const char *chars[] = {"\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t c = 0; c < 2; c++) {
        size_t w = strlen(chars[c]), o = 0;
        for (; o + w < LOG_TEXT_MAX + 100; o += w) {
            memcpy(v + o, chars[c], w);
        }
        v[o] = '\0';
        check_cut_units(v, w, false);
    }
    memset(raw, '\x01', sizeof raw - 1);
    raw[sizeof raw - 1] = '\0';
    check_cut_units(log_quote(raw, v, sizeof v), 4, true);
    static char out[2 * LOG_TEXT_MAX];
    size_t head = 0;
    snprintf(cut_event, sizeof cut_event, "x");
    size_t len = LOG_TEXT_MAX - 1 - (3 + 24 + 11 + 7 + 1) - 1; /* with the head, cap - 1 + 1 */
    memset(cut_value, 'z', len - 2);
    cut_value[len - 2] = '\0';
    const char *f = cut_line(out, sizeof out, &head);
    CHECK_INT(head, 3 + 24 + 11 + 7 + 1);
    CHECK_INT(f != NULL ? lost_bytes(f, "v=") : 0, (long)len);
    memset(cut_event, 'e', LOG_TEXT_MAX - 50);
    cut_event[LOG_TEXT_MAX - 50] = '\0';
    snprintf(cut_value, sizeof cut_value, "1");
    f = cut_line(out, sizeof out, &head);
    CHECK(f == NULL && strlen(out) == 3 + 24 + 11 + 7 + LOG_TEXT_MAX - 50);
}

/* A text line cut inside a quoted value ends the value where an escape or a UTF-8 character
 * begins, closes its quote, and says how many bytes it lost. */
static void test_text_cut_inside(void)
{
    char q[LOG_TEXT_MAX * 2];
    size_t o = 0;
    while (o + 4 < sizeof q - 1) {
        memcpy(q + o, "a\x01\"", 3); /* log_quote() writes a\x01\" */
        o += 3;
    }
    q[o] = '\0';
    log_quote(q, quoted_big, sizeof quoted_big);
    o = 0;
    while (o + 2 < sizeof utf8_big - 1) {
        memcpy(utf8_big + o, "\xc3\xa9", 2);
        o += 2;
    }
    utf8_big[o] = '\0';
    static char out[4 * LOG_TEXT_MAX];
    capture(emit_cut_inside, out, sizeof out);
    char *nl = strchr(out, '\n');
    CHECK(nl != NULL);
    if (nl == NULL) {
        return;
    }
    *nl = '\0';
    const char *err = strstr(out, " error=\"");
    const char *mark = strstr(out, "\" log_truncated_bytes=");
    CHECK(err != NULL && mark != NULL && strlen(out) <= LOG_TEXT_MAX - 2);
    if (err != NULL && mark != NULL) {
        size_t kept = (size_t)(mark - (err + 8)); /* the value's text before its closing quote */
        CHECK(kept > 3000);
        /* whole escapes only: a\x01\" repeated, cut after one of them */
        for (size_t i = 0; i < kept; i++) {
            CHECK(err[8 + i] == "a\\x01\\\""[i % 7]);
        }
        CHECK_INT(kept % 7 == 1 || kept % 7 == 5 || kept % 7 == 0, 1);
        CHECK_INT(strtol(mark + 22, NULL, 10), (long)(strlen(quoted_big) - 1 - kept));
    }
    char *line2 = nl + 1;
    nl = strchr(line2, '\n');
    CHECK(nl != NULL);
    if (nl == NULL) {
        return;
    }
    *nl = '\0';
    const char *val = strstr(line2, " v=");
    mark = strstr(line2, " log_truncated_bytes=");
    CHECK(val != NULL && mark != NULL);
    if (val != NULL && mark != NULL) {
        size_t kept = (size_t)(mark - (val + 3));
        CHECK(kept > 3000 && kept % 2 == 0); /* whole characters */
        CHECK_INT(strtol(mark + 21, NULL, 10), (long)(strlen(utf8_big) - kept));
    }
}

/* A JSON line of fields longer than LOG_TEXT_MAX stays valid JSON and says how many bytes of
 * them it lost. */
static void test_json_cut(void)
{
    static char out[4 * LOG_JSON_MAX];
    capture(emit_long_json, out, sizeof out);
    char *line = out;
    for (int i = 0; i < 5; i++) {
        char *nl = strchr(line, '\n');
        CHECK(nl != NULL);
        if (nl == NULL) {
            return;
        }
        *nl = '\0';
        CHECK(valid_json(line));
        json_object *o = json_tokener_parse(line), *v = NULL, *t = NULL;
        const char *event = json_object_get_string(json_object_object_get(o, "event"));
        if (strcmp(event, "long") == 0) {
            CHECK(json_object_object_get_ex(o, "v", &v));
            CHECK(json_object_object_get_ex(o, "log_truncated", &t) && json_object_get_boolean(t));
            CHECK(json_object_object_get_ex(o, "log_truncated_bytes", &t));
            CHECK_INT(json_object_get_int64(t), 4999 - (long)strlen(json_object_get_string(v)));
        } else if (strcmp(event, "quoted") == 0 || strcmp(event, "utf8") == 0) {
            CHECK(json_object_object_get_ex(o, "log_truncated_bytes", &t) &&
                  json_object_get_int64(t) > 1000);
        } else {
            CHECK(!json_object_object_get_ex(o, "log_truncated", &t));
        }
        json_object_put(o);
        line = nl + 1;
    }
}

static void test_log_event(void)
{
    char out[LOG_JSON_MAX];
    capture(emit_json, out, sizeof out);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
    out[strlen(out) - 1] = '\0';
    json_object *o = json_tokener_parse(out);
    json_object *v = NULL;
    CHECK(o != NULL);
    CHECK(json_object_object_get_ex(o, "ts", &v) && strlen(json_object_get_string(v)) == 24);
    CHECK(json_object_object_get_ex(o, "level", &v) &&
          strcmp(json_object_get_string(v), "info") == 0);
    CHECK(json_object_object_get_ex(o, "pid", &v) && json_object_get_int(v) == 77);
    CHECK(json_object_object_get_ex(o, "ms", &v) && json_object_get_int(v) == 12);
    CHECK(json_object_object_get_ex(o, "error", &v) &&
          strcmp(json_object_get_string(v), "a \"b\"") == 0);
    json_object_put(o);
    capture(emit_text, out, sizeof out);
    CHECK(strncmp(out, "ts=", 3) == 0);
    CHECK(strstr(out, " level=warn event=w pid=9 k=v\n") != NULL);
    CHECK(strstr(out, " level=info event=bare\n") != NULL);
}

static void emit_bare(void)
{
    LOG_INFO("bare", NULL);
}

static long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* The milliseconds since the epoch a line's "ts=YYYY-MM-DDTHH:MM:SS.mmmZ" says; -1 if none. */
static long long line_ms(const char *line)
{
    int y, mo, d, h, mi, sec, ms, end = 0;
    if (sscanf(line, "ts=%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d, &h, &mi, &sec, &ms, &end) !=
            7 ||
        end != 27) {
        return -1;
    }
    /* days from 1970-01-01 to y-mo-d in the proleptic Gregorian calendar */
    long long yy = mo <= 2 ? y - 1 : y;
    long long era = yy / 400, yoe = yy - era * 400;
    long long doy = (153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5 + d - 1;
    long long days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    return ((days * 24 + h) * 60 + mi) * 60000LL + sec * 1000LL + ms;
}

/* A line's time stamp is the wall clock's, to the millisecond, whichever digits the
 * milliseconds and the seconds have, and across a change of second (the second's text is made
 * once a second). */
static void test_time_stamp(void)
{
    CHECK(line_ms("ts=1970-01-01T00:00:00.000Z") == 0);
    CHECK(line_ms("ts=2026-12-05T22:41:48.147Z") == 1796510508147LL);
    char out[512];
    long long first = now_ms() / 1000;
    bool later = false; /* a line logged in a later second than the first line */
    for (int i = 0; i < 40 || (!later && i < 200); i++) {
        long long before = now_ms();
        later = later || before / 1000 > first;
        capture(emit_bare, out, sizeof out);
        long long after = now_ms(), at = line_ms(out);
        CHECK(before <= at && at <= after);
        if (at < before || at > after) {
            fprintf(stderr, "  %lld not within %lld..%lld: %s", at, before, after, out);
        }
        struct timespec pause = {0, 7000000L + 1000000L * (i % 5)}; /* 7 to 11 ms */
        nanosleep(&pause, NULL);
    }
}

int main(void)
{
    test_cases();
    test_round_trip();
    test_quote_escapes();
    test_quote_cut_fits();
    test_head();
    test_truncation();
    test_parse();
    test_log_event();
    test_time_stamp();
    test_job_context();
    test_text_cut_inside();
    test_text_cut_units();
    test_json_cut();
    test_text_lines();
    return check_summary("log");
}
