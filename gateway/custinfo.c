/* custinfo.c -- GET /customer?conv=<conv>: the customer panel of an agent console.
 *
 *   GET /customer?conv=<conv>
 *   Authorization: Bearer <agent JWT>
 *   -> 200 application/json
 *      {"conv":"…","customer":"…","name":"…","channel":"web","locale":"zh-CN","created":<ms>,
 *       "queue":"…","category":"…","ticket":"…","complaint_class":"…","rating":5,
 *       "latest_ticket":"…","last_agent":"…",
 *       "earlier":[{"conv":"…","created":<ms>,"state":"closed","resolution":"resolved",
 *                   "rating":4,"ticket":"…","channel":"web"}]}
 *
 * Only the agent the conversation is assigned to (or, once closed, was last assigned to) may ask
 * (cg:conv:<conv> field agent = the token's sub): 403 otherwise, 404 for an unknown conversation,
 * 400 for a malformed id, 401 without a valid agent token or with a revoked one, 503 when Redis
 * does not answer. Absent fields are left out. The earlier conversations: the conversation this
 * one follows up (followup_of), the customer's latest one (cg:cust:<customer> conv) and the
 * newest CI_EARLIER_MAX of cg:cust:<customer>:convs (conversations since that list exists), each
 * once and never this one. Rounds: (1) EXISTS cg:revoked:<jti>, HMGET cg:conv:<conv>; (2) HMGET
 * cg:cust:<customer>, of the followed-up conversation, ZREVRANGE cg:cust:<customer>:convs; (3)
 * HMGET of each earlier conversation not read yet. The customer id is never logged unmasked. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gw.h"
#include "agentauth.h"
#include "desk_schema.h"
#include "webhook.h"

#include "../common/log.h"

/* The fields read of the conversation asked for, in HMGET order. */
static const char *const CI_FIELDS[] = {"agent",  "customer",        "channel", "name",
                                        "locale", "created",         "queue",   "category",
                                        "ticket", "complaint_class", "rating",  "followup_of"};
#define CI_NFIELDS (sizeof(CI_FIELDS) / sizeof(CI_FIELDS[0]))
#define CI_EARLIER_FIELDS "created state resolution rating ticket channel"
static const char *const CI_EARLIER[] = {"created", "state",  "resolution",
                                         "rating",  "ticket", "channel"};
#define CI_NEARLIER (sizeof(CI_EARLIER) / sizeof(CI_EARLIER[0]))
#define CI_EARLIER_MAX 20 /* conversations of cg:cust:<customer>:convs listed */

/* One request's state (q->priv). */
typedef struct ci_state {
    char me[TOKEN_STR_MAX];
    char conv[MSG_ID_MAX], customer[MSG_ID_MAX], followup_of[MSG_ID_MAX], latest[MSG_ID_MAX];
    json_t *root, *earlier;
    unsigned left; /* reads of the current round not answered yet */
} ci_state;

static void ci_state_free(void *p) {
    ci_state *s = p;
    if (!s) return;
    json_decref(s->root);
    json_decref(s->earlier);
    free(s);
}

static void ci_unavailable(wh_req *q, const char *reason) {
    char body[128];
    snprintf(body, sizeof(body), "{\"error\":\"unavailable\",\"reason\":\"%s\"}\n", reason);
    wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, AGENTAUTH_JSON, body);
}

/* 1 when s is 1-64 of A-Z a-z 0-9 _ - (a conversation id as the desk makes them). */
static int ci_id_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= MSG_ID_MAX) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* Element i of an HMGET reply into out (size n): 1 when it is a string that fits, else 0 (out "").
 */
static int ci_field(const redisReply *r, size_t i, char *out, size_t n) {
    out[0] = '\0';
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) return 0;
    if (r->element[i]->len >= n) return 0;
    memcpy(out, r->element[i]->str, r->element[i]->len + 1);
    return 1;
}

/* Set field name of o from element i of an HMGET reply: numbers for created / rating, strings
 * otherwise; nothing when absent, empty or not UTF-8. */
static void ci_set(json_t *o, const char *name, const redisReply *r, size_t i) {
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING || !r->element[i]->len)
        return;
    const redisReply *e = r->element[i];
    if (!strcmp(name, "created") || !strcmp(name, "rating")) {
        char *end = NULL;
        long long v = strtoll(e->str, &end, 10);
        if (end && *end == '\0') json_object_set_new(o, name, json_integer(v));
        return;
    }
    json_t *v = json_stringn(e->str, e->len);
    if (v) json_object_set_new(o, name, v);
}

/* The last read is in: answer 200. */
static void ci_answer(wh_req *q) {
    ci_state *s = q->priv;
    if (q->responded) return;
    json_object_set(s->root, "earlier", s->earlier);
    char *body = json_dumps(s->root, JSON_COMPACT);
    if (body)
        wh_respond(q, HTTP_STATUS_OK, AGENTAUTH_JSON, body);
    else
        ci_unavailable(q, "out of memory");
    free(body);
}

/* A read of the round ended: answer after the last one. */
static void ci_done(wh_req *q, int failed) {
    ci_state *s = q->priv;
    if (--s->left == 0 && !failed) ci_answer(q);
    wh_release(q, failed);
}

/* HMGET of an earlier conversation (priv: the wh_req; the conv id is the entry's "conv"). */
static void ci_earlier_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    ci_state *s = q->priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        ci_unavailable(q, "Redis did not answer");
        ci_done(q, 1);
        return;
    }
    /* the entries were appended in the order the reads were sent: fill the first without state */
    for (size_t k = 0; k < json_array_size(s->earlier); k++) {
        json_t *o = json_array_get(s->earlier, k);
        if (json_object_get(o, "state")) continue;
        for (size_t i = 0; i < CI_NEARLIER; i++)
            ci_set(o, CI_EARLIER[i], r, i);
        if (!json_object_get(o, "state")) json_object_set_new(o, "state", json_string("unknown"));
        break;
    }
    ci_done(q, 0);
}

/* 1 when conv is this conversation or already among the earlier ones. */
static int ci_known(const ci_state *s, const char *conv) {
    if (!strcmp(conv, s->conv)) return 1;
    for (size_t k = 0; k < json_array_size(s->earlier); k++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(s->earlier, k), "conv")),
                    conv))
            return 1;
    return 0;
}

/* Send the HMGET of earlier conversation conv (one more read of the round). */
static int ci_read_earlier(wh_req *q, const char *conv) {
    ci_state *s = q->priv;
    json_t *o = json_object();
    json_object_set_new(o, "conv", json_string(conv));
    json_array_append_new(s->earlier, o);
    s->left++;
    wh_hold(q);
    if (rconn_cmd(G.redis, ci_earlier_reply, q, "HMGET " CG_KEY_CONV " " CI_EARLIER_FIELDS, conv) <
        0) {
        ci_unavailable(q, "Redis did not answer");
        ci_done(q, 1);
        return -1;
    }
    return 0;
}

/* Round 2, HMGET cg:cust:<customer> conv ticket last_agent: the latest ticket and agent; the
 * latest conversation when it is another one is read too (round 3). */
static void ci_cust_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    ci_state *s = q->priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        ci_unavailable(q, "Redis did not answer");
        ci_done(q, 1);
        return;
    }
    ci_field(r, 0, s->latest, sizeof(s->latest));
    ci_set(s->root, "latest_ticket", r, 1);
    ci_set(s->root, "last_agent", r, 2);
    if (s->latest[0] && !ci_known(s, s->latest) && ci_id_ok(s->latest))
        ci_read_earlier(q, s->latest);
    ci_done(q, 0);
}

/* Round 2, ZREVRANGE cg:cust:<customer>:convs: each one not read yet is read (round 3). */
static void ci_convs_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    ci_state *s = q->priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        ci_unavailable(q, "Redis did not answer");
        ci_done(q, 1);
        return;
    }
    for (size_t i = 0; i < r->elements && !q->responded; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len >= MSG_ID_MAX || !ci_id_ok(e->str) ||
            ci_known(s, e->str))
            continue;
        if (ci_read_earlier(q, e->str) != 0) break;
    }
    ci_done(q, 0);
}

/* Round 1, HMGET cg:conv:<conv>: 404 / 403, or the conversation's fields and round 2. */
static void ci_conv_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    ci_state *s = q->priv;
    char agent[TOKEN_STR_MAX];
    if (q->responded) {
        wh_release(q, 0);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != CI_NFIELDS) {
        ci_unavailable(q, "Redis did not answer");
        wh_release(q, 1);
        return;
    }
    if (!ci_field(r, 1, s->customer, sizeof(s->customer))) {
        wh_respond(q, HTTP_STATUS_NOT_FOUND, AGENTAUTH_JSON,
                   "{\"error\":\"unknown_conv\",\"reason\":\"no such conversation\"}\n");
        wh_release(q, 0);
        return;
    }
    if (!ci_field(r, 0, agent, sizeof(agent)) || strcmp(agent, s->me)) {
        log_info("customer: refused: conversation not assigned to the asking agent");
        wh_respond(q, HTTP_STATUS_FORBIDDEN, AGENTAUTH_JSON,
                   "{\"error\":\"forbidden\",\"reason\":\"not assigned to you\"}\n");
        wh_release(q, 0);
        return;
    }
    json_object_set_new(s->root, "conv", json_string(s->conv));
    for (size_t i = 1; i < CI_NFIELDS - 1; i++)
        ci_set(s->root, CI_FIELDS[i], r, i);
    ci_field(r, CI_NFIELDS - 1, s->followup_of, sizeof(s->followup_of));
    s->left = 1; /* this read, until the round is sent */
    s->left++;
    wh_hold(q);
    if (rconn_cmd(G.redis, ci_cust_reply, q, "HMGET " CG_KEY_CUST " conv ticket last_agent",
                  s->customer) < 0) {
        ci_unavailable(q, "Redis did not answer");
        ci_done(q, 1);
        ci_done(q, 0);
        return;
    }
    if (s->followup_of[0] && ci_id_ok(s->followup_of) && ci_read_earlier(q, s->followup_of) != 0) {
        ci_done(q, 0);
        return;
    }
    s->left++;
    wh_hold(q);
    if (rconn_cmd(G.redis, ci_convs_reply, q, "ZREVRANGE " CG_KEY_CUST_CONVS " 0 %d", s->customer,
                  CI_EARLIER_MAX - 1) < 0) {
        ci_unavailable(q, "Redis did not answer");
        ci_done(q, 1);
    }
    ci_done(q, 0);
}

static int ci_enabled(void) {
    return 1;
}

/* GET: check the token and the id, then round 1. */
static void ci_get(wh_req *q) {
    token_claims who;
    if (agentauth_verify(q, "customer", &who) != 0) {
        wh_respond(q, HTTP_STATUS_UNAUTHORIZED, AGENTAUTH_JSON,
                   "{\"error\":\"unauthorized\",\"reason\":\"an agent token is required\"}\n");
        return;
    }
    char conv[MSG_ID_MAX];
    if (!wh_arg(q, "conv", conv, sizeof(conv)) || !ci_id_ok(conv)) {
        wh_respond(
            q, HTTP_STATUS_BAD_REQUEST, AGENTAUTH_JSON,
            "{\"error\":\"bad_conv\",\"reason\":\"conv must be 1-64 of A-Z a-z 0-9 _ -\"}\n");
        return;
    }
    ci_state *s = calloc(1, sizeof(*s));
    if (s) {
        s->root = json_object();
        s->earlier = json_array();
    }
    q->priv = s;
    q->priv_free = ci_state_free;
    if (!s || !s->root || !s->earlier) {
        ci_unavailable(q, "out of memory");
        return;
    }
    snprintf(s->me, sizeof(s->me), "%s", who.sub);
    snprintf(s->conv, sizeof(s->conv), "%s", conv);
    if (agentauth_start(q, &who) < 0) {
        ci_unavailable(q, "Redis did not answer");
        return;
    }
    /* the fields in CI_FIELDS order */
    const char *argv[2 + CI_NFIELDS];
    char key[sizeof(CG_KEY_CONV) + MSG_ID_MAX];
    snprintf(key, sizeof(key), CG_KEY_CONV, conv);
    argv[0] = "HMGET";
    argv[1] = key;
    for (size_t i = 0; i < CI_NFIELDS; i++)
        argv[2 + i] = CI_FIELDS[i];
    wh_hold(q);
    if (rconn_cmdargv(G.redis, ci_conv_reply, q, (int)(2 + CI_NFIELDS), argv, NULL) < 0) {
        wh_release(q, 1);
        ci_unavailable(q, "Redis did not answer");
    }
}

static void ci_post(wh_req *q) {
    q->allow = "GET";
    wh_respond(q, HTTP_STATUS_METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
}

const wh_hook hook_customer = {"/customer", 1, 0, ci_enabled, ci_get, ci_post, NULL, 0};
