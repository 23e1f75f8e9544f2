/* conf.c -- the configuration file: libyaml's document API into the checked
 * model of conf.h. Every check reports FILE:LINE:COL: KEY: what was expected,
 * and checking goes on after an error so that one run lists them all (up to
 * MAX_ERRORS). The walk follows a fixed schema, so its depth is bounded; a
 * count of visited nodes bounds the work that aliases can multiply. */
#define _GNU_SOURCE
#include "conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_ERRORS 20
#define MAX_VISITS 1000000u
#define MAX_FILE (16u << 20)
#define MAX_SERVERS CLI_MAX_UPSTREAM
#define MAX_ROUTES 10000u
#define MAX_POOLS 1000u
#define PATHLEN 320

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
};
#define NTMO_KEYS (sizeof tmo_keys / sizeof *tmo_keys)

static const char WHAT_DUR[] = "a duration such as 250ms, 1.5s, 2m or 30 (seconds)";

struct error {
    int line, col;          /* 0: no position (file-wide) */
    unsigned seq;           /* order found, to keep a stable sort */
    char *text;             /* the whole line, with '\n' */
};

struct conf_ctx {
    const char *file;
    yaml_document_t *doc;
    struct conf *c;
    struct error errs[MAX_ERRORS];
    unsigned nerr;          /* errors found (may pass MAX_ERRORS) */
    unsigned visits;
    bool nomem;
    bool too_big;           /* MAX_VISITS reached */
    yaml_node_t **route_pool;   /* the `pool:` value of each route */
};

/* ---------------------------------------------------------------- errors */

static void errv(struct conf_ctx *x, const yaml_node_t *n, const char *key, const char *fmt,
                 va_list ap)
{
    if (x->nerr++ >= MAX_ERRORS)
        return;
    struct error *e = &x->errs[x->nerr - 1];
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    e->seq = x->nerr;
    e->line = n ? (int)n->start_mark.line + 1 : 0;
    e->col = n ? (int)n->start_mark.column + 1 : 0;
    int r;
    if (n)
        r = asprintf(&e->text, "%s:%d:%d: %s%s%s\n", x->file, e->line, e->col, key ? key : "",
                     key && *key ? ": " : "", msg);
    else
        r = asprintf(&e->text, "%s: %s%s%s\n", x->file, key ? key : "", key && *key ? ": " : "",
                     msg);
    if (r < 0) {
        e->text = NULL;
        x->nomem = true;
    }
}

static int error_order(const void *a, const void *b)
{
    const struct error *p = a, *q = b;
    if (p->line != q->line)
        return p->line < q->line ? -1 : 1;
    if (p->col != q->col)
        return p->col < q->col ? -1 : 1;
    return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* The error lines in file order, as one malloc'd text. */
static char *conf_errors_text(struct conf_ctx *x)
{
    unsigned n = x->nerr < MAX_ERRORS ? x->nerr : MAX_ERRORS;
    qsort(x->errs, n, sizeof *x->errs, error_order);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f) {
        for (unsigned i = 0; i < n; i++)
            if (x->errs[i].text)
                fputs(x->errs[i].text, f);
        if (x->nerr > MAX_ERRORS)
            fprintf(f, "%s: %u more errors not shown\n", x->file, x->nerr - MAX_ERRORS);
        if (x->too_big)
            fprintf(f, "%s: the document expands past %u nodes (aliases?); stopped there\n",
                    x->file, MAX_VISITS);
        if (x->nomem)
            fprintf(f, "%s: out of memory\n", x->file);
        fclose(f);
    }
    for (unsigned i = 0; i < n; i++)
        free(x->errs[i].text);
    return out;
}

__attribute__((format(printf, 4, 5)))
static void conf_err(struct conf_ctx *x, const yaml_node_t *n, const char *key, const char *fmt,
                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    errv(x, n, key, fmt, ap);
    va_end(ap);
}

static char *conf_strdup(struct conf_ctx *x, const char *s)
{
    char *d = strdup(s);
    if (!d)
        x->nomem = true;
    return d;
}

/* ----------------------------------------------------------------- nodes */

static int conf_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static yaml_node_t *conf_node(struct conf_ctx *x, int id)
{
    if (x->visits >= MAX_VISITS) {
        x->too_big = true;   /* reported after the other errors, never dropped */
        return NULL;
    }
    x->visits++;
    return yaml_document_get_node(x->doc, id);
}

static bool conf_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

/* What a node is, for "got ...": a mapping, a list, nothing, or the quoted
 * text (shortened, control bytes shown as '?'). */
static const char *describe(const yaml_node_t *n, char *buf, size_t size)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (conf_is_null(n))
        return "nothing";
    const unsigned char *v = n->data.scalar.value;
    size_t len = n->data.scalar.length, o = 0, max = size - 6;
    buf[o++] = '"';
    for (size_t i = 0; i < len && i < max; i++)
        buf[o++] = v[i] < 0x20 || v[i] == 0x7f ? '?' : (char)v[i];
    if (len > max) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static void conf_expected(struct conf_ctx *x, const yaml_node_t *n, const char *key,
                          const char *what)
{
    char buf[64];
    conf_err(x, n, key, "expected %s, got %s", what, describe(n, buf, sizeof buf));
}

/* The text of a scalar, or NULL after an error naming what was expected. */
static const char *conf_scalar(struct conf_ctx *x, const yaml_node_t *n, const char *key,
                               const char *what)
{
    if (n->type != YAML_SCALAR_NODE || conf_is_null(n)) {
        conf_expected(x, n, key, what);
        return NULL;
    }
    const char *v = (const char *)n->data.scalar.value;
    if (strlen(v) != n->data.scalar.length) {
        conf_err(x, n, key, "expected %s, got text holding a NUL byte", what);
        return NULL;
    }
    return v;
}

/* Key paths: "pools.web.servers[0].weight" (shortened with "..." past
 * PATHLEN). */
static void conf_join(char *out, const char *path, const char *key)
{
    int n = snprintf(out, PATHLEN, "%s%s%s", path, *path ? "." : "", key);
    if (n < 0 || n >= PATHLEN)
        memcpy(out + PATHLEN - 4, "...", 4);
}

static void conf_joini(char *out, const char *path, unsigned i)
{
    int n = snprintf(out, PATHLEN, "%s[%u]", path, i);
    if (n < 0 || n >= PATHLEN)
        memcpy(out + PATHLEN - 4, "...", 4);
}

#define MAX_KEYS 16

/* Checks that n is a mapping whose keys are all among keys[] (NULL-ended),
 * none twice. vals[i] receives the value of keys[i] (NULL when absent).
 * false after an error when n is not a mapping. */
static bool conf_fields(struct conf_ctx *x, yaml_node_t *n, const char *path, const char *what,
                        const char *const *keys, yaml_node_t **vals)
{
    size_t nkeys = 0;
    yaml_node_t *knode[MAX_KEYS];
    while (keys[nkeys])
        vals[nkeys] = knode[nkeys] = NULL, nkeys++;
    if (n->type != YAML_MAPPING_NODE) {
        conf_expected(x, n, path, what);
        return false;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = conf_node(x, p->key), *v = conf_node(x, p->value);
        if (!k || !v)
            return false;
        const char *name = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : NULL;
        if (!name || conf_is_null(k)) {
            conf_expected(x, k, path, "a key name");
            continue;
        }
        size_t i = 0;
        while (i < nkeys && strcmp(keys[i], name) != 0)
            i++;
        char sub[PATHLEN];
        conf_join(sub, path, name);
        if (i == nkeys) {
            char list[256] = "";
            for (size_t j = 0; j < nkeys; j++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "",
                         keys[j]);
            conf_err(x, k, sub, "unknown key (expected one of: %s)", list);
            continue;
        }
        if (knode[i]) {
            conf_err(x, k, sub, "given twice (first on line %d)", conf_line(knode[i]));
            continue;
        }
        knode[i] = k;
        vals[i] = v;
    }
    return true;
}

/* Checks that n is a list and gives its length (false after an error if it
 * is not). */
static bool conf_items(struct conf_ctx *x, yaml_node_t *n, const char *path, const char *what,
                       unsigned *count)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        conf_expected(x, n, path, what);
        return false;
    }
    *count = (unsigned)(n->data.sequence.items.top - n->data.sequence.items.start);
    return true;
}

static yaml_node_t *conf_item(struct conf_ctx *x, yaml_node_t *n, unsigned i)
{
    return conf_node(x, n->data.sequence.items.start[i]);
}

/* ---------------------------------------------------------------- values */

static bool conf_get_dur(struct conf_ctx *x, yaml_node_t *n, const char *key, uint64_t *ms)
{
    const char *s = conf_scalar(x, n, key, WHAT_DUR);
    if (!s)
        return false;
    uint64_t v;
    if (val_duration(s, &v) < 0) {
        conf_expected(x, n, key, WHAT_DUR);
        return false;
    }
    if (v == 0) {
        conf_err(x, n, key, "expected a duration longer than 0, got \"%s\"", s);
        return false;
    }
    *ms = v;
    return true;
}

static bool conf_get_uint(struct conf_ctx *x, yaml_node_t *n, const char *key, unsigned lo,
                          unsigned hi, unsigned *out)
{
    char what[64];
    snprintf(what, sizeof what, "a whole number from %u to %u", lo, hi);
    const char *s = conf_scalar(x, n, key, what);
    if (!s)
        return false;
    unsigned long long v = 0;
    const char *p = s;
    if (*p == '+')
        p++;
    if (!*p)
        goto bad;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > 100000000000ull)
            goto bad;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v < lo || v > hi)
        goto bad;
    *out = (unsigned)v;
    return true;
bad:
    conf_expected(x, n, key, what);
    return false;
}

static bool conf_get_size(struct conf_ctx *x, yaml_node_t *n, const char *key, uint64_t lo,
                          uint64_t hi, const char *what, uint64_t *out)
{
    const char *s = conf_scalar(x, n, key, what);
    if (!s)
        return false;
    uint64_t v;
    if (val_size(s, &v) < 0 || v < lo || v > hi) {
        conf_expected(x, n, key, what);
        return false;
    }
    *out = v;
    return true;
}

/* One of names[] (NULL-ended): its index, or -1 after an error. */
static int conf_get_enum(struct conf_ctx *x, yaml_node_t *n, const char *key,
                         const char *const *names)
{
    char what[160] = "one of ";
    for (size_t i = 0; names[i]; i++)
        snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s", i ? ", " : "",
                 names[i]);
    const char *s = conf_scalar(x, n, key, what);
    if (!s)
        return -1;
    for (int i = 0; names[i]; i++)
        if (!strcmp(s, names[i]))
            return i;
    conf_expected(x, n, key, what);
    return -1;
}

static bool conf_get_addr(struct conf_ctx *x, yaml_node_t *n, const char *key, const char *what,
                          struct cli_addr *a)
{
    const char *s = conf_scalar(x, n, key, what);
    if (!s)
        return false;
    char why[256];
    if (val_address(s, a, why, sizeof why) < 0) {
        if (!strncmp(why, "expected ", 9))
            conf_err(x, n, key, "%s, got \"%.64s\"", why, s);
        else
            conf_err(x, n, key, "expected %s, got \"%.64s\": %s", what, s, why);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------- sections */

static bool conf_get_bool(struct conf_ctx *x, yaml_node_t *n, const char *key, bool *out)
{
    static const char what[] = "true or false";
    const char *s = conf_scalar(x, n, key, what);
    if (!s)
        return false;
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
        *out = false;
    else {
        conf_expected(x, n, key, what);
        return false;
    }
    return true;
}

static void conf_free_listen_tls(struct tls_server_conf *t)
{
    for (unsigned i = 0; i < t->npairs; i++) {
        free((char *)t->pairs[i].cert);
        free((char *)t->pairs[i].key);
    }
    free((struct tls_pair *)t->pairs);
    *t = (struct tls_server_conf){0};
}

/* A file name: a non-empty string (checked for readability when loaded). */
static char *conf_get_file(struct conf_ctx *x, yaml_node_t *n, const char *key)
{
    const char *s = conf_scalar(x, n, key, "a file name");
    return s ? conf_strdup(x, s) : NULL;
}

/* One {cert, key} pair into *p; false after an error. nodes[0..1]: the
 * value nodes, for messages about loading. */
static bool conf_tls_pair(struct conf_ctx *x, yaml_node_t *n, const char *path, yaml_node_t *cert,
                          yaml_node_t *key, struct tls_pair *p)
{
    char sub[PATHLEN];
    conf_join(sub, path, "cert");
    if (!cert) {
        conf_err(x, n, sub, "missing; expected a PEM certificate file (with its key in key)");
        return false;
    }
    conf_join(sub, path, "key");
    if (!key) {
        conf_err(x, n, sub, "missing; expected the PEM private key file of %s",
                 cert->type == YAML_SCALAR_NODE ? (const char *)cert->data.scalar.value : "cert");
        return false;
    }
    conf_join(sub, path, "cert");
    p->cert = conf_get_file(x, cert, sub);
    conf_join(sub, path, "key");
    p->key = conf_get_file(x, key, sub);
    return p->cert && p->key;
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
    if (v[3]) {
        const char *s = conf_scalar(x, v[3], sub2, "\"1.2\" or \"1.3\"");
        if (s && !strcmp(s, "1.2"))
            t->min_version = TLS1_2_VERSION;
        else if (s && !strcmp(s, "1.3"))
            t->min_version = TLS1_3_VERSION;
        else {
            if (s)
                conf_expected(x, v[3], sub2, "\"1.2\" or \"1.3\" (older versions are not offered)");
            ok = false;
        }
    }
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

/* `listen:` items are "ADDR:PORT" or {address: ADDR:PORT,
 * trust_deadline_header: BOOL, mode: reverse|forward, tls: {...}}. */
static void conf_parse_listen(struct conf_ctx *x, yaml_node_t *n)
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
    c->listen = calloc(count, sizeof *c->listen);
    c->listen_trust = calloc(count, sizeof *c->listen_trust);
    c->listen_forward = calloc(count, sizeof *c->listen_forward);
    c->listen_underscores = calloc(count, sizeof *c->listen_underscores);
    c->listen_tls = calloc(count, sizeof *c->listen_tls);
    if (!c->listen || !c->listen_trust || !c->listen_forward || !c->listen_underscores ||
        !c->listen_tls) {
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
        bool trust = false, forward = false, underscores = false;
        struct tls_server_conf tls = {0};
        if (v->type == YAML_MAPPING_NODE) {
            static const char *const lk[] = {"address", "trust_deadline_header", "mode", "tls",
                                             "underscores_in_headers", NULL};
            yaml_node_t *w[MAX_KEYS];
            char sub[PATHLEN];
            if (!conf_fields(x, v, key, "a listener: ADDR:PORT or a mapping with address", lk, w))
                continue;
            conf_join(sub, key, "trust_deadline_header");
            if (w[1] && !conf_get_bool(x, w[1], sub, &trust))
                continue;
            conf_join(sub, key, "mode");
            if (w[2]) {
                static const char *const modes[] = {"reverse", "forward", NULL};
                int m = conf_get_enum(x, w[2], sub, modes);
                if (m < 0)
                    continue;
                forward = m == 1;
            }
            conf_join(sub, key, "underscores_in_headers");
            if (w[4] && !conf_get_bool(x, w[4], sub, &underscores))
                continue;
            conf_join(sub, key, "tls");
            if (w[3] && !parse_listen_tls(x, w[3], sub, &tls))
                continue;
            conf_join(sub, key, "address");
            if (!w[0]) {
                conf_err(x, v, sub, "missing; expected ADDR:PORT");
                conf_free_listen_tls(&tls);
                continue;
            }
            v = w[0];
            memcpy(key, sub, sizeof key);
        }
        if (!conf_get_addr(x, v, key, "ADDR:PORT", a)) {
            conf_free_listen_tls(&tls);
            continue;
        }
        bool dup = false;
        for (unsigned j = 0; j < c->nlisten && !dup; j++)
            if (!strcmp(c->listen[j].text, a->text)) {
                conf_err(x, v, key, "%s is listed twice (first on line %d)", a->text, lines[j]);
                dup = true;
            }
        if (!dup) {
            c->listen_trust[c->nlisten] = trust;
            c->listen_forward[c->nlisten] = forward;
            c->listen_underscores[c->nlisten] = underscores;
            c->listen_tls[c->nlisten] = tls;
            lines[c->nlisten++] = conf_line(v);
        } else {
            conf_free_listen_tls(&tls);
        }
    }
}

/* `timeouts:` at the top level, or a route's overrides (route: the client
 * head and pooled-connection timeouts cannot depend on the route). */
static void conf_parse_timeouts(struct conf_ctx *x, yaml_node_t *n, const char *path,
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
}

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

/* A path for a request line or a prefix: '/' then visible ASCII, no '?'
 * or '#'. */
static bool conf_valid_path(const char *s)
{
    if (*s != '/' || strlen(s) >= 1024)
        return false;
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f || *s == '?' || *s == '#')
            return false;
    return true;
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
        static const char *const keys[] = {"address", "weight", NULL};
        yaml_node_t *v[MAX_KEYS], *s = conf_item(x, n, i);
        char key[PATHLEN], sub[PATHLEN];
        if (!s)
            return;
        conf_joini(key, path, i);
        struct conf_server *srv = &p->servers[p->nservers];
        *srv = (struct conf_server){.weight = 1, .line = conf_line(s)};
        yaml_node_t *addr = s;   /* a bare "HOST:PORT" is short for {address: ...} */
        if (s->type != YAML_SCALAR_NODE || conf_is_null(s)) {
            if (!conf_fields(x, s, key, "a server ({address: HOST:PORT, weight: N}) or HOST:PORT",
                             keys, v))
                continue;
            addr = v[0];
            conf_join(sub, key, "weight");
            if (v[1] && !conf_get_uint(x, v[1], sub, 1, 1000, &srv->weight))
                continue;
            conf_join(sub, key, "address");
            memcpy(key, sub, sizeof key);
            if (!addr) {
                conf_err(x, s, key, "missing; expected HOST:PORT");
                continue;
            }
        }
        if (!conf_get_addr(x, addr, key, "HOST:PORT", &srv->addr))
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

static void parse_health(struct conf_ctx *x, yaml_node_t *n, const char *path, struct conf_pool *p)
{
    static const char *const keys[] = {"passive", "active", NULL};
    yaml_node_t *v[MAX_KEYS];
    char key[PATHLEN], sub[PATHLEN];
    if (!conf_fields(x, n, path, "a mapping with passive and/or active", keys, v))
        return;
    if (v[0]) {
        static const char *const pk[] = {"failures", "ejection", "max_ejection",
                                         "max_ejected_percent", NULL};
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

static void conf_free_pool_tls(struct conf_tls_up *t)
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
                                       "health", "budget", "tls", NULL};
    static const char *const balances[] = {"round_robin", "least_conn", "p2c", NULL};
    yaml_node_t *v[MAX_KEYS];
    char path[PATHLEN], key[PATHLEN], sub[PATHLEN];
    snprintf(path, sizeof path, "pools.%s", p->name);
    *p = (struct conf_pool){
        .name = p->name,
        .line = conf_line(k),
        .passive = {.failures = 5, .ejection_ms = 30000, .max_ejection_ms = 300000,
                    .max_ejected_percent = 50},
        .active = {.interval_ms = 5000, .timeout_ms = 1000, .healthy = 2, .unhealthy = 3},
        .budget = {.percent = 20, .min = 3},
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
}

static void conf_parse_pools(struct conf_ctx *x, yaml_node_t *n)
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
    static const char what[] =
        "connect_failure, connect_timeout, reset, read_timeout or a status from 400 to 599";
    unsigned count;
    if (!conf_items(x, n, path, "a list of failures to retry (connect_failure, reset, 503, ...)",
                    &count))
        return;
    if (count == 0) {
        conf_err(x, n, path, "expected at least one of %s", what);
        return;
    }
    r->on = 0;
    for (unsigned i = 0; i < count; i++) {
        char key[PATHLEN];
        conf_joini(key, path, i);
        yaml_node_t *v = conf_item(x, n, i);
        if (!v)
            return;
        const char *s = conf_scalar(x, v, key, what);
        if (!s)
            continue;
        int bit = -1;
        for (int j = 0; retry_names[j]; j++)
            if (!strcmp(s, retry_names[j]))
                bit = j;
        if (bit >= 0) {
            if (r->on & (1u << bit))
                conf_err(x, v, key, "%s is listed twice", s);
            r->on |= 1u << bit;
            continue;
        }
        if (strlen(s) != 3 || s[0] < '4' || s[0] > '5' || s[1] < '0' || s[1] > '9' ||
            s[2] < '0' || s[2] > '9') {
            conf_expected(x, v, key, what);
            continue;
        }
        unsigned st = (unsigned)atoi(s);
        if (conf_retry_status(r, st)) {
            conf_err(x, v, key, "%u is listed twice", st);
            continue;
        }
        if (r->nstatus == CONF_MAX_RETRY_STATUS) {
            conf_err(x, v, key, "at most %d statuses", CONF_MAX_RETRY_STATUS);
            continue;
        }
        r->status[r->nstatus++] = (uint16_t)st;
    }
}

static void parse_retry(struct conf_ctx *x, yaml_node_t *n, const char *path, struct conf_retry *r)
{
    static const char *const keys[] = {"attempts", "on", "per_try_timeout", "backoff",
                                       "methods", "max_body", NULL};
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
}

static void parse_route(struct conf_ctx *x, yaml_node_t *n, unsigned idx, struct conf_route *r)
{
    static const char *const keys[] = {"host", "path", "pool", "timeouts", "retry", "hedge",
                                       "budget", "deadline_header", NULL};
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
    if (v[5]) {
        static const char *const hk[] = {"delay", NULL};
        yaml_node_t *w[MAX_KEYS];
        conf_join(key, path, "hedge");
        if (conf_fields(x, v[5], key, "a mapping (delay)", hk, w)) {
            char sub[PATHLEN];
            conf_join(sub, key, "delay");
            if (!w[0])
                conf_err(x, v[5], sub, "missing; expected %s", WHAT_DUR);
            else
                conf_get_dur(x, w[0], sub, &r->hedge_delay_ms);
        }
    }
    conf_join(key, path, "budget");
    if (v[6])
        conf_err(x, v[6], key, "the retry budget is shared by a pool's routes; set it as "
                               "pools.NAME.budget");
    conf_join(key, path, "deadline_header");
    if (v[7])
        conf_get_bool(x, v[7], key, &r->deadline_header);
}

static void conf_parse_routes(struct conf_ctx *x, yaml_node_t *n)
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

static void conf_resolve_pools(struct conf_ctx *x)
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
static void conf_parse_forward(struct conf_ctx *x, yaml_node_t *n)
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
static void conf_parse_resolver(struct conf_ctx *x, yaml_node_t *n)
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

static void parse_top(struct conf_ctx *x, yaml_node_t *root)
{
    static const char *const keys[] = {"listen", "timeouts", "limits", "access_log", "pools",
                                       "routes", "workers", "deadline_header", "forward",
                                       "resolver", NULL};
    yaml_node_t *v[MAX_KEYS];
    if (!conf_fields(x, root, "",
                     "a mapping of top-level keys (listen, timeouts, limits, access_log, pools, "
                     "routes, workers, deadline_header, forward, resolver)",
                     keys, v))
        return;
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
    free(c->listen_underscores);
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
            cfg->listen_forward[i] = c->listen_forward[i];
            cfg->listen_underscores[i] = c->listen_underscores[i];
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
    if (c->access_log)
        cfg->access_log = c->access_log;
}

uint64_t conf_route_ms(const struct conf_route *r, enum tmo_kind k, const struct cfg *cfg)
{
    if (k >= TMO_COUNT)
        return 0;
    return r && r->timeouts.ms[k] ? r->timeouts.ms[k] : cfg->ms[k];
}

bool conf_retry_status(const struct conf_retry *r, unsigned status)
{
    for (unsigned i = 0; i < r->nstatus; i++)
        if (r->status[i] == status)
            return true;
    return false;
}
