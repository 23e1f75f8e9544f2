/* h2up_internal.h -- what h2up.c (the connections, the pool's hooks) and
 * h2up_stream.c (a stream's translation between HTTP/1.1 text and HTTP/2)
 * share: one module, h2up (h2up.h), in two files. Nothing outside those
 * two files includes this. */
#ifndef HG_H2UP_INTERNAL_H
#define HG_H2UP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "http.h"
#include "loop.h"
#include "pool.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

#define STREAM_WINDOW (64u * 1024)   /* response payload a stream holds unread */
#define CONN_WINDOW (4u << 20)       /* ... all streams of a connection together */
#define OUT_HIGH (64u * 1024)        /* frames queued for the socket: stop producing */
#define ASSUMED_STREAMS 100u         /* a connection's streams before its SETTINGS */
#define CHUNK_SLACK 32u              /* chunked framing taken past a closed window */
#define RESP_MAX (256u * 1024)       /* a head (64 KiB at most) and a window of DATA */

/* stream flags */
#define U_SUBMITTED  0x0001u  /* its HEADERS are submitted: it has an id */
#define U_BODY_END   0x0002u  /* the whole request body is in `send` */
#define U_DEFERRED   0x0004u  /* the body's data source waits (resume_data) */
#define U_FINAL      0x0008u  /* the final response head is in r */
#define U_DONE       0x0010u  /* the server's END_STREAM: the response is whole */
#define U_CLOSED     0x0020u  /* nghttp2 closed the stream */
#define U_FAILED     0x0040u  /* err says why */
#define U_UNPROC     0x0080u  /* the server never processed it */
#define U_READY      0x0100u  /* on the ready list */
#define U_CHUNKED    0x0200u  /* the response body is chunk-framed in r */
#define U_REQ_CHUNKED 0x0400u /* the request body comes chunked: decoded */
#define U_HEAD_REQ   0x0800u  /* a HEAD request: a response without body */
#define U_ENDED      0x1000u  /* the attempt let go of it */

struct h2u_stream {
    struct upconn up;             /* what the attempt holds (up.stream) */
    struct h2u_conn *hc;          /* NULL once its connection is gone */
    int32_t id;                   /* 0: not submitted */
    uint32_t flags;
    int err;                      /* U_FAILED: -errno, or 0 (closed early) */
    struct h2u_stream *next, *prev;   /* its connection's streams */
    struct h2u_stream *next_ready;
    /* the request */
    struct http_chunked req_chunk;
    uint64_t req_left;            /* Content-Length bytes still to come */
    struct buf send;              /* body payload for the data source */
    /* the response, as HTTP/1.1 text for pool_read */
    char *r;
    uint32_t rstart, rend, rcap;
    uint32_t unconsumed;          /* DATA payload not yet given back as window */
    int status;
    bool has_length;
    char *trailers;
    uint32_t tlen, tcap;
    struct loop_defer defer;
};

struct h2u_conn {
    struct upconn *up;            /* the socket, owned by this connection */
    struct pool_server *srv;
    nghttp2_session *ng;
    struct h2u_conn *next, *prev; /* srv->h2 */
    struct h2u_stream *streams;
    unsigned nstreams;
    char *out;                    /* frames for the socket */
    uint32_t ostart, oend, ocap;
    int err;
    char why[160];                /* a failed opening: the reason */
    bool open;                    /* the server's SETTINGS arrived */
    bool goaway;                  /* no new stream on it */
    bool dead;                    /* closed: freed by the kick or deferred */
    bool kicked;
    struct loop_defer kick;
    struct loop_defer defer;
    struct timer idle_timer;
};

static inline struct h2u_stream *h2u_stream_of(const struct upconn *up)
{
    return container_of(up, struct h2u_stream, up);
}

/* ---- the connections (h2up.c) ---- */

/* Marks the stream's readiness bits and queues it for its owner's call,
 * made outside nghttp2 once the connection's step is done. */
void h2u_ready(struct h2u_stream *st, uint32_t bits);

/* Asks for a step of the connection at the end of this loop iteration:
 * frames that several streams submit in one iteration leave in one write. */
void h2u_kick(struct h2u_conn *hc);

/* ---- a stream (h2up_stream.c) ---- */

/* nghttp2's callbacks for our sessions: they only record. */
void h2u_set_callbacks(nghttp2_session_callbacks *cbs);

/* The deadline header's name (h2u_init), or NULL. */
extern const char *h2u_deadline_name;
extern size_t h2u_deadline_len;

/* The stream failed (err: -errno, or 0 for a connection closed early);
 * unprocessed: the server never processed it. Nothing once it is whole. */
void h2u_stream_fail(struct h2u_stream *st, int err, bool unprocessed);

/* The pool's read and write on a stream (pool_read, pool_writev). */
ssize_t h2u_stream_read(struct upconn *up, void *buf, size_t len);
ssize_t h2u_stream_writev(struct upconn *up, const struct iovec *iov, int n);

#endif
