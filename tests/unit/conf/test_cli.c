/* test_cli.c -- durations, addresses and flags (src/conf/cli.h). */
#include "unit.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

#include "cli.h"

/* ------------------------------------------------------------ durations */

static void dur_ok(const char *s, uint64_t want)
{
    uint64_t ms = 424242;
    int r = cli_duration(s, &ms);
    bool ok = CHECK_EQ_INT(r, 0);
    ok = CHECK_EQ_U64(ms, want) && ok;
    if (!ok)
        fprintf(stderr, "    cli_duration(\"%s\")\n", s);
}

static void dur_bad(const char *s)
{
    uint64_t ms = 424242;
    int r = cli_duration(s, &ms);
    if (!CHECK_EQ_INT(r, -1))
        fprintf(stderr, "    cli_duration(\"%s\") gave %llu ms\n", s, (unsigned long long)ms);
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
    if (CHECK_EQ_INT(cli_address("127.0.0.1:80", &a, err, sizeof err), 0)) {
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
    if (CHECK_EQ_INT(cli_address("[::1]:8080", &a, err, sizeof err), 0)) {
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
        SKIP("'localhost' does not resolve here (no /etc/hosts?): cli_address(\"localhost:9001\") "
             "not checked");
    } else if (CHECK_EQ_INT(cli_address("localhost:9001", &a, err, sizeof err), 0)) {
        CHECK(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);
        CHECK_EQ_INT(port_of(&a), 9001);
        CHECK(strcmp(a.text, "127.0.0.1:9001") == 0 || strcmp(a.text, "[::1]:9001") == 0);
    } else {
        fprintf(stderr, "    err: %s\n", err);
    }
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(cli_address("10.1.2.3:65535", &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.text, "10.1.2.3:65535");
}

static void addr_bad(const char *s)
{
    struct cli_addr a;
    char err[256] = "";
    memset(&a, 0, sizeof a);
    if (!CHECK_EQ_INT(cli_address(s, &a, err, sizeof err), -1))
        fprintf(stderr, "    cli_address(\"%s\") accepted as %s\n", s, a.text);
    else if (!CHECK(err[0] != '\0'))
        fprintf(stderr, "    cli_address(\"%s\") left err empty\n", s);
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

/* ----------------------------------------------------------------- flags */

#define ARGC(v) ((int)(sizeof(v) / sizeof *(v)) - 1)

static struct cfg C;

TEST(parse_defaults)
{
    char *argv[] = {"hourglass", NULL};
    memset(&C, 0x5A, sizeof C);
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    CHECK_EQ_U64(C.connect_ms, 1000);
    CHECK_EQ_U64(C.write_ms, 15000);
    CHECK_EQ_U64(C.read_ms, 15000);
    CHECK_EQ_U64(C.total_ms, 30000);
    CHECK_EQ_U64(C.header_ms, 10000);
    CHECK_EQ_U64(C.body_ms, 15000);
    CHECK_EQ_U64(C.send_ms, 15000);
    CHECK_EQ_U64(C.idle_ms, 60000);
    if (CHECK_EQ_INT(C.nlisten, 1))
        CHECK_EQ_STR(C.listen[0].text, "127.0.0.1:8080");
    if (CHECK_EQ_INT(C.nupstream, 1))
        CHECK_EQ_STR(C.upstream[0].text, "127.0.0.1:9001");
    CHECK(C.access_log != NULL);
    CHECK(C.max_connections > 0);

    /* cli_defaults alone gives the same timeouts */
    struct cfg d;
    memset(&d, 0x5A, sizeof d);
    cli_defaults(&d);
    CHECK_EQ_U64(d.connect_ms, 1000);
    CHECK_EQ_U64(d.write_ms, 15000);
    CHECK_EQ_U64(d.read_ms, 15000);
    CHECK_EQ_U64(d.total_ms, 30000);
    CHECK_EQ_U64(d.header_ms, 10000);
    CHECK_EQ_U64(d.body_ms, 15000);
    CHECK_EQ_U64(d.send_ms, 15000);
    CHECK_EQ_U64(d.idle_ms, 60000);
}

TEST(parse_read_timeout)
{
    char *argv[] = {"hourglass", "--read-timeout", "250ms", NULL};
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    CHECK_EQ_U64(C.read_ms, 250);
    CHECK_EQ_U64(C.write_ms, 15000); /* the others untouched */
    CHECK_EQ_U64(C.total_ms, 30000);
}

TEST(parse_every_timeout)
{
    char *argv[] = {"hourglass",        "--connect-timeout", "1ms",  "--write-timeout", "2ms",
                    "--read-timeout",   "3ms",               "--total-timeout", "4ms",
                    "--header-timeout", "5ms",               "--body-timeout", "6ms",
                    "--send-timeout",   "7ms",               "--idle-timeout", "8ms", NULL};
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    CHECK_EQ_U64(C.connect_ms, 1);
    CHECK_EQ_U64(C.write_ms, 2);
    CHECK_EQ_U64(C.read_ms, 3);
    CHECK_EQ_U64(C.total_ms, 4);
    CHECK_EQ_U64(C.header_ms, 5);
    CHECK_EQ_U64(C.body_ms, 6);
    CHECK_EQ_U64(C.send_ms, 7);
    CHECK_EQ_U64(C.idle_ms, 8);
}

TEST(parse_two_upstreams)
{
    char *argv[] = {"hourglass", "--upstream", "127.0.0.1:9101", "--upstream", "[::1]:9102", NULL};
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    if (CHECK_EQ_INT(C.nupstream, 2)) { /* replaces the default, not appended */
        CHECK_EQ_STR(C.upstream[0].text, "127.0.0.1:9101");
        CHECK_EQ_STR(C.upstream[1].text, "[::1]:9102");
    }
    CHECK_EQ_INT(C.nlisten, 1);
}

TEST(parse_listen)
{
    char *argv[] = {"hourglass", "--listen", "127.0.0.1:18080", NULL};
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    if (CHECK_EQ_INT(C.nlisten, 1))
        CHECK_EQ_STR(C.listen[0].text, "127.0.0.1:18080");
}

TEST(parse_errors)
{
    fprintf(stderr, "(cli_parse error messages below are expected)\n");
    char *unknown[] = {"hourglass", "--no-such-flag", NULL};
    cli_defaults(&C);
    CHECK_EQ_INT(cli_parse(&C, ARGC(unknown), unknown), 2);
    char *bad_dur[] = {"hourglass", "--read-timeout", "soon", NULL};
    cli_defaults(&C);
    CHECK_EQ_INT(cli_parse(&C, ARGC(bad_dur), bad_dur), 2);
    char *missing[] = {"hourglass", "--read-timeout", NULL};
    cli_defaults(&C);
    CHECK_EQ_INT(cli_parse(&C, ARGC(missing), missing), 2);
    char *bad_addr[] = {"hourglass", "--upstream", "127.0.0.1", NULL};
    cli_defaults(&C);
    CHECK_EQ_INT(cli_parse(&C, ARGC(bad_addr), bad_addr), 2);
    char *stray[] = {"hourglass", "extra", NULL};
    cli_defaults(&C);
    CHECK_EQ_INT(cli_parse(&C, ARGC(stray), stray), 2);
    /* a valid parse after failed ones still works (parser state reset) */
    char *ok[] = {"hourglass", "--read-timeout", "2s", NULL};
    cli_defaults(&C);
    if (CHECK_EQ_INT(cli_parse(&C, ARGC(ok), ok), 0))
        CHECK_EQ_U64(C.read_ms, 2000);
}

int main(void)
{
    RUN(duration_units);
    RUN(duration_refused);
    RUN(address_ok);
    RUN(address_refused);
    RUN(parse_defaults);
    RUN(parse_read_timeout);
    RUN(parse_every_timeout);
    RUN(parse_two_upstreams);
    RUN(parse_listen);
    RUN(parse_errors);
    return unit_summary("test_cli");
}
