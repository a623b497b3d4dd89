/* loopback: a listening TCP socket on 127.0.0.1, on a port the kernel picks, for the unit tests'
 * small HTTP servers (test_http.c, test_awsmeta.c), which fork to serve from it;
 * test_metrics_http.c closes it to have a free port for the server it tests. */
#ifndef PIXQ_TEST_LOOPBACK_H
#define PIXQ_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* The socket, listening, its port in *port; -1 when it could not be made. */
static int loopback_listen(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

#endif
