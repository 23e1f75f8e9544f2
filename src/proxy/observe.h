/* observe.h -- where the time of a request went: its request ID and trace
 * ID, what set its total deadline, its waits in a pool's queue, the time
 * left when it was dispatched, each attempt with its outcome, the
 * Server-Timing field, and the metrics these feed.
 *
 * The request path calls these at the points where things happen (a head
 * parsed, an attempt begun or ended, a response head used, the end); they
 * only record into the exchange's x.obs (px.h) and the shared counters
 * (stats.h): they decide nothing and never allocate. The access log line
 * (access.c) prints what they recorded. */
#ifndef HG_OBSERVE_H
#define HG_OBSERVE_H

#include "fwd.h"
#include "log.h"
#include "px.h"

/* Per worker, after the fork: drops random bytes drawn before it, so that
 * no two processes hand out the same IDs. */
void obs_init(void);

/* A request head was parsed (m, its fields in c->in): its request ID is the
 * client's X-Request-Id when the listener trusts it (trust_request_id) and
 * it is valid (trace_rid_valid), else a new one; its trace ID is that of a
 * valid traceparent. */
void obs_request_begin(struct client *c, const struct http_msg *m);

/* The request's ID; one is made now if it has none yet (an error answered
 * before its head was complete). c->s must be set. */
const char *obs_rid(struct client *c);

/* Its first dispatch to a pool: the time left of its total deadline. */
void obs_dispatch(struct client *c);

/* It enters and leaves its pool's queue for a connection slot. */
void obs_queue_enter(struct client *c);
void obs_queue_leave(struct client *c);

/* Attempt a (the exchange's, or its hedge) begins: its server as logs print
 * it, and its clock (a->started). */
void obs_try_begin(struct client *c, struct attempt *a);

/* Attempt a ended with this outcome word (and the status of a retried
 * response, or 0). The first end of an attempt is kept: a failure noted
 * where it is seen wins over the "cancelled" of the code that then drops
 * the attempt. Nothing when a has no open entry. */
void obs_try_end(struct client *c, struct attempt *a, const char *outcome, int status);

/* The exchange's attempt failed (c->s->fault): ends its entry with the
 * word the access log would give that fault. */
void obs_fault(struct client *c);

/* The attempt's final response head is the one used: its entry ends "ok",
 * a hedge still racing ends "hedge_lost", and the time from its request
 * sent to this head is counted (route, server). */
void obs_head(struct client *c);

/* An admission reason (stats_shed_reasons) that applies if the request ends
 * without an upstream response, noted where it is decided (a retry refused
 * by the budget: "retry_budget"). */
void obs_shed_note(struct client *c, const char *reason);

/* The exchange ended (access_log, once): entries still open end with the
 * reason, and the metrics take the request (durations, queue wait, shed). */
void obs_end(struct client *c, int status, const char *reason);

/* The access log's fields of the exchange into e (its strings point into
 * the session). */
void obs_log_fields(struct client *c, struct log_entry *e);

/* The response head fields hourglass adds: X-Request-Id always, and
 * Server-Timing on a route with server_timing (its value written into
 * st[0..cap)). */
void obs_response_fields(struct client *c, struct fwd_resp *fr, char *st, size_t cap);

/* The Server-Timing value of the exchange now: queue, connect, upstream
 * (the request sent to the response head) and total (the request head in
 * to now), in ms with one decimal. Returns its length (< cap). */
size_t obs_server_timing(const struct client *c, char *out, size_t cap);

/* Label text of the first `max` servers of every pool, in the order of
 * their metrics (stats.h STATS_MAX_SERVERS): the pool's name, and the
 * server as written for an IP literal or "NAME:PORT#SLOT" for a slot of a
 * name (whose address changes, and differs between workers). Returns how
 * many. The strings live until the next call. */
unsigned obs_server_labels(const char **pools, const char **servers, unsigned max);

#endif
