/* conv.c -- a customer wrote (text or attachment from cg:in).
 *
 * One FCALL cg_conv_info tells the conversation's state; then:
 *   new      -> greeting (cmid cg:greet), classification of this first message (classify.c:
 *               queue, priority, category) and cg_enqueue, which assigns at once in a push queue
 *               (-> announce) or queues (-> auto-reply with position, cmid cg:pos:<entry>);
 *   queued   -> auto-reply with the current position;
 *   assigned -> announce only if the assignment is still in the outbox (a router died before);
 *   closed / unknown -> nothing (cg_append opened a new conversation for later messages). */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* Replace {position} and {wait} in tmpl into out. */
static void conv_format_queued(const char *tmpl, uint32_t position, uint32_t wait_s, char *out,
                               size_t n) {
    char pos[16], wait[32];
    snprintf(pos, sizeof(pos), "%u", position);
    uint32_t min = (wait_s + 59) / 60;
    snprintf(wait, sizeof(wait), "%u min", min ? min : 1);
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 1 < n;) {
        const char *sub = NULL;
        size_t skip = 0;
        if (strncmp(p, "{position}", 10) == 0) {
            sub = pos;
            skip = 10;
        } else if (strncmp(p, "{wait}", 6) == 0) {
            sub = wait;
            skip = 6;
        }
        if (!sub) {
            out[o++] = *p++;
            continue;
        }
        for (const char *s = sub; *s && o + 1 < n; s++)
            out[o++] = *s;
        p += skip;
    }
    out[o] = '\0';
}

/* Auto-reply: the customer is waiting at position in queue. */
static void conv_say_position(job *j, long long position) {
    router *r = j->r;
    char text[ROUTER_TEXT_MAX + 64], cmid[MSG_ID_MAX];
    uint32_t pos = position > 0 ? (uint32_t)position : 1;
    uint32_t wait_s = (uint32_t)(pos * r->cfg.avg_handle_s);
    conv_format_queued(r->cfg.queued_text, pos, wait_s, text, sizeof(text));
    snprintf(cmid, sizeof(cmid), "cg:pos:%s", j->id);
    say_text(j, j->conv, j->channel, cmid, text, j->queue, pos, wait_s);
    notify_dirty(r, j->queue);
}

static void conv_enqueue_reply(job *j, redisReply *rep) {
    j->state[0] = '\0';
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("conv %s: cg_enqueue: %s", j->conv, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) return;
    store_str(rep->element[0], j->state, sizeof(j->state));
    if (strcmp(j->state, "assigned") == 0) {
        j->has_row = store_row_parse(rep->element[1], &j->row) == 0;
    } else if (strcmp(j->state, "queued") == 0) {
        j->position = store_int(rep->element[1]);
    } else if (strcmp(j->state, "already") == 0 && rep->elements >= 3) {
        /* another router (or an earlier run of this entry) got there first */
        char st[16];
        store_str(rep->element[1], st, sizeof(st));
        j->has_row = store_row_parse(rep->element[2], &j->row) == 0;
        if (strcmp(st, "queued") == 0) cg_strlcpy(j->state, "reread", sizeof(j->state));
    }
}

static void conv_after_enqueue(job *j) {
    if (j->has_row) {
        log_info("conv %s assigned to %s", j->conv, j->row.agent);
        say_assigned(j, &j->row);
        return;
    }
    if (strcmp(j->state, "queued") == 0) {
        log_info("conv %s queued in %s at %lld", j->conv, j->queue, j->position);
        conv_say_position(j, j->position);
        return;
    }
    if (strcmp(j->state, "reread") == 0) job_restart(j); /* tell the position */
}

static void conv_info_reply(job *j, redisReply *rep) {
    j->state[0] = '\0';
    if (rep->type == REDIS_REPLY_ERROR) {
        log_warn("conv %s: cg_conv_info: %s", j->conv, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 6) return;
    store_str(rep->element[0], j->state, sizeof(j->state));
    store_str(rep->element[1], j->channel, sizeof(j->channel));
    store_str(rep->element[2], j->queue, sizeof(j->queue));
    j->position = store_int(rep->element[3]);
    j->in_outbox = (int)store_int(rep->element[4]);
    j->has_row = store_row_parse(rep->element[5], &j->row) == 0;
}

/* Classify the first message of a new conversation and enqueue it (category = the matching
 * rule's name, "default" when none matched). */
static void conv_enqueue(job *j) {
    const msg *m = &j->m;
    cls_input in = {.text = m->text,
                    .subject = m->meta.subject,
                    .channel = j->channel[0] ? j->channel : msg_channel_name(m->channel),
                    .tier = m->identity.tier};
    cls_result res;
    cls_classify(&j->r->cls, &in, &res);
    cg_strlcpy(j->queue, res.queue, sizeof(j->queue));
    const char *category = res.rule[0] ? res.rule : "default";
    char now[24], prio[8];
    snprintf(now, sizeof(now), "%lld", (long long)j->now_ms);
    snprintf(prio, sizeof(prio), "%d", res.priority);
    log_info("conv %s classified: queue %s, priority %d, category %s", j->conv, j->queue,
             res.priority, category);
    job_cmd(j, conv_enqueue_reply, 8, "FCALL", "cg_enqueue", "0", j->conv, j->queue, prio, now,
            category);
    j->then = conv_after_enqueue;
}

static void conv_after_info(job *j) {
    router *r = j->r;
    if (strcmp(j->state, "new") == 0) {
        say_text(j, j->conv, j->channel, "cg:greet", r->cfg.greeting_text, NULL, 0, 0);
        conv_enqueue(j);
        return;
    }
    if (strcmp(j->state, "queued") == 0) {
        conv_say_position(j, j->position);
        return;
    }
    if (strcmp(j->state, "assigned") == 0 && j->in_outbox && j->has_row) {
        say_assigned(j, &j->row);
        return;
    }
}

void conv_on_customer(job *j) {
    if (!j->conv[0]) {
        log_warn("entry %s: customer message without conversation", j->id);
        return;
    }
    job_cmd(j, conv_info_reply, 4, "FCALL", "cg_conv_info", "0", j->conv);
    j->then = conv_after_info;
}
