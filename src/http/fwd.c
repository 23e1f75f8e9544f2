/* fwd.c -- rewriting message heads as they cross the proxy (see fwd.h). */
#include "fwd.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_CONN_TOKENS 32

struct out {
    char *p;
    size_t n, cap;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || o->cap - o->n < n) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}
#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_field(struct out *o, const struct http_field *f)
{
    put(o, f->name, f->name_len);
    PUTS(o, ": ");
    put(o, f->value, f->value_len);
    PUTS(o, "\r\n");
}

struct tokens { const char *t[MAX_CONN_TOKENS]; size_t n[MAX_CONN_TOKENS]; unsigned count; };

static bool add_token(const char *el, size_t n, void *arg)
{
    struct tokens *tk = arg;
    if (tk->count < MAX_CONN_TOKENS) {
        tk->t[tk->count] = el;
        tk->n[tk->count++] = n;
    }
    return true;
}

static bool ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (y >= 'A' && y <= 'Z')
            y |= 0x20;
        if (x != y)
            return false;
    }
    return true;
}

static void connection_tokens(const struct http_msg *m, struct tokens *tk)
{
    tk->count = 0;
    for (uint32_t i = 0; i < m->nfields; i++)
        if (HTTP_NAME_IS(&m->fields[i], "connection"))
            http_list_each(m->fields[i].value, m->fields[i].value_len, add_token, tk);
}

static bool hop_by_hop(const struct http_field *f, const struct tokens *tk)
{
    if (HTTP_NAME_IS(f, "connection") || HTTP_NAME_IS(f, "keep-alive") ||
        HTTP_NAME_IS(f, "proxy-connection") || HTTP_NAME_IS(f, "te") ||
        HTTP_NAME_IS(f, "trailer") || HTTP_NAME_IS(f, "upgrade") ||
        HTTP_NAME_IS(f, "transfer-encoding"))
        return true;
    for (unsigned i = 0; i < tk->count; i++)
        if (ieq(f->name, f->name_len, tk->t[i], tk->n[i]))
            return true;
    return false;
}

/* n in decimal into v (at least 20 bytes); returns the length. (snprintf
 * cost 1 % of a small request's CPU.) */
static int u64_text(char *v, uint64_t n)
{
    char t[20];
    int k = 0;
    do {
        t[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (int i = 0; i < k; i++)
        v[i] = t[k - 1 - i];
    return k;
}

/* "Content-Length: N" in canonical decimal, once: called for each
 * Content-Length line, it writes at the first and skips the others. With
 * info NULL or no length known, every line is dropped. */
static void put_length(struct out *o, const struct http_info *info, bool *done)
{
    if (*done || !info || !info->has_length)
        return;
    char v[24];
    int n = u64_text(v, info->content_length);
    PUTS(o, "Content-Length: ");
    put(o, v, (size_t)n);
    PUTS(o, "\r\n");
    *done = true;
}

bool fwd_name_has_underscore(const struct http_field *f)
{
    return memchr(f->name, '_', f->name_len) != NULL;
}

/* Emits "Name: v1, v2, ..., extra" merging every line of that field. */
static void put_appended(struct out *o, const struct http_msg *m, const char *lower,
                         size_t lower_len, const char *display, const char *extra)
{
    put(o, display, strlen(display));
    PUTS(o, ": ");
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (http_name_is(f, lower, lower_len) && f->value_len) {
            put(o, f->value, f->value_len);
            PUTS(o, ", ");
        }
    }
    put(o, extra, strlen(extra));
    PUTS(o, "\r\n");
}

/* "Connection: upgrade" and the Upgrade field(s) of m, merged. */
static void put_upgrade(struct out *o, const struct http_msg *m)
{
    PUTS(o, "Connection: upgrade\r\nUpgrade: ");
    bool first = true;
    for (uint32_t i = 0; i < m->nfields; i++)
        if (HTTP_NAME_IS(&m->fields[i], "upgrade") && m->fields[i].value_len) {
            if (!first)
                PUTS(o, ", ");
            put(o, m->fields[i].value, m->fields[i].value_len);
            first = false;
        }
    PUTS(o, "\r\n");
}

static bool is_websocket(const char *el, size_t n, void *arg)
{
    /* "websocket" or "websocket/13": the protocol name, any version */
    if (n >= 9 && ieq(el, 9, "websocket", 9) && (n == 9 || el[9] == '/'))
        *(bool *)arg = true;
    return !*(bool *)arg;
}

static bool is_upgrade(const char *el, size_t n, void *arg)
{
    if (ieq(el, n, "upgrade", 7))
        *(bool *)arg = true;
    return !*(bool *)arg;
}

bool fwd_wants_websocket(const struct http_msg *m)
{
    bool ws = false, up = false;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (HTTP_NAME_IS(f, "upgrade"))
            http_list_each(f->value, f->value_len, is_websocket, &ws);
        else if (HTTP_NAME_IS(f, "connection"))
            http_list_each(f->value, f->value_len, is_upgrade, &up);
    }
    return ws && up;
}

int fwd_split_absolute(const char *t, size_t n, const char **auth, size_t *auth_len,
                       const char **path, size_t *path_len)
{
    if (n < 7 || !ieq(t, 7, "http://", 7))
        return -1;
    size_t i = 7;
    while (i < n && t[i] != '/' && t[i] != '?' && t[i] != '#')
        i++;
    if (i == 7)
        return -1;
    *auth = t + 7;
    *auth_len = i - 7;
    *path = t + i;
    *path_len = n - i;
    return 0;
}

int fwd_request_head(char *buf, size_t cap, const struct fwd_req *r)
{
    const struct http_msg *m = r->m;
    struct out o = {buf, 0, cap, false};
    struct tokens tk;
    const char *auth = NULL, *path = m->target;
    size_t auth_len = 0, path_len = m->target_len;

    connection_tokens(m, &tk);
    fwd_split_absolute(m->target, m->target_len, &auth, &auth_len, &path, &path_len);

    put(&o, m->method, m->method_len);
    PUTS(&o, " ");
    if (path_len == 0 || path[0] == '?')
        PUTS(&o, "/");
    put(&o, path, path_len);
    PUTS(&o, " HTTP/1.1\r\n");

    bool host_done = false, length_done = false;
    unsigned dropped = 0;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (!r->keep_underscores && fwd_name_has_underscore(f)) {
            dropped++;
            continue;
        }
        if (HTTP_NAME_IS(f, "content-length")) {
            put_length(&o, r->info, &length_done);
            continue;
        }
        if (r->keep_te_trailers && HTTP_NAME_IS(f, "te") && ieq(f->value, f->value_len, "trailers", 8)) {
            put_field(&o, f);
            continue;
        }
        if (hop_by_hop(f, &tk) || HTTP_NAME_IS(f, "via") ||
            HTTP_NAME_IS(f, "x-forwarded-for") || HTTP_NAME_IS(f, "x-forwarded-proto") ||
            (r->strip_expect && HTTP_NAME_IS(f, "expect")) ||
            (r->strip_proxy_auth && HTTP_NAME_IS(f, "proxy-authorization")) ||
            (r->deadline_name &&
             ieq(f->name, f->name_len, r->deadline_name, strlen(r->deadline_name))) ||
            (r->grpc && HTTP_NAME_IS(f, "grpc-timeout")) ||
            (r->request_id && HTTP_NAME_IS(f, "x-request-id")))
            continue;
        if (HTTP_NAME_IS(f, "host")) {
            if (auth) {   /* RFC 9112 3.2.2: the target's authority wins */
                PUTS(&o, "Host: ");
                put(&o, auth, auth_len);
                PUTS(&o, "\r\n");
                host_done = true;
                continue;
            }
            host_done = true;
        }
        put_field(&o, f);
    }
    if (!host_done) {
        PUTS(&o, "Host: ");
        if (auth)
            put(&o, auth, auth_len);
        else
            put(&o, r->default_host, strlen(r->default_host));
        PUTS(&o, "\r\n");
    }
    if (r->info->framing == HTTP_BODY_CHUNKED)
        PUTS(&o, "Transfer-Encoding: chunked\r\n");
    put_appended(&o, m, "via", 3, "Via", m->minor == 0 ? "1.0 hourglass" : FWD_VIA);
    put_appended(&o, m, "x-forwarded-for", 15, "X-Forwarded-For", r->client_ip);
    PUTS(&o, "X-Forwarded-Proto: ");
    put(&o, r->proto, strlen(r->proto));
    PUTS(&o, "\r\n");
    if (r->upgrade)
        put_upgrade(&o, m);
    if (r->request_id) {
        PUTS(&o, "X-Request-Id: ");
        put(&o, r->request_id, strlen(r->request_id));
        PUTS(&o, "\r\n");
    }
    if (r->deadline_name && !r->deadline_strip_only) {
        put(&o, r->deadline_name, strlen(r->deadline_name));
        PUTS(&o, ":");
        if (r->deadline_at)
            *r->deadline_at = o.n;
        PUTS(&o, "          \r\n");   /* FWD_DEADLINE_WIDTH blanks */
    }
    if (r->grpc && r->grpc_timeout_at) {
        PUTS(&o, "grpc-timeout:");
        *r->grpc_timeout_at = o.n;
        PUTS(&o, "          \r\n");   /* FWD_DEADLINE_WIDTH blanks */
    }
    PUTS(&o, "\r\n");
    if (r->dropped)
        *r->dropped = dropped;
    return o.full ? -1 : (int)o.n;
}

/* scratch space for fwd_response_fields: NULL when it is full */
static char *take_scratch(char **sp, size_t *left, size_t n)
{
    if (*left < n)
        return NULL;
    char *p = *sp;
    *sp += n;
    *left -= n;
    return p;
}

static const char *lower_name(char **sp, size_t *left, const char *name, size_t n)
{
    char *p = take_scratch(sp, left, n);
    if (p)
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)name[i];
            p[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
        }
    return p;
}

int fwd_response_fields(const struct fwd_resp *r, struct fwd_field *f, size_t max, char *scratch,
                        size_t scap)
{
    const struct http_msg *m = r->m;
    struct tokens tk;
    size_t k = 0;
    bool length_done = false;
    char *sp = scratch;
    size_t left = scap;

    connection_tokens(m, &tk);
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *hf = &m->fields[i];
        if (HTTP_NAME_IS(hf, "content-length")) {
            if (length_done || !r->info || !r->info->has_length)
                continue;
            char v[24];
            int n = u64_text(v, r->info->content_length);
            char *p = take_scratch(&sp, &left, (size_t)n);
            if (!p || k == max)
                return -1;
            memcpy(p, v, (size_t)n);
            f[k++] = (struct fwd_field){"content-length", p, 14, (size_t)n};
            length_done = true;
            continue;
        }
        if (hop_by_hop(hf, &tk) || HTTP_NAME_IS(hf, "via") ||
            (r->request_id && HTTP_NAME_IS(hf, "x-request-id")))
            continue;
        const char *name = lower_name(&sp, &left, hf->name, hf->name_len);
        if (!name || k == max)
            return -1;
        f[k++] = (struct fwd_field){name, hf->value, hf->name_len, hf->value_len};
    }
    /* Via: every line of the upstream's, merged, then ours */
    const char *extra = m->minor == 0 ? "1.0 hourglass" : FWD_VIA;
    char *v = sp;
    size_t vl = 0;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *hf = &m->fields[i];
        if (HTTP_NAME_IS(hf, "via") && hf->value_len) {
            char *p = take_scratch(&sp, &left, hf->value_len + 2);
            if (!p)
                return -1;
            memcpy(p, hf->value, hf->value_len);
            memcpy(p + hf->value_len, ", ", 2);
            vl += hf->value_len + 2;
        }
    }
    char *p = take_scratch(&sp, &left, strlen(extra));
    if (!p || k == max)
        return -1;
    memcpy(p, extra, strlen(extra));
    vl += strlen(extra);
    f[k++] = (struct fwd_field){"via", v, 3, vl};
    if (r->request_id) {
        if (k == max)
            return -1;
        f[k++] = (struct fwd_field){"x-request-id", r->request_id, 12, strlen(r->request_id)};
    }
    if (r->server_timing) {
        if (k == max)
            return -1;
        f[k++] = (struct fwd_field){"server-timing", r->server_timing, 13,
                                    strlen(r->server_timing)};
    }
    return (int)k;
}

int fwd_response_head(char *buf, size_t cap, const struct fwd_resp *r)
{
    const struct http_msg *m = r->m;
    struct out o = {buf, 0, cap, false};
    struct tokens tk;
    char st[4] = {(char)('0' + m->status / 100), (char)('0' + m->status / 10 % 10),
                  (char)('0' + m->status % 10), ' '};

    connection_tokens(m, &tk);
    PUTS(&o, "HTTP/1.1 ");
    put(&o, st, 4);
    put(&o, m->reason, m->reason_len);
    PUTS(&o, "\r\n");
    bool length_done = false;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (HTTP_NAME_IS(f, "content-length")) {
            /* relayed chunked, the body has no length to announce */
            put_length(&o, r->chunked ? NULL : r->info, &length_done);
            continue;
        }
        if (hop_by_hop(f, &tk) || HTTP_NAME_IS(f, "via") ||
            (r->request_id && HTTP_NAME_IS(f, "x-request-id")))
            continue;
        put_field(&o, f);
    }
    if (r->chunked)
        PUTS(&o, "Transfer-Encoding: chunked\r\n");
    put_appended(&o, m, "via", 3, "Via", m->minor == 0 ? "1.0 hourglass" : FWD_VIA);
    if (r->request_id) {
        PUTS(&o, "X-Request-Id: ");
        put(&o, r->request_id, strlen(r->request_id));
        PUTS(&o, "\r\n");
    }
    if (r->server_timing) {
        PUTS(&o, "Server-Timing: ");
        put(&o, r->server_timing, strlen(r->server_timing));
        PUTS(&o, "\r\n");
    }
    if (r->close)
        PUTS(&o, "Connection: close\r\n");
    else if (r->keepalive)
        PUTS(&o, "Connection: keep-alive\r\n");
    else if (r->upgrade)
        put_upgrade(&o, m);
    PUTS(&o, "\r\n");
    return o.full ? -1 : (int)o.n;
}
