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

#endif
