/* exchange.h -- one request from its head to its end: routing, the deadlines,
 * retries, backoff, waiting for a connection, and the one cancellation path.
 *
 * The exchange owns the request's fate: it turns what the attempt and the
 * client report (a timeout, a failed attempt, a response) into a retry, a
 * 5xx, a cut, or the end of the exchange (exchange_fail and exchange_done).
 * Its deadlines are folded by tmo_fold() from the conditions that hold. */
#ifndef HG_EXCHANGE_H
#define HG_EXCHANGE_H

#include "px.h"

/* The total deadline: the route's, or less when a trusted client said so. */
uint64_t exchange_total_ms(const struct client *c);

/* A fresh exchange: timings that have not happened read as "-". */
void exchange_reset(struct session *s);


/* The one cancellation path. Closes the upstream connection (never pooled).
 * If no byte of the final response has reached the client and `status` is
 * not 0, the client gets that status with the reason in a plain-text body;
 * otherwise the client connection is cut so that it sees an incomplete
 * message. Returns 1 when the client lives on (CLOSING), -1 when closed. */
int exchange_fail(struct client *c, int status, const char *reason, const char *detail);

/* The durations that apply to c's exchange: the default policy until a
 * route is chosen, then the route's, with the total capped by a trusted
 * client's deadline. Set when the exchange starts and when it is routed. */
void exchange_set_limits(struct client *c);

/* Folds the deadlines into the one timer. A deadline that moved later leaves
 * the timer where it is: it fires early once, finds nothing expired, and is
 * re-filed then, which is cheaper than re-sorting on every read. */
void exchange_arm(struct client *c);

void exchange_on_timer(struct timer *t);

/* A pooled connection that the server closed before any response byte, for a
 * request that can be sent again: retried once on a new connection. */
bool exchange_can_retry(const struct client *c);

int exchange_retry(struct client *c);

/* Whether the route's retry policy lets this failure be tried again: a
 * listed failure class (or response status), attempts left, a method it may
 * repeat, a body still at hand, nothing yet sent to the client, and room in
 * the pool's retry budget. The total deadline keeps running throughout. */
bool exchange_retry_allowed(struct client *c, unsigned cls, int status);

/* Schedules the next attempt after a jittered exponential backoff ("full
 * jitter": uniform in [0, min(max, base * 2^(n-1))]), on another server
 * when the pool has one. */
int exchange_retry_later(struct client *c, const char *why);

int exchange_step(struct client *c);


/* Starts an attempt (attempt_connect) and, if it fails at once, handles the
 * fault: the one way the exchange dispatches. 1, or -1 when the client
 * connection was closed. */
int exchange_dispatch(struct client *c, bool allow_pooled);

/* The one place that turns an attempt's failure (session.fault) into the
 * request's fate: promote a hedge, retry on a new connection, retry later
 * under the route's policy and budget, or end the exchange (502, 503 or a
 * cut). 1, or -1 when the client connection was closed. */
int exchange_on_fault(struct client *c);

/* Closes the exchange's upstream connections (never pooled), the hedge's
 * too, and takes it out of a pool's queue and its name resolution. */
void exchange_drop_attempts(struct client *c);

/* Forgets the failed attempt: its upstream connection is closed (never
 * pooled), its response bytes dropped, and the request (head, and a kept
 * body) will be sent again from the start. */
void exchange_reset_attempt(struct client *c);

#endif
