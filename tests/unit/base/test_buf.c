/* test_buf.c -- the buffers' free lists and their trim (src/base/buf.h). */
#include "unit.h"

#include <stdlib.h>

#include "buf.h"

#define BURST 6000   /* more than one slice, more than the old cap of 4096 */

/* BURST buffers taken from empty free lists, then all given back; b holds
 * them (now empty), or NULL. */
static struct buf *burst_given_back(void)
{
    buf_drain_pools();
    struct buf *b = calloc(BURST, sizeof *b);
    if (!CHECK(b != NULL))
        return NULL;
    for (int i = 0; i < BURST; i++)
        buf_reserve(&b[i], 100);
    CHECK_EQ_INT(buf_spare(), 0);
    for (int i = 0; i < BURST; i++)
        buf_release(&b[i]);
    return b;
}

/* A burst of connections ending together gives its buffers back to the
 * free lists, all of them: none is unmapped on the spot (each munmap would
 * slow the end of one connection by tens of microseconds). */
TEST(given_back_buffers_are_kept_until_the_trim)
{
    struct buf *b = burst_given_back();
    if (!b)
        return;
    CHECK_EQ_INT(buf_spare(), BURST);
    for (int i = 0; i < BURST; i++)   /* a new burst takes them again */
        buf_reserve(&b[i], 100);
    CHECK_EQ_INT(buf_spare(), 0);
    for (int i = 0; i < BURST; i++)
        buf_release(&b[i]);
    free(b);
    buf_drain_pools();
}

/* The trim returns what stayed unused for a whole period between two
 * ticks, a small slice per call, until none is left. */
TEST(trim_returns_a_burst_in_slices)
{
    struct buf *b = burst_given_back();
    if (!b)
        return;
    free(b);
    CHECK_EQ_INT(buf_trim(true), 1);   /* the period starts: kept for now */
    CHECK_EQ_INT(buf_spare(), BURST);
    CHECK_EQ_INT(buf_trim(true), 2);   /* unused for a whole period: a slice goes */
    unsigned left = buf_spare();
    CHECK(left < BURST && left >= BURST - 64);
    int calls = 1;
    int r;
    while ((r = buf_trim(false)) == 2 && calls < 10000)
        calls++;
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(buf_spare(), 0);
    CHECK(calls >= BURST / 64);   /* in slices, not at once */
}

int main(void)
{
    RUN(given_back_buffers_are_kept_until_the_trim);
    RUN(trim_returns_a_burst_in_slices);
    return unit_summary("test_buf");
}
