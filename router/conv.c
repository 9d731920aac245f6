/* conv.c -- a customer wrote (text or attachment from cg:in).
 *
 * One FCALL cg_customer_msg (redis/event.lua) with a msgpack map of this message's
 * classification (classify.c: queue, priority, category), the greeting in the customer's locale
 * (identity.locale of this message, else default_locale), the response deadlines and the texts
 * the call may say. The answers are read with evres.c:
 *   'new'    the conversation was new and the call did everything: greeting (cmid cg:greet),
 *            first-response timer, enqueued, and either assigned at once in an open push queue
 *            and announced (how 'announced' / 'stale'), or queued and the waiting reply said
 *            (how 'told', cmid cg:pos:<entry>: off_hours outside the queue's business hours,
 *            no_agent on a chat when nobody who serves the queue or its overflow is online,
 *            email_ack on e-mail, else queued with position and wait); a conversation
 *            classified into complaint_queue also got its complaint ticket. The router only
 *            publishes the queue's snapshot (and announces an assignment the call did not).
 *   'info'   any other state:
 *              queued   -> the call said the waiting reply again (on chat, for the queue the
 *                          conversation waits in: off_hours while it is closed, else the place
 *                          in line; not while nobody serves it: no_agent is said once); the
 *                          response timers (told: the call armed them);
 *              assigned -> response timers and the idle close (told: the call armed them);
 *                          announce only if the assignment is still in the outbox (a router
 *                          died before);
 *              closed / none -> nothing (cg_message opened a new conversation for later
 *                          messages).
 *            Not told (rare: the call arms the conversation's own deadlines with this
 *            map's dues or the desk's timings, conv_dues_fields): those deadlines are
 *            armed here, in a call of their own.
 * A survey answer (a `rating` message, or one cg_message attached to the closed conversation) is
 * csat.c's, in its own call. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* An assignment the call made but did not announce (the map had no `assigned` msg). */
static void conv_after_enqueue(job *j) {
    if (!j->has_row) return;
    log_info("conv %s assigned to %s", j->conv, j->row.agent);
    say_assigned(j, &j->row);
}

/* Field name of an event answer as a number, dflt when the answer has no such field. */
static long long conv_int_or(const redisReply *rep, const char *name, long long dflt) {
    const redisReply *v = evres_get(rep, name);
    return v ? evres_number(v) : dflt;
}

/* The waiting figures of a queued conversation the router logs (cg_customer_msg's 'new' and
 * 'info' answers): position, staffed. */
static void conv_wait_fields(job *j, const redisReply *rep) {
    j->position = evres_int(rep, "position");
    j->staffed = (int)conv_int_or(rep, "staffed", 1);
}

/* cg_customer_msg's 'info' answer: cg_conv_info's fields by name (state, channel, queue,
 * position, in_outbox, row, avg_ms, locale, held, staffed, slots, free; told). */
static void conv_info_fields(job *j, const redisReply *rep) {
    evres_str(rep, "state", j->state, sizeof(j->state));
    evres_str(rep, "channel", j->channel, sizeof(j->channel));
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    j->in_outbox = (int)evres_int(rep, "in_outbox");
    j->has_row = store_row_parse(evres_get(rep, "row"), &j->row) == 0;
    evres_str(rep, "locale", j->locale, sizeof(j->locale));
    conv_wait_fields(j, rep);
    j->told = evres_int(rep, "told") != 0;
}

/* cg_customer_msg's 'new' answer: cg_enqueue's by name (result 'assigned' with row, 'queued'
 * with the waiting figures; 'already' cannot come: the call checked the state was new). */
static void conv_new_fields(job *j, const redisReply *rep) {
    evres_str(rep, "result", j->state, sizeof(j->state));
    if (strcmp(j->state, "assigned") == 0) {
        j->has_row = store_row_parse(evres_get(rep, "row"), &j->row) == 0;
    } else if (strcmp(j->state, "queued") == 0) {
        conv_wait_fields(j, rep);
    }
}

/* cg_customer_msg's 'info' answer for a queued or assigned conversation: the call said the
 * waiting reply itself and, when told, armed the response timers (and the idle close). Not told
 * (the message classified into another queue than the conversation's and the call knew neither
 * that queue's dues nor the desk's timings: the desk's timings not published yet): the
 * deadlines, which count the business hours of its queue, are armed here. An assignment still
 * in the outbox (a router died before announcing it) is announced. */
static void conv_after_info(job *j) {
    int assigned = strcmp(j->state, "assigned") == 0;
    if (!assigned && strcmp(j->state, "queued") != 0) return;
    if (!j->told) {
        sla_on_customer(j);
        if (assigned)
            close_idle_arm(j, j->conv);
        else
            notify_dirty(j->r, j->queue);
    }
    if (assigned && j->in_outbox && j->has_row) say_assigned(j, &j->row);
}

/* 'new' (cg_enqueue's answer by name, how) | 'info' (cg_conv_info's by name, told) */
static void conv_customer_reply(job *j, redisReply *rep) {
    j->state[0] = '\0';
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("conv %s: cg_customer_msg: %s", j->conv, rep->str);
        return;
    }
    char what[8], how[16];
    if (evres_kind(rep, what, sizeof(what)) != 0) return;
    if (strcmp(what, "info") == 0) {
        conv_info_fields(j, rep);
        j->then = conv_after_info;
        return;
    }
    if (strcmp(what, "new") != 0) return;
    log_info("conv %s classified: queue %s, priority %d, category %s", j->conv, j->queue, j->prio,
             j->category);
    conv_new_fields(j, rep);
    evres_str(rep, "how", how, sizeof(how)); /* said in the call: announced, stale or told */
    if (how[0] && j->has_row) {              /* assigned and announced in the call itself */
        log_info("conv %s assigned to %s", j->conv, j->row.agent);
        if (j->row.queue[0]) notify_dirty(j->r, j->row.queue);
        j->has_row = 0;
    } else if (strcmp(j->state, "queued") == 0) { /* and told in the call */
        log_info("conv %s queued in %s at %lld", j->conv, j->queue, j->position);
        if (!j->staffed)
            log_info("conv %s waits in %s with nobody online to serve it", j->conv, j->queue);
        notify_dirty(j->r, j->queue);
    }
    j->then = conv_after_enqueue;
}

/* The field closed of cg_customer_msg's map: queue -> opens_at (the next opening, "YYYY-MM-DD
 * HH:MM" in the queue's zone; "" when it does not open within a year) of every configured queue
 * outside its business hours now; nothing when none is. 1 when some queue is closed. Each queue's
 * state is looked at once per change (hours_open_at: a time zone switch costs ~10 us). */
static int conv_closed_fields(evarg *a, job *j) {
    const cls_set *s = &j->r->cls;
    uint32_t n = 0;
    for (size_t i = 0; i < s->n_queues; i++)
        n += !hours_open_at(&s->queues[i].hours, &s->queues[i].now, j->now_ms);
    if (n == 0) return 0;
    evarg_key(a, "closed");
    msgpack_pack_map(&a->pk, n);
    for (size_t i = 0; i < s->n_queues; i++) {
        cls_queue *q = &s->queues[i];
        if (hours_open_at(&q->hours, &q->now, j->now_ms)) continue;
        char opens[64] = "";
        if (q->now.opens_at)
            hours_format(&q->hours, q->now.opens_at, "%Y-%m-%d %H:%M", opens, sizeof(opens));
        msgpack_pack_str_with_body(&a->pk, q->name, strlen(q->name));
        msgpack_pack_str_with_body(&a->pk, opens, strlen(opens));
    }
    return 1;
}

/* The fields with which cg_customer_msg says the waiting reply itself (redis/event.lua
 * waiting_reply decides which), for a new conversation left waiting and a waiting chat
 * customer's next message: wait_cmid (cg:pos:<entry>), avg_handle_ms; while a queue is closed,
 * closed (conv_closed_fields) and off_hours ({opens_at} left for the call, which knows the
 * conversation's queue); no_agent and queued ({position} {wait} left for the call) with the
 * duration units (chat), or email_ack ({reply_within}). */
static void conv_waiting_fields(evarg *a, job *j, int chat) {
    router *r = j->r;
    char cmid[MSG_ID_MAX];
    snprintf(cmid, sizeof(cmid), "cg:pos:%s", j->id);
    evarg_str(a, "wait_cmid", cmid);
    evarg_int(a, "avg_handle_ms", r->cfg.avg_handle_s * 1000);
    if (conv_closed_fields(a, j)) {
        variant_spec s = {
            .type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_OFF_HOURS, .off_when_empty = 1};
        variant_pack(a, "off_hours", j, &s);
    }
    if (!chat) {
        variant_spec s = {.type = MSG_TEXT,
                          .role = ROLE_BOT,
                          .key = TMPL_EMAIL_ACK,
                          .var = "reply_within",
                          .duration_s = r->sla.first_s[CH_EMAIL],
                          .off_when_empty = 1};
        variant_pack(a, "email_ack", j, &s);
        return;
    }
    variant_spec na = {
        .type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_NO_AGENT, .off_when_empty = 1};
    variant_spec qd = {.type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_QUEUED, .off_when_empty = 1};
    variant_pack(a, "no_agent", j, &na);
    variant_pack(a, "queued", j, &qd);
    variant_units(a, r);
}

/* The field dues of cg_customer_msg's map: queue -> [first_due, next_due] of every other queue
 * that counts business hours, for a message that may come in a conversation already waiting in
 * or served from another queue than it classified into (any but a conversation's first, seq 1):
 * the call then arms that queue's deadlines itself (redis/event.lua customer_dues; queues
 * without business hours it works out from the desk's timings). Nothing when no such queue. */
static void conv_dues_fields(evarg *a, job *j) {
    const cls_set *s = &j->r->cls;
    if (j->m.seq == 1) return;
    uint32_t n = 0;
    for (size_t i = 0; i < s->n_queues; i++) {
        const cls_queue *q = &s->queues[i];
        n += hours_counted(&q->hours) && strcmp(q->name, j->queue) != 0;
    }
    if (n == 0) return;
    evarg_key(a, "dues");
    msgpack_pack_map(&a->pk, n);
    for (size_t i = 0; i < s->n_queues; i++) {
        const cls_queue *q = &s->queues[i];
        if (!hours_counted(&q->hours) || strcmp(q->name, j->queue) == 0) continue;
        long long first, next;
        sla_customer_dues(j->r, j->channel, q->name, j->now_ms, &first, &next);
        msgpack_pack_str_with_body(&a->pk, q->name, strlen(q->name));
        msgpack_pack_array(&a->pk, 2);
        msgpack_pack_int64(&a->pk, first);
        msgpack_pack_int64(&a->pk, next);
    }
}

/* The one call: classify this message, render the greeting, work out the deadlines, and send
 * them as cg_customer_msg's map. */
static void conv_customer_call(job *j) {
    router *r = j->r;
    const msg *m = &j->m;
    cg_strlcpy(j->channel, msg_channel_name(m->channel), sizeof(j->channel));
    cg_strlcpy(j->locale, m->identity.locale[0] ? m->identity.locale : r->cfg.default_locale,
               sizeof(j->locale));
    cls_input in = {.text = m->text,
                    .subject = m->meta.subject,
                    .channel = j->channel,
                    .tier = m->identity.tier};
    cls_result res;
    cls_classify(&r->cls, &in, &res);
    cg_strlcpy(j->queue, res.queue, sizeof(j->queue));
    cg_strlcpy(j->category, res.rule[0] ? res.rule : "default", sizeof(j->category));
    cg_strlcpy(j->complaint_class, res.complaint_class, sizeof(j->complaint_class));
    j->prio = res.priority;
    long long first, next;
    sla_customer_dues(r, j->channel, j->queue, j->now_ms, &first, &next);
    size_t glen = 0;
    unsigned char *greet = say_tmpl_payload(j, j->channel, j->locale, TMPL_GREETING, &glen);

    int complaint = strcmp(j->queue, r->cfg.complaint_queue) == 0;
    int chat = sla_is_chat(j->channel);
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", j->conv);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "sender", "chatgw");
    evarg_str(&a, "channel", j->channel);
    evarg_str(&a, "queue", j->queue);
    evarg_int(&a, "prio", res.priority);
    evarg_str(&a, "category", j->category);
    evarg_str(&a, "locale", j->locale);
    evarg_int(&a, "pos_ms", sla_is_chat(j->channel) ? r->cfg.position_update_s * 1000 : 0);
    evarg_int(&a, "sticky_ms", r->cfg.sticky_window_s * 1000);
    evarg_bytes(&a, "greet", greet ? (const char *)greet : "", glen);
    evarg_int(&a, "first_due", first);
    evarg_int(&a, "next_due", next);
    conv_dues_fields(&a, j);
    free(greet);
    /* assigned at once: announced in the same call (say_assigned's event, notice and timers) */
    say_rows_fields(&a, j);
    variant_locales(&a, r);
    conv_waiting_fields(&a, j, chat);
    if (complaint) sla_complaint_fields(&a, j, res.complaint_class); /* the ticket, in the call */
    evarg_call(j, "cg_customer_msg", conv_customer_reply, &a);
}

void conv_on_customer(job *j) {
    if (!j->conv[0]) {
        log_warn("entry %s: customer message without conversation", j->id);
        return;
    }
    if (j->rated || j->m.type == MSG_RATING) { /* a survey answer: one call (csat.c) */
        csat_on_customer(j);
        return;
    }
    conv_customer_call(j);
}
