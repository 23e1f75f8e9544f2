/* test_qest.c -- decaying latency quantiles and the share budget (src/base/qest.h). */
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#include "qest.h"

#define MSNS 1000000ull
#define SEC (1000 * MSNS)

TEST(buckets_cover_and_order)
{
    CHECK_EQ_INT(qe_bucket(0), 0);
    CHECK_EQ_INT(qe_bucket((1ull << QE_MIN_SHIFT) - 1), 0);
    CHECK_EQ_INT(qe_bucket(1ull << QE_MIN_SHIFT), 1);
    CHECK_EQ_INT(qe_bucket(UINT64_MAX), QE_BUCKETS - 1);
    /* every value lies inside its bucket's bounds, buckets are contiguous */
    uint64_t prev_hi = 0;
    for (unsigned b = 0; b < QE_BUCKETS; b++) {
        uint64_t lo, hi;
        qe_bounds(b, &lo, &hi);
        CHECK_EQ_U64(lo, prev_hi);
        CHECK(hi > lo);
        CHECK(hi - lo <= lo / 4 + (b == 0 ? hi : 0));   /* at most 25% wide */
        CHECK_EQ_INT(qe_bucket(lo), b);
        if (b < QE_BUCKETS - 1)
            CHECK_EQ_INT(qe_bucket(hi - 1), b);
        prev_hi = hi;
    }
}

TEST(no_estimate_before_enough_samples)
{
    struct qest q;
    memset(&q, 0, sizeof q);
    for (int i = 0; i < (int)QE_MIN_SAMPLES - 1; i++)
        qe_add(&q, 5 * MSNS, SEC);
    CHECK_EQ_U64(qe_quantile(&q, 0.5), 0);
    qe_add(&q, 5 * MSNS, SEC);
    uint64_t m = qe_quantile(&q, 0.5);
    CHECK(m >= 4 * MSNS && m <= 6 * MSNS);
    CHECK_EQ_U64(qe_quantile(&q, 0), 0);   /* out of range */
    CHECK_EQ_U64(qe_quantile(&q, 1), 0);
}

/* 98 of 100 samples at 5 ms and 2 at 1 s: the median and p95 are about
 * 5 ms, the p99 is the slow ones. Within 8% (the bucket width, read
 * linearly). */
TEST(quantiles_of_a_mix)
{
    struct qest q;
    memset(&q, 0, sizeof q);
    srand(7);
    for (int i = 0; i < 10000; i++) {
        uint64_t v = (i % 50 == 0) ? SEC : 5 * MSNS + (uint64_t)(rand() % 1000) * 1000;
        qe_add(&q, v, SEC + (uint64_t)i * 100000);   /* 1 s in all: little decay */
    }
    uint64_t p50 = qe_quantile(&q, 0.5), p95 = qe_quantile(&q, 0.95),
             p99 = qe_quantile(&q, 0.99);
    CHECK(p50 >= 5 * MSNS && p50 <= 6 * MSNS * 108 / 100);
    CHECK(p95 >= 5 * MSNS && p95 <= 6 * MSNS * 108 / 100);
    CHECK(p99 >= 900 * MSNS && p99 <= 1100 * MSNS);
}

/* The estimate follows a change: 5 ms for a while, then 50 ms (at the same
 * rate of requests); after three half-lives the median is the new one. */
TEST(decay_follows_a_change)
{
    struct qest q;
    memset(&q, 0, sizeof q);
    uint64_t t = SEC;
    for (int i = 0; i < 2000; i++, t += 5 * MSNS)   /* 10 s at 5 ms */
        qe_add(&q, 5 * MSNS, t);
    uint64_t before = qe_quantile(&q, 0.5);
    CHECK(before < 6 * MSNS);
    for (int i = 0; i < 3000; i++, t += 5 * MSNS)   /* 15 s at 50 ms: 3 half-lives */
        qe_add(&q, 50 * MSNS, t);
    uint64_t after = qe_quantile(&q, 0.5);
    CHECK(after >= 45 * MSNS && after <= 55 * MSNS);
    /* and the weight is bounded: old samples fade */
    CHECK(qe_weight(&q) < 1600.0);   /* (200 a second, 5 s half-life: ~1443) */
    /* an idle minute: too few samples weigh to estimate */
    qe_add(&q, 50 * MSNS, t + 60 * SEC);
    CHECK_EQ_U64(qe_quantile(&q, 0.5), 0);
}

TEST(budget_caps_the_share)
{
    struct qbudget b = {0};
    unsigned spent = 0;
    for (int i = 0; i < 10000; i++) {
        qb_earn(&b, 5);
        if (qb_spend(&b))   /* wanting a hedge on every request */
            spent++;
    }
    CHECK(spent >= 499 && spent <= 500);
    /* a burst is bounded by QB_BURST */
    struct qbudget c = {0};
    for (int i = 0; i < 100000; i++)
        qb_earn(&c, 5);
    unsigned burst = 0;
    while (qb_spend(&c))
        burst++;
    CHECK_EQ_INT(burst, (int)QB_BURST);
    struct qbudget z = {0};
    qb_earn(&z, 0);
    CHECK(!qb_spend(&z));
}

int main(void)
{
    RUN(buckets_cover_and_order);
    RUN(no_estimate_before_enough_samples);
    RUN(quantiles_of_a_mix);
    RUN(decay_follows_a_change);
    RUN(budget_caps_the_share);
    return unit_summary("test_qest");
}
