/* cfg.h -- the runtime configuration: struct cfg (the defaults, then the
 * file, then the flags) and the policies the request path reads, such as a
 * route's retry policy. No YAML here: the runtime includes this, and only
 * the code that builds the runtime from the file includes conf.h. */
#ifndef HG_CFG_H
#define HG_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "tls.h"
#include "tmo.h"
#include "value.h"

struct conf;

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
    const char *resolver;                     /* "127.0.0.1:53,[::1]:53"; NULL: system;
                                                 the pools' names use it too */
};

/* The runtime configuration: the defaults (cli_defaults), then the file
 * (conf_apply), then the flags (cli_parse). */
struct cfg {
    struct cli_addr listen[CLI_MAX_LISTEN];
    bool listen_trust[CLI_MAX_LISTEN];   /* honour the client's deadline header */
    bool listen_trust_rid[CLI_MAX_LISTEN];   /* take the client's X-Request-Id */
    bool listen_forward[CLI_MAX_LISTEN]; /* a forward proxy listener */
    bool listen_underscores[CLI_MAX_LISTEN]; /* pass on request fields named with '_' */
    bool listen_http2[CLI_MAX_LISTEN];   /* speaks HTTP/2 too (ALPN h2, h2c); never forward */
    const struct tls_server_conf *listen_tls[CLI_MAX_LISTEN];   /* NULL: plain TCP */
    unsigned listen_defer[CLI_MAX_LISTEN];   /* defer_accept, whole seconds; 0: off */
    unsigned nlisten;
    struct val_server upstream[CLI_MAX_UPSTREAM];   /* addresses or names (never resolved here) */
    unsigned nupstream;
    /* the top-level durations, ms, by kind (TMO_TUNNEL_MAX 0: unlimited);
     * the kinds only a route sets (TMO_TRY, TMO_BACKOFF, TMO_HEDGE) stay 0 */
    uint64_t ms[TMO_COUNT];
    const char *access_log;   /* path, "-" or "off" */
    bool access_log_json;     /* JSON Lines instead of key=value */
    unsigned max_connections;
    /* connection pressure (proxy/evict.h): from pressure_percent of
     * max_connections on, the header timeout is pressure_header_percent of
     * itself for heads still incomplete */
    unsigned pressure_percent, pressure_header_percent;
    /* request bodies a worker holds buffered at once (routes'
     * request_buffering, proxy/reqbuf.h), bytes */
    uint64_t reqbuf_budget;
    /* request limits (bytes; max_body 0 = unlimited) */
    uint32_t max_request_line, max_header_size, max_headers;
    uint64_t max_body;
    /* response head limits (502 upstream_head_too_large) */
    uint32_t max_response_header_size;   /* whole head, status line included */
    uint32_t max_response_headers;       /* number of fields */
    unsigned max_streams;        /* HTTP/2 streams open at once per client connection */
    /* TLS listeners' session tickets (`tls:`): a new key every rotation_ms,
     * a ticket valid lifetime_ms (its key kept that long after its last use) */
    uint64_t ticket_rotation_ms, ticket_lifetime_ms;
    bool underscores;            /* --underscores-in-headers: on every listener */
    bool no_http2;               /* --no-http2: HTTP/2 on no listener */
    unsigned defer_accept;       /* --defer-accept, seconds: on every listener; 0: not given */
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
    uint64_t min_time_left_ms;       /* a retry needs this much time left; 0: the
                                        route's live median first-byte latency */
};

/* A route's handling of gRPC calls' deadlines (`grpc:`). */
struct conf_grpc {
    bool ignore;                     /* timeout: ignore (default honour) */
    uint64_t max_timeout_ms;         /* 0: no cap on an honoured grpc-timeout */
    bool streaming;                  /* calls without grpc-timeout get no total */
};

/* Whether the route's retry policy lists this response status. */
bool conf_retry_status(const struct conf_retry *r, unsigned status);

#endif
