/* pool_internal.h -- what the three files of the pool module share: pool.c
 * (the pools, their connections, the counts of requests, retries and
 * waiters), pool_balance.c (the choice of a server, passive health, the
 * latency kept for balance: ewma, slow start) and pool_slot.c (the slots of
 * dynamic servers). Also the pure pieces of the choice, for
 * tests/unit/upstream/test_pool.c. Nothing else includes it.
 *
 * Latency (balance: ewma), a peak-sensitive moving average of each server's
 * time from the start of an attempt to its response head:
 *   - a sample above the current average replaces it at once (a server
 *     that slows down is avoided from its first slow answer);
 *   - one below it pulls the average towards it with the weight
 *     1 - exp(-dt / POOL_EWMA_TAU_NS), dt the time since the last sample;
 *   - between samples the average decays towards 0 with the same time
 *     constant, so that a server that got no traffic because it looked slow
 *     is tried again (after about 45 s for 100x slower than its peers);
 *   - an average below POOL_EWMA_FLOOR_NS counts as that floor: a server
 *     without a sample (new, or idle for a long time) looks fast, and is
 *     tried, but its connections in use still count;
 *   - a failed attempt (no answer, or a status that counts as a failure)
 *     is a sample of at least POOL_EWMA_PENALTY_NS, so that a server that
 *     refuses or resets at once does not look fast. */
#ifndef HG_POOL_INTERNAL_H
#define HG_POOL_INTERNAL_H

#include <stdint.h>

#include "loop.h"
#include "pool.h"

#define POOL_EWMA_TAU_NS (10000 * MS)
#define POOL_EWMA_FLOOR_NS (1 * MS)
#define POOL_EWMA_PENALTY_NS (250 * MS)

/* Slow start: the share of its weight a server has, in thousandths, from
 * POOL_RAMP_FIRST when it is back in service to 1000 after slow_start. */
#define POOL_RAMP_FIRST 100u

/* pool_balance.c: the loop whose clock the choice reads, and the seed of its
 * random draws. */
void pool_balance_init(struct loop *l);

/* Sets the random draws of p2c and ewma to a known sequence (tests). */
void pool_rng_seed(uint64_t seed);

/* Passive health's reading of an outcome (pool_report). */
enum pool_verdict { POOL_SUCCESS, POOL_FAILURE, POOL_NEITHER };

/* What the pool's health.passive.on makes of o: an answer is a failure when
 * its status is listed (or 5xx is, for 500..599), else a success; another
 * outcome is a failure when its class is listed, else neither (it does not
 * reset the count either). POOL_CANCELLED is neither. Pure. */
enum pool_verdict pool_verdict(const struct pool_group *g, enum pool_outcome o, int status);

/* The latency average `avg`, dt ns after its last sample (pure). */
double pool_ewma_decay(double avg, uint64_t dt);

/* The average after a sample of `sample` ns taken dt ns after the last one
 * (pure): the sample itself when above the decayed average, else the
 * decayed average pulled towards it. */
double pool_ewma_next(double avg, uint64_t dt, double sample);

/* A server's share of its weight in thousandths at `now`, back in service
 * since `since`, for a slow start of `dur` ns (0: none): from
 * POOL_RAMP_FIRST, linearly, to 1000 at since + dur (pure). */
unsigned pool_ramp_permille(uint64_t since, uint64_t now, uint64_t dur);

/* s's weight now, in thousandths of a weight unit (weight x ramp). */
uint64_t pool_weight_now(const struct pool_server *s, uint64_t now);

/* s's cost in an ewma pool at `now`: its latency (at least the floor) x
 * (connections in use + 1) / its weight now (a weight of 1 at the end of its
 * slow start divides by 1). The lower, the better. */
double pool_ewma_cost(const struct pool_server *s, uint64_t now);


/* A copy of s (out of memory is fatal). */
char *pool_strdup(const char *s);

/* Sets g's servers up from the items v[0..n) with weights w: one server in
 * service per IP literal first, then POOL_NAME_SLOTS unused slots per name
 * (g->names), so that the array never moves. */
void pool_slots_build(struct pool_group *g, const struct val_server *const *v,
                      const unsigned *w, unsigned n);

/* SRV priorities at time now: marks standby the servers of every priority
 * but the lowest that has a server that could serve (pool_pick, first). */
void pool_standby_sync(struct pool_group *g, uint64_t now);

#endif
