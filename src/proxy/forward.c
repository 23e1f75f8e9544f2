/* forward.c -- the forward proxy: who may use it, where it may go, DNS (see forward.h). */
#define _GNU_SOURCE
#include "forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "access.h"
#include "addr.h"
#include "auth.h"
#include "buf.h"
#include "client.h"
#include "cfg.h"
#include "dns.h"
#include "exchange.h"
#include "fwd.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "observe.h"
#include "pool.h"
#include "px.h"
#include "relay.h"
#include "stats.h"
#include "tls.h"
#include "tmo.h"
#include "tunnel.h"

static struct auth *proxy_auth;

static int forward_refuse(struct client *c, int status, const char *reason, const char *why);
static void dest_add(struct fwd_dest *d, const struct sockaddr_storage *ss);
static int dest_set(struct fwd_dest *d, const struct addr_authority *a);
static bool may_reach(const struct sockaddr *sa);
static int forward_connect(struct client *c);
static void on_dns(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n,
                   uint32_t ttl);

static int forward_refuse(struct client *c, int status, const char *reason, const char *why)
{
    char what[320];
    access_describe(c, what, sizeof what);
    log_error("info", "forward proxy: %s (%s)", why, what);
    client_error_ex(c, status, reason, why,
                     status == 407 ? "Proxy-Authenticate: Basic realm=\"hourglass\"\r\n" : "");
    return 1;
}

/* Checks the client, its credentials and the target; 0 to go on (the
 * destination is in the session), else 1 after answering. */
int forward_admit(struct client *c, const struct http_msg *m, bool is_connect)
{
    struct session *s = c->s;
    const struct cfg_forward *f = &px_cfg->fwd;
    s->fwd.chosen = false;   /* a pipelined request's log names no earlier destination */
    if (!addr_cidr_list_match(f->clients, f->nclients, &c->peer.sa))
        return forward_refuse(c, 403, "forbidden", "this client may not use the forward proxy");
    if (proxy_auth) {
        bool ok = false;
        for (uint32_t i = 0; i < m->nfields && !ok; i++)
            if (HTTP_NAME_IS(&m->fields[i], "proxy-authorization"))
                ok = auth_check(proxy_auth, m->fields[i].value, m->fields[i].value_len);
        if (!ok)
            return forward_refuse(c, 407, "proxy_auth_required",
                                  "proxy credentials missing or wrong");
    }
    const char *auth = m->target, *path;
    size_t auth_len = m->target_len, path_len;
    if (!is_connect && fwd_split_absolute(m->target, m->target_len, &auth, &auth_len, &path,
                                          &path_len) < 0)
        return forward_refuse(c, 400, "bad_request",
                              "a forward proxy takes http://host/path targets or CONNECT");
    struct addr_authority a;
    if (addr_parse_authority(auth, auth_len, &a) < 0)
        return forward_refuse(c, 400, "bad_request", "bad host or port in the target");
    if (is_connect) {
        bool port_ok = false;
        for (unsigned i = 0; i < f->nports; i++)
            port_ok |= f->ports[i] == a.port;
        if (!a.has_port)
            return forward_refuse(c, 400, "bad_request", "CONNECT needs host:port");
        if (!port_ok)
            return forward_refuse(c, 403, "forbidden", "CONNECT to this port is not allowed");
    }
    if (dest_set(&s->fwd, &a) < 0)
        return forward_refuse(c, 400, "bad_request", "host name too long");
    return 0;
}

/* Adds ss (an AF_INET or AF_INET6 address with its port) to d's addresses. */
static void dest_add(struct fwd_dest *d, const struct sockaddr_storage *ss)
{
    if (d->nips < DNS_MAX_ADDRS)
        memcpy(&d->ips[d->nips++], ss, addr_socklen((const struct sockaddr *)ss));
}

/* Sets d to the target a names, on its port (80 when it has none): an IP
 * literal is its one address; a name is kept to be resolved. -1: the name
 * is too long. The query is idle between requests (attempt_drop). */
static int dest_set(struct fwd_dest *d, const struct addr_authority *a)
{
    d->port = a->has_port ? a->port : 80;
    d->name[0] = '\0';
    d->nips = 0;
    if (!a->is_ip)
        return addr_host_lower(d->name, sizeof d->name, a->host, a->host_len);
    struct sockaddr_storage ss = a->ip;
    addr_set_port(&ss, d->port);
    dest_add(d, &ss);
    return 0;
}

/* Whether the forward proxy may connect to sa: a public address, or one in
 * allow_destinations. */
static bool may_reach(const struct sockaddr *sa)
{
    return addr_classify(sa) == ADDR_PUBLIC ||
           addr_cidr_list_match(px_cfg->fwd.dests, px_cfg->fwd.ndests, sa);
}

/* The index of the first of d's addresses from `from` on that may be
 * reached, or d->nips. */
static unsigned next_reachable(const struct fwd_dest *d, unsigned from)
{
    unsigned i = from;
    while (i < d->nips && !may_reach(&d->ips[i].sa))
        i++;
    return i;
}

/* Makes address i of d the one connected to. */
static void dest_choose(struct fwd_dest *d, unsigned i)
{
    d->addr.len = addr_socklen(&d->ips[i].sa);
    memcpy(&d->addr.ss, &d->ips[i], d->addr.len);
    net_addr_text(&d->ips[i].sa, d->addr.text, sizeof d->addr.text);
    d->at = i;
    d->chosen = true;
}

/* Chooses the first of the destination's addresses that may be reached and
 * connects to it; when none may, refuses, naming the first. The address
 * checked is the one connected to. The destination has an address: its IP
 * literal, or at least one answer (dns.h). */
static int forward_connect(struct client *c)
{
    struct session *s = c->s;
    struct fwd_dest *d = &s->fwd;
    unsigned i = next_reachable(d, 0);
    if (i == d->nips) {
        char why[160], ip[INET6_ADDRSTRLEN];
        net_ip_text(&d->ips[0].sa, ip, sizeof ip);
        snprintf(why, sizeof why, "destination %s is a %s address", ip,
                 addr_class_name(addr_classify(&d->ips[0].sa)));
        return forward_refuse(c, 403, "forbidden", why);
    }
    dest_choose(d, i);
    return exchange_dispatch(c, false);
}

int forward_next(struct client *c, const char *why)
{
    struct fwd_dest *d = &c->s->fwd;
    unsigned i = d->chosen ? next_reachable(d, d->at + 1) : d->nips;
    if (i >= d->nips)
        return -1;
    char what[320], failed[sizeof d->addr.text];
    access_describe(c, what, sizeof what);
    memcpy(failed, d->addr.text, sizeof failed);
    exchange_reset_attempt(c);
    dest_choose(d, i);
    log_error("info", "forward proxy: connect to %s failed (%s); trying %s, address %u of %u "
                      "(%s)", failed, why, d->addr.text, i + 1, d->nips, what);
    return exchange_dispatch(c, false);
}

static void on_dns(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n,
                   uint32_t ttl)
{
    (void)ttl;   /* each request resolves anew: nothing is kept */
    struct client *c = arg;
    struct exch *x = &c->s->x;
    x->flags &= ~X_RESOLVING;
    if (status == -ETIMEDOUT) {   /* c-ares gave up: every try of every server */
        char what[320], detail[320];
        access_describe(c, what, sizeof what);
        snprintf(detail, sizeof detail, "dns_timeout after %llu ms",
                 (unsigned long long)px_cfg->ms[TMO_DNS]);
        log_error("warn", "dns timeout: no DNS server answered for %s (%s)", c->s->fwd.name, what);
        exchange_fail(c, 504, "dns_timeout", detail);
    } else if (status < 0) {
        char what[320], detail[320];
        access_describe(c, what, sizeof what);
        snprintf(detail, sizeof detail, "cannot resolve %s: %s", c->s->fwd.name,
                 status == -ENOENT ? "no such name" : strerror(-status));
        log_error("info", "forward proxy: %s (%s)", detail, what);
        exchange_fail(c, 502, "dns_failed", detail);
    } else {
        for (unsigned i = 0; i < n; i++)
            dest_add(&c->s->fwd, &addrs[i]);
        forward_connect(c);
    }
    if (c->state != CS_CLOSED)
        client_pump(c);
}

/* Resolves the destination's name (an IP literal needs none), then
 * connects; DNS runs under the dns timeout, clamped by the total. */
int forward_resolve(struct client *c)
{
    struct session *s = c->s;
    if (!s->fwd.name[0])
        return forward_connect(c);
    int r = dns_resolve(&s->fwd.dns, s->fwd.name, s->fwd.port, on_dns, c);
    if (r < 0) {
        char detail[96];
        snprintf(detail, sizeof detail, "cannot resolve: %s", strerror(-r));
        return exchange_fail(c, 502, "dns_failed", detail);
    }
    s->x.flags |= X_RESOLVING;
    s->x.clk.dns = px_loop->now;
    return 1;
}

/* CONNECT: the upstream connection is open, the tunnel begins. */
int forward_established(struct client *c)
{
    static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
    struct exch *x = &c->s->x;
    buf_reserve(&c->s->out, BUF_SMALL);
    memcpy(buf_tail(&c->s->out), ok, sizeof ok - 1);
    c->s->out.end += sizeof ok - 1;
    x->status = 200;
    x->flags |= X_REQ_SENT | X_RESP_HEAD;
    x->first_byte_ns = (int64_t)(px_loop->now - x->clk.start);
    obs_try_end(c, px_att(c->s), "ok", 0);   /* (the tunnel is not the attempt's time) */
    tunnel_begin(c);
    return 1;
}

bool forward_wanted(const struct cfg *c)
{
    for (unsigned i = 0; i < c->nlisten; i++)
        if (c->listen_forward[i])
            return true;
    return false;
}

int forward_init(struct loop *l, const struct cfg *c)
{
    (void)l;
    if (!forward_wanted(c))
        return 0;
    if (c->fwd.auth_file) {
        char err[512];
        if (!(proxy_auth = auth_load(c->fwd.auth_file, err, sizeof err))) {
            log_error("error", "proxy auth file: %s", err);
            return -1;
        }
    }
    return 0;
}

void forward_shutdown(void)
{
    auth_free(proxy_auth);
    proxy_auth = NULL;
}
