/* check.c -- `chatgw-router --check-config`: the loaded configuration, told back, and the queues
 * that no agent can reach.
 *
 * A queue is served when an agent has its name among its skills; it is reachable when it is
 * served or overflows into a served queue. The agents are the skill lists given with --skills
 * (one option per agent), else the agents the desk's Redis knows (every cg:agent:<id> hash with
 * its last skills), else none. A conversation classified into an unreachable queue waits until
 * the configuration or the agents change: the customer gets the no_agent reply. */
#include "router.h"
#include "desk_schema.h"
#include "rcfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../common/rblock.h"
#include "../common/util.h"

#define CHECK_AGENTS_MAX 4096

typedef struct check_agents {
    char **skills; /* comma lists, owned */
    size_t n;
    const char *source; /* where they came from, for the report */
} check_agents;

static void check_agents_add(check_agents *a, const char *csv) {
    if (a->n == CHECK_AGENTS_MAX) return;
    char **grown = realloc(a->skills, (a->n + 1) * sizeof(*grown));
    if (!grown) return;
    a->skills = grown;
    a->skills[a->n] = strdup(csv);
    if (a->skills[a->n]) a->n++;
}

static void check_agents_free(check_agents *a) {
    for (size_t i = 0; i < a->n; i++)
        free(a->skills[i]);
    free(a->skills);
}

/* 1 when the comma list csv names skill. */
static int check_has(const char *csv, const char *skill) {
    size_t n = strlen(skill);
    for (const char *p = csv; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t t = len;
        while (t && p[t - 1] == ' ')
            t--;
        if (t == n && strncmp(p, skill, n) == 0) return 1;
        p += len;
    }
    return 0;
}

/* Agents that served queue q. */
static size_t check_served(const check_agents *a, const char *q) {
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        n += (size_t)check_has(a->skills[i], q);
    return n;
}

/* The agents the desk's Redis knows (cg:agent:<id> hashes with skills), at most 1 s of trying.
 * Leaves a->source NULL when Redis cannot be asked. */
static void check_agents_redis(const char *url_text, check_agents *a) {
    cg_err err;
    redisContext *c = rblock_connect(url_text, 1000, &err);
    if (!c) {
        fprintf(stderr, "redis: %s\n", err.msg);
        return;
    }
    redisReply *r;
    char cursor[32] = "0";
    do {
        r = redisCommand(c, "SCAN %s MATCH %s* COUNT 1000", cursor, CG_KEY_AGENT_PREFIX);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            goto done;
        }
        cg_strlcpy(cursor, r->element[0]->str ? r->element[0]->str : "0", sizeof(cursor));
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            if (!k || strchr(k + strlen(CG_KEY_AGENT_PREFIX), ':')) continue; /* :socks ... */
            redisReply *s = redisCommand(c, "HGET %s skills", k);
            if (s && s->type == REDIS_REPLY_STRING) check_agents_add(a, s->str);
            freeReplyObject(s);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    a->source = "the agents known to Redis";
done:
    rblock_free(c);
}

int check_config(const router *r, char **skills, size_t n_skills) {
    const cls_set *s = &r->cls;
    check_agents a = {0};
    for (size_t i = 0; i < n_skills; i++)
        check_agents_add(&a, skills[i]);
    if (n_skills) {
        a.source = "--skills";
    } else {
        check_agents_redis(r->cfg.redis_url, &a);
    }
    printf("configuration OK: %zu queues, %zu rules, %zu priority rules, %zu template locales\n",
           s->n_queues, s->n_rules, s->n_prios, r->tmpl.n);
    static const char *const classes[SLA_CLASSES] = {"ordinary", "serious", "system_failure",
                                                     "media"};
    for (int k = 0; k < SLA_CLASSES; k++)
        printf("complaint %s: respond %lld s, resolve %lld s\n", classes[k], r->sla.respond_s[k],
               r->sla.resolve_s[k]);
    if (!a.source) {
        printf("agents: none given (--skills) and Redis (%s) not reachable: coverage not "
               "checked\n",
               r->cfg.redis_url[0] ? "redis_url" : "none");
        check_agents_free(&a);
        return 0;
    }
    printf("agents: %zu (%s)\n", a.n, a.source);
    int unreachable = 0;
    for (size_t i = 0; i < s->n_queues; i++) {
        const cls_queue *q = &s->queues[i];
        size_t served = check_served(&a, q->name);
        const char *via = NULL;
        for (size_t o = 0; !served && !via && o < q->overflow.n; o++)
            if (check_served(&a, q->overflow.items[o])) via = q->overflow.items[o];
        char ring[CLS_NAME_MAX];
        long long secs;
        for (size_t o = 0; !served && !via && o < q->rings.n; o++)
            if (rcfg_ring_item(q->rings.items[o], &secs, ring, sizeof(ring)) == 0 &&
                check_served(&a, ring))
                via = strstr(q->rings.items[o], ring); /* the item's own storage */
        if (served) {
            printf("queue %s (%s): served by %zu agent%s\n", q->name,
                   q->mode == CLS_PULL ? "pull" : "push", served, served == 1 ? "" : "s");
        } else if (via) {
            printf("queue %s (%s): no agent of its own; reached through %s into %s\n", q->name,
                   q->mode == CLS_PULL ? "pull" : "push", q->rings.n ? "a ring" : "overflow", via);
        } else {
            printf("queue %s (%s): UNREACHABLE: no agent has the skill '%s' and it overflows "
                   "into no served queue\n",
                   q->name, q->mode == CLS_PULL ? "pull" : "push", q->name);
            unreachable++;
        }
    }
    check_agents_free(&a);
    if (unreachable)
        printf("%d queue%s no agent can reach: conversations classified there wait, and the "
               "customer is told nobody is online\n",
               unreachable, unreachable == 1 ? "" : "s");
    return unreachable ? 1 : 0;
}
