/* metrics.c -- GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * Served through the webhook request machinery (webhook.h: deferred answer, request lifetime):
 * this gateway's own gauges and counters, plus per-queue gauges read from Redis at scrape time
 * (waiting conversations, oldest wait, available agents). One SMEMBERS, then one pipelined
 * batch of 3 commands per queue. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "webhook.h"

#include "../common/util.h"

#define METRICS_QUEUES_MAX 256

typedef struct mq {
    char name[MSG_CODE_MAX];
    long long waiting, available;
    double oldest_s;
} mq;

typedef struct metrics_req {
    wh_req *q;
    unsigned pending;
    int failed;
    unsigned n;
    mq queues[METRICS_QUEUES_MAX];
} metrics_req;

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return;
        b->p = p;
        b->cap = cap;
    }
}

/* A label value with \, " and newline escaped as the text format requires. */
static const char *esc(const char *s, char *out, size_t n) {
    size_t j = 0;
    for (; *s && j + 2 < n; s++) {
        if (*s == '\\' || *s == '"') out[j++] = '\\';
        if (*s == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
            continue;
        }
        out[j++] = *s;
    }
    out[j] = 0;
    return out;
}

static void metric_head(buf *b, const char *name, const char *type, const char *help) {
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Render everything and answer the request. */
static void metrics_render(metrics_req *m) {
    buf b = {0};
    char gid[128], ql[2 * MSG_CODE_MAX];
    esc(G.cfg.gateway_id, gid, sizeof(gid));
    unsigned cust = 0, agents = 0;
    for (sess *s = G.sessions; s; s = s->next) {
        if (s->role == SESS_AGENT)
            agents++;
        else
            cust++;
    }
    metric_head(&b, "chatgw_gateway_connections", "gauge", "Open WebSocket connections.");
    bprintf(&b, "chatgw_gateway_connections{gateway=\"%s\",role=\"customer\"} %u\n", gid, cust);
    bprintf(&b, "chatgw_gateway_connections{gateway=\"%s\",role=\"agent\"} %u\n", gid, agents);
    metric_head(&b, "chatgw_gateway_messages_in_total", "counter",
                "Client messages this gateway stored.");
    bprintf(&b, "chatgw_gateway_messages_in_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)G.msgs_in);
    metric_head(&b, "chatgw_gateway_frames_out_total", "counter",
                "Frames this gateway queued to its clients.");
    bprintf(&b, "chatgw_gateway_frames_out_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)G.msgs_out);
    metric_head(&b, "chatgw_redis_up", "gauge", "1 when both Redis connections are up.");
    bprintf(&b, "chatgw_redis_up{gateway=\"%s\"} %d\n", gid,
            rconn_is_up(G.redis) && rconn_is_up(G.sub) && !m->failed);
    if (!m->failed) {
        metric_head(&b, "chatgw_queue_waiting", "gauge", "Conversations waiting in the queue.");
        for (unsigned i = 0; i < m->n; i++)
            bprintf(&b, "chatgw_queue_waiting{queue=\"%s\"} %lld\n",
                    esc(m->queues[i].name, ql, sizeof(ql)), m->queues[i].waiting);
        metric_head(&b, "chatgw_queue_oldest_wait_seconds", "gauge",
                    "How long the oldest waiting conversation has waited.");
        for (unsigned i = 0; i < m->n; i++)
            bprintf(&b, "chatgw_queue_oldest_wait_seconds{queue=\"%s\"} %.3f\n",
                    esc(m->queues[i].name, ql, sizeof(ql)), m->queues[i].oldest_s);
        metric_head(&b, "chatgw_queue_agents_available", "gauge",
                    "Online agents of the queue with free capacity.");
        for (unsigned i = 0; i < m->n; i++)
            bprintf(&b, "chatgw_queue_agents_available{queue=\"%s\"} %lld\n",
                    esc(m->queues[i].name, ql, sizeof(ql)), m->queues[i].available);
    }
    wh_respond(m->q, b.p ? 200 : 503, "text/plain; version=0.0.4; charset=utf-8",
               b.p ? b.p : "out of memory\n");
    free(b.p);
}

static void metrics_done(metrics_req *m) {
    if (--m->pending) return;
    wh_req *q = m->q;
    if (q->wsi) metrics_render(m);
    wh_release(q, 0);
    free(m);
}

typedef struct mq_reply {
    metrics_req *m;
    unsigned i;
    int what; /* 0 waiting, 1 oldest, 2 available */
} mq_reply;

static void on_queue_reply(rconn *rc, redisReply *r, void *priv) {
    mq_reply *x = priv;
    metrics_req *m = x->m;
    mq *q = &m->queues[x->i];
    if (!r || r->type == REDIS_REPLY_ERROR)
        m->failed = 1;
    else if (x->what == 0 && r->type == REDIS_REPLY_INTEGER)
        q->waiting = r->integer;
    else if (x->what == 2 && r->type == REDIS_REPLY_INTEGER)
        q->available = r->integer;
    else if (x->what == 1 && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        /* score = (9 - prio) * 1e13 + queued_at_ms (docs/architecture.md) */
        double score = strtod(r->element[1]->str, NULL);
        double queued_at = score - 1e13 * (double)(long long)(score / 1e13);
        double age = ((double)cg_now_ms() - queued_at) / 1000.0;
        q->oldest_s = age > 0 ? age : 0;
    }
    free(x);
    metrics_done(m);
}

static void queue_cmd(metrics_req *m, unsigned i, int what, const char *fmt, const char *name) {
    mq_reply *x = calloc(1, sizeof(*x));
    if (!x) {
        m->failed = 1;
        return;
    }
    x->m = m;
    x->i = i;
    x->what = what;
    m->pending++;
    if (rconn_cmd(G.redis, on_queue_reply, x, fmt, name) < 0) {
        m->pending--;
        m->failed = 1;
        free(x);
    }
}

static void on_queues(rconn *rc, redisReply *r, void *priv) {
    metrics_req *m = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) m->failed = 1;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (m->n == METRICS_QUEUES_MAX || r->element[i]->type != REDIS_REPLY_STRING ||
            r->element[i]->len >= MSG_CODE_MAX)
            continue;
        unsigned k = m->n++;
        snprintf(m->queues[k].name, sizeof(m->queues[k].name), "%s", r->element[i]->str);
        queue_cmd(m, k, 0, "ZCARD cg:queue:%s", m->queues[k].name);
        queue_cmd(m, k, 1, "ZRANGE cg:queue:%s 0 0 WITHSCORES", m->queues[k].name);
        queue_cmd(m, k, 2, "ZCARD cg:avail:%s", m->queues[k].name);
    }
    metrics_done(m);
}

static int metrics_enabled(void) {
    return 1;
}

static void metrics_get(wh_req *q) {
    metrics_req *m = calloc(1, sizeof(*m));
    if (!m) {
        wh_respond(q, 503, "text/plain", "out of memory\n");
        return;
    }
    m->q = q;
    wh_hold(q);
    m->pending = 1;
    if (rconn_cmd(G.redis, on_queues, m, "SMEMBERS cg:queues") < 0) {
        m->failed = 1;
        metrics_done(m); /* answers with the gateway's own metrics and chatgw_redis_up 0 */
    }
}

static void metrics_post(wh_req *q) {
    wh_respond(q, 405, "text/plain", "GET only\n");
}

const wh_hook hook_metrics = {"/metrics", 1, 0, metrics_enabled, metrics_get, metrics_post};
