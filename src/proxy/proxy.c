/* proxy.c -- listeners, client connections and the exchange state machine.
 *
 * Every event on a client or on its upstream connection runs pump(), which
 * advances whatever can advance (read the request, send it upstream, read the
 * response, send it to the client) until nothing moves, then folds the
 * deadlines that apply in the new state into the connection's one timer.
 * Clocks are recomputed from state, not started and stopped by hand, so a
 * clock cannot be left running by a forgotten path:
 *
 *   header   state HEAD: from the first byte of the request head
 *   idle     state IDLE: from the end of the previous exchange
 *   total    state EXCH: from the moment the request head arrived
 *   connect  while the upstream connection is being opened
 *   write    while request bytes are held that the upstream will not take
 *            (a budget spent across the exchange, paused otherwise)
 *   read     while the whole request is sent, the response is incomplete and
 *            there is room for its bytes; restarted by every read
 *   body     while request body bytes are wanted and there is room for them
 *   send     while response bytes wait for a client that does not take them
 *
 * Cancellation is exchange_fail(): the one path that closes the upstream
 * connection (never pooled), answers 5xx/408 or cuts the client, and logs. */
#define _GNU_SOURCE
#include "proxy.h"

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

#include "buf.h"
#include "conf.h"
#include "fwd.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "relay.h"
#include "route.h"
#include "stats.h"
#include "addr.h"
#include "auth.h"
#include "dns.h"
#include "admin.h"
#include "tmo.h"
#include "tls.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

#define LINGER_NS (2000 * MS)          /* discard input after an error reply */
#define LINGER_MAX_BYTES (1u << 20)    /* ... and at most this much of it */
#define ACCEPT_RETRY_NS (100 * MS)     /* after EMFILE */

/* Body bytes handed to the kernel per sendmsg. Measured on loopback, 1 MiB
 * responses: 64 KiB writes cost 0.50 s of CPU per GiB relayed, 32 KiB writes
 * 0.24 (nginx, same run: 0.29). Reads stay at up to 64 KiB. */
#define SEND_SLICE (32u * 1024)

enum cstate { CS_IDLE, CS_HEAD, CS_EXCH, CS_CLOSING, CS_TUNNEL, CS_CLOSED };

/* Exchange flags. */
#define X_BODY_DONE    0x00001u  /* whole request body received and checked */
#define X_REQ_SENT     0x00002u  /* request head and body handed to the upstream */
#define X_RESP_HEAD    0x00004u  /* final response head parsed */
#define X_RESP_DONE    0x00008u  /* whole response body received */
#define X_FINAL_SENT   0x00010u  /* a byte of the final response reached the client */
#define X_UP_EOF       0x00020u  /* upstream closed its side */
#define X_NO_REUSE     0x00040u  /* the upstream connection must not be pooled */
#define X_CLOSE_AFTER  0x00080u  /* close the client connection after this response */
#define X_EXPECT       0x00100u  /* client awaits 100 Continue */
#define X_CONTINUE     0x00200u  /* 100 Continue queued */
#define X_DECHUNK      0x00400u  /* decode a chunked response for an HTTP/1.0 client */
#define X_HEAD_METHOD  0x00800u
#define X_IDEMPOTENT   0x01000u
#define X_GOT_BYTE     0x02000u  /* some response byte came from the upstream */
#define X_ABANDON_BODY 0x04000u  /* upstream answered early: stop sending the body */
#define X_LINGER       0x08000u  /* CLOSING: output done, write side shut */
#define X_LOGGED       0x10000u  /* the access log line is written */
#define X_SPLICE_OK    0x20000u  /* the body may go through a pipe (splice) */
#define X_SPLICE       0x40000u  /* ... and now does: uin is no longer used */
#define X_KEEP_BODY    0x80000u  /* the request body stays in `in` for a retry */
#define X_COUNTED     0x100000u  /* counted in its pool's requests in flight */
#define X_RETRIED     0x200000u  /* counted in its pool's retries in flight */
#define X_HEDGED      0x400000u  /* a hedged attempt was sent (or could not be) */
#define X_HEAD_QUEUED 0x800000u  /* uin holds a head read by the hedge: parse it */
#define X_WAIT_SLOT  0x1000000u  /* waiting for a free connection of its pool */
#define X_CLIENT_DEADLINE 0x2000000u  /* total capped by a trusted client's header */
#define X_UPGRADE    0x4000000u  /* a WebSocket upgrade: a 101 turns it into a tunnel */
#define X_FORWARD    0x8000000u  /* forward proxy: the destination is the client's */
#define X_CONNECT   0x10000000u  /* ... a CONNECT: a tunnel once connected */
#define X_RESOLVING 0x20000000u  /* ... its name is being resolved (TMO_DNS) */

/* Tunnel flags (exch.tflags): which end has finished its direction. */
#define T_CEOF  0x1u   /* the client sent its end of stream */
#define T_UEOF  0x2u   /* the upstream did */
#define T_USHUT 0x4u   /* ... passed on: write side of the upstream shut */
#define T_CSHUT 0x8u   /* ... write side of the client shut */

/* Of the time left, this much is kept for this hop (relaying the answer)
 * when the rest is passed on: the next hop times out first. */
#define DEADLINE_HOP_MARGIN_MS 5

/* Content-Length bodies at least this large are spliced, not copied.
 * Measured on loopback, CPU per GiB relayed: 1 MiB bodies, copy 0.25 s and
 * splice 0.27 (setting up the pipe does not pay); 64 MiB bodies, copy 0.41
 * and splice 0.36 (nginx, same run: 0.29 and 0.40). */
#define SPLICE_MIN (4u * 1024 * 1024)

/* The state of one exchange; zeroed when the next one starts. */
struct exch {
    uint32_t flags;
    uint32_t head_len;                 /* request head at in.start */
    uint32_t method_len, target_off, target_len;
    uint32_t body_sent, body_ready;    /* offsets in in.data */
    uint32_t uhead_off;                /* bytes of uhead sent */
    uint32_t resp_ready;               /* offset in uin.data: validated, unsent */
    uint32_t interim;                  /* bytes of out holding 1xx heads */
    uint32_t parsed_len;               /* head bytes seen by the last parse */
    uint32_t discarded;                /* lingering: input bytes thrown away */
    uint8_t req_framing, resp_framing;
    int status;                        /* of the final response */
    unsigned attempts;
    uint64_t req_left, resp_left;
    struct http_chunked req_chunk, resp_chunk;
    uint64_t bytes_sent;
    uint64_t t_start;                  /* request head complete */
    uint64_t t_connect;                /* connect started */
    int64_t connect_ns, first_byte_ns; /* -1: not applicable */
    uint64_t read_mark, body_mark, send_mark;
    uint64_t write_since, write_used;
    const struct route *route;         /* NULL until the head is checked */
    const struct pool_server *avoid;   /* the server of the failed attempt */
    uint64_t try_start;                /* this attempt began (per-try timeout) */
    uint64_t backoff_until;            /* waiting before the next attempt */
    uint64_t client_total_ms;          /* with X_CLIENT_DEADLINE */
    uint64_t bytes_in;                 /* request bytes received from the client */
    int64_t sent_ns;                   /* whole request handed over; -1: not yet */
    uint32_t deadline_at;              /* uhead offset of the deadline value; 0: none */
    uint8_t tflags;                    /* T_*, in state TUNNEL */
    uint64_t t_dns;                    /* resolving began */
    uint64_t t_tunnel, t_active;       /* tunnel began; last byte either way */
};

/* What a connection holds only while a request is in flight (states HEAD,
 * EXCH and CLOSING): recycled through a free list, so that an idle
 * keep-alive connection costs a struct client and nothing more. */
struct session {
    struct buf out;    /* bytes for the client before the body: heads, errors */
    struct buf uhead;  /* the request head for the upstream (kept for a retry) */
    struct buf uin;    /* bytes from the upstream */
    struct relay relay;  /* the response body's pipe, in splice mode */
    struct upconn *hedge;            /* a second attempt racing `up` for the head */
    struct pool_server *hedge_srv;
    struct buf hin;                  /* the hedge's response bytes */
    uint32_t hedge_off;              /* bytes of uhead sent on the hedge */
    struct client *wait_next, *wait_prev;   /* in its pool's FIFO (X_WAIT_SLOT) */
    struct upconn *up;
    struct pool_server *srv;
    struct tmo_set tmo;
    struct exch x;
    struct session *next_free;
    /* forward proxy: where this request goes (an ad-hoc server of the
     * "forward" group, never pooled) */
    struct pool_server fsrv;
    struct cli_addr faddr;
    struct dns_query dns;
    char fhost[256];                 /* the name to resolve, lower case */
    uint16_t fport;
};

struct client {
    struct loop_io io;
    struct timer timer;
    struct loop_defer defer;
    struct client *next, *prev;
    struct buf in;     /* bytes from the client; the request head stays at in.start */
    struct session *s; /* NULL exactly when IDLE (or CLOSED) */
    uint64_t t_first;  /* IDLE: idle since; HEAD: first byte; CLOSING: linger start */
    uint8_t state;
    uint8_t minor;     /* the client's HTTP minor version */
    uint8_t cflags;    /* CF_* */
    uint8_t tls_want;  /* TLS_READ_WANTS_WRITE */
    SSL *ssl;          /* TLS listeners */
    union {            /* the peer's address, formatted only when needed */
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer;
};

#define CF_TRUSTED 0x1u   /* its listener honours the client's deadline header */
#define CF_SERVED  0x2u   /* has had a response: idle means between requests */
#define CF_FORWARD 0x4u   /* came in on a forward proxy listener */
#define CF_HANDSHAKE 0x8u /* TLS: the handshake is not done (state IDLE) */
#define CF_SEALED  0x10u  /* TLS: queued bytes are sealed in a record not yet sent */
#define CF_UNDERSCORES 0x20u /* its listener passes on fields named with '_' */

struct listener {
    struct loop_io io;
    const struct cli_addr *addr;
    bool trust_deadline;
    bool forward;
    bool underscores;
    struct tls_server *tls;   /* TLS listener: its certificates; NULL: plain */
};

/* The forward proxy's destinations: one ad-hoc server per request, in a
 * group of its own that never ejects, pools or limits. */
static struct pool_group forward_group = {
    .name = "forward", .fail_limit = ~0u, .max_ejection_ns = 0, .budget_min = 0,
};
static struct route forward_route;
static struct auth *proxy_auth;

static struct loop *loop;
static const struct cfg *cfg;
static struct listener listeners[CLI_MAX_LISTEN];
static unsigned nlisteners;
static struct client *clients;       /* every open client */
static struct client *free_clients;  /* recycled structs */
static struct session *free_sessions;
static unsigned nfree_sessions;
#define SESSIONS_KEEP 256   /* spare sessions kept after a burst */
static unsigned nclients;
static bool accept_paused;
static struct timer accept_retry;
static struct timer trim_timer;      /* gives back buffers a burst left spare */
static struct timer drain_timer;     /* SIGTERM: the end of the drain */
static bool draining;
#define DRAIN_GRACE_NS (1000 * MS)   /* a new connection's first request, while draining */
#define TRIM_NS (1000 * MS)
static struct http_msg scratch;      /* the head being parsed (single-threaded) */
static struct http_limits limits;    /* request head limits from the flags */
static struct http_limits resp_limits; /* response head limits */

/* A read shorter than asked drained the socket: the next edge will say when
 * there is more. Not so when the peer has hung up: the end of stream has not
 * been read yet, and no further edge will come for it. */
static void read_was_short(struct loop_io *io)
{
    if (!(io->ready & LOOP_HUP))
        io->ready &= ~LOOP_READ;
}

/* read(2) and sendmsg(2) on the client connection, TLS or not. */
static ssize_t client_read(struct client *c, void *buf, size_t len)
{
    return tls_or_read(c->io.fd, c->ssl, &c->tls_want, buf, len);
}

static ssize_t client_writev(struct client *c, const struct iovec *iov, int n)
{
    if (c->ssl) {
        /* A write that stops short leaves the next bytes sealed in a record
         * that will go out as they are: they can no longer be taken back. */
        size_t want = 0;
        for (int i = 0; i < n; i++)
            want += iov[i].iov_len;
        ssize_t r = tls_writev(c->ssl, iov, n);
        if (r < 0 ? errno == EAGAIN : (size_t)r < want)
            c->cflags |= CF_SEALED;
        else
            c->cflags &= ~CF_SEALED;
        return r;
    }
    return tls_or_writev(c->io.fd, NULL, iov, n);
}

/* Ends this side's stream cleanly: a close_notify over TLS, then the TCP
 * write side. Only for a clean end, never for a cancelled exchange. */
static void shut_write(int fd, SSL *ssl)
{
    tls_close_notify(ssl);
    shutdown(fd, SHUT_WR);
}

/* The timeouts in force: the route's, or the command line's before a route
 * is chosen (an error answered to an unparseable head). */
static struct route_policy default_policy;

static const struct route_policy *policy(const struct client *c)
{
    return c->s->x.route ? &c->s->x.route->policy : &default_policy;
}

/* The total deadline: the route's, or less when a trusted client said so. */
static uint64_t total_ms(const struct client *c)
{
    uint64_t t = policy(c)->ms[TMO_TOTAL];
    if ((c->s->x.flags & X_CLIENT_DEADLINE) && c->s->x.client_total_ms < t)
        t = c->s->x.client_total_ms;
    return t;
}

static uint64_t ns_of(uint64_t ms) { return ms * MS; }
static int64_t ms_of(uint64_t ns) { return (int64_t)(ns / MS); }

static void pump(struct client *c);
static void accept_all(void);
static int upstream_connect(struct client *c, bool allow_pooled);
static bool retry_allowed(struct client *c, unsigned cls, int status);
static int retry_later(struct client *c, const char *why);
static void hedge_start(struct client *c);
static void hedge_promote(struct client *c, bool head);
static void stamp_deadline(struct client *c);
static int tunnel_end(struct client *c, const char *reason);
static int connect_established(struct client *c);
static void underscores_dropped(struct client *c, const struct http_msg *m, unsigned n);

/* A fresh exchange: timings that have not happened read as "-". */
static void exch_reset(struct exch *x)
{
    *x = (struct exch){0};
    x->connect_ns = x->first_byte_ns = x->sent_ns = -1;
}

/* Gives c a fresh session (entering HEAD from IDLE). */
static void session_attach(struct client *c)
{
    struct session *s = free_sessions;
    if (s) {
        free_sessions = s->next_free;
        nfree_sessions--;
    } else {
        s = xmalloc(sizeof *s);
    }
    *s = (struct session){0};
    exch_reset(&s->x);
    c->s = s;
}

/* Releases everything the session holds and recycles it (back to IDLE, or
 * closing). The upstream connection must already be pooled or closed. */
static void session_detach(struct client *c)
{
    struct session *s = c->s;
    if (!s)
        return;
    buf_release(&s->out);
    buf_release(&s->uhead);
    buf_release(&s->uin);
    buf_release(&s->hin);
    relay_close(&s->relay);
    c->s = NULL;
    if (nfree_sessions >= SESSIONS_KEEP) {
        free(s);
        return;
    }
    s->next_free = free_sessions;
    free_sessions = s;
    nfree_sessions++;
}

/* "127.0.0.1:40000": formatted when a log line needs it, not per connection. */
struct peer_text { char s[64]; };

static const char *peer_of(const struct client *c, struct peer_text *t)
{
    net_addr_text(&c->peer.sa, t->s, sizeof t->s);
    return t->s;
}

/* ---- client lifetime ---------------------------------------------------- */

static void release_client(struct loop_defer *d)
{
    struct client *c = container_of(d, struct client, defer);
    c->next = free_clients;
    free_clients = c;
}

/* The FIFO of requests waiting for a connection slot of their pool. */
static void wait_enqueue(struct client *c)
{
    struct pool_group *g = c->s->x.route->pool;
    struct client *tail = g->wait_tail;
    c->s->wait_next = NULL;
    c->s->wait_prev = tail;
    if (tail)
        tail->s->wait_next = c;
    else
        g->wait_head = c;
    g->wait_tail = c;
    c->s->x.flags |= X_WAIT_SLOT;
}

static void wait_dequeue(struct client *c)
{
    if (!c->s || !(c->s->x.flags & X_WAIT_SLOT))
        return;
    struct pool_group *g = c->s->x.route->pool;
    struct client *n = c->s->wait_next, *p = c->s->wait_prev;
    if (p)
        p->s->wait_next = n;
    else
        g->wait_head = n;
    if (n)
        n->s->wait_prev = p;
    else
        g->wait_tail = p;
    c->s->wait_next = c->s->wait_prev = NULL;
    c->s->x.flags &= ~X_WAIT_SLOT;
}

static void hedge_drop(struct client *c)
{
    if (c->s && c->s->hedge) {
        pool_close(c->s->hedge);
        c->s->hedge = NULL;
        buf_release(&c->s->hin);
    }
}

static void drop_upstream(struct client *c)
{
    if (c->s)
        dns_cancel(&c->s->dns);
    wait_dequeue(c);
    hedge_drop(c);
    if (c->s && c->s->up) {
        pool_close(c->s->up);
        c->s->up = NULL;
    }
    if (c->s)
        relay_close(&c->s->relay);
}

/* Closes the client connection at once and releases everything it holds.
 * The struct itself is recycled at the end of the loop iteration. */
static void client_close(struct client *c)
{
    if (c->state == CS_CLOSED)
        return;
    drop_upstream(c);
    session_detach(c);
    loop_timer_stop(loop, &c->timer);
    tls_free(c->ssl);   /* no close_notify: a clean end sends it before */
    c->ssl = NULL;
    loop_close(loop, &c->io);
    buf_release(&c->in);
    c->state = CS_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nclients--;
    loop_defer(loop, &c->defer, release_client);
}

static const char *method_of(const struct client *c, uint32_t *len)
{
    *len = c->s->x.method_len;
    return c->s->x.method_len ? c->in.data + c->in.start : NULL;
}

static void log_exchange(struct client *c, int status, const char *reason)
{
    if (c->s->x.flags & X_LOGGED)
        return;
    c->s->x.flags |= X_LOGGED;
    /* The exchange has ended (this runs once per exchange, on every path):
     * it no longer counts towards its pool's retry budget. */
    if (c->s->x.flags & X_COUNTED)
        c->s->x.route->pool->requests--;
    if (c->s->x.flags & X_RETRIED)
        c->s->x.route->pool->retries--;
    c->s->x.flags &= ~(X_COUNTED | X_RETRIED);
    {
        unsigned nr;
        const struct route *base = route_all(&nr);
        int ri = c->s->x.route && c->s->x.route != &forward_route
                     ? (int)(c->s->x.route - base) : -1;
        int64_t fb = c->s->x.first_byte_ns >= 0 ? ms_of((uint64_t)c->s->x.first_byte_ns) : -1;
        stats_exchange(ri, status, reason, fb);
    }
    if (!log_access_enabled())
        return;
    struct peer_text pt;
    struct log_entry e = {
        .client = peer_of(c, &pt),
        .status = status,
        .bytes = c->s->x.bytes_sent,
        .bytes_in = c->s->x.bytes_in ? c->s->x.bytes_in : c->s->x.head_len,
        .upstream = c->s->srv ? c->s->srv->addr->text : NULL,
        .attempts = c->s->x.attempts,
        .connect_ms = c->s->x.connect_ns >= 0 ? ms_of((uint64_t)c->s->x.connect_ns) : -1,
        .first_byte_ms = c->s->x.first_byte_ns >= 0 ? ms_of((uint64_t)c->s->x.first_byte_ns) : -1,
        .sent_ms = c->s->x.sent_ns >= 0 ? ms_of((uint64_t)c->s->x.sent_ns) : -1,
        .reason = reason,
    };
    e.method = method_of(c, &e.method_len);
    if (e.method) {
        e.target = c->in.data + c->in.start + c->s->x.target_off;
        e.target_len = c->s->x.target_len;
    }
    uint64_t since = c->s->x.t_start ? c->s->x.t_start : c->t_first;
    e.total_ms = ms_of(loop->now - since);
    log_access(&e);
}

/* "GET /path" for error log sentences (target cut at 200 bytes). */
static void describe(struct client *c, char *out, size_t n)
{
    struct peer_text pt;
    uint32_t ml;
    const char *m = method_of(c, &ml);
    if (!m) {
        snprintf(out, n, "client %s", peer_of(c, &pt));
        return;
    }
    uint32_t tl = c->s->x.target_len > 200 ? 200 : c->s->x.target_len;
    snprintf(out, n, "client %s, %.*s %.*s", peer_of(c, &pt), (int)ml, m, (int)tl,
             c->in.data + c->in.start + c->s->x.target_off);
}

/* Queues a short plain-text error response and moves to CLOSING: the client
 * gets the response, then the connection is shut and its input drained. */
static void respond_error_ex(struct client *c, int status, const char *reason,
                             const char *detail, const char *extra);

static void respond_error(struct client *c, int status, const char *reason, const char *detail)
{
    respond_error_ex(c, status, reason, detail, "");
}

/* extra: more header lines, each ending in CRLF ("" for none). */
static void respond_error_ex(struct client *c, int status, const char *reason,
                             const char *detail, const char *extra)
{
    char body[256];
    int bl = snprintf(body, sizeof body, "%d %s: %s\n", status, http_reason(status), detail);
    if (bl < 0 || (size_t)bl >= sizeof body)
        bl = (int)strlen(body);
    buf_release(&c->s->uin);
    buf_release(&c->s->uhead);
    buf_reserve(&c->s->out, BUF_SMALL);
    c->s->out.start = c->s->out.end = 0;
    c->s->x.interim = 0;
    int hl = snprintf(c->s->out.data, c->s->out.cap,
                      "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      "%sConnection: close\r\n\r\n",
                      status, http_reason(status), bl, extra);
    c->s->out.end = (uint32_t)hl;
    if (!(c->s->x.flags & X_HEAD_METHOD)) {
        memcpy(c->s->out.data + c->s->out.end, body, (size_t)bl);
        c->s->out.end += (uint32_t)bl;
    }
    c->s->x.bytes_sent = c->s->out.end;
    log_exchange(c, status, reason);
    c->state = CS_CLOSING;
    c->s->x.send_mark = 0;
}

/* The one cancellation path. Closes the upstream connection (never pooled).
 * If no byte of the final response has reached the client and `status` is
 * not 0, the client gets that status with the reason in a plain-text body;
 * otherwise the client connection is cut so that it sees an incomplete
 * message. Returns 1 when the client lives on (CLOSING), -1 when closed. */
static int exchange_fail(struct client *c, int status, const char *reason, const char *detail)
{
    drop_upstream(c);
    /* An error response replaces what is queued for the client, which is
     * only possible while none of it is sent (nor sealed in a TLS record). */
    if (status && !(c->s->x.flags & X_FINAL_SENT) && c->s->out.start == 0 &&
        !(c->cflags & CF_SEALED)) {
        respond_error(c, status, reason, detail);
        return 1;
    }
    int logged = (c->s->x.flags & X_FINAL_SENT) ? c->s->x.status : 499;
    log_exchange(c, logged, reason);
    client_close(c);
    return -1;
}

static int client_abort(struct client *c)
{
    char what[320];
    describe(c, what, sizeof what);
    log_error("info", "client closed the connection before the response was complete (%s)", what);
    return exchange_fail(c, 0, "client_abort", "client closed");
}

/* ---- deadlines ------------------------------------------------------------ */

/* Whether room can be made in uin by moving its unsent bytes to the front:
 * always for a response head (it is parsed in one piece), but for a body
 * only when a few bytes are left to move. Else the relay waits for the
 * client to take them all (uin then starts over at 0): a wait the socket
 * buffers absorb, where compacting cost a copy of most body bytes. */
#define COMPACT_MAX 4096u

static bool uin_compactable(const struct client *c)
{
    const struct buf *b = &c->s->uin;
    return b->start > 0 && (!(c->s->x.flags & X_RESP_HEAD) || b->end - b->start <= COMPACT_MAX);
}

static bool uin_room(const struct client *c)
{
    if (c->s->x.flags & X_SPLICE)
        return relay_room(&c->s->relay);
    return !c->s->uin.data || buf_room(&c->s->uin) || uin_compactable(c);
}

/* The same for the request body in `in`: bytes already sent upstream are
 * reclaimed by moving the unsent rest behind the head, when it is short. */
static bool in_compactable(const struct client *c)
{
    const struct exch *x = &c->s->x;
    return x->body_sent > c->in.start + x->head_len && c->in.end - x->body_sent <= COMPACT_MAX;
}

static bool in_room(const struct client *c)
{
    return !c->in.data || buf_room(&c->in) || in_compactable(c);
}

static uint32_t client_pending(const struct client *c)
{
    uint32_t n = buf_len(&c->s->out) + c->s->relay.len;
    if (c->s->x.flags & X_RESP_HEAD)
        n += c->s->x.resp_ready - c->s->uin.start;
    return n;
}

/* Recomputes every running deadline from the connection's state. */
static void fold_deadlines(struct client *c)
{
    struct exch *x = &c->s->x;
    uint64_t now = loop->now;
    struct tmo_set *t = &c->s->tmo;
    const struct route_policy *P = policy(c);

    *t = (struct tmo_set){0};
    switch (c->state) {
    case CS_HEAD:
        t->at[TMO_HEADER] = c->t_first + ns_of(cfg->ms[TMO_HEADER]);
        break;
    case CS_CLOSING:
        if (x->flags & X_LINGER) {
            t->at[TMO_IDLE] = c->t_first + LINGER_NS;
        } else if (!(c->io.ready & LOOP_WRITE)) {
            if (!x->send_mark)
                x->send_mark = now;
            t->at[TMO_SEND] = x->send_mark + ns_of(P->ms[TMO_SEND]);
        }
        break;
    case CS_TUNNEL:
        t->at[TMO_TUNNEL_IDLE] = x->t_active + ns_of(P->ms[TMO_TUNNEL_IDLE]);
        if (P->ms[TMO_TUNNEL_MAX])
            t->at[TMO_TUNNEL_MAX] = x->t_tunnel + ns_of(P->ms[TMO_TUNNEL_MAX]);
        break;
    case CS_EXCH:
        t->at[TMO_TOTAL] = x->t_start + ns_of(total_ms(c));
        if ((c->s->up && c->s->up->connecting) || (x->flags & X_WAIT_SLOT))
            t->at[TMO_CONNECT] = x->t_connect + ns_of(P->ms[TMO_CONNECT]);
        if (x->flags & X_RESOLVING)
            t->at[TMO_DNS] = x->t_dns + ns_of(cfg->ms[TMO_DNS]);
        if (x->backoff_until)
            t->at[TMO_BACKOFF] = x->backoff_until;
        if (P->ms[TMO_HEDGE] && !(x->flags & (X_HEDGED | X_RESP_HEAD | X_UPGRADE)) && c->s->up)
            t->at[TMO_HEDGE] = x->try_start + ns_of(P->ms[TMO_HEDGE]);
        if (P->ms[TMO_TRY] && c->s->up && !(x->flags & X_RESP_HEAD))
            t->at[TMO_TRY] = x->try_start + ns_of(P->ms[TMO_TRY]);
        if (x->write_since)
            t->at[TMO_WRITE] = x->write_since + ns_of(P->ms[TMO_WRITE]) - x->write_used;
        if ((x->flags & X_REQ_SENT) && !(x->flags & X_RESP_DONE) && c->s->up && uin_room(c)) {
            if (!x->read_mark)
                x->read_mark = now;
            t->at[TMO_READ] = x->read_mark + ns_of(P->ms[TMO_READ]);
        } else {
            x->read_mark = 0;
        }
        if (!(x->flags & (X_BODY_DONE | X_ABANDON_BODY)) && in_room(c) &&
            !((x->flags & X_EXPECT) && !(x->flags & X_CONTINUE))) {
            if (!x->body_mark)
                x->body_mark = now;
            t->at[TMO_BODY] = x->body_mark + ns_of(P->ms[TMO_BODY]);
        } else {
            x->body_mark = 0;
        }
        if (client_pending(c) && !(c->io.ready & LOOP_WRITE)) {
            if (!x->send_mark)
                x->send_mark = now;
            t->at[TMO_SEND] = x->send_mark + ns_of(P->ms[TMO_SEND]);
        } else {
            x->send_mark = 0;
        }
        break;
    default:
        break;
    }
}

/* Folds the deadlines into the one timer. A deadline that moved later leaves
 * the timer where it is: it fires early once, finds nothing expired, and is
 * re-filed then, which is cheaper than re-sorting on every read. */
static void arm(struct client *c)
{
    uint64_t next;
    if (!c->s) {   /* IDLE: one deadline */
        next = c->t_first + ns_of(cfg->ms[(c->cflags & CF_HANDSHAKE) ? TMO_HANDSHAKE : TMO_IDLE]);
    } else {
        fold_deadlines(c);
        next = tmo_next(&c->s->tmo);
    }
    if (!next)
        loop_timer_stop(loop, &c->timer);
    else if (!c->timer.armed || next < c->timer.at)
        loop_timer_at(loop, &c->timer, next);
}

/* The duration of kind k in force for this exchange (policy, total_ms). */
static uint64_t configured_ms(const struct client *c, enum tmo_kind k)
{
    return k == TMO_TOTAL ? total_ms(c) : k < TMO_COUNT ? policy(c)->ms[k] : 0;
}

static void exchange_timeout(struct client *c, enum tmo_kind k)
{
    char what[320], detail[96];
    uint64_t ms = configured_ms(c, k);
    describe(c, what, sizeof what);
    snprintf(detail, sizeof detail, "%s after %llu ms", tmo_reason(k), (unsigned long long)ms);

    if (k == TMO_BACKOFF) {
        c->s->x.backoff_until = 0;
        upstream_connect(c, true);
        return;
    }
    if (k == TMO_HEDGE) {
        hedge_start(c);
        return;
    }
    if (k == TMO_DNS) {
        log_error("warn", "dns timeout after %llu ms resolving %s (%s)", (unsigned long long)ms,
                  c->s->fhost, what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        return;
    }
    if (k == TMO_CONNECT && (c->s->x.flags & X_WAIT_SLOT)) {
        log_error("warn", "no free connection in pool %s after %llu ms (max_connections %u) (%s)",
                  c->s->x.route->pool->name, (unsigned long long)configured_ms(c, k),
                  c->s->x.route->pool->max_conns, what);
        exchange_fail(c, 503, "pool_full", "pool_full");
        return;
    }
    if (k == TMO_CONNECT)
        pool_report(c->s->srv, false);
    if (c->s->hedge && !(c->s->x.flags & X_RESP_HEAD) &&
        (k == TMO_CONNECT || k == TMO_READ || k == TMO_TRY)) {
        hedge_promote(c, false);   /* the first attempt timed out; the hedge runs on */
        return;
    }
    unsigned cls = k == TMO_CONNECT                                    ? CONF_RETRY_CONNECT_TIMEOUT
                 : k == TMO_TRY                                        ? CONF_RETRY_READ_TIMEOUT
                 : k == TMO_READ && !(c->s->x.flags & X_RESP_HEAD) ? CONF_RETRY_READ_TIMEOUT
                                                                       : 0;
    if (cls && retry_allowed(c, cls, 0)) {
        retry_later(c, tmo_reason(k));
        return;
    }
    switch (k) {
    case TMO_CONNECT:
    case TMO_WRITE:
        log_error("warn", "upstream %s timeout after %llu ms to %s (%s)", tmo_word(k),
                  (unsigned long long)ms, c->s->srv->addr->text, what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        break;
    case TMO_READ:
    case TMO_TOTAL:
    case TMO_TRY:
        log_error("warn", "upstream %s timeout after %llu ms from %s (%s)", tmo_word(k),
                  (unsigned long long)ms, c->s->srv ? c->s->srv->addr->text : "-", what);
        exchange_fail(c, 504, tmo_reason(k), detail);
        break;
    case TMO_BODY:
        log_error("warn", "client body timeout after %llu ms (%s)", (unsigned long long)ms, what);
        exchange_fail(c, 408, tmo_reason(k), detail);
        break;
    case TMO_SEND:
        log_error("warn", "client send timeout after %llu ms (%s)", (unsigned long long)ms, what);
        exchange_fail(c, 0, tmo_reason(k), detail);
        break;
    default:
        exchange_fail(c, 504, tmo_reason(k), detail);
        break;
    }
}

static void on_timer(struct timer *t)
{
    struct client *c = container_of(t, struct client, timer);

    if (!c->s) {   /* IDLE */
        if (c->cflags & CF_HANDSHAKE) {
            if (loop->now < c->t_first + ns_of(cfg->ms[TMO_HANDSHAKE])) {
                arm(c);
                return;
            }
            struct peer_text pt;
            log_error("info", "client TLS handshake timeout after %llu ms (client %s)",
                      (unsigned long long)cfg->ms[TMO_HANDSHAKE], peer_of(c, &pt));
            stats->tls[STATS_TLS_CLIENT][TLS_TIMEOUT]++;
            client_close(c);
            return;
        }
        if (loop->now >= c->t_first + ns_of(cfg->ms[TMO_IDLE])) {
            tls_close_notify(c->ssl);   /* a clean end between requests */
            client_close(c);
        } else {
            arm(c);
        }
        return;
    }
    enum tmo_kind k = tmo_expired(&c->s->tmo, loop->now);
    if (k == TMO_NONE) {
        arm(c);
        return;
    }
    switch (c->state) {
    case CS_CLOSING:
        client_close(c);   /* keep-alive idle, linger over, or send stalled */
        return;
    case CS_HEAD: {
        char detail[96];
        struct peer_text pt;
        snprintf(detail, sizeof detail, "header_timeout after %llu ms",
                 (unsigned long long)cfg->ms[TMO_HEADER]);
        log_error("warn", "client header timeout after %llu ms (client %s)",
                  (unsigned long long)cfg->ms[TMO_HEADER], peer_of(c, &pt));
        respond_error(c, 408, "header_timeout", detail);
        break;
    }
    case CS_EXCH:
        exchange_timeout(c, k);
        break;
    case CS_TUNNEL: {
        char what[320];
        describe(c, what, sizeof what);
        log_error("info", "%s timeout after %llu ms: closing both ends of the tunnel (%s)",
                  tmo_word(k),
                  (unsigned long long)configured_ms(c, k), what);
        tunnel_end(c, tmo_reason(k));
        return;
    }
    default:
        return;
    }
    if (c->state != CS_CLOSED)
        pump(c);
}

/* ---- upstream side -------------------------------------------------------- */

static void on_upstream(struct upconn *up, uint32_t events)
{
    (void)events;
    pump(up->owner);
}

/* A pooled connection that the server closed before any response byte, for a
 * request that can be sent again: retried once on a new connection. */
static bool can_retry(const struct client *c)
{
    const struct exch *x = &c->s->x;
    return c->s->up && c->s->up->reused && x->attempts == 1 && !(x->flags & X_GOT_BYTE) &&
           x->req_framing == HTTP_BODY_NONE && (x->flags & X_IDEMPOTENT);
}

/* Forgets the failed attempt: its upstream connection is closed (never
 * pooled), its response bytes dropped, and the request (head, and a kept
 * body) will be sent again from the start. */
static void attempt_reset(struct client *c)
{
    struct exch *x = &c->s->x;
    drop_upstream(c);
    buf_release(&c->s->uin);
    x->uhead_off = 0;
    x->body_sent = c->in.start + x->head_len;
    x->flags &= ~(X_REQ_SENT | X_UP_EOF | X_NO_REUSE | X_GOT_BYTE | X_RESP_HEAD | X_RESP_DONE |
                  X_ABANDON_BODY | X_SPLICE | X_SPLICE_OK | X_DECHUNK);
    x->read_mark = x->write_since = x->write_used = 0;
    x->resp_ready = 0;
    x->resp_left = 0;
    x->resp_chunk = (struct http_chunked){0};
    x->status = 0;
    x->first_byte_ns = -1;
}

static int retry(struct client *c)
{
    char what[320];
    describe(c, what, sizeof what);
    log_error("info", "pooled connection to %s closed before a response; retrying on a new "
                      "connection (%s)", c->s->up->srv->addr->text, what);
    attempt_reset(c);
    return upstream_connect(c, false);
}

/* Whether the route's retry policy lets this failure be tried again: a
 * listed failure class (or response status), attempts left, a method it may
 * repeat, a body still at hand, nothing yet sent to the client, and room in
 * the pool's retry budget. The total deadline keeps running throughout. */
static bool retry_allowed(struct client *c, unsigned cls, int status)
{
    const struct exch *x = &c->s->x;
    const struct conf_retry *r = x->route ? x->route->retry : NULL;

    if (!r || x->attempts >= r->attempts)
        return false;
    if (status ? !conf_retry_status(r, (unsigned)status) : !(r->on & cls))
        return false;
    if (!(x->flags & X_IDEMPOTENT) && r->methods != CONF_METHODS_ALL)
        return false;
    if (x->req_framing != HTTP_BODY_NONE && !(x->flags & X_KEEP_BODY))
        return false;
    if (x->bytes_sent || buf_len(&c->s->out) || (x->flags & X_RESP_HEAD))
        return false;
    if (!pool_retry_allowed(x->route->pool)) {
        char what[320];
        describe(c, what, sizeof what);
        log_error("warn", "retry budget of pool %s spent: not retrying (%s)",
                  x->route->pool->name, what);
        return false;
    }
    return true;
}

static uint64_t jitter_state = 0x2545f4914f6cdd1dull;

/* Schedules the next attempt after a jittered exponential backoff ("full
 * jitter": uniform in [0, min(max, base * 2^(n-1))]), on another server
 * when the pool has one. */
static int retry_later(struct client *c, const char *why)
{
    struct exch *x = &c->s->x;
    const struct conf_retry *r = x->route->retry;
    char what[320];

    if (!(x->flags & X_RETRIED)) {
        x->flags |= X_RETRIED;
        x->route->pool->retries++;
    }
    stats->retries++;
    uint64_t cap = r->backoff_base_ms << (x->attempts - 1 < 20 ? x->attempts - 1 : 20);
    if (cap > r->backoff_max_ms)
        cap = r->backoff_max_ms;
    jitter_state ^= jitter_state << 13;
    jitter_state ^= jitter_state >> 7;
    jitter_state ^= jitter_state << 17;
    uint64_t delay = cap ? jitter_state % (cap * MS + 1) : 0;
    describe(c, what, sizeof what);
    log_error("info", "retrying after %s from %s: attempt %u of %u in %llu ms (%s)", why,
              c->s->srv->addr->text, x->attempts + 1, r->attempts,
              (unsigned long long)(delay / MS), what);
    x->avoid = c->s->srv;
    attempt_reset(c);
    if (!delay)
        return upstream_connect(c, true);
    x->backoff_until = loop->now + delay;
    return 1;
}

/* ---- hedging: the first response head wins ------------------------------ */

/* Sends the request a second time, to another server of the pool, when the
 * first attempt has no response head after the route's hedge delay (the
 * asyncio.wait(FIRST_COMPLETED) of proxies). Only for idempotent requests
 * without a body; a hedge counts against the pool's retry budget. */
static void hedge_start(struct client *c)
{
    struct session *s = c->s;
    struct exch *x = &s->x;
    char what[320];
    int err = 0;

    x->flags |= X_HEDGED;
    if (!(x->flags & X_IDEMPOTENT) || x->req_framing != HTTP_BODY_NONE || x->bytes_sent ||
        buf_len(&s->out) || !pool_retry_allowed(x->route->pool))
        return;
    struct pool_server *srv = pool_pick_other(x->route->pool, s->srv);
    if (!srv || srv == s->srv)
        return;
    struct upconn *h = pool_take_idle(srv, c, on_upstream);
    if (!h)
        h = pool_connect(srv, c, on_upstream, &err);
    if (!h) {
        pool_report(srv, false);
        return;
    }
    if (!(x->flags & X_RETRIED)) {
        x->flags |= X_RETRIED;
        x->route->pool->retries++;
    }
    stats->hedges++;
    s->hedge = h;
    s->hedge_srv = srv;
    s->hedge_off = 0;
    x->attempts++;
    describe(c, what, sizeof what);
    log_error("info", "no response head from %s after %llu ms: hedging to %s (%s)",
              s->srv->addr->text, (unsigned long long)x->route->policy.ms[TMO_HEDGE],
              srv->addr->text, what);
}

/* The hedge takes the first attempt's place, because its response head came
 * first (head) or because the first attempt failed; the first attempt's
 * connection is closed, never pooled. */
static void hedge_promote(struct client *c, bool head)
{
    struct session *s = c->s;
    struct exch *x = &s->x;
    char what[320];

    describe(c, what, sizeof what);
    log_error("info", "hedged attempt on %s %s; cancelling the one on %s (%s)",
              s->hedge_srv->addr->text, head ? "answered first" : "carries on",
              s->srv->addr->text, what);
    if (s->up)
        pool_close(s->up);
    buf_release(&s->uin);
    s->up = s->hedge;
    s->srv = s->hedge_srv;
    s->hedge = NULL;
    s->uin = s->hin;
    s->hin = (struct buf){0};
    x->uhead_off = s->hedge_off;
    x->flags &= ~(X_REQ_SENT | X_UP_EOF | X_NO_REUSE);
    if (x->uhead_off == s->uhead.end && (x->flags & X_BODY_DONE))
        x->flags |= X_REQ_SENT;
    x->read_mark = 0;
    x->write_since = 0;
    x->try_start = loop->now;
    if (s->up->connecting)
        x->t_connect = loop->now;   /* its own connect clock from here */
    if (head) {
        x->flags |= X_GOT_BYTE | X_HEAD_QUEUED;
        if (x->first_byte_ns < 0)
            x->first_byte_ns = (int64_t)(loop->now - x->t_start);
        pool_report(s->srv, true);
    }
}

/* Advances the hedged attempt: connect, send the head, read until a final
 * response head (which wins) or a failure (which drops the hedge alone). */
static int hedge_step(struct client *c)
{
    struct session *s = c->s;
    struct upconn *h = s->hedge;
    int progress = 0;

    if (!h)
        return 0;
    if (h->connecting) {
        char why[160];
        int r = pool_connect_step(h, why, sizeof why);
        if (r == 0)
            return 0;
        if (r < 0)
            goto out_failed;
        progress = 1;
    }
    if (s->hedge_off < s->uhead.end && (h->io.ready & LOOP_WRITE)) {
        /* The head is shared with the first attempt: stamp it anew only
         * when that one has sent all of it, never under its feet. */
        if (s->hedge_off == 0 && (!s->up || s->x.uhead_off == s->uhead.end))
            stamp_deadline(c);
        struct iovec iov = {s->uhead.data + s->hedge_off, s->uhead.end - s->hedge_off};
        ssize_t n = pool_writev(h, &iov, 1);
        if (n > 0) {
            s->hedge_off += (uint32_t)n;
            progress = 1;
            if (s->hedge_off < s->uhead.end)
                h->io.ready &= ~LOOP_WRITE;
        } else if (n < 0 && errno == EAGAIN) {
            h->io.ready &= ~LOOP_WRITE;
        } else if (n < 0 && errno != EINTR) {
            goto out_failed;
        }
    }
    while (h->io.ready & LOOP_READ) {
        buf_reserve(&s->hin, BUF_SMALL);
        if (!buf_room(&s->hin)) {
            if (s->hin.cap >= BUF_LARGE)
                goto out_failed;   /* a head this large is refused anyway */
            buf_reserve(&s->hin, BUF_LARGE);
        }
        uint32_t room = buf_room(&s->hin);
        ssize_t n = pool_read(h, buf_tail(&s->hin), room);
        if (n > 0) {
            s->hin.end += (uint32_t)n;
            progress = 1;
            if ((uint32_t)n < room)
                read_was_short(&h->io);
            for (;;) {   /* 1xx heads of the hedge are not relayed */
                int r = http_parse_response(buf_head(&s->hin), buf_len(&s->hin), &scratch,
                                            &http_default_limits);
                if (r == HTTP_INCOMPLETE)
                    break;
                if (r < 0)
                    goto out_failed;
                if (scratch.status >= 200 || scratch.status == 101) {
                    hedge_promote(c, true);
                    return 1;
                }
                s->hin.start += (uint32_t)r;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            h->io.ready &= ~LOOP_READ;
            break;
        }
        goto out_failed;   /* closed or reset before a head */
    }
    return progress;

out_failed:
    pool_report(s->hedge_srv, false);
    hedge_drop(c);
    return 1;
}

/* Why the last upstream TLS handshake failed (for upstream_failed). */
static char tls_why[160];

/* The upstream failed: err is a negative errno, or 0 for end of stream;
 * -EPROTO while connecting: the TLS handshake failed (tls_why says why). */
static int upstream_failed(struct client *c, int err, bool connecting)
{
    char what[320], detail[96];
    const char *reason;

    /* Refused, reset or closed before a response counts against the server;
     * a pooled connection it closed while idle is the keep-alive race. */
    if (!(c->s->x.flags & X_GOT_BYTE) && (connecting || !c->s->up || !c->s->up->reused))
        pool_report(c->s->srv, false);
    if (c->s->hedge && !(c->s->x.flags & X_RESP_HEAD)) {
        hedge_promote(c, false);   /* the hedge is still in the race */
        return 1;
    }
    if (!connecting && can_retry(c))
        return retry(c);
    if (!(c->s->x.flags & X_GOT_BYTE) &&
        retry_allowed(c, connecting ? CONF_RETRY_CONNECT_FAILURE : CONF_RETRY_RESET, 0))
        return retry_later(c, connecting ? "a connect failure" : "a reset before the response");
    describe(c, what, sizeof what);
    const char *srv = c->s->srv->addr->text;
    if (connecting && err == -EPROTO) {
        reason = "upstream_tls_error";
        log_error("warn", "upstream TLS handshake with %s failed: %s (%s)", srv, tls_why, what);
    } else if (connecting) {
        reason = err == -ECONNREFUSED ? "upstream_refused" : "upstream_error";
        log_error("warn", "upstream connect to %s failed: %s (%s)", srv, strerror(-err), what);
    } else if (err == 0) {
        reason = "upstream_closed";
        log_error("warn", "upstream %s closed the connection before the response was complete (%s)",
                  srv, what);
    } else if (err == -EPROTO && c->s->up && c->s->up->ssl) {
        reason = "upstream_tls_error";   /* an alert after the handshake (no client cert...) */
        log_error("warn", "upstream %s: TLS error: %s (%s)", srv, tls_last_error(), what);
    } else if (err == -ECONNRESET || err == -EPIPE) {
        reason = "upstream_reset";
        log_error("warn", "upstream %s reset the connection (%s)", srv, what);
    } else {
        reason = "upstream_error";
        log_error("warn", "upstream %s: %s (%s)", srv, strerror(-err), what);
    }
    snprintf(detail, sizeof detail, "%s", reason);
    return exchange_fail(c, 502, reason, detail);
}

static int bad_response(struct client *c, const char *why)
{
    char what[320];
    describe(c, what, sizeof what);
    log_error("warn", "bad response from upstream %s: %s (%s)", c->s->srv->addr->text, why, what);
    return exchange_fail(c, 502, "bad_upstream_response", "bad_upstream_response");
}

/* A response head over resp_limits (the parser said -431), or one whose
 * rewritten form does not fit the output buffer: 502 with its own reason,
 * so that an operator tells a large head from a broken one. */
static int head_too_large(struct client *c, bool rewritten)
{
    const struct buf *b = &c->s->uin;
    uint32_t got = buf_len(b), line = resp_limits.max_line + 2;
    char why[128], what[320];
    if (rewritten)
        snprintf(why, sizeof why, "response head too large to forward (%u bytes, limit %u)",
                 scratch.head_len, BUF_LARGE);
    else if (got >= resp_limits.max_head)
        snprintf(why, sizeof why, "response head too large (%u bytes, limit %u)", got,
                 resp_limits.max_head);
    else if (!memchr(buf_head(b), '\n', got < line ? got : line))
        snprintf(why, sizeof why, "response head too large (status line over %u bytes)",
                 resp_limits.max_line);
    else
        snprintf(why, sizeof why, "response head too large (more than %u fields, limit %u)",
                 resp_limits.max_fields, resp_limits.max_fields);
    describe(c, what, sizeof what);
    log_error("warn", "bad response from upstream %s: %s (%s)", c->s->srv->addr->text, why, what);
    return exchange_fail(c, 502, "upstream_head_too_large", "upstream_head_too_large");
}

static int upstream_connect(struct client *c, bool allow_pooled)
{
    struct exch *x = &c->s->x;
    int err = 0;

    c->s->srv = (x->flags & X_FORWARD) ? &c->s->fsrv
              : x->avoid                ? pool_pick_other(x->route->pool, x->avoid)
                                        : pool_pick(x->route->pool);
    x->try_start = loop->now;
    if (!c->s->srv) {
        char what[320];
        describe(c, what, sizeof what);
        log_error("warn", "no upstream in service in pool %s (%s)", x->route->pool->name, what);
        return exchange_fail(c, 503, "no_healthy_upstream", "no_healthy_upstream");
    }
    if (allow_pooled) {
        c->s->up = pool_take_idle(c->s->srv, c, on_upstream);
        if (c->s->up) {
            x->attempts++;
            x->connect_ns = 0;
            return 1;
        }
    }
    if (!pool_may_connect(c->s->srv)) {
        /* At the pool's connection limit: wait for a slot, under the
         * connect timeout (and the total deadline). */
        if (!(x->flags & X_WAIT_SLOT)) {
            x->t_connect = loop->now;
            wait_enqueue(c);
        }
        return 1;
    }
    x->attempts++;
    c->s->up = pool_connect(c->s->srv, c, on_upstream, &err);
    if (!c->s->up)
        return upstream_failed(c, err, true);
    x->t_connect = loop->now;
    x->connect_ns = -1;
    return 1;
}

/* Writes the time left of the total deadline into the request head's
 * deadline field, just before the head is sent (each attempt anew). */
static void stamp_deadline(struct client *c)
{
    struct exch *x = &c->s->x;
    if (!x->deadline_at)
        return;
    uint64_t end = x->t_start + ns_of(total_ms(c)), now = loop_clock_ns();
    uint64_t left = end > now ? (end - now) / MS : 0;
    left = left > DEADLINE_HOP_MARGIN_MS ? left - DEADLINE_HOP_MARGIN_MS : 0;
    char *p = c->s->uhead.data + x->deadline_at + FWD_DEADLINE_WIDTH;
    for (int i = 0; i < FWD_DEADLINE_WIDTH; i++) {   /* right-aligned, blank-padded */
        *--p = (i == 0 || left) ? (char)('0' + left % 10) : ' ';
        left /= 10;
    }
}

/* Sends what is held of the request to the upstream, running the write clock
 * while the upstream will not take it. */
static int upstream_send(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;

    if (!up || up->connecting || (x->flags & (X_REQ_SENT | X_ABANDON_BODY)))
        return 0;
    uint32_t ph = c->s->uhead.end - x->uhead_off;
    uint32_t pb = x->body_ready - x->body_sent;
    if (ph + pb == 0) {
        if (x->write_since) {
            x->write_used += loop->now - x->write_since;
            x->write_since = 0;
        }
        if (x->flags & X_BODY_DONE) {
            x->flags |= X_REQ_SENT;
            return 1;
        }
        return 0;
    }
    if (!(up->io.ready & LOOP_WRITE)) {
        if (!x->write_since)
            x->write_since = loop->now;
        return 0;
    }
    if (x->uhead_off == 0)
        stamp_deadline(c);
    if (pb > SEND_SLICE)
        pb = SEND_SLICE;
    struct iovec iov[2] = {
        {c->s->uhead.data + x->uhead_off, ph},
        {c->in.data + x->body_sent, pb},
    };
    ssize_t n = pool_writev(up, ph ? iov : iov + 1, ph ? 2 : 1);
    if (n < 0) {
        if (errno == EINTR)
            return 1;
        if (errno == EAGAIN) {
            up->io.ready &= ~LOOP_WRITE;
            if (!x->write_since)
                x->write_since = loop->now;
            return 0;
        }
        return upstream_failed(c, -errno, false);
    }
    uint32_t k = (uint32_t)n < ph ? (uint32_t)n : ph;
    x->uhead_off += k;
    x->body_sent += (uint32_t)n - k;
    if ((uint32_t)n < ph + pb) {
        up->io.ready &= ~LOOP_WRITE;
        if (!x->write_since)
            x->write_since = loop->now;
    } else {
        if (x->write_since) {
            x->write_used += loop->now - x->write_since;
            x->write_since = 0;
        }
        /* Mark it now: a fast upstream may answer before the next pass, and
         * must not be mistaken for one answering before the request ended. */
        if ((x->flags & X_BODY_DONE) && x->body_sent == x->body_ready &&
            x->uhead_off == c->s->uhead.end) {
            x->flags |= X_REQ_SENT;
            /* The read clock starts now, at the hand-over itself, not at the
             * (earlier) time this event was dispatched: never early. */
            x->read_mark = loop_clock_ns();
            x->sent_ns = (int64_t)(x->read_mark - x->t_start);
        }
    }
    /* Reclaim the body space once everything read has been sent (unless it
     * is kept for a retry). */
    uint32_t hs = c->in.start + x->head_len;
    if (!(x->flags & X_KEEP_BODY) && x->body_sent == c->in.end && x->body_sent > hs)
        x->body_sent = x->body_ready = c->in.end = hs;
    return 1;
}

/* A body that will not fit a small buffer is relayed through a large one:
 * at 64 KiB a slice, a 1 MiB body costs a quarter of the system calls. */
static bool bulk(enum http_framing f, uint64_t length)
{
    return f == HTTP_BODY_CHUNKED || f == HTTP_BODY_CLOSE ||
           (f == HTTP_BODY_LENGTH && length > BUF_SMALL);
}

/* Validates the response body bytes in uin past resp_ready. */
static int response_body(struct client *c)
{
    struct exch *x = &c->s->x;
    uint32_t avail = c->s->uin.end - x->resp_ready;

    if (!(x->flags & X_RESP_HEAD) || !avail)
        return 0;   /* no final head yet: nothing here is body */
    if (x->flags & X_RESP_DONE)
        goto out_extra;
    switch (x->resp_framing) {
    case HTTP_BODY_LENGTH: {
        uint64_t k = avail < x->resp_left ? avail : x->resp_left;
        x->resp_ready += (uint32_t)k;
        x->resp_left -= k;
        if (!x->resp_left)
            x->flags |= X_RESP_DONE;
        break;
    }
    case HTTP_BODY_CHUNKED: {
        /* payload only for an HTTP/1.0 client, else framing minus trailers */
        size_t dl = 0;
        char *p = c->s->uin.data + x->resp_ready;
        ssize_t r = http_chunked_feed(&x->resp_chunk, p, avail, &dl);
        if (r < 0)
            return bad_response(c, "malformed chunked body");
        uint32_t rest = avail - (uint32_t)r;
        if (rest && dl != (size_t)r)
            memmove(p + dl, p + r, rest);
        c->s->uin.end = x->resp_ready + (uint32_t)dl + rest;
        x->resp_ready += (uint32_t)dl;
        if (http_chunked_done(&x->resp_chunk))
            x->flags |= X_RESP_DONE;
        break;
    }
    case HTTP_BODY_CLOSE:
        x->resp_ready = c->s->uin.end;
        break;
    default:
        x->flags |= X_RESP_DONE;
        break;
    }
    if (!(x->flags & X_RESP_DONE) || c->s->uin.end == x->resp_ready)
        return 1;
out_extra:
    /* Bytes past the end of the response: the connection cannot be trusted. */
    c->s->uin.end = x->resp_ready;
    x->flags |= X_NO_REUSE;
    return 1;
}

/* Parses response heads in uin: 1xx heads are relayed (to HTTP/1.1 clients)
 * and skipped, the final head is rewritten into out. */
/* ---- tunnels ---------------------------------------------------------------
 *
 * After a 101 to a WebSocket upgrade (or a 200 to CONNECT) the connection
 * pair relays bytes both ways until both directions have ended: client bytes
 * through `in`, upstream bytes through `uin`, after the response head in
 * `out`. An end of stream from one side is passed on as a shut write side
 * to the other (the other direction keeps flowing); a reset or error on
 * either side cuts both. The clock is the tunnel's own: idle (no byte either
 * way) and an optional lifetime; the exchange's total deadline ended with
 * the response head. The upstream connection is never pooled. */

static void tunnel_begin(struct client *c)
{
    struct exch *x = &c->s->x;
    struct buf *t = &c->s->uhead;   /* client -> upstream from now on */
    uint32_t early = c->in.end - x->body_ready;   /* sent by the client after its head */
    c->state = CS_TUNNEL;
    x->t_tunnel = x->t_active = loop->now;
    x->tflags = 0;
    buf_release(t);
    buf_reserve(t, early > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    memcpy(t->data, c->in.data + x->body_ready, early);
    t->end = early;
    c->in.end = x->body_ready;      /* the head stays, for the access log */
    buf_reserve(&c->s->uin, BUF_SMALL);
    buf_compact(&c->s->uin);
    relay_close(&c->s->relay);
}

static int tunnel_end(struct client *c, const char *reason)
{
    log_exchange(c, c->s->x.status, reason);
    client_close(c);   /* and the upstream, never pooled */
    return -1;
}

/* One end of a tunnel: a client or an upstream connection. */
struct end {
    struct loop_io *io;
    SSL *ssl;
    uint8_t *want;
};

/* Moves b's bytes to the end e; false after a write error (errno set). */
static bool tunnel_send(struct end e, struct buf *b, uint64_t *count, int *moved)
{
    struct loop_io *io = e.io;
    while (buf_len(b) && (io->ready & LOOP_WRITE)) {
        struct iovec iov = {buf_head(b), buf_len(b)};
        ssize_t n = tls_or_writev(io->fd, e.ssl, &iov, 1);
        if (n > 0) {
            if ((uint32_t)n < buf_len(b))
                io->ready &= ~LOOP_WRITE;
            b->start += (uint32_t)n;
            *count += (uint64_t)n;
            *moved = 1;
        } else if (n < 0 && errno == EAGAIN) {
            io->ready &= ~LOOP_WRITE;
        } else if (!(n < 0 && errno == EINTR)) {
            return false;
        }
    }
    if (!buf_len(b))
        b->start = b->end = 0;
    return true;
}

/* Reads from the end e into b while there is room; 1 at end of stream, -1
 * after an error, else 0. */
static int tunnel_recv(struct end e, struct buf *b, uint64_t *count, int *moved)
{
    struct loop_io *io = e.io;
    while ((io->ready & LOOP_READ) && buf_room(b)) {
        uint32_t room = buf_room(b);
        ssize_t n = tls_or_read(io->fd, e.ssl, e.want, buf_tail(b), room);
        if (n > 0) {
            b->end += (uint32_t)n;
            *count += (uint64_t)n;
            *moved = 1;
            if ((uint32_t)n < room)
                read_was_short(io);
        } else if (n == 0) {
            *moved = 1;
            return 1;
        } else if (errno == EAGAIN) {
            io->ready &= ~LOOP_READ;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static int tunnel_step(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;
    uint64_t to_client = 0, to_up = 0, ignored = 0;
    struct end ce = {&c->io, c->ssl, &c->tls_want}, ue = {&up->io, up->ssl, &up->tls_want};
    int moved;
    do {
        moved = 0;
        /* upstream -> client: the response head, then the upstream's bytes */
        if (!tunnel_send(ce, &c->s->out, &to_client, &moved) ||
            (!buf_len(&c->s->out) && !tunnel_send(ce, &c->s->uin, &to_client, &moved)))
            return tunnel_end(c, "client_abort");
        if (!buf_len(&c->s->out))
            x->flags |= X_FINAL_SENT;
        if (!(x->tflags & T_UEOF)) {
            int r = tunnel_recv(ue, &c->s->uin, &ignored, &moved);
            if (r < 0)
                return tunnel_end(c, "upstream_reset");
            if (r > 0)
                x->tflags |= T_UEOF;
        }
        if ((x->tflags & T_UEOF) && !(x->tflags & T_CSHUT) && !buf_len(&c->s->out) &&
            !buf_len(&c->s->uin)) {
            shut_write(c->io.fd, c->ssl);
            x->tflags |= T_CSHUT;
        }
        /* client -> upstream */
        struct buf *t = &c->s->uhead;
        if (!tunnel_send(ue, t, &to_up, &moved))
            return tunnel_end(c, "upstream_reset");
        if (!(x->tflags & T_CEOF)) {
            int r = tunnel_recv(ce, t, &ignored, &moved);
            if (r < 0)
                return tunnel_end(c, "client_abort");
            if (r > 0)
                x->tflags |= T_CEOF;
        }
        if ((x->tflags & T_CEOF) && !(x->tflags & T_USHUT) && !buf_len(t)) {
            shut_write(up->io.fd, up->ssl);
            x->tflags |= T_USHUT;
        }
    } while (moved);
    x->bytes_sent += to_client;
    x->bytes_in += to_up;
    if (to_client || to_up)
        x->t_active = loop->now;
    if ((x->tflags & (T_CSHUT | T_USHUT)) == (T_CSHUT | T_USHUT))
        return tunnel_end(c, "ok");
    return 0;
}

static int response_head(struct client *c)
{
    struct exch *x = &c->s->x;

    while (!(x->flags & X_RESP_HEAD) && buf_len(&c->s->uin)) {
        int r = http_parse_response(buf_head(&c->s->uin), buf_len(&c->s->uin), &scratch,
                                    &resp_limits);
        if (r == HTTP_INCOMPLETE) {
            /* The parser refuses a head once it outgrows resp_limits, which
             * fit BUF_LARGE: a full large buffer cannot be incomplete. */
            if (!buf_room(&c->s->uin) && c->s->uin.start == 0) {
                if (c->s->uin.cap >= BUF_LARGE)
                    return head_too_large(c, false);
                buf_reserve(&c->s->uin, BUF_LARGE);
                x->resp_ready = c->s->uin.start;
            }
            return 0;
        }
        if (r == -431)
            return head_too_large(c, false);
        if (r < 0)
            return bad_response(c, "malformed response head");
        struct http_info info;
        if (http_response_info(&scratch, x->flags & X_HEAD_METHOD, &info) < 0)
            return bad_response(c, "bad response framing");
        /* the rewritten head is about as long as the upstream's */
        buf_reserve(&c->s->out, (uint32_t)r + x->interim + 512 > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
        buf_compact(&c->s->out);
        if (scratch.status == 101 && (x->flags & X_UPGRADE)) {
            if (!fwd_wants_websocket(&scratch))
                return bad_response(c, "101 Switching Protocols to something but websocket");
            struct fwd_resp fr = {.m = &scratch, .upgrade = true};
            int n = fwd_response_head(buf_tail(&c->s->out), buf_room(&c->s->out), &fr);
            if (n < 0)
                return head_too_large(c, true);
            c->s->out.end += (uint32_t)n;
            c->s->uin.start += (uint32_t)r;
            x->resp_ready = c->s->uin.start;
            x->status = 101;
            x->flags |= X_RESP_HEAD | X_NO_REUSE;
            tunnel_begin(c);
            return 1;
        }
        if (scratch.status < 200) {
            if (scratch.status == 101)
                return bad_response(c, "101 Switching Protocols without an upgrade request");
            bool skip = c->minor == 0 || (scratch.status == 100 && (x->flags & X_CONTINUE));
            if (!skip) {
                struct fwd_resp fr = {.m = &scratch};
                int n = fwd_response_head(buf_tail(&c->s->out), buf_room(&c->s->out), &fr);
                if (n < 0)
                    return head_too_large(c, true);
                c->s->out.end += (uint32_t)n;
                x->interim += (uint32_t)n;
            }
            c->s->uin.start += (uint32_t)r;
            continue;
        }
        if (retry_allowed(c, 0, scratch.status)) {
            char why[32];
            snprintf(why, sizeof why, "status %d", scratch.status);
            return retry_later(c, why);
        }
        if (c->s->hedge) {
            char what[320];
            describe(c, what, sizeof what);
            log_error("info", "%s answered first; cancelling the hedged attempt on %s (%s)",
                      c->s->srv->addr->text, c->s->hedge_srv->addr->text, what);
            hedge_drop(c);
        }
        x->status = scratch.status;
        x->resp_framing = (uint8_t)info.framing;
        x->resp_left = info.length;
        if (info.conn_close || info.framing == HTTP_BODY_CLOSE)
            x->flags |= X_NO_REUSE;
        if (!(x->flags & X_REQ_SENT))   /* an early response: stop the upload */
            x->flags |= X_ABANDON_BODY | X_NO_REUSE | X_CLOSE_AFTER;
        /* An HTTP/1.0 client that asked for keep-alive keeps its
         * connection when the response has a known end: a length or no
         * body. A chunked body is decoded for it and ends at close. */
        if (info.framing == HTTP_BODY_CLOSE || draining)
            x->flags |= X_CLOSE_AFTER;
        if (info.framing == HTTP_BODY_CHUNKED && c->minor == 0)
            x->flags |= X_DECHUNK | X_CLOSE_AFTER;
        x->resp_chunk.keep_framing = !(x->flags & X_DECHUNK);
        struct fwd_resp fr = {
            .m = &scratch,
            .info = &info,
            .chunked = info.framing == HTTP_BODY_CHUNKED && !(x->flags & X_DECHUNK),
            .close = (x->flags & X_CLOSE_AFTER) != 0,
            .keepalive = c->minor == 0,
        };
        int n = fwd_response_head(buf_tail(&c->s->out), buf_room(&c->s->out), &fr);
        if (n < 0)
            return head_too_large(c, true);
        c->s->out.end += (uint32_t)n;
        c->s->uin.start += (uint32_t)r;
        if (bulk(info.framing, info.length))
            buf_reserve(&c->s->uin, BUF_LARGE);   /* fewer, larger reads and writes */
        if (info.framing == HTTP_BODY_LENGTH && info.length >= SPLICE_MIN && !c->ssl &&
            !c->s->up->ssl)
            x->flags |= X_SPLICE_OK;   /* (TLS bytes must pass through the engine) */
        x->resp_ready = c->s->uin.start;
        x->flags |= X_RESP_HEAD;
        if (info.framing == HTTP_BODY_NONE)
            x->flags |= X_RESP_DONE;
    }
    return 1;
}

/* Splice mode: moves the rest of a Content-Length body into the pipe. */
static int upstream_splice(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;
    int progress = 0;

    while ((up->io.ready & LOOP_READ) && relay_room(&c->s->relay) && x->resp_left) {
        size_t want = RELAY_CAP - c->s->relay.len;
        if (want > x->resp_left)
            want = (size_t)x->resp_left;
        ssize_t n = relay_fill(&c->s->relay, up->io.fd, want);
        if (n > 0) {
            /* A short splice says nothing of the socket: a pipe holds 16
             * page slots, not 64 KiB, and fills up on small segments. */
            x->resp_left -= (uint64_t)n;
            x->read_mark = loop->now;
            progress = 1;
            continue;
        }
        if (n == 0) {
            x->flags |= X_UP_EOF | X_NO_REUSE;
            return upstream_failed(c, 0, false);
        }
        if (n == -EAGAIN) {
            /* Only an empty pipe makes EAGAIN mean "socket drained"; with
             * bytes in the pipe it may mean "pipe full": keep the read bit,
             * and try again once the client has taken some. */
            if (!c->s->relay.len)
                up->io.ready &= ~LOOP_READ;
            break;
        }
        return upstream_failed(c, (int)n, false);
    }
    if (!x->resp_left)
        x->flags |= X_RESP_DONE;
    return progress;
}

/* Reads the response while there is room for it. */
static int upstream_recv(struct client *c)
{
    struct exch *x = &c->s->x;
    struct upconn *up = c->s->up;
    int progress = 0;

    if (!up || up->connecting || (x->flags & X_RESP_DONE))
        return 0;
    if (x->flags & X_HEAD_QUEUED) {   /* read by the hedge that won */
        x->flags &= ~X_HEAD_QUEUED;
        if (response_head(c) < 0)
            return -1;
        if (c->state != CS_EXCH || c->s->up != up)
            return 1;
        if (response_body(c) < 0)
            return -1;
        if (c->state != CS_EXCH)
            return 1;
        progress = 1;
    }
    if ((x->flags & X_SPLICE_OK) && !(x->flags & X_SPLICE) && (x->flags & X_RESP_HEAD) &&
        c->s->uin.start == c->s->uin.end) {
        /* Every body byte read so far has been sent: the rest can bypass
         * user space. Without a pipe (EMFILE...), it is simply copied. */
        x->flags &= ~X_SPLICE_OK;
        if (relay_open(&c->s->relay) == 0) {
            x->flags |= X_SPLICE;
            buf_release(&c->s->uin);
            x->resp_ready = 0;
        }
    }
    if (x->flags & X_SPLICE)
        return upstream_splice(c);
    while (up->io.ready & LOOP_READ) {
        buf_reserve(&c->s->uin, BUF_SMALL);
        if (!buf_room(&c->s->uin)) {
            if (!uin_compactable(c))
                break;   /* full: the client is behind; the read clock pauses */
            uint32_t d = c->s->uin.start;
            buf_compact(&c->s->uin);
            x->resp_ready -= d;
        }
        uint32_t room = buf_room(&c->s->uin);
        ssize_t n = pool_read(up, buf_tail(&c->s->uin), room);
        if (n > 0) {
            c->s->uin.end += (uint32_t)n;
            x->read_mark = loop->now;
            if (!(x->flags & X_GOT_BYTE)) {
                x->flags |= X_GOT_BYTE;
                x->first_byte_ns = (int64_t)(loop->now - x->t_start);
                pool_report(c->s->srv, true);
            }
            if ((uint32_t)n < room)
                read_was_short(&up->io);
            if (response_head(c) < 0)
                return -1;
            if (c->state != CS_EXCH || c->s->up != up)
                return 1;   /* ended, or retried on another connection */
            if (response_body(c) < 0)
                return -1;
            if (c->state != CS_EXCH)
                return 1;
            progress = 1;
            if (x->flags & X_RESP_DONE)
                break;
            continue;
        }
        if (n == 0) {
            up->io.ready &= ~LOOP_READ;
            x->flags |= X_UP_EOF | X_NO_REUSE;
            if ((x->flags & X_RESP_HEAD) && x->resp_framing == HTTP_BODY_CLOSE) {
                x->flags |= X_RESP_DONE;
                return 1;
            }
            return upstream_failed(c, 0, false);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            up->io.ready &= ~LOOP_READ;
            break;
        }
        return upstream_failed(c, -errno, false);
    }
    return progress;
}

/* ---- client side ---------------------------------------------------------- */

static int body_too_large(struct client *c)
{
    char what[320];
    describe(c, what, sizeof what);
    log_error("info", "request body larger than --max-body-size %llu (%s)",
              (unsigned long long)cfg->max_body, what);
    return exchange_fail(c, 413, "body_too_large", "body larger than the limit");
}

/* Checks the request body bytes past body_ready: counts a Content-Length
 * body; scans a chunked one, dropping its trailer fields in place. */
static int request_body(struct client *c)
{
    struct exch *x = &c->s->x;
    uint32_t avail = c->in.end - x->body_ready;

    if ((x->flags & X_BODY_DONE) || !avail)
        return 0;
    if (x->req_framing == HTTP_BODY_LENGTH) {
        uint64_t k = avail < x->req_left ? avail : x->req_left;
        x->bytes_in += k;
        x->body_ready += (uint32_t)k;
        x->req_left -= k;
        if (!x->req_left)
            x->flags |= X_BODY_DONE;
        return 1;
    }
    size_t kept = 0;
    char *p = c->in.data + x->body_ready;
    ssize_t r = http_chunked_feed(&x->req_chunk, p, avail, &kept);
    if (r < 0) {
        char what[320];
        describe(c, what, sizeof what);
        log_error("warn", "malformed chunked request body (%s)", what);
        return exchange_fail(c, 400, "bad_request", "malformed chunked body");
    }
    uint32_t rest = avail - (uint32_t)r;
    x->bytes_in += (uint64_t)r;
    if (rest && kept != (size_t)r)
        memmove(p + kept, p + r, rest);
    c->in.end -= (uint32_t)r - (uint32_t)kept;
    x->body_ready += (uint32_t)kept;
    if (cfg->max_body && x->req_chunk.payload > cfg->max_body)
        return body_too_large(c);
    if ((x->flags & X_KEEP_BODY) && x->req_chunk.payload > x->route->retry->max_body)
        x->flags &= ~X_KEEP_BODY;   /* too large to keep: no retry */
    if (http_chunked_done(&x->req_chunk))
        x->flags |= X_BODY_DONE;
    return 1;
}

/* Reads request body bytes while they are wanted and there is room. */
static int client_recv_body(struct client *c)
{
    struct exch *x = &c->s->x;
    int progress = 0;

    if (x->flags & (X_BODY_DONE | X_ABANDON_BODY)) {
        if (c->io.ready & LOOP_HUP)
            return client_abort(c);   /* the client went away: cancel */
        return 0;
    }
    while (c->io.ready & LOOP_READ) {
        if (!buf_room(&c->in)) {
            uint32_t hs = c->in.start + x->head_len;
            if (!in_compactable(c))
                break;   /* full of unsent body: the write clock runs */
            x->flags &= ~X_KEEP_BODY;   /* making room loses the kept body */
            uint32_t d = x->body_sent - hs;
            memmove(c->in.data + hs, c->in.data + x->body_sent, c->in.end - x->body_sent);
            x->body_sent = hs;
            x->body_ready -= d;
            c->in.end -= d;
        }
        uint32_t room = buf_room(&c->in);
        ssize_t n = client_read(c, buf_tail(&c->in), room);
        if (n > 0) {
            c->in.end += (uint32_t)n;
            x->body_mark = loop->now;
            if ((uint32_t)n < room)
                read_was_short(&c->io);
            if (request_body(c) < 0)
                return -1;
            if (c->state != CS_EXCH)
                return 1;
            progress = 1;
            if (x->flags & X_BODY_DONE)
                break;
            continue;
        }
        if (n == 0)
            return client_abort(c);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            c->io.ready &= ~LOOP_READ;
            break;
        }
        return client_abort(c);
    }
    return progress;
}

/* Splice mode: moves the pipe's bytes to the client, once out is sent. */
static int client_splice(struct client *c)
{
    struct exch *x = &c->s->x;
    int progress = 0;

    while ((c->io.ready & LOOP_WRITE) && c->s->relay.len && !buf_len(&c->s->out)) {
        uint32_t want = c->s->relay.len;
        ssize_t n = relay_drain(&c->s->relay, c->io.fd);
        if (n > 0) {
            x->bytes_sent += (uint64_t)n;
            x->send_mark = loop->now;
            x->flags |= X_FINAL_SENT;
            if ((uint32_t)n < want)
                c->io.ready &= ~LOOP_WRITE;
            progress = 1;
            continue;
        }
        if (n == -EAGAIN) {
            c->io.ready &= ~LOOP_WRITE;
            break;
        }
        return client_abort(c);
    }
    return progress;
}

/* Sends queued heads and validated response body bytes to the client. */
static int client_send(struct client *c)
{
    struct exch *x = &c->s->x;
    if ((x->flags & X_SPLICE) && !buf_len(&c->s->out))
        return client_splice(c);   /* (a head still queued goes first, below) */
    uint32_t po = buf_len(&c->s->out);
    uint32_t pb = (x->flags & X_RESP_HEAD) ? x->resp_ready - c->s->uin.start : 0;

    if (po + pb == 0 || !(c->io.ready & LOOP_WRITE))
        return 0;
    if (pb > SEND_SLICE)
        pb = SEND_SLICE;
    struct iovec iov[2] = {
        {buf_head(&c->s->out), po},
        {c->s->uin.data + c->s->uin.start, pb},
    };
    ssize_t n = client_writev(c, po ? iov : iov + 1, (po ? 1 : 0) + (pb ? 1 : 0));
    if (n < 0) {
        if (errno == EINTR)
            return 1;
        if (errno == EAGAIN) {
            c->io.ready &= ~LOOP_WRITE;
            return 0;
        }
        return client_abort(c);
    }
    uint32_t k = (uint32_t)n < po ? (uint32_t)n : po;
    c->s->out.start += k;
    if (x->interim >= k) {
        x->interim -= k;
    } else {
        x->interim = 0;
        x->flags |= X_FINAL_SENT;
    }
    if ((uint32_t)n > k) {
        c->s->uin.start += (uint32_t)n - k;
        x->flags |= X_FINAL_SENT;
    }
    x->bytes_sent += (uint64_t)n;
    x->send_mark = loop->now;
    if (!buf_len(&c->s->out))
        c->s->out.start = c->s->out.end = 0;
    if ((x->flags & X_RESP_HEAD) && c->s->uin.start == c->s->uin.end)
        c->s->uin.start = c->s->uin.end = x->resp_ready = 0;
    if ((uint32_t)n < po + pb)
        c->io.ready &= ~LOOP_WRITE;
    return 1;
}

/* The exchange ended well: log, pool or close the upstream connection, and
 * wait for the next request (or close, when this one asked for it). */
static int exchange_done(struct client *c)
{
    struct exch *x = &c->s->x;

    log_exchange(c, x->status, "ok");
    if (c->s->up) {
        if (!(x->flags & (X_NO_REUSE | X_UP_EOF)) && (x->flags & X_REQ_SENT)) {
            pool_put_idle(c->s->up);
        } else {
            tls_close_notify(c->s->up->ssl);   /* a clean end: the session stays resumable */
            pool_close(c->s->up);
        }
        c->s->up = NULL;
    }
    buf_release(&c->s->uhead);
    buf_release(&c->s->uin);
    buf_release(&c->s->out);
    relay_close(&c->s->relay);
    if ((x->flags & X_CLOSE_AFTER) || draining) {
        c->state = CS_CLOSING;
        return 1;
    }
    c->in.start = x->body_ready;   /* past this request; pipelined bytes stay */
    c->t_first = loop->now;
    if (buf_len(&c->in)) {
        exch_reset(&c->s->x);       /* a pipelined request is waiting */
        c->state = CS_HEAD;
    } else {
        buf_release(&c->in);        /* idle: no buffer, no session */
        session_detach(c);
        c->state = CS_IDLE;
        c->cflags |= CF_SERVED;
    }
    return 1;
}

static int exchange_step(struct client *c)
{
    struct exch *x = &c->s->x;
    int progress = 0, r;

    if (c->s->up && c->s->up->connecting) {
        int err = pool_connect_step(c->s->up, tls_why, sizeof tls_why);
        if (err < 0)
            return upstream_failed(c, err, true);
        if (err > 0) {
            x->connect_ns = (int64_t)(loop->now - x->t_connect);
            progress = 1;
            if (x->flags & X_CONNECT)
                return connect_established(c);
        }
    }
    if ((x->flags & X_EXPECT) && !(x->flags & X_CONTINUE) && c->s->up && !c->s->up->connecting) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        buf_reserve(&c->s->out, BUF_SMALL);
        memcpy(buf_tail(&c->s->out), cont, sizeof cont - 1);
        c->s->out.end += sizeof cont - 1;
        x->interim += sizeof cont - 1;
        x->flags |= X_CONTINUE;
        progress = 1;
    }
    if ((r = client_recv_body(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    if ((r = upstream_send(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    progress |= hedge_step(c);
    if ((r = upstream_recv(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    if ((r = client_send(c)) < 0 || c->state != CS_EXCH)
        return r;
    progress |= r;
    if ((x->flags & X_RESP_DONE) && !client_pending(c) &&
        (x->flags & (X_REQ_SENT | X_ABANDON_BODY)))
        return exchange_done(c);
    return progress;
}

/* ---- forward proxy -----------------------------------------------------------
 *
 * A forward listener takes absolute-form requests (GET http://host/path) and
 * CONNECT host:port. Who may use it is an allow-list of client networks;
 * where it may go is checked on the address actually connected to, after
 * resolution, never on the name: loopback, private, link-local, unspecified,
 * multicast and reserved addresses (in every spelling addr_parse_ip reads)
 * are refused unless an allow_destinations network holds them, so a name
 * that resolves to 127.0.0.1 (DNS rebinding) gets 403 like 127.0.0.1 does. */

static int forward_refuse(struct client *c, int status, const char *reason, const char *why)
{
    char what[320];
    describe(c, what, sizeof what);
    log_error("info", "forward proxy: %s (%s)", why, what);
    respond_error_ex(c, status, reason, why,
                     status == 407 ? "Proxy-Authenticate: Basic realm=\"hourglass\"\r\n" : "");
    return 1;
}

/* Checks the client, its credentials and the target; 0 to go on (the
 * destination is in the session), else 1 after answering. */
static int forward_admit(struct client *c, const struct http_msg *m, bool is_connect)
{
    struct session *s = c->s;
    const struct cfg_forward *f = &cfg->fwd;
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
    s->fport = a.has_port ? a.port : 80;
    s->fhost[0] = '\0';
    if (a.is_ip) {
        s->faddr.ss = a.ip;
        addr_set_port(&s->faddr.ss, s->fport);
    } else if (addr_host_lower(s->fhost, sizeof s->fhost, a.host, a.host_len) < 0) {
        return forward_refuse(c, 400, "bad_request", "host name too long");
    }
    return 0;
}

/* Connects to addr (the checked destination) if it may be reached. */
static int forward_connect(struct client *c, const struct sockaddr_storage *ss)
{
    struct session *s = c->s;
    enum addr_class k = addr_classify((const struct sockaddr *)ss);
    if (k != ADDR_PUBLIC &&
        !addr_cidr_list_match(cfg->fwd.dests, cfg->fwd.ndests, (const struct sockaddr *)ss)) {
        char why[160], ip[INET6_ADDRSTRLEN];
        net_ip_text((const struct sockaddr *)ss, ip, sizeof ip);
        snprintf(why, sizeof why, "destination %s is a %s address", ip, addr_class_name(k));
        return forward_refuse(c, 403, "forbidden", why);
    }
    s->faddr.ss = *ss;
    s->faddr.len = addr_socklen((const struct sockaddr *)ss);
    net_addr_text((const struct sockaddr *)ss, s->faddr.text, sizeof s->faddr.text);
    s->fsrv = (struct pool_server){.addr = &s->faddr, .group = &forward_group, .weight = 1};
    return upstream_connect(c, false);
}

static void on_dns(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n)
{
    struct client *c = arg;
    struct exch *x = &c->s->x;
    x->flags &= ~X_RESOLVING;
    if (status == -ETIMEDOUT) {   /* c-ares gave up: every try of every server */
        char what[320], detail[320];
        describe(c, what, sizeof what);
        snprintf(detail, sizeof detail, "dns_timeout after %llu ms",
                 (unsigned long long)cfg->ms[TMO_DNS]);
        log_error("warn", "dns timeout: no DNS server answered for %s (%s)", c->s->fhost, what);
        exchange_fail(c, 504, "dns_timeout", detail);
    } else if (status < 0) {
        char what[320], detail[320];
        describe(c, what, sizeof what);
        snprintf(detail, sizeof detail, "cannot resolve %s: %s", c->s->fhost,
                 status == -ENOENT ? "no such name" : strerror(-status));
        log_error("info", "forward proxy: %s (%s)", detail, what);
        exchange_fail(c, 502, "dns_failed", detail);
    } else {
        /* the first address that may be reached; if none may, the refusal
         * names the first one */
        unsigned i = 0;
        while (i + 1 < n && addr_classify((const struct sockaddr *)&addrs[i]) != ADDR_PUBLIC &&
               !addr_cidr_list_match(cfg->fwd.dests, cfg->fwd.ndests,
                                     (const struct sockaddr *)&addrs[i]))
            i++;
        if (addr_classify((const struct sockaddr *)&addrs[i]) != ADDR_PUBLIC &&
            !addr_cidr_list_match(cfg->fwd.dests, cfg->fwd.ndests,
                                  (const struct sockaddr *)&addrs[i]))
            i = 0;
        forward_connect(c, &addrs[i]);
    }
    if (c->state != CS_CLOSED)
        pump(c);
}

/* Resolves the destination's name (an IP literal needs none), then
 * connects; DNS runs under the dns timeout, clamped by the total. */
static int forward_resolve(struct client *c)
{
    struct session *s = c->s;
    if (!s->fhost[0])
        return forward_connect(c, &s->faddr.ss);
    int r = dns_resolve(&s->dns, s->fhost, s->fport, on_dns, c);
    if (r < 0) {
        char detail[96];
        snprintf(detail, sizeof detail, "cannot resolve: %s", strerror(-r));
        return exchange_fail(c, 502, "dns_failed", detail);
    }
    s->x.flags |= X_RESOLVING;
    s->x.t_dns = loop->now;
    return 1;
}

/* CONNECT: the upstream connection is open, the tunnel begins. */
static int connect_established(struct client *c)
{
    static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
    struct exch *x = &c->s->x;
    buf_reserve(&c->s->out, BUF_SMALL);
    memcpy(buf_tail(&c->s->out), ok, sizeof ok - 1);
    c->s->out.end += sizeof ok - 1;
    x->status = 200;
    x->flags |= X_REQ_SENT | X_RESP_HEAD;
    x->first_byte_ns = (int64_t)(loop->now - x->t_start);
    pool_report(c->s->srv, true);
    tunnel_begin(c);
    return 1;
}

/* A complete request head is at in.start: check it and start the exchange. */
static int exchange_start(struct client *c, int head_len)
{
    struct exch *x = &c->s->x;
    struct http_msg *m = &scratch;
    struct http_info info;
    char detail[64];
    const char *base = c->in.data + c->in.start;

    x->head_len = (uint32_t)head_len;
    x->bytes_in = (uint32_t)head_len;
    x->method_len = m->method_len;
    x->target_off = (uint32_t)(m->target - base);
    x->target_len = m->target_len;
    x->t_start = loop->now;
    c->minor = (uint8_t)m->minor;
    c->state = CS_EXCH;
    x->flags |= X_CLOSE_AFTER;   /* until the head is known to be sound */

    int r = http_request_info(m, &info);
    const char *bad = NULL;
    bool is_connect = m->method_len == 7 && memcmp(m->method, "CONNECT", 7) == 0;
    if (r < 0)
        bad = r == -501 ? "unsupported transfer coding" : "bad framing or Host";
    else if (is_connect && !(c->cflags & CF_FORWARD))
        r = -501, bad = "CONNECT is not supported by a reverse proxy";
    else if (c->cflags & CF_FORWARD)
        ;   /* forward_admit checks the target */
    else if (!(m->target[0] == '/' ||
               (m->target_len == 1 && m->target[0] == '*' && m->method_len == 7 &&
                memcmp(m->method, "OPTIONS", 7) == 0))) {
        const char *a, *p;
        size_t al, pl;
        if (fwd_split_absolute(m->target, m->target_len, &a, &al, &p, &pl) < 0)
            r = -400, bad = "bad request target";
    }
    if (bad) {
        char what[320];
        describe(c, what, sizeof what);
        log_error("info", "bad request: %s (%s)", bad, what);
        snprintf(detail, sizeof detail, "%s", bad);
        respond_error(c, -r, "bad_request", detail);
        return 1;
    }
    if (c->cflags & CF_FORWARD) {
        if (forward_admit(c, m, is_connect))
            return 1;   /* answered: 400, 403 or 407 */
        x->route = &forward_route;
        x->flags |= X_FORWARD | X_NO_REUSE;
        goto routed;
    }
    /* Route by Host (or an absolute-form target's authority) and path. */
    const char *rh = info.host, *rp = m->target;
    size_t rhl = info.host_len, rpl = m->target_len;
    fwd_split_absolute(m->target, m->target_len, &rh, &rhl, &rp, &rpl);
    if (!rpl || rp[0] != '/') {   /* "http://h" and "http://h?q" have the path "/" */
        rp = "/";
        rpl = 1;
    }
    x->route = route_match(rh, rhl, rp, rpl);
    if (!x->route) {
        char what[320];
        describe(c, what, sizeof what);
        log_error("info", "no route for this request (%s)", what);
        respond_error(c, 404, "no_route", "no route matches this host and path");
        return 1;
    }
routed:
    if ((c->cflags & CF_TRUSTED) && cfg->deadline_header) {
        size_t dl = strlen(cfg->deadline_header);
        for (uint32_t i = 0; i < m->nfields; i++) {
            const struct http_field *f = &m->fields[i];
            uint64_t v;
            if (f->name_len == dl && strncasecmp(f->name, cfg->deadline_header, dl) == 0 &&
                http_parse_u64(f->value, f->value_len, &v) == 0) {
                x->client_total_ms = v;
                x->flags |= X_CLIENT_DEADLINE;
                break;
            }
        }
    }
    if (!info.conn_close)
        x->flags &= ~X_CLOSE_AFTER;
    if (http_method_is_head(m->method, m->method_len))
        x->flags |= X_HEAD_METHOD;
    if (http_method_idempotent(m->method, m->method_len))
        x->flags |= X_IDEMPOTENT;
    if (m->minor == 1 && info.framing == HTTP_BODY_NONE && m->method_len == 3 &&
        memcmp(m->method, "GET", 3) == 0 && fwd_wants_websocket(m))
        x->flags |= X_UPGRADE;
    if (info.expect_continue && m->minor == 1)
        x->flags |= X_EXPECT;
    x->req_framing = (uint8_t)info.framing;
    x->req_left = info.length;
    x->req_chunk.keep_framing = 1;
    /* A body the route may need to send again stays in `in` while it is
     * small enough (retry.max_body) and fits the buffer. */
    const struct conf_retry *rr = x->route->retry;
    if (rr && info.framing != HTTP_BODY_NONE &&
        ((x->flags & X_IDEMPOTENT) || rr->methods == CONF_METHODS_ALL) &&
        (info.framing != HTTP_BODY_LENGTH || info.length <= rr->max_body))
        x->flags |= X_KEEP_BODY;
    if (cfg->max_body && info.framing == HTTP_BODY_LENGTH && info.length > cfg->max_body) {
        x->flags |= X_CLOSE_AFTER;
        body_too_large(c);
        return 1;
    }
    x->body_sent = x->body_ready = c->in.start + (uint32_t)head_len;
    if (info.framing == HTTP_BODY_NONE)
        x->flags |= X_BODY_DONE;
    if (is_connect) {   /* forward: what follows the head is the tunnel's */
        x->flags |= X_CONNECT | X_BODY_DONE;
        return forward_resolve(c);
    }

    char ip[INET6_ADDRSTRLEN];
    size_t deadline_at = 0;
    unsigned dropped = 0;
    net_ip_text(&c->peer.sa, ip, sizeof ip);
    struct fwd_req fq = {
        .m = m,
        .info = &info,
        .client_ip = ip,
        .proto = c->ssl ? "https" : "http",
        .default_host = cfg->upstream[0].text,
        .strip_expect = true,
        .deadline_name = cfg->deadline_header,
        .deadline_strip_only = x->route->no_deadline_header,
        .upgrade = (x->flags & X_UPGRADE) != 0,
        .strip_proxy_auth = (x->flags & X_FORWARD) != 0,
        .deadline_at = &deadline_at,
        .keep_underscores = (c->cflags & CF_UNDERSCORES) != 0,
        .dropped = &dropped,
    };
    buf_reserve(&c->s->uhead, (uint32_t)head_len + 1024 > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    int n = fwd_request_head(c->s->uhead.data, c->s->uhead.cap, &fq);
    if (n < 0) {
        respond_error(c, 431, "bad_request", "request head too large to forward");
        return 1;
    }
    c->s->uhead.end = (uint32_t)n;
    x->deadline_at = (uint32_t)deadline_at;
    if (dropped)
        underscores_dropped(c, m, dropped);
    if (bulk(info.framing, info.length)) {
        /* The head moves to the front of a larger buffer; offsets follow. */
        uint32_t was = c->in.start;
        buf_reserve(&c->in, BUF_LARGE);
        x->body_sent -= was - c->in.start;
        x->body_ready -= was - c->in.start;
    }
    if (request_body(c) < 0)
        return -1;
    if (c->state != CS_EXCH)
        return 1;
    if (x->flags & X_FORWARD)
        return forward_resolve(c);
    return upstream_connect(c, true);
}

/* Counts and logs (at debug) the request fields fwd_request_head dropped
 * because their names have a '_'. */
static void underscores_dropped(struct client *c, const struct http_msg *m, unsigned n)
{
    stats->dropped_underscore += n;
    if (!log_enabled(LOG_DEBUG))
        return;
    char names[256], what[320];
    size_t o = 0;
    for (uint32_t i = 0; i < m->nfields && o + 2 < sizeof names; i++) {
        const struct http_field *f = &m->fields[i];
        if (!fwd_name_has_underscore(f))
            continue;
        int w = snprintf(names + o, sizeof names - o, "%s%.*s", o ? ", " : "",
                         (int)f->name_len, f->name);
        o = w < 0 ? o : o + (size_t)w;
    }
    names[sizeof names - 1] = '\0';
    describe(c, what, sizeof what);
    log_error("debug", "dropped %u request field%s with '_' in the name: %s (%s)", n,
              n == 1 ? "" : "s", names, what);
}

/* A plain HTTP request on a TLS port gets a plain 400 that says so (best
 * effort: one send), and its unread bytes are drained so that the close
 * does not turn into a reset that destroys the answer. */
static void plain_http_refusal(int fd)
{
    static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 51\r\nConnection: close\r\n\r\n"
                              "400 Bad Request: plain HTTP was sent to a TLS port\n";
    char sink[4096];
    (void)!send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
}

/* IDLE and HEAD: read and parse the next request head. */
static int head_step(struct client *c)
{
    int progress = 0;

    if (c->cflags & CF_HANDSHAKE) {
        char why[160];
        int r = tls_handshake(c->ssl, &c->io.ready, why, sizeof why);
        if (r == 0)
            return 0;
        if (r < 0) {
            struct peer_text pt;
            log_error("info", "TLS handshake with client %s failed: %s", peer_of(c, &pt), why);
            stats->tls[STATS_TLS_CLIENT][TLS_FAILED]++;
            if (r == -2)
                plain_http_refusal(c->io.fd);
            client_close(c);
            return -1;
        }
        stats->tls[STATS_TLS_CLIENT][tls_resumed(c->ssl) ? TLS_RESUMED : TLS_OK]++;
        c->cflags &= ~CF_HANDSHAKE;
        c->t_first = loop->now;   /* idle from here */
        progress = 1;
    }
    while (c->io.ready & LOOP_READ) {
        buf_reserve(&c->in, BUF_SMALL);
        if (!buf_room(&c->in)) {
            if (c->in.start) {
                buf_compact(&c->in);
            } else if (c->in.cap < BUF_LARGE) {
                buf_reserve(&c->in, BUF_LARGE);
            } else {
                break;   /* the parser refuses a head this large */
            }
        }
        uint32_t room = buf_room(&c->in);
        ssize_t n = client_read(c, buf_tail(&c->in), room);
        if (n > 0) {
            if (c->state == CS_IDLE) {
                session_attach(c);
                c->state = CS_HEAD;
                c->t_first = loop->now;
            }
            c->in.end += (uint32_t)n;
            progress = 1;
            if ((uint32_t)n < room)
                read_was_short(&c->io);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            c->io.ready &= ~LOOP_READ;
            break;
        }
        /* end of stream or error: fine between requests, an abort within one */
        if (c->state == CS_HEAD && buf_len(&c->in)) {
            struct peer_text pt;
            log_error("info", "client %s closed the connection within a request head",
                      peer_of(c, &pt));
            log_exchange(c, 400, "client_abort");
        }
        client_close(c);
        return -1;
    }
    if (c->state == CS_IDLE) {
        buf_release(&c->in);   /* idle connections hold no buffer */
        return progress;
    }
    struct exch *x = &c->s->x;
    if (!buf_len(&c->in) || buf_len(&c->in) == x->parsed_len)
        return progress;
    int r = http_parse_request(buf_head(&c->in), buf_len(&c->in), &scratch, &limits);
    if (r == HTTP_INCOMPLETE && !buf_room(&c->in) && c->in.start == 0 &&
        c->in.cap >= BUF_LARGE)
        r = -431;   /* limits set near their maximum can exceed the buffer */
    if (r == HTTP_INCOMPLETE) {
        x->parsed_len = buf_len(&c->in);
        return progress;
    }
    if (r < 0) {
        const char *detail = r == -414 ? "request line longer than --max-request-line"
                           : r == -431 ? "header fields over --max-header-size or --max-headers"
                           : r == -505 ? "only HTTP/1.0 and HTTP/1.1 are served"
                                       : "malformed request head";
        struct peer_text pt;
        log_error("info", "bad request from %s: %d, %s", peer_of(c, &pt), -r, detail);
        x->flags |= X_CLOSE_AFTER;
        respond_error(c, -r, "bad_request", detail);
        return 1;
    }
    return exchange_start(c, r);
}

/* CLOSING: finish sending, shut the write side, then discard input until the
 * client closes or the linger time is over, so that unread request bytes do
 * not turn the close into a reset that destroys the response in flight. */
static int closing_step(struct client *c)
{
    struct exch *x = &c->s->x;

    if (buf_len(&c->s->out)) {
        if (!(c->io.ready & LOOP_WRITE))
            return 0;
        struct iovec iov = {buf_head(&c->s->out), buf_len(&c->s->out)};
        ssize_t n = client_writev(c, &iov, 1);
        if (n < 0) {
            if (errno == EINTR)
                return 1;
            if (errno == EAGAIN) {
                c->io.ready &= ~LOOP_WRITE;
                return 0;
            }
            client_close(c);
            return -1;
        }
        c->s->out.start += (uint32_t)n;
        x->send_mark = loop->now;
        if (buf_len(&c->s->out)) {
            c->io.ready &= ~LOOP_WRITE;
            return 1;
        }
    }
    if (!(x->flags & X_LINGER)) {
        x->flags |= X_LINGER;
        buf_release(&c->s->out);
        buf_release(&c->in);
        buf_release(&c->s->uin);
        buf_release(&c->s->uhead);
        shut_write(c->io.fd, c->ssl);
        c->t_first = loop->now;
    }
    while (c->io.ready & LOOP_READ) {
        char sink[4096];
        ssize_t n = client_read(c, sink, sizeof sink);
        if (n > 0) {
            x->discarded += (uint32_t)n;
            if (x->discarded <= LINGER_MAX_BYTES)
                continue;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            c->io.ready &= ~LOOP_READ;
            return 0;
        }
        client_close(c);
        return -1;
    }
    return 0;
}

static void pump(struct client *c)
{
    for (;;) {
        int r;
        switch (c->state) {
        case CS_IDLE:
        case CS_HEAD:
            r = head_step(c);
            break;
        case CS_EXCH:
            r = exchange_step(c);
            break;
        case CS_CLOSING:
            r = closing_step(c);
            break;
        case CS_TUNNEL:
            r = tunnel_step(c);
            break;
        default:
            return;
        }
        if (c->state == CS_CLOSED)
            return;
        if (r <= 0)
            break;
    }
    arm(c);
}

static void on_client(struct loop_io *io, uint32_t events)
{
    struct client *c = container_of(io, struct client, io);
    tls_rearm(&c->tls_want, &c->io.ready, events, LOOP_READ, LOOP_WRITE);
    pump(c);
}

/* ---- listeners -------------------------------------------------------------- */

static void client_new(int fd, const struct sockaddr_storage *peer, uint8_t cflags,
                       struct tls_server *tls)
{
    struct client *c = free_clients;
    if (c)
        free_clients = c->next;
    else
        c = xmalloc(sizeof *c);
    *c = (struct client){0};
    timer_init(&c->timer, on_timer);
    if (loop_add(loop, &c->io, fd, on_client) < 0) {
        close(fd);
        c->next = free_clients;
        free_clients = c;
        return;
    }
    if (tls) {
        if (!(c->ssl = tls_server_conn(tls, fd))) {
            log_error("error", "TLS: out of memory for a new connection; closing it");
            loop_close(loop, &c->io);
            c->next = free_clients;
            free_clients = c;
            return;
        }
        cflags |= CF_HANDSHAKE;
    }
    memcpy(&c->peer, peer, peer->ss_family == AF_INET6 ? sizeof c->peer.v6 : sizeof c->peer.v4);
    c->state = CS_IDLE;
    c->cflags = cflags;
    c->t_first = loop->now;
    c->next = clients;
    if (clients)
        clients->prev = c;
    clients = c;
    nclients++;
    arm(c);
}

static void accept_all(void)
{
    for (unsigned i = 0; i < nlisteners; i++) {
        struct listener *ls = &listeners[i];
        while (ls->io.ready & LOOP_READ) {
            if (nclients >= cfg->max_connections) {
                accept_paused = true;   /* they wait in the listen queue */
                return;
            }
            struct sockaddr_storage peer;
            socklen_t len;
            int fd = net_accept(ls->io.fd, &peer, &len);
            if (fd >= 0) {
                client_new(fd, &peer,
                           (ls->trust_deadline ? CF_TRUSTED : 0) | (ls->forward ? CF_FORWARD : 0) |
                               (ls->underscores ? CF_UNDERSCORES : 0),
                           ls->tls);
                continue;
            }
            if (fd == -EAGAIN) {
                ls->io.ready &= ~LOOP_READ;
            } else if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                log_error("error", "accept on %s: %s; retrying in 100 ms (raise the open "
                                   "file limit with ulimit -n, or lower --max-connections)",
                          ls->addr->text, strerror(-fd));
                loop_timer_at(loop, &accept_retry, loop->now + ACCEPT_RETRY_NS);
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
    accept_all();
}

static void on_accept_retry(struct timer *t)
{
    (void)t;
    accept_all();
}

static uint64_t trim_tick_at;

/* The gauges of this process into its stats slot, for the /metrics of
 * whichever worker answers the scrape. */
static void publish_gauges(void)
{
    unsigned npools, idle[STATS_MAX_POOLS];
    struct pool_group *gs = pool_groups(&npools);
    if (npools > STATS_MAX_POOLS)
        npools = STATS_MAX_POOLS;
    for (unsigned i = 0; i < npools; i++) {
        idle[i] = 0;
        for (unsigned k = 0; k < gs[i].nservers; k++)
            idle[i] += gs[i].servers[k].nidle;
    }
    stats_publish(nclients, pool_open_count(), idle, npools);
}

static void on_trim(struct timer *t)
{
    bool tick = loop->now >= trim_tick_at;
    if (tick) {
        trim_tick_at = loop->now + TRIM_NS;
        publish_gauges();
    }
    int r = buf_trim(tick);
    if (r == 2)
        loop_timer_at(loop, t, loop->now + 10 * MS);   /* next slice */
    else if (r == 1)
        loop_timer_at(loop, t, trim_tick_at);
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
        while (g->wait_head && pool_slots_free(g)) {
            struct client *c = g->wait_head;
            wait_dequeue(c);
            upstream_connect(c, true);
            if (c->state == CS_EXCH && (c->s->x.flags & X_WAIT_SLOT))
                break;   /* queued again: the slot went elsewhere */
            if (c->state != CS_CLOSED)
                pump(c);
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
    publish_gauges();
    struct stats_gauges g = {
        .npools = npools, .pool_names = pool_names,
        .nroutes = nroutes, .route_names = route_names,
    };
    return stats_render(out, cap, &g);
}

static bool admin_healthy(void)
{
    return !draining;
}

static void on_drain_over(struct timer *t)
{
    (void)t;
    log_error("warn", "drain timeout: cutting %u connection(s) still open", nclients);
    loop->stop = 1;
}

/* SIGTERM/SIGINT: stop accepting, close idle connections, let requests in
 * flight finish (then close their connections), and stop when none is left
 * or the drain timeout has passed. */
static void drain_begin(void)
{
    draining = true;
    for (unsigned i = 0; i < nlisteners; i++)
        loop_close_shared(loop, &listeners[i].io);
    struct client *c = clients, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CS_IDLE) {
            /* Between requests a connection is closed at once, unless a
             * request is already waiting in it. One accepted a moment ago
             * has not had the time to send its first request: it gets
             * DRAIN_GRACE for that (then the idle timeout closes it), so a
             * retiring worker never resets a client that did nothing wrong. */
            char b;
            ssize_t n = recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n > 0)
                continue;   /* served, with Connection: close */
            if (n == 0 || (c->cflags & CF_SERVED)) {
                tls_close_notify(c->ssl);
                client_close(c);
                continue;
            }
            uint64_t by = loop->now + DRAIN_GRACE_NS;
            if (c->t_first + ns_of(cfg->ms[TMO_IDLE]) > by) {
                c->t_first = by - ns_of(cfg->ms[TMO_IDLE]);
                arm(c);
            }
        } else if (c->s)
            c->s->x.flags |= X_CLOSE_AFTER;   /* answered with Connection: close */
    }
    log_error("info", "draining: no longer accepting; %u connection(s) to finish within %llu ms",
              nclients, (unsigned long long)cfg->drain_ms);
    loop_timer_at(loop, &drain_timer, loop->now + ns_of(cfg->drain_ms));
}

/* Loads listener i's certificates (checked once already when the file was
 * read, but a file may have changed since). NULL after logging why. */
static struct tls_server *listener_tls(unsigned i)
{
    char err[512];
    unsigned bad = 0;
    int bad_key = 0;
    struct tls_server *t = tls_server_new(cfg->listen_tls[i], err, sizeof err, &bad, &bad_key);
    if (!t)
        log_error("error", "TLS on %s: %s", cfg->listen[i].text, err);
    return t;
}

/* SIGHUP without a master: the certificate files are read again. New
 * connections use them; open ones keep theirs. All or nothing. */
static void reload_certificates(void)
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
        bool any_tls = false;
        for (unsigned i = 0; i < nlisteners; i++)
            any_tls |= listeners[i].tls != NULL;
        if (any_tls)
            reload_certificates();
        else
            log_error("warn", "SIGHUP ignored: reloading needs the master process (started "
                              "without --single-process)");
    }
    if (l->sig_usr2 && !draining) {
        admin_close_listener();   /* the new generation answers scrapes */
        drain_begin();
    }
    if (l->sig_term && !draining)
        drain_begin();
    else if (l->sig_term > 1)
        l->stop = 1;   /* a second signal: stop now */
    if (draining && !nclients)
        l->stop = 1;
    wake_waiters();
    if (accept_paused && nclients < cfg->max_connections && !draining)
        accept_all();
    if (!trim_timer.armed) {
        if (trim_tick_at <= loop->now)
            trim_tick_at = loop->now + TRIM_NS;
        loop_timer_at(loop, &trim_timer, trim_tick_at);
    }
    log_flush();
}

int px_init(struct loop *l, const struct cfg *c, const struct px_fds *fds)
{
    loop = l;
    cfg = c;
    limits = (struct http_limits){
        .max_line = c->max_request_line,
        .max_head = c->max_request_line + 2 + c->max_header_size,
        .max_block = c->max_header_size,
        .max_fields = c->max_headers,
    };
    resp_limits = (struct http_limits){
        .max_line = http_default_limits.max_line,
        .max_head = c->max_response_header_size,
        .max_fields = c->max_response_headers,
    };
    memcpy(default_policy.ms, c->ms, sizeof default_policy.ms);
    if (pool_init(l, c) < 0 || route_init(c) < 0)
        return -EINVAL;
    health_init(l, c);
    forward_group.idle_ns = ns_of(c->ms[TMO_UPSTREAM_IDLE]);
    forward_route = (struct route){.path = "/", .path_len = 1, .pool = &forward_group,
                                   .policy = default_policy, .no_deadline_header = true};
    bool any_forward = false;
    for (unsigned i = 0; i < c->nlisten; i++)
        any_forward |= c->listen_forward[i];
    if (any_forward) {
        /* c-ares doubles its per-try timeout each round: 3 tries of d/7
         * give up together with our own dns timeout (d/7 + 2d/7 + 4d/7) */
        unsigned try_ms = (unsigned)(c->ms[TMO_DNS] / 7 > 50 ? c->ms[TMO_DNS] / 7 + 1 : 50);
        struct dns_config dc = {.servers = c->fwd.resolver, .try_ms = try_ms, .tries = 3};
        if (dns_init(l, &dc) < 0)
            return -EINVAL;
        if (c->fwd.auth_file) {
            char err[512];
            if (!(proxy_auth = auth_load(c->fwd.auth_file, err, sizeof err))) {
                log_error("error", "proxy auth file: %s", err);
                return -EINVAL;
            }
        }
    }
    if (c->has_admin &&
        admin_init(l, &c->admin, fds ? fds->admin : -1, render_metrics, admin_healthy) < 0)
        return -EINVAL;
    timer_init(&accept_retry, on_accept_retry);
    timer_init(&trim_timer, on_trim);
    timer_init(&drain_timer, on_drain_over);
    l->on_iteration_end = on_iteration_end;
    for (unsigned i = 0; i < c->nlisten; i++) {
        const struct cli_addr *a = &c->listen[i];
        int fd = fds ? fds->listen[i] : net_listen((const struct sockaddr *)&a->ss, a->len, 4096);
        if (fd < 0) {
            log_error("error", "cannot listen on %s: %s%s", a->text, strerror(-fd),
                      fd == -EADDRINUSE ? " (is another process using the port? "
                                          "find it with: ss -ltnp)" : "");
            return fd;
        }
        listeners[i].addr = a;
        listeners[i].trust_deadline = c->listen_trust[i];
        listeners[i].forward = c->listen_forward[i];
        listeners[i].underscores = c->listen_underscores[i];
        if (c->listen_tls[i] && !(listeners[i].tls = listener_tls(i))) {
            close(fd);
            return -EINVAL;
        }
        int r = loop_add_listener(l, &listeners[i].io, fd, on_accept);
        if (r < 0) {
            close(fd);
            return r;
        }
        nlisteners++;
    }
    return 0;
}

void px_shutdown(void)
{
    while (clients)
        client_close(clients);
    health_stop();
    admin_stop();
    pool_close_idle();
    for (unsigned i = 0; i < nlisteners; i++) {
        loop_close_shared(loop, &listeners[i].io);
        tls_server_free(listeners[i].tls);
        listeners[i].tls = NULL;
    }
    nlisteners = 0;
    loop_timer_stop(loop, &accept_retry);
    loop_timer_stop(loop, &trim_timer);
    loop_timer_stop(loop, &drain_timer);
    /* run the deferred releases, then free the recycled structs */
    while (loop->defer) {
        struct loop_defer *d = loop->defer;
        loop->defer = d->next;
        d->cb(d);
    }
    while (free_clients) {
        struct client *c = free_clients;
        free_clients = c->next;
        free(c);
    }
    while (free_sessions) {
        struct session *s = free_sessions;
        free_sessions = s->next_free;
        free(s);
    }
    nfree_sessions = 0;
    pool_free_structs();
    route_free();
    dns_shutdown();
    auth_free(proxy_auth);
    proxy_auth = NULL;
    log_flush();
}
