/* addr.c -- IP literals, address classes, CIDR lists, authority (see addr.h). */
#define _POSIX_C_SOURCE 200809L
#include "addr.h"

#include <netinet/in.h>
#include <string.h>

/* ------------------------------------------------------------ characters */

/* ASCII only: <ctype.h> follows the locale, and a host name must not. */
static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The value of a hex digit, or -1. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A host name: letters, digits, '-', '_', labels of 1..63 bytes separated by
 * single dots, no label starting or ending with '-', one trailing dot
 * allowed, at most 253 bytes without it. Underscores are allowed anywhere
 * (_sip._tcp names, some real host names); what matters is that nothing else
 * (spaces, '%', '@', ':', '+', NUL, bytes >= 0x80) reaches the resolver, and
 * that "-1" is not taken for a name. */
static bool host_name_ok(const char *s, size_t len)
{
    size_t label = 0;

    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alpha(c) || is_digit(c) || c == '_' || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

/* ------------------------------------------------------------------ IPv4 */

/* One inet_aton part: decimal, octal after a leading 0, hex after 0x or 0X
 * with at least one digit. 0 and the value, or -1 (empty, a digit outside
 * the base, more than 32 bits). */
static int v4_part(const char *s, size_t len, uint32_t *out)
{
    unsigned base = 10;
    size_t i = 0;
    uint64_t v = 0;

    if (len == 0)
        return -1;
    if (s[0] == '0' && len > 1) {
        if (s[1] == 'x' || s[1] == 'X') {
            base = 16;
            i = 2;
            if (len == 2)
                return -1;
        } else {
            base = 8;
            i = 1;
        }
    }
    for (; i < len; i++) {
        int d = hex_value(s[i]);
        if (d < 0 || (unsigned)d >= base)
            return -1;
        v = v * base + (unsigned)d;
        if (v > UINT32_MAX)   /* checked per digit: a long input cannot wrap */
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Every inet_aton form: 1 to 4 parts, all but the last at most 255, the last
 * filling the remaining 32 - 8 * (parts - 1) bits. 0 or -1. */
static int v4_aton(const char *s, size_t len, uint32_t *out)
{
    uint32_t part[4];
    size_t n = 0, start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.')
            continue;
        if (n == 4 || v4_part(s + start, i - start, &part[n]) < 0)
            return -1;
        n++;
        start = i + 1;
    }
    uint32_t v = 0;
    for (size_t k = 0; k + 1 < n; k++) {
        if (part[k] > 255)
            return -1;
        v |= part[k] << (24 - 8 * k);
    }
    unsigned last_bits = 8 * (unsigned)(5 - n);   /* 32, 24, 16 or 8 */
    if (last_bits < 32 && (part[n - 1] >> last_bits) != 0)
        return -1;
    *out = v | part[n - 1];
    return 0;
}

/* Strict dotted quad: four decimal parts 0..255, no leading zero (010 would
 * be 8 to inet_aton and 10 to others). For IPv6 tails and configuration. */
static int v4_quad(const char *s, size_t len, uint32_t *out)
{
    uint32_t v = 0;
    size_t i = 0;

    for (int k = 0; k < 4; k++) {
        size_t start = i;
        unsigned b = 0;
        if (k > 0) {
            if (i >= len || s[i] != '.')
                return -1;
            start = ++i;
        }
        while (i < len && is_digit(s[i]) && i - start < 3)
            b = b * 10 + (unsigned)(s[i++] - '0');
        if (i == start || b > 255 || (s[start] == '0' && i - start > 1))
            return -1;
        v = v << 8 | b;
    }
    if (i != len)
        return -1;
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ IPv6 */

/* RFC 4291 section 2.2 text: 0 and 16 bytes in network order, or -1. A
 * zone id, brackets or anything else not listed in addr.h is -1. */
static int v6_parse(const char *s, size_t len, uint8_t out[16])
{
    uint16_t g[8];
    size_t n = 0, i = 0;
    long gap = -1;   /* index in g where "::" stands */

    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        gap = 0;
        i = 2;
    } else if (len == 0 || s[0] == ':') {
        return -1;
    }
    while (i < len) {
        size_t j = i;
        unsigned v = 0;
        while (j < len && hex_value(s[j]) >= 0 && j - i < 5) {
            v = v << 4 | (unsigned)hex_value(s[j]);
            j++;
        }
        if (j < len && s[j] == '.') {
            uint32_t a;
            if (n > 6 || v4_quad(s + i, len - i, &a) < 0)
                return -1;
            g[n++] = (uint16_t)(a >> 16);
            g[n++] = (uint16_t)a;
            break;
        }
        if (j == i || j - i > 4 || n == 8)
            return -1;
        g[n++] = (uint16_t)v;
        i = j;
        if (i == len)
            break;
        if (s[i] != ':')
            return -1;
        i++;
        if (i < len && s[i] == ':') {
            if (gap >= 0)
                return -1;
            gap = (long)n;
            i++;
        } else if (i == len) {
            return -1;   /* a trailing single colon */
        }
    }
    if (gap < 0 ? n != 8 : n == 8)   /* "::" must stand for one group at least */
        return -1;
    if (gap < 0)
        gap = (long)n;
    size_t head = (size_t)gap, tail = n - head;
    memset(out, 0, 16);
    for (size_t k = 0; k < head; k++) {
        out[2 * k] = (uint8_t)(g[k] >> 8);
        out[2 * k + 1] = (uint8_t)g[k];
    }
    for (size_t k = 0; k < tail; k++) {
        size_t at = 8 - tail + k;
        out[2 * at] = (uint8_t)(g[head + k] >> 8);
        out[2 * at + 1] = (uint8_t)g[head + k];
    }
    return 0;
}

/* ------------------------------------------------------------ sockaddrs */

static void put_v4(struct sockaddr_storage *ss, uint32_t a)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(a);
    memset(ss, 0, sizeof *ss);
    memcpy(ss, &sin, sizeof sin);
}

static void put_v6(struct sockaddr_storage *ss, const uint8_t b[16])
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    memcpy(&sin6.sin6_addr, b, 16);
    memset(ss, 0, sizeof *ss);
    memcpy(ss, &sin6, sizeof sin6);
}

static uint32_t load32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The address bytes of sa (copied, not read through a cast pointer) and its
 * family: AF_INET (4 bytes) or AF_INET6 (16). With unmap, an IPv4-mapped
 * IPv6 address comes out as AF_INET. 0 for another family or NULL. */
static sa_family_t sa_bytes(const struct sockaddr *sa, uint8_t b[16], bool unmap)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof sin);
        memcpy(b, &sin.sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof sin6);
        memcpy(b, &sin6.sin6_addr, 16);
        if (unmap && memcmp(b, mapped, 12) == 0) {
            memmove(b, b + 12, 4);
            return AF_INET;
        }
        return AF_INET6;
    }
    return 0;
}

/* ---------------------------------------------------------- parse_ip */

int addr_parse_ip(const char *s, size_t len, struct sockaddr_storage *out)
{
    uint8_t b[16];
    uint32_t a;

    if (len == 0)
        return -1;
    if (s[0] == '[') {
        if (len < 2 || s[len - 1] != ']' || v6_parse(s + 1, len - 2, b) < 0)
            return -1;
        put_v6(out, b);
        return 1;
    }
    if (memchr(s, ':', len)) {
        if (v6_parse(s, len, b) < 0)
            return -1;
        put_v6(out, b);
        return 1;
    }
    /* Numeric or a name? Decided by the last label, as the WHATWG URL
     * parser's "ends in a number" does, but on its first byte: a last label
     * such as 1x or 08 is a mistyped number to some parser, never a TLD. */
    size_t n = len, last;
    if (s[n - 1] == '.')
        n--;
    for (last = n; last > 0 && s[last - 1] != '.'; last--)
        ;
    if (last < n && is_digit(s[last])) {
        if (v4_aton(s, n, &a) < 0)
            return -1;
        put_v4(out, a);
        return 1;
    }
    return host_name_ok(s, len) ? 0 : -1;
}

/* ------------------------------------------------------------- classes */

/* IPv4 special-purpose blocks (RFC 6890 and its updates). Blocks that are
 * globally reachable despite a registry entry (e.g. 192.31.196.0/24 AS112)
 * are left public. 192.0.0.0/24 is reserved whole, though two /32s in it
 * (PCP and TURN anycast) are routable: no proxy client needs them. */
static const struct {
    uint32_t net;
    uint8_t bits;
    uint8_t cls;
} v4_blocks[] = {
#define V4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))
    {V4(0, 0, 0, 0), 8, ADDR_UNSPECIFIED},     /* "this network"; 0.0.0.0 is local */
    {V4(10, 0, 0, 0), 8, ADDR_PRIVATE},        /* RFC 1918 */
    {V4(100, 64, 0, 0), 10, ADDR_PRIVATE},     /* shared address space, CGNAT (RFC 6598) */
    {V4(127, 0, 0, 0), 8, ADDR_LOOPBACK},
    {V4(169, 254, 0, 0), 16, ADDR_LINK_LOCAL}, /* incl. cloud metadata 169.254.169.254 */
    {V4(172, 16, 0, 0), 12, ADDR_PRIVATE},     /* RFC 1918 */
    {V4(192, 0, 0, 0), 24, ADDR_RESERVED},     /* IETF protocol assignments (DS-Lite, ...) */
    {V4(192, 0, 2, 0), 24, ADDR_RESERVED},     /* TEST-NET-1, documentation */
    {V4(192, 88, 99, 0), 24, ADDR_RESERVED},   /* 6to4 relay anycast, deprecated (RFC 7526) */
    {V4(192, 168, 0, 0), 16, ADDR_PRIVATE},    /* RFC 1918 */
    {V4(198, 18, 0, 0), 15, ADDR_RESERVED},    /* benchmarking (RFC 2544) */
    {V4(198, 51, 100, 0), 24, ADDR_RESERVED},  /* TEST-NET-2 */
    {V4(203, 0, 113, 0), 24, ADDR_RESERVED},   /* TEST-NET-3 */
    {V4(224, 0, 0, 0), 4, ADDR_MULTICAST},
    {V4(240, 0, 0, 0), 4, ADDR_RESERVED},      /* future use, incl. broadcast 255.255.255.255 */
#undef V4
};

static enum addr_class class_v4(uint32_t a)
{
    for (size_t i = 0; i < sizeof v4_blocks / sizeof v4_blocks[0]; i++) {
        uint32_t mask = ~UINT32_C(0) << (32 - v4_blocks[i].bits);   /* bits >= 4 here */
        if ((a & mask) == v4_blocks[i].net)
            return (enum addr_class)v4_blocks[i].cls;
    }
    return ADDR_PUBLIC;
}

/* Whether the first bits of a and b agree. */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return ((a[whole] ^ b[whole]) & mask) == 0;
}

/* IPv6 blocks inside 2000::/3 that are not public, and the non-public
 * classes outside it. Everything else outside 2000::/3, the only block IANA
 * allocates global unicast from, is ADDR_RESERVED: that covers 100::/64
 * (discard), 64:ff9b:1::/48 (local-use NAT64, whose IPv4 position depends on
 * the operator's prefix length), ::ffff:0:0:0/96 (SIIT), 5f00::/16 (SRv6). */
static const struct {
    uint8_t net[6];
    uint8_t bits;
    uint8_t cls;
} v6_blocks[] = {
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48, ADDR_RESERVED}, /* 2001:2::/48 benchmarking */
    {{0x20, 0x01, 0x00, 0x10}, 28, ADDR_RESERVED},   /* 2001:10::/28 ORCHID, deprecated */
    {{0x20, 0x01, 0x00, 0x20}, 28, ADDR_RESERVED},   /* 2001:20::/28 ORCHIDv2 */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, ADDR_RESERVED},   /* 2001:db8::/32 documentation */
    {{0x3f, 0xff, 0x00, 0x00}, 20, ADDR_RESERVED},   /* 3fff::/20 documentation (RFC 9637) */
    {{0xfc}, 7, ADDR_PRIVATE},                       /* fc00::/7 unique local */
    {{0xfe, 0x80}, 10, ADDR_LINK_LOCAL},             /* fe80::/10 */
    {{0xfe, 0xc0}, 10, ADDR_PRIVATE},                /* fec0::/10 site-local, deprecated */
    {{0xff}, 8, ADDR_MULTICAST},                     /* ff00::/8 */
};

static enum addr_class class_v6(const uint8_t b[16])
{
    static const uint8_t zero[12];
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};

    if (memcmp(b, zero, 12) == 0) {
        uint32_t v4 = load32(b + 12);
        if (v4 == 0)
            return ADDR_UNSPECIFIED;
        if (v4 == 1)
            return ADDR_LOOPBACK;
        return class_v4(v4);   /* IPv4-compatible, deprecated but routable via SIT */
    }
    if (memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff)
        return class_v4(load32(b + 12));   /* IPv4-mapped */
    if (memcmp(b, nat64, 12) == 0)
        return class_v4(load32(b + 12));   /* NAT64 well-known prefix 64:ff9b::/96 */
    if (b[0] == 0x20 && b[1] == 0x02)
        return class_v4(load32(b + 2));    /* 6to4 2002:V4ADDR::/48 */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) {
        /* Teredo 2001:0:SERVER:flags:port:~CLIENT; the packets go to both. */
        uint32_t client = ~load32(b + 12);
        enum addr_class c = class_v4(client);
        return c != ADDR_PUBLIC ? c : class_v4(load32(b + 4));
    }
    for (size_t i = 0; i < sizeof v6_blocks / sizeof v6_blocks[0]; i++)
        if (prefix_eq(b, v6_blocks[i].net, v6_blocks[i].bits))
            return (enum addr_class)v6_blocks[i].cls;
    if ((b[0] & 0xe0) != 0x20)
        return ADDR_RESERVED;
    return ADDR_PUBLIC;
}

enum addr_class addr_classify(const struct sockaddr *sa)
{
    uint8_t b[16];
    switch (sa_bytes(sa, b, false)) {
    case AF_INET:
        return class_v4(load32(b));
    case AF_INET6:
        return class_v6(b);
    default:
        return ADDR_RESERVED;
    }
}

const char *addr_class_name(enum addr_class c)
{
    static const char *const names[ADDR_NCLASS] = {
        [ADDR_PUBLIC] = "public",           [ADDR_LOOPBACK] = "loopback",
        [ADDR_PRIVATE] = "private",         [ADDR_LINK_LOCAL] = "link_local",
        [ADDR_UNSPECIFIED] = "unspecified", [ADDR_MULTICAST] = "multicast",
        [ADDR_RESERVED] = "reserved",
    };
    if ((unsigned)c >= ADDR_NCLASS)
        return "invalid";
    return names[c];
}

/* ---------------------------------------------------------------- CIDR */

int addr_cidr_parse(const char *s, struct addr_cidr *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    size_t len = strlen(s);
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    struct addr_cidr c;
    unsigned max;

    memset(&c, 0, sizeof c);
    if (alen == 0)
        return -1;
    if (memchr(s, ':', alen)) {
        if (v6_parse(s, alen, c.addr) < 0)
            return -1;
        c.family = AF_INET6;
        max = 128;
    } else {
        uint32_t a;
        if (v4_quad(s, alen, &a) < 0)
            return -1;
        c.addr[0] = (uint8_t)(a >> 24);
        c.addr[1] = (uint8_t)(a >> 16);
        c.addr[2] = (uint8_t)(a >> 8);
        c.addr[3] = (uint8_t)a;
        c.family = AF_INET;
        max = 32;
    }
    unsigned bits = max;
    if (slash) {
        const char *p = slash + 1;
        size_t plen = len - alen - 1;
        if (plen == 0 || plen > 3 || (p[0] == '0' && plen > 1))
            return -1;
        bits = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!is_digit(p[i]))
                return -1;
            bits = bits * 10 + (unsigned)(p[i] - '0');
        }
        if (bits > max)
            return -1;
    }
    if (c.family == AF_INET6 && bits >= 96 && memcmp(c.addr, mapped, 12) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        bits -= 96;
        max = 32;
    }
    /* Host bits must be zero: compare with the address masked to bits. */
    uint8_t masked[16] = {0};
    memcpy(masked, c.addr, bits / 8);
    if (bits % 8)
        masked[bits / 8] = (uint8_t)(c.addr[bits / 8] & (0xff00u >> (bits % 8)));
    if (memcmp(masked, c.addr, max / 8) != 0)
        return -1;
    c.bits = (uint8_t)bits;
    *out = c;
    return 0;
}

bool addr_cidr_match(const struct addr_cidr *c, const struct sockaddr *sa)
{
    uint8_t b[16];
    sa_family_t fam = sa_bytes(sa, b, true);
    if (fam == 0 || fam != c->family)
        return false;
    return prefix_eq(b, c->addr, c->bits);
}

bool addr_cidr_list_match(const struct addr_cidr *list, size_t n, const struct sockaddr *sa)
{
    for (size_t i = 0; i < n; i++)
        if (addr_cidr_match(&list[i], sa))
            return true;
    return false;
}

/* ----------------------------------------------------------- authority */

int addr_parse_authority(const char *s, size_t len, struct addr_authority *out)
{
    struct addr_authority a;
    uint8_t b[16];
    size_t i;

    memset(&a, 0, sizeof a);
    if (len == 0)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return -1;
        a.host = s + 1;
        a.host_len = (size_t)(close - s) - 1;
        if (v6_parse(a.host, a.host_len, b) < 0)
            return -1;
        put_v6(&a.ip, b);
        a.is_ip = true;
        i = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', len);
        a.host = s;
        a.host_len = colon ? (size_t)(colon - s) : len;
        int r = addr_parse_ip(a.host, a.host_len, &a.ip);
        if (r < 0)
            return -1;
        a.is_ip = r == 1;
        i = a.host_len;
    }
    if (i < len) {
        if (s[i] != ':')
            return -1;
        i++;
        size_t digits = len - i;
        if (digits == 0 || digits > 5)
            return -1;
        unsigned port = 0;
        for (; i < len; i++) {
            if (!is_digit(s[i]))
                return -1;
            port = port * 10 + (unsigned)(s[i] - '0');
        }
        if (port == 0 || port > 65535)
            return -1;
        a.port = (uint16_t)port;
        a.has_port = true;
        if (a.is_ip)
            addr_set_port(&a.ip, a.port);
    }
    *out = a;
    return 0;
}

int addr_host_lower(char *out, size_t n, const char *s, size_t len)
{
    if (n <= len)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';
    return 0;
}

/* -------------------------------------------------------------- helpers */

socklen_t addr_socklen(const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (sa && sa->sa_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}

bool addr_same(const struct sockaddr *a, const struct sockaddr *b)
{
    if (!a || !b || a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET) {
        struct sockaddr_in x, y;
        memcpy(&x, a, sizeof x);
        memcpy(&y, b, sizeof y);
        return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        struct sockaddr_in6 x, y;
        memcpy(&x, a, sizeof x);
        memcpy(&y, b, sizeof y);
        return x.sin6_port == y.sin6_port && x.sin6_scope_id == y.sin6_scope_id &&
               !memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr);
    }
    return false;
}

void addr_set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, ss, sizeof sin);
        sin.sin_port = htons(port);
        memcpy(ss, &sin, sizeof sin);
    } else if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, ss, sizeof sin6);
        sin6.sin6_port = htons(port);
        memcpy(ss, &sin6, sizeof sin6);
    }
}
