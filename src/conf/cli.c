/* cli.c -- the command line: flags over the configuration file (see cli.h). */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#ifndef HG_VERSION
#define HG_VERSION "unknown (built without the Makefile, which sets it from debian/changelog)"
#endif

/* The built-in durations, ms, by kind (the --help text names them too). */
static const uint64_t default_ms[TMO_COUNT] = {
    [TMO_CONNECT] = 1000,    [TMO_WRITE] = 15000,          [TMO_READ] = 15000,
    [TMO_TOTAL] = 30000,     [TMO_HEADER] = 10000,         [TMO_BODY] = 15000,
    [TMO_SEND] = 15000,      [TMO_IDLE] = 60000,           [TMO_UPSTREAM_IDLE] = 30000,
    [TMO_DNS] = 2000,        [TMO_TUNNEL_IDLE] = 60000,    [TMO_TUNNEL_MAX] = 0, /* unlimited */
    [TMO_HANDSHAKE] = 10000,
};

void cli_defaults(struct cfg *cfg)
{
    *cfg = (struct cfg){0};
    memcpy(cfg->ms, default_ms, sizeof cfg->ms);
    cfg->access_log = "-";
    cfg->max_connections = 10000;
    cfg->pressure_percent = 90;
    cfg->pressure_header_percent = 25;
    cfg->reqbuf_budget = 64ull << 20;
    cfg->max_request_line = 8192;
    cfg->max_header_size = 32768;
    cfg->max_headers = 100;
    cfg->max_response_header_size = 65536;
    cfg->max_response_headers = 256;
    cfg->max_streams = 100;
    cfg->ticket_rotation_ms = 3600000;   /* 1 h */
    cfg->ticket_lifetime_ms = 3600000;   /* 1 h (OpenSSL's default: 2 h) */
    cfg->max_body = 0;
    cfg->log_level = 1;   /* info */
    cfg->drain_ms = 10000;
    cfg->deadline_header = "X-Request-Deadline-Ms";
    cfg->trust_deadline = false;
    addr_cidr_parse("127.0.0.0/8", &cfg->fwd.clients[0]);
    addr_cidr_parse("::1", &cfg->fwd.clients[1]);
    cfg->fwd.nclients = 2;
    cfg->fwd.ports[0] = 443;
    cfg->fwd.nports = 1;
}

static const char usage[] =
    "Usage: hourglass [OPTIONS]\n"
    "An HTTP/1.1 reverse proxy in which every operation runs against a clock.\n"
    "\n"
    "  --config FILE             read the settings of a YAML file (docs/CONFIG.md);\n"
    "                            the flags below override it\n"
    "  -t, --check-config FILE   check a configuration file: print 'FILE: ok' and\n"
    "                            exit 0, or print each error and exit 2\n"
    "  --listen ADDR:PORT        listen here (repeatable; default 127.0.0.1:8080)\n"
    "  --upstream HOST:PORT      proxy to this server (repeatable, round-robin;\n"
    "                            default 127.0.0.1:9001); a host name is resolved\n"
    "                            while running, each address a server\n"
    "Upstream timeouts (durations: 250ms, 1s, 1.5s, 2m, or a number of seconds):\n"
    "  --connect-timeout D       open the upstream connection (default 1s)\n"
    "  --queue-timeout D         wait for a free connection or server of a pool at\n"
    "                            its limit (default: the connect timeout)\n"
    "  --write-timeout D         hand the whole request to the upstream, counted\n"
    "                            while it will not take bytes (default 15s)\n"
    "  --read-timeout D          between two reads of the response, first byte\n"
    "                            included (default 15s)\n"
    "  --total-timeout D         whole exchange from the request head on; clamps\n"
    "                            every other timeout (default 30s)\n"
    "Client timeouts:\n"
    "  --handshake-timeout D     TLS listeners: the handshake, from accept (10s)\n"
    "  --header-timeout D        whole request head, from its first byte (10s)\n"
    "  --body-timeout D          between two reads of the request body (15s)\n"
    "  --send-timeout D          while the client takes no response bytes (15s)\n"
    "  --idle-timeout D          keep-alive idle between requests (60s)\n"
    "  --upstream-idle-timeout D pooled upstream connection idle (30s)\n"
    "  --dns-timeout D           forward proxy: resolve a destination (2s)\n"
    "  --tunnel-idle-timeout D   CONNECT or WebSocket tunnel without a byte\n"
    "                            either way (60s)\n"
    "  --tunnel-max-lifetime D   a tunnel's whole life (default: unlimited)\n"
    "Other:\n"
    "  --access-log PATH|-|off   access log file, - for standard output (default)\n"
    "  --access-log-format kv|json  key=value lines (default) or JSON Lines\n"
    "  --max-connections N       client connections served at once (10000)\n"
    "  --max-concurrent-streams N  HTTP/2 streams open at once on one client\n"
    "                            connection, else REFUSED_STREAM (default 100)\n"
    "  --no-http2                HTTP/1.1 only on every listener (default: TLS\n"
    "                            listeners offer ALPN h2, plain ones take h2c)\n"
    "  --defer-accept D          on every listener, accept a connection once its\n"
    "                            first bytes arrive, or after D (whole seconds)\n"
    "Request limits (sizes: 8192, 8k, 32KiB, 1m):\n"
    "  --max-request-line SIZE   request line, else 414 (default 8k)\n"
    "  --max-header-size SIZE    header fields together, else 431 (default 32k)\n"
    "  --max-headers N           number of header fields, else 431 (default 100)\n"
    "  --max-body-size SIZE      request body, else 413 (default 0: unlimited)\n"
    "  --underscores-in-headers  pass on request fields whose name has a '_'\n"
    "                            (default: dropped, as they can smuggle framing)\n"
    "Response limits (else 502 upstream_head_too_large):\n"
    "  --max-response-header-size SIZE  whole response head (default 64k)\n"
    "  --max-response-headers N  number of response header fields (default 256)\n"
    "Operations:\n"
    "  --log-level LEVEL         error log threshold: debug, info, warn, error (info)\n"
    "  --admin ADDR:PORT         serve /metrics (Prometheus) and /healthz there (off)\n"
    "  --drain-timeout D         on SIGTERM/SIGINT, in-flight requests may finish\n"
    "                            within it; then the rest is cut (default 10s)\n"
    "  --deadline-header NAME|off  send the time left of the total deadline (ms)\n"
    "                            upstream in this header (X-Request-Deadline-Ms)\n"
    "  --trust-deadline-header   honour that header from clients: the total\n"
    "                            deadline is the smaller of ours and theirs\n"
    "Forward proxy:\n"
    "  --forward-listen ADDR:PORT  also listen there as a forward proxy\n"
    "                            (absolute-form requests and CONNECT)\n"
    "  --forward-allow-client CIDR  clients that may use it (repeat; default\n"
    "                            127.0.0.0/8 and ::1)\n"
    "  --forward-allow-destination CIDR  reachable although loopback, private,\n"
    "                            link-local... (repeat; default none)\n"
    "  --forward-connect-port N  ports CONNECT may reach (repeat; default 443)\n"
    "  --proxy-auth-file FILE    require Proxy-Authorization: Basic, checked\n"
    "                            against user:password lines of FILE\n"
    "  --resolver ADDR:PORT[,...]  DNS servers of the forward proxy and of the\n"
    "                            pools' host names (default /etc/resolv.conf)\n"
    "  --workers N|auto          worker processes under a supervising master\n"
    "                            (default auto: one per CPU; at most 64)\n"
    "  --single-process          no master and no workers: the process started\n"
    "                            serves (debugging, tests); SIGHUP reloads the\n"
    "                            TLS certificates only, not the configuration\n"
    "  -h, --help                show this help and exit\n"
    "  -V, --version             show the version and exit\n";

enum {
    OPT_LISTEN = 256, OPT_UPSTREAM, OPT_ACCESS_LOG, OPT_MAX_CONN, OPT_HELP, OPT_VERSION,
    OPT_MAX_LINE, OPT_MAX_HEADER, OPT_MAX_HEADERS, OPT_MAX_BODY, OPT_CONFIG, OPT_CHECK_CONFIG,
    OPT_LOG_LEVEL, OPT_DRAIN, OPT_DEADLINE_HEADER, OPT_TRUST_DEADLINE, OPT_LOG_FORMAT,
    OPT_ADMIN, OPT_WORKERS, OPT_SINGLE, OPT_FWD_LISTEN, OPT_FWD_CLIENT, OPT_FWD_DEST,
    OPT_FWD_PORT, OPT_FWD_AUTH, OPT_RESOLVER, OPT_RESP_HEADER, OPT_RESP_HEADERS,
    OPT_UNDERSCORES, OPT_NO_HTTP2, OPT_MAX_STREAMS, OPT_DEFER_ACCEPT,
    OPT_TMO = 512,   /* OPT_TMO + k: the flag that sets cfg->ms[k] */
};

static const struct option options[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"check-config", required_argument, NULL, OPT_CHECK_CONFIG},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"upstream", required_argument, NULL, OPT_UPSTREAM},
    {"connect-timeout", required_argument, NULL, OPT_TMO + TMO_CONNECT},
    {"queue-timeout", required_argument, NULL, OPT_TMO + TMO_QUEUE},
    {"write-timeout", required_argument, NULL, OPT_TMO + TMO_WRITE},
    {"read-timeout", required_argument, NULL, OPT_TMO + TMO_READ},
    {"total-timeout", required_argument, NULL, OPT_TMO + TMO_TOTAL},
    {"header-timeout", required_argument, NULL, OPT_TMO + TMO_HEADER},
    {"body-timeout", required_argument, NULL, OPT_TMO + TMO_BODY},
    {"send-timeout", required_argument, NULL, OPT_TMO + TMO_SEND},
    {"idle-timeout", required_argument, NULL, OPT_TMO + TMO_IDLE},
    {"upstream-idle-timeout", required_argument, NULL, OPT_TMO + TMO_UPSTREAM_IDLE},
    {"dns-timeout", required_argument, NULL, OPT_TMO + TMO_DNS},
    {"handshake-timeout", required_argument, NULL, OPT_TMO + TMO_HANDSHAKE},
    {"tunnel-idle-timeout", required_argument, NULL, OPT_TMO + TMO_TUNNEL_IDLE},
    {"tunnel-max-lifetime", required_argument, NULL, OPT_TMO + TMO_TUNNEL_MAX},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"max-connections", required_argument, NULL, OPT_MAX_CONN},
    {"max-concurrent-streams", required_argument, NULL, OPT_MAX_STREAMS},
    {"no-http2", no_argument, NULL, OPT_NO_HTTP2},
    {"defer-accept", required_argument, NULL, OPT_DEFER_ACCEPT},
    {"max-request-line", required_argument, NULL, OPT_MAX_LINE},
    {"max-header-size", required_argument, NULL, OPT_MAX_HEADER},
    {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
    {"max-body-size", required_argument, NULL, OPT_MAX_BODY},
    {"max-response-header-size", required_argument, NULL, OPT_RESP_HEADER},
    {"max-response-headers", required_argument, NULL, OPT_RESP_HEADERS},
    {"underscores-in-headers", no_argument, NULL, OPT_UNDERSCORES},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"access-log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN},
    {"deadline-header", required_argument, NULL, OPT_DEADLINE_HEADER},
    {"trust-deadline-header", no_argument, NULL, OPT_TRUST_DEADLINE},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"forward-listen", required_argument, NULL, OPT_FWD_LISTEN},
    {"forward-allow-client", required_argument, NULL, OPT_FWD_CLIENT},
    {"forward-allow-destination", required_argument, NULL, OPT_FWD_DEST},
    {"forward-connect-port", required_argument, NULL, OPT_FWD_PORT},
    {"proxy-auth-file", required_argument, NULL, OPT_FWD_AUTH},
    {"resolver", required_argument, NULL, OPT_RESOLVER},
    {"single-process", no_argument, NULL, OPT_SINGLE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static int fail(const char *flag, const char *arg, const char *why)
{
    fprintf(stderr, "hourglass: --%s '%s': %s\nTry 'hourglass --help' for the list of options.\n",
            flag, arg, why);
    return 2;
}

void cli_free(struct cfg *cfg)
{
    conf_free(cfg->conf);
    cfg->conf = NULL;
}

/* The first pass: finds --config / --check-config / -t, loads the file and
 * applies it, so that the flags of the second pass override it. *check is
 * the file to report on with --check-config, else NULL. */
static int load_config(struct cfg *cfg, int argc, char **argv, const char **check)
{
    const char *file = NULL;
    int c, idx;

    *check = NULL;
    optind = 0;   /* 0: full reset of getopt's state */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:hV", options, &idx)) != -1) {
        if (c != OPT_CONFIG && c != OPT_CHECK_CONFIG && c != 't')
            continue;   /* everything else is the second pass's business */
        if (file)
            return fail(c == OPT_CONFIG ? "config" : "check-config", optarg,
                        "only one --config or --check-config (-t) may be given");
        file = optarg;
        *check = c == OPT_CONFIG ? NULL : file;
    }
    if (!file)
        return 0;
    char *errors = NULL;
    struct conf *conf = conf_load(file, &errors);
    if (!conf) {
        fputs(errors ? errors : "out of memory\n", stderr);
        free(errors);
        return 2;
    }
    cfg->conf = conf;
    conf_apply(conf, cfg);
    return 0;
}

/* The first flag of a list replaces the list (the default, or the file's);
 * the next ones add to it. */
struct lists_seen {
    bool listen, upstream, clients, dests, ports;
};

/* Each flag_* below takes one flag c, spelled name in messages, with its
 * value arg into cfg: 0, or 2 after printing why. */

static int flag_duration(uint64_t *ms, const char *name, const char *arg)
{
    if (val_duration(arg, ms) < 0)
        return fail(name, arg, "expected a duration such as 250ms, 1.5s, 2m or 30");
    if (*ms == 0)
        return fail(name, arg, "a timeout must be longer than 0");
    return 0;
}

/* A whole number from lo (>= 0) to hi, or -1. */
static long whole(const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    return !*s || *end || v < lo || v > hi ? -1 : v;
}

/* --listen, --forward-listen, --upstream, --admin */
static int flag_address(struct cfg *cfg, struct lists_seen *seen, int c, const char *name,
                        const char *arg)
{
    char err[256];
    if (c == OPT_ADMIN) {
        if (val_address(arg, &cfg->admin, err, sizeof err) < 0)
            return fail(name, arg, err);
        cfg->has_admin = true;
        return 0;
    }
    if (c == OPT_UPSTREAM) {
        if (!seen->upstream)
            cfg->nupstream = 0;
        seen->upstream = true;
        if (cfg->nupstream == CLI_MAX_UPSTREAM)
            return fail(name, arg, "too many upstreams (at most 64)");
        if (val_server(arg, &cfg->upstream[cfg->nupstream], err, sizeof err) < 0)
            return fail(name, arg, err);
        cfg->nupstream++;
        return 0;
    }
    if (!seen->listen) {   /* the flags replace the file's listeners */
        cfg->nlisten = 0;
        memset(cfg->listen_trust, 0, sizeof cfg->listen_trust);
        memset(cfg->listen_trust_rid, 0, sizeof cfg->listen_trust_rid);
        memset(cfg->listen_forward, 0, sizeof cfg->listen_forward);
        memset(cfg->listen_underscores, 0, sizeof cfg->listen_underscores);
        memset(cfg->listen_http2, 0, sizeof cfg->listen_http2);
        memset(cfg->listen_tls, 0, sizeof cfg->listen_tls);
        memset(cfg->listen_defer, 0, sizeof cfg->listen_defer);
    }
    seen->listen = true;
    if (cfg->nlisten == CLI_MAX_LISTEN)
        return fail(name, arg, "too many listeners (at most 16)");
    if (val_address(arg, &cfg->listen[cfg->nlisten], err, sizeof err) < 0)
        return fail(name, arg, err);
    cfg->listen_http2[cfg->nlisten] = c != OPT_FWD_LISTEN;   /* not offered by a forward proxy */
    cfg->listen_forward[cfg->nlisten++] = c == OPT_FWD_LISTEN;
    return 0;
}

/* --max-connections, --max-request-line, --max-header-size, --max-body-size,
 * --max-headers, --max-response-headers, --max-response-header-size,
 * --max-concurrent-streams */
static int flag_limit(struct cfg *cfg, int c, const char *name, const char *arg)
{
    uint64_t v;
    long n;
    switch (c) {
    case OPT_MAX_CONN:
        if ((n = whole(arg, 1, 1000000)) < 0)
            return fail(name, arg, "expected a number from 1 to 1000000");
        cfg->max_connections = (unsigned)n;
        return 0;
    case OPT_MAX_STREAMS:
        if ((n = whole(arg, 1, 10000)) < 0)
            return fail(name, arg, "expected a number from 1 to 10000");
        cfg->max_streams = (unsigned)n;
        return 0;
    case OPT_MAX_HEADERS:
    case OPT_RESP_HEADERS:
        if ((n = whole(arg, 1, 256)) < 0)
            return fail(name, arg, "expected a number from 1 to 256");
        *(c == OPT_MAX_HEADERS ? &cfg->max_headers : &cfg->max_response_headers) = (uint32_t)n;
        return 0;
    case OPT_RESP_HEADER:
        /* the head is read into one 64 KiB buffer */
        if (val_size(arg, &v) < 0 || v < 1024 || v > 65536)
            return fail(name, arg, "expected a size from 1k to 64k");
        cfg->max_response_header_size = (uint32_t)v;
        return 0;
    }
    if (val_size(arg, &v) < 0)
        return fail(name, arg, "expected a size such as 8192, 8k or 1MiB");
    if (c == OPT_MAX_BODY) {
        cfg->max_body = v;
        return 0;
    }
    /* the whole head must fit one 64 KiB buffer */
    if (v < 256 || v > 24576 * (c == OPT_MAX_LINE ? 1 : 2))
        return fail(name, arg, c == OPT_MAX_LINE ? "expected 256 bytes to 24k"
                                                 : "expected 256 bytes to 48k");
    *(c == OPT_MAX_LINE ? &cfg->max_request_line : &cfg->max_header_size) = (uint32_t)v;
    return 0;
}

/* --forward-allow-client, --forward-allow-destination, --forward-connect-port,
 * --proxy-auth-file, --resolver */
static int flag_forward(struct cfg *cfg, struct lists_seen *seen, int c, const char *name,
                        const char *arg)
{
    struct cfg_forward *f = &cfg->fwd;
    if (c == OPT_FWD_AUTH || c == OPT_RESOLVER) {
        *(c == OPT_FWD_AUTH ? &f->auth_file : &f->resolver) = arg;
        return 0;
    }
    if (c == OPT_FWD_PORT) {
        long v = whole(arg, 1, 65535);
        if (v < 0)
            return fail(name, arg, "expected a port from 1 to 65535");
        if (!seen->ports)
            f->nports = 0;
        seen->ports = true;
        if (f->nports == CLI_MAX_PORTS)
            return fail(name, arg, "too many ports (at most 16)");
        f->ports[f->nports++] = (uint16_t)v;
        return 0;
    }
    bool cl = c == OPT_FWD_CLIENT;
    bool *set = cl ? &seen->clients : &seen->dests;
    unsigned *n = cl ? &f->nclients : &f->ndests;
    struct addr_cidr *list = cl ? f->clients : f->dests;
    if (!*set)
        *n = 0;
    *set = true;
    if (*n == CLI_MAX_CIDR)
        return fail(name, arg, "too many networks (at most 32)");
    if (addr_cidr_parse(arg, &list[*n]) < 0)
        return fail(name, arg, "expected an address or network such as 10.0.0.0/8 "
                               "or ::1 (no host bits below the prefix)");
    (*n)++;
    return 0;
}

/* --access-log, --access-log-format, --log-level, --deadline-header,
 * --workers */
static int flag_operation(struct cfg *cfg, int c, const char *name, const char *arg)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    switch (c) {
    case OPT_ACCESS_LOG:
        if (!*arg)
            return fail(name, arg, "expected a file path, - or off");
        cfg->access_log = arg;
        return 0;
    case OPT_LOG_FORMAT:
        if (strcmp(arg, "json") != 0 && strcmp(arg, "kv") != 0)
            return fail(name, arg, "expected kv or json");
        cfg->access_log_json = strcmp(arg, "json") == 0;
        return 0;
    case OPT_LOG_LEVEL:
        for (int i = 0; i < 4; i++)
            if (strcmp(arg, levels[i]) == 0) {
                cfg->log_level = i;
                return 0;
            }
        return fail(name, arg, "expected debug, info, warn or error");
    case OPT_DEADLINE_HEADER:
        if (strcmp(arg, "off") != 0 && !val_header_name(arg))
            return fail(name, arg, "expected a header name (letters, digits, - and _) or off");
        cfg->deadline_header = strcmp(arg, "off") == 0 ? NULL : arg;
        return 0;
    }
    long v = whole(arg, 1, CLI_MAX_WORKERS);   /* OPT_WORKERS */
    if (strcmp(arg, "auto") != 0 && v < 0)
        return fail(name, arg, "expected auto or a number from 1 to 64");
    cfg->workers = strcmp(arg, "auto") == 0 ? 0 : (unsigned)v;
    return 0;
}

/* One flag c of the second pass (not help, version, nor an error of
 * getopt's) with its value arg (NULL for a switch) into cfg: 0, 2 after
 * printing why, or -1 when c is no flag of ours. */
static int one_flag(struct cfg *cfg, struct lists_seen *seen, int c, const char *name,
                    const char *arg)
{
    switch (c) {
    case OPT_LISTEN: case OPT_FWD_LISTEN: case OPT_UPSTREAM: case OPT_ADMIN:
        return flag_address(cfg, seen, c, name, arg);
    case OPT_MAX_CONN: case OPT_MAX_LINE: case OPT_MAX_HEADER: case OPT_MAX_BODY:
    case OPT_MAX_HEADERS: case OPT_RESP_HEADERS: case OPT_RESP_HEADER: case OPT_MAX_STREAMS:
        return flag_limit(cfg, c, name, arg);
    case OPT_FWD_CLIENT: case OPT_FWD_DEST: case OPT_FWD_PORT: case OPT_FWD_AUTH:
    case OPT_RESOLVER:
        return flag_forward(cfg, seen, c, name, arg);
    case OPT_ACCESS_LOG: case OPT_LOG_FORMAT: case OPT_LOG_LEVEL: case OPT_DEADLINE_HEADER:
    case OPT_WORKERS:
        return flag_operation(cfg, c, name, arg);
    case OPT_TRUST_DEADLINE: cfg->trust_deadline = true; return 0;
    case OPT_SINGLE: cfg->single_process = true; return 0;
    case OPT_UNDERSCORES: cfg->underscores = true; return 0;
    case OPT_NO_HTTP2: cfg->no_http2 = true; return 0;
    case OPT_DEFER_ACCEPT:
        return val_defer_accept(arg, &cfg->defer_accept) < 0
                   ? fail(name, arg, "expected " VAL_DEFER_WHAT) : 0;
    case OPT_CONFIG: case OPT_CHECK_CONFIG: case 't': return 0;   /* the first pass's */
    case OPT_DRAIN: return flag_duration(&cfg->drain_ms, name, arg);
    }
    if (c >= OPT_TMO && c < OPT_TMO + TMO_COUNT)
        return flag_duration(&cfg->ms[c - OPT_TMO], name, arg);
    return -1;
}

/* After the flags: the defaults of the lists neither flags nor file set, and
 * the switches that apply to every listener. 0 to run, 1 after
 * --check-config printed its answer. */
static int complete(struct cfg *cfg, const char *check)
{
    char err[256];
    if (!cfg->nlisten) {   /* neither flags nor the file */
        val_address("127.0.0.1:8080", &cfg->listen[0], err, sizeof err);
        cfg->listen_http2[0] = true;
        cfg->nlisten = 1;
    }
    if (!cfg->nupstream) {
        val_server("127.0.0.1:9001", &cfg->upstream[0], err, sizeof err);
        cfg->nupstream = 1;
    }
    if (cfg->trust_deadline)
        for (unsigned i = 0; i < cfg->nlisten; i++)
            cfg->listen_trust[i] = true;
    if (cfg->underscores)
        for (unsigned i = 0; i < cfg->nlisten; i++)
            cfg->listen_underscores[i] = true;
    if (cfg->no_http2)
        for (unsigned i = 0; i < cfg->nlisten; i++)
            cfg->listen_http2[i] = false;
    if (cfg->defer_accept)
        for (unsigned i = 0; i < cfg->nlisten; i++)
            cfg->listen_defer[i] = cfg->defer_accept;
    if (check) {
        printf("%s: ok\n", check);
        return 1;
    }
    return 0;
}

static int parse_flags(struct cfg *cfg, int argc, char **argv)
{
    struct lists_seen seen = {0};
    const char *check;
    int c, idx, rc = load_config(cfg, argc, argv, &check);

    if (rc)
        return rc;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:hV", options, &idx)) != -1) {
        if (c == OPT_HELP || c == 'h') {
            fputs(usage, stdout);
            return 1;
        }
        if (c == OPT_VERSION || c == 'V') {
            printf("hourglass %s\n", HG_VERSION);
            return 1;
        }
        const char *name = NULL;
        for (const struct option *o = options; o->name; o++)
            if (o->val == c)
                name = o->name;
        rc = c == ':' ? -1 : one_flag(cfg, &seen, c, name, optarg);
        if (rc > 0)
            return rc;
        if (rc < 0) {
            fprintf(stderr, c == ':' ? "hourglass: option '%s' needs a value\n"
                                     : "hourglass: unknown option '%s'\n",
                    argv[optind - 1]);
            fputs("Try 'hourglass --help' for the list of options.\n", stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hourglass: unexpected argument '%s'\n"
                        "Try 'hourglass --help' for the list of options.\n", argv[optind]);
        return 2;
    }
    return complete(cfg, check);
}

int cli_parse(struct cfg *cfg, int argc, char **argv)
{
    cli_defaults(cfg);
    int rc = parse_flags(cfg, argc, argv);
    if (rc)
        cli_free(cfg);
    return rc;
}
