/* qest.c -- decaying latency quantiles and a share budget (see qest.h). */
#include "qest.h"

#include <math.h>

unsigned qe_bucket(uint64_t v)
{
    if (v < (1ull << QE_MIN_SHIFT))
        return 0;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    /* the two bits after the highest say where in its doubling v is */
    unsigned sub = (unsigned)(v >> (msb - 2)) & (QE_SUB - 1);
    unsigned b = (msb - QE_MIN_SHIFT) * QE_SUB + sub + 1;
    return b < QE_BUCKETS ? b : QE_BUCKETS - 1;
}

void qe_bounds(unsigned b, uint64_t *lo, uint64_t *hi)
{
    if (b == 0) {
        *lo = 0;
        *hi = 1ull << QE_MIN_SHIFT;
        return;
    }
    unsigned msb = (b - 1) / QE_SUB + QE_MIN_SHIFT, sub = (b - 1) % QE_SUB;
    uint64_t step = 1ull << (msb - 2);
    *lo = (1ull << msb) + sub * step;
    *hi = *lo + step;
}

/* Weighs every count down by the time gone since the last decay. */
static void decay(struct qest *q, uint64_t now)
{
    if (!q->decayed_at) {
        q->decayed_at = now;
        return;
    }
    if (now < q->decayed_at + QE_TICK_NS)
        return;
    double f = exp2(-(double)(now - q->decayed_at) / (double)QE_HALF_LIFE_NS);
    q->total = 0;
    for (unsigned i = 0; i < QE_BUCKETS; i++) {
        q->n[i] = (float)(q->n[i] * f);
        if (q->n[i] < 1e-6f)
            q->n[i] = 0;   /* (no denormals: they are slow) */
        q->total += q->n[i];
    }
    q->decayed_at = now;
}

void qe_add(struct qest *q, uint64_t v, uint64_t now)
{
    decay(q, now);
    q->n[qe_bucket(v)] += 1.0f;
    q->total += 1.0f;
}

double qe_weight(const struct qest *q)
{
    return q->total;
}

uint64_t qe_quantile(const struct qest *q, double p)
{
    if (q->total < QE_MIN_SAMPLES || !(p > 0 && p < 1))
        return 0;
    double want = p * q->total, seen = 0;
    for (unsigned i = 0; i < QE_BUCKETS; i++) {
        if (q->n[i] <= 0)
            continue;
        if (seen + q->n[i] >= want) {
            uint64_t lo, hi;
            qe_bounds(i, &lo, &hi);
            double frac = (want - seen) / q->n[i];
            uint64_t v = lo + (uint64_t)(frac * (double)(hi - lo));
            return v ? v : 1;
        }
        seen += q->n[i];
    }
    uint64_t lo, hi;   /* (rounding: the last non-empty bucket's top) */
    for (unsigned i = QE_BUCKETS; i-- > 0;)
        if (q->n[i] > 0) {
            qe_bounds(i, &lo, &hi);
            return hi;
        }
    return 0;
}

void qb_earn(struct qbudget *b, unsigned percent)
{
    b->tokens += (float)percent / 100.0f;
    if (b->tokens > QB_BURST)
        b->tokens = (float)QB_BURST;
}

bool qb_spend(struct qbudget *b)
{
    if (b->tokens < 1.0f)
        return false;
    b->tokens -= 1.0f;
    return true;
}
