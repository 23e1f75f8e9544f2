/* test_value.c -- the values of the configuration: durations, sizes, header
 * names and addresses (src/conf/value.h). */
#include "unit.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

#include "value.h"

/* ------------------------------------------------------------ durations */

static void dur_ok(const char *s, uint64_t want)
{
    uint64_t ms = 424242;
    int r = val_duration(s, &ms);
    bool ok = CHECK_EQ_INT(r, 0);
    ok = CHECK_EQ_U64(ms, want) && ok;
    if (!ok)
        fprintf(stderr, "    val_duration(\"%s\")\n", s);
}

static void dur_bad(const char *s)
{
    uint64_t ms = 424242;
    int r = val_duration(s, &ms);
    if (!CHECK_EQ_INT(r, -1))
        fprintf(stderr, "    val_duration(\"%s\") gave %llu ms\n", s, (unsigned long long)ms);
}

TEST(duration_units)
{
    dur_ok("250ms", 250);
    dur_ok("1s", 1000);
    dur_ok("1.5s", 1500);
    dur_ok("2m", 120000);
    dur_ok("1h", 3600000);
    dur_ok("3", 3000);
    dur_ok("0.25", 250);
    dur_ok("1.001s", 1001);
    dur_ok("0.5m", 30000);
    dur_ok("1ms", 1);
    dur_ok("4294967s", 4294967000ull); /* just under 2^32 ms */
}

TEST(duration_refused)
{
    dur_bad("");
    dur_bad("-1s");
    dur_bad("-1");
    dur_bad("5x");
    dur_bad("1.5ms");   /* sub-millisecond */
    dur_bad("0.0005s"); /* sub-millisecond */
    dur_bad("1.2345s"); /* sub-millisecond */
    dur_bad("s");
    dur_bad("ms");
    dur_bad("1e3");
    dur_bad("99999999999s");
    dur_bad("4294968s"); /* past 2^32 ms */
    dur_bad("2000000h");
    dur_bad("1sec");
    dur_bad("1 s");
    dur_bad("1s2");
    dur_bad("+1s");
    dur_bad("1.s");
    dur_bad("0x10");
}

/* ------------------------------------------------------------ addresses */

static int port_of(const struct cli_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return -1;
}

/* Whether the system resolves name (it may not: no /etc/hosts, no DNS). */
static bool resolves(const char *name)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(name, NULL, &hints, &res) != 0)
        return false;
    freeaddrinfo(res);
    return true;
}

TEST(address_ok)
{
    struct cli_addr a;
    char err[256] = "";
    memset(&a, 0, sizeof a);
    if (CHECK_EQ_INT(val_address("127.0.0.1:80", &a, err, sizeof err), 0)) {
        CHECK_EQ_INT(a.ss.ss_family, AF_INET);
        CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in));
        CHECK_EQ_INT(port_of(&a), 80);
        CHECK_EQ_STR(a.text, "127.0.0.1:80");
        struct in_addr want;
        inet_pton(AF_INET, "127.0.0.1", &want);
        CHECK(((struct sockaddr_in *)&a.ss)->sin_addr.s_addr == want.s_addr);
    } else {
        fprintf(stderr, "    err: %s\n", err);
    }
    memset(&a, 0, sizeof a);
    if (CHECK_EQ_INT(val_address("[::1]:8080", &a, err, sizeof err), 0)) {
        CHECK_EQ_INT(a.ss.ss_family, AF_INET6);
        CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in6));
        CHECK_EQ_INT(port_of(&a), 8080);
        CHECK_EQ_STR(a.text, "[::1]:8080");
    } else {
        fprintf(stderr, "    err: %s\n", err);
    }
    /* a name is resolved: the one check here that needs the system's resolver */
    memset(&a, 0, sizeof a);
    if (!resolves("localhost")) {
        SKIP("'localhost' does not resolve here (no /etc/hosts?): val_address(\"localhost:9001\") "
             "not checked");
    } else if (CHECK_EQ_INT(val_address("localhost:9001", &a, err, sizeof err), 0)) {
        CHECK(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);
        CHECK_EQ_INT(port_of(&a), 9001);
        CHECK(strcmp(a.text, "127.0.0.1:9001") == 0 || strcmp(a.text, "[::1]:9001") == 0);
    } else {
        fprintf(stderr, "    err: %s\n", err);
    }
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(val_address("10.1.2.3:65535", &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.text, "10.1.2.3:65535");
}

static void addr_bad(const char *s)
{
    struct cli_addr a;
    char err[256] = "";
    memset(&a, 0, sizeof a);
    if (!CHECK_EQ_INT(val_address(s, &a, err, sizeof err), -1))
        fprintf(stderr, "    val_address(\"%s\") accepted as %s\n", s, a.text);
    else if (!CHECK(err[0] != '\0'))
        fprintf(stderr, "    val_address(\"%s\") left err empty\n", s);
}

TEST(address_refused)
{
    addr_bad("127.0.0.1");
    addr_bad("1.2.3.4:99999");
    addr_bad(":80");
    addr_bad("");
    addr_bad("1.2.3.4:");
    addr_bad("1.2.3.4:http8");
    addr_bad("1.2.3.4:-1");
    addr_bad("1.2.3.4:65536");
    addr_bad("[::1]");
    addr_bad("[::1:80");
    addr_bad("[::1]80");
    addr_bad("::1:80x");
}


/* ---------------------------------------------------------------- sizes */

static void size_ok(const char *s, uint64_t want)
{
    uint64_t v = 424242;
    int r = val_size(s, &v);
    bool ok = CHECK_EQ_INT(r, 0);
    ok = CHECK_EQ_U64(v, want) && ok;
    if (!ok)
        fprintf(stderr, "    val_size(\"%s\")\n", s);
}

static void size_bad(const char *s)
{
    uint64_t v = 424242;
    if (!CHECK_EQ_INT(val_size(s, &v), -1))
        fprintf(stderr, "    val_size(\"%s\") gave %llu\n", s, (unsigned long long)v);
}

TEST(size_units)
{
    size_ok("0", 0);
    size_ok("8192", 8192);
    size_ok("8k", 8192);
    size_ok("8K", 8192);
    size_ok("32KiB", 32768);
    size_ok("1kB", 1024);
    size_ok("1m", 1u << 20);
    size_ok("1MiB", 1u << 20);
    size_ok("2g", 2ull << 30);
    size_ok("1048576g", 1ull << 50); /* the largest */
    size_ok("1125899906842624", 1ull << 50);
}

TEST(size_refused)
{
    size_bad("");
    size_bad("k");
    size_bad("-1");
    size_bad("+1");
    size_bad(" 1");
    size_bad("1 k");
    size_bad("1.5k");
    size_bad("1x");
    size_bad("1kb");
    size_bad("1ki");
    size_bad("1t");
    size_bad("1048577g"); /* past 2^50 */
    size_bad("1125899906842625");
    size_bad("99999999999999999999999");
}

/* --------------------------------------------------------- header names */

TEST(header_names)
{
    char longest[66];
    memset(longest, 'x', 64);
    longest[64] = '\0';
    CHECK(val_header_name("X-Request-Deadline-Ms"));
    CHECK(val_header_name("a"));
    CHECK(val_header_name("x_deadline_2"));
    CHECK(val_header_name(longest));
    longest[64] = 'x';
    longest[65] = '\0';
    CHECK(!val_header_name(longest)); /* 65 */
    CHECK(!val_header_name(""));
    CHECK(!val_header_name("X Deadline"));
    CHECK(!val_header_name("X:Deadline"));
    CHECK(!val_header_name("X-D\xc3\xa9"));
    CHECK(!val_header_name("X-D\n"));
}

int main(void)
{
    RUN(duration_units);
    RUN(duration_refused);
    RUN(size_units);
    RUN(size_refused);
    RUN(header_names);
    RUN(address_ok);
    RUN(address_refused);
    return unit_summary("test_value");
}
