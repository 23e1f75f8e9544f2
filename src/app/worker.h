/* worker.h -- a worker process: the request path on one event loop.
 *
 * One client connection carries at most one exchange at a time (pipelined
 * requests wait in its input buffer and are answered in order). An exchange
 * runs under the deadlines of tmo.h, all folded into the connection's single
 * timer; whatever ends it early (a timeout, a failed or misbehaving upstream,
 * a client that goes away) takes the one cancellation path, which closes the
 * upstream connection without pooling it and releases every buffer. The
 * worker starts that path (src/proxy/) on its loop and acts on signals
 * between events. */
#ifndef HG_WORKER_H
#define HG_WORKER_H

#include "cfg.h"
#include "loop.h"

/* Listening sockets opened by a master and inherited by a worker:
 * listen[i] serves cfg->listen[i]; admin serves cfg->admin (-1: none). */
struct worker_fds {
    int listen[CLI_MAX_LISTEN];
    int admin;
    int shared_area;       /* the generation's pool state (poolshm.h); -1: none */
    unsigned slot, nworkers;   /* this worker's slot among the generation's */
};

/* Opens the listeners (or serves those of fds, when not NULL) and prepares
 * the pools. 0, or -errno after logging which address failed.
 *
 * Signals, acted on between events: sig_term drains (stop accepting, let
 * in-flight requests finish within cfg->drain_ms; a second one stops now);
 * sig_usr2 retires: the same drain, and the shared admin listener is left
 * to the generation that replaced this one; sig_usr1 reopens the logs;
 * sig_hup reloads the TLS certificates (without a master). */
int worker_init(struct loop *l, const struct cfg *cfg, const struct worker_fds *fds);

/* Closes every connection and listener and frees what the worker holds. */
void worker_shutdown(void);

#endif
