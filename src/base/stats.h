/* stats.h -- counters for /metrics: plain integers bumped on the hot path
 * (no locks), rendered in the Prometheus text format only when scraped.
 *
 * Each process writes only its own `struct stats`. Under a master, the slots
 * live in one shared mapping made before the workers are forked
 * (stats_share); a slot carries the configuration generation of its worker,
 * and a scrape, answered by whichever worker accepts it, sums the slots of
 * its own generation. A replacement worker takes over its predecessor's slot
 * and counts on from there; a reload starts new slots (counters reset, as on
 * a restart). Gauges are published into the slot by each worker once a
 * second and at each scrape, so those of other workers may be up to 1 s old.
 * Readers may see a counter torn between two values only on 32-bit targets;
 * 64-bit aligned loads and stores do not tear on x86-64 or arm64. */
#ifndef HG_STATS_H
#define HG_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_MAX_ROUTES 64
#define STATS_BUCKETS 12   /* first-byte latency histogram */
#define STATS_MAX_POOLS 64
/* Servers with histograms of their own: the pools' server slots in
 * pool_groups order (a pool's literal servers, then its names' slots);
 * those past this bound are counted under their route only. */
#define STATS_MAX_SERVERS 256

/* A histogram of durations: fixed, log-spaced buckets (stats_hbucket_us),
 * counts per bucket (not cumulative: one increment per sample; the scrape
 * sums them), the sum in microseconds. */
#define STATS_HBUCKETS 13
struct stats_hist {
    uint64_t n[STATS_HBUCKETS + 1];   /* [STATS_HBUCKETS]: above the last bound (+Inf) */
    uint64_t sum_us;
    uint64_t count;
};

struct stats_route {
    uint64_t by_class[6];       /* responses by status class: [1]=1xx .. [5]=5xx, [0]=none */
    uint64_t first_byte[STATS_BUCKETS + 1];   /* cumulative counts per bucket, last = +Inf */
    uint64_t first_byte_sum_ms;
    uint64_t first_byte_count;
    struct stats_hist duration;   /* request head in -> exchange ended */
    struct stats_hist head;       /* request sent -> the response head used */
    struct stats_hist left;       /* total deadline left at dispatch */
};

/* A server's (one slot of a pool's servers array). */
struct stats_server {
    struct stats_hist duration;   /* requests whose last attempt it served */
    struct stats_hist head;       /* request sent -> its response head (used) */
};

/* Requests shed: answered by hourglass itself, without an upstream
 * response, because of admission (stats_shed_reasons). */
#define STATS_SHED_REASONS 6
extern const char *const stats_shed_reasons[STATS_SHED_REASONS];

/* What became of hedged attempts. */
enum { STATS_HEDGE_WON, STATS_HEDGE_LOST, STATS_HEDGE_FAILED, STATS_HEDGE_SKIPPED,
       STATS_HEDGE_RESULTS };

/* A pool's gauges. */
struct stats_pool {
    uint64_t idle;       /* idle keep-alive connections */
    uint64_t requests;   /* requests in flight (the retry budget's base) */
    uint64_t retries;    /* ... of them retrying or hedged (the budget's use) */
    uint64_t waiting;    /* requests waiting for a connection slot */
    uint64_t servers;    /* servers in service */
    uint64_t leaving;    /* servers that left their name's answer, still finishing */
};

/* Resolutions of a pool's names, by result. */
enum { STATS_DNS_OK, STATS_DNS_NXDOMAIN, STATS_DNS_TIMEOUT, STATS_DNS_ERROR, STATS_DNS_RESULTS };

#define STATS_GRPC_STATUSES 18

struct stats {
    uint32_t gen;               /* generation of the worker using it; 0 = free */
    uint32_t npools;
    struct stats_route routes[STATS_MAX_ROUTES];
    uint64_t reasons[32];       /* exchanges ended, by reason (stats_reason_index) */
    uint64_t retries, hedges, ejections;
    uint64_t dropped_underscore;   /* request fields dropped: '_' in the name */
    uint64_t h2_conns, h2_streams;   /* HTTP/2 connections and streams opened */
    uint64_t h2_resets[4];      /* streams reset, by cause (STATS_H2_RESET_*) */
    uint64_t h2_goaways[3];     /* GOAWAY sent: [0] no_error, [1] protocol_error, [2] enhance_your_calm */
    uint64_t tls[2][4];         /* handshakes by side (STATS_TLS_*) and result (tls.h) */
    uint64_t grpc_calls[STATS_GRPC_STATUSES];   /* gRPC calls ended, by grpc-status
                                                   (the last slot: above 16) */
    uint64_t h2_up_conns, h2_up_streams;   /* HTTP/2 upstream connections and streams opened */
    uint64_t h2_up_cancels, h2_up_refused; /* ... streams we reset, streams refused unprocessed */
    uint64_t dns[STATS_MAX_POOLS][STATS_DNS_RESULTS];   /* resolutions of each pool's names */
    struct stats_server servers[STATS_MAX_SERVERS];
    struct stats_hist queue[STATS_MAX_POOLS];   /* waits for a connection slot, by pool */
    struct stats_hist timer_late;   /* how late the loop served each timer (loop.c) */
    uint64_t shed[STATS_SHED_REASONS];
    uint64_t hedge_results[STATS_HEDGE_RESULTS];
    uint64_t reqbuf[3];         /* request_buffering: STATS_REQBUF_* */
    uint64_t evicted[2];        /* connections closed at max_connections: [0] idle, [1] head */
    /* gauges, as last published by the slot's worker */
    uint64_t clients, upstream_open;
    struct stats_pool pools[STATS_MAX_POOLS];
};

#define STATS_H2_RESET_CLIENT 0     /* the client reset it */
#define STATS_H2_RESET_CANCEL 1     /* the proxy cut it (a timeout, an upstream failure) */
#define STATS_H2_RESET_REFUSED 2    /* over max_concurrent_streams */
#define STATS_H2_RESET_PROTOCOL 3   /* a malformed request */
#define STATS_H2_RESET_CAUSES 4

#define STATS_REQBUF_BUFFERED 0      /* a body read whole before dispatch */
#define STATS_REQBUF_LARGER 1        /* Content-Length over the route's size: streamed */
#define STATS_REQBUF_OVER_BUDGET 2   /* the worker's budget spent: streamed */

#define STATS_TLS_CLIENT 0
#define STATS_TLS_UPSTREAM 1

/* This process's counters: a private struct, or a shared slot after
 * stats_use(). */
extern struct stats *stats;

/* Master: maps nslots zeroed shared slots (inherited by forked workers).
 * 0 or -errno. */
int stats_share(unsigned nslots);

/* Master: slot i of the shared mapping (NULL when none or out of range). */
struct stats *stats_slot(unsigned i);
unsigned stats_nslots(void);

/* Worker: count into shared slot i from now on. */
void stats_use(unsigned i);

/* Bucket bounds of the first-byte histogram, in milliseconds. */
extern const uint64_t stats_bucket_ms[STATS_BUCKETS];

/* Index of a reason name ("ok", "read_timeout", ...) in stats.reasons. */
int stats_reason_index(const char *reason);

/* Counts one ended exchange of route index ri (-1: none). */
void stats_exchange(int ri, int status, const char *reason, int64_t first_byte_ms);

/* Bucket bounds of the duration histograms, in microseconds: 1 ms to 10 s,
 * log-spaced (1, 2.5, 5 per decade). */
extern const uint64_t stats_hbucket_us[STATS_HBUCKETS];

/* The bucket of a duration of us microseconds: the first whose bound is at
 * least us, or STATS_HBUCKETS (+Inf) above them all. Pure. */
unsigned stats_hist_bucket(uint64_t us);

/* Adds one sample of ns nanoseconds to h. */
void stats_hist_add(struct stats_hist *h, uint64_t ns);

/* A request's whole duration, under route ri and server si (either -1:
 * none, or past the bounds). */
void stats_request_time(int ri, int si, uint64_t ns);

/* The time from a request sent to the response head used, likewise. */
void stats_head_time(int ri, int si, uint64_t ns);

/* The total deadline left when route ri's request was first dispatched. */
void stats_left_at_dispatch(int ri, uint64_t ns);

/* A wait for a connection slot of pool pi. */
void stats_queue_wait(int pi, uint64_t ns);

/* Counts a request shed for this reason when it is one of
 * stats_shed_reasons; returns whether it was. */
bool stats_shed(const char *reason);

/* Publishes this process's gauges into its struct stats. */
void stats_publish(unsigned clients, unsigned upstream_open, const struct stats_pool *pools,
                   unsigned npools);

/* Names for the labels, supplied by the caller at scrape time (the same in
 * every worker of a generation). */
struct stats_gauges {
    unsigned npools;
    const char *const *pool_names;
    unsigned nroutes;
    const char *const *route_names;   /* "host/path" */
    unsigned nservers;
    const char *const *server_pools;  /* each server's pool name */
    const char *const *server_names;  /* "10.0.0.1:80", or a name's slot "api:80#3" */
};

/* Renders every metric in the Prometheus text format (version 0.0.4) into
 * out (cap bytes), summed over the slots of this process's generation.
 * Returns the length, or the length needed if larger. */
size_t stats_render(char *out, size_t cap, const struct stats_gauges *g);

#endif
