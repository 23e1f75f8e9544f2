/* h2up_stream.c -- HTTP/2 to upstream servers: a stream, translated both
 * ways. The request's HTTP/1.1 text becomes HEADERS and DATA; the
 * response's HEADERS, DATA and trailers become HTTP/1.1 text for pool_read
 * (see h2up.h; the connections are in h2up.c). */
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
#include "stats.h"

#include "h2up_internal.h"

const char *h2u_deadline_name;
size_t h2u_deadline_len;

static struct http_msg scratch;   /* the request head being translated */

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

void h2u_stream_fail(struct h2u_stream *st, int err, bool unprocessed)
{
    if (st->flags & (U_FAILED | U_DONE))
        return;
    st->flags |= U_FAILED | (unprocessed ? U_UNPROC : 0);
    st->err = err;
    h2u_ready(st, LOOP_READ | LOOP_WRITE);
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
        h2u_ready(st, LOOP_READ);
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
    h2u_ready(st, LOOP_READ);
}

static void body_end(struct h2u_stream *st)
{
    if (st->flags & U_DONE)
        return;
    if (st->flags & U_CHUNKED)
        r_append(st, "0\r\n\r\n", 5);
    st->flags |= U_DONE;
    h2u_ready(st, LOOP_READ);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2u_conn *hc = ud;
    struct h2u_stream *st;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {   /* open now, or windows changed */
            hc->open = true;
            for (st = hc->streams; st; st = st->next)
                h2u_ready(st, LOOP_WRITE);
        }
        break;
    case NGHTTP2_WINDOW_UPDATE:
        /* a request body waiting for room may go on */
        if (f->hd.stream_id) {
            if ((st = stream_by_id(ng, f->hd.stream_id)) && !(st->flags & U_BODY_END))
                h2u_ready(st, LOOP_WRITE);
        } else {
            for (st = hc->streams; st; st = st->next)
                if (!(st->flags & U_BODY_END))
                    h2u_ready(st, LOOP_WRITE);
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
    h2u_ready(st, LOOP_READ);
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
        h2u_stream_fail(st, -ECONNRESET, code == NGHTTP2_REFUSED_STREAM);
        stats->h2_up_refused += code == NGHTTP2_REFUSED_STREAM;
    }
    h2u_ready(st, LOOP_READ | LOOP_WRITE);
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
        h2u_ready(st, LOOP_WRITE);   /* room for more */
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
    h2u_kick(st->hc);
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
        if (HTTP_NAME_IS(f, "x-request-id") ||
            (h2u_deadline_name && f->name_len == h2u_deadline_len &&
             !strncasecmp(f->name, h2u_deadline_name, f->name_len)))
            nv[k - 1].flags = NGHTTP2_NV_FLAG_NO_INDEX;   /* new in every request: h2u_init */
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
        h2u_stream_fail(st, -ECONNRESET, true);
        return -ECONNRESET;
    }
    st->id = id;
    st->flags |= U_SUBMITTED;
    h2u_kick(hc);
    return len;
}

/* Takes up to n body bytes as the client framed them into `send`: the
 * bytes taken, 0 when there is no room. */
/* Body bytes the server's flow-control windows (the stream's, or the
 * initial one before it is open; and the connection's) let it take now,
 * less those already waiting: taking only these keeps the attempt's write
 * clock exact (it runs while the upstream will not take bytes). */
static size_t window_room(const struct h2u_stream *st)
{
    nghttp2_session *ng = st->hc->ng;
    int32_t sw = st->id ? nghttp2_session_get_stream_remote_window_size(ng, st->id) : -1;
    if (sw < 0)
        sw = (int32_t)nghttp2_session_get_remote_settings(ng,
                                                          NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
    int32_t cw = nghttp2_session_get_remote_window_size(ng);
    int64_t w = (int64_t)(sw < cw ? sw : cw) - (int64_t)buf_len(&st->send);
    return w > 0 ? (size_t)w : 0;
}

static size_t take_body(struct h2u_stream *st, const char *p, size_t n)
{
    if (st->flags & U_BODY_END)
        return n;   /* (nothing is expected: dropped) */
    buf_reserve(&st->send, BUF_LARGE);
    if (!buf_room(&st->send) && st->send.start)
        buf_compact(&st->send);
    size_t room = buf_room(&st->send), win = window_room(st);
    /* A chunked body's framing costs no window: a few bytes of slack let its
     * size lines and last chunk through a closed window. */
    win += (st->flags & U_REQ_CHUNKED) ? CHUNK_SLACK : 0;
    if (win < room)
        room = win;
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

ssize_t h2u_stream_writev(struct upconn *up, const struct iovec *iov, int n)
{
    struct h2u_stream *st = h2u_stream_of(up);
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
    h2u_kick(hc);
    if (done < want)
        up->conn.io.ready &= ~LOOP_WRITE;
    if (!done && want) {
        errno = EAGAIN;
        return -EAGAIN;
    }
    return (ssize_t)done;
}

ssize_t h2u_stream_read(struct upconn *up, void *buf, size_t len)
{
    struct h2u_stream *st = h2u_stream_of(up);
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

void h2u_set_callbacks(nghttp2_session_callbacks *cbs)
{
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
}
