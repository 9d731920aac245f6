/* msg.c -- the msg life cycle, wire names, UTF-8 and validation rules. See msg.h.
 *
 * The codecs (msg_json.c, msg_pack.c) only check what a field can hold (type, size, UTF-8, enum
 * name, numeric range); everything that depends on the frame type or on who sent it is here. */
#include "msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- life cycle ---------------------------------------------------------------------------- */

void msg_init(msg *m) {
    memset(m, 0, sizeof(*m));
    m->v = MSG_VERSION;
}

void msg_free(msg *m) {
    free(m->text);
    free(m->native);
    free(m->items);
    free(m->att);
    msg_init(m);
}

msg_attachment *msg_att_slot(msg *m) {
    if (m->n_att >= MSG_ATT_MAX) return NULL;
    if (!m->att && !(m->att = calloc(MSG_ATT_MAX, sizeof(*m->att)))) return NULL;
    msg_attachment *a = &m->att[m->n_att];
    memset(a, 0, sizeof(*a));
    return a;
}

/* Copies len bytes (no NUL needed) into a fresh NUL-terminated buffer owned by m; the old text is
 * freed only once the new one is in place, so on error m is unchanged. A NUL byte inside the text
 * is refused ("bad_value"): JSON could not carry it back and C string users would cut it. */
static int set_str(char **dst, size_t *dst_len, const char *name, size_t max, const char *s,
                   size_t len, cg_err *err) {
    if (len > max) return cg_err_set(err, "too_large", "field '%s' is over %zu bytes", name, max);
    if (len && memchr(s, '\0', len))
        return cg_err_set(err, "bad_value", "field '%s' contains a NUL byte", name);
    if (!msg_utf8_valid(s, len))
        return cg_err_set(err, "bad_utf8", "field '%s' is not valid UTF-8", name);
    char *copy = malloc(len + 1);
    if (!copy) return cg_err_set(err, "nomem", "out of memory");
    if (len) memcpy(copy, s, len);
    copy[len] = '\0';
    free(*dst);
    *dst = copy;
    *dst_len = len;
    return 0;
}

int msg_set_text(msg *m, const char *s, size_t len, cg_err *err) {
    return set_str(&m->text, &m->text_len, "text", MSG_TEXT_MAX, s, len, err);
}

/* The same rules as text, with the larger limit of a rendered platform body. */
int msg_set_native(msg *m, const char *s, size_t len, cg_err *err) {
    return set_str(&m->native, &m->native_len, "native", MSG_NATIVE_MAX, s, len, err);
}

/* ---- wire names ---------------------------------------------------------------------------- */

/* The names of the wire: generated from schema/chatgw.json (proto_schema.c). */
#define type_names cg_msg_type_names
#define channel_names cg_msg_channel_names
#define role_names cg_msg_role_names
#define dir_names cg_msg_dir_names

/* Index of s in names[first..n-1], or -1. Index 0 ("unknown"/"none") is never parsed when first
 * is 1: an unset value is sent by omitting the field. */
static int name_find(const char *const *names, int first, int n, const char *s) {
    if (!s) return -1;
    for (int i = first; i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

/* The *_name functions never return NULL: an unset or out-of-range value gives "unknown"/"none",
 * which the parse functions refuse. */
const char *msg_type_name(msg_type t) {
    if ((unsigned)t >= MSG_TYPE_COUNT) return type_names[MSG_UNKNOWN];
    return type_names[t];
}

int msg_type_parse(const char *s, msg_type *out) {
    int i = name_find(type_names, 1, MSG_TYPE_COUNT, s);
    if (i < 0) return -1;
    *out = (msg_type)i;
    return 0;
}

const char *msg_channel_name(msg_channel c) {
    if ((unsigned)c >= CH_COUNT) return "unknown";
    return channel_names[c];
}

int msg_channel_parse(const char *s, msg_channel *out) {
    int i = name_find(channel_names, 1, CH_COUNT, s);
    if (i < 0) return -1;
    *out = (msg_channel)i;
    return 0;
}

const char *msg_role_name(msg_role r) {
    if ((unsigned)r >= ROLE_COUNT) return role_names[ROLE_NONE];
    return role_names[r];
}

int msg_role_parse(const char *s, msg_role *out) {
    int i = name_find(role_names, 1, ROLE_COUNT, s);
    if (i < 0) return -1;
    *out = (msg_role)i;
    return 0;
}

const char *msg_dir_name(msg_dir d) {
    if ((unsigned)d >= (unsigned)DIR_COUNT) return dir_names[DIR_NONE];
    return dir_names[d];
}

int msg_dir_parse(const char *s, msg_dir *out) {
    int i = name_find(dir_names, 1, DIR_COUNT, s);
    if (i < 0) return -1;
    *out = (msg_dir)i;
    return 0;
}

int msg_type_is_logged(msg_type t) {
    return (unsigned)t < MSG_TYPE_COUNT && (cg_msg_type_flags[t] & CG_MT_LOGGED);
}

/* The schema's `internal` events (redis/conv.lua reads the same list as CG.INTERNAL). */
int msg_type_is_internal(msg_type t) {
    return (unsigned)t < MSG_TYPE_COUNT && (cg_msg_type_flags[t] & CG_MT_INTERNAL);
}

void msg_customer_view(msg *dst, const msg *src) {
    msg_init(dst);
    dst->v = src->v;
    dst->type = src->type;
    memcpy(dst->id, src->id, sizeof(dst->id));
    memcpy(dst->conv, src->conv, sizeof(dst->conv));
    dst->seq = src->seq;
    dst->channel = src->channel;
    dst->dir = src->dir;
    dst->role = src->role;
    dst->ts_ms = src->ts_ms;
    if (src->type != MSG_TRANSFERRED) return;
    memcpy(dst->agent_name, src->agent_name, sizeof(dst->agent_name));
    memcpy(dst->queue, src->queue, sizeof(dst->queue));
}

void msg_stored_trim(msg *m) {
    if (m->role == ROLE_CUSTOMER && !strcmp(m->identity.customer_id, m->sender_id))
        m->identity.customer_id[0] = '\0';
}

void msg_stored_fill(msg *m) {
    if (m->role == ROLE_CUSTOMER && !m->identity.customer_id[0])
        memcpy(m->identity.customer_id, m->sender_id, sizeof(m->identity.customer_id));
}

/* ---- UTF-8 --------------------------------------------------------------------------------- */

static int is_cont(unsigned char c) {
    return (c & 0xC0) == 0x80;
}

/* Strict UTF-8 (RFC 3629): shortest form only, no UTF-16 surrogates (U+D800..DFFF), nothing above
 * U+10FFFF. U+0000 is valid UTF-8; callers that cannot hold it check for it themselves. */
int msg_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;
    while (p < end) {
        unsigned char c = *p;
        size_t left = (size_t)(end - p);
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c < 0xC2) return 0; /* stray continuation, or overlong 2-byte lead C0/C1 */
        if (c < 0xE0) {
            if (left < 2 || !is_cont(p[1])) return 0;
            p += 2;
            continue;
        }
        if (c < 0xF0) {
            if (left < 3 || !is_cont(p[1]) || !is_cont(p[2])) return 0;
            if (c == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
            if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
            p += 3;
            continue;
        }
        if (c < 0xF5) {
            if (left < 4 || !is_cont(p[1]) || !is_cont(p[2]) || !is_cont(p[3])) return 0;
            if (c == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
            if (c == 0xF4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
            p += 4;
            continue;
        }
        return 0; /* F5..FF */
    }
    return 1;
}

/* ---- validation ---------------------------------------------------------------------------- */

#define BIT(t) (1u << (t))

static const uint32_t customer_types = BIT(MSG_TEXT) | BIT(MSG_ATTACHMENT) | BIT(MSG_TYPING) |
                                       BIT(MSG_READ) | BIT(MSG_HELLO) | BIT(MSG_ACK) |
                                       BIT(MSG_RATING) | BIT(MSG_CLOSE);
static const uint32_t agent_types = BIT(MSG_TEXT) | BIT(MSG_ATTACHMENT) | BIT(MSG_TYPING) |
                                    BIT(MSG_READ) | BIT(MSG_HELLO) | BIT(MSG_ACK) |
                                    BIT(MSG_PRESENCE) | BIT(MSG_PICK) | BIT(MSG_CLOSE) |
                                    BIT(MSG_TRANSFER) | BIT(MSG_CLASSIFY);
static const uint32_t agent_conv_types = BIT(MSG_TEXT) | BIT(MSG_ATTACHMENT) | BIT(MSG_TYPING) |
                                         BIT(MSG_PICK) | BIT(MSG_CLOSE) | BIT(MSG_TRANSFER) |
                                         BIT(MSG_CLASSIFY);

/* A fixed-size string field must be NUL-terminated inside its array and valid UTF-8. */
static int check_str(const char *name, const char *s, size_t cap, cg_err *err) {
    size_t n = strnlen(s, cap);
    if (n == cap)
        return cg_err_set(err, "too_large", "field '%s' is over %zu bytes", name, cap - 1);
    if (!msg_utf8_valid(s, n))
        return cg_err_set(err, "bad_utf8", "field '%s' is not valid UTF-8", name);
    return 0;
}

#define CHECK_STR(name, arr)                                                                       \
    do {                                                                                           \
        if (check_str((name), (arr), sizeof(arr), err)) return -1;                                 \
    } while (0)

/* Integers that must fit the wire (JSON integers are signed 64-bit). */
static int check_u64(const char *name, uint64_t v, cg_err *err) {
    if (v > (uint64_t)INT64_MAX)
        return cg_err_set(err, "bad_value", "field '%s' is out of range", name);
    return 0;
}

static int check_ts(const char *name, int64_t v, cg_err *err) {
    if (v < 0) return cg_err_set(err, "bad_value", "field '%s' must be >= 0", name);
    return 0;
}

static int check_text(const msg *m, cg_err *err) {
    if (!m->text) {
        if (m->text_len)
            return cg_err_set(err, "bad_value", "field 'text' has a length but no text");
        return 0;
    }
    if (m->text_len > MSG_TEXT_MAX)
        return cg_err_set(err, "too_large", "field 'text' is over %d bytes", MSG_TEXT_MAX);
    if (memchr(m->text, '\0', m->text_len))
        return cg_err_set(err, "bad_value", "field 'text' contains a NUL byte");
    if (!msg_utf8_valid(m->text, m->text_len))
        return cg_err_set(err, "bad_utf8", "field 'text' is not valid UTF-8");
    return 0;
}

static int check_native(const msg *m, cg_err *err) {
    if (!m->native) {
        if (m->native_len)
            return cg_err_set(err, "bad_value", "field 'native' has a length but no text");
        return 0;
    }
    if (m->native_len > MSG_NATIVE_MAX)
        return cg_err_set(err, "too_large", "field 'native' is over %d bytes", MSG_NATIVE_MAX);
    if (memchr(m->native, '\0', m->native_len))
        return cg_err_set(err, "bad_value", "field 'native' contains a NUL byte");
    if (!msg_utf8_valid(m->native, m->native_len))
        return cg_err_set(err, "bad_utf8", "field 'native' is not valid UTF-8");
    return 0;
}

/* A tenant names a desk's key space (cg:{t:<tenant>}:, a Redis Cluster hash tag): a short id of
 * a-z 0-9 _ -, nothing a key or a log line could be confused by. Empty: none was named. */
int msg_check_tenant(const msg *m, cg_err *err) {
    size_t n = strnlen(m->tenant, sizeof(m->tenant));
    if (n == sizeof(m->tenant))
        return cg_err_set(err, "too_large", "field 'tenant' is over %d bytes", MSG_TENANT_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        char c = m->tenant[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') continue;
        return cg_err_set(err, "bad_value", "field 'tenant' must be 1-%d of a-z 0-9 _ -",
                          MSG_TENANT_MAX - 1);
    }
    return 0;
}

static int check_attachments(const msg *m, cg_err *err) {
    if (m->n_att > MSG_ATT_MAX)
        return cg_err_set(err, "too_large", "field 'attachments' has over %d entries", MSG_ATT_MAX);
    for (unsigned i = 0; i < m->n_att; i++) {
        const msg_attachment *a = &m->att[i];
        CHECK_STR("attachments.url", a->url);
        CHECK_STR("attachments.mime", a->mime);
        CHECK_STR("attachments.name", a->name);
        if (check_u64("attachments.size", a->size, err)) return -1;
        if (!a->url[0])
            return cg_err_set(err, "missing_field", "field 'attachments[%u].url' is required", i);
        if (!a->mime[0])
            return cg_err_set(err, "missing_field", "field 'attachments[%u].mime' is required", i);
    }
    return 0;
}

static int check_items(const msg *m, cg_err *err) {
    if (m->n_items > MSG_ITEMS_MAX)
        return cg_err_set(err, "too_large", "field 'items' has over %d entries", MSG_ITEMS_MAX);
    if (m->n_items && !m->items)
        return cg_err_set(err, "bad_value", "field 'items' has a count but no entries");
    for (uint32_t i = 0; i < m->n_items; i++) {
        const msg_queue_item *it = &m->items[i];
        CHECK_STR("items.conv", it->conv);
        CHECK_STR("items.preview", it->preview);
        if (check_ts("items.since", it->since_ms, err)) return -1;
        if ((unsigned)it->channel >= CH_COUNT)
            return cg_err_set(err, "bad_value", "field 'items.channel' is out of range");
        if (it->priority > 9)
            return cg_err_set(err, "bad_value", "field 'items.priority' must be 0..9");
    }
    return 0;
}

static int check_skills(const msg *m, cg_err *err) {
    CHECK_STR("sock", m->sock);
    if (m->n_skills > MSG_SKILLS_MAX)
        return cg_err_set(err, "too_large", "field 'skills' has over %d entries", MSG_SKILLS_MAX);
    for (unsigned i = 0; i < m->n_skills; i++) {
        CHECK_STR("skills", m->skills[i]);
        if (!m->skills[i][0]) return cg_err_set(err, "bad_value", "field 'skills[%u]' is empty", i);
    }
    return 0;
}

/* Sizes, UTF-8 and ranges of every field, whatever the type. */
static int check_fields(const msg *m, cg_err *err) {
    CHECK_STR("id", m->id);
    CHECK_STR("cmid", m->cmid);
    CHECK_STR("conv", m->conv);
    CHECK_STR("sender_id", m->sender_id);
    CHECK_STR("sender_name", m->sender_name);
    CHECK_STR("identity.customer_id", m->identity.customer_id);
    CHECK_STR("identity.order_no", m->identity.order_no);
    CHECK_STR("identity.account", m->identity.account);
    CHECK_STR("identity.locale", m->identity.locale);
    CHECK_STR("identity.tier", m->identity.tier);
    CHECK_STR("meta.platform_msg_id", m->meta.platform_msg_id);
    CHECK_STR("meta.platform_chat_id", m->meta.platform_chat_id);
    CHECK_STR("meta.thread_id", m->meta.thread_id);
    CHECK_STR("meta.in_reply_to", m->meta.in_reply_to);
    CHECK_STR("meta.subject", m->meta.subject);
    CHECK_STR("agent_id", m->agent_id);
    CHECK_STR("agent_name", m->agent_name);
    CHECK_STR("queue", m->queue);
    CHECK_STR("code", m->code);
    CHECK_STR("token", m->token);
    if (msg_check_tenant(m, err)) return -1;
    if (check_text(m, err) || check_native(m, err)) return -1;
    if (check_u64("seq", m->seq, err) || check_u64("last_seq", m->last_seq, err)) return -1;
    if (check_ts("ts", m->ts_ms, err) || check_ts("cts", m->ts_client_ms, err)) return -1;
    if ((unsigned)m->channel >= CH_COUNT)
        return cg_err_set(err, "bad_value", "field 'channel' is out of range");
    if ((unsigned)m->role >= ROLE_COUNT)
        return cg_err_set(err, "bad_value", "field 'role' is out of range");
    if ((unsigned)m->dir > DIR_OUT)
        return cg_err_set(err, "bad_value", "field 'dir' is out of range");
    if (m->rating > 5) return cg_err_set(err, "bad_value", "field 'rating' must be 1..5");
    if (m->priority > 9) return cg_err_set(err, "bad_value", "field 'priority' must be 0..9");
    if (m->retry > 1) return cg_err_set(err, "bad_value", "field 'retry' must be a boolean");
    if (check_attachments(m, err)) return -1;
    if (check_skills(m, err)) return -1;
    return check_items(m, err);
}

static int missing(cg_err *err, const char *field, msg_type t) {
    return cg_err_set(err, "missing_field", "field '%s' is required for type '%s'", field,
                      msg_type_name(t));
}

/* Presence: clients say online, away or offline; the gateway also reports an agent's
 * connect/disconnect, which must name the connection (sock): connect_online / connect_away are
 * a connect with the status the agent chose in its hello. */
static int check_presence(const msg *m, msg_origin origin, cg_err *err) {
    const char *c = m->code;
    if (!c[0]) return missing(err, "code", MSG_PRESENCE);
    if (!strcmp(c, "online") || !strcmp(c, "away") || !strcmp(c, "offline")) return 0;
    if (origin != ORIGIN_INTERNAL)
        return cg_err_set(err, "bad_value",
                          "field 'code' of 'presence' must be online, away or offline");
    if (strcmp(c, "connect") && strcmp(c, "connect_online") && strcmp(c, "connect_away") &&
        strcmp(c, "disconnect"))
        return cg_err_set(err, "bad_value",
                          "field 'code' of 'presence' must be online, away, offline, connect, "
                          "connect_online, connect_away or disconnect");
    if (!m->sock[0]) return missing(err, "sock", MSG_PRESENCE);
    return 0;
}

/* An agent's hello may name the status to connect with: online or away (none: online). A
 * customer's hello carries no status: its code is ignored. */
static int check_hello(const msg *m, msg_origin origin, cg_err *err) {
    const char *c = m->code;
    if (origin != ORIGIN_AGENT || !c[0] || !strcmp(c, "online") || !strcmp(c, "away")) return 0;
    return cg_err_set(err, "bad_value",
                      "field 'code' of an agent's 'hello' must be online or away, not '%s'", c);
}

/* Client frames may not carry the gateway's own fields (sock, skills, cap). */
static int check_client_fields(const msg *m, cg_err *err) {
    const char *f = m->sock[0] ? "sock" : m->n_skills ? "skills" : m->cap ? "cap" : NULL;
    if (f) return cg_err_set(err, "bad_value", "field '%s' may not be sent by a client", f);
    /* Router messages use cmids "cg:..." to de-duplicate themselves: a client reusing one
     * could suppress a router message in its conversation. */
    if (!strncmp(m->cmid, "cg:", 3))
        return cg_err_set(err, "bad_value", "field 'cmid' may not start with 'cg:' (reserved)");
    return 0;
}

/* Required fields for the type; who sent it matters for agent conv and client acks. */
static int check_required(const msg *m, msg_origin origin, cg_err *err) {
    msg_type t = m->type;
    if (t == MSG_TEXT && (!m->text || m->text_len == 0)) return missing(err, "text", t);
    if (t == MSG_ATTACHMENT && m->n_att == 0) return missing(err, "attachments", t);
    if (origin == ORIGIN_AGENT && (agent_conv_types & BIT(t)) && !m->conv[0])
        return missing(err, "conv", t);
    if (t == MSG_PRESENCE && check_presence(m, origin, err)) return -1;
    if (t == MSG_HELLO && check_hello(m, origin, err)) return -1;
    if (t == MSG_CLOSE && origin != ORIGIN_CUSTOMER && !m->code[0]) return missing(err, "code", t);
    if (t == MSG_TRANSFER && !m->agent_id[0] && !m->queue[0])
        return missing(err, "agent_id or queue", t);
    if (t == MSG_CLASSIFY && !m->code[0]) return missing(err, "code", t);
    if (t == MSG_RATING && m->rating == 0) return missing(err, "rating", t);
    if (t == MSG_ACK && origin != ORIGIN_INTERNAL) {
        if (!m->conv[0]) return missing(err, "conv", t);
        if (m->last_seq == 0) return missing(err, "last_seq", t);
    }
    if (origin != ORIGIN_INTERNAL) return 0;
    if (msg_type_is_logged(t)) {
        if (m->role == ROLE_NONE) return missing(err, "role", t);
        if (m->dir == DIR_NONE) return missing(err, "dir", t);
    }
    if (m->ts_ms <= 0) return missing(err, "ts", t);
    return 0;
}

/* Order: version, type, origin, field sanity, then the type's required fields; the first broken
 * rule is reported. Reads m only. */
int msg_validate(const msg *m, msg_origin origin, cg_err *err) {
    if (m->v > MSG_VERSION)
        return cg_err_set(err, "bad_value", "unsupported protocol version %u", (unsigned)m->v);
    if (m->type == MSG_UNKNOWN || (unsigned)m->type >= MSG_TYPE_COUNT)
        return cg_err_set(err, "bad_type", "missing or unknown frame type");
    if (origin == ORIGIN_CUSTOMER && !(customer_types & BIT(m->type)))
        return cg_err_set(err, "bad_type", "type '%s' may not be sent by a customer",
                          msg_type_name(m->type));
    if (origin == ORIGIN_AGENT && !(agent_types & BIT(m->type)))
        return cg_err_set(err, "bad_type", "type '%s' may not be sent by an agent",
                          msg_type_name(m->type));
    if (origin != ORIGIN_CUSTOMER && origin != ORIGIN_AGENT && origin != ORIGIN_INTERNAL)
        return cg_err_set(err, "bad_value", "unknown origin %d", (int)origin);
    if (check_fields(m, err)) return -1;
    if (origin != ORIGIN_INTERNAL && check_client_fields(m, err)) return -1;
    return check_required(m, origin, err);
}
