/* dns.c -- asynchronous name resolution: c-ares driven by our loop (see dns.h).
 *
 * c-ares tells us of its sockets through the sock-state callback; we register
 * each with the loop once (edge-triggered, like every socket) and hand every
 * wake-up to ares_process_fd. Edge-triggered readiness needs care in three
 * places:
 *
 *  - reading: an edge comes once for all the bytes that arrived, but c-ares
 *    may take less than all of them in one call (over TCP it reads a 2-byte
 *    length and then the message, one recv each). After each call we ask the
 *    kernel (poll, zero timeout) whether the socket is still readable and call
 *    again while it is; past DNS_DRAIN_MAX calls the rest waits for the next
 *    loop iteration, so one socket cannot hold the loop.
 *  - writing: c-ares asks for write interest when it queues a TCP query on a
 *    connection that may have been writable for long; no edge will come for
 *    that. Such a socket gets one write attempt from the kick timer; if the
 *    kernel takes only part, the buffer is full and the next EPOLLOUT edge
 *    follows when it drains.
 *  - closing: c-ares closes its sockets itself and tells us just before, so we
 *    remove the descriptor from epoll then (it is still open) and forget it;
 *    loop_close would close it a second time.
 *
 * Answers are never delivered from inside c-ares: its callback stores the
 * result in the query's ticket and queues it; the kick timer (armed at the
 * current time, so it runs in the same or the next loop iteration) delivers
 * the queue. That keeps callbacks out of dns_resolve (c-ares answers IP
 * literals and some failures synchronously) and lets them call back into this
 * module, dns_shutdown included.
 *
 * Costs: a ticket of about 1 KiB per query in flight (and 4 KiB more for
 * the records of an SRV query); one poll(2) per socket
 * wake-up; ares_timeout walks every query in flight, after each wake-up. */
#define _GNU_SOURCE
#include "dns.h"

#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/time.h>

#include "buf.h"
#include "log.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Sockets c-ares may hold at once: one UDP and at most one TCP per server. A
 * socket past this many is refused at creation (c-ares then moves on to
 * another server, or fails the query). */
#define DNS_SOCKS 16

/* ares_process_fd calls for one socket in one wake-up before the rest waits
 * for the next iteration (a TCP answer costs two). */
#define DNS_DRAIN_MAX 64

/* One c-ares socket. Free when io.fd < 0. */
struct dns_sock {
    struct loop_io io;
    unsigned gen;       /* bumped when the slot is freed, so a caller holding it sees it go */
    bool want_write;    /* c-ares has bytes to send: try once without waiting for an edge */
    bool again;         /* still readable after DNS_DRAIN_MAX calls */
};

/* One query in flight, from dns_resolve (or dns_srv) until its callback has
 * run (or until c-ares lets go of a cancelled one). */
struct dns_ticket {
    struct dns_ticket *next;     /* on the delivery queue */
    struct dns_query *q;         /* NULL once cancelled */
    dns_cb *cb;                  /* an address query's callback, or NULL */
    dns_srv_cb *srv_cb;          /* an SRV query's callback, or NULL */
    void *arg;
    bool cancelled;
    uint16_t port;               /* network order */
    int status;
    uint32_t ttl;                /* seconds: the smallest of the records kept */
    unsigned naddrs;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    struct dns_srv *srv;         /* an SRV query's records (DNS_MAX_SRV), or NULL */
    unsigned nsrv;
};

#define DNS_CLASS_IN 1
#define DNS_TYPE_SRV 33

static struct loop *loop;
static ares_channel channel;
static bool up;                  /* between dns_init and dns_shutdown */
static bool shutting_down;       /* inside dns_shutdown: answers are dropped */
static unsigned epoch;           /* bumped by dns_shutdown */
static struct dns_sock socks[DNS_SOCKS];
static struct timer t_ares;      /* c-ares retransmissions and timeouts */
static struct timer t_kick;      /* deliveries and writes without an edge */
static struct dns_ticket *done_head, **done_tail = &done_head;

static void kick(void)
{
    /* Armed at a fresh clock reading, never at loop->now: a timer filed at
     * loop->now from inside a timer callback would run again in the same
     * pass over the heap, and a kick that re-kicks would never end. */
    if (!t_kick.armed)
        loop_timer_at(loop, &t_kick, loop_clock_ns());
}

/* Files the retransmission timer at c-ares's next deadline, or stops it when
 * nothing is in flight. ares_timeout truncates to whole milliseconds: one more
 * millisecond makes sure c-ares finds the deadline passed when the timer runs
 * (a timer that finds nothing due would be re-filed at "0 ms" and spin). */
static void arm_ares_timer(void)
{
    struct timeval tv;
    if (!up || !ares_timeout(channel, NULL, &tv)) {
        loop_timer_stop(loop, &t_ares);
        return;
    }
    uint64_t d = (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull + MS;
    loop_timer_at(loop, &t_ares, loop_clock_ns() + d);
}

static struct dns_sock *sock_find(int fd)
{
    for (unsigned i = 0; i < DNS_SOCKS; i++)
        if (socks[i].io.fd == fd)
            return &socks[i];
    return NULL;
}

/* True when the kernel holds bytes (or an error, or EOF) to read on fd. */
static bool still_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP));
}

/* Hands one wake-up of s to c-ares, then keeps reading while the kernel has
 * more (see the top of the file). s may be freed by c-ares on the way. */
static void sock_process(struct dns_sock *s, bool readable, bool writable)
{
    int fd = s->io.fd;
    unsigned gen = s->gen;
    if (writable)
        s->want_write = false;
    s->again = false;
    s->io.ready = 0;
    ares_process_fd(channel, readable ? fd : ARES_SOCKET_BAD, writable ? fd : ARES_SOCKET_BAD);
    for (unsigned n = 0;; n++) {
        if (s->gen != gen || s->io.fd != fd || !still_readable(fd))
            return;
        if (n == DNS_DRAIN_MAX) {
            s->again = true;
            kick();
            return;
        }
        ares_process_fd(channel, fd, ARES_SOCKET_BAD);
    }
}

static void on_sock_io(struct loop_io *io, uint32_t events)
{
    struct dns_sock *s = container_of(io, struct dns_sock, io);
    sock_process(s, events & (LOOP_READ | LOOP_HUP), events & LOOP_WRITE);
    arm_ares_timer();
}

/* c-ares opened a socket, changed what it waits for, or is about to close it
 * (both flags 0; it closes the descriptor itself right after). */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    (void)data;
    struct dns_sock *s = sock_find(fd);
    if (!readable && !writable) {
        if (!s)
            return;
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
        s->io.fd = -1;
        s->io.ready = 0;
        s->want_write = false;
        s->again = false;
        s->gen++;
        return;
    }
    if (!s) {
        s = sock_find(-1);
        if (!s) {
            log_error("error", "dns: more than %d resolver sockets; socket %d not watched",
                      DNS_SOCKS, fd);
            return;
        }
        int r = loop_add(loop, &s->io, fd, on_sock_io);
        if (r < 0) {
            s->io.fd = -1;
            log_error("error", "dns: cannot watch resolver socket %d: %s", fd, strerror(-r));
            return;
        }
    }
    if (writable) {
        s->want_write = true;
        kick();
    }
}

/* Refuses a socket when no slot is left to watch it (c-ares closes it and
 * treats the server as failed). */
static int on_sock_create(ares_socket_t fd, int type, void *data)
{
    (void)type;
    (void)data;
    return sock_find(fd) || sock_find(-1) ? ARES_SUCCESS : -1;
}

static int map_status(int status, unsigned naddrs)
{
    switch (status) {
    case ARES_SUCCESS:
        return naddrs ? 0 : -ENOENT;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
        return -ENOENT;
    case ARES_ETIMEOUT:
        return -ETIMEDOUT;
    default:
        return -EIO;
    }
}

/* ttl lowered to the TTL of a record that had `raw` (a negative or a
 * huge TTL reads as 0, as RFC 2181 section 8 says of the top bit). */
static void lower_ttl(uint32_t *ttl, long long raw)
{
    uint32_t v = raw < 0 || raw > 0x7fffffff ? 0 : (uint32_t)raw;
    if (v < *ttl)
        *ttl = v;
}

/* Copies up to DNS_MAX_ADDRS addresses of `family` from res into t, and
 * lowers t->ttl to theirs. */
static void take_family(struct dns_ticket *t, const struct ares_addrinfo *res, int family)
{
    for (const struct ares_addrinfo_node *n = res->nodes; n && t->naddrs < DNS_MAX_ADDRS;
         n = n->ai_next) {
        if (n->ai_family != family)
            continue;
        struct sockaddr_storage *ss = &t->addrs[t->naddrs];
        memset(ss, 0, sizeof *ss);
        if (family == AF_INET && n->ai_addrlen >= sizeof(struct sockaddr_in)) {
            struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
            memcpy(sin, n->ai_addr, sizeof *sin);
            sin->sin_port = t->port;
        } else if (family == AF_INET6 && n->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;
            memcpy(sin6, n->ai_addr, sizeof *sin6);
            sin6->sin6_port = t->port;
        } else {
            continue;
        }
        lower_ttl(&t->ttl, n->ai_ttl);
        t->naddrs++;
    }
}

/* Queues an answered ticket for delivery from the loop. */
static void queue_ticket(struct dns_ticket *t)
{
    t->next = NULL;
    *done_tail = t;
    done_tail = &t->next;
    kick();
}

static void free_ticket(struct dns_ticket *t)
{
    if (t)
        free(t->srv);
    free(t);
}

/* Unlinks a ticket from its (still pending) query, which becomes idle. */
static void ticket_release_query(struct dns_ticket *t)
{
    if (t->q && t->q->ticket == t)
        t->q->ticket = NULL;
    t->q = NULL;
}

/* c-ares's answer (or failure, or EDESTRUCTION from ares_destroy). Called from
 * inside c-ares, possibly from inside ares_getaddrinfo: only queues. */
static void on_ares_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct dns_ticket *t = arg;
    if (t->cancelled || shutting_down) {
        ticket_release_query(t);
        goto out_free_result;
    }
    t->ttl = UINT32_MAX;
    if (status == ARES_SUCCESS && res) {
        take_family(t, res, AF_INET);
        take_family(t, res, AF_INET6);
        for (const struct ares_addrinfo_cname *cn = res->cnames; cn && t->naddrs; cn = cn->next)
            lower_ttl(&t->ttl, cn->ttl);
    }
    t->status = map_status(status, t->naddrs);
    if (t->status < 0)
        t->ttl = 0;
    queue_ticket(t);
    t = NULL;   /* the delivery queue owns it now */

out_free_result:
    if (res)
        ares_freeaddrinfo(res);
    free_ticket(t);
}

/* The offset just past the domain name at m[o] (labels, or a compression
 * pointer that ends it), or 0 when it runs past len or is malformed. */
static size_t skip_name(const uint8_t *m, size_t len, size_t o)
{
    while (o < len) {
        uint8_t b = m[o];
        if (b == 0)
            return o + 1;
        if ((b & 0xc0) == 0xc0)
            return o + 2 <= len ? o + 2 : 0;
        if (b & 0xc0)
            return 0;
        o += 1u + b;
    }
    return 0;
}

/* The smallest TTL of the SRV records in the answer section of the DNS
 * message m (ares_parse_srv_reply gives none); UINT32_MAX when there is
 * none. The message was checked by ares_parse_srv_reply already; this walk
 * is bounded all the same. */
static uint32_t srv_ttl(const uint8_t *m, size_t len)
{
    uint32_t ttl = UINT32_MAX;
    if (len < 12)
        return ttl;
    unsigned qd = (unsigned)m[4] << 8 | m[5], an = (unsigned)m[6] << 8 | m[7];
    size_t o = 12;
    for (unsigned i = 0; i < qd && o; i++) {
        o = skip_name(m, len, o);
        o = o && o + 4 <= len ? o + 4 : 0;   /* type and class */
    }
    for (unsigned i = 0; i < an && o; i++) {
        o = skip_name(m, len, o);
        if (!o || o + 10 > len)
            break;
        unsigned type = (unsigned)m[o] << 8 | m[o + 1];
        uint32_t raw = (uint32_t)m[o + 4] << 24 | (uint32_t)m[o + 5] << 16 |
                       (uint32_t)m[o + 6] << 8 | m[o + 7];
        size_t rdlen = (size_t)m[o + 8] << 8 | m[o + 9];
        if (type == DNS_TYPE_SRV)
            lower_ttl(&ttl, raw);
        o = o + 10 + rdlen <= len ? o + 10 + rdlen : 0;
    }
    return ttl;
}

/* Keeps up to DNS_MAX_SRV records of list in t, sorted by priority (lowest
 * first), then weight (heaviest first); the "." target (no service) and
 * names too long are left out. */
static void take_srv(struct dns_ticket *t, const struct ares_srv_reply *list)
{
    t->srv = xcalloc(DNS_MAX_SRV, sizeof *t->srv);
    for (const struct ares_srv_reply *r = list; r; r = r->next) {
        size_t n = r->host ? strlen(r->host) : 0;
        if (!n || !strcmp(r->host, ".") || n >= DNS_NAME_MAX)
            continue;
        struct dns_srv rec = {.port = r->port, .priority = r->priority, .weight = r->weight};
        memcpy(rec.target, r->host, n + 1);
        unsigned at = t->nsrv;   /* insertion: after every record that sorts before it */
        while (at > 0 && (t->srv[at - 1].priority > rec.priority ||
                          (t->srv[at - 1].priority == rec.priority &&
                           t->srv[at - 1].weight < rec.weight)))
            at--;
        if (at == DNS_MAX_SRV)
            continue;
        unsigned last = t->nsrv < DNS_MAX_SRV ? t->nsrv : DNS_MAX_SRV - 1;
        memmove(&t->srv[at + 1], &t->srv[at], (last - at) * sizeof rec);
        t->srv[at] = rec;
        if (t->nsrv < DNS_MAX_SRV)
            t->nsrv++;
    }
}

/* c-ares's answer to an SRV query (raw, or EDESTRUCTION from ares_destroy).
 * Called from inside c-ares: only queues. */
static void on_ares_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns_ticket *t = arg;
    if (t->cancelled || shutting_down) {
        ticket_release_query(t);
        free_ticket(t);
        return;
    }
    if (status == ARES_SUCCESS && abuf && alen > 0) {
        struct ares_srv_reply *list = NULL;
        status = ares_parse_srv_reply(abuf, alen, &list);
        if (status == ARES_SUCCESS)
            take_srv(t, list);
        ares_free_data(list);
        t->ttl = t->nsrv ? srv_ttl(abuf, (size_t)alen) : 0;
        if (t->ttl == UINT32_MAX)
            t->ttl = 0;
    }
    t->status = map_status(status, t->nsrv);
    if (t->status < 0)
        t->ttl = 0;
    queue_ticket(t);
}

/* Delivers the answers queued so far (not those queued by the callbacks
 * themselves: they wait for the next kick, so a callback that resolves a name
 * answered at once cannot keep this loop going). */
static void deliver(void)
{
    struct dns_ticket *list = done_head;
    done_head = NULL;
    done_tail = &done_head;
    unsigned my_epoch = epoch;
    while (list) {
        struct dns_ticket *t = list;
        list = t->next;
        if (!t->cancelled && epoch == my_epoch) {
            ticket_release_query(t);
            if (t->srv_cb)
                t->srv_cb(t->arg, t->status, t->nsrv ? t->srv : NULL, t->nsrv, t->ttl);
            else
                t->cb(t->arg, t->status, t->naddrs ? t->addrs : NULL, t->naddrs, t->ttl);
        } else {
            ticket_release_query(t);   /* dns_shutdown from a callback: the rest is cancelled */
        }
        free_ticket(t);
    }
}

static void on_kick(struct timer *tm)
{
    (void)tm;
    for (unsigned i = 0; i < DNS_SOCKS && up; i++) {
        struct dns_sock *s = &socks[i];
        if (s->io.fd >= 0 && (s->want_write || s->again))
            sock_process(s, s->again, s->want_write);
    }
    deliver();
    arm_ares_timer();
}

static void on_ares_timer(struct timer *tm)
{
    (void)tm;
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_ares_timer();
}

int dns_init(struct loop *l, const struct dns_config *c)
{
    static const struct dns_config defaults;
    if (!c)
        c = &defaults;
    if (up) {
        log_error("error", "dns: already initialized");
        return -EALREADY;
    }
    if (c->servers && !c->servers[0]) {
        log_error("error", "dns: empty list of servers");
        return -EINVAL;
    }
    int r = ares_library_init(ARES_LIB_INIT_ALL);
    if (r != ARES_SUCCESS) {
        log_error("error", "dns: cannot initialize c-ares: %s", ares_strerror(r));
        return -EIO;
    }
    struct ares_options o;
    memset(&o, 0, sizeof o);
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    o.sock_state_cb = on_sock_state;
    o.timeout = (int)(c->try_ms ? c->try_ms : 500);
    o.tries = (int)(c->tries ? c->tries : 2);
    /* explicit servers: no /etc/hosts and no search domains, so the servers
     * answer every name exactly as asked */
    o.lookups = c->servers ? "b" : "fb";
    if (c->servers) {
        mask |= ARES_OPT_DOMAINS;
        o.domains = NULL;
        o.ndomains = 0;
    }
    for (unsigned i = 0; i < DNS_SOCKS; i++)
        socks[i] = (struct dns_sock){.io.fd = -1, .gen = socks[i].gen};
    loop = l;
    r = ares_init_options(&channel, &o, mask);
    if (r != ARES_SUCCESS) {
        log_error("error", "dns: cannot create the resolver: %s", ares_strerror(r));
        r = r == ARES_ENOMEM ? -ENOMEM : -EIO;
        goto out_cleanup_library;
    }
    if (c->servers) {
        r = ares_set_servers_ports_csv(channel, c->servers);
        if (r != ARES_SUCCESS) {
            log_error("error", "dns: bad list of servers \"%s\": %s", c->servers,
                      ares_strerror(r));
            r = r == ARES_ENOMEM ? -ENOMEM : -EINVAL;
            goto out_destroy_channel;
        }
    }
    ares_set_socket_callback(channel, on_sock_create, NULL);
    timer_init(&t_ares, on_ares_timer);
    timer_init(&t_kick, on_kick);
    up = true;
    return 0;

out_destroy_channel:
    ares_destroy(channel);   /* no query yet: no callback, no socket */
    channel = NULL;
out_cleanup_library:
    ares_library_cleanup();
    return r;
}

/* A ticket for a new query q of name: NULL and *err when it cannot start. */
static struct dns_ticket *ticket_new(struct dns_query *q, const char *name, void *arg, int *err)
{
    *err = !up ? -ENOTCONN : q->ticket ? -EBUSY : (!name || !name[0]) ? -EINVAL : 0;
    if (*err)
        return NULL;
    struct dns_ticket *t = xcalloc(1, sizeof *t);
    t->q = q;
    t->arg = arg;
    q->ticket = t;
    return t;
}

int dns_resolve(struct dns_query *q, const char *name, uint16_t port, dns_cb *cb, void *arg)
{
    int err;
    struct dns_ticket *t = ticket_new(q, name, arg, &err);
    if (!t)
        return err;
    t->cb = cb;
    t->port = htons(port);
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NOSORT;   /* we order the result: IPv4 first */
    ares_getaddrinfo(channel, name, NULL, &hints, on_ares_answer, t);
    arm_ares_timer();
    return 0;
}

int dns_srv(struct dns_query *q, const char *name, dns_srv_cb *cb, void *arg)
{
    int err;
    struct dns_ticket *t = ticket_new(q, name, arg, &err);
    if (!t)
        return err;
    t->srv_cb = cb;
    /* ares_search: the search domains of a system configuration apply as
     * to ares_getaddrinfo; explicit servers have none */
    ares_search(channel, name, DNS_CLASS_IN, DNS_TYPE_SRV, on_ares_srv, t);
    arm_ares_timer();
    return 0;
}

void dns_cancel(struct dns_query *q)
{
    struct dns_ticket *t = q->ticket;
    if (!t)
        return;
    t->cancelled = true;
    t->q = NULL;
    q->ticket = NULL;
}

bool dns_pending(const struct dns_query *q)
{
    return q->ticket != NULL;
}

void dns_shutdown(void)
{
    if (!up)
        return;
    shutting_down = true;
    ares_destroy(channel);   /* every query's callback runs with EDESTRUCTION */
    channel = NULL;
    shutting_down = false;
    up = false;
    epoch++;
    for (struct dns_ticket *t = done_head, *next; t; t = next) {
        next = t->next;
        ticket_release_query(t);
        free_ticket(t);
    }
    done_head = NULL;
    done_tail = &done_head;
    /* c-ares announced each close; a slot still in use would mean it did
     * not, and then the descriptor is closed already: only forget it. */
    for (unsigned i = 0; i < DNS_SOCKS; i++) {
        if (socks[i].io.fd >= 0)
            socks[i].gen++;
        socks[i].io.fd = -1;
        socks[i].want_write = false;
        socks[i].again = false;
    }
    loop_timer_stop(loop, &t_ares);
    loop_timer_stop(loop, &t_kick);
    ares_library_cleanup();
}
