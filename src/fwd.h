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
    bool strip_proxy_auth;     /* a forward proxy consumed Proxy-Authorization */
    bool upgrade;              /* a WebSocket upgrade: Connection: upgrade and the
                                  client's Upgrade field are passed on */
};

/* Width of the deadline value placeholder: right-aligned digits, leading
 * blanks (optional whitespace before a field value, RFC 9110 5.5). */
#define FWD_DEADLINE_WIDTH 10

/* Writes the upstream request head into out[0..cap): request line in HTTP/1.1
 * with an origin-form target (an absolute-form target is split and its
 * authority becomes Host). Returns the length, or -1 when it does not fit. */
int fwd_request_head(char *out, size_t cap, const struct fwd_req *r);

struct fwd_resp {
    const struct http_msg *m;
    bool chunked;       /* relay the body chunked (Transfer-Encoding kept) */
    bool close;         /* add Connection: close */
    bool upgrade;       /* a 101 to an upgrade: Connection: upgrade and Upgrade kept */
};

/* Writes the client response head into out[0..cap). Returns the length, or -1
 * when it does not fit. */
int fwd_response_head(char *out, size_t cap, const struct fwd_resp *r);

/* Whether the head asks for a WebSocket upgrade: an Upgrade field naming
 * websocket and a Connection field naming upgrade (RFC 9110 7.8). */
bool fwd_wants_websocket(const struct http_msg *m);

/* Splits an absolute-form target "http://authority/path?q": 0 with the parts
 * (path "" means "/"), -1 when target is not absolute-form. */
int fwd_split_absolute(const char *t, size_t n, const char **auth, size_t *auth_len,
                       const char **path, size_t *path_len);

#endif
