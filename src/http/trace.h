/* trace.h -- what names a request across hops: the request ID (X-Request-Id)
 * and the W3C trace context's trace ID (traceparent).
 *
 * Pure functions: no I/O, no clock, no allocation. The random bytes of a
 * generated ID come from the caller (observe.c draws them from OpenSSL in
 * batches), so the text they become is tested here with fixed bytes. */
#ifndef HG_TRACE_H
#define HG_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest request ID taken from a client; a generated one is 32. */
#define TRACE_RID_MAX 64
/* The random bytes of a generated ID: 128 bits, 32 lowercase hex digits. */
#define TRACE_RID_BYTES 16
/* A trace ID: 32 lowercase hex digits. */
#define TRACE_ID_LEN 32

/* Whether v (n bytes) may be used as a request ID taken from a client: 1 to
 * TRACE_RID_MAX characters of [A-Za-z0-9._:-], so that it can go in a log
 * line, a key=value field and a header without escaping. */
bool trace_rid_valid(const char *v, size_t n);

/* Writes the TRACE_RID_BYTES bytes of rnd as 32 lowercase hex digits and a
 * NUL into out (at least 33 bytes). Returns 32. */
size_t trace_rid_format(const uint8_t rnd[TRACE_RID_BYTES], char *out);

/* The trace ID of a traceparent field value (v, n bytes; OWS already
 * trimmed): "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lower
 * case, neither ID all zeros (W3C Trace Context, version 00). Copies the 32
 * digits and a NUL into out (at least 33 bytes) and returns true; false for
 * anything else (another version, upper case, a wrong length). */
bool trace_parent_id(const char *v, size_t n, char *out);

#endif
