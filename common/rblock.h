/* rblock.h -- one blocking (synchronous) hiredis connection to a redis_url, for the tools
 * (chatgw-token, chatgw-export) and `chatgw-router --check-config`: the one place that turns a URL
 * into a ready redisContext, so no caller repeats the unix / TCP / TLS branches or the handshake.
 *
 * rediss:// goes through the same TLS relay as the daemons (common/rtls.h), run on a private
 * libuv loop in a thread of its own for as long as the context lives: the simplest way to give a
 * blocking hiredis context a TLS peer without a second TLS implementation. */
#ifndef CG_RBLOCK_H
#define CG_RBLOCK_H

#include <hiredis/hiredis.h>

#include "err.h"

/* Connect to url (redis[s]://[[user]:password@]host[:port][/db] or unix:/path), send AUTH (user
 * and password, or password), SELECT db, and PING when the URL has no password (a server that
 * wants one says NOAUTH now). timeout_ms > 0 bounds the connect and every later command (0: the
 * connect waits as long as the system does, commands forever). Returns the context, or NULL with
 * err: "cannot connect to Redis: ...", "Redis refused AUTH: ..." (Redis' reason, never the
 * password), or for rediss:// the relay's reason (certificate, handshake, refused connect).
 * Free with rblock_free (not redisFree: the relay must stop too). */
redisContext *rblock_connect(const char *url, int timeout_ms, cg_err *err);

/* redisFree(c) and stop its relay, if any. NULL is ignored. */
void rblock_free(redisContext *c);

#endif
