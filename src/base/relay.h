/* relay.h -- zero-copy relay of a body through a pipe with splice(2).
 *
 * Bytes move socket -> pipe -> socket as page references: user space never
 * copies them. Used for large bodies whose framing (Content-Length) needs no
 * inspection of the bytes. An all-zero struct relay is closed. */
#ifndef HG_RELAY_H
#define HG_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RELAY_CAP (64u * 1024)   /* bytes a pipe holds (the Linux default) */

struct relay {
    int rfd, wfd;   /* read and write ends; 0/0 when closed (never valid pipe fds) */
    uint32_t len;   /* bytes in the pipe */
    bool full;      /* the pipe refused bytes (its page slots can run out
                       before RELAY_CAP bytes); cleared when it drains */
};

/* Whether the pipe can take more bytes now. */
static inline bool relay_room(const struct relay *r) { return !r->full && r->len < RELAY_CAP; }

static inline bool relay_is_open(const struct relay *r) { return r->wfd > 0; }

/* Opens a non-blocking pipe. 0 or -errno. */
int relay_open(struct relay *r);

/* Closes the pipe, dropping whatever it still holds. */
void relay_close(struct relay *r);

/* Moves up to max bytes from socket `from` into the pipe. Returns the bytes
 * moved, 0 at end of stream, or -errno. -EAGAIN means the socket had nothing
 * when the pipe was empty; with bytes in the pipe it may instead mean the
 * pipe is full, and r->full is set until relay_drain makes room. */
ssize_t relay_fill(struct relay *r, int from, size_t max);

/* Moves bytes from the pipe to socket `to`. Returns the bytes moved or
 * -errno (-EAGAIN when the socket is full). */
ssize_t relay_drain(struct relay *r, int to);

#endif
