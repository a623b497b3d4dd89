/* jscan (common/jscan.c): the members of an object and the elements of an array, from one pass
 * that checks the text is JSON as RFC 8259 writes it. test_job.c covers the members' scan through
 * the job's own uses; these are the edges of the grammar, of member names, and of the array scan
 * a batch is split by. Every text is copied into a buffer of exactly its size, so that a read
 * past its end is one for the sanitizers. */
#include <stdlib.h>

#include "check.h"
#include "jscan.h"

/* jscan_members() on the `len` bytes of `text`: 0 or -1; the value of member `name` in `value`. */
static int members(const char *text, size_t len, const char *name, char *value, size_t cap)
{
    struct jscan_member m[] = {{.name = name}};
    size_t open = 0;
    char *exact = malloc(len > 0 ? len : 1);
    if (exact == NULL) {
        return -1;
    }
    memcpy(exact, text, len);
    int rc = jscan_members(exact, len, m, 1, &open);
    snprintf(value, cap, "%.*s", rc == 0 ? (int)m[0].len : 0, exact + m[0].at);
    free(exact);
    return rc;
}

static void expect_value(const char *text, const char *name, const char *want)
{
    char got[256];
    CHECK_INT(members(text, strlen(text), name, got, sizeof got), 0);
    CHECK_STR(got, want);
}

static void expect_refused(const char *text, size_t len)
{
    char got[256];
    CHECK_INT(members(text, len, "a", got, sizeof got), -1);
}

static void test_grammar(void)
{
    expect_value("{\"a\":9}", "a", "9");
    expect_value("{\"a\":[0,1,2,3,4,5,6,7,8,9,10,99,-0]}", "a", "[0,1,2,3,4,5,6,7,8,9,10,99,-0]");
    expect_value("{\"a\":1E5}", "a", "1E5");
    expect_value("{\"a\":1e-5}", "a", "1e-5");
    expect_value("{\"a\":-0.5E+10}", "a", "-0.5E+10");
    expect_value("{\"a\":\"\\u00E9\\u00e9\\uABCD\"}", "a", "\"\\u00E9\\u00e9\\uABCD\"");
    expect_value("{\"a\":null}", "a", "null");
    const char *bad[] = {
        "{\"a\":\"\\v\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":\"\\u123", "{\"a\":\"\\u12",
        "{\"a\":t",        "{\"a\":nul",          "{\"a\":fals",     "{\f\"a\":1}",
        "{\"a\":1}\f",     "{\"a\":\"\\",         "{\"a\":1e+}",     "{\"a\":1E}",
        "{\"a\":[1,]",     "{\"a\":1,}",          "{\"a\":[}",       "{\"a\":{\"b\":1,}}",
        "{\"a\":{,}}",     "{\"a\":0x1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_refused(bad[i], strlen(bad[i]));
    }
    /* \u takes each of the 22 hex digits in either case, and nothing beside them in ASCII */
    expect_value("{\"a\":\"\\u0123\\u4567\\u89ab\\ucdef\\uABCD\\uEF00\"}", "a",
                 "\"\\u0123\\u4567\\u89ab\\ucdef\\uABCD\\uEF00\"");
    const char *not_hex = "/:@G`g";
    for (const char *c = not_hex; *c != '\0'; c++) {
        char text[32];
        snprintf(text, sizeof text, "{\"a\":\"\\u00%c0\"}", *c);
        expect_refused(text, strlen(text));
    }
    /* a backslash followed by a NUL is no escape */
    const char nul_escape[] = "{\"a\":\"\\\0\"}";
    expect_refused(nul_escape, sizeof nul_escape - 1);
}

/* Member names: decoded, compared on their first 32 bytes; a character beyond ASCII matches no
 * ASCII byte (U+0161's low byte is 'a'). */
static void test_names(void)
{
    expect_value("{\"\\u0161\":1,\"b\":2}", "a", "");
    expect_value("{\"\\u0161\":1,\"a\":2}", "a", "2");
    expect_value("{\"\\u0041\":1}", "A", "1");
    /* a \u0000 ends the name, as json-c's keys end there: what follows, escaped or not, is not
     * part of it */
    expect_value("{\"a\\u0000\\n\\u0041\":1}", "a", "1");
    const char *n32 = "abcdefghijklmnopqrstuvwxyz012345";
    char text[128];
    snprintf(text, sizeof text, "{\"%s\":7}", n32);
    expect_value(text, n32, "7");
    const char *n33 = "abcdefghijklmnopqrstuvwxyz0123456"; /* longer ones match none */
    snprintf(text, sizeof text, "{\"%s\":7}", n33);
    expect_value(text, n33, "");
    expect_value(text, n32, "");
}

struct seen {
    char text[512];
    size_t n;
    size_t stop_at; /* refuse the element of this number (from 1); 0: none */
};

static int each(void *user, const char *element, size_t len)
{
    struct seen *s = user;
    s->n++;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof s->text - used, "%s%.*s", used > 0 ? "|" : "", (int)len,
             element);
    return s->n == s->stop_at ? -1 : 0;
}

/* jscan_elements() on the `len` bytes of `text`: its return, where it stopped, what it saw. */
static int elements(const char *text, size_t len, size_t stop_at, struct seen *s, size_t *at)
{
    *s = (struct seen){.stop_at = stop_at};
    char *exact = malloc(len > 0 ? len : 1);
    if (exact == NULL) {
        return -3;
    }
    memcpy(exact, text, len);
    int rc = jscan_elements(exact, len, each, s, at);
    free(exact);
    return rc;
}

static void test_elements(void)
{
    struct seen s;
    size_t at = 99;
    const char *batch = " [ {\"a\":[1,{\"b\":\"]\"}]} , 2,\"x\\\"\" ,[], {} ,null ] ";
    CHECK_INT(elements(batch, strlen(batch), 0, &s, &at), 0);
    CHECK_STR(s.text, "{\"a\":[1,{\"b\":\"]\"}]}|2|\"x\\\"\"|[]|{}|null");
    CHECK_INT((long)s.n, 6);
    CHECK_INT(elements("[]", 2, 0, &s, &at), 0);
    CHECK_INT((long)s.n, 0);
    /* each stops the scan: -2, not a break of the text */
    CHECK_INT(elements(batch, strlen(batch), 2, &s, &at), -2);
    CHECK_STR(s.text, "{\"a\":[1,{\"b\":\"]\"}]}|2");
    /* a break: where, and the elements before it */
    const char *broken = "[1,2,}";
    CHECK_INT(elements(broken, strlen(broken), 0, &s, &at), -1);
    CHECK_INT((long)at, 5);
    CHECK_STR(s.text, "1|2");
    CHECK_INT(elements("[1,2", 4, 0, &s, &at), -1); /* ends too soon: at the end */
    CHECK_INT((long)at, 4);
    const char *not_arrays[] = {"{}", "1", "\"[]\"", "[1]]", "[1] [2]", "[1,]", "[,1]", ""};
    for (size_t i = 0; i < sizeof not_arrays / sizeof not_arrays[0]; i++) {
        CHECK_INT(elements(not_arrays[i], strlen(not_arrays[i]), 0, &s, &at), -1);
    }
}

/* JSCAN_DEPTH_MAX levels of nesting scan; one more is refused, at its '[' */
static void test_depth_max(void)
{
    size_t depth = (size_t)JSCAN_DEPTH_MAX + 1;
    char *text = malloc(2 * depth);
    CHECK(text != NULL);
    if (text == NULL) {
        return;
    }
    memset(text, '[', depth);
    memset(text + depth, ']', depth);
    struct seen s;
    size_t at = 0;
    /* the text's middle: JSCAN_DEPTH_MAX of each bracket */
    CHECK_INT(elements(text + 1, 2 * depth - 2, 0, &s, &at), 0);
    CHECK_INT((long)s.n, 1);
    CHECK_INT(elements(text, 2 * depth, 0, &s, &at), -1);
    CHECK_INT((long)at, JSCAN_DEPTH_MAX);
    free(text);
}

int main(void)
{
    test_grammar();
    test_names();
    test_elements();
    test_depth_max();
    return check_summary("jscan");
}
