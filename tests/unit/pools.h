/* pools.h -- for unit tests: the pools of a configuration file held in
 * memory, on a loop of their own. Include after unit.h. */
#ifndef HG_UNIT_POOLS_H
#define HG_UNIT_POOLS_H

#include "cli.h"
#include "conf.h"
#include "loop.h"
#include "pool.h"

/* Parses yaml (len bytes) into *c (after cli_defaults), starts *l and builds
 * the pools. False, after failed checks that say why, when any step fails. */
static UNIT_UNUSED bool unit_pools(const char *yaml, size_t len, struct loop *l, struct cfg *c)
{
    char *err = NULL;
    cli_defaults(c);
    c->conf = conf_parse("t.yaml", yaml, len, &err);
    if (!CHECK(c->conf != NULL)) {
        fprintf(stderr, "%s", err ? err : "");
        return false;
    }
    conf_apply(c->conf, c);
    return CHECK_EQ_INT(loop_init(l), 0) && CHECK_EQ_INT(pool_init(l, c), 0);
}

#endif
