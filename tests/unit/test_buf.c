#include <stdlib.h>

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

static void test_err(void)
{
    struct err e;
    CHECK_INT(err_set(&e, "disk %s", "full"), -1);
    CHECK_INT(err_wrap(&e, "save %d", 3), -1);
    CHECK_STR(e.msg, "save 3: disk full");
    CHECK_INT(err_set(NULL, "ignored"), -1);
}

int main(void)
{
    test_cap();
    test_printf_and_take();
    test_err();
    return check_summary("buf");
}
