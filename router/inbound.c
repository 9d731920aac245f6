/* inbound.c -- reading cg:in as consumer <router_id> of group `routers`.
 *
 * A dedicated connection blocks in XREADGROUP ... STREAMS cg:in > and reads the next batch only
 * when the work queue is empty (each batch is processed, then acked, then the next is read). The
 * group is created (from id 0, so entries written before any router existed are processed) on
 * every connect. A timer takes over entries other consumers left pending longer than
 * claim_idle_ms (XAUTOCLAIM, on the cmd connection) and queues an outbox drain. */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

static void inbound_group_create(router *r);

/* Queue every entry [id, [field, value, ...]] of an XREADGROUP/XAUTOCLAIM entry list. */
static void inbound_push_entries(router *r, const redisReply *list) {
    if (!list || list->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *e = list->element[i];
        if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
        if (e->element[0]->type != REDIS_REPLY_STRING) continue;
        const redisReply *f = e->element[1];
        char id[48], conv[MSG_ID_MAX] = "", rated[4] = "";
        const redisReply *m = NULL;
        store_str(e->element[0], id, sizeof(id));
        for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
            const redisReply *key = f->element[k];
            if (key->type != REDIS_REPLY_STRING) continue;
            if (key->len == 1 && key->str[0] == 'c')
                store_str(f->element[k + 1], conv, sizeof(conv));
            if (key->len == 1 && key->str[0] == 'm') m = f->element[k + 1];
            if (key->len == 1 && key->str[0] == 'r')
                store_str(f->element[k + 1], rated, sizeof(rated));
        }
        if (!m || m->type != REDIS_REPLY_STRING) {
            /* an entry without a message: queue it anyway so it is acked like a bad one */
            job_push_entry(r, id, conv, "", 0, 0);
            continue;
        }
        job_push_entry(r, id, conv, m->str, m->len, atoi(rated));
    }
}

static void inbound_read_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    r->reading = 0;
    if (!reply || r->stopping) return; /* connection lost: the state callback starts over */
    if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("XREADGROUP failed: %s", reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            r->group_ok = 0;
            inbound_group_create(r);
        }
        return; /* otherwise read again on the next claim tick */
    }
    /* [[stream, [entry, ...]]] or nil when BLOCK expired */
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *s = reply->element[i];
            if (s->type == REDIS_REPLY_ARRAY && s->elements == 2)
                inbound_push_entries(r, s->element[1]);
        }
    }
    job_kick(r); /* reads the next batch once the queue is empty */
}

void inbound_read_next(router *r) {
    if (r->stopping || r->reading || !r->group_ok || r->head) return;
    if (!r->in || !rconn_is_up(r->in)) return;
    char count[24], block[24];
    snprintf(count, sizeof(count), "%lld", r->cfg.read_count);
    snprintf(block, sizeof(block), "%lld", r->cfg.block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", "routers", r->cfg.router_id, "COUNT", count,
                          "BLOCK",      block,   "STREAMS", "cg:in",          ">"};
    if (rconn_cmdargv(r->in, inbound_read_reply, r, 11, argv, NULL) != 0) return;
    r->reading = 1;
    store_maybe_ready(r);
}

static void inbound_group_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    if (!reply || r->stopping) return;
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        log_warn("XGROUP CREATE failed: %s (retrying)", reply->str);
        return; /* the claim tick tries again */
    }
    r->group_ok = 1;
    inbound_read_next(r);
}

static void inbound_group_create(router *r) {
    if (r->stopping || !r->in || !rconn_is_up(r->in)) return;
    rconn_cmd(r->in, inbound_group_reply, r, "XGROUP CREATE cg:in routers 0 MKSTREAM");
}

static void inbound_state(rconn *rc, int up, void *priv) {
    router *r = priv;
    r->group_ok = 0;
    r->reading = 0;
    if (r->stopping) return;
    if (!up) {
        log_warn("Redis read connection down");
        return;
    }
    inbound_group_create(r);
}

static void inbound_claim_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    r->claiming = 0;
    if (!reply || r->stopping) return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) != 0) log_warn("XAUTOCLAIM failed: %s", reply->str);
        cg_strlcpy(r->claim_cursor, "0-0", sizeof(r->claim_cursor));
        return;
    }
    /* [next cursor, [entry, ...], [deleted id, ...]] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) return;
    store_str(reply->element[0], r->claim_cursor, sizeof(r->claim_cursor));
    size_t before = r->n_jobs;
    inbound_push_entries(r, reply->element[1]);
    if (r->n_jobs > before) log_info("claimed %zu idle entries", r->n_jobs - before);
    job_kick(r);
    if (strcmp(r->claim_cursor, "0-0") != 0 && r->claim_cursor[0]) inbound_claim(r);
}

void inbound_claim(router *r) {
    if (r->stopping || r->claiming || !r->fn_loaded || !r->cmd || !rconn_is_up(r->cmd)) return;
    if (!r->claim_cursor[0]) cg_strlcpy(r->claim_cursor, "0-0", sizeof(r->claim_cursor));
    char idle[24], count[24];
    snprintf(idle, sizeof(idle), "%lld", r->cfg.claim_idle_ms);
    snprintf(count, sizeof(count), "%lld", r->cfg.read_count);
    const char *argv[] = {"XAUTOCLAIM", "cg:in",         "routers", r->cfg.router_id,
                          idle,         r->claim_cursor, "COUNT",   count};
    if (rconn_cmdargv(r->cmd, inbound_claim_reply, r, 8, argv, NULL) == 0) r->claiming = 1;
}

static void inbound_tick(uv_timer_t *t) {
    router *r = t->data;
    if (r->stopping) return;
    if (!r->group_ok) inbound_group_create(r);
    inbound_claim(r);
    if (r->fn_loaded) job_push_outbox(r);
    job_kick(r);
    inbound_read_next(r);
}

int inbound_start(router *r) {
    cg_err err = {{0}, {0}};
    uv_timer_init(r->loop, &r->claim_timer);
    r->claim_timer.data = r;
    unsigned timeout = (unsigned)(r->cfg.block_ms + 5000);
    r->in = rconn_new(r->loop, r->cfg.redis_url, "in", timeout, inbound_state, r, &err);
    if (!r->in) {
        log_error("redis_url: %s", err.msg);
        return -1;
    }
    uint64_t every = (uint64_t)(r->cfg.claim_idle_ms / 2);
    uv_timer_start(&r->claim_timer, inbound_tick, every, every);
    rconn_start(r->in);
    return 0;
}

void inbound_stop(router *r) {
    if (r->claim_timer.loop && !uv_is_closing((uv_handle_t *)&r->claim_timer)) {
        uv_timer_stop(&r->claim_timer);
        uv_close((uv_handle_t *)&r->claim_timer, NULL);
    }
    if (r->in) rconn_free(&r->in);
}
