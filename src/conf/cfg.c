/* cfg.c -- the runtime configuration's policies (see cfg.h). */
#include "cfg.h"

bool conf_retry_status(const struct conf_retry *r, unsigned status)
{
    for (unsigned i = 0; i < r->nstatus; i++)
        if (r->status[i] == status)
            return true;
    return false;
}
