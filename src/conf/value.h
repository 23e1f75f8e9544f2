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

/* A listener's defer_accept (TCP_DEFER_ACCEPT, which the kernel counts in
 * seconds): a duration string of whole seconds, 1s to 30s, into *secs.
 * 0 or -1; VAL_DEFER_WHAT says what is expected. */
#define VAL_DEFER_WHAT "whole seconds from 1s to 30s (the kernel counts them in seconds)"
int val_defer_accept(const char *s, unsigned *secs);

/* Parses a size: "8192", "8k", "32KiB", "1m", "1MiB", "2g" (k = 1024), at
 * most 2^50 bytes. 0 or -1. */
int val_size(const char *s, uint64_t *bytes);

/* Whether s is a header name we accept for the deadline header: 1 to 64 of
 * letters, digits, '-' and '_'. */
bool val_header_name(const char *s);

/* Parses "HOST:PORT", "[V6]:PORT" (names resolved once, now). 0, or -1
 * with a message in err. For listeners, the admin listener and resolvers;
 * the servers of pools are read with val_server. */
int val_address(const char *s, struct cli_addr *a, char *err, size_t errlen);

#define VAL_NAME_MAX 253   /* the longest host name (RFC 1035), in bytes */

/* A server of a pool as written: an IP literal, whose address is known at
 * once, or a host name (or an SRV name) that the proxy resolves on its loop
 * while it runs (upstream/resolve.c). Never resolved here: checking a file
 * (-t) asks no DNS server anything. */
struct val_server {
    struct cli_addr addr;          /* an IP literal's address; len 0 for a name */
    char name[VAL_NAME_MAX + 1];   /* the name, lower case; "" for an IP literal */
    uint16_t port;                 /* 0 for an SRV name: its records give the ports */
    bool srv;                      /* name is an SRV name (_http._tcp.example.com) */
    /* as logs print it: 10.0.0.5:8000, [::1]:80, api.internal:8080, or the
     * SRV name */
    char text[VAL_NAME_MAX + 8];
};

/* Parses "HOST:PORT" or "[V6]:PORT" into v: an IP literal in any spelling
 * addr_parse_ip reads, or a host name (letters, digits, '-', '_', '.'; at
 * most 253 bytes), kept in lower case. 0, or -1 with a message in err. */
int val_server(const char *s, struct val_server *v, char *err, size_t errlen);

/* Parses an SRV name ("_http._tcp.example.com": a host name, no port) into
 * v. 0, or -1 with a message in err. */
int val_srv_name(const char *s, struct val_server *v, char *err, size_t errlen);

#endif
