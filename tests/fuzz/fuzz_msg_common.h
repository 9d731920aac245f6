/* fuzz_msg_common.h -- what both proto fuzz targets check (included by fuzz_msg_*.c only).
 *
 * fuzz_msg_check(decode, data, size): whatever decodes must validate without crashing for every
 * origin, re-encode both ways, decode again and compare equal field by field. */
#ifndef FUZZ_MSG_COMMON_H
#define FUZZ_MSG_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msg.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static void check_equal(const msg *a, const msg *b) {
    CHECK((a->v ? a->v : 1) == (b->v ? b->v : 1));
    CHECK(a->type == b->type && a->channel == b->channel && a->dir == b->dir);
    CHECK(a->role == b->role && a->seq == b->seq && a->last_seq == b->last_seq);
    CHECK(a->ts_ms == b->ts_ms && a->ts_client_ms == b->ts_client_ms);
    CHECK(a->position == b->position && a->wait_s == b->wait_s && a->rating == b->rating);
    CHECK(a->retry == b->retry && a->priority == b->priority);
    CHECK(!strcmp(a->id, b->id) && !strcmp(a->cmid, b->cmid) && !strcmp(a->conv, b->conv));
    CHECK(!strcmp(a->sender_id, b->sender_id) && !strcmp(a->sender_name, b->sender_name));
    CHECK(!strcmp(a->agent_id, b->agent_id) && !strcmp(a->agent_name, b->agent_name));
    CHECK(!strcmp(a->queue, b->queue) && !strcmp(a->code, b->code));
    CHECK(!strcmp(a->token, b->token) && !strcmp(a->sock, b->sock) && a->cap == b->cap);
    CHECK(!strcmp(a->tenant, b->tenant));
    CHECK(a->n_skills == b->n_skills);
    for (unsigned i = 0; i < a->n_skills; i++)
        CHECK(!strcmp(a->skills[i], b->skills[i]));
    CHECK(a->text_len == b->text_len);
    CHECK(a->text_len == 0 || !memcmp(a->text, b->text, a->text_len));
    CHECK(!strcmp(a->identity.customer_id, b->identity.customer_id) &&
          !strcmp(a->identity.order_no, b->identity.order_no) &&
          !strcmp(a->identity.account, b->identity.account) &&
          !strcmp(a->identity.locale, b->identity.locale) &&
          !strcmp(a->identity.tier, b->identity.tier));
    CHECK(!strcmp(a->meta.platform_msg_id, b->meta.platform_msg_id) &&
          !strcmp(a->meta.platform_chat_id, b->meta.platform_chat_id) &&
          !strcmp(a->meta.thread_id, b->meta.thread_id) &&
          !strcmp(a->meta.in_reply_to, b->meta.in_reply_to) &&
          !strcmp(a->meta.subject, b->meta.subject));
    CHECK(a->n_att == b->n_att);
    for (unsigned i = 0; i < a->n_att; i++) {
        CHECK(!strcmp(a->att[i].url, b->att[i].url) && !strcmp(a->att[i].mime, b->att[i].mime));
        CHECK(!strcmp(a->att[i].name, b->att[i].name) && a->att[i].size == b->att[i].size);
    }
    CHECK(a->n_items == b->n_items);
    for (uint32_t i = 0; i < a->n_items; i++) {
        const msg_queue_item *x = &a->items[i], *y = &b->items[i];
        CHECK(!strcmp(x->conv, y->conv) && !strcmp(x->preview, y->preview));
        CHECK(x->position == y->position && x->since_ms == y->since_ms);
        CHECK(x->channel == y->channel && x->priority == y->priority);
    }
}

/* Encode m with enc, decode with dec: must succeed and give m back. Also checks the headroom. */
static void roundtrip(const msg *m, unsigned char *(*enc)(const msg *, size_t, size_t *),
                      int (*dec)(msg *, const char *, size_t, cg_err *)) {
    enum { HR = 13 };
    size_t len = 0;
    unsigned char *buf = enc(m, HR, &len);
    CHECK(buf != NULL);
    memset(buf, 0x5a, HR);
    msg back;
    cg_err err;
    msg_init(&back);
    CHECK(dec(&back, (const char *)buf + HR, len, &err) == 0);
    check_equal(m, &back);
    msg_free(&back);
    free(buf);
}

typedef int fuzz_decode_fn(msg *m, const char *buf, size_t len, cg_err *err);

static int fuzz_msg_check(fuzz_decode_fn *decode, const uint8_t *data, size_t size) {
    msg m;
    cg_err err;
    msg_init(&m);
    if (decode(&m, (const char *)data, size, &err) != 0) {
        CHECK(m.text == NULL && m.items == NULL && m.type == MSG_UNKNOWN);
        CHECK(err.code[0] != '\0');
        return 0;
    }
    msg_validate(&m, ORIGIN_CUSTOMER, &err);
    msg_validate(&m, ORIGIN_AGENT, &err);
    msg_validate(&m, ORIGIN_INTERNAL, &err);
    roundtrip(&m, msg_encode_json, msg_decode_json);
    roundtrip(&m, msg_encode_msgpack, msg_decode_msgpack);
    msg_free(&m);
    return 0;
}

#endif
