/* test_loop.c -- the event loop's timers against the real clock
 * (src/base/loop.h): never early, and a long wait is not stretched by the
 * kernel's slack (0.1 % of a wait: 1 ms for a timer 1 s away). */
#include "unit.h"

#include <stdlib.h>

#include "loop.h"

static struct loop L;
static uint64_t fired_at;

static void on_timer(struct timer *t)
{
    (void)t;
    fired_at = loop_clock_ns();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Serves one timer armed `in` ns from now on an idle loop; its lateness
 * (ns, from the clock read in its callback), or UINT64_MAX if early. */
static uint64_t one_timer(uint64_t in)
{
    struct timer t;
    timer_init(&t, on_timer);
    loop_update_clock(&L);
    uint64_t at = L.now + in;
    fired_at = 0;
    loop_timer_at(&L, &t, at);
    while (!fired_at)
        if (loop_run_once(&L, -1) < 0)
            return UINT64_MAX;
    return fired_at < at ? UINT64_MAX : fired_at - at;
}

/* Five 1 s timers: none early, and the median under 0.6 ms late. Waiting
 * the whole second at once, the kernel's slack alone makes each one 1 ms
 * late (as before the loop split long waits); the wake-up itself takes
 * some 0.1 ms here. The median leaves room for a stalled virtual CPU. */
TEST(long_timers_are_not_stretched_by_slack)
{
    if (!CHECK_EQ_INT(loop_init(&L), 0))
        return;
    uint64_t late[5];
    for (int i = 0; i < 5; i++) {
        late[i] = one_timer(1000 * MS);
        if (!CHECK(late[i] != UINT64_MAX))
            fprintf(stderr, "    timer %d served early or the loop failed\n", i);
    }
    qsort(late, 5, sizeof late[0], cmp_u64);
    if (!CHECK(late[2] < 600 * 1000))
        fprintf(stderr, "    median lateness %.3f ms (each: %.3f %.3f %.3f %.3f %.3f)\n",
                late[2] / 1e6, late[0] / 1e6, late[1] / 1e6, late[2] / 1e6, late[3] / 1e6,
                late[4] / 1e6);
    loop_free(&L);
}

/* Short timers are waited for in one go and are never early either. */
TEST(short_timers_never_early)
{
    if (!CHECK_EQ_INT(loop_init(&L), 0))
        return;
    static const uint64_t in[] = {0, 1, 1000, 100 * 1000, 2 * MS, 20 * MS, 49 * MS, 51 * MS};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        if (!CHECK(one_timer(in[i]) != UINT64_MAX))
            fprintf(stderr, "    a timer %llu ns away was served early\n", (unsigned long long)in[i]);
    loop_free(&L);
}

int main(void)
{
    RUN(short_timers_never_early);
    RUN(long_timers_are_not_stretched_by_slack);
    return unit_summary("test_loop");
}
