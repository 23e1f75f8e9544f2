/* trace.c -- request IDs and the traceparent's trace ID (see trace.h). */
#include "trace.h"

#include <string.h>

static const char hex[] = "0123456789abcdef";

bool trace_rid_valid(const char *v, size_t n)
{
    if (n == 0 || n > TRACE_RID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == ':' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

size_t trace_rid_format(const uint8_t rnd[TRACE_RID_BYTES], char *out)
{
    for (size_t i = 0; i < TRACE_RID_BYTES; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[2 * TRACE_RID_BYTES] = '\0';
    return 2 * TRACE_RID_BYTES;
}

/* n lowercase hex digits at p, not all zeros when nonzero is set. */
static bool lower_hex(const char *p, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
        any |= ch != '0';
    }
    return any || !nonzero;
}

bool trace_parent_id(const char *v, size_t n, char *out)
{
    /* 00-<32>-<16>-<2>: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 bytes exactly */
    if (n != 55 || v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!lower_hex(v + 3, TRACE_ID_LEN, true) || !lower_hex(v + 36, 16, true) ||
        !lower_hex(v + 53, 2, false))
        return false;
    memcpy(out, v + 3, TRACE_ID_LEN);
    out[TRACE_ID_LEN] = '\0';
    return true;
}
