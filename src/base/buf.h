/* buf.h -- byte buffers recycled through free lists.
 *
 * A buffer is a window [start, end) over `cap` bytes of storage. An all-zero
 * struct buf is a valid empty buffer with no storage: idle connections hold
 * none, and storage is taken on first use and given back when empty. Two size
 * classes: BUF_SMALL for streaming and BUF_LARGE for heads that outgrow it. */
#ifndef HG_BUF_H
#define HG_BUF_H

#include <stdbool.h>
#include <stdint.h>

#define BUF_SMALL (16u * 1024)
#define BUF_LARGE (64u * 1024)

struct buf {
    char *data;
    uint32_t cap;
    uint32_t start;
    uint32_t end;
};

static inline uint32_t buf_len(const struct buf *b) { return b->end - b->start; }
static inline uint32_t buf_room(const struct buf *b) { return b->cap - b->end; }
static inline char *buf_head(const struct buf *b) { return b->data + b->start; }
static inline char *buf_tail(const struct buf *b) { return b->data + b->end; }

/* Gives b storage of at least cap bytes (BUF_SMALL or BUF_LARGE) if it has
 * none or less, keeping its bytes. Out of memory is fatal. */
void buf_reserve(struct buf *b, uint32_t cap);

/* Gives b storage of exactly cap bytes (rounded up to a page; more than
 * BUF_LARGE), keeping its bytes at the front: a buffer for a whole request
 * body (proxy/reqbuf.h). Mapped for it and unmapped at its release, never
 * pooled; buf_big_bytes counts what such buffers hold. Out of memory is
 * fatal. */
void buf_reserve_big(struct buf *b, uint32_t cap);
extern uint64_t buf_big_bytes;

/* Returns b's storage to the free list; b becomes the empty buffer. */
void buf_release(struct buf *b);

/* Moves the bytes to the front of the storage. */
void buf_compact(struct buf *b);

/* Gives back spare buffers. With tick (about once a second), the spare
 * buffers unused since the previous tick are marked for release; each call
 * releases at most a small slice of those. Returns 2 while some remain to be
 * released (call again in ~10 ms), 1 while spare buffers are kept (call
 * again at the next tick), 0 when there are none. */
int buf_trim(bool tick);

/* How many spare buffers the free lists hold (both sizes). */
unsigned buf_spare(void);

/* Frees the free lists (at exit, for leak checkers). */
void buf_drain_pools(void);

/* Allocation wrappers: out of memory is fatal, never returned. */
void *xmalloc(uint64_t n);
void *xcalloc(uint64_t n, uint64_t size);

#endif
