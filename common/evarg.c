/* evarg.c -- the one argument of the library's map functions (evarg.h). */
#include "evarg.h"

#include <stdlib.h>
#include <string.h>

void evarg_init(evarg *a) {
    static const char map16[3] = {(char)0xde, 0, 0}; /* the count is filled in by evarg_done */
    msgpack_sbuffer_init(&a->sb);
    /* 1 KiB first, not msgpack-c's 8 KiB: most maps are a message and a few fields */
    a->sb.data = malloc(1024);
    a->sb.alloc = a->sb.data ? 1024 : 0;
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

const char *evarg_done(evarg *a, size_t *len) {
    if (a->sb.size < 3 || !a->sb.data) return NULL;
    a->sb.data[1] = (char)(a->n >> 8); /* the map16 header's count, big-endian */
    a->sb.data[2] = (char)(a->n & 0xff);
    *len = a->sb.size;
    return a->sb.data;
}

void evarg_free(evarg *a) {
    msgpack_sbuffer_destroy(&a->sb);
}

int evarg_fcall(evarg *a, const char *fn, const char *key, const char *argv[5], size_t lens[5]) {
    size_t n = 0;
    const char *map = evarg_done(a, &n);
    if (!map) return -1;
    argv[0] = "FCALL", lens[0] = 5;
    argv[1] = fn, lens[1] = strlen(fn);
    argv[2] = "1", lens[2] = 1;
    argv[3] = key, lens[3] = strlen(key);
    argv[4] = map, lens[4] = n;
    return 0;
}

int evarg_send(evarg *a, rconn *rc, const char *fn, const char *key, rconn_reply_fn *cb,
               void *priv) {
    const char *argv[5];
    size_t lens[5];
    int sent =
        evarg_fcall(a, fn, key, argv, lens) == 0 && rconn_cmdargv(rc, cb, priv, 5, argv, lens) == 0;
    evarg_free(a);
    return sent ? 0 : -1;
}
