/* token.c -- see token.h.
 *
 * Verification is in three steps: the header alone is decoded (base64url, jansson) for its "kid",
 * which picks the key; then our own constant-time check of the HS256 signature over
 * "header.payload" (so an alg "none" token, a token signed with another algorithm or key, and a
 * forged one are refused before the payload is parsed, and the comparison does not depend on
 * libjwt's), then libjwt decodes with the key and we insist that it saw HS256. The claims are
 * then read from the payload JSON with strict types and checked: exp present and within max_ttl,
 * identifiers in their character sets, names free of control characters. Tokens and secrets are
 * never logged. */
#include "token.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util.h"

#define TOKEN_MAX_LEN 8192
#define TOKEN_SUB_MAX (TOKEN_STR_MAX - 1)
#define TOKEN_NAME_MAX 128
#define TOKEN_CAP_MAX 100

const char *token_role_name(token_role r) {
    switch (r) {
    case TOKEN_CUSTOMER:
        return "customer";
    case TOKEN_AGENT:
        return "agent";
    case TOKEN_BRIDGE:
        return "bridge";
    }
    return "?";
}

static int role_parse(const char *s, token_role *out) {
    for (int r = TOKEN_CUSTOMER; r <= TOKEN_BRIDGE; r++) {
        if (strcmp(s, token_role_name((token_role)r)) == 0) {
            *out = (token_role)r;
            return 0;
        }
    }
    return -1;
}

/* Checks the claims a token may carry; the same rules apply when signing and verifying. */
static int claims_check(const token_claims *c, cg_err *err) {
    if (c->role < TOKEN_CUSTOMER || c->role > TOKEN_BRIDGE)
        return cg_err_set(err, "bad_token", "unknown role");
    if (!cg_ident_ok(c->sub, TOKEN_SUB_MAX, TOKEN_SUB_CHARS, 0))
        return cg_err_set(err, "bad_token", "claim 'sub' must be 1 to %d letters, digits or '%s'",
                          TOKEN_SUB_MAX, TOKEN_SUB_CHARS);
    if (strnlen(c->name, sizeof(c->name)) > TOKEN_NAME_MAX)
        return cg_err_set(err, "bad_token", "claim 'name' is too long");
    char why[64];
    if (cg_name_check(c->name, why, sizeof(why)) < 0)
        return cg_err_set(err, "bad_token", "claim 'name' has a %s", why);
    if (c->n_skills < 0 || c->n_skills > TOKEN_SKILLS_MAX)
        return cg_err_set(err, "bad_token", "at most %d skills", TOKEN_SKILLS_MAX);
    for (int i = 0; i < c->n_skills; i++)
        if (!cg_ident_ok(c->skills[i], TOKEN_SUB_MAX, TOKEN_SKILL_CHARS, 1))
            return cg_err_set(err, "bad_token",
                              "each skill must be 1 to %d of a-z, 0-9 or '%s' (a queue name)",
                              TOKEN_SUB_MAX, TOKEN_SKILL_CHARS);
    if (c->cap < 1 || c->cap > TOKEN_CAP_MAX)
        return cg_err_set(err, "bad_token", "claim 'cap' must be 1 to %d", TOKEN_CAP_MAX);
    if (c->jti[0] && !cg_ident_ok(c->jti, TOKEN_SUB_MAX, TOKEN_SUB_CHARS, 0))
        return cg_err_set(err, "bad_token", "claim 'jti' must be 1 to %d letters, digits or '%s'",
                          TOKEN_SUB_MAX, TOKEN_SUB_CHARS);
    if (!c->jti[0] && c->role != TOKEN_CUSTOMER)
        return cg_err_set(err, "bad_token", "claim 'jti' is required in %s tokens",
                          token_role_name(c->role));
    return 0;
}

/* exp against now and the keyring's max_ttl (iat, when set, too). */
static int claims_check_time(const token_claims *c, int64_t max_ttl, int64_t now_s, cg_err *err) {
    if (c->exp <= now_s) return cg_err_set(err, "expired_token", "token expired");
    if (c->exp - now_s > max_ttl + TOKEN_SKEW_S || (c->iat && c->exp - c->iat > max_ttl))
        return cg_err_set(err, "bad_token",
                          "token lifetime over token_max_ttl (%lld s): mint a shorter one",
                          (long long)max_ttl);
    if (c->iat > now_s + TOKEN_SKEW_S)
        return cg_err_set(err, "bad_token", "claim 'iat' is in the future");
    return 0;
}

/* ---- keys ---- */

/* One "kid:secret" entry (p, len; spaces trimmed) into k. */
static int key_parse(const char *p, size_t len, token_key *k, int idx, cg_err *err) {
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return cg_err_set(err, "bad_config", "jwt_secrets: entry %d is not kid:secret", idx);
    size_t kl = (size_t)(colon - p), sl = len - kl - 1;
    k->kid[0] = '\0';
    if (kl <= TOKEN_KID_MAX) {
        memcpy(k->kid, p, kl);
        k->kid[kl] = '\0';
    }
    if (!cg_ident_ok(k->kid, TOKEN_KID_MAX, "_.-", 0))
        return cg_err_set(err, "bad_config",
                          "jwt_secrets: entry %d: kid must be 1 to %d letters, digits, '_', '.' "
                          "or '-'",
                          idx, TOKEN_KID_MAX);
    if (sl < TOKEN_SECRET_MIN || sl > TOKEN_SECRET_MAX)
        return cg_err_set(err, "bad_config",
                          "jwt_secrets: the secret of kid '%s' must have %d to %d bytes", k->kid,
                          TOKEN_SECRET_MIN, TOKEN_SECRET_MAX);
    memcpy(k->secret, colon + 1, sl);
    k->secret[sl] = '\0';
    k->len = sl;
    return 0;
}

static const token_key *key_find(const token_keyring *kr, const char *kid) {
    for (int i = 0; i < kr->n; i++)
        if (!strcmp(kr->keys[i].kid, kid)) return &kr->keys[i];
    return NULL;
}

int token_keyring_init(token_keyring *kr, const char *secrets, const char *legacy, int64_t max_ttl,
                       cg_err *err) {
    memset(kr, 0, sizeof(*kr));
    kr->max_ttl = max_ttl;
    int idx = 0;
    for (const char *p = secrets ? secrets : ""; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        idx++;
        if (len) {
            if (kr->n == TOKEN_KEYS_MAX)
                return cg_err_set(err, "bad_config", "jwt_secrets: at most %d keys",
                                  TOKEN_KEYS_MAX);
            token_key *k = &kr->keys[kr->n];
            if (key_parse(p, len, k, idx, err) < 0) return -1;
            if (key_find(kr, k->kid))
                return cg_err_set(err, "bad_config", "jwt_secrets: kid '%s' appears twice", k->kid);
            kr->n++;
        }
        if (!e) break;
        p = e + 1;
    }
    size_t ll = legacy ? strlen(legacy) : 0;
    if (ll && (ll < TOKEN_SECRET_MIN || ll > TOKEN_SECRET_MAX))
        return cg_err_set(err, "bad_config", "jwt_secret must have %d to %d bytes",
                          TOKEN_SECRET_MIN, TOKEN_SECRET_MAX);
    if (ll) {
        memcpy(kr->keys[kr->n].secret, legacy, ll + 1);
        kr->keys[kr->n++].len = ll;
    }
    if (!kr->n)
        return cg_err_set(err, "bad_config",
                          "no token secret: set jwt_secret or jwt_secrets (CHATGW_JWT_SECRET)");
    if (max_ttl < 1) return cg_err_set(err, "bad_config", "token_max_ttl must be positive");
    return 0;
}

void token_keyring_clear(token_keyring *kr) {
    OPENSSL_cleanse(kr, sizeof(*kr));
}

/* The payload as a jansson object (new reference, caller decrefs), or NULL when a string is not
 * valid UTF-8 (or on OOM). */
static json_t *claims_json(const token_claims *c) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "role", json_string(token_role_name(c->role)));
    bad |= json_object_set_new(o, "sub", json_string(c->sub));
    if (c->name[0]) bad |= json_object_set_new(o, "name", json_string(c->name));
    if (c->n_skills > 0) {
        json_t *skills = json_array();
        for (int i = 0; i < c->n_skills; i++)
            bad |= json_array_append_new(skills, json_string(c->skills[i]));
        bad |= json_object_set_new(o, "skills", skills);
    }
    bad |= json_object_set_new(o, "cap", json_integer(c->cap));
    if (c->iat) bad |= json_object_set_new(o, "iat", json_integer(c->iat));
    if (c->exp) bad |= json_object_set_new(o, "exp", json_integer(c->exp));
    if (c->jti[0]) bad |= json_object_set_new(o, "jti", json_string(c->jti));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int token_sign(const token_claims *c, const token_keyring *kr, char **out, cg_err *err) {
    *out = NULL;
    if (!kr || kr->n < 1) return cg_err_set(err, "internal", "no signing key");
    const token_key *k = &kr->keys[0];
    token_claims cc = *c;
    if (cc.cap == 0) cc.cap = 1;
    if (claims_check(&cc, err) != 0) return -1;
    if (!cc.exp) return cg_err_set(err, "bad_token", "claim 'exp' is required");
    /* The lifetime as of iat (the signer's "now"); without iat only exp's presence is checked. */
    if (claims_check_time(&cc, kr->max_ttl, cc.iat ? cc.iat : cc.exp - 1, err) != 0) return -1;

    json_t *o = claims_json(&cc);
    if (!o) return cg_err_set(err, "bad_token", "claims must be valid UTF-8");
    char *payload = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    jwt_t *jwt = NULL;
    if (payload && jwt_new(&jwt) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)k->secret, (int)k->len) == 0 &&
        (!k->kid[0] || jwt_add_header(jwt, "kid", k->kid) == 0) &&
        jwt_add_grants_json(jwt, payload) == 0)
        *out = jwt_encode_str(jwt);
    free(payload);
    jwt_free(jwt);
    if (!*out) return cg_err_set(err, "internal", "cannot sign token");
    return 0;
}

/* 1 when sig (length sl) is the base64url HS256 signature of data (length dl) under secret. */
static int hs256_ok(const char *data, size_t dl, const char *sig, size_t sl, const char *secret,
                    size_t secret_len) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    unsigned char b64[((EVP_MAX_MD_SIZE + 2) / 3) * 4 + 1];

    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, dl, mac, &ml))
        return 0;
    int n = EVP_EncodeBlock(b64, mac, (int)ml);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++) {
        if (b64[i] == '+')
            b64[i] = '-';
        else if (b64[i] == '/')
            b64[i] = '_';
    }
    int ok = cg_ct_equal(b64, (size_t)n, sig, sl);
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

/* Copies a string claim of 1..max bytes (0..max when optional and absent). */
static int get_str(json_t *o, const char *key, char *dst, size_t max, int required, cg_err *err) {
    json_t *v = json_object_get(o, key);
    dst[0] = '\0';
    if (!v && !required) return 0;
    if (!json_is_string(v))
        return cg_err_set(err, "bad_token", "claim '%s' is missing or not a string", key);
    size_t l = json_string_length(v);
    if (l > max || (required && l == 0) || strlen(json_string_value(v)) != l)
        return cg_err_set(err, "bad_token", "claim '%s' has a bad length", key);
    memcpy(dst, json_string_value(v), l + 1);
    return 0;
}

/* Optional integer claim within [min,max]; *out keeps def when absent. Returns 1 when present,
 * 0 when absent, -1 with err when invalid. */
static int get_int(json_t *o, const char *key, int64_t min, int64_t max, int64_t def, int64_t *out,
                   cg_err *err) {
    json_t *v = json_object_get(o, key);
    *out = def;
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return cg_err_set(err, "bad_token", "claim '%s' is not a valid number", key);
    *out = json_integer_value(v);
    return 1;
}

/* Fills out from the payload; *has_exp tells whether "exp" was present. */
static int claims_parse(json_t *o, token_claims *out, int *has_exp, cg_err *err) {
    char role[16];
    int64_t cap;
    if (!json_is_object(o)) return cg_err_set(err, "bad_token", "payload is not an object");
    if (get_str(o, "role", role, sizeof(role) - 1, 1, err) != 0) return -1;
    if (role_parse(role, &out->role) != 0) return cg_err_set(err, "bad_token", "unknown role");
    if (get_str(o, "sub", out->sub, TOKEN_SUB_MAX, 1, err) != 0) return -1;
    if (get_str(o, "name", out->name, TOKEN_NAME_MAX, 0, err) != 0) return -1;
    if (get_int(o, "cap", 1, TOKEN_CAP_MAX, 1, &cap, err) < 0) return -1;
    out->cap = (int)cap;
    if (get_int(o, "iat", 0, INT64_MAX, 0, &out->iat, err) < 0) return -1;
    *has_exp = get_int(o, "exp", INT64_MIN, INT64_MAX, 0, &out->exp, err);
    if (*has_exp < 0) return -1;
    if (get_str(o, "jti", out->jti, TOKEN_SUB_MAX, 0, err) != 0) return -1;

    json_t *skills = json_object_get(o, "skills");
    if (!skills) return 0;
    if (!json_is_array(skills) || json_array_size(skills) > TOKEN_SKILLS_MAX)
        return cg_err_set(err, "bad_token", "claim 'skills' must be an array of at most %d",
                          TOKEN_SKILLS_MAX);
    size_t i;
    json_t *v;
    json_array_foreach(skills, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > TOKEN_SUB_MAX ||
            strlen(json_string_value(v)) != json_string_length(v))
            return cg_err_set(err, "bad_token", "claim 'skills' has a bad entry");
        memcpy(out->skills[i], json_string_value(v), json_string_length(v) + 1);
        out->n_skills++;
    }
    return 0;
}

/* The header's "kid" into kid (size n; "" when absent): the header segment (hdr, hl bytes of
 * base64url) decoded and parsed with jansson. -1 with err when it is not a JSON object or kid
 * is not a short string. */
static int header_kid(const char *hdr, size_t hl, char *kid, size_t n, cg_err *err) {
    char b64[1028];
    unsigned char raw[sizeof(b64)];
    if (hl == 0 || hl > sizeof(b64) - 4 || hl % 4 == 1)
        return cg_err_set(err, "bad_token", "malformed token header");
    size_t bl = 0;
    for (size_t i = 0; i < hl; i++)
        b64[bl++] = hdr[i] == '-' ? '+' : hdr[i] == '_' ? '/' : hdr[i];
    while (bl % 4)
        b64[bl++] = '=';
    int rl = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)bl);
    if (rl < 0) return cg_err_set(err, "bad_token", "malformed token header");
    rl -= (int)(bl - hl); /* the padding we added decoded to zero bytes */
    json_t *h = json_loadb((const char *)raw, (size_t)rl, JSON_REJECT_DUPLICATES, NULL);
    kid[0] = '\0';
    int rv = 0;
    json_t *v = h ? json_object_get(h, "kid") : NULL;
    if (!json_is_object(h))
        rv = cg_err_set(err, "bad_token", "malformed token header");
    else if (v && (!json_is_string(v) || json_string_length(v) >= n ||
                   strlen(json_string_value(v)) != json_string_length(v)))
        rv = cg_err_set(err, "bad_token", "header 'kid' is not a short string");
    else if (v)
        memcpy(kid, json_string_value(v), json_string_length(v) + 1);
    json_decref(h);
    return rv;
}

int token_verify(const char *tok, const token_keyring *kr, int64_t now_s, token_claims *out,
                 cg_err *err) {
    memset(out, 0, sizeof(*out));
    if (!kr || kr->n < 1) return cg_err_set(err, "bad_token", "tokens cannot be verified (no key)");
    if (!tok) return cg_err_set(err, "bad_token", "missing token");
    size_t len = strnlen(tok, TOKEN_MAX_LEN + 1);
    if (len > TOKEN_MAX_LEN) return cg_err_set(err, "bad_token", "token too long");

    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || d1 == tok || d2 == d1 + 1 ||
        memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return cg_err_set(err, "bad_token", "malformed token");
    char kid[TOKEN_KID_MAX + 1];
    if (header_kid(tok, (size_t)(d1 - tok), kid, sizeof(kid), err) < 0) return -1;
    const token_key *k = key_find(kr, kid);
    if (!k && kid[0]) return cg_err_set(err, "bad_token", "unknown key id (kid)");
    if (!k)
        return cg_err_set(err, "bad_token", "token has no key id (kid) and jwt_secret is unset");
    if (!hs256_ok(tok, (size_t)(d2 - tok), d2 + 1, len - (size_t)(d2 + 1 - tok), k->secret, k->len))
        return cg_err_set(err, "bad_token", "bad signature");

    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, tok, (const unsigned char *)k->secret, (int)k->len) != 0 || !jwt)
        return cg_err_set(err, "bad_token", "malformed token");
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        jwt_free(jwt);
        return cg_err_set(err, "bad_token", "algorithm not allowed");
    }
    char *grants = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    json_t *o = grants ? json_loads(grants, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(grants);
    if (!o) return cg_err_set(err, "bad_token", "malformed payload");

    int has_exp = 0;
    int rv = claims_parse(o, out, &has_exp, err);
    json_decref(o);
    if (rv == 0 && !has_exp) rv = cg_err_set(err, "bad_token", "claim 'exp' is required");
    if (rv == 0) rv = claims_check_time(out, kr->max_ttl, now_s, err);
    if (rv == 0) rv = claims_check(out, err);
    if (rv != 0) memset(out, 0, sizeof(*out));
    return rv;
}
