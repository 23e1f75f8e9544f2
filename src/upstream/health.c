/* health.c -- active health checks (see health.h). */
#define _GNU_SOURCE
#include "health.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"
#include "conf.h"
#include "log.h"
#include "net.h"
#include "pool.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* One server's checker. Idle between checks (io.fd < 0, the timer set to the
 * next start), or checking (io.fd >= 0, the timer set to the deadline). */
struct checker {
    struct loop_io io;
    struct timer timer;
    struct pool_server *srv;
    const char *pool;              /* the pool's name */
    char *req;                     /* the request, built once */
    size_t req_len, sent;
    uint64_t interval_ns, timeout_ns;
    uint64_t started;              /* ns: start of the check in flight, or of the last */
    unsigned healthy, unhealthy;   /* thresholds */
    unsigned oks, fails;           /* in a row */
    bool connecting;               /* TCP connect, then the TLS handshake */
    bool tcp_open;
    uint8_t tls_want;
    SSL *ssl;                      /* the pool speaks TLS */
    size_t got;
    char line[HEALTH_LINE_MAX];
};

static struct loop *loop;
static struct checker *checkers;
static unsigned nchecks;
static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* ---------------------------------------------------------------- verdict */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

enum health_verdict health_status_line(const char *buf, size_t len, unsigned *status)
{
    /* "HTTP/d.d ddd": 'd' is a digit, anything else literal */
    static const char shape[] = "HTTP/d.d ddd";
    const size_t n = sizeof shape - 1;
    for (size_t i = 0; i < n && i < len; i++) {
        bool ok = shape[i] == 'd' ? is_digit(buf[i]) : buf[i] == shape[i];
        if (!ok)
            return HEALTH_MALFORMED;
    }
    if (len > n && buf[n] != ' ' && buf[n] != '\r' && buf[n] != '\n')
        return HEALTH_MALFORMED;   /* a fourth digit, or text glued to the code */
    if (len > 9 && buf[9] == '0')
        return HEALTH_MALFORMED;   /* 0xx is no status */
    /* the reason phrase: HTAB, SP, visible and obs-text bytes, up to (CR)LF */
    size_t i = n;
    for (; i < len && i < HEALTH_LINE_MAX; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n')
            break;
        if (c == '\r') {
            if (i + 1 < len && buf[i + 1] != '\n')
                return HEALTH_MALFORMED;   /* a bare CR */
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return HEALTH_MALFORMED;
    }
    if (i >= len || buf[i] != '\n')
        return i >= HEALTH_LINE_MAX ? HEALTH_MALFORMED : HEALTH_INCOMPLETE;
    unsigned code = (unsigned)(buf[9] - '0') * 100 + (unsigned)(buf[10] - '0') * 10 +
                    (unsigned)(buf[11] - '0');
    *status = code;
    return code >= 200 && code < 400 ? HEALTH_OK : HEALTH_BAD_STATUS;
}

/* ---------------------------------------------------------------- checks */

/* Ends the check in flight: counts its outcome, moves the server in or out of
 * service at the thresholds, and sets the timer to the next check. */
static void finish(struct checker *c, bool ok, const char *why)
{
    tls_free(c->ssl);
    c->ssl = NULL;
    loop_close(loop, &c->io);   /* removes it from epoll; the struct stays */
    struct pool_server *s = c->srv;
    if (ok) {
        c->fails = 0;
        if (c->oks < UINT32_MAX)
            c->oks++;
        if (s->down && c->oks >= c->healthy) {
            s->down = false;
            log_error("info", "upstream %s back up by health check of pool %s: "
                              "%u successful checks in a row",
                      s->addr->text, c->pool, c->oks);
        }
    } else {
        c->oks = 0;
        if (c->fails < UINT32_MAX)
            c->fails++;
        if (!s->down && c->fails >= c->unhealthy) {
            s->down = true;
            log_error("warn", "upstream %s marked down by health check of pool %s: %s "
                              "(%u failed checks in a row)",
                      s->addr->text, c->pool, why, c->fails);
        }
    }
    uint64_t next = c->started + c->interval_ns;
    loop_timer_at(loop, &c->timer, next > loop->now ? next : loop->now);
}

static void fail_errno(struct checker *c, const char *what, int err)
{
    char why[96];
    snprintf(why, sizeof why, "%s: %s", what, strerror(err));
    finish(c, false, why);
}

/* Reads what has come; true when the check ended. */
static bool read_status(struct checker *c)
{
    while (c->io.ready & LOOP_READ) {
        size_t room = sizeof c->line - c->got;
        ssize_t n = tls_or_read(c->io.fd, c->ssl, &c->tls_want, c->line + c->got, room);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->io.ready &= ~LOOP_READ;
                return false;
            }
            if (errno == EINTR)
                continue;
            fail_errno(c, "read", errno);
            return true;
        }
        if (n == 0) {
            finish(c, false, c->got ? "connection closed inside the status line"
                                    : "connection closed before any response byte");
            return true;
        }
        c->got += (size_t)n;
        unsigned status = 0;
        char why[64];
        switch (health_status_line(c->line, c->got, &status)) {
        case HEALTH_INCOMPLETE:
            continue;   /* the line is judged at HEALTH_LINE_MAX bytes at the latest */
        case HEALTH_MALFORMED:
            finish(c, false, "malformed status line");
            return true;
        case HEALTH_BAD_STATUS:
            snprintf(why, sizeof why, "status %u", status);
            finish(c, false, why);
            return true;
        case HEALTH_OK:
            finish(c, true, NULL);
            return true;
        }
    }
    return false;
}

/* Moves the check on as far as the socket allows. */
static void progress(struct checker *c)
{
    if (c->connecting && !c->tcp_open) {
        if (!(c->io.ready & (LOOP_WRITE | LOOP_HUP)))
            return;
        int err = net_socket_error(c->io.fd);
        if (err) {
            fail_errno(c, "connect", err);
            return;
        }
        c->tcp_open = true;
    }
    if (c->connecting && c->ssl) {
        char why[192], tmp[160];
        int r = tls_handshake(c->ssl, &c->io.ready, tmp, sizeof tmp);
        if (r == 0)
            return;
        if (r < 0) {
            snprintf(why, sizeof why, "TLS handshake: %s", tmp);
            finish(c, false, why);
            return;
        }
    }
    c->connecting = false;
    while (c->sent < c->req_len && (c->io.ready & LOOP_WRITE)) {
        struct iovec iov = {c->req + c->sent, c->req_len - c->sent};
        ssize_t n = tls_or_writev(c->io.fd, c->ssl, &iov, 1);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->io.ready &= ~LOOP_WRITE;
                break;
            }
            if (errno == EINTR)
                continue;
            fail_errno(c, "send", errno);
            return;
        }
        c->sent += (size_t)n;
        if (c->sent < c->req_len)
            c->io.ready &= ~LOOP_WRITE;   /* a short write: the buffer is full */
    }
    /* A server may answer (say, 503) before it has read the whole request. */
    read_status(c);
}

static void on_io(struct loop_io *io, uint32_t events)
{
    struct checker *c = container_of(io, struct checker, io);
    tls_rearm(&c->tls_want, &c->io.ready, events, LOOP_READ, LOOP_WRITE);
    progress(c);
}

static void start_check(struct checker *c)
{
    c->started = loop->now;
    c->sent = 0;
    c->got = 0;
    c->connecting = true;
    c->tcp_open = false;
    c->tls_want = 0;
    int fd = net_connect((const struct sockaddr *)&c->srv->addr->ss, c->srv->addr->len);
    if (fd < 0) {
        fail_errno(c, "connect", -fd);
        return;
    }
    int r = loop_add(loop, &c->io, fd, on_io);
    if (r < 0) {
        c->io.fd = fd;   /* loop_close closes it */
        fail_errno(c, "epoll", -r);
        return;
    }
    struct tls_client *tls = c->srv->group->tls;
    if (tls && !(c->ssl = tls_client_conn(tls, fd, c->srv->tls_host, &c->srv->tls_session))) {
        fail_errno(c, "TLS", ENOMEM);
        return;
    }
    loop_timer_at(loop, &c->timer, c->started + c->timeout_ns);
    /* the connect's outcome (or its writability) arrives as an event */
}

static void on_timer(struct timer *t)
{
    struct checker *c = container_of(t, struct checker, timer);
    if (c->io.fd < 0) {
        start_check(c);
        return;
    }
    char why[64];
    snprintf(why, sizeof why, "no %s within %llu ms",
             c->connecting ? "connection" : c->sent < c->req_len ? "room for the request"
                                                                 : "status line",
             (unsigned long long)(c->timeout_ns / MS));
    finish(c, false, why);
}

/* ---------------------------------------------------------------- set-up */

static void checker_init(struct checker *c, struct pool_server *s, const struct conf_pool *cp)
{
    const struct conf_active *a = &cp->active;
    static const char fmt[] = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hourglass-health\r\n"
                              "Connection: close\r\n\r\n";
    *c = (struct checker){.srv = s, .pool = cp->name};
    c->io.fd = -1;
    c->interval_ns = a->interval_ms * MS;
    c->timeout_ns = (a->timeout_ms < a->interval_ms ? a->timeout_ms : a->interval_ms) * MS;
    c->healthy = a->healthy ? a->healthy : 1;
    c->unhealthy = a->unhealthy ? a->unhealthy : 1;
    int n = snprintf(NULL, 0, fmt, a->path, s->addr->text);
    c->req = xmalloc((uint64_t)n + 1);
    snprintf(c->req, (size_t)n + 1, fmt, a->path, s->addr->text);
    c->req_len = (size_t)n;
    timer_init(&c->timer, on_timer);
    /* the first check at random within the first interval, so that servers
     * (and pools) do not all check in step */
    c->started = loop->now;
    loop_timer_at(loop, &c->timer, loop->now + rnd64() % (c->interval_ns ? c->interval_ns : 1));
}

int health_init(struct loop *l, const struct cfg *cfg)
{
    const struct conf *cf = cfg->conf;
    loop = l;
    rng ^= loop_clock_ns();
    if (!rng)
        rng = 1;
    nchecks = 0;
    if (!cf)
        return 0;
    unsigned total = 0;
    for (unsigned i = 0; i < cf->npools; i++) {
        const struct conf_pool *cp = &cf->pools[i];
        struct pool_group *g = cp->active.enabled && cp->active.path
                                   ? pool_group_find(cp->name) : NULL;
        if (g)
            total += g->nservers;
    }
    if (!total)
        return 0;
    checkers = xcalloc(total, sizeof *checkers);
    for (unsigned i = 0; i < cf->npools; i++) {
        const struct conf_pool *cp = &cf->pools[i];
        struct pool_group *g = cp->active.enabled && cp->active.path
                                   ? pool_group_find(cp->name) : NULL;
        for (unsigned k = 0; g && k < g->nservers; k++)
            checker_init(&checkers[nchecks++], &g->servers[k], cp);
    }
    return 0;
}

void health_stop(void)
{
    for (unsigned i = 0; i < nchecks; i++) {
        struct checker *c = &checkers[i];
        tls_free(c->ssl);
        if (c->io.fd >= 0)
            loop_close(loop, &c->io);
        loop_timer_stop(loop, &c->timer);
        free(c->req);
    }
    free(checkers);
    checkers = NULL;
    nchecks = 0;
}
