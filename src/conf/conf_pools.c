/* conf_pools.c -- the file's `pools:`: servers, balancing, keep-alive,
 * health checks, retry budgets and TLS to the upstreams (see
 * conf_internal.h). */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVERS CLI_MAX_UPSTREAM
#define MAX_POOLS 1000u

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

bool conf_pool_has_names(const struct conf_pool *p)
{
    for (unsigned i = 0; i < p->nservers; i++)
        if (p->servers[i].addr.name[0])
            return true;
    return false;
}

/* A server's HOST:PORT (an IP literal or a host name) or, with `srv`, an
 * SRV name, into v: true, or false after an error. */
static bool get_server(struct conf_ctx *x, yaml_node_t *n, const char *key, bool srv,
                       struct val_server *v)
{
    const char *what = srv ? "an SRV name such as _http._tcp.example.com" : "HOST:PORT";
    const char *s = conf_scalar(x, n, key, what);
    if (!s)
        return false;
    char why[256];
    if ((srv ? val_srv_name(s, v, why, sizeof why) : val_server(s, v, why, sizeof why)) == 0)
        return true;
    if (!strncmp(why, "expected ", 9))
        conf_err(x, n, key, "%s, got \"%.64s\"", why, s);
    else
        conf_err(x, n, key, "expected %s, got \"%.64s\": %s", what, s, why);
    return false;
}

static void parse_servers(struct conf_ctx *x, yaml_node_t *n, const char *path, struct conf_pool *p)
{
    static const char what[] = "a list of servers ({address: HOST:PORT, weight: N})";
    unsigned count;
    if (!conf_items(x, n, path, what, &count))
        return;
    if (count == 0) {
        conf_err(x, n, path, "expected at least one server");
        return;
    }
    if (count > MAX_SERVERS) {
        conf_err(x, n, path, "at most %d servers in a pool, got %u", MAX_SERVERS, count);
        return;
    }
    p->servers = calloc(count, sizeof *p->servers);
    if (!p->servers) {
        x->nomem = true;
        return;
    }
    for (unsigned i = 0; i < count; i++) {
        static const char *const keys[] = {"address", "weight", "srv", NULL};
        yaml_node_t *v[MAX_KEYS], *s = conf_item(x, n, i);
        char key[PATHLEN], sub[PATHLEN];
        if (!s)
            return;
        conf_joini(key, path, i);
        struct conf_server *srv = &p->servers[p->nservers];
        *srv = (struct conf_server){.weight = 1, .line = conf_line(s)};
        yaml_node_t *addr = s;   /* a bare "HOST:PORT" is short for {address: ...} */
        bool is_srv = false;
        if (s->type != YAML_SCALAR_NODE || conf_is_null(s)) {
            if (!conf_fields(x, s, key, "a server ({address: HOST:PORT, weight: N}, "
                                        "{srv: NAME}) or HOST:PORT", keys, v))
                continue;
            addr = v[0];
            is_srv = v[2] != NULL;
            if (is_srv && v[0]) {
                conf_join(sub, key, "srv");
                conf_err(x, v[2], sub, "a server has an address or an SRV name, not both");
                continue;
            }
            conf_join(sub, key, "weight");
            if (is_srv && v[1]) {
                conf_err(x, v[1], sub, "the SRV records give the weights");
                continue;
            }
            if (v[1] && !conf_get_uint(x, v[1], sub, 1, 1000, &srv->weight))
                continue;
            conf_join(sub, key, is_srv ? "srv" : "address");
            memcpy(key, sub, sizeof key);
            if (is_srv)
                addr = v[2];
            if (!addr) {
                conf_err(x, s, key, "missing; expected HOST:PORT");
                continue;
            }
        }
        if (!get_server(x, addr, key, is_srv, &srv->addr))
            continue;
        bool dup = false;
        for (unsigned j = 0; j < p->nservers && !dup; j++)
            if (!strcmp(p->servers[j].addr.text, srv->addr.text)) {
                conf_err(x, addr, key, "%s is listed twice in this pool (first on line %d)",
                         srv->addr.text, p->servers[j].line);
                dup = true;
            }
        if (dup)
            continue;
        srv->address = conf_strdup(x, (const char *)addr->data.scalar.value);
        p->nservers++;
    }
}

static const char *const passive_names[] = {"connect_failure", "reset", "read_timeout",
                                            "try_timeout", "5xx", NULL};

/* `health.passive.on`: the failure classes and the response statuses that
 * count against a server (as a route's retry.on lists what it retries). */
static void parse_passive_on(struct conf_ctx *x, yaml_node_t *n, const char *path,
                             struct conf_passive *ps)
{
    conf_get_classes(x, n, path, "a list of failures that count (connect_failure, 5xx, ...)",
                     "connect_failure, reset, read_timeout, try_timeout, 5xx or a status "
                     "from 400 to 599",
                     passive_names, &ps->on, ps->status, &ps->nstatus, CONF_MAX_PASSIVE_STATUS);
}

static void parse_health(struct conf_ctx *x, yaml_node_t *n, const char *path, struct conf_pool *p)
{
    static const char *const keys[] = {"passive", "active", NULL};
    yaml_node_t *v[MAX_KEYS];
    char key[PATHLEN], sub[PATHLEN];
    if (!conf_fields(x, n, path, "a mapping with passive and/or active", keys, v))
        return;
    if (v[0]) {
        static const char *const pk[] = {"failures", "ejection", "max_ejection",
                                         "max_ejected_percent", "on", NULL};
        yaml_node_t *w[MAX_KEYS];
        struct conf_passive *ps = &p->passive;
        conf_join(key, path, "passive");
        if (conf_fields(x, v[0], key, "a mapping (failures, ejection, ...)", pk, w)) {
            conf_join(sub, key, "failures");
            if (w[0])
                conf_get_uint(x, w[0], sub, 1, 1000, &ps->failures);
            conf_join(sub, key, "ejection");
            if (w[1])
                conf_get_dur(x, w[1], sub, &ps->ejection_ms);
            conf_join(sub, key, "max_ejection");
            if (w[2] && conf_get_dur(x, w[2], sub, &ps->max_ejection_ms) &&
                ps->max_ejection_ms < ps->ejection_ms)
                conf_err(x, w[2], sub, "expected a duration no shorter than ejection (%llums), "
                                       "got %llums", (unsigned long long)ps->ejection_ms,
                         (unsigned long long)ps->max_ejection_ms);
            else if (!w[2] && ps->max_ejection_ms < ps->ejection_ms)
                ps->max_ejection_ms = ps->ejection_ms;
            conf_join(sub, key, "max_ejected_percent");
            if (w[3])
                conf_get_uint(x, w[3], sub, 0, 100, &ps->max_ejected_percent);
            conf_join(sub, key, "on");
            if (w[4])
                parse_passive_on(x, w[4], sub, ps);
        }
    }
    if (v[1]) {
        static const char *const ak[] = {"path", "interval", "timeout", "healthy", "unhealthy",
                                         NULL};
        yaml_node_t *w[MAX_KEYS];
        struct conf_active *a = &p->active;
        conf_join(key, path, "active");
        if (!conf_fields(x, v[1], key, "a mapping (path, interval, timeout, ...)", ak, w))
            return;
        a->enabled = true;
        conf_join(sub, key, "path");
        if (!w[0]) {
            conf_err(x, v[1], sub, "missing; expected the path to request, such as /healthz");
        } else {
            const char *s = conf_scalar(x, w[0], sub, "a path starting with /, such as /healthz");
            if (s && !conf_valid_path(s))
                conf_expected(x, w[0], sub, "a path starting with /, such as /healthz");
            else if (s)
                a->path = conf_strdup(x, s);
        }
        conf_join(sub, key, "interval");
        if (w[1])
            conf_get_dur(x, w[1], sub, &a->interval_ms);
        conf_join(sub, key, "timeout");
        if (w[2] && conf_get_dur(x, w[2], sub, &a->timeout_ms) && a->timeout_ms > a->interval_ms)
            conf_err(x, w[2], sub,
                     "expected a duration no longer than interval (%llums), got %llums",
                     (unsigned long long)a->interval_ms, (unsigned long long)a->timeout_ms);
        else if (!w[2] && a->timeout_ms > a->interval_ms)
            a->timeout_ms = a->interval_ms;
        conf_join(sub, key, "healthy");
        if (w[3])
            conf_get_uint(x, w[3], sub, 1, 100, &a->healthy);
        conf_join(sub, key, "unhealthy");
        if (w[4])
            conf_get_uint(x, w[4], sub, 1, 100, &a->unhealthy);
    }
}

/* A pool's `resolve:` {min_interval, max_interval}: the bounds of the time
 * between two resolutions of its names. Below 100 ms a name would cost its
 * DNS servers more than it is worth. */
static void parse_resolve(struct conf_ctx *x, yaml_node_t *n, const char *path,
                          struct conf_pool *p)
{
    static const char *const keys[] = {"min_interval", "max_interval", NULL};
    yaml_node_t *v[MAX_KEYS];
    char sub[PATHLEN];
    if (!conf_fields(x, n, path, "a mapping (min_interval, max_interval)", keys, v))
        return;
    conf_join(sub, path, "min_interval");
    if (v[0] && conf_get_dur(x, v[0], sub, &p->resolve_min_ms) && p->resolve_min_ms < 100) {
        conf_err(x, v[0], sub, "expected a duration of at least 100ms, got %llums",
                 (unsigned long long)p->resolve_min_ms);
        return;
    }
    conf_join(sub, path, "max_interval");
    if (v[1] && conf_get_dur(x, v[1], sub, &p->resolve_max_ms) &&
        p->resolve_max_ms < p->resolve_min_ms)
        conf_err(x, v[1], sub, "expected a duration no shorter than min_interval (%llums), "
                               "got %llums", (unsigned long long)p->resolve_min_ms,
                 (unsigned long long)p->resolve_max_ms);
    else if (!v[1] && p->resolve_max_ms < p->resolve_min_ms)
        p->resolve_max_ms = p->resolve_min_ms;
}

void conf_free_pool_tls(struct conf_tls_up *t)
{
    free((char *)t->c.ca);
    free((char *)t->c.server_name);
    free((char *)t->c.cert);
    free((char *)t->c.key);
    *t = (struct conf_tls_up){0};
}

/* A pool's `tls:` {ca, verify, server_name, cert, key}; `tls: {}` is TLS
 * with the defaults. The files are loaded once here, for the line numbers. */
static void parse_pool_tls(struct conf_ctx *x, yaml_node_t *n, const char *path,
                           struct conf_tls_up *t)
{
    static const char *const keys[] = {"ca", "verify", "server_name", "cert", "key", NULL};
    yaml_node_t *v[MAX_KEYS];
    char sub[PATHLEN];
    if (conf_is_null(n)) {
        t->enabled = true;
        t->c.verify = true;
        t->line = conf_line(n);
        return;
    }
    if (!conf_fields(x, n, path, "a mapping (ca, verify, server_name, cert, key)", keys, v))
        return;
    t->enabled = true;
    t->c.verify = true;
    t->line = conf_line(n);
    bool ok = true;
    conf_join(sub, path, "ca");
    if (v[0] && !(t->c.ca = conf_get_file(x, v[0], sub)))
        ok = false;
    conf_join(sub, path, "verify");
    if (v[1] && !conf_get_bool(x, v[1], sub, &t->c.verify))
        ok = false;
    conf_join(sub, path, "server_name");
    if (v[2]) {
        const char *s = conf_scalar(x, v[2], sub, "a host name such as api.internal");
        if (!s || !*s || strlen(s) > 253 || strpbrk(s, " /:\t")) {
            if (s)
                conf_expected(x, v[2], sub, "a host name such as api.internal");
            ok = false;
        } else if (!(t->c.server_name = conf_strdup(x, s)))
            ok = false;
    }
    if (v[3] || v[4]) {
        struct tls_pair p = {0};
        if (conf_tls_pair(x, n, path, v[3], v[4], &p)) {
            t->c.cert = p.cert;
            t->c.key = p.key;
        } else {
            free((char *)p.cert);
            free((char *)p.key);
            ok = false;
        }
    }
    if (ok) {
        char why[512];
        const char *bad = "ca";
        struct tls_client *cl = tls_client_new(&t->c, why, sizeof why, &bad);
        if (!cl) {
            yaml_node_t *at = !strcmp(bad, "cert") ? v[3] : !strcmp(bad, "key") ? v[4] : v[0];
            conf_join(sub, path, bad);
            conf_err(x, at ? at : n, sub, "%s", why);
        }
        tls_client_free(cl);
    }
}

static void parse_pool(struct conf_ctx *x, yaml_node_t *k, yaml_node_t *n, struct conf_pool *p)
{
    static const char *const keys[] = {"servers", "balance", "max_connections", "keepalive",
                                       "health", "budget", "tls", "protocol", "slow_start",
                                       "resolve", "max_requests", NULL};
    static const char *const protocols[] = {"http/1.1", "h2", NULL};
    static const char *const balances[] = {"round_robin", "least_conn", "p2c", "ewma", NULL};
    yaml_node_t *v[MAX_KEYS];
    char path[PATHLEN], key[PATHLEN], sub[PATHLEN];
    snprintf(path, sizeof path, "pools.%s", p->name);
    *p = (struct conf_pool){
        .name = p->name,
        .line = conf_line(k),
        .passive = {.on = CONF_PASSIVE_DEFAULT, .failures = 5, .ejection_ms = 30000,
                    .max_ejection_ms = 300000, .max_ejected_percent = 50},
        .active = {.interval_ms = 5000, .timeout_ms = 1000, .healthy = 2, .unhealthy = 3},
        .budget = {.percent = 20, .min = 3},
        .resolve_min_ms = 1000,
        .resolve_max_ms = 300000,
    };
    if (!conf_fields(x, n, path, "a pool: a mapping with servers (and balance, keepalive, ...)",
                     keys, v))
        return;
    conf_join(key, path, "servers");
    if (!v[0])
        conf_err(x, k, key, "missing; a pool needs at least one server");
    else
        parse_servers(x, v[0], key, p);
    conf_join(key, path, "balance");
    if (v[1]) {
        int b = conf_get_enum(x, v[1], key, balances);
        if (b >= 0)
            p->balance = (enum conf_balance)b;
    }
    conf_join(key, path, "max_connections");
    if (v[2])
        conf_get_uint(x, v[2], key, 1, 1000000, &p->max_connections);
    conf_join(key, path, "max_requests");
    if (v[10])
        conf_get_uint(x, v[10], key, 1, 1000000, &p->max_requests);
    if (v[3]) {
        static const char *const kk[] = {"idle_timeout", "max_idle", NULL};
        yaml_node_t *w[MAX_KEYS];
        conf_join(key, path, "keepalive");
        if (conf_fields(x, v[3], key, "a mapping (idle_timeout, max_idle)", kk, w)) {
            conf_join(sub, key, "idle_timeout");
            if (w[0])
                conf_get_dur(x, w[0], sub, &p->keepalive_idle_ms);
            conf_join(sub, key, "max_idle");
            if (w[1] && conf_get_uint(x, w[1], sub, 0, 100000, &p->keepalive_max_idle))
                p->keepalive_max_idle_set = true;
        }
    }
    conf_join(key, path, "health");
    if (v[4])
        parse_health(x, v[4], key, p);
    if (v[5]) {
        static const char *const bk[] = {"percent", "min", NULL};
        yaml_node_t *w[MAX_KEYS];
        conf_join(key, path, "budget");
        if (conf_fields(x, v[5], key, "a mapping (percent, min)", bk, w)) {
            conf_join(sub, key, "percent");
            if (w[0])
                conf_get_uint(x, w[0], sub, 0, 100, &p->budget.percent);
            conf_join(sub, key, "min");
            if (w[1])
                conf_get_uint(x, w[1], sub, 0, 100000, &p->budget.min);
        }
    }
    conf_join(key, path, "tls");
    if (v[6])
        parse_pool_tls(x, v[6], key, &p->tls);
    conf_join(key, path, "protocol");
    if (v[7]) {
        int pr = conf_get_enum(x, v[7], key, protocols);
        if (pr >= 0)
            p->h2 = pr == 1;
    }
    p->tls.c.h2 = p->h2;   /* ALPN h2 over TLS */
    conf_join(key, path, "slow_start");
    if (v[8])
        conf_get_dur(x, v[8], key, &p->slow_start_ms);
    if (v[9]) {
        conf_join(key, path, "resolve");
        parse_resolve(x, v[9], key, p);
    }
}

void conf_parse_pools(struct conf_ctx *x, yaml_node_t *n)
{
    struct conf *c = x->c;
    if (n->type != YAML_MAPPING_NODE) {
        conf_expected(x, n, "pools", "a mapping of pool names to pools");
        return;
    }
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count == 0) {
        conf_err(x, n, "pools", "expected at least one pool");
        return;
    }
    if (count > MAX_POOLS) {
        conf_err(x, n, "pools", "at most %u pools, got %zu", MAX_POOLS, count);
        return;
    }
    c->pools = calloc(count, sizeof *c->pools);
    if (!c->pools) {
        x->nomem = true;
        return;
    }
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = conf_node(x, pr->key), *v = conf_node(x, pr->value);
        if (!k || !v)
            return;
        const char *name = conf_scalar(x, k, "pools", "a pool name");
        if (!name)
            continue;
        char key[PATHLEN];
        conf_join(key, "pools", name);
        if (!valid_name(name)) {
            conf_err(x, k, key, "expected a pool name of 1 to 63 letters, digits, '_' or '-'");
            continue;
        }
        bool dup = false;
        for (unsigned j = 0; j < c->npools && !dup; j++)
            if (!strcmp(c->pools[j].name, name)) {
                conf_err(x, k, key, "given twice (first on line %d)", c->pools[j].line);
                dup = true;
            }
        if (dup)
            continue;
        struct conf_pool *p = &c->pools[c->npools++];
        p->name = conf_strdup(x, name);
        if (!p->name)
            return;
        parse_pool(x, k, v, p);
    }
}
