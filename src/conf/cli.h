/* cli.h -- the command line: flags, durations and addresses into a cfg. */
#ifndef HG_CLI_H
#define HG_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"

#define CLI_MAX_LISTEN   16
#define CLI_MAX_UPSTREAM 64
#define CLI_MAX_WORKERS  64
#define CLI_MAX_CIDR     32
#define CLI_MAX_PORTS    16

struct cli_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];   /* as printed in logs: 127.0.0.1:9001, [::1]:9001 */
};

struct conf;
struct tls_server_conf;

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

struct cfg {
    struct cli_addr listen[CLI_MAX_LISTEN];
    bool listen_trust[CLI_MAX_LISTEN];   /* honour the client's deadline header */
    bool listen_forward[CLI_MAX_LISTEN]; /* a forward proxy listener */
    bool listen_underscores[CLI_MAX_LISTEN]; /* pass on request fields named with '_' */
    const struct tls_server_conf *listen_tls[CLI_MAX_LISTEN];   /* NULL: plain TCP */
    unsigned nlisten;
    struct cli_addr upstream[CLI_MAX_UPSTREAM];
    unsigned nupstream;
    /* milliseconds */
    uint64_t connect_ms, write_ms, read_ms, total_ms;
    uint64_t header_ms, body_ms, send_ms, idle_ms;
    uint64_t upstream_idle_ms;
    uint64_t dns_ms;                 /* forward proxy: resolving a destination */
    uint64_t tunnel_idle_ms;         /* CONNECT / WebSocket tunnel with no byte */
    uint64_t tunnel_max_ms;          /* a tunnel's lifetime; 0 = unlimited */
    uint64_t handshake_ms;           /* TLS listeners: accept to handshake done */
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
    /* the --config file's model (conf.h), or NULL; cfg's strings may point
     * into it: release both with cli_free */
    struct conf *conf;
};

/* Fills cfg with the embedded defaults. */
void cli_defaults(struct cfg *cfg);

/* Parses argv. With --config FILE, the file's values (conf_apply) come
 * first and the flags override them. Returns 0 to run, 1 when --help,
 * --version or a successful --check-config / -t printed its answer (exit 0),
 * 2 after printing an error naming the flag, or the file, line and key
 * (exit 2). After 0, release with cli_free. */
int cli_parse(struct cfg *cfg, int argc, char **argv);

/* Releases what cli_parse kept (the configuration file's model). */
void cli_free(struct cfg *cfg);

/* Parses a duration: "250ms", "1s", "1.5s", "2m", "1h" or a bare number of
 * seconds. Stores milliseconds; refuses negatives, empty strings, unknown
 * units, sub-millisecond precision and values past 2^32 ms. 0 or -1. */
int cli_duration(const char *s, uint64_t *ms);

/* Parses a size: "8192", "8k", "32KiB", "1m", "1MiB", "2g" (k = 1024).
 * 0 or -1. */
int cli_size(const char *s, uint64_t *bytes);

/* Whether s is a header name we accept for the deadline header: 1 to 64 of
 * letters, digits, '-' and '_'. */
bool cli_header_name(const char *s);

/* Parses "HOST:PORT", "[V6]:PORT" (names resolved once, at start). 0 or -1
 * with a message in err. */
int cli_address(const char *s, struct cli_addr *a, char *err, size_t errlen);

#endif
