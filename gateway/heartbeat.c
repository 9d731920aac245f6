/* heartbeat.c -- this gateway's liveness in Redis, so that the routers can drop the agent sockets
 * of a gateway that died (hb_).
 *
 * Every heartbeat_ms one command on the command connection:
 *     SET cg:gw:<gateway id> <boot ms> PX <3 * heartbeat_ms> GET
 * The value is the time this process started (its run): the routers' reaper (FCALL cg_gw_reap,
 * redis/agent.lua; router/reap.c) drops every agent socket of a gateway whose key has expired,
 * and those of an earlier run of a gateway that restarted with the same id before its key
 * expired. The gateway also joins the set cg:gateways (SADD, pipelined after the SET) on the first
 * beat of each command connection and after a beat that found its key gone.
 *
 * The first beat of a connection goes out before anything else main.c sends on it (the agents'
 * connects), so our key exists before any connect of ours reaches a router. A beat whose GET says
 * the key had expired although we had beaten before (Redis away, or this loop stalled, for three
 * heartbeats) means we may have been reaped: our agents' sockets were dropped and are remembered
 * as closed, so each agent connection takes a new socket id and is announced again (connect of
 * the new id first, then disconnect of the old one: an agent never looks offline in between).
 *
 * Socket ids are "<gateway id>:<n>" (sess.c) with n counted from boot ms * 1000, so that they
 * never repeat across runs of one gateway id: a socket remembered as closed (cg:agent:<a>:gone,
 * 24 h) must not be a socket of a later run. */
#include <stdio.h>
#include <string.h>

#include "gw.h"
#include "desk_schema.h"

#include "../common/log.h"
#include "../common/util.h"

static struct {
    uv_timer_t timer;
    int running;                 /* timer initialised and not closed (hb_stop closes it) */
    int pending;                 /* a beat is outstanding */
    int joined;                  /* SADD cg:gateways sent on this command connection */
    int alive;                   /* a beat has been answered since the start */
    int warned_twin;             /* said once that another gateway uses our id */
    char key[CG_KEY_EXTRA + 64]; /* the gateway's liveness key */
    char boot[24];               /* boot ms, the key's value */
    char px[24];                 /* 3 * heartbeat_ms */
} hb;

/* A beat told us our key had expired: give every agent connection a new socket id and announce
 * it (its old id may have been reaped, and a reaped id's connect is ignored). */
static void hb_reannounce(void) {
    unsigned n = 0;
    for (sess *s = G.sessions; s; s = s->next) {
        if (s->role != SESS_AGENT || !s->authed || s->closing) continue;
        char old[sizeof(s->sock)], now[sizeof(s->sock)];
        memcpy(old, s->sock, sizeof(old));
        s->num = ++G.next_sess_num;
        snprintf(s->sock, sizeof(s->sock), "%s:%llu", G.cfg.gateway_id, (unsigned long long)s->num);
        memcpy(now, s->sock, sizeof(now));
        log_info("heartbeat: agent %s: socket %s is now %s", s->who.sub, old, now);
        client_presence(s, "connect");
        memcpy(s->sock, old, sizeof(old));
        client_presence(s, "disconnect");
        memcpy(s->sock, now, sizeof(now));
        n++;
    }
    log_warn("heartbeat: the liveness key %s had expired: %u agent connections announced again",
             hb.key, n);
}

static void hb_join(void) {
    const char *argv[] = {"SADD", CG_KEY_GATEWAYS, G.cfg.gateway_id};
    if (rconn_cmdargv(G.redis, NULL, NULL, 3, argv, NULL) == 0) hb.joined = 1;
}

static void hb_reply(rconn *rc, redisReply *r, void *priv) {
    hb.pending = 0;
    if (!r) return; /* the connection dropped: its next start beats again */
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("heartbeat: SET %s: %s", hb.key, r->str);
        return;
    }
    int was_alive = hb.alive;
    hb.alive = 1;
    if (r->type == REDIS_REPLY_STRING) {
        if (!strcmp(r->str, hb.boot)) return;
        if (!was_alive)
            log_info("heartbeat: %s was still held by an earlier run (boot %s): the routers drop "
                     "its sockets",
                     hb.key, r->str);
        else if (!hb.warned_twin++)
            log_error("heartbeat: %s held boot %s: another gateway runs with the id %s", hb.key,
                      r->str, G.cfg.gateway_id);
        return;
    }
    if (!was_alive || G.stopping) return; /* first beat: no key yet */
    hb_join();
    hb_reannounce();
}

/* One beat (and the SADD when this connection has not sent it yet). */
static void hb_beat(void) {
    if (!hb.running || hb.pending || G.stopping || !rconn_is_up(G.redis)) return;
    const char *argv[] = {"SET", hb.key, hb.boot, "PX", hb.px, "GET"};
    if (rconn_cmdargv(G.redis, hb_reply, NULL, 6, argv, NULL) < 0) return;
    hb.pending = 1;
    if (!hb.joined) hb_join();
}

static void hb_tick(uv_timer_t *t) {
    hb_beat();
}

int hb_start(void) {
    int64_t boot = cg_now_ms();
    snprintf(hb.key, sizeof(hb.key), CG_KEY_GW, G.cfg.gateway_id);
    snprintf(hb.boot, sizeof(hb.boot), "%lld", (long long)boot);
    snprintf(hb.px, sizeof(hb.px), "%lld", 3 * G.cfg.heartbeat_ms);
    G.next_sess_num = (uint64_t)boot * 1000;
    if (uv_timer_init(G.loop, &hb.timer) != 0) {
        log_error("heartbeat: cannot create its timer");
        return -1;
    }
    hb.running = 1;
    uint64_t every = (uint64_t)G.cfg.heartbeat_ms;
    uv_timer_start(&hb.timer, hb_tick, every, every);
    return 0;
}

void hb_on_redis_up(void) {
    hb.joined = 0;
    hb_beat();
}

void hb_stop(void) {
    if (!hb.running) return;
    hb.running = 0;
    uv_timer_stop(&hb.timer);
    uv_close((uv_handle_t *)&hb.timer, NULL);
    const char *argv[] = {"DEL", hb.key};
    if (rconn_is_up(G.redis)) rconn_cmdargv(G.redis, NULL, NULL, 2, argv, NULL);
}
