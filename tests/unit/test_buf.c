#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "err.h"

static void test_cap(void)
{
    struct buf b;
    buf_init(&b, 8);
    CHECK_INT(buf_puts(&b, "abcd"), 0);
    CHECK_INT(buf_puts(&b, "efgh"), 0);
    CHECK_INT(buf_puts(&b, "i"), -1); /* over the cap: refused, unchanged */
    CHECK_STR(b.data, "abcdefgh");
    CHECK_INT(b.len, 8);
    buf_reset(&b);
    CHECK_INT(b.len, 0);
    CHECK_STR(b.data, "");
    buf_finish(&b);
    buf_finish(&b); /* twice is fine */
}

static void test_printf_and_take(void)
{
    struct buf b;
    buf_init(&b, 0);
    int failures = 0;
    for (int i = 0; i < 1000; i++) {
        failures += buf_printf(&b, "%d,", i) != 0;
    }
    CHECK_INT(failures, 0);
    CHECK(b.len > 1000);
    char *s = buf_take(&b);
    CHECK(strncmp(s, "0,1,2,", 6) == 0);
    CHECK(b.data == NULL && b.len == 0);
    free(s);
    char *empty = buf_take(&b);
    CHECK_STR(empty, "");
    free(empty);
}

/* Appending keeps room for the NUL at every size, across the growth steps from 64 bytes on, and
 * a single byte is appended too. */
static void test_growth(void)
{
    static const size_t steps[] = {1, 62, 1, 64, 200, 1000};
    char chunk[1000];
    struct buf b;
    buf_init(&b, 0);
    size_t len = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char c = (char)('a' + i);
        memset(chunk, c, steps[i]);
        CHECK_INT(buf_append(&b, chunk, steps[i]), 0);
        len += steps[i];
        CHECK_INT(b.len, len);
        CHECK(b.cap > b.len);
        CHECK(b.data[len - steps[i]] == c && b.data[len - 1] == c);
        CHECK_INT(strlen(b.data), len);
    }
    buf_finish(&b);
}

/* A size near SIZE_MAX (a length from outside may be one) is refused, not wrapped around. */
static void test_huge(void)
{
    struct buf b;
    buf_init(&b, 0);
    CHECK_INT(buf_reserve(&b, SIZE_MAX), -1);
    CHECK_INT(buf_puts(&b, "abc"), 0);
    CHECK_INT(buf_reserve(&b, SIZE_MAX - 3), -1);
    CHECK_INT(buf_reserve(&b, SIZE_MAX), -1);
    CHECK_STR(b.data, "abc");
    buf_finish(&b);
    buf_init(&b, 8);
    CHECK_INT(buf_puts(&b, "abc"), 0);
    CHECK_INT(buf_reserve(&b, SIZE_MAX), -1);
    CHECK_INT(buf_reserve(&b, 6), -1);
    CHECK_INT(buf_reserve(&b, 5), 0);
    CHECK_STR(b.data, "abc");
    buf_finish(&b);
}

/* buf_printf() up to the cap exactly, and past it: refused, the contents unchanged. */
static void test_printf_cap(void)
{
    struct buf b;
    buf_init(&b, 8);
    CHECK_INT(buf_puts(&b, "abc"), 0);
    CHECK_INT(buf_printf(&b, "%s%d", "de", 1234), -1);
    CHECK_STR(b.data, "abc");
    CHECK_INT(b.len, 3);
    CHECK_INT(buf_printf(&b, "%s%d", "de", 123), 0);
    CHECK_STR(b.data, "abcde123");
    CHECK_INT(b.len, 8);
    buf_finish(&b);
}

/* buf_init() sets every field; after buf_reset() a shorter append leaves only itself; after
 * buf_finish() and buf_take() the buffer is empty and takes appends again, under its cap. */
static void test_reuse(void)
{
    struct buf b;
    memset(&b, 0x5a, sizeof b); /* as a struct on the stack may be */
    buf_init(&b, 16);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0 && b.max == 16);
    CHECK_INT(buf_puts(&b, "abcdef"), 0);
    buf_reset(&b);
    CHECK_INT(buf_append(&b, "xy", 2), 0);
    CHECK_STR(b.data, "xy");
    buf_finish(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    CHECK_INT(buf_puts(&b, "after finish"), 0);
    CHECK_STR(b.data, "after finish");
    char *s = buf_take(&b);
    CHECK_STR(s, "after finish");
    free(s);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    CHECK_INT(buf_puts(&b, "after take"), 0);
    CHECK_STR(b.data, "after take");
    CHECK_INT(buf_puts(&b, "1234567"), -1); /* the cap stays */
    CHECK_INT(b.len, 10);
    buf_finish(&b);
}

static void test_err(void)
{
    struct err e;
    CHECK_INT(err_set(&e, "disk %s", "full"), -1);
    CHECK_INT(err_wrap(&e, "save %d", 3), -1);
    CHECK_STR(e.msg, "save 3: disk full");
    CHECK_INT(err_set(NULL, "ignored"), -1);
    /* a context on a message near the size: cut to ERR_MSG_MAX - 1 bytes, the context kept */
    char long_msg[ERR_MSG_MAX];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    err_set(&e, "%s", long_msg);
    CHECK_INT(strlen(e.msg), ERR_MSG_MAX - 1);
    CHECK_INT(err_wrap(&e, "fetch %s", "src"), -1);
    CHECK_INT(strlen(e.msg), ERR_MSG_MAX - 1);
    CHECK(strncmp(e.msg, "fetch src: xxx", 14) == 0);
    CHECK_INT(e.msg[ERR_MSG_MAX - 2], 'x');
}

int main(void)
{
    test_cap();
    test_printf_and_take();
    test_growth();
    test_huge();
    test_printf_cap();
    test_reuse();
    test_err();
    return check_summary("buf");
}
