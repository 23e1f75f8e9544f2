/* master.h -- the supervising master process: it owns the listening sockets,
 * forks the workers that serve them, replaces a worker that dies, and
 * reloads the configuration on SIGHUP without dropping a connection.
 *
 * Sockets. For each listen address the master opens one SO_REUSEPORT
 * socket per worker slot (the kernel spreads new connections over them) and
 * keeps every one open for as long as the address is configured. A worker
 * that dies or retires therefore never takes an accept queue with it: the
 * connections waiting there are accepted by its replacement. The admin
 * listener is one socket shared by all workers.
 *
 * Generations. Each configuration read is a generation. On SIGHUP the
 * master reads the configuration again (the same command line); if it has
 * errors they are logged and the running generation carries on. Otherwise
 * the new generation's workers are forked on the same sockets, and once
 * every one has reported ready, the old generation is told to retire
 * (SIGUSR2: stop accepting, finish in-flight requests within the drain
 * timeout). Until then both generations accept; no connection is refused.
 *
 * Signals to the master: SIGTERM/SIGINT are forwarded (workers drain; a
 * second one stops them at once) and the master exits 0 once they have all
 * exited; SIGUSR1 is forwarded (reopen logs); SIGHUP reloads. A worker that
 * dies otherwise is logged and replaced in its slot, at once unless it lived
 * less than a second (then after one: a crash loop costs little). Workers
 * die with the master (PR_SET_PDEATHSIG). With NOTIFY_SOCKET set (systemd
 * Type=notify) the master reports READY=1, RELOADING=1 and STOPPING=1. */
#ifndef HG_MASTER_H
#define HG_MASTER_H

#include "cli.h"
#include "worker.h"

/* Serves cfg in this (forked) process on the inherited sockets of fds:
 * writes one byte to ready_fd once serving (then closes it), runs until
 * told to stop, and returns the exit status. */
typedef int master_serve_fn(struct cfg *cfg, const struct worker_fds *fds, int ready_fd);

/* The open file limit against what the configuration may need: with
 * raise, the soft limit goes up to the hard one first (at start; a reload
 * only checks). Each client connection costs a descriptor and one more
 * while it is proxied: the need counted is max_connections for the clients
 * plus as many upstream connections (fewer when every pool of the file has
 * a max_connections and they sum to less), plus the listeners and a spare
 * of 32 (logs, epoll, signal and splice pipes, DNS, health checks). When
 * the limit is below it, a warning names both numbers: past the limit
 * requests are answered 503 proxy_overloaded and accepts wait. Each worker
 * is a process of its own, so the count is per worker, as the limits. */
void master_fd_limit(const struct cfg *c, bool raise);

/* Runs the master until its workers have exited after SIGTERM/SIGINT.
 * cfg is the parsed command line (argv is parsed again on each reload).
 * Returns the exit status: 0, or 1 when the first generation could not
 * start (a listener could not be opened, a worker failed). */
int master_run(struct cfg *cfg, int argc, char **argv, master_serve_fn *serve);

#endif
