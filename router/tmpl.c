/* tmpl.c -- see tmpl.h. */
#include "tmpl.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/config.h"
#include "../common/util.h"

#define TMPL_CODE "bad_config"

void tmpl_set_init(tmpl_set *s) {
    s->loc = NULL;
    s->n = 0;
}

void tmpl_set_free(tmpl_set *s) {
    for (size_t i = 0; i < s->n; i++)
        for (int k = 0; k < TMPL_N; k++)
            free(s->loc[i].text[k]);
    free(s->loc);
    tmpl_set_init(s);
}

const char *tmpl_key_name(tmpl_key k) {
    return k < TMPL_N ? cg_tmpls[k].key : "";
}

const char *tmpl_builtin(tmpl_key k) {
    return k < TMPL_N ? cg_tmpls[k].builtin : "";
}

/* Locale names: 1-15 of [A-Za-z0-9-]. */
static int tmpl_locale_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= TMPL_LOCALE_MAX) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            return 0;
    return 1;
}

static tmpl_locale *tmpl_exact(const tmpl_set *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->loc[i].name, name) == 0) return &s->loc[i];
    return NULL;
}

int tmpl_set_key(tmpl_set *s, const char *locale, const char *key, const char *value, cg_err *err) {
    if (!tmpl_locale_ok(locale))
        return cg_err_set(err, TMPL_CODE, "[templates %.40s]: not a locale name like zh-CN",
                          locale);
    int k = 0;
    while (k < TMPL_N && strcmp(cg_tmpls[k].key, key) != 0)
        k++;
    if (k == TMPL_N) return cg_err_set(err, TMPL_CODE, "unknown key in [templates %s]", locale);
    if (strlen(value) >= TMPL_TEXT_MAX)
        return cg_err_set(err, TMPL_CODE, "too long (max %d)", TMPL_TEXT_MAX - 1);
    tmpl_locale *l = tmpl_exact(s, locale);
    if (!l) {
        tmpl_locale *grown = realloc(s->loc, (s->n + 1) * sizeof(*grown));
        if (!grown) return cg_err_set(err, "nomem", "out of memory");
        s->loc = grown;
        l = &s->loc[s->n++];
        memset(l, 0, sizeof(*l));
        cg_strlcpy(l->name, locale, sizeof(l->name));
    }
    if (l->text[k]) return cg_err_set(err, TMPL_CODE, "given twice in the same section");
    l->text[k] = strdup(value);
    if (!l->text[k]) return cg_err_set(err, "nomem", "out of memory");
    return 0;
}

/* A continuation line of template key in locale: one more line of its text (set by the key's
 * own line just before). */
static int tmpl_add_line(tmpl_set *s, const char *locale, const char *key, const char *value,
                         cg_err *err) {
    tmpl_locale *l = tmpl_exact(s, locale);
    int k = 0;
    while (k < TMPL_N && strcmp(cg_tmpls[k].key, key) != 0)
        k++;
    if (!l || k == TMPL_N || !l->text[k]) return tmpl_set_key(s, locale, key, value, err);
    size_t a = strlen(l->text[k]), b = strlen(value);
    if (a + 1 + b >= TMPL_TEXT_MAX)
        return cg_err_set(err, TMPL_CODE, "too long (max %d)", TMPL_TEXT_MAX - 1);
    char *t = realloc(l->text[k], a + b + 2);
    if (!t) return cg_err_set(err, "nomem", "out of memory");
    t[a] = '\n';
    memcpy(t + a + 1, value, b + 1);
    l->text[k] = t;
    return 0;
}

/* cfg_extra_fn: keys of [templates <locale>]; every other section is someone else's. */
static int tmpl_extra(void *priv, const char *section, const char *key, const char *value, int cont,
                      cg_err *err) {
    if (strncmp(section, "templates", 9) != 0) return 0;
    if (section[9] != ' ' && section[9] != '\t')
        return cg_err_set(err, TMPL_CODE, "[templates] needs a locale: [templates zh-CN]");
    const char *locale = section + 9;
    while (*locale == ' ' || *locale == '\t')
        locale++;
    return cont ? tmpl_add_line(priv, locale, key, value, err)
                : tmpl_set_key(priv, locale, key, value, err);
}

int tmpl_load(const char *path, tmpl_set *out, cg_err *err) {
    static const cfg_opt none[] = {{NULL, CFG_STR, NULL, NULL, 0, 0, 0, NULL}};
    tmpl_set s;
    tmpl_set_init(&s);
    if (path && path[0] && cfg_load(none, path, tmpl_extra, &s, err) != 0) {
        tmpl_set_free(&s);
        return -1;
    }
    *out = s;
    return 0;
}

const tmpl_locale *tmpl_find(const tmpl_set *s, const char *locale) {
    if (!locale || !locale[0]) return NULL;
    const tmpl_locale *l = tmpl_exact(s, locale);
    if (l) return l;
    size_t lang = strcspn(locale, "-_");
    for (size_t i = 0; i < s->n; i++) {
        const char *name = s->loc[i].name;
        if (strcspn(name, "-_") == lang && strncasecmp(name, locale, lang) == 0) return &s->loc[i];
    }
    return NULL;
}

const char *tmpl_pick(const tmpl_set *s, const char *locale, const char *default_locale,
                      tmpl_key k) {
    if (k >= TMPL_N) return NULL;
    const tmpl_locale *l = tmpl_find(s, locale);
    if (l && l->text[k]) return l->text[k];
    l = tmpl_find(s, default_locale);
    if (l && l->text[k]) return l->text[k];
    return NULL;
}

/* Append src[0..len) to out at *o, whole UTF-8 characters only. */
static void tmpl_put(char *out, size_t n, size_t *o, const char *src, size_t len) {
    if (*o + len + 1 > n) {
        len = n - 1 - *o;
        while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(out + *o, src, len);
    *o += len;
}

void tmpl_render(const char *tmpl, const tmpl_var *vars, size_t n_vars, char *out, size_t n) {
    size_t o = 0;
    if (n == 0) return;
    for (const char *p = tmpl; *p && o + 1 < n;) {
        const char *sub = NULL;
        size_t skip = 0;
        for (size_t i = 0; *p == '{' && i < n_vars && !sub; i++) {
            size_t len = strlen(vars[i].name);
            if (strncmp(p + 1, vars[i].name, len) == 0 && p[1 + len] == '}') {
                sub = vars[i].value;
                skip = len + 2;
            }
        }
        if (sub) {
            tmpl_put(out, n, &o, sub, strlen(sub));
            p += skip;
            continue;
        }
        size_t len = 1;
        while ((((unsigned char)p[len]) & 0xC0) == 0x80)
            len++;
        if (o + len + 1 > n) break;
        tmpl_put(out, n, &o, p, len);
        p += len;
    }
    out[o] = '\0';
}
