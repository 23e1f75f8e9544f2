/* h2.c -- HTTP/2 to clients: the connection, its nghttp2 session driven by our
 * loop, its callbacks, clocks and flood limits (see h2.h; the streams are in
 * h2_stream.c). */
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
#include "evict.h"
#include "exchange.h"
#include "h2msg.h"
#include "log.h"
#include "stats.h"
#include "tls.h"

#include "h2_internal.h"

/* A client that resets more streams than this (a burst, then so many per
 * second) is attacking (CVE-2023-44487, Rapid Reset): GOAWAY. */
#define RESET_BURST 200u
#define RESET_RATE 100u
/* Frames that move nothing (empty DATA, PRIORITY, SETTINGS, PING): a burst,
 * then so many per second (the empty-frame floods of CVE-2019-9518...). */
#define EMPTY_BURST 1000u
#define EMPTY_RATE 200u

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof PREFACE - 1)

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
    h2_kick_later(h);
}

/* A parked DATA chunk (PAUSE) goes into its stream when there is room. */
bool h2_unpark(struct h2c *h)
{
    struct h2s *st = h->parked;
    if (!st)
        return true;
    if (st->sflags & S_HEAD)
        return false;   /* not started yet */
    if (h2_stream_wants_body(st) && !h2_stream_append(st, h->park_p, h->park_n))
        return false;
    if (!h2_stream_wants_body(st))
        nghttp2_session_consume(h->ng, st->id, h->park_n);
    h->parked = NULL;
    h2_stream_ready(st);
    return true;
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
    struct h2s *st = h2_stream_new(h, f->hd.stream_id);
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
    if (!st || !h2_stream_wants_body(st)) {
        nghttp2_session_consume(ng, id, len);   /* nobody wants it: the window stays open */
        return 0;
    }
    if (!h2_stream_append(st, data, len))
        return park(h, st, data, len);
    h2_stream_ready(st);
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
            else if (!h2_stream_compose(st, &h->hd))
                st->sflags |= S_BIG;
            h2msg_req_release(&h->hd);
            if (f->hd.stream_id > h->last_id)
                h->last_id = f->hd.stream_id;
            h2_stream_ready(st);
        } else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {   /* trailers */
            h2_stream_body_end(st);
            h2_stream_ready(st);
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
                h2_stream_body_end(st);
            h2_stream_ready(st);
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
            h2_stream_ready(st);   /* its response may move on */
        else
            for (struct h2s *s = h->streams; s; s = s->next)
                if (s->sflags & S_EXCH)
                    h2_stream_ready(s);
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
        h2_stream_ready(st);   /* cancelled: its exchange ends (client_abort) */
    else
        h2_stream_free(st);
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
    /* Frames submitted since the last flush, or input that a PAUSE left
     * half-read (an unparked DATA frame's END_STREAM, which no further input
     * may come to deliver): a step. Else a step that ran since did it all. */
    if (h->dirty || (h->resume && !h->parked))
        client_pump(h->c);
}

/* Asks for a step of the connection at the end of this loop iteration:
 * frames submitted by several streams go out in one write. */
void h2_kick_later(struct h2c *h)
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
    if (h->hdr_since && now >= h->hdr_since + ns_of(evict_header_ms())) {
        log_error("warn", "HTTP/2 client %s: header timeout after %llu ms within a header block",
                  access_peer(c, &pt), (unsigned long long)evict_header_ms());
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
    evict_track(c);   /* (idle: no stream open) */
    if (h->hdr_since)
        next = h->hdr_since + ns_of(evict_header_ms());
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
            h2_stream_start(st);
            if (c->state == CS_EXCH || c->state == CS_CLOSING)
                client_pump(c);
            continue;
        }
        if (!(st->sflags & S_EXCH)) {
            h2_stream_free(st);
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
        if (h->parked && !h2_unpark(h))
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
        h2_stream_free(st);
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

bool h2_quiet(const struct client *c)
{
    const struct h2c *h = c->h2;
    return h && !h->nstreams && !h->hdr_since;
}

void h2_evict(struct client *c)
{
    struct h2c *h = c->h2;
    if (h) {
        goaway(h, NGHTTP2_NO_ERROR, NULL);
        (void)flush(h);   /* (best effort: the slot is needed now) */
    }
    client_close(c);
}

void h2_drain(struct client *c)
{
    struct h2c *h = c->h2;
    if (h)
        goaway(h, NGHTTP2_NO_ERROR, NULL);
}

void h2_free_spares(void)
{
    h2_stream_spares();
    mem_drain();
    if (callbacks) {
        nghttp2_session_callbacks_del(callbacks);
        nghttp2_option_del(options);
        callbacks = NULL;
        options = NULL;
    }
}
