/* test_channels_wechat.c -- signatures, safe-mode crypto, XML parsing and hardening, replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "channels/wechat.h"

#define WX_TOKEN "QDG6eK"
#define WX_KEY "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
#define WX_APPID "wx5823bf96d3bd56c7"

/* Known answer produced independently (python3 + `openssl enc -aes-256-cbc -nopad`) with the
 * random prefix "0123456789abcdef", the key and corpid above, and this message: */
static const char kat_plain[] =
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA["
    "mycreate]]></FromUserName><CreateTime>1409659813</CreateTime><MsgType><![CDATA[text]]>"
    "</MsgType><Content><![CDATA[hello]]></Content><MsgId>4561255354251345929</MsgId><AgentID>"
    "218</AgentID></xml>";
static const char kat_cipher[] =
    "sKqRbbiSUnDhFHOvPjtUMdVi0ljTgnq2cE++gz4IMV6PaZGqTuCD+Rwj8cEjqdWtgnPJUQO6nLmPtbbhaq6DWAU8sw"
    "EXvGovnq3WYl6ZoJdSt+Ds1J6FStKP2QjoKaCFdTCt6Zg0g79Z6yrQgYlFutqUDJIY4jWPAGXp+XcyEZGM+zU2bdz5"
    "ztCsU+7CzwIGtwaf6USoSPMwjm6VaCiSErcTTM2f4nZMhQQA9TUTl411pm4SKP0/3OjeNcQ8YKNiaIJCuJid4m85EQ"
    "N9aUU4sa4HmEFu3eGhZ+qmupl9imCHwnUObuIPtHCGybiOQmdVgsltDwP5xAUIovHzsLV9YajNXMnRUtrqdXlDZnoS"
    "47aarbvTnMv+gdjKKKh0NiztRhrJrQOxFOsCt3angJr0V6QHfQaV3a9CN6v1UQR26qc=";
/* sha1(sort(QDG6eK, 1409659813, 1372623149, kat_cipher)) */
static const char kat_msg_sig[] = "eef916a71304773843c25b33bb99012fb69fcb35";

/* What the gateway will do before cg_message: stamp ts and validate as an internal frame. */
static void assert_valid(msg *m) {
    cg_err verr = {0};
    m->ts_ms = 1714036504000LL;
    if (msg_validate(m, ORIGIN_INTERNAL, &verr) != 0)
        fail_msg("invalid msg: %s %s", verr.code, verr.msg);
}

static void test_signature_vector(void **state) {
    (void)state;
    cg_err err = {0};
    assert_int_equal(wechat_verify_signature("AAAAA", "1714036504", "1514711492",
                                             "f464b24fc39322e44b38aa78f5edd27bd1441696", &err),
                     0);
    /* hex case does not matter */
    assert_int_equal(wechat_verify_signature("AAAAA", "1714036504", "1514711492",
                                             "F464B24FC39322E44B38AA78F5EDD27BD1441696", &err),
                     0);
    assert_int_equal(wechat_verify_signature("AAAAA", "1714036504", "1514711492",
                                             "f464b24fc39322e44b38aa78f5edd27bd1441697", &err),
                     -1);
    assert_string_equal(err.code, "bad_signature");
    assert_int_equal(wechat_verify_signature("AAAAA", "1714036505", "1514711492",
                                             "f464b24fc39322e44b38aa78f5edd27bd1441696", NULL),
                     -1);
    assert_int_equal(wechat_verify_signature("AAAAA", "1714036504", NULL,
                                             "f464b24fc39322e44b38aa78f5edd27bd1441696", &err),
                     -1);
    assert_int_equal(wechat_verify_signature("AAAAA", "1714036504", "1514711492", "", &err), -1);
    assert_int_equal(wechat_verify_signature("AAAAA", "1714036504", "1514711492",
                                             "f464b24fc39322e44b38aa78f5edd27bd144169", &err),
                     -1);
    assert_int_equal(wechat_verify_signature("", "1714036504", "1514711492",
                                             "f464b24fc39322e44b38aa78f5edd27bd1441696", &err),
                     -1);
}

/* The POST query check: signature first, then the +-300 s window around the injected clock,
 * then the mode against the configured key. */
static void test_post_query(void **state) {
    (void)state;
    const char *sig =
        "f464b24fc39322e44b38aa78f5edd27bd1441696"; /* AAAAA, 1714036504, 1514711492 */
    long long now = 1714036504;
    int aes = -1;
    cg_err err;
    assert_int_equal(
        wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, NULL, 0, now, &aes, &err),
        0);
    assert_int_equal(aes, 0);
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, "raw", 0,
                                             now + 300, &aes, &err),
                     0);
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, NULL, 0,
                                             now - 300, &aes, &err),
                     0);
    /* one second outside the window, either way */
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, NULL, 0,
                                             now + 301, &aes, &err),
                     -1);
    assert_string_equal(err.code, "stale");
    assert_non_null(strstr(err.msg, "301 s behind"));
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, NULL, 0,
                                             now - 301, &aes, &err),
                     -1);
    assert_string_equal(err.code, "stale");
    assert_non_null(strstr(err.msg, "ahead of"));
    /* the signature is checked before the clock: a forged request learns nothing of it */
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492",
                                             "0000000000000000000000000000000000000000", NULL, 0,
                                             now + 10000, &aes, &err),
                     -1);
    assert_string_equal(err.code, "bad_signature");
    assert_int_equal(
        wechat_check_post_query("AAAAA", NULL, "1514711492", sig, NULL, 0, now, &aes, &err), -1);
    assert_string_equal(err.code, "bad_signature");
    /* a key is set: plain and raw are downgrades */
    assert_int_equal(
        wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, NULL, 1, now, &aes, &err),
        -1);
    assert_string_equal(err.code, "encryption_required");
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, "raw", 1,
                                             now, &aes, &err),
                     -1);
    assert_string_equal(err.code, "encryption_required");
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, "aes", 1,
                                             now, &aes, &err),
                     0);
    assert_int_equal(aes, 1);
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, "aes", 0,
                                             now, &aes, &err),
                     -1);
    assert_string_equal(err.code, "no_key");
    assert_int_equal(wechat_check_post_query("AAAAA", "1714036504", "1514711492", sig, "rot13", 1,
                                             now, &aes, &err),
                     -1);
    assert_string_equal(err.code, "bad_value");
    /* a correctly signed timestamp that is not a number (an empty Encrypt adds nothing to the
     * sorted concatenation: msg_signature is then the plain signature) */
    char hex[41];
    assert_int_equal(wechat_msg_signature("AAAAA", "soon", "n", "", hex, &err), 0);
    assert_int_equal(wechat_check_post_query("AAAAA", "soon", "n", hex, NULL, 0, now, &aes, &err),
                     -1);
    assert_string_equal(err.code, "stale");
    assert_string_equal(err.msg, "timestamp is not a unix time");
    assert_int_equal(wechat_time_ok(100, 400, &err), 0);
    assert_int_equal(wechat_time_ok(99, 400, &err), -1);
}

static void test_msg_signature_and_kat(void **state) {
    (void)state;
    cg_err err = {0};
    char sig[41];
    assert_int_equal(
        wechat_msg_signature(WX_TOKEN, "1409659813", "1372623149", kat_cipher, sig, &err), 0);
    assert_string_equal(sig, kat_msg_sig);
    assert_int_equal(wechat_verify_msg_signature(WX_TOKEN, "1409659813", "1372623149", kat_cipher,
                                                 kat_msg_sig, &err),
                     0);
    assert_int_equal(wechat_verify_msg_signature(WX_TOKEN, "1409659813", "1372623140", kat_cipher,
                                                 kat_msg_sig, &err),
                     -1);
    assert_string_equal(err.code, "bad_signature");

    char *plain = NULL;
    size_t plen = 0;
    assert_int_equal(
        wechat_decrypt(WX_KEY, WX_APPID, kat_cipher, strlen(kat_cipher), &plain, &plen, &err), 0);
    assert_int_equal(plen, strlen(kat_plain));
    assert_string_equal(plain, kat_plain);
    free(plain);

    /* encrypting with the same random prefix gives the same cipher text */
    char *b64 = NULL;
    assert_int_equal(wechat_encrypt(WX_KEY, WX_APPID, kat_plain, strlen(kat_plain),
                                    (const unsigned char *)"0123456789abcdef", &b64, &err),
                     0);
    assert_string_equal(b64, kat_cipher);
    free(b64);
}

static void test_round_trip(void **state) {
    (void)state;
    cg_err err = {0};
    const char *text = "<xml><Content><![CDATA[你好 roundtrip, every padding length]]></Content>"
                       "</xml>";
    for (size_t len = 0; len <= strlen(text); len++) { /* every padding length class */
        char *b64 = NULL, *plain = NULL;
        size_t plen = 0;
        assert_int_equal(wechat_encrypt(WX_KEY, WX_APPID, text, len, NULL, &b64, &err), 0);
        assert_int_equal(wechat_decrypt(WX_KEY, WX_APPID, b64, strlen(b64), &plain, &plen, &err),
                         0);
        assert_int_equal(plen, len);
        assert_memory_equal(plain, text, len);
        free(plain);
        free(b64);
    }
}

/* Encrypt raw bytes (already padded) with the WX_KEY scheme, for malformed-plaintext tests. */
static char *raw_encrypt(const unsigned char *plain, size_t n) {
    unsigned char key[33], cipher[512];
    EVP_DecodeBlock(key, (const unsigned char *)WX_KEY "=", 44);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key);
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    EVP_EncryptUpdate(ctx, cipher, &l1, plain, (int)n);
    EVP_EncryptFinal_ex(ctx, cipher + l1, &l2);
    EVP_CIPHER_CTX_free(ctx);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, cipher, l1 + l2);
    return b64;
}

static void expect_decrypt_error(const char *b64, const char *appid, const char *code) {
    cg_err err = {0};
    char *plain = NULL;
    size_t plen = 0;
    assert_int_equal(wechat_decrypt(WX_KEY, appid, b64, strlen(b64), &plain, &plen, &err), -1);
    assert_null(plain);
    assert_string_equal(err.code, code);
}

static void test_decrypt_rejects(void **state) {
    (void)state;
    /* tampered cipher text: a flipped bit in the first block garbles the length field */
    char *t = strdup(kat_cipher);
    t[2] = t[2] == 'A' ? 'B' : 'A';
    cg_err err = {0};
    char *plain = NULL;
    size_t plen = 0;
    assert_int_equal(wechat_decrypt(WX_KEY, WX_APPID, t, strlen(t), &plain, &plen, &err), -1);
    free(t);
    /* tampering in the last block breaks the padding or the appid */
    t = strdup(kat_cipher);
    size_t tl = strlen(t);
    t[tl - 6] = t[tl - 6] == 'A' ? 'B' : 'A';
    assert_int_equal(wechat_decrypt(WX_KEY, WX_APPID, t, tl, &plain, &plen, &err), -1);
    free(t);

    expect_decrypt_error(kat_cipher, "wx0000000000000000", "bad_appid");
    expect_decrypt_error(kat_cipher, "wx5823bf96d3bd56c", "bad_appid");
    expect_decrypt_error("not base64 !!!", WX_APPID, "bad_value");
    expect_decrypt_error("AAAAAAAAAAAAAAAAAAAAAA==", WX_APPID, "bad_cipher"); /* 16 bytes */

    unsigned char p[64];
    memset(p, 'x', sizeof(p));
    memset(p + 16, 0, 4);
    p[19] = 5; /* len 5, appid "xxx..." */
    p[63] = 0; /* pad 0 */
    char *b = raw_encrypt(p, 64);
    expect_decrypt_error(b, WX_APPID, "bad_cipher");
    free(b);
    p[63] = 33; /* pad > 32 */
    b = raw_encrypt(p, 64);
    expect_decrypt_error(b, WX_APPID, "bad_cipher");
    free(b);
    memset(p + 48, 16, 16);
    p[50] = 15; /* inconsistent pad bytes */
    b = raw_encrypt(p, 64);
    expect_decrypt_error(b, WX_APPID, "bad_cipher");
    free(b);
    memset(p + 48, 16, 16);
    p[16] = 0x7f; /* inner length far beyond the data */
    b = raw_encrypt(p, 64);
    expect_decrypt_error(b, WX_APPID, "bad_cipher");
    free(b);

    /* bad keys */
    assert_int_equal(
        wechat_decrypt("short", WX_APPID, kat_cipher, strlen(kat_cipher), &plain, &plen, &err), -1);
    assert_string_equal(err.code, "bad_value");
    assert_int_equal(wechat_decrypt("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2!", WX_APPID,
                                    kat_cipher, strlen(kat_cipher), &plain, &plen, &err),
                     -1);
}

static int parse(const char *xml, msg *m, int *ignored, cg_err *err) {
    return wechat_parse_xml(xml, strlen(xml), m, ignored, err);
}

#define HDR                                                                                        \
    "<xml><ToUserName><![CDATA[gh_123]]></ToUserName>"                                             \
    "<FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>"                        \
    "<CreateTime>1348831860</CreateTime>"

static void test_xml_text(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    assert_int_equal(parse(HDR "<MsgType><![CDATA[text]]></MsgType>"
                               "<Content><![CDATA[你好 <b>&amp;]]></Content>"
                               "<MsgId>9223372036854775807</MsgId></xml>",
                           &m, &ign, &err),
                     0);
    assert_int_equal(ign, 0);
    assert_int_equal(m.type, MSG_TEXT);
    assert_int_equal(m.channel, CH_WECHAT);
    assert_int_equal(m.dir, DIR_IN);
    assert_int_equal(m.role, ROLE_CUSTOMER);
    assert_string_equal(m.text, "你好 <b>&amp;");
    assert_string_equal(m.sender_id, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    assert_string_equal(m.meta.platform_chat_id, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    assert_string_equal(m.meta.platform_msg_id, "9223372036854775807");
    assert_true(m.ts_client_ms == 1348831860000LL);
    assert_valid(&m);
    msg_free(&m);

    /* entities outside CDATA are decoded; the largest unsigned 64-bit MsgId is exact */
    assert_int_equal(parse(HDR "<MsgType>text</MsgType><Content>a &lt;b&gt; &#20320;</Content>"
                               "<MsgId>18446744073709551615</MsgId></xml>",
                           &m, &ign, &err),
                     0);
    assert_string_equal(m.text, "a <b> 你");
    assert_string_equal(m.meta.platform_msg_id, "18446744073709551615");
    msg_free(&m);

    assert_int_equal(parse(HDR "<MsgType>text</MsgType><Content>x</Content>"
                               "<MsgId>18446744073709551616</MsgId></xml>",
                           &m, &ign, &err),
                     -1);
    assert_string_equal(err.code, "bad_value");
    assert_int_equal(parse(HDR "<MsgType>text</MsgType><Content>x</Content>"
                               "<MsgId>-1</MsgId></xml>",
                           &m, &ign, &err),
                     -1);
    assert_int_equal(parse(HDR "<MsgType>text</MsgType><Content>x</Content></xml>", &m, &ign, &err),
                     -1);
    assert_string_equal(err.code, "missing_field");
    assert_int_equal(parse("<xml><MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId>"
                           "<CreateTime>1</CreateTime></xml>",
                           &m, &ign, &err),
                     -1);
    assert_string_equal(err.code, "missing_field");
    /* a hostile openid */
    assert_int_equal(parse("<xml><FromUserName>a b\"</FromUserName><CreateTime>1</CreateTime>"
                           "<MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>",
                           &m, &ign, &err),
                     -1);
    assert_string_equal(err.code, "bad_value");
    /* duplicate field */
    assert_int_equal(parse(HDR "<MsgType>text</MsgType><Content>x</Content><Content>y</Content>"
                               "<MsgId>1</MsgId></xml>",
                           &m, &ign, &err),
                     -1);
    assert_string_equal(err.code, "bad_xml");
    assert_null(m.text);
}

static void test_xml_media_location(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    assert_int_equal(parse(HDR "<MsgType><![CDATA[image]]></MsgType>"
                               "<PicUrl><![CDATA[http://mmbiz.qpic.cn/abc]]></PicUrl>"
                               "<MediaId><![CDATA[media_id_1]]></MediaId>"
                               "<MsgId>1234567890123456</MsgId></xml>",
                           &m, &ign, &err),
                     0);
    assert_int_equal(m.type, MSG_ATTACHMENT);
    assert_int_equal(m.n_att, 1);
    assert_string_equal(m.att[0].url, "http://mmbiz.qpic.cn/abc");
    assert_string_equal(m.att[0].name, "media_id_1");
    assert_null(m.text);
    assert_valid(&m);
    msg_free(&m);

    assert_int_equal(parse(HDR "<MsgType><![CDATA[voice]]></MsgType>"
                               "<MediaId><![CDATA[vmedia]]></MediaId><Format>amr</Format>"
                               "<Recognition><![CDATA[腾讯微信团队]]></Recognition>"
                               "<MsgId>1234567890123457</MsgId></xml>",
                           &m, &ign, &err),
                     0);
    assert_int_equal(m.type, MSG_ATTACHMENT);
    assert_string_equal(m.att[0].url, "wechat-media:vmedia");
    assert_string_equal(m.att[0].mime, "audio/amr");
    assert_string_equal(m.text, "腾讯微信团队");
    assert_valid(&m);
    msg_free(&m);

    assert_int_equal(parse(HDR "<MsgType>voice</MsgType><MediaId>v2</MediaId>"
                               "<Format>amr</Format><MsgId>5</MsgId></xml>",
                           &m, &ign, &err),
                     0);
    assert_null(m.text);
    msg_free(&m);

    assert_int_equal(parse(HDR "<MsgType><![CDATA[location]]></MsgType>"
                               "<Location_X>23.134521</Location_X><Location_Y>113.358803"
                               "</Location_Y><Scale>20</Scale><Label><![CDATA[广州市海珠区]]>"
                               "</Label><MsgId>1234567890123458</MsgId></xml>",
                           &m, &ign, &err),
                     0);
    assert_int_equal(m.type, MSG_TEXT);
    assert_string_equal(m.text, "[location] 广州市海珠区 (23.134521,113.358803)");
    assert_valid(&m);
    msg_free(&m);

    assert_int_equal(parse(HDR "<MsgType>link</MsgType><Title>T</Title><Description>D"
                               "</Description><Url>https://example.com/x</Url><MsgId>7</MsgId>"
                               "</xml>",
                           &m, &ign, &err),
                     0);
    assert_string_equal(m.text, "[link] T\nD\nhttps://example.com/x");
    msg_free(&m);

    assert_int_equal(
        parse(HDR "<MsgType>miniprogrampage</MsgType><MsgId>8</MsgId></xml>", &m, &ign, &err), 0);
    assert_string_equal(m.text, "[unsupported wechat message: miniprogrampage]");
    msg_free(&m);
}

static void test_xml_events(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    assert_int_equal(parse(HDR "<MsgType><![CDATA[event]]></MsgType>"
                               "<Event><![CDATA[subscribe]]></Event></xml>",
                           &m, &ign, &err),
                     0);
    assert_int_equal(ign, 0);
    assert_int_equal(m.type, MSG_JOIN);
    assert_valid(&m);
    assert_string_equal(m.sender_id, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
    assert_string_equal(m.meta.platform_msg_id, "ev:oUpF8uMuAJO_M2pxb1Q9zNjWeS6o:1348831860");
    msg_free(&m);

    assert_int_equal(parse(HDR "<MsgType><![CDATA[event]]></MsgType>"
                               "<Event><![CDATA[unsubscribe]]></Event></xml>",
                           &m, &ign, &err),
                     0);
    assert_int_equal(ign, 1);
    msg_free(&m);
    assert_int_equal(parse(HDR "<MsgType>event</MsgType><Event>CLICK</Event>"
                               "<EventKey>K</EventKey></xml>",
                           &m, &ign, &err),
                     0);
    assert_int_equal(ign, 1);
    msg_free(&m);
}

static void expect_xml_error(const char *xml, const char *code) {
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign = -1;
    assert_int_equal(parse(xml, &m, &ign, &err), -1);
    assert_string_equal(err.code, code);
    assert_null(m.text);
    msg_free(&m);
}

static void test_xml_hostile(void **state) {
    (void)state;
    /* billion laughs */
    expect_xml_error("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                     "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
                     "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>"
                     "<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
                     "<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>",
                     "bad_xml");
    /* external entity */
    expect_xml_error("<!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
                     "<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
                     "<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>",
                     "bad_xml");
    /* parameter entity / external DTD */
    expect_xml_error("<!DOCTYPE xml SYSTEM \"http://evil.example/x.dtd\"><xml/>", "bad_xml");
    expect_xml_error("<!DOCTYPE xml [<!ENTITY % p SYSTEM \"http://evil/\"> %p;]><xml/>", "bad_xml");
    /* any DOCTYPE */
    expect_xml_error("<!DOCTYPE xml><xml/>", "bad_xml");
    /* undefined entity, junk, wrong root, nesting, truncation */
    expect_xml_error(HDR "<MsgType>text</MsgType><Content>&foo;</Content><MsgId>1</MsgId></xml>",
                     "bad_xml");
    expect_xml_error("<html><body/></html>", "bad_xml");
    expect_xml_error("<xml><a><b><c><d><e><f><g><h><i>x</i></h></g></f></e></d></c></b></a></xml>",
                     "bad_xml");
    expect_xml_error(HDR "<MsgType>text</MsgType><Content>x</Cont", "bad_xml");
    expect_xml_error("<xml></xml><xml></xml>", "bad_xml");
    expect_xml_error("", "bad_xml");
    /* invalid UTF-8 */
    expect_xml_error(HDR "<MsgType>text</MsgType><Content>\xff\xfe</Content><MsgId>1</MsgId></xml>",
                     "bad_xml");

    /* size cap */
    size_t n = WECHAT_BODY_MAX + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    memcpy(big, "<xml>", 5);
    msg m;
    msg_init(&m);
    cg_err err = {0};
    int ign;
    assert_int_equal(wechat_parse_xml(big, n, &m, &ign, &err), -1);
    assert_string_equal(err.code, "too_large");
    free(big);
}

static void test_envelope(void **state) {
    (void)state;
    cg_err err = {0};
    char *enc = NULL;
    const char *body = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
                       "<Encrypt><![CDATA[abc+/=]]></Encrypt><AgentID><![CDATA[218]]></AgentID>"
                       "</xml>";
    assert_int_equal(wechat_parse_encrypted_envelope(body, strlen(body), &enc, &err), 0);
    assert_string_equal(enc, "abc+/=");
    free(enc);
    enc = NULL;
    const char *none = "<xml><ToUserName>x</ToUserName></xml>";
    assert_int_equal(wechat_parse_encrypted_envelope(none, strlen(none), &enc, &err), -1);
    assert_string_equal(err.code, "missing_field");
    assert_null(enc);
    const char *dt = "<!DOCTYPE x [<!ENTITY e \"A\">]><xml><Encrypt>&e;</Encrypt></xml>";
    assert_int_equal(wechat_parse_encrypted_envelope(dt, strlen(dt), &enc, &err), -1);
    assert_null(enc);

    /* the whole safe-mode chain: envelope -> msg_signature -> decrypt -> parse */
    char *b64 = NULL, *plain = NULL, *xml = NULL;
    size_t plen = 0;
    const char *inner = HDR "<MsgType>text</MsgType><Content>安全模式</Content><MsgId>42</MsgId>"
                            "</xml>";
    assert_int_equal(wechat_encrypt(WX_KEY, WX_APPID, inner, strlen(inner), NULL, &b64, &err), 0);
    assert_true(asprintf(&xml,
                         "<xml><ToUserName>%s</ToUserName><Encrypt><![CDATA[%s]]>"
                         "</Encrypt></xml>",
                         WX_APPID, b64) > 0);
    char sig[41];
    assert_int_equal(wechat_msg_signature(WX_TOKEN, "1700000000", "n1", b64, sig, &err), 0);
    assert_int_equal(wechat_parse_encrypted_envelope(xml, strlen(xml), &enc, &err), 0);
    assert_int_equal(wechat_verify_msg_signature(WX_TOKEN, "1700000000", "n1", enc, sig, &err), 0);
    assert_int_equal(wechat_decrypt(WX_KEY, WX_APPID, enc, strlen(enc), &plain, &plen, &err), 0);
    msg m;
    msg_init(&m);
    int ign = -1;
    assert_int_equal(wechat_parse_xml(plain, plen, &m, &ign, &err), 0);
    assert_string_equal(m.text, "安全模式");
    assert_string_equal(m.meta.platform_msg_id, "42");
    msg_free(&m);
    free(b64);
    free(plain);
    free(xml);
    free(enc);
}

static void test_render_reply(void **state) {
    (void)state;
    msg m;
    msg_init(&m);
    cg_err err = {0};
    char *out = NULL;
    assert_int_equal(
        msg_set_text(&m, "您好，\"订单\"已发货\n", strlen("您好，\"订单\"已发货\n"), &err), 0);
    assert_int_equal(wechat_render_reply_json(&m, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", &out, &err), 0);
    assert_string_equal(out, "{\"touser\":\"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\",\"msgtype\":\"text\","
                             "\"text\":{\"content\":\"您好，\\\"订单\\\"已发货\\n\"}}");
    free(out);
    out = NULL;
    assert_int_equal(wechat_render_reply_json(&m, "bad\"id", &out, &err), -1);
    assert_string_equal(err.code, "bad_value");
    assert_null(out);
    msg_free(&m);
    assert_int_equal(wechat_render_reply_json(&m, "o1", &out, &err), -1);
    assert_string_equal(err.code, "missing_field");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_vector),      cmocka_unit_test(test_post_query),
        cmocka_unit_test(test_msg_signature_and_kat), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decrypt_rejects),       cmocka_unit_test(test_xml_text),
        cmocka_unit_test(test_xml_media_location),    cmocka_unit_test(test_xml_events),
        cmocka_unit_test(test_xml_hostile),           cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_render_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
