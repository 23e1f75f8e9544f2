/* loop.h -- the event loop: epoll (edge-triggered), a cached monotonic clock,
 * timers, and close-at-end-of-iteration.
 *
 * Every socket is registered once for input, output and peer hang-up in edge-
 * triggered mode, so changing what a connection waits for never costs an
 * epoll_ctl: the loop records readiness in io->ready and the owner clears a
 * bit when a read or write comes back short (EAGAIN or partial). */
#ifndef HG_LOOP_H
#define HG_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "timer.h"

#define LOOP_READ  0x1u   /* bytes (or EOF) may be readable */
#define LOOP_WRITE 0x2u   /* the socket may accept bytes */
#define LOOP_HUP   0x4u   /* peer hung up or socket error: reading will tell */

struct loop_io;
typedef void loop_io_cb(struct loop_io *io, uint32_t events);

struct loop_io {
    int fd;            /* -1 once closed */
    uint32_t ready;    /* LOOP_* bits seen and not yet consumed */
    loop_io_cb *cb;    /* called with the bits of this wake-up */
};

/* An object whose release must wait until the loop has dispatched every event
 * of the current iteration (a later event in the same batch may name it). */
struct loop_defer;
typedef void loop_defer_cb(struct loop_defer *d);
struct loop_defer {
    struct loop_defer *next;
    loop_defer_cb *cb;
};

struct loop {
    int epfd;
    uint64_t now;              /* ns, cached: read before each dispatch */
    struct timer_heap timers;
    struct loop_defer *defer;  /* released at the end of the iteration */
    void (*on_iteration_end)(struct loop *l); /* e.g. log flush; may be NULL */
    volatile int stop;
    volatile sig_atomic_t sig_term;   /* SIGTERM/SIGINT received (count) */
    volatile sig_atomic_t sig_usr1;   /* SIGUSR1 received */
    volatile sig_atomic_t sig_usr2;   /* SIGUSR2: retire (a new generation took over) */
    volatile sig_atomic_t sig_hup;    /* SIGHUP received */
};

int loop_init(struct loop *l);
void loop_free(struct loop *l);

/* Registers fd (non-blocking) for edge-triggered events. 0 or -errno. */
int loop_add(struct loop *l, struct loop_io *io, int fd, loop_io_cb *cb);

/* Registers a listening socket (input only). 0 or -errno. */
int loop_add_listener(struct loop *l, struct loop_io *io, int fd, loop_io_cb *cb);

/* Closes io->fd (which also removes it from epoll) and marks io closed. */
void loop_close(struct loop *l, struct loop_io *io);

/* The same for a socket that other processes also hold (a listener shared
 * with a master): epoll forgets a file only when its last descriptor is
 * closed, so it is removed explicitly first. */
void loop_close_shared(struct loop *l, struct loop_io *io);

/* Arms t at absolute time `at` (ns), moving it if already armed. */
void loop_timer_at(struct loop *l, struct timer *t, uint64_t at);
void loop_timer_stop(struct loop *l, struct timer *t);

/* Queues d->cb to run after this iteration's events. */
void loop_defer(struct loop *l, struct loop_defer *d, loop_defer_cb *cb);

/* Runs until loop->stop is set. 0, or -errno from epoll. */
int loop_run(struct loop *l);

/* One iteration of loop_run, waiting at most timeout_ms for events (0: not
 * at all; -1: until the earliest timer, as loop_run). The number of events
 * dispatched, or -errno from epoll. For drivers that step the loop
 * themselves (fuzz/fuzz_h2.c); loop->stop is not looked at. */
int loop_run_once(struct loop *l, int timeout_ms);

/* Re-reads the monotonic clock into l->now. */
void loop_update_clock(struct loop *l);

uint64_t loop_clock_ns(void);

/* Moves the clock forward by ns, for good (never back): a driver that steps
 * the loop itself (fuzz/fuzz_h2.c) makes the earliest timer due without
 * waiting for it. Not used by the proxy. */
void loop_clock_skew(uint64_t ns);

#define MS (1000000ull) /* ns per millisecond */

#endif
