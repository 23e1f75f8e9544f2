/* tkey.h -- the session ticket keys of TLS listeners: a ring of keys in
 * shared memory, rotated on a schedule by one process and read by all.
 *
 * The ring is mapped (MAP_SHARED) once, by the process started, before it
 * forks anything: the master and every worker of every generation see the
 * same keys, so a ticket issued by one worker resumes on another, and across
 * reloads. One process writes it: the master (master.c, on its poll timer),
 * or the process itself with --single-process (worker.c, on a loop timer);
 * the workers only read. Writes go under a sequence lock (an odd count while
 * one is under way): a reader copies the key it needs and tries again if the
 * count moved, so the writer never waits for a reader.
 *
 * A key is current (it encrypts new tickets) for one rotation period, then
 * retired: it still decrypts for one ticket lifetime after that, so a ticket
 * issued just before its key retired is good for its whole lifetime, and no
 * key outlives rotation + lifetime. Past that its bytes are wiped from the
 * ring. A ticket presented with a retired key resumes and is renewed (a
 * fresh ticket under the current key); one whose key has gone is a full
 * handshake. The lifetime is also the sessions' timeout (SSL_CTX_set_timeout:
 * the lifetime hint sent with each ticket, and the bound OpenSSL checks when
 * a ticket or a cached session comes back). */
#ifndef HG_TKEY_H
#define HG_TKEY_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* Keys in the ring: the current one and the retired ones still decrypting.
 * The configuration allows at most TKEY_SLOTS - 2 rotations per lifetime
 * (one slot spare for a rotation that comes late). */
#define TKEY_SLOTS 16

/* Maps the ring and makes the first key. Once, before any fork. 0 or -1. */
int tkey_init(void);

/* The schedule (the writer, at start and at each reload: the new values
 * apply to the keys already in the ring). */
void tkey_configure(uint64_t rotation_ms, uint64_t lifetime_ms);

/* The ticket lifetime, in seconds (for SSL_CTX_set_timeout). */
long tkey_lifetime_s(void);

/* The writer's step: makes a new current key when the current one is a
 * rotation old, wipes the retired keys whose time is over. Returns the ms
 * until it next has something to do (for the caller's timer), and in
 * *rotated whether a key was made. */
uint64_t tkey_rotate(bool *rotated);

/* How many keys the ring holds (current and retired). */
unsigned tkey_count(void);

/* OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb):
 * AES-256-CBC and HMAC-SHA256 with the current key to encrypt; to decrypt,
 * the key the ticket names, while it is within its time (2: renew the
 * ticket, from a retired key), else 0 (a full handshake). */
int tkey_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv,
                   EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc);

#endif
