/* h2up.c -- HTTP/2 to upstream servers: shared connections, a stream per
 * attempt, HTTP/1.1 text on the attempt's side (see h2up.h). */
#define _GNU_SOURCE
#include "h2up.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "conn.h"
#include "fwd.h"
#include "http.h"
#include "log.h"
#include "stats.h"
#include "tls.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

#define STREAM_WINDOW (64u * 1024)   /* response payload a stream holds unread */
#define CONN_WINDOW (4u << 20)       /* ... all streams of a connection together */
#define OUT_HIGH (64u * 1024)        /* frames queued for the socket: stop producing */
#define ASSUMED_STREAMS 100u         /* a connection's streams before its SETTINGS */
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

static struct loop *loop;
static nghttp2_session_callbacks *cbs;
static nghttp2_option *opt;
static struct h2u_stream *ready_head, *ready_tail;
static struct h2u_stream *free_streams;
static unsigned nconns, nstreams;
static struct http_msg scratch;
static char fail_why[160];        /* the last failed opening's reason (EPROTO) */

static void conn_step(struct h2u_conn *hc);
static void conn_fail(struct h2u_conn *hc, int err, const char *why);

static inline struct h2u_stream *stream_of(const struct upconn *up)
{
    return container_of(up, struct h2u_stream, up);
}

/* ---- streams with news: their owners are called outside nghttp2 ------- */

static void ready(struct h2u_stream *st, uint32_t bits)
{
    st->up.conn.io.ready |= bits;
    if ((st->flags & (U_READY | U_ENDED)))
        return;
    st->flags |= U_READY;
    st->next_ready = NULL;
    if (ready_tail)
        ready_tail->next_ready = st;
    else
        ready_head = st;
    ready_tail = st;
}

static void unready(struct h2u_stream *st)
{
    if (!(st->flags & U_READY))
        return;
    struct h2u_stream **pp = &ready_head, *prev = NULL;
    while (*pp && *pp != st) {
        prev = *pp;
        pp = &(*pp)->next_ready;
    }
    if (*pp)
        *pp = st->next_ready;
    if (ready_tail == st)
        ready_tail = prev;
    st->flags &= ~U_READY;
}

/* Calls the owners of the streams with news, oldest first. An owner may end
 * its stream (or others) meanwhile: those leave the list. */
static void run_ready(void)
{
    struct h2u_stream *st;
    while ((st = ready_head)) {
        ready_head = st->next_ready;
        if (!ready_head)
            ready_tail = NULL;
        st->flags &= ~U_READY;
        if (!(st->flags & U_ENDED) && st->up.owner)
            st->up.on_event(&st->up, st->up.conn.io.ready);
    }
}

/* ---- the response as HTTP/1.1 text ------------------------------------- */

static bool r_append(struct h2u_stream *st, const void *p, size_t n)
{
    if (st->rcap - st->rend < n && st->rstart) {
        memmove(st->r, st->r + st->rstart, st->rend - st->rstart);
        st->rend -= st->rstart;
        st->rstart = 0;
    }
    if (st->rcap - st->rend < n) {
        size_t want = st->rcap ? st->rcap : 4096;
        while (want - st->rend < n)
            want *= 2;
        if (want > RESP_MAX)
            return false;
        char *nr = realloc(st->r, want);
        if (!nr)
            return false;
        st->r = nr;
        st->rcap = (uint32_t)want;
    }
    memcpy(st->r + st->rend, p, n);
    st->rend += (uint32_t)n;
    return true;
}

static bool t_append(struct h2u_stream *st, const uint8_t *name, size_t nl, const uint8_t *value,
                     size_t vl)
{
    size_t need = nl + vl + 4;
    if (st->tlen + need > 16384)
        return false;
    if (st->tcap - st->tlen < need) {
        uint32_t want = st->tcap ? st->tcap * 2 : 256;
        while (want - st->tlen < need)
            want *= 2;
        char *nt = realloc(st->trailers, want);
        if (!nt)
            return false;
        st->trailers = nt;
        st->tcap = want;
    }
    char *p = st->trailers + st->tlen;
    memcpy(p, name, nl);
    p[nl] = ':';
    p[nl + 1] = ' ';
    memcpy(p + nl + 2, value, vl);
    p[nl + 2 + vl] = '\r';
    p[nl + 3 + vl] = '\n';
    st->tlen += (uint32_t)need;
    return true;
}

static void stream_fail(struct h2u_stream *st, int err, bool unprocessed)
{
    if (st->flags & (U_FAILED | U_DONE))
        return;
    st->flags |= U_FAILED | (unprocessed ? U_UNPROC : 0);
    st->err = err;
    ready(st, LOOP_READ | LOOP_WRITE);
}

/* ---- nghttp2's callbacks: they only record -------------------------------- */

static struct h2u_stream *stream_by_id(nghttp2_session *ng, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(ng, id) : NULL;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    struct h2u_stream *st = stream_by_id(ng, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (st->flags & U_FINAL)   /* trailers */
        return t_append(st, name, nl, value, vl) ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (nl == 7 && !memcmp(name, ":status", 7)) {
        char line[64];
        int status = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            status = status * 10 + (value[i] - '0');
        st->status = status;
        int n = snprintf(line, sizeof line, "HTTP/1.1 %03d %s\r\n", status, http_reason(status));
        return r_append(st, line, (size_t)n) ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (nl && name[0] == ':')
        return 0;
    if (nl == 14 && !memcmp(name, "content-length", 14))
        st->has_length = true;
    if (!r_append(st, name, nl) || !r_append(st, ": ", 2) || !r_append(st, value, vl) ||
        !r_append(st, "\r\n", 2))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* The end of a response header block: the head is whole. */
static void head_end(struct h2u_stream *st, bool end_stream)
{
    if (st->status < 200) {   /* an interim head: the final one follows */
        r_append(st, "\r\n", 2);
        st->has_length = false;
        ready(st, LOOP_READ);
        return;
    }
    bool bodyless = st->status == 204 || st->status == 304 || (st->flags & U_HEAD_REQ);
    if (!st->has_length && !bodyless) {
        if (end_stream) {
            r_append(st, "content-length: 0\r\n", 19);
        } else {
            r_append(st, "transfer-encoding: chunked\r\n", 28);
            st->flags |= U_CHUNKED;
        }
    }
    r_append(st, "\r\n", 2);
    st->flags |= U_FINAL;
    ready(st, LOOP_READ);
}

static void body_end(struct h2u_stream *st)
{
    if (st->flags & U_DONE)
        return;
    if (st->flags & U_CHUNKED)
        r_append(st, "0\r\n\r\n", 5);
    st->flags |= U_DONE;
    ready(st, LOOP_READ);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2u_conn *hc = ud;
    struct h2u_stream *st;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !hc->open) {
            hc->open = true;
            for (st = hc->streams; st; st = st->next)
                ready(st, LOOP_WRITE);
        }
        break;
    case NGHTTP2_GOAWAY:
        hc->goaway = true;   /* nghttp2 closes the streams above last_stream_id */
        break;
    case NGHTTP2_HEADERS:
        if (!(st = stream_by_id(ng, f->hd.stream_id)))
            break;
        if (!(st->flags & U_FINAL))
            head_end(st, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
            body_end(st);
        break;
    case NGHTTP2_DATA:
        if ((st = stream_by_id(ng, f->hd.stream_id)) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            body_end(st);
        break;
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct h2u_stream *st = stream_by_id(ng, id);
    if (!st) {
        nghttp2_session_consume_connection(ng, len);
        return 0;
    }
    if (!(st->flags & U_FINAL))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* (nghttp2 refuses this already) */
    st->unconsumed += (uint32_t)len;
    if (!len)
        return 0;
    bool ok = true;
    if (st->flags & U_CHUNKED) {
        char size[20];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        ok = r_append(st, size, (size_t)n) && r_append(st, data, len) && r_append(st, "\r\n", 2);
    } else {
        ok = r_append(st, data, len);
    }
    if (!ok)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    ready(st, LOOP_READ);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    struct h2u_stream *st = stream_by_id(ng, id);
    if (!st)
        return 0;
    st->flags |= U_CLOSED;
    if (!(st->flags & U_DONE)) {
        stream_fail(st, -ECONNRESET, code == NGHTTP2_REFUSED_STREAM);
        stats->h2_up_refused += code == NGHTTP2_REFUSED_STREAM;
    }
    ready(st, LOOP_READ | LOOP_WRITE);
    return 0;
}

/* The request body's data source: the payload pool_writev put in `send`. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *dflags, nghttp2_data_source *src, void *ud)
{
    (void)src;
    (void)ud;
    struct h2u_stream *st = stream_by_id(ng, id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    uint32_t n = buf_len(&st->send) < len ? buf_len(&st->send) : (uint32_t)len;
    if (n) {
        memcpy(buf, buf_head(&st->send), n);
        st->send.start += n;
        if (!buf_len(&st->send))
            st->send.start = st->send.end = 0;
        ready(st, LOOP_WRITE);   /* room for more */
    }
    if (!buf_len(&st->send) && (st->flags & U_BODY_END)) {
        *dflags |= NGHTTP2_DATA_FLAG_EOF;
        buf_release(&st->send);
        return n;
    }
    if (!n) {
        st->flags |= U_DEFERRED;
        return NGHTTP2_ERR_DEFERRED;
    }
    return n;
}

/* ---- the connection ------------------------------------------------------ */

static void free_conn(struct h2u_conn *hc)
{
    nghttp2_session_del(hc->ng);
    free(hc->out);
    free(hc);
}

static void release_conn(struct loop_defer *d)
{
    free_conn(container_of(d, struct h2u_conn, defer));
}

static void on_kick(struct loop_defer *d)
{
    struct h2u_conn *hc = container_of(d, struct h2u_conn, kick);
    hc->kicked = false;
    if (hc->dead) {
        free_conn(hc);
        return;
    }
    conn_step(hc);
}

/* A step of the connection at the end of this loop iteration: frames that
 * several streams submit in one iteration leave in one write. */
static void kick(struct h2u_conn *hc)
{
    if (hc->kicked || hc->dead)
        return;
    hc->kicked = true;
    loop_defer(loop, &hc->kick, on_kick);
}

/* Takes the connection out of its server's list and closes its socket; the
 * struct goes at the end of the iteration. Its streams are detached (they
 * failed already, or were whole). */
static void hconn_close(struct h2u_conn *hc)
{
    if (hc->dead)
        return;
    hc->dead = true;
    for (struct h2u_stream *st = hc->streams; st; st = st->next) {
        if (hc->ng && st->id)
            nghttp2_session_set_stream_user_data(hc->ng, st->id, NULL);
        st->hc = NULL;
    }
    hc->streams = NULL;
    hc->nstreams = 0;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        hc->srv->h2 = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    loop_timer_stop(loop, &hc->idle_timer);
    pool_close(hc->up);
    hc->up = NULL;
    nconns--;
    if (!hc->kicked)
        loop_defer(loop, &hc->defer, release_conn);
}

static void conn_fail(struct h2u_conn *hc, int err, const char *why)
{
    if (hc->dead)
        return;
    hc->err = err;
    snprintf(hc->why, sizeof hc->why, "%s", why ? why : "");
    if (err == -EPROTO)
        snprintf(fail_why, sizeof fail_why, "%s", hc->why);
    if (hc->nstreams)
        log_error(hc->open ? "warn" : "info", "HTTP/2 connection to upstream %s %s: %s",
                  hc->srv->addr->text, hc->open ? "lost" : "failed",
                  why ? why : err ? strerror(-err) : "closed by the server");
    for (struct h2u_stream *st = hc->streams; st; st = st->next)
        stream_fail(st, err, false);
    hconn_close(hc);
}

/* Fills the output with nghttp2's frames and writes it while the socket
 * takes it. 0, or -1 when the connection failed. */
static int flush(struct h2u_conn *hc)
{
    struct upconn *up = hc->up;
    for (;;) {
        while (hc->oend - hc->ostart < OUT_HIGH) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(hc->ng, &p);
            if (n < 0) {
                conn_fail(hc, -EPROTO, nghttp2_strerror((int)n));
                return -1;
            }
            if (!n)
                break;
            if (hc->ocap - hc->oend < (uint32_t)n) {
                if (hc->ostart) {
                    memmove(hc->out, hc->out + hc->ostart, hc->oend - hc->ostart);
                    hc->oend -= hc->ostart;
                    hc->ostart = 0;
                }
                if (hc->ocap - hc->oend < (uint32_t)n) {
                    uint32_t want = hc->ocap ? hc->ocap : 16384;
                    while (want - hc->oend < (uint32_t)n)
                        want *= 2;
                    hc->out = realloc(hc->out, want);
                    if (!hc->out)
                        abort();
                    hc->ocap = want;
                }
            }
            memcpy(hc->out + hc->oend, p, (size_t)n);
            hc->oend += (uint32_t)n;
        }
        if (hc->oend == hc->ostart || !(up->conn.io.ready & LOOP_WRITE))
            return 0;
        struct iovec iov = {hc->out + hc->ostart, hc->oend - hc->ostart};
        ssize_t w = conn_writev(&up->conn, &iov, 1);
        if (w == -EAGAIN)
            return 0;
        if (w < 0) {
            conn_fail(hc, (int)w, NULL);
            return -1;
        }
        hc->ostart += (uint32_t)w;
        if (hc->ostart == hc->oend)
            hc->ostart = hc->oend = 0;
        else
            return 0;   /* the socket is full */
    }
}

static void conn_step(struct h2u_conn *hc)
{
    static uint8_t rbuf[16384];
    struct upconn *up = hc->up;
    if (hc->dead)
        return;
    if (pool_opening(up)) {
        int r = pool_connect_step(up, hc->why, sizeof hc->why);
        if (r < 0) {
            conn_fail(hc, r, r == -EPROTO ? hc->why : NULL);
            goto out_run;
        }
        if (r == 0)
            return;
        if (up->conn.ssl && !tls_alpn_h2(up->conn.ssl)) {
            conn_fail(hc, -EPROTO, "the server did not choose HTTP/2 (ALPN h2)");
            goto out_run;
        }
    }
    while (up->conn.io.ready & LOOP_READ) {
        ssize_t n = conn_read(&up->conn, rbuf, sizeof rbuf);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            conn_fail(hc, (int)n, NULL);
            goto out_run;
        }
        ssize_t k = nghttp2_session_mem_recv(hc->ng, rbuf, (size_t)n);
        if (k < 0) {
            conn_fail(hc, -EPROTO, nghttp2_strerror((int)k));
            goto out_run;
        }
    }
    if (flush(hc) < 0)
        goto out_run;
    if (!hc->nstreams && (hc->goaway || (!nghttp2_session_want_read(hc->ng) &&
                                         !nghttp2_session_want_write(hc->ng))))
        hconn_close(hc);
out_run:
    run_ready();
}

static void on_conn_event(struct upconn *up, uint32_t events)
{
    (void)events;
    conn_step(up->owner);
}

static void on_idle(struct timer *t)
{
    struct h2u_conn *hc = container_of(t, struct h2u_conn, idle_timer);
    if (hc->nstreams || hc->dead)
        return;
    nghttp2_session_terminate_session(hc->ng, NGHTTP2_NO_ERROR);   /* GOAWAY */
    flush(hc);
    if (!hc->dead)
        hconn_close(hc);
}

static struct h2u_conn *conn_new(struct pool_server *srv, int *err)
{
    struct h2u_conn *hc = xcalloc(1, sizeof *hc);
    if (nghttp2_session_client_new2(&hc->ng, cbs, hc, opt) != 0) {
        free(hc);
        *err = -ENOMEM;
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 256u * 1024},
    };
    nghttp2_submit_settings(hc->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(hc->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    hc->up = pool_connect_conn(srv, hc, on_conn_event, err);
    if (!hc->up) {
        nghttp2_session_del(hc->ng);
        free(hc);
        return NULL;
    }
    srv->active--;   /* (the pool counts streams as its active use) */
    hc->srv = srv;
    timer_init(&hc->idle_timer, on_idle);
    hc->next = srv->h2;
    if (srv->h2)
        srv->h2->prev = hc;
    srv->h2 = hc;
    nconns++;
    stats->h2_up_conns++;
    return hc;
}

static unsigned conn_room(const struct h2u_conn *hc)
{
    if (hc->dead || hc->goaway)
        return 0;
    uint32_t max = hc->open ? nghttp2_session_get_remote_settings(
                                  hc->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                            : ASSUMED_STREAMS;
    return hc->nstreams < max ? max - hc->nstreams : 0;
}

/* ---- streams ----------------------------------------------------------------- */

static struct upconn *stream_new(struct h2u_conn *hc, void *owner, pool_event_cb *cb)
{
    struct h2u_stream *st = free_streams;
    if (st)
        free_streams = st->next;
    else
        st = xmalloc(sizeof *st);
    *st = (struct h2u_stream){.hc = hc};
    st->up.conn.io.fd = -1;
    st->up.srv = hc->srv;
    st->up.owner = owner;
    st->up.on_event = cb;
    st->up.stream = true;
    st->up.reused = hc->open;
    st->up.conn.opening = hc->open ? 0 : CONN_OPEN_TCP;
    if (hc->open)
        st->up.conn.io.ready = LOOP_WRITE;
    st->next = hc->streams;
    if (hc->streams)
        hc->streams->prev = st;
    hc->streams = st;
    hc->nstreams++;
    hc->srv->active++;
    nstreams++;
    stats->h2_up_streams++;
    loop_timer_stop(loop, &hc->idle_timer);
    return &st->up;
}

static void release_stream(struct loop_defer *d)
{
    struct h2u_stream *st = container_of(d, struct h2u_stream, defer);
    unready(st);
    st->next = free_streams;
    free_streams = st;
}

/* Gives the window of n response bytes back to the server: the stream's and
 * the connection's, or only the connection's once the stream is closed. */
static void give_back(struct h2u_stream *st, uint32_t n)
{
    if (!n || !st->hc)
        return;
    if (st->id && !(st->flags & U_CLOSED))
        nghttp2_session_consume(st->hc->ng, st->id, n);
    else
        nghttp2_session_consume_connection(st->hc->ng, n);
    kick(st->hc);
}

static struct upconn *h_take(struct pool_server *srv, void *owner, pool_event_cb *cb)
{
    for (struct h2u_conn *hc = srv->h2; hc; hc = hc->next)
        if (conn_room(hc))
            return stream_new(hc, owner, cb);
    return NULL;
}

static struct upconn *h_open(struct pool_server *srv, void *owner, pool_event_cb *cb, int *err)
{
    struct upconn *st = h_take(srv, owner, cb);
    if (st)
        return st;
    struct h2u_conn *hc = conn_new(srv, err);
    return hc ? stream_new(hc, owner, cb) : NULL;
}

static unsigned h_room(const struct pool_group *g, const struct pool_server *srv)
{
    unsigned n = 0;
    for (unsigned i = 0; i < g->nservers; i++) {
        if (srv && &g->servers[i] != srv)
            continue;
        for (const struct h2u_conn *hc = g->servers[i].h2; hc; hc = hc->next)
            n += conn_room(hc);
    }
    return n;
}

static int h_step(struct upconn *up, char *err, size_t errlen)
{
    struct h2u_stream *st = stream_of(up);
    if (st->flags & U_FAILED) {
        if (st->err == -EPROTO)
            snprintf(err, errlen, "%s", fail_why);
        return st->err ? st->err : -ECONNRESET;
    }
    if (!st->hc || !st->hc->open)
        return 0;
    up->conn.opening = 0;
    up->conn.io.ready |= LOOP_WRITE;
    return 1;
}

/* The request head (HTTP/1.1 text, whole) as an HTTP/2 request: HEADERS,
 * and a data source when a body follows. Its length, or -errno. */
static ssize_t submit_head(struct h2u_stream *st, const char *p, size_t n)
{
    static nghttp2_nv nv[HTTP_MAX_FIELDS_CAP + 5];
    static char names[64 * 1024];
    static const struct http_limits lim = {
        .max_line = 64 * 1024, .max_head = 64 * 1024, .max_block = 0,
        .max_fields = HTTP_MAX_FIELDS_CAP};
    struct h2u_conn *hc = st->hc;
    struct http_msg *m = &scratch;
    struct http_info info;
    int len = http_parse_request(p, n, m, &lim);
    if (len <= 0 || http_request_info(m, &info) < 0)
        return -EINVAL;   /* (our own head: cannot happen) */
    const char *path = m->target, *auth = info.host;
    size_t pl = m->target_len, al = info.host_len;
    const char *a2, *p2;
    size_t al2, pl2;
    if (fwd_split_absolute(m->target, m->target_len, &a2, &al2, &p2, &pl2) == 0) {
        path = pl2 ? p2 : "/";
        pl = pl2 ? pl2 : 1;
        if (!auth) {
            auth = a2;
            al = al2;
        }
    }
    if (!auth) {
        auth = hc->srv->addr->text;
        al = strlen(auth);
    }
    const char *scheme = hc->up->conn.ssl ? "https" : "http";
    size_t k = 0, used = 0;
    bool grpc = false, te = false;
#define NV(nm, nlen, v, vlen)                                                                   \
    (nv[k++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(v), (nlen), (vlen), NGHTTP2_NV_FLAG_NONE})
    NV(":method", 7, m->method, m->method_len);
    NV(":scheme", 7, scheme, strlen(scheme));
    NV(":authority", 10, auth, al);
    NV(":path", 5, path, pl);
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (HTTP_NAME_IS(f, "connection") || HTTP_NAME_IS(f, "keep-alive") ||
            HTTP_NAME_IS(f, "proxy-connection") || HTTP_NAME_IS(f, "transfer-encoding") ||
            HTTP_NAME_IS(f, "upgrade") || HTTP_NAME_IS(f, "host") ||
            HTTP_NAME_IS(f, "http2-settings"))
            continue;
        if (HTTP_NAME_IS(f, "te")) {
            if (f->value_len != 8 || strncasecmp(f->value, "trailers", 8))
                continue;
            te = true;
        }
        if (HTTP_NAME_IS(f, "content-type") && f->value_len >= 16 &&
            !strncasecmp(f->value, "application/grpc", 16))
            grpc = true;
        if (used + f->name_len > sizeof names)
            return -E2BIG;
        char *lower = names + used;
        for (uint32_t j = 0; j < f->name_len; j++)
            lower[j] = (char)((f->name[j] >= 'A' && f->name[j] <= 'Z') ? f->name[j] + 32
                                                                        : f->name[j]);
        used += f->name_len;
        NV(lower, f->name_len, f->value, f->value_len);
    }
    if (grpc && !te)
        NV("te", 2, "trailers", 8);
#undef NV
    if (m->method_len == 4 && !memcmp(m->method, "HEAD", 4))
        st->flags |= U_HEAD_REQ;
    switch (info.framing) {
    case HTTP_BODY_LENGTH:
        st->req_left = info.length;
        if (!info.length)
            st->flags |= U_BODY_END;
        break;
    case HTTP_BODY_CHUNKED:
        st->flags |= U_REQ_CHUNKED;
        st->req_chunk = (struct http_chunked){0};
        break;
    default:
        st->flags |= U_BODY_END;
        break;
    }
    nghttp2_data_provider prd = {.source.ptr = NULL, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(hc->ng, NULL, nv, k,
                                        (st->flags & U_BODY_END) ? NULL : &prd, st);
    if (id < 0) {
        if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE)
            hc->goaway = true;
        stream_fail(st, -ECONNRESET, true);
        return -ECONNRESET;
    }
    st->id = id;
    st->flags |= U_SUBMITTED;
    kick(hc);
    return len;
}

/* Takes up to n body bytes as the client framed them into `send`: the
 * bytes taken, 0 when there is no room. */
static size_t take_body(struct h2u_stream *st, const char *p, size_t n)
{
    if (st->flags & U_BODY_END)
        return n;   /* (nothing is expected: dropped) */
    buf_reserve(&st->send, BUF_LARGE);
    if (!buf_room(&st->send) && st->send.start)
        buf_compact(&st->send);
    size_t room = buf_room(&st->send);
    if (!room)
        return 0;
    size_t k = n < room ? n : room;
    if (st->flags & U_REQ_CHUNKED) {
        char *dst = buf_tail(&st->send);
        memcpy(dst, p, k);
        size_t dl = 0;
        ssize_t r = http_chunked_feed(&st->req_chunk, dst, k, &dl);
        if (r < 0)
            return 0;   /* (checked by the exchange before it is sent) */
        st->send.end += (uint32_t)dl;
        k = (size_t)r;
        if (http_chunked_done(&st->req_chunk))
            st->flags |= U_BODY_END;
    } else {
        if (k > st->req_left)
            k = (size_t)st->req_left;
        memcpy(buf_tail(&st->send), p, k);
        st->send.end += (uint32_t)k;
        st->req_left -= k;
        if (!st->req_left)
            st->flags |= U_BODY_END;
    }
    return k;
}

static ssize_t h_writev(struct upconn *up, const struct iovec *iov, int n)
{
    struct h2u_stream *st = stream_of(up);
    struct h2u_conn *hc = st->hc;
    if (st->flags & U_FAILED) {
        errno = st->err ? -st->err : ECONNRESET;
        return -errno;
    }
    if (!hc || !hc->open) {
        up->conn.io.ready &= ~LOOP_WRITE;
        return -EAGAIN;
    }
    size_t want = 0, done = 0;
    for (int i = 0; i < n; i++)
        want += iov[i].iov_len;
    for (int i = 0; i < n; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len, off = 0;
        if (!(st->flags & U_SUBMITTED) && len) {
            ssize_t h = submit_head(st, p, len);
            if (h < 0) {
                errno = (int)-h;
                return h;
            }
            off = (size_t)h;
            done += off;
        }
        while (off < len) {
            size_t k = take_body(st, p + off, len - off);
            if (!k)
                goto out_full;
            off += k;
            done += k;
        }
    }
out_full:
    if ((st->flags & U_DEFERRED) && (buf_len(&st->send) || (st->flags & U_BODY_END))) {
        st->flags &= ~U_DEFERRED;
        nghttp2_session_resume_data(hc->ng, st->id);
    }
    kick(hc);
    if (done < want)
        up->conn.io.ready &= ~LOOP_WRITE;
    if (!done && want) {
        errno = EAGAIN;
        return -EAGAIN;
    }
    return (ssize_t)done;
}

static ssize_t h_read(struct upconn *up, void *buf, size_t len)
{
    struct h2u_stream *st = stream_of(up);
    uint32_t have = st->rend - st->rstart;
    if (have) {
        uint32_t n = have < len ? have : (uint32_t)len;
        memcpy(buf, st->r + st->rstart, n);
        st->rstart += n;
        if (st->rstart == st->rend)
            st->rstart = st->rend = 0;
        /* The window is given back once most of what it let in is read. */
        if (st->unconsumed && st->rend - st->rstart < STREAM_WINDOW / 2) {
            give_back(st, st->unconsumed);
            st->unconsumed = 0;
        }
        if (st->rstart == st->rend && !(st->flags & (U_FAILED | U_DONE)))
            up->conn.io.ready &= ~LOOP_READ;
        return n;
    }
    if (st->flags & U_FAILED) {
        errno = st->err ? -st->err : 0;
        return st->err;
    }
    if (st->flags & U_DONE)
        return 0;
    up->conn.io.ready &= ~LOOP_READ;
    errno = EAGAIN;
    return -EAGAIN;
}

static void h_end(struct upconn *up, bool clean)
{
    struct h2u_stream *st = stream_of(up);
    struct h2u_conn *hc = st->hc;
    st->flags |= U_ENDED;
    unready(st);
    if (hc) {
        if (st->id) {
            if (st->unconsumed)
                nghttp2_session_consume_connection(hc->ng, st->unconsumed);
            if (!(st->flags & U_CLOSED)) {
                nghttp2_submit_rst_stream(hc->ng, NGHTTP2_FLAG_NONE, st->id,
                                          clean ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
                stats->h2_up_cancels += !clean;
            }
            nghttp2_session_set_stream_user_data(hc->ng, st->id, NULL);
        }
        if (st->prev)
            st->prev->next = st->next;
        else
            hc->streams = st->next;
        if (st->next)
            st->next->prev = st->prev;
        hc->nstreams--;
        hc->srv->active--;
        if (!hc->nstreams) {
            if (hc->goaway)
                kick(hc);   /* (conn_step closes it once its frames are out) */
            else
                loop_timer_at(loop, &hc->idle_timer, loop->now + hc->srv->group->idle_ns);
        }
        kick(hc);
    } else {
        up->srv->active--;
    }
    buf_release(&st->send);
    free(st->r);
    free(st->trailers);
    st->r = st->trailers = NULL;
    st->up.owner = NULL;
    nstreams--;
    loop_defer(loop, &st->defer, release_stream);
}

static void h_close_idle(void)
{
    unsigned ng;
    struct pool_group *gs = pool_groups(&ng);
    for (unsigned g = 0; g < ng; g++)
        for (unsigned i = 0; i < gs[g].nservers; i++)
            for (struct h2u_conn *hc = gs[g].servers[i].h2, *nx; hc; hc = nx) {
                nx = hc->next;
                if (!hc->nstreams)
                    hconn_close(hc);
            }
}

static const struct pool_h2_hooks hooks = {
    .take = h_take,
    .open = h_open,
    .room = h_room,
    .step = h_step,
    .read = h_read,
    .writev = h_writev,
    .end = h_end,
    .close_idle = h_close_idle,
};

void h2u_init(struct loop *l)
{
    loop = l;
    pool_h2 = &hooks;
    if (cbs)
        return;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, ASSUMED_STREAMS);
}

const char *h2u_trailers(const struct upconn *up, uint32_t *len)
{
    const struct h2u_stream *st = stream_of(up);
    *len = up->stream ? st->tlen : 0;
    return *len ? st->trailers : NULL;
}

bool h2u_unprocessed(const struct upconn *up)
{
    return up->stream && (stream_of(up)->flags & U_UNPROC);
}

unsigned h2u_conns(void)
{
    return nconns;
}

unsigned h2u_streams(void)
{
    return nstreams;
}

void h2u_free(void)
{
    while (free_streams) {
        struct h2u_stream *st = free_streams;
        free_streams = st->next;
        free(st);
    }
    if (cbs)
        nghttp2_session_callbacks_del(cbs);
    if (opt)
        nghttp2_option_del(opt);
    cbs = NULL;
    opt = NULL;
}
