/* tmo.h -- the timeout policy: names of the timeouts and how the deadlines of
 * one exchange fold into a single wake-up.
 *
 * Each exchange keeps one absolute deadline per kind (0 = not running). The
 * connection sleeps on the earliest; when it wakes, the earliest expired kind
 * is the one that fired. Inner deadlines are never clamped by rewriting them:
 * the fold takes the minimum with `total`, and on a tie `total` wins, since
 * an inner timeout that ends exactly with the total deadline was cut short by
 * it. Pure logic: no clock, no I/O. */
#ifndef HG_TMO_H
#define HG_TMO_H

#include <stdint.h>

enum tmo_kind {
    TMO_TOTAL = 0,   /* first: wins ties */
    TMO_CONNECT,
    TMO_WRITE,
    TMO_READ,
    TMO_HEADER,
    TMO_BODY,
    TMO_SEND,
    TMO_IDLE,
    TMO_DNS,         /* resolving a forward proxy's destination */
    TMO_TUNNEL_IDLE, /* a tunnel (CONNECT, WebSocket) with no byte either way */
    TMO_TUNNEL_MAX,  /* a tunnel's whole lifetime (optional) */
    TMO_TRY,         /* a retry policy's per-try timeout (before the response head) */
    TMO_BACKOFF,     /* not a timeout: the wait before the next attempt */
    TMO_HEDGE,       /* not a timeout: when to send a hedged request */
    /* configured like the others, but never in an exchange's tmo_set: */
    TMO_HANDSHAKE,   /* a TLS client's handshake, from accept (the idle timer) */
    TMO_UPSTREAM_IDLE, /* a pooled upstream connection unused (the pool's clock) */
    TMO_COUNT,
    TMO_NONE = TMO_COUNT
};

struct tmo_set {
    uint64_t at[TMO_COUNT];  /* absolute deadlines, 0 = not running */
};

/* The earliest running deadline, or 0 when none runs. */
uint64_t tmo_next(const struct tmo_set *s);

/* The kind that fired at time now: the running kind with the earliest deadline
 * <= now (lowest enum value on a tie), or TMO_NONE. */
enum tmo_kind tmo_expired(const struct tmo_set *s, uint64_t now);

/* "read_timeout", "connect_timeout", ... as logged in the reason field. */
const char *tmo_reason(enum tmo_kind k);

/* "read", "connect", ... for sentences in the error log. */
const char *tmo_word(enum tmo_kind k);

#endif
