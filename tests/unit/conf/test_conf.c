/* test_conf.c -- the configuration file (src/conf/conf.h) and its wiring into
 * cli_parse: a full file into the model, every class of error with its exact
 * FILE:LINE:COL: KEY: message, and flags overriding the file. */
#define _GNU_SOURCE
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conf.h"

/* ------------------------------------------------------------- helpers */

static char tmp_path[64];

/* Writes text to a fresh temporary file; returns its path (static). */
static const char *write_tmp(const char *text)
{
    strcpy(tmp_path, "/tmp/hg-conf-XXXXXX.yaml");
    int fd = mkstemps(tmp_path, 5);
    if (fd < 0) {
        perror("mkstemps");
        exit(1);
    }
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) {
        perror("write");
        exit(1);
    }
    close(fd);
    return tmp_path;
}

static struct conf *load_text(const char *text, char **errors)
{
    const char *path = write_tmp(text);
    struct conf *c = conf_load(path, errors);
    unlink(path);
    return c;
}

/* The file must be refused with exactly one error line: PATH:want. */
static void bad1(const char *text, const char *want, int line)
{
    char *errors = NULL;
    struct conf *c = load_text(text, &errors);
    char expect[512];
    snprintf(expect, sizeof expect, "%s:%s\n", tmp_path, want);
    bool ok = CHECK(c == NULL);
    ok = CHECK_EQ_STR(errors, expect) && ok;
    if (!ok)
        fprintf(stderr, "    (the case on line %d)\n", line);
    conf_free(c);
    free(errors);
}
#define BAD(text, want) bad1(text, want, __LINE__)

static struct conf *good1(const char *text, int line)
{
    char *errors = NULL;
    struct conf *c = load_text(text, &errors);
    if (!CHECK(c != NULL))
        fprintf(stderr, "    (line %d) refused:\n%s", line, errors ? errors : "(no errors)\n");
    free(errors);
    return c;
}
#define GOOD(text) good1(text, __LINE__)

/* --------------------------------------------------------- a full file */

static const char full[] =
    "listen:\n"
    "  - 127.0.0.1:18080\n"
    "  - \"[::1]:18081\"\n"
    "timeouts:\n"
    "  connect: 250ms\n"
    "  write: 2s\n"
    "  read: 1.5s\n"
    "  total: 2m\n"
    "  header: 3\n"
    "  body: 4s\n"
    "  send: 5s\n"
    "  idle: 1h\n"
    "  upstream_idle: 7s\n"
    "limits:\n"
    "  max_connections: 500\n"
    "  max_request_line: 4k\n"
    "  max_header_size: 16KiB\n"
    "  max_headers: 50\n"
    "  max_body_size: 0\n"
    "access_log: /var/log/hg.log\n"
    "pools:\n"
    "  web:\n"
    "    servers:\n"
    "      - address: 127.0.0.1:9001\n"
    "        weight: 3\n"
    "      - {address: 127.0.0.1:9002}\n"
    "      - 127.0.0.1:9003\n"
    "    balance: least_conn\n"
    "    max_connections: 64\n"
    "    keepalive: {idle_timeout: 20s, max_idle: 0}\n"
    "    health:\n"
    "      passive: {failures: 3, ejection: 10s, max_ejection: 1m, max_ejected_percent: 25}\n"
    "      active:\n"
    "        path: /healthz\n"
    "        interval: 2s\n"
    "        timeout: 500ms\n"
    "        healthy: 4\n"
    "        unhealthy: 5\n"
    "    budget: {percent: 10, min: 1}\n"
    "  static:\n"
    "    servers: [127.0.0.1:9101]\n"
    "    balance: p2c\n"
    "routes:\n"
    "  - host: \"*.Static.Example.com\"\n"
    "    path: /assets/\n"
    "    pool: static\n"
    "    timeouts: {read: 2s, total: 5s}\n"
    "    hedge: {delay: 100ms}\n"
    "  - path: /\n"
    "    pool: web\n"
    "    retry:\n"
    "      attempts: 3\n"
    "      on: [connect_failure, reset, read_timeout, 502, \"503\"]\n"
    "      per_try_timeout: 2s\n"
    "      backoff: {base: 10ms, max: 1s}\n"
    "      methods: all\n"
    "      max_body: 1m\n"
    "  - host: api.example.com\n"
    "    pool: web\n";

TEST(full_file_into_the_model)
{
    struct conf *c = GOOD(full);
    if (!c)
        return;
    if (CHECK_EQ_INT(c->nlisten, 2)) {
        CHECK_EQ_STR(c->listen[0].text, "127.0.0.1:18080");
        CHECK_EQ_STR(c->listen[1].text, "[::1]:18081");
    }
    const uint64_t want[TMO_COUNT] = {
        [TMO_CONNECT] = 250, [TMO_WRITE] = 2000, [TMO_READ] = 1500, [TMO_TOTAL] = 120000,
        [TMO_HEADER] = 3000, [TMO_BODY] = 4000,  [TMO_SEND] = 5000, [TMO_IDLE] = 3600000,
        [TMO_UPSTREAM_IDLE] = 7000,
    };
    for (int k = 0; k < TMO_COUNT; k++)
        CHECK_EQ_U64(c->timeouts.ms[k], want[k]);
    CHECK_EQ_INT(c->limits.max_connections, 500);
    CHECK_EQ_INT(c->limits.max_request_line, 4096);
    CHECK_EQ_INT(c->limits.max_header_size, 16384);
    CHECK_EQ_INT(c->limits.max_headers, 50);
    CHECK_EQ_U64(c->limits.max_body_size, 0);
    CHECK(c->limits.max_body_size_set);
    CHECK_EQ_STR(c->access_log, "/var/log/hg.log");

    if (CHECK_EQ_INT(c->npools, 2)) {
        const struct conf_pool *w = &c->pools[0], *s = &c->pools[1];
        CHECK_EQ_STR(w->name, "web");
        CHECK_EQ_INT(w->line, 22);
        if (CHECK_EQ_INT(w->nservers, 3)) {
            CHECK_EQ_STR(w->servers[0].address, "127.0.0.1:9001");
            CHECK_EQ_STR(w->servers[0].addr.text, "127.0.0.1:9001");
            CHECK_EQ_INT(w->servers[0].weight, 3);
            CHECK_EQ_INT(w->servers[1].weight, 1);
            CHECK_EQ_STR(w->servers[2].address, "127.0.0.1:9003");
            CHECK_EQ_INT(w->servers[2].line, 27);
        }
        CHECK_EQ_INT(w->balance, CONF_BALANCE_LEAST_CONN);
        CHECK_EQ_INT(w->max_connections, 64);
        CHECK_EQ_U64(w->keepalive_idle_ms, 20000);
        CHECK_EQ_INT(w->keepalive_max_idle, 0);
        CHECK(w->keepalive_max_idle_set);
        CHECK_EQ_INT(w->passive.failures, 3);
        CHECK_EQ_U64(w->passive.ejection_ms, 10000);
        CHECK_EQ_U64(w->passive.max_ejection_ms, 60000);
        CHECK_EQ_INT(w->passive.max_ejected_percent, 25);
        CHECK(w->active.enabled);
        CHECK_EQ_STR(w->active.path, "/healthz");
        CHECK_EQ_U64(w->active.interval_ms, 2000);
        CHECK_EQ_U64(w->active.timeout_ms, 500);
        CHECK_EQ_INT(w->active.healthy, 4);
        CHECK_EQ_INT(w->active.unhealthy, 5);
        CHECK_EQ_INT(w->budget.percent, 10);
        CHECK_EQ_INT(w->budget.min, 1);

        CHECK_EQ_STR(s->name, "static");
        CHECK_EQ_INT(s->nservers, 1);
        CHECK_EQ_INT(s->balance, CONF_BALANCE_P2C);
        /* defaults */
        CHECK_EQ_INT(s->servers[0].weight, 1);
        CHECK_EQ_INT(s->max_connections, 0);
        CHECK_EQ_U64(s->keepalive_idle_ms, 0);
        CHECK(!s->keepalive_max_idle_set);
        CHECK_EQ_INT(s->passive.failures, 5);
        CHECK_EQ_U64(s->passive.ejection_ms, 30000);
        CHECK_EQ_U64(s->passive.max_ejection_ms, 300000);
        CHECK_EQ_INT(s->passive.max_ejected_percent, 50);
        CHECK_EQ_INT(s->passive.on, CONF_PASSIVE_DEFAULT);
        CHECK_EQ_INT(s->passive.nstatus, 0);
        CHECK_EQ_U64(s->slow_start_ms, 0);
        CHECK(!s->active.enabled);
        CHECK(s->active.path == NULL);
        CHECK_EQ_INT(s->budget.percent, 20);
        CHECK_EQ_INT(s->budget.min, 3);
    }

    if (CHECK_EQ_INT(c->nroutes, 3) && c->npools == 2) {
        const struct conf_route *a = &c->routes[0], *b = &c->routes[1], *d = &c->routes[2];
        CHECK_EQ_STR(a->host, "*.static.example.com"); /* lower-cased */
        CHECK_EQ_STR(a->path, "/assets/");
        CHECK(a->pool == &c->pools[1]);
        CHECK_EQ_U64(a->timeouts.ms[TMO_READ], 2000);
        CHECK_EQ_U64(a->timeouts.ms[TMO_TOTAL], 5000);
        CHECK_EQ_U64(a->timeouts.ms[TMO_CONNECT], 0);
        CHECK_EQ_U64(a->hedge_delay_ms, 100);
        CHECK_EQ_INT(a->retry.attempts, 1); /* no retry: block */
        CHECK_EQ_INT(a->line, 44);

        CHECK(b->host == NULL);
        CHECK_EQ_STR(b->path, "/");
        CHECK(b->pool == &c->pools[0]);
        CHECK_EQ_INT(b->retry.attempts, 3);
        CHECK_EQ_INT(b->retry.on, CONF_RETRY_CONNECT_FAILURE | CONF_RETRY_RESET |
                                      CONF_RETRY_READ_TIMEOUT);
        CHECK(conf_retry_status(&b->retry, 502));
        CHECK(conf_retry_status(&b->retry, 503));
        CHECK(!conf_retry_status(&b->retry, 504));
        CHECK_EQ_U64(b->retry.per_try_timeout_ms, 2000);
        CHECK_EQ_U64(b->retry.backoff_base_ms, 10);
        CHECK_EQ_U64(b->retry.backoff_max_ms, 1000);
        CHECK_EQ_INT(b->retry.methods, CONF_METHODS_ALL);
        CHECK_EQ_U64(b->retry.max_body, 1 << 20);
        CHECK_EQ_U64(b->hedge_delay_ms, 0);

        CHECK_EQ_STR(d->host, "api.example.com");
        CHECK_EQ_STR(d->path, "/"); /* default */
        CHECK(conf_default_pool(c) == &c->pools[0]); /* route "/" without host */
    }

    /* into a cfg: the top level and the default pool */
    struct cfg cfg;
    cli_defaults(&cfg);
    conf_apply(c, &cfg);
    CHECK_EQ_INT(cfg.nlisten, 2);
    if (CHECK_EQ_INT(cfg.nupstream, 3))
        CHECK_EQ_STR(cfg.upstream[1].text, "127.0.0.1:9002");
    CHECK_EQ_U64(cfg.ms[TMO_CONNECT], 250);
    CHECK_EQ_U64(cfg.ms[TMO_READ], 1500);
    CHECK_EQ_U64(cfg.ms[TMO_IDLE], 3600000);
    CHECK_EQ_U64(cfg.ms[TMO_UPSTREAM_IDLE], 20000); /* the pool's keepalive wins */
    CHECK_EQ_INT(cfg.max_connections, 500);
    CHECK_EQ_INT(cfg.max_request_line, 4096);
    CHECK_EQ_INT(cfg.max_header_size, 16384);
    CHECK_EQ_INT(cfg.max_headers, 50);
    CHECK_EQ_U64(cfg.max_body, 0);
    CHECK_EQ_STR(cfg.access_log, "/var/log/hg.log");
    if (c->nroutes == 3) {
        CHECK_EQ_U64(conf_route_ms(&c->routes[0], TMO_READ, &cfg), 2000);
        CHECK_EQ_U64(conf_route_ms(&c->routes[0], TMO_CONNECT, &cfg), 250);
        CHECK_EQ_U64(conf_route_ms(&c->routes[1], TMO_TOTAL, &cfg), 120000);
    }
    conf_free(c);
}

TEST(retry_block_defaults)
{
    struct conf *c = GOOD("pools: {p: {servers: [127.0.0.1:1]}}\n"
                          "routes:\n"
                          "  - pool: p\n"
                          "    retry: {}\n"
                          "  - {path: /x, pool: p, retry: {backoff: {base: 1s}}}\n");
    if (!c)
        return;
    if (CHECK_EQ_INT(c->nroutes, 2)) {
        const struct conf_retry *r = &c->routes[0].retry;
        CHECK_EQ_INT(r->attempts, 2);
        CHECK_EQ_INT(r->on, CONF_RETRY_CONNECT_FAILURE | CONF_RETRY_CONNECT_TIMEOUT |
                                CONF_RETRY_RESET);
        CHECK_EQ_INT(r->nstatus, 0);
        CHECK_EQ_U64(r->per_try_timeout_ms, 0);
        CHECK_EQ_U64(r->backoff_base_ms, 25);
        CHECK_EQ_U64(r->backoff_max_ms, 250);
        CHECK_EQ_INT(r->methods, CONF_METHODS_IDEMPOTENT);
        CHECK_EQ_U64(r->max_body, 64 << 10);
        /* a base past the default cap raises the cap */
        CHECK_EQ_U64(c->routes[1].retry.backoff_base_ms, 1000);
        CHECK_EQ_U64(c->routes[1].retry.backoff_max_ms, 1000);
    }
    conf_free(c);
}

TEST(default_pool_and_small_files)
{
    /* no route "/" without a host: the first pool */
    struct conf *c = GOOD("pools:\n"
                          "  a: {servers: [127.0.0.1:1]}\n"
                          "  b: {servers: [127.0.0.1:2]}\n"
                          "routes: [{host: x.org, pool: b}]\n");
    if (c) {
        CHECK(conf_default_pool(c) == &c->pools[0]);
        conf_free(c);
    }
    /* only timeouts: nothing else is set, cfg keeps its defaults */
    c = GOOD("timeouts: {read: 2s}\n");
    if (c) {
        struct cfg cfg;
        cli_defaults(&cfg);
        conf_apply(c, &cfg);
        CHECK(conf_default_pool(c) == NULL);
        CHECK_EQ_U64(cfg.ms[TMO_READ], 2000);
        CHECK_EQ_U64(cfg.ms[TMO_WRITE], 15000);
        CHECK_EQ_INT(cfg.nupstream, 0); /* cli_parse then adds 127.0.0.1:9001 */
        CHECK_EQ_STR(cfg.access_log, "-");
        conf_free(c);
    }
    /* anchors and aliases are YAML's own: allowed */
    c = GOOD("timeouts: {read: &r 3s, write: *r}\n");
    if (c) {
        CHECK_EQ_U64(c->timeouts.ms[TMO_WRITE], 3000);
        conf_free(c);
    }
}

TEST(example_file_is_valid)
{
    char *errors = NULL;
    struct conf *c = conf_load("examples/hourglass.yaml", &errors);
    if (!CHECK(c != NULL))
        fprintf(stderr, "%s", errors ? errors : "");
    conf_free(c);
    free(errors);
}

/* -------------------------------------------------------------- errors */

#define POOL "pools: {web: {servers: [127.0.0.1:9001]}, static: {servers: [127.0.0.1:9002]}}\n"

TEST(unknown_keys)
{
    BAD("listen: [127.0.0.1:8080]\nlisten_on: x\n",
        "2:1: listen_on: unknown key (expected one of: listen, timeouts, limits, access_log, "
        "pools, routes, workers, deadline_header, forward, resolver, tls)");
    BAD("timeouts:\n  read: 1s\n  raed: 2s\n",
        "3:3: timeouts.raed: unknown key (expected one of: connect, write, read, total, header, "
        "body, send, idle, upstream_idle, dns, tunnel_idle, tunnel_max, handshake, queue)");
    BAD("pools:\n  web:\n    servers: [127.0.0.1:1]\n    balancing: p2c\n",
        "4:5: pools.web.balancing: unknown key (expected one of: servers, balance, "
        "max_connections, keepalive, health, budget, tls, protocol, slow_start, resolve, "
        "max_requests)");
    BAD(POOL "routes:\n  - pool: web\n    retry: {attempts: 2, on_status: [503]}\n",
        "4:26: routes[0].retry.on_status: unknown key (expected one of: attempts, on, "
        "per_try_timeout, backoff, methods, max_body, min_time_left)");
    BAD("pools: {web: {servers: [{address: 127.0.0.1:1, wieght: 2}]}}\n",
        "1:48: pools.web.servers[0].wieght: unknown key (expected one of: address, weight, srv)");
}

TEST(wrong_types)
{
    BAD("listen: 127.0.0.1:8080\n",
        "1:9: listen: expected a list of ADDR:PORT such as 127.0.0.1:8080 or [::]:80, got "
        "\"127.0.0.1:8080\"");
    BAD("timeouts: [1s]\n",
        "1:11: timeouts: expected a mapping of timeouts (connect, read, total, ...), got a list");
    BAD("timeouts:\n  read: {seconds: 1}\n",
        "2:9: timeouts.read: expected a duration such as 250ms, 1.5s, 2m or 30 (seconds), got "
        "a mapping");
    BAD("limits: {max_headers: many}\n",
        "1:23: limits.max_headers: expected a whole number from 1 to 256, got \"many\"");
    BAD("access_log:\n", "1:12: access_log: expected a file path, - or off, got nothing");
    BAD("pools: [web]\n", "1:8: pools: expected a mapping of pool names to pools, got a list");
    BAD(POOL "routes:\n  pool: web\n",
        "3:3: routes: expected a list of routes, got a mapping");
    BAD(POOL "routes: [{pool: [web]}]\n",
        "2:17: routes[0].pool: expected the name of a pool, got a list");
    BAD("- listen\n",
        "1:1: expected a mapping of top-level keys (listen, timeouts, limits, access_log, "
        "pools, routes, workers, deadline_header, forward, resolver, tls), got a list");
}

TEST(missing_pool)
{
    BAD(POOL "routes:\n  - path: /api\n    pool: api\n",
        "4:11: routes[0].pool: no pool named \"api\" (pools: web, static)");
    BAD("routes:\n  - pool: web\n",
        "2:11: routes[0].pool: no pool named \"web\" (the file declares no pools)");
    BAD(POOL "routes:\n  - path: /api\n",
        "3:5: routes[0].pool: missing; expected the name of a pool");
}

TEST(duplicates)
{
    BAD(POOL "routes:\n"
             "  - {path: /a, pool: web}\n"
             "  - {host: x.org, path: /a, pool: web}\n"
             "  - {path: /a, pool: static}\n",
        "5:5: routes[2]: same host and path as routes[0] (line 3): host (any), path /a");
    BAD(POOL "routes:\n"
             "  - {host: X.org, pool: web}\n"
             "  - {host: x.ORG, path: /, pool: static}\n",
        "4:5: routes[1]: same host and path as routes[0] (line 3): host x.org, path /");
    BAD("timeouts:\n  read: 1s\n  read: 2s\n",
        "3:3: timeouts.read: given twice (first on line 2)");
    BAD("pools:\n  web: {servers: [127.0.0.1:1]}\n  web: {servers: [127.0.0.1:2]}\n",
        "3:3: pools.web: given twice (first on line 2)");
    BAD("pools:\n  web:\n    servers:\n      - 127.0.0.1:1\n      - address: 127.0.0.1:1\n",
        "5:18: pools.web.servers[1].address: 127.0.0.1:1 is listed twice in this pool "
        "(first on line 4)");
    BAD("listen: [127.0.0.1:8080, 127.0.0.1:8080]\n",
        "1:26: listen[1]: 127.0.0.1:8080 is listed twice (first on line 1)");
    BAD(POOL "routes: [{pool: web, retry: {on: [reset, 503, reset]}}]\n",
        "2:47: routes[0].retry.on[2]: reset is listed twice");
}

TEST(bad_durations)
{
    BAD("timeouts: {connect: 0}\n",
        "1:21: timeouts.connect: expected a duration longer than 0, got \"0\"");
    BAD("timeouts: {connect: 0ms}\n",
        "1:21: timeouts.connect: expected a duration longer than 0, got \"0ms\"");
    BAD("timeouts: {total: 5x}\n",
        "1:19: timeouts.total: expected a duration such as 250ms, 1.5s, 2m or 30 (seconds), "
        "got \"5x\"");
    BAD("timeouts: {total: -1s}\n",
        "1:19: timeouts.total: expected a duration such as 250ms, 1.5s, 2m or 30 (seconds), "
        "got \"-1s\"");
    BAD(POOL "routes: [{pool: web, hedge: {delay: 0.0001s}}]\n",
        "2:37: routes[0].hedge.delay: expected a duration such as 250ms, 1.5s, 2m or 30 "
        "(seconds), got \"0.0001s\"");
    BAD("pools: {web: {servers: [127.0.0.1:1], keepalive: {idle_timeout: 0s}}}\n",
        "1:65: pools.web.keepalive.idle_timeout: expected a duration longer than 0, got \"0s\"");
}

TEST(pools_and_servers)
{
    BAD("pools:\n  web: {balance: p2c}\n",
        "2:3: pools.web.servers: missing; a pool needs at least one server");
    BAD("pools:\n  web: {servers: []}\n",
        "2:18: pools.web.servers: expected at least one server");
    BAD("pools:\n  web:\n    servers:\n      - {address: 127.0.0.1:1, weight: 0}\n",
        "4:40: pools.web.servers[0].weight: expected a whole number from 1 to 1000, got \"0\"");
    BAD("pools:\n  web:\n    servers:\n      - {address: 127.0.0.1:1, weight: 1001}\n",
        "4:40: pools.web.servers[0].weight: expected a whole number from 1 to 1000, got \"1001\"");
    BAD("pools:\n  web:\n    servers:\n      - {weight: 2}\n",
        "4:9: pools.web.servers[0].address: missing; expected HOST:PORT");
    BAD("pools: {web: {servers: [127.0.0.1]}}\n",
        "1:25: pools.web.servers[0]: expected HOST:PORT, got \"127.0.0.1\"");
    BAD("pools: {web: {servers: [127.0.0.1:70000]}}\n",
        "1:25: pools.web.servers[0]: expected HOST:PORT, got \"127.0.0.1:70000\": port must be "
        "a number from 1 to 65535");
    BAD("pools: {web: {servers: [127.0.0.1:1], balance: random}}\n",
        "1:48: pools.web.balance: expected one of round_robin, least_conn, p2c, ewma, got \"random\"");
    BAD("pools: {\"w b\": {servers: [127.0.0.1:1]}}\n",
        "1:9: pools.w b: expected a pool name of 1 to 63 letters, digits, '_' or '-'");
    BAD("pools:\n  web:\n    servers: [127.0.0.1:1]\n    health: {active: {interval: 1s}}\n",
        "4:22: pools.web.health.active.path: missing; expected the path to request, such as "
        "/healthz");
    BAD("pools:\n  web:\n    servers: [127.0.0.1:1]\n"
        "    health: {active: {path: /h, interval: 1s, timeout: 2s}}\n",
        "4:56: pools.web.health.active.timeout: expected a duration no longer than interval "
        "(1000ms), got 2000ms");
    BAD("pools:\n  web:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {ejection: 1m, max_ejection: 30s}}\n",
        "4:52: pools.web.health.passive.max_ejection: expected a duration no shorter than "
        "ejection (60000ms), got 30000ms");
    BAD("pools:\n  web:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {max_ejected_percent: 101}}\n",
        "4:45: pools.web.health.passive.max_ejected_percent: expected a whole number from 0 to "
        "100, got \"101\"");
}

/* Servers written as host names and SRV names: kept as written, never
 * resolved (no DNS server is asked anything while a file is read). */
TEST(server_names)
{
    struct conf *c = GOOD("pools:\n"
                          "  web:\n"
                          "    servers:\n"
                          "      - Backend.Internal:8080\n"
                          "      - {address: \"[::1]:81\", weight: 3}\n"
                          "      - {address: never.resolves.invalid:80, weight: 2}\n"
                          "      - {srv: _HTTP._tcp.api.internal}\n"
                          "    resolve: {min_interval: 100ms, max_interval: 10s}\n"
                          "  other: {servers: [127.0.0.1:1], resolve: {min_interval: 10m}}\n");
    if (!c)
        return;
    const struct conf_pool *w = &c->pools[0];
    if (CHECK_EQ_INT(w->nservers, 4)) {
        const struct val_server *a = &w->servers[0].addr;
        CHECK_EQ_STR(a->name, "backend.internal");
        CHECK_EQ_INT(a->port, 8080);
        CHECK_EQ_INT(a->addr.len, 0);
        CHECK(!a->srv);
        CHECK_EQ_STR(a->text, "backend.internal:8080");
        CHECK_EQ_STR(w->servers[0].address, "Backend.Internal:8080");
        CHECK_EQ_STR(w->servers[1].addr.name, "");   /* an IP literal */
        CHECK_EQ_STR(w->servers[1].addr.text, "[::1]:81");
        CHECK_EQ_INT(w->servers[1].weight, 3);
        CHECK_EQ_STR(w->servers[2].addr.name, "never.resolves.invalid");
        CHECK_EQ_INT(w->servers[2].weight, 2);
        CHECK(w->servers[3].addr.srv);
        CHECK_EQ_STR(w->servers[3].addr.name, "_http._tcp.api.internal");
        CHECK_EQ_INT(w->servers[3].addr.port, 0);
        CHECK_EQ_INT(w->servers[3].weight, 1);
    }
    CHECK(conf_pool_has_names(w));
    CHECK_EQ_U64(w->resolve_min_ms, 100);
    CHECK_EQ_U64(w->resolve_max_ms, 10000);
    CHECK(!conf_pool_has_names(&c->pools[1]));
    CHECK_EQ_U64(c->pools[1].resolve_min_ms, 600000);   /* max follows a larger min */
    CHECK_EQ_U64(c->pools[1].resolve_max_ms, 600000);
    conf_free(c);
    c = GOOD("pools: {p: {servers: [a.test:1]}}\n");
    if (c) {
        CHECK_EQ_U64(c->pools[0].resolve_min_ms, 1000);   /* the defaults */
        CHECK_EQ_U64(c->pools[0].resolve_max_ms, 300000);
    }
    conf_free(c);

    BAD("pools: {web: {servers: [\"bad_host!:80\"]}}\n",
        "1:25: pools.web.servers[0]: expected HOST:PORT, got \"bad_host!:80\": the host is "
        "neither an IP address nor a host name");
    BAD("pools: {web: {servers: [\"[a.test]:80\"]}}\n",
        "1:25: pools.web.servers[0]: expected [IPV6]:PORT, got \"[a.test]:80\"");
    BAD("pools: {web: {servers: [a.test:1, A.Test:1]}}\n",
        "1:35: pools.web.servers[1]: a.test:1 is listed twice in this pool (first on line 1)");
    BAD("pools: {web: {servers: [{srv: _http._tcp.x, weight: 2}]}}\n",
        "1:53: pools.web.servers[0].weight: the SRV records give the weights");
    BAD("pools: {web: {servers: [{srv: _http._tcp.x, address: x:1}]}}\n",
        "1:31: pools.web.servers[0].srv: a server has an address or an SRV name, not both");
    BAD("pools: {web: {servers: [{srv: \"_http._tcp.x:80\"}]}}\n",
        "1:31: pools.web.servers[0].srv: expected an SRV name such as _http._tcp.example.com, "
        "got \"_http._tcp.x:80\"");
    BAD("pools: {web: {servers: [a.test:1], resolve: {min_interval: 50ms}}}\n",
        "1:60: pools.web.resolve.min_interval: expected a duration of at least 100ms, got 50ms");
    BAD("pools: {web: {servers: [a.test:1], resolve: {min_interval: 2s, max_interval: 1s}}}\n",
        "1:78: pools.web.resolve.max_interval: expected a duration no shorter than min_interval "
        "(2000ms), got 1000ms");
    BAD("pools: {web: {servers: [a.test:1], resolve: {every: 1s}}}\n",
        "1:46: pools.web.resolve.every: unknown key (expected one of: min_interval, "
        "max_interval)");
}

TEST(routes)
{
    BAD(POOL "routes: [{path: api, pool: web}]\n",
        "2:17: routes[0].path: expected a path prefix starting with /, got \"api\"");
    BAD(POOL "routes: [{host: \"exa mple.com\", pool: web}]\n",
        "2:17: routes[0].host: expected a host name such as example.com or *.example.com, got "
        "\"exa mple.com\"");
    BAD(POOL "routes: [{host: \"a.*.com\", pool: web}]\n",
        "2:17: routes[0].host: expected a host name such as example.com or *.example.com, got "
        "\"a.*.com\"");
    BAD(POOL "routes: [{pool: web, retry: {attempts: 11}}]\n",
        "2:40: routes[0].retry.attempts: expected a whole number from 1 to 10, got \"11\"");
    BAD(POOL "routes: [{pool: web, retry: {on: [timeout]}}]\n",
        "2:35: routes[0].retry.on[0]: expected connect_failure, connect_timeout, reset, "
        "read_timeout or a status from 400 to 599, got \"timeout\"");
    BAD(POOL "routes: [{pool: web, retry: {on: [200]}}]\n",
        "2:35: routes[0].retry.on[0]: expected connect_failure, connect_timeout, reset, "
        "read_timeout or a status from 400 to 599, got \"200\"");
    BAD(POOL "routes: [{pool: web, retry: {methods: some}}]\n",
        "2:39: routes[0].retry.methods: expected one of idempotent, all, got \"some\"");
    BAD(POOL "routes: [{pool: web, retry: {backoff: {base: 1s, max: 10ms}}}]\n",
        "2:55: routes[0].retry.backoff.max: expected a duration no shorter than base (1000ms), "
        "got 10ms");
    BAD(POOL "routes: [{pool: web, hedge: {}}]\n",
        "2:29: routes[0].hedge.delay: missing; expected a duration such as 250ms, 1.5s, 2m or "
        "30 (seconds) or a percentile such as p95");
    BAD(POOL "routes: [{pool: web, hedge: {delay: p100}}]\n",
        "2:37: routes[0].hedge.delay: expected a duration such as 50ms, or a percentile such as "
        "p95 (p50 to p99.9), got \"p100\"");
    BAD(POOL "routes: [{pool: web, timeouts: {header: 1s}}]\n",
        "2:41: routes[0].timeouts.header: the header timeout runs before a route is chosen; set "
        "it in the top-level timeouts");
    BAD(POOL "routes: [{pool: web, budget: {percent: 10}}]\n",
        "2:30: routes[0].budget: the retry budget is shared by a pool's routes; set it as "
        "pools.NAME.budget");
}

TEST(limits)
{
    BAD("limits: {max_request_line: 100}\n",
        "1:28: limits.max_request_line: expected a size from 256 bytes to 24k, got \"100\"");
    BAD("limits: {max_header_size: 1m}\n",
        "1:27: limits.max_header_size: expected a size from 256 bytes to 48k, got \"1m\"");
    BAD("limits: {max_connections: 0}\n",
        "1:27: limits.max_connections: expected a whole number from 1 to 1000000, got \"0\"");
    BAD("limits: {max_concurrent_streams: 0}\n",
        "1:34: limits.max_concurrent_streams: expected a whole number from 1 to 10000, got \"0\"");
    BAD("limits: {max_concurrent_streams: 10001}\n",
        "1:34: limits.max_concurrent_streams: expected a whole number from 1 to 10000, got "
        "\"10001\"");
    BAD("limits: {max_body_size: -1}\n",
        "1:25: limits.max_body_size: expected a size such as 0 (unlimited), 8192, 64k or "
        "10MiB, got \"-1\"");
}

/* tls.ticket_rotation and tls.ticket_lifetime: defaults 1h and 1h, bounds,
 * and at most TKEY_SLOTS - 2 rotations per lifetime. */
TEST(ticket_keys)
{
    struct cfg cfg;
    cli_defaults(&cfg);
    CHECK_EQ_INT((int)cfg.ticket_rotation_ms, 3600000);
    CHECK_EQ_INT((int)cfg.ticket_lifetime_ms, 3600000);
    struct conf *c = GOOD("tls: {ticket_rotation: 10m, ticket_lifetime: 5m}\n");
    if (c) {
        conf_apply(c, &cfg);
        CHECK_EQ_INT((int)cfg.ticket_rotation_ms, 600000);
        CHECK_EQ_INT((int)cfg.ticket_lifetime_ms, 300000);
    }
    conf_free(c);
    c = GOOD("tls: {ticket_rotation: 1s, ticket_lifetime: 14s}\n");
    conf_free(c);
    BAD("tls: {ticket_rotation: 500ms}\n",
        "1:24: tls.ticket_rotation: expected a duration from 1s to 24h");
    BAD("tls: {ticket_lifetime: 169h}\n",
        "1:24: tls.ticket_lifetime: expected a duration from 1s to 168h");
    BAD("tls: {ticket_rotation: 1s, ticket_lifetime: 15s}\n",
        "1:45: tls.ticket_lifetime: a ticket lifetime of 15000 ms needs more than 16 keys kept "
        "at a rotation every 1000 ms: at most 14 rotations per lifetime");
    BAD("tls: {ticket_rotation: 1m}\n",
        "1:24: tls.ticket_rotation: a ticket lifetime of 3600000 ms needs more than 16 keys "
        "kept at a rotation every 60000 ms: at most 14 rotations per lifetime");
    BAD("tls: {ticket_keys: x}\n",
        "1:7: tls.ticket_keys: unknown key (expected one of: ticket_rotation, ticket_lifetime)");
}

/* limits.max_concurrent_streams: the file's, else the default (100). */
TEST(max_concurrent_streams)
{
    struct conf *c = GOOD("limits: {max_concurrent_streams: 250}\n");
    struct cfg cfg;
    cli_defaults(&cfg);
    CHECK_EQ_INT(cfg.max_streams, 100);
    if (c) {
        CHECK_EQ_INT(c->limits.max_concurrent_streams, 250);
        conf_apply(c, &cfg);
        CHECK_EQ_INT(cfg.max_streams, 250);
    }
    conf_free(c);
    c = GOOD("limits: {max_headers: 50}\n");
    cli_defaults(&cfg);
    if (c)
        conf_apply(c, &cfg);
    CHECK_EQ_INT(cfg.max_streams, 100);   /* not set: the default stays */
    conf_free(c);
}

TEST(h2_pools_and_grpc_routes)
{
    struct conf *c = GOOD("pools:\n  g: {protocol: h2, servers: [\"127.0.0.1:9001\"]}\n"
                          "  w: {servers: [\"127.0.0.1:9002\"]}\n"
                          "routes:\n"
                          "  - {path: /a, pool: g, grpc: {timeout: ignore, max_timeout: 2s, "
                          "streaming: true}}\n"
                          "  - {path: /, pool: w}\n");
    if (c) {
        CHECK(c->pools[0].h2);
        CHECK(c->pools[0].tls.c.h2);   /* ALPN h2 when it speaks TLS */
        CHECK(!c->pools[1].h2);
        CHECK(c->routes[0].grpc.ignore);
        CHECK_EQ_U64(c->routes[0].grpc.max_timeout_ms, 2000);
        CHECK(c->routes[0].grpc.streaming);
        CHECK(!c->routes[1].grpc.ignore);   /* honour by default */
        CHECK_EQ_U64(c->routes[1].grpc.max_timeout_ms, 0);
        CHECK(!c->routes[1].grpc.streaming);
    }
    conf_free(c);
    BAD("pools:\n  g: {protocol: h3, servers: [\"127.0.0.1:9001\"]}\n",
        "2:17: pools.g.protocol: expected one of http/1.1, h2, got \"h3\"");
    BAD("pools:\n  g: {servers: [\"127.0.0.1:9001\"]}\nroutes:\n"
        "  - {path: /, pool: g, grpc: {timeout: never}}\n",
        "4:40: routes[0].grpc.timeout: expected one of honour, ignore, got \"never\"");
    BAD("pools:\n  g: {servers: [\"127.0.0.1:9001\"]}\nroutes:\n"
        "  - {path: /, pool: g, grpc: {deadline: 1s}}\n",
        "4:31: routes[0].grpc.deadline: unknown key (expected one of: timeout, max_timeout, "
        "streaming)");
}

/* Issue 17, slow and failing servers: what passive health counts
 * (health.passive.on), balance: ewma, slow_start. */
TEST(slow_servers_keys)
{
    struct conf *c = GOOD("pools:\n"
                          "  a:\n"
                          "    servers: [127.0.0.1:9001, 127.0.0.1:9002]\n"
                          "    balance: ewma\n"
                          "    slow_start: 30s\n"
                          "    health:\n"
                          "      passive: {failures: 3, on: [connect_failure, try_timeout, 5xx, "
                          "429, \"404\"]}\n"
                          "  b:\n"
                          "    servers: [127.0.0.1:9003]\n"
                          "    health: {passive: {on: [reset, read_timeout]}}\n"
                          "  c:\n"
                          "    servers: [127.0.0.1:9004]\n"
                          "    health: {passive: {on: [503]}}\n");
    if (c && CHECK_EQ_INT(c->npools, 3)) {
        const struct conf_pool *a = &c->pools[0], *b = &c->pools[1], *d = &c->pools[2];
        CHECK_EQ_INT(a->balance, CONF_BALANCE_EWMA);
        CHECK_EQ_U64(a->slow_start_ms, 30000);
        CHECK_EQ_INT(a->passive.failures, 3);
        CHECK_EQ_INT(a->passive.on, CONF_PASSIVE_CONNECT_FAILURE | CONF_PASSIVE_TRY_TIMEOUT |
                                        CONF_PASSIVE_5XX);
        if (CHECK_EQ_INT(a->passive.nstatus, 2)) {
            CHECK_EQ_INT(a->passive.status[0], 429);
            CHECK_EQ_INT(a->passive.status[1], 404);
        }
        CHECK_EQ_INT(b->passive.on, CONF_PASSIVE_RESET | CONF_PASSIVE_READ_TIMEOUT);
        CHECK_EQ_INT(b->passive.nstatus, 0);
        CHECK_EQ_INT(b->balance, CONF_BALANCE_ROUND_ROBIN);
        CHECK_EQ_U64(b->slow_start_ms, 0);
        CHECK_EQ_INT(d->passive.on, 0);   /* statuses only */
        if (CHECK_EQ_INT(d->passive.nstatus, 1))
            CHECK_EQ_INT(d->passive.status[0], 503);
    }
    conf_free(c);
    /* at most 16 statuses */
    c = GOOD("pools: {a: {servers: [127.0.0.1:1], health: {passive: {on: [500, 501, 502, 503, "
             "504, 505, 506, 507, 508, 509, 510, 511, 512, 513, 514, 515]}}}}\n");
    if (c)
        CHECK_EQ_INT(c->pools[0].passive.nstatus, 16);
    conf_free(c);
    BAD("pools: {a: {servers: [127.0.0.1:1], health: {passive: {on: [500, 501, 502, 503, "
        "504, 505, 506, 507, 508, 509, 510, 511, 512, 513, 514, 515, 516]}}}}\n",
        "1:141: pools.a.health.passive.on[16]: at most 16 statuses");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {on: [reset, timeout]}}\n",
        "4:36: pools.a.health.passive.on[1]: expected connect_failure, reset, read_timeout, "
        "try_timeout, 5xx or a status from 400 to 599, got \"timeout\"");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {on: [200]}}\n",
        "4:29: pools.a.health.passive.on[0]: expected connect_failure, reset, read_timeout, "
        "try_timeout, 5xx or a status from 400 to 599, got \"200\"");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {on: [5xx, reset, 5xx]}}\n",
        "4:41: pools.a.health.passive.on[2]: 5xx is listed twice");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {on: [503, \"503\"]}}\n",
        "4:34: pools.a.health.passive.on[1]: 503 is listed twice");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {on: []}}\n",
        "4:28: pools.a.health.passive.on: expected at least one of connect_failure, reset, "
        "read_timeout, try_timeout, 5xx or a status from 400 to 599");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n"
        "    health: {passive: {on: reset}}\n",
        "4:28: pools.a.health.passive.on: expected a list of failures that count "
        "(connect_failure, 5xx, ...), got \"reset\"");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n    slow_start: 0\n",
        "4:17: pools.a.slow_start: expected a duration longer than 0, got \"0\"");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n    slow_start: fast\n",
        "4:17: pools.a.slow_start: expected a duration such as 250ms, 1.5s, 2m or 30 (seconds), "
        "got \"fast\"");
    BAD("pools:\n  a:\n    servers: [127.0.0.1:1]\n    balance: EWMA\n",
        "4:14: pools.a.balance: expected one of round_robin, least_conn, p2c, ewma, got "
        "\"EWMA\"");
}

TEST(syntax_and_files)
{
    BAD("timeouts: [1s, 2s\n",
        "2:1: syntax: did not find expected ',' or ']' while parsing a flow sequence that "
        "starts on line 1");
    BAD("timeouts:\n  read: 1s\n bad\n",
        "3:2: syntax: did not find expected key while parsing a block mapping that starts on "
        "line 1");
    BAD("x: *nope\n", "1:4: syntax: found undefined alias");
    BAD("timeouts: {read: 1s}\n---\ntimeouts: {read: 2s}\n",
        "3:1: a second YAML document; expected only one");

    char *errors = NULL;
    CHECK(load_text("", &errors) == NULL);
    char want[256];
    snprintf(want, sizeof want,
             "%s: the file is empty; expected a mapping of top-level keys (listen, timeouts, "
             "limits, access_log, pools, routes)\n",
             tmp_path);
    CHECK_EQ_STR(errors, want);
    free(errors);

    errors = NULL;
    CHECK(conf_load("/nonexistent/hourglass.yaml", &errors) == NULL);
    CHECK_EQ_STR(errors, "/nonexistent/hourglass.yaml: cannot read: No such file or directory\n");
    free(errors);
}

TEST(many_errors_in_file_order)
{
    char *errors = NULL;
    struct conf *c = load_text("timeouts: {read: x}\n"           /* 1 */
                               "pools: {a: {servers: [1]}}\n"    /* 2 */
                               "routes: [{pool: b}]\n"           /* 3 */
                               "limits: {max_headers: 0}\n",     /* 4 */
                               &errors);
    CHECK(c == NULL);
    int lines = 0;
    for (const char *p = errors; p && *p; p++)
        lines += *p == '\n';
    CHECK_EQ_INT(lines, 4);
    const char *a = errors ? strstr(errors, ":1:") : NULL, *b = errors ? strstr(errors, ":2:") : NULL;
    const char *d = errors ? strstr(errors, ":3:") : NULL, *e = errors ? strstr(errors, ":4:") : NULL;
    CHECK(a && b && d && e && a < b && b < d && d < e);
    conf_free(c);
    free(errors);

    /* more than 20: the first 20, then a count */
    char big[4096] = "timeouts:\n";
    for (int i = 0; i < 25; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "  k%d: 1s\n", i);
    errors = NULL;
    c = load_text(big, &errors);
    CHECK(c == NULL);
    lines = 0;
    for (const char *p = errors; p && *p; p++)
        lines += *p == '\n';
    CHECK_EQ_INT(lines, 21);
    CHECK(errors && strstr(errors, ": 5 more errors not shown\n"));
    free(errors);
}

TEST(alias_bomb_is_bounded)
{
    /* 1100 aliases of a route whose retry list is an alias of 1000 items:
     * 1.1 million nodes to visit from a 13 kB file; the walk stops at 1M */
    size_t cap = 64 << 10;
    char *text = malloc(cap);
    if (!CHECK(text != NULL))
        return;
    strcpy(text, "pools: {p: {servers: [127.0.0.1:1]}}\nx: &o [reset");
    for (int i = 1; i < 1000; i++)
        strcat(text, ",reset");
    strcat(text, "]\nroutes: [&r {pool: p, retry: {on: *o}}");
    for (int i = 1; i < 1100; i++)
        strcat(text, ",*r");
    strcat(text, "]\n");
    char *errors = NULL;
    struct conf *c = load_text(text, &errors);
    CHECK(c == NULL);
    CHECK(errors && strstr(errors, ": the document expands past 1000000 nodes (aliases?); stopped there\n"));
    conf_free(c);
    free(errors);
    free(text);
}

/* -------------------------------------------------- the command line */

#define ARGC(v) ((int)(sizeof(v) / sizeof *(v)) - 1)

static const char cli_file[] =
    "listen: [127.0.0.1:18090]\n"
    "timeouts: {read: 5s, write: 6s, total: 1m}\n"
    "limits: {max_headers: 20}\n"
    "access_log: \"off\"\n"
    "pools: {web: {servers: [127.0.0.1:9301, 127.0.0.1:9302]}}\n";

TEST(flags_override_the_file)
{
    const char *path = write_tmp(cli_file);
    char file[64];
    strcpy(file, path);
    struct cfg cfg;

    /* the file alone */
    char *a1[] = {"hourglass", "--config", file, NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a1), a1), 0)) {
        CHECK(cfg.conf != NULL);
        CHECK_EQ_U64(cfg.ms[TMO_READ], 5000);
        CHECK_EQ_U64(cfg.ms[TMO_WRITE], 6000);
        CHECK_EQ_U64(cfg.ms[TMO_TOTAL], 60000);
        CHECK_EQ_U64(cfg.ms[TMO_CONNECT], 1000); /* not in the file: the default */
        CHECK_EQ_INT(cfg.max_headers, 20);
        CHECK_EQ_STR(cfg.access_log, "off");
        if (CHECK_EQ_INT(cfg.nlisten, 1))
            CHECK_EQ_STR(cfg.listen[0].text, "127.0.0.1:18090");
        if (CHECK_EQ_INT(cfg.nupstream, 2))
            CHECK_EQ_STR(cfg.upstream[1].text, "127.0.0.1:9302");
    }
    cli_free(&cfg);

    /* flags win, before or after --config */
    char *a2[] = {"hourglass", "--read-timeout", "250ms", "--config", file, "--listen",
                  "127.0.0.1:18091", "--upstream", "127.0.0.1:9401", "--access-log", "-",
                  "--max-headers", "30", NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a2), a2), 0)) {
        CHECK_EQ_U64(cfg.ms[TMO_READ], 250);
        CHECK_EQ_U64(cfg.ms[TMO_WRITE], 6000); /* still the file's */
        CHECK_EQ_INT(cfg.max_headers, 30);
        CHECK_EQ_STR(cfg.access_log, "-");
        if (CHECK_EQ_INT(cfg.nlisten, 1))
            CHECK_EQ_STR(cfg.listen[0].text, "127.0.0.1:18091");
        if (CHECK_EQ_INT(cfg.nupstream, 1)) /* replaces the pool's servers */
            CHECK_EQ_STR(cfg.upstream[0].text, "127.0.0.1:9401");
    }
    cli_free(&cfg);

    /* --check-config / -t: 1 (exit 0) after "FILE: ok" */
    char *a3[] = {"hourglass", "--check-config", file, NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a3), a3), 1);
    CHECK(cfg.conf == NULL);
    char *a4[] = {"hourglass", "-t", file, NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a4), a4), 1);

    fprintf(stderr, "(cli_parse error messages below are expected)\n");
    /* a bad flag with a good file: 2, nothing kept */
    char *a5[] = {"hourglass", "--config", file, "--read-timeout", "soon", NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a5), a5), 2);
    CHECK(cfg.conf == NULL);
    char *a6[] = {"hourglass", "--config", file, "-t", file, NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a6), a6), 2);
    char *a7[] = {"hourglass", "--config", NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a7), a7), 2);
    unlink(file);

    /* a bad file: 2 */
    path = write_tmp("timeouts: {read: 0}\n");
    strcpy(file, path);
    char *a8[] = {"hourglass", "--config", file, NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a8), a8), 2);
    char *a9[] = {"hourglass", "-t", file, NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a9), a9), 2);
    unlink(file);

    /* still fine without a file afterwards (getopt state reset) */
    char *a10[] = {"hourglass", "--read-timeout", "2s", NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a10), a10), 0)) {
        CHECK_EQ_U64(cfg.ms[TMO_READ], 2000);
        CHECK(cfg.conf == NULL);
        CHECK_EQ_STR(cfg.upstream[0].text, "127.0.0.1:9001");
    }
    cli_free(&cfg);
}

/* A host name among the default pool's servers reaches cfg->upstream as a
 * name; so does one given with --upstream. */
TEST(names_reach_the_upstreams)
{
    const char *path = write_tmp("pools: {web: {servers: [api.test:9001, 127.0.0.1:9002]}}\n");
    char file[64];
    strcpy(file, path);
    struct cfg cfg;
    char *a1[] = {"hourglass", "--config", file, NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a1), a1), 0) && CHECK_EQ_INT(cfg.nupstream, 2)) {
        CHECK_EQ_STR(cfg.upstream[0].name, "api.test");
        CHECK_EQ_STR(cfg.upstream[0].text, "api.test:9001");
        CHECK_EQ_STR(cfg.upstream[1].name, "");
    }
    cli_free(&cfg);
    char *a2[] = {"hourglass", "--upstream", "Other.Test:80", NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a2), a2), 0) && CHECK_EQ_INT(cfg.nupstream, 1))
        CHECK_EQ_STR(cfg.upstream[0].text, "other.test:80");
    cli_free(&cfg);
    /* -t on a file whose names resolve nowhere: fine (nothing is resolved) */
    char *a3[] = {"hourglass", "-t", file, NULL};
    CHECK_EQ_INT(cli_parse(&cfg, ARGC(a3), a3), 1);
    unlink(file);
}

/* Issue 18's keys: a listener's trust_request_id, a route's server_timing
 * (both off by default). */
TEST(observe_keys)
{
    char *errors = NULL;
    struct conf *c = load_text("listen:\n  - 127.0.0.1:8080\n"
                               "  - {address: 127.0.0.1:8081, trust_request_id: true}\n"
                               POOL "routes:\n  - {pool: web, path: /a, server_timing: true}\n"
                               "  - {pool: static}\n", &errors);
    if (!CHECK(c != NULL)) {
        fprintf(stderr, "%s", errors ? errors : "");
        free(errors);
        return;
    }
    CHECK(!c->listen_trust_rid[0] && c->listen_trust_rid[1]);
    CHECK(!c->listen_trust[1]);   /* its own key: the deadline header is not trusted */
    CHECK(c->routes[0].server_timing && !c->routes[1].server_timing);
    struct cfg cfg;
    cli_defaults(&cfg);
    conf_apply(c, &cfg);
    CHECK(!cfg.listen_trust_rid[0] && cfg.listen_trust_rid[1]);
    conf_free(c);
    c = load_text("listen:\n  - {address: 127.0.0.1:8081, trust_request_id: maybe}\n", &errors);
    CHECK(c == NULL);
    CHECK(errors && strstr(errors, "trust_request_id"));
    free(errors);
}

/* Issue 6's operations keys: workers, the deadline header's name, a
 * listener's trust of it, a route's off switch. */
TEST(operations_keys)
{
    char *errors = NULL;
    struct conf *c = load_text("workers: 3\ndeadline_header: X-Budget\n"
                               "listen:\n  - 127.0.0.1:8080\n"
                               "  - {address: 127.0.0.1:8081, trust_deadline_header: true}\n"
                               POOL "routes:\n  - {pool: web, path: /a, deadline_header: false}\n"
                               "  - {pool: static}\n", &errors);
    if (!CHECK(c != NULL)) {
        fprintf(stderr, "%s", errors ? errors : "");
        free(errors);
        return;
    }
    CHECK_EQ_INT(c->workers, 3);
    CHECK_EQ_STR(c->deadline_header, "X-Budget");
    CHECK_EQ_INT(c->nlisten, 2);
    CHECK(!c->listen_trust[0]);
    CHECK(c->listen_trust[1]);
    CHECK_EQ_STR(c->listen[1].text, "127.0.0.1:8081");
    CHECK(!c->routes[0].deadline_header);
    CHECK(c->routes[1].deadline_header);
    struct cfg cfg;
    cli_defaults(&cfg);
    conf_apply(c, &cfg);
    CHECK_EQ_INT(cfg.workers, 3);
    CHECK_EQ_STR(cfg.deadline_header, "X-Budget");
    CHECK(!cfg.listen_trust[0] && cfg.listen_trust[1]);
    conf_free(c);

    c = load_text("workers: auto\ndeadline_header: off\n", &errors);
    if (CHECK(c != NULL)) {
        CHECK_EQ_INT(c->workers, CONF_WORKERS_AUTO);
        cli_defaults(&cfg);
        cfg.workers = 7;
        conf_apply(c, &cfg);
        CHECK_EQ_INT(cfg.workers, 0);   /* auto */
        CHECK(cfg.deadline_header == NULL);
    }
    conf_free(c);

    BAD("workers: 0\n", "1:10: workers: expected a whole number from 1 to 64, got \"0\"");
    BAD("workers: 65\n", "1:10: workers: expected a whole number from 1 to 64, got \"65\"");
    BAD("deadline_header: \"X Y\"\n",
        "1:18: deadline_header: expected a header name (letters, digits, - and _) or off, "
        "got \"X Y\"");
    BAD("listen:\n  - {address: 127.0.0.1:1, trust_deadline_header: maybe}\n",
        "2:51: listen[0].trust_deadline_header: expected true or false, got \"maybe\"");
    BAD("listen:\n  - {trust_deadline_header: true}\n",
        "2:5: listen[0].address: missing; expected ADDR:PORT");
    BAD(POOL "routes:\n  - {pool: web, deadline_header: 1}\n",
        "3:34: routes[0].deadline_header: expected true or false, got \"1\"");
}

/* Issue 7's keys: a forward listener, who may use it, where it may go. */
TEST(forward_keys)
{
    char *errors = NULL;
    struct conf *c = load_text("listen:\n  - 127.0.0.1:8080\n"
                               "  - {address: 127.0.0.1:3128, mode: forward}\n"
                               "forward:\n  allow_clients: [10.0.0.0/8, \"::1\"]\n"
                               "  allow_destinations: [127.0.0.0/8]\n"
                               "  connect_ports: [443, 8443]\n  auth_file: /etc/hg/users\n"
                               "resolver:\n  servers: [127.0.0.1:5353, \"[::1]:53\"]\n",
                               &errors);
    if (!CHECK(c != NULL)) {
        fprintf(stderr, "%s", errors ? errors : "");
        free(errors);
        return;
    }
    struct cfg cfg;
    cli_defaults(&cfg);
    CHECK_EQ_INT(cfg.fwd.nclients, 2);   /* default: loopback */
    CHECK_EQ_INT(cfg.fwd.nports, 1);
    conf_apply(c, &cfg);
    CHECK(!cfg.listen_forward[0] && cfg.listen_forward[1]);
    CHECK_EQ_INT(cfg.fwd.nclients, 2);
    CHECK_EQ_INT(cfg.fwd.clients[0].bits, 8);
    CHECK_EQ_INT(cfg.fwd.ndests, 1);
    CHECK_EQ_INT(cfg.fwd.nports, 2);
    CHECK_EQ_INT(cfg.fwd.ports[1], 8443);
    CHECK_EQ_STR(cfg.fwd.auth_file, "/etc/hg/users");
    CHECK_EQ_STR(cfg.fwd.resolver, "127.0.0.1:5353,[::1]:53");
    conf_free(c);

    BAD("listen:\n  - {address: 127.0.0.1:1, mode: sideways}\n",
        "2:34: listen[0].mode: expected one of reverse, forward, got \"sideways\"");
    BAD("forward:\n  allow_clients: [10.1.2.3/8]\n",
        "2:19: forward.allow_clients[0]: expected an address or network such as 10.0.0.0/8 or "
        "::1 (no host bits below the prefix), got \"10.1.2.3/8\"");
    BAD("forward:\n  connect_ports: [0]\n",
        "2:19: forward.connect_ports[0]: expected a whole number from 1 to 65535, got \"0\"");
    BAD("forward:\n  allow_client: []\n",
        "2:3: forward.allow_client: unknown key (expected one of: allow_clients, "
        "allow_destinations, connect_ports, auth_file)");
}

/* A listener's http2: on by default, off when said so, and off (never on)
 * on a forward proxy listener; --no-http2 turns it off on every one. */
TEST(http2_key)
{
    static const char text[] = "listen:\n  - 127.0.0.1:18080\n"
                               "  - {address: 127.0.0.1:18081, http2: false}\n"
                               "  - {address: 127.0.0.1:18082, http2: true}\n"
                               "  - {address: 127.0.0.1:13128, mode: forward}\n"
                               "  - {address: 127.0.0.1:13129, mode: forward, http2: false}\n";
    static const bool want[] = {true, false, true, false, false};
    struct conf *c = GOOD(text);
    if (!c)
        return;
    struct cfg cfg;
    cli_defaults(&cfg);
    conf_apply(c, &cfg);
    if (CHECK_EQ_INT(c->nlisten, 5) && CHECK_EQ_INT(cfg.nlisten, 5))
        for (unsigned i = 0; i < 5; i++)
            if (!CHECK(c->listen_http2[i] == want[i]) || !CHECK(cfg.listen_http2[i] == want[i]))
                fprintf(stderr, "    listen[%u]\n", i);
    conf_free(c);

    const char *path = write_tmp(text);
    char file[64];
    strcpy(file, path);
    char *a1[] = {"hourglass", "--config", file, "--no-http2", NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a1), a1), 0) && CHECK_EQ_INT(cfg.nlisten, 5))
        for (unsigned i = 0; i < 5; i++)
            CHECK(!cfg.listen_http2[i]);
    cli_free(&cfg);
    /* --listen replaces the file's listeners, with their own default */
    char *a2[] = {"hourglass", "--config", file, "--listen", "127.0.0.1:18090", NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a2), a2), 0) && CHECK_EQ_INT(cfg.nlisten, 1))
        CHECK(cfg.listen_http2[0]);
    cli_free(&cfg);
    unlink(file);

    BAD("listen:\n  - {address: 127.0.0.1:1, http2: maybe}\n",
        "2:35: listen[0].http2: expected true or false, got \"maybe\"");
    BAD("listen:\n  - {address: 127.0.0.1:1, mode: forward, http2: true}\n",
        "2:50: listen[0].http2: a forward proxy listener (mode: forward) does not offer HTTP/2");
}

/* A listener's defer_accept: whole seconds (off by default, or false);
 * --defer-accept sets it on every listener, over the file's. */
TEST(defer_accept_key)
{
    static const char text[] = "listen:\n  - 127.0.0.1:18080\n"
                               "  - {address: 127.0.0.1:18081, defer_accept: 1s}\n"
                               "  - {address: 127.0.0.1:18082, defer_accept: 30s}\n"
                               "  - {address: 127.0.0.1:18083, defer_accept: false}\n";
    static const unsigned want[] = {0, 1, 30, 0};
    struct conf *c = GOOD(text);
    if (!c)
        return;
    struct cfg cfg;
    cli_defaults(&cfg);
    conf_apply(c, &cfg);
    if (CHECK_EQ_INT(cfg.nlisten, 4))
        for (unsigned i = 0; i < 4; i++)
            if (!CHECK_EQ_U64(c->listen_defer[i], want[i]) || !CHECK_EQ_U64(cfg.listen_defer[i], want[i]))
                fprintf(stderr, "    listen[%u]\n", i);
    conf_free(c);

    const char *path = write_tmp(text);
    char file[64];
    strcpy(file, path);
    char *a1[] = {"hourglass", "--config", file, "--defer-accept", "2s", NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a1), a1), 0) && CHECK_EQ_INT(cfg.nlisten, 4))
        for (unsigned i = 0; i < 4; i++)
            CHECK_EQ_U64(cfg.listen_defer[i], 2);
    cli_free(&cfg);
    /* --listen replaces the file's listeners: off again unless the flag says */
    char *a2[] = {"hourglass", "--config", file, "--listen", "127.0.0.1:18090", NULL};
    if (CHECK_EQ_INT(cli_parse(&cfg, ARGC(a2), a2), 0) && CHECK_EQ_INT(cfg.nlisten, 1))
        CHECK_EQ_U64(cfg.listen_defer[0], 0);
    cli_free(&cfg);
    unlink(file);

    BAD("listen:\n  - {address: 127.0.0.1:1, defer_accept: 1500ms}\n",
        "2:42: listen[0].defer_accept: expected whole seconds from 1s to 30s (the kernel counts "
        "them in seconds), or false, got \"1500ms\"");
    BAD("listen:\n  - {address: 127.0.0.1:1, defer_accept: 1m}\n",
        "2:42: listen[0].defer_accept: expected whole seconds from 1s to 30s (the kernel counts "
        "them in seconds), or false, got \"1m\"");
}

/* A self-signed EC certificate made with the openssl CLI, in dir. */
static bool make_cert(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=unit.test -keyout %s/k.pem -out %s/c.pem >/dev/null 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=other.test -keyout %s/k2.pem -out %s/c2.pem >/dev/null 2>&1",
             dir, dir, dir, dir);
    return system(cmd) == 0;
}

/* The 1-based column of needle on its line of text. */
static int col_of(const char *text, const char *needle)
{
    const char *p = strstr(text, needle), *l = p;
    while (l > text && l[-1] != '\n')
        l--;
    return (int)(p - l) + 1;
}

TEST(tls_keys)
{
    char dir[] = "/tmp/hg-tls-XXXXXX", text[2048], want[1024];
    if (!CHECK(mkdtemp(dir) != NULL) || !CHECK(make_cert(dir)))
        return;
    char *errors = NULL;
    snprintf(text, sizeof text,
             "listen:\n  - 127.0.0.1:8080\n"
             "  - address: 127.0.0.1:8443\n    tls:\n      cert: %s/c.pem\n      key: %s/k.pem\n"
             "      certificates:\n        - {cert: %s/c2.pem, key: %s/k2.pem}\n"
             "      min_version: \"1.3\"\n"
             "timeouts: {handshake: 3s}\n"
             "pools:\n  web:\n    servers: [127.0.0.1:9443]\n    tls: {}\n"
             "  api:\n    servers: [127.0.0.1:9444]\n"
             "    tls: {verify: false, server_name: api.internal, cert: %s/c.pem, key: %s/k.pem}\n",
             dir, dir, dir, dir, dir, dir);
    struct conf *c = load_text(text, &errors);
    if (!CHECK(c != NULL)) {
        fprintf(stderr, "%s", errors ? errors : "");
        free(errors);
        goto out_rm;
    }
    struct cfg cfg;
    cli_defaults(&cfg);
    CHECK_EQ_INT(cfg.ms[TMO_HANDSHAKE], 10000);
    conf_apply(c, &cfg);
    CHECK_EQ_INT(cfg.ms[TMO_HANDSHAKE], 3000);
    CHECK(cfg.listen_tls[0] == NULL);
    if (CHECK(cfg.listen_tls[1] != NULL)) {
        CHECK_EQ_INT(cfg.listen_tls[1]->npairs, 2);
        CHECK_EQ_INT(cfg.listen_tls[1]->min_version, TLS1_3_VERSION);
    }
    CHECK(c->pools[0].tls.enabled && c->pools[0].tls.c.verify && !c->pools[0].tls.c.ca);
    CHECK(c->pools[1].tls.enabled && !c->pools[1].tls.c.verify);
    CHECK_EQ_STR(c->pools[1].tls.c.server_name, "api.internal");
    conf_free(c);

    BAD("listen:\n  - address: 127.0.0.1:1\n    tls: {cert: /nonexistent/c.pem}\n",
        "3:10: listen[0].tls.key: missing; expected the PEM private key file of "
        "/nonexistent/c.pem");
    BAD("listen:\n  - address: 127.0.0.1:1\n    tls: {cert: /nonexistent/c.pem, key: /x}\n",
        "3:17: listen[0].tls.cert: cannot load certificate /nonexistent/c.pem: No such file "
        "or directory");
    BAD("listen:\n  - address: 127.0.0.1:1\n    tls: {}\n",
        "3:10: listen[0].tls: expected cert and key (or certificates: a list of {cert, key})");
    snprintf(text, sizeof text,
             "listen:\n  - address: 127.0.0.1:1\n    tls: {cert: %s/c.pem, key: %s/k2.pem}\n",
             dir, dir);
    snprintf(want, sizeof want, "3:%d: listen[0].tls.key: cannot load key %s/k2.pem: it does "
             "not match the certificate", col_of(text, "/k2.pem") - (int)strlen(dir), dir);
    bad1(text, want, __LINE__);
    snprintf(text, sizeof text, "listen:\n  - address: 127.0.0.1:1\n    tls: {cert: %s/c.pem, "
             "key: %s/k.pem, min_version: \"1.1\"}\n", dir, dir);
    snprintf(want, sizeof want, "3:%d: listen[0].tls.min_version: expected \"1.2\" or \"1.3\" "
             "(older versions are not offered), got \"1.1\"", col_of(text, "\"1.1\""));
    bad1(text, want, __LINE__);
    BAD("pools:\n  web:\n    servers: [127.0.0.1:1]\n    tls: {ca: /nonexistent/ca.pem}\n",
        "4:15: pools.web.tls.ca: cannot load CA file /nonexistent/ca.pem: No such file or "
        "directory");
    BAD("pools:\n  web:\n    servers: [127.0.0.1:1]\n    tls: {verify: maybe}\n",
        "4:19: pools.web.tls.verify: expected true or false, got \"maybe\"");
    BAD(POOL "routes:\n  - pool: web\n    timeouts: {handshake: 1s}\n",
        "4:27: routes[0].timeouts.handshake: the handshake timeout runs before a route is chosen; "
        "set it in the top-level timeouts");
out_rm:
    snprintf(text, sizeof text, "rm -rf %s", dir);
    CHECK(system(text) == 0);
}

/* The enum of timeout kinds and the keys under `timeouts:` agree: a kind
 * has a key exactly when the file sets it there (not TMO_TRY, TMO_BACKOFF,
 * TMO_HEDGE), the key maps back to its kind, and the parser stores the key's
 * value at that kind and nowhere else. */
TEST(timeout_keys_match_the_kinds)
{
    unsigned keyed = 0;
    for (int k = 0; k < TMO_COUNT; k++) {
        const char *key = conf_tmo_key((enum tmo_kind)k);
        bool set_elsewhere = k == TMO_TRY || k == TMO_BACKOFF || k == TMO_HEDGE;
        if (!CHECK(set_elsewhere == (key == NULL)))
            fprintf(stderr, "    kind %d (%s): key %s\n", k, tmo_word((enum tmo_kind)k),
                    key ? key : "(none)");
        if (!key)
            continue;
        keyed++;
        if (!CHECK_EQ_INT(conf_tmo_kind(key), k))
            fprintf(stderr, "    key %s\n", key);
        char text[128], *errors = NULL;
        snprintf(text, sizeof text, "timeouts:\n  %s: 7ms\n", key);
        struct conf *c = conf_parse("t.yaml", text, strlen(text), &errors);
        if (CHECK(c != NULL))
            for (int j = 0; j < TMO_COUNT; j++)
                if (!CHECK_EQ_U64(c->timeouts.ms[j], j == k ? 7 : 0))
                    fprintf(stderr, "    key %s, kind %d\n", key, j);
        conf_free(c);
        free(errors);
    }
    CHECK_EQ_INT(keyed, 14);
    CHECK_EQ_INT(conf_tmo_kind("raed"), TMO_NONE);
    CHECK_EQ_INT(conf_tmo_kind("try"), TMO_NONE);
    CHECK_EQ_INT(conf_tmo_kind("hedge"), TMO_NONE);
    CHECK_EQ_INT(conf_tmo_kind(""), TMO_NONE);
}

int main(void)
{
    RUN(tls_keys);
    RUN(operations_keys);
    RUN(observe_keys);
    RUN(forward_keys);
    RUN(http2_key);
    RUN(defer_accept_key);
    RUN(max_concurrent_streams);
    RUN(ticket_keys);
    RUN(h2_pools_and_grpc_routes);
    RUN(slow_servers_keys);
    RUN(full_file_into_the_model);
    RUN(retry_block_defaults);
    RUN(default_pool_and_small_files);
    RUN(example_file_is_valid);
    RUN(timeout_keys_match_the_kinds);
    RUN(unknown_keys);
    RUN(wrong_types);
    RUN(missing_pool);
    RUN(duplicates);
    RUN(bad_durations);
    RUN(pools_and_servers);
    RUN(server_names);
    RUN(routes);
    RUN(limits);
    RUN(syntax_and_files);
    RUN(many_errors_in_file_order);
    RUN(alias_bomb_is_bounded);
    RUN(flags_override_the_file);
    RUN(names_reach_the_upstreams);
    return unit_summary("test_conf");
}
