/* evarg.c -- the one argument of the event functions (redis/event.lua): a msgpack map of named
 * fields, built here and sent as FCALL <fn> 1 <tenant> <map>. Byte strings go as msgpack str:
 * the cmsgpack of Redis reads no bin types. */
#include "router.h"
#include "desk_schema.h"

#include <string.h>

void evarg_init(evarg *a) {
    static const char map16[3] = {(char)0xde, 0, 0}; /* the count is filled in by evarg_call */
    msgpack_sbuffer_init(&a->sb);
    msgpack_packer_init(&a->pk, &a->sb, msgpack_sbuffer_write);
    msgpack_sbuffer_write(&a->sb, map16, sizeof(map16));
    a->n = 0;
}

void evarg_key(evarg *a, const char *k) {
    msgpack_pack_str_with_body(&a->pk, k, strlen(k));
    a->n++;
}

void evarg_bytes(evarg *a, const char *k, const void *v, size_t n) {
    evarg_key(a, k);
    msgpack_pack_str_with_body(&a->pk, v, n);
}

void evarg_str(evarg *a, const char *k, const char *v) {
    evarg_bytes(a, k, v, strlen(v));
}

void evarg_int(evarg *a, const char *k, long long v) {
    evarg_key(a, k);
    msgpack_pack_int64(&a->pk, v);
}

void evarg_call(job *j, const char *fn, job_reply_fn *reply, evarg *a) {
    if (a->sb.size >= 3) { /* the map16 header's count, big-endian */
        a->sb.data[1] = (char)(a->n >> 8);
        a->sb.data[2] = (char)(a->n & 0xff);
    }
    const char *argv[5] = {"FCALL", fn, "1", CG_KEY_TENANT, a->sb.data};
    size_t lens[5] = {5, strlen(fn), 1, strlen(CG_KEY_TENANT), a->sb.size};
    job_cmdargv(j, reply, 5, argv, lens);
    msgpack_sbuffer_destroy(&a->sb);
}
