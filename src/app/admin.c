/* admin.c -- the admin listener: /metrics and /healthz (see admin.h). */
#define _GNU_SOURCE
#include "admin.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "net.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))
#define ADMIN_CONNS 16
#define ADMIN_DEADLINE_NS (2000 * MS)

struct admin_conn {
    struct conn conn;   /* plain TCP */
    struct timer timer;
    char in[2048];
    size_t len;
    char *out;          /* the response being written */
    size_t out_len, out_off;
    bool used;
};

static struct loop *loop;
static struct loop_io lst;
static struct admin_conn conns[ADMIN_CONNS];   /* all of them, allocated once */
static admin_render_fn *render;
static admin_healthy_fn *healthy;
static struct http_msg msg;

static void admin_conn_close(struct admin_conn *a)
{
    loop_timer_stop(loop, &a->timer);
    conn_close(&a->conn, loop);
    free(a->out);
    a->out = NULL;
    a->used = false;
}

static void respond(struct admin_conn *a, int status, const char *ctype, const char *body,
                    size_t blen)
{
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      status, http_reason(status), ctype, blen);
    a->out = xmalloc((uint64_t)hl + blen);
    memcpy(a->out, head, (size_t)hl);
    memcpy(a->out + hl, body, blen);
    a->out_len = (size_t)hl + blen;
    a->out_off = 0;
}

static void handle(struct admin_conn *a)
{
    int r = http_parse_request(a->in, a->len, &msg, &http_default_limits);
    if (r == HTTP_INCOMPLETE && a->len < sizeof a->in)
        return;
    if (r <= 0) {
        respond(a, 400, "text/plain", "bad request\n", 12);
        return;
    }
    bool get = msg.method_len == 3 && memcmp(msg.method, "GET", 3) == 0;
    if (get && msg.target_len == 8 && memcmp(msg.target, "/metrics", 8) == 0) {
        size_t need = render(NULL, 0);
        char *body = xmalloc(need + 1);
        size_t n = render(body, need + 1);
        respond(a, 200, "text/plain; version=0.0.4", body, n < need ? n : need);
        free(body);
    } else if (get && msg.target_len == 8 && memcmp(msg.target, "/healthz", 8) == 0) {
        if (healthy())
            respond(a, 200, "text/plain", "ok\n", 3);
        else
            respond(a, 503, "text/plain", "draining\n", 9);
    } else {
        respond(a, 404, "text/plain", "try /metrics or /healthz\n", 25);
    }
}

static void on_conn(struct loop_io *io, uint32_t events)
{
    (void)events;
    struct admin_conn *a = container_of(io, struct admin_conn, conn.io);
    while (!a->out && (io->ready & LOOP_READ)) {
        ssize_t n = conn_read(&a->conn, a->in + a->len, sizeof a->in - a->len);
        if (n > 0) {
            a->len += (size_t)n;
            handle(a);
            continue;
        }
        if (n == -EAGAIN)
            break;
        admin_conn_close(a);   /* gone before asking */
        return;
    }
    while (a->out && (io->ready & LOOP_WRITE)) {
        struct iovec iov = {a->out + a->out_off, a->out_len - a->out_off};
        ssize_t n = conn_writev(&a->conn, &iov, 1);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            admin_conn_close(a);
            return;
        }
        a->out_off += (size_t)n;
        if (a->out_off == a->out_len) {
            admin_conn_close(a);
            return;
        }
    }
}

static void on_deadline(struct timer *t)
{
    admin_conn_close(container_of(t, struct admin_conn, timer));
}

static void on_accept(struct loop_io *io, uint32_t events)
{
    (void)events;
    while (io->ready & LOOP_READ) {
        struct admin_conn *a = NULL;
        for (int i = 0; i < ADMIN_CONNS && !a; i++)
            if (!conns[i].used)
                a = &conns[i];
        if (!a)
            return;   /* all busy: the rest wait in the listen queue */
        struct sockaddr_storage peer;
        socklen_t len;
        int fd = net_accept(io->fd, &peer, &len);
        if (fd < 0) {
            if (fd == -EAGAIN)
                io->ready &= ~LOOP_READ;
            return;
        }
        a->used = true;
        a->len = 0;
        a->out = NULL;
        timer_init(&a->timer, on_deadline);
        if (conn_open(&a->conn, loop, fd, on_conn) < 0) {   /* (fd closed) */
            a->used = false;
            continue;
        }
        loop_timer_at(loop, &a->timer, loop->now + ADMIN_DEADLINE_NS);
    }
}

int admin_init(struct loop *l, const struct cli_addr *addr, int fd, admin_render_fn *r,
               admin_healthy_fn *h)
{
    render = r;
    healthy = h;
    bool shared = fd >= 0;
    if (!shared)
        fd = net_listen((const struct sockaddr *)&addr->ss, addr->len, 64);
    if (fd < 0) {
        log_error("error", "cannot listen on %s (--admin): %s", addr->text, strerror(-fd));
        return fd;
    }
    int rc = loop_add_listener(l, &lst, fd, on_accept);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    loop = l;   /* (admin_stop does nothing unless this succeeded) */
    if (!shared)
        log_error("info", "admin listener on %s: /metrics, /healthz", addr->text);
    return 0;
}

void admin_close_listener(void)
{
    if (loop)
        loop_close_shared(loop, &lst);
}

void admin_stop(void)
{
    if (!loop)
        return;
    for (int i = 0; i < ADMIN_CONNS; i++)
        if (conns[i].used)
            admin_conn_close(&conns[i]);
    loop_close_shared(loop, &lst);
}
