/* router.h -- the routing process: shared state and the interfaces between its modules.
 *
 * One libuv loop, two Redis connections: `in` for the blocking XREADGROUP on cg:in, `cmd` for
 * everything else (function calls, acks, publishes). Stream entries (read or claimed) become jobs
 * in one FIFO work queue that is processed strictly in order, one job at a time; a job is a chain
 * of steps, each step sending pipelined commands on `cmd` and continuing when all their replies
 * are in. Every step is idempotent (state checks in the Redis functions, deterministic cmids), so
 * a job that fails half-way (Redis gone) is simply run again from its start later.
 *
 * Modules: main.c (config, reload, lifecycle), rcfg.c (the routing sections of the config file),
 * classify.c (queues and rules; matching a new conversation), job.c (work queue, acks), inbound.c
 * (reading and claiming cg:in), store.c (the cmd connection, function libraries, reply helpers),
 * conv.c (customer messages), agent.c (agent commands), say.c (messages the router writes),
 * notify.c (queue snapshots, the assignment outbox), tmpl.c (texts per locale), hours.c (business
 * hours), timers.c (polling and claiming due timers of cg:timers), sla.c (SLA and position timers,
 * complaints, what a fired timer does), close.c (resolution codes, unresolved returns, idle
 * close, complaint follow-ups), csat.c (the survey after a close and ratings), reap.c (the agent
 * sockets of gateways that stopped heartbeating), health.c (the health key cg:health:router:<id>).
 */
#ifndef CG_ROUTER_H
#define CG_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>
#include <hiredis/hiredis.h>

#include "../common/evarg.h"
#include "../common/evres.h"
#include "../common/rconn.h"
#include "../common/rtls.h"
#include "../proto/msg.h"
#include <msgpack.h>

#include "classify.h"
#include "hours.h"
#include "tmpl.h"

#define ROUTER_TEXT_MAX 1024
#define ROUTER_DIRTY_MAX 256

typedef struct router_cfg {
    char redis_url[512];
    rtls_opts redis_tls; /* rediss:// (common/rtls.h): redis_tls_ca, _cert, _key, _server_name */
    char log_level[16];
    char router_id[MSG_ID_MAX];
    long long claim_idle_ms;
    long long block_ms;
    long long read_count;
    char default_queue[MSG_CODE_MAX];
    char greeting_text[ROUTER_TEXT_MAX];
    char queued_text[ROUTER_TEXT_MAX];
    char closed_text[ROUTER_TEXT_MAX];
    long long avg_handle_s;
    char default_locale[TMPL_LOCALE_MAX];
    char default_timezone[HOURS_TZ_MAX];
    long long position_update_s;
    long long position_update_max_s;
    long long timer_tick_ms;
    long long timer_lease_ms;
    long long trim_interval_ms; /* trim.c */
    long long gateway_reap_ms;  /* reap.c */
    char sla_first_response_s[256];
    char channel_weights[256];
    char sla_next_response_s[256];
    char sla_action[32];
    char escalate_queue[MSG_CODE_MAX];
    char complaint_queue[MSG_CODE_MAX];
    char complaint_sla[256];
    char resolutions[512]; /* close.c */
    char unresolved_resolutions[256];
    char no_survey_resolutions[256];
    long long survey_window_s;
    long long idle_close_s;
    long long idempotency_ttl_s; /* published as idem_ttl_s: cg_message's idempotency keys */
    long long complaint_followup_s;
    long long tickets_per_customer; /* new complaint tickets per customer per window (0: any) */
    long long ticket_window_s;
    char followup_queue[MSG_CODE_MAX];
    long long sticky_window_s; /* routing.c */
    long long offer_timeout_s;
    long long offer_max_misses;
    long long dead_consumer_ms; /* inbound.c */
    long long stall_ms;         /* health.c */
} router_cfg;

typedef enum sla_action { SLA_ESCALATE, SLA_RAISE_PRIORITY, SLA_REASSIGN } sla_action;

#define SLA_CLASSES 4 /* ordinary, serious, system_failure, media */

/* The SLA keys of router_cfg, parsed (sla.c). Seconds; 0 = no timer. */
typedef struct sla_cfg {
    long long first_s[CH_COUNT];
    long long next_s[CH_COUNT];
    long long weight_milli[CH_COUNT]; /* channel_weights, in thousandths of a capacity unit */
    long long respond_s[SLA_CLASSES];
    long long resolve_s[SLA_CLASSES];
    sla_action action;
    hours_spec tz; /* default_timezone only: the day of complaint numbers */
} sla_cfg;

typedef struct job job;

typedef struct router {
    uv_loop_t *loop;
    router_cfg cfg;
    const char *config_path; /* NULL: no file */
    cls_set cls;             /* queues and rules; replaced as a whole on SIGHUP */
    tmpl_set tmpl;           /* [templates <locale>]; replaced with cls */
    sla_cfg sla;
    rconn *in;  /* XGROUP CREATE / XREADGROUP only */
    rconn *cmd; /* FUNCTION LOAD, FCALL, XACK, XAUTOCLAIM, PUBLISH, SET */
    int stopping;
    int ready_logged; /* "ready" said since the last connection loss */
    int ready_once;   /* ... at least once */

    /* inbound.c */
    int group_ok; /* the consumer group exists (checked on this connection) */
    int reading;  /* an XREADGROUP is outstanding */
    int claiming; /* an XAUTOCLAIM is outstanding */
    char claim_cursor[48];
    uv_timer_t claim_timer;
    uv_timer_t group_retry; /* XGROUP CREATE again after a back-off */
    unsigned group_backoff_ms;
    int consumers_checking; /* an XINFO CONSUMERS is outstanding */
    int64_t consumers_at;   /* when dead consumers were last looked for */
    char in_why[96];        /* why reading cg:in does not go on, "" when it does */

    /* store.c: the start-up of the cmd connection (docs/architecture.md, "Loading and health") */
    uv_timer_t start_retry; /* the library check again after a back-off */
    unsigned start_backoff_ms;
    int lib_checking;     /* a version check or load is outstanding */
    long long lib_theirs; /* the library version Redis holds; -1 unknown */
    char why[96];         /* what the library check waits for, "" when nothing */

    /* health.c */
    uv_timer_t health_tick;
    int health_writing;
    const void *stall_head; /* the head job at the last look, and since when it is there */
    char stall_id[48];
    int64_t stall_since;
    int64_t idle_since; /* ready, no job and no read outstanding since (0: not so) */

    /* store.c */
    int fn_loaded; /* cmd is up and the library is loaded (our version or newer) */

    /* job.c */
    job *head, *tail;
    size_t n_jobs;
    int running; /* jobs running now (job.c: up to JOB_PARALLEL customer entries at once) */
    int kicking; /* inside job_kick()'s loop */
    char **acks;
    size_t n_acks, cap_acks;
    uv_timer_t retry_timer;

    /* notify.c */
    char dirty[ROUTER_DIRTY_MAX][MSG_CODE_MAX];
    int n_dirty;
    int outbox_queued; /* an outbox job is in the work queue */
    uv_timer_t notify_timer;

    /* timers.c */
    int timer_claiming; /* a cg_timer_claim is outstanding */
    uv_timer_t timer_tick;
    uv_timer_t trim_tick; /* trim.c */
    uv_timer_t reap_tick; /* reap.c */
    int reaping;          /* a cg_gw_reap is outstanding */
} router;

/* ---- job.c: the work queue ------------------------------------------------------------------ */

typedef enum job_kind { JOB_ENTRY, JOB_OUTBOX, JOB_TIMER } job_kind;

#define JOB_MEMBER_MAX 160

typedef void job_step_fn(job *j);
typedef void job_reply_fn(job *j, redisReply *reply);

/* What cg_conv_info / the route functions say about one assignment. */
typedef struct asg_row {
    char conv[MSG_ID_MAX];
    char agent[MSG_ID_MAX];
    char agent_name[MSG_NAME_MAX];
    char queue[MSG_CODE_MAX];
    long long assign_no;
    char channel[MSG_CODE_MAX];
} asg_row;

struct job {
    router *r;
    job *next;
    job_kind kind;
    char id[48];           /* cg:in entry id (JOB_ENTRY) */
    char conv[MSG_ID_MAX]; /* entry field c */
    char *raw;             /* entry field m (msgpack), owned */
    int rated; /* entry field r: cg_message took this message as a survey answer, 1..5; 0 = not */
    size_t raw_len;
    msg m;       /* decoded raw (JOB_ENTRY: at push), valid until the job is freed */
    int decoded; /* JOB_ENTRY: m holds raw, decoded and valid */
    int64_t now_ms;
    int pending;  /* replies (plus one guard while a step runs) still to come */
    int failed;   /* a command got no reply / a transient error: run the job again later */
    int active;   /* started and not settled */
    int parallel; /* a customer's entry: may run beside other conversations' entries (job.c) */
    job_step_fn *then;
    /* scratch shared by the steps of conv.c / agent.c */
    char state[16];
    char channel[MSG_CODE_MAX];
    char queue[MSG_CODE_MAX];
    char resolution[MSG_CODE_MAX];
    long long position;
    int in_outbox;
    char member[JOB_MEMBER_MAX]; /* JOB_TIMER: cg:timers member and its lease score */
    char lease[24];
    char locale[TMPL_LOCALE_MAX];
    int staffed; /* someone who serves the queue (or its overflow) is online */
    int told;    /* cg_customer_msg did the timers and the waiting reply itself ('info', 'told') */
    int rows_announced; /* the event call announced the assignments it returns (say_rows_fields) */
    /* conv.c: the classification of a customer's message (cg_customer_msg) */
    char category[CLS_NAME_MAX];
    char complaint_class[CLS_NAME_MAX];
    int prio;
    asg_row row;
    int has_row;
};

/* Queue a cg:in entry (raw copied; seq: its field s, 0 when none) / an outbox drain. Entries
 * already queued are not added. */
void job_push_entry(router *r, const char *id, const char *conv, const char *raw, size_t len,
                    int rated, uint64_t seq);
void job_push_outbox(router *r);
/* Queue a claimed timer (member with lease score); a member already queued is not added. */
void job_push_timer(router *r, const char *member, const char *lease);
/* Run queued jobs while possible (cmd ready, nothing running). Safe to call anywhere. */
void job_kick(router *r);
/* Send one command on cmd for job j; fn (may be NULL) gets the reply unless the command failed.
 * The job continues with j->then once every reply of the current step is in. */
void job_cmdargv(job *j, job_reply_fn *fn, int argc, const char **argv, const size_t *lens);
/* The same for commands whose arguments are all NUL-terminated strings (argc of them). */
void job_cmd(job *j, job_reply_fn *fn, int argc, ...);

/* ---- the event functions' map argument and named answers (common/evarg.h, common/evres.h) ----
 * evarg_call (job.c) sends FCALL <fn> 1 <tenant> <map> for j (reply as job_cmd's) and frees
 * the map. */
void evarg_call(job *j, const char *fn, job_reply_fn *reply, evarg *a);
/* Send the collected XACKs now. */
void job_flush_acks(router *r);
void job_init(router *r);
void job_stop(router *r);
/* Free every job and ack (after the loop is closed). */
void job_free_all(router *r);

/* ---- inbound.c: reading cg:in ------------------------------------------------------------- */

int inbound_start(router *r);
/* Read the next batch if none is outstanding and the work queue is empty. */
void inbound_read_next(router *r);
/* Take over entries idle longer than claim_idle_ms (XAUTOCLAIM on cmd), now. */
void inbound_claim(router *r);
void inbound_stop(router *r);

/* ---- store.c: the cmd connection ---------------------------------------------------------- */

int store_start(router *r);
void store_stop(router *r);
/* Log "router <id> ready" once, when the group exists, reading started and functions loaded. */
void store_maybe_ready(router *r);
/* Publish the queue configuration (FCALL cg_queuecfg, see redis/queue.lua) when cmd is ready;
 * called on every (re)load of the functions and after a reload of the configuration. */
void store_publish_queues(router *r);
/* Parse an assignment ROW reply. 0, or -1 when empty or malformed. */
int store_row_parse(const redisReply *rep, asg_row *out);
/* 1 for error replies worth retrying later (LOADING, BUSY, MASTERDOWN, TRYAGAIN, ...; a function
 * not found, which also starts a check of the library). */
int store_transient(const redisReply *rep);
/* Check the library's version now (and load it when missing or older); fn_loaded stays set
 * while a check of a library that was in runs. */
void store_check_libs(router *r);

/* ---- health.c: cg:health:router:<id> ------------------------------------------------------ */

/* Refresh the health key every second: ok, starting/loading (what the start-up waits for) or
 * stalled (work that does not move). */
void health_start(router *r);
void health_stop(router *r);

/* ---- conv.c / agent.c: handling one entry ------------------------------------------------- */

void conv_on_customer(job *j);
void agent_on_presence(job *j);
void agent_on_pick(job *j);
void agent_on_close(job *j);

/* ---- variant.c: a router message in every configured locale, for the event functions ---- */

/* What one message of an event function is: its type and role, code, and template key (with at
 * most one variable, a duration rendered per locale by say_duration). */
typedef struct variant_spec {
    msg_type type;
    msg_role role;
    const char *code; /* NULL = none */
    tmpl_key key;
    const char *var; /* the template variable for duration_s, NULL = none */
    long long duration_s;
    int off_when_empty;   /* an empty text means no message (bot texts); else the message goes
                           * without a text (events) */
    const tmpl_var *vars; /* more variables, the same in every locale (n_vars of them) */
    size_t n_vars;
} variant_spec;
/* The field `locales`: '=<name>' and '~<language>' (lower case) of every [templates <locale>]
 * section, in order, to its index in a variant array (tmpl_find's rule); 1 fields of the map. */
void variant_locales(evarg *a, const router *r);
/* The field `field`: an array of payloads (say_payload), [1] the default locale's (a customer
 * whose locale matches no section), then one per section; "" where the message is off. 1 field
 * of the map. */
void variant_pack(evarg *a, const char *field, job *j, const variant_spec *s);
/* The fields dur_min and dur_hour: the units of a duration in every locale (say_duration_unit),
 * arrays like variant_pack's, for the durations the library writes itself. 2 fields. */
void variant_units(evarg *a, const router *r);

/* ---- say.c: what the router writes --------------------------------------------------------- */

/* A router message of type and role with code, conv and text (each may be "" or NULL) and no
 * channel (the conversation's channel is the library's to know), as the msgpack payload an event
 * function appends: malloc'd, *len its size; NULL on failure (a text msg_set_text refuses, no
 * memory). The caller frees. */
unsigned char *say_payload(job *j, msg_type type, msg_role role, const char *code, const char *conv,
                           const char *text, size_t *len);
/* Template k for locale (no variables) as the msgpack payload of a bot text with code = the
 * template's key (greeting, ...: clients may act on which text it is), for an event function that
 * appends it itself: malloc'd, *len its size; NULL when
 * the template is empty (switched off) or on failure. The caller frees. */
unsigned char *say_tmpl_payload(job *j, const char *channel, const char *locale, tmpl_key k,
                                size_t *len);
/* The text of k for a customer of locale (templates, then the [router] *_text keys, then the
 * built-in English text). */
const char *say_template(const router *r, const char *locale, tmpl_key k);
/* The unit of a duration in locale's words: "min" / "分钟", hours: "h" / "小时". */
const char *say_duration_unit(const char *locale, int hours);
/* "{n} min" / "{n} 分钟" (by locale) for a duration, rounded up to whole minutes (or hours):
 * whole hours from 2 h on (redis/event.lua duration_text keeps the same rule). */
void say_duration(const char *locale, long long secs, char *out, size_t n);
/* Announce an assignment in one call, FCALL cg_announce (redis/event.lua): append `assigned`
 * (cmid cg:asg:<no>), publish it on cg:a:<agent>, leave the outbox, arm offer:<conv> (chats,
 * offer_timeout_s) and idle:<conv> (idle_close_s); marks the queue dirty. */
void say_assigned(job *j, const asg_row *row);
/* The `assigned` event as cg_customer_msg announces an assignment it made itself: text "{name}
 * has joined" (the call fills in the agent's name and sets agent_id, agent_name, queue and
 * channel). malloc'd, *len its size; NULL on failure. The caller frees. */
unsigned char *say_assigned_payload(job *j, size_t *len);
/* The fields with which an event function announces the assignments it makes itself (redis/
 * event.lua announce_row): assigned (say_assigned_payload), offer_ms (offer_timeout_s, chats),
 * idle_ms (idle_close_s). 3 fields. */
void say_rows_fields(evarg *a, job *j);
/* The `transferred` event (role system, no channel) as the payload cg_agent_transfer appends:
 * agent_id of the target agent (its name is set in the call) or queue of the target queue, text =
 * the agent's note. malloc'd, *len its size; NULL on failure. The caller frees. */
unsigned char *say_transferred_payload(job *j, const char *to_agent, const char *queue,
                                       const char *note, size_t *len);
/* When rep is a function error refusing the agent's command j->m (NOTASSIGNED, CLOSED, PICKFAIL,
 * TRANSFERFAIL, CLASSIFYFAIL): log it, tell the agent (error code + the reason after the prefix,
 * with the command's cmid and conv) and return 1; other errors are only logged (1). 0 when rep
 * is not an error. */
int say_refused(job *j, const redisReply *rep, const char *command);
/* say_assigned for every ROW of the array rows (a function's assignments); others skipped. */
void say_assigned_rows(job *j, const redisReply *rows);
/* Publish an error for the agent's command on cg:a:<agent>. */
void say_agent_error(job *j, const char *agent, const char *code, const char *text,
                     const char *cmid, const char *conv);

/* ---- notify.c: queue snapshots and the outbox ---------------------------------------------- */

void notify_init(router *r);
void notify_stop(router *r);
/* Queue q changed: publish its snapshot (coalesced, on the next loop turn). */
void notify_dirty(router *r, const char *queue);
/* Publish the pending snapshots if any (called when cmd becomes ready). */
void notify_kick(router *r);
/* First step of a JOB_OUTBOX job. */
void notify_outbox_step(job *j);

/* ---- timers.c: due timers of cg:timers ------------------------------------------------------ */

void timers_start(router *r);
void timers_stop(router *r);

/* ---- trim.c: bounded work streams (cg:in, cg:out:<channel>) ---- */

/* Start/stop the trim_interval_ms timer (0: never trims). */
void trim_start(router *r);
void trim_stop(router *r);
/* Trim every work stream down to what its consumer group still needs (cg_trim), now. */
void trim_poll(router *r);
/* Claim due timers now (when cmd is ready and no claim is outstanding). */
void timers_poll(router *r);

/* ---- reap.c: agent sockets of dead gateways (cg_gw_reap) ---- */

/* Start/stop the gateway_reap_ms timer (0: never reaps). */
void reap_start(router *r);
void reap_stop(router *r);
/* Drop the sockets of gateways whose liveness key expired (cg_gw_reap), now. */
void reap_poll(router *r);

/* ---- sla.c: SLA, position updates, complaints --------------------------------------------- */

/* Parse the SLA keys of c into out. 0, or -1 with err naming the key. */
int sla_cfg_parse(const router_cfg *c, sla_cfg *out, cg_err *err);

/* check.c: --check-config. Prints the configuration's summary and which queues the agents reach
 * (skills: n comma lists, one per agent; n 0: the agents known to Redis). Returns the exit code:
 * 0 every queue reachable (or nothing to check against), 1 some queue is not. */
int check_config(const router *r, char **skills, size_t n);
/* 1 for the channels that get periodic position updates (every channel but email). */
int sla_is_chat(const char *channel);
/* The first- and next-response deadlines (ms, 0 = none) of a customer message at now in a
 * conversation of channel waiting in queue (business hours counted), as sla_on_customer arms. */
void sla_customer_dues(const router *r, const char *channel, const char *queue, int64_t now,
                       long long *first, long long *next);
/* A customer message in conv (state known in j): arm first/next response timers. */
void sla_on_customer(job *j);
/* An agent's text or attachment the routers read, in one call (FCALL cg_agent_msg,
 * redis/event.lua): cancel the response timers of its conversation (the first one also counts
 * the first response time for the queue and the sending agent) and re-arm the idle close. */
void sla_on_agent(job *j);
/* The complaint fields of an event's map (8 fields: complaint 1, day, respond_due, resolve_due,
 * class, limit, window, complaint_ack in every locale: the caller packs `locales`) for a complaint
 * of complaint_class (unknown: ordinary) made now: cg_complaint's arguments and the customer's
 * acknowledgement ({ticket} filled in by the call). */
void sla_complaint_fields(evarg *a, job *j, const char *complaint_class);
/* First step of a JOB_TIMER job. */
void sla_timer_step(job *j);

/* ---- close.c: how conversations end (resolution codes, idle close, complaint follow-up) ----- */

/* The customer ended its conversation j->conv (a close frame of role customer): one call,
 * FCALL cg_customer_end (redis/event.lua), closes it (abandoned while waiting, customer_left
 * while assigned) and tells both sides. */
void close_by_customer(job *j);
/* An agent's close command with j->resolution: 0 when the code is one of [router] resolutions
 * (*unresolved 0) or unresolved_resolutions (*unresolved 1); -1 when it is unknown (refused here
 * with bad_value to the agent). */
int close_check(job *j, int *unresolved);
/* The fields of an event's map that tell the customer of a close with resolution (4 fields):
 * survey_until and followup_due (survey_window_s unless resolution is one of
 * no_survey_resolutions; complaint_followup_s for codes starting with "resolved"), the closed
 * event in every locale as closed_field, and the survey as survey (variant.c). */
void close_texts(evarg *a, job *j, const char *closed_field, const char *resolution);
/* A message of either side in assigned conv: (re)arm idle:<conv> (no-op when idle_close_s 0). */
void close_idle_arm(job *j, const char *conv);
/* 1 for the cg:timers members close.c fires (idle:, followup:). */
/* First step of a JOB_TIMER job for such a member. */
void close_timer_step(job *j);

/* ---- csat.c: satisfaction survey and ratings ---------------------------------------------- */

/* A customer entry: 1 when it is a survey answer (a `rating` message, or a one-digit answer that
 * cg_message attached to the closed conversation: j->rated), handled here in one call (FCALL
 * cg_customer_rating: the rating event for a digit, the thanks in the customer's locale), or a
 * rating of an open conversation (nothing to do); 0 for any other message. */
int csat_on_customer(job *j);

/* ---- routing.c: sticky agents, offer timeout, overflow; transfer.c: the transfer command ---- */

/* 1 for the cg:timers members routing.c fires (offer:, overflow:). */
/* First step of a JOB_TIMER job for such a member. */
void routing_timer_step(job *j);
/* An agent's transfer command (to agent_id or to queue, text = note). */
void agent_on_transfer(job *j);

/* ---- reclass.c: the classify command ---- */

/* An agent's classify command (code = a rule name or "default"). */
void agent_on_classify(job *j);

#endif
