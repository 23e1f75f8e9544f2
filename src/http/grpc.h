/* grpc.h -- gRPC's deadline on the wire: the grpc-timeout field, pure.
 *
 * A gRPC call's deadline travels as `grpc-timeout: <value><unit>`, the
 * value an ASCII integer of 1 to 8 digits, the unit one of H (hours),
 * M (minutes), S (seconds), m (milliseconds), u (microseconds) or
 * n (nanoseconds), case-sensitive (gRPC's PROTOCOL-HTTP2.md). hourglass reads
 * it to set a call's total deadline and writes the time left on each
 * attempt, so that the next hop gives up first (issue 16 wires it in). */
#ifndef HG_GRPC_H
#define HG_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest value grpc_timeout_format writes: 8 digits and a unit. */
#define GRPC_TIMEOUT_MAX 9

/* Reads a grpc-timeout value into nanoseconds. 0, or -1 when it is
 * malformed (no digit, more than 8, another byte, a unit missing or
 * unknown): a malformed timeout is a call error (gRPC status INTERNAL). */
int grpc_timeout_parse(const char *v, size_t n, uint64_t *ns);

/* Writes ns as a grpc-timeout value into out (at least GRPC_TIMEOUT_MAX
 * bytes, not NUL-terminated) in the largest unit that keeps millisecond
 * precision: milliseconds, or a coarser unit only past 8 digits of them
 * (27.7 hours). Rounded down, so that the next hop never waits past the
 * deadline (under 1 ms left is "0m"; 99999999H at most). Returns its length. */
int grpc_timeout_format(uint64_t ns, char *out);

/* gRPC status codes hourglass answers with (the full list is 0..16). */
enum {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16,
};
#define GRPC_NSTATUS 17

/* Whether a Content-Type value makes the request a gRPC call: it starts
 * with "application/grpc" ("application/grpc+proto" and the like). */
bool grpc_content_type(const char *v, size_t n);

/* The status of a call whose HTTP response carried no grpc-status: gRPC's
 * "HTTP to gRPC status code mapping" (400 INTERNAL, 401 UNAUTHENTICATED,
 * 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429 502 503 504 UNAVAILABLE,
 * any other UNKNOWN). */
int grpc_status_of_http(int status);

/* The status of a call hourglass ends itself, by the reason it logs: every
 * deadline (a reason ending in "_timeout") DEADLINE_EXCEEDED, but for the
 * connect timeout: like an upstream that cannot be reached or reset the
 * call before answering, no server in service, a full pool, it is
 * UNAVAILABLE (the call may succeed elsewhere); a bad upstream response or request:
 * INTERNAL; the client gone: CANCELLED; a body over the limit:
 * RESOURCE_EXHAUSTED; no route: UNIMPLEMENTED; else by the HTTP status. */
int grpc_status_of_reason(const char *reason, int http_status);

/* Writes text as a grpc-message value (percent-encoding '%' and the bytes
 * outside 0x20..0x7e) into out[0..cap), NUL-terminated, cut if it must be.
 * Returns its length. */
size_t grpc_message_encode(const char *text, char *out, size_t cap);

/* Reads a grpc-status value (1 or 2 digits, 0..16, or larger: kept); -1 when
 * it is not a number. */
int grpc_status_parse(const char *v, size_t n);

#endif
