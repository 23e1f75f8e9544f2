/* px.c -- the request path's shared state (see px.h). */
#include "px.h"

struct loop *px_loop;
const struct cfg *px_cfg;
struct http_msg px_scratch;
struct http_limits px_req_limits;
struct http_limits px_resp_limits;
struct route_policy px_default_policy;
bool px_draining;
struct client *px_clients;
unsigned px_nclients;

void px_configure(struct loop *l, const struct cfg *c)
{
    px_loop = l;
    px_cfg = c;
    px_req_limits = (struct http_limits){
        .max_line = c->max_request_line,
        .max_head = c->max_request_line + 2 + c->max_header_size,
        .max_block = c->max_header_size,
        .max_fields = c->max_headers,
    };
    px_resp_limits = (struct http_limits){
        .max_line = http_default_limits.max_line,
        .max_head = c->max_response_header_size,
        .max_fields = c->max_response_headers,
    };
    px_default_policy = (struct route_policy){c->connect_ms, c->write_ms, c->read_ms,
                                              c->total_ms, c->body_ms, c->send_ms,
                                              c->tunnel_idle_ms, c->tunnel_max_ms};
}
