/* hours.h -- business hours of a queue: weekly windows, holidays and a time zone; whether the desk
 * is open at a time, when it opens or closes next, and deadlines counted in business time.
 *
 * Pure (no Redis, no router state). Times are unix ms. Local times are computed with the system
 * time zone database: the functions switch TZ to the spec's zone (setenv + tzset), call
 * localtime_r/mktime and restore TZ, so they must not run concurrently with other threads using
 * local time (the router is single-threaded). A spec that was never given hours is always open. */
#ifndef CG_HOURS_H
#define CG_HOURS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"

#define HOURS_WIN_MAX 4   /* windows per weekday */
#define HOURS_HOLI_MAX 64 /* holiday dates */
#define HOURS_TZ_MAX 64

typedef struct hours_win {
    short open, close; /* minutes after local midnight; close > open, at most 1440 (24:00) */
} hours_win;

typedef struct hours_spec {
    int set;                         /* weekly hours given (else: always open) */
    hours_win win[7][HOURS_WIN_MAX]; /* by tm_wday: 0 = Sunday */
    unsigned char n_win[7];
    int holidays[HOURS_HOLI_MAX]; /* yyyymmdd, closed all day */
    size_t n_holidays;
    char tz[HOURS_TZ_MAX]; /* IANA name; "" = the process's local time */
} hours_spec;

void hours_init(hours_spec *h);

/* Weekly hours: items separated by ',' or ';', each "<days> <from>-<to> [<from>-<to> ...]" with
 * days "mon".."sun", a range "mon-fri" (may wrap: "sat-mon") or "daily"; times HH:MM, 24:00
 * allowed as an end, e.g. "mon-fri 09:00-18:00, sat 10:00-16:00". Adds to h. 0, or -1 with err. */
int hours_parse_week(hours_spec *h, const char *spec, cg_err *err);
/* Holidays: dates YYYY-MM-DD separated by ','. Adds to h. 0, or -1 with err. */
int hours_parse_holidays(hours_spec *h, const char *list, cg_err *err);
/* Time zone: an IANA name present in /usr/share/zoneinfo ("" = local). 0, or -1 with err. */
int hours_set_tz(hours_spec *h, const char *tz, cg_err *err);

/* 1 when h counts business time (weekly hours or holidays given): its deadlines are not plain
 * wall-clock durations. */
int hours_counted(const hours_spec *h);
/* 1 when the desk is open at t_ms. */
int hours_open(const hours_spec *h, int64_t t_ms);
/* The first time >= t_ms when the desk is open (t_ms itself when open); 0 when it never opens
 * within a year. */
int64_t hours_next_open(const hours_spec *h, int64_t t_ms);
/* When the open/closed state changes next after t_ms; 0 when never (always open, or never opens
 * within a year). */
int64_t hours_next_change(const hours_spec *h, int64_t t_ms);
/* t_ms plus secs of open time (the clock runs only while the desk is open); t_ms + secs when
 * always open; 0 when the desk never opens. */
int64_t hours_add(const hours_spec *h, int64_t t_ms, int64_t secs);
/* What one look at a spec says, true for every time in [from, until): open or not and, while
 * closed, the next opening (0: none within a year). All zero: nothing known yet. */
typedef struct hours_state {
    int64_t from, until;
    int open;
    int64_t opens_at;
} hours_state;
/* hours_open with a memo: from *memo while it covers t_ms, else worked out (one time zone switch,
 * as hours_open) and kept in *memo, with the next opening when closed (memo->opens_at, as
 * hours_next_open). For a caller that asks about the same spec on every event. */
int hours_open_at(const hours_spec *h, hours_state *memo, int64_t t_ms);
/* t_ms as local "YYYY-MM-DD HH:MM" (fmt "%Y-%m-%d %H:%M"), or with fmt for strftime. */
void hours_format(const hours_spec *h, int64_t t_ms, const char *fmt, char *out, size_t n);

#endif
