/* health.c -- active health checks (see health.h). */
#define _GNU_SOURCE
#include "health.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "poolshm.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* One server's checker (one per slot of a pool with active checks). Idle
 * between checks (conn.io.fd < 0, the timer set to the next start),
 * checking (conn.io.fd >= 0, the timer set to the deadline), or stopped
 * while its slot is not in service (the timer stopped, req NULL). */
struct checker {
    struct conn conn;              /* opening until connected (and TLS) */
    struct timer timer;
    struct pool_server *srv;
    const char *pool;              /* the pool's name */
    char *req;                     /* the request, built when the checker starts */
    size_t req_len, sent;
    uint64_t interval_ns, timeout_ns;
    uint64_t started;              /* ns: start of the check in flight, or of the last */
    unsigned healthy, unhealthy;   /* thresholds */
    unsigned oks, fails;           /* in a row */
    size_t got;
    char line[HEALTH_LINE_MAX];
    /* an HTTP/2 pool: the check is a stream of a session of its own */
    bool h2;
    nghttp2_session *ng;           /* while a check is in flight */
    int h2_status;                 /* the response's :status; 0 none yet */
    const char *path;
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
    conn_close(&c->conn, loop);   /* removes it from epoll; the struct stays */
    if (c->ng) {
        nghttp2_session_del(c->ng);
        c->ng = NULL;
    }
    struct pool_server *s = c->srv;
    if (ok) {
        c->fails = 0;
        if (c->oks < UINT32_MAX)
            c->oks++;
        if (pool_is_down(s) && c->oks >= c->healthy) {
            pool_set_down(s, false);
            log_error("info", "upstream %s back up by health check of pool %s: "
                              "%u successful checks in a row",
                      s->addr->text, c->pool, c->oks);
        }
    } else {
        c->oks = 0;
        if (c->fails < UINT32_MAX)
            c->fails++;
        if (!pool_is_down(s) && c->fails >= c->unhealthy) {
            pool_set_down(s, true);
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

/* ---- HTTP/2 pools: the same check as a stream of a session of its own ---- */

static int h2_on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                        size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)ng;
    (void)flags;
    struct checker *c = ud;
    if (f->hd.type == NGHTTP2_HEADERS && f->hd.stream_id == 1 && nl == 7 &&
        !memcmp(name, ":status", 7) && vl == 3) {
        int st = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        if (st >= 200)   /* (an interim 1xx is not the answer) */
            c->h2_status = st;
    }
    return 0;
}

/* The preface, SETTINGS and the GET as bytes to send: c->req. 0 or -1. */
static int h2_request(struct checker *c)
{
    static nghttp2_session_callbacks *cbs;
    if (!cbs) {
        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    }
    if (nghttp2_session_client_new(&c->ng, cbs, c) != 0)
        return -1;
    const char *scheme = c->srv->group->tls ? "https" : "http", *auth = c->srv->addr->text;
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)scheme, 7, strlen(scheme), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)auth, 10, strlen(auth), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)c->path, 5, strlen(c->path), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"user-agent", (uint8_t *)"hourglass-health", 10, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, NULL, 0);
    if (nghttp2_submit_request(c->ng, NULL, nv, sizeof nv / sizeof nv[0], NULL, NULL) < 0)
        return -1;
    free(c->req);
    c->req = NULL;
    c->req_len = 0;
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(c->ng, &p)) > 0) {
        char *r = realloc(c->req, c->req_len + (size_t)n);
        if (!r)
            return -1;
        memcpy(r + c->req_len, p, (size_t)n);
        c->req = r;
        c->req_len += (size_t)n;
    }
    return n < 0 ? -1 : 0;
}

/* One read of the check's connection: the bytes read (> 0), 0 when there
 * are none now, or -1 when the check ended (a read error, or the end of
 * stream, which fails it for eof_why). */
static ssize_t check_read(struct checker *c, void *buf, size_t len, const char *eof_why)
{
    ssize_t n = conn_read(&c->conn, buf, len);
    if (n == -EAGAIN)
        return 0;
    if (n < 0) {
        fail_errno(c, "read", (int)-n);
        return -1;
    }
    if (n == 0) {
        finish(c, false, eof_why);
        return -1;
    }
    return n;
}

/* Reads frames until the response's :status; true when the check ended. */
static bool h2_read_status(struct checker *c)
{
    uint8_t buf[4096];
    while (c->conn.io.ready & LOOP_READ) {
        ssize_t n = check_read(c, buf, sizeof buf, "connection closed before the response head");
        if (n <= 0)
            return n < 0;
        if (nghttp2_session_mem_recv(c->ng, buf, (size_t)n) < 0) {
            finish(c, false, "malformed HTTP/2 response");
            return true;
        }
        if (c->h2_status) {
            char why[64];
            bool ok = c->h2_status >= 200 && c->h2_status < 400;
            snprintf(why, sizeof why, "status %d", c->h2_status);
            finish(c, ok, ok ? NULL : why);
            return true;
        }
    }
    return false;
}

/* Reads what has come; true when the check ended. */
static bool read_status(struct checker *c)
{
    if (c->h2)
        return h2_read_status(c);
    while (c->conn.io.ready & LOOP_READ) {
        size_t room = sizeof c->line - c->got;
        ssize_t n = check_read(c, c->line + c->got, room,
                               c->got ? "connection closed inside the status line"
                                      : "connection closed before any response byte");
        if (n <= 0)
            return n < 0;
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
    if (c->conn.opening) {
        char why[192], tmp[160];
        int r = conn_open_step(&c->conn, tmp, sizeof tmp);
        if (r == 0)
            return;
        if (r < 0 && (c->conn.opening & CONN_OPEN_TCP)) {
            fail_errno(c, "connect", -r);
            return;
        }
        if (r < 0) {
            snprintf(why, sizeof why, "TLS handshake: %s", tmp);
            finish(c, false, why);
            return;
        }
    }
    while (c->sent < c->req_len && (c->conn.io.ready & LOOP_WRITE)) {
        struct iovec iov = {c->req + c->sent, c->req_len - c->sent};
        ssize_t n = conn_writev(&c->conn, &iov, 1);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            fail_errno(c, "send", (int)-n);
            return;
        }
        c->sent += (size_t)n;
    }
    /* A server may answer (say, 503) before it has read the whole request. */
    read_status(c);
}

static void on_io(struct loop_io *io, uint32_t events)
{
    struct checker *c = container_of(io, struct checker, conn.io);
    conn_rearm(&c->conn, events);
    progress(c);
}

static void start_check(struct checker *c)
{
    c->started = loop->now;
    c->sent = 0;
    c->got = 0;
    c->h2_status = 0;
    if (c->h2 && h2_request(c) < 0) {
        finish(c, false, "cannot build the HTTP/2 request");
        return;
    }
    const struct cli_addr *a = c->srv->addr;
    int r = conn_connect(&c->conn, loop, (const struct sockaddr *)&a->ss, a->len, on_io);
    if (r < 0 && net_local_exhausted(r)) {
        /* no socket here (out of descriptors...): the server was not
         * asked, so this check says nothing of it; the next one will */
        static struct log_every warn;
        unsigned long held;
        if (log_every(&warn, loop->now, 10000 * MS, &held))
            log_error("warn", "health check of %s in pool %s skipped: %s (%lu more since the "
                              "last such message)", a->text, c->pool, strerror(-r), held);
        loop_timer_at(loop, &c->timer, c->started + c->interval_ns);
        return;
    }
    if (r < 0) {
        fail_errno(c, "connect", -r);
        return;
    }
    struct tls_client *tls = c->srv->group->tls;
    if (tls && conn_tls_client(&c->conn, tls, c->srv->tls_host, &c->srv->tls_session) < 0) {
        fail_errno(c, "TLS", ENOMEM);
        return;
    }
    loop_timer_at(loop, &c->timer, c->started + c->timeout_ns);
    /* the connect's outcome (or its writability) arrives as an event */
}

static void on_timer(struct timer *t)
{
    struct checker *c = container_of(t, struct checker, timer);
    if (c->conn.io.fd < 0) {
        start_check(c);
        return;
    }
    char why[64];
    snprintf(why, sizeof why, "no %s within %llu ms",
             c->conn.opening ? "connection" : c->sent < c->req_len ? "room for the request"
                                                                 : "status line",
             (unsigned long long)(c->timeout_ns / MS));
    finish(c, false, why);
}

/* ---------------------------------------------------------------- set-up */

/* Starts checking c's server (now in service at its address): the request
 * built anew, the counts from zero (the server is up until checks say
 * otherwise), the first check at random within the first interval, so that
 * servers (and pools) do not all check in step. */
static void checker_start(struct checker *c)
{
    static const char fmt[] = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hourglass-health\r\n"
                              "Connection: close\r\n\r\n";
    const char *host = c->srv->addr->text;
    int n = snprintf(NULL, 0, fmt, c->path, host);
    free(c->req);
    c->req = xmalloc((uint64_t)n + 1);
    snprintf(c->req, (size_t)n + 1, fmt, c->path, host);
    c->req_len = (size_t)n;
    c->oks = c->fails = 0;
    c->started = loop->now;
    loop_timer_at(loop, &c->timer, loop->now + rnd64() % (c->interval_ns ? c->interval_ns : 1));
}

/* Stops c: the check in flight closed, no timer, no request. Safe twice. */
static void checker_stop(struct checker *c)
{
    conn_close(&c->conn, loop);
    if (c->ng)
        nghttp2_session_del(c->ng);
    c->ng = NULL;
    loop_timer_stop(loop, &c->timer);
    free(c->req);
    c->req = NULL;
    c->req_len = 0;
}

static void checker_init(struct checker *c, struct pool_server *s, const struct conf_pool *cp)
{
    const struct conf_active *a = &cp->active;
    *c = (struct checker){.srv = s, .pool = cp->name, .h2 = cp->h2, .path = a->path};
    c->conn.io.fd = -1;
    c->interval_ns = a->interval_ms * MS;
    c->timeout_ns = (a->timeout_ms < a->interval_ms ? a->timeout_ms : a->interval_ms) * MS;
    c->healthy = a->healthy ? a->healthy : 1;
    c->unhealthy = a->unhealthy ? a->unhealthy : 1;
    timer_init(&c->timer, on_timer);
    if (s->state == POOL_SLOT_IN_SERVICE)
        checker_start(c);
}

static struct checker *checker_of(const struct pool_server *s)
{
    for (unsigned i = 0; i < nchecks; i++)
        if (checkers[i].srv == s)
            return &checkers[i];
    return NULL;
}

void health_server_start(struct pool_server *s)
{
    struct checker *c = checker_of(s);
    if (c) {
        checker_stop(c);
        checker_start(c);
    }
}

void health_server_stop(struct pool_server *s)
{
    struct checker *c = checker_of(s);
    if (c)
        checker_stop(c);
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
    /* One worker of a generation checks (its verdicts are every worker's,
     * poolshm.h); a server whose record is not shared is checked by each. */
    unsigned total = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < cf->npools; i++) {
            const struct conf_pool *cp = &cf->pools[i];
            struct pool_group *g = cp->active.enabled && cp->active.path
                                       ? pool_group_find(cp->name) : NULL;
            for (unsigned k = 0; g && k < g->nservers; k++) {
                struct pool_server *srv = &g->servers[k];
                if (!psh_checker() && srv->h != &srv->own_health)
                    continue;
                if (pass == 0)
                    total++;
                else
                    checker_init(&checkers[nchecks++], srv, cp);
            }
        }
        if (!total)
            return 0;
        if (pass == 0)
            checkers = xcalloc(total, sizeof *checkers);
    }
    return 0;
}

void health_stop(void)
{
    for (unsigned i = 0; i < nchecks; i++)
        checker_stop(&checkers[i]);
    free(checkers);
    checkers = NULL;
    nchecks = 0;
}
