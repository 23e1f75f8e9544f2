/* poolshm.h -- the state the workers of one generation share about their
 * pools, so that they act as one proxy: each pool's requests and retries in
 * flight (the retry budget), and each server's passive-health record and
 * active-health verdict.
 *
 * The master maps PSH_AREAS areas of shared memory once, before any fork
 * (psh_share), and gives each generation one (psh_area_claim, zeroed) for
 * as long as a worker of it lives (psh_area_drop). A worker attaches to its
 * generation's area with its worker slot (psh_attach); a replacement worker
 * takes over the slot of the one it replaces. Without a master (one
 * process), psh_attach(-1, 0) gives a private area: the same code runs.
 *
 * Counts in flight are kept per worker (a row each, written only by its
 * worker, read by all): a worker that dies takes its requests with it, and
 * its replacement starts its row at zero, so no count leaks. The per-server
 * records are written by every worker with atomic operations (pool.c).
 *
 * A reload starts a fresh area, as it starts fresh counters. */
#ifndef HG_POOLSHM_H
#define HG_POOLSHM_H

#include <stdbool.h>
#include <stdint.h>

#define PSH_AREAS 8          /* generations alive at once (serving, starting, draining) */
#define PSH_WORKERS 64       /* worker slots of a generation (CLI_MAX_WORKERS) */
#define PSH_POOLS 64         /* pools whose state is shared (STATS_MAX_POOLS) */
#define PSH_SERVERS 128      /* servers per pool whose record is shared */

/* A worker's own counts of one pool. */
struct psh_counts {
    uint32_t requests;       /* in flight, from dispatch to end */
    uint32_t retries;        /* ... of them retrying or hedged */
};

/* One server's health, as all the workers of a generation see it. */
struct psh_server {
    uint32_t fails;          /* consecutive failed attempts (passive health) */
    uint32_t ejections;      /* ejections in a row: the cool-down doubles */
    uint64_t ejected_until;  /* ns on the monotonic clock (one for every
                                process); 0 = in service */
    uint64_t back_at;        /* ns: (back) in service since; slow start ramps from here */
    uint32_t down;           /* active health says so (one worker checks) */
    uint32_t pad;
};

struct psh_pool {
    uint32_t nejected;       /* servers ejected now */
    uint32_t pad;
    struct psh_server servers[PSH_SERVERS];
};

/* Master, before any fork: maps the areas. 0 or -errno. */
int psh_share(void);

/* Master: a zeroed area for generation gen (0..PSH_AREAS-1), or -1 when
 * none is free (the generation then keeps its state per worker). */
int psh_area_claim(unsigned gen);

/* Master: gives area i back once generation gen has no worker left. */
void psh_area_drop(int i, unsigned gen);

/* Worker: state from area i as worker `slot` of nworkers; i < 0 (no
 * master, or no area): a private area of this process alone. */
void psh_attach(int i, unsigned slot, unsigned nworkers);

/* This worker's row of counts for pool p (p < PSH_POOLS, else a private
 * row of its own). */
struct psh_counts *psh_mine(unsigned p);

/* The counts of pool p summed over the generation's workers. */
struct psh_counts psh_sum(unsigned p);

/* The shared records of pool p (its servers' health), or NULL past the
 * bounds (the caller then keeps records of its own). */
struct psh_pool *psh_pool(unsigned p);

/* Whether this worker runs the active health checks (worker slot 0, or the
 * only process). */
bool psh_checker(void);

#endif
