/* peer.h -- which address a request comes from, for per-source limits.
 *
 * The peer of the TCP connection is the client, unless it is one of the configured trusted
 * proxies (trusted_proxies: a comma list of IP addresses). Then the client is the right-most
 * address of X-Forwarded-For that is not itself a trusted proxy (each proxy appends the address
 * it saw: everything left of the last untrusted hop may be forged by the client). A header that
 * is missing, empty or malformed (an entry that is not an IP address) from a trusted proxy: the
 * proxy's own address (so all such requests share one budget rather than escape it). An
 * X-Forwarded-For from a peer that is not a trusted proxy is ignored. */
#ifndef CG_PEER_H
#define CG_PEER_H

#include <stddef.h>

#define PEER_ADDR_MAX 46 /* INET6_ADDRSTRLEN */

/* 1 when addr (a textual IPv4 or IPv6 address) is one of the comma-separated addresses of list
 * (compared as addresses: "::1" and "0::1" are equal). */
int peer_listed(const char *addr, const char *list);

/* The client address of a request from peer (the TCP peer's address) carrying the X-Forwarded-For
 * value xff (NULL: no header) into out (size n, >= PEER_ADDR_MAX), normalized (inet_ntop).
 * Returns 1 when it was taken from X-Forwarded-For, 0 when it is the peer's, -1 when peer itself
 * is not an IP address (out is then peer, cut to n). */
int peer_client(const char *peer, const char *xff, const char *trusted, char *out, size_t n);

#endif
