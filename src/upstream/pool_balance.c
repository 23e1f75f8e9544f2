/* pool_balance.c -- the choice of a server of a pool: balancing, slow start,
 * passive health and the latency kept for balance: ewma (see pool.h and
 * pool_internal.h). */
#include "pool_internal.h"

#include <math.h>

#include "log.h"
#include "stats.h"

static struct loop *loop;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* xorshift64: uniform enough for choosing among 64 servers, and cheap. */
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

void pool_rng_seed(uint64_t seed)
{
    rng = seed ? seed : 0x9e3779b97f4a7c15ull;   /* (0 would stay 0) */
}

/* The servers a worker starts with are all new together (each generation
 * builds its pools anew): ramping them all alike would change no share, so
 * they start at their full weight (back_at 0). */
void pool_balance_init(struct loop *l)
{
    loop = l;
    rng ^= loop_clock_ns();
}

/* ---- the pure pieces ------------------------------------------------------ */

double pool_ewma_decay(double avg, uint64_t dt)
{
    return avg * exp(-(double)dt / (double)POOL_EWMA_TAU_NS);
}

double pool_ewma_next(double avg, uint64_t dt, double sample)
{
    double w = exp(-(double)dt / (double)POOL_EWMA_TAU_NS);
    double now = avg * w;
    return sample > now ? sample : now + sample * (1.0 - w);
}

unsigned pool_ramp_permille(uint64_t since, uint64_t now, uint64_t dur)
{
    if (!dur || now >= since + dur)
        return 1000;
    if (now <= since)
        return POOL_RAMP_FIRST;
    return POOL_RAMP_FIRST + (unsigned)((1000 - POOL_RAMP_FIRST) * (now - since) / dur);
}

uint64_t pool_weight_now(const struct pool_server *s, uint64_t now)
{
    return (uint64_t)s->weight * pool_ramp_permille(__atomic_load_n(&s->h->back_at, __ATOMIC_RELAXED),
                                                    now, s->group->slow_start_ns);
}

double pool_ewma_cost(const struct pool_server *s, uint64_t now)
{
    double lat = pool_ewma_decay(s->ewma_ns, now > s->ewma_at ? now - s->ewma_at : 0);
    if (lat < (double)POOL_EWMA_FLOOR_NS)
        lat = (double)POOL_EWMA_FLOOR_NS;
    return lat * (double)(s->active + 1) * 1000.0 / (double)pool_weight_now(s, now);
}

enum pool_verdict pool_verdict(const struct pool_group *g, enum pool_outcome o, int status)
{
    switch (o) {
    case POOL_ANSWERED:
        if (g->fail_5xx && status >= 500 && status <= 599)
            return POOL_FAILURE;
        for (unsigned i = 0; i < g->nfail_status; i++)
            if (g->fail_status[i] == status)
                return POOL_FAILURE;
        return POOL_SUCCESS;
    case POOL_CANCELLED:
        return POOL_NEITHER;
    default:
        return (g->fail_on & (1u << o)) ? POOL_FAILURE : POOL_NEITHER;
    }
}

/* ---- choosing ------------------------------------------------------------- */

/* In service now? An ejection whose cool-down has passed ends here, and the
 * server's slow start counts from the end of the cool-down. */
static bool in_service(struct pool_group *g, struct pool_server *s)
{
    struct psh_server *h = s->h;
    if (s->down || __atomic_load_n(&h->down, __ATOMIC_RELAXED))
        return false;   /* not a slot in service, standing by, or health says down */
    uint64_t until = __atomic_load_n(&h->ejected_until, __ATOMIC_ACQUIRE);
    if (!until)
        return true;
    if (loop->now < until)
        return false;
    /* the cool-down is over: one worker (the one whose exchange wins) ends
     * the ejection for all */
    if (__atomic_compare_exchange_n(&h->ejected_until, &until, 0, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED)) {
        __atomic_store_n(&h->back_at, until, __ATOMIC_RELAXED);
        __atomic_store_n(&h->fails, 0, __ATOMIC_RELAXED);
        __atomic_sub_fetch(g->nejected, 1, __ATOMIC_RELAXED);
    }
    return true;
}

static bool out_of_service(const struct pool_server *s)
{
    return s->down || __atomic_load_n(&s->h->ejected_until, __ATOMIC_RELAXED) ||
           __atomic_load_n(&s->h->down, __ATOMIC_RELAXED);
}

/* At the pool's max_requests: in service, but takes no more for now. */
static bool full(const struct pool_group *g, const struct pool_server *s)
{
    return g->max_requests && s->active >= g->max_requests;
}

/* In service, with room for one more request. */
static bool eligible(struct pool_group *g, struct pool_server *s)
{
    return in_service(g, s) && !full(g, s);
}

bool pool_has_room(struct pool_group *g)
{
    if (!g->max_requests)
        return true;
    for (unsigned i = 0; i < g->nservers; i++)
        if (eligible(g, &g->servers[i]))
            return true;
    return false;
}

bool pool_at_capacity(struct pool_group *g)
{
    if (!g->max_requests)
        return false;
    bool any = false;
    for (unsigned i = 0; i < g->nservers; i++) {
        struct pool_server *s = &g->servers[i];
        if (!in_service(g, s))
            continue;
        if (!full(g, s))
            return false;
        any = true;
    }
    return any;
}

/* a (weight wa now) has fewer connections per unit of weight than b */
static bool lighter(const struct pool_server *a, uint64_t wa, const struct pool_server *b,
                    uint64_t wb)
{
    return (uint64_t)a->active * wb < (uint64_t)b->active * wa;
}

/* Two different servers in service at random (the same one twice when it is
 * the only one); false when none is in service. */
static bool two_at_random(struct pool_group *g, struct pool_server **a, struct pool_server **b)
{
    unsigned live = 0, n = g->nservers;
    for (unsigned i = 0; i < n; i++)
        live += eligible(g, &g->servers[i]);
    if (!live)
        return false;
    unsigned ia = rnd(live), ib = live > 1 ? (ia + 1 + rnd(live - 1)) % live : ia;
    for (unsigned i = 0, k = 0; i < n; i++) {
        if (out_of_service(&g->servers[i]) || full(g, &g->servers[i]))
            continue;
        if (k == ia)
            *a = &g->servers[i];
        if (k == ib)
            *b = &g->servers[i];
        k++;
    }
    return true;
}

struct pool_server *pool_pick(struct pool_group *g)
{
    struct pool_server *best = NULL;
    unsigned n = g->nservers;
    uint64_t now = loop->now;

    if (g->prio)
        pool_standby_sync(g, now);   /* SRV priorities: only the lowest that can serve */
    switch (g->balance) {
    case POOL_ROUND_ROBIN: {
        /* Smooth weighted round-robin: each server gains its weight, the
         * richest is chosen and pays the total, so a 3:1 pool goes a a b a.
         * (Weights in thousandths, so that a slow start's fractions count:
         * at most 64 x 1000 x 1000 in all.) */
        int total = 0;
        for (unsigned i = 0; i < n; i++) {
            struct pool_server *s = &g->servers[i];
            if (!eligible(g, s))
                continue;
            int w = (int)pool_weight_now(s, now);
            s->cur += w;
            total += w;
            if (!best || s->cur > best->cur)
                best = s;
        }
        if (best)
            best->cur -= total;
        return best;
    }
    case POOL_LEAST_CONN: {
        unsigned start = g->rr++;
        uint64_t wbest = 0;
        for (unsigned k = 0; k < n; k++) {
            struct pool_server *s = &g->servers[(start + k) % n];
            if (!eligible(g, s))
                continue;
            uint64_t w = pool_weight_now(s, now);
            if (!best || lighter(s, w, best, wbest)) {
                best = s;
                wbest = w;
            }
        }
        return best;
    }
    case POOL_P2C:
    case POOL_EWMA: {
        /* Two choices at random among those in service, the lighter (or
         * cheaper) wins; a tie is drawn in proportion to their weights. */
        struct pool_server *a = NULL, *b = NULL;
        if (!two_at_random(g, &a, &b))
            return NULL;
        if (a == b)
            return a;
        uint64_t wa = pool_weight_now(a, now), wb = pool_weight_now(b, now);
        if (g->balance == POOL_P2C) {
            if (lighter(a, wa, b, wb))
                return a;
            if (lighter(b, wb, a, wa))
                return b;
        } else {
            double ca = pool_ewma_cost(a, now), cb = pool_ewma_cost(b, now);
            if (ca != cb)
                return ca < cb ? a : b;
        }
        return rnd((unsigned)(wa + wb)) < wa ? a : b;
    }
    }
    return NULL;
}

struct pool_server *pool_pick_other(struct pool_group *g, const struct pool_server *avoid)
{
    struct pool_server *s = NULL;
    for (int k = 0; k < 4; k++) {   /* a few draws: p2c is random */
        s = pool_pick(g);
        if (s != avoid)
            return s;
    }
    /* weights so skewed that the draws keep naming it: the next other
     * server in service, in turn */
    unsigned start = g->rr++;
    for (unsigned k = 0; k < g->nservers; k++) {
        struct pool_server *o = &g->servers[(start + k) % g->nservers];
        if (o != avoid && eligible(g, o))
            return o;
    }
    return s;
}

void pool_set_down(struct pool_server *s, bool down)
{
    struct psh_server *h = s->h;
    if (__atomic_load_n(&h->down, __ATOMIC_RELAXED) && !down)
        __atomic_store_n(&h->back_at, loop->now, __ATOMIC_RELAXED);
    __atomic_store_n(&h->down, down, __ATOMIC_RELEASE);
}

bool pool_is_down(const struct pool_server *s)
{
    return __atomic_load_n(&s->h->down, __ATOMIC_ACQUIRE);
}

/* ---- what attempts tell ----------------------------------------------------- */

/* An ewma pool's latency sample from an attempt's outcome (pool_internal.h). */
static void latency_sample(struct pool_server *s, enum pool_outcome o, enum pool_verdict v,
                           uint64_t started)
{
    uint64_t now = loop->now, dt = now > s->ewma_at ? now - s->ewma_at : 0;
    double took = now > started ? (double)(now - started) : 0.0;
    if (o == POOL_CANCELLED) {
        /* a lower bound of its latency: it can only raise the average */
        if (took <= pool_ewma_decay(s->ewma_ns, dt))
            return;
    } else if ((o != POOL_ANSWERED || v == POOL_FAILURE) && took < (double)POOL_EWMA_PENALTY_NS) {
        took = (double)POOL_EWMA_PENALTY_NS;
    }
    s->ewma_ns = pool_ewma_next(s->ewma_ns, dt, took);
    s->ewma_at = now;
}

void pool_report(struct pool_server *s, enum pool_outcome o, int status, uint64_t started)
{
    if (!s || s->state != POOL_SLOT_IN_SERVICE)
        return;   /* an address of no pool, or a server leaving, keeps no health */
    struct pool_group *g = s->group;
    enum pool_verdict v = pool_verdict(g, o, status);
    if (g->balance == POOL_EWMA)
        latency_sample(s, o, v, started);
    if (v == POOL_NEITHER)
        return;
    /* The record is the generation's: every worker counts into it, and the
     * one whose failure completes the count ejects (a compare-and-swap, so
     * two at once eject once). */
    struct psh_server *h = s->h;
    if (v == POOL_SUCCESS) {
        __atomic_store_n(&h->fails, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->ejections, 0, __ATOMIC_RELAXED);
        return;
    }
    if (__atomic_load_n(&h->ejected_until, __ATOMIC_RELAXED) ||
        __atomic_add_fetch(&h->fails, 1, __ATOMIC_RELAXED) < g->fail_limit)
        return;
    if ((uint64_t)(__atomic_load_n(g->nejected, __ATOMIC_RELAXED) + 1) * 100 >
        (uint64_t)g->max_ejected_percent * g->nlive)
        return;   /* the pool may not lose more of its servers */
    uint32_t ej = __atomic_load_n(&h->ejections, __ATOMIC_RELAXED);
    uint64_t cool = g->ejection_ns << (ej < 20 ? ej : 20), none = 0;
    if (cool > g->max_ejection_ns)
        cool = g->max_ejection_ns;
    if (!__atomic_compare_exchange_n(&h->ejected_until, &none, loop->now + cool, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;   /* another worker ejected it just now */
    __atomic_add_fetch(&h->ejections, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->fails, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(g->nejected, 1, __ATOMIC_RELAXED);
    stats->ejections++;
    log_error("warn", "upstream %s ejected from pool %s for %llu ms after %u failures in a row",
              s->addr->text, g->name, (unsigned long long)(cool / MS), g->fail_limit);
}
