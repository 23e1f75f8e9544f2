/* health.h -- active health checks: a periodic GET of each server of a pool
 * whose configuration has `health.active`.
 *
 * One checker per server slot, allocated once at start-up, with its own
 * embedded timer and socket: at most one check of a server is in flight, and
 * a check allocates nothing. A slot of a host name or an SRV name is checked
 * while it is in service (health_server_start when it joins,
 * health_server_stop before it leaves). A check connects, sends
 *
 *     GET <path> HTTP/1.1\r\nHost: <server>\r\nUser-Agent: hourglass-health\r\n
 *     Connection: close\r\n\r\n
 *
 * and reads until the status line is complete; it succeeds on a 2xx or 3xx
 * status within `timeout` (connect, send and status line together). Another
 * status, a refused or reset connection, a malformed status line or the
 * timeout is a failure. `unhealthy` failures in a row take the server out of
 * service (pool_set_health); `healthy` successes in a row put it back.
 * Checks start every `interval` (start to start); the first check of each
 * server falls at random within the first interval. The connection is closed
 * after each check, never pooled. */
#ifndef HG_HEALTH_H
#define HG_HEALTH_H

#include <stddef.h>

#include "cfg.h"
#include "loop.h"

struct pool_server;

/* Starts the checkers of every pool with active checks (after pool_init).
 * 0 (also when no pool has them). */
int health_init(struct loop *l, const struct cfg *cfg);

/* A slot came into service at its address: its checks start afresh (its
 * first within an interval). Nothing when its pool has no active checks. */
void health_server_start(struct pool_server *s);

/* A slot leaves: its check in flight is closed, no other starts. */
void health_server_stop(struct pool_server *s);

/* Closes every check in flight, stops the timers and frees the checkers (at
 * shutdown). Safe without health_init, and twice. */
void health_stop(void);

/* The verdict on the first bytes of a response (pure; for the checker and the
 * unit tests). */
enum health_verdict {
    HEALTH_INCOMPLETE,   /* no complete status line yet, and none ruled out */
    HEALTH_OK,           /* a well-formed status line with 2xx or 3xx */
    HEALTH_BAD_STATUS,   /* a well-formed status line with another status */
    HEALTH_MALFORMED,    /* not "HTTP/d.d ddd[ reason]" ending in (CR)LF */
};

/* The status line limit: longer without an end is malformed. */
#define HEALTH_LINE_MAX 512

/* Judges buf[0..len): the status line "HTTP/1.1 200 OK\r\n" (the version is
 * HTTP/ digit . digit, the reason may be empty or absent, a bare LF ends the
 * line too). A prefix that cannot become a status line is malformed at once.
 * *status is set (100..999 as read) when the verdict is OK or BAD_STATUS. */
enum health_verdict health_status_line(const char *buf, size_t len, unsigned *status);

#endif
