/* rlib.h -- what every process needs to bring the Redis function library chatgw in safely: which
 * error replies are worth retrying, the version the library's source declares, the verdict on the
 * version Redis holds, the load itself and the start-up back-off (docs/architecture.md, "Loading
 * and health").
 *
 * The library declares `local VERSION = <n>` near its top and registers `chatgw_version` (flags
 * no-writes) returning it. A process asks `FCALL_RO chatgw_version 1 <tenant>` and loads its own
 * copy (rlib_load_send) only when the function is missing or answers a smaller number. */
#ifndef CG_RLIB_H
#define CG_RLIB_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "rconn.h"

#define RLIB_NAME "chatgw"
#define RLIB_VERSION_FN "chatgw_version"

#define RLIB_BACKOFF_MIN_MS 100u
#define RLIB_BACKOFF_MAX_MS 1000u

typedef enum rlib_verdict {
    RLIB_KEEP,  /* Redis holds our version */
    RLIB_NEWER, /* Redis holds a newer version: keep it, never downgrade */
    RLIB_LOAD,  /* missing or older: load ours */
    RLIB_RETRY, /* no answer now (connection lost, LOADING, BUSY, ...): ask again later */
} rlib_verdict;

/* 1 for an error reply that a later attempt may not get: LOADING, BUSY, MASTERDOWN, TRYAGAIN,
 * READONLY, CLUSTERDOWN, NOSCRIPT. 0 for anything else (also for NULL and non-errors). */
int rlib_transient(const redisReply *r);

/* 1 when r says the function called does not exist (e.g. after FUNCTION FLUSH). */
int rlib_missing(const redisReply *r);

/* The n of the first line `local VERSION = n` of the len bytes of code (not NUL-terminated);
 * -1 when there is none. */
long long rlib_version(const unsigned char *code, size_t len);

/* The verdict on the reply r to `FCALL_RO <library>_version 0` for a process whose copy has
 * version mine; *theirs gets the version Redis holds (0 when missing, -1 when unknown). */
rlib_verdict rlib_check(const redisReply *r, long long mine, long long *theirs);

/* Load the len bytes of code as one transaction: MULTI, FUNCTION DELETE of each library of the
 * releases before the one-library core (chatgw_conv, chatgw_route: their function names are the
 * library's own), FUNCTION LOAD REPLACE code, EXEC. cb gets EXEC's reply (NULL when the connection
 * was lost); rlib_load_result() picks the load's answer from it. 0 sent; -1 not (connection down).
 */
int rlib_load_send(rconn *rc, rconn_reply_fn *cb, void *priv, const unsigned char *code,
                   size_t len);

/* The answer of FUNCTION LOAD inside exec, the reply to rlib_load_send's EXEC: the library's name,
 * or an error reply (also exec itself when the transaction failed as a whole, e.g. EXECABORT).
 * NULL for NULL. Borrowed from exec. */
const redisReply *rlib_load_result(const redisReply *exec);

typedef enum rlib_durability {
    RLIB_DURABLE, /* appendonly yes, appendfsync always or everysec */
    RLIB_WEAK,    /* acknowledged messages can be lost: no AOF, or appendfsync no */
    RLIB_UNKNOWN, /* CONFIG GET refused (a managed Redis) or an unexpected answer */
} rlib_durability;

/* What the reply r to `CONFIG GET appendonly appendfsync` means for acknowledged messages; out
 * (n bytes) gets one sentence for the log that names the settings and what they lose. */
rlib_durability rlib_durability_of(const redisReply *r, char *out, size_t n);

/* The next start-up retry delay after prev (0 for the first): RLIB_BACKOFF_MIN_MS doubling up to
 * RLIB_BACKOFF_MAX_MS. */
unsigned rlib_backoff(unsigned prev);

#endif
