/* hours.c -- see hours.h.
 *
 * The open windows of a local day d (days after today) are turned into absolute times with
 * mktime() on {year, month, mday + d, HH, MM, isdst = -1} in the spec's zone, so days that change
 * to or from daylight saving time come out right; every question (open? next opening? next
 * change?) walks those windows forward from the day of t, at most HOURS_SCAN_DAYS days. */
#include "hours.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/util.h"

#define HOURS_CODE "bad_config"
#define HOURS_SCAN_DAYS 400

static const char *const hours_days[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

void hours_init(hours_spec *h) {
    memset(h, 0, sizeof(*h));
}

/* ---- parsing ---- */

static int hours_day(const char *p, size_t len) {
    if (len != 3) return -1;
    for (int i = 0; i < 7; i++)
        if (strncasecmp(p, hours_days[i], 3) == 0) return i;
    return -1;
}

/* "HH:MM" at *pp (24:00 allowed when end); minutes, or -1. */
static int hours_time(const char **pp, int end) {
    const char *p = *pp;
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] != ':' || p[3] < '0' ||
        p[3] > '5' || p[4] < '0' || p[4] > '9')
        return -1;
    int hh = (p[0] - '0') * 10 + (p[1] - '0'), mm = (p[3] - '0') * 10 + (p[4] - '0');
    int t = hh * 60 + mm;
    if (t > 1440 || (t == 1440 && !end)) return -1;
    *pp = p + 5;
    return t;
}

static const char *hours_skip(const char *p) {
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* The days part of an item: sets days[0..6]. Returns the rest, or NULL. */
static const char *hours_item_days(const char *p, int days[7]) {
    const char *w = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
        p++;
    if ((size_t)(p - w) == 5 && strncasecmp(w, "daily", 5) == 0) {
        for (int i = 0; i < 7; i++)
            days[i] = 1;
        return p;
    }
    int from = hours_day(w, (size_t)(p - w)), to = from;
    if (from < 0) return NULL;
    if (*p == '-') {
        const char *w2 = ++p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            p++;
        to = hours_day(w2, (size_t)(p - w2));
        if (to < 0) return NULL;
    }
    for (int d = from;; d = (d + 1) % 7) {
        days[d] = 1;
        if (d == to) break;
    }
    return p;
}

/* Add window [open, close) to every day set in days. */
static int hours_add_win(hours_spec *h, const int days[7], int open, int close, cg_err *err) {
    for (int d = 0; d < 7; d++) {
        if (!days[d]) continue;
        if (h->n_win[d] == HOURS_WIN_MAX)
            return cg_err_set(err, HOURS_CODE, "more than %d windows on %s", HOURS_WIN_MAX,
                              hours_days[d]);
        hours_win *w = &h->win[d][h->n_win[d]];
        w->open = (short)open;
        w->close = (short)close;
        h->n_win[d]++;
        /* keep the day's windows sorted by opening time */
        for (int i = h->n_win[d] - 1; i > 0 && h->win[d][i].open < h->win[d][i - 1].open; i--) {
            hours_win t = h->win[d][i];
            h->win[d][i] = h->win[d][i - 1];
            h->win[d][i - 1] = t;
        }
    }
    return 0;
}

/* One item "<days> <from>-<to> ..." in [p, end). */
static int hours_item(hours_spec *h, const char *p, const char *end, cg_err *err) {
    int days[7] = {0};
    p = hours_item_days(hours_skip(p), days);
    if (!p) return cg_err_set(err, HOURS_CODE, "expected days like mon-fri or daily");
    int n = 0;
    for (p = hours_skip(p); p < end; p = hours_skip(p)) {
        int open = hours_time(&p, 0);
        if (open < 0 || *p != '-') return cg_err_set(err, HOURS_CODE, "expected HH:MM-HH:MM");
        p++;
        int close = hours_time(&p, 1);
        if (close < 0) return cg_err_set(err, HOURS_CODE, "expected HH:MM-HH:MM");
        if (close <= open) return cg_err_set(err, HOURS_CODE, "a window must end after it starts");
        if (hours_add_win(h, days, open, close, err) != 0) return -1;
        n++;
    }
    if (!n) return cg_err_set(err, HOURS_CODE, "days without a time window");
    return 0;
}

int hours_parse_week(hours_spec *h, const char *spec, cg_err *err) {
    const char *p = spec;
    while (*p) {
        const char *end = p + strcspn(p, ",;");
        const char *q = hours_skip(p);
        if (q < end) {
            char item[256];
            size_t len = (size_t)(end - p);
            if (len >= sizeof(item)) return cg_err_set(err, HOURS_CODE, "item too long");
            memcpy(item, p, len);
            item[len] = '\0';
            while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
                item[--len] = '\0';
            if (hours_item(h, item, item + len, err) != 0) return -1;
            h->set = 1;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

int hours_parse_holidays(hours_spec *h, const char *list, cg_err *err) {
    const char *p = list;
    while (*p) {
        p = hours_skip(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (!*p) break;
        int y, m, d, used = 0;
        if (sscanf(p, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 || used != 10 || m < 1 || m > 12 ||
            d < 1 || d > 31)
            return cg_err_set(err, HOURS_CODE, "'%.20s' is not a date YYYY-MM-DD", p);
        if (h->n_holidays == HOURS_HOLI_MAX)
            return cg_err_set(err, HOURS_CODE, "more than %d holidays", HOURS_HOLI_MAX);
        h->holidays[h->n_holidays++] = y * 10000 + m * 100 + d;
        p = hours_skip(p + used);
        if (*p && *p != ',') return cg_err_set(err, HOURS_CODE, "dates must be separated by ','");
    }
    return 0;
}

int hours_set_tz(hours_spec *h, const char *tz, cg_err *err) {
    char path[128];
    if (!tz[0]) {
        h->tz[0] = '\0';
        return 0;
    }
    if (strlen(tz) >= sizeof(h->tz) || strstr(tz, "..") || tz[0] == '/')
        return cg_err_set(err, HOURS_CODE, "'%.64s' is not a time zone name", tz);
    snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
    if (access(path, R_OK) != 0)
        return cg_err_set(err, HOURS_CODE, "unknown time zone '%.64s' (not in /usr/share/zoneinfo)",
                          tz);
    cg_strlcpy(h->tz, tz, sizeof(h->tz));
    return 0;
}

/* ---- local time in the spec's zone ---- */

typedef struct hours_tzsave {
    int switched, had;
    char old[256];
} hours_tzsave;

static void hours_tz_push(const hours_spec *h, hours_tzsave *s) {
    s->switched = 0;
    if (!h->tz[0]) return;
    const char *old = getenv("TZ");
    s->had = old != NULL;
    if (old) cg_strlcpy(s->old, old, sizeof(s->old));
    setenv("TZ", h->tz, 1);
    tzset();
    s->switched = 1;
}

static void hours_tz_pop(hours_tzsave *s) {
    if (!s->switched) return;
    if (s->had)
        setenv("TZ", s->old, 1);
    else
        unsetenv("TZ");
    tzset();
}

/* The local date of t (seconds) as a tm with the time set to midnight. */
static void hours_local_day(time_t t, struct tm *day) {
    localtime_r(&t, day);
    day->tm_hour = day->tm_min = day->tm_sec = 0;
}

/* Absolute ms of local day `base` + d days at minute `min` (1440 = next midnight). */
static int64_t hours_at(const struct tm *base, int d, int min) {
    struct tm t = *base;
    t.tm_mday += d;
    t.tm_hour = min / 60;
    t.tm_min = min % 60;
    t.tm_sec = 0;
    t.tm_isdst = -1;
    return (int64_t)mktime(&t) * 1000;
}

/* Weekday and yyyymmdd of local day base + d. */
static void hours_day_info(const struct tm *base, int d, int *wday, int *ymd) {
    struct tm t = *base;
    t.tm_mday += d;
    t.tm_hour = 12; /* noon: never moved to another day by a DST change */
    t.tm_isdst = -1;
    mktime(&t);
    *wday = t.tm_wday;
    *ymd = (t.tm_year + 1900) * 10000 + (t.tm_mon + 1) * 100 + t.tm_mday;
}

static int hours_holiday(const hours_spec *h, int ymd) {
    for (size_t i = 0; i < h->n_holidays; i++)
        if (h->holidays[i] == ymd) return 1;
    return 0;
}

/* The first window (from day -1 on) that ends after t: *o, *c. 0, or -1 when none in range.
 * Adjacent windows (one closes when the next opens) are merged; *c is INT64_MAX when the merged
 * window lasts through the scanned range. TZ must be switched. */
static int hours_window_after(const hours_spec *h, int64_t t_ms, int64_t *o, int64_t *c) {
    struct tm base;
    hours_local_day((time_t)(t_ms / 1000), &base);
    int found = 0;
    for (int d = -1; d < HOURS_SCAN_DAYS; d++) {
        int wday, ymd;
        hours_day_info(&base, d, &wday, &ymd);
        if (hours_holiday(h, ymd)) {
            if (found) return 0;
            continue;
        }
        for (int i = 0; i < h->n_win[wday]; i++) {
            int64_t wo = hours_at(&base, d, h->win[wday][i].open);
            int64_t wc = hours_at(&base, d, h->win[wday][i].close);
            if (found) {
                if (wo > *c) return 0;
                if (wc > *c) *c = wc;
                continue;
            }
            if (wc <= t_ms) continue;
            *o = wo;
            *c = wc;
            found = 1;
        }
        if (found && d > 0 && *c < hours_at(&base, d, 1440)) return 0;
    }
    if (!found) return -1;
    *c = INT64_MAX; /* open through the whole scanned range: it never closes */
    return 0;
}

int hours_counted(const hours_spec *h) {
    return h->set || h->n_holidays;
}

int hours_open(const hours_spec *h, int64_t t_ms) {
    if (!h->set) return 1;
    hours_tzsave s;
    int64_t o, c;
    hours_tz_push(h, &s);
    int open = hours_window_after(h, t_ms, &o, &c) == 0 && o <= t_ms;
    hours_tz_pop(&s);
    return open;
}

int64_t hours_next_open(const hours_spec *h, int64_t t_ms) {
    if (!h->set) return t_ms;
    hours_tzsave s;
    int64_t o = 0, c;
    hours_tz_push(h, &s);
    int rc = hours_window_after(h, t_ms, &o, &c);
    hours_tz_pop(&s);
    if (rc != 0) return 0;
    return o > t_ms ? o : t_ms;
}

int hours_open_at(const hours_spec *h, hours_state *m, int64_t t_ms) {
    if (m->until > m->from && t_ms >= m->from && t_ms < m->until) return m->open;
    m->from = t_ms;
    m->opens_at = 0;
    if (!h->set) {
        m->open = 1;
        m->until = INT64_MAX;
        return 1;
    }
    hours_tzsave s;
    int64_t o = 0, c = 0;
    hours_tz_push(h, &s);
    int rc = hours_window_after(h, t_ms, &o, &c);
    hours_tz_pop(&s);
    if (rc != 0) { /* never opens within a year: closed, asked again in an hour */
        m->open = 0;
        m->until = t_ms + 3600 * 1000;
        return 0;
    }
    m->open = o <= t_ms;
    if (!m->open) m->opens_at = o;
    m->until = m->open ? c : o; /* c: INT64_MAX when it never closes */
    return m->open;
}

int64_t hours_next_change(const hours_spec *h, int64_t t_ms) {
    if (!h->set) return 0;
    hours_tzsave s;
    int64_t o = 0, c = 0;
    hours_tz_push(h, &s);
    int rc = hours_window_after(h, t_ms, &o, &c);
    hours_tz_pop(&s);
    if (rc != 0) return 0;
    if (o > t_ms) return o;
    return c == INT64_MAX ? 0 : c;
}

int64_t hours_add(const hours_spec *h, int64_t t_ms, int64_t secs) {
    if (!h->set) return t_ms + secs * 1000;
    int64_t left = secs * 1000, t = t_ms;
    hours_tzsave s;
    hours_tz_push(h, &s);
    for (int i = 0; i < 10000; i++) {
        int64_t o, c;
        if (hours_window_after(h, t, &o, &c) != 0) break;
        if (o < t) o = t;
        if (left <= c - o) {
            hours_tz_pop(&s);
            return o + left;
        }
        left -= c - o;
        t = c;
    }
    hours_tz_pop(&s);
    return 0;
}

void hours_format(const hours_spec *h, int64_t t_ms, const char *fmt, char *out, size_t n) {
    hours_tzsave s;
    struct tm tm;
    time_t t = (time_t)(t_ms / 1000);
    hours_tz_push(h, &s);
    localtime_r(&t, &tm);
    if (n && strftime(out, n, fmt ? fmt : "%Y-%m-%d %H:%M", &tm) == 0) out[0] = '\0';
    hours_tz_pop(&s);
}
