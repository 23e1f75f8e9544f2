/* request.h -- a finished request head becomes an exchange.
 *
 * The client hands each complete, parsed request head here (the client ->
 * exchange half of the interface in docs/DESIGN.md): the head is checked
 * (framing, Host, target form, CONNECT), routed by host and path (or
 * admitted by the forward proxy), its deadlines set (the route's, capped by
 * a trusted client's deadline header), and the head the upstream will get
 * is written; then the exchange dispatches its first attempt. */
#ifndef HG_REQUEST_H
#define HG_REQUEST_H

#include "px.h"

/* The request head (px_scratch, head_len bytes at c->in.start) starts an
 * exchange. 1 to go on (answered with an error is going on too), -1 when
 * the client connection was closed. */
int request_start(struct client *c, int head_len);

#endif
