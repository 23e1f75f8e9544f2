/* h2up.h -- HTTP/2 to upstream servers (pools with protocol: h2).
 *
 * A pool server's HTTP/2 connections are shared: each attempt of an
 * exchange is a stream on one of them (struct upconn with `stream` set,
 * pool.h). The request path cannot tell a stream from an HTTP/1.1
 * connection: it writes the HTTP/1.1 request it would send (the head in
 * uhead, then the body as the client framed it) and reads an HTTP/1.1
 * response (a head, then the body with Content-Length, or chunked when the
 * server gave no length), through pool_writev and pool_read. This module
 * translates both ways with libnghttp2, which does no I/O: the connection
 * reads and writes with conn_read and conn_writev like every other.
 *
 * What the translation keeps:
 *   - Flow control by hand: response DATA is acknowledged (WINDOW_UPDATE)
 *     only as pool_read takes it, so a slow client holds the server back
 *     through the stream's window, as it holds an HTTP/1.1 server back
 *     through TCP. The request body waits in the stream's buffer while the
 *     server's window is closed, and pool_writev says EAGAIN: the write clock
 *     runs.
 *   - Trailers: kept aside (h2u_trailers) for an HTTP/2 client; an HTTP/1.1
 *     client gets none, as from an HTTP/1.1 server.
 *   - Failures: a stream reset by the server reads as ECONNRESET; a stream
 *     the server never processed (REFUSED_STREAM, or above a GOAWAY's last
 *     stream id) as ECONNRESET with h2u_unprocessed true, so it may be sent
 *     again whatever its method; a connection lost fails each of its streams
 *     with its error.
 *   - Cancelling (pool_close on a stream) resets that stream with
 *     RST_STREAM CANCEL; the connection and its other streams go on.
 *   - A connection is open, for its streams, once the server's SETTINGS
 *     arrived: until then they are opening (pool_opening), under the
 *     attempt's connect clock, like a TCP connect and a TLS handshake.
 *   - Streams per connection: up to the server's MAX_CONCURRENT_STREAMS,
 *     then another connection (within the pool's max_connections). A
 *     connection without streams closes after the pool's keep-alive idle
 *     timeout. */
#ifndef HG_H2UP_H
#define HG_H2UP_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "pool.h"

/* Installs the hooks of pool.h (once per worker, after pool_init).
 * deadline_header: the name of the deadline header the proxy sends (or
 * NULL): like X-Request-Id, its value differs in every request, so HPACK
 * sends it as a literal never indexed instead of a new entry of the dynamic
 * table each time, which would push out the fields that repeat. */
void h2u_init(struct loop *l, const char *deadline_header);

/* The trailer fields an HTTP/2 upstream sent after the response body, as
 * "name: value\r\n" lines (names in lower case), or NULL with *len 0. */
const char *h2u_trailers(const struct upconn *st, uint32_t *len);

/* Whether the stream failed without the server having processed it
 * (REFUSED_STREAM, or above a GOAWAY's last stream id). */
bool h2u_unprocessed(const struct upconn *st);

/* HTTP/2 connections to upstreams open now, and streams on them. */
unsigned h2u_conns(void);
unsigned h2u_streams(void);

/* Frees the recycled structs (at exit). */
void h2u_free(void);

#endif
