/* test_resolve.c -- the pure parts of the resolver of a pool's names
 * (src/upstream/resolve.h): merging an answer into a name's slots, and the
 * time to the next resolution after an answer or a failure. */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "addr.h"
#include "pool.h"
#include "resolve.h"

static struct sockaddr_storage ip(const char *a, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (addr_parse_ip(a, strlen(a), &ss) != 1)
        abort();
    addr_set_port(&ss, port);
    return ss;
}

/* A slot in state st at address a:80 (NULL: none). */
static struct pool_server slot(enum pool_slot st, const char *a)
{
    struct pool_server s = {.state = st};
    if (a) {
        s.own.ss = ip(a, 80);
        s.own.len = addr_socklen((const struct sockaddr *)&s.own.ss);
    }
    return s;
}

static struct res_addr ans(const char *a, uint16_t port)
{
    return (struct res_addr){.ss = ip(a, port), .weight = 1};
}

#define U POOL_SLOT_UNUSED
#define IN POOL_SLOT_IN_SERVICE
#define OUT POOL_SLOT_LEAVING

TEST(a_first_answer_fills_unused_slots)
{
    struct pool_server s[4] = {slot(U, NULL), slot(U, NULL), slot(U, NULL), slot(U, NULL)};
    struct res_addr a[2] = {ans("10.0.0.1", 80), ans("10.0.0.2", 80)};
    int take[4];
    CHECK_EQ_INT(res_plan(s, 4, a, 2, take), 0);
    CHECK_EQ_INT(take[0], 0);
    CHECK_EQ_INT(take[1], 1);
    CHECK_EQ_INT(take[2], -1);
    CHECK_EQ_INT(take[3], -1);
}

TEST(stay_leave_and_join)
{
    /* 10.0.0.1 leaves, 10.0.0.2 stays in its slot, 10.0.0.3 joins */
    struct pool_server s[3] = {slot(IN, "10.0.0.1"), slot(IN, "10.0.0.2"), slot(U, NULL)};
    struct res_addr a[2] = {ans("10.0.0.3", 80), ans("10.0.0.2", 80)};
    int take[3];
    CHECK_EQ_INT(res_plan(s, 3, a, 2, take), 0);
    CHECK_EQ_INT(take[0], -1);
    CHECK_EQ_INT(take[1], 1);
    CHECK_EQ_INT(take[2], 0);
    /* the same answer again: nothing moves */
    struct pool_server t[3] = {slot(IN, "10.0.0.1"), slot(IN, "10.0.0.2"), slot(U, NULL)};
    struct res_addr b[2] = {ans("10.0.0.2", 80), ans("10.0.0.1", 80)};
    CHECK_EQ_INT(res_plan(t, 3, b, 2, take), 0);
    CHECK_EQ_INT(take[0], 1);
    CHECK_EQ_INT(take[1], 0);
    CHECK_EQ_INT(take[2], -1);
}

TEST(a_port_is_part_of_the_address)
{
    struct pool_server s[2] = {slot(IN, "10.0.0.1"), slot(U, NULL)};
    struct res_addr a[1] = {ans("10.0.0.1", 81)};
    int take[2];
    CHECK_EQ_INT(res_plan(s, 2, a, 1, take), 0);
    CHECK_EQ_INT(take[0], -1);   /* 10.0.0.1:80 leaves */
    CHECK_EQ_INT(take[1], 0);    /* 10.0.0.1:81 joins */
}

TEST(a_leaving_address_comes_back_to_its_slot)
{
    /* still busy (a request in flight): it comes back all the same */
    struct pool_server s[3] = {slot(U, NULL), slot(OUT, "10.0.0.1"), slot(U, NULL)};
    s[1].active = 1;
    struct res_addr a[1] = {ans("10.0.0.1", 80)};
    int take[3];
    CHECK_EQ_INT(res_plan(s, 3, a, 1, take), 0);
    CHECK_EQ_INT(take[0], -1);
    CHECK_EQ_INT(take[1], 0);
    CHECK_EQ_INT(take[2], -1);
}

TEST(only_a_free_leaving_slot_takes_another_address)
{
    struct upconn idle;
    struct pool_server s[4] = {slot(OUT, "10.0.0.1"), slot(OUT, "10.0.0.2"),
                               slot(OUT, "10.0.0.3"), slot(OUT, "10.0.0.4")};
    s[0].active = 1;          /* a request in flight */
    s[1].idle = &idle;        /* an idle connection (closed when it left, in practice) */
    s[2].h2 = (struct h2u_conn *)&idle;   /* an HTTP/2 connection with streams */
    CHECK(!pool_slot_free(&s[0]) && !pool_slot_free(&s[1]) && !pool_slot_free(&s[2]));
    CHECK(pool_slot_free(&s[3]));
    struct res_addr a[2] = {ans("10.0.0.9", 80), ans("10.0.0.8", 80)};
    int take[4];
    CHECK_EQ_INT(res_plan(s, 4, a, 2, take), 1);   /* one finds no slot */
    CHECK_EQ_INT(take[0], -1);
    CHECK_EQ_INT(take[1], -1);
    CHECK_EQ_INT(take[2], -1);
    CHECK_EQ_INT(take[3], 0);
}

TEST(unused_slots_before_free_leaving_ones)
{
    struct pool_server s[2] = {slot(OUT, "10.0.0.1"), slot(U, NULL)};
    struct res_addr a[1] = {ans("10.0.0.2", 80)};
    int take[2];
    CHECK_EQ_INT(res_plan(s, 2, a, 1, take), 0);
    CHECK_EQ_INT(take[0], -1);
    CHECK_EQ_INT(take[1], 0);
}

TEST(a_slot_in_service_that_leaves_is_not_reused_at_once)
{
    /* its connections are still to finish: the newcomer waits */
    struct pool_server s[1] = {slot(IN, "10.0.0.1")};
    struct res_addr a[1] = {ans("10.0.0.2", 80)};
    int take[1];
    CHECK_EQ_INT(res_plan(s, 1, a, 1, take), 1);
    CHECK_EQ_INT(take[0], -1);
}

TEST(an_address_given_twice_counts_once)
{
    struct pool_server s[3] = {slot(U, NULL), slot(U, NULL), slot(U, NULL)};
    struct res_addr a[3] = {ans("10.0.0.1", 80), ans("10.0.0.1", 80), ans("::1", 80)};
    int take[3];
    CHECK_EQ_INT(res_plan(s, 3, a, 3, take), 0);
    CHECK_EQ_INT(take[0], 0);
    CHECK_EQ_INT(take[1], 2);
    CHECK_EQ_INT(take[2], -1);
}

TEST(ttl_to_interval)
{
    CHECK_EQ_U64(res_interval_ms(0, 1000, 300000), 1000);     /* TTL 0: min_interval */
    CHECK_EQ_U64(res_interval_ms(30, 1000, 300000), 30000);
    CHECK_EQ_U64(res_interval_ms(86400, 1000, 300000), 300000);
    CHECK_EQ_U64(res_interval_ms(1, 100, 1000), 1000);
    CHECK_EQ_U64(res_interval_ms(UINT32_MAX, 100, 1000), 1000);
}

TEST(failures_back_off)
{
    CHECK_EQ_U64(res_retry_ms(1, 100, 1000), 100);
    CHECK_EQ_U64(res_retry_ms(2, 100, 1000), 200);
    CHECK_EQ_U64(res_retry_ms(3, 100, 1000), 400);
    CHECK_EQ_U64(res_retry_ms(4, 100, 1000), 800);
    CHECK_EQ_U64(res_retry_ms(5, 100, 1000), 1000);       /* max_interval */
    CHECK_EQ_U64(res_retry_ms(1000, 1000, 300000), RES_RETRY_CAP_MS);
    CHECK_EQ_U64(res_retry_ms(3, 60000, 300000), 60000);   /* never below min_interval */
}

int main(void)
{
    RUN(a_first_answer_fills_unused_slots);
    RUN(stay_leave_and_join);
    RUN(a_port_is_part_of_the_address);
    RUN(a_leaving_address_comes_back_to_its_slot);
    RUN(only_a_free_leaving_slot_takes_another_address);
    RUN(unused_slots_before_free_leaving_ones);
    RUN(a_slot_in_service_that_leaves_is_not_reused_at_once);
    RUN(an_address_given_twice_counts_once);
    RUN(ttl_to_interval);
    RUN(failures_back_off);
    return unit_summary("test_resolve");
}
