/* rconn.c -- see rconn.h.
 *
 * The context is attached to the loop by rc_uv_attach(), our copy of hiredis' libuv adapter with
 * one fix: libuv reports a socket error (POLLERR, e.g. a refused connect or a reset) as a poll
 * callback with status < 0 and stops the handle; the 0.14 adapter (redisLibuvAttach) ignores that
 * callback, so hiredis never learns that the connect failed or the peer reset and the context
 * hangs forever. Ours hands the error to hiredis as readiness, and hiredis finds the error itself
 * (getsockopt/read), as later hiredis versions do.
 *
 * Ownership and lifetime (hiredis 0.14.1 semantics this file relies on):
 *
 * - rc->ac is the hiredis context, or NULL while there is none (waiting to reconnect). hiredis
 *   frees the context itself after a connect failure (after on_connect(ERR)) and after a
 *   disconnect (after on_disconnect). We free it only with redisAsyncFree() from outside hiredis
 *   callbacks: from the watchdog timer (timeout) or from rconn_free().
 * - Every command carries a heap record (rc_cmd) as hiredis privdata, linked in a FIFO of
 *   outstanding commands. hiredis calls each command callback exactly once, with the reply or with
 *   NULL when the context is torn down; rc_on_reply unlinks and frees the record there.
 * - Every subscribed channel has one record (rc_sub) that lives as long as hiredis keeps the
 *   channel's callback: it is freed after the final unsubscribe confirmation or after the NULL call
 *   hiredis makes when the context goes away.
 * - rc->in_cb counts our frames on the stack below a hiredis (or state) callback. rconn_free()
 *   called while it is non-zero only marks the connection closing and finishes from a zero-delay
 *   timer, so neither hiredis nor this file touches freed memory on the way back up.
 * - The rconn itself is freed in the close callback of its last uv timer: after rconn_free() the
 *   loop must run (loop_close_all does) for the memory to be released. */
#include "rconn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "rtls.h"
#include "util.h"

#define RC_BACKOFF_MIN_MS 100
#define RC_BACKOFF_MAX_MS 1000 /* back within 1 s of Redis (docs: Loading and health) */
#define RC_WATCHDOG_MS 250

typedef struct rc_cmd {
    struct rc_cmd *prev, *next;
    rconn *rc;
    rconn_reply_fn *cb;
    void *priv;
    uint64_t issued_at; /* uv_now() when queued */
} rc_cmd;

typedef struct rc_sub {
    struct rc_sub *prev, *next;
    rconn *rc;
    rconn_reply_fn *cb;
    void *priv;
    int pending; /* SUBSCRIBEs sent and not confirmed (mirrors hiredis' pending_subs) */
    int want;    /* 1 after SUBSCRIBE, 0 after UNSUBSCRIBE was sent */
    size_t len;
    char channel[];
} rc_sub;

struct rconn {
    uv_loop_t *loop;
    char name[64];
    rconn_url url;
    unsigned timeout_ms;
    rconn_state_fn *state_cb;
    void *priv;

    rtls *tls;             /* rediss://: the TLS relay hiredis connects through; else NULL */
    redisAsyncContext *ac; /* NULL while disconnected */
    int connected;         /* TCP/unix connection established (hiredis on_connect OK) */
    int up;                /* AUTH/SELECT done: user commands accepted */
    int reported;          /* last state given to state_cb: -1 none yet, 0 down, 1 up */
    int handshake;         /* AUTH/SELECT replies still expected */
    int handshake_failed;
    int started, closing;
    int in_cb;
    uint64_t connect_at;
    unsigned backoff_ms;

    uv_timer_t retry;    /* reconnect backoff; after rconn_free, the deferred free */
    uv_timer_t watchdog; /* command / connect timeout, when timeout_ms > 0 */
    int open_handles;

    rc_cmd *head, *tail; /* outstanding commands, oldest first */
    rc_sub *subs;
    unsigned long long sent;
    unsigned long long writes; /* flushes that wrote (rconn_writes) */
    unsigned batch_ms;         /* rconn_set_batch */
    unsigned in_flight;        /* commands sent and not answered (the head..tail list) */
    unsigned drain_low;        /* rconn_on_drain: call drain_cb when in_flight falls to this */
    rconn_drain_fn *drain_cb;
    void *drain_priv;
};

static void rc_connect(rconn *rc);

/* ---- URL ---------------------------------------------------------------------------------- */

static int copy_part(char *dst, size_t dn, const char *s, size_t len) {
    if (len >= dn) return -1;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

/* The userinfo "[user]:password" of a redis:// URL (p .. at) into out->user / out->password.
 * A user needs a password (AUTH has no user-only form). Error messages never quote the
 * password. */
static int url_userinfo(const char *p, const char *at, rconn_url *out, cg_err *err) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon)
        return cg_err_set(err, "bad_config",
                          "redis URL: write the credentials as user:password@ or :password@");
    if (copy_part(out->user, sizeof(out->user), p, (size_t)(colon - p)) != 0)
        return cg_err_set(err, "bad_config", "redis URL: user name too long");
    if (colon + 1 == at) return cg_err_set(err, "bad_config", "redis URL: empty password");
    if (copy_part(out->password, sizeof(out->password), colon + 1, (size_t)(at - colon - 1)) != 0)
        return cg_err_set(err, "bad_config", "redis URL: password too long");
    return 0;
}

/* redis[s]://[[user]:password@]host[:port][/db] | unix:/path (also unix:///path). The user ends
 * at the first ':', the password (verbatim, no percent-decoding) at the last '@'; an IPv6 host is
 * written in brackets. rediss:// sets tls (the connection goes through common/rtls.c). */
int rconn_url_parse(const char *url, rconn_url *out, cg_err *err) {
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url) return cg_err_set(err, "bad_config", "redis URL is missing");

    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0) path += 2;
        if (path[0] != '/') return cg_err_set(err, "bad_config", "unix: needs an absolute path");
        if (copy_part(out->unix_path, sizeof(out->unix_path), path, strlen(path)) != 0)
            return cg_err_set(err, "bad_config", "unix socket path too long");
        return 0;
    }
    if (strncmp(url, "rediss://", 9) == 0) out->tls = 1;
    if (!out->tls && strncmp(url, "redis://", 8) != 0)
        return cg_err_set(err, "bad_config",
                          "redis URL must start with redis://, rediss:// or unix:");

    const char *p = url + (out->tls ? 9 : 8);
    const char *at = strrchr(p, '@');
    if (at) {
        if (url_userinfo(p, at, out, err) != 0) return -1;
        p = at + 1;
    }

    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) return cg_err_set(err, "bad_config", "redis URL: missing ']'");
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/");
        p = he;
    }
    if (he == hs) return cg_err_set(err, "bad_config", "redis URL: missing host");
    if (copy_part(out->host, sizeof(out->host), hs, (size_t)(he - hs)) != 0)
        return cg_err_set(err, "bad_config", "redis URL: host too long");

    char num[16];
    long long v;
    if (*p == ':') {
        size_t n = strcspn(p + 1, "/");
        if (copy_part(num, sizeof(num), p + 1, n) != 0 || cg_parse_ll(num, 1, 65535, &v) != 0)
            return cg_err_set(err, "bad_config", "redis URL: bad port");
        out->port = (int)v;
        p += 1 + n;
    }
    if (*p == '/') {
        p++;
        if (*p) {
            if (copy_part(num, sizeof(num), p, strlen(p)) != 0 ||
                cg_parse_ll(num, 0, 1000000, &v) != 0)
                return cg_err_set(err, "bad_config", "redis URL: bad database number");
            out->db = (int)v;
        }
        return 0;
    }
    if (*p) return cg_err_set(err, "bad_config", "redis URL: unexpected text after the host");
    return 0;
}

/* ---- libuv adapter ------------------------------------------------------------------------ */

/* Owned by the hiredis context (ac->ev.data); freed in the close callback of its last handle
 * after hiredis calls rc_uv_cleanup from its free path.
 *
 * Writes are deferred to the end of the loop turn: hiredis asks for write readiness with every
 * command it queues; once connected, we do not poll for it but flush from a prepare handle, which
 * runs after this turn's callbacks and before the loop blocks, so the commands of one turn leave
 * in one write() and a socket that takes them all costs no POLLOUT round. Only a write that did
 * not go out whole arms POLLOUT. The poll handle is restarted only when what it waits for changes
 * (uv_poll_start removes the fd from epoll and adds it again: two syscalls).
 *
 * With a batch window (rconn_set_batch) a flush comes at most once per window: a command queued
 * sooner after the last flush waits on the timer for the rest of the window, and what was queued
 * meanwhile leaves in the same write (fewer wake-ups of Redis and of this process under load; a
 * command after a quiet spell still leaves at the end of its turn). */
typedef struct rc_uv {
    redisAsyncContext *ac; /* NULL once hiredis has released us */
    uv_poll_t poll;
    uv_prepare_t flush;
    uv_timer_t batch;    /* the rest of the batch window */
    unsigned batch_ms;   /* 0: flush every turn */
    uint64_t flushed_at; /* uv_now() of the last flush */
    int events;          /* what hiredis wants (UV_READABLE / UV_WRITABLE) */
    int armed;           /* what the poll handle waits for */
    int deferred;        /* a write waits for the flush */
    int blind;           /* and it carries a command without a callback (rc_uv_no_wait) */
    int open;            /* handles not closed yet */
} rc_uv;

static void rc_uv_on_poll(uv_poll_t *h, int status, int events);

/* Point the poll handle at what hiredis wants, less a write that waits for the flush. */
static void rc_uv_update(rc_uv *p) {
    int want = p->events & ~(p->deferred ? UV_WRITABLE : 0);
    if (want == p->armed) return;
    p->armed = want;
    if (want)
        uv_poll_start(&p->poll, want, rc_uv_on_poll);
    else
        uv_poll_stop(&p->poll);
}

/* hiredis writes what it has queued; counted for rconn_writes. */
static void rc_uv_write(rc_uv *p) {
    ((rconn *)p->ac->data)->writes++;
    redisAsyncHandleWrite(p->ac);
}

static void rc_uv_on_poll(uv_poll_t *h, int status, int events) {
    rc_uv *p = h->data;
    int ev = status < 0 ? p->armed : events; /* on error let hiredis find out */
    if (status < 0) p->armed = 0;            /* libuv stopped the handle */
    if (p->ac && (ev & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE)) rc_uv_write(p);
    if (status < 0 && p->ac) rc_uv_update(p);
}

/* Write what was queued since the last flush; what did not go out waits for POLLOUT. */
static void rc_uv_flush_now(rc_uv *p) {
    uv_prepare_stop(&p->flush);
    uv_timer_stop(&p->batch);
    p->deferred = p->blind = 0;
    p->flushed_at = uv_now(p->poll.loop);
    if (p->ac && (p->events & UV_WRITABLE)) rc_uv_write(p);
    if (p->ac) rc_uv_update(p);
}

static void rc_uv_on_flush(uv_prepare_t *h) {
    rc_uv_flush_now(h->data);
}

static void rc_uv_on_batch(uv_timer_t *h) {
    rc_uv_flush_now(h->data);
}

unsigned rconn_batch_wait(uint64_t now, uint64_t flushed_at, unsigned batch_ms) {
    uint64_t since = now - flushed_at;
    return since >= batch_ms ? 0 : (unsigned)(batch_ms - since);
}

/* A fire-and-forget command was queued: what the caller does next (a frame, an HTTP answer) may
 * depend on it, so the batch leaves at the end of this turn, not at the end of the window. */
static void rc_uv_no_wait(rc_uv *p) {
    if (!p || !p->deferred) return;
    p->blind = 1;
    if (!uv_is_active((uv_handle_t *)&p->batch)) return;
    uv_timer_stop(&p->batch);
    uv_prepare_start(&p->flush, rc_uv_on_flush);
}

/* A write is wanted: flush at the end of this turn, or when the batch window ends. */
static void rc_uv_defer(rc_uv *p) {
    p->deferred = 1;
    unsigned wait = rconn_batch_wait(uv_now(p->poll.loop), p->flushed_at, p->batch_ms);
    if (wait == 0)
        uv_prepare_start(&p->flush, rc_uv_on_flush);
    else
        uv_timer_start(&p->batch, rc_uv_on_batch, wait, 0);
}

void rconn_flush_blind(rconn *rc) {
    rc_uv *p = rc && rc->ac ? rc->ac->ev.data : NULL;
    if (p && p->deferred && p->blind) rc_uv_flush_now(p);
}

static void rc_uv_add_read(void *d) {
    rc_uv *p = d;
    p->events |= UV_READABLE;
    rc_uv_update(p);
}

static void rc_uv_del_read(void *d) {
    rc_uv *p = d;
    p->events &= ~UV_READABLE;
    rc_uv_update(p);
}

/* Before the connection is up hiredis learns of the connect from write readiness: poll for it. */
static void rc_uv_add_write(void *d) {
    rc_uv *p = d;
    p->events |= UV_WRITABLE;
    if (p->ac && (p->ac->c.flags & REDIS_CONNECTED) && !p->deferred && !(p->armed & UV_WRITABLE))
        rc_uv_defer(p);
    rc_uv_update(p);
}

static void rc_uv_del_write(void *d) {
    rc_uv *p = d;
    p->events &= ~UV_WRITABLE;
    if (p->deferred) {
        uv_prepare_stop(&p->flush);
        uv_timer_stop(&p->batch);
    }
    p->deferred = p->blind = 0;
    rc_uv_update(p);
}

static void rc_uv_on_closed(uv_handle_t *h) {
    rc_uv *p = h->data;
    if (--p->open == 0) free(p);
}

/* Called by hiredis while it frees the context; hiredis closes the fd right after, which is
 * fine once the poll handle is closing (it stops polling at once). */
static void rc_uv_cleanup(void *d) {
    rc_uv *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, rc_uv_on_closed);
    uv_close((uv_handle_t *)&p->flush, rc_uv_on_closed);
    uv_close((uv_handle_t *)&p->batch, rc_uv_on_closed);
}

static int rc_uv_attach(redisAsyncContext *ac, uv_loop_t *loop, unsigned batch_ms) {
    if (ac->ev.data) return REDIS_ERR;
    rc_uv *p = calloc(1, sizeof(*p));
    if (!p) return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &p->flush);
    uv_timer_init(loop, &p->batch);
    p->open = 3;
    p->ac = ac;
    p->batch_ms = batch_ms;
    p->poll.data = p;
    p->flush.data = p;
    p->batch.data = p;
    ac->ev.data = p;
    ac->ev.addRead = rc_uv_add_read;
    ac->ev.delRead = rc_uv_del_read;
    ac->ev.addWrite = rc_uv_add_write;
    ac->ev.delWrite = rc_uv_del_write;
    ac->ev.cleanup = rc_uv_cleanup;
    return REDIS_OK;
}

/* ---- state -------------------------------------------------------------------------------- */

static const char *rc_where(const rconn *rc, char *buf, size_t n) {
    if (rc->url.unix_path[0])
        snprintf(buf, n, "%s", rc->url.unix_path);
    else
        snprintf(buf, n, "%s:%d%s", rc->url.host, rc->url.port, rc->tls ? " (TLS)" : "");
    return buf;
}

/* Tell state_cb about a change of state, once per transition (the first failure after
 * rconn_start counts as one). Not after rconn_free. */
static void rc_report(rconn *rc, int up) {
    if (rc->reported == up) return;
    rc->reported = up;
    if (rc->closing || !rc->state_cb) return;
    rc->in_cb++;
    rc->state_cb(rc, up, rc->priv);
    rc->in_cb--;
}

static void rc_on_retry(uv_timer_t *t) {
    rc_connect(t->data);
}

/* The context is gone (hiredis freed it or is about to): forget it, report down, and schedule
 * the next attempt with the current backoff, which then doubles up to the maximum. */
static void rc_gone(rconn *rc) {
    rc->ac = NULL;
    rc->connected = 0;
    rc->up = 0;
    rc->handshake = 0;
    rc->handshake_failed = 0;
    rc_report(rc, 0);
    if (rc->closing) return;
    log_debug("redis %s: reconnecting in %u ms", rc->name, rc->backoff_ms);
    uv_timer_start(&rc->retry, rc_on_retry, rc->backoff_ms, 0);
    rc->backoff_ms *= 2;
    if (rc->backoff_ms > RC_BACKOFF_MAX_MS) rc->backoff_ms = RC_BACKOFF_MAX_MS;
}

static void rc_set_up(rconn *rc) {
    char where[300];
    rc->up = 1;
    rc->backoff_ms = RC_BACKOFF_MIN_MS;
    log_info("redis %s: ready (%s)", rc->name, rc_where(rc, where, sizeof(where)));
    rc_report(rc, 1);
}

/* Drop the connection from outside hiredis callbacks (timers only): pending callbacks get NULL,
 * then on_disconnect runs for a connected context; for one still connecting hiredis calls no
 * callback, so rc_gone is called here. */
static void rc_drop(rconn *rc, const char *why) {
    redisAsyncContext *ac = rc->ac;
    if (!ac) return;
    int connected = (ac->c.flags & REDIS_CONNECTED) != 0;
    log_warn("redis %s: %s, dropping the connection", rc->name, why);
    rc->up = 0;
    redisAsyncFree(ac);
    if (!connected) rc_gone(rc);
}

static void rc_on_drop_later(uv_timer_t *t) {
    rc_drop(t->data, "handshake could not be sent");
}

/* For a context that cannot be dropped where we are (inside on_connect, where hiredis still
 * uses it after we return): drop it from a zero-delay timer instead. */
static void rc_drop_later(rconn *rc) {
    uv_timer_start(&rc->retry, rc_on_drop_later, 0, 0);
}

/* ---- command records ---------------------------------------------------------------------- */

static void rc_unlink(rconn *rc, rc_cmd *c) {
    if (c->prev)
        c->prev->next = c->next;
    else
        rc->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        rc->tail = c->prev;
    c->prev = c->next = NULL;
    rc->in_flight--;
}

/* hiredis callback of every command: exactly once per record. After rconn_free the user gets
 * NULL even when a reply came. */
static void rc_on_reply(redisAsyncContext *ac, void *r, void *privdata) {
    rc_cmd *c = privdata;
    rconn *rc = c->rc;
    (void)ac;
    rc_unlink(rc, c);
    if (!r) rc->up = 0; /* NULL only comes while hiredis tears the context down */
    rc->in_cb++;
    if (c->cb) c->cb(rc, rc->closing ? NULL : r, c->priv);
    if (rc->drain_cb && rc->in_flight <= rc->drain_low) rc->drain_cb(rc, rc->drain_priv);
    rc->in_cb--;
    free(c);
}

/* Returns a record for a command about to be sent; the caller passes it to hiredis and then
 * calls rc_queued() with hiredis' status. NULL on OOM. */
static rc_cmd *rc_cmd_new(rconn *rc, rconn_reply_fn *cb, void *priv) {
    rc_cmd *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->rc = rc;
    c->cb = cb;
    c->priv = priv;
    c->issued_at = uv_now(rc->loop);
    return c;
}

/* Takes ownership of c: links it when hiredis accepted the command, frees it otherwise. */
static int rc_queued(rconn *rc, rc_cmd *c, int status) {
    if (status != REDIS_OK) {
        free(c);
        return -1;
    }
    c->prev = rc->tail;
    if (rc->tail)
        rc->tail->next = c;
    else
        rc->head = c;
    rc->tail = c;
    rc->sent++;
    rc->in_flight++;
    if (!c->cb) rc_uv_no_wait(rc->ac->ev.data);
    return 0;
}

/* Commands that change hiredis' reply bookkeeping (they would get several replies or none for
 * one callback) go through rconn_subscribe / rconn_unsubscribe only. */
static int rc_forbidden(const char *name, size_t len) {
    static const char *const bad[] = {"subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
                                      "punsubscribe", "sunsubscribe", "monitor"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (strlen(bad[i]) == len && strncasecmp(name, bad[i], len) == 0) return 1;
    return 0;
}

/* Name of the command in a RESP-formatted request "*N\r\n$L\r\nNAME\r\n...". */
static int rc_formatted_forbidden(const char *cmd, size_t len) {
    const char *d = memchr(cmd, '$', len);
    if (!d) return 1;
    char *end;
    long n = strtol(d + 1, &end, 10);
    if (n < 0 || end + 2 > cmd + len || end[0] != '\r') return 1;
    const char *name = end + 2;
    if (name + n > cmd + len) return 1;
    return rc_forbidden(name, (size_t)n);
}

static int rc_can_send(const rconn *rc) {
    if (!rc || !rc->up || rc->closing || !rc->ac) return 0;
    /* A subscribed hiredis 0.14 context mismatches other replies: subscriptions only. */
    if (rc->ac->c.flags & REDIS_SUBSCRIBED) return 0;
    return 1;
}

/* Send one preformatted command, bypassing the "up" check (used for AUTH/SELECT too). */
static int rc_send_formatted(rconn *rc, rconn_reply_fn *cb, void *priv, const char *cmd,
                             size_t len) {
    if (!rc->ac || rc_formatted_forbidden(cmd, len)) return -1;
    rc_cmd *c = rc_cmd_new(rc, cb, priv);
    if (!c) return -1;
    return rc_queued(rc, c, redisAsyncFormattedCommand(rc->ac, rc_on_reply, c, cmd, len));
}

int rconn_cmd(rconn *rc, rconn_reply_fn *cb, void *priv, const char *fmt, ...) {
    if (!rc_can_send(rc)) return -1;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) return -1;
    int rv = rc_send_formatted(rc, cb, priv, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rv;
}

int rconn_cmdargv(rconn *rc, rconn_reply_fn *cb, void *priv, int argc, const char **argv,
                  const size_t *argvlen) {
    if (!rc_can_send(rc) || argc < 1) return -1;
    size_t len0 = argvlen ? argvlen[0] : strlen(argv[0]);
    if (rc_forbidden(argv[0], len0)) return -1;
    rc_cmd *c = rc_cmd_new(rc, cb, priv);
    if (!c) return -1;
    return rc_queued(rc, c, redisAsyncCommandArgv(rc->ac, rc_on_reply, c, argc, argv, argvlen));
}

/* ---- subscriptions ------------------------------------------------------------------------ */

static rc_sub *rc_sub_find(rconn *rc, const char *channel, size_t len) {
    for (rc_sub *s = rc->subs; s; s = s->next)
        if (s->len == len && memcmp(s->channel, channel, len) == 0) return s;
    return NULL;
}

static void rc_sub_free(rconn *rc, rc_sub *s) {
    if (s->prev)
        s->prev->next = s->next;
    else
        rc->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
}

/* 1 when reply is the array [kind, <s's channel>, ...]. */
static int rc_sub_is(const redisReply *r, const char *kind, const rc_sub *s) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) return 0;
    const redisReply *k = r->element[0], *ch = r->element[1];
    if (k->type != REDIS_REPLY_STRING || strcasecmp(k->str, kind) != 0) return 0;
    return ch->type == REDIS_REPLY_STRING && ch->len == s->len &&
           memcmp(ch->str, s->channel, s->len) == 0;
}

/* hiredis callback of a channel: confirmations, messages, and NULL once when the context goes.
 * Replies that do not name this channel are ignored (hiredis 0.14 can hand a stale callback a
 * reply it could not match). The record is freed after the NULL call or after the unsubscribe
 * confirmation that makes hiredis forget the channel. */
static void rc_on_sub(redisAsyncContext *ac, void *r, void *privdata) {
    rc_sub *s = privdata;
    rconn *rc = s->rc;
    redisReply *reply = r;
    (void)ac;

    if (!reply) {
        rc->up = 0;
        if (s->cb) {
            rc->in_cb++;
            s->cb(rc, NULL, s->priv);
            rc->in_cb--;
        }
        rc_sub_free(rc, s);
        return;
    }

    int unsub = rc_sub_is(reply, "unsubscribe", s);
    if (rc_sub_is(reply, "subscribe", s)) {
        s->pending--;
    } else if (!unsub && !rc_sub_is(reply, "message", s)) {
        if (reply->type == REDIS_REPLY_ERROR)
            log_warn("redis %s: subscription error: %s", rc->name, reply->str);
        return;
    }
    if (s->cb && !rc->closing) {
        rc->in_cb++;
        s->cb(rc, reply, s->priv);
        rc->in_cb--;
    }
    if (unsub && s->pending == 0) rc_sub_free(rc, s);
}

int rconn_subscribe(rconn *rc, rconn_reply_fn *cb, void *priv, const char *channel) {
    if (!rc || !rc->up || rc->closing || !rc->ac) return -1;
    size_t len = strlen(channel);
    rc_sub *s = rc_sub_find(rc, channel, len);
    int fresh = !s;
    if (fresh) {
        s = calloc(1, sizeof(*s) + len + 1);
        if (!s) return -1;
        s->rc = rc;
        s->len = len;
        memcpy(s->channel, channel, len + 1);
    }
    if (redisAsyncCommand(rc->ac, rc_on_sub, s, "SUBSCRIBE %b", channel, len) != REDIS_OK) {
        if (fresh) free(s);
        return -1;
    }
    if (fresh) {
        s->next = rc->subs;
        if (rc->subs) rc->subs->prev = s;
        rc->subs = s;
    }
    s->cb = cb;
    s->priv = priv;
    s->pending++;
    s->want = 1;
    rc->sent++;
    return 0;
}

/* Only a channel subscribed (and not already being unsubscribed) on this connection: hiredis
 * 0.14 mishandles confirmations for channels it does not know. */
int rconn_unsubscribe(rconn *rc, const char *channel) {
    if (!rc || !rc->up || rc->closing || !rc->ac) return -1;
    size_t len = strlen(channel);
    rc_sub *s = rc_sub_find(rc, channel, len);
    if (!s || !s->want) return -1;
    if (redisAsyncCommand(rc->ac, NULL, NULL, "UNSUBSCRIBE %b", channel, len) != REDIS_OK)
        return -1;
    s->want = 0;
    rc->sent++;
    return 0;
}

/* ---- connecting --------------------------------------------------------------------------- */

/* AUTH, SELECT and PING replies. An error drops the connection (clean disconnect: the other
 * replies are still awaited), which then reconnects with backoff. The error names the server and
 * what to check; Redis' own text never contains the password. */
static void rc_on_handshake(rconn *rc, redisReply *reply, void *priv) {
    const char *what = priv;
    char where[300];
    if (!reply || !rc->ac) return;
    /* PING only asks whether the server wants a password: another error (LOADING, BUSY ...: the
     * server checks the password first) means it does not, and is the start-up's to wait out */
    int ping_ok = !strcmp(what, "PING") && reply->type == REDIS_REPLY_ERROR && reply->str &&
                  !strstr(reply->str, "AUTH") && !strstr(reply->str, "WRONGPASS");
    if (reply->type == REDIS_REPLY_ERROR && !ping_ok) {
        int auth = strcmp(what, "SELECT") != 0 && reply->str &&
                   (strstr(reply->str, "AUTH") || strstr(reply->str, "WRONGPASS"));
        /* once per failing streak at error level (retries every few seconds follow) */
        if (!rc->handshake_failed)
            log_write(rc->reported != 0 ? LOG_ERROR : LOG_DEBUG, "redis %s: %s to %s failed: %s%s",
                      rc->name, what, rc_where(rc, where, sizeof(where)),
                      reply->str ? reply->str : "",
                      auth ? " (check the user and password in redis_url)" : "");
        rc->handshake_failed = 1;
        redisAsyncDisconnect(rc->ac);
        return;
    }
    if (--rc->handshake == 0 && !rc->handshake_failed) rc_set_up(rc);
}

static int rc_handshake_cmd(rconn *rc, const char *what, const char *fmt, ...) {
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) return -1;
    int rv = rc_send_formatted(rc, rc_on_handshake, (void *)what, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rv == 0) rc->handshake++;
    return rv;
}

static void rc_on_connect(const redisAsyncContext *ac, int status) {
    rconn *rc = ac->data;
    char where[300];
    rc->in_cb++;
    if (status != REDIS_OK) {
        if (rc->reported != 0)
            log_warn("redis %s: cannot connect to %s: %s", rc->name,
                     rc_where(rc, where, sizeof(where)), ac->errstr ? ac->errstr : "?");
        rc_gone(rc); /* hiredis frees the context when we return */
        rc->in_cb--;
        return;
    }
    rc->connected = 1;
    log_debug("redis %s: connected to %s", rc->name, rc_where(rc, where, sizeof(where)));
    int bad = 0;
    if (rc->url.user[0])
        bad = rc_handshake_cmd(rc, "AUTH", "AUTH %s %s", rc->url.user, rc->url.password) != 0;
    else if (rc->url.password[0])
        bad = rc_handshake_cmd(rc, "AUTH", "AUTH %s", rc->url.password) != 0;
    if (!bad && rc->url.db) bad = rc_handshake_cmd(rc, "SELECT", "SELECT %d", rc->url.db) != 0;
    /* Without credentials a server that wants them answers NOAUTH: find out now, not later. */
    if (!bad && !rc->url.password[0]) bad = rc_handshake_cmd(rc, "PING", "PING") != 0;
    if (bad) {
        log_error("redis %s: cannot send AUTH/SELECT/PING", rc->name);
        rc->handshake_failed = 1;
        rc_drop_later(rc);
    } else if (rc->handshake == 0) {
        rc_set_up(rc);
    }
    rc->in_cb--;
}

static void rc_on_disconnect(const redisAsyncContext *ac, int status) {
    rconn *rc = ac->data;
    rc->in_cb++;
    /* Over TLS the relay's local socket always connects: a refused connect or a failed handshake
     * shows here as the relay closing it before the handshake was answered. The relay has logged
     * the real reason (once per streak); this line would only repeat itself every retry. */
    int quiet = rc->tls && rc->reported != 1;
    if (status != REDIS_OK && !rc->closing)
        log_write(quiet ? LOG_DEBUG : LOG_WARN, "redis %s: connection lost: %s", rc->name,
                  ac->errstr ? ac->errstr : "?");
    rc_gone(rc); /* hiredis frees the context when we return */
    rc->in_cb--;
}

/* Start one connection attempt. Failures that hiredis reports at once (e.g. connection refused
 * on loopback) go through rc_gone like the asynchronous ones. */
static void rc_connect(rconn *rc) {
    char where[300];
    if (rc->closing || rc->ac) return;

    redisAsyncContext *ac = rc->tls                ? redisAsyncConnectUnix(rtls_path(rc->tls))
                            : rc->url.unix_path[0] ? redisAsyncConnectUnix(rc->url.unix_path)
                                                   : redisAsyncConnect(rc->url.host, rc->url.port);
    if (!ac || ac->err) {
        if (rc->reported != 0)
            log_warn("redis %s: cannot connect to %s: %s", rc->name,
                     rc_where(rc, where, sizeof(where)), ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        rc_gone(rc);
        return;
    }
    if (!rc->url.unix_path[0] && !rc->tls && redisEnableKeepAlive(&ac->c) != REDIS_OK) {
        log_warn("redis %s: cannot enable TCP keepalive: %s", rc->name, ac->c.errstr);
        ac->c.err = 0; /* not fatal, but hiredis refuses to read while err is set */
        ac->c.errstr[0] = '\0';
    }
    ac->data = rc;
    if (rc_uv_attach(ac, rc->loop, rc->batch_ms) != REDIS_OK) {
        log_error("redis %s: cannot attach to the loop", rc->name);
        redisAsyncFree(ac);
        rc_gone(rc);
        return;
    }
    rc->ac = ac;
    rc->connected = 0;
    rc->connect_at = uv_now(rc->loop);
    redisAsyncSetConnectCallback(ac, rc_on_connect);
    redisAsyncSetDisconnectCallback(ac, rc_on_disconnect);
}

/* Every 250 ms: drop a connect that takes longer than the timeout, or a connection whose oldest
 * outstanding command is older than it. */
static void rc_on_watchdog(uv_timer_t *t) {
    rconn *rc = t->data;
    char why[96];
    if (!rc->ac || rc->closing || rc->timeout_ms == 0) return;
    uint64_t now = uv_now(rc->loop);
    if (!rc->connected) {
        if (now - rc->connect_at <= rc->timeout_ms) return;
        snprintf(why, sizeof(why), "no connection after %u ms", rc->timeout_ms);
        rc_drop(rc, why);
        return;
    }
    if (!rc->head || now - rc->head->issued_at <= rc->timeout_ms) return;
    snprintf(why, sizeof(why), "no reply after %u ms", rc->timeout_ms);
    rc_drop(rc, why);
}

/* ---- lifetime ----------------------------------------------------------------------------- */

rconn *rconn_new(uv_loop_t *loop, const char *url, const char *name, unsigned timeout_ms,
                 rconn_state_fn *state_cb, void *priv, cg_err *err) {
    rconn_url u;
    if (rconn_url_parse(url, &u, err) != 0) return NULL;
    rconn *rc = calloc(1, sizeof(*rc));
    if (!rc) {
        cg_err_set(err, "internal", "out of memory");
        return NULL;
    }
    rc->loop = loop;
    rc->url = u;
    snprintf(rc->name, sizeof(rc->name), "%s", name ? name : "redis");
    if (u.tls && !(rc->tls = rtls_new(loop, u.host, u.port, rc->name, 1, err))) {
        free(rc);
        return NULL;
    }
    rc->timeout_ms = timeout_ms;
    rc->state_cb = state_cb;
    rc->priv = priv;
    rc->reported = -1;
    rc->backoff_ms = RC_BACKOFF_MIN_MS;
    uv_timer_init(loop, &rc->retry);
    uv_timer_init(loop, &rc->watchdog);
    rc->retry.data = rc;
    rc->watchdog.data = rc;
    rc->open_handles = 2;
    return rc;
}

void rconn_start(rconn *rc) {
    if (!rc || rc->started || rc->closing) return;
    rc->started = 1;
    if (rc->timeout_ms > 0)
        uv_timer_start(&rc->watchdog, rc_on_watchdog, RC_WATCHDOG_MS, RC_WATCHDOG_MS);
    rc_connect(rc);
}

int rconn_is_up(const rconn *rc) {
    return rc && rc->up && !rc->closing;
}

unsigned rconn_in_flight(const rconn *rc) {
    return rc ? rc->in_flight : 0;
}

void rconn_on_drain(rconn *rc, unsigned low, rconn_drain_fn *cb, void *priv) {
    rc->drain_low = low;
    rc->drain_cb = cb;
    rc->drain_priv = priv;
}

unsigned long long rconn_commands_sent(const rconn *rc) {
    return rc ? rc->sent : 0;
}

unsigned long long rconn_writes(const rconn *rc) {
    return rc ? rc->writes : 0;
}

void rconn_set_batch(rconn *rc, unsigned ms) {
    rc->batch_ms = ms;
    rc_uv *p = rc->ac ? rc->ac->ev.data : NULL;
    if (p) p->batch_ms = ms;
}

static void rc_on_closed(uv_handle_t *h) {
    rconn *rc = h->data;
    if (--rc->open_handles == 0) free(rc);
}

/* Outside any hiredis callback: free the context (every pending callback gets NULL, every
 * subscription callback gets NULL), then close the timers; the last close frees rc. */
static void rc_finish_free(rconn *rc) {
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;
        redisAsyncFree(ac); /* calls rc_on_disconnect if it was connected */
        rc->ac = NULL;
    }
    rtls_free(rc->tls); /* its handles close with the loop, like the timers below */
    rc->tls = NULL;
    while (rc->head) { /* not expected: hiredis called every record */
        rc_cmd *c = rc->head;
        rc_unlink(rc, c);
        if (c->cb) c->cb(rc, NULL, c->priv);
        free(c);
    }
    while (rc->subs)
        rc_sub_free(rc, rc->subs);
    uv_close((uv_handle_t *)&rc->retry, rc_on_closed);
    uv_close((uv_handle_t *)&rc->watchdog, rc_on_closed);
}

static void rc_on_deferred_free(uv_timer_t *t) {
    rc_finish_free(t->data);
}

/* Safe from any callback of this connection: inside one, the work is deferred to a zero-delay
 * timer (pending callbacks then get NULL from the loop); otherwise they get NULL before this
 * returns. Either way the memory is released only once the loop has run the timers' close
 * callbacks. */
void rconn_free(rconn **rcp) {
    if (!rcp || !*rcp) return;
    rconn *rc = *rcp;
    *rcp = NULL;
    if (rc->closing) return;
    rc->closing = 1;
    rc->up = 0;
    uv_timer_stop(&rc->retry);
    uv_timer_stop(&rc->watchdog);
    if (rc->in_cb > 0) {
        uv_timer_start(&rc->retry, rc_on_deferred_free, 0, 0);
        return;
    }
    rc_finish_free(rc);
}
