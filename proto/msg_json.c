/* msg_json.c -- msg <-> JSON with jansson. See msg.h and docs/protocol.md for the field names.
 *
 * Decoding checks what each field can hold (JSON type, size, UTF-8, NUL, enum name, range) and
 * nothing else; msg_validate() owns the rules that depend on the frame type and origin. */
#include "msg.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_IN_MAX (256 * 1024) /* bytes of input */
#define JSON_DEPTH_MAX 16        /* nested objects/arrays; the schema needs 3 */

/* ---- decoding ------------------------------------------------------------------------------ */

/* Nesting depth of the JSON text, counted on brackets outside strings. Only a cheap bound run
 * before jansson (whose own limit is 2048); jansson still does the parsing. 1 when within max. */
static int depth_ok(const char *b, size_t n, int max) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max) return 0;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

/* Field name for messages: prefix ("" / "identity." / "attachments[2].") + key, into buf. */
static const char *fname(char *buf, size_t cap, const char *pfx, const char *key) {
    snprintf(buf, cap, "%s%s", pfx, key);
    return buf;
}

/* Copy string field `key` of o into dst[cap] (NUL-terminated). Absent: dst untouched, 0.
 * Not a string: "bad_value"; longer than cap-1: "too_large"; NUL inside: "bad_value"; invalid
 * UTF-8 (cannot happen after json_loadb, re-checked anyway): "bad_utf8". */
static int get_str(json_t *o, const char *pfx, const char *key, char *dst, size_t cap,
                   cg_err *err) {
    char nb[64];
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_string(v))
        return cg_err_set(err, "bad_value", "field '%s' must be a string",
                          fname(nb, sizeof(nb), pfx, key));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n >= cap)
        return cg_err_set(err, "too_large", "field '%s' is over %zu bytes",
                          fname(nb, sizeof(nb), pfx, key), cap - 1);
    if (memchr(s, '\0', n))
        return cg_err_set(err, "bad_value", "field '%s' contains a NUL byte",
                          fname(nb, sizeof(nb), pfx, key));
    if (!msg_utf8_valid(s, n))
        return cg_err_set(err, "bad_utf8", "field '%s' is not valid UTF-8",
                          fname(nb, sizeof(nb), pfx, key));
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* Integer field `key` of o within [min,max] into *out. Absent: *out untouched. A real, string or
 * anything else, or a value out of range: "bad_value". */
static int get_int(json_t *o, const char *pfx, const char *key, int64_t min, int64_t max,
                   int64_t *out, cg_err *err) {
    char nb[64];
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v))
        return cg_err_set(err, "bad_value", "field '%s' must be an integer",
                          fname(nb, sizeof(nb), pfx, key));
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return cg_err_set(err, "bad_value", "field '%s' must be within %lld..%lld",
                          fname(nb, sizeof(nb), pfx, key), (long long)min, (long long)max);
    *out = (int64_t)i;
    return 0;
}

/* After a failed decode, keep the client's message id if it is readable, so the error frame
 * can name the frame it refuses. */
static void keep_cmid(json_t *root, msg *m) {
    json_t *c = json_is_object(root) ? json_object_get(root, "cmid") : NULL;
    if (!json_is_string(c)) return;
    size_t n = json_string_length(c);
    if (n < sizeof(m->cmid) && msg_utf8_valid(json_string_value(c), n) &&
        !memchr(json_string_value(c), 0, n))
        memcpy(m->cmid, json_string_value(c), n + 1);
}

/* Typed wrappers: absent fields leave the destination as it is (zero after msg_init). */
#define GET_INT(o, pfx, key, min, max, dst)                                                        \
    do {                                                                                           \
        int64_t v_ = (int64_t)(dst);                                                               \
        if (get_int((o), (pfx), (key), (min), (max), &v_, err)) return -1;                         \
        (dst) = v_;                                                                                \
    } while (0)
#define GET_STR(o, pfx, key, dst)                                                                  \
    do {                                                                                           \
        if (get_str((o), (pfx), (key), (dst), sizeof(dst), err)) return -1;                        \
    } while (0)

/* Short string field `key` (an enum name) into dst[cap]. 1 when present, 0 when absent, -1 when
 * not a string ("bad_value") or too long to be any known name (`code`). */
static int get_name(json_t *o, const char *key, char *dst, size_t cap, const char *code,
                    cg_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_string(v)) return cg_err_set(err, "bad_value", "field '%s' must be a string", key);
    size_t n = json_string_length(v);
    if (n >= cap) return cg_err_set(err, code, "unknown %s", key);
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    return 1;
}

/* Enum field: a name that parse() knows, else `code` ("bad_value", or "bad_type" for `type`). */
#define GET_ENUM(o, key, parse, dst, code)                                                         \
    do {                                                                                           \
        char s_[32];                                                                               \
        int r_ = get_name((o), (key), s_, sizeof(s_), (code), err);                                \
        if (r_ < 0) return -1;                                                                     \
        if (r_ > 0 && parse(s_, &(dst)))                                                           \
            return cg_err_set(err, (code), "unknown %s '%s'", (key), s_);                          \
    } while (0)

static int get_object(json_t *o, const char *key, json_t **out, cg_err *err) {
    *out = json_object_get(o, key);
    if (*out && !json_is_object(*out))
        return cg_err_set(err, "bad_value", "field '%s' must be an object", key);
    return 0;
}

static int get_array(json_t *o, const char *key, size_t max, json_t **out, cg_err *err) {
    *out = json_object_get(o, key);
    if (!*out) return 0;
    if (!json_is_array(*out))
        return cg_err_set(err, "bad_value", "field '%s' must be an array", key);
    if (json_array_size(*out) > max)
        return cg_err_set(err, "too_large", "field '%s' has over %zu entries", key, max);
    return 0;
}

static int dec_attachments(json_t *o, msg *m, cg_err *err) {
    json_t *arr;
    if (get_array(o, "attachments", MSG_ATT_MAX, &arr, err)) return -1;
    if (!arr) return 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *e = json_array_get(arr, i);
        msg_attachment *a = &m->att[i];
        char pfx[48];
        snprintf(pfx, sizeof(pfx), "attachments[%zu].", i);
        if (!json_is_object(e))
            return cg_err_set(err, "bad_value", "field 'attachments[%zu]' must be an object", i);
        GET_STR(e, pfx, "url", a->url);
        GET_STR(e, pfx, "mime", a->mime);
        GET_INT(e, pfx, "size", 0, INT64_MAX, a->size);
        GET_STR(e, pfx, "name", a->name);
        m->n_att = (uint8_t)(i + 1);
    }
    return 0;
}

static int dec_items(json_t *o, msg *m, cg_err *err) {
    json_t *arr;
    if (get_array(o, "items", MSG_ITEMS_MAX, &arr, err)) return -1;
    if (!arr || json_array_size(arr) == 0) return 0;
    size_t n = json_array_size(arr);
    m->items = calloc(n, sizeof(*m->items));
    if (!m->items) return cg_err_set(err, "nomem", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        msg_queue_item *it = &m->items[i];
        char pfx[48];
        snprintf(pfx, sizeof(pfx), "items[%zu].", i);
        m->n_items = (uint32_t)(i + 1);
        if (!json_is_object(e))
            return cg_err_set(err, "bad_value", "field 'items[%zu]' must be an object", i);
        GET_STR(e, pfx, "conv", it->conv);
        GET_INT(e, pfx, "position", 0, UINT32_MAX, it->position);
        GET_INT(e, pfx, "since", 0, INT64_MAX, it->since_ms);
        GET_ENUM(e, "channel", msg_channel_parse, it->channel, "bad_value");
        GET_INT(e, pfx, "priority", 0, 9, it->priority);
        GET_INT(e, pfx, "ring", 0, 255, it->ring);
        GET_STR(e, pfx, "preview", it->preview);
    }
    return 0;
}

static int dec_identity(json_t *o, msg *m, cg_err *err) {
    json_t *id;
    if (get_object(o, "identity", &id, err)) return -1;
    if (!id) return 0;
    GET_STR(id, "identity.", "customer_id", m->identity.customer_id);
    GET_STR(id, "identity.", "order_no", m->identity.order_no);
    GET_STR(id, "identity.", "account", m->identity.account);
    GET_STR(id, "identity.", "locale", m->identity.locale);
    GET_STR(id, "identity.", "tier", m->identity.tier);
    return 0;
}

static int dec_meta(json_t *o, msg *m, cg_err *err) {
    json_t *mt;
    if (get_object(o, "meta", &mt, err)) return -1;
    if (!mt) return 0;
    GET_STR(mt, "meta.", "platform_msg_id", m->meta.platform_msg_id);
    GET_STR(mt, "meta.", "platform_chat_id", m->meta.platform_chat_id);
    GET_STR(mt, "meta.", "thread_id", m->meta.thread_id);
    GET_STR(mt, "meta.", "in_reply_to", m->meta.in_reply_to);
    GET_STR(mt, "meta.", "subject", m->meta.subject);
    return 0;
}

static int dec_text(json_t *o, msg *m, cg_err *err) {
    json_t *v = json_object_get(o, "text");
    if (!v) return 0;
    if (!json_is_string(v)) return cg_err_set(err, "bad_value", "field 'text' must be a string");
    return msg_set_text(m, json_string_value(v), json_string_length(v), err);
}

static int dec_native(json_t *o, msg *m, cg_err *err) {
    json_t *v = json_object_get(o, "native");
    if (!v) return 0;
    if (!json_is_string(v)) return cg_err_set(err, "bad_value", "field 'native' must be a string");
    return msg_set_native(m, json_string_value(v), json_string_length(v), err);
}

static int dec_skills(json_t *o, msg *m, cg_err *err) {
    json_t *arr;
    if (get_array(o, "skills", MSG_SKILLS_MAX, &arr, err)) return -1;
    if (!arr) return 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return cg_err_set(err, "bad_value", "field 'skills[%zu]' must be a string", i);
        size_t n = json_string_length(v);
        if (n >= MSG_CODE_MAX)
            return cg_err_set(err, "too_large", "field 'skills[%zu]' is over %d bytes", i,
                              MSG_CODE_MAX - 1);
        if (!msg_utf8_valid(json_string_value(v), n)) /* no NUL: jansson refuses \u0000 */
            return cg_err_set(err, "bad_utf8", "field 'skills[%zu]' is not valid UTF-8", i);
        memcpy(m->skills[i], json_string_value(v), n);
        m->skills[i][n] = '\0';
        m->n_skills = (uint8_t)(i + 1);
    }
    return 0;
}

static int dec_fields(json_t *o, msg *m, cg_err *err) {
    GET_INT(o, "", "v", 0, UINT8_MAX, m->v);
    GET_ENUM(o, "type", msg_type_parse, m->type, "bad_type");
    GET_STR(o, "", "id", m->id);
    GET_STR(o, "", "cmid", m->cmid);
    GET_STR(o, "", "conv", m->conv);
    GET_INT(o, "", "seq", 0, INT64_MAX, m->seq);
    GET_ENUM(o, "channel", msg_channel_parse, m->channel, "bad_value");
    GET_ENUM(o, "dir", msg_dir_parse, m->dir, "bad_value");
    GET_ENUM(o, "role", msg_role_parse, m->role, "bad_value");
    GET_STR(o, "", "sender_id", m->sender_id);
    GET_STR(o, "", "sender_name", m->sender_name);
    GET_INT(o, "", "cts", 0, INT64_MAX, m->ts_client_ms);
    GET_INT(o, "", "ts", 0, INT64_MAX, m->ts_ms);
    if (dec_text(o, m, err) || dec_attachments(o, m, err)) return -1;
    if (dec_identity(o, m, err) || dec_meta(o, m, err)) return -1;
    GET_STR(o, "", "agent_id", m->agent_id);
    GET_STR(o, "", "agent_name", m->agent_name);
    GET_STR(o, "", "queue", m->queue);
    GET_INT(o, "", "position", 0, UINT32_MAX, m->position);
    GET_INT(o, "", "wait", 0, UINT32_MAX, m->wait_s);
    GET_STR(o, "", "code", m->code);
    GET_INT(o, "", "rating", 1, 5, m->rating);
    json_t *r = json_object_get(o, "retry");
    if (r && !json_is_boolean(r))
        return cg_err_set(err, "bad_value", "field 'retry' must be a boolean");
    m->retry = json_is_true(r) ? 1 : 0;
    GET_INT(o, "", "priority", 0, 9, m->priority);
    GET_STR(o, "", "token", m->token);
    GET_INT(o, "", "last_seq", 0, INT64_MAX, m->last_seq);
    GET_STR(o, "", "tenant", m->tenant);
    GET_STR(o, "", "sock", m->sock);
    if (dec_skills(o, m, err)) return -1;
    GET_INT(o, "", "cap", 0, UINT16_MAX, m->cap);
    if (dec_native(o, m, err)) return -1;
    return dec_items(o, m, err);
}

/* Parses buf[len] with jansson (duplicate keys refused, no NUL in strings, nothing after the
 * value) and fills m, which it msg_free()s first. On error m is left msg_init()ed. */
int msg_decode_json(msg *m, const char *buf, size_t len, cg_err *err) {
    msg_free(m);
    if (len > JSON_IN_MAX)
        return cg_err_set(err, "too_large", "frame is over %d bytes", JSON_IN_MAX);
    if (!depth_ok(buf, len, JSON_DEPTH_MAX))
        return cg_err_set(err, "too_large", "frame nests deeper than %d", JSON_DEPTH_MAX);
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_invalid_utf8)
            return cg_err_set(err, "bad_utf8", "frame is not valid UTF-8");
        return cg_err_set(err, "bad_json", "%s at byte %d", je.text, je.position);
    }
    int rc = 0;
    if (!json_is_object(root))
        rc = cg_err_set(err, "bad_json", "frame must be a JSON object");
    else
        rc = dec_fields(root, m, err);
    if (rc) {
        msg_free(m);
        keep_cmid(root, m);
    }
    json_decref(root);
    return rc;
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* Builders: each adds key to o unless the value is zero/empty. A failed allocation or a string
 * jansson refuses (invalid UTF-8) sets *bad. */
static void put(json_t *o, const char *key, json_t *v, int *bad) {
    if (!v || json_object_set_new(o, key, v)) *bad = 1;
}

/* s is a fixed array of cap bytes: never read past it, even if it lacks its NUL. */
static void put_strn(json_t *o, const char *key, const char *s, size_t cap, int *bad) {
    size_t n = strnlen(s, cap);
    if (n) put(o, key, json_stringn(s, n), bad);
}
#define put_str(o, key, arr, bad) put_strn((o), (key), (arr), sizeof(arr), (bad))
#define put_name(o, key, s, bad) put((o), (key), json_string(s), (bad))

static void put_int(json_t *o, const char *key, int64_t v, int *bad) {
    if (v) put(o, key, json_integer((json_int_t)v), bad);
}

static void put_obj(json_t *o, const char *key, json_t *sub, int *bad) {
    if (sub && json_object_size(sub) == 0) {
        json_decref(sub);
        return;
    }
    put(o, key, sub, bad);
}

static json_t *enc_attachments(const msg *m, int *bad) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    unsigned n = m->n_att > MSG_ATT_MAX ? MSG_ATT_MAX : m->n_att;
    for (unsigned i = 0; i < n; i++) {
        const msg_attachment *a = &m->att[i];
        json_t *e = json_object();
        if (!e || json_array_append_new(arr, e)) {
            *bad = 1;
            break;
        }
        put_str(e, "url", a->url, bad);
        put_str(e, "mime", a->mime, bad);
        put_int(e, "size", (int64_t)a->size, bad);
        put_str(e, "name", a->name, bad);
    }
    return arr;
}

static json_t *enc_items(const msg *m, int *bad) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    uint32_t n = m->items ? m->n_items : 0;
    for (uint32_t i = 0; i < n; i++) {
        const msg_queue_item *it = &m->items[i];
        json_t *e = json_object();
        if (!e || json_array_append_new(arr, e)) {
            *bad = 1;
            break;
        }
        put_str(e, "conv", it->conv, bad);
        put_int(e, "position", it->position, bad);
        put_int(e, "since", it->since_ms, bad);
        if (it->channel != CH_NONE && (unsigned)it->channel < CH_COUNT)
            put_name(e, "channel", msg_channel_name(it->channel), bad);
        put_int(e, "priority", it->priority, bad);
        if (it->ring) put_int(e, "ring", it->ring, bad);
        put_str(e, "preview", it->preview, bad);
    }
    return arr;
}

static json_t *enc_skills(const msg *m, int *bad) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    unsigned n = m->n_skills > MSG_SKILLS_MAX ? MSG_SKILLS_MAX : m->n_skills;
    for (unsigned i = 0; i < n; i++) {
        json_t *s = json_stringn(m->skills[i], strnlen(m->skills[i], MSG_CODE_MAX));
        if (!s || json_array_append_new(arr, s)) *bad = 1;
    }
    return arr;
}

static json_t *enc_identity(const msg_identity *id, int *bad) {
    json_t *o = json_object();
    if (!o) return NULL;
    put_str(o, "customer_id", id->customer_id, bad);
    put_str(o, "order_no", id->order_no, bad);
    put_str(o, "account", id->account, bad);
    put_str(o, "locale", id->locale, bad);
    put_str(o, "tier", id->tier, bad);
    return o;
}

static json_t *enc_meta(const msg_meta *mt, int *bad) {
    json_t *o = json_object();
    if (!o) return NULL;
    put_str(o, "platform_msg_id", mt->platform_msg_id, bad);
    put_str(o, "platform_chat_id", mt->platform_chat_id, bad);
    put_str(o, "thread_id", mt->thread_id, bad);
    put_str(o, "in_reply_to", mt->in_reply_to, bad);
    put_str(o, "subject", mt->subject, bad);
    return o;
}

/* The whole msg as a new jansson object (caller decrefs), or NULL. */
static json_t *enc_msg(const msg *m) {
    int bad = 0;
    json_t *o = json_object();
    if (!o) return NULL;
    put(o, "v", json_integer(m->v ? m->v : MSG_VERSION), &bad);
    if (m->type != MSG_UNKNOWN && (unsigned)m->type < MSG_TYPE_COUNT)
        put_name(o, "type", msg_type_name(m->type), &bad);
    put_str(o, "id", m->id, &bad);
    put_str(o, "cmid", m->cmid, &bad);
    put_str(o, "conv", m->conv, &bad);
    put_int(o, "seq", (int64_t)m->seq, &bad);
    if (m->channel != CH_NONE && (unsigned)m->channel < CH_COUNT)
        put_name(o, "channel", msg_channel_name(m->channel), &bad);
    if (m->dir != DIR_NONE && m->dir <= DIR_OUT) put_name(o, "dir", msg_dir_name(m->dir), &bad);
    if (m->role != ROLE_NONE && (unsigned)m->role < ROLE_COUNT)
        put_name(o, "role", msg_role_name(m->role), &bad);
    put_str(o, "sender_id", m->sender_id, &bad);
    put_str(o, "sender_name", m->sender_name, &bad);
    put_int(o, "ts", m->ts_ms, &bad);
    put_int(o, "cts", m->ts_client_ms, &bad);
    if (m->text && m->text_len) put(o, "text", json_stringn(m->text, m->text_len), &bad);
    if (m->n_att) put(o, "attachments", enc_attachments(m, &bad), &bad);
    put_obj(o, "identity", enc_identity(&m->identity, &bad), &bad);
    put_obj(o, "meta", enc_meta(&m->meta, &bad), &bad);
    put_str(o, "agent_id", m->agent_id, &bad);
    put_str(o, "agent_name", m->agent_name, &bad);
    put_str(o, "queue", m->queue, &bad);
    put_int(o, "position", m->position, &bad);
    put_int(o, "wait", m->wait_s, &bad);
    put_str(o, "code", m->code, &bad);
    put_int(o, "rating", m->rating, &bad);
    if (m->retry) put(o, "retry", json_true(), &bad);
    put_int(o, "priority", m->priority, &bad);
    put_str(o, "token", m->token, &bad);
    put_int(o, "last_seq", (int64_t)m->last_seq, &bad);
    put_str(o, "tenant", m->tenant, &bad);
    put_str(o, "sock", m->sock, &bad);
    if (m->n_skills) put(o, "skills", enc_skills(m, &bad), &bad);
    put_int(o, "cap", m->cap, &bad);
    if (m->n_items && m->items) put(o, "items", enc_items(m, &bad), &bad);
    if (m->native && m->native_len) put(o, "native", json_stringn(m->native, m->native_len), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Growing output buffer for json_dump_callback; data[0..headroom) is reserved. */
typedef struct jbuf {
    unsigned char *data;
    size_t len, cap;
} jbuf;

static int jbuf_write(const char *s, size_t n, void *ud) {
    jbuf *b = ud;
    if (n > b->cap - b->len) {
        size_t cap = b->cap;
        while (n > cap - b->len) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        unsigned char *p = realloc(b->data, cap);
        if (!p) return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* Compact UTF-8 JSON written straight after `headroom` reserved bytes of one malloc'd buffer,
 * returned to the caller (free()); *len = payload bytes. NULL on allocation failure, or when a
 * string of m is not valid UTF-8 (msg_validate() catches that first). */
unsigned char *msg_encode_json(const msg *m, size_t headroom, size_t *len) {
    json_t *o = enc_msg(m);
    if (!o) return NULL;
    jbuf b = {NULL, headroom, 0};
    size_t want = m->text_len < MSG_TEXT_MAX ? m->text_len : MSG_TEXT_MAX;
    want += m->native_len < MSG_NATIVE_MAX ? m->native_len : MSG_NATIVE_MAX;
    if (headroom > SIZE_MAX - 512 - want) {
        json_decref(o);
        return NULL;
    }
    b.cap = headroom + 512 + want;
    b.data = malloc(b.cap);
    int rc = b.data ? json_dump_callback(o, jbuf_write, &b, JSON_COMPACT) : -1;
    json_decref(o);
    if (rc) {
        free(b.data);
        return NULL;
    }
    *len = b.len - headroom;
    return b.data;
}
