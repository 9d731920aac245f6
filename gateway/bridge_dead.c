/* bridge_dead.c -- see bridge_dead.h. */
#include "bridge_dead.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/evarg.h"
#include "../common/log.h"
#include "../common/util.h"
#include "gw.h"

#define BDEAD_GROUP "bridges"
#define BDEAD_REASON_MAX 300 /* bytes of the reason in the desk's notice */
#define BDEAD_FIELDS_MAX 16  /* field/value pairs copied from a cg:out entry (8 are used) */
#define BDEAD_ARGV_MAX (6 + 2 * BDEAD_FIELDS_MAX + 10)

/* One dead letter in progress (owns its copies). */
typedef struct bdead_job {
    msg_channel ch;
    char out_key[CG_KEY_EXTRA + 16], dead_key[CG_KEY_EXTRA + 16];
    char entry[48]; /* a stream entry id, "<ms>-<n>" */
    char conv[MSG_ID_MAX], seq[24];
    char code[MSG_CODE_MAX];
    char reason[BDEAD_REASON_MAX + 1];
    char by[80];
    bdead_done_fn *done;
    void *priv;
} bdead_job;

/* Copy at most max bytes of the UTF-8 string src, cut at a character boundary. */
static void bdead_cut(char *dst, size_t max, const char *src) {
    size_t n = strlen(src);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bdead_job *bdead_job_new(msg_channel ch, const char *entry, const char *code,
                                const char *reason, const char *by, bdead_done_fn *done,
                                void *priv) {
    bdead_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->ch = ch;
    snprintf(j->out_key, sizeof(j->out_key), CG_KEY_OUT, msg_channel_name(ch));
    snprintf(j->dead_key, sizeof(j->dead_key), CG_KEY_DEAD, msg_channel_name(ch));
    snprintf(j->entry, sizeof(j->entry), "%s", entry);
    snprintf(j->code, sizeof(j->code), "%s", code && code[0] ? code : BDEAD_CODE);
    bdead_cut(j->reason, BDEAD_REASON_MAX, reason && reason[0] ? reason : "no reason given");
    snprintf(j->by, sizeof(j->by), "%s", by);
    j->done = done;
    j->priv = priv;
    return j;
}

static void bdead_finish(bdead_job *j, int stored) {
    if (j->done) j->done(j->priv, stored);
    free(j);
}

static void bdead_xack(const bdead_job *j) {
    const char *argv[] = {"XACK", j->out_key, BDEAD_GROUP, j->entry};
    rconn_cmdargv(G.redis, NULL, NULL, 4, argv, NULL);
}

/* The desk's notice: an `escalated` event (desk-only) with code "undeliverable" appended to the
 * conversation by cg_message (mode sys: logged and published, not routed, never to a bridge).
 * Fire and forget: the dead letter itself is the record. */
static void bdead_notice(const bdead_job *j) {
    if (!j->conv[0]) return;
    msg m;
    msg_init(&m);
    m.type = MSG_ESCALATED;
    m.role = ROLE_SYSTEM;
    m.dir = DIR_OUT;
    m.channel = j->ch;
    m.ts_ms = cg_now_ms();
    cg_id_new(m.id);
    snprintf(m.sender_id, sizeof(m.sender_id), "chatgw");
    snprintf(m.code, sizeof(m.code), "%s", BDEAD_CODE);
    char text[BDEAD_REASON_MAX + 160];
    snprintf(text, sizeof(text), "Message %s was not delivered by %s (%s): %s",
             j->seq[0] ? j->seq : "?", msg_channel_name(j->ch), j->code, j->reason);
    cg_err err;
    size_t n = 0;
    unsigned char *p =
        msg_set_text(&m, text, strlen(text), &err) == 0 ? msg_encode_msgpack(&m, 0, &n) : NULL;
    msg_free(&m);
    if (!p) {
        log_error("dead letter %s: cannot encode the desk's notice", j->entry);
        return;
    }
    char cmid[MSG_ID_MAX];
    snprintf(cmid, sizeof(cmid), "cg:dead:%s", j->entry); /* a desk cmid, not a key */
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "cmid", cmid);
    evarg_str(&a, "role", "system");
    evarg_str(&a, "sender", G.cfg.gateway_id);
    evarg_bytes(&a, "payload", p, n);
    evarg_str(&a, "type", msg_type_name(MSG_ESCALATED));
    evarg_str(&a, "channel", msg_channel_name(j->ch));
    evarg_int(&a, "now", cg_now_ms());
    evarg_str(&a, "mode", "sys");
    evarg_send(&a, G.redis, "cg_message", CG_KEY_TENANT, NULL, NULL);
    free(p);
}

/* XADD reply: the entry is kept; tell the desk and XACK it (same connection, in this order). */
static void bdead_added(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    bdead_job *j = priv;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        log_error("dead letter %s of %s: XADD %s failed (%s): left pending", j->entry, j->out_key,
                  j->dead_key, r ? r->str : "connection lost");
        bdead_finish(j, 0);
        return;
    }
    /* the reason is not logged: a platform's answer may name the customer (it is in the entry) */
    log_warn("%s entry %s (conv %s seq %s) not deliverable (%s, by %s): moved to %s", j->out_key,
             j->entry, j->conv, j->seq, j->code, j->by, j->dead_key);
    bdead_notice(j);
    bdead_xack(j);
    bdead_finish(j, 1);
}

/* XADD cg:dead:<channel> MAXLEN ~ N * <the entry's fields> entry code reason by ts. */
static int bdead_add(bdead_job *j, const redisReply *kv) {
    const char *argv[BDEAD_ARGV_MAX];
    size_t lens[BDEAD_ARGV_MAX];
    int argc = 0;
    char ts[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)cg_now_ms());
#define ARG(s, l) (argv[argc] = (s), lens[argc++] = (l))
    ARG("XADD", 4);
    ARG(j->dead_key, strlen(j->dead_key));
    ARG("MAXLEN", 6);
    ARG("~", 1);
    ARG(BDEAD_MAXLEN, strlen(BDEAD_MAXLEN));
    ARG("*", 1);
    for (size_t i = 0; i + 1 < kv->elements && i < 2 * BDEAD_FIELDS_MAX; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        ARG(k->str, k->len);
        ARG(v->str, v->len);
        if (k->len == 1 && k->str[0] == 'c') bdead_cut(j->conv, sizeof(j->conv) - 1, v->str);
        if (k->len == 1 && k->str[0] == 's') bdead_cut(j->seq, sizeof(j->seq) - 1, v->str);
    }
    ARG("entry", 5);
    ARG(j->entry, strlen(j->entry));
    ARG("code", 4);
    ARG(j->code, strlen(j->code));
    ARG("reason", 6);
    ARG(j->reason, strlen(j->reason));
    ARG("by", 2);
    ARG(j->by, strlen(j->by));
    ARG("ts", 2);
    ARG(ts, strlen(ts));
#undef ARG
    return rconn_cmdargv(G.redis, bdead_added, j, argc, argv, lens);
}

int bdead_store(msg_channel ch, const char *entry, const redisReply *kv, const char *code,
                const char *reason, const char *by, bdead_done_fn *done, void *priv) {
    bdead_job *j = bdead_job_new(ch, entry, code, reason, by, done, priv);
    if (!j) return -1;
    if (bdead_add(j, kv) < 0) {
        free(j);
        return -1;
    }
    return 0;
}

/* XRANGE reply: [[id, [f, v, ...]]] or [] when the entry is gone. */
static void bdead_fetched(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    bdead_job *j = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        log_error("dead letter %s: XRANGE %s failed: left pending", j->entry, j->out_key);
        bdead_finish(j, 0);
        return;
    }
    const redisReply *ent = r->elements == 1 ? r->element[0] : NULL;
    if (!ent || ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
        ent->element[1]->type != REDIS_REPLY_ARRAY) {
        bdead_xack(j); /* trimmed or deleted: nothing left to keep */
        bdead_finish(j, 1);
        return;
    }
    if (bdead_add(j, ent->element[1]) < 0) bdead_finish(j, 0);
}

int bdead_store_id(msg_channel ch, const char *entry, const char *code, const char *reason,
                   const char *by, bdead_done_fn *done, void *priv) {
    bdead_job *j = bdead_job_new(ch, entry, code, reason, by, done, priv);
    if (!j) return -1;
    const char *argv[] = {"XRANGE", j->out_key, j->entry, j->entry};
    if (rconn_cmdargv(G.redis, bdead_fetched, j, 4, argv, NULL) < 0) {
        free(j);
        return -1;
    }
    return 0;
}
