/* tls.h -- TLS on both sides (OpenSSL 3), driven by our own loop.
 *
 * A connection's SSL object sits on its non-blocking socket; nothing here
 * blocks or keeps a timer. The callers keep their readiness bits (loop.h) and
 * their clocks: tls_read and tls_writev answer like read(2) and sendmsg(2),
 * with errno EAGAIN when the TLS engine needs the socket, so the code that
 * relays plain TCP relays TLS unchanged. conn.h is that code: conn_read and
 * conn_writev call these when a connection has an SSL. Two rules make that
 * hold:
 *
 *   - An EAGAIN from tls_read means the engine holds no plaintext either
 *     (OpenSSL returns buffered plaintext before it asks for more), so
 *     clearing LOOP_READ on it is as right as for a socket.
 *   - A write that came back short must be offered again starting with the
 *     same bytes and at least as many (OpenSSL has already sealed them into a
 *     record): the proxy's queues only ever grow at the tail, so it does.
 *
 * Renegotiation is refused; a TLS 1.3 KeyUpdate is answered with the next
 * write. A read that needs to write (that answer, on a full socket) reports
 * EAGAIN and sets TLS_READ_WANTS_WRITE in *want, which the owner turns back
 * into a read attempt on the next writable event (conn_rearm).
 *
 * Closing: tls_close_notify() sends a close_notify, for a clean end only. A
 * cancelled exchange frees the SSL without one, so a peer reading a body
 * framed by the close sees a truncation, never a clean end. */
#ifndef HG_TLS_H
#define HG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "loop.h"

#define TLS_READ_WANTS_WRITE 0x1u

/* One certificate and its key, PEM files. */
struct tls_pair {
    const char *cert, *key;
};

/* A listener's settings. pairs[0] is the default certificate. */
struct tls_server_conf {
    const struct tls_pair *pairs;
    unsigned npairs;
    int min_version;           /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
    bool h2;                   /* ALPN: "h2" before "http/1.1"; false: "http/1.1" only */
};

/* A pool's settings toward its servers. */
struct tls_client_conf {
    const char *ca;            /* CA file; NULL: the system's store */
    bool verify;               /* check the chain and the name (default true) */
    const char *server_name;   /* SNI and the name checked; NULL: see tls_client_conn */
    const char *cert, *key;    /* client certificate, or NULL */
    bool h2;                   /* ALPN offers "h2" only (an HTTP/2 pool), else "http/1.1" */
};

struct tls_server;   /* SSL_CTX per certificate, SNI choice, ALPN, tickets */
struct tls_client;   /* SSL_CTX of one pool */

/* Once per process tree, before any fork: OpenSSL's setup and the ring of
 * session ticket keys (tkey.h), which forked workers share, so that a ticket
 * issued by one worker resumes on another, and across reloads. 0 or -1. */
int tls_global_init(void);

/* Loads the certificates; NULL with a message in err ("cannot load
 * site.pem: No such file or directory") naming pair i in *bad_pair and
 * whether the cert (0) or the key (1) failed in *bad_key. */
struct tls_server *tls_server_new(const struct tls_server_conf *c, char *err, size_t errlen,
                                  unsigned *bad_pair, int *bad_key);
void tls_server_free(struct tls_server *s);

/* A server-side SSL on an accepted socket (io: its fd and readiness bits),
 * or NULL (out of memory). */
SSL *tls_server_conn(struct tls_server *s, struct loop_io *io);

/* NULL with a message in err; *bad_key names the key at fault ("ca",
 * "cert", "key"). */
struct tls_client *tls_client_new(const struct tls_client_conf *c, char *err, size_t errlen,
                                  const char **bad_key);
void tls_client_free(struct tls_client *t);

/* A client-side SSL on a connecting socket. host: the server's host as
 * written in the configuration (a name or an IP literal), used as SNI and
 * checked name when the pool sets no server_name; an IP literal is checked
 * as an address and not sent as SNI. *session: the last session of this
 * server, resumed when set; updated as the server issues new ones. */
SSL *tls_client_conn(struct tls_client *t, struct loop_io *io, const char *host,
                     SSL_SESSION **session);

/* Puts ssl on the socket of io (tls_server_conn and tls_client_conn do):
 * the engine reads the socket only while io->ready has LOOP_READ, and a
 * short read clears it, as conn_read does over plain TCP; so a read after
 * the socket was drained costs no system call. io must outlive ssl.
 * 0, or -1 (out of memory). */
int tls_set_io(SSL *ssl, struct loop_io *io);

/* Advances the handshake: 1 done, 0 waiting for the socket (the bit it waits
 * for is cleared from *ready), -1 failed (reason in err), -2 failed because
 * the client spoke plain HTTP (the server side may answer it in plain).
 * Done with the peer's next bytes read ahead into the engine: LOOP_READ is
 * set in *ready, as no read edge will come for them. */
int tls_handshake(SSL *ssl, uint32_t *ready, char *err, size_t errlen);

/* Why the last tls_read failed with EPROTO ("certificate required"). */
const char *tls_last_error(void);

/* Whether the finished handshake resumed a session. */
bool tls_resumed(SSL *ssl);

/* Whether the finished handshake chose ALPN "h2" (HTTP/2); false without
 * ALPN, with "http/1.1", or for a NULL ssl. */
bool tls_alpn_h2(SSL *ssl);

/* Keeps the engine's record buffers between reads and writes (they are
 * released whenever empty by default, which saves 34 KiB per idle
 * connection but costs an allocation per record on a busy one: an HTTP/2
 * connection is rarely idle and already holds far more). */
void tls_keep_buffers(SSL *ssl);

/* read(2) and sendmsg(2) over TLS: > 0 bytes, 0 at the peer's end of
 * stream (a close_notify, or a TCP end without one), -1 with errno EAGAIN,
 * ECONNRESET or EPROTO (a TLS error). */
ssize_t tls_read(SSL *ssl, void *buf, size_t len, uint8_t *want);
ssize_t tls_writev(SSL *ssl, const struct iovec *iov, int iovcnt);

/* The peer's bytes waiting inside the engine, already off the socket:
 * decrypted, or records (or parts of one) read ahead. */
static inline bool tls_pending(SSL *ssl)
{
    return ssl && SSL_has_pending(ssl);
}

/* Sends a close_notify if the socket takes it now (best effort, never
 * waits): a clean end of this side's stream. */
void tls_close_notify(SSL *ssl);

/* Frees the SSL (no close_notify). NULL is fine. */
void tls_free(SSL *ssl);

/* The text of the last OpenSSL error of this thread ("certificate verify
 * failed"), clearing the queue. */
const char *tls_error_text(char *buf, size_t len);

/* Counters for /metrics. */
enum tls_result { TLS_OK, TLS_RESUMED, TLS_FAILED, TLS_TIMEOUT, TLS_NRESULTS };

#endif
