/* qest.h -- a live, decaying estimate of a latency distribution's
 * quantiles, and a budget that caps a share of extra work (hedges).
 *
 * The estimate is a histogram of log-spaced buckets (four per doubling, so a
 * bucket is at most 25% wide and a quantile read inside it, linearly, is off
 * by a few percent at worst) whose counts decay with a half-life: a sample
 * weighs half as much QE_HALF_LIFE_NS later, so the estimate follows a
 * server that slows down within seconds and forgets an old burst. Adding a
 * sample and reading a quantile never allocate; decay is applied lazily, at
 * most every QE_TICK_NS, on the next add.
 *
 * Pure logic: the caller passes the time (ns on its clock). One estimate per
 * route per worker (a worker's view is a fair sample of the route's traffic;
 * no shared memory, no atomics). */
#ifndef HG_QEST_H
#define HG_QEST_H

#include <stdbool.h>
#include <stdint.h>

#define QE_MIN_SHIFT 15                  /* the first bucket ends at 2^15 ns (~33 us) */
#define QE_SUB 4                          /* buckets per doubling */
#define QE_BUCKETS (22 * QE_SUB)          /* up to 2^37 ns (~137 s); above: the last */
#define QE_HALF_LIFE_NS 5000000000ull     /* 5 s */
#define QE_TICK_NS 250000000ull           /* decay steps of 250 ms */
#define QE_MIN_SAMPLES 20.0               /* fewer (decayed) samples: no estimate */

struct qest {
    float n[QE_BUCKETS];
    float total;          /* the sum of n */
    uint64_t decayed_at;  /* when the counts were last decayed; 0: never */
};

/* Adds one sample of v ns, observed at now. */
void qe_add(struct qest *q, uint64_t v, uint64_t now);

/* The p quantile (0 < p < 1) of the samples, in ns; 0 when there are fewer
 * than QE_MIN_SAMPLES (weighed by their decay): "no estimate yet". */
uint64_t qe_quantile(const struct qest *q, double p);

/* The samples' weight now (decayed counts), for tests and logs. */
double qe_weight(const struct qest *q);

/* The bucket of a value, and a bucket's bounds [lo, hi) in ns (exposed for
 * the unit tests). */
unsigned qe_bucket(uint64_t v);
void qe_bounds(unsigned b, uint64_t *lo, uint64_t *hi);

/* A budget of extra work as a share of the work done (a token bucket): each
 * unit of work earns percent/100 of a token, up to QB_BURST tokens; an extra
 * unit (a hedge) spends one whole token. With percent 5, hedges stay at
 * most 5% of requests over any long run, and at most QB_BURST at once. */
#define QB_BURST 10.0

struct qbudget {
    float tokens;
};

/* Work done: earn percent/100 of a token. */
void qb_earn(struct qbudget *b, unsigned percent);

/* Whether an extra unit may start now; if so it is spent. */
bool qb_spend(struct qbudget *b);

#endif
