/* auth.h -- Basic proxy credentials (RFC 7617) for the forward proxy: a file
 * of "user:password" lines, checked against a Proxy-Authorization value.
 *
 * The file is read once (at start and at each reload); blank lines and lines
 * starting with '#' are skipped. Passwords are stored as given: protect the
 * file (mode 0600, owned by the service) as the credentials it holds. A check
 * compares the decoded "user:password" with every entry in constant time for
 * a given length, so the time taken does not tell how much of a guess was
 * right. */
#ifndef HG_AUTH_H
#define HG_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct auth;

/* Reads path. Returns the credentials, or NULL with a message in err naming
 * the file (and the line, for a line without ':'). */
struct auth *auth_load(const char *path, char *err, size_t errlen);

/* Whether value (a Proxy-Authorization field value: "Basic <base64>") names
 * an entry. The scheme is case-insensitive; anything malformed is false. */
bool auth_check(const struct auth *a, const char *value, size_t len);

/* Decodes standard base64 (with padding) into out; the length, or -1. */
int auth_base64_decode(const char *in, size_t len, char *out, size_t cap);

void auth_free(struct auth *a);

#endif
