/* fwd.h -- rewriting message heads as they cross the proxy.
 *
 * Hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Upgrade, Transfer-Encoding, and every field that Connection names) stop
 * here; Via and X-Forwarded-For are appended to, X-Forwarded-Proto is set.
 * Transfer-Encoding: chunked is re-emitted when the body is relayed chunked.
 * Pure functions: they write into the caller's buffer and allocate nothing. */
#ifndef HG_FWD_H
#define HG_FWD_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

#define FWD_VIA "1.1 hourglass"

struct fwd_req {
    const struct http_msg *m;
    const struct http_info *info;
    const char *client_ip;     /* appended to X-Forwarded-For */
    const char *proto;         /* X-Forwarded-Proto: "http", or "https" on TLS */
    const char *default_host;  /* Host for an HTTP/1.0 request without one */
    bool strip_expect;         /* the proxy answers 100-continue itself */
    const char *deadline_name; /* NULL, or the deadline header: any incoming one
                                  is dropped, and a placeholder is written */
    bool deadline_strip_only;  /* remove an incoming one but send none (the
                                  route turned propagation off) */
    size_t *deadline_at;       /* out: offset of FWD_DEADLINE_WIDTH blanks to fill */
    bool grpc;                 /* a gRPC call: its grpc-timeout is dropped, and... */
    size_t *grpc_timeout_at;   /* ...unless NULL, a grpc-timeout field of
                                  FWD_DEADLINE_WIDTH blanks is written; out: where */
    bool strip_proxy_auth;     /* a forward proxy consumed Proxy-Authorization */
    bool upgrade;              /* a WebSocket upgrade: Connection: upgrade and the
                                  client's Upgrade field are passed on */
    bool keep_underscores;     /* pass on fields whose name has a '_' (else dropped) */
    bool keep_te_trailers;     /* pass on "TE: trailers" (an HTTP/2 client to an HTTP/2
                                  upstream: trailers reach it), else TE is hop-by-hop */
    unsigned *dropped;         /* out, may be NULL: how many fields were dropped for it */
    const char *request_id;    /* NULL, or the request's ID: every incoming
                                  X-Request-Id is dropped and this one is sent */
};

/* Width of the deadline value placeholder: right-aligned digits, leading
 * blanks (optional whitespace before a field value, RFC 9110 5.5). */
#define FWD_DEADLINE_WIDTH 10

/* Writes the upstream request head into out[0..cap): request line in HTTP/1.1
 * with an origin-form target (an absolute-form target is split and its
 * authority becomes Host). Content-Length is written once, as the decimal
 * value the body was framed with (never "010" nor two lines), where the first
 * Content-Length line stood. Unless keep_underscores, a field whose name has
 * a '_' is dropped: CGI-style backends map '_' and '-' to the same variable,
 * so "Transfer_Encoding" would reach them as a second framing field.
 * Returns the length, or -1 when it does not fit. */
int fwd_request_head(char *out, size_t cap, const struct fwd_req *r);

struct fwd_resp {
    const struct http_msg *m;
    const struct http_info *info; /* NULL for a 1xx head (its Content-Length
                                     lines are dropped, RFC 9110 8.6) */
    bool chunked;       /* relay the body chunked (Transfer-Encoding kept) */
    bool close;         /* add Connection: close */
    bool keepalive;     /* add Connection: keep-alive (an HTTP/1.0 client that
                           asked for it); ignored with close */
    bool upgrade;       /* a 101 to an upgrade: Connection: upgrade and Upgrade kept */
    const char *request_id;     /* NULL, or the request's ID: the upstream's
                                   X-Request-Id fields are replaced by it */
    const char *server_timing;  /* NULL, or a Server-Timing value added (after
                                   the upstream's own Server-Timing fields) */
};

/* Writes the client response head into out[0..cap); Content-Length is
 * written once, canonical, as for requests. Returns the length, or -1 when
 * it does not fit. */
int fwd_response_head(char *out, size_t cap, const struct fwd_resp *r);

/* One field of a response head for a client that wants fields, not text
 * (HTTP/2): the name in lower case. */
struct fwd_field {
    const char *name, *value;
    size_t name_len, value_len;
};

/* The fields fwd_response_head would write (r->chunked, close, keepalive
 * and upgrade are not used: no connection-specific field is given), each
 * name in lower case, into f[0..max): names, a merged Via and the canonical
 * Content-Length are written into scratch[0..scap), values otherwise point
 * into r->m. Returns the count, or -1 when max or scratch is too small. */
int fwd_response_fields(const struct fwd_resp *r, struct fwd_field *f, size_t max, char *scratch,
                        size_t scap);

/* Whether a field's name has a '_' (see fwd_request_head). */
bool fwd_name_has_underscore(const struct http_field *f);

/* Whether the head asks for a WebSocket upgrade: an Upgrade field naming
 * websocket and a Connection field naming upgrade (RFC 9110 7.8). */
bool fwd_wants_websocket(const struct http_msg *m);

/* Splits an absolute-form target "http://authority/path?q": 0 with the parts
 * (path "" means "/"), -1 when target is not absolute-form. */
int fwd_split_absolute(const char *t, size_t n, const char **auth, size_t *auth_len,
                       const char **path, size_t *path_len);

#endif
