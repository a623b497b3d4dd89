/* utf8 (common/utf8.c): utf8_seq() against the well-formed byte sequences of the Unicode
 * Standard's Table 3-7: every first and second byte, the third and fourth at the bounds of a
 * continuation byte; utf8_cut(), utf8_valid_dup() and utf8_ascii_shown() at their edges. */
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "utf8.h"

/* Table 3-7: for each first byte, the bounds of the second byte; the others are 80..BF. */
struct row {
    unsigned first_lo, first_hi, second_lo, second_hi;
    size_t len;
};

static const struct row TABLE_3_7[] = {
    {0x00, 0x7f, 0, 0, 1},       {0xc2, 0xdf, 0x80, 0xbf, 2}, {0xe0, 0xe0, 0xa0, 0xbf, 3},
    {0xe1, 0xec, 0x80, 0xbf, 3}, {0xed, 0xed, 0x80, 0x9f, 3}, {0xee, 0xef, 0x80, 0xbf, 3},
    {0xf0, 0xf0, 0x90, 0xbf, 4}, {0xf1, 0xf3, 0x80, 0xbf, 4}, {0xf4, 0xf4, 0x80, 0x8f, 4},
};

/* The length of the well-formed sequence `s` (all `n` bytes of it) per the table, or 0. */
static size_t table_len(const unsigned char *s, size_t n)
{
    for (size_t r = 0; r < sizeof TABLE_3_7 / sizeof TABLE_3_7[0]; r++) {
        const struct row *t = &TABLE_3_7[r];
        if (s[0] < t->first_lo || s[0] > t->first_hi) {
            continue;
        }
        if (n != t->len) {
            return 0;
        }
        for (size_t i = 1; i < n; i++) {
            unsigned lo = i == 1 ? t->second_lo : 0x80, hi = i == 1 ? t->second_hi : 0xbf;
            if (s[i] < lo || s[i] > hi) {
                return 0;
            }
        }
        return n;
    }
    return 0;
}

/* Buffers of exactly 1 to 4 bytes: a read past a sequence is one for the sanitizers. */
static unsigned char *exact[5];

/* utf8_seq() on exactly `n` bytes against the table: the sequence is valid with length n, or
 * utf8_seq() says 0, or it is valid with a shorter length (its first bytes make a character). */
static bool agrees(const unsigned char *s, size_t n)
{
    memcpy(exact[n], s, n);
    size_t got = utf8_seq(exact[n], n);
    if (table_len(s, n) == n) {
        return got == n;
    }
    return got == 0 || (got < n && table_len(s, got) == got);
}

static void test_seq(void)
{
    for (size_t n = 1; n <= 4; n++) {
        exact[n] = malloc(n);
    }
    /* every first and second byte; the others at and around the bounds of a continuation */
    static const unsigned char edges[] = {0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xff};
    unsigned char s[4];
    long wrong = 0;
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        wrong += !agrees(s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            wrong += !agrees(s, 2);
            for (size_t c = 0; c < sizeof edges; c++) {
                s[2] = edges[c];
                wrong += !agrees(s, 3);
                for (size_t d = 0; d < sizeof edges; d++) {
                    s[3] = edges[d];
                    wrong += !agrees(s, 4);
                }
            }
        }
    }
    for (size_t n = 1; n <= 4; n++) {
        free(exact[n]);
    }
    CHECK_INT(wrong, 0);
    /* a few by name: the last of each length, the first past U+10FFFF, a surrogate, overlongs */
    CHECK_INT(utf8_seq((const unsigned char *)"\x7f", 1), 1);
    CHECK_INT(utf8_seq((const unsigned char *)"\xdf\xbf", 2), 2);
    CHECK_INT(utf8_seq((const unsigned char *)"\xef\xbf\xbf", 3), 3);
    CHECK_INT(utf8_seq((const unsigned char *)"\xf4\x8f\xbf\xbf", 4), 4);
    CHECK_INT(utf8_seq((const unsigned char *)"\xf4\x90\x80\x80", 4), 0);
    CHECK_INT(utf8_seq((const unsigned char *)"\xed\xa0\x80", 3), 0);
    CHECK_INT(utf8_seq((const unsigned char *)"\xc1\xbf", 2), 0);
    CHECK_INT(utf8_seq((const unsigned char *)"\xe0\x9f\xbf", 3), 0);
    CHECK_INT(utf8_seq((const unsigned char *)"\xf0\x8f\xbf\xbf", 4), 0);
    CHECK_INT(utf8_seq((const unsigned char *)"\xf5\x80\x80\x80", 4), 0);
    CHECK_INT(utf8_seq((const unsigned char *)"\xe2\x82", 2), 0); /* cut short */
}

static void test_cut(void)
{
    CHECK_INT((long)utf8_cut("abc", 3), 3);
    CHECK_INT((long)utf8_cut("abc", 5), 3);
    CHECK_INT((long)utf8_cut("abcd", 3), 3);
    CHECK_INT((long)utf8_cut("ab\xc3\xa9", 3), 2); /* not inside the é */
    CHECK_INT((long)utf8_cut("ab\xc3\xa9", 4), 4);
    CHECK_INT((long)utf8_cut("\xe2\x82\xac"
                             "x",
                             2),
              0); /* nor the € at the start */
    CHECK_INT((long)utf8_cut("\xe2\x82\xac"
                             "x",
                             1),
              0);
    CHECK_INT((long)utf8_cut("\xe2\x82\xac"
                             "x",
                             3),
              3);
    CHECK_INT((long)utf8_cut("a\xf0\x9f\x98\x80", 4), 1);
    CHECK_INT((long)utf8_cut("", 0), 0);
}

static void test_valid_dup(void)
{
    const char *cases[][2] = {
        {"plain", "plain"},
        {"caf\xc3\xa9", "caf\xc3\xa9"},
        {"a\xff"
         "b",
         "a\xef\xbf\xbd"
         "b"},
        {"\xc3", "\xef\xbf\xbd"},                                 /* cut short at the end */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate: 3 bad bytes */
        {"\xe2\x82\xac\x80\x80", "\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = utf8_valid_dup(cases[i][0]);
        CHECK_STR(got, cases[i][1]);
        free(got);
    }
    /* every byte bad: three times the length, the buffer exactly that (valgrind, ASan) */
    char bad[201];
    memset(bad, 0xfe, 200);
    bad[200] = '\0';
    char *got = utf8_valid_dup(bad);
    CHECK(got != NULL && strlen(got) == 600);
    free(got);
}

static void test_ascii_shown(void)
{
    char out[128];
    CHECK_STR(utf8_ascii_shown("a b~\x7f\x1f\x20\xc3\xa9", out, sizeof out), "a b~?? ??");
    CHECK_STR(utf8_ascii_shown("abcdef", out, 4), "abc");
    char long_text[100];
    memset(long_text, 'x', 99);
    long_text[99] = '\0';
    CHECK_INT((long)strlen(utf8_ascii_shown(long_text, out, sizeof out)), UTF8_SHOWN_MAX);
    char small[5];
    memset(small, '#', sizeof small);
    utf8_ascii_shown("abcdefgh", small, sizeof small);
    CHECK(small[4] == '\0' && memcmp(small, "abcd", 4) == 0);
}

int main(void)
{
    test_seq();
    test_cut();
    test_valid_dup();
    test_ascii_shown();
    return check_summary("utf8");
}
