/* rcfg.c -- see rcfg.h.
 *
 * cfg_load() hands every key it does not know to rcfg_extra() with its section name; the section
 * "queue faq" is split into its kind and name. Each kind has a small key table; a key given twice
 * in one section is an error, except `keywords`, which accumulates. A list (keywords, channel,
 * tier, overflow, hours, holidays) may continue on indented lines, each adding items; a single
 * value may not. [canned <queue>] sections are a queue's canned replies: each key is a reply's
 * name, its value the text; indented continuation lines add a line to the text (lines are at most
 * 198 bytes); a name given twice is an error. */
#include "rcfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"
#include "../proto/msg.h"

#define RCFG_CODE "bad_config"
#define RCFG_CHECKED (1u << 31) /* seen: the section was checked by the second pass */

typedef enum rcfg_kind { RK_NONE, RK_QUEUE, RK_RULE, RK_PRIO, RK_CANNED } rcfg_kind;

typedef struct rcfg_ctx {
    cls_set *set;
    int pass;                  /* 1: store, 2: check references */
    const char *default_queue; /* pass 2 */
} rcfg_ctx;

/* Keys of each kind; the index is the key's bit in `seen`. */
static const char *const queue_keys[] = {
    "name_zh",          "name_en", "mode",     "priority", "overflow",
    "overflow_after_s", "hours",   "timezone", "holidays", "rings"};
static const char *const rule_keys[] = {"queue",    "keywords", "channel",        "tier",
                                        "priority", "order",    "complaint_class"};

/* Complaint classes (handbook 003 §四.1); their deadlines are [router] complaint_sla. */
static const char *const complaint_classes[] = {"ordinary", "serious", "system_failure", "media"};
static const char *const prio_keys[] = {"keywords", "channel", "tier", "priority"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int rcfg_key_index(const char *const *keys, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0) return (int)i;
    return -1;
}

/* Split "queue faq" into kind and name. RK_NONE for sections that are not ours. */
static rcfg_kind rcfg_section(const char *section, const char **name) {
    static const struct {
        const char *word;
        rcfg_kind kind;
    } kinds[] = {
        {"queue", RK_QUEUE}, {"rule", RK_RULE}, {"priority", RK_PRIO}, {"canned", RK_CANNED}};
    for (size_t i = 0; i < N_OF(kinds); i++) {
        size_t n = strlen(kinds[i].word);
        if (strncmp(section, kinds[i].word, n) != 0) continue;
        if (section[n] != ' ' && section[n] != '\t' && section[n] != '\0') continue;
        const char *p = section + n;
        while (*p == ' ' || *p == '\t')
            p++;
        *name = p;
        return kinds[i].kind;
    }
    return RK_NONE;
}

/* Names of queues and rules: 1-64 of [a-z0-9_-] (they become Redis keys and agent skills). */
static int rcfg_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= CLS_NAME_MAX) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

static int rcfg_int(const char *value, long long min, long long max, long long *out, cg_err *err) {
    long long v;
    if (cg_parse_ll(value, -(1LL << 62), 1LL << 62, &v) != 0)
        return cg_err_set(err, RCFG_CODE, "'%.40s' is not a whole number", value);
    if (v < min || v > max)
        return cg_err_set(err, RCFG_CODE, "%lld is out of range [%lld, %lld]", v, min, max);
    *out = v;
    return 0;
}

static int rcfg_prio(const char *value, int *out, cg_err *err) {
    long long v;
    if (rcfg_int(value, CLS_PRIO_MIN, CLS_PRIO_MAX, &v, err) != 0) return -1;
    *out = (int)v;
    return 0;
}

static int rcfg_str(const char *value, char *dst, size_t n, cg_err *err) {
    if (cg_strlcpy(dst, value, n) >= n)
        return cg_err_set(err, RCFG_CODE, "too long (max %zu)", n - 1);
    return 0;
}

static int rcfg_list(cls_list *l, const char *value, cg_err *err) {
    if (cls_list_add(l, value) != 0) return cg_err_set(err, "nomem", "out of memory");
    return 0;
}

/* A list of channel names; each must be one the product knows. */
static int rcfg_channels(cls_list *l, const char *value, cg_err *err) {
    size_t before = l->n;
    if (rcfg_list(l, value, err) != 0) return -1;
    for (size_t i = before; i < l->n; i++) {
        msg_channel ch;
        if (msg_channel_parse(l->items[i], &ch) != 0)
            return cg_err_set(err, RCFG_CODE, "'%.40s' is not a channel", l->items[i]);
    }
    return 0;
}

/* Keys whose value is a list: a continuation line adds items (and `keywords` may also be given
 * again). Every other key of a section is a single value. */
static int rcfg_is_list(const char *key) {
    static const char *const lists[] = {"keywords", "channel",  "tier", "overflow",
                                        "hours",    "holidays", "rings"};
    return rcfg_key_index(lists, N_OF(lists), key) >= 0;
}

/* Mark key index idx of *seen. A key given a second time is an error, except `keywords` (they add
 * up); a continuation line (cont) is an error for a single value, and adds to a list. */
static int rcfg_once(unsigned *seen, int idx, const char *key, int cont, cg_err *err) {
    unsigned bit = 1u << idx;
    if (cont && !rcfg_is_list(key))
        return cg_err_set(
            err, RCFG_CODE,
            "a continuation line: only lists and canned texts may span several lines");
    if ((*seen & bit) && !cont && strcmp(key, "keywords") != 0)
        return cg_err_set(err, RCFG_CODE, "given twice in the same section");
    *seen |= bit;
    return 0;
}

static int rcfg_queue_key(cls_set *s, const char *name, const char *key, const char *value,
                          int cont, cg_err *err) {
    int idx = rcfg_key_index(queue_keys, N_OF(queue_keys), key);
    if (idx < 0) return cg_err_set(err, RCFG_CODE, "unknown key in [queue %s]", name);
    cls_queue *q = cls_queue_get(s, name);
    if (!q) return cg_err_set(err, "nomem", "out of memory");
    if (rcfg_once(&q->seen, idx, key, cont, err) != 0) return -1;
    long long v;
    switch (idx) {
    case 0:
        return rcfg_str(value, q->name_zh, sizeof(q->name_zh), err);
    case 1:
        return rcfg_str(value, q->name_en, sizeof(q->name_en), err);
    case 2:
        if (strcmp(value, "push") == 0 || strcmp(value, "pull") == 0) {
            q->mode = strcmp(value, "pull") == 0 ? CLS_PULL : CLS_PUSH;
            return 0;
        }
        return cg_err_set(err, RCFG_CODE, "'%.40s' is not push or pull", value);
    case 3:
        return rcfg_prio(value, &q->priority, err);
    case 4:
        return rcfg_list(&q->overflow, value, err);
    case 5:
        if (rcfg_int(value, 0, 7 * 86400, &v, err) != 0) return -1;
        q->overflow_after_s = v;
        return 0;
    case 6:
        return hours_parse_week(&q->hours, value, err);
    case 7:
        return hours_set_tz(&q->hours, value, err);
    case 8:
        return hours_parse_holidays(&q->hours, value, err);
    default:
        return rcfg_list(&q->rings, value, err);
    }
}

/* A ring item "<seconds>:<queue>": 0 with *secs and the queue's name in q (size n), or -1. */
int rcfg_ring_item(const char *item, long long *secs, char *q, size_t n) {
    const char *colon = strchr(item, ':');
    char num[16];
    if (!colon || colon == item || (size_t)(colon - item) >= sizeof(num)) return -1;
    memcpy(num, item, (size_t)(colon - item));
    num[colon - item] = '\0';
    const char *name = colon + 1;
    while (*name == ' ')
        name++;
    if (cg_parse_ll(num, 1, 7 * 86400, secs) != 0 || !rcfg_name_ok(name) || strlen(name) >= n)
        return -1;
    memcpy(q, name, strlen(name) + 1);
    return 0;
}

/* The keys classification and priority rules share (keywords, channel, tier, priority). */
static int rcfg_match_key(cls_rule *r, const char *key, const char *value, cg_err *err) {
    if (strcmp(key, "keywords") == 0) return rcfg_list(&r->keywords, value, err);
    if (strcmp(key, "channel") == 0) return rcfg_channels(&r->channels, value, err);
    if (strcmp(key, "tier") == 0) return rcfg_list(&r->tiers, value, err);
    return rcfg_prio(value, &r->priority, err);
}

static int rcfg_rule_key(cls_set *s, rcfg_kind kind, const char *name, const char *key,
                         const char *value, int cont, cg_err *err) {
    int rule = kind == RK_RULE;
    int idx = rule ? rcfg_key_index(rule_keys, N_OF(rule_keys), key)
                   : rcfg_key_index(prio_keys, N_OF(prio_keys), key);
    if (idx < 0)
        return cg_err_set(err, RCFG_CODE, "unknown key in [%s %s]", rule ? "rule" : "priority",
                          name);
    cls_rule *r = rule ? cls_rule_get(s, name) : cls_prio_get(s, name);
    if (!r) return cg_err_set(err, "nomem", "out of memory");
    if (rcfg_once(&r->seen, idx, key, cont, err) != 0) return -1;
    if (strcmp(key, "queue") == 0) {
        if (!rcfg_name_ok(value))
            return cg_err_set(err, RCFG_CODE, "'%.40s' is not a queue name", value);
        return rcfg_str(value, r->queue, sizeof(r->queue), err);
    }
    if (strcmp(key, "order") == 0) return rcfg_int(value, -1000000, 1000000, &r->order, err);
    if (strcmp(key, "complaint_class") == 0) {
        if (rcfg_key_index(complaint_classes, N_OF(complaint_classes), value) < 0)
            return cg_err_set(err, RCFG_CODE,
                              "'%.40s' is not ordinary, serious, system_failure or media", value);
        return rcfg_str(value, r->complaint_class, sizeof(r->complaint_class), err);
    }
    return rcfg_match_key(r, key, value, err);
}

/* 1 when name is a configured queue or the default queue. */
static int rcfg_queue_known(const rcfg_ctx *c, const char *name) {
    return cls_queue_find(c->set, name) || strcmp(name, c->default_queue) == 0;
}

/* Second pass, `rings` of a queue: every item "<seconds>:<queue>", the queue known and not this
 * one, and no overflow besides. */
static int rcfg_check_rings(const rcfg_ctx *c, const char *name, cg_err *err) {
    const cls_queue *q = cls_queue_find(c->set, name);
    if (q && q->overflow.n) return cg_err_set(err, RCFG_CODE, "give rings or overflow, not both");
    for (size_t i = 0; q && i < q->rings.n; i++) {
        long long secs;
        char o[CLS_NAME_MAX];
        if (rcfg_ring_item(q->rings.items[i], &secs, o, sizeof(o)) != 0)
            return cg_err_set(err, RCFG_CODE,
                              "'%.64s' is not <seconds 1-604800>:<queue> (e.g. 30:tech_support)",
                              q->rings.items[i]);
        if (strcmp(o, name) == 0)
            return cg_err_set(err, RCFG_CODE, "queue '%s' cannot ring itself", name);
        if (!rcfg_queue_known(c, o)) return cg_err_set(err, RCFG_CODE, "unknown queue '%.64s'", o);
    }
    return 0;
}

/* Second pass, a key of a queue: its overflow queues must exist. */
static int rcfg_check_queue(const rcfg_ctx *c, const char *name, const char *key, cg_err *err) {
    if (strcmp(key, "rings") == 0) return rcfg_check_rings(c, name, err);
    if (strcmp(key, "overflow") != 0) return 0;
    const cls_queue *q = cls_queue_find(c->set, name);
    for (size_t i = 0; q && i < q->overflow.n; i++) {
        const char *o = q->overflow.items[i];
        if (strcmp(o, name) == 0)
            return cg_err_set(err, RCFG_CODE, "queue '%s' cannot overflow into itself", name);
        if (!rcfg_queue_known(c, o)) return cg_err_set(err, RCFG_CODE, "unknown queue '%.64s'", o);
    }
    return 0;
}

/* Second pass, a key of a rule: at its first key, the section must be complete; at `queue`, the
 * queue must exist. */
static int rcfg_check_rule(const rcfg_ctx *c, rcfg_kind kind, const char *name, const char *key,
                           cg_err *err) {
    cls_rule *r = kind == RK_RULE ? cls_rule_find(c->set, name) : cls_prio_find(c->set, name);
    if (!r) return 0;
    if (!(r->seen & RCFG_CHECKED)) {
        r->seen |= RCFG_CHECKED;
        if (kind == RK_RULE && !r->queue[0])
            return cg_err_set(err, RCFG_CODE, "[rule %s] has no 'queue'", name);
        if (kind == RK_PRIO && r->priority == CLS_PRIO_NONE)
            return cg_err_set(err, RCFG_CODE, "[priority %s] has no 'priority'", name);
        if (kind == RK_PRIO && !r->keywords.n && !r->channels.n && !r->tiers.n)
            return cg_err_set(err, RCFG_CODE, "[priority %s] needs keywords, channel or tier",
                              name);
    }
    if (kind == RK_RULE && strcmp(key, "queue") == 0 && !rcfg_queue_known(c, r->queue))
        return cg_err_set(err, RCFG_CODE, "unknown queue '%s'", r->queue);
    return 0;
}

/* The canned reply `name` of queue, or NULL. */
static cls_canned *rcfg_canned_find(const cls_set *s, const char *queue, const char *name) {
    for (size_t i = 0; i < s->n_canned; i++)
        if (!strcmp(s->canned[i].queue, queue) && !strcmp(s->canned[i].name, name))
            return &s->canned[i];
    return NULL;
}

/* First pass, a key of [canned <queue>]: a new reply (at most CLS_CANNED_PER_QUEUE a queue), or
 * one more line of the reply's text (cont: a continuation line). A name given twice is an error.
 * The text must be UTF-8 and at most CLS_CANNED_TEXT_MAX bytes in all. */
static int rcfg_canned_key(cls_set *s, const char *queue, const char *key, const char *value,
                           int cont, cg_err *err) {
    if (!rcfg_name_ok(key))
        return cg_err_set(err, RCFG_CODE, "not a reply name: 1-64 of a-z 0-9 _ -");
    size_t vlen = strlen(value);
    if (!msg_utf8_valid(value, vlen)) return cg_err_set(err, RCFG_CODE, "the text is not UTF-8");
    cls_canned *c = rcfg_canned_find(s, queue, key);
    if (c && !cont)
        return cg_err_set(err, RCFG_CODE, "reply '%s' given twice in [canned %s]", key, queue);
    if (!c) {
        size_t n = 0;
        for (size_t i = 0; i < s->n_canned; i++)
            n += !strcmp(s->canned[i].queue, queue);
        if (n >= CLS_CANNED_PER_QUEUE)
            return cg_err_set(err, RCFG_CODE, "more than %d canned replies in [canned %s]",
                              CLS_CANNED_PER_QUEUE, queue);
        cls_canned *all = realloc(s->canned, (s->n_canned + 1) * sizeof(*all));
        if (!all) return cg_err_set(err, "nomem", "out of memory");
        s->canned = all;
        c = &all[s->n_canned++];
        memset(c, 0, sizeof(*c));
        cg_strlcpy(c->queue, queue, sizeof(c->queue));
        cg_strlcpy(c->name, key, sizeof(c->name));
    }
    size_t sep = c->text ? 1 : 0; /* a continuation starts a new line */
    if (c->len + sep + vlen > CLS_CANNED_TEXT_MAX)
        return cg_err_set(err, RCFG_CODE, "the text is too long (max %d bytes)",
                          CLS_CANNED_TEXT_MAX);
    char *t = realloc(c->text, c->len + sep + vlen + 1);
    if (!t) return cg_err_set(err, "nomem", "out of memory");
    if (sep) t[c->len++] = '\n';
    memcpy(t + c->len, value, vlen + 1);
    c->len += vlen;
    c->text = t;
    return 0;
}

/* Second pass, a key of [canned <queue>]: the queue must exist, the text must not be empty. */
static int rcfg_check_canned(const rcfg_ctx *c, const char *queue, const char *key, cg_err *err) {
    if (!rcfg_queue_known(c, queue)) return cg_err_set(err, RCFG_CODE, "unknown queue '%s'", queue);
    cls_canned *r = rcfg_canned_find(c->set, queue, key);
    if (!r || r->checked) return 0;
    r->checked = 1;
    if (r->len == 0) return cg_err_set(err, RCFG_CODE, "empty text");
    return 0;
}

/* cfg_extra_fn: the keys of our sections (see the file comment). */
static int rcfg_extra(void *priv, const char *section, const char *key, const char *value, int cont,
                      cg_err *err) {
    rcfg_ctx *c = priv;
    const char *name = "";
    if (strcmp(section, "router") == 0)
        return cg_err_set(err, RCFG_CODE, "unknown key in [router]");
    rcfg_kind kind = rcfg_section(section, &name);
    if (kind == RK_NONE) return 0; /* another process's section */
    if (!rcfg_name_ok(name))
        return cg_err_set(err, RCFG_CODE, "[%.40s]: the name must be 1-64 of a-z 0-9 _ -", section);
    if (c->pass == 2) {
        if (kind == RK_QUEUE) return rcfg_check_queue(c, name, key, err);
        if (kind == RK_CANNED) return rcfg_check_canned(c, name, key, err);
        return rcfg_check_rule(c, kind, name, key, err);
    }
    if (kind == RK_QUEUE) return rcfg_queue_key(c->set, name, key, value, cont, err);
    if (kind == RK_CANNED) return rcfg_canned_key(c->set, name, key, value, cont, err);
    return rcfg_rule_key(c->set, kind, name, key, value, cont, err);
}

int rcfg_load(const cfg_opt *opts, const char *path, const char *default_queue, cls_set *out,
              cg_err *err) {
    cls_set set;
    cls_set_init(&set);
    rcfg_ctx c = {.set = &set, .pass = 1};
    if (cfg_load(opts, path, rcfg_extra, &c, err) != 0) goto fail;
    c.pass = 2;
    c.default_queue = default_queue;
    if (!rcfg_name_ok(default_queue)) {
        cg_err_set(err, RCFG_CODE, "key 'default_queue': '%.40s' is not a queue name",
                   default_queue);
        goto fail;
    }
    if (path && path[0] && cfg_load(opts, path, rcfg_extra, &c, err) != 0) goto fail;
    if (cls_set_finish(&set, default_queue) != 0) {
        cg_err_set(err, "nomem", "out of memory");
        goto fail;
    }
    *out = set;
    return 0;
fail:
    cls_set_free(&set);
    return -1;
}
