/* chan.h -- small helpers shared by the channel modules (wechat, meta, telegram, email).
 *
 * Nothing here touches sockets or Redis. Every function treats its input as hostile: lengths are
 * explicit, output buffers are bounded, and strings copied into a msg are valid UTF-8. */
#ifndef CG_CHAN_H
#define CG_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../proto/msg.h"

/* Size limits of webhook bodies: JSON and XML bodies, and raw e-mail messages. */
#define CHAN_BODY_MAX (256 * 1024)
#define CHAN_EMAIL_MAX (1024 * 1024)

/* Copy the len bytes at src into dst (size n >= 1) as a NUL-terminated string, cut at a UTF-8
 * character boundary when it does not fit. C0 control characters (NUL included) and DEL become
 * spaces, so names and subjects never carry terminal escapes or line breaks. Returns -1 (dst set
 * to "") when src is not valid UTF-8, 0 otherwise. */
int chan_copy(char *dst, size_t n, const char *src, size_t len);

/* Like chan_copy for a NUL-terminated src; NULL src copies "". */
int chan_copys(char *dst, size_t n, const char *src);

/* 1 when s is a non-empty platform identifier of at most max bytes made only of
 * [A-Za-z0-9._:@+=/-] (WeChat openids and media ids, WhatsApp ids, wamids, Messenger mids,
 * decimal ids, WeChat echostr and Meta hub.challenge values before echoing them). */
int chan_id_ok(const char *s, size_t max);

/* Decode exactly 2*outlen hex digits (either case) at hex into out. -1 on any other length or a
 * non-hex digit. */
int chan_hex_decode(const char *hex, size_t hexlen, unsigned char *out, size_t outlen);

/* Write 2*len lowercase hex digits of in plus a NUL to out (size >= 2*len+1). */
void chan_hex_encode(const unsigned char *in, size_t len, char *out);

/* Parse a whole decimal string (optional '-', at most 19 digits) into *out within [min,max].
 * -1 on anything else. */
int chan_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* The string value of key in obj, or NULL when obj is not an object, the key is missing or its
 * value is not a string. The pointer belongs to obj. */
const char *chan_json_str(const json_t *obj, const char *key);

/* Load a JSON document of at most CHAN_BODY_MAX bytes. Returns a new reference (caller
 * json_decref()s) or NULL with err "too_large" / "bad_json". The top level must be an object. */
json_t *chan_json_load(const char *body, size_t len, cg_err *err);

/* The text to send to a customer for an outbound msg: its text, followed by one line per
 * attachment URL. Returns a malloc'd NUL-terminated UTF-8 string (caller frees) and its length in
 * *len, or NULL with err "missing_field" when there is nothing to send, "nomem". */
char *chan_reply_text(const msg *m, size_t *len, cg_err *err);

/* Fill the fields every inbound channel message shares: type, channel, dir DIR_IN, role
 * ROLE_CUSTOMER. m must be msg_init()ed. */
void chan_msg_inbound(msg *m, msg_type type, msg_channel ch);

/* msg_set_text() with a printf format; -1 with err ("nomem", or as msg_set_text). */
int chan_set_textf(msg *m, cg_err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Append an attachment reference to m. url is required; mime, name may be NULL. Strings that do
 * not fit are cut (url: refused). Returns -1 with err "too_large" when m already has MSG_ATT_MAX
 * attachments or the url does not fit, "bad_value" when url is not valid UTF-8. */
int chan_msg_add_att(msg *m, const char *url, const char *mime, const char *name, uint64_t size,
                     cg_err *err);

#endif
