/* utf8: telling valid UTF-8 from bytes that are not, for what pixq writes as JSON text (logs,
 * postbacks): an error message may quote a job's URL cut at a byte count, or bytes a server or a
 * library sent. */
#ifndef PIXQ_UTF8_H
#define PIXQ_UTF8_H

#include <stddef.h>

/* The length (1 to 4) of the valid UTF-8 sequence at `s` (of `n` bytes, n > 0), or 0 if it is
 * not one (an overlong form, a surrogate, past U+10FFFF, cut short). */
size_t utf8_seq(const unsigned char *s, size_t n);

/* The length of the longest start of the string `s` of at most `max` bytes that does not end
 * inside a UTF-8 character (a cut there would leave half of one). */
size_t utf8_cut(const char *s, size_t max);

/* A malloc'd copy of the string `s` with every byte that is not part of valid UTF-8 replaced by
 * U+FFFD; NULL if out of memory. */
char *utf8_valid_dup(const char *s);

/* `s` quoted in a message: its first UTF8_SHOWN_MAX bytes at most (fewer if `cap` is smaller),
 * control characters and every byte that is not ASCII as '?'. Written to `out`, returned. */
#define UTF8_SHOWN_MAX 60
const char *utf8_ascii_shown(const char *s, char *out, size_t cap);

#endif
