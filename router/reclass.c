/* reclass.c -- the agent's classify command: {"type":"classify","conv":…,"code":"<category>"}.
 *
 * A category is the name of a configured classification rule ([rule <name>]) or "default", the
 * same names the router gives new conversations. One FCALL cg_reclassify (redis/queue.lua) sets
 * it on the conversation the agent is serving; the conversation log then gets a desk-only
 * `classified` event (code = new category, text = from what, by whom; customers see neither), and
 * a category whose rule leads to the complaint queue makes the conversation a complaint: a
 * complaint number, its class's deadlines and the customer's acknowledgement, as if the router
 * had classified it so. Queue and assignment stay: moving it is a transfer. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"

/* {old category, channel, locale, ticket}: log the event, make it a complaint if it is one. */
static void reclass_reply(job *j, redisReply *rep) {
    msg *m = &j->m;
    if (say_refused(j, rep, "classify")) return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4) return;
    char old[MSG_CODE_MAX], ticket[64], cmid[MSG_ID_MAX], text[256];
    store_str(rep->element[0], old, sizeof(old));
    store_str(rep->element[1], j->channel, sizeof(j->channel));
    store_str(rep->element[2], j->locale, sizeof(j->locale));
    store_str(rep->element[3], ticket, sizeof(ticket));
    log_info("conv %s re-classified by %s: %s -> %s", j->conv, m->sender_id,
             old[0] ? old : "(none)", m->code);
    snprintf(text, sizeof(text), "Re-classified from %s to %s by %s", old[0] ? old : "(none)",
             m->code, m->sender_id);
    snprintf(cmid, sizeof(cmid), "cg:cl:%s", j->id);
    say_classified(j, j->conv, j->channel, cmid, m->code, text);
    const cls_rule *rule = cls_rule_find(&j->r->cls, m->code); /* none for "default" */
    if (rule && !ticket[0] && strcmp(rule->queue, j->r->cfg.complaint_queue) == 0)
        sla_complaint(j, rule->complaint_class);
}

void agent_on_classify(job *j) {
    msg *m = &j->m;
    if (!j->conv[0] || !m->sender_id[0] || !m->code[0]) {
        log_warn("entry %s: classify without conversation, agent or category", j->id);
        return;
    }
    if (!cls_rule_find(&j->r->cls, m->code) && strcmp(m->code, "default") != 0) {
        char text[128];
        snprintf(text, sizeof(text), "unknown category '%s'", m->code);
        log_info("agent %s classify %s refused: %s", m->sender_id, j->conv, text);
        say_agent_error(j, m->sender_id, "bad_value", text, m->cmid, j->conv);
        return;
    }
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)j->now_ms);
    job_cmd(j, reclass_reply, 8, "FCALL", "cg_reclassify", "1", CG_KEY_TENANT, j->conv,
            m->sender_id, m->code, now);
}
