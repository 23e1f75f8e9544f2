/* test_auth.c -- Basic proxy credentials: the file, base64, the check. */
#include "unit.h"

#include <stdlib.h>

#include "auth.h"

static char path[] = "/tmp/hg-auth-XXXXXX";

static struct auth *load_text(const char *text, char *err, size_t n)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    (void)!write(fd, text, strlen(text));
    close(fd);
    struct auth *a = auth_load(path, err, n);
    unlink(path);
    memcpy(path + strlen(path) - 6, "XXXXXX", 6);
    return a;
}

TEST(base64)
{
    char out[64];
    CHECK_EQ_INT(auth_base64_decode("YWxpY2U6czNjcmV0", 16, out, sizeof out), 12);
    CHECK(memcmp(out, "alice:s3cret", 12) == 0);
    CHECK_EQ_INT(auth_base64_decode("YQ==", 4, out, sizeof out), 1);
    CHECK_EQ_INT(auth_base64_decode("YWI=", 4, out, sizeof out), 2);
    CHECK_EQ_INT(auth_base64_decode("", 0, out, sizeof out), 0);
    CHECK_EQ_INT(auth_base64_decode("YQ=", 3, out, sizeof out), -1);     /* length */
    CHECK_EQ_INT(auth_base64_decode("Y===", 4, out, sizeof out), -1);    /* too much padding */
    CHECK_EQ_INT(auth_base64_decode("YQ==YQ==", 8, out, sizeof out), -1); /* padding inside */
    CHECK_EQ_INT(auth_base64_decode("Y=Q=", 4, out, sizeof out), -1);    /* data after = */
    CHECK_EQ_INT(auth_base64_decode("YW*j", 4, out, sizeof out), -1);
    CHECK_EQ_INT(auth_base64_decode("YWJj", 4, out, 2), -1);             /* no room */
}

TEST(file_and_check)
{
    char err[256] = "";
    struct auth *a = load_text("# proxy users\n\nalice:s3cret\r\nbob:pa:ss\n", err, sizeof err);
    if (!CHECK(a != NULL)) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    static const char good[] = "Basic YWxpY2U6czNjcmV0";           /* alice:s3cret */
    CHECK(auth_check(a, good, strlen(good)));
    CHECK(auth_check(a, "basic YWxpY2U6czNjcmV0", 22));           /* scheme in any case */
    CHECK(auth_check(a, "Basic Ym9iOnBhOnNz", 18));               /* bob:pa:ss */
    CHECK(!auth_check(a, "Basic YWxpY2U6czNjcmV1", 22));          /* alice:s3creu */
    CHECK(!auth_check(a, "Basic YWxpY2U6czNjcmV0MA==", 26));      /* alice:s3cret0 */
    CHECK(!auth_check(a, "Basic YWxpY2U6czNjcmU=", 22));          /* alice:s3cre */
    CHECK(!auth_check(a, "Bearer YWxpY2U6czNjcmV0", 23));
    CHECK(!auth_check(a, "Basic", 5));
    CHECK(!auth_check(a, "Basic !!!!", 10));
    CHECK(!auth_check(NULL, good, strlen(good)));
    CHECK(!auth_check(a, good, strlen(good) - 1));   /* a cut value is malformed */
    auth_free(a);
}

TEST(bad_files)
{
    char err[256];
    CHECK(load_text("alice\n", err, sizeof err) == NULL);
    CHECK(strstr(err, ":1: expected user:password") != NULL);
    CHECK(load_text("# only comments\n\n", err, sizeof err) == NULL);
    CHECK(strstr(err, "no user:password line") != NULL);
    CHECK(load_text("ok:1\n:nouser\n", err, sizeof err) == NULL);
    CHECK(strstr(err, ":2: expected user:password") != NULL);
    CHECK(auth_load("/nonexistent/hg-auth", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/hg-auth: No such file") != NULL);
}

int main(void)
{
    RUN(base64);
    RUN(file_and_check);
    RUN(bad_files);
    return unit_summary("test_auth");
}
