/* admin.h -- the admin listener (off unless --admin): GET /metrics in the
 * Prometheus text format and GET /healthz, served on the proxy's own loop.
 * Each admin connection answers one request and closes; it holds a small
 * fixed buffer and a 2 s deadline, so a stuck scraper costs nothing. */
#ifndef HG_ADMIN_H
#define HG_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"
#include "value.h"

/* Renders /metrics into out (cap bytes); returns the length, or the length
 * needed when larger than cap. */
typedef size_t admin_render_fn(char *out, size_t cap);

/* Whether /healthz should say 200 (false: 503, e.g. while draining). */
typedef bool admin_healthy_fn(void);

/* Serves the admin listener: fd when >= 0 (opened by a master and shared
 * by its workers), else a socket opened here for addr. 0, or -errno after
 * logging why. */
int admin_init(struct loop *l, const struct cli_addr *addr, int fd, admin_render_fn *render,
               admin_healthy_fn *healthy);

/* Stops accepting admin connections (those open are answered): a retiring
 * worker leaves the shared socket to the generation that replaced it. */
void admin_close_listener(void);

/* Closes the listener and every admin connection. */
void admin_stop(void);

#endif
