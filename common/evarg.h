/* evarg.h -- the one argument of the chatgw library's map functions (cg_message, the event
 * functions of redis/event.lua): a msgpack map of named fields. evarg_init, then the fields
 * (evarg_bytes / evarg_str / evarg_int, or evarg_key and a value packed on pk), then
 * evarg_done, which fills in the map's size (counted as the fields are added: a map16 header)
 * and gives the bytes to send as FCALL <fn> 1 <tenant> <map>; evarg_free releases them (or
 * evarg_send does it all: finish, send on an rconn, release). Byte
 * strings go as msgpack str: the cmsgpack of Redis reads no bin types. */
#ifndef CG_EVARG_H
#define CG_EVARG_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "rconn.h"

typedef struct evarg {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n; /* fields so far */
} evarg;

void evarg_init(evarg *a);
/* Only the name of a field: its value follows, packed by the caller on a->pk. */
void evarg_key(evarg *a, const char *k);
void evarg_bytes(evarg *a, const char *k, const void *v, size_t n);
void evarg_str(evarg *a, const char *k, const char *v);
void evarg_int(evarg *a, const char *k, long long v);
/* The finished map: its bytes (owned by a) and *len; NULL when building it ran out of memory. */
const char *evarg_done(evarg *a, size_t *len);
void evarg_free(evarg *a);
/* The command of the finished map: argv/lens (5 each) become FCALL <fn> 1 <key> <map>, the
 * map's bytes still a's (valid until evarg_free). 0, or -1 when building it ran out of memory. */
int evarg_fcall(evarg *a, const char *fn, const char *key, const char *argv[5], size_t lens[5]);
/* Finishes the map, sends FCALL <fn> 1 <key> <map> on rc (cb/priv as rconn_cmdargv takes them:
 * cb runs with the reply, never when this fails) and releases a's bytes either way. 0 when
 * sent; -1 when not (out of memory, connection down). */
int evarg_send(evarg *a, rconn *rc, const char *fn, const char *key, rconn_reply_fn *cb,
               void *priv);

#endif
