/* conf_routes.c -- the file's `routes:`: host and path, pool, timeouts,
 * retry policy and hedging of each route (see conf_internal.h). */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 10000u

/* Lower-cases and checks a route host: "example.com", "*.example.com". */
static bool valid_host(char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    if (s[0] == '*') {
        if (s[1] != '.' || !s[2])
            return false;
        s += 2;
    }
    bool label_start = true;
    for (; *s; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
        if (*s == '.') {
            if (label_start)
                return false;
            label_start = true;
            continue;
        }
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
            return false;
        label_start = false;
    }
    return !label_start;
}

static const char *const retry_names[] = {"connect_failure", "connect_timeout", "reset",
                                          "read_timeout", NULL};

static void parse_retry_on(struct conf_ctx *x, yaml_node_t *n, const char *path,
                           struct conf_retry *r)
{
    conf_get_classes(x, n, path, "a list of failures to retry (connect_failure, reset, 503, ...)",
                     "connect_failure, connect_timeout, reset, read_timeout or a status from "
                     "400 to 599",
                     retry_names, &r->on, r->status, &r->nstatus, CONF_MAX_RETRY_STATUS);
}

static void parse_retry(struct conf_ctx *x, yaml_node_t *n, const char *path, struct conf_retry *r)
{
    static const char *const keys[] = {"attempts", "on", "per_try_timeout", "backoff",
                                       "methods", "max_body", "min_time_left", NULL};
    static const char *const methods[] = {"idempotent", "all", NULL};
    yaml_node_t *v[MAX_KEYS];
    char key[PATHLEN], sub[PATHLEN];
    if (!conf_fields(x, n, path, "a retry policy: a mapping (attempts, on, per_try_timeout, ...)",
                     keys, v))
        return;
    r->attempts = 2;
    conf_join(key, path, "attempts");
    if (v[0])
        conf_get_uint(x, v[0], key, 1, 10, &r->attempts);
    conf_join(key, path, "on");
    if (v[1])
        parse_retry_on(x, v[1], key, r);
    conf_join(key, path, "per_try_timeout");
    if (v[2])
        conf_get_dur(x, v[2], key, &r->per_try_timeout_ms);
    if (v[3]) {
        static const char *const bk[] = {"base", "max", NULL};
        yaml_node_t *w[MAX_KEYS];
        conf_join(key, path, "backoff");
        if (conf_fields(x, v[3], key, "a mapping (base, max)", bk, w)) {
            conf_join(sub, key, "base");
            if (w[0])
                conf_get_dur(x, w[0], sub, &r->backoff_base_ms);
            conf_join(sub, key, "max");
            if (w[1] && conf_get_dur(x, w[1], sub, &r->backoff_max_ms) &&
                r->backoff_max_ms < r->backoff_base_ms)
                conf_err(x, w[1], sub,
                         "expected a duration no shorter than base (%llums), got %llums",
                         (unsigned long long)r->backoff_base_ms,
                         (unsigned long long)r->backoff_max_ms);
            else if (!w[1] && r->backoff_max_ms < r->backoff_base_ms)
                r->backoff_max_ms = r->backoff_base_ms;
        }
    }
    conf_join(key, path, "methods");
    if (v[4]) {
        int m = conf_get_enum(x, v[4], key, methods);
        if (m >= 0)
            r->methods = m ? CONF_METHODS_ALL : CONF_METHODS_IDEMPOTENT;
    }
    conf_join(key, path, "max_body");
    if (v[5])
        conf_get_size(x, v[5], key, 0, 64u << 20, "a size from 0 to 64MiB, such as 64k",
                      &r->max_body);
    conf_join(key, path, "min_time_left");
    if (v[6])
        conf_get_dur(x, v[6], key, &r->min_time_left_ms);
}

/* `hedge.delay`: a duration, or a quantile of the route's live first-byte
 * latency written pNN (p50 to p99.9). */
static void parse_hedge_delay(struct conf_ctx *x, yaml_node_t *n, const char *key,
                              struct conf_route *r)
{
    static const char what[] = "a duration such as 50ms, or a percentile such as p95 "
                               "(p50 to p99.9)";
    const char *s = conf_scalar(x, n, key, what);
    if (!s)
        return;
    if (s[0] != 'p') {
        conf_get_dur(x, n, key, &r->hedge_delay_ms);
        return;
    }
    char *end;
    double q = strtod(s + 1, &end);
    if (end == s + 1 || *end || !(q >= 50 && q <= 99.9) || !(s[1] >= '0' && s[1] <= '9')) {
        conf_expected(x, n, key, what);
        return;
    }
    r->hedge_permille = (unsigned)(q * 10 + 0.5);
}

static void parse_hedge(struct conf_ctx *x, yaml_node_t *n, const char *key, struct conf_route *r)
{
    static const char *const hk[] = {"delay", "min_delay", "max_delay", "max_percent", NULL};
    yaml_node_t *w[MAX_KEYS];
    char sub[PATHLEN];
    if (!conf_fields(x, n, key, "a mapping (delay, min_delay, max_delay, max_percent)", hk, w))
        return;
    conf_join(sub, key, "delay");
    if (!w[0])
        conf_err(x, n, sub, "missing; expected %s or a percentile such as p95", WHAT_DUR);
    else
        parse_hedge_delay(x, w[0], sub, r);
    r->hedge_min_ms = 1;
    r->hedge_max_ms = 1000;
    conf_join(sub, key, "min_delay");
    if (w[1])
        conf_get_dur(x, w[1], sub, &r->hedge_min_ms);
    conf_join(sub, key, "max_delay");
    if (w[2] && conf_get_dur(x, w[2], sub, &r->hedge_max_ms) && r->hedge_max_ms < r->hedge_min_ms)
        conf_err(x, w[2], sub, "expected a duration no shorter than min_delay (%llums), got %llums",
                 (unsigned long long)r->hedge_min_ms, (unsigned long long)r->hedge_max_ms);
    else if (!w[2] && r->hedge_max_ms < r->hedge_min_ms)
        r->hedge_max_ms = r->hedge_min_ms;
    if ((w[1] || w[2]) && r->hedge_delay_ms) {
        conf_join(sub, key, w[1] ? "min_delay" : "max_delay");
        conf_err(x, w[1] ? w[1] : w[2], sub,
                 "bounds an adaptive delay (delay: p95, say); this route's delay is fixed");
    }
    conf_join(sub, key, "max_percent");
    if (w[3])
        conf_get_uint(x, w[3], sub, 1, 100, &r->hedge_max_percent);
}

/* `grpc:` of a route: what a gRPC call's grpc-timeout does there. */
static void parse_grpc(struct conf_ctx *x, yaml_node_t *n, const char *key, struct conf_grpc *g)
{
    static const char *const keys[] = {"timeout", "max_timeout", "streaming", NULL};
    static const char *const modes[] = {"honour", "ignore", NULL};
    yaml_node_t *w[MAX_KEYS];
    char sub[PATHLEN];
    if (!conf_fields(x, n, key, "a mapping (timeout, max_timeout, streaming)", keys, w))
        return;
    conf_join(sub, key, "timeout");
    if (w[0]) {
        int m = conf_get_enum(x, w[0], sub, modes);
        if (m >= 0)
            g->ignore = m == 1;
    }
    conf_join(sub, key, "max_timeout");
    if (w[1])
        conf_get_dur(x, w[1], sub, &g->max_timeout_ms);
    conf_join(sub, key, "streaming");
    if (w[2])
        conf_get_bool(x, w[2], sub, &g->streaming);
}

static void parse_route(struct conf_ctx *x, yaml_node_t *n, unsigned idx, struct conf_route *r)
{
    static const char *const keys[] = {"host", "path", "pool", "timeouts", "retry", "hedge",
                                       "budget", "deadline_header", "grpc", "min_budget",
                                       "server_timing", "request_buffering", NULL};
    yaml_node_t *v[MAX_KEYS];
    char path[PATHLEN], key[PATHLEN];
    conf_joini(path, "routes", idx);
    *r = (struct conf_route){
        .line = conf_line(n),
        .deadline_header = true,
        .retry = {.attempts = 1,
                  .on = CONF_RETRY_CONNECT_FAILURE | CONF_RETRY_CONNECT_TIMEOUT |
                        CONF_RETRY_RESET,
                  .backoff_base_ms = 25,
                  .backoff_max_ms = 250,
                  .max_body = 64 << 10},
    };
    if (!conf_fields(x, n, path, "a route: a mapping with pool (and host, path, timeouts, ...)",
                     keys, v))
        return;
    conf_join(key, path, "host");
    if (v[0]) {
        static const char what[] = "a host name such as example.com or *.example.com";
        const char *s = conf_scalar(x, v[0], key, what);
        if (s) {
            char *h = conf_strdup(x, s);
            if (h && !valid_host(h)) {
                conf_expected(x, v[0], key, what);
                free(h);
            } else {
                r->host = h;
            }
        }
    }
    conf_join(key, path, "path");
    if (v[1]) {
        static const char what[] = "a path prefix starting with /";
        const char *s = conf_scalar(x, v[1], key, what);
        if (s && !conf_valid_path(s))
            conf_expected(x, v[1], key, what);
        else if (s)
            r->path = conf_strdup(x, s);
    }
    if (!r->path && !v[1])
        r->path = conf_strdup(x, "/");
    conf_join(key, path, "pool");
    if (!v[2])
        conf_err(x, n, key, "missing; expected the name of a pool");
    else if (conf_scalar(x, v[2], key, "the name of a pool"))
        x->route_pool[idx] = v[2];
    conf_join(key, path, "timeouts");
    if (v[3])
        conf_parse_timeouts(x, v[3], key, &r->timeouts, true);
    conf_join(key, path, "retry");
    if (v[4])
        parse_retry(x, v[4], key, &r->retry);
    conf_join(key, path, "hedge");
    if (v[5])
        parse_hedge(x, v[5], key, r);
    conf_join(key, path, "budget");
    if (v[6])
        conf_err(x, v[6], key, "the retry budget is shared by a pool's routes; set it as "
                               "pools.NAME.budget");
    conf_join(key, path, "deadline_header");
    if (v[7])
        conf_get_bool(x, v[7], key, &r->deadline_header);
    conf_join(key, path, "grpc");
    if (v[8])
        parse_grpc(x, v[8], key, &r->grpc);
    conf_join(key, path, "min_budget");
    if (v[9])
        conf_get_dur(x, v[9], key, &r->min_budget_ms);
    conf_join(key, path, "server_timing");
    if (v[10])
        conf_get_bool(x, v[10], key, &r->server_timing);
    conf_join(key, path, "request_buffering");
    if (v[11] && v[11]->type == YAML_SCALAR_NODE &&
        strcmp((const char *)v[11]->data.scalar.value, "off") == 0)
        r->request_buffering = 0;
    else if (v[11])
        /* (the body and the head share one buffer, sized by a uint32_t) */
        conf_get_size(x, v[11], key, 1, 1ull << 30, "a size from 1 byte to 1g, or off",
                      &r->request_buffering);
}

void conf_parse_routes(struct conf_ctx *x, yaml_node_t *n)
{
    struct conf *c = x->c;
    unsigned count;
    if (!conf_items(x, n, "routes", "a list of routes", &count))
        return;
    if (count == 0) {
        conf_err(x, n, "routes", "expected at least one route");
        return;
    }
    if (count > MAX_ROUTES) {
        conf_err(x, n, "routes", "at most %u routes, got %u", MAX_ROUTES, count);
        return;
    }
    c->routes = calloc(count, sizeof *c->routes);
    x->route_pool = calloc(count, sizeof *x->route_pool);
    if (!c->routes || !x->route_pool) {
        x->nomem = true;
        return;
    }
    yaml_node_t **nodes = calloc(count, sizeof *nodes);
    if (!nodes) {
        x->nomem = true;
        return;
    }
    for (unsigned i = 0; i < count && !x->nomem; i++) {
        nodes[i] = conf_item(x, n, i);
        if (!nodes[i])
            break;
        parse_route(x, nodes[i], i, &c->routes[i]);
        c->nroutes++;
    }
    /* the same host and path twice: the second could never match */
    for (unsigned i = 0; i < c->nroutes; i++) {
        const struct conf_route *r = &c->routes[i];
        if (!r->path)
            continue;
        for (unsigned j = 0; j < i; j++) {
            const struct conf_route *q = &c->routes[j];
            if (!q->path || strcmp(q->path, r->path) != 0 || !q->host != !r->host ||
                (r->host && strcmp(q->host, r->host) != 0))
                continue;
            char key[PATHLEN];
            conf_joini(key, "routes", i);
            conf_err(x, nodes[i], key,
                     "same host and path as routes[%u] (line %d): host %s, path %s", j, q->line,
                     r->host ? r->host : "(any)", r->path);
            break;
        }
    }
    free(nodes);
}

void conf_resolve_pools(struct conf_ctx *x)
{
    struct conf *c = x->c;
    for (unsigned i = 0; i < c->nroutes; i++) {
        yaml_node_t *n = x->route_pool[i];
        if (!n)
            continue;
        const char *name = (const char *)n->data.scalar.value;
        for (unsigned j = 0; j < c->npools; j++)
            if (!strcmp(c->pools[j].name, name))
                c->routes[i].pool = &c->pools[j];
        if (c->routes[i].pool)
            continue;
        char key[PATHLEN], list[200] = "";
        snprintf(key, sizeof key, "routes[%u].pool", i);
        for (unsigned j = 0; j < c->npools && strlen(list) < 150; j++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "",
                     c->pools[j].name);
        if (c->npools)
            conf_err(x, n, key, "no pool named \"%.64s\" (pools: %s)", name, list);
        else
            conf_err(x, n, key, "no pool named \"%.64s\" (the file declares no pools)", name);
    }
}
