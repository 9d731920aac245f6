/* fuzz_peer.c -- libFuzzer target: the client address of a request behind trusted proxies
 * (peer_client: X-Forwarded-For as sent by anyone). Input: peer address, '\n', trusted list,
 * '\n', then the X-Forwarded-For value (absent without a second '\n'). Checks the result is
 * NUL-terminated within its buffer and, when taken from the header, is not a trusted proxy. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *peer = buf, *trusted = strchr(buf, '\n'), *xff = NULL;
    if (trusted) {
        *trusted++ = '\0';
        xff = strchr(trusted, '\n');
        if (xff) *xff++ = '\0';
    } else
        trusted = "127.0.0.1, ::1";
    char out[PEER_ADDR_MAX];
    int rc = peer_client(peer, xff, trusted, out, sizeof(out));
    if (strnlen(out, sizeof(out)) == sizeof(out)) abort();
    if (rc == 1 && peer_listed(out, trusted)) abort();
    free(buf);
    return 0;
}
