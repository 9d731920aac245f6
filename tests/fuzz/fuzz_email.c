/* fuzz_email.c -- libFuzzer target: raw e-mail messages, and a reply rendered from what was
 * parsed (hostile subjects, names and ids flow into the renderer). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "channels/email.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msg m;
    msg_init(&m);
    email_info info;
    cg_err err;
    if (email_parse((const char *)data, size, &m, &info, &err) == 0) {
        const char *refs[EMAIL_REFS_MAX];
        for (size_t i = 0; i < info.n_references; i++)
            refs[i] = info.references[i];
        email_reply r = {
            .from_addr = "support@shop.example",
            .to_addr = info.from_addr,
            .to_name = info.from_name,
            .subject = info.subject,
            .in_reply_to = info.message_id,
            .references = refs,
            .n_references = info.n_references,
            .message_id_domain = "shop.example",
            .conv_token = info.conv_token,
            .date_ms = 1714010400000LL,
        };
        char *out = NULL;
        size_t len = 0;
        if (m.text && email_render_reply(&m, &r, &out, &len, NULL, &err) == 0) free(out);
    }
    msg_free(&m);
    return 0;
}
