/* limit.c -- per-source limits of this gateway process (lim_).
 *
 * Per client address (peer.h: the TCP peer, or X-Forwarded-For behind trusted_proxies), in
 * process memory, never in Redis: an address's open connections (WebSocket and HTTP, counted
 * from the first request of a TCP connection to its end; max_conns_per_ip) and a token bucket of
 * new conversations (conv_per_ip per conv_window_s). They are per gateway: behind a load
 * balancer that spreads one address over N gateways the limits are N times these (hash by source
 * address to make them exact). Per-address state in Redis would cost a round trip per connection
 * and let an attacker with many addresses fill Redis; here an entry is ~100 bytes, at most
 * LIM_ADDRS_MAX of them, dropped once the address has no connection and a full bucket.
 *
 * A connection holds its address entry through lws's opaque user data until lim_conn_close
 * (LWS_CALLBACK_WSI_DESTROY). A connection whose TCP peer is the client (not one of
 * trusted_proxies) is counted from its accept (lim_conn_new), so connections whose request head
 * never ends count too; its first request is answered 429 when the address has more than
 * max_conns_per_ip open (itself included). Once an address has LIM_DROP_FACTOR times
 * max_conns_per_ip open, its further connections are closed at accept (lim_conn_accept), before
 * lws allocates anything for them: no answer then, but a refusal that costs nothing, where a 429
 * costs a header buffer and a parse (a flood of reconnects saturated the loop). A trusted proxy's
 * connection is counted at its first request, by X-Forwarded-For (lim_conn_open). The opaque
 * pointer's low bit says the connection passed the check of its first request (later requests
 * on it are not checked again). */
#include "gw.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define LIM_BUCKETS 4096
#define LIM_ADDRS_MAX 100000
#define LIM_DROP_FACTOR 2           /* times max_conns_per_ip: closed at accept */
#define LIM_ADMITTED ((uintptr_t)1) /* opaque pointer bit: the first request passed */

typedef struct lim_addr {
    char addr[PEER_ADDR_MAX];
    unsigned conns;
    double conv_tokens;
    uint64_t conv_at_ms;
    struct lim_addr *next;
} lim_addr;

static lim_addr *lim_table[LIM_BUCKETS];
static unsigned lim_n;
lim_counters LIM;

static unsigned lim_hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % LIM_BUCKETS;
}

static double lim_conv_burst(void) {
    return (double)G.cfg.conv_per_ip;
}

/* Refill a's conversation bucket up to now; 1 when it is full. */
static int lim_refill(lim_addr *a, uint64_t now_ms) {
    double burst = lim_conv_burst();
    if (now_ms > a->conv_at_ms && G.cfg.conv_window_s > 0) {
        double dt = (double)(now_ms - a->conv_at_ms) / 1000.0;
        a->conv_tokens += dt * burst / (double)G.cfg.conv_window_s;
    }
    a->conv_at_ms = now_ms;
    if (a->conv_tokens >= burst) a->conv_tokens = burst;
    return a->conv_tokens >= burst;
}

/* Drop entries without connections whose bucket is full (all of them when force). */
static void lim_sweep(int force) {
    uint64_t now = (uint64_t)cg_now_ms();
    for (unsigned i = 0; i < LIM_BUCKETS; i++) {
        for (lim_addr **pp = &lim_table[i]; *pp;) {
            lim_addr *a = *pp;
            if (!a->conns && (force || lim_refill(a, now))) {
                *pp = a->next;
                free(a);
                lim_n--;
            } else
                pp = &a->next;
        }
    }
}

/* The entry of addr, NULL when there is none. */
static lim_addr *lim_find(const char *addr) {
    for (lim_addr *a = lim_table[lim_hash(addr)]; a; a = a->next)
        if (!strcmp(a->addr, addr)) return a;
    return NULL;
}

/* The entry of addr, created (with a full bucket) when missing; NULL on allocation failure. */
static lim_addr *lim_get(const char *addr) {
    unsigned h = lim_hash(addr);
    lim_addr *found = lim_find(addr);
    if (found) return found;
    if (lim_n >= LIM_ADDRS_MAX) {
        lim_sweep(0);
        if (lim_n >= LIM_ADDRS_MAX) {
            log_warn("limit: %u client addresses tracked; forgetting the idle ones", lim_n);
            lim_sweep(1);
        }
    }
    lim_addr *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    cg_strlcpy(a->addr, addr, sizeof(a->addr));
    a->conv_tokens = lim_conv_burst();
    a->conv_at_ms = (uint64_t)cg_now_ms();
    a->next = lim_table[h];
    lim_table[h] = a;
    lim_n++;
    return a;
}

/* The client address of the request on wsi into out (PEER_ADDR_MAX). */
static void lim_client_addr(struct lws *wsi, char *out) {
    char peer[PEER_ADDR_MAX + 8] = "", xff[1024];
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    const char *x = NULL;
    int len = lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR);
    if (len > 0 && (size_t)len < sizeof(xff) &&
        lws_hdr_copy(wsi, xff, sizeof(xff), WSI_TOKEN_X_FORWARDED_FOR) >= 0)
        x = xff;
    peer_client(peer, x, G.cfg.trusted_proxies, out, PEER_ADDR_MAX);
}

/* The entry wsi counts against (NULL: none yet); *admitted gets the LIM_ADMITTED bit. */
static lim_addr *lim_of(struct lws *wsi, int *admitted) {
    uintptr_t v = (uintptr_t)lws_get_opaque_user_data(wsi);
    if (admitted) *admitted = (v & LIM_ADMITTED) != 0;
    return (lim_addr *)(v & ~LIM_ADMITTED);
}

static void lim_set(struct lws *wsi, lim_addr *a, int admitted) {
    uintptr_t v = (uintptr_t)a | (admitted ? LIM_ADMITTED : 0);
    lws_set_opaque_user_data(wsi, a ? (void *)v : NULL);
}

/* The address a TCP peer's connections count against into out (PEER_ADDR_MAX): 0, or -1 when
 * peer is a trusted proxy (its connections are counted per request, by X-Forwarded-For). */
static int lim_peer_addr(const char *peer, char *out) {
    if (G.cfg.trusted_proxies[0] && peer_listed(peer, G.cfg.trusted_proxies)) return -1;
    peer_client(peer, NULL, "", out, PEER_ADDR_MAX);
    return 0;
}

int lim_conn_accept(const void *sockaddr) {
    const struct sockaddr *sa = sockaddr;
    if (G.cfg.max_conns_per_ip <= 0 || !sa) return 0;
    char peer[PEER_ADDR_MAX] = "", addr[PEER_ADDR_MAX];
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sockaddr)->sin_addr, peer, sizeof(peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sockaddr)->sin6_addr, peer,
                  sizeof(peer));
    if (!peer[0] || lim_peer_addr(peer, addr) < 0) return 0;
    lim_addr *a = lim_find(addr);
    if (!a || a->conns < (unsigned)(LIM_DROP_FACTOR * G.cfg.max_conns_per_ip)) return 0;
    LIM.conn_refused++;
    return -1;
}

void lim_conn_new(struct lws *wsi) {
    if (lim_of(wsi, NULL)) return;
    char peer[PEER_ADDR_MAX + 8] = "", addr[PEER_ADDR_MAX];
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    if (!peer[0] || lim_peer_addr(peer, addr) < 0) return;
    lim_addr *a = lim_get(addr);
    if (!a) return; /* out of memory: counted at its first request instead */
    a->conns++;
    lim_set(wsi, a, 0);
}

int lim_conn_open(struct lws *wsi, const char **why) {
    int admitted;
    lim_addr *a = lim_of(wsi, &admitted);
    if (a && admitted) return 0;
    unsigned max = (unsigned)G.cfg.max_conns_per_ip;
    if (a) { /* counted since its accept: one of a->conns */
        if (max > 0 && a->conns > max) goto refuse;
        lim_set(wsi, a, 1);
        return 0;
    }
    char addr[PEER_ADDR_MAX];
    lim_client_addr(wsi, addr);
    a = lim_get(addr);
    if (!a) {
        *why = "out of memory";
        return -1;
    }
    if (max > 0 && a->conns >= max) goto refuse; /* not counted: it ends now */
    a->conns++;
    lim_set(wsi, a, 1);
    return 0;
refuse:
    LIM.conn_refused++;
    *why = "too_many_connections: too many open connections from your address "
           "(max_conns_per_ip)";
    return -1;
}

void lim_conn_close(struct lws *wsi) {
    lim_addr *a = lim_of(wsi, NULL);
    if (!a) return;
    lws_set_opaque_user_data(wsi, NULL);
    if (a->conns) a->conns--;
}

const char *lim_conn_addr(struct lws *wsi) {
    lim_addr *a = lim_of(wsi, NULL);
    return a ? a->addr : "";
}

int lim_conv_take(const char *addr) {
    if (G.cfg.conv_per_ip <= 0 || !addr[0]) return 1;
    lim_addr *a = lim_get(addr);
    if (!a) return 1;
    lim_refill(a, (uint64_t)cg_now_ms());
    if (a->conv_tokens < 1.0) return 0;
    a->conv_tokens -= 1.0;
    return 1;
}

void lim_conv_refund(const char *addr) {
    if (G.cfg.conv_per_ip <= 0 || !addr[0]) return;
    lim_addr *a = lim_get(addr);
    if (!a) return;
    a->conv_tokens += 1.0;
    if (a->conv_tokens > lim_conv_burst()) a->conv_tokens = lim_conv_burst();
}

void lim_conv_note(const char *addr) {
    if (G.cfg.conv_per_ip <= 0 || !addr[0]) return;
    lim_addr *a = lim_get(addr);
    if (!a) return;
    lim_refill(a, (uint64_t)cg_now_ms());
    a->conv_tokens = a->conv_tokens >= 1.0 ? a->conv_tokens - 1.0 : 0.0;
}

void lim_shutdown(void) {
    lim_sweep(1);
}
