/* classify.c -- see classify.h. */
#include "classify.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char cls_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static void cls_copy(char *dst, const char *src, size_t n) {
    size_t len = strlen(src);
    if (len >= n) len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void cls_set_init(cls_set *s) {
    memset(s, 0, sizeof(*s));
}

void cls_list_free(cls_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void cls_rule_free(cls_rule *r) {
    cls_list_free(&r->keywords);
    cls_list_free(&r->channels);
    cls_list_free(&r->tiers);
}

void cls_set_free(cls_set *s) {
    for (size_t i = 0; i < s->n_queues; i++) {
        cls_list_free(&s->queues[i].overflow);
        cls_list_free(&s->queues[i].rings);
    }
    for (size_t i = 0; i < s->n_rules; i++)
        cls_rule_free(&s->rules[i]);
    for (size_t i = 0; i < s->n_prios; i++)
        cls_rule_free(&s->prios[i]);
    for (size_t i = 0; i < s->n_canned; i++)
        free(s->canned[i].text);
    free(s->canned);
    free(s->queues);
    free(s->rules);
    free(s->prios);
    cls_set_init(s);
}

/* Length of the separator at p (',' or UTF-8 '，' U+FF0C or '、' U+3001), 0 when none. */
static size_t cls_sep(const char *p) {
    if (*p == ',') return 1;
    if (strncmp(p, "\xef\xbc\x8c", 3) == 0 || strncmp(p, "\xe3\x80\x81", 3) == 0) return 3;
    return 0;
}

/* Add the normalized item [p, p+len) to l unless it is empty. */
static int cls_list_push(cls_list *l, const char *p, size_t len) {
    while (len > 0 && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0) return 0;
    char *item = malloc(len + 1);
    char **items = realloc(l->items, (l->n + 1) * sizeof(*items));
    if (!item || !items) {
        free(item);
        if (items) l->items = items;
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        item[i] = cls_lower(p[i]);
    item[len] = '\0';
    l->items = items;
    l->items[l->n++] = item;
    return 0;
}

int cls_list_add(cls_list *l, const char *csv) {
    const char *start = csv;
    for (const char *p = csv;; p++) {
        size_t sep = *p ? cls_sep(p) : 1;
        if (!sep) continue;
        if (cls_list_push(l, start, (size_t)(p - start)) != 0) return -1;
        if (!*p) return 0;
        p += sep - 1;
        start = p + 1;
    }
}

/* 1 when s equals one of l's items, ASCII case-insensitively. */
static int cls_list_has(const cls_list *l, const char *s) {
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->items[i], s) == 0) return 1;
    return 0;
}

int cls_contains(const char *hay, const char *needle) {
    if (!hay || !needle || !needle[0]) return 0;
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (needle[i] && cls_lower(h[i]) == needle[i])
            i++;
        if (!needle[i]) return 1;
    }
    return 0;
}

cls_queue *cls_queue_find(const cls_set *s, const char *name) {
    for (size_t i = 0; i < s->n_queues; i++)
        if (strcmp(s->queues[i].name, name) == 0) return &s->queues[i];
    return NULL;
}

static cls_rule *cls_rules_find(cls_rule *rules, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(rules[i].name, name) == 0) return &rules[i];
    return NULL;
}

cls_rule *cls_rule_find(const cls_set *s, const char *name) {
    return cls_rules_find(s->rules, s->n_rules, name);
}

cls_rule *cls_prio_find(const cls_set *s, const char *name) {
    return cls_rules_find(s->prios, s->n_prios, name);
}

cls_queue *cls_queue_get(cls_set *s, const char *name) {
    cls_queue *q = cls_queue_find(s, name);
    if (q) return q;
    cls_queue *qs = realloc(s->queues, (s->n_queues + 1) * sizeof(*qs));
    if (!qs) return NULL;
    s->queues = qs;
    q = &qs[s->n_queues++];
    memset(q, 0, sizeof(*q));
    cls_copy(q->name, name, sizeof(q->name));
    q->mode = CLS_PUSH;
    q->priority = CLS_PRIO_DEFAULT;
    return q;
}

/* Find or append a rule in *rules. */
static cls_rule *cls_rules_get(cls_rule **rules, size_t *n, const char *name) {
    cls_rule *r = cls_rules_find(*rules, *n, name);
    if (r) return r;
    cls_rule *rs = realloc(*rules, (*n + 1) * sizeof(*rs));
    if (!rs) return NULL;
    *rules = rs;
    r = &rs[*n];
    memset(r, 0, sizeof(*r));
    cls_copy(r->name, name, sizeof(r->name));
    r->priority = CLS_PRIO_NONE;
    r->pos = (*n)++;
    return r;
}

cls_rule *cls_rule_get(cls_set *s, const char *name) {
    return cls_rules_get(&s->rules, &s->n_rules, name);
}

cls_rule *cls_prio_get(cls_set *s, const char *name) {
    return cls_rules_get(&s->prios, &s->n_prios, name);
}

static int cls_rule_cmp(const void *a, const void *b) {
    const cls_rule *x = a, *y = b;
    if (x->order != y->order) return x->order < y->order ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

int cls_set_finish(cls_set *s, const char *default_queue) {
    cls_copy(s->default_queue, default_queue, sizeof(s->default_queue));
    if (!cls_queue_find(s, default_queue)) {
        cls_queue *q = cls_queue_get(s, default_queue);
        if (!q) return -1;
        q->implicit = 1;
    }
    if (s->n_rules > 1) qsort(s->rules, s->n_rules, sizeof(*s->rules), cls_rule_cmp);
    return 0;
}

/* 1 when one of the keywords occurs in the text or the subject. */
static int cls_keywords_match(const cls_list *kw, const cls_input *in) {
    for (size_t i = 0; i < kw->n; i++)
        if (cls_contains(in->text, kw->items[i]) || cls_contains(in->subject, kw->items[i]))
            return 1;
    return 0;
}

/* 1 when every condition r has holds for in. */
static int cls_rule_match(const cls_rule *r, const cls_input *in) {
    if (r->keywords.n && !cls_keywords_match(&r->keywords, in)) return 0;
    if (r->channels.n && !(in->channel && cls_list_has(&r->channels, in->channel))) return 0;
    if (r->tiers.n && !(in->tier && cls_list_has(&r->tiers, in->tier))) return 0;
    return 1;
}

void cls_classify(const cls_set *s, const cls_input *in, cls_result *out) {
    const cls_rule *hit = NULL;
    for (size_t i = 0; i < s->n_rules && !hit; i++)
        if (cls_rule_match(&s->rules[i], in)) hit = &s->rules[i];

    out->queue = hit ? hit->queue : s->default_queue;
    out->rule = hit ? hit->name : "";
    out->complaint_class = hit ? hit->complaint_class : "";
    const cls_queue *q = cls_queue_find(s, out->queue);
    out->priority = q ? q->priority : CLS_PRIO_DEFAULT;
    if (hit && hit->priority != CLS_PRIO_NONE) out->priority = hit->priority;

    for (size_t i = 0; i < s->n_prios; i++) {
        const cls_rule *p = &s->prios[i];
        if (p->priority > out->priority && cls_rule_match(p, in)) out->priority = p->priority;
    }
}
