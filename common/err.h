/* err.h -- the one way chatgw reports errors.
 *
 * A function that can fail returns 0 on success and -1 on failure, and fills the caller's cg_err
 * (when not NULL) with a short machine code and a human sentence. The code doubles as the wire
 * error code sent to clients (docs/protocol.md), so keep it lower_snake_case and stable. */
#ifndef CG_ERR_H
#define CG_ERR_H

#include <stdarg.h>

typedef struct cg_err {
    char code[32]; /* e.g. "bad_json", "missing_field", "too_large" */
    char msg[200]; /* e.g. "field 'text' is required for type 'text'" */
} cg_err;

/* Fills err (if not NULL) and returns -1, so callers can write `return cg_err_set(...)`. */
int cg_err_set(cg_err *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
