/* sess.c -- one client connection: its identity, bounded send queue and rate limit.
 *
 * A session outlives its lws connection while Redis replies for it are pending: every pending
 * reply holds a reference, and the connection holds one until sess_detach().
 *
 * The send queue holds at most send_queue_max frames that are not answers (logged messages, which
 * a slow client reads again from the log, and best-effort notices) plus SESS_CTL_MAX answers to
 * the client's own frames (acks, errors, welcome), which are never dropped: while the answers
 * queued and owed (Redis requests pending) reach half of SESS_CTL_MAX, the gateway stops reading
 * from the client (TCP backpressure) until they drain to a quarter; a connection whose answers
 * overflow the reserve anyway is closed 1008 "too slow" after what is queued.
 *
 * After a wave of disconnects (at least SESS_TRIM_WAVE connections gone, half of the peak) the
 * freed heap is handed back to the system (malloc_trim), a second after the last of them. */
#include "gw.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"

/* The lws rx flow control reason bit of answer backpressure (other modules may use others). */
#define SESS_RXFLOW_ANSWERS (1 << 1)
#define SESS_RX_PAUSE_AT (SESS_CTL_MAX / 2)
#define SESS_RX_RESUME_AT (SESS_CTL_MAX / 4)
#define SESS_Q_FIRST 8 /* send queue slots a connection gets with its first frame */
#define SESS_TRIM_WAVE 64
#define SESS_TRIM_DELAY_MS 1000

static uv_timer_t trim_timer;
static int trim_ready;
static unsigned trim_peak; /* most connections (sessions and waiting) since the last trim */

/* WebSocket connections: with a session, or waiting for their first message. */
static unsigned sess_conns(void) {
    return G.n_sessions + G.n_ws_waiting;
}

static long sess_rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void sess_trim_fire(uv_timer_t *t) {
    long before = sess_rss_kb();
    malloc_trim(0);
    log_info("sess: %u connections left of %u: heap trimmed, RSS %ld -> %ld KiB", sess_conns(),
             trim_peak, before, sess_rss_kb());
    trim_peak = sess_conns();
}

/* A session is gone: arm the trim once a wave of them is (restarting the delay each time). */
static void sess_trim_maybe(void) {
    if (trim_peak < sess_conns() + SESS_TRIM_WAVE || sess_conns() > trim_peak / 2) return;
    if (!trim_ready) {
        if (uv_timer_init(G.loop, &trim_timer) != 0) return;
        uv_unref((uv_handle_t *)&trim_timer); /* never keeps the loop running */
        trim_ready = 1;
    }
    if (!uv_is_closing((uv_handle_t *)&trim_timer))
        uv_timer_start(&trim_timer, sess_trim_fire, SESS_TRIM_DELAY_MS, 0);
}

sess *sess_new(struct lws *wsi, sess_role role, codec c, unsigned data_max) {
    sess *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->q_cap = data_max + SESS_CTL_MAX; /* slots come with the first frames (sess_grow) */
    s->data_max = data_max;
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
    if (sess_conns() > trim_peak) trim_peak = sess_conns();
    return s;
}

void sess_conn_waiting(int came) {
    if (came) {
        G.n_ws_waiting++;
        if (sess_conns() > trim_peak) trim_peak = sess_conns();
        return;
    }
    if (G.n_ws_waiting) G.n_ws_waiting--;
    sess_trim_maybe();
}

sess *sess_ref(sess *s) {
    s->refs++;
    return s;
}

static void sess_free(sess *s) {
    while (s->q_len)
        frame_unref(sess_pop(s));
    free(s->q);
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
    sess_trim_maybe();
}

unsigned sess_room(const sess *s) {
    unsigned data = s->q_len - s->q_ctl;
    unsigned room = data < s->data_max ? s->data_max - data : 0;
    unsigned left = s->q_cap - s->q_len;
    return room < left ? room : left;
}

/* Pause or resume reading from the client by the answers it has queued and owed. */
static void sess_rx_flow(sess *s) {
    if (!s->wsi) return;
    unsigned load = s->q_ctl + s->owed;
    if (!s->rx_paused && load >= SESS_RX_PAUSE_AT) {
        s->rx_paused = 1;
        log_debug("sess %s: %u answers unread or owed: reading paused", s->sock, load);
        lws_rx_flow_control(s->wsi, LWS_RXFLOW_REASON_APPLIES_DISABLE | SESS_RXFLOW_ANSWERS);
    } else if (s->rx_paused && load <= SESS_RX_RESUME_AT) {
        s->rx_paused = 0;
        lws_rx_flow_control(s->wsi, LWS_RXFLOW_REASON_APPLIES_ENABLE | SESS_RXFLOW_ANSWERS);
    }
}

/* Room for one more frame in the ring: doubled (from SESS_Q_FIRST) up to q_cap, its frames put
 * in order from slot 0. -1 out of memory. */
static int sess_grow(sess *s) {
    if (s->q_len < s->q_alloc) return 0;
    unsigned n = s->q_alloc ? s->q_alloc * 2 : SESS_Q_FIRST;
    if (n > s->q_cap) n = s->q_cap;
    if (n <= s->q_alloc) return -1;
    frame **q = calloc(n, sizeof(*q));
    if (!q) return -1;
    for (unsigned i = 0; i < s->q_len; i++)
        q[i] = s->q[(s->q_head + i) % s->q_alloc];
    free(s->q);
    s->q = q;
    s->q_head = 0;
    s->q_alloc = n;
    return 0;
}

/* Queue f (a reference is taken): 0, or -1 out of memory (f not queued). */
static int sess_push(sess *s, frame *f) {
    if (sess_grow(s) != 0) {
        log_error("sess %s: out of memory queueing a frame", s->sock);
        return -1;
    }
    s->q[(s->q_head + s->q_len) % s->q_alloc] = frame_ref(f);
    s->q_len++;
    if (f->ctl) s->q_ctl++;
    G.msgs_out++;
    ws_want_write(s);
    return 0;
}

int sess_send(sess *s, frame *f) {
    if (!f || !s->wsi || s->closing || !sess_room(s)) return -1;
    return sess_push(s, f);
}

int sess_send_msg(sess *s, const msg *m) {
    frame *f = frame_encode(m, s->codec);
    if (!f) return -1;
    int rc = sess_send(s, f);
    frame_unref(f);
    return rc;
}

int sess_send_ctl_msg(sess *s, const msg *m) {
    if (!s->wsi || s->closing) return -1;
    if (s->q_len == s->q_cap) {
        log_warn("sess %s: %u answers not read: closing (too slow)", s->sock, s->q_ctl);
        sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow");
        return -1;
    }
    frame *f = frame_encode(m, s->codec);
    if (!f) return -1;
    f->ctl = 1;
    int rc = sess_push(s, f);
    frame_unref(f);
    if (rc != 0) {
        sess_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return -1;
    }
    sess_rx_flow(s);
    return 0;
}

void sess_owe(sess *s) {
    s->owed++;
    sess_rx_flow(s);
}

void sess_owe_done(sess *s) {
    if (s->owed) s->owed--;
    sess_rx_flow(s);
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
    if (sess_send_ctl_msg(s, &m) < 0)
        log_debug("sess %s: error frame %s not queued", s->sock, code);
    msg_free(&m);
}

frame *sess_pop(sess *s) {
    if (!s->q_len) return NULL;
    frame *f = s->q[s->q_head];
    s->q[s->q_head] = NULL;
    s->q_head = (s->q_head + 1) % s->q_alloc;
    s->q_len--;
    if (f->ctl && s->q_ctl) {
        s->q_ctl--;
        sess_rx_flow(s);
    }
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
