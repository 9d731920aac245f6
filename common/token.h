/* token.h -- signed session tokens (JWT, HS256, libjwt).
 *
 * Agents present a token issued by the desk (tools/chatgw-token); customers get one from the
 * gateway on first connect. Only HS256 is accepted; "none" and every other algorithm are refused.
 * Every token expires ("exp" is required) at most max_ttl seconds ahead. Keys rotate: a keyring
 * holds several secrets named by "kid" (the token header says which one signed it) and the
 * legacy jwt_secret for tokens without a "kid". Agent and bridge tokens carry a "jti", the id a
 * revocation names (the gateway checks cg:revoked:<jti> at hello). Identifiers are restricted to
 * what Redis keys, logs and the router accept (TOKEN_SUB_CHARS, TOKEN_SKILL_CHARS); display
 * names may not hold control or bidi characters. Tokens are secrets: never log them. */
#ifndef CG_TOKEN_H
#define CG_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TOKEN_SKILLS_MAX 16
#define TOKEN_STR_MAX 65
#define TOKEN_KEYS_MAX 8
#define TOKEN_KID_MAX 32
#define TOKEN_SECRET_MIN 32
#define TOKEN_SECRET_MAX 1024
#define TOKEN_SKEW_S 60 /* clock difference allowed between the signer and the verifier */
/* Besides letters and digits: sub (agent ids, customer ids, bridge names) and jti; skills are
 * queue names: lower-case letters, digits and these. */
#define TOKEN_SUB_CHARS "_.@-"
#define TOKEN_SKILL_CHARS "_-"

typedef enum token_role { TOKEN_CUSTOMER = 1, TOKEN_AGENT, TOKEN_BRIDGE } token_role;

typedef struct token_claims {
    token_role role;         /* claim "role": "customer" | "agent" | "bridge" */
    char sub[TOKEN_STR_MAX]; /* customer id / agent id / bridge name */
    char name[129];          /* display name (optional) */
    char skills[TOKEN_SKILLS_MAX][TOKEN_STR_MAX]; /* agents: queue names */
    int n_skills;
    int cap;                 /* agents: max concurrent conversations (default 1) */
    int64_t iat, exp;        /* unix seconds; exp required */
    char jti[TOKEN_STR_MAX]; /* token id (revocation); required for agents and bridges */
} token_claims;

/* One HS256 secret; kid "" is the legacy key, for tokens whose header has no "kid". */
typedef struct token_key {
    char kid[TOKEN_KID_MAX + 1];
    char secret[TOKEN_SECRET_MAX + 1];
    size_t len;
} token_key;

/* The secrets a process signs and verifies with: keys[0] signs. */
typedef struct token_keyring {
    token_key keys[TOKEN_KEYS_MAX + 1];
    int n;
    int64_t max_ttl; /* seconds: exp at most this far after iat and after now */
} token_keyring;

/* Fill kr from secrets ("kid1:secret1, kid2:secret2": kids of 1-32 letters, digits, '_', '.',
 * '-'; secrets of 32-1024 bytes without ',' or spaces at either end; may be NULL or empty) and
 * legacy (jwt_secret, at least 32 bytes; may be NULL or empty). The first of secrets signs, else
 * legacy. -1 with err "bad_config" naming the problem (never quoting a secret), also when both
 * are empty. */
int token_keyring_init(token_keyring *kr, const char *secrets, const char *legacy, int64_t max_ttl,
                       cg_err *err);
/* Wipe the secrets. */
void token_keyring_clear(token_keyring *kr);

/* Sign claims with kr's signing key (its kid in the header when it has one); *out is a malloc'd
 * NUL-terminated token the caller frees. The claims must pass the checks token_verify makes
 * (exp set and within max_ttl of iat). -1 with err on failure. */
int token_sign(const token_claims *c, const token_keyring *kr, char **out, cg_err *err);

/* Verify tok: the key its "kid" names (none: the legacy key), the HS256 signature, then the
 * claims; fill out. Errors: "bad_token" (malformed, wrong algorithm, unknown kid, bad
 * signature, missing or invalid claims, no exp, lifetime over max_ttl), "expired_token". The
 * message names the problem. */
int token_verify(const char *tok, const token_keyring *kr, int64_t now_s, token_claims *out,
                 cg_err *err);

const char *token_role_name(token_role r);

#endif
