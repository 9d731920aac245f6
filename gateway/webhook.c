/* webhook.c -- HTTP plumbing of the /channels/... endpoints (see webhook.h).
 *
 * LWS_CALLBACK_HTTP picks the hook by exact path and decides what the headers alone can, before
 * any body byte is read, answering at once and closing the connection unread: unknown path or
 * disabled channel (404), method (405), Content-Length over the channel's cap (413), the hook's
 * header check (secret tokens, query signatures, timestamps: 403), and for hooks whose body
 * alone authenticates (Meta's HMAC) the budget of unauthenticated bytes in flight across all
 * connections (webhook_unauth_budget: the announced length, or the cap when chunked, at least
 * WH_UNAUTH_MIN, is reserved until the body is in; 503 with Retry-After when it is spent). The body
 * is then collected from HTTP_BODY up to the cap (also when it arrives chunked, which lws 4.1
 * passes on undecoded: decoded here, counted as it comes, 413 at the cap), within
 * webhook_deadline_ms of the headers: a deadline that trickled bytes do not reset answers 408
 * and closes (one FIFO, one timer). Refusals are logged at most WH_LOG_PER_S a second. At
 * HTTP_BODY_COMPLETION (or the last chunk) the hook verifies, parses and stores; the answer is
 * written from HTTP_WRITEABLE once everything it waits for is in. */
#include "gw.h"
#include "webhook.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/log.h"
#include "../common/util.h"

#define WH_PREFIX "/channels"
#define WH_CH_LINE_MAX 4096   /* bytes of one chunk-size or trailer line */
#define WH_STATUS_TIMEOUT 408 /* libwebsockets 4.1 names no 408 */
#define WH_KILL_GRACE_S 2     /* after the 408: the answer's time to go out */
#define WH_BODY_START 1024    /* first allocation of a body buffer */
/* What an unauthenticated request costs the budget at least: its connection's own memory (lws's
 * header table and connection, our request), whatever small body it announces. */
#define WH_UNAUTH_MIN 16384

#define WH_LOG_PER_S 20 /* refusal log lines a second */

/* Body bytes reserved by requests whose body is being read and not authenticated yet. */
static size_t wh_unauth_used;

/* Requests reading their body, oldest first. They all have the same webhook_deadline_ms, so the
 * FIFO is in deadline order: adding and removing are O(1), and one lws timer set for the head's
 * deadline serves them all (lws 4.1 keeps its timers in a sorted list, where one timer per
 * request would cost O(n) per insertion). */
static wh_req *wh_dl_head, *wh_dl_tail;
static lws_sorted_usec_list_t wh_dl_sul;
static int wh_dl_armed; /* wh_dl_sul is scheduled */

static unsigned long long wh_mono_ms(void) {
    return uv_hrtime() / 1000000ULL;
}

int wh_log_ok(void) {
    static unsigned long long second;
    static unsigned n;
    static unsigned long skipped;
    unsigned long long now = wh_mono_ms() / 1000;
    if (now != second) {
        if (skipped)
            log_warn("webhook: %lu refusals not logged (over %d a second)", skipped, WH_LOG_PER_S);
        second = now;
        n = 0;
        skipped = 0;
    }
    if (n < WH_LOG_PER_S) {
        n++;
        return 1;
    }
    skipped++;
    return 0;
}

static void wh_dl_fire(lws_sorted_usec_list_t *sul);

/* Schedule the timer for the head's deadline unless it is already scheduled (it then fires at
 * or before the head's deadline, and schedules itself again). */
static void wh_dl_arm(void) {
    if (!wh_dl_head || wh_dl_armed) return;
    unsigned long long now = wh_mono_ms(), due = wh_dl_head->dl_due_ms;
    lws_sul_schedule(G.lws, 0, &wh_dl_sul, wh_dl_fire,
                     (lws_usec_t)(due > now ? due - now : 0) * LWS_US_PER_MS);
    wh_dl_armed = 1;
}

static void wh_dl_add(wh_req *q) {
    q->dl_due_ms = wh_mono_ms() + (unsigned long long)G.cfg.webhook_deadline_ms;
    q->dl_next = NULL;
    q->dl_prev = wh_dl_tail;
    if (wh_dl_tail)
        wh_dl_tail->dl_next = q;
    else
        wh_dl_head = q;
    wh_dl_tail = q;
    wh_dl_arm();
}

static void wh_dl_remove(wh_req *q) {
    if (!q->dl_due_ms) return;
    if (q->dl_prev)
        q->dl_prev->dl_next = q->dl_next;
    else
        wh_dl_head = q->dl_next;
    if (q->dl_next)
        q->dl_next->dl_prev = q->dl_prev;
    else
        wh_dl_tail = q->dl_prev;
    q->dl_prev = q->dl_next = NULL;
    q->dl_due_ms = 0;
}

static const wh_hook *const wh_hooks[] = {&hook_wechat,    &hook_telegram, &hook_whatsapp,
                                          &hook_messenger, &hook_email,    &hook_metrics,
                                          &hook_canned,    &hook_desk,     &hook_customer};

typedef enum wh_method { WH_GET, WH_POST, WH_OTHER } wh_method;

/* The request's path and method; -1 when lws has no URI for it. */
static int wh_uri(struct lws *wsi, char *uri, size_t n, wh_method *method) {
    static const struct {
        enum lws_token_indexes tok;
        wh_method m;
    } toks[] = {{WSI_TOKEN_GET_URI, WH_GET},      {WSI_TOKEN_POST_URI, WH_POST},
                {WSI_TOKEN_PUT_URI, WH_OTHER},    {WSI_TOKEN_PATCH_URI, WH_OTHER},
                {WSI_TOKEN_DELETE_URI, WH_OTHER}, {WSI_TOKEN_OPTIONS_URI, WH_OTHER},
                {WSI_TOKEN_HEAD_URI, WH_OTHER}};
    for (size_t i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        if (lws_hdr_total_length(wsi, toks[i].tok) <= 0) continue;
        if (lws_hdr_copy(wsi, uri, (int)n, toks[i].tok) <= 0) return -1;
        *method = toks[i].m;
        return 0;
    }
    return -1;
}

int wh_is_webhook(struct lws *wsi) {
    char uri[256];
    wh_method m;
    if (wh_uri(wsi, uri, sizeof(uri), &m) < 0) return 0;
    size_t k = strlen(WH_PREFIX);
    if (!strncmp(uri, WH_PREFIX, k) && (uri[k] == '/' || uri[k] == '\0')) return 1;
    return !strcmp(uri, hook_metrics.path) || !strcmp(uri, hook_canned.path) ||
           !strcmp(uri, hook_desk.path) || !strcmp(uri, hook_customer.path);
}

static const wh_hook *wh_find(const char *uri) {
    size_t n = strlen(uri);
    if (n > 1 && uri[n - 1] == '/') n--;
    for (size_t i = 0; i < sizeof(wh_hooks) / sizeof(wh_hooks[0]); i++) {
        const char *p = wh_hooks[i]->path;
        if (strlen(p) == n && !memcmp(p, uri, n)) return wh_hooks[i];
    }
    return NULL;
}

/* ---- lifetime ---- */

wh_req *wh_ref(wh_req *q) {
    q->refs++;
    return q;
}

/* The request stops reading its body: its reservation goes back to the budget and its
 * deadline is off. Idempotent. */
static void wh_stop_reading(wh_req *q) {
    wh_unauth_used -= q->unauth;
    q->unauth = 0;
    wh_dl_remove(q);
}

void wh_unref(wh_req *q) {
    if (!q || --q->refs) return;
    wh_stop_reading(q);
    if (q->priv && q->priv_free) q->priv_free(q->priv);
    free(q->body);
    free(q->resp);
    free(q);
}

void wh_detach(wh_req **slot) {
    wh_req *q = *slot;
    if (!q) return;
    *slot = NULL;
    q->wsi = NULL;
    wh_stop_reading(q);
    wh_unref(q);
}

/* ---- answers ---- */

void wh_respond(wh_req *q, int status, const char *ctype, const char *text) {
    if (q->responded) return;
    q->responded = 1;
    wh_stop_reading(q);
    q->status = status;
    q->ctype = ctype;
    q->resp_len = strlen(text);
    q->resp = malloc(LWS_PRE + q->resp_len + 1);
    if (!q->resp) {
        q->close = 1; /* nothing to say: the writeable callback closes */
        q->resp_len = 0;
    } else
        memcpy(q->resp + LWS_PRE, text, q->resp_len + 1);
    q->stage = 1;
    if (q->wsi) lws_callback_on_writable(q->wsi);
}

/* Copy s into out (size n) keeping printable ASCII only: parser messages may quote the body. */
static void wh_printable(char *out, size_t n, const char *s) {
    size_t o = 0;
    for (; *s && o + 1 < n; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = '\0';
}

void wh_respond_err(wh_req *q, const char *what, const cg_err *err) {
    const char *c = err->code;
    if (!strcmp(c, "too_large")) {
        wh_respond(q, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "text/plain", "body too large\n");
        return;
    }
    if (!strcmp(c, "bad_signature") || !strcmp(c, "forbidden") || !strcmp(c, "bad_cipher") ||
        !strcmp(c, "bad_appid")) {
        wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain", "forbidden\n");
        return;
    }
    if (!strcmp(c, "stale") || !strcmp(c, "encryption_required") || !strcmp(c, "no_key")) {
        char reason[sizeof(err->msg)], text[sizeof(err->msg) + 16];
        wh_printable(reason, sizeof(reason), err->msg);
        snprintf(text, sizeof(text), "forbidden: %s\n", reason);
        wh_respond(q, HTTP_STATUS_FORBIDDEN, "text/plain", text);
        return;
    }
    if (!strcmp(c, "nomem")) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain", "out of memory\n");
        return;
    }
    char reason[sizeof(err->msg)], text[sizeof(err->msg) + 64];
    wh_printable(reason, sizeof(reason), err->msg);
    snprintf(text, sizeof(text), "%s: %s\n", what, reason);
    wh_respond(q, HTTP_STATUS_BAD_REQUEST, "text/plain", text);
}

static void wh_answer(wh_req *q) {
    if (q->failed) {
        wh_respond(q, HTTP_STATUS_SERVICE_UNAVAILABLE, "text/plain",
                   "storage unavailable; retry later\n");
        return;
    }
    wh_respond(q, q->ok_status ? q->ok_status : HTTP_STATUS_OK,
               q->ok_type ? q->ok_type : "text/plain", q->ok_body ? q->ok_body : "ok\n");
}

void wh_hold(wh_req *q) {
    wh_ref(q);
    q->pending++;
}

void wh_release(wh_req *q, int failed) {
    if (failed) q->failed = 1;
    if (--q->pending == 0 && q->sealed) wh_answer(q);
    wh_unref(q);
}

void wh_finish(wh_req *q) {
    q->sealed = 1;
    if (q->pending == 0) wh_answer(q);
}

/* ---- request data ---- */

/* Not lws_get_urlarg_by_name(): in lws 4.1 it stops at the first argument longer than the
 * caller's buffer, so a long signature would hide the arguments after it. */
const char *wh_arg(wh_req *q, const char *name, char *buf, size_t n) {
    if (!q->wsi) return NULL;
    size_t nl = strlen(name);
    char frag[1024];
    for (int i = 0; i < 64; i++) {
        int len = lws_hdr_fragment_length(q->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (len <= 0) return NULL;
        if ((size_t)len <= nl || (size_t)len >= sizeof(frag)) continue;
        if (lws_hdr_copy_fragment(q->wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
            continue;
        if (strncmp(frag, name, nl) || frag[nl] != '=') continue;
        if (cg_strlcpy(buf, frag + nl + 1, n) >= n) return NULL;
        return buf;
    }
    return NULL;
}

const char *wh_header(wh_req *q, const char *name, char *buf, size_t n) {
    if (!q->wsi) return NULL;
    int nl = (int)strlen(name);
    int len = lws_hdr_custom_length(q->wsi, name, nl);
    if (len < 0 || (size_t)len >= n) return NULL;
    if (lws_hdr_custom_copy(q->wsi, buf, (int)n, name, nl) < 0) return NULL;
    return buf;
}

const char *wh_header_tok(wh_req *q, enum lws_token_indexes tok, char *buf, size_t n) {
    if (!q->wsi) return NULL;
    int len = lws_hdr_total_length(q->wsi, tok);
    if (len <= 0 || (size_t)len >= n) return NULL;
    if (lws_hdr_copy(q->wsi, buf, (int)n, tok) < 0) return NULL;
    return buf;
}

/* ---- lws callbacks ---- */

/* Whether a body follows the headers (1), and its announced length (-1: chunked); -1 for a
 * Content-Length that is not a number or a transfer coding other than chunked. */
static int wh_has_body(struct lws *wsi, long long *announced, int *chunked) {
    char v[64];
    *announced = -1;
    *chunked = 0;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        if (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0 ||
            strcasecmp(v, "chunked"))
            return -1;
        *chunked = 1; /* lws 4.1 hands the chunked body over undecoded: webhook.c decodes it */
        return 1;
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        if (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
            cg_parse_ll(v, 0, (long long)1 << 62, announced) < 0)
            return -1;
        return *announced > 0;
    }
    return 0;
}

/* Answer at the headers, before the body: the body (announced: has_body) is never read, so
 * the connection closes after the answer. */
static int wh_refuse(wh_req *q, int has_body, int status, const char *text) {
    if (has_body) q->close = 1;
    wh_respond(q, status, "text/plain", text);
    return 0;
}

/* Reserve want bytes of webhook_unauth_budget for q's body; -1 (503 answered) when they are not
 * there. */
static int wh_reserve(wh_req *q, size_t want) {
    size_t budget = (size_t)G.cfg.webhook_unauth_budget;
    if (want > budget || wh_unauth_used > budget - want) {
        if (wh_log_ok())
            log_warn("webhook %s: 503: unauthenticated body budget spent (%zu of %lld bytes in "
                     "flight, %zu asked)",
                     q->hook->path, wh_unauth_used, G.cfg.webhook_unauth_budget, want);
        q->retry_after = (int)((G.cfg.webhook_deadline_ms + 999) / 1000);
        wh_refuse(q, 1, HTTP_STATUS_SERVICE_UNAVAILABLE,
                  "busy: too many unauthenticated request bodies in flight; retry later\n");
        return -1;
    }
    wh_unauth_used += want;
    q->unauth = want;
    return 0;
}

/* The request's body is not in by its deadline: 408, and the connection is closed once that is
 * written, at the latest WH_KILL_GRACE_S later. */
static void wh_deadline(wh_req *q) {
    if (wh_log_ok())
        log_info("webhook %s: 408: body not complete %lld ms after the headers (%zu bytes in)",
                 q->hook ? q->hook->path : "-", G.cfg.webhook_deadline_ms, q->len);
    q->close = 1;
    wh_respond(q, WH_STATUS_TIMEOUT, "text/plain",
               "request timeout: the body did not arrive within the deadline\n");
    lws_set_timeout(q->wsi, PENDING_TIMEOUT_USER_OK, WH_KILL_GRACE_S);
}

/* The timer: every request at the head of the FIFO whose deadline has come. */
static void wh_dl_fire(lws_sorted_usec_list_t *sul) {
    wh_dl_armed = 0;
    unsigned long long now = wh_mono_ms();
    while (wh_dl_head && wh_dl_head->dl_due_ms <= now) {
        wh_req *q = wh_dl_head;
        wh_dl_remove(q);
        if (q->wsi) wh_deadline(q);
    }
    wh_dl_arm();
}

/* The channel's body cap. */
static size_t wh_max_body(const wh_hook *h) {
    return (size_t)(h && h->max_body ? h->max_body() : G.cfg.webhook_max_body);
}

int wh_http(struct lws *wsi, wh_req **slot) {
    wh_detach(slot);
    wh_req *q = calloc(1, sizeof(*q));
    if (!q) return -1;
    q->wsi = wsi;
    q->refs = 1;
    *slot = q;
    char uri[256] = "";
    wh_method method = WH_OTHER;
    wh_uri(wsi, uri, sizeof(uri), &method);
    const wh_hook *h = wh_find(uri);
    q->hook = h;
    q->max = wh_max_body(h);
    long long announced;
    int body = wh_has_body(wsi, &announced, &q->chunked);
    if (body < 0) return wh_refuse(q, 1, HTTP_STATUS_BAD_REQUEST, "bad Content-Length or coding\n");
    if (!h || !h->enabled()) return wh_refuse(q, body, HTTP_STATUS_NOT_FOUND, "not found\n");
    if (method == WH_GET && h->allow_get) {
        h->get(q);
        return 0;
    }
    if (method != WH_POST) {
        q->allow = h->allow_get ? "GET, POST" : "POST";
        return wh_refuse(q, body, HTTP_STATUS_METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    if (announced > (long long)q->max) {
        if (wh_log_ok())
            log_info("webhook %s: 413: Content-Length %lld over the channel's cap of %zu bytes",
                     uri, announced, q->max);
        return wh_refuse(q, 1, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "body too large\n");
    }
    if (h->headers && h->headers(q) < 0) {
        if (body) q->close = 1; /* answered unread */
        return 0;
    }
    if (!body) return wh_body_done(wsi, q); /* nothing more will come */
    if (q->chunked) q->close = 1;           /* lws cannot tell where the body ends: no keep-alive */
    size_t want = q->chunked ? q->max : (size_t)announced;
    if (h->body_auth && wh_reserve(q, want > WH_UNAUTH_MIN ? want : WH_UNAUTH_MIN) < 0) return 0;
    wh_dl_add(q);
    return 0;
}

/* Add n body bytes. Over the cap: 413, connection closed, the rest ignored. Returns -1 on
 * allocation failure. */
static int wh_append(wh_req *q, const char *p, size_t n) {
    if (n > q->max - q->len) {
        q->over_limit = 1;
        q->close = 1;
        if (wh_log_ok())
            log_info("webhook %s: 413: body over the channel's cap of %zu bytes",
                     q->hook ? q->hook->path : "-", q->max);
        wh_respond(q, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "text/plain", "body too large\n");
        return 0;
    }
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : WH_BODY_START;
        while (cap < q->len + n + 1)
            cap *= 2;
        char *b = realloc(q->body, cap);
        if (!b) return -1;
        q->body = b;
        q->cap = cap;
    }
    memcpy(q->body + q->len, p, n);
    q->len += n;
    return 0;
}

static int wh_bad_chunk(wh_req *q) {
    wh_respond(q, HTTP_STATUS_BAD_REQUEST, "text/plain", "bad chunked encoding\n");
    return 0;
}

/* Transfer-Encoding: chunked (RFC 9112 7.1), one byte at a time through the framing and whole
 * runs of data: size line (hex, extensions ignored) CRLF, data CRLF, ..., 0 CRLF, trailers, CRLF.
 * A bare LF is accepted where CRLF is due. At the last chunk the body is complete. */
/* The size line ended: data follows, or the trailers after the last chunk. */
static void wh_chunk_size_end(wh_req *q) {
    q->ch_digits = 0;
    q->ch_line = 0;
    q->ch_state = q->ch_left ? WH_CH_DATA : WH_CH_TRAILER;
    if (q->ch_left > q->max) q->ch_left = q->max + 1; /* wh_append refuses it */
}

/* One framing byte (everything but chunk data). 0, or wh_bad_chunk's answer. */
static int wh_chunk_byte(struct lws *wsi, wh_req *q, char c) {
    if (++q->ch_line > WH_CH_LINE_MAX) return wh_bad_chunk(q);
    switch (q->ch_state) {
    case WH_CH_SIZE:
        if (isxdigit((unsigned char)c)) {
            if (++q->ch_digits > 8) return wh_bad_chunk(q);
            int v = isdigit((unsigned char)c) ? c - '0' : tolower((unsigned char)c) - 'a' + 10;
            q->ch_left = q->ch_left * 16 + (unsigned)v;
            return 0;
        }
        if (!q->ch_digits) return wh_bad_chunk(q);
        if (c == ';' || c == ' ' || c == '\t')
            q->ch_state = WH_CH_EXT;
        else if (c == '\r')
            q->ch_state = WH_CH_SIZE_LF;
        else if (c == '\n')
            wh_chunk_size_end(q);
        else
            return wh_bad_chunk(q);
        return 0;
    case WH_CH_EXT:
        if (c == '\n') wh_chunk_size_end(q);
        return 0;
    case WH_CH_SIZE_LF:
        if (c != '\n') return wh_bad_chunk(q);
        wh_chunk_size_end(q);
        return 0;
    case WH_CH_DATA_END:
        if (c == '\r') return 0;
        if (c != '\n') return wh_bad_chunk(q);
        q->ch_state = WH_CH_SIZE;
        q->ch_line = 0;
        return 0;
    case WH_CH_TRAILER:
        if (c == '\r') return 0;
        if (c != '\n') {
            q->ch_digits = 1; /* this line is a trailer field: skipped */
            return 0;
        }
        if (q->ch_digits) {
            q->ch_digits = 0;
            q->ch_line = 0;
            return 0;
        }
        q->ch_state = WH_CH_DONE;
        return wh_body_done(wsi, q);
    default:
        return wh_bad_chunk(q);
    }
}

/* Transfer-Encoding: chunked (RFC 9112 7.1): size line (hex, extensions ignored) CRLF, data
 * CRLF, ..., 0 CRLF, trailer fields, CRLF. A bare LF is accepted where CRLF is due; a framing
 * line is at most WH_CH_LINE_MAX bytes. At the last chunk the body is complete. */
static int wh_dechunk(struct lws *wsi, wh_req *q, const char *p, size_t n) {
    while (n && !q->responded && !q->over_limit && q->ch_state != WH_CH_DONE) {
        if (q->ch_state != WH_CH_DATA) {
            if (wh_chunk_byte(wsi, q, *p++) < 0) return -1;
            n--;
            continue;
        }
        size_t k = n < q->ch_left ? n : (size_t)q->ch_left;
        if (wh_append(q, p, k) < 0) return -1;
        p += k, n -= k;
        q->ch_left -= k;
        if (!q->ch_left) q->ch_state = WH_CH_DATA_END;
    }
    return 0;
}

int wh_body(struct lws *wsi, wh_req *q, const void *in, size_t len) {
    if (q->responded || q->over_limit || q->body_done) return 0;
    if (q->chunked) return wh_dechunk(wsi, q, in, len);
    return wh_append(q, in, len);
}

int wh_body_done(struct lws *wsi, wh_req *q) {
    if (q->responded || q->body_done) return 0;
    if (q->chunked && q->ch_state != WH_CH_DONE) return wh_bad_chunk(q); /* cut short */
    q->body_done = 1;
    wh_stop_reading(q); /* authenticated or refused by the hook from here on */
    if (!q->body) {
        q->body = malloc(1);
        if (!q->body) return -1;
        q->cap = 1;
    }
    q->body[q->len] = '\0';
    q->hook->post(q);
    return 0;
}

/* Headers in one writeable callback, the body in the next; then close or complete the
 * transaction (keep-alive). */
int wh_writeable(struct lws *wsi, wh_req **slot) {
    wh_req *q = *slot;
    if (!q || !q->stage) return 0;
    if (q->stage == 1) {
        if (!q->resp) return -1;
        unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                                           *end = buf + sizeof(buf) - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)q->status, q->ctype,
                                        (lws_filepos_t)q->resp_len, &p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                         (const unsigned char *)"no-store", 8, &p, end))
            return -1;
        if (q->allow && lws_add_http_header_by_name(
                            wsi, (const unsigned char *)"allow:", (const unsigned char *)q->allow,
                            (int)strlen(q->allow), &p, end))
            return -1;
        char ra[16];
        int ral = snprintf(ra, sizeof(ra), "%d", q->retry_after);
        if (q->retry_after > 0 &&
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_RETRY_AFTER, (const unsigned char *)ra,
                                         ral, &p, end))
            return -1;
        if (q->close && lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                                     (const unsigned char *)"close", 5, &p, end))
            return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
        q->stage = 2;
        lws_callback_on_writable(wsi);
        return 0;
    }
    int n = lws_write(wsi, (unsigned char *)q->resp + LWS_PRE, q->resp_len, LWS_WRITE_HTTP_FINAL);
    q->stage = 0;
    int close = q->close;
    wh_detach(slot); /* the request is answered; Redis replies may still hold it */
    if (n < 0 || close) return -1;
    if (lws_http_transaction_completed(wsi)) return -1;
    return 0;
}
