/* client.c -- an HTTP/1.1 client connection: reading request heads and bodies,
 * writing responses and error replies, lingering, and the pump that moves it (see client.h). */
#define _GNU_SOURCE
#include "client.h"

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
#include "cfg.h"
#include "dns.h"
#include "evict.h"
#include "exchange.h"
#include "fwd.h"
#include "grpc.h"
#include "h2.h"
#include "health.h"
#include "http.h"
#include "request.h"
#include "log.h"
#include "net.h"
#include "observe.h"
#include "pool.h"
#include "relay.h"
#include "route.h"
#include "stats.h"
#include "tls.h"
#include "tmo.h"
#include "tunnel.h"

#define LINGER_MAX_BYTES (1u << 20)    /* input discarded after an error reply, at most */
#define SESSIONS_KEEP 256              /* spare sessions kept after a burst */

static struct client *free_clients;   /* recycled structs */
static struct session *free_sessions;
static unsigned nfree_sessions;

static void release_client(struct loop_defer *d);
static int client_splice(struct client *c);
static void plain_http_refusal(int fd);
static int head_step(struct client *c);
static int closing_step(struct client *c);
static void on_client(struct loop_io *io, uint32_t events);

/* Gives c a fresh session (entering HEAD from IDLE). */
void client_session_attach(struct client *c)
{
    struct session *s = free_sessions;
    if (s) {
        free_sessions = s->next_free;
        nfree_sessions--;
    } else {
        s = xmalloc(sizeof *s);
    }
    /* Zeroed but for the forward destination (712 bytes), which
     * forward_admit sets whole for each forward request: only what is read
     * before that is cleared (the destination's choice and its name query). */
    memset(s, 0, offsetof(struct session, fwd));
    s->fwd.chosen = false;
    s->fwd.name[0] = '\0';
    s->fwd.nips = 0;
    s->fwd.dns = (struct dns_query){0};
    exchange_reset(s);
    c->s = s;
    exchange_set_limits(c);
}

/* Releases everything the session holds and recycles it (back to IDLE, or
 * closing). The upstream connection must already be pooled or closed. */
void client_session_detach(struct client *c)
{
    struct session *s = c->s;
    if (!s)
        return;
    admit_release(c);   /* (access_log did, unless an end forgot to log) */
    buf_release(&s->out);
    buf_release(&s->uhead);
    buf_release(&px_att(s)->in);
    buf_release(&px_hedge(s)->in);
    relay_close(&s->relay);
    c->s = NULL;
    if (nfree_sessions >= SESSIONS_KEEP) {
        free(s);
        return;
    }
    s->next_free = free_sessions;
    free_sessions = s;
    nfree_sessions++;
}

static void release_client(struct loop_defer *d)
{
    struct client *c = container_of(d, struct client, defer);
    c->next = free_clients;
    free_clients = c;
}

/* Closes the client connection at once and releases everything it holds.
 * The struct itself is recycled at the end of the loop iteration. */
void client_close(struct client *c)
{
    if (c->state == CS_CLOSED)
        return;
    if (c->cflags & CF_STREAM) {
        h2_close(c);
        return;
    }
    if (c->state == CS_H2)
        h2_conn_close(c);
    exchange_drop_attempts(c);
    client_session_detach(c);
    evict_forget(c);
    loop_timer_stop(px_loop, &c->timer);
    conn_close(&c->conn, px_loop);   /* no close_notify: a clean end sends it before */
    buf_release(&c->in);
    c->state = CS_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        px_clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    px_nclients--;
    loop_defer(px_loop, &c->defer, release_client);
}

void client_trailers(struct client *c, const char *text, uint32_t len)
{
    if (c->cflags & CF_STREAM)
        h2_trailers(c, text, len);   /* (HTTP/1.1 clients get none, as from HTTP/1.1) */
}

void client_error(struct client *c, int status, const char *reason, const char *detail)
{
    client_error_ex(c, status, reason, detail, "");
}

/* extra: more header lines, each ending in CRLF ("" for none). */
void client_error_ex(struct client *c, int status, const char *reason,
                             const char *detail, const char *extra)
{
    char body[256];
    int bl = snprintf(body, sizeof body, "%d %s: %s\n", status, http_reason(status), detail);
    if (bl < 0 || (size_t)bl >= sizeof body)
        bl = (int)strlen(body);
    if ((c->cflags & CF_STREAM) && (c->s->x.req & R_GRPC)) {
        struct exch *x = &c->s->x;
        buf_release(&px_att(c->s)->in);
        buf_release(&c->s->uhead);
        x->interim = 0;
        if (x->grpc_status < 0)
            x->grpc_status = grpc_status_of_reason(reason, status);
        char msg[160];
        snprintf(msg, sizeof msg, "hourglass: %s (%s)", reason, detail);
        h2_grpc_error(c, x->grpc_status, msg);
        access_log(c, 200, reason);
        c->state = CS_CLOSING;
        x->clk.send_mark = 0;
        return;
    }
    if (c->cflags & CF_STREAM) {
        buf_release(&px_att(c->s)->in);
        buf_release(&c->s->uhead);
        c->s->x.interim = 0;
        h2_error(c, status, body, (c->s->x.req & R_HEAD_METHOD) ? 0 : bl);
        c->s->x.bytes_sent = (uint64_t)bl;
        access_log(c, status, reason);
        c->state = CS_CLOSING;
        c->s->x.clk.send_mark = 0;
        return;
    }
    buf_release(&px_att(c->s)->in);
    buf_release(&c->s->uhead);
    buf_reserve(&c->s->out, BUF_SMALL);
    c->s->out.start = c->s->out.end = 0;
    c->s->x.interim = 0;
    int hl = snprintf(c->s->out.data, c->s->out.cap,
                      "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      "X-Request-Id: %s\r\n%sConnection: close\r\n\r\n",
                      status, http_reason(status), bl, obs_rid(c), extra);
    c->s->out.end = (uint32_t)hl;
    if (!(c->s->x.req & R_HEAD_METHOD)) {
        memcpy(c->s->out.data + c->s->out.end, body, (size_t)bl);
        c->s->out.end += (uint32_t)bl;
    }
    c->s->x.bytes_sent = c->s->out.end;
    access_log(c, status, reason);
    c->state = CS_CLOSING;
    c->s->x.clk.send_mark = 0;
}

/* Checks the request body bytes past body_ready: counts a Content-Length
 * body; scans a chunked one, dropping its trailer fields in place. */
int client_request_body(struct client *c)
{
    struct exch *x = &c->s->x;
    uint32_t avail = c->in.end - x->body_ready;

    if ((x->flags & X_BODY_DONE) || !avail)
        return 0;
    if (x->req_framing == HTTP_BODY_LENGTH) {
        uint64_t k = avail < x->req_left ? avail : x->req_left;
        x->bytes_in += k;
        x->body_ready += (uint32_t)k;
        x->req_left -= k;
        if (!x->req_left)
            x->flags |= X_BODY_DONE;
        return 1;
    }
    size_t kept = 0;
    char *p = c->in.data + x->body_ready;
    ssize_t r = http_chunked_feed(&x->req_chunk, p, avail, &kept);
    if (r < 0) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("warn", "malformed chunked request body (%s)", what);
        return px_fault(c, FAULT_BAD_BODY, 0);
    }
    uint32_t rest = avail - (uint32_t)r;
    x->bytes_in += (uint64_t)r;
    if (rest && kept != (size_t)r)
        memmove(p + kept, p + r, rest);
    c->in.end -= (uint32_t)r - (uint32_t)kept;
    x->body_ready += (uint32_t)kept;
    if (px_cfg->max_body && x->req_chunk.payload > px_cfg->max_body)
        return px_fault(c, FAULT_BODY_TOO_LARGE, 0);
    if ((x->flags & X_KEEP_BODY) &&
        x->req_chunk.payload > (x->route->retry ? x->route->retry->max_body : KEEP_BODY_H2))
        x->flags &= ~X_KEEP_BODY;   /* too large to keep: no retry */
    if (http_chunked_done(&x->req_chunk))
        x->flags |= X_BODY_DONE;
    return 1;
}

/* Reads request body bytes while they are wanted and there is room. */
int client_recv_body(struct client *c)
{
    struct exch *x = &c->s->x;
    int progress = 0;

    if (c->cflags & CF_STREAM)
        return h2_recv_body(c);
    if (x->flags & (X_BODY_DONE | X_ABANDON_BODY)) {
        if (c->conn.io.ready & LOOP_HUP)
            return px_fault(c, FAULT_CLIENT_GONE, 0);   /* the client went away: cancel */
        return AT_IDLE;
    }
    while (c->conn.io.ready & LOOP_READ) {
        if (!buf_room(&c->in)) {
            uint32_t hs = c->in.start + x->head_len;
            if (!client_in_compactable(c)) {
                /* full of unsent body: the write clock runs; but a client
                 * that hung up (HUP: both ways closed, or reset) can take
                 * no answer, so its work is cancelled now, not at a timer */
                if (c->conn.io.ready & LOOP_HUP)
                    return px_fault(c, FAULT_CLIENT_GONE, 0);
                break;
            }
            x->flags &= ~X_KEEP_BODY;   /* making room loses the kept body */
            uint32_t d = x->body_sent - hs;
            memmove(c->in.data + hs, c->in.data + x->body_sent, c->in.end - x->body_sent);
            x->body_sent = hs;
            x->body_ready -= d;
            c->in.end -= d;
        }
        uint32_t room = buf_room(&c->in);
        ssize_t n = conn_read(&c->conn, buf_tail(&c->in), room);
        if (n > 0) {
            c->in.end += (uint32_t)n;
            x->clk.body_mark = px_loop->now;
            if (client_request_body(c) == AT_FAILED)
                return AT_FAILED;
            progress = 1;
            if (x->flags & X_BODY_DONE)
                break;
            continue;
        }
        if (n == -EAGAIN)
            break;
        /* the end of stream, or an error */
        return px_fault(c, FAULT_CLIENT_GONE, n < 0 ? (int)n : 0);
    }
    return progress;
}

/* Splice mode: moves the pipe's bytes to the client, once out is sent. */
static int client_splice(struct client *c)
{
    struct exch *x = &c->s->x;
    int progress = 0;

    while ((c->conn.io.ready & LOOP_WRITE) && c->s->relay.len && !buf_len(&c->s->out)) {
        uint32_t want = c->s->relay.len;
        ssize_t n = relay_drain(&c->s->relay, c->conn.io.fd);
        if (n > 0) {
            x->bytes_sent += (uint64_t)n;
            x->clk.send_mark = px_loop->now;
            x->flags |= X_FINAL_SENT;
            if ((uint32_t)n < want)
                c->conn.io.ready &= ~LOOP_WRITE;
            progress = 1;
            continue;
        }
        if (n == -EAGAIN) {
            c->conn.io.ready &= ~LOOP_WRITE;
            break;
        }
        return px_fault(c, FAULT_CLIENT_GONE, (int)n);
    }
    return progress;
}

/* Whether the connection may close at once once its output is out, without
 * the linger: the client asked to close, its request was read whole with
 * nothing after it, and the socket had nothing more to read (a short read
 * cleared LOOP_READ), so a close sends a FIN behind the response and no
 * reset. Plain TCP only (TLS ends with close_notify). Saves the shutdown,
 * the read of the client's end and a wake-up per such connection. */
static bool close_at_once(const struct client *c)
{
    const struct exch *x = &c->s->x;
    return (x->flags & (X_CLIENT_CLOSE | X_BODY_DONE)) == (X_CLIENT_CLOSE | X_BODY_DONE) &&
           !c->conn.ssl && !(c->cflags & CF_STREAM) && !(c->conn.io.ready & LOOP_READ) &&
           c->in.end <= x->body_ready;
}

/* Whether the pb body bytes now offered end the response of a connection
 * whose write side closes right after (closing_step: plain, closed at once;
 * TLS, shut before its linger): they may leave with the FIN (conn.h). */
static bool last_before_close(const struct client *c, uint32_t pb)
{
    const struct exch *x = &c->s->x;
    return (x->flags & (X_RESP_DONE | X_CLOSE_AFTER)) == (X_RESP_DONE | X_CLOSE_AFTER) &&
           x->resp_ready == px_att(c->s)->in.start + pb && (c->conn.ssl || close_at_once(c));
}

/* Sends queued heads and validated response body bytes to the client. */
int client_send(struct client *c)
{
    struct attempt *a = px_att(c->s);
    struct exch *x = &c->s->x;
    if (c->cflags & CF_STREAM)
        return h2_send(c);
    if ((x->flags & X_SPLICE) && !buf_len(&c->s->out))
        return client_splice(c);   /* (a head still queued goes first, below) */
    uint32_t po = buf_len(&c->s->out);
    uint32_t pb = (x->flags & X_RESP_HEAD) ? x->resp_ready - a->in.start : 0;

    if (po + pb == 0 || !(c->conn.io.ready & LOOP_WRITE))
        return 0;
    if (pb > SEND_SLICE)
        pb = SEND_SLICE;
    struct iovec iov[2] = {
        {buf_head(&c->s->out), po},
        {pb ? a->in.data + a->in.start : NULL, pb},   /* (no storage yet: no pointer sum) */
    };
    ssize_t n = last_before_close(c, pb)
                    ? conn_writev_before_close(&c->conn, po ? iov : iov + 1,
                                               (po ? 1 : 0) + (pb ? 1 : 0))
                    : conn_writev(&c->conn, po ? iov : iov + 1, (po ? 1 : 0) + (pb ? 1 : 0));
    if (n == -EAGAIN)
        return 0;
    if (n < 0)
        return px_fault(c, FAULT_CLIENT_GONE, (int)n);
    uint32_t k = (uint32_t)n < po ? (uint32_t)n : po;
    c->s->out.start += k;
    if (x->interim >= k) {
        x->interim -= k;
    } else {
        x->interim = 0;
        x->flags |= X_FINAL_SENT;
    }
    if ((uint32_t)n > k) {
        a->in.start += (uint32_t)n - k;
        x->flags |= X_FINAL_SENT;
    }
    x->bytes_sent += (uint64_t)n;
    x->clk.send_mark = px_loop->now;
    if (!buf_len(&c->s->out))
        c->s->out.start = c->s->out.end = 0;
    if ((x->flags & X_RESP_HEAD) && a->in.start == a->in.end)
        a->in.start = a->in.end = x->resp_ready = 0;
    return 1;
}

/* A plain HTTP request on a TLS port gets a plain 400 that says so (best
 * effort: one send), and its unread bytes are drained so that the close
 * does not turn into a reset that destroys the answer. */
static void plain_http_refusal(int fd)
{
    static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 51\r\nConnection: close\r\n\r\n"
                              "400 Bad Request: plain HTTP was sent to a TLS port\n";
    char sink[4096];
    (void)!send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
}

/* A TLS listener's handshake: 0 while it runs, 1 when done, -1 after
 * closing a client whose handshake failed. */
static int handshake_step(struct client *c)
{
    char why[160];
    int r = tls_handshake(c->conn.ssl, &c->conn.io.ready, why, sizeof why);
    if (r == 0)
        return 0;
    if (r < 0) {
        struct peer_text pt;
        log_error("info", "TLS handshake with client %s failed: %s", access_peer(c, &pt), why);
        stats->tls[STATS_TLS_CLIENT][TLS_FAILED]++;
        if (r == -2)
            plain_http_refusal(c->conn.io.fd);
        client_close(c);
        return -1;
    }
    stats->tls[STATS_TLS_CLIENT][tls_resumed(c->conn.ssl) ? TLS_RESUMED : TLS_OK]++;
    c->cflags &= ~CF_HANDSHAKE;
    c->t_first = px_loop->now;   /* idle from here */
    return 1;
}

/* Parses what `in` holds of the request head: the exchange starts when it
 * is complete, a bad head is answered (and the connection closed after). */
static int head_parse(struct client *c, int progress)
{
    struct exch *x = &c->s->x;
    if (!buf_len(&c->in) || buf_len(&c->in) == x->parsed_len)
        return progress;
    int r = http_parse_request(buf_head(&c->in), buf_len(&c->in), &px_scratch, &px_req_limits);
    if (r == HTTP_INCOMPLETE && !buf_room(&c->in) && c->in.start == 0 &&
        c->in.cap >= BUF_LARGE)
        r = -431;   /* limits set near their maximum can exceed the buffer */
    if (r == HTTP_INCOMPLETE) {
        x->parsed_len = buf_len(&c->in);
        return progress;
    }
    if (r < 0) {
        const char *detail = r == -414 ? "request line longer than --max-request-line"
                           : r == -431 ? "header fields over --max-header-size or --max-headers"
                           : r == -505 ? "only HTTP/1.0 and HTTP/1.1 are served"
                                       : "malformed request head";
        struct peer_text pt;
        log_error("info", "bad request from %s: %d, %s", access_peer(c, &pt), -r, detail);
        x->flags |= X_CLOSE_AFTER;
        client_error(c, -r, "bad_request", detail);
        return 1;
    }
    return request_start(c, r);
}

/* IDLE and HEAD: read and parse the next request head. */
static int head_step(struct client *c)
{
    int progress = 0;

    if (c->cflags & CF_HANDSHAKE) {
        int r = handshake_step(c);
        if (r <= 0)
            return r;
        if ((c->cflags & CF_HTTP2) && tls_alpn_h2(c->conn.ssl))
            return h2_start(c);
        progress = 1;
    }
    while (c->conn.io.ready & LOOP_READ) {
        buf_reserve(&c->in, BUF_SMALL);
        if (!buf_room(&c->in)) {
            if (c->in.start) {
                buf_compact(&c->in);
            } else if (c->in.cap < BUF_LARGE) {
                buf_reserve(&c->in, BUF_LARGE);
            } else {
                break;   /* the parser refuses a head this large */
            }
        }
        uint32_t room = buf_room(&c->in);
        ssize_t n = conn_read(&c->conn, buf_tail(&c->in), room);
        if (n > 0) {
            if (c->state == CS_IDLE) {
                client_session_attach(c);
                c->state = CS_HEAD;
                c->t_first = px_loop->now;
            }
            c->in.end += (uint32_t)n;
            progress = 1;
            continue;
        }
        if (n == -EAGAIN)
            break;
        /* end of stream or error: fine between requests, an abort within one */
        if (c->state == CS_HEAD && buf_len(&c->in)) {
            struct peer_text pt;
            log_error("info", "client %s closed the connection within a request head",
                      access_peer(c, &pt));
            access_log(c, 499, "client_abort");   /* as every client_abort (README) */
        }
        client_close(c);
        return -1;
    }
    if (c->state == CS_IDLE) {
        buf_release(&c->in);   /* idle connections hold no buffer */
        return progress;
    }
    if ((c->cflags & CF_HTTP2) && !(c->cflags & CF_SERVED) && c->in.start == 0) {
        int p = h2_preface(buf_head(&c->in), buf_len(&c->in));
        if (p > 0)
            return h2_start(c);   /* h2c with prior knowledge */
        if (p == 0)
            return progress;      /* a beginning of the preface: wait for the rest */
    }
    return head_parse(c, progress);
}

/* CLOSING: finish sending, shut the write side, then discard input until the
 * client closes or the linger time is over, so that unread request bytes do
 * not turn the close into a reset that destroys the response in flight
 * (unless close_at_once). */
static int closing_step(struct client *c)
{
    struct exch *x = &c->s->x;

    if (buf_len(&c->s->out)) {
        if (!(c->conn.io.ready & LOOP_WRITE))
            return 0;
        struct iovec iov = {buf_head(&c->s->out), buf_len(&c->s->out)};
        ssize_t n = conn_writev(&c->conn, &iov, 1);
        if (n == -EAGAIN)
            return 0;
        if (n < 0) {
            client_close(c);
            return -1;
        }
        c->s->out.start += (uint32_t)n;
        x->clk.send_mark = px_loop->now;
        if (buf_len(&c->s->out))
            return 1;   /* (short: the write bit is cleared) */
    }
    if (!(x->flags & X_LINGER) && close_at_once(c)) {
        client_close(c);
        return -1;
    }
    if (!(x->flags & X_LINGER)) {
        x->flags |= X_LINGER;
        buf_release(&c->s->out);
        buf_release(&c->in);
        buf_release(&px_att(c->s)->in);
        buf_release(&c->s->uhead);
        conn_shut_write(&c->conn);
        c->t_first = px_loop->now;
    }
    while (c->conn.io.ready & LOOP_READ) {
        char sink[4096];
        ssize_t n = conn_read(&c->conn, sink, sizeof sink);
        if (n > 0) {
            x->discarded += (uint32_t)n;
            if (x->discarded <= LINGER_MAX_BYTES)
                continue;
        } else if (n == -EAGAIN) {
            return 0;
        }
        client_close(c);
        return -1;
    }
    return 0;
}

void client_pump(struct client *c)
{
    if (c->state == CS_H2) {
        h2_conn_step(c);   /* (it steps its streams and keeps its own timer) */
        return;
    }
    for (;;) {
        int r;
        switch (c->state) {
        case CS_IDLE:
        case CS_HEAD:
            if (c->cflags & CF_STREAM)
                return;   /* (its head is the connection's business) */
            r = head_step(c);
            break;
        case CS_EXCH:
            r = exchange_step(c);
            break;
        case CS_CLOSING:
            r = (c->cflags & CF_STREAM) ? h2_closing_step(c) : closing_step(c);
            break;
        case CS_TUNNEL:
            r = tunnel_step(c);
            break;
        default:
            return;
        }
        if (c->state == CS_CLOSED || c->state == CS_H2)
            return;   /* (an HTTP/2 connection keeps its own timer) */
        if (r <= 0)
            break;
    }
    exchange_arm(c);
}

static void on_client(struct loop_io *io, uint32_t events)
{
    struct client *c = container_of(io, struct client, conn.io);
    conn_rearm(&c->conn, events);
    client_pump(c);
}

void client_new(int fd, const struct sockaddr_storage *peer, uint16_t cflags,
                       struct tls_server *tls)
{
    struct client *c = free_clients;
    if (c)
        free_clients = c->next;
    else
        c = xmalloc(sizeof *c);
    *c = (struct client){0};
    timer_init(&c->timer, exchange_on_timer);
    if (conn_open(&c->conn, px_loop, fd, on_client) < 0) {   /* (fd closed) */
        c->next = free_clients;
        free_clients = c;
        return;
    }
    if (tls) {
        if (!(c->conn.ssl = tls_server_conn(tls, &c->conn.io))) {
            log_error("error", "TLS: out of memory for a new connection; closing it");
            conn_close(&c->conn, px_loop);
            c->next = free_clients;
            free_clients = c;
            return;
        }
        cflags |= CF_HANDSHAKE | CF_TLS;
    }
    memcpy(&c->peer, peer, peer->ss_family == AF_INET6 ? sizeof c->peer.v6 : sizeof c->peer.v4);
    c->state = CS_IDLE;
    c->cflags = cflags;
    c->t_first = px_loop->now;
    c->next = px_clients;
    if (px_clients)
        px_clients->prev = c;
    px_clients = c;
    px_nclients++;
    exchange_arm(c);
}

void client_free_spares(void)
{
    while (free_clients) {
        struct client *c = free_clients;
        free_clients = c->next;
        free(c);
    }
    while (free_sessions) {
        struct session *s = free_sessions;
        free_sessions = s->next_free;
        free(s);
    }
    nfree_sessions = 0;
    h2_free_spares();
}

/* ---- response heads, written the HTTP/1.1 way ------------------------------
 *
 * The attempt parses the upstream's heads and hands them here: how a head
 * reaches the client (rewritten HTTP/1.1 text in `out`, its framing, the
 * connection's fate) is the client's business, so that another kind of
 * client (an HTTP/2 stream) can write its own. Each returns 0, or -1 when
 * the rewritten head does not fit the output buffer. */

/* Room in `out` for a head of about len bytes after what it holds. */
static void out_room(struct client *c, uint32_t len)
{
    buf_reserve(&c->s->out, len + c->s->x.interim + 512 > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    buf_compact(&c->s->out);
}

static int put_head(struct client *c, const struct fwd_resp *fr)
{
    int n = fwd_response_head(buf_tail(&c->s->out), buf_room(&c->s->out), fr);
    if (n < 0)
        return -1;
    c->s->out.end += (uint32_t)n;
    return n;
}

int client_interim_head(struct client *c, const struct http_msg *m, uint32_t len)
{
    if (c->cflags & CF_STREAM)
        return h2_interim_head(c, m, len);
    /* HTTP/1.0 has no 1xx; a 100 the proxy already sent is not sent twice */
    if (c->minor == 0 || (m->status == 100 && (c->s->x.flags & X_CONTINUE)))
        return 0;
    out_room(c, len);
    struct fwd_resp fr = {.m = m};
    int n = put_head(c, &fr);
    if (n < 0)
        return -1;
    c->s->x.interim += (uint32_t)n;
    return 0;
}

int client_upgrade_head(struct client *c, const struct http_msg *m, uint32_t len)
{
    if (c->cflags & CF_STREAM)
        return -1;   /* (an HTTP/2 stream never asks for an upgrade) */
    out_room(c, len);
    struct fwd_resp fr = {.m = m, .upgrade = true};
    char st[160];
    obs_response_fields(c, &fr, st, sizeof st);
    return put_head(c, &fr) < 0 ? -1 : 0;
}

int client_response_head(struct client *c, const struct http_msg *m,
                         const struct http_info *info, uint32_t len)
{
    struct exch *x = &c->s->x;
    if (c->cflags & CF_STREAM)
        return h2_response_head(c, m, info, len);
    /* An HTTP/1.0 client that asked for keep-alive keeps its connection
     * when the response has a known end: a length or no body. A chunked
     * body is decoded for it and ends at close. */
    if (info->framing == HTTP_BODY_CHUNKED && c->minor == 0)
        x->flags |= X_DECHUNK | X_CLOSE_AFTER;
    x->resp_chunk.keep_framing = !(x->flags & X_DECHUNK);
    out_room(c, len);
    struct fwd_resp fr = {
        .m = m,
        .info = info,
        .chunked = info->framing == HTTP_BODY_CHUNKED && !(x->flags & X_DECHUNK),
        .close = (x->flags & X_CLOSE_AFTER) != 0,
        .keepalive = c->minor == 0,
    };
    char st[160];
    obs_response_fields(c, &fr, st, sizeof st);   /* X-Request-Id, Server-Timing */
    return put_head(c, &fr) < 0 ? -1 : 0;
}

void client_continue(struct client *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (c->cflags & CF_STREAM) {
        h2_continue(c);
        return;
    }
    buf_reserve(&c->s->out, BUF_SMALL);
    memcpy(buf_tail(&c->s->out), cont, sizeof cont - 1);
    c->s->out.end += sizeof cont - 1;
    c->s->x.interim += sizeof cont - 1;
    c->s->x.flags |= X_CONTINUE;
}

bool client_can_splice(const struct client *c)
{
    return !c->conn.ssl && !(c->cflags & CF_STREAM);
}

bool client_writable(const struct client *c)
{
    if (c->cflags & CF_STREAM)
        return h2_writable(c);
    return (c->conn.io.ready & LOOP_WRITE) != 0;
}

/* The exchange ended well (exchange_done): what the connection does next. */
int client_next(struct client *c)
{
    struct exch *x = &c->s->x;
    if (c->cflags & CF_STREAM)
        return h2_next(c);
    if ((x->flags & X_CLOSE_AFTER) || px_draining) {
        c->state = CS_CLOSING;
        return 1;
    }
    c->in.start = x->body_ready;   /* past this request; pipelined bytes stay */
    c->t_first = px_loop->now;
    if (buf_len(&c->in)) {
        exchange_reset(c->s);       /* a pipelined request is waiting */
        exchange_set_limits(c);
        c->state = CS_HEAD;
    } else {
        buf_release(&c->in);        /* idle: no buffer, no session */
        client_session_detach(c);
        c->state = CS_IDLE;
        c->cflags |= CF_SERVED;
    }
    return 1;
}
