/* hook_wechat.c -- /channels/wechat: WeChat Official Account / WeCom message push.
 *
 * Every request carries signature = sha1(sort(token, timestamp, nonce)) in the query: checked
 * first (403). GET echoes echostr (the server verification). A POST's query is checked at the
 * headers, before any body byte is read (wechat_check_post_query, 403 with the reason): the
 * signature, the timestamp within +-300 s of the clock, and the mode: with wechat_aes_key set
 * only safe mode (encrypt_type=aes) is taken, plain and raw are refused. POST in plain mode is
 * the message XML; in safe mode the XML envelope's Encrypt is checked against msg_signature
 * before it is decrypted with the EncodingAESKey. A message whose CreateTime is outside the same
 * window is refused (403). A message is stored as a customer message of "wechat:<openid>" with
 * cmid "wx:<MsgId>" (events: "wx:ev:<openid>:<time>"), once: the cmid is remembered for a day
 * (cg:seen:<cmid>), so a replay after its conversation closed opens no new one. The answer is
 * "success" once it is stored or known (WeChat waits 5 s, then retries three times). */
#include "gw.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../channels/chan.h"
#include "../channels/wechat.h"
#include "../common/log.h"
#include "../common/util.h"

#define WECHAT_REPLAY_TTL_S 86400LL /* far beyond the +-300 s a signed query is accepted */

static int wechat_enabled(void) {
    return G.cfg.wechat_token[0] != '\0';
}

static long long wechat_max_body(void) {
    return G.cfg.wechat_max_body < G.cfg.webhook_max_body ? G.cfg.wechat_max_body
                                                          : G.cfg.webhook_max_body;
}

/* 1 when the request asks for safe mode (its query was checked at the headers). */
static int wechat_is_aes(wh_req *q) {
    char et[32];
    const char *mode = wh_arg(q, "encrypt_type", et, sizeof(et));
    return mode && !strcmp(mode, "aes");
}

/* A POST at the headers: signature, timestamp window and mode, before the body is read. */
static int wechat_headers(wh_req *q) {
    char ts[WECHAT_PARAM_MAX + 16], nonce[WECHAT_PARAM_MAX + 16], sig[128], et[32];
    const char *t = wh_arg(q, "timestamp", ts, sizeof(ts));
    const char *n = wh_arg(q, "nonce", nonce, sizeof(nonce));
    const char *s = wh_arg(q, "signature", sig, sizeof(sig));
    const char *mode = wh_arg(q, "encrypt_type", et, sizeof(et));
    int aes = 0;
    cg_err err;
    if (wechat_check_post_query(G.cfg.wechat_token, t, n, s, mode, G.cfg.wechat_aes_key[0] != '\0',
                                cg_now_ms() / 1000, &aes, &err) == 0)
        return 0;
    if (wh_log_ok())
        log_info("webhook /channels/wechat: refused at the headers: %s: %s", err.code, err.msg);
    if (!strcmp(err.code, "bad_value"))
        wh_respond(q, HTTP_STATUS_BAD_REQUEST, "text/plain", "unsupported encrypt_type\n");
    else
        wh_respond_err(q, "bad query", &err);
    return -1;
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

/* The body of a request whose query passed wechat_headers. */
static void wechat_post(wh_req *q) {
    char *plain = NULL;
    size_t plain_len = 0;
    const char *xml = q->body;
    size_t xml_len = q->len;
    if (wechat_is_aes(q)) {
        if (wechat_open_envelope(q, &plain, &plain_len) < 0) return;
        xml = plain;
        xml_len = plain_len;
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
    if (wechat_time_ok(m.ts_client_ms / 1000, cg_now_ms() / 1000, &err) < 0) {
        log_info("webhook /channels/wechat: CreateTime refused: %s", err.msg);
        snprintf(err.msg, sizeof(err.msg), "CreateTime outside +-%d s of the server clock",
                 WECHAT_TIME_WINDOW_S);
        msg_free(&m);
        wh_respond_err(q, "", &err);
        return;
    }
    if (!ignored) {
        char cust[MSG_ID_MAX], cmid[MSG_ID_MAX];
        whs_customer_id(
            "wechat:", m.meta.platform_chat_id[0] ? m.meta.platform_chat_id : m.sender_id, cust);
        whs_cmid("wx:", m.meta.platform_msg_id, cmid);
        whs_opts o = {"", 0, NULL, 0, WECHAT_REPLAY_TTL_S};
        whs_store(q, &m, cust, cmid, &o);
    }
    msg_free(&m);
    wh_finish(q);
}

const wh_hook hook_wechat = {"/channels/wechat", 1,           wechat_max_body, wechat_enabled,
                             wechat_get,         wechat_post, wechat_headers,  0};
