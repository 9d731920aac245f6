/* client.c -- what a client's frame does.
 *
 * Every frame is decoded (JSON or msgpack by the session's codec), validated for the client's
 * origin, and then:
 *   hello             authenticate (agent JWT / customer token, minted on first connect), welcome,
 *                     follow the client's conversations from its resume point
 *   text, attachment  stamp and store: FCALL cg_message (one round trip), then ack with the seq
 *   typing, read      FCALL cg_message, mode eph (relayed, not stored)
 *   presence, pick,   agent commands: XADD cg:in for the routers, ack when stored
 *   close
 *   ack               the client's receipt; resume points are the client's (hello.last_seq)
 * Frames of bridge sessions (/ws/bridge) are decoded here and handed to bridge.c.
 * Errors name the problem (docs/protocol.md) and never close the connection, except bad tokens
 * and a hello for another tenant. */
#include "gw.h"
#include "desk_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/evarg.h"
#include "../common/evres.h"
#include "../common/log.h"
#include "../common/util.h"

/* A pending Redis request for a client frame: its answer is owed (sess_owe) until it is freed. */
typedef struct req {
    unsigned refs; /* one per pending Redis reply */
    sess *s;
    char cmid[MSG_ID_MAX];
    char id[MSG_ID_MAX];
    msg_type type;
    int revoked;  /* hello: the token was refused by the revocation check */
    int may_open; /* a customer message that may open a conversation: an address token taken */
    char conv[MSG_ID_MAX]; /* a duplicate's ack: where the original is */
    uint64_t seq;          /* a duplicate's ack: the original's seq */
} req;

static req *req_new(sess *s, const msg *m) {
    req *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->refs = 1;
    q->s = sess_ref(s);
    sess_owe(s);
    snprintf(q->cmid, sizeof(q->cmid), "%s", m->cmid);
    snprintf(q->id, sizeof(q->id), "%s", m->id);
    q->type = m->type;
    return q;
}

static req *req_ref(req *q) {
    q->refs++;
    return q;
}

/* Drop a reference; the last one frees q. */
static void req_free(req *q) {
    if (--q->refs) return;
    sess_owe_done(q->s);
    sess_unref(q->s);
    free(q);
}

/* Map a Redis error from cg_message ("NOTASSIGNED ...") to a wire error. */
static void send_redis_error(sess *s, const redisReply *r, const char *cmid) {
    if (!r) {
        sess_send_error(s, "unavailable", "storage is unreachable; send the same frame again later",
                        cmid, 1);
        return;
    }
    const char *e = r->str ? r->str : "";
    if (!strncmp(e, "NOTASSIGNED", 11))
        sess_send_error(s, "not_assigned", "this conversation is not assigned to you", cmid, 0);
    else if (!strncmp(e, "NOTYOURS", 8))
        sess_send_error(s, "not_yours", "this conversation is not yours", cmid, 0);
    else if (!strncmp(e, "CLOSED", 6))
        sess_send_error(s, "closed", "this conversation is closed", cmid, 0);
    else {
        log_error("client %s: redis error: %s", s->sock, e);
        sess_send_error(s, "unavailable", "storage error; send the same frame again later", cmid,
                        1);
    }
}

/* ---- hello ---- */

static void welcome(sess *s, const char *token) {
    msg m;
    msg_init(&m);
    m.type = MSG_WELCOME;
    m.role = s->role == SESS_AGENT ? ROLE_AGENT : ROLE_CUSTOMER;
    snprintf(m.sender_id, sizeof(m.sender_id), "%s", s->who.sub);
    snprintf(m.sender_name, sizeof(m.sender_name), "%s", s->who.name);
    if (token) snprintf(m.token, sizeof(m.token), "%s", token);
    snprintf(m.conv, sizeof(m.conv), "%s", s->conv);
    if (s->role == SESS_AGENT) {
        m.cap = (uint16_t)s->who.cap;
        for (int i = 0; i < s->who.n_skills && i < MSG_SKILLS_MAX; i++)
            snprintf(m.skills[m.n_skills++], MSG_CODE_MAX, "%s", s->who.skills[i]);
    }
    sess_send_ctl_msg(s, &m);
    msg_free(&m);
}

/* Send an internal frame to the routers (XADD cg:in). cb gets the reply; NULL: fire and forget. */
static int to_routers(msg *m, const char *conv, rconn_reply_fn *cb, void *priv) {
    size_t n;
    unsigned char *p = msg_encode_msgpack(m, 0, &n);
    if (!p) return -1;
    const char *argv[] = {"XADD", CG_KEY_INBOUND, "*", "c", conv, "s", "0", "m", (const char *)p};
    size_t lens[] = {4, strlen(CG_KEY_INBOUND), 1, 1, strlen(conv), 1, 1, 1, n};
    int rc = rconn_cmdargv(G.redis, cb, priv, 9, argv, lens);
    free(p);
    return rc;
}

/* One presence event of the agent's connection s (code: connect, disconnect, online, away) at
 * time ts, queued for the routers on the command connection (in order with the others). */
static void presence_at(sess *s, const char *code, int64_t ts) {
    msg m;
    msg_init(&m);
    m.type = MSG_PRESENCE;
    m.role = ROLE_AGENT;
    m.dir = DIR_IN;
    m.ts_ms = ts;
    cg_id_new(m.id);
    snprintf(m.code, sizeof(m.code), "%s", code);
    snprintf(m.sender_id, sizeof(m.sender_id), "%s", s->who.sub);
    snprintf(m.sender_name, sizeof(m.sender_name), "%s", s->who.name);
    snprintf(m.sock, sizeof(m.sock), "%s", s->sock);
    m.cap = (uint16_t)s->who.cap;
    for (int i = 0; i < s->who.n_skills && i < MSG_SKILLS_MAX; i++)
        snprintf(m.skills[m.n_skills++], MSG_CODE_MAX, "%s", s->who.skills[i]);
    if (to_routers(&m, "", NULL, NULL) < 0)
        log_warn("client %s: presence %s not sent (redis down)", s->sock, code);
    msg_free(&m);
}

/* A connect of an agent whose own last choice was away carries it (connect_away): the routers
 * set the socket and the status in one step (cg_presence), so no router offers it anything in
 * between, however many run. Re-announced connects (Redis back, socket renamed) never carry
 * online: a desk-set away the gateway did not see stays. */
void client_presence(sess *s, const char *code) {
    int64_t ts = cg_now_ms();
    presence_at(s, s->away && !strcmp(code, "connect") ? "connect_away" : code, ts);
}

/* Refuse a hello for its token: an error frame naming the problem (code bad_token or
 * expired_token), then close 1008 with the same reason (cut to what a close frame carries). */
static void hello_refuse(sess *s, const char *code, const char *why, const char *cmid) {
    char text[256];
    snprintf(text, sizeof(text), "%s: %s",
             s->role == SESS_AGENT ? "a valid agent token is required"
                                   : "the session token is not valid; connect without one to "
                                     "start a new session",
             why);
    log_info("client %s: %s authentication failed (%s: %s)", s->sock,
             s->role == SESS_AGENT ? "agent" : "customer", code, why);
    sess_send_error(s, code, text, cmid, 0);
    sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, why);
    memset(&s->who, 0, sizeof(s->who));
}

/* The tenant a hello names, whoever sends it (customer, agent, bridge): none, or the one this
 * gateway serves (CG_TENANT, the tenant of the schema's key_prefix: one per deployment today).
 * 0 when the hello may go on; else -1 after answering: a malformed tenant gets msg_check_tenant's
 * error (bad_value, too_large; the connection stays, like other field errors), another tenant
 * unknown_tenant naming the served one, then close 1008: every hello here would be refused. */
static int hello_tenant(sess *s, const msg *m) {
    const char *cmid = m->cmid[0] ? m->cmid : NULL;
    cg_err err;
    if (!m->tenant[0]) return 0;
    if (msg_check_tenant(m, &err) < 0) {
        sess_send_error(s, err.code, err.msg, cmid, 0);
        return -1;
    }
    if (!strcmp(m->tenant, CG_TENANT)) return 0;
    char text[128], reason[64];
    snprintf(text, sizeof(text), "unknown tenant '%s': this gateway serves the tenant '%s'",
             m->tenant, CG_TENANT);
    snprintf(reason, sizeof(reason), "unknown tenant '%s'", m->tenant);
    log_info("client %s: hello for tenant '%s' refused (this gateway serves '%s')", s->sock,
             m->tenant, CG_TENANT);
    sess_send_error(s, CG_E_UNKNOWN_TENANT, text, cmid, 0);
    sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, reason);
    return -1;
}

/* Verify a hello's token into s->who for the session's role; -1 after hello_refuse. */
static int hello_token(sess *s, const msg *m, token_role want) {
    cg_err err;
    if (token_verify(m->token, &G.keys, cg_now_s(), &s->who, &err) < 0) {
        hello_refuse(s, !strcmp(err.code, "expired_token") ? "expired_token" : "bad_token", err.msg,
                     m->cmid);
        return -1;
    }
    if (s->who.role != want) {
        hello_refuse(s, "bad_token",
                     want == TOKEN_AGENT ? "not an agent token" : "not a customer token", m->cmid);
        return -1;
    }
    return 0;
}

/* Ask Redis whether the token's jti is revoked (EXISTS cg:revoked:<jti>), answered to cb with
 * q. -1 when the command cannot be sent. */
static int revoked_query(sess *s, rconn_reply_fn *cb, req *q) {
    return rconn_cmd(G.redis, cb, q, "EXISTS " CG_KEY_REVOKED, s->who.jti);
}

/* The revocation answer: 0 when the hello may go on; else -1 after answering the client
 * (unavailable on a Redis failure, bad_token when revoked). */
static int revoked_check(sess *s, const redisReply *r, const char *cmid) {
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        memset(&s->who, 0, sizeof(s->who));
        sess_send_error(s, "unavailable", "storage is unreachable; say hello again later", cmid, 1);
        return -1;
    }
    if (r->integer) {
        hello_refuse(s, "bad_token", "token revoked", cmid);
        return -1;
    }
    return 0;
}

/* The agent's token is valid and not revoked: welcome, follow its channels, tell the routers. */
static void agent_accept(sess *s) {
    if (!s->who.name[0]) snprintf(s->who.name, sizeof(s->who.name), "%s", s->who.sub);
    s->authed = 1;
    lws_set_timeout(s->wsi, NO_PENDING_TIMEOUT, 0);
    log_info("client %s: agent %s signed in", s->sock, s->who.sub);
    welcome(s, NULL);
    sub_watch_agent(s);
    for (int i = 0; i < s->who.n_skills; i++)
        sub_watch_queue(s, s->who.skills[i]);
    /* The status the agent chose in its hello (online or away; none: a connect makes an
     * offline agent online) goes with the connect, in one event (see client_presence). */
    const char *code = !s->hello_status                   ? "connect"
                       : !strcmp(s->hello_status, "away") ? "connect_away"
                                                          : "connect_online";
    presence_at(s, code, cg_now_ms());
}

static void agent_revoked_done(rconn *rc, redisReply *r, void *priv) {
    req *q = priv;
    sess *s = q->s;
    if (s->wsi) {
        s->hello_pending = 0;
        if (!r) { /* Redis went away meanwhile: as if it had been away at hello */
            s->revocation_unchecked = 1;
            agent_accept(s);
        } else if (revoked_check(s, r, q->cmid) == 0)
            agent_accept(s);
    }
    req_free(q);
}

/* Agent hello: verify the token, then one round trip for its revocation, then accept. While
 * Redis is away an agent still signs in (nothing it does can be stored then) and its token's
 * revocation is checked when Redis is back, before the routers hear of it (client_agent_resume). */
static void hello_agent(sess *s, const msg *m) {
    if (!m->token[0]) {
        hello_refuse(s, "bad_token", "missing token", m->cmid);
        return;
    }
    if (hello_token(s, m, TOKEN_AGENT) < 0) return;
    s->away = !strcmp(m->code, "away"); /* validated: "", online or away */
    s->hello_status = s->away ? "away" : !strcmp(m->code, "online") ? "online" : NULL;
    req *q = req_new(s, m);
    if (!q) return;
    s->hello_pending = 1;
    if (!rconn_is_up(G.redis) || revoked_query(s, agent_revoked_done, q) < 0) {
        s->hello_pending = 0;
        s->revocation_unchecked = 1;
        agent_accept(s);
        req_free(q);
    }
}

static void agent_resume_done(rconn *rc, redisReply *r, void *priv) {
    sess *s = priv;
    if (s->wsi && s->authed && r && r->type == REDIS_REPLY_INTEGER) {
        s->revocation_unchecked = 0;
        if (r->integer) {
            log_info("client %s: agent %s: token revoked; closing", s->sock, s->who.sub);
            s->authed = 0; /* the routers never heard of it: no disconnect to send */
            sess_send_error(s, "bad_token", "a valid agent token is required: token revoked", NULL,
                            0);
            sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "token revoked");
        } else
            client_presence(s, "connect");
    }
    sess_unref(s);
}

void client_agent_resume(sess *s) {
    if (!s->revocation_unchecked) {
        client_presence(s, "connect");
        return;
    }
    if (rconn_cmd(G.redis, agent_resume_done, sess_ref(s), "EXISTS " CG_KEY_REVOKED, s->who.jti) <
        0)
        sess_unref(s);
}

static void cust_conv_done(rconn *rc, redisReply *r, void *priv) {
    req *q = priv;
    sess *s = q->s;
    if (!s->wsi) {
        req_free(q);
        return;
    }
    s->hello_pending = 0;
    if (q->revoked) { /* answered by cust_revoked_done */
        req_free(q);
        return;
    }
    if (!r || r->type == REDIS_REPLY_ERROR) {
        sess_send_error(s, "unavailable", "storage is unreachable; say hello again later", q->cmid,
                        1);
        req_free(q);
        return;
    }
    if (r->type == REDIS_REPLY_STRING) snprintf(s->conv, sizeof(s->conv), "%s", r->str);
    s->authed = 1;
    lws_set_timeout(s->wsi, NO_PENDING_TIMEOUT, 0);
    char *token = NULL;
    token_claims c = s->who;
    c.iat = cg_now_s();
    c.exp = c.iat + G.cfg.customer_token_ttl;
    cg_id_new(c.jti);
    cg_err err;
    if (token_sign(&c, &G.keys, &token, &err) < 0)
        log_error("client %s: cannot sign a customer token: %s", s->sock, err.msg);
    welcome(s, token);
    free(token);
    if (s->conv[0]) {
        uint64_t after = !strcmp(s->hello_conv, s->conv) ? s->hello_last_seq : 0;
        sub_watch_conv(s, s->conv, after, CH_WEB);
    }
    req_free(q);
}

/* A customer token's revocation answer; it comes just before cust_conv_done's (same
 * connection, sent in this order). */
static void cust_revoked_done(rconn *rc, redisReply *r, void *priv) {
    req *q = priv;
    sess *s = q->s;
    if (s->wsi && revoked_check(s, r, q->cmid) < 0) q->revoked = 1;
    req_free(q);
}

/* ---- new conversations per customer (conv_per_customer) ----
 * A fixed window in Redis, cg:lim:conv:<customer> (INCR, EXPIRE NX conv_window_s), shared by the
 * customer's sessions on every gateway. Counted when a conversation has been opened (append_done:
 * INCR + EXPIRE NX + PTTL, one round trip off the ack path), read at a hello with a token
 * (GET + PTTL, pipelined with its HGET: no extra round trip); the session refuses a message that
 * opens one while the count it knows is at the limit (client_conv_allowed; when unsure whether
 * the session's conversation is still open, Redis is asked first: client_conv_check). Ordinary
 * messages cost nothing. */

/* GET/INCR reply: the customer's count in the current window. */
static void cust_convs_count_done(rconn *rc, redisReply *r, void *priv) {
    sess *s = priv;
    if (r && r->type == REDIS_REPLY_INTEGER)
        s->cust_convs = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        s->cust_convs = strtoll(r->str, NULL, 10);
    sess_unref(s);
}

/* PTTL reply: when the window ends (a key without expiry: as if it ended now). */
static void cust_convs_ttl_done(rconn *rc, redisReply *r, void *priv) {
    sess *s = priv;
    if (r && r->type == REDIS_REPLY_INTEGER)
        s->cust_convs_until_ms = (uint64_t)cg_now_ms() + (r->integer > 0 ? r->integer : 0);
    sess_unref(s);
}

static void client_cust_convs_read(sess *s) {
    if (G.cfg.conv_per_customer <= 0) return;
    if (rconn_cmd(G.redis, cust_convs_count_done, sess_ref(s), "GET " CG_KEY_LIM_CONV, s->who.sub) <
        0)
        sess_unref(s);
    if (rconn_cmd(G.redis, cust_convs_ttl_done, sess_ref(s), "PTTL " CG_KEY_LIM_CONV, s->who.sub) <
        0)
        sess_unref(s);
}

/* The customer's message opened a conversation: count it (fire and forget but for the replies
 * that update the session). */
static void client_cust_convs_add(sess *s) {
    if (G.cfg.conv_per_customer <= 0) return;
    if (rconn_cmd(G.redis, cust_convs_count_done, sess_ref(s), "INCR " CG_KEY_LIM_CONV,
                  s->who.sub) < 0)
        sess_unref(s);
    rconn_cmd(G.redis, NULL, NULL, "EXPIRE " CG_KEY_LIM_CONV " %lld NX", s->who.sub,
              G.cfg.conv_window_s);
    if (rconn_cmd(G.redis, cust_convs_ttl_done, sess_ref(s), "PTTL " CG_KEY_LIM_CONV, s->who.sub) <
        0)
        sess_unref(s);
}

typedef enum conv_verdict { CONV_ALLOW, CONV_REFUSE, CONV_CHECK } conv_verdict;

/* A customer's message that may open a conversation (none yet in this session, or its last one
 * not known to be open: after hello, after a close). CONV_ALLOW when the per-customer and
 * per-address limits allow a new one (an address token is then taken: *took); when one would
 * refuse: CONV_CHECK if the session has a conversation that may well be open (sure 0: the caller
 * asks Redis first), else CONV_REFUSE after answering limit_reached. */
static conv_verdict client_conv_allowed(sess *s, const char *cmid, int sure, int *took) {
    *took = 0;
    int cust = G.cfg.conv_per_customer > 0 && s->cust_convs >= G.cfg.conv_per_customer &&
               (uint64_t)cg_now_ms() < s->cust_convs_until_ms;
    if (!cust && lim_conv_take(s->addr)) {
        *took = G.cfg.conv_per_ip > 0;
        return CONV_ALLOW;
    }
    if (!sure && s->conv[0]) return CONV_CHECK;
    if (cust)
        LIM.conv_refused_customer++;
    else
        LIM.conv_refused_ip++;
    sess_send_error(s, "limit_reached",
                    cust ? "too many new conversations for this customer (conv_per_customer); "
                           "try again later"
                         : "too many new conversations from your address (conv_per_ip); try "
                           "again later",
                    cmid, 0);
    return CONV_REFUSE;
}

/* A message held while Redis says whether the session's conversation is still open. */
typedef struct conv_check {
    sess *s;
    unsigned char *p; /* the client's msg, msgpack */
    size_t n;
} conv_check;

static void store_append(sess *s, msg *m, const char *mode, int may_open);

/* HGET cg:conv:<conv> state: open (any state but closed) -> the message goes there; closed or
 * gone -> it would open one, which the limits decide for sure. */
static void conv_check_done(rconn *rc, redisReply *r, void *priv) {
    conv_check *cc = priv;
    sess *s = cc->s;
    s->conv_checks--;
    msg m;
    msg_init(&m);
    cg_err err;
    if (s->wsi && msg_decode_msgpack(&m, (const char *)cc->p, cc->n, &err) == 0) {
        int took = 0;
        snprintf(m.conv, sizeof(m.conv), "%s", s->conv); /* held: stamped, but conv is now's */
        if (!r || r->type == REDIS_REPLY_ERROR)
            send_redis_error(s, NULL, m.cmid);
        else if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "closed"))
            store_append(s, &m, "log", 0); /* open: it goes there */
        else if (client_conv_allowed(s, m.cmid, 1, &took) == CONV_ALLOW)
            store_append(s, &m, "log", took);
    }
    msg_free(&m);
    free(cc->p);
    free(cc);
    sess_unref(s);
}

/* Hold m until Redis says whether s->conv is open (conv_check_done stores it then). Messages
 * sent meanwhile wait behind it (s->conv_checks), in order. */
static void client_conv_check(sess *s, msg *m) {
    conv_check *cc = calloc(1, sizeof(*cc));
    if (cc) cc->p = msg_encode_msgpack(m, 0, &cc->n);
    if (!cc || !cc->p) {
        free(cc);
        sess_send_error(s, "unavailable", "out of memory", m->cmid, 1);
        return;
    }
    cc->s = sess_ref(s);
    char key[MSG_ID_MAX + CG_KEY_EXTRA];
    snprintf(key, sizeof(key), CG_KEY_CONV, s->conv);
    s->conv_checks++;
    if (rconn_cmd(G.redis, conv_check_done, cc, "HGET %s state", key) < 0)
        conv_check_done(G.redis, NULL, cc);
}

/* The customer's current conversation as Redis has it after a `followup` event: the follow-up
 * task the desk opened. The session watches it from its start instead of the closed one. */
static void cust_followup_done(rconn *rc, redisReply *r, void *priv) {
    sess *s = priv;
    if (s->wsi && s->authed && r && r->type == REDIS_REPLY_STRING && r->len < sizeof(s->conv) &&
        strcmp(r->str, s->conv) != 0) {
        if (s->conv[0]) sub_unwatch_conv(s, s->conv);
        snprintf(s->conv, sizeof(s->conv), "%s", r->str);
        s->conv_live = 1;
        sub_watch_conv(s, s->conv, 0, CH_WEB);
    }
    sess_unref(s);
}

void client_conv_event(sess *s, const char *conv, msg_type type) {
    if (s->role != SESS_CUSTOMER || strcmp(conv, s->conv) != 0) return;
    if (type == MSG_CLOSED) s->conv_live = 0;
    if (type != MSG_FOLLOWUP) return;
    char key[CG_KEY_EXTRA + MSG_ID_MAX];
    snprintf(key, sizeof(key), CG_KEY_CUST, s->who.sub);
    if (rconn_cmd(G.redis, cust_followup_done, sess_ref(s), "HGET %s conv", key) < 0) sess_unref(s);
}

/* append_done for a customer: conv is where the message went. Counts a conversation it opened
 * and gives back the address token of one that did not open any. */
static void client_conv_outcome(sess *s, const req *q, const char *conv) {
    int opened = conv[0] && strcmp(conv, s->conv);
    if (conv[0]) s->conv_live = 1;
    if (opened) {
        if (!q->may_open) lim_conv_note(s->addr);
        client_cust_convs_add(s);
    } else if (q->may_open)
        lim_conv_refund(s->addr);
}

static void hello_customer(sess *s, const msg *m) {
    if (m->token[0]) {
        if (hello_token(s, m, TOKEN_CUSTOMER) < 0) return;
    } else {
        memset(&s->who, 0, sizeof(s->who));
        s->who.role = TOKEN_CUSTOMER;
        cg_id_new(s->who.sub);
    }
    if (m->sender_name[0]) snprintf(s->who.name, sizeof(s->who.name), "%s", m->sender_name);
    s->identity = m->identity;
    /* Names are shown to agents as they are: control and bidi characters (a U+202E that makes
     * "exe.pdf" read "fdp.exe") are removed, not refused, so that a customer whose shop account
     * carries one can still chat. */
    size_t cleaned = cg_name_clean(s->who.name) + cg_name_clean(s->identity.account);
    if (cleaned)
        log_info("client %s: removed %zu control or bidi characters from the customer's names",
                 s->sock, cleaned);
    snprintf(s->identity.customer_id, sizeof(s->identity.customer_id), "%s", s->who.sub);
    /* The tier raises priority: a customer may not grant it to itself. It comes from trusted
     * sources only (channel bridges; signed shop identities later). */
    s->identity.tier[0] = 0;
    snprintf(s->hello_conv, sizeof(s->hello_conv), "%s", m->conv);
    s->hello_last_seq = m->last_seq;
    req *q = req_new(s, m);
    if (!q) return;
    char key[MSG_ID_MAX + CG_KEY_EXTRA];
    snprintf(key, sizeof(key), CG_KEY_CUST, s->who.sub);
    s->hello_pending = 1;
    /* Tokens the gateway minted carry a jti: its revocation is asked in the same round trip. */
    int sent = 1;
    if (s->who.jti[0] && revoked_query(s, cust_revoked_done, req_ref(q)) < 0) {
        req_free(q);
        sent = 0;
    }
    if (sent && m->token[0]) client_cust_convs_read(s); /* a new customer has opened none */
    if (!sent || rconn_cmd(G.redis, cust_conv_done, q, "HGET %s conv", key) < 0) {
        s->hello_pending = 0;
        sess_send_error(s, "unavailable", "storage is unreachable; say hello again later", m->cmid,
                        1);
        req_free(q);
    }
}

/* ---- backpressure: at most redis_max_in_flight commands wait on the command connection ---- */

/* Redis has redis_max_in_flight commands unanswered: s's frame is not sent (busy, retry), and s
 * is not read any more until half of them are answered (client_backpressure_ease), so a
 * client that sends faster than Redis answers stops being read instead of queueing without
 * bound. */
/* The lws rx flow control reason bit of Redis backpressure (sess.c has its own). */
#define CLIENT_RXFLOW_REDIS (1 << 2)

static int client_busy(sess *s, const msg *m, const char *mode) {
    if (rconn_in_flight(G.redis) < (unsigned)G.cfg.redis_max_in_flight) return 0;
    if (!strcmp(mode, "log"))
        sess_send_error(s, "busy", "the desk is busy; send the same frame again in a moment",
                        m->cmid, 1);
    if (!s->redis_paused && s->wsi) {
        lws_rx_flow_control(s->wsi, LWS_RXFLOW_REASON_APPLIES_DISABLE | CLIENT_RXFLOW_REDIS);
        s->redis_paused = 1;
        if (!G.n_rx_paused++)
            log_warn("redis: %u commands unanswered: clients are slowed down",
                     rconn_in_flight(G.redis));
    }
    return 1;
}

/* rconn_on_drain (main.c): half of the bound is answered, every paused session is read again. */
void client_backpressure_ease(rconn *rc, void *priv) {
    (void)rc;
    (void)priv;
    if (!G.n_rx_paused) return;
    for (sess *s = G.sessions; s; s = s->next) {
        if (!s->redis_paused) continue;
        s->redis_paused = 0;
        if (s->wsi)
            lws_rx_flow_control(s->wsi, LWS_RXFLOW_REASON_APPLIES_ENABLE | CLIENT_RXFLOW_REDIS);
    }
    G.n_rx_paused = 0;
    log_info("redis: answering again: clients are read again");
}

/* ---- messages ---- */

/* The ack of a stored message: cmid, the message's id, conv and seq; never dropped (sess.c). */
static void send_ack(sess *s, const char *cmid, const char *id, const char *conv, uint64_t seq) {
    msg a;
    msg_init(&a);
    a.type = MSG_ACK;
    snprintf(a.cmid, sizeof(a.cmid), "%s", cmid);
    snprintf(a.id, sizeof(a.id), "%s", id);
    snprintf(a.conv, sizeof(a.conv), "%s", conv);
    a.seq = seq;
    sess_send_ctl_msg(s, &a);
    msg_free(&a);
}

/* XRANGE of the original's log entry (<seq>-0): ack the re-sent cmid with the original message's
 * id. An entry no longer in the log (trimmed) or unreadable: the ack goes without id. */
static void dup_ack_done(rconn *rc, redisReply *r, void *priv) {
    req *q = priv;
    sess *s = q->s;
    char id[MSG_ID_MAX] = "";
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        redisReply *e = r->element[0],
                   *kv = e->type == REDIS_REPLY_ARRAY && e->elements == 2 ? e->element[1] : NULL;
        for (size_t i = 0; kv && kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements; i += 2) {
            if (kv->element[i]->type != REDIS_REPLY_STRING || strcmp(kv->element[i]->str, "m"))
                continue;
            msg m;
            msg_init(&m);
            if (kv->element[i + 1]->type == REDIS_REPLY_STRING &&
                msg_decode_msgpack(&m, kv->element[i + 1]->str, kv->element[i + 1]->len, NULL) == 0)
                snprintf(id, sizeof(id), "%s", m.id);
            msg_free(&m);
        }
    }
    if (s->wsi) send_ack(s, q->cmid, id, q->conv, q->seq);
    req_free(q);
}

/* A re-sent cmid (cg_message answered dup): read the original's id from the log, one round trip
 * on this rare path, so the ack names the message the client's first send stored. Takes q. */
static void dup_ack(sess *s, req *q) {
    char key[MSG_ID_MAX + CG_KEY_EXTRA], at[32];
    snprintf(key, sizeof(key), CG_KEY_CONV_LOG, q->conv);
    snprintf(at, sizeof(at), "%llu-0", (unsigned long long)q->seq);
    const char *argv[] = {"XRANGE", key, at, at};
    if (rconn_cmdargv(G.redis, dup_ack_done, q, 4, argv, NULL) < 0) dup_ack_done(G.redis, NULL, q);
}

/* cg_message's answer: 'stored' with conv, seq, dup (an error reply as it is). */
static void append_done(rconn *rc, redisReply *r, void *priv) {
    req *q = priv;
    sess *s = q->s;
    if (!s->wsi) {
        req_free(q);
        return;
    }
    char kind[8];
    if (!r || evres_kind(r, kind, sizeof(kind)) != 0 || strcmp(kind, "stored") != 0) {
        if (q->type == MSG_RATING && r && r->str && !strncmp(r->str, "CLOSED", 6))
            sess_send_error(s, "closed", "no survey to answer: it is over or was never sent",
                            q->cmid, 0);
        else if (q->type == MSG_TEXT || q->type == MSG_ATTACHMENT || q->type == MSG_RATING || !r)
            send_redis_error(s, r, q->cmid);
        if (q->may_open) lim_conv_refund(s->addr);
        req_free(q);
        return;
    }
    char conv[MSG_ID_MAX];
    evres_str(r, "conv", conv, sizeof(conv));
    long long seq = evres_int(r, "seq"), dup = evres_int(r, "dup");
    /* A duplicate (a re-sent cmid) opened nothing, and may name an older conversation (a cmid
     * re-sent after the customer moved on): the session stays in its current one. */
    if (dup && q->may_open) lim_conv_refund(s->addr);
    if (!dup && s->role == SESS_CUSTOMER && (q->type == MSG_TEXT || q->type == MSG_ATTACHMENT))
        client_conv_outcome(s, q, conv);
    if (s->role == SESS_CUSTOMER && conv[0] && strcmp(conv, s->conv) && (!dup || !s->conv[0])) {
        /* First message, or first after a close: a new conversation. */
        if (s->conv[0]) sub_unwatch_conv(s, s->conv);
        snprintf(s->conv, sizeof(s->conv), "%s", conv);
        sub_watch_conv(s, conv, 0, CH_WEB);
    }
    if (seq > 0 && dup) {
        snprintf(q->conv, sizeof(q->conv), "%s", conv);
        q->seq = (uint64_t)seq;
        dup_ack(s, q); /* takes q */
        return;
    }
    if (seq > 0) send_ack(s, q->cmid, q->id, conv, (uint64_t)seq);
    req_free(q);
}

/* Stamp m as coming from s and store it with cg_message in the given mode, unless a per-source
 * limit refuses a new conversation it may open (or holds it until Redis says: conv_check). */
static void store(sess *s, msg *m, const char *mode) {
    if (client_busy(s, m, mode)) return;
    int agent = s->role == SESS_AGENT;
    m->role = agent ? ROLE_AGENT : ROLE_CUSTOMER;
    m->dir = agent ? DIR_OUT : DIR_IN;
    m->channel = agent ? sub_conv_channel(s, m->conv) : CH_WEB;
    snprintf(m->sender_id, sizeof(m->sender_id), "%s", s->who.sub);
    snprintf(m->sender_name, sizeof(m->sender_name), "%s", s->who.name);
    if (!agent) {
        m->identity = s->identity;
        snprintf(m->conv, sizeof(m->conv), "%s", s->conv);
    }
    int may_open = 0;
    if (!agent && !strcmp(mode, "log") && m->type != MSG_RATING) {
        if (s->conv_checks) { /* behind a held message: in order */
            client_conv_check(s, m);
            return;
        }
        conv_verdict v = CONV_ALLOW;
        if (!s->conv[0] || !s->conv_live) v = client_conv_allowed(s, m->cmid, 0, &may_open);
        if (v == CONV_CHECK) client_conv_check(s, m);
        if (v != CONV_ALLOW) return;
    }
    store_append(s, m, mode, may_open);
}

/* Store the stamped m with cg_message in the given mode; may_open: an address token was taken
 * for it (append_done gives it back if no conversation was opened). */
static void store_append(sess *s, msg *m, const char *mode, int may_open) {
    m->ts_ms = cg_now_ms();
    cg_id_new(m->id);
    char conv[MSG_ID_MAX];
    snprintf(conv, sizeof(conv), "%s", m->conv);
    m->conv[0] = 0; /* the log key and the pub/sub channel carry it */
    m->seq = 0;
    msg_stored_trim(m);
    size_t n;
    unsigned char *p = msg_encode_msgpack(m, 0, &n);
    req *q = req_new(s, m);
    if (!p || !q) {
        free(p);
        if (q) req_free(q);
        if (may_open) lim_conv_refund(s->addr);
        sess_send_error(s, "unavailable", "out of memory", m->cmid, 1);
        return;
    }
    q->may_open = may_open;
    /* what only a customer's message can need: the id of the conversation it may open, the
     * channel stored on it, and the first words kept as its preview */
    int cust = m->role == ROLE_CUSTOMER;
    char newconv[33] = "";
    if (cust) cg_id_new(newconv);
    char preview[MSG_PREVIEW_MAX] = "";
    if (cust && m->text) {
        size_t k = m->text_len < sizeof(preview) - 1 ? m->text_len : sizeof(preview) - 1;
        while (k > 0 && k < m->text_len && ((unsigned char)m->text[k] & 0xC0) == 0x80)
            k--;
        memcpy(preview, m->text, k);
        preview[k] = 0;
    }
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", conv);
    evarg_str(&a, "cmid", m->cmid);
    evarg_str(&a, "role", msg_role_name(m->role));
    evarg_str(&a, "sender", s->who.sub);
    evarg_bytes(&a, "payload", p, n);
    evarg_str(&a, "type", msg_type_name(m->type));
    if (cust) {
        evarg_str(&a, "newconv", newconv);
        evarg_str(&a, "channel", msg_channel_name(m->channel));
    }
    evarg_int(&a, "now", m->ts_ms);
    evarg_str(&a, "mode", mode);
    if (preview[0]) evarg_str(&a, "preview", preview);
    if (evarg_send(&a, G.redis, "cg_message", CG_KEY_TENANT, append_done, q) < 0) {
        if (!strcmp(mode, "log")) send_redis_error(s, NULL, m->cmid);
        if (may_open) lim_conv_refund(s->addr);
        req_free(q);
    } else
        G.msgs_in++;
    free(p);
}

/* XADD reply for an agent command: ack the cmid. */
static void command_done(rconn *rc, redisReply *r, void *priv) {
    req *q = priv;
    sess *s = q->s;
    if (s->wsi) {
        if (!r || r->type == REDIS_REPLY_ERROR)
            send_redis_error(s, r, q->cmid);
        else if (q->cmid[0]) {
            msg a;
            msg_init(&a);
            a.type = MSG_ACK;
            snprintf(a.cmid, sizeof(a.cmid), "%s", q->cmid);
            snprintf(a.id, sizeof(a.id), "%s", q->id);
            sess_send_ctl_msg(s, &a);
            msg_free(&a);
        }
    }
    req_free(q);
}

/* Agent commands (and a customer's close) are decided by a router, which answers an agent's
 * errors on cg:a:<agent>; the gateway acks the command once it is stored for the routers. */
static void command(sess *s, msg *m) {
    m->role = s->role == SESS_AGENT ? ROLE_AGENT : ROLE_CUSTOMER;
    m->dir = DIR_IN;
    m->ts_ms = cg_now_ms();
    cg_id_new(m->id);
    snprintf(m->sender_id, sizeof(m->sender_id), "%s", s->who.sub);
    snprintf(m->sender_name, sizeof(m->sender_name), "%s", s->who.name);
    snprintf(m->sock, sizeof(m->sock), "%s", s->sock);
    req *q = req_new(s, m);
    if (!q) return;
    char conv[MSG_ID_MAX];
    snprintf(conv, sizeof(conv), "%s", m->conv);
    if (to_routers(m, conv, command_done, q) < 0) {
        send_redis_error(s, NULL, m->cmid);
        req_free(q);
    }
}

/* ---- entry points ---- */

static void dispatch(sess *s, msg *m) {
    switch (m->type) {
    case MSG_TEXT:
    case MSG_ATTACHMENT:
    case MSG_RATING:
        store(s, m, "log");
        return;
    case MSG_TYPING:
    case MSG_READ:
        if (s->role == SESS_AGENT && !m->conv[0]) { /* typing: msg_validate says so already */
            sess_send_error(s, "missing_field", "field 'conv' is required for type 'read'", m->cmid,
                            0);
            return;
        }
        if (s->role == SESS_CUSTOMER && !s->conv[0]) return; /* nobody to tell yet */
        store(s, m, "eph");
        return;
    case MSG_CLOSE:
        if (s->role == SESS_CUSTOMER) {
            /* "End chat": always the customer's own current conversation */
            if (!s->conv[0]) {
                sess_send_error(s, "closed", "there is no open conversation to end", m->cmid, 0);
                return;
            }
            snprintf(m->conv, sizeof(m->conv), "%s", s->conv);
            snprintf(m->code, sizeof(m->code), "%s", "customer_left");
            s->conv_live = 0; /* the next message opens a new conversation */
            m->channel = CH_WEB;
        }
        command(s, m);
        return;
    case MSG_PRESENCE:
        s->away = strcmp(m->code, "online") != 0; /* offline is away to the routers */
        command(s, m);
        return;
    case MSG_PICK:
    case MSG_TRANSFER:
    case MSG_CLASSIFY:
        command(s, m);
        return;
    case MSG_ACK:
        return; /* receipts: the client's hello.last_seq is the resume point */
    case MSG_HELLO:
        sess_send_error(s, "bad_type", "hello was already accepted on this connection", m->cmid, 0);
        return;
    default:
        sess_send_error(s, "bad_type", "this frame type cannot be sent here", m->cmid, 0);
    }
}

/* A bridge's frame: decoding errors are answered here; an authenticated bridge (a trusted
 * component acking every delivery) is not rate limited, a connection before hello is (its
 * malformed frames too). */
static void client_bridge_frame(sess *s, msg *m, const cg_err *err) {
    if (!s->authed && !sess_rate_ok(s, (uint64_t)cg_now_ms(), (double)G.cfg.rate_msgs,
                                    (double)G.cfg.rate_burst)) {
        LIM.rate_limited++;
        sess_send_error(s, "rate_limited", "too many frames; slow down", m->cmid, 1);
        return;
    }
    if (err) {
        LIM.malformed++;
        sess_send_error(s, err->code, err->msg, m->cmid[0] ? m->cmid : NULL, 0);
        return;
    }
    if (!s->authed && m->type == MSG_HELLO && hello_tenant(s, m) < 0) return;
    bridge_frame(s, m);
}

/* Fields that steer a channel bridge -- `native` (the body a bridge sends as is) and `meta`
 * (platform ids, reply address, e-mail threading) -- are set by the product only: by the
 * gateway's renderers from the conversation's stored address, and by the webhooks and bridges
 * for inbound messages. A customer or agent frame carrying either is refused. 0 or -1 with err. */
static int client_check_bridge_fields(const msg *m, cg_err *err) {
    const msg_meta *mt = &m->meta;
    int meta = mt->platform_msg_id[0] || mt->platform_chat_id[0] || mt->thread_id[0] ||
               mt->in_reply_to[0] || mt->subject[0];
    const char *f = m->native ? "native" : meta ? "meta" : NULL;
    if (!f) return 0;
    return cg_err_set(err, "bad_value",
                      "field '%s' is set by the gateway for channel bridges and may not be sent "
                      "by a client",
                      f);
}

/* Attachment URLs from customers and agents are links the other side's page opens: only http://
 * and https:// (any case) are accepted, so that a javascript:, data: or vbscript: URL never
 * reaches a transcript (the channels' own references, wechat-media: and the like, are made by
 * the gateway's webhooks, not by clients). 0 or -1 with err (bad_value naming the entry). */
static int client_check_attachment_urls(const msg *m, cg_err *err) {
    for (unsigned i = 0; i < m->n_att; i++) {
        const char *u = m->att[i].url;
        if (!strncasecmp(u, "https://", 8) || !strncasecmp(u, "http://", 7)) continue;
        return cg_err_set(err, "bad_value",
                          "field 'attachments[%u].url' must be an http:// or https:// URL", i);
    }
    return 0;
}

/* The session's token bucket (rate_msgs, rate_burst) for one frame: 1 when it may pass; else 0
 * after answering rate_limited, and closing 1008 "flood" after 10 x rate_burst refusals in a
 * row. */
static int client_rate_ok(sess *s, const char *cmid) {
    if (sess_rate_ok(s, (uint64_t)cg_now_ms(), (double)G.cfg.rate_msgs, (double)G.cfg.rate_burst)) {
        s->rejected_in_row = 0;
        return 1;
    }
    LIM.rate_limited++;
    sess_send_error(s, "rate_limited", "too many frames; slow down and send it again", cmid, 1);
    if (++s->rejected_in_row > 10 * (unsigned)G.cfg.rate_burst)
        sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "flood");
    return 0;
}

void client_frame(sess *s, const unsigned char *buf, size_t len, int binary) {
    msg m;
    msg_init(&m);
    cg_err err;
    int rc = s->codec == CODEC_MSGPACK || binary
                 ? msg_decode_msgpack(&m, (const char *)buf, len, &err)
                 : msg_decode_json(&m, (const char *)buf, len, &err);
    if (s->role == SESS_BRIDGE) {
        client_bridge_frame(s, &m, rc < 0 ? &err : NULL);
        msg_free(&m);
        return;
    }
    msg_origin origin = s->role == SESS_AGENT ? ORIGIN_AGENT : ORIGIN_CUSTOMER;
    if (rc == 0) rc = msg_validate(&m, origin, &err);
    if (rc == 0) rc = client_check_bridge_fields(&m, &err);
    if (rc == 0) rc = client_check_attachment_urls(&m, &err);
    /* Every frame takes a token, malformed ones too: refusing them costs work as well. */
    if (!client_rate_ok(s, m.cmid[0] ? m.cmid : NULL)) {
        msg_free(&m);
        return;
    }
    if (rc < 0) {
        LIM.malformed++;
        log_debug("client %s: refused frame: %s", s->sock, err.code);
        sess_send_error(s, err.code, err.msg, m.cmid[0] ? m.cmid : NULL, 0);
        msg_free(&m);
        return;
    }
    /* Redis paused, loading or down: answer at once instead of queueing the frame (an agent's
     * hello needs no Redis: it is announced when Redis is back) */
    int no_redis = m.type == MSG_ACK || (m.type == MSG_HELLO && s->role == SESS_AGENT);
    if (!no_redis && !rs_redis_ok()) {
        sess_send_error(s, "unavailable", "storage is unavailable; send the same frame again later",
                        m.cmid[0] ? m.cmid : NULL, 1);
        msg_free(&m);
        return;
    }
    if (!s->authed) {
        if (m.type != MSG_HELLO)
            sess_send_error(s, "hello_required", "the first frame must be hello", m.cmid, 0);
        else if (s->hello_pending)
            sess_send_error(s, "bad_type", "hello is already being processed", m.cmid, 0);
        else if (hello_tenant(s, &m) < 0)
            ; /* answered */
        else if (s->role == SESS_AGENT)
            hello_agent(s, &m);
        else
            hello_customer(s, &m);
        msg_free(&m);
        return;
    }
    dispatch(s, &m);
    msg_free(&m);
}

void client_closed(sess *s) {
    if (s->role == SESS_AGENT && s->authed) client_presence(s, "disconnect");
    if (s->role == SESS_BRIDGE) bridge_closed(s);
}
