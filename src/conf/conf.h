/* conf.h -- the configuration: the runtime struct cfg, and the file (YAML,
 * read with libyaml) into a checked model. See docs/CONFIG.md for every key.
 *
 * struct cfg lives here rather than in cli.h: the file fills it first
 * (conf_apply), then the flags override it (cli_parse). With it here conf
 * needs nothing of cli, and the arrows are one way: cli -> conf -> value.
 *
 * conf_load() reads and validates the whole file and returns the model, or
 * NULL and a list of errors, one line each:
 *
 *     FILE:LINE:COL: KEY: what was expected
 *     hourglass.yaml:12:5: routes[1].pool: no pool named "api" (pools: web, static)
 *
 * Nothing here exits or prints. The model owns all its strings and arrays;
 * conf_free() releases everything. Durations are milliseconds; a duration or
 * count of 0 in the model means "not set in the file" unless said otherwise
 * (a duration of 0 is refused in the file, so the two cannot be confused).
 *
 * conf_apply() copies the file's top-level values into a struct cfg (the
 * command line then overrides them, see cli_parse). Routes, weights,
 * balancing, health checks, retries, hedging and budgets are parsed and
 * validated here for the proxy to use; the default pool's servers become
 * cfg->upstream. */
#ifndef HG_CONF_H
#define HG_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "tls.h"
#include "tmo.h"
#include "value.h"

/* Bounds of the lists in struct cfg, for the flags and the file alike. They
 * keep the CLI_ names the layers above use. */
#define CLI_MAX_LISTEN   16
#define CLI_MAX_UPSTREAM 64
#define CLI_MAX_WORKERS  64
#define CLI_MAX_CIDR     32
#define CLI_MAX_PORTS    16

struct conf;

/* Forward proxy mode (listeners with forward set). */
struct cfg_forward {
    struct addr_cidr clients[CLI_MAX_CIDR];   /* may use it; default loopback */
    unsigned nclients;
    struct addr_cidr dests[CLI_MAX_CIDR];     /* reachable despite their class */
    unsigned ndests;
    uint16_t ports[CLI_MAX_PORTS];            /* CONNECT ports; default 443 */
    unsigned nports;
    const char *auth_file;                    /* user:password lines; NULL: none */
    const char *resolver;                     /* "127.0.0.1:53,[::1]:53"; NULL: system */
};

/* The runtime configuration: the defaults (cli_defaults), then the file
 * (conf_apply), then the flags (cli_parse). */
struct cfg {
    struct cli_addr listen[CLI_MAX_LISTEN];
    bool listen_trust[CLI_MAX_LISTEN];   /* honour the client's deadline header */
    bool listen_forward[CLI_MAX_LISTEN]; /* a forward proxy listener */
    bool listen_underscores[CLI_MAX_LISTEN]; /* pass on request fields named with '_' */
    const struct tls_server_conf *listen_tls[CLI_MAX_LISTEN];   /* NULL: plain TCP */
    unsigned nlisten;
    struct cli_addr upstream[CLI_MAX_UPSTREAM];
    unsigned nupstream;
    /* the top-level durations, ms, by kind (TMO_TUNNEL_MAX 0: unlimited);
     * the kinds only a route sets (TMO_TRY, TMO_BACKOFF, TMO_HEDGE) stay 0 */
    uint64_t ms[TMO_COUNT];
    const char *access_log;   /* path, "-" or "off" */
    bool access_log_json;     /* JSON Lines instead of key=value */
    unsigned max_connections;
    /* request limits (bytes; max_body 0 = unlimited) */
    uint32_t max_request_line, max_header_size, max_headers;
    uint64_t max_body;
    /* response head limits (502 upstream_head_too_large) */
    uint32_t max_response_header_size;   /* whole head, status line included */
    uint32_t max_response_headers;       /* number of fields */
    bool underscores;            /* --underscores-in-headers: on every listener */
    /* operations */
    int log_level;               /* LOG_DEBUG..LOG_ERROR (log.h) */
    uint64_t drain_ms;           /* SIGTERM: how long in-flight requests may finish */
    const char *deadline_header; /* sent upstream with the time left; NULL: off */
    bool trust_deadline;         /* --trust-deadline-header: on every listener */
    unsigned workers;            /* worker processes; 0 = one per CPU */
    bool single_process;         /* no master: the process started serves */
    struct cfg_forward fwd;
    struct cli_addr admin;       /* --admin listener */
    bool has_admin;
    /* the --config file's model (below), or NULL; cfg's strings may point
     * into it: release both with cli_free */
    struct conf *conf;
};

#define CONF_WORKERS_AUTO 0xffffffffu

/* The key under `timeouts:` of kind k ("connect", ..., "handshake"), or
 * NULL for the kinds the file sets elsewhere (TMO_TRY: a route's
 * retry.per_try_timeout, TMO_HEDGE: its hedge.delay) or not at all. */
const char *conf_tmo_key(enum tmo_kind k);

/* The kind of a key under `timeouts:`, or TMO_NONE. */
enum tmo_kind conf_tmo_kind(const char *key);

/* ms[k] = 0: not set here (inherit). Only the kinds with a key are set. */
struct conf_timeouts {
    uint64_t ms[TMO_COUNT];
};

/* Top-level `limits:`; 0 = not set (max_body_size: see max_body_size_set). */
struct conf_limits {
    unsigned max_connections;
    uint32_t max_request_line, max_header_size, max_headers;
    uint32_t max_response_header_size, max_response_headers;
    uint64_t max_body_size;   /* 0 = unlimited, when set */
    bool max_body_size_set;
};

struct conf_server {
    char *address;            /* as written: "10.0.0.5:8000" */
    struct cli_addr addr;     /* resolved once, at load */
    unsigned weight;          /* 1..1000, default 1 */
    int line;
};

enum conf_balance { CONF_BALANCE_ROUND_ROBIN, CONF_BALANCE_LEAST_CONN, CONF_BALANCE_P2C };

/* Passive health: always on (defaults below when `health.passive` is absent). */
struct conf_passive {
    unsigned failures;               /* consecutive failed attempts; default 5 */
    uint64_t ejection_ms;            /* first cool-down; default 30s */
    uint64_t max_ejection_ms;        /* cap of the growing cool-down; default 5m */
    unsigned max_ejected_percent;    /* of the pool's servers, 0..100; default 50 */
};

/* Active health: off unless `health.active` is present (then path is set). */
struct conf_active {
    bool enabled;
    char *path;                      /* "/healthz" */
    uint64_t interval_ms;            /* default 5s */
    uint64_t timeout_ms;             /* default 1s, never above interval */
    unsigned healthy;                /* successes to come back; default 2 */
    unsigned unhealthy;              /* failures to be taken out; default 3 */
};

/* Retry budget of a pool: requests retrying or hedged may be at most
 * percent % of the pool's requests in flight, but `min` are always allowed. */
struct conf_budget {
    unsigned percent;                /* 0..100; default 20 */
    unsigned min;                    /* default 3 */
};

/* A pool's `tls:` (absent: plain TCP). Strings owned by the model. */
struct conf_tls_up {
    bool enabled;
    struct tls_client_conf c;        /* verify defaults to true */
    int line;
};

struct conf_pool {
    char *name;
    struct conf_server *servers;
    unsigned nservers;               /* >= 1 */
    enum conf_balance balance;       /* default round_robin */
    unsigned max_connections;        /* open to all its servers together; 0 = unlimited */
    uint64_t keepalive_idle_ms;      /* 0 = timeouts.upstream_idle */
    unsigned keepalive_max_idle;     /* idle connections kept per server */
    bool keepalive_max_idle_set;     /* (0 is valid: no keep-alive) */
    struct conf_passive passive;
    struct conf_active active;
    struct conf_budget budget;
    struct conf_tls_up tls;
    int line;
};

/* Failure classes a route may retry (bits of conf_retry.on). */
enum {
    CONF_RETRY_CONNECT_FAILURE = 1u << 0,  /* refused, unreachable, reset while connecting */
    CONF_RETRY_CONNECT_TIMEOUT = 1u << 1,
    CONF_RETRY_RESET = 1u << 2,            /* reset/closed before any response byte */
    CONF_RETRY_READ_TIMEOUT = 1u << 3,     /* per-try read timeout before the head */
};

#define CONF_MAX_RETRY_STATUS 16

enum conf_methods { CONF_METHODS_IDEMPOTENT, CONF_METHODS_ALL };

struct conf_retry {
    unsigned attempts;               /* 1 (no `retry:`) .. 10; default 2 with `retry:` */
    unsigned on;                     /* CONF_RETRY_* bits */
    uint16_t status[CONF_MAX_RETRY_STATUS];   /* response statuses retried */
    unsigned nstatus;
    uint64_t per_try_timeout_ms;     /* 0 = none (only the route's timeouts) */
    uint64_t backoff_base_ms;        /* default 25ms */
    uint64_t backoff_max_ms;         /* default 250ms, >= base */
    enum conf_methods methods;       /* default idempotent */
    uint64_t max_body;               /* request bodies kept for a retry; default 64k */
};

struct conf_route {
    char *host;                      /* NULL = any; lower case; "*.example.com" */
    char *path;                      /* prefix, starts with '/'; default "/" */
    struct conf_pool *pool;          /* points into conf.pools */
    struct conf_timeouts timeouts;   /* overrides of the top level (0 = inherit) */
    struct conf_retry retry;
    uint64_t hedge_delay_ms;         /* 0 = no hedging */
    bool deadline_header;            /* propagate the time left (default true) */
    int line;
};

struct conf {
    char *file;                      /* as given to conf_load */
    struct cli_addr *listen;
    bool *listen_trust;              /* per listener: trust_deadline_header */
    bool *listen_forward;            /* per listener: mode: forward */
    bool *listen_underscores;        /* per listener: underscores_in_headers */
    struct tls_server_conf *listen_tls;   /* per listener; npairs 0: plain TCP */
    struct cfg_forward fwd;          /* `forward:` and `resolver:`, strings owned here */
    bool fwd_clients_set, fwd_dests_set, fwd_ports_set;
    unsigned nlisten;                /* 0 = not set */
    unsigned workers;                /* 0 = not set; CONF_WORKERS_AUTO = auto */
    char *deadline_header;           /* NULL = not set; "" = off */
    struct conf_timeouts timeouts;
    struct conf_limits limits;
    char *access_log;                /* NULL = not set; path, "-" or "off" */
    struct conf_pool *pools;         /* in file order */
    unsigned npools;
    struct conf_route *routes;       /* in file order */
    unsigned nroutes;
};

/* Reads and checks path. Returns the model, or NULL with *errors set to a
 * malloc'd text of one or more error lines, each ending in '\n' (free it). */
struct conf *conf_load(const char *path, char **errors);

/* The same on text already in memory; `name` is the file name used in
 * messages. */
struct conf *conf_parse(const char *name, const char *text, size_t len, char **errors);

void conf_free(struct conf *c);

/* The pool the proxy uses today: that of the route with path "/" and no host,
 * else the first pool; NULL when the file declares none. */
const struct conf_pool *conf_default_pool(const struct conf *c);

/* Copies what the file sets at the top level into cfg: listeners, the default
 * pool's servers as the upstreams (and its keepalive.idle_timeout as the
 * upstream idle timeout), timeouts, limits, access log. Values the file does
 * not set are left as they are. cfg->access_log may then point into c. */
void conf_apply(const struct conf *c, struct cfg *cfg);

/* A route's timeout of kind k: its own override under its `timeouts:`, else
 * the top-level value in cfg (file, then flags); r NULL: the top level. */
uint64_t conf_route_ms(const struct conf_route *r, enum tmo_kind k, const struct cfg *cfg);

/* Whether the route's retry policy lists this response status. */
bool conf_retry_status(const struct conf_retry *r, unsigned status);

#endif
