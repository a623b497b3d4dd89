/* err: the error detail every fallible pixq call fills in.
 *
 * Functions return 0 (or a pointer) on success and a negative value (or NULL) on failure; the
 * human-readable reason goes into a caller-supplied `struct err`. The library never logs errors:
 * the caller decides what the user sees. */
#ifndef PIXQ_ERR_H
#define PIXQ_ERR_H

#define ERR_MSG_MAX 512 /* bytes, including the terminating NUL */

struct err {
    char msg[ERR_MSG_MAX];
};

/* Formats a message into `e` (NULL is allowed and ignored). Always returns -1 so that a failing
 * function can `return err_set(e, "...")`. */
int err_set(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the message already in `e` with a formatted context ("context: old message"). */
int err_wrap(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
