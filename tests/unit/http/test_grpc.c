/* test_grpc.c -- the grpc-timeout field (src/http/grpc.h). */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "grpc.h"

static int parse(const char *s, uint64_t *ns)
{
    return grpc_timeout_parse(s, strlen(s), ns);
}

TEST(parse_units)
{
    uint64_t ns = 0;
    CHECK_EQ_INT(parse("1H", &ns), 0);
    CHECK_EQ_U64(ns, 3600000000000ull);
    CHECK_EQ_INT(parse("2M", &ns), 0);
    CHECK_EQ_U64(ns, 120000000000ull);
    CHECK_EQ_INT(parse("5S", &ns), 0);
    CHECK_EQ_U64(ns, 5000000000ull);
    CHECK_EQ_INT(parse("250m", &ns), 0);
    CHECK_EQ_U64(ns, 250000000ull);
    CHECK_EQ_INT(parse("7u", &ns), 0);
    CHECK_EQ_U64(ns, 7000ull);
    CHECK_EQ_INT(parse("99999999n", &ns), 0);
    CHECK_EQ_U64(ns, 99999999ull);
    CHECK_EQ_INT(parse("99999999H", &ns), 0);
    CHECK_EQ_U64(ns, 99999999ull * 3600000000000ull);
    CHECK_EQ_INT(parse("0m", &ns), 0);   /* already over: the call fails at once */
    CHECK_EQ_U64(ns, 0);
    CHECK_EQ_INT(parse("00000010S", &ns), 0);
    CHECK_EQ_U64(ns, 10000000000ull);
}

TEST(parse_malformed)
{
    uint64_t ns = 42;
    const char *bad[] = {"",  "S",     "10",  "123456789S", "10s", "10h", "1.5S", "-1S",
                         " 1S", "1S ", "1 S", "1SS",        "10x", "1e3m"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK_EQ_INT(parse(bad[i], &ns), -1))
            fprintf(stderr, "    accepted: \"%s\"\n", bad[i]);
    }
    CHECK_EQ_U64(ns, 42);   /* untouched */
}

static const char *fmt(uint64_t ns)
{
    static char out[GRPC_TIMEOUT_MAX + 1];
    int n = grpc_timeout_format(ns, out);
    out[n] = '\0';
    return out;
}

TEST(format)
{
    CHECK_EQ_STR(fmt(0), "0m");
    CHECK_EQ_STR(fmt(999999), "0m");                /* under 1 ms: rounded down */
    CHECK_EQ_STR(fmt(1000000), "1m");
    CHECK_EQ_STR(fmt(1234567891), "1234m");         /* rounded down, never up */
    CHECK_EQ_STR(fmt(299999999), "299m");
    CHECK_EQ_STR(fmt(99999999ull * 1000000), "99999999m");
    CHECK_EQ_STR(fmt(100000000ull * 1000000), "100000S");   /* past 8 digits of ms */
    CHECK_EQ_STR(fmt(200000000ull * 1000000000), "3333333M");
    CHECK_EQ_STR(fmt(UINT64_MAX), "5124095H");      /* (2^64 - 1 ns is 5124095 h and more) */
    /* what is written reads back as at most the time given, less by under
     * one unit: a millisecond, or 1e-5 of the time past 8 digits of them */
    uint64_t samples[] = {1500, 2500000, 987654321, 5000000001ull, 123456789012345ull,
                          99999999123456789ull};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char out[GRPC_TIMEOUT_MAX];
        int n = grpc_timeout_format(samples[i], out);
        uint64_t back = UINT64_MAX;
        CHECK(n >= 2 && n <= GRPC_TIMEOUT_MAX);
        CHECK_EQ_INT(grpc_timeout_parse(out, (size_t)n, &back), 0);
        CHECK(back <= samples[i]);
        CHECK(samples[i] - back < samples[i] / 100000 + 1000000);
    }
}

TEST(content_type)
{
    CHECK(grpc_content_type("application/grpc", 16));
    CHECK(grpc_content_type("application/grpc+proto", 22));
    CHECK(grpc_content_type("Application/GRPC;x=1", 20));
    CHECK(!grpc_content_type("application/grpcx", 17));
    CHECK(!grpc_content_type("application/json", 16));
    CHECK(!grpc_content_type("application/grp", 15));
}

TEST(status_mapping)
{
    CHECK_EQ_INT(grpc_status_of_http(400), GRPC_INTERNAL);
    CHECK_EQ_INT(grpc_status_of_http(401), GRPC_UNAUTHENTICATED);
    CHECK_EQ_INT(grpc_status_of_http(403), GRPC_PERMISSION_DENIED);
    CHECK_EQ_INT(grpc_status_of_http(404), GRPC_UNIMPLEMENTED);
    CHECK_EQ_INT(grpc_status_of_http(429), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_http(502), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_http(503), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_http(504), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_http(500), GRPC_UNKNOWN);
    CHECK_EQ_INT(grpc_status_of_http(418), GRPC_UNKNOWN);
    /* every deadline kind is DEADLINE_EXCEEDED, whatever the HTTP status */
    const char *deadlines[] = {"total_timeout", "read_timeout", "write_timeout", "try_timeout",
                               "body_timeout"};
    for (size_t i = 0; i < sizeof deadlines / sizeof deadlines[0]; i++)
        CHECK_EQ_INT(grpc_status_of_reason(deadlines[i], 504), GRPC_DEADLINE_EXCEEDED);
    CHECK_EQ_INT(grpc_status_of_reason("connect_timeout", 504), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason("upstream_refused", 502), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason("upstream_reset", 502), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason("no_healthy_upstream", 503), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason("pool_full", 503), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason("queue_timeout", 503), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason("proxy_overloaded", 503), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason("deadline_unmeetable", 504), GRPC_DEADLINE_EXCEEDED);
    CHECK_EQ_INT(grpc_status_of_reason("bad_upstream_response", 502), GRPC_INTERNAL);
    CHECK_EQ_INT(grpc_status_of_reason("bad_grpc_timeout", 400), GRPC_INTERNAL);
    CHECK_EQ_INT(grpc_status_of_reason("client_abort", 499), GRPC_CANCELLED);
    CHECK_EQ_INT(grpc_status_of_reason("no_route", 404), GRPC_UNIMPLEMENTED);
    CHECK_EQ_INT(grpc_status_of_reason("upstream_http_status", 503), GRPC_UNAVAILABLE);
    CHECK_EQ_INT(grpc_status_of_reason(NULL, 401), GRPC_UNAUTHENTICATED);
}

TEST(message_and_status)
{
    char out[16];
    CHECK_EQ_INT((int)grpc_message_encode("a b%c\n", out, sizeof out), 10);
    CHECK_EQ_STR(out, "a b%25c%0A");
    CHECK_EQ_INT((int)grpc_message_encode("0123456789abcdefghij", out, sizeof out), 15);
    CHECK_EQ_INT((int)grpc_message_encode("%%%%%%", out, 8), 6);   /* whole escapes only */
    CHECK_EQ_INT(grpc_status_parse("0", 1), 0);
    CHECK_EQ_INT(grpc_status_parse("14", 2), 14);
    CHECK_EQ_INT(grpc_status_parse("x", 1), -1);
    CHECK_EQ_INT(grpc_status_parse("", 0), -1);
}

int main(void)
{
    RUN(content_type);
    RUN(status_mapping);
    RUN(message_and_status);
    RUN(parse_units);
    RUN(parse_malformed);
    RUN(format);
    return unit_summary("test_grpc");
}
