/* classify.h -- the routing model (queues, classification rules, priority rules) and the pure
 * matching of a new conversation to a queue and a priority.
 *
 * No Redis, no sockets, no router state: a cls_set is built by rcfg.c from the configuration and
 * consulted by conv.c for the first customer message of a conversation.
 *
 * Matching (docs/configuration.md, [rule] and [priority]):
 *   - a rule matches when every condition it has holds: one of its keywords is a substring of
 *     the text or the subject (ASCII letters compared case-insensitively, other bytes exactly, so
 *     Chinese keywords match Chinese text), the channel is one of its channels, the customer's
 *     tier is one of its tiers. A rule with no condition matches everything.
 *   - classification rules are tried by `order` (then file order); the first match gives the
 *     queue and, when the rule has one, the priority (else the queue's default priority). No match:
 *     the default queue with its default priority.
 *   - every matching priority rule is considered; the highest priority among them and the one
 *     from classification wins (priority rules only ever raise it). */
#ifndef CG_CLASSIFY_H
#define CG_CLASSIFY_H

#include <stddef.h>

#include "hours.h"

#define CLS_NAME_MAX 65   /* queue and rule names (as MSG_CODE_MAX) */
#define CLS_TITLE_MAX 129 /* display names */
#define CLS_PRIO_MIN 0
#define CLS_PRIO_MAX 9
#define CLS_PRIO_DEFAULT 5
#define CLS_PRIO_NONE (-1)
#define CLS_CANNED_TEXT_MAX 2000 /* bytes of one canned reply's text */
#define CLS_CANNED_PER_QUEUE 200 /* canned replies of one queue */

typedef enum cls_mode { CLS_PUSH = 0, CLS_PULL } cls_mode;

/* A comma list, normalized: items trimmed, ASCII lower-cased, empty items dropped. */
typedef struct cls_list {
    char **items;
    size_t n;
} cls_list;

typedef struct cls_queue {
    char name[CLS_NAME_MAX];
    char name_zh[CLS_TITLE_MAX];
    char name_en[CLS_TITLE_MAX];
    cls_mode mode;
    int priority;      /* default priority of conversations classified here */
    cls_list overflow; /* other queues whose agents take it after overflow_after_s */
    long long overflow_after_s;
    cls_list rings;   /* bullseye rings, "<seconds>:<queue>" items (replace overflow) */
    hours_spec hours; /* business hours (hours, timezone, holidays); always open when not given */
    hours_state now;  /* conv.c's memo of whether hours is open (hours_open_at) */
    unsigned seen;    /* keys already given (rcfg.c) */
    int implicit;     /* not configured: the default queue added with defaults */
} cls_queue;

typedef struct cls_rule {
    char name[CLS_NAME_MAX];
    char queue[CLS_NAME_MAX]; /* classification rules only */
    cls_list keywords;
    cls_list channels;
    cls_list tiers;
    int priority; /* CLS_PRIO_NONE when not given */
    long long order;
    char complaint_class[CLS_NAME_MAX]; /* classification rules: "" = ordinary */
    size_t pos; /* position in the file, to keep file order among equal `order` */
    unsigned seen;
} cls_rule;

/* A canned reply of a queue ([canned <queue>], rcfg.c): carried with the set so that it is
 * replaced with it on reload and published with the queues (store.c); not used to classify. */
typedef struct cls_canned {
    char queue[CLS_NAME_MAX];
    char name[CLS_NAME_MAX];
    char *text; /* malloc'd UTF-8, at most CLS_CANNED_TEXT_MAX bytes */
    size_t len;
    int checked; /* the second pass of rcfg.c saw it */
} cls_canned;

typedef struct cls_set {
    cls_queue *queues;
    size_t n_queues;
    cls_rule *rules; /* classification rules, sorted by cls_set_finish() */
    size_t n_rules;
    cls_rule *prios; /* priority rules */
    size_t n_prios;
    cls_canned *canned; /* canned replies of every queue, in file order */
    size_t n_canned;
    char default_queue[CLS_NAME_MAX];
} cls_set;

/* What to classify: any field may be NULL or empty. */
typedef struct cls_input {
    const char *text;    /* the customer's first message */
    const char *subject; /* e-mail subject, if any */
    const char *channel; /* web, email, ... */
    const char *tier;    /* customer identity tier, e.g. vip */
} cls_input;

typedef struct cls_result {
    const char *queue;           /* points into the set: valid while the set lives */
    const char *rule;            /* name of the matching classification rule, "" when none */
    const char *complaint_class; /* the rule's complaint_class, "" when none */
    int priority;
} cls_result;

void cls_set_init(cls_set *s);
void cls_set_free(cls_set *s);

/* The queue / rule / priority rule of that name, or NULL. */
cls_queue *cls_queue_find(const cls_set *s, const char *name);
cls_rule *cls_rule_find(const cls_set *s, const char *name);
cls_rule *cls_prio_find(const cls_set *s, const char *name);

/* Find or add an item with defaults (mode push, priority CLS_PRIO_DEFAULT / none). NULL when out
 * of memory. Pointers are invalidated by the next add of the same kind. */
cls_queue *cls_queue_get(cls_set *s, const char *name);
cls_rule *cls_rule_get(cls_set *s, const char *name);
cls_rule *cls_prio_get(cls_set *s, const char *name);

/* Append the items of a comma list (',' or the full-width '，' / '、') to l, normalized.
 * 0, or -1 when out of memory (l keeps what it had). */
int cls_list_add(cls_list *l, const char *csv);
void cls_list_free(cls_list *l);

/* Make default_queue known (added, implicit, when no section configured it) and sort the
 * classification rules by order. 0, or -1 when out of memory. */
int cls_set_finish(cls_set *s, const char *default_queue);

/* Classify in against s (finished). Never fails: no match gives the default queue. */
void cls_classify(const cls_set *s, const cls_input *in, cls_result *out);

/* 1 when needle (already lower-case) occurs in hay, ASCII letters of hay folded. "" never. */
int cls_contains(const char *hay, const char *needle);

#endif
