/* auth.c -- Basic proxy credentials (see auth.h). */
#define _GNU_SOURCE
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_MAX_LINE 512

struct auth {
    char **entries;   /* "user:password" */
    size_t n;
};

void auth_free(struct auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->entries[i]);
    free(a->entries);
    free(a);
}

struct auth *auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct auth *a = calloc(1, sizeof *a);
    char line[AUTH_MAX_LINE + 2];
    int lineno = 0;
    if (!a)
        goto out_nomem;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\n')
            line[--l] = '\0';
        else if (l > AUTH_MAX_LINE)
            goto out_long;
        if (l && line[l - 1] == '\r')
            line[--l] = '\0';
        if (!l || line[0] == '#')
            continue;
        if (!strchr(line, ':') || line[0] == ':') {
            snprintf(err, errlen, "%s:%d: expected user:password", path, lineno);
            goto out_free;
        }
        char **grown = realloc(a->entries, (a->n + 1) * sizeof *grown);
        if (!grown)
            goto out_nomem;
        a->entries = grown;
        if (!(a->entries[a->n] = strdup(line)))
            goto out_nomem;
        a->n++;
    }
    if (!a->n) {
        snprintf(err, errlen, "%s: no user:password line", path);
        goto out_free;
    }
    fclose(f);
    return a;

out_long:
    snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno, AUTH_MAX_LINE);
    goto out_free;
out_nomem:
    snprintf(err, errlen, "%s: out of memory", path);
out_free:
    auth_free(a);
    fclose(f);
    return NULL;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int auth_base64_decode(const char *in, size_t len, char *out, size_t cap)
{
    if (len % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad || (v[k] = b64_value((unsigned char)in[i + k])) < 0)
                return -1;   /* a data byte after '=', or not base64 */
        }
        unsigned long w = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 |
                          (unsigned long)v[2] << 6 | (unsigned long)v[3];
        int n = 3 - pad;
        if (o + (size_t)n > cap)
            return -1;
        for (int k = 0; k < n; k++)
            out[o++] = (char)(w >> (16 - 8 * k));
    }
    return (int)o;
}

bool auth_check(const struct auth *a, const char *value, size_t len)
{
    char cred[AUTH_MAX_LINE];
    if (!a || len < 6 || strncasecmp(value, "Basic ", 6) != 0)
        return false;
    size_t i = 6;
    while (i < len && value[i] == ' ')
        i++;
    int n = auth_base64_decode(value + i, len - i, cred, sizeof cred);
    if (n <= 0)
        return false;
    bool ok = false;
    for (size_t e = 0; e < a->n; e++) {
        const char *s = a->entries[e];
        size_t sl = strlen(s);
        unsigned char diff = (unsigned char)(sl != (size_t)n);
        for (size_t k = 0; k < (size_t)n; k++)   /* no early exit on a mismatch */
            diff |= (unsigned char)(cred[k] ^ (k < sl ? s[k] : 0));
        ok |= diff == 0;
    }
    return ok;
}
