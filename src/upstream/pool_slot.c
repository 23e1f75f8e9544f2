/* pool_slot.c -- the slots of a pool's servers: built once, and filled and
 * emptied by the resolver as its names' answers change; the states that
 * keep a server from being picked (see pool.h, "Dynamic servers"). */
#include "pool.h"
#include "pool_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "buf.h"
#include "net.h"

char *pool_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

void pool_slots_build(struct pool_group *g, const struct val_server *const *v, const unsigned *w,
                      unsigned n)
{
    unsigned nstatic = 0;
    for (unsigned i = 0; i < n; i++)
        nstatic += !v[i]->name[0];
    g->nnames = n - nstatic;
    g->nservers = nstatic + g->nnames * POOL_NAME_SLOTS;
    g->servers = xcalloc(g->nservers, sizeof *g->servers);
    g->names = g->nnames ? xcalloc(g->nnames, sizeof *g->names) : NULL;
    g->nlive = nstatic;
    unsigned k = 0, m = 0;
    for (unsigned i = 0; i < n; i++) {
        if (v[i]->name[0])
            continue;
        g->servers[k++] = (struct pool_server){.addr = &v[i]->addr, .group = g, .weight = w[i],
                                               .state = POOL_SLOT_IN_SERVICE};
    }
    for (unsigned i = 0; i < n; i++) {
        if (!v[i]->name[0])
            continue;
        struct pool_name *pn = &g->names[m++];
        *pn = (struct pool_name){.at = v[i], .weight = w[i], .first = k};
        g->prio |= v[i]->srv;
        for (unsigned j = 0; j < POOL_NAME_SLOTS; j++, k++) {
            struct pool_server *s = &g->servers[k];
            *s = (struct pool_server){.addr = &s->own, .group = g, .weight = 1, .name = pn,
                                      .down = true};
            s->h = &s->own_health;   /* (a pool with names keeps its health per worker) */
            snprintf(s->own.text, sizeof s->own.text, "-");
        }
    }
}

/* down, from what keeps a server from being picked besides its health
 * record (which the balancing reads itself). */
static void server_sync(struct pool_server *s)
{
    s->down = s->state != POOL_SLOT_IN_SERVICE || s->standby;
}

/* Whether s could serve now but for its priority: in service, up, and not
 * ejected (or its cool-down over, which in_service will see). */
static bool could_serve(const struct pool_server *s, uint64_t now)
{
    uint64_t until = __atomic_load_n(&s->h->ejected_until, __ATOMIC_RELAXED);
    return s->state == POOL_SLOT_IN_SERVICE && !pool_is_down(s) && (!until || now >= until);
}

/* SRV priorities (RFC 2782): only the lowest priority with a server that
 * could serve takes traffic; the others stand by. Run before each pick, as
 * an ejection's end is seen only then. Linear in the slots. */
void pool_standby_sync(struct pool_group *g, uint64_t now)
{
    unsigned best = UINT32_MAX;
    for (unsigned i = 0; i < g->nservers; i++)
        if (could_serve(&g->servers[i], now) && g->servers[i].priority < best)
            best = g->servers[i].priority;
    for (unsigned i = 0; i < g->nservers; i++) {
        struct pool_server *s = &g->servers[i];
        s->standby = s->priority != best;
        server_sync(s);
    }
}

/* Ends s's ejection, if any, and its counts of failures. */
static void health_reset(struct pool_server *s)
{
    struct psh_server *h = s->h;
    if (h->ejected_until)
        __atomic_sub_fetch(s->group->nejected, 1, __ATOMIC_RELAXED);
    *h = (struct psh_server){0};   /* (a name's slots keep their health per worker) */
    s->cur = 0;
}

bool pool_slot_free(const struct pool_server *s)
{
    return s->state != POOL_SLOT_IN_SERVICE && !s->active && !s->idle && !s->h2;
}

bool pool_slot_has(const struct pool_server *s, const struct sockaddr *sa)
{
    return s->state != POOL_SLOT_UNUSED && addr_same((const struct sockaddr *)&s->own.ss, sa);
}

int pool_slot_join(struct pool_server *s, const struct sockaddr *sa, unsigned weight,
                   unsigned priority, const char *tls_host)
{
    bool same = pool_slot_has(s, sa);
    if (s->state == POOL_SLOT_IN_SERVICE || (!same && !pool_slot_free(s)) || !addr_socklen(sa))
        return -EBUSY;
    if (!same) {   /* a free slot takes a new address */
        memset(&s->own.ss, 0, sizeof s->own.ss);
        s->own.len = addr_socklen(sa);
        memcpy(&s->own.ss, sa, s->own.len);
        net_addr_text(sa, s->own.text, sizeof s->own.text);
        SSL_SESSION_free(s->tls_session);   /* another server's */
        s->tls_session = NULL;
    }
    if (tls_host && s->group->tls && (!s->tls_host || strcmp(s->tls_host, tls_host))) {
        free(s->tls_host);
        s->tls_host = pool_strdup(tls_host);
    }
    health_reset(s);
    s->state = POOL_SLOT_IN_SERVICE;
    s->group->nlive++;
    s->standby = false;
    pool_slot_update(s, weight, priority);
    return 0;
}

void pool_slot_update(struct pool_server *s, unsigned weight, unsigned priority)
{
    s->weight = weight < 1 ? 1 : weight > 1000 ? 1000 : weight;
    s->priority = priority;
    server_sync(s);
}

void pool_slot_leave(struct pool_server *s)
{
    if (s->state != POOL_SLOT_IN_SERVICE)
        return;
    health_reset(s);
    s->state = POOL_SLOT_LEAVING;
    s->group->nlive--;
    server_sync(s);
    while (s->idle) {
        tls_close_notify(s->idle->conn.ssl);
        pool_close(s->idle);
    }
    if (s->h2 && pool_h2)
        pool_h2->retire(s);
}

struct pool_server *pool_name_slots(struct pool_group *g, const struct pool_name *n,
                                    unsigned *count)
{
    *count = POOL_NAME_SLOTS;
    return &g->servers[n->first];
}
