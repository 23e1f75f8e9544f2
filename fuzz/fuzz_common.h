/* fuzz_common.h -- helpers shared by the libFuzzer targets in fuzz/.
 *
 * Everything here is written from the RFCs, independently of src/, so that an
 * invariant checked with these helpers does not merely restate the parser. */
#ifndef HG_FUZZ_COMMON_H
#define HG_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* An invariant failed: say which, then die so libFuzzer saves the input. */
#define FUZZ_CHECK(cond)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "\nINVARIANT FAILED: %s\n    at %s:%d\n", #cond,    \
                    __FILE__, __LINE__);                                        \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* A copy of data in a heap block of exactly n bytes (ASan sees any read past
 * the end). n == 0 still gets a valid pointer. */
static inline char *fuzz_dup(const uint8_t *data, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    if (n)
        memcpy(p, data, n);
    return p;
}

/* RFC 9110 5.6.2: tchar. */
static inline bool fz_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB (obs-text included): no control byte but HTAB. */
static inline bool fz_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static inline bool fz_ws(unsigned char c) { return c == ' ' || c == '\t'; }

static inline int fz_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Case-insensitive equality of s[0..n) with a lowercase literal. */
static inline bool fz_ieq(const char *s, size_t n, const char *lit)
{
    size_t ln = strlen(lit);
    if (n != ln)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

/* 1*DIGIT as a uint64; false on anything else or on overflow. */
static inline bool fz_decimal(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static inline bool fz_within(const char *base, size_t len, const char *p, size_t n)
{
    return p >= base && p <= base + len && n <= (size_t)(base + len - p);
}

/* Fields of m named `lower` (a lowercase literal). */
static inline unsigned fz_count(const struct http_msg *m, const char *lower)
{
    unsigned k = 0;
    for (uint32_t i = 0; i < m->nfields; i++)
        if (fz_ieq(m->fields[i].name, m->fields[i].name_len, lower))
            k++;
    return k;
}

/* True when every field named `lower` has a decimal value equal to v. */
static inline bool fz_all_decimal(const struct http_msg *m, const char *lower, uint64_t v)
{
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        uint64_t x;
        if (fz_ieq(f->name, f->name_len, lower) &&
            (!fz_decimal(f->value, f->value_len, &x) || x != v))
            return false;
    }
    return true;
}

/* Content-Length values all decimal and all equal (count may be 0). */
static inline bool fz_cl_consistent(const struct http_msg *m)
{
    bool seen = false;
    uint64_t v0 = 0;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        uint64_t x;
        if (!fz_ieq(f->name, f->name_len, "content-length"))
            continue;
        if (!fz_decimal(f->value, f->value_len, &x))
            return false;
        if (seen && x != v0)
            return false;
        seen = true;
        v0 = x;
    }
    return true;
}

/* Whether m has at most one Content-Length line, written in canonical
 * decimal (no leading zero but "0" itself): what the proxy forwards. */
static inline bool fz_cl_canonical(const struct http_msg *m)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        if (!fz_ieq(f->name, f->name_len, "content-length"))
            continue;
        if (++n > 1 || f->value_len == 0 || (f->value[0] == '0' && f->value_len > 1))
            return false;
    }
    return true;
}

/* Checks what every complete head promises, request or response alike:
 *  - the head is buf[start..len) followed by nothing: it ends with the first
 *    empty line after `start` (CRLF CRLF), and the bytes before start are
 *    empty lines (CRLF pairs) only;
 *  - no bare LF, no CR outside a CRLF, no obs-fold (a line starting with SP
 *    or HTAB);
 *  - every field lies inside the head, has a non-empty tchar name, a value of
 *    field-vchar / SP / HTAB with no leading or trailing whitespace, and the
 *    number of field lines equals nfields;
 *  - nfields within the limits. */
static inline void fz_check_head(const char *buf, size_t len, size_t start,
                                 const struct http_msg *m, const struct http_limits *lim)
{
    FUZZ_CHECK(len >= 4 && start < len);
    FUZZ_CHECK(m->head_len == len);
    FUZZ_CHECK(m->minor == 0 || m->minor == 1);
    for (size_t i = 0; i < start; i += 2)
        FUZZ_CHECK(i + 1 < start && buf[i] == '\r' && buf[i + 1] == '\n');
    FUZZ_CHECK(memcmp(buf + len - 4, "\r\n\r\n", 4) == 0);
    size_t lines = 0;   /* CRLFs from start on */
    for (size_t i = start; i < len; i++) {
        if (buf[i] == '\n')
            FUZZ_CHECK(i > start && buf[i - 1] == '\r');
        if (buf[i] == '\r') {
            FUZZ_CHECK(i + 1 < len && buf[i + 1] == '\n');
            lines++;
            if (i + 2 < len)
                FUZZ_CHECK(!fz_ws((unsigned char)buf[i + 2]));   /* obs-fold */
            /* the head ends at the first empty line */
            if (i + 2 < len && buf[i + 2] == '\r')
                FUZZ_CHECK(i + 4 == len);
        }
    }
    /* start line + fields + the empty line */
    FUZZ_CHECK(lines == (size_t)m->nfields + 2);
    FUZZ_CHECK(m->nfields <= lim->max_fields && m->nfields <= HTTP_MAX_FIELDS_CAP);
    const char *prev_end = buf + start;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct http_field *f = &m->fields[i];
        FUZZ_CHECK(f->name_len > 0);
        FUZZ_CHECK(fz_within(buf, len, f->name, f->name_len));
        FUZZ_CHECK(fz_within(buf, len, f->value, f->value_len));
        FUZZ_CHECK(f->name >= prev_end);   /* in order, no overlap */
        FUZZ_CHECK(f->value >= f->name + f->name_len + 1);
        FUZZ_CHECK(f->name[f->name_len] == ':');   /* no whitespace before the colon */
        for (uint32_t k = 0; k < f->name_len; k++)
            FUZZ_CHECK(fz_tchar((unsigned char)f->name[k]));
        for (uint32_t k = 0; k < f->value_len; k++)
            FUZZ_CHECK(fz_value_char((unsigned char)f->value[k]));
        if (f->value_len) {
            FUZZ_CHECK(!fz_ws((unsigned char)f->value[0]));
            FUZZ_CHECK(!fz_ws((unsigned char)f->value[f->value_len - 1]));
        }
        /* what lies between the colon and the value, and after it up to the
         * CRLF, is whitespace only */
        for (const char *q = f->name + f->name_len + 1; q < f->value; q++)
            FUZZ_CHECK(fz_ws((unsigned char)*q));
        const char *q = f->value + f->value_len;
        while (q < buf + len && *q != '\r')
            FUZZ_CHECK(fz_ws((unsigned char)*q++));
        prev_end = f->value + f->value_len;
    }
}

/* Same head, same fields: two parses of one input must agree exactly. */
static inline bool fz_same_msg(const struct http_msg *a, const struct http_msg *b)
{
    if (a->head_len != b->head_len || a->minor != b->minor || a->nfields != b->nfields ||
        a->status != b->status || a->method != b->method || a->method_len != b->method_len ||
        a->target != b->target || a->target_len != b->target_len ||
        a->reason != b->reason || a->reason_len != b->reason_len)
        return false;
    for (uint32_t i = 0; i < a->nfields; i++)
        if (a->fields[i].name != b->fields[i].name ||
            a->fields[i].name_len != b->fields[i].name_len ||
            a->fields[i].value != b->fields[i].value ||
            a->fields[i].value_len != b->fields[i].value_len)
            return false;
    return true;
}

/* Which prefix lengths of an n-byte input to re-parse: all of them for short
 * inputs, else the first 256, those around the head's end and a spread. */
static inline bool fz_prefix_wanted(size_t k, size_t n, size_t head)
{
    if (n <= 512 || k < 256 || k + 64 >= n)
        return true;
    if (head && k + 64 >= head && k <= head + 8)
        return true;
    return k % (n / 128 + 1) == 0;
}

/* The prefix rule of http.h for one prefix result `rk` (k bytes) of an input
 * whose full parse gave `full`:
 *  - a complete head of H bytes: every shorter prefix is HTTP_INCOMPLETE (it
 *    can still become that head, so it is neither an error nor another head),
 *    every longer one is H again (the parser never looks past the head);
 *  - HTTP_INCOMPLETE: so is every prefix;
 *  - an error: every prefix is HTTP_INCOMPLETE or an error.
 * And the converse: once a prefix is refused, the whole input is too. */
static inline void fz_check_prefix(int full, size_t k, int rk)
{
    if (full > 0) {
        if (k < (size_t)full)
            FUZZ_CHECK(rk == HTTP_INCOMPLETE);
        else
            FUZZ_CHECK(rk == full);
    } else if (full == HTTP_INCOMPLETE) {
        FUZZ_CHECK(rk == HTTP_INCOMPLETE);
    } else {
        FUZZ_CHECK(rk <= 0);
    }
    if (rk < 0)
        FUZZ_CHECK(full < 0);
}

/* Limits small enough that every limit path is reachable by short inputs,
 * all below http_default_limits. */
static inline struct http_limits fz_tiny_limits(uint8_t b)
{
    struct http_limits l = {
        .max_line = 4u + (b & 0x0fu) * 3u,           /* 4..49 */
        .max_head = 8u + ((b >> 4) & 0x07u) * 12u,   /* 8..92 */
        .max_fields = (b & 0x80u) ? 1u : 3u,
    };
    return l;
}

/* Limits large enough for any head fwd_* can write into 64 KiB. */
static const struct http_limits fz_huge_limits = {
    .max_line = 1u << 20, .max_head = 1u << 20, .max_fields = HTTP_MAX_FIELDS_CAP,
};

#define FZ_FWD_CAP 65536u

#endif
