/* routing.c -- routing rules beyond "least-loaded agent of the queue" (redis/assign.lua,
 * redis/queue.lua and redis/timer.lua):
 *
 *   sticky agents   a new conversation of a customer whose last conversation was answered by
 *                   agent A within sticky_window_s goes to A when A is online with free capacity
 *                   and serves the queue (cg_enqueue's sticky_ms); otherwise normal routing.
 *                   cg:cust:<customer> last_agent / last_agent_at are set by the assigned
 *                   agent's first text of an assignment and again when it closes one it
 *                   answered in (cg_append / cg_sla_agent, cg_close).
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
 * The timers live in cg:timers and are claimed like every timer (timers.c); cg_route_fire fires
 * them under the lease rule of cg_timer_fire. */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

const char *routing_sticky_ms(const router *r, char *buf, size_t n) {
    snprintf(buf, n, "%lld", r->cfg.sticky_window_s * 1000);
    return buf;
}

/* {'missed', conv, agent, misses, away, channel, queue, locale, assigned}: tell the agent,
 * announce the new assignment (outbox), refresh the queue's snapshot. */
static void routing_fired_offer(job *j, const redisReply *rep) {
    router *r = j->r;
    if (rep->elements < 9) return;
    char agent[MSG_ID_MAX], text[512];
    store_str(rep->element[1], j->conv, sizeof(j->conv));
    store_str(rep->element[2], agent, sizeof(agent));
    long long misses = store_int(rep->element[3]);
    int away = store_int(rep->element[4]) != 0;
    store_str(rep->element[6], j->queue, sizeof(j->queue));
    log_info("conv %s: %s did not answer within %lld s (miss %lld): offered again", j->conv, agent,
             r->cfg.offer_timeout_s, misses);
    snprintf(text, sizeof(text),
             "You did not answer conversation %s within %lld s: it was offered to another agent.",
             j->conv, r->cfg.offer_timeout_s);
    say_agent_notice(j, agent, j->conv, j->queue, text);
    if (away) {
        log_info("agent %s set away after %lld missed offers", agent, misses);
        snprintf(text, sizeof(text),
                 "Your status was set to away after %lld unanswered conversations. Set it to "
                 "online to get conversations again.",
                 misses);
        say_agent_notice(j, agent, NULL, NULL, text);
        say_agent_status(j, agent, "away"); /* consoles show the status the desk set */
    }
    notify_dirty(r, j->queue);
    job_push_outbox(r);
}

/* {'overflow', queue, assigned, {overflow queues}}: refresh the snapshots of the queue and of
 * its overflow queues (their agents see the overdue conversations), announce assignments. */
static void routing_fired_overflow(job *j, const redisReply *rep) {
    router *r = j->r;
    if (rep->elements < 4) return;
    store_str(rep->element[1], j->queue, sizeof(j->queue));
    long long n = store_int(rep->element[2]);
    if (n > 0) log_info("queue %s overflowing: %lld conversations assigned", j->queue, n);
    notify_dirty(r, j->queue);
    const redisReply *to = rep->element[3];
    for (size_t i = 0; to && to->type == REDIS_REPLY_ARRAY && i < to->elements; i++) {
        char q[MSG_CODE_MAX];
        store_str(to->element[i], q, sizeof(q));
        notify_dirty(r, q);
    }
    if (n > 0) job_push_outbox(r);
}

static void routing_fire_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("timer %s: cg_route_fire: %s", j->member, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) return;
    char what[16];
    store_str(rep->element[0], what, sizeof(what));
    log_debug("timer %s: %s", j->member, what);
    if (strcmp(what, "missed") == 0) {
        routing_fired_offer(j, rep);
    } else if (strcmp(what, "overflow") == 0) {
        routing_fired_overflow(j, rep);
    }
}

void routing_timer_step(job *j) {
    char now[24], max[24];
    snprintf(now, sizeof(now), "%lld", (long long)j->now_ms);
    snprintf(max, sizeof(max), "%lld", j->r->cfg.offer_max_misses);
    job_cmd(j, routing_fire_reply, 8, "FCALL", "cg_route_fire", "1", CG_KEY_TENANT, j->member,
            j->lease, now, max);
}
