/* reap.c -- dropping the agent sockets of gateways that died.
 *
 * A gateway refreshes its liveness key cg:gw:<gateway> (value: the time its run started) every
 * heartbeat_ms, with an expiry of three heartbeats (gateway/heartbeat.c), and keeps itself in
 * cg:gateways; cg_presence indexes each agent socket under its gateway (cg:gw:<gateway>:socks).
 * Every gateway_reap_ms the router calls FCALL cg_gw_reap {now, limit} (redis/agent.lua), which in
 * one atomic step drops, as their disconnects would, every socket of a gateway whose key has
 * expired (killed, machine lost) and the sockets of an earlier run of a gateway that restarted
 * with the same id: an agent with no socket left is offline and out of every cg:avail set, so
 * nothing new is assigned to it; its conversations stay assigned (it gets them back on its next
 * hello, through any gateway). One call per period per router; several routers may reap at once
 * (the function is atomic and idempotent). Conversations the function offers to agents still
 * online are announced through the outbox. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define REAP_LIMIT 1000 /* sockets per call; more: the next call follows at once */

/* Log one reaped gateway: the named answer 'gone' | 'restarted' with gateway, dropped (sockets),
 * agents ({agent, ...}). */
static void reap_log(const redisReply *g) {
    char gw[MSG_ID_MAX], kind[16], agents[256] = "";
    if (evres_kind(g, kind, sizeof(kind)) != 0) return;
    evres_str(g, "gateway", gw, sizeof(gw));
    long long n = evres_int(g, "dropped");
    const redisReply *a = evres_get(g, "agents");
    size_t o = 0, n_agents = a && a->type == REDIS_REPLY_ARRAY ? a->elements : 0;
    for (size_t i = 0; i < n_agents && o < sizeof(agents) - 1; i++) {
        char id[MSG_ID_MAX];
        evres_text(a->element[i], id, sizeof(id));
        int w = snprintf(agents + o, sizeof(agents) - o, "%s%s", i ? ", " : "", id);
        if (w < 0) break;
        o += (size_t)w;
    }
    if (o >= sizeof(agents) - 1) cg_strlcpy(agents + sizeof(agents) - 5, "...", 5);
    const char *why = strcmp(kind, "gone") == 0 ? "stopped heartbeating"
                                                : "restarted: sockets of its previous run";
    if (n > 0)
        log_warn("gateway %s %s: %lld agent sockets dropped (%zu agents: %s)", gw, why, n, n_agents,
                 agents);
    else
        log_info("gateway %s %s: no agent sockets left", gw, why);
}

/* 'reaped' gateways, assigned, more (redis/agent.lua cg_gw_reap). */
static void reap_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    r->reaping = 0;
    if (!reply || r->stopping) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!store_transient(reply)) log_warn("cg_gw_reap: %s", reply->str);
        return;
    }
    char kind[16];
    if (evres_kind(reply, kind, sizeof(kind)) != 0 || strcmp(kind, "reaped") != 0) return;
    const redisReply *gws = evres_get(reply, "gateways");
    for (size_t i = 0; gws && gws->type == REDIS_REPLY_ARRAY && i < gws->elements; i++)
        reap_log(gws->element[i]);
    if (evres_int(reply, "assigned") > 0) { /* offered to agents still online */
        job_push_outbox(r);
        job_kick(r);
    }
    if (evres_int(reply, "more")) reap_poll(r); /* the limit was reached: go on */
}

void reap_poll(router *r) {
    if (r->stopping || r->reaping || !r->fn_loaded || !r->cmd || !rconn_is_up(r->cmd)) return;
    evarg a;
    evarg_init(&a);
    evarg_int(&a, "now", cg_now_ms());
    evarg_int(&a, "limit", REAP_LIMIT);
    if (evarg_send(&a, r->cmd, "cg_gw_reap", CG_KEY_TENANT, reap_reply, r) == 0) r->reaping = 1;
}

static void reap_tick(uv_timer_t *t) {
    reap_poll(t->data);
}

void reap_start(router *r) {
    uv_timer_init(r->loop, &r->reap_tick);
    r->reap_tick.data = r;
    uint64_t every = (uint64_t)r->cfg.gateway_reap_ms;
    if (every > 0) uv_timer_start(&r->reap_tick, reap_tick, every, every);
}

void reap_stop(router *r) {
    if (!r->reap_tick.loop || uv_is_closing((uv_handle_t *)&r->reap_tick)) return;
    uv_timer_stop(&r->reap_tick);
    uv_close((uv_handle_t *)&r->reap_tick, NULL);
}
