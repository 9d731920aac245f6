/* rlib.c -- see rlib.h. */
#include "rlib.h"

#include <stdlib.h>
#include <string.h>

int rlib_transient(const redisReply *r) {
    static const char *const words[] = {"LOADING",  "BUSY",     "MASTERDOWN", "TRYAGAIN",
                                        "READONLY", "NOSCRIPT", "CLUSTERDOWN"};
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str) return 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);
        if (strncmp(r->str, words[i], n) == 0 && (r->str[n] == ' ' || !r->str[n])) return 1;
    }
    return 0;
}

int rlib_missing(const redisReply *r) {
    return r && r->type == REDIS_REPLY_ERROR && r->str &&
           strncmp(r->str, "ERR Function not found", 22) == 0;
}

long long rlib_version(const unsigned char *code, size_t len) {
    static const char key[] = "local VERSION = ";
    const size_t klen = sizeof(key) - 1;
    for (size_t i = 0; i + klen < len; i++) {
        if ((i > 0 && code[i - 1] != '\n') || memcmp(code + i, key, klen) != 0) continue;
        long long v = 0;
        size_t k = i + klen, digits = 0;
        for (; k < len && code[k] >= '0' && code[k] <= '9' && digits < 15; k++, digits++)
            v = v * 10 + (code[k] - '0');
        return digits ? v : -1;
    }
    return -1;
}

rlib_verdict rlib_check(const redisReply *r, long long mine, long long *theirs) {
    *theirs = -1;
    if (!r || rlib_transient(r)) return RLIB_RETRY;
    if (rlib_missing(r)) {
        *theirs = 0;
        return RLIB_LOAD;
    }
    if (r->type != REDIS_REPLY_INTEGER) return RLIB_RETRY; /* an unexpected error: ask again */
    *theirs = r->integer;
    if (r->integer < mine) return RLIB_LOAD;
    return r->integer == mine ? RLIB_KEEP : RLIB_NEWER;
}

unsigned rlib_backoff(unsigned prev) {
    if (prev < RLIB_BACKOFF_MIN_MS) return RLIB_BACKOFF_MIN_MS;
    return prev >= RLIB_BACKOFF_MAX_MS / 2 ? RLIB_BACKOFF_MAX_MS : prev * 2;
}
