/* admit.c -- admission by the time left (see admit.h). */
#include "admit.h"

#include "observe.h"
#include "pool.h"
#include "px.h"
#include "qest.h"
#include "route.h"

uint64_t admit_left_ms(const struct client *c)
{
    const struct exch *x = &c->s->x;
    uint64_t total = x->lim.ms[TMO_TOTAL];
    if (!total || total >= GRPC_NO_TOTAL_MS)
        return UINT64_MAX;
    uint64_t end = x->clk.start + total * MS, now = px_loop->now;
    return end > now ? (end - now) / MS : 0;
}

bool admit_unmeetable(const struct client *c)
{
    const struct route *r = c->s->x.route;
    if (!r)
        return false;
    return r->min_budget_ms && admit_left_ms(c) < r->min_budget_ms;
}

bool admit_in_time(const struct client *c, uint64_t *left, uint64_t *need)
{
    const struct route *r = c->s->x.route;
    *left = admit_left_ms(c);
    *need = 0;
    if (!r)
        return true;
    if (r->retry && r->retry->min_time_left_ms)
        *need = r->retry->min_time_left_ms;
    else
        *need = qe_quantile(r->latency, 0.5) / MS;
    return *left >= *need;
}

bool admit_hedge_allowed(const struct client *c)
{
    const struct route *r = c->s->x.route;
    return !r || !r->hedge_max_percent || qb_spend(r->hedge_budget);
}

uint64_t admit_hedge_delay_ms(const struct route *r)
{
    if (!r->hedge_permille)
        return r->policy.ms[TMO_HEDGE];
    uint64_t q = qe_quantile(r->latency, (double)r->hedge_permille / 1000.0);
    if (!q)
        return r->hedge_max_ms;   /* no estimate yet */
    uint64_t ms = (q + MS - 1) / MS;   /* (never early: rounded up) */
    return ms < r->hedge_min_ms ? r->hedge_min_ms : ms > r->hedge_max_ms ? r->hedge_max_ms : ms;
}

void admit_observe(const struct route *r, uint64_t started, uint64_t now)
{
    if (r && started && now >= started)
        qe_add(r->latency, now - started, now);
}

/* The exchange's place in its pool's counts of requests and retries in
 * flight, which size the retry budget: counted (X_COUNTED) from its dispatch
 * to its end, and among the retries (X_RETRIED) from its first retry or
 * hedge to its end, once however many attempts it makes. */
void admit_count(struct client *c)
{
    const struct route *r = c->s->x.route;
    if (r && !(c->s->x.flags & X_COUNTED)) {   /* (a forward request: no pool) */
        c->s->x.flags |= X_COUNTED;
        pool_request_begin(r->pool);
        if (r->hedge_max_percent)   /* each request dispatched earns a share of a hedge */
            qb_earn(r->hedge_budget, r->hedge_max_percent);
    }
}

void admit_retry_take(struct client *c)
{
    if (!(c->s->x.flags & X_RETRIED)) {
        c->s->x.flags |= X_RETRIED;
        pool_budget_take(c->s->x.route->pool);
    }
}

void admit_release(struct client *c)
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
void admit_enqueue(struct client *c)
{
    pool_wait_add(c->s->x.route->pool, &c->s->waiter, c);
    c->s->x.flags |= X_WAIT_SLOT;
    obs_queue_enter(c);
}

void admit_dequeue(struct client *c)
{
    if (!c->s || !(c->s->x.flags & X_WAIT_SLOT))
        return;
    pool_wait_remove(&c->s->waiter);
    c->s->x.flags &= ~X_WAIT_SLOT;
    obs_queue_leave(c);
}
