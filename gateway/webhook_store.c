/* webhook_store.c -- a platform message becomes a customer message in the conversation log.
 *
 * Exactly what client.c does for a web customer's text: stamp (role customer, dir in, server id,
 * ts), encode msgpack, one FCALL cg_message with conv '' (the customer's open conversation, or
 * a new one) and a client message id derived from the platform's message id, so a platform
 * retry is answered from cg:idem (dup = 1) and never stored twice. Customer ids and cmids are
 * "<prefix><platform id>", or "<prefix>h:<32 hex of SHA-256>" when that would not fit.
 *
 * Every stored message also tells the conversation where the desk's replies go (cg_message's
 * attributes): chat_id = meta.platform_chat_id, chat_name = sender_name, and for e-mail the
 * subject and the Message-IDs (mail_root, mail_last) that a reply must answer. whs_append is the
 * path itself (webhooks and bridge pushes); whs_store ties it to an HTTP request.
 *
 * cg:idem only knows a cmid within its conversation: a platform message replayed after its
 * conversation closed would open a new one. With replay memory (whs_opts.replay_ttl_s) the cmid
 * is claimed first, one round trip before cg_message: SET cg:seen:<cmid> p NX GET EX 15. New:
 * stored, then the claim becomes the conversation (SET XX EX replay_ttl_s, not waited for); a
 * failed store gives the claim up (DEL), so the platform's retry is stored. Known (a
 * conversation id): dup, nothing stored. "p": another request is storing it right now: failed
 * (the platform retries and then finds it known). */
#include "gw.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../common/evarg.h"
#include "../common/evres.h"
#include "../common/log.h"
#include "../common/util.h"
#include "desk_schema.h"

#define WHS_ATTRS_MAX 10 /* attribute name/value strings after preview */
/* A claim whose store never answered lapses soon (more than the 5 s Redis reply timeout), so
 * the platform's retry is stored. */
#define WHS_CLAIM_TTL_S "15"
#define WHS_CLAIM_PENDING "p"

typedef struct whs_job {
    whs_done_fn *done;
    void *priv;
    const char *hook; /* for log lines */
    char attrs[WHS_ATTRS_MAX / 2][MSG_META_MAX];
    const char *attr_names[WHS_ATTRS_MAX / 2];
    int n_attrs;
    long long seq;
    int dup;
    unsigned char *payload;
    size_t plen;
    msg_type type; /* the payload's (cg_message's type: no decoding in the library) */
    char conv[MSG_ID_MAX];
    char cmid[MSG_ID_MAX];
    char cust[MSG_ID_MAX];
    char newconv[33];
    char channel[MSG_CODE_MAX];
    char now[24];
    char preview[MSG_PREVIEW_MAX];
    int conv_fallback;
    char *map_key;
    long long map_ttl_s;
    char seen_key[sizeof(CG_KEY_SEEN) + MSG_ID_MAX]; /* replay memory, or "" */
    long long replay_ttl_s;
    int claimed; /* this job holds the claim on seen_key */
} whs_job;

/* "<prefix><id>" when it fits, else "<prefix>h:<32 hex of sha256(id)>". */
static void whs_derive(const char *prefix, const char *id, char out[MSG_ID_MAX]) {
    size_t pl = strlen(prefix), il = strlen(id);
    if (pl + il < MSG_ID_MAX) {
        memcpy(out, prefix, pl);
        memcpy(out + pl, id, il + 1);
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char hex[33] = "";
    if (EVP_Digest(id, il, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen >= 16) {
        for (int i = 0; i < 16; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    snprintf(out, MSG_ID_MAX, "%.20sh:%s", prefix, hex);
}

void whs_customer_id(const char *prefix, const char *user, char out[MSG_ID_MAX]) {
    whs_derive(prefix, user, out);
}

void whs_cmid(const char *prefix, const char *platform_id, char out[MSG_ID_MAX]) {
    whs_derive(prefix, platform_id, out);
    if (!strncmp(out, "cg:", 3)) out[0] = 'x'; /* reserved for router messages */
}

static void whs_job_free(whs_job *j) {
    free(j->payload);
    free(j->map_key);
    free(j);
}

static void whs_reply(rconn *rc, redisReply *r, void *priv);

static int whs_send(whs_job *j) {
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "cmid", j->cmid);
    evarg_str(&a, "role", "customer");
    evarg_str(&a, "sender", j->cust);
    evarg_bytes(&a, "payload", j->payload, j->plen);
    evarg_str(&a, "type", msg_type_name(j->type));
    evarg_str(&a, "newconv", j->newconv);
    evarg_str(&a, "channel", j->channel);
    evarg_int(&a, "now", strtoll(j->now, NULL, 10));
    evarg_str(&a, "mode", "log");
    if (j->preview[0]) evarg_str(&a, "preview", j->preview);
    if (j->n_attrs) {
        evarg_key(&a, "attrs");
        msgpack_pack_map(&a.pk, (size_t)j->n_attrs);
        for (int i = 0; i < j->n_attrs; i++) {
            msgpack_pack_str_with_body(&a.pk, j->attr_names[i], strlen(j->attr_names[i]));
            msgpack_pack_str_with_body(&a.pk, j->attrs[i], strlen(j->attrs[i]));
        }
    }
    return evarg_send(&a, G.redis, "cg_message", CG_KEY_TENANT, whs_reply, j);
}

/* The job is over: settle its claim on the replay memory (kept as the conversation, or given up
 * for the retry), tell its owner (failed: nothing may have been stored; retry). */
static void whs_end(whs_job *j, int failed) {
    if (j->claimed && failed) {
        const char *argv[] = {"DEL", j->seen_key};
        rconn_cmdargv(G.redis, NULL, NULL, 2, argv, NULL);
    } else if (j->claimed) {
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%lld", j->replay_ttl_s);
        const char *argv[] = {"SET", j->seen_key, j->conv, "XX", "EX", ttl};
        rconn_cmdargv(G.redis, NULL, NULL, 6, argv, NULL);
    }
    j->done(j->priv, failed, j->conv, j->seq, j->dup);
    whs_job_free(j);
}

/* Add one reply attribute (skipped when empty). */
static void whs_attr(whs_job *j, const char *name, const char *value) {
    if (!value[0] || j->n_attrs >= WHS_ATTRS_MAX / 2) return;
    j->attr_names[j->n_attrs] = name;
    snprintf(j->attrs[j->n_attrs], sizeof(j->attrs[0]), "%s", value);
    j->n_attrs++;
}

static void whs_mapped(rconn *rc, redisReply *r, void *priv) {
    whs_job *j = priv;
    int failed = !r || r->type == REDIS_REPLY_ERROR;
    if (failed) log_warn("%s: could not record a Message-ID mapping", j->hook);
    whs_end(j, failed);
}

/* cg_message's answer: 'stored' with conv, seq, dup; or an error. */
static void whs_reply(rconn *rc, redisReply *r, void *priv) {
    whs_job *j = priv;
    if (r && r->type == REDIS_REPLY_ERROR && r->str && !strncmp(r->str, "NOTYOURS", 8) &&
        j->conv_fallback && j->conv[0]) {
        j->conv[0] = '\0'; /* threaded into someone else's conversation: use the sender's own */
        if (whs_send(j) == 0) return;
        whs_end(j, 1);
        return;
    }
    char kind[8];
    if (!r || evres_kind(r, kind, sizeof(kind)) != 0 || strcmp(kind, "stored") != 0) {
        if (r && r->type == REDIS_REPLY_ERROR) log_error("%s: cg_message: %s", j->hook, r->str);
        whs_end(j, 1);
        return;
    }
    evres_str(r, "conv", j->conv, sizeof(j->conv));
    j->seq = evres_int(r, "seq");
    j->dup = evres_int(r, "dup") != 0;
    char masked[MSG_ID_MAX];
    log_debug("%s: %s message of %s in conv %s seq %lld", j->hook, j->dup ? "duplicate" : "stored",
              log_mask(j->cust, masked, sizeof(masked)), j->conv, j->seq);
    if (!j->map_key) {
        whs_end(j, 0);
        return;
    }
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", j->map_ttl_s);
    const char *argv[] = {"SET", j->map_key, j->conv, "EX", ttl};
    if (rconn_cmdargv(G.redis, whs_mapped, j, 5, argv, NULL) < 0) whs_end(j, 1);
}

/* The claim's answer: nil (ours: store it), the conversation it went to (dup), or pending. */
static void whs_claimed(rconn *rc, redisReply *r, void *priv) {
    whs_job *j = priv;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r) log_error("%s: replay memory: %s", j->hook, r->str);
        whs_end(j, 1);
        return;
    }
    if (r->type == REDIS_REPLY_NIL) {
        j->claimed = 1;
        if (whs_send(j) < 0) whs_end(j, 1);
        return;
    }
    if (r->type == REDIS_REPLY_STRING && !strcmp(r->str, WHS_CLAIM_PENDING)) {
        log_info("%s: %s is being stored by another request: retry later", j->hook, j->cmid);
        whs_end(j, 1);
        return;
    }
    if (r->type == REDIS_REPLY_STRING) snprintf(j->conv, sizeof(j->conv), "%s", r->str);
    j->dup = 1;
    log_info("%s: replay of %s (conv %s) not stored", j->hook, j->cmid, j->conv);
    whs_end(j, 0);
}

/* Claim the cmid in the replay memory; whs_claimed goes on. */
static int whs_claim(whs_job *j) {
    const char *argv[] = {"SET", j->seen_key, WHS_CLAIM_PENDING, "NX",
                          "GET", "EX",        WHS_CLAIM_TTL_S};
    return rconn_cmdargv(G.redis, whs_claimed, j, 7, argv, NULL);
}

/* The first words of the text, cut at a UTF-8 boundary (as client.c does). */
static void whs_preview(const msg *m, char *out, size_t n) {
    out[0] = '\0';
    if (!m->text) return;
    size_t k = m->text_len < n - 1 ? m->text_len : n - 1;
    while (k > 0 && k < m->text_len && ((unsigned char)m->text[k] & 0xC0) == 0x80)
        k--;
    memcpy(out, m->text, k);
    out[k] = '\0';
}

int whs_append(msg *m, const char *cust, const char *cmid, const whs_opts *o, const char *hook,
               whs_done_fn *done, void *priv, cg_err *err) {
    m->role = ROLE_CUSTOMER;
    m->dir = DIR_IN;
    snprintf(m->sender_id, sizeof(m->sender_id), "%s", cust);
    snprintf(m->identity.customer_id, sizeof(m->identity.customer_id), "%s", cust);
    snprintf(m->cmid, sizeof(m->cmid), "%s", cmid);
    m->conv[0] = '\0'; /* the log key and the pub/sub channel carry it */
    m->seq = 0;
    m->ts_ms = cg_now_ms();
    cg_id_new(m->id);
    if (msg_validate(m, ORIGIN_INTERNAL, err) < 0) return -1;
    msg_stored_trim(m);
    whs_job *j = calloc(1, sizeof(*j));
    if (!j) return cg_err_set(err, "nomem", "out of memory");
    j->payload = msg_encode_msgpack(m, 0, &j->plen);
    j->type = m->type;
    if (!j->payload) goto nomem;
    snprintf(j->conv, sizeof(j->conv), "%s", o && o->conv ? o->conv : "");
    snprintf(j->cmid, sizeof(j->cmid), "%s", cmid);
    snprintf(j->cust, sizeof(j->cust), "%s", cust);
    snprintf(j->channel, sizeof(j->channel), "%s", msg_channel_name(m->channel));
    snprintf(j->now, sizeof(j->now), "%lld", (long long)m->ts_ms);
    cg_id_new(j->newconv);
    whs_preview(m, j->preview, sizeof(j->preview));
    whs_attr(j, "chat_id", m->meta.platform_chat_id);
    whs_attr(j, "chat_name", m->sender_name);
    if (m->channel == CH_EMAIL) {
        whs_attr(j, "subject", m->meta.subject);
        whs_attr(j, "mail_root", m->meta.thread_id);
        whs_attr(j, "mail_last", m->meta.thread_id);
    }
    j->conv_fallback = o && o->conv_fallback;
    if (o && o->map_key) {
        j->map_key = strdup(o->map_key);
        if (!j->map_key) goto nomem;
        j->map_ttl_s = o->map_ttl_s;
    }
    if (o && o->replay_ttl_s > 0) {
        snprintf(j->seen_key, sizeof(j->seen_key), CG_KEY_SEEN, cmid);
        j->replay_ttl_s = o->replay_ttl_s;
    }
    j->hook = hook;
    j->done = done;
    j->priv = priv;
    if ((j->seen_key[0] ? whs_claim(j) : whs_send(j)) < 0) {
        whs_job_free(j);
        return cg_err_set(err, "unavailable", "storage is unreachable");
    }
    G.msgs_in++;
    return 0;
nomem:
    whs_job_free(j);
    return cg_err_set(err, "nomem", "out of memory");
}

/* whs_append's end for a webhook request: count it and release the request. */
static void whs_wh_done(void *priv, int failed, const char *conv, long long seq, int dup) {
    wh_req *q = priv;
    if (!failed) {
        if (dup)
            q->dups++;
        else
            q->stored++;
    }
    wh_release(q, failed);
}

int whs_store(wh_req *q, msg *m, const char *cust, const char *cmid, const whs_opts *o) {
    cg_err err;
    wh_hold(q);
    if (whs_append(m, cust, cmid, o, q->hook->path, whs_wh_done, q, &err) == 0) return 0;
    wh_release(q, 0);
    if (strcmp(err.code, "unavailable") && strcmp(err.code, "nomem")) {
        /* would fail the same way on every retry: drop it, answer 2xx */
        log_warn("webhook %s: message dropped: %s: %s", q->hook->path, err.code, err.msg);
        return 0;
    }
    q->failed = 1;
    return -1;
}
