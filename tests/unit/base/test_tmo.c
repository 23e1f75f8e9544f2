/* test_tmo.c -- folding the deadlines of one exchange (src/base/tmo.h). */
#include "unit.h"

#include <string.h>

#include "tmo.h"

static struct tmo_set set(void)
{
    struct tmo_set s;
    memset(&s, 0, sizeof s);
    return s;
}

TEST(next_none_running)
{
    struct tmo_set s = set();
    CHECK_EQ_U64(tmo_next(&s), 0);
}

TEST(next_is_min_of_running)
{
    struct tmo_set s = set();
    s.at[TMO_READ] = 500;
    CHECK_EQ_U64(tmo_next(&s), 500);
    s.at[TMO_TOTAL] = 900;
    CHECK_EQ_U64(tmo_next(&s), 500);
    s.at[TMO_IDLE] = 300; /* the last kind counts too */
    CHECK_EQ_U64(tmo_next(&s), 300);
    s.at[TMO_CONNECT] = 1;
    CHECK_EQ_U64(tmo_next(&s), 1);
    s.at[TMO_CONNECT] = 0; /* stopped: 0 is "not running", never the minimum */
    CHECK_EQ_U64(tmo_next(&s), 300);
    s.at[TMO_IDLE] = UINT64_MAX;
    CHECK_EQ_U64(tmo_next(&s), 500);

    /* each kind alone */
    for (int k = 0; k < TMO_COUNT; k++) {
        struct tmo_set one = set();
        one.at[k] = 1000 + (uint64_t)k;
        if (!CHECK_EQ_U64(tmo_next(&one), 1000 + (uint64_t)k))
            fprintf(stderr, "    kind %d\n", k);
    }
}

TEST(expired_none)
{
    struct tmo_set s = set();
    CHECK_EQ_INT(tmo_expired(&s, 0), TMO_NONE);
    CHECK_EQ_INT(tmo_expired(&s, UINT64_MAX), TMO_NONE);
    s.at[TMO_READ] = 100;
    s.at[TMO_TOTAL] = 200;
    CHECK_EQ_INT(tmo_expired(&s, 99), TMO_NONE);
    CHECK_EQ_INT(tmo_expired(&s, 0), TMO_NONE);
}

TEST(expired_earliest)
{
    struct tmo_set s = set();
    s.at[TMO_TOTAL] = 300;
    s.at[TMO_READ] = 100;
    s.at[TMO_WRITE] = 200;
    CHECK_EQ_INT(tmo_expired(&s, 100), TMO_READ); /* deadline <= now */
    CHECK_EQ_INT(tmo_expired(&s, 150), TMO_READ);
    CHECK_EQ_INT(tmo_expired(&s, 1000), TMO_READ); /* several expired: earliest */
    s.at[TMO_READ] = 0;
    CHECK_EQ_INT(tmo_expired(&s, 1000), TMO_WRITE);
    s.at[TMO_WRITE] = 0;
    CHECK_EQ_INT(tmo_expired(&s, 1000), TMO_TOTAL);
    /* a later enum value with an earlier deadline wins */
    s = set();
    s.at[TMO_CONNECT] = 50;
    s.at[TMO_IDLE] = 10;
    CHECK_EQ_INT(tmo_expired(&s, 60), TMO_IDLE);
    /* each kind alone */
    for (int k = 0; k < TMO_COUNT; k++) {
        struct tmo_set one = set();
        one.at[k] = 7;
        if (!CHECK_EQ_INT(tmo_expired(&one, 7), k))
            fprintf(stderr, "    kind %d\n", k);
        CHECK_EQ_INT(tmo_expired(&one, 6), TMO_NONE);
    }
}

TEST(tie_total_wins)
{
    struct tmo_set s = set();
    s.at[TMO_READ] = 500;
    s.at[TMO_TOTAL] = 500;
    CHECK_EQ_INT(tmo_expired(&s, 500), TMO_TOTAL);
    CHECK_EQ_INT(tmo_expired(&s, 9999), TMO_TOTAL);
    CHECK_EQ_U64(tmo_next(&s), 500);
    /* every inner kind loses a tie with total */
    for (int k = 1; k < TMO_COUNT; k++) {
        struct tmo_set t = set();
        t.at[k] = 42;
        t.at[TMO_TOTAL] = 42;
        if (!CHECK_EQ_INT(tmo_expired(&t, 42), TMO_TOTAL))
            fprintf(stderr, "    kind %d\n", k);
    }
    /* a tie between inner kinds: lowest enum value */
    s = set();
    s.at[TMO_BODY] = 10;
    s.at[TMO_WRITE] = 10;
    s.at[TMO_SEND] = 10;
    CHECK_EQ_INT(tmo_expired(&s, 10), TMO_WRITE);
    /* but total later than an inner deadline does not win */
    s = set();
    s.at[TMO_TOTAL] = 11;
    s.at[TMO_HEADER] = 10;
    CHECK_EQ_INT(tmo_expired(&s, 20), TMO_HEADER);
}

TEST(reason_names)
{
    CHECK_EQ_STR(tmo_reason(TMO_READ), "read_timeout");
    CHECK_EQ_STR(tmo_reason(TMO_TOTAL), "total_timeout");
    CHECK_EQ_STR(tmo_reason(TMO_CONNECT), "connect_timeout");
    CHECK_EQ_STR(tmo_reason(TMO_WRITE), "write_timeout");
    CHECK_EQ_STR(tmo_reason(TMO_HEADER), "header_timeout");
    CHECK_EQ_STR(tmo_reason(TMO_BODY), "body_timeout");
    CHECK_EQ_STR(tmo_reason(TMO_SEND), "send_timeout");
    CHECK_EQ_STR(tmo_reason(TMO_IDLE), "idle_timeout");
}

TEST(words)
{
    CHECK_EQ_STR(tmo_word(TMO_READ), "read");
    CHECK_EQ_STR(tmo_word(TMO_CONNECT), "connect");
    /* every word is the reason without "_timeout" (the backoff wait before
     * a retry is a deadline but not a timeout) */
    CHECK_EQ_STR(tmo_reason(TMO_BACKOFF), "backoff");
    for (int k = 0; k < TMO_COUNT; k++) {
        if (k == TMO_BACKOFF || k == TMO_HEDGE)
            continue;
        const char *r = tmo_reason((enum tmo_kind)k), *w = tmo_word((enum tmo_kind)k);
        if (!CHECK(r && w))
            continue;
        char want[64];
        snprintf(want, sizeof want, "%s_timeout", w);
        CHECK_EQ_STR(r, want);
    }
}

int main(void)
{
    RUN(next_none_running);
    RUN(next_is_min_of_running);
    RUN(expired_none);
    RUN(expired_earliest);
    RUN(tie_total_wins);
    RUN(reason_names);
    RUN(words);
    return unit_summary("test_tmo");
}
