/* pool.h -- upstream servers, round-robin choice, and the pool of idle
 * keep-alive connections to them.
 *
 * An upstream connection (struct upconn) is owned either by one exchange
 * (owner != NULL; its events go to owner's handler) or by the pool (idle).
 * An idle connection that becomes readable has been closed by the server or
 * sent bytes nobody asked for: either way it is discarded at once, so a stale
 * connection is rarely handed out. Idle connections hold no buffers. */
#ifndef HG_POOL_H
#define HG_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "loop.h"

struct upconn;
typedef void pool_event_cb(struct upconn *up, uint32_t events);

struct pool_server {
    const struct cli_addr *addr;
    struct upconn *idle;     /* most recently used first */
    unsigned nidle;
};

struct upconn {
    struct loop_io io;
    struct timer idle_timer;
    struct loop_defer defer;
    struct pool_server *srv;
    struct upconn *next, *prev;   /* idle list */
    void *owner;                  /* the exchange, or NULL when idle */
    pool_event_cb *on_event;
    bool connecting;
    bool reused;                  /* handed out from the idle list */
};

void pool_init(struct loop *l, const struct cfg *cfg);

/* The next server in round-robin order. */
struct pool_server *pool_pick(void);

/* An idle connection to srv that still looks alive, or NULL. */
struct upconn *pool_take_idle(struct pool_server *srv, void *owner, pool_event_cb *cb);

/* Starts a new connection to srv (connecting == true until writable).
 * NULL with -errno in *err when the connect failed at once. */
struct upconn *pool_connect(struct pool_server *srv, void *owner, pool_event_cb *cb, int *err);

/* Returns a connection whose exchange ended cleanly to the idle list. */
void pool_put_idle(struct upconn *up);

/* Closes a connection and releases it at the end of the loop iteration. */
void pool_close(struct upconn *up);

/* Connections open (idle or busy), for resource checks. */
unsigned pool_open_count(void);

/* Closes every idle connection (at shutdown). */
void pool_close_idle(void);

/* Frees the recycled connection structs (at exit, after the loop's deferred
 * releases have run). */
void pool_free_structs(void);

#endif
