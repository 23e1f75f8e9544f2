/* listener.h -- listening sockets: accepting within the connection limit,
 * TLS certificates per listener.
 *
 * At max_connections a connection waiting to be accepted takes the place
 * of an evicted one: idle, else an incomplete head (evict.h). When none
 * can be evicted, accepting stops (the rest wait in the listen queue) and
 * resumes between events when a slot frees or becomes evictable
 * (listener_resume). */
#ifndef HG_LISTENER_H
#define HG_LISTENER_H

#include "px.h"

/* Opens c's listeners on l (or serves the inherited sockets fds[i], when fds
 * is not NULL) with their certificates. 0, or -errno after logging which
 * address failed. */
int listener_open_all(struct loop *l, const struct cfg *c, const int *fds);

/* Accepts on every ready listener until the connection limit. */
void listener_accept_all(void);

/* Accepts again if accepting was paused at the limit. */
void listener_resume(void);

/* Stops accepting (a drain): the sockets close; the master keeps its copies. */
void listener_close_all(void);

/* Whether a listener speaks TLS (SIGHUP reloads certificates then). */
bool listener_any_tls(void);

/* SIGHUP without a master: the certificate files are read again. New
 * connections use them; open ones keep theirs. All or nothing. */
void listener_reload_certificates(void);

/* Closes the listeners and frees their certificates (at exit). */
void listener_shutdown(void);

#endif
