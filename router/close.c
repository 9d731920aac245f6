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
 *                     the messages it reads); cg_append keeps the time of every message of either
 *                     side in act_at, and a timer that fires within idle_close_s of it re-arms
 *                     itself (cg_close_fire); fired idle, the conversation is closed with
 *                     resolution no_response, the customer gets idle_closed, the agent a notice.
 *   followup:<conv>   armed when a complaint (a conversation with a ticket) is closed as
 *                     resolved (codes starting with "resolved"), due after complaint_followup_s
 *                     (rule 16); fired, a follow-up task (a conversation of its own, preview
 *                     "Follow-up <ticket>") is queued in followup_queue for agents to pick.
 * Both timers live in cg:timers and are claimed like every timer (timers.c); they are fired by
 * cg_close_fire (redis/close.lua) under the same lease rule as cg_timer_fire. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
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

/* ---- unresolved: back to the queue ---- */

/* {'requeued', channel, locale, queue, {ROW, ...}}: tell the customer, announce. */
static void close_reopen_reply(job *j, redisReply *rep) {
    msg *m = &j->m;
    if (say_refused(j, rep, "unresolved")) return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 5) return;
    char cmid[MSG_ID_MAX];
    store_str(rep->element[1], j->channel, sizeof(j->channel));
    store_str(rep->element[2], j->locale, sizeof(j->locale));
    store_str(rep->element[3], j->queue, sizeof(j->queue));
    log_info("conv %s unresolved by %s (%s): back in queue %s", j->conv, m->sender_id,
             j->resolution, j->queue);
    snprintf(cmid, sizeof(cmid), "cg:rq:%s", j->id);
    say_tmpl(j, j->conv, j->channel, j->locale, TMPL_REQUEUED, NULL, 0, cmid, j->queue, 0, 0);
    const redisReply *rows = rep->element[4];
    for (size_t i = 0; rows->type == REDIS_REPLY_ARRAY && i < rows->elements; i++) {
        asg_row row;
        if (store_row_parse(rows->element[i], &row) == 0) say_assigned(j, &row);
    }
    notify_dirty(j->r, j->queue);
    job_push_outbox(j->r); /* whoever took it over is in the outbox */
}

int close_intercept(job *j) {
    router *r = j->r;
    msg *m = &j->m;
    if (close_in_list(r->cfg.unresolved_resolutions, j->resolution)) {
        char now[24];
        snprintf(now, sizeof(now), "%lld", (long long)j->now_ms);
        job_cmd(j, close_reopen_reply, 7, "FCALL", "cg_reopen", "1", CG_KEY_TENANT, j->conv,
                m->sender_id, now);
        return 1;
    }
    if (close_in_list(r->cfg.resolutions, j->resolution)) return 0;
    char text[MSG_CODE_MAX + 64];
    snprintf(text, sizeof(text), "unknown resolution code '%s'", j->resolution);
    log_info("agent %s close %s refused: %s", m->sender_id, j->conv, text);
    say_agent_error(j, m->sender_id, "bad_value", text, m->cmid, j->conv);
    return 1;
}

/* ---- the customer ends the conversation ---- */

/* {'abandoned', channel, locale, queue} | {'ended', channel, locale, queue, agent, {ROW, ...}}
 * | {'already'}: the closed event for the customer; after an assigned one the survey, a notice to
 * the agent and its freed slot's new work. */
static void close_customer_reply(job *j, redisReply *rep) {
    const msg *m = &j->m;
    if (rep->type == REDIS_REPLY_ERROR) {
        char masked[MSG_ID_MAX];
        log_info("customer %s end of %s refused: %s",
                 log_mask(m->sender_id, masked, sizeof(masked)), j->conv, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4) return; /* already closed */
    char what[16];
    store_str(rep->element[0], what, sizeof(what));
    store_str(rep->element[1], j->channel, sizeof(j->channel));
    store_str(rep->element[2], j->locale, sizeof(j->locale));
    store_str(rep->element[3], j->queue, sizeof(j->queue));
    if (strcmp(what, "abandoned") == 0) {
        log_info("conv %s: the customer left the queue %s", j->conv, j->queue);
        say_closed(j, j->conv, j->channel, j->locale, "abandoned");
        if (j->queue[0]) notify_dirty(j->r, j->queue);
        return;
    }
    if (rep->elements < 6) return;
    char agent[MSG_ID_MAX], text[MSG_ID_MAX + 64];
    store_str(rep->element[4], agent, sizeof(agent));
    log_info("conv %s ended by its customer (agent %s)", j->conv, agent);
    say_closed(j, j->conv, j->channel, j->locale, "customer_left");
    close_after(j, j->conv, j->channel, j->locale, "customer_left");
    snprintf(text, sizeof(text), "The customer ended conversation %s.", j->conv);
    say_agent_notice(j, agent, j->conv, j->queue, text);
    say_assigned_rows(j, rep->element[5]);
}

void close_by_customer(job *j) {
    if (!j->conv[0] || !j->m.sender_id[0]) {
        log_warn("entry %s: end of conversation without conversation or customer", j->id);
        return;
    }
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)j->now_ms);
    job_cmd(j, close_customer_reply, 7, "FCALL", "cg_customer_close", "1", CG_KEY_TENANT, j->conv,
            j->m.sender_id, now);
}

/* ---- after a close ---- */

void close_after(job *j, const char *conv, const char *channel, const char *locale,
                 const char *resolution) {
    router *r = j->r;
    char until[24] = "0", due[24] = "0";
    int survey =
        r->cfg.survey_window_s > 0 && !close_in_list(r->cfg.no_survey_resolutions, resolution);
    if (survey)
        snprintf(until, sizeof(until), "%lld",
                 (long long)j->now_ms + r->cfg.survey_window_s * 1000);
    if (r->cfg.complaint_followup_s > 0 && strncmp(resolution, "resolved", 8) == 0)
        snprintf(due, sizeof(due), "%lld",
                 (long long)j->now_ms + r->cfg.complaint_followup_s * 1000);
    job_cmd(j, NULL, 7, "FCALL", "cg_after_close", "1", CG_KEY_TENANT, conv, until, due);
    if (survey) csat_survey(j, conv, channel, locale);
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

/* {'idle', conv, agent, channel, locale, {ROW, ...}}: tell both sides, survey, announce. */
static void close_fired_idle(job *j, const redisReply *rep) {
    if (rep->elements < 6) return;
    char agent[MSG_ID_MAX], idle[48], text[256];
    store_str(rep->element[1], j->conv, sizeof(j->conv));
    store_str(rep->element[2], agent, sizeof(agent));
    store_str(rep->element[3], j->channel, sizeof(j->channel));
    store_str(rep->element[4], j->locale, sizeof(j->locale));
    log_info("conv %s closed after %lld s without messages (agent %s)", j->conv,
             j->r->cfg.idle_close_s, agent);
    say_duration(j->locale, j->r->cfg.idle_close_s, idle, sizeof(idle));
    tmpl_var vars[] = {{"idle", idle}};
    say_tmpl(j, j->conv, j->channel, j->locale, TMPL_IDLE_CLOSED, vars, 1, "cg:idle", NULL, 0, 0);
    say_closed(j, j->conv, j->channel, j->locale, "no_response");
    close_after(j, j->conv, j->channel, j->locale, "no_response");
    snprintf(text, sizeof(text),
             "Conversation %s was closed after %lld s without messages "
             "(no_response).",
             j->conv, j->r->cfg.idle_close_s);
    say_agent_notice(j, agent, j->conv, NULL, text);
    const redisReply *rows = rep->element[5];
    for (size_t i = 0; rows->type == REDIS_REPLY_ARRAY && i < rows->elements; i++) {
        asg_row row;
        if (store_row_parse(rows->element[i], &row) == 0) say_assigned(j, &row);
    }
}

/* {'followup', conv, queue, ticket, n}: the task is queued; publish the queue, announce. */
static void close_fired_followup(job *j, const redisReply *rep) {
    if (rep->elements < 5) return;
    char ticket[64];
    store_str(rep->element[1], j->conv, sizeof(j->conv));
    store_str(rep->element[2], j->queue, sizeof(j->queue));
    store_str(rep->element[3], ticket, sizeof(ticket));
    log_info("complaint %s: follow-up task %s queued in %s", ticket, j->conv, j->queue);
    notify_dirty(j->r, j->queue);
    if (store_int(rep->element[4]) > 0) job_push_outbox(j->r);
}

static void close_fire_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("timer %s: cg_close_fire: %s", j->member, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) return;
    char what[16];
    store_str(rep->element[0], what, sizeof(what));
    log_debug("timer %s: %s", j->member, what);
    if (strcmp(what, "idle") == 0)
        close_fired_idle(j, rep);
    else if (strcmp(what, "followup") == 0)
        close_fired_followup(j, rep);
}

void close_timer_step(job *j) {
    char now[24], id[33] = "";
    snprintf(now, sizeof(now), "%lld", (long long)j->now_ms);
    if (cg_id_new(id) != 0) id[0] = '\0'; /* no id: the follow-up is not created */
    job_cmd(j, close_fire_reply, 9, "FCALL", "cg_close_fire", "1", CG_KEY_TENANT, j->member,
            j->lease, now, id, close_followup_queue(j->r));
}
