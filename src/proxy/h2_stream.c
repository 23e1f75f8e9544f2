/* h2_stream.c -- HTTP/2 to clients: a stream, its request head and body,
 * its response through its data source, its end, and its side of the
 * client <-> exchange interface (see h2.h; the connection is in h2.c). */
#define _GNU_SOURCE
#include "h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "access.h"
#include "buf.h"
#include "client.h"
#include "exchange.h"
#include "fwd.h"
#include "grpc.h"
#include "h2msg.h"
#include "http.h"
#include "log.h"
#include "observe.h"
#include "request.h"
#include "stats.h"

#include "h2_internal.h"

#define STREAMS_KEEP 1024         /* spare stream structs kept after a burst */

static struct h2s *free_streams;
static unsigned nfree_streams;

struct h2s *h2_stream_new(struct h2c *h, int32_t id)
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
    c->cflags = (uint16_t)((pc->cflags & (CF_TRUSTED | CF_UNDERSCORES | CF_TLS | CF_TRUST_RID)) |
                           CF_STREAM);
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
void h2_stream_free(struct h2s *st)
{
    if (st->sflags & (S_LIVE | S_EXCH | S_FREEING))
        return;
    st->sflags |= S_FREEING;
    buf_release(&st->c.in);
    free(st->trailers);
    st->trailers = NULL;   /* (a head composed for a stream reset before it started) */
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
            h2_kick_later(h);   /* its input goes on */
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

void h2_stream_ready(struct h2s *st)
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
        h2_kick_later(st->h);
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
    h2_kick_later(h);
}

/* Appends a DATA payload to the stream's window (chunked: into the open
 * chunk, whose size line is rewritten). false: no room now. */
bool h2_stream_append(struct h2s *st, const uint8_t *p, size_t n)
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

void h2_stream_body_end(struct h2s *st)
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

/* Writes the stream's request head as HTTP/1.1 text into its `in`. false:
 * it does not fit (431). */
bool h2_stream_compose(struct h2s *st, const struct h2msg_req *r)
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
void h2_stream_start(struct h2s *st)
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
        h2_stream_body_end(st);
    request_start(c, r);
}

/* Whether the stream's exchange still takes request body bytes. */
bool h2_stream_wants_body(const struct h2s *st)
{
    return (st->sflags & S_EXCH) && st->c.state == CS_EXCH &&
           !(st->c.s->x.flags & (X_ABANDON_BODY | X_BODY_DONE));
}

/* Sends the trailer lines kept for the stream (HTTP/2 upstream trailers, or
 * a gRPC status of our own) as a HEADERS frame that ends it. */
static void submit_trailers(struct h2s *st)
{
    static nghttp2_nv nv[64];
    size_t k = 0;
    char *p = st->trailers, *end = st->trailers + st->tlen;
    while (p < end && k < sizeof nv / sizeof nv[0]) {
        char *eol = memchr(p, '\r', (size_t)(end - p)), *colon;
        if (!eol || !(colon = memchr(p, ':', (size_t)(eol - p))))
            break;
        char *v = colon + 1;
        while (v < eol && *v == ' ')
            v++;
        nv[k++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
                               (size_t)(eol - v), NGHTTP2_NV_FLAG_NONE};
        p = eol + 2;
    }
    nghttp2_submit_trailer(st->h->ng, st->id, nv, k);
}

/* The data source's end: END_STREAM, or the trailers that carry it. */
static ssize_t body_eof(struct h2s *st, uint32_t *dflags, ssize_t n)
{
    *dflags |= NGHTTP2_DATA_FLAG_EOF;
    st->sflags |= S_EOF;
    if (st->trailers && st->h) {
        *dflags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        submit_trailers(st);
    }
    h2_stream_ready(st);
    return n;
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
    if (!(st->sflags & S_EXCH))
        return body_eof(st, dflags, 0);
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
        h2_stream_ready(st);
        return n;
    }
    struct attempt *a = px_att(s);
    uint32_t avail = (x->flags & X_RESP_HEAD) ? x->resp_ready - a->in.start : 0;
    if (!avail) {
        if (x->flags & X_RESP_DONE)
            return body_eof(st, dflags, 0);
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
    if (n == avail && (x->flags & X_RESP_DONE))
        return body_eof(st, dflags, n);
    h2_stream_ready(st);
    return n;
}

void h2_trailers(struct client *c, const char *text, uint32_t len)
{
    struct h2s *st = h2_stream_of(c);
    if (!len || st->trailers)
        return;
    st->trailers = xmalloc(len);
    memcpy(st->trailers, text, len);
    st->tlen = len;
}

/* A gRPC call ended by hourglass before any response: a Trailers-Only
 * response (gRPC's PROTOCOL-HTTP2.md), HTTP status 200 and the call's
 * status in grpc-status, the reason in grpc-message. */
void h2_grpc_error(struct client *c, int gs, const char *message)
{
    struct h2s *st = h2_stream_of(c);
    struct session *s = c->s;
    s->out.start = s->out.end = 0;
    if (!st->h || !(st->sflags & S_LIVE) || (st->sflags & S_RESP))
        return;
    char sv[12], msg[256];
    int sl = snprintf(sv, sizeof sv, "%d", gs);
    size_t ml = grpc_message_encode(message, msg, sizeof msg);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-status", (uint8_t *)sv, 11, (size_t)sl, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, ml, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"x-request-id", (uint8_t *)obs_rid(c), 12, strlen(obs_rid(c)),
         NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_submit_response(st->h->ng, st->id, nv, sizeof nv / sizeof nv[0], NULL);
    st->sflags |= S_RESP | S_EOF;
    s->x.flags |= X_FINAL_SENT;
    s->x.bytes_sent += 64 + ml;
    h2_kick_later(st->h);
}

void h2_continue(struct client *c)
{
    struct h2s *st = h2_stream_of(c);
    c->s->x.flags |= X_CONTINUE;
    if (!st->h || !(st->sflags & S_LIVE))
        return;
    nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_headers(st->h->ng, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL);
    h2_kick_later(st->h);
}

int h2_recv_body(struct client *c)
{
    struct h2s *st = h2_stream_of(c);
    struct h2c *h = st->h;
    if (!h)
        return AT_IDLE;
    if (h->parked == st && h2_unpark(h))
        h2_kick_later(h);   /* the connection's input goes on */
    give_window(st);
    if (c->s->x.flags & (X_BODY_DONE | X_ABANDON_BODY))
        return AT_IDLE;
    if (c->s->x.body_ready == c->in.end)
        return AT_IDLE;
    return client_request_body(c) == AT_FAILED ? AT_FAILED : 1;
}

int h2_send(struct client *c)
{
    struct h2s *st = h2_stream_of(c);
    if (st->h && (st->sflags & S_DEFERRED) && (st->sflags & S_LIVE) &&
        (client_pending(c) || (c->s->x.flags & X_RESP_DONE))) {
        st->sflags &= ~S_DEFERRED;
        nghttp2_session_resume_data(st->h->ng, st->id);
        h2_kick_later(st->h);
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

/* Fields whose value is new in every response (the request ID, the
 * proxy's timings) are sent never indexed: entering them in the HPACK table
 * would only evict the fields that do repeat (server, content-type...) and
 * cost a table insertion and search per response. */
static uint8_t unique_value(const struct fwd_field *f)
{
    if ((f->name_len == 12 && !strncasecmp(f->name, "x-request-id", 12)) ||
        (f->name_len == 13 && !strncasecmp(f->name, "server-timing", 13)))
        return NGHTTP2_NV_FLAG_NO_INDEX;
    return NGHTTP2_NV_FLAG_NONE;
}

/* The response head as HTTP/2 fields: the HTTP/1.1 head the client would
 * get (fwd_response_head: hop-by-hop fields out, one Content-Length), its
 * names in lower case, and no field HTTP/2 forbids. */
static int submit_head(struct h2s *st, const struct http_msg *m, const struct http_info *info,
                       bool final, bool body)
{
    static char scratch[BUF_LARGE + 1024];
    static struct fwd_field ff[HTTP_MAX_FIELDS_CAP + 6];
    static nghttp2_nv nv[HTTP_MAX_FIELDS_CAP + 7];
    struct fwd_resp fr = {.m = m, .info = info};
    char timing[160];
    if (final)
        obs_response_fields(&st->c, &fr, timing, sizeof timing);   /* X-Request-Id, Server-Timing */
    int n = fwd_response_fields(&fr, ff, sizeof ff / sizeof ff[0], scratch, sizeof scratch);
    if (n < 0)
        return -1;
    char status[4] = {(char)('0' + m->status / 100 % 10), (char)('0' + m->status / 10 % 10),
                      (char)('0' + m->status % 10), 0};
    size_t k = 0, bytes = 12;
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (int i = 0; i < n; i++, k++) {
        nv[k] = (nghttp2_nv){(uint8_t *)ff[i].name, (uint8_t *)ff[i].value, ff[i].name_len,
                             ff[i].value_len, unique_value(&ff[i])};
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
    h2_kick_later(h);
    return r == 0 ? 0 : -1;
}

int h2_interim_head(struct client *c, const struct http_msg *m, uint32_t len)
{
    (void)len;
    struct h2s *st = h2_stream_of(c);
    if (!st->h || !(st->sflags & S_LIVE) || m->status == 101)
        return 0;
    return submit_head(st, m, NULL, false, false);
}

int h2_response_head(struct client *c, const struct http_msg *m,
                     const struct http_info *info, uint32_t len)
{
    (void)len;
    struct h2s *st = h2_stream_of(c);
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
    struct h2s *st = h2_stream_of(c);
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
        {(uint8_t *)"x-request-id", (uint8_t *)obs_rid(c), 12, strlen(obs_rid(c)),
         NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    nghttp2_submit_response(st->h->ng, st->id, nv, sizeof nv / sizeof nv[0], body_len ? &prd : NULL);
    st->sflags |= S_RESP;
    if (!body_len)
        st->sflags |= S_EOF;
    s->x.flags |= X_FINAL_SENT;
    h2_kick_later(st->h);
}

int h2_closing_step(struct client *c)
{
    struct h2s *st = h2_stream_of(c);
    if (st->h && (st->sflags & S_LIVE) && !(st->sflags & S_EOF))
        return 0;   /* the reply is still going out */
    stream_end_exchange(st);
    h2_stream_free(st);
    return -1;
}

int h2_next(struct client *c)
{
    struct h2s *st = h2_stream_of(c);
    struct h2c *h = st->h;
    stream_end_exchange(st);
    if (h && (st->sflags & S_LIVE) && !(st->sflags & S_EOF)) {
        /* the last bytes were taken before the upstream's end was known:
         * the data source now gives END_STREAM */
        if (st->sflags & S_DEFERRED) {
            st->sflags &= ~S_DEFERRED;
            nghttp2_session_resume_data(h->ng, st->id);
        }
        h2_kick_later(h);
    }
    h2_stream_free(st);
    return -1;
}

void h2_close(struct client *c)
{
    struct h2s *st = h2_stream_of(c);
    struct h2c *h = st->h;
    if (c->state == CS_CLOSED)
        return;
    exchange_drop_attempts(c);
    bool live = h && h->ng && (st->sflags & S_LIVE);
    /* A gRPC call cut after its response head ends with its status in
     * trailers (after the bytes already given), never a bare reset. */
    bool grpc = live && c->s && (c->s->x.req & R_GRPC) && (st->sflags & S_RESP) &&
                !(st->sflags & S_EOF);
    if (grpc) {
        char msg[160], text[256];
        grpc_message_encode(c->s->x.end_reason ? c->s->x.end_reason : "cancelled by hourglass",
                            msg, sizeof msg);
        int n = snprintf(text, sizeof text, "grpc-status: %d\r\ngrpc-message: %s\r\n",
                         c->s->x.grpc_status >= 0 ? c->s->x.grpc_status : GRPC_UNKNOWN, msg);
        free(st->trailers);
        st->trailers = NULL;
        st->tlen = 0;
        h2_trailers(c, text, (uint32_t)n);
    }
    stream_end_exchange(st);
    if (grpc) {
        if (st->sflags & S_DEFERRED) {
            st->sflags &= ~S_DEFERRED;
            nghttp2_session_resume_data(h->ng, st->id);
        }
        h2_kick_later(h);
    } else if (live) {
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        h2_kick_later(h);
    }
    h2_stream_free(st);
}

void h2_stream_spares(void)
{
    while (free_streams) {
        struct h2s *st = free_streams;
        free_streams = st->next;
        free(st);
    }
    nfree_streams = 0;
}
