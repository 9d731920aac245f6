/* test_channels_meta.c -- X-Hub-Signature-256, verify challenge, WhatsApp and Messenger bodies,
 * send-API renderers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "channels/meta.h"

static const char vec_body[] = "{\"text\":\"\\u4f60\\u597d\"}";
static const char vec_sig[] =
    "sha256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035a";

/* What the gateway will do before cg_message: stamp ts and validate as an internal frame. */
static void assert_valid(msg *m) {
    cg_err verr = {0};
    m->ts_ms = 1714036504000LL;
    if (msg_validate(m, ORIGIN_INTERNAL, &verr) != 0)
        fail_msg("invalid msg: %s %s", verr.code, verr.msg);
}

static void test_signature(void **state) {
    (void)state;
    cg_err err = {0};
    size_t n = strlen(vec_body);
    assert_int_equal(meta_verify_signature("test_app_secret", vec_body, n, vec_sig, &err), 0);
    /* upper-case hex is the same digest */
    assert_int_equal(meta_verify_signature(
                         "test_app_secret", vec_body, n,
                         "sha256=9EABC21075CD3CE675E35E4968B15A6462026A6130356ACA49AF2AEB1CD7035A",
                         &err),
                     0);
    /* the same text re-serialized as raw UTF-8 is a different body */
    const char *reser = "{\"text\":\"你好\"}";
    assert_int_equal(meta_verify_signature("test_app_secret", reser, strlen(reser), vec_sig, &err),
                     -1);
    assert_string_equal(err.code, "bad_signature");
    assert_int_equal(meta_verify_signature("other_secret", vec_body, n, vec_sig, &err), -1);
    assert_int_equal(meta_verify_signature("test_app_secret", vec_body, n - 1, vec_sig, &err), -1);
    assert_int_equal(meta_verify_signature(
                         "test_app_secret", vec_body, n,
                         "sha256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035b",
                         &err),
                     -1);
    /* malformed headers */
    const char *bad[] = {
        "",
        "sha256=",
        "sha1=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035a",
        "9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035a",
        "sha256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035",
        "sha256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035a0",
        "sha256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035z",
        "SHA256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035a",
        " sha256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035a",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(meta_verify_signature("test_app_secret", vec_body, n, bad[i], &err), -1);
        assert_string_equal(err.code, "bad_signature");
    }
    assert_int_equal(meta_verify_signature("test_app_secret", vec_body, n, NULL, &err), -1);
    assert_int_equal(meta_verify_signature("", vec_body, n, vec_sig, &err), -1);
    assert_int_equal(meta_verify_signature(NULL, vec_body, n, vec_sig, &err), -1);
}

static void test_challenge(void **state) {
    (void)state;
    cg_err err = {0};
    assert_int_equal(meta_verify_challenge("subscribe", "tok", "tok", &err), 0);
    assert_int_equal(meta_verify_challenge("subscribe", "tok2", "tok", &err), -1);
    assert_string_equal(err.code, "forbidden");
    assert_int_equal(meta_verify_challenge("unsubscribe", "tok", "tok", &err), -1);
    assert_int_equal(meta_verify_challenge(NULL, "tok", "tok", &err), -1);
    assert_int_equal(meta_verify_challenge("subscribe", NULL, "tok", &err), -1);
    assert_int_equal(meta_verify_challenge("subscribe", "", "", &err), -1);
}

static const char wa_text[] =
    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\","
    "\"changes\":[{\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{"
    "\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"106540352242922\"},"
    "\"contacts\":[{\"profile\":{\"name\":\"Sheena Nelson\"},\"wa_id\":\"16505551234\"}],"
    "\"messages\":[{\"from\":\"16505551234\",\"id\":\"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5"
    "OUFFRTAzODEwMTQ0RgA=\",\"timestamp\":\"1749416383\",\"type\":\"text\",\"text\":{\"body\":"
    "\"Does it come in another color? \\u8fd8\\u6709\\u522b\\u7684\\u989c\\u8272\\u5417\"}},"
    "{\"from\":\"16505551234\",\"id\":\"wamid.IMG1\",\"timestamp\":\"1749416390\",\"type\":"
    "\"image\",\"image\":{\"caption\":\"this one\",\"mime_type\":\"image/jpeg\",\"sha256\":\"x\","
    "\"id\":\"1003383421387256\"},\"context\":{\"from\":\"15550783881\",\"id\":\"wamid.PREV\"}},"
    "{\"from\":\"16505551234\",\"id\":\"wamid.LOC1\",\"timestamp\":\"1749416391\",\"type\":"
    "\"location\",\"location\":{\"latitude\":37.483307,\"longitude\":-122.148981,\"name\":"
    "\"Pablo Morales\",\"address\":\"1 Hacker Way\"}},"
    "{\"id\":\"wamid.NOFROM\",\"type\":\"text\",\"text\":{\"body\":\"x\"}}]},"
    "\"field\":\"messages\"}]}]}";

static void test_whatsapp_messages(void **state) {
    (void)state;
    cg_err err = {0};
    msg *msgs = NULL;
    size_t n = 0;
    meta_stats st;
    assert_int_equal(meta_parse_whatsapp(wa_text, strlen(wa_text), &msgs, &n, &st, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(st.invalid, 1);
    assert_int_equal(st.statuses, 0);

    msg *m = &msgs[0];
    assert_int_equal(m->type, MSG_TEXT);
    assert_int_equal(m->channel, CH_WHATSAPP);
    assert_int_equal(m->dir, DIR_IN);
    assert_int_equal(m->role, ROLE_CUSTOMER);
    assert_string_equal(m->text, "Does it come in another color? 还有别的颜色吗");
    assert_string_equal(m->sender_id, "16505551234");
    assert_string_equal(m->sender_name, "Sheena Nelson");
    assert_string_equal(m->meta.platform_chat_id, "16505551234");
    assert_string_equal(m->meta.platform_msg_id,
                        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
    assert_true(m->ts_client_ms == 1749416383000LL);

    m = &msgs[1];
    assert_int_equal(m->type, MSG_ATTACHMENT);
    assert_int_equal(m->n_att, 1);
    assert_string_equal(m->att[0].url, "wa-media:1003383421387256");
    assert_string_equal(m->att[0].mime, "image/jpeg");
    assert_string_equal(m->text, "this one");
    assert_string_equal(m->meta.in_reply_to, "wamid.PREV");

    m = &msgs[2];
    assert_string_equal(m->text, "[location] Pablo Morales 1 Hacker Way (37.483307,-122.148981)");
    for (size_t i = 0; i < n; i++)
        assert_valid(&msgs[i]);
    meta_msgs_free(msgs, n);
}

static void test_whatsapp_statuses_only(void **state) {
    (void)state;
    const char *body =
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{"
        "\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{\"phone_number_id\":\"2\"},"
        "\"statuses\":[{\"id\":\"wamid.A\",\"status\":\"delivered\",\"timestamp\":\"1\","
        "\"recipient_id\":\"3\"},{\"id\":\"wamid.A\",\"status\":\"read\",\"timestamp\":\"2\","
        "\"recipient_id\":\"3\"}]},\"field\":\"messages\"}]}]}";
    cg_err err = {0};
    msg *msgs = (msg *)1;
    size_t n = 99;
    meta_stats st;
    assert_int_equal(meta_parse_whatsapp(body, strlen(body), &msgs, &n, &st, &err), 0);
    assert_int_equal(n, 0);
    assert_null(msgs);
    assert_int_equal(st.statuses, 2);
}

static void test_whatsapp_bounds_and_errors(void **state) {
    (void)state;
    cg_err err = {0};
    msg *msgs = NULL;
    size_t n = 0;
    const char *bad[] = {
        "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"from\":\"1\"",
        "[1,2]",
        "{\"entry\":{}}",
        "{\"entry\":[{\"changes\":5}]}",
        "{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"messages\":{}}}]}]}",
        "{\"a\":1,\"a\":2,\"entry\":[]}",
        "{\"entry\":[],\"x\":\"\\u0000\"}",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(meta_parse_whatsapp(bad[i], strlen(bad[i]), &msgs, &n, NULL, &err), -1);
        assert_string_equal(err.code, "bad_json");
        assert_null(msgs);
    }
    /* invalid UTF-8 */
    const char *inv = "{\"entry\":[],\"x\":\"\xc3\x28\"}";
    assert_int_equal(meta_parse_whatsapp(inv, strlen(inv), &msgs, &n, NULL, &err), -1);

    /* more than META_MSGS_MAX messages */
    size_t cap = 64 + (META_MSGS_MAX + 1) * 80;
    char *big = malloc(cap);
    size_t o = (size_t)snprintf(big, cap, "{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[");
    for (int i = 0; i <= META_MSGS_MAX; i++)
        o += (size_t)snprintf(big + o, cap - o,
                              "%s{\"from\":\"1\",\"id\":\"w%d\",\"type\":\"text\",\"text\":{"
                              "\"body\":\"x\"}}",
                              i ? "," : "", i);
    o += (size_t)snprintf(big + o, cap - o, "]}}]}]}");
    assert_int_equal(meta_parse_whatsapp(big, o, &msgs, &n, NULL, &err), -1);
    assert_string_equal(err.code, "too_large");
    assert_null(msgs);
    free(big);
}

static const char fb_body[] =
    "{\"object\":\"page\",\"entry\":[{\"id\":\"PAGE1\",\"time\":1458692752478,\"messaging\":["
    "{\"sender\":{\"id\":\"6253421724671451\"},\"recipient\":{\"id\":\"PAGE1\"},"
    "\"timestamp\":1458692752478,\"message\":{\"mid\":\"m_AbCd-1\",\"text\":\"hello, "
    "\\u4f60\\u597d\",\"attachments\":[{\"type\":\"image\",\"payload\":{\"url\":"
    "\"https://scontent.xx.fbcdn.net/v/t1/abc.jpg\"}}]}},"
    "{\"sender\":{\"id\":\"PAGE1\"},\"recipient\":{\"id\":\"6253421724671451\"},"
    "\"timestamp\":1458692752479,\"message\":{\"is_echo\":true,\"app_id\":1,\"mid\":\"m_echo\","
    "\"text\":\"our own reply\"}},"
    "{\"sender\":{\"id\":\"6253421724671451\"},\"recipient\":{\"id\":\"PAGE1\"},"
    "\"delivery\":{\"mids\":[\"m_x\"],\"watermark\":1458668856253}},"
    "{\"sender\":{\"id\":\"6253421724671451\"},\"recipient\":{\"id\":\"PAGE1\"},"
    "\"timestamp\":1458692752480,\"read\":{\"watermark\":1458668856253}},"
    "{\"sender\":{\"id\":\"6253421724671451\"},\"recipient\":{\"id\":\"PAGE1\"},"
    "\"timestamp\":1458692752481,\"message\":{\"mid\":\"m_att\",\"attachments\":[{\"type\":"
    "\"file\",\"payload\":{\"url\":\"https://cdn.example/f.pdf\"}},{\"type\":\"image\","
    "\"payload\":{\"url\":\"javascript:alert(1)\"}}],\"reply_to\":{\"mid\":\"m_AbCd-1\"}}},"
    "{\"sender\":{\"id\":\"6253421724671451\"},\"recipient\":{\"id\":\"PAGE1\"},"
    "\"timestamp\":1458692752482,\"postback\":{\"title\":\"Talk to an agent\",\"payload\":"
    "\"AGENT\",\"mid\":\"m_pb\"}}"
    "]}]}";

static void test_messenger(void **state) {
    (void)state;
    cg_err err = {0};
    msg *msgs = NULL;
    size_t n = 0;
    meta_stats st;
    assert_int_equal(meta_parse_messenger(fb_body, strlen(fb_body), &msgs, &n, &st, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(st.ignored, 3); /* echo, delivery, read */
    assert_int_equal(st.invalid, 0);

    msg *m = &msgs[0];
    assert_int_equal(m->type, MSG_TEXT);
    assert_int_equal(m->channel, CH_MESSENGER);
    assert_string_equal(m->text, "hello, 你好");
    assert_string_equal(m->sender_id, "6253421724671451");
    assert_string_equal(m->meta.platform_chat_id, "6253421724671451");
    assert_string_equal(m->meta.platform_msg_id, "m_AbCd-1");
    assert_true(m->ts_client_ms == 1458692752478LL);
    assert_int_equal(m->n_att, 1);
    assert_string_equal(m->att[0].url, "https://scontent.xx.fbcdn.net/v/t1/abc.jpg");
    assert_string_equal(m->att[0].mime, "image/*");

    m = &msgs[1];
    assert_int_equal(m->type, MSG_ATTACHMENT);
    assert_int_equal(m->n_att, 1); /* the javascript: URL is dropped */
    assert_string_equal(m->att[0].url, "https://cdn.example/f.pdf");
    assert_string_equal(m->meta.in_reply_to, "m_AbCd-1");

    m = &msgs[2];
    assert_string_equal(m->text, "Talk to an agent");
    assert_string_equal(m->meta.platform_msg_id, "m_pb");
    for (size_t i = 0; i < n; i++)
        assert_valid(&msgs[i]);
    meta_msgs_free(msgs, n);

    const char *bad = "{\"object\":\"page\",\"entry\":[{\"messaging\":{}}]}";
    assert_int_equal(meta_parse_messenger(bad, strlen(bad), &msgs, &n, &st, &err), -1);
    assert_string_equal(err.code, "bad_json");
    const char *trunc = "{\"object\":\"page\",\"entry\":[{\"messaging\":[";
    assert_int_equal(meta_parse_messenger(trunc, strlen(trunc), &msgs, &n, &st, &err), -1);
    assert_string_equal(err.code, "bad_json");
    assert_null(msgs);
}

static void test_render(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    char *out = NULL;
    const char *t = "您好 \"x\"";
    assert_int_equal(msg_set_text(&m, t, strlen(t), &err), 0);
    assert_int_equal(meta_render_whatsapp(&m, "16505551234", &out, &err), 0);
    assert_string_equal(out, "{\"messaging_product\":\"whatsapp\",\"to\":\"16505551234\","
                             "\"type\":\"text\",\"text\":{\"body\":\"您好 \\\"x\\\"\"}}");
    free(out);
    assert_int_equal(meta_render_messenger(&m, "6253421724671451", &out, &err), 0);
    assert_string_equal(out, "{\"recipient\":{\"id\":\"6253421724671451\"},\"messaging_type\":"
                             "\"RESPONSE\",\"message\":{\"text\":\"您好 \\\"x\\\"\"}}");
    free(out);
    out = NULL;
    assert_int_equal(meta_render_messenger(&m, "", &out, &err), -1);
    assert_int_equal(meta_render_whatsapp(&m, "1\"}", &out, &err), -1);
    assert_string_equal(err.code, "bad_value");
    assert_null(out);
    msg_free(&m);
}

/* Events older than 24 h or more than 5 min ahead of the (injected) clock are stale; a message
 * without a timestamp cannot be judged and passes. */
static void test_fresh(void **state) {
    (void)state;
    cg_err err = {0};
    long long now = 1714036504000LL;
    msg m;
    msg_init(&m);
    m.ts_client_ms = 0;
    assert_int_equal(meta_fresh(&m, now, &err), 0);
    m.ts_client_ms = now - META_MAX_AGE_MS;
    assert_int_equal(meta_fresh(&m, now, &err), 0);
    m.ts_client_ms = now - META_MAX_AGE_MS - 1000;
    assert_int_equal(meta_fresh(&m, now, &err), -1);
    assert_string_equal(err.code, "stale");
    assert_string_equal(err.msg, "event is 86401 s old (limit 86400 s)");
    m.ts_client_ms = now + META_MAX_AHEAD_MS;
    assert_int_equal(meta_fresh(&m, now, &err), 0);
    m.ts_client_ms = now + META_MAX_AHEAD_MS + 1000;
    assert_int_equal(meta_fresh(&m, now, &err), -1);
    assert_string_equal(err.code, "stale");
    /* a parsed WhatsApp message carries its timestamp in seconds */
    static const char wa[] =
        "{\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"messages\":[{"
        "\"from\":\"1\",\"id\":\"wamid.1\",\"timestamp\":\"1713950000\",\"type\":\"text\","
        "\"text\":{\"body\":\"old\"}}]}}]}]}";
    msg *msgs = NULL;
    size_t n = 0;
    assert_int_equal(meta_parse_whatsapp(wa, strlen(wa), &msgs, &n, NULL, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(meta_fresh(&msgs[0], now, &err), -1); /* 86504 s before now */
    assert_int_equal(meta_fresh(&msgs[0], now - 200000, &err), 0);
    meta_msgs_free(msgs, n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_challenge),
        cmocka_unit_test(test_whatsapp_messages),
        cmocka_unit_test(test_whatsapp_statuses_only),
        cmocka_unit_test(test_whatsapp_bounds_and_errors),
        cmocka_unit_test(test_messenger),
        cmocka_unit_test(test_fresh),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
