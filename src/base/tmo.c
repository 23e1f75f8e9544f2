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
    [TMO_HEDGE] = "hedge",
    [TMO_NONE] = "none",
};

static const char *const words[TMO_COUNT + 1] = {
    [TMO_TOTAL] = "total",   [TMO_CONNECT] = "connect", [TMO_WRITE] = "write",
    [TMO_READ] = "read",     [TMO_HEADER] = "header",   [TMO_BODY] = "body",
    [TMO_SEND] = "send",     [TMO_IDLE] = "idle",       [TMO_TRY] = "try",
    [TMO_HANDSHAKE] = "handshake", [TMO_UPSTREAM_IDLE] = "upstream_idle",
    [TMO_DNS] = "dns",       [TMO_TUNNEL_IDLE] = "tunnel_idle", [TMO_TUNNEL_MAX] = "tunnel_max",
    [TMO_BACKOFF] = "backoff", [TMO_HEDGE] = "hedge",   [TMO_NONE] = "none",
};

uint64_t tmo_next(const struct tmo_set *s)
{
    uint64_t best = 0;
    for (int k = 0; k < TMO_COUNT; k++)
        if (s->at[k] && (!best || s->at[k] < best))
            best = s->at[k];
    return best;
}

enum tmo_kind tmo_expired(const struct tmo_set *s, uint64_t now)
{
    enum tmo_kind best = TMO_NONE;
    for (int k = 0; k < TMO_COUNT; k++) {
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
