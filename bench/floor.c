/* floor -- the least work a proxy could do, for the benchmark.
 *
 * Usage: floor LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1)
 *
 * One thread, edge-triggered epoll. For every client connection it opens one
 * upstream connection and copies bytes both ways through a 16 KiB buffer per
 * direction (the buffer size hourglass and HAProxy use). No HTTP parsing at
 * all: keep-alive requests simply flow over the 1:1 pair of connections. When
 * either side reaches end of file or fails, whatever was already read is
 * written to the other side and both connections are closed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef BUFSZ
#define BUFSZ 16384
#endif

struct dir {             /* bytes read from fd[i], waiting to go to fd[1-i] */
    char buf[BUFSZ];
    size_t off, len;
    int eof;
};

struct pair {
    int fd[2];           /* 0: client, 1: upstream */
    struct dir d[2];
    int dead;
    struct pair *next_dead;
};

static int ep;
static struct pair *dead_list;

static void die(const char *what) { perror(what); exit(1); }

/* Move bytes from p->fd[i] to p->fd[1-i] until the kernel says EAGAIN.
 * Returns 0 to keep going, 1 when that direction is finished, -1 on error. */
static int pump(struct pair *p, int i)
{
    struct dir *d = &p->d[i];
    for (;;) {
        if (d->off < d->len) {
            ssize_t n = write(p->fd[1 - i], d->buf + d->off, d->len - d->off);
            if (n < 0)
                return (errno == EAGAIN) ? 0 : -1;
            d->off += (size_t)n;
            continue;
        }
        if (d->eof)
            return 1;
        ssize_t n = read(p->fd[i], d->buf, BUFSZ);
        if (n > 0) {
            d->off = 0;
            d->len = (size_t)n;
        } else if (n == 0) {
            d->eof = 1;
        } else {
            return (errno == EAGAIN) ? 0 : -1;
        }
    }
}

static void kill_pair(struct pair *p)
{
    close(p->fd[0]);
    close(p->fd[1]);
    p->dead = 1;               /* freed after this batch of events */
    p->next_dead = dead_list;
    dead_list = p;
}

static void watch(struct pair *p, int i)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p->fd[i], &ev) < 0)
        die("epoll_ctl");
}

static void accept_all(int lfd, const struct sockaddr_in *up)
{
    int one = 1;
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EAGAIN && errno != ECONNABORTED)
                perror("accept4");
            return;
        }
        int u = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (u < 0) {
            perror("socket");
            close(c);
            continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(u, (const struct sockaddr *)up, sizeof *up) < 0 && errno != EINPROGRESS) {
            perror("connect");
            close(c);
            close(u);
            continue;
        }
        struct pair *p = calloc(1, sizeof *p);
        if (!p)
            die("calloc");
        p->fd[0] = c;
        p->fd[1] = u;
        watch(p, 0);
        watch(p, 1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "defer"))) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT [defer]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    struct sockaddr_in ua = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, "127.0.0.1", &la.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &ua.sin_addr);

    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (argc == 4)   /* as the proxies are run: accepted once the first bytes are in */
        setsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&la, sizeof la) < 0)
        die("bind");
    if (listen(lfd, 4096) < 0)
        die("listen");
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.u64 = 0};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl");

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u64 == 0) {
                accept_all(lfd, &ua);
                continue;
            }
            struct pair *p = (struct pair *)(uintptr_t)(evs[k].data.u64 & ~(uint64_t)1);
            if (p->dead)
                continue;
            /* Either fd's readiness may unblock either direction. */
            int a = pump(p, 0), b = pump(p, 1);
            if (a != 0 || b != 0)
                kill_pair(p);
        }
        while (dead_list) {
            struct pair *p = dead_list;
            dead_list = p->next_dead;
            free(p);
        }
    }
}
