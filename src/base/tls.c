/* tls.c -- TLS on both sides (see tls.h). */
#define _GNU_SOURCE
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "loop.h"
#include "tkey.h"

static char last_error[160] = "TLS error";   /* of the last EPROTO from tls_read */

/* TLS 1.2 suites: forward secrecy and AEAD only. */
static const char ciphers12[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* TLS 1.3 suites, in the same order as ciphers12: AES-128-GCM first, as
 * browsers offer it and RFC 8446 (9.1) makes it the one every peer has.
 * OpenSSL's default puts AES-256-GCM-SHA384 first; its key schedule and
 * transcript then hash with SHA-384, whose block function was 12 % of a
 * full handshake's instructions with an OpenSSL client (which offers
 * AES-256 first); with SHA-256 the handshake took 3.4 % fewer (callgrind).
 * A client that puts ChaCha20 first (no AES instructions) gets it
 * (SSL_OP_PRIORITIZE_CHACHA). */
static const char suites13[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

#define MAX_NAMES 64              /* subjectAltName DNS names read per certificate */

struct tls_cert {
    SSL_CTX *ctx;
    char **names;    /* lower case; "*.example.com" for a wildcard */
    unsigned nnames;
};

struct tls_server {
    struct tls_cert *certs;   /* [0] is the default */
    unsigned ncerts;
    bool h2;                  /* ALPN may choose "h2" */
};

struct tls_client {
    SSL_CTX *ctx;
    char *server_name;
    bool verify;
};

int tls_global_init(void)
{
    if (!OPENSSL_init_ssl(0, NULL))
        return -1;
    return tkey_init();   /* the session ticket keys (tkey.h) */
}

const char *tls_error_text(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    unsigned long last;
    while ((last = ERR_get_error()))   /* the first is the cause; drop the rest */
        ;
    if (!e) {
        snprintf(buf, len, "unknown TLS error");
        return buf;
    }
    const char *r = ERR_reason_error_string(e);
    if (r)
        snprintf(buf, len, "%s", r);
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

/* "cannot load FILE: why": errno's text when the file itself failed. */
static void load_error(char *err, size_t errlen, const char *what, const char *file)
{
    char why[160] = "";
    unsigned long e, first = 0;
    while ((e = ERR_get_error())) {
        if (!first)
            first = e;
        if (ERR_SYSTEM_ERROR(e) && !*why)
            snprintf(why, sizeof why, "%s", strerror(ERR_GET_REASON(e)));
    }
    if (!*why && ERR_GET_REASON(first) == X509_R_KEY_VALUES_MISMATCH)
        snprintf(why, sizeof why, "it does not match the certificate");
    else if (!*why && first)
        snprintf(why, sizeof why, "%s", ERR_reason_error_string(first)
                                            ? ERR_reason_error_string(first) : "unreadable");
    else if (!*why)
        snprintf(why, sizeof why, "%s", errno ? strerror(errno) : "unreadable");
    snprintf(err, errlen, "cannot load %s %s: %s", what, file, why);
}

/* A certificate chain and its key into ctx; -1 with the reason in err and
 * *bad_key 0 (the certificate) or 1 (the key). */
static int load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen,
                     int *bad_key)
{
    errno = 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        *bad_key = 0;
        load_error(err, errlen, "certificate", cert);
        return -1;
    }
    errno = 0;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        *bad_key = 1;
        load_error(err, errlen, "key", key);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *bad_key = 1;
        ERR_clear_error();
        snprintf(err, errlen, "cannot load key %s: it does not match the certificate %s", key,
                 cert);
        return -1;
    }
    return 0;
}

/* ---- server side ------------------------------------------------------------ */

/* Whether the client's ALPN list in[0..inlen) (length-prefixed names)
 * holds proto; *out and *outlen then point at it inside in. */
static bool alpn_offered(const unsigned char *in, unsigned inlen, const char *proto,
                         const unsigned char **out, unsigned char *outlen)
{
    size_t len = strlen(proto);
    for (unsigned i = 0; i < inlen;) {
        unsigned n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == len && !memcmp(in + i + 1, proto, len)) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return true;
        }
        i += 1 + n;
    }
    return false;
}

/* The server's preference whatever the client's order: "h2" when the
 * listener speaks HTTP/2 (arg: its tls_server), else "http/1.1". The TLS 1.2
 * suites (ciphers12: ECDHE, AEAD) and the options (no compression, no
 * renegotiation) are those RFC 9113 section 9.2 asks of h2. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    const struct tls_server *s = arg;
    (void)ssl;
    if (s->h2 && alpn_offered(in, inlen, "h2", out, outlen))
        return SSL_TLSEXT_ERR_OK;
    if (alpn_offered(in, inlen, "http/1.1", out, outlen))
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;   /* go on without ALPN: HTTP/1.1 anyway */
}

static bool name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');   /* the wildcard covers one label */
        return dot && dot != name && !strcasecmp(pattern + 1, dot);
    }
    return !strcasecmp(pattern, name);
}

/* SNI: the certificate whose names cover the requested one; the default
 * when none does (or no name was sent). */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    struct tls_server *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    unsigned pick = 0;
    if (!name || s->ncerts < 2)
        return SSL_TLSEXT_ERR_OK;
    for (unsigned i = 0; i < s->ncerts; i++)   /* an exact name first */
        for (unsigned j = 0; j < s->certs[i].nnames; j++)
            if (s->certs[i].names[j][0] != '*' && !strcasecmp(s->certs[i].names[j], name)) {
                pick = i;
                goto done;
            }
    for (unsigned i = 0; i < s->ncerts; i++)
        for (unsigned j = 0; j < s->certs[i].nnames; j++)
            if (s->certs[i].names[j][0] == '*' && name_matches(s->certs[i].names[j], name)) {
                pick = i;
                goto done;
            }
done:
    if (pick)
        SSL_set_SSL_CTX(ssl, s->certs[pick].ctx);
    return SSL_TLSEXT_ERR_OK;
}

static void add_name(struct tls_cert *c, const unsigned char *s, int len)
{
    if (len <= 0 || len > 253 || c->nnames >= MAX_NAMES || memchr(s, 0, (size_t)len))
        return;
    char *n = malloc((size_t)len + 1);
    if (!n)
        return;
    for (int i = 0; i < len; i++)
        n[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    n[len] = 0;
    c->names[c->nnames++] = n;
}

/* The DNS names of the certificate: subjectAltName, else the CN. */
static void read_names(struct tls_cert *c)
{
    X509 *x = SSL_CTX_get0_certificate(c->ctx);
    if (!x || !(c->names = calloc(MAX_NAMES, sizeof *c->names)))
        return;
    GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (san) {
        for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
            if (g->type == GEN_DNS)
                add_name(c, ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName));
        }
        GENERAL_NAMES_free(san);
    }
    if (c->nnames)
        return;
    X509_NAME *subj = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i >= 0) {
        ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        add_name(c, ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn));
    }
}

static SSL_CTX *server_ctx(struct tls_server *s, const struct tls_server_conf *c,
                           const struct tls_pair *p, char *err, size_t errlen, int *bad_key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", tls_error_text((char[128]){0}, 128));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, c->min_version ? c->min_version : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read-ahead: a flight of records in one read(2) instead of two per
     * record (a record's 5-byte header, then its body): 7 reads per short
     * TLS 1.3 connection instead of 13 (5 with tls_set_io's BIO, which
     * reads no drained socket). What the engine reads beyond a
     * record stays inside it: tls_read reads on until the engine needs the
     * socket, so a short read still means the socket is drained, and a
     * handshake that ends with bytes read ahead sets the read bit
     * (tls_handshake), since no edge will come for them. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (!SSL_CTX_set_cipher_list(ctx, ciphers12) || !SSL_CTX_set_ciphersuites(ctx, suites13))
        goto out_openssl;
    if (load_pair(ctx, p->cert, p->key, err, errlen, bad_key) < 0)
        goto out_free;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, s);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, s);
    /* Resumption is by ticket only: the key is the same in every worker, a
     * session cache would be one per worker (the kernel spreads a client's
     * connections over them, so most lookups would miss), and keeping it
     * costs a cache entry per full handshake and a sweep of the whole cache
     * every 255 of them. One ticket per handshake: a client resumes with
     * one, and each costs an encryption and a record. In TLS 1.3 it goes
     * out with our first bytes (tls_writev: owed_ticket), not on its own
     * at the handshake's end: one segment less when the answer is followed
     * by a close, and none for a client that never asks anything. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"hourglass", 9);
    long lifetime = tkey_lifetime_s();
    if (lifetime) {   /* (0: no key ring, as in unit tests: OpenSSL's own keys) */
        SSL_CTX_set_timeout(ctx, lifetime);   /* sessions and tickets alike */
        if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tkey_ticket_cb) != 1)
            goto out_openssl;
    }
    return ctx;

out_openssl:
    *bad_key = 0;
    snprintf(err, errlen, "TLS setup failed: %s", tls_error_text((char[128]){0}, 128));
out_free:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_server *tls_server_new(const struct tls_server_conf *c, char *err, size_t errlen,
                                  unsigned *bad_pair, int *bad_key)
{
    struct tls_server *s = calloc(1, sizeof *s);
    if (!s || !(s->certs = calloc(c->npairs ? c->npairs : 1, sizeof *s->certs))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->h2 = c->h2;
    for (unsigned i = 0; i < c->npairs; i++) {
        *bad_pair = i;
        s->certs[i].ctx = server_ctx(s, c, &c->pairs[i], err, errlen, bad_key);
        if (!s->certs[i].ctx)
            goto out_free;
        s->ncerts++;
        read_names(&s->certs[i]);
    }
    return s;

out_free:
    tls_server_free(s);
    return NULL;
}

void tls_server_free(struct tls_server *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->ncerts; i++) {
        SSL_CTX_free(s->certs[i].ctx);   /* live connections hold their own reference */
        for (unsigned j = 0; j < s->certs[i].nnames; j++)
            free(s->certs[i].names[j]);
        free(s->certs[i].names);
    }
    free(s->certs);
    free(s);
}

/* ---- the socket under the engine --------------------------------------------
 *
 * OpenSSL's socket BIO reads whenever the engine wants bytes: after each
 * record handed out, SSL_read (and a handshake awaiting the peer's flight)
 * asks the socket again and gets EAGAIN, a system call for nothing. This
 * BIO reads only while the connection's LOOP_READ bit is set, and clears it
 * on a short read (the socket drained; the next edge sets it again), the
 * rule conn_read keeps for plain TCP; read-ahead asks for all the room, so
 * a short read is the usual end. Writes: send(2), MSG_NOSIGNAL. The data is
 * the connection's loop_io, which outlives the SSL (conn_close frees the
 * SSL first); closing the fd stays the loop's business. */
static BIO_METHOD *loop_bio;

static int bio_read(BIO *b, char *buf, size_t len, size_t *got)
{
    struct loop_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *got = 0;
    if (!(io->ready & LOOP_READ)) {
        BIO_set_retry_read(b);   /* drained, and no edge since */
        errno = EAGAIN;
        return 0;
    }
    for (;;) {
        ssize_t n = read(io->fd, buf, len);
        if (n > 0) {
            if ((size_t)n < len && !(io->ready & LOOP_HUP))
                io->ready &= ~LOOP_READ;
            *got = (size_t)n;
            return 1;
        }
        if (n == 0) {
            BIO_set_flags(b, BIO_FLAGS_IN_EOF);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            io->ready &= ~LOOP_READ;
            BIO_set_retry_read(b);
        }
        return 0;
    }
}

static int bio_write(BIO *b, const char *buf, size_t len, size_t *put)
{
    struct loop_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *put = 0;
    for (;;) {
        ssize_t n = send(io->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *put = (size_t)n;
            return 1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            BIO_set_retry_write(b);
        return 0;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;   /* nothing is held here */
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* Sets up loop_bio; 0 or -1 (out of memory: loop_bio stays NULL). */
static int loop_bio_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "hourglass loop socket");
    if (!m || !BIO_meth_set_read_ex(m, bio_read) || !BIO_meth_set_write_ex(m, bio_write) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return -1;
    }
    loop_bio = m;
    return 0;
}

int tls_set_io(SSL *ssl, struct loop_io *io)
{
    if (!loop_bio && loop_bio_init() < 0)
        return -1;
    BIO *b = BIO_new(loop_bio);
    if (!b)
        return -1;
    BIO_set_data(b, io);
    SSL_set_bio(ssl, b, b);   /* (one reference for both directions) */
    return 0;
}

/* A server SSL's app data until its TLS 1.3 session ticket is sent. */
static char owed_ticket;

SSL *tls_server_conn(struct tls_server *s, struct loop_io *io)
{
    SSL *ssl = SSL_new(s->certs[0].ctx);
    if (!ssl)
        return NULL;
    if (tls_set_io(ssl, io) < 0) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    SSL_set_app_data(ssl, &owed_ticket);
    return ssl;
}

/* ---- client side ------------------------------------------------------------ */

/* A new session from the server: kept as the one its next connection
 * resumes (the slot is the server's, via the SSL's app data). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    SSL_SESSION **slot = SSL_get_app_data(ssl);
    if (!slot)
        return 0;
    SSL_SESSION_free(*slot);
    *slot = sess;
    return 1;   /* we took the reference */
}

struct tls_client *tls_client_new(const struct tls_client_conf *c, char *err, size_t errlen,
                                  const char **bad_key)
{
    static const unsigned char alpn[] = "\x08http/1.1", alpn_h2[] = "\x02h2";
    char why[160];
    struct tls_client *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->verify = c->verify;
    if (c->server_name && !(t->server_name = strdup(c->server_name)))
        goto out_oom;
    if (!(t->ctx = SSL_CTX_new(TLS_client_method()))) {
        *bad_key = "tls";
        snprintf(err, errlen, "cannot create a TLS context: %s", tls_error_text(why, sizeof why));
        goto out_free;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(t->ctx, 1);   /* as a listener's (server_ctx) */
    SSL_CTX_set_cipher_list(t->ctx, ciphers12);
    SSL_CTX_set_ciphersuites(t->ctx, suites13);   /* offered in this order */
    if (c->h2)
        SSL_CTX_set_alpn_protos(t->ctx, alpn_h2, sizeof alpn_h2 - 1);
    else
        SSL_CTX_set_alpn_protos(t->ctx, alpn, sizeof alpn - 1);
    if (c->verify) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
        errno = 0;
        if (c->ca ? SSL_CTX_load_verify_locations(t->ctx, c->ca, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
            *bad_key = "ca";
            load_error(err, errlen, "CA file", c->ca ? c->ca : "(system default)");
            goto out_free;
        }
    }
    int which = 0;
    if (c->cert && load_pair(t->ctx, c->cert, c->key, err, errlen, &which) < 0) {
        *bad_key = which ? "key" : "cert";
        goto out_free;
    }
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ctx, on_new_session);
    return t;

out_oom:
    snprintf(err, errlen, "out of memory");
out_free:
    tls_client_free(t);
    return NULL;
}

void tls_client_free(struct tls_client *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->server_name);
    free(t);
}

static bool is_ip_literal(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

SSL *tls_client_conn(struct tls_client *t, struct loop_io *io, const char *host,
                     SSL_SESSION **session)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    const char *name = t->server_name ? t->server_name : host;
    if (tls_set_io(ssl, io) < 0)
        goto out_free;
    SSL_set_connect_state(ssl);
    if (name && *name) {
        if (is_ip_literal(name)) {
            if (t->verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1)
                goto out_free;
        } else {
            if (!SSL_set_tlsext_host_name(ssl, name))
                goto out_free;
            if (t->verify && SSL_set1_host(ssl, name) != 1)
                goto out_free;
        }
    }
    SSL_set_app_data(ssl, session);
    if (session && *session)
        SSL_set_session(ssl, *session);
    return ssl;

out_free:
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

/* ---- I/O -------------------------------------------------------------------- */

int tls_handshake(SSL *ssl, uint32_t *ready, char *err, size_t errlen)
{
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        /* The engine reads the socket whatever woke us (a write edge, at
         * the start): what it read ahead of the handshake's end is off the
         * socket, and no read edge will come for it. */
        if (SSL_has_pending(ssl))
            *ready |= LOOP_READ;
        return 1;
    }
    int saved = errno;
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
        *ready &= ~LOOP_READ;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *ready &= ~LOOP_WRITE;
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error()) {
            tls_error_text(err, errlen);
        } else {
            snprintf(err, errlen, "%s", saved ? strerror(saved) : "connection closed");
        }
        return -1;
    default: {
        long v = SSL_get_verify_result(ssl);
        if (SSL_is_server(ssl) && ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST) {
            ERR_clear_error();
            snprintf(err, errlen, "plain HTTP sent to a TLS port");
            return -2;
        }
        if (v != X509_V_OK && !SSL_is_server(ssl)) {
            ERR_clear_error();
            snprintf(err, errlen, "certificate verify failed: %s",
                     X509_verify_cert_error_string(v));
        } else {
            tls_error_text(err, errlen);
        }
        return -1;
    }
    }
}

bool tls_resumed(SSL *ssl)
{
    return SSL_session_reused(ssl) == 1;
}

void tls_keep_buffers(SSL *ssl)
{
    if (ssl)
        SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
}

bool tls_alpn_h2(SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    if (ssl)
        SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && !memcmp(p, "h2", 2);
}

/* One SSL_read: > 0, 0 at the end, or -1 with errno (see tls_read). */
static ssize_t read_once(SSL *ssl, void *buf, size_t len, uint8_t *want)
{
    int n = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    int saved = errno;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want |= TLS_READ_WANTS_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        errno = saved ? saved : ECONNRESET;
        return -1;
    default: {
        unsigned long e = ERR_peek_error();
        if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            /* A TCP end with no close_notify: a client that just closes is
             * common and harmless; from an upstream it may be a truncated
             * body, so it reads as a reset, never as a clean end. */
            if (SSL_is_server(ssl))
                return 0;
            errno = ECONNRESET;
            return -1;
        }
        tls_error_text(last_error, sizeof last_error);
        errno = EPROTO;
        return -1;
    }
    }
}

/* SSL_read hands out one record at a time: reading on until the buffer is
 * full or the engine needs the socket keeps read(2)'s meaning of a short
 * read (the socket is drained), on which the callers rely. */
ssize_t tls_read(SSL *ssl, void *buf, size_t len, uint8_t *want)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read_once(ssl, (char *)buf + got, len - got, want);
        if (n <= 0) {
            if (got)
                return (ssize_t)got;   /* the end or error shows on the next call */
            return n;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

const char *tls_last_error(void)
{
    return last_error;
}

/* Small leading pieces (a head) are sent together with what follows in one
 * record. The staging is a function of the bytes offered alone, so a retry
 * offering the same bytes (and maybe more) rebuilds the same record prefix. */
#define STAGE_MAX 16384
static char stage[STAGE_MAX];

ssize_t tls_writev(SSL *ssl, const struct iovec *iov, int iovcnt)
{
    if (SSL_get_app_data(ssl) == &owed_ticket) {
        /* The next SSL_write sends the ticket first, in its own record.
         * TLS 1.2 sent its ticket within the handshake. */
        SSL_set_app_data(ssl, NULL);
        if (SSL_version(ssl) == TLS1_3_VERSION && SSL_new_session_ticket(ssl) != 1)
            ERR_clear_error();
    }
    size_t total = 0;
    int i = 0;
    size_t off = 0;   /* into iov[i] */
    while (i < iovcnt) {
        if (off == iov[i].iov_len) {
            i++;
            off = 0;
            continue;
        }
        const char *p = (const char *)iov[i].iov_base + off;
        size_t len = iov[i].iov_len - off;
        if (len < STAGE_MAX && i + 1 < iovcnt) {
            size_t n = 0;
            for (int j = i; j < iovcnt && n < STAGE_MAX; j++) {
                const char *q = (const char *)iov[j].iov_base + (j == i ? off : 0);
                size_t l = iov[j].iov_len - (j == i ? off : 0);
                if (l > STAGE_MAX - n)
                    l = STAGE_MAX - n;
                memcpy(stage + n, q, l);
                n += l;
            }
            p = stage;
            len = n;
        }
        int w = SSL_write(ssl, p, len > INT_MAX ? INT_MAX : (int)len);
        if (w > 0) {
            total += (size_t)w;
            size_t k = (size_t)w;   /* advance through the iovecs */
            while (k) {
                size_t left = iov[i].iov_len - off;
                if (k < left) {
                    off += k;
                    k = 0;
                } else {
                    k -= left;
                    i++;
                    off = 0;
                }
            }
            continue;
        }
        int saved = errno;
        int e = SSL_get_error(ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            if (total)
                return (ssize_t)total;
            errno = EAGAIN;
            return -1;
        }
        ERR_clear_error();
        if (total)
            return (ssize_t)total;   /* the error shows again on the next call */
        errno = e == SSL_ERROR_SYSCALL && saved ? saved : EPIPE;
        return -1;
    }
    return (ssize_t)total;
}

void tls_close_notify(SSL *ssl)
{
    if (ssl && SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
}

void tls_free(SSL *ssl)
{
    SSL_free(ssl);
}
