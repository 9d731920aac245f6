/* test_channels_telegram.c -- secret header, Update parsing, sendMessage rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "channels/telegram.h"

/* What the gateway will do before cg_message: stamp ts and validate as an internal frame. */
static void assert_valid(msg *m) {
    cg_err verr = {0};
    m->ts_ms = 1714036504000LL;
    if (msg_validate(m, ORIGIN_INTERNAL, &verr) != 0)
        fail_msg("invalid msg: %s %s", verr.code, verr.msg);
}

static int parse(const char *body, msg *m, int *ign, cg_err *err) {
    return telegram_parse_update(body, strlen(body), m, ign, err);
}

static void test_secret(void **state) {
    (void)state;
    cg_err err = {0};
    assert_int_equal(telegram_verify_secret("s3cr3t-Token_1", "s3cr3t-Token_1", &err), 0);
    assert_int_equal(telegram_verify_secret("s3cr3t-Token_2", "s3cr3t-Token_1", &err), -1);
    assert_string_equal(err.code, "forbidden");
    assert_int_equal(telegram_verify_secret("s3cr3t-Token_", "s3cr3t-Token_1", &err), -1);
    assert_int_equal(telegram_verify_secret(NULL, "s3cr3t-Token_1", &err), -1);
    assert_int_equal(telegram_verify_secret("", "", &err), -1);
    assert_int_equal(telegram_verify_secret("x", NULL, &err), -1);
}

static void test_text_52bit_chat(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    /* -(2^52 - 1): exact, no double rounding */
    assert_int_equal(
        parse("{\"update_id\":872345001,\"message\":{\"message_id\":17,\"from\":{\"id\":"
              "4503599627370495,\"is_bot\":false,\"first_name\":\"\\u674e\",\"last_name\":"
              "\"\\u96f7\",\"username\":\"lilei\",\"language_code\":\"zh-hans\"},\"chat\":{\"id\":"
              "-4503599627370495,\"title\":\"Support\",\"type\":\"supergroup\"},\"date\":"
              "1714036504,\"text\":\"\\u6211\\u7684\\u8ba2\\u5355\\u5728\\u54ea\\u91cc\\uff1f\"}}",
              &m, &ign, &err),
        0);
    assert_int_equal(ign, 0);
    assert_int_equal(m.type, MSG_TEXT);
    assert_int_equal(m.channel, CH_TELEGRAM);
    assert_int_equal(m.dir, DIR_IN);
    assert_int_equal(m.role, ROLE_CUSTOMER);
    assert_string_equal(m.text, "我的订单在哪里？");
    assert_string_equal(m.meta.platform_chat_id, "-4503599627370495");
    assert_string_equal(m.sender_id, "4503599627370495");
    assert_string_equal(m.sender_name, "李 雷");
    assert_string_equal(m.meta.platform_msg_id, "tg:872345001");
    assert_true(m.ts_client_ms == 1714036504000LL);
    assert_valid(&m);
    msg_free(&m);

    /* username only; a supergroup-style id */
    assert_int_equal(parse("{\"update_id\":2,\"message\":{\"message_id\":1,\"from\":{\"id\":7,"
                           "\"is_bot\":false,\"first_name\":\"\",\"username\":\"bob\"},\"chat\":{"
                           "\"id\":-1001234567890,\"type\":\"supergroup\"},\"date\":1,\"text\":"
                           "\"hi\"}}",
                           &m, &ign, &err),
                     0);
    assert_string_equal(m.meta.platform_chat_id, "-1001234567890");
    assert_string_equal(m.sender_name, "@bob");
    msg_free(&m);
    assert_int_equal(parse("{\"update_id\":3,\"message\":{\"message_id\":1,\"from\":{\"id\":7,"
                           "\"is_bot\":false,\"username\":\"bob\"},\"chat\":{\"id\":7,\"type\":"
                           "\"private\"},\"date\":1,\"text\":\"hi\"}}",
                           &m, &ign, &err),
                     0);
    assert_string_equal(m.sender_name, "@bob");
    msg_free(&m);
}

static void test_ignored(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    assert_int_equal(parse("{\"update_id\":5,\"edited_message\":{\"message_id\":1,\"chat\":{"
                           "\"id\":1,\"type\":\"private\"},\"date\":1,\"edit_date\":2,\"text\":"
                           "\"changed\"}}",
                           &m, &ign, &err),
                     0);
    assert_int_equal(ign, 1);
    assert_null(m.text);
    assert_int_equal(parse("{\"update_id\":6,\"callback_query\":{\"id\":\"1\"}}", &m, &ign, &err),
                     0);
    assert_int_equal(ign, 1);
    /* a service message (member joined) has no content we relay */
    assert_int_equal(parse("{\"update_id\":7,\"message\":{\"message_id\":1,\"chat\":{\"id\":1},"
                           "\"date\":1,\"new_chat_members\":[]}}",
                           &m, &ign, &err),
                     0);
    assert_int_equal(ign, 1);
}

static void test_photo_document(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    assert_int_equal(
        parse("{\"update_id\":10,\"message\":{\"message_id\":3,\"from\":{\"id\":42,\"is_bot\":"
              "false,\"first_name\":\"Ann\"},\"chat\":{\"id\":42,\"type\":\"private\"},\"date\":"
              "1700000000,\"photo\":[{\"file_id\":\"AgACAgQ-small\",\"file_unique_id\":\"a\","
              "\"file_size\":1000,\"width\":90,\"height\":60},{\"file_id\":\"AgACAgQ-large\","
              "\"file_unique_id\":\"b\",\"file_size\":52000,\"width\":1280,\"height\":853}],"
              "\"caption\":\"broken on arrival\"}}",
              &m, &ign, &err),
        0);
    assert_int_equal(m.type, MSG_TEXT);
    assert_string_equal(m.text, "broken on arrival");
    assert_int_equal(m.n_att, 1);
    assert_string_equal(m.att[0].url, "tg-file:AgACAgQ-large");
    assert_string_equal(m.att[0].mime, "image/jpeg");
    assert_true(m.att[0].size == 52000);
    assert_valid(&m);
    assert_string_equal(m.sender_name, "Ann");
    msg_free(&m);

    assert_int_equal(
        parse("{\"update_id\":11,\"message\":{\"message_id\":4,\"from\":{\"id\":42,\"is_bot\":"
              "false,\"first_name\":\"Ann\"},\"chat\":{\"id\":42,\"type\":\"private\"},\"date\":"
              "1700000001,\"document\":{\"file_id\":\"BQACAgQ\",\"file_unique_id\":\"c\","
              "\"file_name\":\"invoice.pdf\",\"mime_type\":\"application/pdf\",\"file_size\":"
              "12345}}}",
              &m, &ign, &err),
        0);
    assert_int_equal(m.type, MSG_ATTACHMENT);
    assert_null(m.text);
    assert_string_equal(m.att[0].url, "tg-file:BQACAgQ");
    assert_string_equal(m.att[0].name, "invoice.pdf");
    assert_string_equal(m.att[0].mime, "application/pdf");
    assert_valid(&m);
    msg_free(&m);

    assert_int_equal(parse("{\"update_id\":12,\"message\":{\"message_id\":5,\"chat\":{\"id\":42},"
                           "\"date\":1,\"location\":{\"latitude\":31.2304,\"longitude\":121.4737}"
                           "}}",
                           &m, &ign, &err),
                     0);
    assert_string_equal(m.text, "[location] (31.230400,121.473700)");
    assert_string_equal(m.sender_id, "42"); /* no from: the chat */
    msg_free(&m);
}

static void test_malformed(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    const char *bad_json[] = {"", "{", "[]", "{\"update_id\":1,}", "nul", "{\"a\":\"\\ud800\"}"};
    for (size_t i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(parse(bad_json[i], &m, &ign, &err), -1);
        assert_string_equal(err.code, "bad_json");
    }
    assert_int_equal(parse("{\"message\":{\"chat\":{\"id\":1},\"text\":\"x\"}}", &m, &ign, &err),
                     -1);
    assert_string_equal(err.code, "missing_field");
    /* chat.id as a string or a float is refused (never rounded) */
    assert_int_equal(parse("{\"update_id\":1,\"message\":{\"chat\":{\"id\":\"1\"},\"text\":\"x\"}}",
                           &m, &ign, &err),
                     -1);
    assert_int_equal(parse("{\"update_id\":1,\"message\":{\"chat\":{\"id\":1.5},\"text\":\"x\"}}",
                           &m, &ign, &err),
                     -1);
    assert_int_equal(parse("{\"update_id\":1,\"message\":{\"chat\":{\"id\":1},\"from\":{\"id\":"
                           "\"x\"},\"text\":\"x\"}}",
                           &m, &ign, &err),
                     -1);
    assert_int_equal(
        parse("{\"update_id\":1,\"message\":{\"chat\":{\"id\":1},\"photo\":[{}]}}", &m, &ign, &err),
        -1);
    assert_null(m.text);
    assert_int_equal(m.n_att, 0);
}

static void test_render(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    char *out = NULL;
    assert_int_equal(msg_set_text(&m, "已收到\n", strlen("已收到\n"), &err), 0);
    assert_int_equal(telegram_render_send(&m, "-4503599627370495", &out, &err), 0);
    assert_string_equal(out, "{\"chat_id\":-4503599627370495,\"text\":\"已收到\\n\"}");
    free(out);
    out = NULL;
    assert_int_equal(telegram_render_send(&m, "12a", &out, &err), -1);
    assert_string_equal(err.code, "bad_value");
    assert_int_equal(telegram_render_send(&m, "", &out, &err), -1);
    assert_null(out);
    msg_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret),    cmocka_unit_test(test_text_52bit_chat),
        cmocka_unit_test(test_ignored),   cmocka_unit_test(test_photo_document),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
