/* telegram.h -- Telegram Bot API webhooks: secret header, Update parsing, sendMessage body.
 *
 * The gateway's order for a POST: telegram_verify_secret() on X-Telegram-Bot-Api-Secret-Token
 * at the headers (403 on mismatch, before the body is read), check the body size (CHAN_BODY_MAX),
 * telegram_parse_update(); answer 200 also for ignored updates (Telegram retries every non-2xx);
 * de-duplicate by meta.platform_msg_id ("tg:<update_id>"). Pure functions: no sockets, no Redis. */
#ifndef CG_TELEGRAM_H
#define CG_TELEGRAM_H

#include <stddef.h>

#include "../common/err.h"
#include "../proto/msg.h"

/* Constant-time comparison of the secret header with the configured non-empty secret.
 * 0, or -1 with err "forbidden". */
int telegram_verify_secret(const char *header, const char *expected, cg_err *err);

/* Parse one Update into out (msg_init()ed; left msg_free()d on error and when ignored).
 * message -> MSG_TEXT (text or caption) or MSG_ATTACHMENT (photo: the largest size; document,
 * audio, voice, video, sticker: "tg-file:<file_id>" references); location -> "[location]
 * (lat,lon)". edited_message, channel posts, callback queries and every other update kind set
 * *ignored = 1 and return 0. sender_id = from.id, meta.platform_chat_id = chat.id (exact 64-bit
 * decimal), sender_name = "first last" (else "@username"), ts_client_ms = date * 1000,
 * meta.platform_msg_id = "tg:<update_id>". Errors: "too_large", "bad_json", "missing_field",
 * "bad_value". */
int telegram_parse_update(const char *body, size_t len, msg *out, int *ignored, cg_err *err);

/* sendMessage body {"chat_id":<chat_id as a JSON integer>,"text":"..."} from m's text and
 * attachment URLs; chat_id is the decimal string kept in meta.platform_chat_id. *out malloc'd
 * (caller frees). Errors: "bad_value", "missing_field", "nomem". */
int telegram_render_send(const msg *m, const char *chat_id, char **out, cg_err *err);

#endif
