/* store.c -- the router's command connection: brings the function library chatgw in (loading ours
 * only when Redis holds none or an older version, retrying with back-off while Redis is loading,
 * busy or read-only) and publishes the queue configuration and the queues' canned replies on every
 * connect, then lets the work queue, the claims, the outbox and the snapshots run; reply helpers.
 * The library is checked again every second (health.c), so one deleted, flushed or replaced
 * by an older process comes back (docs/architecture.md, "Loading and health"). */
#include "router.h"
#include "desk_schema.h"
#include "rcfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/rlib.h"
#include "../common/util.h"

extern unsigned char redis_chatgw_lua[];
extern unsigned int redis_chatgw_lua_len;

void store_maybe_ready(router *r) {
    if (r->ready_logged || !r->fn_loaded || !r->group_ok || !r->reading) return;
    log_info("router %s ready%s", r->cfg.router_id, r->ready_once ? " again" : "");
    r->ready_logged = 1;
    r->ready_once = 1;
}

#define STORE_QUEUE_ARGS 9 /* per queue in cg_queuecfg */

/* The text arguments of one queue that are not in the set as text. */
typedef struct store_qargs {
    char prio[8];
    char after[24];
    char overflow[1024];
    char next_change[24];
} store_qargs;

static void store_queues_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = priv;
    if (!reply || r->stopping) return; /* published again on the next connect */
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("cg_queuecfg failed: %s", reply->str);
        return;
    }
    log_info("queue configuration published (%lld waiting assigned)", evres_number(reply));
    if (evres_number(reply) <= 0) return;
    job_push_outbox(r); /* the assignments are in the outbox: announce them */
    job_kick(r);
}

/* Join l's items with commas into out (items that do not fit are left out). */
static void store_join(const cls_list *l, char *out, size_t n) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < l->n; i++) {
        int w = snprintf(out + o, n - o, "%s%s", o ? "," : "", l->items[i]);
        if (w < 0 || (size_t)w >= n - o) {
            out[o] = '\0';
            return;
        }
        o += (size_t)w;
    }
}

/* A queue's rings as the library reads them from its `overflow` field (redis/assign.lua,
 * overflow_cfg): "<ms>:<queue>,<queue>;<ms>:..." by time, items of one time in one ring; after
 * gets the first ring's seconds (overflow_after_s, for readers of the one-ring form). A library
 * that knows no rings finds no queue of those names: nothing overflows. */
static void store_rings(const cls_queue *q, char *out, size_t n, char *after, size_t an) {
    size_t o = 0;
    long long last = 0;
    out[0] = '\0';
    for (;;) { /* the next larger time, then every item of it */
        long long t = 0, secs;
        char name[CLS_NAME_MAX];
        for (size_t i = 0; i < q->rings.n; i++)
            if (rcfg_ring_item(q->rings.items[i], &secs, name, sizeof(name)) == 0 && secs > last &&
                (!t || secs < t))
                t = secs;
        if (!t) return;
        if (!last) snprintf(after, an, "%lld", t);
        int w = snprintf(out + o, n - o, "%s%lld:", o ? ";" : "", t * 1000);
        if (w < 0 || (size_t)w >= n - o) goto full;
        o += (size_t)w;
        for (size_t i = 0, k = 0; i < q->rings.n; i++) {
            if (rcfg_ring_item(q->rings.items[i], &secs, name, sizeof(name)) != 0 || secs != t)
                continue;
            w = snprintf(out + o, n - o, "%s%s", k++ ? "," : "", name);
            if (w < 0 || (size_t)w >= n - o) goto full;
            o += (size_t)w;
        }
        last = t;
    }
full:
    out[0] = '\0'; /* too long for the field: no rings rather than some */
}

static void store_canned_reply(rconn *rc, redisReply *reply, void *priv) {
    (void)rc;
    router *r = priv;
    if (!reply || r->stopping) return; /* published again on the next connect */
    if (reply->type == REDIS_REPLY_ERROR) log_error("cg_canned_set failed: %s", reply->str);
}

/* Publish the canned replies of every queue of the set: one FCALL cg_canned_set per queue (DEL +
 * HSET cg:canned:<queue> in one step; a queue without replies just loses its hash). Sent after
 * cg_queuecfg on the same connection, which deletes the hashes of dropped queues. */
static void store_publish_canned(router *r) {
    const cls_set *set = &r->cls;
    size_t max = 5 + 2 * (size_t)CLS_CANNED_PER_QUEUE;
    const char **argv = calloc(max, sizeof(*argv));
    size_t *lens = calloc(max, sizeof(*lens));
    if (!argv || !lens) {
        log_error("out of memory publishing the canned replies");
        free(argv);
        free(lens);
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < set->n_queues; i++) {
        const char *q = set->queues[i].name;
        size_t argc = 5;
        argv[0] = "FCALL";
        argv[1] = "cg_canned_set";
        argv[2] = "1";
        argv[3] = CG_KEY_TENANT;
        argv[4] = q;
        for (size_t k = 0; k < set->n_canned && argc + 2 <= max; k++) {
            const cls_canned *c = &set->canned[k];
            if (strcmp(c->queue, q) != 0) continue;
            argv[argc] = c->name;
            argv[argc + 1] = c->text;
            argc += 2;
        }
        for (size_t k = 0; k < argc; k++)
            lens[k] = strlen(argv[k]);
        total += (argc - 5) / 2;
        if (rconn_cmdargv(r->cmd, store_canned_reply, r, (int)argc, argv, lens) != 0)
            log_warn("cannot publish the canned replies of %s now (next connect will)", q);
    }
    log_info("canned replies published: %zu in %zu queues", total, set->n_queues);
    free(argv);
    free(lens);
}

/* The comma list "default,<rule>,…" of the categories an agent may classify with (reclass.c)
 * into out (size n); rules that do not fit are left out (logged). */
static void store_categories(const cls_set *set, char *out, size_t n) {
    size_t len = (size_t)snprintf(out, n, "default");
    for (size_t i = 0; i < set->n_rules && len < n; i++) {
        size_t k = strlen(set->rules[i].name);
        if (len + 1 + k >= n) {
            log_warn("categories: '%s' and later rules not published (list too long)",
                     set->rules[i].name);
            return;
        }
        out[len++] = ',';
        memcpy(out + len, set->rules[i].name, k + 1);
        len += k;
    }
}

/* The desk's timings for the steady state that cg_message handles itself (redis/conv.lua,
 * steady) and the channels' weights (redis/assign.lua): FCALL cg_deskcfg (DEL + HSET cg:deskcfg
 * in one step, and the library forgets what it remembered of them): ready 1, first_s:<channel>
 * and next_s:<channel> (the response SLAs, seconds), weight:<channel> (channel_weights: the
 * capacity units a conversation takes), idle_close_s, idem_ttl_s (idempotency_ttl_s: how long
 * cg_message remembers a message id), and hours:<queue> 1 for each queue that
 * counts business hours (its deadlines stay the routers'). The agent consoles' lists ride along
 * (read by the gateway's GET /desk, gateway/desk.c): resolutions and unresolved_resolutions as
 * configured (comma lists) and categories ("default" and the classification rules' names). */
static void store_publish_timings(router *r) {
    const cls_set *set = &r->cls;
    size_t argc = 6 + 6 * (CH_COUNT - 1) + 2 + 2 + 6 + 2 * set->n_queues;
    char categories[4096];
    store_categories(set, categories, sizeof(categories));
    const char **argv = calloc(argc, sizeof(*argv));
    char(*num)[24] = calloc(3 * CH_COUNT + 1, sizeof(*num));
    char(*names)[3][MSG_CODE_MAX + 16] = calloc(CH_COUNT + set->n_queues, sizeof(*names));
    if (!argv || !num || !names) {
        log_error("out of memory publishing the desk's timings");
        goto done;
    }
    size_t n = 0, k = 0;
    argv[n++] = "FCALL";
    argv[n++] = "cg_deskcfg";
    argv[n++] = "1";
    argv[n++] = CG_KEY_TENANT;
    argv[n++] = "ready";
    argv[n++] = "1";
    for (int c = 1; c < CH_COUNT; c++, k++) {
        snprintf(names[k][0], sizeof(names[k][0]), "first_s:%s", msg_channel_name((msg_channel)c));
        snprintf(names[k][1], sizeof(names[k][1]), "next_s:%s", msg_channel_name((msg_channel)c));
        snprintf(num[2 * c], sizeof(num[0]), "%lld", r->sla.first_s[c]);
        snprintf(num[2 * c + 1], sizeof(num[0]), "%lld", r->sla.next_s[c]);
        argv[n++] = names[k][0];
        argv[n++] = num[2 * c];
        argv[n++] = names[k][1];
        argv[n++] = num[2 * c + 1];
        /* weight:<channel>: the capacity units its conversations take (assign.lua) */
        snprintf(names[k][2], sizeof(names[k][2]), "weight:%s", msg_channel_name((msg_channel)c));
        snprintf(num[2 * CH_COUNT + c], sizeof(num[0]), "%g",
                 (double)r->sla.weight_milli[c] / 1000.0);
        argv[n++] = names[k][2];
        argv[n++] = num[2 * CH_COUNT + c];
    }
    snprintf(num[0], sizeof(num[0]), "%lld", r->cfg.idle_close_s);
    argv[n++] = "idle_close_s";
    argv[n++] = num[0];
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", r->cfg.idempotency_ttl_s);
    argv[n++] = "idem_ttl_s";
    argv[n++] = ttl;
    argv[n++] = "resolutions";
    argv[n++] = r->cfg.resolutions;
    argv[n++] = "unresolved_resolutions";
    argv[n++] = r->cfg.unresolved_resolutions;
    argv[n++] = "categories";
    argv[n++] = categories;
    for (size_t i = 0; i < set->n_queues; i++) {
        const cls_queue *q = &set->queues[i];
        if (!hours_counted(&q->hours)) continue;
        snprintf(names[k][0], sizeof(names[k][0]), "hours:%s", q->name);
        argv[n++] = names[k++][0];
        argv[n++] = "1";
    }
    if (rconn_cmdargv(r->cmd, NULL, NULL, (int)n, argv, NULL) != 0)
        log_warn("cannot publish the desk's timings now (next connect will)");
done:
    free(argv);
    free(num);
    free(names);
}

void store_publish_queues(router *r) {
    if (r->stopping || !r->fn_loaded || !r->cmd || !rconn_is_up(r->cmd)) return;
    const cls_set *set = &r->cls;
    size_t argc = 5 + STORE_QUEUE_ARGS * set->n_queues;
    char now[24];
    int64_t now_ms = cg_now_ms();
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    const char **argv = calloc(argc, sizeof(*argv));
    store_qargs *qa = calloc(set->n_queues ? set->n_queues : 1, sizeof(*qa));
    if (!argv || !qa) {
        log_error("out of memory publishing the queue configuration");
        free(argv);
        free(qa);
        return;
    }
    argv[0] = "FCALL";
    argv[1] = "cg_queuecfg";
    argv[2] = "1";
    argv[3] = CG_KEY_TENANT;
    argv[4] = now;
    for (size_t i = 0; i < set->n_queues; i++) {
        const cls_queue *q = &set->queues[i];
        const char **a = argv + 5 + STORE_QUEUE_ARGS * i;
        snprintf(qa[i].prio, sizeof(qa[i].prio), "%d", q->priority);
        snprintf(qa[i].after, sizeof(qa[i].after), "%lld", q->overflow_after_s);
        if (q->rings.n)
            store_rings(q, qa[i].overflow, sizeof(qa[i].overflow), qa[i].after,
                        sizeof(qa[i].after));
        else
            store_join(&q->overflow, qa[i].overflow, sizeof(qa[i].overflow));
        snprintf(qa[i].next_change, sizeof(qa[i].next_change), "%lld",
                 (long long)hours_next_change(&q->hours, now_ms));
        a[0] = q->name;
        a[1] = q->mode == CLS_PULL ? "pull" : "push";
        a[2] = qa[i].prio;
        a[3] = q->name_zh;
        a[4] = q->name_en;
        a[5] = qa[i].overflow;
        a[6] = qa[i].after;
        a[7] = hours_open(&q->hours, now_ms) ? "0" : "1";
        a[8] = qa[i].next_change;
    }
    if (rconn_cmdargv(r->cmd, store_queues_reply, r, (int)argc, argv, NULL) != 0)
        log_warn("cannot publish the queue configuration now (next connect will)");
    free(argv);
    free(qa);
    store_publish_canned(r);
    store_publish_timings(r);
}

/* Both libraries are in: start (or resume) everything that uses the cmd connection. The queue
 * configuration goes first, so every later command on cmd sees it. Each queue is published with
 * whether it is closed now (business hours) and when that changes next (an hours:<queue> timer
 * that publishes the configuration again then). */
static void store_on_loaded(router *r) {
    r->fn_loaded = 1;
    log_info("Redis functions loaded");
    store_publish_queues(r);
    job_push_outbox(r);
    inbound_claim(r);
    notify_kick(r);
    job_kick(r);
    inbound_read_next(r);
    store_maybe_ready(r);
}

/* ---- the library: version check, load only when missing or older --------------------------- */

static router *store_self;           /* the process's router, for store_transient's self-healing */
static long long store_newer_logged; /* the newer version we last said we keep */

static long long store_mine(void) {
    return rlib_version(redis_chatgw_lua, redis_chatgw_lua_len);
}

static void store_start_retry(uv_timer_t *t) {
    store_check_libs(t->data);
}

/* A step of the start-up could not be done now (why): check the library again after the next
 * back-off (100 ms doubling to 1 s). */
static void store_retry_later(router *r, const char *why) {
    if (r->stopping || !r->cmd || !rconn_is_up(r->cmd)) return;
    static char logged[sizeof(r->why)];
    if (strcmp(logged, why) != 0) log_warn("Redis not ready: %s (retrying)", why);
    cg_strlcpy(logged, why, sizeof(logged));
    if (r->why != why) cg_strlcpy(r->why, why, sizeof(r->why));
    r->start_backoff_ms = rlib_backoff(r->start_backoff_ms);
    uv_timer_start(&r->start_retry, store_start_retry, r->start_backoff_ms, 0);
}

/* The library is ours or newer. */
static void store_libs_in(router *r) {
    r->start_backoff_ms = 0;
    r->why[0] = '\0';
    if (!r->fn_loaded) store_on_loaded(r);
}

static void store_load_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = store_self;
    r->lib_checking = 0;
    if (!reply || r->stopping) return; /* connection lost: the next connect checks */
    const redisReply *res = rlib_load_result(reply);
    if (!res || res->type == REDIS_REPLY_ERROR) {
        log_error("FUNCTION LOAD " RLIB_NAME " failed: %s", res ? res->str : "no answer");
        store_retry_later(r, "FUNCTION LOAD failed");
        return;
    }
    log_info("library " RLIB_NAME " version %lld loaded", store_mine());
    store_libs_in(r);
}

static void store_version_reply(rconn *rc, redisReply *reply, void *priv) {
    router *r = store_self;
    r->lib_checking = 0;
    if (r->stopping || !r->cmd || !rconn_is_up(r->cmd)) return; /* the next connect checks */
    long long mine = store_mine();
    rlib_verdict v = rlib_check(reply, mine, &r->lib_theirs);
    if (v == RLIB_RETRY) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            snprintf(r->why, sizeof(r->why), "%s", reply->str);
        else if (reply)
            snprintf(r->why, sizeof(r->why), "library " RLIB_NAME ": unexpected version reply");
        store_retry_later(r, r->why[0] ? r->why : "library check");
        return;
    }
    if (v == RLIB_NEWER && store_newer_logged != r->lib_theirs) {
        store_newer_logged = r->lib_theirs;
        log_warn("library " RLIB_NAME " version %lld is newer than ours (%lld): keeping it",
                 r->lib_theirs, mine);
    }
    if (v != RLIB_LOAD) {
        store_libs_in(r);
        return;
    }
    r->fn_loaded = 0; /* nothing runs on a missing or older library */
    log_info("library " RLIB_NAME ": Redis holds version %lld, loading ours (%lld)", r->lib_theirs,
             mine);
    if (rlib_load_send(r->cmd, store_load_reply, NULL, redis_chatgw_lua, redis_chatgw_lua_len) == 0)
        r->lib_checking = 1;
}

void store_check_libs(router *r) {
    if (r->stopping || r->lib_checking || !r->cmd || !rconn_is_up(r->cmd)) return;
    if (uv_is_active((uv_handle_t *)&r->start_retry)) return; /* a retry is due anyway */
    const char *argv[4] = {"FCALL_RO", RLIB_VERSION_FN, "1", CG_KEY_TENANT};
    if (rconn_cmdargv(r->cmd, store_version_reply, NULL, 4, argv, NULL) == 0) r->lib_checking = 1;
}

static void store_state(rconn *rc, int up, void *priv) {
    router *r = priv;
    r->fn_loaded = 0;
    r->claiming = 0;
    r->ready_logged = 0;
    r->start_backoff_ms = 0;
    if (uv_is_active((uv_handle_t *)&r->start_retry)) uv_timer_stop(&r->start_retry);
    if (r->stopping) return;
    if (!up) {
        log_warn("Redis command connection down");
        cg_strlcpy(r->why, "command connection down", sizeof(r->why));
        return;
    }
    r->lib_checking = 0; /* the replies of the last connection were all called back */
    cg_strlcpy(r->why, "library check", sizeof(r->why));
    store_check_libs(r);
}

int store_start(router *r) {
    cg_err err = {{0}, {0}};
    store_self = r;
    uv_timer_init(r->loop, &r->start_retry);
    r->start_retry.data = r;
    r->cmd = rconn_new(r->loop, r->cfg.redis_url, "cmd", 5000, store_state, r, &err);
    if (!r->cmd) {
        log_error("redis_url: %s", err.msg);
        return -1;
    }
    rconn_start(r->cmd);
    return 0;
}

void store_stop(router *r) {
    if (r->start_retry.loop && !uv_is_closing((uv_handle_t *)&r->start_retry)) {
        uv_timer_stop(&r->start_retry);
        uv_close((uv_handle_t *)&r->start_retry, NULL);
    }
    if (r->cmd) rconn_free(&r->cmd);
}

int store_row_parse(const redisReply *rep, asg_row *out) {
    memset(out, 0, sizeof(*out));
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 6) return -1;
    evres_text(rep->element[0], out->conv, sizeof(out->conv));
    evres_text(rep->element[1], out->agent, sizeof(out->agent));
    evres_text(rep->element[2], out->agent_name, sizeof(out->agent_name));
    evres_text(rep->element[3], out->queue, sizeof(out->queue));
    out->assign_no = evres_number(rep->element[4]);
    evres_text(rep->element[5], out->channel, sizeof(out->channel));
    if (!out->conv[0] || !out->agent[0]) return -1;
    return 0;
}

int store_transient(const redisReply *rep) {
    if (rlib_transient(rep)) return 1;
    if (!rlib_missing(rep)) return 0;
    /* FCALL before the library is (re)loaded, e.g. after a FUNCTION FLUSH: load it again */
    if (store_self) store_check_libs(store_self);
    return 1;
}
