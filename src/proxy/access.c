/* access.c -- the access log line of an exchange, and the words that name a
 * request in the error log (see access.h). */
#define _GNU_SOURCE
#include "access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addr.h"
#include "admit.h"
#include "auth.h"
#include "buf.h"
#include "cfg.h"
#include "dns.h"
#include "exchange.h"
#include "fwd.h"
#include "health.h"
#include "http.h"
#include "grpc.h"
#include "log.h"
#include "net.h"
#include "observe.h"
#include "pool.h"
#include "relay.h"
#include "route.h"
#include "stats.h"
#include "tls.h"
#include "tmo.h"

static const char *access_method(const struct client *c, uint32_t *len);

const char *access_peer(const struct client *c, struct peer_text *t)
{
    net_addr_text(&c->peer.sa, t->s, sizeof t->s);
    return t->s;
}

static const char *access_method(const struct client *c, uint32_t *len)
{
    *len = c->s->x.method_len;
    return c->s->x.method_len ? c->in.data + c->in.start : NULL;
}

/* The request bytes read from the client: the exchange's count once its
 * head is parsed; before that (a header timeout, a client gone, a head
 * refused) the partial head waiting in the client's window, which is
 * nothing else while its state is CS_HEAD. */
static uint64_t bytes_read(const struct client *c)
{
    const struct exch *x = &c->s->x;
    if (x->bytes_in || x->head_len)
        return x->bytes_in ? x->bytes_in : x->head_len;
    return c->state == CS_HEAD ? buf_len(&c->in) : 0;
}

void access_log(struct client *c, int status, const char *reason)
{
    if (c->s->x.flags & X_LOGGED)
        return;
    c->s->x.flags |= X_LOGGED;
    /* The exchange has ended (this runs once per exchange, on every path):
     * it no longer counts towards its pool's retry budget. */
    admit_release(c);
    {
        unsigned nr;
        const struct route *base = route_all(&nr);
        int ri = c->s->x.route ? (int)(c->s->x.route - base) : -1;
        int64_t fb = c->s->x.first_byte_ns >= 0 ? ms_of((uint64_t)c->s->x.first_byte_ns) : -1;
        stats_exchange(ri, status, reason, fb);
        obs_end(c, status, reason);
        if (c->s->x.req & R_GRPC) {
            int gs = c->s->x.grpc_status;
            if (gs < 0)   /* ended before a status was known: by its reason */
                gs = c->s->x.grpc_status = grpc_status_of_reason(reason, status);
            stats->grpc_calls[gs < STATS_GRPC_STATUSES - 1 ? gs : STATS_GRPC_STATUSES - 1]++;
        }
    }
    if (!log_access_enabled())
        return;
    struct peer_text pt;
    struct log_entry e = {
        .client = access_peer(c, &pt),
        .status = status,
        .bytes = c->s->x.bytes_sent,
        .bytes_in = bytes_read(c),
        .upstream = px_dest_text(c->s, NULL),
        .attempts = c->s->x.attempts,
        .connect_ms = c->s->x.connect_ns >= 0 ? ms_of((uint64_t)c->s->x.connect_ns) : -1,
        .first_byte_ms = c->s->x.first_byte_ns >= 0 ? ms_of((uint64_t)c->s->x.first_byte_ns) : -1,
        .sent_ms = c->s->x.sent_ns >= 0 ? ms_of((uint64_t)c->s->x.sent_ns) : -1,
        .proto = (c->cflags & CF_STREAM) ? "HTTP/2" : c->minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
        .reason = reason,
        .grpc = (c->s->x.req & R_GRPC) != 0,
        .grpc_status = c->s->x.grpc_status,
        .grpc_timeout_ms = c->s->x.grpc_timeout_ms,
    };
    obs_log_fields(c, &e);
    e.method = access_method(c, &e.method_len);
    if (e.method) {
        e.target = c->in.data + c->in.start + c->s->x.target_off;
        e.target_len = c->s->x.target_len;
    }
    uint64_t since = c->s->x.clk.start ? c->s->x.clk.start : c->t_first;
    e.total_ms = ms_of(px_loop->now - since);
    log_access(&e);
}

/* The words naming a request in error log sentences (see access.h). */
void access_describe(struct client *c, char *out, size_t n)
{
    struct peer_text pt;
    uint32_t ml;
    const char *m = access_method(c, &ml);
    const char *rid = obs_rid(c);   /* (before the target, which may be cut) */
    if (!m) {
        snprintf(out, n, "client %s, request_id=%s", access_peer(c, &pt), rid);
        return;
    }
    uint32_t tl = c->s->x.target_len > 200 ? 200 : c->s->x.target_len;
    snprintf(out, n, "client %s, request_id=%s, %.*s %.*s", access_peer(c, &pt), rid, (int)ml, m,
             (int)tl, c->in.data + c->in.start + c->s->x.target_off);
}
