/* test_pool.c -- the state a pool keeps for the proxy (src/upstream/pool.h):
 * requests and retries in flight against the retry budget, the queue of
 * requests waiting for a connection slot, and connections to an address of
 * no pool, the slots of servers written as names (joining, leaving, SRV
 * priorities); and the choice of a server (pool_internal.h): which outcomes
 * passive health counts, the peak-sensitive latency average of balance:
 * ewma, the two random choices, slow start. Pools are built from a
 * configuration file parsed in memory; the pool's clock is the loop's
 * cached one, which the tests set. */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "addr.h"
#include "conf.h"
#include "loop.h"
#include "net.h"
#include "pool.h"
#include "pool_internal.h"
#include "poolshm.h"
#include "pools.h"
#include "stats.h"

static struct loop L;
static struct cfg C;
static int listener = -1;   /* the server of pool "narrow", never answering */

TEST(setup)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    listener = net_listen((const struct sockaddr *)&sa, sizeof sa, 8);
    if (!CHECK(listener >= 0) ||
        !CHECK(getsockname(listener, (struct sockaddr *)&sa, &len) == 0))
        return;
    char yaml[3072];
    int n = snprintf(yaml, sizeof yaml,
                     "pools:\n"
                     "  half:\n"
                     "    servers: [127.0.0.1:9101]\n"
                     "    budget: {percent: 50, min: 2}\n"
                     "  none:\n"
                     "    servers: [127.0.0.1:9201]\n"
                     "    budget: {percent: 0, min: 0}\n"
                     "  narrow:\n"
                     "    servers: [127.0.0.1:%u]\n"
                     "    max_connections: 1\n"
                     "  plain:\n"
                     "    servers: [127.0.0.1:9301, 127.0.0.1:9302]\n"
                     "    health: {passive: {failures: 2, ejection: 1s, max_ejected_percent: 50}}\n"
                     "  statuses:\n"
                     "    servers: [127.0.0.1:9401, 127.0.0.1:9402]\n"
                     "    health: {passive: {failures: 2, ejection: 1s, on: [try_timeout, 5xx, 429]}}\n"
                     "  lat:\n"
                     "    servers: [127.0.0.1:9501, 127.0.0.1:9502, 127.0.0.1:9503]\n"
                     "    balance: ewma\n"
                     "  weighted:\n"
                     "    servers: [{address: 127.0.0.1:9601, weight: 3}, 127.0.0.1:9602]\n"
                     "    balance: p2c\n"
                     "  ramp:\n"
                     "    servers: [127.0.0.1:9701, 127.0.0.1:9702]\n"
                     "    slow_start: 10s\n"
                     "    health: {passive: {failures: 1, ejection: 1s}}\n"
                     "  rampconn:\n"
                     "    servers: [127.0.0.1:9801, 127.0.0.1:9802]\n"
                     "    balance: least_conn\n"
                     "    slow_start: 10s\n"
                     "  dyn:\n"
                     "    servers: [127.0.0.1:9301, {address: dyn.test:80, weight: 4}]\n"
                     "    health: {passive: {failures: 1}}\n"
                     "  prio:\n"
                     "    servers: [{srv: _http._tcp.prio.test}]\n"
                     "    health: {passive: {failures: 1, max_ejected_percent: 100}}\n"
                     "routes:\n"
                     "  - {path: /, pool: half}\n",
                     (unsigned)ntohs(sa.sin_port));
    unit_pools(yaml, (size_t)n, &L, &C);
}

/* Takes retries while the budget allows, up to limit; returns how many. */
static unsigned take_all(struct pool_group *g, unsigned limit)
{
    unsigned n = 0;
    while (n < limit && pool_retry_allowed(g)) {
        pool_budget_take(g);
        n++;
    }
    return n;
}

static void release(struct pool_group *g, unsigned n)
{
    while (n--)
        pool_budget_release(g);
}

static void end_requests(struct pool_group *g, unsigned n)
{
    while (n--)
        pool_request_end(g);
}

TEST(budget_is_min_when_nothing_is_in_flight)
{
    struct pool_group *g = pool_group_find("half");
    if (!CHECK(g))
        return;
    CHECK_EQ_INT(take_all(g, 100), 2);
    CHECK(!pool_retry_allowed(g));
    pool_budget_release(g);
    CHECK(pool_retry_allowed(g));
    release(g, 1);
    CHECK_EQ_INT(psh_sum(g->index).retries, 0);
}

TEST(budget_grows_with_requests_in_flight)
{
    struct pool_group *g = pool_group_find("half");
    if (!CHECK(g))
        return;
    for (int i = 0; i < 10; i++)
        pool_request_begin(g);
    CHECK_EQ_INT(take_all(g, 100), 5);   /* max(2, 50% of 10) */
    end_requests(g, 4);                  /* 6 in flight: a cap of 3, 5 in use */
    CHECK(!pool_retry_allowed(g));
    release(g, 2);
    CHECK(!pool_retry_allowed(g));       /* 3 of 3 */
    pool_budget_release(g);
    CHECK(pool_retry_allowed(g));
    end_requests(g, 1);                  /* 5 in flight: 50% rounds down to 2 */
    CHECK(!pool_retry_allowed(g));
    release(g, 2);
    end_requests(g, 5);
    CHECK_EQ_INT(psh_sum(g->index).requests, 0);
    CHECK_EQ_INT(psh_sum(g->index).retries, 0);
    CHECK_EQ_INT(take_all(g, 100), 2);   /* back to min */
    release(g, 2);
}

TEST(zero_budget_never_allows)
{
    struct pool_group *g = pool_group_find("none");
    if (!CHECK(g))
        return;
    CHECK(!pool_retry_allowed(g));
    for (int i = 0; i < 1000; i++)
        pool_request_begin(g);
    CHECK(!pool_retry_allowed(g));
    end_requests(g, 1000);
}

TEST(an_end_without_a_begin_does_not_wrap)
{
    struct pool_group *g = pool_group_find("half");
    if (!CHECK(g))
        return;
    pool_request_end(g);     /* a caller's bug: logged, and the count stays */
    pool_budget_release(g);
    CHECK_EQ_INT(psh_sum(g->index).requests, 0);
    CHECK_EQ_INT(psh_sum(g->index).retries, 0);
    CHECK_EQ_INT(take_all(g, 100), 2);
    release(g, 2);
}

/* Two workers of one generation count into one shared area: the budget is
 * theirs together, and a worker that replaces one starts its row at zero. */
TEST(budget_shared_by_workers)
{
    struct pool_group *g = pool_group_find("half");
    if (!CHECK(g) || !CHECK_EQ_INT(psh_share(), 0))
        return;
    int area = psh_area_claim(7);
    CHECK(area >= 0);
    psh_attach(area, 0, 2);              /* worker 0 */
    CHECK_EQ_INT(take_all(g, 100), 2);   /* the min, all of it */
    psh_attach(area, 1, 2);              /* worker 1: sees worker 0's retries */
    CHECK(!pool_retry_allowed(g));
    CHECK_EQ_INT(psh_sum(g->index).retries, 2);
    for (int i = 0; i < 10; i++)         /* worker 1's requests grow the cap */
        pool_request_begin(g);
    CHECK_EQ_INT(take_all(g, 100), 3);   /* max(2, 50% of 10) = 5, 2 in use */
    CHECK_EQ_INT(psh_sum(g->index).retries, 5);
    psh_attach(area, 0, 2);              /* worker 0 died; its replacement */
    CHECK_EQ_INT(psh_sum(g->index).retries, 3);
    CHECK_EQ_INT(psh_sum(g->index).requests, 10);
    psh_attach(area, 1, 2);              /* and worker 1's: the area is clean */
    CHECK_EQ_INT(psh_sum(g->index).retries, 0);
    CHECK_EQ_INT(psh_sum(g->index).requests, 0);
    psh_area_drop(area, 7);
    CHECK_EQ_INT(psh_area_claim(8), area);   /* free again, and zeroed */
    psh_area_drop(area, 8);
    psh_attach(-1, 0, 1);                /* back to a private area */
}

TEST(waiters_leave_in_order)
{
    struct pool_group *g = pool_group_find("half");   /* unlimited: always a slot */
    struct pool_waiter w[4] = {{0}};
    int owners[4];
    if (!CHECK(g))
        return;
    CHECK(pool_wait_next(g) == NULL);   /* nobody waits */
    for (int i = 0; i < 4; i++)
        pool_wait_add(g, &w[i], &owners[i]);
    CHECK_EQ_INT(g->nwaiting, 4);
    pool_wait_remove(&w[1]);            /* the middle */
    pool_wait_remove(&w[1]);            /* no longer waiting: nothing */
    CHECK(w[1].group == NULL);
    pool_wait_remove(&w[3]);            /* the tail */
    CHECK_EQ_INT(g->nwaiting, 2);
    struct pool_waiter *a = pool_wait_next(g), *b = pool_wait_next(g);
    CHECK(a == &w[0] && a->owner == &owners[0] && a->group == NULL);
    CHECK(b == &w[2] && b->owner == &owners[2]);
    CHECK(pool_wait_next(g) == NULL);
    CHECK(g->wait_head == NULL && g->wait_tail == NULL);
    CHECK_EQ_INT(g->nwaiting, 0);
    pool_wait_add(g, &w[0], &owners[0]);   /* a node is reusable */
    pool_wait_add(g, &w[1], &owners[1]);
    pool_wait_remove(&w[0]);               /* the head */
    CHECK(pool_wait_next(g) == &w[1]);
    CHECK(g->wait_head == NULL && g->wait_tail == NULL);
}

static void on_stop(struct timer *t)
{
    (void)t;
    L.stop = 1;
}

static void on_event(struct upconn *up, uint32_t events)
{
    (void)up;
    (void)events;
}

/* The index of g in pool_groups() order (that of the gauges). */
static unsigned index_of(const struct pool_group *g)
{
    unsigned n;
    return (unsigned)(g - pool_groups(&n));
}

/* One loop iteration: the deferred releases of closed connections run. */
static void one_iteration(void)
{
    struct timer stop;
    timer_init(&stop, on_stop);
    loop_timer_at(&L, &stop, loop_clock_ns());
    L.stop = 0;
    loop_run(&L);
    L.stop = 0;
}

TEST(a_waiter_leaves_only_for_a_free_slot)
{
    struct pool_group *g = pool_group_find("narrow");
    struct pool_waiter w = {0};
    int owner, err = 0;
    if (!CHECK(g))
        return;
    struct upconn *up = pool_connect(&g->servers[0], &owner, on_event, &err);
    if (!CHECK(up != NULL))
        return;
    CHECK_EQ_INT(pool_slots_free(g), 0);
    pool_wait_add(g, &w, &owner);
    CHECK(pool_wait_next(g) == NULL);   /* full: it stays queued */
    CHECK(w.group == g);
    struct stats_pool gauges[16];
    unsigned n = pool_gauges(gauges, 8), i = index_of(g);
    if (CHECK(i < n))
        CHECK_EQ_U64(gauges[i].waiting, 1);
    pool_close(up);
    CHECK(pool_wait_next(g) == &w);
    CHECK_EQ_INT(g->nwaiting, 0);
    one_iteration();
}

/* The forward proxy's destinations: a connection to an address of no pool
 * counts in no pool, has no TLS, and is closed rather than pooled; the
 * functions that take an attempt's server take NULL for it. */
TEST(a_connection_to_an_address_of_no_pool)
{
    struct pool_group *g = pool_group_find("narrow");
    int owner, err = 0;
    if (!CHECK(g))
        return;
    struct cli_addr a = *g->servers[0].addr;   /* narrow's server, reached as no pool's */
    unsigned before = pool_open_count();
    struct upconn *up = pool_connect_addr(&a, &owner, on_event, &err);
    if (!CHECK(up != NULL))
        return;
    CHECK(up->srv == NULL && up->conn.ssl == NULL && up->owner == &owner);
    CHECK_EQ_INT(pool_open_count(), before + 1);
    CHECK_EQ_INT(g->open, 0);
    CHECK_EQ_INT(g->servers[0].active, 0);
    CHECK(pool_may_connect(NULL));
    CHECK(pool_take_idle(NULL, &owner, on_event) == NULL);
    pool_report(NULL, POOL_RESET, 0, 0);
    pool_put_idle(up);   /* never pooled: closed */
    CHECK_EQ_INT(pool_open_count(), before);
    CHECK_EQ_INT(g->servers[0].nidle, 0);
    one_iteration();
}

TEST(gauges_show_what_is_in_flight)
{
    struct pool_group *g = pool_group_find("half");
    struct stats_pool gauges[16];
    unsigned total;
    pool_groups(&total);
    if (!CHECK(g))
        return;
    pool_request_begin(g);
    pool_request_begin(g);
    pool_budget_take(g);
    unsigned n = pool_gauges(gauges, 16), i = index_of(g);
    CHECK_EQ_INT(n, total);
    if (CHECK(i < n)) {
        CHECK_EQ_U64(gauges[i].requests, 2);
        CHECK_EQ_U64(gauges[i].retries, 1);
        CHECK_EQ_U64(gauges[i].waiting, 0);
    }
    CHECK_EQ_INT(pool_gauges(gauges, 1), 1);   /* no more than asked for */
    pool_budget_release(g);
    end_requests(g, 2);
}

/* ---- the choice of a server ------------------------------------------------ */

static bool near(double got, double want, double tolerance, const char *what)
{
    if (fabs(got - want) <= tolerance)
        return true;
    fprintf(stderr, "    %s: got %.6g, want %.6g (within %.3g)\n", what, got, want, tolerance);
    return false;
}

/* Moves the pools' clock on, past the cool-downs and slow starts of earlier tests. */
static void later(uint64_t ns)
{
    L.now += ns;
}

TEST(outcomes_that_count)
{
    struct pool_group *p = pool_group_find("plain"), *st = pool_group_find("statuses");
    if (!CHECK(p && st))
        return;
    /* the default: connect failures, resets and read timeouts */
    CHECK_EQ_INT(pool_verdict(p, POOL_CONNECT_FAILED, 0), POOL_FAILURE);
    CHECK_EQ_INT(pool_verdict(p, POOL_RESET, 0), POOL_FAILURE);
    CHECK_EQ_INT(pool_verdict(p, POOL_READ_TIMEOUT, 0), POOL_FAILURE);
    CHECK_EQ_INT(pool_verdict(p, POOL_TRY_TIMEOUT, 0), POOL_NEITHER);
    CHECK_EQ_INT(pool_verdict(p, POOL_ANSWERED, 200), POOL_SUCCESS);
    CHECK_EQ_INT(pool_verdict(p, POOL_ANSWERED, 503), POOL_SUCCESS);   /* 5xx not listed */
    CHECK_EQ_INT(pool_verdict(p, POOL_CANCELLED, 0), POOL_NEITHER);
    /* on: [try_timeout, 5xx, 429] */
    CHECK_EQ_INT(pool_verdict(st, POOL_CONNECT_FAILED, 0), POOL_NEITHER);
    CHECK_EQ_INT(pool_verdict(st, POOL_RESET, 0), POOL_NEITHER);
    CHECK_EQ_INT(pool_verdict(st, POOL_READ_TIMEOUT, 0), POOL_NEITHER);
    CHECK_EQ_INT(pool_verdict(st, POOL_TRY_TIMEOUT, 0), POOL_FAILURE);
    CHECK_EQ_INT(pool_verdict(st, POOL_ANSWERED, 500), POOL_FAILURE);
    CHECK_EQ_INT(pool_verdict(st, POOL_ANSWERED, 599), POOL_FAILURE);
    CHECK_EQ_INT(pool_verdict(st, POOL_ANSWERED, 429), POOL_FAILURE);
    CHECK_EQ_INT(pool_verdict(st, POOL_ANSWERED, 404), POOL_SUCCESS);
    CHECK_EQ_INT(pool_verdict(st, POOL_ANSWERED, 101), POOL_SUCCESS);
    CHECK_EQ_INT(pool_verdict(st, POOL_CANCELLED, 0), POOL_NEITHER);
}

/* Failures in a row eject; a success resets the count; an outcome that is
 * neither leaves it alone. */
TEST(statuses_eject_and_neither_keeps_the_count)
{
    struct pool_group *g = pool_group_find("statuses");
    if (!CHECK(g))
        return;
    struct pool_server *a = &g->servers[0];
    later(3600 * 1000 * MS);
    pool_report(a, POOL_ANSWERED, 503, L.now);
    pool_report(a, POOL_ANSWERED, 200, L.now);    /* a success: back to 0 */
    pool_report(a, POOL_ANSWERED, 503, L.now);
    CHECK_EQ_INT(a->h->fails, 1);
    pool_report(a, POOL_CONNECT_FAILED, 0, L.now);   /* not listed: neither */
    pool_report(a, POOL_CANCELLED, 0, L.now);
    CHECK_EQ_INT(a->h->fails, 1);
    CHECK(a->h->ejected_until == 0);
    pool_report(a, POOL_ANSWERED, 429, L.now);    /* the second in a row */
    CHECK_EQ_U64(a->h->ejected_until, L.now + 1000 * MS);
    for (int i = 0; i < 4; i++)
        CHECK(pool_pick(g) == &g->servers[1]);
    later(1000 * MS);                               /* the cool-down is over */
    int seen = 0;
    for (int i = 0; i < 4; i++)
        seen += pool_pick(g) == a;
    CHECK(seen > 0);
    pool_report(a, POOL_ANSWERED, 200, L.now);
    CHECK_EQ_INT(a->h->ejections, 0);
}

TEST(peak_ewma_math)
{
    const double ms = (double)MS, tau = (double)POOL_EWMA_TAU_NS;
    CHECK(near(pool_ewma_decay(100 * ms, 0), 100 * ms, 1, "no time, no decay"));
    CHECK(near(pool_ewma_decay(100 * ms, POOL_EWMA_TAU_NS), 100 * ms * exp(-1.0), 1, "one tau"));
    CHECK(near(pool_ewma_next(0, 0, 5 * ms), 5 * ms, 1, "a first sample is taken whole"));
    CHECK(near(pool_ewma_next(5 * ms, 1000 * MS, 500 * ms), 500 * ms, 1, "a peak at once"));
    CHECK(near(pool_ewma_next(500 * ms, 0, 5 * ms), 500 * ms, 1,
               "a lower sample at the same instant moves nothing"));
    double w = exp(-1.0);
    CHECK(near(pool_ewma_next(500 * ms, POOL_EWMA_TAU_NS, 5 * ms), 500 * ms * w + 5 * ms * (1 - w),
               1, "one tau later, a lower sample pulls"));
    /* a steady latency stays where it is, whatever the rate of samples */
    double avg = 20 * ms;
    for (int i = 0; i < 1000; i++)
        avg = pool_ewma_next(avg, 7 * MS, 20 * ms);
    CHECK(near(avg, 20 * ms, 1e-3 * ms, "steady"));
    /* down from a 500 ms peak to 5 ms samples every 10 ms: after 10 s, about
     * 5 + 495/e ms (the time constant), after 60 s nearly 5 ms */
    avg = 500 * ms;
    for (int i = 0; i < 1000; i++)
        avg = pool_ewma_next(avg, 10 * MS, 5 * ms);
    CHECK(near(avg, 5 * ms + 495 * ms * exp(-10000 * ms / tau), 0.01 * ms, "10 s of 5 ms"));
}

TEST(slow_start_ramp)
{
    const uint64_t d = 10000 * MS, t0 = 5000 * MS;
    CHECK_EQ_INT(pool_ramp_permille(t0, t0, 0), 1000);   /* no slow start */
    CHECK_EQ_INT(pool_ramp_permille(t0, t0, d), POOL_RAMP_FIRST);
    CHECK_EQ_INT(pool_ramp_permille(t0, t0 - 1, d), POOL_RAMP_FIRST);
    CHECK_EQ_INT(pool_ramp_permille(t0, t0 + d / 2, d), 550);
    CHECK_EQ_INT(pool_ramp_permille(t0, t0 + d / 4, d), 325);
    CHECK_EQ_INT(pool_ramp_permille(t0, t0 + d - 1, d), 999);
    CHECK_EQ_INT(pool_ramp_permille(t0, t0 + d, d), 1000);
    CHECK_EQ_INT(pool_ramp_permille(t0, t0 + 5 * d, d), 1000);
}

/* Round-robin during a slow start: the server back from its ejection gets
 * its effective weight's share, in thousandths: 100 of 1100 at first, 550
 * of 1550 halfway, half at the end. */
TEST(slow_start_round_robin_shares)
{
    struct pool_group *g = pool_group_find("ramp");
    if (!CHECK(g))
        return;
    struct pool_server *a = &g->servers[0];
    later(3600 * 1000 * MS);
    pool_report(a, POOL_RESET, 0, L.now);   /* failures: 1 */
    if (!CHECK(a->h->ejected_until != 0))
        return;
    L.now = a->h->ejected_until;
    int got = 0;
    for (int i = 0; i < 1100; i++)
        got += pool_pick(g) == a;
    CHECK(got >= 99 && got <= 101);
    CHECK_EQ_U64(a->h->back_at, L.now);
    L.now = a->h->back_at + 5000 * MS;
    got = 0;
    for (int i = 0; i < 1550; i++)
        got += pool_pick(g) == a;
    CHECK(got >= 549 && got <= 551);
    L.now = a->h->back_at + 10000 * MS;
    got = 0;
    for (int i = 0; i < 1000; i++)
        got += pool_pick(g) == a;
    CHECK(got >= 499 && got <= 501);
}

/* least_conn counts connections per unit of effective weight, and an active
 * health check putting a server back starts its slow start. */
TEST(slow_start_least_conn_and_active_health)
{
    struct pool_group *g = pool_group_find("rampconn");
    if (!CHECK(g))
        return;
    struct pool_server *a = &g->servers[0], *b = &g->servers[1];
    later(3600 * 1000 * MS);
    pool_set_down(a, true);
    CHECK(pool_pick(g) == b);
    pool_set_down(a, false);
    CHECK_EQ_U64(a->h->back_at, L.now);
    a->active = b->active = 1;   /* the same load: b, at full weight, is lighter */
    for (int i = 0; i < 4; i++)
        CHECK(pool_pick(g) == b);
    b->active = 9;               /* 1 per 100 against 9 per 1000 */
    CHECK(pool_pick(g) == b);
    b->active = 11;
    CHECK(pool_pick(g) == a);
    L.now += 10000 * MS;         /* ramped: 1 against 11 */
    CHECK(pool_pick(g) == a);
    a->active = b->active = 0;
}

/* p2c: a tie (no connection in use) is drawn in proportion to the weights. */
TEST(p2c_ties_follow_the_weights)
{
    struct pool_group *g = pool_group_find("weighted");
    if (!CHECK(g))
        return;
    pool_rng_seed(12345);
    int heavy = 0;
    for (int i = 0; i < 4000; i++)
        heavy += pool_pick(g) == &g->servers[0];
    CHECK(heavy > 2800 && heavy < 3200);   /* 3000 expected */
    if (heavy <= 2800 || heavy >= 3200)
        fprintf(stderr, "    heavy: %d of 4000\n", heavy);
}

/* ewma: latency x (in use + 1), of two at random; failures are penalised,
 * cancelled attempts only raise, and an unused average decays. */
TEST(ewma_prefers_the_fast_and_forgets)
{
    struct pool_group *g = pool_group_find("lat");
    if (!CHECK(g))
        return;
    struct pool_server *f1 = &g->servers[0], *f2 = &g->servers[1], *slow = &g->servers[2];
    pool_rng_seed(777);
    later(3600 * 1000 * MS);
    /* no sample yet: all at the floor, ties drawn evenly */
    int n[3] = {0};
    for (int i = 0; i < 3000; i++)
        n[pool_pick(g) - g->servers]++;
    CHECK(n[0] > 800 && n[1] > 800 && n[2] > 800);
    pool_report(f1, POOL_ANSWERED, 200, L.now - 5 * MS);
    pool_report(f2, POOL_ANSWERED, 200, L.now - 5 * MS);
    pool_report(slow, POOL_ANSWERED, 200, L.now - 500 * MS);
    CHECK(near(slow->ewma_ns, 500.0 * MS, 1, "slow's first sample"));
    CHECK(near(pool_ewma_cost(f1, L.now), 5.0 * MS, 1, "cost of f1"));
    for (int i = 0; i < 300; i++)
        CHECK(pool_pick(g) != slow);   /* it always meets a faster one */
    /* connections in use count: f1 with 200 costs 5 x 201 ms, more than slow */
    f1->active = 200;
    int to_slow = 0, to_f1 = 0;
    for (int i = 0; i < 300; i++) {
        struct pool_server *s = pool_pick(g);
        to_slow += s == slow;
        to_f1 += s == f1;
    }
    CHECK(to_f1 == 0 && to_slow > 50);   /* slow when drawn with f1 (a third) */
    f1->active = 0;
    /* a failure counts as at least the penalty */
    pool_report(f2, POOL_RESET, 0, L.now - 1 * MS);
    CHECK(near(f2->ewma_ns, (double)POOL_EWMA_PENALTY_NS, 1, "penalty"));
    /* a cancelled attempt is a lower bound: it raises only */
    pool_report(f1, POOL_CANCELLED, 0, L.now - 2 * MS);
    CHECK(near(f1->ewma_ns, 5.0 * MS, 1, "cancelled below the average"));
    pool_report(f1, POOL_CANCELLED, 0, L.now - 80 * MS);
    CHECK(near(f1->ewma_ns, 80.0 * MS, 1, "cancelled above the average"));
    /* a minute without samples: slow's 500 ms has decayed to 500 / e^6 =
     * 1.2 ms, just above the floor where the others are; half a minute more
     * and it is at the floor too: a server avoided for its latency is tried
     * again */
    L.now += 60000 * MS;
    CHECK(near(pool_ewma_cost(slow, L.now), 500.0 * MS * exp(-6.0), 1000, "slow decayed"));
    CHECK(near(pool_ewma_cost(f1, L.now), (double)POOL_EWMA_FLOOR_NS, 1, "f1 at the floor"));
    L.now += 30000 * MS;
    int seen = 0;
    for (int i = 0; i < 300; i++)
        seen += pool_pick(g) == slow;
    CHECK(seen > 60);   /* 100 expected */
}

TEST(teardown)
{
    pool_free_structs();
    loop_free(&L);
    if (listener >= 0)
        close(listener);
    conf_free(C.conf);
}

static struct sockaddr_storage ip(const char *a, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (addr_parse_ip(a, strlen(a), &ss) != 1)
        abort();
    addr_set_port(&ss, port);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* A name's slots: unused until its answer; in service, picked; leaving,
 * never picked, its idle connections closed, its health kept no more; and
 * free once nothing refers to it. */
TEST(slots_join_and_leave)
{
    struct pool_group *g = pool_group_find("dyn");
    if (!CHECK(g) || !CHECK_EQ_INT(g->nnames, 1))
        return;
    CHECK_EQ_INT(g->nservers, 1 + POOL_NAME_SLOTS);
    CHECK_EQ_INT(g->nlive, 1);
    CHECK_EQ_STR(g->names[0].at->text, "dyn.test:80");
    CHECK_EQ_INT(g->names[0].weight, 4);
    unsigned ns;
    struct pool_server *slots = pool_name_slots(g, &g->names[0], &ns), *s = &slots[0];
    CHECK_EQ_INT(ns, POOL_NAME_SLOTS);
    CHECK(s == &g->servers[1] && s->state == POOL_SLOT_UNUSED && s->down);
    for (int i = 0; i < 4; i++)
        CHECK(pool_pick(g) == &g->servers[0]);   /* no answer yet: only the literal */

    struct sockaddr_in la;
    socklen_t len = sizeof la;
    getsockname(listener, (struct sockaddr *)&la, &len);
    struct sockaddr_storage at;
    memcpy(&at, &la, sizeof la);
    pool_slot_join(s, SA(at), 4, 0, NULL);
    CHECK(s->state == POOL_SLOT_IN_SERVICE && !s->down);
    CHECK_EQ_INT(g->nlive, 2);
    CHECK_EQ_INT(s->weight, 4);
    CHECK(pool_slot_has(s, SA(at)));
    unsigned picked = 0;
    for (int i = 0; i < 10; i++)
        picked += pool_pick(g) == s;
    CHECK_EQ_INT(picked, 8);   /* 4:1 */

    /* an idle connection, and one owned by an exchange */
    int owner, err = 0;
    struct upconn *idle = pool_connect(s, &owner, on_event, &err);
    struct upconn *busy = pool_connect(s, &owner, on_event, &err);
    if (!CHECK(idle && busy))
        return;
    pool_put_idle(idle);
    CHECK_EQ_INT(s->nidle, 1);
    CHECK_EQ_INT(s->active, 1);
    struct stats_pool gauges[16];
    unsigned i = index_of(g);
    pool_gauges(gauges, 16);
    CHECK_EQ_U64(gauges[i].servers, 2);

    pool_report(s, POOL_RESET, 0, L.now);   /* one failure ejects (50% of 2 servers) */
    CHECK(s->h->ejected_until != 0);
    CHECK_EQ_INT(*g->nejected, 1);
    pool_slot_leave(s);
    CHECK(s->state == POOL_SLOT_LEAVING && s->down);
    CHECK_EQ_INT(g->nlive, 1);
    CHECK_EQ_INT(*g->nejected, 0);   /* its ejection ended with it */
    CHECK_EQ_INT(s->nidle, 0);      /* the idle connection closed */
    CHECK_EQ_INT(s->active, 1);     /* the busy one finishes */
    CHECK(!pool_slot_free(s));
    pool_report(s, POOL_RESET, 0, L.now);   /* a leaving server keeps no health */
    CHECK(s->h->ejected_until == 0 && s->h->fails == 0);
    for (int k = 0; k < 4; k++)
        CHECK(pool_pick(g) == &g->servers[0]);
    pool_gauges(gauges, 16);
    CHECK_EQ_U64(gauges[i].servers, 1);
    CHECK_EQ_U64(gauges[i].leaving, 1);
    struct sockaddr_storage other = ip("127.0.0.3", 8080);
    CHECK_EQ_INT(pool_slot_join(s, SA(other), 4, 0, NULL), -EBUSY);   /* not free yet */
    pool_put_idle(busy);            /* never pooled again: closed */
    CHECK_EQ_INT(s->nidle, 0);
    CHECK_EQ_INT(s->active, 0);
    CHECK(pool_slot_free(s));
    pool_gauges(gauges, 16);
    CHECK_EQ_U64(gauges[i].leaving, 0);   /* free: gone */

    /* a free slot takes another address */
    CHECK_EQ_INT(pool_slot_join(s, SA(other), 4, 0, NULL), 0);
    CHECK_EQ_INT(pool_slot_join(s, SA(other), 4, 0, NULL), -EBUSY);   /* in service */
    CHECK_EQ_STR(s->addr->text, "127.0.0.3:8080");
    CHECK(!pool_slot_has(s, SA(at)));
    CHECK_EQ_INT(g->nlive, 2);
    pool_slot_leave(s);
    CHECK_EQ_INT(g->nlive, 1);
    one_iteration();
}

/* SRV priorities: only the lowest priority with a server able to serve
 * takes traffic; ejected or down, the next one does. */
TEST(srv_priorities)
{
    struct pool_group *g = pool_group_find("prio");
    if (!CHECK(g) || !CHECK(g->prio))
        return;
    unsigned ns;
    struct pool_server *s = pool_name_slots(g, &g->names[0], &ns);
    struct sockaddr_storage a = ip("127.0.0.1", 1001), b = ip("127.0.0.1", 1002),
                            c = ip("127.0.0.1", 1003);
    pool_slot_join(&s[0], SA(a), 1, 10, "a.test");
    pool_slot_join(&s[1], SA(b), 1, 10, "b.test");
    pool_slot_join(&s[2], SA(c), 5, 20, "c.test");
    CHECK(s[0].tls_host == NULL);   /* (no TLS on this pool: no name kept) */
    unsigned n[3] = {0};
    for (int i = 0; i < 12; i++) {
        struct pool_server *p = pool_pick(g);
        for (int k = 0; k < 3; k++)
            n[k] += p == &s[k];
    }
    CHECK_EQ_INT(n[0], 6);
    CHECK_EQ_INT(n[1], 6);
    CHECK_EQ_INT(n[2], 0);
    pool_report(&s[0], POOL_RESET, 0, L.now);
    CHECK(pool_pick(g) == &s[1]);
    pool_report(&s[1], POOL_RESET, 0, L.now);   /* both of priority 10 ejected */
    CHECK(pool_pick(g) == &s[2]);
    CHECK(pool_pick(g) == &s[2]);
    uint64_t now = L.now;
    L.now += 31000 * MS;            /* their cool-down is over */
    struct pool_server *p = pool_pick(g);
    CHECK(p == &s[0] || p == &s[1]);
    pool_set_down(&s[0], true);   /* active checks: down */
    pool_set_down(&s[1], true);
    CHECK(pool_pick(g) == &s[2]);
    pool_set_down(&s[1], false);
    CHECK(pool_pick(g) == &s[1]);
    pool_slot_leave(&s[1]);         /* gone from the answer */
    CHECK(pool_pick(g) == &s[2]);
    L.now = now;
    for (int k = 0; k < 3; k++)
        pool_slot_leave(&s[k]);
    CHECK(pool_pick(g) == NULL);
    CHECK_EQ_INT(g->nlive, 0);
}

int main(void)
{
    RUN(setup);
    RUN(budget_is_min_when_nothing_is_in_flight);
    RUN(budget_grows_with_requests_in_flight);
    RUN(zero_budget_never_allows);
    RUN(an_end_without_a_begin_does_not_wrap);
    RUN(budget_shared_by_workers);
    RUN(waiters_leave_in_order);
    RUN(a_waiter_leaves_only_for_a_free_slot);
    RUN(a_connection_to_an_address_of_no_pool);
    RUN(gauges_show_what_is_in_flight);
    RUN(outcomes_that_count);
    RUN(statuses_eject_and_neither_keeps_the_count);
    RUN(peak_ewma_math);
    RUN(slow_start_ramp);
    RUN(slow_start_round_robin_shares);
    RUN(slow_start_least_conn_and_active_health);
    RUN(p2c_ties_follow_the_weights);
    RUN(ewma_prefers_the_fast_and_forgets);
    RUN(slots_join_and_leave);
    RUN(srv_priorities);
    RUN(teardown);
    return unit_summary("test_pool");
}
