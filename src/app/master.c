/* master.c -- the supervising master (see master.h). */
#define _GNU_SOURCE
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "poolshm.h"
#include "stats.h"
#include "tkey.h"

#define MAX_WORKERS   (3 * CLI_MAX_WORKERS)   /* serving, starting, retiring */
#define MAX_SOCKETS   (2 * CLI_MAX_LISTEN)    /* a reload may change every address */
#define STATS_SLOTS   MAX_WORKERS
#define RESPAWN_MS    1000                    /* a worker dying younger waits this */
#define READY_MS      10000                   /* a new generation must be ready by then */

/* The sockets of one listen address, one per worker slot. */
struct lsock {
    struct cli_addr addr;
    int fd[CLI_MAX_WORKERS];
    unsigned nfd;
    bool used;
};

struct worker {
    pid_t pid;              /* 0: this entry is free */
    unsigned gen, slot, stats_slot;
    int shared_area;        /* its generation's (poolshm.h) */
    int ready_fd;           /* read end of the readiness pipe, -1 once read */
    bool ready, retiring, killed_by_us;
    uint64_t started_ms;
};

/* One configuration as read, and what its workers serve. */
struct gen {
    unsigned id;            /* 0: none */
    struct cfg *cfg;
    unsigned nworkers;
    int admin_fd;           /* -1: none */
    uint64_t respawn_at[CLI_MAX_WORKERS];   /* slot waiting for a new worker; 0 = no */
    unsigned respawn_stats[CLI_MAX_WORKERS];
    uint64_t started_ms;
    int shared_area;        /* its workers' pool state (poolshm.h); -1: none */
};

static struct lsock socks[MAX_SOCKETS];
static struct worker workers[MAX_WORKERS];
static bool hup_pending;         /* SIGHUP while the first generation started */
static struct gen cur, next;    /* serving; being started by a reload */
static unsigned last_gen;
static int sigfd = -1;
static sigset_t old_mask;   /* restored on return */
static bool stopping;
static int argc_saved;
static char **argv_saved;
static master_serve_fn *serve_fn;
static int exit_status;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@'))
        return;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof sun.sun_path)
        return;
    memcpy(sun.sun_path, path, n);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';   /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    char msg[128];
    int len = snprintf(msg, sizeof msg, "%s\nMAINPID=%d", state, (int)getpid());
    sendto(fd, msg, (size_t)len, MSG_NOSIGNAL, (struct sockaddr *)&sun,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    close(fd);
}

static unsigned workers_wanted(const struct cfg *c)
{
    if (c->workers)
        return c->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > CLI_MAX_WORKERS ? CLI_MAX_WORKERS : (unsigned)n;
}

/* ------------------------------------------------------------ sockets */

static struct lsock *sock_find(const char *text)
{
    for (int i = 0; i < MAX_SOCKETS; i++)
        if (socks[i].used && !strcmp(socks[i].addr.text, text))
            return &socks[i];
    return NULL;
}

static void sock_close_from(struct lsock *s, unsigned from)
{
    while (s->nfd > from)
        close(s->fd[--s->nfd]);
    if (!s->nfd)
        s->used = false;
}

/* Opens what is missing for n slots of address a. 0 or -errno (logged). */
static int sock_open(const struct cli_addr *a, unsigned n)
{
    struct lsock *s = sock_find(a->text);
    if (!s) {
        for (int i = 0; i < MAX_SOCKETS && !s; i++)
            if (!socks[i].used)
                s = &socks[i];
        if (!s)
            return -ENOSPC;
        /* SO_REUSEPORT would share the port with another process of this
         * user without a word: a plain bind first says whether it is free. */
        int probe = net_listen((const struct sockaddr *)&a->ss, a->len, 1);
        if (probe < 0) {
            log_error("error", "cannot listen on %s: %s%s", a->text, strerror(-probe),
                      probe == -EADDRINUSE ? " (is another process using the port? "
                                             "find it with: ss -ltnp)" : "");
            return probe;
        }
        close(probe);
        *s = (struct lsock){.addr = *a, .used = true};
    }
    while (s->nfd < n) {
        int fd = net_listen_reuseport((const struct sockaddr *)&s->addr.ss, s->addr.len, 4096);
        if (fd < 0) {
            log_error("error", "cannot listen on %s: %s", a->text, strerror(-fd));
            if (!s->nfd)
                s->used = false;
            return fd;
        }
        if (s->nfd == 0) {   /* port 0: the others join the port the kernel chose */
            s->addr.len = sizeof s->addr.ss;
            getsockname(fd, (struct sockaddr *)&s->addr.ss, &s->addr.len);
        }
        s->fd[s->nfd++] = fd;
    }
    return 0;
}

/* Opens every socket generation g needs. 0 or -errno. */
static int gen_open_sockets(struct gen *g)
{
    for (unsigned i = 0; i < g->cfg->nlisten; i++) {
        int r = sock_open(&g->cfg->listen[i], g->nworkers);
        if (r < 0)
            return r;
        /* Before any worker runs: a socket listens from its opening, and a
         * connection the kernel took before a worker set defer_accept would
         * be handed over at once. (Each worker sets it again, and says so
         * if it fails: listener_open_all.) */
        struct lsock *s = sock_find(g->cfg->listen[i].text);
        for (unsigned k = 0; k < s->nfd; k++)
            (void)net_defer_accept(s->fd[k], g->cfg->listen_defer[i]);
    }
    g->admin_fd = -1;
    if (g->cfg->has_admin) {
        if (g != &cur && cur.id && cur.cfg->has_admin &&
            !strcmp(cur.cfg->admin.text, g->cfg->admin.text)) {
            g->admin_fd = cur.admin_fd;   /* same address: the same socket */
            return 0;
        }
        int fd = net_listen((const struct sockaddr *)&g->cfg->admin.ss, g->cfg->admin.len, 64);
        if (fd < 0) {
            log_error("error", "cannot listen on %s (--admin): %s", g->cfg->admin.text,
                      strerror(-fd));
            return fd;
        }
        g->admin_fd = fd;
        log_error("info", "admin listener on %s: /metrics, /healthz", g->cfg->admin.text);
    }
    return 0;
}

/* Closes the sockets that only g (a generation ending) used: those of
 * addresses `keep` does not listen on, and slots past keep's count. */
static void sockets_keep_only(const struct gen *keep, const struct gen *g)
{
    for (int i = 0; i < MAX_SOCKETS; i++) {
        struct lsock *s = &socks[i];
        if (!s->used)
            continue;
        bool wanted = false;
        for (unsigned k = 0; keep->cfg && k < keep->cfg->nlisten && !wanted; k++)
            wanted = !strcmp(keep->cfg->listen[k].text, s->addr.text);
        sock_close_from(s, wanted ? keep->nworkers : 0);
    }
    if (g->id && g->admin_fd >= 0 && g->admin_fd != keep->admin_fd)
        close(g->admin_fd);
}

/* ------------------------------------------------------------ workers */

static unsigned stats_slot_new(unsigned gen)
{
    for (unsigned i = 0; i < stats_nslots(); i++) {
        struct stats *s = stats_slot(i);
        if (s->gen == 0) {
            memset(s, 0, sizeof *s);
            s->gen = gen;
            return i;
        }
    }
    return 0;   /* cannot happen: as many slots as worker entries */
}

static void stats_slot_free(unsigned i, unsigned gen)
{
    struct stats *s = stats_slot(i);
    if (s && s->gen == gen)
        s->gen = 0;
}

static unsigned live_workers(void)
{
    unsigned n = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        n += workers[i].pid != 0;
    return n;
}

/* In the child: keep only the sockets of this worker's slot. */
static void child_setup(const struct gen *g, unsigned slot, struct worker_fds *fds)
{
    for (unsigned i = 0; i < g->cfg->nlisten; i++)
        fds->listen[i] = sock_find(g->cfg->listen[i].text)->fd[slot];
    fds->admin = g->admin_fd;
    for (int i = 0; i < MAX_SOCKETS; i++)
        for (unsigned k = 0; socks[i].used && k < socks[i].nfd; k++) {
            bool mine = false;
            for (unsigned j = 0; j < g->cfg->nlisten; j++)
                mine |= socks[i].fd[k] == fds->listen[j];
            if (!mine)
                close(socks[i].fd[k]);
        }
    if (cur.admin_fd >= 0 && cur.admin_fd != fds->admin)
        close(cur.admin_fd);
    if (next.id && next.admin_fd >= 0 && next.admin_fd != fds->admin)
        close(next.admin_fd);
    for (int i = 0; i < MAX_WORKERS; i++)
        if (workers[i].pid && workers[i].ready_fd >= 0)
            close(workers[i].ready_fd);
    close(sigfd);
}

static int spawn(struct gen *g, unsigned slot, unsigned stats_slot)
{
    struct worker *w = NULL;
    for (int i = 0; i < MAX_WORKERS && !w; i++)
        if (!workers[i].pid)
            w = &workers[i];
    int p[2];
    if (!w || pipe2(p, O_CLOEXEC) < 0) {
        log_error("error", "cannot start worker %u: %s", slot, w ? strerror(errno)
                                                             : "too many processes");
        return -1;
    }
    pid_t master = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("error", "cannot start worker %u: fork: %s", slot, strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        struct worker_fds fds;
        close(p[0]);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            _exit(0);   /* the master is gone already */
        child_setup(g, slot, &fds);
        fds.shared_area = g->shared_area;
        fds.slot = slot;
        fds.nworkers = g->nworkers;
        stats_use(stats_slot);
        int rc = serve_fn(g->cfg, &fds, p[1]);
        exit(rc);
    }
    close(p[1]);
    *w = (struct worker){.pid = pid, .gen = g->id, .slot = slot, .stats_slot = stats_slot,
                         .shared_area = g->shared_area, .ready_fd = p[0],
                         .started_ms = now_ms()};
    log_error("info", "worker %u (pid %d) started (generation %u)", slot, (int)pid, g->id);
    return 0;
}

static void signal_gen(unsigned gen, int sig, bool retire_mark)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (workers[i].pid && (gen == 0 || workers[i].gen == gen)) {
            kill(workers[i].pid, sig);
            if (retire_mark)
                workers[i].retiring = true;
        }
}

/* A generation's shared pool state is given back once it neither serves
 * nor starts and no worker of it is left. */
static void area_release(int area, unsigned gen)
{
    if (!gen || gen == cur.id || gen == next.id)
        return;
    for (int i = 0; i < MAX_WORKERS; i++)
        if (workers[i].pid && workers[i].gen == gen)
            return;
    psh_area_drop(area, gen);
}

static void gen_free(struct gen *g)
{
    if (g->cfg) {
        cli_free(g->cfg);
        free(g->cfg);
    }
    int area = g->shared_area;
    unsigned id = g->id;
    *g = (struct gen){0};
    area_release(area, id);
}

/* Starts every worker of g; -1 if one could not be forked. */
static int gen_start(struct gen *g)
{
    g->started_ms = now_ms();
    g->shared_area = psh_area_claim(g->id);
    for (unsigned i = 0; i < g->nworkers; i++)
        if (spawn(g, i, stats_slot_new(g->id)) < 0)
            return -1;
    return 0;
}

static bool gen_ready(const struct gen *g)
{
    unsigned n = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        n += workers[i].pid && workers[i].gen == g->id && workers[i].ready;
    return n == g->nworkers;
}

static void announce(const struct gen *g)
{
    const struct cfg *c = g->cfg;
    char ups[256] = "";
    for (unsigned i = 0; i < c->nupstream && strlen(ups) < 200; i++)
        snprintf(ups + strlen(ups), sizeof ups - strlen(ups), "%s%s", i ? ", " : "",
                 c->upstream[i].text);
    for (unsigned i = 0; i < c->nlisten; i++)
        log_error("info", "listening on %s%s with %u worker(s), %s%s", c->listen[i].text,
                  c->listen_tls[i] ? " (TLS)" : "", g->nworkers, c->listen_forward[i] ? "as a forward proxy" : "proxying to ",
                  c->listen_forward[i] ? "" : ups);
}

/* A new generation failed: retire what it started, keep the sockets cur
 * needs, and carry on with cur. */
static void reload_abort(const char *why)
{
    log_error("error", "reload refused: %s; generation %u keeps serving", why, cur.id);
    if (next.id) {
        signal_gen(next.id, SIGUSR2, true);
        sockets_keep_only(&cur, &next);
    }
    gen_free(&next);
    notify("READY=1");
}

static void reload_commit(void)
{
    unsigned old = cur.id;
    signal_gen(old, SIGUSR2, true);
    struct gen prev = cur;
    cur = next;
    next = (struct gen){0};
    sockets_keep_only(&cur, &prev);
    gen_free(&prev);
    announce(&cur);
    log_error("info", "reload: generation %u serving; generation %u draining", cur.id, old);
    notify("READY=1");
}

void master_fd_limit(const struct cfg *c, bool raise)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (raise && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t clients = c->max_connections, upstream = clients;
    if (c->conf && c->conf->npools) {
        uint64_t sum = 0;
        for (unsigned i = 0; i < c->conf->npools && sum != UINT64_MAX; i++)
            sum = c->conf->pools[i].max_connections ? sum + c->conf->pools[i].max_connections
                                                    : UINT64_MAX;
        if (sum < upstream)
            upstream = sum;
    }
    uint64_t need = clients + upstream + c->nlisten + (c->has_admin ? 1 : 0) + 32;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        log_error("warn", "the open file limit is %llu descriptors (hard limit %llu), below the "
                          "%llu that max_connections %llu may need with its upstream connections "
                          "(%llu clients, %llu upstream, %u listeners and 32 spare): past it, "
                          "requests get 503 proxy_overloaded and new connections wait; raise the "
                          "hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_connections",
                  (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                  (unsigned long long)need, (unsigned long long)clients,
                  (unsigned long long)clients, (unsigned long long)upstream,
                  c->nlisten + (c->has_admin ? 1 : 0));
}

static void reload(void)
{
    if (next.id) {
        log_error("warn", "SIGHUP ignored: generation %u is still starting; send it again "
                          "once it serves", next.id);
        return;
    }
    log_error("info", "reload: reading the configuration again");
    notify("RELOADING=1");
    struct cfg *c = malloc(sizeof *c);
    if (!c) {
        reload_abort("out of memory");
        return;
    }
    /* cli_parse prints each error line (FILE:LINE:COL: key: ...) to stderr */
    int rc = cli_parse(c, argc_saved, argv_saved);
    if (rc) {
        free(c);
        reload_abort(rc == 1 ? "the command line asks for no server (--help, -t)"
                             : "the configuration has errors (above)");
        return;
    }
    if (c->single_process) {
        cli_free(c);
        free(c);
        reload_abort("--single-process is set");
        return;
    }
    master_fd_limit(c, false);
    tkey_configure(c->ticket_rotation_ms, c->ticket_lifetime_ms);   /* before the forks */
    next = (struct gen){.id = ++last_gen, .cfg = c, .nworkers = workers_wanted(c)};
    if (gen_open_sockets(&next) < 0) {
        reload_abort("a listener could not be opened (above)");
        return;
    }
    if (gen_start(&next) < 0)
        reload_abort("a worker could not be started");
}

static void describe_status(int status, char *out, size_t n)
{
    if (WIFSIGNALED(status))
        snprintf(out, n, "killed by signal %d%s", WTERMSIG(status),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(out, n, "exit status %d", WEXITSTATUS(status));
}

static void on_exit_of(struct worker *w, int status)
{
    char why[64];
    describe_status(status, why, sizeof why);
    struct worker d = *w;
    w->pid = 0;
    if (d.ready_fd >= 0)
        close(d.ready_fd);
    area_release(d.shared_area, d.gen);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (d.retiring || stopping) {
        log_error(clean ? "info" : "warn", "worker %u (pid %d) of generation %u exited (%s)",
                  d.slot, (int)d.pid, d.gen, why);
        stats_slot_free(d.stats_slot, d.gen);
        return;
    }
    if (next.id && d.gen == next.id && !d.ready) {
        char m[160];
        snprintf(m, sizeof m, "worker %u (pid %d) of generation %u failed to start (%s)",
                 d.slot, (int)d.pid, d.gen, why);
        stats_slot_free(d.stats_slot, d.gen);
        reload_abort(m);
        return;
    }
    if (d.gen != cur.id) {   /* an older generation (aborted or replaced) */
        stats_slot_free(d.stats_slot, d.gen);
        return;
    }
    uint64_t lived = now_ms() - d.started_ms;
    log_error("error", "worker %u (pid %d) died (%s); starting a new one%s", d.slot, (int)d.pid,
              why, lived < RESPAWN_MS ? " in 1 s" : "");
    cur.respawn_at[d.slot] = now_ms() + (lived < RESPAWN_MS ? RESPAWN_MS : 0);
    if (!cur.respawn_at[d.slot])
        cur.respawn_at[d.slot] = 1;
    cur.respawn_stats[d.slot] = d.stats_slot;   /* the replacement counts on */
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < MAX_WORKERS; i++)
            if (workers[i].pid == pid) {
                on_exit_of(&workers[i], status);
                break;
            }
}

static void begin_stop(int sig)
{
    if (!stopping)
        log_error("info", "%s: telling %u worker(s) to finish their requests and stop",
                  sig == SIGINT ? "SIGINT" : "SIGTERM", live_workers());
    else
        log_error("info", "%s again: telling the workers to stop now",
                  sig == SIGINT ? "SIGINT" : "SIGTERM");
    stopping = true;
    notify("STOPPING=1");
    signal_gen(0, SIGTERM, false);
    for (unsigned i = 0; i < CLI_MAX_WORKERS; i++)
        cur.respawn_at[i] = 0;
    /* the workers close theirs as they start draining: with the master's
     * copies gone too, new connections are refused, not left queued */
    for (int i = 0; i < MAX_SOCKETS; i++)
        if (socks[i].used)
            sock_close_from(&socks[i], 0);
}

/* The first generation: every worker ready, or a failure that ends it all. */
static int first_start(void)
{
    uint64_t deadline = now_ms() + READY_MS;
    while (!gen_ready(&cur)) {
        struct pollfd pf[MAX_WORKERS + 1];
        int n = 0;
        pf[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        for (int i = 0; i < MAX_WORKERS; i++)
            if (workers[i].pid && workers[i].ready_fd >= 0)
                pf[n++] = (struct pollfd){.fd = workers[i].ready_fd, .events = POLLIN};
        uint64_t t = now_ms();
        if (t >= deadline) {
            log_error("error", "the workers did not start within %d s", READY_MS / 1000);
            return -1;
        }
        if (poll(pf, (nfds_t)n, (int)(deadline - t)) < 0 && errno != EINTR)
            return -1;
        for (int i = 0; i < MAX_WORKERS; i++) {
            struct worker *w = &workers[i];
            char b;
            if (w->pid && w->ready_fd >= 0) {
                ssize_t r = read(w->ready_fd, &b, 1);
                if (r == 1 || r == 0) {
                    w->ready = r == 1;
                    close(w->ready_fd);
                    w->ready_fd = -1;
                }
            }
        }
        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                return -2;
            if (si.ssi_signo == SIGHUP)
                hup_pending = true;   /* served once the first workers are */
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            char why[64];
            describe_status(status, why, sizeof why);
            log_error("error", "worker (pid %d) failed to start (%s)", (int)pid, why);
            for (int i = 0; i < MAX_WORKERS; i++)
                if (workers[i].pid == pid) {
                    if (workers[i].ready_fd >= 0)
                        close(workers[i].ready_fd);
                    workers[i].pid = 0;
                }
            return -1;
        }
    }
    return 0;
}

static void poll_once(void)
{
    struct pollfd pf[MAX_WORKERS + 1];
    struct worker *pw[MAX_WORKERS + 1];
    int n = 0;
    pf[n] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    pw[n++] = NULL;
    for (int i = 0; i < MAX_WORKERS; i++)
        if (workers[i].pid && workers[i].ready_fd >= 0) {
            pf[n] = (struct pollfd){.fd = workers[i].ready_fd, .events = POLLIN};
            pw[n++] = &workers[i];
        }
    uint64_t t = now_ms(), wake = UINT64_MAX;
    for (unsigned i = 0; i < CLI_MAX_WORKERS; i++)
        if (cur.respawn_at[i] && cur.respawn_at[i] < wake)
            wake = cur.respawn_at[i];
    if (next.id && next.started_ms + READY_MS < wake)
        wake = next.started_ms + READY_MS;
    bool rotated;   /* the ticket key ring is the master's to write (tkey.h) */
    uint64_t tk = tkey_rotate(&rotated);
    if (rotated)
        log_error("debug", "TLS session ticket key rotated; %u keys kept", tkey_count());
    if (t + tk < wake)
        wake = t + tk;
    int timeout = wake == UINT64_MAX ? -1 : wake <= t ? 0 : (int)(wake - t);
    if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
        return;
    for (int i = 1; i < n; i++) {
        if (!pf[i].revents)
            continue;
        char b;
        ssize_t r = read(pf[i].fd, &b, 1);
        if (r == 1 || r == 0) {
            pw[i]->ready = r == 1;
            close(pw[i]->ready_fd);
            pw[i]->ready_fd = -1;
        }
    }
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGCHLD: reap(); break;
        case SIGHUP:
            if (!stopping)
                reload();
            break;
        case SIGTERM:
        case SIGINT: begin_stop((int)si.ssi_signo); break;
        case SIGUSR1:
            log_error("info", "SIGUSR1: telling the workers to reopen their logs");
            signal_gen(0, SIGUSR1, false);
            break;
        }
    }
    reap();   /* a SIGCHLD merged with another may carry several exits */
    t = now_ms();
    if (next.id && !stopping) {
        if (gen_ready(&next))
            reload_commit();
        else if (t >= next.started_ms + READY_MS)
            reload_abort("the new workers did not report ready within 10 s");
    }
    for (unsigned i = 0; i < CLI_MAX_WORKERS && !stopping; i++)
        if (cur.respawn_at[i] && cur.respawn_at[i] <= t) {
            cur.respawn_at[i] = 0;
            spawn(&cur, i, cur.respawn_stats[i]);
        }
}

int master_run(struct cfg *cfg, int argc, char **argv, master_serve_fn *serve)
{
    argc_saved = argc;
    argv_saved = argv;
    serve_fn = serve;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, &old_mask);
    sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0 || stats_share(STATS_SLOTS) < 0 || psh_share() < 0) {
        log_error("error", "master: %s", strerror(errno));
        return 1;
    }
    /* cur takes a copy the master owns (a reload frees it) */
    struct cfg *c = malloc(sizeof *c);
    if (!c)
        return 1;
    *c = *cfg;
    cfg->conf = NULL;   /* now owned by c */
    cur = (struct gen){.id = ++last_gen, .cfg = c, .nworkers = workers_wanted(c)};
    if (gen_open_sockets(&cur) < 0) {
        exit_status = 1;
        goto out;
    }
    if (gen_start(&cur) < 0) {
        exit_status = 1;
        stopping = true;
        signal_gen(0, SIGTERM, false);
    } else {
        int r = first_start();
        if (r == -1) {
            exit_status = 1;
            log_error("error", "stopping: the first workers could not start (see above)");
        }
        if (r < 0) {
            stopping = true;
            signal_gen(0, SIGTERM, false);
        } else {
            announce(&cur);
            notify("READY=1");
            if (hup_pending)
                reload();
        }
    }
    while (!stopping || live_workers())
        poll_once();
    log_error("info", "stopping: every worker has exited");

out:
    for (int i = 0; i < MAX_SOCKETS; i++)
        if (socks[i].used)
            sock_close_from(&socks[i], 0);
    if (cur.id && cur.admin_fd >= 0)
        close(cur.admin_fd);
    gen_free(&cur);
    gen_free(&next);
    close(sigfd);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    return exit_status;
}
