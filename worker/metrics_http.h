/* metrics_http: the small HTTP/1.1 server behind --metrics-addr.
 *
 * It answers `GET /metrics` (and HEAD) with metrics_render()'s text, 404 for any other path, 405
 * for other methods and 400 for what is not an HTTP/1.x request, and closes every connection
 * after its answer. It never blocks: sockets are non-blocking and one poll(2) round serves every
 * connection that is ready. Limits (struct mhttp_limits, from the configuration): so many
 * connections at once (a new one takes the slot of the oldest that is not being answered), so
 * many bytes of request head (431 past it) and so long from accept to the last byte of the
 * answer (then the connection is dropped).
 *
 * The supervisor calls mhttp_serve() from its own loop, so it stays single-threaded and forks
 * safely; a single worker process serves from a thread of its own (mhttp_start_thread()). */
#ifndef PIXQ_METRICS_HTTP_H
#define PIXQ_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct mhttp_limits {
    int max_conns;      /* connections served at once (PIXQ_METRICS_MAX_CONNECTIONS) */
    size_t max_request; /* bytes of request line and headers (PIXQ_METRICS_MAX_REQUEST_BYTES) */
    long timeout_ms;    /* from accept to the end of the answer (PIXQ_METRICS_TIMEOUT_MS) */
};

struct mhttp;

/* Binds and listens on `addr` ("HOST:PORT", "[v6]:PORT") with `lim` (at least 1 connection, 64
 * bytes, 1 ms). Returns NULL with the reason in `e` and, in `*lasting`, whether `addr` itself is
 * unusable here, which trying again cannot mend: it is malformed or does not resolve, it is not
 * an address of this host (EADDRNOTAVAIL), its port needs a privilege (EACCES). False for what
 * may pass: the port held by another process (EADDRINUSE), a name server not answering, no
 * memory or descriptors. */
struct mhttp *mhttp_create(const char *addr, const struct mhttp_limits *lim, bool *lasting,
                           struct err *e);

/* Stops the thread if one runs, closes every socket and frees; NULL is allowed. */
void mhttp_destroy(struct mhttp *s);

/* Closes the sockets and frees without stopping a thread: for a forked child, where the
 * supervisor's server (which runs no thread) must not stay open. NULL is allowed. */
void mhttp_forget(struct mhttp *s);

/* One round: waits at most `timeout_ms` for connections or data, then serves what is ready. */
void mhttp_serve(struct mhttp *s, int timeout_ms);

/* Serves from a thread of its own until mhttp_destroy(). Returns 0 or -1 with the reason. */
int mhttp_start_thread(struct mhttp *s, struct err *e);

#endif
