/* test_net.c -- address text for logs and X-Forwarded-For (src/base/net.h). */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

static int nodelay(int fd)
{
    int v = -1;
    socklen_t l = sizeof v;
    return getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l) == 0 ? v : -1;
}

/* Accepted sockets have TCP_NODELAY, learnt as inherited from the listener
 * on the first and set by nobody after it; and on a listener made without
 * it (handed down from elsewhere), set on each socket. */
TEST(accepted_sockets_have_nodelay)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int plain = 0; plain < 2; plain++) {
        int l = net_listen((struct sockaddr *)&a, sizeof a, 16);
        if (!CHECK(l >= 0))
            return;
        if (plain) {   /* as if made elsewhere: no TCP_NODELAY on the listener */
            int zero = 0;
            setsockopt(l, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero);
        }
        struct sockaddr_in bound;
        socklen_t bl = sizeof bound;
        getsockname(l, (struct sockaddr *)&bound, &bl);
        for (int k = 0; k < 3; k++) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            CHECK(connect(c, (struct sockaddr *)&bound, bl) == 0);
            struct pollfd p = {.fd = l, .events = POLLIN};
            poll(&p, 1, 1000);
            struct sockaddr_storage peer;
            socklen_t pl;
            int fd = net_accept(l, &peer, &pl);
            if (CHECK(fd >= 0)) {
                CHECK_EQ_INT(nodelay(fd) != 0, 1);
                close(fd);
            }
            close(c);
        }
        net_listener_closed(l);
        close(l);
    }
}

int main(void)
{
    RUN(ipv4_text);
    RUN(ipv6_and_mapped);
    RUN(accepted_sockets_have_nodelay);
    return unit_summary("test_net");
}
