/* proxy.h -- listeners, client connections and the exchange state machine.
 *
 * One client connection carries at most one exchange at a time (pipelined
 * requests wait in its input buffer and are answered in order). An exchange
 * runs under the deadlines of tmo.h, all folded into the connection's single
 * timer; whatever ends it early (a timeout, a failed or misbehaving upstream,
 * a client that goes away) takes the one cancellation path, which closes the
 * upstream connection without pooling it and releases every buffer. */
#ifndef HG_PROXY_H
#define HG_PROXY_H

#include "cli.h"
#include "loop.h"

/* Opens the listeners and prepares the pools. 0, or -errno after logging
 * which address failed. */
int px_init(struct loop *l, const struct cfg *cfg);

/* Closes every connection and listener and frees what the proxy holds. */
void px_shutdown(void);

#endif
