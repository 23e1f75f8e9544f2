/* fuzz_chunked.c -- libFuzzer target: http_chunked_feed in its three modes.
 *
 * The whole input is a chunked body as received. It is fed in each mode --
 * scan (data_len NULL), decode (data_len set), keep-framing (keep_framing = 1,
 * data_len set) -- and each way of splitting it: all at once, one byte at a
 * time, and in pieces (some empty) whose lengths come from a hash of the
 * input. Every piece lies in a heap block of exactly its size. Invariants:
 *  - each call consumes 0..len bytes and writes no more than it consumed; it
 *    stops short of len only when the body is done;
 *  - scan mode leaves the bytes alone;
 *  - all nine runs agree on error, and when there is none on the bytes
 *    consumed and on done-ness; decode runs agree on the payload, keep runs
 *    on the kept bytes;
 *  - when a straightforward RFC 9112 decoder (below) finds the input a valid
 *    chunked body, or a valid prefix of one, every run agrees with it:
 *    no error, the same length, done-ness and payload;
 *  - the keep-framing output, fed to a fresh decoder, decodes without error
 *    to the same payload and done-ness, consuming all of it, and carries no
 *    trailer field. */
#include "fuzz_common.h"

#include <sys/types.h>

/* ---- reference decoder ------------------------------------------------ */

enum { REF_INVALID, REF_PREFIX, REF_DONE };

struct ref {
    int status;
    size_t consumed;     /* REF_DONE: bytes up to and including the final CRLF */
    uint8_t *payload;    /* the chunk data (so far) */
    size_t plen;
    size_t trailer_lines;
};

/* Bounds below those of http.h (HTTP_CHUNK_EXT_MAX, HTTP_TRAILER_MAX) and of
 * a uint64 chunk size: past them the reference declines to judge. */
#define REF_EXT_MAX     4000u
#define REF_TRAILER_MAX 16000u
#define REF_HEX_MAX     16u

/* Decodes d[0..n). strict: chunk-ext and trailer fields as RFC 9112 7.1 and
 * RFC 9110 5 spell them. !strict: an extension is anything printable after
 * ';', a trailer line is a tchar then printable bytes -- only used to find
 * where trailer lines are. Returns the status, also stored in r->status;
 * REF_PREFIX means "valid so far, needs more bytes". */
static int ref_decode(const uint8_t *d, size_t n, bool strict, struct ref *r)
{
    size_t i = 0;
    size_t ext_start = 0, tr_start = 0;
    bool in_ext = false, in_tr = false;
    r->plen = 0;
    r->consumed = 0;
    r->trailer_lines = 0;

#define END()                                                              \
    do {                                                                   \
        if (in_ext && n - ext_start > REF_EXT_MAX)                         \
            return r->status = REF_INVALID;                                \
        if (in_tr && n - tr_start > REF_TRAILER_MAX)                       \
            return r->status = REF_INVALID;                                \
        return r->status = REF_PREFIX;                                     \
    } while (0)
#define NEED()        \
    do {              \
        if (i >= n)   \
            END();    \
    } while (0)
#define BAD() return r->status = REF_INVALID
#define EXPECT(ch)       \
    do {                 \
        NEED();          \
        if (d[i] != (ch)) \
            BAD();       \
        i++;             \
    } while (0)
#define SKIP_WS()                      \
    do {                               \
        while (i < n && fz_ws(d[i]))   \
            i++;                       \
    } while (0)

    for (;;) {
        /* chunk-size */
        uint64_t size = 0;
        size_t digits = 0;
        NEED();
        if (fz_hex(d[i]) < 0)
            BAD();
        while (i < n && fz_hex(d[i]) >= 0) {
            if (++digits > REF_HEX_MAX)
                BAD();
            size = size * 16 + (uint64_t)fz_hex(d[i]);
            i++;
        }
        NEED();
        /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) */
        ext_start = i;
        in_ext = true;
        if (strict) {
            for (;;) {
                size_t ws = i;
                SKIP_WS();
                NEED();
                if (d[i] != ';') {
                    if (i != ws)
                        BAD();   /* BWS only before ';' */
                    break;
                }
                i++;
                SKIP_WS();
                NEED();
                if (!fz_tchar(d[i]))
                    BAD();
                while (i < n && fz_tchar(d[i]))
                    i++;
                SKIP_WS();
                NEED();
                if (d[i] == '=') {
                    i++;
                    SKIP_WS();
                    NEED();
                    if (d[i] == '"') {   /* quoted-string */
                        i++;
                        for (;;) {
                            NEED();
                            unsigned char c = d[i];
                            if (c == '"') {
                                i++;
                                break;
                            }
                            if (c == '\\') {
                                i++;
                                NEED();
                                if (!fz_value_char(d[i]))
                                    BAD();
                                i++;
                                continue;
                            }
                            if (!fz_value_char(c))
                                BAD();
                            i++;
                        }
                    } else {
                        if (!fz_tchar(d[i]))
                            BAD();
                        while (i < n && fz_tchar(d[i]))
                            i++;
                    }
                }
            }
        } else {
            size_t ws = i;
            SKIP_WS();
            NEED();
            if (d[i] == ';') {
                i++;
                while (i < n && d[i] != '\r') {
                    if (!fz_value_char(d[i]))
                        BAD();
                    i++;
                }
            } else if (i != ws) {
                BAD();
            }
        }
        if (i > ext_start && i - ext_start > REF_EXT_MAX)
            BAD();
        EXPECT('\r');
        EXPECT('\n');
        in_ext = false;
        if (size == 0)
            break;
        /* chunk-data CRLF */
        size_t avail = n - i, take = avail < size ? avail : (size_t)size;
        memcpy(r->payload + r->plen, d + i, take);
        r->plen += take;
        i += take;
        if (take < size)
            END();
        EXPECT('\r');
        EXPECT('\n');
    }

    /* trailer-section = *( field-line CRLF ), then CRLF */
    tr_start = i;
    in_tr = true;
    for (;;) {
        NEED();
        if (d[i] == '\r') {
            i++;
            EXPECT('\n');
            r->consumed = i;
            return r->status = REF_DONE;
        }
        if (!fz_tchar(d[i]))
            BAD();
        if (strict) {   /* field-name ":" OWS field-value OWS */
            while (i < n && fz_tchar(d[i]))
                i++;
            EXPECT(':');
        }
        while (i < n && d[i] != '\r') {
            if (!fz_value_char(d[i]))
                BAD();
            i++;
        }
        EXPECT('\r');
        EXPECT('\n');
        r->trailer_lines++;
        if (i - tr_start > REF_TRAILER_MAX)
            BAD();
    }
#undef END
#undef NEED
#undef BAD
#undef EXPECT
#undef SKIP_WS
}

/* ---- runs of http_chunked_feed ----------------------------------------- */

enum mode { SCAN, DECODE, KEEP };
enum split { WHOLE, BYTES, PIECES };

struct run {
    bool err;
    bool done;
    size_t consumed;
    uint8_t *out;   /* DECODE: payload; KEEP: kept bytes */
    size_t out_len;
};

static uint64_t hash_input(const uint8_t *d, size_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Feeds one piece. Returns false when the run is over (error or done). */
static bool feed_piece(struct http_chunked *c, enum mode mode, const uint8_t *src, size_t len,
                       char *block, struct run *run)
{
    memcpy(block, src, len);
    size_t dl = (size_t)-1;
    ssize_t r = http_chunked_feed(c, block, len, mode == SCAN ? NULL : &dl);
    if (r < 0) {
        FUZZ_CHECK(r == -400);
        run->err = true;
        return false;
    }
    FUZZ_CHECK((size_t)r <= len);
    run->consumed += (size_t)r;
    if (mode == SCAN) {
        FUZZ_CHECK(memcmp(block, src, len) == 0);
    } else {
        FUZZ_CHECK(dl <= (size_t)r);
        memcpy(run->out + run->out_len, block, dl);
        run->out_len += dl;
    }
    bool done = http_chunked_done(c);
    if ((size_t)r < len)
        FUZZ_CHECK(done);
    if (done) {
        run->done = true;
        return false;
    }
    return true;
}

static void do_run(const uint8_t *d, size_t n, enum mode mode, enum split split,
                   struct run *run)
{
    struct http_chunked c;
    memset(&c, 0, sizeof c);
    c.keep_framing = mode == KEEP;
    run->err = run->done = false;
    run->consumed = run->out_len = 0;

    switch (split) {
    case WHOLE: {
        char *block = fuzz_dup(d, n);
        if (n == 0) {
            size_t dl = 1;
            FUZZ_CHECK(http_chunked_feed(&c, block, 0, mode == SCAN ? NULL : &dl) == 0);
            FUZZ_CHECK(mode == SCAN || dl == 0);
        } else {
            feed_piece(&c, mode, d, n, block, run);
        }
        free(block);
        break;
    }
    case BYTES: {
        char *block = fuzz_dup(d, 1);
        for (size_t i = 0; i < n; i++)
            if (!feed_piece(&c, mode, d + i, 1, block, run))
                break;
        free(block);
        break;
    }
    case PIECES: {
        uint64_t s = hash_input(d, n) | 1;
        size_t off = 0;
        while (off < n) {
            uint64_t x = next_rand(&s);
            size_t len;
            switch (x & 3) {
            case 0: len = 0; break;
            case 1: len = 1 + (size_t)((x >> 8) % 3); break;
            case 2: len = 1 + (size_t)((x >> 8) % 16); break;
            default: len = 1 + (size_t)((x >> 8) % (n + 1)); break;
            }
            if (len > n - off)
                len = n - off;
            char *block = fuzz_dup(d + off, len);
            bool more = feed_piece(&c, mode, d + off, len, block, run);
            free(block);
            if (!more)
                break;
            off += len;
        }
        break;
    }
    }
    FUZZ_CHECK(run->consumed <= n);
    FUZZ_CHECK(run->done == http_chunked_done(&c));
    if (!run->err && !run->done)
        FUZZ_CHECK(run->consumed == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run runs[3][3];
    uint8_t *payload = malloc(size + 1);
    struct ref ref = {.payload = payload};
    if (!payload)
        abort();
    for (int m = 0; m < 3; m++)
        for (int s = 0; s < 3; s++) {
            runs[m][s].out = malloc(size + 1);
            if (!runs[m][s].out)
                abort();
            do_run(data, size, (enum mode)m, (enum split)s, &runs[m][s]);
        }

    /* all runs agree */
    const struct run *r0 = &runs[SCAN][WHOLE];
    for (int m = 0; m < 3; m++)
        for (int s = 0; s < 3; s++) {
            const struct run *r = &runs[m][s];
            FUZZ_CHECK(r->err == r0->err);
            if (!r0->err)
                FUZZ_CHECK(r->consumed == r0->consumed && r->done == r0->done);
            if (!r0->err && m != SCAN) {
                const struct run *w = &runs[m][WHOLE];
                FUZZ_CHECK(r->out_len == w->out_len && memcmp(r->out, w->out, w->out_len) == 0);
            }
        }

    /* the reference decoder, where it has a verdict */
    ref_decode(data, size, true, &ref);
    if (ref.status != REF_INVALID) {
        FUZZ_CHECK(!r0->err);
        FUZZ_CHECK(r0->done == (ref.status == REF_DONE));
        FUZZ_CHECK(r0->consumed == (ref.status == REF_DONE ? ref.consumed : size));
        const struct run *dec = &runs[DECODE][WHOLE];
        FUZZ_CHECK(dec->out_len == ref.plen && memcmp(dec->out, ref.payload, ref.plen) == 0);
    }

    /* the kept framing decodes to the same payload and has no trailer */
    if (!r0->err) {
        const struct run *keep = &runs[KEEP][WHOLE], *dec = &runs[DECODE][WHOLE];
        struct http_chunked c;
        memset(&c, 0, sizeof c);
        char *block = fuzz_dup(keep->out, keep->out_len);
        size_t dl = (size_t)-1;
        ssize_t r = http_chunked_feed(&c, block, keep->out_len, &dl);
        FUZZ_CHECK(r >= 0 && (size_t)r == keep->out_len);
        FUZZ_CHECK(http_chunked_done(&c) == r0->done);
        FUZZ_CHECK(dl == dec->out_len && memcmp(block, dec->out, dl) == 0);
        free(block);

        ref_decode(data, size, false, &ref);
        if (ref.status != REF_INVALID) {
            ref_decode(keep->out, keep->out_len, false, &ref);
            FUZZ_CHECK(ref.status == (r0->done ? REF_DONE : REF_PREFIX));
            FUZZ_CHECK(ref.trailer_lines == 0);
            if (ref.status == REF_DONE)
                FUZZ_CHECK(ref.consumed == keep->out_len);
            FUZZ_CHECK(ref.plen == dec->out_len && memcmp(ref.payload, dec->out, ref.plen) == 0);
        }
    }

    for (int m = 0; m < 3; m++)
        for (int s = 0; s < 3; s++)
            free(runs[m][s].out);
    free(payload);
    return 0;
}
