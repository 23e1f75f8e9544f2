/* observe.c -- where the time of a request went (see observe.h). */
#define _GNU_SOURCE
#include "observe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/rand.h>

#include "http.h"
#include "pool.h"
#include "route.h"
#include "stats.h"
#include "trace.h"

/* Random bytes for request IDs, drawn from OpenSSL's CSPRNG a batch at a
 * time (32 IDs per call), not one system call per request. */
/* 256 IDs per refill: one getrandom(2) (the kernel's ChaCha20, cheaper per
 * byte than OpenSSL's DRBG and its fork check) per 256 requests. */
static uint8_t rnd[256 * TRACE_RID_BYTES];
static unsigned rnd_left;

void obs_init(void)
{
    memset(rnd, 0, sizeof rnd);
    rnd_left = 0;
}

static void refill(void)
{
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd &&
        RAND_bytes(rnd, (int)sizeof rnd) != 1) {
        /* Neither source answered (never seen): unique IDs still, from the
         * clock and a counter through splitmix64, though guessable. */
        static uint64_t k;
        for (size_t i = 0; i < sizeof rnd; i += 8) {
            uint64_t z = loop_clock_ns() + (++k) * 0x9e3779b97f4a7c15ull;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            memcpy(rnd + i, &z, 8);
        }
    }
    rnd_left = sizeof rnd;
}

static void new_rid(struct exch_obs *o)
{
    if (rnd_left < TRACE_RID_BYTES)
        refill();
    trace_rid_format(rnd + sizeof rnd - rnd_left, o->rid);
    rnd_left -= TRACE_RID_BYTES;
}

void obs_request_begin(struct client *c, const struct http_msg *m)
{
    struct exch_obs *o = &c->s->x.obs;
    bool rid_seen = false, tp_seen = false;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (!rid_seen && (c->cflags & CF_TRUST_RID) && HTTP_NAME_IS(f, "x-request-id")) {
            rid_seen = true;   /* the first one only: a second is not looked at */
            if (trace_rid_valid(f->value, f->value_len)) {
                memcpy(o->rid, f->value, f->value_len);
                o->rid[f->value_len] = '\0';
            }
        } else if (!tp_seen && HTTP_NAME_IS(f, "traceparent")) {
            tp_seen = true;
            if (!trace_parent_id(f->value, f->value_len, o->trace_id))
                o->trace_id[0] = '\0';
        }
    }
    if (!o->rid[0])
        new_rid(o);
}

const char *obs_rid(struct client *c)
{
    struct exch_obs *o = &c->s->x.obs;
    if (!o->rid[0])
        new_rid(o);
    return o->rid;
}

/* The route's index for the metrics, or -1. */
static int route_index(const struct client *c)
{
    unsigned n;
    const struct route *base = route_all(&n);
    return c->s->x.route ? (int)(c->s->x.route - base) : -1;
}

/* A server's index for the metrics: its place among every pool's servers
 * (pool_groups order), or -1 (none, or past STATS_MAX_SERVERS). The pools
 * of a worker never change, so the bases are reckoned once. */
static int server_index(const struct pool_server *s)
{
    static unsigned base[STATS_MAX_POOLS];
    static bool known;
    if (!s || !s->group || s->group->index >= STATS_MAX_POOLS)
        return -1;
    if (!known) {
        unsigned n, at = 0;
        const struct pool_group *g = pool_groups(&n);
        for (unsigned i = 0; i < n && i < STATS_MAX_POOLS; i++) {
            base[i] = at;
            at += g[i].nservers;
        }
        known = true;
    }
    size_t k = base[s->group->index] + (size_t)(s - s->group->servers);
    return k < STATS_MAX_SERVERS ? (int)k : -1;
}

void obs_dispatch(struct client *c)
{
    struct exch *x = &c->s->x;
    if (x->obs.dispatched)
        return;
    x->obs.dispatched = true;
    uint64_t end = x->clk.start + ns_of(x->lim.ms[TMO_TOTAL]);
    x->obs.left_ns = end > px_loop->now ? end - px_loop->now : 0;
    if (x->lim.ms[TMO_TOTAL] != GRPC_NO_TOTAL_MS)   /* (none in effect: not a sample) */
        stats_left_at_dispatch(route_index(c), x->obs.left_ns);
}

void obs_queue_enter(struct client *c)
{
    c->s->x.obs.queued = true;
    c->s->x.obs.queued_at = px_loop->now;
}

void obs_queue_leave(struct client *c)
{
    struct exch_obs *o = &c->s->x.obs;
    if (o->queued_at && px_loop->now > o->queued_at)
        o->queue_ns += px_loop->now - o->queued_at;
    o->queued_at = 0;
}

void obs_try_begin(struct client *c, struct attempt *a)
{
    struct session *s = c->s;
    struct exch_obs *o = &s->x.obs;
    a->sent_at = 0;
    a->hedge = false;
    a->try_ix = 0;
    if (o->ntries == OBS_TRIES) {
        o->tries_more++;
        return;
    }
    /* (a pointer, not a copy: a slot or forward destination that takes
     * another address before the line is written prints the new one) */
    const char *server = a->srv ? a->srv->addr->text : s->fwd.chosen ? s->fwd.addr.text : NULL;
    o->tries[o->ntries] = (struct log_try){.server = server};
    a->try_ix = ++o->ntries;
}

void obs_try_end(struct client *c, struct attempt *a, const char *outcome, int status)
{
    if (!a->try_ix)
        return;
    struct log_try *t = &c->s->x.obs.tries[a->try_ix - 1];
    a->try_ix = 0;
    t->outcome = outcome;
    t->status = status;
    uint64_t d = px_loop->now > a->started ? px_loop->now - a->started : 0;
    t->ms = d / MS > UINT32_MAX ? UINT32_MAX : (uint32_t)(d / MS);
    if (a->hedge)
        stats->hedge_results[strcmp(outcome, "ok") == 0           ? STATS_HEDGE_WON
                             : strcmp(outcome, "hedge_lost") == 0 ? STATS_HEDGE_LOST
                                                                  : STATS_HEDGE_FAILED]++;
}

void obs_fault(struct client *c)
{
    const struct fault *f = &c->s->fault;
    struct attempt *a = px_att(c->s);
    const char *w;
    switch (f->kind) {
    case FAULT_CONNECT:
        w = f->err == -EPROTO         ? "upstream_tls_error"
          : f->err == -ECONNREFUSED   ? "upstream_refused"
                                      : "upstream_error";
        break;
    case FAULT_IO:
        w = f->err == 0 ? "upstream_closed"
          : f->err == -EPROTO && a->up && a->up->conn.ssl ? "upstream_tls_error"
          : f->err == -ECONNRESET || f->err == -EPIPE      ? "upstream_reset"
                                                           : "upstream_error";
        break;
    case FAULT_LOCAL: w = "proxy_overloaded"; break;
    case FAULT_RESPONSE: w = "bad_upstream_response"; break;
    case FAULT_HEAD_TOO_LARGE: w = "upstream_head_too_large"; break;
    case FAULT_STATUS: w = "status"; break;
    case FAULT_GRPC_HTTP: w = "upstream_http_status"; break;
    case FAULT_CLIENT_GONE: w = "client_abort"; break;
    case FAULT_BODY_TOO_LARGE: w = "body_too_large"; break;
    case FAULT_BAD_BODY: w = "bad_request"; break;
    default: return;   /* FAULT_NO_SERVER: no attempt began */
    }
    obs_try_end(c, a, w, f->kind == FAULT_STATUS ? f->status : 0);
}

void obs_head(struct client *c)
{
    struct session *s = c->s;
    struct attempt *a = px_att(s);
    if (a->try_ix) {   /* (once per attempt) */
        uint64_t from = a->sent_at ? a->sent_at : a->started;
        stats_head_time(route_index(c), server_index(a->srv),
                        px_loop->now > from ? px_loop->now - from : 0);
    }
    obs_try_end(c, a, "ok", 0);
    if (px_hedge(s)->up)
        obs_try_end(c, px_hedge(s), "hedge_lost", 0);
}

void obs_shed_note(struct client *c, const char *reason)
{
    c->s->x.obs.shed = reason;
}

void obs_end(struct client *c, int status, const char *reason)
{
    struct exch *x = &c->s->x;
    (void)status;
    obs_try_end(c, px_att(c->s), reason, 0);
    obs_try_end(c, px_hedge(c->s), reason, 0);
    if (!x->clk.start)
        return;   /* no request head: nothing was routed or timed */
    int ri = route_index(c);
    int si = x->attempts ? server_index(px_att(c->s)->srv) : -1;
    if (x->status != 101 && !(x->req & R_CONNECT))   /* (a tunnel's life is not a request's) */
        stats_request_time(ri, si, px_loop->now - x->clk.start);
    obs_queue_leave(c);
    if (x->obs.queued && x->route)
        stats_queue_wait((int)x->route->pool->index, x->obs.queue_ns);
    /* Shed: answered by hourglass, no upstream head relayed, for a reason
     * of admission (the reason logged, or one noted on the way). */
    if (strcmp(reason, "ok") != 0 && !(x->flags & X_RESP_HEAD) && !stats_shed(reason) &&
        x->obs.shed)
        stats_shed(x->obs.shed);
}

void obs_log_fields(struct client *c, struct log_entry *e)
{
    static const char *const from[] = {
        [OBS_FROM_NONE] = NULL, [OBS_FROM_ROUTE] = "route",
        [OBS_FROM_HEADER] = "header", [OBS_FROM_GRPC] = "grpc",
    };
    struct exch *x = &c->s->x;
    struct exch_obs *o = &x->obs;
    e->request_id = obs_rid(c);
    e->trace_id = o->trace_id[0] ? o->trace_id : NULL;
    e->deadline_ms = e->queue_ms = e->left_ms = -1;
    if (x->clk.start) {
        if (o->deadline_from != OBS_FROM_NONE) {
            e->deadline_from = from[o->deadline_from];
            e->deadline_ms =
                x->lim.ms[TMO_TOTAL] == GRPC_NO_TOTAL_MS ? -1 : (int64_t)x->lim.ms[TMO_TOTAL];
        }
        e->queue_ms = ms_of(o->queue_ns);
    }
    if (o->dispatched)
        e->left_ms = ms_of(o->left_ns);
    e->tries = o->tries;
    e->ntries = o->ntries;
    e->tries_more = o->tries_more;
}

/* ns as milliseconds with one decimal, rounded: "12.3". */
static int ms1(char *out, size_t cap, uint64_t ns)
{
    uint64_t t = (ns + 50000) / 100000;   /* tenths of a millisecond */
    return snprintf(out, cap, "%llu.%llu", (unsigned long long)(t / 10),
                    (unsigned long long)(t % 10));
}

size_t obs_server_timing(const struct client *c, char *out, size_t cap)
{
    const struct exch *x = &c->s->x;
    const struct attempt *a = px_att(c->s);
    uint64_t now = px_loop->now, from = a->sent_at ? a->sent_at : a->started;
    char q[24], k[24], u[24], t[24];
    ms1(q, sizeof q, x->obs.queue_ns);
    ms1(k, sizeof k, x->connect_ns > 0 ? (uint64_t)x->connect_ns : 0);
    ms1(u, sizeof u, from && now > from ? now - from : 0);
    ms1(t, sizeof t, x->clk.start && now > x->clk.start ? now - x->clk.start : 0);
    int n = snprintf(out, cap, "queue;dur=%s, connect;dur=%s, upstream;dur=%s, total;dur=%s", q, k,
                     u, t);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void obs_response_fields(struct client *c, struct fwd_resp *fr, char *st, size_t cap)
{
    fr->request_id = obs_rid(c);
    if (c->s->x.route && c->s->x.route->server_timing && cap) {
        obs_server_timing(c, st, cap);
        fr->server_timing = st;
    }
}

unsigned obs_server_labels(const char **pools, const char **servers, unsigned max)
{
    static char slot[STATS_MAX_SERVERS][VAL_NAME_MAX + 16];
    unsigned n, k = 0;
    const struct pool_group *g = pool_groups(&n);
    if (max > STATS_MAX_SERVERS)
        max = STATS_MAX_SERVERS;
    for (unsigned i = 0; i < n && i < STATS_MAX_POOLS; i++)
        for (unsigned j = 0; j < g[i].nservers && k < max; j++, k++) {
            const struct pool_server *s = &g[i].servers[j];
            pools[k] = g[i].name;
            if (!s->name) {
                servers[k] = s->addr->text;
                continue;
            }
            snprintf(slot[k], sizeof slot[k], "%s#%u", s->name->at->text, j - s->name->first);
            servers[k] = slot[k];
        }
    return k;
}
