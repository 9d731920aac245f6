/* transfer.c -- the agent's transfer command: {"type":"transfer","conv":…,"agent_id":…} or
 * {…,"queue":…}, with an optional note in text.
 *
 * One FCALL cg_agent_transfer (redis/event.lua: cg_transfer of redis/queue.lua, then the event)
 * moves the conversation atomically: to an agent that is
 * online with free capacity (else the error transfer_failed goes back to the requester), or into
 * a configured queue at the conversation's priority (served at once when it is an open push
 * queue). The conversation log gets a `transferred` event (agent_id/agent_name or queue, the note
 * as text, cmid cg:tr:<entry id>), then the new assignment is announced; the requester's freed
 * slot is offered other waiting conversations. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* 'transferred' channel, locale, queue, row (to an agent, else {}), rows: the event was written
 * in the call; announce the new assignment and what the freed slot took. */
static void transfer_reply(job *j, redisReply *rep) {
    msg *m = &j->m;
    if (say_refused(j, rep, "transfer")) return;
    char what[16];
    if (evres_kind(rep, what, sizeof(what)) != 0 || strcmp(what, "transferred") != 0) return;
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    asg_row row;
    int has_row = store_row_parse(evres_get(rep, "row"), &row) == 0;
    if (m->agent_id[0])
        log_info("conv %s transferred by %s to %s", j->conv, m->sender_id, m->agent_id);
    else
        log_info("conv %s transferred by %s to queue %s", j->conv, m->sender_id, j->queue);
    if (has_row) say_assigned(j, &row);
    say_assigned_rows(j, evres_get(rep, "rows"));
    notify_dirty(j->r, j->queue);
    job_push_outbox(j->r); /* assignments made while serving the target queue */
}

void agent_on_transfer(job *j) {
    msg *m = &j->m;
    if (!j->conv[0] || !m->sender_id[0] || (!m->agent_id[0] && !m->queue[0])) {
        log_warn("entry %s: transfer without conversation, agent or target", j->id);
        return;
    }
    const char *note = m->text ? m->text : "";
    size_t len = 0;
    unsigned char *ev = say_transferred_payload(j, m->agent_id[0] ? m->agent_id : NULL,
                                                m->agent_id[0] ? NULL : m->queue, note, &len);
    evarg a;
    evarg_init(&a);
    say_rows_fields(&a, j); /* the new assignment and the freed slot's, announced in the call */
    j->rows_announced = 1;
    evarg_str(&a, "conv", j->conv);
    evarg_str(&a, "agent", m->sender_id);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "to_agent", m->agent_id);
    evarg_str(&a, "to_queue", m->agent_id[0] ? "" : m->queue);
    evarg_int(&a, "pos_ms", j->r->cfg.position_update_s * 1000);
    evarg_str(&a, "entry", j->id);
    evarg_bytes(&a, "transferred", ev ? (const char *)ev : "", ev ? len : 0);
    free(ev);
    evarg_call(j, "cg_agent_transfer", transfer_reply, &a);
}
