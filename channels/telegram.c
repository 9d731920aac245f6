/* telegram.c -- see telegram.h. JSON through jansson; ids kept exact as json_int_t. */
#include "telegram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/util.h"
#include "chan.h"

/* File-carrying message fields, in the order they are looked at. */
static const struct {
    const char *key;
    const char *mime; /* when the object has no mime_type */
} tg_files[] = {
    {"document", "application/octet-stream"},
    {"audio", "audio/*"},
    {"voice", "audio/ogg"},
    {"video", "video/*"},
    {"video_note", "video/mp4"},
    {"animation", "video/mp4"},
    {"sticker", "image/webp"},
};

int telegram_verify_secret(const char *header, const char *expected, cg_err *err) {
    if (!expected || !*expected) return cg_err_set(err, "forbidden", "no secret configured");
    if (!header) return cg_err_set(err, "forbidden", "no secret header");
    if (!cg_ct_equal(header, strlen(header), expected, strlen(expected)))
        return cg_err_set(err, "forbidden", "secret does not match");
    return 0;
}

/* Add one file object ({file_id, file_size, file_name, mime_type}) as an attachment. */
static int tg_add_file(msg *m, const json_t *f, const char *default_mime, cg_err *err) {
    const char *file_id = chan_json_str(f, "file_id");
    if (!chan_id_ok(file_id, 200)) return cg_err_set(err, "missing_field", "file without file_id");
    char url[MSG_URL_MAX];
    snprintf(url, sizeof(url), "tg-file:%s", file_id);
    const char *mime = chan_json_str(f, "mime_type");
    const json_t *size = json_object_get(f, "file_size");
    uint64_t sz = json_is_integer(size) && json_integer_value(size) > 0
                      ? (uint64_t)json_integer_value(size)
                      : 0;
    return chan_msg_add_att(m, url, mime ? mime : default_mime, chan_json_str(f, "file_name"), sz,
                            err);
}

/* "first last", else "@username", else "". */
static void tg_sender_name(msg *m, const json_t *from) {
    const char *first = chan_json_str(from, "first_name"), *last = chan_json_str(from, "last_name");
    const char *user = chan_json_str(from, "username");
    if (first && !*first) first = NULL;
    if (last && !*last) last = NULL;
    if (user && !*user) user = NULL;
    char buf[3 * MSG_NAME_MAX];
    if (first || last)
        snprintf(buf, sizeof(buf), "%s%s%s", first ? first : "", first && last ? " " : "",
                 last ? last : "");
    else if (user)
        snprintf(buf, sizeof(buf), "@%s", user);
    else
        buf[0] = '\0';
    if (chan_copys(m->sender_name, sizeof(m->sender_name), buf) < 0) m->sender_name[0] = '\0';
}

/* The content of a message object: attachments, then text or caption. 1 = nothing we handle. */
static int tg_content(msg *m, const json_t *jm, cg_err *err) {
    const json_t *photo = json_object_get(jm, "photo");
    if (json_is_array(photo) && json_array_size(photo) > 0) {
        const json_t *largest = json_array_get(photo, json_array_size(photo) - 1);
        if (tg_add_file(m, largest, "image/jpeg", err) < 0) return -1;
    }
    for (size_t i = 0; i < sizeof(tg_files) / sizeof(tg_files[0]); i++) {
        const json_t *f = json_object_get(jm, tg_files[i].key);
        if (json_is_object(f) && tg_add_file(m, f, tg_files[i].mime, err) < 0) return -1;
    }
    const char *text = chan_json_str(jm, "text");
    if (!text || !*text) text = chan_json_str(jm, "caption");
    if (text && !*text) text = NULL;
    const json_t *loc = json_object_get(jm, "location");
    chan_msg_inbound(m, m->n_att && !text ? MSG_ATTACHMENT : MSG_TEXT, CH_TELEGRAM);
    if (text) return msg_set_text(m, text, strlen(text), err);
    if (json_is_object(loc)) {
        const json_t *lat = json_object_get(loc, "latitude"),
                     *lon = json_object_get(loc, "longitude");
        if (!json_is_number(lat) || !json_is_number(lon))
            return cg_err_set(err, "missing_field", "location without coordinates");
        char buf[80];
        int n = snprintf(buf, sizeof(buf), "[location] (%.6f,%.6f)", json_number_value(lat),
                         json_number_value(lon));
        return msg_set_text(m, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, err);
    }
    return m->n_att ? 0 : 1;
}

/* Fill out from root (an Update object). 1 = ignored. */
static int tg_update(msg *out, const json_t *root, cg_err *err) {
    const json_t *uid = json_object_get(root, "update_id");
    if (!json_is_integer(uid) || json_integer_value(uid) < 0)
        return cg_err_set(err, "missing_field", "no update_id");
    const json_t *jm = json_object_get(root, "message");
    if (!json_is_object(jm)) return 1; /* edited_message, channel_post, callback_query, ... */

    const json_t *chat_id = json_object_get(json_object_get(jm, "chat"), "id");
    if (!json_is_integer(chat_id))
        return cg_err_set(err, "missing_field", "message without chat.id");
    const json_t *from = json_object_get(jm, "from");
    const json_t *from_id = json_object_get(from, "id");
    if (from && !json_is_integer(from_id)) return cg_err_set(err, "bad_value", "from.id");
    const json_t *date = json_object_get(jm, "date");

    int r = tg_content(out, jm, err);
    if (r != 0) return r;
    snprintf(out->meta.platform_msg_id, sizeof(out->meta.platform_msg_id), "tg:%lld",
             (long long)json_integer_value(uid));
    snprintf(out->meta.platform_chat_id, sizeof(out->meta.platform_chat_id), "%lld",
             (long long)json_integer_value(chat_id));
    snprintf(out->sender_id, sizeof(out->sender_id), "%lld",
             (long long)json_integer_value(from ? from_id : chat_id));
    if (from) tg_sender_name(out, from);
    if (json_is_integer(date) && json_integer_value(date) > 0 &&
        json_integer_value(date) < 253402300799LL)
        out->ts_client_ms = (int64_t)json_integer_value(date) * 1000;
    return 0;
}

int telegram_parse_update(const char *body, size_t len, msg *out, int *ignored, cg_err *err) {
    int ign_local = 0;
    if (!ignored) ignored = &ign_local;
    msg_free(out);
    *ignored = 0;
    json_t *root = chan_json_load(body, len, err);
    if (!root) return -1;
    int r = tg_update(out, root, err);
    json_decref(root);
    if (r == 0) return 0;
    msg_free(out);
    if (r < 0) return -1;
    *ignored = 1;
    return 0;
}

int telegram_render_send(const msg *m, const char *chat_id, char **out, cg_err *err) {
    int64_t id = 0;
    if (chan_parse_i64(chat_id, INT64_MIN, INT64_MAX, &id) < 0)
        return cg_err_set(err, "bad_value", "chat_id is not a decimal integer");
    size_t len = 0;
    char *text = chan_reply_text(m, &len, err);
    if (!text) return -1;
    json_t *root = json_pack("{s:I, s:s%}", "chat_id", (json_int_t)id, "text", text, len);
    free(text);
    char *s = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!s) return cg_err_set(err, "nomem", "cannot render JSON");
    *out = s;
    return 0;
}
