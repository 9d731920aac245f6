/* rlib.c -- see rlib.h. */
#include "rlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rlib_transient(const redisReply *r) {
    static const char *const words[] = {"LOADING",  "BUSY",     "MASTERDOWN", "TRYAGAIN",
                                        "READONLY", "NOSCRIPT", "CLUSTERDOWN"};
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str) return 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);
        if (strncmp(r->str, words[i], n) == 0 && (r->str[n] == ' ' || !r->str[n])) return 1;
    }
    return 0;
}

int rlib_missing(const redisReply *r) {
    return r && r->type == REDIS_REPLY_ERROR && r->str &&
           strncmp(r->str, "ERR Function not found", 22) == 0;
}

long long rlib_version(const unsigned char *code, size_t len) {
    static const char key[] = "local VERSION = ";
    const size_t klen = sizeof(key) - 1;
    for (size_t i = 0; i + klen < len; i++) {
        if ((i > 0 && code[i - 1] != '\n') || memcmp(code + i, key, klen) != 0) continue;
        long long v = 0;
        size_t k = i + klen, digits = 0;
        for (; k < len && code[k] >= '0' && code[k] <= '9' && digits < 15; k++, digits++)
            v = v * 10 + (code[k] - '0');
        return digits ? v : -1;
    }
    return -1;
}

rlib_verdict rlib_check(const redisReply *r, long long mine, long long *theirs) {
    *theirs = -1;
    if (!r || rlib_transient(r)) return RLIB_RETRY;
    if (rlib_missing(r)) {
        *theirs = 0;
        return RLIB_LOAD;
    }
    if (r->type != REDIS_REPLY_INTEGER) return RLIB_RETRY; /* an unexpected error: ask again */
    *theirs = r->integer;
    if (r->integer < mine) return RLIB_LOAD;
    return r->integer == mine ? RLIB_KEEP : RLIB_NEWER;
}

int rlib_load_send(rconn *rc, rconn_reply_fn *cb, void *priv, const unsigned char *code,
                   size_t len) {
    static const char *const legacy[] = {"chatgw_conv", "chatgw_route"};
    /* one event-loop turn queues all of it, so no other command of this connection falls inside */
    if (rconn_cmd(rc, NULL, NULL, "MULTI") != 0) return -1;
    int rv = 0;
    for (size_t i = 0; rv == 0 && i < sizeof(legacy) / sizeof(legacy[0]); i++)
        rv = rconn_cmd(rc, NULL, NULL, "FUNCTION DELETE %s", legacy[i]);
    const char *argv[4] = {"FUNCTION", "LOAD", "REPLACE", (const char *)code};
    size_t lens[4] = {8, 4, 7, len};
    if (rv == 0) rv = rconn_cmdargv(rc, NULL, NULL, 4, argv, lens);
    if (rv == 0) rv = rconn_cmd(rc, cb, priv, "EXEC");
    if (rv != 0)
        rconn_cmd(rc, NULL, NULL, "DISCARD"); /* out of memory half-way: no transaction left open */
    return rv;
}

const redisReply *rlib_load_result(const redisReply *exec) {
    if (!exec || exec->type != REDIS_REPLY_ARRAY) return exec;
    if (exec->elements == 0) return NULL; /* cannot happen: EXEC of our four commands */
    return exec->element[exec->elements - 1];
}

/* The value of name in the flat [name, value, ...] answer of CONFIG GET, or NULL. */
static const char *rlib_config_value(const redisReply *r, const char *name) {
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        if (strcmp(k->str, name) == 0) return v->str;
    }
    return NULL;
}

rlib_durability rlib_durability_of(const redisReply *r, char *out, size_t n) {
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(out, n, "persistence unknown (CONFIG GET: %s): make sure appendonly is yes",
                 r && r->type == REDIS_REPLY_ERROR && r->str ? r->str : "no answer");
        return RLIB_UNKNOWN;
    }
    const char *aof = rlib_config_value(r, "appendonly");
    const char *fsync = rlib_config_value(r, "appendfsync");
    if (!aof || !fsync) {
        snprintf(out, n, "persistence unknown (CONFIG GET gave no appendonly/appendfsync)");
        return RLIB_UNKNOWN;
    }
    if (strcmp(aof, "yes") != 0) {
        snprintf(out, n,
                 "appendonly is %s: a restart of Redis loses every acknowledged message since its "
                 "last snapshot; set appendonly yes (docs/deployment.md)",
                 aof);
        return RLIB_WEAK;
    }
    if (strcmp(fsync, "always") != 0 && strcmp(fsync, "everysec") != 0) {
        snprintf(out, n,
                 "appendfsync is %s: a crash of the machine loses what the kernel has not written "
                 "yet (up to ~30 s of acknowledged messages); set everysec or always "
                 "(docs/deployment.md)",
                 fsync);
        return RLIB_WEAK;
    }
    snprintf(out, n, "appendonly yes, appendfsync %s%s", fsync,
             strcmp(fsync, "everysec") == 0
                 ? ": a crash of Redis loses nothing acknowledged; one of the machine up to the "
                   "last second (sequence numbers skip over it)"
                 : ": nothing acknowledged is lost");
    return RLIB_DURABLE;
}

unsigned rlib_backoff(unsigned prev) {
    if (prev < RLIB_BACKOFF_MIN_MS) return RLIB_BACKOFF_MIN_MS;
    return prev >= RLIB_BACKOFF_MAX_MS / 2 ? RLIB_BACKOFF_MAX_MS : prev * 2;
}
