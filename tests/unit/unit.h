/* unit.h -- a tiny unit-test harness, no third-party code.
 *
 *   TEST(parses_get) { CHECK_EQ_INT(f(1), 2); }
 *   int main(void) { RUN(parses_get); return unit_summary("test_x"); }
 *
 * Each check that fails prints file:line, the expression and the values; the
 * test goes on (checks do not abort), so one run shows every failure.
 * unit_summary() prints one line and returns the exit status: 1 if any check
 * failed, else 0. Each test_X.c is its own executable.
 *
 * A check that cannot run here (e.g. it needs a name to resolve) is skipped
 * with SKIP("why"): one "SKIP:" line on stderr, counted apart from the checks.
 * With $UNIT_COUNTS set, unit_summary() also appends
 * "SUITE PASSED FAILED SKIPPED" (checks) to that file, for `make test`.
 *
 * A crash (SIGSEGV, SIGBUS: e.g. a read into a guard page) names the running
 * test on stderr, then the previous handler (sanitizer or default) takes over.
 * Include this header before any other so sigaction is declared. */
#ifndef HG_UNIT_H
#define HG_UNIT_H

#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int unit_checks;        /* checks evaluated */
static int unit_failures;      /* checks failed */
static int unit_tests;         /* tests run */
static int unit_tests_failed;  /* tests with at least one failed check */
static int unit_skipped;       /* checks skipped (SKIP) */
static const char *unit_current = "?";

#define UNIT_UNUSED __attribute__((unused))

static UNIT_UNUSED bool unit_fail_head(const char *file, int line)
{
    unit_failures++;
    fprintf(stderr, "%s:%d: [%s] FAIL: ", file, line, unit_current);
    return false;
}

static UNIT_UNUSED __attribute__((format(printf, 3, 4))) void
unit_skip(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    unit_skipped++;
    fprintf(stderr, "%s:%d: [%s] SKIP: ", file, line, unit_current);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static UNIT_UNUSED bool unit_check(bool ok, const char *file, int line, const char *expr)
{
    unit_checks++;
    if (ok)
        return true;
    unit_fail_head(file, line);
    fprintf(stderr, "CHECK(%s)\n", expr);
    return false;
}

static UNIT_UNUSED bool unit_eq_int(long long a, long long b, const char *file, int line,
                                    const char *ea, const char *eb)
{
    unit_checks++;
    if (a == b)
        return true;
    unit_fail_head(file, line);
    fprintf(stderr, "%s == %s: got %lld, expected %lld\n", ea, eb, a, b);
    return false;
}

static UNIT_UNUSED bool unit_eq_u64(uint64_t a, uint64_t b, const char *file, int line,
                                    const char *ea, const char *eb)
{
    unit_checks++;
    if (a == b)
        return true;
    unit_fail_head(file, line);
    fprintf(stderr, "%s == %s: got %" PRIu64 ", expected %" PRIu64 "\n", ea, eb, a, b);
    return false;
}

/* Prints n bytes with C escapes, so control bytes show up in failures. */
static UNIT_UNUSED void unit_print_bytes(const char *s, size_t n)
{
    if (!s) {
        fputs("(null)", stderr);
        return;
    }
    fputc('"', stderr);
    for (size_t i = 0; i < n && i < 200; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c == '\t')
            fputs("\\t", stderr);
        else if (c == '"' || c == '\\')
            fprintf(stderr, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    if (n > 200)
        fprintf(stderr, "...(%zu bytes)", n);
    fputc('"', stderr);
}

static UNIT_UNUSED bool unit_eq_mem(const char *a, size_t alen, const char *b, size_t blen,
                                    const char *file, int line, const char *ea, const char *eb)
{
    unit_checks++;
    if (a && b && alen == blen && memcmp(a, b, alen) == 0)
        return true;
    if (!a && !b)
        return true;
    unit_fail_head(file, line);
    fprintf(stderr, "%s == %s: got ", ea, eb);
    unit_print_bytes(a, alen);
    fputs(", expected ", stderr);
    unit_print_bytes(b, blen);
    fputc('\n', stderr);
    return false;
}

static struct sigaction unit_old_segv, unit_old_bus;

static void unit_crash(int sig)
{
    /* async-signal-safe: write(2) only */
    static const char a[] = "\n*** crashed in test ", b[] = " (signal ";
    char num[4] = {(char)('0' + sig / 10 % 10), (char)('0' + sig % 10), ')', '\n'};
    (void)!write(2, a, sizeof a - 1);
    (void)!write(2, unit_current, strlen(unit_current));
    (void)!write(2, b, sizeof b - 1);
    (void)!write(2, num, sizeof num);
    /* restore the previous handler; the faulting access runs again */
    sigaction(SIGSEGV, &unit_old_segv, NULL);
    sigaction(SIGBUS, &unit_old_bus, NULL);
}

static UNIT_UNUSED void unit_run(const char *name, void (*fn)(void))
{
    static bool installed;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = unit_crash;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &unit_old_segv);
        sigaction(SIGBUS, &sa, &unit_old_bus);
        installed = true;
    }
    int before = unit_failures;
    unit_current = name;
    unit_tests++;
    fn();
    if (unit_failures != before)
        unit_tests_failed++;
    unit_current = "?";
}

static UNIT_UNUSED int unit_summary(const char *suite)
{
    printf("%s: %d tests, %d checks, %d failed checks in %d tests, %d skipped: %s\n", suite,
           unit_tests, unit_checks, unit_failures, unit_tests_failed, unit_skipped,
           unit_failures ? "FAIL" : "ok");
    fflush(stdout);
    const char *counts = getenv("UNIT_COUNTS");
    if (counts && *counts) {
        FILE *f = fopen(counts, "a");
        if (!f) {
            fprintf(stderr, "%s: cannot append to UNIT_COUNTS=%s\n", suite, counts);
            return 1;
        }
        fprintf(f, "%s %d %d %d\n", suite, unit_checks - unit_failures, unit_failures,
                unit_skipped);
        fclose(f);
    }
    return unit_failures ? 1 : 0;
}

#define TEST(name) static void test_##name(void)
#define RUN(name) unit_run(#name, test_##name)
/* Skips a check that cannot run here, saying why (printf format). */
#define SKIP(...) unit_skip(__FILE__, __LINE__, __VA_ARGS__)

/* Each macro evaluates to true when the check passed, so a test can guard
 * later checks: if (CHECK_EQ_INT(r, 0)) { ... }. */
#define CHECK(cond) unit_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ_INT(a, b) unit_eq_int((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)
#define CHECK_EQ_U64(a, b) unit_eq_u64((uint64_t)(a), (uint64_t)(b), __FILE__, __LINE__, #a, #b)
#define CHECK_EQ_STR(a, b)                                                                  \
    unit_eq_str_((a), (b), __FILE__, __LINE__, #a, #b)
/* (pointer, length) against a NUL-terminated string. */
#define CHECK_EQ_MEM(p, n, s) unit_eq_mem((p), (n), (s), strlen(s), __FILE__, __LINE__, #p, #s)

static UNIT_UNUSED bool unit_eq_str_(const char *a, const char *b, const char *file, int line,
                                     const char *ea, const char *eb)
{
    return unit_eq_mem(a, a ? strlen(a) : 0, b, b ? strlen(b) : 0, file, line, ea, eb);
}

#endif
