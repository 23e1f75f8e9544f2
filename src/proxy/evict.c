/* evict.c -- connection pressure: making room at max_connections by closing
 * idle connections, then incomplete heads, oldest first (see evict.h). */
#include "evict.h"

#include "client.h"
#include "exchange.h"
#include "h2.h"
#include "log.h"
#include "stats.h"
#include "tls.h"

#define SUMMARY_NS (1000 * MS)   /* at most one log line per second */

/* A connection accepted less than this ago is no slowloris yet: its head
 * may be on its socket, unread only because a burst of accepts (each
 * evicting the oldest head) came before its first read event. Evicting it
 * would close a client that did nothing wrong; it waits its turn instead
 * (and the connections behind it wait in the listen queue). */
#define HEAD_MIN_AGE_NS (50 * MS)

struct ev_list {
    struct client *head, *tail;   /* oldest first */
};

static struct ev_list lists[EV_CLASSES];
static unsigned evicted[EV_CLASSES];   /* since the last summary line */
static struct timer summary;
static bool was_pressure;

static enum ev_class class_of(const struct client *c)
{
    if (c->cflags & CF_STREAM)
        return EV_NONE;   /* (its connection is the one that counts) */
    switch (c->state) {
    case CS_IDLE:
        return (c->cflags & (CF_SERVED | CF_HANDSHAKE)) == CF_SERVED ? EV_IDLE : EV_HEAD;
    case CS_HEAD:
        return EV_HEAD;
    case CS_H2:
        return h2_quiet(c) ? EV_IDLE : EV_NONE;
    default:
        return EV_NONE;   /* a request in progress, an error reply, a tunnel */
    }
}

static void unlink_client(struct client *c)
{
    struct ev_list *l = &lists[c->ev_class];
    if (c->ev_prev)
        c->ev_prev->ev_next = c->ev_next;
    else
        l->head = c->ev_next;
    if (c->ev_next)
        c->ev_next->ev_prev = c->ev_prev;
    else
        l->tail = c->ev_prev;
    c->ev_next = c->ev_prev = NULL;
    c->ev_class = EV_NONE;
}

void evict_track(struct client *c)
{
    enum ev_class k = class_of(c);
    if (k == c->ev_class)
        return;
    if (c->ev_class != EV_NONE)
        unlink_client(c);
    if (k == EV_NONE)
        return;
    struct ev_list *l = &lists[k];
    c->ev_class = (uint8_t)k;
    c->ev_prev = l->tail;
    c->ev_next = NULL;
    if (l->tail)
        l->tail->ev_next = c;
    else
        l->head = c;
    l->tail = c;
}

void evict_forget(struct client *c)
{
    if (c->ev_class != EV_NONE)
        unlink_client(c);
}

bool evict_possible(void)
{
    return lists[EV_IDLE].head || evict_head_ready_at() <= px_loop->now;
}

uint64_t evict_head_ready_at(void)
{
    const struct client *h = lists[EV_HEAD].head;
    return h ? h->t_first + HEAD_MIN_AGE_NS : UINT64_MAX;
}

static void on_summary(struct timer *t)
{
    (void)t;
    log_error("warn", "evicted %u idle connection(s), %u incomplete head(s) in the last second: "
                      "at max_connections %u",
              evicted[EV_IDLE], evicted[EV_HEAD], px_cfg->max_connections);
    evicted[EV_IDLE] = evicted[EV_HEAD] = 0;
}

bool evict_one(void)
{
    for (;;) {
        enum ev_class k = lists[EV_IDLE].head ? EV_IDLE : EV_HEAD;
        struct client *c = lists[k].head;
        if (!c)
            return false;
        if (class_of(c) != k) {   /* (moved on since it was filed: file it again) */
            evict_track(c);
            continue;
        }
        if (k == EV_HEAD && px_loop->now - c->t_first < HEAD_MIN_AGE_NS)
            return false;   /* the oldest head is too young: so are the rest */
        evicted[k]++;
        stats->evicted[k == EV_IDLE ? 0 : 1]++;
        if (!summary.armed)
            loop_timer_at(px_loop, &summary, px_loop->now + SUMMARY_NS);
        if (c->state == CS_H2) {
            h2_evict(c);   /* GOAWAY, then the close */
        } else {
            if (k == EV_IDLE)
                tls_close_notify(c->conn.ssl);   /* a clean end between requests */
            client_close(c);   /* (a head gets no answer: the slot is the point) */
        }
        return true;
    }
}

bool evict_pressure(void)
{
    return (uint64_t)px_nclients * 100 >=
           (uint64_t)px_cfg->pressure_percent * px_cfg->max_connections;
}

uint64_t evict_header_ms(void)
{
    uint64_t ms = px_cfg->ms[TMO_HEADER];
    if (!evict_pressure())
        return ms;
    ms = ms * px_cfg->pressure_header_percent / 100;
    return ms ? ms : 1;
}

uint64_t evict_idle_deadline(const struct client *c)
{
    enum tmo_kind k = (c->cflags & CF_HANDSHAKE) ? TMO_HANDSHAKE : TMO_IDLE;
    uint64_t at = c->t_first + ns_of(px_cfg->ms[k]);
    if (!(c->cflags & CF_SERVED) && evict_pressure()) {
        uint64_t h = c->t_first + ns_of(evict_header_ms());
        at = h < at ? h : at;
    }
    return at;
}

void evict_tick(void)
{
    bool p = evict_pressure();
    if (p && !was_pressure) {
        struct client *c = lists[EV_HEAD].head, *next;
        for (; c; c = next) {
            next = c->ev_next;
            exchange_arm(c);   /* (earlier only: a timer never moves later here) */
        }
    }
    was_pressure = p;
}

void evict_shut_idle(struct client *c)
{
    client_session_attach(c);   /* the linger keeps its clock in a session */
    c->state = CS_CLOSING;      /* closing_step: nothing to send, shut, read away */
    client_pump(c);
}

void evict_init(void)
{
    timer_init(&summary, on_summary);
}

void evict_shutdown(void)
{
    loop_timer_stop(px_loop, &summary);
}
