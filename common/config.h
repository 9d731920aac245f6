/* config.h -- declarative configuration: one table of keys, an INI file, the environment.
 *
 * Each application describes its keys in a cfg_opt table (name, type, default, where to store,
 * bounds, help). cfg_load() applies, in order: the defaults, the INI file (plain sections such as
 * [router] only group the table's keys, a key name is unique across them; the keys of named
 * sections such as [queue faq] all go to the extra callback), then environment variables
 * CHATGW_<NAME> (upper case). A text value may continue on indented lines (joined with one
 * space: comma lists keep their commas). Every value is checked against its type and bounds; the
 * first problem is reported naming the file, line and key (or the variable). Parsing of the INI
 * syntax is inih's. */
#ifndef CG_CONFIG_H
#define CG_CONFIG_H

#include <stddef.h>

#include "err.h"

typedef enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL } cfg_type;

typedef struct cfg_opt {
    const char *name; /* key, lower_snake_case; env var is CHATGW_<NAME> */
    cfg_type type;
    const char *def;    /* default as text; NULL = empty string / 0 */
    void *ptr;          /* CFG_STR: char[size]; CFG_INT: long long; CFG_BOOL: int */
    size_t size;        /* CFG_STR: buffer size (longer values are an error) */
    long long min, max; /* CFG_INT bounds */
    const char *help;
} cfg_opt;

/* Called for a key in a section the table does not know (e.g. "[queue presales]"). cont is 1 when
 * value is an indented continuation line of the same key (a multi-line value: lists add items,
 * texts add a line), 0 for the key's own line. Return 0 if taken, -1 with err set to refuse it.
 * NULL: such keys are errors. */
typedef int cfg_extra_fn(void *priv, const char *section, const char *key, const char *value,
                         int cont, cg_err *err);

/* Load defaults, then `path` (NULL or "" = no file), then the environment. opts ends with a
 * {NULL} entry. Returns 0, or -1 with err naming "file:line: key: problem". */
int cfg_load(const cfg_opt *opts, const char *path, cfg_extra_fn *extra, void *priv, cg_err *err);

/* Set one key from text, as the file and the environment do. -1 with err on a bad value. */
int cfg_set(const cfg_opt *opts, const char *name, const char *value, cg_err *err);

#endif
