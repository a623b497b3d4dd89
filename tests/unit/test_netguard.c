/* Unit tests of netguard: address classes (IPv4, IPv6, embedded IPv4), allow-lists, URLs. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "check.h"
#include "netguard.h"

struct class_case {
    const char *addr;
    enum netguard_class cls;
};

/* clang-format off */
static const struct class_case v4_cases[] = {
    {"0.0.0.0", NETGUARD_UNSPECIFIED},        {"0.255.255.255", NETGUARD_UNSPECIFIED},
    {"1.0.0.1", NETGUARD_PUBLIC},             {"8.8.8.8", NETGUARD_PUBLIC},
    {"9.255.255.255", NETGUARD_PUBLIC},       {"10.0.0.0", NETGUARD_PRIVATE},
    {"10.1.2.3", NETGUARD_PRIVATE},           {"10.255.255.255", NETGUARD_PRIVATE},
    {"11.0.0.0", NETGUARD_PUBLIC},            {"100.63.255.255", NETGUARD_PUBLIC},
    {"100.64.0.0", NETGUARD_CGNAT},           {"100.100.100.200", NETGUARD_CGNAT},
    {"100.127.255.255", NETGUARD_CGNAT},      {"100.128.0.0", NETGUARD_PUBLIC},
    {"126.255.255.255", NETGUARD_PUBLIC},     {"127.0.0.1", NETGUARD_LOOPBACK},
    {"127.0.0.2", NETGUARD_LOOPBACK},         {"127.255.255.254", NETGUARD_LOOPBACK},
    {"128.0.0.0", NETGUARD_PUBLIC},           {"169.253.255.255", NETGUARD_PUBLIC},
    {"169.254.0.1", NETGUARD_LINK_LOCAL},     {"169.254.169.254", NETGUARD_LINK_LOCAL},
    {"169.255.0.0", NETGUARD_PUBLIC},         {"172.15.255.255", NETGUARD_PUBLIC},
    {"172.16.0.0", NETGUARD_PRIVATE},         {"172.31.255.255", NETGUARD_PRIVATE},
    {"172.32.0.0", NETGUARD_PUBLIC},          {"192.0.0.8", NETGUARD_RESERVED},
    {"192.0.0.255", NETGUARD_RESERVED},       {"192.0.1.1", NETGUARD_PUBLIC},
    {"192.0.2.1", NETGUARD_RESERVED},         {"192.0.2.255", NETGUARD_RESERVED},
    {"192.0.3.0", NETGUARD_PUBLIC},           {"192.88.98.255", NETGUARD_PUBLIC},
    {"192.88.99.1", NETGUARD_RESERVED},       {"192.88.99.255", NETGUARD_RESERVED},
    {"192.88.100.0", NETGUARD_PUBLIC},        {"192.167.255.255", NETGUARD_PUBLIC},
    {"192.168.0.1", NETGUARD_PRIVATE},        {"192.168.255.255", NETGUARD_PRIVATE},
    {"192.169.0.0", NETGUARD_PUBLIC},         {"198.17.255.255", NETGUARD_PUBLIC},
    {"198.18.0.1", NETGUARD_RESERVED},        {"198.19.255.255", NETGUARD_RESERVED},
    {"198.20.0.0", NETGUARD_PUBLIC},          {"198.51.99.255", NETGUARD_PUBLIC},
    {"198.51.100.7", NETGUARD_RESERVED},      {"198.51.100.255", NETGUARD_RESERVED},
    {"198.51.101.0", NETGUARD_PUBLIC},        {"203.0.112.255", NETGUARD_PUBLIC},
    {"203.0.113.9", NETGUARD_RESERVED},       {"203.0.113.255", NETGUARD_RESERVED},
    {"203.0.114.0", NETGUARD_PUBLIC},
    {"223.255.255.255", NETGUARD_PUBLIC},     {"224.0.0.1", NETGUARD_MULTICAST},
    {"239.255.255.250", NETGUARD_MULTICAST},  {"240.0.0.1", NETGUARD_RESERVED},
    {"254.255.255.255", NETGUARD_RESERVED},   {"255.255.255.254", NETGUARD_RESERVED},
    {"255.255.255.255", NETGUARD_BROADCAST},
};

static const struct class_case v6_cases[] = {
    {"::", NETGUARD_UNSPECIFIED},
    {"::1", NETGUARD_LOOPBACK},
    {"::2", NETGUARD_RESERVED},
    {"::127.0.0.1", NETGUARD_RESERVED},              /* IPv4-compatible, deprecated */
    {"::ffff:127.0.0.1", NETGUARD_LOOPBACK},         /* IPv4-mapped */
    {"::ffff:7f00:2", NETGUARD_LOOPBACK},
    {"::ffff:10.0.0.1", NETGUARD_PRIVATE},
    {"::ffff:169.254.169.254", NETGUARD_LINK_LOCAL},
    {"::ffff:0.0.0.0", NETGUARD_UNSPECIFIED},
    {"::ffff:8.8.8.8", NETGUARD_PUBLIC},
    {"::ffff:0:127.0.0.1", NETGUARD_RESERVED},       /* IPv4-translated */
    {"64:ff9b::7f00:1", NETGUARD_LOOPBACK},          /* NAT64 of 127.0.0.1 */
    {"64:ff9b::a9fe:a9fe", NETGUARD_LINK_LOCAL},     /* NAT64 of 169.254.169.254 */
    {"64:ff9b::192.168.1.1", NETGUARD_PRIVATE},
    {"64:ff9b::808:808", NETGUARD_PUBLIC},
    {"64:ff9b::1:808:808", NETGUARD_RESERVED},       /* 64:ff9b::/96 ends at the last 32 bits */
    {"64:ff9b:0:1::1", NETGUARD_RESERVED},
    {"64:ff9b:1::1", NETGUARD_PRIVATE},              /* NAT64 local use */
    {"64:ff9b:1:ffff::1", NETGUARD_PRIVATE},
    {"64:ff9b:2::1", NETGUARD_RESERVED},
    {"100::1", NETGUARD_RESERVED},                   /* discard-only */
    {"fc00::1", NETGUARD_UNIQUE_LOCAL},
    {"fd12:3456:789a::1", NETGUARD_UNIQUE_LOCAL},
    {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NETGUARD_UNIQUE_LOCAL},
    {"fe80::1", NETGUARD_LINK_LOCAL},
    {"febf:ffff::1", NETGUARD_LINK_LOCAL},
    {"fec0::1", NETGUARD_UNIQUE_LOCAL},              /* site-local */
    {"feff:ffff::1", NETGUARD_UNIQUE_LOCAL},
    {"ff02::1", NETGUARD_MULTICAST},
    {"ff05::1:3", NETGUARD_MULTICAST},
    {"ffff:ffff::1", NETGUARD_MULTICAST},
    {"1fff:ffff::1", NETGUARD_RESERVED},             /* outside 2000::/3 */
    {"4000::1", NETGUARD_RESERVED},
    {"e000::1", NETGUARD_RESERVED},
    {"2001:4860:4860::8888", NETGUARD_PUBLIC},
    {"2606:4700:4700::1111", NETGUARD_PUBLIC},
    {"2a00:1450:4001:80b::200e", NETGUARD_PUBLIC},
    {"3ffe:ffff::1", NETGUARD_PUBLIC},
    {"2001:db8::1", NETGUARD_RESERVED},              /* documentation */
    {"2001:db8:ffff::1", NETGUARD_RESERVED},
    {"2001:2::1", NETGUARD_RESERVED},                /* benchmarking */
    {"2001:2:0:ffff::1", NETGUARD_RESERVED},
    {"2001:2:1::1", NETGUARD_RESERVED},              /* past benchmarking: IETF's still */
    {"2001:3::1", NETGUARD_PUBLIC},                  /* AMT */
    {"2001:3:ffff:ffff::1", NETGUARD_PUBLIC},
    {"2001:10::1", NETGUARD_RESERVED},               /* ORCHID */
    {"2001:1f:ffff::1", NETGUARD_RESERVED},
    {"2001:20::1", NETGUARD_RESERVED},               /* ORCHIDv2 */
    {"2001:2f:ffff::1", NETGUARD_RESERVED},
    {"2001:30::1", NETGUARD_PUBLIC},                 /* DRIP */
    {"2001:3f:ffff::1", NETGUARD_PUBLIC},
    {"2001:40::1", NETGUARD_RESERVED}, /* the rest of IETF protocol assignments (2001::/23) */
    {"2001:1::1", NETGUARD_PUBLIC},    /* PCP anycast */
    {"2001:1::2", NETGUARD_PUBLIC},    /* TURN anycast */
    {"2001:1::3", NETGUARD_PUBLIC},    /* DNS-SD service registration anycast */
    {"2001:1::4", NETGUARD_RESERVED},
    {"2001:4:112::1", NETGUARD_PUBLIC}, /* AS112-v6 */
    {"2001:4:112:ffff::1", NETGUARD_PUBLIC},
    {"2001:4:113::1", NETGUARD_RESERVED},
    {"2001:5::1", NETGUARD_RESERVED},
    {"2001:1ff:ffff::1", NETGUARD_RESERVED},
    {"2001:200::1", NETGUARD_PUBLIC}, /* past the /23: a regional registry's */
    {"3fff::1", NETGUARD_RESERVED},                  /* documentation */
    {"3fff:fff:ffff::1", NETGUARD_RESERVED},
    {"3fff:1000::1", NETGUARD_PUBLIC},
    {"5f00::1", NETGUARD_RESERVED},                  /* SRv6 */
    {"2002:7f00:1::1", NETGUARD_LOOPBACK},           /* 6to4 of 127.0.0.1 */
    {"2002:a00:1::", NETGUARD_PRIVATE},              /* 6to4 of 10.0.0.1 */
    {"2002:a9fe:a9fe::1", NETGUARD_LINK_LOCAL},
    {"2002:808:808::1", NETGUARD_PUBLIC},
    {"2002::1", NETGUARD_UNSPECIFIED},               /* 6to4 of 0.0.0.0: zeros embed too */
    /* Teredo: server 65.54.227.120, client inverted in the last 32 bits */
    {"2001:0:4136:e378:8000:63bf:f7f7:f7f7", NETGUARD_PUBLIC},   /* client 8.8.8.8 */
    {"2001:0:4136:e378:8000:63bf:3fff:fdd2", NETGUARD_RESERVED}, /* RFC 4380: 192.0.2.45 */
    {"2001:0:4136:e378:8000:63bf:80ff:fffe", NETGUARD_LOOPBACK}, /* client 127.0.0.1 */
    {"2001:0:4136:e378:8000:63bf:f5ff:fffe", NETGUARD_PRIVATE},  /* client 10.0.0.1 */
    {"2001:0:4136:e378:8000:63bf::", NETGUARD_BROADCAST},        /* client 255.255.255.255 */
    {"2001:0:a00:1:8000:63bf:3fff:fdd2", NETGUARD_PRIVATE},      /* server 10.0.0.1 */
};
/* clang-format on */

static void check_class(const struct class_case *c)
{
    struct netguard_addr a;
    CHECK(netguard_parse_addr(c->addr, &a) == 0);
    enum netguard_class got = netguard_classify(&a);
    if (got != c->cls) {
        fprintf(stderr, "  %s: got %s, want %s\n", c->addr, netguard_class_name(got),
                netguard_class_name(c->cls));
    }
    CHECK_INT(got, c->cls);
}

static void test_classes(void)
{
    for (size_t i = 0; i < sizeof v4_cases / sizeof v4_cases[0]; i++) {
        check_class(&v4_cases[i]);
    }
    for (size_t i = 0; i < sizeof v6_cases / sizeof v6_cases[0]; i++) {
        check_class(&v6_cases[i]);
    }
    static const char *const names[] = {
        [NETGUARD_PUBLIC] = "public",
        [NETGUARD_UNSPECIFIED] = "unspecified",
        [NETGUARD_LOOPBACK] = "loopback",
        [NETGUARD_PRIVATE] = "private",
        [NETGUARD_LINK_LOCAL] = "link-local",
        [NETGUARD_CGNAT] = "carrier-grade NAT",
        [NETGUARD_MULTICAST] = "multicast",
        [NETGUARD_BROADCAST] = "broadcast",
        [NETGUARD_UNIQUE_LOCAL] = "unique-local",
        [NETGUARD_RESERVED] = "reserved",
    };
    for (size_t c = 0; c < sizeof names / sizeof names[0]; c++) {
        CHECK_STR(netguard_class_name((enum netguard_class)c), names[c]);
    }
    struct netguard_addr none = {.family = AF_UNSPEC}; /* neither family: never public */
    CHECK_INT(netguard_classify(&none), NETGUARD_RESERVED);
}

static void test_parse_addr(void)
{
    struct netguard_addr a;
    CHECK(netguard_parse_addr("1.2.3.4", &a) == 0 && a.family == AF_INET);
    CHECK(netguard_parse_addr("::1", &a) == 0 && a.family == AF_INET6);
    CHECK(netguard_parse_addr("localhost", &a) < 0);
    CHECK(netguard_parse_addr("1.2.3", &a) < 0);
    CHECK(netguard_parse_addr("1.2.3.256", &a) < 0);
    CHECK(netguard_parse_addr("[::1]", &a) < 0);
    CHECK(netguard_parse_addr("", &a) < 0);
    char text[NETGUARD_ADDR_MAX];
    netguard_parse_addr("::ffff:10.0.0.1", &a);
    netguard_format(&a, text);
    CHECK_STR(text, "::ffff:10.0.0.1");
    a = (struct netguard_addr){.family = AF_UNSPEC};
    netguard_format(&a, text);
    CHECK_STR(text, "?");
}

static void test_sockaddr(void)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    inet_pton(AF_INET, "169.254.169.254", &in.sin_addr);
    struct netguard_addr a;
    CHECK(netguard_from_sockaddr((struct sockaddr *)&in, sizeof in, &a) == 0);
    CHECK_INT(netguard_classify(&a), NETGUARD_LINK_LOCAL);
    char text[NETGUARD_ADDR_MAX];
    netguard_format(&a, text);
    CHECK_STR(text, "169.254.169.254");
    CHECK(netguard_from_sockaddr((struct sockaddr *)&in, sizeof in - 1, &a) < 0); /* too short */
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    CHECK(netguard_from_sockaddr((struct sockaddr *)&in6, sizeof in6, &a) == 0);
    CHECK_INT(netguard_classify(&a), NETGUARD_LOOPBACK);
    CHECK(netguard_from_sockaddr((struct sockaddr *)&in6, sizeof in, &a) < 0); /* too short */
    struct sockaddr other = {.sa_family = AF_UNIX};
    CHECK(netguard_from_sockaddr(&other, sizeof other, &a) < 0);
}

static void test_parse_net(void)
{
    struct netguard_net n;
    struct err e = {{0}};
    CHECK(netguard_parse_net("10.0.0.0/8", &n, &e) == 0 && n.prefix == 8);
    CHECK(netguard_parse_net("127.0.0.1", &n, &e) == 0 && n.prefix == 32);
    CHECK(netguard_parse_net("fd00::/8", &n, &e) == 0 && n.prefix == 8);
    CHECK(netguard_parse_net("::1", &n, &e) == 0 && n.prefix == 128);
    CHECK(netguard_parse_net("0.0.0.0/0", &n, &e) == 0 && n.prefix == 0);
    CHECK(netguard_parse_net("10.0.0.1/8", &n, &e) < 0);
    CHECK(strstr(e.msg, "host bits") != NULL);
    CHECK(netguard_parse_net("10.0.0.0/33", &n, &e) < 0);
    CHECK(strstr(e.msg, "prefix length") != NULL);
    CHECK(netguard_parse_net("10.0.0.0/-1", &n, &e) < 0);
    CHECK(netguard_parse_net("10.0.0.0/", &n, &e) < 0);
    CHECK(netguard_parse_net("10.0.0.0/8x", &n, &e) < 0);
    CHECK(netguard_parse_net("10.0.0.0/+8", &n, &e) < 0); /* digits only */
    CHECK(netguard_parse_net("10.0.0.0/ 8", &n, &e) < 0);
    CHECK(strstr(e.msg, "prefix length") != NULL);
    CHECK(netguard_parse_net("fd00::/129", &n, &e) < 0);
    CHECK(netguard_parse_net("example.com/8", &n, &e) < 0);
    CHECK(strstr(e.msg, "not a network") != NULL);
    CHECK(netguard_parse_net("/8", &n, &e) < 0);
    CHECK(netguard_parse_net("fe80::1%eth0/64", &n, &e) < 0);
    char long_addr[NETGUARD_ADDR_MAX + 8]; /* an address part that fills the buffer, and more */
    memset(long_addr, '1', NETGUARD_ADDR_MAX);
    snprintf(long_addr + NETGUARD_ADDR_MAX, 8, "/8");
    CHECK(netguard_parse_net(long_addr, &n, &e) < 0);
    CHECK(strstr(e.msg, "not a network") != NULL);
    CHECK(netguard_parse_net("2001:db8:2::/47", &n, &e) == 0);
    CHECK(netguard_parse_net("2001:db8:2::/46", &n, &e) < 0);
}

static bool allows(const struct netguard *g, const char *addr)
{
    struct netguard_addr a;
    return netguard_parse_addr(addr, &a) == 0 && netguard_allows(g, &a);
}

static void test_policy(void)
{
    struct netguard g;
    struct err e = {{0}};
    CHECK(netguard_init(&g, false, NULL, &e) == 0);
    CHECK(allows(&g, "93.184.216.34"));
    CHECK(allows(&g, "2606:4700::1"));
    CHECK(!allows(&g, "127.0.0.1"));
    CHECK(!allows(&g, "::1"));
    CHECK(!allows(&g, "169.254.169.254"));
    CHECK(!allows(&g, "::ffff:127.0.0.1"));

    CHECK(netguard_init(&g, false, " 127.0.0.1/32 , 10.20.0.0/16,fd00:1::/32 ,", &e) == 0);
    CHECK_INT(g.n_nets, 3);
    CHECK(allows(&g, "127.0.0.1"));
    CHECK(!allows(&g, "127.0.0.2"));
    CHECK(allows(&g, "::ffff:127.0.0.1")); /* the mapped form of an allowed address */
    CHECK(!allows(&g, "::ffff:127.0.0.2"));
    CHECK(!allows(&g, "::1"));
    CHECK(allows(&g, "10.20.255.1"));
    CHECK(!allows(&g, "10.21.0.1"));
    CHECK(allows(&g, "fd00:1:ffff::1"));
    CHECK(!allows(&g, "fd00:2::1"));
    CHECK(!allows(&g, "169.254.169.254"));
    CHECK(allows(&g, "8.8.8.8"));
    CHECK(!allows(&g, "a14::1"));         /* IPv6 bytes that 10.20.0.0/16 would prefix-match */
    CHECK(!allows(&g, "::127.0.0.1"));    /* IPv4-compatible, not IPv4-mapped */
    CHECK(!allows(&g, "64:ff9b::a14:1")); /* only the mapped form counts as the IPv4 address */

    CHECK(netguard_init(&g, false, ",, 127.0.0.1 ,\t,,10.0.0.0/8", &e) == 0); /* empty items */
    CHECK_INT(g.n_nets, 2);
    CHECK(allows(&g, "10.1.2.3"));

    CHECK(netguard_init(&g, true, "", &e) == 0);
    CHECK(allows(&g, "127.0.0.1") && allows(&g, "::1") && allows(&g, "10.0.0.1"));

    /* "0.0.0.0/00...0032" is 0.0.0.0/32 however many zeros; an item too long for the buffer was
     * cut, and read as 0.0.0.0/0: every address allowed. */
    char long_item[256];
    int len = snprintf(long_item, sizeof long_item, "8.8.8.8/32, 0.0.0.0/");
    size_t zeros = 2 * NETGUARD_ADDR_MAX - 1 - strlen("0.0.0.0/32"); /* the longest item taken */
    memset(long_item + len, '0', zeros);
    snprintf(long_item + (size_t)len + zeros, 8, "32 ");
    CHECK(netguard_init(&g, false, long_item, &e) == 0);
    CHECK(g.n_nets == 2 && g.nets[1].prefix == 32);
    memset(long_item + len, '0', zeros + 1);
    snprintf(long_item + (size_t)len + zeros + 1, 8, "32 ");
    CHECK(netguard_init(&g, false, long_item, &e) < 0);
    CHECK(strstr(e.msg, "'0.0.0.0/000") != NULL && strstr(e.msg, "is too long") != NULL);
    CHECK(g.n_nets == 0 && !allows(&g, "169.254.169.254")); /* fails closed */

    CHECK(netguard_init(&g, true, "127.0.0.1/32,bogus", &e) < 0);
    CHECK(strstr(e.msg, "bogus") != NULL);
    CHECK(!g.allow_private && g.n_nets == 0); /* fails closed */
    CHECK(!allows(&g, "127.0.0.1"));

    char many[2048];
    size_t used = 0;
    for (int i = 0; i < NETGUARD_MAX_NETS; i++) {
        used += (size_t)snprintf(many + used, sizeof many - used, "10.%d.0.0/16,", i);
    }
    CHECK(netguard_init(&g, false, many, &e) == 0); /* exactly the limit */
    CHECK_INT(g.n_nets, NETGUARD_MAX_NETS);
    CHECK(allows(&g, "10.31.0.1"));
    snprintf(many + used, sizeof many - used, "10.%d.0.0/16", NETGUARD_MAX_NETS);
    CHECK(netguard_init(&g, false, many, &e) < 0);
    CHECK(strstr(e.msg, "more than") != NULL);
    CHECK(g.n_nets == 0 && !allows(&g, "10.0.0.1")); /* fails closed */
}

static void test_check_message(void)
{
    struct netguard g;
    struct err e = {{0}};
    netguard_init(&g, false, NULL, &e);
    struct netguard_addr a;
    netguard_parse_addr("127.0.0.1", &a);
    CHECK(netguard_check(&g, &a, &e) < 0);
    CHECK_STR(e.msg, "address 127.0.0.1 is not allowed (loopback)");
    netguard_parse_addr("169.254.169.254", &a);
    netguard_check(&g, &a, &e);
    CHECK_STR(e.msg, "address 169.254.169.254 is not allowed (link-local)");
    netguard_parse_addr("::ffff:10.1.2.3", &a);
    netguard_check(&g, &a, &e);
    CHECK_STR(e.msg, "address ::ffff:10.1.2.3 is not allowed (private)");
    netguard_parse_addr("100.64.1.1", &a);
    netguard_check(&g, &a, &e);
    CHECK_STR(e.msg, "address 100.64.1.1 is not allowed (carrier-grade NAT)");
    netguard_parse_addr("1.1.1.1", &a);
    CHECK(netguard_check(&g, &a, &e) == 0);
}

static void test_urls(void)
{
    struct netguard g;
    struct err e = {{0}};
    netguard_init(&g, false, "127.0.0.9/32", &e);
    CHECK(netguard_check_url(&g, "http://example.com/a.jpg", &e) == 0);
    CHECK(netguard_check_url(&g, "HTTPS://example.com", &e) == 0);
    CHECK(netguard_check_url(&g, "HTTP://127.0.0.1/x", &e) < 0); /* the scheme in any case */
    CHECK_STR(e.msg, "address 127.0.0.1 is not allowed (loopback)");
    CHECK(netguard_check_url(&g, "http://127.0.0.9:8080/x", &e) == 0);
    CHECK(netguard_check_url(&g, "http://user:pw@127.0.0.9/x", &e) == 0);
    CHECK(netguard_check_url(&g, "http://localhost/x", &e) == 0); /* names: at connect time */
    CHECK(netguard_check_url(&g, "http://127.0.0.1:80/x", &e) < 0);
    CHECK_STR(e.msg, "address 127.0.0.1 is not allowed (loopback)");
    CHECK(netguard_check_url(&g, "http://10.0.0.1?x=1", &e) < 0);
    CHECK(netguard_check_url(&g, "http://a@b@169.254.169.254/latest", &e) < 0);
    CHECK(strstr(e.msg, "169.254.169.254") != NULL);
    /* the other spellings of an IPv4 address the resolver takes are addresses, not names */
    CHECK(netguard_check_url(&g, "http://2130706433/x", &e) < 0);
    CHECK_STR(e.msg, "address 127.0.0.1 is not allowed (loopback)");
    CHECK(netguard_check_url(&g, "http://127.1:8080/x", &e) < 0);
    CHECK_STR(e.msg, "address 127.0.0.1 is not allowed (loopback)");
    CHECK(netguard_check_url(&g, "http://0x7f.0.0.9/x", &e) == 0); /* 127.0.0.9 is allowed */
    CHECK(netguard_check_url(&g, "http://012.1/x", &e) < 0);
    CHECK_STR(e.msg, "address 10.0.0.1 is not allowed (private)");
    CHECK(netguard_check_url(&g, "http://1e3.example/x", &e) == 0); /* a name */
    CHECK(netguard_check_url(&g, "http://[::1]:8080/x", &e) < 0);
    CHECK_STR(e.msg, "address ::1 is not allowed (loopback)");
    CHECK(netguard_check_url(&g, "http://[fe80::1%25eth0]/x", &e) < 0);
    CHECK(netguard_check_url(&g, "http://[::ffff:127.0.0.9]/x", &e) == 0);
    CHECK(netguard_check_url(&g, "http://example.com#@127.0.0.1/", &e) == 0);
    CHECK(netguard_check_url(&g, "file:///etc/passwd", &e) < 0);
    CHECK_STR(e.msg, "only http:// and https:// URLs are allowed");
    CHECK(netguard_check_url(&g, "ftp://example.com/a", &e) < 0);
    CHECK(netguard_check_url(&g, "gopher://127.0.0.1:6379/_INFO", &e) < 0);
    CHECK(netguard_check_url(&g, "example.com/a.jpg", &e) < 0);
    CHECK(netguard_check_url(&g, "//example.com/a.jpg", &e) < 0);
    CHECK(netguard_check_url(&g, "http:///a.jpg", &e) < 0);
    CHECK(strstr(e.msg, "no usable host") != NULL);
    CHECK(netguard_check_url(&g, "http://[::1/x", &e) < 0);
    CHECK(netguard_check_url(&g, "http://[", &e) < 0); /* a bracket alone is no host either */
    CHECK(strstr(e.msg, "no usable host") != NULL);
    CHECK(netguard_check_url(&g, "http://user@/x", &e) < 0);

    char url[512]; /* a host of 255 bytes is taken (a name), one of 256 is not */
    int n = snprintf(url, sizeof url, "http://");
    memset(url + n, 'a', 255);
    snprintf(url + n + 255, sizeof url - (size_t)n - 255, "/x");
    CHECK(netguard_check_url(&g, url, &e) == 0);
    memset(url + n, 'a', 256);
    snprintf(url + n + 256, sizeof url - (size_t)n - 256, "/x");
    CHECK(netguard_check_url(&g, url, &e) < 0);
    CHECK(strstr(e.msg, "no usable host") != NULL);
}

/* The policy-free part: the form of the URL, whatever its host. */
static void test_url_form(void)
{
    struct err e = {{0}};
    CHECK(netguard_check_url_form("http://127.0.0.1/x", &e) == 0);
    CHECK(netguard_check_url_form("HTTPS://[::1]:8443/x", &e) == 0);
    CHECK(netguard_check_url_form("ftp://example.com/a", &e) < 0);
    CHECK_STR(e.msg, "only http:// and https:// URLs are allowed");
    CHECK(netguard_check_url_form("https:///a", &e) < 0);
    CHECK(strstr(e.msg, "no usable host") != NULL);
    CHECK(netguard_check_url_form("http://[/a.jpg", &e) < 0);
    CHECK(strstr(e.msg, "no usable host") != NULL);
}

int main(void)
{
    test_classes();
    test_parse_addr();
    test_sockaddr();
    test_parse_net();
    test_policy();
    test_check_message();
    test_urls();
    test_url_form();
    return check_summary("netguard");
}
