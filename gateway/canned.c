/* canned.c -- GET /canned?queue=<queue>: the canned replies of a queue, for agent consoles.
 *
 * The router publishes each queue's [canned <queue>] section as the hash cg:canned:<queue>
 * (FCALL cg_canned_set, redis/queue.lua). An agent reads them with its console token:
 *
 *   GET /canned?queue=faq
 *   Authorization: Bearer <agent JWT>
 *   -> 200 application/json {"queue":"faq","replies":[{"name":"…","text":"…"},…]} (by name)
 *
 * 401 without a token, with a bad, expired or revoked one, or with one that is not an agent's
 * (verified with token_verify, as the WebSocket agent hello does); 400 for a missing or invalid
 * queue name; 403 when the queue is not among the token's skills; 503 when Redis does not answer.
 * One round trip per request: EXISTS cg:revoked:<jti> and HGETALL, pipelined (the first answer
 * given counts: a revoked token's 401 wins over the replies). Served through the webhook request
 * machinery (webhook.h: deferred answer, request lifetime), like /metrics. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "gw.h"
#include "agentauth.h"
#include "desk_schema.h"
#include "webhook.h"

#include "../common/log.h"
#include "../common/util.h"

#define CANNED_MAX 1000 /* replies read from one hash (the router writes at most 200) */

#define CANNED_JSON "application/json"

/* 1 when q is 1-64 of a-z 0-9 _ - (a queue name as the router accepts it). */
static int canned_queue_ok(const char *q) {
    size_t n = strlen(q);
    if (n == 0 || n >= MSG_CODE_MAX) return 0;
    for (const char *p = q; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* 1 when queue is one of the agent's skills. */
static int canned_skill(const token_claims *who, const char *queue) {
    for (int i = 0; i < who->n_skills; i++)
        if (!strcmp(who->skills[i], queue)) return 1;
    return 0;
}

/* One reply of the answer, for sorting. */
typedef struct canned_item {
    const redisReply *name, *text;
} canned_item;

static int canned_cmp(const void *a, const void *b) {
    const canned_item *x = a, *y = b;
    size_t n = x->name->len < y->name->len ? x->name->len : y->name->len;
    int c = memcmp(x->name->str, y->name->str, n);
    if (c) return c;
    return (x->name->len > y->name->len) - (x->name->len < y->name->len);
}

/* The JSON answer for queue from an HGETALL reply (name, text, name, text …), replies sorted by
 * name; fields that are not valid UTF-8 strings are left out. Malloc'd text, or NULL when out of
 * memory. */
static char *canned_json(const char *queue, const redisReply *r) {
    size_t n = r->elements / 2;
    if (n > CANNED_MAX) n = CANNED_MAX;
    canned_item *items = n ? calloc(n, sizeof(*items)) : NULL;
    if (n && !items) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *f = r->element[2 * i], *v = r->element[2 * i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        items[k].name = f;
        items[k].text = v;
        k++;
    }
    if (k > 1) qsort(items, k, sizeof(*items), canned_cmp);
    json_t *root = json_object(), *replies = json_array();
    char *out = NULL;
    if (!root || !replies || json_object_set_new(root, "queue", json_string(queue)) ||
        json_object_set(root, "replies", replies))
        goto done;
    for (size_t i = 0; i < k; i++) {
        json_t *item = json_object();
        if (!item) goto done;
        /* a field that is not UTF-8 (json_stringn refuses it) leaves the reply out */
        if (json_object_set_new(item, "name",
                                json_stringn(items[i].name->str, items[i].name->len)) ||
            json_object_set_new(item, "text",
                                json_stringn(items[i].text->str, items[i].text->len))) {
            json_decref(item);
            continue;
        }
        if (json_array_append_new(replies, item)) goto done;
    }
    out = json_dumps(root, JSON_COMPACT);
done:
    json_decref(replies);
    json_decref(root);
    free(items);
    return out;
}

/* The EXISTS cg:revoked:<jti> reply, just before HGETALL's: a revoked token gets 401. */
static void canned_revoked(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    if (!r || r->type != REDIS_REPLY_INTEGER)
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, CANNED_JSON,
                   "{\"error\":\"unavailable\"}\n");
    else if (r->integer) {
        log_info("canned: refused: token revoked");
        wh_respond(q, HTTP_STATUS_UNAUTHORIZED, CANNED_JSON, "{\"error\":\"unauthorized\"}\n");
    }
    wh_release(q, 0);
}

/* The HGETALL reply: answer 200 with the replies, or 503. */
static void canned_reply(rconn *rc, redisReply *r, void *priv) {
    (void)rc;
    wh_req *q = priv;
    const char *queue = q->priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, CANNED_JSON,
                   "{\"error\":\"unavailable\"}\n");
        wh_release(q, 1);
        return;
    }
    char *body = canned_json(queue, r);
    if (body)
        wh_respond(q, HTTP_STATUS_OK, CANNED_JSON, body);
    else
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, CANNED_JSON, "{\"error\":\"nomem\"}\n");
    free(body);
    wh_release(q, 0);
}

static int canned_enabled(void) {
    return 1;
}

/* GET: check the token, the queue name and the agent's skills, then read the hash. */
static void canned_get(wh_req *q) {
    token_claims who;
    if (agentauth_verify(q, "canned", &who) != 0) {
        wh_respond(q, HTTP_STATUS_UNAUTHORIZED, CANNED_JSON, "{\"error\":\"unauthorized\"}\n");
        return;
    }
    char queue[MSG_CODE_MAX];
    if (!wh_arg(q, "queue", queue, sizeof(queue)) || !canned_queue_ok(queue)) {
        wh_respond(q, HTTP_STATUS_BAD_REQUEST, CANNED_JSON, "{\"error\":\"bad_queue\"}\n");
        return;
    }
    if (!canned_skill(&who, queue)) {
        wh_respond(q, HTTP_STATUS_FORBIDDEN, CANNED_JSON, "{\"error\":\"forbidden\"}\n");
        return;
    }
    q->priv = strdup(queue);
    q->priv_free = free;
    if (!q->priv) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, CANNED_JSON, "{\"error\":\"nomem\"}\n");
        return;
    }
    if (!rconn_is_up(G.redis)) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, CANNED_JSON,
                   "{\"error\":\"unavailable\"}\n");
        return;
    }
    wh_hold(q);
    if (rconn_cmd(G.redis, canned_revoked, q, "EXISTS " CG_KEY_REVOKED, who.jti) < 0) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, CANNED_JSON,
                   "{\"error\":\"unavailable\"}\n");
        wh_release(q, 1);
        return;
    }
    wh_hold(q);
    if (rconn_cmd(G.redis, canned_reply, q, "HGETALL " CG_KEY_CANNED, queue) < 0) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, CANNED_JSON,
                   "{\"error\":\"unavailable\"}\n");
        wh_release(q, 1);
    }
}

static void canned_post(wh_req *q) {
    wh_respond(q, HTTP_STATUS_METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
}

const wh_hook hook_canned = {"/canned", 1, 0, canned_enabled, canned_get, canned_post, NULL, 0};
