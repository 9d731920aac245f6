/* log.h -- leveled logging to stderr, one line per event.
 *
 * Lines look like `2026-11-23T11:49:08.123Z gateway[1234] INFO message`. Never pass tokens,
 * secrets or message text; pass customer identifiers through log_mask() first. */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stddef.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Set the process name shown in every line and the minimum level (default "chatgw", LOG_INFO). */
void log_init(const char *name, log_level min);
/* Parse "debug" | "info" | "warn" | "error"; returns -1 for anything else. */
int log_level_parse(const char *s, log_level *out);

void log_write(log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

/* Write a masked form of personal data s into out (size n) and return out: the first and last
 * character kept, the rest replaced by '*' ("alice@example.com" -> "a***************m"); strings of
 * 4 bytes or fewer become "****". Works on UTF-8 code points. NULL becomes "-". */
const char *log_mask(const char *s, char *out, size_t n);

#endif
