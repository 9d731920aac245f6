/* main.c -- the gateway process: configuration, one libuv loop, lws, Redis, shutdown.
 *
 * libwebsockets runs on our loop as a foreign loop (LWS_SERVER_OPTION_LIBUV + foreign_loops) and
 * hiredis is attached to the same loop by rconn. Shutdown (SIGINT/SIGTERM): tell the routers the
 * agents are gone, delete the liveness key (heartbeat.c), wait for Redis to have it (PING), close
 * Redis, destroy the lws context, run the loop until every handle is closed; exit 0 only if
 * uv_loop_close() returned 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "tls.h"

#include "../common/config.h"
#include "../common/log.h"
#include "../common/loop.h"
#include "../common/util.h"

gw G;

#define O_STR(n, d, field, h)                                                                      \
    { n, CFG_STR, d, G.cfg.field, sizeof(G.cfg.field), 0, 0, h }
#define O_INT(n, d, field, lo, hi, h)                                                              \
    { n, CFG_INT, d, &G.cfg.field, 0, lo, hi, h }

static const cfg_opt gw_opts[] = {
    O_STR("listen", "127.0.0.1:8080", listen, "host:port to listen on"),
    O_STR("tls_cert", "", tls_cert, "PEM certificate (chain): serve https:// and wss:// only"),
    O_STR("tls_key", "", tls_key, "PEM private key (unencrypted) of tls_cert"),
    O_STR("gateway_id", "", gateway_id, "unique id of this gateway (default host-pid)"),
    O_STR("www_dir", "gateway/www", www_dir, "directory of the demo pages"),
    O_STR("redis_url", "redis://127.0.0.1:6379", redis_url, "Redis to use"),
    O_STR("redis_tls_ca", "", redis_tls.ca,
          "rediss://: PEM file of the CA that signed Redis' certificate; empty: the system's"),
    O_STR("redis_tls_cert", "", redis_tls.cert,
          "rediss://: PEM client certificate (Redis' tls-auth-clients yes)"),
    O_STR("redis_tls_key", "", redis_tls.key, "rediss://: PEM private key of redis_tls_cert"),
    O_STR("redis_tls_server_name", "", redis_tls.server_name,
          "rediss://: the name Redis' certificate must carry (and SNI); empty: the URL's host"),
    O_STR("log_level", "info", log_level, "debug, info, warn or error"),
    O_STR("jwt_secret", "", jwt_secret, "HS256 secret for session tokens (>= 32 bytes)"),
    O_STR("jwt_secrets", "", jwt_secrets,
          "kid1:secret1, kid2:secret2: rotating HS256 secrets named by the tokens' kid"),
    O_INT("token_max_ttl", "2592000", token_max_ttl, 60, 315360000,
          "longest lifetime (exp) a token may have, seconds"),
    O_STR("allowed_origins", "", allowed_origins,
          "comma-separated browser origins allowed to connect (the gateway's own always is)"),
    O_STR("allowed_hosts", "", allowed_hosts,
          "comma-separated Host values served (host or host:port); empty: any well-formed"),
    O_INT("max_frame", "65536", max_frame, 256, 16777216, "largest client frame, bytes"),
    O_INT("send_queue_max", "256", send_queue_max, 8, 65536, "frames queued per connection"),
    O_INT("redis_max_in_flight", "8192", redis_max_in_flight, 16, 1000000,
          "client messages sent to Redis and not answered; more get busy (retry) and their "
          "sockets are not read until half of them are answered"),
    O_INT("redis_batch_ms", "2", redis_batch_ms, 0, 100,
          "write to Redis at most once per this many ms under load (commands queued meanwhile "
          "leave together); 0: at the end of every loop turn"),
    O_INT("rate_msgs", "20", rate_msgs, 1, 100000, "frames per second per connection"),
    O_INT("rate_burst", "40", rate_burst, 1, 100000, "burst of frames per connection"),
    O_INT("customer_token_ttl", "2592000", customer_token_ttl, 60, 315360000,
          "lifetime of customer session tokens, seconds"),
    O_INT("hello_timeout_ms", "10000", hello_timeout_ms, 100, 600000,
          "time a new connection has to say hello"),
    O_INT("frame_timeout_ms", "30000", frame_timeout_ms, 100, 600000,
          "a message sent in fragments (or trickled) must be whole this long after its first "
          "bytes; else close 1008"),
    O_INT("max_header_bytes", "4096", max_header_bytes, 1024, 65535,
          "room for a request's header values (cookies included): more is refused; every "
          "connection holds this much until its request head is whole"),
    O_INT("max_conns_per_ip", "200", max_conns_per_ip, 0, 1000000,
          "open connections (WebSocket + HTTP) per client address; 0 off"),
    O_INT("conv_per_ip", "60", conv_per_ip, 0, 1000000,
          "new conversations per client address per conv_window_s; 0 off"),
    O_INT("conv_per_customer", "10", conv_per_customer, 0, 1000000,
          "new conversations per customer per conv_window_s; 0 off"),
    O_INT("conv_window_s", "600", conv_window_s, 1, 86400,
          "window of conv_per_ip and conv_per_customer, seconds"),
    O_STR("trusted_proxies", "", trusted_proxies,
          "comma-separated proxy addresses whose X-Forwarded-For names the client"),
    O_INT("ws_ping_interval", "30", ws_ping_interval, 0, 3600,
          "WebSocket ping after this many seconds without a pong; 3 times it: closed (0 off)"),
    O_INT("heartbeat_ms", "1000", heartbeat_ms, 50, 600000,
          "liveness key refreshed this often; routers reap the gateway 3 beats after the last"),
    O_STR("wechat_token", "", wechat_token, "WeChat server token; empty: /channels/wechat off"),
    O_STR("wechat_aes_key", "", wechat_aes_key, "WeChat EncodingAESKey (43 chars, safe mode)"),
    O_STR("wechat_appid", "", wechat_appid, "WeChat AppID / WeCom CorpID (safe mode)"),
    O_STR("telegram_secret", "", telegram_secret,
          "Telegram setWebhook secret_token; empty: /channels/telegram off"),
    O_STR("meta_app_secret", "", meta_app_secret,
          "Meta app secret (X-Hub-Signature-256); empty: WhatsApp and Messenger off"),
    O_STR("meta_verify_token", "", meta_verify_token,
          "Meta webhook verify token (hub.verify_token)"),
    O_STR("email_token", "", email_token, "bearer token of /channels/email; empty: off"),
    O_STR("metrics_token", "", metrics_token, "bearer token of GET /metrics; empty: 403"),
    O_STR("bridge_token", "", bridge_token,
          "shared token of the channel bridges (/ws/bridge); empty: bridges refused"),
    O_INT("bridge_claim_idle_ms", "300000", bridge_claim_idle_ms, 100, 86400000,
          "cg:out entries un-acked this long are delivered to another bridge of the channel"),
    O_STR("email_from", "", email_from,
          "From of e-mail replies sent by the mail bridge, \"Name <addr>\" or addr"),
    O_STR("email_domain", "", email_domain,
          "domain of the Message-IDs of e-mail replies (default: email_from's)"),
    O_INT("webhook_max_body", "262144", webhook_max_body, 1024, 262144,
          "largest WeChat/Telegram/WhatsApp/Messenger webhook body, bytes"),
    O_INT("email_max_body", "1048576", email_max_body, 1024, 1048576,
          "largest raw e-mail posted to /channels/email, bytes"),
    O_INT("wechat_max_body", "65536", wechat_max_body, 1024, 262144,
          "largest /channels/wechat body, bytes (at most webhook_max_body)"),
    O_INT("telegram_max_body", "65536", telegram_max_body, 1024, 262144,
          "largest /channels/telegram body, bytes (at most webhook_max_body)"),
    O_INT("meta_max_body", "262144", meta_max_body, 1024, 262144,
          "largest /channels/whatsapp and /channels/messenger body, bytes (at most "
          "webhook_max_body)"),
    O_INT("webhook_deadline_ms", "10000", webhook_deadline_ms, 100, 600000,
          "time a webhook request has from its headers to its last body byte (408)"),
    O_INT("webhook_unauth_budget", "8388608", webhook_unauth_budget, 4096, 1073741824,
          "webhook body bytes announced by requests not authenticated yet, all connections "
          "together (503 beyond)"),
    {NULL, 0, NULL, NULL, 0, 0, 0, NULL}};

/* The gateway owns [common] and [gateway]: an unknown key there is an error. Every other section
 * ([router], [queue x], [rule x], ...) is the router's, which validates it. */
static int gw_cfg_extra(void *priv, const char *section, const char *key, const char *value,
                        int cont, cg_err *err) {
    if (section[0] && strcmp(section, "common") && strcmp(section, "gateway")) return 0;
    return cg_err_set(err, "bad_config", "unknown key '%s'", key);
}

int gw_origin_allowed(const char *origin, const char *host) {
    if (!origin) return 1; /* not a browser */
    const char *o = strstr(origin, "://");
    if (o && host && host[0] && !strcmp(o + 3, host)) return 1; /* same origin */
    size_t n = strlen(origin);
    for (const char *p = G.cfg.allowed_origins; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        if (len == n && !memcmp(p, origin, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* lws' own warnings and errors, into our log. "User code denied connection" is lws saying that
 * we refused a request (too many connections from its address, a bad origin...): ws.c and http.c
 * log why at info and count it on /metrics, so it is debug here; a warning per refusal would let
 * an attack flood the log (112,144 lines in 40 s of the WebSocket slow-loris bench). */
static void lws_log(int level, const char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    int lv = level & LLL_ERR ? LOG_ERROR : LOG_WARN;
    if (strstr(line, "User code denied connection")) lv = LOG_DEBUG;
    log_write(lv, "lws: %.*s", (int)n, line);
}

/* ---- Redis ---- */

/* Say "ready" once, when both Redis connections are up and the start-up on the command
 * connection is done (tests and operators wait on it). */
static void maybe_ready(void) {
    static int said;
    if (said || !rs_redis_ok()) return;
    said = 1;
    log_info("gateway %s ready", G.cfg.gateway_id);
}

/* The start-up of a command connection is done (rstate.c: Redis answers and the library is in):
 * what each connect needs, in this order. */
static void on_cmd_ready(void) {
    hb_on_redis_up(); /* first: our liveness key exists before any connect of ours is read */
    /* Agents that connected while Redis was away never reached a router: announce them again
     * (the router's presence function is idempotent per connection). */
    for (sess *s = G.sessions; s; s = s->next)
        if (s->role == SESS_AGENT && s->authed) client_agent_resume(s);
    sub_on_cmd_up();
    maybe_ready();
}

static void on_cmd_state(rconn *rc, int up, void *priv) {
    if (up)
        log_info("redis: command connection up");
    else
        log_warn("redis: command connection down");
    rs_on_cmd_state(up); /* runs on_cmd_ready once the library is in */
}

static void on_sub_state(rconn *rc, int up, void *priv) {
    if (up) {
        log_info("redis: subscriber connection up");
        sub_on_redis_up();
    } else {
        log_warn("redis: subscriber connection down");
        sub_on_redis_down();
    }
    rs_on_sub_state(up);
    maybe_ready();
}

/* ---- shutdown ---- */

static uv_timer_t stop_timer, stop_poll;
/* With libuv, lws destroys a context in two calls: one to start (handles close on the loop),
 * one after the loop has run dry to finish (warmcat/libwebsockets#2595). */
static struct lws_context *dying_lws;

static void stop_finish(void) {
    if (!G.lws) return;
    rconn_free(&G.redis);
    rconn_free(&G.sub);
    ws_shutdown();
    dying_lws = G.lws;
    G.lws = NULL;
    lws_context_destroy(dying_lws);
    uv_close((uv_handle_t *)&stop_timer, NULL);
    uv_close((uv_handle_t *)&stop_poll, NULL);
    loop_signals_stop();
}

/* Every connection's close frame is out (its session is gone): finish. */
static void on_stop_poll(uv_timer_t *t) {
    if (!G.sessions) stop_finish();
}

/* Redis has the disconnects: finish once the connections are closed too (their close frames
 * leave from lws' WRITEABLE callbacks; stop_timer bounds the wait). */
static void on_stop_barrier(rconn *rc, redisReply *r, void *priv) {
    if (!G.sessions) {
        stop_finish();
        return;
    }
    uv_timer_start(&stop_poll, on_stop_poll, 10, 10);
}

static void on_stop_timeout(uv_timer_t *t) {
    log_warn("shutdown: redis did not answer in time");
    stop_finish();
}

/* Tell the routers our agents are gone, then finish once Redis has it (or after 2 s). */
static void stop_begin(void) {
    if (G.stopping) return;
    G.stopping = 1;
    log_info("shutting down");
    for (sess *s = G.sessions; s; s = s->next) {
        client_closed(s);
        s->authed = 0;
        sess_close(s, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
    }
    hb_stop(); /* after the disconnects: the liveness key goes */
    rs_stop();
    uv_timer_init(G.loop, &stop_timer);
    uv_timer_init(G.loop, &stop_poll);
    uv_timer_start(&stop_timer, on_stop_timeout, 2000, 0);
    if (rconn_cmd(G.redis, on_stop_barrier, NULL, "PING") < 0) stop_finish();
}

static void on_signal(int sig, void *priv) {
    if (sig == SIGHUP) {
        log_info("SIGHUP: nothing to reload in the gateway");
        return;
    }
    stop_begin();
}

/* ---- start ---- */

static int gw_start(void) {
    char host[128];
    int port;
    if (cg_parse_hostport(G.cfg.listen, host, sizeof(host), &port) < 0) {
        log_error("config: listen '%s' is not host:port", G.cfg.listen);
        return -1;
    }
    cg_err err;
    if (token_keyring_init(&G.keys, G.cfg.jwt_secrets, G.cfg.jwt_secret, G.cfg.token_max_ttl,
                           &err) < 0) {
        log_error("config: %s", err.msg);
        return -1;
    }
    if (G.cfg.customer_token_ttl > G.cfg.token_max_ttl) {
        log_error("config: customer_token_ttl (%lld) is over token_max_ttl (%lld)",
                  G.cfg.customer_token_ttl, G.cfg.token_max_ttl);
        return -1;
    }
    int tls = tls_check(G.cfg.tls_cert, G.cfg.tls_key, &err);
    if (tls < 0) {
        log_error("config: %s", err.msg);
        return -1;
    }
    if (hb_start() < 0 || rs_start(on_cmd_ready) < 0) return -1;
    rtls_set_opts(&G.cfg.redis_tls);
    G.redis = rconn_new(G.loop, G.cfg.redis_url, "redis", 5000, on_cmd_state, NULL, &err);
    G.sub = G.redis
                ? rconn_new(G.loop, G.cfg.redis_url, "redis-sub", 5000, on_sub_state, NULL, &err)
                : NULL;
    if (G.redis) rconn_set_batch(G.redis, (unsigned)G.cfg.redis_batch_ms);
    if (G.redis)
        rconn_on_drain(G.redis, (unsigned)G.cfg.redis_max_in_flight / 2, client_backpressure_ease,
                       NULL);
    if (!G.sub) {
        log_error("config: redis_url: %s", err.msg);
        return -1;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    http_setup_mounts(G.cfg.www_dir);
    if (http_setup_frame(G.cfg.allowed_origins, &err) < 0) {
        log_error("config: %s", err.msg);
        return -1;
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *loops[1] = {G.loop};
    info.port = port;
    info.iface = host;
    info.protocols = ws_protocols;
    info.mounts = http_mounts;
    info.headers = http_headers;
    info.retry_and_idle_policy = ws_keepalive_policy(G.cfg.ws_ping_interval);
    info.vhost_name = "chatgw";
    info.options =
        LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = loops;
    if (tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = G.cfg.tls_cert;
        info.ssl_private_key_filepath = G.cfg.tls_key;
        /* HTTP/1.1 only: lws 4.1.6's HTTP/2 cuts static files short, and WebSockets over h2
         * (RFC 8441) carry no Host header for the same-origin check. */
        info.alpn = "http/1.1";
    }
    info.timeout_secs = 10;
    info.pt_serv_buf_size = 32768;
    info.max_http_header_data = (unsigned short)G.cfg.max_header_bytes;
    G.lws = lws_create_context(&info);
    if (!G.lws) {
        log_error("cannot listen on %s (in use, or libwebsockets-evlib-uv missing?)", G.cfg.listen);
        rconn_free(&G.redis);
        rconn_free(&G.sub);
        return -1;
    }
    rconn_start(G.redis);
    rconn_start(G.sub);
    log_info("gateway %s listening on %s://%s", G.cfg.gateway_id, tls ? "https" : "http",
             G.cfg.listen);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: chatgw-gateway [--config FILE]\n\nkeys (file or CHATGW_<KEY>):\n");
    for (const cfg_opt *o = gw_opts; o->name; o++)
        fprintf(stderr, "  %-20s %s (default %s)\n", o->name, o->help, o->def ? o->def : "\"\"");
}

int main(int argc, char **argv) {
    const char *cfg_path = getenv("CHATGW_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            cfg_path = argv[++i];
        else {
            usage();
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    log_init("gateway", LOG_INFO);
    cg_err err;
    if (cfg_load(gw_opts, cfg_path, gw_cfg_extra, NULL, &err) < 0) {
        log_error("config: %s", err.msg);
        return 2;
    }
    log_level lvl;
    if (log_level_parse(G.cfg.log_level, &lvl) < 0) {
        log_error("config: log_level '%s' is not debug, info, warn or error", G.cfg.log_level);
        return 2;
    }
    log_init("gateway", lvl);
    if (!G.cfg.gateway_id[0]) {
        char h[24] = "gw";
        gethostname(h, sizeof(h) - 1);
        snprintf(G.cfg.gateway_id, sizeof(G.cfg.gateway_id), "%s-%d", h, (int)getpid());
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    G.loop = &loop;
    if (loop_signals_start(G.loop, on_signal, NULL) < 0 || gw_start() < 0) {
        loop_signals_stop();
        loop_close_all(G.loop);
        return 1;
    }
    uv_run(G.loop, UV_RUN_DEFAULT);
    if (dying_lws) lws_context_destroy(dying_lws);
    lim_shutdown();
    int rc = loop_close_all(G.loop);
    token_keyring_clear(&G.keys);
    if (rc == 0)
        log_info("clean shutdown");
    else
        log_error("shutdown: uv_loop_close returned %d", rc);
    return rc == 0 ? 0 : 1;
}
