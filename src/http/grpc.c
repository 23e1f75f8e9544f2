/* grpc.c -- gRPC's deadline on the wire (see grpc.h). */
#include "grpc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_VALUE 99999999u

/* Units finest first: the wire letter and its length in nanoseconds. */
static const struct {
    char unit;
    uint64_t ns;
} units[] = {
    {'n', 1},
    {'u', 1000},
    {'m', 1000000},
    {'S', 1000000000},
    {'M', 60ull * 1000000000},
    {'H', 3600ull * 1000000000},
};

#define NUNITS (sizeof units / sizeof units[0])

int grpc_timeout_parse(const char *v, size_t n, uint64_t *ns)
{
    if (n < 2 || n > 9)
        return -1;
    uint64_t value = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        value = value * 10 + (uint64_t)(v[i] - '0');
    }
    for (size_t k = 0; k < NUNITS; k++)
        if (v[n - 1] == units[k].unit) {
            *ns = value * units[k].ns;   /* at most 99999999 H: 3.6e17, no overflow */
            return 0;
        }
    return -1;
}

int grpc_timeout_format(uint64_t ns, char *out)
{
    size_t k = 2;   /* milliseconds, then coarser only when 8 digits do not hold it */
    while (k + 1 < NUNITS && ns / units[k].ns > MAX_VALUE)
        k++;
    uint64_t value = ns / units[k].ns;
    if (value > MAX_VALUE)
        value = MAX_VALUE;
    char t[8];
    int d = 0;
    do {
        t[d++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (int i = 0; i < d; i++)
        out[i] = t[d - 1 - i];
    out[d] = units[k].unit;
    return d + 1;
}

bool grpc_content_type(const char *v, size_t n)
{
    return n >= 16 && strncasecmp(v, "application/grpc", 16) == 0 &&
           (n == 16 || v[16] == '+' || v[16] == ';');
}

int grpc_status_of_http(int status)
{
    switch (status) {
    case 400:
        return GRPC_INTERNAL;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && memcmp(s + n - t, tail, t) == 0;
}

int grpc_status_of_reason(const char *reason, int http_status)
{
    static const struct {
        const char *reason;
        int status;
    } table[] = {
        {"upstream_refused", GRPC_UNAVAILABLE},    {"upstream_error", GRPC_UNAVAILABLE},
        {"upstream_reset", GRPC_UNAVAILABLE},      {"upstream_closed", GRPC_UNAVAILABLE},
        {"upstream_tls_error", GRPC_UNAVAILABLE},  {"no_healthy_upstream", GRPC_UNAVAILABLE},
        {"pool_full", GRPC_UNAVAILABLE},           {"connect_timeout", GRPC_UNAVAILABLE},
        {"queue_timeout", GRPC_UNAVAILABLE},       /* shed: another replica may take it */
        {"proxy_overloaded", GRPC_UNAVAILABLE},    /* likewise */
        {"deadline_unmeetable", GRPC_DEADLINE_EXCEEDED},
        {"bad_upstream_response", GRPC_INTERNAL},
        {"upstream_head_too_large", GRPC_INTERNAL}, {"bad_request", GRPC_INTERNAL},
        {"bad_grpc_timeout", GRPC_INTERNAL},       {"client_abort", GRPC_CANCELLED},
        {"body_too_large", GRPC_RESOURCE_EXHAUSTED}, {"no_route", GRPC_UNIMPLEMENTED},
    };
    if (reason) {
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
            if (strcmp(reason, table[i].reason) == 0)
                return table[i].status;
        if (ends_with(reason, "_timeout"))
            return GRPC_DEADLINE_EXCEEDED;
    }
    return grpc_status_of_http(http_status);
}

size_t grpc_message_encode(const char *text, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!cap)
        return 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
        size_t need = plain ? 1 : 3;
        if (o + need >= cap)
            break;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return o;
}

int grpc_status_parse(const char *v, size_t n)
{
    if (n < 1 || n > 3)
        return -1;
    int s = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        s = s * 10 + (v[i] - '0');
    }
    return s;
}
