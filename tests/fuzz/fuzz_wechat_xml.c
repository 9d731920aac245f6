/* fuzz_wechat_xml.c -- libFuzzer target: WeChat XML bodies, the safe-mode envelope and
 * decryption of hostile cipher text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channels/wechat.h"

#define KEY "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
#define APPID "wx5823bf96d3bd56c7"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    msg m;
    msg_init(&m);
    int ignored = 0;
    cg_err err;
    if (wechat_parse_xml(body, size, &m, &ignored, &err) == 0) {
        char *json = NULL;
        if (wechat_render_reply_json(&m, m.sender_id, &json, &err) == 0) free(json);
    }
    msg_free(&m);

    char *enc = NULL;
    if (wechat_parse_encrypted_envelope(body, size, &enc, &err) == 0) {
        char *plain = NULL;
        size_t plen = 0;
        if (wechat_decrypt(KEY, APPID, enc, strlen(enc), &plain, &plen, &err) == 0) free(plain);
        free(enc);
    }
    char *plain = NULL;
    size_t plen = 0;
    if (wechat_decrypt(KEY, APPID, body, size, &plain, &plen, &err) == 0) free(plain);
    return 0;
}
