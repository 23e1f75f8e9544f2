/* test_addr.c -- IP literals, address classes, CIDR lists and authority
 * parsing for the forward-proxy mode (src/base/addr.h).
 *
 * Every (pointer, length) input is copied to the end of a page followed by a
 * PROT_NONE page (guarded()), so reading one byte past the length crashes.
 * Expected addresses come from inet_pton on canonical text, or are written
 * as numbers; two mutation tests compare the parser with glibc's inet_aton
 * and inet_pton on thousands of near-miss spellings. */
#define _GNU_SOURCE
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"

/* ---------------------------------------------------------------- helpers */

static char *guard_page;   /* one writable page, then one inaccessible page */
static size_t page_size;

/* Copies s[0..n) so that its last byte is the last readable one. The copy
 * is valid until the next call. */
static const char *guarded(const char *s, size_t n)
{
    if (!guard_page) {
        page_size = (size_t)sysconf(_SC_PAGESIZE);
        guard_page = mmap(NULL, 2 * page_size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (guard_page == MAP_FAILED || mprotect(guard_page + page_size, page_size, PROT_NONE)) {
            perror("guard page");
            exit(2);
        }
    }
    if (n > page_size) {
        fprintf(stderr, "guarded: input too long\n");
        exit(2);
    }
    char *p = guard_page + page_size - n;
    memcpy(p, s, n);
    return p;
}

static int parse_ip(const char *s, struct sockaddr_storage *ss)
{
    size_t n = strlen(s);
    return addr_parse_ip(guarded(s, n), n, ss);
}

/* The IPv4 address of an AF_INET sockaddr in host order; 0xdeadbeef when it
 * is not AF_INET (no test expects that value). */
static uint32_t v4_of(const struct sockaddr_storage *ss)
{
    struct sockaddr_in sin;
    if (ss->ss_family != AF_INET)
        return 0xdeadbeef;
    memcpy(&sin, ss, sizeof sin);
    return ntohl(sin.sin_addr.s_addr);
}

static bool v6_bytes(const struct sockaddr_storage *ss, uint8_t out[16])
{
    struct sockaddr_in6 sin6;
    if (ss->ss_family != AF_INET6)
        return false;
    memcpy(&sin6, ss, sizeof sin6);
    memcpy(out, &sin6.sin6_addr, 16);
    return true;
}

/* A sockaddr from strict text (inet_pton), independent of the parser under
 * test. Exits on a typo in a table. */
static struct sockaddr_storage mk(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
            goto bad;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
            goto bad;
    }
    return ss;
bad:
    fprintf(stderr, "test table: bad address %s\n", text);
    exit(2);
}

#define SA(ss) ((const struct sockaddr *)&(ss))
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Reports which table row a failed check belongs to. */
static bool row(bool ok, const char *in)
{
    if (!ok)
        fprintf(stderr, "    ^ input: \"%s\"\n", in);
    return ok;
}

/* ------------------------------------------------------- IPv4 spellings */

TEST(ipv4_every_spelling)
{
    static const struct {
        const char *in;
        uint32_t want;
    } t[] = {
        {"127.0.0.1", 0x7f000001},
        {"2130706433", 0x7f000001},          /* one part: 32 bits */
        {"0x7f000001", 0x7f000001},
        {"0X7F000001", 0x7f000001},
        {"017700000001", 0x7f000001},        /* octal */
        {"0x7f.1", 0x7f000001},              /* two parts: 8 + 24 bits */
        {"0X7F.0.0.1", 0x7f000001},
        {"0177.0.0.1", 0x7f000001},
        {"0177.1", 0x7f000001},
        {"127.1", 0x7f000001},
        {"127.0.1", 0x7f000001},             /* three parts: 8 + 8 + 16 bits */
        {"0x7f.0.1", 0x7f000001},
        {"0x7f.0x0.0x0.0x1", 0x7f000001},
        {"0x7F.00.0X0.01", 0x7f000001},
        {"000000000000000000000177.0.0.1", 0x7f000001},   /* many zeros: still octal 177 */
        {"0x000000000000007f.1", 0x7f000001},
        {"127.0.0.1.", 0x7f000001},          /* one trailing dot, as browsers */
        {"2130706433.", 0x7f000001},
        {"0", 0},
        {"00", 0},
        {"0x0", 0},
        {"0.0.0.0", 0},
        {"0.0", 0},
        {"4294967295", 0xffffffff},
        {"0xffffffff", 0xffffffff},
        {"0XFFFFFFFF", 0xffffffff},
        {"037777777777", 0xffffffff},
        {"255.255.255.255", 0xffffffff},
        {"255.16777215", 0xffffffff},        /* last of two parts: 24 bits */
        {"255.255.65535", 0xffffffff},       /* last of three parts: 16 bits */
        {"0xff.0xffffff", 0xffffffff},
        {"1.2.3.4", 0x01020304},
        {"1.131844", 0x01020304},
        {"1.2.772", 0x01020304},
        {"1.2.3.04", 0x01020304},            /* octal 4 */
        {"1.2.3.010", 0x01020308},           /* octal 10 is 8, not 10 */
        {"192.168.257", 0xc0a80101},
        {"192.11010305", 0xc0a80101},
        {"3232235777", 0xc0a80101},
        {"169.254.169.254", 0xa9fea9fe},     /* cloud metadata */
        {"0xa9fea9fe", 0xa9fea9fe},
        {"2852039166", 0xa9fea9fe},
        {"0251.0376.0251.0376", 0xa9fea9fe},
        {"0xa9.0xfe.0xa9.0xfe", 0xa9fea9fe},
        {"169.16689662", 0xa9fea9fe},
        {"10.0.0.1", 0x0a000001},
        {"012.0.0.1", 0x0a000001},
        {"167772161", 0x0a000001},
        {"8.8.8.8", 0x08080808},
    };
    for (size_t i = 0; i < N(t); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0xa5, sizeof ss);
        int r = parse_ip(t[i].in, &ss);
        if (!row(CHECK_EQ_INT(r, 1), t[i].in))
            continue;
        row(CHECK_EQ_INT(ss.ss_family, AF_INET), t[i].in);
        row(CHECK_EQ_U64(v4_of(&ss), t[i].want), t[i].in);
        struct sockaddr_in sin;
        memcpy(&sin, &ss, sizeof sin);
        row(CHECK_EQ_INT(sin.sin_port, 0), t[i].in);
        /* the rest of the storage is zeroed, not left over */
        static const char zero[sizeof ss];
        row(CHECK(memcmp((char *)&ss + sizeof sin, zero, sizeof ss - sizeof sin) == 0), t[i].in);
    }
}

TEST(ipv4_long_zero_run)
{
    /* 300 zeros then 1: octal 1, no overflow from the length alone */
    char s[310];
    memset(s, '0', 300);
    strcpy(s + 300, "1");
    struct sockaddr_storage ss;
    if (CHECK_EQ_INT(parse_ip(s, &ss), 1))
        CHECK_EQ_U64(v4_of(&ss), 1);
    strcpy(s + 300, "8");   /* not an octal digit */
    CHECK_EQ_INT(parse_ip(s, &ss), -1);
}

TEST(ipv4_malformed_is_refused)
{
    static const char *const t[] = {
        "127.0.0.256", "256.0.0.1", "1.256.0.1", "1.2.256.1", "1.2.3.4.5", "1.2.3.4.5.6",
        "0x", "0X", "0x.1", "1.0x", "1.0x.2.3", "08", "09", "018", "0.0.0.08", "10.0.0.09",
        "0xg", "0x7g", "1.2.3.4x", "1x", "4chan", "1e3", "0b101", "1_000", "12-34",
        "example.123", "foo.0x7f", "foo.1", "localhost.0", "0x7f.0.0.1x",
        "127..1", ".127.0.0.1", "127.0.0.1..", "..1", ".1", "1.2.3.4..",
        "4294967296", "0x100000000", "040000000000", "99999999999999999999999",
        "0x7fffffffffffffffff", "18446744073709551617",
        "256.1", "1.16777216", "1.256.1", "1.2.65536", "1.0x1000000",
        "1.2.3.4 ", "1.2.3.-4", "+1.2.3.4", "-1", "1.2.3.+4", "127.0.0.1%00", "1.2.3.4/8",
        "1.2.3.4:80", "1.2.3.\xff", "\xef\xbc\x91.2.3.4", "1.2.3.4\t",
    };
    for (size_t i = 0; i < N(t); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0x5a, sizeof ss);
        row(CHECK_EQ_INT(parse_ip(t[i], &ss), -1), t[i]);
        row(CHECK_EQ_INT(((unsigned char *)&ss)[0], 0x5a), t[i]);   /* out untouched */
    }
}

TEST(ipv4_three_parts_with_trailing_dot)
{
    /* "1.2.3." is "1.2.3" plus the one allowed trailing dot: 1.2.0.3, a
     * number, not a name; a second dot makes it -1 (table above). */
    struct sockaddr_storage ss;
    if (CHECK_EQ_INT(parse_ip("1.2.3.", &ss), 1))
        CHECK_EQ_U64(v4_of(&ss), 0x01020003);
}

TEST(ipv4_embedded_nul_is_refused)
{
    struct sockaddr_storage ss;
    static const char s[] = "127.0.0.1\0.evil.com";
    CHECK_EQ_INT(addr_parse_ip(guarded(s, sizeof s - 1), sizeof s - 1, &ss), -1);
    static const char s2[] = "evil.com\0";
    CHECK_EQ_INT(addr_parse_ip(guarded(s2, sizeof s2 - 1), sizeof s2 - 1, &ss), -1);
    /* a length shorter than the string: only the prefix is read */
    if (CHECK_EQ_INT(addr_parse_ip(guarded("127.0.0.1", 5), 5, &ss), 1))
        CHECK_EQ_U64(v4_of(&ss), 0x7f000000);   /* "127.0": two parts, 127.0.0.0 */
}

/* ------------------------------------------------------------ host names */

static void repeat(char *out, char c, size_t n)
{
    memset(out, c, n);
    out[n] = '\0';
}

TEST(host_names)
{
    static const char *const names[] = {
        "example.com", "EXAMPLE.COM", "example.com.", "localhost", "a", "a.", "bad.cafe",
        "dead.beef", "face.b00c", "0x7f.example", "x7f", "0x7f.0.0.1.com", "1.pool.ntp.org",
        "127.0.0.1.nip.io", "xn--bcher-kva.example", "_sip._tcp.example.com", "a-b.c_d",
        "a--b.c", "1password.com", "a.b.c.d.e.f.g", "x._a-b_", "ZZ.Z", "zz.z",
    };
    for (size_t i = 0; i < N(names); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0x5a, sizeof ss);
        row(CHECK_EQ_INT(parse_ip(names[i], &ss), 0), names[i]);
        row(CHECK_EQ_INT(((unsigned char *)&ss)[0], 0x5a), names[i]);
    }

    static const char *const bad[] = {
        ".", "..", "a..b", ".a", "a..", "a b", "a%2eb", "a%2Eb", "user@host", "user:pw@host",
        "exa\tmple", "\xc3\xa9t\xc3\xa9.fr", "a/b", "a\\b", "host]", "[host]", "a,b", "a+b",
        "a\r\nb", "*.example.com", "a'b", "a\"b",
        "-a", "a-", "-a-.b", "a.-b", "a.b-", "a-.b", "-", "-1", "1.2.3.-4", "a.-", "-.",
    };
    for (size_t i = 0; i < N(bad); i++) {
        struct sockaddr_storage ss;
        row(CHECK_EQ_INT(parse_ip(bad[i], &ss), -1), bad[i]);
    }
    struct sockaddr_storage ss;
    CHECK_EQ_INT(addr_parse_ip(guarded("", 0), 0, &ss), -1);

    /* label and name lengths */
    char s[300];
    repeat(s, 'a', 63);
    CHECK_EQ_INT(parse_ip(s, &ss), 0);
    repeat(s, 'a', 64);
    CHECK_EQ_INT(parse_ip(s, &ss), -1);
    /* 63.63.63.61 = 253 bytes */
    char *p = s;
    for (int k = 0; k < 3; k++) {
        memset(p, 'b', 63);
        p[63] = '.';
        p += 64;
    }
    repeat(p, 'c', 61);
    CHECK_EQ_INT(strlen(s), 253);
    CHECK_EQ_INT(parse_ip(s, &ss), 0);
    strcat(s, ".");   /* 254 with the trailing dot: still 253 without */
    CHECK_EQ_INT(parse_ip(s, &ss), 0);
    s[253] = 'c';     /* 254 bytes of name */
    CHECK_EQ_INT(strlen(s), 254);
    CHECK_EQ_INT(parse_ip(s, &ss), -1);
}

/* ------------------------------------------------------------------- IPv6 */

TEST(ipv6_literals)
{
    static const struct {
        const char *in, *canon;
    } t[] = {
        {"::1", "::1"},
        {"[::1]", "::1"},
        {"::", "::"},
        {"[::]", "::"},
        {"0:0:0:0:0:0:0:1", "::1"},
        {"0000:0000:0000:0000:0000:0000:0000:0001", "::1"},
        {"::ffff:127.0.0.1", "::ffff:7f00:1"},
        {"::ffff:7f00:1", "::ffff:7f00:1"},
        {"::FFFF:7F00:0001", "::ffff:7f00:1"},
        {"0:0:0:0:0:ffff:127.0.0.1", "::ffff:7f00:1"},
        {"[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"},
        {"::127.0.0.1", "::7f00:1"},
        {"fe80::1", "fe80::1"},
        {"FE80::1", "fe80::1"},
        {"fd00::1", "fd00::1"},
        {"ff02::1", "ff02::1"},
        {"64:ff9b::7f00:1", "64:ff9b::7f00:1"},
        {"64:ff9b::127.0.0.1", "64:ff9b::7f00:1"},
        {"2002:7f00:1::", "2002:7f00:1::"},
        {"2001:db8::", "2001:db8::"},
        {"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
        {"1::", "1::"},
        {"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},   /* "::" for one group */
        {"::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"},
        {"1:2:3::6:7:8", "1:2:3:0:0:6:7:8"},
        {"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"},
        {"1::1.2.3.4", "1::102:304"},
        {"1:2:3:4:5::255.255.255.255", "1:2:3:4:5:0:ffff:ffff"},
        {"2001:DB8:0:0:8:800:200C:417A", "2001:db8::8:800:200c:417a"},
        {"[2606:4700:4700::1111]", "2606:4700:4700::1111"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    };
    for (size_t i = 0; i < N(t); i++) {
        struct sockaddr_storage ss, want = mk(t[i].canon);
        uint8_t got[16], exp[16];
        memset(&ss, 0xa5, sizeof ss);
        if (!row(CHECK_EQ_INT(parse_ip(t[i].in, &ss), 1), t[i].in))
            continue;
        if (!row(CHECK(v6_bytes(&ss, got)), t[i].in))
            continue;
        v6_bytes(&want, exp);
        row(CHECK(memcmp(got, exp, 16) == 0), t[i].in);
        struct sockaddr_in6 sin6;
        memcpy(&sin6, &ss, sizeof sin6);
        row(CHECK_EQ_INT(sin6.sin6_port, 0), t[i].in);
        row(CHECK_EQ_INT(sin6.sin6_scope_id, 0), t[i].in);
        row(CHECK_EQ_INT(sin6.sin6_flowinfo, 0), t[i].in);
    }
}

TEST(ipv6_malformed_and_zones)
{
    static const char *const t[] = {
        ":::", "1:::2", ":1::", ":1:2:3:4:5:6:7", "1::2::3", "::1::", "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:2:3:4::5:6:7:8",
        "12345::", "::12345", "00000::", "::g", "g::", "1:", ":1", ":", "1:2:3:4:5:6:7:8:",
        "::ffff:127.1", "::ffff:0x7f.0.0.1", "::ffff:0177.0.0.1", "::ffff:127.0.0.01",
        "::ffff:127.0.0.256", "::ffff:1.2.3.4.5", "::1.2.3", "1.2.3.4::", "::1.2.3.4:1",
        "::1.2.3.4.", "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5:6::1.2.3.4", "::ffff:1.2.3.",
        "fe80::1%eth0", "fe80::1%25eth0", "[fe80::1%25eth0]", "fe80::1%", "[::1", "::1]",
        "[::1]:80", "[::1]]", "[[::1]]", "[127.0.0.1]", "[example.com]", "[]", "[", "]",
        "[ ::1]", " ::1", "::1 ", "[v1.abc]", "::-1", "::+1", "1::2:3:4:5:6:7:8",
        ":: ", "::\n", "0x1::", "::1:",
    };
    for (size_t i = 0; i < N(t); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0x5a, sizeof ss);
        row(CHECK_EQ_INT(parse_ip(t[i], &ss), -1), t[i]);
        row(CHECK_EQ_INT(((unsigned char *)&ss)[0], 0x5a), t[i]);
    }
}

/* ----------------------------------------- mutation tests against glibc */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Replaces, inserts or deletes 1 to 3 characters of s (capacity cap) with
 * characters from alpha. */
static void mutate(char *s, size_t cap, const char *alpha)
{
    size_t na = strlen(alpha);
    int k = 1 + (int)(rng() % 3);
    while (k--) {
        size_t n = strlen(s);
        size_t at = n ? rng() % (n + 1) : 0;
        char c = alpha[rng() % na];
        switch (rng() % 3) {
        case 0:
            if (at < n)
                s[at] = c;
            break;
        case 1:
            if (n + 1 < cap) {
                memmove(s + at + 1, s + at, n - at + 1);
                s[at] = c;
            }
            break;
        default:
            if (at < n)
                memmove(s + at, s + at + 1, n - at);
            break;
        }
    }
}

TEST(ipv4_agrees_with_inet_aton)
{
    static const char *const seeds[] = {
        "127.0.0.1", "2130706433", "0x7f000001", "017700000001", "0x7f.1", "0177.0.0.1",
        "127.1", "127.0.1", "255.255.255.255", "4294967295", "0xffffffff", "1.2.3.4",
        "0", "0x0.0x0", "192.168.257", "0xa9.0xfe.0xa9.0xfe", "255.16777215", "10.0.0.08",
        "1.0x", "0x.1", "255.255.65535", "cafe.bad", "1.2.3.4.5",
    };
    const char *alpha = "0123456789xXabcdefABCDEF.";
    int unsafe = 0, differ = 0, numbers = 0, names = 0, refused = 0;

    for (int it = 0; it < 200000; it++) {
        char s[48];
        strcpy(s, seeds[rng() % N(seeds)]);
        mutate(s, sizeof s, alpha);
        size_t n = strlen(s);
        struct sockaddr_storage ss;
        struct in_addr in;
        int r = addr_parse_ip(guarded(s, n), n, &ss);
        int aton = n > 0 && inet_aton(s, &in);
        bool trailing_dot = n > 0 && s[n - 1] == '.';

        numbers += r == 1;
        names += r == 0;
        refused += r == -1;
        if (r == 0 && aton) {   /* a "name" that libc reads as an address */
            if (unsafe++ < 5)
                fprintf(stderr, "    unsafe: \"%s\" is a name here, an address to inet_aton\n", s);
        } else if (aton && (r != 1 || v4_of(&ss) != ntohl(in.s_addr))) {
            if (differ++ < 5)
                fprintf(stderr, "    differ: \"%s\" r=%d\n", s, r);
        } else if (r == 1 && !aton && !trailing_dot) {
            if (differ++ < 5)
                fprintf(stderr, "    differ: \"%s\" accepted here, not by inet_aton\n", s);
        }
    }
    CHECK_EQ_INT(unsafe, 0);
    CHECK_EQ_INT(differ, 0);
    /* the mutations reach all three outcomes in bulk, so agreement means something */
    CHECK(numbers > 20000);
    CHECK(refused > 20000);
    CHECK(names > 1000);
}

TEST(ipv6_agrees_with_inet_pton)
{
    static const char *const seeds[] = {
        "::1", "::", "::ffff:127.0.0.1", "::ffff:7f00:1", "1:2:3:4:5:6:7:8", "1::",
        "fe80::1", "64:ff9b::1.2.3.4", "2001:db8:0:0:8:800:200c:417a", "1:2:3:4:5:6:1.2.3.4",
        "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "ffff::ffff", "2002:7f00:1::",
    };
    const char *alpha = "0123456789abcdefABCDEF:.:";
    int differ = 0, accepted = 0, tried = 0;

    for (int it = 0; it < 200000; it++) {
        char s[64];
        strcpy(s, seeds[rng() % N(seeds)]);
        mutate(s, sizeof s, alpha);
        if (!strchr(s, ':'))
            continue;   /* no colon: not an IPv6 candidate */
        size_t n = strlen(s);
        struct sockaddr_storage ss;
        uint8_t want[16], got[16];
        int r = addr_parse_ip(guarded(s, n), n, &ss);
        int pton = inet_pton(AF_INET6, s, want);
        tried++;
        accepted += pton == 1;
        bool ok = pton == 1 ? r == 1 && v6_bytes(&ss, got) && memcmp(got, want, 16) == 0
                            : r == -1;
        if (!ok && differ++ < 5)
            fprintf(stderr, "    differ: \"%s\" r=%d inet_pton=%d\n", s, r, pton);
    }
    CHECK_EQ_INT(differ, 0);
    CHECK(accepted > 10000);
    CHECK(tried - accepted > 10000);
}

/* --------------------------------------------------------------- classes */

TEST(class_table)
{
    static const struct {
        const char *ip;
        enum addr_class want;
    } t[] = {
        /* IPv4 */
        {"8.8.8.8", ADDR_PUBLIC},
        {"1.1.1.1", ADDR_PUBLIC},
        {"0.0.0.0", ADDR_UNSPECIFIED},
        {"0.255.255.255", ADDR_UNSPECIFIED},
        {"1.0.0.0", ADDR_PUBLIC},
        {"9.255.255.255", ADDR_PUBLIC},
        {"10.0.0.0", ADDR_PRIVATE},
        {"10.255.255.255", ADDR_PRIVATE},
        {"11.0.0.0", ADDR_PUBLIC},
        {"100.63.255.255", ADDR_PUBLIC},
        {"100.64.0.0", ADDR_PRIVATE},
        {"100.127.255.255", ADDR_PRIVATE},
        {"100.128.0.0", ADDR_PUBLIC},
        {"126.255.255.255", ADDR_PUBLIC},
        {"127.0.0.0", ADDR_LOOPBACK},
        {"127.0.0.1", ADDR_LOOPBACK},
        {"127.255.255.255", ADDR_LOOPBACK},
        {"128.0.0.0", ADDR_PUBLIC},
        {"169.253.255.255", ADDR_PUBLIC},
        {"169.254.0.0", ADDR_LINK_LOCAL},
        {"169.254.169.254", ADDR_LINK_LOCAL},
        {"169.254.255.255", ADDR_LINK_LOCAL},
        {"169.255.0.0", ADDR_PUBLIC},
        {"172.15.255.255", ADDR_PUBLIC},
        {"172.16.0.0", ADDR_PRIVATE},
        {"172.31.255.255", ADDR_PRIVATE},
        {"172.32.0.0", ADDR_PUBLIC},
        {"191.255.255.255", ADDR_PUBLIC},
        {"192.0.0.0", ADDR_RESERVED},
        {"192.0.0.255", ADDR_RESERVED},
        {"192.0.1.0", ADDR_PUBLIC},
        {"192.0.2.0", ADDR_RESERVED},
        {"192.0.2.255", ADDR_RESERVED},
        {"192.0.3.0", ADDR_PUBLIC},
        {"192.88.99.1", ADDR_RESERVED},
        {"192.88.100.0", ADDR_PUBLIC},
        {"192.167.255.255", ADDR_PUBLIC},
        {"192.168.0.0", ADDR_PRIVATE},
        {"192.168.255.255", ADDR_PRIVATE},
        {"192.169.0.0", ADDR_PUBLIC},
        {"198.17.255.255", ADDR_PUBLIC},
        {"198.18.0.0", ADDR_RESERVED},
        {"198.19.255.255", ADDR_RESERVED},
        {"198.20.0.0", ADDR_PUBLIC},
        {"198.51.100.7", ADDR_RESERVED},
        {"198.51.101.0", ADDR_PUBLIC},
        {"203.0.113.9", ADDR_RESERVED},
        {"203.0.112.255", ADDR_PUBLIC},
        {"223.255.255.255", ADDR_PUBLIC},
        {"224.0.0.0", ADDR_MULTICAST},
        {"224.0.0.1", ADDR_MULTICAST},
        {"239.255.255.255", ADDR_MULTICAST},
        {"240.0.0.0", ADDR_RESERVED},
        {"255.255.255.254", ADDR_RESERVED},
        {"255.255.255.255", ADDR_RESERVED},
        /* IPv6 */
        {"2606:4700:4700::1111", ADDR_PUBLIC},
        {"2a00:1450:4001::1", ADDR_PUBLIC},
        {"::", ADDR_UNSPECIFIED},
        {"::1", ADDR_LOOPBACK},
        {"::2", ADDR_UNSPECIFIED},                 /* IPv4-compatible 0.0.0.2 */
        {"::ffff:127.0.0.1", ADDR_LOOPBACK},
        {"::ffff:7f00:1", ADDR_LOOPBACK},
        {"::ffff:8.8.8.8", ADDR_PUBLIC},
        {"::ffff:10.1.2.3", ADDR_PRIVATE},
        {"::ffff:169.254.169.254", ADDR_LINK_LOCAL},
        {"::ffff:0.0.0.0", ADDR_UNSPECIFIED},
        {"::ffff:224.0.0.1", ADDR_MULTICAST},
        {"::ffff:255.255.255.255", ADDR_RESERVED},
        {"::127.0.0.1", ADDR_LOOPBACK},            /* IPv4-compatible */
        {"::8.8.8.8", ADDR_PUBLIC},
        {"::192.168.1.1", ADDR_PRIVATE},
        {"64:ff9b::7f00:1", ADDR_LOOPBACK},        /* NAT64 */
        {"64:ff9b::a9fe:a9fe", ADDR_LINK_LOCAL},
        {"64:ff9b::808:808", ADDR_PUBLIC},
        {"64:ff9b:0:0:1::808:808", ADDR_RESERVED}, /* not /96: outside 2000::/3 */
        {"64:ff9b:1::7f00:1", ADDR_RESERVED},      /* local-use NAT64 */
        {"2002:7f00:1::", ADDR_LOOPBACK},          /* 6to4 */
        {"2002:a00:1::1", ADDR_PRIVATE},
        {"2002:808:808::1", ADDR_PUBLIC},
        {"2002:a9fe:a9fe::", ADDR_LINK_LOCAL},
        /* Teredo: 2001:0:server:flags:port:~client */
        {"2001:0:4136:e378:8000:63bf:f7f7:f7f7", ADDR_PUBLIC},   /* client 8.8.8.8 */
        {"2001:0:4136:e378:8000:63bf:3fff:fdd2", ADDR_RESERVED}, /* RFC 4380's: 192.0.2.45 */
        {"2001:0:4136:e378:8000:63bf:80ff:fffe", ADDR_LOOPBACK}, /* client 127.0.0.1 */
        {"2001:0:a00:1:8000:63bf:f7f7:f7f7", ADDR_PRIVATE},      /* server 10.0.0.1 */
        {"2001:0:808:808:0:0:ffff:ffff", ADDR_UNSPECIFIED},      /* client 0.0.0.0 */
        {"2001:1::1", ADDR_PUBLIC},                              /* PCP anycast */
        {"2001:2::", ADDR_RESERVED},
        {"2001:2:0:ffff::", ADDR_RESERVED},
        {"2001:2:1::", ADDR_PUBLIC},
        {"2001:10::1", ADDR_RESERVED},
        {"2001:1f:ffff::", ADDR_RESERVED},
        {"2001:20::1", ADDR_RESERVED},
        {"2001:30::1", ADDR_PUBLIC},
        {"2001:db7:ffff:ffff::", ADDR_PUBLIC},
        {"2001:db8::", ADDR_RESERVED},
        {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_RESERVED},
        {"2001:db9::", ADDR_PUBLIC},
        {"3ffe:ffff::", ADDR_PUBLIC},
        {"3fff::1", ADDR_RESERVED},
        {"3fff:fff::", ADDR_RESERVED},
        {"3fff:1000::", ADDR_PUBLIC},               /* past 3fff::/20 */
        {"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PUBLIC},
        {"100::", ADDR_RESERVED},                  /* discard-only */
        {"100::ffff:ffff:ffff:ffff", ADDR_RESERVED},
        {"1fff:ffff::", ADDR_RESERVED},            /* below 2000::/3 */
        {"2000::", ADDR_PUBLIC},
        {"4000::", ADDR_RESERVED},                 /* above 2000::/3 */
        {"5f00::1", ADDR_RESERVED},                /* SRv6 SIDs */
        {"fbff:ffff::", ADDR_RESERVED},
        {"fc00::", ADDR_PRIVATE},
        {"fd00::1", ADDR_PRIVATE},
        {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PRIVATE},
        {"fe00::", ADDR_RESERVED},
        {"fe7f:ffff::", ADDR_RESERVED},
        {"fe80::", ADDR_LINK_LOCAL},
        {"fe80::1", ADDR_LINK_LOCAL},
        {"febf:ffff::", ADDR_LINK_LOCAL},
        {"fec0::1", ADDR_PRIVATE},                 /* site-local, deprecated */
        {"feff:ffff::", ADDR_PRIVATE},
        {"ff00::", ADDR_MULTICAST},
        {"ff02::1", ADDR_MULTICAST},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_MULTICAST},
        {"::ffff:0:7f00:1", ADDR_RESERVED},        /* SIIT ::ffff:0:0:0/96 */
    };
    for (size_t i = 0; i < N(t); i++) {
        struct sockaddr_storage ss = mk(t[i].ip);
        enum addr_class got = addr_classify(SA(ss));
        if (!CHECK_EQ_STR(addr_class_name(got), addr_class_name(t[i].want)))
            fprintf(stderr, "    ^ address: %s\n", t[i].ip);
    }
}

/* Every odd spelling the brief of this module lists, end to end: text in,
 * class out. */
TEST(class_of_odd_spellings)
{
    static const struct {
        const char *in;
        enum addr_class want;
    } t[] = {
        {"2130706433", ADDR_LOOPBACK},
        {"0x7f.1", ADDR_LOOPBACK},
        {"0177.0.0.1", ADDR_LOOPBACK},
        {"127.1", ADDR_LOOPBACK},
        {"0x7f000001", ADDR_LOOPBACK},
        {"017700000001", ADDR_LOOPBACK},
        {"127.0.0.1.", ADDR_LOOPBACK},
        {"::ffff:127.0.0.1", ADDR_LOOPBACK},
        {"::ffff:7f00:1", ADDR_LOOPBACK},
        {"[::1]", ADDR_LOOPBACK},
        {"[0:0:0:0:0:0:0:1]", ADDR_LOOPBACK},
        {"::", ADDR_UNSPECIFIED},
        {"0.0.0.0", ADDR_UNSPECIFIED},
        {"0", ADDR_UNSPECIFIED},
        {"0x0", ADDR_UNSPECIFIED},
        {"169.254.169.254", ADDR_LINK_LOCAL},
        {"0xa9fea9fe", ADDR_LINK_LOCAL},
        {"2852039166", ADDR_LINK_LOCAL},
        {"[::ffff:169.254.169.254]", ADDR_LINK_LOCAL},
        {"fd00::1", ADDR_PRIVATE},
        {"0xa.1", ADDR_PRIVATE},
        {"ff02::1", ADDR_MULTICAST},
        {"64:ff9b::7f00:1", ADDR_LOOPBACK},
        {"2002:7f00:1::", ADDR_LOOPBACK},
        {"224.0.0.1", ADDR_MULTICAST},
        {"255.255.255.255", ADDR_RESERVED},
        {"4294967295", ADDR_RESERVED},
        {"8.8.8.8", ADDR_PUBLIC},
        {"134744072", ADDR_PUBLIC},
    };
    for (size_t i = 0; i < N(t); i++) {
        struct sockaddr_storage ss;
        if (!row(CHECK_EQ_INT(parse_ip(t[i].in, &ss), 1), t[i].in))
            continue;
        row(CHECK_EQ_STR(addr_class_name(addr_classify(SA(ss))), addr_class_name(t[i].want)),
            t[i].in);
    }
}

TEST(class_of_other_families_and_names)
{
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    CHECK_EQ_INT(addr_classify((const struct sockaddr *)&un), ADDR_RESERVED);
    CHECK_EQ_INT(addr_classify(NULL), ADDR_RESERVED);
    struct sockaddr_storage zero;
    memset(&zero, 0, sizeof zero);   /* AF_UNSPEC */
    CHECK_EQ_INT(addr_classify(SA(zero)), ADDR_RESERVED);

    /* the port does not matter */
    struct sockaddr_storage ss = mk("127.0.0.1");
    addr_set_port(&ss, 443);
    CHECK_EQ_INT(addr_classify(SA(ss)), ADDR_LOOPBACK);

    CHECK_EQ_STR(addr_class_name(ADDR_PUBLIC), "public");
    CHECK_EQ_STR(addr_class_name(ADDR_LOOPBACK), "loopback");
    CHECK_EQ_STR(addr_class_name(ADDR_PRIVATE), "private");
    CHECK_EQ_STR(addr_class_name(ADDR_LINK_LOCAL), "link_local");
    CHECK_EQ_STR(addr_class_name(ADDR_UNSPECIFIED), "unspecified");
    CHECK_EQ_STR(addr_class_name(ADDR_MULTICAST), "multicast");
    CHECK_EQ_STR(addr_class_name(ADDR_RESERVED), "reserved");
    CHECK_EQ_STR(addr_class_name(ADDR_NCLASS), "invalid");
    CHECK_EQ_STR(addr_class_name((enum addr_class)-1), "invalid");
}

/* ------------------------------------------------------------------ CIDR */

TEST(cidr_parse_accepts)
{
    static const struct {
        const char *in;
        int family, bits;
        const char *net;   /* strict text of the stored network */
    } t[] = {
        {"127.0.0.0/8", AF_INET, 8, "127.0.0.0"},
        {"10.1.2.3", AF_INET, 32, "10.1.2.3"},
        {"10.1.2.3/32", AF_INET, 32, "10.1.2.3"},
        {"0.0.0.0/0", AF_INET, 0, "0.0.0.0"},
        {"172.16.0.0/12", AF_INET, 12, "172.16.0.0"},
        {"100.64.0.0/10", AF_INET, 10, "100.64.0.0"},
        {"192.168.1.128/25", AF_INET, 25, "192.168.1.128"},
        {"255.255.255.255/32", AF_INET, 32, "255.255.255.255"},
        {"::1/128", AF_INET6, 128, "::1"},
        {"::1", AF_INET6, 128, "::1"},
        {"::/0", AF_INET6, 0, "::"},
        {"fc00::/7", AF_INET6, 7, "fc00::"},
        {"2001:db8::/32", AF_INET6, 32, "2001:db8::"},
        {"2001:DB8:0:1::/64", AF_INET6, 64, "2001:db8:0:1::"},
        {"fe80::/10", AF_INET6, 10, "fe80::"},
        {"::fffe:0:0/95", AF_INET6, 95, "::fffe:0:0"},   /* covers mapped space, stays IPv6 */
        /* mapped networks of /96 and longer become IPv4 networks */
        {"::ffff:10.0.0.0/104", AF_INET, 8, "10.0.0.0"},
        {"::ffff:0:0/96", AF_INET, 0, "0.0.0.0"},
        {"::ffff:127.0.0.1", AF_INET, 32, "127.0.0.1"},
        {"::ffff:7f00:0/104", AF_INET, 8, "127.0.0.0"},
    };
    for (size_t i = 0; i < N(t); i++) {
        struct addr_cidr c;
        memset(&c, 0xa5, sizeof c);
        if (!row(CHECK_EQ_INT(addr_cidr_parse(t[i].in, &c), 0), t[i].in))
            continue;
        row(CHECK_EQ_INT(c.family, t[i].family), t[i].in);
        row(CHECK_EQ_INT(c.bits, t[i].bits), t[i].in);
        uint8_t want[16] = {0};
        inet_pton(t[i].family, t[i].net, want);
        row(CHECK(memcmp(c.addr, want, 16) == 0), t[i].in);
    }
}

TEST(cidr_parse_refuses)
{
    static const char *const t[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/ 8",
        "10.0.0.0 /8", " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0.0/08", "10.0.0.0/0008",
        "10.0.0.0/8/8", "10.0.0.0/a", "10.0.0.0/1000", "::/129", "::1/128x", "::1/0x80",
        "10.1.2.3/8",            /* host bits set: refused, not masked */
        "192.168.1.1/24", "0.0.0.1/0", "::1/127", "fe80::1/10", "::ffff:10.0.0.1/104",
        "10/8", "10.0/16", "127.1", "0x7f.0.0.1/8", "0177.0.0.0/8", "010.0.0.0/8",
        "256.0.0.0/8", "1.2.3.4.5/32", "[::1]/128", "[::1]", "fe80::%eth0/64",
        "fe80::1%eth0", "example.com/32", "localhost", "::ffff:127.1", "::ffff:0:0/95",
    };
    for (size_t i = 0; i < N(t); i++) {
        struct addr_cidr c;
        memset(&c, 0x5a, sizeof c);
        row(CHECK_EQ_INT(addr_cidr_parse(t[i], &c), -1), t[i]);
        row(CHECK_EQ_INT(c.bits, 0x5a), t[i]);   /* out untouched */
    }
}

TEST(cidr_match)
{
    static const struct {
        const char *cidr, *ip;
        bool want;
    } t[] = {
        {"127.0.0.0/8", "127.0.0.1", true},
        {"127.0.0.0/8", "127.255.255.255", true},
        {"127.0.0.0/8", "126.255.255.255", false},
        {"127.0.0.0/8", "128.0.0.0", false},
        {"127.0.0.0/8", "::ffff:127.0.0.1", true},     /* mapped client */
        {"127.0.0.0/8", "::ffff:128.0.0.1", false},
        {"127.0.0.0/8", "::1", false},
        {"127.0.0.0/8", "::127.0.0.1", false},         /* compatible is not mapped */
        {"10.1.2.3", "10.1.2.3", true},                /* host */
        {"10.1.2.3", "10.1.2.4", false},
        {"10.1.2.3", "10.1.2.2", false},
        {"10.1.2.3/32", "::ffff:10.1.2.3", true},
        {"10.1.2.3/32", "::ffff:10.1.2.2", false},
        {"0.0.0.0/0", "0.0.0.0", true},
        {"0.0.0.0/0", "255.255.255.255", true},
        {"0.0.0.0/0", "::ffff:1.2.3.4", true},
        {"0.0.0.0/0", "::1", false},
        {"0.0.0.0/0", "2001:db8::1", false},
        {"::/0", "::1", true},
        {"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
        {"::/0", "1.2.3.4", false},
        {"::/0", "::ffff:1.2.3.4", false},             /* a mapped client is IPv4 */
        {"::1/128", "::1", true},
        {"::1/128", "::", false},
        {"::1/128", "::2", false},
        {"::1/128", "127.0.0.1", false},
        {"192.168.1.128/25", "192.168.1.128", true},
        {"192.168.1.128/25", "192.168.1.255", true},
        {"192.168.1.128/25", "192.168.1.127", false},
        {"172.16.0.0/12", "172.31.255.255", true},
        {"172.16.0.0/12", "172.32.0.0", false},
        {"172.16.0.0/12", "172.15.255.255", false},
        {"100.64.0.0/10", "100.127.255.255", true},
        {"100.64.0.0/10", "100.128.0.0", false},
        {"fc00::/7", "fd00::1", true},
        {"fc00::/7", "fc00::", true},
        {"fc00::/7", "fe00::", false},
        {"fc00::/7", "fbff:ffff::", false},
        {"fe80::/10", "febf:ffff::1", true},
        {"fe80::/10", "fec0::", false},
        {"2001:db8::/32", "2001:db8:ffff::1", true},
        {"2001:db8::/32", "2001:db9::", false},
        {"2001:db8:0:1::/64", "2001:db8:0:1:ffff:ffff:ffff:ffff", true},
        {"2001:db8:0:1::/64", "2001:db8:0:2::", false},
        {"::ffff:10.0.0.0/104", "10.9.9.9", true},     /* stored as 10.0.0.0/8 */
        {"::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true},
        {"::ffff:10.0.0.0/104", "11.0.0.0", false},
        {"::ffff:0:0/96", "8.8.8.8", true},
        {"::ffff:0:0/96", "::1", false},
        {"::fffe:0:0/95", "::ffff:1.2.3.4", false},    /* IPv6 network: not for IPv4 */
        {"::fffe:0:0/95", "::fffe:0:1", true},
    };
    for (size_t i = 0; i < N(t); i++) {
        struct addr_cidr c;
        if (!row(CHECK_EQ_INT(addr_cidr_parse(t[i].cidr, &c), 0), t[i].cidr))
            continue;
        struct sockaddr_storage ss = mk(t[i].ip);
        addr_set_port(&ss, 8080);   /* the port is ignored */
        if (!CHECK_EQ_INT(addr_cidr_match(&c, SA(ss)), t[i].want))
            fprintf(stderr, "    ^ %s in %s\n", t[i].ip, t[i].cidr);
    }
}

TEST(cidr_lists_and_empty)
{
    struct addr_cidr list[3];
    CHECK_EQ_INT(addr_cidr_parse("10.0.0.0/8", &list[0]), 0);
    CHECK_EQ_INT(addr_cidr_parse("::1", &list[1]), 0);
    CHECK_EQ_INT(addr_cidr_parse("192.168.0.0/16", &list[2]), 0);

    struct sockaddr_storage a = mk("10.2.3.4"), b = mk("::1"), c = mk("192.168.9.9"),
                            d = mk("8.8.8.8"), e = mk("::ffff:192.168.0.1");
    CHECK(addr_cidr_list_match(list, 3, SA(a)));
    CHECK(addr_cidr_list_match(list, 3, SA(b)));
    CHECK(addr_cidr_list_match(list, 3, SA(c)));
    CHECK(addr_cidr_list_match(list, 3, SA(e)));
    CHECK(!addr_cidr_list_match(list, 3, SA(d)));
    CHECK(!addr_cidr_list_match(list, 2, SA(c)));   /* n is honoured */
    CHECK(!addr_cidr_list_match(list, 0, SA(a)));
    CHECK(!addr_cidr_list_match(list, 3, NULL));

    /* an all-zero network matches nothing, not even 0.0.0.0 or :: */
    struct addr_cidr zero;
    memset(&zero, 0, sizeof zero);
    struct sockaddr_storage z4 = mk("0.0.0.0"), z6 = mk("::");
    CHECK(!addr_cidr_match(&zero, SA(z4)));
    CHECK(!addr_cidr_match(&zero, SA(z6)));
    CHECK(!addr_cidr_match(&zero, SA(d)));

    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    struct addr_cidr all;
    CHECK_EQ_INT(addr_cidr_parse("0.0.0.0/0", &all), 0);
    CHECK(!addr_cidr_match(&all, (const struct sockaddr *)&un));
}

/* ------------------------------------------------------------ authority */

TEST(authority_accepts)
{
    static const struct {
        const char *in, *host;
        int port;         /* 0: none */
        bool is_ip;
        enum addr_class cls;   /* when is_ip */
    } t[] = {
        {"example.com:443", "example.com", 443, false, 0},
        {"example.com", "example.com", 0, false, 0},
        {"Example.COM:80", "Example.COM", 80, false, 0},      /* case kept */
        {"example.com.:8080", "example.com.", 8080, false, 0}, /* trailing dot kept */
        {"localhost:22", "localhost", 22, false, 0},
        {"a:1", "a", 1, false, 0},
        {"a:65535", "a", 65535, false, 0},
        {"a:00080", "a", 80, false, 0},
        {"a:0001", "a", 1, false, 0},
        {"_srv.x-y.example:9", "_srv.x-y.example", 9, false, 0},
        {"1.pool.ntp.org:123", "1.pool.ntp.org", 123, false, 0},
        {"8.8.8.8:53", "8.8.8.8", 53, true, ADDR_PUBLIC},
        {"127.0.0.1:80", "127.0.0.1", 80, true, ADDR_LOOPBACK},
        {"127.0.0.1", "127.0.0.1", 0, true, ADDR_LOOPBACK},
        {"2130706433:80", "2130706433", 80, true, ADDR_LOOPBACK},
        {"0x7f.1:443", "0x7f.1", 443, true, ADDR_LOOPBACK},
        {"0177.0.0.1", "0177.0.0.1", 0, true, ADDR_LOOPBACK},
        {"127.0.0.1.:80", "127.0.0.1.", 80, true, ADDR_LOOPBACK},
        {"0:80", "0", 80, true, ADDR_UNSPECIFIED},
        {"169.254.169.254:80", "169.254.169.254", 80, true, ADDR_LINK_LOCAL},
        {"[::1]:443", "::1", 443, true, ADDR_LOOPBACK},
        {"[::1]", "::1", 0, true, ADDR_LOOPBACK},
        {"[::]:80", "::", 80, true, ADDR_UNSPECIFIED},
        {"[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80, true, ADDR_LOOPBACK},
        {"[::ffff:7f00:1]:80", "::ffff:7f00:1", 80, true, ADDR_LOOPBACK},
        {"[fd00::1]:8443", "fd00::1", 8443, true, ADDR_PRIVATE},
        {"[64:ff9b::7f00:1]:80", "64:ff9b::7f00:1", 80, true, ADDR_LOOPBACK},
        {"[2606:4700:4700::1111]:443", "2606:4700:4700::1111", 443, true, ADDR_PUBLIC},
    };
    for (size_t i = 0; i < N(t); i++) {
        struct addr_authority a;
        size_t n = strlen(t[i].in);
        const char *in = guarded(t[i].in, n);
        if (!row(CHECK_EQ_INT(addr_parse_authority(in, n, &a), 0), t[i].in))
            continue;
        row(CHECK_EQ_MEM(a.host, a.host_len, t[i].host), t[i].in);
        row(CHECK(a.host >= in && a.host + a.host_len <= in + n), t[i].in);   /* into s */
        row(CHECK_EQ_INT(a.has_port, t[i].port != 0), t[i].in);
        row(CHECK_EQ_INT(a.port, t[i].port), t[i].in);
        if (!row(CHECK_EQ_INT(a.is_ip, t[i].is_ip), t[i].in) || !a.is_ip)
            continue;
        row(CHECK_EQ_STR(addr_class_name(addr_classify(SA(a.ip))), addr_class_name(t[i].cls)),
            t[i].in);
        /* the port is in the address when given, 0 otherwise */
        uint16_t port = a.ip.ss_family == AF_INET ? ((struct sockaddr_in *)&a.ip)->sin_port
                                                  : ((struct sockaddr_in6 *)&a.ip)->sin6_port;
        row(CHECK_EQ_INT(ntohs(port), t[i].port), t[i].in);
    }
}

TEST(authority_refuses)
{
    static const char *const t[] = {
        "", ":", ":80", "[]", "[]:80", "example.com:", "[::1]:", "example.com:0",
        "example.com:65536", "example.com:99999", "example.com:000000080", "example.com:123456",
        "example.com:000080", "[::1]:000443",
        "example.com:-1", "example.com:+80", "example.com: 80", "example.com :80",
        " example.com:80", "example.com:80 ", "example.com:8 0", "example.com:0x50",
        "example.com:80:80", "example.com::80", "::1:80", "::1", "fe80::1:443",
        "[::1", "[::1:80", "::1]:80", "[::1]]:80", "[[::1]]:80", "[::1]x", "[::1]80",
        "[::1]:80]", "[127.0.0.1]:80", "[example.com]:80", "[fe80::1%25eth0]:80",
        "[fe80::1%eth0]:80", "[v1.x]:80", "user@example.com:80", "user:pw@example.com",
        "@example.com", "exa%6dple.com:80", "example.com%3a80", "ex ample.com",
        "example..com:80", ".example.com", "example.com..", "127.0.0.256:80", "1.2.3.4.5:80",
        "0x:80", "08:80", "4chan:80", "example.123", "exa\tmple.com", "example.com\r\n",
        "example.com/", "example.com/path", "http://example.com", "example.com?", "example.com#",
        "\xc3\xa9.fr:80", "*:80",
    };
    for (size_t i = 0; i < N(t); i++) {
        struct addr_authority a;
        memset(&a, 0x5a, sizeof a);
        size_t n = strlen(t[i]);
        row(CHECK_EQ_INT(addr_parse_authority(guarded(t[i], n), n, &a), -1), t[i]);
        row(CHECK_EQ_INT(a.port, 0x5a5a), t[i]);   /* out untouched */
    }
}

TEST(authority_lengths)
{
    char s[400];
    struct addr_authority a;
    /* 253-byte name plus a port: fine; 254: refused */
    char *p = s;
    for (int k = 0; k < 3; k++) {
        memset(p, 'b', 63);
        p[63] = '.';
        p += 64;
    }
    memset(p, 'c', 61);
    strcpy(p + 61, ":443");
    size_t n = strlen(s);
    if (CHECK_EQ_INT(addr_parse_authority(guarded(s, n), n, &a), 0)) {
        CHECK_EQ_INT(a.host_len, 253);
        CHECK_EQ_INT(a.port, 443);
    }
    memset(p, 'c', 62);
    strcpy(p + 62, ":443");
    n = strlen(s);
    CHECK_EQ_INT(addr_parse_authority(guarded(s, n), n, &a), -1);

    /* the length is honoured: "example.com:443" cut before the port */
    if (CHECK_EQ_INT(addr_parse_authority(guarded("example.com:443", 11), 11, &a), 0)) {
        CHECK_EQ_MEM(a.host, a.host_len, "example.com");
        CHECK(!a.has_port);
    }
    /* cut inside the port: "example.com:44" */
    if (CHECK_EQ_INT(addr_parse_authority(guarded("example.com:443", 14), 14, &a), 0))
        CHECK_EQ_INT(a.port, 44);
    CHECK_EQ_INT(addr_parse_authority(guarded("", 0), 0, &a), -1);
}

/* -------------------------------------------------------------- helpers */

TEST(host_lower)
{
    char out[32];
    memset(out, 'X', sizeof out);
    if (CHECK_EQ_INT(addr_host_lower(out, sizeof out, "ExAmPlE.COM.", 12), 0))
        CHECK_EQ_STR(out, "example.com.");
    CHECK_EQ_INT(addr_host_lower(out, sizeof out, "A-Z_0-9.XYZ", 11), 0);
    CHECK_EQ_STR(out, "a-z_0-9.xyz");
    /* only what fits with its NUL */
    memset(out, 'X', sizeof out);
    CHECK_EQ_INT(addr_host_lower(out, 4, "ABCD", 4), -1);
    CHECK_EQ_INT(out[0], 'X');   /* untouched */
    CHECK_EQ_INT(addr_host_lower(out, 5, "ABCD", 4), 0);
    CHECK_EQ_STR(out, "abcd");
    CHECK_EQ_INT(addr_host_lower(out, 1, "", 0), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(addr_host_lower(out, 0, "", 0), -1);
    /* bytes outside A-Z pass through unchanged */
    CHECK_EQ_INT(addr_host_lower(out, sizeof out, "@[`{\xc3\x89", 6), 0);
    CHECK_EQ_STR(out, "@[`{\xc3\x89");
}

TEST(socklen_and_port)
{
    struct sockaddr_storage a = mk("1.2.3.4"), b = mk("::1");
    CHECK_EQ_INT(addr_socklen(SA(a)), sizeof(struct sockaddr_in));
    CHECK_EQ_INT(addr_socklen(SA(b)), sizeof(struct sockaddr_in6));
    CHECK_EQ_INT(addr_socklen(NULL), 0);
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    CHECK_EQ_INT(addr_socklen((const struct sockaddr *)&un), 0);

    addr_set_port(&a, 80);
    addr_set_port(&b, 65535);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&a)->sin_port), 80);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in6 *)&b)->sin6_port), 65535);
    CHECK_EQ_U64(v4_of(&a), 0x01020304);   /* the address is kept */
    uint8_t got[16], want[16] = {[15] = 1};
    CHECK(v6_bytes(&b, got) && memcmp(got, want, 16) == 0);

    struct sockaddr_storage z;
    memset(&z, 0, sizeof z);
    addr_set_port(&z, 80);   /* AF_UNSPEC: nothing written */
    static const char zero[sizeof z];
    CHECK(memcmp(&z, zero, sizeof z) == 0);
}

int main(void)
{
    RUN(ipv4_every_spelling);
    RUN(ipv4_long_zero_run);
    RUN(ipv4_malformed_is_refused);
    RUN(ipv4_three_parts_with_trailing_dot);
    RUN(ipv4_embedded_nul_is_refused);
    RUN(host_names);
    RUN(ipv6_literals);
    RUN(ipv6_malformed_and_zones);
    RUN(ipv4_agrees_with_inet_aton);
    RUN(ipv6_agrees_with_inet_pton);
    RUN(class_table);
    RUN(class_of_odd_spellings);
    RUN(class_of_other_families_and_names);
    RUN(cidr_parse_accepts);
    RUN(cidr_parse_refuses);
    RUN(cidr_match);
    RUN(cidr_lists_and_empty);
    RUN(authority_accepts);
    RUN(authority_refuses);
    RUN(authority_lengths);
    RUN(host_lower);
    RUN(socklen_and_port);
    return unit_summary("test_addr");
}
