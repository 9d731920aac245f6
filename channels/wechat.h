/* wechat.h -- WeChat Official Account (and WeCom) webhooks: signatures, safe-mode crypto, the
 * XML message body, and the customer-service reply JSON.
 *
 * The gateway's order for a POST: before the body, wechat_check_post_query() (signature,
 * timestamp window, mode); check the body size (WECHAT_BODY_MAX); plain mode:
 * wechat_parse_xml(), then wechat_time_ok() on CreateTime; safe mode
 * (encrypt_type=aes): wechat_parse_encrypted_envelope(), wechat_verify_msg_signature() with the
 * Encrypt value, only then wechat_decrypt() (so a forged body never reaches the padding check),
 * then wechat_parse_xml() on the plaintext. Answer "success" within 5 s; de-duplicate by
 * meta.platform_msg_id. Pure functions: no sockets, no Redis, no global state. */
#ifndef CG_WECHAT_H
#define CG_WECHAT_H

#include <stddef.h>

#include "../common/err.h"
#include "../proto/msg.h"

#define WECHAT_BODY_MAX (256 * 1024) /* XML body, and the base64 Encrypt value */
#define WECHAT_PARAM_MAX 256         /* token, timestamp, nonce, appid */
#define WECHAT_AES_KEY_LEN 43        /* EncodingAESKey: 43 base64 characters */

/* GET/POST query check: signature == hex(sha1(concat(sort(token, timestamp, nonce)))).
 * The comparison is constant time; the hex may be either case. Returns 0 when it matches, -1 with
 * err "bad_signature" otherwise (also for missing or over-long parameters). */
int wechat_verify_signature(const char *token, const char *timestamp, const char *nonce,
                            const char *signature, cg_err *err);

/* How far a request's timestamp and a message's CreateTime may be from the server clock. */
#define WECHAT_TIME_WINDOW_S 300

/* 0 when the unix time ts_s is within WECHAT_TIME_WINDOW_S of now_s (either way), else -1 with
 * err "stale" naming the difference. */
int wechat_time_ok(long long ts_s, long long now_s, cg_err *err);

/* The query of a POST, checked before any body byte is read: signature (wechat_verify_signature),
 * then timestamp within WECHAT_TIME_WINDOW_S of now_s, then the mode: encrypt_type absent or
 * "raw" is plain, "aes" is safe mode (*aes = 1). With aes_required (an EncodingAESKey is
 * configured) only safe mode is accepted; without a key safe mode cannot be read. Returns 0, or
 * -1 with err "bad_signature", "stale" (timestamp missing, not a number or outside the window),
 * "encryption_required" (plain or raw while a key is set), "no_key" (aes without a key) or
 * "bad_value" (another encrypt_type). Any of the strings may be NULL (absent). */
int wechat_check_post_query(const char *token, const char *timestamp, const char *nonce,
                            const char *signature, const char *encrypt_type, int aes_required,
                            long long now_s, int *aes, cg_err *err);

/* Safe mode: compute msg_signature = hex(sha1(concat(sort(token, timestamp, nonce, encrypt))))
 * into out (41 bytes, lowercase). Returns -1 with err "bad_value" for missing or over-long
 * inputs. */
int wechat_msg_signature(const char *token, const char *timestamp, const char *nonce,
                         const char *encrypt, char out[41], cg_err *err);

/* Safe mode: constant-time check of the msg_signature query parameter. 0 or -1
 * ("bad_signature"). */
int wechat_verify_msg_signature(const char *token, const char *timestamp, const char *nonce,
                                const char *encrypt, const char *msg_signature, cg_err *err);

/* Safe mode: decrypt the base64 Encrypt value (b64_len bytes) with the 43-character
 * EncodingAESKey. AES-256-CBC, key = base64(aes_key + "="), IV = key[0:16]; the plaintext is
 * random16 | uint32_be(len) | msg | appid with PKCS#7 padding to 32-byte blocks. The padding, the
 * length and the trailing appid (must equal appid_expected) are checked. On success *out is a
 * malloc'd NUL-terminated copy of msg (caller frees), *out_len its length. Errors: "bad_value"
 * (key, base64), "too_large", "bad_cipher" (length, padding, inner length), "bad_appid". */
int wechat_decrypt(const char *aes_key, const char *appid_expected, const char *b64, size_t b64_len,
                   char **out, size_t *out_len, cg_err *err);

/* Safe mode, the other way (for encrypted passive replies and tests): encrypt the len bytes at
 * plain for appid. random16 supplies the 16 leading random bytes (NULL: drawn from the system
 * RNG). *out is the malloc'd NUL-terminated base64 text (caller frees). Errors: "bad_value",
 * "too_large", "crypto". */
int wechat_encrypt(const char *aes_key, const char *appid, const char *plain, size_t len,
                   const unsigned char *random16, char **out, cg_err *err);

/* Safe mode: take the <Encrypt> value out of an encrypted body <xml><ToUserName/><Encrypt/></xml>.
 * *encrypt is malloc'd (caller frees). Same XML hardening as wechat_parse_xml. Errors: "bad_xml",
 * "too_large", "missing_field". */
int wechat_parse_encrypted_envelope(const char *body, size_t len, char **encrypt, cg_err *err);

/* Parse a plaintext message body into out (msg_init()ed by the caller; on error it is left
 * msg_free()d). DTDs, entity declarations and any DOCTYPE are refused, nesting and size are
 * capped. MsgType mapping:
 *   text -> MSG_TEXT (Content); image -> MSG_ATTACHMENT (PicUrl, MediaId as name);
 *   voice -> MSG_ATTACHMENT "wechat-media:<MediaId>" audio/<Format>, text = Recognition;
 *   video, shortvideo -> MSG_ATTACHMENT "wechat-media:<MediaId>";
 *   location -> MSG_TEXT "[location] <Label> (<Location_X>,<Location_Y>)";
 *   link -> MSG_TEXT "[link] <Title>\n<Description>\n<Url>";
 *   event subscribe -> MSG_JOIN; every other event -> *is_event_ignored = 1 (return 0);
 *   any other type -> MSG_TEXT "[unsupported wechat message: <type>]".
 * sender_id and meta.platform_chat_id = FromUserName (openid); ts_client_ms = CreateTime * 1000;
 * meta.platform_msg_id = MsgId as its decimal string (64-bit exact), or "ev:<openid>:<CreateTime>"
 * for events (WeChat's own de-dup rule for events). Errors: "too_large", "bad_xml",
 * "missing_field", "bad_value". */
int wechat_parse_xml(const char *body, size_t len, msg *out, int *is_event_ignored, cg_err *err);

/* Render m's text (plus attachment URLs) as the customer-service send API body
 * {"touser":"<openid>","msgtype":"text","text":{"content":"..."}}. *out is malloc'd (caller
 * frees). Errors: "bad_value" (openid), "missing_field" (nothing to send), "nomem". */
int wechat_render_reply_json(const msg *m, const char *openid, char **out, cg_err *err);

#endif
