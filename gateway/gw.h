/* gw.h -- the gateway's shared state and the interfaces between its modules.
 *
 *   main.c    configuration, the loop, the lws context, Redis connections, shutdown
 *   ws.c      the lws protocol callback: handshake, frame reassembly, writes (ws_)
 *   upgrade.c the checks of a WebSocket upgrade before lws performs it: path, Host/Origin,
 *             Connection, Sec-WebSocket-Key, subprotocol; refusals get a status (upg_)
 *   http.c    /healthz, the static-file mounts, 404s and the security headers (http_)
 *   guard.c   Host and Origin checks of every request (guard_)
 *   limit.c   per client address: open connections, new conversations (lim_)
 *   sess.c    one client connection: identity, send queue, rate limit (sess_)
 *   frame.c   refcounted encoded frames shared by many send queues (frame_)
 *   sub.c     pub/sub channels, watchers and catch-up from the conversation log (sub_)
 *   client.c  what a client frame does: hello, messages, commands (client_)
 *   bridge.c  /ws/bridge: channel bridges get cg:out:<channel>, rendered; they push inbound
 *             platform messages (bridge_)
 *   webhook.c, webhook_store.c, hook_*.c  the /channels/... platform webhooks (webhook.h)
 *   heartbeat.c  the liveness key cg:gw:<gateway id> the routers reap dead gateways by (hb_)
 *   tls.c     tls_cert / tls_key checked at start for the https:// and wss:// listener (tls.h)
 *   rstate.c  the start-up of the command connection (library version check and load) and the
 *             health of Redis and of the routers (rs_)
 */
#ifndef CG_GW_H
#define CG_GW_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>
#include <libwebsockets.h>

#include "../common/err.h"
#include "../common/peer.h"
#include "../common/rconn.h"
#include "../common/rtls.h"
#include "../common/token.h"
#include "../proto/msg.h"

/* ---- configuration ---- */
typedef struct gw_config {
    char listen[128];
    char tls_cert[512]; /* tls.h: both set: the listener speaks only TLS */
    char tls_key[512];
    char gateway_id[40];
    char www_dir[512];
    char redis_url[512];
    rtls_opts redis_tls; /* rediss://: CA, client certificate and key, name to verify */
    char log_level[16];
    char jwt_secret[256];
    char jwt_secrets[2048];  /* "kid:secret, ..." (token.h keyring); the first signs */
    long long token_max_ttl; /* seconds a token may live at most */
    char allowed_origins[1024];
    char allowed_hosts[1024]; /* guard.c: empty = any well-formed Host */
    char metrics_token[257];  /* metrics.c: bearer token of GET /metrics; empty: 403 */
    long long max_frame;
    long long send_queue_max;
    long long redis_max_in_flight;
    long long redis_batch_ms;
    long long rate_msgs;
    long long rate_burst;
    long long customer_token_ttl;
    long long hello_timeout_ms;
    long long frame_timeout_ms;  /* ws.c: a fragmented/trickled message must be whole by then */
    long long max_header_bytes;  /* main.c: lws' room for a request's header values */
    long long max_conns_per_ip;  /* limit.c: open connections per client address; 0 off */
    long long conv_per_ip;       /* limit.c: new conversations per address per conv_window_s */
    long long conv_per_customer; /* client.c: new conversations per customer per window */
    long long conv_window_s;
    char trusted_proxies[1024]; /* peer.h: X-Forwarded-For is taken from these peers only */
    long long ws_ping_interval; /* ws.c: keepalive ping after this many idle seconds; 0 off */
    long long heartbeat_ms; /* heartbeat.c: liveness key refreshed this often, lives 3 times it */
    /* channels (webhook.h): a channel whose secret is empty is disabled (404) */
    char wechat_token[128];
    char wechat_aes_key[64];
    char wechat_appid[64];
    char telegram_secret[257];
    char meta_app_secret[257];
    char meta_verify_token[257];
    char email_token[257];
    long long webhook_max_body; /* JSON and XML webhook bodies: ceiling of the channel caps */
    long long email_max_body;   /* raw e-mail */
    long long wechat_max_body;  /* per-channel body caps (webhook.c: 413) */
    long long telegram_max_body;
    long long meta_max_body;
    long long webhook_deadline_ms;   /* a webhook request's body must be in by then (408) */
    long long webhook_unauth_budget; /* body bytes in flight not authenticated yet (503) */
    /* bridges (bridge.c): empty bridge_token refuses every bridge */
    char bridge_token[257];
    long long bridge_claim_idle_ms; /* entries idle this long are claimed from other bridges */
    char email_from[257];   /* From of e-mail replies: "Desk <support@example.com>" or address */
    char email_domain[128]; /* right-hand side of the Message-IDs of e-mail replies */
} gw_config;

/* ---- frames ---- */
typedef enum codec { CODEC_JSON = 0, CODEC_MSGPACK = 1 } codec;

/* An encoded frame ready for lws_write: LWS_PRE bytes of headroom, then len bytes. Shared by the
 * send queues of every session it goes to; freed when the last reference is dropped. */
typedef struct frame {
    unsigned refs;
    int ctl; /* an answer to a client frame (ack, error, welcome): never dropped (sess_send_ctl) */
    size_t len;
    unsigned char *buf; /* malloc'd; payload at buf + LWS_PRE */
} frame;

/* Encode m for codec c; NULL on allocation failure. The caller owns one reference. */
frame *frame_encode(const msg *m, codec c);
frame *frame_ref(frame *f);
void frame_unref(frame *f);

/* Lazily encodes one msg in both codecs, at most once each (fan-out to many sessions), and for
 * desk-only events (msg_type_is_internal) also the customers' view of it. */
typedef struct frame_cache {
    const msg *m;
    frame *f[2];
    msg cust; /* msg_customer_view(m), once has_cust */
    int has_cust;
    frame *cf[2];
} frame_cache;
frame *frame_cache_get(frame_cache *fc, codec c); /* borrowed: frame_ref it to keep it */
/* The frame a session of role desk (1 = agent) or not (customer, bridge) may get: borrowed. */
frame *frame_cache_view(frame_cache *fc, codec c, int desk);
void frame_cache_release(frame_cache *fc);

/* ---- sessions ---- */
typedef struct watch watch;

typedef enum sess_role { SESS_CUSTOMER = 1, SESS_AGENT, SESS_BRIDGE } sess_role;
typedef struct bridge bridge;

typedef struct sess {
    struct lws *wsi;       /* NULL once the connection is gone */
    unsigned refs;         /* 1 for the connection + 1 per pending Redis reply */
    uint64_t num;          /* connection number within this gateway */
    char sock[MSG_ID_MAX]; /* "<gateway id>:<num>" */
    sess_role role;
    codec codec;
    int authed;               /* hello accepted */
    int hello_pending;        /* hello being processed */
    int revocation_unchecked; /* agent signed in while Redis was away (client_agent_resume) */
    int closing;              /* close requested: stop queueing */
    int flush_queued;         /* in ws.c's list of sessions written at the end of the turn */
    int redis_paused;         /* not read while Redis is busy (client.c backpressure) */
    int away; /* agents: the agent's own last choice (hello code, presence) was away */
    const char *hello_status; /* agents: the status its hello asked for (NULL, online, away) */
    int close_code;
    char close_reason[64];
    token_claims who;      /* verified identity */
    msg_identity identity; /* customers: what the widget told us */
    char conv[MSG_ID_MAX]; /* customers: current conversation */
    uint64_t hello_last_seq;
    char hello_conv[MSG_ID_MAX];
    /* send queue: ring of frames; at most data_max of them are not answers (sess_send_ctl) */
    frame **q;
    unsigned q_cap, q_head, q_len;
    unsigned q_alloc;  /* slots allocated: grown up to q_cap, none while idle */
    unsigned data_max; /* send_queue_max */
    unsigned q_ctl;    /* answers among the queued frames */
    unsigned owed;     /* client frames whose answer is still to come (pending Redis replies) */
    int rx_paused;     /* reading from the client is paused until its answers drain */
    /* rate limit: token bucket */
    double tokens;
    uint64_t tokens_at_ms;
    unsigned rejected_in_row;
    /* per-source limits (limit.c, client.c) */
    char addr[PEER_ADDR_MAX];     /* client address */
    int conv_live;                /* customers: conv was open at the last append (no new one) */
    long long cust_convs;         /* customers: conversations opened in the current window */
    uint64_t cust_convs_until_ms; /* end of that window */
    unsigned conv_checks;         /* messages held until Redis says whether conv is open */
    watch *watches;               /* this session's watches (sub.c) */
    int stale_watches;            /* one of them is stale: sub_drained() has work */
    bridge *bridge;               /* SESS_BRIDGE after hello: its outbound reader (bridge.c) */
    struct sess *next, *prev;     /* all sessions */
} sess;

/* Room for answers beyond send_queue_max: reading from a client pauses when this many halves
 * are queued or owed, and a connection whose answers overflow even this is closed 1008 "too
 * slow" (never an answer silently dropped). */
#define SESS_CTL_MAX 64
/* Create a session for a new connection (one reference, held by the connection); its queue holds
 * data_max frames plus SESS_CTL_MAX answers. */
sess *sess_new(struct lws *wsi, sess_role role, codec c, unsigned data_max);
sess *sess_ref(sess *s);
/* Drop a reference; the last one frees the session (never call from inside lws for a live wsi). */
void sess_unref(sess *s);
/* The connection is gone: detach from lws, drop watches and the connection's reference. */
void sess_detach(sess *s);
/* Queue a frame (takes a new reference). Returns 0, or -1 when the queue is full or the session
 * is closing (the frame is not queued: logged messages are read again from the log). */
int sess_send(sess *s, frame *f);
/* Encode and queue m; -1 as sess_send or on encoding failure. */
int sess_send_msg(sess *s, const msg *m);
/* Queue an answer to a client frame (ack, error, welcome) in the room reserved for answers; when
 * even that is full the connection is closed 1008 "too slow" (-1). */
int sess_send_ctl_msg(sess *s, const msg *m);
/* Queue an error frame (code, reason, cmid of the refused frame, retry) as an answer. */
void sess_send_error(sess *s, const char *code, const char *reason, const char *cmid, int retry);
/* A client frame will be answered later (a Redis request is pending) / its answer is queued or
 * given up: reading from the client pauses while too many answers are owed or unread. */
void sess_owe(sess *s);
void sess_owe_done(sess *s);
/* Room left in the send queue for frames that are not answers. */
unsigned sess_room(const sess *s);
/* Pop the next frame to write (caller unrefs it after writing), NULL if empty. */
frame *sess_pop(sess *s);
/* Ask lws to close the connection with code and reason after the queued frames are written. */
void sess_close(sess *s, int code, const char *reason);
/* A WebSocket connection without a session came (1) or went (0): counted with the sessions for
 * the heap trim after a wave of disconnects. */
void sess_conn_waiting(int came);
/* Token bucket: 1 when a frame may pass now, 0 when over the limit. */
int sess_rate_ok(sess *s, uint64_t now_ms, double rate, double burst);

/* ---- subscriptions (sub.c) ---- */
typedef enum watch_kind { WATCH_CONV = 0, WATCH_AGENT, WATCH_QUEUE } watch_kind;

/* Start following a conversation for s, sending every logged message with seq > after
 * (catch-up from the log, then live). Idempotent per (s, conv). */
int sub_watch_conv(sess *s, const char *conv, uint64_t after, msg_channel ch);
/* Follow the agent channel (assignments, errors) and the agent's current conversations. */
int sub_watch_agent(sess *s);
/* Follow queue snapshots of a queue. */
int sub_watch_queue(sess *s, const char *queue);
/* Stop following one conversation / everything (on disconnect). */
void sub_unwatch_conv(sess *s, const char *conv);
void sub_unwatch_all(sess *s);
/* The session's send queue has room again: resume catch-up of its conversations. */
void sub_drained(sess *s);
/* The channel of a conversation the agent session follows (for replies), CH_WEB if unknown. */
msg_channel sub_conv_channel(sess *s, const char *conv);
/* Redis pub/sub connection came up / went down. */
void sub_on_redis_up(void);
void sub_on_redis_down(void);
/* The command connection came back: re-sync every watcher of a confirmed channel. */
void sub_on_cmd_up(void);
void sub_shutdown(void);

/* ---- client frames (client.c) ---- */
/* Handle one complete frame from a client (bytes owned by the caller). */
void client_frame(sess *s, const unsigned char *buf, size_t len, int binary);
/* A logged event of conv is going to s: a customer's conversation seen closed opens a new one
 * with its next message (limits, client.c); a `followup` event moves the customer's session to
 * its current conversation (the follow-up task, read from cg:cust:<customer>). */
void client_conv_event(sess *s, const char *conv, msg_type type);
/* The connection closed: tell the router (agents) and release what the session holds. */
/* Backpressure eased (rconn_on_drain of the command connection): paused sessions read again. */
void client_backpressure_ease(rconn *rc, void *priv);
void client_closed(sess *s);
/* Tell the routers about an agent connection: code "connect" or "disconnect" (idempotent). */
void client_presence(sess *s, const char *code);
/* The command connection is back: announce an authenticated agent to the routers again, after
 * checking its token's revocation when that could not be done at hello. */
void client_agent_resume(sess *s);

/* ---- bridges (bridge.c) ---- */
/* A decoded (not yet validated) frame from a bridge session. */
void bridge_frame(sess *s, msg *m);
/* The bridge's send queue has room again: read more of its channel's stream. */
void bridge_drained(sess *s);
/* The connection closed: stop reading (un-acked entries stay pending for the next connection). */
void bridge_closed(sess *s);

/* ---- http (http.c) ---- */
/* FILTER_HTTP_CONNECTION: refuse a request with a bad Host (400 naming the problem, -1). */
int http_filter(struct lws *wsi);
/* Answer an HTTP request on a callback mount (or a file mount's miss: 404); returns what the
 * lws callback should return. */
int http_request(struct lws *wsi, const char *uri);
extern const struct lws_http_mount *http_mounts;
/* The security headers of every HTTP response (the vhost's info.headers). */
extern const struct lws_protocol_vhost_options *http_headers;
void http_setup_mounts(const char *www_dir);
/* Build the widget frame page's frame-ancestors from allowed_origins; -1 (err set) when an entry
 * has a character no origin has. */
int http_setup_frame(const char *allowed_origins, cg_err *err);
/* Add the framing headers of the response to the request on wsi (p moves on; 1 when full). */
int http_add_headers(struct lws *wsi, unsigned char **p, unsigned char *end);
/* Answer status with text (and a newline) as text/plain at once, in one write, for a request
 * refused before it is served; the caller then returns -1 so that lws closes the connection.
 * 0, or -1 when the answer could not be written. */
int http_refuse(struct lws *wsi, int status, const char *text);

/* ---- upgrade checks (upgrade.c) ---- */
/* The role the path of the upgrade request on wsi serves: 0, or -1 for an unknown path. */
int upg_role(struct lws *wsi, sess_role *role);
/* The path (404), Host and Origin (403) of the upgrade request on wsi: 0, or -1 after answering
 * the refusal (return -1 from the callback). */
int upg_check_target(struct lws *wsi);
/* HTTP_CONFIRM_UPGRADE: 0 to let lws upgrade, or -1 (after answering 404, 403 or 400 naming the
 * problem, or for an Upgrade that is not websocket) so that lws closes the connection. */
int upg_confirm(struct lws *wsi);

/* ---- ws (ws.c) ---- */
extern const struct lws_protocols ws_protocols[];
/* Request a writeable callback for s (no-op if gone). */
void ws_want_write(sess *s);
/* The vhost's retry_and_idle_policy for WebSocket keepalive: a ping interval_s seconds after
 * the last pong, hang up after 3 * interval_s without one; interval_s 0: no pings. Static. */
const lws_retry_bo_t *ws_keepalive_policy(long long interval_s);
/* Per-connection data lws allocates for us. A WebSocket connection gets its session only with
 * its first whole message (ws.c): until then it costs lws' state and these few bytes. */
struct wh_req;
/* A place in one of ws.c's deadline queues (first in, first out: one duration per queue). */
typedef struct ws_deadline {
    struct ws_deadline *next, *prev;
    uint64_t at_ms; /* uv_now() when it expires */
} ws_deadline;
typedef struct ws_pss {
    sess *s;           /* WebSocket: NULL until the first whole message */
    struct wh_req *wh; /* http: a /channels/... request (webhook.h) */
    unsigned char *rx; /* WebSocket: the message being reassembled */
    size_t rx_len, rx_cap;
    unsigned char role;       /* sess_role of the path, set at the upgrade */
    unsigned char codec;      /* codec of the subprotocol */
    unsigned char waiting;    /* established, no session yet: counted in G.n_ws_waiting */
    unsigned char rx_pending; /* a message has begun and is not whole (frame_timeout_ms runs) */
    unsigned char no_hello;   /* hello_timeout_ms passed without a session: close when writeable */
    struct lws *wsi;          /* WebSocket: set at the upgrade, for the deadlines */
    ws_deadline hello_dl;     /* queued until hello_timeout_ms after the upgrade */
    ws_deadline frame_dl;     /* queued while a message is not whole (frame_timeout_ms) */
} ws_pss;

/* Stop the deadline timer (shutdown). */
void ws_shutdown(void);

/* ---- heartbeat (heartbeat.c) ---- */
/* Start beating every heartbeat_ms (before any connection: it also sets where socket numbers
 * start, so that they never repeat across runs of one gateway id). 0, or -1 logged. */
int hb_start(void);
/* The command connection came up: beat now, before anything else is sent on it. */
void hb_on_redis_up(void);
/* Shutdown, once the agents' disconnects are sent: stop beating, delete the liveness key. */
void hb_stop(void);

/* ---- Redis start-up and health (rstate.c) ---- */
#define RS_ROUTERS_MAX 32
#define RS_RETRY_AFTER_S 2 /* the wait hint of `unavailable` errors */
typedef struct rs_router {
    char id[MSG_ID_MAX];
    char state[128]; /* its health key: ok, loading: ..., stalled: ...; gone when expired */
} rs_router;
typedef void rs_ready_fn(void);
/* Start the health rounds; on_ready runs once the start-up of each command connection is done
 * (the library is in). 0, or -1 logged. */
int rs_start(rs_ready_fn *on_ready);
void rs_stop(void);
/* The command / subscriber connection went up (1) or down (0). */
void rs_on_cmd_state(int up);
void rs_on_sub_state(int up);
/* 1 when client frames can be stored now: connections up, start-up done, Redis answering. */
int rs_redis_ok(void);
/* 1 with a one-line reason in out when /healthz should say 503, else 0 (out ""). */
int rs_problem(char *out, size_t n);
/* up, down, loading, not answering or starting. */
const char *rs_redis_state(void);
/* The routers of the last health round (at most RS_ROUTERS_MAX). */
unsigned rs_routers(const rs_router **list);

/* ---- the process (main.c) ---- */
typedef struct gw {
    gw_config cfg;
    uv_loop_t *loop;
    struct lws_context *lws;
    rconn *redis;   /* commands */
    rconn *sub;     /* pub/sub */
    sess *sessions; /* all live sessions */
    unsigned n_sessions;
    unsigned n_ws_waiting; /* WebSocket connections without a session yet (ws.c) */
    unsigned n_rx_paused;  /* sessions not read because Redis was busy */
    uint64_t next_sess_num;
    int stopping;
    uint64_t msgs_in, msgs_out;
    uint64_t ws_writes; /* WebSocket writes: several queued frames leave in one (ws.c) */
    token_keyring keys; /* jwt_secrets + jwt_secret: signs customer tokens, verifies all */
} gw;

extern gw G;

/* Origin allowlist check: 1 when origin (may be NULL: non-browser clients) may connect. */
int gw_origin_allowed(const char *origin, const char *host);

/* ---- per-source limits (limit.c) ---- */
typedef struct lim_counters {
    uint64_t conn_refused;          /* connections refused: max_conns_per_ip */
    uint64_t conv_refused_ip;       /* new conversations refused: conv_per_ip */
    uint64_t conv_refused_customer; /* new conversations refused: conv_per_customer */
    uint64_t rate_limited;          /* frames refused by the token bucket */
    uint64_t malformed;             /* frames refused as malformed or invalid */
    uint64_t frame_timeouts;        /* connections closed: a message not whole in time */
} lim_counters;
extern lim_counters LIM;
/* A TCP connection from sockaddr (struct sockaddr *) is being accepted: -1 when it is to be
 * closed at once (its address, not a trusted proxy, has 2 x max_conns_per_ip open), else 0. */
int lim_conn_accept(const void *sockaddr);
/* A connection was accepted: count it against its TCP peer unless that is a trusted proxy. */
void lim_conn_new(struct lws *wsi);
/* The first request on wsi: count the connection against its client address if not counted yet
 * (a trusted proxy's: by X-Forwarded-For); 0, or -1 with *why (static, starts with the error
 * code) when the address has more than max_conns_per_ip open. Later requests: 0. */
int lim_conn_open(struct lws *wsi, const char **why);
/* The connection of wsi ends (WSI_DESTROY): release what lim_conn_open counted. */
void lim_conn_close(struct lws *wsi);
/* The client address lim_conn_open found for wsi ("" if none). */
const char *lim_conn_addr(struct lws *wsi);
/* Take one new-conversation token of addr: 1, or 0 when its bucket is empty. */
int lim_conv_take(const char *addr);
/* Give back a token taken for a message that did not open a conversation. */
void lim_conv_refund(const char *addr);
/* A conversation was opened without a token taken: spend one if there is one. */
void lim_conv_note(const char *addr);
void lim_shutdown(void);

/* ---- request guards (guard.c) ---- */
/* 0 when host ("name[:port]") is well-formed and, if allowed_hosts is not empty, listed there;
 * else -1 with *why a static text naming the problem. */
int guard_host_check(const char *host, const char *allowed_hosts, const char **why);
/* The Host check of an HTTP request on wsi (0, or -1 with *why). */
int guard_http(struct lws *wsi, const char **why);
/* The Host and Origin checks of a WebSocket upgrade on wsi (0, or -1 with *why). */
int guard_ws(struct lws *wsi, const char **why);

#endif
