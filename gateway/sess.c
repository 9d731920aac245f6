/* sess.c -- one client connection: its identity, bounded send queue and rate limit.
 *
 * A session outlives its lws connection while Redis replies for it are pending: every pending
 * reply holds a reference, and the connection holds one until sess_detach(). */
#include "gw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

#define SESS_REPLY_RESERVE 64 /* replies beyond send_queue_max (sess_send_reply) */

sess *sess_new(struct lws *wsi, sess_role role, codec c, unsigned q_cap) {
    sess *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->q = calloc(q_cap + SESS_REPLY_RESERVE, sizeof(*s->q));
    if (!s->q) {
        free(s);
        return NULL;
    }
    s->q_cap = q_cap;
    s->q_slots = q_cap + SESS_REPLY_RESERVE;
    s->wsi = wsi;
    s->refs = 1;
    s->role = role;
    s->codec = c;
    s->num = ++G.next_sess_num;
    snprintf(s->sock, sizeof(s->sock), "%s:%llu", G.cfg.gateway_id, (unsigned long long)s->num);
    s->next = G.sessions;
    if (G.sessions) G.sessions->prev = s;
    G.sessions = s;
    G.n_sessions++;
    return s;
}

sess *sess_ref(sess *s) {
    s->refs++;
    return s;
}

static void sess_free(sess *s) {
    while (s->q_len)
        frame_unref(sess_pop(s));
    free(s->q);
    free(s->rx);
    free(s);
}

void sess_unref(sess *s) {
    if (!s || --s->refs) return;
    sess_free(s);
}

void sess_detach(sess *s) {
    if (!s->wsi) return;
    s->wsi = NULL;
    s->closing = 1;
    sub_unwatch_all(s);
    if (s->prev)
        s->prev->next = s->next;
    else
        G.sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    G.n_sessions--;
    sess_unref(s);
}

unsigned sess_room(const sess *s) {
    return s->q_len < s->q_cap ? s->q_cap - s->q_len : 0;
}

/* Queue f if fewer than limit frames are queued. */
static int sess_push(sess *s, frame *f, unsigned limit) {
    if (!f || !s->wsi || s->closing || s->q_len >= limit) return -1;
    s->q[(s->q_head + s->q_len) % s->q_slots] = frame_ref(f);
    s->q_len++;
    G.msgs_out++;
    ws_want_write(s);
    return 0;
}

int sess_send(sess *s, frame *f) {
    return sess_push(s, f, s->q_cap);
}

/* Encode m and queue it within limit. */
static int sess_push_msg(sess *s, const msg *m, unsigned limit) {
    frame *f = frame_encode(m, s->codec);
    if (!f) return -1;
    int rc = sess_push(s, f, limit);
    frame_unref(f);
    return rc;
}

int sess_send_msg(sess *s, const msg *m) {
    return sess_push_msg(s, m, s->q_cap);
}

int sess_send_reply(sess *s, const msg *m) {
    return sess_push_msg(s, m, s->q_slots);
}

void sess_send_error(sess *s, const char *code, const char *reason, const char *cmid, int retry) {
    msg m;
    msg_init(&m);
    m.type = MSG_ERROR;
    snprintf(m.code, sizeof(m.code), "%s", code);
    if (cmid) snprintf(m.cmid, sizeof(m.cmid), "%s", cmid);
    m.retry = retry ? 1 : 0;
    if (retry && (!strcmp(code, "unavailable") || !strcmp(code, "busy")))
        m.wait_s = RS_RETRY_AFTER_S; /* retry-after hint */
    msg_set_text(&m, reason, strlen(reason), NULL);
    if (sess_send_reply(s, &m) < 0) log_debug("sess %s: error frame %s not queued", s->sock, code);
    msg_free(&m);
}

frame *sess_pop(sess *s) {
    if (!s->q_len) return NULL;
    frame *f = s->q[s->q_head];
    s->q[s->q_head] = NULL;
    s->q_head = (s->q_head + 1) % s->q_slots;
    s->q_len--;
    return f;
}

void sess_close(sess *s, int code, const char *reason) {
    if (s->closing || !s->wsi) return;
    s->closing = 1;
    s->close_code = code;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
    ws_want_write(s);
}

int sess_rate_ok(sess *s, uint64_t now_ms, double rate, double burst) {
    if (!s->tokens_at_ms) {
        s->tokens = burst;
        s->tokens_at_ms = now_ms;
    }
    double dt = (double)(now_ms - s->tokens_at_ms) / 1000.0;
    s->tokens_at_ms = now_ms;
    s->tokens += dt * rate;
    if (s->tokens > burst) s->tokens = burst;
    if (s->tokens < 1.0) return 0;
    s->tokens -= 1.0;
    return 1;
}
