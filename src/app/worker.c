/* worker.c -- a worker process's life: starting the request path on its
 * loop, signals, the drain, certificate reloads, buffer trimming, gauges and
 * the admin listener (see worker.h). */
#define _GNU_SOURCE
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "admit.h"
#include "buf.h"
#include "client.h"
#include "dns.h"
#include "evict.h"
#include "exchange.h"
#include "forward.h"
#include "h2.h"
#include "h2up.h"
#include "health.h"
#include "poolshm.h"
#include "tkey.h"
#include "listener.h"
#include "log.h"
#include "observe.h"
#include "pool.h"
#include "px.h"
#include "resolve.h"
#include "route.h"
#include "stats.h"
#include "tls.h"

#define DRAIN_GRACE_NS (1000 * MS)   /* a new connection's first request, while draining */
#define TRIM_NS (1000 * MS)

static struct timer trim_timer;      /* gives back buffers a burst left spare */
static struct timer drain_timer;     /* SIGTERM: the end of the drain */
static struct timer ticket_timer;    /* --single-process: the ticket keys' rotation */
static uint64_t trim_tick_at;

/* The gauges of this process into its stats slot, for the /metrics of
 * whichever worker answers the scrape. */
static void publish_gauges(void)
{
    struct stats_pool pools[STATS_MAX_POOLS];
    unsigned npools = pool_gauges(pools, STATS_MAX_POOLS);
    stats_publish(px_nclients, pool_open_count(), pools, npools);
}

static void on_trim(struct timer *t)
{
    bool tick = px_loop->now >= trim_tick_at;
    if (tick) {
        trim_tick_at = px_loop->now + TRIM_NS;
        publish_gauges();
    }
    int r = buf_trim(tick);
    if (r == 2)
        loop_timer_at(px_loop, t, px_loop->now + 10 * MS);   /* next slice */
    else if (r == 1)
        loop_timer_at(px_loop, t, trim_tick_at);
}

/* Hands freed connection slots to the requests waiting for them, oldest
 * first. Done here, between events, never from inside another connection's
 * callback. */
static void wake_waiters(void)
{
    unsigned n;
    struct pool_group *gs = pool_groups(&n);
    for (unsigned i = 0; i < n; i++) {
        struct pool_group *g = &gs[i];
        for (struct pool_waiter *w; (w = pool_wait_next(g));) {
            struct client *c = w->owner;
            admit_dequeue(c);   /* (out of the queue already: the flag) */
            exchange_dispatch(c, true);
            if (c->state == CS_EXCH && (c->s->x.flags & X_WAIT_SLOT))
                break;   /* queued again: the slot went elsewhere */
            if (c->state != CS_CLOSED)
                client_pump(c);
        }
    }
}

/* /metrics: the counters of stats.c with the gauges of this moment. */
static size_t render_metrics(char *out, size_t cap)
{
    unsigned npools, nroutes;
    struct pool_group *gs = pool_groups(&npools);
    const struct route *rs = route_all(&nroutes);
    const char *pool_names[STATS_MAX_POOLS], *route_names[STATS_MAX_ROUTES];
    char names[STATS_MAX_ROUTES][160];
    if (npools > STATS_MAX_POOLS)
        npools = STATS_MAX_POOLS;
    if (nroutes > STATS_MAX_ROUTES)
        nroutes = STATS_MAX_ROUTES;
    for (unsigned i = 0; i < npools; i++)
        pool_names[i] = gs[i].name;
    for (unsigned i = 0; i < nroutes; i++) {
        snprintf(names[i], sizeof names[i], "%s%s", rs[i].host ? rs[i].host : "", rs[i].path);
        route_names[i] = names[i];
    }
    static const char *server_pools[STATS_MAX_SERVERS], *server_names[STATS_MAX_SERVERS];
    unsigned nservers = obs_server_labels(server_pools, server_names, STATS_MAX_SERVERS);
    publish_gauges();
    struct stats_gauges g = {
        .npools = npools, .pool_names = pool_names,
        .nroutes = nroutes, .route_names = route_names,
        .nservers = nservers, .server_pools = server_pools, .server_names = server_names,
    };
    return stats_render(out, cap, &g);
}

static bool admin_healthy(void)
{
    return !px_draining;
}

/* The drain timeout: idle connections close the clean way (evict_shut_idle:
 * FIN, then their input read away for the 2 s linger at most), the rest
 * are cut; the worker stops when the last linger ends. */
static void on_drain_over(struct timer *t)
{
    (void)t;
    unsigned idle = 0, cut = 0;
    struct client *c = px_clients, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CS_IDLE && !(c->cflags & CF_HANDSHAKE)) {
            evict_shut_idle(c);
            idle++;
        } else if (c->state != CS_CLOSING || !c->s || !(c->s->x.flags & X_LINGER)) {
            client_close(c);
            cut++;
        }
    }
    if (cut)
        log_error("warn", "drain timeout: cutting %u connection(s) still open", cut);
    if (idle)
        log_error("info", "drain timeout: closing %u idle connection(s)", idle);
}

/* SIGTERM/SIGINT, or SIGUSR2 (retiring after a reload): stop accepting;
 * let requests in flight finish, answered with Connection: close; keep
 * idle keep-alive connections open, since closing one races with the
 * request its client may be sending: the next request on each is served
 * with Connection: close, and one still idle closes at its idle timeout or
 * at the drain timeout, the clean way (evict_shut_idle). Stop when none is
 * left. */
static void drain_begin(void)
{
    px_draining = true;
    listener_close_all();
    struct client *c = px_clients, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CS_H2) {
            h2_drain(c);   /* GOAWAY: its open streams finish */
            client_pump(c);
            continue;
        }
        if (c->state == CS_IDLE) {
            /* Between requests a connection stays open (a request may be
             * on its way: it is served with Connection: close), unless its
             * client has closed it already. One accepted a moment ago that
             * has sent nothing yet gets DRAIN_GRACE for its first request
             * (then the idle timeout closes it, the clean way), so a
             * retiring worker never resets a client that did nothing wrong. */
            char b;
            ssize_t n = recv(c->conn.io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0) {
                tls_close_notify(c->conn.ssl);
                client_close(c);
                continue;
            }
            if (n > 0 || (c->cflags & CF_SERVED))
                continue;   /* served with Connection: close, or closed when idle */
            uint64_t by = px_loop->now + DRAIN_GRACE_NS;
            if (c->t_first + ns_of(px_cfg->ms[TMO_IDLE]) > by) {
                c->t_first = by - ns_of(px_cfg->ms[TMO_IDLE]);
                exchange_arm(c);
            }
        } else if (c->s)
            c->s->x.flags |= X_CLOSE_AFTER;   /* answered with Connection: close */
    }
    log_error("info", "draining: no longer accepting; %u connection(s) to finish within %llu ms",
              px_nclients, (unsigned long long)px_cfg->drain_ms);
    loop_timer_at(px_loop, &drain_timer, px_loop->now + ns_of(px_cfg->drain_ms));
}

/* Without a master this process writes the ticket key ring (tkey.h). */
static void on_ticket_timer(struct timer *t)
{
    bool rotated;
    uint64_t next = tkey_rotate(&rotated);
    if (rotated)
        log_error("debug", "TLS session ticket key rotated; %u keys kept", tkey_count());
    loop_timer_at(px_loop, t, px_loop->now + next * MS);
}

static void on_iteration_end(struct loop *l)
{
    if (l->sig_usr1) {
        l->sig_usr1 = 0;
        int r = log_reopen();
        if (r < 0)
            log_error("error", "reopening the access log: %s", strerror(-r));
        else
            log_error("info", "access log reopened");
    }
    if (l->sig_hup) {
        l->sig_hup = 0;
        if (listener_any_tls())
            listener_reload_certificates();
        else
            log_error("warn", "SIGHUP ignored: reloading needs the master process (started "
                              "without --single-process)");
    }
    if (l->sig_usr2 && !px_draining) {
        admin_close_listener();   /* the new generation answers scrapes */
        drain_begin();
    }
    if (l->sig_term && !px_draining)
        drain_begin();
    else if (l->sig_term > 1)
        l->stop = 1;   /* a second signal: stop now */
    if (px_draining && !px_nclients)
        l->stop = 1;
    wake_waiters();
    evict_tick();
    if (!px_draining && (px_nclients < px_cfg->max_connections || evict_possible()))
        listener_resume();
    if (!trim_timer.armed) {
        if (trim_tick_at <= px_loop->now)
            trim_tick_at = px_loop->now + TRIM_NS;
        loop_timer_at(px_loop, &trim_timer, trim_tick_at);
    }
    log_flush();
}

/* The resolver (c-ares on l), when a forward listener or a pool's names
 * need it, with the configured servers (--resolver, `resolver:`). 0 or -1. */
static int resolver_start(struct loop *l, const struct cfg *c)
{
    if (!forward_wanted(c) && !res_wanted())
        return 0;
    /* c-ares doubles its per-try timeout each round: 3 tries of d/7
     * give up together with the dns timeout (d/7 + 2d/7 + 4d/7) */
    unsigned try_ms = (unsigned)(c->ms[TMO_DNS] / 7 > 50 ? c->ms[TMO_DNS] / 7 + 1 : 50);
    struct dns_config dc = {.servers = c->fwd.resolver, .try_ms = try_ms, .tries = 3};
    return dns_init(l, &dc) < 0 ? -1 : 0;
}

int worker_init(struct loop *l, const struct cfg *c, const struct worker_fds *fds)
{
    px_configure(l, c);
    obs_init();   /* (after the fork: this worker's own random bytes) */
    if (fds)
        psh_attach(fds->shared_area, fds->slot, fds->nworkers);
    else
        psh_attach(-1, 0, 1);   /* one process: its own state */
    if (pool_init(l, c) < 0 || route_init(c) < 0)
        return -EINVAL;
    h2u_init(l, c->deadline_header);
    health_init(l, c);
    if (resolver_start(l, c) < 0 || forward_init(l, c) < 0 || res_init(l) < 0)
        return -EINVAL;
    if (c->has_admin &&
        admin_init(l, &c->admin, fds ? fds->admin : -1, render_metrics, admin_healthy) < 0)
        return -EINVAL;
    timer_init(&trim_timer, on_trim);
    timer_init(&drain_timer, on_drain_over);
    evict_init();
    timer_init(&ticket_timer, on_ticket_timer);
    if (!fds)
        on_ticket_timer(&ticket_timer);
    l->on_iteration_end = on_iteration_end;
    return listener_open_all(l, c, fds ? fds->listen : NULL);
}

void worker_shutdown(void)
{
    while (px_clients)
        client_close(px_clients);
    health_stop();
    res_shutdown();
    admin_stop();
    pool_close_idle();
    listener_shutdown();
    loop_timer_stop(px_loop, &trim_timer);
    loop_timer_stop(px_loop, &drain_timer);
    evict_shutdown();
    loop_timer_stop(px_loop, &ticket_timer);
    /* run the deferred releases, then free the recycled structs */
    while (px_loop->defer) {
        struct loop_defer *d = px_loop->defer;
        px_loop->defer = d->next;
        d->cb(d);
    }
    client_free_spares();
    pool_free_structs();
    h2u_free();
    route_free();
    dns_shutdown();
    forward_shutdown();
    log_flush();
}
