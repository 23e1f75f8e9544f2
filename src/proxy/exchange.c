/* exchange.c -- one request from its head to its end: routing, the deadlines,
 * retries, backoff, waiting for a connection, and the one cancellation path (see exchange.h). */
#define _GNU_SOURCE
#include "exchange.h"

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
#include "admit.h"
#include "addr.h"
#include "attempt.h"
#include "auth.h"
#include "buf.h"
#include "client.h"
#include "cfg.h"
#include "dns.h"
#include "evict.h"
#include "forward.h"
#include "fwd.h"
#include "health.h"
#include "hedge.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "observe.h"
#include "grpc.h"
#include "h2up.h"
#include "pool.h"
#include "relay.h"
#include "reqbuf.h"
#include "route.h"
#include "stats.h"
#include "tls.h"
#include "tmo.h"
#include "tunnel.h"

/* xorshift state for the retry backoff's jitter */
static uint64_t jitter_state = 0x2545f4914f6cdd1dull;

static const struct route_policy *exchange_policy(const struct client *c);
static uint32_t conditions(const struct client *c);
static uint64_t fold_deadlines(struct client *c);
static uint64_t configured_ms(const struct client *c, enum tmo_kind k);
static void exchange_timeout(struct client *c, enum tmo_kind k);
static int exchange_done(struct client *c);

static const struct route_policy *exchange_policy(const struct client *c)
{
    return c->s->x.route ? &c->s->x.route->policy : &px_default_policy;
}

/* The total deadline: the route's; for a gRPC call, less when its
 * grpc-timeout (capped by the route's grpc.max_timeout) is shorter, or none
 * for a call without one on a grpc.streaming route; less again when a
 * trusted client's deadline header says so. */
static uint64_t total_ms_from(const struct client *c, uint8_t *from)
{
    const struct exch *x = &c->s->x;
    uint64_t t = exchange_policy(c)->ms[TMO_TOTAL];
    *from = OBS_FROM_ROUTE;
    if ((x->req & R_GRPC) && x->route) {
        const struct conf_grpc *g = &x->route->grpc;
        if (x->grpc_timeout_ms >= 0 && !g->ignore) {
            uint64_t v = (uint64_t)x->grpc_timeout_ms;
            if (g->max_timeout_ms && g->max_timeout_ms < v)
                v = g->max_timeout_ms;
            if (v < t) {
                t = v;
                *from = OBS_FROM_GRPC;
            }
        } else if (g->streaming) {
            t = GRPC_NO_TOTAL_MS;   /* a long-lived stream: no total */
            *from = OBS_FROM_GRPC;
        }
    }
    if ((x->req & R_CLIENT_DEADLINE) && x->client_total_ms < t) {
        t = x->client_total_ms;
        *from = OBS_FROM_HEADER;
    }
    return t;
}

uint64_t exchange_total_ms(const struct client *c)
{
    uint8_t from;
    return total_ms_from(c, &from);
}

/* A fresh exchange: timings that have not happened read as "-". Its
 * attempts must hold no connection nor buffer (they are forgotten). */
void exchange_reset(struct session *s)
{
    struct exch *x = &s->x;
    *x = (struct exch){0};
    x->connect_ns = x->first_byte_ns = x->sent_ns = x->grpc_timeout_ms = -1;
    x->grpc_status = -1;
    memset(s->att, 0, sizeof s->att);
    s->at = &s->att[0];
    s->hg = &s->att[1];
}

/* Closes the exchange's upstream connections (never pooled), the hedge's
 * too, and takes it out of a pool's queue and its name resolution. */
void exchange_drop_attempts(struct client *c)
{
    if (c->s)
        dns_cancel(&c->s->fwd.dns);
    admit_dequeue(c);
    hedge_drop(c);
    if (c->s)
        obs_try_end(c, px_att(c->s), "cancelled", 0);   /* (unless its end was noted) */
    if (c->s && px_att(c->s)->up) {
        pool_close(px_att(c->s)->up);
        px_att(c->s)->up = NULL;
    }
    if (c->s)
        relay_close(&c->s->relay);
}

/* Forgets the failed attempt: its upstream connection is closed (never
 * pooled), its response bytes dropped, and the request (head, and a kept
 * body) will be sent again from the start. */
void exchange_reset_attempt(struct client *c)
{
    struct exch *x = &c->s->x;
    exchange_drop_attempts(c);
    buf_release(&px_att(c->s)->in);
    px_att(c->s)->head_off = 0;
    x->body_sent = c->in.start + x->head_len;
    x->flags &= ~(X_REQ_SENT | X_UP_EOF | X_NO_REUSE | X_GOT_BYTE | X_RESP_HEAD | X_RESP_DONE |
                  X_ABANDON_BODY | X_SPLICE | X_SPLICE_OK | X_DECHUNK | X_TRAILERS);
    x->grpc_status = -1;
    x->clk.read_mark = x->clk.write_since = x->clk.write_used = 0;
    x->resp_ready = 0;
    x->resp_left = 0;
    x->resp_chunk = (struct http_chunked){0};
    x->status = 0;
    x->first_byte_ns = -1;
}

/* The one cancellation path. Closes the upstream connection (never pooled).
 * If no byte of the final response has reached the client and `status` is
 * not 0, the client gets that status with the reason in a plain-text body;
 * otherwise the client connection is cut so that it sees an incomplete
 * message. Returns 1 when the client lives on (CLOSING), -1 when closed. */
int exchange_fail(struct client *c, int status, const char *reason, const char *detail)
{
    struct exch *x = &c->s->x;
    x->end_reason = reason;
    if ((x->req & R_GRPC) && (x->flags & X_FINAL_SENT))
        x->grpc_status = grpc_status_of_reason(reason, status);   /* sent in trailers */
    exchange_drop_attempts(c);
    /* An error response replaces what is queued for the client, which is
     * only possible while none of it is sent (nor sealed in a TLS record). */
    if (status && !(c->s->x.flags & X_FINAL_SENT) && c->s->out.start == 0 &&
        !c->conn.sealed) {
        client_error(c, status, reason, detail);
        return 1;
    }
    int logged = (c->s->x.flags & X_FINAL_SENT) ? c->s->x.status : 499;
    access_log(c, logged, reason);
    client_close(c);
    return -1;
}

/* The durations that apply to c's exchange: the default policy until a
 * route is chosen, then the route's, with the total capped by a trusted
 * client's deadline. Set when the exchange starts and when it is routed. */
void exchange_set_limits(struct client *c)
{
    uint64_t *ms = c->s->x.lim.ms;
    memcpy(ms, exchange_policy(c)->ms, sizeof c->s->x.lim.ms);
    ms[TMO_TOTAL] = total_ms_from(c, &c->s->x.obs.deadline_from);   /* (and what set it) */
    ms[TMO_IDLE] = LINGER_NS / MS;   /* the fold's IDLE in CLOSING is the linger */
    if (c->s->x.route)
        ms[TMO_HEDGE] = admit_hedge_delay_ms(c->s->x.route);   /* (adaptive: this moment's) */
}

/* What holds now of the conditions that run clocks (tmo.h TMO_IF_*). */
static uint32_t conditions(const struct client *c)
{
    const struct exch *x = &c->s->x;
    const struct upconn *up = px_att(c->s)->up;
    uint32_t cond = 0;
    if (!client_writable(c))
        cond |= c->state == CS_CLOSING || client_pending(c) ? TMO_IF_SEND : 0;
    if (c->state != CS_EXCH)
        return cond | ((x->flags & X_LINGER) ? TMO_IF_LINGER : 0);
    if (up && pool_opening(up))
        cond |= TMO_IF_CONNECTING;
    if (x->flags & X_WAIT_SLOT)
        cond |= TMO_IF_QUEUED;
    if (x->flags & X_RESOLVING)
        cond |= TMO_IF_RESOLVING;
    if (up && !(x->flags & (X_HEDGED | X_RESP_HEAD)) && !(x->req & R_UPGRADE))
        cond |= TMO_IF_HEDGE;
    if (up && !(x->flags & X_RESP_HEAD))
        cond |= TMO_IF_TRY;
    if ((x->flags & X_REQ_SENT) && !(x->flags & X_RESP_DONE) && up && attempt_uin_room(c))
        cond |= TMO_IF_READ;
    if (!(x->flags & (X_BODY_DONE | X_ABANDON_BODY)) && client_in_room(c) &&
        !((x->req & R_EXPECT) && !(x->flags & X_CONTINUE)))
        cond |= TMO_IF_BODY;
    return cond;
}

/* Recomputes every running deadline from the connection's state: the pure
 * fold of tmo.h over what holds now. */
static uint64_t fold_deadlines(struct client *c)
{
    static const uint8_t phase[] = {
        [CS_HEAD] = TMO_PHASE_HEAD, [CS_EXCH] = TMO_PHASE_EXCH,
        [CS_CLOSING] = TMO_PHASE_CLOSING, [CS_TUNNEL] = TMO_PHASE_TUNNEL,
    };
    struct exch *x = &c->s->x;
    if (c->state != CS_HEAD && c->state != CS_EXCH && c->state != CS_CLOSING &&
        c->state != CS_TUNNEL) {
        c->s->tmo = (struct tmo_set){0};
        return 0;
    }
    x->clk.first = c->t_first;
    if (c->state == CS_HEAD)
        x->lim.ms[TMO_HEADER] = evict_header_ms();   /* (shortened under pressure) */
    return tmo_fold((enum tmo_phase)phase[c->state], conditions(c), &x->lim, &x->clk,
                    px_loop->now, &c->s->tmo);
}

/* Folds the deadlines into the one timer. A deadline that moved later leaves
 * the timer where it is: it fires early once, finds nothing expired, and is
 * re-filed then, which is cheaper than re-sorting on every read. */
void exchange_arm(struct client *c)
{
    uint64_t next;
    evict_track(c);   /* (its class may have changed with this event) */
    if (!c->s) {   /* IDLE: one deadline */
        next = evict_idle_deadline(c);
    } else {
        next = fold_deadlines(c);
    }
    if (!next)
        loop_timer_stop(px_loop, &c->timer);
    else if (!c->timer.armed || next < c->timer.at)
        loop_timer_at(px_loop, &c->timer, next);
}

/* The duration of kind k in force for this exchange (policy, total_ms). */
static uint64_t configured_ms(const struct client *c, enum tmo_kind k)
{
    return k == TMO_TOTAL ? exchange_total_ms(c) : k < TMO_COUNT ? exchange_policy(c)->ms[k] : 0;
}

static void exchange_timeout(struct client *c, enum tmo_kind k)
{
    char what[320], detail[96];
    uint64_t ms = configured_ms(c, k);
    access_describe(c, what, sizeof what);
    snprintf(detail, sizeof detail, "%s after %llu ms", tmo_reason(k), (unsigned long long)ms);

    if (k == TMO_BACKOFF) {
        c->s->x.clk.backoff_until = 0;
        exchange_dispatch(c, true);
        return;
    }
    if (k == TMO_HEDGE) {
        hedge_start(c);
        return;
    }
    if (k == TMO_DNS) {
        log_error("warn", "dns timeout after %llu ms resolving %s (%s)", (unsigned long long)ms,
                  c->s->fwd.name, what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        return;
    }
    if ((k == TMO_QUEUE || k == TMO_TOTAL) && (c->s->x.flags & X_WAIT_SLOT)) {
        /* queued until the queue's time, or the total's, ran out: shed */
        const struct pool_group *g = c->s->x.route->pool;
        unsigned long long waited = (px_loop->now - c->s->x.clk.queue) / MS;
        log_error("warn", "no free connection or server in pool %s after %llu ms in its queue "
                          "(max_connections %u, max_requests %u): %s ran out (%s)",
                  g->name, waited, g->max_conns, g->max_requests,
                  k == TMO_QUEUE ? "the queue timeout" : "its time left", what);
        snprintf(detail, sizeof detail, "queued %llu ms", waited);
        exchange_fail(c, 503, "queue_timeout", detail);
        return;
    }
    obs_try_end(c, px_att(c->s), tmo_reason(k), 0);
    if (k == TMO_CONNECT && (c->s->x.req & R_FORWARD) && forward_next(c, detail) >= 0)
        return;   /* the destination's next address */
    struct attempt *a = px_att(c->s);
    if ((k == TMO_READ || k == TMO_TRY || k == TMO_TOTAL) && a->up &&
        !(c->s->x.flags & X_RESP_HEAD))
        admit_observe(c->s->x.route, a->started, px_loop->now);   /* at least this long */
    if (k == TMO_CONNECT || k == TMO_READ || k == TMO_TRY)
        pool_report(a->srv, k == TMO_CONNECT ? POOL_CONNECT_FAILED
                          : k == TMO_READ    ? POOL_READ_TIMEOUT
                                             : POOL_TRY_TIMEOUT, 0, a->started);
    else if (k == TMO_TOTAL && a->up && !(c->s->x.flags & X_RESP_HEAD))
        pool_report(a->srv, POOL_CANCELLED, 0, a->started);
    if (px_hedge(c->s)->up && !(c->s->x.flags & X_RESP_HEAD) &&
        (k == TMO_CONNECT || k == TMO_READ || k == TMO_TRY)) {
        hedge_promote(c, false);   /* the first attempt timed out; the hedge runs on */
        return;
    }
    unsigned cls = k == TMO_CONNECT                                    ? CONF_RETRY_CONNECT_TIMEOUT
                 : k == TMO_TRY                                        ? CONF_RETRY_READ_TIMEOUT
                 : k == TMO_READ && !(c->s->x.flags & X_RESP_HEAD) ? CONF_RETRY_READ_TIMEOUT
                                                                       : 0;
    if (cls && exchange_retry_allowed(c, cls, 0)) {
        exchange_retry_later(c, tmo_reason(k));
        return;
    }
    switch (k) {
    case TMO_CONNECT:
    case TMO_WRITE:
        log_error("warn", "upstream %s timeout after %llu ms to %s (%s)", tmo_word(k),
                  (unsigned long long)ms, px_dest_text(c->s, "-"), what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        break;
    case TMO_READ:
    case TMO_TOTAL:
    case TMO_TRY:
        log_error("warn", "upstream %s timeout after %llu ms from %s (%s)", tmo_word(k),
                  (unsigned long long)ms, px_dest_text(c->s, "-"), what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        break;
    case TMO_BODY:
        log_error("warn", "client body timeout after %llu ms (%s)", (unsigned long long)ms, what);
        exchange_fail(c, 408, tmo_reason(k), detail);
        break;
    case TMO_SEND:
        log_error("warn", "client send timeout after %llu ms (%s)", (unsigned long long)ms, what);
        exchange_fail(c, 0, tmo_reason(k), detail);
        break;
    default:
        exchange_fail(c, 504, tmo_reason(k), detail);
        break;
    }
}

void exchange_on_timer(struct timer *t)
{
    struct client *c = container_of(t, struct client, timer);

    if (!c->s) {   /* IDLE */
        if (px_loop->now < evict_idle_deadline(c)) {
            exchange_arm(c);
            return;
        }
        if (c->cflags & CF_HANDSHAKE) {
            struct peer_text pt;
            log_error("info", "client TLS handshake timeout after %llu ms (client %s)",
                      (unsigned long long)px_cfg->ms[TMO_HANDSHAKE], access_peer(c, &pt));
            stats->tls[STATS_TLS_CLIENT][TLS_TIMEOUT]++;
            client_close(c);
            return;
        }
        if (px_draining) {
            evict_shut_idle(c);   /* (a drain: no reset for a request racing it) */
            return;
        }
        tls_close_notify(c->conn.ssl);   /* a clean end between requests */
        client_close(c);
        return;
    }
    enum tmo_kind k = tmo_expired(&c->s->tmo, px_loop->now);
    if (k == TMO_NONE) {
        exchange_arm(c);
        return;
    }
    switch (c->state) {
    case CS_CLOSING:
        client_close(c);   /* keep-alive idle, linger over, or send stalled */
        return;
    case CS_HEAD: {
        char detail[96];
        struct peer_text pt;
        unsigned long long hms = c->s->x.lim.ms[TMO_HEADER];   /* (under pressure: less) */
        snprintf(detail, sizeof detail, "header_timeout after %llu ms", hms);
        log_error("warn", "client header timeout after %llu ms (client %s)", hms,
                  access_peer(c, &pt));
        client_error(c, 408, "header_timeout", detail);
        break;
    }
    case CS_EXCH:
        exchange_timeout(c, k);
        break;
    case CS_TUNNEL: {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("info", "%s timeout after %llu ms: closing both ends of the tunnel (%s)",
                  tmo_word(k),
                  (unsigned long long)configured_ms(c, k), what);
        tunnel_end(c, tmo_reason(k));
        return;
    }
    default:
        return;
    }
    if (c->state != CS_CLOSED)
        client_pump(c);
}

/* A pooled connection that the server closed before any response byte, for a
 * request that can be sent again: retried once on a new connection. */
bool exchange_can_retry(const struct client *c)
{
    const struct exch *x = &c->s->x;
    const struct upconn *up = px_att(c->s)->up;
    if (!up || (x->flags & X_GOT_BYTE))
        return false;
    /* An HTTP/2 stream the server never processed (REFUSED_STREAM, or above
     * its GOAWAY's last stream id): sent again whatever the method, while
     * the body is at hand. */
    if (h2u_unprocessed(up))
        return x->attempts < 3 &&
               (x->req_framing == HTTP_BODY_NONE || (x->flags & X_KEEP_BODY));
    return up->reused && x->attempts == 1 && x->req_framing == HTTP_BODY_NONE &&
           (x->req & R_IDEMPOTENT);
}

int exchange_retry(struct client *c)
{
    char what[320];
    access_describe(c, what, sizeof what);
    if (h2u_unprocessed(px_att(c->s)->up))
        log_error("info", "HTTP/2 upstream %s did not process the request (refused stream or "
                          "GOAWAY); retrying (%s)", px_att(c->s)->up->srv->addr->text, what);
    else
        log_error("info", "pooled connection to %s closed before a response; retrying on a new "
                          "connection (%s)", px_att(c->s)->up->srv->addr->text, what);
    exchange_reset_attempt(c);
    return exchange_dispatch(c, false);
}

/* Whether the route's retry policy lets this failure be tried again: a
 * listed failure class (or response status), attempts left, a method it may
 * repeat, a body still at hand, nothing yet sent to the client, and room in
 * the pool's retry budget. The total deadline keeps running throughout. */
bool exchange_retry_allowed(struct client *c, unsigned cls, int status)
{
    const struct exch *x = &c->s->x;
    const struct conf_retry *r = x->route ? x->route->retry : NULL;

    if (!r || x->attempts >= r->attempts)
        return false;
    if (status ? !conf_retry_status(r, (unsigned)status) : !(r->on & cls))
        return false;
    if (!(x->req & R_IDEMPOTENT) && r->methods != CONF_METHODS_ALL)
        return false;
    if (x->req_framing != HTTP_BODY_NONE && !(x->flags & X_KEEP_BODY))
        return false;
    if (x->bytes_sent || buf_len(&c->s->out) || (x->flags & X_RESP_HEAD))
        return false;
    if (!pool_retry_allowed(x->route->pool)) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("warn", "retry budget of pool %s spent: not retrying (%s)",
                  x->route->pool->name, what);
        obs_shed_note(c, "retry_budget");
        return false;
    }
    uint64_t left, need;
    if (!admit_in_time(c, &left, &need)) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("info", "retry skipped: %llu ms left, the route needs %llu ms (%s) (%s)",
                  (unsigned long long)left, (unsigned long long)need,
                  x->route->retry->min_time_left_ms ? "retry.min_time_left"
                                                    : "its median first-byte latency",
                  what);
        c->s->x.flags |= X_RETRY_SKIPPED;
        obs_shed_note(c, "retry_skipped");
        return false;
    }
    return true;
}

/* Schedules the next attempt after a jittered exponential backoff ("full
 * jitter": uniform in [0, min(max, base * 2^(n-1))]), on another server
 * when the pool has one. */
int exchange_retry_later(struct client *c, const char *why)
{
    struct exch *x = &c->s->x;
    const struct conf_retry *r = x->route->retry;
    char what[320];

    admit_retry_take(c);
    stats->retries++;
    uint64_t cap = r->backoff_base_ms << (x->attempts - 1 < 20 ? x->attempts - 1 : 20);
    if (cap > r->backoff_max_ms)
        cap = r->backoff_max_ms;
    jitter_state ^= jitter_state << 13;
    jitter_state ^= jitter_state >> 7;
    jitter_state ^= jitter_state << 17;
    uint64_t delay = cap ? jitter_state % (cap * MS + 1) : 0;
    access_describe(c, what, sizeof what);
    log_error("info", "retrying after %s from %s: attempt %u of %u in %llu ms (%s)", why,
              px_att(c->s)->srv->addr->text, x->attempts + 1, r->attempts,
              (unsigned long long)(delay / MS), what);
    x->avoid = px_att(c->s)->srv;
    exchange_reset_attempt(c);
    if (!delay)
        return exchange_dispatch(c, true);
    x->clk.backoff_until = px_loop->now + delay;
    return 1;
}

/* A connection, reset or end of stream failed the attempt (f->err: a
 * negative errno, or 0 for end of stream). */
static int io_failed(struct client *c, const struct fault *f)
{
    char what[320], detail[96];
    const char *reason;
    bool connecting = f->kind == FAULT_CONNECT;
    int err = f->err;
    struct attempt *a = px_att(c->s);

    /* Refused, reset or closed before a response counts against the server;
     * a pooled connection it closed while idle is the keep-alive race. */
    if (!(c->s->x.flags & X_GOT_BYTE) && (connecting || !a->up || !a->up->reused))
        pool_report(a->srv, connecting ? POOL_CONNECT_FAILED : POOL_RESET, 0, a->started);
    int r;
    if (connecting && (c->s->x.req & R_FORWARD) && (r = forward_next(c, strerror(-err))) >= 0)
        return r;   /* the destination's next address */
    if (px_hedge(c->s)->up && !(c->s->x.flags & X_RESP_HEAD)) {
        hedge_promote(c, false);   /* the hedge is still in the race */
        return 1;
    }
    if (!connecting && exchange_can_retry(c))
        return exchange_retry(c);
    if (!(c->s->x.flags & X_GOT_BYTE) &&
        exchange_retry_allowed(c, connecting ? CONF_RETRY_CONNECT_FAILURE : CONF_RETRY_RESET, 0))
        return exchange_retry_later(c, connecting ? "a connect failure" : "a reset before the response");
    access_describe(c, what, sizeof what);
    const char *srv = px_dest_text(c->s, "-");
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
    } else if (err == -EPROTO && a->up && a->up->conn.ssl) {
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

/* No socket for the attempt (descriptors, buffers, memory, local ports):
 * the proxy is overloaded, the server was never asked. So it is not
 * reported to the pool (passive health would eject a healthy server), not
 * retried (another server needs a socket as much), and answered 503
 * proxy_overloaded, which a client may retry elsewhere. One sentence per
 * second at most: under that load it recurs for every request. */
static int local_failed(struct client *c, int err)
{
    static struct log_every warn;
    unsigned long held;
    char what[320];
    if (log_every(&warn, px_loop->now, 1000 * MS, &held)) {
        access_describe(c, what, sizeof what);
        log_error("error", "no socket for upstream %s: %s; answering 503 proxy_overloaded "
                           "(raise the open file limit, or lower max_connections) (%s) "
                           "(%lu more since the last such message)",
                  px_dest_text(c->s, "-"), strerror(-err), what, held);
    }
    return exchange_fail(c, 503, "proxy_overloaded", "proxy_overloaded");
}

int exchange_on_fault(struct client *c)
{
    const struct fault *f = &c->s->fault;
    char what[320], why[32];

    obs_fault(c);   /* the attempt's end, in the access log's words */
    switch (f->kind) {
    case FAULT_STATUS:
        snprintf(why, sizeof why, "status %d", f->status);
        return exchange_retry_later(c, why);
    case FAULT_NO_SERVER:
        access_describe(c, what, sizeof what);
        log_error("warn", "no upstream in service in pool %s (%s)", c->s->x.route->pool->name,
                  what);
        return exchange_fail(c, 503, "no_healthy_upstream", "no_healthy_upstream");
    case FAULT_LOCAL:
        return local_failed(c, f->err);
    case FAULT_RESPONSE:
    case FAULT_HEAD_TOO_LARGE:
        access_describe(c, what, sizeof what);
        log_error("warn", "bad response from upstream %s: %s (%s)",
                  px_dest_text(c->s, "-"), f->why, what);
        return f->kind == FAULT_RESPONSE
                   ? exchange_fail(c, 502, "bad_upstream_response", "bad_upstream_response")
                   : exchange_fail(c, 502, "upstream_head_too_large", "upstream_head_too_large");
    case FAULT_CLIENT_GONE:
        if (px_att(c->s)->up && !(c->s->x.flags & X_RESP_HEAD))   /* waited this long at least */
            pool_report(px_att(c->s)->srv, POOL_CANCELLED, 0, px_att(c->s)->started);
        access_describe(c, what, sizeof what);
        log_error("info", "client %s before the response was complete (%s)",
                  (c->cflags & CF_STREAM) ? "reset the stream" : "closed the connection", what);
        return exchange_fail(c, 0, "client_abort", "client closed");
    case FAULT_GRPC_HTTP:
        access_describe(c, what, sizeof what);
        log_error("warn", "upstream %s answered a gRPC call with HTTP %d and no grpc-status (%s)",
                  px_dest_text(c->s, "-"), f->status, what);
        c->s->x.grpc_status = grpc_status_of_http(f->status);
        snprintf(why, sizeof why, "HTTP status %d", f->status);
        return exchange_fail(c, 502, "upstream_http_status", why);
    case FAULT_BODY_TOO_LARGE:
        access_describe(c, what, sizeof what);
        log_error("info", "request body larger than --max-body-size %llu (%s)",
                  (unsigned long long)px_cfg->max_body, what);
        c->s->x.flags |= X_CLOSE_AFTER;
        return exchange_fail(c, 413, "body_too_large", "body larger than the limit");
    case FAULT_BAD_BODY:
        return exchange_fail(c, 400, "bad_request", "malformed chunked body");
    default:
        return io_failed(c, f);
    }
}

int exchange_dispatch(struct client *c, bool allow_pooled)
{
    struct exch *x = &c->s->x;
    obs_dispatch(c);            /* (the first: the time left then) */
    if (!(x->flags & X_COUNTED) && admit_unmeetable(c)) {
        char what[320], detail[96];
        access_describe(c, what, sizeof what);
        snprintf(detail, sizeof detail, "%llu ms left, below the route's min_budget %llu ms",
                 (unsigned long long)admit_left_ms(c),
                 (unsigned long long)x->route->min_budget_ms);
        log_error("info", "deadline unmeetable: %s; not sent upstream (%s)", detail, what);
        return exchange_fail(c, 504, "deadline_unmeetable", detail);
    }
    bool fresh = !(x->flags & X_COUNTED);
    admit_count(c);   /* dispatched: in flight on its pool until it ends */
    if (fresh && !(x->req & R_FORWARD) && x->route->pool->nwaiting) {
        admit_enqueue(c);   /* first come, first served: behind those waiting */
        return 1;
    }
    switch (attempt_connect(c, allow_pooled)) {
    case AT_FAILED:
        return exchange_on_fault(c);
    case AT_IDLE:
        /* At the pool's limit (max_connections, or every server at
         * max_requests): wait in its queue, under the queue timeout and
         * the total deadline (the fold's TMO_IF_QUEUED). */
        if (!(x->flags & X_WAIT_SLOT))
            admit_enqueue(c);
        return 1;
    default:
        return 1;
    }
}

/* The first final response head won the race: the hedge is cancelled. */
static void head_won(struct client *c)
{
    struct session *s = c->s;
    obs_head(c);   /* the attempt ends "ok", a hedge racing it "hedge_lost" */
    if (!px_hedge(s)->up)
        return;
    char what[320];
    access_describe(c, what, sizeof what);
    log_error("info", "%s answered first; cancelling the hedged attempt on %s (%s)",
              px_att(s)->srv->addr->text, px_hedge(s)->srv->addr->text, what);
    pool_report(px_hedge(s)->srv, POOL_CANCELLED, 0, px_hedge(s)->started);
    hedge_drop(c);
}

/* The response is whole: an HTTP/2 upstream's trailers go to the client,
 * and a gRPC call's status is read from them. */
static void hand_trailers(struct client *c)
{
    struct exch *x = &c->s->x;
    const struct upconn *up = px_att(c->s)->up;
    x->flags |= X_TRAILERS;
    uint32_t len;
    const char *t = up ? h2u_trailers(up, &len) : NULL;
    if (!t)
        return;
    if (x->req & R_GRPC) {
        const char *p = memmem(t, len, "grpc-status:", 12);
        if (p) {
            p += 12;
            while (p < t + len && *p == ' ')
                p++;
            const char *e = memchr(p, '\r', (size_t)(t + len - p));
            if (e)
                x->grpc_status = grpc_status_parse(p, (size_t)(e - p));
        }
    }
    client_trailers(c, t, len);
}

/* The exchange ended well: log, pool or close the upstream connection, and
 * wait for the next request (or close, when this one asked for it). */
static int exchange_done(struct client *c)
{
    struct exch *x = &c->s->x;

    struct attempt *a = px_att(c->s);

    access_log(c, x->status, "ok");
    hedge_drop(c);
    if (a->up) {
        if (!(x->flags & (X_NO_REUSE | X_UP_EOF)) && (x->flags & X_REQ_SENT)) {
            pool_put_idle(a->up);
        } else {
            tls_close_notify(a->up->conn.ssl);   /* a clean end: the session stays resumable */
            pool_close(a->up);
        }
        a->up = NULL;
    }
    buf_release(&c->s->uhead);
    buf_release(&a->in);
    buf_release(&c->s->out);
    relay_close(&c->s->relay);
    return client_next(c);
}

int exchange_step(struct client *c)
{
    struct exch *x = &c->s->x;
    int progress = 0, r;

    if (x->flags & X_BUFFERING)
        return reqbuf_step(c);
    switch (attempt_connect_step(c)) {
    case AT_FAILED:
        return exchange_on_fault(c);
    case AT_MOVED:
        progress = 1;
        if (x->req & R_CONNECT)
            return forward_established(c);
        break;
    }
    const struct upconn *up = px_att(c->s)->up;
    if ((x->req & R_EXPECT) && !(x->flags & X_CONTINUE) && up && !pool_opening(up)) {
        client_continue(c);   /* the upstream is there: the body may come */
        progress = 1;
    }
    if ((r = client_recv_body(c)) == AT_FAILED)
        return exchange_on_fault(c);
    progress |= r;
    if ((r = attempt_send(c)) == AT_FAILED)
        return exchange_on_fault(c);
    progress |= r;
    progress |= hedge_step(c);
    switch (r = attempt_recv(c)) {
    case AT_FAILED:
        return exchange_on_fault(c);
    case AT_UPGRADE:
        head_won(c);
        tunnel_begin(c);
        return 1;
    case AT_HEAD:
        head_won(c);
        break;
    }
    if ((x->flags & X_RESP_DONE) && !(x->flags & X_TRAILERS))
        hand_trailers(c);
    switch (r) {
    default:
        break;
    }
    progress |= r != AT_IDLE;
    if ((r = client_send(c)) == AT_FAILED)
        return exchange_on_fault(c);
    progress |= r;
    if ((x->flags & X_RESP_DONE) && !client_pending(c) &&
        (x->flags & (X_REQ_SENT | X_ABANDON_BODY)))
        return exchange_done(c);
    return progress;
}

