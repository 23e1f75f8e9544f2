/* forward.h -- the forward proxy: who may use it, where it may go, DNS.
 *
 * A forward listener takes absolute-form requests and CONNECT host:port.
 * Destinations are checked on the address actually connected to, after
 * resolution, never on the name.
 *
 * A forward request takes no route (its x.route stays NULL): its timeouts
 * are the default policy's (px_default_policy: the command line's), with
 * no retry, no hedge, and no place in a pool's counts. */
#ifndef HG_FORWARD_H
#define HG_FORWARD_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cfg.h"

struct cfg;
struct client;
struct http_msg;
struct loop;

/* Whether a listener of c is a forward proxy (it then needs the resolver,
 * dns_init, which the worker starts before forward_init). */
bool forward_wanted(const struct cfg *c);

/* Prepares the forward proxy when a listener of c is one: the credentials
 * file. 0, or -1 after logging why. */
int forward_init(struct loop *l, const struct cfg *c);

/* Frees what forward_init made. */
void forward_shutdown(void);

/* Checks the client, its credentials and the target; 0 to go on (the
 * destination is in the session), else 1 after answering. */
int forward_admit(struct client *c, const struct http_msg *m, bool is_connect);

/* Resolves the destination's name (an IP literal needs none), then
 * connects; DNS runs under the dns timeout, clamped by the total. */
int forward_resolve(struct client *c);

/* The connect to the destination's address failed (refused, unreachable,
 * timed out: why): the attempt is dropped and the next address of the
 * answer that may be reached is connected to (RFC 8305, one at a time),
 * with a connect clock of its own, under the same total deadline. -1 when
 * there is none left (the caller answers the failure), else the outcome of
 * the new dispatch. */
int forward_next(struct client *c, const char *why);

/* CONNECT: the upstream connection is open, the tunnel begins. */
int forward_established(struct client *c);

#endif
