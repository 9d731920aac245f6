/* hook_email.c -- /channels/email: raw RFC 5322 messages from a mail bridge or an MTA pipe.
 *
 * Authorization: Bearer <email_token> (constant time), checked at the headers: 403 before any
 * body byte is read. The body is the raw message (email_max_body). Automatic mail (auto-replies,
 * bounces, bulk) is answered 202 and never stored as a customer message: answering it would loop.
 * Threading: the conversation token of the subject ([#cg-<conv>]) or plus-address, else a
 * Message-ID in In-Reply-To / References that maps to a conversation (cg:mailid:<message-id>, set
 * for every mail stored here and by whoever sends the desk's replies), else the sender's current
 * conversation. A conversation that is not the sender's is never written to: the mail then goes to
 * the sender's own conversation. The mail is stored as a customer message of "email:<address>" with
 * cmid "em:<Message-ID>", and its Message-ID is mapped to the conversation it went to. */
#include "gw.h"
#include "desk_schema.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../channels/email.h"
#include "../common/log.h"
#include "../common/util.h"

#define EMAIL_MAP_TTL_S (90LL * 86400) /* how long a Message-ID keeps threading */
#define EMAIL_MAP_PREFIX CG_KEY_MAILID_PREFIX
#define HTTP_ACCEPTED 202 /* libwebsockets 4.1 names no 202 */

/* A mail waiting for its thread lookup. */
typedef struct email_job {
    msg m;
    email_info info;
    char cust[MSG_ID_MAX];
    char cmid[MSG_ID_MAX];
} email_job;

static void email_job_free(void *p) {
    email_job *j = p;
    msg_free(&j->m);
    free(j);
}

static int email_enabled(void) {
    return G.cfg.email_token[0] != '\0';
}

static long long email_max_body(void) {
    return G.cfg.email_max_body;
}

/* At the headers: the bearer token, before the body is read. */
static int email_headers(wh_req *q) {
    char auth[400];
    const char *a = wh_header_tok(q, WSI_TOKEN_HTTP_AUTHORIZATION, auth, sizeof(auth));
    if (a && !strncmp(a, "Bearer ", 7) &&
        cg_ct_equal(a + 7, strlen(a + 7), G.cfg.email_token, strlen(G.cfg.email_token)))
        return 0;
    if (wh_log_ok()) log_info("webhook /channels/email: 403: %s bearer token", a ? "bad" : "no");
    wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain",
               a ? "forbidden: bad bearer token\n" : "forbidden: no bearer token\n");
    return -1;
}

/* Store the mail in conv ("" = the sender's current conversation). */
static void email_store(wh_req *q, email_job *j, const char *conv) {
    char key[sizeof(EMAIL_MAP_PREFIX) + MSG_META_MAX];
    whs_opts o = {conv, 1, NULL, EMAIL_MAP_TTL_S, 0};
    if (j->info.message_id[0]) {
        snprintf(key, sizeof(key), CG_KEY_MAILID, j->info.message_id);
        o.map_key = key;
    }
    whs_store(q, &j->m, j->cust, j->cmid, &o);
}

/* MGET of the Message-IDs the mail answers: the first one known names the conversation. */
static void email_thread_reply(rconn *rc, redisReply *r, void *priv) {
    wh_req *q = priv;
    email_job *j = q->priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        wh_release(q, 1);
        return;
    }
    const char *conv = "";
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len > 0 && e->len < MSG_ID_MAX) {
            conv = e->str;
            log_debug("webhook /channels/email: threaded by Message-ID into conv %s", conv);
            break;
        }
    }
    email_store(q, j, conv);
    wh_release(q, 0);
}

/* Look up In-Reply-To, then References from the newest, in one MGET. */
static void email_thread_lookup(wh_req *q, email_job *j) {
    const email_info *in = &j->info;
    char keys[1 + EMAIL_REFS_MAX][sizeof(EMAIL_MAP_PREFIX) + MSG_META_MAX];
    const char *argv[2 + EMAIL_REFS_MAX];
    int argc = 0;
    argv[argc++] = "MGET";
    if (in->in_reply_to[0]) {
        snprintf(keys[0], sizeof(keys[0]), CG_KEY_MAILID, in->in_reply_to);
        argv[argc++] = keys[0];
    }
    for (size_t i = in->n_references; i > 0; i--) {
        snprintf(keys[argc], sizeof(keys[0]), CG_KEY_MAILID, in->references[i - 1]);
        argv[argc] = keys[argc];
        argc++;
    }
    if (argc == 1) {
        email_store(q, j, "");
        return;
    }
    wh_hold(q);
    if (rconn_cmdargv(G.redis, email_thread_reply, q, argc, argv, NULL) < 0) wh_release(q, 1);
}

/* The body of an authenticated request. */
static void email_post(wh_req *q) {
    email_job *j = calloc(1, sizeof(*j));
    if (!j) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain", "out of memory\n");
        return;
    }
    msg_init(&j->m);
    cg_err err;
    if (email_parse(q->body, q->len, &j->m, &j->info, &err) < 0) {
        free(j);
        wh_respond_err(q, "malformed e-mail", &err);
        return;
    }
    q->priv = j;
    q->priv_free = email_job_free;
    char masked[MSG_META_MAX];
    if (j->info.is_auto) {
        log_info("webhook /channels/email: automatic mail from %s not stored",
                 log_mask(j->info.from_addr, masked, sizeof(masked)));
        wh_respond(q, HTTP_ACCEPTED, "text/plain", "ignored: automatic mail\n");
        return;
    }
    whs_customer_id("email:", j->m.sender_id, j->cust);
    whs_cmid("em:", j->m.meta.platform_msg_id, j->cmid);
    if (j->info.conv_token[0]) {
        log_debug("webhook /channels/email: threaded by token into conv %s", j->info.conv_token);
        email_store(q, j, j->info.conv_token);
    } else
        email_thread_lookup(q, j);
    wh_finish(q);
}

const wh_hook hook_email = {"/channels/email", 0, email_max_body, email_enabled, NULL, email_post,
                            email_headers,     0};
