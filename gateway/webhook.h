/* webhook.h -- inbound webhooks of the social platforms and the e-mail endpoint (/channels/...).
 *
 *   webhook.c        HTTP plumbing: routing, what the headers decide (method, per-channel size
 *                    cap, the hook's header check, the unauthenticated-body budget), body
 *                    collection under a deadline, responses, the request's lifetime (wh_)
 *   webhook_store.c  one platform message -> FCALL cg_message as a customer message, after the
 *                    replay memory cg:seen:<cmid> (whs_)
 *   hook_wechat.c    /channels/wechat                         (hook_wechat)
 *   hook_meta.c      /channels/whatsapp, /channels/messenger  (hook_whatsapp, hook_messenger)
 *   hook_telegram.c  /channels/telegram                       (hook_telegram)
 *   hook_email.c     /channels/email                          (hook_email)
 *
 * A request is refcounted like a client session: one reference for the connection (dropped when
 * lws closes it) and one per pending Redis reply, so a client that goes away while its messages
 * are being stored breaks nothing. The response is decided once (wh_respond) and written from
 * HTTP_WRITEABLE: the headers in one callback, the body in the next. */
#ifndef CG_WEBHOOK_H
#define CG_WEBHOOK_H

#include <stddef.h>

#include <libwebsockets.h>

#include "../common/err.h"
#include "../proto/msg.h"

typedef struct wh_req wh_req;

/* One platform endpoint. */
typedef struct wh_hook {
    const char *path; /* "/channels/wechat" */
    int allow_get;    /* GET answers verification challenges */
    /* The channel's body cap in bytes (its config key); NULL: webhook_max_body. */
    long long (*max_body)(void);
    int (*enabled)(void);
    /* GET: answer from the query arguments (wh_respond). */
    void (*get)(wh_req *q);
    /* POST: the whole body is in q->body (q->len bytes, NUL-terminated): verify, parse, store
     * (whs_store) and/or answer (wh_respond / wh_finish). */
    void (*post)(wh_req *q);
    /* POST, at the headers, before any body byte is read: authenticate what the headers and
     * the query carry (secret tokens, query signatures, timestamps). 0 to read the body, -1
     * when it answered (the connection is closed unread). NULL: nothing to check there. */
    int (*headers)(wh_req *q);
    /* 1: only the body authenticates the request (an HMAC over it): while it is read its
     * announced length counts against webhook_unauth_budget. */
    int body_auth;
} wh_hook;

struct wh_req {
    struct lws *wsi; /* NULL once the connection is gone */
    unsigned refs;   /* 1 for the connection + 1 per pending Redis reply */
    const wh_hook *hook;
    char *body; /* collected request body, NUL-terminated */
    size_t len, cap, max;
    size_t unauth; /* bytes reserved from webhook_unauth_budget while the body is read */
    /* the body deadline: a member of webhook.c's FIFO of requests reading their body */
    struct wh_req *dl_prev, *dl_next;
    unsigned long long dl_due_ms; /* monotonic; 0: not in the FIFO */
    int responded;                /* a response is set */
    int over_limit;               /* body cut at max: answer 413 and close */
    int close;                    /* close the connection after the response */
    int body_done;                /* the hook has the body */
    /* Transfer-Encoding: chunked decoding */
    int chunked;
    enum {
        WH_CH_SIZE = 0,
        WH_CH_EXT,
        WH_CH_SIZE_LF,
        WH_CH_DATA,
        WH_CH_DATA_END,
        WH_CH_TRAILER,
        WH_CH_DONE
    } ch_state;
    unsigned long long ch_left; /* size being read, then data bytes left in the chunk */
    unsigned ch_digits;         /* hex digits of the size; in trailers: the line is not empty */
    unsigned ch_line;           /* bytes of the current framing line */
    /* the response */
    int status;
    const char *ctype;
    const char *allow; /* Allow header for 405 */
    int retry_after;   /* > 0: Retry-After header (seconds) */
    char *resp;
    size_t resp_len;
    int stage; /* 0 nothing to write, 1 headers next, 2 body next */
    /* messages being stored */
    unsigned pending; /* FCALLs not answered yet */
    int failed;       /* a store failed: 503 */
    int sealed;       /* wh_finish called: answer when pending reaches 0 */
    unsigned stored, dups;
    const char *ok_type; /* response once every message is stored */
    const char *ok_body;
    int ok_status;
    void *priv; /* per-hook state (e-mail threading), freed with priv_free */
    void (*priv_free)(void *);
};

/* ---- webhook.c ---- */

/* 1 when the request on wsi is for a path under /channels. */
int wh_is_webhook(struct lws *wsi);
/* LWS_CALLBACK_HTTP under /channels: starts a request in *slot (the connection's pss field).
 * Returns what the lws callback should return. */
int wh_http(struct lws *wsi, wh_req **slot);
/* LWS_CALLBACK_HTTP_BODY / HTTP_BODY_COMPLETION / HTTP_WRITEABLE for the request in *slot. */
int wh_body(struct lws *wsi, wh_req *q, const void *in, size_t len);
int wh_body_done(struct lws *wsi, wh_req *q);
int wh_writeable(struct lws *wsi, wh_req **slot);
/* The connection is gone (or the protocol unbound): drop the connection's reference. */
void wh_detach(wh_req **slot);

wh_req *wh_ref(wh_req *q);
void wh_unref(wh_req *q);
/* Set the response (text is copied) and ask for a writeable callback. Only the first call
 * counts. */
void wh_respond(wh_req *q, int status, const char *ctype, const char *text);
/* 1 when a refusal may be logged now: at most a few lines a second over all webhooks, so that an
 * attack cannot flood the log; the first line after a gap says how many were left out. */
int wh_log_ok(void);
/* Answer a parser/verifier error: 413 too_large, 403 signatures and secrets ("forbidden"), 403
 * "forbidden: <reason>" for stale timestamps and refused modes (stale, encryption_required,
 * no_key), 503 nomem, else 400 with "<what>: <reason>" (what: "malformed JSON", ...). */
void wh_respond_err(wh_req *q, const char *what, const cg_err *err);
/* The URL query argument name (without '=', URL-decoded by lws) into buf (size n); NULL when
 * absent or longer than fits. */
const char *wh_arg(wh_req *q, const char *name, char *buf, size_t n);
/* A request header the way lws keeps it: a known one by token, any other by its lower-case name
 * with the colon ("x-hub-signature-256:"). NULL when absent or longer than n-1 bytes. */
const char *wh_header(wh_req *q, const char *name, char *buf, size_t n);
const char *wh_header_tok(wh_req *q, enum lws_token_indexes tok, char *buf, size_t n);
/* Asynchronous work for the request starts / ends (a reference and q->pending). When the last
 * one ends after wh_finish, the request is answered. */
void wh_hold(wh_req *q);
void wh_release(wh_req *q, int failed);
/* No more work will be added: answer once every held step has ended (ok_status / ok_body, or
 * 503 when one failed). */
void wh_finish(wh_req *q);

/* ---- webhook_store.c ---- */

/* Customer id for a platform user: "<prefix><user>" when it fits MSG_ID_MAX-1 bytes, else
 * "<prefix>h:" + 32 hex of SHA-256(user). */
void whs_customer_id(const char *prefix, const char *user, char out[MSG_ID_MAX]);
/* Client message id from a platform message id, the same way ("wx:", "tg:" ...); never starts with
 * "cg:" as prefixes are fixed. */
void whs_cmid(const char *prefix, const char *platform_id, char out[MSG_ID_MAX]);

/* How to store one message. */
typedef struct whs_opts {
    const char *conv;    /* conversation to write to; "" = the customer's current one */
    int conv_fallback;   /* conv is not the customer's (NOTYOURS): store with "" instead */
    const char *map_key; /* NULL, or a key set to the conversation once stored (e-mail
                            Message-ID -> conv), with TTL map_ttl_s */
    long long map_ttl_s;
    /* > 0: replay memory. The cmid is claimed first (cg:seen:<cmid>, SET NX, this TTL in
     * seconds) and the message stored only when it is new, whatever became of the conversation
     * it went to: a known one ends as dup, one being stored by another request as failed (retry
     * later); a failed store gives the claim up. */
    long long replay_ttl_s;
} whs_opts;

/* The end of whs_append: failed (nothing known to be stored: retry), else the conversation, the
 * seq and dup (1: a retry of something stored). */
typedef void whs_done_fn(void *priv, int failed, const char *conv, long long seq, int dup);

/* Stamp m as a message of customer cust (role customer, dir in; its channel already set) with
 * client message id cmid, validate it (ORIGIN_INTERNAL) and store it with FCALL cg_message (see
 * whs_store), with the reply attributes taken from m (chat_id, chat_name; e-mail: subject,
 * mail_root, mail_last). done(priv, ...) is called exactly once, later, unless -1 is returned:
 * err "unavailable" (Redis down) or "nomem", or a validation code (the message can never be
 * stored). hook names the caller in log lines. o may be NULL. */
int whs_append(msg *m, const char *cust, const char *cmid, const whs_opts *o, const char *hook,
               whs_done_fn *done, void *priv, cg_err *err);

/* Stamp m as a message of customer cust (role customer, dir in; its channel already set) with
 * client message id cmid, and store it: FCALL cg_message with conv, cmid, role customer, sender
 * cust, the payload, newconv, channel, now, mode log, preview and attrs. The request waits for the
 * reply (q->pending); when the last one is in, wh_finish answers (503 if any failed). o may be
 * NULL. Returns 0, or -1 when it could not be sent (q->failed is set; call wh_finish when done). */
int whs_store(wh_req *q, msg *m, const char *cust, const char *cmid, const whs_opts *o);

/* ---- hooks ---- */
extern const wh_hook hook_wechat, hook_telegram, hook_whatsapp, hook_messenger, hook_email;
/* GET /metrics (metrics.c): served by the same request machinery. */
extern const wh_hook hook_metrics;
/* GET /canned (canned.c): a queue's canned replies for agents, the same way. */
extern const wh_hook hook_canned;
extern const wh_hook hook_desk;     /* desk.c: GET /desk */
extern const wh_hook hook_customer; /* custinfo.c: GET /customer */

#endif
