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
    memcpy(px_default_policy.ms, c->ms, sizeof px_default_policy.ms);
}
