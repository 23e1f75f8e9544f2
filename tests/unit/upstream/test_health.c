/* test_health.c -- the status-line verdict of active health checks
 * (src/upstream/health.h). */
#include "unit.h"

#include <string.h>

#include "health.h"

static enum health_verdict judge(const char *s, unsigned *status)
{
    *status = 0;
    return health_status_line(s, strlen(s), status);
}

TEST(success_statuses)
{
    unsigned st;
    CHECK_EQ_INT(judge("HTTP/1.1 200 OK\r\n", &st), HEALTH_OK);
    CHECK_EQ_INT(st, 200);
    CHECK_EQ_INT(judge("HTTP/1.0 204 No Content\r\nContent-Length: 0\r\n", &st), HEALTH_OK);
    CHECK_EQ_INT(st, 204);
    CHECK_EQ_INT(judge("HTTP/1.1 301 Moved Permanently\r\n", &st), HEALTH_OK);
    CHECK_EQ_INT(st, 301);
    CHECK_EQ_INT(judge("HTTP/1.1 399 x\r\n", &st), HEALTH_OK);
    CHECK_EQ_INT(st, 399);
    CHECK_EQ_INT(judge("HTTP/1.1 299 \r\n", &st), HEALTH_OK);   /* empty reason */
    CHECK_EQ_INT(judge("HTTP/1.1 200\r\n", &st), HEALTH_OK);    /* no reason at all */
    CHECK_EQ_INT(judge("HTTP/1.1 200 OK\n", &st), HEALTH_OK);   /* bare LF */
    CHECK_EQ_INT(judge("HTTP/1.1 200\n", &st), HEALTH_OK);
    CHECK_EQ_INT(judge("HTTP/1.1 200 caf\xc3\xa9\tfine\r\n", &st), HEALTH_OK); /* obs-text, HTAB */
}

TEST(failure_statuses)
{
    unsigned st;
    CHECK_EQ_INT(judge("HTTP/1.1 503 Service Unavailable\r\n", &st), HEALTH_BAD_STATUS);
    CHECK_EQ_INT(st, 503);
    CHECK_EQ_INT(judge("HTTP/1.1 404 Not Found\r\n", &st), HEALTH_BAD_STATUS);
    CHECK_EQ_INT(st, 404);
    CHECK_EQ_INT(judge("HTTP/1.1 400 \r\n", &st), HEALTH_BAD_STATUS);
    CHECK_EQ_INT(judge("HTTP/1.1 199 x\r\n", &st), HEALTH_BAD_STATUS);
    CHECK_EQ_INT(judge("HTTP/1.1 100 Continue\r\n", &st), HEALTH_BAD_STATUS);
    CHECK_EQ_INT(st, 100);
    CHECK_EQ_INT(judge("HTTP/1.1 999 odd\r\n", &st), HEALTH_BAD_STATUS);
}

TEST(incomplete_prefixes)
{
    static const char line[] = "HTTP/1.1 200 OK\r\n";
    unsigned st;
    /* every proper prefix of a good line waits for more */
    for (size_t n = 0; n < sizeof line - 1; n++)
        CHECK_EQ_INT(health_status_line(line, n, &st), HEALTH_INCOMPLETE);
    CHECK_EQ_INT(health_status_line(line, sizeof line - 1, &st), HEALTH_OK);
    CHECK_EQ_INT(judge("HTTP/1.1 200 OK\r", &st), HEALTH_INCOMPLETE);
    CHECK_EQ_INT(judge("HTTP/1.1 503", &st), HEALTH_INCOMPLETE);
    CHECK_EQ_INT(st, 0);   /* not set until the line is complete */
}

TEST(malformed_lines)
{
    unsigned st;
    CHECK_EQ_INT(judge("X", &st), HEALTH_MALFORMED);   /* known bad at the first byte */
    CHECK_EQ_INT(judge("http/1.1 200 OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/1.1  200 OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/11 200 OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/1.1 20 OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/1.1 2000 OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/1.1 200OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/1.1 abc OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/1.1 099 OK\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("HTTP/1.1 200 O\rK\r\n", &st), HEALTH_MALFORMED);   /* bare CR */
    CHECK_EQ_INT(judge("HTTP/1.1 200 O\x01K\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(judge("SSH-2.0-OpenSSH_9.6\r\n", &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(st, 0);
    /* a NUL inside the line */
    static const char nul[] = "HTTP/1.1 200 O\0K\r\n";
    CHECK_EQ_INT(health_status_line(nul, sizeof nul - 1, &st), HEALTH_MALFORMED);
}

TEST(line_length_limit)
{
    static char line[HEALTH_LINE_MAX + 8];
    unsigned st;
    memcpy(line, "HTTP/1.1 200 ", 13);
    memset(line + 13, 'a', sizeof line - 13);
    /* no end within the limit: malformed, not incomplete forever */
    CHECK_EQ_INT(health_status_line(line, HEALTH_LINE_MAX - 1, &st), HEALTH_INCOMPLETE);
    CHECK_EQ_INT(health_status_line(line, HEALTH_LINE_MAX, &st), HEALTH_MALFORMED);
    CHECK_EQ_INT(health_status_line(line, sizeof line, &st), HEALTH_MALFORMED);
    /* a line that ends just inside the limit is fine */
    line[HEALTH_LINE_MAX - 2] = '\r';
    line[HEALTH_LINE_MAX - 1] = '\n';
    CHECK_EQ_INT(health_status_line(line, HEALTH_LINE_MAX, &st), HEALTH_OK);
    CHECK_EQ_INT(st, 200);
}

int main(void)
{
    RUN(success_statuses);
    RUN(failure_statuses);
    RUN(incomplete_prefixes);
    RUN(malformed_lines);
    RUN(line_length_limit);
    return unit_summary("test_health");
}
