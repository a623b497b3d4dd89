/* cli (producer/cli.c): what every pixq command shares. --help found before `--` only, the
 * usage and failure lines and their statuses, whole numbers and decimals within bounds (no
 * trailing text, no overflow, no NaN or infinity), PIXQ_QUEUE split or refused, JSON printed on
 * one line with a byte that is not UTF-8 as a visible \\xNN, text from Redis made printable
 * (control characters, DEL, C1 controls and bytes that are not UTF-8 as \xNN; the rest of UTF-8
 * kept), and a time in ms as ISO 8601 UTC. */
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cli.h"

static bool wants_help(const char *a1, const char *a2, const char *a3)
{
    char *argv[] = {"pixq-cmd", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
    return cli_wants_help(argc, argv);
}

static void test_wants_help(void)
{
    CHECK(wants_help("--help", NULL, NULL));
    CHECK(wants_help("-h", NULL, NULL));
    CHECK(wants_help("all", "--json", "-h"));
    CHECK(wants_help("-h", "--", NULL));
    CHECK(!wants_help(NULL, NULL, NULL));
    CHECK(!wants_help("--", "-h", NULL)); /* an operand: a job named -h */
    CHECK(!wants_help("x", "--", "--help"));
    CHECK(!wants_help("-help", "--HELP", "h"));
    char *only_name[] = {"--help", NULL}; /* argv[0] is the command's name, not an argument */
    CHECK(!cli_wants_help(1, only_name));
}

static void test_usage_and_fail(void)
{
    char out[2048];
    check_capture(2);
    int rc = cli_usage("dead", "unknown subcommand '%s'", "frob");
    CHECK_STR(check_captured(2, out, sizeof out),
              "pixq: dead: unknown subcommand 'frob' (usage: pixq dead --help)\n");
    CHECK_INT(rc, CLI_USAGE);
    check_capture(2);
    rc = cli_fail("job: %s after %d s", "still waiting", 3);
    CHECK_STR(check_captured(2, out, sizeof out), "pixq: job: still waiting after 3 s\n");
    CHECK_INT(rc, CLI_FAILED);
    CHECK_INT(CLI_OK, 0);
    /* a long reason is cut, the line still ends as usual */
    char reason[1500];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    check_capture(2);
    cli_usage("job", "%s", reason);
    check_captured(2, out, sizeof out);
    CHECK_INT(strlen(out), strlen("pixq: job:  (usage: pixq job --help)\n") + 511);
    CHECK(strstr(out, "r (usage: pixq job --help)\n") != NULL);
    check_capture(2);
    cli_fail("%s", reason);
    check_captured(2, out, sizeof out);
    CHECK_INT(strlen(out), strlen("pixq: \n") + 1023);
}

static void test_long(void)
{
    long v = -7;
    CHECK(cli_long("5", 0, 10, &v) && v == 5);
    CHECK(cli_long("0", 0, 10, &v) && v == 0);
    CHECK(cli_long("10", 0, 10, &v) && v == 10);
    CHECK(cli_long("-3", -3, 10, &v) && v == -3);
    CHECK(cli_long("9223372036854775807", 0, LONG_MAX, &v) && v == LONG_MAX);
    CHECK(cli_long("010", 0, 10, &v) && v == 10); /* decimal, not octal */
    v = 42;
    const char *bad[] = {"",
                         "11",
                         "-1",
                         "5x",
                         "x5",
                         "0x5",
                         "2.5",
                         "1e3",
                         "5 ",
                         "9223372036854775808",
                         "-9223372036854775809"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool ok = cli_long(bad[i], i == 9 || i == 10 ? LONG_MIN : 0, i >= 9 ? LONG_MAX : 10, &v);
        if (ok) {
            fprintf(stderr, "cli_long took '%s'\n", bad[i]);
        }
        CHECK(!ok);
    }
    CHECK_INT(v, 42); /* left as it was */
}

static void test_double(void)
{
    double v = -7;
    CHECK(cli_double("0.001", 0.001, 1e6, &v) && v == 0.001);
    CHECK(cli_double("1e6", 0.001, 1e6, &v) && v == 1e6);
    CHECK(cli_double("2.5", 0.001, 1e6, &v) && v == 2.5);
    CHECK(cli_double("0x10", 0.001, 1e6, &v) && v == 16); /* strtod's forms: as documented */
    CHECK(cli_double("1.6e1", 0.001, 1e6, &v) && v == 16);
    v = 42;
    const char *bad[] = {"",    "0.0009", "1000000.5", "-1",    "2.5x", "x",   "nan",
                         "inf", "-inf",   "infinity",  "1e400", "NAN",  "1,5", "2.5 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool ok = cli_double(bad[i], i >= 6 ? -INFINITY : 0.001, i >= 6 ? INFINITY : 1e6, &v);
        if (ok) {
            fprintf(stderr, "cli_double took '%s'\n", bad[i]);
        }
        CHECK(!ok);
    }
    /* nothing read, or a number too small for a double: refused, not taken as 0 */
    CHECK(!cli_double("", -1, 1, &v));
    CHECK(!cli_double(" ", -1, 1, &v));
    CHECK(!cli_double("1e-400", -1, 1, &v));
    CHECK(v == 42);
}

static void test_queues(void)
{
    struct cfg cfg;
    cfg_defaults(&cfg);
    struct cfg_queues q;
    snprintf(cfg.queue, sizeof cfg.queue, " urgent , default");
    CHECK_INT(cli_queues(&cfg, &q), 0);
    CHECK_INT(q.n, 2);
    CHECK_STR(q.name[0], "urgent");
    CHECK_STR(q.name[1], "default");
    char out[1024];
    snprintf(cfg.queue, sizeof cfg.queue, "a,{b}");
    check_capture(2);
    CHECK_INT(cli_queues(&cfg, &q), -1);
    check_captured(2, out, sizeof out);
    CHECK(strncmp(out, "pixq: ", 6) == 0 && strstr(out, "{b}") != NULL);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
}

static void test_print_json(void)
{
    char out[1024];
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string("a/b \xc3\xa9"));
    json_object_object_add(o, "raw", json_object_new_string_len("x\xffy\xe2\x82z\x01", 7));
    json_object_object_add(o, "n", json_object_new_int(3));
    check_capture(1);
    cli_print_json(o);
    /* one line, no blanks, '/' as it is; bytes that are not UTF-8 as \\xNN (a string's
     * backslash and "xNN": the line stays JSON), a control character as JSON escapes it */
    CHECK_STR(check_captured(1, out, sizeof out),
              "{\"id\":\"a/b \xc3\xa9\",\"raw\":\"x\\\\xffy\\\\xe2\\\\x82z\\u0001\",\"n\":3}\n");
    json_object_put(o);
    json_object *back = json_tokener_parse(out);
    CHECK(back != NULL);
    CHECK_STR(json_object_get_string(json_object_object_get(back, "raw")),
              "x\\xffy\\xe2\\x82z\x01");
    json_object_put(back);
}

static void test_getters(void)
{
    json_object *o = json_tokener_parse("{\"a\": 5, \"s\": \"text\", \"big\": 9007199254740993}");
    CHECK(cli_get(o, "a") != NULL && cli_get(o, "none") == NULL);
    CHECK_INT(cli_int(o, "a"), 5);
    CHECK_INT(cli_int(o, "big"), 9007199254740993LL);
    CHECK_INT(cli_int(o, "none"), 0);
    CHECK_STR(cli_str(o, "s", "?"), "text");
    CHECK_STR(cli_str(o, "a", "?"), "5");
    CHECK_STR(cli_str(o, "none", "?"), "?");
    json_object_put(o);
}

static void printable(const char *in, const char *want)
{
    char *got = cli_printable(in);
    CHECK_STR(got, want);
    free(got);
}

static void test_printable(void)
{
    printable("", "");
    printable("plain id-1.png", "plain id-1.png");
    printable("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07");
    printable("a\tb\nc\rd", "a\\x09b\\x0ac\\x0dd");
    printable("\x1f \x20 \x7e \x7f", "\\x1f   ~ \\x7f");
    printable("\xc2\x80 \xc2\x85 \xc2\x9f", "\\xc2\\x80 \\xc2\\x85 \\xc2\\x9f"); /* C1 */
    printable("\xc2\xa0 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", /* NBSP, é, €, an emoji */
              "\xc2\xa0 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    printable("\xff\xfe", "\\xff\\xfe");
    printable("x\xe2\x82", "x\\xe2\\x82");                 /* cut short */
    printable("\xc0\xaf", "\\xc0\\xaf");                   /* an overlong '/' */
    printable("\xed\xa0\x80", "\\xed\\xa0\\x80");          /* a surrogate */
    printable("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
    /* every byte escaped: 4 times as long, as the buffer allows */
    char in[257], want[4 * 256 + 1];
    for (int i = 0; i < 256; i++) {
        in[i] = (char)(i < 128 ? 0x01 + i % 31 : 0x80 + i % 64);
        snprintf(want + 4 * i, 5, "\\x%02x", (unsigned char)in[i]);
    }
    in[256] = '\0';
    printable(in, want);
}

static void test_iso_utc(void)
{
    char out[64];
    cli_iso_utc(1, out, sizeof out);
    CHECK_STR(out, "1970-01-01T00:00:00.001Z");
    cli_iso_utc(1700000000123LL, out, sizeof out);
    CHECK_STR(out, "2023-11-14T22:13:20.123Z");
    cli_iso_utc(1700000000000LL, out, sizeof out);
    CHECK_STR(out, "2023-11-14T22:13:20.000Z");
    cli_iso_utc(1699999999999LL, out, sizeof out);
    CHECK_STR(out, "2023-11-14T22:13:19.999Z");
    cli_iso_utc(253402300799999LL, out, sizeof out);
    CHECK_STR(out, "9999-12-31T23:59:59.999Z");
    cli_iso_utc(0, out, sizeof out);
    CHECK_STR(out, "(unknown time)");
    cli_iso_utc(-1500, out, sizeof out);
    CHECK_STR(out, "(unknown time)");
    cli_iso_utc(LLONG_MAX, out, sizeof out); /* the last ms: a year of 9 digits still fits */
    CHECK_STR(out, "292278994-08-17T07:12:55.807Z");
    char small[11];
    cli_iso_utc(1700000000123LL, small, sizeof small);
    CHECK_STR(small, "2023-11-14");
}

int main(void)
{
    test_wants_help();
    test_usage_and_fail();
    test_long();
    test_double();
    test_queues();
    test_print_json();
    test_getters();
    test_printable();
    test_iso_utc();
    return check_summary("cli");
}
