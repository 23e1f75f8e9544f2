/* test_conn.c -- the outcomes of conn_read and conn_writev, plain and over
 * TLS, and the connect step (src/base/conn.h). Sockets are socketpairs and
 * loopback TCP; the TLS pair runs over a socketpair with a key and a
 * self-signed certificate made here, in memory. */
#define _GNU_SOURCE
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conn.h"
#include "net.h"

#define BOTH (LOOP_READ | LOOP_WRITE)

static struct loop L;

/* Two connected non-blocking stream sockets as conns, both ready. */
static bool pair(struct conn *a, struct conn *b)
{
    int sv[2];
    *a = *b = (struct conn){.io.fd = -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    *a = (struct conn){.io = {.fd = sv[0], .ready = BOTH}};
    *b = (struct conn){.io = {.fd = sv[1], .ready = BOTH}};
    return true;
}

static void drop(struct conn *c)
{
    conn_close(c, &L);
}

static void no_event(struct loop_io *io, uint32_t events)
{
    (void)io;
    (void)events;
}

static bool readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

/* A test over two connected conns a and b made by setup (pair; tcp_pair and
 * tls_pair: a is the client, b the server), both closed after it (closing
 * one twice is fine). */
#define TEST_OVER(setup, name)                                                                \
    static void name##_over(struct conn *a, struct conn *b UNIT_UNUSED);                      \
    TEST(name)                                                                                \
    {                                                                                         \
        struct conn a, b;                                                                     \
        if (CHECK(setup(&a, &b)))                                                             \
            name##_over(&a, &b);                                                              \
        drop(&a);                                                                             \
        drop(&b);                                                                             \
    }                                                                                         \
    static void name##_over(struct conn *a, struct conn *b UNIT_UNUSED)

TEST_OVER(pair, plain_data_and_the_short_read_rule)
{
    char buf[64];
    CHECK_EQ_INT(write(b->io.fd, "hello", 5), 5);
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 5);
    CHECK_EQ_MEM(buf, 5, "hello");
    CHECK_EQ_INT(a->io.ready & LOOP_READ, 0);   /* short: the socket is drained */

    /* a read that fills the buffer says nothing: the bit stays */
    a->io.ready |= LOOP_READ;
    CHECK_EQ_INT(write(b->io.fd, "0123456789", 10), 10);
    CHECK_EQ_INT(conn_read(a, buf, 4), 4);
    CHECK(a->io.ready & LOOP_READ);
    CHECK_EQ_INT(conn_read(a, buf, 4), 4);
    CHECK_EQ_INT(conn_read(a, buf, 4), 2);
    CHECK_EQ_INT(a->io.ready & LOOP_READ, 0);
    CHECK_EQ_INT(a->io.ready & LOOP_WRITE, LOOP_WRITE);   /* reads leave the write bit */
}

TEST_OVER(pair, plain_would_block_clears_the_read_bit)
{
    char buf[16];
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), -EAGAIN);
    CHECK_EQ_INT(a->io.ready, LOOP_WRITE);
}

TEST_OVER(pair, plain_short_read_after_a_hang_up_keeps_the_read_bit)
{
    char buf[64];
    CHECK_EQ_INT(write(b->io.fd, "last", 4), 4);
    drop(b);
    a->io.ready = LOOP_READ | LOOP_HUP;
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 4);
    CHECK(a->io.ready & LOOP_READ);   /* the end is still to be read: no edge will say so */
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 0);
    CHECK_EQ_INT(a->io.ready, LOOP_READ | LOOP_HUP);   /* the end leaves the bits */
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 0);   /* and reads again */
}

TEST_OVER(pair, plain_end_of_stream)
{
    char buf[16];
    shutdown(b->io.fd, SHUT_WR);
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 0);
}

/* A loopback TCP connection: *client connecting out, *server accepted. */
static bool tcp_pair(struct conn *client, struct conn *server)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    struct sockaddr_storage peer;
    int lfd = net_listen((struct sockaddr *)&sa, sizeof sa, 4), fd = -1;
    *client = *server = (struct conn){.io.fd = -1};
    if (lfd < 0 || getsockname(lfd, (struct sockaddr *)&sa, &len) < 0)
        goto out;
    if (conn_connect(client, &L, (struct sockaddr *)&sa, sizeof sa, no_event) < 0)
        goto out;
    readable(lfd, 1000);
    fd = net_accept(lfd, &peer, &len);
    if (fd >= 0)
        *server = (struct conn){.io = {.fd = fd, .ready = BOTH}};
    else
        drop(client);
out:
    if (lfd >= 0)
        close(lfd);
    return fd >= 0;
}

TEST_OVER(tcp_pair, plain_error_is_minus_errno)
{
    char buf[16];
    struct linger lg = {.l_onoff = 1, .l_linger = 0};   /* close with a reset */
    setsockopt(b->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    drop(b);
    readable(a->io.fd, 1000);
    a->io.ready = LOOP_READ | LOOP_HUP;
    errno = 0;
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), -ECONNRESET);
    CHECK_EQ_INT(errno, ECONNRESET);   /* errno is set too */
    CHECK_EQ_INT(a->io.ready, LOOP_READ | LOOP_HUP);   /* an error leaves the bits */
}

TEST_OVER(pair, plain_writev_partial_then_would_block)
{
    static char big[1 << 20];
    int small = 4096;
    setsockopt(a->io.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    struct iovec iov[2] = {{big, 100}, {big + 100, sizeof big - 100}};
    ssize_t n = conn_writev(a, iov, 2);
    CHECK(n > 0 && (size_t)n < sizeof big);
    CHECK_EQ_INT(a->io.ready & LOOP_WRITE, 0);   /* short: the socket is full */
    CHECK(!a->sealed);
    a->io.ready |= LOOP_WRITE;
    CHECK_EQ_INT(conn_writev(a, iov + 1, 1), -EAGAIN);
    CHECK_EQ_INT(a->io.ready, LOOP_READ);
}

TEST_OVER(pair, plain_whole_writev_keeps_the_write_bit)
{
    struct iovec two[2] = {{"head ", 5}, {"body", 4}};
    CHECK_EQ_INT(conn_writev(a, two, 2), 9);
    CHECK(a->io.ready & LOOP_WRITE);
}

TEST_OVER(pair, plain_writev_error)
{
    drop(b);
    struct iovec iov = {"x", 1};
    CHECK_EQ_INT(conn_writev(a, &iov, 1), -EPIPE);   /* and no SIGPIPE */
    CHECK(a->io.ready & LOOP_WRITE);
}

TEST(rearm_turns_a_writable_event_into_a_read)
{
    struct conn c = {.io = {.fd = -1}, .tls_want = TLS_READ_WANTS_WRITE};
    conn_rearm(&c, LOOP_READ);
    CHECK_EQ_INT(c.io.ready, 0);
    CHECK_EQ_INT(c.tls_want, TLS_READ_WANTS_WRITE);
    conn_rearm(&c, LOOP_WRITE);
    CHECK_EQ_INT(c.io.ready, LOOP_READ);
    CHECK_EQ_INT(c.tls_want, 0);
    c.io.ready = 0;
    conn_rearm(&c, LOOP_WRITE);   /* nothing waits: nothing changes */
    CHECK_EQ_INT(c.io.ready, 0);
}

TEST(open_registers_or_closes)
{
    struct conn c;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);   /* epoll refuses a device file */
    if (!CHECK(fd >= 0))
        return;
    CHECK_EQ_INT(conn_open(&c, &L, fd, no_event), -EPERM);
    CHECK_EQ_INT(c.io.fd, -1);
    CHECK_EQ_INT(fcntl(fd, F_GETFD), -1);   /* closed */
    int sv[2];
    if (!CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0))
        return;
    CHECK_EQ_INT(conn_open(&c, &L, sv[0], no_event), 0);
    CHECK_EQ_INT(c.io.fd, sv[0]);
    CHECK_EQ_INT(c.opening, 0);
    conn_close(&c, &L);
    CHECK_EQ_INT(c.io.fd, -1);
    conn_close(&c, &L);   /* twice is fine */
    close(sv[1]);
}

TEST(connect_step)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    char err[128] = "";
    int lfd = net_listen((struct sockaddr *)&sa, sizeof sa, 4);
    if (!CHECK(lfd >= 0) || !CHECK(getsockname(lfd, (struct sockaddr *)&sa, &len) == 0))
        return;
    struct conn c;
    if (!CHECK_EQ_INT(conn_connect(&c, &L, (struct sockaddr *)&sa, sizeof sa, no_event), 0))
        return;
    CHECK_EQ_INT(c.opening, CONN_OPEN_TCP);
    c.io.ready = 0;
    CHECK_EQ_INT(conn_open_step(&c, err, sizeof err), 0);   /* no edge yet */
    struct pollfd p = {.fd = c.io.fd, .events = POLLOUT};
    CHECK_EQ_INT(poll(&p, 1, 1000), 1);
    c.io.ready = LOOP_WRITE;
    CHECK_EQ_INT(conn_open_step(&c, err, sizeof err), 1);
    CHECK_EQ_INT(c.opening, 0);
    conn_close(&c, &L);

    /* the port closed: refused, at once or by the step */
    close(lfd);
    int r = conn_connect(&c, &L, (struct sockaddr *)&sa, sizeof sa, no_event);
    if (r == 0) {
        p.fd = c.io.fd;
        poll(&p, 1, 1000);
        c.io.ready = LOOP_WRITE | LOOP_HUP;
        r = conn_open_step(&c, err, sizeof err);
        CHECK(c.opening & CONN_OPEN_TCP);   /* the TCP part failed */
        conn_close(&c, &L);
    }
    CHECK_EQ_INT(r, -ECONNREFUSED);
}

/* ---- TLS -------------------------------------------------------------------- */

static SSL_CTX *server_ctx;
static struct tls_client *client_ctx;

/* A P-256 key and a self-signed certificate for it, in a server context. */
static bool make_contexts(void)
{
    char err[256];
    bool ok = false;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!key || !x)
        goto out;
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_set_version(x, 2) != 1 || ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -60) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 3600) ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1,
                                   -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key) != 1 ||
        !X509_sign(x, key, EVP_sha256()))
        goto out;
    server_ctx = SSL_CTX_new(TLS_server_method());
    if (!server_ctx || SSL_CTX_use_certificate(server_ctx, x) != 1 ||
        SSL_CTX_use_PrivateKey(server_ctx, key) != 1)
        goto out;
    SSL_CTX_set_mode(server_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    struct tls_client_conf cc = {.verify = false};
    const char *bad = "";
    client_ctx = tls_client_new(&cc, err, sizeof err, &bad);
    ok = client_ctx != NULL;
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

/* A socketpair with TLS on both ends, handshake done: *cli through the connect
 * step, *srv through tls_handshake. */
static bool tls_pair(struct conn *cli, struct conn *srv)
{
    char err[256];
    if (!pair(cli, srv))
        return false;
    srv->ssl = SSL_new(server_ctx);
    if (!srv->ssl || tls_set_io(srv->ssl, &srv->io) != 0 ||
        conn_tls_client(cli, client_ctx, "test", NULL) != 0)
        goto out_fail;
    SSL_set_accept_state(srv->ssl);
    CHECK_EQ_INT(cli->opening, CONN_OPEN_TLS);
    int c = 0, s = 0;
    for (int i = 0; i < 50 && (c != 1 || s != 1); i++) {
        cli->io.ready = srv->io.ready = BOTH;   /* as if each edge came */
        if (c != 1)
            c = conn_open_step(cli, err, sizeof err);
        if (s != 1)
            s = tls_handshake(srv->ssl, &srv->io.ready, err, sizeof err);
        if (c < 0 || s < 0)
            break;
    }
    if (c == 1 && s == 1 && !cli->opening) {
        cli->io.ready = srv->io.ready = BOTH;
        return true;
    }
    fprintf(stderr, "handshake: client %d server %d: %s\n", c, s, err);
out_fail:
    drop(cli);
    drop(srv);
    return false;
}

TEST_OVER(tls_pair, tls_data_would_block_and_end)
{
    char buf[256];
    struct iovec iov[2] = {{"head ", 5}, {"and body", 8}};
    CHECK_EQ_INT(conn_writev(b, iov, 2), 13);
    CHECK(!b->sealed);
    CHECK(b->io.ready & LOOP_WRITE);
    readable(a->io.fd, 1000);
    ssize_t n = conn_read(a, buf, sizeof buf);
    CHECK_EQ_INT(n, 13);
    if (n == 13)
        CHECK_EQ_MEM(buf, 13, "head and body");
    CHECK_EQ_INT(a->io.ready & LOOP_READ, 0);   /* short over TLS too: drained */

    a->io.ready |= LOOP_READ;
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), -EAGAIN);
    CHECK_EQ_INT(a->io.ready & LOOP_READ, 0);
    CHECK(!conn_pending(a));

    conn_shut_write(b);   /* close_notify, then the TCP end */
    a->io.ready |= LOOP_READ;
    readable(a->io.fd, 1000);
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 0);
}

/* The engine reads the socket only while the read bit is set: after a short
 * read (drained) the next read answers EAGAIN without a system call, even
 * with bytes that came since, until their edge sets the bit again. */
TEST_OVER(tls_pair, tls_read_waits_for_the_edge_after_a_drain)
{
    char buf[256], peek;
    struct iovec one = {"one", 3}, two = {"two", 3};
    /* the client side reads ahead as a listener does: one read(2) per
     * flight of records, and a read short of the room asked drains */
    CHECK_EQ_INT(SSL_get_read_ahead(a->ssl), 1);
    CHECK_EQ_INT(conn_writev(b, &one, 1), 3);
    readable(a->io.fd, 1000);
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 3);
    CHECK_EQ_INT(a->io.ready & LOOP_READ, 0);
    CHECK_EQ_INT(conn_writev(b, &two, 1), 3);
    readable(a->io.fd, 1000);
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), -EAGAIN);
    CHECK_EQ_INT(recv(a->io.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), 1);   /* left there */
    a->io.ready |= LOOP_READ;   /* the edge */
    CHECK_EQ_INT(conn_read(a, buf, sizeof buf), 3);
    CHECK_EQ_MEM(buf, 3, "two");
}

TEST_OVER(tls_pair, tls_end_without_close_notify_is_a_reset_for_the_client)
{
    char buf[64];
    drop(b);   /* no close_notify: from an upstream, maybe a cut body */
    a->io.ready = LOOP_READ | LOOP_HUP;
    ssize_t n = 0;
    for (int i = 0; i < 4 && (n = conn_read(a, buf, sizeof buf)) == -EAGAIN; i++)
        a->io.ready |= LOOP_READ;   /* (a session ticket may come first) */
    CHECK_EQ_INT(n, -ECONNRESET);
}

TEST_OVER(tls_pair, tls_writev_partial_is_sealed)
{
    static char big[1 << 20];
    struct iovec iov[2] = {{big, 100}, {big + 100, sizeof big - 100}};
    ssize_t n = conn_writev(a, iov, 2);   /* the server reads nothing */
    CHECK(n > 0 && (size_t)n < sizeof big);
    CHECK_EQ_INT(a->io.ready & LOOP_WRITE, 0);
    CHECK(a->sealed);   /* the next bytes went into a record already */
    a->io.ready |= LOOP_WRITE;
    size_t off = (size_t)n;
    struct iovec rest = {big + off, sizeof big - off};
    n = conn_writev(a, &rest, 1);
    CHECK_EQ_INT(n, -EAGAIN);
    CHECK_EQ_INT(a->io.ready & LOOP_WRITE, 0);
    CHECK(a->sealed);

    /* the server reads a full buffer: the bit stays */
    char buf[4096];
    readable(b->io.fd, 1000);
    CHECK_EQ_INT(conn_read(b, buf, sizeof buf), (ssize_t)sizeof buf);
    CHECK(b->io.ready & LOOP_READ);
}

/* With read-ahead the engine reads the socket as far as it can: the read
 * that brings the client's Finished may bring its first request too. That
 * read was short, so it cleared the read bit, yet the request waits inside
 * the engine and no edge will come for it; tls_handshake sets the bit. And
 * on a write edge (the bit clear: drained, no edge since) the engine does
 * not read the socket at all (tls_set_io). */
TEST(tls_handshake_end_with_bytes_read_ahead_sets_the_read_bit)
{
    char err[256], buf[64];
    struct conn a, b;
    if (!pair(&a, &b))
        return;
    b.ssl = SSL_new(server_ctx);
    CHECK(b.ssl && tls_set_io(b.ssl, &b.io) == 0 &&
          conn_tls_client(&a, client_ctx, "test", NULL) == 0);
    if (!b.ssl || !a.ssl)
        goto out;
    SSL_set_read_ahead(b.ssl, 1);
    SSL_set_accept_state(b.ssl);
    CHECK_EQ_INT(conn_open_step(&a, err, sizeof err), 0);      /* ClientHello */
    CHECK_EQ_INT(tls_handshake(b.ssl, &b.io.ready, err, sizeof err), 0);   /* its flight */
    a.io.ready = BOTH;
    readable(a.io.fd, 1000);
    CHECK_EQ_INT(conn_open_step(&a, err, sizeof err), 1);      /* Finished */
    struct iovec req = {"GET / HTTP/1.1\r\n\r\n", 18};
    CHECK_EQ_INT(conn_writev(&a, &req, 1), 18);                /* right behind it */

    char peek;
    b.io.ready = LOOP_WRITE;   /* a write edge: the read bit is not set */
    CHECK_EQ_INT(tls_handshake(b.ssl, &b.io.ready, err, sizeof err), 0);
    CHECK_EQ_INT(recv(b.io.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), 1);   /* not read */
    b.io.ready = LOOP_READ;    /* their edge */
    CHECK_EQ_INT(tls_handshake(b.ssl, &b.io.ready, err, sizeof err), 1);
    CHECK(b.io.ready & LOOP_READ);
    CHECK(conn_pending(&b));
    CHECK_EQ_INT(recv(b.io.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), -1);   /* none left there */
    CHECK_EQ_INT(conn_read(&b, buf, sizeof buf), 18);
    CHECK(!conn_pending(&b));
out:
    drop(&a);
    drop(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);   /* as main does: OpenSSL writes with write(2) */
    if (loop_init(&L) < 0 || tls_global_init() < 0) {
        fprintf(stderr, "test_conn: no epoll or no OpenSSL\n");
        return 1;
    }
    RUN(plain_data_and_the_short_read_rule);
    RUN(plain_would_block_clears_the_read_bit);
    RUN(plain_short_read_after_a_hang_up_keeps_the_read_bit);
    RUN(plain_end_of_stream);
    RUN(plain_error_is_minus_errno);
    RUN(plain_writev_partial_then_would_block);
    RUN(plain_whole_writev_keeps_the_write_bit);
    RUN(plain_writev_error);
    RUN(rearm_turns_a_writable_event_into_a_read);
    RUN(open_registers_or_closes);
    RUN(connect_step);
    if (make_contexts()) {
        RUN(tls_data_would_block_and_end);
        RUN(tls_read_waits_for_the_edge_after_a_drain);
        RUN(tls_end_without_close_notify_is_a_reset_for_the_client);
        RUN(tls_writev_partial_is_sealed);
        RUN(tls_handshake_end_with_bytes_read_ahead_sets_the_read_bit);
    } else {
        SKIP("cannot make a key and certificate: no TLS checks");
    }
    SSL_CTX_free(server_ctx);
    tls_client_free(client_ctx);
    loop_free(&L);
    return unit_summary("test_conn");
}
