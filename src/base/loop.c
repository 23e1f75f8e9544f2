/* loop.c -- epoll event loop with one clock read per iteration (see loop.h). */
#define _GNU_SOURCE
#include "loop.h"

#include "stats.h"

#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

/* Added to the monotonic clock, 0 in the proxy: loop_clock_skew moves time
 * forward for a driver that serves timers without waiting for them. */
static uint64_t clock_skew;

uint64_t loop_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + clock_skew;
}

void loop_clock_skew(uint64_t ns)
{
    clock_skew += ns;
}

void loop_update_clock(struct loop *l)
{
    l->now = loop_clock_ns();
}

int loop_init(struct loop *l)
{
    *l = (struct loop){0};
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return -errno;
    loop_update_clock(l);
    return 0;
}

void loop_free(struct loop *l)
{
    if (l->epfd >= 0)
        close(l->epfd);
    l->epfd = -1;
}

static int add(struct loop *l, struct loop_io *io, int fd, loop_io_cb *cb, uint32_t ev)
{
    io->fd = fd;
    io->ready = 0;
    io->cb = cb;
    struct epoll_event e = {.events = ev, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        return -errno;
    return 0;
}

int loop_add(struct loop *l, struct loop_io *io, int fd, loop_io_cb *cb)
{
    return add(l, io, fd, cb, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

int loop_add_listener(struct loop *l, struct loop_io *io, int fd, loop_io_cb *cb)
{
    return add(l, io, fd, cb, EPOLLIN | EPOLLET);
}

void loop_close(struct loop *l, struct loop_io *io)
{
    (void)l;
    if (io->fd >= 0)
        close(io->fd);   /* the only reference: close removes it from epoll */
    io->fd = -1;
    io->ready = 0;
}

void loop_close_shared(struct loop *l, struct loop_io *io)
{
    if (io->fd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    loop_close(l, io);
}

void loop_timer_at(struct loop *l, struct timer *t, uint64_t at)
{
    if (t->armed) {
        if (t->at == at)
            return;
        timer_heap_remove(&l->timers, t);
    }
    timer_heap_insert(&l->timers, t, at);
}

void loop_timer_stop(struct loop *l, struct timer *t)
{
    timer_heap_remove(&l->timers, t);
}

void loop_defer(struct loop *l, struct loop_defer *d, loop_defer_cb *cb)
{
    d->cb = cb;
    d->next = l->defer;
    l->defer = d;
}

/* Serves the timers due; each one's lateness (now - due) is a sample of
 * hourglass_timer_lateness_seconds: the loop's lag, which an operator reads
 * to tell a late timeout from a slow upstream. */
static void run_timers(struct loop *l)
{
    struct timer *t;
    while ((t = timer_heap_min(&l->timers)) && t->at <= l->now) {
        timer_heap_pop(&l->timers);
        stats_hist_add(&stats->timer_late, l->now - t->at);
        t->cb(t);
    }
}

static void run_deferred(struct loop *l)
{
    while (l->defer) {
        struct loop_defer *d = l->defer;
        l->defer = d->next;
        d->cb(d);
    }
}

/* The kernel may end a wait of d up to max(d / 1000, the task's timer
 * slack of 50 us) late (select_estimate_accuracy): a timer 1 s away would
 * be served 1 ms late, one 30 s away 30 ms late. A wait longer than
 * SPLIT_NS is cut short by d / 512, more than that slack, so that it ends
 * before the timer is due; the next wait, a 512th as long, is precise
 * (or cut again). One more wake-up per long wait, none early. */
#define SPLIT_NS (50 * MS)

/* Waits for events until the earliest timer, with sub-millisecond precision
 * (epoll_pwait2), rounding up so that no timer is ever served early; and no
 * longer than cap_ns when that is not negative (loop_run_once). */
static int wait_events(struct loop *l, struct epoll_event *ev, int64_t cap_ns)
{
    struct timer *t = timer_heap_min(&l->timers);
    struct timespec ts, *tsp = NULL;
    if (t || cap_ns >= 0) {
        uint64_t d = UINT64_MAX;
        if (t) {
            uint64_t now = loop_clock_ns();
            d = t->at > now ? t->at - now : 0;
            if (d > SPLIT_NS)
                d -= d / 512;
        }
        if (cap_ns >= 0 && (uint64_t)cap_ns < d)
            d = (uint64_t)cap_ns;
        ts.tv_sec = (time_t)(d / 1000000000ull);
        ts.tv_nsec = (long)(d % 1000000000ull);
        tsp = &ts;
    }
    /* Kernels before 5.11 (and Valgrind 3.19) lack epoll_pwait2: fall back to
     * millisecond waits, rounded up, once and for all. */
    static bool no_pwait2;
    if (!no_pwait2) {
        int n = epoll_pwait2(l->epfd, ev, LOOP_BATCH, tsp, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        no_pwait2 = true;
    }
    int ms = -1;
    if (tsp)
        ms = (int)((uint64_t)ts.tv_sec * 1000 + ((uint64_t)ts.tv_nsec + 999999) / 1000000);
    return epoll_wait(l->epfd, ev, LOOP_BATCH, ms);
}

/* One iteration: wait (at most cap_ns when not negative), dispatch the
 * events, serve the timers due, release the deferred, end the iteration.
 * The number of events dispatched, or -errno from epoll. */
static int iterate(struct loop *l, int64_t cap_ns)
{
    struct epoll_event ev[LOOP_BATCH];

    int n = wait_events(l, ev, cap_ns);
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        n = 0;   /* a signal: let the iteration end act on its flag */
    }
    for (int i = 0; i < n; i++) {
        struct loop_io *io = ev[i].data.ptr;
        if (io->fd < 0)
            continue;   /* closed earlier in this batch */
        /* Deadlines start from l->now. After a batch of hundreds of
         * events, a time read once at its top is stale by the time the
         * last is served, and a timeout started then would fire early by
         * as much. The vDSO read costs some 20 ns: take it per event. */
        loop_update_clock(l);
        uint32_t e = ev[i].events, bits = 0;
        if (e & EPOLLIN)
            bits |= LOOP_READ;
        if (e & EPOLLOUT)
            bits |= LOOP_WRITE;
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            bits |= LOOP_HUP | LOOP_READ;
        io->ready |= bits;
        io->cb(io, bits);
        /* A full batch of accepts and requests can take milliseconds:
         * serve the timers that fell due meanwhile every 32 events, not
         * only after the batch (safe: what a timer closes is skipped by
         * the events that follow and released after the iteration). */
        if ((i & 31) == 31) {
            loop_update_clock(l);
            run_timers(l);
        }
    }
    loop_update_clock(l);
    run_timers(l);
    run_deferred(l);
    if (l->on_iteration_end)
        l->on_iteration_end(l);
    return n;
}

int loop_run(struct loop *l)
{
    while (!l->stop) {
        int r = iterate(l, -1);
        if (r < 0)
            return r;
    }
    return 0;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    return iterate(l, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * (int64_t)MS);
}
