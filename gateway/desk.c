/* desk.c -- GET /desk: the lists an agent console picks from, for the agent asking.
 *
 *   GET /desk
 *   Authorization: Bearer <agent JWT>
 *   -> 200 application/json
 *      {"resolutions":["resolved",…],"unresolved":["unresolved"],"categories":["default",…],
 *       "queues":[{"name":"general","name_zh":"…","name_en":"…","mode":"push","online":1},…],
 *       "agents":[{"id":"bob","name":"Bob","status":"online","load":1,"cap":2,
 *                  "queues":["general"]},…]}
 *
 * resolutions, unresolved and categories are what the routers published in cg:deskcfg
 * (router/store.c, from [router] resolutions, unresolved_resolutions and the [rule] sections);
 * queues are cg:queues with their cg:queuecfg:<queue>; agents are the members of the queues'
 * cg:online:<queue> sets (online with an open socket) with their cg:agent:<agent> profile, the
 * asking agent left out. Lists are sorted; a value that is not a valid code or UTF-8 is left out.
 *
 * 401 without a valid agent token or with a revoked one; 503 when Redis does not answer or the
 * routers have not published yet (reason "not_published"). Three pipelined rounds: (1) EXISTS
 * cg:revoked:<jti>, HGETALL cg:deskcfg, SMEMBERS cg:queues; (2) per queue HMGET cg:queuecfg and
 * SMEMBERS cg:online; (3) per agent HMGET cg:agent. Replies of one round come in the order sent
 * (one connection), so each round's replies are matched by a cursor. At most DESK_QUEUES_MAX
 * queues and DESK_AGENTS_MAX agents are read. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gw.h"
#include "agentauth.h"
#include "desk_schema.h"
#include "webhook.h"

#include "../common/log.h"

#define DESK_QUEUES_MAX 256
#define DESK_AGENTS_MAX 500
#define DESK_CODES_MAX 64 /* codes taken from one comma list */

/* One request's state (q->priv): the answer being built and the round's cursors. */
typedef struct desk_state {
    char me[TOKEN_STR_MAX];
    json_t *root, *queues, *agents; /* agents: id -> object, sorted when answered */
    char (*qname)[MSG_CODE_MAX];
    size_t nq, q_cfg, q_online; /* queues; replies of round 2 seen (queuecfg, online) */
    char (*aid)[TOKEN_STR_MAX];
    size_t na, a_seen; /* agents; replies of round 3 seen */
    int published;
} desk_state;

static void desk_state_free(void *p) {
    desk_state *s = p;
    if (!s) return;
    json_decref(s->root);
    json_decref(s->queues);
    json_decref(s->agents);
    free(s->qname);
    free(s->aid);
    free(s);
}

static void desk_unavailable(wh_req *q, const char *reason) {
    char body[128];
    snprintf(body, sizeof(body), "{\"error\":\"unavailable\",\"reason\":\"%s\"}\n", reason);
    wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, AGENTAUTH_JSON, body);
}

/* The codes of comma list s (n bytes) as a JSON array: each trimmed, valid codes only, each
 * once, at most DESK_CODES_MAX, in the configured order. New reference, or NULL. */
static json_t *desk_codes(const char *s, size_t n) {
    json_t *a = json_array();
    size_t i = 0;
    while (a && i < n && json_array_size(a) < DESK_CODES_MAX) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        size_t b = i, e = j;
        while (b < e && (s[b] == ' ' || s[b] == '\t'))
            b++;
        while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
            e--;
        if (agentauth_code_ok(s + b, e - b)) {
            int dup = 0;
            for (size_t k = 0; k < json_array_size(a); k++) {
                const char *v = json_string_value(json_array_get(a, k));
                if (strlen(v) == e - b && !memcmp(v, s + b, e - b)) dup = 1;
            }
            if (!dup) json_array_append_new(a, json_stringn(s + b, e - b));
        }
        i = j + 1;
    }
    return a;
}

/* Round 1, HGETALL cg:deskcfg: the three lists into the answer. */
static void desk_cfg_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    desk_state *s = q->priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        desk_unavailable(q, "Redis did not answer");
        wh_release(q, 1);
        return;
    }
    static const struct {
        const char *field, *key;
    } lists[] = {{"resolutions", "resolutions"},
                 {"unresolved_resolutions", "unresolved"},
                 {"categories", "categories"}};
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        if (!strcmp(f->str, "ready")) s->published = 1;
        for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
            if (!strcmp(f->str, lists[k].field))
                json_object_set_new(s->root, lists[k].key, desk_codes(v->str, v->len));
    }
    wh_release(q, 0);
}

static int desk_cmp_code(const void *a, const void *b) {
    return strcmp(a, b);
}

static void desk_answer(wh_req *q);
static void desk_agents_round(wh_req *q);
static void desk_qcfg_reply(rconn *rc, redisReply *r, void *priv);
static void desk_online_reply(rconn *rc, redisReply *r, void *priv);

/* Round 1, SMEMBERS cg:queues: start round 2 (or 3 when there is no queue). */
static void desk_queues_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    desk_state *s = q->priv;
    if (q->responded) {
        wh_release(q, 0);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        desk_unavailable(q, "Redis did not answer");
        wh_release(q, 1);
        return;
    }
    if (!s->published) {
        desk_unavailable(q, "not_published");
        wh_release(q, 0);
        return;
    }
    size_t n = r->elements < DESK_QUEUES_MAX ? r->elements : DESK_QUEUES_MAX;
    s->qname = calloc(n ? n : 1, sizeof(*s->qname));
    if (!s->qname) {
        desk_unavailable(q, "out of memory");
        wh_release(q, 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && agentauth_code_ok(e->str, e->len))
            memcpy(s->qname[s->nq++], e->str, e->len + 1);
    }
    qsort(s->qname, s->nq, sizeof(*s->qname), desk_cmp_code);
    for (size_t i = 0; i < s->nq; i++) {
        wh_hold(q);
        if (rconn_cmd(G.redis, desk_qcfg_reply, q, "HMGET " CG_KEY_QUEUECFG " name_zh name_en mode",
                      s->qname[i]) < 0) {
            wh_release(q, 1);
            desk_unavailable(q, "Redis did not answer");
            break;
        }
        wh_hold(q);
        if (rconn_cmd(G.redis, desk_online_reply, q, "SMEMBERS " CG_KEY_ONLINE, s->qname[i]) < 0) {
            wh_release(q, 1);
            desk_unavailable(q, "Redis did not answer");
            break;
        }
    }
    if (!s->nq) desk_agents_round(q);
    wh_release(q, 0);
}

/* A string element of an array reply as a JSON string (NULL when nil or not UTF-8). */
static json_t *desk_str(const redisReply *r, size_t i) {
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) return NULL;
    return json_stringn(r->element[i]->str, r->element[i]->len);
}

/* Round 2, HMGET cg:queuecfg:<queue>: the queue's entry (its online count comes next). */
static void desk_qcfg_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    desk_state *s = q->priv;
    size_t i = s->q_cfg++;
    if (q->responded || i >= s->nq) {
        wh_release(q, 0);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        desk_unavailable(q, "Redis did not answer");
        wh_release(q, 1);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->qname[i]));
    static const char *const fields[] = {"name_zh", "name_en", "mode"};
    for (size_t k = 0; k < 3; k++) {
        json_t *v = desk_str(r, k);
        if (v) json_object_set_new(o, fields[k], v);
    }
    json_object_set_new(o, "online", json_integer(0));
    json_array_append_new(s->queues, o);
    wh_release(q, 0);
}

/* Round 2, SMEMBERS cg:online:<queue>: count them, note each agent and its queue; after the
 * last queue start round 3. */
static void desk_online_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    desk_state *s = q->priv;
    size_t i = s->q_online++;
    if (q->responded || i >= s->nq) {
        wh_release(q, 0);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        desk_unavailable(q, "Redis did not answer");
        wh_release(q, 1);
        return;
    }
    json_object_set_new(json_array_get(s->queues, i), "online",
                        json_integer((json_int_t)r->elements));
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= TOKEN_STR_MAX) continue;
        if (!strcmp(e->str, s->me)) continue;
        json_t *a = json_object_get(s->agents, e->str);
        if (!a) {
            if (json_object_size(s->agents) >= DESK_AGENTS_MAX) continue;
            json_t *id = json_stringn(e->str, e->len);
            if (!id) continue; /* not UTF-8 */
            a = json_object();
            json_object_set_new(a, "id", id);
            json_object_set_new(a, "queues", json_array());
            json_object_set_new(s->agents, e->str, a);
        }
        json_array_append_new(json_object_get(a, "queues"), json_string(s->qname[i]));
    }
    if (s->q_online == s->nq) desk_agents_round(q);
    wh_release(q, 0);
}

static void desk_agent_reply(rconn *rc, redisReply *r, void *priv);

/* Round 3: HMGET every agent's profile, or answer now when there is none. */
static void desk_agents_round(wh_req *q) {
    desk_state *s = q->priv;
    size_t n = json_object_size(s->agents);
    s->aid = calloc(n ? n : 1, sizeof(*s->aid));
    if (!s->aid) {
        desk_unavailable(q, "out of memory");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(s->agents, key, v) {
        snprintf(s->aid[s->na++], TOKEN_STR_MAX, "%s", key);
    }
    qsort(s->aid, s->na, sizeof(*s->aid), desk_cmp_code);
    for (size_t i = 0; i < s->na; i++) {
        wh_hold(q);
        if (rconn_cmd(G.redis, desk_agent_reply, q, "HMGET " CG_KEY_AGENT " name status load cap",
                      s->aid[i]) < 0) {
            wh_release(q, 1);
            desk_unavailable(q, "Redis did not answer");
            return;
        }
    }
    if (!s->na) desk_answer(q);
}

/* Round 3, HMGET cg:agent:<agent>: name, status, load and cap; after the last one answer. */
static void desk_agent_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    desk_state *s = q->priv;
    size_t i = s->a_seen++;
    if (q->responded || i >= s->na) {
        wh_release(q, 0);
        return;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 4) {
        desk_unavailable(q, "Redis did not answer");
        wh_release(q, 1);
        return;
    }
    json_t *a = json_object_get(s->agents, s->aid[i]);
    json_t *name = desk_str(r, 0), *status = desk_str(r, 1);
    json_object_set_new(a, "name", name ? name : json_string(s->aid[i]));
    json_object_set_new(a, "status", status ? status : json_string("offline"));
    for (size_t k = 2; k < 4; k++) {
        const redisReply *e = r->element[k];
        long long v = e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
        json_object_set_new(a, k == 2 ? "load" : "cap", json_integer(v < 0 ? 0 : v));
    }
    if (s->a_seen == s->na) desk_answer(q);
    wh_release(q, 0);
}

/* Every round is in: 200 with the answer (agents sorted by id). */
static void desk_answer(wh_req *q) {
    desk_state *s = q->priv;
    if (q->responded) return;
    json_t *list = json_array();
    for (size_t i = 0; list && i < s->na; i++)
        json_array_append(list, json_object_get(s->agents, s->aid[i]));
    json_object_set_new(s->root, "agents", list);
    json_object_set(s->root, "queues", s->queues);
    static const char *const need[] = {"resolutions", "unresolved", "categories"};
    for (size_t k = 0; k < 3; k++)
        if (!json_object_get(s->root, need[k])) json_object_set_new(s->root, need[k], json_array());
    char *body = json_dumps(s->root, JSON_COMPACT);
    if (body)
        wh_respond(q, HTTP_STATUS_OK, AGENTAUTH_JSON, body);
    else
        desk_unavailable(q, "out of memory");
    free(body);
}

static int desk_enabled(void) {
    return 1;
}

/* GET: check the token, then round 1. */
static void desk_get(wh_req *q) {
    token_claims who;
    if (agentauth_verify(q, "desk", &who) != 0) {
        wh_respond(q, HTTP_STATUS_UNAUTHORIZED, AGENTAUTH_JSON,
                   "{\"error\":\"unauthorized\",\"reason\":\"an agent token is required\"}\n");
        return;
    }
    desk_state *s = calloc(1, sizeof(*s));
    if (s) {
        s->root = json_object();
        s->queues = json_array();
        s->agents = json_object();
    }
    q->priv = s;
    q->priv_free = desk_state_free;
    if (!s || !s->root || !s->queues || !s->agents) {
        desk_unavailable(q, "out of memory");
        return;
    }
    snprintf(s->me, sizeof(s->me), "%s", who.sub);
    if (agentauth_start(q, &who) < 0) {
        desk_unavailable(q, "Redis did not answer");
        return;
    }
    wh_hold(q);
    if (rconn_cmd(G.redis, desk_cfg_reply, q, "HGETALL " CG_KEY_DESKCFG) < 0) {
        wh_release(q, 1);
        desk_unavailable(q, "Redis did not answer");
        return;
    }
    wh_hold(q);
    if (rconn_cmd(G.redis, desk_queues_reply, q, "SMEMBERS " CG_KEY_QUEUES) < 0) {
        wh_release(q, 1);
        desk_unavailable(q, "Redis did not answer");
    }
}

static void desk_post(wh_req *q) {
    q->allow = "GET";
    wh_respond(q, HTTP_STATUS_METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
}

const wh_hook hook_desk = {"/desk", 1, 0, desk_enabled, desk_get, desk_post, NULL, 0};
