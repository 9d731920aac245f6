/* fuzz_msg_json.c -- libFuzzer target for msg_decode_json.
 *
 * Whatever decodes must validate without crashing for every origin, re-encode both ways, decode
 * again and compare equal field by field. Only LLVMFuzzerTestOneInput is exported: `make fuzz`
 * links every module next to this file. */
#include "fuzz_msg_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_msg_check(msg_decode_json, data, size);
}
