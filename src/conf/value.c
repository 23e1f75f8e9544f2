/* value.c -- durations, sizes, header names and addresses (see value.h). */
#define _GNU_SOURCE
#include "value.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

int val_defer_accept(const char *s, unsigned *secs)
{
    uint64_t ms;
    if (val_duration(s, &ms) < 0 || ms == 0 || ms % 1000 || ms > 30000)
        return -1;
    *secs = (unsigned)(ms / 1000);
    return 0;
}

int val_duration(const char *s, uint64_t *ms)
{
    uint64_t whole = 0, frac = 0, scale = 1;
    const char *p = s;
    int digits = 0;

    while (*p >= '0' && *p <= '9') {
        whole = whole * 10 + (uint64_t)(*p++ - '0');
        if (++digits > 12)
            return -1;
    }
    if (*p == '.') {
        p++;
        int fd = 0;
        while (*p >= '0' && *p <= '9') {
            if (++fd > 6)
                return -1;
            frac = frac * 10 + (uint64_t)(*p++ - '0');
            scale *= 10;
        }
        if (!fd)
            return -1;
    }
    if (!digits && scale == 1)
        return -1;
    uint64_t unit;
    if (strcmp(p, "ms") == 0)
        unit = 1;
    else if (strcmp(p, "s") == 0 || *p == '\0')
        unit = 1000;
    else if (strcmp(p, "m") == 0)
        unit = 60000;
    else if (strcmp(p, "h") == 0)
        unit = 3600000;
    else
        return -1;
    if ((frac * unit) % scale)
        return -1;   /* finer than a millisecond */
    uint64_t v = whole * unit + frac * unit / scale;
    if (v > UINT32_MAX)
        return -1;
    *ms = v;
    return 0;
}

int val_size(const char *s, uint64_t *bytes)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1ull << 10;
    else if (*end == 'm' || *end == 'M')
        mul = 1ull << 20;
    else if (*end == 'g' || *end == 'G')
        mul = 1ull << 30;
    else if (*end)
        return -1;
    if (*end) {
        end++;
        if (strcmp(end, "iB") != 0 && strcmp(end, "") != 0 && strcmp(end, "B") != 0)
            return -1;
    }
    if (v > (1ull << 50) / mul)
        return -1;
    *bytes = v * mul;
    return 0;
}

bool val_header_name(const char *s)
{
    bool ok = *s != '\0' && strlen(s) <= 64;
    for (const char *q = s; ok && *q; q++)
        ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
             *q == '-' || *q == '_';
    return ok;
}

static void addr_text(struct cli_addr *a)
{
    char host[INET6_ADDRSTRLEN];
    if (a->ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        snprintf(a->text, sizeof a->text, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(a->text, sizeof a->text, "%s:%u", host, ntohs(s4->sin_port));
    }
}

int val_address(const char *s, struct cli_addr *a, char *err, size_t errlen)
{
    char host[256];
    const char *port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host) {
            snprintf(err, errlen, "expected [IPV6]:PORT");
            return -1;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= sizeof host) {
            snprintf(err, errlen, "expected HOST:PORT");
            return -1;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    char *endp;
    long pn = strtol(port, &endp, 10);
    if (!*port || *endp || pn < 1 || pn > 65535) {
        snprintf(err, errlen, "port must be a number from 1 to 65535");
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
    freeaddrinfo(res);
    addr_text(a);
    return 0;
}

/* Splits "HOST:PORT" or "[V6]:PORT" into host (NUL-terminated, brackets
 * off) and port; *bracketed when the host was in brackets. 0, or -1 with a
 * message in err. */
static int split_host_port(const char *s, char *host, size_t cap, uint16_t *port,
                           bool *bracketed, char *err, size_t errlen)
{
    const char *p;
    *bracketed = s[0] == '[';
    if (*bracketed) {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= cap) {
            snprintf(err, errlen, "expected [IPV6]:PORT");
            return -1;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        p = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= cap) {
            snprintf(err, errlen, "expected HOST:PORT");
            return -1;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        p = colon + 1;
    }
    char *endp;
    long pn = strtol(p, &endp, 10);
    if (!*p || *endp || pn < 1 || pn > 65535) {
        snprintf(err, errlen, "port must be a number from 1 to 65535");
        return -1;
    }
    *port = (uint16_t)pn;
    return 0;
}

int val_server(const char *s, struct val_server *v, char *err, size_t errlen)
{
    char host[VAL_NAME_MAX + 2];
    uint16_t port;
    bool bracketed;
    if (split_host_port(s, host, sizeof host, &port, &bracketed, err, errlen) < 0)
        return -1;
    memset(v, 0, sizeof *v);
    struct sockaddr_storage ss;
    switch (addr_parse_ip(host, strlen(host), &ss)) {
    case 1:
        if (bracketed && ss.ss_family != AF_INET6)
            break;
        addr_set_port(&ss, port);
        v->addr.len = addr_socklen((const struct sockaddr *)&ss);
        memcpy(&v->addr.ss, &ss, v->addr.len);
        addr_text(&v->addr);
        v->port = port;
        memcpy(v->text, v->addr.text, sizeof v->addr.text);
        return 0;
    case 0:
        if (bracketed)
            break;
        addr_host_lower(v->name, sizeof v->name, host, strlen(host));
        v->port = port;
        snprintf(v->text, sizeof v->text, "%s:%u", v->name, port);
        return 0;
    }
    snprintf(err, errlen, bracketed ? "expected [IPV6]:PORT"
                                    : "the host is neither an IP address nor a host name");
    return -1;
}

int val_srv_name(const char *s, struct val_server *v, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    size_t n = strlen(s);
    if (n > VAL_NAME_MAX || addr_parse_ip(s, n, &ss) != 0) {
        snprintf(err, errlen, "expected an SRV name such as _http._tcp.example.com");
        return -1;
    }
    memset(v, 0, sizeof *v);
    addr_host_lower(v->name, sizeof v->name, s, n);
    v->srv = true;
    snprintf(v->text, sizeof v->text, "%s", v->name);
    return 0;
}
