/* loopback: a listening TCP socket on 127.0.0.1 (or ::1), on a port the kernel picks, for the unit
 * tests' small HTTP servers (test_http.c, test_awsmeta.c), which fork to serve from it;
 * test_metrics_http.c closes it to have a free port for the server it tests. */
#ifndef PIXQ_TEST_LOOPBACK_H
#define PIXQ_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* Binds `fd` (or -1) to address `a` of `size` bytes (its port 0), listens and reads back the port
 * the kernel picked into `a`; the socket, or -1 (closed) when any step failed. */
static int listen_on(int fd, struct sockaddr *a, socklen_t size)
{
    socklen_t len = size;
    if (fd < 0 || bind(fd, a, size) != 0 || listen(fd, 8) != 0 || getsockname(fd, a, &len) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* The socket, listening, its port in *port; -1 when it could not be made. */
static int loopback_listen(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = listen_on(socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&a, sizeof a);
    *port = ntohs(a.sin_port);
    return fd;
}

/* The same on ::1; -1 without IPv6. */
static inline int loopback6_listen(int *port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int fd = listen_on(socket(AF_INET6, SOCK_STREAM, 0), (struct sockaddr *)&a, sizeof a);
    *port = ntohs(a.sin6_port);
    return fd;
}

#endif
