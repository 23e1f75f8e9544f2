/* fuzz_h2up.c -- libFuzzer target: the client side of HTTP/2 toward
 * upstream servers (src/upstream/h2up.c, h2up_stream.c) and the request path
 * behind it, fed by a fuzzed upstream HTTP/2 server.
 *
 * The whole proxy is linked (every src/ file but src/app/main.c) and runs
 * as a worker does (worker_init without listeners) on one loop that this
 * target steps itself (loop_run_once), as fuzz_h2.c does. The configuration
 * is cli_parse's (the timeouts, --upstream) and an in-memory YAML file
 * (conf_parse): one pool `up` with `protocol: h2`, balance least_conn,
 * max_connections 3, whose two servers are two listening sockets on
 * 127.0.0.1 that this process serves between loop iterations; routes `/`
 * (plain), `/retry/` (3 attempts, methods all) and `/hedge/` (a hedge).
 * Nothing leaves loopback.
 *
 * Input:
 *   byte 0: the client's scenario (scens[] below, modulo their number):
 *           HTTP/1.1, HTTP/1.0 or HTTP/2 (prior knowledge); GET, HEAD,
 *           POST with a body (a length, chunked, or 40-100 KB: over the
 *           windows and buffers), pipelined requests, concurrent streams,
 *           an absolute-form target, a gRPC-like call (content-type
 *           application/grpc, grpc-timeout, te: trailers), the retried and
 *           hedged routes, expect: 100-continue; every request well-formed
 *           and carrying `x-req: N`, its index, so that each stream the
 *           servers see is tied to its request;
 *   byte 1: options, one a bit:
 *           0x01 time warps (short timeouts; once quiet, timers fired);
 *           0x02 a server closes its side once its bytes are sent;
 *           0x04 a server sends one frame per loop iteration (else all it
 *                may send at once);
 *           0x08 late bodies: each request body is written only once the
 *                proxy is quiet after its head (the body's data source
 *                waits: U_DEFERRED);
 *           0x10 a lazy client: a 4 KiB socket buffer, read only when the
 *                proxy is otherwise quiet (flow control holds the server
 *                back, send timeouts);
 *   the rest: what the upstream servers send, as HTTP/2 frames: one segment
 *           per upstream connection, in accept order, separated by SEP
 *           ("=NEXT="); a connection past the last segment gets the last
 *           one again. A segment normally starts with the server's
 *           SETTINGS (the connection preface of a server), then SETTINGS
 *           ACK, HEADERS, DATA, trailers, RST_STREAM, GOAWAY...
 *
 * Pacing: the server sends a segment's frames in order; a frame on an odd
 * (client) stream id waits until the proxy has opened that stream (sent its
 * HEADERS), so that "stream 1" is the proxy's first request on that
 * connection, "3" its second...; a DATA frame also waits for room in the
 * proxy's flow-control windows (its SETTINGS and WINDOW_UPDATEs, followed),
 * as a real server does. Once the proxy is quiet and a frame still waits,
 * it is sent anyway (a frame on an idle stream, DATA beyond the window).
 * Bytes that are no whole frame (the tail) are sent as they are.
 *
 * Per input: worker_init; a socketpair, client_new(fd0, CF_HTTP2) as a
 * plain listener does; the client's bytes written to fd1; the loop stepped,
 * the servers served and the client's answer read until the proxy is quiet;
 * with time warping, the clock moved to the earliest timer again and again
 * until the client connection is gone; fd1 closed, the loop stepped until
 * the client is closed; worker_shutdown, buf_drain_pools.
 *
 * Invariants, besides memory safety, UB and leaks (INVARIANT FAILED):
 *   - the proxy settles: quiet within a bounded number of iterations;
 *   - toward each server: the client connection preface, then a SETTINGS
 *     frame without push; no PUSH_PROMISE; HEADERS only on new odd stream
 *     ids; every header block decodes (HPACK) into a request: :method,
 *     :scheme, :authority, :path once each and first, no other pseudo-field,
 *     no upper-case name, no connection-specific field, `te` only
 *     "trailers"; the method and path the client sent; its DATA (only after
 *     its HEADERS, nothing after END_STREAM) is a prefix of the client's
 *     request body, all of it at END_STREAM (the chunked upload decoded);
 *   - toward the client (HTTP/1.1): a sequence of well-formed responses
 *     (status line, fields, no bare CR or LF, at most one Content-Length,
 *     no Transfer-Encoding but chunked and not with Content-Length, valid
 *     chunks and no trailer fields); never more final responses than
 *     requests; nothing after a `Connection: close` response; 101 never;
 *   - toward the client (HTTP/2): whole frames, the first SETTINGS;
 *     HEADERS and DATA only on the client's streams; header blocks decode,
 *     :status first, DATA after the final head, trailers without
 *     pseudo-field ending the stream, nothing after END_STREAM;
 *     content-length matches the DATA of an ended stream;
 *   - either way, for each request: a status the server sent on one of
 *     that request's streams (1xx: 100 or one it sent), or the proxy's
 *     own 500/502/503/504 (or, for a gRPC call to an HTTP/2 client, a
 *     Trailers-Only answer); no body for HEAD, 204, 304; the body is a
 *     prefix of the DATA the server sent on a stream of that request with
 *     that status, and all of it when the response ends by its framing
 *     (chunked end, END_STREAM) rather than its Content-Length;
 *   - once quiet (without time warping), a request some server answered
 *     in full (final head, END_STREAM; no reset either way, not above a
 *     GOAWAY's last stream id, the connection unbroken) has its whole
 *     answer at the client, unless the proxy closed the client connection
 *     (check_answered);
 *   - with time warping, the timeouts end it all: the client connection
 *     closes within WARPS timers;
 *   - once quiet, the proxy has closed every upstream connection it sent a
 *     GOAWAY on (its idle timeout, or nghttp2's answer to a server that
 *     broke the protocol: that session reads nothing more);
 *   - once the client has gone: no client, no HTTP/2 stream left
 *     (h2u_streams), no request, retry, waiter or active use counted in
 *     the pool; after worker_shutdown no HTTP/2 connection, no timer, nothing
 *     deferred, no descriptor opened by the input, every mapped buffer
 *     unmapped (as fuzz_h2.c checks them).
 *
 * The bugs it found (fuzz/crashes/README.md) are fixed; their inputs are
 * seeds in fuzz/corpus/h2up/ (named after them), so each run checks them.
 *
 * HG_FUZZ_VERBOSE=1 prints the frames each way and the client's answer;
 * HG_FUZZ_LOG=debug|info|warn shows the proxy's error log.
 *
 * Build and run: scripts/fuzz.sh (fuzz/README.md). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "conf.h"
#include "fuzz_common.h"
#include "h2up.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "poolshm.h"
#include "px.h"
#include "worker.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof PREFACE - 1)
static const char SEP[] = "=NEXT=";   /* between two connections' segments */
#define SEP_LEN (sizeof SEP - 1)

#define QUIET_ITERATIONS 3      /* in a row: the proxy has nothing more to do */
#define SETTLE_MAX 20000        /* iterations to become quiet */
#define HANGUP_MAX 200          /* iterations to close after the client has gone */
#define FD_SPAN 256             /* descriptors checked for leaks */
#define UP_MAX 64               /* upstream connections at once */
#define SEG_MAX 16              /* segments of an input */
#define WARPS 64                /* timers fired by warping, at most */
#define NSERVERS 2
#define MAXREQ 3

static struct loop loop;
static struct cfg cfg_plain, cfg_warp;
static bool verbose;

/* ---- the client's requests ------------------------------------------------------ */

struct creq {
    const char *method, *path;
    const char *body;            /* payload (sent as is, or chunked) */
    size_t body_len;
    bool chunked;                /* HTTP/1.1: Transfer-Encoding: chunked */
    bool grpc;
    bool http10;                 /* an HTTP/1.0 request without Host */
    const char *upath;           /* the :path expected upstream (NULL: path) */
    const char *extra;           /* more fields, "name: value\r\n" each */
};

struct scen {
    const char *name;
    bool h2;                     /* an HTTP/2 client (prior knowledge) */
    unsigned nreq;
    struct creq req[MAXREQ];
};

#define REQ(m, p, ...) {.method = m, .path = p, __VA_ARGS__}
#define BODY(x) .body = x, .body_len = sizeof x - 1
#define GRPC_FIELDS "content-type: application/grpc\r\ngrpc-timeout: 5S\r\nte: trailers\r\n"
#define GRPC_CALL REQ("POST", "/pkg.Svc/Call", BODY("\0\0\0\0\3abc"), .grpc = true, \
                      .extra = GRPC_FIELDS)
/* a body larger than the windows and buffers: filled in at start */
#define BIG_LEN 100000
static char big[BIG_LEN];
#define BIGBODY .body = big, .body_len = BIG_LEN

static const struct scen scens[] = {
    {"h1_get", false, 1, {REQ("GET", "/a")}},
    {"h1_post", false, 1, {REQ("POST", "/a", BODY("hello world"))}},
    {"h1_head", false, 1, {REQ("HEAD", "/a")}},
    {"h1_pipeline", false, 3,
     {REQ("GET", "/a"), REQ("POST", "/b", BODY("abcde")), REQ("HEAD", "/c")}},
    {"h1_chunked_post", false, 1, {REQ("POST", "/a", BODY("chunked upload body"), .chunked = true)}},
    {"h1_grpc", false, 1, {GRPC_CALL}},
    {"h1_retry_get", false, 1, {REQ("GET", "/retry/a")}},
    {"h1_retry_post", false, 1, {REQ("POST", "/retry/a", BODY("retry me"))}},
    {"h1_hedge_get", false, 2, {REQ("GET", "/hedge/a"), REQ("GET", "/hedge/b")}},
    {"h1_expect", false, 1,
     {REQ("POST", "/a", BODY("expected"), .extra = "expect: 100-continue\r\n")}},
    {"h2_get2", true, 2, {REQ("GET", "/a"), REQ("GET", "/b")}},
    {"h2_post", true, 1, {REQ("POST", "/a", BODY("hello world"))}},
    {"h2_grpc", true, 1, {GRPC_CALL}},
    {"h2_head", true, 1, {REQ("HEAD", "/a")}},
    {"h2_three", true, 3, {REQ("GET", "/a"), REQ("GET", "/retry/b"), REQ("GET", "/hedge/c")}},
    {"h2_mixed", true, 2, {REQ("POST", "/retry/a", BODY("retry me")), REQ("GET", "/b")}},
    {"h1_big_post", false, 1, {REQ("POST", "/a", BIGBODY)}},
    /* (under the 48 KiB stream window the proxy gives its clients: this
     * client sends all of it without waiting for a WINDOW_UPDATE) */
    {"h2_big_post", true, 1, {REQ("POST", "/retry/a", .body = big, .body_len = 40000)}},
    {"h1_big_chunked_post", false, 1, {REQ("POST", "/a", BIGBODY, .chunked = true)}},
    {"h10_get", false, 1, {REQ("GET", "/a", .http10 = true)}},
    {"h1_absolute", false, 2,
     {REQ("GET", "http://fuzz.test/a?q=1", .upath = "/a?q=1"),
      REQ("POST", "http://fuzz.test", BODY("x"), .upath = "/")}},
    {"h2_get_te", true, 1, {REQ("GET", "/a", .extra = "te: trailers\r\naccept: */*\r\n")}},
};
#undef REQ
#undef BODY
#undef BIGBODY
#undef GRPC_CALL
#define NSCENS (sizeof scens / sizeof scens[0])

static const struct scen *sc;

/* the client's bytes; with late bodies they are written in pieces, cut at
 * each split (before each body), the proxy settling in between */
static uint8_t cwire[2 * BIG_LEN + 8192];
static size_t cwire_len;
#define SPLITS_MAX 16
static size_t splits[SPLITS_MAX];
static unsigned nsplits;

static void cw(const void *p, size_t n)
{
    FUZZ_CHECK(cwire_len + n <= sizeof cwire);
    memcpy(cwire + cwire_len, p, n);
    cwire_len += n;
}

static void split_here(void)
{
    if (nsplits < SPLITS_MAX)
        splits[nsplits++] = cwire_len;
}

static void cws(const char *s)
{
    cw(s, strlen(s));
}

static void frame_head(size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    uint8_t h[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                    (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    cw(h, 9);
}

/* HPACK: a literal field without indexing, new name (RFC 7541 6.2.2);
 * names and values under 127 bytes. */
static size_t hp_lit(uint8_t *b, const char *name, size_t nl, const char *value, size_t vl)
{
    FUZZ_CHECK(nl < 127 && vl < 127);
    size_t n = 0;
    b[n++] = 0;
    b[n++] = (uint8_t)nl;
    memcpy(b + n, name, nl);
    n += nl;
    b[n++] = (uint8_t)vl;
    memcpy(b + n, value, vl);
    return n + vl;
}

static void build_client(void)
{
    cwire_len = 0;
    nsplits = 0;
    if (!sc->h2) {
        for (unsigned i = 0; i < sc->nreq; i++) {
            const struct creq *r = &sc->req[i];
            char h[512];
            const char *extra = r->extra ? r->extra : "";
            if (r->http10) {
                int n = snprintf(h, sizeof h, "%s %s HTTP/1.0\r\nx-req: %u\r\n\r\n", r->method,
                                 r->path, i);
                cw(h, (size_t)n);
                continue;
            }
            int n = snprintf(h, sizeof h, "%s %s HTTP/1.1\r\nHost: fuzz.test\r\nx-req: %u\r\n%s",
                             r->method, r->path, i, extra);
            cw(h, (size_t)n);
            if (r->body && r->chunked) {
                cws("Transfer-Encoding: chunked\r\n\r\n");
                split_here();
                /* two chunks (one with an extension), or 4 KiB ones */
                size_t step = r->body_len > 8192 ? 4096 : (r->body_len + 1) / 2;
                for (size_t off = 0; off < r->body_len; off += step) {
                    size_t k = r->body_len - off < step ? r->body_len - off : step;
                    n = snprintf(h, sizeof h, off ? "%zx\r\n" : "%zx;x=y\r\n", k);
                    cw(h, (size_t)n);
                    cw(r->body + off, k);
                    cws("\r\n");
                }
                cws("0\r\n\r\n");
            } else if (r->body) {
                n = snprintf(h, sizeof h, "Content-Length: %zu\r\n\r\n", r->body_len);
                cw(h, (size_t)n);
                split_here();
                cw(r->body, r->body_len);
            } else {
                cws("\r\n");
            }
        }
        return;
    }
    cw(PREFACE, PREFACE_LEN);
    /* SETTINGS: no push, the largest stream window; the connection's window
     * opened as far: the client never holds the proxy back */
    static const uint8_t settings[] = {0, 2, 0, 0, 0, 0, 0, 4, 0x7f, 0xff, 0xff, 0xff};
    frame_head(sizeof settings, NGHTTP2_SETTINGS, 0, 0);
    cw(settings, sizeof settings);
    static const uint8_t wu[] = {0x7f, 0xff, 0x00, 0x00};
    frame_head(4, NGHTTP2_WINDOW_UPDATE, 0, 0);
    cw(wu, 4);
    for (unsigned i = 0; i < sc->nreq; i++) {
        const struct creq *r = &sc->req[i];
        uint8_t blk[1024];
        size_t n = 0;
        char num[24];
        n += hp_lit(blk + n, ":method", 7, r->method, strlen(r->method));
        n += hp_lit(blk + n, ":scheme", 7, "http", 4);
        n += hp_lit(blk + n, ":authority", 10, "fuzz.test", 9);
        n += hp_lit(blk + n, ":path", 5, r->path, strlen(r->path));
        int k = snprintf(num, sizeof num, "%u", i);
        n += hp_lit(blk + n, "x-req", 5, num, (size_t)k);
        if (r->body) {
            k = snprintf(num, sizeof num, "%zu", r->body_len);
            n += hp_lit(blk + n, "content-length", 14, num, (size_t)k);
        }
        for (const char *e = r->extra; e && *e;) {
            const char *colon = strchr(e, ':'), *eol = strstr(e, "\r\n");
            n += hp_lit(blk + n, e, (size_t)(colon - e), colon + 2, (size_t)(eol - colon - 2));
            e = eol + 2;
        }
        uint32_t sid = 2 * i + 1;
        frame_head(n, NGHTTP2_HEADERS,
                   NGHTTP2_FLAG_END_HEADERS | (r->body ? 0 : NGHTTP2_FLAG_END_STREAM), sid);
        cw(blk, n);
        if (r->body) {
            split_here();
            /* 16 KiB frames: the proxy's SETTINGS_MAX_FRAME_SIZE */
            for (size_t off = 0; off < r->body_len; off += 16384) {
                size_t k = r->body_len - off < 16384 ? r->body_len - off : 16384;
                frame_head(k, NGHTTP2_DATA, off + k == r->body_len ? NGHTTP2_FLAG_END_STREAM : 0,
                           sid);
                cw(r->body + off, k);
            }
        }
    }
}

/* ---- the streams the servers saw ------------------------------------------------- */

/* One stream of one upstream connection: what the proxy sent on it and
 * what the server (the input) answered. */
struct ust {
    unsigned conn;               /* the upstream connection, by accept order */
    uint32_t sid;
    int req;                     /* the client's request (x-req), -1: unknown */
    bool head;                   /* a HEAD request */
    bool req_end;                /* the proxy's END_STREAM */
    uint64_t req_data;           /* request body bytes the proxy sent */
    /* the server's answer, as sent */
    int final;                   /* final status; 0 none yet */
    uint8_t interim[13];         /* 1xx statuses sent: bit s-100 */
    uint8_t *data;               /* DATA payload after the final head */
    size_t dlen, dcap;
    bool ended;                  /* the server's END_STREAM after the final head */
    int64_t win_adj;             /* its send window less the initial: WINDOW_UPDATEs - DATA */
    /* why the proxy may not have taken that answer (check_answered) */
    bool srv_reset;              /* the server reset it (nothing after counts) */
    bool unprocessed;            /* above the last stream id of a GOAWAY of the server's */
    bool proxy_reset;            /* the proxy reset it */
    bool conn_bad;               /* its connection broke (a GOAWAY of the proxy's with an
                                    error, an HPACK or framing error of the server's) */
};

static struct ust *usts;
static size_t nust, ust_cap;

static struct ust *ust_get(unsigned conn, uint32_t sid, bool create)
{
    for (size_t i = 0; i < nust; i++)
        if (usts[i].conn == conn && usts[i].sid == sid)
            return &usts[i];
    if (!create)
        return NULL;
    if (nust == ust_cap) {
        ust_cap = ust_cap ? ust_cap * 2 : 16;
        usts = realloc(usts, ust_cap * sizeof *usts);
        if (!usts)
            abort();
    }
    usts[nust] = (struct ust){.conn = conn, .sid = sid, .req = -1};
    return &usts[nust++];
}

static void ust_data(struct ust *u, const uint8_t *p, size_t n)
{
    if (u->dcap - u->dlen < n) {
        while (u->dcap - u->dlen < n)
            u->dcap = u->dcap ? u->dcap * 2 : 1024;
        u->data = realloc(u->data, u->dcap);
        if (!u->data)
            abort();
    }
    if (!n)
        return;
    memcpy(u->data + u->dlen, p, n);
    u->dlen += n;
}

static void usts_free(void)
{
    for (size_t i = 0; i < nust; i++)
        free(usts[i].data);
    free(usts);
    usts = NULL;
    nust = ust_cap = 0;
}

/* ---- HPACK --------------------------------------------------------------------------- */

static bool nv_is(const nghttp2_nv *nv, const char *s)
{
    return nv->namelen == strlen(s) && !memcmp(nv->name, s, nv->namelen);
}

static bool has_upper(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            return true;
    return false;
}

typedef void nv_fn(void *ctx, const nghttp2_nv *nv);

/* Decodes a whole header block, each field to fn; -1 when it does not
 * decode. */
static int inflate(nghttp2_hd_inflater *inf, const uint8_t *p, size_t n, nv_fn *fn, void *ctx)
{
    for (;;) {
        nghttp2_nv nv;
        int fl = 0;
        ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &fl, (uint8_t *)p, n, 1);
        if (r < 0)
            return -1;
        p += r;
        n -= (size_t)r;
        if (fl & NGHTTP2_HD_INFLATE_EMIT) {
            if (verbose)
                fprintf(stderr, "      %.*s: %.*s\n", (int)nv.namelen, nv.name,
                        (int)(nv.valuelen > 200 ? 200 : nv.valuelen), nv.value);
            fn(ctx, &nv);
        }
        if (fl & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(inf);
            return 0;
        }
        if (!n && !(fl & NGHTTP2_HD_INFLATE_EMIT))
            return 0;
    }
}

/* 3 digits, else -1 */
static int status_of(const uint8_t *v, size_t n)
{
    if (n != 3)
        return -1;
    for (int i = 0; i < 3; i++)
        if (v[i] < '0' || v[i] > '9')
            return -1;
    return (v[0] - '0') * 100 + (v[1] - '0') * 10 + v[2] - '0';
}

/* A frame's payload without its padding (and priority for HEADERS); false
 * when the lengths do not add up. */
static bool frame_payload(uint8_t type, uint8_t flags, const uint8_t *pl, size_t len,
                          const uint8_t **out, size_t *out_len)
{
    size_t skip = 0, pad = 0;
    if ((type == NGHTTP2_DATA || type == NGHTTP2_HEADERS) && (flags & NGHTTP2_FLAG_PADDED)) {
        if (len < 1)
            return false;
        pad = pl[0];
        skip = 1;
    }
    if (type == NGHTTP2_HEADERS && (flags & NGHTTP2_FLAG_PRIORITY))
        skip += 5;
    if (len < skip + pad)
        return false;
    *out = pl + skip;
    *out_len = len - skip - pad;
    return true;
}

/* ---- the upstream servers ----------------------------------------------------------- */

struct upc {
    int fd;
    unsigned serial;             /* accept order */
    /* what the server sends: a segment of the input */
    const uint8_t *seg;
    size_t seg_len, rel, sent;   /* released for sending up to rel; written up to sent */
    bool shut;
    /* what the proxy sent */
    uint8_t *in;
    size_t in_len;
    bool preface, settings;      /* its preface and first SETTINGS seen */
    bool goaway;                 /* the proxy sent GOAWAY: it closes the connection */
    uint32_t goaway_code;        /* ... with this error code */
    uint32_t max_sid;            /* the highest stream it opened */
    int64_t conn_win, init_win;  /* the server's send windows (the proxy's SETTINGS, updates) */
    nghttp2_hd_inflater *req_inf, *resp_inf;
    uint8_t *pblock;             /* the proxy's header block being assembled */
    size_t pblock_len;
    uint32_t pblock_sid;
    bool pblock_es;
    uint8_t *sblock;             /* the server's */
    size_t sblock_len;
    uint32_t sblock_sid;
    bool sblock_es, sbroken;     /* sbroken: the server's HPACK no longer followed */
    bool sblock_push;            /* the block is a PUSH_PROMISE's: no response */
    uint32_t srv_goaway_last;    /* the lowest last stream id of the server's GOAWAYs */
};

static int up_listen[NSERVERS] = {-1, -1};
static struct upc ups[UP_MAX];
static unsigned nups, nserial;
static const uint8_t *segs[SEG_MAX];
static size_t seg_lens[SEG_MAX];
static unsigned nsegs;
/* the options (byte 1 of the input) */
static bool up_close_after, up_one_frame, late_bodies, lazy_reads;

static void block_add(uint8_t **b, size_t *bl, const uint8_t *p, size_t n)
{
    *b = realloc(*b, *bl + n + 1);
    if (!*b)
        abort();
    memcpy(*b + *bl, p, n);
    *bl += n;
}

static void up_free(struct upc *u)
{
    close(u->fd);
    free(u->in);
    free(u->pblock);
    free(u->sblock);
    nghttp2_hd_inflate_del(u->req_inf);
    nghttp2_hd_inflate_del(u->resp_inf);
}

static void up_drop(unsigned i)
{
    up_free(&ups[i]);
    ups[i] = ups[--nups];
}

/* -- what the server sends, followed as the proxy reads it -- */

struct sblock_ctx {
    int status;
    bool first;
};

static void on_server_nv(void *ctx, const nghttp2_nv *nv)
{
    struct sblock_ctx *x = ctx;
    if (x->first && nv_is(nv, ":status"))
        x->status = status_of(nv->value, nv->valuelen);
    x->first = false;
}

/* The connection broke: none of its streams' answers need reach the client. */
static void conn_broke(struct upc *u)
{
    u->sbroken = true;
    for (size_t i = 0; i < nust; i++)
        if (usts[i].conn == u->serial)
            usts[i].conn_bad = true;
}

static void server_block(struct upc *u, uint32_t sid, const uint8_t *p, size_t n, bool es)
{
    struct sblock_ctx x = {.status = -1, .first = true};
    if (u->sbroken)
        return;
    if (inflate(u->resp_inf, p, n, on_server_nv, &x) < 0) {
        conn_broke(u);   /* the proxy fails the connection */
        return;
    }
    if (u->sblock_push)
        return;   /* (decoded all the same: the HPACK table is the connection's) */
    struct ust *s = ust_get(u->serial, sid, true);
    if (sid > u->srv_goaway_last)
        s->unprocessed = true;
    if (s->ended || s->srv_reset)
        return;
    if (!s->final) {
        if (x.status >= 100 && x.status < 200)
            s->interim[(x.status - 100) / 8] |= (uint8_t)(1u << ((x.status - 100) % 8));
        else if (x.status >= 200) {
            s->final = x.status;
            s->ended = es;
        }
        return;
    }
    s->ended = es;   /* trailers */
}

/* A whole frame the server sends: the answers it makes, as the proxy will
 * read them. */
static void server_frame(struct upc *u, const uint8_t *p, size_t flen)
{
    size_t len = flen - 9;
    uint8_t type = p[3], flags = p[4];
    uint32_t sid = ((uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8]) &
                   0x7fffffffu;
    const uint8_t *pl = p + 9, *body;
    size_t blen;
    if (verbose)
        fprintf(stderr, "  server[%u] -> type %u flags 0x%02x stream %u length %zu\n", u->serial,
                type, flags, sid, len);
    if (u->sblock_sid && type != NGHTTP2_CONTINUATION)
        conn_broke(u);   /* a connection error for the proxy */
    switch (type) {
    case NGHTTP2_HEADERS:
        if (!frame_payload(type, flags, pl, len, &body, &blen))
            break;
        free(u->sblock);
        u->sblock = NULL;
        u->sblock_len = 0;
        block_add(&u->sblock, &u->sblock_len, body, blen);
        u->sblock_es = flags & NGHTTP2_FLAG_END_STREAM;
        u->sblock_sid = sid;
        u->sblock_push = false;
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
            server_block(u, sid, u->sblock, u->sblock_len, u->sblock_es);
            u->sblock_sid = 0;
        }
        break;
    case NGHTTP2_CONTINUATION:
        if (!u->sblock_sid || u->sblock_sid != sid) {
            conn_broke(u);
            break;
        }
        block_add(&u->sblock, &u->sblock_len, pl, len);
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
            server_block(u, sid, u->sblock, u->sblock_len, u->sblock_es);
            u->sblock_sid = 0;
        }
        break;
    case NGHTTP2_PUSH_PROMISE:
        /* Push is off once the server has acknowledged the proxy's
         * SETTINGS (then a connection error); before, nghttp2 takes it and
         * decodes its header block, as this does */
        if (!frame_payload(NGHTTP2_DATA, flags, pl, len, &body, &blen) || blen < 4) {
            conn_broke(u);
            break;
        }
        free(u->sblock);
        u->sblock = NULL;
        u->sblock_len = 0;
        block_add(&u->sblock, &u->sblock_len, body + 4, blen - 4);
        u->sblock_es = false;
        u->sblock_sid = sid;
        u->sblock_push = true;
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
            server_block(u, sid, u->sblock, u->sblock_len, false);
            u->sblock_sid = 0;
        }
        break;
    case NGHTTP2_DATA: {
        struct ust *s = ust_get(u->serial, sid, false);
        if (!s || !s->final || s->ended || s->srv_reset ||
            !frame_payload(type, flags, pl, len, &body, &blen))
            break;
        if (sid > u->srv_goaway_last)
            s->unprocessed = true;
        ust_data(s, body, blen);
        s->ended = flags & NGHTTP2_FLAG_END_STREAM;
        break;
    }
    case NGHTTP2_RST_STREAM: {
        struct ust *s = ust_get(u->serial, sid, false);
        if (s && !s->ended)
            s->srv_reset = true;
        break;
    }
    case NGHTTP2_GOAWAY:
        if (len >= 8) {
            uint32_t last = ((uint32_t)pl[0] << 24 | (uint32_t)pl[1] << 16 |
                             (uint32_t)pl[2] << 8 | pl[3]) & 0x7fffffffu;
            if (last < u->srv_goaway_last)
                u->srv_goaway_last = last;
        }
        break;
    }
}

/* Releases the next frames of the segment while the proxy has opened their
 * streams (force: the first one in any case). Whether any was released. */
static bool up_release(struct upc *u, bool force)
{
    bool any = false;
    while (u->rel < u->seg_len) {
        const uint8_t *p = u->seg + u->rel;
        size_t left = u->seg_len - u->rel, flen = left;
        if (left >= 9) {
            size_t l = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
            uint32_t sid =
                ((uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8]) &
                0x7fffffffu;
            if (9 + l <= left) {
                if ((sid & 1) && sid > u->max_sid && !force)
                    break;
                /* DATA waits for the proxy's flow-control windows too */
                struct ust *s = p[3] == NGHTTP2_DATA ? ust_get(u->serial, sid, false) : NULL;
                if (s && !force && ((int64_t)l > u->conn_win || (int64_t)l > u->init_win + s->win_adj))
                    break;
                if (s) {
                    u->conn_win -= (int64_t)l;
                    s->win_adj -= (int64_t)l;
                }
                flen = 9 + l;
                server_frame(u, p, flen);
            } else if (p[3] == NGHTTP2_DATA) {
                /* a DATA frame cut short: nghttp2 passes on the payload it
                 * has (after the pad length), as far as the frame goes */
                struct ust *s = ust_get(u->serial, sid, false);
                size_t skip = (p[4] & NGHTTP2_FLAG_PADDED) ? 1 : 0;
                if (s && s->final && !s->ended && left > 9 + skip)
                    ust_data(s, p + 9 + skip, left - 9 - skip);
            }
        }
        if (flen == left && verbose && (left < 9 || flen != 9 + ((size_t)p[0] << 16 |
                                                                (size_t)p[1] << 8 | p[2])))
            fprintf(stderr, "  server[%u] -> %zu bytes (no whole frame)\n", u->serial, left);
        u->rel += flen;
        any = true;
        force = false;
        if (up_one_frame)
            break;
    }
    return any;
}

/* -- what the proxy sends -- */

struct rblock_ctx {
    struct ust *s;
    const struct creq *r;
    unsigned k;                  /* fields so far */
    bool regular;                /* a regular field seen */
    unsigned method, scheme, authority, path;
    char mv[16], pv[64];         /* :method and :path (cut) */
    size_t ml, pvl;
};

static void on_request_nv(void *ctx, const nghttp2_nv *nv)
{
    struct rblock_ctx *x = ctx;
    FUZZ_CHECK(nv->namelen > 0);
    FUZZ_CHECK(!has_upper(nv->name, nv->namelen));
    if (nv->name[0] == ':') {
        FUZZ_CHECK(!x->regular);   /* pseudo-fields first */
        if (nv_is(nv, ":method")) {
            x->method++;
            x->ml = nv->valuelen < sizeof x->mv ? nv->valuelen : sizeof x->mv;
            memcpy(x->mv, nv->value, x->ml);
            x->s->head = nv->valuelen == 4 && !memcmp(nv->value, "HEAD", 4);
        } else if (nv_is(nv, ":scheme")) {
            x->scheme++;
            FUZZ_CHECK(nv->valuelen == 4 && !memcmp(nv->value, "http", 4));
        } else if (nv_is(nv, ":authority")) {
            x->authority++;
        } else if (nv_is(nv, ":path")) {
            x->path++;
            x->pvl = nv->valuelen < sizeof x->pv ? nv->valuelen : sizeof x->pv;
            memcpy(x->pv, nv->value, x->pvl);
        } else {
            FUZZ_CHECK(!"a pseudo-field of no request");
        }
    } else {
        x->regular = true;
        FUZZ_CHECK(!nv_is(nv, "connection") && !nv_is(nv, "keep-alive") &&
                   !nv_is(nv, "proxy-connection") && !nv_is(nv, "transfer-encoding") &&
                   !nv_is(nv, "upgrade") && !nv_is(nv, "host"));
        if (nv_is(nv, "te"))
            FUZZ_CHECK(nv->valuelen == 8 && !memcmp(nv->value, "trailers", 8));
        if (nv_is(nv, "x-req")) {
            FUZZ_CHECK(x->s->req < 0);
            FUZZ_CHECK(nv->valuelen == 1 && nv->value[0] >= '0' &&
                       nv->value[0] < '0' + (int)sc->nreq);
            x->s->req = nv->value[0] - '0';
        }
    }
    x->k++;
}

/* The proxy's header block on stream sid: a request of the client's. */
static void request_block(struct upc *u, uint32_t sid, bool es)
{
    struct ust *s = ust_get(u->serial, sid, true);
    s->conn_bad |= u->sbroken;
    struct rblock_ctx x = {.s = s};
    FUZZ_CHECK(inflate(u->req_inf, u->pblock, u->pblock_len, on_request_nv, &x) == 0);
    FUZZ_CHECK(x.method == 1 && x.scheme == 1 && x.authority == 1 && x.path == 1);
    FUZZ_CHECK(s->req >= 0);   /* x-req is passed on */
    /* the method and path the client sent, the body it announced */
    const struct creq *r = &sc->req[s->req];
    FUZZ_CHECK(x.ml == strlen(r->method) && !memcmp(x.mv, r->method, x.ml));
    const char *want = r->upath ? r->upath : r->path;
    FUZZ_CHECK(x.pvl == strlen(want) && !memcmp(x.pv, want, x.pvl));
    s->req_end = es;
    if (es)
        FUZZ_CHECK(r->body_len == 0);
}

/* A whole frame the proxy sent to u (len: its payload's length). */
static void proxy_frame(struct upc *u, const uint8_t *p, size_t len)
{
    uint8_t type = p[3], flags = p[4];
    uint32_t sid = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
    const uint8_t *pl = p + 9, *body;
    size_t blen;
    if (verbose)
        fprintf(stderr, "  proxy -> server[%u] type %u flags 0x%02x stream %u length %zu\n",
                u->serial, type, flags, sid, len);
    FUZZ_CHECK(!(sid & 0x80000000u));
    if (!u->settings) {
        FUZZ_CHECK(type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK) && sid == 0);
        u->settings = true;
    }
    FUZZ_CHECK(!u->pblock_sid || type == NGHTTP2_CONTINUATION);
    switch (type) {
    case NGHTTP2_SETTINGS:
        FUZZ_CHECK(sid == 0 && len % 6 == 0);
        FUZZ_CHECK(!(flags & NGHTTP2_FLAG_ACK) || len == 0);
        for (size_t i = 0; i + 6 <= len; i += 6) {
            unsigned id = (unsigned)pl[i] << 8 | pl[i + 1];
            uint32_t v = (uint32_t)pl[i + 2] << 24 | (uint32_t)pl[i + 3] << 16 |
                         (uint32_t)pl[i + 4] << 8 | pl[i + 5];
            FUZZ_CHECK(id != NGHTTP2_SETTINGS_ENABLE_PUSH || v == 0);
            if (id == NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE)
                u->init_win = v;
        }
        break;
    case NGHTTP2_PUSH_PROMISE:
        FUZZ_CHECK(!"a PUSH_PROMISE from the proxy");
        break;
    case NGHTTP2_HEADERS:
        FUZZ_CHECK((sid & 1) && sid > u->max_sid);   /* a new stream: a request */
        u->max_sid = sid;
        FUZZ_CHECK(frame_payload(type, flags, pl, len, &body, &blen));
        free(u->pblock);
        u->pblock = NULL;
        u->pblock_len = 0;
        block_add(&u->pblock, &u->pblock_len, body, blen);
        u->pblock_es = flags & NGHTTP2_FLAG_END_STREAM;
        u->pblock_sid = sid;
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
            request_block(u, sid, u->pblock_es);
            u->pblock_sid = 0;
        }
        break;
    case NGHTTP2_CONTINUATION:
        FUZZ_CHECK(u->pblock_sid && sid == u->pblock_sid);
        block_add(&u->pblock, &u->pblock_len, pl, len);
        if (flags & NGHTTP2_FLAG_END_HEADERS) {
            request_block(u, sid, u->pblock_es);
            u->pblock_sid = 0;
        }
        break;
    case NGHTTP2_DATA: {
        FUZZ_CHECK((sid & 1) && sid <= u->max_sid);
        struct ust *s = ust_get(u->serial, sid, false);
        FUZZ_CHECK(s && s->req >= 0);
        FUZZ_CHECK(!s->req_end);   /* nothing after END_STREAM */
        FUZZ_CHECK(frame_payload(type, flags, pl, len, &body, &blen));
        const struct creq *r = &sc->req[s->req];
        /* the client's body, as sent or decoded from its chunks */
        FUZZ_CHECK(s->req_data + blen <= r->body_len);
        FUZZ_CHECK(!memcmp(body, r->body + s->req_data, blen));
        s->req_data += blen;
        if (flags & NGHTTP2_FLAG_END_STREAM) {
            s->req_end = true;
            FUZZ_CHECK(s->req_data == r->body_len);
        }
        break;
    }
    case NGHTTP2_RST_STREAM: {
        FUZZ_CHECK(len == 4 && sid != 0);
        struct ust *s = ust_get(u->serial, sid, false);
        if (s)
            s->proxy_reset = true;
        break;
    }
    case NGHTTP2_PING:
        FUZZ_CHECK(len == 8 && sid == 0);
        break;
    case NGHTTP2_GOAWAY:
        FUZZ_CHECK(len >= 8 && sid == 0);
        u->goaway = true;
        u->goaway_code = (uint32_t)pl[4] << 24 | (uint32_t)pl[5] << 16 | (uint32_t)pl[6] << 8 |
                         pl[7];
        if (u->goaway_code != NGHTTP2_NO_ERROR)
            conn_broke(u);
        break;
    case NGHTTP2_WINDOW_UPDATE: {
        FUZZ_CHECK(len == 4);
        uint32_t inc = ((uint32_t)pl[0] << 24 | (uint32_t)pl[1] << 16 | (uint32_t)pl[2] << 8 |
                        pl[3]) & 0x7fffffffu;
        FUZZ_CHECK(inc > 0);
        struct ust *s = sid ? ust_get(u->serial, sid, false) : NULL;
        if (!sid)
            u->conn_win += inc;
        else if (s)
            s->win_adj += inc;
        break;
    }
    case NGHTTP2_PRIORITY:
        FUZZ_CHECK(len == 5 && sid != 0);
        break;
    default:
        FUZZ_CHECK(!"a frame of an unknown type from the proxy");
    }
}

/* Takes what the proxy sent to u: its preface, then whole frames. */
static void proxy_bytes(struct upc *u, const uint8_t *b, size_t n)
{
    block_add(&u->in, &u->in_len, b, n);
    size_t off = 0;
    if (!u->preface) {
        if (u->in_len < PREFACE_LEN) {
            FUZZ_CHECK(!memcmp(u->in, PREFACE, u->in_len));
            return;
        }
        FUZZ_CHECK(!memcmp(u->in, PREFACE, PREFACE_LEN));
        u->preface = true;
        off = PREFACE_LEN;
    }
    while (u->in_len - off >= 9) {
        const uint8_t *p = u->in + off;
        size_t len = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
        if (u->in_len - off < 9 + len)
            break;
        proxy_frame(u, p, len);
        off += 9 + len;
    }
    memmove(u->in, u->in + off, u->in_len - off);
    u->in_len -= off;
}

/* Accepts, reads what the proxy sends, sends what the segments hold.
 * Whether anything moved. */
static bool up_step(void)
{
    bool moved = false;
    for (int l = 0; l < NSERVERS; l++)
        for (;;) {
            int fd = accept4(up_listen[l], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            FUZZ_CHECK(nups < UP_MAX);
            /* no Nagle: a small frame must not wait for the ACK of the last
             * one (a delayed ACK, 40 ms), else a quiet proxy is no proof */
            int one = 1;
            FUZZ_CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
            struct upc *u = &ups[nups++];
            *u = (struct upc){.fd = fd, .serial = nserial++, .conn_win = 65535,
                              .init_win = 65535, .srv_goaway_last = 0x7fffffffu};
            unsigned k = u->serial < nsegs ? u->serial : nsegs - 1;
            u->seg = segs[k];
            u->seg_len = seg_lens[k];
            FUZZ_CHECK(nghttp2_hd_inflate_new(&u->req_inf) == 0);
            FUZZ_CHECK(nghttp2_hd_inflate_new(&u->resp_inf) == 0);
            if (verbose)
                fprintf(stderr, "server %d: connection %u (segment %u, %zu bytes)\n", l,
                        u->serial, k, u->seg_len);
            moved = true;
        }
    for (unsigned i = 0; i < nups;) {
        struct upc *u = &ups[i];
        uint8_t b[16384];
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
            proxy_bytes(u, b, (size_t)n);
        }
        if (eof) {
            if (verbose)
                fprintf(stderr, "server: connection %u closed by the proxy\n", u->serial);
            up_drop(i);
            moved = true;
            continue;
        }
        if (up_release(u, false))
            moved = true;
        while (u->sent < u->rel) {
            ssize_t w = send(u->fd, u->seg + u->sent, u->rel - u->sent, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            u->sent += (size_t)w;
            moved = true;
        }
        if (up_close_after && !u->shut && u->sent == u->seg_len) {
            shutdown(u->fd, SHUT_WR);
            u->shut = true;
            moved = true;
        }
        i++;
    }
    return moved;
}

/* The proxy is quiet and a frame waits for a stream the proxy did not
 * open: sent anyway (the first connection's). Whether one was. */
static bool up_force(void)
{
    for (unsigned i = 0; i < nups; i++)
        if (ups[i].rel < ups[i].seg_len && up_release(&ups[i], true))
            return true;
    return false;
}

static void up_close_all(void)
{
    for (int l = 0; l < NSERVERS; l++)
        for (int fd; (fd = accept4(up_listen[l], NULL, NULL, SOCK_CLOEXEC)) >= 0;)
            close(fd);
    while (nups)
        up_drop(nups - 1);
}

/* ---- the client's side ---------------------------------------------------------------- */

static uint8_t *out;            /* every byte read from fd1 */
static size_t out_len, out_cap;
static bool out_eof;

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
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            out_eof = true;
        if (n <= 0)
            return got;
        out_len += (size_t)n;
        got += (size_t)n;
    }
}

/* the requests the client has a whole answer to (or a reset stream) */
static bool answered[MAXREQ];

static bool proxy_own(int status)
{
    return status == 500 || status == 502 || status == 503 || status == 504;
}

/* An interim status the client got for request ri. */
static void check_interim(unsigned ri, int st)
{
    FUZZ_CHECK(st != 101);
    if (st == 100)
        return;   /* (the proxy's own, for expect: 100-continue) */
    for (size_t i = 0; i < nust; i++)
        if (usts[i].req == (int)ri &&
            (usts[i].interim[(st - 100) / 8] & (1u << ((st - 100) % 8))))
            return;
    FUZZ_CHECK(!"an interim status no server sent for this request");
}

/* The final response the client got for request ri: status st, body b
 * (n bytes); whole: it ended as framed; by_length: framed by a
 * content-length; own_ok: it may be the proxy's own (a gRPC
 * Trailers-Only). */
static void check_answer(unsigned ri, int st, const uint8_t *b, size_t n, bool whole,
                         bool by_length, bool own_ok)
{
    const struct creq *r = &sc->req[ri];
    bool head = !strcmp(r->method, "HEAD");
    bool bodyless = head || st == 204 || st == 304;
    if (verbose)
        fprintf(stderr, "client: request %u answered %d, %zu body bytes%s%s\n", ri, st, n,
                whole ? ", whole" : "", by_length ? ", by length" : "");
    if (bodyless)
        FUZZ_CHECK(n == 0);
    if (proxy_own(st) || own_ok)
        return;
    bool status_seen = false;
    for (size_t i = 0; i < nust; i++) {
        const struct ust *s = &usts[i];
        if (s->req != (int)ri || s->final != st)
            continue;
        status_seen = true;
        if (bodyless)
            return;
        if (n > s->dlen || (n && memcmp(b, s->data, n)))
            continue;   /* not this stream's DATA */
        if (!whole || by_length || r->grpc || r->http10)
            return;   /* a prefix, as far as it went (an HTTP/1.0 client's body
                         ends with the connection: a cut looks like an end) */
        if (n == s->dlen && s->ended)
            return;   /* all of it */
    }
    FUZZ_CHECK(status_seen);   /* a status no server sent for this request */
    FUZZ_CHECK(!"a body not the DATA of any stream of this request");
}

/* -- HTTP/1.1 -- */

static bool ieq(const uint8_t *a, size_t n, const char *s)
{
    return n == strlen(s) && !strncasecmp((const char *)a, s, n);
}

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

static uint8_t *body_buf;
static size_t body_cap;

static void body_add(size_t *bl, const uint8_t *p, size_t n)
{
    if (!n)
        return;
    if (body_cap - *bl < n) {
        while (body_cap - *bl < n)
            body_cap = body_cap ? body_cap * 2 : 65536;
        body_buf = realloc(body_buf, body_cap);
        if (!body_buf)
            abort();
    }
    memcpy(body_buf + *bl, p, n);
    *bl += n;
}

/* The responses of an HTTP/1.1 connection, in order. */
static void check_h1(void)
{
    const uint8_t *p = out, *end = out + out_len;
    unsigned ri = 0;
    bool closed = false;
    while (p < end) {
        FUZZ_CHECK(!closed);   /* nothing after a Connection: close response */
        const uint8_t *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            break;   /* a head cut short */
        /* the status line */
        const uint8_t *eol = find_crlf(p, end);
        FUZZ_CHECK((size_t)(eol - p) >= 13 && !memcmp(p, "HTTP/1.1 ", 9) && p[12] == ' ');
        int st = status_of(p + 9, 3);
        FUZZ_CHECK(st >= 100);   /* (600-999 pass, as from an HTTP/1.1 server: http.c) */
        for (const uint8_t *q = p + 13; q < eol; q++)
            FUZZ_CHECK(*q == '\t' || (*q >= 0x20 && *q != 0x7f));
        /* the fields */
        int ncl = 0, nte = 0;
        uint64_t cl = 0;
        bool chunked = false, close = false;
        for (const uint8_t *l = eol + 2; l < hend + 2;) {
            const uint8_t *le = find_crlf(l, hend + 2);
            const uint8_t *colon = memchr(l, ':', (size_t)(le - l));
            FUZZ_CHECK(colon && colon > l);
            for (const uint8_t *q = l; q < colon; q++)
                FUZZ_CHECK(fz_tchar(*q));
            const uint8_t *v = colon + 1, *ve = le;
            while (v < ve && fz_ws(*v))
                v++;
            while (ve > v && fz_ws(ve[-1]))
                ve--;
            for (const uint8_t *q = v; q < ve; q++)
                FUZZ_CHECK(fz_value_char(*q));
            size_t nl = (size_t)(colon - l), vl = (size_t)(ve - v);
            if (ieq(l, nl, "content-length")) {
                ncl++;
                FUZZ_CHECK(vl > 0 && vl <= 18);
                cl = 0;
                for (size_t i = 0; i < vl; i++) {
                    FUZZ_CHECK(v[i] >= '0' && v[i] <= '9');
                    cl = cl * 10 + (uint64_t)(v[i] - '0');
                }
            } else if (ieq(l, nl, "transfer-encoding")) {
                nte++;
                FUZZ_CHECK(ieq(v, vl, "chunked"));
                chunked = true;
            } else if (ieq(l, nl, "connection")) {
                for (const uint8_t *q = v; q + 5 <= ve; q++)
                    if (!strncasecmp((const char *)q, "close", 5))
                        close = true;
            }
            l = le + 2;
        }
        FUZZ_CHECK(ncl <= 1 && nte <= 1 && !(ncl && nte));
        FUZZ_CHECK(ri < sc->nreq);   /* never a response to a request not sent */
        FUZZ_CHECK(!(sc->req[ri].http10 && chunked));   /* HTTP/1.0 knows no chunks */
        p = hend + 4;
        if (verbose)
            fprintf(stderr, "client: HTTP/1.1 %d for request %u\n", st, ri);
        if (st < 200) {
            FUZZ_CHECK(!ncl && !nte);
            check_interim(ri, st);
            continue;
        }
        const struct creq *r = &sc->req[ri];
        bool bodyless = !strcmp(r->method, "HEAD") || st == 204 || st == 304;
        size_t bl = 0;
        bool whole = false;
        if (bodyless) {
            whole = true;
        } else if (ncl) {
            size_t k = (uint64_t)(end - p) < cl ? (size_t)(end - p) : (size_t)cl;
            body_add(&bl, p, k);
            p += k;
            whole = bl == cl;
        } else if (chunked) {
            for (;;) {
                const uint8_t *ce = find_crlf(p, end);
                if (!ce) {
                    p = end;
                    break;
                }
                uint64_t size = 0;
                const uint8_t *q = p;
                for (; q < ce && fz_hex(*q) >= 0; q++) {
                    FUZZ_CHECK(size < (1ull << 40));
                    size = size * 16 + (uint64_t)fz_hex(*q);
                }
                FUZZ_CHECK(q > p && (q == ce || *q == ';'));
                p = ce + 2;
                if (!size) {
                    /* the last chunk: no trailer field for an HTTP/1.1 client */
                    if (end - p >= 2) {
                        FUZZ_CHECK(p[0] == '\r' && p[1] == '\n');
                        p += 2;
                        whole = true;
                    } else {
                        p = end;
                    }
                    break;
                }
                if ((uint64_t)(end - p) < size + 2) {
                    size_t k = (uint64_t)(end - p) < size ? (size_t)(end - p) : (size_t)size;
                    body_add(&bl, p, k);
                    p = end;
                    break;
                }
                body_add(&bl, p, (size_t)size);
                p += size;
                FUZZ_CHECK(p[0] == '\r' && p[1] == '\n');
                p += 2;
            }
        } else {
            /* until the connection closes */
            body_add(&bl, p, (size_t)(end - p));
            p = end;
            whole = out_eof;
            close = true;
        }
        check_answer(ri, st, body_buf, bl, whole, ncl > 0, false);
        if (!whole)
            break;   /* cut short: the end */
        answered[ri] = true;
        closed = close;
        ri++;
    }
}

/* -- HTTP/2 -- */

struct cst {
    int status;                  /* final; 0 none yet */
    bool ended, reset, grpc_head, has_cl, trailers;
    uint64_t cl;
    size_t blen;
    uint8_t *body;
};

struct cblock_ctx {
    unsigned k;
    int status;
    bool grpc_status, has_cl;
    uint64_t cl;
    bool trailers;
};

static void on_client_nv(void *ctx, const nghttp2_nv *nv)
{
    struct cblock_ctx *x = ctx;
    if (x->k == 0 && !x->trailers) {
        FUZZ_CHECK(nv_is(nv, ":status"));
        x->status = status_of(nv->value, nv->valuelen);
        FUZZ_CHECK(x->status >= 100);
    } else {
        FUZZ_CHECK(nv->namelen > 0 && nv->name[0] != ':');
        FUZZ_CHECK(!has_upper(nv->name, nv->namelen));
        FUZZ_CHECK(!nv_is(nv, "connection") && !nv_is(nv, "keep-alive") &&
                   !nv_is(nv, "proxy-connection") && !nv_is(nv, "transfer-encoding") &&
                   !nv_is(nv, "upgrade"));
        if (nv_is(nv, "grpc-status"))
            x->grpc_status = true;
        if (nv_is(nv, "content-length") && !x->trailers) {
            FUZZ_CHECK(!x->has_cl);
            FUZZ_CHECK(nv->valuelen > 0 && nv->valuelen <= 18);
            x->cl = 0;
            for (size_t i = 0; i < nv->valuelen; i++) {
                FUZZ_CHECK(nv->value[i] >= '0' && nv->value[i] <= '9');
                x->cl = x->cl * 10 + (uint64_t)(nv->value[i] - '0');
            }
            x->has_cl = true;
        }
    }
    x->k++;
}

static void client_block(nghttp2_hd_inflater *inf, struct cst *cs, unsigned ri, const uint8_t *p,
                         size_t n, bool es)
{
    struct cblock_ctx x = {.trailers = cs->status != 0};
    FUZZ_CHECK(!cs->ended);
    FUZZ_CHECK(inflate(inf, p, n, on_client_nv, &x) == 0);
    if (x.trailers) {
        FUZZ_CHECK(es);   /* trailers end the stream */
        cs->trailers = true;
        cs->ended = true;
        return;
    }
    FUZZ_CHECK(x.k > 0);
    if (x.status < 200) {
        FUZZ_CHECK(!es);
        check_interim(ri, x.status);
        return;
    }
    cs->status = x.status;
    cs->grpc_head = x.grpc_status;
    cs->has_cl = x.has_cl;
    cs->cl = x.cl;
    cs->ended = es;
}

static void check_h2(void)
{
    struct cst cs[MAXREQ] = {0};
    nghttp2_hd_inflater *inf;
    FUZZ_CHECK(nghttp2_hd_inflate_new(&inf) == 0);
    uint8_t *block = NULL;
    size_t block_len = 0;
    uint32_t block_id = 0;
    bool block_es = false, first = true;
    const uint8_t *p = out;
    size_t n = out_len;
    while (n >= 9) {
        size_t len = (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
        uint8_t type = p[3], flags = p[4];
        uint32_t id = (uint32_t)p[5] << 24 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 8 | p[8];
        if (n - 9 < len)
            break;   /* cut short (the proxy closed) */
        const uint8_t *pl = p + 9, *body;
        size_t blen;
        if (verbose)
            fprintf(stderr, "  proxy -> client type %u flags 0x%02x stream %u length %zu\n", type,
                    flags, id, len);
        FUZZ_CHECK(!(id & 0x80000000u));
        if (first) {
            FUZZ_CHECK(type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK) && id == 0);
            first = false;
        }
        FUZZ_CHECK(!block_id || type == NGHTTP2_CONTINUATION);
        struct cst *c = NULL;
        unsigned ri = 0;
        if (type == NGHTTP2_HEADERS || type == NGHTTP2_DATA || type == NGHTTP2_CONTINUATION) {
            /* the client's streams only: no answer to a request not sent */
            FUZZ_CHECK((id & 1) && id < 2 * sc->nreq);
            ri = (id - 1) / 2;
            c = &cs[ri];
            FUZZ_CHECK(!c->ended && !c->reset);
        }
        switch (type) {
        case NGHTTP2_PUSH_PROMISE:
            FUZZ_CHECK(!"a PUSH_PROMISE");
            break;
        case NGHTTP2_HEADERS:
            FUZZ_CHECK(frame_payload(type, flags, pl, len, &body, &blen));
            free(block);
            block = NULL;
            block_len = 0;
            block_add(&block, &block_len, body, blen);
            block_es = flags & NGHTTP2_FLAG_END_STREAM;
            if (flags & NGHTTP2_FLAG_END_HEADERS)
                client_block(inf, c, ri, block, block_len, block_es);
            else
                block_id = id;
            break;
        case NGHTTP2_CONTINUATION:
            FUZZ_CHECK(block_id && id == block_id);
            block_add(&block, &block_len, pl, len);
            if (flags & NGHTTP2_FLAG_END_HEADERS) {
                client_block(inf, c, ri, block, block_len, block_es);
                block_id = 0;
            }
            break;
        case NGHTTP2_DATA:
            FUZZ_CHECK(c->status);   /* after the final head */
            FUZZ_CHECK(frame_payload(type, flags, pl, len, &body, &blen));
            c->body = realloc(c->body, c->blen + blen + 1);
            memcpy(c->body + c->blen, body, blen);
            c->blen += blen;
            c->ended = flags & NGHTTP2_FLAG_END_STREAM;
            break;
        case NGHTTP2_RST_STREAM:
            if (id & 1 && id < 2 * sc->nreq)
                cs[(id - 1) / 2].reset = true;
            break;
        default:
            FUZZ_CHECK(type <= NGHTTP2_CONTINUATION);
            break;
        }
        p += 9 + len;
        n -= 9 + len;
    }
    free(block);
    nghttp2_hd_inflate_del(inf);
    for (unsigned i = 0; i < sc->nreq; i++) {
        struct cst *c = &cs[i];
        answered[i] = c->ended || c->reset;
        if (c->status) {
            bool whole = c->ended && !c->reset;
            const struct creq *r = &sc->req[i];
            bool bodyless = !strcmp(r->method, "HEAD") || c->status == 204 || c->status == 304;
            if (whole && c->has_cl && !bodyless && !c->trailers)
                FUZZ_CHECK(c->blen == c->cl);
            /* a gRPC call may be the proxy's own Trailers-Only answer, and
             * its trailers may be the proxy's after the server's head
             * (check_answer asks a gRPC body to be a prefix only) */
            check_answer(i, c->status, c->body, c->blen, whole, c->has_cl && !c->trailers,
                         r->grpc && c->grpc_head);
        }
        free(c->body);
    }
}

/* Once the proxy is quiet (the client reading all, no time warping): a
 * request some server answered in full -- a final head and END_STREAM on a
 * stream the proxy opened for it, neither reset by either side nor above a
 * GOAWAY's last stream id, on a connection nobody broke -- has its whole
 * answer at the client (or its stream reset), unless the proxy closed the
 * client connection. Not for a 502 or 503 on the retried route: the retry
 * then waits for its backoff. */
static void check_answered(void)
{
    if (out_eof)
        return;
    for (size_t i = 0; i < nust; i++) {
        const struct ust *s = &usts[i];
        if (s->req < 0 || !s->final || !s->ended || s->srv_reset || s->unprocessed ||
            s->proxy_reset || s->conn_bad)
            continue;
        if (!strncmp(sc->req[s->req].path, "/retry/", 7) && (s->final == 502 || s->final == 503))
            continue;
        if (!answered[s->req])
            fprintf(stderr, "\nrequest %d: connection %u stream %u answered %d in full, the "
                            "client has no whole answer\n",
                    s->req, s->conn, s->sid, s->final);
        FUZZ_CHECK(answered[s->req]);
    }
}

/* ---- mapped buffers, descriptors (as fuzz_h2.c) ------------------------------------------ */

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
static long mappings;

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

static void open_fds(bool *open)
{
    for (int fd = 0; fd < FD_SPAN; fd++)
        open[fd] = fcntl(fd, F_GETFD) >= 0;
}

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

/* ---- the proxy ------------------------------------------------------------------------ */

static void parse_cfg(struct cfg *c, const char *ups[NSERVERS], bool warp)
{
    char *args[48] = {"fuzz_h2up", "--listen", "127.0.0.1:9", "--access-log", "/dev/null",
                      "--log-level", "error", "--single-process"};
    int n = 8;
    for (int i = 0; i < NSERVERS; i++) {
        args[n++] = "--upstream";
        args[n++] = (char *)ups[i];
    }
    static char *const short_ones[] = {
        "--connect-timeout", "100ms", "--write-timeout", "200ms", "--read-timeout", "200ms",
        "--total-timeout", "1s", "--header-timeout", "300ms", "--body-timeout", "300ms",
        "--send-timeout", "300ms", "--idle-timeout", "500ms", "--upstream-idle-timeout", "400ms",
    };
    if (warp)
        for (size_t i = 0; i < sizeof short_ones / sizeof short_ones[0]; i++)
            args[n++] = short_ones[i];
    FUZZ_CHECK(cli_parse(c, n, args) == 0);
    c->nlisten = 0;   /* no listener: client_new is called directly */

    /* the pools and routes: a file in memory. Without warping the backoff
     * and hedge delays are long (no timer is waited for); with it short. */
    static char yaml[2048];
    int k = snprintf(yaml, sizeof yaml,
                     "pools:\n"
                     "  up:\n"
                     "    protocol: h2\n"
                     "    balance: least_conn\n"
                     "    max_connections: 3\n"
                     "    servers: [\"%s\", \"%s\"]\n"
                     "routes:\n"
                     "  - path: /\n"
                     "    pool: up\n"
                     "  - path: /retry/\n"
                     "    pool: up\n"
                     "    retry:\n"
                     "      attempts: 3\n"
                     "      on: [connect_failure, connect_timeout, reset, read_timeout, 502, 503]\n"
                     "      methods: all\n"
                     "      backoff: {base: %s, max: %s}\n"
                     "  - path: /hedge/\n"
                     "    pool: up\n"
                     "    hedge: {delay: %s}\n",
                     ups[0], ups[1], warp ? "10ms" : "60s", warp ? "20ms" : "60s",
                     warp ? "50ms" : "60s");
    char *errors = NULL;
    c->conf = conf_parse("fuzz_h2up.yaml", yaml, (size_t)k, &errors);
    if (!c->conf)
        fprintf(stderr, "%s", errors ? errors : "?\n");
    FUZZ_CHECK(c->conf);
}

/* One iteration of the loop without waiting, the servers served, the
 * client's answer read. Whether anything happened. */
static bool step(int fd)
{
    int n = loop_run_once(&loop, 0);
    FUZZ_CHECK(n >= 0);
    bool up = up_step();
    size_t got = lazy_reads ? 0 : drain(fd);
    return n > 0 || up || got > 0;
}

/* Once quiet, the proxy has closed each upstream connection it sent a
 * GOAWAY on: h2up sends one when its idle timer fires (and closes at once)
 * and nghttp2 sends one when the server broke the protocol (the session
 * then reads nothing more: its streams must fail now, not at a timeout). */
static void check_goaways(void)
{
    for (unsigned i = 0; i < nups; i++) {
        if (!ups[i].goaway)
            continue;
        fprintf(stderr, "\nupstream connection %u: the proxy sent GOAWAY and left it open\n",
                ups[i].serial);
        FUZZ_CHECK(!"a connection left open after the proxy's GOAWAY");
    }
}

/* Steps until the proxy is quiet (a frame waiting for a stream that was
 * never opened is then sent anyway); false if it never is. */
static bool settle(int fd)
{
    unsigned quiet = 0, iters = 0;
    while (iters < SETTLE_MAX) {
        quiet = step(fd) ? 0 : quiet + 1;
        iters++;
        if (quiet == QUIET_ITERATIONS) {
            /* a lazy client reads only now; then the frames held back */
            if ((!lazy_reads || !drain(fd)) && !up_force()) {
                check_goaways();
                return true;
            }
            quiet = 0;
        }
    }
    return false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    static char up[NSERVERS][32];
    const char *ups_text[NSERVERS];
    for (int i = 0; i < NSERVERS; i++) {
        up_listen[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(up_listen[i] >= 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sin;
        FUZZ_CHECK(bind(up_listen[i], (struct sockaddr *)&sin, sizeof sin) == 0);
        FUZZ_CHECK(listen(up_listen[i], 1024) == 0);
        FUZZ_CHECK(getsockname(up_listen[i], (struct sockaddr *)&sin, &sl) == 0);
        snprintf(up[i], sizeof up[i], "127.0.0.1:%u", ntohs(sin.sin_port));
        ups_text[i] = up[i];
    }
    parse_cfg(&cfg_plain, ups_text, false);
    parse_cfg(&cfg_warp, ups_text, true);

    verbose = getenv("HG_FUZZ_VERBOSE") != NULL;
    const char *lv = getenv("HG_FUZZ_LOG");
    log_set_level(!lv ? LOG_ERROR : !strcmp(lv, "debug") ? LOG_DEBUG
                  : !strcmp(lv, "info") ? LOG_INFO : LOG_WARN);
    FUZZ_CHECK(log_open(cfg_plain.access_log, false) == 0);
    FUZZ_CHECK(loop_init(&loop) == 0);
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (char)('a' + (i * 7 + i / 97) % 26);
    return 0;
}

/* The input past byte 0, cut at each SEP: one segment per connection. */
static void split_segments(const uint8_t *d, size_t n)
{
    nsegs = 0;
    for (;;) {
        const uint8_t *s = nsegs + 1 < SEG_MAX ? memmem(d, n, SEP, SEP_LEN) : NULL;
        size_t k = s ? (size_t)(s - d) : n;
        segs[nsegs] = d;
        seg_lens[nsegs++] = k;
        if (!s)
            break;
        d += k + SEP_LEN;
        n -= k + SEP_LEN;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool fds_before[FD_SPAN];
    open_fds(fds_before);
    long mappings_before = mappings;
    uint8_t b0 = size ? data[0] : 0, b1 = size > 1 ? data[1] : 0;
    sc = &scens[b0 % NSCENS];
    bool warp = b1 & 0x01;
    up_close_after = b1 & 0x02;
    up_one_frame = b1 & 0x04;
    late_bodies = b1 & 0x08;
    lazy_reads = b1 & 0x10;
    size_t skip = size < 2 ? size : 2;
    data += skip;
    size -= skip;
    split_segments(data, size);
    nserial = 0;
    out_len = 0;
    out_eof = false;
    if (verbose)
        fprintf(stderr, "client: %s%s%s%s%s%s; %u segment(s)\n", sc->name,
                warp ? ", time warps" : "", up_close_after ? ", servers close" : "",
                up_one_frame ? ", a frame per iteration" : "",
                late_bodies ? ", late bodies" : "", lazy_reads ? ", lazy reads" : "", nsegs);
    build_client();
    FUZZ_CHECK(worker_init(&loop, warp ? &cfg_warp : &cfg_plain, NULL) == 0);

    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct sockaddr_storage peer = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(9);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lazy_reads) {
        /* the proxy's writes stop soon: the client holds the servers back */
        int small = 4096;
        FUZZ_CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    }
    client_new(sv[0], &peer, CF_HTTP2, NULL);
    FUZZ_CHECK(px_nclients == 1);

    /* the client's bytes, in as many writes as the socket takes; with late
     * bodies, each body once the proxy has settled after what came before */
    size_t off = 0;
    for (unsigned piece = 0; piece <= (late_bodies ? nsplits : 0); piece++) {
        size_t upto = late_bodies && piece < nsplits ? splits[piece] : cwire_len;
        unsigned stuck = 0;
        while (off < upto && stuck < SETTLE_MAX) {
            ssize_t w = send(sv[1], cwire + off, upto - off, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN)
                break;
            if (w > 0)
                off += (size_t)w;
            bool moved = step(sv[1]);
            if (!moved && w <= 0 && lazy_reads)
                moved = drain(sv[1]) > 0;
            stuck = w > 0 || moved ? 0 : stuck + 1;
        }
        FUZZ_CHECK(settle(sv[1]));   /* the proxy settles */
    }
    if (warp) {
        /* the earliest timer is due, again and again: the timeouts end
         * everything, the client connection included */
        for (int w = 0; w < WARPS && px_nclients; w++) {
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
        FUZZ_CHECK(px_nclients == 0);   /* the timeouts closed the client */
    }
    memset(answered, 0, sizeof answered);
    if (sc->h2)
        check_h2();
    else
        check_h1();
    if (!warp)
        check_answered();

    /* the client goes away: its connection and streams close */
    close(sv[1]);
    unsigned iters;
    for (iters = 0; px_nclients && iters < HANGUP_MAX; iters++) {
        FUZZ_CHECK(loop_run_once(&loop, 0) >= 0);
        up_step();
    }
    if (px_clients)
        fprintf(stderr, "\nthe client connection is still open after the client has gone: "
                        "state %u, ready 0x%x, fd %d, %u bytes of input, session %s\n",
                px_clients->state, px_clients->conn.io.ready, px_clients->conn.io.fd,
                buf_len(&px_clients->in), px_clients->s ? "yes" : "no");
    FUZZ_CHECK(px_nclients == 0 && px_clients == NULL);
    for (iters = 0; iters < 4; iters++) {   /* the deferred releases */
        FUZZ_CHECK(loop_run_once(&loop, 0) >= 0);
        up_step();
    }
    FUZZ_CHECK(h2u_streams() == 0);   /* no stream outlives its request */
    unsigned ng;
    struct pool_group *gs = pool_groups(&ng);
    for (unsigned g = 0; g < ng; g++) {
        FUZZ_CHECK(psh_mine(gs[g].index)->requests == 0 && psh_mine(gs[g].index)->retries == 0 &&
                   gs[g].nwaiting == 0);
        for (unsigned i = 0; i < gs[g].nservers; i++)
            FUZZ_CHECK(gs[g].servers[i].active == 0);
    }

    worker_shutdown();
    buf_drain_pools();
    FUZZ_CHECK(h2u_conns() == 0 && h2u_streams() == 0);
    FUZZ_CHECK(loop.timers.count == 0);
    FUZZ_CHECK(loop.defer == NULL);
    loop.on_iteration_end = NULL;
    up_close_all();
    usts_free();
    check_fds(fds_before);
    if (mappings != mappings_before)
        fprintf(stderr, "\n%ld mapping(s) (buffers) left\n", mappings - mappings_before);
    FUZZ_CHECK(mappings == mappings_before);
    return 0;
}
