/* test_route.c -- route matching (src/proxy/route.h) and server choice (src/upstream/pool.h),
 * built from a configuration file parsed in memory. */
#include "unit.h"

#include <string.h>

#include "cli.h"
#include "conf.h"
#include "loop.h"
#include "pool.h"
#include "pools.h"
#include "route.h"

static const char yaml[] =
    "pools:\n"
    "  web:\n"
    "    servers: [127.0.0.1:9101]\n"
    "  api:\n"
    "    servers:\n"
    "      - {address: 127.0.0.1:9201, weight: 3}\n"
    "      - {address: 127.0.0.1:9202, weight: 1}\n"
    "    health: {passive: {failures: 2, ejection: 1s, max_ejection: 4s, max_ejected_percent: 50}}\n"
    "  wild:\n"
    "    servers: [127.0.0.1:9301]\n"
    "routes:\n"
    "  - {path: /, pool: web}\n"
    "  - {path: /api, pool: api, timeouts: {read: 250ms}}\n"
    "  - {path: /api/v2/slow, pool: web}\n"
    "  - {host: '*.example.com', path: /, pool: wild}\n"
    "  - {host: exact.example.com, path: /, pool: api}\n"
    "  - {path: /hedged, pool: web, hedge: {delay: 40ms},\n"
    "     retry: {attempts: 2, per_try_timeout: 300ms}, timeouts: {total: 9s}}\n"
    "  - {path: /one-try, pool: web, retry: {attempts: 1, per_try_timeout: 300ms}}\n";

static struct loop L;
static struct cfg C;

static const char *pool_for(const char *host, const char *target)
{
    const struct route *r = route_match(host, host ? strlen(host) : 0, target, strlen(target));
    return r ? r->pool->name : "(none)";
}

TEST(setup)
{
    if (unit_pools(yaml, sizeof yaml - 1, &L, &C))
        CHECK_EQ_INT(route_init(&C), 0);
}

TEST(longest_path_prefix)
{
    CHECK_EQ_STR(pool_for("h", "/"), "web");
    CHECK_EQ_STR(pool_for("h", "/index.html"), "web");
    CHECK_EQ_STR(pool_for("h", "/api"), "api");
    CHECK_EQ_STR(pool_for("h", "/api/users?x=/api/v2/slow"), "api");   /* query ignored */
    CHECK_EQ_STR(pool_for("h", "/apix"), "api");                        /* plain prefix */
    CHECK_EQ_STR(pool_for("h", "/api/v2/slow/1"), "web");
    CHECK_EQ_STR(pool_for(NULL, "/api"), "api");
}

TEST(host_classes)
{
    CHECK_EQ_STR(pool_for("a.example.com", "/api"), "wild");   /* host first, then path */
    CHECK_EQ_STR(pool_for("A.B.Example.COM:8080", "/"), "wild");
    CHECK_EQ_STR(pool_for("example.com", "/"), "web");         /* not *.example.com */
    CHECK_EQ_STR(pool_for("exact.example.com", "/"), "api");   /* exact beats wildcard */
    CHECK_EQ_STR(pool_for("[::1]:8080", "/api"), "api");
}

TEST(route_timeouts_override_key_by_key)
{
    const struct route *r = route_match("h", 1, "/api", 4);
    CHECK_EQ_U64(r->policy.ms[TMO_READ], 250);
    CHECK_EQ_U64(r->policy.ms[TMO_TOTAL], C.ms[TMO_TOTAL]);
    CHECK_EQ_U64(r->policy.ms[TMO_CONNECT], C.ms[TMO_CONNECT]);
    CHECK_EQ_U64(r->policy.ms[TMO_HEADER], C.ms[TMO_HEADER]);   /* runs before a route */
    CHECK_EQ_U64(r->policy.ms[TMO_TRY], 0);
    CHECK_EQ_U64(r->policy.ms[TMO_HEDGE], 0);
}

/* The policy holds every duration of a route by kind: the per-try timeout
 * (only while a retry policy is in force: 2 attempts or more) and the hedge
 * delay too. */
TEST(route_policy_by_kind)
{
    const struct route *r = route_match("h", 1, "/hedged/x", 9);
    if (!CHECK(r != NULL))
        return;
    CHECK_EQ_U64(r->policy.ms[TMO_TOTAL], 9000);
    CHECK_EQ_U64(r->policy.ms[TMO_TRY], 300);
    CHECK_EQ_U64(r->policy.ms[TMO_HEDGE], 40);
    CHECK_EQ_U64(r->policy.ms[TMO_BACKOFF], 0);
    CHECK_EQ_U64(r->policy.ms[TMO_READ], C.ms[TMO_READ]);
    r = route_match("h", 1, "/one-try", 8);
    if (CHECK(r != NULL) && CHECK(r->retry == NULL))
        CHECK_EQ_U64(r->policy.ms[TMO_TRY], 0);
}

TEST(smooth_weighted_round_robin)
{
    struct pool_group *g = pool_group_find("api");
    char seq[9] = {0};
    for (int i = 0; i < 8; i++)
        seq[i] = pool_pick(g) == &g->servers[0] ? 'A' : 'B';
    CHECK_EQ_STR(seq, "AABAAABA");
}

TEST(passive_ejection_respects_share)
{
    struct pool_group *g = pool_group_find("api");
    struct pool_server *a = &g->servers[0], *b = &g->servers[1];
    pool_report(a, POOL_RESET, 0, L.now);
    CHECK(a->h->ejected_until == 0);            /* one failure of two */
    pool_report(a, POOL_RESET, 0, L.now);
    CHECK(a->h->ejected_until != 0);            /* ejected */
    for (int i = 0; i < 4; i++)
        CHECK(pool_pick(g) == b);            /* only b in service */
    pool_report(b, POOL_RESET, 0, L.now);
    pool_report(b, POOL_RESET, 0, L.now);
    CHECK(b->h->ejected_until == 0);            /* 50%: b must stay */
    CHECK(pool_pick(g) == b);
    L.now = a->h->ejected_until;                /* cool-down over */
    int seen_a = 0;
    for (int i = 0; i < 4; i++)
        seen_a += pool_pick(g) == a;
    CHECK(seen_a > 0);
    pool_report(a, POOL_RESET, 0, L.now);
    pool_report(a, POOL_RESET, 0, L.now);   /* second ejection in a row: 2 s */
    CHECK_EQ_U64((a->h->ejected_until - L.now) / MS, 2000);
    pool_report(a, POOL_ANSWERED, 200, L.now);   /* (while ejected: no change) */
}

TEST(teardown)
{
    route_free();
    pool_free_structs();
    loop_free(&L);
    conf_free(C.conf);
}

int main(void)
{
    RUN(setup);
    RUN(longest_path_prefix);
    RUN(host_classes);
    RUN(route_timeouts_override_key_by_key);
    RUN(route_policy_by_kind);
    RUN(smooth_weighted_round_robin);
    RUN(passive_ejection_respects_share);
    RUN(teardown);
    return unit_summary("test_route");
}
