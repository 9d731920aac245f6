/* peer.c -- the client address of a request: the TCP peer, or X-Forwarded-For behind trusted
 * proxies (peer.h). Addresses are parsed and normalized by inet_pton/inet_ntop. */
#include "peer.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* Normalize the address s (length len, surrounding blanks allowed) into out (PEER_ADDR_MAX):
 * 0, or -1 when it is not an IPv4 or IPv6 address. */
static int peer_norm(const char *s, size_t len, char *out) {
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    char tmp[PEER_ADDR_MAX];
    if (!len || len >= sizeof(tmp)) return -1;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    unsigned char bin[16];
    if (inet_pton(AF_INET, tmp, bin) == 1)
        return inet_ntop(AF_INET, bin, out, PEER_ADDR_MAX) ? 0 : -1;
    if (inet_pton(AF_INET6, tmp, bin) == 1)
        return inet_ntop(AF_INET6, bin, out, PEER_ADDR_MAX) ? 0 : -1;
    return -1;
}

int peer_listed(const char *addr, const char *list) {
    char a[PEER_ADDR_MAX], e[PEER_ADDR_MAX];
    if (!list || !list[0] || peer_norm(addr, strlen(addr), a) < 0) return 0;
    for (const char *p = list;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (peer_norm(p, len, e) == 0 && !strcmp(a, e)) return 1;
        if (!c) return 0;
        p = c + 1;
    }
}

int peer_client(const char *peer, const char *xff, const char *trusted, char *out, size_t n) {
    char p[PEER_ADDR_MAX];
    if (peer_norm(peer, strlen(peer), p) < 0) {
        cg_strlcpy(out, peer, n);
        return -1;
    }
    cg_strlcpy(out, p, n);
    if (!xff || !peer_listed(p, trusted)) return 0;
    /* Right to left: skip the trusted hops; the first other one is the client. */
    for (size_t end = strlen(xff); end > 0;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        char a[PEER_ADDR_MAX];
        if (peer_norm(xff + start, end - start, a) < 0) return 0; /* malformed: the proxy's */
        if (!peer_listed(a, trusted)) {
            cg_strlcpy(out, a, n);
            return 1;
        }
        end = start ? start - 1 : 0;
    }
    return 0;
}
