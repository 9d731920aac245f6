/* fuzz_webhook_json.c -- libFuzzer target: WhatsApp, Messenger and Telegram webhook bodies, and
 * the renderers fed with what the parsers produced (and the freshness check of their
 * timestamps). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "channels/meta.h"
#include "channels/telegram.h"

static void render_all(const msg *msgs, size_t n) {
    cg_err err;
    for (size_t i = 0; i < n; i++) {
        (void)meta_fresh(&msgs[i], 1714036504000LL, &err); /* any parsed timestamp */
        char *out = NULL;
        if (meta_render_whatsapp(&msgs[i], msgs[i].sender_id, &out, &err) == 0) free(out);
        out = NULL;
        if (meta_render_messenger(&msgs[i], msgs[i].meta.platform_chat_id, &out, &err) == 0)
            free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    cg_err err;
    msg *msgs = NULL;
    size_t n = 0;
    meta_stats st;
    if (meta_parse_whatsapp(body, size, &msgs, &n, &st, &err) == 0) {
        render_all(msgs, n);
        meta_msgs_free(msgs, n);
    }
    if (meta_parse_messenger(body, size, &msgs, &n, &st, &err) == 0) {
        render_all(msgs, n);
        meta_msgs_free(msgs, n);
    }
    msg m;
    msg_init(&m);
    int ignored = 0;
    if (telegram_parse_update(body, size, &m, &ignored, &err) == 0 && !ignored) {
        char *out = NULL;
        if (telegram_render_send(&m, m.meta.platform_chat_id, &out, &err) == 0) free(out);
    }
    msg_free(&m);
    (void)meta_verify_signature("secret", body, size, "sha256=00", &err);
    return 0;
}
