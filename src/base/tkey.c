/* tkey.c -- the ring of session ticket keys shared by the master and the
 * workers (see tkey.h). */
#define _GNU_SOURCE
#include "tkey.h"

#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

struct tkey_slot {
    unsigned char name[16];   /* what a ticket names its key by */
    unsigned char hmac[32];   /* HMAC-SHA256 key */
    unsigned char aes[32];    /* AES-256-CBC key */
    uint64_t born_ms;         /* 0: an empty slot */
    uint64_t retired_ms;      /* 0: the current key */
};

struct tkey_ring {
    _Atomic uint32_t seq;     /* odd while the writer is at work */
    uint32_t cur;             /* the current key's slot */
    uint64_t rotation_ms, lifetime_ms;
    struct tkey_slot k[TKEY_SLOTS];
};

static struct tkey_ring *ring;   /* shared; NULL before tkey_init */

#define READ_TRIES 100000        /* a writer that died mid-write: give up */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);   /* one clock for all processes of the host */
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int new_key(struct tkey_slot *s, uint64_t now)
{
    struct tkey_slot k = {.born_ms = now};
    if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.hmac, sizeof k.hmac) != 1 ||
        RAND_bytes(k.aes, sizeof k.aes) != 1) {
        OPENSSL_cleanse(&k, sizeof k);
        return -1;
    }
    *s = k;
    OPENSSL_cleanse(&k, sizeof k);
    return 0;
}

int tkey_init(void)
{
    if (ring)
        return 0;
    void *m = mmap(NULL, sizeof *ring, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    ring = m;   /* (zero-filled: seq 0, every slot empty) */
    ring->rotation_ms = ring->lifetime_ms = 3600000;
    madvise(ring, sizeof *ring, MADV_DONTDUMP);   /* keys stay out of core dumps */
    return new_key(&ring->k[0], now_ms());
}

static void write_begin(void)
{
    atomic_store_explicit(&ring->seq, atomic_load_explicit(&ring->seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_end(void)
{
    atomic_store_explicit(&ring->seq, atomic_load_explicit(&ring->seq, memory_order_relaxed) + 1,
                          memory_order_release);
}

void tkey_configure(uint64_t rotation_ms, uint64_t lifetime_ms)
{
    if (!ring)
        return;
    write_begin();
    ring->rotation_ms = rotation_ms;
    ring->lifetime_ms = lifetime_ms;
    write_end();
}

long tkey_lifetime_s(void)
{
    if (!ring)
        return 0;
    return (long)((ring->lifetime_ms + 999) / 1000);
}

/* When slot s stops decrypting (UINT64_MAX: the current key). */
static uint64_t ends_at(const struct tkey_ring *r, const struct tkey_slot *s)
{
    return s->retired_ms ? s->retired_ms + r->lifetime_ms : UINT64_MAX;
}

uint64_t tkey_rotate(bool *rotated)
{
    *rotated = false;
    if (!ring)
        return 3600000;
    uint64_t now = now_ms();
    struct tkey_ring *r = ring;
    struct tkey_slot *cur = &r->k[r->cur];
    bool rotate = now >= cur->born_ms + r->rotation_ms, wipe = false;
    for (unsigned i = 0; i < TKEY_SLOTS; i++)
        if (r->k[i].born_ms && now >= ends_at(r, &r->k[i]))
            wipe = true;
    if (rotate || wipe) {
        /* The new key is made outside the lock: readers go on meanwhile. */
        struct tkey_slot fresh = {0};
        bool made = rotate && new_key(&fresh, now) == 0;
        write_begin();
        for (unsigned i = 0; i < TKEY_SLOTS; i++)
            if (r->k[i].born_ms && now >= ends_at(r, &r->k[i]))
                OPENSSL_cleanse(&r->k[i], sizeof r->k[i]);   /* its tickets are over */
        if (made) {
            /* an empty slot, else the oldest retired one (its tickets end
             * early: the configuration leaves a slot spare, so only a
             * rotation long overdue gets here) */
            unsigned to = TKEY_SLOTS;
            for (unsigned i = 0; i < TKEY_SLOTS && to == TKEY_SLOTS; i++)
                if (!r->k[i].born_ms)
                    to = i;
            if (to == TKEY_SLOTS) {
                to = r->cur == 0 ? 1 : 0;
                for (unsigned i = 0; i < TKEY_SLOTS; i++)
                    if (i != r->cur && r->k[i].retired_ms < r->k[to].retired_ms)
                        to = i;
            }
            cur->retired_ms = now;
            r->k[to] = fresh;
            r->cur = to;
            *rotated = true;
        }
        write_end();
        OPENSSL_cleanse(&fresh, sizeof fresh);
    }
    uint64_t next = r->k[r->cur].born_ms + r->rotation_ms;
    for (unsigned i = 0; i < TKEY_SLOTS; i++)
        if (r->k[i].born_ms && ends_at(r, &r->k[i]) < next)
            next = ends_at(r, &r->k[i]);
    return next > now ? next - now : 1000;   /* (no new key could be made: in a second) */
}

unsigned tkey_count(void)
{
    unsigned n = 0;
    for (unsigned i = 0; ring && i < TKEY_SLOTS; i++)
        n += ring->k[i].born_ms != 0;
    return n;
}

/* Copies the current key (name NULL) or the key called name, with the ring's
 * lifetime, under the sequence lock. false: no such key. */
static bool read_key(const unsigned char *name, struct tkey_slot *out, uint64_t *lifetime_ms)
{
    for (int tries = 0; tries < READ_TRIES; tries++) {
        uint32_t s1 = atomic_load_explicit(&ring->seq, memory_order_acquire);
        if (s1 & 1) {
            sched_yield();
            continue;
        }
        bool found = false;
        if (!name) {
            memcpy(out, &ring->k[ring->cur], sizeof *out);
            found = true;
        } else {
            for (unsigned i = 0; i < TKEY_SLOTS && !found; i++)
                if (ring->k[i].born_ms && !memcmp(ring->k[i].name, name, 16)) {
                    memcpy(out, &ring->k[i], sizeof *out);
                    found = true;
                }
        }
        *lifetime_ms = ring->lifetime_ms;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&ring->seq, memory_order_relaxed) == s1)
            return found;
    }
    return false;
}

static int set_keys(EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, struct tkey_slot *k,
                    unsigned char *iv, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, k->aes, iv, enc) == 1 &&
             EVP_MAC_CTX_set_params(hctx, params) == 1;
    OPENSSL_cleanse(k, sizeof *k);
    return ok ? 1 : -1;
}

int tkey_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                   EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    struct tkey_slot k;
    uint64_t lifetime = 0;
    if (enc) {
        if (!read_key(NULL, &k, &lifetime))
            return 0;   /* no ticket this time */
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) {
            OPENSSL_cleanse(&k, sizeof k);
            return -1;
        }
        memcpy(key_name, k.name, 16);
        return set_keys(ctx, hctx, &k, iv, 1);
    }
    if (!read_key(key_name, &k, &lifetime))
        return 0;   /* unknown or wiped key: a full handshake */
    /* the writer may not have wiped it yet: its time is checked here too */
    bool current = k.retired_ms == 0;
    if (!current && now_ms() >= k.retired_ms + lifetime) {
        OPENSSL_cleanse(&k, sizeof k);
        return 0;
    }
    int r = set_keys(ctx, hctx, &k, iv, 0);
    return r < 0 ? r : current ? 1 : 2;
}
