/* notify.c -- queue snapshots and the assignment outbox.
 *
 * Snapshots: a queue marked dirty gets, on the next loop turn (one 0-ms timer for every queue
 * marked meanwhile), FCALL cg_queue_list <q> 50, turned into a `queue` msg that is stored in
 * cg:qsnap:<q> (plain msgpack, for agents that connect later) and published on cg:q:<q> (with the
 * 8-byte seq-0 prefix). Snapshots are best effort: one lost while Redis is away is replaced by the
 * next change.
 *
 * Outbox: an outbox job announces the assignments nobody announced yet in one call
 * (cg_outbox_announce: those of a router that died between its call and the announcement, a
 * queue's configuration, a dead gateway's agents reaped); it runs after every (re)connect and on
 * every claim tick. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define NOTIFY_LIMIT "50"
#define NOTIFY_OUTBOX_LIMIT 100
#define NOTIFY_PREFIX 8

typedef struct notify_snap {
    router *r;
    char queue[MSG_CODE_MAX];
} notify_snap;

static void notify_flush_cb(uv_timer_t *t);

void notify_init(router *r) {
    uv_timer_init(r->loop, &r->notify_timer);
    r->notify_timer.data = r;
}

void notify_stop(router *r) {
    if (uv_is_closing((uv_handle_t *)&r->notify_timer)) return;
    uv_timer_stop(&r->notify_timer);
    uv_close((uv_handle_t *)&r->notify_timer, NULL);
}

void notify_kick(router *r) {
    if (r->stopping || r->n_dirty == 0 || !r->fn_loaded) return;
    if (uv_is_active((uv_handle_t *)&r->notify_timer)) return;
    uv_timer_start(&r->notify_timer, notify_flush_cb, 0, 0);
}

void notify_dirty(router *r, const char *queue) {
    if (!queue || !queue[0]) return;
    for (int i = 0; i < r->n_dirty; i++)
        if (strcmp(r->dirty[i], queue) == 0) return;
    if (r->n_dirty == ROUTER_DIRTY_MAX) {
        log_warn("too many queues changed at once; snapshot of %s skipped", queue);
        return;
    }
    cg_strlcpy(r->dirty[r->n_dirty++], queue, MSG_CODE_MAX);
    notify_kick(r);
}

/* Copy at most n-1 bytes of a UTF-8 string, never cutting a character. */
static void notify_copy_utf8(char *dst, const redisReply *src, size_t n) {
    evres_text(src, dst, n);
    size_t len = strlen(dst);
    if (src->type != REDIS_REPLY_STRING || src->len <= len) return;
    while (len > 0 && ((unsigned char)dst[len] & 0xC0) == 0x80)
        len--;
    dst[len] = '\0';
}

/* Fill one item from {conv, position, queued_at, channel, prio, preview[, ring]}. -1 if
 * malformed. */
static int notify_item(const redisReply *row, msg_queue_item *it) {
    if (!row || row->type != REDIS_REPLY_ARRAY || row->elements < 6) return -1;
    char channel[MSG_CODE_MAX];
    memset(it, 0, sizeof(*it));
    evres_text(row->element[0], it->conv, sizeof(it->conv));
    it->position = (uint32_t)evres_number(row->element[1]);
    it->since_ms = evres_number(row->element[2]);
    evres_text(row->element[3], channel, sizeof(channel));
    msg_channel ch = CH_WEB;
    if (msg_channel_parse(channel, &ch) == 0) it->channel = ch;
    long long prio = evres_number(row->element[4]);
    it->priority = (uint8_t)(prio < 0 ? 0 : prio > 9 ? 9 : prio);
    notify_copy_utf8(it->preview, row->element[5], sizeof(it->preview));
    long long ring = row->elements > 6 ? evres_number(row->element[6]) : 0;
    it->ring = (uint8_t)(ring < 0 ? 0 : ring > 255 ? 255 : ring);
    return 0;
}

/* SET cg:qsnap:<q> and PUBLISH cg:q:<q> (fire and forget). */
static void notify_send(router *r, const char *queue, const msg *m) {
    size_t len = 0;
    unsigned char *buf = msg_encode_msgpack(m, NOTIFY_PREFIX, &len);
    if (!buf) {
        log_error("out of memory encoding the snapshot of %s", queue);
        return;
    }
    memset(buf, 0, NOTIFY_PREFIX);
    char key[CG_KEY_EXTRA + MSG_CODE_MAX], chan[CG_KEY_EXTRA + MSG_CODE_MAX];
    snprintf(key, sizeof(key), CG_KEY_QSNAP, queue);
    snprintf(chan, sizeof(chan), CG_KEY_CH_QUEUE, queue);
    const char *set[3] = {"SET", key, (const char *)buf + NOTIFY_PREFIX};
    size_t set_len[3] = {3, strlen(key), len};
    const char *pub[3] = {"PUBLISH", chan, (const char *)buf};
    size_t pub_len[3] = {7, strlen(chan), len + NOTIFY_PREFIX};
    rconn_cmdargv(r->cmd, NULL, NULL, 3, set, set_len);
    rconn_cmdargv(r->cmd, NULL, NULL, 3, pub, pub_len);
    free(buf);
}

/* Build the snapshot of queue from cg_queue_list's rows and send it. */
static void notify_snapshot(router *r, const char *queue, const redisReply *rows) {
    msg m;
    msg_init(&m);
    m.type = MSG_QUEUE;
    m.role = ROLE_SYSTEM;
    m.dir = DIR_OUT;
    m.ts_ms = cg_now_ms();
    cg_strlcpy(m.queue, queue, sizeof(m.queue));
    size_t n = rows->elements < MSG_ITEMS_MAX ? rows->elements : MSG_ITEMS_MAX;
    if (n) m.items = calloc(n, sizeof(*m.items));
    if (n && !m.items) {
        log_error("out of memory building the snapshot of %s", queue);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (notify_item(rows->element[i], &m.items[m.n_items]) == 0) m.n_items++;
    notify_send(r, queue, &m);
    log_debug("queue %s: snapshot of %u", queue, m.n_items);
    msg_free(&m);
}

static void notify_list_reply(rconn *rc, redisReply *reply, void *priv) {
    notify_snap *s = priv;
    router *r = s->r;
    if (reply && !r->stopping && reply->type == REDIS_REPLY_ARRAY)
        notify_snapshot(r, s->queue, reply);
    else if (reply && !r->stopping)
        log_warn("cg_queue_list %s: %s", s->queue,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    free(s);
}

static void notify_flush_cb(uv_timer_t *t) {
    router *r = t->data;
    if (r->stopping || !r->fn_loaded || !r->cmd) return;
    for (int i = 0; i < r->n_dirty; i++) {
        notify_snap *s = calloc(1, sizeof(*s));
        if (!s) break;
        s->r = r;
        cg_strlcpy(s->queue, r->dirty[i], sizeof(s->queue));
        const char *argv[6] = {"FCALL",       "cg_queue_list", "1",
                               CG_KEY_TENANT, s->queue,        NOTIFY_LIMIT};
        if (rconn_cmdargv(r->cmd, notify_list_reply, s, 6, argv, NULL) != 0) free(s);
    }
    r->n_dirty = 0;
}

/* 'outbox' rows: announced in the call; refresh their queues' snapshots. */
static void notify_outbox_reply(job *j, redisReply *rep) {
    const redisReply *rows = evres_get(rep, "rows");
    if (!rows || rows->type != REDIS_REPLY_ARRAY) {
        log_warn("cg_outbox_announce: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
        return;
    }
    for (size_t i = 0; i < rows->elements; i++) {
        asg_row row;
        if (store_row_parse(rows->element[i], &row) != 0) continue;
        log_info("outbox: announced conv %s assigned to %s", row.conv, row.agent);
        if (row.queue[0]) notify_dirty(j->r, row.queue);
    }
    if (rows->elements >= NOTIFY_OUTBOX_LIMIT) j->then = notify_outbox_step;
}

void notify_outbox_step(job *j) {
    evarg a;
    evarg_init(&a);
    evarg_int(&a, "now", j->now_ms);
    evarg_int(&a, "limit", NOTIFY_OUTBOX_LIMIT);
    say_rows_fields(&a, j);
    j->rows_announced = 1;
    evarg_call(j, "cg_outbox_announce", notify_outbox_reply, &a);
}
