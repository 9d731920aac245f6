/* hook_wechat.c -- /channels/wechat: WeChat Official Account / WeCom message push.
 *
 * Every request carries signature = sha1(sort(token, timestamp, nonce)) in the query: checked
 * first (403). GET echoes echostr (the server verification). POST in plain mode is the message
 * XML; in safe mode (encrypt_type=aes) the XML envelope's Encrypt is checked against
 * msg_signature before it is decrypted with the EncodingAESKey. A message is stored as a
 * customer message of "wechat:<openid>" with cmid "wx:<MsgId>" (events: "wx:ev:<openid>:<time>");
 * the answer is "success" once it is stored (WeChat waits 5 s, then retries three times). */
#include "gw.h"
#include "webhook.h"

#include <stdlib.h>
#include <string.h>

#include "../channels/chan.h"
#include "../channels/wechat.h"
#include "../common/log.h"

static int wechat_enabled(void) {
    return G.cfg.wechat_token[0] != '\0';
}

/* The query signature of every request; 0 when it matches. */
static int wechat_check_query(wh_req *q) {
    char ts[WECHAT_PARAM_MAX + 16], nonce[WECHAT_PARAM_MAX + 16], sig[128];
    const char *t = wh_arg(q, "timestamp", ts, sizeof(ts));
    const char *n = wh_arg(q, "nonce", nonce, sizeof(nonce));
    const char *s = wh_arg(q, "signature", sig, sizeof(sig));
    if (!t || !n || !s || wechat_verify_signature(G.cfg.wechat_token, t, n, s, NULL) < 0) {
        log_info("webhook /channels/wechat: bad signature");
        wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain", "forbidden\n");
        return -1;
    }
    return 0;
}

static void wechat_get(wh_req *q) {
    if (wechat_check_query(q) < 0) return;
    char buf[160];
    const char *echo = wh_arg(q, "echostr", buf, sizeof(buf));
    if (!echo || !chan_id_ok(echo, 128)) {
        wh_respond(q, HTTP_STATUS_BAD_REQUEST, "text/plain", "bad echostr\n");
        return;
    }
    wh_respond(q, HTTP_STATUS_OK, "text/plain", echo);
}

/* Safe mode: verify msg_signature over the envelope's Encrypt, then decrypt into *plain. */
static int wechat_open_envelope(wh_req *q, char **plain, size_t *plain_len) {
    cg_err err;
    if (!G.cfg.wechat_aes_key[0]) {
        log_warn("webhook /channels/wechat: safe-mode message but wechat_aes_key is not set");
        wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain", "forbidden\n");
        return -1;
    }
    char *enc = NULL;
    if (wechat_parse_encrypted_envelope(q->body, q->len, &enc, &err) < 0) {
        wh_respond_err(q, "malformed XML", &err);
        return -1;
    }
    char ts[WECHAT_PARAM_MAX + 16], nonce[WECHAT_PARAM_MAX + 16], sig[128];
    const char *t = wh_arg(q, "timestamp", ts, sizeof(ts));
    const char *n = wh_arg(q, "nonce", nonce, sizeof(nonce));
    const char *s = wh_arg(q, "msg_signature", sig, sizeof(sig));
    int rc = -1;
    if (!t || !n || !s || wechat_verify_msg_signature(G.cfg.wechat_token, t, n, enc, s, &err) < 0) {
        log_info("webhook /channels/wechat: bad msg_signature");
        wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain", "forbidden\n");
    } else if (wechat_decrypt(G.cfg.wechat_aes_key, G.cfg.wechat_appid, enc, strlen(enc), plain,
                              plain_len, &err) < 0) {
        log_info("webhook /channels/wechat: cannot decrypt: %s", err.code);
        wh_respond_err(q, "bad Encrypt", &err);
    } else
        rc = 0;
    free(enc);
    return rc;
}

static void wechat_post(wh_req *q) {
    if (wechat_check_query(q) < 0) return;
    char et[32];
    const char *mode = wh_arg(q, "encrypt_type", et, sizeof(et));
    char *plain = NULL;
    size_t plain_len = 0;
    const char *xml = q->body;
    size_t xml_len = q->len;
    if (mode && !strcmp(mode, "aes")) {
        if (wechat_open_envelope(q, &plain, &plain_len) < 0) return;
        xml = plain;
        xml_len = plain_len;
    } else if (mode && strcmp(mode, "raw")) {
        wh_respond(q, HTTP_STATUS_BAD_REQUEST, "text/plain", "unsupported encrypt_type\n");
        return;
    }
    q->ok_body = "success"; /* exactly this word stops WeChat's retries */
    msg m;
    msg_init(&m);
    int ignored = 0;
    cg_err err;
    int rc = wechat_parse_xml(xml, xml_len, &m, &ignored, &err);
    free(plain);
    if (rc < 0) {
        wh_respond_err(q, "malformed XML", &err);
        return;
    }
    if (!ignored) {
        char cust[MSG_ID_MAX], cmid[MSG_ID_MAX];
        whs_customer_id(
            "wechat:", m.meta.platform_chat_id[0] ? m.meta.platform_chat_id : m.sender_id, cust);
        whs_cmid("wx:", m.meta.platform_msg_id, cmid);
        whs_store(q, &m, cust, cmid, NULL);
    }
    msg_free(&m);
    wh_finish(q);
}

const wh_hook hook_wechat = {"/channels/wechat", 1, 0, wechat_enabled, wechat_get, wechat_post};
