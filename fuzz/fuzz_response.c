/* fuzz_response.c -- libFuzzer target: http_parse_response,
 * http_response_info and fwd_response_head.
 *
 * The whole input is the bytes received from an upstream. Its last byte also
 * picks the tiny limits and the options: bit 0 the request was HEAD, bit 1
 * the client speaks HTTP/1.0 (a chunked body is decoded and the connection
 * closed, as proxy.c does), bit 2 close anyway. Invariants checked:
 *  - the result is a head length <= size, HTTP_INCOMPLETE, -502 (malformed)
 *    or -431 (over the limits);
 *  - a head is well formed (see fz_check_head) and every pointer lies in it;
 *  - parsing is deterministic; every prefix obeys the prefix rule;
 *  - a head accepted under tiny limits is accepted, the same, under defaults;
 *  - http_response_info refuses conflicting Content-Length, Content-Length
 *    with Transfer-Encoding and any coding but one "chunked", and its framing
 *    follows the fields (1xx, 204, 304 and HEAD: no body);
 *  - fwd_response_head writes a head that parses back, whole, as one HTTP/1.1
 *    response with the same status, no hop-by-hop field but the ones it adds,
 *    and framing the client can follow: Transfer-Encoding: chunked exactly
 *    when the body is relayed chunked, else the upstream's Content-Length
 *    when the body is length-delimited; with a short buffer it fails cleanly
 *    (-1) or writes the same bytes. */
#include "fuzz_common.h"

#include "fwd.h"

static void check_response_head(const char *buf, size_t size, int r, const struct http_msg *m,
                                const struct http_limits *lim)
{
    FUZZ_CHECK(r > 0 && (size_t)r <= size);
    size_t len = (size_t)r;
    FUZZ_CHECK(len >= 16);   /* "HTTP/1.x NNN\r\n\r\n" at least */
    FUZZ_CHECK(memcmp(buf, "HTTP/1.", 7) == 0 && buf[7] == '0' + m->minor && buf[8] == ' ');
    FUZZ_CHECK(m->status >= 100 && m->status <= 999);
    char st[4];
    snprintf(st, sizeof st, "%03d", m->status);
    FUZZ_CHECK(memcmp(buf + 9, st, 3) == 0);
    FUZZ_CHECK(fz_within(buf, len, m->reason, m->reason_len));
    FUZZ_CHECK(m->reason == buf + 12 || m->reason == buf + 13);
    for (uint32_t i = 0; i < m->reason_len; i++)
        FUZZ_CHECK(fz_value_char((unsigned char)m->reason[i]));
    FUZZ_CHECK(m->reason[m->reason_len] == '\r');
    fz_check_head(buf, len, 0, m, lim);
    FUZZ_CHECK((size_t)(m->reason + m->reason_len - buf) <= lim->max_line);
    FUZZ_CHECK(len <= (size_t)lim->max_head + 2);
}

static int parse_and_check(const char *buf, size_t size, struct http_msg *m,
                           const struct http_limits *lim)
{
    int r = http_parse_response(buf, size, m, lim);
    FUZZ_CHECK(r == HTTP_INCOMPLETE || r == -502 || r == -431 || (r > 0 && (size_t)r <= size));
    if (r > 0)
        check_response_head(buf, size, r, m, lim);

    static struct http_msg m2;
    int r2 = http_parse_response(buf, size, &m2, lim);
    FUZZ_CHECK(r2 == r);
    if (r > 0)
        FUZZ_CHECK(fz_same_msg(m, &m2));

    char *tail = fuzz_dup((const uint8_t *)buf, size);
    for (size_t k = 0; k < size; k++) {
        if (!fz_prefix_wanted(k, size, r > 0 ? (size_t)r : 0))
            continue;
        memcpy(tail + (size - k), buf, k);
        int rk = http_parse_response(tail + (size - k), k, &m2, lim);
        fz_check_prefix(r, k, rk);
    }
    free(tail);
    return r;
}

static void check_info(const struct http_msg *m, bool is_head, int ri,
                       const struct http_info *info)
{
    FUZZ_CHECK(ri == 0 || ri == -502);
    if (ri < 0)
        return;
    unsigned te = fz_count(m, "transfer-encoding"), cl = fz_count(m, "content-length");
    FUZZ_CHECK(te <= 1);
    FUZZ_CHECK(!(te && cl));
    FUZZ_CHECK(fz_cl_consistent(m));
    for (uint32_t i = 0; i < m->nfields; i++)
        if (fz_ieq(m->fields[i].name, m->fields[i].name_len, "transfer-encoding"))
            FUZZ_CHECK(fz_ieq(m->fields[i].value, m->fields[i].value_len, "chunked"));
    bool bodiless = is_head || m->status < 200 || m->status == 204 || m->status == 304;
    switch (info->framing) {
    case HTTP_BODY_NONE:
        FUZZ_CHECK(info->length == 0);
        FUZZ_CHECK(bodiless || (cl && fz_all_decimal(m, "content-length", 0)));
        break;
    case HTTP_BODY_LENGTH:
        FUZZ_CHECK(!bodiless && cl && info->length > 0);
        FUZZ_CHECK(fz_all_decimal(m, "content-length", info->length));
        break;
    case HTTP_BODY_CHUNKED:
        FUZZ_CHECK(!bodiless && te == 1);
        break;
    case HTTP_BODY_CLOSE:
        FUZZ_CHECK(!bodiless && te == 0 && cl == 0);
        break;
    default:
        FUZZ_CHECK(!"unknown framing");
    }
}

static bool hop_by_hop_name(const struct http_field *f)
{
    static const char *const names[] = {"keep-alive", "proxy-connection", "te", "trailer",
                                        "upgrade"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (fz_ieq(f->name, f->name_len, names[i]))
            return true;
    return false;
}

static void check_forwarded(const char *out, int n, const struct http_msg *m,
                            const struct http_info *info, const struct fwd_resp *fr)
{
    static struct http_msg o;
    FUZZ_CHECK(n > 0 && (size_t)n <= FZ_FWD_CAP);
    int r = http_parse_response(out, (size_t)n, &o, &fz_huge_limits);
    FUZZ_CHECK(r == n);   /* one whole head, nothing after it */
    FUZZ_CHECK(o.minor == 1 && o.status == m->status);
    FUZZ_CHECK(o.reason_len == m->reason_len && memcmp(o.reason, m->reason, m->reason_len) == 0);
    for (uint32_t i = 0; i < o.nfields; i++)
        FUZZ_CHECK(!hop_by_hop_name(&o.fields[i]));
    unsigned te = fz_count(&o, "transfer-encoding"), cl = fz_count(&o, "content-length");
    FUZZ_CHECK(fz_cl_canonical(&o));
    FUZZ_CHECK(fz_count(&o, "connection") == (fr->close || fr->keepalive ? 1u : 0u));
    if (fr->chunked) {
        FUZZ_CHECK(te == 1 && cl == 0);
    } else {
        FUZZ_CHECK(te == 0);
        /* A length-delimited body is relayed as it is: the client needs the
         * same Content-Length to find its end. */
        if (info->framing == HTTP_BODY_LENGTH)
            FUZZ_CHECK(cl >= 1 && fz_all_decimal(&o, "content-length", info->length));
        /* A decoded chunked body, or one up to close, ends at close. */
        if (info->framing == HTTP_BODY_CHUNKED || info->framing == HTTP_BODY_CLOSE)
            FUZZ_CHECK(cl == 0 && fr->close);
    }
}

static void forward(const struct http_msg *m, const struct http_info *info, uint8_t cfg)
{
    bool client10 = (cfg & 2) != 0;
    bool dechunk = info->framing == HTTP_BODY_CHUNKED && client10;
    struct fwd_resp fr = {
        .m = m,
        .chunked = info->framing == HTTP_BODY_CHUNKED && !dechunk,
        .info = info,
        .close = (client10 && info->framing == HTTP_BODY_CHUNKED) ||
                 info->framing == HTTP_BODY_CLOSE || (cfg & 4) != 0,
        .keepalive = client10,
    };
    char *out = malloc(FZ_FWD_CAP);
    if (!out)
        abort();
    int n = fwd_response_head(out, FZ_FWD_CAP, &fr);
    FUZZ_CHECK(n == -1 || (n > 0 && (size_t)n <= FZ_FWD_CAP));
    if (n > 0) {
        check_forwarded(out, n, m, info, &fr);
        size_t cap = (size_t)n * cfg / 255;
        char *small = malloc(cap ? cap : 1);
        if (!small)
            abort();
        int n2 = fwd_response_head(small, cap, &fr);
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
    if (r_tiny > 0)
        FUZZ_CHECK(r_def == r_tiny && fz_same_msg(&m_def, &m_tiny));
    if (r_def < 0)
        FUZZ_CHECK(r_tiny < 0);

    if (r_def > 0) {
        bool is_head = (cfg & 1) != 0;
        struct http_info info;
        int ri = http_response_info(&m_def, is_head, &info);
        check_info(&m_def, is_head, ri, &info);
        /* proxy.c refuses 101 before forwarding anything */
        if (ri == 0 && m_def.status != 101)
            forward(&m_def, &info, cfg);
    }
    free(buf);
    return 0;
}
