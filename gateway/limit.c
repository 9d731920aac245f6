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
 * A connection holds its address entry through lws's opaque user data from lim_conn_open (the
 * first HTTP request or the upgrade) until lim_conn_close (LWS_CALLBACK_WSI_DESTROY). */
#include "gw.h"

#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define LIM_BUCKETS 4096
#define LIM_ADDRS_MAX 100000

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

/* The entry of addr, created (with a full bucket) when missing; NULL on allocation failure. */
static lim_addr *lim_get(const char *addr) {
    unsigned h = lim_hash(addr);
    for (lim_addr *a = lim_table[h]; a; a = a->next)
        if (!strcmp(a->addr, addr)) return a;
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

int lim_conn_open(struct lws *wsi, const char **why) {
    if (lws_get_opaque_user_data(wsi)) return 0;
    char addr[PEER_ADDR_MAX];
    lim_client_addr(wsi, addr);
    lim_addr *a = lim_get(addr);
    if (!a) {
        *why = "out of memory";
        return -1;
    }
    if (G.cfg.max_conns_per_ip > 0 && a->conns >= (unsigned)G.cfg.max_conns_per_ip) {
        LIM.conn_refused++;
        *why = "too_many_connections: too many open connections from your address "
               "(max_conns_per_ip)";
        return -1;
    }
    a->conns++;
    lws_set_opaque_user_data(wsi, a);
    return 0;
}

void lim_conn_close(struct lws *wsi) {
    lim_addr *a = lws_get_opaque_user_data(wsi);
    if (!a) return;
    lws_set_opaque_user_data(wsi, NULL);
    if (a->conns) a->conns--;
}

const char *lim_conn_addr(struct lws *wsi) {
    lim_addr *a = lws_get_opaque_user_data(wsi);
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
