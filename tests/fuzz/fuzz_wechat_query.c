/* fuzz_wechat_query.c -- libFuzzer target: the query of a WeChat POST as the gateway checks it
 * before the body (wechat_check_post_query: signature, timestamp window, encrypt_type against
 * the key), with hostile parameters. Input: first byte = flags (bit 0: a key is configured),
 * then timestamp, nonce, signature and encrypt_type separated by '\n' (a missing field is
 * absent, as a missing query argument). A valid signature is also computed for the fuzzed
 * timestamp and nonce, so the window and mode checks after it are reached. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channels/wechat.h"

#define TOKEN "AAAAA"
#define NOW 1714036504LL
#define FIELDS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int aes_required = data[0] & 1;
    char *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    const char *f[FIELDS] = {NULL, NULL, NULL, NULL};
    char *p = buf;
    for (int i = 0; i < FIELDS && p; i++) {
        f[i] = p;
        p = strchr(p, '\n');
        if (p) *p++ = '\0';
    }
    int aes = 0;
    cg_err err;
    (void)wechat_check_post_query(TOKEN, f[0], f[1], f[2], f[3], aes_required, NOW, &aes, &err);
    char sig[41];
    if (f[0] && f[1] && wechat_msg_signature(TOKEN, f[0], f[1], "", sig, &err) == 0)
        (void)wechat_check_post_query(TOKEN, f[0], f[1], sig, f[3], aes_required, NOW, &aes, &err);
    free(buf);
    return 0;
}
