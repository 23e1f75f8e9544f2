/* stats.c -- counters for /metrics (see stats.h). */
#define _GNU_SOURCE
#include "stats.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static struct stats own;
struct stats *stats = &own;
static struct stats *shared;   /* the master's mapping, inherited */
static unsigned nshared;

int stats_share(unsigned nslots)
{
    void *p = mmap(NULL, nslots * sizeof *shared, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    shared = p;
    nshared = nslots;
    return 0;
}

struct stats *stats_slot(unsigned i)
{
    return shared && i < nshared ? &shared[i] : NULL;
}

unsigned stats_nslots(void)
{
    return nshared;
}

void stats_use(unsigned i)
{
    if (shared && i < nshared)
        stats = &shared[i];
}

void stats_publish(unsigned clients, unsigned upstream_open, const struct stats_pool *pools,
                   unsigned npools)
{
    stats->clients = clients;
    stats->upstream_open = upstream_open;
    if (npools > STATS_MAX_POOLS)
        npools = STATS_MAX_POOLS;
    for (unsigned i = 0; i < npools; i++)
        stats->pools[i] = pools[i];
    stats->npools = npools;
}

const uint64_t stats_bucket_ms[STATS_BUCKETS] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000};

/* Every reason the access log can name, in a fixed order. */
static const char *const reasons[] = {
    "ok", "connect_timeout", "write_timeout", "read_timeout", "total_timeout", "try_timeout",
    "header_timeout", "body_timeout", "send_timeout", "upstream_refused", "upstream_reset",
    "upstream_closed", "upstream_error", "bad_upstream_response", "client_abort", "bad_request",
    "body_too_large", "no_route", "no_healthy_upstream", "pool_full", "dns_timeout",
    "tunnel_idle_timeout", "tunnel_max_timeout", "dns_failed", "forbidden",
    "proxy_auth_required", "upstream_tls_error", "upstream_head_too_large", "proxy_overloaded",
    "other",
};
#define NREASONS (sizeof reasons / sizeof reasons[0])

int stats_reason_index(const char *reason)
{
    for (size_t i = 0; i + 1 < NREASONS; i++)
        if (strcmp(reasons[i], reason) == 0)
            return (int)i;
    return (int)NREASONS - 1;
}

void stats_exchange(int ri, int status, const char *reason, int64_t first_byte_ms)
{
    stats->reasons[stats_reason_index(reason)]++;
    if (ri < 0 || ri >= STATS_MAX_ROUTES)
        return;
    struct stats_route *r = &stats->routes[ri];
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    r->by_class[cls]++;
    if (first_byte_ms >= 0) {
        for (int b = 0; b < STATS_BUCKETS; b++)
            if ((uint64_t)first_byte_ms <= stats_bucket_ms[b])
                r->first_byte[b]++;
        r->first_byte[STATS_BUCKETS]++;
        r->first_byte_sum_ms += (uint64_t)first_byte_ms;
        r->first_byte_count++;
    }
}

const uint64_t stats_hbucket_us[STATS_HBUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000,
};

unsigned stats_hist_bucket(uint64_t us)
{
    unsigned lo = 0, hi = STATS_HBUCKETS;   /* the answer is in [lo, hi] */
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (stats_hbucket_us[mid] >= us)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void stats_hist_add(struct stats_hist *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    h->n[stats_hist_bucket(us)]++;
    h->sum_us += us;
    h->count++;
}

void stats_request_time(int ri, int si, uint64_t ns)
{
    if (ri >= 0 && ri < STATS_MAX_ROUTES)
        stats_hist_add(&stats->routes[ri].duration, ns);
    if (si >= 0 && si < STATS_MAX_SERVERS)
        stats_hist_add(&stats->servers[si].duration, ns);
}

void stats_head_time(int ri, int si, uint64_t ns)
{
    if (ri >= 0 && ri < STATS_MAX_ROUTES)
        stats_hist_add(&stats->routes[ri].head, ns);
    if (si >= 0 && si < STATS_MAX_SERVERS)
        stats_hist_add(&stats->servers[si].head, ns);
}

void stats_left_at_dispatch(int ri, uint64_t ns)
{
    if (ri >= 0 && ri < STATS_MAX_ROUTES)
        stats_hist_add(&stats->routes[ri].left, ns);
}

void stats_queue_wait(int pi, uint64_t ns)
{
    if (pi >= 0 && pi < STATS_MAX_POOLS)
        stats_hist_add(&stats->queue[pi], ns);
}

/* Admission's reasons (a table: a new one is a new line here and in
 * STATS_SHED_REASONS). */
const char *const stats_shed_reasons[STATS_SHED_REASONS] = {
    "queue_timeout", "deadline_unmeetable", "pool_full", "retry_budget", "retry_skipped",
    "proxy_overloaded",
};

bool stats_shed(const char *reason)
{
    for (unsigned i = 0; i < STATS_SHED_REASONS; i++)
        if (strcmp(stats_shed_reasons[i], reason) == 0) {
            stats->shed[i]++;
            return true;
        }
    return false;
}

static void hist_sum(struct stats_hist *t, const struct stats_hist *s)
{
    for (int b = 0; b <= STATS_HBUCKETS; b++)
        t->n[b] += s->n[b];
    t->sum_us += s->sum_us;
    t->count += s->count;
}

struct out { char *p; size_t n, cap; };

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->n < o->cap ? o->p + o->n : NULL, o->n < o->cap ? o->cap - o->n : 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->n += (size_t)k;
}

/* The sum of the slots of this process's generation (just its own struct
 * when single-process). Large: static, the loop is single-threaded. */
static const struct stats *total(void)
{
    static struct stats t;
    if (stats == &own)
        return &own;
    memset(&t, 0, sizeof t);
    for (unsigned i = 0; i < nshared; i++) {
        const struct stats *s = &shared[i];
        if (s->gen != stats->gen)
            continue;
        for (int r = 0; r < STATS_MAX_ROUTES; r++) {
            for (int c = 0; c < 6; c++)
                t.routes[r].by_class[c] += s->routes[r].by_class[c];
            for (int b = 0; b <= STATS_BUCKETS; b++)
                t.routes[r].first_byte[b] += s->routes[r].first_byte[b];
            t.routes[r].first_byte_sum_ms += s->routes[r].first_byte_sum_ms;
            t.routes[r].first_byte_count += s->routes[r].first_byte_count;
            hist_sum(&t.routes[r].duration, &s->routes[r].duration);
            hist_sum(&t.routes[r].head, &s->routes[r].head);
            hist_sum(&t.routes[r].left, &s->routes[r].left);
        }
        for (int k = 0; k < STATS_MAX_SERVERS; k++) {
            hist_sum(&t.servers[k].duration, &s->servers[k].duration);
            hist_sum(&t.servers[k].head, &s->servers[k].head);
        }
        for (int k = 0; k < STATS_MAX_POOLS; k++)
            hist_sum(&t.queue[k], &s->queue[k]);
        hist_sum(&t.timer_late, &s->timer_late);
        for (int k = 0; k < STATS_SHED_REASONS; k++)
            t.shed[k] += s->shed[k];
        for (int k = 0; k < STATS_HEDGE_RESULTS; k++)
            t.hedge_results[k] += s->hedge_results[k];
        for (size_t k = 0; k < NREASONS; k++)
            t.reasons[k] += s->reasons[k];
        t.retries += s->retries;
        t.hedges += s->hedges;
        t.ejections += s->ejections;
        t.dropped_underscore += s->dropped_underscore;
        t.h2_conns += s->h2_conns;
        for (int k = 0; k < 3; k++)
            t.reqbuf[k] += s->reqbuf[k];
        t.evicted[0] += s->evicted[0];
        t.evicted[1] += s->evicted[1];
        t.h2_streams += s->h2_streams;
        for (int k = 0; k < STATS_H2_RESET_CAUSES; k++)
            t.h2_resets[k] += s->h2_resets[k];
        for (int k = 0; k < 3; k++)
            t.h2_goaways[k] += s->h2_goaways[k];
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < 4; k++)
                t.tls[d][k] += s->tls[d][k];
        for (int k = 0; k < STATS_GRPC_STATUSES; k++)
            t.grpc_calls[k] += s->grpc_calls[k];
        t.h2_up_conns += s->h2_up_conns;
        t.h2_up_streams += s->h2_up_streams;
        t.h2_up_cancels += s->h2_up_cancels;
        t.h2_up_refused += s->h2_up_refused;
        t.clients += s->clients;
        t.upstream_open += s->upstream_open;
        for (unsigned p = 0; p < s->npools && p < STATS_MAX_POOLS; p++) {
            t.pools[p].idle += s->pools[p].idle;
            t.pools[p].requests += s->pools[p].requests;
            t.pools[p].retries += s->pools[p].retries;
            t.pools[p].waiting += s->pools[p].waiting;
            /* each worker resolves its own names: the largest view, not a sum */
            if (s->pools[p].servers > t.pools[p].servers)
                t.pools[p].servers = s->pools[p].servers;
            if (s->pools[p].leaving > t.pools[p].leaving)
                t.pools[p].leaving = s->pools[p].leaving;
            for (int k = 0; k < STATS_DNS_RESULTS; k++)
                t.dns[p][k] += s->dns[p][k];
        }
    }
    return &t;
}

static void render_gauges(struct out *op, const struct stats *st, const struct stats_gauges *g);
static void render_histograms(struct out *op, const struct stats *st,
                              const struct stats_gauges *g);

size_t stats_render(char *buf, size_t cap, const struct stats_gauges *g)
{
    const struct stats *st = total();
    struct out o = {buf, 0, cap};
    static const char *const cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

    put(&o, "# HELP hourglass_requests_total Requests ended, by route and status class.\n"
            "# TYPE hourglass_requests_total counter\n");
    for (unsigned r = 0; r < g->nroutes && r < STATS_MAX_ROUTES; r++)
        for (int c = 0; c < 6; c++)
            put(&o, "hourglass_requests_total{route=\"%s\",class=\"%s\"} %llu\n", g->route_names[r],
                cls[c], (unsigned long long)st->routes[r].by_class[c]);
    put(&o, "# HELP hourglass_exchanges_ended_total Exchanges ended, by the reason logged.\n"
            "# TYPE hourglass_exchanges_ended_total counter\n");
    for (size_t i = 0; i < NREASONS; i++)
        put(&o, "hourglass_exchanges_ended_total{reason=\"%s\"} %llu\n", reasons[i],
            (unsigned long long)st->reasons[i]);
    put(&o, "# HELP hourglass_timeouts_total Timeouts that ended an exchange, by kind.\n"
            "# TYPE hourglass_timeouts_total counter\n");
    for (size_t i = 0; i < NREASONS; i++) {
        size_t l = strlen(reasons[i]);
        if (l > 8 && strcmp(reasons[i] + l - 8, "_timeout") == 0)
            put(&o, "hourglass_timeouts_total{kind=\"%.*s\"} %llu\n", (int)(l - 8), reasons[i],
                (unsigned long long)st->reasons[i]);
    }
    put(&o, "# HELP hourglass_retries_total Retry attempts started.\n"
            "# TYPE hourglass_retries_total counter\nhourglass_retries_total %llu\n",
        (unsigned long long)st->retries);
    put(&o, "# HELP hourglass_hedges_started_total Hedged attempts started.\n"
            "# TYPE hourglass_hedges_started_total counter\nhourglass_hedges_started_total %llu\n",
        (unsigned long long)st->hedges);
    static const char *const hres[STATS_HEDGE_RESULTS] = {"won", "lost", "failed", "skipped"};
    put(&o, "# HELP hourglass_hedges_total Hedges by result: won (its response head was "
            "used), lost (the first attempt's head came first), failed (it failed or was "
            "cancelled), skipped (due but not sent).\n# TYPE hourglass_hedges_total counter\n");
    for (int k = 0; k < STATS_HEDGE_RESULTS; k++)
        put(&o, "hourglass_hedges_total{result=\"%s\"} %llu\n", hres[k],
            (unsigned long long)st->hedge_results[k]);
    put(&o, "# HELP hourglass_requests_shed_total Requests answered by hourglass without an "
            "upstream response because of admission, by reason.\n"
            "# TYPE hourglass_requests_shed_total counter\n");
    for (int k = 0; k < STATS_SHED_REASONS; k++)
        put(&o, "hourglass_requests_shed_total{reason=\"%s\"} %llu\n", stats_shed_reasons[k],
            (unsigned long long)st->shed[k]);
    put(&o, "# HELP hourglass_request_fields_dropped_total Request header fields not passed "
            "upstream, by cause.\n# TYPE hourglass_request_fields_dropped_total counter\n"
            "hourglass_request_fields_dropped_total{cause=\"underscore\"} %llu\n",
        (unsigned long long)st->dropped_underscore);
    put(&o, "# HELP hourglass_connections_evicted_total Client connections closed to make "
            "room at max_connections, by state (idle: between requests; head: no complete "
            "request head).\n# TYPE hourglass_connections_evicted_total counter\n"
            "hourglass_connections_evicted_total{state=\"idle\"} %llu\n"
            "hourglass_connections_evicted_total{state=\"head\"} %llu\n",
        (unsigned long long)st->evicted[0], (unsigned long long)st->evicted[1]);
    put(&o, "# HELP hourglass_request_buffering_total Requests of routes with "
            "request_buffering that have a body, by what was done.\n"
            "# TYPE hourglass_request_buffering_total counter\n"
            "hourglass_request_buffering_total{result=\"buffered\"} %llu\n"
            "hourglass_request_buffering_total{result=\"larger\"} %llu\n"
            "hourglass_request_buffering_total{result=\"over_budget\"} %llu\n",
        (unsigned long long)st->reqbuf[0], (unsigned long long)st->reqbuf[1],
        (unsigned long long)st->reqbuf[2]);
    put(&o, "# HELP hourglass_http2_connections_total HTTP/2 client connections.\n"
            "# TYPE hourglass_http2_connections_total counter\n"
            "hourglass_http2_connections_total %llu\n"
            "# HELP hourglass_http2_streams_total HTTP/2 streams opened by clients.\n"
            "# TYPE hourglass_http2_streams_total counter\nhourglass_http2_streams_total %llu\n",
        (unsigned long long)st->h2_conns, (unsigned long long)st->h2_streams);
    static const char *const rcause[STATS_H2_RESET_CAUSES] = {"client", "cancel", "refused",
                                                              "protocol_error"};
    put(&o, "# HELP hourglass_http2_resets_total HTTP/2 streams reset, by cause.\n"
            "# TYPE hourglass_http2_resets_total counter\n");
    for (int k = 0; k < STATS_H2_RESET_CAUSES; k++)
        put(&o, "hourglass_http2_resets_total{cause=\"%s\"} %llu\n", rcause[k],
            (unsigned long long)st->h2_resets[k]);
    static const char *const gcode[3] = {"no_error", "protocol_error", "enhance_your_calm"};
    put(&o, "# HELP hourglass_http2_goaways_total GOAWAY frames sent, by error code.\n"
            "# TYPE hourglass_http2_goaways_total counter\n");
    for (int k = 0; k < 3; k++)
        put(&o, "hourglass_http2_goaways_total{code=\"%s\"} %llu\n", gcode[k],
            (unsigned long long)st->h2_goaways[k]);
    put(&o, "# HELP hourglass_http2_upstream_connections_total HTTP/2 connections opened to "
            "upstreams.\n# TYPE hourglass_http2_upstream_connections_total counter\n"
            "hourglass_http2_upstream_connections_total %llu\n"
            "# HELP hourglass_http2_upstream_streams_total Streams opened on HTTP/2 upstream "
            "connections (attempts).\n# TYPE hourglass_http2_upstream_streams_total counter\n"
            "hourglass_http2_upstream_streams_total %llu\n"
            "# HELP hourglass_http2_upstream_resets_total Upstream streams ended early: reset by "
            "hourglass (cancel), or refused unprocessed by the server (refused).\n"
            "# TYPE hourglass_http2_upstream_resets_total counter\n"
            "hourglass_http2_upstream_resets_total{cause=\"cancel\"} %llu\n"
            "hourglass_http2_upstream_resets_total{cause=\"refused\"} %llu\n",
        (unsigned long long)st->h2_up_conns, (unsigned long long)st->h2_up_streams,
        (unsigned long long)st->h2_up_cancels, (unsigned long long)st->h2_up_refused);
    put(&o, "# HELP hourglass_grpc_calls_total gRPC calls ended, by grpc-status (the "
            "upstream's, or hourglass's own when it ended the call).\n"
            "# TYPE hourglass_grpc_calls_total counter\n");
    for (int k = 0; k < STATS_GRPC_STATUSES - 1; k++)
        put(&o, "hourglass_grpc_calls_total{status=\"%d\"} %llu\n", k,
            (unsigned long long)st->grpc_calls[k]);
    if (st->grpc_calls[STATS_GRPC_STATUSES - 1])
        put(&o, "hourglass_grpc_calls_total{status=\"other\"} %llu\n",
            (unsigned long long)st->grpc_calls[STATS_GRPC_STATUSES - 1]);
    put(&o, "# HELP hourglass_ejections_total Servers ejected by passive health.\n"
            "# TYPE hourglass_ejections_total counter\nhourglass_ejections_total %llu\n",
        (unsigned long long)st->ejections);
    static const char *const sides[2] = {"client", "upstream"};
    static const char *const results[4] = {"ok", "resumed", "failed", "timeout"};
    put(&o, "# HELP hourglass_tls_handshakes_total TLS handshakes, by side and result.\n"
            "# TYPE hourglass_tls_handshakes_total counter\n");
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 4; k++)
            put(&o, "hourglass_tls_handshakes_total{side=\"%s\",result=\"%s\"} %llu\n", sides[d],
                results[k], (unsigned long long)st->tls[d][k]);
    put(&o, "# HELP hourglass_upstream_first_byte_seconds From the request head to the first "
            "response byte.\n# TYPE hourglass_upstream_first_byte_seconds histogram\n");
    for (unsigned r = 0; r < g->nroutes && r < STATS_MAX_ROUTES; r++) {
        const struct stats_route *sr = &st->routes[r];
        for (int b = 0; b < STATS_BUCKETS; b++)
            put(&o, "hourglass_upstream_first_byte_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                g->route_names[r], (double)stats_bucket_ms[b] / 1000,
                (unsigned long long)sr->first_byte[b]);
        put(&o, "hourglass_upstream_first_byte_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
            g->route_names[r], (unsigned long long)sr->first_byte[STATS_BUCKETS]);
        put(&o, "hourglass_upstream_first_byte_seconds_sum{route=\"%s\"} %.3f\n",
            g->route_names[r], (double)sr->first_byte_sum_ms / 1000);
        put(&o, "hourglass_upstream_first_byte_seconds_count{route=\"%s\"} %llu\n",
            g->route_names[r], (unsigned long long)sr->first_byte_count);
    }
    render_histograms(&o, st, g);
    render_gauges(&o, st, g);
    return o.n;
}

/* One histogram's series: labels is `name="value",...` (no braces). */
static void put_hist(struct out *o, const char *name, const char *labels,
                     const struct stats_hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int b = 0; b < STATS_HBUCKETS; b++) {
        cum += h->n[b];
        put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
            (double)stats_hbucket_us[b] / 1e6, (unsigned long long)cum);
    }
    cum += h->n[STATS_HBUCKETS];
    put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)cum);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    put(o, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, labels, close,
        (double)h->sum_us / 1e6, name, open, labels, close, (unsigned long long)h->count);
}

/* The duration histograms: by route, by server, by pool. */
static void render_histograms(struct out *op, const struct stats *st, const struct stats_gauges *g)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } by_route[] = {
        {"hourglass_request_duration_seconds",
         "From the request head's arrival to the end of the exchange, by route.",
         offsetof(struct stats_route, duration)},
        {"hourglass_upstream_header_seconds",
         "From the request sent upstream to the response head used, by route.",
         offsetof(struct stats_route, head)},
        {"hourglass_deadline_left_at_dispatch_seconds",
         "Total deadline left when a request was first dispatched to its pool, by route.",
         offsetof(struct stats_route, left)},
    }, by_server[] = {
        {"hourglass_server_request_duration_seconds",
         "Request durations by the server of their last attempt.",
         offsetof(struct stats_server, duration)},
        {"hourglass_server_header_seconds",
         "From the request sent to the response head used, by server.",
         offsetof(struct stats_server, head)},
    };
    struct out o = *op;
    char labels[512];
    for (size_t k = 0; k < sizeof by_route / sizeof by_route[0]; k++) {
        put(&o, "# HELP %s %s\n# TYPE %s histogram\n", by_route[k].name, by_route[k].help,
            by_route[k].name);
        for (unsigned r = 0; r < g->nroutes && r < STATS_MAX_ROUTES; r++) {
            snprintf(labels, sizeof labels, "route=\"%s\"", g->route_names[r]);
            put_hist(&o, by_route[k].name, labels,
                     (const struct stats_hist *)(const void *)((const char *)&st->routes[r] +
                                                               by_route[k].off));
        }
    }
    for (size_t k = 0; k < sizeof by_server / sizeof by_server[0]; k++) {
        put(&o, "# HELP %s %s\n# TYPE %s histogram\n", by_server[k].name, by_server[k].help,
            by_server[k].name);
        for (unsigned i = 0; i < g->nservers && i < STATS_MAX_SERVERS; i++) {
            snprintf(labels, sizeof labels, "pool=\"%s\",server=\"%s\"", g->server_pools[i],
                     g->server_names[i]);
            put_hist(&o, by_server[k].name, labels,
                     (const struct stats_hist *)(const void *)((const char *)&st->servers[i] +
                                                               by_server[k].off));
        }
    }
    put(&o, "# HELP hourglass_queue_wait_seconds Waits of requests queued for a connection "
            "slot of a pool at its max_connections, by pool.\n"
            "# TYPE hourglass_queue_wait_seconds histogram\n");
    for (unsigned i = 0; i < g->npools && i < STATS_MAX_POOLS; i++) {
        snprintf(labels, sizeof labels, "pool=\"%s\"", g->pool_names[i]);
        put_hist(&o, "hourglass_queue_wait_seconds", labels, &st->queue[i]);
    }
    put(&o, "# HELP hourglass_timer_lateness_seconds How long after its due time the event loop "
            "served each timer (a timeout, a retry's backoff, a hedge): the loop's lag.\n"
            "# TYPE hourglass_timer_lateness_seconds histogram\n");
    put_hist(&o, "hourglass_timer_lateness_seconds", "", &st->timer_late);
    *op = o;
}

/* The gauges: connections, and the state of each pool; and the counts of
 * the pools' resolutions. */
static void render_gauges(struct out *op, const struct stats *st, const struct stats_gauges *g)
{
    struct out o = *op;
    put(&o, "# HELP hourglass_client_connections Client connections open now.\n"
            "# TYPE hourglass_client_connections gauge\nhourglass_client_connections %u\n",
        (unsigned)st->clients);
    put(&o, "# HELP hourglass_upstream_connections Upstream connections open now (busy or idle).\n"
            "# TYPE hourglass_upstream_connections gauge\nhourglass_upstream_connections %u\n",
        (unsigned)st->upstream_open);
    static const struct {
        const char *name, *help;
        size_t off;
    } pool_gauges[] = {
        {"hourglass_pool_idle_connections", "Idle pooled connections, by pool.",
         offsetof(struct stats_pool, idle)},
        {"hourglass_pool_requests_in_flight", "Requests in flight, by pool.",
         offsetof(struct stats_pool, requests)},
        {"hourglass_pool_retries_in_flight",
         "Requests in flight that retried or hedged (the retry budget in use), by pool.",
         offsetof(struct stats_pool, retries)},
        {"hourglass_pool_waiting_requests",
         "Requests waiting for a connection slot (max_connections), by pool.",
         offsetof(struct stats_pool, waiting)},
    };
    for (size_t k = 0; k < sizeof pool_gauges / sizeof pool_gauges[0]; k++) {
        put(&o, "# HELP %s %s\n# TYPE %s gauge\n", pool_gauges[k].name, pool_gauges[k].help,
            pool_gauges[k].name);
        for (unsigned i = 0; i < g->npools && i < STATS_MAX_POOLS; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&st->pools[i] + pool_gauges[k].off, sizeof v);
            put(&o, "%s{pool=\"%s\"} %llu\n", pool_gauges[k].name, g->pool_names[i],
                (unsigned long long)v);
        }
    }
    put(&o, "# HELP hourglass_pool_servers Servers of a pool, by state: in service, or leaving "
            "(gone from their name's answer, finishing what they carry); the largest count "
            "among the workers.\n# TYPE hourglass_pool_servers gauge\n");
    for (unsigned i = 0; i < g->npools && i < STATS_MAX_POOLS; i++)
        put(&o, "hourglass_pool_servers{pool=\"%s\",state=\"in_service\"} %llu\n"
                "hourglass_pool_servers{pool=\"%s\",state=\"leaving\"} %llu\n",
            g->pool_names[i], (unsigned long long)st->pools[i].servers, g->pool_names[i],
            (unsigned long long)st->pools[i].leaving);
    static const char *const dres[STATS_DNS_RESULTS] = {"ok", "nxdomain", "timeout", "error"};
    put(&o, "# HELP hourglass_dns_resolutions_total Resolutions of the pools' host and SRV "
            "names, by pool and result.\n# TYPE hourglass_dns_resolutions_total counter\n");
    for (unsigned i = 0; i < g->npools && i < STATS_MAX_POOLS; i++)
        for (int k = 0; k < STATS_DNS_RESULTS; k++)
            put(&o, "hourglass_dns_resolutions_total{pool=\"%s\",result=\"%s\"} %llu\n",
                g->pool_names[i], dres[k], (unsigned long long)st->dns[i][k]);
    *op = o;
}
