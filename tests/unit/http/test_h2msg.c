/* test_h2msg.c -- HTTP/2 header lists as HTTP/1.1 heads and back, the flood
 * buckets and the stream id window (src/http/h2msg.h). */
#include "unit.h"

#include <string.h>

#include "h2msg.h"
#include "http.h"

static char out[4096];

#define F(r, n, v) h2msg_req_field((r), (n), strlen(n), (v), strlen(v))

/* The head h2msg writes for r, NUL-terminated in out; -1 when refused. */
static int head(struct h2msg_req *r, bool body, bool *chunked)
{
    int n = h2msg_req_head(r, body, out, sizeof out - 1, chunked);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

TEST(get_mapped)
{
    struct h2msg_req r = {0};
    bool ch;
    F(&r, ":method", "GET");
    F(&r, ":scheme", "https");
    F(&r, ":authority", "example.com:8443");
    F(&r, ":path", "/a?b=1");
    F(&r, "accept", "*/*");
    F(&r, "host", "other.example");   /* :authority wins */
    F(&r, "te", "trailers");          /* kept: fwd decides (hop-by-hop but to HTTP/2) */
    F(&r, "user-agent", "t/1");
    int n = head(&r, false, &ch);
    CHECK(n > 0);
    CHECK_EQ_STR(out, "GET /a?b=1 HTTP/1.1\r\nhost: example.com:8443\r\naccept: */*\r\n"
                      "te: trailers\r\nuser-agent: t/1\r\n\r\n");
    CHECK(!ch);
    CHECK((size_t)n <= h2msg_req_size(&r));
    /* and our HTTP/1.1 parser takes it whole */
    static struct http_msg m;
    CHECK_EQ_INT(http_parse_request(out, (size_t)n, &m, &http_default_limits), n);
    h2msg_req_release(&r);
}

TEST(host_without_authority)
{
    struct h2msg_req r = {0};
    bool ch;
    F(&r, ":method", "GET");
    F(&r, ":path", "/");
    F(&r, ":scheme", "http");
    F(&r, "host", "h.example");
    CHECK(head(&r, false, &ch) > 0);
    CHECK_EQ_STR(out, "GET / HTTP/1.1\r\nhost: h.example\r\n\r\n");
    h2msg_req_release(&r);
}

TEST(cookies_joined)
{
    struct h2msg_req r = {0};
    bool ch;
    F(&r, ":method", "GET");
    F(&r, ":authority", "a");
    F(&r, ":path", "/");
    F(&r, "cookie", "a=1");
    F(&r, "x", "y");
    F(&r, "cookie", "b=2");
    F(&r, "cookie", "c=3");
    CHECK(head(&r, false, &ch) > 0);
    CHECK_EQ_STR(out, "GET / HTTP/1.1\r\nhost: a\r\nx: y\r\ncookie: a=1; b=2; c=3\r\n\r\n");
    h2msg_req_release(&r);
}

TEST(body_framing)
{
    struct h2msg_req r = {0};
    bool ch;
    /* a body without content-length goes chunked */
    F(&r, ":method", "POST");
    F(&r, ":authority", "a");
    F(&r, ":path", "/u");
    CHECK(head(&r, true, &ch) > 0);
    CHECK(ch);
    CHECK_EQ_STR(out, "POST /u HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n");
    /* no body: a POST says so */
    CHECK(head(&r, false, &ch) > 0);
    CHECK(!ch);
    CHECK_EQ_STR(out, "POST /u HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n");
    h2msg_req_release(&r);
    /* content-length is kept and framing is left to it */
    F(&r, ":method", "PUT");
    F(&r, ":authority", "a");
    F(&r, ":path", "/u");
    F(&r, "content-length", "5");
    CHECK(head(&r, true, &ch) > 0);
    CHECK(!ch);
    CHECK_EQ_STR(out, "PUT /u HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n");
    h2msg_req_release(&r);
    /* a GET without a body says nothing */
    F(&r, ":method", "GET");
    F(&r, ":authority", "a");
    F(&r, ":path", "/");
    CHECK(head(&r, false, &ch) > 0);
    CHECK_EQ_STR(out, "GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    h2msg_req_release(&r);
}

TEST(limits)
{
    struct h2msg_req r = {.limit = 100};
    bool ch;
    F(&r, ":method", "GET");
    F(&r, ":authority", "a");
    F(&r, ":path", "/");
    char big[200];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    F(&r, "x-big", big);
    CHECK(r.over);
    CHECK_EQ_INT(head(&r, false, &ch), -1);
    h2msg_req_release(&r);
    CHECK(!r.over);
    CHECK_EQ_INT(r.limit, 100);   /* the limit stays for the next block */
    /* a head that does not fit the output is refused, not cut */
    F(&r, ":method", "GET");
    F(&r, ":authority", "a");
    F(&r, ":path", "/");
    CHECK_EQ_INT(h2msg_req_head(&r, false, out, 10, &ch), -1);
    CHECK(h2msg_req_is_connect(&r) == false);
    h2msg_req_release(&r);
    F(&r, ":method", "CONNECT");
    F(&r, ":authority", "a:443");
    CHECK(h2msg_req_is_connect(&r));
    h2msg_req_release(&r);
}

TEST(empty_block)
{
    /* no pseudo-field at all (nghttp2 resets such a stream; the head is
     * still written without touching storage it does not have) */
    struct h2msg_req r = {0};
    bool ch;
    CHECK(!h2msg_req_is_connect(&r));
    CHECK_EQ_INT(head(&r, false, &ch), 14);
    CHECK_EQ_STR(out, "  HTTP/1.1\r\n\r\n");
    h2msg_req_release(&r);
}

TEST(bucket)
{
    struct h2msg_bucket b = {0};
    uint64_t t = 5000000000ull;
    for (int i = 0; i < 10; i++)
        CHECK(h2msg_bucket_take(&b, t, 10, 100));
    CHECK(!h2msg_bucket_take(&b, t, 10, 100));
    CHECK(!h2msg_bucket_take(&b, t + 9000000ull, 10, 100));   /* 9 ms: not one token yet */
    CHECK(h2msg_bucket_take(&b, t + 10000000ull, 10, 100));   /* 10 ms: one */
    CHECK(!h2msg_bucket_take(&b, t + 10000000ull, 10, 100));
    /* refilled up to the burst, never past it */
    t += 60000000000ull;
    for (int i = 0; i < 10; i++)
        CHECK(h2msg_bucket_take(&b, t, 10, 100));
    CHECK(!h2msg_bucket_take(&b, t, 10, 100));
}

TEST(stream_ids)
{
    struct h2msg_ids ids = {0};
    CHECK_EQ_INT(h2msg_id_check(&ids, 1), H2MSG_ID_NEW);
    CHECK_EQ_INT(h2msg_id_check(&ids, 5), H2MSG_ID_NEW);     /* 3 skipped: allowed */
    CHECK_EQ_INT(h2msg_id_check(&ids, 3), H2MSG_ID_NEVER);   /* lower, never opened */
    CHECK_EQ_INT(h2msg_id_check(&ids, 1), H2MSG_ID_OPENED);  /* trailers, or a closed stream */
    h2msg_id_reset(&ids, 1);
    CHECK_EQ_INT(h2msg_id_check(&ids, 1), H2MSG_ID_RESET);
    CHECK_EQ_INT(h2msg_id_check(&ids, 5), H2MSG_ID_OPENED);
    CHECK_EQ_INT(h2msg_id_check(&ids, 2001), H2MSG_ID_NEW);
    CHECK_EQ_INT(h2msg_id_check(&ids, 1999), H2MSG_ID_NEVER);
    CHECK_EQ_INT(h2msg_id_check(&ids, 5), H2MSG_ID_OLD);     /* too old to know */
    h2msg_id_reset(&ids, 5);                                  /* (ignored: too old) */
    CHECK_EQ_INT(h2msg_id_check(&ids, 2003), H2MSG_ID_NEW);
    CHECK_EQ_INT(h2msg_id_check(&ids, 2001), H2MSG_ID_OPENED);
    /* the ring wraps: a slot reused for a new id forgets the old one */
    struct h2msg_ids w = {0};
    CHECK_EQ_INT(h2msg_id_check(&w, 1), H2MSG_ID_NEW);
    CHECK_EQ_INT(h2msg_id_check(&w, 3), H2MSG_ID_NEW);
    h2msg_id_reset(&w, 3);
    CHECK_EQ_INT(h2msg_id_check(&w, 1027), H2MSG_ID_NEW);   /* 512 above 3: its slot */
    CHECK_EQ_INT(h2msg_id_check(&w, 1027), H2MSG_ID_OPENED); /* not the reset of 3 */
    CHECK_EQ_INT(h2msg_id_check(&w, 3), H2MSG_ID_OLD);
    CHECK_EQ_INT(h2msg_id_check(&w, 1025), H2MSG_ID_NEVER);  /* its bit was cleared */
    CHECK_EQ_INT(h2msg_id_check(&w, 7), H2MSG_ID_NEVER);
}

int main(void)
{
    RUN(get_mapped);
    RUN(host_without_authority);
    RUN(cookies_joined);
    RUN(body_framing);
    RUN(limits);
    RUN(empty_block);
    RUN(bucket);
    RUN(stream_ids);
    return unit_summary("test_h2msg");
}
