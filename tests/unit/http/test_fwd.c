/* test_fwd.c -- rewriting heads as they cross the proxy (src/http/fwd.h): one
 * canonical Content-Length, fields named with '_' dropped, keep-alive for
 * HTTP/1.0 clients. */
#include "unit.h"

#include <string.h>

#include "fwd.h"
#include "http.h"

static struct http_msg M;
static struct http_info I;
static char out[4096];

/* Parses a request and rewrites it; the output's length, or -1. */
static int req(const char *s, bool keep_underscores, unsigned *dropped)
{
    int r = http_parse_request(s, strlen(s), &M, &http_default_limits);
    if (!CHECK_EQ_INT(r, (int)strlen(s)))
        return -1;
    if (!CHECK_EQ_INT(http_request_info(&M, &I), 0))
        return -1;
    struct fwd_req fq = {.m = &M, .info = &I, .client_ip = "192.0.2.1", .proto = "http",
                         .default_host = "up", .keep_underscores = keep_underscores,
                         .dropped = dropped};
    int n = fwd_request_head(out, sizeof out, &fq);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

static int resp(const char *s, bool is_head, bool close, bool keepalive)
{
    int r = http_parse_response(s, strlen(s), &M, &http_default_limits);
    if (!CHECK_EQ_INT(r, (int)strlen(s)))
        return -1;
    if (!CHECK_EQ_INT(http_response_info(&M, is_head, &I), 0))
        return -1;
    struct fwd_resp fr = {.m = &M, .info = &I, .chunked = I.framing == HTTP_BODY_CHUNKED,
                          .close = close, .keepalive = keepalive};
    int n = fwd_response_head(out, sizeof out, &fr);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

TEST(request_length_canonical)
{
    if (req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 010\r\n\r\n", false, NULL) > 0) {
        CHECK_EQ_INT(count(out, "Content-Length: 10\r\n"), 1);
        CHECK_EQ_INT(count(out, "010"), 0);
    }
    if (req("POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 7\r\nA: b\r\nContent-Length: 0007\r\n\r\n",
            false, NULL) > 0) {
        CHECK_EQ_INT(count(out, "Content-Length"), 1);
        CHECK_EQ_INT(count(out, "content-length"), 0);
        CHECK(strstr(out, "Content-Length: 7\r\nA: b\r\n") != NULL);   /* where the first stood */
    }
    if (req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 000\r\n\r\n", false, NULL) > 0)
        CHECK_EQ_INT(count(out, "Content-Length: 0\r\n"), 1);
    if (req("GET / HTTP/1.1\r\nHost: h\r\n\r\n", false, NULL) > 0)
        CHECK_EQ_INT(count(out, "Content-Length"), 0);
}

TEST(request_underscores)
{
    unsigned dropped = 99;
    const char *s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n"
                    "Content_Length: 9\r\nX_Y: 1\r\nX-Y: 2\r\n\r\n";
    if (req(s, false, &dropped) > 0) {
        CHECK_EQ_INT(dropped, 3);
        CHECK_EQ_INT(count(out, "_"), 0);
        CHECK(strstr(out, "X-Y: 2\r\n") != NULL);
        CHECK_EQ_INT(count(out, "Content-Length: 5\r\n"), 1);
    }
    dropped = 99;
    if (req(s, true, &dropped) > 0) {
        CHECK_EQ_INT(dropped, 0);
        CHECK(strstr(out, "Transfer_Encoding: chunked\r\n") != NULL);
        CHECK(strstr(out, "X_Y: 1\r\n") != NULL);
    }
    struct http_field f = {.name = "a_b", .name_len = 3};
    CHECK(fwd_name_has_underscore(&f));
    f.name_len = 1;
    CHECK(!fwd_name_has_underscore(&f));
}

/* A gRPC call's grpc-timeout is replaced by a placeholder the attempt
 * fills; TE: trailers passes only when asked (an HTTP/2 client to an HTTP/2
 * pool); any other TE is hop-by-hop. */
TEST(request_grpc_and_te)
{
    const char *s = "POST /svc/M HTTP/1.1\r\nHost: h\r\ncontent-type: application/grpc\r\n"
                    "grpc-timeout: 5S\r\nte: trailers\r\nContent-Length: 5\r\n\r\n";
    int r = http_parse_request(s, strlen(s), &M, &http_default_limits);
    CHECK_EQ_INT(r, (int)strlen(s));
    CHECK_EQ_INT(http_request_info(&M, &I), 0);
    size_t at = 0;
    struct fwd_req fq = {.m = &M, .info = &I, .client_ip = "192.0.2.1", .proto = "http",
                         .default_host = "up", .grpc = true, .grpc_timeout_at = &at};
    int n = fwd_request_head(out, sizeof out, &fq);
    CHECK(n > 0);
    out[n > 0 ? n : 0] = '\0';
    CHECK_EQ_INT(count(out, "grpc-timeout"), 1);
    CHECK_EQ_INT(count(out, "5S"), 0);
    CHECK(at > 0 && memcmp(out + at - 13, "grpc-timeout:          \r\n", 25) == 0);
    CHECK_EQ_INT(count(out, "te: trailers"), 0);   /* hop-by-hop */
    fq = (struct fwd_req){.m = &M, .info = &I, .client_ip = "192.0.2.1", .proto = "http",
                          .default_host = "up", .grpc = true, .keep_te_trailers = true};
    n = fwd_request_head(out, sizeof out, &fq);
    CHECK(n > 0);
    out[n > 0 ? n : 0] = '\0';
    CHECK_EQ_INT(count(out, "grpc-timeout"), 0);   /* a call without a deadline: none */
    CHECK_EQ_INT(count(out, "te: trailers\r\n"), 1);
    if (req("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\nConnection: TE\r\n\r\n", false, NULL) > 0)
        CHECK_EQ_INT(count(out, "TE"), 0);
}

TEST(response_length_canonical)
{
    if (resp("HTTP/1.1 200 OK\r\nContent-Length: 005\r\nContent-Length: 5\r\n\r\n", false, false,
             false) > 0) {
        CHECK_EQ_INT(count(out, "Content-Length: 5\r\n"), 1);
        CHECK_EQ_INT(count(out, "Content-Length"), 1);
    }
    /* HEAD: the length is announced, not framed, and still canonical */
    if (resp("HTTP/1.1 200 OK\r\nContent-Length: 01234\r\n\r\n", true, false, false) > 0)
        CHECK_EQ_INT(count(out, "Content-Length: 1234\r\n"), 1);
    /* a 1xx head has no Content-Length (RFC 9110 8.6): NULL info drops it */
    const char *s = "HTTP/1.1 103 Early Hints\r\nContent-Length: 3\r\nLink: </a>\r\n\r\n";
    if (CHECK_EQ_INT(http_parse_response(s, strlen(s), &M, &http_default_limits), (int)strlen(s))) {
        struct fwd_resp fr = {.m = &M};
        int n = fwd_response_head(out, sizeof out, &fr);
        if (CHECK(n > 0)) {
            out[n] = '\0';
            CHECK_EQ_INT(count(out, "Content-Length"), 0);
            CHECK(strstr(out, "Link: </a>\r\n") != NULL);
        }
    }
}

TEST(response_connection)
{
    if (resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", false, false, true) > 0)
        CHECK_EQ_INT(count(out, "Connection: keep-alive\r\n"), 1);
    if (resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", false, true, true) > 0) {
        CHECK_EQ_INT(count(out, "Connection: close\r\n"), 1);
        CHECK_EQ_INT(count(out, "keep-alive"), 0);
    }
    if (resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", false, false,
             false) > 0)
        CHECK_EQ_INT(count(out, "Connection"), 0);
}

TEST(response_fields)
{
    static const char text[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close, X-Hop\r\n"
        "Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nX-Hop: 1\r\n"
        "X-Empty:\r\nContent-Length: 005\r\nVia: 1.0 a\r\nContent-Length: 5\r\nVia: 1.1 b\r\n\r\n";
    static struct http_msg m;
    struct http_info info = {.has_length = true, .content_length = 5};
    CHECK(http_parse_response(text, sizeof text - 1, &m, &http_default_limits) > 0);
    struct fwd_resp fr = {.m = &m, .info = &info};
    struct fwd_field f[16];
    char scratch[256];
    int k = fwd_response_fields(&fr, f, 16, scratch, sizeof scratch);
    CHECK_EQ_INT(k, 4);
    if (k != 4)
        return;
    CHECK_EQ_MEM(f[0].name, f[0].name_len, "content-type");
    CHECK_EQ_MEM(f[0].value, f[0].value_len, "text/plain");
    CHECK_EQ_MEM(f[1].name, f[1].name_len, "x-empty");
    CHECK_EQ_INT(f[1].value_len, 0);
    CHECK_EQ_MEM(f[2].name, f[2].name_len, "content-length");
    CHECK_EQ_MEM(f[2].value, f[2].value_len, "5");   /* once, canonical */
    CHECK_EQ_MEM(f[3].name, f[3].name_len, "via");
    CHECK_EQ_MEM(f[3].value, f[3].value_len, "1.0 a, 1.1 b, 1.1 hourglass");
    /* too small: refused, never cut */
    CHECK_EQ_INT(fwd_response_fields(&fr, f, 2, scratch, sizeof scratch), -1);
    CHECK_EQ_INT(fwd_response_fields(&fr, f, 16, scratch, 20), -1);
    /* a 1xx (info NULL) has no Content-Length */
    fr.info = NULL;
    CHECK_EQ_INT(fwd_response_fields(&fr, f, 16, scratch, sizeof scratch), 3);
}

/* The request's ID replaces every X-Request-Id on the way up and down;
 * Server-Timing is added after the upstream's own. */
TEST(request_id_and_server_timing)
{
    static const char rq[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: theirs\r\n"
                             "x-request-id: again\r\ntraceparent: 00-x\r\n\r\n";
    CHECK(http_parse_request(rq, sizeof rq - 1, &M, &http_default_limits) > 0);
    CHECK_EQ_INT(http_request_info(&M, &I), 0);
    struct fwd_req fq = {.m = &M, .info = &I, .client_ip = "192.0.2.1", .proto = "http",
                         .default_host = "up", .request_id = "ours"};
    int n = fwd_request_head(out, sizeof out, &fq);
    if (CHECK(n > 0)) {
        out[n] = '\0';
        CHECK_EQ_INT(count(out, "X-Request-Id: ours\r\n"), 1);
        CHECK(strstr(out, "theirs") == NULL && strstr(out, "again") == NULL);
        CHECK(strstr(out, "traceparent: 00-x\r\n") != NULL);   /* untouched */
    }
    fq.request_id = NULL;   /* none given: the client's pass */
    n = fwd_request_head(out, sizeof out, &fq);
    if (CHECK(n > 0)) {
        out[n] = '\0';
        CHECK(strstr(out, "X-Request-Id: theirs\r\n") != NULL);
    }

    static const char text[] = "HTTP/1.1 200 OK\r\nX-Request-Id: up\r\nServer-Timing: db;dur=2\r\n"
                               "Content-Length: 0\r\n\r\n";
    static struct http_msg m;
    struct http_info info = {.has_length = true};
    CHECK(http_parse_response(text, sizeof text - 1, &m, &http_default_limits) > 0);
    struct fwd_resp fr = {.m = &m, .info = &info, .request_id = "ours",
                          .server_timing = "total;dur=1.0"};
    n = fwd_response_head(out, sizeof out, &fr);
    if (CHECK(n > 0)) {
        out[n] = '\0';
        CHECK_EQ_INT(count(out, "X-Request-Id"), 1);
        CHECK(strstr(out, "X-Request-Id: ours\r\n") != NULL);
        CHECK(strstr(out, "Server-Timing: db;dur=2\r\n") != NULL);
        CHECK(strstr(out, "Server-Timing: total;dur=1.0\r\n") != NULL);
    }
    struct fwd_field f[16];
    char scratch[256];
    int k = fwd_response_fields(&fr, f, 16, scratch, sizeof scratch);
    if (CHECK_EQ_INT(k, 5)) {   /* server-timing, content-length, via, ours x2 */
        CHECK_EQ_MEM(f[0].name, f[0].name_len, "server-timing");
        CHECK_EQ_MEM(f[3].name, f[3].name_len, "x-request-id");
        CHECK_EQ_MEM(f[3].value, f[3].value_len, "ours");
        CHECK_EQ_MEM(f[4].name, f[4].name_len, "server-timing");
        CHECK_EQ_MEM(f[4].value, f[4].value_len, "total;dur=1.0");
    }
    CHECK_EQ_INT(fwd_response_fields(&fr, f, 4, scratch, sizeof scratch), -1);
}

int main(void)
{
    RUN(request_length_canonical);
    RUN(request_underscores);
    RUN(request_grpc_and_te);
    RUN(response_length_canonical);
    RUN(response_connection);
    RUN(response_fields);
    RUN(request_id_and_server_timing);
    return unit_summary("test_fwd");
}
