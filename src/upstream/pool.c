/* pool.c -- upstream servers and idle keep-alive connections, the counts of
 * requests, retries and waiters (see pool.h; the choice of a server and
 * passive health are in pool_balance.c, the slots of dynamic servers in
 * pool_slot.c). */
#include "pool.h"

#include "pool_internal.h"

#include <errno.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdlib.h>

#include <string.h>

#include "buf.h"
#include "conf.h"
#include "log.h"
#include "poolshm.h"
#include "stats.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

static struct loop *loop;
static struct pool_group *groups;
static unsigned ngroups;
static struct pool_group *default_group;
static unsigned open_count;
static struct upconn *free_list;   /* recycled structs, linked through next */
const struct pool_h2_hooks *pool_h2;

static void group_defaults(struct pool_group *g, const struct cfg *cfg)
{
    g->balance = POOL_ROUND_ROBIN;
    g->fail_on = 1u << POOL_CONNECT_FAILED | 1u << POOL_RESET | 1u << POOL_READ_TIMEOUT;
    g->fail_limit = 5;
    g->ejection_ns = 30000 * MS;
    g->max_ejection_ns = 300000 * MS;
    g->max_ejected_percent = 50;
    g->idle_ns = cfg->ms[TMO_UPSTREAM_IDLE] * MS;
    g->max_idle = UINT32_MAX;
    g->budget_percent = 20;
    g->budget_min = 3;
    g->resolve_min_ms = 1000;
    g->resolve_max_ms = 300000;
}

static void group_from_conf(struct pool_group *g, const struct conf_pool *cp,
                            const struct cfg *cfg)
{
    static const struct { unsigned conf, pool; } on[] = {
        {CONF_PASSIVE_CONNECT_FAILURE, POOL_CONNECT_FAILED},
        {CONF_PASSIVE_RESET, POOL_RESET},
        {CONF_PASSIVE_READ_TIMEOUT, POOL_READ_TIMEOUT},
        {CONF_PASSIVE_TRY_TIMEOUT, POOL_TRY_TIMEOUT},
    };
    _Static_assert(POOL_MAX_FAIL_STATUS == CONF_MAX_PASSIVE_STATUS, "passive statuses");
    g->name = cp->name;
    g->balance = cp->balance == CONF_BALANCE_LEAST_CONN ? POOL_LEAST_CONN
               : cp->balance == CONF_BALANCE_P2C        ? POOL_P2C
               : cp->balance == CONF_BALANCE_EWMA       ? POOL_EWMA
                                                        : POOL_ROUND_ROBIN;
    g->slow_start_ns = cp->slow_start_ms * MS;
    g->fail_on = 0;
    for (unsigned i = 0; i < sizeof on / sizeof on[0]; i++)
        if (cp->passive.on & on[i].conf)
            g->fail_on |= 1u << on[i].pool;
    g->fail_5xx = cp->passive.on & CONF_PASSIVE_5XX;
    g->nfail_status = cp->passive.nstatus;
    memcpy(g->fail_status, cp->passive.status, sizeof g->fail_status);
    g->fail_limit = cp->passive.failures;
    g->ejection_ns = cp->passive.ejection_ms * MS;
    g->max_ejection_ns = cp->passive.max_ejection_ms * MS;
    g->max_ejected_percent = cp->passive.max_ejected_percent;
    if (cp->keepalive_idle_ms)
        g->idle_ns = cp->keepalive_idle_ms * MS;
    else
        g->idle_ns = cfg->ms[TMO_UPSTREAM_IDLE] * MS;
    if (cp->keepalive_max_idle_set)
        g->max_idle = cp->keepalive_max_idle;
    g->budget_percent = cp->budget.percent;
    g->budget_min = cp->budget.min;
    g->max_conns = cp->max_connections;
    g->max_requests = cp->max_requests;
    g->h2 = cp->h2;
    g->resolve_min_ms = cp->resolve_min_ms;
    g->resolve_max_ms = cp->resolve_max_ms;
}

/* "host:port" or "[v6]:port" as written: the host. */
static char *host_of(const char *address)
{
    const char *end = strrchr(address, ':');
    size_t n = end ? (size_t)(end - address) : strlen(address);
    if (n >= 2 && address[0] == '[' && address[n - 1] == ']') {
        address++;
        n -= 2;
    }
    char *h = xmalloc(n + 1);
    memcpy(h, address, n);
    h[n] = 0;
    return h;
}

/* Builds g's servers: the --upstream servers (cfg->upstream, with the
 * file's weights when they are the file's default pool's own list), or the
 * file's servers of cp. On a TLS pool, each server's tls_host: the host of
 * an IP literal as written, a host name's slots the name (an SRV name's
 * slots get their target's as they join). */
static void servers_of(struct pool_group *g, const struct cfg *cfg, const struct conf_pool *cp,
                       bool from_cfg)
{
    const struct val_server *v[CLI_MAX_UPSTREAM] = {0};
    unsigned w[CLI_MAX_UPSTREAM] = {0};
    const char *written[CLI_MAX_UPSTREAM] = {0};
    unsigned n = from_cfg || !cp ? cfg->nupstream : cp->nservers;
    bool same = cp && cp->nservers == cfg->nupstream;
    for (unsigned i = 0; same && i < cp->nservers; i++)
        same = cp->servers[i].addr.srv == cfg->upstream[i].srv &&
               strcmp(cp->servers[i].addr.text, cfg->upstream[i].text) == 0;
    bool file = !from_cfg || same;   /* the file's own list: its weights */
    for (unsigned i = 0; i < n; i++) {
        const struct conf_server *cs = cp && file ? &cp->servers[i] : NULL;
        v[i] = cs ? &cs->addr : &cfg->upstream[i];
        w[i] = cs ? cs->weight : 1;
        written[i] = cs ? cs->address : v[i]->text;
    }
    pool_slots_build(g, v, w, n);
    if (!cp || !cp->tls.enabled)
        return;
    for (unsigned i = 0, k = 0; i < n; i++)
        if (!v[i]->name[0])
            g->servers[k++].tls_host = host_of(written[i]);
    for (unsigned i = 0; i < g->nnames; i++)
        for (unsigned j = 0; j < POOL_NAME_SLOTS && !g->names[i].at->srv; j++)
            g->servers[g->names[i].first + j].tls_host = pool_strdup(g->names[i].at->name);
}

/* TLS toward a pool's servers: the context (each server's name is set by
 * servers_of). */
static int group_tls(struct pool_group *g, const struct conf_pool *cp)
{
    char err[512];
    const char *bad = "tls";
    if (!cp->tls.enabled)
        return 0;
    if (!(g->tls = tls_client_new(&cp->tls.c, err, sizeof err, &bad))) {
        log_error("error", "pools.%s.tls.%s: %s", g->name, bad, err);
        return -1;
    }
    return 0;
}

/* Where the pool's servers keep their health: the generation's shared area
 * (all workers see one record per server), else records of their own. */
static void bind_health(struct pool_group *g)
{
    /* a pool with servers written as names: each worker fills its slots on
     * its own, so a slot's index names no one server across workers */
    struct psh_pool *sp = g->nnames ? NULL : psh_pool(g->index);
    g->nejected = sp ? &sp->nejected : &g->own_nejected;
    for (unsigned i = 0; i < g->nservers; i++)
        g->servers[i].h = sp && i < PSH_SERVERS ? &sp->servers[i] : &g->servers[i].own_health;
}

int pool_init(struct loop *l, const struct cfg *cfg)
{
    const struct conf *cf = cfg->conf;
    const struct conf_pool *dp = cf ? conf_default_pool(cf) : NULL;

    loop = l;
    ngroups = cf && cf->npools ? cf->npools : 1;
    groups = xcalloc(ngroups, sizeof *groups);
    if (!cf || !cf->npools) {
        group_defaults(&groups[0], cfg);
        groups[0].name = "default";
        servers_of(&groups[0], cfg, NULL, true);
        bind_health(&groups[0]);
        default_group = &groups[0];
        pool_balance_init(l);
        return 0;
    }
    for (unsigned i = 0; i < ngroups; i++) {
        const struct conf_pool *cp = &cf->pools[i];
        struct pool_group *g = &groups[i];
        g->index = i;
        group_defaults(g, cfg);
        group_from_conf(g, cp, cfg);
        servers_of(g, cfg, cp, cp == dp);
        if (cp == dp)
            default_group = g;
        bind_health(g);
        if (group_tls(g, cp) < 0)
            return -1;
    }
    if (!default_group)
        default_group = &groups[0];
    pool_balance_init(l);
    return 0;
}

struct pool_group *pool_group_find(const char *name)
{
    for (unsigned i = 0; i < ngroups; i++)
        if (strcmp(groups[i].name, name) == 0)
            return &groups[i];
    return NULL;
}

struct pool_group *pool_group_default(void)
{
    return default_group;
}

/* ---- requests in flight and the retry budget ---------------------------- */

/* An end without its begin would wrap a count to 4 billion and open the
 * budget wide: it is a bug of the caller, so it is loud, and the count stays. */
static void count_down(const struct pool_group *g, uint32_t *n, const char *what)
{
    if (!*n) {
        log_error("error", "pool %s: %s", g->name, what);
        return;
    }
    __atomic_store_n(n, *n - 1, __ATOMIC_RELAXED);
}

/* This worker's counts live in its row of the generation's shared area
 * (poolshm.h): written here alone, summed by every worker's budget check. */
void pool_request_begin(struct pool_group *g)
{
    struct psh_counts *m = psh_mine(g->index);
    __atomic_store_n(&m->requests, m->requests + 1, __ATOMIC_RELAXED);
}

void pool_request_end(struct pool_group *g)
{
    count_down(g, &psh_mine(g->index)->requests, "a request ended that had not begun");
}

bool pool_retry_allowed(const struct pool_group *g)
{
    struct psh_counts all = psh_sum(g->index);   /* the generation's, every worker */
    unsigned cap = (unsigned)((uint64_t)all.requests * g->budget_percent / 100);
    if (cap < g->budget_min)
        cap = g->budget_min;
    return all.retries < cap;
}

void pool_budget_take(struct pool_group *g)
{
    struct psh_counts *m = psh_mine(g->index);
    __atomic_store_n(&m->retries, m->retries + 1, __ATOMIC_RELAXED);
}

void pool_budget_release(struct pool_group *g)
{
    count_down(g, &psh_mine(g->index)->retries, "a retry released that was not taken");
}

/* ---- requests waiting for a connection slot ------------------------------ */

void pool_wait_add(struct pool_group *g, struct pool_waiter *w, void *owner)
{
    w->group = g;
    w->owner = owner;
    w->next = NULL;
    w->prev = g->wait_tail;
    if (g->wait_tail)
        g->wait_tail->next = w;
    else
        g->wait_head = w;
    g->wait_tail = w;
    g->nwaiting++;
}

void pool_wait_remove(struct pool_waiter *w)
{
    struct pool_group *g = w->group;
    if (!g)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        g->wait_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        g->wait_tail = w->prev;
    w->next = w->prev = NULL;
    w->group = NULL;
    g->nwaiting--;
}

struct pool_waiter *pool_wait_next(struct pool_group *g)
{
    struct pool_waiter *w = g->wait_head;
    if (!w || !pool_slots_free(g) || !pool_has_room(g))
        return NULL;
    pool_wait_remove(w);
    return w;
}

unsigned pool_open_count(void)
{
    return open_count;
}

static void unlink_idle(struct upconn *up)
{
    struct pool_server *s = up->srv;
    if (up->prev)
        up->prev->next = up->next;
    else
        s->idle = up->next;
    if (up->next)
        up->next->prev = up->prev;
    up->next = up->prev = NULL;
    s->nidle--;
}

static void release(struct loop_defer *d)
{
    struct upconn *up = container_of(d, struct upconn, defer);
    up->next = free_list;
    free_list = up;
}

void pool_close(struct upconn *up)
{
    if (up->stream) {
        pool_h2->end(up, false);
        return;
    }
    if (up->srv) {
        if (!up->owner && up->conn.io.fd >= 0)
            unlink_idle(up);
        else if (up->owner)
            up->srv->active--;
        up->srv->group->open--;
    }
    loop_timer_stop(loop, &up->idle_timer);
    conn_close(&up->conn, loop);
    up->owner = NULL;
    open_count--;
    loop_defer(loop, &up->defer, release);
}

static void idle_expired(struct timer *t)
{
    struct upconn *up = container_of(t, struct upconn, idle_timer);
    tls_close_notify(up->conn.ssl);   /* a clean end: the server may keep the session */
    pool_close(up);
}

/* Events on a connection: to the owner, or, when idle, a sign of death. */
static void on_io(struct loop_io *io, uint32_t events)
{
    struct upconn *up = container_of(io, struct upconn, conn.io);
    conn_rearm(&up->conn, events);
    if (up->owner)
        up->on_event(up, events);
    else if (events & (LOOP_READ | LOOP_HUP))
        pool_close(up);
}

static struct upconn *alloc_conn(void)
{
    struct upconn *up = free_list;
    if (up)
        free_list = up->next;
    else
        up = xmalloc(sizeof *up);
    *up = (struct upconn){0};
    timer_init(&up->idle_timer, idle_expired);
    return up;
}

unsigned pool_slots_free(const struct pool_group *g)
{
    if (!g->max_conns)
        return UINT32_MAX;
    unsigned n = g->open < g->max_conns ? g->max_conns - g->open : 0;
    for (unsigned i = 0; i < g->nservers; i++)
        n += g->servers[i].nidle;
    if (g->h2)
        n += pool_h2->room(g, NULL);
    return n;
}

struct pool_group *pool_groups(unsigned *n)
{
    *n = ngroups;
    return groups;
}

unsigned pool_gauges(struct stats_pool *out, unsigned max)
{
    unsigned n = ngroups < max ? ngroups : max;
    for (unsigned i = 0; i < n; i++) {
        const struct pool_group *g = &groups[i];
        out[i] = (struct stats_pool){
            .requests = psh_mine(g->index)->requests, .retries = psh_mine(g->index)->retries,
            .waiting = g->nwaiting};
        for (unsigned k = 0; k < g->nservers; k++) {
            out[i].idle += g->servers[k].nidle;
            out[i].servers += g->servers[k].state == POOL_SLOT_IN_SERVICE;
            out[i].leaving += g->servers[k].state == POOL_SLOT_LEAVING &&
                              !pool_slot_free(&g->servers[k]);   /* (free: gone) */
        }
    }
    return n;
}

bool pool_may_connect(struct pool_server *srv)
{
    if (!srv)
        return true;   /* an address of no pool has no limit */
    struct pool_group *g = srv->group;
    if (!g->max_conns || g->open < g->max_conns)
        return true;
    if (g->h2 && pool_h2->room(g, srv))
        return true;   /* a stream on an open connection */
    for (unsigned i = 0; i < g->nservers; i++) {   /* an idle one elsewhere makes room */
        struct pool_server *o = &g->servers[i];
        if (o != srv && o->idle) {
            pool_close(o->idle);
            return true;
        }
    }
    return false;
}

/* A new connection to addr, without TLS or with the pool's (srv, when set):
 * counted in open_count, and in srv and its pool when there is one. */
static struct upconn *open_upconn(const struct cli_addr *addr, struct pool_server *srv,
                                void *owner, pool_event_cb *cb, int *err)
{
    struct upconn *up = alloc_conn();
    int r = conn_connect(&up->conn, loop, (const struct sockaddr *)&addr->ss, addr->len, on_io);
    if (r < 0)
        goto out_free_conn;
    if (srv && srv->group->tls &&
        (r = conn_tls_client(&up->conn, srv->group->tls, srv->tls_host, &srv->tls_session)) < 0)
        goto out_close;
    up->srv = srv;
    up->owner = owner;
    up->on_event = cb;
    open_count++;
    if (srv) {
        srv->active++;
        srv->group->open++;
    }
    return up;

out_close:
    conn_close(&up->conn, loop);
out_free_conn:
    up->next = free_list;
    free_list = up;
    *err = r;
    return NULL;
}

struct upconn *pool_connect(struct pool_server *srv, void *owner, pool_event_cb *cb, int *err)
{
    if (srv->group->h2)
        return pool_h2->open(srv, owner, cb, err);
    return open_upconn(srv->addr, srv, owner, cb, err);
}

struct upconn *pool_connect_conn(struct pool_server *srv, void *owner, pool_event_cb *cb,
                                 int *err)
{
    return open_upconn(srv->addr, srv, owner, cb, err);
}

struct upconn *pool_connect_addr(const struct cli_addr *addr, void *owner, pool_event_cb *cb,
                                 int *err)
{
    return open_upconn(addr, NULL, owner, cb, err);
}

int pool_connect_step(struct upconn *up, char *err, size_t errlen)
{
    if (up->stream)
        return pool_h2->step(up, err, errlen);
    int r = conn_open_step(&up->conn, err, errlen);
    if (r < 0 && !(up->conn.opening & CONN_OPEN_TCP))
        stats->tls[STATS_TLS_UPSTREAM][TLS_FAILED]++;   /* the handshake failed */
    if (r <= 0)
        return r;
    if (up->conn.ssl)
        stats->tls[STATS_TLS_UPSTREAM][tls_resumed(up->conn.ssl) ? TLS_RESUMED : TLS_OK]++;
    return 1;
}

struct upconn *pool_take_idle(struct pool_server *srv, void *owner, pool_event_cb *cb)
{
    if (srv && srv->group->h2)
        return pool_h2->take(srv, owner, cb);
    while (srv && srv->idle) {
        struct upconn *up = srv->idle;
        if (up->conn.io.ready & (LOOP_READ | LOOP_HUP)) {
            pool_close(up);   /* closed by the server, or unsolicited bytes */
            continue;
        }
        unlink_idle(up);
        loop_timer_stop(loop, &up->idle_timer);
        up->owner = owner;
        up->on_event = cb;
        up->reused = true;
        srv->active++;
        return up;
    }
    return NULL;
}

void pool_put_idle(struct upconn *up)
{
    struct pool_server *s = up->srv;

    if (up->stream) {
        pool_h2->end(up, true);
        return;
    }
    if (!s) {   /* an address of no pool: never pooled */
        pool_close(up);
        return;
    }
    /* The exchange stopped reading at the end of the response, so a read bit
     * may be left from its last wake-up. Idle, that bit means "closed or
     * unsolicited bytes": find out which it is now, with one peek. */
    if (up->conn.io.ready & (LOOP_READ | LOOP_HUP)) {
        char b;
        ssize_t n = recv(up->conn.io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n != -1 || errno != EAGAIN || (up->conn.io.ready & LOOP_HUP) ||
            conn_pending(&up->conn)) {
            tls_close_notify(up->conn.ssl);
            pool_close(up);   /* still owned: not on the idle list */
            return;
        }
        up->conn.io.ready &= ~LOOP_READ;
    }
    if (s->nidle >= s->group->max_idle || s->state != POOL_SLOT_IN_SERVICE) {
        tls_close_notify(up->conn.ssl);   /* a clean end: its session stays resumable */
        pool_close(up);   /* no more idle connections here, or the server is leaving */
        return;
    }
    s->active--;
    up->owner = NULL;
    up->on_event = NULL;
    up->prev = NULL;
    up->next = s->idle;
    if (s->idle)
        s->idle->prev = up;
    s->idle = up;
    s->nidle++;
    loop_timer_at(loop, &up->idle_timer, loop->now + s->group->idle_ns);
}

void pool_close_idle(void)
{
    if (pool_h2)
        pool_h2->close_idle();
    for (unsigned g = 0; g < ngroups; g++)
        for (unsigned i = 0; i < groups[g].nservers; i++)
            while (groups[g].servers[i].idle)
                pool_close(groups[g].servers[i].idle);
}

void pool_free_structs(void)
{
    while (free_list) {
        struct upconn *up = free_list;
        free_list = up->next;
        free(up);
    }
    for (unsigned g = 0; g < ngroups; g++) {
        for (unsigned i = 0; i < groups[g].nservers; i++) {
            free(groups[g].servers[i].tls_host);
            SSL_SESSION_free(groups[g].servers[i].tls_session);
        }
        tls_client_free(groups[g].tls);
        free(groups[g].servers);
        free(groups[g].names);
    }
    free(groups);
    groups = NULL;
    ngroups = 0;
}
