/* evres.c -- reading the named answers of the library's functions (evres.h). Self-contained
 * (hiredis and util only), so tests/unit/test_evres.c runs it on replies hiredis's reader
 * parsed. */
#include "evres.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

void evres_text(const redisReply *v, char *out, size_t n) {
    if (n == 0) return;
    out[0] = '\0';
    if (!v) return;
    if (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS) {
        size_t len = v->len < n - 1 ? v->len : n - 1;
        memcpy(out, v->str, len);
        out[len] = '\0';
    } else if (v->type == REDIS_REPLY_INTEGER) {
        snprintf(out, n, "%lld", v->integer);
    }
}

int evres_kind(const redisReply *rep, char *buf, size_t n) {
    if (n) buf[0] = '\0';
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) return -1;
    const redisReply *k = rep->element[0];
    if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS) return -1;
    evres_text(k, buf, n);
    return 0;
}

const redisReply *evres_get(const redisReply *rep, const char *name) {
    if (!rep || rep->type != REDIS_REPLY_ARRAY || !name) return NULL;
    size_t len = strlen(name);
    for (size_t i = 1; i + 1 < rep->elements; i += 2) {
        const redisReply *k = rep->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == len && memcmp(k->str, name, len) == 0)
            return rep->element[i + 1];
    }
    return NULL;
}

void evres_str(const redisReply *rep, const char *name, char *out, size_t n) {
    evres_text(evres_get(rep, name), out, n);
}

long long evres_number(const redisReply *v) {
    if (!v) return 0;
    if (v->type == REDIS_REPLY_INTEGER) return v->integer;
    if (v->type != REDIS_REPLY_STRING) return 0;
    char buf[32];
    long long out = 0;
    evres_text(v, buf, sizeof(buf));
    if (cg_parse_ll(buf, -(1LL << 62), 1LL << 62, &out) != 0) return 0;
    return out;
}

long long evres_int(const redisReply *rep, const char *name) {
    return evres_number(evres_get(rep, name));
}
