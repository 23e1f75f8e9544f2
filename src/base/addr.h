/* addr.h -- destination checks for the forward-proxy mode: IP literals in
 * every spelling a resolver accepts, address classes, CIDR lists, and the
 * host:port of a CONNECT target or absolute-form URI.
 *
 * A forward proxy connects wherever its clients ask, so it must refuse
 * loopback, private, link-local (the cloud metadata service at
 * 169.254.169.254) and other special destinations, and it must not be fooled
 * by spelling: 2130706433, 0x7f.1, 0177.0.0.1, 127.1 and ::ffff:127.0.0.1
 * all reach 127.0.0.1 through libc's inet_aton or a browser's URL parser.
 * addr_parse_ip reads all of them, so a string it calls a host name is one
 * that no resolver takes for a number.
 *
 * A host name must still be checked after it resolves (DNS may answer
 * 127.0.0.1 for any name, and may answer differently the second time): pass
 * every address getaddrinfo returns to addr_classify, and connect to the
 * address that was checked, never to the name.
 *
 * All functions are pure: no allocation, no I/O, no DNS, no locale. A
 * (pointer, length) input is never read past its length and need not be
 * NUL-terminated; only addr_cidr_parse takes a C string. */
#ifndef HG_ADDR_H
#define HG_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ------------------------------------------------------------ IP literals */

/* Reads s[0..len) as an IP literal.
 *
 * Returns 1 when s is an IP literal: *out holds a sockaddr_in or
 * sockaddr_in6 (port 0, scope 0, everything else zero). Returns 0 when s is
 * a host name to resolve: letters, digits, '-', '_' and '.', labels of 1 to
 * 63 bytes not starting or ending with '-', at most 253 bytes, one trailing
 * dot allowed. Returns -1 when s is neither (answer 400, never resolve it).
 * *out is written only on 1.
 *
 * IPv4 is read the way inet_aton and the WHATWG URL parser read it: 1 to 4
 * parts separated by dots; each part decimal, octal after a leading 0 (0177),
 * or hex after 0x or 0X (0x7f, at least one hex digit); all parts but the
 * last are bytes (0..255) and the last fills the remaining bytes (a: 32 bits,
 * a.b: 24, a.b.c: 16, a.b.c.d: 8). One trailing dot is allowed (127.0.0.1.
 * is 127.0.0.1, as in browsers). Which strings are numbers: those whose last
 * label (after that one dot) starts with a digit, as no top-level domain
 * does. Such a string is an IPv4 literal or -1: 127.0.0.256, 1.2.3.4.5, 0x,
 * 08, 1.2.3.4x, 4chan and example.123 are all -1. So a single-label name
 * that starts with a digit is refused, while 1.pool.ntp.org and bad.cafe
 * are host names.
 *
 * IPv6 is the text form of RFC 4291 section 2.2, in brackets or not: 1 to 4
 * hex digits per group, at most one "::" (standing for one group or more),
 * an optional dotted-quad tail (four decimal parts 0..255, no leading zero)
 * in the last 32 bits. A zone id (fe80::1%eth0) is refused (-1): a zone
 * only scopes link-local addresses, which a forward proxy refuses anyway. A
 * string with a colon is IPv6 or -1. ::ffff:127.0.0.1 stays an AF_INET6
 * address; addr_classify and addr_cidr_match read the IPv4 inside it. */
int addr_parse_ip(const char *s, size_t len, struct sockaddr_storage *out);

/* ----------------------------------------------------------- address class */

enum addr_class {
    ADDR_PUBLIC = 0,     /* globally routable unicast */
    ADDR_LOOPBACK,       /* 127/8, ::1 */
    ADDR_PRIVATE,        /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fec0::/10 */
    ADDR_LINK_LOCAL,     /* 169.254/16, fe80::/10 */
    ADDR_UNSPECIFIED,    /* 0/8 (Linux connects 0.0.0.0 to the local host), :: */
    ADDR_MULTICAST,      /* 224/4, ff00::/8 */
    ADDR_RESERVED,       /* special purpose, not reachable on the Internet (see addr.c) */
    ADDR_NCLASS
};

/* The class of an AF_INET or AF_INET6 address; the port is ignored. An IPv6
 * address that carries an IPv4 address is classified by that IPv4 address:
 * IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96 (other than :: and ::1),
 * NAT64 64:ff9b::/96, 6to4 2002::/16. A Teredo address (2001::/32) carries
 * two (server and client); the first one that is not public gives the class.
 * IPv6 outside 2000::/3 and the classes above (100::/64, 64:ff9b:1::/48
 * whose layout depends on the operator, ...) is ADDR_RESERVED. Any other
 * family, or NULL, is ADDR_RESERVED. Only ADDR_PUBLIC is safe to reach
 * without an explicit allow-list entry. */
enum addr_class addr_classify(const struct sockaddr *sa);

/* "public", "loopback", "private", "link_local", "unspecified", "multicast",
 * "reserved"; "invalid" for a value outside the enum. Static strings, fit for
 * logs and metric labels as they are. */
const char *addr_class_name(enum addr_class c);

/* ------------------------------------------------------------- CIDR lists */

/* A network. An all-zero struct is valid and matches nothing. */
struct addr_cidr {
    uint8_t addr[16];      /* network address; IPv4 in addr[0..3] */
    uint8_t bits;          /* prefix length: 0..32 (AF_INET), 0..128 (AF_INET6) */
    sa_family_t family;    /* AF_INET, AF_INET6, or 0 (empty) */
};

/* Parses "a.b.c.d/n", "ipv6/n", or a bare address (a host: /32, /128) from
 * the C string s. Returns 0 and fills *out, or -1 and leaves *out alone.
 * Stricter than addr_parse_ip, as it reads configuration: IPv4 only as four
 * decimal parts 0..255 without leading zeros; IPv6 without brackets or zone;
 * the prefix length decimal without sign, spaces or leading zeros. Host bits
 * set below the prefix (10.1.2.3/8) are refused, not masked: such a line is
 * more often a typo than a network. An IPv6 network inside ::ffff:0:0/96
 * with a prefix of 96 or more is stored as the IPv4 network it denotes
 * (::ffff:10.0.0.0/104 is 10.0.0.0/8). */
int addr_cidr_parse(const char *s, struct addr_cidr *out);

/* Whether sa (AF_INET or AF_INET6; the port is ignored) is in c. An
 * IPv4-mapped IPv6 address (a client of a dual-stack listener) is matched
 * as the IPv4 address it carries: it matches IPv4 networks and no IPv6
 * network, so "::/0" matches every native IPv6 address and no IPv4 one (list
 * "0.0.0.0/0" as well to allow everything). NULL sa or another family:
 * false. */
bool addr_cidr_match(const struct addr_cidr *c, const struct sockaddr *sa);

/* Whether sa matches any of list[0..n); linear in n. */
bool addr_cidr_list_match(const struct addr_cidr *list, size_t n, const struct sockaddr *sa);

/* -------------------------------------------------------------- authority */

/* host[:port] or [ipv6][:port], as in a CONNECT target (RFC 9110 section
 * 9.3.6) or the authority of an absolute-form URI. */
struct addr_authority {
    const char *host;      /* points into the parsed string; brackets stripped */
    size_t host_len;
    uint16_t port;         /* 1..65535 when has_port, else 0 */
    bool has_port;         /* CONNECT requires one; for http:// the caller defaults to 80 */
    bool is_ip;            /* host is an IP literal (addr_parse_ip returned 1) */
    struct sockaddr_storage ip; /* when is_ip: the address, with port (0 without) */
};

/* Splits s[0..len) into host and port. Returns 0 and fills *out, or -1.
 *
 * Refused: an empty host ("", ":80", "[]:80"); a colon with nothing after
 * it; a port that is not 1 to 5 ASCII digits or is 0 or above 65535 (leading
 * zeros are allowed: 0080 is 80); an unbracketed host with a colon (::1:80
 * is ambiguous); unbalanced brackets or bytes after ']' other than ":port";
 * brackets around anything but IPv6 ([127.0.0.1]); a zone id; userinfo
 * ('@'), spaces, percent-encoding and any byte that is not a letter, digit,
 * '-', '_' or '.' in a host name; whatever addr_parse_ip refuses
 * (127.0.0.256, 0x, 08, empty labels, over 253 bytes). An IP literal in any
 * spelling is accepted and decoded into ip: classify it, do not resolve it.
 * Host names are returned as they are, in their case and with a trailing
 * dot if they had one: see addr_host_lower. */
int addr_parse_authority(const char *s, size_t len, struct addr_authority *out);

/* Copies s[0..len) into out as ASCII lowercase, NUL-terminated (for a
 * comparison with allow-listed names or a cache key; DNS itself ignores
 * case). Returns 0, or -1 when n <= len (out is then untouched). */
int addr_host_lower(char *out, size_t n, const char *s, size_t len);

/* ---------------------------------------------------------------- helpers */

/* sizeof(struct sockaddr_in) or sizeof(struct sockaddr_in6) for sa's
 * family, for connect(2); 0 for another family or NULL. */
socklen_t addr_socklen(const struct sockaddr *sa);

/* Whether a and b are the same AF_INET or AF_INET6 address and port (and
 * IPv6 scope); padding and flow labels are ignored. False for another
 * family or NULL. */
bool addr_same(const struct sockaddr *a, const struct sockaddr *b);

/* Sets the port (host byte order) of an AF_INET or AF_INET6 address; does
 * nothing for another family. */
void addr_set_port(struct sockaddr_storage *ss, uint16_t port);

#endif
