/* admit.h -- what the time left of a request allows: dispatching it at all
 * (a route's min_budget), a retry, a hedge, and the adaptive hedge delay;
 * the live first-byte latency of each route these read (qest.h); and the
 * request's place in its pool: the retry budget's counts, the queue.
 *
 * hourglass knows each request's deadline; these say whether work can
 * still finish in time, so that none is started for a caller who will have
 * left. Verdicts only: exchange.c and hedge.c decide what follows. */
#ifndef HG_ADMIT_H
#define HG_ADMIT_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct route;

/* The time left of c's total deadline now, ms (rounded down); UINT64_MAX
 * when it has none (a gRPC stream on a `grpc.streaming` route). */
uint64_t admit_left_ms(const struct client *c);

/* At its first dispatch: whether the request has less time left than its
 * route's min_budget (then it is answered 504 deadline_unmeetable, without
 * an upstream). */
bool admit_unmeetable(const struct client *c);

/* Whether a retry (or a hedge) may start: the time left is at least the
 * route's retry.min_time_left, else its live median first-byte latency
 * (with no estimate yet: yes). *left and *need get the figures for a log. */
bool admit_in_time(const struct client *c, uint64_t *left, uint64_t *need);

/* Whether the route's hedge.max_percent allows one more hedge now (and if
 * so, it is counted). */
bool admit_hedge_allowed(const struct client *c);

/* The route's hedge delay now, ms: fixed, or its live quantile within
 * [min_delay, max_delay] (max_delay until there is an estimate); 0: none. */
uint64_t admit_hedge_delay_ms(const struct route *r);

/* An attempt's first-byte latency: from its start to its response head
 * (censored: given up before one, so the latency is at least that). */
void admit_observe(const struct route *r, uint64_t started, uint64_t now);

/* The request's place in its pool. Its counts that size the retry budget
 * (see pool.h): counted from its dispatch (admit_count, which also earns
 * its route's hedge allowance, hedge.max_percent), among the retries
 * from its first retry or hedge (admit_retry_take), until its end
 * (admit_release, idempotent: every end may call it). */
void admit_count(struct client *c);
void admit_retry_take(struct client *c);
void admit_release(struct client *c);

/* The pool's FIFO of requests waiting for a connection or a server with
 * room (X_WAIT_SLOT mirrors membership for the deadlines: TMO_QUEUE). */
void admit_enqueue(struct client *c);
void admit_dequeue(struct client *c);

#endif
