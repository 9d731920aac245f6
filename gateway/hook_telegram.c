/* hook_telegram.c -- /channels/telegram: Telegram Bot API webhook (setWebhook with
 * secret_token).
 *
 * X-Telegram-Bot-Api-Secret-Token must equal telegram_secret (constant time), checked at the
 * headers: 403 before any body byte is read. One Update per request (telegram_max_body); a
 * message is stored as a customer message of "telegram:<from.id>" with cmid "tg:<update_id>",
 * once: the update id is remembered for a day (cg:seen:tg:<update_id>), also after its
 * conversation closed. Updates that are not customer messages (edits, channel posts, callback
 * queries, service messages) are answered 200 and not stored: Telegram retries every non-2xx. */
#include "gw.h"
#include "webhook.h"

#include "../channels/telegram.h"
#include "../common/log.h"

#define TELEGRAM_REPLAY_TTL_S 86400LL /* Telegram keeps an undelivered update for 24 h */

static int telegram_enabled(void) {
    return G.cfg.telegram_secret[0] != '\0';
}

static long long telegram_max_body(void) {
    return G.cfg.telegram_max_body < G.cfg.webhook_max_body ? G.cfg.telegram_max_body
                                                            : G.cfg.webhook_max_body;
}

/* At the headers: the secret token, before the body is read. */
static int telegram_headers(wh_req *q) {
    char secret[300];
    const char *given = wh_header(q, "x-telegram-bot-api-secret-token:", secret, sizeof(secret));
    if (given && telegram_verify_secret(given, G.cfg.telegram_secret, NULL) == 0) return 0;
    if (wh_log_ok())
        log_info("webhook /channels/telegram: 403: %s secret token", given ? "bad" : "no");
    wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain",
               given ? "forbidden: bad secret token\n" : "forbidden: no secret token\n");
    return -1;
}

/* The body of an authenticated request. */
static void telegram_post(wh_req *q) {
    msg m;
    msg_init(&m);
    int ignored = 0;
    cg_err err;
    if (telegram_parse_update(q->body, q->len, &m, &ignored, &err) < 0) {
        wh_respond_err(q, "malformed JSON", &err);
        return;
    }
    if (!ignored) {
        char cust[MSG_ID_MAX], cmid[MSG_ID_MAX];
        whs_customer_id("telegram:", m.sender_id, cust);
        whs_cmid("", m.meta.platform_msg_id, cmid); /* "tg:<update_id>" */
        whs_opts o = {"", 0, NULL, 0, TELEGRAM_REPLAY_TTL_S};
        whs_store(q, &m, cust, cmid, &o);
    }
    msg_free(&m);
    wh_finish(q);
}

const wh_hook hook_telegram = {"/channels/telegram", 0,    telegram_max_body,
                               telegram_enabled,     NULL, telegram_post,
                               telegram_headers,     0};
