/* route.h -- choosing where a request goes: routes matched by host and path
 * prefix (longest prefix wins; an exact host beats a wildcard, which beats
 * any host), each naming an upstream pool and its own timeout policy.
 *
 * Without a configuration file there is one route, "/", to the pool of the
 * --upstream servers, with the command line's timeouts. */
#ifndef HG_ROUTE_H
#define HG_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "tmo.h"

struct pool_group;
struct qest;
struct qbudget;

/* A route's durations, ms, by kind: its own `timeouts:` over the top-level
 * ones (the kinds that run before a route is known, such as header and idle,
 * are always the top level's), its retry policy's per-try timeout (TMO_TRY;
 * 0: none) and its hedge delay (TMO_HEDGE; 0: no hedging). */
struct route_policy {
    uint64_t ms[TMO_COUNT];
};

struct route {
    const char *host;        /* NULL: any; "example.com" or "*.example.com" */
    const char *path;        /* prefix, starts with '/' */
    size_t host_len, path_len;
    struct pool_group *pool;
    struct route_policy policy;
    const struct conf_retry *retry;   /* NULL: no retries beyond the built-in one */
    bool no_deadline_header;          /* route's deadline_header: false */
    struct conf_grpc grpc;            /* its gRPC calls' deadlines (cfg.h) */
    /* admission (admit.h): */
    uint64_t min_budget_ms;           /* time left at dispatch below it: 504; 0: off */
    unsigned hedge_permille;          /* adaptive hedge delay: this quantile; 0: fixed */
    uint64_t hedge_min_ms, hedge_max_ms;
    unsigned hedge_max_percent;       /* hedges per 100 requests; 0: no cap */
    /* this worker's live view of the route (mutable through const routes) */
    struct qest *latency;             /* first-byte latency of its attempts */
    struct qbudget *hedge_budget;
    bool server_timing;               /* responses get a Server-Timing field */
    uint64_t reqbuf_max;              /* request_buffering: bodies up to this are read
                                         whole before dispatch (reqbuf.h); 0: off */
};

/* Builds the route table from cfg (and cfg->conf when a file was read). The
 * pools must exist (pool_init). 0, or -1 when a route names no pool. */
int route_init(const struct cfg *cfg);

/* The route for a Host value (port and case ignored; may be NULL) and a
 * request target; NULL when none matches. */
const struct route *route_match(const char *host, size_t host_len,
                                const char *target, size_t target_len);

void route_free(void);

/* The routes, for metrics: *n gets their number; a route's index is its
 * position in the returned array. */
const struct route *route_all(unsigned *n);

#endif
