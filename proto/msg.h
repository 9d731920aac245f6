/* msg.h -- the one normalized chatgw message.
 *
 * Every frame a client sends or receives, every entry in a Redis stream and every pub/sub payload
 * is one `msg`. Inside Redis it is msgpack (msg_encode_msgpack / msg_decode_msgpack); on WebSocket
 * text frames it is JSON (msg_encode_json / msg_decode_json). Both encodings use the same field
 * names, listed in docs/protocol.md. This module knows nothing of sockets or Redis.
 *
 * Memory: short fields are fixed arrays inside the struct (their size is the limit, checked at
 * decode time); `text`, `native` and `items` are heap-allocated and owned by the msg: msg_free()
 * releases them. A msg_init()ed msg can always be msg_free()d. */
#ifndef CG_MSG_H
#define CG_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

/* Limits (bytes, including the terminating NUL for the char arrays). */
#define MSG_ID_MAX 65      /* server id, client id, conv id, sender id, customer id */
#define MSG_NAME_MAX 129   /* display names */
#define MSG_CODE_MAX 65    /* error / resolution / status / queue names */
#define MSG_TEXT_MAX 32768 /* text body, bytes of UTF-8 (no NUL counted) */
#define MSG_TOKEN_MAX 2048 /* signed session tokens */
#define MSG_URL_MAX 1024
#define MSG_ATT_MAX 8               /* attachments per message */
#define MSG_ITEMS_MAX 100           /* entries in a queue snapshot */
#define MSG_PREVIEW_MAX 161         /* first words of a waiting conversation */
#define MSG_META_MAX 257            /* platform ids, e-mail Message-ID, subject */
#define MSG_SKILLS_MAX 16           /* skills (queue names) of an agent */
#define MSG_NATIVE_MAX (128 * 1024) /* a rendered platform body (bridges), bytes of UTF-8 */
#define MSG_TENANT_MAX 33           /* hello's tenant: 1-32 of a-z 0-9 _ - */

/* msg_type (MSG_TEXT ...), msg_channel (CH_WEB ...), msg_role (ROLE_AGENT ...), msg_dir (DIR_IN,
 * DIR_OUT) and MSG_VERSION are generated from schema/chatgw.json, with the names of the wire. */
#include "proto_schema.h"

/* Where a frame came from: validation is stricter for frames typed by a client. */
typedef enum msg_origin {
    ORIGIN_CUSTOMER, /* a customer client; only content, typing, read, hello, ack, rating, close */
    ORIGIN_AGENT,    /* an agent client; content, typing, read, hello, ack, presence, pick, close,
                        transfer, classify */
    ORIGIN_INTERNAL  /* gateway/router/bridge-produced: every type, role and dir required */
} msg_origin;

typedef struct msg_attachment {
    char url[MSG_URL_MAX];
    char mime[MSG_CODE_MAX];
    uint64_t size;
    char name[MSG_NAME_MAX];
} msg_attachment;

typedef struct msg_identity {
    char customer_id[MSG_ID_MAX];
    char order_no[MSG_ID_MAX];
    char account[MSG_NAME_MAX];
    char locale[16]; /* BCP 47, e.g. zh-CN */
    char tier[MSG_CODE_MAX];
} msg_identity;

typedef struct msg_meta {
    char platform_msg_id[MSG_META_MAX];  /* for de-duplication (WeChat MsgId, wamid, ...) */
    char platform_chat_id[MSG_META_MAX]; /* where to reply (chat id, openid, e-mail address) */
    char thread_id[MSG_META_MAX];        /* e-mail Message-ID of this message */
    char in_reply_to[MSG_META_MAX];      /* e-mail In-Reply-To */
    char subject[MSG_META_MAX];
} msg_meta;

typedef struct msg_queue_item {
    char conv[MSG_ID_MAX];
    uint32_t position; /* 1-based */
    int64_t since_ms;  /* when it started waiting (unix ms) */
    msg_channel channel;
    uint8_t priority; /* 0..9, higher first */
    uint8_t ring;     /* the bullseye ring it reached (0: its own queue only; omitted then) */
    char preview[MSG_PREVIEW_MAX];
} msg_queue_item;

typedef struct msg {
    uint8_t v; /* MSG_VERSION */
    msg_type type;
    char id[MSG_ID_MAX];   /* server message id, set by the gateway */
    char cmid[MSG_ID_MAX]; /* client message id, for idempotent re-sends */
    char conv[MSG_ID_MAX]; /* conversation id */
    uint64_t seq;          /* per-conversation sequence number, 0 = none */
    msg_channel channel;
    msg_dir dir;
    msg_role role; /* sender role */
    char sender_id[MSG_ID_MAX];
    char sender_name[MSG_NAME_MAX];
    int64_t ts_client_ms; /* when the client says it sent it (unix ms), 0 = unknown */
    int64_t ts_ms;        /* when the gateway received / the router produced it */
    char *text;           /* UTF-8, NUL-terminated, owned; NULL = none */
    size_t text_len;
    msg_attachment *att; /* owned: room for MSG_ATT_MAX from the first (msg_att_slot); NULL
                            before, so that a message without any is small to zero */
    uint8_t n_att;
    msg_identity identity;
    msg_meta meta;
    /* event and session fields */
    char agent_id[MSG_ID_MAX];
    char agent_name[MSG_NAME_MAX];
    char queue[MSG_CODE_MAX];
    uint32_t position;       /* queue position (1-based), 0 = none */
    uint32_t wait_s;         /* estimated wait, seconds */
    char code[MSG_CODE_MAX]; /* error code, resolution, presence status */
    uint8_t rating;          /* 1..5, 0 = none */
    uint8_t retry;           /* errors: 1 = the client may retry the same frame */
    uint8_t priority;        /* 0..9 */
    char token[MSG_TOKEN_MAX];
    uint64_t last_seq;           /* hello: resume after this seq; ack/read: highest seq received */
    char tenant[MSG_TENANT_MAX]; /* hello: the tenant the client means ("" = the gateway's) */
    /* internal presence frames (gateway -> router): the agent's connection and profile */
    char sock[MSG_ID_MAX];                     /* "<gateway id>:<connection id>" */
    char skills[MSG_SKILLS_MAX][MSG_CODE_MAX]; /* queue names the agent serves */
    uint8_t n_skills;
    uint16_t cap;          /* max concurrent conversations */
    msg_queue_item *items; /* owned; queue snapshots */
    uint32_t n_items;
    /* bridges: the message rendered for the platform (WeChat/Telegram/WhatsApp/Messenger JSON
     * body, or a complete MIME e-mail); UTF-8, NUL-terminated, owned; NULL = none */
    char *native;
    size_t native_len;
} msg;

/* Zero m and set the version. Never fails. */
void msg_init(msg *m);

/* Free what m owns (text, native, items, attachments) and re-initialise it. Safe on an
 * initialised msg. */
void msg_free(msg *m);

/* The slot of m's next attachment, att[n_att], zeroed (the caller fills it and counts it in
 * n_att); the array is allocated with the first. NULL when MSG_ATT_MAX are there or out of
 * memory. */
msg_attachment *msg_att_slot(msg *m);

/* Replace m's text with a copy of the len bytes at s (no NUL needed). Returns -1 (err "too_large")
 * when len > MSG_TEXT_MAX, -1 ("bad_utf8") when not valid UTF-8, -1 ("nomem") on allocation
 * failure. */
int msg_set_text(msg *m, const char *s, size_t len, cg_err *err);

/* Replace m's native body with a copy of the len bytes at s, like msg_set_text but with the limit
 * MSG_NATIVE_MAX ("too_large"; "bad_value" for a NUL byte, "bad_utf8", "nomem"). */
int msg_set_native(msg *m, const char *s, size_t len, cg_err *err);

/* Check every rule for a frame of this origin: type allowed for the origin, required fields for
 * the type, sizes, UTF-8 of every string, enum ranges. Returns 0, or -1 with the first broken rule
 * in err (codes: "bad_type", "missing_field", "too_large", "bad_utf8", "bad_value"). */
int msg_validate(const msg *m, msg_origin origin, cg_err *err);

/* The form of m's tenant: "" (none), or 1-32 of a-z 0-9 _ -. Returns 0, or -1 with err
 * ("bad_value" naming the field). Part of msg_validate; for frames that skip it (bridges). */
int msg_check_tenant(const msg *m, cg_err *err);

/* Decode JSON (UTF-8 text) / msgpack bytes into m (which must be msg_init()ed; it is msg_free()d
 * first). Unknown fields are ignored; wrong types, over-long strings, invalid UTF-8 and unknown
 * enum names are errors ("bad_json" / "bad_msgpack" for syntax, then as msg_validate). Decoding
 * does not run msg_validate: call it with the right origin. On error m is left msg_init()ed, but
 * for its cmid when readable. */
int msg_decode_json(msg *m, const char *buf, size_t len, cg_err *err);
int msg_decode_msgpack(msg *m, const char *buf, size_t len, cg_err *err);

/* Encode m. Returns a malloc'd buffer whose first `headroom` bytes are reserved (uninitialised;
 * e.g. LWS_PRE for libwebsockets) followed by *len bytes of payload; the caller frees the returned
 * pointer. Fields at their zero value are omitted. NULL on allocation failure. */
unsigned char *msg_encode_json(const msg *m, size_t headroom, size_t *len);
unsigned char *msg_encode_msgpack(const msg *m, size_t headroom, size_t *len);

/* Names used on the wire ("text", "web", "customer", "in", ...); the parse functions return -1
 * for an unknown name. */
const char *msg_type_name(msg_type t);
int msg_type_parse(const char *s, msg_type *out);
const char *msg_channel_name(msg_channel c);
int msg_channel_parse(const char *s, msg_channel *out);
const char *msg_role_name(msg_role r);
int msg_role_parse(const char *s, msg_role *out);
const char *msg_dir_name(msg_dir d);
int msg_dir_parse(const char *s, msg_dir *out);

/* 1 for types kept in the conversation log (content and conversation events), else 0. */
int msg_type_is_logged(msg_type t);
/* 1 for logged events whose details are for the desk only (transferred: the note; classified:
 * the category; escalated: the breach). Customers get msg_customer_view of them; bridges get
 * nothing. */
int msg_type_is_internal(msg_type t);
/* Fill dst (uninitialised) with what a customer may see of src: type, ids, seq, channel, role,
 * dir, ts, and for transferred agent_name and queue; never text, code or agent_id. dst owns
 * nothing (no msg_free needed, harmless). */
void msg_customer_view(msg *dst, const msg *src);

/* The stored form of a message (conversation logs, cg:in) leaves out what its other fields
 * already say: a customer's identity.customer_id that equals its sender_id (the gateway's
 * session id: 34 of every customer message's bytes on disk). msg_stored_trim before encoding
 * for storage; msg_stored_fill after decoding a stored entry, so what clients and tools get is
 * the message as it was sent. Both idempotent. */
void msg_stored_trim(msg *m);
void msg_stored_fill(msg *m);

/* 1 when the len bytes at s are valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int msg_utf8_valid(const char *s, size_t len);

#endif
