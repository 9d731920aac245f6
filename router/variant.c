/* variant.c -- a router message in every configured locale, for the event functions
 * (redis/event.lua). The conversation's locale is known only inside the call, so the router
 * sends each message rendered for every [templates <locale>] section and for the default, and
 * the library picks one with tmpl_find's rule (event.lua, variant()): the same name, then the
 * same language, then the default. Two fields of the event's map carry it:
 *
 *   locales   map '=<name>' and '~<language>' (lower case) -> index into a variant array; a
 *             language maps to its first section, as tmpl_find scans them
 *   <field>   array of msgpack payloads: [1] the default locale's, [i + 2] section i's; "" where
 *             the message is off (an empty bot text)
 *
 * A payload has no channel (say_payload): the library knows the conversation's. */
#include "router.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/log.h"

/* Pack the map key `prefix` + lower-cased s[0..n). */
static void variant_key(msgpack_packer *pk, char prefix, const char *s, size_t n) {
    char k[TMPL_LOCALE_MAX + 2];
    if (n > TMPL_LOCALE_MAX) n = TMPL_LOCALE_MAX;
    k[0] = prefix;
    for (size_t i = 0; i < n; i++)
        k[i + 1] = (char)tolower((unsigned char)s[i]);
    msgpack_pack_str_with_body(pk, k, n + 1);
}

/* 1 when section i is the first of its language (the one tmpl_find takes for it). */
static int variant_lang_first(const tmpl_set *t, size_t i) {
    const char *name = t->loc[i].name;
    size_t lang = strcspn(name, "-_");
    for (size_t k = 0; k < i; k++)
        if (strcspn(t->loc[k].name, "-_") == lang && strncasecmp(t->loc[k].name, name, lang) == 0)
            return 0;
    return 1;
}

void variant_locales(evarg *a, const router *r) {
    const tmpl_set *t = &r->tmpl;
    evarg_key(a, "locales");
    /* '=' for every section; '~' for a language only at its first section */
    uint32_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += 1 + (uint32_t)variant_lang_first(t, i);
    msgpack_pack_map(&a->pk, n);
    for (size_t i = 0; i < t->n; i++) {
        const char *name = t->loc[i].name;
        variant_key(&a->pk, '=', name, strlen(name));
        msgpack_pack_uint32(&a->pk, (uint32_t)i + 2);
        if (!variant_lang_first(t, i)) continue;
        variant_key(&a->pk, '~', name, strcspn(name, "-_"));
        msgpack_pack_uint32(&a->pk, (uint32_t)i + 2);
    }
}

/* Pack the payload of s for locale ("" = the default) as a msgpack str ("" when off). */
static void variant_one(msgpack_packer *pk, job *j, const variant_spec *s, const char *locale) {
    char text[TMPL_TEXT_MAX + 256], dur[48];
    tmpl_var vars[4];
    size_t n = 0;
    if (s->var) {
        say_duration(locale, s->duration_s, dur, sizeof(dur));
        vars[n++] = (tmpl_var){s->var, dur};
    }
    for (size_t i = 0; i < s->n_vars && n < sizeof(vars) / sizeof(vars[0]); i++)
        vars[n++] = s->vars[i];
    tmpl_render(say_template(j->r, locale, s->key), vars, n, text, sizeof(text));
    size_t len = 0;
    unsigned char *buf = NULL;
    /* a bot text says which template it is (code): clients may act on it */
    const char *code = s->code ? s->code : s->type == MSG_TEXT ? tmpl_key_name(s->key) : NULL;
    if (text[0] || !s->off_when_empty)
        buf = say_payload(j, s->type, s->role, code, NULL, text, &len);
    if (!buf && (text[0] || !s->off_when_empty))
        log_error("cannot encode a %s message for locale '%s'", msg_type_name(s->type), locale);
    msgpack_pack_str_with_body(pk, buf ? (const char *)buf : "", buf ? len : 0);
    free(buf);
}

void variant_pack(evarg *a, const char *field, job *j, const variant_spec *s) {
    const tmpl_set *t = &j->r->tmpl;
    evarg_key(a, field);
    msgpack_pack_array(&a->pk, (uint32_t)t->n + 1);
    variant_one(&a->pk, j, s, "");
    for (size_t i = 0; i < t->n; i++)
        variant_one(&a->pk, j, s, t->loc[i].name);
}

/* Pack the array field of the unit of durations (hours or not) in every locale. */
static void variant_unit(evarg *a, const router *r, const char *field, int hours) {
    const tmpl_set *t = &r->tmpl;
    evarg_key(a, field);
    msgpack_pack_array(&a->pk, (uint32_t)t->n + 1);
    const char *u = say_duration_unit("", hours);
    msgpack_pack_str_with_body(&a->pk, u, strlen(u));
    for (size_t i = 0; i < t->n; i++) {
        u = say_duration_unit(t->loc[i].name, hours);
        msgpack_pack_str_with_body(&a->pk, u, strlen(u));
    }
}

void variant_units(evarg *a, const router *r) {
    variant_unit(a, r, "dur_min", 0);
    variant_unit(a, r, "dur_hour", 1);
}
