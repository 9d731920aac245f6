/* token.h -- signed session tokens (JWT, HS256, libjwt).
 *
 * Agents present a token issued by the desk (tools/chatgw-token); customers get one from the
 * gateway on first connect. Only HS256 is accepted; "none" and every other algorithm are refused.
 * Tokens are secrets: never log them. */
#ifndef CG_TOKEN_H
#define CG_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TOKEN_SKILLS_MAX 16
#define TOKEN_STR_MAX 65

typedef enum token_role { TOKEN_CUSTOMER = 1, TOKEN_AGENT, TOKEN_BRIDGE } token_role;

typedef struct token_claims {
    token_role role;         /* claim "role": "customer" | "agent" | "bridge" */
    char sub[TOKEN_STR_MAX]; /* customer id / agent id / bridge name */
    char name[129];          /* display name (optional) */
    char skills[TOKEN_SKILLS_MAX][TOKEN_STR_MAX]; /* agents: queue names */
    int n_skills;
    int cap;          /* agents: max concurrent conversations (default 1) */
    int64_t iat, exp; /* unix seconds; exp 0 = no expiry */
} token_claims;

/* Sign claims with secret; *out is a malloc'd NUL-terminated token the caller frees.
 * -1 with err on failure. */
int token_sign(const token_claims *c, const char *secret, size_t secret_len, char **out,
               cg_err *err);

/* Verify tok (signature with HS256 only, then exp against now_s) and fill out.
 * Errors: "bad_token" (malformed, wrong algorithm, bad signature, missing claims),
 * "expired_token". */
int token_verify(const char *tok, const char *secret, size_t secret_len, int64_t now_s,
                 token_claims *out, cg_err *err);

const char *token_role_name(token_role r);

#endif
