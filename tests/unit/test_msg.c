/* test_msg.c -- proto/: codecs, validation rules, names, UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <msgpack.h>

#include "proto/msg.h"

/* ---- helpers ------------------------------------------------------------------------------- */

#define ZH_TEXT "你好，我的订单 #A-1093 还没到，能帮我查一下吗？📦"

/* A msg with every field set to a realistic non-zero value. */
static void fill_full(msg *m) {
    msg_init(m);
    m->type = MSG_TEXT;
    strcpy(m->id, "1700000000456-0");
    strcpy(m->cmid, "c-17");
    strcpy(m->conv, "conv-7f3a9c");
    m->seq = 42;
    m->channel = CH_WECHAT;
    m->dir = DIR_IN;
    m->role = ROLE_CUSTOMER;
    strcpy(m->sender_id, "cust-0091");
    strcpy(m->sender_name, "张伟");
    m->ts_client_ms = 1700000000123;
    m->ts_ms = 1700000000456;
    assert_int_equal(msg_set_text(m, ZH_TEXT, strlen(ZH_TEXT), NULL), 0);
    for (int i = 0; i < 2; i++, m->n_att++)
        assert_non_null(msg_att_slot(m));
    strcpy(m->att[0].url, "https://cdn.example.com/u/receipt.png");
    strcpy(m->att[0].mime, "image/png");
    m->att[0].size = 48213;
    strcpy(m->att[0].name, "收据.png");
    strcpy(m->att[1].url, "https://cdn.example.com/u/invoice.pdf");
    strcpy(m->att[1].mime, "application/pdf");
    m->att[1].size = 5000000000ULL; /* over 32 bits */
    strcpy(m->att[1].name, "invoice.pdf");
    strcpy(m->identity.customer_id, "C-889201");
    strcpy(m->identity.order_no, "A-1093");
    strcpy(m->identity.account, "zhang.wei@example.cn");
    strcpy(m->identity.locale, "zh-CN");
    strcpy(m->identity.tier, "gold");
    strcpy(m->meta.platform_msg_id, "23847923847923");
    strcpy(m->meta.platform_chat_id, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    strcpy(m->meta.thread_id, "<CAF=abc123@mail.example.com>");
    strcpy(m->meta.in_reply_to, "<CAF=abc000@mail.example.com>");
    strcpy(m->meta.subject, "订单问题");
    strcpy(m->agent_id, "agent-12");
    strcpy(m->agent_name, "李娜");
    strcpy(m->queue, "billing");
    m->position = 3;
    m->wait_s = 4294967295u;
    strcpy(m->code, "resolved");
    m->rating = 4;
    m->retry = 1;
    m->priority = 7;
    strcpy(m->token, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXN0LTAwOTEifQ.c2lnbmF0dXJl");
    m->last_seq = 41;
    strcpy(m->tenant, "default");
    strcpy(m->sock, "gw-1:1042");
    m->n_skills = 3;
    strcpy(m->skills[0], "billing");
    strcpy(m->skills[1], "退款");
    strcpy(m->skills[2], "vip");
    m->cap = 65535;
    m->n_items = 2;
    m->items = calloc(2, sizeof(*m->items));
    assert_non_null(m->items);
    strcpy(m->items[0].conv, "conv-aaa");
    m->items[0].position = 1;
    m->items[0].since_ms = 1699999990000;
    m->items[0].channel = CH_TELEGRAM;
    m->items[0].priority = 9;
    strcpy(m->items[0].preview, "退款什么时候到账？");
    strcpy(m->items[1].conv, "conv-bbb");
    m->items[1].position = 2;
    m->items[1].since_ms = 1699999995000;
    m->items[1].channel = CH_WEB;
    m->items[1].priority = 0;
    strcpy(m->items[1].preview, "hello?");
}

/* Field-by-field equality (v 0 and 1 are the same version). */
static void assert_msg_equal(const msg *a, const msg *b) {
    assert_int_equal(a->v ? a->v : 1, b->v ? b->v : 1);
    assert_int_equal(a->type, b->type);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->cmid, b->cmid);
    assert_string_equal(a->conv, b->conv);
    assert_true(a->seq == b->seq);
    assert_int_equal(a->channel, b->channel);
    assert_int_equal(a->dir, b->dir);
    assert_int_equal(a->role, b->role);
    assert_string_equal(a->sender_id, b->sender_id);
    assert_string_equal(a->sender_name, b->sender_name);
    assert_true(a->ts_client_ms == b->ts_client_ms);
    assert_true(a->ts_ms == b->ts_ms);
    assert_int_equal(a->text_len, b->text_len);
    if (a->text_len) assert_memory_equal(a->text, b->text, a->text_len);
    assert_int_equal(a->n_att, b->n_att);
    for (unsigned i = 0; i < a->n_att; i++) {
        assert_string_equal(a->att[i].url, b->att[i].url);
        assert_string_equal(a->att[i].mime, b->att[i].mime);
        assert_true(a->att[i].size == b->att[i].size);
        assert_string_equal(a->att[i].name, b->att[i].name);
    }
    assert_string_equal(a->identity.customer_id, b->identity.customer_id);
    assert_string_equal(a->identity.order_no, b->identity.order_no);
    assert_string_equal(a->identity.account, b->identity.account);
    assert_string_equal(a->identity.locale, b->identity.locale);
    assert_string_equal(a->identity.tier, b->identity.tier);
    assert_string_equal(a->meta.platform_msg_id, b->meta.platform_msg_id);
    assert_string_equal(a->meta.platform_chat_id, b->meta.platform_chat_id);
    assert_string_equal(a->meta.thread_id, b->meta.thread_id);
    assert_string_equal(a->meta.in_reply_to, b->meta.in_reply_to);
    assert_string_equal(a->meta.subject, b->meta.subject);
    assert_string_equal(a->agent_id, b->agent_id);
    assert_string_equal(a->agent_name, b->agent_name);
    assert_string_equal(a->queue, b->queue);
    assert_int_equal(a->position, b->position);
    assert_int_equal(a->wait_s, b->wait_s);
    assert_string_equal(a->code, b->code);
    assert_int_equal(a->rating, b->rating);
    assert_int_equal(a->retry, b->retry);
    assert_int_equal(a->priority, b->priority);
    assert_string_equal(a->token, b->token);
    assert_true(a->last_seq == b->last_seq);
    assert_string_equal(a->tenant, b->tenant);
    assert_string_equal(a->sock, b->sock);
    assert_int_equal(a->n_skills, b->n_skills);
    for (unsigned i = 0; i < a->n_skills; i++)
        assert_string_equal(a->skills[i], b->skills[i]);
    assert_int_equal(a->cap, b->cap);
    assert_int_equal(a->n_items, b->n_items);
    for (uint32_t i = 0; i < a->n_items; i++) {
        assert_string_equal(a->items[i].conv, b->items[i].conv);
        assert_int_equal(a->items[i].position, b->items[i].position);
        assert_true(a->items[i].since_ms == b->items[i].since_ms);
        assert_int_equal(a->items[i].channel, b->items[i].channel);
        assert_int_equal(a->items[i].priority, b->items[i].priority);
        assert_string_equal(a->items[i].preview, b->items[i].preview);
    }
}

/* Decode a NUL-terminated JSON literal; returns the rc, err filled. */
static int dj(msg *m, const char *json, cg_err *err) {
    return msg_decode_json(m, json, strlen(json), err);
}

/* Expect JSON decode to fail with code, and the message to mention `needle` (or NULL). */
static void expect_json_err(const char *json, const char *code, const char *needle) {
    msg m;
    cg_err err = {{0}, {0}};
    msg_init(&m);
    assert_int_equal(dj(&m, json, &err), -1);
    assert_string_equal(err.code, code);
    if (needle && !strstr(err.msg, needle)) fail_msg("'%s' does not mention '%s'", err.msg, needle);
    assert_int_equal(m.type, MSG_UNKNOWN); /* left msg_init()ed */
    assert_null(m.text);
    msg_free(&m);
}

/* A literal msgpack frame: its size without the terminating NUL of the literal. */
#define EXPECT_MP(lit, code, needle) expect_mp_err((lit), sizeof(lit) - 1, (code), (needle))

static void expect_mp_err(const char *buf, size_t len, const char *code, const char *needle) {
    msg m;
    cg_err err = {{0}, {0}};
    msg_init(&m);
    assert_int_equal(msg_decode_msgpack(&m, buf, len, &err), -1);
    assert_string_equal(err.code, code);
    if (needle && !strstr(err.msg, needle)) fail_msg("'%s' does not mention '%s'", err.msg, needle);
    assert_int_equal(m.type, MSG_UNKNOWN);
    assert_null(m.text);
    msg_free(&m);
}

/* msgpack {"type":"text", key: <str of n bytes>}; *len set; caller frees. */
static char *mp_text_with(const char *key, const char *val, size_t n, int as_bin, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, "text", 4);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    if (as_bin)
        msgpack_pack_bin_with_body(&pk, val, n);
    else
        msgpack_pack_str_with_body(&pk, val, n);
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}

static void expect_validate(const msg *m, msg_origin o, const char *code, const char *text) {
    cg_err err = {{0}, {0}};
    if (!code) {
        if (msg_validate(m, o, &err)) fail_msg("unexpected %s: %s", err.code, err.msg);
        return;
    }
    assert_int_equal(msg_validate(m, o, &err), -1);
    assert_string_equal(err.code, code);
    if (text && !strstr(err.msg, text)) fail_msg("'%s' does not mention '%s'", err.msg, text);
}

/* ---- round trips --------------------------------------------------------------------------- */

static void test_roundtrip_json(void **state) {
    (void)state;
    msg a, b;
    cg_err err;
    size_t len = 0;
    fill_full(&a);
    msg_init(&b);
    unsigned char *buf = msg_encode_json(&a, 0, &len);
    assert_non_null(buf);
    /* non-ASCII kept as UTF-8, not \u escapes; retry is a JSON bool; renamed fields */
    assert_non_null(
        memmem(buf, len, "\"sender_name\":\"张伟\"", strlen("\"sender_name\":\"张伟\"")));
    assert_non_null(memmem(buf, len, "\"retry\":true", 12));
    static const char sk[] = "\"skills\":[\"billing\",\"退款\",\"vip\"]";
    assert_non_null(memmem(buf, len, sk, strlen(sk)));
    assert_non_null(memmem(buf, len, "\"wait\":4294967295", 17));
    assert_non_null(memmem(buf, len, "\"since\":1699999990000", 21));
    assert_null(memmem(buf, len, "\\u", 2));
    assert_null(memmem(buf, len, "\n", 1));
    assert_int_equal(msg_decode_json(&b, (char *)buf, len, &err), 0);
    assert_msg_equal(&a, &b);
    assert_int_equal(msg_validate(&b, ORIGIN_INTERNAL, &err), 0);
    free(buf);
    msg_free(&a);
    msg_free(&b);
}

static void test_roundtrip_msgpack(void **state) {
    (void)state;
    msg a, b;
    cg_err err;
    size_t len = 0;
    fill_full(&a);
    msg_init(&b);
    unsigned char *buf = msg_encode_msgpack(&a, 0, &len);
    assert_non_null(buf);
    assert_true(buf[0] == 0xde || (buf[0] & 0xf0) == 0x80); /* a map */
    assert_int_equal(msg_decode_msgpack(&b, (char *)buf, len, &err), 0);
    assert_msg_equal(&a, &b);
    /* decoding into an already used msg replaces everything */
    assert_int_equal(msg_decode_msgpack(&b, (char *)buf, len, &err), 0);
    assert_msg_equal(&a, &b);
    free(buf);
    msg_free(&a);
    msg_free(&b);
}

static void test_cross_codecs(void **state) {
    (void)state;
    msg a, b, c;
    cg_err err;
    size_t jl, pl;
    fill_full(&a);
    msg_init(&b);
    msg_init(&c);
    unsigned char *j = msg_encode_json(&a, 0, &jl);
    assert_non_null(j);
    assert_int_equal(msg_decode_json(&b, (char *)j, jl, &err), 0);
    unsigned char *p = msg_encode_msgpack(&b, 0, &pl);
    assert_non_null(p);
    assert_int_equal(msg_decode_msgpack(&c, (char *)p, pl, &err), 0);
    assert_msg_equal(&a, &c);
    free(j);
    /* and back: msgpack -> JSON gives the same JSON text as the original */
    size_t jl2;
    unsigned char *j2 = msg_encode_json(&c, 0, &jl2);
    assert_non_null(j2);
    j = msg_encode_json(&a, 0, &jl);
    assert_int_equal(jl, jl2);
    assert_memory_equal(j, j2, jl);
    free(j);
    free(j2);
    free(p);
    msg_free(&a);
    msg_free(&b);
    msg_free(&c);
}

/* A handwritten python-msgpack style frame (keys in another order, bin text, uint8 int widths)
 * decodes like the JSON one. */
static void test_msgpack_foreign_encoding(void **state) {
    (void)state;
    static const char frame[] = "\x84"
                                "\xa4text\xc4\x06\xe4\xbd\xa0\xe5\xa5\xbd" /* bin "你好" */
                                "\xa3seq\xcf\x00\x00\x00\x00\x00\x00\x00\x07"
                                "\xa5retry\xc2"
                                "\xa4type\xa4text";
    msg m;
    cg_err err;
    msg_init(&m);
    assert_int_equal(msg_decode_msgpack(&m, frame, sizeof(frame) - 1, &err), 0);
    assert_int_equal(m.type, MSG_TEXT);
    assert_int_equal(m.text_len, 6);
    assert_string_equal(m.text, "你好");
    assert_true(m.seq == 7);
    assert_int_equal(m.retry, 0);
    msg_free(&m);
}

static void test_headroom(void **state) {
    (void)state;
    msg a, b;
    cg_err err;
    size_t len = 0;
    fill_full(&a);
    msg_init(&b);
    enum { HR = 16 };
    unsigned char *j = msg_encode_json(&a, HR, &len);
    assert_non_null(j);
    memset(j, 0xAA, HR); /* the headroom is ours to write (ASan checks the bounds) */
    assert_int_equal(j[HR], '{');
    assert_int_equal(j[HR + len - 1], '}');
    assert_int_equal(msg_decode_json(&b, (char *)j + HR, len, &err), 0);
    assert_msg_equal(&a, &b);

    size_t plen = 0;
    unsigned char *p = msg_encode_msgpack(&a, HR, &plen);
    assert_non_null(p);
    for (int i = 0; i < HR; i++)
        assert_int_equal(p[i], 0);
    memset(p, 0xAA, HR);
    assert_int_equal(msg_decode_msgpack(&b, (char *)p + HR, plen, &err), 0);
    assert_msg_equal(&a, &b);

    /* same payload with and without headroom */
    size_t plen0 = 0;
    unsigned char *p0 = msg_encode_msgpack(&a, 0, &plen0);
    assert_non_null(p0);
    assert_int_equal(plen0, plen);
    assert_memory_equal(p0, p + HR, plen);

    /* a large headroom (LWS_PRE is small, but nothing assumes it) */
    unsigned char *big = msg_encode_msgpack(&a, 1000, &plen0);
    assert_non_null(big);
    assert_int_equal(plen0, plen);
    assert_memory_equal(big + 1000, p + HR, plen);
    free(big);
    free(p0);
    free(p);
    free(j);
    msg_free(&a);
    msg_free(&b);
}

static void test_encode_omits_zero(void **state) {
    (void)state;
    msg m;
    size_t len;
    msg_init(&m);
    m.type = MSG_TYPING;
    unsigned char *j = msg_encode_json(&m, 0, &len);
    assert_non_null(j);
    assert_int_equal(len, strlen("{\"v\":1,\"type\":\"typing\"}"));
    assert_memory_equal(j, "{\"v\":1,\"type\":\"typing\"}", len);
    free(j);

    static const unsigned char want[] = {0x82, 0xa1, 'v', 0x01, 0xa4, 't', 'y', 'p',
                                         'e',  0xa6, 't', 'y',  'p',  'i', 'n', 'g'};
    unsigned char *p = msg_encode_msgpack(&m, 0, &len);
    assert_non_null(p);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(p, want, len);
    free(p);

    /* v is always present, even for an empty msg with v = 0 */
    m.type = MSG_UNKNOWN;
    m.v = 0;
    j = msg_encode_json(&m, 0, &len);
    assert_non_null(j);
    assert_int_equal(len, 7);
    assert_memory_equal(j, "{\"v\":1}", 7);
    free(j);

    /* an error frame: retry as bool, web channel (zero) omitted, empty identity omitted */
    msg_init(&m);
    m.type = MSG_ERROR;
    strcpy(m.code, "rate_limited");
    strcpy(m.cmid, "c-9");
    m.retry = 1;
    assert_int_equal(msg_set_text(&m, "too many frames", 15, NULL), 0);
    j = msg_encode_json(&m, 0, &len);
    assert_non_null(j);
    const char *e = "{\"v\":1,\"type\":\"error\",\"cmid\":\"c-9\",\"text\":\"too many "
                    "frames\",\"code\":\"rate_limited\",\"retry\":true}";
    assert_int_equal(len, strlen(e));
    assert_memory_equal(j, e, len);
    free(j);
    msg_free(&m);
}

/* ---- decode errors ------------------------------------------------------------------------- */

static void test_json_errors(void **state) {
    (void)state;
    expect_json_err("{\"type\":\"text\",", "bad_json", NULL);
    expect_json_err("", "bad_json", NULL);
    expect_json_err("{\"type\":\"text\"} x", "bad_json", NULL);
    expect_json_err("[{\"type\":\"text\"}]", "bad_json", "object");
    expect_json_err("\"text\"", "bad_json", NULL);
    expect_json_err("{\"type\":\"text\",\"type\":\"typing\"}", "bad_json", "duplicate");
    expect_json_err("{\"type\":\"text\",\"text\":\"a\\u0000b\"}", "bad_json", NULL);
    expect_json_err("{\"type\":\"text\",\"text\":5}", "bad_value", "'text'");
    expect_json_err("{\"type\":\"text\",\"text\":null}", "bad_value", "'text'");
    expect_json_err("{\"type\":7}", "bad_value", "'type'");
    expect_json_err("{\"type\":\"read\",\"last_seq\":\"5\"}", "bad_value", "'last_seq'");
    expect_json_err("{\"type\":\"read\",\"last_seq\":5.0}", "bad_value", "'last_seq'");
    expect_json_err("{\"type\":\"read\",\"last_seq\":-1}", "bad_value", "'last_seq'");
    expect_json_err("{\"type\":\"error\",\"retry\":1}", "bad_value", "'retry'");
    expect_json_err("{\"type\":\"hello\",\"identity\":\"C-1\"}", "bad_value", "'identity'");
    expect_json_err("{\"type\":\"hello\",\"identity\":{\"locale\":5}}", "bad_value",
                    "identity.locale");
    expect_json_err("{\"type\":\"text\",\"attachments\":{}}", "bad_value", "'attachments'");
    expect_json_err("{\"type\":\"text\",\"attachments\":[\"x\"]}", "bad_value", "attachments[0]");
    expect_json_err("{\"type\":\"text\",\"attachments\":[{\"url\":\"u\",\"size\":-5}]}",
                    "bad_value", "attachments[0].size");
    expect_json_err("{\"type\":\"queue\",\"items\":[{\"position\":4294967296}]}", "bad_value",
                    "items[0].position");
    expect_json_err("{\"type\":\"queue\",\"items\":[{\"priority\":10}]}", "bad_value",
                    "items[0].priority");
    expect_json_err("{\"type\":\"text\",\"wait\":4294967296}", "bad_value", "'wait'");
    expect_json_err("{\"type\":\"text\",\"v\":256}", "bad_value", "'v'");
    expect_json_err("{\"type\":\"text\",\"ts\":-1700000000000}", "bad_value", "'ts'");
    expect_json_err("{\"type\":\"shout\"}", "bad_type", "shout");
    expect_json_err("{\"type\":\"\"}", "bad_type", "type");
    expect_json_err("{\"type\":\"unknown\"}", "bad_type", "unknown");
    expect_json_err("{\"type\":\"text\",\"channel\":\"fax\"}", "bad_value", "channel");
    expect_json_err("{\"type\":\"text\",\"role\":\"admin\"}", "bad_value", "role");
    expect_json_err("{\"type\":\"text\",\"role\":\"none\"}", "bad_value", "role");
    expect_json_err("{\"type\":\"text\",\"dir\":\"sideways\"}", "bad_value", "dir");
    expect_json_err("{\"type\":\"rating\",\"rating\":6}", "bad_value", "'rating'");
    expect_json_err("{\"type\":\"presence\",\"priority\":10}", "bad_value", "'priority'");
    /* invalid UTF-8 inside a JSON string: jansson refuses it while loading */
    expect_json_err("{\"type\":\"text\",\"text\":\"\xc3\x28\"}", "bad_utf8", NULL);
    expect_json_err("{\"type\":\"text\",\"text\":\"\xed\xa0\x80\"}", "bad_utf8", NULL);
    /* over-long fields */
    char buf[200];
    snprintf(buf, sizeof(buf), "{\"type\":\"text\",\"cmid\":\"%065d\"}", 0);
    expect_json_err(buf, "too_large", "'cmid'");
    snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"identity\":{\"locale\":\"%016d\"}}", 0);
    expect_json_err(buf, "too_large", "identity.locale");
    expect_json_err("{\"type\":\"text\",\"attachments\":[{},{},{},{},{},{},{},{},{}]}", "too_large",
                    "attachments");
    expect_json_err("{\"type\":\"presence\",\"skills\":\"faq\"}", "bad_value", "'skills'");
    expect_json_err("{\"type\":\"presence\",\"skills\":[\"faq\",3]}", "bad_value", "skills[1]");
    expect_json_err("{\"type\":\"presence\",\"cap\":65536}", "bad_value", "'cap'");
    expect_json_err(
        "{\"type\":\"presence\",\"skills\":[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\","
        "\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]}",
        "too_large", "'skills'");
    snprintf(buf, sizeof(buf), "{\"type\":\"presence\",\"skills\":[\"%065d\"]}", 0);
    expect_json_err(buf, "too_large", "skills[0]");
}

static void test_json_limits(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    /* cmid: 64 bytes fit, 65 do not (tested above) */
    char buf[200];
    snprintf(buf, sizeof(buf), "{\"type\":\"text\",\"cmid\":\"%064d\"}", 0);
    assert_int_equal(dj(&m, buf, &err), 0);
    assert_int_equal(strlen(m.cmid), 64);

    /* text: MSG_TEXT_MAX bytes fit, one more does not */
    size_t cap = MSG_TEXT_MAX + 64;
    char *big = malloc(cap);
    assert_non_null(big);
    int n = snprintf(big, cap, "{\"type\":\"text\",\"text\":\"");
    memset(big + n, 'a', MSG_TEXT_MAX);
    strcpy(big + n + MSG_TEXT_MAX, "\"}");
    assert_int_equal(dj(&m, big, &err), 0);
    assert_int_equal(m.text_len, MSG_TEXT_MAX);
    memset(big + n, 'a', MSG_TEXT_MAX + 1);
    strcpy(big + n + MSG_TEXT_MAX + 1, "\"}");
    expect_json_err(big, "too_large", "'text'");
    free(big);

    /* the whole frame: over 256 KiB is refused before parsing */
    size_t huge = 256 * 1024 + 1;
    big = malloc(huge + 1);
    assert_non_null(big);
    memset(big, ' ', huge);
    memcpy(big, "{\"type\":\"typing\"}", 17);
    big[huge] = '\0';
    expect_json_err(big, "too_large", NULL);
    big[huge - 1] = '\0'; /* exactly 256 KiB, trailing whitespace: fine */
    assert_int_equal(dj(&m, big, &err), 0);
    free(big);

    /* nesting in an unknown field is capped too */
    char deep[200] = "{\"type\":\"typing\",\"x\":";
    size_t d = strlen(deep);
    for (int i = 0; i < 40; i++)
        deep[d++] = '[';
    for (int i = 0; i < 40; i++)
        deep[d++] = ']';
    deep[d++] = '}';
    deep[d] = '\0';
    expect_json_err(deep, "too_large", "nest");
    /* brackets inside strings do not count */
    assert_int_equal(
        dj(&m, "{\"type\":\"text\",\"text\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}", &err), 0);
    assert_int_equal(m.type, MSG_TEXT);
    msg_free(&m);
}

static void test_json_unknown_fields(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    const char *j =
        "{\"type\":\"typing\",\"conv\":\"c1\",\"client\":{\"ua\":\"x\",\"n\":[1,2.5,null]},"
        "\"extra\":null}";
    assert_int_equal(dj(&m, j, &err), 0);
    assert_int_equal(m.type, MSG_TYPING);
    assert_string_equal(m.conv, "c1");
    assert_int_equal(m.v, 1); /* absent v keeps the default */
    msg_free(&m);
}

static void test_msgpack_errors(void **state) {
    (void)state;
    size_t len;
    char *b;
    /* invalid UTF-8 in a str: bad continuation, overlong, surrogate, above U+10FFFF */
    static const char *bad[] = {"\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                "ok\xe2\x82"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = mp_text_with("text", bad[i], strlen(bad[i]), 0, &len);
        expect_mp_err(b, len, "bad_utf8", "'text'");
        free(b);
        b = mp_text_with("text", bad[i], strlen(bad[i]), 1, &len); /* bin too */
        expect_mp_err(b, len, "bad_utf8", "'text'");
        free(b);
        b = mp_text_with("cmid", bad[i], strlen(bad[i]), 0, &len);
        expect_mp_err(b, len, "bad_utf8", "'cmid'");
        free(b);
    }
    b = mp_text_with("text", "a\0b", 3, 0, &len);
    expect_mp_err(b, len, "bad_value", "NUL");
    free(b);
    char id[66];
    memset(id, 'x', 65);
    b = mp_text_with("cmid", id, 65, 0, &len);
    expect_mp_err(b, len, "too_large", "'cmid'");
    free(b);
    char *t = malloc(MSG_TEXT_MAX + 1);
    assert_non_null(t);
    memset(t, 'a', MSG_TEXT_MAX + 1);
    b = mp_text_with("text", t, MSG_TEXT_MAX + 1, 0, &len);
    expect_mp_err(b, len, "too_large", "'text'");
    free(b);
    free(t);

    /* {"type":"text"} with trailing bytes */
    static const char ok[] = "\x81\xa4type\xa4text";
    static const char trailing[] = "\x81\xa4type\xa4text\xc0";
    msg m;
    cg_err err;
    msg_init(&m);
    assert_int_equal(msg_decode_msgpack(&m, ok, sizeof(ok) - 1, &err), 0);
    assert_int_equal(m.type, MSG_TEXT);
    msg_free(&m);
    expect_mp_err(trailing, sizeof(trailing) - 1, "bad_msgpack", "trailing");
    expect_mp_err(ok, sizeof(ok) - 2, "bad_msgpack", "truncated");
    EXPECT_MP("", "bad_msgpack", NULL);
    EXPECT_MP("\xc1", "bad_msgpack", NULL);
    /* top level not a map */
    EXPECT_MP("\x91\xa4text", "bad_msgpack", "map");
    EXPECT_MP("\xa4text", "bad_msgpack", "map");
    /* a 5-byte array claiming 4 billion entries must not allocate anything big */
    EXPECT_MP("\xdd\xff\xff\xff\xff", "bad_msgpack", "count");
    EXPECT_MP("\x81\xa1x\xdf\x7f\xff\xff\xff", "bad_msgpack", "count");
    /* non-string key, duplicate key */
    EXPECT_MP("\x82\xa4type\xa4text\x01\x02", "bad_msgpack", "key");
    EXPECT_MP("\x82\xa4type\xa4text\xa4type\xa6typing", "bad_msgpack", "duplicate");
    /* wrong types */
    EXPECT_MP("\x81\xa4type\x01", "bad_value", "'type'");
    EXPECT_MP("\x82\xa4type\xa6typing\xa3seq\xa1\x31", "bad_value", "'seq'");
    EXPECT_MP("\x82\xa4type\xa6typing\xa3seq\xcb\x3f\xf0\0\0\0\0\0\0", "bad_value", "'seq'");
    EXPECT_MP("\x82\xa4type\xa6typing\xa3seq\xff", "bad_value", "'seq'");
    EXPECT_MP("\x82\xa4type\xa6typing\xa3seq\xcf\x80\0\0\0\0\0\0\0", "bad_value", "'seq'");
    EXPECT_MP("\x82\xa4type\xa5\x65rror\xa5retry\x01", "bad_value", "'retry'");
    EXPECT_MP("\x82\xa4type\xa6rating\xa6rating\x06", "bad_value", "'rating'");
    EXPECT_MP("\x81\xa4type\xa5shout", "bad_type", "shout");
    EXPECT_MP("\x82\xa4type\xa4text\xa7\x63hannel\xa3\x66\x61x", "bad_value", "channel");
    EXPECT_MP("\x82\xa4type\xa4text\xa8identity\x90", "bad_value", "'identity'");
    EXPECT_MP("\x82\xa4type\xa8presence\xa6skills\x92\xa3\x66\x61q\xc3", "bad_value", "skills[1]");
    EXPECT_MP("\x82\xa4type\xa8presence\xa6skills\x91\xa2\xc0\xaf", "bad_utf8", "skills[0]");

    /* too deep (in an unknown field) */
    char deep[64] = "\x82\xa4type\xa4text\xa1x";
    size_t d = 13;
    for (int i = 0; i < 30; i++)
        deep[d++] = '\x91';
    deep[d++] = '\xc0';
    expect_mp_err(deep, d, "too_large", "nest");

    /* over 256 KiB: refused before anything else */
    char *huge = calloc(1, 256 * 1024 + 1);
    assert_non_null(huge);
    expect_mp_err(huge, 256 * 1024 + 1, "too_large", NULL);
    free(huge);
}

/* ---- validation ---------------------------------------------------------------------------- */

static void test_validate_origin(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    assert_int_equal(dj(&m, "{\"type\":\"pick\",\"conv\":\"conv-1\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_type", "'pick' may not be sent by a customer");
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    assert_int_equal(dj(&m, "{\"type\":\"presence\",\"code\":\"online\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_type", "customer");
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    assert_int_equal(dj(&m, "{\"type\":\"rating\",\"rating\":5}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    expect_validate(&m, ORIGIN_AGENT, "bad_type", "'rating' may not be sent by an agent");
    assert_int_equal(dj(&m, "{\"type\":\"welcome\",\"token\":\"t\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_type", NULL);
    expect_validate(&m, ORIGIN_AGENT, "bad_type", NULL);
    m.ts_ms = 1700000000000;
    expect_validate(&m, ORIGIN_INTERNAL, NULL, NULL);
    assert_int_equal(dj(&m, "{\"conv\":\"c\"}", &err), 0); /* no type */
    expect_validate(&m, ORIGIN_INTERNAL, "bad_type", NULL);
    msg_free(&m);
}

static void test_validate_required(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"cmid\":\"c-1\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "missing_field",
                    "field 'text' is required for type 'text'");
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"text\":\"\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "missing_field", "'text'");
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"text\":\"hi\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'conv'");
    strcpy(m.conv, "conv-1");
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);

    assert_int_equal(dj(&m, "{\"type\":\"attachment\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "missing_field", "'attachments'");
    assert_int_equal(
        dj(&m, "{\"type\":\"attachment\",\"attachments\":[{\"mime\":\"image/png\"}]}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "missing_field", "attachments[0].url");
    assert_int_equal(
        dj(&m, "{\"type\":\"attachment\",\"attachments\":[{\"url\":\"https://x/y\"}]}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "missing_field", "attachments[0].mime");
    strcpy(m.att[0].mime, "image/jpeg");
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);

    assert_int_equal(dj(&m, "{\"type\":\"presence\",\"code\":\"busy\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "bad_value", "online");
    assert_int_equal(dj(&m, "{\"type\":\"presence\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'code'");
    assert_int_equal(dj(&m, "{\"type\":\"presence\",\"code\":\"offline\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    /* connect/disconnect come from the gateway only, naming the connection */
    assert_int_equal(dj(&m, "{\"type\":\"presence\",\"code\":\"connect\",\"ts\":1}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "bad_value", "online");
    expect_validate(&m, ORIGIN_INTERNAL, "missing_field", "'sock'");
    strcpy(m.sock, "gw-1:7");
    expect_validate(&m, ORIGIN_INTERNAL, NULL, NULL);
    strcpy(m.code, "reboot");
    expect_validate(&m, ORIGIN_INTERNAL, "bad_value", "connect");
    /* an agent's hello may name the status to connect with; a customer's code is ignored */
    assert_int_equal(dj(&m, "{\"type\":\"hello\",\"token\":\"t\",\"code\":\"away\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    strcpy(m.code, "online");
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    m.code[0] = 0;
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    strcpy(m.code, "offline");
    expect_validate(&m, ORIGIN_AGENT, "bad_value", "'code' of an agent's 'hello'");
    strcpy(m.code, "busy");
    expect_validate(&m, ORIGIN_AGENT, "bad_value", "not 'busy'");
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    /* a client may not pose as the gateway */
    assert_int_equal(
        dj(&m, "{\"type\":\"presence\",\"code\":\"online\",\"skills\":[\"vip\"]}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "bad_value", "'skills'");
    assert_int_equal(dj(&m, "{\"type\":\"presence\",\"code\":\"online\",\"cap\":99}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "bad_value", "'cap'");
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"text\":\"x\",\"sock\":\"gw-1:1\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_value", "'sock'");
    /* router-reserved client ids */
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"text\":\"x\",\"cmid\":\"cg:greet\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_value", "'cmid'");
    assert_int_equal(msg_validate(&m, ORIGIN_INTERNAL, &err), -1); /* internal: no role/ts */
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"text\":\"x\",\"cmid\":\"c-cg:1\"}", &err), 0);
    assert_int_equal(msg_validate(&m, ORIGIN_CUSTOMER, &err), 0);

    assert_int_equal(dj(&m, "{\"type\":\"close\",\"conv\":\"conv-1\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'code'");
    /* a customer's close ("End chat") needs neither conv nor code: the gateway sets both */
    assert_int_equal(dj(&m, "{\"type\":\"close\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    assert_int_equal(dj(&m, "{\"type\":\"pick\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'conv'");

    /* transfer: an agent command with conv and a target (agent_id or queue) */
    const char *tr = "{\"type\":\"transfer\",\"conv\":\"c1\",\"agent_id\":\"bob\",\"text\":\"n\"}";
    assert_int_equal(dj(&m, tr, &err), 0);
    assert_int_equal(m.type, MSG_TRANSFER);
    assert_string_equal(msg_type_name(m.type), "transfer");
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_type", "'transfer' may not be sent by a customer");
    tr = "{\"type\":\"transfer\",\"conv\":\"c1\",\"queue\":\"tech\"}";
    assert_int_equal(dj(&m, tr, &err), 0);
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    assert_int_equal(dj(&m, "{\"type\":\"transfer\",\"conv\":\"c1\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'agent_id or queue'");
    assert_int_equal(dj(&m, "{\"type\":\"transfer\",\"queue\":\"tech\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'conv'");

    /* classify: an agent command with conv and code (the category) */
    assert_int_equal(dj(&m, "{\"type\":\"classify\",\"conv\":\"c1\",\"code\":\"faq\"}", &err), 0);
    assert_int_equal(m.type, MSG_CLASSIFY);
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_type", "'classify' may not be sent by a customer");
    assert_int_equal(dj(&m, "{\"type\":\"classify\",\"conv\":\"c1\"}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'code'");

    assert_int_equal(dj(&m, "{\"type\":\"rating\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "missing_field", "'rating'");
    m.rating = 6; /* built in C, not decoded */
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_value", "'rating'");
    m.rating = 1;
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);

    assert_int_equal(dj(&m, "{\"type\":\"ack\",\"conv\":\"conv-1\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "missing_field", "'last_seq'");
    assert_int_equal(dj(&m, "{\"type\":\"ack\",\"last_seq\":7}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, "missing_field", "'conv'");
    assert_int_equal(dj(&m, "{\"type\":\"ack\",\"conv\":\"c\",\"last_seq\":7}", &err), 0);
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);

    assert_int_equal(dj(&m, "{\"type\":\"hello\"}", &err), 0); /* token optional */
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    memset(m.token, 'k', sizeof(m.token)); /* no NUL inside the array */
    expect_validate(&m, ORIGIN_CUSTOMER, "too_large", "'token'");
    msg_free(&m);
}

/* hello.tenant: none, or 1-32 of a-z 0-9 _ - (both codecs; msg_check_tenant for bridges). */
static void test_tenant(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    assert_int_equal(dj(&m, "{\"type\":\"hello\",\"tenant\":\"shop_1-eu\"}", &err), 0);
    assert_string_equal(m.tenant, "shop_1-eu");
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    expect_validate(&m, ORIGIN_AGENT, NULL, NULL);
    assert_int_equal(msg_check_tenant(&m, &err), 0);
    assert_int_equal(dj(&m, "{\"type\":\"hello\"}", &err), 0); /* none */
    assert_string_equal(m.tenant, "");
    assert_int_equal(msg_check_tenant(&m, &err), 0);
    const char *bad[] = {"Acme", "a b", "shop.eu", "a:b", "{t:x}", "\u00e9t\u00e9", "x\\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char j[96];
        snprintf(j, sizeof(j), "{\"type\":\"hello\",\"tenant\":\"%s\"}", bad[i]);
        assert_int_equal(dj(&m, j, &err), 0);
        expect_validate(&m, ORIGIN_CUSTOMER, "bad_value", "field 'tenant' must be 1-32 of a-z");
        assert_int_equal(msg_check_tenant(&m, &err), -1);
        assert_string_equal(err.code, "bad_value");
    }
    /* 32 bytes fit, 33 do not, in either codec */
    char j[128];
    snprintf(j, sizeof(j), "{\"type\":\"hello\",\"tenant\":\"%032d\"}", 7);
    assert_int_equal(dj(&m, j, &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    snprintf(j, sizeof(j), "{\"type\":\"hello\",\"tenant\":\"%033d\"}", 7);
    expect_json_err(j, "too_large", "'tenant'");
    char t33[33];
    memset(t33, 'a', sizeof(t33));
    size_t n;
    char *mp = mp_text_with("tenant", t33, 33, 0, &n);
    expect_mp_err(mp, n, "too_large", "'tenant'");
    free(mp);
    mp = mp_text_with("tenant", t33, 32, 0, &n);
    assert_int_equal(msg_decode_msgpack(&m, mp, n, &err), 0);
    assert_int_equal(strlen(m.tenant), 32);
    free(mp);
    memset(m.tenant, 'a', sizeof(m.tenant)); /* set in C without its NUL */
    expect_validate(&m, ORIGIN_INTERNAL, "too_large", "'tenant'");
    msg_free(&m);
}

static void test_validate_internal_and_fields(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    assert_int_equal(dj(&m, "{\"type\":\"join\",\"agent_id\":\"a1\"}", &err), 0);
    expect_validate(&m, ORIGIN_INTERNAL, "missing_field", "'role'");
    m.role = ROLE_SYSTEM;
    expect_validate(&m, ORIGIN_INTERNAL, "missing_field", "'dir'");
    m.dir = DIR_OUT;
    expect_validate(&m, ORIGIN_INTERNAL, "missing_field", "'ts'");
    m.ts_ms = 1700000000000;
    expect_validate(&m, ORIGIN_INTERNAL, NULL, NULL);
    /* ephemeral internal frames need no role/dir, but a timestamp */
    assert_int_equal(dj(&m, "{\"type\":\"typing\",\"ts\":1700000000000}", &err), 0);
    expect_validate(&m, ORIGIN_INTERNAL, NULL, NULL);

    /* version */
    assert_int_equal(dj(&m, "{\"v\":0,\"type\":\"typing\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, NULL, NULL);
    assert_int_equal(dj(&m, "{\"v\":2,\"type\":\"typing\"}", &err), 0);
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_value", "version");

    /* strings set in C are re-checked */
    assert_int_equal(dj(&m, "{\"type\":\"typing\"}", &err), 0);
    strcpy(m.sender_name, "\xc0\xaf");
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_utf8", "'sender_name'");
    m.sender_name[0] = '\0';
    m.text = strdup("a\xed\xa0\x80");
    m.text_len = 4;
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_utf8", "'text'");
    msg_free(&m);
    m.type = MSG_TYPING;
    m.n_att = MSG_ATT_MAX + 1;
    expect_validate(&m, ORIGIN_CUSTOMER, "too_large", "'attachments'");
    m.n_att = 0;
    m.n_items = MSG_ITEMS_MAX + 1;
    m.items = calloc(m.n_items, sizeof(*m.items));
    assert_non_null(m.items);
    expect_validate(&m, ORIGIN_INTERNAL, "too_large", "'items'");
    m.n_items = 1;
    m.items[0].priority = 10;
    expect_validate(&m, ORIGIN_INTERNAL, "bad_value", "priority");
    m.items[0].priority = 0;
    m.channel = CH_COUNT;
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_value", "'channel'");
    m.channel = CH_EMAIL;
    m.n_skills = 1; /* empty skill name */
    expect_validate(&m, ORIGIN_INTERNAL, "bad_value", "skills[0]");
    m.n_skills = MSG_SKILLS_MAX + 1;
    expect_validate(&m, ORIGIN_INTERNAL, "too_large", "'skills'");
    m.n_skills = 0;
    m.seq = UINT64_MAX;
    expect_validate(&m, ORIGIN_CUSTOMER, "bad_value", "'seq'");
    msg_free(&m);
}

/* ---- small pieces -------------------------------------------------------------------------- */

static void test_utf8(void **state) {
    (void)state;
    struct {
        const char *s;
        int ok;
    } cases[] = {
        {"", 1},
        {"plain ascii", 1},
        {"你好 – ünïcödé", 1},
        {"\xf0\x9f\x93\xa6", 1}, /* U+1F4E6 */
        {"\xf4\x8f\xbf\xbf", 1}, /* U+10FFFF */
        {"\xed\x9f\xbf", 1},     /* U+D7FF, just below the surrogates */
        {"\xee\x80\x80", 1},     /* U+E000, just above */
        {"\xc3\x28", 0},         /* bad continuation */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xc1\xbf", 0},         /* overlong */
        {"\xe0\x80\xaf", 0},     /* overlong 3-byte */
        {"\xf0\x80\x80\xaf", 0}, /* overlong 4-byte */
        {"\xed\xa0\x80", 0},     /* U+D800 */
        {"\xed\xbf\xbf", 0},     /* U+DFFF */
        {"\xf4\x90\x80\x80", 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 0}, /* lead F5 */
        {"\xff", 0},             /* never in UTF-8 */
        {"\x80", 0},             /* lone continuation */
        {"\xe4\xbd", 0},         /* truncated */
        {"abc\xf0\x9f\x93", 0},  /* truncated 4-byte at the end */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (msg_utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("case %zu: expected %d", i, cases[i].ok);
    }
    assert_int_equal(msg_utf8_valid("a\0b", 3), 1); /* U+0000 is UTF-8 */
    /* length is respected: the bad byte after len is not read */
    assert_int_equal(msg_utf8_valid("ok\xff", 2), 1);
}

static void test_names(void **state) {
    (void)state;
    for (int t = MSG_TEXT; t < MSG_TYPE_COUNT; t++) {
        msg_type out = MSG_UNKNOWN;
        assert_int_equal(msg_type_parse(msg_type_name((msg_type)t), &out), 0);
        assert_int_equal(out, t);
    }
    for (int c = CH_WEB; c < CH_COUNT; c++) {
        msg_channel out = CH_COUNT;
        assert_int_equal(msg_channel_parse(msg_channel_name((msg_channel)c), &out), 0);
        assert_int_equal(out, c);
    }
    for (int r = ROLE_CUSTOMER; r < ROLE_COUNT; r++) {
        msg_role out = ROLE_NONE;
        assert_int_equal(msg_role_parse(msg_role_name((msg_role)r), &out), 0);
        assert_int_equal(out, r);
    }
    msg_dir d = DIR_NONE;
    assert_int_equal(msg_dir_parse("out", &d), 0);
    assert_int_equal(d, DIR_OUT);
    assert_string_equal(msg_type_name(MSG_ASSIGNED), "assigned");
    assert_string_equal(msg_type_name(MSG_TYPE_COUNT), "unknown");
    assert_string_equal(msg_channel_name(CH_WHATSAPP), "whatsapp");
    assert_string_equal(msg_role_name(ROLE_BRIDGE), "bridge");
    assert_string_equal(msg_dir_name(DIR_IN), "in");
    msg_type t = MSG_TEXT;
    assert_int_equal(msg_type_parse("Text", &t), -1);
    assert_int_equal(msg_type_parse("unknown", &t), -1);
    assert_int_equal(t, MSG_TEXT); /* untouched on failure */
    msg_role r;
    assert_int_equal(msg_role_parse("none", &r), -1);
    assert_int_equal(msg_dir_parse("none", &d), -1);
    msg_channel ch;
    assert_int_equal(msg_channel_parse("sms", &ch), -1);

    assert_int_equal(msg_type_is_logged(MSG_TEXT), 1);
    assert_int_equal(msg_type_is_logged(MSG_CLOSED), 1);
    assert_int_equal(msg_type_is_logged(MSG_RATING), 1);
    assert_int_equal(msg_type_is_logged(MSG_TYPING), 0);
    assert_int_equal(msg_type_is_logged(MSG_ACK), 0);
    assert_int_equal(msg_type_is_logged(MSG_CLOSE), 0);
    assert_int_equal(msg_type_is_logged(MSG_UNKNOWN), 0);
}

static void test_set_text(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    assert_int_equal(msg_set_text(&m, "first", 5, &err), 0);
    assert_int_equal(msg_set_text(&m, "你好xyz", 6, &err), 0); /* len, not strlen */
    assert_string_equal(m.text, "你好");
    assert_int_equal(m.text_len, 6);
    assert_int_equal(msg_set_text(&m, "\xc3\x28", 2, &err), -1);
    assert_string_equal(err.code, "bad_utf8");
    assert_string_equal(m.text, "你好"); /* unchanged on error */
    assert_int_equal(msg_set_text(&m, "a\0b", 3, &err), -1);
    assert_string_equal(err.code, "bad_value");
    char *big = malloc(MSG_TEXT_MAX + 1);
    assert_non_null(big);
    memset(big, 'z', MSG_TEXT_MAX + 1);
    assert_int_equal(msg_set_text(&m, big, MSG_TEXT_MAX + 1, &err), -1);
    assert_string_equal(err.code, "too_large");
    assert_int_equal(msg_set_text(&m, big, MSG_TEXT_MAX, &err), 0);
    assert_int_equal(m.text_len, MSG_TEXT_MAX);
    assert_int_equal(m.text[MSG_TEXT_MAX], '\0');
    free(big);
    assert_int_equal(msg_set_text(&m, "x", 1, NULL), 0); /* NULL err is fine */
    msg_free(&m);
    assert_null(m.text);
    assert_int_equal(m.v, MSG_VERSION);
    msg_free(&m); /* twice is safe */
}

static void test_decode_error_resets(void **state) {
    (void)state;
    msg m;
    cg_err err;
    fill_full(&m);
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"text\":\"hi\",\"seq\":\"x\"}", &err), -1);
    assert_string_equal(err.code, "bad_value");
    assert_null(m.text);
    assert_null(m.items);
    assert_int_equal(m.n_att, 0);
    assert_int_equal(m.type, MSG_UNKNOWN);
    assert_int_equal(m.conv[0], '\0');
    assert_int_equal(m.v, MSG_VERSION);
    fill_full(&m); /* the failed decode left nothing owned */
    assert_int_equal(msg_decode_msgpack(&m, "\x81\xa4type\x02", 7, &err), -1);
    assert_null(m.text);
    assert_null(m.items);
    msg_free(&m);
}

/* native: the rendered platform body a bridge gets (a JSON body, or a whole MIME mail with CRLF,
 * quotes and backslashes) survives both codecs and the other codec's decoder. */
static void test_native_roundtrip(void **state) {
    (void)state;
    static const char *const bodies[] = {
        "{\"touser\":\"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\",\"msgtype\":\"text\",\"text\":{\"content\":"
        "\"你好 \\\"quoted\\\"\"}}",
        "From: Desk <desk@example.com>\r\nTo: zhang@example.cn\r\nSubject: =?UTF-8?B?UmU6IOiuog==?="
        "\r\nIn-Reply-To: <first-1@example.cn>\r\n\r\n=E4=BD=A0=E5=A5=BD\r\n",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        msg a, b, c;
        cg_err err;
        fill_full(&a);
        assert_int_equal(msg_set_native(&a, bodies[i], strlen(bodies[i]), &err), 0);
        assert_int_equal(msg_validate(&a, ORIGIN_INTERNAL, &err), 0);
        size_t jn, pn;
        unsigned char *j = msg_encode_json(&a, 0, &jn);
        unsigned char *p = msg_encode_msgpack(&a, 0, &pn);
        assert_non_null(j);
        assert_non_null(p);
        msg_init(&b);
        msg_init(&c);
        assert_int_equal(msg_decode_json(&b, (const char *)j, jn, &err), 0);
        assert_int_equal(msg_decode_msgpack(&c, (const char *)p, pn, &err), 0);
        for (const msg *x = &b; x; x = x == &b ? &c : NULL) {
            assert_msg_equal(&a, x);
            assert_non_null(x->native);
            assert_int_equal(x->native_len, strlen(bodies[i]));
            assert_memory_equal(x->native, bodies[i], x->native_len);
        }
        free(j);
        free(p);
        msg_free(&a);
        msg_free(&b);
        msg_free(&c);
        assert_null(a.native);
    }
}

static void test_native_limits(void **state) {
    (void)state;
    msg m;
    cg_err err;
    msg_init(&m);
    /* omitted when absent */
    m.type = MSG_ACK;
    size_t n;
    unsigned char *j = msg_encode_json(&m, 0, &n);
    assert_non_null(j);
    assert_null(memmem(j, n, "native", 6));
    free(j);
    /* type, UTF-8, NUL and size are checked like text */
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"native\":7}", &err), -1);
    assert_string_equal(err.code, "bad_value");
    assert_int_equal(dj(&m, "{\"type\":\"text\",\"native\":\"a\\u0000b\"}", &err), -1);
    assert_int_equal(msg_set_native(&m, "\xc3\x28", 2, &err), -1);
    assert_string_equal(err.code, "bad_utf8");
    char *big = malloc(MSG_NATIVE_MAX + 1);
    assert_non_null(big);
    memset(big, 'z', MSG_NATIVE_MAX + 1);
    assert_int_equal(msg_set_native(&m, big, MSG_NATIVE_MAX + 1, &err), -1);
    assert_string_equal(err.code, "too_large");
    assert_int_equal(msg_set_native(&m, big, MSG_NATIVE_MAX, &err), 0);
    assert_int_equal(m.native_len, MSG_NATIVE_MAX);
    m.type = MSG_TEXT;
    m.role = ROLE_AGENT;
    m.dir = DIR_OUT;
    m.ts_ms = 1;
    assert_int_equal(msg_set_text(&m, "x", 1, &err), 0);
    assert_int_equal(msg_validate(&m, ORIGIN_INTERNAL, &err), 0);
    m.native_len = MSG_NATIVE_MAX + 1; /* a corrupted length is refused, never read past */
    assert_int_equal(msg_validate(&m, ORIGIN_INTERNAL, &err), -1);
    assert_string_equal(err.code, "too_large");
    m.native_len = MSG_NATIVE_MAX;
    /* msgpack: str or bin accepted, anything else refused */
    size_t pn;
    unsigned char *p = msg_encode_msgpack(&m, 0, &pn);
    assert_non_null(p);
    msg r;
    msg_init(&r);
    assert_int_equal(msg_decode_msgpack(&r, (const char *)p, pn, &err), 0);
    assert_int_equal(r.native_len, MSG_NATIVE_MAX);
    free(p);
    assert_int_equal(msg_decode_msgpack(&r, "\x82\xa4type\xa4text\xa6native\x07", 19, &err), -1);
    assert_string_equal(err.code, "bad_value");
    msg_free(&r);
    free(big);
    msg_free(&m);
}

/* Desk-only events: the customer's view keeps the frame (type, seq) and drops the note, the
 * category and the agent id. */
/* The encoder writes JSON itself: its text must be exactly what jansson writes for the same
 * object (compact, same key order, same escapes), for every control character, quotes,
 * backslashes, DEL, multi-byte UTF-8 and every kind of field. */
static void assert_jansson_text(const msg *m) {
    size_t n;
    unsigned char *p = msg_encode_json(m, 16, &n);
    assert_non_null(p);
    json_error_t je;
    json_t *o = json_loadb((const char *)p + 16, n, 0, &je);
    assert_non_null(o);
    char *again = json_dumps(o, JSON_COMPACT);
    assert_non_null(again);
    assert_int_equal(strlen(again), n);
    assert_memory_equal(again, p + 16, n);
    free(again);
    json_decref(o);
    free(p);
}

static void test_json_text_as_jansson_writes_it(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    m.type = MSG_TEXT;
    strcpy(m.id, "id-1");
    strcpy(m.cmid, "c\"1\\");
    strcpy(m.conv, "conv/1");
    m.seq = 18446744073709551615ULL >> 1;
    m.channel = CH_WEB;
    m.dir = DIR_IN;
    m.role = ROLE_CUSTOMER;
    strcpy(m.sender_id, "s-1");
    strcpy(m.sender_name, "王小姐 \xe2\x80\xa8 \xf0\x9f\x98\x80");
    m.ts_ms = 1800000000123;
    m.ts_client_ms = -5;
    char text[160];
    size_t k = 0;
    for (int c = 1; c < 0x20; c++)
        text[k++] = (char)c;
    const char *rest = "\"\\/\x7f end \xe4\xbd\xa0\xe5\xa5\xbd";
    memcpy(text + k, rest, strlen(rest));
    k += strlen(rest);
    assert_int_equal(msg_set_text(&m, text, k, NULL), 0);
    for (int i = 0; i < 2; i++, m.n_att++)
        assert_non_null(msg_att_slot(&m));
    strcpy(m.att[0].url, "https://x/a?b=1&c=\"2\"");
    strcpy(m.att[0].mime, "image/png");
    m.att[0].size = 1234;
    strcpy(m.att[1].name, "tab\there");
    strcpy(m.identity.customer_id, "c-1");
    strcpy(m.identity.locale, "zh-CN");
    strcpy(m.meta.subject, "Re: [#cg-1]");
    strcpy(m.agent_id, "amy");
    strcpy(m.queue, "general");
    m.position = 3;
    m.wait_s = 60;
    strcpy(m.code, "busy");
    m.rating = 5;
    m.retry = 1;
    m.priority = 9;
    strcpy(m.token, "t.o.k");
    m.last_seq = 7;
    strcpy(m.tenant, "default");
    strcpy(m.sock, "gw1:2");
    m.n_skills = 2;
    strcpy(m.skills[0], "general");
    strcpy(m.skills[1], "vip\n");
    m.cap = 4;
    msg_queue_item items[2] = {{.position = 1, .since_ms = 5, .channel = CH_EMAIL, .ring = 2}};
    strcpy(items[0].conv, "q1");
    strcpy(items[0].preview, "hello \x01");
    strcpy(items[1].conv, "q2");
    m.items = items;
    m.n_items = 2;
    assert_jansson_text(&m);
    m.items = NULL;
    m.n_items = 0;
    assert_int_equal(msg_set_native(&m, "{\"a\":\"\\u00e9\"}\r\n", 16, NULL), 0);
    assert_jansson_text(&m);
    msg_free(&m);

    msg_init(&m); /* nearly empty: v only, no empty objects */
    assert_jansson_text(&m);
    size_t n;
    unsigned char *p = msg_encode_json(&m, 0, &n);
    assert_non_null(p);
    assert_int_equal(n, strlen("{\"v\":1}"));
    assert_memory_equal(p, "{\"v\":1}", n);
    free(p);
    strcpy(m.sender_name, "bad \xff utf-8"); /* refused, as jansson refused it */
    assert_null(msg_encode_json(&m, 0, &n));
    msg_free(&m);
}

/* The stored form leaves out a customer's customer_id equal to its sender_id and puts it back;
 * another customer_id (a webhook's), an agent's message and an empty sender stay as they are. */
static void test_stored_trim_fill(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    m.role = ROLE_CUSTOMER;
    strcpy(m.sender_id, "c-42");
    strcpy(m.identity.customer_id, "c-42");
    strcpy(m.identity.locale, "zh-CN");
    msg_stored_trim(&m);
    assert_string_equal(m.identity.customer_id, "");
    assert_string_equal(m.identity.locale, "zh-CN");
    size_t n;
    unsigned char *p = msg_encode_msgpack(&m, 0, &n);
    assert_non_null(p);
    msg back;
    msg_init(&back);
    assert_int_equal(msg_decode_msgpack(&back, (const char *)p, n, NULL), 0);
    free(p);
    msg_stored_fill(&back);
    msg_stored_fill(&back);
    assert_string_equal(back.identity.customer_id, "c-42");
    assert_string_equal(back.identity.locale, "zh-CN");
    msg_free(&back);

    strcpy(m.identity.customer_id, "telegram:42");
    msg_stored_trim(&m);
    assert_string_equal(m.identity.customer_id, "telegram:42");
    m.role = ROLE_AGENT;
    strcpy(m.identity.customer_id, "c-42");
    msg_stored_trim(&m);
    assert_string_equal(m.identity.customer_id, "c-42");
    m.identity.customer_id[0] = '\0';
    msg_stored_fill(&m);
    assert_string_equal(m.identity.customer_id, "");
    msg_free(&m);
}

static void test_customer_view(void **state) {
    (void)state;
    msg m, v;
    cg_err err;
    msg_init(&m);
    const char *tr = "{\"type\":\"transferred\",\"conv\":\"c1\",\"seq\":7,\"role\":\"system\","
                     "\"dir\":\"out\",\"channel\":\"web\",\"ts\":5,\"agent_id\":\"bob\","
                     "\"agent_name\":\"Bob\",\"queue\":\"faq\",\"text\":\"VIP, angry\"}";
    assert_int_equal(dj(&m, tr, &err), 0);
    assert_true(msg_type_is_internal(m.type));
    msg_customer_view(&v, &m);
    assert_int_equal(v.type, MSG_TRANSFERRED);
    assert_int_equal(v.seq, 7);
    assert_string_equal(v.conv, "c1");
    assert_string_equal(v.agent_name, "Bob");
    assert_string_equal(v.queue, "faq");
    assert_null(v.text);
    assert_string_equal(v.agent_id, "");
    msg_free(&v);
    msg_free(&m);
    msg_init(&m);
    assert_int_equal(dj(&m,
                        "{\"type\":\"classified\",\"seq\":8,\"code\":\"complaint\","
                        "\"text\":\"from faq\"}",
                        &err),
                     0);
    msg_customer_view(&v, &m);
    assert_int_equal(v.type, MSG_CLASSIFIED);
    assert_int_equal(v.seq, 8);
    assert_string_equal(v.code, "");
    assert_null(v.text);
    msg_free(&m);
    msg_init(&m);
    assert_int_equal(dj(&m,
                        "{\"type\":\"escalated\",\"seq\":9,\"code\":\"first\","
                        "\"queue\":\"supervisors\",\"text\":\"SLA breach\"}",
                        &err),
                     0);
    assert_true(msg_type_is_internal(m.type));
    msg_customer_view(&v, &m);
    assert_int_equal(v.type, MSG_ESCALATED);
    assert_int_equal(v.seq, 9);
    assert_string_equal(v.code, "");
    assert_string_equal(v.queue, "");
    assert_null(v.text);
    msg_free(&m);
    assert_false(msg_type_is_internal(MSG_ASSIGNED));
    assert_false(msg_type_is_internal(MSG_TEXT));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_json),
        cmocka_unit_test(test_roundtrip_msgpack),
        cmocka_unit_test(test_cross_codecs),
        cmocka_unit_test(test_msgpack_foreign_encoding),
        cmocka_unit_test(test_headroom),
        cmocka_unit_test(test_encode_omits_zero),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_json_unknown_fields),
        cmocka_unit_test(test_msgpack_errors),
        cmocka_unit_test(test_validate_origin),
        cmocka_unit_test(test_validate_required),
        cmocka_unit_test(test_tenant),
        cmocka_unit_test(test_customer_view),
        cmocka_unit_test(test_stored_trim_fill),
        cmocka_unit_test(test_json_text_as_jansson_writes_it),
        cmocka_unit_test(test_validate_internal_and_fields),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_set_text),
        cmocka_unit_test(test_decode_error_resets),
        cmocka_unit_test(test_native_roundtrip),
        cmocka_unit_test(test_native_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
