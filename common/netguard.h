/* netguard: which network addresses a request made on a job's behalf may reach.
 *
 * A job names URLs (its src, the sources of composite/tile/append, its postback_url) that a
 * stranger chose; fetching them from inside a data centre must not reach the worker's own
 * machine, the private network or the cloud's metadata service (169.254.169.254). The HTTP client
 * asks this module about every address it is about to connect to, for every hop (redirects and
 * DNS answers included), so that what is checked is what is connected to.
 *
 * Every address is classified: public, or one of the ranges that are not (loopback, RFC 1918
 * private, link-local, carrier-grade NAT, multicast, broadcast, unspecified, unique-local,
 * reserved). IPv6 addresses that embed an IPv4 address (IPv4-mapped ::ffff:0:0/96, NAT64
 * 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) are classified by what they embed; IPv6
 * outside global unicast (2000::/3) is reserved. A policy allows public addresses, and the others
 * only when private networks are allowed as a whole or an allow-listed network contains them.
 *
 * Plain value types: a policy can live on the stack and is read-only while requests use it. */
#ifndef PIXQ_NETGUARD_H
#define PIXQ_NETGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "err.h"

#define NETGUARD_MAX_NETS 32 /* most networks in an allow-list */
#define NETGUARD_ADDR_MAX 64 /* bytes for an address as text, with NUL */

enum netguard_class {
    NETGUARD_PUBLIC,       /* globally routable */
    NETGUARD_UNSPECIFIED,  /* 0.0.0.0/8, :: */
    NETGUARD_LOOPBACK,     /* 127.0.0.0/8, ::1 */
    NETGUARD_PRIVATE,      /* 10/8, 172.16/12, 192.168/16, NAT64 local-use 64:ff9b:1::/48 */
    NETGUARD_LINK_LOCAL,   /* 169.254/16 (cloud metadata), fe80::/10 */
    NETGUARD_CGNAT,        /* carrier-grade NAT 100.64/10 */
    NETGUARD_MULTICAST,    /* 224/4, ff00::/8 */
    NETGUARD_BROADCAST,    /* 255.255.255.255 */
    NETGUARD_UNIQUE_LOCAL, /* fc00::/7, and the deprecated site-local fec0::/10 */
    NETGUARD_RESERVED,     /* documentation, benchmarking, 240/4, IETF, outside 2000::/3... */
};

/* An address: AF_INET (4 bytes in `b`) or AF_INET6 (16 bytes). */
struct netguard_addr {
    int family;
    uint8_t b[16];
};

/* A network of an allow-list: an address and a prefix length. */
struct netguard_net {
    struct netguard_addr addr; /* host bits cleared */
    int prefix;                /* 0..32 or 0..128 */
};

/* What requests on a job's behalf may reach. */
struct netguard {
    bool allow_private; /* every address is allowed (PIXQ_ALLOW_PRIVATE_NETWORKS) */
    struct netguard_net nets[NETGUARD_MAX_NETS];
    size_t n_nets;
};

/* Parses a numeric IPv4 or IPv6 address (no brackets, no zone). Returns 0 or -1. */
int netguard_parse_addr(const char *text, struct netguard_addr *out);

/* Reads an AF_INET or AF_INET6 socket address. Returns 0, or -1 for another family. */
int netguard_from_sockaddr(const struct sockaddr *sa, size_t len, struct netguard_addr *out);

/* Writes the address as text ("127.0.0.1", "::ffff:10.0.0.1") into `out`. */
void netguard_format(const struct netguard_addr *a, char out[NETGUARD_ADDR_MAX]);

/* The range an address belongs to (embedded IPv4 addresses count as themselves). */
enum netguard_class netguard_classify(const struct netguard_addr *a);

/* A short name for the class, for messages: "loopback", "private", "link-local"... */
const char *netguard_class_name(enum netguard_class c);

/* Parses "10.0.0.0/8", "fd00::/8" or a bare address (a /32 or /128). Host bits must be zero.
 * Returns 0 or -1 with the reason in `e`. */
int netguard_parse_net(const char *text, struct netguard_net *out, struct err *e);

/* Builds a policy: `allow_private`, plus the comma-separated networks of `list` (NULL or "" for
 * none; spaces around items are ignored). Returns 0, or -1 (then `g` allows public addresses
 * only) with the bad item named in `e`. */
int netguard_init(struct netguard *g, bool allow_private, const char *list, struct err *e);

/* Whether the policy lets a request connect to `a`. An IPv4-mapped address also matches the
 * allow-list as its IPv4 address. */
bool netguard_allows(const struct netguard *g, const struct netguard_addr *a);

/* As netguard_allows(), with the refusal in `e`: "address 127.0.0.1 is not allowed (loopback)".
 * Returns 0 or -1. */
int netguard_check(const struct netguard *g, const struct netguard_addr *a, struct err *e);

/* Checks a URL before any request: it must be http:// or https:// (any case) with a host, and a
 * host written as an IP address must pass netguard_check() (names are checked when they resolve,
 * at connect time). Returns 0 or -1 with the reason in `e`. */
int netguard_check_url(const struct netguard *g, const char *url, struct err *e);

/* The part of netguard_check_url() that no policy changes: an http:// or https:// URL with a
 * host (pixq submit, which does not know the workers' policy). Returns 0 or -1 with the reason. */
int netguard_check_url_form(const char *url, struct err *e);

#endif
