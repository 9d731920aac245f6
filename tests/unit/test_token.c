/* test_token.c -- HS256 round trip, and every way a token must be refused: wrong secret,
 * tampering, alg "none", another algorithm, expiry, missing or bad claims. */
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
#define NOW 1800000000

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

/* header.payload.signature with an HS256 signature under SECRET (sign=1) or an empty one. */
static char *make_token(const char *header, const char *payload, int sign) {
    static char tok[4096];
    char h[1024], p[2048];
    b64url(header, strlen(header), h);
    b64url(payload, strlen(payload), p);
    snprintf(tok, sizeof(tok), "%s.%s.", h, p);
    if (sign) {
        unsigned char mac[32];
        unsigned int ml;
        HMAC(EVP_sha256(), SECRET, (int)SECRET_LEN, (unsigned char *)tok, strlen(tok) - 1, mac,
             &ml);
        b64url(mac, ml, tok + strlen(tok));
    }
    return tok;
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
    return c;
}

static void expect_bad(const char *tok, const char *code) {
    token_claims out;
    cg_err e = {{0}, {0}};
    assert_int_equal(token_verify(tok, SECRET, SECRET_LEN, NOW, &out, &e), -1);
    assert_string_equal(e.code, code);
    assert_int_equal(out.role, 0);
    assert_string_equal(out.sub, "");
}

static void test_round_trip(void **state) {
    (void)state;
    token_claims c = agent_claims(), out;
    char *tok = NULL;
    cg_err e;
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), 0);
    assert_non_null(tok);
    assert_int_equal(token_verify(tok, SECRET, SECRET_LEN, NOW, &out, &e), 0);
    assert_int_equal(out.role, TOKEN_AGENT);
    assert_string_equal(out.sub, "agent-7");
    assert_string_equal(out.name, "Zoë 张");
    assert_int_equal(out.n_skills, 2);
    assert_string_equal(out.skills[0], "presales");
    assert_string_equal(out.skills[1], "support");
    assert_int_equal(out.cap, 3);
    assert_int_equal(out.iat, NOW - 10);
    assert_int_equal(out.exp, NOW + 3600);
    free(tok);

    /* a customer token with no name, skills, cap or exp: defaults */
    token_claims cu;
    memset(&cu, 0, sizeof(cu));
    cu.role = TOKEN_CUSTOMER;
    snprintf(cu.sub, sizeof(cu.sub), "c0ffee");
    assert_int_equal(token_sign(&cu, SECRET, SECRET_LEN, &tok, &e), 0);
    assert_int_equal(token_verify(tok, SECRET, SECRET_LEN, NOW, &out, &e), 0);
    assert_int_equal(out.role, TOKEN_CUSTOMER);
    assert_int_equal(out.cap, 1);
    assert_int_equal(out.n_skills, 0);
    assert_int_equal(out.exp, 0);
    assert_string_equal(out.name, "");
    free(tok);
    assert_string_equal(token_role_name(TOKEN_BRIDGE), "bridge");
}

static void test_wrong_secret(void **state) {
    (void)state;
    token_claims c = agent_claims(), out;
    char *tok = NULL;
    cg_err e;
    assert_int_equal(token_sign(&c, "other-secret", 12, &tok, &e), 0);
    expect_bad(tok, "bad_token");
    /* an empty secret verifies nothing (libjwt would accept alg none without a key) */
    assert_int_equal(token_verify(tok, "", 0, NOW, &out, &e), -1);
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
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), 0);
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
    const char *payload = "{\"role\":\"agent\",\"sub\":\"mallory\",\"cap\":100}";
    expect_bad(make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, 0), "bad_token");
    expect_bad(make_token("{\"alg\":\"none\"}", payload, 0), "bad_token");
    /* alg none with a valid HS256 signature appended is still refused */
    expect_bad(make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, 1), "bad_token");
    /* a hand-made, correctly signed HS256 token is accepted (the helper itself is right) */
    token_claims out;
    cg_err e;
    assert_int_equal(token_verify(make_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, 1),
                                  SECRET, SECRET_LEN, NOW, &out, &e),
                     0);
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
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), 0);
    expect_bad(tok, "expired_token");
    assert_int_equal(token_verify(tok, SECRET, SECRET_LEN, NOW - 1, &out, &e), 0);
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
    snprintf(p, sizeof(p), "{\"role\":\"agent\",\"sub\":\"%064d\"}", 0); /* sub of 64: fine */
    token_claims out;
    cg_err e;
    assert_int_equal(token_verify(make_token(h, p, 1), SECRET, SECRET_LEN, NOW, &out, &e), 0);
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
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), -1);
    assert_null(tok);
    c = agent_claims();
    c.cap = 101;
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), -1);
    c = agent_claims();
    c.n_skills = 17;
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), -1);
    c = agent_claims();
    assert_int_equal(token_sign(&c, "", 0, &tok, &e), -1);
    c.role = (token_role)9;
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), -1);
    c = agent_claims();
    snprintf(c.sub, sizeof(c.sub), "bad\xff");
    assert_int_equal(token_sign(&c, SECRET, SECRET_LEN, &tok, &e), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_tampered),   cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_other_alg),  cmocka_unit_test(test_expired),
        cmocka_unit_test(test_bad_claims), cmocka_unit_test(test_sign_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
