/* metrics.c -- GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * Served through the webhook request machinery (webhook.h: deferred answer, request lifetime):
 * this gateway's own gauges and counters, plus what is read from Redis at scrape time:
 *   per queue   waiting conversations, oldest wait, available agents (live gauges), and the
 *               desk's service counters cg:kpi:queue:<queue>
 *   per agent   the service counters cg:kpi:agent:<agent> of the agents in cg:kpi:agents
 * The counters are HINCRBY'd by the Redis functions at the moment things happen (redis/desk.lua
 * kpi_add, redis/conv.lua kpi_rating), except the response times, which a conversation holds
 * until it closes (redis/desk.lua rt_add): FCALL_RO cg_kpi_pending adds up what the open ones
 * hold, and that is added to response_ms/_n here, so the figures are live. Definitions:
 * docs/architecture.md, "Desk metrics". Two rounds, both pipelined: SMEMBERS cg:queues, SMEMBERS
 * cg:kpi:agents and cg_kpi_pending, then 4 commands per queue and one HGETALL per agent (at most
 * METRICS_AGENTS_MAX agents, the first by id; a log line says when more were left out).
 *
 * Only for the scraper: every request needs "Authorization: Bearer <metrics_token>" (compared in
 * constant time; 401 otherwise); with no metrics_token configured /metrics answers 403. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw.h"

#include "desk_schema.h"
#include "webhook.h"

#include "../common/log.h"
#include "../common/util.h"

#define METRICS_AUTH_MAX 1024 /* longest Authorization header taken */
#define METRICS_QUEUES_MAX 256
#define METRICS_AGENTS_MAX 10000
#define KPI_SLA_MAX 8   /* breach kinds kept per queue or agent */
#define KPI_KIND_MAX 32 /* longest breach kind + 1 */

/* The counter fields of a cg:kpi hash: CG_KPI_* and cg_kpis[] (desk_schema.h, generated from
 * schema/chatgw.json; the Redis functions write them by the same names). */
#define K_COUNT CG_KPI_COUNT

#define KPI_SLA_PREFIX "sla:" /* sla:<timer kind> = breaches of that kind */

/* One queue's or agent's counters. */
typedef struct kpi {
    char name[MSG_ID_MAX]; /* queue or agent id: the label value */
    long long v[K_COUNT];
    unsigned nsla;
    char sla_kind[KPI_SLA_MAX][KPI_KIND_MAX];
    long long sla_n[KPI_SLA_MAX];
} kpi;

/* One queue's live gauges (its name is in the kpi of the same index). */
typedef struct mq {
    long long waiting, available;
    double oldest_s;
} mq;

/* Response times held by open conversations (cg_kpi_pending): added to the counters. */
typedef struct held {
    int agent; /* 0: a queue's */
    char name[MSG_ID_MAX];
    long long ms, n;
} held;

typedef struct metrics_req {
    wh_req *q;
    held *held;
    size_t nheld;
    unsigned pending;
    int failed;
    unsigned n; /* queues */
    mq queues[METRICS_QUEUES_MAX];
    kpi qk[METRICS_QUEUES_MAX];
    unsigned na; /* agents */
    kpi *ak;
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

/* A label value with \, " and newline escaped as the text format requires. out must hold
 * 2 * strlen(s) + 1 bytes for nothing to be cut. */
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

/* ---- the desk's service counters ---- */

/* Store one field/value of a cg:kpi hash into k (unknown fields are ignored). */
static void kpi_field(kpi *k, const redisReply *f, const redisReply *v) {
    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) return;
    long long n = strtoll(v->str, NULL, 10);
    for (int i = 0; i < K_COUNT; i++) {
        if (strcmp(f->str, cg_kpis[i].field) == 0) {
            k->v[i] = n;
            return;
        }
    }
    size_t plen = strlen(KPI_SLA_PREFIX);
    if (strncmp(f->str, KPI_SLA_PREFIX, plen) != 0 || f->len - plen >= KPI_KIND_MAX ||
        f->len == plen || k->nsla == KPI_SLA_MAX)
        return;
    snprintf(k->sla_kind[k->nsla], KPI_KIND_MAX, "%s", f->str + plen);
    k->sla_n[k->nsla++] = n;
}

/* A HGETALL reply (a flat array of fields and values) into k. */
static void kpi_parse(kpi *k, const redisReply *r) {
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        kpi_field(k, r->element[i], r->element[i + 1]);
}

/* One family's metadata; a summary (no quantiles) reads the ms sum at k_sum and the count at k,
 * a ratio is v[k] / v[k_sum] and omitted when v[k_sum] is 0. */
typedef enum { FAM_SUMMARY, FAM_COUNTER, FAM_RATIO } fam_kind;

typedef struct fam {
    const char *name; /* after chatgw_queue_ / chatgw_agent_ */
    fam_kind kind;
    int k, k_sum;
    int queue_only;
    const char *help;
} fam;

static const fam kpi_fams[] = {
    {"first_response_seconds", FAM_SUMMARY, CG_KPI_FIRST_RESPONSE_N, CG_KPI_FIRST_RESPONSE_MS, 0,
     "Time from a conversation starting to wait (queued, else created) to its first agent "
     "reply."},
    {"response_seconds", FAM_SUMMARY, CG_KPI_RESPONSE_N, CG_KPI_RESPONSE_MS, 0,
     "Time from a customer's first unanswered message to the agent message that answered it."},
    {"resolution_seconds", FAM_SUMMARY, CG_KPI_RESOLUTION_N, CG_KPI_RESOLUTION_MS, 0,
     "Time from a resolved conversation starting to wait (queued, else created) to its close."},
    {"closed_total", FAM_COUNTER, CG_KPI_CLOSED, 0, 0,
     "Conversations closed (any resolution code)."},
    {"resolved_total", FAM_COUNTER, CG_KPI_RESOLVED, 0, 0,
     "Conversations closed with a code starting with resolved."},
    {"fcr_total", FAM_COUNTER, CG_KPI_FCR, 0, 0,
     "Resolved conversations never re-assigned (no transfer, offer timeout, reassign or "
     "unresolved return): first-contact resolutions."},
    {"rated_total", FAM_COUNTER, CG_KPI_RATED, 0, 0,
     "Closed conversations the customer rated (1-5)."},
    {"csat_good_total", FAM_COUNTER, CG_KPI_CSAT_GOOD, 0, 0,
     "Rated conversations whose current rating is 4 or 5."},
    {"abandoned_total", FAM_COUNTER, CG_KPI_ABANDONED, 0, 1,
     "Conversations closed as no_response before any agent answered the customer."},
    {"tickets_limited_total", FAM_COUNTER, CG_KPI_TICKETS_LIMITED, 0, 1,
     "Complaints that got no new ticket: the customer already had tickets_per_customer in "
     "ticket_window_s (told its latest ticket)."},
    {"no_agent_total", FAM_COUNTER, CG_KPI_NO_AGENT, 0, 1,
     "Conversations that started waiting while nobody who serves the queue (or a queue it "
     "overflows into) was online; the customer was told so instead of a queue position."},
    {"fcr_ratio", FAM_RATIO, CG_KPI_FCR, CG_KPI_CLOSED, 0,
     "fcr_total / closed_total over all time (absent while nothing was closed)."},
    {"csat_ratio", FAM_RATIO, CG_KPI_CSAT_GOOD, CG_KPI_RATED, 0,
     "csat_good_total / rated_total over all time (absent while nothing was rated)."},
};

/* One family's lines for every queue (who "queue") or agent (who "agent") of list. */
static void kpi_render_fam(buf *b, const char *who, const fam *f, const kpi *list, unsigned n) {
    char name[96], lv[2 * MSG_ID_MAX];
    snprintf(name, sizeof(name), "chatgw_%s_%s", who, f->name);
    metric_head(b, name,
                f->kind == FAM_SUMMARY   ? "summary"
                : f->kind == FAM_COUNTER ? "counter"
                                         : "gauge",
                f->help);
    for (unsigned i = 0; i < n; i++) {
        const kpi *k = &list[i];
        esc(k->name, lv, sizeof(lv));
        if (f->kind == FAM_SUMMARY) {
            bprintf(b, "%s_sum{%s=\"%s\"} %.3f\n", name, who, lv, (double)k->v[f->k_sum] / 1000.0);
            bprintf(b, "%s_count{%s=\"%s\"} %lld\n", name, who, lv, k->v[f->k]);
        } else if (f->kind == FAM_COUNTER) {
            bprintf(b, "%s{%s=\"%s\"} %lld\n", name, who, lv, k->v[f->k]);
        } else if (k->v[f->k_sum] > 0) {
            bprintf(b, "%s{%s=\"%s\"} %.6g\n", name, who, lv,
                    (double)k->v[f->k] / (double)k->v[f->k_sum]);
        }
    }
}

/* Every counter family of list, then the SLA breaches by kind. */
static void kpi_render(buf *b, const char *who, const kpi *list, unsigned n, int queues) {
    char name[64], lv[2 * MSG_ID_MAX], kv[2 * KPI_KIND_MAX];
    for (size_t i = 0; i < sizeof(kpi_fams) / sizeof(kpi_fams[0]); i++)
        if (queues || !kpi_fams[i].queue_only) kpi_render_fam(b, who, &kpi_fams[i], list, n);
    snprintf(name, sizeof(name), "chatgw_%s_sla_breaches_total", who);
    metric_head(b, name, "counter",
                queues
                    ? "SLA deadlines missed, by the queue the conversation was in and timer kind."
                    : "SLA deadlines missed while the conversation was assigned to the agent, "
                      "by timer kind.");
    for (unsigned i = 0; i < n; i++) {
        esc(list[i].name, lv, sizeof(lv));
        for (unsigned s = 0; s < list[i].nsla; s++)
            bprintf(b, "%s{%s=\"%s\",kind=\"%s\"} %lld\n", name, who, lv,
                    esc(list[i].sla_kind[s], kv, sizeof(kv)), list[i].sla_n[s]);
    }
}

static int kpi_name_cmp(const void *name, const void *k) {
    return strcmp(name, ((const kpi *)k)->name);
}

/* The queue named name (m->qk, in cg:queues' order), or NULL. */
static kpi *kpi_queue(metrics_req *m, const char *name) {
    for (unsigned i = 0; i < m->n; i++)
        if (!strcmp(m->qk[i].name, name)) return &m->qk[i];
    return NULL;
}

/* Add the response times open conversations hold to the counters of their queue and agent. */
static void kpi_add_held(metrics_req *m) {
    for (size_t i = 0; i < m->nheld; i++) {
        const held *h = &m->held[i];
        kpi *k = !h->agent ? kpi_queue(m, h->name)
                 : m->na   ? bsearch(h->name, m->ak, m->na, sizeof(*m->ak), kpi_name_cmp)
                           : NULL; /* m->ak is sorted by name (on_agents) */
        if (!k) continue;
        k->v[CG_KPI_RESPONSE_MS] += h->ms;
        k->v[CG_KPI_RESPONSE_N] += h->n;
    }
}

/* ---- rendering and the request ---- */

/* The per-source limit counters (limit.c, ws.c, client.c). */
static void metrics_limits(buf *b, const char *gid) {
    metric_head(b, "chatgw_gateway_connections_refused_total", "counter",
                "Connections refused at the handshake: max_conns_per_ip (429).");
    bprintf(b, "chatgw_gateway_connections_refused_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)LIM.conn_refused);
    metric_head(b, "chatgw_gateway_conversations_refused_total", "counter",
                "New conversations refused (limit_reached), by limit.");
    bprintf(b,
            "chatgw_gateway_conversations_refused_total{gateway=\"%s\",limit=\"conv_per_ip\"} "
            "%llu\n",
            gid, (unsigned long long)LIM.conv_refused_ip);
    bprintf(
        b,
        "chatgw_gateway_conversations_refused_total{gateway=\"%s\",limit=\"conv_per_customer\"} "
        "%llu\n",
        gid, (unsigned long long)LIM.conv_refused_customer);
    metric_head(b, "chatgw_gateway_frames_rate_limited_total", "counter",
                "Client frames refused by the per-connection token bucket.");
    bprintf(b, "chatgw_gateway_frames_rate_limited_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)LIM.rate_limited);
    metric_head(b, "chatgw_gateway_frames_malformed_total", "counter",
                "Client frames refused as malformed or invalid.");
    bprintf(b, "chatgw_gateway_frames_malformed_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)LIM.malformed);
    metric_head(b, "chatgw_gateway_frame_timeouts_total", "counter",
                "Connections closed because a message was not whole within frame_timeout_ms.");
    bprintf(b, "chatgw_gateway_frame_timeouts_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)LIM.frame_timeouts);
}

/* Render everything and answer the request. */
/* The routers' health keys as the last health round read them (rstate.c): chatgw_router_ok 1/0
 * and chatgw_router_state 1 with the state's first word (ok, loading, stalled, gone). */
static void metrics_routers(buf *b) {
    const rs_router *list;
    unsigned n = rs_routers(&list);
    char rl[2 * MSG_ID_MAX], st[16], sl[2 * sizeof(st)];
    metric_head(b, "chatgw_router_ok", "gauge", "1 when the router's health key says ok.");
    for (unsigned i = 0; i < n; i++)
        bprintf(b, "chatgw_router_ok{router=\"%s\"} %d\n", esc(list[i].id, rl, sizeof(rl)),
                !strcmp(list[i].state, "ok"));
    metric_head(b, "chatgw_router_state", "gauge",
                "The router's state (ok, loading, stalled or gone, when its key expired).");
    for (unsigned i = 0; i < n; i++) {
        size_t k = strcspn(list[i].state, ":");
        snprintf(st, sizeof(st), "%.*s", (int)(k < sizeof(st) - 1 ? k : sizeof(st) - 1),
                 list[i].state);
        bprintf(b, "chatgw_router_state{router=\"%s\",state=\"%s\"} 1\n",
                esc(list[i].id, rl, sizeof(rl)), esc(st, sl, sizeof(sl)));
    }
}

static void metrics_render(metrics_req *m) {
    buf b = {0};
    char gid[128], ql[2 * MSG_ID_MAX];
    esc(G.cfg.gateway_id, gid, sizeof(gid));
    unsigned cust = 0, agents = 0;
    for (sess *s = G.sessions; s; s = s->next) {
        if (s->role == SESS_AGENT)
            agents++;
        else
            cust++;
    }
    metric_head(&b, "chatgw_gateway_connections", "gauge",
                "Open WebSocket connections (pending: no first message yet, no session).");
    bprintf(&b, "chatgw_gateway_connections{gateway=\"%s\",role=\"customer\"} %u\n", gid, cust);
    bprintf(&b, "chatgw_gateway_connections{gateway=\"%s\",role=\"agent\"} %u\n", gid, agents);
    bprintf(&b, "chatgw_gateway_connections{gateway=\"%s\",role=\"pending\"} %u\n", gid,
            G.n_ws_waiting);
    metric_head(&b, "chatgw_gateway_messages_in_total", "counter",
                "Client messages this gateway stored.");
    bprintf(&b, "chatgw_gateway_messages_in_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)G.msgs_in);
    metric_head(&b, "chatgw_gateway_frames_out_total", "counter",
                "Frames this gateway queued to its clients.");
    bprintf(&b, "chatgw_gateway_frames_out_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)G.msgs_out);
    metric_head(&b, "chatgw_gateway_ws_writes_total", "counter",
                "WebSocket writes to clients; the frames queued for one connection leave in one.");
    bprintf(&b, "chatgw_gateway_ws_writes_total{gateway=\"%s\"} %llu\n", gid,
            (unsigned long long)G.ws_writes);
    metrics_limits(&b, gid);
    metric_head(&b, "chatgw_redis_up", "gauge", "1 when both Redis connections are up.");
    bprintf(&b, "chatgw_redis_up{gateway=\"%s\"} %d\n", gid,
            rconn_is_up(G.redis) && rconn_is_up(G.sub) && !m->failed);
    metric_head(&b, "chatgw_redis_ready", "gauge",
                "1 when client frames can be stored: Redis up, answering, not loading.");
    bprintf(&b, "chatgw_redis_ready{gateway=\"%s\"} %d\n", gid, rs_redis_ok());
    metrics_routers(&b);
    if (!m->failed) {
        metric_head(&b, "chatgw_queue_waiting", "gauge", "Conversations waiting in the queue.");
        for (unsigned i = 0; i < m->n; i++)
            bprintf(&b, "chatgw_queue_waiting{queue=\"%s\"} %lld\n",
                    esc(m->qk[i].name, ql, sizeof(ql)), m->queues[i].waiting);
        metric_head(&b, "chatgw_queue_oldest_wait_seconds", "gauge",
                    "How long the oldest waiting conversation has waited.");
        for (unsigned i = 0; i < m->n; i++)
            bprintf(&b, "chatgw_queue_oldest_wait_seconds{queue=\"%s\"} %.3f\n",
                    esc(m->qk[i].name, ql, sizeof(ql)), m->queues[i].oldest_s);
        metric_head(&b, "chatgw_queue_agents_available", "gauge",
                    "Online agents of the queue with free capacity.");
        for (unsigned i = 0; i < m->n; i++)
            bprintf(&b, "chatgw_queue_agents_available{queue=\"%s\"} %lld\n",
                    esc(m->qk[i].name, ql, sizeof(ql)), m->queues[i].available);
        kpi_add_held(m);
        kpi_render(&b, "queue", m->qk, m->n, 1);
        kpi_render(&b, "agent", m->ak, m->na, 0);
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
    free(m->ak);
    free(m->held);
    free(m);
}

/* What a pending reply fills in. */
typedef enum { R_WAITING, R_OLDEST, R_AVAILABLE, R_KPI } reply_what;

typedef struct m_reply {
    metrics_req *m;
    mq *q;  /* R_WAITING .. R_AVAILABLE */
    kpi *k; /* R_KPI */
    reply_what what;
} m_reply;

static void on_reply(rconn *rc, redisReply *r, void *priv) {
    m_reply *x = priv;
    metrics_req *m = x->m;
    mq *q = x->q;
    if (!r || r->type == REDIS_REPLY_ERROR)
        m->failed = 1;
    else if (x->what == R_WAITING && r->type == REDIS_REPLY_INTEGER)
        q->waiting = r->integer;
    else if (x->what == R_AVAILABLE && r->type == REDIS_REPLY_INTEGER)
        q->available = r->integer;
    else if (x->what == R_OLDEST && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        /* score = (9 - prio) * 1e13 + queued_at_ms (docs/architecture.md) */
        double score = strtod(r->element[1]->str, NULL);
        double queued_at = score - 1e13 * (double)(long long)(score / 1e13);
        double age = ((double)cg_now_ms() - queued_at) / 1000.0;
        q->oldest_s = age > 0 ? age : 0;
    } else if (x->what == R_KPI && r->type == REDIS_REPLY_ARRAY)
        kpi_parse(x->k, r);
    free(x);
    metrics_done(m);
}

/* Send one command whose reply fills q or k; a command that cannot be sent fails the scrape. */
static void metrics_cmd(metrics_req *m, mq *q, kpi *k, reply_what what, const char *fmt,
                        const char *name) {
    m_reply *x = calloc(1, sizeof(*x));
    if (!x) {
        m->failed = 1;
        return;
    }
    x->m = m;
    x->q = q;
    x->k = k;
    x->what = what;
    m->pending++;
    if (rconn_cmd(G.redis, on_reply, x, fmt, name) < 0) {
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
        const char *name = r->element[i]->str;
        snprintf(m->qk[k].name, sizeof(m->qk[k].name), "%s", name);
        metrics_cmd(m, &m->queues[k], NULL, R_WAITING, "ZCARD " CG_KEY_QUEUE, name);
        metrics_cmd(m, &m->queues[k], NULL, R_OLDEST, "ZRANGE " CG_KEY_QUEUE " 0 0 WITHSCORES",
                    name);
        metrics_cmd(m, &m->queues[k], NULL, R_AVAILABLE, "ZCARD " CG_KEY_AVAIL, name);
        metrics_cmd(m, NULL, &m->qk[k], R_KPI, "HGETALL " CG_KEY_KPI_QUEUE, name);
    }
    metrics_done(m);
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The agents with counters: the first METRICS_AGENTS_MAX by id, each with one HGETALL. */
static void on_agents(rconn *rc, redisReply *r, void *priv) {
    metrics_req *m = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        m->failed = 1;
        metrics_done(m);
        return;
    }
    const char **ids = r->elements ? calloc(r->elements, sizeof(*ids)) : NULL;
    size_t n = 0;
    for (size_t i = 0; ids && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len > 0 && e->len < MSG_ID_MAX &&
            strlen(e->str) == e->len)
            ids[n++] = e->str;
    }
    if (r->elements && !ids) m->failed = 1;
    if (n > 1) qsort(ids, n, sizeof(*ids), name_cmp);
    if (n > METRICS_AGENTS_MAX) {
        log_warn("metrics: %zu agents have counters; exporting the first %d by id", n,
                 METRICS_AGENTS_MAX);
        n = METRICS_AGENTS_MAX;
    }
    m->ak = n ? calloc(n, sizeof(*m->ak)) : NULL;
    if (n && !m->ak) {
        m->failed = 1;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        kpi *k = &m->ak[m->na++];
        snprintf(k->name, sizeof(k->name), "%s", ids[i]);
        metrics_cmd(m, NULL, k, R_KPI, "HGETALL " CG_KEY_KPI_AGENT, k->name);
    }
    free(ids);
    metrics_done(m);
}

/* cg_kpi_pending's answer: {{'queue'|'agent', name, ms, n}, ...}. An error (a library of a
 * release before it, in a rolling upgrade) leaves the counters as the hashes hold them. */
static void on_held(rconn *rc, redisReply *r, void *priv) {
    metrics_req *m = priv;
    if (!r) m->failed = 1;
    size_t n = r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    m->held = n ? calloc(n, sizeof(*m->held)) : NULL;
    for (size_t i = 0; m->held && i < n; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_STRING || e->element[1]->len >= MSG_ID_MAX ||
            e->element[2]->type != REDIS_REPLY_INTEGER ||
            e->element[3]->type != REDIS_REPLY_INTEGER)
            continue;
        held *h = &m->held[m->nheld++];
        h->agent = !strcmp(e->element[0]->str, "agent");
        cg_strlcpy(h->name, e->element[1]->str, sizeof(h->name));
        h->ms = e->element[2]->integer;
        h->n = e->element[3]->integer;
    }
    metrics_done(m);
}

static int metrics_enabled(void) {
    return 1;
}

/* 0 when the request carries the metrics token; else -1 with the answer given (403 when no
 * token is configured, 401 when the request's is missing or wrong). The token is never logged. */
static int metrics_auth(wh_req *q) {
    const char *want = G.cfg.metrics_token;
    if (!want[0]) {
        wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain",
                   "metrics_token is not set: /metrics is disabled\n");
        return -1;
    }
    char auth[METRICS_AUTH_MAX];
    const char *a = wh_header_tok(q, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof(auth));
    if (a && !strncasecmp(a, "Bearer ", 7) && cg_ct_equal(a + 7, strlen(a + 7), want, strlen(want)))
        return 0;
    log_info("metrics: refused a scrape without the right bearer token");
    wh_respond(q, HTTP_STATUS_UNAUTHORIZED, "text/plain",
               "unauthorized: send Authorization: Bearer <metrics_token>\n");
    return -1;
}

static void metrics_get(wh_req *q) {
    if (metrics_auth(q) < 0) return;
    metrics_req *m = calloc(1, sizeof(*m));
    if (!m) {
        wh_respond(q, 503, "text/plain", "out of memory\n");
        return;
    }
    m->q = q;
    wh_hold(q);
    m->pending = 1; /* this function's own reference, dropped at the end */
    const char *sets[] = {"SMEMBERS " CG_KEY_QUEUES, "SMEMBERS " CG_KEY_KPI_AGENTS,
                          "FCALL_RO cg_kpi_pending 1 " CG_KEY_TENANT};
    rconn_reply_fn *cbs[] = {on_queues, on_agents, on_held};
    for (int i = 0; i < 3; i++) {
        m->pending++;
        if (rconn_cmd(G.redis, cbs[i], m, sets[i]) < 0) {
            m->pending--;
            m->failed = 1; /* answers with the gateway's own metrics and chatgw_redis_up 0 */
        }
    }
    metrics_done(m);
}

static void metrics_post(wh_req *q) {
    wh_respond(q, 405, "text/plain", "GET only\n");
}

const wh_hook hook_metrics = {"/metrics",   1,    0, metrics_enabled, metrics_get,
                              metrics_post, NULL, 0};
