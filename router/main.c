/* main.c -- chatgw-router: configuration, start, reload on SIGHUP and clean shutdown on
 * SIGINT/SIGTERM.
 *
 * Usage: chatgw-router [--config FILE]   (or CHATGW_CONFIG=FILE); every key can also be set
 * with CHATGW_<KEY>. `--check-config [--skills LIST]...` checks the file and reports the queues
 * no agent can reach (check.c) instead of running. The INI file is shared with the gateway: keys of
 * [router] and [common], the routing sections [queue <q>], [rule <r>], [priority <p>] (rcfg.c) and
 * the texts [templates <locale>] (tmpl.c) are ours, other sections are ignored.
 *
 * The file is loaded into a staging copy (g_load) and a new routing set; only when both are valid
 * are they taken. SIGHUP re-reads the file the same way: an invalid file is logged and the running
 * configuration kept; a valid one replaces the routing set and the texts (redis_url, router_id and
 * the read/claim timings need a restart) and the queue configuration is published again. */
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
#include "rcfg.h"

static router g_router;
static router_cfg g_load; /* what the table loads into; taken by router_configure/reload */

#define STR(field) &g_load.field, sizeof(g_load.field)
#define INT(field) &g_load.field, 0

static const cfg_opt router_opts[] = {
    {"redis_url", CFG_STR, "redis://127.0.0.1:6379", STR(redis_url), 0, 0, "Redis URL"},
    {"redis_tls_ca", CFG_STR, "", STR(redis_tls.ca), 0, 0,
     "rediss://: PEM file of the CA that signed Redis' certificate; empty: the system's"},
    {"redis_tls_cert", CFG_STR, "", STR(redis_tls.cert), 0, 0,
     "rediss://: PEM client certificate (Redis' tls-auth-clients yes)"},
    {"redis_tls_key", CFG_STR, "", STR(redis_tls.key), 0, 0,
     "rediss://: PEM private key of redis_tls_cert"},
    {"redis_tls_server_name", CFG_STR, "", STR(redis_tls.server_name), 0, 0,
     "rediss://: the name Redis' certificate must carry (and SNI); empty: the URL's host"},
    {"log_level", CFG_STR, "info", STR(log_level), 0, 0, "debug, info, warn or error"},
    {"router_id", CFG_STR, NULL, STR(router_id), 0, 0, "consumer name (default hostname-pid)"},
    {"claim_idle_ms", CFG_INT, "3000", INT(claim_idle_ms), 100, 86400000,
     "take over entries pending longer than this (a crashed router's, or a stuck one's)"},
    {"dead_consumer_ms", CFG_INT, "60000", INT(dead_consumer_ms), 0, 86400000,
     "remove consumers of cg:in idle this long with nothing pending (0: never)"},
    {"stall_ms", CFG_INT, "3000", INT(stall_ms), 500, 3600000,
     "health says stalled when work has not moved for this long"},
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
     "average handling time, for wait estimates until measured"},
    {"default_locale", CFG_STR, "zh-CN", STR(default_locale), 0, 0,
     "locale of customers whose first message names none"},
    {"default_timezone", CFG_STR, "", STR(default_timezone), 0, 0,
     "IANA zone of complaint numbers (default: the system's)"},
    {"position_update_s", CFG_INT, "15", INT(position_update_s), 1, 3600,
     "how often a waiting chat customer's position is checked"},
    {"position_update_max_s", CFG_INT, "60", INT(position_update_max_s), 1, 86400,
     "an unchanged position is repeated after this long"},
    {"timer_tick_ms", CFG_INT, "250", INT(timer_tick_ms), 10, 60000,
     "how often due timers are claimed"},
    {"trim_interval_ms", CFG_INT, "10000", INT(trim_interval_ms), 0, 3600000,
     "how often cg:in and cg:out:* are trimmed to what their readers still need (0: never)"},
    {"gateway_reap_ms", CFG_INT, "1000", INT(gateway_reap_ms), 0, 3600000,
     "how often the agent sockets of gateways that stopped heartbeating are dropped (0: never)"},
    {"timer_lease_ms", CFG_INT, "30000", INT(timer_lease_ms), 100, 3600000,
     "a claimed timer not fired within this long is claimed again"},
    {"sla_first_response_s", CFG_STR, "chat:60, email:7200", STR(sla_first_response_s), 0, 0,
     "first response SLA per channel (chat = every channel but email)"},
    {"sla_next_response_s", CFG_STR, "chat:60, email:7200", STR(sla_next_response_s), 0, 0,
     "next response SLA per channel"},
    {"idempotency_ttl_s", CFG_INT, "86400", INT(idempotency_ttl_s), 60, 604800,
     "how long a message id (cmid) is remembered: a re-send within it is a duplicate"},
    {"channel_weights", CFG_STR, "chat:1, email:0.5", STR(channel_weights), 0, 0,
     "capacity units a conversation of each channel takes of its agent's cap"},
    {"sla_action", CFG_STR, "escalate", STR(sla_action), 0, 0,
     "escalate, raise_priority or reassign"},
    {"escalate_queue", CFG_STR, "supervisors", STR(escalate_queue), 0, 0,
     "queue of escalated conversations; its online agents are notified"},
    {"complaint_queue", CFG_STR, "complaints", STR(complaint_queue), 0, 0,
     "conversations classified here get a complaint ticket"},
    {"complaint_sla", CFG_STR,
     "ordinary:86400/172800, serious:43200/86400, system_failure:1800/7200, media:3600/86400",
     STR(complaint_sla), 0, 0, "respond/resolve seconds per complaint class"},
    {"resolutions", CFG_STR, "resolved,resolved_workaround,duplicate,spam,no_response,unresolved",
     STR(resolutions), 0, 0, "resolution codes an agent may close with"},
    {"no_survey_resolutions", CFG_STR, "spam,duplicate", STR(no_survey_resolutions), 0, 0,
     "resolution codes after which the customer gets no survey"},
    {"unresolved_resolutions", CFG_STR, "unresolved", STR(unresolved_resolutions), 0, 0,
     "codes that do not close: the conversation goes back to its queue"},
    {"survey_window_s", CFG_INT, "86400", INT(survey_window_s), 0, 366 * 86400,
     "a rating is taken this long after the close (0: no survey)"},
    {"idle_close_s", CFG_INT, "1800", INT(idle_close_s), 0, 7 * 86400,
     "close an assigned conversation silent this long (0: never)"},
    {"tickets_per_customer", CFG_INT, "5", INT(tickets_per_customer), 0, 1000000,
     "new complaint tickets one customer gets per ticket_window_s (0: no limit)"},
    {"ticket_window_s", CFG_INT, "86400", INT(ticket_window_s), 60, 366 * 86400,
     "the window of tickets_per_customer"},
    {"complaint_followup_s", CFG_INT, "86400", INT(complaint_followup_s), 0, 30 * 86400,
     "queue a follow-up task this long after a complaint is resolved (0: none)"},
    {"followup_queue", CFG_STR, "", STR(followup_queue), 0, 0,
     "queue of follow-up tasks (default: complaint_queue)"},
    {"sticky_window_s", CFG_INT, "86400", INT(sticky_window_s), 0, 366 * 86400,
     "a returning customer goes to its last agent within this long (0: off)"},
    {"offer_timeout_s", CFG_INT, "0", INT(offer_timeout_s), 0, 86400,
     "take back an assignment the agent does not answer within this long (0: off)"},
    {"offer_max_misses", CFG_INT, "3", INT(offer_max_misses), 0, 1000,
     "consecutive missed offers that set an agent away (0: never)"},
    {NULL, CFG_STR, NULL, NULL, 0, 0, 0, NULL},
};

/* Load the file (or r->config_path) into g_load, *set, *tmpl and *sla. 0, or -1 with err (and
 * nothing to free). */
static int router_load(router *r, cls_set *set, tmpl_set *tmpl, sla_cfg *sla, cg_err *err) {
    if (rcfg_load(router_opts, r->config_path, g_load.default_queue, set, err) != 0) return -1;
    log_level lvl;
    if (log_level_parse(g_load.log_level, &lvl) != 0) {
        cls_set_free(set);
        return cg_err_set(err, "bad_config", "log_level: '%s' is not a level", g_load.log_level);
    }
    if (sla_cfg_parse(&g_load, sla, err) != 0) {
        cls_set_free(set);
        return -1;
    }
    if (tmpl_load(r->config_path, tmpl, err) != 0) {
        cls_set_free(set);
        return -1;
    }
    return 0;
}

/* SIGHUP: re-read the configuration file; keep the running one when the file is invalid. */
static void router_reload(router *r) {
    cg_err err = {{0}, {0}};
    cls_set set;
    tmpl_set tmpl;
    sla_cfg sla;
    if (router_load(r, &set, &tmpl, &sla, &err) != 0) {
        log_error("reload: %s; keeping the running configuration", err.msg);
        return;
    }
    router_cfg *c = &r->cfg;
    if (strcmp(c->redis_url, g_load.redis_url) != 0 || c->claim_idle_ms != g_load.claim_idle_ms ||
        c->block_ms != g_load.block_ms || c->read_count != g_load.read_count ||
        memcmp(&c->redis_tls, &g_load.redis_tls, sizeof(c->redis_tls)) != 0)
        log_warn("reload: redis_url, redis_tls_*, claim_idle_ms, block_ms and read_count apply "
                 "after a restart");
    memcpy(c->log_level, g_load.log_level, sizeof(c->log_level));
    memcpy(c->default_queue, g_load.default_queue, sizeof(c->default_queue));
    memcpy(c->greeting_text, g_load.greeting_text, sizeof(c->greeting_text));
    memcpy(c->queued_text, g_load.queued_text, sizeof(c->queued_text));
    memcpy(c->closed_text, g_load.closed_text, sizeof(c->closed_text));
    c->avg_handle_s = g_load.avg_handle_s;
    c->dead_consumer_ms = g_load.dead_consumer_ms;
    c->stall_ms = g_load.stall_ms;
    if (c->timer_tick_ms != g_load.timer_tick_ms)
        log_warn("reload: timer_tick_ms applies after a restart");
    long long tick = c->timer_tick_ms;
    /* the remaining keys are all read when used: take them as a whole */
    memcpy(c->default_locale, g_load.default_locale, sizeof(c->default_locale));
    memcpy(c->default_timezone, g_load.default_timezone, sizeof(c->default_timezone));
    c->position_update_s = g_load.position_update_s;
    c->position_update_max_s = g_load.position_update_max_s;
    c->timer_lease_ms = g_load.timer_lease_ms;
    if (c->trim_interval_ms != g_load.trim_interval_ms)
        log_warn("reload: trim_interval_ms applies after a restart");
    if (c->gateway_reap_ms != g_load.gateway_reap_ms)
        log_warn("reload: gateway_reap_ms applies after a restart");
    memcpy(c->sla_first_response_s, g_load.sla_first_response_s, sizeof(c->sla_first_response_s));
    memcpy(c->channel_weights, g_load.channel_weights, sizeof(c->channel_weights));
    memcpy(c->sla_next_response_s, g_load.sla_next_response_s, sizeof(c->sla_next_response_s));
    memcpy(c->sla_action, g_load.sla_action, sizeof(c->sla_action));
    memcpy(c->escalate_queue, g_load.escalate_queue, sizeof(c->escalate_queue));
    memcpy(c->complaint_queue, g_load.complaint_queue, sizeof(c->complaint_queue));
    memcpy(c->complaint_sla, g_load.complaint_sla, sizeof(c->complaint_sla));
    memcpy(c->resolutions, g_load.resolutions, sizeof(c->resolutions));
    memcpy(c->no_survey_resolutions, g_load.no_survey_resolutions,
           sizeof(c->no_survey_resolutions));
    memcpy(c->unresolved_resolutions, g_load.unresolved_resolutions,
           sizeof(c->unresolved_resolutions));
    c->survey_window_s = g_load.survey_window_s;
    c->idle_close_s = g_load.idle_close_s;
    c->idempotency_ttl_s = g_load.idempotency_ttl_s;
    c->complaint_followup_s = g_load.complaint_followup_s;
    c->tickets_per_customer = g_load.tickets_per_customer;
    c->ticket_window_s = g_load.ticket_window_s;
    memcpy(c->followup_queue, g_load.followup_queue, sizeof(c->followup_queue));
    c->sticky_window_s = g_load.sticky_window_s;
    c->offer_timeout_s = g_load.offer_timeout_s;
    c->offer_max_misses = g_load.offer_max_misses;
    c->timer_tick_ms = tick;
    r->sla = sla;
    tmpl_set_free(&r->tmpl);
    r->tmpl = tmpl;
    log_level lvl = LOG_INFO;
    log_level_parse(c->log_level, &lvl);
    log_init("router", lvl);
    cls_set_free(&r->cls);
    r->cls = set;
    log_info("reload: %zu queues, %zu rules, %zu priority rules", set.n_queues, set.n_rules,
             set.n_prios);
    store_publish_queues(r);
}

static void router_stop(int signum, void *priv) {
    router *r = priv;
    if (r->stopping) return;
    r->stopping = 1;
    log_info("router %s stopping (signal %d)", r->cfg.router_id, signum);
    loop_signals_stop();
    inbound_stop(r);
    store_stop(r);
    notify_stop(r);
    timers_stop(r);
    trim_stop(r);
    reap_stop(r);
    health_stop(r);
    job_stop(r);
}

/* Signals, from the loop: SIGHUP reloads, SIGINT/SIGTERM stop. */
static void router_signal(int signum, void *priv) {
    router *r = priv;
    if (signum != SIGHUP) {
        router_stop(signum, r);
        return;
    }
    if (!r->stopping) router_reload(r);
}

/* The command line. --check-config (with any --skills, pointers into argv, at most argc) asks
 * for the report of check.c instead of a run. */
typedef struct router_argv {
    const char *config;
    int check;
    char **skills;
    size_t n_skills;
} router_argv;

static int router_args(int argc, char **argv, router_argv *a) {
    a->config = getenv("CHATGW_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            a->config = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            a->check = 1;
        } else if (strcmp(argv[i], "--skills") == 0 && i + 1 < argc) {
            a->skills[a->n_skills++] = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: %s [--config FILE] [--check-config [--skills LIST]...]\n"
                    "  --check-config   check the configuration and report the queues no agent\n"
                    "                   can reach (exit 0 all reachable, 1 some not, 2 invalid)\n"
                    "  --skills LIST    one agent's skills (comma list); repeat per agent;\n"
                    "                   default: the agents known to Redis\n",
                    argv[0]);
            return -1;
        }
    }
    if (a->n_skills && !a->check) {
        fprintf(stderr, "%s: --skills is only for --check-config\n", argv[0]);
        return -1;
    }
    return 0;
}

static int router_configure(router *r, const char *config) {
    cg_err err = {{0}, {0}};
    r->config_path = config;
    if (router_load(r, &r->cls, &r->tmpl, &r->sla, &err) != 0) {
        fprintf(stderr, "chatgw-router: configuration: %s\n", err.msg);
        return -1;
    }
    r->cfg = g_load;
    log_level lvl = LOG_INFO;
    log_level_parse(r->cfg.log_level, &lvl);
    log_init("router", lvl);
    if (!r->cfg.router_id[0]) {
        char host[64] = "router";
        gethostname(host, sizeof(host) - 1);
        snprintf(r->cfg.router_id, sizeof(r->cfg.router_id), "%.40s-%ld", host, (long)getpid());
    }
    rtls_set_opts(&r->cfg.redis_tls); /* before any rediss:// connection, --check-config's too */
    rconn_url url;
    if (rconn_url_parse(r->cfg.redis_url, &url, &err) != 0) {
        log_error("configuration: redis_url: %s", err.msg);
        cls_set_free(&r->cls);
        tmpl_set_free(&r->tmpl);
        return -1;
    }
    log_info("configuration: %zu queues, %zu rules, %zu priority rules, %zu template locales",
             r->cls.n_queues, r->cls.n_rules, r->cls.n_prios, r->tmpl.n);
    return 0;
}

int main(int argc, char **argv) {
    router *r = &g_router;
    char *skills[argc > 0 ? argc : 1];
    router_argv args = {.skills = skills};
    if (router_args(argc, argv, &args) != 0) return 2;
    if (args.check) log_init("router", LOG_WARN); /* the report only */
    if (router_configure(r, args.config) != 0) return 2;
    if (args.check) {
        int rc = check_config(r, args.skills, args.n_skills);
        cls_set_free(&r->cls);
        tmpl_set_free(&r->tmpl);
        return rc;
    }

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        log_error("cannot create the event loop");
        return 1;
    }
    r->loop = &loop;
    job_init(r);
    notify_init(r);
    timers_start(r);
    trim_start(r);
    reap_start(r);
    health_start(r);
    if (loop_signals_start(&loop, router_signal, r) != 0 || store_start(r) != 0 ||
        inbound_start(r) != 0) {
        router_stop(SIGTERM, r);
        loop_close_all(&loop);
        job_free_all(r);
        cls_set_free(&r->cls);
        tmpl_set_free(&r->tmpl);
        return 1;
    }
    log_info("router %s starting", r->cfg.router_id);
    uv_run(&loop, UV_RUN_DEFAULT);

    int rc = loop_close_all(&loop);
    job_free_all(r);
    cls_set_free(&r->cls);
    tmpl_set_free(&r->tmpl);
    if (rc != 0) {
        log_error("event loop did not close cleanly (%d)", rc);
        return 1;
    }
    log_info("clean shutdown");
    return 0;
}
