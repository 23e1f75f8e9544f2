/* fuzz_request.c -- libFuzzer target: http_parse_request, http_request_info
 * and fwd_request_head.
 *
 * The whole input is the bytes received from a client. Its last byte also
 * picks the tiny limits and the fwd_req options (the last byte is usually
 * past the head, where the parser does not look). Invariants checked:
 *  - the result is a head length <= size, HTTP_INCOMPLETE or a request error;
 *  - a head is well formed (see fz_check_head) and every pointer lies in it;
 *  - parsing is deterministic; every prefix obeys the prefix rule;
 *  - a head accepted under tiny limits is accepted, the same, under defaults;
 *  - http_request_info refuses what README promises it refuses (conflicting
 *    Content-Length, Content-Length with Transfer-Encoding, any coding but a
 *    single "chunked", two Hosts, no Host in HTTP/1.1) and reports framing
 *    consistent with the fields;
 *  - fwd_request_head writes a head that parses back, whole, as one HTTP/1.1
 *    request carrying the same framing, one Host, and no hop-by-hop field;
 *    with a short buffer it fails cleanly (-1) or writes the same bytes. */
#include "fuzz_common.h"

#include "fwd.h"

static const int request_errors[] = {-400, -414, -431, -501, -505};

static bool is_request_error(int r)
{
    for (size_t i = 0; i < sizeof request_errors / sizeof request_errors[0]; i++)
        if (r == request_errors[i])
            return true;
    return false;
}

static void check_request_head(const char *buf, size_t size, int r, const struct http_msg *m,
                               const struct http_limits *lim)
{
    FUZZ_CHECK(r > 0 && (size_t)r <= size);
    size_t len = (size_t)r;
    FUZZ_CHECK(fz_within(buf, len, m->method, m->method_len));
    FUZZ_CHECK(fz_within(buf, len, m->target, m->target_len));
    FUZZ_CHECK(m->method_len > 0 && m->target_len > 0);
    for (uint32_t i = 0; i < m->method_len; i++)
        FUZZ_CHECK(fz_tchar((unsigned char)m->method[i]));
    for (uint32_t i = 0; i < m->target_len; i++)
        FUZZ_CHECK((unsigned char)m->target[i] > 0x20 && (unsigned char)m->target[i] < 0x7f);
    FUZZ_CHECK(m->target == m->method + m->method_len + 1 && m->method[m->method_len] == ' ');
    const char *ver = m->target + m->target_len;
    FUZZ_CHECK(fz_within(buf, len, ver, 11));
    FUZZ_CHECK(memcmp(ver, " HTTP/1.", 8) == 0 && ver[8] == '0' + m->minor &&
               ver[9] == '\r' && ver[10] == '\n');
    size_t start = (size_t)(m->method - buf);
    fz_check_head(buf, len, start, m, lim);
    /* the request line fits max_line, the head max_head (+ its final CRLF) */
    FUZZ_CHECK((size_t)(ver + 9 - m->method) <= lim->max_line);
    FUZZ_CHECK(len <= (size_t)lim->max_head + 2);
}

/* Parses buf[0..size) under lim and checks the result, every prefix and
 * determinism. Returns the parse result; *m is the parsed head. */
static int parse_and_check(const char *buf, size_t size, struct http_msg *m,
                           const struct http_limits *lim)
{
    int r = http_parse_request(buf, size, m, lim);
    FUZZ_CHECK(r == HTTP_INCOMPLETE || is_request_error(r) || (r > 0 && (size_t)r <= size));
    if (r > 0)
        check_request_head(buf, size, r, m, lim);

    static struct http_msg m2;
    int r2 = http_parse_request(buf, size, &m2, lim);
    FUZZ_CHECK(r2 == r);
    if (r > 0)
        FUZZ_CHECK(fz_same_msg(m, &m2));

    /* Each prefix lies at the end of a heap block of exactly its size. */
    char *tail = fuzz_dup((const uint8_t *)buf, size);
    for (size_t k = 0; k < size; k++) {
        if (!fz_prefix_wanted(k, size, r > 0 ? (size_t)r : 0))
            continue;
        memcpy(tail + (size - k), buf, k);
        int rk = http_parse_request(tail + (size - k), k, &m2, lim);
        fz_check_prefix(r, k, rk);
    }
    free(tail);
    return r;
}

static bool hop_by_hop_name(const struct http_field *f)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection", "te",
                                        "trailer", "upgrade"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (fz_ieq(f->name, f->name_len, names[i]))
            return true;
    return false;
}

static void check_info(const struct http_msg *m, int ri, const struct http_info *info)
{
    FUZZ_CHECK(ri == 0 || ri == -400 || ri == -501);
    if (ri < 0)
        return;
    unsigned te = fz_count(m, "transfer-encoding"), cl = fz_count(m, "content-length");
    unsigned host = fz_count(m, "host");
    FUZZ_CHECK(te <= 1);
    FUZZ_CHECK(!(te && cl));
    FUZZ_CHECK(fz_cl_consistent(m));
    FUZZ_CHECK(host <= 1);
    FUZZ_CHECK(info->has_host == (host == 1));
    if (m->minor == 1)
        FUZZ_CHECK(info->has_host);
    for (uint32_t i = 0; i < m->nfields; i++)
        if (fz_ieq(m->fields[i].name, m->fields[i].name_len, "host"))
            FUZZ_CHECK(info->host == m->fields[i].value &&
                       info->host_len == m->fields[i].value_len);
    switch (info->framing) {
    case HTTP_BODY_CHUNKED:
        FUZZ_CHECK(te == 1);
        for (uint32_t i = 0; i < m->nfields; i++)
            if (fz_ieq(m->fields[i].name, m->fields[i].name_len, "transfer-encoding"))
                FUZZ_CHECK(fz_ieq(m->fields[i].value, m->fields[i].value_len, "chunked"));
        break;
    case HTTP_BODY_LENGTH:
        FUZZ_CHECK(te == 0 && cl >= 1 && info->length > 0);
        FUZZ_CHECK(fz_all_decimal(m, "content-length", info->length));
        break;
    case HTTP_BODY_NONE:
        FUZZ_CHECK(te == 0 && info->length == 0);
        FUZZ_CHECK(fz_all_decimal(m, "content-length", 0));
        break;
    default:
        FUZZ_CHECK(!"a request is never delimited by the connection's close");
    }
}

static void check_forwarded(const char *out, int n, const struct http_msg *m,
                            const struct http_info *info, bool keep_underscores)
{
    static struct http_msg o;
    FUZZ_CHECK(n > 0 && (size_t)n <= FZ_FWD_CAP);
    int r = http_parse_request(out, (size_t)n, &o, &fz_huge_limits);
    FUZZ_CHECK(r == n);   /* one whole head, nothing after it */
    FUZZ_CHECK(o.minor == 1);
    FUZZ_CHECK(o.method_len == m->method_len && memcmp(o.method, m->method, m->method_len) == 0);
    for (uint32_t i = 0; i < o.nfields; i++)
        FUZZ_CHECK(!hop_by_hop_name(&o.fields[i]));
    FUZZ_CHECK(fz_count(&o, "host") == 1);
    FUZZ_CHECK(fz_cl_canonical(&o));
    if (!keep_underscores)
        for (uint32_t i = 0; i < o.nfields; i++)
            FUZZ_CHECK(!memchr(o.fields[i].name, '_', o.fields[i].name_len));
    unsigned te = fz_count(&o, "transfer-encoding"), cl = fz_count(&o, "content-length");
    switch (info->framing) {
    case HTTP_BODY_CHUNKED:
        FUZZ_CHECK(te == 1 && cl == 0);
        break;
    case HTTP_BODY_LENGTH:
        FUZZ_CHECK(te == 0 && cl >= 1 && fz_all_decimal(&o, "content-length", info->length));
        break;
    default:
        FUZZ_CHECK(te == 0 && fz_all_decimal(&o, "content-length", 0));
        break;
    }
}

static void forward(const struct http_msg *m, const struct http_info *info, uint8_t cfg)
{
    struct fwd_req fq = {
        .m = m,
        .info = info,
        .client_ip = "192.0.2.7",
        .proto = "http",
        .default_host = "upstream.example:8080",
        .strip_expect = (cfg & 1) != 0,
        .keep_underscores = (cfg & 2) != 0,
    };
    char *out = malloc(FZ_FWD_CAP);
    if (!out)
        abort();
    int n = fwd_request_head(out, FZ_FWD_CAP, &fq);
    FUZZ_CHECK(n == -1 || (n > 0 && (size_t)n <= FZ_FWD_CAP));
    if (n > 0) {
        check_forwarded(out, n, m, info, fq.keep_underscores);
        /* the same into a block of exactly `cap` bytes, cap <= n */
        size_t cap = (size_t)n * cfg / 255;
        char *small = malloc(cap ? cap : 1);
        if (!small)
            abort();
        int n2 = fwd_request_head(small, cap, &fq);
        if (cap < (size_t)n)
            FUZZ_CHECK(n2 == -1);
        else
            FUZZ_CHECK(n2 == n && memcmp(small, out, (size_t)n) == 0);
        free(small);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t cfg = data[size - 1];
    char *buf = fuzz_dup(data, size);
    static struct http_msg m_def, m_tiny;
    struct http_limits tiny = fz_tiny_limits(cfg);

    int r_def = parse_and_check(buf, size, &m_def, &http_default_limits);
    int r_tiny = parse_and_check(buf, size, &m_tiny, &tiny);
    /* tighter limits only add refusals */
    if (r_tiny > 0)
        FUZZ_CHECK(r_def == r_tiny && fz_same_msg(&m_def, &m_tiny));
    if (r_def < 0)
        FUZZ_CHECK(r_tiny < 0);

    const struct http_msg *ms[2] = {&m_def, &m_tiny};
    int rs[2] = {r_def, r_tiny};
    for (int i = 0; i < 2; i++) {
        if (rs[i] <= 0)
            continue;
        struct http_info info;
        int ri = http_request_info(ms[i], &info);
        check_info(ms[i], ri, &info);
        if (ri == 0)
            forward(ms[i], &info, cfg);
        if (r_tiny > 0)
            break;   /* the same head twice */
    }
    free(buf);
    return 0;
}
