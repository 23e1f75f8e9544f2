/* test_log.c -- the access log's tries list (src/base/log.h). */
#include "unit.h"

#include <string.h>

#include "log.h"

TEST(tries_none)
{
    char out[64];
    CHECK_EQ_INT(log_tries_format(out, sizeof out, NULL, 0, 0), 1);
    CHECK_EQ_STR(out, "-");
}

TEST(tries_list)
{
    const struct log_try t[] = {
        {"10.0.0.1:80", "read_timeout", 0, 200},
        {"10.0.0.2:80", "status", 503, 3},
        {NULL, "cancelled", 0, 0},
        {"[::1]:8080", "ok", 0, 12},
    };
    char out[256];
    size_t n = log_tries_format(out, sizeof out, t, 4, 0);
    CHECK_EQ_STR(out, "10.0.0.1:80/read_timeout/200,10.0.0.2:80/status_503/3,-/cancelled/0,"
                      "[::1]:8080/ok/12");
    CHECK_EQ_INT(n, strlen(out));
    CHECK(!strchr(out, ' '));   /* one key=value token */
    n = log_tries_format(out, sizeof out, t, 1, 7);   /* attempts past the list's room */
    CHECK_EQ_STR(out, "10.0.0.1:80/read_timeout/200,+7");
    CHECK_EQ_INT(n, strlen(out));
}

TEST(tries_bounded)
{
    const struct log_try t[] = {
        {"10.0.0.1:80", "ok", 0, 1},
        {"10.0.0.2:80", "ok", 0, 2},
        {"10.0.0.3:80", "ok", 0, 3},
    };
    char out[48];
    memset(out, 'X', sizeof out);
    size_t n = log_tries_format(out, sizeof out, t, 3, 0);
    /* what does not fit is counted, never cut in the middle */
    CHECK_EQ_STR(out, "10.0.0.1:80/ok/1,10.0.0.2:80/ok/2,+1");
    CHECK_EQ_INT(n, strlen(out));
    char tiny[24];
    n = log_tries_format(tiny, sizeof tiny, t, 3, 0);
    CHECK_EQ_STR(tiny, "+3");
    CHECK(n < sizeof tiny);
}

/* log_every: the first at once, then one per interval with the count held. */
TEST(every_interval)
{
    struct log_every e = {0};
    unsigned long held = 99;
    CHECK(log_every(&e, 1000, 100, &held));
    CHECK_EQ_INT((int)held, 0);
    for (int i = 0; i < 5; i++)
        CHECK(!log_every(&e, 1000 + (uint64_t)i * 20, 100, &held));
    CHECK(log_every(&e, 1100, 100, &held));
    CHECK_EQ_INT((int)held, 5);
    CHECK(!log_every(&e, 1199, 100, &held));
    CHECK(log_every(&e, 5000, 100, &held));
    CHECK_EQ_INT((int)held, 1);
}

int main(void)
{
    RUN(tries_none);
    RUN(tries_list);
    RUN(tries_bounded);
    RUN(every_interval);
    return unit_summary("test_log");
}
