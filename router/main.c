/* main.c -- chatgw-router: configuration, start, and clean shutdown on SIGINT/SIGTERM.
 *
 * Usage: chatgw-router [--config FILE]   (or CHATGW_CONFIG=FILE); every key can also be set
 * with CHATGW_<KEY>. The INI file is shared with the gateway: keys of [router] and [common] are
 * ours, other sections are ignored. */
#include "router.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/config.h"
#include "../common/log.h"
#include "../common/loop.h"
#include "../common/util.h"

static router g_router;

#define STR(field) &g_router.cfg.field, sizeof(g_router.cfg.field)
#define INT(field) &g_router.cfg.field, 0

static const cfg_opt router_opts[] = {
    {"redis_url", CFG_STR, "redis://127.0.0.1:6379", STR(redis_url), 0, 0, "Redis URL"},
    {"log_level", CFG_STR, "info", STR(log_level), 0, 0, "debug, info, warn or error"},
    {"router_id", CFG_STR, NULL, STR(router_id), 0, 0, "consumer name (default hostname-pid)"},
    {"claim_idle_ms", CFG_INT, "30000", INT(claim_idle_ms), 100, 86400000,
     "take over entries pending longer than this"},
    {"block_ms", CFG_INT, "5000", INT(block_ms), 10, 600000, "XREADGROUP BLOCK time"},
    {"read_count", CFG_INT, "64", INT(read_count), 1, 10000, "entries per read"},
    {"default_queue", CFG_STR, "general", STR(default_queue), 0, 0, "queue for new conversations"},
    {"greeting_text", CFG_STR,
     "Hello! Thanks for contacting us. An agent will be with you shortly.", STR(greeting_text), 0,
     0, "first reply to a new conversation"},
    {"queued_text", CFG_STR,
     "All our agents are busy right now. You are number {position} in the queue; estimated wait "
     "{wait}.",
     STR(queued_text), 0, 0, "auto-reply while waiting; {position} and {wait} are replaced"},
    {"closed_text", CFG_STR, "This conversation has been closed. Thank you for contacting us!",
     STR(closed_text), 0, 0, "text of the closed event"},
    {"avg_handle_s", CFG_INT, "120", INT(avg_handle_s), 1, 86400,
     "average handling time, for wait estimates"},
    {NULL, CFG_STR, NULL, NULL, 0, 0, 0, NULL},
};

/* Keys the table does not know: an error in [router], someone else's anywhere else. */
static int router_cfg_extra(void *priv, const char *section, const char *key, const char *value,
                            cg_err *err) {
    if (strcmp(section, "router") == 0)
        return cg_err_set(err, "bad_config", "unknown key in [router]");
    return 0;
}

static void router_stop(int signum, void *priv) {
    router *r = priv;
    if (signum == SIGHUP) {
        log_info("SIGHUP ignored");
        return;
    }
    if (r->stopping) return;
    r->stopping = 1;
    log_info("router %s stopping (signal %d)", r->cfg.router_id, signum);
    loop_signals_stop();
    inbound_stop(r);
    store_stop(r);
    notify_stop(r);
    job_stop(r);
}

static int router_args(int argc, char **argv, const char **config) {
    *config = getenv("CHATGW_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            *config = argv[++i];
            continue;
        }
        fprintf(stderr, "usage: %s [--config FILE]\n", argv[0]);
        return -1;
    }
    return 0;
}

static int router_configure(router *r, const char *config) {
    cg_err err = {{0}, {0}};
    if (cfg_load(router_opts, config, router_cfg_extra, r, &err) != 0) {
        fprintf(stderr, "chatgw-router: configuration: %s\n", err.msg);
        return -1;
    }
    log_level lvl;
    if (log_level_parse(r->cfg.log_level, &lvl) != 0) {
        fprintf(stderr, "chatgw-router: configuration: log_level: '%s' is not a level\n",
                r->cfg.log_level);
        return -1;
    }
    log_init("router", lvl);
    if (!r->cfg.router_id[0]) {
        char host[64] = "router";
        gethostname(host, sizeof(host) - 1);
        snprintf(r->cfg.router_id, sizeof(r->cfg.router_id), "%.40s-%ld", host, (long)getpid());
    }
    rconn_url url;
    if (rconn_url_parse(r->cfg.redis_url, &url, &err) != 0) {
        log_error("configuration: redis_url: %s", err.msg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    router *r = &g_router;
    const char *config = NULL;
    if (router_args(argc, argv, &config) != 0) return 2;
    if (router_configure(r, config) != 0) return 2;

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        log_error("cannot create the event loop");
        return 1;
    }
    r->loop = &loop;
    job_init(r);
    notify_init(r);
    if (loop_signals_start(&loop, router_stop, r) != 0 || store_start(r) != 0 ||
        inbound_start(r) != 0) {
        router_stop(SIGTERM, r);
        loop_close_all(&loop);
        job_free_all(r);
        return 1;
    }
    log_info("router %s starting", r->cfg.router_id);
    uv_run(&loop, UV_RUN_DEFAULT);

    int rc = loop_close_all(&loop);
    job_free_all(r);
    if (rc != 0) {
        log_error("event loop did not close cleanly (%d)", rc);
        return 1;
    }
    log_info("clean shutdown");
    return 0;
}
