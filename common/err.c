#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(struct err *e, const char *fmt, ...)
{
    if (e == NULL) {
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int err_wrap(struct err *e, const char *fmt, ...)
{
    if (e == NULL) {
        return -1;
    }
    char prefix[ERR_MSG_MAX];
    char old[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char joined[2 * ERR_MSG_MAX + 2];
    memcpy(old, e->msg, sizeof old);
    snprintf(joined, sizeof joined, "%s: %s", prefix, old);
    snprintf(e->msg, sizeof e->msg, "%.*s", ERR_MSG_MAX - 1, joined);
    return -1;
}
