/* tmo.c -- the timeout policy's names and deadline folding (see tmo.h). */
#include "tmo.h"

static const char *const reasons[TMO_COUNT + 1] = {
    [TMO_TOTAL] = "total_timeout",   [TMO_CONNECT] = "connect_timeout",
    [TMO_WRITE] = "write_timeout",   [TMO_READ] = "read_timeout",
    [TMO_HEADER] = "header_timeout", [TMO_BODY] = "body_timeout",
    [TMO_SEND] = "send_timeout",     [TMO_IDLE] = "idle_timeout",
    [TMO_DNS] = "dns_timeout",       [TMO_TUNNEL_IDLE] = "tunnel_idle_timeout",
    [TMO_TUNNEL_MAX] = "tunnel_max_timeout",
    [TMO_HANDSHAKE] = "handshake_timeout", [TMO_UPSTREAM_IDLE] = "upstream_idle_timeout",
    [TMO_TRY] = "try_timeout",       [TMO_BACKOFF] = "backoff",
    [TMO_HEDGE] = "hedge",           [TMO_QUEUE] = "queue_timeout",
    [TMO_NONE] = "none",
};

static const char *const words[TMO_COUNT + 1] = {
    [TMO_TOTAL] = "total",   [TMO_CONNECT] = "connect", [TMO_WRITE] = "write",
    [TMO_READ] = "read",     [TMO_HEADER] = "header",   [TMO_BODY] = "body",
    [TMO_SEND] = "send",     [TMO_IDLE] = "idle",       [TMO_TRY] = "try",
    [TMO_HANDSHAKE] = "handshake", [TMO_UPSTREAM_IDLE] = "upstream_idle",
    [TMO_DNS] = "dns",       [TMO_TUNNEL_IDLE] = "tunnel_idle", [TMO_TUNNEL_MAX] = "tunnel_max",
    [TMO_BACKOFF] = "backoff", [TMO_HEDGE] = "hedge",   [TMO_QUEUE] = "queue",
    [TMO_NONE] = "none",
};

#define NS_PER_MS 1000000ull

/* A clock that runs while its condition holds: started at now when the
 * condition begins, cleared when it ends. Returns its deadline, or 0. */
static uint64_t mark(uint64_t *since, bool holds, uint64_t ms, uint64_t now)
{
    if (!holds) {
        *since = 0;
        return 0;
    }
    if (!*since)
        *since = now;
    return *since + ms * NS_PER_MS;
}

static void fold_exchange(uint32_t cond, const uint64_t *ms, struct tmo_clocks *c,
                          uint64_t now, uint64_t *at)
{
    at[TMO_TOTAL] = c->start + ms[TMO_TOTAL] * NS_PER_MS;
    if (cond & TMO_IF_CONNECTING)
        at[TMO_CONNECT] = c->connect + ms[TMO_CONNECT] * NS_PER_MS;
    if (cond & TMO_IF_RESOLVING)
        at[TMO_DNS] = c->dns + ms[TMO_DNS] * NS_PER_MS;
    if (c->backoff_until)
        at[TMO_BACKOFF] = c->backoff_until;
    if ((cond & TMO_IF_HEDGE) && ms[TMO_HEDGE])
        at[TMO_HEDGE] = c->try_start + ms[TMO_HEDGE] * NS_PER_MS;
    if ((cond & TMO_IF_TRY) && ms[TMO_TRY])
        at[TMO_TRY] = c->try_start + ms[TMO_TRY] * NS_PER_MS;
    /* a budget: the time of earlier stalls is already spent */
    if (c->write_since)
        at[TMO_WRITE] = c->write_since + ms[TMO_WRITE] * NS_PER_MS - c->write_used;
    at[TMO_QUEUE] = mark(&c->queue, cond & TMO_IF_QUEUED, ms[TMO_QUEUE], now);
    at[TMO_READ] = mark(&c->read_mark, cond & TMO_IF_READ, ms[TMO_READ], now);
    at[TMO_BODY] = mark(&c->body_mark, cond & TMO_IF_BODY, ms[TMO_BODY], now);
    at[TMO_SEND] = mark(&c->send_mark, cond & TMO_IF_SEND, ms[TMO_SEND], now);
}

uint64_t tmo_fold(enum tmo_phase ph, uint32_t cond, const struct tmo_limits *lim,
                  struct tmo_clocks *clk, uint64_t now, struct tmo_set *out)
{
    const uint64_t *ms = lim->ms;
    uint64_t *at = out->at;

    *out = (struct tmo_set){0};
    switch (ph) {
    case TMO_PHASE_HEAD:
        at[TMO_HEADER] = clk->first + ms[TMO_HEADER] * NS_PER_MS;
        break;
    case TMO_PHASE_CLOSING:
        /* the send clock keeps its start while the reply is flushed: a
         * writable edge that moved nothing does not restart it */
        if (cond & TMO_IF_LINGER)
            at[TMO_IDLE] = clk->first + ms[TMO_IDLE] * NS_PER_MS;
        else if (cond & TMO_IF_SEND)
            at[TMO_SEND] = mark(&clk->send_mark, true, ms[TMO_SEND], now);
        break;
    case TMO_PHASE_TUNNEL:
        at[TMO_TUNNEL_IDLE] = clk->active + ms[TMO_TUNNEL_IDLE] * NS_PER_MS;
        if (ms[TMO_TUNNEL_MAX])
            at[TMO_TUNNEL_MAX] = clk->tunnel + ms[TMO_TUNNEL_MAX] * NS_PER_MS;
        break;
    case TMO_PHASE_EXCH:
        fold_exchange(cond, ms, clk, now, at);
        break;
    }
    return tmo_next(out);
}

uint64_t tmo_next(const struct tmo_set *s)
{
    uint64_t best = 0;
    for (int k = 0; k < TMO_DEADLINES; k++)
        if (s->at[k] && (!best || s->at[k] < best))
            best = s->at[k];
    return best;
}

enum tmo_kind tmo_expired(const struct tmo_set *s, uint64_t now)
{
    enum tmo_kind best = TMO_NONE;
    for (int k = 0; k < TMO_DEADLINES; k++) {
        uint64_t at = s->at[k];
        if (at && at <= now && (best == TMO_NONE || at < s->at[best]))
            best = (enum tmo_kind)k;
    }
    return best;
}

const char *tmo_reason(enum tmo_kind k)
{
    return reasons[k <= TMO_NONE ? k : TMO_NONE];
}

const char *tmo_word(enum tmo_kind k)
{
    return words[k <= TMO_NONE ? k : TMO_NONE];
}
