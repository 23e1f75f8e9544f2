/* test_value.c -- the values of the configuration: durations, sizes, header
 * names and addresses (src/conf/value.h). */
#include "unit.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

#include "value.h"

/* val_duration and val_size share their form: text in, a number out. Each
 * case in ok must parse to its number, each text in bad be refused. */
typedef int number_fn(const char *s, uint64_t *out);

struct number_case {
    const char *s;
    uint64_t want;
};

#define N(a) (sizeof(a) / sizeof *(a))

static void numbers(number_fn *f, const char *fname, const struct number_case *ok, size_t nok,
                    const char *const *bad, size_t nbad)
{
    for (size_t i = 0; i < nok; i++) {
        uint64_t v = 424242;
        bool pass = CHECK_EQ_INT(f(ok[i].s, &v), 0);
        pass = CHECK_EQ_U64(v, ok[i].want) && pass;
        if (!pass)
            fprintf(stderr, "    %s(\"%s\")\n", fname, ok[i].s);
    }
    for (size_t i = 0; i < nbad; i++) {
        uint64_t v = 424242;
        if (!CHECK_EQ_INT(f(bad[i], &v), -1))
            fprintf(stderr, "    %s(\"%s\") gave %llu\n", fname, bad[i], (unsigned long long)v);
    }
}

/* ------------------------------------------------------------ durations */

TEST(durations)
{
    static const struct number_case ok[] = {
        {"250ms", 250},   {"1s", 1000},      {"1.5s", 1500},   {"2m", 120000},
        {"1h", 3600000},  {"3", 3000},       {"0.25", 250},    {"1.001s", 1001},
        {"0.5m", 30000},  {"1ms", 1},
        {"4294967s", 4294967000ull},   /* just under 2^32 ms */
    };
    static const char *const bad[] = {
        "", "-1s", "-1", "5x",
        "1.5ms", "0.0005s", "1.2345s",   /* sub-millisecond */
        "s", "ms", "1e3", "99999999999s",
        "4294968s",                      /* past 2^32 ms */
        "2000000h", "1sec", "1 s", "1s2", "+1s", "1.s", "0x10",
    };
    numbers(val_duration, "val_duration", ok, N(ok), bad, N(bad));
}

/* ---------------------------------------------------------------- sizes */

TEST(sizes)
{
    static const struct number_case ok[] = {
        {"0", 0},           {"8192", 8192},      {"8k", 8192},      {"8K", 8192},
        {"32KiB", 32768},   {"1kB", 1024},       {"1m", 1u << 20},  {"1MiB", 1u << 20},
        {"2g", 2ull << 30},
        {"1048576g", 1ull << 50},                /* the largest */
        {"1125899906842624", 1ull << 50},
    };
    static const char *const bad[] = {
        "", "k", "-1", "+1", " 1", "1 k", "1.5k", "1x", "1kb", "1ki", "1t",
        "1048577g", "1125899906842625",          /* past 2^50 */
        "99999999999999999999999",
    };
    numbers(val_size, "val_size", ok, N(ok), bad, N(bad));
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

/* ------------------------------------------------------- pool servers */

/* A server of a pool: an IP literal (its address at once) or a host name
 * (kept, never resolved here). */
TEST(servers)
{
    struct val_server v;
    char err[256] = "";
    if (CHECK_EQ_INT(val_server("127.0.0.1:80", &v, err, sizeof err), 0)) {
        CHECK_EQ_STR(v.name, "");
        CHECK_EQ_INT(v.addr.len, sizeof(struct sockaddr_in));
        CHECK_EQ_INT(port_of(&v.addr), 80);
        CHECK_EQ_STR(v.text, "127.0.0.1:80");
        CHECK_EQ_STR(v.addr.text, "127.0.0.1:80");
        CHECK_EQ_INT(v.port, 80);
    }
    if (CHECK_EQ_INT(val_server("[::1]:8080", &v, err, sizeof err), 0)) {
        CHECK_EQ_INT(v.addr.ss.ss_family, AF_INET6);
        CHECK_EQ_STR(v.text, "[::1]:8080");
    }
    if (CHECK_EQ_INT(val_server("127.1:9", &v, err, sizeof err), 0))   /* inet_aton's spelling */
        CHECK_EQ_STR(v.text, "127.0.0.1:9");
    /* names: not resolved, not even "localhost" */
    if (CHECK_EQ_INT(val_server("Backend.Internal:8080", &v, err, sizeof err), 0)) {
        CHECK_EQ_STR(v.name, "backend.internal");
        CHECK_EQ_INT(v.addr.len, 0);
        CHECK_EQ_INT(v.port, 8080);
        CHECK(!v.srv);
        CHECK_EQ_STR(v.text, "backend.internal:8080");
    }
    if (CHECK_EQ_INT(val_server("localhost:1", &v, err, sizeof err), 0))
        CHECK_EQ_INT(v.addr.len, 0);
    CHECK_EQ_INT(val_server("x.invalid:65535", &v, err, sizeof err), 0);
    /* refused */
    const char *bad[] = {"a.test", "a.test:0", "a.test:65536", ":80", "", "[a.test]:80",
                         "bad host:80", "a..b:80", "127.0.0.256:80", "[::1]80", "4chan:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        if (!CHECK_EQ_INT(val_server(bad[i], &v, err, sizeof err), -1))
            fprintf(stderr, "    val_server(\"%s\") accepted\n", bad[i]);
        CHECK(err[0] != 0);
    }
    /* SRV names */
    if (CHECK_EQ_INT(val_srv_name("_HTTP._tcp.api.test", &v, err, sizeof err), 0)) {
        CHECK(v.srv);
        CHECK_EQ_STR(v.name, "_http._tcp.api.test");
        CHECK_EQ_INT(v.port, 0);
        CHECK_EQ_STR(v.text, "_http._tcp.api.test");
    }
    CHECK_EQ_INT(val_srv_name("_http._tcp.api.test:80", &v, err, sizeof err), -1);
    CHECK_EQ_INT(val_srv_name("10.0.0.1", &v, err, sizeof err), -1);
    CHECK_EQ_INT(val_srv_name("", &v, err, sizeof err), -1);
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
    RUN(durations);
    RUN(sizes);
    RUN(header_names);
    RUN(address_ok);
    RUN(address_refused);
    RUN(servers);
    return unit_summary("test_value");
}
