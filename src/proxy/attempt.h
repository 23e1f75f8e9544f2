/* attempt.h -- one upstream try: connecting, sending the request, reading and
 * framing the response.
 *
 * An attempt is one connection to one server of the route's pool. Its
 * functions move bytes and report; attempt_failed() classifies a failure
 * and hands it to the exchange's retry policy. */
#ifndef HG_ATTEMPT_H
#define HG_ATTEMPT_H

#include "px.h"

void attempt_drop(struct client *c);

void attempt_on_upstream(struct upconn *up, uint32_t events);

/* Forgets the failed attempt: its upstream connection is closed (never
 * pooled), its response bytes dropped, and the request (head, and a kept
 * body) will be sent again from the start. */
void attempt_reset(struct client *c);

/* The upstream failed: err is a negative errno, or 0 for end of stream;
 * -EPROTO while connecting: the TLS handshake failed (tls_why says why). */
int attempt_failed(struct client *c, int err, bool connecting);

int attempt_connect(struct client *c, bool allow_pooled);

/* Writes the time left of the total deadline into the request head's
 * deadline field, just before the head is sent (each attempt anew). */
void attempt_stamp_deadline(struct client *c);

/* Sends what is held of the request to the upstream, running the write clock
 * while the upstream will not take it. */
int attempt_send(struct client *c);

/* A body that will not fit a small buffer is relayed through a large one:
 * at 64 KiB a slice, a 1 MiB body costs a quarter of the system calls. */
bool attempt_bulk(enum http_framing f, uint64_t length);

/* Reads the response while there is room for it. */
int attempt_recv(struct client *c);

/* Why the last upstream TLS handshake failed (for attempt_failed). */
extern char attempt_tls_why[160];

#endif
