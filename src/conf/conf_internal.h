/* conf_internal.h -- what the pieces of the configuration file's reader share
 * (conf.c, conf_yaml.c, conf_listen.c, conf_pools.c, conf_routes.c): the
 * reading context, the reader helpers and the section parsers. Only those
 * files include it; everyone else uses conf.h.
 *
 * Every helper that reports takes the context and the key path of the value
 * ("pools.web.servers[0].weight"), records FILE:LINE:COL: KEY: message and
 * returns failure; reading goes on so that one run lists every error. */
#ifndef HG_CONF_INTERNAL_H
#define HG_CONF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "conf.h"

#define MAX_ERRORS 20   /* error lines kept; the rest are counted */
#define MAX_KEYS 16     /* keys of one mapping of the schema */
#define PATHLEN 320     /* a key path, shortened with "..." past it */
#define WHAT_DUR "a duration such as 250ms, 1.5s, 2m or 30 (seconds)"

struct conf_error {
    int line, col;          /* 0: no position (file-wide) */
    unsigned seq;           /* order found, to keep a stable sort */
    char *text;             /* the whole line, with '\n' */
};

struct conf_ctx {
    const char *file;
    yaml_document_t *doc;
    struct conf *c;
    struct conf_error errs[MAX_ERRORS];
    unsigned nerr;          /* errors found (may pass MAX_ERRORS) */
    unsigned visits;
    bool nomem;
    bool too_big;           /* MAX_VISITS reached */
    yaml_node_t **route_pool;   /* the `pool:` value of each route */
};

/* conf_yaml.c: errors. n NULL: a file-wide error without a position. */
__attribute__((format(printf, 4, 5)))
void conf_err(struct conf_ctx *x, const yaml_node_t *n, const char *key, const char *fmt, ...);
void conf_expected(struct conf_ctx *x, const yaml_node_t *n, const char *key,
                   const char *what);
char *conf_errors_text(struct conf_ctx *x);
char *conf_strdup(struct conf_ctx *x, const char *s);

/* conf_yaml.c: nodes and key paths */
int conf_line(const yaml_node_t *n);
yaml_node_t *conf_node(struct conf_ctx *x, int id);
bool conf_is_null(const yaml_node_t *n);
const char *conf_scalar(struct conf_ctx *x, const yaml_node_t *n, const char *key,
                        const char *what);
void conf_join(char *out, const char *path, const char *key);
void conf_joini(char *out, const char *path, unsigned i);
bool conf_fields(struct conf_ctx *x, yaml_node_t *n, const char *path, const char *what,
                 const char *const *keys, yaml_node_t **vals);
bool conf_items(struct conf_ctx *x, yaml_node_t *n, const char *path, const char *what,
                unsigned *count);
yaml_node_t *conf_item(struct conf_ctx *x, yaml_node_t *n, unsigned i);

/* conf_yaml.c: values; false (or -1, NULL) after an error */
bool conf_get_dur(struct conf_ctx *x, yaml_node_t *n, const char *key, uint64_t *ms);
bool conf_get_uint(struct conf_ctx *x, yaml_node_t *n, const char *key, unsigned lo,
                   unsigned hi, unsigned *out);
bool conf_get_size(struct conf_ctx *x, yaml_node_t *n, const char *key, uint64_t lo,
                   uint64_t hi, const char *what, uint64_t *out);
int conf_get_enum(struct conf_ctx *x, yaml_node_t *n, const char *key,
                  const char *const *names);
bool conf_get_addr(struct conf_ctx *x, yaml_node_t *n, const char *key, const char *what,
                   struct cli_addr *a);
bool conf_get_bool(struct conf_ctx *x, yaml_node_t *n, const char *key, bool *out);

/* A list of failure classes and response statuses (a route's retry.on, a
 * pool's health.passive.on): each item is one of names (bit i of *bits for
 * names[i]) or a status from 400 to 599 (into status[], at most max).
 * list_what describes the list, what its items; an empty list, an item
 * listed twice or past max is an error. */
void conf_get_classes(struct conf_ctx *x, yaml_node_t *n, const char *path,
                      const char *list_what, const char *what, const char *const *names,
                      unsigned *bits, uint16_t *status, unsigned *nstatus, unsigned max);
char *conf_get_file(struct conf_ctx *x, yaml_node_t *n, const char *key);
bool conf_valid_path(const char *s);
bool conf_tls_pair(struct conf_ctx *x, yaml_node_t *n, const char *path, yaml_node_t *cert,
                   yaml_node_t *key, struct tls_pair *p);

/* the sections, each into x->c */
void conf_parse_timeouts(struct conf_ctx *x, yaml_node_t *n, const char *path,
                         struct conf_timeouts *t, bool route);        /* conf.c */
void conf_parse_listen(struct conf_ctx *x, yaml_node_t *n);          /* conf_listen.c */
void conf_parse_forward(struct conf_ctx *x, yaml_node_t *n);
void conf_parse_resolver(struct conf_ctx *x, yaml_node_t *n);
void conf_free_listen_tls(struct tls_server_conf *t);
void conf_parse_pools(struct conf_ctx *x, yaml_node_t *n);           /* conf_pools.c */
void conf_free_pool_tls(struct conf_tls_up *t);
void conf_parse_routes(struct conf_ctx *x, yaml_node_t *n);          /* conf_routes.c */
void conf_resolve_pools(struct conf_ctx *x);   /* after the pools and the routes */

#endif
