/* timer.h -- intrusive pairing heap of deadlines.
 *
 * A timer node is embedded in the object it times (a connection), so arming a
 * timeout never allocates. Insert is O(1), removal of the earliest or of any
 * node is O(log n) amortized. Times are nanoseconds of the loop's monotonic
 * clock. The heap knows nothing of the event loop: loop.c drives it. */
#ifndef HG_TIMER_H
#define HG_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timer;
typedef void timer_cb(struct timer *t);

struct timer {
    uint64_t at;           /* deadline (ns); meaningful only while armed */
    struct timer *child;   /* first child */
    struct timer *next;    /* next sibling */
    struct timer *prev;    /* previous sibling, or the parent for a first child */
    timer_cb *cb;
    bool armed;
};

struct timer_heap {
    struct timer *root;
    size_t count;
};

/* Prepares a node; an all-zero node with cb set is equally valid. */
void timer_init(struct timer *t, timer_cb *cb);

/* Arms t at `at`. t must not be armed. */
void timer_heap_insert(struct timer_heap *h, struct timer *t, uint64_t at);

/* Disarms t; a no-op when t is not armed. */
void timer_heap_remove(struct timer_heap *h, struct timer *t);

/* The earliest armed timer, or NULL. */
static inline struct timer *timer_heap_min(const struct timer_heap *h) { return h->root; }

/* Disarms and returns the earliest timer, or NULL. */
struct timer *timer_heap_pop(struct timer_heap *h);

#endif
