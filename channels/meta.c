/* meta.c -- see meta.h. JSON through jansson, HMAC through OpenSSL. */
#include "meta.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../common/util.h"
#include "chan.h"

/* ---- verification ---- */

int meta_verify_signature(const char *app_secret, const char *body, size_t len, const char *header,
                          cg_err *err) {
    static const char prefix[] = "sha256=";
    unsigned char given[32], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!app_secret || !*app_secret) return cg_err_set(err, "bad_signature", "no app secret");
    if (len > CHAN_BODY_MAX) return cg_err_set(err, "too_large", "body too large");
    if (!body && len) return cg_err_set(err, "bad_signature", "no body");
    if (!header || strncmp(header, prefix, sizeof(prefix) - 1) != 0)
        return cg_err_set(err, "bad_signature", "signature header is not sha256=<hex>");
    const char *hex = header + sizeof(prefix) - 1;
    if (chan_hex_decode(hex, strlen(hex), given, sizeof(given)) < 0)
        return cg_err_set(err, "bad_signature", "signature header is not sha256=<hex>");
    if (!HMAC(EVP_sha256(), app_secret, (int)strlen(app_secret),
              (const unsigned char *)(body ? body : ""), len, mac, &maclen) ||
        maclen != 32)
        return cg_err_set(err, "crypto", "HMAC failed");
    if (!cg_ct_equal(mac, maclen, given, sizeof(given)))
        return cg_err_set(err, "bad_signature", "signature does not match");
    return 0;
}

int meta_verify_challenge(const char *mode, const char *verify_token_given,
                          const char *verify_token_expected, cg_err *err) {
    if (!mode || strcmp(mode, "subscribe") != 0)
        return cg_err_set(err, "forbidden", "hub.mode is not subscribe");
    if (!verify_token_expected || !*verify_token_expected || !verify_token_given)
        return cg_err_set(err, "forbidden", "no verify token");
    if (!cg_ct_equal(verify_token_given, strlen(verify_token_given), verify_token_expected,
                     strlen(verify_token_expected)))
        return cg_err_set(err, "forbidden", "verify token does not match");
    return 0;
}

/* ---- a growing, bounded array of msgs ---- */

typedef struct msg_list {
    msg *v;
    size_t n;
} msg_list;

/* A new msg_init()ed slot at the end of l; NULL with err when full or out of memory. */
static msg *list_push(msg_list *l, cg_err *err) {
    if (l->n >= META_MSGS_MAX) {
        cg_err_set(err, "too_large", "more than %d messages in one body", META_MSGS_MAX);
        return NULL;
    }
    if (!l->v) {
        l->v = calloc(META_MSGS_MAX, sizeof(msg));
        if (!l->v) {
            cg_err_set(err, "nomem", "out of memory");
            return NULL;
        }
    }
    msg *m = &l->v[l->n++];
    msg_init(m);
    return m;
}

/* Drop the last slot (an entry that turned out invalid). */
static void list_pop(msg_list *l) {
    msg_free(&l->v[--l->n]);
}

int meta_fresh(const msg *m, long long now_ms, cg_err *err) {
    long long ts = (long long)m->ts_client_ms;
    if (ts == 0) return 0;
    if (ts < now_ms - META_MAX_AGE_MS)
        return cg_err_set(err, "stale", "event is %lld s old (limit %lld s)", (now_ms - ts) / 1000,
                          META_MAX_AGE_MS / 1000);
    if (ts > now_ms + META_MAX_AHEAD_MS)
        return cg_err_set(err, "stale", "event is %lld s ahead of the server clock",
                          (ts - now_ms) / 1000);
    return 0;
}

void meta_msgs_free(msg *msgs, size_t n) {
    if (!msgs) return;
    for (size_t i = 0; i < n; i++)
        msg_free(&msgs[i]);
    free(msgs);
}

static int set_text_str(msg *m, const char *s, cg_err *err) {
    return msg_set_text(m, s, strlen(s), err);
}

/* ---- WhatsApp ---- */

static const char *const wa_media_types[] = {"image", "video", "audio", "document", "sticker"};

/* The profile name of wa_id in value.contacts[], or NULL. */
static const char *wa_contact_name(const json_t *value, const char *wa_id) {
    const json_t *contacts = json_object_get(value, "contacts");
    size_t i;
    const json_t *c;
    const char *first = NULL;
    json_array_foreach(contacts, i, c) {
        const char *name = chan_json_str(json_object_get(c, "profile"), "name");
        if (!name) continue;
        if (!first) first = name;
        const char *id = chan_json_str(c, "wa_id");
        if (id && strcmp(id, wa_id) == 0) return name;
    }
    return first;
}

/* Fill the content of one WhatsApp message object of the given type. */
static int wa_fill_content(msg *m, const json_t *jm, const char *type, cg_err *err) {
    if (strcmp(type, "text") == 0) {
        const char *body = chan_json_str(json_object_get(jm, "text"), "body");
        if (!body || !*body) return cg_err_set(err, "missing_field", "text without body");
        chan_msg_inbound(m, MSG_TEXT, CH_WHATSAPP);
        return set_text_str(m, body, err);
    }
    for (size_t i = 0; i < sizeof(wa_media_types) / sizeof(wa_media_types[0]); i++) {
        if (strcmp(type, wa_media_types[i]) != 0) continue;
        const json_t *media = json_object_get(jm, type);
        const char *id = chan_json_str(media, "id");
        if (!chan_id_ok(id, 200)) return cg_err_set(err, "missing_field", "media without id");
        char url[MSG_URL_MAX];
        snprintf(url, sizeof(url), "wa-media:%s", id);
        chan_msg_inbound(m, MSG_ATTACHMENT, CH_WHATSAPP);
        if (chan_msg_add_att(m, url, chan_json_str(media, "mime_type"),
                             chan_json_str(media, "filename"), 0, err) < 0)
            return -1;
        const char *caption = chan_json_str(media, "caption");
        return caption ? set_text_str(m, caption, err) : 0;
    }
    chan_msg_inbound(m, MSG_TEXT, CH_WHATSAPP);
    if (strcmp(type, "location") == 0) {
        const json_t *loc = json_object_get(jm, "location");
        const json_t *lat = json_object_get(loc, "latitude"),
                     *lon = json_object_get(loc, "longitude");
        if (!json_is_number(lat) || !json_is_number(lon))
            return cg_err_set(err, "missing_field", "location without coordinates");
        const char *name = chan_json_str(loc, "name"), *addr = chan_json_str(loc, "address");
        return chan_set_textf(m, err, "[location] %s%s%s%s(%.6f,%.6f)", name ? name : "",
                              name ? " " : "", addr ? addr : "", addr ? " " : "",
                              json_number_value(lat), json_number_value(lon));
    }
    if (strcmp(type, "button") == 0) {
        const char *t = chan_json_str(json_object_get(jm, "button"), "text");
        if (!t) return cg_err_set(err, "missing_field", "button without text");
        return set_text_str(m, t, err);
    }
    if (strcmp(type, "interactive") == 0) {
        const json_t *in = json_object_get(jm, "interactive");
        const char *t = chan_json_str(json_object_get(in, "button_reply"), "title");
        if (!t) t = chan_json_str(json_object_get(in, "list_reply"), "title");
        if (!t) return cg_err_set(err, "missing_field", "interactive reply without title");
        return set_text_str(m, t, err);
    }
    if (strcmp(type, "reaction") == 0) {
        const char *e = chan_json_str(json_object_get(jm, "reaction"), "emoji");
        return chan_set_textf(m, err, "[reaction] %s", e ? e : "");
    }
    return chan_set_textf(m, err, "[unsupported whatsapp message: %s]",
                          chan_id_ok(type, 32) ? type : "?");
}

/* One element of value.messages[] into m. -1 means "skip it" (err says why). */
static int wa_message(msg *m, const json_t *value, const json_t *jm, cg_err *err) {
    const char *from = chan_json_str(jm, "from"), *id = chan_json_str(jm, "id");
    const char *type = chan_json_str(jm, "type"), *ts = chan_json_str(jm, "timestamp");
    if (!chan_id_ok(from, MSG_ID_MAX - 1) || !chan_id_ok(id, MSG_META_MAX - 1) || !type)
        return cg_err_set(err, "missing_field", "message without from, id or type");
    if (wa_fill_content(m, jm, type, err) < 0) return -1;
    int64_t secs = 0;
    if (ts && chan_parse_i64(ts, 0, 253402300799LL, &secs) == 0) m->ts_client_ms = secs * 1000;
    chan_copys(m->sender_id, sizeof(m->sender_id), from);
    chan_copys(m->meta.platform_chat_id, sizeof(m->meta.platform_chat_id), from);
    chan_copys(m->meta.platform_msg_id, sizeof(m->meta.platform_msg_id), id);
    if (chan_copys(m->sender_name, sizeof(m->sender_name), wa_contact_name(value, from)) < 0)
        m->sender_name[0] = '\0';
    const char *ctx_id = chan_json_str(json_object_get(jm, "context"), "id");
    if (chan_id_ok(ctx_id, MSG_META_MAX - 1))
        chan_copys(m->meta.in_reply_to, sizeof(m->meta.in_reply_to), ctx_id);
    return 0;
}

/* Collect the messages of one changes[].value object. */
static int wa_value(msg_list *l, const json_t *value, meta_stats *st, cg_err *err) {
    const json_t *statuses = json_object_get(value, "statuses");
    if (json_is_array(statuses)) st->statuses += json_array_size(statuses);
    const json_t *msgs = json_object_get(value, "messages");
    if (!msgs) return 0;
    if (!json_is_array(msgs)) return cg_err_set(err, "bad_json", "messages is not an array");
    size_t i;
    const json_t *jm;
    json_array_foreach(msgs, i, jm) {
        msg *m = list_push(l, err);
        if (!m) return -1;
        if (wa_message(m, value, jm, NULL) < 0) {
            list_pop(l);
            st->invalid++;
        }
    }
    return 0;
}

int meta_parse_whatsapp(const char *body, size_t len, msg **out, size_t *n, meta_stats *st,
                        cg_err *err) {
    meta_stats local = {0};
    msg_list l = {0};
    *out = NULL;
    *n = 0;
    if (!st) st = &local;
    memset(st, 0, sizeof(*st));
    json_t *root = chan_json_load(body, len, err);
    if (!root) return -1;
    const json_t *entries = json_object_get(root, "entry"), *e;
    size_t i, j;
    int rc = 0;
    if (!json_is_array(entries)) rc = cg_err_set(err, "bad_json", "no entry array");
    json_array_foreach(entries, i, e) {
        if (rc < 0) break;
        const json_t *changes = json_object_get(e, "changes"), *c;
        if (!json_is_array(changes)) {
            rc = cg_err_set(err, "bad_json", "entry without changes array");
            break;
        }
        json_array_foreach(changes, j, c) {
            const char *field = chan_json_str(c, "field");
            const json_t *value = json_object_get(c, "value");
            if ((field && strcmp(field, "messages") != 0) || !json_is_object(value)) {
                st->ignored++;
                continue;
            }
            if ((rc = wa_value(&l, value, st, err)) < 0) break;
        }
    }
    json_decref(root);
    if (rc < 0) {
        meta_msgs_free(l.v, l.n);
        return -1;
    }
    if (l.n == 0) {
        free(l.v);
        l.v = NULL;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

/* ---- Messenger ---- */

static const char *fb_att_mime(const char *type) {
    if (!type) return NULL;
    if (strcmp(type, "image") == 0) return "image/*";
    if (strcmp(type, "video") == 0) return "video/*";
    if (strcmp(type, "audio") == 0) return "audio/*";
    if (strcmp(type, "file") == 0) return "application/octet-stream";
    return NULL;
}

/* message.attachments[] -> attachment references; ones without a usable URL are skipped. */
static void fb_attachments(msg *m, const json_t *message) {
    const json_t *atts = json_object_get(message, "attachments"), *a;
    size_t i;
    json_array_foreach(atts, i, a) {
        const char *url = chan_json_str(json_object_get(a, "payload"), "url");
        if (!url || (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)) continue;
        (void)chan_msg_add_att(m, url, fb_att_mime(chan_json_str(a, "type")), NULL, 0, NULL);
    }
}

/* One messaging[] event into m. Returns 1 when it is to be ignored, 0 filled, -1 invalid. */
static int fb_event(msg *m, const json_t *ev, cg_err *err) {
    const char *sender = chan_json_str(json_object_get(ev, "sender"), "id");
    const json_t *message = json_object_get(ev, "message");
    const json_t *postback = json_object_get(ev, "postback");
    if (!json_is_object(message) && !json_is_object(postback)) return 1; /* delivery, read, ... */
    if (json_is_true(json_object_get(message, "is_echo"))) return 1;
    if (!chan_id_ok(sender, MSG_ID_MAX - 1))
        return cg_err_set(err, "missing_field", "event without sender.id");
    const json_t *ts = json_object_get(ev, "timestamp");
    if (json_is_integer(ts) && json_integer_value(ts) > 0 &&
        json_integer_value(ts) < 253402300799000LL)
        m->ts_client_ms = json_integer_value(ts);

    if (json_is_object(message)) {
        const char *mid = chan_json_str(message, "mid"), *text = chan_json_str(message, "text");
        if (text && !*text) text = NULL;
        if (!chan_id_ok(mid, MSG_META_MAX - 1))
            return cg_err_set(err, "missing_field", "message without mid");
        chan_copys(m->meta.platform_msg_id, sizeof(m->meta.platform_msg_id), mid);
        fb_attachments(m, message);
        chan_msg_inbound(m, text ? MSG_TEXT : MSG_ATTACHMENT, CH_MESSENGER);
        if (text && set_text_str(m, text, err) < 0) return -1;
        if (!text && m->n_att == 0) {
            m->type = MSG_TEXT;
            if (set_text_str(m, "[unsupported messenger attachment]", err) < 0) return -1;
        }
        const char *reply_to = chan_json_str(json_object_get(message, "reply_to"), "mid");
        if (chan_id_ok(reply_to, MSG_META_MAX - 1))
            chan_copys(m->meta.in_reply_to, sizeof(m->meta.in_reply_to), reply_to);
    } else {
        const char *title = chan_json_str(postback, "title"), *mid = chan_json_str(postback, "mid");
        if (!title) return cg_err_set(err, "missing_field", "postback without title");
        chan_msg_inbound(m, MSG_TEXT, CH_MESSENGER);
        if (set_text_str(m, title, err) < 0) return -1;
        if (chan_id_ok(mid, MSG_META_MAX - 1))
            chan_copys(m->meta.platform_msg_id, sizeof(m->meta.platform_msg_id), mid);
        else
            snprintf(m->meta.platform_msg_id, sizeof(m->meta.platform_msg_id), "pb:%s:%lld", sender,
                     (long long)m->ts_client_ms);
    }
    chan_copys(m->sender_id, sizeof(m->sender_id), sender);
    chan_copys(m->meta.platform_chat_id, sizeof(m->meta.platform_chat_id), sender);
    return 0;
}

int meta_parse_messenger(const char *body, size_t len, msg **out, size_t *n, meta_stats *st,
                         cg_err *err) {
    meta_stats local = {0};
    msg_list l = {0};
    *out = NULL;
    *n = 0;
    if (!st) st = &local;
    memset(st, 0, sizeof(*st));
    json_t *root = chan_json_load(body, len, err);
    if (!root) return -1;
    const json_t *entries = json_object_get(root, "entry"), *e;
    size_t i, j;
    int rc = 0;
    if (!json_is_array(entries)) rc = cg_err_set(err, "bad_json", "no entry array");
    json_array_foreach(entries, i, e) {
        if (rc < 0) break;
        const json_t *events = json_object_get(e, "messaging"), *ev;
        if (!events) { /* standby (handover protocol) and other fields */
            st->ignored++;
            continue;
        }
        if (!json_is_array(events)) {
            rc = cg_err_set(err, "bad_json", "messaging is not an array");
            break;
        }
        json_array_foreach(events, j, ev) {
            msg *m = list_push(&l, err);
            if (!m) {
                rc = -1;
                break;
            }
            int r = fb_event(m, ev, NULL);
            if (r == 0) continue;
            list_pop(&l);
            if (r > 0)
                st->ignored++;
            else
                st->invalid++;
        }
    }
    json_decref(root);
    if (rc < 0) {
        meta_msgs_free(l.v, l.n);
        return -1;
    }
    if (l.n == 0) {
        free(l.v);
        l.v = NULL;
    }
    *out = l.v;
    *n = l.n;
    return 0;
}

/* ---- replies ---- */

/* Dump root (stolen: decref'd here) as compact JSON into *out. */
static int dump(json_t *root, char **out, cg_err *err) {
    char *s = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!s) return cg_err_set(err, "nomem", "cannot render JSON");
    *out = s;
    return 0;
}

int meta_render_whatsapp(const msg *m, const char *to, char **out, cg_err *err) {
    if (!chan_id_ok(to, MSG_META_MAX - 1)) return cg_err_set(err, "bad_value", "invalid 'to'");
    size_t len = 0;
    char *text = chan_reply_text(m, &len, err);
    if (!text) return -1;
    json_t *root = json_pack("{s:s, s:s, s:s, s:{s:s%}}", "messaging_product", "whatsapp", "to", to,
                             "type", "text", "text", "body", text, len);
    free(text);
    return dump(root, out, err);
}

int meta_render_messenger(const msg *m, const char *psid, char **out, cg_err *err) {
    if (!chan_id_ok(psid, MSG_META_MAX - 1)) return cg_err_set(err, "bad_value", "invalid psid");
    size_t len = 0;
    char *text = chan_reply_text(m, &len, err);
    if (!text) return -1;
    json_t *root = json_pack("{s:{s:s}, s:s, s:{s:s%}}", "recipient", "id", psid, "messaging_type",
                             "RESPONSE", "message", "text", text, len);
    free(text);
    return dump(root, out, err);
}
