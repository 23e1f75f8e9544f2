/* test_pool.c -- the state a pool keeps for the proxy (src/upstream/pool.h):
 * requests and retries in flight against the retry budget, the queue of
 * requests waiting for a connection slot, connections to an address of no
 * pool, and the slots of servers written as names (joining, leaving, SRV
 * priorities). Pools are built from a configuration file parsed in memory. */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "addr.h"
#include "conf.h"
#include "loop.h"
#include "net.h"
#include "pool.h"
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
    char yaml[1024];
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
    CHECK_EQ_INT(g->retries, 0);
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
    CHECK_EQ_INT(g->requests, 0);
    CHECK_EQ_INT(g->retries, 0);
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
    CHECK_EQ_INT(g->requests, 0);
    CHECK_EQ_INT(g->retries, 0);
    CHECK_EQ_INT(take_all(g, 100), 2);
    release(g, 2);
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
    struct stats_pool gauges[8];
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
    pool_report(NULL, false);
    pool_put_idle(up);   /* never pooled: closed */
    CHECK_EQ_INT(pool_open_count(), before);
    CHECK_EQ_INT(g->servers[0].nidle, 0);
    one_iteration();
}

TEST(gauges_show_what_is_in_flight)
{
    struct pool_group *g = pool_group_find("half");
    struct stats_pool gauges[8];
    unsigned total;
    pool_groups(&total);
    if (!CHECK(g))
        return;
    pool_request_begin(g);
    pool_request_begin(g);
    pool_budget_take(g);
    unsigned n = pool_gauges(gauges, 8), i = index_of(g);
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
    struct stats_pool gauges[8];
    unsigned i = index_of(g);
    pool_gauges(gauges, 8);
    CHECK_EQ_U64(gauges[i].servers, 2);

    pool_report(s, false);   /* one failure ejects (50% of 2 servers) */
    CHECK(s->ejected_until != 0);
    CHECK_EQ_INT(g->nejected, 1);
    pool_slot_leave(s);
    CHECK(s->state == POOL_SLOT_LEAVING && s->down);
    CHECK_EQ_INT(g->nlive, 1);
    CHECK_EQ_INT(g->nejected, 0);   /* its ejection ended with it */
    CHECK_EQ_INT(s->nidle, 0);      /* the idle connection closed */
    CHECK_EQ_INT(s->active, 1);     /* the busy one finishes */
    CHECK(!pool_slot_free(s));
    pool_report(s, false);          /* a leaving server keeps no health */
    CHECK(s->ejected_until == 0 && s->fails == 0);
    for (int k = 0; k < 4; k++)
        CHECK(pool_pick(g) == &g->servers[0]);
    pool_gauges(gauges, 8);
    CHECK_EQ_U64(gauges[i].servers, 1);
    CHECK_EQ_U64(gauges[i].leaving, 1);
    struct sockaddr_storage other = ip("127.0.0.3", 8080);
    CHECK_EQ_INT(pool_slot_join(s, SA(other), 4, 0, NULL), -EBUSY);   /* not free yet */
    pool_put_idle(busy);            /* never pooled again: closed */
    CHECK_EQ_INT(s->nidle, 0);
    CHECK_EQ_INT(s->active, 0);
    CHECK(pool_slot_free(s));
    pool_gauges(gauges, 8);
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
    pool_report(&s[0], false);
    CHECK(pool_pick(g) == &s[1]);
    pool_report(&s[1], false);      /* both of priority 10 ejected */
    CHECK(pool_pick(g) == &s[2]);
    CHECK(pool_pick(g) == &s[2]);
    uint64_t now = L.now;
    L.now += 31000 * MS;            /* their cool-down is over */
    struct pool_server *p = pool_pick(g);
    CHECK(p == &s[0] || p == &s[1]);
    pool_set_health(&s[0], true);   /* active checks: down */
    pool_set_health(&s[1], true);
    CHECK(pool_pick(g) == &s[2]);
    pool_set_health(&s[1], false);
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
    RUN(waiters_leave_in_order);
    RUN(a_waiter_leaves_only_for_a_free_slot);
    RUN(a_connection_to_an_address_of_no_pool);
    RUN(gauges_show_what_is_in_flight);
    RUN(slots_join_and_leave);
    RUN(srv_priorities);
    RUN(teardown);
    return unit_summary("test_pool");
}
