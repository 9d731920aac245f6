/* rconn.h -- one asynchronous Redis connection on the process's libuv loop, with reconnect.
 *
 * Wraps a hiredis redisAsyncContext attached with redisLibuvAttach. When the connection drops (or
 * a command has waited longer than the timeout) every pending callback gets a NULL reply, the state
 * callback is told (up = 0), and a reconnect is tried with exponential backoff (100 ms doubling to
 * 1 s). After each successful connect, AUTH/SELECT from the URL (PING when the URL has no
 * password, so that a server wanting one is found out at once: NOAUTH) are sent first, then the
 * state callback is told (up = 1): that is the place to load functions and (re)subscribe. A
 * refused AUTH is logged with the server's reason (never the password) and retried with backoff. */
#ifndef CG_RCONN_H
#define CG_RCONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "err.h"

typedef struct rconn rconn;

typedef void rconn_state_fn(rconn *rc, int up, void *priv);
/* reply is NULL when the connection failed or was torn down before the reply came. The reply is
 * valid only during the call. */
typedef void rconn_reply_fn(rconn *rc, redisReply *reply, void *priv);

/* Parse redis://[[user]:password@]host[:port][/db] (or unix:/path). With a user the handshake is
 * AUTH user password (a Redis 6+ ACL user), with only a password AUTH password. rediss:// is the
 * same over TLS (tls = 1): the connection then goes through an in-process TLS relay
 * (common/rtls.h), hiredis 0.14 having no TLS of its own. -1 with err on a malformed URL; err
 * never contains the password. */
typedef struct rconn_url {
    char host[256];
    int port;
    char unix_path[256];
    char user[128];
    char password[256];
    int db;
    int tls; /* rediss:// */
} rconn_url;
int rconn_url_parse(const char *url, rconn_url *out, cg_err *err);

/* Create a connection; nothing happens until rconn_start(). `name` is used in log lines.
 * timeout_ms: a command outstanding longer than this drops the connection (0 = never; set it to
 * the BLOCK time plus a margin on a connection used for blocking reads). Returns NULL with err
 * on a bad URL. */
rconn *rconn_new(uv_loop_t *loop, const char *url, const char *name, unsigned timeout_ms,
                 rconn_state_fn *state_cb, void *priv, cg_err *err);
void rconn_start(rconn *rc);
int rconn_is_up(const rconn *rc);

/* Send a command. Returns 0 when queued (cb will be called exactly once, maybe with NULL), -1
 * when the connection is down (cb is not called). cb may be NULL. */
int rconn_cmd(rconn *rc, rconn_reply_fn *cb, void *priv, const char *fmt, ...);
int rconn_cmdargv(rconn *rc, rconn_reply_fn *cb, void *priv, int argc, const char **argv,
                  const size_t *argvlen);

/* Subscribe to a channel (this connection then serves subscriptions only). cb is called with the
 * subscribe confirmation and then with every message ["message", channel, payload]; it stays
 * registered until the connection drops (then it gets NULL once). Returns -1 when down. */
int rconn_subscribe(rconn *rc, rconn_reply_fn *cb, void *priv, const char *channel);
int rconn_unsubscribe(rconn *rc, const char *channel);

/* Close and free. Pending callbacks are called with NULL before it returns or from the loop;
 * *rcp is set to NULL. The loop must keep running until the handles are closed. */
void rconn_free(rconn **rcp);

/* When a command without a callback (fire-and-forget) waits, write everything queued now, not
 * at the end of the loop turn: it leaves before whatever the caller writes next (e.g. a client
 * frame that depends on it). Commands with callbacks keep waiting for their batch (whatever
 * depends on them waits for their replies anyway). */
void rconn_flush_blind(rconn *rc);

/* Batch window: write to Redis at most once per `ms` milliseconds. A command queued within ms of
 * the last write waits for the rest of the window and leaves with everything queued meanwhile, in
 * one write; a command after a quieter spell leaves at the end of its loop turn, as with 0 (the
 * default: every turn's commands leave at its end). A command without a callback does not wait
 * either (it and the batch leave at the end of its turn; rconn_flush_blind: at once). Worth
 * it on a connection that carries many small commands from many clients (the gateway's), not on one
 * whose commands wait on each other's replies (it would add the window to each round trip). */
void rconn_set_batch(rconn *rc, unsigned ms);
/* How long a command queued at `now` waits (ms) when the last write was at flushed_at: 0 when
 * the window has passed (pure; for tests). */
unsigned rconn_batch_wait(uint64_t now, uint64_t flushed_at, unsigned batch_ms);

/* Counters for benchmarks and tests. */
unsigned long long rconn_commands_sent(const rconn *rc);
/* Writes to the socket (each carrying every command queued since the one before). */
unsigned long long rconn_writes(const rconn *rc);
/* Commands sent on rc and not answered yet (what a caller bounds to apply backpressure). */
unsigned rconn_in_flight(const rconn *rc);
/* After any reply that leaves at most `low` commands unanswered, cb(rc, priv) is called (from
 * the reply's callback: it may send commands, not free rc). cb NULL: none. */
typedef void rconn_drain_fn(rconn *rc, void *priv);
void rconn_on_drain(rconn *rc, unsigned low, rconn_drain_fn *cb, void *priv);

#endif
