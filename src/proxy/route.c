/* route.c -- routes by host and path prefix (see route.h). */
#include "route.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conf.h"
#include "pool.h"
#include "qest.h"

static struct route *routes;
static unsigned nroutes;

/* r NULL: the route of a run without a configuration file. */
static struct route_policy policy_of(const struct conf_route *r, const struct cfg *cfg)
{
    struct route_policy p;
    for (int k = 0; k < TMO_COUNT; k++)
        p.ms[k] = conf_route_ms(r, (enum tmo_kind)k, cfg);
    if (r) {   /* the retry policy is in force from 2 attempts (route_init) */
        p.ms[TMO_TRY] = r->retry.attempts > 1 ? r->retry.per_try_timeout_ms : 0;
        p.ms[TMO_HEDGE] = r->hedge_permille ? r->hedge_max_ms : r->hedge_delay_ms;
    }
    if (!p.ms[TMO_QUEUE])
        p.ms[TMO_QUEUE] = p.ms[TMO_CONNECT];   /* (as HAProxy's timeout queue) */
    return p;
}

/* The live state every route has (route.h): one block for all. */
static struct route_live {
    struct qest latency;
    struct qbudget hedge_budget;
} *live;

static void attach_live(struct route *r, unsigned i)
{
    r->latency = &live[i].latency;
    r->hedge_budget = &live[i].hedge_budget;
    r->hedge_budget->tokens = 1;   /* the first slow request may be hedged */
}

int route_init(const struct cfg *cfg)
{
    const struct conf *cf = cfg->conf;

    if (!cf || !cf->nroutes) {
        routes = xcalloc(1, sizeof *routes);
        live = xcalloc(1, sizeof *live);
        nroutes = 1;
        routes[0] = (struct route){.path = "/", .path_len = 1, .pool = pool_group_default(),
                                   .policy = policy_of(NULL, cfg)};
        attach_live(&routes[0], 0);
        return 0;
    }
    routes = xcalloc(cf->nroutes, sizeof *routes);
    live = xcalloc(cf->nroutes, sizeof *live);
    nroutes = cf->nroutes;
    for (unsigned i = 0; i < nroutes; i++) {
        const struct conf_route *cr = &cf->routes[i];
        struct route *r = &routes[i];
        r->host = cr->host;
        r->host_len = cr->host ? strlen(cr->host) : 0;
        r->path = cr->path;
        r->path_len = strlen(cr->path);
        r->pool = pool_group_find(cr->pool->name);
        r->policy = policy_of(cr, cfg);
        r->retry = cr->retry.attempts > 1 ? &cr->retry : NULL;
        r->no_deadline_header = !cr->deadline_header;
        r->grpc = cr->grpc;
        r->server_timing = cr->server_timing;
        r->reqbuf_max = cr->request_buffering;
        r->min_budget_ms = cr->min_budget_ms;
        r->hedge_permille = cr->hedge_permille;
        r->hedge_min_ms = cr->hedge_min_ms;
        r->hedge_max_ms = cr->hedge_max_ms;
        /* a cap of 5% by default on an adaptive delay (a fixed one: none) */
        r->hedge_max_percent = cr->hedge_max_percent ? cr->hedge_max_percent
                               : cr->hedge_permille  ? 5
                                                     : 0;
        attach_live(r, i);
        if (!r->pool) {
            fprintf(stderr, "hourglass: route %s%s: no pool named %s\n", cr->host ? cr->host : "",
                    cr->path, cr->pool->name);
            return -1;
        }
    }
    return 0;
}

const struct route *route_all(unsigned *n)
{
    *n = nroutes;
    return routes;
}

void route_free(void)
{
    free(routes);
    free(live);
    live = NULL;
    routes = NULL;
    nroutes = 0;
}

static bool ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (x != y)
            return false;
    }
    return true;
}

/* 2: exact host, 1: wildcard, 0: any host, -1: no match. Patterns are
 * lower case (the configuration checked them); the request's host is not. */
static int host_rank(const struct route *r, const char *h, size_t n)
{
    if (!r->host)
        return 0;
    if (r->host[0] == '*') {   /* "*.example.com" matches "a.example.com" */
        size_t sl = r->host_len - 1;
        return n > sl && ieq(h + n - sl, r->host + 1, sl) ? 1 : -1;
    }
    return n == r->host_len && ieq(h, r->host, n) ? 2 : -1;
}

const struct route *route_match(const char *host, size_t host_len,
                                const char *target, size_t target_len)
{
    /* The host without its port: "example.com:8080", "[::1]:8080". */
    size_t hl = host ? host_len : 0;
    if (hl && host[0] == '[') {
        const char *close = memchr(host, ']', hl);
        if (close)
            hl = (size_t)(close - host) + 1;
    } else {
        const char *colon = hl ? memchr(host, ':', hl) : NULL;
        if (colon)
            hl = (size_t)(colon - host);
    }
    /* The path, without the query. */
    const char *q = memchr(target, '?', target_len);
    size_t pl = q ? (size_t)(q - target) : target_len;

    const struct route *best = NULL;
    int best_rank = -1;
    for (unsigned i = 0; i < nroutes; i++) {
        const struct route *r = &routes[i];
        int rank = host_rank(r, host, hl);
        if (rank < 0 || r->path_len > pl || memcmp(target, r->path, r->path_len) != 0)
            continue;
        if (rank > best_rank || (rank == best_rank && r->path_len > best->path_len)) {
            best = r;
            best_rank = rank;
        }
    }
    return best;
}
