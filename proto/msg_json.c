/* msg_json.c -- msg <-> JSON: jansson parses, the encoder writes the text itself. See msg.h and
 * docs/protocol.md for the field names.
 *
 * Decoding checks what each field can hold (JSON type, size, UTF-8, NUL, enum name, range) and
 * nothing else; msg_validate() owns the rules that depend on the frame type and origin. */
#include "msg.h"

#include <inttypes.h>
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
        msg_attachment *a = msg_att_slot(m);
        if (!a) return cg_err_set(err, "nomem", "out of memory");
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

/* The encoder writes the JSON text itself, field by field into one growing buffer: the same
 * compact text jansson's json_dumps(JSON_COMPACT) gives for the same object (key order, escapes;
 * test_msg.c compares them), without building a jansson tree of a few dozen allocations per
 * frame first (the gateway encodes every frame it sends). Parsing stays jansson's. */

/* Growing output buffer; data[0..headroom) is reserved. bad: allocation failed or a string was
 * not valid UTF-8 (the text is then thrown away). */
typedef struct jw {
    unsigned char *data;
    size_t len, cap;
    int bad;
} jw;

static void jw_put(jw *w, const void *s, size_t n) {
    if (w->bad) return;
    if (n > w->cap - w->len) {
        size_t cap = w->cap;
        while (n > cap - w->len) {
            if (cap > SIZE_MAX / 2) {
                w->bad = 1;
                return;
            }
            cap *= 2;
        }
        unsigned char *p = realloc(w->data, cap);
        if (!p) {
            w->bad = 1;
            return;
        }
        w->data = p;
        w->cap = cap;
    }
    memcpy(w->data + w->len, s, n);
    w->len += n;
}

/* s[0..n) as a JSON string: UTF-8 as it is; '"', '\\' and the control characters escaped as
 * jansson does (\b \f \n \r \t, else \u00XX). Invalid UTF-8 sets bad. */
static void jw_string(jw *w, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (!msg_utf8_valid(s, n)) {
        w->bad = 1;
        return;
    }
    jw_put(w, "\"", 1);
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        jw_put(w, s + i - run, run);
        run = 0;
        char esc[6] = {'\\', 0};
        size_t k = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            k = 6;
        }
        jw_put(w, esc, k);
    }
    jw_put(w, s + n - run, run);
    jw_put(w, "\"", 1);
}

/* One object being written: n fields so far. */
typedef struct jobj {
    jw *w;
    unsigned n;
} jobj;

static void jo_open(jobj *o, jw *w) {
    o->w = w;
    o->n = 0;
    jw_put(w, "{", 1);
}

static void jo_close(jobj *o) {
    jw_put(o->w, "}", 1);
}

/* The key of the next field, after a comma unless it is the first. */
static void jo_key(jobj *o, const char *key) {
    if (o->n++) jw_put(o->w, ",", 1);
    jw_string(o->w, key, strlen(key));
    jw_put(o->w, ":", 1);
}

/* Builders: each adds key unless the value is zero/empty. */
static void put_strn(jobj *o, const char *key, const char *s, size_t cap) {
    size_t n = strnlen(s, cap); /* s is a fixed array of cap bytes: never read past it */
    if (!n) return;
    jo_key(o, key);
    jw_string(o->w, s, n);
}
#define put_str(o, key, arr) put_strn((o), (key), (arr), sizeof(arr))

static void put_name(jobj *o, const char *key, const char *s) {
    jo_key(o, key);
    jw_string(o->w, s, strlen(s));
}

static void put_int(jobj *o, const char *key, int64_t v) {
    if (!v) return;
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%" PRId64, v);
    jo_key(o, key);
    jw_put(o->w, buf, (size_t)n);
}

static void enc_attachments(jobj *o, const msg *m) {
    unsigned n = m->n_att > MSG_ATT_MAX ? MSG_ATT_MAX : m->n_att;
    jo_key(o, "attachments");
    jw_put(o->w, "[", 1);
    for (unsigned i = 0; i < n; i++) {
        const msg_attachment *a = &m->att[i];
        if (i) jw_put(o->w, ",", 1);
        jobj e;
        jo_open(&e, o->w);
        put_str(&e, "url", a->url);
        put_str(&e, "mime", a->mime);
        put_int(&e, "size", (int64_t)a->size);
        put_str(&e, "name", a->name);
        jo_close(&e);
    }
    jw_put(o->w, "]", 1);
}

static void enc_items(jobj *o, const msg *m) {
    jo_key(o, "items");
    jw_put(o->w, "[", 1);
    for (uint32_t i = 0; i < m->n_items; i++) {
        const msg_queue_item *it = &m->items[i];
        if (i) jw_put(o->w, ",", 1);
        jobj e;
        jo_open(&e, o->w);
        put_str(&e, "conv", it->conv);
        put_int(&e, "position", it->position);
        put_int(&e, "since", it->since_ms);
        if (it->channel != CH_NONE && (unsigned)it->channel < CH_COUNT)
            put_name(&e, "channel", msg_channel_name(it->channel));
        put_int(&e, "priority", it->priority);
        put_int(&e, "ring", it->ring);
        put_str(&e, "preview", it->preview);
        jo_close(&e);
    }
    jw_put(o->w, "]", 1);
}

static void enc_skills(jobj *o, const msg *m) {
    unsigned n = m->n_skills > MSG_SKILLS_MAX ? MSG_SKILLS_MAX : m->n_skills;
    jo_key(o, "skills");
    jw_put(o->w, "[", 1);
    for (unsigned i = 0; i < n; i++) {
        if (i) jw_put(o->w, ",", 1);
        jw_string(o->w, m->skills[i], strnlen(m->skills[i], MSG_CODE_MAX));
    }
    jw_put(o->w, "]", 1);
}

/* An object field written only when one of its fields is set (as jansson's empty objects were
 * left out). */
static void enc_identity(jobj *o, const msg_identity *id) {
    if (!id->customer_id[0] && !id->order_no[0] && !id->account[0] && !id->locale[0] &&
        !id->tier[0])
        return;
    jo_key(o, "identity");
    jobj e;
    jo_open(&e, o->w);
    put_str(&e, "customer_id", id->customer_id);
    put_str(&e, "order_no", id->order_no);
    put_str(&e, "account", id->account);
    put_str(&e, "locale", id->locale);
    put_str(&e, "tier", id->tier);
    jo_close(&e);
}

static void enc_meta(jobj *o, const msg_meta *mt) {
    if (!mt->platform_msg_id[0] && !mt->platform_chat_id[0] && !mt->thread_id[0] &&
        !mt->in_reply_to[0] && !mt->subject[0])
        return;
    jo_key(o, "meta");
    jobj e;
    jo_open(&e, o->w);
    put_str(&e, "platform_msg_id", mt->platform_msg_id);
    put_str(&e, "platform_chat_id", mt->platform_chat_id);
    put_str(&e, "thread_id", mt->thread_id);
    put_str(&e, "in_reply_to", mt->in_reply_to);
    put_str(&e, "subject", mt->subject);
    jo_close(&e);
}

/* The whole msg, in the order of docs/protocol.md's table. */
static void enc_msg(jw *w, const msg *m) {
    jobj o;
    jo_open(&o, w);
    put_int(&o, "v", m->v ? m->v : MSG_VERSION);
    if (m->type != MSG_UNKNOWN && (unsigned)m->type < MSG_TYPE_COUNT)
        put_name(&o, "type", msg_type_name(m->type));
    put_str(&o, "id", m->id);
    put_str(&o, "cmid", m->cmid);
    put_str(&o, "conv", m->conv);
    put_int(&o, "seq", (int64_t)m->seq);
    if (m->channel != CH_NONE && (unsigned)m->channel < CH_COUNT)
        put_name(&o, "channel", msg_channel_name(m->channel));
    if (m->dir != DIR_NONE && m->dir <= DIR_OUT) put_name(&o, "dir", msg_dir_name(m->dir));
    if (m->role != ROLE_NONE && (unsigned)m->role < ROLE_COUNT)
        put_name(&o, "role", msg_role_name(m->role));
    put_str(&o, "sender_id", m->sender_id);
    put_str(&o, "sender_name", m->sender_name);
    put_int(&o, "ts", m->ts_ms);
    put_int(&o, "cts", m->ts_client_ms);
    if (m->text && m->text_len) {
        jo_key(&o, "text");
        jw_string(w, m->text, m->text_len);
    }
    if (m->n_att) enc_attachments(&o, m);
    enc_identity(&o, &m->identity);
    enc_meta(&o, &m->meta);
    put_str(&o, "agent_id", m->agent_id);
    put_str(&o, "agent_name", m->agent_name);
    put_str(&o, "queue", m->queue);
    put_int(&o, "position", m->position);
    put_int(&o, "wait", m->wait_s);
    put_str(&o, "code", m->code);
    put_int(&o, "rating", m->rating);
    if (m->retry) {
        jo_key(&o, "retry");
        jw_put(w, "true", 4);
    }
    put_int(&o, "priority", m->priority);
    put_str(&o, "token", m->token);
    put_int(&o, "last_seq", (int64_t)m->last_seq);
    put_str(&o, "tenant", m->tenant);
    put_str(&o, "sock", m->sock);
    if (m->n_skills) enc_skills(&o, m);
    put_int(&o, "cap", m->cap);
    if (m->n_items && m->items) enc_items(&o, m);
    if (m->native && m->native_len) {
        jo_key(&o, "native");
        jw_string(w, m->native, m->native_len);
    }
    jo_close(&o);
}

/* Compact UTF-8 JSON written straight after `headroom` reserved bytes of one malloc'd buffer,
 * returned to the caller (free()); *len = payload bytes. NULL on allocation failure, or when a
 * string of m is not valid UTF-8 (msg_validate() catches that first). */
unsigned char *msg_encode_json(const msg *m, size_t headroom, size_t *len) {
    size_t want = m->text_len < MSG_TEXT_MAX ? m->text_len : MSG_TEXT_MAX;
    want += m->native_len < MSG_NATIVE_MAX ? m->native_len : MSG_NATIVE_MAX;
    if (headroom > SIZE_MAX - 512 - want) return NULL;
    jw w = {NULL, headroom, headroom + 512 + want, 0};
    w.data = malloc(w.cap);
    if (!w.data) return NULL;
    enc_msg(&w, m);
    if (w.bad) {
        free(w.data);
        return NULL;
    }
    *len = w.len - headroom;
    return w.data;
}
