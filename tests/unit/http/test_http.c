/* test_http.c -- the HTTP/1.1 head parsers, framing checks and the chunked
 * decoder (src/http/http.h).
 *
 * Every input is placed right before a PROT_NONE page (guarded()), so a parser
 * that reads one byte past the length it was given crashes the test instead
 * of passing by luck. */
#define _GNU_SOURCE
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http.h"

/* ---------------------------------------------------------------- helpers */

#define GUARD_SLOTS 64
static struct {
    char *base;
    size_t len;
} guard_maps[GUARD_SLOTS];
static unsigned guard_next;

/* Copies s[0..n) so that its last byte is the last readable byte before an
 * inaccessible page. The copy is writable (the chunked decoder moves bytes in
 * place) and stays valid for the next GUARD_SLOTS - 1 calls. */
static char *guarded(const char *s, size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = n ? (n + pg - 1) / pg : 1;
    size_t total = (data_pages + 1) * pg;
    unsigned slot = guard_next++ % GUARD_SLOTS;

    if (guard_maps[slot].base)
        munmap(guard_maps[slot].base, guard_maps[slot].len);
    char *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (mprotect(base + data_pages * pg, pg, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
    guard_maps[slot].base = base;
    guard_maps[slot].len = total;
    char *p = base + data_pages * pg - n;
    if (n)
        memcpy(p, s, n);
    return p;
}

/* A string builder for inputs too long to write literally. */
static char big[1 << 17];
static size_t big_n;

static void big_reset(void) { big_n = 0; big[0] = 0; }
static void big_add(const char *s)
{
    size_t n = strlen(s);
    if (big_n + n >= sizeof big)
        abort();
    memcpy(big + big_n, s, n + 1);
    big_n += n;
}
static void big_rep(char c, size_t k)
{
    if (big_n + k >= sizeof big)
        abort();
    memset(big + big_n, c, k);
    big_n += k;
    big[big_n] = 0;
}

static struct http_msg M;
static const struct http_limits *DEF = &http_default_limits;

static int req_n(const char *s, size_t n, const struct http_limits *lim)
{
    memset(&M, 0xA5, sizeof M); /* no stale results from the previous call */
    return http_parse_request(guarded(s, n), n, &M, lim);
}
static int req(const char *s) { return req_n(s, strlen(s), DEF); }

static int resp_n(const char *s, size_t n, const struct http_limits *lim)
{
    memset(&M, 0xA5, sizeof M);
    return http_parse_response(guarded(s, n), n, &M, lim);
}
static int resp(const char *s) { return resp_n(s, strlen(s), DEF); }

/* Names the input of the check that just failed. */
static void note_input(bool ok, const char *s, size_t n)
{
    if (!ok) {
        fputs("    input: ", stderr);
        unit_print_bytes(s, n);
        fputc('\n', stderr);
    }
}

/* A request that must be refused with exactly -status. */
#define REQ_REFUSED(s, status) note_input(CHECK_EQ_INT(req(s), -(status)), (s), strlen(s))
#define RESP_REFUSED(s) note_input(CHECK_EQ_INT(resp(s), -502), (s), strlen(s))
#define REQ_REFUSED_N(s, n, status) note_input(CHECK_EQ_INT(req_n((s), (n), DEF), -(status)), (s), (n))

/* Every proper prefix of s must give HTTP_INCOMPLETE and s itself `want`. */
static void every_prefix(bool response, const char *s, size_t n, int want)
{
    for (size_t k = 0; k < n; k++) {
        int r = response ? resp_n(s, k, DEF) : req_n(s, k, DEF);
        if (!CHECK_EQ_INT(r, HTTP_INCOMPLETE)) {
            fprintf(stderr, "    at prefix of %zu bytes of ", k);
            unit_print_bytes(s, n);
            fputc('\n', stderr);
            return;
        }
    }
    int r = response ? resp_n(s, n, DEF) : req_n(s, n, DEF);
    note_input(CHECK_EQ_INT(r, want), s, n);
}

/* Every prefix of a bad request gives HTTP_INCOMPLETE or -status, never a
 * head; the whole gives -status. */
static void every_prefix_refused(const char *s, int status)
{
    size_t n = strlen(s);
    for (size_t k = 0; k <= n; k++) {
        int r = req_n(s, k, DEF);
        if (!CHECK(r == HTTP_INCOMPLETE || r == -status)) {
            fprintf(stderr, "    got %d at prefix of %zu bytes of ", r, k);
            unit_print_bytes(s, n);
            fputc('\n', stderr);
            return;
        }
    }
    note_input(CHECK_EQ_INT(req_n(s, n, DEF), -status), s, n);
}

/* ------------------------------------------------------- request parsing */

TEST(default_limits_sane)
{
    CHECK(DEF->max_line >= 64);
    CHECK(DEF->max_head >= DEF->max_line);
    CHECK(DEF->max_fields >= 1);
    CHECK(DEF->max_fields <= HTTP_MAX_FIELDS_CAP);
}

static const char GET1[] = "GET /index.html?q=1 HTTP/1.1\r\n"
                           "Host: example.com\r\n"
                           "User-Agent: t/1\r\n"
                           "Accept: */*\r\n"
                           "\r\n";

TEST(get_with_fields)
{
    size_t n = strlen(GET1);
    if (!CHECK_EQ_INT(req(GET1), (int)n))
        return;
    CHECK_EQ_MEM(M.method, M.method_len, "GET");
    CHECK_EQ_MEM(M.target, M.target_len, "/index.html?q=1");
    CHECK_EQ_INT(M.minor, 1);
    CHECK_EQ_INT(M.head_len, n);
    if (!CHECK_EQ_INT(M.nfields, 3))
        return;
    CHECK_EQ_MEM(M.fields[0].name, M.fields[0].name_len, "Host");
    CHECK_EQ_MEM(M.fields[0].value, M.fields[0].value_len, "example.com");
    CHECK_EQ_MEM(M.fields[1].name, M.fields[1].name_len, "User-Agent");
    CHECK_EQ_MEM(M.fields[1].value, M.fields[1].value_len, "t/1");
    CHECK_EQ_MEM(M.fields[2].name, M.fields[2].name_len, "Accept");
    CHECK_EQ_MEM(M.fields[2].value, M.fields[2].value_len, "*/*");
}

TEST(no_fields)
{
    const char *s = "GET / HTTP/1.0\r\n\r\n";
    CHECK_EQ_INT(req(s), (int)strlen(s));
    CHECK_EQ_INT(M.nfields, 0);
    CHECK_EQ_INT(M.minor, 0);
}

TEST(pipelined_two_requests)
{
    const char *a = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    const char *b = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    big_reset();
    big_add(a);
    big_add(b);
    if (!CHECK_EQ_INT(req_n(big, big_n, DEF), (int)strlen(a)))
        return;
    CHECK_EQ_INT(M.head_len, strlen(a));
    CHECK_EQ_MEM(M.target, M.target_len, "/a");
    CHECK_EQ_INT(M.nfields, 1);
    /* and the second, parsed from where the first ended */
    CHECK_EQ_INT(req_n(big + strlen(a), strlen(b), DEF), (int)strlen(b));
    CHECK_EQ_MEM(M.method, M.method_len, "POST");
}

TEST(leading_crlf_skipped)
{
    const char *s = "\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    /* the return value is what the caller consumes: the skipped lines too */
    if (!CHECK_EQ_INT(req(s), (int)strlen(s)))
        return;
    CHECK_EQ_MEM(M.method, M.method_len, "GET");
    CHECK_EQ_MEM(M.target, M.target_len, "/x");
    CHECK_EQ_INT(M.nfields, 1);
    /* only empty lines so far: wait for more */
    CHECK_EQ_INT(req("\r\n"), HTTP_INCOMPLETE);
    CHECK_EQ_INT(req("\r\n\r\n\r\n"), HTTP_INCOMPLETE);
}

TEST(http10)
{
    const char *s = "GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n";
    CHECK_EQ_INT(req(s), (int)strlen(s));
    CHECK_EQ_INT(M.minor, 0);
}

TEST(absolute_form_target)
{
    const char *s = "GET http://example.com:8080/p?q=1#f HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
    CHECK_EQ_INT(req(s), (int)strlen(s));
    CHECK_EQ_MEM(M.target, M.target_len, "http://example.com:8080/p?q=1#f");
}

TEST(other_target_forms)
{
    const char *s = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    CHECK_EQ_INT(req(s), (int)strlen(s));
    CHECK_EQ_MEM(M.method, M.method_len, "CONNECT");
    CHECK_EQ_MEM(M.target, M.target_len, "example.com:443");
    s = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK_EQ_INT(req(s), (int)strlen(s));
    CHECK_EQ_MEM(M.target, M.target_len, "*");
}

TEST(ows_trimmed)
{
    const char *s = "GET / HTTP/1.1\r\n"
                    "Host:example.com\r\n"
                    "X-A:   a b  \t \r\n"
                    "X-B:\tv\t\r\n"
                    "X-C: in\tside\r\n"
                    "\r\n";
    if (!CHECK_EQ_INT(req(s), (int)strlen(s)))
        return;
    if (!CHECK_EQ_INT(M.nfields, 4))
        return;
    CHECK_EQ_MEM(M.fields[0].value, M.fields[0].value_len, "example.com");
    CHECK_EQ_MEM(M.fields[1].value, M.fields[1].value_len, "a b");
    CHECK_EQ_MEM(M.fields[2].value, M.fields[2].value_len, "v");
    /* HTAB inside a value is field-vchar territory (RFC 9110 5.5): kept */
    CHECK_EQ_MEM(M.fields[3].value, M.fields[3].value_len, "in\tside");
}

TEST(empty_value)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Blank:   \r\n\r\n";
    if (!CHECK_EQ_INT(req(s), (int)strlen(s)))
        return;
    if (!CHECK_EQ_INT(M.nfields, 3))
        return;
    CHECK_EQ_MEM(M.fields[1].name, M.fields[1].name_len, "X-Empty");
    CHECK_EQ_INT(M.fields[1].value_len, 0);
    CHECK_EQ_MEM(M.fields[2].name, M.fields[2].name_len, "X-Blank");
    CHECK_EQ_INT(M.fields[2].value_len, 0);
}

TEST(tchars_in_names_and_method)
{
    const char *s = "M-!#$%&'*+.^_`|~9 / HTTP/1.1\r\n"
                    "Host: h\r\n"
                    "x!#$%&'*+-.^_`|~09Az: 1\r\n"
                    "\r\n";
    CHECK_EQ_INT(req(s), (int)strlen(s));
    CHECK_EQ_MEM(M.method, M.method_len, "M-!#$%&'*+.^_`|~9");
    CHECK_EQ_MEM(M.fields[1].name, M.fields[1].name_len, "x!#$%&'*+-.^_`|~09Az");
}

TEST(incremental_every_split)
{
    every_prefix(false, GET1, strlen(GET1), (int)strlen(GET1));
    const char *lead = "\r\n\r\nPUT /u HTTP/1.0\r\nContent-Length: 3\r\nX:\r\n\r\n";
    every_prefix(false, lead, strlen(lead), (int)strlen(lead));
    /* a complete head followed by a partial second one */
    big_reset();
    big_add(GET1);
    big_add("GET /2 HTT");
    for (size_t k = strlen(GET1); k <= big_n; k++)
        CHECK_EQ_INT(req_n(big, k, DEF), (int)strlen(GET1));
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\n";
    every_prefix(true, r, strlen(r), (int)strlen(r));
}

/* --------------------------------------------------------- request refusals */

TEST(bare_lf_refused)
{
    REQ_REFUSED("GET / HTTP/1.1\nHost: h\n\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: a\nY: b\r\n\r\n", 400);
    every_prefix_refused("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400);
}

TEST(obs_fold_refused)
{
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400);
    /* a fold right after the request line */
    REQ_REFUSED("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
    every_prefix_refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400);
}

TEST(space_before_colon_refused)
{
    REQ_REFUSED("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n", 400);
}

TEST(bad_name_chars_refused)
{
    REQ_REFUSED("GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX@Y: 1\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX\"Y: 1\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX/Y: 1\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX\x80Y: 1\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\n\xff: 1\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX\x7fY: 1\r\n\r\n", 400);
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0Y: 1\r\n\r\n";
    REQ_REFUSED_N(nul, sizeof nul - 1, 400);
}

TEST(bad_value_bytes_refused)
{
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    REQ_REFUSED_N(nul, sizeof nul - 1, 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[0m\r\n\r\n", 400);
}

TEST(empty_name_refused)
{
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\n:\r\n\r\n", 400);
}

TEST(no_colon_refused)
{
    REQ_REFUSED("GET / HTTP/1.1\r\nHost h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400);
}

TEST(bad_method_refused)
{
    REQ_REFUSED("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GE@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("G\x80T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(bad_request_line_refused)
{
    REQ_REFUSED("GET HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET /\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(version_unsupported_505)
{
    REQ_REFUSED("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    REQ_REFUSED("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
    REQ_REFUSED("GET / HTTP/1.9\r\nHost: h\r\n\r\n", 505);
    REQ_REFUSED("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505);
}

TEST(version_garbage_400)
{
    REQ_REFUSED("GET / HTTP/x.y\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / HTTP/\r\nHost: h\r\n\r\n", 400);
    REQ_REFUSED("GET / FOO\r\nHost: h\r\n\r\n", 400);
}

static const struct http_limits SMALL = {.max_line = 64, .max_head = 512, .max_fields = 4};

TEST(request_line_limit_414)
{
    big_reset();
    big_add("GET /");
    big_rep('a', 40);
    big_add(" HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_EQ_INT(req_n(big, big_n, &SMALL), (int)big_n); /* under the limit */

    big_reset();
    big_add("GET /");
    big_rep('a', 100);
    big_add(" HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_EQ_INT(req_n(big, big_n, &SMALL), -414);

    /* incomplete: no CRLF yet, but already over the limit */
    big_reset();
    big_add("GET /");
    big_rep('a', 100);
    CHECK_EQ_INT(req_n(big, big_n, &SMALL), -414);

    /* the same with the default limits */
    big_reset();
    big_add("GET /");
    big_rep('a', DEF->max_line + 10);
    CHECK_EQ_INT(req_n(big, big_n, DEF), -414);
    big_add(" HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_EQ_INT(req_n(big, big_n, DEF), -414);
}

TEST(head_limit_431)
{
    big_reset();
    big_add("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    big_rep('v', 600);
    big_add("\r\n\r\n");
    CHECK_EQ_INT(req_n(big, big_n, &SMALL), -431);
    /* incomplete and already past max_head: can never fit */
    big_reset();
    big_add("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    big_rep('v', 600);
    CHECK_EQ_INT(req_n(big, big_n, &SMALL), -431);
    /* many ordinary fields over the default head limit */
    big_reset();
    big_add("GET / HTTP/1.1\r\nHost: h\r\n");
    while (big_n <= DEF->max_head + 10) {
        big_add("X-Filler: ");
        big_rep('f', 1000 < DEF->max_line ? 1000 : DEF->max_line / 2);
        big_add("\r\n");
    }
    big_add("\r\n");
    CHECK_EQ_INT(req_n(big, big_n, DEF), -431);
}

TEST(field_count_limit_431)
{
    const char *four = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    const char *five = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    CHECK_EQ_INT(req_n(four, strlen(four), &SMALL), (int)strlen(four));
    CHECK_EQ_INT(M.nfields, 4);
    CHECK_EQ_INT(req_n(five, strlen(five), &SMALL), -431);

    /* default limits: max_fields fields pass, one more is refused */
    big_reset();
    big_add("GET / HTTP/1.1\r\n");
    for (uint32_t i = 0; i < DEF->max_fields; i++)
        big_add("a: b\r\n");
    big_add("\r\n");
    if (big_n <= DEF->max_head) {
        CHECK_EQ_INT(req_n(big, big_n, DEF), (int)big_n);
        CHECK_EQ_INT(M.nfields, DEF->max_fields);
    }
    big_n -= 2;
    big_add("a: b\r\n\r\n");
    CHECK_EQ_INT(req_n(big, big_n, DEF), -431);
}

/* -------------------------------------------------------------- responses */

TEST(response_200)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    CHECK_EQ_INT(resp(s), (int)strlen(s) - 5);
    CHECK_EQ_INT(M.status, 200);
    CHECK_EQ_MEM(M.reason, M.reason_len, "OK");
    CHECK_EQ_INT(M.minor, 1);
    CHECK_EQ_INT(M.nfields, 1);
    CHECK_EQ_INT(M.head_len, strlen(s) - 5);
    s = "HTTP/1.0 404 Not Found Here\r\n\r\n";
    CHECK_EQ_INT(resp(s), (int)strlen(s));
    CHECK_EQ_INT(M.status, 404);
    CHECK_EQ_INT(M.minor, 0);
    CHECK_EQ_MEM(M.reason, M.reason_len, "Not Found Here");
}

TEST(response_empty_reason)
{
    const char *s = "HTTP/1.1 204 \r\nX: y\r\n\r\n";
    CHECK_EQ_INT(resp(s), (int)strlen(s));
    CHECK_EQ_INT(M.status, 204);
    CHECK_EQ_INT(M.reason_len, 0);
    s = "HTTP/1.1 204\r\nX: y\r\n\r\n";
    CHECK_EQ_INT(resp(s), (int)strlen(s));
    CHECK_EQ_INT(M.status, 204);
    CHECK_EQ_INT(M.reason_len, 0);
}

TEST(response_refused_502)
{
    RESP_REFUSED("HTTP/1.1 20 OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 2000 OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 200OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 abc OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 2x0 OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 -20 OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1  200 OK\r\n\r\n");
    RESP_REFUSED("HTTP/2.0 200 OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.x 200 OK\r\n\r\n");
    RESP_REFUSED("HTXP/1.1 200 OK\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 200 OK\nX: y\n\n");
    RESP_REFUSED("HTTP/1.1 200 OK\r\nX : y\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 200 OK\r\nX(: a\r\n\r\n");
    RESP_REFUSED("HTTP/1.1 200 O\x01K\r\n\r\n");
}

/* A response over the limits is -431, told apart from a malformed one, so
 * that the proxy can log "response head too large"; the same whether the
 * bytes are all there or only the first part of them. */
TEST(response_limits_431)
{
    big_reset();
    big_add("HTTP/1.1 200 ");
    big_rep('r', 100);
    big_add("\r\n\r\n");
    CHECK_EQ_INT(resp_n(big, big_n, &SMALL), -431);
    CHECK_EQ_INT(resp_n(big, 60, &SMALL), HTTP_INCOMPLETE);
    CHECK_EQ_INT(resp_n(big, 70, &SMALL), -431);   /* status line still open */
    const char *five = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
    CHECK_EQ_INT(resp_n(five, strlen(five), &SMALL), -431);
    big_reset();
    big_add("HTTP/1.1 200 OK\r\nX: ");
    big_rep('v', 600);
    big_add("\r\n\r\n");
    CHECK_EQ_INT(resp_n(big, big_n, &SMALL), -431);
    CHECK_EQ_INT(resp_n(big, 520, &SMALL), -431);   /* incomplete, already too long */
    /* a malformed head within the limits stays -502 */
    const char *bad = "HTTP/1.1 200 OK\r\nX : y\r\n\r\n";
    CHECK_EQ_INT(resp_n(bad, strlen(bad), &SMALL), -502);
}

/* ------------------------------------------------------ http_request_info */

static struct http_info I;

/* Parses s (which must parse) and returns http_request_info's verdict. */
static int rinfo(const char *s)
{
    int r = req(s);
    if (!CHECK_EQ_INT(r, (int)strlen(s))) {
        note_input(false, s, strlen(s));
        return 12345;
    }
    memset(&I, 0, sizeof I);
    return http_request_info(&M, &I);
}

#define RINFO_REFUSED(s, status) note_input(CHECK_EQ_INT(rinfo(s), -(status)), (s), strlen(s))

TEST(rinfo_no_body)
{
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), 0)) {
        CHECK_EQ_INT(I.framing, HTTP_BODY_NONE);
        CHECK(I.has_host);
        CHECK_EQ_MEM(I.host, I.host_len, "example.com");
        CHECK(!I.conn_close);
        CHECK(!I.conn_keepalive);
        CHECK(!I.expect_continue);
    }
}

TEST(rinfo_content_length)
{
    if (CHECK_EQ_INT(rinfo("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"), 0)) {
        CHECK_EQ_INT(I.framing, HTTP_BODY_LENGTH);
        CHECK_EQ_U64(I.length, 5);
    }
    if (CHECK_EQ_INT(rinfo("POST / HTTP/1.1\r\nHost: h\r\ncontent-length:  1234567890123 \r\n\r\n"), 0)) {
        CHECK_EQ_INT(I.framing, HTTP_BODY_LENGTH);
        CHECK_EQ_U64(I.length, 1234567890123ull);
    }
}

TEST(rinfo_cl_and_te_refused)
{
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
}

TEST(rinfo_two_cl)
{
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    /* identical duplicates (RFC 9110 8.6 allows it) are one value, which
     * fwd_request_head forwards as one canonical line; responses alike */
    int r = rinfo("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n");
    if (CHECK_EQ_INT(r, 0)) {
        CHECK_EQ_INT(I.framing, HTTP_BODY_LENGTH);
        CHECK_EQ_U64(I.length, 5);
        CHECK(I.has_length);
        CHECK_EQ_U64(I.content_length, 5);
    }
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400);
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,5\r\n\r\n", 400);
}

TEST(rinfo_bad_cl)
{
    static const char *bad[] = {"+5", "-5", "0x5", "5.0", "1e3", " ", "", "5 5", "five", "99999999999999999999",
                                "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char s[256];
        snprintf(s, sizeof s, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %s\r\n\r\n", bad[i]);
        RINFO_REFUSED(s, 400);
    }
}

TEST(rinfo_chunked)
{
    if (CHECK_EQ_INT(rinfo("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), 0))
        CHECK_EQ_INT(I.framing, HTTP_BODY_CHUNKED);
    /* transfer-coding names are case-insensitive (RFC 9112 7) */
    if (CHECK_EQ_INT(rinfo("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: Chunked\r\n\r\n"), 0))
        CHECK_EQ_INT(I.framing, HTTP_BODY_CHUNKED);
}

TEST(rinfo_te_refused)
{
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    static const char *bad[] = {"chunked, chunked", "chunkedx", "\"chunked\"", ",chunked", "chunked,", "gzip",
                                "chunked, gzip", "chunked;q=1", "x-chunked", "chunk ed"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char s[256];
        snprintf(s, sizeof s, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n", bad[i]);
        int r = rinfo(s);
        note_input(CHECK(r == -400 || r == -501), s, strlen(s));
        if (r != -400 && r != -501)
            fprintf(stderr, "    got %d\n", r);
    }
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    RINFO_REFUSED("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    RINFO_REFUSED("POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

TEST(rinfo_host)
{
    RINFO_REFUSED("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
    RINFO_REFUSED("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    RINFO_REFUSED("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400);
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.0\r\n\r\n"), 0)) {
        CHECK(!I.has_host);
        CHECK_EQ_INT(I.framing, HTTP_BODY_NONE);
    }
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.0\r\nHOST: old.example\r\n\r\n"), 0)) {
        CHECK(I.has_host);
        CHECK_EQ_MEM(I.host, I.host_len, "old.example");
    }
}

TEST(rinfo_connection)
{
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), 0))
        CHECK(I.conn_close);
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Close\r\n\r\n"), 0))
        CHECK(I.conn_close);
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"), 0)) {
        CHECK(!I.conn_close);
        CHECK(I.conn_keepalive);
    }
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.0\r\n\r\n"), 0))
        CHECK(I.conn_close);
    if (CHECK_EQ_INT(rinfo("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0)) {
        CHECK(!I.conn_close);
        CHECK(I.conn_keepalive);
    }
}

TEST(rinfo_expect)
{
    if (CHECK_EQ_INT(rinfo("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"), 0)) {
        CHECK(I.expect_continue);
        CHECK_EQ_INT(I.framing, HTTP_BODY_LENGTH);
        CHECK_EQ_U64(I.length, 3);
    }
    if (CHECK_EQ_INT(rinfo("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"), 0))
        CHECK(!I.expect_continue);
}

/* ----------------------------------------------------- http_response_info */

static int sinfo(const char *s, bool is_head)
{
    int r = resp(s);
    if (!CHECK_EQ_INT(r, (int)strlen(s))) {
        note_input(false, s, strlen(s));
        return 12345;
    }
    memset(&I, 0, sizeof I);
    return http_response_info(&M, is_head, &I);
}

TEST(sinfo_framing)
{
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true), 0))
        CHECK_EQ_INT(I.framing, HTTP_BODY_NONE);
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true), 0))
        CHECK_EQ_INT(I.framing, HTTP_BODY_NONE);
    static const char *nobody[] = {"HTTP/1.1 204 No Content\r\n\r\n",
                                   "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
                                   "HTTP/1.1 100 Continue\r\n\r\n",
                                   "HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"};
    for (size_t i = 0; i < sizeof nobody / sizeof *nobody; i++) {
        note_input(CHECK_EQ_INT(sinfo(nobody[i], false), 0), nobody[i], strlen(nobody[i]));
        note_input(CHECK_EQ_INT(I.framing, HTTP_BODY_NONE), nobody[i], strlen(nobody[i]));
    }
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false), 0)) {
        CHECK_EQ_INT(I.framing, HTTP_BODY_LENGTH);
        CHECK_EQ_U64(I.length, 10);
    }
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false), 0))
        CHECK_EQ_INT(I.framing, HTTP_BODY_CHUNKED);
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nServer: s\r\n\r\n", false), 0))
        CHECK_EQ_INT(I.framing, HTTP_BODY_CLOSE);
    if (CHECK_EQ_INT(sinfo("HTTP/1.0 200 OK\r\n\r\n", false), 0))
        CHECK_EQ_INT(I.framing, HTTP_BODY_CLOSE);
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false), 0))
        CHECK(I.conn_close);
}

/* Identical Content-Length lines count as one value, as for requests; the
 * value is kept whatever the framing (a HEAD response announces its length). */
TEST(sinfo_content_length_kept)
{
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n",
                           false), 0)) {
        CHECK_EQ_INT(I.framing, HTTP_BODY_LENGTH);
        CHECK(I.has_length);
        CHECK_EQ_U64(I.content_length, 5);
    }
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true), 0)) {
        CHECK_EQ_INT(I.framing, HTTP_BODY_NONE);
        CHECK_EQ_U64(I.length, 0);
        CHECK(I.has_length);
        CHECK_EQ_U64(I.content_length, 1234);
    }
    if (CHECK_EQ_INT(sinfo("HTTP/1.1 200 OK\r\nServer: s\r\n\r\n", false), 0))
        CHECK(!I.has_length);
}

TEST(sinfo_bad_cl_502)
{
    static const char *bad[] = {"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                                "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        note_input(CHECK_EQ_INT(sinfo(bad[i], false), -502), bad[i], strlen(bad[i]));
}

/* ------------------------------------------------------- chunked decoder */

static const char CH1[] = "5\r\nhello\r\n0\r\n\r\n";
static const char CH3[] = "5\r\nhello\r\n1\r\n,\r\nA\r\n world! 12\r\n0\r\n\r\n";

/* Feeds s in one call (scan mode). */
static ssize_t chunk_once(const char *s, size_t n, struct http_chunked *c)
{
    memset(c, 0, sizeof *c);
    return http_chunked_feed(c, guarded(s, n), n, NULL);
}

/* Feeds s in pieces of `step` bytes (0: random sizes), decoding when `out` is
 * non-NULL. Returns the total consumed, or the first negative result. */
static ssize_t chunk_pieces(const char *s, size_t n, size_t step, char *out, size_t *outn, bool *done)
{
    struct http_chunked c = {0};
    char *p = guarded(s, n);
    size_t pos = 0, o = 0;
    unsigned seed = 12345;
    *done = false;
    while (pos < n) {
        size_t k = step;
        if (!k) {
            seed = seed * 1103515245u + 12345u;
            k = 1 + (seed >> 16) % 7;
        }
        if (k > n - pos)
            k = n - pos;
        size_t dl = 99999;
        ssize_t r = http_chunked_feed(&c, p + pos, k, out ? &dl : NULL);
        if (r < 0)
            return r;
        if ((size_t)r > k)
            return -9999;
        if (out) {
            if (dl > (size_t)r)
                return -9998;
            memcpy(out + o, p + pos, dl);
            o += dl;
        }
        pos += (size_t)r;
        if (http_chunked_done(&c)) {
            *done = true;
            break;
        }
        if ((size_t)r < k)
            return -9997; /* stopped early without being done */
    }
    if (outn)
        *outn = o;
    return (ssize_t)pos;
}

TEST(chunked_one_piece)
{
    struct http_chunked c;
    CHECK_EQ_INT(chunk_once(CH1, strlen(CH1), &c), (long long)strlen(CH1));
    CHECK(http_chunked_done(&c));
    CHECK_EQ_INT(chunk_once(CH3, strlen(CH3), &c), (long long)strlen(CH3));
    CHECK(http_chunked_done(&c));
    const char *empty = "0\r\n\r\n";
    CHECK_EQ_INT(chunk_once(empty, strlen(empty), &c), 5);
    CHECK(http_chunked_done(&c));
    const char *hex = "a\r\n0123456789\r\nF\r\n0123456789abcde\r\n0\r\n\r\n";
    CHECK_EQ_INT(chunk_once(hex, strlen(hex), &c), (long long)strlen(hex));
    CHECK(http_chunked_done(&c));
}

TEST(chunked_fresh_not_done)
{
    struct http_chunked c = {0};
    CHECK(!http_chunked_done(&c));
    char *p = guarded("5\r\nhel", 6);
    CHECK_EQ_INT(http_chunked_feed(&c, p, 6, NULL), 6);
    CHECK(!http_chunked_done(&c));
}

TEST(chunked_byte_by_byte)
{
    const char *s = CH3;
    size_t n = strlen(s);
    struct http_chunked c = {0};
    char *p = guarded(s, n);
    for (size_t i = 0; i < n; i++) {
        ssize_t r = http_chunked_feed(&c, p + i, 1, NULL);
        if (!CHECK_EQ_INT(r, 1)) {
            fprintf(stderr, "    at byte %zu\n", i);
            return;
        }
        if (!CHECK_EQ_INT(http_chunked_done(&c), i == n - 1)) {
            fprintf(stderr, "    at byte %zu\n", i);
            return;
        }
    }
    bool done;
    CHECK_EQ_INT(chunk_pieces(s, n, 0, NULL, NULL, &done), (long long)n);
    CHECK(done);
    CHECK_EQ_INT(chunk_pieces(s, n, 2, NULL, NULL, &done), (long long)n);
    CHECK(done);
}

TEST(chunked_extensions)
{
    const char *s = "5;foo=bar\r\nhello\r\n6;a;b=\"q;\\\"x\"\r\n world\r\n0;last=1\r\n\r\n";
    struct http_chunked c;
    CHECK_EQ_INT(chunk_once(s, strlen(s), &c), (long long)strlen(s));
    CHECK(http_chunked_done(&c));
    char out[64];
    size_t on = 0;
    bool done;
    CHECK_EQ_INT(chunk_pieces(s, strlen(s), 1, out, &on, &done), (long long)strlen(s));
    CHECK(done);
    CHECK_EQ_MEM(out, on, "hello world");
    /* extensions too long */
    big_reset();
    big_add("1;x=");
    big_rep('e', HTTP_CHUNK_EXT_MAX + 10);
    big_add("\r\nx\r\n0\r\n\r\n");
    CHECK_EQ_INT(chunk_once(big, big_n, &c), -400);
}

TEST(chunked_trailers)
{
    const char *s = "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nY: 2\r\n\r\n";
    struct http_chunked c;
    CHECK_EQ_INT(chunk_once(s, strlen(s), &c), (long long)strlen(s));
    CHECK(http_chunked_done(&c));
    char out[64];
    size_t on = 0;
    bool done;
    CHECK_EQ_INT(chunk_pieces(s, strlen(s), 1, out, &on, &done), (long long)strlen(s));
    CHECK(done);
    CHECK_EQ_MEM(out, on, "hello"); /* trailers dropped when decoding */
    CHECK_EQ_INT(chunk_pieces(s, strlen(s), 0, out, &on, &done), (long long)strlen(s));
    CHECK_EQ_MEM(out, on, "hello");
    /* trailer section too long */
    big_reset();
    big_add("0\r\nX-Long: ");
    big_rep('t', HTTP_TRAILER_MAX + 10);
    big_add("\r\n\r\n");
    CHECK_EQ_INT(chunk_once(big, big_n, &c), -400);
    /* a bare LF ending a trailer line is no CRLF */
    const char *lf = "0\r\nX: a\n\r\n";
    CHECK_EQ_INT(chunk_once(lf, strlen(lf), &c), -400);
}

#define CHUNK_REFUSED(s)                                                                      \
    do {                                                                                      \
        struct http_chunked c_;                                                               \
        bool d_;                                                                              \
        note_input(CHECK_EQ_INT(chunk_once((s), strlen(s), &c_), -400), (s), strlen(s));      \
        note_input(CHECK_EQ_INT(chunk_pieces((s), strlen(s), 1, NULL, NULL, &d_), -400), (s), \
                   strlen(s));                                                                \
    } while (0)

TEST(chunked_refused)
{
    CHUNK_REFUSED("10000000000000000\r\nx\r\n0\r\n\r\n"); /* 17 hex digits */
    CHUNK_REFUSED("11111111111111111\r\nx\r\n0\r\n\r\n");
    CHUNK_REFUSED("g\r\nx\r\n0\r\n\r\n");
    CHUNK_REFUSED("\r\nx\r\n0\r\n\r\n"); /* empty size */
    CHUNK_REFUSED("0x5\r\nhello\r\n0\r\n\r\n");
    CHUNK_REFUSED("-5\r\nhello\r\n0\r\n\r\n");
    CHUNK_REFUSED(" 5\r\nhello\r\n0\r\n\r\n");
    CHUNK_REFUSED("5\r\nhelloX\r\n0\r\n\r\n");   /* no CRLF after the data */
    CHUNK_REFUSED("5\r\nhello0\r\n\r\n");
    CHUNK_REFUSED("5\r\nhello\n0\r\n\r\n");      /* LF after the data */
    CHUNK_REFUSED("5\nhello\r\n0\r\n\r\n");      /* LF after the size */
    CHUNK_REFUSED("5\nhello\n0\n\n");
    CHUNK_REFUSED("5\r\nhello\r\n0\r\n\n");     /* LF ending the body */
    CHUNK_REFUSED("3\r\nhello\r\n0\r\n\r\n");   /* data longer than the size */
    CHUNK_REFUSED("5\rhello\r\n0\r\n\r\n");
}

TEST(chunked_decode)
{
    char out[128];
    size_t on = 0;
    bool done;
    CHECK_EQ_INT(chunk_pieces(CH3, strlen(CH3), 1000, out, &on, &done), (long long)strlen(CH3));
    CHECK(done);
    CHECK_EQ_MEM(out, on, "hello, world! 12");
    CHECK_EQ_INT(chunk_pieces(CH3, strlen(CH3), 1, out, &on, &done), (long long)strlen(CH3));
    CHECK_EQ_MEM(out, on, "hello, world! 12");
    CHECK_EQ_INT(chunk_pieces(CH3, strlen(CH3), 0, out, &on, &done), (long long)strlen(CH3));
    CHECK_EQ_MEM(out, on, "hello, world! 12");
    CHECK_EQ_INT(chunk_pieces(CH3, strlen(CH3), 4, out, &on, &done), (long long)strlen(CH3));
    CHECK_EQ_MEM(out, on, "hello, world! 12");

    /* in place: one call moves the payload to the front of p */
    struct http_chunked c = {0};
    size_t n = strlen(CH3);
    char *p = guarded(CH3, n);
    size_t dl = 0;
    CHECK_EQ_INT(http_chunked_feed(&c, p, n, &dl), (long long)n);
    CHECK_EQ_MEM(p, dl, "hello, world! 12");

    /* payload containing CRLF and digits, and a large chunk */
    big_reset();
    big_add("1000\r\n");
    for (int i = 0; i < 4096; i++)
        big[big_n++] = (char)("0\r\n;"[i % 4]);
    big[big_n] = 0;
    big_add("\r\n0\r\n\r\n");
    static char bout[8192];
    CHECK_EQ_INT(chunk_pieces(big, big_n, 0, bout, &on, &done), (long long)big_n);
    CHECK(done);
    CHECK_EQ_INT(on, 4096);
    CHECK(memcmp(bout, big + 6, 4096) == 0);
}

TEST(chunked_stops_at_end)
{
    static const char tail[] = "GET /next HTTP/1.1\r\n";
    big_reset();
    big_add(CH1);
    big_add(tail);
    struct http_chunked c;
    CHECK_EQ_INT(chunk_once(big, big_n, &c), (long long)strlen(CH1));
    CHECK(http_chunked_done(&c));
    bool done;
    CHECK_EQ_INT(chunk_pieces(big, big_n, 3, NULL, NULL, &done), (long long)strlen(CH1));
    CHECK(done);

    /* decoding leaves the bytes after the body untouched */
    big_reset();
    big_add(CH3);
    big_add(tail);
    memset(&c, 0, sizeof c);
    char *p = guarded(big, big_n);
    size_t dl = 0;
    ssize_t r = http_chunked_feed(&c, p, big_n, &dl);
    CHECK_EQ_INT(r, (long long)strlen(CH3));
    CHECK(http_chunked_done(&c));
    CHECK_EQ_MEM(p, dl, "hello, world! 12");
    if (r > 0)
        CHECK_EQ_MEM(p + r, big_n - (size_t)r, tail);

    /* trailers then the next message */
    big_reset();
    big_add("0\r\nT: 1\r\n\r\n");
    big_add(tail);
    CHECK_EQ_INT(chunk_once(big, big_n, &c), 11);
    CHECK(http_chunked_done(&c));
}

/* ------------------------------------------------------------ small utils */

TEST(parse_u64)
{
    uint64_t v = 77;
    CHECK_EQ_INT(http_parse_u64("0", 1, &v), 0);
    CHECK_EQ_U64(v, 0);
    CHECK_EQ_INT(http_parse_u64("007", 3, &v), 0);
    CHECK_EQ_U64(v, 7);
    CHECK_EQ_INT(http_parse_u64("1234567890", 10, &v), 0);
    CHECK_EQ_U64(v, 1234567890u);
    CHECK_EQ_INT(http_parse_u64("18446744073709551615", 20, &v), 0);
    CHECK_EQ_U64(v, UINT64_MAX);
    CHECK_EQ_INT(http_parse_u64("18446744073709551616", 20, &v), -1);
    CHECK_EQ_INT(http_parse_u64("18446744073709551620", 20, &v), -1);
    CHECK_EQ_INT(http_parse_u64("99999999999999999999", 20, &v), -1);
    CHECK_EQ_INT(http_parse_u64("100000000000000000000", 21, &v), -1);
    CHECK_EQ_INT(http_parse_u64("", 0, &v), -1);
    CHECK_EQ_INT(http_parse_u64("+1", 2, &v), -1);
    CHECK_EQ_INT(http_parse_u64("-1", 2, &v), -1);
    CHECK_EQ_INT(http_parse_u64(" 1", 2, &v), -1);
    CHECK_EQ_INT(http_parse_u64("1 ", 2, &v), -1);
    CHECK_EQ_INT(http_parse_u64("1a", 2, &v), -1);
    CHECK_EQ_INT(http_parse_u64("0x1", 3, &v), -1);
    /* n bounds the scan: reads exactly n bytes before the guard page */
    char *p = guarded("42", 2);
    CHECK_EQ_INT(http_parse_u64(p, 2, &v), 0);
    CHECK_EQ_U64(v, 42);
    p = guarded("123abc", 6);
    CHECK_EQ_INT(http_parse_u64(p, 3, &v), 0);
    CHECK_EQ_U64(v, 123);
    p = guarded("", 0);
    CHECK_EQ_INT(http_parse_u64(p, 0, &v), -1);
    /* 1*DIGIT: leading zeros do not overflow, however many */
    CHECK_EQ_INT(http_parse_u64("000000000000000000000005", 24, &v), 0);
    CHECK_EQ_U64(v, 5);
    CHECK_EQ_INT(http_parse_u64("0000000000000000000018446744073709551615", 40, &v), 0);
    CHECK_EQ_U64(v, UINT64_MAX);
}

TEST(name_is)
{
    struct http_field f = {.name = "Content-LENGTH", .name_len = 14};
    CHECK(HTTP_NAME_IS(&f, "content-length"));
    CHECK(!HTTP_NAME_IS(&f, "content-lengt"));
    CHECK(!HTTP_NAME_IS(&f, "content-lengthx"));
    CHECK(!HTTP_NAME_IS(&f, "content_length"));
    f.name = guarded("host", 4);
    f.name_len = 4;
    CHECK(HTTP_NAME_IS(&f, "host"));
}

struct list_acc {
    char out[256];
    int n;
    int stop_after;
};

static bool list_cb(const char *el, size_t n, void *arg)
{
    struct list_acc *a = arg;
    size_t len = strlen(a->out);
    snprintf(a->out + len, sizeof a->out - len, "[%.*s]", (int)n, el);
    a->n++;
    return a->n != a->stop_after;
}

static void list_case(const char *v, int stop_after, const char *want, int line)
{
    struct list_acc a = {.stop_after = stop_after};
    http_list_each(guarded(v, strlen(v)), strlen(v), list_cb, &a);
    if (!CHECK_EQ_STR(a.out, want))
        fprintf(stderr, "    list case at line %d\n", line);
}

TEST(list_each)
{
    list_case("gzip, chunked", 0, "[gzip][chunked]", __LINE__);
    list_case(" , a ,, b\t,", 0, "[a][b]", __LINE__);
    list_case("", 0, "", __LINE__);
    list_case(" ,\t, ", 0, "", __LINE__);
    list_case("one", 0, "[one]", __LINE__);
    list_case("x y , z", 0, "[x y][z]", __LINE__);
    list_case("a, b, c", 2, "[a][b]", __LINE__);
}

TEST(methods_and_reasons)
{
    CHECK(http_method_is_head("HEAD", 4));
    CHECK(!http_method_is_head("GET", 3));
    CHECK(!http_method_is_head("HEADX", 5));
    CHECK(!http_method_is_head("HEA", 3));
    static const char *idem[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof idem / sizeof *idem; i++)
        note_input(CHECK(http_method_idempotent(idem[i], strlen(idem[i]))), idem[i], strlen(idem[i]));
    static const char *non[] = {"POST", "PATCH", "CONNECT", "GETX"};
    for (size_t i = 0; i < sizeof non / sizeof *non; i++)
        note_input(CHECK(!http_method_idempotent(non[i], strlen(non[i]))), non[i], strlen(non[i]));
    CHECK_EQ_STR(http_reason(200), "OK");
    CHECK_EQ_STR(http_reason(400), "Bad Request");
    CHECK_EQ_STR(http_reason(502), "Bad Gateway");
    CHECK_EQ_STR(http_reason(504), "Gateway Timeout");
    CHECK_EQ_STR(http_reason(999), "");
}


/* ------------------------------------------------- mutation consistency */

static uint64_t fz_state = 0x2545F4914F6CDD1Dull;
static uint64_t fz(void)
{
    fz_state ^= fz_state << 13;
    fz_state ^= fz_state >> 7;
    fz_state ^= fz_state << 17;
    return fz_state;
}

/* Mutates one to three bytes of src into dst: the byte values that matter
 * to a parser are favoured. */
static void mutate(const char *src, size_t n, char *dst)
{
    static const char interesting[] = "\r\n :\t\0\x7f\x80,;\"0aF9";
    memcpy(dst, src, n);
    int k = 1 + (int)(fz() % 3);
    for (int i = 0; i < k; i++) {
        size_t at = fz() % n;
        if (fz() % 2)
            dst[at] = interesting[fz() % (sizeof interesting - 1)];
        else
            dst[at] = (char)(fz() & 0xff);
    }
}

static bool status_ok(int r, bool response)
{
    if (response)
        return r >= 0 || r == -502;
    return r >= 0 || r == -400 || r == -414 || r == -431 || r == -501 || r == -505;
}

/* For mutated heads: the result is a known status, a head length never
 * exceeds the input, and prefixes agree with the whole: a prefix that is a
 * complete head gives the same length as the whole, a refused prefix means a
 * refused whole. */
static void mutation_heads(bool response, const char *base, int rounds)
{
    size_t n = strlen(base);
    char m[512];
    int bad_status = 0, too_long = 0, disagree = 0;
    for (int round = 0; round < rounds; round++) {
        mutate(base, n, m);
        int whole = response ? resp_n(m, n, DEF) : req_n(m, n, DEF);
        if (!status_ok(whole, response))
            bad_status++;
        if (whole > 0 && (size_t)whole > n)
            too_long++;
        for (size_t k = 0; k < n; k++) {
            int r = response ? resp_n(m, k, DEF) : req_n(m, k, DEF);
            bool ok = r == 0 || (r > 0 && r == whole) || (r < 0 && whole < 0);
            if (!status_ok(r, response) || !ok) {
                if (!disagree++) {
                    fprintf(stderr, "    prefix %zu gives %d, whole gives %d: ", k, r, whole);
                    unit_print_bytes(m, n);
                    fputc('\n', stderr);
                }
                break;
            }
        }
    }
    CHECK_EQ_INT(bad_status, 0);
    CHECK_EQ_INT(too_long, 0);
    CHECK_EQ_INT(disagree, 0);
}

TEST(mutated_requests)
{
    mutation_heads(false, "GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-Y:  z \r\nContent-Length: 12\r\n\r\n", 1500);
}

TEST(mutated_responses)
{
    mutation_heads(true, "HTTP/1.1 200 OK\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n", 1500);
}

/* For mutated chunked bodies: one call, byte by byte, random pieces, and
 * decoding all agree on the bytes consumed or on the refusal. */
TEST(mutated_chunked)
{
    const char *base = "5;e=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\nNEXT";
    size_t n = strlen(base);
    char m[256], out[256];
    int disagree = 0, bad = 0;
    for (int round = 0; round < 3000; round++) {
        mutate(base, n, m);
        struct http_chunked c;
        ssize_t one = chunk_once(m, n, &c);
        bool done_one = one >= 0 && http_chunked_done(&c);
        bool d1, d2, d3;
        size_t on;
        ssize_t bytes = chunk_pieces(m, n, 1, NULL, NULL, &d1);
        ssize_t rand = chunk_pieces(m, n, 0, NULL, NULL, &d2);
        ssize_t dec = chunk_pieces(m, n, 0, out, &on, &d3);
        if (!(one >= 0 || one == -400))
            bad++;
        bool same = one == bytes && one == rand && one == dec;
        if (same && one >= 0)
            same = done_one == d1 && d1 == d2 && d2 == d3;
        if (!same && !disagree++) {
            fprintf(stderr, "    one call %zd (done %d), bytewise %zd, random %zd, decode %zd: ", one,
                    done_one, bytes, rand, dec);
            unit_print_bytes(m, n);
            fputc('\n', stderr);
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(disagree, 0);
}

/* Regression (found by fuzz_request): a head exactly at a limit must get the
 * same verdict whatever prefix of it has arrived. */
TEST(limit_verdict_independent_of_split)
{
    struct http_limits lim = {.max_line = 64, .max_head = 128, .max_fields = 10};
    char line[80];
    /* request line of exactly max_line bytes, then its CRLF */
    memset(line, 'a', sizeof line);
    memcpy(line, "GET /", 5);
    memcpy(line + 64 - 9, " HTTP/1.1", 9);
    char req[200];
    size_t n = 0;
    memcpy(req, line, 64);
    n = 64;
    memcpy(req + n, "\r\nHost: h\r\n\r\n", 13);
    n += 13;
    for (size_t k = 1; k < n; k++)
        CHECK_EQ_INT(http_parse_request(guarded(req, k), k, &M, &lim), HTTP_INCOMPLETE);
    CHECK_EQ_INT(http_parse_request(guarded(req, n), n, &M, &lim), (int)n);
    /* one byte longer is refused, prefix ending at its CR included */
    struct http_limits lim2 = {.max_line = 63, .max_head = 128, .max_fields = 10};
    CHECK_EQ_INT(http_parse_request(guarded(req, 65), 65, &M, &lim2), -414);
    CHECK_EQ_INT(http_parse_request(guarded(req, n), n, &M, &lim2), -414);
    /* a head of exactly max_head bytes is accepted at every split */
    struct http_limits lim3 = {.max_line = 64, .max_head = (uint32_t)n, .max_fields = 10};
    for (size_t k = 1; k < n; k++)
        CHECK_EQ_INT(http_parse_request(guarded(req, k), k, &M, &lim3), HTTP_INCOMPLETE);
    CHECK_EQ_INT(http_parse_request(guarded(req, n), n, &M, &lim3), (int)n);
    lim3.max_head = (uint32_t)n - 1;
    CHECK_EQ_INT(http_parse_request(guarded(req, n), n, &M, &lim3), -431);
    CHECK_EQ_INT(http_parse_request(guarded(req, n - 1), n - 1, &M, &lim3), -431);
}

/* Regression (found by fuzz_response): Connection naming Content-Length
 * would make the proxy strip the response's framing. */
TEST(response_connection_names_framing)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nConnection: content-length\r\n"
                            "Content-Length: 4\r\n\r\nabcd";
    struct http_info info;
    int n = http_parse_response(guarded(r, sizeof r - 1), sizeof r - 1, &M, &http_default_limits);
    CHECK(n > 0);
    CHECK_EQ_INT(http_response_info(&M, false, &info), -502);
}

int main(void)
{
    RUN(default_limits_sane);
    RUN(limit_verdict_independent_of_split);
    RUN(response_connection_names_framing);
    RUN(get_with_fields);
    RUN(no_fields);
    RUN(pipelined_two_requests);
    RUN(leading_crlf_skipped);
    RUN(http10);
    RUN(absolute_form_target);
    RUN(other_target_forms);
    RUN(ows_trimmed);
    RUN(empty_value);
    RUN(tchars_in_names_and_method);
    RUN(incremental_every_split);
    RUN(bare_lf_refused);
    RUN(obs_fold_refused);
    RUN(space_before_colon_refused);
    RUN(bad_name_chars_refused);
    RUN(bad_value_bytes_refused);
    RUN(empty_name_refused);
    RUN(no_colon_refused);
    RUN(bad_method_refused);
    RUN(bad_request_line_refused);
    RUN(version_unsupported_505);
    RUN(version_garbage_400);
    RUN(request_line_limit_414);
    RUN(head_limit_431);
    RUN(field_count_limit_431);
    RUN(response_200);
    RUN(response_empty_reason);
    RUN(response_refused_502);
    RUN(response_limits_431);
    RUN(rinfo_no_body);
    RUN(rinfo_content_length);
    RUN(rinfo_cl_and_te_refused);
    RUN(rinfo_two_cl);
    RUN(rinfo_bad_cl);
    RUN(rinfo_chunked);
    RUN(rinfo_te_refused);
    RUN(rinfo_host);
    RUN(rinfo_connection);
    RUN(rinfo_expect);
    RUN(sinfo_framing);
    RUN(sinfo_content_length_kept);
    RUN(sinfo_bad_cl_502);
    RUN(chunked_one_piece);
    RUN(chunked_fresh_not_done);
    RUN(chunked_byte_by_byte);
    RUN(chunked_extensions);
    RUN(chunked_trailers);
    RUN(chunked_refused);
    RUN(chunked_decode);
    RUN(chunked_stops_at_end);
    RUN(parse_u64);
    RUN(name_is);
    RUN(list_each);
    RUN(methods_and_reasons);
    RUN(mutated_requests);
    RUN(mutated_responses);
    RUN(mutated_chunked);
    return unit_summary("test_http");
}
