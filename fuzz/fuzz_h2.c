/* fuzz_h2.c -- libFuzzer target: the server side of HTTP/2 (src/proxy/h2.c)
 * fed by a client that sends the connection preface and then the input.
 *
 * The whole proxy is linked (every src/ file but src/app/main.c) and runs
 * the request path as a worker does (worker_init, without listeners), on
 * one loop that this target steps itself (loop_run_once).
 *
 * Input: byte 0 chooses what the upstream does (modes[] below, byte 0
 * modulo their number: refuse the connection, answer every request with one
 * canned HTTP/1.1 response -- lengths, chunked with trailers, 1xx, 204/304,
 * until close, bodies larger than the flow-control windows, malformed,
 * truncated, ... -- or never answer), and whether time warps (the next bit,
 * below); the rest is what the client sends after the preface. The upstream
 * is this process: a listening socket on 127.0.0.1 served between loop
 * iterations (refuse: 127.0.0.1:1, where loopback refuses at once). Nothing
 * leaves loopback.
 *
 * Per input:
 *   1. worker_init; a socketpair; client_new(fd0, 127.0.0.1:9, CF_HTTP2) as
 *      a plain listener does, so the preface makes it HTTP/2 (h2c with prior
 *      knowledge);
 *   2. the preface and the input are written to fd1 (in pieces while the
 *      socket buffer is full); the loop is stepped, the upstream served, and
 *      what the proxy writes back read and kept, until the proxy is quiet:
 *      no event and no byte either way for a few iterations in a row. No
 *      timer is waited for: the timeouts keep their defaults (seconds), so
 *      none falls due while an input runs and runs are deterministic.
 *      With time warping, the timeouts are short (0.1 to 1 s) and, once the
 *      proxy is quiet, the clock is moved to the earliest timer
 *      (loop_clock_skew), which fires, and the proxy left to settle again,
 *      up to WARPS times: header, body, read, send, idle and total timeouts
 *      on HTTP/2 connections and streams, deterministic as well;
 *   3. fd1 is closed and the loop stepped until the client is closed;
 *   4. worker_shutdown and buf_drain_pools free everything, so that all the
 *      memory an input took is given back by its end (LeakSanitizer, which
 *      libFuzzer runs when an input mallocs more than it frees, sees any
 *      block lost), and no state (pool health, recycled structs) carries
 *      over to the next input.
 *
 * Invariants, besides memory safety and UB (INVARIANT FAILED on stderr):
 *
 *   - the proxy settles: it is quiet within a bounded number of iterations
 *     (no busy loop, no endless ping-pong of events);
 *   - what it wrote back, once quiet, is a whole number of frames, the first
 *     a SETTINGS frame (the server preface) that does not enable push; no
 *     frame has the reserved bit of its stream id set, none is a
 *     PUSH_PROMISE; HEADERS and DATA go on odd (client) streams only, DATA
 *     only after that stream's final response HEADERS, nothing after the
 *     stream's END_STREAM;
 *   - every header block decodes (HPACK, one decoder for the connection, as
 *     a client keeps), starts with :status, has no other pseudo-field, no
 *     upper-case name and no connection-specific field (RFC 9113 8.2.2), and
 *     none of the fields the upstream's Connection header named; a status is
 *     100 or 103 (interim), the canned response's, or a 4xx/5xx of the
 *     proxy's own; never 101;
 *   - a response with the canned status carries the canned body: its DATA
 *     bytes are a prefix of it, and when the stream ends (END_STREAM, not
 *     a reset) they are all of it, or none (HEAD, 204, 304); a response
 *     with content-length that ends has that many DATA bytes, or none;
 *   - once its peer has gone, the connection is closed within a bounded
 *     number of iterations (not left for a timer), and no client remains;
 *   - after worker_shutdown no timer is armed and nothing is deferred, no
 *     file descriptor opened during the input is left open, and every
 *     buffer mapped during the input is unmapped (buf.c maps them: a lost
 *     one is a leak LeakSanitizer cannot see; see __wrap_mmap).
 *
 * HG_FUZZ_VERBOSE=1 prints the frames read back and their fields;
 * HG_FUZZ_LOG=debug|info|warn shows the proxy's error log (default: errors).
 *
 * Build and run: scripts/fuzz.sh (fuzz/README.md). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "cli.h"
#include "client.h"
#include "fuzz_common.h"
#include "log.h"
#include "loop.h"
#include "px.h"
#include "worker.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof PREFACE - 1)

#define QUIET_ITERATIONS 3      /* in a row: the proxy has nothing more to do */
#define SETTLE_MAX 20000        /* iterations to become quiet */
#define HANGUP_MAX 200          /* iterations to close after the peer has gone */
#define FD_SPAN 256             /* descriptors checked for leaks: 0 .. FD_SPAN-1 */
#define UP_MAX 1024             /* upstream connections open at once */
#define WARPS 12                /* timers fired by warping, at most */

static struct loop loop;
static struct cfg cfg_up, cfg_refuse;           /* the default timeouts */
static struct cfg cfg_up_warp, cfg_refuse_warp; /* short ones */
static bool verbose;

/* ---- the upstream's answers ---------------------------------------------------- */

#define LARGE 100000u            /* over the stream window a client starts with */

struct mode {
    const char *name;
    bool refuse;                 /* no upstream: 127.0.0.1:1 */
    const char *wire;            /* the whole response as sent (NULL: built at start) */
    size_t wire_len;
    int status;                  /* the final status (0: none reaches the client) */
    const char *body;            /* the body the client should get */
    size_t body_len;             /* bytes of it available */
    size_t full_len;             /* its whole length (more than body_len: truncated) */
    bool close;                  /* the upstream closes after answering once */
    bool stall;                  /* the upstream never answers */
    const char *hop;             /* a field named by its Connection header: never relayed */
};

static char large_body[LARGE];
static char *large_length_wire, *large_chunked_wire, *big_head_wire;

#define S(x) x, sizeof x - 1
static struct mode modes[] = {
    {.name = "refuse", .refuse = true},
    {.name = "ok_keepalive", .wire = S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: "
                                       "text/plain\r\n\r\nhello"),
     .status = 200, .body = "hello", .body_len = 5, .full_len = 5},
    {.name = "chunked_trailer",
     .wire = S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n "
               "world\r\n0\r\nX-Trailer: t\r\n\r\n"),
     .status = 200, .body = "hello world", .body_len = 11, .full_len = 11},
    {.name = "interim_hop",
     .wire = S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; "
               "rel=preload\r\n\r\nHTTP/1.1 203 Non-Authoritative Information\r\nConnection: "
               "X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: "
               "keep-alive\r\nUpgrade: h2c\r\nX-Mixed-Case: Yes\r\nContent-Length: 3\r\n\r\nabc"),
     .status = 203, .body = "abc", .body_len = 3, .full_len = 3, .close = true, .hop = "x-hop"},
    {.name = "no_content", .wire = S("HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"), .status = 204},
    {.name = "not_modified",
     .wire = S("HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n"),
     .status = 304},
    {.name = "until_close",
     .wire = S("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close"),
     .status = 200, .body = "body until close", .body_len = 16, .full_len = 16, .close = true},
    {.name = "large_length", .status = 200, .body = large_body, .body_len = LARGE,
     .full_len = LARGE},
    {.name = "large_chunked", .status = 200, .body = large_body, .body_len = LARGE,
     .full_len = LARGE, .close = true},
    {.name = "malformed", .wire = S("HTTP/1.1 2x0 OK\r\n\r\n"), .close = true},
    {.name = "close_early", .wire = S(""), .close = true},
    {.name = "truncated", .wire = S("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"),
     .status = 200, .body = "0123456789", .body_len = 10, .full_len = 100, .close = true},
    {.name = "switching",
     .wire = S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
               "upgrade\r\n\r\n"),
     .close = true},
    {.name = "teapot_http10", .wire = S("HTTP/1.0 418 I'm a teapot\r\nContent-Length: 4\r\n\r\ntea!"),
     .status = 418, .body = "tea!", .body_len = 4, .full_len = 4, .close = true},
    {.name = "big_head", .status = 200, .body = "big", .body_len = 3, .full_len = 3},
    {.name = "conflicting_length",
     .wire = S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
     .close = true},
    {.name = "stall", .wire = S(""), .stall = true},
};
#undef S
#define NMODES (sizeof modes / sizeof modes[0])

static const struct mode *mode;

static char *wire_alloc(size_t cap)
{
    char *p = malloc(cap);
    if (!p)
        abort();
    p[0] = 0;
    return p;
}

static void build_modes(void)
{
    for (size_t i = 0; i < LARGE; i++)
        large_body[i] = (char)('a' + (i * 7 + i / 97) % 26);
    for (size_t i = 0; i < NMODES; i++) {
        struct mode *m = &modes[i];
        if (!strcmp(m->name, "large_length")) {
            char *w = large_length_wire = wire_alloc(LARGE + 128);
            int n = sprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", LARGE);
            memcpy(w + n, large_body, LARGE);
            m->wire = w;
            m->wire_len = (size_t)n + LARGE;
        } else if (!strcmp(m->name, "large_chunked")) {
            char *w = large_chunked_wire = wire_alloc(LARGE + LARGE / 1000 * 16 + 256);
            size_t n = (size_t)sprintf(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for (size_t off = 0; off < LARGE; off += 3000) {
                size_t k = LARGE - off < 3000 ? LARGE - off : 3000;
                n += (size_t)sprintf(w + n, "%zx\r\n", k);
                memcpy(w + n, large_body + off, k);
                n += k;
                memcpy(w + n, "\r\n", 2);
                n += 2;
            }
            n += (size_t)sprintf(w + n, "0\r\n\r\n");
            m->wire = w;
            m->wire_len = n;
        } else if (!strcmp(m->name, "big_head")) {
            /* a head over 16 KiB: its HEADERS need CONTINUATION frames */
            char *w = big_head_wire = wire_alloc(40000);
            size_t n = (size_t)sprintf(w, "HTTP/1.1 200 OK\r\n");
            for (int f = 0; f < 40; f++) {
                n += (size_t)sprintf(w + n, "X-Field-%d: ", f);
                for (int j = 0; j < 500; j++)
                    w[n++] = (char)('A' + (f + j) % 26);
                memcpy(w + n, "\r\n", 2);
                n += 2;
            }
            n += (size_t)sprintf(w + n, "Content-Length: 3\r\n\r\nbig");
            m->wire = w;
            m->wire_len = n;
        }
    }
}

/* ---- the upstream server --------------------------------------------------------- */

struct upc {
    int fd;
    uint8_t crlf;                /* how much of "\r\n\r\n" was just seen */
    unsigned heads, answered;    /* request heads seen, answers sent */
    size_t off;                  /* of the answer being sent */
    bool sending, shut;
};

static int up_listen = -1;
static struct upc ups[UP_MAX];
static unsigned nups;

static void up_drop(unsigned i)
{
    close(ups[i].fd);
    ups[i] = ups[--nups];
}

/* Accepts, reads (counting request heads) and answers. Whether anything
 * moved. */
static bool up_step(void)
{
    bool moved = false;
    if (mode->refuse)
        return false;
    for (;;) {
        int fd = accept4(up_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        FUZZ_CHECK(nups < UP_MAX);
        ups[nups++] = (struct upc){.fd = fd};
        moved = true;
    }
    for (unsigned i = 0; i < nups;) {
        struct upc *u = &ups[i];
        char b[16384];
        bool eof = false;
        for (;;) {
            ssize_t n = read(u->fd, b, sizeof b);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                eof = true;
                break;
            }
            if (n < 0)
                break;
            moved = true;
            for (ssize_t k = 0; k < n; k++) {
                char want = "\r\n\r\n"[u->crlf];
                u->crlf = b[k] == want ? (uint8_t)(u->crlf + 1) : b[k] == '\r' ? 1 : 0;
                if (u->crlf == 4) {
                    u->heads++;
                    u->crlf = 0;
                }
            }
        }
        if (eof) {
            up_drop(i);
            moved = true;
            continue;
        }
        if (!u->sending && !u->shut && !mode->stall && u->heads > u->answered) {
            u->sending = true;
            u->off = 0;
        }
        while (u->sending) {
            if (u->off < mode->wire_len) {
                ssize_t w = send(u->fd, mode->wire + u->off, mode->wire_len - u->off, MSG_NOSIGNAL);
                if (w <= 0)
                    break;
                u->off += (size_t)w;
                moved = true;
                continue;
            }
            u->sending = false;
            u->answered++;
            if (mode->close) {
                shutdown(u->fd, SHUT_WR);
                u->shut = true;
            } else if (u->heads > u->answered) {
                u->sending = true;   /* the next request's answer */
                u->off = 0;
            }
        }
        i++;
    }
    return moved;
}

static void up_close_all(void)
{
    if (up_listen >= 0)
        for (int fd; (fd = accept4(up_listen, NULL, NULL, SOCK_CLOEXEC)) >= 0;)
            close(fd);
    while (nups)
        up_drop(nups - 1);
}

/* ---- what the proxy wrote back ------------------------------------------------- */

static uint8_t *out;            /* every byte read from fd1 */
static size_t out_len, out_cap;

static size_t drain(int fd)
{
    size_t got = 0;
    for (;;) {
        if (out_cap - out_len < 16384) {
            out_cap = out_cap ? out_cap * 2 : 65536;
            out = realloc(out, out_cap);
            if (!out)
                abort();
        }
        ssize_t n = read(fd, out + out_len, out_cap - out_len);
        if (n <= 0)
            return got;
        out_len += (size_t)n;
        got += (size_t)n;
    }
}

/* One iteration of the loop without waiting, the upstream served, and what
 * came back read. Whether anything happened. */
static bool step(int fd)
{
    int n = loop_run_once(&loop, 0);
    FUZZ_CHECK(n >= 0);
    bool up = up_step();
    size_t got = drain(fd);
    return n > 0 || up || got > 0;
}

/* ---- checking the frames ----------------------------------------------------------- */

struct sstate {
    uint32_t id;
    int status;                  /* the final one; 0 none yet */
    bool ended;                  /* END_STREAM sent */
    bool canned;                 /* the upstream's answer: its body is known */
    bool has_cl;
    uint64_t cl, data;           /* content-length; DATA bytes so far */
};

static struct sstate *streams;
static size_t nstreams, streams_cap;

static struct sstate *stream_state(uint32_t id)
{
    for (size_t i = 0; i < nstreams; i++)
        if (streams[i].id == id)
            return &streams[i];
    if (nstreams == streams_cap) {
        streams_cap = streams_cap ? streams_cap * 2 : 64;
        streams = realloc(streams, streams_cap * sizeof *streams);
        if (!streams)
            abort();
    }
    streams[nstreams] = (struct sstate){.id = id};
    return &streams[nstreams++];
}

static bool has_upper(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            return true;
    return false;
}

static bool name_is(const nghttp2_nv *nv, const char *s)
{
    return nv->namelen == strlen(s) && !memcmp(nv->name, s, nv->namelen);
}

/* The stream ended: its body is whole. */
static void check_end(const struct sstate *ss)
{
    if (ss->has_cl)
        FUZZ_CHECK(ss->data == ss->cl || ss->data == 0);
    if (ss->canned)
        FUZZ_CHECK(ss->data == mode->full_len || ss->data == 0);
}

/* A whole header block: decoded, and checked as a response head. */
static void check_block(nghttp2_hd_inflater *inf, struct sstate *ss, const uint8_t *p, size_t n,
                        bool end_stream)
{
    size_t k = 0;
    int status = 0;
    bool has_cl = false;
    uint64_t cl = 0;
    for (;;) {
        nghttp2_nv nv;
        int fl = 0;
        ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &fl, p, n, 1);
        FUZZ_CHECK(r >= 0);   /* the proxy's HPACK decodes */
        p += r;
        n -= (size_t)r;
        if (fl & NGHTTP2_HD_INFLATE_EMIT) {
            if (verbose)
                fprintf(stderr, "    %.*s: %.*s\n", (int)nv.namelen, nv.name, (int)nv.valuelen,
                        nv.value);
            if (k == 0) {
                FUZZ_CHECK(name_is(&nv, ":status"));
                FUZZ_CHECK(nv.valuelen == 3);
                for (int i = 0; i < 3; i++)
                    FUZZ_CHECK(nv.value[i] >= '0' && nv.value[i] <= '9');
                status = (nv.value[0] - '0') * 100 + (nv.value[1] - '0') * 10 + nv.value[2] - '0';
            } else {
                FUZZ_CHECK(nv.namelen > 0 && nv.name[0] != ':');
                FUZZ_CHECK(!has_upper(nv.name, nv.namelen));
                FUZZ_CHECK(!name_is(&nv, "connection") && !name_is(&nv, "keep-alive") &&
                           !name_is(&nv, "proxy-connection") &&
                           !name_is(&nv, "transfer-encoding") && !name_is(&nv, "upgrade"));
                FUZZ_CHECK(!mode->hop || !name_is(&nv, mode->hop));
                if (name_is(&nv, "content-length")) {
                    FUZZ_CHECK(!has_cl);   /* one content-length */
                    FUZZ_CHECK(nv.valuelen > 0 && nv.valuelen <= 19);
                    cl = 0;
                    for (size_t i = 0; i < nv.valuelen; i++) {
                        FUZZ_CHECK(nv.value[i] >= '0' && nv.value[i] <= '9');
                        cl = cl * 10 + (uint64_t)(nv.value[i] - '0');
                    }
                    has_cl = true;
                }
            }
            k++;
        }
        if (fl & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(inf);
            break;
        }
        if (!n && !(fl & NGHTTP2_HD_INFLATE_EMIT))
            break;
    }
    FUZZ_CHECK(k > 0);
    FUZZ_CHECK(!ss->ended);
    FUZZ_CHECK(status != 101);   /* RFC 9113 8.6 */
    if (status < 200) {
        FUZZ_CHECK(status == 100 || status == 103);
        FUZZ_CHECK(!ss->status && !end_stream);   /* 1xx before the final head */
        return;
    }
    FUZZ_CHECK(!ss->status);   /* one final head */
    /* the canned answer's status, or the proxy's own error */
    FUZZ_CHECK(status == mode->status || (status >= 400 && status <= 599));
    ss->status = status;
    ss->canned = status == mode->status;
    ss->has_cl = has_cl;
    ss->cl = cl;
    if (end_stream)
        check_end(ss);
}

/* The bytes the proxy wrote are a whole number of well-formed frames. */
static void check_frames(const uint8_t *p, size_t n)
{
    nghttp2_hd_inflater *inf;
    FUZZ_CHECK(nghttp2_hd_inflate_new(&inf) == 0);
    nstreams = 0;
    uint8_t *block = NULL;
    size_t block_len = 0;
    uint32_t block_id = 0;     /* the stream of an open header block; 0 none */
    bool block_end = false;
    bool first = true;
    while (n) {
        FUZZ_CHECK(n >= 9);
        size_t len = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
        uint8_t type = p[3], flags = p[4];
        uint32_t id = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
        FUZZ_CHECK(n - 9 >= len);   /* no frame cut short */
        FUZZ_CHECK(!(id & 0x80000000u));
        const uint8_t *pl = p + 9;
        if (verbose)
            fprintf(stderr, "frame type %u flags 0x%02x stream %u length %zu\n", type, flags, id,
                    len);
        if (first) {
            FUZZ_CHECK(type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK) && id == 0);
            first = false;
        }
        FUZZ_CHECK(!block_id || type == NGHTTP2_CONTINUATION);
        switch (type) {
        case NGHTTP2_SETTINGS:
            FUZZ_CHECK(id == 0 && len % 6 == 0);
            for (size_t i = 0; i + 6 <= len; i += 6) {
                unsigned sid = (unsigned)pl[i] << 8 | pl[i + 1];
                uint32_t v = (uint32_t)pl[i + 2] << 24 | (uint32_t)pl[i + 3] << 16 |
                             (uint32_t)pl[i + 4] << 8 | pl[i + 5];
                FUZZ_CHECK(sid != NGHTTP2_SETTINGS_ENABLE_PUSH || v == 0);
            }
            break;
        case NGHTTP2_PUSH_PROMISE:
            FUZZ_CHECK(!"a PUSH_PROMISE");
            break;
        case NGHTTP2_HEADERS:
        case NGHTTP2_DATA: {
            FUZZ_CHECK(id & 1);
            struct sstate *ss = stream_state(id);
            FUZZ_CHECK(!ss->ended);
            size_t pad = 0, skip = 0;
            if (flags & NGHTTP2_FLAG_PADDED) {
                FUZZ_CHECK(len >= 1);
                pad = pl[0];
                skip = 1;
            }
            if (type == NGHTTP2_HEADERS && (flags & NGHTTP2_FLAG_PRIORITY))
                skip += 5;
            FUZZ_CHECK(len >= skip + pad);
            bool es = flags & NGHTTP2_FLAG_END_STREAM;
            if (type == NGHTTP2_DATA) {
                FUZZ_CHECK(ss->status);   /* after the final head */
                size_t dl = len - skip - pad;
                if (ss->canned) {
                    FUZZ_CHECK(ss->data + dl <= mode->body_len);
                    FUZZ_CHECK(!memcmp(pl + skip, mode->body + ss->data, dl));
                }
                ss->data += dl;
                if (es) {
                    ss->ended = true;
                    check_end(ss);
                }
                break;
            }
            block = realloc(block, len + 1);
            memcpy(block, pl + skip, len - skip - pad);
            block_len = len - skip - pad;
            block_end = es;
            if (flags & NGHTTP2_FLAG_END_HEADERS) {
                check_block(inf, ss, block, block_len, es);
                ss->ended |= es;
            } else {
                block_id = id;
            }
            break;
        }
        case NGHTTP2_CONTINUATION: {
            FUZZ_CHECK(block_id && id == block_id);
            block = realloc(block, block_len + len + 1);
            memcpy(block + block_len, pl, len);
            block_len += len;
            if (flags & NGHTTP2_FLAG_END_HEADERS) {
                struct sstate *ss = stream_state(id);
                check_block(inf, ss, block, block_len, block_end);
                ss->ended |= block_end;
                block_id = 0;
            }
            break;
        }
        default:
            FUZZ_CHECK(type <= NGHTTP2_CONTINUATION);
            break;
        }
        p += 9 + len;
        n -= 9 + len;
    }
    FUZZ_CHECK(!block_id);   /* no header block left open */
    free(block);
    nghttp2_hd_inflate_del(inf);
}

/* ---- mapped buffers ----------------------------------------------------------------- */

/* The proxy's buffers are mapped (buf.c), not malloc'd, so LeakSanitizer
 * does not see a lost one. Linked with -Wl,--wrap=mmap,--wrap=munmap (as
 * scripts/fuzz.sh does), every call the proxy makes comes here and is
 * counted: once an input is over, its mappings are all gone. */
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
static long mappings;   /* made and not yet unmapped */

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = __real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED)
        mappings++;
    return p;
}

int __wrap_munmap(void *addr, size_t len);
int __wrap_munmap(void *addr, size_t len)
{
    int r = __real_munmap(addr, len);
    if (r == 0)
        mappings--;
    return r;
}

/* ---- descriptors ------------------------------------------------------------------ */

/* Which descriptors are open: taken before an input and compared after it
 * (libFuzzer itself opens some between inputs, its symbolizer's pipes). */
static void open_fds(bool *open)
{
    for (int fd = 0; fd < FD_SPAN; fd++)
        open[fd] = fcntl(fd, F_GETFD) >= 0;
}

/* No descriptor opened by the input is left open. */
static void check_fds(const bool *before)
{
    for (int fd = 0; fd < FD_SPAN; fd++) {
        if (!before[fd] && fcntl(fd, F_GETFD) >= 0) {
            char path[64], target[256] = "";
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ssize_t tl = readlink(path, target, sizeof target - 1);
            target[tl > 0 ? tl : 0] = 0;
            if (!strncmp(target, "/proc/", 6))
                continue;   /* the sanitizer's, reporting from another thread */
            fprintf(stderr, "\nfile descriptor %d left open: %s\n", fd, target);
            FUZZ_CHECK(!"a file descriptor left open");
        }
    }
}

/* ---- the proxy --------------------------------------------------------------------- */

static void parse_cfg(struct cfg *c, const char *upstream, bool short_timeouts)
{
    /* (--listen wants a port from 1: the listener is never opened, below) */
    char *args[40] = {"fuzz_h2", "--listen", "127.0.0.1:9", "--upstream", (char *)upstream,
                      "--access-log", "/dev/null", "--log-level", "error", "--single-process"};
    int n = 10;
    static char *const short_ones[] = {
        "--connect-timeout", "100ms", "--write-timeout", "200ms", "--read-timeout", "200ms",
        "--total-timeout", "1s", "--header-timeout", "300ms", "--body-timeout", "300ms",
        "--send-timeout", "300ms", "--idle-timeout", "500ms", "--upstream-idle-timeout", "400ms",
    };
    if (short_timeouts)
        for (size_t i = 0; i < sizeof short_ones / sizeof short_ones[0]; i++)
            args[n++] = short_ones[i];
    FUZZ_CHECK(cli_parse(c, n, args) == 0);
    c->nlisten = 0;   /* no listener: client_new is called directly */
}

/* Steps until the proxy is quiet; false if it never is. */
static bool settle(int fd)
{
    unsigned quiet = 0, iters = 0;
    while (quiet < QUIET_ITERATIONS && iters < SETTLE_MAX) {
        quiet = step(fd) ? 0 : quiet + 1;
        iters++;
    }
    return quiet == QUIET_ITERATIONS;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    build_modes();

    up_listen = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(up_listen >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    FUZZ_CHECK(bind(up_listen, (struct sockaddr *)&sin, sizeof sin) == 0);
    FUZZ_CHECK(listen(up_listen, 1024) == 0);
    FUZZ_CHECK(getsockname(up_listen, (struct sockaddr *)&sin, &sl) == 0);
    static char up[32];
    snprintf(up, sizeof up, "127.0.0.1:%u", ntohs(sin.sin_port));
    parse_cfg(&cfg_up, up, false);
    parse_cfg(&cfg_up_warp, up, true);
    parse_cfg(&cfg_refuse, "127.0.0.1:1", false);   /* loopback refuses at once */
    parse_cfg(&cfg_refuse_warp, "127.0.0.1:1", true);

    verbose = getenv("HG_FUZZ_VERBOSE") != NULL;
    const char *lv = getenv("HG_FUZZ_LOG");
    log_set_level(!lv ? LOG_ERROR : !strcmp(lv, "debug") ? LOG_DEBUG
                  : !strcmp(lv, "info") ? LOG_INFO : LOG_WARN);
    /* the access log goes to /dev/null: its lines are still formatted */
    FUZZ_CHECK(log_open(cfg_up.access_log, false) == 0);
    FUZZ_CHECK(loop_init(&loop) == 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool fds_before[FD_SPAN];
    open_fds(fds_before);
    long mappings_before = mappings;
    mode = &modes[size ? data[0] % NMODES : 0];
    bool warp = size && (data[0] / NMODES) % 2;
    if (size) {
        data++;
        size--;
    }
    if (verbose)
        fprintf(stderr, "upstream: %s%s\n", mode->name, warp ? ", time warps" : "");
    const struct cfg *cfg = mode->refuse ? (warp ? &cfg_refuse_warp : &cfg_refuse)
                                         : (warp ? &cfg_up_warp : &cfg_up);
    FUZZ_CHECK(worker_init(&loop, cfg, NULL) == 0);

    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct sockaddr_storage peer = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(9);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    client_new(sv[0], &peer, CF_HTTP2, NULL);
    FUZZ_CHECK(px_nclients == 1);
    out_len = 0;

    /* the preface and the input, in as many writes as the socket takes */
    size_t total = PREFACE_LEN + size, off = 0;
    unsigned stuck = 0;
    while (off < total && stuck < SETTLE_MAX) {
        struct iovec iov[2];
        int k = 0;
        size_t doff = off > PREFACE_LEN ? off - PREFACE_LEN : 0;
        if (off < PREFACE_LEN)
            iov[k++] = (struct iovec){(char *)PREFACE + off, PREFACE_LEN - off};
        if (size > doff)
            iov[k++] = (struct iovec){(uint8_t *)data + doff, size - doff};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
        ssize_t w = sendmsg(sv[1], &mh, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN)
            break;   /* the proxy closed the connection: the rest is not read */
        if (w > 0)
            off += (size_t)w;
        bool moved = step(sv[1]);
        stuck = w > 0 || moved ? 0 : stuck + 1;
    }

    FUZZ_CHECK(settle(sv[1]));   /* the proxy settles */
    /* time warps: the earliest timer is due, again and again */
    for (int w = 0; warp && w < WARPS && px_nclients; w++) {
        struct timer *t = timer_heap_min(&loop.timers);
        if (!t)
            break;
        uint64_t now = loop_clock_ns();
        if (verbose)
            fprintf(stderr, "warp: %llu ms\n",
                    (unsigned long long)(t->at > now ? (t->at - now) / MS : 0));
        if (t->at > now)
            loop_clock_skew(t->at - now);
        FUZZ_CHECK(settle(sv[1]));
    }
    check_frames(out, out_len);

    /* the client goes away: the connection closes */
    close(sv[1]);
    unsigned iters;
    for (iters = 0; px_nclients && iters < HANGUP_MAX; iters++) {
        FUZZ_CHECK(loop_run_once(&loop, 0) >= 0);
        up_step();
    }
    FUZZ_CHECK(px_nclients == 0 && px_clients == NULL);

    worker_shutdown();
    buf_drain_pools();
    FUZZ_CHECK(loop.timers.count == 0);   /* nothing left to fire into freed memory */
    FUZZ_CHECK(loop.defer == NULL);
    loop.on_iteration_end = NULL;
    up_close_all();
    check_fds(fds_before);
    if (mappings != mappings_before)
        fprintf(stderr, "\n%ld mapping(s) (buffers) left\n", mappings - mappings_before);
    FUZZ_CHECK(mappings == mappings_before);   /* no buffer lost */
    return 0;
}
