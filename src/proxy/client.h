/* client.h -- an HTTP/1.1 client connection: reading request heads and bodies,
 * writing responses and error replies, lingering, and the pump that moves it.
 *
 * The downstream side of the request path. A client connection is IDLE
 * (no session), HEAD (reading a request head), EXCH (an exchange in flight),
 * CLOSING (an error reply is flushed, then input lingers) or TUNNEL. Every
 * event on it, or on its upstream, runs client_pump(), which advances what
 * can advance until nothing moves and then arms the one timer. */
#ifndef HG_CLIENT_H
#define HG_CLIENT_H

#include "px.h"

/* Gives c a fresh session (a connection entering HEAD from IDLE, or a new
 * HTTP/2 stream). */
void client_session_attach(struct client *c);

/* Releases everything the session holds and recycles it (back to IDLE, or
 * closing). The upstream connection must already be pooled or closed. */
void client_session_detach(struct client *c);

/* Closes the client connection at once and releases everything it holds.
 * The struct itself is recycled at the end of the loop iteration. */
void client_close(struct client *c);

/* The response's trailer fields ("name: value\r\n" lines), from an
 * HTTP/2 upstream: an HTTP/2 client gets them after the body; an HTTP/1.1
 * client gets none (hourglass drops HTTP/1.1 trailers either way). */
void client_trailers(struct client *c, const char *text, uint32_t len);

void client_error(struct client *c, int status, const char *reason, const char *detail);

/* extra: more header lines, each ending in CRLF ("" for none). */
void client_error_ex(struct client *c, int status, const char *reason,
                             const char *detail, const char *extra);

/* Checks the request body bytes past body_ready: counts a Content-Length
 * body; scans a chunked one, dropping its trailer fields in place. */
int client_request_body(struct client *c);

/* Reads request body bytes while they are wanted and there is room. */
int client_recv_body(struct client *c);

/* Sends queued heads and validated response body bytes to the client. */
int client_send(struct client *c);

void client_pump(struct client *c);

void client_new(int fd, const struct sockaddr_storage *peer, uint16_t cflags,
                       struct tls_server *tls);

/* Frees the recycled client and session structs (at exit). */
void client_free_spares(void);

/* The response side of the client <-> exchange interface (see DESIGN.md):
 * the exchange hands the client parsed heads, and the client writes them
 * its own way. len: the upstream head's size (room to reserve). 0, or -1
 * when the head does not fit. A 1xx head (skipped for HTTP/1.0, and a 100
 * already sent); the 101 of an accepted upgrade; the final head, whose
 * framing toward the client (chunked kept, decoded for HTTP/1.0, close or
 * keep-alive) the client chooses. */
int client_interim_head(struct client *c, const struct http_msg *m, uint32_t len);
int client_upgrade_head(struct client *c, const struct http_msg *m, uint32_t len);
int client_response_head(struct client *c, const struct http_msg *m,
                         const struct http_info *info, uint32_t len);

/* Tells a client that awaits it (Expect: 100-continue) to send its body. */
void client_continue(struct client *c);

/* Whether response body bytes may reach this client through splice(2)
 * (plain TCP, not TLS). */
bool client_can_splice(const struct client *c);

/* Whether response bytes can leave now: socket room for HTTP/1.1, open
 * flow-control windows (and a connection that takes bytes) for a stream.
 * The send clock runs while they cannot. */
bool client_writable(const struct client *c);

/* The exchange ended well: an HTTP/1.1 connection waits for the next
 * request (or a pipelined one, or closes); a stream ends. Returns like a
 * step. */
int client_next(struct client *c);

#endif
