/* job.c -- the router's work queue: cg:in entries, outbox drains and fired timers, in order.
 *
 * Jobs run one at a time, except a customer's entries: up to JOB_PARALLEL of them, of different
 * conversations, run at once, so that a burst of new conversations is assigned at the pace of
 * Redis, not of one round trip after another. A job starts only when no earlier job of its
 * conversation is queued or running, and every other job (an agent's command or presence, a
 * timer, the outbox) waits for everything before it and holds back everything after it, so the
 * order of what one conversation or one agent does is kept. The Redis functions are atomic and
 * safe for any number of routers running the same events at once: running a few of one router's
 * at once is no different.
 *
 * A job runs as a chain of steps. A step sends commands with job_cmd()/job_cmdargv() and sets
 * j->then; when the last reply of the step is in, j->then runs (or, when none is set, the job is
 * done: its entry id joins the XACK batch and it is freed). A NULL reply or a transient error
 * marks the job failed: it stays at the head and is run again from its first step when the cmd
 * connection is ready again (or after a short retry delay). */
#include "router.h"
#include "desk_schema.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

#define JOB_RETRY_MS 500
#define JOB_MAX_ARGS 32
#define JOB_PARALLEL 32 /* customer entries running at once */
#define JOB_SCAN 256    /* queued jobs looked at for one that may start */

typedef struct job_call {
    job *j;
    job_reply_fn *fn;
} job_call;

static void job_release(job *j);

void job_init(router *r) {
    uv_timer_init(r->loop, &r->retry_timer);
}

void job_stop(router *r) {
    uv_timer_stop(&r->retry_timer);
    if (!uv_is_closing((uv_handle_t *)&r->retry_timer))
        uv_close((uv_handle_t *)&r->retry_timer, NULL);
}

static void job_free(job *j) {
    msg_free(&j->m);
    free(j->raw);
    free(j);
}

void job_free_all(router *r) {
    while (r->head) {
        job *j = r->head;
        r->head = j->next;
        job_free(j);
    }
    r->tail = NULL;
    r->n_jobs = 0;
    for (size_t i = 0; i < r->n_acks; i++)
        free(r->acks[i]);
    free(r->acks);
    r->acks = NULL;
    r->n_acks = r->cap_acks = 0;
}

static void job_append(router *r, job *j) {
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    r->n_jobs++;
}

static int job_queued(const router *r, const char *id) {
    for (const job *j = r->head; j; j = j->next)
        if (j->kind == JOB_ENTRY && strcmp(j->id, id) == 0) return 1;
    return 0;
}

void job_push_entry(router *r, const char *id, const char *conv, const char *raw, size_t len,
                    int rated, uint64_t seq) {
    if (job_queued(r, id)) return;
    job *j = calloc(1, sizeof(*j));
    char *copy = malloc(len ? len : 1);
    if (!j || !copy) {
        log_error("out of memory queueing entry %s", id);
        free(j);
        free(copy);
        return;
    }
    memcpy(copy, raw, len);
    j->r = r;
    j->kind = JOB_ENTRY;
    cg_strlcpy(j->id, id, sizeof(j->id));
    cg_strlcpy(j->conv, conv, sizeof(j->conv));
    j->raw = copy;
    j->raw_len = len;
    j->rated = rated >= 1 && rated <= 5 ? rated : 0;
    msg_init(&j->m);
    /* decoded once, here: a customer's entry may run beside other conversations' */
    cg_err err = {{0}, {0}};
    j->decoded = msg_decode_msgpack(&j->m, raw, len, &err) == 0 &&
                 msg_validate(&j->m, ORIGIN_INTERNAL, &err) == 0;
    msg_stored_fill(&j->m);
    j->m.seq = seq; /* the entry's (the stored payload carries none) */
    j->parallel = j->decoded && conv[0] && j->m.role == ROLE_CUSTOMER;
    job_append(r, j);
}

void job_push_outbox(router *r) {
    if (r->outbox_queued) return;
    job *j = calloc(1, sizeof(*j));
    if (!j) return;
    j->r = r;
    j->kind = JOB_OUTBOX;
    msg_init(&j->m);
    r->outbox_queued = 1;
    job_append(r, j);
}

void job_push_timer(router *r, const char *member, const char *lease) {
    for (const job *q = r->head; q; q = q->next)
        if (q->kind == JOB_TIMER && strcmp(q->member, member) == 0) return;
    job *j = calloc(1, sizeof(*j));
    if (!j) return; /* the lease runs out and the timer is claimed again */
    j->r = r;
    j->kind = JOB_TIMER;
    cg_strlcpy(j->member, member, sizeof(j->member));
    cg_strlcpy(j->lease, lease, sizeof(j->lease));
    msg_init(&j->m);
    job_append(r, j);
}

static void job_add_ack(router *r, const char *id) {
    if (r->n_acks == r->cap_acks) {
        size_t cap = r->cap_acks ? r->cap_acks * 2 : 64;
        char **a = realloc(r->acks, cap * sizeof(*a));
        if (!a) return; /* not acked: the entry is claimed and re-processed later, harmlessly */
        r->acks = a;
        r->cap_acks = cap;
    }
    char *s = strdup(id);
    if (s) r->acks[r->n_acks++] = s;
}

static void job_ack_reply(rconn *rc, redisReply *reply, void *priv) {
    if (reply && reply->type == REDIS_REPLY_ERROR) log_warn("XACK failed: %s", reply->str);
}

void job_flush_acks(router *r) {
    if (r->n_acks == 0 || !r->cmd || !rconn_is_up(r->cmd)) return;
    size_t n = r->n_acks + 3;
    const char **argv = malloc(n * sizeof(*argv));
    if (!argv) return;
    argv[0] = "XACK";
    argv[1] = CG_KEY_INBOUND;
    argv[2] = "routers";
    for (size_t i = 0; i < r->n_acks; i++)
        argv[3 + i] = r->acks[i];
    if (rconn_cmdargv(r->cmd, job_ack_reply, r, (int)n, argv, NULL) == 0)
        log_debug("acked %zu entries", r->n_acks);
    free(argv);
    for (size_t i = 0; i < r->n_acks; i++)
        free(r->acks[i]);
    r->n_acks = 0;
}

/* Runs step as the current step of j: the guard reference keeps the job from settling while the
 * step is still sending. */
static void job_run_step(job *j, job_step_fn *step) {
    j->pending = 1;
    step(j);
    job_release(j);
}

/* First step: dispatch by type and role. Undecodable or invalid entries (job_push_entry) are logged
 * and acked (never retried). */
static void job_start_entry(job *j) {
    if (!j->decoded) { /* decoded at push (job_push_entry): again only to say why not */
        cg_err err = {{0}, {0}};
        msg_free(&j->m);
        if (msg_decode_msgpack(&j->m, j->raw, j->raw_len, &err) == 0)
            msg_validate(&j->m, ORIGIN_INTERNAL, &err);
        log_warn("entry %s: dropped: %s: %s", j->id, err.code, err.msg);
        return;
    }
    if (!j->conv[0]) cg_strlcpy(j->conv, j->m.conv, sizeof(j->conv));
    msg *m = &j->m;
    log_debug("entry %s: %s from %s", j->id, msg_type_name(m->type), msg_role_name(m->role));
    if ((m->type == MSG_TEXT || m->type == MSG_ATTACHMENT || m->type == MSG_RATING) &&
        m->role == ROLE_CUSTOMER) {
        conv_on_customer(j);
        return;
    }
    if (m->type == MSG_CLOSE && m->role == ROLE_CUSTOMER) {
        close_by_customer(j); /* "End chat" */
        return;
    }
    if (m->role != ROLE_AGENT) return;
    switch (m->type) {
    case MSG_TEXT:
    case MSG_ATTACHMENT:
        sla_on_agent(j); /* one call: the response timers and the idle close */
        return;
    case MSG_PRESENCE:
        agent_on_presence(j);
        return;
    case MSG_PICK:
        agent_on_pick(j);
        return;
    case MSG_CLOSE:
        agent_on_close(j);
        return;
    case MSG_TRANSFER:
        agent_on_transfer(j);
        return;
    case MSG_CLASSIFY:
        agent_on_classify(j);
        return;
    default:
        return; /* typing, read receipts etc.: nothing to route */
    }
}

static void job_start(job *j) {
    j->failed = 0;
    j->then = NULL;
    j->now_ms = cg_now_ms();
    j->has_row = 0;
    if (j->kind == JOB_OUTBOX)
        notify_outbox_step(j);
    else if (j->kind == JOB_TIMER)
        sla_timer_step(j);
    else
        job_start_entry(j);
}

static int job_can_run(const router *r) {
    return !r->stopping && r->head && r->fn_loaded && r->cmd && rconn_is_up(r->cmd) &&
           !uv_is_active((uv_handle_t *)&r->retry_timer);
}

/* The next queued job that may start now (see the file comment), or NULL. */
static job *job_next_startable(router *r) {
    const job *seen[JOB_SCAN];
    size_t n = 0;
    for (job *j = r->head; j && n < JOB_SCAN; j = j->next) {
        if (!j->active) {
            if (j == r->head && r->running == 0) return j;
            if (!j->parallel) return NULL; /* waits for everything before it */
            int clash = 0;
            for (size_t i = 0; i < n && !clash; i++)
                clash = !strcmp(seen[i]->conv, j->conv);
            if (!clash) return r->running < JOB_PARALLEL ? j : NULL;
        } else if (!j->parallel) {
            return NULL; /* holds back everything after it */
        }
        seen[n++] = j;
    }
    return NULL;
}

void job_kick(router *r) {
    if (r->kicking) return;
    r->kicking = 1;
    while (job_can_run(r)) {
        job *j = job_next_startable(r);
        if (!j) break;
        j->active = 1;
        r->running++;
        job_run_step(j, job_start);
    }
    r->kicking = 0;
    if (r->stopping || r->running || r->head) return;
    job_flush_acks(r);
    inbound_read_next(r);
}

static void job_retry_cb(uv_timer_t *t) {
    job_kick(t->data);
}

/* Unlink j from the queue. */
static void job_unlink(router *r, job *j) {
    job *prev = NULL;
    for (job *q = r->head; q && q != j; q = q->next)
        prev = q;
    if (prev)
        prev->next = j->next;
    else
        r->head = j->next;
    if (r->tail == j) r->tail = prev;
    r->n_jobs--;
}

/* A job finished (or failed): drop it, or leave it queued for a retry. */
static void job_settle(job *j) {
    router *r = j->r;
    if (r->stopping) return; /* jobs are freed after the loop is closed */
    if (j->failed) {
        j->active = 0;
        r->running--;
        log_debug("job %s: Redis unavailable, will retry", j->kind == JOB_ENTRY   ? j->id
                                                           : j->kind == JOB_TIMER ? j->member
                                                                                  : "outbox");
        r->retry_timer.data = r;
        if (!uv_is_active((uv_handle_t *)&r->retry_timer))
            uv_timer_start(&r->retry_timer, job_retry_cb, JOB_RETRY_MS, 0);
        return;
    }
    if (j->then) {
        job_step_fn *next = j->then;
        j->then = NULL;
        job_run_step(j, next);
        return;
    }
    job_unlink(r, j);
    r->running--;
    if (j->kind == JOB_ENTRY) job_add_ack(r, j->id);
    if (j->kind == JOB_OUTBOX) r->outbox_queued = 0;
    job_free(j);
    if ((long long)r->n_acks >= r->cfg.read_count) job_flush_acks(r);
    job_kick(r);
}

static void job_release(job *j) {
    if (--j->pending > 0) return;
    job_settle(j);
}

static void job_reply(rconn *rc, redisReply *reply, void *priv) {
    job_call *c = priv;
    job *j = c->j;
    job_reply_fn *fn = c->fn;
    free(c);
    if (!reply || store_transient(reply)) {
        if (reply) log_warn("Redis busy: %s", reply->str);
        j->failed = 1;
    } else if (!j->failed && fn) {
        fn(j, reply);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        log_warn("command failed: %s", reply->str);
    }
    job_release(j);
}

void job_cmdargv(job *j, job_reply_fn *fn, int argc, const char **argv, const size_t *lens) {
    router *r = j->r;
    if (j->failed) return;
    job_call *c = malloc(sizeof(*c));
    if (!c) {
        j->failed = 1;
        return;
    }
    c->j = j;
    c->fn = fn;
    if (r->stopping || !r->cmd || rconn_cmdargv(r->cmd, job_reply, c, argc, argv, lens) != 0) {
        free(c);
        j->failed = 1;
        return;
    }
    j->pending++;
}

void job_cmd(job *j, job_reply_fn *fn, int argc, ...) {
    const char *argv[JOB_MAX_ARGS];
    if (argc > JOB_MAX_ARGS) {
        log_error("job_cmd: too many arguments");
        j->failed = 1;
        return;
    }
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, const char *);
    va_end(ap);
    job_cmdargv(j, fn, argc, argv, NULL);
}

void evarg_call(job *j, const char *fn, job_reply_fn *reply, evarg *a) {
    const char *argv[5];
    size_t lens[5];
    if (evarg_fcall(a, fn, CG_KEY_TENANT, argv, lens) == 0)
        job_cmdargv(j, reply, 5, argv, lens);
    else {
        log_error("entry %s: out of memory building the map of %s", j->id, fn);
        j->failed = 1; /* run again, not taken as done */
    }
    evarg_free(a);
}
