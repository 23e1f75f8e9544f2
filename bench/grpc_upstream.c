/* grpc_upstream -- a small, fast HTTP/2 upstream for the benchmark.
 *
 * Usage: grpc_upstream PORT [MAX_CONCURRENT_STREAMS]     (listens on 127.0.0.1)
 *        grpc_upstream -V                                  (libnghttp2's version)
 *
 * HTTP/2 with prior knowledge over cleartext (h2c: the client sends the
 * connection preface, no Upgrade), one thread, level-triggered epoll,
 * non-blocking sockets, libnghttp2 for the framing (nghttp2_session_mem_recv /
 * mem_send: it does no I/O; the frames it produces are gathered into one
 * buffer and written with one write() per turn of the loop).
 *
 * Every request is answered at once, when its END_STREAM arrives:
 *   - content-type application/grpc (a gRPC call): HEADERS (:status 200,
 *     content-type application/grpc), one DATA frame with a length-prefixed
 *     message, then trailers (grpc-status: 0) with END_STREAM. The message
 *     is the request's own when the request body is exactly one
 *     length-prefixed message (flag 0, 4-byte big-endian length, up to
 *     64 KiB): an echo; else a fixed 100-byte message.
 *   - anything else: HEADERS (:status 200, content-type text/plain,
 *     content-length 100) and one DATA frame with END_STREAM holding the same
 *     100-byte body as the benchmark's HTTP/1.1 origin serves on /small.
 *
 * SETTINGS_MAX_CONCURRENT_STREAMS is 100 unless given (a client above it
 * gets REFUSED_STREAM from nghttp2); the connection's receive window is
 * raised to 16 MiB so that request bodies never wait for a WINDOW_UPDATE.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#define OUTMAX (64 * 1024)        /* frames gathered before a write */
#define BODYMAX (64 * 1024)       /* request bodies echoed up to this size */

/* the 100-byte body of the benchmark's /small ("hourglass-bench " * 7)[:99] + "\n" */
static const char SMALL[] =
    "hourglass-bench hourglass-bench hourglass-bench hourglass-bench hourglass-bench hourglass-bench hou\n";
static uint8_t fixed_msg[5 + 100];   /* 0, length 100, 100 bytes of 'x' */

struct conn {
    int fd;
    nghttp2_session *s;
    uint8_t *out;                 /* bytes nghttp2 produced, not yet written */
    size_t off, len;
    int pollout;                  /* EPOLLOUT registered */
};

struct stream {
    int grpc;                     /* content-type application/grpc... */
    uint8_t *body;                /* request body, up to BODYMAX */
    size_t len, cap, total;
    const uint8_t *resp;          /* response DATA */
    size_t rlen, roff;
};

static int ep;
static nghttp2_session_callbacks *cbs;
static nghttp2_option *opt;
static unsigned max_streams = 100;

static void die(const char *what) { perror(what); exit(1); }

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, \
                  NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}

static ssize_t read_resp(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    struct stream *st = src->ptr;
    size_t n = st->rlen - st->roff;
    if (n > length)
        n = length;
    memcpy(buf, st->resp + st->roff, n);
    st->roff += n;
    if (st->roff == st->rlen) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->grpc) {           /* trailers end the stream */
            static const nghttp2_nv tr[] = {NV("grpc-status", "0")};
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(s, id, tr, 1) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

static int respond(nghttp2_session *s, int32_t id, struct stream *st)
{
    static const nghttp2_nv grpc_h[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    static const nghttp2_nv plain_h[] = {NV(":status", "200"), NV("content-type", "text/plain"),
                                         NV("content-length", "100")};
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_resp};
    if (st->grpc) {
        const uint8_t *b = st->body;
        if (st->len >= 5 && st->len == st->total && b[0] == 0 &&
            ((size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4]) == st->len - 5) {
            st->resp = st->body;  /* one whole message: echoed */
            st->rlen = st->len;
        } else {
            st->resp = fixed_msg;
            st->rlen = sizeof fixed_msg;
        }
        return nghttp2_submit_response(s, id, grpc_h, 2, &dp);
    }
    st->resp = (const uint8_t *)SMALL;
    st->rlen = sizeof SMALL - 1;
    return nghttp2_submit_response(s, id, plain_h, 3, &dp);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct stream *st = calloc(1, sizeof *st);
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags, (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (nlen == 12 && memcmp(name, "content-type", 12) == 0 && vlen >= 16 &&
        memcmp(value, "application/grpc", 16) == 0) {
        struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st)
            st->grpc = 1;
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags, (void)ud;
    struct stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st)
        return 0;
    st->total += len;
    if (st->len + len > BODYMAX)
        return 0;                 /* too long to echo: the fixed message answers */
    if (st->len + len > st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 256;
        while (cap < st->len + len)
            cap *= 2;
        uint8_t *b = realloc(st->body, cap);
        if (!b)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        st->body = b;
        st->cap = cap;
    }
    memcpy(st->body + st->len, data, len);
    st->len += len;
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st && respond(s, f->hd.stream_id, st) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)code, (void)ud;
    struct stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (st) {
        nghttp2_session_set_stream_user_data(s, id, NULL);
        free(st->body);
        free(st);
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    nghttp2_session_del(c->s);    /* calls on_close for the streams left */
    free(c->out);
    free(c);
}

static void want_out(struct conn *c, int on)
{
    if (c->pollout == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->pollout = on;
}

/* Writes what is pending, then what nghttp2 has to send, gathered up to
 * OUTMAX per write. 0: keep the connection, -1: close it. */
static int flush(struct conn *c)
{
    for (;;) {
        if (c->off == c->len) {
            c->off = c->len = 0;
            while (c->len < OUTMAX) {
                const uint8_t *d;
                ssize_t n = nghttp2_session_mem_send(c->s, &d);
                if (n < 0)
                    return -1;
                if (n == 0)
                    break;
                if (!c->out || c->len + (size_t)n > OUTMAX) {
                    /* nghttp2's buffer is valid only until the next mem_send: copied */
                    size_t cap = c->len + (size_t)n > OUTMAX ? c->len + (size_t)n : OUTMAX;
                    uint8_t *o = realloc(c->out, cap);
                    if (!o)
                        return -1;
                    c->out = o;
                }
                memcpy(c->out + c->len, d, (size_t)n);
                c->len += (size_t)n;
            }
            if (c->len == 0)
                break;
        }
        ssize_t w = write(c->fd, c->out + c->off, c->len - c->off);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want_out(c, 1);
                return 0;
            }
            if (errno == EINTR)
                continue;
            return -1;
        }
        c->off += (size_t)w;
    }
    want_out(c, 0);
    if (!nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))
        return -1;                /* GOAWAY done both ways */
    return 0;
}

static void on_readable(struct conn *c)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(c);
            return;
        }
        if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0) {
            flush(c);             /* the GOAWAY nghttp2 queued, if it can go */
            conn_close(c);
            return;
        }
        if ((size_t)n < sizeof buf)
            break;
    }
    if (flush(c) < 0)
        conn_close(c);
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                perror("accept4");
                return;
            }
            die("accept4");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c || nghttp2_session_server_new2(&c->s, cbs, c, opt) != 0)
            die("session");
        c->fd = fd;
        nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams}};
        nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 1);
        nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
        if (flush(c) < 0)
            conn_close(c);
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "-V") == 0) {
        printf("libnghttp2 %s\n", nghttp2_version(0)->version_str);
        return 0;
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [MAX_CONCURRENT_STREAMS]\n", argv[0]);
        return 2;
    }
    if (argc == 3)
        max_streams = (unsigned)strtoul(argv[2], NULL, 10);
    signal(SIGPIPE, SIG_IGN);
    fixed_msg[4] = 100;
    memset(fixed_msg + 5, 'x', 100);

    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    nghttp2_option_new(&opt);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(lfd, 4096) < 0)
        die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                on_accept(lfd);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
            else if (evs[i].events & EPOLLOUT) {
                if (flush(c) < 0)
                    conn_close(c);
            }
        }
    }
}
