/* hook_meta.c -- /channels/whatsapp and /channels/messenger: Meta webhooks.
 *
 * GET is the subscription check: hub.mode=subscribe and hub.verify_token equal to
 * meta_verify_token (constant time) -> echo hub.challenge, else 403. POST: X-Hub-Signature-256
 * over the raw body bytes, before anything parses them (403); until then the body counts
 * against webhook_unauth_budget (webhook.c). Every message of the body is stored, in order, as
 * a customer message of "whatsapp:<wa_id>" / "messenger:<psid>" with cmid "wa:<wamid>" /
 * "fb:<mid>", once: the id is remembered for two days (cg:seen:<cmid>), also after its
 * conversation closed, and a message more than 24 h old (or 5 min ahead of the clock) is a
 * replay or a stale redelivery: acknowledged, not stored. Statuses, echoes and other events are
 * acknowledged (200) and not stored. */
#include "gw.h"
#include "webhook.h"

#include <string.h>

#include "../channels/chan.h"
#include "../channels/meta.h"
#include "../common/log.h"
#include "../common/util.h"

#define META_REPLAY_TTL_S (2 * 86400LL) /* longer than META_MAX_AGE_MS: a replay is refused */

typedef int meta_parse_fn(const char *body, size_t len, msg **out, size_t *n, meta_stats *st,
                          cg_err *err);

static int meta_enabled(void) {
    return G.cfg.meta_app_secret[0] != '\0';
}

static long long meta_max_body(void) {
    return G.cfg.meta_max_body < G.cfg.webhook_max_body ? G.cfg.meta_max_body
                                                        : G.cfg.webhook_max_body;
}

static void meta_get(wh_req *q) {
    char mode[32], token[300], chal[160];
    const char *m = wh_arg(q, "hub.mode", mode, sizeof(mode));
    const char *t = wh_arg(q, "hub.verify_token", token, sizeof(token));
    const char *c = wh_arg(q, "hub.challenge", chal, sizeof(chal));
    if (!m || !t || meta_verify_challenge(m, t, G.cfg.meta_verify_token, NULL) < 0) {
        log_info("webhook %s: verification refused", q->hook->path);
        wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain", "forbidden\n");
        return;
    }
    if (!c || !chan_id_ok(c, 128)) {
        wh_respond(q, HTTP_STATUS_BAD_REQUEST, "text/plain", "bad hub.challenge\n");
        return;
    }
    wh_respond(q, HTTP_STATUS_OK, "text/plain", c);
}

static void meta_post(wh_req *q, meta_parse_fn *parse, const char *cust_prefix,
                      const char *cmid_prefix) {
    char sig[128];
    const char *given = wh_header(q, "x-hub-signature-256:", sig, sizeof(sig));
    cg_err err;
    if (!given || meta_verify_signature(G.cfg.meta_app_secret, q->body, q->len, given, &err) < 0) {
        log_info("webhook %s: bad signature", q->hook->path);
        if (given && !strcmp(err.code, "too_large"))
            wh_respond_err(q, "", &err);
        else
            wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain", "forbidden\n");
        return;
    }
    msg *msgs = NULL;
    size_t n = 0;
    meta_stats st = {0, 0, 0};
    if (parse(q->body, q->len, &msgs, &n, &st, &err) < 0) {
        wh_respond_err(q, "malformed JSON", &err);
        return;
    }
    log_debug("webhook %s: %zu messages, %zu statuses, %zu ignored, %zu invalid", q->hook->path, n,
              st.statuses, st.ignored, st.invalid);
    long long now = cg_now_ms();
    for (size_t i = 0; i < n; i++) {
        char cust[MSG_ID_MAX], cmid[MSG_ID_MAX];
        const msg *m = &msgs[i];
        if (meta_fresh(m, now, &err) < 0) {
            log_info("webhook %s: message not stored: %s", q->hook->path, err.msg);
            continue;
        }
        whs_customer_id(cust_prefix,
                        m->meta.platform_chat_id[0] ? m->meta.platform_chat_id : m->sender_id,
                        cust);
        whs_cmid(cmid_prefix, m->meta.platform_msg_id, cmid);
        whs_opts o = {"", 0, NULL, 0, META_REPLAY_TTL_S};
        whs_store(q, &msgs[i], cust, cmid, &o);
    }
    meta_msgs_free(msgs, n);
    wh_finish(q);
}

static void whatsapp_post(wh_req *q) {
    meta_post(q, meta_parse_whatsapp, "whatsapp:", "wa:");
}

static void messenger_post(wh_req *q) {
    meta_post(q, meta_parse_messenger, "messenger:", "fb:");
}

const wh_hook hook_whatsapp = {
    "/channels/whatsapp", 1, meta_max_body, meta_enabled, meta_get, whatsapp_post, NULL, 1};
const wh_hook hook_messenger = {
    "/channels/messenger", 1, meta_max_body, meta_enabled, meta_get, messenger_post, NULL, 1};
