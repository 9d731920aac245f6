/* msg_pack.c -- msg <-> msgpack with msgpack-c. Same field names and shapes as the JSON codec
 * (docs/protocol.md): strings are str (bin accepted when decoding), integers are ints, `retry` is
 * a bool, nested objects are maps.
 *
 * msgpack-c's unpacker allocates a container's slots from the declared element count before it
 * has seen the elements, so a 5-byte "array of 4 billion" would ask for ~100 GB. mp_scan() walks
 * the item headers first (no values are decoded there) and refuses input whose declared counts
 * cannot fit in the remaining bytes, nests too deeply, or is followed by trailing bytes. */
#include "msg.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MP_IN_MAX (256 * 1024) /* bytes of input */
#define MP_DEPTH_MAX 16        /* nested maps/arrays; the schema needs 3 (msgpack-c allows 32) */

/* ---- bounds pre-scan ----------------------------------------------------------------------- */

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* What one item's lead byte says about its size. */
typedef struct mp_hd {
    int len_bytes; /* big-endian length/count bytes following the lead byte */
    uint64_t n;    /* the length/count, when the lead byte itself carries it */
    uint64_t fix;  /* payload bytes not covered by the length (fixed-width values, ext type) */
    int body;      /* 1: the length counts payload bytes (str, bin, ext) */
    int slots;     /* containers: slots per declared element (1 array, 2 map); else 0 */
} mp_hd;

/* Fills h for lead byte c; -1 for 0xc1, the one byte msgpack never uses. */
static int mp_head(unsigned char c, mp_hd *h) {
    memset(h, 0, sizeof(*h));
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) return 0;
    if (c <= 0x8f) {
        h->slots = 2, h->n = c & 0x0f;
        return 0;
    }
    if (c <= 0x9f) {
        h->slots = 1, h->n = c & 0x0f;
        return 0;
    }
    if (c <= 0xbf) {
        h->fix = c & 0x1f;
        return 0;
    }
    switch (c) {
    case 0xc4: /* bin 8 */
    case 0xd9: /* str 8 */
        h->len_bytes = 1, h->body = 1;
        return 0;
    case 0xc5:
    case 0xda:
        h->len_bytes = 2, h->body = 1;
        return 0;
    case 0xc6:
    case 0xdb:
        h->len_bytes = 4, h->body = 1;
        return 0;
    case 0xc7: /* ext 8/16/32: length, type byte, data */
    case 0xc8:
    case 0xc9:
        h->len_bytes = 1 << (c - 0xc7), h->body = 1, h->fix = 1;
        return 0;
    case 0xca:
        h->fix = 4;
        return 0; /* float 32 */
    case 0xcb:
        h->fix = 8;
        return 0; /* float 64 */
    case 0xcc:    /* uint 8/16/32/64 */
    case 0xcd:
    case 0xce:
    case 0xcf:
        h->fix = 1u << (c - 0xcc);
        return 0;
    case 0xd0: /* int 8/16/32/64 */
    case 0xd1:
    case 0xd2:
    case 0xd3:
        h->fix = 1u << (c - 0xd0);
        return 0;
    case 0xd4: /* fixext 1/2/4/8/16: type byte + data */
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        h->fix = 1 + (1u << (c - 0xd4));
        return 0;
    case 0xdc:
        h->len_bytes = 2, h->slots = 1;
        return 0; /* array 16 */
    case 0xdd:
        h->len_bytes = 4, h->slots = 1;
        return 0; /* array 32 */
    case 0xde:
        h->len_bytes = 2, h->slots = 2;
        return 0; /* map 16 */
    case 0xdf:
        h->len_bytes = 4, h->slots = 2;
        return 0; /* map 32 */
    default:
        return -1; /* 0xc1 */
    }
}

/* Walks the one top-level item at p[0..len) without recursion and without decoding values. Every
 * element takes at least one byte, so the elements still expected (`pending`, over all open
 * containers) may never exceed the bytes left: that bounds what msgpack-c will allocate to a small
 * multiple of len. Sets *used to the item's size. 0, or -1 with "bad_msgpack" (truncated,
 * impossible count, byte 0xc1) or "too_large" (nesting). */
static int mp_scan(const unsigned char *p, size_t len, size_t *used, cg_err *err) {
    uint64_t left[MP_DEPTH_MAX + 1]; /* elements still to read at each open level */
    uint64_t pending = 1;
    int depth = 0;
    size_t pos = 0;
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        left[depth]--;
        pending--;
        if (pos >= len) return cg_err_set(err, "bad_msgpack", "truncated msgpack");
        mp_hd h;
        if (mp_head(p[pos++], &h))
            return cg_err_set(err, "bad_msgpack", "invalid msgpack byte at %zu", pos - 1);
        if ((size_t)h.len_bytes > len - pos)
            return cg_err_set(err, "bad_msgpack", "truncated msgpack");
        if (h.len_bytes) h.n = be(p + pos, h.len_bytes);
        pos += (size_t)h.len_bytes;
        if (!h.slots) {
            uint64_t skip = h.fix + (h.body ? h.n : 0);
            if (skip > len - pos) return cg_err_set(err, "bad_msgpack", "truncated msgpack");
            pos += (size_t)skip;
            continue;
        }
        uint64_t items = h.n * (uint64_t)h.slots; /* n < 2^32: cannot overflow */
        if (pending + items > len - pos)
            return cg_err_set(err, "bad_msgpack", "container count exceeds the input");
        if (depth == MP_DEPTH_MAX)
            return cg_err_set(err, "too_large", "frame nests deeper than %d", MP_DEPTH_MAX);
        pending += items;
        left[++depth] = items;
    }
    *used = pos;
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static const char *fname(char *buf, size_t cap, const char *pfx, const char *key) {
    snprintf(buf, cap, "%s%s", pfx, key);
    return buf;
}

static int is_text(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN;
}

/* Bytes of a str or bin object (same layout in msgpack-c's union, read through the right arm). */
static const char *text_ptr(const msgpack_object *o, size_t *n) {
    if (o->type == MSGPACK_OBJECT_BIN) {
        *n = o->via.bin.size;
        return o->via.bin.ptr;
    }
    *n = o->via.str.size;
    return o->via.str.ptr;
}

/* Every key of a map must be a str (or bin); "bad_msgpack" otherwise. */
static int check_keys(const msgpack_object *map, cg_err *err) {
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (!is_text(&map->via.map.ptr[i].key))
            return cg_err_set(err, "bad_msgpack", "map key is not a string");
    return 0;
}

/* *out = the value of key in map, or NULL when absent. A known key given twice is refused
 * ("bad_msgpack"), like JSON_REJECT_DUPLICATES does for JSON. */
static int find(const msgpack_object *map, const char *key, const msgpack_object **out,
                cg_err *err) {
    size_t klen = strlen(key);
    *out = NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        size_t n;
        const char *k = text_ptr(&map->via.map.ptr[i].key, &n);
        if (n != klen || memcmp(k, key, n)) continue;
        if (*out) return cg_err_set(err, "bad_msgpack", "duplicate key '%s'", key);
        *out = &map->via.map.ptr[i].val;
    }
    return 0;
}

/* Copy string field `key` into dst[cap]. Absent: untouched. Not str/bin: "bad_value"; too long:
 * "too_large"; NUL inside: "bad_value"; invalid UTF-8: "bad_utf8". */
static int get_str(const msgpack_object *map, const char *pfx, const char *key, char *dst,
                   size_t cap, cg_err *err) {
    char nb[64];
    const msgpack_object *v;
    if (find(map, key, &v, err)) return -1;
    if (!v) return 0;
    if (!is_text(v))
        return cg_err_set(err, "bad_value", "field '%s' must be a string",
                          fname(nb, sizeof(nb), pfx, key));
    size_t n;
    const char *s = text_ptr(v, &n);
    if (n >= cap)
        return cg_err_set(err, "too_large", "field '%s' is over %zu bytes",
                          fname(nb, sizeof(nb), pfx, key), cap - 1);
    if (n && memchr(s, '\0', n))
        return cg_err_set(err, "bad_value", "field '%s' contains a NUL byte",
                          fname(nb, sizeof(nb), pfx, key));
    if (!msg_utf8_valid(s, n))
        return cg_err_set(err, "bad_utf8", "field '%s' is not valid UTF-8",
                          fname(nb, sizeof(nb), pfx, key));
    if (n) memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* Integer field within [min,max] (min >= 0 for every field today; max <= INT64_MAX). Absent:
 * untouched. Not an integer (floats included) or out of range: "bad_value". */
static int get_int(const msgpack_object *map, const char *pfx, const char *key, int64_t min,
                   int64_t max, int64_t *out, cg_err *err) {
    char nb[64];
    const msgpack_object *v;
    if (find(map, key, &v, err)) return -1;
    if (!v) return 0;
    int ok = 0;
    int64_t i = 0;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= (uint64_t)INT64_MAX) {
        i = (int64_t)v->via.u64;
        ok = 1;
    } else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        i = v->via.i64;
        ok = 1;
    } else if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return cg_err_set(err, "bad_value", "field '%s' must be an integer",
                          fname(nb, sizeof(nb), pfx, key));
    }
    if (!ok || i < min || i > max)
        return cg_err_set(err, "bad_value", "field '%s' must be within %lld..%lld",
                          fname(nb, sizeof(nb), pfx, key), (long long)min, (long long)max);
    *out = i;
    return 0;
}

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

/* Enum name field into dst[cap]: 1 present, 0 absent, -1 not a string ("bad_value") or too long
 * or not UTF-8 to be any known name (`code`). */
static int get_name(const msgpack_object *map, const char *key, char *dst, size_t cap,
                    const char *code, cg_err *err) {
    const msgpack_object *v;
    if (find(map, key, &v, err)) return -1;
    if (!v) return 0;
    if (!is_text(v)) return cg_err_set(err, "bad_value", "field '%s' must be a string", key);
    size_t n;
    const char *s = text_ptr(v, &n);
    if (n >= cap || (n && memchr(s, '\0', n)) || !msg_utf8_valid(s, n))
        return cg_err_set(err, code, "unknown %s", key);
    if (n) memcpy(dst, s, n);
    dst[n] = '\0';
    return 1;
}

#define GET_ENUM(o, key, parse, dst, code)                                                         \
    do {                                                                                           \
        char s_[32];                                                                               \
        int r_ = get_name((o), (key), s_, sizeof(s_), (code), err);                                \
        if (r_ < 0) return -1;                                                                     \
        if (r_ > 0 && parse(s_, &(dst)))                                                           \
            return cg_err_set(err, (code), "unknown %s '%s'", (key), s_);                          \
    } while (0)

/* Map field `key` (checked keys) or NULL when absent; anything else is "bad_value". */
static int get_map(const msgpack_object *map, const char *key, const msgpack_object **out,
                   cg_err *err) {
    if (find(map, key, out, err)) return -1;
    if (!*out) return 0;
    if ((*out)->type != MSGPACK_OBJECT_MAP)
        return cg_err_set(err, "bad_value", "field '%s' must be an object", key);
    return check_keys(*out, err);
}

static int get_array(const msgpack_object *map, const char *key, uint32_t max,
                     const msgpack_object **out, cg_err *err) {
    if (find(map, key, out, err)) return -1;
    if (!*out) return 0;
    if ((*out)->type != MSGPACK_OBJECT_ARRAY)
        return cg_err_set(err, "bad_value", "field '%s' must be an array", key);
    if ((*out)->via.array.size > max)
        return cg_err_set(err, "too_large", "field '%s' has over %u entries", key, max);
    return 0;
}

/* Element i of an array that must be a map with string keys. */
static int elem_map(const msgpack_object *arr, uint32_t i, const char *key, cg_err *err) {
    const msgpack_object *e = &arr->via.array.ptr[i];
    if (e->type != MSGPACK_OBJECT_MAP)
        return cg_err_set(err, "bad_value", "field '%s[%u]' must be an object", key, i);
    return check_keys(e, err);
}

static int dec_attachments(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *arr;
    if (get_array(o, "attachments", MSG_ATT_MAX, &arr, err)) return -1;
    if (!arr) return 0;
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *e = &arr->via.array.ptr[i];
        msg_attachment *a = msg_att_slot(m);
        if (!a) return cg_err_set(err, "nomem", "out of memory");
        char pfx[48];
        snprintf(pfx, sizeof(pfx), "attachments[%u].", i);
        if (elem_map(arr, i, "attachments", err)) return -1;
        GET_STR(e, pfx, "url", a->url);
        GET_STR(e, pfx, "mime", a->mime);
        GET_INT(e, pfx, "size", 0, INT64_MAX, a->size);
        GET_STR(e, pfx, "name", a->name);
        m->n_att = (uint8_t)(i + 1);
    }
    return 0;
}

static int dec_items(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *arr;
    if (get_array(o, "items", MSG_ITEMS_MAX, &arr, err)) return -1;
    if (!arr || arr->via.array.size == 0) return 0;
    m->items = calloc(arr->via.array.size, sizeof(*m->items));
    if (!m->items) return cg_err_set(err, "nomem", "out of memory");
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *e = &arr->via.array.ptr[i];
        msg_queue_item *it = &m->items[i];
        char pfx[48];
        snprintf(pfx, sizeof(pfx), "items[%u].", i);
        m->n_items = i + 1;
        if (elem_map(arr, i, "items", err)) return -1;
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

static int dec_identity(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *id;
    if (get_map(o, "identity", &id, err)) return -1;
    if (!id) return 0;
    GET_STR(id, "identity.", "customer_id", m->identity.customer_id);
    GET_STR(id, "identity.", "order_no", m->identity.order_no);
    GET_STR(id, "identity.", "account", m->identity.account);
    GET_STR(id, "identity.", "locale", m->identity.locale);
    GET_STR(id, "identity.", "tier", m->identity.tier);
    return 0;
}

static int dec_meta(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *mt;
    if (get_map(o, "meta", &mt, err)) return -1;
    if (!mt) return 0;
    GET_STR(mt, "meta.", "platform_msg_id", m->meta.platform_msg_id);
    GET_STR(mt, "meta.", "platform_chat_id", m->meta.platform_chat_id);
    GET_STR(mt, "meta.", "thread_id", m->meta.thread_id);
    GET_STR(mt, "meta.", "in_reply_to", m->meta.in_reply_to);
    GET_STR(mt, "meta.", "subject", m->meta.subject);
    return 0;
}

static int dec_text(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *v;
    if (find(o, "text", &v, err)) return -1;
    if (!v) return 0;
    if (!is_text(v)) return cg_err_set(err, "bad_value", "field 'text' must be a string");
    size_t n;
    const char *s = text_ptr(v, &n);
    return msg_set_text(m, n ? s : "", n, err);
}

static int dec_native(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *v;
    if (find(o, "native", &v, err)) return -1;
    if (!v) return 0;
    if (!is_text(v)) return cg_err_set(err, "bad_value", "field 'native' must be a string");
    size_t n;
    const char *s = text_ptr(v, &n);
    return msg_set_native(m, n ? s : "", n, err);
}

static int dec_retry(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *v;
    if (find(o, "retry", &v, err)) return -1;
    if (!v) return 0;
    if (v->type != MSGPACK_OBJECT_BOOLEAN)
        return cg_err_set(err, "bad_value", "field 'retry' must be a boolean");
    m->retry = v->via.boolean ? 1 : 0;
    return 0;
}

static int dec_skills(const msgpack_object *o, msg *m, cg_err *err) {
    const msgpack_object *arr;
    if (get_array(o, "skills", MSG_SKILLS_MAX, &arr, err)) return -1;
    if (!arr) return 0;
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *v = &arr->via.array.ptr[i];
        if (!is_text(v))
            return cg_err_set(err, "bad_value", "field 'skills[%u]' must be a string", i);
        size_t n;
        const char *s = text_ptr(v, &n);
        if (n >= MSG_CODE_MAX)
            return cg_err_set(err, "too_large", "field 'skills[%u]' is over %d bytes", i,
                              MSG_CODE_MAX - 1);
        if (n && memchr(s, '\0', n))
            return cg_err_set(err, "bad_value", "field 'skills[%u]' contains a NUL byte", i);
        if (!msg_utf8_valid(s, n))
            return cg_err_set(err, "bad_utf8", "field 'skills[%u]' is not valid UTF-8", i);
        if (n) memcpy(m->skills[i], s, n);
        m->skills[i][n] = '\0';
        m->n_skills = (uint8_t)(i + 1);
    }
    return 0;
}

static int dec_fields(const msgpack_object *o, msg *m, cg_err *err) {
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
    if (dec_retry(o, m, err)) return -1;
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

/* After a failed decode, keep the client's message id if it is readable (see msg_json.c). */
static void keep_cmid(const msgpack_object *map, msg *m) {
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key, *v = &map->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != 4 ||
            memcmp(k->via.str.ptr, "cmid", 4) || v->type != MSGPACK_OBJECT_STR)
            continue;
        uint32_t n = v->via.str.size;
        if (n < sizeof(m->cmid) && msg_utf8_valid(v->via.str.ptr, n) &&
            !memchr(v->via.str.ptr, 0, n)) {
            memcpy(m->cmid, v->via.str.ptr, n);
            m->cmid[n] = 0;
        }
        return;
    }
}

/* Decodes exactly one msgpack map filling buf[0..len) into m (msg_free()d first). Bounds are
 * checked by mp_scan() before msgpack-c allocates anything. On error m is left msg_init()ed. */
int msg_decode_msgpack(msg *m, const char *buf, size_t len, cg_err *err) {
    msg_free(m);
    if (len > MP_IN_MAX) return cg_err_set(err, "too_large", "frame is over %d bytes", MP_IN_MAX);
    if (len == 0) return cg_err_set(err, "bad_msgpack", "empty frame");
    size_t used = 0;
    if (mp_scan((const unsigned char *)buf, len, &used, err)) return -1;
    if (used != len)
        return cg_err_set(err, "bad_msgpack", "%zu trailing bytes after the frame", len - used);

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&u, buf, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = cg_err_set(err, "nomem", "out of memory");
    else if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        rc = cg_err_set(err, "bad_msgpack", "frame does not parse");
    else if (u.data.type != MSGPACK_OBJECT_MAP)
        rc = cg_err_set(err, "bad_msgpack", "frame must be a msgpack map");
    else if (check_keys(&u.data, err) || dec_fields(&u.data, m, err))
        rc = -1;
    if (rc) {
        msg_free(m);
        if (u.data.type == MSGPACK_OBJECT_MAP) keep_cmid(&u.data, m);
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* Each map is written twice over: once with pk == NULL to count its non-empty fields (msgpack
 * needs the count up front), once for real, by the same function, so the two cannot disagree. */
typedef struct penc {
    msgpack_packer *pk; /* NULL: count only */
    uint32_t n;         /* fields counted */
    int bad;            /* a write failed (allocation) */
} penc;

/* 1 when the caller should write the field now; in count mode counts it and returns 0. */
static int field(penc *e, const char *key) {
    if (!e->pk) {
        e->n++;
        return 0;
    }
    if (msgpack_pack_str_with_body(e->pk, key, strlen(key))) e->bad = 1;
    return 1;
}

static void put_strn(penc *e, const char *key, const char *s, size_t n) {
    if (n == 0 || !field(e, key)) return;
    if (msgpack_pack_str_with_body(e->pk, s, n)) e->bad = 1;
}

/* A fixed array of chars: never read past it, even if it lacks its NUL. */
#define put_str(e, key, arr) put_strn((e), (key), (arr), strnlen((arr), sizeof(arr)))
#define put_name(e, key, s) put_strn((e), (key), (s), strlen(s))

static void put_uint(penc *e, const char *key, uint64_t v) {
    if (v == 0 || !field(e, key)) return;
    if (msgpack_pack_uint64(e->pk, v)) e->bad = 1;
}

static void put_int(penc *e, const char *key, int64_t v) {
    if (v == 0 || !field(e, key)) return;
    if (msgpack_pack_int64(e->pk, v)) e->bad = 1;
}

/* A nested map built by fn(e, arg): counted, then omitted when empty, else written. */
static void put_map(penc *e, const char *key, void (*fn)(penc *, const void *), const void *arg) {
    penc c = {NULL, 0, 0};
    fn(&c, arg);
    if (c.n == 0 || !field(e, key)) return;
    if (msgpack_pack_map(e->pk, c.n)) e->bad = 1;
    c.pk = e->pk;
    fn(&c, arg);
    e->bad |= c.bad;
}

/* An array element map built by fn: always written, even when empty. */
static void put_elem(penc *e, void (*fn)(penc *, const void *), const void *arg) {
    penc c = {NULL, 0, 0};
    fn(&c, arg);
    if (msgpack_pack_map(e->pk, c.n)) e->bad = 1;
    c.pk = e->pk;
    fn(&c, arg);
    e->bad |= c.bad;
}

static void enc_attachment(penc *e, const void *arg) {
    const msg_attachment *a = arg;
    put_str(e, "url", a->url);
    put_str(e, "mime", a->mime);
    put_uint(e, "size", a->size);
    put_str(e, "name", a->name);
}

static void enc_item(penc *e, const void *arg) {
    const msg_queue_item *it = arg;
    put_str(e, "conv", it->conv);
    put_uint(e, "position", it->position);
    put_int(e, "since", it->since_ms);
    if (it->channel != CH_NONE && (unsigned)it->channel < CH_COUNT)
        put_name(e, "channel", msg_channel_name(it->channel));
    put_uint(e, "priority", it->priority);
    if (it->ring) put_uint(e, "ring", it->ring);
    put_str(e, "preview", it->preview);
}

static void enc_identity(penc *e, const void *arg) {
    const msg_identity *id = arg;
    put_str(e, "customer_id", id->customer_id);
    put_str(e, "order_no", id->order_no);
    put_str(e, "account", id->account);
    put_str(e, "locale", id->locale);
    put_str(e, "tier", id->tier);
}

static void enc_meta(penc *e, const void *arg) {
    const msg_meta *mt = arg;
    put_str(e, "platform_msg_id", mt->platform_msg_id);
    put_str(e, "platform_chat_id", mt->platform_chat_id);
    put_str(e, "thread_id", mt->thread_id);
    put_str(e, "in_reply_to", mt->in_reply_to);
    put_str(e, "subject", mt->subject);
}

static void enc_msg(penc *e, const void *arg) {
    const msg *m = arg;
    if (field(e, "v") && msgpack_pack_uint8(e->pk, m->v ? m->v : MSG_VERSION)) e->bad = 1;
    if (m->type != MSG_UNKNOWN && (unsigned)m->type < MSG_TYPE_COUNT)
        put_name(e, "type", msg_type_name(m->type));
    put_str(e, "id", m->id);
    put_str(e, "cmid", m->cmid);
    put_str(e, "conv", m->conv);
    put_uint(e, "seq", m->seq);
    if (m->channel != CH_NONE && (unsigned)m->channel < CH_COUNT)
        put_name(e, "channel", msg_channel_name(m->channel));
    if (m->dir != DIR_NONE && m->dir <= DIR_OUT) put_name(e, "dir", msg_dir_name(m->dir));
    if (m->role != ROLE_NONE && (unsigned)m->role < ROLE_COUNT)
        put_name(e, "role", msg_role_name(m->role));
    put_str(e, "sender_id", m->sender_id);
    put_str(e, "sender_name", m->sender_name);
    put_int(e, "ts", m->ts_ms);
    put_int(e, "cts", m->ts_client_ms);
    if (m->text) put_strn(e, "text", m->text, m->text_len);
    unsigned n_att = m->n_att > MSG_ATT_MAX ? MSG_ATT_MAX : m->n_att;
    if (n_att && field(e, "attachments")) {
        if (msgpack_pack_array(e->pk, n_att)) e->bad = 1;
        for (unsigned i = 0; i < n_att; i++)
            put_elem(e, enc_attachment, &m->att[i]);
    }
    put_map(e, "identity", enc_identity, &m->identity);
    put_map(e, "meta", enc_meta, &m->meta);
    put_str(e, "agent_id", m->agent_id);
    put_str(e, "agent_name", m->agent_name);
    put_str(e, "queue", m->queue);
    put_uint(e, "position", m->position);
    put_uint(e, "wait", m->wait_s);
    put_str(e, "code", m->code);
    put_uint(e, "rating", m->rating);
    if (m->retry && field(e, "retry") && msgpack_pack_true(e->pk)) e->bad = 1;
    put_uint(e, "priority", m->priority);
    put_str(e, "token", m->token);
    put_uint(e, "last_seq", m->last_seq);
    put_str(e, "tenant", m->tenant);
    put_str(e, "sock", m->sock);
    unsigned n_sk = m->n_skills > MSG_SKILLS_MAX ? MSG_SKILLS_MAX : m->n_skills;
    if (n_sk && field(e, "skills")) {
        if (msgpack_pack_array(e->pk, n_sk)) e->bad = 1;
        for (unsigned i = 0; i < n_sk; i++)
            if (msgpack_pack_str_with_body(e->pk, m->skills[i],
                                           strnlen(m->skills[i], MSG_CODE_MAX)))
                e->bad = 1;
    }
    put_uint(e, "cap", m->cap);
    if (m->n_items && m->items && field(e, "items")) {
        if (msgpack_pack_array(e->pk, m->n_items)) e->bad = 1;
        for (uint32_t i = 0; i < m->n_items; i++)
            put_elem(e, enc_item, &m->items[i]);
    }
    if (m->native) put_strn(e, "native", m->native, m->native_len);
}

/* Packs m into an sbuffer whose first `headroom` bytes are zeros, then hands the sbuffer's own
 * storage to the caller (free()); *len = payload bytes. NULL on allocation failure. Strings are
 * written as they are: run msg_validate() first for UTF-8 guarantees. */
unsigned char *msg_encode_msgpack(const msg *m, size_t headroom, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    /* sized for a typical message: msgpack-c's first allocation would be 8 KiB, a large chunk
     * for malloc (it consolidates its fast bins for each), on every frame */
    size_t first = headroom + 512 + (m->text ? m->text_len : 0) + (m->native ? m->native_len : 0);
    sb.data = malloc(first);
    if (!sb.data) return NULL;
    sb.alloc = first;
    static const char zeros[256];
    for (size_t left = headroom; left > 0;) {
        size_t n = left < sizeof(zeros) ? left : sizeof(zeros);
        if (msgpack_sbuffer_write(&sb, zeros, n)) {
            msgpack_sbuffer_destroy(&sb);
            return NULL;
        }
        left -= n;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    penc e = {&pk, 0, 0};
    put_elem(&e, enc_msg, m);
    if (e.bad) {
        msgpack_sbuffer_destroy(&sb);
        return NULL;
    }
    *len = sb.size - headroom;
    return (unsigned char *)msgpack_sbuffer_release(&sb);
}
