/* test_cli.c -- the flags, over the defaults (src/conf/cli.h). */
#include "unit.h"

#include <string.h>

#include "cli.h"

/* ----------------------------------------------------------------- flags */

#define ARGC(v) ((int)(sizeof(v) / sizeof *(v)) - 1)

static struct cfg C;

/* The built-in durations (as --help and docs/CONFIG.md give them). */
static const uint64_t default_ms[TMO_COUNT] = {
    [TMO_CONNECT] = 1000, [TMO_WRITE] = 15000,  [TMO_READ] = 15000,
    [TMO_TOTAL] = 30000,  [TMO_HEADER] = 10000, [TMO_BODY] = 15000,
    [TMO_SEND] = 15000,   [TMO_IDLE] = 60000,   [TMO_UPSTREAM_IDLE] = 30000,
    [TMO_DNS] = 2000,     [TMO_TUNNEL_IDLE] = 60000, [TMO_HANDSHAKE] = 10000,
};

static void check_default_ms(const struct cfg *c)
{
    for (int k = 0; k < TMO_COUNT; k++)
        if (!CHECK_EQ_U64(c->ms[k], default_ms[k]))
            fprintf(stderr, "    kind %d (%s)\n", k, tmo_word((enum tmo_kind)k));
}

TEST(parse_defaults)
{
    char *argv[] = {"hourglass", NULL};
    memset(&C, 0x5A, sizeof C);
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    check_default_ms(&C);
    if (CHECK_EQ_INT(C.nlisten, 1))
        CHECK_EQ_STR(C.listen[0].text, "127.0.0.1:8080");
    if (CHECK_EQ_INT(C.nupstream, 1))
        CHECK_EQ_STR(C.upstream[0].text, "127.0.0.1:9001");
    CHECK(C.access_log != NULL);
    CHECK(C.max_connections > 0);
    CHECK(C.listen_http2[0]);   /* the default listener speaks HTTP/2 too */
    CHECK_EQ_INT(C.max_streams, 100);

    /* cli_defaults alone gives the same timeouts */
    struct cfg d;
    memset(&d, 0x5A, sizeof d);
    cli_defaults(&d);
    check_default_ms(&d);
}

TEST(parse_read_timeout)
{
    char *argv[] = {"hourglass", "--read-timeout", "250ms", NULL};
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    CHECK_EQ_U64(C.ms[TMO_READ], 250);
    CHECK_EQ_U64(C.ms[TMO_WRITE], 15000); /* the others untouched */
    CHECK_EQ_U64(C.ms[TMO_TOTAL], 30000);
}

TEST(parse_every_timeout)
{
    char *argv[] = {"hourglass",        "--connect-timeout", "1ms",  "--write-timeout", "2ms",
                    "--read-timeout",   "3ms",               "--total-timeout", "4ms",
                    "--header-timeout", "5ms",               "--body-timeout", "6ms",
                    "--send-timeout",   "7ms",               "--idle-timeout", "8ms", NULL};
    static const enum tmo_kind kinds[] = {TMO_CONNECT, TMO_WRITE, TMO_READ, TMO_TOTAL,
                                          TMO_HEADER,  TMO_BODY,  TMO_SEND, TMO_IDLE};
    cli_defaults(&C);
    if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
        return;
    for (unsigned i = 0; i < sizeof kinds / sizeof *kinds; i++)
        CHECK_EQ_U64(C.ms[kinds[i]], i + 1);   /* 1ms, 2ms, ... in flag order */
}

/* Each timeout flag sets its own kind and no other. */
TEST(every_timeout_flag_sets_its_kind)
{
    static const struct {
        const char *flag;
        enum tmo_kind kind;
    } flags[] = {
        {"--connect-timeout", TMO_CONNECT},   {"--write-timeout", TMO_WRITE},
        {"--read-timeout", TMO_READ},         {"--total-timeout", TMO_TOTAL},
        {"--header-timeout", TMO_HEADER},     {"--body-timeout", TMO_BODY},
        {"--send-timeout", TMO_SEND},         {"--idle-timeout", TMO_IDLE},
        {"--upstream-idle-timeout", TMO_UPSTREAM_IDLE},
        {"--dns-timeout", TMO_DNS},           {"--handshake-timeout", TMO_HANDSHAKE},
        {"--tunnel-idle-timeout", TMO_TUNNEL_IDLE},
        {"--tunnel-max-lifetime", TMO_TUNNEL_MAX},
    };
    struct cfg d;
    cli_defaults(&d);
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        char *argv[] = {"hourglass", (char *)flags[i].flag, "4321ms", NULL};
        if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 0))
            continue;
        for (int k = 0; k < TMO_COUNT; k++)
            if (!CHECK_EQ_U64(C.ms[k], k == (int)flags[i].kind ? 4321 : d.ms[k]))
                fprintf(stderr, "    %s, kind %d\n", flags[i].flag, k);
        cli_free(&C);
    }
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

/* HTTP/2 on every listener but the forward proxy's, unless --no-http2;
 * --max-concurrent-streams 1..10000. */
TEST(parse_http2)
{
    char *both[] = {"hourglass", "--listen", "127.0.0.1:18080", "--forward-listen",
                    "127.0.0.1:13128", "--listen", "127.0.0.1:18081", NULL};
    cli_defaults(&C);
    if (CHECK_EQ_INT(cli_parse(&C, ARGC(both), both), 0) && CHECK_EQ_INT(C.nlisten, 3)) {
        CHECK(C.listen_http2[0]);
        CHECK(!C.listen_http2[1]);   /* forward */
        CHECK(C.listen_http2[2]);
    }
    char *off[] = {"hourglass", "--no-http2", "--listen", "127.0.0.1:18080", "--listen",
                   "127.0.0.1:18081", NULL};
    cli_defaults(&C);
    if (CHECK_EQ_INT(cli_parse(&C, ARGC(off), off), 0) && CHECK_EQ_INT(C.nlisten, 2))
        CHECK(!C.listen_http2[0] && !C.listen_http2[1]);
    char *off_default[] = {"hourglass", "--no-http2", NULL};
    cli_defaults(&C);
    if (CHECK_EQ_INT(cli_parse(&C, ARGC(off_default), off_default), 0))
        CHECK(!C.listen_http2[0]);
    char *streams[] = {"hourglass", "--max-concurrent-streams", "10000", NULL};
    cli_defaults(&C);
    if (CHECK_EQ_INT(cli_parse(&C, ARGC(streams), streams), 0))
        CHECK_EQ_INT(C.max_streams, 10000);

    fprintf(stderr, "(cli_parse error messages below are expected)\n");
    static const char *const bad[] = {"0", "10001", "-1", "many", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = {"hourglass", "--max-concurrent-streams", (char *)bad[i], NULL};
        cli_defaults(&C);
        if (!CHECK_EQ_INT(cli_parse(&C, ARGC(argv), argv), 2))
            fprintf(stderr, "    --max-concurrent-streams '%s'\n", bad[i]);
    }
    char *with_value[] = {"hourglass", "--no-http2=yes", NULL};
    cli_defaults(&C);
    CHECK_EQ_INT(cli_parse(&C, ARGC(with_value), with_value), 2);
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
        CHECK_EQ_U64(C.ms[TMO_READ], 2000);
}

int main(void)
{
    RUN(parse_defaults);
    RUN(parse_read_timeout);
    RUN(parse_every_timeout);
    RUN(every_timeout_flag_sets_its_kind);
    RUN(parse_two_upstreams);
    RUN(parse_listen);
    RUN(parse_http2);
    RUN(parse_errors);
    return unit_summary("test_cli");
}
