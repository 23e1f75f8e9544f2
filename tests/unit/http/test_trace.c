/* test_trace.c -- request IDs and the traceparent's trace ID (src/http/trace.h). */
#include "unit.h"

#include <string.h>

#include "trace.h"

static bool valid(const char *s)
{
    return trace_rid_valid(s, strlen(s));
}

TEST(rid_valid)
{
    CHECK(valid("a"));
    CHECK(valid("0af7651916cd43dd8448eb211c80319c"));
    CHECK(valid("req-42_x.y:z"));
    CHECK(valid("ABCxyz019"));
    char max[TRACE_RID_MAX + 2];
    memset(max, 'a', sizeof max);
    max[TRACE_RID_MAX] = '\0';
    CHECK(valid(max));                       /* 64: the longest */
    max[TRACE_RID_MAX] = 'a';
    max[TRACE_RID_MAX + 1] = '\0';
    CHECK(!valid(max));                      /* 65 */
    CHECK(!valid(""));
    const char *bad[] = {"a b", "a\tb", "a,b", "a\"b", "a=b", "a/b", "é", "a\r\n", "a;b", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!valid(bad[i]));
    CHECK(!trace_rid_valid("ab\0c", 4));     /* a NUL inside */
}

TEST(rid_format)
{
    uint8_t rnd[TRACE_RID_BYTES];
    for (int i = 0; i < TRACE_RID_BYTES; i++)
        rnd[i] = (uint8_t)(i * 17 + 0x0f);
    char out[40];
    memset(out, 'X', sizeof out);
    CHECK_EQ_INT(trace_rid_format(rnd, out), 32);
    CHECK_EQ_STR(out, "0f2031425364758697a8b9cadbecfd0e");
    CHECK(valid(out));
    memset(rnd, 0xff, sizeof rnd);
    trace_rid_format(rnd, out);
    CHECK_EQ_STR(out, "ffffffffffffffffffffffffffffffff");
}

static bool parent(const char *s, char *out)
{
    return trace_parent_id(s, strlen(s), out);
}

TEST(traceparent)
{
    char id[40];
    CHECK(parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", id));
    CHECK_EQ_STR(id, "0af7651916cd43dd8448eb211c80319c");
    CHECK(parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", id));
    CHECK_EQ_STR(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    const char *bad[] = {
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",          /* no flags */
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",       /* version */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",       /* upper case */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",       /* zero trace */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",       /* zero parent */
        "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",       /* dash moved */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",     /* longer */
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",       /* not hex */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(id, 'X', sizeof id);
        CHECK(!parent(bad[i], id));
    }
}

int main(void)
{
    RUN(rid_valid);
    RUN(rid_format);
    RUN(traceparent);
    return unit_summary("test_trace");
}
