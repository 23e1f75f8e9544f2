/* h2msg.h -- HTTP/2 messages as HTTP/1.1 heads and back, and the connection
 * rules of RFC 9113 that need no I/O: pure functions, unit-tested.
 *
 * hourglass parses every request head with its own HTTP/1.1 parser, whatever
 * the client spoke: an HTTP/2 request's header list (already HPACK-decoded
 * and checked by nghttp2: lower-case names, no connection-specific field,
 * pseudo-fields first) is gathered here field by field, then written as an
 * HTTP/1.1 head:
 *
 *   :method :path HTTP/1.1      (the request line)
 *   host: :authority            (when given; a host field then is dropped,
 *                                RFC 9113 8.3.1)
 *   fields as received          (te dropped: hop-by-hop)
 *   cookie: a; b                (the cookie fields joined, RFC 9113 8.2.3)
 *   transfer-encoding: chunked  (a body comes without content-length)
 *   content-length: 0           (POST, PUT or PATCH without a body)
 *
 * so routing, the limits, the refusals and the upstream head are those of
 * HTTP/1.1. (The other way, fwd_response_fields gives the response head's
 * fields.) */
#ifndef HG_H2MSG_H
#define HG_H2MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A request header block as it is received. All-zero is an empty one. */
struct h2msg_req {
    struct buf lines;   /* regular fields, "name: value\r\n" each */
    struct buf vals;    /* the pseudo-field values, then the cookie values
                           joined with "; " (pseudo-fields come first) */
    uint32_t method_off, method_len, path_off, path_len, auth_off, auth_len;
    uint32_t cookie_off, cookie_len;
    uint32_t limit;     /* bytes the head may take; 0: BUF_LARGE */
    bool over;          /* over the limit: what follows is not kept */
    bool has_length;    /* a content-length field */
};

/* Empties r for the next block (its buffers are given back). */
void h2msg_req_release(struct h2msg_req *r);

/* Adds one field of the block. */
void h2msg_req_field(struct h2msg_req *r, const char *name, size_t nl, const char *value,
                     size_t vl);

bool h2msg_req_is_connect(const struct h2msg_req *r);

/* The HTTP/1.1 head's size, an upper bound: what to reserve. */
size_t h2msg_req_size(const struct h2msg_req *r);

/* Writes the request as an HTTP/1.1 head into out[0..cap); body_follows:
 * the HEADERS frame had no END_STREAM. *chunked is set when the body goes
 * chunked. Returns the length, or -1 when it does not fit (or the block was
 * over the limit). */
int h2msg_req_head(const struct h2msg_req *r, bool body_follows, char *out, size_t cap,
                   bool *chunked);

/* A token bucket: burst tokens, refilled at rate per second; now in ns.
 * All-zero is a full one. Returns false when it is empty. */
struct h2msg_bucket {
    uint64_t at;
    uint32_t tokens;
};
bool h2msg_bucket_take(struct h2msg_bucket *b, uint64_t now, uint32_t burst, uint32_t rate);

/* The client stream ids a connection opened, and those it reset (RFC 9113
 * 5.1.1: client ids only grow). All-zero: none yet. */
struct h2msg_ids {
    uint64_t opened[8];  /* the last 512 odd ids up to the highest, a ring */
    uint64_t reset[8];   /* ... of them, those the proxy reset */
    uint32_t max_idx;    /* the highest, as (id >> 1) + 1; 0 none */
};

enum h2msg_id {
    H2MSG_ID_NEW,        /* above the highest: now recorded as opened */
    H2MSG_ID_NEVER,      /* below the highest, never opened: a connection error */
    H2MSG_ID_OPENED,     /* opened before (an open stream's trailers, or a closed one) */
    H2MSG_ID_RESET,      /* opened, then reset by the proxy: frames may still come */
    H2MSG_ID_OLD,        /* too far below the highest to know */
};

/* What a HEADERS frame on client stream id is to the connection. */
enum h2msg_id h2msg_id_check(struct h2msg_ids *ids, int32_t id);

/* Records that the proxy reset stream id. */
void h2msg_id_reset(struct h2msg_ids *ids, int32_t id);

#endif
