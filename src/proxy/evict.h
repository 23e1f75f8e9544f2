/* evict.h -- connection pressure: making room at max_connections.
 *
 * Without it, connections past --max-connections wait in the kernel's
 * listen queue, and an attack that holds every slot with a request head it
 * never finishes (slowloris) keeps legitimate clients out for the whole
 * attack. Instead, when a connection waits to be accepted at the limit, a
 * connection that carries no request is closed to make room:
 *
 *   1. an idle keep-alive connection (HTTP/1.1 between requests, HTTP/2
 *      with no stream open: GOAWAY first), the one idle longest first;
 *   2. else a connection that has not completed a request head (nothing
 *      read yet, a TLS handshake, a partial head), the oldest first.
 *
 * A request in progress (an exchange, a tunnel, an error reply being
 * flushed, an HTTP/2 connection with a stream open) is never evicted.
 *
 * Each connection sits in at most one of two intrusive lists, by its class
 * (EV_IDLE, EV_HEAD), appended when it enters the class: so the head of
 * each list is its oldest, and evicting is O(1). The class is filed again
 * whenever the connection's timer is armed (exchange_arm, HTTP/2's arm),
 * which every event of a connection ends with; evict_one checks it again
 * before closing anything.
 *
 * Under pressure (at least pressure_percent of max_connections open), the
 * header timeout of a head still incomplete is pressure_header_percent of
 * timeouts.header, counted from its first byte (from the accept for a
 * connection that sent nothing yet). Evictions count in /metrics
 * (hourglass_connections_evicted_total) and are logged as one summary line
 * per second at most. */
#ifndef HG_EVICT_H
#define HG_EVICT_H

#include <stdbool.h>
#include <stdint.h>

#include "px.h"

enum ev_class { EV_NONE, EV_IDLE, EV_HEAD, EV_CLASSES };

/* Sets up the summary's timer (worker start). */
void evict_init(void);

/* Files c in the list of its class now (or in none), at the tail when it
 * changes class. Cheap when it does not. */
void evict_track(struct client *c);

/* Takes c out of its list (client_close). */
void evict_forget(struct client *c);

/* Whether a connection could be evicted now. */
bool evict_possible(void);

/* When the oldest incomplete head becomes old enough to evict (UINT64_MAX:
 * none): a connection accepted less than 50 ms ago is not evicted, as its
 * head may be waiting unread on its socket behind a burst of accepts. */
uint64_t evict_head_ready_at(void);

/* Closes the connection first in line (idle, else an incomplete head) and
 * counts it. false when there is none: the new connection must wait. Never
 * called from inside a client's own callback (the accept path only). */
bool evict_one(void);

/* Whether the worker is under pressure (pressure_percent of the limit). */
bool evict_pressure(void);

/* The header timeout in force now, ms: shortened under pressure. */
uint64_t evict_header_ms(void);

/* An IDLE connection's deadline (no session): the handshake or the idle
 * timeout from c->t_first; under pressure, for one that has not been
 * served yet, no later than the shortened header timeout. */
uint64_t evict_idle_deadline(const struct client *c);

/* Between events: on entering pressure, the incomplete heads' timers are
 * armed again with the shortened deadline. */
void evict_tick(void);

/* Closes an idle HTTP/1.1 connection the clean way (a drain): the write
 * side is shut (after close_notify on TLS), and the client's input is read
 * away until it closes or the linger (2 s) ends, so that a request racing
 * the close meets an end of stream and never a reset. */
void evict_shut_idle(struct client *c);

/* Stops the summary's timer (worker exit). */
void evict_shutdown(void);

#endif
