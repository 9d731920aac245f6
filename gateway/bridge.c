/* bridge.c -- /ws/bridge: the desk's messages out to the channel bridges, platform messages in.
 *
 * A bridge serves one platform (hello.channel) and authenticates with the shared bridge token
 * (bridge_token, constant time; none configured: every bridge is refused). It then gets every
 * entry of cg:out:<channel> (written by cg_message, redis/conv.lua) through the consumer group
 * "bridges", as consumer hello.sender_name ("default" when absent): the normalized msg with conv,
 * seq, meta.platform_chat_id (where it goes) and `native`, the body rendered for the platform
 * (the channels/ renderers). Only the product steers a bridge: the stored msg's own meta and native
 * are dropped, meta comes from the entry's address fields and native from the renderer. The bridge
 * acks each frame ({"type":"ack","id":<the frame's id>}) once the platform took it; the gateway
 * then XACKs the entry. Un-acked entries stay pending in the group and are delivered again when a
 * bridge of that name connects: at-least-once, never lost.
 *
 * Dead letters (bridge_dead.c): an entry the gateway can never render (no address; an address,
 * Message-ID or subject a reply cannot carry; a renderer refusal) is not delivered, and a frame the
 * bridge answers with a failure ack ({"type":"ack","id":..,"code":..,"text":<why>}) is not retried:
 * either goes to cg:dead:<channel>, the desk gets an `escalated` / "undeliverable" event, and the
 * entry is XACKed, so one bad message never holds back the ones after it. While that is under way
 * the entry keeps a window slot (dying) so it is neither delivered nor dead-lettered twice. Only
 * the gateway's own trouble (no email_from, Redis down) still delivers a frame without native.
 *
 * Reading: each bridge session owns one Redis connection for blocking reads (XREADGROUP ... BLOCK
 * on the shared command connection would stall every client). It first reads its own pending
 * entries (id 0, then after the last one returned), then new ones (">", BLOCK BR_BLOCK_MS; the
 * connection's timeout is that plus a margin). Flow control: at most `window` frames are
 * delivered and not yet acked (the smaller of BR_WINDOW and send_queue_max), and never more than
 * the send queue has room for; a slow bridge simply reads later, entries wait in the stream.
 *
 * Orphans: entries delivered to a bridge name that never comes back would stay pending for ever
 * (and hold back the trimming of the stream). Whenever a read finds nothing new, and once after
 * connecting, the session claims (XAUTOCLAIM ... JUSTID) the group's entries idle for longer than
 * bridge_claim_idle_ms, whoever they were delivered to, and reads them as its own pending
 * entries: another bridge of the channel delivers them (at-least-once; a bridge that is merely
 * slow may see an entry it still holds delivered elsewhere too, so keep that time well above a
 * platform call's).
 *
 * Pushes: a bridge may send {"type":"text"|"attachment", "sender_id":<platform user>,
 * "meta":{"platform_msg_id":..., "platform_chat_id":...}, ...}: stored like a webhook message
 * (webhook_store.c) as customer "<channel>:<sender_id>" with a cmid derived from the platform
 * message id, and acked with conv and seq. */
#include "bridge_dead.h"
#include "desk_schema.h"
#include "gw.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../channels/chan.h"
#include "../channels/email.h"
#include "../channels/meta.h"
#include "../channels/telegram.h"
#include "../channels/wechat.h"
#include "../common/log.h"
#include "../common/util.h"

#define BR_GROUP "bridges"
#define BR_WINDOW 64            /* frames delivered and not acked, at most */
#define BR_BLOCK_MS 5000        /* XREADGROUP BLOCK */
#define BR_TIMEOUT_MS 15000     /* the read connection's command timeout: BLOCK + margin */
#define BR_RETRY_MS 1000        /* after a Redis error reply */
#define BR_ENTRY_MAX 48         /* "<ms>-<n>" */
#define BR_MAILID_TTL "7776000" /* 90 days, as hook_email.c keeps Message-IDs */

/* A frame delivered and not acked yet, or an entry being moved to cg:dead:<channel>. */
typedef struct br_fly {
    char entry[BR_ENTRY_MAX]; /* stream entry id */
    char id[MSG_ID_MAX];      /* the frame's id */
    int dying;                /* being dead-lettered (bridge_dead.c): no ack expected */
} br_fly;

struct bridge {
    unsigned refs; /* 1 for the session + 1 per command pending on rc */
    sess *s;       /* holds a reference */
    rconn *rc;     /* blocking reads; NULL once closed */
    uv_timer_t retry;
    int dead; /* the session is gone */
    msg_channel channel;
    char key[CG_KEY_EXTRA + 16]; /* the channel's out stream */
    char consumer[48];           /* group consumer name */
    int group_ok;                /* XGROUP CREATE done on this connection */
    int reading;                 /* a command is pending on rc */
    int pending_phase;           /* 1: reading our pending entries after `cursor` */
    int claim_due; /* claim other names' idle entries before the next read of new ones */
    char cursor[BR_ENTRY_MAX];
    br_fly fly[BR_WINDOW];
    unsigned n_fly, window;
};

static void br_pump(bridge *b);

/* ---- lifetime ---- */

static void br_on_timer_closed(uv_handle_t *h) {
    bridge *b = h->data;
    sess_unref(b->s);
    free(b);
}

static void br_unref(bridge *b) {
    if (--b->refs) return;
    uv_close((uv_handle_t *)&b->retry, br_on_timer_closed);
}

static void br_on_retry(uv_timer_t *t) {
    br_pump(t->data);
}

/* ---- reading cg:out:<channel> ---- */

/* The read connection's reply arrives: 0 when the bridge still wants it (the reference the
 * command held is kept for the caller to drop), -1 when it is gone (dropped here). */
static int br_reply_begin(bridge *b) {
    b->reading = 0;
    if (!b->dead) return 0;
    br_unref(b);
    return -1;
}

static void br_group_done(rconn *rc, redisReply *r, void *priv) {
    bridge *b = priv;
    if (br_reply_begin(b) < 0) return;
    if (r && (r->type != REDIS_REPLY_ERROR || !strncmp(r->str, "BUSYGROUP", 9))) {
        b->group_ok = 1;
        br_pump(b);
    } else if (r) {
        log_error("bridge %s: XGROUP CREATE %s: %s", b->s->sock, b->key, r->str);
        uv_timer_start(&b->retry, br_on_retry, BR_RETRY_MS, 0);
    }
    br_unref(b);
}

static int br_fly_find(const bridge *b, const char *entry, const char *id) {
    for (unsigned i = 0; i < b->n_fly; i++)
        if ((entry && !strcmp(b->fly[i].entry, entry)) || (id && !strcmp(b->fly[i].id, id)))
            return (int)i;
    return -1;
}

/* A dead letter in progress: the entry names its slot (slots move when others are freed). */
typedef struct br_dead_ctx {
    bridge *b; /* holds a reference */
    char entry[BR_ENTRY_MAX];
} br_dead_ctx;

/* A dead letter of ours is done (bridge_dead.c): free its slot, read on. */
static void br_dead_done(void *priv, int stored) {
    br_dead_ctx *key = priv;
    bridge *b = key->b;
    int i = br_fly_find(b, key->entry, NULL);
    if (i >= 0 && b->fly[i].dying) b->fly[i] = b->fly[--b->n_fly];
    if (!stored) /* left pending: read our pending entries again later */
        b->claim_due = 1;
    free(key);
    if (!b->dead) br_pump(b);
    br_unref(b);
}

/* Move entry (slot i of fly, or a new slot when i < 0 and kv is given) to cg:dead:<channel>
 * instead of delivering it: kv = its fields when at hand, else read back by id. The slot stays
 * taken (dying) until that is done, so the entry is neither delivered nor dead-lettered twice.
 * 0 when started; -1 when the command connection is down (the entry stays pending). */
static int br_dead(bridge *b, int i, const char *entry, const redisReply *kv, const char *code,
                   const char *reason, const char *by) {
    if (i < 0 && b->n_fly >= BR_WINDOW) return -1;
    br_dead_ctx *key = calloc(1, sizeof(*key));
    if (!key) return -1;
    snprintf(key->entry, sizeof(key->entry), "%s", entry);
    key->b = b;
    int rc = kv ? bdead_store(b->channel, entry, kv, code, reason, by, br_dead_done, key)
                : bdead_store_id(b->channel, entry, code, reason, by, br_dead_done, key);
    if (rc < 0) {
        free(key);
        return -1;
    }
    b->refs++;
    if (i < 0) i = (int)b->n_fly++;
    snprintf(b->fly[i].entry, sizeof(b->fly[i].entry), "%s", entry);
    b->fly[i].id[0] = '\0';
    b->fly[i].dying = 1;
    return 0;
}

/* XACK on the command connection (fire and forget: an entry whose XACK is lost stays pending
 * and is delivered again, which at-least-once allows). */
static void br_xack(bridge *b, const char *entry) {
    const char *argv[] = {"XACK", b->key, BR_GROUP, entry};
    rconn_cmdargv(G.redis, NULL, NULL, 4, argv, NULL);
}

/* The fields of one stream entry (c, s, m, t, n, j, r, l). */
typedef struct br_entry {
    const char *conv, *seq, *chat_id, *chat_name, *subject, *mail_root, *mail_last;
    const char *payload;
    size_t plen;
} br_entry;

static void br_entry_parse(const redisReply *kv, br_entry *e) {
    memset(e, 0, sizeof(*e));
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1) continue;
        switch (k->str[0]) {
        case 'c':
            e->conv = v->str;
            break;
        case 's':
            e->seq = v->str;
            break;
        case 'm':
            e->payload = v->str, e->plen = v->len;
            break;
        case 't':
            e->chat_id = v->str;
            break;
        case 'n':
            e->chat_name = v->str;
            break;
        case 'j':
            e->subject = v->str;
            break;
        case 'r':
            e->mail_root = v->str;
            break;
        case 'l':
            e->mail_last = v->str;
            break;
        default:
            break;
        }
    }
}

/* 1 when s is a conversation token email_render_reply accepts (32 lowercase hex). */
static int br_is_token(const char *s) {
    size_t n = strlen(s);
    if (n != EMAIL_TOKEN_LEN) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Render m as an e-mail reply into *out; records the new Message-ID -> conv mapping (so the
 * customer's answer threads, hook_email.c) before the bridge can send it. */
static int br_render_email(const msg *m, const br_entry *e, char **out, size_t *len, cg_err *err) {
    char from_name[MSG_NAME_MAX] = "", from_addr[MSG_META_MAX], domain[128];
    const char *f = G.cfg.email_from, *lt = strchr(f, '<');
    if (!f[0]) return cg_err_set(err, "not_configured", "email_from is not configured");
    if (lt && f[strlen(f) - 1] == '>') {
        size_t nn = (size_t)(lt - f);
        while (nn && f[nn - 1] == ' ')
            nn--;
        snprintf(from_name, sizeof(from_name), "%.*s", (int)nn, f);
        snprintf(from_addr, sizeof(from_addr), "%.*s", (int)(strlen(lt) - 2), lt + 1);
    } else
        snprintf(from_addr, sizeof(from_addr), "%s", f);
    const char *at = strrchr(from_addr, '@');
    snprintf(domain, sizeof(domain), "%s",
             G.cfg.email_domain[0] ? G.cfg.email_domain
             : at                  ? at + 1
                                   : "");
    const char *refs[1] = {e->mail_root};
    int root_differs = e->mail_root && (!e->mail_last || strcmp(e->mail_root, e->mail_last));
    email_reply r = {
        .from_addr = from_addr,
        .from_name = from_name[0] ? from_name : NULL,
        .to_addr = m->meta.platform_chat_id,
        .to_name = e->chat_name,
        .subject = e->subject ? e->subject : "",
        .in_reply_to = e->mail_last,
        .references = root_differs ? refs : NULL,
        .n_references = root_differs ? 1 : 0,
        .message_id_domain = domain,
        .conv_token = br_is_token(e->conv) ? e->conv : NULL,
    };
    char mid[MSG_META_MAX];
    if (email_render_reply(m, &r, out, len, mid, err) < 0) return -1;
    char key[sizeof(CG_KEY_MAILID) + MSG_META_MAX];
    snprintf(key, sizeof(key), CG_KEY_MAILID, mid);
    const char *argv[] = {"SET", key, e->conv, "EX", BR_MAILID_TTL};
    if (rconn_cmdargv(G.redis, NULL, NULL, 5, argv, NULL) < 0) {
        free(*out);
        *out = NULL;
        return cg_err_set(err, "unavailable", "cannot record the reply's Message-ID");
    }
    return 0;
}

/* Render m for the platform into m->native. -1 with err when it cannot be: no address, a
 * renderer refusal (br_render_permanent: the entry is dead-lettered), or the gateway's own
 * trouble (email_from not configured, Redis down: delivered without native, as before). */
static int br_render(bridge *b, msg *m, const br_entry *e, cg_err *err) {
    const char *to = m->meta.platform_chat_id;
    char *out = NULL;
    size_t len = 0;
    int rc;
    if (!to[0]) return cg_err_set(err, "missing_field", "the conversation has no chat_id");
    switch (b->channel) {
    case CH_WECHAT:
        rc = wechat_render_reply_json(m, to, &out, err);
        break;
    case CH_TELEGRAM:
        rc = telegram_render_send(m, to, &out, err);
        break;
    case CH_WHATSAPP:
        rc = meta_render_whatsapp(m, to, &out, err);
        break;
    case CH_MESSENGER:
        rc = meta_render_messenger(m, to, &out, err);
        break;
    case CH_EMAIL:
        rc = br_render_email(m, e, &out, &len, err);
        break;
    default:
        return 0; /* api: the normalized msg is the format */
    }
    if (rc < 0) return -1;
    if (b->channel != CH_EMAIL) len = strlen(out);
    rc = msg_set_native(m, out, len, err);
    free(out);
    return rc;
}

/* Keep only what a bridge may act on from a stored msg: the content and the event fields. Its
 * own meta and native (whatever a client managed to store), identity claims and session fields
 * are dropped; br_deliver then sets meta from the entry and native from the renderer. */
static void br_product_only(msg *m) {
    memset(&m->meta, 0, sizeof(m->meta));
    memset(&m->identity, 0, sizeof(m->identity));
    free(m->native);
    m->native = NULL;
    m->native_len = 0;
    m->token[0] = m->sock[0] = 0;
    m->n_skills = 0;
    m->cap = 0;
    m->last_seq = 0;
}

/* 1 when a br_render failure is the message's own (its address, ids or body can never be
 * rendered: retrying cannot help), 0 when it is the gateway's (configuration, storage). */
static int br_render_permanent(const cg_err *err) {
    static const char *const transient[] = {"not_configured", "unavailable", "nomem", "crypto"};
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        if (!strcmp(err->code, transient[i])) return 0;
    return 1;
}

/* Deliver one entry. 0 when queued (or skipped: already in flight, undecodable and acked, or
 * unrenderable and dead-lettered), -1 when the send queue refused it. Only what the product sets
 * reaches the bridge: the stored msg's own meta and native (whatever a client managed to store)
 * are dropped; meta comes from the entry's address fields, native from the renderer. */
static int br_deliver(bridge *b, const char *entry, const redisReply *kv) {
    if (br_fly_find(b, entry, NULL) >= 0) return 0;
    br_entry e;
    br_entry_parse(kv, &e);
    msg m;
    msg_init(&m);
    cg_err err;
    if (!e.conv || !e.seq || !e.payload || msg_decode_msgpack(&m, e.payload, e.plen, &err) < 0) {
        log_error("bridge %s: undecodable entry %s in %s: acked and skipped", b->s->sock, entry,
                  b->key);
        br_xack(b, entry);
        return 0;
    }
    snprintf(m.conv, sizeof(m.conv), "%s", e.conv);
    m.seq = strtoull(e.seq, NULL, 10);
    br_product_only(&m);
    if (e.chat_id)
        snprintf(m.meta.platform_chat_id, sizeof(m.meta.platform_chat_id), "%s", e.chat_id);
    if (b->channel == CH_EMAIL) {
        if (e.subject) snprintf(m.meta.subject, sizeof(m.meta.subject), "%s", e.subject);
        if (e.mail_last)
            snprintf(m.meta.in_reply_to, sizeof(m.meta.in_reply_to), "%s", e.mail_last);
    }
    if (!m.id[0]) snprintf(m.id, sizeof(m.id), "%s", entry);
    if (br_render(b, &m, &e, &err) < 0 && br_render_permanent(&err)) {
        msg_free(&m);
        if (br_dead(b, -1, entry, kv, err.code, err.msg, "gateway") < 0)
            log_error("bridge %s: entry %s cannot be rendered (%s) nor dead-lettered now: left "
                      "pending",
                      b->s->sock, entry, err.msg);
        return 0;
    } else if (!m.native && b->channel != CH_API) {
        log_warn("bridge %s: conv %s seq %llu delivered without native: %s", b->s->sock, m.conv,
                 (unsigned long long)m.seq, err.msg);
    }
    int rc = sess_send_msg(b->s, &m);
    if (rc == 0) {
        br_fly *f = &b->fly[b->n_fly++];
        snprintf(f->entry, sizeof(f->entry), "%s", entry);
        snprintf(f->id, sizeof(f->id), "%s", m.id);
        f->dying = 0;
    }
    msg_free(&m);
    return rc;
}

/* XREADGROUP reply: nil (BLOCK timed out) or [[key, [[id, [f, v, ...] or nil], ...]]]. */
static void br_read_done(rconn *rc, redisReply *r, void *priv) {
    bridge *b = priv;
    if (br_reply_begin(b) < 0) return;
    if (!r) { /* connection lost: br_on_state restarts from the pending entries */
        br_unref(b);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("bridge %s: XREADGROUP %s: %s", b->s->sock, b->key, r->str);
        b->group_ok = 0; /* e.g. NOGROUP after the stream was deleted */
        uv_timer_start(&b->retry, br_on_retry, BR_RETRY_MS, 0);
        br_unref(b);
        return;
    }
    const redisReply *list = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2)
        list = r->element[0]->element[1];
    size_t n = list && list->type == REDIS_REPLY_ARRAY ? list->elements : 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *ent = list->element[i];
        if (ent->type != REDIS_REPLY_ARRAY || ent->elements != 2 ||
            ent->element[0]->type != REDIS_REPLY_STRING || ent->element[0]->len >= BR_ENTRY_MAX)
            continue;
        const char *id = ent->element[0]->str;
        if (ent->element[1]->type != REDIS_REPLY_ARRAY) { /* deleted while pending */
            br_xack(b, id);
        } else if (br_deliver(b, id, ent->element[1]) < 0) {
            /* not queued: read our pending entries again (those in flight are skipped) */
            b->pending_phase = 1;
            snprintf(b->cursor, sizeof(b->cursor), "0");
            break;
        }
        if (b->pending_phase) snprintf(b->cursor, sizeof(b->cursor), "%s", id);
    }
    if (b->pending_phase && n == 0)
        b->pending_phase = 0; /* our pending entries are all out */
    else if (!b->pending_phase && n == 0)
        b->claim_due = 1; /* idle: look for orphans */
    br_pump(b);
    br_unref(b);
}

/* XAUTOCLAIM ... JUSTID reply: [cursor, [id, ...], [deleted id, ...]]. Claimed entries are now
 * ours: read our pending entries again (those in flight are skipped). */
static void br_claim_done(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    bridge *b = priv;
    if (br_reply_begin(b) < 0) return;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error("bridge %s: XAUTOCLAIM %s: %s", b->s->sock, b->key, r->str);
    size_t n = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
                       r->element[1]->type == REDIS_REPLY_ARRAY
                   ? r->element[1]->elements
                   : 0;
    if (n) {
        log_info("bridge %s: %zu entries of %s un-acked for %lld ms claimed", b->s->sock, n, b->key,
                 G.cfg.bridge_claim_idle_ms);
        b->pending_phase = 1;
        snprintf(b->cursor, sizeof(b->cursor), "0");
    }
    if (r) br_pump(b);
    br_unref(b);
}

/* Start the next read when nothing is pending on rc and there is room to deliver. */
static void br_pump(bridge *b) {
    if (b->dead || b->reading || !rconn_is_up(b->rc)) return;
    if (!b->group_ok) {
        const char *argv[] = {"XGROUP", "CREATE", b->key, BR_GROUP, "0", "MKSTREAM"};
        if (rconn_cmdargv(b->rc, br_group_done, b, 6, argv, NULL) < 0) return;
        b->reading = 1;
        b->refs++;
        return;
    }
    unsigned room = sess_room(b->s);
    unsigned left = b->window - b->n_fly;
    if (left < room) room = left;
    if (!room) return;
    char count[16];
    snprintf(count, sizeof(count), "%u", room);
    if (b->claim_due && !b->pending_phase) {
        char idle[24];
        snprintf(idle, sizeof(idle), "%lld", G.cfg.bridge_claim_idle_ms);
        const char *cargv[] = {"XAUTOCLAIM", b->key,  BR_GROUP, b->consumer, idle,
                               "0-0",        "COUNT", count,    "JUSTID"};
        b->claim_due = 0;
        if (rconn_cmdargv(b->rc, br_claim_done, b, 9, cargv, NULL) < 0) return;
        b->reading = 1;
        b->refs++;
        return;
    }
    const char *argv[] = {"XREADGROUP", "GROUP", BR_GROUP,  b->consumer, "COUNT", count,
                          "BLOCK",      "0",     "STREAMS", b->key,      ">"};
    char block[24]; /* short enough to look for orphans in time */
    long long block_ms =
        G.cfg.bridge_claim_idle_ms < BR_BLOCK_MS ? G.cfg.bridge_claim_idle_ms : BR_BLOCK_MS;
    snprintf(block, sizeof(block), "%lld", block_ms);
    int rc;
    if (b->pending_phase) {
        const char *pargv[] = {"XREADGROUP", "GROUP",   BR_GROUP, b->consumer, "COUNT",
                               count,        "STREAMS", b->key,   b->cursor};
        rc = rconn_cmdargv(b->rc, br_read_done, b, 9, pargv, NULL);
    } else {
        argv[7] = block;
        rc = rconn_cmdargv(b->rc, br_read_done, b, 11, argv, NULL);
    }
    if (rc < 0) return;
    b->reading = 1;
    b->refs++;
}

/* The read connection came up (again): start over from our pending entries. */
static void br_on_state(rconn *rc, int up, void *priv) {
    bridge *b = priv;
    if (!up || b->dead) return;
    b->group_ok = 0;
    b->pending_phase = 1;
    b->claim_due = 1;
    snprintf(b->cursor, sizeof(b->cursor), "0");
    br_pump(b);
}

/* ---- frames from the bridge ---- */

static void br_welcome(sess *s, const bridge *b) {
    msg m;
    msg_init(&m);
    m.type = MSG_WELCOME;
    m.role = ROLE_BRIDGE;
    m.channel = b->channel;
    snprintf(m.sender_id, sizeof(m.sender_id), "%s", s->who.sub);
    snprintf(m.sender_name, sizeof(m.sender_name), "%s", b->consumer);
    sess_send_msg(s, &m);
    msg_free(&m);
}

/* hello: the bridge token (constant time) and the channel the bridge serves. */
static void br_hello(sess *s, const msg *m) {
    const char *want = G.cfg.bridge_token;
    if (!want[0] || !m->token[0] || !cg_ct_equal(m->token, strlen(m->token), want, strlen(want))) {
        log_info("bridge %s: authentication failed", s->sock);
        sess_send_error(s, "bad_token", "a valid bridge token is required", m->cmid, 0);
        sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "authentication failed");
        return;
    }
    if (m->channel == CH_NONE || m->channel == CH_WEB) {
        sess_send_error(s, "bad_value", "hello must name the bridge's channel (not web)", m->cmid,
                        0);
        return;
    }
    bridge *b = calloc(1, sizeof(*b));
    if (!b) {
        sess_send_error(s, "unavailable", "out of memory", m->cmid, 1);
        return;
    }
    b->refs = 1;
    b->s = sess_ref(s);
    b->channel = m->channel;
    b->window = s->q_cap < BR_WINDOW ? s->q_cap : BR_WINDOW;
    snprintf(b->key, sizeof(b->key), CG_KEY_OUT, msg_channel_name(m->channel));
    const char *name = m->sender_name;
    size_t nl = strnlen(name, sizeof(m->sender_name));
    if (nl && nl < sizeof(b->consumer) && chan_id_ok(name, sizeof(b->consumer) - 1))
        memcpy(b->consumer, name, nl + 1);
    else
        snprintf(b->consumer, sizeof(b->consumer), "default");
    uv_timer_init(G.loop, &b->retry);
    b->retry.data = b;
    cg_err err;
    b->rc = rconn_new(G.loop, G.cfg.redis_url, "redis-bridge", BR_TIMEOUT_MS, br_on_state, b, &err);
    if (!b->rc) {
        log_error("bridge %s: %s", s->sock, err.msg);
        sess_send_error(s, "unavailable", "storage is unreachable", m->cmid, 1);
        b->dead = 1;
        br_unref(b);
        return;
    }
    s->bridge = b;
    s->authed = 1;
    snprintf(s->who.sub, sizeof(s->who.sub), "bridge:%s", b->consumer);
    lws_set_timeout(s->wsi, NO_PENDING_TIMEOUT, 0);
    log_info("bridge %s: %s bridge '%s' signed in", s->sock, msg_channel_name(b->channel),
             b->consumer);
    br_welcome(s, b);
    rconn_start(b->rc);
}

/* ack: the frame named by id (the frame's id, or its stream entry id) was delivered. With a
 * `code`, it was not and never will be (the platform refused it): the entry is dead-lettered
 * with the bridge's `text` as the reason (bridge_dead.c), then XACKed. */
static void br_ack(bridge *b, const msg *m) {
    int i = m->id[0] ? br_fly_find(b, m->id, m->id) : -1;
    if (i < 0 || b->fly[i].dying) {
        sess_send_error(b->s, "bad_value", "no delivered frame has this id", m->cmid, 0);
        return;
    }
    if (m->code[0]) {
        char by[64];
        snprintf(by, sizeof(by), "bridge:%s", b->consumer);
        char entry[BR_ENTRY_MAX];
        snprintf(entry, sizeof(entry), "%s", b->fly[i].entry);
        if (br_dead(b, i, entry, NULL, m->code, m->text, by) < 0)
            sess_send_error(b->s, "unavailable",
                            "storage is unreachable; send this answer again later", m->cmid, 1);
        return;
    }
    br_xack(b, b->fly[i].entry);
    b->fly[i] = b->fly[--b->n_fly];
    br_pump(b);
}

/* A pushed message being stored. */
typedef struct br_push_req {
    sess *s;
    char cmid[MSG_ID_MAX]; /* the bridge's own, echoed in the ack */
} br_push_req;

static void br_push_done(void *priv, int failed, const char *conv, long long seq, int dup) {
    br_push_req *q = priv;
    sess *s = q->s;
    if (s->wsi && failed) {
        sess_send_error(s, "unavailable", "storage error; send the same frame again later", q->cmid,
                        1);
    } else if (s->wsi) {
        msg a;
        msg_init(&a);
        a.type = MSG_ACK;
        snprintf(a.cmid, sizeof(a.cmid), "%s", q->cmid);
        snprintf(a.conv, sizeof(a.conv), "%s", conv);
        a.seq = (uint64_t)seq;
        sess_send_ctl_msg(s, &a); /* an answer: never dropped (sess.c) */
        msg_free(&a);
    }
    sess_unref(s);
    free(q);
}

/* The cmid prefix of a channel's platform message ids, as the webhooks use them. */
static const char *br_cmid_prefix(msg_channel ch, const char *platform_id) {
    switch (ch) {
    case CH_WECHAT:
        return "wx:";
    case CH_WHATSAPP:
        return "wa:";
    case CH_MESSENGER:
        return "fb:";
    case CH_EMAIL:
        return "em:";
    case CH_TELEGRAM:
        return strncmp(platform_id, "tg:", 3) ? "tg:" : "";
    default:
        return "api:";
    }
}

/* text / attachment from the platform: a customer message, stored like a webhook's. */
static void br_push_one(bridge *b, msg *m) {
    sess *s = b->s;
    if (!m->sender_id[0] || !chan_id_ok(m->sender_id, MSG_ID_MAX - 1)) {
        sess_send_error(s, "missing_field", "sender_id (the platform user id) is required", m->cmid,
                        0);
        return;
    }
    if (!m->meta.platform_msg_id[0]) {
        sess_send_error(s, "missing_field", "meta.platform_msg_id is required (de-duplication)",
                        m->cmid, 0);
        return;
    }
    br_push_req *q = calloc(1, sizeof(*q));
    if (!q) {
        sess_send_error(s, "unavailable", "out of memory", m->cmid, 1);
        return;
    }
    snprintf(q->cmid, sizeof(q->cmid), "%s", m->cmid);
    /* only what a platform message carries; the rest is the gateway's to set */
    m->channel = b->channel;
    m->agent_id[0] = m->agent_name[0] = m->queue[0] = m->code[0] = m->token[0] = m->sock[0] = 0;
    m->n_skills = 0;
    m->cap = 0;
    m->position = m->wait_s = m->rating = m->priority = 0;
    m->last_seq = 0;
    m->retry = 0;
    free(m->native);
    m->native = NULL;
    m->native_len = 0;
    if (!m->meta.platform_chat_id[0])
        snprintf(m->meta.platform_chat_id, sizeof(m->meta.platform_chat_id), "%s", m->sender_id);
    if (b->channel == CH_EMAIL && !m->meta.thread_id[0])
        snprintf(m->meta.thread_id, sizeof(m->meta.thread_id), "%s", m->meta.platform_msg_id);
    cg_err err;
    if (b->channel == CH_EMAIL && email_inbound_check(m, &err) < 0) {
        sess_send_error(s, err.code, err.msg, q->cmid, 0); /* never answerable: refused */
        free(q);
        return;
    }
    char prefix[MSG_CODE_MAX], cust[MSG_ID_MAX], cmid[MSG_ID_MAX];
    snprintf(prefix, sizeof(prefix), "%s:", msg_channel_name(b->channel));
    whs_customer_id(prefix, m->sender_id, cust);
    whs_cmid(br_cmid_prefix(b->channel, m->meta.platform_msg_id), m->meta.platform_msg_id, cmid);
    q->s = sess_ref(s);
    if (whs_append(m, cust, cmid, NULL, "bridge", br_push_done, q, &err) < 0) {
        int retry = !strcmp(err.code, "unavailable") || !strcmp(err.code, "nomem");
        sess_send_error(s, retry ? "unavailable" : err.code, err.msg, q->cmid, retry);
        sess_unref(s);
        free(q);
    }
}

/* A message in the platform's own form: `native` holds the body exactly as the platform sent it
 * (WeChat plain XML, a Telegram Update, a WhatsApp or Messenger webhook body); it is parsed by the
 * channel module, and each message in it is stored as if pushed normalized, acked with the
 * frame's cmid (several acks for a body carrying several messages; none for a body holding only
 * statuses or ignored events, answered by an ack without seq). E-mail bridges post raw mail to
 * /channels/email instead, where threading lives. */
static void br_push_native(bridge *b, msg *m) {
    sess *s = b->s;
    cg_err err = {{0}, {0}};
    msg one, *many = NULL;
    size_t n = 0;
    int ignored = 0, rc;
    meta_stats st;
    memset(&st, 0, sizeof(st));
    msg_init(&one);
    switch (b->channel) {
    case CH_WECHAT:
        rc = wechat_parse_xml(m->native, m->native_len, &one, &ignored, &err);
        break;
    case CH_TELEGRAM:
        rc = telegram_parse_update(m->native, m->native_len, &one, &ignored, &err);
        break;
    case CH_WHATSAPP:
        rc = meta_parse_whatsapp(m->native, m->native_len, &many, &n, &st, &err);
        break;
    case CH_MESSENGER:
        rc = meta_parse_messenger(m->native, m->native_len, &many, &n, &st, &err);
        break;
    default:
        sess_send_error(s, "bad_value",
                        "native push is for wechat, telegram, whatsapp and messenger bridges; "
                        "e-mail bridges post raw mail to /channels/email",
                        m->cmid, 0);
        return;
    }
    if (rc < 0) {
        sess_send_error(s, err.code, err.msg, m->cmid, 0);
        msg_free(&one);
        return;
    }
    char cmid[MSG_ID_MAX];
    snprintf(cmid, sizeof(cmid), "%s", m->cmid);
    if (!many && !ignored) {
        snprintf(one.cmid, sizeof(one.cmid), "%s", cmid);
        br_push_one(b, &one);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(many[i].cmid, sizeof(many[i].cmid), "%s", cmid);
        br_push_one(b, &many[i]);
    }
    meta_msgs_free(many, n);
    msg_free(&one);
    if (ignored || (!n && (st.statuses || st.ignored || b->channel == CH_WHATSAPP ||
                           b->channel == CH_MESSENGER))) {
        msg a; /* nothing to store: acknowledged all the same */
        msg_init(&a);
        a.type = MSG_ACK;
        snprintf(a.cmid, sizeof(a.cmid), "%s", cmid);
        sess_send_ctl_msg(s, &a); /* an answer: never dropped (sess.c) */
        msg_free(&a);
    }
}

static void br_push(bridge *b, msg *m) {
    if (m->native && m->native_len && !m->text && !m->n_att)
        br_push_native(b, m);
    else
        br_push_one(b, m);
}

void bridge_frame(sess *s, msg *m) {
    if (!s->authed) {
        if (m->type != MSG_HELLO)
            sess_send_error(s, "hello_required", "the first frame must be hello", m->cmid, 0);
        else
            br_hello(s, m);
        return;
    }
    switch (m->type) {
    case MSG_ACK:
        br_ack(s->bridge, m);
        return;
    case MSG_TEXT:
    case MSG_ATTACHMENT:
        br_push(s->bridge, m);
        return;
    default:
        sess_send_error(s, "bad_type", "this frame type cannot be sent by a bridge", m->cmid, 0);
    }
}

void bridge_drained(sess *s) {
    if (s->bridge) br_pump(s->bridge);
}

void bridge_closed(sess *s) {
    bridge *b = s->bridge;
    if (!b) return;
    s->bridge = NULL;
    b->dead = 1;
    uv_timer_stop(&b->retry);
    log_info("bridge %s: '%s' gone (%u frames not acked stay pending)", s->sock, b->consumer,
             b->n_fly);
    rconn_free(&b->rc); /* a pending read gets NULL: br_reply_begin drops its reference */
    br_unref(b);
}
