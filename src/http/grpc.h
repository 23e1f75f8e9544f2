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

#endif
