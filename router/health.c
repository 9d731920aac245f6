/* health.c -- the router says whether it can work: every second
 *     SET cg:health:router:<id> <state> PX 3000
 *     ZADD cg:routers <now ms> <id>           (and routers not seen for an hour are dropped)
 * on the cmd connection, where state is
 *     ok                    library in, consumer group there, reading or working on cg:in
 *     loading: <why>        the start-up waits (Redis loading its dataset, busy or read-only, a
 *                           library check or load, the consumer group, a connection)
 *     stalled: <why>        the start-up met an error that does not pass by itself (a library
 *                           that does not load, XGROUP CREATE refused), or, ready, the head job
 *                           has not finished for stall_ms, or no read of cg:in has been
 *                           outstanding for stall_ms (a failing XREADGROUP)
 * The gateways' /healthz and /metrics read it (gateway/rstate.c); a router whose key has expired
 * is gone (killed, or its loop stuck for 3 s). The same tick checks the library's version again
 * (store_check_libs), so a library that disappeared or was replaced by an older one comes back.
 * A stopped router's key expires within 3 s: it is then gone like a killed one. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../common/rlib.h"
#include "../common/util.h"

#define HEALTH_EVERY_MS 1000
#define HEALTH_TTL "3000"
#define HEALTH_FORGET_MS 3600000 /* cg:routers entries older than this are dropped */

/* Work that should move and does not: the same head job for stall_ms, or ready with no job and
 * no read outstanding for stall_ms. Writes the reason into why (n bytes); 0 when all moves. */
static int health_stalled(router *r, int64_t now, char *why, size_t n) {
    const job *head = r->head;
    if (head) {
        const char *id = head->kind == JOB_ENTRY   ? head->id
                         : head->kind == JOB_TIMER ? head->member
                                                   : "outbox";
        if (head != r->stall_head || strncmp(id, r->stall_id, sizeof(r->stall_id) - 1) != 0) {
            r->stall_head = head;
            cg_strlcpy(r->stall_id, id, sizeof(r->stall_id));
            r->stall_since = now;
        }
        r->idle_since = 0;
        if (now - r->stall_since < r->cfg.stall_ms) return 0;
        snprintf(why, n, "job %.40s not finished for %lld s", r->stall_id,
                 (long long)((now - r->stall_since) / 1000));
        return 1;
    }
    r->stall_head = NULL;
    if (r->reading || r->running) {
        r->idle_since = 0;
        return 0;
    }
    if (!r->idle_since) r->idle_since = now;
    if (now - r->idle_since < r->cfg.stall_ms) return 0;
    snprintf(why, n, "not reading cg:in: %.60s", r->in_why[0] ? r->in_why : "no read outstanding");
    return 1;
}

/* What a start-up that waits for why is: "loading" while it waits for something that comes by
 * itself (our own lower-case step names, LOADING, BUSY, READONLY, ... replies), "stalled" when
 * Redis refused with another error (WRONGTYPE, a library that does not load, ...). */
static const char *health_kind(const char *why) {
    if (!why[0] || (why[0] >= 'a' && why[0] <= 'z')) return "loading";
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = (char *)why, .len = strlen(why)};
    return rlib_transient(&e) ? "loading" : "stalled";
}

/* The state line of the health key (n bytes). */
static void health_state(router *r, int64_t now, char *out, size_t n) {
    char why[128];
    if (!r->fn_loaded) {
        const char *w = r->why[0] ? r->why : "library check";
        snprintf(out, n, "%s: %.80s", health_kind(w), w);
        return;
    }
    if (!r->group_ok || !r->in || !rconn_is_up(r->in)) {
        const char *w = r->in_why[0] ? r->in_why : "consumer group";
        snprintf(out, n, "%s: %.80s", health_kind(w), w);
        return;
    }
    if (health_stalled(r, now, why, sizeof(why))) {
        snprintf(out, n, "stalled: %s", why);
        return;
    }
    cg_strlcpy(out, "ok", n);
}

static void health_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    r->health_writing = 0;
}

static void health_tick(uv_timer_t *t) {
    router *r = t->data;
    if (r->stopping || !r->cmd || !rconn_is_up(r->cmd)) return;
    int64_t now = cg_now_ms();
    char key[MSG_ID_MAX + CG_KEY_EXTRA], state[192], now_s[24], old_s[24];
    health_state(r, now, state, sizeof(state));
    store_check_libs(r);
    if (r->health_writing) return; /* the last write is not answered yet: Redis is slow */
    snprintf(key, sizeof(key), CG_KEY_HEALTH_ROUTER, r->cfg.router_id);
    snprintf(now_s, sizeof(now_s), "%lld", (long long)now);
    snprintf(old_s, sizeof(old_s), "%lld", (long long)(now - HEALTH_FORGET_MS));
    const char *set[] = {"SET", key, state, "PX", HEALTH_TTL};
    const char *add[] = {"ZADD", CG_KEY_ROUTERS, now_s, r->cfg.router_id};
    const char *drop[] = {"ZREMRANGEBYSCORE", CG_KEY_ROUTERS, "-inf", old_s};
    if (rconn_cmdargv(r->cmd, NULL, NULL, 5, set, NULL) != 0) return;
    rconn_cmdargv(r->cmd, NULL, NULL, 4, add, NULL);
    if (rconn_cmdargv(r->cmd, health_reply, r, 4, drop, NULL) == 0) r->health_writing = 1;
}

void health_start(router *r) {
    uv_timer_init(r->loop, &r->health_tick);
    r->health_tick.data = r;
    uv_timer_start(&r->health_tick, health_tick, HEALTH_EVERY_MS, HEALTH_EVERY_MS);
}

void health_stop(router *r) {
    if (!r->health_tick.loop || uv_is_closing((uv_handle_t *)&r->health_tick)) return;
    uv_timer_stop(&r->health_tick);
    uv_close((uv_handle_t *)&r->health_tick, NULL);
}
