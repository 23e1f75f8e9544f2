/* resolve.c -- the servers of a pool's names, resolved on the loop (see
 * resolve.h). Owns one timer and one query per name (and one query per SRV
 * target); asks pool.c to add and retire servers (pool_slot_*) and health.c
 * to check them. */
#define _GNU_SOURCE
#include "resolve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "buf.h"
#include "dns.h"
#include "health.h"
#include "log.h"
#include "net.h"
#include "stats.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

_Static_assert(POOL_NAME_SERVERS <= DNS_MAX_ADDRS, "a host name's answer fits its slots");

struct res_name;

/* One target of an SRV answer, resolved to its addresses. */
struct res_target {
    struct res_name *rn;
    struct dns_query q;
    struct dns_srv rec;
    int status;
    uint32_t ttl;
    unsigned naddrs;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
};

/* One name of a pool: its timer, its query, what it last said. */
struct res_name {
    struct pool_group *g;
    const struct pool_name *pn;
    unsigned pool;                 /* the pool's index (its metrics) */
    struct timer timer;            /* the next resolution */
    struct dns_query q;            /* the host name's, or the SRV query */
    unsigned failures;             /* in a row */
    int logged;                    /* the failure logged last (a status); 0 after a success */
    bool answered;                 /* an answer came once */
    unsigned unplaced;             /* addresses of the last answer without a slot (logged) */
    /* an SRV name: its last answer's targets, being resolved */
    struct res_target *targets;    /* DNS_MAX_SRV of them */
    unsigned ntargets, pending;
    uint32_t ttl;                  /* the SRV records' */
};

static struct loop *loop;
static struct res_name *names;
static unsigned nnames;

/* ---------------------------------------------------------------- pure parts */

unsigned res_plan(const struct pool_server *slots, unsigned nslots, const struct res_addr *ans,
                  unsigned n, int *take)
{
    bool placed[DNS_MAX_SRV * DNS_MAX_ADDRS] = {0};
    unsigned left = 0;
    if (n > sizeof placed / sizeof placed[0])
        n = sizeof placed / sizeof placed[0];
    for (unsigned i = 0; i < nslots; i++)
        take[i] = -1;
    for (unsigned j = 0; j < n; j++)   /* an address given twice: the first counts */
        for (unsigned k = 0; k < j && !placed[j]; k++)
            placed[j] = addr_same((const struct sockaddr *)&ans[j].ss,
                                  (const struct sockaddr *)&ans[k].ss);
    /* in service, and staying; then leaving, and coming back */
    for (int pass = 0; pass < 2; pass++) {
        enum pool_slot want = pass ? POOL_SLOT_LEAVING : POOL_SLOT_IN_SERVICE;
        for (unsigned j = 0; j < n; j++)
            for (unsigned i = 0; i < nslots && !placed[j]; i++)
                if (take[i] < 0 && slots[i].state == want &&
                    pool_slot_has(&slots[i], (const struct sockaddr *)&ans[j].ss)) {
                    take[i] = (int)j;
                    placed[j] = true;
                }
    }
    /* new: an unused slot first, then a free leaving one */
    for (unsigned j = 0; j < n; j++) {
        for (int pass = 0; pass < 2 && !placed[j]; pass++)
            for (unsigned i = 0; i < nslots && !placed[j]; i++) {
                bool ok = pass ? slots[i].state == POOL_SLOT_LEAVING && pool_slot_free(&slots[i])
                               : slots[i].state == POOL_SLOT_UNUSED;
                if (take[i] < 0 && ok) {
                    take[i] = (int)j;
                    placed[j] = true;
                }
            }
        left += !placed[j];
    }
    return left;
}

uint64_t res_interval_ms(uint32_t ttl, uint64_t min_ms, uint64_t max_ms)
{
    uint64_t ms = (uint64_t)ttl * 1000;
    return ms < min_ms ? min_ms : ms > max_ms ? max_ms : ms;
}

uint64_t res_retry_ms(unsigned failures, uint64_t min_ms, uint64_t max_ms)
{
    uint64_t cap = max_ms < RES_RETRY_CAP_MS ? max_ms : RES_RETRY_CAP_MS;
    uint64_t ms = min_ms << (failures > 1 ? (failures - 1 < 20 ? failures - 1 : 20) : 0);
    if (ms > cap)
        ms = cap;
    return ms < min_ms ? min_ms : ms;
}

/* ---------------------------------------------------------------- applying */

/* "10.0.0.1:80, 10.0.0.2:80" of the name's servers in service, or "none". */
static void servers_text(struct res_name *rn, char *out, size_t cap)
{
    unsigned ns;
    struct pool_server *s = pool_name_slots(rn->g, rn->pn, &ns);
    size_t len = 0;
    out[0] = 0;
    for (unsigned i = 0; i < ns; i++)
        if (s[i].state == POOL_SLOT_IN_SERVICE && len < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "", s[i].addr->text);
    if (!len)
        snprintf(out, cap, "none");
}

/* Makes the name's servers those of the answer ans[0..n): the plan
 * (res_plan), then those leaving first, then those joining; logs the change
 * (and addresses without a slot, when their number changes). Returns how
 * many addresses found no slot. */
static unsigned apply(struct res_name *rn, const struct res_addr *ans, unsigned n)
{
    char was[1024], now[1024];
    unsigned ns;
    int take[POOL_NAME_SLOTS];
    struct pool_server *s = pool_name_slots(rn->g, rn->pn, &ns);
    servers_text(rn, was, sizeof was);
    unsigned left = res_plan(s, ns, ans, n, take);
    for (unsigned i = 0; i < ns; i++)
        if (take[i] < 0 && s[i].state == POOL_SLOT_IN_SERVICE) {
            health_server_stop(&s[i]);
            pool_slot_leave(&s[i]);
        }
    for (unsigned i = 0; i < ns; i++) {
        if (take[i] < 0)
            continue;
        const struct res_addr *a = &ans[take[i]];
        if (s[i].state == POOL_SLOT_IN_SERVICE) {
            pool_slot_update(&s[i], a->weight, a->priority);
            continue;
        }
        if (pool_slot_join(&s[i], (const struct sockaddr *)&a->ss, a->weight, a->priority,
                           a->tls_host) < 0) {
            log_error("error", "pool %s: %s: slot %u refused its address (a bug of res_plan)",
                      rn->g->name, rn->pn->at->text, i);
            continue;
        }
        health_server_start(&s[i]);
    }
    servers_text(rn, now, sizeof now);
    if (strcmp(was, now) != 0)
        log_error("info", "pool %s: %s now %s (was %s)", rn->g->name, rn->pn->at->text, now, was);
    else if (rn->logged)
        log_error("info", "pool %s: %s resolves again: %s", rn->g->name, rn->pn->at->text, now);
    if (left && left != rn->unplaced)
        log_error("warn", "pool %s: %s: %u address(es) of the answer find no free slot (%u per "
                          "name): they are tried again at the next resolution",
                  rn->g->name, rn->pn->at->text, left, POOL_NAME_SLOTS);
    rn->unplaced = left;
    return left;
}

static void schedule(struct res_name *rn, uint64_t ms)
{
    loop_timer_at(loop, &rn->timer, loop->now + ms * MS);
}

static void count(struct res_name *rn, int status)
{
    unsigned r = !status                ? STATS_DNS_OK
               : status == -ENOENT      ? STATS_DNS_NXDOMAIN
               : status == -ETIMEDOUT   ? STATS_DNS_TIMEOUT
                                        : STATS_DNS_ERROR;
    if (rn->pool < STATS_MAX_POOLS)
        stats->dns[rn->pool][r]++;
}

/* A resolution failed: the servers stay, the log says so once per cause,
 * and the next try comes after a backoff. */
static void failed(struct res_name *rn, int status)
{
    count(rn, status);
    rn->failures++;
    if (rn->logged != status) {
        char kept[1024];
        servers_text(rn, kept, sizeof kept);
        log_error("warn", "pool %s: cannot resolve %s: %s; %s%s", rn->g->name,
                  rn->pn->at->text,
                  status == -ENOENT      ? "no such name, or no address"
                  : status == -ETIMEDOUT ? "no DNS server answered in time"
                                         : strerror(-status),
                  rn->answered ? "keeping its servers: " : "no server yet", rn->answered ? kept : "");
        rn->logged = status;
    }
    schedule(rn, res_retry_ms(rn->failures, rn->g->resolve_min_ms, rn->g->resolve_max_ms));
}

/* A resolution answered ans[0..n) (n >= 1) with this TTL. */
static void answered(struct res_name *rn, const struct res_addr *ans, unsigned n, uint32_t ttl)
{
    count(rn, 0);
    unsigned left = apply(rn, ans, n);
    rn->failures = 0;
    rn->logged = 0;
    rn->answered = true;
    uint64_t ms = res_interval_ms(ttl, rn->g->resolve_min_ms, rn->g->resolve_max_ms);
    schedule(rn, left ? rn->g->resolve_min_ms : ms);
}

/* ---------------------------------------------------------------- host names */

static void on_addrs(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n,
                     uint32_t ttl)
{
    struct res_name *rn = arg;
    if (status < 0) {
        failed(rn, status);
        return;
    }
    struct res_addr ans[POOL_NAME_SERVERS];
    if (n > POOL_NAME_SERVERS)
        n = POOL_NAME_SERVERS;
    for (unsigned i = 0; i < n; i++)
        ans[i] = (struct res_addr){.ss = addrs[i], .weight = rn->pn->weight};
    answered(rn, ans, n, ttl);
}

/* ---------------------------------------------------------------- SRV names */

/* Every target has answered: the servers are their addresses, in the
 * records' order. A target that does not exist (or has no address) is left
 * out; one whose resolution timed out or failed otherwise fails the whole
 * resolution, so that a passing DNS failure does not take its servers out. */
static void srv_done(struct res_name *rn)
{
    struct res_addr ans[POOL_NAME_SERVERS];
    unsigned n = 0;
    uint32_t ttl = rn->ttl;
    for (unsigned t = 0; t < rn->ntargets; t++)
        if (rn->targets[t].status < 0 && rn->targets[t].status != -ENOENT) {
            failed(rn, rn->targets[t].status);
            return;
        }
    for (unsigned t = 0; t < rn->ntargets; t++) {
        const struct res_target *tg = &rn->targets[t];
        if (tg->status < 0)
            continue;
        if (tg->ttl < ttl)
            ttl = tg->ttl;
        for (unsigned k = 0; k < tg->naddrs && n < POOL_NAME_SERVERS; k++)
            ans[n++] = (struct res_addr){.ss = tg->addrs[k], .weight = tg->rec.weight,
                                         .priority = tg->rec.priority,
                                         .tls_host = tg->rec.target};
    }
    if (!n)
        failed(rn, -ENOENT);
    else
        answered(rn, ans, n, ttl);
}

static void on_target(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n,
                      uint32_t ttl)
{
    struct res_target *tg = arg;
    tg->status = status;
    tg->ttl = ttl;
    tg->naddrs = status < 0 ? 0 : n;
    if (tg->naddrs)
        memcpy(tg->addrs, addrs, n * sizeof *addrs);
    if (--tg->rn->pending == 0)
        srv_done(tg->rn);
}

static void on_srv(void *arg, int status, const struct dns_srv *recs, unsigned n, uint32_t ttl)
{
    struct res_name *rn = arg;
    if (status < 0) {
        failed(rn, status);
        return;
    }
    rn->ntargets = rn->pending = n;
    rn->ttl = ttl;
    for (unsigned t = 0; t < n; t++) {
        struct res_target *tg = &rn->targets[t];
        *tg = (struct res_target){.rn = rn, .rec = recs[t]};
        tg->rec.weight = tg->rec.weight ? tg->rec.weight : 1;   /* 0: the least, not none */
    }
    /* all the queries leave before any answer can come (dns.h: never from
     * inside dns_resolve), so `pending` reaches 0 once, after the last */
    for (unsigned t = 0; t < n; t++) {
        struct res_target *tg = &rn->targets[t];
        int r = dns_resolve(&tg->q, tg->rec.target, tg->rec.port, on_target, tg);
        if (r < 0) {
            tg->status = r;
            rn->pending--;
        }
    }
    if (!rn->pending)
        srv_done(rn);
}

/* ---------------------------------------------------------------- the timer */

static void on_timer(struct timer *t)
{
    struct res_name *rn = container_of(t, struct res_name, timer);
    const struct val_server *at = rn->pn->at;
    if (rn->pending)
        return;   /* (an SRV answer's targets still resolving: they reschedule) */
    int r = at->srv ? dns_srv(&rn->q, at->name, on_srv, rn)
                    : dns_resolve(&rn->q, at->name, at->port, on_addrs, rn);
    if (r < 0 && r != -EBUSY)
        failed(rn, r);
}

bool res_wanted(void)
{
    unsigned ng;
    struct pool_group *gs = pool_groups(&ng);
    for (unsigned i = 0; i < ng; i++)
        if (gs[i].nnames)
            return true;
    return false;
}

int res_init(struct loop *l)
{
    unsigned ng;
    struct pool_group *gs = pool_groups(&ng);
    loop = l;
    nnames = 0;
    for (unsigned i = 0; i < ng; i++)
        nnames += gs[i].nnames;
    if (!nnames)
        return 0;
    names = xcalloc(nnames, sizeof *names);
    unsigned k = 0;
    for (unsigned i = 0; i < ng; i++)
        for (unsigned j = 0; j < gs[i].nnames; j++) {
            struct res_name *rn = &names[k++];
            *rn = (struct res_name){.g = &gs[i], .pn = &gs[i].names[j], .pool = i};
            if (rn->pn->at->srv)
                rn->targets = xcalloc(DNS_MAX_SRV, sizeof *rn->targets);
            timer_init(&rn->timer, on_timer);
            on_timer(&rn->timer);   /* the first query leaves now */
        }
    return 0;
}

void res_shutdown(void)
{
    for (unsigned i = 0; i < nnames; i++) {
        struct res_name *rn = &names[i];
        loop_timer_stop(loop, &rn->timer);
        dns_cancel(&rn->q);
        for (unsigned t = 0; rn->targets && t < DNS_MAX_SRV; t++)
            dns_cancel(&rn->targets[t].q);
        free(rn->targets);
    }
    free(names);
    names = NULL;
    nnames = 0;
}
