/* util.c -- see util.h. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>

/* Compares every byte position up to max(alen, blen); positions past the end of the shorter
 * string compare against 0 and the length difference is folded into the result, so the time
 * depends only on the two lengths. */
int cg_ct_equal(const void *a, size_t alen, const void *b, size_t blen) {
    const volatile unsigned char *pa = a, *pb = b;
    size_t n = alen > blen ? alen : blen;
    size_t lendiff = alen ^ blen;
    unsigned char acc = 0;

    for (size_t i = 0; i < sizeof(lendiff); i++)
        acc |= (unsigned char)(lendiff >> (8 * i));
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < alen ? pa[i] : 0;
        unsigned char cb = i < blen ? pb[i] : 0;
        acc |= ca ^ cb;
    }
    return acc == 0;
}

/* The injected clock of the tests: the whole number of ms the file named by CHATGW_TEST_CLOCK
 * holds, read at every call; 0 when the variable is unset or the file unreadable. */
static int64_t cg_test_clock(void) {
    static int init;
    static const char *path;
    if (!init) {
        path = getenv("CHATGW_TEST_CLOCK");
        init = 1;
    }
    if (!path || !path[0]) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long long v = 0;
    int n = fscanf(f, "%lld", &v);
    fclose(f);
    return n == 1 && v > 0 ? (int64_t)v : 0;
}

int64_t cg_now_ms(void) {
    int64_t t = cg_test_clock();
    if (t) return t;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cg_now_s(void) {
    return cg_now_ms() / 1000;
}

/* Random bytes come from OpenSSL's CSPRNG a pool at a time: RAND_bytes costs a getpid() per
 * call (OpenSSL's fork check), and ids are made for every message. The pool is dropped in a
 * forked child (rand_pool_forked), so parent and child never hand out the same bytes. One
 * thread uses it (the process's loop). */
#define RAND_POOL 1024
static unsigned char rand_pool[RAND_POOL];
static size_t rand_pool_pos = RAND_POOL;
static int rand_pool_hooked;

static void rand_pool_forked(void) {
    OPENSSL_cleanse(rand_pool, sizeof(rand_pool));
    rand_pool_pos = RAND_POOL;
}

/* n (<= RAND_POOL) random bytes into buf: 0, or -1 when the CSPRNG fails. */
static int rand_take(unsigned char *buf, size_t n) {
    if (!rand_pool_hooked) {
        pthread_atfork(NULL, NULL, rand_pool_forked);
        rand_pool_hooked = 1;
    }
    if (RAND_POOL - rand_pool_pos < n) {
        if (RAND_bytes(rand_pool, RAND_POOL) != 1) return -1;
        rand_pool_pos = 0;
    }
    memcpy(buf, rand_pool + rand_pool_pos, n);
    OPENSSL_cleanse(rand_pool + rand_pool_pos, n); /* handed out once */
    rand_pool_pos += n;
    return 0;
}

int cg_rand_hex(char *out, size_t nbytes) {
    static const char hex[] = "0123456789abcdef";
    unsigned char buf[64];
    size_t done = 0;

    while (done < nbytes) {
        size_t chunk = nbytes - done < sizeof(buf) ? nbytes - done : sizeof(buf);
        if (rand_take(buf, chunk) != 0) {
            out[0] = '\0';
            return -1;
        }
        for (size_t i = 0; i < chunk; i++) {
            out[2 * (done + i)] = hex[buf[i] >> 4];
            out[2 * (done + i) + 1] = hex[buf[i] & 0x0f];
        }
        done += chunk;
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int cg_id_new(char out[33]) {
    return cg_rand_hex(out, 16);
}

size_t cg_strlcpy(char *dst, const char *src, size_t n) {
    size_t len = strlen(src);
    if (n == 0) return len;
    size_t c = len < n - 1 ? len : n - 1;
    memcpy(dst, src, c);
    dst[c] = '\0';
    return len;
}

/* Accepts an optional sign and at least one digit, nothing else (no spaces, no hex). */
int cg_parse_ll(const char *s, long long min, long long max, long long *out) {
    if (!s) return -1;
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (*p == '\0') return -1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return -1;

    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || !end || *end != '\0') return -1;
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* "host:port" or "[v6addr]:port"; the host is copied without brackets and must be non-empty;
 * an unbracketed host may not contain ':'. */
int cg_parse_hostport(const char *s, char *host, size_t hn, int *port) {
    if (!s || !host || hn == 0) return -1;
    const char *hs, *he, *colon;

    if (s[0] == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (!he || he[1] != ':') return -1;
        colon = he + 1;
    } else {
        hs = s;
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':')) return -1;
        he = colon;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= hn) return -1;

    long long p;
    if (colon[1] == '+' || colon[1] == '-') return -1;
    if (cg_parse_ll(colon + 1, 1, 65535, &p) != 0) return -1;

    memcpy(host, hs, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int cg_ident_ok(const char *s, size_t max, const char *extra, int lower) {
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 (!lower && c >= 'A' && c <= 'Z') || (c && strchr(extra, c));
        if (!ok) return 0;
    }
    return 1;
}

/* The code point of the UTF-8 sequence at p (valid UTF-8 assumed, NUL-terminated); *len its
 * length in bytes. */
static uint32_t utf8_next(const unsigned char *p, size_t *len) {
    if (p[0] < 0x80) {
        *len = 1;
        return p[0];
    }
    if ((p[0] & 0xe0) == 0xc0 && p[1]) {
        *len = 2;
        return ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
    }
    if ((p[0] & 0xf0) == 0xe0 && p[1] && p[2]) {
        *len = 3;
        return ((uint32_t)(p[0] & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
    }
    *len = 1;
    while (p[*len] && (p[*len] & 0xc0) == 0x80 && *len < 4)
        (*len)++;
    return 0x10000; /* beyond the BMP: nothing refused there */
}

/* What c is when a display name may not hold it ("control character", "bidirectional
 * control"), NULL when it may. */
static const char *name_refused(uint32_t c) {
    if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029)
        return "control character";
    if (c == 0x061c || c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
        (c >= 0x2066 && c <= 0x2069))
        return "bidirectional control";
    return NULL;
}

int cg_name_check(const char *s, char *why, size_t n) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t len;
        uint32_t c = utf8_next(p, &len);
        p += len;
        const char *kind = name_refused(c);
        if (!kind) continue;
        snprintf(why, n, "%s U+%04X", kind, (unsigned)c);
        return -1;
    }
    return 0;
}

size_t cg_name_clean(char *s) {
    size_t removed = 0;
    unsigned char *out = (unsigned char *)s;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t len;
        uint32_t c = utf8_next(p, &len);
        if (name_refused(c))
            removed++;
        else
            memmove(out, p, len), out += len;
        p += len;
    }
    *out = '\0';
    return removed;
}
