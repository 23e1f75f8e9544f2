/* reqbuf.h -- request buffering: a route's `request_buffering: SIZE` reads
 * a request body of up to SIZE bytes whole before any upstream is
 * contacted.
 *
 * Bodies are streamed otherwise: a slow upload holds an upstream connection
 * (and a server's worker) for as long as its client takes to send it.
 * Buffered, it holds only the client's connection and SIZE bytes of memory,
 * under the body timeout (each read restarts it) and the total deadline;
 * the request is dispatched (server chosen, connection opened or taken from
 * the pool) once the body is complete. What is buffered:
 *
 *   - an HTTP/1.1 request whose Content-Length is at most SIZE, or a
 *     chunked one while its bytes as sent (chunk framing included) fit
 *     SIZE; one that outgrows it is dispatched when the buffer is full and
 *     the rest streams as without buffering;
 *   - not a larger Content-Length, an HTTP/2 stream (its body is bounded by
 *     its flow-control window and streams), a forward request or an
 *     upgrade: those stream as today.
 *
 * Memory: the body shares one buffer with the head (buf_reserve_big), given
 * back when the exchange ends (or the connection goes idle). A worker holds
 * at most limits.request_buffering_budget bytes of such buffers at once;
 * a request that would exceed it is streamed instead (the safe fallback:
 * it is served as without buffering), counted in
 * hourglass_request_buffering_total{result="over_budget"}. A client that
 * sent `Expect: 100-continue` gets its 100 at once. */
#ifndef HG_REQBUF_H
#define HG_REQBUF_H

#include <stdbool.h>

#include "px.h"

/* Called by request_start when the request would be dispatched (its body
 * bytes read so far checked). Starts buffering (X_BUFFERING) and returns
 * true when the body is to be read whole first; false: dispatch now. */
bool reqbuf_begin(struct client *c, const struct http_info *info);

/* CS_EXCH with X_BUFFERING: reads body bytes; dispatches once the body is
 * whole or the buffer full. Returns like a step (exchange_step). */
int reqbuf_step(struct client *c);

#endif
