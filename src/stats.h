/* stats.h -- counters for /metrics: plain integers bumped on the hot path
 * (no locks, one process), rendered in the Prometheus text format only when
 * scraped. */
#ifndef HG_STATS_H
#define HG_STATS_H

#include <stddef.h>
#include <stdint.h>

#define STATS_MAX_ROUTES 64
#define STATS_BUCKETS 12   /* first-byte latency histogram */

struct stats_route {
    uint64_t by_class[6];       /* responses by status class: [1]=1xx .. [5]=5xx, [0]=none */
    uint64_t first_byte[STATS_BUCKETS + 1];   /* cumulative counts per bucket, last = +Inf */
    uint64_t first_byte_sum_ms;
    uint64_t first_byte_count;
};

struct stats {
    struct stats_route routes[STATS_MAX_ROUTES];
    uint64_t reasons[32];       /* exchanges ended, by reason (stats_reason_index) */
    uint64_t retries, hedges, ejections;
};

extern struct stats stats;

/* Bucket bounds of the first-byte histogram, in milliseconds. */
extern const uint64_t stats_bucket_ms[STATS_BUCKETS];

/* Index of a reason name ("ok", "read_timeout", ...) in stats.reasons. */
int stats_reason_index(const char *reason);

/* Counts one ended exchange of route index ri (-1: none). */
void stats_exchange(int ri, int status, const char *reason, int64_t first_byte_ms);

/* Gauges supplied by the caller at scrape time. */
struct stats_gauges {
    unsigned clients, upstream_open;
    unsigned npools;
    const char *const *pool_names;
    const unsigned *pool_idle;
    unsigned nroutes;
    const char *const *route_names;   /* "host/path" */
};

/* Renders every metric in the Prometheus text format (version 0.0.4) into
 * out (cap bytes). Returns the length, or the length needed if larger. */
size_t stats_render(char *out, size_t cap, const struct stats_gauges *g);

#endif
