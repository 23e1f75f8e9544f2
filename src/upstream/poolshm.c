/* poolshm.c -- pool state shared by the workers of a generation (see
 * poolshm.h). */
#define _GNU_SOURCE
#include "poolshm.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "buf.h"

struct area {
    uint32_t gen;                                   /* 0: free */
    uint32_t nworkers;
    struct psh_counts counts[PSH_POOLS][PSH_WORKERS];
    struct psh_pool pools[PSH_POOLS];
};

static struct area *areas;          /* the master's mapping, inherited */
static struct area *mine;           /* this worker's generation */
static unsigned my_slot, nworkers = 1;
static struct psh_counts spare;     /* a pool past PSH_POOLS: counted alone */

int psh_share(void)
{
    void *p = mmap(NULL, PSH_AREAS * sizeof *areas, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    areas = p;
    return 0;
}

int psh_area_claim(unsigned gen)
{
    for (int i = 0; areas && i < PSH_AREAS; i++)
        if (!areas[i].gen) {
            memset(&areas[i], 0, sizeof areas[i]);
            areas[i].gen = gen;
            return i;
        }
    return -1;
}

void psh_area_drop(int i, unsigned gen)
{
    if (areas && i >= 0 && i < PSH_AREAS && areas[i].gen == gen)
        areas[i].gen = 0;
}

void psh_attach(int i, unsigned slot, unsigned n)
{
    if (areas && i >= 0 && i < PSH_AREAS && slot < PSH_WORKERS) {
        mine = &areas[i];
        my_slot = slot;
        nworkers = n < PSH_WORKERS ? n : PSH_WORKERS;
    } else {
        /* one process, or no area: its own (zeroed once; a worker lives
         * in one generation) */
        if (!mine || (areas && mine >= areas && mine < areas + PSH_AREAS))
            mine = xcalloc(1, sizeof *mine);
        my_slot = 0;
        nworkers = 1;
    }
    /* this slot's counts start at zero: a worker it replaces took its
     * requests with it */
    for (unsigned p = 0; p < PSH_POOLS; p++)
        mine->counts[p][my_slot] = (struct psh_counts){0};
    spare = (struct psh_counts){0};
}

struct psh_counts *psh_mine(unsigned p)
{
    return mine && p < PSH_POOLS ? &mine->counts[p][my_slot] : &spare;
}

struct psh_counts psh_sum(unsigned p)
{
    struct psh_counts t = {0};
    if (!mine || p >= PSH_POOLS)
        return spare;
    for (unsigned w = 0; w < nworkers; w++) {
        t.requests += __atomic_load_n(&mine->counts[p][w].requests, __ATOMIC_RELAXED);
        t.retries += __atomic_load_n(&mine->counts[p][w].retries, __ATOMIC_RELAXED);
    }
    return t;
}

struct psh_pool *psh_pool(unsigned p)
{
    return mine && p < PSH_POOLS ? &mine->pools[p] : NULL;
}

bool psh_checker(void)
{
    return my_slot == 0;
}
