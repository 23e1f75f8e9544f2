/* listener.c -- listening sockets: accepting within the connection limit,
 * TLS certificates per listener (see listener.h). */
#define _GNU_SOURCE
#include "listener.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "evict.h"
#include "log.h"
#include "net.h"
#include "tls.h"

#define ACCEPT_RETRY_NS (100 * MS)     /* after EMFILE */
#define ACCEPT_WARN_NS (10000 * MS)    /* at most one sentence about it per 10 s */

struct listener {
    struct loop_io io;
    const struct cli_addr *addr;
    bool trust_deadline;
    bool trust_rid;           /* take the client's X-Request-Id */
    bool forward;
    bool underscores;
    bool http2;               /* HTTP/2 too: ALPN h2 with TLS, h2c prior knowledge without */
    struct tls_server *tls;   /* TLS listener: its certificates; NULL: plain */
};

static struct listener listeners[CLI_MAX_LISTEN];
static unsigned nlisteners;
static bool accept_paused;           /* at max_connections: the rest wait */
static struct timer accept_retry;    /* after EMFILE and the like */
static struct log_every accept_warn;

static void on_accept(struct loop_io *io, uint32_t events);
static void on_accept_retry(struct timer *t);
static struct tls_server *listener_tls(unsigned i);

/* At max_connections a waiting connection is accepted in place of an
 * evicted one (evict.h), but at most this many per pass: the new ones read
 * their first request in the events that follow before more come in,
 * which evicting them in turn (the oldest heads first) would prevent. */
static unsigned evict_batch(void)
{
    unsigned n = px_cfg->max_connections / 4;
    return n < 1 ? 1 : n > 64 ? 64 : n;
}

void listener_accept_all(void)
{
    unsigned evictions = 0;
    for (unsigned i = 0; i < nlisteners; i++) {
        struct listener *ls = &listeners[i];
        while (ls->io.ready & LOOP_READ) {
            bool full = px_nclients >= px_cfg->max_connections;
            if (full && (evictions >= evict_batch() || !evict_possible())) {
                accept_paused = true;   /* they wait in the listen queue */
                uint64_t at = evict_head_ready_at();   /* (or the next iteration's end) */
                if (at != UINT64_MAX && at > px_loop->now)
                    loop_timer_at(px_loop, &accept_retry, at);
                return;
            }
            struct sockaddr_storage peer;
            socklen_t len;
            int fd = net_accept(ls->io.fd, &peer, &len);
            if (fd >= 0) {
                /* a connection was waiting: one evicted makes its room (if
                 * the one in line had just started a request, evict_one
                 * finds none and this one is over the limit, once) */
                if (full && evict_one())
                    evictions++;
                client_new(fd, &peer,
                           (ls->trust_deadline ? CF_TRUSTED : 0) | (ls->forward ? CF_FORWARD : 0) |
                               (ls->underscores ? CF_UNDERSCORES : 0) |
                               (ls->http2 ? CF_HTTP2 : 0) | (ls->trust_rid ? CF_TRUST_RID : 0),
                           ls->tls);
                continue;
            }
            if (fd == -EAGAIN) {
                ls->io.ready &= ~LOOP_READ;
            } else if (net_local_exhausted(fd)) {
                /* Every readable edge and every retry meets it again while
                 * it lasts: one sentence per 10 s says so, with the count. */
                unsigned long held;
                if (log_every(&accept_warn, px_loop->now, ACCEPT_WARN_NS, &held))
                    log_error("error", "accept on %s: %s; retrying every 100 ms (raise the open "
                                       "file limit with ulimit -n, or lower --max-connections)"
                                       " (%lu more since the last such message)",
                              ls->addr->text, strerror(-fd), held);
                loop_timer_at(px_loop, &accept_retry, px_loop->now + ACCEPT_RETRY_NS);
                return;
            }
            /* other errors (ECONNABORTED...) concern one connection only */
        }
    }
    accept_paused = false;
}

static void on_accept(struct loop_io *io, uint32_t events)
{
    (void)io;
    (void)events;
    listener_accept_all();
}

static void on_accept_retry(struct timer *t)
{
    (void)t;
    listener_accept_all();
}

/* Loads listener i's certificates (checked once already when the file was
 * read, but a file may have changed since); its ALPN offers h2 when it
 * speaks HTTP/2. NULL after logging why. */
static struct tls_server *listener_tls(unsigned i)
{
    char err[512];
    unsigned bad = 0;
    int bad_key = 0;
    struct tls_server_conf tc = *px_cfg->listen_tls[i];
    tc.h2 = px_cfg->listen_http2[i];
    struct tls_server *t = tls_server_new(&tc, err, sizeof err, &bad, &bad_key);
    if (!t)
        log_error("error", "TLS on %s: %s", px_cfg->listen[i].text, err);
    return t;
}

/* SIGHUP without a master: the certificate files are read again. New
 * connections use them; open ones keep theirs. All or nothing. */
void listener_reload_certificates(void)
{
    struct tls_server *fresh[CLI_MAX_LISTEN] = {0};
    unsigned n = 0;
    for (unsigned i = 0; i < nlisteners; i++) {
        if (!listeners[i].tls)
            continue;
        if (!(fresh[i] = listener_tls(i))) {
            log_error("error", "TLS certificate reload failed; keeping the old ones");
            for (unsigned j = 0; j < i; j++)
                tls_server_free(fresh[j]);
            return;
        }
        n++;
    }
    for (unsigned i = 0; i < nlisteners; i++)
        if (fresh[i]) {
            tls_server_free(listeners[i].tls);
            listeners[i].tls = fresh[i];
        }
    log_error("info", "TLS certificates reloaded (%u listener(s)); the rest of the "
                      "configuration needs the master process to reload", n);
}

int listener_open_all(struct loop *l, const struct cfg *c, const int *fds)
{
    timer_init(&accept_retry, on_accept_retry);
    for (unsigned i = 0; i < c->nlisten; i++) {
        int r;
        const struct cli_addr *a = &c->listen[i];
        int fd = fds ? fds[i] : net_listen((const struct sockaddr *)&a->ss, a->len, 4096);
        if (fd < 0) {
            log_error("error", "cannot listen on %s: %s%s", a->text, strerror(-fd),
                      fd == -EADDRINUSE ? " (is another process using the port? "
                                          "find it with: ss -ltnp)" : "");
            return fd;
        }
        listeners[i].addr = a;
        listeners[i].trust_deadline = c->listen_trust[i];
        listeners[i].trust_rid = c->listen_trust_rid[i];
        listeners[i].forward = c->listen_forward[i];
        listeners[i].underscores = c->listen_underscores[i];
        listeners[i].http2 = c->listen_http2[i];
        /* set (or cleared) on every start: a listener handed down by the
         * master, or kept over a reload, takes this generation's value */
        r = net_defer_accept(fd, c->listen_defer[i]);
        if (r < 0)
            log_error("warn", "listen %s: cannot set defer_accept (TCP_DEFER_ACCEPT): %s; "
                              "connections are accepted at once", a->text, strerror(-r));
        if (c->listen_tls[i] && !(listeners[i].tls = listener_tls(i))) {
            close(fd);
            return -EINVAL;
        }
        r = loop_add_listener(l, &listeners[i].io, fd, on_accept);
        if (r < 0) {
            close(fd);
            return r;
        }
        nlisteners++;
    }
    return 0;
}

void listener_close_all(void)
{
    for (unsigned i = 0; i < nlisteners; i++) {
        net_listener_closed(listeners[i].io.fd);
        loop_close_shared(px_loop, &listeners[i].io);
    }
}

bool listener_any_tls(void)
{
    for (unsigned i = 0; i < nlisteners; i++)
        if (listeners[i].tls)
            return true;
    return false;
}

void listener_resume(void)
{
    if (accept_paused)
        listener_accept_all();
}

void listener_shutdown(void)
{
    for (unsigned i = 0; i < nlisteners; i++) {
        net_listener_closed(listeners[i].io.fd);
        loop_close_shared(px_loop, &listeners[i].io);
        tls_server_free(listeners[i].tls);
        listeners[i].tls = NULL;
    }
    nlisteners = 0;
    loop_timer_stop(px_loop, &accept_retry);
}
