/* config.c -- see config.h.
 *
 * The INI syntax is inih's. inih as packaged by Debian does not pass line numbers to the handler
 * (INI_HANDLER_LINENO is 0), so the file is fed to ini_parse_stream() through our own reader that
 * returns exactly one physical line per call and counts them: when the handler runs, the reader's
 * count is the line being handled (inih has no look-ahead). The reader also refuses lines longer
 * than inih's line buffer instead of letting inih split them into two "lines". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "util.h"

#define CFG_CODE "bad_config"

static const cfg_opt *cfg_find(const cfg_opt *opts, const char *name) {
    for (const cfg_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

static int parse_bool(const char *v, int *out) {
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Checks value against o's type and bounds and stores it. On failure writes the problem (e.g.
 * "too long (max 63)") into problem[pn], stores nothing and returns -1. For CFG_INT, min == max
 * == 0 means unbounded. */
static int cfg_apply(const cfg_opt *o, const char *value, char *problem, size_t pn) {
    switch (o->type) {
    case CFG_STR: {
        size_t len = strlen(value);
        if (o->size == 0 || len >= o->size) {
            snprintf(problem, pn, "too long (max %zu)", o->size ? o->size - 1 : 0);
            return -1;
        }
        memcpy(o->ptr, value, len + 1);
        return 0;
    }
    case CFG_INT: {
        long long min = o->min, max = o->max, v;
        if (min == 0 && max == 0) {
            min = LLONG_MIN;
            max = LLONG_MAX;
        }
        if (cg_parse_ll(value, LLONG_MIN, LLONG_MAX, &v) != 0) {
            snprintf(problem, pn, "'%.40s' is not a whole number", value);
            return -1;
        }
        if (v < min || v > max) {
            snprintf(problem, pn, "%lld is out of range [%lld, %lld]", v, min, max);
            return -1;
        }
        *(long long *)o->ptr = v;
        return 0;
    }
    case CFG_BOOL: {
        int b;
        if (parse_bool(value, &b) != 0) {
            snprintf(problem, pn, "'%.40s' is not a boolean (yes/no, true/false, on/off, 1/0)",
                     value);
            return -1;
        }
        *(int *)o->ptr = b;
        return 0;
    }
    }
    snprintf(problem, pn, "unknown type");
    return -1;
}

int cfg_set(const cfg_opt *opts, const char *name, const char *value, cg_err *err) {
    char problem[200];
    const cfg_opt *o = cfg_find(opts, name);
    if (!o) return cg_err_set(err, CFG_CODE, "key '%s': unknown key", name);
    if (cfg_apply(o, value ? value : "", problem, sizeof(problem)) != 0)
        return cg_err_set(err, CFG_CODE, "key '%s': %s", name, problem);
    return 0;
}

/* Applies each default; a NULL default stores "" / 0 without checking bounds. A default that
 * fails its own check is a bug in the table and is reported as such. */
static int cfg_defaults(const cfg_opt *opts, cg_err *err) {
    char problem[200];
    for (const cfg_opt *o = opts; o->name; o++) {
        if (o->def) {
            if (cfg_apply(o, o->def, problem, sizeof(problem)) != 0)
                return cg_err_set(err, CFG_CODE, "default of key '%s': %s", o->name, problem);
            continue;
        }
        switch (o->type) {
        case CFG_STR:
            if (o->size) ((char *)o->ptr)[0] = '\0';
            break;
        case CFG_INT:
            *(long long *)o->ptr = 0;
            break;
        case CFG_BOOL:
            *(int *)o->ptr = 0;
            break;
        }
    }
    return 0;
}

/* State shared by the reader and the handler while one file is parsed. */
typedef struct cfg_parse {
    const cfg_opt *opts;
    cfg_extra_fn *extra;
    void *priv;
    const char *path;
    FILE *fp;
    char *buf; /* getline() buffer, freed by cfg_file() */
    size_t cap;
    int line;     /* physical line most recently handed to inih */
    int indented; /* that line starts with a blank: inih's continuation of the key before */
    int err_line; /* first line with an error of ours, 0 = none */
    char last_section[128]; /* section and key of the handler's previous call ("" = none since */
    char last_name[128];    /* the last section header): a continuation repeats them */
    char err_msg[300];
} cfg_parse;

/* ini_reader: one physical line per call (with its '\n'), counted. A line that does not fit in
 * inih's buffer is recorded as an error and replaced by an empty line. */
static char *cfg_reader(char *str, int num, void *stream) {
    cfg_parse *p = stream;
    ssize_t len = getline(&p->buf, &p->cap, p->fp);
    if (len < 0) return NULL;
    p->line++;
    size_t body = (size_t)len;
    while (body > 0 && (p->buf[body - 1] == '\n' || p->buf[body - 1] == '\r'))
        body--;
    if (num < 3 || body + 2 > (size_t)num) {
        if (!p->err_line) {
            p->err_line = p->line;
            snprintf(p->err_msg, sizeof(p->err_msg), "line too long (max %d characters)",
                     num > 2 ? num - 2 : 0);
        }
        body = 0;
    }
    size_t lead = strspn(p->buf, " \t");
    p->indented = lead > 0 && lead < body;
    if (lead < body && p->buf[lead] == '[') p->last_name[0] = '\0'; /* a new section */
    memcpy(str, p->buf, body);
    str[body] = '\n';
    str[body + 1] = '\0';
    return str;
}

/* A continuation line of table key o: the value so far, one space (the line break is blank
 * space), then value. Only text keys continue; the result is checked like any value. */
static int cfg_continue(const cfg_opt *o, const char *value, char *problem, size_t pn) {
    if (o->type != CFG_STR) {
        snprintf(problem, pn, "a continuation line: only text values may span several lines");
        return -1;
    }
    const char *cur = o->ptr;
    size_t a = strlen(cur), b = strlen(value);
    if (a + 1 + b >= o->size) {
        snprintf(problem, pn, "too long (max %zu)", o->size ? o->size - 1 : 0);
        return -1;
    }
    char *joined = malloc(a + b + 2);
    if (!joined) {
        snprintf(problem, pn, "out of memory");
        return -1;
    }
    memcpy(joined, cur, a);
    joined[a] = ' ';
    memcpy(joined + a + 1, value, b + 1);
    int rc = cfg_apply(o, joined, problem, pn);
    free(joined);
    return rc;
}

/* ini_handler: a key of the table is set in a plain section ("", "[common]", "[router]" ...);
 * every key of a named section ("[queue faq]", "[canned faq]": a name with a space), and any
 * other key, goes to extra (or is an error), so an entry of a named section can never change a
 * process setting that happens to share its name. inih hands an indented line after a key over
 * as that key once more (INI_ALLOW_MULTILINE): such a continuation adds to the value (table
 * keys) or is passed to extra with cont = 1, never taken for a new value. Returns 0 (inih's
 * "error") on the first problem and ignores every later line. */
static int cfg_handler(void *user, const char *section, const char *name, const char *value) {
    cfg_parse *p = user;
    char problem[200];
    if (p->err_line) return 1;

    int cont = p->indented && p->last_name[0] && !strcmp(p->last_name, name) &&
               !strcmp(p->last_section, section);
    snprintf(p->last_section, sizeof(p->last_section), "%s", section);
    snprintf(p->last_name, sizeof(p->last_name), "%s", name);
    const cfg_opt *o = strchr(section, ' ') ? NULL : cfg_find(p->opts, name);
    if (o) {
        int rc = cont ? cfg_continue(o, value, problem, sizeof(problem))
                      : cfg_apply(o, value, problem, sizeof(problem));
        if (rc == 0) return 1;
    } else if (p->extra) {
        cg_err e = {{0}, {0}};
        if (p->extra(p->priv, section, name, value, cont, &e) == 0) return 1;
        snprintf(problem, sizeof(problem), "%s", e.msg[0] ? e.msg : "refused");
    } else {
        snprintf(problem, sizeof(problem), "unknown key");
    }
    p->err_line = p->line;
    snprintf(p->err_msg, sizeof(p->err_msg), "key '%s': %s", name, problem);
    return 0;
}

static int cfg_file(const cfg_opt *opts, const char *path, cfg_extra_fn *extra, void *priv,
                    cg_err *err) {
    cfg_parse p = {.opts = opts, .extra = extra, .priv = priv, .path = path};
    p.fp = fopen(path, "r");
    if (!p.fp) return cg_err_set(err, CFG_CODE, "%s: cannot open: %s", path, strerror(errno));

    int ret = ini_parse_stream(cfg_reader, &p, cfg_handler, &p);
    int read_error = ferror(p.fp);
    fclose(p.fp);
    free(p.buf);

    if (read_error) return cg_err_set(err, CFG_CODE, "%s: read error", path);
    if (ret < 0) return cg_err_set(err, CFG_CODE, "%s: out of memory", path);
    if (ret > 0 && (p.err_line == 0 || ret < p.err_line))
        return cg_err_set(err, CFG_CODE, "%s:%d: syntax error", path, ret);
    if (p.err_line) return cg_err_set(err, CFG_CODE, "%s:%d: %s", path, p.err_line, p.err_msg);
    return 0;
}

/* CHATGW_<NAME> for every key of the table; an empty variable counts as set. */
static int cfg_env(const cfg_opt *opts, cg_err *err) {
    char var[128], problem[200];
    for (const cfg_opt *o = opts; o->name; o++) {
        int n = snprintf(var, sizeof(var), "CHATGW_%s", o->name);
        if (n < 0 || (size_t)n >= sizeof(var)) continue;
        for (char *c = var; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        const char *v = getenv(var);
        if (!v) continue;
        if (cfg_apply(o, v, problem, sizeof(problem)) != 0)
            return cg_err_set(err, CFG_CODE, "environment %s: %s", var, problem);
    }
    return 0;
}

int cfg_load(const cfg_opt *opts, const char *path, cfg_extra_fn *extra, void *priv, cg_err *err) {
    if (cfg_defaults(opts, err) != 0) return -1;
    if (path && path[0] && cfg_file(opts, path, extra, priv, err) != 0) return -1;
    return cfg_env(opts, err);
}
