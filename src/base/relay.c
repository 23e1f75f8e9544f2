/* relay.c -- zero-copy relay of a body through a pipe (see relay.h). */
#define _GNU_SOURCE
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int relay_open(struct relay *r)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    r->rfd = fds[0];
    r->wfd = fds[1];
    r->len = 0;
    return 0;
}

void relay_close(struct relay *r)
{
    if (!relay_is_open(r))
        return;
    close(r->rfd);
    close(r->wfd);
    *r = (struct relay){0};
}

ssize_t relay_fill(struct relay *r, int from, size_t max)
{
    ssize_t n;
    do
        n = splice(from, NULL, r->wfd, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN && r->len)
            r->full = true;
        return -errno;
    }
    r->len += (uint32_t)n;
    return n;
}

ssize_t relay_drain(struct relay *r, int to)
{
    ssize_t n;
    do
        n = splice(r->rfd, NULL, to, NULL, r->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    r->len -= (uint32_t)n;
    if (n > 0)
        r->full = false;
    return n;
}
