/* jscan: the top-level members of a JSON object, found by one pass that builds nothing.
 *
 * For a payload json-c was not given (over PIXQ_MAX_JOB_BYTES) or gave up on (nested deeper than
 * PIXQ_MAX_JSON_DEPTH): the scan checks that the whole text is one JSON object, as RFC 8259
 * writes it (no comments, single quotes or trailing commas, which json-c also takes) but for raw
 * control characters in strings (json-c takes them, NUL aside), and says
 * where the values of the members asked for lie. Its memory is one bit a level of nesting.
 * And for a batch (a JSON array of jobs): its elements as written, one by one, however large
 * the whole. */
#ifndef PIXQ_JSCAN_H
#define PIXQ_JSCAN_H

#include <stddef.h>

#define JSCAN_DEPTH_MAX (1L << 24) /* deepest nesting scanned (2 MiB of bits) */

struct jscan_member {
    const char *name; /* in: the member's name (ASCII) */
    size_t at, len;   /* out: its value's bytes in the text, the last of that name as json-c
                         keeps it; len 0: no such member */
};

/* Scans `text` (`len` bytes): returns 0 when it is one JSON object, blanks around it allowed,
 * with the spans of the `n` members in `m` and the offset of the object's '{' in *open; -1 when
 * it is not one (or nests deeper than JSCAN_DEPTH_MAX, or memory ran out). */
int jscan_members(const char *text, size_t len, struct jscan_member *m, size_t n, size_t *open);

/* Called with each element of an array, its bytes as written; returns 0, or -1 to stop. */
typedef int (*jscan_element_fn)(void *user, const char *element, size_t len);

/* Scans `text` (`len` bytes): returns 0 when it is one JSON array, blanks around it allowed,
 * having called `each` with its elements in order; -1 when it is not one (*at: the offset where
 * it breaks, `len` when it ends too soon), or -2 when `each` stopped the scan. Elements before
 * a break have been passed to `each`. */
int jscan_elements(const char *text, size_t len, jscan_element_fn each, void *user, size_t *at);

#endif
