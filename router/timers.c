/* timers.c -- polling cg:timers for due timers.
 *
 * Every timer_tick_ms the router calls FCALL cg_timer_claim {now, lease, limit} (redis/timer.lua):
 * due members are leased to this router atomically (their score becomes now + lease), so with
 * several routers each due timer is taken by one. Each claimed timer becomes a JOB_TIMER job in the
 * work queue; sla.c fires it with cg_timer_fire, which acts only while the lease is still this
 * one's. A router that dies with claimed timers loses nothing: their lease runs out and another
 * router (or this one, restarted) claims them again. Polling is for timers only; assignment stays
 * driven by events (enqueue, presence, close, reload). */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define TIMERS_LIMIT 100

/* 'claimed' lease, members (redis/timer.lua cg_timer_claim): each member a job. */
static void timers_claim_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    r->timer_claiming = 0;
    if (!reply || r->stopping) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!store_transient(reply)) log_warn("cg_timer_claim: %s", reply->str);
        return;
    }
    char kind[16], lease[24];
    if (evres_kind(reply, kind, sizeof(kind)) != 0 || strcmp(kind, "claimed") != 0) return;
    evres_str(reply, "lease", lease, sizeof(lease));
    const redisReply *members = evres_get(reply, "members");
    if (!members || members->type != REDIS_REPLY_ARRAY || members->elements == 0) return;
    for (size_t i = 0; i < members->elements; i++) {
        char member[JOB_MEMBER_MAX];
        evres_text(members->element[i], member, sizeof(member));
        log_debug("timer %s claimed", member);
        job_push_timer(r, member, lease);
    }
    job_kick(r);
}

void timers_poll(router *r) {
    if (r->stopping || r->timer_claiming || !r->fn_loaded || !r->cmd || !rconn_is_up(r->cmd))
        return;
    evarg a;
    evarg_init(&a);
    evarg_int(&a, "now", cg_now_ms());
    evarg_int(&a, "lease", r->cfg.timer_lease_ms);
    evarg_int(&a, "limit", TIMERS_LIMIT);
    if (evarg_send(&a, r->cmd, "cg_timer_claim", CG_KEY_TENANT, timers_claim_reply, r) == 0)
        r->timer_claiming = 1;
}

static void timers_tick(uv_timer_t *t) {
    timers_poll(t->data);
}

void timers_start(router *r) {
    uv_timer_init(r->loop, &r->timer_tick);
    r->timer_tick.data = r;
    uint64_t every = (uint64_t)r->cfg.timer_tick_ms;
    uv_timer_start(&r->timer_tick, timers_tick, every, every);
}

void timers_stop(router *r) {
    if (!r->timer_tick.loop || uv_is_closing((uv_handle_t *)&r->timer_tick)) return;
    uv_timer_stop(&r->timer_tick);
    uv_close((uv_handle_t *)&r->timer_tick, NULL);
}
