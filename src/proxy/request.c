/* request.c -- a finished request head becomes an exchange: its checks, its
 * route, its deadlines and flags, and the head the upstream will get (see
 * request.h). */
#define _GNU_SOURCE
#include "request.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "access.h"
#include "attempt.h"
#include "client.h"
#include "exchange.h"
#include "forward.h"
#include "fwd.h"
#include "grpc.h"
#include "log.h"
#include "net.h"
#include "observe.h"
#include "reqbuf.h"
#include "stats.h"

/* Why the head cannot be served, or NULL; *status is its 4xx/5xx. Framing
 * and Host were checked by http_request_info (r); here the target's form
 * and CONNECT, which only a forward listener takes. */
static const char *refusal(const struct client *c, const struct http_msg *m, int r,
                           bool is_connect, int *status)
{
    *status = -r;
    if (r < 0)
        return r == -501 ? "unsupported transfer coding" : "bad framing or Host";
    if (is_connect && !(c->cflags & CF_FORWARD)) {
        *status = 501;
        return "CONNECT is not supported by a reverse proxy";
    }
    if (c->cflags & CF_FORWARD)
        return NULL;   /* forward_admit checks the target */
    if (m->target[0] == '/' || (m->target_len == 1 && m->target[0] == '*' &&
                                m->method_len == 7 && memcmp(m->method, "OPTIONS", 7) == 0))
        return NULL;
    const char *a, *p;
    size_t al, pl;
    if (fwd_split_absolute(m->target, m->target_len, &a, &al, &p, &pl) < 0) {
        *status = 400;
        return "bad request target";
    }
    return NULL;
}

/* Routes by Host (or an absolute-form target's authority) and path; a
 * forward request takes no route (the default policy, forward.h). 0 to go
 * on, 1 when answered (404, or the forward proxy's 400, 403 or 407). */
static int route(struct client *c, const struct http_msg *m, const struct http_info *info,
                 bool is_connect)
{
    struct exch *x = &c->s->x;
    if (c->cflags & CF_FORWARD) {
        if (forward_admit(c, m, is_connect))
            return 1;
        x->req |= R_FORWARD;
        x->flags |= X_NO_REUSE;
        return 0;
    }
    const char *rh = info->host, *rp = m->target;
    size_t rhl = info->host_len, rpl = m->target_len;
    fwd_split_absolute(m->target, m->target_len, &rh, &rhl, &rp, &rpl);
    if (!rpl || rp[0] != '/') {   /* "http://h" and "http://h?q" have the path "/" */
        rp = "/";
        rpl = 1;
    }
    x->route = route_match(rh, rhl, rp, rpl);
    if (x->route)
        return 0;
    char what[320];
    access_describe(c, what, sizeof what);
    log_error("info", "no route for this request (%s)", what);
    client_error(c, 404, "no_route", "no route matches this host and path");
    return 1;
}

/* A trusted client's deadline header caps the total deadline. */
static void client_deadline(struct client *c, const struct http_msg *m)
{
    const char *name = px_cfg->deadline_header;
    if (!(c->cflags & CF_TRUSTED) || !name)
        return;
    size_t dl = strlen(name);
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        uint64_t v;
        if (f->name_len == dl && strncasecmp(f->name, name, dl) == 0 &&
            http_parse_u64(f->value, f->value_len, &v) == 0) {
            c->s->x.client_total_ms = v;
            c->s->x.req |= R_CLIENT_DEADLINE;
            return;
        }
    }
}

/* A gRPC call (its content-type) and its grpc-timeout. 0, or -1 when the
 * grpc-timeout is malformed (the call fails with INTERNAL, as gRPC says). */
static int grpc_call(struct client *c, const struct http_msg *m)
{
    struct exch *x = &c->s->x;
    const struct http_field *timeout = NULL;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (HTTP_NAME_IS(f, "content-type") && grpc_content_type(f->value, f->value_len))
            x->req |= R_GRPC;
        else if (HTTP_NAME_IS(f, "grpc-timeout"))
            timeout = f;
    }
    if (!(x->req & R_GRPC) || !timeout)
        return 0;
    uint64_t ns;
    if (grpc_timeout_parse(timeout->value, timeout->value_len, &ns) < 0)
        return -1;
    uint64_t ms = ns / MS + (ns % MS != 0);   /* rounded up: never before the caller */
    x->grpc_timeout_ms = ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ms;
    return 0;
}

/* What the method, the framing and the route make of the exchange. */
static void request_flags(struct client *c, const struct http_msg *m,
                          const struct http_info *info)
{
    struct exch *x = &c->s->x;
    if (!info->conn_close)
        x->flags &= ~X_CLOSE_AFTER;
    else
        x->flags |= X_CLIENT_CLOSE;
    if (http_method_is_head(m->method, m->method_len))
        x->req |= R_HEAD_METHOD;
    if (http_method_idempotent(m->method, m->method_len))
        x->req |= R_IDEMPOTENT;
    if (m->minor == 1 && info->framing == HTTP_BODY_NONE && m->method_len == 3 &&
        memcmp(m->method, "GET", 3) == 0 && fwd_wants_websocket(m))
        x->req |= R_UPGRADE;
    if (info->expect_continue && m->minor == 1)
        x->req |= R_EXPECT;
    x->req_framing = (uint8_t)info->framing;
    x->req_left = info->length;
    x->req_chunk.keep_framing = 1;
    /* A body the route may need to send again stays in `in` while it is
     * small enough (retry.max_body) and fits the buffer. */
    const struct conf_retry *rr = x->route ? x->route->retry : NULL;
    if (rr && info->framing != HTTP_BODY_NONE &&
        ((x->req & R_IDEMPOTENT) || rr->methods == CONF_METHODS_ALL) &&
        (info->framing != HTTP_BODY_LENGTH || info->length <= rr->max_body))
        x->flags |= X_KEEP_BODY;
    /* An HTTP/2 server may refuse a stream it has not processed (GOAWAY,
     * REFUSED_STREAM): a small body is kept to send it again. */
    if (x->route && x->route->pool->h2 && info->framing != HTTP_BODY_NONE &&
        (info->framing != HTTP_BODY_LENGTH || info->length <= KEEP_BODY_H2))
        x->flags |= X_KEEP_BODY;
}

/* Counts and logs (at debug) the request fields fwd_request_head dropped
 * because their names have a '_'. */
static void underscores_dropped(struct client *c, const struct http_msg *m, unsigned n)
{
    stats->dropped_underscore += n;
    if (!log_enabled(LOG_DEBUG))
        return;
    char names[256], what[320];
    size_t o = 0;
    for (uint32_t i = 0; i < m->nfields && o + 2 < sizeof names; i++) {
        const struct http_field *f = &m->fields[i];
        if (!fwd_name_has_underscore(f))
            continue;
        int w = snprintf(names + o, sizeof names - o, "%s%.*s", o ? ", " : "",
                         (int)f->name_len, f->name);
        o = w < 0 ? o : o + (size_t)w;
    }
    names[sizeof names - 1] = '\0';
    access_describe(c, what, sizeof what);
    log_error("debug", "dropped %u request field%s with '_' in the name: %s (%s)", n,
              n == 1 ? "" : "s", names, what);
}

/* Writes the head the upstream gets into uhead (HTTP/1.1, hop-by-hop fields
 * out, X-Forwarded-*, a placeholder for the deadline). 0, or -1 after
 * answering 431 when it does not fit. */
static int upstream_head(struct client *c, const struct http_msg *m,
                         const struct http_info *info, int head_len)
{
    struct exch *x = &c->s->x;
    char ip[INET6_ADDRSTRLEN];
    size_t deadline_at = 0, grpc_at = 0;
    bool grpc = (x->req & R_GRPC) != 0;
    unsigned dropped = 0;
    net_ip_text(&c->peer.sa, ip, sizeof ip);
    struct fwd_req fq = {
        .m = m,
        .info = info,
        .client_ip = ip,
        .proto = (c->cflags & CF_TLS) ? "https" : "http",
        .default_host = px_cfg->upstream[0].text,
        .strip_expect = true,
        .deadline_name = px_cfg->deadline_header,
        .deadline_strip_only = (x->req & R_FORWARD) || x->route->no_deadline_header,
        .upgrade = (x->req & R_UPGRADE) != 0,
        .strip_proxy_auth = (x->req & R_FORWARD) != 0,
        .deadline_at = &deadline_at,
        .grpc = grpc,
        .grpc_timeout_at = grpc && exchange_total_ms(c) != GRPC_NO_TOTAL_MS ? &grpc_at : NULL,
        .keep_underscores = (c->cflags & CF_UNDERSCORES) != 0,
        .keep_te_trailers = (c->cflags & CF_STREAM) && x->route && x->route->pool->h2,
        .dropped = &dropped,
        .request_id = obs_rid(c),
    };
    buf_reserve(&c->s->uhead, (uint32_t)head_len + 1024 > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    int n = fwd_request_head(c->s->uhead.data, c->s->uhead.cap, &fq);
    if (n < 0) {
        client_error(c, 431, "bad_request", "request head too large to forward");
        return -1;
    }
    c->s->uhead.end = (uint32_t)n;
    x->deadline_at = (uint32_t)deadline_at;
    x->grpc_at = (uint32_t)grpc_at;
    if (dropped)
        underscores_dropped(c, m, dropped);
    return 0;
}

int request_start(struct client *c, int head_len)
{
    struct exch *x = &c->s->x;
    struct http_msg *m = &px_scratch;
    struct http_info info;
    const char *base = c->in.data + c->in.start;

    x->head_len = x->bytes_in = (uint32_t)head_len;
    x->method_len = m->method_len;
    x->target_off = (uint32_t)(m->target - base);
    x->target_len = m->target_len;
    x->clk.start = px_loop->now;
    c->minor = (uint8_t)m->minor;
    c->state = CS_EXCH;
    x->flags |= X_CLOSE_AFTER;   /* until the head is known to be sound */
    obs_request_begin(c, m);     /* its ID and trace ID, before any answer */

    bool is_connect = m->method_len == 7 && memcmp(m->method, "CONNECT", 7) == 0;
    int status;
    if (grpc_call(c, m) < 0) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("info", "bad request: malformed grpc-timeout (%s)", what);
        client_error(c, 400, "bad_grpc_timeout", "malformed grpc-timeout");
        return 1;
    }
    const char *bad = refusal(c, m, http_request_info(m, &info), is_connect, &status);
    if (bad) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("info", "bad request: %s (%s)", bad, what);
        client_error(c, status, "bad_request", bad);
        return 1;
    }
    if (route(c, m, &info, is_connect))
        return 1;
    client_deadline(c, m);
    exchange_set_limits(c);   /* the route's, and the client's total */
    request_flags(c, m, &info);
    if (px_cfg->max_body && info.framing == HTTP_BODY_LENGTH && info.length > px_cfg->max_body) {
        px_fault(c, FAULT_BODY_TOO_LARGE, 0);   /* refused before the upstream is asked */
        return exchange_on_fault(c);
    }
    x->body_sent = x->body_ready = c->in.start + (uint32_t)head_len;
    if (info.framing == HTTP_BODY_NONE)
        x->flags |= X_BODY_DONE;
    if (is_connect) {   /* forward: what follows the head is the tunnel's */
        x->req |= R_CONNECT;
        x->flags |= X_BODY_DONE;
        return forward_resolve(c);
    }
    if ((x->req & R_UPGRADE) && x->route && x->route->pool->h2) {
        char what[320];
        access_describe(c, what, sizeof what);
        log_error("info", "WebSocket upgrade to HTTP/2 pool %s refused (%s)",
                  x->route->pool->name, what);
        client_error(c, 501, "bad_request", "WebSocket is not supported to an HTTP/2 pool");
        return 1;
    }
    if (upstream_head(c, m, &info, head_len) < 0)
        return 1;
    if (attempt_bulk(info.framing, info.length)) {
        /* The head moves to the front of a larger buffer; offsets follow. */
        uint32_t was = c->in.start;
        buf_reserve(&c->in, BUF_LARGE);
        x->body_sent -= was - c->in.start;
        x->body_ready -= was - c->in.start;
    }
    if (client_request_body(c) == AT_FAILED)
        return exchange_on_fault(c);
    if (x->req & R_FORWARD)
        return forward_resolve(c);
    if (reqbuf_begin(c, &info))
        return 1;   /* the body first (reqbuf_step), then the dispatch */
    return exchange_dispatch(c, true);
}
