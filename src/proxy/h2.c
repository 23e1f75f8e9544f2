/* h2.c -- HTTP/2 to clients through libnghttp2, driven by our loop (see h2.h). */
#define _GNU_SOURCE
#include "h2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include <nghttp2/nghttp2.h>

#include "access.h"
#include "buf.h"
#include "client.h"
#include "exchange.h"
#include "fwd.h"
#include "h2msg.h"
#include "http.h"
#include "log.h"
#include "request.h"
#include "stats.h"
#include "tls.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof PREFACE - 1)

/* The stream window we grant: what a stream's `in` (BUF_LARGE) holds
 * besides a head of up to 16 KiB and the chunk framing. The connection's
 * window bounds the request body bytes all streams hold together. */
#define STREAM_WINDOW (48u * 1024)
#define CONN_WINDOW (1u << 20)
#define OUT_HIGH (64u * 1024)     /* frames queued for the socket: stop producing */
#define CHUNK_HDR 10u             /* "%08x\r\n": a chunk's size line, fixed width */
/* A client that resets more streams than this (a burst, then so many per
 * second) is attacking (CVE-2023-44487, Rapid Reset): GOAWAY. */
#define RESET_BURST 200u
#define RESET_RATE 100u
/* Frames that move nothing (empty DATA, PRIORITY, SETTINGS, PING): a burst,
 * then so many per second (the empty-frame floods of CVE-2019-9518...). */
#define EMPTY_BURST 1000u
#define EMPTY_RATE 200u

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

#define STREAMS_KEEP 1024         /* spare stream structs kept after a burst */

static struct h2s *free_streams;
static unsigned nfree_streams;

static void kick_later(struct h2c *h);
static void stream_ready(struct h2s *st);
static void maybe_free(struct h2s *st);
static bool wants_body(const struct h2s *st);

static struct h2s *stream_of(struct client *c)
{
    return container_of(c, struct h2s, c);
}

int h2_preface(const char *p, size_t n)
{
    size_t k = n < PREFACE_LEN ? n : PREFACE_LEN;
    if (memcmp(p, PREFACE, k) != 0)
        return -1;
    return n >= PREFACE_LEN ? 1 : 0;
}

/* ---- small helpers ---------------------------------------------------------- */

static void out_append(struct h2c *h, const uint8_t *p, size_t n)
{
    if (h->oend + n > h->ocap) {
        if (h->ostart) {
            memmove(h->out, h->out + h->ostart, h->oend - h->ostart);
            h->oend -= h->ostart;
            h->ostart = 0;
        }
        if (h->oend + n > h->ocap) {
            uint32_t cap = h->ocap ? h->ocap : BUF_SMALL;
            while (cap < h->oend + n)
                cap *= 2;
            h->out = realloc(h->out, cap);
            if (!h->out) {
                log_error("error", "out of memory");
                abort();
            }
            h->ocap = cap;
        }
    }
    memcpy(h->out + h->oend, p, n);
    h->oend += (uint32_t)n;
}

static void count_reset(int cause)
{
    if (cause >= 0 && cause < STATS_H2_RESET_CAUSES)
        stats->h2_resets[cause]++;
}

/* Submits GOAWAY: no new stream. NO_ERROR lets the open ones finish; any
 * other code closes the connection once the frame is out. */
static void goaway(struct h2c *h, uint32_t code, const char *why)
{
    if (code != NGHTTP2_NO_ERROR)
        h->fatal = true;
    if (h->goaway)
        return;
    h->goaway = true;
    if (why) {
        struct peer_text pt;
        log_error(code == NGHTTP2_NO_ERROR ? "info" : "warn", "HTTP/2 client %s: %s: GOAWAY %s",
                  access_peer(h->c, &pt), why, nghttp2_http2_strerror(code));
    }
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, h->last_id, code, NULL, 0);
    kick_later(h);
}

/* ---- streams ------------------------------------------------------------------ */

static struct h2s *stream_new(struct h2c *h, int32_t id)
{
    struct h2s *st = free_streams;
    if (st) {
        free_streams = st->next;
        nfree_streams--;
    } else {
        st = xmalloc(sizeof *st);
    }
    *st = (struct h2s){0};
    st->h = h;
    st->id = id;
    st->sflags = S_LIVE;
    struct client *c = &st->c, *pc = h->c;
    timer_init(&c->timer, exchange_on_timer);
    c->conn.io.fd = -1;
    c->cflags = (uint8_t)((pc->cflags & (CF_TRUSTED | CF_UNDERSCORES | CF_TLS)) | CF_STREAM);
    c->minor = 1;
    c->peer = pc->peer;
    c->state = CS_HEAD;
    c->t_first = px_loop->now;
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    h->streams = st;
    h->nstreams++;
    stats->h2_streams++;
    return st;
}

static void release_stream(struct loop_defer *d)
{
    struct h2s *st = container_of(d, struct h2s, c.defer);
    if (nfree_streams >= STREAMS_KEEP) {
        free(st);
        return;
    }
    st->next = free_streams;
    free_streams = st;
    nfree_streams++;
}

/* Frees the stream once neither nghttp2 nor an exchange holds it. */
static void maybe_free(struct h2s *st)
{
    if (st->sflags & (S_LIVE | S_EXCH | S_FREEING))
        return;
    st->sflags |= S_FREEING;
    buf_release(&st->c.in);   /* (a head composed for a stream reset before it started) */
    struct h2c *h = st->h;
    if (h) {
        if (st->sflags & S_READY) {
            struct h2s *prev = NULL;
            for (struct h2s **pp = &h->ready; *pp; prev = *pp, pp = &(*pp)->next_ready)
                if (*pp == st) {
                    *pp = st->next_ready;
                    if (h->ready_tail == st)
                        h->ready_tail = prev;
                    break;
                }
        }
        if (h->parked == st) {
            nghttp2_session_consume_connection(h->ng, h->park_n);
            h->parked = NULL;
            kick_later(h);   /* its input goes on */
        }
        if (st->prev)
            st->prev->next = st->next;
        else
            h->streams = st->next;
        if (st->next)
            st->next->prev = st->prev;
        if (--h->nstreams == 0)
            h->idle_since = px_loop->now;
        st->h = NULL;
    }
    loop_defer(px_loop, &st->c.defer, release_stream);
}

static void stream_ready(struct h2s *st)
{
    if (st->sflags & (S_READY | S_FREEING) || !st->h)
        return;
    struct h2c *h = st->h;
    st->sflags |= S_READY;
    st->next_ready = NULL;
    if (h->ready_tail)
        h->ready_tail->next_ready = st;
    else
        h->ready = st;
    h->ready_tail = st;
}

/* The exchange is over (its session released): the stream lives on only
 * while nghttp2 holds it. */
static void stream_end_exchange(struct h2s *st)
{
    struct client *c = &st->c;
    if (st->unconsumed && st->h && st->h->ng) {
        /* what it held of the connection's window is given back */
        nghttp2_session_consume_connection(st->h->ng, st->unconsumed);
        st->unconsumed = 0;
        kick_later(st->h);
    }
    client_session_detach(c);
    loop_timer_stop(px_loop, &c->timer);
    buf_release(&c->in);
    c->state = CS_CLOSED;
    st->sflags &= ~S_EXCH;
}

/* Gives back the window of the body bytes that have left `in` (sent
 * upstream), so that what the client may send next always fits. */
static void give_window(struct h2s *st)
{
    struct client *c = &st->c;
    struct h2c *h = st->h;
    if (!st->unconsumed || !h)
        return;
    uint32_t held = 0;
    if (c->s && c->state == CS_EXCH) {
        uint32_t from = c->s->x.body_sent;
        held = c->in.end > from ? c->in.end - from : 0;
    } else if (c->s) {
        held = buf_len(&c->in);
    }
    if (held >= st->unconsumed)
        return;
    uint32_t n = st->unconsumed - held;
    st->unconsumed -= n;
    nghttp2_session_consume(h->ng, st->id, n);
    kick_later(h);
}

/* Appends a DATA payload to the stream's window (chunked: into the open
 * chunk, whose size line is rewritten). false: no room now. */
static bool body_append(struct h2s *st, const uint8_t *p, size_t n)
{
    struct client *c = &st->c;
    struct exch *x = &c->s->x;
    uint32_t need = (uint32_t)n + ((st->sflags & S_CHUNKED) ? CHUNK_HDR + 2 : 0);
    if (buf_room(&c->in) < need && c->in.cap < BUF_LARGE) {
        uint32_t was = c->in.start;
        buf_reserve(&c->in, BUF_LARGE);
        if (c->state == CS_EXCH) {
            x->body_sent -= was - c->in.start;
            x->body_ready -= was - c->in.start;
        }
    }
    if (buf_room(&c->in) < need && c->state == CS_EXCH) {
        /* bytes already sent upstream make room (a kept body is lost) */
        uint32_t hs = c->in.start + x->head_len;
        if (x->body_sent > hs) {
            x->flags &= ~X_KEEP_BODY;
            uint32_t d = x->body_sent - hs;
            memmove(c->in.data + hs, c->in.data + x->body_sent, c->in.end - x->body_sent);
            x->body_sent = hs;
            x->body_ready -= d;
            c->in.end -= d;
        }
    }
    if (buf_room(&c->in) < need)
        return false;
    if (st->sflags & S_CHUNKED) {
        char line[CHUNK_HDR + 1];
        snprintf(line, sizeof line, "%08zx\r\n", n);
        memcpy(buf_tail(&c->in), line, CHUNK_HDR);
        c->in.end += CHUNK_HDR;
    }
    memcpy(buf_tail(&c->in), p, n);
    c->in.end += (uint32_t)n;
    if (st->sflags & S_CHUNKED) {
        memcpy(buf_tail(&c->in), "\r\n", 2);
        c->in.end += 2;
    }
    st->unconsumed += (uint32_t)n;
    if (c->s)
        c->s->x.clk.body_mark = px_loop->now;
    return true;
}

static void body_end(struct h2s *st)
{
    struct client *c = &st->c;
    st->sflags |= S_BODY_END;
    if ((st->sflags & S_CHUNKED) && (st->sflags & S_EXCH)) {
        if (buf_room(&c->in) < 5)
            buf_reserve(&c->in, BUF_LARGE);
        if (buf_room(&c->in) >= 5) {
            memcpy(buf_tail(&c->in), "0\r\n\r\n", 5);
            c->in.end += 5;
        }
    }
}

/* A parked DATA chunk (PAUSE) goes into its stream when there is room. */
static bool unpark(struct h2c *h)
{
    struct h2s *st = h->parked;
    if (!st)
        return true;
    if (st->sflags & S_HEAD)
        return false;   /* not started yet */
    if (wants_body(st) && !body_append(st, h->park_p, h->park_n))
        return false;
    if (!wants_body(st))
        nghttp2_session_consume(h->ng, st->id, h->park_n);
    h->parked = NULL;
    stream_ready(st);
    return true;
}

/* ---- the request head ------------------------------------------------------- */

/* Writes the stream's request head as HTTP/1.1 text into its `in`. false:
 * it does not fit (431). */
static bool compose_head(struct h2s *st, const struct h2msg_req *r)
{
    struct client *c = &st->c;
    size_t need = h2msg_req_size(r);
    if (r->over || need > BUF_LARGE)
        return false;
    bool body = !(st->sflags & S_BODY_END), chunked;
    buf_reserve(&c->in, need > BUF_SMALL || body ? BUF_LARGE : BUF_SMALL);
    int n = h2msg_req_head(r, body, buf_tail(&c->in), buf_room(&c->in), &chunked);
    if (n < 0)
        return false;
    c->in.end += (uint32_t)n;
    if (chunked)
        st->sflags |= S_CHUNKED;
    return true;
}

/* A complete request head: parse it as HTTP/1.1 and start the exchange. */
static void stream_start(struct h2s *st)
{
    struct client *c = &st->c;
    struct h2c *h = st->h;
    st->sflags &= ~S_HEAD;
    client_session_attach(c);
    st->sflags |= S_EXCH;
    (void)h;
    if (st->sflags & S_CONNECT) {
        client_error(c, 501, "bad_request", "CONNECT over HTTP/2 is not supported");
        return;
    }
    if (st->sflags & S_BIG) {
        struct peer_text pt;
        log_error("info", "bad request from %s: 431, HTTP/2 header list over --max-header-size",
                  access_peer(c, &pt));
        client_error(c, 431, "bad_request", "header fields over --max-header-size or --max-headers");
        return;
    }
    int r = http_parse_request(buf_head(&c->in), buf_len(&c->in), &px_scratch, &px_req_limits);
    if (r < 0 || r == HTTP_INCOMPLETE) {
        int status = r == HTTP_INCOMPLETE ? 400 : -r;
        const char *detail = status == 414 ? "request line longer than --max-request-line"
                           : status == 431 ? "header fields over --max-header-size or --max-headers"
                                           : "malformed request head";
        struct peer_text pt;
        log_error("info", "bad request from %s: %d, %s (HTTP/2)", access_peer(c, &pt), status,
                  detail);
        client_error(c, status, "bad_request", detail);
        return;
    }
    if (st->sflags & S_BODY_END)
        body_end(st);
    request_start(c, r);
}

/* ---- nghttp2 callbacks -------------------------------------------------------- */

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *fh, void *ud)
{
    struct h2c *h = ud;
    if (fh->type != NGHTTP2_CONTINUATION)
        h->hdr_since = 0;
    if (fh->type == NGHTTP2_HEADERS) {
        h->hdr_since = px_loop->now;
        /* Client ids only grow (RFC 9113 5.1.1), and a closed stream takes
         * no HEADERS (5.1): nghttp2 1.52, which keeps no closed stream
         * without RFC 7540 priorities, would ignore both. */
        switch ((fh->stream_id & 1) ? h2msg_id_check(&h->ids, fh->stream_id) : H2MSG_ID_NEW) {
        case H2MSG_ID_NEVER:
            goaway(h, NGHTTP2_PROTOCOL_ERROR, "HEADERS on a stream id lower than an earlier one");
            break;
        case H2MSG_ID_OPENED:
            if (!nghttp2_session_find_stream(ng, fh->stream_id))
                goaway(h, NGHTTP2_STREAM_CLOSED, "HEADERS on a closed stream");
            break;
        default:
            break;   /* new; reset by us (frames in flight are ignored); too old */
        }
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2c *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2s *st = stream_new(h, f->hd.stream_id);
    nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, st);
    h2msg_req_release(&h->hd);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)ng;
    (void)flags;
    struct h2c *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;   /* trailers are dropped, as HTTP/1.1 chunked trailers are */
    h2msg_req_field(&h->hd, (const char *)name, nl, (const char *)value, vl);
    return 0;
}

/* Whether the stream's exchange still takes request body bytes. */
static bool wants_body(const struct h2s *st)
{
    return (st->sflags & S_EXCH) && st->c.state == CS_EXCH &&
           !(st->c.s->x.flags & (X_ABANDON_BODY | X_BODY_DONE));
}

static int park(struct h2c *h, struct h2s *st, const uint8_t *data, size_t len)
{
    h->resume = true;   /* the rest of the frame is processed by the next call */
    h->parked = st;
    h->park_p = data;
    h->park_n = len;
    return NGHTTP2_ERR_PAUSE;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    struct h2c *h = ud;
    struct h2s *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st && (st->sflags & S_HEAD))
        return park(h, st, data, len);   /* its head is not started yet: after it */
    if (!st || !wants_body(st)) {
        nghttp2_session_consume(ng, id, len);   /* nobody wants it: the window stays open */
        return 0;
    }
    if (!body_append(st, data, len))
        return park(h, st, data, len);
    stream_ready(st);
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2c *h = ud;
    struct h2s *st = f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id)
                                     : NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        h->hdr_since = 0;
        if (!st)
            break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            st->sflags |= S_HEAD;
            if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
                st->sflags |= S_BODY_END;
            /* the block is the connection's until the next one: into the
             * stream's window now */
            if (h2msg_req_is_connect(&h->hd))
                st->sflags |= S_CONNECT;
            else if (!compose_head(st, &h->hd))
                st->sflags |= S_BIG;
            h2msg_req_release(&h->hd);
            if (f->hd.stream_id > h->last_id)
                h->last_id = f->hd.stream_id;
            stream_ready(st);
        } else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {   /* trailers */
            body_end(st);
            stream_ready(st);
        }
        break;
    case NGHTTP2_DATA:
        if (!f->data.hd.length && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            !h2msg_bucket_take(&h->empties, px_loop->now, EMPTY_BURST, EMPTY_RATE))
            goaway(h, NGHTTP2_ENHANCE_YOUR_CALM, "too many empty frames");
        if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            if (st->sflags & S_HEAD)
                st->sflags |= S_BODY_END;   /* (appended when it starts) */
            else
                body_end(st);
            stream_ready(st);
        }
        break;
    case NGHTTP2_RST_STREAM:
        if (st)
            count_reset(STATS_H2_RESET_CLIENT);
        if (!h2msg_bucket_take(&h->resets, px_loop->now, RESET_BURST, RESET_RATE))
            goaway(h, NGHTTP2_ENHANCE_YOUR_CALM, "too many stream resets (rapid reset)");
        break;
    case NGHTTP2_PRIORITY:
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) &&
            !h2msg_bucket_take(&h->empties, px_loop->now, EMPTY_BURST, EMPTY_RATE))
            goaway(h, NGHTTP2_ENHANCE_YOUR_CALM, "too many control frames");
        break;
    case NGHTTP2_WINDOW_UPDATE:
        if (st)
            stream_ready(st);   /* its response may move on */
        else
            for (struct h2s *s = h->streams; s; s = s->next)
                if (s->sflags & S_EXCH)
                    stream_ready(s);
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct h2s *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
        /* The response is complete but the request body is not: the rest
         * is not wanted (RFC 9113 8.1). */
        if (st && !(st->sflags & S_BODY_END))
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    if (f->hd.type == NGHTTP2_RST_STREAM)
        h2msg_id_reset(&((struct h2c *)ud)->ids, f->hd.stream_id);
    if (f->hd.type == NGHTTP2_GOAWAY) {
        uint32_t code = f->goaway.error_code;
        stats->h2_goaways[code == NGHTTP2_NO_ERROR ? 0 : code == NGHTTP2_ENHANCE_YOUR_CALM ? 2 : 1]++;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM && f->rst_stream.error_code != NGHTTP2_NO_ERROR)
        count_reset(f->rst_stream.error_code == NGHTTP2_REFUSED_STREAM ? STATS_H2_RESET_REFUSED
                    : f->rst_stream.error_code == NGHTTP2_PROTOCOL_ERROR
                        ? STATS_H2_RESET_PROTOCOL
                        : STATS_H2_RESET_CANCEL);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)code;
    (void)ud;
    struct h2s *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st)
        return 0;
    st->sflags &= ~S_LIVE;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (st->sflags & S_EXCH)
        stream_ready(st);   /* cancelled: its exchange ends (client_abort) */
    else
        maybe_free(st);
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int err, void *ud)
{
    (void)ng;
    struct h2c *h = ud;
    if (log_enabled(LOG_INFO)) {
        struct peer_text pt;
        log_error("info", "HTTP/2 client %s: invalid %s frame on stream %d: %s",
                  access_peer(h->c, &pt),
                  f->hd.type == NGHTTP2_HEADERS ? "HEADERS" : f->hd.type == NGHTTP2_DATA ? "DATA"
                                                                                          : "a",
                  f->hd.stream_id, nghttp2_strerror(err));
    }
    return 0;
}

static int on_error(nghttp2_session *ng, int code, const char *msg, size_t len, void *ud)
{
    (void)ng;
    (void)code;
    struct h2c *h = ud;
    struct peer_text pt;
    log_error("info", "HTTP/2 client %s: %.*s", access_peer(h->c, &pt), (int)len, msg);
    return 0;
}

/* The stream's response body: bytes of the attempt's window, or the error
 * reply's text in `out`. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *dflags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)id;
    (void)ud;
    struct h2s *st = src->ptr;
    struct client *c = &st->c;
    if (!(st->sflags & S_EXCH)) {
        *dflags |= NGHTTP2_DATA_FLAG_EOF;
        st->sflags |= S_EOF;
        return 0;
    }
    struct session *s = c->s;
    struct exch *x = &s->x;
    if (c->state == CS_CLOSING) {
        uint32_t n = buf_len(&s->out) < len ? buf_len(&s->out) : (uint32_t)len;
        memcpy(buf, buf_head(&s->out), n);
        s->out.start += n;
        if (!buf_len(&s->out)) {
            *dflags |= NGHTTP2_DATA_FLAG_EOF;
            st->sflags |= S_EOF;
        }
        stream_ready(st);
        return n;
    }
    struct attempt *a = px_att(s);
    uint32_t avail = (x->flags & X_RESP_HEAD) ? x->resp_ready - a->in.start : 0;
    if (!avail) {
        if (x->flags & X_RESP_DONE) {
            *dflags |= NGHTTP2_DATA_FLAG_EOF;
            st->sflags |= S_EOF;
            stream_ready(st);
            return 0;
        }
        st->sflags |= S_DEFERRED;
        return NGHTTP2_ERR_DEFERRED;
    }
    uint32_t n = avail < len ? avail : (uint32_t)len;
    memcpy(buf, a->in.data + a->in.start, n);
    a->in.start += n;
    x->bytes_sent += n;
    x->clk.send_mark = px_loop->now;
    if (a->in.start == a->in.end)
        a->in.start = a->in.end = x->resp_ready = 0;
    if (n == avail && (x->flags & X_RESP_DONE)) {
        *dflags |= NGHTTP2_DATA_FLAG_EOF;
        st->sflags |= S_EOF;
    }
    stream_ready(st);
    return n;
}

/* ---- nghttp2's memory -------------------------------------------------------- *
 *
 * nghttp2 allocates a dozen small objects per stream (the stream, its
 * outbound frames, copies of header fields) and frees them when it closes:
 * they come from size-class free lists here, so that a steady load
 * allocates nothing (malloc and free were 3 % of a small request's CPU).
 * Each block has a 16-byte header naming its class (or, past the largest
 * class, its size); each list keeps at most MEM_KEEP_BYTES. */

#define MEM_CLASSES 6             /* 64, 128, ... 2048 bytes */
#if defined(__SANITIZE_ADDRESS__)
#define MEM_KEEP_BYTES 0u         /* AddressSanitizer sees every block freed */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEM_KEEP_BYTES 0u
#endif
#endif
#ifndef MEM_KEEP_BYTES
#define MEM_KEEP_BYTES (256u * 1024)
#endif

struct mem_hdr {
    uint32_t cls;                 /* MEM_CLASSES: a large block of `size` bytes */
    uint32_t unused;
    uint64_t size;
};

static void *mem_lists[MEM_CLASSES];
static unsigned mem_counts[MEM_CLASSES];

static size_t class_size(unsigned k)
{
    return (size_t)64 << k;
}

static void *mem_alloc(size_t n, void *ud)
{
    (void)ud;
    unsigned k = 0;
    while (k < MEM_CLASSES && n > class_size(k))
        k++;
    if (k < MEM_CLASSES && mem_lists[k]) {
        void *p = mem_lists[k];
        mem_lists[k] = *(void **)p;
        mem_counts[k]--;
        return p;
    }
    struct mem_hdr *h = malloc(sizeof *h + (k < MEM_CLASSES ? class_size(k) : n));
    if (!h)
        return NULL;
    h->cls = k;
    h->size = n;
    return h + 1;
}

static void mem_free(void *p, void *ud)
{
    (void)ud;
    if (!p)
        return;
    struct mem_hdr *h = (struct mem_hdr *)p - 1;
    unsigned k = h->cls;
    if (k < MEM_CLASSES && mem_counts[k] < MEM_KEEP_BYTES / class_size(k)) {
        *(void **)p = mem_lists[k];
        mem_lists[k] = p;
        mem_counts[k]++;
        return;
    }
    free(h);
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = mem_alloc(n * size, ud);
    if (p)
        memset(p, 0, n * size);
    return p;
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    if (!p)
        return mem_alloc(n, ud);
    struct mem_hdr *h = (struct mem_hdr *)p - 1;
    size_t have = h->cls < MEM_CLASSES ? class_size(h->cls) : h->size;
    if (n <= have && h->cls < MEM_CLASSES)
        return p;
    void *q = mem_alloc(n, ud);
    if (!q)
        return NULL;
    memcpy(q, p, have < n ? have : n);
    mem_free(p, ud);
    return q;
}

static nghttp2_mem mem = {NULL, mem_alloc, mem_free, mem_calloc, mem_realloc};

static void mem_drain(void)
{
    for (unsigned k = 0; k < MEM_CLASSES; k++) {
        while (mem_lists[k]) {
            void *p = mem_lists[k];
            mem_lists[k] = *(void **)p;
            free((struct mem_hdr *)p - 1);
        }
        mem_counts[k] = 0;
    }
}

/* ---- the connection ---------------------------------------------------------- */

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

static int setup_library(void)
{
    if (callbacks)
        return 0;
    if (nghttp2_session_callbacks_new(&callbacks) || nghttp2_option_new(&options))
        return -1;
    nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame);
    nghttp2_session_callbacks_set_error_callback2(callbacks, on_error);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_max_outbound_ack(options, 1000);
    nghttp2_option_set_max_settings(options, 32);
    nghttp2_option_set_stream_reset_rate_limit(options, 2 * RESET_BURST, 2 * RESET_RATE);
    nghttp2_option_set_max_continuations(options, 16);
    /* a response head may be as large as limits.max_response_header_size
     * allows (its HPACK block is never larger than its text, plus framing) */
    nghttp2_option_set_max_send_header_block_length(options, 2 * BUF_LARGE + 16384);
    return 0;
}

static void kick(struct loop_defer *d)
{
    struct h2c *h = container_of(d, struct h2c, kick);
    h->kicked = false;
    if (h->dead) {
        free(h);
        return;
    }
    if (h->dirty)   /* (a step that ran since has flushed it all) */
        client_pump(h->c);
}

/* Asks for a step of the connection at the end of this loop iteration:
 * frames submitted by several streams go out in one write. */
static void kick_later(struct h2c *h)
{
    h->dirty = true;
    if (h->kicked || h->dead)
        return;
    h->kicked = true;
    loop_defer(px_loop, &h->kick, kick);
}

static void on_conn_timer(struct timer *t)
{
    struct h2c *h = container_of(t, struct h2c, timer);
    struct client *c = h->c;
    uint64_t now = px_loop->now;
    struct peer_text pt;
    if (h->hdr_since && now >= h->hdr_since + ns_of(px_cfg->ms[TMO_HEADER])) {
        log_error("warn", "HTTP/2 client %s: header timeout after %llu ms within a header block",
                  access_peer(c, &pt), (unsigned long long)px_cfg->ms[TMO_HEADER]);
        client_close(c);
        return;
    }
    if (h->oend > h->ostart && !(c->conn.io.ready & LOOP_WRITE) &&
        now >= h->send_mark + ns_of(px_cfg->ms[TMO_SEND])) {
        log_error("warn", "HTTP/2 client %s: send timeout after %llu ms", access_peer(c, &pt),
                  (unsigned long long)px_cfg->ms[TMO_SEND]);
        client_close(c);
        return;
    }
    if (!h->nstreams && now >= h->idle_since + ns_of(px_cfg->ms[TMO_IDLE])) {
        goaway(h, NGHTTP2_NO_ERROR, NULL);
        h->fatal = true;   /* flush the GOAWAY, then close */
    }
    client_pump(c);
}

static void arm(struct h2c *h)
{
    struct client *c = h->c;
    uint64_t next = 0;
    if (h->hdr_since)
        next = h->hdr_since + ns_of(px_cfg->ms[TMO_HEADER]);
    if (h->oend > h->ostart && !(c->conn.io.ready & LOOP_WRITE)) {
        uint64_t t = h->send_mark + ns_of(px_cfg->ms[TMO_SEND]);
        next = !next || t < next ? t : next;
    }
    if (!h->nstreams) {
        uint64_t t = h->idle_since + ns_of(px_cfg->ms[TMO_IDLE]);
        next = !next || t < next ? t : next;
    }
    if (!next)
        loop_timer_stop(px_loop, &h->timer);
    else if (!h->timer.armed || next < h->timer.at)
        loop_timer_at(px_loop, &h->timer, next);
}

int h2_start(struct client *c)
{
    if (setup_library() < 0) {
        log_error("error", "HTTP/2: out of memory");
        client_close(c);
        return -1;
    }
    if (c->s)
        client_session_detach(c);
    struct h2c *h = xcalloc(1, sizeof *h);
    h->c = c;
    h->idle_since = px_loop->now;
    h->hd.limit = px_req_limits.max_head + 1024;
    timer_init(&h->timer, on_conn_timer);
    if (nghttp2_session_server_new3(&h->ng, callbacks, h, options, &mem)) {
        free(h);
        log_error("error", "HTTP/2: out of memory");
        client_close(c);
        return -1;
    }
    unsigned maxs = px_cfg->max_streams ? px_cfg->max_streams : 100;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, maxs},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, px_cfg->max_header_size + px_cfg->max_request_line},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},   /* (RFC 9113 deprecated them) */
    };
    nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    loop_timer_stop(px_loop, &c->timer);
    tls_keep_buffers(c->conn.ssl);
    c->h2 = h;
    c->state = CS_H2;
    stats->h2_conns++;
    return h2_conn_step(c);
}

/* Steps the streams that have news: start, cancel or advance. */
static void run_ready(struct h2c *h)
{
    while (h->ready) {
        struct h2s *st = h->ready;
        h->ready = st->next_ready;
        if (!h->ready)
            h->ready_tail = NULL;
        st->sflags &= ~S_READY;
        struct client *c = &st->c;
        if ((st->sflags & S_HEAD) && !(st->sflags & S_EXCH) && (st->sflags & S_LIVE)) {
            stream_start(st);
            if (c->state == CS_EXCH || c->state == CS_CLOSING)
                client_pump(c);
            continue;
        }
        if (!(st->sflags & S_EXCH)) {
            maybe_free(st);
            continue;
        }
        if (!(st->sflags & (S_LIVE | S_EOF))) {   /* reset by the client */
            px_fault(c, FAULT_CLIENT_GONE, 0);
            exchange_on_fault(c);
            continue;
        }
        client_pump(c);
    }
}

/* Writes queued frames; asks nghttp2 for more while there is room. 0, or -1
 * when the socket failed. */
static int flush(struct h2c *h)
{
    struct client *c = h->c;
    h->dirty = false;   /* what was submitted so far goes out now (or at writability) */
    for (;;) {
        if (h->oend > h->ostart) {
            if (!(c->conn.io.ready & LOOP_WRITE))
                return 0;
            struct iovec iov = {h->out + h->ostart, h->oend - h->ostart};
            ssize_t n = conn_writev(&c->conn, &iov, 1);
            if (n == -EAGAIN)
                return 0;
            if (n < 0)
                return -1;
            h->ostart += (uint32_t)n;
            h->send_mark = px_loop->now;
            if (h->ostart == h->oend)
                h->ostart = h->oend = 0;
            continue;
        }
        if (h->fatal && !nghttp2_session_want_write(h->ng))
            return 0;
        while (h->oend - h->ostart < OUT_HIGH) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(h->ng, &d);
            if (n < 0) {
                log_error("warn", "HTTP/2: sending frames failed: %s", nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0)
                break;
            out_append(h, d, (size_t)n);
        }
        if (h->oend == h->ostart)
            return 0;
        h->send_mark = px_loop->now;   /* output waits from now */
    }
}

/* Reads and feeds nghttp2 until the socket is drained, input is parked, or
 * the output backs up. 0, or -1 when the connection must close. */
static int feed(struct h2c *h)
{
    struct client *c = h->c;
    for (;;) {
        if (h->parked && !unpark(h))
            return 0;
        if (buf_len(&c->in) || h->resume) {
            /* (after a PAUSE, a call even without input ends the frame: its
             * END_STREAM, a content-length check) */
            h->resume = false;
            static const uint8_t none[1];
            ssize_t r = nghttp2_session_mem_recv(
                h->ng, c->in.data ? (const uint8_t *)buf_head(&c->in) : none, buf_len(&c->in));
            if (r < 0) {
                struct peer_text pt;
                log_error("info", "HTTP/2 client %s: %s: closing the connection",
                          access_peer(c, &pt), nghttp2_strerror((int)r));
                h->fatal = true;
                return 0;
            }
            c->in.start += (uint32_t)r;
            run_ready(h);
            if (h->parked)
                return 0;   /* (the input stays where the parked chunk points) */
            if (!buf_len(&c->in))
                c->in.start = c->in.end = 0;
        }
        if (!(c->conn.io.ready & LOOP_READ) || h->oend - h->ostart >= OUT_HIGH || h->fatal)
            return 0;
        buf_reserve(&c->in, BUF_SMALL);
        if (!buf_room(&c->in))
            buf_compact(&c->in);
        ssize_t n = conn_read(&c->conn, buf_tail(&c->in), buf_room(&c->in));
        if (n > 0) {
            c->in.end += (uint32_t)n;
            continue;
        }
        if (n == -EAGAIN)
            return 0;
        return -1;   /* the client closed or reset the connection */
    }
}

int h2_conn_step(struct client *c)
{
    struct h2c *h = c->h2;
    if (feed(h) < 0) {
        client_close(c);
        return -1;
    }
    for (int round = 0; round < 16; round++) {
        if (flush(h) < 0) {
            client_close(c);
            return -1;
        }
        if (!h->ready)
            break;
        run_ready(h);
    }
    if (c->state == CS_CLOSED)
        return -1;
    bool quiet = h->oend == h->ostart;
    if (quiet && (h->fatal || (h->goaway && !h->nstreams) ||
                  (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)))) {
        client_close(c);
        return -1;
    }
    if (!buf_len(&c->in) && !h->parked)
        buf_release(&c->in);
    arm(h);
    return 0;
}

void h2_conn_close(struct client *c)
{
    struct h2c *h = c->h2;
    if (!h)
        return;
    h->goaway = true;
    /* every stream's exchange ends: the client is gone */
    for (struct h2s *st = h->streams; st; st = st->next)
        st->sflags &= ~S_LIVE;
    while (h->streams) {
        struct h2s *st = h->streams;
        if (st->sflags & S_EXCH) {
            px_fault(&st->c, FAULT_CLIENT_GONE, 0);
            exchange_on_fault(&st->c);
            if (st->sflags & S_EXCH)
                h2_close(&st->c);
        }
        maybe_free(st);
    }
    h->ready = h->ready_tail = NULL;
    nghttp2_session_del(h->ng);
    h->ng = NULL;
    h2msg_req_release(&h->hd);
    free(h->out);
    loop_timer_stop(px_loop, &h->timer);
    c->h2 = NULL;
    if (h->kicked) {
        h->dead = true;   /* the kick frees it */
        return;
    }
    free(h);
}

void h2_continue(struct client *c)
{
    struct h2s *st = stream_of(c);
    c->s->x.flags |= X_CONTINUE;
    if (!st->h || !(st->sflags & S_LIVE))
        return;
    nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_headers(st->h->ng, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL);
    kick_later(st->h);
}

void h2_drain(struct client *c)
{
    struct h2c *h = c->h2;
    if (h)
        goaway(h, NGHTTP2_NO_ERROR, NULL);
}

/* ---- a stream's side of the client <-> exchange interface ------------------- */

int h2_recv_body(struct client *c)
{
    struct h2s *st = stream_of(c);
    struct h2c *h = st->h;
    if (!h)
        return AT_IDLE;
    if (h->parked == st && unpark(h))
        kick_later(h);   /* the connection's input goes on */
    give_window(st);
    if (c->s->x.flags & (X_BODY_DONE | X_ABANDON_BODY))
        return AT_IDLE;
    if (c->s->x.body_ready == c->in.end)
        return AT_IDLE;
    return client_request_body(c) == AT_FAILED ? AT_FAILED : 1;
}

int h2_send(struct client *c)
{
    struct h2s *st = stream_of(c);
    if (st->h && (st->sflags & S_DEFERRED) && (st->sflags & S_LIVE) &&
        (client_pending(c) || (c->s->x.flags & X_RESP_DONE))) {
        st->sflags &= ~S_DEFERRED;
        nghttp2_session_resume_data(st->h->ng, st->id);
        kick_later(st->h);
    }
    return 0;
}

bool h2_writable(const struct client *c)
{
    const struct h2s *st = container_of(c, const struct h2s, c);
    const struct h2c *h = st->h;
    if (!h || !(st->sflags & S_LIVE))
        return true;
    if (h->oend - h->ostart >= OUT_HIGH && !(h->c->conn.io.ready & LOOP_WRITE))
        return false;
    return nghttp2_session_get_stream_remote_window_size(h->ng, st->id) > 0 &&
           nghttp2_session_get_remote_window_size(h->ng) > 0;
}

/* The response head as HTTP/2 fields: the HTTP/1.1 head the client would
 * get (fwd_response_head: hop-by-hop fields out, one Content-Length), its
 * names in lower case, and no field HTTP/2 forbids. */
static int submit_head(struct h2s *st, const struct http_msg *m, const struct http_info *info,
                       bool final, bool body)
{
    static char scratch[BUF_LARGE + 1024];
    static struct fwd_field ff[HTTP_MAX_FIELDS_CAP + 4];
    static nghttp2_nv nv[HTTP_MAX_FIELDS_CAP + 5];
    struct fwd_resp fr = {.m = m, .info = info};
    int n = fwd_response_fields(&fr, ff, sizeof ff / sizeof ff[0], scratch, sizeof scratch);
    if (n < 0)
        return -1;
    char status[4] = {(char)('0' + m->status / 100 % 10), (char)('0' + m->status / 10 % 10),
                      (char)('0' + m->status % 10), 0};
    size_t k = 0, bytes = 12;
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (int i = 0; i < n; i++, k++) {
        nv[k] = (nghttp2_nv){(uint8_t *)ff[i].name, (uint8_t *)ff[i].value, ff[i].name_len,
                             ff[i].value_len, NGHTTP2_NV_FLAG_NONE};
        bytes += ff[i].name_len + ff[i].value_len + 4;
    }
    struct h2c *h = st->h;
    int r;
    if (!final) {
        r = nghttp2_submit_headers(h->ng, NGHTTP2_FLAG_NONE, st->id, NULL, nv, k, NULL);
    } else {
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
        r = nghttp2_submit_response(h->ng, st->id, nv, k, body ? &prd : NULL);
        st->sflags |= S_RESP;
        if (!body)
            st->sflags |= S_EOF;
    }
    st->c.s->x.bytes_sent += bytes;   /* (the head's size as text: HPACK's is not known) */
    kick_later(h);
    return r == 0 ? 0 : -1;
}

int h2_interim_head(struct client *c, const struct http_msg *m, uint32_t len)
{
    (void)len;
    struct h2s *st = stream_of(c);
    if (!st->h || !(st->sflags & S_LIVE) || m->status == 101)
        return 0;
    return submit_head(st, m, NULL, false, false);
}

int h2_response_head(struct client *c, const struct http_msg *m,
                     const struct http_info *info, uint32_t len)
{
    (void)len;
    struct h2s *st = stream_of(c);
    struct exch *x = &c->s->x;
    if (info->framing == HTTP_BODY_CHUNKED)
        x->flags |= X_DECHUNK;   /* DATA frames carry the body */
    x->resp_chunk.keep_framing = !(x->flags & X_DECHUNK);
    bool body = !(info->framing == HTTP_BODY_NONE ||
                  (info->framing == HTTP_BODY_LENGTH && info->length == 0));
    if (!st->h || !(st->sflags & S_LIVE))
        return 0;   /* (the stream is gone: the exchange ends on its next step) */
    if (submit_head(st, m, info, true, body) < 0)
        return -1;
    x->flags |= X_FINAL_SENT;   /* the response is committed: an error now is a reset */
    return 0;
}

void h2_error(struct client *c, int status, const char *body, int body_len)
{
    struct h2s *st = stream_of(c);
    struct session *s = c->s;
    buf_reserve(&s->out, BUF_SMALL);
    s->out.start = s->out.end = 0;
    memcpy(s->out.data, body, (size_t)body_len);
    s->out.end = (uint32_t)body_len;
    if (!st->h || !(st->sflags & S_LIVE) || (st->sflags & S_RESP))
        return;
    char sv[4], lv[12];
    snprintf(sv, sizeof sv, "%03d", status);
    int ll = snprintf(lv, sizeof lv, "%d", body_len);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)sv, 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-length", (uint8_t *)lv, 14, (size_t)ll, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    nghttp2_submit_response(st->h->ng, st->id, nv, 3, body_len ? &prd : NULL);
    st->sflags |= S_RESP;
    if (!body_len)
        st->sflags |= S_EOF;
    s->x.flags |= X_FINAL_SENT;
    kick_later(st->h);
}

int h2_closing_step(struct client *c)
{
    struct h2s *st = stream_of(c);
    if (st->h && (st->sflags & S_LIVE) && !(st->sflags & S_EOF))
        return 0;   /* the reply is still going out */
    stream_end_exchange(st);
    maybe_free(st);
    return -1;
}

int h2_next(struct client *c)
{
    struct h2s *st = stream_of(c);
    struct h2c *h = st->h;
    stream_end_exchange(st);
    if (h && (st->sflags & S_LIVE) && !(st->sflags & S_EOF)) {
        /* the last bytes were taken before the upstream's end was known:
         * the data source now gives END_STREAM */
        if (st->sflags & S_DEFERRED) {
            st->sflags &= ~S_DEFERRED;
            nghttp2_session_resume_data(h->ng, st->id);
        }
        kick_later(h);
    }
    maybe_free(st);
    return -1;
}

void h2_close(struct client *c)
{
    struct h2s *st = stream_of(c);
    struct h2c *h = st->h;
    if (c->state == CS_CLOSED)
        return;
    exchange_drop_attempts(c);
    stream_end_exchange(st);
    if (h && h->ng && (st->sflags & S_LIVE)) {
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        kick_later(h);
    }
    maybe_free(st);
}

void h2_free_spares(void)
{
    while (free_streams) {
        struct h2s *st = free_streams;
        free_streams = st->next;
        free(st);
    }
    nfree_streams = 0;
    mem_drain();
    if (callbacks) {
        nghttp2_session_callbacks_del(callbacks);
        nghttp2_option_del(options);
        callbacks = NULL;
        options = NULL;
    }
}
