/* chatgw-export -- export conversation transcripts as JSON Lines (one conversation per line).
 *
 *   chatgw-export [--redis URL] [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--queue NAME]
 *                 [--sample PERCENT] [--seed N] [--state STATE]
 *
 * Selects conversations by creation date (UTC, --to inclusive), queue and state, optionally a
 * random sample of PERCENT % of them (quality review: a reproducible sample with --seed), and
 * writes for each: {"conv", "state", "queue", "category", "channel", "customer", "agent",
 * "created", "queued_at", "assigned_at", "closed_at", "resolution", "priority", "messages":
 * [<msg>...]} where every message is the protocol's JSON form (docs/protocol.md) with its seq.
 * Reads Redis only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "../common/rblock.h"
#include "desk_schema.h"
#include "../common/util.h"
#include "../proto/msg.h"

typedef struct export_opts {
    char url[512];
    int64_t from_ms, to_ms; /* [from, to) */
    const char *queue;
    const char *state;
    double sample; /* 0..100 */
    unsigned seed;
} export_opts;

static int usage(int rc) {
    fprintf(
        rc ? stderr : stdout,
        "usage: chatgw-export [--redis URL] [--from YYYY-MM-DD] [--to YYYY-MM-DD]\n"
        "                     [--queue NAME] [--state STATE] [--sample PERCENT] [--seed N]\n"
        "Writes one JSON object per conversation (JSON Lines) to stdout.\n"
        "Redis URL: --redis, else CHATGW_REDIS_URL, else redis://127.0.0.1:6379;\n"
        "  redis[s]://[[user]:password@]host[:port][/db] or unix:/path (prefer the environment\n"
        "  for a URL with a password: command lines are visible to other users).\n");
    return rc;
}

/* "YYYY-MM-DD" -> unix ms at 00:00 UTC; -1 when malformed. */
static int64_t parse_day(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (!end || *end) return -1;
    return (int64_t)timegm(&tm) * 1000;
}

/* Connects to url (rblock_connect: redis[s]://[[user]:password@]host[:port][/db] or unix:/path),
 * authenticated and on its database. NULL (after a message on stderr) on any failure; the caller
 * frees with rblock_free. */
static redisContext *export_connect(const char *url) {
    cg_err err;
    redisContext *c = rblock_connect(url, 0, &err);
    if (!c) fprintf(stderr, "chatgw-export: %s\n", err.msg);
    return c;
}

static const char *field(redisReply *h, const char *name) {
    for (size_t i = 0; h && i + 1 < h->elements; i += 2)
        if (!strcmp(h->element[i]->str, name)) return h->element[i + 1]->str;
    return NULL;
}

/* A number in [0, 10000) fixed by (seed, conv): the sample does not depend on scan order. */
static unsigned sample_point(unsigned seed, const char *conv) {
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (const char *p = conv; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (unsigned)(h % 10000);
}

/* Whether conversation conv (hash h) passes the filters. */
static int export_selected(const char *conv, redisReply *h, const export_opts *o) {
    const char *created = field(h, "created");
    if (!created) return 0;
    int64_t t = strtoll(created, NULL, 10);
    if (o->from_ms && t < o->from_ms) return 0;
    if (o->to_ms && t >= o->to_ms) return 0;
    const char *q = field(h, "queue");
    if (o->queue && (!q || strcmp(q, o->queue))) return 0;
    const char *st = field(h, "state");
    if (o->state && (!st || strcmp(st, o->state))) return 0;
    if (o->sample < 100.0 && sample_point(o->seed, conv) >= (unsigned)(o->sample * 100.0)) return 0;
    return 1;
}

static void set_str(json_t *obj, const char *key, const char *v) {
    if (v) json_object_set_new(obj, key, json_string(v));
}

static void set_int(json_t *obj, const char *key, const char *v) {
    if (v) json_object_set_new(obj, key, json_integer(strtoll(v, NULL, 10)));
}

/* The transcript of conv as a JSON array of protocol messages; NULL on a Redis error. */
static json_t *export_messages(redisContext *c, const char *conv) {
    json_t *arr = json_array();
    char from[32] = "-";
    for (;;) {
        redisReply *r = redisCommand(c, "XRANGE " CG_KEY_CONV_LOG " %s + COUNT 500", conv, from);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            if (r) freeReplyObject(r);
            json_decref(arr);
            return NULL;
        }
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            redisReply *e = r->element[i], *kv = e->element[1];
            uint64_t seq = strtoull(e->element[0]->str, NULL, 10);
            snprintf(from, sizeof(from), "%llu-1", (unsigned long long)seq);
            if (kv->elements < 2) continue;
            msg m;
            msg_init(&m);
            if (msg_decode_msgpack(&m, kv->element[1]->str, kv->element[1]->len, NULL) == 0) {
                msg_stored_fill(&m);
                snprintf(m.conv, sizeof(m.conv), "%s", conv);
                m.seq = seq;
                size_t len;
                unsigned char *js = msg_encode_json(&m, 0, &len);
                json_t *one = js ? json_loadb((const char *)js, len, 0, NULL) : NULL;
                if (one) json_array_append_new(arr, one);
                free(js);
            }
            msg_free(&m);
        }
        freeReplyObject(r);
        if (n < 500) return arr;
    }
}

/* Write one JSON line for conversation conv (hash h). -1 on a Redis error. */
static int export_one(redisContext *c, const char *conv, redisReply *h) {
    json_t *o = json_object();
    set_str(o, "conv", conv);
    static const char *const strs[] = {"state",    "queue", "category",   "channel",
                                       "customer", "agent", "resolution", "complaint"};
    static const char *const ints[] = {"created",   "queued_at", "assigned_at",
                                       "closed_at", "prio",      "rating"};
    for (size_t i = 0; i < sizeof(strs) / sizeof(*strs); i++)
        set_str(o, strs[i], field(h, strs[i]));
    for (size_t i = 0; i < sizeof(ints) / sizeof(*ints); i++)
        set_int(o, ints[i], field(h, ints[i]));
    json_t *msgs = export_messages(c, conv);
    if (!msgs) {
        json_decref(o);
        return -1;
    }
    json_object_set_new(o, "messages", msgs);
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!line) return -1;
    puts(line);
    free(line);
    return 0;
}

/* Conversation hashes are cg:conv:<id> (no further ':'); SCAN visits every key once. */
static int export_all(redisContext *c, const export_opts *o, unsigned *n_out) {
    char cursor[32] = "0";
    do {
        redisReply *r =
            redisCommand(c, "SCAN %s MATCH %s* COUNT 500 TYPE hash", cursor, CG_KEY_CONV_PREFIX);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *key = keys->element[i]->str, *conv = key + strlen(CG_KEY_CONV_PREFIX);
            if (strchr(conv, ':')) continue;
            redisReply *h = redisCommand(c, "HGETALL %s", key);
            int rc = 0;
            if (h && h->type == REDIS_REPLY_ARRAY && export_selected(conv, h, o)) {
                rc = export_one(c, conv, h);
                if (rc == 0) (*n_out)++;
            }
            if (h) freeReplyObject(h);
            if (rc < 0) {
                freeReplyObject(r);
                return -1;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    return 0;
}

int main(int argc, char **argv) {
    export_opts o;
    memset(&o, 0, sizeof(o));
    o.sample = 100.0;
    o.seed = (unsigned)time(NULL);
    const char *env = getenv("CHATGW_REDIS_URL");
    cg_strlcpy(o.url, env ? env : "redis://127.0.0.1:6379", sizeof(o.url));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) return usage(0);
        if (!v) return usage(2);
        i++;
        long long n;
        if (!strcmp(a, "--redis"))
            cg_strlcpy(o.url, v, sizeof(o.url));
        else if (!strcmp(a, "--queue"))
            o.queue = v;
        else if (!strcmp(a, "--state"))
            o.state = v;
        else if (!strcmp(a, "--from")) {
            if ((o.from_ms = parse_day(v)) < 0) return fprintf(stderr, "--from: YYYY-MM-DD\n"), 2;
        } else if (!strcmp(a, "--to")) {
            if ((o.to_ms = parse_day(v)) < 0) return fprintf(stderr, "--to: YYYY-MM-DD\n"), 2;
            o.to_ms += 86400000; /* inclusive day */
        } else if (!strcmp(a, "--sample")) {
            if (cg_parse_ll(v, 0, 100, &n) < 0) return fprintf(stderr, "--sample: 0..100\n"), 2;
            o.sample = (double)n;
        } else if (!strcmp(a, "--seed")) {
            if (cg_parse_ll(v, 0, 4294967295LL, &n) < 0) return fprintf(stderr, "--seed: N\n"), 2;
            o.seed = (unsigned)n;
        } else
            return usage(2);
    }
    redisContext *c = export_connect(o.url);
    if (!c) return 1;
    unsigned n = 0;
    int rc = export_all(c, &o, &n);
    rblock_free(c);
    if (rc < 0) {
        fprintf(stderr, "chatgw-export: Redis error while reading\n");
        return 1;
    }
    fprintf(stderr, "chatgw-export: %u conversation(s)\n", n);
    return 0;
}
