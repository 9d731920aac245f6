/* inbound.c -- reading cg:in as consumer <router_id> of group `routers`.
 *
 * A dedicated connection blocks in XREADGROUP ... STREAMS cg:in > and reads the next batch only
 * when the work queue is empty (each batch is processed, then acked, then the next is read), and
 * only while the libraries are in (nothing is read before). The group is created (from id 0, so
 * entries written before any router existed are processed) on every connect, again after a
 * back-off (100 ms doubling to 1 s) while Redis is loading or refuses. A timer (every
 * claim_idle_ms / 3, at most 1 s) takes over entries other consumers left pending longer than
 * claim_idle_ms (XAUTOCLAIM, on the cmd connection) and queues an outbox drain; every
 * dead_consumer_ms / 2 it deletes the consumers of the group idle longer than dead_consumer_ms
 * with nothing pending (routers that are gone; a live one is re-created by its next read). */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/rlib.h"
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
        char id[48], conv[MSG_ID_MAX] = "", rated[4] = "", seq[24] = "";
        const redisReply *m = NULL;
        evres_text(e->element[0], id, sizeof(id));
        for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
            const redisReply *key = f->element[k];
            if (key->type != REDIS_REPLY_STRING) continue;
            if (key->len == 1 && key->str[0] == 'c')
                evres_text(f->element[k + 1], conv, sizeof(conv));
            if (key->len == 1 && key->str[0] == 'm') m = f->element[k + 1];
            if (key->len == 1 && key->str[0] == 'r')
                evres_text(f->element[k + 1], rated, sizeof(rated));
            if (key->len == 1 && key->str[0] == 's')
                evres_text(f->element[k + 1], seq, sizeof(seq));
        }
        if (!m || m->type != REDIS_REPLY_STRING) {
            /* an entry without a message: queue it anyway so it is acked like a bad one */
            job_push_entry(r, id, conv, "", 0, 0, 0);
            continue;
        }
        job_push_entry(r, id, conv, m->str, m->len, atoi(rated), strtoull(seq, NULL, 10));
    }
}

static void inbound_read_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    r->reading = 0;
    if (!reply || r->stopping) return; /* connection lost: the state callback starts over */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strcmp(r->in_why, reply->str) != 0) log_warn("XREADGROUP failed: %s", reply->str);
        snprintf(r->in_why, sizeof(r->in_why), "%s", reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            r->group_ok = 0;
            inbound_group_create(r);
        }
        return; /* otherwise read again on the next claim tick */
    }
    r->in_why[0] = '\0';
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
    if (r->stopping || r->reading || !r->group_ok || !r->fn_loaded || r->head) return;
    if (!r->in || !rconn_is_up(r->in)) return;
    char count[24], block[24];
    snprintf(count, sizeof(count), "%lld", r->cfg.read_count);
    snprintf(block, sizeof(block), "%lld", r->cfg.block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", "routers", r->cfg.router_id, "COUNT", count,
                          "BLOCK",      block,   "STREAMS", CG_KEY_INBOUND,   ">"};
    if (rconn_cmdargv(r->in, inbound_read_reply, r, 11, argv, NULL) != 0) return;
    r->reading = 1;
    store_maybe_ready(r);
}

static void inbound_group_retry(uv_timer_t *t) {
    inbound_group_create(t->data);
}

static void inbound_group_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    if (!reply || r->stopping) return; /* connection lost: the state callback starts over */
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        if (strcmp(r->in_why, reply->str) != 0)
            log_warn("XGROUP CREATE failed: %s (retrying)", reply->str);
        snprintf(r->in_why, sizeof(r->in_why), "%s", reply->str);
        r->group_backoff_ms = rlib_backoff(r->group_backoff_ms);
        uv_timer_start(&r->group_retry, inbound_group_retry, r->group_backoff_ms, 0);
        return;
    }
    r->in_why[0] = '\0';
    r->group_backoff_ms = 0;
    r->group_ok = 1;
    inbound_read_next(r);
}

static void inbound_group_create(router *r) {
    if (r->stopping || r->group_ok || !r->in || !rconn_is_up(r->in)) return;
    if (uv_is_active((uv_handle_t *)&r->group_retry)) return;
    rconn_cmd(r->in, inbound_group_reply, r, "XGROUP CREATE " CG_KEY_INBOUND " routers 0 MKSTREAM");
}

static void inbound_state(rconn *rc, int up, void *priv) {
    router *r = priv;
    r->group_ok = 0;
    r->reading = 0;
    r->ready_logged = 0;
    r->group_backoff_ms = 0;
    if (uv_is_active((uv_handle_t *)&r->group_retry)) uv_timer_stop(&r->group_retry);
    if (r->stopping) return;
    if (!up) {
        log_warn("Redis read connection down");
        cg_strlcpy(r->in_why, "read connection down", sizeof(r->in_why));
        return;
    }
    cg_strlcpy(r->in_why, "consumer group", sizeof(r->in_why));
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
    evres_text(reply->element[0], r->claim_cursor, sizeof(r->claim_cursor));
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
    const char *argv[] = {"XAUTOCLAIM", CG_KEY_INBOUND,  "routers", r->cfg.router_id,
                          idle,         r->claim_cursor, "COUNT",   count};
    if (rconn_cmdargv(r->cmd, inbound_claim_reply, r, 8, argv, NULL) == 0) r->claiming = 1;
}

/* The value of field name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *inbound_field(const redisReply *e, const char *name) {
    for (size_t k = 0; e && e->type == REDIS_REPLY_ARRAY && k + 1 < e->elements; k += 2) {
        const redisReply *key = e->element[k];
        if (key->type == REDIS_REPLY_STRING && strcmp(key->str, name) == 0)
            return e->element[k + 1];
    }
    return NULL;
}

/* XINFO CONSUMERS: [[name, n, pending, p, idle, ms, ...], ...]. Delete every other consumer idle
 * longer than dead_consumer_ms with nothing pending (its entries were claimed first). */
static void inbound_consumers_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    r->consumers_checking = 0;
    if (!reply || r->stopping || reply->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        char name[MSG_ID_MAX + 64];
        evres_text(inbound_field(e, "name"), name, sizeof(name));
        long long pending = evres_number(inbound_field(e, "pending"));
        long long idle = evres_number(inbound_field(e, "idle"));
        if (!name[0] || strcmp(name, r->cfg.router_id) == 0) continue;
        if (pending > 0 || idle <= r->cfg.dead_consumer_ms) continue;
        const char *argv[] = {"XGROUP", "DELCONSUMER", CG_KEY_INBOUND, "routers", name};
        if (rconn_cmdargv(r->cmd, NULL, NULL, 5, argv, NULL) != 0) return;
        log_info("consumer %s of cg:in removed: idle for %lld ms with nothing pending", name, idle);
    }
}

/* Look for dead consumers when dead_consumer_ms / 2 has passed since the last look. */
static void inbound_consumers(router *r) {
    int64_t now = cg_now_ms();
    if (r->cfg.dead_consumer_ms <= 0 || r->consumers_checking || !r->fn_loaded) return;
    if (now - r->consumers_at < r->cfg.dead_consumer_ms / 2) return;
    if (!r->cmd || !rconn_is_up(r->cmd)) return;
    const char *argv[] = {"XINFO", "CONSUMERS", CG_KEY_INBOUND, "routers"};
    if (rconn_cmdargv(r->cmd, inbound_consumers_reply, r, 4, argv, NULL) != 0) return;
    r->consumers_checking = 1;
    r->consumers_at = now;
}

static void inbound_tick(uv_timer_t *t) {
    router *r = t->data;
    if (r->stopping) return;
    inbound_claim(r);
    inbound_consumers(r);
    if (r->fn_loaded) job_push_outbox(r);
    job_kick(r);
    inbound_read_next(r);
}

int inbound_start(router *r) {
    cg_err err = {{0}, {0}};
    uv_timer_init(r->loop, &r->claim_timer);
    r->claim_timer.data = r;
    uv_timer_init(r->loop, &r->group_retry);
    r->group_retry.data = r;
    unsigned timeout = (unsigned)(r->cfg.block_ms + 5000);
    r->in = rconn_new(r->loop, r->cfg.redis_url, "in", timeout, inbound_state, r, &err);
    if (!r->in) {
        log_error("redis_url: %s", err.msg);
        return -1;
    }
    uint64_t every = (uint64_t)(r->cfg.claim_idle_ms / 3);
    if (every > 1000) every = 1000;
    uv_timer_start(&r->claim_timer, inbound_tick, every, every);
    rconn_start(r->in);
    return 0;
}

void inbound_stop(router *r) {
    if (r->claim_timer.loop && !uv_is_closing((uv_handle_t *)&r->claim_timer)) {
        uv_timer_stop(&r->claim_timer);
        uv_close((uv_handle_t *)&r->claim_timer, NULL);
    }
    if (r->group_retry.loop && !uv_is_closing((uv_handle_t *)&r->group_retry)) {
        uv_timer_stop(&r->group_retry);
        uv_close((uv_handle_t *)&r->group_retry, NULL);
    }
    if (r->in) rconn_free(&r->in);
}
