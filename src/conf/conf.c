/* conf.c -- the configuration file: libyaml's document API into the checked
 * model of conf.h. Every check reports FILE:LINE:COL: KEY: what was expected,
 * and checking goes on after an error so that one run lists them all (up to
 * MAX_ERRORS). The walk follows a fixed schema, so its depth is bounded; a
 * count of visited nodes bounds the work that aliases can multiply.
 *
 * Here: the top level, loading, and the model's use. The sections are read
 * by conf_listen.c, conf_pools.c and conf_routes.c, with the helpers of
 * conf_yaml.c (conf_internal.h). */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tkey.h"

#define MAX_FILE (16u << 20)

/* The keys under `timeouts:` and their kinds: the one table between the
 * file's names and enum tmo_kind, in the order messages list the keys. */
static const struct {
    const char *key;
    enum tmo_kind kind;
} tmo_keys[] = {
    {"connect", TMO_CONNECT},
    {"write", TMO_WRITE},
    {"read", TMO_READ},
    {"total", TMO_TOTAL},
    {"header", TMO_HEADER},
    {"body", TMO_BODY},
    {"send", TMO_SEND},
    {"idle", TMO_IDLE},
    {"upstream_idle", TMO_UPSTREAM_IDLE},
    {"dns", TMO_DNS},
    {"tunnel_idle", TMO_TUNNEL_IDLE},
    {"tunnel_max", TMO_TUNNEL_MAX},
    {"handshake", TMO_HANDSHAKE},
    {"queue", TMO_QUEUE},
};
#define NTMO_KEYS (sizeof tmo_keys / sizeof *tmo_keys)

/* `timeouts:` at the top level, or a route's overrides (route: the client
 * head and pooled-connection timeouts cannot depend on the route). */
void conf_parse_timeouts(struct conf_ctx *x, yaml_node_t *n, const char *path,
                                struct conf_timeouts *t, bool route)
{
    const char *keys[NTMO_KEYS + 1];
    yaml_node_t *vals[MAX_KEYS];
    for (size_t i = 0; i < NTMO_KEYS; i++)
        keys[i] = tmo_keys[i].key;
    keys[NTMO_KEYS] = NULL;
    if (!conf_fields(x, n, path, "a mapping of timeouts (connect, read, total, ...)", keys, vals))
        return;
    for (size_t i = 0; i < NTMO_KEYS; i++) {
        enum tmo_kind k = tmo_keys[i].kind;
        if (!vals[i])
            continue;
        char key[PATHLEN];
        conf_join(key, path, keys[i]);
        if (route && k == TMO_HEADER) {
            conf_err(x, vals[i], key, "the header timeout runs before a route is chosen; "
                                      "set it in the top-level timeouts");
            continue;
        }
        if (route && (k == TMO_DNS || k == TMO_IDLE || k == TMO_HANDSHAKE)) {
            conf_err(x, vals[i], key, "the %s timeout runs before a route is chosen; set it in the "
                                      "top-level timeouts", keys[i]);
            continue;
        }
        if (route && k == TMO_UPSTREAM_IDLE) {
            conf_err(x, vals[i], key, "pooled connections belong to a pool; set "
                                      "pools.NAME.keepalive.idle_timeout instead");
            continue;
        }
        conf_get_dur(x, vals[i], key, &t->ms[k]);
    }
}

static void parse_limits(struct conf_ctx *x, yaml_node_t *n)
{
    static const char *const keys[] = {"max_connections", "max_request_line", "max_header_size",
                                       "max_headers", "max_body_size",
                                       "max_response_header_size", "max_response_headers",
                                       "max_concurrent_streams", "pressure_percent",
                                       "pressure_header_percent", "request_buffering_budget",
                                       NULL};
    yaml_node_t *v[MAX_KEYS];
    struct conf_limits *l = &x->c->limits;
    if (!conf_fields(x, n, "limits", "a mapping of limits (max_connections, ...)", keys, v))
        return;
    uint64_t sz;
    unsigned u;
    if (v[0] && conf_get_uint(x, v[0], "limits.max_connections", 1, 1000000, &u))
        l->max_connections = u;
    /* the whole head must fit one 64 KiB buffer (as --max-request-line) */
    if (v[1] && conf_get_size(x, v[1], "limits.max_request_line", 256, 24576,
                              "a size from 256 bytes to 24k", &sz))
        l->max_request_line = (uint32_t)sz;
    if (v[2] && conf_get_size(x, v[2], "limits.max_header_size", 256, 49152,
                              "a size from 256 bytes to 48k", &sz))
        l->max_header_size = (uint32_t)sz;
    if (v[3] && conf_get_uint(x, v[3], "limits.max_headers", 1, 256, &u))
        l->max_headers = u;
    if (v[4] && conf_get_size(x, v[4], "limits.max_body_size", 0, UINT64_MAX,
                              "a size such as 0 (unlimited), 8192, 64k or 10MiB", &sz)) {
        l->max_body_size = sz;
        l->max_body_size_set = true;
    }
    /* a response head is read into one 64 KiB buffer */
    if (v[5] && conf_get_size(x, v[5], "limits.max_response_header_size", 1024, 65536,
                              "a size from 1k to 64k", &sz))
        l->max_response_header_size = (uint32_t)sz;
    if (v[6] && conf_get_uint(x, v[6], "limits.max_response_headers", 1, 256, &u))
        l->max_response_headers = u;
    if (v[7] && conf_get_uint(x, v[7], "limits.max_concurrent_streams", 1, 10000, &u))
        l->max_concurrent_streams = u;
    if (v[8] && conf_get_uint(x, v[8], "limits.pressure_percent", 1, 100, &u))
        l->pressure_percent = u;
    if (v[9] && conf_get_uint(x, v[9], "limits.pressure_header_percent", 1, 100, &u))
        l->pressure_header_percent = u;
    if (v[10] && conf_get_size(x, v[10], "limits.request_buffering_budget", 0, UINT64_MAX,
                               "a size such as 0 (no buffering), 64m or 1GiB", &sz)) {
        l->request_buffering_budget = sz;
        l->request_buffering_budget_set = true;
    }
}

/* `tls:` what all TLS listeners share: their session tickets' keys. The key
 * ring keeps TKEY_SLOTS keys (base/tkey.h), the current one and those still
 * decrypting tickets: a lifetime over (TKEY_SLOTS - 2) rotations would need
 * more (one slot spare for a rotation that comes late). */
static void parse_tls(struct conf_ctx *x, yaml_node_t *n)
{
    static const char *const keys[] = {"ticket_rotation", "ticket_lifetime", NULL};
    yaml_node_t *v[MAX_KEYS];
    if (!conf_fields(x, n, "tls", "a mapping (ticket_rotation, ticket_lifetime)", keys, v))
        return;
    uint64_t ms;
    static const uint64_t day = 86400000;
    if (v[0] && conf_get_dur(x, v[0], "tls.ticket_rotation", &ms)) {
        if (ms < 1000 || ms > day)
            conf_err(x, v[0], "tls.ticket_rotation", "expected a duration from 1s to 24h");
        else
            x->c->ticket_rotation_ms = ms;
    }
    if (v[1] && conf_get_dur(x, v[1], "tls.ticket_lifetime", &ms)) {
        if (ms < 1000 || ms > 7 * day)
            conf_err(x, v[1], "tls.ticket_lifetime", "expected a duration from 1s to 168h");
        else
            x->c->ticket_lifetime_ms = ms;
    }
    uint64_t rot = x->c->ticket_rotation_ms ? x->c->ticket_rotation_ms : 3600000;
    uint64_t life = x->c->ticket_lifetime_ms ? x->c->ticket_lifetime_ms : 3600000;
    if (life > rot * (TKEY_SLOTS - 2))
        conf_err(x, v[1] ? v[1] : v[0], v[1] ? "tls.ticket_lifetime" : "tls.ticket_rotation",
                 "a ticket lifetime of %llu ms needs more than %d keys kept at a rotation "
                 "every %llu ms: at most %d rotations per lifetime",
                 (unsigned long long)life, TKEY_SLOTS, (unsigned long long)rot,
                 TKEY_SLOTS - 2);
}

static void parse_top(struct conf_ctx *x, yaml_node_t *root)
{
    static const char *const keys[] = {"listen", "timeouts", "limits", "access_log", "pools",
                                       "routes", "workers", "deadline_header", "forward",
                                       "resolver", "tls", NULL};
    yaml_node_t *v[MAX_KEYS];
    if (!conf_fields(x, root, "",
                     "a mapping of top-level keys (listen, timeouts, limits, access_log, pools, "
                     "routes, workers, deadline_header, forward, resolver, tls)",
                     keys, v))
        return;
    if (v[10])
        parse_tls(x, v[10]);
    if (v[0])
        conf_parse_listen(x, v[0]);
    if (v[1])
        conf_parse_timeouts(x, v[1], "timeouts", &x->c->timeouts, false);
    if (v[2])
        parse_limits(x, v[2]);
    if (v[3]) {
        const char *s = conf_scalar(x, v[3], "access_log", "a file path, - or off");
        if (s)
            x->c->access_log = conf_strdup(x, s);
    }
    if (v[4])
        conf_parse_pools(x, v[4]);
    if (v[5])
        conf_parse_routes(x, v[5]);
    if (v[6]) {
        const char *s = v[6]->type == YAML_SCALAR_NODE ? (const char *)v[6]->data.scalar.value
                                                        : NULL;
        if (s && !strcmp(s, "auto"))
            x->c->workers = CONF_WORKERS_AUTO;
        else
            conf_get_uint(x, v[6], "workers", 1, CLI_MAX_WORKERS, &x->c->workers);
    }
    if (v[8])
        conf_parse_forward(x, v[8]);
    if (v[9])
        conf_parse_resolver(x, v[9]);
    if (v[7]) {
        static const char what[] = "a header name (letters, digits, - and _) or off";
        const char *s = conf_scalar(x, v[7], "deadline_header", what);
        if (s && !strcmp(s, "off"))
            x->c->deadline_header = conf_strdup(x, "");
        else if (s && !val_header_name(s))
            conf_expected(x, v[7], "deadline_header", what);
        else if (s)
            x->c->deadline_header = conf_strdup(x, s);
    }
    conf_resolve_pools(x);
}

/* ------------------------------------------------------------------ load */

/* A syntax error from libyaml, with the position it gives. */
static void syntax_error(struct conf_ctx *x, const yaml_parser_t *p, const char *text, size_t len)
{
    yaml_node_t at = {0};
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_MEMORY_ERROR) {
        x->nomem = true;
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* no mark: count lines up to the offset */
        size_t line = 0, col = 0;
        for (size_t i = 0; i < p->problem_offset && i < len; i++, col++)
            if (text[i] == '\n')
                line++, col = (size_t)-1;
        at.start_mark.line = line;
        at.start_mark.column = col;
        conf_err(x, &at, "syntax", "%s (byte %zu)", problem, p->problem_offset);
        return;
    }
    at.start_mark = p->problem_mark;
    if (p->context)
        conf_err(x, &at, "syntax", "%s %s that starts on line %d", problem, p->context,
                 (int)p->context_mark.line + 1);
    else
        conf_err(x, &at, "syntax", "%s", problem);
}

struct conf *conf_parse(const char *name, const char *text, size_t len, char **errors)
{
    struct conf_ctx x = {.file = name};
    *errors = NULL;
    x.c = calloc(1, sizeof *x.c);
    if (!x.c) {
        *errors = strdup("out of memory\n");
        return NULL;
    }
    x.c->file = conf_strdup(&x, name);

    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) {
        x.nomem = true;
    } else {
        yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
        if (!yaml_parser_load(&p, &doc)) {
            syntax_error(&x, &p, text, len);
        } else {
            x.doc = &doc;
            yaml_node_t *root = yaml_document_get_root_node(&doc);
            if (!root) {
                conf_err(&x, NULL, NULL, "the file is empty; expected a mapping of top-level keys "
                                         "(listen, timeouts, limits, access_log, pools, routes)");
            } else {
                parse_top(&x, root);
                yaml_document_t more;
                if (!yaml_parser_load(&p, &more)) {
                    syntax_error(&x, &p, text, len);
                } else {
                    yaml_node_t *r2 = yaml_document_get_root_node(&more);
                    if (r2)
                        conf_err(&x, r2, NULL, "a second YAML document; expected only one");
                    yaml_document_delete(&more);
                }
            }
            yaml_document_delete(&doc);
        }
        yaml_parser_delete(&p);
    }
    free(x.route_pool);
    if (x.nerr || x.nomem || x.too_big) {
        conf_free(x.c);
        *errors = conf_errors_text(&x);
        return NULL;
    }
    return x.c;
}

struct conf *conf_load(const char *path, char **errors)
{
    char *msg = NULL, *text = NULL;
    size_t len = 0, cap = 0;
    const char *why = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        why = strerror(errno);
    } else {
        for (;;) {
            if (len > MAX_FILE) {
                why = "larger than 16 MiB; expected a configuration file";
                break;
            }
            if (len >= cap) {
                cap = cap ? 2 * cap : 65536;
                char *t = realloc(text, cap + 1);   /* + 1: room to see past MAX_FILE */
                if (!t) {
                    why = "out of memory";
                    break;
                }
                text = t;
            }
            size_t got = fread(text + len, 1, cap + 1 - len, f);
            len += got;
            if (got == 0) {
                if (ferror(f))
                    why = strerror(errno);
                break;
            }
        }
        fclose(f);
    }
    if (why) {
        if (asprintf(&msg, "%s: cannot read: %s\n", path, why) < 0)
            msg = NULL;
        free(text);
        *errors = msg;
        return NULL;
    }
    struct conf *c = conf_parse(path, text ? text : "", len, errors);
    free(text);
    return c;
}

void conf_free(struct conf *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->npools; i++) {
        struct conf_pool *p = &c->pools[i];
        for (unsigned j = 0; j < p->nservers; j++)
            free(p->servers[j].address);
        free(p->servers);
        free(p->active.path);
        free(p->name);
        conf_free_pool_tls(&p->tls);
    }
    free(c->pools);
    for (unsigned i = 0; i < c->nroutes; i++) {
        free(c->routes[i].host);
        free(c->routes[i].path);
    }
    free(c->routes);
    for (unsigned i = 0; c->listen_tls && i < c->nlisten; i++)
        conf_free_listen_tls(&c->listen_tls[i]);
    free(c->listen_tls);
    free(c->listen);
    free(c->listen_trust);
    free(c->listen_trust_rid);
    free(c->listen_underscores);
    free(c->listen_http2);
    free(c->listen_defer);
    free(c->listen_forward);
    free((char *)c->fwd.auth_file);
    free((char *)c->fwd.resolver);
    free(c->deadline_header);
    free(c->access_log);
    free(c->file);
    free(c);
}

/* ----------------------------------------------------------------- using */

const struct conf_pool *conf_default_pool(const struct conf *c)
{
    for (unsigned i = 0; i < c->nroutes; i++)
        if (!c->routes[i].host && c->routes[i].path && !strcmp(c->routes[i].path, "/"))
            return c->routes[i].pool;
    return c->npools ? &c->pools[0] : NULL;
}

const char *conf_tmo_key(enum tmo_kind k)
{
    for (size_t i = 0; i < NTMO_KEYS; i++)
        if (tmo_keys[i].kind == k)
            return tmo_keys[i].key;
    return NULL;
}

enum tmo_kind conf_tmo_kind(const char *key)
{
    for (size_t i = 0; i < NTMO_KEYS; i++)
        if (!strcmp(tmo_keys[i].key, key))
            return tmo_keys[i].kind;
    return TMO_NONE;
}

void conf_apply(const struct conf *c, struct cfg *cfg)
{
    if (c->nlisten) {
        memcpy(cfg->listen, c->listen, c->nlisten * sizeof *c->listen);
        for (unsigned i = 0; i < c->nlisten; i++) {
            cfg->listen_trust[i] = c->listen_trust[i];
            cfg->listen_trust_rid[i] = c->listen_trust_rid[i];
            cfg->listen_forward[i] = c->listen_forward[i];
            cfg->listen_underscores[i] = c->listen_underscores[i];
            cfg->listen_http2[i] = c->listen_http2[i];
            cfg->listen_defer[i] = c->listen_defer[i];
            cfg->listen_tls[i] = c->listen_tls[i].npairs ? &c->listen_tls[i] : NULL;
        }
        cfg->nlisten = c->nlisten;
    }
    if (c->workers)
        cfg->workers = c->workers == CONF_WORKERS_AUTO ? 0 : c->workers;
    if (c->fwd_clients_set) {
        memcpy(cfg->fwd.clients, c->fwd.clients, sizeof c->fwd.clients);
        cfg->fwd.nclients = c->fwd.nclients;
    }
    if (c->fwd_dests_set) {
        memcpy(cfg->fwd.dests, c->fwd.dests, sizeof c->fwd.dests);
        cfg->fwd.ndests = c->fwd.ndests;
    }
    if (c->fwd_ports_set) {
        memcpy(cfg->fwd.ports, c->fwd.ports, sizeof c->fwd.ports);
        cfg->fwd.nports = c->fwd.nports;
    }
    if (c->fwd.auth_file)
        cfg->fwd.auth_file = c->fwd.auth_file;
    if (c->fwd.resolver)
        cfg->fwd.resolver = c->fwd.resolver;
    if (c->deadline_header)
        cfg->deadline_header = *c->deadline_header ? c->deadline_header : NULL;
    for (int k = 0; k < TMO_COUNT; k++)
        if (c->timeouts.ms[k])
            cfg->ms[k] = c->timeouts.ms[k];
    const struct conf_pool *p = conf_default_pool(c);
    if (p) {
        for (unsigned i = 0; i < p->nservers; i++)
            cfg->upstream[i] = p->servers[i].addr;
        cfg->nupstream = p->nservers;
        if (p->keepalive_idle_ms)
            cfg->ms[TMO_UPSTREAM_IDLE] = p->keepalive_idle_ms;
    }
    const struct conf_limits *l = &c->limits;
    if (l->max_connections)
        cfg->max_connections = l->max_connections;
    if (l->max_request_line)
        cfg->max_request_line = l->max_request_line;
    if (l->max_header_size)
        cfg->max_header_size = l->max_header_size;
    if (l->max_headers)
        cfg->max_headers = l->max_headers;
    if (l->max_body_size_set)
        cfg->max_body = l->max_body_size;
    if (l->max_response_header_size)
        cfg->max_response_header_size = l->max_response_header_size;
    if (l->max_response_headers)
        cfg->max_response_headers = l->max_response_headers;
    if (l->max_concurrent_streams)
        cfg->max_streams = l->max_concurrent_streams;
    if (l->pressure_percent)
        cfg->pressure_percent = l->pressure_percent;
    if (l->pressure_header_percent)
        cfg->pressure_header_percent = l->pressure_header_percent;
    if (l->request_buffering_budget_set)
        cfg->reqbuf_budget = l->request_buffering_budget;
    if (c->ticket_rotation_ms)
        cfg->ticket_rotation_ms = c->ticket_rotation_ms;
    if (c->ticket_lifetime_ms)
        cfg->ticket_lifetime_ms = c->ticket_lifetime_ms;
    if (c->access_log)
        cfg->access_log = c->access_log;
}

uint64_t conf_route_ms(const struct conf_route *r, enum tmo_kind k, const struct cfg *cfg)
{
    if (k >= TMO_COUNT)
        return 0;
    return r && r->timeouts.ms[k] ? r->timeouts.ms[k] : cfg->ms[k];
}

