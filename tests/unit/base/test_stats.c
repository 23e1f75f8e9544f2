/* test_stats.c -- the duration histograms' buckets and the shed reasons
 * (src/base/stats.h). */
#include "unit.h"

#include <string.h>

#include "stats.h"

TEST(bucket_choice)
{
    CHECK_EQ_INT(stats_hist_bucket(0), 0);
    CHECK_EQ_INT(stats_hist_bucket(1000), 0);       /* le=0.001: at the bound */
    CHECK_EQ_INT(stats_hist_bucket(1001), 1);
    CHECK_EQ_INT(stats_hist_bucket(2500), 1);
    CHECK_EQ_INT(stats_hist_bucket(2501), 2);
    CHECK_EQ_INT(stats_hist_bucket(99999), 6);      /* le=0.1 */
    CHECK_EQ_INT(stats_hist_bucket(10000000), STATS_HBUCKETS - 1);
    CHECK_EQ_INT(stats_hist_bucket(10000001), STATS_HBUCKETS);   /* +Inf */
    CHECK_EQ_INT(stats_hist_bucket(UINT64_MAX), STATS_HBUCKETS);
    /* every bound is in its own bucket, and the bounds rise */
    for (unsigned b = 0; b < STATS_HBUCKETS; b++) {
        CHECK_EQ_INT(stats_hist_bucket(stats_hbucket_us[b]), b);
        if (b)
            CHECK(stats_hbucket_us[b] > stats_hbucket_us[b - 1]);
    }
}

TEST(hist_add)
{
    struct stats_hist h = {0};
    stats_hist_add(&h, 1500000);      /* 1.5 ms */
    stats_hist_add(&h, 20000000000);  /* 20 s */
    stats_hist_add(&h, 999);          /* under a microsecond: 0 */
    CHECK_EQ_U64(h.count, 3);
    CHECK_EQ_U64(h.n[0], 1);
    CHECK_EQ_U64(h.n[1], 1);
    CHECK_EQ_U64(h.n[STATS_HBUCKETS], 1);
    CHECK_EQ_U64(h.sum_us, 1500 + 20000000);
}

TEST(shed_table)
{
    memset(stats->shed, 0, sizeof stats->shed);
    CHECK(stats_shed("pool_full"));
    CHECK(stats_shed("queue_timeout"));
    CHECK(stats_shed("pool_full"));
    CHECK(!stats_shed("read_timeout"));
    CHECK(!stats_shed("ok"));
    for (unsigned i = 0; i < STATS_SHED_REASONS; i++)
        CHECK_EQ_U64(stats->shed[i], !strcmp(stats_shed_reasons[i], "pool_full")       ? 2
                                     : !strcmp(stats_shed_reasons[i], "queue_timeout") ? 1
                                                                                       : 0);
}

int main(void)
{
    RUN(bucket_choice);
    RUN(hist_add);
    RUN(shed_table);
    return unit_summary("test_stats");
}
