/* test_rconn.c -- rconn against a real redis-server on a free port: connect, commands, the
 * server killed (pending callbacks get NULL, one "down"), restarted (reconnect by itself),
 * subscriptions, the command watchdog, rconn_free from inside a callback, clean loop close.
 * Events are awaited by running the loop until a flag is set, under a 10 s guard timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/rconn.h"
#include "testnet.h"

typedef struct fixture {
    pid_t redis_pid;
    int port;
    char url[64];
    uv_loop_t loop;
    uv_timer_t guard;
    int timed_out;
} fixture;

/* ---- redis-server ------------------------------------------------------------------------- */

/* Starts redis-server on f->port and waits (at most 10 s) until it accepts connections. */
static void redis_start(fixture *f) {
    char port[16];
    snprintf(port, sizeof(port), "%d", f->port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    f->redis_pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (port_accepts(f->port)) return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            f->redis_pid = 0;
            fail_msg("redis-server exited at start");
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("redis-server does not accept connections");
}

static void redis_kill(fixture *f) {
    if (f->redis_pid <= 0) return;
    kill(f->redis_pid, SIGKILL);
    waitpid(f->redis_pid, NULL, 0);
    f->redis_pid = 0;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    signal(SIGPIPE, SIG_IGN);
    log_init("test_rconn", LOG_WARN);
    f->port = free_port();
    if (f->port <= 0) return -1;
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d", f->port);
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    *state = f;
    redis_start(f);
    return 0;
}

/* Kills redis-server even when the test failed. The loop is closed only after a passing test
 * (a failed one may have left handles whose owners are gone). */
static int teardown(void **state) {
    fixture *f = *state;
    redis_kill(f);
    free(f);
    return 0;
}

/* ---- waiting ------------------------------------------------------------------------------ */

static void on_guard(uv_timer_t *t) {
    fixture *f = t->data;
    f->timed_out = 1;
}

static int flag_true(const int *flag, int want) {
    return *flag >= want;
}

/* Runs the loop until *counter >= want, failing after 10 s. */
static void run_until(fixture *f, const int *counter, int want, const char *what) {
    f->timed_out = 0;
    uv_timer_start(&f->guard, on_guard, 10000, 0);
    while (!flag_true(counter, want) && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    if (f->timed_out) fail_msg("timed out waiting for %s", what);
}

/* Runs the loop for ms milliseconds (to let retries happen). */
static void run_for(fixture *f, unsigned ms) {
    f->timed_out = 0;
    uv_timer_start(&f->guard, on_guard, ms, 0);
    while (!f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    f->timed_out = 0;
}

/* ---- callbacks ---------------------------------------------------------------------------- */

typedef struct obs {
    int ups, downs;
    int replies, nulls;
    char last[512];
    int last_type;
    int sub_msgs, sub_confirms, sub_nulls;
    char sub_payload[64];
    rconn **self; /* for free-from-callback */
} obs;

static void on_state(rconn *rc, int up, void *priv) {
    obs *o = priv;
    (void)rc;
    if (up)
        o->ups++;
    else
        o->downs++;
}

static void on_reply(rconn *rc, redisReply *r, void *priv) {
    obs *o = priv;
    (void)rc;
    if (!r) {
        o->nulls++;
        return;
    }
    o->replies++;
    o->last_type = r->type;
    snprintf(o->last, sizeof(o->last), "%s", r->str ? r->str : "");
}

static void on_sub(rconn *rc, redisReply *r, void *priv) {
    obs *o = priv;
    (void)rc;
    if (!r) {
        o->sub_nulls++;
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    if (strcmp(r->element[0]->str, "subscribe") == 0) o->sub_confirms++;
    if (strcmp(r->element[0]->str, "message") == 0) {
        o->sub_msgs++;
        snprintf(o->sub_payload, sizeof(o->sub_payload), "%s", r->element[2]->str);
    }
}

static void on_reply_free(rconn *rc, redisReply *r, void *priv) {
    obs *o = priv;
    (void)rc;
    if (r)
        o->replies++;
    else
        o->nulls++;
    rconn_free(o->self);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_url_parse(void **state) {
    (void)state;
    rconn_url u;
    cg_err e;
    assert_int_equal(rconn_url_parse("redis://localhost", &u, &e), 0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.password, "");
    assert_int_equal(rconn_url_parse("redis://:s3cr@t@10.0.0.1:7000/3", &u, &e), 0);
    assert_string_equal(u.host, "10.0.0.1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.password, "s3cr@t");
    assert_int_equal(rconn_url_parse("redis://[::1]:6380/", &u, &e), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(rconn_url_parse("unix:/run/redis.sock", &u, &e), 0);
    assert_string_equal(u.unix_path, "/run/redis.sock");
    assert_int_equal(rconn_url_parse("http://x", &u, &e), -1);
    assert_int_equal(rconn_url_parse("redis://", &u, &e), -1);
    assert_int_equal(rconn_url_parse("redis://h:0", &u, &e), -1);
    assert_int_equal(rconn_url_parse("redis://h:99999", &u, &e), -1);
    assert_int_equal(rconn_url_parse("redis://h:12x", &u, &e), -1);
    assert_int_equal(rconn_url_parse("redis://h/x", &u, &e), -1);
    assert_int_equal(rconn_url_parse("unix:relative", &u, &e), -1);

    /* ACL user + password: AUTH user password */
    assert_int_equal(rconn_url_parse("redis://chatgw:pa:ss@w0rd@10.0.0.2:6380/1", &u, &e), 0);
    assert_string_equal(u.user, "chatgw");
    assert_string_equal(u.password, "pa:ss@w0rd");
    assert_string_equal(u.host, "10.0.0.2");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 1);
    assert_int_equal(rconn_url_parse("redis://:pw@h", &u, &e), 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "pw");
    /* a user without a password, an empty password: refused, and the message has no secret */
    assert_int_equal(rconn_url_parse("redis://user@h", &u, &e), -1);
    assert_string_equal(e.code, "bad_config");
    assert_int_equal(rconn_url_parse("redis://user:@h", &u, &e), -1);
    assert_int_equal(rconn_url_parse("redis://user:topsecret@h:99999", &u, &e), -1);
    assert_null(strstr(e.msg, "topsecret"));
    /* TLS: the same form, with tls set (plain URLs have it 0) */
    assert_int_equal(rconn_url_parse("rediss://user:topsecret@h:6380/2", &u, &e), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "user");
    assert_string_equal(u.password, "topsecret");
    assert_int_equal(rconn_url_parse("redis://h", &u, &e), 0);
    assert_int_equal(u.tls, 0);
    assert_int_equal(rconn_url_parse("rediss://", &u, &e), -1);
    assert_int_equal(rconn_url_parse("redisss://h", &u, &e), -1);
    assert_null(rconn_new(uv_default_loop(), "nope://", "t", 0, NULL, NULL, &e));
    assert_string_equal(e.code, "bad_config");
}

/* The main story: up, SET/GET, subscribe + publish, kill, down once, NULLs, restart, up again by
 * itself, commands work, free, clean loop close. */
static void test_reconnect(void **state) {
    fixture *f = *state;
    obs o = {0}, so = {0};
    cg_err e;
    rconn *rc = rconn_new(&f->loop, f->url, "cmd", 0, on_state, &o, &e);
    rconn *sub = rconn_new(&f->loop, f->url, "sub", 0, on_state, &so, &e);
    assert_non_null(rc);
    assert_non_null(sub);
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "PING"), -1); /* not started */
    rconn_start(rc);
    rconn_start(sub);
    run_until(f, &o.ups, 1, "first connect");
    run_until(f, &so.ups, 1, "first connect (sub)");
    assert_int_equal(o.downs, 0);
    assert_true(rconn_is_up(rc));

    assert_int_equal(rconn_cmd(rc, on_reply, &o, "SET %s %s", "k", "v1"), 0);
    run_until(f, &o.replies, 1, "SET reply");
    assert_int_equal(o.last_type, REDIS_REPLY_STATUS);
    assert_string_equal(o.last, "OK");
    const char *argv[] = {"GET", "k"};
    assert_int_equal(rconn_cmdargv(rc, on_reply, &o, 2, argv, NULL), 0);
    run_until(f, &o.replies, 2, "GET reply");
    assert_string_equal(o.last, "v1");
    assert_true(rconn_commands_sent(rc) >= 2);
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "SUBSCRIBE x"), -1); /* only via subscribe */

    assert_int_equal(rconn_subscribe(sub, on_sub, &so, "chan"), 0);
    run_until(f, &so.sub_confirms, 1, "subscribe confirmation");
    assert_int_equal(rconn_cmd(sub, on_reply, &so, "PING"), -1); /* subscriptions only */
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "PUBLISH chan %s", "hello"), 0);
    run_until(f, &so.sub_msgs, 1, "message");
    assert_string_equal(so.sub_payload, "hello");

    /* A command that stays pending, then the server dies. */
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "BLPOP nothing 0"), 0);
    run_for(f, 50);
    redis_kill(f);
    run_until(f, &o.downs, 1, "down after kill");
    run_until(f, &so.sub_nulls, 1, "subscription NULL");
    assert_int_equal(o.nulls, 1);
    assert_false(rconn_is_up(rc));
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "PING"), -1);
    run_for(f, 700); /* several failed reconnects */
    assert_int_equal(o.downs, 1);
    assert_int_equal(so.downs, 1);
    assert_int_equal(so.sub_nulls, 1);
    assert_int_equal(o.ups, 1);

    redis_start(f);
    run_until(f, &o.ups, 2, "reconnect");
    run_until(f, &so.ups, 2, "reconnect (sub)");
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "SET k %s", "v2"), 0);
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "GET k"), 0);
    int before = o.replies;
    run_until(f, &o.replies, before + 2, "GET after reconnect");
    assert_string_equal(o.last, "v2");
    assert_int_equal(o.nulls, 1);

    /* Unsubscribe after resubscribing: the record goes away with the confirmation. */
    assert_int_equal(rconn_subscribe(sub, on_sub, &so, "chan"), 0);
    run_until(f, &so.sub_confirms, 2, "resubscribe");
    assert_int_equal(rconn_unsubscribe(sub, "chan"), 0);
    assert_int_equal(rconn_unsubscribe(sub, "chan"), -1);
    assert_int_equal(rconn_unsubscribe(sub, "other"), -1);

    /* Free with a command pending: its callback gets NULL before rconn_free returns. */
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "BLPOP nothing 0"), 0);
    rconn_free(&rc);
    assert_null(rc);
    assert_int_equal(o.nulls, 2);
    rconn_free(&sub);
    assert_int_equal(o.downs, 1); /* no state callbacks for a freed connection */
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(loop_close_all(&f->loop), 0);
}

/* A command outstanding longer than timeout_ms drops the connection; it reconnects. */
static void test_watchdog(void **state) {
    fixture *f = *state;
    obs o = {0};
    cg_err e;
    rconn *rc = rconn_new(&f->loop, f->url, "wd", 400, on_state, &o, &e);
    assert_non_null(rc);
    rconn_start(rc);
    run_until(f, &o.ups, 1, "connect");
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "BLPOP nothing 0"), 0);
    run_until(f, &o.nulls, 1, "timeout NULL");
    assert_int_equal(o.downs, 1);
    run_until(f, &o.ups, 2, "reconnect after timeout");
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "PING"), 0);
    run_until(f, &o.replies, 1, "PING");
    assert_string_equal(o.last, "PONG");
    rconn_free(&rc);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(loop_close_all(&f->loop), 0);
}

/* With a batch window, commands queued within it after a write wait and leave together in one
 * write; one queued after a quiet spell, or without a callback, leaves at the end of its loop
 * turn; rconn_flush_blind then writes at once. Loop turns are driven by hand (UV_RUN_NOWAIT), so
 * nothing depends on timing but the window (300 ms) being longer than three turns. */
static void test_batch(void **state) {
    fixture *f = *state;
    obs o = {0};
    cg_err e;
    assert_int_equal(rconn_batch_wait(1000, 0, 2), 0);
    assert_int_equal(rconn_batch_wait(1001, 1000, 2), 1);
    assert_int_equal(rconn_batch_wait(1002, 1000, 2), 0);
    assert_int_equal(rconn_batch_wait(7, 7, 0), 0);

    rconn *rc = rconn_new(&f->loop, f->url, "batch", 0, on_state, &o, &e);
    assert_non_null(rc);
    rconn_start(rc);
    run_until(f, &o.ups, 1, "connect");
    rconn_set_batch(rc, 300);
    run_for(f, 350); /* a quiet spell longer than the window */

    unsigned long long w = rconn_writes(rc);
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "PING"), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(rconn_writes(rc), w + 1); /* after quiet: at the end of its turn */
    run_until(f, &o.replies, 1, "PING");

    assert_int_equal(rconn_cmd(rc, on_reply, &o, "SET %s %s", "bk", "1"), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "INCR %s", "bk"), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "GET %s", "bk"), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(rconn_writes(rc), w + 1); /* all three wait for the window */
    run_until(f, &o.replies, 4, "the batch's replies");
    assert_int_equal(rconn_writes(rc), w + 2); /* and left in one write */
    assert_string_equal(o.last, "2");

    /* rconn_flush_blind with a fire-and-forget command waiting writes at once */
    assert_int_equal(rconn_cmd(rc, NULL, NULL, "SET %s %s", "bk3", "y"), 0);
    rconn_flush_blind(rc);
    assert_int_equal(rconn_writes(rc), w + 3);

    /* A command with a callback waits for the window even past rconn_flush_blind; one without
     * a callback takes the batch out at the end of its turn. */
    assert_int_equal(rconn_cmd(rc, on_reply, &o, "INCR %s", "bk"), 0);
    rconn_flush_blind(rc);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(rconn_writes(rc), w + 3);
    assert_int_equal(rconn_cmd(rc, NULL, NULL, "SET %s %s", "bk2", "x"), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(rconn_writes(rc), w + 4);
    run_until(f, &o.replies, 5, "INCR");
    assert_int_equal(o.last_type, REDIS_REPLY_INTEGER);
    rconn_free(&rc);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(loop_close_all(&f->loop), 0);
}

/* rconn_free from inside a reply callback is deferred; later pending callbacks get NULL. */
static void test_free_in_callback(void **state) {
    fixture *f = *state;
    obs o = {0}, o2 = {0};
    cg_err e;
    rconn *rc = rconn_new(&f->loop, f->url, "fic", 0, on_state, &o, &e);
    assert_non_null(rc);
    o.self = &rc;
    rconn_start(rc);
    run_until(f, &o.ups, 1, "connect");
    assert_int_equal(rconn_cmd(rc, on_reply_free, &o, "PING"), 0);
    assert_int_equal(rconn_cmd(rc, on_reply, &o2, "PING"), 0);
    assert_int_equal(rconn_cmd(rc, on_reply, &o2, "PING"), 0);
    run_until(f, &o.replies, 1, "first reply");
    assert_null(rc);
    run_until(f, &o2.nulls, 2, "NULL for the others");
    assert_int_equal(o2.replies, 0);
    assert_int_equal(o.downs, 0);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(loop_close_all(&f->loop), 0);
}

/* Free while waiting to reconnect (no server), and from the state callback. */
static void on_state_free(rconn *rc, int up, void *priv) {
    obs *o = priv;
    (void)rc;
    if (up)
        o->ups++;
    else
        o->downs++;
    rconn_free(o->self);
}

static void test_free_while_down(void **state) {
    fixture *f = *state;
    obs o = {0}, o2 = {0};
    cg_err e;
    redis_kill(f);
    rconn *rc = rconn_new(&f->loop, f->url, "down", 300, on_state, &o, &e);
    rconn *rc2 = rconn_new(&f->loop, f->url, "down2", 0, on_state_free, &o2, &e);
    o2.self = &rc2;
    rconn_start(rc);
    rconn_start(rc2);
    run_until(f, &o.downs, 1, "down");
    assert_int_equal(o2.downs, 1);
    assert_null(rc2);
    run_for(f, 400);
    assert_int_equal(o.downs, 1);
    rconn_free(&rc);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(loop_close_all(&f->loop), 0);
}

/* AUTH and SELECT from the URL are sent before "up"; a wrong password never gets up. */
static void test_auth_select(void **state) {
    fixture *f = *state;
    obs o = {0}, ob = {0}, oc = {0};
    cg_err e;
    char url[128];
    rconn *ra = rconn_new(&f->loop, f->url, "admin", 0, on_state, &o, &e);
    rconn_start(ra);
    run_until(f, &o.ups, 1, "connect");
    assert_int_equal(rconn_cmd(ra, on_reply, &o, "CONFIG SET requirepass %s", "pw@1"), 0);
    run_until(f, &o.replies, 1, "CONFIG SET");
    assert_string_equal(o.last, "OK");

    snprintf(url, sizeof(url), "redis://:pw@1@127.0.0.1:%d/2", f->port);
    rconn *rb = rconn_new(&f->loop, url, "auth", 1000, on_state, &ob, &e);
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", f->port);
    rconn *rcw = rconn_new(&f->loop, url, "wrong", 1000, on_state, &oc, &e);
    assert_non_null(rb);
    assert_non_null(rcw);
    log_init("test_rconn", LOG_ERROR + 1); /* the wrong password is expected to log errors */
    rconn_start(rb);
    rconn_start(rcw);
    run_until(f, &ob.ups, 1, "authenticated connect");
    assert_int_equal(rconn_cmd(rb, on_reply, &ob, "CLIENT INFO"), 0);
    run_until(f, &ob.replies, 1, "CLIENT INFO");
    assert_non_null(strstr(ob.last, " db=2 "));
    run_until(f, &oc.downs, 1, "wrong password refused");
    run_for(f, 500);
    log_init("test_rconn", LOG_WARN);
    assert_int_equal(oc.ups, 0);
    assert_int_equal(oc.downs, 1);
    assert_false(rconn_is_up(rcw));
    rconn_free(&ra);
    rconn_free(&rb);
    rconn_free(&rcw);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(loop_close_all(&f->loop), 0);
}

/* An ACL user (Redis 6+): redis://user:password@ sends AUTH user password; a wrong password and
 * a URL without credentials (NOAUTH) never get up. */
static void test_auth_acl_user(void **state) {
    fixture *f = *state;
    obs o = {0}, ou = {0}, ow = {0}, on = {0};
    cg_err e;
    char url[128];
    rconn *ra = rconn_new(&f->loop, f->url, "admin", 0, on_state, &o, &e);
    rconn_start(ra);
    run_until(f, &o.ups, 1, "connect");
    assert_int_equal(rconn_cmd(ra, on_reply, &o, "ACL SETUSER app on >s3cr:t ~* &* +@all"), 0);
    run_until(f, &o.replies, 1, "ACL SETUSER");
    assert_string_equal(o.last, "OK");
    log_init("test_rconn", LOG_ERROR + 1); /* the refusals are expected to log errors */
    assert_int_equal(rconn_cmd(ra, on_reply, &o, "ACL SETUSER default off"), 0);
    run_until(f, &o.replies, 2, "default user off");
    assert_string_equal(o.last, "OK");

    snprintf(url, sizeof(url), "redis://app:s3cr:t@127.0.0.1:%d", f->port);
    rconn *ru = rconn_new(&f->loop, url, "user", 1000, on_state, &ou, &e);
    snprintf(url, sizeof(url), "redis://app:wrong@127.0.0.1:%d", f->port);
    rconn *rw = rconn_new(&f->loop, url, "wrong", 1000, on_state, &ow, &e);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f->port);
    rconn *rn = rconn_new(&f->loop, url, "none", 1000, on_state, &on, &e);
    assert_non_null(ru);
    assert_non_null(rw);
    assert_non_null(rn);
    rconn_start(ru);
    rconn_start(rw);
    rconn_start(rn);
    run_until(f, &ou.ups, 1, "ACL user connect");
    assert_int_equal(rconn_cmd(ru, on_reply, &ou, "ACL WHOAMI"), 0);
    run_until(f, &ou.replies, 1, "ACL WHOAMI");
    assert_string_equal(ou.last, "app");
    run_until(f, &ow.downs, 1, "wrong password refused");
    run_until(f, &on.downs, 1, "missing password refused");
    run_for(f, 500);
    log_init("test_rconn", LOG_WARN);
    assert_int_equal(ow.ups, 0);
    assert_int_equal(on.ups, 0);
    assert_false(rconn_is_up(rw));
    assert_false(rconn_is_up(rn));
    rconn_free(&ra);
    rconn_free(&ru);
    rconn_free(&rw);
    rconn_free(&rn);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(loop_close_all(&f->loop), 0);
}

/* loop glue: a signal reaches the callback from the loop; everything closes cleanly. */
static void on_signal(int signum, void *priv) {
    int *got = priv;
    *got = signum;
}

static void noop_timer(uv_timer_t *t) {
    (void)t;
}

static void test_loop_signals(void **state) {
    (void)state;
    uv_loop_t loop;
    int got = 0;
    uv_loop_init(&loop);
    assert_int_equal(loop_signals_start(&loop, on_signal, &got), 0);
    assert_int_equal(loop_signals_start(&loop, on_signal, &got), -1); /* once per process */
    raise(SIGHUP);
    for (int i = 0; i < 1000 && got == 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(got, SIGHUP);
    loop_signals_stop();
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(loop_signals_start(&loop, on_signal, &got), 0);
    uv_timer_t t; /* left open on purpose: loop_close_all closes it */
    uv_timer_init(&loop, &t);
    assert_int_equal(uv_timer_start(&t, noop_timer, 100000, 0), 0);
    assert_int_equal(loop_close_all(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_loop_signals),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watchdog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_select, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_acl_user, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
