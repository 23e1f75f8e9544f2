/* dns.h -- asynchronous name resolution: c-ares driven by our own loop.
 *
 * One c-ares channel per process, created by dns_init. Its sockets are
 * registered with the loop (edge-triggered, like every socket) as c-ares
 * opens them and removed as it closes them; its retransmissions run off one
 * loop timer set from ares_timeout. Nothing blocks: a query is sent, and its
 * answer arrives through the loop.
 *
 * A query is an embedded struct dns_query (all zero = idle) plus a small heap
 * ticket while it is pending. The callback runs exactly once, always from the
 * loop after dns_resolve has returned (never from inside dns_resolve, even
 * when c-ares answers at once), unless dns_cancel comes first. The query is
 * idle again when its callback runs, so the callback may start another one
 * on it. Callbacks run outside c-ares: they may call dns_resolve, dns_cancel
 * and dns_shutdown.
 *
 * With explicit servers the resolution is hermetic: neither /etc/hosts nor
 * the search domains of /etc/resolv.conf take part, every name is looked up
 * as given. Without servers, c-ares takes the system configuration
 * (/etc/resolv.conf, then /etc/hosts before DNS, as "fb"). */
#ifndef HG_DNS_H
#define HG_DNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"

struct dns_config {
    const char *servers;      /* "127.0.0.1:5353,[::1]:53" (ares_set_servers_ports_csv), or NULL: /etc/resolv.conf */
    unsigned try_ms;          /* c-ares per-try timeout (default 500 when 0) */
    unsigned tries;           /* default 2 when 0 */
};

#define DNS_MAX_ADDRS 8
#define DNS_MAX_SRV 16
#define DNS_NAME_MAX 254   /* a host name's bytes, NUL included */

/* status: 0 with >= 1 address; -ENOENT no such name / no address;
 * -ETIMEDOUT c-ares gave up; -EIO other failure. addrs (NULL when naddrs is 0)
 * lives only during the call. ttl: with status 0, the smallest TTL (seconds)
 * of the records the answer was made of (the addresses kept, and the CNAMEs
 * that led to them); 0 otherwise. */
typedef void dns_cb(void *arg, int status, const struct sockaddr_storage *addrs, unsigned naddrs,
                    uint32_t ttl);

/* One SRV record (RFC 2782): where a service runs. */
struct dns_srv {
    char target[DNS_NAME_MAX];   /* a host name to resolve, as the record gives it */
    uint16_t port, priority, weight;
};

/* status as dns_cb's (-ENOENT also for an answer without a record, or only
 * the "." target that says the service is not available). recs (NULL when n
 * is 0) are sorted by priority, lowest first, then by weight, heaviest first,
 * at most DNS_MAX_SRV of them; they live only during the call. ttl: the
 * smallest TTL of the SRV records with status 0, else 0. */
typedef void dns_srv_cb(void *arg, int status, const struct dns_srv *recs, unsigned n,
                        uint32_t ttl);

struct dns_query { void *ticket; };   /* embed anywhere; zero = idle */

/* Creates the channel on loop l; c may be NULL (all defaults). 0, or -EINVAL
 * (a bad servers list) or -errno after logging why. Not twice without
 * dns_shutdown in between. */
int dns_init(struct loop *l, const struct dns_config *c);

/* Starts resolving name (NUL-terminated host name, not an IP literal -- the
 * caller handles literals) for TCP port `port` (stored in the returned
 * sockaddrs, network order done for the caller), both A and AAAA (AF_UNSPEC),
 * IPv4 first in the result (all IPv4 addresses, then IPv6 ones, DNS_MAX_ADDRS
 * at most). cb(arg, ...) is called exactly once, later, from the loop (never
 * from inside dns_resolve), unless dns_cancel(q) is called first.
 * 0, -EBUSY when q is already pending, -ENOTCONN before dns_init, -EINVAL for
 * an empty name. */
int dns_resolve(struct dns_query *q, const char *name, uint16_t port, dns_cb *cb, void *arg);

/* Starts looking up the SRV records of name ("_http._tcp.example.com"),
 * with the same contract as dns_resolve: cb(arg, ...) exactly once, later,
 * from the loop, unless dns_cancel(q) comes first. Only the records are
 * given: their targets are resolved with dns_resolve. Same return values. */
int dns_srv(struct dns_query *q, const char *name, dns_srv_cb *cb, void *arg);

/* Cancels a pending query: its callback will never be called. Safe on an idle
 * query. The ticket of a cancelled query stays with c-ares until its answer,
 * its timeout or dns_shutdown, then is freed: no allocation remains. */
void dns_cancel(struct dns_query *q);

bool dns_pending(const struct dns_query *q);

/* Cancels everything (no callback runs; every pending dns_query becomes
 * idle), closes the sockets, frees c-ares. Safe without dns_init, and twice. */
void dns_shutdown(void);

#endif
