/* LD_PRELOAD shim for wrk: every TLS connection starts with a full handshake,
 * and, if asked, offers only the given TLS 1.3 suites.
 *
 * wrk keeps one SSL object per connection slot and, when it reconnects (as it
 * does after each response to "Connection: close"), calls SSL_shutdown() and
 * SSL_clear() on it. After a clean shutdown SSL_clear() keeps the session, so
 * the next SSL_connect() offers it (with TLS 1.3: the session ticket the server
 * sent) and the server resumes it: no certificate, no signature. The
 * tls-handshake scenario wants the cost of a full handshake, so this drops the
 * session before the real SSL_clear() runs.
 *
 * WRK_TLS13_SUITES (the tls-handshake-aes256 scenario: TLS_AES_256_GCM_SHA384):
 * when set, SSL_set_ciphersuites(ssl, value) on every SSL object wrk creates
 * (SSL_new), so that the server has only those TLS 1.3 suites to choose from.
 * SSL_clear() keeps them. wrk has no option for it.
 *
 * Built by bench.py: gcc -O2 -shared -fPIC -o wrk_fresh_tls.so wrk_fresh_tls.c -ldl
 * (no OpenSSL headers needed; the functions are looked up in the loaded libssl). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_session_st SSL_SESSION;

int SSL_clear(SSL *s)
{
    static int (*real_clear)(SSL *);
    static int (*set_session)(SSL *, SSL_SESSION *);

    if (!real_clear) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, SSL_SESSION *))dlsym(RTLD_NEXT, "SSL_set_session");
        if (!real_clear)
            return 0;
    }
    if (set_session)
        set_session(s, NULL);     /* frees the kept session: nothing to offer */
    return real_clear(s);
}

SSL *SSL_new(SSL_CTX *ctx)
{
    static SSL *(*real_new)(SSL_CTX *);
    static int (*set_suites)(SSL *, const char *);
    const char *suites = getenv("WRK_TLS13_SUITES");
    SSL *s;

    if (!real_new) {
        real_new = (SSL *(*)(SSL_CTX *))dlsym(RTLD_NEXT, "SSL_new");
        set_suites = (int (*)(SSL *, const char *))dlsym(RTLD_NEXT, "SSL_set_ciphersuites");
        if (!real_new)
            return NULL;
    }
    s = real_new(ctx);
    if (s && suites && *suites) {
        /* a restriction that cannot be applied would measure the wrong suite: stop wrk */
        if (!set_suites || !set_suites(s, suites)) {
            fprintf(stderr, "wrk_fresh_tls: SSL_set_ciphersuites(\"%s\") failed\n", suites);
            abort();
        }
    }
    return s;
}
