/* agentauth.h -- the agent check of the consoles' desk endpoints (agentauth.c). */
#ifndef CG_AGENTAUTH_H
#define CG_AGENTAUTH_H

#include <stddef.h>

#include "webhook.h"

#define AGENTAUTH_JSON "application/json"

/* Verify the request's bearer token into *who: 0 when it is a valid agent token, else -1 (the
 * reason is logged under tag, never the token). Answers nothing: the caller answers 401. */
int agentauth_verify(wh_req *q, const char *tag, token_claims *who);
/* Send EXISTS cg:revoked:<jti> for who (held on q; its reply answers 401 when revoked, 503 when
 * Redis failed). Send it before the endpoint's own reads on G.redis, which then see
 * q->responded. 0 when sent, -1 when Redis is down (nothing held: answer 503). */
int agentauth_start(wh_req *q, const token_claims *who);
/* The revocation reply callback agentauth_start uses (priv = the wh_req). */
void agentauth_revoked(rconn *rc, redisReply *r, void *priv);
/* 1 when s (n bytes) is 1-64 of a-z 0-9 _ - (a queue, category or resolution code). */
int agentauth_code_ok(const char *s, size_t n);

#endif
