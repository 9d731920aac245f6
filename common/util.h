/* util.h -- small helpers with no dependencies on either application. */
#ifndef CG_UTIL_H
#define CG_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* 1 when the two byte strings are equal. Runs in time that depends only on the lengths, never on
 * where they differ: use it for every secret. */
int cg_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Wall clock, unix milliseconds / seconds. */
int64_t cg_now_ms(void);
int64_t cg_now_s(void);

/* Fill out with 2*nbytes lowercase hex digits of cryptographic randomness plus NUL
 * (out must hold 2*nbytes+1). -1 if the system RNG fails. */
int cg_rand_hex(char *out, size_t nbytes);

/* A new unique id: 32 hex characters (128 random bits) in out[33]. -1 if the RNG fails. */
int cg_id_new(char out[33]);

/* strlcpy: copy at most n-1 bytes and NUL-terminate; returns strlen(src) (>= n means truncated). */
size_t cg_strlcpy(char *dst, const char *src, size_t n);

/* Parse a whole decimal string into *out within [min,max]; -1 on junk or range. */
int cg_parse_ll(const char *s, long long min, long long max, long long *out);

/* Parse "host:port" into host (size hn) and port; -1 when malformed. */
int cg_parse_hostport(const char *s, char *host, size_t hn, int *port);

/* 1 when s is 1..max bytes, each a letter, a digit or one of extra (e.g. "_.@-"); with lower 1,
 * letters must be lower case. For identifiers that end up in Redis keys and logs. */
int cg_ident_ok(const char *s, size_t max, const char *extra, int lower);

/* A display name (valid UTF-8, as decoded by jansson or msgpack validation) that shows what it
 * says: 0, or -1 with why (size n, >= 32) naming the first control character found ("control
 * character U+0007", "bidirectional control U+202E"). Refused: C0 controls (tab and newline too)
 * and DEL, C1 controls, U+2028/U+2029, and the bidi marks and overrides U+061C, U+200E, U+200F,
 * U+202A-U+202E, U+2066-U+2069. */
int cg_name_check(const char *s, char *why, size_t n);

/* Remove, in place, every character cg_name_check refuses; returns how many were removed. */
size_t cg_name_clean(char *s);

#endif
