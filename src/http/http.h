/* http.h -- incremental, zero-copy HTTP/1.1 message parser (RFC 9112).
 *
 * The parsers copy and allocate nothing. Given the bytes received so far they
 * return the length of a complete head, HTTP_INCOMPLETE when more bytes are
 * needed, or a negative HTTP status when the bytes can never form a valid
 * head: -400, -414, -431, -501, -505 for requests; for responses -502 when
 * malformed and -431 when a limit of struct http_limits is exceeded (the
 * caller reports an upstream fault either way, but names the two apart).
 * Parsed fields point into the caller's buffer, which must stay put while they
 * are used. Parsing is strict where leniency lets two parties disagree on
 * where a message ends (request smuggling): bare LF, obs-fold, whitespace
 * before a colon and control bytes in values are all refused. */
#ifndef HG_HTTP_H
#define HG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_INCOMPLETE 0
#define HTTP_MAX_FIELDS_CAP 256  /* hard cap of the fields array */

struct http_field {
    const char *name;
    const char *value;   /* OWS trimmed on both sides */
    uint32_t name_len;
    uint32_t value_len;
};

struct http_limits {
    uint32_t max_line;    /* request line / status line, bytes (414 / 502) */
    uint32_t max_head;    /* whole head, final CRLF included (431 / 502) */
    uint32_t max_block;   /* field lines alone, final CRLF included (431 / 502); 0: none */
    uint32_t max_fields;  /* field lines (431 / 502), at most HTTP_MAX_FIELDS_CAP */
};

extern const struct http_limits http_default_limits;

struct http_msg {
    /* request */
    const char *method;
    const char *target;
    uint32_t method_len;
    uint32_t target_len;
    /* response */
    int status;
    const char *reason;
    uint32_t reason_len;
    /* both */
    int minor;            /* HTTP/1.<minor>: 0 or 1 */
    uint32_t head_len;    /* bytes of the whole head, final CRLF included */
    uint32_t nfields;
    struct http_field fields[HTTP_MAX_FIELDS_CAP];
};

/* Parses a request head from buf[0..len). Leading empty lines are skipped
 * (RFC 9112 section 2.2). Returns the head length, HTTP_INCOMPLETE, or -status. */
int http_parse_request(const char *buf, size_t len, struct http_msg *m,
                       const struct http_limits *lim);

/* Parses a response head: the head length, HTTP_INCOMPLETE, -502 for a
 * malformed head, or -431 when the status line, the head or the number of
 * fields is over lim's limits. */
int http_parse_response(const char *buf, size_t len, struct http_msg *m,
                        const struct http_limits *lim);

/* How a message body is delimited. */
enum http_framing {
    HTTP_BODY_NONE = 0,     /* no body */
    HTTP_BODY_LENGTH,       /* Content-Length bytes */
    HTTP_BODY_CHUNKED,      /* Transfer-Encoding: chunked */
    HTTP_BODY_CLOSE,        /* response only: until the connection closes */
};

/* What a proxy must know of a parsed head. */
struct http_info {
    enum http_framing framing;
    uint64_t length;          /* for HTTP_BODY_LENGTH */
    bool has_length;          /* a Content-Length was given (one value, maybe
                                 on several identical lines)... */
    uint64_t content_length;  /* ...and this is it, whatever the framing (a
                                 HEAD or 304 response keeps it) */
    bool conn_close;          /* Connection: close (or HTTP/1.0 without keep-alive) */
    bool conn_keepalive;      /* Connection: keep-alive */
    bool expect_continue;     /* Expect: 100-continue */
    bool has_host;
    const char *host;         /* Host value (requests) */
    uint32_t host_len;
};

/* Checks a request head's framing and Host. Returns 0, or -400 / -501. */
int http_request_info(const struct http_msg *m, struct http_info *info);

/* Checks a response head's framing for a request of method HEAD (is_head)
 * Returns 0 or -502. 1xx, 204 and 304 have no body. Content-Length lines
 * are treated as for requests: identical duplicates count as one value,
 * differing ones are refused. */
int http_response_info(const struct http_msg *m, bool is_head, struct http_info *info);

/* Case-insensitive comparison of a field name with a lowercase literal. */
bool http_name_is(const struct http_field *f, const char *lower, size_t len);
#define HTTP_NAME_IS(f, lit) http_name_is((f), (lit), sizeof(lit) - 1)

/* Calls cb for each comma-separated, OWS-trimmed, non-empty element of a list
 * field value; stops early when cb returns false. */
void http_list_each(const char *v, size_t len,
                    bool (*cb)(const char *el, size_t n, void *arg), void *arg);

/* Parses 1*DIGIT without sign, spaces or overflow. 0 or -1. */
int http_parse_u64(const char *s, size_t n, uint64_t *out);

/* Incremental chunked-body decoder. An all-zero struct is a fresh decoder. */
struct http_chunked {
    uint64_t left;     /* bytes left in the current chunk's data, or hex digits seen */
    uint64_t payload;  /* chunk data bytes so far */
    uint32_t n;        /* bytes of the current size line, extension or trailer */
    uint32_t trailer;  /* trailer bytes so far */
    uint8_t state;
    uint8_t keep_framing; /* set by the caller: see http_chunked_feed */
};

#define HTTP_CHUNK_EXT_MAX  4096u   /* bytes of extensions on one size line */
#define HTTP_TRAILER_MAX   16384u   /* bytes of trailer section */

/* Scans len bytes of a chunked body. Returns the bytes consumed, which stop
 * right after the body's last CRLF (then http_chunked_done() is true), or
 * -400 on malformed framing. With data_len non-NULL the output replaces the
 * input in place, at the front of p, and its length is stored in *data_len:
 * the chunk payload alone (decoding, for an HTTP/1.0 peer), or, when
 * c->keep_framing is set, the chunked body itself minus its trailer fields.
 * A proxy forwards the latter: a trailer can carry Content-Length,
 * Transfer-Encoding or Host, which a next hop must never be offered. */
ssize_t http_chunked_feed(struct http_chunked *c, char *p, size_t len, size_t *data_len);

bool http_chunked_done(const struct http_chunked *c);

/* Method properties. */
bool http_method_is_head(const char *m, size_t n);
bool http_method_idempotent(const char *m, size_t n);

/* Reason phrase for a status code ("Gateway Timeout"), or "". */
const char *http_reason(int status);

#endif
