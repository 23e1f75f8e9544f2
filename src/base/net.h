/* net.h -- small socket helpers: non-blocking listen, connect, accept. */
#ifndef HG_NET_H
#define HG_NET_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A non-blocking, close-on-exec listening socket. fd or -errno. */
int net_listen(const struct sockaddr *sa, socklen_t len, int backlog);

/* The same with SO_REUSEPORT, one of a group sharing the address (the
 * kernel spreads new connections over the group by a hash of the peer). */
int net_listen_reuseport(const struct sockaddr *sa, socklen_t len, int backlog);

/* Starts a non-blocking connect. Returns the fd (connected or in progress:
 * wait for writability, then net_socket_error) or -errno. */
int net_connect(const struct sockaddr *sa, socklen_t len);

/* Whether a negative errno from opening a socket (socket, accept, connect)
 * is this host running out of something of its own (descriptors of the
 * process or the system, socket buffers, memory, local ports): the
 * proxy's overload, no fault of the peer. */
static inline bool net_local_exhausted(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM ||
           err == -EADDRNOTAVAIL;
}

/* The pending error of a socket (SO_ERROR), 0 when none. */
int net_socket_error(int fd);

/* Accepts one connection (non-blocking, close-on-exec, TCP_NODELAY).
 * fd or -errno (-EAGAIN when the queue is empty). */
int net_accept(int lfd, struct sockaddr_storage *peer, socklen_t *len);

/* TCP_DEFER_ACCEPT on a listener: the kernel completes a client's
 * handshake but hands the connection to accept only once its first bytes
 * have arrived, or after about secs seconds without any (0: at once, the
 * default). 0 or -errno. */
int net_defer_accept(int lfd, unsigned secs);

/* The listener lfd is being closed: what net_accept learnt of it is
 * forgotten (the fd number may name another listener later). */
void net_listener_closed(int lfd);

/* "127.0.0.1:4242" or "[::1]:4242"; IPv4-mapped IPv6 printed as IPv4. */
void net_addr_text(const struct sockaddr *sa, char *out, size_t n);

/* Just the address part, for X-Forwarded-For. */
void net_ip_text(const struct sockaddr *sa, char *out, size_t n);

#endif
