/* fuzzcheck: checks the fuzz targets share. */
#ifndef PIXQ_FUZZCHECK_H
#define PIXQ_FUZZCHECK_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Aborts unless `s` is shorter than `cap`, non-empty when `required`, and free of control
 * characters (a key that goes into a header). */
static inline void fuzz_check_key(const char *s, size_t cap, bool required)
{
    size_t n = strnlen(s, cap);
    if (n >= cap || (required && n == 0)) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            abort();
        }
    }
}

#endif
