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
    for (int k = 0; k < TMO_DEADLINES; k++) {
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
    for (int k = 0; k < TMO_DEADLINES; k++) {
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
    for (int k = 1; k < TMO_DEADLINES; k++) {
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


/* ------------------------------------------------------------ tmo_fold */

#define MSNS 1000000ull
#define NOW (500 * MSNS)

/* Durations of every kind, distinct so that a wrong pairing shows. */
static const struct tmo_limits LIM = {.ms = {
    [TMO_TOTAL] = 30000, [TMO_CONNECT] = 1000, [TMO_WRITE] = 15000, [TMO_READ] = 14000,
    [TMO_HEADER] = 10000, [TMO_BODY] = 13000, [TMO_SEND] = 12000, [TMO_IDLE] = 2000,
    [TMO_DNS] = 2500, [TMO_TUNNEL_IDLE] = 60000, [TMO_TUNNEL_MAX] = 90000, [TMO_TRY] = 700,
    [TMO_HEDGE] = 50,
}};

/* Clock starts, each at its own time (ns), before NOW. */
static struct tmo_clocks clocks(void)
{
    return (struct tmo_clocks){
        .first = 1 * MSNS, .start = 2 * MSNS, .connect = 3 * MSNS, .dns = 4 * MSNS,
        .try_start = 5 * MSNS, .tunnel = 7 * MSNS, .active = 8 * MSNS,
    };
}

/* One row of docs/DESIGN.md's table: a phase and conditions, and the kinds
 * that must run (with their deadlines); every other kind must not. */
struct row {
    const char *what;
    enum tmo_phase ph;
    uint32_t cond;
    struct tmo_clocks extra;   /* fields set on top of clocks() when non-zero */
    uint64_t want[TMO_COUNT];
};

static void check_row(const struct row *r, const struct tmo_limits *lim)
{
    struct tmo_clocks c = clocks();
    const uint64_t *e = (const uint64_t *)&r->extra, *end = e + sizeof r->extra / 8;
    uint64_t *d = (uint64_t *)&c;
    for (; e < end; e++, d++)
        if (*e)
            *d = *e;
    struct tmo_set out;
    memset(&out, 0xff, sizeof out);   /* the fold must clear what does not run */
    uint64_t next = tmo_fold(r->ph, r->cond, lim, &c, NOW, &out);
    CHECK_EQ_U64(next, tmo_next(&out));
    for (int k = 0; k < TMO_DEADLINES; k++) {
        if (out.at[k] != r->want[k])
            fprintf(stderr, "row '%s': %s\n", r->what, tmo_word((enum tmo_kind)k));
        CHECK_EQ_U64(out.at[k], r->want[k]);
    }
}

TEST(fold_table)
{
    const struct row rows[] = {
        {"HEAD: header from the head's first byte", TMO_PHASE_HEAD, TMO_IF_SEND, {0},
         {[TMO_HEADER] = 1 * MSNS + 10000 * MSNS}},
        {"EXCH: total alone (request sent, response complete)", TMO_PHASE_EXCH, 0, {0},
         {[TMO_TOTAL] = 2 * MSNS + 30000 * MSNS}},
        {"EXCH: connect while connecting", TMO_PHASE_EXCH, TMO_IF_CONNECTING, {0},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_CONNECT] = 1003 * MSNS}},
        {"EXCH: dns while resolving", TMO_PHASE_EXCH, TMO_IF_RESOLVING, {0},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_DNS] = 2504 * MSNS}},
        {"EXCH: write is a budget: stalled since 100 ms, 40 ms spent before",
         TMO_PHASE_EXCH, 0, {.write_since = 100 * MSNS, .write_used = 40 * MSNS},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_WRITE] = (100 + 15000 - 40) * MSNS}},
        {"EXCH: read from the last read", TMO_PHASE_EXCH, TMO_IF_READ, {.read_mark = 450 * MSNS},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_READ] = (450 + 14000) * MSNS}},
        {"EXCH: read starts now when reading becomes possible", TMO_PHASE_EXCH, TMO_IF_READ, {0},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_READ] = NOW + 14000 * MSNS}},
        {"EXCH: body from the last body read", TMO_PHASE_EXCH, TMO_IF_BODY, {.body_mark = 420 * MSNS},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_BODY] = (420 + 13000) * MSNS}},
        {"EXCH: send while the client takes nothing", TMO_PHASE_EXCH, TMO_IF_SEND, {0},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_SEND] = NOW + 12000 * MSNS}},
        {"EXCH: per-try and hedge from the attempt's start", TMO_PHASE_EXCH,
         TMO_IF_TRY | TMO_IF_HEDGE, {0},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_TRY] = 705 * MSNS, [TMO_HEDGE] = 55 * MSNS}},
        {"EXCH: backoff until its time", TMO_PHASE_EXCH, 0, {.backoff_until = 777 * MSNS},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_BACKOFF] = 777 * MSNS}},
        {"EXCH: everything at once", TMO_PHASE_EXCH,
         TMO_IF_CONNECTING | TMO_IF_READ | TMO_IF_BODY | TMO_IF_SEND, {0},
         {[TMO_TOTAL] = 30002 * MSNS, [TMO_CONNECT] = 1003 * MSNS,
          [TMO_READ] = NOW + 14000 * MSNS, [TMO_BODY] = NOW + 13000 * MSNS,
          [TMO_SEND] = NOW + 12000 * MSNS}},
        {"CLOSING: send while the reply is flushed", TMO_PHASE_CLOSING, TMO_IF_SEND,
         {.send_mark = 300 * MSNS}, {[TMO_SEND] = (300 + 12000) * MSNS}},
        {"CLOSING: nothing while the client takes the reply", TMO_PHASE_CLOSING, 0, {0}, {0}},
        {"CLOSING: then the linger", TMO_PHASE_CLOSING, TMO_IF_LINGER | TMO_IF_SEND, {0},
         {[TMO_IDLE] = (1 + 2000) * MSNS}},
        {"TUNNEL: idle from the last byte, max from its start; no total", TMO_PHASE_TUNNEL,
         TMO_IF_SEND | TMO_IF_READ, {0},
         {[TMO_TUNNEL_IDLE] = (8 + 60000) * MSNS, [TMO_TUNNEL_MAX] = (7 + 90000) * MSNS}},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        check_row(&rows[i], &LIM);

    /* optional kinds at 0 never run, whatever holds */
    struct tmo_limits lim = LIM;
    lim.ms[TMO_TRY] = lim.ms[TMO_HEDGE] = lim.ms[TMO_TUNNEL_MAX] = 0;
    const struct row off[] = {
        {"no per-try, no hedge", TMO_PHASE_EXCH, TMO_IF_TRY | TMO_IF_HEDGE, {0},
         {[TMO_TOTAL] = 30002 * MSNS}},
        {"no tunnel max", TMO_PHASE_TUNNEL, 0, {0}, {[TMO_TUNNEL_IDLE] = 60008 * MSNS}},
    };
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        check_row(&off[i], &lim);
}

/* The marks: started when their condition begins, kept while it holds,
 * cleared when it ends (so the next wait starts afresh). */
TEST(fold_marks)
{
    struct tmo_clocks c = clocks();
    struct tmo_set out;
    tmo_fold(TMO_PHASE_EXCH, TMO_IF_READ | TMO_IF_BODY | TMO_IF_SEND, &LIM, &c, NOW, &out);
    CHECK_EQ_U64(c.read_mark, NOW);
    CHECK_EQ_U64(c.body_mark, NOW);
    CHECK_EQ_U64(c.send_mark, NOW);
    tmo_fold(TMO_PHASE_EXCH, TMO_IF_READ | TMO_IF_BODY | TMO_IF_SEND, &LIM, &c, NOW + 9 * MSNS,
             &out);
    CHECK_EQ_U64(c.read_mark, NOW);   /* kept: still the same wait */
    CHECK_EQ_U64(out.at[TMO_READ], NOW + 14000 * MSNS);
    tmo_fold(TMO_PHASE_EXCH, TMO_IF_BODY, &LIM, &c, NOW + 10 * MSNS, &out);
    CHECK_EQ_U64(c.read_mark, 0);
    CHECK_EQ_U64(c.send_mark, 0);
    CHECK_EQ_U64(c.body_mark, NOW);
    CHECK_EQ_U64(out.at[TMO_READ], 0);
    tmo_fold(TMO_PHASE_EXCH, TMO_IF_READ, &LIM, &c, NOW + 20 * MSNS, &out);
    CHECK_EQ_U64(out.at[TMO_READ], NOW + 20 * MSNS + 14000 * MSNS);
    /* CLOSING keeps the send clock's start across writable edges */
    c.send_mark = 100 * MSNS;
    tmo_fold(TMO_PHASE_CLOSING, 0, &LIM, &c, NOW, &out);
    CHECK_EQ_U64(c.send_mark, 100 * MSNS);
    /* the earliest running deadline is what the connection sleeps on, and
     * a tie with total is reported as total */
    struct tmo_limits lim = LIM;
    lim.ms[TMO_CONNECT] = 30000 - 1;   /* connect started 1 ms after total */
    c = clocks();
    tmo_fold(TMO_PHASE_EXCH, TMO_IF_CONNECTING, &lim, &c, NOW, &out);
    CHECK_EQ_U64(tmo_next(&out), 30002 * MSNS);
    CHECK_EQ_INT(tmo_expired(&out, 30002 * MSNS), TMO_TOTAL);
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
    RUN(fold_table);
    RUN(fold_marks);
    return unit_summary("test_tmo");
}
