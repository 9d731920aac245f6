/* rstate.c -- the gateway's view of Redis and the routers (rs_): the start-up of the command
 * connection and the health that /healthz, /metrics and the client frames go by
 * (docs/architecture.md, "Loading and health").
 *
 * Start-up, on every connect of the command connection: FCALL_RO chatgw_version; when the
 * library is missing or older than ours, load it (rlib_load_send) and check again; a newer one is
 * kept. The same check runs every second while ready, so a library deleted or replaced by an
 * older process comes back. LOADING, BUSY, READONLY, ... and unexpected answers are retried after a
 * back-off (100 ms doubling to 1 s). Once the library is in, main.c's ready callback runs
 * (heartbeat, agents announced again, watchers caught up): nothing of that meets a Redis still
 * loading its data.
 *
 * Health: every RS_POLL_MS one round, ZRANGE cg:routers 0 -1 then MGET of their health keys
 * cg:health:router:<id> (router/health.c). Redis is "not answering" when a round has waited
 * longer than RS_STALE_MS (paused, stuck), "loading" when it answered LOADING. The gateway is
 * healthy when both connections are up, the start-up is done, Redis answers and no live router
 * reports anything but ok; a router whose key has expired is gone (listed, not unhealthy). While
 * Redis is not healthy, client frames get `unavailable` (retry, with a wait hint) at once; the
 * outage is logged once when it starts and once when it ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "desk_schema.h"

#include "../common/log.h"
#include "../common/rlib.h"
#include "../common/util.h"

extern unsigned char redis_chatgw_lua[];
extern unsigned int redis_chatgw_lua_len;

#define RS_POLL_MS 250
#define RS_STALE_MS 1000

static struct {
    uv_timer_t poll, retry;
    int running;
    rs_ready_fn *on_ready;
    int ready;            /* the start-up of this command connection is done */
    int checking;         /* a version check or load is outstanding */
    unsigned backoff;     /* the last start-up retry delay */
    long long newer;      /* the newer library version we last said we keep */
    int polling;          /* a health round is outstanding */
    uint64_t poll_at;     /* uv_now() when it was sent */
    int loading;          /* the last round got LOADING */
    char why[96];         /* what the start-up waits for */
    char durability[256]; /* what CONFIG GET appendonly appendfsync said, as logged */
    int ever_ready;       /* outages are logged once Redis was ready once */
    int outage;           /* an outage was logged and has not ended */
    uint64_t outage_at;
    rs_router routers[RS_ROUTERS_MAX];
    unsigned n_routers;
    char logged_bad[RS_ROUTERS_MAX][96]; /* a router's bad state as last logged */
} rs;

static void rs_check(void);

static uint64_t rs_now(void) {
    return uv_now(G.loop);
}

/* Redis itself, for clients: "" when usable, else what is wrong. */
static const char *rs_redis_problem(void) {
    if (!rconn_is_up(G.redis) || !rconn_is_up(G.sub)) return "down";
    if (rs.loading) return "loading";
    if (rs.polling && rs_now() - rs.poll_at > RS_STALE_MS) return "not answering";
    if (!rs.ready) return "starting";
    return "";
}

/* Log an outage once when it starts and once when it ends. */
static void rs_note(void) {
    const char *p = rs_redis_problem();
    if (!rs.ever_ready) return;
    if (p[0] && !rs.outage) {
        rs.outage = 1;
        rs.outage_at = rs_now();
        log_warn("redis: unavailable (%s): client frames get 'unavailable' until it is back", p);
    } else if (!p[0] && rs.outage) {
        rs.outage = 0;
        log_info("redis: available again after %llu ms",
                 (unsigned long long)(rs_now() - rs.outage_at));
    }
}

/* ---- start-up ---- */

static void rs_on_retry(uv_timer_t *t) {
    rs_check();
}

static void rs_retry_later(const char *why) {
    if (strcmp(rs.why, why) != 0) log_warn("redis: not ready: %s (retrying)", why);
    snprintf(rs.why, sizeof(rs.why), "%s", why);
    rs.backoff = rlib_backoff(rs.backoff);
    uv_timer_start(&rs.retry, rs_on_retry, rs.backoff, 0);
}

/* The answer to CONFIG GET appendonly appendfsync: logged once per change (a warning when
 * acknowledged messages can be lost), and kept for /healthz. */
static void rs_durability_reply(rconn *rc, redisReply *r, void *priv) {
    if (!r) return;
    char text[sizeof(rs.durability)];
    rlib_durability d = rlib_durability_of(r, text, sizeof(text));
    if (strcmp(text, rs.durability) == 0) return;
    cg_strlcpy(rs.durability, text, sizeof(rs.durability));
    if (d == RLIB_DURABLE)
        log_info("redis: %s", text);
    else
        log_warn("redis: %s", text);
}

static void rs_started(void) {
    rs.ready = 1;
    rs.ever_ready = 1;
    rs.backoff = 0;
    rs.why[0] = '\0';
    rs.loading = 0;
    rs_note();
    rconn_cmd(G.redis, rs_durability_reply, NULL, "CONFIG GET appendonly appendfsync");
    if (rs.on_ready) rs.on_ready();
}

static void rs_loaded(rconn *rc, redisReply *exec, void *priv) {
    rs.checking = 0;
    if (!exec) return; /* connection lost: the next connect starts over */
    const redisReply *r = rlib_load_result(exec);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        const char *why = r ? r->str : "no answer";
        log_error("redis: FUNCTION LOAD " RLIB_NAME " failed: %s", why);
        rs_retry_later(why);
        return;
    }
    log_info("redis: library " RLIB_NAME " version %lld loaded",
             rlib_version(redis_chatgw_lua, redis_chatgw_lua_len));
    rs_check(); /* and check again: another process may have loaded a newer one meanwhile */
}

static void rs_checked(rconn *rc, redisReply *r, void *priv) {
    rs.checking = 0;
    if (!r) return;
    long long mine = rlib_version(redis_chatgw_lua, redis_chatgw_lua_len), theirs = -1;
    rlib_verdict v = rlib_check(r, mine, &theirs);
    if (v == RLIB_RETRY) {
        rs.loading = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "LOADING", 7);
        rs_note();
        rs_retry_later(r->type == REDIS_REPLY_ERROR ? r->str : "unexpected version reply");
        return;
    }
    if (v == RLIB_NEWER && rs.newer != theirs) {
        rs.newer = theirs;
        log_warn("redis: library " RLIB_NAME " version %lld is newer than ours (%lld): keeping it",
                 theirs, mine);
    }
    if (v != RLIB_LOAD) {
        if (!rs.ready) rs_started();
        return;
    }
    log_info("redis: library " RLIB_NAME ": Redis holds version %lld, loading ours (%lld)", theirs,
             mine);
    if (rlib_load_send(G.redis, rs_loaded, NULL, redis_chatgw_lua, redis_chatgw_lua_len) == 0)
        rs.checking = 1;
}

static void rs_check(void) {
    if (rs.checking || G.stopping || !rconn_is_up(G.redis)) return;
    if (uv_is_active((uv_handle_t *)&rs.retry)) return;
    const char *argv[] = {"FCALL_RO", RLIB_VERSION_FN, "1", CG_KEY_TENANT};
    if (rconn_cmdargv(G.redis, rs_checked, NULL, 4, argv, NULL) == 0) rs.checking = 1;
}

void rs_on_cmd_state(int up) {
    rs.ready = 0;
    rs.checking = 0;
    rs.polling = 0;
    rs.loading = 0;
    rs.backoff = 0;
    uv_timer_stop(&rs.retry);
    if (up) rs_check();
    rs_note();
}

void rs_on_sub_state(int up) {
    rs_note();
}

/* ---- health rounds ---- */

static void rs_on_health(rconn *rc, redisReply *r, void *priv) {
    rs.polling = 0;
    rs_note();
    if (!r || r->type != REDIS_REPLY_ARRAY) return;
    for (unsigned i = 0; i < rs.n_routers && i < r->elements; i++) {
        const redisReply *v = r->element[i];
        rs_router *x = &rs.routers[i];
        if (v->type == REDIS_REPLY_STRING)
            snprintf(x->state, sizeof(x->state), "%.*s", (int)v->len, v->str);
        else
            snprintf(x->state, sizeof(x->state), "gone");
        int bad = strcmp(x->state, "ok") != 0 && strcmp(x->state, "gone") != 0;
        if (bad && strcmp(rs.logged_bad[i], x->state) != 0)
            log_warn("router %s: %s", x->id, x->state);
        else if (!bad && rs.logged_bad[i][0])
            log_info("router %s: %s again", x->id, x->state);
        snprintf(rs.logged_bad[i], sizeof(rs.logged_bad[i]), "%s", bad ? x->state : "");
    }
}

static void rs_on_routers(rconn *rc, redisReply *r, void *priv) {
    if (!r) {
        rs.polling = 0;
        return;
    }
    rs.loading = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "LOADING", 7);
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        rs.polling = 0;
        rs.n_routers = 0;
        rs_note();
        return;
    }
    const char *argv[1 + RS_ROUTERS_MAX];
    char keys[RS_ROUTERS_MAX][MSG_ID_MAX + CG_KEY_EXTRA];
    unsigned n = 0;
    for (size_t i = 0; i < r->elements && n < RS_ROUTERS_MAX; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len >= MSG_ID_MAX) continue;
        if (strncmp(rs.routers[n].id, e->str, sizeof(rs.routers[n].id)) != 0)
            rs.logged_bad[n][0] = '\0'; /* another router in this slot */
        snprintf(rs.routers[n].id, sizeof(rs.routers[n].id), "%s", e->str);
        snprintf(keys[n], sizeof(keys[n]), CG_KEY_HEALTH_ROUTER, e->str);
        argv[1 + n] = keys[n];
        n++;
    }
    rs.n_routers = n;
    argv[0] = "MGET";
    rs.poll_at = rs_now(); /* Redis answered: the MGET is the round's outstanding command now */
    if (!n || rconn_cmdargv(G.redis, rs_on_health, NULL, (int)(1 + n), argv, NULL) != 0)
        rs.polling = 0;
    rs_note();
}

static void rs_on_poll(uv_timer_t *t) {
    static unsigned rounds;
    rs_note(); /* a round that waits too long is an outage */
    if (rs.ready && ++rounds % (1000 / RS_POLL_MS) == 0) rs_check(); /* the library still in? */
    if (rs.polling || G.stopping || !rconn_is_up(G.redis)) return;
    if (rconn_cmd(G.redis, rs_on_routers, NULL, "ZRANGE " CG_KEY_ROUTERS " 0 -1") != 0) return;
    rs.polling = 1;
    rs.poll_at = rs_now();
}

int rs_start(rs_ready_fn *on_ready) {
    rs.on_ready = on_ready;
    if (uv_timer_init(G.loop, &rs.poll) != 0 || uv_timer_init(G.loop, &rs.retry) != 0) {
        log_error("redis: cannot create the health timers");
        return -1;
    }
    rs.running = 1;
    uv_timer_start(&rs.poll, rs_on_poll, RS_POLL_MS, RS_POLL_MS);
    return 0;
}

void rs_stop(void) {
    if (!rs.running) return;
    rs.running = 0;
    uv_timer_stop(&rs.poll);
    uv_timer_stop(&rs.retry);
    uv_close((uv_handle_t *)&rs.poll, NULL);
    uv_close((uv_handle_t *)&rs.retry, NULL);
}

/* ---- what the others ask ---- */

/* Both note the state first: an outage a client or /healthz sees is logged then, even if it ends
 * before the next health round. */
int rs_redis_ok(void) {
    rs_note();
    return rs_redis_problem()[0] == '\0';
}

int rs_problem(char *out, size_t n) {
    rs_note();
    const char *p = rs_redis_problem();
    if (p[0]) {
        snprintf(out, n, "redis %s", p);
        return 1;
    }
    for (unsigned i = 0; i < rs.n_routers; i++) {
        const rs_router *x = &rs.routers[i];
        if (!strcmp(x->state, "ok") || !strcmp(x->state, "gone") || !x->state[0]) continue;
        snprintf(out, n, "router %s: %s", x->id, x->state);
        return 1;
    }
    out[0] = '\0';
    return 0;
}

const char *rs_redis_state(void) {
    const char *p = rs_redis_problem();
    return p[0] ? p : "up";
}

unsigned rs_routers(const rs_router **list) {
    *list = rs.routers;
    return rs.n_routers;
}
