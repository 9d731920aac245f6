/* reclass.c -- the agent's classify command: {"type":"classify","conv":…,"code":"<category>"}.
 *
 * A category is the name of a configured classification rule ([rule <name>]) or "default", the
 * same names the router gives new conversations. One FCALL cg_agent_classify (redis/event.lua:
 * cg_reclassify of redis/queue.lua, then the event) sets it on the conversation the agent is
 * serving; the conversation log then gets a desk-only `classified` event (code = new category, text
 * = from what, by whom; customers see neither), and a category whose rule leads to the complaint
 * queue makes the conversation a complaint: a complaint number, its class's deadlines and the
 * customer's acknowledgement, as if the router had classified it so. Queue and assignment stay:
 * moving it is a transfer. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

/* 'classified' old (category), ticket, new_ticket: the event, and a complaint's ticket and the
 * customer's acknowledgement, were written in the call. */
static void reclass_reply(job *j, redisReply *rep) {
    msg *m = &j->m;
    if (say_refused(j, rep, "classify")) return;
    char what[16], old[MSG_CODE_MAX], ticket[64];
    if (evres_kind(rep, what, sizeof(what)) != 0 || strcmp(what, "classified") != 0) return;
    evres_str(rep, "old", old, sizeof(old));
    evres_str(rep, "ticket", ticket, sizeof(ticket));
    log_info("conv %s re-classified by %s: %s -> %s", j->conv, m->sender_id,
             old[0] ? old : "(none)", m->code);
    if (evres_int(rep, "new_ticket")) log_info("conv %s: complaint %s", j->conv, ticket);
}

void agent_on_classify(job *j) {
    msg *m = &j->m;
    if (!j->conv[0] || !m->sender_id[0] || !m->code[0]) {
        log_warn("entry %s: classify without conversation, agent or category", j->id);
        return;
    }
    const cls_rule *rule = cls_rule_find(&j->r->cls, m->code); /* none for "default" */
    if (!rule && strcmp(m->code, "default") != 0) {
        char text[128];
        snprintf(text, sizeof(text), "unknown category '%s'", m->code);
        log_info("agent %s classify %s refused: %s", m->sender_id, j->conv, text);
        say_agent_error(j, m->sender_id, "bad_value", text, m->cmid, j->conv);
        return;
    }
    /* the desk-only event: from what ({from}, the library knows it), to what, by whom */
    char text[256];
    snprintf(text, sizeof(text), "Re-classified from {from} to %s by %s", m->code, m->sender_id);
    size_t len = 0;
    unsigned char *ev = say_payload(j, MSG_CLASSIFIED, ROLE_SYSTEM, m->code, NULL, text, &len);
    int complaint = rule && strcmp(rule->queue, j->r->cfg.complaint_queue) == 0;
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "agent", m->sender_id);
    evarg_str(&a, "category", m->code);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "entry", j->id);
    evarg_bytes(&a, "classified", ev ? (const char *)ev : "", ev ? len : 0);
    free(ev);
    if (complaint) {
        variant_locales(&a, j->r);
        sla_complaint_fields(&a, j, rule->complaint_class);
    }
    evarg_call(j, "cg_agent_classify", reclass_reply, &a);
}
