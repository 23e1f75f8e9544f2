/* main.c -- hourglass: parse the command line, open the logs and listeners,
 * run the event loop until SIGINT or SIGTERM. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "buf.h"
#include "cli.h"
#include "conf.h"
#include "log.h"
#include "loop.h"
#include "proxy.h"

static struct loop loop;

/* Signals only set flags: the loop acts on them between events (proxy.c):
 * SIGTERM/SIGINT drain (a second one stops at once), SIGUSR1 reopens logs. */
static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        loop.sig_usr1 = 1;
    else
        loop.sig_term++;
}

/* Each connection costs a descriptor (two while proxied): raise the soft
 * limit to the hard one so that --max-connections is what limits. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static struct cfg cfg;
    int rc = cli_parse(&cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : 2;

    int r = log_open(cfg.access_log, cfg.access_log_json);
    if (r < 0) {
        if (cfg.conf && cfg.access_log == cfg.conf->access_log)   /* from the file */
            fprintf(stderr, "%s: access_log '%s': %s\n", cfg.conf->file, cfg.access_log,
                    strerror(-r));
        else
            fprintf(stderr, "hourglass: --access-log '%s': %s\n", cfg.access_log, strerror(-r));
        cli_free(&cfg);
        return 2;
    }
    log_set_level(cfg.log_level);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    if ((r = loop_init(&loop)) < 0) {
        fprintf(stderr, "hourglass: epoll: %s\n", strerror(-r));
        return 1;
    }
    if (px_init(&loop, &cfg) < 0) {
        rc = 1;
        goto out_shutdown;
    }
    char ups[256] = "";
    for (unsigned i = 0; i < cfg.nupstream && strlen(ups) < 200; i++)
        snprintf(ups + strlen(ups), sizeof ups - strlen(ups), "%s%s", i ? ", " : "",
                 cfg.upstream[i].text);
    for (unsigned i = 0; i < cfg.nlisten; i++)
        log_error("info", "listening on %s, proxying to %s (connect %llums, write %llums, "
                          "read %llums, total %llums)",
                  cfg.listen[i].text, ups, (unsigned long long)cfg.connect_ms,
                  (unsigned long long)cfg.write_ms, (unsigned long long)cfg.read_ms,
                  (unsigned long long)cfg.total_ms);
    r = loop_run(&loop);
    if (r < 0) {
        log_error("error", "event loop: %s", strerror(-r));
        rc = 1;
    } else {
        log_error("info", "stopping");
    }

out_shutdown:
    px_shutdown();
    loop_free(&loop);
    buf_drain_pools();
    log_flush();
    cli_free(&cfg);
    return rc;
}
