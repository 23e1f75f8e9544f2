/* buf.c -- byte buffers recycled through free lists (see buf.h). */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Free storage is kept as a singly linked list threaded through itself. The
 * lists are capped so that a burst does not pin its peak memory forever. */
#define POOL_KEEP 256

struct free_node { struct free_node *next; };
struct pool { struct free_node *head; unsigned n; uint32_t size; };

static struct pool pools[2] = {{NULL, 0, BUF_SMALL}, {NULL, 0, BUF_LARGE}};

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

static char *take(uint32_t cap)
{
    struct pool *p = pool_for(cap);
    if (p->head) {
        struct free_node *n = p->head;
        p->head = n->next;
        p->n--;
        return (char *)n;
    }
    return xmalloc(p->size);
}

static void give(char *data, uint32_t cap)
{
    struct pool *p = pool_for(cap);
    if (p->n >= POOL_KEEP) {
        free(data);
        return;
    }
    struct free_node *n = (struct free_node *)(void *)data;
    n->next = p->head;
    p->head = n;
    p->n++;
}

void buf_reserve(struct buf *b, uint32_t cap)
{
    cap = cap <= BUF_SMALL ? BUF_SMALL : BUF_LARGE;
    if (b->data && b->cap >= cap)
        return;
    char *d = take(cap);
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

void buf_drain_pools(void)
{
    for (int i = 0; i < 2; i++) {
        while (pools[i].head) {
            struct free_node *n = pools[i].head;
            pools[i].head = n->next;
            free(n);
        }
        pools[i].n = 0;
    }
}
