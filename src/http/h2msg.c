/* h2msg.c -- HTTP/2 messages as HTTP/1.1 heads and back (see h2msg.h). */
#include "h2msg.h"

#include <stdio.h>
#include <string.h>

void h2msg_req_release(struct h2msg_req *r)
{
    buf_release(&r->lines);
    buf_release(&r->vals);
    uint32_t limit = r->limit;
    *r = (struct h2msg_req){.limit = limit};
}

static uint32_t limit_of(const struct h2msg_req *r)
{
    return r->limit && r->limit < BUF_LARGE ? r->limit : BUF_LARGE;
}

/* Appends n bytes to b, unless the block would outgrow its limit. */
static bool put(struct h2msg_req *r, struct buf *b, const void *p, size_t n)
{
    if (r->over || buf_len(&r->lines) + buf_len(&r->vals) + n > limit_of(r)) {
        r->over = true;
        return false;
    }
    buf_reserve(b, buf_len(b) + n > BUF_SMALL ? BUF_LARGE : BUF_SMALL);
    memcpy(buf_tail(b), p, n);
    b->end += (uint32_t)n;
    return true;
}

static bool is(const char *name, size_t nl, const char *lit)
{
    return nl == strlen(lit) && memcmp(name, lit, nl) == 0;
}

void h2msg_req_field(struct h2msg_req *r, const char *name, size_t nl, const char *value,
                     size_t vl)
{
    if (nl && name[0] == ':') {
        uint32_t *off = NULL, *len = NULL;
        if (is(name, nl, ":method")) {
            off = &r->method_off;
            len = &r->method_len;
        } else if (is(name, nl, ":path")) {
            off = &r->path_off;
            len = &r->path_len;
        } else if (is(name, nl, ":authority")) {
            off = &r->auth_off;
            len = &r->auth_len;
        }
        if (!off)
            return;   /* :scheme: the listener says it (X-Forwarded-Proto) */
        uint32_t at = r->vals.end;
        if (put(r, &r->vals, value, vl)) {
            *off = at;
            *len = (uint32_t)vl;
        }
        r->cookie_off = r->vals.end;   /* (cookies come after: pseudo-fields are first) */
        return;
    }
    if (is(name, nl, "cookie")) {
        if (r->cookie_len && put(r, &r->vals, "; ", 2))
            r->cookie_len += 2;
        if (put(r, &r->vals, value, vl))
            r->cookie_len += (uint32_t)vl;
        return;
    }
    if (is(name, nl, "host") && r->auth_len)
        return;   /* :authority wins */
    /* te (only "trailers" passes nghttp2) is kept: the client takes
     * trailers, which an HTTP/2 upstream is told (fwd_req.keep_te_trailers) */
    if (is(name, nl, "content-length"))
        r->has_length = true;
    if (put(r, &r->lines, name, nl) && put(r, &r->lines, ": ", 2) &&
        put(r, &r->lines, value, vl))
        put(r, &r->lines, "\r\n", 2);
}

bool h2msg_req_is_connect(const struct h2msg_req *r)
{
    return r->vals.data && r->method_len == 7 && memcmp(r->vals.data + r->method_off, "CONNECT", 7) == 0;
}

size_t h2msg_req_size(const struct h2msg_req *r)
{
    return buf_len(&r->lines) + buf_len(&r->vals) + 96;
}

struct out {
    char *p;
    size_t n, cap;
};

static void out(struct out *o, const void *p, size_t n)
{
    if (o->n + n <= o->cap)
        memcpy(o->p + o->n, p, n);
    o->n += n;
}

#define OUTS(o, lit) out((o), (lit), sizeof(lit) - 1)

int h2msg_req_head(const struct h2msg_req *r, bool body_follows, char *dst, size_t cap,
                   bool *chunked)
{
    struct out o = {dst, 0, cap};
    const char *v = r->vals.data ? r->vals.data : "";   /* (no pseudo-field: no storage) */
    *chunked = false;
    if (r->over)
        return -1;
    out(&o, v + r->method_off, r->method_len);
    OUTS(&o, " ");
    out(&o, v + r->path_off, r->path_len);
    OUTS(&o, " HTTP/1.1\r\n");
    if (r->auth_len) {
        OUTS(&o, "host: ");
        out(&o, v + r->auth_off, r->auth_len);
        OUTS(&o, "\r\n");
    }
    if (buf_len(&r->lines))
        out(&o, buf_head(&r->lines), buf_len(&r->lines));
    if (r->cookie_len) {
        OUTS(&o, "cookie: ");
        out(&o, v + r->cookie_off, r->cookie_len);
        OUTS(&o, "\r\n");
    }
    if (!r->has_length) {
        const char *m = v + r->method_off;
        size_t ml = r->method_len;
        if (body_follows) {
            OUTS(&o, "transfer-encoding: chunked\r\n");
            *chunked = true;
        } else if (is(m, ml, "POST") || is(m, ml, "PUT") || is(m, ml, "PATCH")) {
            OUTS(&o, "content-length: 0\r\n");
        }
    }
    OUTS(&o, "\r\n");
    return o.n <= cap ? (int)o.n : -1;
}

bool h2msg_bucket_take(struct h2msg_bucket *b, uint64_t now, uint32_t burst, uint32_t rate)
{
    if (!b->at) {
        b->at = now ? now : 1;
        b->tokens = burst;
    }
    uint64_t add = now > b->at ? (now - b->at) * rate / 1000000000u : 0;
    if (add) {
        b->tokens = b->tokens + add > burst ? burst : (uint32_t)(b->tokens + add);
        b->at = now;
    }
    if (!b->tokens)
        return false;
    b->tokens--;
    return true;
}

static bool bit(const uint64_t *ring, uint32_t idx)
{
    return ring[(idx & 511) >> 6] & (1ull << (idx & 63));
}

static void set_bit(uint64_t *ring, uint32_t idx, bool on)
{
    if (on)
        ring[(idx & 511) >> 6] |= 1ull << (idx & 63);
    else
        ring[(idx & 511) >> 6] &= ~(1ull << (idx & 63));
}

enum h2msg_id h2msg_id_check(struct h2msg_ids *ids, int32_t id)
{
    uint32_t idx = ((uint32_t)id >> 1) + 1;   /* (1 for stream 1: 0 is "none yet") */
    if (idx > ids->max_idx) {
        for (uint32_t i = ids->max_idx + 1; i < idx && i <= ids->max_idx + 512; i++) {
            set_bit(ids->opened, i, false);
            set_bit(ids->reset, i, false);
        }
        ids->max_idx = idx;
        set_bit(ids->opened, idx, true);
        set_bit(ids->reset, idx, false);
        return H2MSG_ID_NEW;
    }
    if (ids->max_idx - idx >= 512)
        return H2MSG_ID_OLD;
    if (!bit(ids->opened, idx))
        return H2MSG_ID_NEVER;
    return bit(ids->reset, idx) ? H2MSG_ID_RESET : H2MSG_ID_OPENED;
}

void h2msg_id_reset(struct h2msg_ids *ids, int32_t id)
{
    uint32_t idx = ((uint32_t)id >> 1) + 1;
    if (idx <= ids->max_idx && ids->max_idx - idx < 512)
        set_bit(ids->reset, idx, true);
}
