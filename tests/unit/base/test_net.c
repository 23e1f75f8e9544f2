/* test_net.c -- address text for logs and X-Forwarded-For (src/base/net.h). */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "net.h"

static const char *v4(const char *ip, size_t n)
{
    static char out[64];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(8080)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    memset(out, 'X', sizeof out);
    net_ip_text((struct sockaddr *)&a, out, n);
    return out;
}

TEST(ipv4_text)
{
    CHECK_EQ_STR(v4("0.0.0.0", 64), "0.0.0.0");
    CHECK_EQ_STR(v4("255.255.255.255", 64), "255.255.255.255");
    CHECK_EQ_STR(v4("10.0.100.9", 64), "10.0.100.9");
    CHECK_EQ_STR(v4("127.0.0.1", 64), "127.0.0.1");
    CHECK_EQ_STR(v4("192.168.10.20", 8), "192.168");   /* truncated, terminated */
}

TEST(ipv6_and_mapped)
{
    char out[64];
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    inet_pton(AF_INET6, "::1", &a.sin6_addr);
    net_addr_text((struct sockaddr *)&a, out, sizeof out);
    CHECK_EQ_STR(out, "[::1]:443");
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &a.sin6_addr);
    net_ip_text((struct sockaddr *)&a, out, sizeof out);
    CHECK_EQ_STR(out, "10.1.2.3");
    net_addr_text((struct sockaddr *)&a, out, sizeof out);
    CHECK_EQ_STR(out, "10.1.2.3:443");
}

int main(void)
{
    RUN(ipv4_text);
    RUN(ipv6_and_mapped);
    return unit_summary("test_net");
}
