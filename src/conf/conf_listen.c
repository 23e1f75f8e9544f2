/* conf_listen.c -- the file's listeners and forward proxy: `listen:` (with
 * TLS), `forward:` and `resolver:` (see conf_internal.h). */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void conf_free_listen_tls(struct tls_server_conf *t)
{
    for (unsigned i = 0; i < t->npairs; i++) {
        free((char *)t->pairs[i].cert);
        free((char *)t->pairs[i].key);
    }
    free((struct tls_pair *)t->pairs);
    *t = (struct tls_server_conf){0};
}

/* `min_version`: "1.2" or "1.3" (older versions are never offered). */
static bool min_version(struct conf_ctx *x, yaml_node_t *n, const char *key,
                        struct tls_server_conf *t)
{
    const char *s = conf_scalar(x, n, key, "\"1.2\" or \"1.3\"");
    if (s && !strcmp(s, "1.2"))
        t->min_version = TLS1_2_VERSION;
    else if (s && !strcmp(s, "1.3"))
        t->min_version = TLS1_3_VERSION;
    else {
        if (s)
            conf_expected(x, n, key, "\"1.2\" or \"1.3\" (older versions are not offered)");
        return false;
    }
    return true;
}

/* A listener's `tls:` {cert, key, certificates: [{cert, key}...],
 * min_version}. The certificates are loaded once here, so that a file that
 * does not load is reported with its line (and a reload refused). */
static bool parse_listen_tls(struct conf_ctx *x, yaml_node_t *n, const char *path,
                             struct tls_server_conf *t)
{
    static const char *const keys[] = {"cert", "key", "certificates", "min_version", NULL};
    yaml_node_t *v[MAX_KEYS];
    yaml_node_t *where[2 * 65];   /* the cert and key nodes of each pair */
    char sub[PATHLEN], sub2[PATHLEN];
    if (!conf_fields(x, n, path, "a mapping (cert, key, certificates, min_version)", keys, v))
        return false;
    unsigned nmore = 0;
    conf_join(sub, path, "certificates");
    if (v[2] && !conf_items(x, v[2], sub, "a list of {cert, key}", &nmore))
        return false;
    if (nmore > 64) {
        conf_err(x, v[2], sub, "at most 64 certificates, got %u", nmore);
        return false;
    }
    if (!v[0] && !v[1] && !nmore) {
        conf_err(x, n, path, "expected cert and key (or certificates: a list of {cert, key})");
        return false;
    }
    struct tls_pair *pairs = calloc(nmore + 1, sizeof *pairs);
    if (!pairs) {
        x->nomem = true;
        return false;
    }
    t->pairs = pairs;
    bool ok = true;
    if (v[0] || v[1]) {
        ok = conf_tls_pair(x, n, path, v[0], v[1], &pairs[0]);
        where[0] = v[0];
        where[1] = v[1];
        t->npairs = 1;
    }
    for (unsigned i = 0; i < nmore && ok; i++) {
        static const char *const pk[] = {"cert", "key", NULL};
        yaml_node_t *w[MAX_KEYS], *it = conf_item(x, v[2], i);
        conf_joini(sub2, sub, i);
        if (!it || !conf_fields(x, it, sub2, "a mapping (cert, key)", pk, w)) {
            ok = false;
            break;
        }
        ok = conf_tls_pair(x, it, sub2, w[0], w[1], &pairs[t->npairs]);
        where[2 * t->npairs] = w[0];
        where[2 * t->npairs + 1] = w[1];
        t->npairs++;
    }
    t->min_version = TLS1_2_VERSION;
    conf_join(sub2, path, "min_version");
    if (v[3] && !min_version(x, v[3], sub2, t))
        ok = false;
    if (ok) {
        char why[512];
        unsigned bad = 0;
        int bad_key = 0;
        struct tls_server *srv = tls_server_new(t, why, sizeof why, &bad, &bad_key);
        if (!srv) {
            char k[PATHLEN];
            if (bad == 0 && (v[0] || v[1]))
                conf_join(k, path, bad_key ? "key" : "cert");
            else {
                conf_joini(sub2, sub, bad - (v[0] || v[1] ? 1 : 0));
                conf_join(k, sub2, bad_key ? "key" : "cert");
            }
            conf_err(x, where[2 * bad + (bad_key ? 1 : 0)], k, "%s", why);
            ok = false;
        }
        tls_server_free(srv);
    }
    if (!ok)
        conf_free_listen_tls(t);
    return ok;
}

/* defer_accept: whole seconds (val_defer_accept), or false for off. A
 * duration of the wrong kind gets conf_get_dur's own message. */
static bool conf_get_defer(struct conf_ctx *x, yaml_node_t *n, const char *key, unsigned *secs)
{
    const char *s = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
    if (s && !strcmp(s, "false")) {
        *secs = 0;
        return true;
    }
    uint64_t ms;
    if (!conf_get_dur(x, n, key, &ms))
        return false;
    if (val_defer_accept(s, secs) < 0) {
        conf_expected(x, n, key, VAL_DEFER_WHAT ", or false");
        return false;
    }
    return true;
}

/* One listener's settings besides its address. */
struct listener_opts {
    bool trust, forward, underscores, http2, trust_rid;
    unsigned defer;   /* defer_accept, seconds */
    struct tls_server_conf tls;
};

/* A listener written as a mapping: its keys into o; *addr becomes the
 * address node and key its path. false after an error (o->tls freed). */
static bool parse_listen_map(struct conf_ctx *x, yaml_node_t *v, char *key,
                             struct listener_opts *o, yaml_node_t **addr)
{
    static const char *const lk[] = {"address", "trust_deadline_header", "mode", "tls",
                                     "underscores_in_headers", "http2", "trust_request_id",
                                     "defer_accept", NULL};
    yaml_node_t *w[MAX_KEYS];
    char sub[PATHLEN];
    if (!conf_fields(x, v, key, "a listener: ADDR:PORT or a mapping with address", lk, w))
        return false;
    conf_join(sub, key, "trust_deadline_header");
    if (w[1] && !conf_get_bool(x, w[1], sub, &o->trust))
        return false;
    conf_join(sub, key, "mode");
    if (w[2]) {
        static const char *const modes[] = {"reverse", "forward", NULL};
        int m = conf_get_enum(x, w[2], sub, modes);
        if (m < 0)
            return false;
        o->forward = m == 1;
    }
    conf_join(sub, key, "underscores_in_headers");
    if (w[4] && !conf_get_bool(x, w[4], sub, &o->underscores))
        return false;
    conf_join(sub, key, "trust_request_id");
    if (w[6] && !conf_get_bool(x, w[6], sub, &o->trust_rid))
        return false;
    conf_join(sub, key, "defer_accept");
    if (w[7] && !conf_get_defer(x, w[7], sub, &o->defer))
        return false;
    conf_join(sub, key, "http2");
    o->http2 = !o->forward;   /* a forward proxy listener does not offer HTTP/2 */
    if (w[5] && !conf_get_bool(x, w[5], sub, &o->http2))
        return false;
    if (o->http2 && o->forward) {
        conf_err(x, w[5], sub, "a forward proxy listener (mode: forward) does not offer HTTP/2");
        return false;
    }
    conf_join(sub, key, "tls");
    if (w[3] && !parse_listen_tls(x, w[3], sub, &o->tls))
        return false;
    conf_join(sub, key, "address");
    if (!w[0]) {
        conf_err(x, v, sub, "missing; expected ADDR:PORT");
        conf_free_listen_tls(&o->tls);
        return false;
    }
    *addr = w[0];
    memcpy(key, sub, PATHLEN);
    return true;
}

/* The `listen` arrays, one slot per item. false when out of memory. */
static bool listen_alloc(struct conf *c, unsigned count)
{
    c->listen = calloc(count, sizeof *c->listen);
    c->listen_trust = calloc(count, sizeof *c->listen_trust);
    c->listen_trust_rid = calloc(count, sizeof *c->listen_trust_rid);
    c->listen_forward = calloc(count, sizeof *c->listen_forward);
    c->listen_underscores = calloc(count, sizeof *c->listen_underscores);
    c->listen_http2 = calloc(count, sizeof *c->listen_http2);
    c->listen_tls = calloc(count, sizeof *c->listen_tls);
    c->listen_defer = calloc(count, sizeof *c->listen_defer);
    return c->listen && c->listen_trust && c->listen_trust_rid && c->listen_forward && c->listen_underscores &&
           c->listen_http2 && c->listen_tls && c->listen_defer;
}

/* `listen:` items are "ADDR:PORT" or {address: ADDR:PORT,
 * trust_deadline_header: BOOL, mode: reverse|forward, tls: {...},
 * underscores_in_headers: BOOL, http2: BOOL, trust_request_id: BOOL,
 * defer_accept: DURATION}. http2 is on unless the
 * listener is a forward proxy's, where it cannot be turned on. */
void conf_parse_listen(struct conf_ctx *x, yaml_node_t *n)
{
    static const char what[] = "a list of ADDR:PORT such as 127.0.0.1:8080 or [::]:80";
    unsigned count;
    if (!conf_items(x, n, "listen", what, &count))
        return;
    if (count == 0) {
        conf_err(x, n, "listen", "expected at least one ADDR:PORT");
        return;
    }
    if (count > CLI_MAX_LISTEN) {
        conf_err(x, n, "listen", "at most %d listeners, got %u", CLI_MAX_LISTEN, count);
        return;
    }
    struct conf *c = x->c;
    if (!listen_alloc(c, count)) {
        x->nomem = true;
        return;
    }
    int lines[CLI_MAX_LISTEN];
    for (unsigned i = 0; i < count; i++) {
        char key[PATHLEN];
        conf_joini(key, "listen", i);
        yaml_node_t *v = conf_item(x, n, i);
        if (!v)
            return;
        struct cli_addr *a = &c->listen[c->nlisten];
        struct listener_opts o = {.http2 = true};
        if (v->type == YAML_MAPPING_NODE && !parse_listen_map(x, v, key, &o, &v))
            continue;
        if (!conf_get_addr(x, v, key, "ADDR:PORT", a)) {
            conf_free_listen_tls(&o.tls);
            continue;
        }
        bool dup = false;
        for (unsigned j = 0; j < c->nlisten && !dup; j++)
            if (!strcmp(c->listen[j].text, a->text)) {
                conf_err(x, v, key, "%s is listed twice (first on line %d)", a->text, lines[j]);
                dup = true;
            }
        if (dup) {
            conf_free_listen_tls(&o.tls);
            continue;
        }
        c->listen_trust[c->nlisten] = o.trust;
        c->listen_trust_rid[c->nlisten] = o.trust_rid;
        c->listen_forward[c->nlisten] = o.forward;
        c->listen_underscores[c->nlisten] = o.underscores;
        c->listen_http2[c->nlisten] = o.http2;
        c->listen_defer[c->nlisten] = o.defer;
        c->listen_tls[c->nlisten] = o.tls;
        lines[c->nlisten++] = conf_line(v);
    }
}

/* A list of networks ("10.0.0.0/8", "::1") into list[0..CLI_MAX_CIDR). */
static bool get_cidrs(struct conf_ctx *x, yaml_node_t *n, const char *key, struct addr_cidr *list,
                      unsigned *count)
{
    static const char what[] = "a list of addresses or networks such as 10.0.0.0/8 or ::1";
    unsigned k;
    if (!conf_items(x, n, key, what, &k))
        return false;
    if (k > CLI_MAX_CIDR) {
        conf_err(x, n, key, "at most %d networks, got %u", CLI_MAX_CIDR, k);
        return false;
    }
    *count = 0;
    for (unsigned i = 0; i < k; i++) {
        char sub[PATHLEN];
        conf_joini(sub, key, i);
        yaml_node_t *v = conf_item(x, n, i);
        const char *s =
            v ? conf_scalar(x, v, sub, "an address or network such as 10.0.0.0/8") : NULL;
        if (!s)
            continue;
        if (addr_cidr_parse(s, &list[*count]) < 0) {
            conf_err(x, v, sub, "expected an address or network such as 10.0.0.0/8 or ::1 (no host "
                                "bits below the prefix), got \"%.64s\"", s);
            continue;
        }
        (*count)++;
    }
    return true;
}

/* `forward:` -- who may use the forward proxy and where it may go. */
void conf_parse_forward(struct conf_ctx *x, yaml_node_t *n)
{
    static const char *const keys[] = {"allow_clients", "allow_destinations", "connect_ports",
                                       "auth_file", NULL};
    yaml_node_t *v[MAX_KEYS];
    struct cfg_forward *f = &x->c->fwd;
    if (!conf_fields(x, n, "forward",
                     "a mapping (allow_clients, allow_destinations, connect_ports, auth_file)",
                     keys, v))
        return;
    if (v[0])
        x->c->fwd_clients_set = get_cidrs(x, v[0], "forward.allow_clients", f->clients,
                                          &f->nclients);
    if (v[1])
        x->c->fwd_dests_set = get_cidrs(x, v[1], "forward.allow_destinations", f->dests,
                                        &f->ndests);
    if (v[2]) {
        unsigned k;
        if (conf_items(x, v[2], "forward.connect_ports", "a list of ports", &k)) {
            if (k > CLI_MAX_PORTS) {
                conf_err(x, v[2], "forward.connect_ports", "at most %d ports, got %u",
                         CLI_MAX_PORTS, k);
            } else {
                x->c->fwd_ports_set = true;
                for (unsigned i = 0; i < k; i++) {
                    char sub[PATHLEN];
                    unsigned port;
                    conf_joini(sub, "forward.connect_ports", i);
                    yaml_node_t *w = conf_item(x, v[2], i);
                    if (w && conf_get_uint(x, w, sub, 1, 65535, &port))
                        f->ports[f->nports++] = (uint16_t)port;
                }
            }
        }
    }
    if (v[3]) {
        const char *s = conf_scalar(x, v[3], "forward.auth_file", "a file path");
        if (s)
            f->auth_file = conf_strdup(x, s);
    }
}

/* `resolver:` -- the DNS servers of the forward proxy. */
void conf_parse_resolver(struct conf_ctx *x, yaml_node_t *n)
{
    static const char *const keys[] = {"servers", NULL};
    yaml_node_t *v[MAX_KEYS];
    if (!conf_fields(x, n, "resolver", "a mapping (servers)", keys, v) || !v[0])
        return;
    unsigned k;
    if (!conf_items(x, v[0], "resolver.servers", "a list of ADDR:PORT", &k))
        return;
    char csv[1024] = "";
    for (unsigned i = 0; i < k; i++) {
        char sub[PATHLEN];
        struct cli_addr a;
        conf_joini(sub, "resolver.servers", i);
        yaml_node_t *w = conf_item(x, v[0], i);
        if (w && conf_get_addr(x, w, sub, "ADDR:PORT", &a))
            snprintf(csv + strlen(csv), sizeof csv - strlen(csv), "%s%s", *csv ? "," : "",
                     a.text);
    }
    if (*csv)
        x->c->fwd.resolver = conf_strdup(x, csv);
}
