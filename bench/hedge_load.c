/* hedge_load -- the open-loop client of the hedge-tail benchmark row.
 *
 * Usage: hedge_load PORT RATE COUNT CONNS OUTFILE [TIMEOUT_S [ID_BASE]]   (127.0.0.1:PORT)
 *
 * Sends COUNT requests "GET /h/ID HTTP/1.1" (ID = ID_BASE + 0..COUNT-1) at a
 * fixed RATE per second: request i is due at start + i / RATE, whatever became
 * of the ones before it (open loop: a slow answer does not hold back the
 * next request, so latencies are not coordinated-omission-biased). Each
 * request goes out on an idle keep-alive connection; when none is idle a new
 * one is opened for it (CONNS are opened before the start). One thread,
 * epoll, a timerfd for the schedule.
 *
 * Latency is measured per request, CLOCK_MONOTONIC, from the time it was
 * due (not the time it was written, which is later only when the client
 * fell behind) to the last byte of its response. OUTFILE gets one line per
 * request: "ID LATENCY_US SEND_LAG_US STATUS" (STATUS 0: no response: a
 * connection error or TIMEOUT_S, default 10). The last line of standard
 * output is a JSON summary.
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
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAXC 4096
#define BUF 16384

enum { C_FREE, C_OPENING, C_BUSY };

struct conn {
    int fd, state, idx;             /* idx: its place in conns[] */
    long req;                       /* the request on it, -1 none */
    size_t len;
    char buf[BUF];
};

struct req { uint64_t due, sent, done; int status; };

static struct conn *conns[MAXC];
static int nconns, ep, tfd, idle[MAXC], nidle;
static struct req *reqs;
static long count, next_req, outstanding, id_base;
static long n_ok, n_non200, n_err, n_timeout, n_opened, n_reopened;
static uint64_t start_ns, timeout_ns;
static double rate;
static struct sockaddr_in addr;

static void die(const char *what) { perror(what); exit(1); }

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static struct conn *conn_open(void)
{
    int one = 1;
    if (nconns == MAXC) {
        fprintf(stderr, "hedge_load: more than %d connections needed\n", MAXC);
        exit(1);
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        die("calloc");
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        die("connect");
    c->state = C_OPENING;
    c->req = -1;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->idx = nconns;
    conns[nconns++] = c;
    n_opened++;
    return c;
}

static void finish(struct conn *c, int status)
{
    if (c->req < 0)
        return;
    struct req *r = &reqs[c->req];
    r->done = now_ns();
    r->status = status;
    if (status == 200)
        n_ok++;
    else if (status > 0)
        n_non200++;
    c->req = -1;
    outstanding--;
}

static void send_req(struct conn *c)
{
    char out[128];
    int n = snprintf(out, sizeof out, "GET /h/%ld HTTP/1.1\r\nHost: bench\r\n\r\n", id_base + c->req);
    reqs[c->req].sent = now_ns();
    c->state = C_BUSY;
    c->len = 0;
    if (write(c->fd, out, (size_t)n) != n) {
        n_err++;
        finish(c, 0);
        close(c->fd);
        c->fd = -1;
        c->state = C_FREE;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A connection that failed or was closed: its request (if any) ends with no
 * response; the slot is reopened for later requests. */
static void conn_fail(struct conn *c, int timeout)
{
    if (c->req >= 0) {
        if (timeout)
            n_timeout++;
        else
            n_err++;
        finish(c, 0);
    }
    close(c->fd);
    c->fd = -1;
}

static void reopen(struct conn *c)
{
    /* replaced by a new connection that joins the idle ones once open */
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        die("connect");
    c->state = C_OPENING;
    c->req = -1;
    c->len = 0;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
    n_reopened++;
}

static int index_of(struct conn *c) { return c->idx; }

/* Parses what has arrived on c: 1 when the whole response is in (its status
 * in *status, *close set if the server will close), 0 if more is needed,
 * -1 if it cannot be read. Content-Length or chunked bodies. */
static int parse(struct conn *c, int *status, int *closing)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return c->len == BUF ? -1 : 0;
    size_t head = (size_t)(end + 4 - c->buf);
    if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7))
        return -1;
    *status = atoi(c->buf + 9);
    *closing = 0;
    long clen = -1;
    int chunked = 0;
    for (char *p = memchr(c->buf, '\n', head); p && p < end; p = memchr(p + 1, '\n', (size_t)(end - p))) {
        char *l = p + 1;
        if (!strncasecmp(l, "content-length:", 15))
            clen = atol(l + 15);
        else if (!strncasecmp(l, "transfer-encoding:", 18))
            chunked = 1;
        else if (!strncasecmp(l, "connection:", 11)) {
            char *v = l + 11;
            while (*v == ' ')
                v++;
            *closing = !strncasecmp(v, "close", 5);
        }
    }
    if (chunked)
        return memmem(c->buf + head, c->len - head, "0\r\n\r\n", 5) ? 1 : (c->len == BUF ? -1 : 0);
    if (clen < 0)
        clen = 0;
    if (head + (size_t)clen > BUF)
        return -1;
    return c->len >= head + (size_t)clen;
}

static void on_event(struct conn *c, uint32_t evs)
{
    if (c->fd < 0)
        return;
    if (c->state == C_OPENING) {
        if (!(evs & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            fprintf(stderr, "hedge_load: connect to port %d: %s\n", ntohs(addr.sin_port), strerror(err));
            exit(1);
        }
        if (c->req >= 0)
            send_req(c);
        else {
            c->state = C_FREE;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            idle[nidle++] = index_of(c);
        }
        return;
    }
    for (;;) {
        if (c->len == BUF)
            break;
        ssize_t n = read(c->fd, c->buf + c->len, BUF - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            break;
        /* closed or failed: a request on it has no response */
        int was_free = c->state == C_FREE;
        conn_fail(c, 0);
        if (was_free) {             /* an idle connection the server closed: off the idle list */
            int i = index_of(c);
            for (int k = 0; k < nidle; k++)
                if (idle[k] == i) {
                    idle[k] = idle[--nidle];
                    break;
                }
        }
        reopen(c);
        return;
    }
    if (c->state != C_BUSY) {
        c->len = 0;                 /* bytes nobody asked for */
        return;
    }
    int status, closing;
    int r = parse(c, &status, &closing);
    if (r == 0)
        return;
    if (r < 0) {
        conn_fail(c, 0);
        reopen(c);
        return;
    }
    finish(c, status);
    if (closing) {
        close(c->fd);
        c->fd = -1;
        reopen(c);
        return;
    }
    c->state = C_FREE;
    c->len = 0;
    idle[nidle++] = index_of(c);
}

static void arm(void)
{
    struct itimerspec it = {0};
    if (next_req < count) {
        uint64_t t = start_ns + (uint64_t)((double)next_req * 1e9 / rate);
        it.it_value.tv_sec = (time_t)(t / 1000000000u);
        it.it_value.tv_nsec = (long)(t % 1000000000u);
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
}

static void send_due(void)
{
    uint64_t x, t = now_ns();
    if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN)
        die("read timerfd");
    while (next_req < count) {
        uint64_t due = start_ns + (uint64_t)((double)next_req * 1e9 / rate);
        if (due > t)
            break;
        reqs[next_req].due = due;
        outstanding++;
        struct conn *c;
        if (nidle) {
            c = conns[idle[--nidle]];
            c->req = next_req++;
            send_req(c);
            if (c->fd < 0)          /* the write failed */
                reopen(c);
        } else {
            c = conn_open();        /* the request goes out once it is open */
            c->req = next_req++;
        }
    }
    arm();
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s PORT RATE COUNT CONNS OUTFILE [TIMEOUT_S [ID_BASE]]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    rate = atof(argv[2]);
    count = atol(argv[3]);
    int initial = atoi(argv[4]);
    timeout_ns = (uint64_t)((argc > 6 ? atof(argv[6]) : 10.0) * 1e9);
    id_base = argc > 7 ? atol(argv[7]) : 0;
    if (rate <= 0 || count <= 0 || initial < 1 || initial > MAXC) {
        fprintf(stderr, "hedge_load: bad RATE, COUNT or CONNS\n");
        return 2;
    }
    if (!(reqs = calloc((size_t)count, sizeof *reqs)))
        die("calloc");
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");
    if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
        die("timerfd_create");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0)
        die("epoll_ctl");

    struct epoll_event evs[512];
    for (int i = 0; i < initial; i++)
        conn_open();
    uint64_t t_open = now_ns();
    while (nidle < initial) {       /* every connection open before the clock starts */
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n; k++)
            on_event(evs[k].data.ptr, evs[k].events);
        if (now_ns() - t_open > 5000000000ull) {
            fprintf(stderr, "hedge_load: %d of %d connections open after 5 s\n", nidle, initial);
            return 1;
        }
    }
    n_opened = 0;
    start_ns = now_ns() + 1000000;
    arm();
    uint64_t last_check = start_ns;
    while (next_req < count || outstanding > 0) {
        int n = epoll_wait(ep, evs, 512, 50);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            if (!evs[k].data.ptr)
                send_due();
            else
                on_event(evs[k].data.ptr, evs[k].events);
        }
        uint64_t t = now_ns();
        if (t - last_check > 50000000ull) {   /* requests past TIMEOUT_S */
            last_check = t;
            for (int i = 0; i < nconns; i++) {
                struct conn *c = conns[i];
                if (c->fd >= 0 && c->req >= 0 && t - reqs[c->req].due > timeout_ns) {
                    conn_fail(c, 1);
                    reopen(c);
                }
            }
        }
    }
    uint64_t end_ns = now_ns();

    FILE *f = fopen(argv[5], "w");
    if (!f)
        die(argv[5]);
    uint64_t max_lag = 0;
    for (long i = 0; i < count; i++) {
        struct req *r = &reqs[i];
        uint64_t lag = r->sent > r->due ? r->sent - r->due : 0;
        if (lag > max_lag)
            max_lag = lag;
        fprintf(f, "%ld %.1f %.1f %d\n", id_base + i, r->status ? (double)(r->done - r->due) / 1e3 : -1.0,
                (double)lag / 1e3, r->status);
    }
    if (fclose(f))
        die(argv[5]);
    printf("{\"sent\": %ld, \"ok\": %ld, \"non200\": %ld, \"errors\": %ld, \"timeouts\": %ld, "
           "\"elapsed\": %.3f, \"rate\": %.1f, \"connections\": %d, \"opened_during_run\": %ld, "
           "\"reopened\": %ld, \"max_send_lag_ms\": %.3f}\n",
           next_req, n_ok, n_non200, n_err, n_timeout, (double)(end_ns - start_ns) / 1e9,
           rate, nconns, n_opened, n_reopened, (double)max_lag / 1e6);
    return 0;
}
