/* log.h -- the access log (one key=value line per request) and the error log
 * (standard error, one sentence per event).
 *
 * Access log lines are buffered and written once per loop iteration
 * (log_flush), so logging costs no system call per request. When the access
 * log is off, nothing is formatted at all. */
#ifndef HG_LOG_H
#define HG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One attempt of a request, for the access log's tries list. */
struct log_try {
    const char *server;        /* "10.0.0.1:80"; NULL: "-" */
    const char *outcome;       /* "ok", "read_timeout", "hedge_lost", ... */
    int status;                /* > 0: printed after the outcome ("status_503") */
    uint32_t ms;               /* how long the attempt lasted */
};

struct log_entry {
    const char *client;        /* "127.0.0.1:40000" */
    const char *method;        /* NULL: "-" */
    uint32_t method_len;
    const char *target;        /* NULL: "-" */
    uint32_t target_len;
    int status;                /* 0: "-" */
    uint64_t bytes;            /* bytes sent to the client for this response */
    uint64_t bytes_in;         /* bytes of the request received from the client */
    const char *upstream;      /* NULL: "-" */
    unsigned attempts;
    int64_t connect_ms;        /* < 0: "-" */
    int64_t sent_ms;           /* the whole request handed to the upstream */
    int64_t first_byte_ms;
    int64_t total_ms;
    const char *proto;         /* "HTTP/1.1", "HTTP/2"; NULL: "-" */
    const char *reason;        /* "ok", "read_timeout", ... */
    bool grpc;                 /* a gRPC call: grpc_status and grpc_timeout_ms follow */
    int grpc_status;           /* < 0: "-" */
    int64_t grpc_timeout_ms;   /* the client's grpc-timeout; < 0: "-" */
    /* where the time went (docs: the access log's fields) */
    const char *request_id;    /* NULL: "-" */
    const char *trace_id;      /* a valid traceparent's trace ID; NULL: "-" */
    int64_t deadline_ms;       /* the total deadline in force; < 0: "-" */
    const char *deadline_from; /* "route", "header", "grpc"; NULL: "-" */
    int64_t queue_ms;          /* waiting for a connection slot; < 0: "-" */
    int64_t left_ms;           /* of the total deadline at dispatch; < 0: "-" */
    const struct log_try *tries;   /* each attempt, in order */
    unsigned ntries;
    unsigned tries_more;       /* attempts past the list's room */
};

/* The tries list as the key=value line writes it: "server/outcome/ms"
 * items joined by ',', then ",+N" for N attempts more; "-" for none. At
 * most cap - 1 bytes and a NUL (an item that does not fit is left out and
 * counted in the "+N"). Returns the length written. */
size_t log_tries_format(char *out, size_t cap, const struct log_try *t, unsigned n, unsigned more);

/* Opens the access log: a path (appended to), "-" for standard output, or
 * "off"; lines are key=value, or JSON objects (JSON Lines) when json.
 * 0 or -errno. */
int log_open(const char *where, bool json);

/* Reopens the access log file (after rotation). */
int log_reopen(void);

bool log_access_enabled(void);
void log_access(const struct log_entry *e);

/* Writes buffered access log lines. */
void log_flush(void);

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level ("debug", "info", "warn", "error") are not written. */
void log_set_level(int level);

/* Whether lines of this level (LOG_DEBUG...) are written: lets a caller skip
 * building a costly message. */
bool log_enabled(int level);

/* At most one sentence per interval for an event that can recur thousands
 * of times a second (the accept loop out of descriptors, requests refused
 * for it): log_every says whether to write it now and, when it does, how
 * many were held back since the last one written (*held), for the sentence
 * to say. The caller keeps the struct; all zero writes the first at once.
 * now and interval in one unit of a monotonic clock. */
struct log_every {
    uint64_t next;
    unsigned long held;
};
bool log_every(struct log_every *e, uint64_t now, uint64_t interval, unsigned long *held);

/* "2026-11-22T00:10:00.123Z hourglass[42]: warn: <message>\n" on stderr. */
void log_error(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
