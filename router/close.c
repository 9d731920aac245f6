/* close.c -- how conversations end.
 *
 *   resolution codes  an agent's `close` carries a code of [router] resolutions; an unknown code
 *                     is refused (error bad_value on cg:a:<agent>). A code of
 *                     unresolved_resolutions does not close (rule 15: an unresolved
 *                     conversation is never ended): cg_reopen puts it back at the head of its
 *                     queue (priority 9, arrival order), frees the agent's slot and serves the
 *                     queue with another agent; the customer is told (template requeued).
 *   after a close     cg_after_close stores the survey window and arms the complaint follow-up;
 *                     csat.c sends the survey.
 *   idle:<conv>       armed at the assignment, due after idle_close_s (re-armed by the router at
 *                     the messages it reads); a timer that fires within idle_close_s of the
 *                     log's last message of either side re-arms itself (cg_close_fire reads it
 *                     then: messages write nothing for it); fired idle, the conversation is closed
 * with resolution no_response, the customer gets idle_closed, the agent a notice. followup:<conv>
 * armed when a complaint (a conversation with a ticket) is closed as resolved (codes starting with
 * "resolved"), due after complaint_followup_s (rule 16); fired, a follow-up task (a conversation of
 * its own, preview "Follow-up <ticket>") is queued in followup_queue for agents to pick; it becomes
 * the customer's current conversation, opened by the text followup (on bridged channels it goes out
 * through the bridge), and the closed one gets a `followup` event that moves the customer's live
 * web sessions. Both timers live in cg:timers and are claimed like every timer (timers.c); they are
 * fired by cg_close_fire (redis/close.lua) under the same lease rule as cg_timer_fire. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* 1 when code is one of the items of the comma list csv (spaces around items ignored). */
static int close_in_list(const char *csv, const char *code) {
    size_t n = strlen(code);
    for (const char *p = csv; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, ",");
        size_t l = len;
        while (l && (p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        if (n && l == n && strncmp(p, code, n) == 0) return 1;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

/* The queue follow-up tasks go to. */
static const char *close_followup_queue(const router *r) {
    return r->cfg.followup_queue[0] ? r->cfg.followup_queue : r->cfg.complaint_queue;
}

/* ---- an agent's close ---- */

int close_check(job *j, int *unresolved) {
    router *r = j->r;
    msg *m = &j->m;
    *unresolved = close_in_list(r->cfg.unresolved_resolutions, j->resolution);
    if (*unresolved || close_in_list(r->cfg.resolutions, j->resolution)) return 0;
    char text[MSG_CODE_MAX + 64];
    snprintf(text, sizeof(text), "unknown resolution code '%s'", j->resolution);
    log_info("agent %s close %s refused: %s", m->sender_id, j->conv, text);
    say_agent_error(j, m->sender_id, "bad_value", text, m->cmid, j->conv);
    return -1;
}

void close_texts(evarg *a, job *j, const char *closed_field, const char *resolution) {
    router *r = j->r;
    long long survey_until = 0, followup_due = 0;
    if (r->cfg.survey_window_s > 0 && !close_in_list(r->cfg.no_survey_resolutions, resolution))
        survey_until = j->now_ms + r->cfg.survey_window_s * 1000;
    if (r->cfg.complaint_followup_s > 0 && strncmp(resolution, "resolved", 8) == 0)
        followup_due = j->now_ms + r->cfg.complaint_followup_s * 1000;
    evarg_int(a, "survey_until", survey_until);
    evarg_int(a, "followup_due", followup_due);
    variant_spec closed = {
        .type = MSG_CLOSED, .role = ROLE_SYSTEM, .code = resolution, .key = TMPL_CLOSED};
    variant_spec survey = {.type = MSG_SURVEY, .role = ROLE_SYSTEM, .key = TMPL_SURVEY};
    variant_pack(a, closed_field, j, &closed);
    variant_pack(a, "survey", j, &survey);
}

/* Pack the field notice: the system notice about conv with text for its agent ("" when it cannot
 * be encoded: the call then tells nobody). */
static void close_notice(evarg *a, job *j, const char *conv, const char *text) {
    size_t len = 0;
    unsigned char *buf = say_payload(j, MSG_TEXT, ROLE_SYSTEM, NULL, conv, text, &len);
    evarg_bytes(a, "notice", buf ? (const char *)buf : "", buf ? len : 0);
    free(buf);
}

/* ---- the customer ends the conversation ---- */

/* 'abandoned' queue | 'ended' queue, agent, rows | 'already': both sides were told in the call;
 * the queue's snapshot and the freed slot's assignments are left. */
static void close_customer_reply(job *j, redisReply *rep) {
    const msg *m = &j->m;
    if (rep->type == REDIS_REPLY_ERROR) {
        char masked[MSG_ID_MAX];
        log_info("customer %s end of %s refused: %s",
                 log_mask(m->sender_id, masked, sizeof(masked)), j->conv, rep->str);
        return;
    }
    char what[16], agent[MSG_ID_MAX] = "";
    if (evres_kind(rep, what, sizeof(what)) != 0) return;
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    if (strcmp(what, "abandoned") == 0) {
        log_info("conv %s: the customer left the queue %s", j->conv, j->queue);
        if (j->queue[0]) notify_dirty(j->r, j->queue);
        return;
    }
    if (strcmp(what, "ended") != 0) return; /* already closed */
    evres_str(rep, "agent", agent, sizeof(agent));
    log_info("conv %s ended by its customer (agent %s)", j->conv, agent);
    say_assigned_rows(j, evres_get(rep, "rows"));
}

void close_by_customer(job *j) {
    if (!j->conv[0] || !j->m.sender_id[0]) {
        log_warn("entry %s: end of conversation without conversation or customer", j->id);
        return;
    }
    char text[MSG_ID_MAX + 64];
    snprintf(text, sizeof(text), "The customer ended conversation %s.", j->conv);
    variant_spec abandoned = {
        .type = MSG_CLOSED, .role = ROLE_SYSTEM, .code = "abandoned", .key = TMPL_CLOSED};
    evarg a;
    evarg_init(&a);
    say_rows_fields(&a, j); /* what the freed slot takes is announced in the call */
    j->rows_announced = 1;
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "customer", j->m.sender_id);
    evarg_int(&a, "now", j->now_ms);
    close_notice(&a, j, j->conv, text);
    variant_locales(&a, j->r);
    variant_pack(&a, "closed_abandoned", j, &abandoned);
    close_texts(&a, j, "closed_left", "customer_left");
    evarg_call(j, "cg_customer_end", close_customer_reply, &a);
}

/* ---- idle close ---- */

void close_idle_arm(job *j, const char *conv) {
    long long secs = j->r->cfg.idle_close_s;
    if (secs <= 0 || !conv[0]) return;
    char due[24], member[JOB_MEMBER_MAX];
    snprintf(due, sizeof(due), "%lld", (long long)j->now_ms + secs * 1000);
    snprintf(member, sizeof(member), "%s:%s", cg_timers[CG_TIMER_IDLE].kind, conv);
    job_cmd(j, NULL, 4, "ZADD", CG_KEY_TIMERS, due, member);
}

/* 'idle' conv, agent, queue, rows: both sides were told in the call; announce. */
static void close_fired_idle(job *j, const redisReply *rep) {
    char agent[MSG_ID_MAX];
    evres_str(rep, "conv", j->conv, sizeof(j->conv));
    evres_str(rep, "agent", agent, sizeof(agent));
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    log_info("conv %s closed after %lld s without messages (agent %s)", j->conv,
             j->r->cfg.idle_close_s, agent);
    say_assigned_rows(j, evres_get(rep, "rows"));
}

/* 'followup' newconv, queue, ticket, rows: the task is queued (and what it assigned announced)
 * in the call; publish the queue. */
static void close_fired_followup(job *j, const redisReply *rep) {
    char ticket[64];
    evres_str(rep, "newconv", j->conv, sizeof(j->conv));
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    evres_str(rep, "ticket", ticket, sizeof(ticket));
    log_info("complaint %s: follow-up task %s queued in %s", ticket, j->conv, j->queue);
    notify_dirty(j->r, j->queue);
    say_assigned_rows(j, evres_get(rep, "rows"));
}

static void close_fire_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("timer %s: cg_close_timer: %s", j->member, rep->str);
        return;
    }
    char what[16];
    if (evres_kind(rep, what, sizeof(what)) != 0) return;
    log_debug("timer %s: %s", j->member, what);
    if (strcmp(what, "idle") == 0)
        close_fired_idle(j, rep);
    else if (strcmp(what, "followup") == 0)
        close_fired_followup(j, rep);
}

void close_timer_step(job *j) {
    router *r = j->r;
    char id[33] = "";
    if (cg_id_new(id) != 0) id[0] = '\0'; /* no id: the follow-up is not created */
    const char *conv = strchr(j->member, ':');
    conv = conv ? conv + 1 : "";
    int idle = strncmp(j->member, "idle:", 5) == 0;
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "member", j->member);
    evarg_str(&a, "lease", j->lease);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "newconv", id);
    evarg_str(&a, "followup_queue", close_followup_queue(r));
    say_rows_fields(&a, j); /* a freed slot's or the task's assignment is announced in the call */
    j->rows_announced = 1;
    if (idle) {
        char text[MSG_ID_MAX + 96];
        snprintf(text, sizeof(text),
                 "Conversation %s was closed after %lld s without messages (no_response).", conv,
                 r->cfg.idle_close_s);
        variant_spec said = {.type = MSG_TEXT,
                             .role = ROLE_BOT,
                             .key = TMPL_IDLE_CLOSED,
                             .var = "idle",
                             .duration_s = r->cfg.idle_close_s,
                             .off_when_empty = 1};
        close_notice(&a, j, conv, text);
        variant_locales(&a, r);
        variant_pack(&a, "idle_closed", j, &said);
        close_texts(&a, j, "closed", "no_response");
    } else { /* followup: the customer is told in the call ({ticket} is the library's) */
        size_t len = 0;
        unsigned char *ev = say_payload(j, MSG_FOLLOWUP, ROLE_SYSTEM, NULL, NULL, NULL, &len);
        variant_spec said = {
            .type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_FOLLOWUP, .off_when_empty = 1};
        evarg_bytes(&a, "followup_event", ev ? (const char *)ev : "", ev ? len : 0);
        free(ev);
        variant_locales(&a, r);
        variant_pack(&a, "followup", j, &said);
    }
    evarg_call(j, "cg_close_timer", close_fire_reply, &a);
}
