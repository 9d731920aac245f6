/* routing.c -- routing rules beyond "least-loaded agent of the queue" (redis/assign.lua,
 * redis/queue.lua and redis/timer.lua):
 *
 *   sticky agents   a new conversation of a customer whose last conversation was answered by
 *                   agent A within sticky_window_s goes to A when A is online with free capacity
 *                   and serves the queue (cg_enqueue's sticky_ms); otherwise normal routing.
 *                   cg:cust:<customer> last_agent / last_agent_at are set by the assigned
 *                   agent's first text of an assignment and again when it closes one it
 *                   answered in (cg_message / sla_agent, cg_close).
 *   offer timeout   every announced chat assignment (not e-mail) arms offer:<conv> after
 *                   offer_timeout_s (cg_announce, say.c); the agent's first text cancels it. Fired,
 *                   the conversation is taken back and offered to the next available agent (not
 *                   the same one); the agent gets a notice, and after offer_max_misses
 *                   consecutive misses its status becomes away (told so too).
 *   overflow        overflow:<queue> is armed for the overflow deadline (queued_at +
 *                   overflow_after_s) of the queue's waiting conversations. Fired, the queue is
 *                   marked overflowing and the available agents of its overflow queues get its
 *                   overdue conversations; later they are offered them whenever they free a
 *                   slot, may pick them, and see them in their queue snapshots.
 * The timers live in cg:timers and are claimed like every timer (timers.c); cg_route_timer
 * (redis/event.lua) fires one under the lease rule of cg_timer_fire, tells the agent and announces
 * what it assigned, in one call. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* Add the msg p (owned, freed here; len its size) as field k of a; nothing when p is NULL. */
static void routing_field(evarg *a, const char *k, unsigned char *p, size_t len) {
    if (!p) return;
    evarg_bytes(a, k, p, len);
    free(p);
}

/* 'missed' conv, agent, misses, away, queue, rows: the agent was told and everything assigned
 * announced in the call; log, refresh the snapshots. */
static void routing_fired_offer(job *j, const redisReply *rep) {
    router *r = j->r;
    char agent[MSG_ID_MAX];
    evres_str(rep, "conv", j->conv, sizeof(j->conv));
    evres_str(rep, "agent", agent, sizeof(agent));
    long long misses = evres_int(rep, "misses");
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    log_info("conv %s: %s did not answer within %lld s (miss %lld): offered again", j->conv, agent,
             r->cfg.offer_timeout_s, misses);
    if (evres_int(rep, "away"))
        log_info("agent %s set away after %lld missed offers", agent, misses);
    notify_dirty(r, j->queue);
    say_assigned_rows(j, evres_get(rep, "rows"));
}

/* 'overflow' queue, to (the overflow queues), rows: refresh the snapshots of the queue and of
 * its overflow queues (their agents see the overdue conversations). */
static void routing_fired_overflow(job *j, const redisReply *rep) {
    router *r = j->r;
    evres_str(rep, "queue", j->queue, sizeof(j->queue));
    const redisReply *rows = evres_get(rep, "rows");
    if (rows && rows->type == REDIS_REPLY_ARRAY && rows->elements > 0)
        log_info("queue %s overflowing: %zu conversations assigned", j->queue, rows->elements);
    notify_dirty(r, j->queue);
    const redisReply *to = evres_get(rep, "to");
    for (size_t i = 0; to && to->type == REDIS_REPLY_ARRAY && i < to->elements; i++) {
        char q[MSG_CODE_MAX];
        evres_text(to->element[i], q, sizeof(q));
        notify_dirty(r, q);
    }
    say_assigned_rows(j, rows);
}

static void routing_fire_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("timer %s: cg_route_timer: %s", j->member, rep->str);
        return;
    }
    char what[16];
    if (evres_kind(rep, what, sizeof(what)) != 0) return;
    log_debug("timer %s: %s", j->member, what);
    if (strcmp(what, "missed") == 0) {
        routing_fired_offer(j, rep);
    } else if (strcmp(what, "overflow") == 0) {
        routing_fired_overflow(j, rep);
    }
}

void routing_timer_step(job *j) {
    router *r = j->r;
    char text[256];
    size_t len = 0;
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "member", j->member);
    evarg_str(&a, "lease", j->lease);
    evarg_int(&a, "now", j->now_ms);
    evarg_int(&a, "max_misses", r->cfg.offer_max_misses);
    if (strncmp(j->member, "offer:", 6) == 0) { /* what the agent is told ({conv}, {misses}) */
        snprintf(text, sizeof(text),
                 "You did not answer conversation {conv} within %lld s: it was offered to "
                 "another agent.",
                 r->cfg.offer_timeout_s);
        unsigned char *p = say_payload(j, MSG_TEXT, ROLE_SYSTEM, NULL, NULL, text, &len);
        routing_field(&a, "missed", p, len);
        p = say_payload(j, MSG_TEXT, ROLE_SYSTEM, NULL, NULL,
                        "Your status was set to away after {misses} unanswered conversations. "
                        "Set it to online to get conversations again.",
                        &len);
        routing_field(&a, "away", p, len);
        p = say_payload(j, MSG_PRESENCE, ROLE_SYSTEM, "away", NULL, NULL, &len);
        routing_field(&a, "away_status", p, len); /* consoles show the status the desk set */
    }
    say_rows_fields(&a, j);
    j->rows_announced = 1;
    evarg_call(j, "cg_route_timer", routing_fire_reply, &a);
}
