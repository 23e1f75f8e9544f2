/* conf.h -- the configuration file (YAML, read with libyaml) into a checked
 * model. See docs/CONFIG.md for every key.
 *
 * The runtime configuration, struct cfg, and the policies the request path
 * reads (a route's retry policy) are in cfg.h, which the runtime includes:
 * only the code that builds the runtime from the file (conf_apply, pool,
 * route and health initialisation) includes this model. The file fills
 * struct cfg first (conf_apply), then the flags override it (cli_parse);
 * the arrows are one way: cli -> conf -> cfg, value.
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
#include "cfg.h"
#include "value.h"

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
    unsigned max_concurrent_streams;   /* HTTP/2, per client connection */
    uint64_t max_body_size;   /* 0 = unlimited, when set */
    bool max_body_size_set;
    unsigned pressure_percent;         /* under pressure from this share of max_connections */
    unsigned pressure_header_percent;  /* ... the header timeout shortened to this share */
    uint64_t request_buffering_budget; /* bodies buffered at once per worker, bytes */
    bool request_buffering_budget_set;
};

/* A server item of a pool: an address, a host name resolved while the
 * proxy runs (every address of the answer is a server), or an SRV name
 * (`srv:`, whose records give the servers, their ports and weights). */
struct conf_server {
    char *address;            /* as written: "10.0.0.5:8000", "api.internal:8080", the SRV name */
    struct val_server addr;   /* parsed; never resolved here */
    unsigned weight;          /* 1..1000, default 1 (an SRV name: its records') */
    int line;
};

enum conf_balance {
    CONF_BALANCE_ROUND_ROBIN,
    CONF_BALANCE_LEAST_CONN,
    CONF_BALANCE_P2C,
    CONF_BALANCE_EWMA,
};

/* What passive health counts as a failed attempt (bits of conf_passive.on). */
enum {
    CONF_PASSIVE_CONNECT_FAILURE = 1u << 0,  /* refused, unreachable, TLS failed, connect timeout */
    CONF_PASSIVE_RESET = 1u << 1,            /* reset or closed before any response byte */
    CONF_PASSIVE_READ_TIMEOUT = 1u << 2,     /* the route's read timeout */
    CONF_PASSIVE_TRY_TIMEOUT = 1u << 3,      /* the route's retry.per_try_timeout */
    CONF_PASSIVE_5XX = 1u << 4,              /* a final response with a status 500..599 */
};
#define CONF_PASSIVE_DEFAULT \
    (CONF_PASSIVE_CONNECT_FAILURE | CONF_PASSIVE_RESET | CONF_PASSIVE_READ_TIMEOUT)
#define CONF_MAX_PASSIVE_STATUS 16

/* Passive health: always on (defaults below when `health.passive` is absent). */
struct conf_passive {
    unsigned on;                     /* CONF_PASSIVE_* bits; default CONF_PASSIVE_DEFAULT */
    uint16_t status[CONF_MAX_PASSIVE_STATUS];   /* response statuses (400..599) that count */
    unsigned nstatus;
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
    uint64_t slow_start_ms;          /* ramp of a server back in service; 0 = off */
    unsigned max_connections;        /* open to all its servers together; 0 = unlimited */
    unsigned max_requests;           /* in flight to each server at once; 0 = unlimited */
    uint64_t keepalive_idle_ms;      /* 0 = timeouts.upstream_idle */
    unsigned keepalive_max_idle;     /* idle connections kept per server */
    bool keepalive_max_idle_set;     /* (0 is valid: no keep-alive) */
    struct conf_passive passive;
    struct conf_active active;
    struct conf_budget budget;
    struct conf_tls_up tls;
    bool h2;                         /* protocol: h2 (default http/1.1) */
    /* `resolve:` the bounds of the interval between two resolutions of
     * its names (the answer's TTL, clamped); default 1s and 5m */
    uint64_t resolve_min_ms, resolve_max_ms;
    int line;
};

/* Whether the pool has a server written as a host name or an SRV name. */
bool conf_pool_has_names(const struct conf_pool *p);

struct conf_route {
    char *host;                      /* NULL = any; lower case; "*.example.com" */
    char *path;                      /* prefix, starts with '/'; default "/" */
    struct conf_pool *pool;          /* points into conf.pools */
    struct conf_timeouts timeouts;   /* overrides of the top level (0 = inherit) */
    struct conf_retry retry;
    uint64_t hedge_delay_ms;         /* 0 = no hedging (or adaptive: hedge_permille) */
    unsigned hedge_permille;         /* hedge.delay: pNN: the quantile x 1000; 0 = fixed */
    uint64_t hedge_min_ms, hedge_max_ms;   /* the adaptive delay's bounds */
    unsigned hedge_max_percent;      /* hedges per 100 requests at most; 0 = not set */
    uint64_t min_budget_ms;          /* time left at dispatch below this: 504; 0 = off */
    bool deadline_header;            /* propagate the time left (default true) */
    struct conf_grpc grpc;           /* what its gRPC calls' grpc-timeout does */
    bool server_timing;              /* add Server-Timing to responses (default false) */
    uint64_t request_buffering;      /* bodies up to this read whole before dispatch; 0 off */
    int line;
};

struct conf {
    char *file;                      /* as given to conf_load */
    struct cli_addr *listen;
    bool *listen_trust;              /* per listener: trust_deadline_header */
    bool *listen_trust_rid;          /* per listener: trust_request_id */
    bool *listen_forward;            /* per listener: mode: forward */
    bool *listen_underscores;        /* per listener: underscores_in_headers */
    bool *listen_http2;              /* per listener: http2 (default: not on forward ones) */
    unsigned *listen_defer;          /* per listener: defer_accept, seconds (0: off) */
    struct tls_server_conf *listen_tls;   /* per listener; npairs 0: plain TCP */
    struct cfg_forward fwd;          /* `forward:` and `resolver:`, strings owned here */
    bool fwd_clients_set, fwd_dests_set, fwd_ports_set;
    unsigned nlisten;                /* 0 = not set */
    unsigned workers;                /* 0 = not set; CONF_WORKERS_AUTO = auto */
    char *deadline_header;           /* NULL = not set; "" = off */
    struct conf_timeouts timeouts;
    struct conf_limits limits;
    uint64_t ticket_rotation_ms;     /* `tls.ticket_rotation`; 0 = not set */
    uint64_t ticket_lifetime_ms;     /* `tls.ticket_lifetime`; 0 = not set */
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


#endif
