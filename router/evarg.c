/* evarg.c -- the one argument of the event functions (redis/event.lua): a msgpack map of named
 * fields, built here and sent as FCALL <fn> 1 <tenant> <map>. Byte strings go as msgpack str:
 * the cmsgpack of Redis reads no bin types. */
#include "router.h"
#include "desk_schema.h"

#include <string.h>

void evarg_init(evarg *a, uint32_t n_fields) {
    msgpack_sbuffer_init(&a->sb);
    msgpack_packer_init(&a->pk, &a->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&a->pk, n_fields);
}

void evarg_key(evarg *a, const char *k) {
    msgpack_pack_str_with_body(&a->pk, k, strlen(k));
}

void evarg_bytes(evarg *a, const char *k, const void *v, size_t n) {
    msgpack_pack_str_with_body(&a->pk, k, strlen(k));
    msgpack_pack_str_with_body(&a->pk, v, n);
}

void evarg_str(evarg *a, const char *k, const char *v) {
    evarg_bytes(a, k, v, strlen(v));
}

void evarg_int(evarg *a, const char *k, long long v) {
    msgpack_pack_str_with_body(&a->pk, k, strlen(k));
    msgpack_pack_int64(&a->pk, v);
}

void evarg_call(job *j, const char *fn, job_reply_fn *reply, evarg *a) {
    const char *argv[5] = {"FCALL", fn, "1", CG_KEY_TENANT, a->sb.data};
    size_t lens[5] = {5, strlen(fn), 1, strlen(CG_KEY_TENANT), a->sb.size};
    job_cmdargv(j, reply, 5, argv, lens);
    msgpack_sbuffer_destroy(&a->sb);
}
