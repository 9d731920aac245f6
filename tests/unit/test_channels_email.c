/* test_channels_email.c -- e-mail parsing (charsets, encoded words, bodies, attachments,
 * threading, quotes, auto-replies) and reply rendering. Fixtures: the .eml files in
 * tests/unit/data, made by tests/unit/data/make_eml.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "channels/email.h"

#define TOKEN "0123456789abcdef0123456789abcdef"

/* What the gateway will do before cg_message: stamp ts and validate as an internal frame. */
static void assert_valid(msg *m) {
    cg_err verr = {0};
    m->ts_ms = 1714036504000LL;
    if (msg_validate(m, ORIGIN_INTERNAL, &verr) != 0)
        fail_msg("invalid msg: %s %s", verr.code, verr.msg);
}

/* Read tests/unit/data/<name> (found next to this source file, or under $CG_TEST_DATA). */
static char *load(const char *name, size_t *len) {
    char path[512];
    const char *dir = getenv("CG_TEST_DATA");
    if (dir) {
        snprintf(path, sizeof(path), "%s/%s", dir, name);
    } else {
        const char *src = __FILE__, *slash = strrchr(src, '/');
        int dl = slash ? (int)(slash - src) : 1;
        snprintf(path, sizeof(path), "%.*s/data/%s", dl, slash ? src : ".", name);
    }
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    char *buf = malloc(EMAIL_RAW_MAX + 1);
    *len = fread(buf, 1, EMAIL_RAW_MAX, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* Parse a fixture into m/info; fails the test on error. */
static void parse_file(const char *name, msg *m, email_info *info) {
    size_t len = 0;
    char *raw = load(name, &len);
    cg_err err = {0};
    msg_init(m);
    int rc = email_parse(raw, len, m, info, &err);
    free(raw);
    if (rc != 0) fail_msg("%s: %s %s", name, err.code, err.msg);
    assert_int_equal(m->channel, CH_EMAIL);
    assert_int_equal(m->dir, DIR_IN);
    assert_int_equal(m->role, ROLE_CUSTOMER);
    assert_valid(m);
}

static void test_gb2312_label_gbk_bytes(void **state) {
    (void)state;
    msg m;
    email_info info;
    parse_file("gb2312_gbk_bytes.eml", &m, &info);
    assert_int_equal(m.type, MSG_TEXT);
    assert_string_equal(m.text, "朱镕基先生您好：\n我的订单还没有到，请帮忙查询。");
    assert_string_equal(info.subject, "镕钢订单");
    assert_string_equal(m.meta.subject, "镕钢订单");
    assert_string_equal(info.from_name, "王镕");
    assert_string_equal(m.sender_name, "王镕");
    assert_string_equal(info.from_addr, "wangrong@example.cn");
    assert_string_equal(m.sender_id, "wangrong@example.cn");
    assert_string_equal(m.meta.platform_chat_id, "wangrong@example.cn");
    assert_string_equal(info.message_id, "gb2312-1@example.cn");
    assert_string_equal(m.meta.platform_msg_id, "gb2312-1@example.cn");
    assert_string_equal(m.meta.thread_id, "gb2312-1@example.cn");
    assert_true(m.ts_client_ms == 1714010400000LL); /* 2024-04-25 10:00 +0800 */
    assert_int_equal(info.is_auto, 0);
    assert_string_equal(info.conv_token, "");
    msg_free(&m);
}

static void test_gbk_qp_and_utf8_base64(void **state) {
    (void)state;
    msg m;
    email_info info;
    parse_file("gbk_qp.eml", &m, &info);
    assert_string_equal(m.text, "退货地址：北京市海淀区\n谢谢！");
    msg_free(&m);
    parse_file("utf8_base64.eml", &m, &info);
    assert_string_equal(m.text, "你好，我想换一个颜色 🙂");
    assert_string_equal(info.subject, "UTF-8 正文");
    assert_string_equal(info.from_name, "张三");
    msg_free(&m);
}

static void test_split_encoded_words(void **state) {
    (void)state;
    msg m;
    email_info info;
    /* "=?gb2312?B?udjT?= =?gb2312?Q?=DA=B6=A9=B5=A5?= =?utf-8?B?...?= 12345": the character
     * 于 is split between the B and the Q word */
    parse_file("split_subject.eml", &m, &info);
    assert_string_equal(info.subject, "关于订单的退款问题 12345");
    assert_string_equal(m.sender_name, "李四");
    assert_string_equal(m.text, "see subject");
    msg_free(&m);
}

static void test_html_only(void **state) {
    (void)state;
    msg m;
    email_info info;
    parse_file("html_only.eml", &m, &info);
    assert_string_equal(m.text, "您好，\n\n订单 A&B <123> 你好\n\n第二行\n第三行");
    assert_null(strstr(m.text, "alert"));
    assert_null(strstr(m.text, "hidden"));
    assert_null(strstr(m.text, "color"));
    assert_null(strstr(m.text, "quoted earlier"));
    msg_free(&m);
}

static void test_attachments(void **state) {
    (void)state;
    msg m;
    email_info info;
    parse_file("attachment.eml", &m, &info);
    assert_int_equal(m.type, MSG_TEXT);
    assert_string_equal(m.text, "Please see the invoice.");
    assert_int_equal(m.n_att, 2);
    assert_int_equal(info.n_attachments, 2);
    assert_string_equal(m.att[0].url, "email-att:att-1@example.cn/0");
    assert_string_equal(m.att[0].name, "发票.pdf");
    assert_string_equal(m.att[0].mime, "application/pdf");
    assert_true(m.att[0].size == 1009);
    assert_string_equal(m.att[1].url, "email-att:att-1@example.cn/1");
    assert_string_equal(m.att[1].name, "photo.png");
    assert_string_equal(m.att[1].mime, "image/png");
    assert_true(m.att[1].size == 70);
    msg_free(&m);

    /* mixed > related > alternative(plain, html) + inline image, + attachment */
    parse_file("nested.eml", &m, &info);
    assert_string_equal(m.text, "纯文本正文");
    assert_int_equal(m.n_att, 2);
    assert_string_equal(m.att[0].name, "logo.png");
    assert_string_equal(m.att[1].name, "notes.bin");
    assert_true(m.att[1].size == 5);
    msg_free(&m);
}

static void test_replies(void **state) {
    (void)state;
    msg m;
    email_info info;
    parse_file("reply_zh.eml", &m, &info);
    assert_string_equal(info.subject, "订单问题");
    assert_string_equal(m.meta.subject, "订单问题");
    assert_string_equal(info.conv_token, TOKEN);
    assert_string_equal(info.in_reply_to, "cg-aaaa@shop.example");
    assert_string_equal(m.meta.in_reply_to, "cg-aaaa@shop.example");
    assert_int_equal(info.n_references, 2);
    assert_string_equal(info.references[0], "first@example.cn");
    assert_string_equal(info.references[1], "cg-aaaa@shop.example");
    assert_string_equal(m.text, "好的，谢谢！\n明天我在家。");
    msg_free(&m);

    /* English client: wrapped "On ... wrote:", inline quote, token in a plus-address */
    parse_file("reply_en.eml", &m, &info);
    assert_string_equal(info.subject, "Where is my parcel?");
    assert_string_equal(info.conv_token, TOKEN);
    assert_string_equal(m.text, "Thanks, that works.\nBest, Bob");
    assert_string_equal(m.sender_name, "Bob");
    msg_free(&m);

    parse_file("outlook_reply.eml", &m, &info);
    assert_string_equal(info.subject, "发票");
    assert_string_equal(m.text, "已收到。");
    msg_free(&m);
}

static void test_auto(void **state) {
    (void)state;
    msg m;
    email_info info;
    parse_file("auto_reply.eml", &m, &info);
    assert_int_equal(info.is_auto, 1);
    msg_free(&m);
    parse_file("bounce.eml", &m, &info);
    assert_int_equal(info.is_auto, 1);
    msg_free(&m);

    const char *hdrs[] = {"Precedence: bulk\r\n",
                          "Precedence: junk\r\n",
                          "X-Autoreply: yes\r\n",
                          "X-Autorespond: 1\r\n",
                          "Auto-Submitted: auto-generated\r\n",
                          "Return-Path: <>\r\n"};
    cg_err err = {0};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char raw[256];
        int n = snprintf(raw, sizeof(raw), "From: a@b.example\r\n%sSubject: s\r\n\r\nbody\r\n",
                         hdrs[i]);
        msg_init(&m);
        assert_int_equal(email_parse(raw, (size_t)n, &m, &info, &err), 0);
        assert_int_equal(info.is_auto, 1);
        msg_free(&m);
    }
    const char *human = "From: a@b.example\r\nAuto-Submitted: no\r\nSubject: s\r\n\r\nbody\r\n";
    assert_int_equal(email_parse(human, strlen(human), &m, &info, &err), 0);
    assert_int_equal(info.is_auto, 0);
    /* no Message-ID: a content hash for de-duplication */
    assert_int_equal(strncmp(m.meta.platform_msg_id, "sha256:", 7), 0);
    assert_int_equal(strlen(m.meta.platform_msg_id), 7 + 32);
    msg_free(&m);
}

static void test_errors_and_bounds(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    email_info info;
    cg_err err = {0};
    assert_int_equal(email_parse("", 0, &m, &info, &err), -1);
    assert_string_equal(err.code, "bad_email");
    const char *nofrom = "Subject: x\r\n\r\nbody\r\n";
    assert_int_equal(email_parse(nofrom, strlen(nofrom), &m, &info, &err), -1);
    assert_string_equal(err.code, "missing_field");
    const char *junk = "\x01\x02\x03 not a message";
    assert_int_equal(email_parse(junk, strlen(junk), &m, &info, &err), -1);
    char *big = malloc(EMAIL_RAW_MAX + 1);
    memset(big, 'a', EMAIL_RAW_MAX + 1);
    assert_int_equal(email_parse(big, EMAIL_RAW_MAX + 1, &m, &info, &err), -1);
    assert_string_equal(err.code, "too_large");

    /* a body over MSG_TEXT_MAX is cut at a character boundary */
    size_t n = (size_t)snprintf(big, 200,
                                "From: a@b.example\r\nContent-Type: text/plain; "
                                "charset=utf-8\r\n\r\n");
    for (size_t i = 0; i < 20000; i++) {
        memcpy(big + n, "好", 3);
        n += 3;
    }
    assert_int_equal(email_parse(big, n, &m, &info, &err), 0);
    assert_int_equal(info.truncated, 1);
    assert_true(m.text_len <= MSG_TEXT_MAX);
    assert_int_equal(m.text_len % 3, 0);
    msg_free(&m);

    /* deeper than EMAIL_DEPTH_MAX: the inner parts are not looked at, nothing breaks */
    n = (size_t)snprintf(big, 200,
                         "From: a@b.example\r\nContent-Type: multipart/mixed; "
                         "boundary=b0\r\n\r\n");
    for (int i = 1; i <= 40; i++)
        n += (size_t)snprintf(big + n, 200,
                              "--b%d\r\nContent-Type: multipart/mixed; "
                              "boundary=b%d\r\n\r\n",
                              i - 1, i);
    n += (size_t)snprintf(big + n, 200, "--b40\r\nContent-Type: text/plain\r\n\r\ndeep\r\n");
    assert_int_equal(email_parse(big, n, &m, &info, &err), 0);
    assert_null(strstr(m.text ? m.text : "", "deep"));
    msg_free(&m);
    free(big);

    /* subject only */
    const char *subj = "From: a@b.example\r\nSubject: =?utf-8?B?5L2g5aW9?=\r\n\r\n";
    assert_int_equal(email_parse(subj, strlen(subj), &m, &info, &err), 0);
    assert_string_equal(m.text, "你好");
    msg_free(&m);
}

static void test_render_reply_round_trip(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    const char *text = "您好，您的包裹明天送达。\n祝好\n";
    assert_int_equal(msg_set_text(&m, text, strlen(text), &err), 0);
    const char *refs[] = {"first@example.cn", "cg-aaaa@shop.example"};
    email_reply r = {
        .from_addr = "support@shop.example",
        .from_name = "客服 Support",
        .to_addr = "zhangsan@example.cn",
        .to_name = "张三",
        .subject = "回复：订单问题",
        .in_reply_to = "reply-zh-1@example.cn",
        .references = refs,
        .n_references = 2,
        .message_id_domain = "shop.example",
        .conv_token = TOKEN,
        .date_ms = 1714010400000LL,
    };
    char *out = NULL, mid[MSG_META_MAX];
    size_t len = 0;
    assert_int_equal(email_render_reply(&m, &r, &out, &len, mid, &err), 0);
    assert_int_equal(strlen(out), len);
    assert_non_null(strstr(out, "\r\nSubject: Re: =?UTF-8?B?"));
    assert_non_null(strstr(out, "In-Reply-To: <reply-zh-1@example.cn>\r\n"));
    assert_non_null(
        strstr(out, "References: <first@example.cn> <cg-aaaa@shop.example>\r\n"
                    " <reply-zh-1@example.cn>\r\n") ||
        strstr(out,
               "References: <first@example.cn> <cg-aaaa@shop.example> <reply-zh-1@example.cn>"));
    assert_non_null(strstr(out, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(out, "charset=utf-8"));
    assert_null(strstr(out, "Auto-Submitted"));
    assert_int_equal(strncmp(mid, "cg-", 3), 0);
    assert_non_null(strstr(mid, "@shop.example"));
    for (const char *p = out; *p; p++) /* every line ends in CRLF */
        if (*p == '\n') assert_true(p > out && p[-1] == '\r');

    /* GMime reads it back with the same subject, body and threading */
    msg back;
    msg_init(&back);
    email_info info;
    assert_int_equal(email_parse(out, len, &back, &info, &err), 0);
    assert_string_equal(info.subject, "订单问题");
    assert_string_equal(info.conv_token, TOKEN);
    assert_string_equal(back.text, "您好，您的包裹明天送达。\n祝好");
    assert_string_equal(info.from_addr, "support@shop.example");
    assert_string_equal(info.from_name, "客服 Support");
    assert_string_equal(info.message_id, mid);
    assert_string_equal(info.in_reply_to, "reply-zh-1@example.cn");
    assert_int_equal(info.n_references, 3);
    assert_true(back.ts_client_ms == 1714010400000LL);
    assert_int_equal(info.is_auto, 0);
    msg_free(&back);
    free(out);
    out = NULL;

    /* header injection and bad inputs are refused */
    email_reply bad = r;
    bad.to_addr = "x@example.cn\r\nBcc: victim@example.com";
    assert_int_equal(email_render_reply(&m, &bad, &out, &len, NULL, &err), -1);
    assert_string_equal(err.code, "bad_value");
    bad = r;
    bad.subject = "hi\r\nBcc: victim@example.com";
    assert_int_equal(email_render_reply(&m, &bad, &out, &len, NULL, &err), -1);
    bad = r;
    bad.in_reply_to = "a> <b";
    assert_int_equal(email_render_reply(&m, &bad, &out, &len, NULL, &err), -1);
    bad = r;
    bad.conv_token = "xyz";
    assert_int_equal(email_render_reply(&m, &bad, &out, &len, NULL, &err), -1);
    bad = r;
    bad.message_id_domain = "shop.example>";
    assert_int_equal(email_render_reply(&m, &bad, &out, &len, NULL, &err), -1);
    assert_null(out);

    /* an ASCII subject without token stays readable; no double "Re:" */
    bad = r;
    bad.subject = "Re: Where is my parcel?";
    bad.conv_token = NULL;
    bad.references = NULL;
    bad.n_references = 0;
    assert_int_equal(email_render_reply(&m, &bad, &out, &len, NULL, &err), 0);
    assert_non_null(strstr(out, "Subject: Re: Where is my parcel?\r\n"));
    assert_non_null(strstr(out, "References: <reply-zh-1@example.cn>\r\n"));
    free(out);
    msg_free(&m);
}

/* Render a reply to what email_parse took from a mail, the way the gateway does (To = the From
 * address, In-Reply-To = its Message-ID, References = its thread): 0 or -1 with err. */
static int reply_to_parsed(const msg *m, const email_info *info, cg_err *err) {
    const char *refs[EMAIL_REFS_MAX];
    for (size_t i = 0; i < info->n_references; i++)
        refs[i] = info->references[i];
    email_reply r = {
        .from_addr = "support@shop.example",
        .to_addr = m->meta.platform_chat_id,
        .to_name = m->sender_name,
        .subject = info->subject,
        .in_reply_to = m->meta.thread_id,
        .references = info->n_references ? refs : NULL,
        .n_references = info->n_references,
        .message_id_domain = "shop.example",
    };
    msg reply;
    msg_init(&reply);
    reply.type = MSG_TEXT;
    msg_set_text(&reply, "ok", 2, NULL);
    char *out = NULL;
    size_t len = 0;
    int rc = email_render_reply(&reply, &r, &out, &len, NULL, err);
    free(out);
    msg_free(&reply);
    return rc;
}

/* Ingestion keeps only what a reply can render back (issue 12, item 1): a From no reply can be
 * addressed to is refused with a reason; Message-IDs a reply cannot carry are dropped (the mail
 * is kept, it just does not thread by them). Whatever is accepted can be answered. */
static void test_ingest_only_answerable(void **state) {
    (void)state;
    static const char *const bad_from[] = {
        "From: \"john;doe\"@example.com\r\n",
        "From: Ann <\"a b\"@example.com>\r\n",
        "From: x <a,b@example.com>\r\n",
        "From: y <a@b@example.com>\r\n",
    };
    cg_err err = {0};
    for (size_t i = 0; i < sizeof(bad_from) / sizeof(bad_from[0]); i++) {
        char raw[512];
        int n = snprintf(raw, sizeof(raw),
                         "%sTo: support@shop.example\r\nSubject: hi\r\n"
                         "Message-ID: <ok-%zu@example.com>\r\n\r\nhello\r\n",
                         bad_from[i], i);
        msg m;
        msg_init(&m);
        email_info info;
        int rc = email_parse(raw, (size_t)n, &m, &info, &err);
        if (rc == 0) { /* accepted: then it must be answerable */
            cg_err rerr = {0};
            if (reply_to_parsed(&m, &info, &rerr) != 0)
                fail_msg("%s accepted as '%s' but cannot be answered: %s", bad_from[i],
                         m.meta.platform_chat_id, rerr.msg);
        } else {
            assert_string_equal(err.code, "bad_value");
            assert_non_null(strstr(err.msg, "From address cannot be answered"));
        }
        msg_free(&m);
    }
    /* the first From mailbox is unusable, the second is fine: the reply goes to the second */
    const char *two = "From: \"a;b\"@example.com, Bo <bo@example.com>\r\n"
                      "Subject: hi\r\n\r\nhello\r\n";
    msg m;
    msg_init(&m);
    email_info info;
    assert_int_equal(email_parse(two, strlen(two), &m, &info, &err), 0);
    assert_string_equal(m.meta.platform_chat_id, "bo@example.com");
    msg_free(&m);

    /* unrenderable threading ids are dropped, the mail is kept and can be answered */
    const char *ids = "From: Ann <ann@example.com>\r\nSubject: hi\r\n"
                      "Message-ID: <caf\xc3\xa9@example.com>\r\n"
                      "In-Reply-To: <a\x01"
                      "b@x.example>\r\n"
                      "References: <root@x.example> <b\xc3\xa9@x.example> <last@x.example>\r\n"
                      "\r\nhello\r\n";
    msg_init(&m);
    assert_int_equal(email_parse(ids, strlen(ids), &m, &info, &err), 0);
    assert_string_equal(m.meta.thread_id, "");
    assert_int_equal(strncmp(m.meta.platform_msg_id, "sha256:", 7), 0);
    assert_string_equal(m.meta.in_reply_to, "");
    assert_int_equal(info.n_references, 2);
    assert_string_equal(info.references[0], "root@x.example");
    assert_string_equal(info.references[1], "last@x.example");
    cg_err rerr = {0};
    if (reply_to_parsed(&m, &info, &rerr) != 0) fail_msg("cannot be answered: %s", rerr.msg);
    msg_free(&m);

    /* the same checks for a bridge's normalized push */
    msg_init(&m);
    snprintf(m.meta.platform_chat_id, sizeof(m.meta.platform_chat_id), "%s", "\"a;b\"@x.example");
    assert_int_equal(email_inbound_check(&m, &err), -1);
    assert_string_equal(err.code, "bad_value");
    snprintf(m.meta.platform_chat_id, sizeof(m.meta.platform_chat_id), "%s", "ann@x.example");
    snprintf(m.meta.thread_id, sizeof(m.meta.thread_id), "%s", "a b@x");
    snprintf(m.meta.subject, sizeof(m.meta.subject), "%s", "hi\r\nBcc: v@x.example");
    snprintf(m.sender_name, sizeof(m.sender_name), "%s", "Ann\nBcc: v@x.example");
    assert_int_equal(email_inbound_check(&m, &err), 0);
    assert_string_equal(m.meta.thread_id, "");
    assert_null(strchr(m.meta.subject, '\n'));
    assert_null(strchr(m.sender_name, '\n'));
    msg_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gb2312_label_gbk_bytes),
        cmocka_unit_test(test_gbk_qp_and_utf8_base64),
        cmocka_unit_test(test_split_encoded_words),
        cmocka_unit_test(test_html_only),
        cmocka_unit_test(test_attachments),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_errors_and_bounds),
        cmocka_unit_test(test_render_reply_round_trip),
        cmocka_unit_test(test_ingest_only_answerable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
