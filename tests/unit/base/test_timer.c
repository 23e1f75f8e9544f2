/* test_timer.c -- the intrusive pairing heap (src/base/timer.h). */
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#include "timer.h"

#define N 10000

static struct timer T[N];

/* Deterministic xorshift64, so a failure reproduces. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static int cb_calls;
static void cb(struct timer *t)
{
    (void)t;
    cb_calls++;
}

static void init_all(void)
{
    for (int i = 0; i < N; i++)
        timer_init(&T[i], cb);
}

/* Pops everything; checks the order is non-decreasing, that every popped
 * node was armed and comes back disarmed, and returns how many came out. */
static size_t drain_sorted(struct timer_heap *h)
{
    uint64_t last = 0;
    size_t n = 0;
    bool sorted = true, disarmed = true, minok = true;
    for (;;) {
        struct timer *m = timer_heap_min(h);
        struct timer *t = timer_heap_pop(h);
        if (m != t)
            minok = false;
        if (!t)
            break;
        if (t->at < last)
            sorted = false;
        if (t->armed)
            disarmed = false;
        last = t->at;
        n++;
        if (n > 2 * N)
            break; /* a cycle in the heap */
    }
    CHECK(sorted);
    CHECK(disarmed);
    CHECK(minok);
    CHECK_EQ_INT(h->count, 0);
    CHECK(h->root == NULL);
    return n;
}

TEST(empty_heap)
{
    struct timer_heap h = {0};
    CHECK(timer_heap_min(&h) == NULL);
    CHECK(timer_heap_pop(&h) == NULL);
    CHECK_EQ_INT(h.count, 0);
}

TEST(init)
{
    struct timer t;
    memset(&t, 0x5A, sizeof t);
    timer_init(&t, cb);
    CHECK(!t.armed);
    CHECK(t.cb == cb);
}

TEST(insert_pop_sorted_10000)
{
    struct timer_heap h = {0};
    init_all();
    bool armed = true;
    for (int i = 0; i < N; i++) {
        timer_heap_insert(&h, &T[i], 1 + rng() % 1000000000ull);
        armed = armed && T[i].armed;
    }
    CHECK(armed);
    CHECK_EQ_INT(h.count, N);
    CHECK_EQ_INT(drain_sorted(&h), N);
    CHECK_EQ_INT(cb_calls, 0); /* the heap never calls back */
}

TEST(min_tracks_inserts)
{
    struct timer_heap h = {0};
    init_all();
    uint64_t min = UINT64_MAX;
    bool ok = true;
    for (int i = 0; i < 1000; i++) {
        uint64_t at = rng() % 100000;
        if (at < min)
            min = at;
        timer_heap_insert(&h, &T[i], at);
        if (timer_heap_min(&h) == NULL || timer_heap_min(&h)->at != min)
            ok = false;
    }
    CHECK(ok);
    CHECK_EQ_INT(drain_sorted(&h), 1000);
}

TEST(random_remove_half)
{
    struct timer_heap h = {0};
    init_all();
    for (int i = 0; i < N; i++)
        timer_heap_insert(&h, &T[i], rng() % 50000); /* many duplicates too */
    /* pop a few first so the heap has a non-trivial shape */
    for (int i = 0; i < 10; i++)
        CHECK(timer_heap_pop(&h) != NULL);
    size_t armed = N - 10;
    CHECK_EQ_INT(h.count, armed);

    /* remove a random half, in random order */
    static int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rng() % (uint64_t)(i + 1));
        int x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    size_t removed = 0;
    bool count_ok = true, disarmed = true;
    for (int k = 0; k < N / 2; k++) {
        struct timer *t = &T[order[k]];
        bool was = t->armed;
        timer_heap_remove(&h, t);
        if (was) {
            removed++;
            if (t->armed)
                disarmed = false;
        }
        if (h.count != armed - removed)
            count_ok = false;
    }
    CHECK(count_ok);
    CHECK(disarmed);
    CHECK_EQ_INT(h.count, armed - removed);
    CHECK_EQ_INT(drain_sorted(&h), armed - removed);
}

TEST(remove_interleaved_with_inserts)
{
    struct timer_heap h = {0};
    init_all();
    size_t armed = 0;
    bool ok = true;
    for (int step = 0; step < 50000; step++) {
        struct timer *t = &T[rng() % 2000];
        switch (rng() % 3) {
        case 0:
            if (!t->armed) {
                timer_heap_insert(&h, t, rng() % 1000);
                armed++;
            }
            break;
        case 1:
            if (t->armed)
                armed--;
            timer_heap_remove(&h, t);
            break;
        default: {
            struct timer *m = timer_heap_min(&h);
            struct timer *p = timer_heap_pop(&h);
            if (m != p)
                ok = false;
            if (p)
                armed--;
            break;
        }
        }
        if (h.count != armed)
            ok = false;
    }
    CHECK(ok);
    CHECK_EQ_INT(drain_sorted(&h), armed);
}

TEST(remove_root)
{
    struct timer_heap h = {0};
    init_all();
    for (int i = 0; i < 100; i++)
        timer_heap_insert(&h, &T[i], (uint64_t)(1000 - i)); /* T[99] earliest */
    CHECK(timer_heap_min(&h) == &T[99]);
    timer_heap_remove(&h, &T[99]);
    CHECK(!T[99].armed);
    CHECK_EQ_INT(h.count, 99);
    CHECK(timer_heap_min(&h) == &T[98]);
    timer_heap_remove(&h, timer_heap_min(&h));
    CHECK(timer_heap_min(&h) == &T[97]);
    CHECK_EQ_INT(h.count, 98);
    CHECK_EQ_INT(drain_sorted(&h), 98);

    /* the only node */
    timer_heap_insert(&h, &T[0], 5);
    timer_heap_remove(&h, &T[0]);
    CHECK(timer_heap_min(&h) == NULL);
    CHECK_EQ_INT(h.count, 0);
}

TEST(remove_not_armed_is_noop)
{
    struct timer_heap h = {0};
    init_all();
    timer_heap_remove(&h, &T[0]); /* empty heap, never armed */
    CHECK_EQ_INT(h.count, 0);
    CHECK(h.root == NULL);
    for (int i = 1; i <= 10; i++)
        timer_heap_insert(&h, &T[i], (uint64_t)i * 10);
    struct timer *root = h.root;
    timer_heap_remove(&h, &T[0]);
    CHECK_EQ_INT(h.count, 10);
    CHECK(h.root == root);
    /* removed twice: the second is a no-op */
    timer_heap_remove(&h, &T[5]);
    timer_heap_remove(&h, &T[5]);
    CHECK_EQ_INT(h.count, 9);
    /* popped, then removed: a no-op */
    struct timer *p = timer_heap_pop(&h);
    CHECK(p == &T[1]);
    timer_heap_remove(&h, p);
    CHECK_EQ_INT(h.count, 8);
    /* an all-zero node with cb set is as good as an initialised one */
    struct timer z;
    memset(&z, 0, sizeof z);
    z.cb = cb;
    timer_heap_remove(&h, &z);
    CHECK_EQ_INT(h.count, 8);
    timer_heap_insert(&h, &z, 1);
    CHECK(timer_heap_min(&h) == &z);
    CHECK_EQ_INT(drain_sorted(&h), 9);
}

TEST(reinsert_after_remove)
{
    struct timer_heap h = {0};
    init_all();
    for (int i = 0; i < 10; i++)
        timer_heap_insert(&h, &T[i], (uint64_t)(100 + i));
    timer_heap_remove(&h, &T[3]);
    timer_heap_insert(&h, &T[3], 1); /* earlier than all */
    CHECK(T[3].armed);
    CHECK_EQ_U64(T[3].at, 1);
    CHECK(timer_heap_min(&h) == &T[3]);
    CHECK_EQ_INT(h.count, 10);
    timer_heap_remove(&h, &T[3]);
    timer_heap_insert(&h, &T[3], 1000); /* later than all */
    timer_heap_remove(&h, &T[7]);
    timer_heap_insert(&h, &T[7], 105); /* tie with T[5] */
    CHECK_EQ_INT(h.count, 10);
    /* pop order by deadline */
    uint64_t want[] = {100, 101, 102, 104, 105, 105, 106, 108, 109, 1000};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        struct timer *t = timer_heap_pop(&h);
        if (!CHECK(t != NULL))
            break;
        CHECK_EQ_U64(t->at, want[i]);
    }
    CHECK(timer_heap_pop(&h) == NULL);
    /* a popped node can be armed again */
    timer_heap_insert(&h, &T[0], 7);
    CHECK(timer_heap_pop(&h) == &T[0]);
}

TEST(equal_deadlines)
{
    struct timer_heap h = {0};
    init_all();
    for (int i = 0; i < 1000; i++)
        timer_heap_insert(&h, &T[i], 42);
    CHECK_EQ_INT(h.count, 1000);
    /* remove some of the equals, root included */
    timer_heap_remove(&h, timer_heap_min(&h));
    for (int i = 0; i < 1000; i += 7)
        timer_heap_remove(&h, &T[i]);
    size_t left = 0;
    for (int i = 0; i < 1000; i++)
        left += T[i].armed;
    CHECK_EQ_INT(h.count, left);
    /* every node comes out exactly once */
    static bool seen[N];
    memset(seen, 0, sizeof seen);
    bool once = true, at_ok = true;
    struct timer *t;
    size_t n = 0;
    while ((t = timer_heap_pop(&h)) != NULL && n <= 1000) {
        size_t i = (size_t)(t - T);
        if (i >= 1000 || seen[i])
            once = false;
        else
            seen[i] = true;
        if (t->at != 42)
            at_ok = false;
        n++;
    }
    CHECK(once);
    CHECK(at_ok);
    CHECK_EQ_INT(n, left);
}

TEST(extreme_deadlines)
{
    struct timer_heap h = {0};
    init_all();
    timer_heap_insert(&h, &T[0], UINT64_MAX);
    timer_heap_insert(&h, &T[1], 0);
    timer_heap_insert(&h, &T[2], UINT64_MAX - 1);
    CHECK(timer_heap_pop(&h) == &T[1]);
    CHECK(timer_heap_pop(&h) == &T[2]);
    CHECK(timer_heap_pop(&h) == &T[0]);
    CHECK(timer_heap_pop(&h) == NULL);
}

int main(void)
{
    RUN(empty_heap);
    RUN(init);
    RUN(insert_pop_sorted_10000);
    RUN(min_tracks_inserts);
    RUN(random_remove_half);
    RUN(remove_interleaved_with_inserts);
    RUN(remove_root);
    RUN(remove_not_armed_is_noop);
    RUN(reinsert_after_remove);
    RUN(equal_deadlines);
    RUN(extreme_deadlines);
    return unit_summary("test_timer");
}
