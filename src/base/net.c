/* net.c -- small socket helpers (see net.h). */
#define _GNU_SOURCE
#include "net.h"

#include <stdbool.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int listen_on(const struct sockaddr *sa, socklen_t len, int backlog, bool reuseport)
{
    int one = 1, err;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto out_close;
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* (accepted sockets inherit it) */
    if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0)
        goto out_close;
    return fd;

out_close:
    err = errno;
    close(fd);
    return -err;
}

int net_listen(const struct sockaddr *sa, socklen_t len, int backlog)
{
    return listen_on(sa, len, backlog, false);
}

int net_listen_reuseport(const struct sockaddr *sa, socklen_t len, int backlog)
{
    return listen_on(sa, len, backlog, true);
}

int net_connect(const struct sockaddr *sa, socklen_t len)
{
    int one = 1, err;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS)
        goto out_close;
    return fd;

out_close:
    err = errno;
    close(fd);
    return -err;
}

int net_socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

/* Whether the sockets accepted on a listener inherit its TCP_NODELAY (Linux
 * copies it from the listener, which listen_on sets): learnt from the first
 * socket accepted on it, so that a listener made elsewhere (handed down
 * without the option) still gets it set per socket. One system call less
 * per accepted connection. Listeners with fds past the table: always set. */
#define NODELAY_FDS 1024
static signed char nodelay_inherited[NODELAY_FDS];   /* 0 unknown, 1 yes, -1 no */

int net_accept(int lfd, struct sockaddr_storage *peer, socklen_t *len)
{
    int one = 1;
    *len = sizeof *peer;
    int fd = accept4(lfd, (struct sockaddr *)peer, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return -errno;
    signed char *known = lfd >= 0 && lfd < NODELAY_FDS ? &nodelay_inherited[lfd] : NULL;
    if (known && !*known) {
        int v = 0;
        socklen_t vl = sizeof v;
        *known = getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl) == 0 && v ? 1 : -1;
    }
    if (!known || *known < 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int net_defer_accept(int lfd, unsigned secs)
{
    int v = (int)secs;
    return setsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, sizeof v) < 0 ? -errno : 0;
}

void net_listener_closed(int lfd)
{
    if (lfd >= 0 && lfd < NODELAY_FDS)
        nodelay_inherited[lfd] = 0;   /* the fd may name another listener next */
}

/* Dotted quad without printf: this runs for every proxied request
 * (X-Forwarded-For), and glibc's inet_ntop formats IPv4 with sprintf. */
static void ipv4_text(const unsigned char *a, char *out, size_t n)
{
    char tmp[16], *p = tmp;
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        if (i < 3)
            *p++ = '.';
    }
    size_t len = (size_t)(p - tmp);
    if (!n)
        return;
    if (len > n - 1)
        len = n - 1;
    memcpy(out, tmp, len);
    out[len] = '\0';
}

void net_ip_text(const struct sockaddr *sa, char *out, size_t n)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            ipv4_text(&s6->sin6_addr.s6_addr[12], out, n);
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t)n);
    } else if (sa->sa_family == AF_INET) {
        ipv4_text((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, out, n);
    } else {
        snprintf(out, n, "-");
    }
}

void net_addr_text(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN];
    net_ip_text(sa, ip, sizeof ip);
    unsigned port = sa->sa_family == AF_INET6
                        ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
                        : ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6 && !strchr(ip, '.'))
        snprintf(out, n, "[%s]:%u", ip, port);
    else
        snprintf(out, n, "%s:%u", ip, port);
}
