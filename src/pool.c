/* pool.c -- upstream servers and idle keep-alive connections (see pool.h). */
#include "pool.h"

#include <errno.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"
#include "net.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

static struct loop *loop;
static struct pool_server servers[CLI_MAX_UPSTREAM];
static unsigned nservers, rr;
static uint64_t idle_ns;
static unsigned open_count;
static struct upconn *free_list;   /* recycled structs, linked through next */

void pool_init(struct loop *l, const struct cfg *cfg)
{
    loop = l;
    nservers = cfg->nupstream;
    for (unsigned i = 0; i < nservers; i++)
        servers[i] = (struct pool_server){.addr = &cfg->upstream[i]};
    idle_ns = cfg->upstream_idle_ms * MS;
}

struct pool_server *pool_pick(void)
{
    struct pool_server *s = &servers[rr];
    rr = (rr + 1) % nservers;
    return s;
}

unsigned pool_open_count(void)
{
    return open_count;
}

static void unlink_idle(struct upconn *up)
{
    struct pool_server *s = up->srv;
    if (up->prev)
        up->prev->next = up->next;
    else
        s->idle = up->next;
    if (up->next)
        up->next->prev = up->prev;
    up->next = up->prev = NULL;
    s->nidle--;
}

static void release(struct loop_defer *d)
{
    struct upconn *up = container_of(d, struct upconn, defer);
    up->next = free_list;
    free_list = up;
}

void pool_close(struct upconn *up)
{
    if (!up->owner && up->io.fd >= 0)
        unlink_idle(up);
    loop_timer_stop(loop, &up->idle_timer);
    loop_close(loop, &up->io);
    up->owner = NULL;
    open_count--;
    loop_defer(loop, &up->defer, release);
}

static void idle_expired(struct timer *t)
{
    pool_close(container_of(t, struct upconn, idle_timer));
}

/* Events on a connection: to the owner, or, when idle, a sign of death. */
static void on_io(struct loop_io *io, uint32_t events)
{
    struct upconn *up = container_of(io, struct upconn, io);
    if (up->owner)
        up->on_event(up, events);
    else if (events & (LOOP_READ | LOOP_HUP))
        pool_close(up);
}

static struct upconn *alloc_conn(void)
{
    struct upconn *up = free_list;
    if (up)
        free_list = up->next;
    else
        up = xmalloc(sizeof *up);
    *up = (struct upconn){0};
    timer_init(&up->idle_timer, idle_expired);
    return up;
}

struct upconn *pool_connect(struct pool_server *srv, void *owner, pool_event_cb *cb, int *err)
{
    int fd = net_connect((const struct sockaddr *)&srv->addr->ss, srv->addr->len);
    if (fd < 0) {
        *err = fd;
        return NULL;
    }
    struct upconn *up = alloc_conn();
    int r = loop_add(loop, &up->io, fd, on_io);
    if (r < 0)
        goto out_free_conn;
    up->srv = srv;
    up->owner = owner;
    up->on_event = cb;
    up->connecting = true;
    open_count++;
    return up;

out_free_conn:
    close(fd);
    up->next = free_list;
    free_list = up;
    *err = r;
    return NULL;
}

struct upconn *pool_take_idle(struct pool_server *srv, void *owner, pool_event_cb *cb)
{
    while (srv->idle) {
        struct upconn *up = srv->idle;
        if (up->io.ready & (LOOP_READ | LOOP_HUP)) {
            pool_close(up);   /* closed by the server, or unsolicited bytes */
            continue;
        }
        unlink_idle(up);
        loop_timer_stop(loop, &up->idle_timer);
        up->owner = owner;
        up->on_event = cb;
        up->reused = true;
        return up;
    }
    return NULL;
}

void pool_put_idle(struct upconn *up)
{
    struct pool_server *s = up->srv;

    /* The exchange stopped reading at the end of the response, so a read bit
     * may be left from its last wake-up. Idle, that bit means "closed or
     * unsolicited bytes": find out which it is now, with one peek. */
    if (up->io.ready & (LOOP_READ | LOOP_HUP)) {
        char b;
        ssize_t n = recv(up->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n != -1 || errno != EAGAIN || (up->io.ready & LOOP_HUP)) {
            pool_close(up);   /* still owned: not on the idle list */
            return;
        }
        up->io.ready &= ~LOOP_READ;
    }
    up->owner = NULL;
    up->on_event = NULL;
    up->prev = NULL;
    up->next = s->idle;
    if (s->idle)
        s->idle->prev = up;
    s->idle = up;
    s->nidle++;
    loop_timer_at(loop, &up->idle_timer, loop->now + idle_ns);
}

void pool_close_idle(void)
{
    for (unsigned i = 0; i < nservers; i++)
        while (servers[i].idle)
            pool_close(servers[i].idle);
}

void pool_free_structs(void)
{
    while (free_list) {
        struct upconn *up = free_list;
        free_list = up->next;
        free(up);
    }
}
