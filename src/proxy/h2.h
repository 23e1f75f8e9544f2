/* h2.h -- HTTP/2 to clients: a connection's frames through libnghttp2, driven
 * by our loop, and each stream an exchange with the whole timeout policy.
 *
 * A connection starts as an HTTP/1.1 client (client.c) and becomes HTTP/2
 * when its TLS handshake chose ALPN h2, or when its first bytes are the
 * HTTP/2 preface on a plain listener (h2c with prior knowledge). From then
 * on its state is CS_H2: client_pump runs h2_conn_step, which reads, feeds
 * nghttp2 (which does no I/O: nghttp2_session_mem_recv / mem_send), steps
 * the streams that have news and writes the frames.
 *
 * Each stream is a struct client of its own with CF_STREAM: no socket, its
 * own session, timer and deadlines. Its request head is rebuilt as HTTP/1.1
 * text in its `in` window and parsed by our parser, so request_start, the
 * routes, the limits and the upstream head are the same code as for
 * HTTP/1.1; its request body follows in `in` (chunked when it has no
 * content-length). The client <-> exchange calls of client.h branch here
 * for a stream (DESIGN.md has the table): the response head becomes a
 * HEADERS frame, body bytes leave through the stream's data source as the
 * flow-control windows allow, an error is a response on that stream, a cut
 * is RST_STREAM, and the end of an exchange ends the stream, never the
 * connection. */
#ifndef HG_H2_H
#define HG_H2_H

#include <stdbool.h>
#include <stddef.h>

#include "px.h"

/* Whether p[0..n) is the client preface of HTTP/2: 1 the whole of it, 0 a
 * beginning of it (wait for more), -1 not it. */
int h2_preface(const char *p, size_t n);

/* Turns client c (IDLE or HEAD, TLS done; what it read so far in c->in) into
 * an HTTP/2 connection and runs its first step. Returns like a step: -1
 * when the connection was closed. */
int h2_start(struct client *c);

/* CS_H2: reads and feeds frames, steps the streams, writes frames. */
int h2_conn_step(struct client *c);

/* Closes an HTTP/2 connection's session and every stream on it (their
 * exchanges end with client_abort). Called by client_close. */
void h2_conn_close(struct client *c);

/* Whether an HTTP/2 connection is idle: no stream open, no header block
 * begun (evict.h). */
bool h2_quiet(const struct client *c);

/* At max_connections (evict.h): an idle HTTP/2 connection ends now: GOAWAY
 * (NO_ERROR), as much of it as the socket takes at once, then the close. */
void h2_evict(struct client *c);

/* Drain (SIGTERM): GOAWAY; open streams finish, then the connection closes. */
void h2_drain(struct client *c);

/* ---- a stream's side of the client <-> exchange interface (client.h) ---- */

int h2_recv_body(struct client *c);
int h2_send(struct client *c);
bool h2_writable(const struct client *c);
void h2_error(struct client *c, int status, const char *body, int body_len);

/* A gRPC call ended by hourglass before any response: Trailers-Only with
 * grpc-status gs and grpc-message message. */
void h2_grpc_error(struct client *c, int gs, const char *message);

/* Trailer lines ("name: value\r\n", lower-case names) to send after the
 * response body, instead of ending the stream with its last DATA frame. */
void h2_trailers(struct client *c, const char *text, uint32_t len);
int h2_interim_head(struct client *c, const struct http_msg *m, uint32_t len);
int h2_response_head(struct client *c, const struct http_msg *m,
                     const struct http_info *info, uint32_t len);
void h2_continue(struct client *c);
/* CS_CLOSING: the error reply is out when the stream ends. */
int h2_closing_step(struct client *c);
/* The exchange ended well: the stream ends once its last bytes are out. */
int h2_next(struct client *c);
/* The exchange was cancelled: RST_STREAM unless the stream is over. */
void h2_close(struct client *c);

/* Frees the recycled streams and nghttp2's callbacks (at exit). */
void h2_free_spares(void);

#endif
