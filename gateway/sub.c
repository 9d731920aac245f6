/* sub.c -- pub/sub channels, the sessions watching them, and catch-up from the log.
 *
 * One Redis SUBSCRIBE per channel per gateway, however many local sessions watch it:
 *   cg:c:<conv>   conversation messages  (WATCH_CONV)
 *   cg:a:<agent>  assignments and errors (WATCH_AGENT)
 *   cg:q:<queue>  queue snapshots        (WATCH_QUEUE)
 * Payloads are an 8-byte big-endian seq followed by a msgpack msg.
 *
 * Delivery rule for a conversation watch: a live message with seq == last_sent + 1 is queued at
 * once; anything else (a gap, a full send queue, a fresh subscription, Redis reconnect) is healed
 * by reading the log: XRANGE cg:conv:<conv>:log <last_sent+1>-0 + COUNT n. Every subscription
 * confirmation re-syncs its watchers from durable state, so a message missed on pub/sub is never
 * lost, and seq numbers make sure none is sent twice. A catch-up that fails (a Redis error) is
 * retried on a timer backing off from 50 ms to 2 s, never at once.
 *
 * Who may watch a conversation: its customer, and an agent session only while the conversation
 * is assigned to that agent (there is no supervisor role in the tokens yet: every desk session is
 * an agent). An agent's watch is checked against the conversation hash (HGET agent) after each
 * logged event that may move the conversation (`assigned` or `transferred` to someone else,
 * `escalated`, a bot text such as the unresolved close's) and after an agent-channel notice about
 * it (offer timeout, SLA reassign, customer left); until the answer, nothing more is sent to it.
 * The watch ends when the conversation is someone else's or no one's: the agent keeps what it
 * had, up to and including the event that moved it. A closed conversation stays its last agent's
 * (survey, rating): a session follows at most SUB_CLOSED_KEEP closed conversations, the ones
 * closed last, so that an agent signed in for days does not pile up watches. */
#include "gw.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

#define SUB_BUCKETS 4096
#define SUB_FETCH_MAX 100

typedef struct chan {
    char name[MSG_ID_MAX + CG_KEY_EXTRA];
    char key[MSG_ID_MAX];
    watch_kind kind;
    int subscribed; /* SUBSCRIBE sent on the current connection */
    int confirmed;  /* its confirmation arrived */
    watch *watchers;
    struct chan *hnext;
} chan;

struct watch {
    chan *ch;
    sess *s;
    watch *cnext, *cprev; /* in ch->watchers */
    watch *snext;         /* in s->watches */
    uint64_t last_sent;   /* conv: highest seq queued to the session */
    uint64_t want;        /* conv: highest seq known to exist */
    int64_t snap_ts;      /* queue: ts of the newest snapshot sent (older ones are dropped) */
    int snap_sent;        /* queue: a snapshot (maybe empty) was sent */
    int fetching;
    int stale;   /* conv: a catch-up could not run or was cut short (full send queue) */
    int dead;    /* unwatched while a Redis reply was pending: freed by that reply */
    int recheck; /* conv, agent: the assignment must be checked before anything more is sent */
    unsigned backoff_ms; /* conv: delay of the next catch-up retry after a failed one */
    uint64_t closed_no;  /* conv, agent: order in which its `closed` event was sent (0: open) */
    uv_timer_t *retry;   /* conv: the catch-up retry timer (lazily created; closed with w) */
    msg_channel channel;
};

#define SUB_RETRY_MIN_MS 50
#define SUB_RETRY_MAX_MS 2000
#define SUB_CLOSED_KEEP 16

static uint64_t closed_count; /* numbers the `closed` events sent to agents (closed_no) */

static chan *buckets[SUB_BUCKETS];

static unsigned sub_hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % SUB_BUCKETS;
}

/* The pub/sub channel format of a watch kind (schema: ch_conv, ch_agent, ch_queue). */
static const char *kind_format(watch_kind k) {
    return k == WATCH_CONV ? CG_KEY_CH_CONV : k == WATCH_AGENT ? CG_KEY_CH_AGENT : CG_KEY_CH_QUEUE;
}

static chan *chan_find(const char *name) {
    for (chan *c = buckets[sub_hash(name)]; c; c = c->hnext)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

static void sub_on_message(rconn *rc, redisReply *r, void *priv);

static void chan_subscribe(chan *c) {
    if (c->subscribed || !rconn_is_up(G.sub)) return;
    if (rconn_subscribe(G.sub, sub_on_message, NULL, c->name) == 0) c->subscribed = 1;
}

/* Find or create the channel for (kind, key); NULL on allocation failure. */
static chan *chan_get(watch_kind kind, const char *key) {
    char name[sizeof(((chan *)0)->name)];
    snprintf(name, sizeof(name), kind_format(kind), key);
    chan *c = chan_find(name);
    if (c) return c;
    c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->kind = kind;
    unsigned h = sub_hash(name);
    c->hnext = buckets[h];
    buckets[h] = c;
    chan_subscribe(c);
    return c;
}

static void chan_release_if_idle(chan *c) {
    if (c->watchers) return;
    if (c->subscribed && rconn_is_up(G.sub)) rconn_unsubscribe(G.sub, c->name);
    chan **pp = &buckets[sub_hash(c->name)];
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    free(c);
}

/* ---- watch lifetime ---- */

static void retry_closed(uv_handle_t *h) {
    free(h);
}

/* Free w and its retry timer (closed asynchronously: the loop frees it). */
static void watch_free(watch *w) {
    if (w->retry) {
        w->retry->data = NULL;
        if (!uv_is_closing((uv_handle_t *)w->retry)) /* else loop_close_all() has it */
            uv_close((uv_handle_t *)w->retry, retry_closed);
    }
    free(w);
}

static watch *watch_find(sess *s, chan *c) {
    for (watch *w = s->watches; w; w = w->snext)
        if (w->ch == c && !w->dead) return w;
    return NULL;
}

static void watch_sync(watch *w);

/* Add a watch of (kind, key) for s; returns the existing one if any. NULL on failure. */
static watch *watch_add(sess *s, watch_kind kind, const char *key, int *created) {
    *created = 0;
    chan *c = chan_get(kind, key);
    if (!c) return NULL;
    watch *w = watch_find(s, c);
    if (w) return w;
    w = calloc(1, sizeof(*w));
    if (!w) {
        chan_release_if_idle(c);
        return NULL;
    }
    w->ch = c;
    w->s = s;
    w->cnext = c->watchers;
    if (c->watchers) c->watchers->cprev = w;
    c->watchers = w;
    w->snext = s->watches;
    s->watches = w;
    *created = 1;
    return w;
}

/* Detach w from its channel and session; free it now, or when its pending reply returns. */
static void watch_remove(watch *w) {
    chan *c = w->ch;
    if (w->cprev)
        w->cprev->cnext = w->cnext;
    else
        c->watchers = w->cnext;
    if (w->cnext) w->cnext->cprev = w->cprev;
    w->ch = NULL;
    chan_release_if_idle(c);
    if (w->fetching)
        w->dead = 1;
    else
        watch_free(w);
}

/* Unlink w from its session's watches, then remove it (watch_remove). */
static void watch_drop(watch *w) {
    for (watch **pp = &w->s->watches; *pp; pp = &(*pp)->snext)
        if (*pp == w) {
            *pp = w->snext;
            break;
        }
    watch_remove(w);
}

/* s's live watch of conversation conv, or NULL. */
static watch *watch_of_conv(sess *s, const char *conv) {
    for (watch *w = s->watches; w; w = w->snext)
        if (w->ch && w->ch->kind == WATCH_CONV && !strcmp(w->ch->key, conv)) return w;
    return NULL;
}

void sub_unwatch_all(sess *s) {
    watch *w = s->watches;
    s->watches = NULL;
    while (w) {
        watch *next = w->snext;
        watch_remove(w);
        w = next;
    }
}

void sub_unwatch_conv(sess *s, const char *conv) {
    char name[MSG_ID_MAX + CG_KEY_EXTRA];
    snprintf(name, sizeof(name), CG_KEY_CH_CONV, conv);
    for (watch **pp = &s->watches; *pp; pp = &(*pp)->snext) {
        watch *w = *pp;
        if (w->ch && !strcmp(w->ch->name, name)) {
            *pp = w->snext;
            watch_remove(w);
            return;
        }
    }
}

/* ---- catch-up from the conversation log ---- */

static void fetch_start(watch *w);

/* 1 when w's session may only follow the conversation while it is assigned to it (agents). */
static int watch_needs_owner(const watch *w) {
    return w->s->role == SESS_AGENT;
}

/* 1 when m, sent to agent session s, may mean the conversation is no longer s's: an assignment
 * or transfer to someone else, a close, an SLA action, a bot text (an unresolved close says
 * another agent continues). */
static int owner_event(const sess *s, const msg *m) {
    switch (m->type) {
    case MSG_ASSIGNED:
    case MSG_TRANSFERRED:
        return strcmp(m->agent_id, s->who.sub) != 0;
    case MSG_ESCALATED:
        return 1;
    case MSG_TEXT:
        return m->role == ROLE_BOT;
    default:
        return 0;
    }
}

/* The reply to w's Redis request came (a catch-up or an ownership check): 1 when w was unwatched
 * meanwhile, and is freed here with its session's reference (the caller returns). */
static int watch_reply_gone(watch *w) {
    sess *s = w->s;
    w->fetching = 0;
    if (!w->dead) return 0;
    watch_free(w);
    sess_unref(s);
    return 1;
}

/* HMGET cg:conv:<conv> state agent: keep following it while it is the session's agent's (also
 * closed), else end the watch (what was sent stays sent). No answer: stay held (recheck) until
 * the command connection is back (sub_on_cmd_up). */
static void owner_done(rconn *rc, redisReply *r, void *priv) {
    watch *w = priv;
    sess *s = w->s;
    if (watch_reply_gone(w)) return;
    if (!s->wsi || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        w->recheck = 1;
        sess_unref(s);
        return;
    }
    redisReply *state = r->element[0], *agent = r->element[1];
    int mine = agent->type == REDIS_REPLY_STRING && !strcmp(agent->str, s->who.sub);
    if (!mine) {
        log_info("sub: %s stops following conversation %s (%s, state %s)", s->sock, w->ch->key,
                 agent->type == REDIS_REPLY_STRING ? "assigned to another agent" : "unassigned",
                 state->type == REDIS_REPLY_STRING ? state->str : "unknown");
        watch_drop(w);
    } else {
        w->recheck = 0;
        fetch_start(w); /* the rest of the log, if any (a catch-up stopped for the check) */
    }
    sess_unref(s);
}

/* Check that w's conversation is still its agent's before sending it anything more. */
static void owner_check(watch *w) {
    w->recheck = 1;
    if (w->fetching || w->dead || !w->ch || !w->s->wsi) return; /* done when the reply is in */
    char key[MSG_ID_MAX + CG_KEY_EXTRA];
    snprintf(key, sizeof(key), CG_KEY_CONV, w->ch->key);
    const char *argv[] = {"HMGET", key, "state", "agent"};
    if (rconn_cmdargv(G.redis, owner_done, w, 4, argv, NULL) < 0) return; /* sub_on_cmd_up */
    w->fetching = 1; /* keeps w alive until the reply (see watch_remove) */
    sess_ref(w->s);
}

/* w's `closed` event was sent: number it, and end the watch of the session's closed conversation
 * closed first when it follows more than SUB_CLOSED_KEEP (never w itself). */
static void closed_mark(watch *w) {
    if (!w->closed_no) w->closed_no = ++closed_count;
    unsigned n = 0;
    watch *oldest = NULL;
    for (watch *x = w->s->watches; x; x = x->snext)
        if (x->ch && x->closed_no) {
            n++;
            if (!oldest || x->closed_no < oldest->closed_no) oldest = x;
        }
    if (n > SUB_CLOSED_KEEP && oldest && oldest != w) {
        log_debug("sub: %s stops following closed conversation %s (%u closed followed)", w->s->sock,
                  oldest->ch->key, n);
        watch_drop(oldest);
    }
}

/* Queue one logged message (payload = msgpack) with its seq to w's session.
 * Returns 0 when queued, 1 when queued and the assignment must be checked before the next one
 * (owner_event), -1 when the send queue is full (not queued). A bad payload is skipped (0). */
static int deliver_payload(watch *w, uint64_t seq, const char *p, size_t n) {
    msg m;
    msg_init(&m);
    cg_err err;
    if (msg_decode_msgpack(&m, p, n, &err) < 0) {
        log_error("sub: undecodable log entry %s seq %llu: %s", w->ch->key, (unsigned long long)seq,
                  err.msg);
        w->last_sent = seq; /* skip it rather than stall the conversation */
        return 0;
    }
    msg_stored_fill(&m);
    snprintf(m.conv, sizeof(m.conv), "%s", w->ch->key);
    m.seq = seq;
    client_conv_event(w->s, w->ch->key, m.type);
    int rc;
    if (w->s->role != SESS_AGENT && msg_type_is_internal(m.type)) {
        msg view;
        msg_customer_view(&view, &m);
        rc = sess_send_msg(w->s, &view);
    } else {
        rc = sess_send_msg(w->s, &m);
    }
    if (rc == 0) {
        w->last_sent = seq;
        if (watch_needs_owner(w) && m.type == MSG_CLOSED) closed_mark(w);
        if (watch_needs_owner(w) && owner_event(w->s, &m)) rc = 1;
    }
    msg_free(&m);
    return rc;
}

/* w could not go on now (full send queue, a failed catch-up): sub_drained() resumes it. */
static void watch_stale(watch *w) {
    w->stale = 1;
    w->s->stale_watches = 1;
}

static void retry_fire(uv_timer_t *t) {
    watch *w = t->data;
    if (w) fetch_start(w);
}

/* A catch-up failed (a Redis error; warn) or found nothing where a seq was announced: retry it
 * later, 50 ms doubling up to 2 s. */
static void fetch_retry(watch *w, const char *why, int warn) {
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : SUB_RETRY_MIN_MS;
    if (w->backoff_ms > SUB_RETRY_MAX_MS) w->backoff_ms = SUB_RETRY_MAX_MS;
    log_write(warn ? LOG_WARN : LOG_DEBUG,
              "sub: catch-up of conversation %s for %s failed (%s); retrying in %u ms", w->ch->key,
              w->s->sock, why, w->backoff_ms);
    if (!w->retry) {
        w->retry = malloc(sizeof(*w->retry));
        if (!w->retry || uv_timer_init(G.loop, w->retry) != 0) {
            free(w->retry);
            w->retry = NULL;
            watch_stale(w); /* resumed by sub_drained() or sub_on_cmd_up() */
            return;
        }
        w->retry->data = w;
    }
    uv_timer_start(w->retry, retry_fire, w->backoff_ms, 0);
}

/* XRANGE reply: [[id, [field, value, ...]], ...]. */
static void fetch_done(rconn *rc, redisReply *r, void *priv) {
    watch *w = priv;
    sess *s = w->s;
    if (watch_reply_gone(w)) return;
    if (!r) { /* the command connection went away: sub_on_cmd_up() re-syncs */
        watch_stale(w);
        sess_unref(s);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        fetch_retry(w, r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply", 1);
        sess_unref(s);
        return;
    }
    if (r->elements) w->backoff_ms = 0;
    if (w->recheck) { /* a notice about the conversation came meanwhile: check first */
        owner_check(w);
        sess_unref(s);
        return;
    }
    size_t got = 0;
    int stop = 0;
    for (size_t i = 0; i < r->elements && !stop; i++, got++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
        uint64_t seq = strtoull(e->element[0]->str, NULL, 10);
        redisReply *kv = e->element[1];
        if (seq <= w->last_sent || kv->type != REDIS_REPLY_ARRAY || kv->elements < 2) continue;
        int d = deliver_payload(w, seq, kv->element[1]->str, kv->element[1]->len);
        if (d < 0) {
            watch_stale(w); /* resumed by sub_drained() */
            stop = 1;
        } else if (d > 0) {
            w->recheck = 1;
            stop = 1;
        }
    }
    if (!got && w->want > w->last_sent) /* announced, not (yet) in the log: never at once */
        fetch_retry(w, "the announced messages are not in the log", 0);
    else if (!stop && (got == SUB_FETCH_MAX || w->want > w->last_sent))
        fetch_start(w);
    else if (w->recheck)
        owner_check(w);
    sess_unref(s);
}

/* Read what w's session has not got yet from the log, bounded by its free queue room. */
static void fetch_start(watch *w) {
    if (w->fetching || w->dead || !w->ch || w->ch->kind != WATCH_CONV) return;
    if (!w->s->wsi) return;
    if (w->recheck) {
        owner_check(w);
        return;
    }
    if (w->retry && uv_is_active((uv_handle_t *)w->retry)) return; /* retry_fire() comes */
    unsigned room = sess_room(w->s);
    if (!room) {
        watch_stale(w); /* resumed by sub_drained() */
        return;
    }
    if (room > SUB_FETCH_MAX) room = SUB_FETCH_MAX;
    char key[MSG_ID_MAX + CG_KEY_EXTRA], from[32], count[16];
    snprintf(key, sizeof(key), CG_KEY_CONV_LOG, w->ch->key);
    snprintf(from, sizeof(from), "%llu-0", (unsigned long long)w->last_sent + 1);
    snprintf(count, sizeof(count), "%u", room);
    const char *argv[] = {"XRANGE", key, from, "+", "COUNT", count};
    if (rconn_cmdargv(G.redis, fetch_done, w, 6, argv, NULL) < 0) return;
    w->fetching = 1;
    w->stale = 0;
    sess_ref(w->s);
}

void sub_drained(sess *s) {
    /* a watch only waits for room after it was marked stale: nothing to visit otherwise */
    if (!s->stale_watches) return;
    s->stale_watches = 0;
    for (watch *w = s->watches; w; w = w->snext)
        if (w->ch && w->ch->kind == WATCH_CONV && (w->stale || w->want > w->last_sent))
            fetch_start(w);
}

/* ---- agent channel: the agent's conversations ---- */

typedef struct conv_info_req {
    sess *s;
    char conv[MSG_ID_MAX];
} conv_info_req;

/* Tell agent session s that conv (of channel, in queue) is its own, and follow it. The notice
 * is best effort (a full send queue drops it); following the conversation is not: its
 * transcript carries the logged `assigned` event, so the agent learns of it from the log even
 * in a burst. */
static void agent_conv_assigned(sess *s, const char *conv, msg_channel channel, const char *queue) {
    msg m;
    msg_init(&m);
    m.type = MSG_ASSIGNED;
    m.channel = channel;
    snprintf(m.conv, sizeof(m.conv), "%s", conv);
    snprintf(m.agent_id, sizeof(m.agent_id), "%s", s->who.sub);
    snprintf(m.agent_name, sizeof(m.agent_name), "%s", s->who.name);
    snprintf(m.queue, sizeof(m.queue), "%s", queue);
    sess_send_msg(s, &m);
    sub_watch_conv(s, conv, 0, channel);
    msg_free(&m);
}

/* HMGET cg:conv:<conv> channel queue state agent -> announce and follow it if still assigned. */
static void conv_info_done(rconn *rc, redisReply *r, void *priv) {
    conv_info_req *q = priv;
    sess *s = q->s;
    if (s->wsi && r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[3]->type == REDIS_REPLY_STRING && !strcmp(r->element[3]->str, s->who.sub)) {
        msg_channel channel = CH_NONE;
        if (r->element[0]->type == REDIS_REPLY_STRING)
            msg_channel_parse(r->element[0]->str, &channel);
        agent_conv_assigned(s, q->conv, channel,
                            r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "");
    }
    free(q);
    sess_unref(s);
}

static void agent_conv_announce(sess *s, const char *conv) {
    conv_info_req *q = calloc(1, sizeof(*q));
    if (!q) return;
    q->s = sess_ref(s);
    snprintf(q->conv, sizeof(q->conv), "%s", conv);
    char key[MSG_ID_MAX + CG_KEY_EXTRA];
    snprintf(key, sizeof(key), CG_KEY_CONV, conv);
    const char *argv[] = {"HMGET", key, "channel", "queue", "state", "agent"};
    if (rconn_cmdargv(G.redis, conv_info_done, q, 6, argv, NULL) < 0) {
        free(q);
        sess_unref(s);
    }
}

static void agent_convs_done(rconn *rc, redisReply *r, void *priv) {
    sess *s = priv;
    if (s->wsi && r && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                agent_conv_announce(s, r->element[i]->str);
    sess_unref(s);
}

/* ---- queue snapshots ---- */

/* Send snapshot m to w's session unless a newer one was sent already: the stored snapshot read
 * after subscribing can arrive after a live one. */
static void send_snapshot(watch *w, const msg *m, frame *f) {
    if (w->snap_sent && m->ts_ms < w->snap_ts) return;
    if ((f ? sess_send(w->s, f) : sess_send_msg(w->s, m)) < 0) return;
    w->snap_ts = m->ts_ms;
    w->snap_sent = 1;
}

/* GET cg:qsnap:<queue> after subscribing: the stored snapshot, or an empty one when the queue
 * never had any, so every agent gets a `queue` frame per skill after welcome. The empty one has
 * ts 1 (docs/protocol.md): older than any snapshot a router makes, so the router's first one
 * always follows it, here and in a client that compares ts. */
static void qsnap_done(rconn *rc, redisReply *r, void *priv) {
    watch *w = priv;
    sess *s = w->s;
    if (watch_reply_gone(w)) return;
    msg m;
    msg_init(&m);
    if (s->wsi && r && r->type == REDIS_REPLY_STRING &&
        msg_decode_msgpack(&m, r->str, r->len, NULL) == 0)
        send_snapshot(w, &m, NULL);
    else if (s->wsi && r && r->type == REDIS_REPLY_NIL && !w->snap_sent) {
        m.type = MSG_QUEUE;
        m.ts_ms = 1;
        snprintf(m.queue, sizeof(m.queue), "%s", w->ch->key);
        send_snapshot(w, &m, NULL);
    }
    msg_free(&m);
    sess_unref(s);
}

/* Bring one watcher up to date from durable state (after subscribing or reconnecting). */
static void watch_sync(watch *w) {
    sess *s = w->s;
    if (!s->wsi || !w->ch) return;
    char key[MSG_ID_MAX + CG_KEY_EXTRA];
    switch (w->ch->kind) {
    case WATCH_CONV:
        fetch_start(w);
        return;
    case WATCH_AGENT:
        snprintf(key, sizeof(key), CG_KEY_AGENT_CONVS, w->ch->key);
        if (rconn_cmd(G.redis, agent_convs_done, sess_ref(s), "SMEMBERS %s", key) < 0)
            sess_unref(s);
        return;
    case WATCH_QUEUE:
        if (w->fetching) return;
        snprintf(key, sizeof(key), CG_KEY_QSNAP, w->ch->key);
        if (rconn_cmd(G.redis, qsnap_done, w, "GET %s", key) < 0) return;
        w->fetching = 1; /* keeps w alive until the reply (see watch_remove) */
        sess_ref(s);
        return;
    }
}

/* ---- live messages ---- */

/* A live conversation message to its watchers: the next seq goes out at once, anything else
 * through the log (fetch_start). An agent's watch held for an assignment check (recheck) gets
 * nothing until it is answered; an event that may move the conversation starts that check. */
static void deliver_conv(chan *c, uint64_t seq, msg *m, frame_cache *fc) {
    for (watch *w = c->watchers, *next; w; w = next) {
        next = w->cnext;
        sess *s = w->s;
        if (!seq) { /* ephemeral: not back to its author */
            if (!strcmp(m->sender_id, s->who.sub) || w->recheck) continue;
            sess_send(s, frame_cache_get(fc, s->codec));
            continue;
        }
        if (seq <= w->last_sent) continue;
        client_conv_event(s, c->key, m->type);
        if (seq == w->last_sent + 1 && !w->fetching && !w->recheck && sess_room(s) &&
            sess_send(s, frame_cache_view(fc, s->codec, s->role == SESS_AGENT)) == 0) {
            w->last_sent = seq;
            if (watch_needs_owner(w) && m->type == MSG_CLOSED) closed_mark(w);
            if (watch_needs_owner(w) && owner_event(s, m)) owner_check(w);
            continue;
        }
        if (seq > w->want) w->want = seq;
        fetch_start(w);
    }
}

static void deliver_agent(chan *c, msg *m, frame_cache *fc) {
    for (watch *w = c->watchers, *next; w; w = next) {
        next = w->cnext;
        if (m->type == MSG_ASSIGNED && m->conv[0]) {
            /* The live notice names the assignee, channel and queue (redis/event.lua
             * announce_row): no round trip before the agent hears of it. Later notices on this
             * channel (taken back, closed) reach the conversation's watch as usual. */
            if (!strcmp(m->agent_id, w->s->who.sub) && m->channel != CH_NONE && m->queue[0])
                agent_conv_assigned(w->s, m->conv, m->channel, m->queue);
            else
                agent_conv_announce(w->s, m->conv);
            continue;
        }
        /* A notice about one of its conversations (taken back by an offer timeout or an SLA
         * reassign, closed by the customer or the desk): is it still the agent's? */
        watch *cw = m->conv[0] ? watch_of_conv(w->s, m->conv) : NULL;
        if (cw) owner_check(cw);
        sess_send(w->s, frame_cache_get(fc, w->s->codec));
    }
}

static void on_payload(chan *c, const char *p, size_t n) {
    if (n < 8) {
        log_error("sub: short payload on %s", c->name);
        return;
    }
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = (seq << 8) | (unsigned char)p[i];
    msg m;
    msg_init(&m);
    cg_err err;
    if (msg_decode_msgpack(&m, p + 8, n - 8, &err) < 0) {
        log_error("sub: undecodable payload on %s: %s", c->name, err.msg);
        return;
    }
    msg_stored_fill(&m);
    if (c->kind == WATCH_CONV) {
        snprintf(m.conv, sizeof(m.conv), "%s", c->key);
        m.seq = seq;
    }
    frame_cache fc = {.m = &m};
    if (c->kind == WATCH_CONV)
        deliver_conv(c, seq, &m, &fc);
    else if (c->kind == WATCH_AGENT)
        deliver_agent(c, &m, &fc);
    else
        for (watch *w = c->watchers; w; w = w->cnext)
            send_snapshot(w, &m, frame_cache_get(&fc, w->s->codec));
    frame_cache_release(&fc);
    msg_free(&m);
}

/* The one pub/sub callback: subscribe confirmations, unsubscribe replies and messages. */
static void sub_on_message(rconn *rc, redisReply *r, void *priv) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    redisReply *kind = r->element[0], *name = r->element[1], *body = r->element[2];
    if (kind->type != REDIS_REPLY_STRING || name->type != REDIS_REPLY_STRING) return;
    chan *c = chan_find(name->str);
    if (!strcmp(kind->str, "message")) {
        if (c && body->type == REDIS_REPLY_STRING) on_payload(c, body->str, body->len);
    } else if (!strcmp(kind->str, "subscribe")) {
        if (!c) return;
        c->confirmed = 1;
        for (watch *w = c->watchers; w; w = w->cnext)
            watch_sync(w);
    } else if (!strcmp(kind->str, "unsubscribe")) {
        /* A channel watched again while its UNSUBSCRIBE was in flight: subscribe anew. */
        if (c) {
            c->subscribed = c->confirmed = 0;
            chan_subscribe(c);
        }
    }
}

/* ---- public entry points ---- */

int sub_watch_conv(sess *s, const char *conv, uint64_t after, msg_channel ch) {
    int created;
    watch *w = watch_add(s, WATCH_CONV, conv, &created);
    if (!w) return -1;
    if (!created) return 0;
    w->last_sent = after;
    w->channel = ch;
    if (w->ch->confirmed) watch_sync(w);
    return 0;
}

int sub_watch_agent(sess *s) {
    int created;
    watch *w = watch_add(s, WATCH_AGENT, s->who.sub, &created);
    if (!w) return -1;
    if (created && w->ch->confirmed) watch_sync(w);
    return 0;
}

int sub_watch_queue(sess *s, const char *queue) {
    int created;
    watch *w = watch_add(s, WATCH_QUEUE, queue, &created);
    if (!w) return -1;
    if (created && w->ch->confirmed) watch_sync(w);
    return 0;
}

/* By the channel's hash and its few watchers, not the session's watches: an agent follows
 * dozens of conversations, and this runs for every message it writes. */
msg_channel sub_conv_channel(sess *s, const char *conv) {
    char name[sizeof(((chan *)0)->name)];
    snprintf(name, sizeof(name), CG_KEY_CH_CONV, conv);
    chan *c = chan_find(name);
    for (watch *w = c ? c->watchers : NULL; w; w = w->cnext)
        if (w->s == s) return w->channel;
    return CH_WEB;
}

void sub_on_redis_up(void) {
    for (unsigned i = 0; i < SUB_BUCKETS; i++)
        for (chan *c = buckets[i]; c; c = c->hnext) {
            c->subscribed = c->confirmed = 0;
            chan_subscribe(c);
        }
}

void sub_on_cmd_up(void) {
    for (unsigned i = 0; i < SUB_BUCKETS; i++)
        for (chan *c = buckets[i]; c; c = c->hnext)
            if (c->confirmed)
                for (watch *w = c->watchers; w; w = w->cnext)
                    watch_sync(w);
}

void sub_on_redis_down(void) {
    for (unsigned i = 0; i < SUB_BUCKETS; i++)
        for (chan *c = buckets[i]; c; c = c->hnext)
            c->subscribed = c->confirmed = 0;
}

void sub_shutdown(void) {
    for (sess *s = G.sessions; s; s = s->next)
        sub_unwatch_all(s);
}
