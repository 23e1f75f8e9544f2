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

char attempt_tls_why[160];

static int attempt_bad_response(struct client *c, const char *why);
static int head_too_large(struct client *c, bool rewritten);
static int attempt_response_body(struct client *c);
static int attempt_response_head(struct client *c);
static int upstream_splice(struct client *c);

void attempt_drop(struct client *c)
{
    if (c->s)
        dns_cancel(&c->s->dns);
    exchange_wait_dequeue(c);
    hedge_drop(c);
    if (c->s && c->s->up) {
        pool_close(c->s->up);
        c->s->up = NULL;
    }
    if (c->s)
        relay_close(&c->s->relay);
}

void attempt_on_upstream(struct upconn *up, uint32_t events)
{
    (void)events;
    client_pump(up->owner);
}

/* Forgets the failed attempt: its upstream connection is closed (never
 * pooled), its response bytes dropped, and the request (head, and a kept
 * body) will be sent again from the start. */
void attempt_reset(struct client *c)
{
    struct exch *x = &c->s->x;
    attempt_drop(c);
    buf_release(&c->s->uin);
    x->uhead_off = 0;
    x->body_sent = c->in.start + x->head_len;
    x->flags &= ~(X_REQ_SENT | X_UP_EOF | X_NO_REUSE | X_GOT_BYTE | X_RESP_HEAD | X_RESP_DONE |
                  X_ABANDON_BODY | X_SPLICE | X_SPLICE_OK | X_DECHUNK);
    x->clk.read_mark = x->clk.write_since = x->clk.write_used = 0;
    x->resp_ready = 0;
    x->resp_left = 0;
    x->resp_chunk = (struct http_chunked){0};
    x->status = 0;
    x->first_byte_ns = -1;
}

/* The upstream failed: err is a negative errno, or 0 for end of stream;
 * -EPROTO while connecting: the TLS handshake failed (tls_why says why). */
int attempt_failed(struct client *c, int err, bool connecting)
{
    char what[320], detail[96];
    const char *reason;

    /* Refused, reset or closed before a response counts against the server;
     * a pooled connection it closed while idle is the keep-alive race. */
    if (!(c->s->x.flags & X_GOT_BYTE) && (connecting || !c->s->up || !c->s->up->reused))
        pool_report(c->s->srv, false);
    if (c->s->hedge && !(c->s->x.flags & X_RESP_HEAD)) {
        hedge_promote(c, false);   /* the hedge is still in the race */
        return 1;
    }
    if (!connecting && exchange_can_retry(c))
        return exchange_retry(c);
    if (!(c->s->x.flags & X_GOT_BYTE) &&
        exchange_retry_allowed(c, connecting ? CONF_RETRY_CONNECT_FAILURE : CONF_RETRY_RESET, 0))
        return exchange_retry_later(c, connecting ? "a connect failure" : "a reset before the response");
    access_describe(c, what, sizeof what);
    const char *srv = c->s->srv->addr->text;
    if (connecting && err == -EPROTO) {
        reason = "upstream_tls_error";
        log_error("warn", "upstream TLS handshake with %s failed: %s (%s)", srv, attempt_tls_why, what);
    } else if (connecting) {
        reason = err == -ECONNREFUSED ? "upstream_refused" : "upstream_error";
        log_error("warn", "upstream connect to %s failed: %s (%s)", srv, strerror(-err), what);
    } else if (err == 0) {
        reason = "upstream_closed";
        log_error("warn", "upstream %s closed the connection before the response was complete (%s)",
                  srv, what);
    } else if (err == -EPROTO && c->s->up && c->s->up->conn.ssl) {
        reason = "upstream_tls_error";   /* an alert after the handshake (no client cert...) */
        log_error("warn", "upstream %s: TLS error: %s (%s)", srv, tls_last_error(), what);
    } else if (err == -ECONNRESET || err == -EPIPE) {
        reason = "upstream_reset";
        log_error("warn", "upstream %s reset the connection (%s)", srv, what);
    } else {
        reason = "upstream_error";
        log_error("warn", "upstream %s: %s (%s)", srv, strerror(-err), what);
    }
    snprintf(detail, sizeof detail, "%s", reason);
    return exchange_fail(c, 502, reason, detail);
}

static int attempt_bad_response(struct client *c, const char *why)
{
    char what[320];
    access_describe(c, what, sizeof what);
    log_error("warn", "bad response from upstream %s: %s (%s)", c->s->srv->addr->text, why, what);
    return exchange_fail(c, 502, "bad_upstream_response", "bad_upstream_response");
}

/* A response head over resp_limits (the parser said -431), or one whose
 * rewritten form does not fit the output buffer: 502 with its own reason,
 * so that an operator tells a large head from a broken one. */
static int head_too_large(struct client *c, bool rewritten)
{
    const struct buf *b = &c->s->uin;
    uint32_t got = buf_len(b), line = px_resp_limits.max_line + 2;
    char why[128], what[320];
    if (rewritten)
        snprintf(why, sizeof why, "response head too large to forward (%u bytes, limit %u)",
                 px_scratch.head_len, BUF_LARGE);
    else if (got >= px_resp_limits.max_head)
        snprintf(why, sizeof why, "response head too large (%u bytes, limit %u)", got,
                 px_resp_limits.max_head);
    else if (!memchr(buf_head(b), '\n', got < line ? got : line))
        snprintf(why, sizeof why, "response head too large (status line over %u bytes)",
                 px_resp_limits.max_line);
    else
        snprintf(why, sizeof why, "response head too large (more than %u fields, limit %u)",
                 px_resp_limits.max_fields, px_resp_limits.max_fields);
    access_describe(c, what, sizeof what);
    log_error("warn", "bad response from upstream %s: %s (%s)", c->s->srv->addr->text, why, what);
    return exchange_fail(c, 502, "upstream_head_too_large", "upstream_head_too_large");
}

int attempt_connect(struct client *c, bool allow_pooled)
{
    struct exch *x = &c->s->x;
    int err = 0;

    exchange_budget_count(c);   /* dispatched: in flight on its pool until it ends */
    c->s->srv = (x->flags & X_FORWARD) ? &c->s->fsrv
              : x->avoid                ? pool_pick_other(x->route->pool, x->avoid)
                                        : pool_pick(x->route->pool);
    x->clk.try_start = px_loop->now;
    if (!c->s->srv) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("warn", "no upstream in service in pool %s (%s)", x->route->pool->name, what);
        return exchange_fail(c, 503, "no_healthy_upstream", "no_healthy_upstream");
    }
    if (allow_pooled) {
        c->s->up = pool_take_idle(c->s->srv, c, attempt_on_upstream);
        if (c->s->up) {
            x->attempts++;
            x->connect_ns = 0;
            return 1;
        }
    }
    if (!pool_may_connect(c->s->srv)) {
        /* At the pool's connection limit: wait for a slot, under the
         * connect timeout (and the total deadline). */
        if (!(x->flags & X_WAIT_SLOT)) {
            x->clk.connect = px_loop->now;
            exchange_wait_enqueue(c);
        }
        return 1;
    }
    x->attempts++;
    c->s->up = pool_connect(c->s->srv, c, attempt_on_upstream, &err);
    if (!c->s->up)
        return attempt_failed(c, err, true);
    x->clk.connect = px_loop->now;
    x->connect_ns = -1;
    return 1;
}

/* Writes the time left of the total deadline into the request head's
 * deadline field, just before the head is sent (each attempt anew). */
void attempt_stamp_deadline(struct client *c)
{
    struct exch *x = &c->s->x;
    if (!x->deadline_at)
        return;
    uint64_t end = x->clk.start + ns_of(exchange_total_ms(c)), now = loop_clock_ns();
    uint64_t left = end > now ? (end - now) / MS : 0;
    left = left > DEADLINE_HOP_MARGIN_MS ? left - DEADLINE_HOP_MARGIN_MS : 0;
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
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;

    if (!up || up->connecting || (x->flags & (X_REQ_SENT | X_ABANDON_BODY)))
        return 0;
    uint32_t ph = c->s->uhead.end - x->uhead_off;
    uint32_t pb = x->body_ready - x->body_sent;
    if (ph + pb == 0) {
        if (x->clk.write_since) {
            x->clk.write_used += px_loop->now - x->clk.write_since;
            x->clk.write_since = 0;
        }
        if (x->flags & X_BODY_DONE) {
            x->flags |= X_REQ_SENT;
            return 1;
        }
        return 0;
    }
    if (!(up->conn.io.ready & LOOP_WRITE)) {
        if (!x->clk.write_since)
            x->clk.write_since = px_loop->now;
        return 0;
    }
    if (x->uhead_off == 0)
        attempt_stamp_deadline(c);
    if (pb > SEND_SLICE)
        pb = SEND_SLICE;
    struct iovec iov[2] = {
        {c->s->uhead.data + x->uhead_off, ph},
        {c->in.data + x->body_sent, pb},
    };
    ssize_t n = conn_writev(&up->conn, ph ? iov : iov + 1, ph ? 2 : 1);
    if (n < 0) {
        if (n == -EAGAIN) {
            if (!x->clk.write_since)
                x->clk.write_since = px_loop->now;
            return 0;
        }
        return attempt_failed(c, -errno, false);
    }
    uint32_t k = (uint32_t)n < ph ? (uint32_t)n : ph;
    x->uhead_off += k;
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
            x->uhead_off == c->s->uhead.end) {
            x->flags |= X_REQ_SENT;
            /* The read clock starts now, at the hand-over itself, not at the
             * (earlier) time this event was dispatched: never early. */
            x->clk.read_mark = loop_clock_ns();
            x->sent_ns = (int64_t)(x->clk.read_mark - x->clk.start);
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
    uint32_t avail = c->s->uin.end - x->resp_ready;

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
        char *p = c->s->uin.data + x->resp_ready;
        ssize_t r = http_chunked_feed(&x->resp_chunk, p, avail, &dl);
        if (r < 0)
            return attempt_bad_response(c, "malformed chunked body");
        uint32_t rest = avail - (uint32_t)r;
        if (rest && dl != (size_t)r)
            memmove(p + dl, p + r, rest);
        c->s->uin.end = x->resp_ready + (uint32_t)dl + rest;
        x->resp_ready += (uint32_t)dl;
        if (http_chunked_done(&x->resp_chunk))
            x->flags |= X_RESP_DONE;
        break;
    }
    case HTTP_BODY_CLOSE:
        x->resp_ready = c->s->uin.end;
        break;
    default:
        x->flags |= X_RESP_DONE;
        break;
    }
    if (!(x->flags & X_RESP_DONE) || c->s->uin.end == x->resp_ready)
        return 1;
out_extra:
    /* Bytes past the end of the response: the connection cannot be trusted. */
    c->s->uin.end = x->resp_ready;
    x->flags |= X_NO_REUSE;
    return 1;
}

static int attempt_response_head(struct client *c)
{
    struct exch *x = &c->s->x;

    while (!(x->flags & X_RESP_HEAD) && buf_len(&c->s->uin)) {
        int r = http_parse_response(buf_head(&c->s->uin), buf_len(&c->s->uin), &px_scratch,
                                    &px_resp_limits);
        if (r == HTTP_INCOMPLETE) {
            /* The parser refuses a head once it outgrows resp_limits, which
             * fit BUF_LARGE: a full large buffer cannot be incomplete. */
            if (!buf_room(&c->s->uin) && c->s->uin.start == 0) {
                if (c->s->uin.cap >= BUF_LARGE)
                    return head_too_large(c, false);
                buf_reserve(&c->s->uin, BUF_LARGE);
                x->resp_ready = c->s->uin.start;
            }
            return 0;
        }
        if (r == -431)
            return head_too_large(c, false);
        if (r < 0)
            return attempt_bad_response(c, "malformed response head");
        struct http_info info;
        if (http_response_info(&px_scratch, x->flags & X_HEAD_METHOD, &info) < 0)
            return attempt_bad_response(c, "bad response framing");
        /* the rewritten head is about as long as the upstream's */
        buf_reserve(&c->s->out, (uint32_t)r + x->interim + 512 > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
        buf_compact(&c->s->out);
        if (px_scratch.status == 101 && (x->flags & X_UPGRADE)) {
            if (!fwd_wants_websocket(&px_scratch))
                return attempt_bad_response(c, "101 Switching Protocols to something but websocket");
            struct fwd_resp fr = {.m = &px_scratch, .upgrade = true};
            int n = fwd_response_head(buf_tail(&c->s->out), buf_room(&c->s->out), &fr);
            if (n < 0)
                return head_too_large(c, true);
            c->s->out.end += (uint32_t)n;
            c->s->uin.start += (uint32_t)r;
            x->resp_ready = c->s->uin.start;
            x->status = 101;
            x->flags |= X_RESP_HEAD | X_NO_REUSE;
            tunnel_begin(c);
            return 1;
        }
        if (px_scratch.status < 200) {
            if (px_scratch.status == 101)
                return attempt_bad_response(c, "101 Switching Protocols without an upgrade request");
            bool skip = c->minor == 0 || (px_scratch.status == 100 && (x->flags & X_CONTINUE));
            if (!skip) {
                struct fwd_resp fr = {.m = &px_scratch};
                int n = fwd_response_head(buf_tail(&c->s->out), buf_room(&c->s->out), &fr);
                if (n < 0)
                    return head_too_large(c, true);
                c->s->out.end += (uint32_t)n;
                x->interim += (uint32_t)n;
            }
            c->s->uin.start += (uint32_t)r;
            continue;
        }
        if (exchange_retry_allowed(c, 0, px_scratch.status)) {
            char why[32];
            snprintf(why, sizeof why, "status %d", px_scratch.status);
            return exchange_retry_later(c, why);
        }
        if (c->s->hedge) {
            char what[320];
            access_describe(c, what, sizeof what);
            log_error("info", "%s answered first; cancelling the hedged attempt on %s (%s)",
                      c->s->srv->addr->text, c->s->hedge_srv->addr->text, what);
            hedge_drop(c);
        }
        x->status = px_scratch.status;
        x->resp_framing = (uint8_t)info.framing;
        x->resp_left = info.length;
        if (info.conn_close || info.framing == HTTP_BODY_CLOSE)
            x->flags |= X_NO_REUSE;
        if (!(x->flags & X_REQ_SENT))   /* an early response: stop the upload */
            x->flags |= X_ABANDON_BODY | X_NO_REUSE | X_CLOSE_AFTER;
        /* An HTTP/1.0 client that asked for keep-alive keeps its
         * connection when the response has a known end: a length or no
         * body. A chunked body is decoded for it and ends at close. */
        if (info.framing == HTTP_BODY_CLOSE || px_draining)
            x->flags |= X_CLOSE_AFTER;
        if (info.framing == HTTP_BODY_CHUNKED && c->minor == 0)
            x->flags |= X_DECHUNK | X_CLOSE_AFTER;
        x->resp_chunk.keep_framing = !(x->flags & X_DECHUNK);
        struct fwd_resp fr = {
            .m = &px_scratch,
            .info = &info,
            .chunked = info.framing == HTTP_BODY_CHUNKED && !(x->flags & X_DECHUNK),
            .close = (x->flags & X_CLOSE_AFTER) != 0,
            .keepalive = c->minor == 0,
        };
        int n = fwd_response_head(buf_tail(&c->s->out), buf_room(&c->s->out), &fr);
        if (n < 0)
            return head_too_large(c, true);
        c->s->out.end += (uint32_t)n;
        c->s->uin.start += (uint32_t)r;
        if (attempt_bulk(info.framing, info.length))
            buf_reserve(&c->s->uin, BUF_LARGE);   /* fewer, larger reads and writes */
        if (info.framing == HTTP_BODY_LENGTH && info.length >= SPLICE_MIN && !c->conn.ssl &&
            !c->s->up->conn.ssl)
            x->flags |= X_SPLICE_OK;   /* (TLS bytes must pass through the engine) */
        x->resp_ready = c->s->uin.start;
        x->flags |= X_RESP_HEAD;
        if (info.framing == HTTP_BODY_NONE)
            x->flags |= X_RESP_DONE;
    }
    return 1;
}

/* Splice mode: moves the rest of a Content-Length body into the pipe. */
static int upstream_splice(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;
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
            return attempt_failed(c, 0, false);
        }
        if (n == -EAGAIN) {
            /* Only an empty pipe makes EAGAIN mean "socket drained"; with
             * bytes in the pipe it may mean "pipe full": keep the read bit,
             * and try again once the client has taken some. */
            if (!c->s->relay.len)
                up->conn.io.ready &= ~LOOP_READ;
            break;
        }
        return attempt_failed(c, (int)n, false);
    }
    if (!x->resp_left)
        x->flags |= X_RESP_DONE;
    return progress;
}

/* Reads the response while there is room for it. */
int attempt_recv(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;
    int progress = 0;

    if (!up || up->connecting || (x->flags & X_RESP_DONE))
        return 0;
    if (x->flags & X_HEAD_QUEUED) {   /* read by the hedge that won */
        x->flags &= ~X_HEAD_QUEUED;
        if (attempt_response_head(c) < 0)
            return -1;
        if (c->state != CS_EXCH || c->s->up != up)
            return 1;
        if (attempt_response_body(c) < 0)
            return -1;
        if (c->state != CS_EXCH)
            return 1;
        progress = 1;
    }
    if ((x->flags & X_SPLICE_OK) && !(x->flags & X_SPLICE) && (x->flags & X_RESP_HEAD) &&
        c->s->uin.start == c->s->uin.end) {
        /* Every body byte read so far has been sent: the rest can bypass
         * user space. Without a pipe (EMFILE...), it is simply copied. */
        x->flags &= ~X_SPLICE_OK;
        if (relay_open(&c->s->relay) == 0) {
            x->flags |= X_SPLICE;
            buf_release(&c->s->uin);
            x->resp_ready = 0;
        }
    }
    if (x->flags & X_SPLICE)
        return upstream_splice(c);
    while (up->conn.io.ready & LOOP_READ) {
        buf_reserve(&c->s->uin, BUF_SMALL);
        if (!buf_room(&c->s->uin)) {
            if (!attempt_uin_compactable(c))
                break;   /* full: the client is behind; the read clock pauses */
            uint32_t d = c->s->uin.start;
            buf_compact(&c->s->uin);
            x->resp_ready -= d;
        }
        uint32_t room = buf_room(&c->s->uin);
        ssize_t n = conn_read(&up->conn, buf_tail(&c->s->uin), room);
        if (n > 0) {
            c->s->uin.end += (uint32_t)n;
            x->clk.read_mark = px_loop->now;
            if (!(x->flags & X_GOT_BYTE)) {
                x->flags |= X_GOT_BYTE;
                x->first_byte_ns = (int64_t)(px_loop->now - x->clk.start);
                pool_report(c->s->srv, true);
            }
            if (attempt_response_head(c) < 0)
                return -1;
            if (c->state != CS_EXCH || c->s->up != up)
                return 1;   /* ended, or retried on another connection */
            if (attempt_response_body(c) < 0)
                return -1;
            if (c->state != CS_EXCH)
                return 1;
            progress = 1;
            if (x->flags & X_RESP_DONE)
                break;
            continue;
        }
        if (n == 0) {
            up->conn.io.ready &= ~LOOP_READ;
            x->flags |= X_UP_EOF | X_NO_REUSE;
            if ((x->flags & X_RESP_HEAD) && x->resp_framing == HTTP_BODY_CLOSE) {
                x->flags |= X_RESP_DONE;
                return 1;
            }
            return attempt_failed(c, 0, false);
        }
        if (n == -EAGAIN)
            break;
        return attempt_failed(c, -errno, false);
    }
    return progress;
}
