/* test_token.c -- HS256 round trip, and every way a token must be refused: wrong secret,
 * tampering, alg "none", another algorithm, expiry, no exp or a lifetime over max_ttl, missing
 * or bad claims (identifiers, names, jti); key rotation by kid; keyring configuration errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/token.h"

#define SECRET "unit-test-secret-0123456789abcdef"
#define SECRET_LEN (sizeof(SECRET) - 1)
#define SECRET2 "second-unit-test-secret-0123456789"
#define NOW 1800000000
#define MAX_TTL 86400
#define VALID ",\"exp\":1800000060,\"jti\":\"j-1\"" /* valid exp and jti, to append */

/* A keyring of the legacy SECRET only (tokens without kid). */
static token_keyring kr_legacy(void) {
    token_keyring kr;
    cg_err e;
    assert_int_equal(token_keyring_init(&kr, NULL, SECRET, MAX_TTL, &e), 0);
    return kr;
}

static int sign(const token_claims *c, char **tok, cg_err *e) {
    token_keyring kr = kr_legacy();
    return token_sign(c, &kr, tok, e);
}

static int verify(const char *tok, int64_t now, token_claims *out, cg_err *e) {
    token_keyring kr = kr_legacy();
    return token_verify(tok, &kr, now, out, e);
}

/* base64url without padding of n bytes into out (large enough). */
static void b64url(const void *in, size_t n, char *out) {
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (char *p = out; *p; p++) {
        if (*p == '+') *p = '-';
        if (*p == '/') *p = '_';
    }
}

/* header.payload.signature with an HS256 signature under secret (NULL: an empty one). */
static char *make_token_key(const char *header, const char *payload, const char *secret) {
    static char tok[4096];
    char h[1024], p[2048];
    b64url(header, strlen(header), h);
    b64url(payload, strlen(payload), p);
    snprintf(tok, sizeof(tok), "%s.%s.", h, p);
    if (secret) {
        unsigned char mac[32];
        unsigned int ml;
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok, strlen(tok) - 1, mac,
             &ml);
        b64url(mac, ml, tok + strlen(tok));
    }
    return tok;
}

/* The same under SECRET (sign=1) or unsigned. */
static char *make_token(const char *header, const char *payload, int sign) {
    return make_token_key(header, payload, sign ? SECRET : NULL);
}

static token_claims agent_claims(void) {
    token_claims c;
    memset(&c, 0, sizeof(c));
    c.role = TOKEN_AGENT;
    snprintf(c.sub, sizeof(c.sub), "agent-7");
    snprintf(c.name, sizeof(c.name), "Zoë 张");
    snprintf(c.skills[0], sizeof(c.skills[0]), "presales");
    snprintf(c.skills[1], sizeof(c.skills[1]), "support");
    c.n_skills = 2;
    c.cap = 3;
    c.iat = NOW - 10;
    c.exp = NOW + 3600;
    snprintf(c.jti, sizeof(c.jti), "tok-1");
    return c;
}

/* tok is refused with code (and, when msg_part is not NULL, a message containing it). */
static void expect_bad_msg(const char *tok, const char *code, const char *msg_part) {
    token_claims out;
    cg_err e = {{0}, {0}};
    assert_int_equal(verify(tok, NOW, &out, &e), -1);
    assert_string_equal(e.code, code);
    if (msg_part && !strstr(e.msg, msg_part)) fail_msg("'%s' does not say '%s'", e.msg, msg_part);
    assert_int_equal(out.role, 0);
    assert_string_equal(out.sub, "");
}

static void expect_bad(const char *tok, const char *code) {
    expect_bad_msg(tok, code, NULL);
}

static void test_round_trip(void **state) {
    (void)state;
    token_claims c = agent_claims(), out;
    char *tok = NULL;
    cg_err e;
    assert_int_equal(sign(&c, &tok, &e), 0);
    assert_non_null(tok);
    assert_int_equal(verify(tok, NOW, &out, &e), 0);
    assert_int_equal(out.role, TOKEN_AGENT);
    assert_string_equal(out.sub, "agent-7");
    assert_string_equal(out.name, "Zoë 张");
    assert_int_equal(out.n_skills, 2);
    assert_string_equal(out.skills[0], "presales");
    assert_string_equal(out.skills[1], "support");
    assert_int_equal(out.cap, 3);
    assert_int_equal(out.iat, NOW - 10);
    assert_int_equal(out.exp, NOW + 3600);
    assert_string_equal(out.jti, "tok-1");
    free(tok);

    /* a customer token with no name, skills, cap, iat or jti: defaults */
    token_claims cu;
    memset(&cu, 0, sizeof(cu));
    cu.role = TOKEN_CUSTOMER;
    snprintf(cu.sub, sizeof(cu.sub), "c0ffee");
    cu.exp = NOW + 60;
    assert_int_equal(sign(&cu, &tok, &e), 0);
    assert_int_equal(verify(tok, NOW, &out, &e), 0);
    assert_int_equal(out.role, TOKEN_CUSTOMER);
    assert_int_equal(out.cap, 1);
    assert_int_equal(out.n_skills, 0);
    assert_int_equal(out.exp, NOW + 60);
    assert_string_equal(out.jti, "");
    assert_string_equal(out.name, "");
    free(tok);
    assert_string_equal(token_role_name(TOKEN_BRIDGE), "bridge");
}

static void test_wrong_secret(void **state) {
    (void)state;
    token_claims c = agent_claims(), out;
    char *tok = NULL;
    cg_err e;
    token_keyring other;
    assert_int_equal(token_keyring_init(&other, NULL, SECRET2, MAX_TTL, &e), 0);
    assert_int_equal(token_sign(&c, &other, &tok, &e), 0);
    expect_bad_msg(tok, "bad_token", "bad signature");
    /* an empty keyring verifies nothing (libjwt would accept alg none without a key) */
    token_keyring none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(token_verify(tok, &none, NOW, &out, &e), -1);
    assert_string_equal(e.code, "bad_token");
    free(tok);
}

static void test_tampered(void **state) {
    (void)state;
    token_claims c = agent_claims();
    char *tok = NULL;
    cg_err e;
    c.role = TOKEN_CUSTOMER;
    c.n_skills = 0;
    assert_int_equal(sign(&c, &tok, &e), 0);
    /* same header and signature, payload claiming to be an agent */
    char *forged = strdup(make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                                     "{\"role\":\"agent\",\"sub\":\"agent-7\"}", 0));
    char *sig = strrchr(tok, '.');
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s%s", forged, sig + 1);
    expect_bad(buf, "bad_token");
    /* one flipped character in the payload */
    strcpy(buf, tok);
    char *p = strchr(buf, '.') + 5;
    *p = *p == 'A' ? 'B' : 'A';
    expect_bad(buf, "bad_token");
    /* one flipped character in the signature */
    strcpy(buf, tok);
    p = strrchr(buf, '.') + 3;
    *p = *p == 'A' ? 'B' : 'A';
    expect_bad(buf, "bad_token");
    free(forged);
    free(tok);
}

static void test_alg_none(void **state) {
    (void)state;
    const char *payload = "{\"role\":\"agent\",\"sub\":\"mallory\",\"cap\":100" VALID "}";
    expect_bad(make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, 0), "bad_token");
    expect_bad(make_token("{\"alg\":\"none\"}", payload, 0), "bad_token");
    /* alg none with a valid HS256 signature appended is still refused */
    expect_bad(make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, 1), "bad_token");
    /* a hand-made, correctly signed HS256 token is accepted (the helper itself is right) */
    token_claims out;
    cg_err e;
    assert_int_equal(
        verify(make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, 1), NOW, &out, &e), 0);
    assert_int_equal(out.cap, 100);
}

static void test_other_alg(void **state) {
    (void)state;
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(
        jwt_set_alg(jwt, JWT_ALG_HS512, (const unsigned char *)SECRET, (int)SECRET_LEN), 0);
    assert_int_equal(jwt_add_grant(jwt, "role", "agent"), 0);
    assert_int_equal(jwt_add_grant(jwt, "sub", "agent-7"), 0);
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    assert_non_null(tok);
    expect_bad(tok, "bad_token");
    free(tok);
    /* HS384 header with an HS256 signature: signature matches, algorithm does not */
    expect_bad(
        make_token("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", "{\"role\":\"agent\",\"sub\":\"a\"}", 1),
        "bad_token");
}

static void test_expired(void **state) {
    (void)state;
    token_claims c = agent_claims(), out;
    char *tok = NULL;
    cg_err e;
    c.exp = NOW;
    assert_int_equal(sign(&c, &tok, &e), 0);
    expect_bad(tok, "expired_token");
    assert_int_equal(verify(tok, NOW - 1, &out, &e), 0);
    free(tok);
    /* exp present but 0 is expired too */
    expect_bad(make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                          "{\"role\":\"agent\",\"sub\":\"a\",\"exp\":0}", 1),
               "expired_token");
}

static void test_bad_claims(void **state) {
    (void)state;
    const char *h = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    const char *bad[] = {
        "{\"role\":\"agent\"}",                                 /* no sub */
        "{\"role\":\"agent\",\"sub\":\"\"}",                    /* empty sub */
        "{\"role\":\"agent\",\"sub\":42}",                      /* sub not a string */
        "{\"sub\":\"a\"}",                                      /* no role */
        "{\"role\":\"admin\",\"sub\":\"a\"}",                   /* unknown role */
        "{\"role\":\"agent\",\"sub\":\"a\",\"cap\":0}",         /* cap out of range */
        "{\"role\":\"agent\",\"sub\":\"a\",\"cap\":101}",       /* cap out of range */
        "{\"role\":\"agent\",\"sub\":\"a\",\"cap\":\"2\"}",     /* cap not a number */
        "{\"role\":\"agent\",\"sub\":\"a\",\"skills\":\"x\"}",  /* skills not an array */
        "{\"role\":\"agent\",\"sub\":\"a\",\"skills\":[1]}",    /* skill not a string */
        "{\"role\":\"agent\",\"sub\":\"a\",\"skills\":[\"\"]}", /* empty skill */
        "{\"role\":\"agent\",\"sub\":\"a\",\"exp\":\"soon\"}",  /* exp not a number */
        "{\"role\":\"agent\",\"sub\":\"a\\u0000b\"}",           /* NUL inside */
        "[1,2]",                                                /* not an object */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad(make_token(h, bad[i], 1), "bad_token");

    char p[1024];
    snprintf(p, sizeof(p), "{\"role\":\"agent\",\"sub\":\"%065d\"}", 0); /* sub of 65 */
    expect_bad(make_token(h, p, 1), "bad_token");
    snprintf(p, sizeof(p), "{\"role\":\"agent\",\"sub\":\"%064d\"" VALID "}", 0); /* 64: fine */
    token_claims out;
    cg_err e;
    assert_int_equal(verify(make_token(h, p, 1), NOW, &out, &e), 0);
    strcpy(p, "{\"role\":\"agent\",\"sub\":\"a\",\"skills\":[");
    for (int i = 0; i < 17; i++)
        strcat(p, i ? ",\"s\"" : "\"s\"");
    strcat(p, "]}");
    expect_bad(make_token(h, p, 1), "bad_token"); /* 17 skills */

    const char *malformed[] = {"", "abc", "a.b", "a.b.c.d", "..", "a..c", ".b.c"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        expect_bad(malformed[i], "bad_token");
}

static void test_sign_refuses(void **state) {
    (void)state;
    token_claims c = agent_claims();
    char *tok = (char *)1;
    cg_err e;
    c.sub[0] = '\0';
    assert_int_equal(sign(&c, &tok, &e), -1);
    assert_null(tok);
    c = agent_claims();
    c.cap = 101;
    assert_int_equal(sign(&c, &tok, &e), -1);
    c = agent_claims();
    c.n_skills = 17;
    assert_int_equal(sign(&c, &tok, &e), -1);
    c = agent_claims();
    token_keyring none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(token_sign(&c, &none, &tok, &e), -1);
    c.role = (token_role)9;
    assert_int_equal(sign(&c, &tok, &e), -1);
    c = agent_claims();
    snprintf(c.sub, sizeof(c.sub), "bad\xff");
    assert_int_equal(sign(&c, &tok, &e), -1);
}

static void test_exp_required_and_bounded(void **state) {
    (void)state;
    const char *h = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char p[512];
    /* no exp: refused, whatever the role */
    expect_bad_msg(make_token(h, "{\"role\":\"agent\",\"sub\":\"a\",\"jti\":\"j\"}", 1),
                   "bad_token", "'exp' is required");
    expect_bad_msg(make_token(h, "{\"role\":\"customer\",\"sub\":\"c\"}", 1), "bad_token",
                   "'exp' is required");
    /* exp further than max_ttl (+ 60 s of clock skew) from now */
    snprintf(p, sizeof(p), "{\"role\":\"customer\",\"sub\":\"c\",\"exp\":%d}", NOW + MAX_TTL + 61);
    expect_bad_msg(make_token(h, p, 1), "bad_token", "token_max_ttl");
    snprintf(p, sizeof(p), "{\"role\":\"customer\",\"sub\":\"c\",\"exp\":%d}", NOW + MAX_TTL);
    token_claims out;
    cg_err e;
    assert_int_equal(verify(make_token(h, p, 1), NOW, &out, &e), 0);
    /* exp - iat over max_ttl, even when the rest of its life is short */
    snprintf(p, sizeof(p), "{\"role\":\"customer\",\"sub\":\"c\",\"iat\":%d,\"exp\":%d}",
             NOW - MAX_TTL, NOW + 10);
    expect_bad_msg(make_token(h, p, 1), "bad_token", "token_max_ttl");
    /* iat in the future */
    snprintf(p, sizeof(p), "{\"role\":\"customer\",\"sub\":\"c\",\"iat\":%d,\"exp\":%d}", NOW + 600,
             NOW + 700);
    expect_bad_msg(make_token(h, p, 1), "bad_token", "'iat'");

    /* signing: exp required and within max_ttl of iat */
    token_claims c = agent_claims();
    char *tok = (char *)1;
    c.exp = 0;
    assert_int_equal(sign(&c, &tok, &e), -1);
    assert_null(tok);
    c = agent_claims();
    c.exp = c.iat + MAX_TTL + 1;
    assert_int_equal(sign(&c, &tok, &e), -1);
    assert_non_null(strstr(e.msg, "token_max_ttl"));
}

static void test_identifiers_and_names(void **state) {
    (void)state;
    const char *h = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    struct {
        const char *payload, *msg;
    } bad[] = {
        {"{\"role\":\"agent\",\"sub\":\"x:socks\"" VALID "}", "'sub'"},
        {"{\"role\":\"agent\",\"sub\":\"a b\"" VALID "}", "'sub'"},
        {"{\"role\":\"agent\",\"sub\":\"cg:agent:*\"" VALID "}", "'sub'"},
        {"{\"role\":\"customer\",\"sub\":\"\u00e9\"" VALID "}", "'sub'"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"skills\":[\"x:socks\"]" VALID "}", "skill"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"skills\":[\"FAQ\"]" VALID "}", "skill"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"skills\":[\"faq.en\"]" VALID "}", "skill"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"name\":\"evil\u202egnp\"" VALID "}",
         "bidirectional control U+202E"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"name\":\"two\\nlines\"" VALID "}",
         "control character U+000A"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"exp\":1800000060}", "'jti' is required"},
        {"{\"role\":\"bridge\",\"sub\":\"a\",\"exp\":1800000060}", "'jti' is required"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"exp\":1800000060,\"jti\":\"a/b\"}", "'jti'"},
        {"{\"role\":\"agent\",\"sub\":\"a\",\"exp\":1800000060,\"jti\":7}", "'jti'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad_msg(make_token(h, bad[i].payload, 1), "bad_token", bad[i].msg);
    /* what real ids look like passes */
    token_claims out;
    cg_err e;
    assert_int_equal(
        verify(make_token(h,
                          "{\"role\":\"agent\",\"sub\":\"alice.w@desk-1_x\",\"name\":\"Zo\u00eb "
                          "O'Brien\",\"skills\":[\"after_sales\",\"faq-2\"]" VALID "}",
                          1),
               NOW, &out, &e),
        0);
    assert_string_equal(out.skills[0], "after_sales");
    /* the signer refuses the same */
    token_claims c = agent_claims();
    char *tok = NULL;
    snprintf(c.sub, sizeof(c.sub), "x:socks");
    assert_int_equal(sign(&c, &tok, &e), -1);
    c = agent_claims();
    snprintf(c.skills[0], sizeof(c.skills[0]), "Pre Sales");
    assert_int_equal(sign(&c, &tok, &e), -1);
    c = agent_claims();
    c.jti[0] = '\0';
    assert_int_equal(sign(&c, &tok, &e), -1);
    assert_non_null(strstr(e.msg, "jti"));
}

/* The kid in a token's header, or "" when it has none. */
static const char *kid_of(const char *tok, char *out, size_t n) {
    jwt_t *jwt = NULL;
    out[0] = '\0';
    if (jwt_decode(&jwt, tok, NULL, 0) == 0 && jwt) {
        const char *k = jwt_get_header(jwt, "kid");
        if (k) snprintf(out, n, "%s", k);
    }
    jwt_free(jwt);
    return out;
}

static void test_kid_rotation(void **state) {
    (void)state;
    cg_err e;
    token_keyring old, both, next, no_legacy;
    /* before: one key k1 (and the legacy secret); during: k2 signs, k1 still verifies; after:
     * only k2 */
    assert_int_equal(token_keyring_init(&old, "k1:" SECRET2, SECRET, MAX_TTL, &e), 0);
    assert_int_equal(token_keyring_init(&both,
                                        " k2:rotated-secret-0123456789abcdefgh , k1:" SECRET2,
                                        SECRET, MAX_TTL, &e),
                     0);
    assert_int_equal(
        token_keyring_init(&next, "k2:rotated-secret-0123456789abcdefgh", NULL, MAX_TTL, &e), 0);
    assert_int_equal(token_keyring_init(&no_legacy, "k1:" SECRET2, "", MAX_TTL, &e), 0);
    assert_int_equal(both.n, 3);
    assert_string_equal(both.keys[0].kid, "k2");

    token_claims c = agent_claims(), out;
    char *t1 = NULL, *t2 = NULL, *t0 = NULL, kid[40];
    assert_int_equal(token_sign(&c, &old, &t1, &e), 0);
    assert_string_equal(kid_of(t1, kid, sizeof(kid)), "k1");
    assert_int_equal(token_sign(&c, &both, &t2, &e), 0);
    assert_string_equal(kid_of(t2, kid, sizeof(kid)), "k2");
    assert_int_equal(sign(&c, &t0, &e), 0); /* legacy: no kid */
    assert_string_equal(kid_of(t0, kid, sizeof(kid)), "");

    assert_int_equal(token_verify(t1, &both, NOW, &out, &e), 0);
    assert_int_equal(token_verify(t2, &both, NOW, &out, &e), 0);
    assert_int_equal(token_verify(t0, &both, NOW, &out, &e), 0);
    assert_int_equal(token_verify(t2, &next, NOW, &out, &e), 0);
    assert_int_equal(token_verify(t1, &next, NOW, &out, &e), -1);
    assert_non_null(strstr(e.msg, "unknown key id"));
    assert_int_equal(token_verify(t2, &old, NOW, &out, &e), -1);
    assert_non_null(strstr(e.msg, "unknown key id"));
    assert_int_equal(token_verify(t0, &no_legacy, NOW, &out, &e), -1);
    assert_non_null(strstr(e.msg, "jwt_secret"));
    free(t0);
    free(t1);
    free(t2);

    /* a header naming k1 over a payload signed with another key */
    const char *p = "{\"role\":\"agent\",\"sub\":\"a\"" VALID "}";
    char *forged = make_token_key("{\"alg\":\"HS256\",\"kid\":\"k1\"}", p, SECRET);
    assert_int_equal(token_verify(forged, &both, NOW, &out, &e), -1);
    assert_non_null(strstr(e.msg, "bad signature"));
    char *good = make_token_key("{\"alg\":\"HS256\",\"kid\":\"k1\"}", p, SECRET2);
    assert_int_equal(token_verify(good, &both, NOW, &out, &e), 0);
    /* a kid that is not a short string; a header that is not JSON */
    const char *bad_headers[] = {
        "{\"alg\":\"HS256\",\"kid\":1}",
        "{\"alg\":\"HS256\",\"kid\":\"0123456789012345678901234567890123\"}", "not json",
        "[\"HS256\"]"};
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        assert_int_equal(
            token_verify(make_token_key(bad_headers[i], p, SECRET2), &both, NOW, &out, &e), -1);
        assert_string_equal(e.code, "bad_token");
    }
    token_keyring_clear(&both);
    assert_int_equal(both.n, 0);
}

static void test_keyring_config_errors(void **state) {
    (void)state;
    token_keyring kr;
    cg_err e;
    struct {
        const char *secrets, *legacy, *msg;
    } bad[] = {
        {"", "", "no token secret"},
        {NULL, "short-secret", "jwt_secret must have"},
        {"k1", NULL, "entry 1 is not kid:secret"},
        {"k1:" SECRET2 ", k2:short", NULL, "the secret of kid 'k2'"},
        {"bad kid:" SECRET2, NULL, "entry 1: kid must be"},
        {":" SECRET2, NULL, "entry 1: kid must be"},
        {"k1:" SECRET2 ",k1:" SECRET, NULL, "kid 'k1' appears twice"},
        {"a:" SECRET ",b:" SECRET ",c:" SECRET ",d:" SECRET ",e:" SECRET ",f:" SECRET ",g:" SECRET
         ",h:" SECRET ",i:" SECRET,
         NULL, "at most 8 keys"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(token_keyring_init(&kr, bad[i].secrets, bad[i].legacy, MAX_TTL, &e), -1);
        assert_string_equal(e.code, "bad_config");
        if (!strstr(e.msg, bad[i].msg)) fail_msg("'%s' does not say '%s'", e.msg, bad[i].msg);
        assert_null(strstr(e.msg, "secret-0123")); /* never quotes a secret */
    }
    /* empty entries are skipped; only the legacy secret is enough */
    assert_int_equal(token_keyring_init(&kr, " , ", SECRET, MAX_TTL, &e), 0);
    assert_int_equal(kr.n, 1);
    assert_string_equal(kr.keys[0].kid, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_other_alg),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_bad_claims),
        cmocka_unit_test(test_sign_refuses),
        cmocka_unit_test(test_exp_required_and_bounded),
        cmocka_unit_test(test_identifiers_and_names),
        cmocka_unit_test(test_kid_rotation),
        cmocka_unit_test(test_keyring_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
