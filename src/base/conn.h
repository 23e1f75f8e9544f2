/* conn.h -- one connection: a non-blocking socket on the loop, its readiness
 * bits, an optional TLS engine, the connect step, and reads and writes that
 * answer with an outcome.
 *
 * The client connection, the upstream connection, the tunnel and the health
 * checker all read and write through here, so the rules of edge-triggered
 * readiness (loop.h) and of TLS over a non-blocking socket (tls.h) are kept
 * in one place:
 *
 *   - conn_read and conn_writev retry EINTR themselves and clear the
 *     readiness bit whenever the socket is known to be drained (EAGAIN, or a
 *     short read) or full (EAGAIN, or a short write), so a caller loops
 *     `while (c->io.ready & LOOP_READ)` and needs no errno test of its own.
 *   - Over TLS the same outcomes hold (tls.h says why): an EAGAIN means the
 *     engine holds no plaintext either, a short read drained the socket, and
 *     a write that came back short must be offered again starting with the
 *     same bytes (the `sealed` flag records that they can no longer be taken
 *     back). A read that needs to write waits for the next writable event,
 *     which conn_rearm turns back into a read attempt.
 *
 * The owner embeds a struct conn and gives the loop its `io`; its callback
 * calls conn_rearm first, then does its work. */
#ifndef HG_CONN_H
#define HG_CONN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "loop.h"
#include "tls.h"

/* What conn_open_step still has to do (conn.opening). */
#define CONN_OPEN_TCP 0x1u   /* a connect in progress: wait for writability, then SO_ERROR */
#define CONN_OPEN_TLS 0x2u   /* the client side of the TLS handshake */

struct conn {
    struct loop_io io;   /* fd (-1 once closed), readiness bits, callback */
    SSL *ssl;            /* NULL: plain TCP */
    uint8_t tls_want;    /* TLS_READ_WANTS_WRITE: a read waits for writability */
    uint8_t opening;     /* CONN_OPEN_*: 0 once open */
    bool sealed;         /* TLS: the last write stopped inside a sealed record */
    bool corked;         /* TLS: TCP_CORK set for the last bytes before a close */
};

/* The cold ends of conn_read and conn_writev, out of line so that the
 * inlined calls stay small: a failed call (EINTR: again; EAGAIN: the bit
 * cleared; -errno), and a write through TLS. */
ssize_t conn_read_failed(struct conn *c, void *buf, size_t len);
ssize_t conn_writev_failed(struct conn *c, const struct iovec *iov, int n);
ssize_t conn_tls_writev(struct conn *c, const struct iovec *iov, int n, size_t want);

/* Reads up to len bytes. The outcome:
 *   > 0      bytes read. A read shorter than asked drained the socket, so
 *            LOOP_READ is cleared: the next edge says when there is more.
 *            Not so when the peer has hung up (LOOP_HUP): the end of stream
 *            is still to be read, and no further edge will come for it.
 *   0        the peer's end of stream (a close_notify over TLS, or a TCP end
 *            that tls_read accepts as one). The bits are left as they are.
 *   -EAGAIN  nothing to read now; LOOP_READ is cleared.
 *   -errno   an error (ECONNRESET, EPROTO for a TLS error...); errno is set
 *            too. The bits are left as they are.
 * A read never fails with EINTR: it is retried. */
static inline ssize_t conn_read(struct conn *c, void *buf, size_t len)
{
    ssize_t n = c->ssl ? tls_read(c->ssl, buf, len, &c->tls_want) : read(c->io.fd, buf, len);
    if (n > 0) {
        if ((size_t)n < len && !(c->io.ready & LOOP_HUP))
            c->io.ready &= ~LOOP_READ;
        return n;
    }
    return n == 0 ? 0 : conn_read_failed(c, buf, len);
}

/* Writes the n pieces of iov, in order, like sendmsg(2) with MSG_NOSIGNAL
 * (OpenSSL's own writes need SIGPIPE ignored, as main does). The outcome:
 *   >= 0     bytes written. Fewer than offered: the socket is full, so
 *            LOOP_WRITE is cleared.
 *   -EAGAIN  nothing written; LOOP_WRITE is cleared.
 *   -errno   an error (EPIPE, ECONNRESET...); errno is set too.
 * A write never fails with EINTR: it is retried. Over TLS, bytes offered and
 * not reported written may be sealed in a record already (c->sealed): the
 * next write must start with them. */
static inline ssize_t conn_writev_flags(struct conn *c, const struct iovec *iov, int n,
                                        int flags)
{
    size_t want = 0;
    for (int i = 0; i < n; i++)
        want += iov[i].iov_len;
    ssize_t r;
    if (c->ssl) {
        r = conn_tls_writev(c, iov, n, want);
    } else {
        struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
        r = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL | flags);
    }
    if (r < 0)
        return conn_writev_failed(c, iov, n);
    if ((size_t)r < want)
        c->io.ready &= ~LOOP_WRITE;
    return r;
}

static inline ssize_t conn_writev(struct conn *c, const struct iovec *iov, int n)
{
    return conn_writev_flags(c, iov, n, 0);
}

/* TLS: corks the socket (TCP_CORK) for the last bytes before a close, once;
 * see conn_writev_before_close. */
void conn_cork(struct conn *c);

/* conn_writev of the last bytes before a close: they wait in the socket,
 * even with TCP_NODELAY, until the close or the shutdown pushes them, and
 * the kernel then tacks the FIN onto their segment. Plain TCP: MSG_MORE on
 * this send. TLS, whose library writes records itself: the socket is
 * corked, so the response's records, the close_notify alert and the FIN
 * (conn_shut_write) leave as one segment instead of three. The caller must
 * close or shut down right after. */
static inline ssize_t conn_writev_before_close(struct conn *c, const struct iovec *iov, int n)
{
    if (c->ssl)
        conn_cork(c);
    return conn_writev_flags(c, iov, n, c->ssl ? 0 : MSG_MORE);
}

/* For the owner's loop callback, before anything else: a TLS read that
 * waited for writability may go on once the socket is writable. */
static inline void conn_rearm(struct conn *c, uint32_t events)
{
    if ((c->tls_want & TLS_READ_WANTS_WRITE) && (events & LOOP_WRITE)) {
        c->tls_want &= ~TLS_READ_WANTS_WRITE;
        c->io.ready |= LOOP_READ;
    }
}

/* Whether the TLS engine holds bytes of the peer already off the socket. */
static inline bool conn_pending(const struct conn *c)
{
    return tls_pending(c->ssl);
}

/* Puts fd (connected or accepted, non-blocking) on the loop, events to cb,
 * with no TLS. 0, or -errno with fd closed (c->io.fd is -1). */
int conn_open(struct conn *c, struct loop *l, int fd, loop_io_cb *cb);

/* Starts a non-blocking connect to sa and puts it on the loop (conn_open):
 * c is opening (CONN_OPEN_TCP) until conn_open_step says it is open. 0, or
 * -errno (nothing is left open). */
int conn_connect(struct conn *c, struct loop *l, const struct sockaddr *sa, socklen_t len,
                 loop_io_cb *cb);

/* Adds the client side of TLS to a connection being opened (host and
 * session: see tls_client_conn); conn_open_step then runs the handshake
 * after the connect. 0, or -ENOMEM. */
int conn_tls_client(struct conn *c, struct tls_client *t, const char *host,
                    SSL_SESSION **session);

/* Advances the opening: the TCP connect, then the TLS handshake when there
 * is one. 1 open (c->opening is 0); 0 not yet (the bit the step waits for is
 * cleared, as by an EAGAIN); -errno when the connect failed (CONN_OPEN_TCP is
 * still set); -EPROTO when the handshake did, with the reason in err. */
int conn_open_step(struct conn *c, char *err, size_t errlen);

/* Ends this side's stream cleanly: a close_notify over TLS, then the TCP
 * write side. Only for a clean end, never for a cancelled exchange. */
void conn_shut_write(struct conn *c);

/* Frees the TLS engine (no close_notify: a clean end sends one first) and
 * closes the socket, which leaves the loop. Safe on a closed connection. */
void conn_close(struct conn *c, struct loop *l);

#endif
