/* trim.c -- keeping the work streams bounded.
 *
 * cg:in (group routers) and cg:out:<channel> (group bridges) are queues, not archives (the
 * transcripts are the archive): once every consumer of the group is done with an entry it can
 * go. Every trim_interval_ms the router calls FCALL cg_trim stream group (redis/conv.lua) for
 * each of them; the function drops what lies below the group's oldest pending entry, or up to
 * its last delivered entry when nothing is pending, so nothing unread or unacknowledged is ever
 * lost. A stream nobody has a group on yet (no bridge of that channel ever connected) is kept
 * whole. Several routers may trim at once: trimming is idempotent. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"

/* priv: the channel name of a cg:out stream, or NULL for cg:in (static strings). */
static void trim_reply(rconn *rc, redisReply *reply, void *priv) {
    (void)rc;
    const char *stream = priv ? priv : CG_KEY_INBOUND;
    if (!reply) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!store_transient(reply)) log_warn("cg_trim %s: %s", stream, reply->str);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_debug("%s%s: %lld entries trimmed", priv ? "cg:out:" : "", stream, reply->integer);
}

static void trim_one(router *r, const char *stream, const char *group, const char *channel) {
    const char *argv[6] = {"FCALL", "cg_trim", "1", CG_KEY_TENANT, stream, group};
    rconn_cmdargv(r->cmd, trim_reply, (void *)channel, 6, argv, NULL);
}

void trim_poll(router *r) {
    if (r->stopping || !r->fn_loaded || !r->cmd || !rconn_is_up(r->cmd)) return;
    trim_one(r, CG_KEY_INBOUND, "routers", NULL);
    for (int ch = CH_WEB + 1; ch < CH_COUNT; ch++) { /* web has no bridges */
        char stream[CG_KEY_EXTRA + 32];
        const char *name = msg_channel_name((msg_channel)ch);
        snprintf(stream, sizeof(stream), CG_KEY_OUT, name);
        trim_one(r, stream, "bridges", name);
    }
}

static void trim_tick(uv_timer_t *t) {
    trim_poll(t->data);
}

void trim_start(router *r) {
    uv_timer_init(r->loop, &r->trim_tick);
    r->trim_tick.data = r;
    uint64_t every = (uint64_t)r->cfg.trim_interval_ms;
    if (every > 0) uv_timer_start(&r->trim_tick, trim_tick, every, every);
}

void trim_stop(router *r) {
    if (!r->trim_tick.loop || uv_is_closing((uv_handle_t *)&r->trim_tick)) return;
    uv_timer_stop(&r->trim_tick);
    uv_close((uv_handle_t *)&r->trim_tick, NULL);
}
