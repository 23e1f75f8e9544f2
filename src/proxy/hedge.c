/* hedge.c -- a second attempt raced against the first for the response head (see hedge.h). */
#define _GNU_SOURCE
#include "hedge.h"

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
#include "cfg.h"
#include "dns.h"
#include "exchange.h"
#include "fwd.h"
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



void hedge_drop(struct client *c)
{
    struct attempt *h = c->s ? px_hedge(c->s) : NULL;
    if (h && h->up) {
        obs_try_end(c, h, "cancelled", 0);   /* (unless its end was noted) */
        pool_close(h->up);
        h->up = NULL;
        buf_release(&h->in);
        h->head_off = 0;
    }
}

/* Sends the request a second time, to another server of the pool, when the
 * first attempt has no response head after the route's hedge delay (the
 * asyncio.wait(FIRST_COMPLETED) of proxies). Only for idempotent requests
 * without a body; a hedge counts against the pool's retry budget. */
void hedge_start(struct client *c)
{
    struct session *s = c->s;
    struct exch *x = &s->x;
    char what[320];
    int err = 0;

    x->flags |= X_HEDGED;
    if (!(x->req & R_IDEMPOTENT) || x->req_framing != HTTP_BODY_NONE || x->bytes_sent ||
        buf_len(&s->out)) {
        stats->hedge_results[STATS_HEDGE_SKIPPED]++;
        return;
    }
    if (!pool_retry_allowed(x->route->pool)) {
        access_describe(c, what, sizeof what);
        log_error("info", "hedge skipped: retry budget of pool %s spent (%s)",
                  x->route->pool->name, what);
        stats->hedge_results[STATS_HEDGE_SKIPPED]++;
        return;
    }
    uint64_t left, need;
    if (!admit_in_time(c, &left, &need)) {   /* it could not answer in time */
        access_describe(c, what, sizeof what);
        log_error("info", "hedge skipped: %llu ms left, the route needs %llu ms (%s)",
                  (unsigned long long)left, (unsigned long long)need, what);
        x->flags |= X_RETRY_SKIPPED;
        stats->hedge_results[STATS_HEDGE_SKIPPED]++;
        return;
    }
    struct pool_server *srv = pool_pick_other(x->route->pool, px_att(s)->srv);
    if (!srv || srv == px_att(s)->srv) {
        stats->hedge_results[STATS_HEDGE_SKIPPED]++;
        return;
    }
    if (!admit_hedge_allowed(c)) {   /* hedge.max_percent: the extra load is capped */
        stats->hedge_results[STATS_HEDGE_SKIPPED]++;
        return;
    }
    struct upconn *h = pool_take_idle(srv, c, attempt_on_upstream);
    if (!h)
        h = pool_connect(srv, c, attempt_on_upstream, &err);
    if (!h) {
        if (!net_local_exhausted(err))   /* out of descriptors...: not the server's fault */
            pool_report(srv, POOL_CONNECT_FAILED, 0, px_loop->now);
        stats->hedge_results[STATS_HEDGE_SKIPPED]++;
        return;
    }
    admit_retry_take(c);
    stats->hedges++;
    px_hedge(s)->up = h;
    px_hedge(s)->srv = srv;
    px_hedge(s)->started = px_loop->now;
    px_hedge(s)->head_off = 0;
    x->attempts++;
    obs_try_begin(c, px_hedge(s));
    px_hedge(s)->hedge = true;
    access_describe(c, what, sizeof what);
    log_error("info", "no response head from %s after %llu ms: hedging to %s (%s)",
              px_att(s)->srv->addr->text, (unsigned long long)x->lim.ms[TMO_HEDGE],
              srv->addr->text, what);
}

/* The hedge takes the first attempt's place, because its response head came
 * first (head) or because the first attempt failed; the first attempt's
 * connection is closed, never pooled. */
void hedge_promote(struct client *c, bool head)
{
    struct session *s = c->s;
    struct exch *x = &s->x;
    char what[320];

    access_describe(c, what, sizeof what);
    log_error("info", "hedged attempt on %s %s; cancelling the one on %s (%s)",
              px_hedge(s)->srv->addr->text, head ? "answered first" : "carries on",
              px_att(s)->srv->addr->text, what);
    struct attempt *lost = px_att(s);
    if (head && lost->up) {
        pool_report(lost->srv, POOL_CANCELLED, 0, lost->started);   /* outrun */
        admit_observe(x->route, lost->started, px_loop->now);      /* (at least this long) */
    }
    obs_try_end(c, lost, head ? "hedge_lost" : "cancelled", 0);
    if (lost->up)
        pool_close(lost->up);
    lost->up = NULL;
    buf_release(&lost->in);
    lost->head_off = 0;
    s->at = s->hg;   /* the hedge is the attempt now */
    s->hg = lost;
    x->flags &= ~(X_REQ_SENT | X_UP_EOF | X_NO_REUSE);
    if (px_att(s)->head_off == s->uhead.end && (x->flags & X_BODY_DONE))
        x->flags |= X_REQ_SENT;
    x->clk.read_mark = 0;
    x->clk.write_since = 0;
    x->clk.try_start = px_loop->now;
    if (pool_opening(px_att(s)->up))
        x->clk.connect = px_loop->now;   /* its own connect clock from here */
    if (head) {   /* (attempt_recv parses the head again, and reports it to the pool) */
        x->flags |= X_GOT_BYTE | X_HEAD_QUEUED;
        if (x->first_byte_ns < 0)
            x->first_byte_ns = (int64_t)(px_loop->now - x->clk.start);
    }
}

/* Advances the hedged attempt: connect, send the head, read until a final
 * response head (which wins) or a failure (which drops the hedge alone). */
int hedge_step(struct client *c)
{
    struct session *s = c->s;
    struct upconn *h = px_hedge(s)->up;
    int progress = 0;
    /* What failed, for passive health, as for the first attempt: a reset or
     * an end before any response byte counts, unless the connection was a
     * pooled one (the keep-alive race); a bad head does not. */
    enum pool_outcome fail = POOL_RESET;
    bool counts = !h || !h->reused;
    const char *word = "upstream_reset";   /* its end, in the access log's words */

    if (!h)
        return 0;
    if (pool_opening(h)) {
        char why[160];
        int r = pool_connect_step(h, why, sizeof why);
        if (r == 0)
            return 0;
        if (r < 0) {
            fail = POOL_CONNECT_FAILED;
            counts = true;
            word = r == -EPROTO ? "upstream_tls_error"
                 : r == -ECONNREFUSED ? "upstream_refused" : "upstream_error";
            goto out_failed;
        }
        progress = 1;
    }
    if (px_hedge(s)->head_off < s->uhead.end && (h->conn.io.ready & LOOP_WRITE)) {
        /* The head is shared with the first attempt: stamp it anew only
         * when that one has sent all of it, never under its feet. */
        if (px_hedge(s)->head_off == 0 && (!px_att(s)->up || px_att(s)->head_off == s->uhead.end))
            attempt_stamp_deadline(c);
        struct iovec iov = {s->uhead.data + px_hedge(s)->head_off, s->uhead.end - px_hedge(s)->head_off};
        ssize_t n = pool_writev(h, &iov, 1);
        if (n > 0) {
            px_hedge(s)->head_off += (uint32_t)n;
            if (px_hedge(s)->head_off == s->uhead.end)
                px_hedge(s)->sent_at = px_loop->now;
            progress = 1;
        } else if (n < 0 && n != -EAGAIN) {
            goto out_failed;
        }
    }
    while (h->conn.io.ready & LOOP_READ) {
        buf_reserve(&px_hedge(s)->in, BUF_SMALL);
        if (!buf_room(&px_hedge(s)->in)) {
            if (px_hedge(s)->in.cap >= BUF_LARGE) {
                counts = false;
                word = "upstream_head_too_large";
                goto out_failed;   /* a head this large is refused anyway */
            }
            buf_reserve(&px_hedge(s)->in, BUF_LARGE);
        }
        uint32_t room = buf_room(&px_hedge(s)->in);
        ssize_t n = pool_read(h, buf_tail(&px_hedge(s)->in), room);
        if (n > 0) {
            px_hedge(s)->in.end += (uint32_t)n;
            progress = 1;
            for (;;) {   /* 1xx heads of the hedge are not relayed */
                int r = http_parse_response(buf_head(&px_hedge(s)->in), buf_len(&px_hedge(s)->in), &px_scratch,
                                            &http_default_limits);
                if (r == HTTP_INCOMPLETE)
                    break;
                if (r < 0) {
                    counts = false;
                    word = "bad_upstream_response";
                    goto out_failed;
                }
                if (px_scratch.status >= 200 || px_scratch.status == 101) {
                    hedge_promote(c, true);
                    return 1;
                }
                px_hedge(s)->in.start += (uint32_t)r;
            }
            continue;
        }
        if (n == -EAGAIN)
            break;
        counts = counts && px_hedge(s)->in.end == 0;   /* before any response byte */
        word = n == 0 ? "upstream_closed" : "upstream_reset";
        goto out_failed;   /* closed or reset before a head */
    }
    return progress;

out_failed:
    if (counts)
        pool_report(px_hedge(s)->srv, fail, 0, px_hedge(s)->started);
    obs_try_end(c, px_hedge(s), word, 0);
    hedge_drop(c);
    return 1;
}
