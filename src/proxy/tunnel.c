/* tunnel.c -- bytes relayed both ways after a WebSocket 101 or a CONNECT 200 (see tunnel.h). */
#define _GNU_SOURCE
#include "tunnel.h"

/* One end of a tunnel: a client or an upstream connection. */
struct end {
    struct loop_io *io;
    SSL *ssl;
    uint8_t *want;
};

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "access.h"
#include "addr.h"
#include "attempt.h"
#include "auth.h"
#include "buf.h"
#include "client.h"
#include "conf.h"
#include "dns.h"
#include "exchange.h"
#include "forward.h"
#include "fwd.h"
#include "health.h"
#include "hedge.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "relay.h"
#include "route.h"
#include "stats.h"
#include "tls.h"
#include "tmo.h"
#include "tunnel.h"

static bool tunnel_send(struct end e, struct buf *b, uint64_t *count, int *moved);
static int tunnel_recv(struct end e, struct buf *b, uint64_t *count, int *moved);

void tunnel_begin(struct client *c)
{
    struct exch *x = &c->s->x;
    struct buf *t = &c->s->uhead;   /* client -> upstream from now on */
    uint32_t early = c->in.end - x->body_ready;   /* sent by the client after its head */
    c->state = CS_TUNNEL;
    x->clk.tunnel = x->clk.active = px_loop->now;
    exchange_budget_release(c);   /* answered: a tunnel is no request in flight */
    x->tflags = 0;
    buf_release(t);
    buf_reserve(t, early > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    memcpy(t->data, c->in.data + x->body_ready, early);
    t->end = early;
    c->in.end = x->body_ready;      /* the head stays, for the access log */
    buf_reserve(&c->s->uin, BUF_SMALL);
    buf_compact(&c->s->uin);
    relay_close(&c->s->relay);
}

int tunnel_end(struct client *c, const char *reason)
{
    access_log(c, c->s->x.status, reason);
    client_close(c);   /* and the upstream, never pooled */
    return -1;
}

/* Moves b's bytes to the end e; false after a write error (errno set). */
static bool tunnel_send(struct end e, struct buf *b, uint64_t *count, int *moved)
{
    struct loop_io *io = e.io;
    while (buf_len(b) && (io->ready & LOOP_WRITE)) {
        struct iovec iov = {buf_head(b), buf_len(b)};
        ssize_t n = tls_or_writev(io->fd, e.ssl, &iov, 1);
        if (n > 0) {
            if ((uint32_t)n < buf_len(b))
                io->ready &= ~LOOP_WRITE;
            b->start += (uint32_t)n;
            *count += (uint64_t)n;
            *moved = 1;
        } else if (n < 0 && errno == EAGAIN) {
            io->ready &= ~LOOP_WRITE;
        } else if (!(n < 0 && errno == EINTR)) {
            return false;
        }
    }
    if (!buf_len(b))
        b->start = b->end = 0;
    return true;
}

/* Reads from the end e into b while there is room; 1 at end of stream, -1
 * after an error, else 0. */
static int tunnel_recv(struct end e, struct buf *b, uint64_t *count, int *moved)
{
    struct loop_io *io = e.io;
    while ((io->ready & LOOP_READ) && buf_room(b)) {
        uint32_t room = buf_room(b);
        ssize_t n = tls_or_read(io->fd, e.ssl, e.want, buf_tail(b), room);
        if (n > 0) {
            b->end += (uint32_t)n;
            *count += (uint64_t)n;
            *moved = 1;
            if ((uint32_t)n < room)
                px_read_was_short(io);
        } else if (n == 0) {
            *moved = 1;
            return 1;
        } else if (errno == EAGAIN) {
            io->ready &= ~LOOP_READ;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

int tunnel_step(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;
    uint64_t to_client = 0, to_up = 0, ignored = 0;
    struct end ce = {&c->io, c->ssl, &c->tls_want},
               ue = {&up->conn.io, up->conn.ssl, &up->conn.tls_want};
    int moved;
    do {
        moved = 0;
        /* upstream -> client: the response head, then the upstream's bytes */
        if (!tunnel_send(ce, &c->s->out, &to_client, &moved) ||
            (!buf_len(&c->s->out) && !tunnel_send(ce, &c->s->uin, &to_client, &moved)))
            return tunnel_end(c, "client_abort");
        if (!buf_len(&c->s->out))
            x->flags |= X_FINAL_SENT;
        if (!(x->tflags & T_UEOF)) {
            int r = tunnel_recv(ue, &c->s->uin, &ignored, &moved);
            if (r < 0)
                return tunnel_end(c, "upstream_reset");
            if (r > 0)
                x->tflags |= T_UEOF;
        }
        if ((x->tflags & T_UEOF) && !(x->tflags & T_CSHUT) && !buf_len(&c->s->out) &&
            !buf_len(&c->s->uin)) {
            shut_write(c->io.fd, c->ssl);
            x->tflags |= T_CSHUT;
        }
        /* client -> upstream */
        struct buf *t = &c->s->uhead;
        if (!tunnel_send(ue, t, &to_up, &moved))
            return tunnel_end(c, "upstream_reset");
        if (!(x->tflags & T_CEOF)) {
            int r = tunnel_recv(ce, t, &ignored, &moved);
            if (r < 0)
                return tunnel_end(c, "client_abort");
            if (r > 0)
                x->tflags |= T_CEOF;
        }
        if ((x->tflags & T_CEOF) && !(x->tflags & T_USHUT) && !buf_len(t)) {
            shut_write(up->conn.io.fd, up->conn.ssl);
            x->tflags |= T_USHUT;
        }
    } while (moved);
    x->bytes_sent += to_client;
    x->bytes_in += to_up;
    if (to_client || to_up)
        x->clk.active = px_loop->now;
    if ((x->tflags & (T_CSHUT | T_USHUT)) == (T_CSHUT | T_USHUT))
        return tunnel_end(c, "ok");
    return 0;
}
