/* px.h -- the request path's shared types and state: the client
 * connection, its session and the exchange it carries.
 *
 * The modules of src/proxy/ each own a part of one request's path (see
 * docs/DESIGN.md): client.c the HTTP/1.1 connection, exchange.c the
 * request's fate and deadlines, attempt.c one upstream try, hedge.c the
 * second try, tunnel.c relayed bytes, forward.c the forward proxy,
 * access.c the access log, listener.c accepting. They share these structs;
 * everything runs on one loop in one thread, so the state below has no
 * locks. Every clock of an exchange is in struct tmo_clocks (tmo.h). */
#ifndef HG_PX_H
#define HG_PX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "buf.h"
#include "cfg.h"
#include "conn.h"
#include "dns.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "relay.h"
#include "route.h"
#include "tls.h"
#include "tmo.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

#define LINGER_NS (2000 * MS)          /* discard input after an error reply */

/* Body bytes handed to the kernel per sendmsg. Measured on loopback, 1 MiB
 * responses: 64 KiB writes cost 0.50 s of CPU per GiB relayed, 32 KiB writes
 * 0.24 (nginx, same run: 0.29). Reads stay at up to 64 KiB. */
#define SEND_SLICE (32u * 1024)

/* CS_H2: an HTTP/2 connection (h2.h); its streams are clients of their own
 * (CF_STREAM) in EXCH or CLOSING. */
enum cstate { CS_IDLE, CS_HEAD, CS_EXCH, CS_CLOSING, CS_TUNNEL, CS_H2, CS_CLOSED };

/* What the request is (exch.req): set once, when its head is checked. */
#define R_HEAD_METHOD     0x01u  /* HEAD: the response has no body */
#define R_IDEMPOTENT      0x02u  /* a method that may be sent twice */
#define R_EXPECT          0x04u  /* the client awaits 100 Continue */
#define R_UPGRADE         0x08u  /* a WebSocket upgrade: a 101 turns it into a tunnel */
#define R_FORWARD         0x10u  /* forward proxy: the destination is the client's */
#define R_CONNECT         0x20u  /* ... a CONNECT: a tunnel once connected */
#define R_CLIENT_DEADLINE 0x40u  /* total capped by a trusted client's header */
#define R_GRPC            0x80u  /* a gRPC call (content-type application/grpc...):
                                    answered in gRPC statuses, grpc-timeout honoured */

/* Where the exchange stands (exch.flags). */
#define X_BODY_DONE    0x00001u  /* whole request body received and checked */
#define X_REQ_SENT     0x00002u  /* request head and body handed to the upstream */
#define X_RESP_HEAD    0x00004u  /* final response head parsed */
#define X_RESP_DONE    0x00008u  /* whole response body received */
#define X_FINAL_SENT   0x00010u  /* a byte of the final response reached the client */
#define X_UP_EOF       0x00020u  /* upstream closed its side */
#define X_NO_REUSE     0x00040u  /* the upstream connection must not be pooled */
#define X_CLOSE_AFTER  0x00080u  /* close the client connection after this response */
#define X_TRAILERS     0x00100u  /* an HTTP/2 upstream's trailers were handed over */
#define X_CONTINUE     0x00200u  /* 100 Continue queued */
#define X_DECHUNK      0x00400u  /* decode a chunked response for an HTTP/1.0 client */
#define X_RETRY_SKIPPED 0x00800u /* a retry or hedge was not started: too little time left */
#define X_CLIENT_CLOSE 0x01000u  /* the client's request said Connection: close (or was
                                    HTTP/1.0 without keep-alive) */
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
#define X_BUFFERING 0x2000000u  /* reading the body whole before dispatch (reqbuf.h) */
#define X_RESOLVING 0x20000000u  /* ... its name is being resolved (TMO_DNS) */

/* Tunnel flags (exch.tflags): which end has finished its direction. */
#define T_CEOF  0x1u   /* the client sent its end of stream */
#define T_UEOF  0x2u   /* the upstream did */
#define T_USHUT 0x4u   /* ... passed on: write side of the upstream shut */
#define T_CSHUT 0x8u   /* ... write side of the client shut */

/* Of the time left, this much is kept for this hop (relaying the answer)
 * when the rest is passed on: the next hop times out first. */
#define DEADLINE_HOP_MARGIN_MS 5

/* A request body kept for sending again to an HTTP/2 pool (a stream the
 * server refused unprocessed) when the route's retry policy keeps none. */
#define KEEP_BODY_H2 (64u * 1024)

/* The total of a gRPC call without grpc-timeout on a grpc.streaming route:
 * none in effect (115 days, still ten digits in the deadline header). */
#define GRPC_NO_TOTAL_MS 9999999999ull

/* Content-Length bodies at least this large are spliced, not copied.
 * Measured on loopback, CPU per GiB relayed: 1 MiB bodies, copy 0.25 s and
 * splice 0.27 (setting up the pipe does not pay); 64 MiB bodies, copy 0.41
 * and splice 0.36 (nginx, same run: 0.29 and 0.40). */
#define SPLICE_MIN (4u * 1024 * 1024)

/* Where the time of an exchange went (observe.h): zeroed with it. */
#define OBS_TRIES 8            /* attempts listed in the access log; then "+N" */
#define OBS_RID_CAP 65         /* a request ID: TRACE_RID_MAX characters and a NUL */

enum obs_from { OBS_FROM_NONE, OBS_FROM_ROUTE, OBS_FROM_HEADER, OBS_FROM_GRPC };

struct exch_obs {
    char rid[OBS_RID_CAP];     /* the request ID; "" until set (observe.h) */
    char trace_id[33];         /* a valid traceparent's trace ID; "" for none */
    uint8_t deadline_from;     /* enum obs_from: what set the total deadline */
    bool queued;               /* waited for a connection slot at least once */
    bool dispatched;           /* left_ns is set */
    uint64_t queued_at;        /* ns: in the pool's queue since (X_WAIT_SLOT) */
    uint64_t queue_ns;         /* all its waits in the pool's queue */
    uint64_t left_ns;          /* of the total deadline at its first dispatch */
    const char *shed;          /* an admission reason noted before the end
                                  (observe.h obs_shed_note), or NULL */
    uint8_t ntries;
    unsigned tries_more;
    struct log_try tries[OBS_TRIES];   /* (log.h) outcome NULL: still running */
};

/* The state of one exchange; zeroed when the next one starts. */
struct exch {
    uint32_t flags;                    /* X_*: where it stands */
    uint8_t req;                       /* R_*: what the request is */
    uint32_t head_len;                 /* request head at in.start */
    uint32_t method_len, target_off, target_len;
    uint32_t body_sent, body_ready;    /* offsets in in.data */
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
    int64_t connect_ns, first_byte_ns; /* -1: not applicable */
    struct tmo_clocks clk;             /* when each clock started (tmo.h) */
    struct tmo_limits lim;             /* the durations that apply to it */
    const struct route *route;         /* NULL until the head is checked; a forward
                                        * request takes none (forward.h) */
    const struct pool_server *avoid;   /* the server of the failed attempt */
    uint64_t client_total_ms;          /* with R_CLIENT_DEADLINE */
    uint64_t bytes_in;                 /* request bytes received from the client */
    int64_t sent_ns;                   /* whole request handed over; -1: not yet */
    uint32_t deadline_at;              /* uhead offset of the deadline value; 0: none */
    uint32_t grpc_at;                  /* ... of the grpc-timeout value; 0: none */
    int64_t grpc_timeout_ms;           /* R_GRPC: the client's grpc-timeout; -1: none */
    int grpc_status;                   /* R_GRPC: the call's status; -1: not known */
    const char *end_reason;            /* exchange_fail's reason (a gRPC cut's message) */
    uint8_t tflags;                    /* T_*, in state TUNNEL */
    struct exch_obs obs;               /* where the time went (observe.h) */
};

/* What a connection holds only while a request is in flight (states HEAD,
 * EXCH and CLOSING): recycled through a free list, so that an idle
 * keep-alive connection costs a struct client and nothing more. */
/* One upstream try of an exchange: a connection to one server, the bytes
 * it answered, and how much of the request head it was sent. An exchange
 * holds two: the attempt whose response is relayed, and a hedge racing it
 * for the response head; promoting the hedge swaps their roles (an index),
 * never their fields. */
struct attempt {
    struct upconn *up;         /* NULL: none yet (or waiting for a slot) */
    struct pool_server *srv;   /* the server it goes to */
    uint64_t started;          /* ns: when it began (its latency, pool_report) */
    struct buf in;             /* bytes from the upstream */
    uint32_t head_off;         /* bytes of the request head (uhead) sent on it */
    uint64_t sent_at;          /* ns: its whole request handed over; 0: not yet */
    uint8_t try_ix;            /* its entry in x.obs.tries, plus 1; 0: none open */
    bool hedge;                /* it began as a hedge (hedge_start) */
};

/* One address of a destination: an answer for its name, or its IP literal
 * (the room of its family, not of a sockaddr_storage). */
union fwd_ip {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

/* Where a forward request goes, as its client named it: held in the
 * session, set anew by forward_admit for each request. The name is
 * resolved into ips, and one of them, the first the forward proxy may
 * reach, is chosen into addr. Nothing else is shared with a pool server:
 * the attempt connects to addr as to an address of no pool (pool.h: no
 * TLS, no reuse, no balancing or health). */
struct fwd_dest {
    char name[256];                   /* to resolve, lower case; "": an IP literal */
    uint16_t port;
    struct dns_query dns;             /* resolving name (X_RESOLVING) */
    union fwd_ip ips[DNS_MAX_ADDRS];  /* the answers, or the IP literal */
    unsigned nips;
    struct cli_addr addr;             /* the address chosen: checked, connected to */
    unsigned at;                      /* its index in ips */
    bool chosen;                      /* addr is set */
};

/* What moving bytes on an attempt came to. An attempt never ends the
 * exchange, closes the client or retries: it returns one of these (and, for
 * AT_FAILED, fills the session's fault), and the exchange decides. */
enum at_outcome {
    AT_IDLE = 0,   /* nothing could move */
    AT_MOVED,      /* bytes moved (or the connection was opened) */
    AT_HEAD,       /* a final response head was accepted: a hedge has lost */
    AT_UPGRADE,    /* a 101 to a WebSocket upgrade was accepted: a tunnel */
    AT_FAILED,     /* the attempt failed: session.fault says how */
};

/* How an attempt failed. */
enum fault_kind {
    FAULT_CONNECT = 1,     /* err: refused, unreachable...; -EPROTO: TLS handshake */
    FAULT_IO,              /* err: reset, broken...; 0: closed before the end */
    FAULT_RESPONSE,        /* a malformed response (why) */
    FAULT_HEAD_TOO_LARGE,  /* a response head over the limits (why) */
    FAULT_STATUS,          /* a final status the route retries (status) */
    FAULT_NO_SERVER,       /* no server of the pool in service */
    FAULT_GRPC_HTTP,       /* a gRPC call answered with an HTTP error and no grpc-status */
    /* the proxy's own side */
    FAULT_LOCAL,           /* err: no socket for the attempt (EMFILE, ENFILE, ENOBUFS,
                              ENOMEM, EADDRNOTAVAIL: net_local_exhausted); the server
                              was never asked */
    /* the client's side of the exchange */
    FAULT_CLIENT_GONE,     /* the client closed or reset its connection */
    FAULT_BODY_TOO_LARGE,  /* the request body is over --max-body-size */
    FAULT_BAD_BODY,        /* a malformed chunked request body */
};

struct fault {
    uint8_t kind;          /* enum fault_kind */
    int err;               /* negative errno, or 0 */
    int status;
    char why[128];
};

struct session {
    struct buf out;    /* bytes for the client before the body: heads, errors */
    struct buf uhead;  /* the request head for the upstream (kept for a retry) */
    struct relay relay;  /* the response body's pipe, in splice mode */
    struct attempt att[2];           /* the two attempts' storage */
    struct attempt *at, *hg;         /* the one relayed, the hedge (into att[]):
                                        promoting the hedge swaps them */
    struct pool_waiter waiter;       /* in its pool's queue (X_WAIT_SLOT) */
    struct fault fault;              /* the last attempt failure (AT_FAILED) */
    struct tmo_set tmo;
    struct exch x;
    struct session *next_free;
    struct fwd_dest fwd;             /* forward proxy: where this request goes
                                        (last: a new session zeroes all before it) */
};

struct h2c;

struct client {
    struct conn conn;  /* the socket, its readiness, TLS on TLS listeners */
    struct timer timer;
    struct loop_defer defer;
    struct client *next, *prev;
    struct client *ev_next, *ev_prev;  /* in its eviction list (evict.h), oldest first */
    struct buf in;     /* bytes from the client; the request head stays at in.start */
    struct session *s; /* NULL exactly when IDLE (or CLOSED) */
    uint64_t t_first;  /* IDLE: idle since; HEAD: first byte; CLOSING: linger start */
    uint8_t state;
    uint8_t minor;     /* the client's HTTP minor version */
    uint16_t cflags;   /* CF_* */
    uint8_t ev_class;  /* its eviction list: EV_* (evict.h) */
    struct h2c *h2;    /* CS_H2: the HTTP/2 session (h2.c) */
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
#define CF_TLS     0x10u  /* came in on a TLS listener */
#define CF_UNDERSCORES 0x20u /* its listener passes on fields named with '_' */
#define CF_HTTP2   0x40u  /* its listener speaks HTTP/2 too (ALPN h2, h2c prior knowledge) */
#define CF_STREAM  0x80u  /* an HTTP/2 stream (h2.h), not a connection of its own */
#define CF_TRUST_RID 0x100u /* its listener takes the client's X-Request-Id (trust_request_id) */


/* Whether room can be made in uin by moving its unsent bytes to the front:
 * always for a response head (it is parsed in one piece), but for a body
 * only when a few bytes are left to move. Else the relay waits for the
 * client to take them all (uin then starts over at 0): a wait the socket
 * buffers absorb, where compacting cost a copy of most body bytes. */
#define COMPACT_MAX 4096u

/* Shared state of this process's request path (px.c). */
extern struct loop *px_loop;
extern const struct cfg *px_cfg;
extern struct http_msg px_scratch;          /* the head being parsed */
extern struct http_limits px_req_limits;    /* request head limits */
extern struct http_limits px_resp_limits;   /* response head limits */
extern struct route_policy px_default_policy; /* before a route is chosen */
extern bool px_draining;                    /* SIGTERM: finishing, not accepting */
extern struct client *px_clients;           /* every open client */
extern unsigned px_nclients;

/* Sets the state above from the configuration (the limits and the default
 * policy). Called once by the worker before anything else. */
void px_configure(struct loop *l, const struct cfg *c);

/* Records how the exchange's attempt or client failed (the session's
 * fault) and returns AT_FAILED: exchange_on_fault decides what follows. */
static inline int px_fault(struct client *c, enum fault_kind kind, int err)
{
    c->s->fault = (struct fault){.kind = (uint8_t)kind, .err = err};
    return AT_FAILED;
}

/* The attempt whose response the client gets, and the hedge racing it
 * (hedge->up NULL: none). */
static inline struct attempt *px_att(const struct session *s)
{
    return s->at;
}

static inline struct attempt *px_hedge(const struct session *s)
{
    return s->hg;
}

/* Where the exchange's attempt connects, the one thing the attempt asks of
 * its destination besides its server (srv, NULL for a forward destination,
 * which belongs to no pool): the pool server's address, or the address the
 * forward destination chose; NULL while neither is known. */
static inline const struct cli_addr *px_dest_addr(const struct session *s)
{
    const struct pool_server *srv = px_att(s)->srv;
    return srv ? srv->addr : s->fwd.chosen ? &s->fwd.addr : NULL;
}

/* The same as logs print it, or `none`. */
static inline const char *px_dest_text(const struct session *s, const char *none)
{
    const struct cli_addr *a = px_dest_addr(s);
    return a ? a->text : none;
}

static inline uint64_t ns_of(uint64_t ms) { return ms * MS; }
static inline int64_t ms_of(uint64_t ns) { return (int64_t)(ns / MS); }

static inline bool attempt_uin_compactable(const struct client *c)
{
    const struct buf *b = &px_att(c->s)->in;
    return b->start > 0 && (!(c->s->x.flags & X_RESP_HEAD) || b->end - b->start <= COMPACT_MAX);
}

static inline bool attempt_uin_room(const struct client *c)
{
    if (c->s->x.flags & X_SPLICE)
        return relay_room(&c->s->relay);
    return !px_att(c->s)->in.data || buf_room(&px_att(c->s)->in) || attempt_uin_compactable(c);
}

/* The same for the request body in `in`: bytes already sent upstream are
 * reclaimed by moving the unsent rest behind the head, when it is short. */
static inline bool client_in_compactable(const struct client *c)
{
    const struct exch *x = &c->s->x;
    return x->body_sent > c->in.start + x->head_len && c->in.end - x->body_sent <= COMPACT_MAX;
}

static inline bool client_in_room(const struct client *c)
{
    return !c->in.data || buf_room(&c->in) || client_in_compactable(c);
}

static inline uint32_t client_pending(const struct client *c)
{
    uint32_t n = buf_len(&c->s->out) + c->s->relay.len;
    if (c->s->x.flags & X_RESP_HEAD)
        n += c->s->x.resp_ready - px_att(c->s)->in.start;
    return n;
}

#endif
