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
#include "log.h"
#include "stats.h"
#include "tls.h"

#include "h2up_internal.h"

static struct loop *loop;
static nghttp2_session_callbacks *cbs;
static nghttp2_option *opt;
static struct h2u_stream *ready_head, *ready_tail;
static struct h2u_stream *free_streams;
static unsigned nconns, nstreams;
static char fail_why[160];        /* the last failed opening's reason (EPROTO) */

static void conn_step(struct h2u_conn *hc);
static void conn_fail(struct h2u_conn *hc, int err, const char *why);

/* ---- streams with news: their owners are called outside nghttp2 ------- */

void h2u_ready(struct h2u_stream *st, uint32_t bits)
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
void h2u_kick(struct h2u_conn *hc)
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
    hc->srv->active++;   /* (pool_close counts an owned connection down: conn_new did) */
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
        h2u_stream_fail(st, err, false);
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
    bool over = !nghttp2_session_want_read(hc->ng) && !nghttp2_session_want_write(hc->ng);
    if (!hc->nstreams && (hc->goaway || over)) {
        hconn_close(hc);
    } else if (over) {
        /* nghttp2 ended the session itself (a connection error of the
         * server's: it sent GOAWAY and ignores the rest): every stream
         * fails now, never waits for its timeout. Not yet open, it fails as
         * a connect would, with no TLS error to name. */
        conn_fail(hc, hc->open ? -EPROTO : -ECONNABORTED,
                  "HTTP/2 protocol error of the server (GOAWAY sent)");
    }
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
    struct h2u_stream *st = h2u_stream_of(up);
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


static void h_end(struct upconn *up, bool clean)
{
    struct h2u_stream *st = h2u_stream_of(up);
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
                h2u_kick(hc);   /* (conn_step closes it once its frames are out) */
            else
                loop_timer_at(loop, &hc->idle_timer, loop->now + hc->srv->group->idle_ns);
        }
        h2u_kick(hc);
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

/* srv leaves its pool: a connection without streams ends now (GOAWAY), one
 * with streams takes no other and closes after its last (conn_step). */
static void h_retire(struct pool_server *srv)
{
    for (struct h2u_conn *hc = srv->h2, *nx; hc; hc = nx) {
        nx = hc->next;
        hc->goaway = true;
        if (!hc->nstreams)
            on_idle(&hc->idle_timer);
    }
}

static const struct pool_h2_hooks hooks = {
    .take = h_take,
    .open = h_open,
    .room = h_room,
    .step = h_step,
    .read = h2u_stream_read,
    .writev = h2u_stream_writev,
    .end = h_end,
    .close_idle = h_close_idle,
    .retire = h_retire,
};

void h2u_init(struct loop *l, const char *deadline_header)
{
    loop = l;
    h2u_deadline_name = deadline_header;
    h2u_deadline_len = deadline_header ? strlen(deadline_header) : 0;
    pool_h2 = &hooks;
    if (cbs)
        return;
    nghttp2_session_callbacks_new(&cbs);
    h2u_set_callbacks(cbs);
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, ASSUMED_STREAMS);
}

const char *h2u_trailers(const struct upconn *up, uint32_t *len)
{
    const struct h2u_stream *st = h2u_stream_of(up);
    *len = up->stream ? st->tlen : 0;
    return *len ? st->trailers : NULL;
}

bool h2u_unprocessed(const struct upconn *up)
{
    return up->stream && (h2u_stream_of(up)->flags & U_UNPROC);
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