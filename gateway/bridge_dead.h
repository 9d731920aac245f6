/* bridge_dead.h -- dead letters: outbound entries that cannot be delivered leave cg:out:<channel>.
 *
 * An entry of cg:out:<channel> that the gateway cannot render for its platform (an address or a
 * Message-ID a reply cannot carry, no address at all, a renderer refusal), or that a bridge
 * answers with a failure ({"type":"ack","id":...,"code":...,"text":...}), must not hold the
 * channel's bridges back for ever. bdead_store() copies it to the bounded stream
 * cg:dead:<channel> (MAXLEN ~ BDEAD_MAXLEN) with the reason, then, in the same pipeline on the
 * shared command connection, tells the desk (an `escalated` event with code "undeliverable" in
 * the conversation's transcript, written by cg_message in mode sys: desk-only, never sent to a
 * bridge, de-duplicated by the cmid "cg:dead:<entry id>") and XACKs the entry in group
 * "bridges". Only after the XADD succeeded: when it fails the entry stays pending (delivered or
 * dead-lettered again later; at-least-once, never lost). */
#ifndef CG_BRIDGE_DEAD_H
#define CG_BRIDGE_DEAD_H

#include <hiredis/hiredis.h>

#include "../proto/msg.h"

#define BDEAD_MAXLEN "10000" /* cg:dead:<channel>: entries kept, about (MAXLEN ~) */
#define BDEAD_CODE "undeliverable"

/* Called once: stored = 1 when the entry is in cg:dead:<channel> and XACKed (or was gone from
 * cg:out already: XACKed, nothing to keep), 0 when it could not be stored (left pending). */
typedef void bdead_done_fn(void *priv, int stored);

/* Dead-letter the entry `entry` of cg:out:<channel> whose fields are kv (the [f, v, ...] array
 * XREADGROUP returned). code / reason: why (copied; reason cut at 300 bytes for the desk's
 * notice); by: who gave up ("gateway" or "bridge:<name>"). 0 when sent (done will be called),
 * -1 when the command connection is down (done is not called). */
int bdead_store(msg_channel ch, const char *entry, const redisReply *kv, const char *code,
                const char *reason, const char *by, bdead_done_fn *done, void *priv);

/* The same for an entry known only by its id (a bridge's failure answer): read with XRANGE
 * first. An entry no longer in the stream is just XACKed (stored = 1). */
int bdead_store_id(msg_channel ch, const char *entry, const char *code, const char *reason,
                   const char *by, bdead_done_fn *done, void *priv);

#endif
