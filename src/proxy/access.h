/* access.h -- the access log line of an exchange, and the words that name a
 * request in the error log.
 *
 * One access log line per exchange (log_access), written once (X_LOGGED),
 * counted in the metrics at the same time. */
#ifndef HG_ACCESS_H
#define HG_ACCESS_H

#include "px.h"

/* "127.0.0.1:40000": formatted when a log line needs it, not per connection. */
struct peer_text { char s[64]; };

const char *access_peer(const struct client *c, struct peer_text *t);

void access_log(struct client *c, int status, const char *reason);

/* "client 127.0.0.1:40000, request_id=ID, GET /path" for error log
 * sentences (target cut at 200 bytes): every sentence about a request names
 * its ID, as its access log line does. */
void access_describe(struct client *c, char *out, size_t n);

#endif
