/* guard.c -- checks of a request's Host and Origin headers, before anything else looks at it.
 *
 * Host (every HTTP request and every WebSocket upgrade): required, at most GUARD_HOST_MAX bytes,
 * the syntax of RFC 9110's uri-host [":" port] restricted to what real hosts use (a name of
 * letters, digits, '-', '.', '_'; an IPv4 address; an IPv6 literal in brackets). When
 * allowed_hosts is set, the Host must also be one of its entries (case-insensitive; an entry
 * without a port matches any port): that stops DNS-rebinding pages, whose Origin and Host both
 * name the attacker's domain and so look "same-origin". Empty allowed_hosts: any well-formed Host.
 *
 * Origin (WebSocket upgrades): absent (not a browser), the gateway's own, or in allowed_origins
 * (gw_origin_allowed); an Origin longer than GUARD_ORIGIN_MAX bytes is refused, never treated
 * as absent. */
#include "gw.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define GUARD_HOST_MAX 255
#define GUARD_ORIGIN_MAX 255

/* 1 when h (length n, no port) is a name, an IPv4 address or a bracketed IPv6 literal. */
static int guard_host_name_ok(const char *h, size_t n) {
    if (!n) return 0;
    if (h[0] == '[') {
        if (n < 3 || h[n - 1] != ']') return 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.') return 0;
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.' && h[i] != '_') return 0;
    return 1;
}

/* Split host[:port]: *name_len gets the length of the host part; 0, or -1 when malformed. */
static int guard_host_split(const char *host, size_t n, size_t *name_len) {
    const char *colon = NULL;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', n);
        if (!close) return -1;
        if ((size_t)(close + 1 - host) < n) {
            if (close[1] != ':') return -1;
            colon = close + 1;
        }
    } else
        colon = memchr(host, ':', n);
    *name_len = colon ? (size_t)(colon - host) : n;
    if (!guard_host_name_ok(host, *name_len)) return -1;
    if (!colon) return 0;
    size_t plen = n - *name_len - 1;
    if (plen < 1 || plen > 5) return -1;
    for (size_t i = 0; i < plen; i++)
        if (!isdigit((unsigned char)colon[1 + i])) return -1;
    return 0;
}

/* 1 when the entry p (length len) of allowed_hosts names a port. */
static int guard_entry_has_port(const char *p, size_t len) {
    if (p[0] == '[') {
        const char *close = memchr(p, ']', len);
        return close && close + 1 < p + len && close[1] == ':';
    }
    return memchr(p, ':', len) != NULL;
}

/* 1 when host (length n, host part name_len) matches one entry of the comma list allowed. */
static int guard_host_listed(const char *host, size_t n, size_t name_len, const char *allowed) {
    for (const char *p = allowed; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        size_t cmp = len && guard_entry_has_port(p, len) ? n : name_len;
        if (len && len == cmp && !strncasecmp(p, host, len)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int guard_host_check(const char *host, const char *allowed_hosts, const char **why) {
    size_t n = host ? strlen(host) : 0, name_len;
    if (!n) {
        *why = "missing Host header";
        return -1;
    }
    if (n > GUARD_HOST_MAX || guard_host_split(host, n, &name_len) < 0) {
        *why = "malformed Host header";
        return -1;
    }
    if (allowed_hosts && allowed_hosts[0] && !guard_host_listed(host, n, name_len, allowed_hosts)) {
        *why = "Host not allowed (allowed_hosts)";
        return -1;
    }
    return 0;
}

/* The Host header of wsi into buf (size n): "" when absent, -1 when longer than fits. */
static int guard_copy(struct lws *wsi, enum lws_token_indexes tok, char *buf, size_t n) {
    buf[0] = '\0';
    int len = lws_hdr_total_length(wsi, tok);
    if (len <= 0) return 0;
    if ((size_t)len >= n) return -1;
    return lws_hdr_copy(wsi, buf, (int)n, tok) < 0 ? -1 : 0;
}

int guard_http(struct lws *wsi, const char **why) {
    char host[GUARD_HOST_MAX + 2];
    if (guard_copy(wsi, WSI_TOKEN_HOST, host, sizeof(host)) < 0) {
        *why = "malformed Host header";
        return -1;
    }
    return guard_host_check(host, G.cfg.allowed_hosts, why);
}

int guard_ws(struct lws *wsi, const char **why) {
    if (guard_http(wsi, why) < 0) return -1;
    char host[GUARD_HOST_MAX + 2], origin[GUARD_ORIGIN_MAX + 2];
    guard_copy(wsi, WSI_TOKEN_HOST, host, sizeof(host));
    if (guard_copy(wsi, WSI_TOKEN_ORIGIN, origin, sizeof(origin)) < 0) {
        *why = "Origin header too long";
        return -1;
    }
    int have_origin = lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0;
    if (!gw_origin_allowed(have_origin ? origin : NULL, host)) {
        *why = "Origin not allowed (allowed_origins)";
        return -1;
    }
    return 0;
}
