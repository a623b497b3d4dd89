#define _DEFAULT_SOURCE /* inet_aton */
#include "netguard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- addresses */

int netguard_parse_addr(const char *text, struct netguard_addr *out)
{
    struct netguard_addr a = {0};
    if (inet_pton(AF_INET, text, a.b) == 1) {
        a.family = AF_INET;
    } else if (inet_pton(AF_INET6, text, a.b) == 1) {
        a.family = AF_INET6;
    } else {
        return -1;
    }
    *out = a;
    return 0;
}

int netguard_from_sockaddr(const struct sockaddr *sa, size_t len, struct netguard_addr *out)
{
    struct netguard_addr a = {0};
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memcpy(a.b, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(a.b, &in6->sin6_addr, 16);
    } else {
        return -1;
    }
    a.family = sa->sa_family;
    *out = a;
    return 0;
}

void netguard_format(const struct netguard_addr *a, char out[NETGUARD_ADDR_MAX])
{
    if (inet_ntop(a->family, a->b, out, NETGUARD_ADDR_MAX) == NULL) {
        snprintf(out, NETGUARD_ADDR_MAX, "?");
    }
}

/* Whether the first `prefix` bits of `a` and `net` agree. */
static bool prefix_match(const uint8_t *a, const uint8_t *net, int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, (size_t)whole) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

/* ---------------------------------------------------------------- classification */

struct range {
    uint8_t net[16];
    int prefix;
    enum netguard_class cls;
};

/* IPv4 special-purpose ranges (IANA registry), the more specific before the wider. */
static const struct range v4_ranges[] = {
    {{0, 0, 0, 0}, 8, NETGUARD_UNSPECIFIED},        {{10, 0, 0, 0}, 8, NETGUARD_PRIVATE},
    {{100, 64, 0, 0}, 10, NETGUARD_CGNAT},          {{127, 0, 0, 0}, 8, NETGUARD_LOOPBACK},
    {{169, 254, 0, 0}, 16, NETGUARD_LINK_LOCAL},    {{172, 16, 0, 0}, 12, NETGUARD_PRIVATE},
    {{192, 0, 0, 0}, 24, NETGUARD_RESERVED},        {{192, 0, 2, 0}, 24, NETGUARD_RESERVED},
    {{192, 88, 99, 0}, 24, NETGUARD_RESERVED},      {{192, 168, 0, 0}, 16, NETGUARD_PRIVATE},
    {{198, 18, 0, 0}, 15, NETGUARD_RESERVED},       {{198, 51, 100, 0}, 24, NETGUARD_RESERVED},
    {{203, 0, 113, 0}, 24, NETGUARD_RESERVED},      {{224, 0, 0, 0}, 4, NETGUARD_MULTICAST},
    {{255, 255, 255, 255}, 32, NETGUARD_BROADCAST}, {{240, 0, 0, 0}, 4, NETGUARD_RESERVED},
};

/* IPv6 ranges outside global unicast (2000::/3) that have a more telling name than reserved. */
static const struct range v6_local_ranges[] = {
    {{0}, 128, NETGUARD_UNSPECIFIED},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, NETGUARD_LOOPBACK},
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, NETGUARD_PRIVATE}, /* NAT64 local use */
    {{0xfc}, 7, NETGUARD_UNIQUE_LOCAL},
    {{0xfe, 0x80}, 10, NETGUARD_LINK_LOCAL},
    {{0xfe, 0xc0}, 10, NETGUARD_UNIQUE_LOCAL}, /* site-local, deprecated */
    {{0xff}, 8, NETGUARD_MULTICAST},
};
/* (5f00::/16, SRv6 SIDs, is outside 2000::/3: reserved, as all of it but these) */

/* Ranges inside 2000::/3 that are not globally reachable, the first match counting: IANA's
 * IETF protocol assignments (2001::/23) are not, but for the more specific ones marked so. */
static const struct range v6_global_reserved[] = {
    {{0x20, 0x01, 0x0d, 0xb8}, 32, NETGUARD_RESERVED},             /* documentation */
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48, NETGUARD_RESERVED}, /* benchmarking */
    {{0x20, 0x01, 0x00, 0x10}, 28, NETGUARD_RESERVED},             /* ORCHID */
    {{0x20, 0x01, 0x00, 0x20}, 28, NETGUARD_RESERVED},             /* ORCHIDv2 */
    {{0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, NETGUARD_PUBLIC}, /* PCP */
    {{0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, 128, NETGUARD_PUBLIC}, /* TURN */
    {{0x20, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}, 128, NETGUARD_PUBLIC}, /* SRP */
    {{0x20, 0x01, 0x00, 0x03}, 32, NETGUARD_PUBLIC},                                      /* AMT */
    {{0x20, 0x01, 0x00, 0x04, 0x01, 0x12}, 48, NETGUARD_PUBLIC}, /* AS112-v6 */
    {{0x20, 0x01, 0x00, 0x30}, 28, NETGUARD_PUBLIC},             /* DRIP */
    {{0x20, 0x01, 0x00, 0x00}, 23, NETGUARD_RESERVED},           /* IETF protocol assignments */
    {{0x3f, 0xff}, 20, NETGUARD_RESERVED},                       /* documentation */
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const struct range *find_range(const struct range *r, size_t n, const uint8_t *b)
{
    for (size_t i = 0; i < n; i++) {
        if (prefix_match(b, r[i].net, r[i].prefix)) {
            return &r[i];
        }
    }
    return NULL;
}

static enum netguard_class classify_v4(const uint8_t *b)
{
    const struct range *r = find_range(v4_ranges, N_OF(v4_ranges), b);
    return r != NULL ? r->cls : NETGUARD_PUBLIC;
}

static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const uint8_t nat64_prefix[12] = {0x00, 0x64, 0xff, 0x9b};

/* The IPv4 address an IPv6 address embeds where it is what the traffic reaches: IPv4-mapped,
 * NAT64 (well-known prefix) and 6to4. Returns false if there is none. */
static bool embedded_v4(const uint8_t *b, uint8_t v4[4])
{
    if (memcmp(b, mapped_prefix, 12) == 0 || memcmp(b, nat64_prefix, 12) == 0) {
        memcpy(v4, b + 12, 4);
        return true;
    }
    if (b[0] == 0x20 && b[1] == 0x02) { /* 6to4: 2002:AABB:CCDD::/48 */
        memcpy(v4, b + 2, 4);
        return true;
    }
    return false;
}

/* Teredo (2001:0::/32): the server's address in bits 32-63, the client's inverted in the last
 * 32 bits; the worse of the two counts. */
static enum netguard_class classify_teredo(const uint8_t *b)
{
    uint8_t client[4];
    for (int i = 0; i < 4; i++) {
        client[i] = (uint8_t)~b[12 + i];
    }
    enum netguard_class server = classify_v4(b + 4);
    return server != NETGUARD_PUBLIC ? server : classify_v4(client);
}

static enum netguard_class classify_v6(const uint8_t *b)
{
    uint8_t v4[4];
    if (embedded_v4(b, v4)) {
        return classify_v4(v4);
    }
    if ((b[0] & 0xe0) != 0x20) { /* outside 2000::/3 */
        const struct range *r = find_range(v6_local_ranges, N_OF(v6_local_ranges), b);
        return r != NULL ? r->cls : NETGUARD_RESERVED;
    }
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) {
        return classify_teredo(b);
    }
    const struct range *r = find_range(v6_global_reserved, N_OF(v6_global_reserved), b);
    return r != NULL ? r->cls : NETGUARD_PUBLIC;
}

enum netguard_class netguard_classify(const struct netguard_addr *a)
{
    if (a->family == AF_INET) {
        return classify_v4(a->b);
    }
    if (a->family == AF_INET6) {
        return classify_v6(a->b);
    }
    return NETGUARD_RESERVED;
}

const char *netguard_class_name(enum netguard_class c)
{
    switch (c) {
    case NETGUARD_PUBLIC:
        return "public";
    case NETGUARD_UNSPECIFIED:
        return "unspecified";
    case NETGUARD_LOOPBACK:
        return "loopback";
    case NETGUARD_PRIVATE:
        return "private";
    case NETGUARD_LINK_LOCAL:
        return "link-local";
    case NETGUARD_CGNAT:
        return "carrier-grade NAT";
    case NETGUARD_MULTICAST:
        return "multicast";
    case NETGUARD_BROADCAST:
        return "broadcast";
    case NETGUARD_UNIQUE_LOCAL:
        return "unique-local";
    case NETGUARD_RESERVED:
        return "reserved";
    }
    return "reserved";
}

/* ---------------------------------------------------------------- policy */

static int parse_prefix(const char *s, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || !isdigit((unsigned char)s[0]) || v < 0 ||
        v > max) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

int netguard_parse_net(const char *text, struct netguard_net *out, struct err *e)
{
    char addr[NETGUARD_ADDR_MAX];
    const char *slash = strchr(text, '/');
    size_t n = slash != NULL ? (size_t)(slash - text) : strlen(text);
    struct netguard_net net = {0};
    if (n == 0 || n >= sizeof addr) {
        return err_set(e, "'%.80s' is not a network (expected e.g. 10.0.0.0/8)", text);
    }
    memcpy(addr, text, n);
    addr[n] = '\0';
    if (netguard_parse_addr(addr, &net.addr) < 0) {
        return err_set(e, "'%.80s' is not a network (expected e.g. 10.0.0.0/8)", text);
    }
    int max = net.addr.family == AF_INET ? 32 : 128;
    net.prefix = max;
    if (slash != NULL && parse_prefix(slash + 1, max, &net.prefix) < 0) {
        return err_set(e, "'%.80s': the prefix length must be 0 to %d", text, max);
    }
    uint8_t masked[16];
    memcpy(masked, net.addr.b, sizeof masked);
    for (int bit = net.prefix; bit < max; bit++) {
        masked[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    }
    if (memcmp(masked, net.addr.b, sizeof masked) != 0) {
        return err_set(e, "'%.80s' has host bits set after the prefix", text);
    }
    *out = net;
    return 0;
}

/* Copies the next comma-separated item of *p, trimmed, into `out`; advances *p. Returns 0, or -1
 * if the item does not fit (`out` then holds its first cap - 1 bytes). */
static int next_item(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    size_t n = strcspn(s, ",");
    *p = s[n] == ',' ? s + n + 1 : s + n;
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
    return n < cap ? 0 : -1;
}

int netguard_init(struct netguard *g, bool allow_private, const char *list, struct err *e)
{
    memset(g, 0, sizeof *g);
    const char *p = list != NULL ? list : "";
    while (*p != '\0') {
        char item[2 * NETGUARD_ADDR_MAX];
        if (next_item(&p, item, sizeof item) < 0) {
            g->n_nets = 0; /* cut, it could read as another network: "0.0.0.0/000...032" as /0 */
            return err_set(e, "'%.80s...' is too long for a network", item);
        }
        if (item[0] == '\0') {
            continue;
        }
        if (g->n_nets == NETGUARD_MAX_NETS) {
            g->n_nets = 0;
            return err_set(e, "more than %d networks", NETGUARD_MAX_NETS);
        }
        if (netguard_parse_net(item, &g->nets[g->n_nets], e) < 0) {
            g->n_nets = 0;
            return -1;
        }
        g->n_nets++;
    }
    g->allow_private = allow_private;
    return 0;
}

static bool listed(const struct netguard *g, const struct netguard_addr *a)
{
    for (size_t i = 0; i < g->n_nets; i++) {
        const struct netguard_net *n = &g->nets[i];
        if (n->addr.family == a->family && prefix_match(a->b, n->addr.b, n->prefix)) {
            return true;
        }
    }
    return false;
}

bool netguard_allows(const struct netguard *g, const struct netguard_addr *a)
{
    if (g->allow_private || netguard_classify(a) == NETGUARD_PUBLIC || listed(g, a)) {
        return true;
    }
    if (a->family == AF_INET6 && memcmp(a->b, mapped_prefix, 12) == 0) {
        struct netguard_addr v4 = {.family = AF_INET};
        memcpy(v4.b, a->b + 12, 4);
        return listed(g, &v4);
    }
    return false;
}

int netguard_check(const struct netguard *g, const struct netguard_addr *a, struct err *e)
{
    if (netguard_allows(g, a)) {
        return 0;
    }
    char text[NETGUARD_ADDR_MAX];
    netguard_format(a, text);
    return err_set(e, "address %s is not allowed (%s)", text,
                   netguard_class_name(netguard_classify(a)));
}

/* ---------------------------------------------------------------- URLs */

/* The host of a URL's authority into `out` (brackets and an IPv6 zone removed). */
static int url_host(const char *authority, size_t n, char *out, size_t cap)
{
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        at = authority[i] == '@' ? authority + i : at;
    }
    const char *h = at != NULL ? at + 1 : authority;
    size_t hn = n - (size_t)(h - authority);
    size_t len;
    if (hn > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', hn);
        if (close == NULL) {
            return -1;
        }
        h++;
        len = (size_t)(close - h);
        const char *zone = memchr(h, '%', len);
        len = zone != NULL ? (size_t)(zone - h) : len;
    } else {
        const char *colon = memchr(h, ':', hn);
        len = colon != NULL ? (size_t)(colon - h) : hn;
    }
    if (len == 0 || len >= cap) {
        return -1;
    }
    memcpy(out, h, len);
    out[len] = '\0';
    return 0;
}

/* The host of an http(s) URL into `host` (256 bytes). Returns 0 or -1 with the reason. */
static int url_form(const char *url, char host[256], struct err *e)
{
    size_t skip;
    if (strncasecmp(url, "http://", 7) == 0) {
        skip = 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        skip = 8;
    } else {
        return err_set(e, "only http:// and https:// URLs are allowed");
    }
    const char *authority = url + skip;
    size_t n = strcspn(authority, "/?#");
    if (url_host(authority, n, host, 256) < 0) {
        return err_set(e, "the URL has no usable host");
    }
    return 0;
}

int netguard_check_url_form(const char *url, struct err *e)
{
    char host[256];
    return url_form(url, host, e);
}

/* An IPv4 address in one of the spellings inet_aton() takes besides the dotted quad, which the
 * resolver reads the same way when the request connects: "127.1", "2130706433", "0x7f.1",
 * "017700000001". Without it they were taken for names: refused at connect time only, so that a
 * postback_url spelt so was tried again after each of its retry_postback waits. */
static int numeric_ipv4(const char *host, struct netguard_addr *out)
{
    struct in_addr in;
    if (inet_aton(host, &in) == 0) {
        return -1;
    }
    *out = (struct netguard_addr){.family = AF_INET};
    memcpy(out->b, &in, 4);
    return 0;
}

int netguard_check_url(const struct netguard *g, const char *url, struct err *e)
{
    char host[256];
    if (url_form(url, host, e) < 0) {
        return -1;
    }
    struct netguard_addr a;
    if (netguard_parse_addr(host, &a) < 0 && numeric_ipv4(host, &a) < 0) {
        return 0; /* a name: checked when it resolves */
    }
    return netguard_check(g, &a, e);
}
