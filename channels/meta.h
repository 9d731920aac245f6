/* meta.h -- Meta platform webhooks: WhatsApp Cloud API and Messenger (signature, verification
 * challenge, message parsing, send-API bodies).
 *
 * The gateway's order for a POST: check the body size (CHAN_BODY_MAX), meta_verify_signature()
 * over the raw bytes exactly as received (never re-serialized), then meta_parse_whatsapp() or
 * meta_parse_messenger(), then meta_fresh() on each message (a stale one is acknowledged, not
 * stored); answer 200 quickly, also when the body held only statuses or ignored events;
 * de-duplicate by meta.platform_msg_id (wamid / mid). For the GET verification:
 * meta_verify_challenge(), then echo hub.challenge as text/plain only when
 * chan_id_ok(challenge, 128). Pure functions: no sockets, no Redis, no global state. */
#ifndef CG_META_H
#define CG_META_H

#include <stddef.h>

#include "../common/err.h"
#include "../proto/msg.h"

#define META_MSGS_MAX 100 /* messages accepted from one webhook body */

/* What a body held besides the messages returned. */
typedef struct meta_stats {
    size_t statuses; /* WhatsApp sent/delivered/read statuses: acknowledged, not messages */
    size_t ignored;  /* Messenger echoes, deliveries, reads and other events */
    size_t invalid;  /* message entries lacking a required field (skipped) */
} meta_stats;

/* X-Hub-Signature-256 check: header must be "sha256=" followed by 64 hex digits equal (constant
 * time) to HMAC-SHA256(app_secret, body[0..len)). Returns 0 when it matches, -1 with err
 * "bad_signature" otherwise (also for a malformed header or an empty secret), "too_large" for a
 * body over CHAN_BODY_MAX. */
int meta_verify_signature(const char *app_secret, const char *body, size_t len, const char *header,
                          cg_err *err);

/* GET hub.mode / hub.verify_token check: mode must be "subscribe" and the token equal (constant
 * time) to the configured non-empty one. 0, or -1 with err "forbidden". */
int meta_verify_challenge(const char *mode, const char *verify_token_given,
                          const char *verify_token_expected, cg_err *err);

/* Parse a WhatsApp Cloud API webhook body: entry[].changes[].value.messages[] with
 * contacts[].profile.name as sender_name. On success *out is a malloc'd array of *n msgs
 * (NULL when *n == 0; free with meta_msgs_free()) and st (may be NULL) counts what was not
 * returned. Types: text -> MSG_TEXT; image, video, audio, document, sticker -> MSG_ATTACHMENT
 * "wa-media:<media id>" (caption as text); location -> "[location] <name> <address> (lat,lon)";
 * button, interactive replies -> their title as text; reaction -> "[reaction] <emoji>"; others
 * -> "[unsupported whatsapp message: <type>]". Errors: "too_large" (body, or more than
 * META_MSGS_MAX messages), "bad_json" (syntax or structure), "nomem". */
int meta_parse_whatsapp(const char *body, size_t len, msg **out, size_t *n, meta_stats *st,
                        cg_err *err);

/* Parse a Messenger webhook body: entry[].messaging[] events with a message (text,
 * attachments[].payload.url as references, reply_to.mid as meta.in_reply_to) or a postback
 * (its title as text). Echoes (message.is_echo), delivery, read and other events are counted in
 * st->ignored. Same ownership and errors as meta_parse_whatsapp. */
int meta_parse_messenger(const char *body, size_t len, msg **out, size_t *n, meta_stats *st,
                         cg_err *err);

/* How old a message may be (its platform timestamp, ts_client_ms) and how far ahead of the
 * server clock: older or later events are replays or stale redeliveries and are not stored. */
#define META_MAX_AGE_MS (24LL * 3600 * 1000)
#define META_MAX_AHEAD_MS (300LL * 1000)

/* 0 when m's platform timestamp is within [now_ms - META_MAX_AGE_MS, now_ms +
 * META_MAX_AHEAD_MS] or absent (0), else -1 with err "stale" naming its age. */
int meta_fresh(const msg *m, long long now_ms, cg_err *err);

/* msg_free() each of the n msgs and free the array. NULL-safe. */
void meta_msgs_free(msg *msgs, size_t n);

/* {"messaging_product":"whatsapp","to":"<to>","type":"text","text":{"body":"..."}} from m's
 * text and attachment URLs. *out malloc'd (caller frees). Errors: "bad_value", "missing_field",
 * "nomem". */
int meta_render_whatsapp(const msg *m, const char *to, char **out, cg_err *err);

/* Send API body {"recipient":{"id":"<psid>"},"messaging_type":"RESPONSE","message":{"text":...}}.
 * Same ownership and errors as meta_render_whatsapp. */
int meta_render_messenger(const msg *m, const char *psid, char **out, cg_err *err);

#endif
