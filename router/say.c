/* say.c -- the messages the router writes: the payloads of bot texts and events that the event
 * functions (redis/event.lua) append to a conversation log (through cg_message mode sys, with
 * deterministic cmids so a re-processed entry never writes twice), announcements (cg_announce),
 * and notifications and errors for one agent on cg:a:<agent>.
 *
 * Router cmids start with "cg:" ("cg:greet", "cg:pos:<entry id>", "cg:asg:<assign_no>",
 * "cg:close", "cg:ack", "cg:pu:<n>", "cg:ticket", "cg:survey", "cg:idle", "cg:requeued:<n>",
 * "cg:thx:<entry>", "cg:rate:<entry>"); idempotency keys already include the
 * conversation id. Customer texts come from the templates of the customer's locale (tmpl.c). */
#include "router.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define SAY_SENDER "chatgw"
#define SAY_PUB_PREFIX 8 /* big-endian seq before every pub/sub payload; 0 = not logged */

/* Fill the fields every router message has. */
static void say_init(msg *m, msg_type type, msg_role role, const char *channel, int64_t now_ms) {
    msg_init(m);
    m->type = type;
    m->role = role;
    m->dir = DIR_OUT;
    m->ts_ms = now_ms;
    msg_channel ch = CH_WEB;
    if (channel && channel[0] && msg_channel_parse(channel, &ch) == 0) m->channel = ch;
    cg_strlcpy(m->sender_id, SAY_SENDER, sizeof(m->sender_id));
    char id[33];
    if (cg_id_new(id) == 0) cg_strlcpy(m->id, id, sizeof(m->id));
}

/* PUBLISH cg:a:<agent> with the 8-byte seq-0 prefix. */
static void say_publish_agent(job *j, const char *agent, const msg *m) {
    size_t len = 0;
    unsigned char *buf = msg_encode_msgpack(m, SAY_PUB_PREFIX, &len);
    if (!buf) {
        log_error("out of memory encoding a %s message", msg_type_name(m->type));
        return;
    }
    memset(buf, 0, SAY_PUB_PREFIX);
    char chan[CG_KEY_EXTRA + MSG_ID_MAX];
    snprintf(chan, sizeof(chan), CG_KEY_CH_AGENT, agent);
    const char *argv[3] = {"PUBLISH", chan, (const char *)buf};
    size_t lens[3] = {7, strlen(chan), len + SAY_PUB_PREFIX};
    job_cmdargv(j, NULL, 3, argv, lens);
    free(buf);
}

/* The bot text message m for text: 0, or -1 (logged) when refused. */
static int say_text_msg(msg *m, const job *j, const char *channel, const char *text) {
    cg_err err = {{0}, {0}};
    say_init(m, MSG_TEXT, ROLE_BOT, channel, j->now_ms);
    if (msg_set_text(m, text, strlen(text), &err) != 0) {
        log_error("router text refused: %s", err.msg);
        msg_free(m);
        return -1;
    }
    return 0;
}

unsigned char *say_payload(job *j, msg_type type, msg_role role, const char *code, const char *conv,
                           const char *text, size_t *len) {
    msg m;
    say_init(&m, type, role, NULL, j->now_ms);
    m.channel = CH_NONE; /* the conversation's channel is the library's to know */
    if (code && code[0]) cg_strlcpy(m.code, code, sizeof(m.code));
    if (conv && conv[0]) cg_strlcpy(m.conv, conv, sizeof(m.conv));
    if (text && text[0] && msg_set_text(&m, text, strlen(text), NULL) != 0) {
        msg_free(&m);
        return NULL;
    }
    unsigned char *buf = msg_encode_msgpack(&m, 0, len);
    msg_free(&m);
    return buf;
}

unsigned char *say_tmpl_payload(job *j, const char *channel, const char *locale, tmpl_key k,
                                size_t *len) {
    char text[TMPL_TEXT_MAX + 256];
    *len = 0;
    tmpl_render(say_template(j->r, locale, k), NULL, 0, text, sizeof(text));
    if (!text[0]) return NULL;
    msg m;
    if (say_text_msg(&m, j, channel, text) != 0) return NULL;
    cg_strlcpy(m.code, tmpl_key_name(k), sizeof(m.code));
    unsigned char *buf = msg_encode_msgpack(&m, 0, len);
    msg_free(&m);
    return buf;
}

const char *say_template(const router *r, const char *locale, tmpl_key k) {
    const char *t = tmpl_pick(&r->tmpl, locale, r->cfg.default_locale, k);
    if (t) return t;
    if (k == TMPL_GREETING) return r->cfg.greeting_text;
    if (k == TMPL_QUEUED) return r->cfg.queued_text;
    if (k == TMPL_CLOSED) return r->cfg.closed_text;
    return tmpl_builtin(k);
}

const char *say_duration_unit(const char *locale, int hours) {
    int zh =
        locale && (locale[0] == 'z' || locale[0] == 'Z') && (locale[1] == 'h' || locale[1] == 'H');
    if (hours) return zh ? "小时" : "h";
    return zh ? "分钟" : "min";
}

void say_duration(const char *locale, long long secs, char *out, size_t n) {
    if (secs < 0) secs = 0;
    if (secs >= 7200 && secs % 3600 == 0) {
        snprintf(out, n, "%lld %s", secs / 3600, say_duration_unit(locale, 1));
        return;
    }
    long long min = (secs + 59) / 60;
    snprintf(out, n, "%lld %s", min ? min : 1, say_duration_unit(locale, 0));
}

static void say_announce_reply(job *j, redisReply *rep) {
    if (rep->type == REDIS_REPLY_ERROR) log_warn("cg_announce (%s): %s", j->conv, rep->str);
}

unsigned char *say_assigned_payload(job *j, size_t *len) {
    msg m;
    say_init(&m, MSG_ASSIGNED, ROLE_SYSTEM, NULL, j->now_ms);
    m.channel = CH_NONE; /* the call sets the agent, its name, the queue and the channel */
    msg_set_text(&m, "{name} has joined", 17, NULL);
    unsigned char *buf = msg_encode_msgpack(&m, 0, len);
    msg_free(&m);
    return buf;
}

void say_rows_fields(evarg *a, job *j) {
    size_t len = 0;
    unsigned char *asg = say_assigned_payload(j, &len);
    evarg_bytes(a, "assigned", asg ? (const char *)asg : "", asg ? len : 0);
    free(asg);
    evarg_int(a, "offer_ms", j->r->cfg.offer_timeout_s * 1000);
    evarg_int(a, "idle_ms", j->r->cfg.idle_close_s * 1000);
}

void say_assigned(job *j, const asg_row *row) {
    router *r = j->r;
    if (j->rows_announced) { /* by the event call itself: the queue's snapshot is left */
        if (row->queue[0]) notify_dirty(r, row->queue);
        return;
    }
    msg m;
    char cmid[MSG_ID_MAX], text[MSG_NAME_MAX + 32];
    say_init(&m, MSG_ASSIGNED, ROLE_SYSTEM, row->channel, j->now_ms);
    cg_strlcpy(m.agent_id, row->agent, sizeof(m.agent_id));
    cg_strlcpy(m.agent_name, row->agent_name, sizeof(m.agent_name));
    cg_strlcpy(m.queue, row->queue, sizeof(m.queue));
    snprintf(text, sizeof(text), "%s has joined", row->agent_name);
    msg_set_text(&m, text, strlen(text), NULL);
    snprintf(cmid, sizeof(cmid), "cg:asg:%lld", row->assign_no);
    size_t elen = 0, nlen = 0;
    unsigned char *event = msg_encode_msgpack(&m, 0, &elen);
    cg_strlcpy(m.conv, row->conv, sizeof(m.conv));
    cg_strlcpy(m.cmid, cmid, sizeof(m.cmid));
    unsigned char *notice = msg_encode_msgpack(&m, 0, &nlen);
    msg_free(&m);
    if (!event || !notice) {
        log_error("out of memory encoding the assignment of %s", row->conv);
        free(event);
        free(notice);
        return; /* the conversation stays in the outbox: announced later */
    }
    /* one call: the `assigned` event, the agent's notice, the outbox, the offer and idle timers */
    long long offer_s = r->cfg.offer_timeout_s, idle_s = r->cfg.idle_close_s;
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", row->conv);
    evarg_str(&a, "agent", row->agent);
    evarg_int(&a, "assign_no", row->assign_no);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "channel", row->channel);
    evarg_bytes(&a, "event", event, elen);
    evarg_bytes(&a, "notice", notice, nlen);
    /* an e-mail answer takes longer: no offer timeout there */
    evarg_int(&a, "offer_due",
              offer_s > 0 && sla_is_chat(row->channel) ? j->now_ms + offer_s * 1000 : 0);
    evarg_int(&a, "idle_due", idle_s > 0 ? j->now_ms + idle_s * 1000 : 0);
    free(event);
    free(notice);
    evarg_call(j, "cg_announce", say_announce_reply, &a);
    if (row->queue[0]) notify_dirty(r, row->queue);
}

void say_assigned_rows(job *j, const redisReply *rows) {
    if (!rows || rows->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i < rows->elements; i++) {
        asg_row row;
        if (store_row_parse(rows->element[i], &row) != 0) continue;
        log_info("conv %s assigned to %s", row.conv, row.agent);
        say_assigned(j, &row);
    }
}

void say_agent_error(job *j, const char *agent, const char *code, const char *text,
                     const char *cmid, const char *conv) {
    msg m;
    say_init(&m, MSG_ERROR, ROLE_SYSTEM, NULL, j->now_ms);
    cg_strlcpy(m.code, code, sizeof(m.code));
    if (text && text[0]) msg_set_text(&m, text, strlen(text), NULL);
    if (cmid) cg_strlcpy(m.cmid, cmid, sizeof(m.cmid));
    if (conv) cg_strlcpy(m.conv, conv, sizeof(m.conv));
    say_publish_agent(j, agent, &m);
    msg_free(&m);
}

/* Function error prefixes (the chatgw library, redis/) and the error codes agents get for them. */
static const struct {
    const char *prefix, *code;
} say_refusals[] = {
    {"NOTASSIGNED", "not_assigned"},     {"CLOSED", "closed"},
    {"PICKFAIL", "pick_failed"},         {"TRANSFERFAIL", "transfer_failed"},
    {"CLASSIFYFAIL", "classify_failed"},
};

int say_refused(job *j, const redisReply *rep, const char *command) {
    if (rep->type != REDIS_REPLY_ERROR) return 0;
    const msg *m = &j->m;
    log_info("agent %s %s %s refused: %s", m->sender_id, command, j->conv, rep->str);
    for (size_t i = 0; i < sizeof(say_refusals) / sizeof(say_refusals[0]); i++) {
        size_t n = strlen(say_refusals[i].prefix);
        if (strncmp(rep->str, say_refusals[i].prefix, n) != 0 ||
            (rep->str[n] && rep->str[n] != ' '))
            continue;
        const char *reason = rep->str[n] ? rep->str + n + 1 : rep->str;
        say_agent_error(j, m->sender_id, say_refusals[i].code, reason, m->cmid, j->conv);
        break;
    }
    return 1;
}

unsigned char *say_transferred_payload(job *j, const char *to_agent, const char *queue,
                                       const char *note, size_t *len) {
    msg m;
    say_init(&m, MSG_TRANSFERRED, ROLE_SYSTEM, NULL, j->now_ms);
    m.channel = CH_NONE; /* the conversation's is the library's to know */
    if (to_agent) cg_strlcpy(m.agent_id, to_agent, sizeof(m.agent_id));
    if (queue) cg_strlcpy(m.queue, queue, sizeof(m.queue));
    if (note && note[0]) msg_set_text(&m, note, strlen(note), NULL);
    unsigned char *buf = msg_encode_msgpack(&m, 0, len);
    msg_free(&m);
    return buf;
}
