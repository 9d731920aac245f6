/* evres.c -- reading the answers of the event functions (redis/event.lua answer()): the RESP2
 * array {kind, name1, value1, name2, value2, ...}. A field is found by name; a missing field,
 * or a reply that is no such array, reads as NULL / "" / 0, never out of bounds. The values
 * stay the reply's (owned by hiredis, valid for the reply callback only). */
#include "router.h"

#include <string.h>

int evres_kind(const redisReply *rep, char *buf, size_t n) {
    if (n) buf[0] = '\0';
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) return -1;
    const redisReply *k = rep->element[0];
    if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS) return -1;
    store_str(k, buf, n);
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
    store_str(evres_get(rep, name), out, n);
}

long long evres_int(const redisReply *rep, const char *name) {
    return store_int(evres_get(rep, name));
}
