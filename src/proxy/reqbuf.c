/* reqbuf.c -- request buffering: a body up to the route's request_buffering
 * read whole before the upstream is contacted (see reqbuf.h). */
#include "reqbuf.h"

#include "client.h"
#include "exchange.h"
#include "stats.h"

bool reqbuf_begin(struct client *c, const struct http_info *info)
{
    struct exch *x = &c->s->x;
    const struct route *r = x->route;
    if (!r || !r->reqbuf_max || (x->flags & X_BODY_DONE) || (c->cflags & CF_STREAM) ||
        (x->req & (R_FORWARD | R_UPGRADE | R_CONNECT)))
        return false;
    if (info->framing == HTTP_BODY_LENGTH && info->length > r->reqbuf_max) {
        stats->reqbuf[STATS_REQBUF_LARGER]++;
        return false;   /* larger than buffered: streamed */
    }
    uint64_t cap = (uint64_t)x->head_len +
                   (info->framing == HTTP_BODY_LENGTH ? info->length : r->reqbuf_max);
    if (cap > BUF_LARGE || c->in.cap < cap) {
        uint64_t need = (cap + 4095u) & ~4095ull;
        if (cap > BUF_LARGE && buf_big_bytes + need > px_cfg->reqbuf_budget) {
            stats->reqbuf[STATS_REQBUF_OVER_BUDGET]++;
            return false;   /* the worker's budget is spent: streamed */
        }
        /* the head moves to the front of the new buffer; offsets follow */
        uint32_t was = c->in.start;
        if (cap > BUF_LARGE)
            buf_reserve_big(&c->in, (uint32_t)cap);
        else
            buf_reserve(&c->in, (uint32_t)cap);
        x->body_sent -= was - c->in.start;
        x->body_ready -= was - c->in.start;
    }
    stats->reqbuf[STATS_REQBUF_BUFFERED]++;
    x->flags |= X_BUFFERING;
    if ((x->req & R_EXPECT) && !(x->flags & X_CONTINUE))
        client_continue(c);   /* (no upstream to wait for: the body is ours to read) */
    return true;
}

int reqbuf_step(struct client *c)
{
    struct exch *x = &c->s->x;
    int r = client_recv_body(c);
    if (r == AT_FAILED)
        return exchange_on_fault(c);   /* gone (client_abort), 413, 400 */
    if (!(x->flags & X_BODY_DONE) && buf_room(&c->in)) {
        int s = client_send(c);   /* (a 100 Continue) */
        if (s == AT_FAILED)
            return exchange_on_fault(c);
        return r | s;
    }
    x->flags &= ~X_BUFFERING;   /* whole, or the buffer is full: the rest streams */
    return exchange_dispatch(c, true);
}
