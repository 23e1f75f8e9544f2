/* pool.h -- upstream servers, the choice among them (balancing, slow start,
 * passive health: pool_balance.c), and the pool of idle
 * keep-alive connections to them; and the state the requests sent to a pool
 * share: their count in flight and the retries among them (the retry
 * budget), and the queue of those waiting for a connection slot. That state
 * changes only through the functions below; a request holds only its place
 * in it (a struct pool_waiter, its own flags).
 *
 * An upstream connection (struct upconn) is owned either by one exchange
 * (owner != NULL; its events go to owner's handler) or by the pool (idle).
 * An idle connection that becomes readable has been closed by the server or
 * sent bytes nobody asked for: either way it is discarded at once, so a stale
 * connection is rarely handed out. Idle connections hold no buffers.
 *
 * An attempt connects to a server of a pool, or to an address of no pool
 * (the forward proxy's destinations, named by their clients): it then holds
 * the address and a NULL server. Such a connection (pool_connect_addr) has
 * up->srv NULL, no TLS, and is never pooled; the functions below that take
 * an attempt's server take NULL for it: no idle connection, no connection
 * limit, no health to keep. It counts in pool_open_count only.
 *
 * Dynamic servers. A server item written as an IP literal is one server, in
 * service for the pool's life. One written as a host name or an SRV name (a
 * struct pool_name) owns POOL_NAME_SLOTS slots of its pool's servers array,
 * which the resolver (resolve.c) fills with the addresses of the name's
 * answers and empties as they change, through pool_slot_*. The array is
 * allocated once by pool_init and never moves, because a struct
 * pool_server is named by pointer: by an attempt (its srv), an upstream
 * connection or stream (up->srv), an HTTP/2 connection (hc->srv), a health
 * checker, and a retry's x->avoid. A slot is in one of three states:
 *
 *   UNUSED      no address; refers to nothing and nothing refers to it.
 *   IN_SERVICE  an address of the name's last good answer; picked by the
 *               balancing like any server (unless ejected, down or, from an
 *               SRV name, standing by for a lower priority).
 *   LEAVING     its address left the answer: never picked again; the
 *               requests it carries finish; its idle HTTP/1.1 connections
 *               were closed when it left, and its HTTP/2 connections close
 *               as their last stream ends; never pooled again.
 *
 * A leaving slot may take another address (pool_slot_join) only once it is
 * free (pool_slot_free): no connection or stream owned by an exchange
 * (active == 0), no idle connection, no HTTP/2 connection. Its address
 * comes back into service in the same slot whether free or not. What may
 * still name a free slot is only compared or printed, never connected to:
 * x->avoid (compared to the next pick), and the attempt of a request that
 * waits for a connection slot or a backoff, which picks again before it
 * connects. Such a name may print the slot's new address in a log line
 * after the slot was reused; it never holds the slot. */
#ifndef HG_POOL_H
#define HG_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "cfg.h"
#include "conn.h"
#include "loop.h"
#include "poolshm.h"
#include "tls.h"

struct upconn;
typedef void pool_event_cb(struct upconn *up, uint32_t events);
struct pool_group;
struct h2u_conn;

/* The state of a server slot (see "Dynamic servers" above). */
enum pool_slot { POOL_SLOT_UNUSED = 0, POOL_SLOT_IN_SERVICE, POOL_SLOT_LEAVING };

struct pool_name;

struct pool_server {
    const struct cli_addr *addr;   /* a static server's, or &own */
    struct pool_group *group;
    struct upconn *idle;     /* most recently used first */
    unsigned nidle;
    unsigned weight;         /* 1..1000 */
    int cur;                 /* smooth weighted round-robin state */
    unsigned active;         /* connections owned by exchanges now */
    /* its health (passive ejections, the active checks' verdict, when it
     * came back): one record for all the workers of the generation, in
     * their shared area (poolshm.h), or `own_health` (past that area's
     * bounds, or in a pool with servers written as names, which each worker
     * resolves on its own); read and written with atomic operations */
    struct psh_server *h;
    struct psh_server own_health;
    /* not to be picked, besides its health (what the balancing reads): a
     * slot not in service, or a standby SRV priority; pool_slot.c keeps it
     * (server_sync) */
    bool down;
    double ewma_ns;          /* balance ewma: peak-sensitive average latency (ns)... */
    uint64_t ewma_at;        /* ...as of this time (ns); it decays from there */
    char *tls_host;          /* TLS: the host as configured (SNI, name checked) */
    SSL_SESSION *tls_session;   /* TLS: the session the next connection resumes */
    struct h2u_conn *h2;     /* an HTTP/2 pool: its connections to this server (h2up.c) */
    /* dynamic servers (see above); a static server is IN_SERVICE, name NULL */
    enum pool_slot state;
    const struct pool_name *name;   /* the item whose slot this is, or NULL */
    unsigned priority;       /* an SRV record's (lowest serves first); 0 otherwise */
    bool standby;            /* a priority above the one serving now (SRV pools) */
    struct cli_addr own;     /* a slot's address */
};

/* Servers of one name in service at once (dns.h's DNS_MAX_ADDRS), and the
 * slots a name owns: twice that, so that a whole new answer finds room while
 * the servers of the last one finish what they carry. */
#define POOL_NAME_SERVERS 8
#define POOL_NAME_SLOTS (2 * POOL_NAME_SERVERS)

/* A server item written as a host name or an SRV name. */
struct pool_name {
    const struct val_server *at;   /* as written: name, port, srv, text */
    unsigned weight;               /* a host name's servers' weight */
    unsigned first;                /* its slots: servers[first .. first + POOL_NAME_SLOTS) */
};

enum pool_balance { POOL_ROUND_ROBIN, POOL_LEAST_CONN, POOL_P2C, POOL_EWMA };

/* What became of an attempt on a server, as the request path saw it
 * (pool_report). The request path says what happened; the pool decides what
 * counts, by its passive health policy (health.passive.on). */
enum pool_outcome {
    POOL_ANSWERED,        /* a final response head (or a 101): its status decides */
    POOL_CONNECT_FAILED,  /* refused, unreachable, TLS handshake failed, connect timeout */
    POOL_RESET,           /* reset or closed before any response byte */
    POOL_READ_TIMEOUT,    /* the route's read timeout */
    POOL_TRY_TIMEOUT,     /* the route's per-try timeout */
    POOL_CANCELLED,       /* given up before its response head: the request's other
                             attempt answered first, its deadline passed, its client
                             left. Its time so far is a lower bound of its latency */
};
#define POOL_MAX_FAIL_STATUS 16

/* A request waiting for a free connection of a pool at its max_connections:
 * a node embedded in the request's own state, so that queueing never
 * allocates. The pool owns the links (pool_wait_*); owner is the caller's,
 * handed back by pool_wait_next. */
struct pool_waiter {
    struct pool_waiter *next, *prev;
    struct pool_group *group;    /* the pool it waits in; NULL: not waiting */
    void *owner;
};

/* A named set of servers with one balancing method and one health policy. */
struct pool_group {
    const char *name;
    struct pool_server *servers;
    unsigned nservers;
    enum pool_balance balance;
    unsigned rr;                 /* rotation for ties */
    uint32_t *nejected;          /* servers ejected now: shared like the records */
    uint32_t own_nejected;
    unsigned nlive;              /* servers in service (slots IN_SERVICE): the base of
                                    max_ejected_percent */
    /* dynamic servers: the items written as names, and when to resolve them */
    struct pool_name *names;
    unsigned nnames;
    bool prio;                   /* an SRV name: only the lowest priority serves */
    uint64_t resolve_min_ms, resolve_max_ms;
    /* passive health */
    unsigned fail_on;            /* outcomes that are failures: bits 1u << POOL_* */
    bool fail_5xx;               /* a response status 500..599 is a failure */
    uint16_t fail_status[POOL_MAX_FAIL_STATUS];   /* and these statuses */
    unsigned nfail_status;
    unsigned fail_limit;         /* consecutive failures that eject */
    uint64_t ejection_ns, max_ejection_ns;
    unsigned max_ejected_percent;
    uint64_t slow_start_ns;      /* ramp of a server back in service; 0 = none */
    /* keep-alive */
    uint64_t idle_ns;            /* pooled connection idle timeout */
    unsigned max_idle;           /* idle connections kept per server */
    unsigned index;              /* in pool_groups(): its place in shared state */
    /* retry budget: retries in flight <= max(min, percent% of requests in
     * flight), counted over every worker of the generation (poolshm.h); the
     * counts change only through pool_request_* and pool_budget_* */
    unsigned budget_percent, budget_min;
    /* connection limit: open connections to all its servers together */
    unsigned max_conns;          /* 0: unlimited */
    unsigned max_requests;       /* in flight to each server (its active use); 0: unlimited */
    unsigned open;
    /* requests waiting for a slot, oldest first (pool_wait_*) */
    struct pool_waiter *wait_head, *wait_tail;
    unsigned nwaiting;
    struct tls_client *tls;      /* TLS to its servers, or NULL */
    bool h2;                     /* protocol: h2 (see "HTTP/2 pools" below) */
};

struct upconn {
    struct conn conn;             /* reads and writes: conn_read, conn_writev */
    struct timer idle_timer;
    struct loop_defer defer;
    struct pool_server *srv;      /* NULL: to an address of no pool */
    struct upconn *next, *prev;   /* idle list */
    void *owner;                  /* the exchange, or NULL when idle */
    pool_event_cb *on_event;
    bool reused;                  /* handed out from the idle list (a stream: its
                                     connection was open before it) */
    bool stream;                  /* a stream of an HTTP/2 pool: no socket of its own */
};

/* HTTP/2 pools (protocol: h2). An attempt then holds a stream: a struct
 * upconn with no socket (conn.io.fd -1, `stream` set) on a connection to its
 * server that other streams share. The functions of this header take a
 * stream wherever they take an upconn, and h2up.c answers for it through
 * these hooks, which it installs (h2u_init): so pool.h names nothing of
 * HTTP/2, and the request path moves bytes on a stream as on a socket
 * (pool_read, pool_writev), its readiness bits kept by h2up.c. */
struct pool_h2_hooks {
    /* a stream to srv on one of its open (or opening) connections with room */
    struct upconn *(*take)(struct pool_server *srv, void *owner, pool_event_cb *cb);
    /* a stream to srv on a new connection; NULL and -errno in *err */
    struct upconn *(*open)(struct pool_server *srv, void *owner, pool_event_cb *cb, int *err);
    /* streams that may start now on open connections of g (of srv only, if set) */
    unsigned (*room)(const struct pool_group *g, const struct pool_server *srv);
    int (*step)(struct upconn *st, char *err, size_t errlen);
    ssize_t (*read)(struct upconn *st, void *buf, size_t len);
    ssize_t (*writev)(struct upconn *st, const struct iovec *iov, int n);
    /* the attempt is over: clean (the response was whole) or cancelled */
    void (*end)(struct upconn *st, bool clean);
    void (*close_idle)(void);
    /* srv leaves: its connections without streams close now, the others take
     * no new stream and close after their last */
    void (*retire)(struct pool_server *srv);
};
extern const struct pool_h2_hooks *pool_h2;

/* Reads and writes on an attempt's connection or stream, with the outcomes
 * of conn_read and conn_writev (conn.h). */
static inline ssize_t pool_read(struct upconn *up, void *buf, size_t len)
{
    return up->stream ? pool_h2->read(up, buf, len) : conn_read(&up->conn, buf, len);
}

static inline ssize_t pool_writev(struct upconn *up, const struct iovec *iov, int n)
{
    return up->stream ? pool_h2->writev(up, iov, n) : conn_writev(&up->conn, iov, n);
}

/* Builds the pools: those of the configuration file, or one named "default"
 * of the --upstream servers (which also replace the file's default pool's
 * servers when given). 0, or -1 after printing why. */
int pool_init(struct loop *l, const struct cfg *cfg);

/* The pool of that name, or NULL. */
struct pool_group *pool_group_find(const char *name);

/* The pool used when no file names one: that of the --upstream servers. */
struct pool_group *pool_group_default(void);

/* A server in service chosen by the pool's balancing method, or NULL when
 * every server is ejected or down, or has max_requests in flight. Weights are effective weights: during a
 * pool's slow_start, a server back in service (pool_server.back_at) counts
 * from a tenth of its weight, rising linearly to all of it.
 *   round_robin  smooth weighted round-robin;
 *   least_conn   fewest connections in use per unit of weight (ties in turn);
 *   p2c          two servers at random, the one with fewer connections in use
 *                per unit of weight (a tie: one of them at random, in
 *                proportion to their weights);
 *   ewma         two servers at random, the one with the lower cost: its
 *                latency (a peak-sensitive moving average of the time to a
 *                response head, pool_report) x (connections in use + 1) /
 *                weight (a tie as p2c). */
struct pool_server *pool_pick(struct pool_group *g);

/* A server in service other than `avoid` when the pool has one; else as
 * pool_pick. */
struct pool_server *pool_pick_other(struct pool_group *g, const struct pool_server *avoid);

/* Whether a server in service has room for one more request (below the
 * pool's max_requests; always, without the limit). */
bool pool_has_room(struct pool_group *g);

/* Whether g has servers in service, all of them at max_requests: a request
 * then waits in the pool's queue rather than failing. */
bool pool_at_capacity(struct pool_group *g);

/* Requests in flight on g, from their dispatch to their end, whatever ends
 * them: the base of the retry budget's percent. Each begin is matched by
 * exactly one end. */
void pool_request_begin(struct pool_group *g);
void pool_request_end(struct pool_group *g);

/* Whether the pool's retry budget allows one more retry now: retries in
 * flight below max(min, percent x requests in flight / 100). */
bool pool_retry_allowed(const struct pool_group *g);

/* A request starts counting among g's retries in flight (a retry or a
 * hedge), until pool_budget_release. Taken once per request however many
 * attempts it makes; the caller asked pool_retry_allowed first. */
void pool_budget_take(struct pool_group *g);
void pool_budget_release(struct pool_group *g);

/* Queues w, for owner, at the tail of g's requests waiting for a connection
 * slot. w must not be waiting already. */
void pool_wait_add(struct pool_group *g, struct pool_waiter *w, void *owner);

/* Takes w out of its pool's queue; nothing when it is not waiting. */
void pool_wait_remove(struct pool_waiter *w);

/* The oldest waiter of g, taken out of the queue, when g has a free slot
 * now (pool_slots_free); else NULL. The caller then connects or queues it
 * again. */
struct pool_waiter *pool_wait_next(struct pool_group *g);

/* The outcome of an attempt on s, which started at `started` (ns, the
 * loop's clock); status is the response's for POOL_ANSWERED (else unused).
 * Passive health: the pool's policy makes it a failure, a success or
 * neither (pool_verdict). Enough consecutive failures eject s for a
 * cool-down that doubles with each ejection in a row (up to a cap), unless
 * that would eject more than the pool's allowed share; a success puts the
 * counts back to zero; the allowed share is of the servers in service. In
 * an ewma pool it is also a latency sample (the time
 * since `started`; a failure counts as at least POOL_EWMA_PENALTY_NS, and a
 * cancelled attempt only raises the average). Nothing for s NULL or a server
 * not in service (leaving). */
void pool_report(struct pool_server *s, enum pool_outcome o, int status, uint64_t started);

/* Active health checks take s out of service (down) or put it back, which
 * starts its slow start. */
void pool_set_down(struct pool_server *s, bool down);

/* Whether active health has the server out of service (the generation's
 * view: one worker checks). */
bool pool_is_down(const struct pool_server *s);

/* ---- dynamic servers: the resolver's calls (resolve.c) ---- */

/* Whether slot s may take another address: not in service, and nothing
 * refers to it (see "Dynamic servers" at the top). */
bool pool_slot_free(const struct pool_server *s);

/* Whether s has the address sa (family, address and port). */
bool pool_slot_has(const struct pool_server *s, const struct sockaddr *sa);

/* Puts slot s in service at sa (an AF_INET or AF_INET6 address with its
 * port) with weight (1..1000, clamped) and priority: a free slot, or a
 * leaving one whose address sa is (it comes back). Its passive health
 * starts afresh. tls_host: the name TLS sends and checks on a TLS pool (an
 * SRV target), or NULL to keep the slot's (its host name). 0, or -EBUSY
 * when s is in service, or holds another address and is not free. */
int pool_slot_join(struct pool_server *s, const struct sockaddr *sa, unsigned weight,
                   unsigned priority, const char *tls_host);

/* A server in service keeps its address with another weight or priority. */
void pool_slot_update(struct pool_server *s, unsigned weight, unsigned priority);

/* Takes s out of service (it leaves: see the top): never picked again,
 * its idle connections closed now, its HTTP/2 connections once their
 * streams end. Stop its health checker first (health_server_stop). */
void pool_slot_leave(struct pool_server *s);

/* The slots of name n: *count gets POOL_NAME_SLOTS. */
struct pool_server *pool_name_slots(struct pool_group *g, const struct pool_name *n,
                                    unsigned *count);

/* An idle connection to srv that still looks alive, or NULL (always for
 * srv NULL). */
struct upconn *pool_take_idle(struct pool_server *srv, void *owner, pool_event_cb *cb);

/* Whether a new connection to srv fits its pool's limit now; when it does
 * not, an idle connection to another server of the pool is closed to make
 * room if there is one. False: wait for a slot (pool_slots_free). True for
 * srv NULL. */
bool pool_may_connect(struct pool_server *srv);

/* Free connection slots of g now (UINT32_MAX when unlimited), counting an
 * idle connection as one a waiting request can use. */
unsigned pool_slots_free(const struct pool_group *g);

/* The pools, for iteration: *n gets their number. */
struct pool_group *pool_groups(unsigned *n);

/* The gauges of the first `max` pools now, in pool_groups order, into out;
 * returns how many were written. */
struct stats_pool;
unsigned pool_gauges(struct stats_pool *out, unsigned max);

/* Advances a connection being opened (conn_open_step: the TCP connect, then
 * the TLS handshake of a TLS pool) and counts the handshake's outcome. 1 open
 * (pool_opening is false from then), 0 not yet, -errno when the connect failed, or
 * -EPROTO when the handshake did (its reason in err). */
int pool_connect_step(struct upconn *up, char *err, size_t errlen);

/* Whether the connection is still being opened (TCP, then TLS): until
 * pool_connect_step says it is open. */
static inline bool pool_opening(const struct upconn *up)
{
    return up->conn.opening != 0;
}

/* Starts a new connection to srv (pool_opening until open: see
 * pool_connect_step).
 * NULL with -errno in *err when the connect failed at once. */
struct upconn *pool_connect(struct pool_server *srv, void *owner, pool_event_cb *cb, int *err);

/* A new connection to srv whatever its pool's protocol: what an HTTP/2
 * pool's connections are made of (h2up.c). */
struct upconn *pool_connect_conn(struct pool_server *srv, void *owner, pool_event_cb *cb,
                                 int *err);

/* The same to an address of no pool: up->srv NULL, no TLS. */
struct upconn *pool_connect_addr(const struct cli_addr *addr, void *owner, pool_event_cb *cb,
                                 int *err);

/* Returns a connection whose exchange ended cleanly to the idle list (one
 * to an address of no pool is closed). */
void pool_put_idle(struct upconn *up);

/* Closes a connection and releases it at the end of the loop iteration. */
void pool_close(struct upconn *up);

/* Connections open (idle or busy), for resource checks. */
unsigned pool_open_count(void);

/* Closes every idle connection (at shutdown). */
void pool_close_idle(void);

/* Frees the recycled connection structs and the pools (at exit, after the
 * loop's deferred releases have run). */
void pool_free_structs(void);

#endif
