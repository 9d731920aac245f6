/* err.c -- see err.h. */
#include "err.h"

#include <stdio.h>
#include <string.h>

int cg_err_set(cg_err *err, const char *code, const char *fmt, ...) {
    if (!err) return -1;
    snprintf(err->code, sizeof(err->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}
