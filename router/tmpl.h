/* tmpl.h -- the router's customer-facing texts per locale: [templates <locale>] sections of the
 * configuration file, the choice of a locale for a customer, and {name} substitution.
 *
 * Pure (no Redis, no router state). A set holds, per configured locale, the texts it gives;
 * tmpl_pick() falls back from the customer's locale to its language (en-US -> en), then to the
 * default locale; the caller falls back further to its built-in texts (tmpl_builtin). */
#ifndef CG_TMPL_H
#define CG_TMPL_H

#include <stddef.h>

#include "../common/err.h"
#include "desk_schema.h"

#define TMPL_LOCALE_MAX 16
#define TMPL_TEXT_MAX 1024

/* tmpl_key (TMPL_GREETING ... TMPL_N) and each key's name, variables and built-in English text
 * (cg_tmpls) are generated from schema/chatgw.json ("templates"). */

typedef struct tmpl_locale {
    char name[TMPL_LOCALE_MAX];
    char *text[TMPL_N]; /* owned; NULL = not given */
} tmpl_locale;

typedef struct tmpl_set {
    tmpl_locale *loc;
    size_t n;
} tmpl_set;

typedef struct tmpl_var {
    const char *name; /* without braces */
    const char *value;
} tmpl_var;

void tmpl_set_init(tmpl_set *s);
void tmpl_set_free(tmpl_set *s);
/* The key's name in a [templates] section ("greeting", "queued", ...). */
const char *tmpl_key_name(tmpl_key k);
/* The built-in English text of k (used when no template gives one). */
const char *tmpl_builtin(tmpl_key k);
/* Store one key of section [templates <locale>]. 0, or -1 with err (bad locale or key, twice). */
int tmpl_set_key(tmpl_set *s, const char *locale, const char *key, const char *value, cg_err *err);
/* Read the [templates <locale>] sections of the file at path (NULL or "" = none) into *out.
 * 0, or -1 with err ("file:line: key 'k': problem") and *out untouched. */
int tmpl_load(const char *path, tmpl_set *out, cg_err *err);
/* The configured locale serving `locale`: same name (case-insensitive), else same language
 * (the part before '-'); NULL when none. */
const tmpl_locale *tmpl_find(const tmpl_set *s, const char *locale);
/* The text of k for a customer of `locale` (may be ""): its locale, else default_locale; NULL
 * when neither gives k. */
const char *tmpl_pick(const tmpl_set *s, const char *locale, const char *default_locale,
                      tmpl_key k);
/* Copy tmpl into out (size n) replacing each {name} of vars by its value; unknown {...} are kept.
 * The result is cut at a UTF-8 character boundary when it does not fit. */
void tmpl_render(const char *tmpl, const tmpl_var *vars, size_t n_vars, char *out, size_t n);

#endif
