/* test_tkey.c -- the session ticket key ring (src/base/tkey.h): a ticket's
 * key decrypts while current (1), then retired (2: renew) for one lifetime,
 * then not at all (0), and the writer wipes it. Real time, in tens of ms. */
#define _GNU_SOURCE
#include "unit.h"

#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "tkey.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The callback with fresh contexts: enc 1 fills name; enc 0 looks it up. */
static int call(unsigned char name[16], int enc)
{
    unsigned char iv[16] = {0};
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *hctx = EVP_MAC_CTX_new(mac);
    int r = tkey_ticket_cb(NULL, name, iv, ctx, hctx, enc);
    EVP_MAC_CTX_free(hctx);
    EVP_MAC_free(mac);
    EVP_CIPHER_CTX_free(ctx);
    return r;
}

TEST(rotation_and_lifetime)
{
    bool rotated;
    CHECK_EQ_INT(tkey_init(), 0);
    tkey_configure(40, 300);   /* (a lifetime with room for a loaded machine) */
    CHECK_EQ_INT(tkey_lifetime_s(), 1);   /* rounded up */
    CHECK_EQ_INT(tkey_count(), 1);
    unsigned char first[16], second[16], unknown[16] = {1, 2, 3};
    CHECK_EQ_INT(call(first, 1), 1);
    CHECK_EQ_INT(call(first, 0), 1);       /* the current key */
    CHECK_EQ_INT(call(unknown, 0), 0);     /* no such key: a full handshake */
    uint64_t next = tkey_rotate(&rotated);
    CHECK(!rotated);
    CHECK(next > 0 && next <= 40);
    sleep_ms(45);
    tkey_rotate(&rotated);
    CHECK(rotated);
    CHECK_EQ_INT(tkey_count(), 2);
    CHECK_EQ_INT(call(second, 1), 1);
    CHECK(memcmp(first, second, 16) != 0);  /* new tickets: the new key */
    CHECK_EQ_INT(call(first, 0), 2);       /* retired: decrypts, renew */
    CHECK_EQ_INT(call(second, 0), 1);
    sleep_ms(320);                         /* the first key's lifetime is over */
    CHECK_EQ_INT(call(first, 0), 0);       /* refused before the writer wipes it */
    tkey_rotate(&rotated);                 /* (a rotation due too) */
    CHECK_EQ_INT(call(first, 0), 0);
    CHECK_EQ_INT(call(second, 0), 2);
    CHECK(tkey_count() <= 2);
}

int main(void)
{
    RUN(rotation_and_lifetime);
    return unit_summary("test_tkey");
}
