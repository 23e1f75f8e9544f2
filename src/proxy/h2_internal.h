/* h2_internal.h -- what h2.c (the connection) and h2_stream.c (its
 * streams) share: one module, h2 (h2.h), in two files, as conf is. Nothing
 * outside those two files includes this. */
#ifndef HG_H2_INTERNAL_H
#define HG_H2_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "h2msg.h"
#include "px.h"

/* The stream window we grant: what a stream's `in` (BUF_LARGE) holds
 * besides a head of up to 16 KiB and the chunk framing. The connection's
 * window bounds the request body bytes all streams hold together. */
#define STREAM_WINDOW (48u * 1024)
#define CONN_WINDOW (1u << 20)
#define OUT_HIGH (64u * 1024)     /* frames queued for the socket: stop producing */
#define CHUNK_HDR 10u             /* "%08x\r\n": a chunk's size line, fixed width */
/* stream flags */
#define S_LIVE     0x001u  /* nghttp2 holds the stream (until on_stream_close) */
#define S_EXCH     0x002u  /* an exchange holds it (it has a session) */
#define S_HEAD     0x004u  /* its request head is complete: to start */
#define S_BODY_END 0x008u  /* the client sent END_STREAM */
#define S_CHUNKED  0x010u  /* its body goes upstream chunked */
#define S_RESP     0x020u  /* the final response HEADERS are submitted */
#define S_DEFERRED 0x040u  /* its data source waits for bytes (resume_data) */
#define S_EOF      0x080u  /* its data source gave END_STREAM */
#define S_READY    0x100u  /* on the connection's ready list */
#define S_FREEING  0x400u  /* its release is deferred */
#define S_BIG     0x1000u  /* its head is over the limits (431) */
#define S_CONNECT 0x2000u  /* a CONNECT (refused) */

struct h2s {
    struct client c;             /* CF_STREAM: the exchange's client (no socket) */
    struct h2c *h;
    int32_t id;
    uint32_t sflags;
    uint32_t unconsumed;         /* DATA payload received, window not given back */
    struct h2s *next, *prev;     /* the connection's streams */
    struct h2s *next_ready;
    char *trailers;              /* "name: value\r\n" lines sent after the body */
    uint32_t tlen;
};

struct h2c {
    struct client *c;            /* the connection (CS_H2) */
    nghttp2_session *ng;
    struct h2s *streams;
    unsigned nstreams;
    struct h2s *ready, *ready_tail;   /* streams with news, stepped after the
                                         input in the order they had it */
    char *out;                   /* frames for the socket */
    uint32_t ostart, oend, ocap;
    struct h2msg_req hd;          /* the header block being received (one at a
                                    time on a connection) */
    int32_t last_id;             /* the last stream started */
    uint64_t hdr_since;          /* a header block is open since; 0 none */
    uint64_t idle_since;         /* no stream open since */
    uint64_t send_mark;          /* output waiting: the last progress */
    struct h2s *parked;          /* a DATA chunk waits for room in its stream */
    const uint8_t *park_p;
    size_t park_n;
    struct h2msg_bucket resets, empties;   /* the flood limits */
    struct h2msg_ids ids;        /* client stream ids opened */
    bool resume;                 /* input paused (PAUSE): call mem_recv again */
    bool goaway;                 /* GOAWAY submitted: no new stream */
    bool fatal;                  /* the session failed: flush, then close */
    bool kicked;                 /* kick (a deferred step) is queued */
    bool dirty;                  /* frames were submitted since the last flush */
    bool dead;                   /* closed while kicked: the kick frees it */
    struct loop_defer kick;
    struct timer timer;
};

static inline struct h2s *h2_stream_of(struct client *c)
{
    return container_of(c, struct h2s, c);
}

/* Asks for a step of the connection at the end of this loop iteration:
 * frames submitted by several streams go out in one write (h2.c). */
void h2_kick_later(struct h2c *h);

/* Puts the DATA chunk the input paused on into its stream when there is
 * room now; true when none is parked any more (h2.c). */
bool h2_unpark(struct h2c *h);

/* ---- streams (h2_stream.c) ---- */

/* A new stream on h, its request header block begun. */
struct h2s *h2_stream_new(struct h2c *h, int32_t id);

/* Puts the stream on its connection's ready list (stepped after the input). */
void h2_stream_ready(struct h2s *st);

/* Frees the stream once neither nghttp2 nor an exchange holds it. */
void h2_stream_free(struct h2s *st);

/* Whether the stream's exchange still takes request body bytes. */
bool h2_stream_wants_body(const struct h2s *st);

/* Appends a DATA payload to the stream's window (chunked: inside a chunk);
 * false: no room now. */
bool h2_stream_append(struct h2s *st, const uint8_t *p, size_t n);

/* The client's END_STREAM (a chunked body gets its last chunk). */
void h2_stream_body_end(struct h2s *st);

/* Writes the stream's request head as HTTP/1.1 text into its `in`; false:
 * it does not fit (431). */
bool h2_stream_compose(struct h2s *st, const struct h2msg_req *r);

/* A complete request head: parse it as HTTP/1.1 and start the exchange. */
void h2_stream_start(struct h2s *st);

/* Frees the recycled stream structs (at exit). */
void h2_stream_spares(void);

#endif
