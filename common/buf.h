/* buf: a growable byte buffer with a hard cap.
 *
 * Every buffer that holds bytes from outside (downloads, responses, encoded images) has a maximum
 * size; appending past it fails instead of growing. The contents are always NUL-terminated (the
 * NUL is not counted in `len`), so text can be used as a C string. */
#ifndef PIXQ_BUF_H
#define PIXQ_BUF_H

#include <stddef.h>

struct buf {
    char *data; /* NULL until the first append */
    size_t len; /* bytes used, excluding the trailing NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* most bytes `len` may reach; 0 means SIZE_MAX */
};

/* Initialises an empty buffer that may hold at most `max` bytes (0: unlimited). */
void buf_init(struct buf *b, size_t max);

/* Frees the contents and leaves `b` empty (same cap); safe to call twice. */
void buf_finish(struct buf *b);

/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);

/* Makes room for `n` more bytes (and the NUL) after the contents, so that data + len may be
 * written up to n bytes. Returns 0, or -1 if the cap would be exceeded or memory ran out. */
int buf_reserve(struct buf *b, size_t n);

/* Appends `n` bytes. Returns 0, or -1 if the cap would be exceeded or memory ran out (then `b` is
 * unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string; as buf_append. */
int buf_puts(struct buf *b, const char *s);

/* Appends formatted text; as buf_append. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the contents to the caller (free() them) and leaves `b` empty. Returns an empty string
 * rather than NULL for an empty buffer; NULL only if memory ran out. */
char *buf_take(struct buf *b);

#endif
