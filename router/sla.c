/* sla.c -- the time-driven service rules: response-time SLAs, position updates and complaints.
 *
 * Timers live in Redis (cg:timers, redis/timer.lua), so they survive a router restart and fire
 * once with several routers (timers.c claims them). This module arms and cancels them and does
 * what a fired one asks:
 *   first:<conv>   first response: armed by the first customer message, due after
 *                  sla_first_response_s of the channel counted in the queue's business hours;
 *                  cancelled by the first agent text
 *   next:<conv>    next response: a customer message after the agent's first reply, while
 *                  assigned and unanswered; cancelled by the agent's next text
 *   complaint_respond:<conv> / complaint_resolve:<conv>   a complaint's deadlines by its class;
 *                  respond is cancelled by an agent text, resolve by closing
 *   pos:<conv>     position update of a waiting chat conversation (every position_update_s,
 *                  sent when the position changed or position_update_max_s passed)
 *   hours:<queue>  the queue opens or closes: the queue configuration is published again
 * A breach runs the configured sla_action atomically in Redis (cg_timer_fire) and is recorded
 * (sla_breaches on the conversation, an entry in cg:events); the router then tells the online
 * agents of the escalation queue and announces what got assigned. */
#include "router.h"
#include "desk_schema.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define SLA_CODE "bad_config"

static const char *const sla_classes[SLA_CLASSES] = {"ordinary", "serious", "system_failure",
                                                     "media"};

/* ---- configuration ---- */

/* One "name:value" item of a comma list: name into name[], the rest (trimmed) into val[]. */
static int sla_item(const char *p, size_t len, char *name, size_t nn, char *val, size_t nv) {
    while (len && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    const char *colon = memchr(p, ':', len);
    if (!colon || (size_t)(colon - p) >= nn || len - (size_t)(colon - p) > nv) return -1;
    memcpy(name, p, (size_t)(colon - p));
    name[colon - p] = '\0';
    size_t vl = len - (size_t)(colon - p) - 1;
    memcpy(val, colon + 1, vl);
    val[vl] = '\0';
    return 0;
}

static int sla_secs(const char *v, long long *out) {
    return cg_parse_ll(v, 0, 366LL * 86400, out);
}

/* A channel weight "0.5" in thousandths (1 - 100000: 0.001 - 100 capacity units). */
static int sla_milli(const char *v, long long *out) {
    char *end = NULL;
    errno = 0;
    double w = strtod(v, &end);
    if (errno || end == v || *end || !(w >= 0.001 && w <= 100)) return -1;
    *out = llround(w * 1000);
    return 0;
}

/* "chat:60, email:7200, web:30": chat sets every channel but email, names set one channel;
 * each value is read by parse (sla_secs, sla_milli). */
static int sla_channel_map(const char *key, const char *value, long long out[CH_COUNT],
                           int (*parse)(const char *, long long *), cg_err *err) {
    for (int pass = 0; pass < 2; pass++) {
        for (const char *p = value; *p;) {
            size_t len = strcspn(p, ",");
            char name[32], val[32];
            long long secs;
            if (len && strspn(p, " \t") == len) goto next;
            if (sla_item(p, len, name, sizeof(name), val, sizeof(val)) != 0 ||
                parse(val, &secs) != 0)
                return cg_err_set(err, SLA_CODE, "key '%s': expected channel:%s, ...", key,
                                  parse == sla_milli ? "weight (0.001 - 100)" : "seconds");
            int chat = strcmp(name, "chat") == 0;
            msg_channel ch = CH_NONE;
            if (!chat && msg_channel_parse(name, &ch) != 0)
                return cg_err_set(err, SLA_CODE, "key '%s': '%s' is not chat or a channel", key,
                                  name);
            if (pass == 0 && chat)
                for (int c = 1; c < CH_COUNT; c++)
                    if (c != CH_EMAIL) out[c] = secs;
            if (pass == 1 && !chat) out[ch] = secs;
        next:
            p += len;
            if (*p == ',') p++;
        }
    }
    return 0;
}

/* "ordinary:86400/172800, ...". */
static int sla_complaint_map(const char *value, sla_cfg *out, cg_err *err) {
    for (const char *p = value; *p;) {
        size_t len = strcspn(p, ",");
        char name[32], val[48], *slash;
        long long a, b;
        int k = 0;
        if (len && strspn(p, " \t") == len) goto next;
        if (sla_item(p, len, name, sizeof(name), val, sizeof(val)) != 0 ||
            !(slash = strchr(val, '/')))
            return cg_err_set(err, SLA_CODE, "key 'complaint_sla': expected class:respond/resolve");
        *slash = '\0';
        if (sla_secs(val, &a) != 0 || sla_secs(slash + 1, &b) != 0)
            return cg_err_set(err, SLA_CODE, "key 'complaint_sla': seconds expected");
        while (k < SLA_CLASSES && strcmp(sla_classes[k], name) != 0)
            k++;
        if (k == SLA_CLASSES)
            return cg_err_set(err, SLA_CODE, "key 'complaint_sla': unknown class '%s'", name);
        out->respond_s[k] = a;
        out->resolve_s[k] = b;
    next:
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

int sla_cfg_parse(const router_cfg *c, sla_cfg *out, cg_err *err) {
    memset(out, 0, sizeof(*out));
    hours_init(&out->tz);
    for (int ch = 0; ch < CH_COUNT; ch++)
        out->weight_milli[ch] = 1000;
    if (sla_channel_map("sla_first_response_s", c->sla_first_response_s, out->first_s, sla_secs,
                        err) != 0 ||
        sla_channel_map("sla_next_response_s", c->sla_next_response_s, out->next_s, sla_secs,
                        err) != 0 ||
        sla_channel_map("channel_weights", c->channel_weights, out->weight_milli, sla_milli, err) !=
            0 ||
        sla_complaint_map(c->complaint_sla, out, err) != 0)
        return -1;
    if (strcmp(c->sla_action, "escalate") == 0)
        out->action = SLA_ESCALATE;
    else if (strcmp(c->sla_action, "raise_priority") == 0)
        out->action = SLA_RAISE_PRIORITY;
    else if (strcmp(c->sla_action, "reassign") == 0)
        out->action = SLA_REASSIGN;
    else
        return cg_err_set(err, SLA_CODE,
                          "key 'sla_action': '%.40s' is not escalate, raise_priority or reassign",
                          c->sla_action);
    if (hours_set_tz(&out->tz, c->default_timezone, err) != 0) return -1;
    return 0;
}

int sla_is_chat(const char *channel) {
    return strcmp(channel, "email") != 0;
}

static const char *sla_action_name(sla_action a) {
    return a == SLA_RAISE_PRIORITY ? "raise_priority" : a == SLA_REASSIGN ? "reassign" : "escalate";
}

/* ---- arming and cancelling ---- */

static msg_channel sla_channel(const char *channel) {
    msg_channel ch = CH_WEB;
    if (channel && channel[0]) msg_channel_parse(channel, &ch);
    return ch;
}

/* now + secs of the queue's business time; 0 for no timer. */
static long long sla_due(const router *r, const char *queue, int64_t now, long long secs) {
    if (secs <= 0) return 0;
    const cls_queue *q = cls_queue_find(&r->cls, queue);
    return q ? hours_add(&q->hours, now, secs) : now + secs * 1000;
}

void sla_customer_dues(const router *r, const char *channel, const char *queue, int64_t now,
                       long long *first, long long *next) {
    msg_channel ch = sla_channel(channel);
    *first = sla_due(r, queue, now, r->sla.first_s[ch]);
    *next = sla_due(r, queue, now, r->sla.next_s[ch]);
}

void sla_on_customer(job *j) {
    long long f, n;
    sla_customer_dues(j->r, j->channel, j->queue, j->now_ms, &f, &n);
    char first[24], next[24];
    snprintf(first, sizeof(first), "%lld", f);
    snprintf(next, sizeof(next), "%lld", n);
    job_cmd(j, NULL, 7, "FCALL", "cg_sla_customer", "1", CG_KEY_TENANT, j->conv, first, next);
}

void sla_on_agent(job *j) {
    if (!j->conv[0]) return;
    long long idle_s = j->r->cfg.idle_close_s;
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "agent", j->m.sender_id);
    evarg_int(&a, "now", j->now_ms);
    evarg_int(&a, "idle_due", idle_s > 0 ? j->now_ms + idle_s * 1000 : 0);
    evarg_call(j, "cg_agent_msg", NULL, &a);
}

/* ---- complaints ---- */

void sla_complaint_fields(evarg *a, job *j, const char *complaint_class) {
    router *r = j->r;
    int k = 0;
    while (k < SLA_CLASSES && strcmp(sla_classes[k], complaint_class) != 0)
        k++;
    if (k == SLA_CLASSES) k = 0; /* ordinary */
    char day[16];
    hours_format(&r->sla.tz, j->now_ms, "%Y%m%d", day, sizeof(day));
    evarg_int(a, "complaint", 1);
    evarg_str(a, "day", day);
    evarg_int(a, "respond_due", j->now_ms + r->sla.respond_s[k] * 1000);
    evarg_int(a, "resolve_due", j->now_ms + r->sla.resolve_s[k] * 1000);
    evarg_str(a, "class", sla_classes[k]);
    evarg_int(a, "limit", r->cfg.tickets_per_customer);
    evarg_int(a, "window", r->cfg.ticket_window_s);
    variant_spec ack = {
        .type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_COMPLAINT_ACK, .off_when_empty = 1};
    variant_pack(a, "complaint_ack", j, &ack);
}

/* ---- fired timers ---- */

/* 'breach' kind, conv, result, from (the queue before), queue (now), rows: the event, the
 * notices and what the action assigned were written in the call; publish the queues' snapshots. */
static void sla_fired_breach(job *j, const redisReply *rep) {
    router *r = j->r;
    char kind[32], result[16], from[MSG_CODE_MAX];
    evres_str(rep, "kind", kind, sizeof(kind));
    evres_str(rep, "conv", j->conv, sizeof(j->conv));
    evres_str(rep, "result", result, sizeof(result));
    evres_str(rep, "from", from, sizeof(from));
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    log_warn("conv %s: SLA %s breached: %s (%s)", j->conv, kind, sla_action_name(r->sla.action),
             result);
    notify_dirty(r, from);
    notify_dirty(r, j->queue);
    if (r->sla.action == SLA_ESCALATE) notify_dirty(r, r->cfg.escalate_queue); /* they list it */
    say_assigned_rows(j, evres_get(rep, "rows"));
}

static void sla_fire_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("timer %s: cg_sla_timer: %s", j->member, rep->str);
        return;
    }
    char what[16];
    if (evres_kind(rep, what, sizeof(what)) != 0) return;
    log_debug("timer %s: %s", j->member, what);
    if (strcmp(what, "breach") == 0) {
        sla_fired_breach(j, rep);
    } else if (strcmp(what, "hours") == 0) {
        log_info("business hours of a queue changed (%s): publishing the queues", j->member);
        store_publish_queues(j->r);
    }
}

/* 'told' conv, queue: the customer was told in the call; the queue's snapshot is left. */
static void sla_pos_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("timer %s: cg_pos_timer: %s", j->member, rep->str);
        return;
    }
    char what[16];
    if (evres_kind(rep, what, sizeof(what)) != 0) return;
    log_debug("timer %s: %s", j->member, what);
    if (strcmp(what, "told") != 0) return;
    evres_str(rep, "conv", j->conv, sizeof(j->conv));
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
}

/* A pos:<conv> timer in one call, FCALL cg_pos_timer (redis/event.lua): the position update and
 * the nobody-online text in every locale, with the duration units; the call fills in the
 * position and the wait. */
static void sla_pos_step(job *j) {
    router *r = j->r;
    variant_spec pu = {
        .type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_POSITION_UPDATE, .off_when_empty = 1};
    variant_spec na = {
        .type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_NO_AGENT, .off_when_empty = 1};
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "member", j->member);
    evarg_str(&a, "lease", j->lease);
    evarg_int(&a, "now", j->now_ms);
    evarg_int(&a, "update_ms", r->cfg.position_update_s * 1000);
    evarg_int(&a, "max_ms", r->cfg.position_update_max_s * 1000);
    evarg_int(&a, "avg_handle_ms", r->cfg.avg_handle_s * 1000);
    variant_locales(&a, r);
    variant_pack(&a, "position_update", j, &pu);
    variant_pack(&a, "no_agent", j, &na);
    variant_units(&a, r);
    evarg_call(j, "cg_pos_timer", sla_pos_reply, &a);
}

void sla_timer_step(job *j) {
    router *r = j->r;
    /* who fires a kind is the schema's (timers[].owner): close.c, routing.c or here */
    int kind = cg_timer_find(j->member);
    const char *owner = kind >= 0 ? cg_timers[kind].owner : "sla";
    if (!strcmp(owner, "close")) {
        close_timer_step(j);
        return;
    }
    if (!strcmp(owner, "routing")) {
        routing_timer_step(j);
        return;
    }
    if (kind == CG_TIMER_POS) {
        sla_pos_step(j);
        return;
    }
    /* one call: the breach, its escalated event and the notices (cg_sla_timer) */
    size_t elen = 0, nlen = 0;
    unsigned char *ev = say_payload(j, MSG_ESCALATED, ROLE_SYSTEM, NULL, NULL, NULL, &elen);
    unsigned char *no = say_payload(j, MSG_TEXT, ROLE_SYSTEM, NULL, NULL, NULL, &nlen);
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "member", j->member);
    evarg_str(&a, "lease", j->lease);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "action", sla_action_name(r->sla.action));
    evarg_str(&a, "escalate_queue", r->cfg.escalate_queue);
    evarg_bytes(&a, "escalated", ev ? (const char *)ev : "", ev ? elen : 0);
    evarg_bytes(&a, "notice", no ? (const char *)no : "", no ? nlen : 0);
    free(ev);
    free(no);
    say_rows_fields(&a, j); /* what the action assigns is announced in the call */
    j->rows_announced = 1;
    evarg_call(j, "cg_sla_timer", sla_fire_reply, &a);
}
