/* hedge_upstream -- the slow-tail upstream of the hedge-tail benchmark row.
 *
 * Usage: hedge_upstream SEED PORT [PORT...]    (each on 127.0.0.1)
 *        env HEDGE_P (0.02), HEDGE_FAST_MS (5), HEDGE_SLOW_MS (1000)
 *
 * One process, one thread, epoll + one timerfd, listening on every PORT: to
 * the proxies each port is a server of its own (a pool of two servers, so a
 * hedge goes to the other one). Each HTTP/1.1 request (keep-alive, no body)
 * is answered 200 with a 100-byte body after HEDGE_FAST_MS, except one in
 * 1/HEDGE_P (HEDGE_P = 0.02: 1 in 50) after HEDGE_SLOW_MS. Which ones are
 * slow is decided on arrival, reproducibly from SEED:
 *   - GET /h/ID (the bench client numbers its requests): the first arrival
 *     of ID is slow iff hash(SEED, ID) < P, so every proxy and configuration
 *     sees the same client requests slow; a later arrival of the same ID
 *     (a hedge, a retry) draws again, independently: hash(SEED, ID, n);
 *   - any other path: a PRNG seeded with SEED.
 * Requests are counted on arrival (a hedge that the proxy cancels by closing
 * the connection before the answer was counted when it came).
 *
 *   GET /count   one JSON line: requests counted since the last reset (and per
 *                port), slow ones, answered ones, cancelled ones (the
 *                connection closed before the answer was due), client IDs
 *                seen, IDs that arrived more than once, slow first arrivals
 *                and those of them that got no second arrival (not hedged);
 *                /count itself is not counted
 *   GET /reset   zero all of that (the bench does it before each run)
 *
 * The answers go out from a FIFO per delay (the delay of a class is fixed,
 * so each FIFO is in due order); the timerfd is armed for the earlier head.
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAXPORTS 8
#define MAXID (1u << 22)            /* client IDs tracked (4 MiB) */
#define INBUF 4096

struct conn {
    int fd;                         /* -1 once closed (freed when no answer is pending) */
    int port;                       /* index of the listening port */
    int pending;                    /* an answer is scheduled */
    int slow;                       /* ...in the slow FIFO */
    uint64_t due;                   /* ns, CLOCK_MONOTONIC */
    struct conn *next;              /* in its FIFO, or in the list of the dead */
    size_t len;
    char in[INBUF];
};

struct fifo { struct conn *head, *tail; };

static int ep, tfd;
static struct conn *dead;           /* closed, freed after the batch of events (one may still name it) */
static struct fifo q[2];            /* 0: fast, 1: slow */
static uint64_t delay_ns[2];
static double prob = 0.02;
static uint64_t seed, prng;
static unsigned char *ids;          /* per ID: bits 0-6 arrivals (saturating), bit 7 first was slow */
static uint32_t max_id;             /* highest ID seen + 1 */
static int nports;
static struct {
    uint64_t requests, port[MAXPORTS], slow, answered, cancelled, slow_cancelled, other, accepted, bad;
} st;

/* the same 100 bytes as the origin's /small (bench.py SMALL_BODY) */
static const char BODY[] = "hourglass-bench hourglass-bench hourglass-bench hourglass-bench hourglass-bench hourglass-bench hou\n";
_Static_assert(sizeof BODY - 1 == 100, "100-byte body");

static void die(const char *what) { perror(what); exit(1); }

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t mix(uint64_t x)     /* splitmix64's finaliser */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int draw(uint64_t x)         /* 1 with probability prob */
{
    return (double)(mix(x) >> 11) * (1.0 / 9007199254740992.0) < prob;
}

static void arm(void)
{
    uint64_t t = 0;
    for (int i = 0; i < 2; i++)
        if (q[i].head && (!t || q[i].head->due < t))
            t = q[i].head->due;
    struct itimerspec it = {0};
    if (t) {
        it.it_value.tv_sec = (time_t)(t / 1000000000u);
        it.it_value.tv_nsec = (long)(t % 1000000000u);
    }
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
        die("timerfd_settime");
}

static void conn_close(struct conn *c)
{
    if (c->fd < 0)
        return;
    close(c->fd);                   /* (removes it from the epoll set) */
    c->fd = -1;
    if (c->pending) {               /* its FIFO lets it go when the answer falls due */
        st.cancelled++;
        st.slow_cancelled += (uint64_t)c->slow;
    } else {
        c->next = dead;
        dead = c;
    }
}

static void reply(struct conn *c, const char *body, size_t blen)
{
    char out[1024];
    int n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                     blen);
    if (n < 0 || (size_t)n + blen > sizeof out)
        return conn_close(c);
    memcpy(out + n, body, blen);
    ssize_t w = write(c->fd, out, (size_t)n + blen);
    if (w != (ssize_t)((size_t)n + blen))   /* ~200 bytes into an idle socket: all or an error */
        conn_close(c);
}

static void count_json(char *out, size_t cap)
{
    uint64_t seen = 0, repeat = 0, slow_first = 0, unhedged = 0;
    for (uint32_t i = 0; i < max_id; i++) {
        unsigned n = ids[i] & 0x7f;
        if (!n)
            continue;
        seen++;
        repeat += n > 1;
        if (ids[i] & 0x80) {
            slow_first++;
            unhedged += n == 1;
        }
    }
    int k = snprintf(out, cap, "{\"requests\": %llu, \"per_port\": [", (unsigned long long)st.requests);
    for (int i = 0; i < nports; i++)
        k += snprintf(out + k, cap - (size_t)k, "%s%llu", i ? ", " : "", (unsigned long long)st.port[i]);
    snprintf(out + k, cap - (size_t)k,
             "], \"slow\": %llu, \"answered\": %llu, \"cancelled\": %llu, \"slow_cancelled\": %llu, "
             "\"ids\": %llu, \"ids_repeated\": %llu, \"slow_first\": %llu, \"slow_first_unhedged\": %llu, "
             "\"other_paths\": %llu, \"bad\": %llu, \"connections\": %llu}\n",
             (unsigned long long)st.slow, (unsigned long long)st.answered, (unsigned long long)st.cancelled,
             (unsigned long long)st.slow_cancelled, (unsigned long long)seen, (unsigned long long)repeat,
             (unsigned long long)slow_first, (unsigned long long)unhedged, (unsigned long long)st.other,
             (unsigned long long)st.bad, (unsigned long long)st.accepted);
}

/* Takes the requests buffered on c, one at a time: each waits for the
 * answer to the one before it (HTTP/1.1 without pipelining, as proxies send). */
static void serve(struct conn *c)
{
    while (c->fd >= 0 && !c->pending) {
        char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
        if (!end) {
            if (c->len == INBUF) {  /* a head larger than we take */
                st.bad++;
                conn_close(c);
            }
            return;
        }
        size_t used = (size_t)(end + 4 - c->in);
        char path[256] = "";
        sscanf(c->in, "%*s %255s", path);
        if (!strcmp(path, "/count") || !strcmp(path, "/reset")) {
            if (path[1] == 'r') {
                memset(&st, 0, sizeof st);
                memset(ids, 0, max_id);
                max_id = 0;
            }
            char js[1024];
            count_json(js, sizeof js);
            reply(c, js, strlen(js));
        } else {
            int slow;
            char *e;
            st.requests++;
            st.port[c->port]++;
            unsigned long id = strncmp(path, "/h/", 3) ? MAXID : strtoul(path + 3, &e, 10);
            if (id < MAXID) {
                unsigned n = ids[id] & 0x7f;
                slow = draw(seed ^ mix(id) ^ mix(((uint64_t)n << 32) | 0x5eed));
                if (n == 0 && slow)
                    ids[id] |= 0x80;
                if (n < 0x7f)
                    ids[id]++;
                if (id >= max_id)
                    max_id = (uint32_t)id + 1;
            } else {
                st.other++;
                slow = draw(prng = mix(prng));
            }
            st.slow += (uint64_t)slow;
            c->pending = 1;
            c->slow = slow;
            c->due = now_ns() + delay_ns[slow];
            c->next = NULL;
            struct fifo *f = &q[slow];
            if (f->tail)
                f->tail->next = c;
            else
                f->head = c;
            f->tail = c;
            arm();
        }
        memmove(c->in, c->in + used, c->len - used);
        c->len -= used;
    }
}

static void on_read(struct conn *c)
{
    for (;;) {
        if (c->len == INBUF)
            return serve(c);        /* full: a request waits for its answer */
        ssize_t n = read(c->fd, c->in + c->len, INBUF - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0 || errno != EAGAIN)
            return conn_close(c);
        break;
    }
    serve(c);
}

static void on_timer(void)
{
    uint64_t x;
    if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN)
        die("read timerfd");
    uint64_t t = now_ns();
    for (int i = 0; i < 2; i++) {
        while (q[i].head && q[i].head->due <= t) {
            struct conn *c = q[i].head;
            q[i].head = c->next;
            if (!q[i].head)
                q[i].tail = NULL;
            c->pending = 0;
            if (c->fd < 0) {        /* closed while it waited (counted as cancelled) */
                c->next = dead;
                dead = c;
                continue;
            }
            st.answered++;
            reply(c, BODY, sizeof BODY - 1);
            if (c->fd >= 0)
                on_read(c);         /* the next request may be buffered, or the EOF */
        }
    }
    arm();
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc - 2 > MAXPORTS) {
        fprintf(stderr, "usage: %s SEED PORT [PORT...]   (env HEDGE_P, HEDGE_FAST_MS, HEDGE_SLOW_MS)\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    seed = mix(strtoull(argv[1], NULL, 10));
    prng = seed ^ 0xabcdef;
    const char *e;
    if ((e = getenv("HEDGE_P")))
        prob = atof(e);
    delay_ns[0] = (uint64_t)(((e = getenv("HEDGE_FAST_MS")) ? atof(e) : 5.0) * 1e6);
    delay_ns[1] = (uint64_t)(((e = getenv("HEDGE_SLOW_MS")) ? atof(e) : 1000.0) * 1e6);
    if (!(ids = calloc(MAXID, 1)))
        die("calloc");
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1");
    if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
        die("timerfd_create");
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = 1};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0)
        die("epoll_ctl");
    int lfd[MAXPORTS], one = 1;
    nports = argc - 2;
    for (int i = 0; i < nports; i++) {
        struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2 + i]))};
        inet_pton(AF_INET, "127.0.0.1", &la.sin_addr);
        if ((lfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
            die("socket");
        setsockopt(lfd[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lfd[i], (struct sockaddr *)&la, sizeof la) < 0)
            die("bind");
        if (listen(lfd[i], 4096) < 0)
            die("listen");
        struct epoll_event lev = {.events = EPOLLIN, .data.u64 = 2 + (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &lev) < 0)
            die("epoll_ctl");
    }

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            uint64_t d = evs[k].data.u64;
            if (d == 1) {
                on_timer();
            } else if (d < 2 + MAXPORTS) {
                int i = (int)(d - 2);
                for (;;) {
                    int fd = accept4(lfd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        if (errno != EAGAIN && errno != ECONNABORTED && errno != EINTR)
                            perror("accept4");
                        break;
                    }
                    struct conn *c = malloc(sizeof *c);
                    if (!c)
                        die("malloc");
                    c->fd = fd;
                    c->port = i;
                    c->pending = c->slow = 0;
                    c->len = 0;
                    c->next = NULL;
                    st.accepted++;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                        die("epoll_ctl");
                }
            } else {
                struct conn *c = evs[k].data.ptr;
                /* closed earlier in this batch: still allocated (dead list), fd -1 */
                if (c->fd >= 0)
                    on_read(c);
            }
        }
        while (dead) {
            struct conn *c = dead;
            dead = c->next;
            free(c);
        }
    }
}
