/* timer.c -- intrusive pairing heap of deadlines (see timer.h). */
#include "timer.h"

void timer_init(struct timer *t, timer_cb *cb)
{
    t->at = 0;
    t->child = t->next = t->prev = NULL;
    t->cb = cb;
    t->armed = false;
}

/* Links two heap roots (next/prev NULL) and returns the new root. */
static struct timer *meld(struct timer *a, struct timer *b)
{
    if (b->at < a->at) {
        struct timer *x = a;
        a = b;
        b = x;
    }
    b->prev = a;
    b->next = a->child;
    if (a->child)
        a->child->prev = b;
    a->child = b;
    return a;
}

/* Two-pass pairing of a sibling list into one heap; O(log n) amortized. */
static struct timer *merge_pairs(struct timer *first)
{
    struct timer *stack = NULL;

    while (first) {
        struct timer *a = first, *b = a->next;
        if (!b) {
            a->prev = NULL;
            a->next = stack;
            stack = a;
            break;
        }
        first = b->next;
        a->next = a->prev = b->next = b->prev = NULL;
        a = meld(a, b);
        a->next = stack;
        stack = a;
    }
    struct timer *root = NULL;
    while (stack) {
        struct timer *n = stack->next;
        stack->next = stack->prev = NULL;
        root = root ? meld(root, stack) : stack;
        stack = n;
    }
    return root;
}

void timer_heap_insert(struct timer_heap *h, struct timer *t, uint64_t at)
{
    t->at = at;
    t->child = t->next = t->prev = NULL;
    t->armed = true;
    h->root = h->root ? meld(h->root, t) : t;
    h->count++;
}

struct timer *timer_heap_pop(struct timer_heap *h)
{
    struct timer *t = h->root;
    if (!t)
        return NULL;
    h->root = merge_pairs(t->child);
    t->child = t->next = t->prev = NULL;
    t->armed = false;
    h->count--;
    return t;
}

void timer_heap_remove(struct timer_heap *h, struct timer *t)
{
    if (!t->armed)
        return;
    if (t == h->root) {
        timer_heap_pop(h);
        return;
    }
    /* Unlink t (and its subtree) from its sibling list. */
    if (t->prev->child == t)
        t->prev->child = t->next;
    else
        t->prev->next = t->next;
    if (t->next)
        t->next->prev = t->prev;
    struct timer *sub = merge_pairs(t->child);
    if (sub)
        h->root = meld(h->root, sub);
    t->child = t->next = t->prev = NULL;
    t->armed = false;
    h->count--;
}
