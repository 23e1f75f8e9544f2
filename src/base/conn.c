/* conn.c -- one connection: opening, the connect step, ends (see conn.h). */
#define _GNU_SOURCE
#include "conn.h"

#include "net.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

ssize_t conn_read_failed(struct conn *c, void *buf, size_t len)
{
    if (errno == EINTR)
        return conn_read(c, buf, len);   /* a signal came first: again */
    if (errno == EAGAIN)
        c->io.ready &= ~LOOP_READ;
    return -errno;
}

ssize_t conn_writev_failed(struct conn *c, const struct iovec *iov, int n)
{
    if (errno == EINTR)
        return conn_writev(c, iov, n);
    if (errno == EAGAIN)
        c->io.ready &= ~LOOP_WRITE;
    return -errno;
}

/* A write that stops short leaves the next bytes sealed in a record that
 * will go out as they are: they can no longer be taken back. */
ssize_t conn_tls_writev(struct conn *c, const struct iovec *iov, int n, size_t want)
{
    ssize_t r = tls_writev(c->ssl, iov, n);
    c->sealed = r < 0 ? errno == EAGAIN : (size_t)r < want;
    return r;
}

int conn_open(struct conn *c, struct loop *l, int fd, loop_io_cb *cb)
{
    *c = (struct conn){.io.fd = -1};
    int r = loop_add(l, &c->io, fd, cb);
    if (r < 0) {
        close(fd);
        c->io.fd = -1;
    }
    return r;
}

int conn_connect(struct conn *c, struct loop *l, const struct sockaddr *sa, socklen_t len,
                 loop_io_cb *cb)
{
    int fd = net_connect(sa, len);
    if (fd < 0) {
        *c = (struct conn){.io.fd = -1};
        return fd;
    }
    int r = conn_open(c, l, fd, cb);
    if (r == 0)
        c->opening = CONN_OPEN_TCP;
    return r;
}

int conn_tls_client(struct conn *c, struct tls_client *t, const char *host,
                    SSL_SESSION **session)
{
    if (!(c->ssl = tls_client_conn(t, &c->io, host, session)))
        return -ENOMEM;
    c->opening |= CONN_OPEN_TLS;
    return 0;
}

int conn_open_step(struct conn *c, char *err, size_t errlen)
{
    if (c->opening & CONN_OPEN_TCP) {
        if (!(c->io.ready & (LOOP_WRITE | LOOP_HUP)))
            return 0;
        int e = net_socket_error(c->io.fd);
        if (e)
            return -e;
        c->opening &= ~CONN_OPEN_TCP;
    }
    if (c->opening & CONN_OPEN_TLS) {
        int r = tls_handshake(c->ssl, &c->io.ready, err, errlen);
        if (r == 0)
            return 0;
        if (r < 0)
            return -EPROTO;
        c->opening &= ~CONN_OPEN_TLS;
    }
    return 1;
}

void conn_cork(struct conn *c)
{
    if (c->corked)
        return;
    int one = 1;
    setsockopt(c->io.fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    c->corked = true;   /* (a failure only costs segments: not retried) */
}

void conn_shut_write(struct conn *c)
{
    tls_close_notify(c->ssl);
    shutdown(c->io.fd, SHUT_WR);
}

void conn_close(struct conn *c, struct loop *l)
{
    tls_free(c->ssl);
    c->ssl = NULL;
    c->tls_want = 0;
    c->opening = 0;
    c->sealed = false;
    c->corked = false;
    loop_close(l, &c->io);
}
