/* evres.h -- reading the named answers of the chatgw library's functions (redis/lib.lua
 * answer()): the RESP2 array {kind, name1, value1, name2, value2, ...}. A field is found by name;
 * a missing field, or a reply that is no such array, reads as NULL / "" / 0, never out of bounds.
 * The values stay the reply's (owned by hiredis, valid for the reply callback only). Used by the
 * gateway (cg_message) and the router (the event functions). */
#ifndef CG_EVRES_H
#define CG_EVRES_H

#include <hiredis/hiredis.h>
#include <stddef.h>

/* The kind into buf (n bytes), 0, or -1 (buf "") when rep is no answer. A nested value (a ROW, a
 * list of ROWs, an answer) is an array. */
int evres_kind(const redisReply *rep, char *buf, size_t n);
/* Any reply value: a string/status reply (or an integer as text) copied into out (n bytes), ""
 * for anything else; and as a number (an integer, or a string of digits), 0 for anything else. */
void evres_text(const redisReply *v, char *out, size_t n);
long long evres_number(const redisReply *v);
/* The value element of field name, or NULL. */
const redisReply *evres_get(const redisReply *rep, const char *name);
/* Field name as text into out (n bytes; "" when missing), or as a number (0 when missing). */
void evres_str(const redisReply *rep, const char *name, char *out, size_t n);
long long evres_int(const redisReply *rep, const char *name);

#endif
