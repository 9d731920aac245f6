/* chatgw-token -- mint a signed agent token for the desk, or revoke one; mint a bridge token.
 *
 *   CHATGW_JWT_SECRET=... chatgw-token --agent alice --name "Alice" --skills general,faq --cap 3
 *   CHATGW_REDIS_URL=... chatgw-token --revoke <jti>
 *   chatgw-token --bridge wx-1
 *
 * Bridges authenticate with the gateways' shared bridge_token (docs/protocol.md, Bridges), not
 * with a JWT: --bridge prints a new random one (256 bits, hex) to configure as bridge_token
 * (CHATGW_BRIDGE_TOKEN) on every gateway and in the bridge; it needs no secret and does not
 * expire (rotate it by changing bridge_token).
 *
 * Prints the token on stdout and its id ("jti") and expiry on stderr: the jti is what --revoke
 * takes. Every token expires (--ttl, at most token_max_ttl). The secrets come from the
 * environment (CHATGW_JWT_SECRETS "kid:secret, ...", whose first key signs unless --kid names
 * another, else CHATGW_JWT_SECRET) or --secret-file, never from the command line (it would show
 * in ps). --revoke writes cg:revoked:<jti> to Redis for token_max_ttl seconds, longer than any
 * token with that jti can live; the gateways refuse the token at its next hello. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "../common/rblock.h"
#include "desk_schema.h"
#include "../common/token.h"
#include "../common/util.h"

#define TOKEN_TTL_DEFAULT 86400
#define TOKEN_MAX_TTL_DEFAULT 2592000 /* the gateway's token_max_ttl default */

static int usage(int rc) {
    fprintf(rc ? stderr : stdout,
            "usage: chatgw-token --agent ID [--name NAME] [--skills a,b]\n"
            "                    [--cap N] [--ttl SECONDS] [--kid KID] [--secret-file FILE]\n"
            "       chatgw-token --revoke JTI [--redis URL]\n"
            "       chatgw-token --bridge NAME   (a new random bridge_token for the gateways)\n"
            "Secrets: CHATGW_JWT_SECRETS (kid:secret, ...; the first signs, or --kid) or\n"
            "CHATGW_JWT_SECRET or --secret-file. --ttl: 1 to token_max_ttl (CHATGW_TOKEN_MAX_TTL,\n"
            "default %d) seconds, default %d. Redis: --redis, else CHATGW_REDIS_URL.\n",
            TOKEN_MAX_TTL_DEFAULT, TOKEN_TTL_DEFAULT);
    return rc;
}

static int read_secret(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t k = fread(out, 1, n - 1, f);
    fclose(f);
    out[k] = 0;
    while (k && (out[k - 1] == '\n' || out[k - 1] == '\r'))
        out[--k] = 0;
    return 0;
}

/* --bridge NAME: print a new random bridge token (32 bytes as 64 hex digits) on stdout and, on
 * stderr, where it goes. NAME is the bridge's sender_name ([A-Za-z0-9._:@+=/-], 1-47 bytes, as
 * the gateway takes it). Exit status. */
static int token_bridge(const char *name) {
    size_t n = strlen(name);
    if (!n || n > 47 ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789._:@+=/-") != n) {
        fprintf(stderr, "chatgw-token: --bridge: a bridge name is 1 to 47 of A-Z a-z 0-9 and "
                        "'._:@+=/-' (its hello's sender_name)\n");
        return 2;
    }
    unsigned char b[32];
    if (RAND_bytes(b, sizeof(b)) != 1) return fprintf(stderr, "chatgw-token: no randomness\n"), 1;
    for (size_t i = 0; i < sizeof(b); i++)
        printf("%02x", b[i]);
    printf("\n");
    OPENSSL_cleanse(b, sizeof(b));
    fprintf(stderr,
            "chatgw-token: a new bridge token: set bridge_token (CHATGW_BRIDGE_TOKEN) on every "
            "gateway to it; bridge %s sends it in its hello with \"sender_name\":\"%s\". It does "
            "not expire: rotate it by changing bridge_token.\n",
            name, name);
    return 0;
}

/* A synchronous connection to url, authenticated and on its db; NULL after a message. */
static redisContext *token_redis(const char *url) {
    cg_err err;
    redisContext *c = rblock_connect(url, 0, &err);
    if (!c) fprintf(stderr, "chatgw-token: %s\n", err.msg);
    return c;
}

/* --revoke: SET cg:revoked:<jti> 1 EX <max_ttl>. Exit status. */
static int token_revoke(const char *jti, const char *url, long long max_ttl) {
    if (!cg_ident_ok(jti, TOKEN_STR_MAX - 1, TOKEN_SUB_CHARS, 0)) {
        fprintf(stderr, "chatgw-token: --revoke: a jti is 1 to %d letters, digits or '%s'\n",
                TOKEN_STR_MAX - 1, TOKEN_SUB_CHARS);
        return 2;
    }
    redisContext *c = token_redis(url);
    if (!c) return 1;
    redisReply *r = redisCommand(c, "SET " CG_KEY_REVOKED " 1 EX %lld", jti, max_ttl);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok)
        fprintf(stderr, "chatgw-token: revoking failed: %s\n", r && r->str ? r->str : c->errstr);
    else
        fprintf(stderr, "chatgw-token: revoked %s (for %lld s)\n", jti, max_ttl);
    if (r) freeReplyObject(r);
    rblock_free(c);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    token_claims c;
    memset(&c, 0, sizeof(c));
    c.cap = 1;
    long long ttl = TOKEN_TTL_DEFAULT, max_ttl = TOKEN_MAX_TTL_DEFAULT;
    char secret[TOKEN_SECRET_MAX + 2] = "";
    const char *env = getenv("CHATGW_JWT_SECRET"), *secrets = getenv("CHATGW_JWT_SECRETS");
    const char *kid = NULL, *revoke = NULL, *redis_url = getenv("CHATGW_REDIS_URL");
    const char *env_max = getenv("CHATGW_TOKEN_MAX_TTL"), *bridge = NULL;
    int agent_opts = 0; /* --name, --skills, --cap, --ttl, --kid, --secret-file given */
    if (env) cg_strlcpy(secret, env, sizeof(secret));
    if (env_max && cg_parse_ll(env_max, 60, 315360000, &max_ttl) < 0)
        return fprintf(stderr, "chatgw-token: CHATGW_TOKEN_MAX_TTL: 60..315360000\n"), 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) return usage(0);
        if (!v) return usage(2);
        i++;
        if (!strcmp(a, "--agent")) {
            c.role = TOKEN_AGENT;
            cg_strlcpy(c.sub, v, sizeof(c.sub));
        } else if (!strcmp(a, "--bridge")) {
            bridge = v;
        } else if (!strcmp(a, "--name")) {
            agent_opts++;
            cg_strlcpy(c.name, v, sizeof(c.name));
        } else if (!strcmp(a, "--skills")) {
            agent_opts++;
            char buf[1024];
            cg_strlcpy(buf, v, sizeof(buf));
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                if (c.n_skills == TOKEN_SKILLS_MAX)
                    return fprintf(stderr, "--skills: at most %d\n", TOKEN_SKILLS_MAX), 2;
                cg_strlcpy(c.skills[c.n_skills++], t, TOKEN_STR_MAX);
            }
        } else if (!strcmp(a, "--cap")) {
            agent_opts++;
            long long n;
            if (cg_parse_ll(v, 1, 100, &n) < 0) return fprintf(stderr, "--cap: 1..100\n"), 2;
            c.cap = (int)n;
        } else if (!strcmp(a, "--ttl")) {
            agent_opts++;
            if (cg_parse_ll(v, 1, 315360000, &ttl) < 0)
                return fprintf(stderr, "--ttl: seconds, at least 1\n"), 2;
        } else if (!strcmp(a, "--kid")) {
            agent_opts++;
            kid = v;
        } else if (!strcmp(a, "--secret-file")) {
            agent_opts++;
            if (read_secret(v, secret, sizeof(secret)) < 0)
                return fprintf(stderr, "cannot read %s\n", v), 2;
        } else if (!strcmp(a, "--revoke")) {
            revoke = v;
        } else if (!strcmp(a, "--redis")) {
            redis_url = v;
        } else
            return usage(2);
    }
    if (bridge) {
        if (c.role || revoke || agent_opts)
            return fprintf(stderr, "chatgw-token: --bridge takes no other option: a bridge token "
                                   "is the gateways' bridge_token, with no name, skills, cap, "
                                   "expiry or signing key\n"),
                   2;
        return token_bridge(bridge);
    }
    if (revoke)
        return token_revoke(revoke, redis_url ? redis_url : "redis://127.0.0.1:6379", max_ttl);
    if (!c.role || !c.sub[0]) return usage(2);
    if (ttl > max_ttl)
        return fprintf(stderr, "chatgw-token: --ttl %lld is over token_max_ttl (%lld s)\n", ttl,
                       max_ttl),
               2;
    token_keyring kr;
    cg_err err;
    if (token_keyring_init(&kr, secrets, secret, max_ttl, &err) < 0) {
        fprintf(stderr, "chatgw-token: %s\n", err.msg);
        return 2;
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    for (int i = 0; kid && i < kr.n; i++) { /* --kid: that key signs */
        if (strcmp(kr.keys[i].kid, kid)) continue;
        token_key k = kr.keys[0];
        kr.keys[0] = kr.keys[i];
        kr.keys[i] = k;
        kid = NULL;
    }
    if (kid) {
        token_keyring_clear(&kr);
        return fprintf(stderr, "chatgw-token: --kid %s: no such key in CHATGW_JWT_SECRETS\n", kid),
               2;
    }
    c.iat = cg_now_s();
    c.exp = c.iat + ttl;
    if (cg_id_new(c.jti) < 0) return fprintf(stderr, "chatgw-token: no randomness\n"), 1;
    char *tok = NULL;
    int rc = token_sign(&c, &kr, &tok, &err);
    token_keyring_clear(&kr);
    if (rc < 0) {
        fprintf(stderr, "chatgw-token: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", tok);
    fprintf(stderr, "chatgw-token: jti %s, expires %lld (unix time)\n", c.jti, (long long)c.exp);
    free(tok);
    return 0;
}
