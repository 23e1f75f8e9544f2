/* attempt.c -- one upstream try: connecting, sending the request, reading and
 * framing the response (see attempt.h). */
#define _GNU_SOURCE
#include "attempt.h"

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

#include "addr.h"
#include "admit.h"
#include "auth.h"
#include "buf.h"
#include "client.h"
#include "cfg.h"
#include "dns.h"
#include "exchange.h"
#include "fwd.h"
#include "grpc.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "observe.h"
#include "pool.h"
#include "relay.h"
#include "route.h"
#include "stats.h"
#include "tls.h"
#include "tmo.h"

char attempt_tls_why[160];

static int bad_response(struct client *c, const char *why);
static int head_too_large(struct client *c, bool rewritten);
static int attempt_response_body(struct client *c);
static int attempt_response_head(struct client *c);
static int upstream_splice(struct client *c);

void attempt_on_upstream(struct upconn *up, uint32_t events)
{
    (void)events;
    client_pump(up->owner);
}


static int bad_response(struct client *c, const char *why)
{
    px_fault(c, FAULT_RESPONSE, 0);
    snprintf(c->s->fault.why, sizeof c->s->fault.why, "%s", why);
    return AT_FAILED;
}

/* A response head over resp_limits (the parser said -431), or one whose
 * rewritten form does not fit the output buffer: its own fault, so that an
 * operator tells a large head from a broken one. */
static int head_too_large(struct client *c, bool rewritten)
{
    const struct buf *b = &px_att(c->s)->in;
    uint32_t got = buf_len(b), line = px_resp_limits.max_line + 2;
    char *why = c->s->fault.why;
    size_t n = sizeof c->s->fault.why;
    px_fault(c, FAULT_HEAD_TOO_LARGE, 0);
    if (rewritten)
        snprintf(why, n, "response head too large to forward (%u bytes, limit %u)",
                 px_scratch.head_len, BUF_LARGE);
    else if (got >= px_resp_limits.max_head)
        snprintf(why, n, "response head too large (%u bytes, limit %u)", got,
                 px_resp_limits.max_head);
    else if (!memchr(buf_head(b), '\n', got < line ? got : line))
        snprintf(why, n, "response head too large (status line over %u bytes)",
                 px_resp_limits.max_line);
    else
        snprintf(why, n, "response head too large (more than %u fields, limit %u)",
                 px_resp_limits.max_fields, px_resp_limits.max_fields);
    return AT_FAILED;
}

int attempt_connect(struct client *c, bool allow_pooled)
{
    struct exch *x = &c->s->x;
    int err = 0;

    px_att(c->s)->srv = (x->req & R_FORWARD) ? NULL   /* the client's destination: no pool */
              : x->avoid                ? pool_pick_other(x->route->pool, x->avoid)
                                        : pool_pick(x->route->pool);
    x->clk.try_start = px_att(c->s)->started = px_loop->now;
    if (!px_att(c->s)->srv && !(x->req & R_FORWARD))
        return pool_at_capacity(x->route->pool) ? AT_IDLE   /* every server at max_requests */
                                                : px_fault(c, FAULT_NO_SERVER, 0);
    if (allow_pooled) {
        px_att(c->s)->up = pool_take_idle(px_att(c->s)->srv, c, attempt_on_upstream);
        if (px_att(c->s)->up) {
            x->attempts++;
            obs_try_begin(c, px_att(c->s));
            x->connect_ns = 0;
            if (pool_opening(px_att(c->s)->up)) {   /* a stream on a connection being opened */
                x->clk.connect = px_loop->now;
                x->connect_ns = -1;
            }
            return AT_MOVED;
        }
    }
    if (!pool_may_connect(px_att(c->s)->srv))
        return AT_IDLE;   /* at the pool's connection limit */
    x->attempts++;
    obs_try_begin(c, px_att(c->s));
    struct pool_server *srv = px_att(c->s)->srv;
    px_att(c->s)->up = srv ? pool_connect(srv, c, attempt_on_upstream, &err)
                           : pool_connect_addr(px_dest_addr(c->s), c, attempt_on_upstream, &err);
    if (!px_att(c->s)->up)   /* out of descriptors...: ours, not the server's */
        return px_fault(c, net_local_exhausted(err) ? FAULT_LOCAL : FAULT_CONNECT, err);
    x->clk.connect = px_loop->now;
    x->connect_ns = -1;
    return AT_MOVED;
}

int attempt_connect_step(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = px_att(c->s)->up;
    if (!up || !pool_opening(up))
        return AT_IDLE;
    int err = pool_connect_step(up, attempt_tls_why, sizeof attempt_tls_why);
    if (err < 0)
        return px_fault(c, FAULT_CONNECT, err);
    if (err == 0)
        return AT_IDLE;
    x->connect_ns = (int64_t)(px_loop->now - x->clk.connect);
    return AT_MOVED;
}

/* Writes the time left of the total deadline into the request head's
 * deadline field and, for a gRPC call, its grpc-timeout, just before the
 * head is sent (each attempt anew): less the hop's margin, so that the next
 * hop gives up first. */
void attempt_stamp_deadline(struct client *c)
{
    struct exch *x = &c->s->x;
    if (!x->deadline_at && !x->grpc_at)
        return;
    uint64_t end = x->clk.start + ns_of(x->lim.ms[TMO_TOTAL]), now = loop_clock_ns();
    uint64_t left = end > now ? (end - now) / MS : 0;
    left = left > DEADLINE_HOP_MARGIN_MS ? left - DEADLINE_HOP_MARGIN_MS : 0;
    if (x->grpc_at) {   /* right-aligned in its blanks, as the deadline's digits */
        char v[GRPC_TIMEOUT_MAX];
        int n = grpc_timeout_format(left * MS, v);
        memset(c->s->uhead.data + x->grpc_at, ' ', FWD_DEADLINE_WIDTH);   /* (a retry's) */
        memcpy(c->s->uhead.data + x->grpc_at + FWD_DEADLINE_WIDTH - n, v, (size_t)n);
    }
    if (!x->deadline_at)
        return;
    char *p = c->s->uhead.data + x->deadline_at + FWD_DEADLINE_WIDTH;
    for (int i = 0; i < FWD_DEADLINE_WIDTH; i++) {   /* right-aligned, blank-padded */
        *--p = (i == 0 || left) ? (char)('0' + left % 10) : ' ';
        left /= 10;
    }
}

/* Sends what is held of the request to the upstream, running the write clock
 * while the upstream will not take it. */
int attempt_send(struct client *c)
{
    struct attempt *a = px_att(c->s);
    struct exch *x = &c->s->x;
    struct upconn *up = a->up;

    if (!up || pool_opening(up) || (x->flags & (X_REQ_SENT | X_ABANDON_BODY)))
        return 0;
    uint32_t ph = c->s->uhead.end - a->head_off;
    uint32_t pb = x->body_ready - x->body_sent;
    if (ph + pb == 0) {
        if (x->clk.write_since) {
            x->clk.write_used += px_loop->now - x->clk.write_since;
            x->clk.write_since = 0;
        }
        if (x->flags & X_BODY_DONE) {
            x->flags |= X_REQ_SENT;
            a->sent_at = px_loop->now;
            return 1;
        }
        return 0;
    }
    if (!(up->conn.io.ready & LOOP_WRITE)) {
        if (!x->clk.write_since)
            x->clk.write_since = px_loop->now;
        return 0;
    }
    if (a->head_off == 0)
        attempt_stamp_deadline(c);
    if (pb > SEND_SLICE)
        pb = SEND_SLICE;
    struct iovec iov[2] = {
        {c->s->uhead.data + a->head_off, ph},
        {c->in.data + x->body_sent, pb},
    };
    ssize_t n = pool_writev(up, ph ? iov : iov + 1, ph ? 2 : 1);
    if (n < 0) {
        if (n == -EAGAIN) {
            if (!x->clk.write_since)
                x->clk.write_since = px_loop->now;
            return 0;
        }
        return px_fault(c, FAULT_IO, -errno);
    }
    uint32_t k = (uint32_t)n < ph ? (uint32_t)n : ph;
    a->head_off += k;
    x->body_sent += (uint32_t)n - k;
    if ((uint32_t)n < ph + pb) {
        if (!x->clk.write_since)
            x->clk.write_since = px_loop->now;
    } else {
        if (x->clk.write_since) {
            x->clk.write_used += px_loop->now - x->clk.write_since;
            x->clk.write_since = 0;
        }
        /* Mark it now: a fast upstream may answer before the next pass, and
         * must not be mistaken for one answering before the request ended. */
        if ((x->flags & X_BODY_DONE) && x->body_sent == x->body_ready &&
            a->head_off == c->s->uhead.end) {
            x->flags |= X_REQ_SENT;
            /* The read clock starts now, at the hand-over itself, not at the
             * (earlier) time this event was dispatched: never early. */
            x->clk.read_mark = loop_clock_ns();
            x->sent_ns = (int64_t)(x->clk.read_mark - x->clk.start);
            a->sent_at = x->clk.read_mark;
        }
    }
    /* Reclaim the body space once everything read has been sent (unless it
     * is kept for a retry). */
    uint32_t hs = c->in.start + x->head_len;
    if (!(x->flags & X_KEEP_BODY) && x->body_sent == c->in.end && x->body_sent > hs)
        x->body_sent = x->body_ready = c->in.end = hs;
    return 1;
}

/* A body that will not fit a small buffer is relayed through a large one:
 * at 64 KiB a slice, a 1 MiB body costs a quarter of the system calls. */
bool attempt_bulk(enum http_framing f, uint64_t length)
{
    return f == HTTP_BODY_CHUNKED || f == HTTP_BODY_CLOSE ||
           (f == HTTP_BODY_LENGTH && length > BUF_SMALL);
}

/* Validates the response body bytes in uin past resp_ready. */
static int attempt_response_body(struct client *c)
{
    struct exch *x = &c->s->x;
    uint32_t avail = px_att(c->s)->in.end - x->resp_ready;

    if (!(x->flags & X_RESP_HEAD) || !avail)
        return 0;   /* no final head yet: nothing here is body */
    if (x->flags & X_RESP_DONE)
        goto out_extra;
    switch (x->resp_framing) {
    case HTTP_BODY_LENGTH: {
        uint64_t k = avail < x->resp_left ? avail : x->resp_left;
        x->resp_ready += (uint32_t)k;
        x->resp_left -= k;
        if (!x->resp_left)
            x->flags |= X_RESP_DONE;
        break;
    }
    case HTTP_BODY_CHUNKED: {
        /* payload only for an HTTP/1.0 client, else framing minus trailers */
        size_t dl = 0;
        char *p = px_att(c->s)->in.data + x->resp_ready;
        ssize_t r = http_chunked_feed(&x->resp_chunk, p, avail, &dl);
        if (r < 0)
            return bad_response(c, "malformed chunked body");
        uint32_t rest = avail - (uint32_t)r;
        if (rest && dl != (size_t)r)
            memmove(p + dl, p + r, rest);
        px_att(c->s)->in.end = x->resp_ready + (uint32_t)dl + rest;
        x->resp_ready += (uint32_t)dl;
        if (http_chunked_done(&x->resp_chunk))
            x->flags |= X_RESP_DONE;
        break;
    }
    case HTTP_BODY_CLOSE:
        x->resp_ready = px_att(c->s)->in.end;
        break;
    default:
        x->flags |= X_RESP_DONE;
        break;
    }
    if (!(x->flags & X_RESP_DONE) || px_att(c->s)->in.end == x->resp_ready)
        return 1;
out_extra:
    /* Bytes past the end of the response: the connection cannot be trusted. */
    px_att(c->s)->in.end = x->resp_ready;
    x->flags |= X_NO_REUSE;
    return 1;
}

/* The final response head (px_scratch, r bytes at in.start) is accepted:
 * the response's framing, and the head handed to the client to write. */
static int final_head(struct client *c, int r, const struct http_info *info)
{
    struct exch *x = &c->s->x;
    struct attempt *a = px_att(c->s);

    x->status = px_scratch.status;
    x->resp_framing = (uint8_t)info->framing;
    x->resp_left = info->length;
    if (info->conn_close || info->framing == HTTP_BODY_CLOSE)
        x->flags |= X_NO_REUSE;
    if (!(x->flags & X_REQ_SENT))   /* an early response: stop the upload */
        x->flags |= X_ABANDON_BODY | X_NO_REUSE | X_CLOSE_AFTER;
    if (info->framing == HTTP_BODY_CLOSE || px_draining)
        x->flags |= X_CLOSE_AFTER;
    if (client_response_head(c, &px_scratch, info, (uint32_t)r) < 0)
        return head_too_large(c, true);
    a->in.start += (uint32_t)r;
    if (attempt_bulk(info->framing, info->length))
        buf_reserve(&a->in, BUF_LARGE);   /* fewer, larger reads and writes */
    if (info->framing == HTTP_BODY_LENGTH && info->length >= SPLICE_MIN &&
        client_can_splice(c) && !a->up->conn.ssl && !a->up->stream)
        x->flags |= X_SPLICE_OK;   /* (TLS and HTTP/2 bytes must pass through us) */
    x->resp_ready = a->in.start;
    x->flags |= X_RESP_HEAD;
    if (info->framing == HTTP_BODY_NONE)
        x->flags |= X_RESP_DONE;
    return AT_HEAD;
}

/* A response head's grpc-status (a gRPC Trailers-Only response), or -1. */
static int head_grpc_status(const struct http_msg *m)
{
    for (uint32_t i = 0; i < m->nfields; i++)
        if (HTTP_NAME_IS(&m->fields[i], "grpc-status"))
            return grpc_status_parse(m->fields[i].value, m->fields[i].value_len);
    return -1;
}

/* Parses response heads in uin: 1xx heads are handed to the client (which
 * relays or skips them) and consumed, the final head is accepted (AT_HEAD),
 * a 101 to an upgrade too (AT_UPGRADE). Incomplete: AT_IDLE. */
static int attempt_response_head(struct client *c)
{
    struct exch *x = &c->s->x;
    struct buf *in = &px_att(c->s)->in;

    while (!(x->flags & X_RESP_HEAD) && buf_len(in)) {
        int r = http_parse_response(buf_head(in), buf_len(in), &px_scratch, &px_resp_limits);
        if (r == HTTP_INCOMPLETE) {
            /* The parser refuses a head once it outgrows resp_limits, which
             * fit BUF_LARGE: a full large buffer cannot be incomplete. */
            if (!buf_room(in) && in->start == 0) {
                if (in->cap >= BUF_LARGE)
                    return head_too_large(c, false);
                buf_reserve(in, BUF_LARGE);
                x->resp_ready = in->start;
            }
            return AT_IDLE;
        }
        if (r == -431)
            return head_too_large(c, false);
        if (r < 0)
            return bad_response(c, "malformed response head");
        struct http_info info;
        if (http_response_info(&px_scratch, x->req & R_HEAD_METHOD, &info) < 0)
            return bad_response(c, "bad response framing");
        /* The server answered: its pool decides whether that status is a
         * success or a failure (and takes the latency), once per attempt,
         * whatever becomes of the head below. */
        if (px_scratch.status >= 200 || (px_scratch.status == 101 && (x->req & R_UPGRADE))) {
            pool_report(px_att(c->s)->srv, POOL_ANSWERED, px_scratch.status,
                        px_att(c->s)->started);
            admit_observe(x->route, px_att(c->s)->started, px_loop->now);
        }
        if (px_scratch.status == 101 && (x->req & R_UPGRADE)) {
            if (!fwd_wants_websocket(&px_scratch))
                return bad_response(c, "101 Switching Protocols to something but websocket");
            if (client_upgrade_head(c, &px_scratch, (uint32_t)r) < 0)
                return head_too_large(c, true);
            in->start += (uint32_t)r;
            x->resp_ready = in->start;
            x->status = 101;
            x->flags |= X_RESP_HEAD | X_NO_REUSE;
            return AT_UPGRADE;   /* the exchange turns it into a tunnel */
        }
        if (px_scratch.status < 200) {
            if (px_scratch.status == 101)
                return bad_response(c, "101 Switching Protocols without an upgrade request");
            if (client_interim_head(c, &px_scratch, (uint32_t)r) < 0)
                return head_too_large(c, true);
            in->start += (uint32_t)r;
            continue;
        }
        if (exchange_retry_allowed(c, 0, px_scratch.status)) {
            px_fault(c, FAULT_STATUS, 0);
            c->s->fault.status = px_scratch.status;
            return AT_FAILED;
        }
        if (x->req & R_GRPC) {
            int gs = head_grpc_status(&px_scratch);
            if (gs >= 0) {
                x->grpc_status = gs;   /* a Trailers-Only answer */
            } else if (px_scratch.status != 200 && (c->cflags & CF_STREAM)) {
                px_fault(c, FAULT_GRPC_HTTP, 0);
                c->s->fault.status = px_scratch.status;
                return AT_FAILED;
            }
        }
        return final_head(c, r, &info);
    }
    return AT_MOVED;
}

/* Splice mode: moves the rest of a Content-Length body into the pipe. */
static int upstream_splice(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = px_att(c->s)->up;
    int progress = 0;

    while ((up->conn.io.ready & LOOP_READ) && relay_room(&c->s->relay) && x->resp_left) {
        size_t want = RELAY_CAP - c->s->relay.len;
        if (want > x->resp_left)
            want = (size_t)x->resp_left;
        ssize_t n = relay_fill(&c->s->relay, up->conn.io.fd, want);
        if (n > 0) {
            /* A short splice says nothing of the socket: a pipe holds 16
             * page slots, not 64 KiB, and fills up on small segments. */
            x->resp_left -= (uint64_t)n;
            x->clk.read_mark = px_loop->now;
            progress = 1;
            continue;
        }
        if (n == 0) {
            x->flags |= X_UP_EOF | X_NO_REUSE;
            return px_fault(c, FAULT_IO, 0);
        }
        if (n == -EAGAIN) {
            /* Only an empty pipe makes EAGAIN mean "socket drained"; with
             * bytes in the pipe it may mean "pipe full": keep the read bit,
             * and try again once the client has taken some. */
            if (!c->s->relay.len)
                up->conn.io.ready &= ~LOOP_READ;
            break;
        }
        return px_fault(c, FAULT_IO, (int)n);
    }
    if (!x->resp_left)
        x->flags |= X_RESP_DONE;
    return progress;
}

/* Parses what uin holds: the response head (if not yet), then the body
 * bytes. The strongest outcome wins: a failure or an upgrade stops at once,
 * a head accepted is reported even when body bytes followed it. */
static int take(struct client *c)
{
    int h = attempt_response_head(c);
    if (h == AT_FAILED || h == AT_UPGRADE)
        return h;
    int b = attempt_response_body(c);
    if (b == AT_FAILED)
        return b;
    return h == AT_HEAD ? AT_HEAD : (h || b ? AT_MOVED : AT_IDLE);
}

/* Every body byte read so far has been sent: the rest of a large
 * Content-Length body can bypass user space. Without a pipe (EMFILE...),
 * it is simply copied. */
static void maybe_splice(struct client *c)
{
    struct exch *x = &c->s->x;
    if ((x->flags & X_SPLICE_OK) && !(x->flags & X_SPLICE) && (x->flags & X_RESP_HEAD) &&
        px_att(c->s)->in.start == px_att(c->s)->in.end) {
        x->flags &= ~X_SPLICE_OK;
        if (relay_open(&c->s->relay) == 0) {
            x->flags |= X_SPLICE;
            buf_release(&px_att(c->s)->in);
            x->resp_ready = 0;
        }
    }
}

/* The first response byte of the attempt: its timing. (Passive health
 * waits for the final head: a 5xx may count as a failure.) */
static void first_byte(struct client *c)
{
    struct exch *x = &c->s->x;
    if (!(x->flags & X_GOT_BYTE)) {
        x->flags |= X_GOT_BYTE;
        x->first_byte_ns = (int64_t)(px_loop->now - x->clk.start);
    }
}

/* Reads the response while there is room for it (the read clock pauses
 * when there is none). Outcome: AT_IDLE, AT_MOVED, AT_HEAD (with body
 * bytes perhaps), AT_UPGRADE or AT_FAILED. */
int attempt_recv(struct client *c)
{
    struct exch *x = &c->s->x;
    struct attempt *a = px_att(c->s);
    struct upconn *up = a->up;
    int out = AT_IDLE, r;

    if (!up || pool_opening(up) || (x->flags & X_RESP_DONE))
        return AT_IDLE;
    if (x->flags & X_HEAD_QUEUED) {   /* read by the hedge that won */
        x->flags &= ~X_HEAD_QUEUED;
        if ((out = take(c)) == AT_FAILED || out == AT_UPGRADE)
            return out;
        if (x->flags & X_RESP_DONE)
            return out;   /* all of it came with the head: no read past its end */
    }
    maybe_splice(c);
    if (x->flags & X_SPLICE)
        return upstream_splice(c);
    while (up->conn.io.ready & LOOP_READ) {
        buf_reserve(&a->in, BUF_SMALL);
        if (!buf_room(&a->in)) {
            if (!attempt_uin_compactable(c))
                break;   /* full: the client is behind; the read clock pauses */
            uint32_t d = a->in.start;
            buf_compact(&a->in);
            x->resp_ready -= d;
        }
        uint32_t room = buf_room(&a->in);
        ssize_t n = pool_read(up, buf_tail(&a->in), room);
        if (n > 0) {
            a->in.end += (uint32_t)n;
            x->clk.read_mark = px_loop->now;
            first_byte(c);
            if ((r = take(c)) == AT_FAILED || r == AT_UPGRADE)
                return r;
            out = r == AT_HEAD || out == AT_HEAD ? AT_HEAD : AT_MOVED;
            if (x->flags & X_RESP_DONE)
                break;
            continue;
        }
        if (n == 0) {
            up->conn.io.ready &= ~LOOP_READ;
            x->flags |= X_UP_EOF | X_NO_REUSE;
            if ((x->flags & X_RESP_HEAD) && x->resp_framing == HTTP_BODY_CLOSE) {
                x->flags |= X_RESP_DONE;
                return out == AT_HEAD ? AT_HEAD : AT_MOVED;
            }
            return px_fault(c, FAULT_IO, 0);
        }
        if (n == -EAGAIN)
            break;
        return px_fault(c, FAULT_IO, (int)n);
    }
    return out;
}
