/* attempt.h -- one upstream try: connecting, sending the request, reading and
 * framing the response.
 *
 * An attempt (struct attempt, px.h) is one connection to one server of the
 * route's pool. Its functions move bytes and return an outcome (enum
 * at_outcome): they never end the exchange, close the client, retry or
 * drop a hedge. On AT_FAILED the session's fault says what went wrong, and
 * exchange_on_fault() decides: retry now, retry later, promote the hedge,
 * or answer 5xx / cut. */
#ifndef HG_ATTEMPT_H
#define HG_ATTEMPT_H

#include "px.h"

void attempt_on_upstream(struct upconn *up, uint32_t events);

/* Starts the attempt: picks a server (another than x.avoid after a
 * failure), takes an idle pooled connection (when allow_pooled) or opens a
 * new one. AT_MOVED (connected or connecting), AT_IDLE (the pool is at its
 * connection limit: nothing was done) or AT_FAILED (FAULT_NO_SERVER,
 * FAULT_CONNECT). */
int attempt_connect(struct client *c, bool allow_pooled);

/* Advances a connection being opened (TCP, then TLS): AT_IDLE while it
 * is not ready, AT_MOVED once it is, AT_FAILED (FAULT_CONNECT; -EPROTO: the
 * TLS handshake failed, attempt_tls_why says why). */
int attempt_connect_step(struct client *c);

/* Writes the time left of the total deadline into the request head's
 * deadline field, just before the head is sent (each attempt anew). */
void attempt_stamp_deadline(struct client *c);

/* Sends what is held of the request to the upstream, running the write clock
 * while the upstream will not take it. AT_IDLE, AT_MOVED or AT_FAILED
 * (FAULT_IO). */
int attempt_send(struct client *c);

/* A body that will not fit a small buffer is relayed through a large one:
 * at 64 KiB a slice, a 1 MiB body costs a quarter of the system calls. */
bool attempt_bulk(enum http_framing f, uint64_t length);

/* Reads the response while there is room for it (the read clock pauses
 * when there is none), parses its head and frames its body. AT_IDLE,
 * AT_MOVED, AT_HEAD (a final head was accepted in this call), AT_UPGRADE
 * (a 101 to a WebSocket upgrade) or AT_FAILED (FAULT_IO, FAULT_RESPONSE,
 * FAULT_HEAD_TOO_LARGE, FAULT_STATUS: a status the route retries, asked of
 * exchange_retry_allowed before the head is consumed). */
int attempt_recv(struct client *c);

/* Why the last upstream TLS handshake failed (for attempt_failed). */
extern char attempt_tls_why[160];

#endif
