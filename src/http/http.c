/* http.c -- incremental, zero-copy HTTP/1.1 message parser (see http.h). */
#include "http.h"

#include <string.h>

const struct http_limits http_default_limits = {
    .max_line = 8192,
    .max_head = 32768 + 8192,
    .max_block = 32768,
    .max_fields = 100,
};

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 *         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA  (RFC 9110 5.6.2) */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
    ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool is_tchar(unsigned char c) { return tchar[c]; }

/* field-vchar / SP / HTAB: anything but controls (obs-text allowed). */
static inline bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Skips 8 bytes at a time while none of them is a control byte (CR, HTAB,
 * NUL... all < 0x20) or DEL; the byte-wise loop after it decides the rest.
 * Field values are most of a head's bytes: this halves the cost of parsing. */
static const char *scan_value(const char *p, const char *end)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t low = (w - ones * 0x20) & ~w & highs;      /* some byte < 0x20 */
        uint64_t del = w ^ (ones * 0x7f);
        uint64_t is_del = (del - ones) & ~del & highs;      /* some byte == 0x7f */
        if (low | is_del)
            break;
        p += 8;
    }
    return p;
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

static bool ieq(const char *a, size_t an, const char *lit, size_t ln)
{
    if (an != ln)
        return false;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != (unsigned char)lit[i])
            return false;
    return true;
}
#define IEQ(a, n, lit) ieq((a), (n), (lit), sizeof(lit) - 1)

bool http_name_is(const struct http_field *f, const char *lower_lit, size_t len)
{
    return ieq(f->name, f->name_len, lower_lit, len);
}

/* Parses the field lines starting at p up to and including the empty line.
 * `err` is the status to return for malformed input. */
static int parse_fields(const char *buf, const char *p, const char *end,
                        struct http_msg *m, const struct http_limits *lim, int err,
                        int too_big)
{
    const char *block = p;
    size_t max_block = lim->max_block ? lim->max_block : SIZE_MAX / 2;
    m->nfields = 0;
    for (;;) {
        /* Any line starting here ends the head at p + 2 or later. */
        if ((size_t)(p - buf) + 2 > lim->max_head || (size_t)(p - block) + 2 > max_block)
            return -too_big;
        if (p == end)
            goto incomplete;
        if (*p == '\r') {
            if (p + 1 == end)
                goto incomplete;
            if (p[1] != '\n')
                return -err;
            p += 2;
            m->head_len = (uint32_t)(p - buf);
            return (int)m->head_len;
        }
        /* obs-fold, a bare LF, or whitespace before the first field name */
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        if (p == end)
            goto incomplete;
        if (*p != ':' || p == name)
            return -err;
        uint32_t name_len = (uint32_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *value = p;
        p = scan_value(p, end);
        while (p < end && *p != '\r') {
            if (!is_value_char((unsigned char)*p))
                return -err;
            p++;
        }
        if (p + 1 >= end)
            goto incomplete;
        if (p[1] != '\n')
            return -err;
        const char *vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        if (m->nfields >= lim->max_fields || m->nfields >= HTTP_MAX_FIELDS_CAP)
            return -too_big;
        struct http_field *f = &m->fields[m->nfields++];
        f->name = name;
        f->name_len = name_len;
        f->value = value;
        f->value_len = (uint32_t)(vend - value);
        p += 2;
    }
incomplete:
    /* The head is longer than what we have: refuse only if that is too long,
     * so that the verdict never depends on where the bytes were split. */
    if ((size_t)(end - buf) >= lim->max_head || (size_t)(end - block) >= max_block)
        return -too_big;
    return HTTP_INCOMPLETE;
}

/* "HTTP/1.x": 0/1 in *minor, or a negative status. need_more when short. */
static int parse_version(const char *p, const char *end, int *minor, int bad, int unsupported)
{
    static const char proto[] = "HTTP/";
    size_t avail = (size_t)(end - p);
    size_t k = avail < 5 ? avail : 5;
    if (memcmp(p, proto, k) != 0)
        return -bad;
    if (avail < 8)
        return HTTP_INCOMPLETE;
    unsigned char maj = (unsigned char)p[5], dot = (unsigned char)p[6], min = (unsigned char)p[7];
    if (maj < '0' || maj > '9' || dot != '.' || min < '0' || min > '9')
        return -bad;
    if (maj != '1' || min > '1')
        return -unsupported;
    *minor = min - '0';
    return 1;
}

int http_parse_request(const char *buf, size_t len, struct http_msg *m,
                       const struct http_limits *lim)
{
    const char *p = buf, *end = buf + len;

    /* RFC 9112 2.2: ignore empty lines received before the request line. */
    while (p < end && *p == '\r') {
        if (p + 1 == end)
            return HTTP_INCOMPLETE;
        if (p[1] != '\n')
            return -400;
        p += 2;
        if ((size_t)(p - buf) > lim->max_line)
            return -400;
    }
    const char *line = p;

    m->method = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == end)
        goto incomplete_line;
    if (*p != ' ' || p == m->method)
        return -400;
    m->method_len = (uint32_t)(p - m->method);
    p++;

    /* request-target: visible ASCII; its form is checked by the proxy. */
    m->target = p;
    while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
        p++;
    if (p == end)
        goto incomplete_line;
    if (*p != ' ' || p == m->target)
        return -400;
    m->target_len = (uint32_t)(p - m->target);
    p++;

    int r = parse_version(p, end, &m->minor, 400, 505);
    if (r <= 0)
        return r == HTTP_INCOMPLETE ? ((size_t)(end - line) > lim->max_line + 1 ? -414 : HTTP_INCOMPLETE) : r;
    p += 8;
    if (p == end || (*p == '\r' && p + 1 == end))
        goto incomplete_line;
    if (p[0] != '\r' || p[1] != '\n')
        return -400;
    if ((size_t)(p - line) > lim->max_line)
        return -414;
    p += 2;

    m->status = 0;
    m->reason = NULL;
    m->reason_len = 0;
    return parse_fields(buf, p, end, m, lim, 400, 431);

incomplete_line:
    /* max_line bounds the line without its CRLF; the last byte may be CR. */
    if ((size_t)(end - line) > lim->max_line + 1)
        return -414;
    return HTTP_INCOMPLETE;
}

int http_parse_response(const char *buf, size_t len, struct http_msg *m,
                        const struct http_limits *lim)
{
    const char *p = buf, *end = buf + len;

    int r = parse_version(p, end, &m->minor, 502, 502);
    if (r <= 0)
        return r == HTTP_INCOMPLETE && (size_t)(end - buf) > lim->max_line + 1 ? -431 : r;
    p += 8;
    if ((size_t)(end - p) < 4)
        goto incomplete_line;
    if (p[0] != ' ')
        return -502;
    int st = 0;
    for (int i = 1; i <= 3; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -502;
        st = st * 10 + (p[i] - '0');
    }
    if (st < 100)
        return -502;
    m->status = st;
    p += 4;
    /* reason-phrase is optional, and so (leniently) is the SP before it */
    if (p == end)
        goto incomplete_line;
    if (*p == ' ')
        p++;
    else if (*p != '\r')
        return -502;
    m->reason = p;
    while (p < end && *p != '\r') {
        if (!is_value_char((unsigned char)*p))
            return -502;
        p++;
    }
    if (p + 1 >= end)
        goto incomplete_line;
    if (p[1] != '\n')
        return -502;
    m->reason_len = (uint32_t)(p - m->reason);
    if ((size_t)(p - buf) > lim->max_line)
        return -431;
    p += 2;
    m->method = m->target = NULL;
    m->method_len = m->target_len = 0;
    return parse_fields(buf, p, end, m, lim, 502, 431);

incomplete_line:
    if ((size_t)(end - buf) > lim->max_line + 1)
        return -431;
    return HTTP_INCOMPLETE;
}

int http_parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

void http_list_each(const char *v, size_t len,
                    bool (*cb)(const char *el, size_t n, void *arg), void *arg)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b > a && !cb(v + a, b - a, arg))
            return;
        i = j + 1;
    }
}

struct conn_scan { bool close, keepalive, bad; };

static bool conn_token(const char *el, size_t n, void *arg)
{
    struct conn_scan *s = arg;
    if (IEQ(el, n, "close"))
        s->close = true;
    else if (IEQ(el, n, "keep-alive"))
        s->keepalive = true;
    else if (IEQ(el, n, "host") || IEQ(el, n, "content-length"))
        s->bad = true;   /* would let a hop strip the message's framing or target */
    return true;
}

/* Checks a Transfer-Encoding value: 0 when it is exactly "chunked", -501 for
 * a well-formed list of codings we do not implement, -400 otherwise. */
static int check_te(const char *v, size_t n)
{
    if (IEQ(v, n, "chunked"))
        return 0;
    /* A list: every element must be a token, none empty. */
    size_t i = 0;
    bool chunked_seen = false;
    for (;;) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (a == b)
            return -400;
        for (size_t k = a; k < b; k++)
            if (!is_tchar((unsigned char)v[k]))
                return -400;
        if (IEQ(v + a, b - a, "chunked")) {
            if (chunked_seen)
                return -400;
            chunked_seen = true;
        }
        if (j >= n)
            break;
        i = j + 1;
    }
    return -501;
}

/* Host = uri-host [ ":" port ]: reg-name, IPv4 or [IP-literal] characters. */
static bool host_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!strchr("-._~!$&'()*+,;=:[]%", c) || c == 0)
            return false;
    }
    return true;
}

static int length_field(const struct http_field *f, bool *seen, uint64_t *len, int bad)
{
    uint64_t v;
    if (http_parse_u64(f->value, f->value_len, &v) < 0)
        return -bad;
    if (*seen && v != *len)
        return -bad;
    *seen = true;
    *len = v;
    return 0;
}

int http_request_info(const struct http_msg *m, struct http_info *info)
{
    bool cl_seen = false;
    int te_count = 0, host_count = 0, te_status = 0;
    struct conn_scan cs = {0};
    *info = (struct http_info){0};

    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (HTTP_NAME_IS(f, "content-length")) {
            if (length_field(f, &cl_seen, &info->length, 400) < 0)
                return -400;
        } else if (HTTP_NAME_IS(f, "transfer-encoding")) {
            if (++te_count == 1)
                te_status = check_te(f->value, f->value_len);
        } else if (HTTP_NAME_IS(f, "host")) {
            if (++host_count > 1 || !host_ok(f->value, f->value_len))
                return -400;
            info->host = f->value;
            info->host_len = f->value_len;
        } else if (HTTP_NAME_IS(f, "connection")) {
            http_list_each(f->value, f->value_len, conn_token, &cs);
            if (cs.bad)
                return -400;
        } else if (HTTP_NAME_IS(f, "expect")) {
            if (IEQ(f->value, f->value_len, "100-continue"))
                info->expect_continue = true;
        }
    }
    info->has_length = cl_seen;
    info->content_length = info->length;
    info->has_host = host_count == 1;
    if (m->minor == 1 && !info->has_host)
        return -400;
    if (te_count > 1)
        return -400;   /* two lines: parties may disagree on which one counts */
    if (te_status < 0)
        return te_status;
    if (te_count) {
        if (m->minor == 0 || cl_seen)
            return -400;
        info->framing = HTTP_BODY_CHUNKED;
    } else if (cl_seen && info->length > 0) {
        info->framing = HTTP_BODY_LENGTH;
    } else {
        info->framing = HTTP_BODY_NONE;
        info->length = 0;
    }
    info->conn_keepalive = cs.keepalive;
    info->conn_close = m->minor == 0 ? !cs.keepalive : cs.close;
    if (!(info->framing == HTTP_BODY_CHUNKED || info->framing == HTTP_BODY_LENGTH))
        info->expect_continue = false;
    return 0;
}

int http_response_info(const struct http_msg *m, bool is_head, struct http_info *info)
{
    bool cl_seen = false;
    int te_count = 0;
    struct conn_scan cs = {0};
    *info = (struct http_info){0};

    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (HTTP_NAME_IS(f, "content-length")) {
            if (length_field(f, &cl_seen, &info->length, 502) < 0)
                return -502;
        } else if (HTTP_NAME_IS(f, "transfer-encoding")) {
            if (++te_count > 1 || !IEQ(f->value, f->value_len, "chunked"))
                return -502;
        } else if (HTTP_NAME_IS(f, "connection")) {
            http_list_each(f->value, f->value_len, conn_token, &cs);
            if (cs.bad)
                return -502;   /* would strip the response's own framing */
        }
    }
    if (te_count && cl_seen)
        return -502;
    info->has_length = cl_seen;
    info->content_length = info->length;
    info->conn_keepalive = cs.keepalive;
    info->conn_close = m->minor == 0 ? !cs.keepalive : cs.close;
    if (is_head || m->status < 200 || m->status == 204 || m->status == 304) {
        info->framing = HTTP_BODY_NONE;
        info->length = 0;
    } else if (te_count) {
        info->framing = HTTP_BODY_CHUNKED;
    } else if (cl_seen) {
        info->framing = info->length ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    } else {
        info->framing = HTTP_BODY_CLOSE;
    }
    return 0;
}

enum {
    C_SIZE = 0, C_SIZE_MORE, C_SIZE_WS, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR,
    C_DATA_LF, C_TR_START, C_TR_LINE, C_TR_LF, C_FINAL_LF, C_DONE,
};

/* One state machine over bytes, in one function on purpose: every state
 * sees the same cursor and output position, and splitting it would pass
 * them around per byte on the hot path of every chunked body. */
ssize_t http_chunked_feed(struct http_chunked *c, char *p, size_t len, size_t *data_len)
{
    size_t i = 0, out = 0;

    while (i < len && c->state != C_DONE) {
        unsigned char ch = (unsigned char)p[i];
        size_t i0 = i;
        bool trailer_bytes = c->state == C_TR_LINE || c->state == C_TR_LF;
        int h;
        switch (c->state) {
        case C_SIZE:
            if ((h = hexval(ch)) < 0)
                return -400;
            c->left = (uint64_t)h;
            c->n = 1;
            c->state = C_SIZE_MORE;
            i++;
            break;
        case C_SIZE_MORE:
            if ((h = hexval(ch)) >= 0) {
                if (++c->n > 16)
                    return -400;
                c->left = (c->left << 4) | (uint64_t)h;
                i++;
            } else if (ch == '\r') {
                c->state = C_SIZE_LF;
                i++;
            } else if (ch == ';') {
                c->n = 0;
                c->state = C_EXT;
                i++;
            } else if (ch == ' ' || ch == '\t') {
                c->state = C_SIZE_WS;
                i++;
            } else {
                return -400;
            }
            break;
        case C_SIZE_WS:  /* BWS is allowed only before a chunk extension */
            if (ch == ';') {
                c->n = 0;
                c->state = C_EXT;
            } else if (ch != ' ' && ch != '\t') {
                return -400;
            }
            i++;
            break;
        case C_EXT:
            if (ch == '\r') {
                c->state = C_SIZE_LF;
            } else if (!is_value_char(ch) || ++c->n > HTTP_CHUNK_EXT_MAX) {
                return -400;
            }
            i++;
            break;
        case C_SIZE_LF:
            if (ch != '\n')
                return -400;
            i++;
            c->state = c->left ? C_DATA : C_TR_START;
            c->trailer = 0;
            break;
        case C_DATA: {
            size_t k = len - i;
            if (k > c->left)
                k = (size_t)c->left;
            if (data_len && !c->keep_framing) {
                if (out != i)
                    memmove(p + out, p + i, k);
                out += k;
            }
            i += k;
            c->left -= k;
            c->payload += k;
            if (!c->left)
                c->state = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            if (ch != '\r')
                return -400;
            c->state = C_DATA_LF;
            i++;
            break;
        case C_DATA_LF:
            if (ch != '\n')
                return -400;
            c->state = C_SIZE;
            i++;
            break;
        case C_TR_START:
            if (ch == '\r') {
                c->state = C_FINAL_LF;
                i++;
            } else if (is_tchar(ch)) {
                c->state = C_TR_LINE;
            } else {
                return -400;   /* obs-fold, bare LF, or junk */
            }
            break;
        case C_TR_LINE:
            if (ch == '\r')
                c->state = C_TR_LF;
            else if (!is_value_char(ch))
                return -400;
            if (++c->trailer > HTTP_TRAILER_MAX)
                return -400;
            i++;
            break;
        case C_TR_LF:
            if (ch != '\n')
                return -400;
            c->state = C_TR_START;
            i++;
            break;
        case C_FINAL_LF:
            if (ch != '\n')
                return -400;
            c->state = C_DONE;
            i++;
            break;
        }
        if (data_len && c->keep_framing && !trailer_bytes && i > i0) {
            if (out != i0)
                memmove(p + out, p + i0, i - i0);
            out += i - i0;
        }
    }
    if (data_len)
        *data_len = out;
    return (ssize_t)i;
}

bool http_chunked_done(const struct http_chunked *c)
{
    return c->state == C_DONE;
}

bool http_method_is_head(const char *m, size_t n)
{
    return n == 4 && memcmp(m, "HEAD", 4) == 0;
}

bool http_method_idempotent(const char *m, size_t n)
{
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strlen(ok[i]) == n && memcmp(ok[i], m, n) == 0)
            return true;
    return false;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}
