/* conf_yaml.c -- reading the YAML document against the schema: errors with
 * their positions, key paths, mappings and lists, and the scalar values of
 * the file (see conf_internal.h). */
#define _GNU_SOURCE
#include "conf_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VISITS 1000000u

/* ---------------------------------------------------------------- errors */

static void errv(struct conf_ctx *x, const yaml_node_t *n, const char *key, const char *fmt,
                 va_list ap)
{
    if (x->nerr++ >= MAX_ERRORS)
        return;
    struct conf_error *e = &x->errs[x->nerr - 1];
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
    const struct conf_error *p = a, *q = b;
    if (p->line != q->line)
        return p->line < q->line ? -1 : 1;
    if (p->col != q->col)
        return p->col < q->col ? -1 : 1;
    return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* The error lines in file order, as one malloc'd text. */
char *conf_errors_text(struct conf_ctx *x)
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
void conf_err(struct conf_ctx *x, const yaml_node_t *n, const char *key, const char *fmt,
                     ...)
{
    va_list ap;
    va_start(ap, fmt);
    errv(x, n, key, fmt, ap);
    va_end(ap);
}

char *conf_strdup(struct conf_ctx *x, const char *s)
{
    char *d = strdup(s);
    if (!d)
        x->nomem = true;
    return d;
}

/* ----------------------------------------------------------------- nodes */

int conf_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

yaml_node_t *conf_node(struct conf_ctx *x, int id)
{
    if (x->visits >= MAX_VISITS) {
        x->too_big = true;   /* reported after the other errors, never dropped */
        return NULL;
    }
    x->visits++;
    return yaml_document_get_node(x->doc, id);
}

bool conf_is_null(const yaml_node_t *n)
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

void conf_expected(struct conf_ctx *x, const yaml_node_t *n, const char *key,
                          const char *what)
{
    char buf[64];
    conf_err(x, n, key, "expected %s, got %s", what, describe(n, buf, sizeof buf));
}

/* The text of a scalar, or NULL after an error naming what was expected. */
const char *conf_scalar(struct conf_ctx *x, const yaml_node_t *n, const char *key,
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
void conf_join(char *out, const char *path, const char *key)
{
    int n = snprintf(out, PATHLEN, "%s%s%s", path, *path ? "." : "", key);
    if (n < 0 || n >= PATHLEN)
        memcpy(out + PATHLEN - 4, "...", 4);
}

void conf_joini(char *out, const char *path, unsigned i)
{
    int n = snprintf(out, PATHLEN, "%s[%u]", path, i);
    if (n < 0 || n >= PATHLEN)
        memcpy(out + PATHLEN - 4, "...", 4);
}

/* Checks that n is a mapping whose keys are all among keys[] (NULL-ended),
 * none twice. vals[i] receives the value of keys[i] (NULL when absent).
 * false after an error when n is not a mapping. */
bool conf_fields(struct conf_ctx *x, yaml_node_t *n, const char *path, const char *what,
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
bool conf_items(struct conf_ctx *x, yaml_node_t *n, const char *path, const char *what,
                       unsigned *count)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        conf_expected(x, n, path, what);
        return false;
    }
    *count = (unsigned)(n->data.sequence.items.top - n->data.sequence.items.start);
    return true;
}

yaml_node_t *conf_item(struct conf_ctx *x, yaml_node_t *n, unsigned i)
{
    return conf_node(x, n->data.sequence.items.start[i]);
}

/* ---------------------------------------------------------------- values */

bool conf_get_dur(struct conf_ctx *x, yaml_node_t *n, const char *key, uint64_t *ms)
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

bool conf_get_uint(struct conf_ctx *x, yaml_node_t *n, const char *key, unsigned lo,
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

bool conf_get_size(struct conf_ctx *x, yaml_node_t *n, const char *key, uint64_t lo,
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
int conf_get_enum(struct conf_ctx *x, yaml_node_t *n, const char *key,
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

bool conf_get_addr(struct conf_ctx *x, yaml_node_t *n, const char *key, const char *what,
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

bool conf_get_bool(struct conf_ctx *x, yaml_node_t *n, const char *key, bool *out)
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

/* A file name: a non-empty string (checked for readability when loaded). */
char *conf_get_file(struct conf_ctx *x, yaml_node_t *n, const char *key)
{
    const char *s = conf_scalar(x, n, key, "a file name");
    return s ? conf_strdup(x, s) : NULL;
}

/* A path for a request line or a prefix: '/' then visible ASCII, no '?'
 * or '#'. */
bool conf_valid_path(const char *s)
{
    if (*s != '/' || strlen(s) >= 1024)
        return false;
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f || *s == '?' || *s == '#')
            return false;
    return true;
}

/* One {cert, key} pair into *p; false after an error. nodes[0..1]: the
 * value nodes, for messages about loading. */
bool conf_tls_pair(struct conf_ctx *x, yaml_node_t *n, const char *path, yaml_node_t *cert,
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

void conf_get_classes(struct conf_ctx *x, yaml_node_t *n, const char *path,
                      const char *list_what, const char *what, const char *const *names,
                      unsigned *bits, uint16_t *status, unsigned *nstatus, unsigned max)
{
    unsigned count;
    if (!conf_items(x, n, path, list_what, &count))
        return;
    if (count == 0) {
        conf_err(x, n, path, "expected at least one of %s", what);
        return;
    }
    *bits = 0;
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
        for (int j = 0; names[j]; j++)
            if (!strcmp(s, names[j]))
                bit = j;
        if (bit >= 0) {
            if (*bits & (1u << bit))
                conf_err(x, v, key, "%s is listed twice", s);
            *bits |= 1u << bit;
            continue;
        }
        if (strlen(s) != 3 || s[0] < '4' || s[0] > '5' || s[1] < '0' || s[1] > '9' ||
            s[2] < '0' || s[2] > '9') {
            conf_expected(x, v, key, what);
            continue;
        }
        uint16_t st = (uint16_t)atoi(s);
        bool dup = false;
        for (unsigned j = 0; j < *nstatus; j++)
            dup |= status[j] == st;
        if (dup) {
            conf_err(x, v, key, "%u is listed twice", (unsigned)st);
            continue;
        }
        if (*nstatus == max) {
            conf_err(x, v, key, "at most %u statuses", max);
            continue;
        }
        status[(*nstatus)++] = st;
    }
}
