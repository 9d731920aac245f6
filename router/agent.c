/* agent.c -- agent commands from cg:in: presence (connect/disconnect from the gateway, online/away
 * from the agent), pick and close. Each is one call of redis/event.lua, which also announces the
 * assignments it makes (say_rows_fields); refusals go back to the agent as an error on
 * cg:a:<agent>. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* 'presence' rows: the assignments a presence made (announced in the call): the queues'
 * snapshots. */
static void agent_rows_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("agent %s: presence: %s", j->m.sender_id, rep->str);
        return;
    }
    say_assigned_rows(j, evres_get(rep, "rows"));
}

void agent_on_presence(job *j) {
    msg *m = &j->m;
    if (!m->sender_id[0]) {
        log_warn("entry %s: presence without agent", j->id);
        return;
    }
    /* connect_online / connect_away: a connect with the status the agent chose in its hello */
    int up = !strcmp(m->code, "connect") || !strcmp(m->code, "connect_online") ||
             !strcmp(m->code, "connect_away");
    int down = !strcmp(m->code, "disconnect");
    const char *status = !strcmp(m->code, "online") ? "online" : "away";
    char skills[MSG_SKILLS_MAX * MSG_CODE_MAX] = "";
    size_t o = 0;
    for (unsigned i = 0; up && i < m->n_skills && i < MSG_SKILLS_MAX; i++) {
        int n = snprintf(skills + o, sizeof(skills) - o, "%s%s", i ? "," : "", m->skills[i]);
        if (n < 0 || (size_t)n >= sizeof(skills) - o) break;
        o += (size_t)n;
    }
    if (up || down)
        log_info("agent %s %s (%s)", m->sender_id, m->code, m->sock);
    else
        log_info("agent %s %s", m->sender_id, status);
    /* one call: the presence, and what the agent is offered announced in it */
    evarg a;
    evarg_init(&a);
    say_rows_fields(&a, j);
    j->rows_announced = 1;
    evarg_str(&a, "agent", m->sender_id);
    evarg_str(&a, "code", up || down ? m->code : status);
    evarg_int(&a, "now", j->now_ms);
    evarg_int(&a, "ts", m->ts_ms);
    evarg_str(&a, "sock", m->sock);
    evarg_str(&a, "name", m->sender_name);
    evarg_int(&a, "cap", m->cap ? (long long)m->cap : 1);
    evarg_str(&a, "skills", skills);
    evarg_call(j, "cg_agent_presence", agent_rows_reply, &a);
    for (unsigned i = 0; up && i < m->n_skills && i < MSG_SKILLS_MAX; i++)
        notify_dirty(j->r, m->skills[i]);
}

/* 'assigned' queue, row: the pick, announced in the call. */
static void agent_pick_reply(job *j, redisReply *rep) {
    if (say_refused(j, rep, "pick")) return;
    asg_row row;
    if (store_row_parse(evres_get(rep, "row"), &row) != 0) return;
    log_info("conv %s picked by %s", row.conv, row.agent);
    say_assigned(j, &row); /* announced in the call: the queue's snapshot */
}

void agent_on_pick(job *j) {
    if (!j->conv[0] || !j->m.sender_id[0]) {
        log_warn("entry %s: pick without conversation or agent", j->id);
        return;
    }
    evarg a;
    evarg_init(&a);
    say_rows_fields(&a, j);
    j->rows_announced = 1;
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "agent", j->m.sender_id);
    evarg_int(&a, "now", j->now_ms);
    evarg_call(j, "cg_agent_pick", agent_pick_reply, &a);
}

/* 'requeued' | 'closed' | 'already' channel, queue, rows: the customer was told and the freed
 * slot's assignments announced in the call. */
static void agent_close_reply(job *j, redisReply *rep) {
    msg *m = &j->m;
    if (say_refused(j, rep, "close")) return;
    char what[16];
    if (evres_kind(rep, what, sizeof(what)) != 0) return;
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    if (strcmp(what, "requeued") == 0) {
        log_info("conv %s unresolved by %s (%s): back in queue %s", j->conv, m->sender_id,
                 j->resolution, j->queue);
        notify_dirty(j->r, j->queue); /* whoever took it over was announced in the call */
    } else if (strcmp(what, "closed") == 0) {
        log_info("conv %s closed by %s (%s)", j->conv, m->sender_id, j->resolution);
    }
    say_assigned_rows(j, evres_get(rep, "rows"));
}

void agent_on_close(job *j) {
    if (!j->conv[0] || !j->m.sender_id[0]) {
        log_warn("entry %s: close without conversation or agent", j->id);
        return;
    }
    cg_strlcpy(j->resolution, j->m.code[0] ? j->m.code : "resolved", sizeof(j->resolution));
    int unresolved = 0;
    if (close_check(j, &unresolved) != 0) return; /* an unknown code (close.c) */
    evarg a;
    evarg_init(&a);
    say_rows_fields(&a, j); /* what the freed slot takes is announced in the call */
    j->rows_announced = 1;
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "agent", j->m.sender_id);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "resolution", j->resolution);
    evarg_str(&a, "entry", j->id);
    evarg_int(&a, "unresolved", unresolved);
    variant_locales(&a, j->r);
    if (unresolved) {
        variant_spec rq = {
            .type = MSG_TEXT, .role = ROLE_BOT, .key = TMPL_REQUEUED, .off_when_empty = 1};
        variant_pack(&a, "requeued", j, &rq);
    } else {
        close_texts(&a, j, "closed", j->resolution);
    }
    evarg_call(j, "cg_agent_close", agent_close_reply, &a);
}
