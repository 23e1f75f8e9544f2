/* grpc.c -- gRPC's deadline on the wire (see grpc.h). */
#include "grpc.h"

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
