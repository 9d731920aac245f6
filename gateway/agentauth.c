/* agentauth.c -- the agent check of the consoles' desk endpoints (GET /desk, GET /customer).
 *
 * A request carries the agent's console token as "Authorization: Bearer <JWT>"; it is verified
 * with token_verify (as the WebSocket agent hello and GET /canned do) and must be an agent's.
 * Revocation needs Redis: the caller pipelines EXISTS cg:revoked:<jti> with agentauth_revoked as
 * its callback before its own reads, so that a revoked token's 401 is the first answer given
 * (wh_respond keeps the first). The token itself is never logged. */
#include <string.h>
#include <strings.h>

#include "gw.h"
#include "agentauth.h"
#include "desk_schema.h"

#include "../common/log.h"
#include "../common/util.h"

#define AGENTAUTH_MAX 4096 /* longest Authorization header taken */

int agentauth_verify(wh_req *q, const char *tag, token_claims *who) {
    char auth[AGENTAUTH_MAX];
    if (!wh_header_tok(q, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof(auth))) return -1;
    if (strncasecmp(auth, "Bearer ", 7) != 0) return -1;
    const char *tok = auth + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok) return -1;
    cg_err err = {{0}, {0}};
    if (token_verify(tok, &G.keys, cg_now_s(), who, &err) < 0) {
        log_info("%s: refused: %s", tag, err.code);
        return -1;
    }
    if (who->role != TOKEN_AGENT) {
        log_info("%s: refused: not an agent token", tag);
        return -1;
    }
    return 0;
}

void agentauth_revoked(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    if (!r || r->type != REDIS_REPLY_INTEGER)
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, AGENTAUTH_JSON,
                   "{\"error\":\"unavailable\",\"reason\":\"Redis did not answer\"}\n");
    else if (r->integer) {
        log_info("desk endpoint: refused: token revoked");
        wh_respond(q, HTTP_STATUS_UNAUTHORIZED, AGENTAUTH_JSON,
                   "{\"error\":\"unauthorized\",\"reason\":\"token revoked\"}\n");
    }
    wh_release(q, 0);
}

int agentauth_start(wh_req *q, const token_claims *who) {
    if (!rconn_is_up(G.redis)) return -1;
    wh_hold(q);
    if (rconn_cmd(G.redis, agentauth_revoked, q, "EXISTS " CG_KEY_REVOKED, who->jti) < 0) {
        wh_release(q, 1);
        return -1;
    }
    return 0;
}

int agentauth_code_ok(const char *s, size_t n) {
    if (n == 0 || n >= MSG_CODE_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return 0;
    }
    return 1;
}
