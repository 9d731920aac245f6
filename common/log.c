/* log.c -- see log.h.
 *
 * Each line is formatted into one buffer and written with a single write(2) on stderr, so lines
 * of several processes sharing the stream never interleave and nothing is left in a stdio buffer
 * if the process dies. Control characters in the message are replaced by '?' so that a value
 * that reached a log line cannot forge another line. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static char log_name[64] = "chatgw";
static log_level log_min = LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *name, log_level min) {
    snprintf(log_name, sizeof(log_name), "%s", name ? name : "chatgw");
    log_min = min;
}

int log_level_parse(const char *s, log_level *out) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (!s) return -1;
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Writes all of buf, retrying on EINTR and short writes. Errors are ignored: there is nowhere
 * left to report them. */
static void write_all(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        buf += w;
        len -= (size_t)w;
    }
}

void log_write(log_level lvl, const char *fmt, ...) {
    if (lvl < log_min) return;
    if ((int)lvl < 0 || lvl > LOG_ERROR) lvl = LOG_ERROR;

    int saved_errno = errno;
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);

    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_name, (long)getpid(), level_names[lvl]);
    if (n < 0 || (size_t)n >= sizeof(line)) n = 0;
    size_t head = (size_t)n;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + head, sizeof(line) - head - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = head + (size_t)m;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
        memcpy(line + len - 3, "...", 3);
    }
    for (size_t i = head; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f) line[i] = '?';
    }
    line[len++] = '\n';
    write_all(line, len);
    errno = saved_errno;
}

/* Length in bytes of the UTF-8 sequence starting at s (at least 1), and whether it is a valid
 * sequence. An invalid byte counts as one code point of length 1. */
static size_t utf8_len(const unsigned char *s, int *valid) {
    size_t n;
    *valid = 0;
    if (s[0] < 0x80)
        n = 1;
    else if ((s[0] & 0xe0) == 0xc0 && s[0] >= 0xc2)
        n = 2;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3;
    else if ((s[0] & 0xf8) == 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 1;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 1;
    *valid = 1;
    return n;
}

/* Keeps the first and last code point (an invalid sequence is shown as '?'), writes one '*' per
 * code point in between. Strings of 4 bytes or fewer, or of 2 code points or fewer (a two-letter
 * Chinese name is 6 bytes but would otherwise be shown whole), become "****". If the result does
 * not fit in n, "****" (truncated to n-1) is written instead. */
const char *log_mask(const char *s, char *out, size_t n) {
    if (!out || n == 0) return out;
    if (!s) {
        snprintf(out, n, "-");
        return out;
    }

    const unsigned char *p = (const unsigned char *)s;
    size_t bytes = strlen(s);
    size_t cps = 0, first_len = 0, last_off = 0, last_len = 0;
    int first_ok = 0, last_ok = 0;
    for (size_t i = 0; i < bytes;) {
        int ok;
        size_t l = utf8_len(p + i, &ok);
        if (cps == 0) {
            first_len = l;
            first_ok = ok;
        }
        last_off = i;
        last_len = l;
        last_ok = ok;
        cps++;
        i += l;
    }

    size_t need = (first_ok ? first_len : 1) + (cps - 2) + (last_ok ? last_len : 1);
    if (bytes <= 4 || cps <= 2 || need + 1 > n) {
        snprintf(out, n, "****");
        return out;
    }

    size_t o = 0;
    if (first_ok) {
        memcpy(out, s, first_len);
        o = first_len;
    } else {
        out[o++] = '?';
    }
    memset(out + o, '*', cps - 2);
    o += cps - 2;
    if (last_ok) {
        memcpy(out + o, s + last_off, last_len);
        o += last_len;
    } else {
        out[o++] = '?';
    }
    out[o] = '\0';
    return out;
}
