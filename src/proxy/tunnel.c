/* tunnel.c -- bytes relayed both ways after a WebSocket 101 or a CONNECT 200 (see tunnel.h). */
#define _GNU_SOURCE
#include "tunnel.h"

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
#include "admit.h"
#include "auth.h"
#include "buf.h"
#include "client.h"
#include "cfg.h"
#include "dns.h"
#include "exchange.h"
#include "fwd.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "relay.h"
#include "stats.h"
#include "tls.h"
#include "tmo.h"

static bool tunnel_send(struct conn *e, struct buf *b, uint64_t *count, int *moved);
static int tunnel_recv(struct conn *e, struct buf *b, uint64_t *count, int *moved);

void tunnel_begin(struct client *c)
{
    struct exch *x = &c->s->x;
    struct buf *t = &c->s->uhead;   /* client -> upstream from now on */
    uint32_t early = c->in.end - x->body_ready;   /* sent by the client after its head */
    c->state = CS_TUNNEL;
    x->clk.tunnel = x->clk.active = px_loop->now;
    admit_release(c);   /* answered: a tunnel is no request in flight */
    x->tflags = 0;
    buf_release(t);
    buf_reserve(t, early > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    memcpy(t->data, c->in.data + x->body_ready, early);
    t->end = early;
    c->in.end = x->body_ready;      /* the head stays, for the access log */
    buf_reserve(&px_att(c->s)->in, BUF_SMALL);
    buf_compact(&px_att(c->s)->in);
    relay_close(&c->s->relay);
}

int tunnel_end(struct client *c, const char *reason)
{
    access_log(c, c->s->x.status, reason);
    client_close(c);   /* and the upstream, never pooled */
    return -1;
}

/* Moves b's bytes to the end e (the client's connection or the upstream's);
 * false after a write error (errno set). */
static bool tunnel_send(struct conn *e, struct buf *b, uint64_t *count, int *moved)
{
    while (buf_len(b) && (e->io.ready & LOOP_WRITE)) {
        struct iovec iov = {buf_head(b), buf_len(b)};
        ssize_t n = conn_writev(e, &iov, 1);
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return false;
        b->start += (uint32_t)n;
        *count += (uint64_t)n;
        *moved = 1;
    }
    if (!buf_len(b))
        b->start = b->end = 0;
    return true;
}

/* Reads from the end e into b while there is room; 1 at end of stream, -1
 * after an error, else 0. */
static int tunnel_recv(struct conn *e, struct buf *b, uint64_t *count, int *moved)
{
    while ((e->io.ready & LOOP_READ) && buf_room(b)) {
        ssize_t n = conn_read(e, buf_tail(b), buf_room(b));
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return -1;
        *moved = 1;
        if (n == 0)
            return 1;
        b->end += (uint32_t)n;
        *count += (uint64_t)n;
    }
    return 0;
}

int tunnel_step(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = px_att(c->s)->up;
    uint64_t to_client = 0, to_up = 0, ignored = 0;
    struct conn *ce = &c->conn, *ue = &up->conn;
    int moved;
    do {
        moved = 0;
        /* upstream -> client: the response head, then the upstream's bytes */
        if (!tunnel_send(ce, &c->s->out, &to_client, &moved) ||
            (!buf_len(&c->s->out) && !tunnel_send(ce, &px_att(c->s)->in, &to_client, &moved)))
            return tunnel_end(c, "client_abort");
        if (!buf_len(&c->s->out))
            x->flags |= X_FINAL_SENT;
        if (!(x->tflags & T_UEOF)) {
            int r = tunnel_recv(ue, &px_att(c->s)->in, &ignored, &moved);
            if (r < 0)
                return tunnel_end(c, "upstream_reset");
            if (r > 0)
                x->tflags |= T_UEOF;
        }
        if ((x->tflags & T_UEOF) && !(x->tflags & T_CSHUT) && !buf_len(&c->s->out) &&
            !buf_len(&px_att(c->s)->in)) {
            conn_shut_write(ce);
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
            conn_shut_write(ue);
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
