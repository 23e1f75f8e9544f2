/* test_dns.c -- asynchronous name resolution (src/upstream/dns.h) against a tiny DNS
 * server that runs in the test's own loop on 127.0.0.1 (UDP, and TCP on the
 * same port for truncated answers). */
#define _GNU_SOURCE
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "dns.h"
#include "loop.h"

static struct loop L;

/* ------------------------------------------------------------ the server */

#define T_A 1
#define T_AAAA 28
#define T_SRV 33

/* Fixed records (TTL 60 s unless given; an SRV record's addr is its target).
 * Besides these: "nN.test" has the A record 10.0.0.N; "tcN.test" (and
 * "tc.test", N = 0) is truncated over UDP (TC set, no records) and has the A
 * record 10.2.0.N over TCP. "silent.test" is never answered. Any other name
 * does not exist (NXDOMAIN). */
static const struct {
    const char *name;
    int type;
    const char *addr;
    uint32_t ttl;
    uint16_t prio, weight, port;
} records[] = {
#define RR(n, t, a) {.name = n, .type = t, .addr = a}
#define RR_TTL(n, t, a, s) {.name = n, .type = t, .addr = a, .ttl = s}
#define RR_SRV(n, target, s, pr, w, p) \
    {.name = n, .type = T_SRV, .addr = target, .ttl = s, .prio = pr, .weight = w, .port = p}
    RR("one.test", T_A, "127.0.0.1"),
    RR("dual.test", T_A, "192.0.2.1"),
    RR("dual.test", T_AAAA, "2001:db8::1"),
    RR("dual.test", T_A, "192.0.2.2"),
    RR("dual.test", T_AAAA, "2001:db8::2"),
    RR("six.test", T_AAAA, "2001:db8::6"),
    RR("empty.test", 0, NULL),   /* the name exists, with no address */
    RR("many.test", T_AAAA, "2001:db8::9"),
    RR("many.test", T_A, "10.9.0.1"), RR("many.test", T_A, "10.9.0.2"),
    RR("many.test", T_A, "10.9.0.3"), RR("many.test", T_A, "10.9.0.4"),
    RR("many.test", T_A, "10.9.0.5"), RR("many.test", T_A, "10.9.0.6"),
    RR("many.test", T_A, "10.9.0.7"), RR("many.test", T_A, "10.9.0.8"),
    RR("many.test", T_A, "10.9.0.9"), RR("many.test", T_A, "10.9.0.10"),
    RR_TTL("ttl.test", T_A, "10.1.0.1", 7), RR_TTL("ttl.test", T_A, "10.1.0.2", 3),
    RR_TTL("ttl.test", T_AAAA, "2001:db8::7", 5),
    RR_SRV("_http._tcp.srv.test", "b.test", 30, 20, 5, 8002),
    RR_SRV("_http._tcp.srv.test", "a.test", 40, 10, 1, 8001),
    RR_SRV("_http._tcp.srv.test", "c.test", 25, 10, 9, 8003),
    RR_SRV("_http._tcp.dot.test", "", 30, 0, 0, 0),   /* "." alone: no service here */
#undef RR
#undef RR_TTL
#undef RR_SRV
};

#define HELD_MAX 256
#define CONNS 4

struct held {
    uint8_t buf[512];
    size_t len;
    struct sockaddr_in to;
};

static struct fake {
    struct loop_io udp, lis, conn[CONNS];
    uint16_t port;
    bool hold;              /* keep the answers for 30 ms, then send them all at once */
    struct timer flush;
    unsigned udp_queries, tcp_queries, udp_sent, accepts, flushes;
    bool aaaa_before_a;     /* some AAAA answer left before the A answer of its name */
    struct held held[HELD_MAX];
    unsigned nheld;
    uint8_t tcp_in[CONNS][8192];
    size_t tcp_inlen[CONNS];
    uint8_t tcp_out[CONNS][65536];
    size_t tcp_outlen[CONNS];
} F;

/* Reads the question name at q[12..] as "a.b.c" into name; returns the offset
 * after the question (name, type, class), or 0 when malformed. */
static size_t parse_question(const uint8_t *q, size_t len, char *name, size_t cap, int *qtype)
{
    size_t i = 12, o = 0;
    while (i < len && q[i]) {
        size_t n = q[i++];
        if (n > 63 || i + n > len || o + n + 2 > cap)
            return 0;
        if (o)
            name[o++] = '.';
        for (size_t k = 0; k < n; k++) {
            char c = (char)q[i + k];
            name[o++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        i += n;
    }
    name[o] = 0;
    if (i + 5 > len)
        return 0;
    *qtype = q[i + 1] << 8 | q[i + 2];
    return i + 5;
}

static bool numbered(const char *name, const char *prefix, unsigned *n)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0)
        return false;
    char *end;
    unsigned long v = strtoul(name + pl, &end, 10);
    if (end == name + pl) {
        if (strcmp(prefix, "tc") != 0 || strcmp(end, ".test") != 0)
            return false;
        v = 0;
    }
    if (strcmp(end, ".test") != 0 || v > 255)
        return false;
    *n = (unsigned)v;
    return true;
}

/* Appends a record of `type` (A, AAAA: addr; SRV: prio, weight, port and
 * the target addr) for the question's name, with ttl (0: 60 s). */
static size_t put_rec(uint8_t *out, size_t o, int type, const char *addr, uint32_t ttl,
                      uint16_t prio, uint16_t weight, uint16_t port)
{
    uint8_t rdata[300];
    size_t rlen = 0;
    if (type == T_SRV) {
        const uint8_t fixed[] = {prio >> 8, prio & 0xff, weight >> 8, weight & 0xff,
                                 port >> 8, port & 0xff};
        memcpy(rdata, fixed, sizeof fixed);
        rlen = sizeof fixed;
        for (const char *p = addr; *p;) {   /* the target's labels */
            const char *dot = strchr(p, '.');
            size_t n = dot ? (size_t)(dot - p) : strlen(p);
            rdata[rlen++] = (uint8_t)n;
            memcpy(rdata + rlen, p, n);
            rlen += n;
            p += n + (dot != NULL);
        }
        rdata[rlen++] = 0;
    } else {
        int af = type == T_A ? AF_INET : AF_INET6;
        rlen = type == T_A ? 4 : 16;
        if (inet_pton(af, addr, rdata) != 1)
            abort();
    }
    if (!ttl)
        ttl = 60;
    const uint8_t head[] = {0xc0, 12, 0, (uint8_t)type, 0, 1,
                            (uint8_t)(ttl >> 24), (uint8_t)(ttl >> 16), (uint8_t)(ttl >> 8),
                            (uint8_t)ttl, 0, (uint8_t)rlen};
    memcpy(out + o, head, sizeof head);
    memcpy(out + o + sizeof head, rdata, rlen);
    return o + sizeof head + rlen;
}

static size_t put_rr(uint8_t *out, size_t o, int type, const char *addr)
{
    return put_rec(out, o, type, addr, 60, 0, 0, 0);
}

/* Builds the answer to query q into out (512 bytes); 0 when q is malformed. */
static size_t answer(const uint8_t *q, size_t len, bool tcp, uint8_t *out)
{
    char name[256];
    int qtype;
    size_t qend = parse_question(q, len, name, sizeof name, &qtype);
    if (!qend || qend > 12 + 260 || !strcmp(name, "silent.test"))
        return 0;
    bool exists = false, tc = false;
    unsigned an = 0, n;
    size_t o = qend;
    memcpy(out, q, qend);
    if (numbered(name, "tc", &n)) {
        exists = true;
        if (!tcp)
            tc = true;
        else if (qtype == T_A) {
            char a[32];
            snprintf(a, sizeof a, "10.2.0.%u", n);
            o = put_rr(out, o, T_A, a);
            an++;
        }
    } else if (numbered(name, "n", &n)) {
        exists = true;
        if (qtype == T_A) {
            char a[32];
            snprintf(a, sizeof a, "10.0.0.%u", n);
            o = put_rr(out, o, T_A, a);
            an++;
        }
    } else {
        for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
            if (strcmp(records[i].name, name) != 0)
                continue;
            exists = true;
            if (records[i].type == qtype) {
                o = put_rec(out, o, qtype, records[i].addr, records[i].ttl, records[i].prio,
                            records[i].weight, records[i].port);
                an++;
            }
        }
    }
    /* QR, the opcode, AA, TC, RD; then RA and the rcode */
    out[2] = (uint8_t)(0x80 | (q[2] & 0x79) | 0x04 | (tc ? 0x02 : 0));
    out[3] = (uint8_t)(0x80 | (exists ? 0 : 3));
    out[4] = 0, out[5] = 1;
    out[6] = 0, out[7] = (uint8_t)an;
    memset(out + 8, 0, 4);
    return o;
}

static void fake_flush(void)
{
    /* newest first: of the A and AAAA queries of one name (sent A first),
     * the AAAA answer arrives first, so the client must do the ordering */
    bool aaaa_sent[HELD_MAX] = {0};
    for (unsigned i = F.nheld; i-- > 0;) {
        struct held *h = &F.held[i];
        char name[256];
        int qtype;
        if (parse_question(h->buf, h->len, name, sizeof name, &qtype) && qtype == T_AAAA)
            aaaa_sent[i] = true;
        for (unsigned k = 0; qtype == T_A && k < F.nheld; k++) {
            char other[256];
            int ot;
            if (aaaa_sent[k] && parse_question(F.held[k].buf, F.held[k].len, other,
                                               sizeof other, &ot) && !strcmp(other, name))
                F.aaaa_before_a = true;
        }
        if (sendto(F.udp.fd, h->buf, h->len, 0, (struct sockaddr *)&h->to, sizeof h->to) ==
            (ssize_t)h->len)
            F.udp_sent++;
    }
    F.nheld = 0;
    for (unsigned c = 0; c < CONNS; c++) {
        if (F.conn[c].fd < 0 || !F.tcp_outlen[c])
            continue;
        ssize_t w = write(F.conn[c].fd, F.tcp_out[c], F.tcp_outlen[c]);   /* all at once */
        if (w != (ssize_t)F.tcp_outlen[c])
            fprintf(stderr, "fake server: short TCP write\n");
        F.tcp_outlen[c] = 0;
    }
    F.flushes++;
}

static void on_fake_flush(struct timer *t)
{
    (void)t;
    fake_flush();
}

static void fake_answered(void)
{
    if (!F.hold)
        fake_flush();
    else if (!F.flush.armed)
        loop_timer_at(&L, &F.flush, L.now + 30 * MS);
}

static void on_fake_udp(struct loop_io *io, uint32_t events)
{
    (void)events;
    for (;;) {
        uint8_t q[512];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(io->fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        if (n < 0)
            break;
        F.udp_queries++;
        if (F.nheld == HELD_MAX)
            continue;
        struct held *h = &F.held[F.nheld];
        h->len = answer(q, (size_t)n, false, h->buf);
        h->to = from;
        if (h->len)
            F.nheld++;
    }
    fake_answered();
}

static void on_fake_conn(struct loop_io *io, uint32_t events)
{
    (void)events;
    unsigned c = (unsigned)(io - F.conn);
    for (;;) {
        ssize_t n = read(io->fd, F.tcp_in[c] + F.tcp_inlen[c], sizeof F.tcp_in[c] - F.tcp_inlen[c]);
        if (n == 0) {
            loop_close(&L, io);
            return;
        }
        if (n < 0)
            break;
        F.tcp_inlen[c] += (size_t)n;
    }
    size_t i = 0;
    while (F.tcp_inlen[c] - i >= 2) {
        size_t ql = (size_t)(F.tcp_in[c][i] << 8 | F.tcp_in[c][i + 1]);
        if (F.tcp_inlen[c] - i - 2 < ql)
            break;
        F.tcp_queries++;
        uint8_t *o = F.tcp_out[c] + F.tcp_outlen[c];
        if (F.tcp_outlen[c] + 514 <= sizeof F.tcp_out[c]) {
            size_t al = answer(F.tcp_in[c] + i + 2, ql, true, o + 2);
            o[0] = (uint8_t)(al >> 8), o[1] = (uint8_t)al;
            if (al)
                F.tcp_outlen[c] += al + 2;
        }
        i += 2 + ql;
    }
    memmove(F.tcp_in[c], F.tcp_in[c] + i, F.tcp_inlen[c] - i);
    F.tcp_inlen[c] -= i;
    fake_answered();
}

static void on_fake_listener(struct loop_io *io, uint32_t events)
{
    (void)events;
    int fd;
    while ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        unsigned c = 0;
        while (c < CONNS && F.conn[c].fd >= 0)
            c++;
        if (c == CONNS) {
            close(fd);
            continue;
        }
        F.tcp_inlen[c] = F.tcp_outlen[c] = 0;
        F.accepts++;
        loop_add(&L, &F.conn[c], fd, on_fake_conn);
    }
}

/* A bound socket of `type` on 127.0.0.1:port (0: any); its port in *port. */
static int bound(int type, uint16_t *port)
{
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Starts the server (UDP and TCP on one port) in L; fills servers "127.0.0.1:port". */
static void fake_start(bool hold, char *servers, size_t cap)
{
    memset(&F, 0, sizeof F);
    F.hold = hold;
    timer_init(&F.flush, on_fake_flush);
    for (unsigned c = 0; c < CONNS; c++)
        F.conn[c].fd = -1;
    for (int tries = 0; tries < 20; tries++) {
        uint16_t port = 0;
        int u = bound(SOCK_DGRAM, &port);
        int t = u >= 0 ? bound(SOCK_STREAM, &port) : -1;
        if (t >= 0 && listen(t, 16) == 0) {
            F.port = port;
            loop_add(&L, &F.udp, u, on_fake_udp);
            loop_add_listener(&L, &F.lis, t, on_fake_listener);
            snprintf(servers, cap, "127.0.0.1:%u", port);
            return;
        }
        if (t >= 0)
            close(t);
        if (u >= 0)
            close(u);
    }
    fprintf(stderr, "cannot bind the fake DNS server\n");
    abort();
}

static void fake_stop(void)
{
    loop_timer_stop(&L, &F.flush);
    loop_close(&L, &F.udp);
    loop_close(&L, &F.lis);
    for (unsigned c = 0; c < CONNS; c++)
        loop_close(&L, &F.conn[c]);
}

/* ------------------------------------------------------------ the client */

struct result {
    int calls;
    int status;
    unsigned n;
    struct sockaddr_storage a[DNS_MAX_ADDRS];
    uint32_t ttl;
    struct dns_srv srv[DNS_MAX_SRV];
    uint64_t at;             /* ns of the (last) call */
    struct dns_query *q;     /* when set: must be idle during the call */
    bool q_idle;
};

static int outstanding;     /* callbacks still awaited: the loop stops at 0 */

static void on_result(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n,
                      uint32_t ttl)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    r->n = n;
    r->ttl = ttl;
    if (n)
        memcpy(r->a, addrs, n * sizeof *addrs);
    r->at = loop_clock_ns();
    if (r->q)
        r->q_idle = !dns_pending(r->q);
    if (--outstanding == 0)
        L.stop = 1;
}

static void on_guard(struct timer *t)
{
    (void)t;
    L.stop = 1;
}

static void run_loop(uint64_t limit_ms)
{
    struct timer guard;
    timer_init(&guard, on_guard);
    loop_timer_at(&L, &guard, loop_clock_ns() + limit_ms * MS);
    L.stop = 0;
    loop_run(&L);
    loop_timer_stop(&L, &guard);
    L.stop = 0;
}

/* Runs the loop until `outstanding` callbacks have come, or limit_ms. */
static void run(uint64_t limit_ms)
{
    if (outstanding > 0)
        run_loop(limit_ms);
}

/* Runs the loop for ms, whatever comes (a stray callback would show). */
static void settle(uint64_t ms)
{
    outstanding = 0;
    run_loop(ms);
}

/* "1.2.3.4:80" or "[::1]:80". */
static const char *str(const struct sockaddr_storage *ss)
{
    static char out[4][80];
    static unsigned k;
    char *s = out[k++ % 4], a[64] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const void *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, a, sizeof a);
        snprintf(s, 80, "%s:%u", a, ntohs(sin->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const void *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof a);
        snprintf(s, 80, "[%s]:%u", a, ntohs(sin6->sin6_port));
    } else {
        snprintf(s, 80, "family %d", ss->ss_family);
    }
    return s;
}

static char servers[64];

/* A loop, the server, and the resolver pointed at it. */
static bool setup(bool hold, unsigned try_ms, unsigned tries)
{
    if (loop_init(&L) < 0)
        abort();
    fake_start(hold, servers, sizeof servers);
    struct dns_config c = {.servers = servers, .try_ms = try_ms, .tries = tries};
    outstanding = 0;
    return CHECK_EQ_INT(dns_init(&L, &c), 0);
}

static void teardown(void)
{
    dns_shutdown();
    fake_stop();
    loop_free(&L);
}

/* Resolves one name, waiting up to 2 s. */
static void resolve1(const char *name, uint16_t port, struct result *r)
{
    struct dns_query q = {0};
    memset(r, 0, sizeof *r);
    r->q = &q;
    outstanding = 1;
    if (!CHECK_EQ_INT(dns_resolve(&q, name, port, on_result, r), 0))
        return;
    CHECK(dns_pending(&q));
    CHECK_EQ_INT(r->calls, 0);   /* never from inside dns_resolve */
    run(2000);
    CHECK_EQ_INT(r->calls, 1);
    CHECK(r->q_idle);
    CHECK(!dns_pending(&q));
    r->q = NULL;
}

/* ------------------------------------------------------------ tests */

TEST(resolves_a_name)
{
    if (!setup(false, 1000, 2))
        return;
    struct result r;
    resolve1("one.test", 8080, &r);
    CHECK_EQ_INT(r.status, 0);
    if (CHECK_EQ_INT(r.n, 1))
        CHECK_EQ_STR(str(&r.a[0]), "127.0.0.1:8080");
    resolve1("ONE.test", 1, &r);   /* names are case-insensitive */
    CHECK_EQ_INT(r.status, 0);
    if (CHECK_EQ_INT(r.n, 1))
        CHECK_EQ_STR(str(&r.a[0]), "127.0.0.1:1");
    teardown();
}

TEST(both_families_ipv4_first)
{
    if (!setup(false, 1000, 2))
        return;
    struct result r;
    resolve1("dual.test", 443, &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK(F.aaaa_before_a);   /* the server did answer AAAA first */
    if (CHECK_EQ_INT(r.n, 4)) {
        CHECK_EQ_STR(str(&r.a[0]), "192.0.2.1:443");
        CHECK_EQ_STR(str(&r.a[1]), "192.0.2.2:443");
        CHECK_EQ_STR(str(&r.a[2]), "[2001:db8::1]:443");
        CHECK_EQ_STR(str(&r.a[3]), "[2001:db8::2]:443");
    }
    resolve1("six.test", 65535, &r);
    CHECK_EQ_INT(r.status, 0);
    if (CHECK_EQ_INT(r.n, 1))
        CHECK_EQ_STR(str(&r.a[0]), "[2001:db8::6]:65535");
    /* 10 A and 1 AAAA: the first 8, all IPv4 */
    resolve1("many.test", 80, &r);
    CHECK_EQ_INT(r.status, 0);
    if (CHECK_EQ_INT(r.n, DNS_MAX_ADDRS)) {
        CHECK_EQ_STR(str(&r.a[0]), "10.9.0.1:80");
        CHECK_EQ_STR(str(&r.a[7]), "10.9.0.8:80");
    }
    teardown();
}

TEST(ttl_is_the_smallest)
{
    if (!setup(false, 1000, 2))
        return;
    struct result r;
    resolve1("ttl.test", 80, &r);   /* A 7 s and 3 s, AAAA 5 s */
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(r.n, 3);
    CHECK_EQ_INT(r.ttl, 3);
    resolve1("one.test", 80, &r);
    CHECK_EQ_INT(r.ttl, 60);
    resolve1("nx.test", 80, &r);
    CHECK_EQ_INT(r.status, -ENOENT);
    CHECK_EQ_INT(r.ttl, 0);
    teardown();
}

static void on_srv(void *arg, int status, const struct dns_srv *recs, unsigned n, uint32_t ttl)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    r->n = n;
    r->ttl = ttl;
    if (n)
        memcpy(r->srv, recs, n * sizeof *recs);
    if (--outstanding == 0)
        L.stop = 1;
}

static void srv1(const char *name, struct result *r)
{
    struct dns_query q = {0};
    memset(r, 0, sizeof *r);
    outstanding = 1;
    if (!CHECK_EQ_INT(dns_srv(&q, name, on_srv, r), 0))
        return;
    CHECK(dns_pending(&q));
    CHECK_EQ_INT(r->calls, 0);   /* never from inside dns_srv */
    run(2000);
    CHECK_EQ_INT(r->calls, 1);
    CHECK(!dns_pending(&q));
}

TEST(srv_records)
{
    if (!setup(false, 1000, 2))
        return;
    struct result r;
    srv1("_http._tcp.srv.test", &r);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_INT(r.ttl, 25);
    if (CHECK_EQ_INT(r.n, 3)) {   /* priority, then the heavier first */
        CHECK_EQ_STR(r.srv[0].target, "c.test");
        CHECK_EQ_INT(r.srv[0].port, 8003);
        CHECK_EQ_INT(r.srv[0].priority, 10);
        CHECK_EQ_INT(r.srv[0].weight, 9);
        CHECK_EQ_STR(r.srv[1].target, "a.test");
        CHECK_EQ_INT(r.srv[1].port, 8001);
        CHECK_EQ_STR(r.srv[2].target, "b.test");
        CHECK_EQ_INT(r.srv[2].priority, 20);
        CHECK_EQ_INT(r.srv[2].weight, 5);
    }
    srv1("_http._tcp.dot.test", &r);   /* "." alone: no service */
    CHECK_EQ_INT(r.status, -ENOENT);
    CHECK_EQ_INT(r.n, 0);
    srv1("_http._tcp.nx.test", &r);
    CHECK_EQ_INT(r.status, -ENOENT);
    CHECK_EQ_INT(r.ttl, 0);
    srv1("one.test", &r);   /* the name exists, without SRV records */
    CHECK_EQ_INT(r.status, -ENOENT);
    struct dns_query q = {0};
    CHECK_EQ_INT(dns_srv(&q, "", on_srv, &r), -EINVAL);
    teardown();
}

TEST(no_such_name)
{
    /* a search domain from the environment (as from resolv.conf) must not
     * apply with explicit servers: one A and one AAAA query per name */
    setenv("LOCALDOMAIN", "example.com", 1);
    bool ok = setup(false, 1000, 2);
    unsetenv("LOCALDOMAIN");
    if (!ok)
        return;
    struct result r;
    resolve1("nx.test", 80, &r);
    CHECK_EQ_INT(r.status, -ENOENT);
    CHECK_EQ_INT(r.n, 0);
    resolve1("empty.test", 80, &r);   /* exists, but has no address */
    CHECK_EQ_INT(r.status, -ENOENT);
    CHECK_EQ_INT(r.n, 0);
    CHECK_EQ_INT(F.udp_queries, 4);
    /* nor /etc/hosts, which has "localhost" (c-ares 1.18 will not ask a
     * DNS server for it: a failure without a query) */
    resolve1("localhost", 80, &r);
    CHECK(r.status < 0);
    CHECK_EQ_INT(r.n, 0);
    teardown();
}

TEST(timeout)
{
    if (loop_init(&L) < 0)
        abort();
    uint16_t port = 0;
    int mute = bound(SOCK_DGRAM, &port);   /* takes queries, never answers */
    if (!CHECK(mute >= 0))
        return;
    char s[64];
    snprintf(s, sizeof s, "127.0.0.1:%u", port);
    struct dns_config c = {.servers = s, .try_ms = 100, .tries = 2};
    if (CHECK_EQ_INT(dns_init(&L, &c), 0)) {
        struct result r = {0};
        struct dns_query q = {0};
        outstanding = 1;
        uint64_t t0 = loop_clock_ns();
        CHECK_EQ_INT(dns_resolve(&q, "one.test", 80, on_result, &r), 0);
        run(3000);
        CHECK_EQ_INT(r.calls, 1);
        CHECK_EQ_INT(r.status, -ETIMEDOUT);
        uint64_t ms = (r.at - t0) / MS;
        /* c-ares doubles the per-try timeout each round: 100 + 200 ms */
        CHECK(ms >= 150 && ms <= 1000);
        if (ms < 150 || ms > 1000)
            fprintf(stderr, "    timed out after %" PRIu64 " ms\n", ms);
        CHECK(!dns_pending(&q));
        dns_shutdown();
    }
    close(mute);
    loop_free(&L);
}

/* 20 queries (40 with AAAA) whose answers the server sends in one burst: all
 * reach c-ares through a single edge. A per-try timeout of 5 s keeps c-ares's
 * retransmissions from hiding a stall. */
TEST(concurrent_udp)
{
    if (!setup(true, 5000, 1))
        return;
    enum { N = 20 };
    struct dns_query q[N] = {{0}};
    struct result r[N];
    memset(r, 0, sizeof r);
    outstanding = N;
    for (unsigned i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%u.test", i);
        CHECK_EQ_INT(dns_resolve(&q[i], name, (uint16_t)(1000 + i), on_result, &r[i]), 0);
    }
    run(1500);
    CHECK_EQ_INT(outstanding, 0);
    CHECK_EQ_INT(F.udp_queries, 2 * N);
    CHECK_EQ_INT(F.flushes, 1);   /* one burst */
    for (unsigned i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "10.0.0.%u:%u", i, 1000 + i);
        CHECK_EQ_INT(r[i].calls, 1);
        CHECK_EQ_INT(r[i].status, 0);
        if (CHECK_EQ_INT(r[i].n, 1))
            CHECK_EQ_STR(str(&r[i].a[0]), want);
    }
    teardown();
}

/* Truncated over UDP, so c-ares asks again over TCP: 40 length-prefixed
 * answers written with one write(2), which c-ares reads two recv calls per
 * answer. A query that is never answered keeps c-ares's sockets open (1.18
 * closes them all when no query is left) for the last part. */
TEST(concurrent_tcp)
{
    if (!setup(true, 5000, 1))
        return;
    struct dns_query silent = {0};
    struct result never = {0};
    CHECK_EQ_INT(dns_resolve(&silent, "silent.test", 80, on_result, &never), 0);
    enum { N = 20 };
    struct dns_query q[N] = {{0}};
    struct result r[N];
    memset(r, 0, sizeof r);
    outstanding = N;
    for (unsigned i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "tc%u.test", i);
        CHECK_EQ_INT(dns_resolve(&q[i], name, 53, on_result, &r[i]), 0);
    }
    run(1500);
    CHECK_EQ_INT(outstanding, 0);
    CHECK_EQ_INT(F.tcp_queries, 2 * N);
    for (unsigned i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "10.2.0.%u:53", i);
        CHECK_EQ_INT(r[i].calls, 1);
        CHECK_EQ_INT(r[i].status, 0);
        if (CHECK_EQ_INT(r[i].n, 1))
            CHECK_EQ_STR(str(&r[i].a[0]), want);
    }
    /* a later query reuses the open TCP connection: c-ares asks for write
     * interest on a socket that has been writable all along (no new edge) */
    struct result one;
    unsigned before = F.tcp_queries;
    F.hold = false;
    resolve1("tc.test", 80, &one);
    CHECK_EQ_INT(one.status, 0);
    CHECK_EQ_INT(F.tcp_queries, before + 2);
    CHECK_EQ_INT(F.accepts, 1);
    if (CHECK_EQ_INT(one.n, 1))
        CHECK_EQ_STR(str(&one.a[0]), "10.2.0.0:80");
    CHECK_EQ_INT(never.calls, 0);
    CHECK(dns_pending(&silent));
    dns_cancel(&silent);
    teardown();
}

TEST(cancel)
{
    if (!setup(true, 1000, 2))
        return;
    struct dns_query qc = {0}, ql = {0}, qw = {0};
    struct result cancelled = {0}, literal = {0}, witness = {0};
    CHECK_EQ_INT(dns_resolve(&qc, "one.test", 80, on_result, &cancelled), 0);
    CHECK_EQ_INT(dns_resolve(&ql, "::1", 80, on_result, &literal), 0);  /* answered at once */
    CHECK_EQ_INT(dns_resolve(&qw, "dual.test", 80, on_result, &witness), 0);
    dns_cancel(&qc);
    dns_cancel(&ql);
    CHECK(!dns_pending(&qc));
    CHECK(!dns_pending(&ql));
    CHECK(dns_pending(&qw));
    dns_cancel(&qc);   /* twice: a no-op */
    struct dns_query idle = {0};
    dns_cancel(&idle);
    CHECK(!dns_pending(&idle));
    outstanding = 1;
    run(2000);
    CHECK_EQ_INT(witness.calls, 1);   /* answered in the same burst as one.test */
    CHECK_EQ_INT(F.udp_sent, 4);
    settle(100);   /* any stray callback would come now */
    CHECK_EQ_INT(cancelled.calls, 0);
    CHECK_EQ_INT(literal.calls, 0);
    /* a cancelled query can be used again at once */
    struct result again = {0};
    F.hold = false;
    outstanding = 1;
    CHECK_EQ_INT(dns_resolve(&qc, "one.test", 81, on_result, &again), 0);
    dns_cancel(&qc);
    CHECK_EQ_INT(dns_resolve(&qc, "one.test", 82, on_result, &again), 0);
    run(2000);
    CHECK_EQ_INT(again.calls, 1);
    if (CHECK_EQ_INT(again.n, 1))
        CHECK_EQ_STR(str(&again.a[0]), "127.0.0.1:82");
    teardown();
}

/* c-ares 1.18 answers an IPv6 literal and a malformed name from inside
 * ares_getaddrinfo (an IPv4 literal goes to the servers with AF_UNSPEC): the
 * callback still comes later. */
static struct dns_query chain_q;
static struct result chain_second;

static void on_chain_first(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n,
                           uint32_t ttl)
{
    outstanding++;
    on_result(arg, status, addrs, n, ttl);
    /* the query is idle in its callback: start the next one on it */
    CHECK_EQ_INT(dns_resolve(&chain_q, "one.test", 9, on_result, &chain_second), 0);
    CHECK_EQ_INT(chain_second.calls, 0);
}

TEST(never_synchronous)
{
    if (!setup(false, 1000, 2))
        return;
    struct result r;
    resolve1("::1", 80, &r);   /* checks calls == 0 right after dns_resolve */
    CHECK_EQ_INT(r.status, 0);
    if (CHECK_EQ_INT(r.n, 1))
        CHECK_EQ_STR(str(&r.a[0]), "[::1]:80");
    resolve1("a..b", 80, &r);
    CHECK_EQ_INT(r.status, -EIO);
    CHECK_EQ_INT(r.n, 0);
    CHECK_EQ_INT(F.udp_queries, 0);   /* never asked the server */

    struct result first = {0};
    memset(&chain_second, 0, sizeof chain_second);
    outstanding = 1;
    CHECK_EQ_INT(dns_resolve(&chain_q, "::2", 8, on_chain_first, &first), 0);
    CHECK_EQ_INT(first.calls, 0);
    run(2000);
    CHECK_EQ_INT(first.calls, 1);
    CHECK_EQ_INT(chain_second.calls, 1);
    CHECK_EQ_INT(chain_second.status, 0);
    if (CHECK_EQ_INT(chain_second.n, 1))
        CHECK_EQ_STR(str(&chain_second.a[0]), "127.0.0.1:9");
    teardown();
}

/* Shutdown with queries in flight, and from inside a callback. LeakSanitizer
 * checks at exit that nothing of them remains. */
static void on_shutdown_cb(void *arg, int status, const struct sockaddr_storage *addrs, unsigned n,
                           uint32_t ttl)
{
    on_result(arg, status, addrs, n, ttl);
    dns_shutdown();
    L.stop = 1;
}

TEST(shutdown)
{
    if (!setup(true, 1000, 2))
        return;
    struct dns_query q[3] = {{0}};
    struct result r[3];
    memset(r, 0, sizeof r);
    CHECK_EQ_INT(dns_resolve(&q[0], "one.test", 80, on_result, &r[0]), 0);
    CHECK_EQ_INT(dns_resolve(&q[1], "::1", 80, on_result, &r[1]), 0);   /* queued at once */
    CHECK_EQ_INT(dns_resolve(&q[2], "dual.test", 80, on_result, &r[2]), 0);
    dns_cancel(&q[2]);
    dns_shutdown();
    for (unsigned i = 0; i < 3; i++)
        CHECK(!dns_pending(&q[i]));
    settle(200);   /* nothing may come: the server's answers find no resolver */
    for (unsigned i = 0; i < 3; i++)
        CHECK_EQ_INT(r[i].calls, 0);
    CHECK_EQ_INT(dns_resolve(&q[0], "one.test", 80, on_result, &r[0]), -ENOTCONN);
    dns_shutdown();   /* twice: a no-op */

    /* two answers in one burst; the first callback shuts down */
    struct dns_config c = {.servers = servers, .try_ms = 1000, .tries = 2};
    if (CHECK_EQ_INT(dns_init(&L, &c), 0)) {
        memset(r, 0, sizeof r);
        CHECK_EQ_INT(dns_resolve(&q[0], "n1.test", 80, on_shutdown_cb, &r[0]), 0);
        CHECK_EQ_INT(dns_resolve(&q[1], "n2.test", 80, on_shutdown_cb, &r[1]), 0);
        outstanding = 2;
        run(2000);
        settle(100);
        CHECK_EQ_INT(r[0].calls + r[1].calls, 1);
        CHECK(!dns_pending(&q[0]));
        CHECK(!dns_pending(&q[1]));
    }
    teardown();
}

TEST(bad_use)
{
    if (loop_init(&L) < 0)
        abort();
    struct dns_query q = {0};
    struct result r = {0};
    CHECK_EQ_INT(dns_resolve(&q, "one.test", 80, on_result, &r), -ENOTCONN);
    struct dns_config c = {.servers = "not an address"};
    CHECK_EQ_INT(dns_init(&L, &c), -EINVAL);
    c.servers = "";
    CHECK_EQ_INT(dns_init(&L, &c), -EINVAL);
    c.servers = "127.0.0.1:53";
    if (CHECK_EQ_INT(dns_init(&L, &c), 0)) {
        CHECK_EQ_INT(dns_init(&L, &c), -EALREADY);
        CHECK_EQ_INT(dns_resolve(&q, "", 80, on_result, &r), -EINVAL);
        CHECK_EQ_INT(dns_resolve(&q, "::1", 80, on_result, &r), 0);
        CHECK_EQ_INT(dns_resolve(&q, "::1", 80, on_result, &r), -EBUSY);
        dns_shutdown();
        CHECK(!dns_pending(&q));
    }
    CHECK_EQ_INT(r.calls, 0);
    /* no servers: the system's configuration */
    if (CHECK_EQ_INT(dns_init(&L, NULL), 0))
        dns_shutdown();
    loop_free(&L);
}

int main(void)
{
    RUN(resolves_a_name);
    RUN(both_families_ipv4_first);
    RUN(ttl_is_the_smallest);
    RUN(srv_records);
    RUN(no_such_name);
    RUN(timeout);
    RUN(concurrent_udp);
    RUN(concurrent_tcp);
    RUN(cancel);
    RUN(never_synchronous);
    RUN(shutdown);
    RUN(bad_use);
    return unit_summary("test_dns");
}
