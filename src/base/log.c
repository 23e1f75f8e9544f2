/* log.c -- access log and error log (see log.h). */
#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF (64 * 1024)
#define LOG_LINE_MAX (16 * 1024)
#define LOG_TRIES_MAX 2048   /* the tries list's share of a line */

static int access_fd = -1;        /* -1: off */
static bool access_json;
static const char *access_path;   /* NULL for standard output */
static char abuf[LOG_BUF];
static size_t alen;

int log_open(const char *where, bool json)
{
    access_json = json;
    if (strcmp(where, "off") == 0) {
        access_fd = -1;
        return 0;
    }
    if (strcmp(where, "-") == 0) {
        access_fd = STDOUT_FILENO;
        access_path = NULL;
        return 0;
    }
    int fd = open(where, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    access_fd = fd;
    access_path = where;
    return 0;
}

int log_reopen(void)
{
    if (!access_path)
        return 0;
    log_flush();
    int fd = open(access_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    close(access_fd);
    access_fd = fd;
    return 0;
}

bool log_access_enabled(void)
{
    return access_fd >= 0;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;   /* a full disk must not stop the proxy */
        }
        p += w;
        n -= (size_t)w;
    }
}

void log_flush(void)
{
    if (alen && access_fd >= 0)
        write_all(access_fd, abuf, alen);
    alen = 0;
}

/* ISO 8601 UTC with milliseconds; the seconds part is cached because the
 * wall clock second changes far less often than lines are written. */
static size_t format_time(char *out)
{
    static time_t cached_sec = -1;
    static char cached[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    return (size_t)sprintf(out, "%s.%03ldZ", cached, ts.tv_nsec / 1000000);
}

static size_t put_ms(char *p, int64_t v)
{
    if (v < 0) {
        *p = '-';
        return 1;
    }
    return (size_t)sprintf(p, "%lld", (long long)v);
}

/* Copies a token into a JSON string, escaping what JSON requires. */
static size_t put_json(char *p, const char *s, size_t n)
{
    char *start = p;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            p += sprintf(p, "\\u%04x", ch);
        } else {
            *p++ = (char)ch;
        }
    }
    return (size_t)(p - start);
}

static size_t put_json_ms(char *p, const char *key, int64_t v)
{
    return v < 0 ? (size_t)sprintf(p, ",\"%s\":null", key)
                 : (size_t)sprintf(p, ",\"%s\":%lld", key, (long long)v);
}

size_t log_tries_format(char *out, size_t cap, const struct log_try *t, unsigned n, unsigned more)
{
    size_t len = 0;
    if (cap < 2)
        return 0;
    for (unsigned i = 0; i < n; i++) {
        char st[16] = "";
        if (t[i].status > 0)
            snprintf(st, sizeof st, "_%d", t[i].status);
        /* room for this item, then a ",+N" (at most 12 bytes) and the NUL */
        int k = snprintf(out + len, cap - len, "%s%s/%s%s/%u", len ? "," : "",
                         t[i].server ? t[i].server : "-", t[i].outcome ? t[i].outcome : "-", st,
                         t[i].ms);
        if (k < 0 || (size_t)k + 13 > cap - len) {
            more += n - i;
            break;
        }
        len += (size_t)k;
    }
    if (more) {
        int k = snprintf(out + len, cap - len, "%s+%u", len ? "," : "", more);
        len = k < 0 ? len : len + (size_t)k >= cap ? cap - 1 : len + (size_t)k;
    }
    if (!len) {
        out[0] = '-';
        len = 1;
    }
    out[len] = '\0';
    return len;
}

static size_t put_json_str(char *p, const char *key, const char *v)
{
    return v ? (size_t)sprintf(p, ",\"%s\":\"%s\"", key, v) : (size_t)sprintf(p, ",\"%s\":null", key);
}

/* The fields of "where the time went", JSON: tries as an array of objects. */
static size_t put_json_timing(char *p, const struct log_entry *e)
{
    char *start = p;
    p += put_json_str(p, "request_id", e->request_id);
    p += put_json_str(p, "trace_id", e->trace_id);
    p += put_json_ms(p, "deadline_ms", e->deadline_ms);
    p += put_json_str(p, "deadline_from", e->deadline_from);
    p += put_json_ms(p, "queue_ms", e->queue_ms);
    p += put_json_ms(p, "left_ms", e->left_ms);
    p += sprintf(p, ",\"tries\":[");
    for (unsigned i = 0; i < e->ntries; i++) {
        p += sprintf(p, "%s{\"server\":", i ? "," : "");
        p += e->tries[i].server ? (size_t)sprintf(p, "\"%s\"", e->tries[i].server)
                                : (size_t)sprintf(p, "null");
        p += e->tries[i].status > 0
                 ? (size_t)sprintf(p, ",\"outcome\":\"%s_%d\"", e->tries[i].outcome,
                                   e->tries[i].status)
                 : (size_t)sprintf(p, ",\"outcome\":\"%s\"", e->tries[i].outcome);
        p += sprintf(p, ",\"ms\":%u}", e->tries[i].ms);
    }
    p += sprintf(p, "],\"tries_more\":%u", e->tries_more);
    return (size_t)(p - start);
}

/* The same, key=value. */
static size_t put_timing(char *p, const struct log_entry *e)
{
    char *start = p;
    p += sprintf(p, " request_id=%s trace_id=%s deadline_ms=", e->request_id ? e->request_id : "-",
                 e->trace_id ? e->trace_id : "-");
    p += put_ms(p, e->deadline_ms);
    p += sprintf(p, " deadline_from=%s queue_ms=", e->deadline_from ? e->deadline_from : "-");
    p += put_ms(p, e->queue_ms);
    memcpy(p, " left_ms=", 9);
    p += 9;
    p += put_ms(p, e->left_ms);
    memcpy(p, " tries=", 7);
    p += 7;
    p += log_tries_format(p, LOG_TRIES_MAX, e->tries, e->ntries, e->tries_more);
    return (size_t)(p - start);
}

static void log_access_json(const struct log_entry *e, uint32_t tl)
{
    char *p = abuf + alen, *start = p;
    p += sprintf(p, "{\"time\":\"");
    p += format_time(p);
    p += sprintf(p, "\",\"client\":\"%s\",\"method\":", e->client);
    if (e->method) {
        *p++ = '"';
        p += put_json(p, e->method, e->method_len > 64 ? 64 : e->method_len);
        *p++ = '"';
    } else {
        p += sprintf(p, "null");
    }
    p += sprintf(p, ",\"target\":");
    if (e->target) {
        *p++ = '"';
        p += put_json(p, e->target, tl);
        *p++ = '"';
    } else {
        p += sprintf(p, "null");
    }
    p += e->status ? (size_t)sprintf(p, ",\"status\":%d", e->status)
                   : (size_t)sprintf(p, ",\"status\":null");
    p += sprintf(p, ",\"bytes\":%llu,\"bytes_in\":%llu,\"upstream\":",
                 (unsigned long long)e->bytes, (unsigned long long)e->bytes_in);
    p += e->upstream ? (size_t)sprintf(p, "\"%s\"", e->upstream) : (size_t)sprintf(p, "null");
    p += sprintf(p, ",\"attempts\":%u", e->attempts);
    p += put_json_ms(p, "connect_ms", e->connect_ms);
    p += put_json_ms(p, "sent_ms", e->sent_ms);
    p += put_json_ms(p, "first_byte_ms", e->first_byte_ms);
    p += put_json_ms(p, "total_ms", e->total_ms);
    p += e->proto ? (size_t)sprintf(p, ",\"proto\":\"%s\"", e->proto)
                  : (size_t)sprintf(p, ",\"proto\":null");
    if (e->grpc) {
        p += e->grpc_status >= 0 ? (size_t)sprintf(p, ",\"grpc_status\":%d", e->grpc_status)
                                 : (size_t)sprintf(p, ",\"grpc_status\":null");
        p += put_json_ms(p, "grpc_timeout_ms", e->grpc_timeout_ms);
    }
    p += put_json_timing(p, e);
    p += sprintf(p, ",\"reason\":\"%s\"}\n", e->reason);
    alen += (size_t)(p - start);
}

void log_access(const struct log_entry *e)
{
    if (access_fd < 0)
        return;
    if (LOG_BUF - alen < LOG_LINE_MAX)
        log_flush();
    uint32_t tl = e->target ? e->target_len : 1;
    if (access_json) {
        /* escaped, a byte may take 6: 2 KiB of target stays within a line */
        log_access_json(e, tl > 2048 ? 2048 : tl);
        return;
    }
    if (tl > 8192)
        tl = 8192;
    char *p = abuf + alen, *start = p;
    memcpy(p, "time=", 5);
    p += 5;
    p += format_time(p);
    p += sprintf(p, " client=%s method=%.*s target=%.*s status=", e->client,
                 e->method ? (int)(e->method_len > 64 ? 64 : e->method_len) : 1,
                 e->method ? e->method : "-", (int)tl, e->target ? e->target : "-");
    p += e->status ? (size_t)sprintf(p, "%d", e->status) : (size_t)sprintf(p, "-");
    p += sprintf(p, " bytes=%llu bytes_in=%llu upstream=%s attempts=%u connect_ms=",
                 (unsigned long long)e->bytes, (unsigned long long)e->bytes_in,
                 e->upstream ? e->upstream : "-", e->attempts);
    p += put_ms(p, e->connect_ms);
    memcpy(p, " sent_ms=", 9);
    p += 9;
    p += put_ms(p, e->sent_ms);
    memcpy(p, " first_byte_ms=", 15);
    p += 15;
    p += put_ms(p, e->first_byte_ms);
    memcpy(p, " total_ms=", 10);
    p += 10;
    p += put_ms(p, e->total_ms);
    p += sprintf(p, " proto=%s", e->proto ? e->proto : "-");
    if (e->grpc) {
        p += e->grpc_status >= 0 ? (size_t)sprintf(p, " grpc_status=%d", e->grpc_status)
                                 : (size_t)sprintf(p, " grpc_status=-");
        memcpy(p, " grpc_timeout_ms=", 17);
        p += 17;
        p += put_ms(p, e->grpc_timeout_ms);
    }
    p += put_timing(p, e);
    p += sprintf(p, " reason=%s\n", e->reason);
    alen += (size_t)(p - start);
}

static int min_level = LOG_INFO;

void log_set_level(int level)
{
    min_level = level;
}

bool log_enabled(int level)
{
    return level >= min_level;
}

static int level_of(const char *level)
{
    switch (level[0]) {
    case 'd': return LOG_DEBUG;
    case 'i': return LOG_INFO;
    case 'w': return LOG_WARN;
    default: return LOG_ERROR;
    }
}

bool log_every(struct log_every *e, uint64_t now, uint64_t interval, unsigned long *held)
{
    if (e->next && now < e->next) {
        e->held++;
        return false;
    }
    *held = e->held;
    e->held = 0;
    e->next = now + interval;
    return true;
}

/* The pid in every error line, without a system call per line (glibc
 * does not cache it): read once, and again in a child after fork. */
static pid_t own_pid;

static void pid_forget(void)
{
    own_pid = 0;
}

static int line_pid(void)
{
    if (!own_pid) {
        static bool registered;
        if (!registered) {
            pthread_atfork(NULL, NULL, pid_forget);
            registered = true;
        }
        own_pid = getpid();
    }
    return (int)own_pid;
}

void log_error(const char *level, const char *fmt, ...)
{
    if (level_of(level) < min_level)
        return;
    char line[2048];
    size_t n = format_time(line);
    n += (size_t)snprintf(line + n, sizeof line - n, " hourglass[%d]: %s: ", line_pid(), level);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    line[n++] = '\n';
    write_all(STDERR_FILENO, line, n);
}
