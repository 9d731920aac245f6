/* email.h -- inbound e-mail (RFC 5322 / MIME) to a msg, and agent replies as MIME messages.
 *
 * Parsing and building go through GMime 3; this module only picks parts, converts charsets,
 * reduces HTML to text and strips quoted replies. The gateway (or a mail bridge) calls
 * email_parse() on each raw message (at most EMAIL_RAW_MAX bytes), drops it when info.is_auto
 * (never answer auto-replies and bounces: mail loops), finds the conversation by info.conv_token,
 * then In-Reply-To / References against the Message-IDs it sent, and de-duplicates by
 * meta.platform_msg_id. Replies: email_render_reply(). Pure functions: no sockets, no Redis;
 * g_mime_init() runs once, on first use. */
#ifndef CG_EMAIL_H
#define CG_EMAIL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../proto/msg.h"

#define EMAIL_RAW_MAX (1024 * 1024) /* raw message bytes */
#define EMAIL_DEPTH_MAX 8           /* MIME nesting looked into */
#define EMAIL_REFS_MAX 10           /* References kept (the first ones: the thread root first) */
#define EMAIL_TOKEN_LEN 32          /* conversation token: 32 lowercase hex digits */

/* What the gateway needs besides the msg to thread and answer a mail. Strings are UTF-8,
 * NUL-terminated, "" when absent; Message-IDs are without angle brackets. */
typedef struct email_info {
    char message_id[MSG_META_MAX];
    char in_reply_to[MSG_META_MAX];
    char references[EMAIL_REFS_MAX][MSG_META_MAX];
    size_t n_references;
    char from_addr[MSG_META_MAX];
    char from_name[MSG_NAME_MAX];
    char subject[MSG_META_MAX]; /* reply/forward prefixes and the [#cg-...] token removed */
    int is_auto;                /* auto-reply, bulk, list or bounce: never answer */
    char conv_token[EMAIL_TOKEN_LEN + 1]; /* from "[#cg-<hex>]" in the subject or a recipient
                                             "+cg-<hex>@" plus-address; "" if none */
    unsigned n_attachments;               /* attachments seen (also those beyond MSG_ATT_MAX) */
    int truncated;                        /* body text was cut at MSG_TEXT_MAX */
} email_info;

/* Parse the len bytes of raw into out (msg_init()ed by the caller; msg_free()d on error) and
 * info. out: type MSG_TEXT (MSG_ATTACHMENT when there is no text), channel CH_EMAIL, DIR_IN,
 * ROLE_CUSTOMER, sender_id = from address (or "h:" + 32 hex of its SHA-256 when longer than
 * MSG_ID_MAX-1), sender_name, ts_client_ms from Date, text = the new part of the body (text/plain
 * preferred in multipart/alternative, else HTML reduced to text; converted to UTF-8, gb2312/GBK
 * labels decoded as GB18030; quoted lines and everything after "On ... wrote:", "在 ... 写道：",
 * "-----Original Message-----", "-----原始邮件-----" removed; the subject when the body is empty),
 * attachments as "email-att:<message-id>/<index>" references with name, mime and decoded size,
 * meta.platform_msg_id = Message-ID (or "sha256:<hex>" of the raw bytes), meta.thread_id =
 * Message-ID, meta.in_reply_to, meta.subject, meta.platform_chat_id = from address.
 * Only what a reply can render back is kept: a From mailbox that email_addr_ok refuses is skipped
 * (none left: "bad_value", the mail cannot be answered by mail), and a Message-ID, In-Reply-To or
 * References entry that email_msgid_ok refuses is dropped (the mail is kept, it does not thread by
 * it; platform_msg_id then falls back to the hash).
 * Errors: "too_large", "bad_email" (not a message), "missing_field" (no From address),
 * "bad_value" (a From address a reply cannot go to). */
int email_parse(const char *raw, size_t len, msg *out, email_info *info, cg_err *err);

/* 1 when a is an address email_render_reply puts in a From/To header: one '@' with text on both
 * sides, <= 254 bytes of UTF-8, no whitespace, controls or specials (<>()[]\,;:"). */
int email_addr_ok(const char *a);

/* 1 when s (without <>) is a Message-ID email_render_reply puts in In-Reply-To / References:
 * 1..250 bytes of printable ASCII, no whitespace or angle brackets. */
int email_msgid_ok(const char *s);

/* Make a normalized inbound e-mail msg (a bridge's push) answerable, in place: the reply address
 * (meta.platform_chat_id) must pass email_addr_ok ("bad_value" otherwise: nothing could ever be
 * sent back); meta.thread_id and meta.in_reply_to that email_msgid_ok refuses are cleared (not
 * threaded by them); control characters in meta.subject and sender_name become spaces. */
int email_inbound_check(msg *m, cg_err *err);

/* What a reply needs besides the text. Optional fields may be NULL or "". */
typedef struct email_reply {
    const char *from_addr;         /* required: the desk's address */
    const char *from_name;         /* optional display name */
    const char *to_addr;           /* required: the customer's address */
    const char *to_name;           /* optional */
    const char *subject;           /* the conversation subject, without "Re:" */
    const char *in_reply_to;       /* Message-ID answered, without <> */
    const char *const *references; /* Message-IDs of the thread, oldest first, without <> */
    size_t n_references;
    const char *message_id_domain; /* required: right-hand side of the new Message-ID */
    const char *conv_token;        /* optional 32-hex conversation token for the subject */
    int64_t date_ms;               /* Date header, unix ms; 0 = now */
} email_reply;

/* Render m's text (plus attachment URLs) as a complete RFC 5322 message with CRLF line ends:
 * From, To, Subject "Re: <subject> [#cg-<token>]" (RFC 2047 encoded when not ASCII), Date,
 * Message-ID "<cg-<32 hex>@<domain>>", In-Reply-To, References (the given ones, then
 * in_reply_to), MIME-Version, text/plain; charset=utf-8 (quoted-printable or base64). *out is
 * malloc'd (caller frees), *out_len its length; message_id (may be NULL) receives the new
 * Message-ID without <> so the gateway can recognise answers to it. Errors: "bad_value" (an
 * address, id, token or subject that could inject headers), "missing_field", "nomem". */
int email_render_reply(const msg *m, const email_reply *r, char **out, size_t *out_len,
                       char message_id[MSG_META_MAX], cg_err *err);

#endif
