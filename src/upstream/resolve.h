/* resolve.h -- the servers of a pool's names: each server item written as a
 * host name or an SRV name is resolved on the loop (dns.h), at start and
 * again when its answer's TTL runs out, and its answers fill the name's
 * slots of the pool (pool.h, "Dynamic servers").
 *
 * A host name's servers are the addresses of its A and AAAA answer (IPv4
 * first, POOL_NAME_SERVERS at most), each with the item's weight. An SRV
 * name's are the addresses of its records' targets, each target resolved
 * (all its addresses), in the records' order (priority, then weight), each
 * with its record's port, priority and weight (0 counts as 1, above 1000
 * as 1000), POOL_NAME_SERVERS at most; pool_pick serves only the lowest
 * priority that has a server able to serve.
 *
 * Timing: the next resolution of a name comes after its answer's TTL (the
 * smallest of its records, SRV and targets together), clamped to the pool's
 * resolve.min_interval .. max_interval. A failed resolution (no such name,
 * no answer in time, any other error; an SRV answer none of whose targets
 * exists, or one of whose targets timed out or failed otherwise: a target
 * that does not exist is only left out) changes nothing: the last good
 * servers stay; it is tried again
 * after min_interval, doubling with each failure in a row, up to
 * max_interval and at most RES_RETRY_CAP_MS. A failure is logged once per
 * change of its cause, not per retry.
 *
 * Until its first answer a name has no server: a request to a pool with
 * none in service is answered 503 no_healthy_upstream at once (it does not
 * wait). Each worker resolves its own names. */
#ifndef HG_RESOLVE_H
#define HG_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"
#include "pool.h"

#define RES_RETRY_CAP_MS 30000

/* Whether a pool has a name to resolve (after pool_init): the resolver
 * (dns_init) is then needed. */
bool res_wanted(void);

/* Starts resolving every name of every pool (after pool_init, health_init
 * and dns_init): their first queries leave now. 0, or -1 after logging
 * why. */
int res_init(struct loop *l);

/* Stops: timers stopped, queries cancelled, state freed (the slots keep
 * their servers). Safe without res_init, and twice. */
void res_shutdown(void);

/* ---- pure parts, for the unit tests ---- */

/* A server of an answer. */
struct res_addr {
    struct sockaddr_storage ss;   /* with its port */
    unsigned weight, priority;
    const char *tls_host;         /* an SRV target, or NULL (the slot's own) */
};

/* Plans merging an answer ans[0..n) into a name's slots[0..nslots): take[i]
 * gets the index of the answer slot i holds afterwards, or -1. An address
 * already in service stays in its slot; one that left comes back into the
 * slot it left; a new one takes an unused slot, else a free leaving one
 * (pool_slot_free); a slot in service whose address is not in the answer
 * leaves (take -1). An address given twice counts once. Returns how many
 * addresses found no slot (they are tried again at the next resolution). */
unsigned res_plan(const struct pool_server *slots, unsigned nslots, const struct res_addr *ans,
                  unsigned n, int *take);

/* The time until the next resolution after an answer with this TTL
 * (seconds), clamped to [min_ms, max_ms]. */
uint64_t res_interval_ms(uint32_t ttl, uint64_t min_ms, uint64_t max_ms);

/* The time until the next try after `failures` (>= 1) failures in a row:
 * min_ms doubling with each, up to max_ms and RES_RETRY_CAP_MS (never
 * below min_ms). */
uint64_t res_retry_ms(unsigned failures, uint64_t min_ms, uint64_t max_ms);

#endif
