/* rblock.c -- see rblock.h.
 *
 * For rediss:// each context has a relay record: a libuv loop of its own, an rtls on it (created
 * here, before the thread starts, so its socket path is known and its configuration errors are
 * reported synchronously), the thread running that loop, and an async handle that stops it. The
 * records are kept in a list to find them again from the context in rblock_free. The tools call
 * rblock_* from their main thread only, so the list needs no lock; the relay thread touches only
 * its own loop, and rtls_last_error is safe across threads. */
#include "rblock.h"

#include <stdlib.h>
#include <sys/time.h>
#include <uv.h>

#include "rconn.h"
#include "rtls.h"

typedef struct rb_relay {
    struct rb_relay *next;
    redisContext *c;
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    rtls *t;
} rb_relay;

static rb_relay *rb_relays;

/* On the relay's thread: close everything, so that its uv_run returns. */
static void rb_on_stop(uv_async_t *a) {
    rb_relay *r = a->data;
    rtls_free(r->t);
    r->t = NULL;
    uv_close((uv_handle_t *)a, NULL);
}

static void rb_run(void *arg) {
    rb_relay *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
}

/* Stop a relay whose thread runs (or, with running 0, never ran) and free it. */
static void rb_relay_free(rb_relay *r, int running) {
    if (running) {
        uv_async_send(&r->stop);
        uv_thread_join(&r->thread);
    } else {
        rb_on_stop(&r->stop);
        uv_run(&r->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&r->loop);
    free(r);
}

/* A running relay to u's host and port; NULL with err. */
static rb_relay *rb_relay_start(const rconn_url *u, cg_err *err) {
    rb_relay *r = calloc(1, sizeof(*r));
    if (!r || uv_loop_init(&r->loop) != 0) {
        free(r);
        cg_err_set(err, "internal", "out of memory");
        return NULL;
    }
    uv_async_init(&r->loop, &r->stop, rb_on_stop);
    r->stop.data = r;
    r->t = rtls_new(&r->loop, u->host, u->port, "tls", 0, err);
    if (!r->t) {
        rb_relay_free(r, 0);
        return NULL;
    }
    if (uv_thread_create(&r->thread, rb_run, r) != 0) {
        cg_err_set(err, "internal", "redis TLS: cannot start the relay thread");
        rb_relay_free(r, 0);
        return NULL;
    }
    return r;
}

/* The reply r to one handshake command (freed here). 0 when Redis accepted it; else -1 with err
 * naming the command and Redis' reason, or the relay's reason when the TLS link failed. */
static int rb_step(redisContext *c, rb_relay *rel, const char *what, redisReply *r, cg_err *err) {
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok) {
        char tls[256] = "";
        if (!r && rel) rtls_last_error(rel->t, tls, sizeof(tls));
        if (tls[0])
            cg_err_set(err, "unavailable", "%s", tls);
        else if (r)
            cg_err_set(err, "unavailable", "Redis refused %s: %s", what, r->str ? r->str : "");
        else
            cg_err_set(err, "unavailable", "cannot connect to Redis: %s",
                       c->errstr[0] ? c->errstr : "no reply");
    }
    if (r) freeReplyObject(r);
    return ok ? 0 : -1;
}

static redisContext *rb_open(const rconn_url *u, const char *unix_path, int timeout_ms) {
    if (timeout_ms <= 0)
        return unix_path ? redisConnectUnix(unix_path) : redisConnect(u->host, u->port);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = unix_path ? redisConnectUnixWithTimeout(unix_path, tv)
                                : redisConnectWithTimeout(u->host, u->port, tv);
    if (c && !c->err) redisSetTimeout(c, tv);
    return c;
}

redisContext *rblock_connect(const char *url, int timeout_ms, cg_err *err) {
    rconn_url u;
    if (rconn_url_parse(url, &u, err) != 0) return NULL;
    rb_relay *rel = u.tls ? rb_relay_start(&u, err) : NULL;
    if (u.tls && !rel) return NULL;
    const char *path = rel ? rtls_path(rel->t) : u.unix_path[0] ? u.unix_path : NULL;
    redisContext *c = rb_open(&u, path, timeout_ms);
    if (!c || c->err) {
        cg_err_set(err, "unavailable", "cannot connect to Redis: %s",
                   c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        if (rel) rb_relay_free(rel, 1);
        return NULL;
    }
    int rv = 0;
    if (u.user[0])
        rv = rb_step(c, rel, "AUTH", redisCommand(c, "AUTH %s %s", u.user, u.password), err);
    else if (u.password[0])
        rv = rb_step(c, rel, "AUTH", redisCommand(c, "AUTH %s", u.password), err);
    if (rv == 0 && u.db) rv = rb_step(c, rel, "SELECT", redisCommand(c, "SELECT %d", u.db), err);
    if (rv == 0 && !u.password[0]) rv = rb_step(c, rel, "PING", redisCommand(c, "PING"), err);
    if (rv != 0) {
        redisFree(c);
        if (rel) rb_relay_free(rel, 1);
        return NULL;
    }
    if (rel) {
        rel->c = c;
        rel->next = rb_relays;
        rb_relays = rel;
    }
    return c;
}

void rblock_free(redisContext *c) {
    if (!c) return;
    redisFree(c);
    for (rb_relay **p = &rb_relays; *p; p = &(*p)->next) {
        if ((*p)->c != c) continue;
        rb_relay *r = *p;
        *p = r->next;
        rb_relay_free(r, 1);
        return;
    }
}
