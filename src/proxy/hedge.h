/* hedge.h -- a second attempt raced against the first for the response head.
 *
 * After the route's hedge delay without a response head, an idempotent
 * request is also sent to a second server; the first complete response head
 * wins (hedge_promote) and the other attempt is cancelled (hedge_drop). */
#ifndef HG_HEDGE_H
#define HG_HEDGE_H

#include "px.h"

void hedge_drop(struct client *c);

/* Sends the request a second time, to another server of the pool, when the
 * first attempt has no response head after the route's hedge delay (the
 * asyncio.wait(FIRST_COMPLETED) of proxies). Only for idempotent requests
 * without a body; a hedge counts against the pool's retry budget. */
void hedge_start(struct client *c);

/* The hedge takes the first attempt's place, because its response head came
 * first (head) or because the first attempt failed; the first attempt's
 * connection is closed, never pooled. */
void hedge_promote(struct client *c, bool head);

/* Advances the hedged attempt: connect, send the head, read until a final
 * response head (which wins) or a failure (which drops the hedge alone). */
int hedge_step(struct client *c);

#endif
