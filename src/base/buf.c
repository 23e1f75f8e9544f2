/* buf.c -- byte buffers recycled through free lists (see buf.h). */
#define _GNU_SOURCE
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Free storage is kept as a singly linked list threaded through itself.
 * Once a second (buf_trim's tick) the spare buffers that stayed unused for
 * the whole second (the low-water mark of the list) are marked, then
 * unmapped a slice at a time: a steady load keeps its working set, a burst
 * gives its peak back within seconds (10,000 buffers in about 6 s).
 *
 * Nothing is unmapped when a buffer is given back: the list keeps what the
 * peak used (so at most what was just in use), and only the trim returns
 * it. An munmap costs some 10 to 25 us (the page tables, a TLB flush); when
 * thousands of connections end at once, 10,000 read timeouts falling due
 * together, unmapping each one's buffers as it ended made every timeout
 * that much slower, and the ones due behind it that much later. POOL_MAX
 * only guards against a runaway. TRIM_BATCH bounds a slice to a few
 * tenths of a millisecond. */
#define POOL_MAX (1u << 20)
#define TRIM_BATCH 16

struct free_node { struct free_node *next; };
struct pool { struct free_node *head; unsigned n, low, doomed; uint32_t size; };

static struct pool pools[2] = {{NULL, 0, 0, 0, BUF_SMALL}, {NULL, 0, 0, 0, BUF_LARGE}};

void *xmalloc(uint64_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "hourglass: out of memory allocating %llu bytes\n",
                (unsigned long long)n);
        abort();
    }
    return p;
}

void *xcalloc(uint64_t n, uint64_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "hourglass: out of memory allocating %llu bytes\n",
                (unsigned long long)(n * size));
        abort();
    }
    return p;
}

static struct pool *pool_for(uint32_t cap)
{
    return cap <= BUF_SMALL ? &pools[0] : &pools[1];
}

/* Buffer storage is mapped, not malloc'd: a buffer given back beyond the
 * cached few is unmapped at once, so the memory a burst took returns to the
 * system instead of staying resident in the heap between idle connections. */
static char *take(uint32_t cap)
{
    struct pool *p = pool_for(cap);
    if (p->head) {
        struct free_node *n = p->head;
        p->head = n->next;
        if (--p->n < p->low)
            p->low = p->n;
        return (char *)n;
    }
    void *m = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "hourglass: out of memory mapping a %u-byte buffer\n", p->size);
        abort();
    }
    return m;
}

uint64_t buf_big_bytes;

static void give(char *data, uint32_t cap)
{
    if (cap > BUF_LARGE) {   /* a big buffer (buf_reserve_big): not pooled */
        munmap(data, cap);
        buf_big_bytes -= cap;
        return;
    }
    struct pool *p = pool_for(cap);
    if (p->n >= POOL_MAX) {
        munmap(data, p->size);
        return;
    }
    struct free_node *n = (struct free_node *)(void *)data;
    n->next = p->head;
    p->head = n;
    p->n++;
}

/* b's bytes move to the front of storage d of cap bytes; b's old storage
 * goes back (give: a big one too, which give unmaps). */
static void move_to(struct buf *b, char *d, uint32_t cap)
{
    uint32_t n = 0;
    if (b->data) {
        n = buf_len(b);
        memcpy(d, b->data + b->start, n);
        give(b->data, b->cap);
    }
    b->data = d;
    b->cap = cap;
    b->start = 0;
    b->end = n;
}

void buf_reserve_big(struct buf *b, uint32_t cap)
{
    cap = (cap + 4095u) & ~4095u;
    if (b->data && b->cap >= cap)
        return;
    char *d = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (d == MAP_FAILED) {
        fprintf(stderr, "hourglass: out of memory mapping a %u-byte buffer\n", cap);
        abort();
    }
    buf_big_bytes += cap;
    move_to(b, d, cap);
}

void buf_reserve(struct buf *b, uint32_t cap)
{
    cap = cap <= BUF_SMALL ? BUF_SMALL : BUF_LARGE;
    if (b->data && b->cap >= cap)
        return;
    move_to(b, take(cap), cap);
}

void buf_release(struct buf *b)
{
    if (b->data)
        give(b->data, b->cap);
    *b = (struct buf){0};
}

void buf_compact(struct buf *b)
{
    if (b->start == 0)
        return;
    uint32_t n = buf_len(b);
    if (n)
        memmove(b->data, b->data + b->start, n);
    b->start = 0;
    b->end = n;
}

int buf_trim(bool tick)
{
    bool more = false, spare = false;
    for (int i = 0; i < 2; i++) {
        struct pool *p = &pools[i];
        if (tick) {
            p->doomed += p->low;   /* unused for the whole period */
            p->low = p->n;
        }
        if (p->doomed > p->n)
            p->doomed = p->n;
        /* At most TRIM_BATCH unmaps a call, so that returning a burst's
         * peak never stalls the loop for more than a fraction of a ms. */
        for (unsigned k = TRIM_BATCH; k && p->doomed && p->head; k--) {
            struct free_node *n = p->head;
            p->head = n->next;
            p->n--;
            p->doomed--;
            munmap(n, p->size);
        }
        if (p->low > p->n)
            p->low = p->n;
        more |= p->doomed > 0;
        spare |= p->n > 0;
    }
    return more ? 2 : spare ? 1 : 0;
}

unsigned buf_spare(void)
{
    return pools[0].n + pools[1].n;
}

void buf_drain_pools(void)
{
    for (int i = 0; i < 2; i++) {
        while (pools[i].head) {
            struct free_node *n = pools[i].head;
            pools[i].head = n->next;
            munmap(n, pools[i].size);
        }
        pools[i].n = pools[i].low = pools[i].doomed = 0;
    }
}
