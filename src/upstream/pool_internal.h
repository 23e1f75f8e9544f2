/* pool_internal.h -- what the two files of the pool module share: pool.c
 * (pools, balancing, passive health, connections) and pool_slot.c (the
 * slots of dynamic servers). Only they include it. */
#ifndef HG_POOL_INTERNAL_H
#define HG_POOL_INTERNAL_H

#include <stdint.h>

#include "pool.h"

/* A copy of s (out of memory is fatal). */
char *pool_strdup(const char *s);

/* Sets g's servers up from the items v[0..n) with weights w: one server in
 * service per IP literal first, then POOL_NAME_SLOTS unused slots per name
 * (g->names), so that the array never moves. */
void pool_slots_build(struct pool_group *g, const struct val_server *const *v,
                      const unsigned *w, unsigned n);

/* SRV priorities at time now: marks standby the servers of every priority
 * but the lowest that has a server that could serve (pool_pick, first). */
void pool_standby_sync(struct pool_group *g, uint64_t now);

#endif
