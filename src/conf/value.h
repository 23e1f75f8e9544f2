/* value.h -- the values of the configuration, one parser each: durations,
 * sizes, header names and addresses.
 *
 * The command line (cli) and the file (conf) both read their values here, so
 * a flag and a key accept and refuse the same spellings. Nothing here prints
 * or exits; only val_address touches the system (it resolves a name once). */
#ifndef HG_VALUE_H
#define HG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address as resolved at start. It keeps the cli_ name it had when only
 * the command line parsed addresses: pools, listeners, the admin listener
 * and the master hold these, and renaming them is churn for no reader. */
struct cli_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];   /* as printed in logs: 127.0.0.1:9001, [::1]:9001 */
};

/* Parses a duration: "250ms", "1s", "1.5s", "2m", "1h" or a bare number of
 * seconds. Stores milliseconds; refuses negatives, empty strings, unknown
 * units, sub-millisecond precision and values past 2^32 ms. 0 or -1. */
int val_duration(const char *s, uint64_t *ms);

/* Parses a size: "8192", "8k", "32KiB", "1m", "1MiB", "2g" (k = 1024), at
 * most 2^50 bytes. 0 or -1. */
int val_size(const char *s, uint64_t *bytes);

/* Whether s is a header name we accept for the deadline header: 1 to 64 of
 * letters, digits, '-' and '_'. */
bool val_header_name(const char *s);

/* Parses "HOST:PORT", "[V6]:PORT" (names resolved once, now). 0, or -1
 * with a message in err. */
int val_address(const char *s, struct cli_addr *a, char *err, size_t errlen);

#endif
