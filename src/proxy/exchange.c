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

/* xorshift state for the retry backoff's jitter */
static uint64_t jitter_state = 0x2545f4914f6cdd1dull;

static const struct route_policy *exchange_policy(const struct client *c);
static uint32_t conditions(const struct client *c);
static void fold_deadlines(struct client *c);
static uint64_t configured_ms(const struct client *c, enum tmo_kind k);
static void exchange_timeout(struct client *c, enum tmo_kind k);
static int exchange_done(struct client *c);
static void exchange_underscores_dropped(struct client *c, const struct http_msg *m, unsigned n);

static const struct route_policy *exchange_policy(const struct client *c)
{
    return c->s->x.route ? &c->s->x.route->policy : &px_default_policy;
}

/* The total deadline: the route's, or less when a trusted client said so. */
uint64_t exchange_total_ms(const struct client *c)
{
    uint64_t t = exchange_policy(c)->total_ms;
    if ((c->s->x.flags & X_CLIENT_DEADLINE) && c->s->x.client_total_ms < t)
        t = c->s->x.client_total_ms;
    return t;
}

/* A fresh exchange: timings that have not happened read as "-". */
void exchange_reset(struct exch *x)
{
    *x = (struct exch){0};
    x->connect_ns = x->first_byte_ns = x->sent_ns = -1;
}

/* The exchange's place in its pool's counts of requests and retries in
 * flight, which size the retry budget: counted (X_COUNTED) from its dispatch
 * to its end, and among the retries (X_RETRIED) from its first retry or
 * hedge to its end, once however many attempts it makes. */
void exchange_budget_count(struct client *c)
{
    if (!(c->s->x.flags & X_COUNTED)) {
        c->s->x.flags |= X_COUNTED;
        pool_request_begin(c->s->x.route->pool);
    }
}

void exchange_budget_take(struct client *c)
{
    if (!(c->s->x.flags & X_RETRIED)) {
        c->s->x.flags |= X_RETRIED;
        pool_budget_take(c->s->x.route->pool);
    }
}

void exchange_budget_release(struct client *c)
{
    struct exch *x = &c->s->x;
    if (x->flags & X_COUNTED)
        pool_request_end(x->route->pool);
    if (x->flags & X_RETRIED)
        pool_budget_release(x->route->pool);
    x->flags &= ~(X_COUNTED | X_RETRIED);
}

/* The queue of requests waiting for a connection slot of their pool (the
 * pool keeps it; X_WAIT_SLOT mirrors membership for the deadlines). */
void exchange_wait_enqueue(struct client *c)
{
    pool_wait_add(c->s->x.route->pool, &c->s->waiter, c);
    c->s->x.flags |= X_WAIT_SLOT;
}

void exchange_wait_dequeue(struct client *c)
{
    if (!c->s || !(c->s->x.flags & X_WAIT_SLOT))
        return;
    pool_wait_remove(&c->s->waiter);
    c->s->x.flags &= ~X_WAIT_SLOT;
}

/* The one cancellation path. Closes the upstream connection (never pooled).
 * If no byte of the final response has reached the client and `status` is
 * not 0, the client gets that status with the reason in a plain-text body;
 * otherwise the client connection is cut so that it sees an incomplete
 * message. Returns 1 when the client lives on (CLOSING), -1 when closed. */
int exchange_fail(struct client *c, int status, const char *reason, const char *detail)
{
    attempt_drop(c);
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
    struct exch *x = &c->s->x;
    const struct route_policy *P = exchange_policy(c);
    uint64_t *ms = x->lim.ms;
    ms[TMO_TOTAL] = exchange_total_ms(c);
    ms[TMO_CONNECT] = P->connect_ms;
    ms[TMO_WRITE] = P->write_ms;
    ms[TMO_READ] = P->read_ms;
    ms[TMO_HEADER] = px_cfg->header_ms;
    ms[TMO_BODY] = P->body_ms;
    ms[TMO_SEND] = P->send_ms;
    ms[TMO_IDLE] = LINGER_NS / MS;   /* the fold's IDLE in CLOSING is the linger */
    ms[TMO_DNS] = px_cfg->dns_ms;
    ms[TMO_TUNNEL_IDLE] = P->tunnel_idle_ms;
    ms[TMO_TUNNEL_MAX] = P->tunnel_max_ms;
    ms[TMO_TRY] = x->route && x->route->retry ? x->route->retry->per_try_timeout_ms : 0;
    ms[TMO_HEDGE] = x->route ? x->route->hedge_ms : 0;
}

/* What holds now of the conditions that run clocks (tmo.h TMO_IF_*). */
static uint32_t conditions(const struct client *c)
{
    const struct exch *x = &c->s->x;
    const struct upconn *up = c->s->up;
    uint32_t cond = 0;
    if (!(c->conn.io.ready & LOOP_WRITE))
        cond |= c->state == CS_CLOSING || client_pending(c) ? TMO_IF_SEND : 0;
    if (c->state != CS_EXCH)
        return cond | ((x->flags & X_LINGER) ? TMO_IF_LINGER : 0);
    if ((up && up->connecting) || (x->flags & X_WAIT_SLOT))
        cond |= TMO_IF_CONNECTING;
    if (x->flags & X_RESOLVING)
        cond |= TMO_IF_RESOLVING;
    if (up && !(x->flags & (X_HEDGED | X_RESP_HEAD | X_UPGRADE)))
        cond |= TMO_IF_HEDGE;
    if (up && !(x->flags & X_RESP_HEAD))
        cond |= TMO_IF_TRY;
    if ((x->flags & X_REQ_SENT) && !(x->flags & X_RESP_DONE) && up && attempt_uin_room(c))
        cond |= TMO_IF_READ;
    if (!(x->flags & (X_BODY_DONE | X_ABANDON_BODY)) && client_in_room(c) &&
        !((x->flags & X_EXPECT) && !(x->flags & X_CONTINUE)))
        cond |= TMO_IF_BODY;
    return cond;
}

/* Recomputes every running deadline from the connection's state: the pure
 * fold of tmo.h over what holds now. */
static void fold_deadlines(struct client *c)
{
    static const uint8_t phase[] = {
        [CS_HEAD] = TMO_PHASE_HEAD, [CS_EXCH] = TMO_PHASE_EXCH,
        [CS_CLOSING] = TMO_PHASE_CLOSING, [CS_TUNNEL] = TMO_PHASE_TUNNEL,
    };
    struct exch *x = &c->s->x;
    if (c->state != CS_HEAD && c->state != CS_EXCH && c->state != CS_CLOSING &&
        c->state != CS_TUNNEL) {
        c->s->tmo = (struct tmo_set){0};
        return;
    }
    x->clk.first = c->t_first;
    tmo_fold((enum tmo_phase)phase[c->state], conditions(c), &x->lim, &x->clk, px_loop->now,
             &c->s->tmo);
}

/* Folds the deadlines into the one timer. A deadline that moved later leaves
 * the timer where it is: it fires early once, finds nothing expired, and is
 * re-filed then, which is cheaper than re-sorting on every read. */
void exchange_arm(struct client *c)
{
    uint64_t next;
    if (!c->s) {   /* IDLE: one deadline */
        next = c->t_first + ns_of((c->cflags & CF_HANDSHAKE) ? px_cfg->handshake_ms : px_cfg->idle_ms);
    } else {
        fold_deadlines(c);
        next = tmo_next(&c->s->tmo);
    }
    if (!next)
        loop_timer_stop(px_loop, &c->timer);
    else if (!c->timer.armed || next < c->timer.at)
        loop_timer_at(px_loop, &c->timer, next);
}

static uint64_t configured_ms(const struct client *c, enum tmo_kind k)
{
    const struct route_policy *P = exchange_policy(c);
    switch (k) {
    case TMO_TOTAL: return exchange_total_ms(c);
    case TMO_CONNECT: return P->connect_ms;
    case TMO_WRITE: return P->write_ms;
    case TMO_READ: return P->read_ms;
    case TMO_HEADER: return px_cfg->header_ms;
    case TMO_BODY: return P->body_ms;
    case TMO_SEND: return P->send_ms;
    case TMO_IDLE: return px_cfg->idle_ms;
    case TMO_DNS: return px_cfg->dns_ms;
    case TMO_TUNNEL_IDLE: return P->tunnel_idle_ms;
    case TMO_TUNNEL_MAX: return P->tunnel_max_ms;
    case TMO_TRY:
        return c->s->x.route && c->s->x.route->retry ? c->s->x.route->retry->per_try_timeout_ms : 0;
    default: return 0;
    }
}

static void exchange_timeout(struct client *c, enum tmo_kind k)
{
    char what[320], detail[96];
    uint64_t ms = configured_ms(c, k);
    access_describe(c, what, sizeof what);
    snprintf(detail, sizeof detail, "%s after %llu ms", tmo_reason(k), (unsigned long long)ms);

    if (k == TMO_BACKOFF) {
        c->s->x.clk.backoff_until = 0;
        attempt_connect(c, true);
        return;
    }
    if (k == TMO_HEDGE) {
        hedge_start(c);
        return;
    }
    if (k == TMO_DNS) {
        log_error("warn", "dns timeout after %llu ms resolving %s (%s)", (unsigned long long)ms,
                  c->s->fhost, what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        return;
    }
    if (k == TMO_CONNECT && (c->s->x.flags & X_WAIT_SLOT)) {
        log_error("warn", "no free connection in pool %s after %llu ms (max_connections %u) (%s)",
                  c->s->x.route->pool->name, (unsigned long long)configured_ms(c, k),
                  c->s->x.route->pool->max_conns, what);
        exchange_fail(c, 503, "pool_full", "pool_full");
        return;
    }
    if (k == TMO_CONNECT)
        pool_report(c->s->srv, false);
    if (c->s->hedge && !(c->s->x.flags & X_RESP_HEAD) &&
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
                  (unsigned long long)ms, c->s->srv->addr->text, what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        break;
    case TMO_READ:
    case TMO_TOTAL:
    case TMO_TRY:
        log_error("warn", "upstream %s timeout after %llu ms from %s (%s)", tmo_word(k),
                  (unsigned long long)ms, c->s->srv ? c->s->srv->addr->text : "-", what);
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
        if (c->cflags & CF_HANDSHAKE) {
            if (px_loop->now < c->t_first + ns_of(px_cfg->handshake_ms)) {
                exchange_arm(c);
                return;
            }
            struct peer_text pt;
            log_error("info", "client TLS handshake timeout after %llu ms (client %s)",
                      (unsigned long long)px_cfg->handshake_ms, access_peer(c, &pt));
            stats->tls[STATS_TLS_CLIENT][TLS_TIMEOUT]++;
            client_close(c);
            return;
        }
        if (px_loop->now >= c->t_first + ns_of(px_cfg->idle_ms)) {
            tls_close_notify(c->conn.ssl);   /* a clean end between requests */
            client_close(c);
        } else {
            exchange_arm(c);
        }
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
        snprintf(detail, sizeof detail, "header_timeout after %llu ms",
                 (unsigned long long)px_cfg->header_ms);
        log_error("warn", "client header timeout after %llu ms (client %s)",
                  (unsigned long long)px_cfg->header_ms, access_peer(c, &pt));
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
    return c->s->up && c->s->up->reused && x->attempts == 1 && !(x->flags & X_GOT_BYTE) &&
           x->req_framing == HTTP_BODY_NONE && (x->flags & X_IDEMPOTENT);
}

int exchange_retry(struct client *c)
{
    char what[320];
    access_describe(c, what, sizeof what);
    log_error("info", "pooled connection to %s closed before a response; retrying on a new "
                      "connection (%s)", c->s->up->srv->addr->text, what);
    attempt_reset(c);
    return attempt_connect(c, false);
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
    if (!(x->flags & X_IDEMPOTENT) && r->methods != CONF_METHODS_ALL)
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

    exchange_budget_take(c);
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
              c->s->srv->addr->text, x->attempts + 1, r->attempts,
              (unsigned long long)(delay / MS), what);
    x->avoid = c->s->srv;
    attempt_reset(c);
    if (!delay)
        return attempt_connect(c, true);
    x->clk.backoff_until = px_loop->now + delay;
    return 1;
}

/* The exchange ended well: log, pool or close the upstream connection, and
 * wait for the next request (or close, when this one asked for it). */
static int exchange_done(struct client *c)
{
    struct exch *x = &c->s->x;

    access_log(c, x->status, "ok");
    if (c->s->up) {
        if (!(x->flags & (X_NO_REUSE | X_UP_EOF)) && (x->flags & X_REQ_SENT)) {
            pool_put_idle(c->s->up);
        } else {
            tls_close_notify(c->s->up->conn.ssl);   /* a clean end: the session stays resumable */
            pool_close(c->s->up);
        }
        c->s->up = NULL;
    }
    buf_release(&c->s->uhead);
    buf_release(&c->s->uin);
    buf_release(&c->s->out);
    relay_close(&c->s->relay);
    if ((x->flags & X_CLOSE_AFTER) || px_draining) {
        c->state = CS_CLOSING;
        return 1;
    }
    c->in.start = x->body_ready;   /* past this request; pipelined bytes stay */
    c->t_first = px_loop->now;
    if (buf_len(&c->in)) {
        exchange_reset(&c->s->x);       /* a pipelined request is waiting */
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

int exchange_step(struct client *c)
{
    struct exch *x = &c->s->x;
    int progress = 0, r;

    if (c->s->up && c->s->up->connecting) {
        int err = pool_connect_step(c->s->up, attempt_tls_why, sizeof attempt_tls_why);
        if (err < 0)
            return attempt_failed(c, err, true);
        if (err > 0) {
            x->connect_ns = (int64_t)(px_loop->now - x->clk.connect);
            progress = 1;
            if (x->flags & X_CONNECT)
                return forward_established(c);
        }
    }
    if ((x->flags & X_EXPECT) && !(x->flags & X_CONTINUE) && c->s->up && !c->s->up->connecting) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        buf_reserve(&c->s->out, BUF_SMALL);
        memcpy(buf_tail(&c->s->out), cont, sizeof cont - 1);
        c->s->out.end += sizeof cont - 1;
        x->interim += sizeof cont - 1;
        x->flags |= X_CONTINUE;
        progress = 1;
    }
    if ((r = client_recv_body(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    if ((r = attempt_send(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    progress |= hedge_step(c);
    if ((r = attempt_recv(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    if ((r = client_send(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    if ((x->flags & X_RESP_DONE) && !client_pending(c) &&
        (x->flags & (X_REQ_SENT | X_ABANDON_BODY)))
        return exchange_done(c);
    return progress;
}

/* A complete request head is at in.start: check it and start the exchange. */
int exchange_start(struct client *c, int head_len)
{
    struct exch *x = &c->s->x;
    struct http_msg *m = &px_scratch;
    struct http_info info;
    char detail[64];
    const char *base = c->in.data + c->in.start;

    x->head_len = (uint32_t)head_len;
    x->bytes_in = (uint32_t)head_len;
    x->method_len = m->method_len;
    x->target_off = (uint32_t)(m->target - base);
    x->target_len = m->target_len;
    x->clk.start = px_loop->now;
    c->minor = (uint8_t)m->minor;
    c->state = CS_EXCH;
    x->flags |= X_CLOSE_AFTER;   /* until the head is known to be sound */

    int r = http_request_info(m, &info);
    const char *bad = NULL;
    bool is_connect = m->method_len == 7 && memcmp(m->method, "CONNECT", 7) == 0;
    if (r < 0)
        bad = r == -501 ? "unsupported transfer coding" : "bad framing or Host";
    else if (is_connect && !(c->cflags & CF_FORWARD))
        r = -501, bad = "CONNECT is not supported by a reverse proxy";
    else if (c->cflags & CF_FORWARD)
        ;   /* forward_admit checks the target */
    else if (!(m->target[0] == '/' ||
               (m->target_len == 1 && m->target[0] == '*' && m->method_len == 7 &&
                memcmp(m->method, "OPTIONS", 7) == 0))) {
        const char *a, *p;
        size_t al, pl;
        if (fwd_split_absolute(m->target, m->target_len, &a, &al, &p, &pl) < 0)
            r = -400, bad = "bad request target";
    }
    if (bad) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("info", "bad request: %s (%s)", bad, what);
        snprintf(detail, sizeof detail, "%s", bad);
        client_error(c, -r, "bad_request", detail);
        return 1;
    }
    if (c->cflags & CF_FORWARD) {
        if (forward_admit(c, m, is_connect))
            return 1;   /* answered: 400, 403 or 407 */
        x->route = &forward_route;
        x->flags |= X_FORWARD | X_NO_REUSE;
        goto routed;
    }
    /* Route by Host (or an absolute-form target's authority) and path. */
    const char *rh = info.host, *rp = m->target;
    size_t rhl = info.host_len, rpl = m->target_len;
    fwd_split_absolute(m->target, m->target_len, &rh, &rhl, &rp, &rpl);
    if (!rpl || rp[0] != '/') {   /* "http://h" and "http://h?q" have the path "/" */
        rp = "/";
        rpl = 1;
    }
    x->route = route_match(rh, rhl, rp, rpl);
    if (!x->route) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("info", "no route for this request (%s)", what);
        client_error(c, 404, "no_route", "no route matches this host and path");
        return 1;
    }
routed:
    if ((c->cflags & CF_TRUSTED) && px_cfg->deadline_header) {
        size_t dl = strlen(px_cfg->deadline_header);
        for (uint32_t i = 0; i < m->nfields; i++) {
            const struct http_field *f = &m->fields[i];
            uint64_t v;
            if (f->name_len == dl && strncasecmp(f->name, px_cfg->deadline_header, dl) == 0 &&
                http_parse_u64(f->value, f->value_len, &v) == 0) {
                x->client_total_ms = v;
                x->flags |= X_CLIENT_DEADLINE;
                break;
            }
        }
    }
    exchange_set_limits(c);   /* the route's, and the client's total */
    if (!info.conn_close)
        x->flags &= ~X_CLOSE_AFTER;
    if (http_method_is_head(m->method, m->method_len))
        x->flags |= X_HEAD_METHOD;
    if (http_method_idempotent(m->method, m->method_len))
        x->flags |= X_IDEMPOTENT;
    if (m->minor == 1 && info.framing == HTTP_BODY_NONE && m->method_len == 3 &&
        memcmp(m->method, "GET", 3) == 0 && fwd_wants_websocket(m))
        x->flags |= X_UPGRADE;
    if (info.expect_continue && m->minor == 1)
        x->flags |= X_EXPECT;
    x->req_framing = (uint8_t)info.framing;
    x->req_left = info.length;
    x->req_chunk.keep_framing = 1;
    /* A body the route may need to send again stays in `in` while it is
     * small enough (retry.max_body) and fits the buffer. */
    const struct conf_retry *rr = x->route->retry;
    if (rr && info.framing != HTTP_BODY_NONE &&
        ((x->flags & X_IDEMPOTENT) || rr->methods == CONF_METHODS_ALL) &&
        (info.framing != HTTP_BODY_LENGTH || info.length <= rr->max_body))
        x->flags |= X_KEEP_BODY;
    if (px_cfg->max_body && info.framing == HTTP_BODY_LENGTH && info.length > px_cfg->max_body) {
        x->flags |= X_CLOSE_AFTER;
        client_body_too_large(c);
        return 1;
    }
    x->body_sent = x->body_ready = c->in.start + (uint32_t)head_len;
    if (info.framing == HTTP_BODY_NONE)
        x->flags |= X_BODY_DONE;
    if (is_connect) {   /* forward: what follows the head is the tunnel's */
        x->flags |= X_CONNECT | X_BODY_DONE;
        return forward_resolve(c);
    }

    char ip[INET6_ADDRSTRLEN];
    size_t deadline_at = 0;
    unsigned dropped = 0;
    net_ip_text(&c->peer.sa, ip, sizeof ip);
    struct fwd_req fq = {
        .m = m,
        .info = &info,
        .client_ip = ip,
        .proto = c->conn.ssl ? "https" : "http",
        .default_host = px_cfg->upstream[0].text,
        .strip_expect = true,
        .deadline_name = px_cfg->deadline_header,
        .deadline_strip_only = x->route->no_deadline_header,
        .upgrade = (x->flags & X_UPGRADE) != 0,
        .strip_proxy_auth = (x->flags & X_FORWARD) != 0,
        .deadline_at = &deadline_at,
        .keep_underscores = (c->cflags & CF_UNDERSCORES) != 0,
        .dropped = &dropped,
    };
    buf_reserve(&c->s->uhead, (uint32_t)head_len + 1024 > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    int n = fwd_request_head(c->s->uhead.data, c->s->uhead.cap, &fq);
    if (n < 0) {
        client_error(c, 431, "bad_request", "request head too large to forward");
        return 1;
    }
    c->s->uhead.end = (uint32_t)n;
    x->deadline_at = (uint32_t)deadline_at;
    if (dropped)
        exchange_underscores_dropped(c, m, dropped);
    if (attempt_bulk(info.framing, info.length)) {
        /* The head moves to the front of a larger buffer; offsets follow. */
        uint32_t was = c->in.start;
        buf_reserve(&c->in, BUF_LARGE);
        x->body_sent -= was - c->in.start;
        x->body_ready -= was - c->in.start;
    }
    if (client_request_body(c) < 0)
        return -1;
    if (c->state != CS_EXCH)
        return 1;
    if (x->flags & X_FORWARD)
        return forward_resolve(c);
    return attempt_connect(c, true);
}

/* Counts and logs (at debug) the request fields fwd_request_head dropped
 * because their names have a '_'. */
static void exchange_underscores_dropped(struct client *c, const struct http_msg *m, unsigned n)
{
    stats->dropped_underscore += n;
    if (!log_enabled(LOG_DEBUG))
        return;
    char names[256], what[320];
    size_t o = 0;
    for (uint32_t i = 0; i < m->nfields && o + 2 < sizeof names; i++) {
        const struct http_field *f = &m->fields[i];
        if (!fwd_name_has_underscore(f))
            continue;
        int w = snprintf(names + o, sizeof names - o, "%s%.*s", o ? ", " : "",
                         (int)f->name_len, f->name);
        o = w < 0 ? o : o + (size_t)w;
    }
    names[sizeof names - 1] = '\0';
    access_describe(c, what, sizeof what);
    log_error("debug", "dropped %u request field%s with '_' in the name: %s (%s)", n,
              n == 1 ? "" : "s", names, what);
}
