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

#include <stdbool.h>
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
    TMO_QUEUE,       /* waiting in a pool's queue for a connection or a server with room */
    /* configured like the others, but never in an exchange's tmo_set: */
    TMO_HANDSHAKE,   /* a TLS client's handshake, from accept (the idle timer) */
    TMO_UPSTREAM_IDLE, /* a pooled upstream connection unused (the pool's clock) */
    TMO_COUNT,
    TMO_NONE = TMO_COUNT,
    /* the kinds that can run in a tmo_set: those before TMO_HANDSHAKE */
    TMO_DEADLINES = TMO_HANDSHAKE
};

struct tmo_set {
    uint64_t at[TMO_DEADLINES];  /* absolute deadlines, 0 = not running */
};

/* The phase of a client connection, as the fold sees it (IDLE folds
 * nothing: its one deadline is the caller's). */
enum tmo_phase {
    TMO_PHASE_HEAD,     /* reading a request head */
    TMO_PHASE_EXCH,     /* an exchange in flight */
    TMO_PHASE_CLOSING,  /* an error reply is flushed, then input lingers */
    TMO_PHASE_TUNNEL,   /* bytes relayed both ways (CONNECT, WebSocket) */
};

/* Which conditions hold now (TMO_IF_*): each starts or keeps a clock. */
#define TMO_IF_CONNECTING 0x001u /* the upstream connection is being opened */
#define TMO_IF_RESOLVING  0x002u /* the destination's name is being resolved */
#define TMO_IF_HEDGE      0x004u /* a hedged attempt may still be sent */
#define TMO_IF_TRY        0x008u /* an attempt runs without a response head */
#define TMO_IF_READ       0x010u /* request sent, response incomplete, room for it */
#define TMO_IF_BODY       0x020u /* request body wanted and room for it */
#define TMO_IF_SEND       0x040u /* response bytes wait on a client that takes none */
#define TMO_IF_LINGER     0x080u /* CLOSING: the reply is out, input is discarded */
#define TMO_IF_QUEUED     0x100u /* the request waits in its pool's queue */

/* When each clock of one connection started (ns on the loop's clock; 0 = not
 * started). The caller keeps it and sets the times of events (a read sets
 * read_mark); the fold starts the "marks" whose condition began to hold and
 * clears those whose condition ended, so that no path can leave a clock
 * running by forgetting it. */
struct tmo_clocks {
    uint64_t first;          /* HEAD: the head's first byte; CLOSING: linger start */
    uint64_t start;          /* the request head arrived (total) */
    uint64_t connect;        /* connecting since */
    uint64_t queue;          /* queued since (a mark: the fold sets and clears it) */
    uint64_t dns;            /* resolving since */
    uint64_t try_start;      /* this attempt began (per-try timeout, hedge delay) */
    uint64_t backoff_until;  /* waiting before the next attempt until */
    uint64_t tunnel;         /* the tunnel began */
    uint64_t active;         /* the tunnel's last byte either way */
    uint64_t write_since;    /* the upstream stopped taking request bytes */
    uint64_t write_used;     /* write budget spent in earlier stalls */
    uint64_t read_mark;      /* last response read, or when reading became possible */
    uint64_t body_mark;      /* last request body read, or when it became wanted */
    uint64_t send_mark;      /* the client stopped taking response bytes */
};

/* Configured durations, milliseconds, indexed by kind; 0 = none for the
 * optional kinds (TMO_TUNNEL_MAX, TMO_TRY, TMO_HEDGE). In CLOSING, TMO_IDLE
 * is the linger. */
struct tmo_limits {
    uint64_t ms[TMO_COUNT];
};

/* The deadlines that run in phase ph with conditions cond (TMO_IF_*), into
 * out (every other kind 0); returns the earliest (tmo_next(out)), 0 when
 * none runs. Pure: reads the clocks and limits, starts or clears clk's
 * marks at now, and nothing else. This is the table of docs/DESIGN.md ("The
 * timeout state machine"); tests/unit/base/test_tmo.c checks it row by row. */
uint64_t tmo_fold(enum tmo_phase ph, uint32_t cond, const struct tmo_limits *lim,
                  struct tmo_clocks *clk, uint64_t now, struct tmo_set *out);

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
