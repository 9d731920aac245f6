/* transfer.c -- the agent's transfer command: {"type":"transfer","conv":…,"agent_id":…} or
 * {…,"queue":…}, with an optional note in text.
 *
 * One FCALL cg_transfer (redis/queue.lua) moves the conversation atomically: to an agent that is
 * online with free capacity (else the error transfer_failed goes back to the requester), or into
 * a configured queue at the conversation's priority (served at once when it is an open push
 * queue). The conversation log gets a `transferred` event (agent_id/agent_name or queue, the note
 * as text, cmid cg:tr:<entry id>), then the new assignment is announced; the requester's freed
 * slot is offered other waiting conversations. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* {'transferred', channel, locale, queue, ROW or {}, {ROW, ...}}: log the event, announce. */
static void transfer_reply(job *j, redisReply *rep) {
    msg *m = &j->m;
    if (say_refused(j, rep, "transfer")) return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 6) return;
    char cmid[MSG_ID_MAX];
    store_str(rep->element[1], j->channel, sizeof(j->channel));
    store_str(rep->element[3], j->queue, sizeof(j->queue));
    asg_row row;
    int has_row = store_row_parse(rep->element[4], &row) == 0;
    const char *note = m->text ? m->text : "";
    snprintf(cmid, sizeof(cmid), "cg:tr:%s", j->id);
    if (m->agent_id[0]) {
        log_info("conv %s transferred by %s to %s", j->conv, m->sender_id, m->agent_id);
        say_transferred(j, j->conv, j->channel, cmid, m->agent_id,
                        has_row ? row.agent_name : m->agent_id, NULL, note);
    } else {
        log_info("conv %s transferred by %s to queue %s", j->conv, m->sender_id, j->queue);
        say_transferred(j, j->conv, j->channel, cmid, NULL, NULL, j->queue, note);
    }
    if (has_row) say_assigned(j, &row);
    say_assigned_rows(j, rep->element[5]);
    notify_dirty(j->r, j->queue);
    job_push_outbox(j->r); /* assignments made while serving the target queue */
}

void agent_on_transfer(job *j) {
    msg *m = &j->m;
    if (!j->conv[0] || !m->sender_id[0] || (!m->agent_id[0] && !m->queue[0])) {
        log_warn("entry %s: transfer without conversation, agent or target", j->id);
        return;
    }
    char now[24], pos_ms[24];
    snprintf(now, sizeof(now), "%lld", (long long)j->now_ms);
    snprintf(pos_ms, sizeof(pos_ms), "%lld", j->r->cfg.position_update_s * 1000);
    job_cmd(j, transfer_reply, 10, "FCALL", "cg_transfer", "1", CG_KEY_TENANT, j->conv,
            m->sender_id, now, m->agent_id, m->agent_id[0] ? "" : m->queue, pos_ms);
}
