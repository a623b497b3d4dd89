#include "metrics_http.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "metrics.h"

#define BACKLOG        16
#define THREAD_TICK_MS 100                /* the thread's longest wait, so that it notices a stop */
#define MAX_RESPONSE   (16 * 1024 * 1024) /* the metrics text never comes near this */
#define PAUSE_MS       100 /* the listener unwatched after accept(2) found no descriptor */

enum conn_state { READING, WRITING, DRAINING };

struct conn {
    int fd; /* -1: free */
    enum conn_state state;
    long deadline_ms;
    char *in; /* in_cap bytes: the request head so far, NUL-terminated */
    size_t in_len, in_cap;
    struct buf out;
    size_t out_off;
};

struct mhttp {
    int listen_fd;
    struct mhttp_limits lim;
    struct conn *conns; /* lim.max_conns */
    struct pollfd *fds; /* lim.max_conns + 1, for mhttp_serve() */
    int *idx;           /* the connection of each of fds; -1: the listener */
    long paused_until;  /* clock_mono_ms(): not polling the listener before */
    pthread_t thread;
    bool threaded;
    atomic_bool quit;
};

/* ---------------------------------------------------------------- set-up */

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        return -1;
    }
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Splits "HOST:PORT" (HOST may be "[v6]") into `host` and `port`. */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr) {
        return -1;
    }
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= hcap || strlen(colon + 1) >= pcap) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    return 0;
}

static int listen_on(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    int one = 1;
    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, BACKLOG) < 0 ||
        set_nonblocking(fd) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Whether a failed getaddrinfo() or bind() says the address itself is unusable here (see
 * mhttp_create()). */
static bool gai_lasting(int rc)
{
    return rc != EAI_AGAIN && rc != EAI_FAIL && rc != EAI_MEMORY && rc != EAI_SYSTEM;
}

static bool bind_lasting(int err)
{
    return err == EADDRNOTAVAIL || err == EACCES || err == EPERM || err == EAFNOSUPPORT ||
           err == EINVAL;
}

static int open_listener(const char *addr, bool *lasting, struct err *e)
{
    char host[256], port[16];
    *lasting = true;
    if (split_addr(addr, host, sizeof host, port, sizeof port) < 0) {
        return err_set(e, "metrics address '%.300s' is not HOST:PORT", addr);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        *lasting = gai_lasting(rc);
        /* the same words as a bind() refused: what an operator reads (and README quotes) for
         * any address the worker cannot listen on, a name that does not resolve included */
        return err_set(e, "cannot listen on %.300s for metrics: %s", addr, gai_strerror(rc));
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = listen_on(ai);
        saved = errno;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        *lasting = bind_lasting(saved);
        return err_set(e, "cannot listen on %.300s for metrics: %s", addr, strerror(saved));
    }
    return fd;
}

static void free_server(struct mhttp *s)
{
    for (int i = 0; s->conns != NULL && i < s->lim.max_conns; i++) {
        free(s->conns[i].in);
    }
    free(s->conns);
    free(s->fds);
    free(s->idx);
    free(s);
}

/* The server's memory, every connection slot free. */
static struct mhttp *new_server(const struct mhttp_limits *lim)
{
    struct mhttp *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->lim = *lim;
    size_t n = (size_t)lim->max_conns;
    s->conns = calloc(n, sizeof *s->conns);
    s->fds = calloc(n + 1, sizeof *s->fds);
    s->idx = calloc(n + 1, sizeof *s->idx);
    bool ok = s->conns != NULL && s->fds != NULL && s->idx != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        struct conn *c = &s->conns[i];
        c->fd = -1;
        c->in_cap = lim->max_request + 1; /* a head of max_request bytes, and its NUL */
        c->in = malloc(c->in_cap);
        buf_init(&c->out, MAX_RESPONSE);
        ok = c->in != NULL;
    }
    if (!ok) {
        free_server(s);
        return NULL;
    }
    return s;
}

struct mhttp *mhttp_create(const char *addr, const struct mhttp_limits *lim, bool *lasting,
                           struct err *e)
{
    *lasting = true;
    if (lim->max_conns < 1 || lim->max_request < 64 || lim->timeout_ms < 1) {
        err_set(e, "metrics server limits out of range");
        return NULL;
    }
    struct mhttp *s = new_server(lim);
    if (s == NULL) {
        *lasting = false;
        err_set(e, "out of memory");
        return NULL;
    }
    atomic_init(&s->quit, false);
    s->listen_fd = open_listener(addr, lasting, e);
    if (s->listen_fd < 0) {
        free_server(s);
        return NULL;
    }
    return s;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->in_len = 0;
    c->out_off = 0;
    buf_finish(&c->out);
}

void mhttp_forget(struct mhttp *s)
{
    if (s == NULL) {
        return;
    }
    for (int i = 0; i < s->lim.max_conns; i++) {
        conn_close(&s->conns[i]);
    }
    close(s->listen_fd);
    free_server(s);
}

void mhttp_destroy(struct mhttp *s)
{
    if (s != NULL && s->threaded) {
        atomic_store(&s->quit, true);
        pthread_join(s->thread, NULL);
    }
    mhttp_forget(s);
}

/* ---------------------------------------------------------------- requests */

/* Writes the whole answer into c->out. */
static void respond(struct conn *c, int status, const char *reason, bool head, const char *body,
                    size_t len)
{
    buf_reset(&c->out);
    const char *type = status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain";
    int rc = buf_printf(&c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n%s\r\n",
                        status, reason, type, len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (rc == 0 && !head) {
        buf_append(&c->out, body, len);
    }
    c->out_off = 0;
    c->state = WRITING;
}

static void respond_text(struct conn *c, int status, const char *reason, bool head)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason);
    respond(c, status, reason, head, body, (size_t)n);
}

static void respond_metrics(struct conn *c, bool head)
{
    struct buf text;
    buf_init(&text, MAX_RESPONSE);
    if (metrics_render(&text) < 0) {
        respond_text(c, 500, "Internal Server Error", head);
    } else {
        respond(c, 200, "OK", head, text.data != NULL ? text.data : "", text.len);
    }
    buf_finish(&text);
}

/* The next word of the request line from *p on (its blanks skipped), `*len` bytes long (0 at the
 * line's end); *p is moved past it. */
static const char *word(const char **p, size_t *len)
{
    const char *w = *p + strspn(*p, " \t\v\f");
    *len = strcspn(w, " \t\v\f");
    *p = w + *len;
    return w;
}

static bool word_is(const char *w, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(w, want, len) == 0;
}

/* The path of a target in absolute form ("http://host:port/metrics?q", which HTTP/1.1 servers
 * must take, RFC 9112 3.2.2) as its origin form: *len is cut to what follows the authority (0
 * when nothing does). Any other target is returned as it is. */
static const char *origin_form(const char *target, size_t *len)
{
    size_t scheme = *len >= 7 && strncasecmp(target, "http://", 7) == 0    ? 7
                    : *len >= 8 && strncasecmp(target, "https://", 8) == 0 ? 8
                                                                           : 0;
    if (scheme == 0) {
        return target;
    }
    size_t authority = scheme;
    while (authority < *len && target[authority] != '/' && target[authority] != '?') {
        authority++;
    }
    *len -= authority;
    return target + authority;
}

/* Answers the request line "METHOD TARGET HTTP/1.x" of a complete request head, its words of any
 * length the head allows. */
static void handle_request(struct conn *c)
{
    c->in[c->in_len] = '\0';
    c->in[strcspn(c->in, "\r\n")] = '\0';
    const char *p = c->in;
    size_t method_len, target_len, version_len;
    const char *method = word(&p, &method_len);
    const char *target = word(&p, &target_len);
    const char *version = word(&p, &version_len);
    if (version_len < 7 || strncmp(version, "HTTP/1.", 7) != 0) {
        respond_text(c, 400, "Bad Request", false);
        return;
    }
    bool head = word_is(method, method_len, "HEAD");
    if (!head && !word_is(method, method_len, "GET")) {
        respond_text(c, 405, "Method Not Allowed", false);
        return;
    }
    target = origin_form(target, &target_len);
    size_t path_len = strcspn(target, "?");
    if (!word_is(target, path_len < target_len ? path_len : target_len, "/metrics")) {
        respond_text(c, 404, "Not Found", head);
        return;
    }
    respond_metrics(c, head);
}

/* ---------------------------------------------------------------- connections */

/* A free slot or, when every one is taken, the slot of the oldest connection that is not being
 * answered (still sending its request, or answered already), closed: idle or slow clients
 * cannot lock the endpoint up. NULL if every connection is being answered. */
static struct conn *free_slot(struct mhttp *s)
{
    struct conn *oldest = NULL;
    for (int i = 0; i < s->lim.max_conns; i++) {
        struct conn *c = &s->conns[i];
        if (c->fd < 0) {
            return c;
        }
        if (c->state != WRITING && (oldest == NULL || c->deadline_ms < oldest->deadline_ms)) {
            oldest = c;
        }
    }
    if (oldest != NULL) {
        conn_close(oldest);
    }
    return oldest;
}

static void accept_new(struct mhttp *s)
{
    for (int i = 0; i < s->lim.max_conns; i++) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
            /* the client stays queued and the listener readable: polling it again at once
             * would spin until a descriptor is free */
            s->paused_until = clock_mono_ms() + PAUSE_MS;
        }
        if (fd < 0) {
            return; /* EAGAIN: nothing more waits; anything else: the client is gone */
        }
        struct conn *c = set_nonblocking(fd) == 0 ? free_slot(s) : NULL;
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->state = READING;
        c->in_len = 0;
        c->deadline_ms = clock_mono_ms() + s->lim.timeout_ms;
    }
}

static void read_request(struct conn *c)
{
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - 1 - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        conn_close(c); /* the client left before its request was complete */
        return;
    }
    bool nul = memchr(c->in + c->in_len, '\0', (size_t)n) != NULL; /* no head holds one */
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
    if (nul) { /* answered at once: the search for the head's end below would stop at it */
        respond_text(c, 400, "Bad Request", false);
    } else if (strstr(c->in, "\r\n\r\n") != NULL || strstr(c->in, "\n\n") != NULL) {
        handle_request(c);
    } else if (c->in_len == c->in_cap - 1) {
        respond_text(c, 431, "Request Header Fields Too Large", false);
    }
}

static void write_response(struct conn *c)
{
    ssize_t n = write(c->fd, c->out.data + c->out_off, c->out.len - c->out_off);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->out_off += (size_t)n;
    if (c->out_off == c->out.len) {
        /* wait for the client to close, so that unread bytes do not reset the answer away */
        shutdown(c->fd, SHUT_WR);
        c->state = DRAINING;
    }
}

static void drain(struct conn *c)
{
    char sink[512];
    ssize_t n = read(c->fd, sink, sizeof sink);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_close(c);
    }
}

static void serve_conn(struct conn *c, short revents, long now)
{
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        if (c->state == READING) {
            read_request(c);
        } else if (c->state == DRAINING) {
            drain(c);
        }
    }
    if (c->fd >= 0 && c->state == WRITING && (revents & (POLLOUT | POLLIN | POLLHUP | POLLERR))) {
        write_response(c);
    }
    if (c->fd >= 0 && now >= c->deadline_ms) {
        conn_close(c);
    }
}

void mhttp_serve(struct mhttp *s, int timeout_ms)
{
    struct pollfd *fds = s->fds;
    int *idx = s->idx;
    nfds_t n = 0;
    for (int i = 0; i < s->lim.max_conns; i++) {
        struct conn *c = &s->conns[i];
        if (c->fd >= 0) {
            fds[n] = (struct pollfd){c->fd, c->state == WRITING ? POLLOUT : POLLIN, 0};
            idx[n++] = i;
        }
    }
    long pause = s->paused_until - clock_mono_ms();
    fds[n] = (struct pollfd){s->listen_fd, pause > 0 ? 0 : POLLIN, 0};
    idx[n++] = -1;
    if (pause > 0 && pause < timeout_ms) {
        timeout_ms = (int)pause; /* to watch the listener again on time */
    }
    if (poll(fds, n, timeout_ms) < 0) {
        return; /* EINTR: a signal, the caller looks at it */
    }
    long now = clock_mono_ms();
    for (nfds_t i = 0; i < n; i++) {
        if (idx[i] < 0) {
            if (fds[i].revents & POLLIN) {
                accept_new(s);
            }
        } else {
            serve_conn(&s->conns[idx[i]], fds[i].revents, now);
        }
    }
}

static void *run_thread(void *arg)
{
    struct mhttp *s = arg;
    while (!atomic_load(&s->quit)) {
        mhttp_serve(s, THREAD_TICK_MS);
    }
    return NULL;
}

int mhttp_start_thread(struct mhttp *s, struct err *e)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the worker's own threads */
    int rc = pthread_create(&s->thread, NULL, run_thread, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        return err_set(e, "cannot start the metrics thread: %s", strerror(rc));
    }
    s->threaded = true;
    return 0;
}
