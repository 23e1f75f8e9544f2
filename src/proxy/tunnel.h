/* tunnel.h -- bytes relayed both ways after a WebSocket 101 or a CONNECT 200.
 *
 * After a 101 to a WebSocket upgrade (or a 200 to CONNECT) the connection
 * pair relays bytes both ways until both directions have ended. The clock is
 * the tunnel's own: idle (no byte either way) and an optional lifetime. */
#ifndef HG_TUNNEL_H
#define HG_TUNNEL_H

#include "px.h"

void tunnel_begin(struct client *c);

int tunnel_end(struct client *c, const char *reason);

int tunnel_step(struct client *c);

#endif
