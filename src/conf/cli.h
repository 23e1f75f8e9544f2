/* cli.h -- the command line: the configuration file (--config), then the
 * flags over it, into a struct cfg (conf.h). */
#ifndef HG_CLI_H
#define HG_CLI_H

#include "conf.h"

/* Fills cfg with the embedded defaults. */
void cli_defaults(struct cfg *cfg);

/* Parses argv. With --config FILE, the file's values (conf_apply) come
 * first and the flags override them. Returns 0 to run, 1 when --help,
 * --version or a successful --check-config / -t printed its answer (exit 0),
 * 2 after printing an error naming the flag, or the file, line and key
 * (exit 2). After 0, release with cli_free. */
int cli_parse(struct cfg *cfg, int argc, char **argv);

/* Releases what cli_parse kept (the configuration file's model). */
void cli_free(struct cfg *cfg);

#endif
