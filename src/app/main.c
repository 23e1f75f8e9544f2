/* main.c -- hourglass: parse the command line, then serve: in this process
 * (--single-process) or under the supervising master (master.h), whose
 * workers each run serve() on the sockets it opened. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "conf.h"
#include "log.h"
#include "loop.h"
#include "master.h"
#include "worker.h"
#include "tkey.h"
#include "tls.h"

static struct loop loop;

/* Signals only set flags: the loop acts on them between events (proxy.c):
 * SIGTERM/SIGINT drain (a second one stops at once), SIGUSR2 retires (a
 * drain asked by the master after a reload), SIGUSR1 reopens logs, SIGHUP
 * is refused without a master. */
static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        loop.sig_usr1 = 1;
    else if (sig == SIGUSR2)
        loop.sig_usr2 = 1;
    else if (sig == SIGHUP)
        loop.sig_hup = 1;
    else
        loop.sig_term++;
}

static void announce(const struct cfg *cfg)
{
    char ups[256] = "";
    for (unsigned i = 0; i < cfg->nupstream && strlen(ups) < 200; i++)
        snprintf(ups + strlen(ups), sizeof ups - strlen(ups), "%s%s", i ? ", " : "",
                 cfg->upstream[i].text);
    for (unsigned i = 0; i < cfg->nlisten; i++)
        if (cfg->listen_forward[i])
            log_error("info", "listening on %s%s as a forward proxy (connect %llums, dns %llums, "
                              "total %llums)", cfg->listen[i].text,
                      cfg->listen_tls[i] ? " (TLS)" : "",
                      (unsigned long long)cfg->ms[TMO_CONNECT],
                      (unsigned long long)cfg->ms[TMO_DNS], (unsigned long long)cfg->ms[TMO_TOTAL]);
        else
            log_error("info", "listening on %s%s, proxying to %s (connect %llums, write %llums, "
                          "read %llums, total %llums)",
                  cfg->listen[i].text, cfg->listen_tls[i] ? " (TLS)" : "", ups,
                  (unsigned long long)cfg->ms[TMO_CONNECT], (unsigned long long)cfg->ms[TMO_WRITE],
                  (unsigned long long)cfg->ms[TMO_READ], (unsigned long long)cfg->ms[TMO_TOTAL]);
}

/* Serves cfg in this process until stopped: the whole server in single-
 * process mode, a worker under the master (fds: the inherited sockets;
 * ready_fd: told once serving). The exit status. */
static void access_log_error(const struct cfg *cfg, int r)
{
    if (cfg->conf && cfg->access_log == cfg->conf->access_log)   /* from the file */
        fprintf(stderr, "%s: access_log '%s': %s\n", cfg->conf->file, cfg->access_log,
                strerror(-r));
    else
        fprintf(stderr, "hourglass: --access-log '%s': %s\n", cfg->access_log, strerror(-r));
}

static int serve(struct cfg *cfg, const struct worker_fds *fds, int ready_fd)
{
    int rc = 0;
    int r = log_open(cfg->access_log, cfg->access_log_json);
    if (r < 0) {
        access_log_error(cfg, r);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    /* a worker leaves SIGINT (a Ctrl-C to the whole process group) to the
     * master, which forwards it once: else the worker would count two
     * signals and skip the drain */
    if (ready_fd >= 0)
        signal(SIGINT, SIG_IGN);
    else
        sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);   /* a worker starts with the master's blocked */

    if ((r = loop_init(&loop)) < 0) {
        fprintf(stderr, "hourglass: epoll: %s\n", strerror(-r));
        return 1;
    }
    if (worker_init(&loop, cfg, fds) < 0) {
        rc = 1;
        goto out_shutdown;
    }
    if (ready_fd >= 0) {
        (void)!write(ready_fd, "R", 1);
        close(ready_fd);
    } else {
        announce(cfg);
    }
    r = loop_run(&loop);
    if (r < 0) {
        log_error("error", "event loop: %s", strerror(-r));
        rc = 1;
    } else {
        log_error("info", "stopping");
    }

out_shutdown:
    worker_shutdown();
    loop_free(&loop);
    buf_drain_pools();
    log_flush();
    return rc;
}

int main(int argc, char **argv)
{
    static struct cfg cfg;
    if (tls_global_init() < 0) {
        fprintf(stderr, "hourglass: OpenSSL failed to initialise (is libssl3 installed?)\n");
        return 1;
    }
    int rc = cli_parse(&cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : 2;
    log_set_level(cfg.log_level);
    master_fd_limit(&cfg, true);   /* (a single process too) */
    tkey_configure(cfg.ticket_rotation_ms, cfg.ticket_lifetime_ms);   /* before the forks */
    if (cfg.single_process) {
        rc = serve(&cfg, NULL, -1);
    } else {
        /* the workers open the access log: a bad path is the command
         * line's fault (exit 2), so it is tried here first */
        if (strcmp(cfg.access_log, "-") && strcmp(cfg.access_log, "off")) {
            int fd = open(cfg.access_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (fd < 0) {
                access_log_error(&cfg, -errno);
                cli_free(&cfg);
                return 2;
            }
            close(fd);
        }
        rc = master_run(&cfg, argc, argv, serve);
    }
    cli_free(&cfg);
    return rc;
}
