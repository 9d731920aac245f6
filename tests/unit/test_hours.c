/* test_hours.c -- business hours (router/hours.c): parsing weekly hours, holidays and time zones,
 * open/closed, the next opening and change, deadlines in business time. Pure, so compiled in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../router/hours.c"

/* Unix ms of a UTC date and time. */
static int64_t utc(int y, int mo, int d, int h, int mi) {
    struct tm t = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&t) * 1000;
}

static void parse_ok(hours_spec *h, const char *week, const char *tz) {
    cg_err err = {{0}, {0}};
    hours_init(h);
    if (hours_parse_week(h, week, &err) != 0) fail_msg("week: %s", err.msg);
    if (hours_set_tz(h, tz, &err) != 0) fail_msg("tz: %s", err.msg);
}

static void test_parse_week(void **state) {
    (void)state;
    hours_spec h;
    parse_ok(&h, "mon-fri 09:00-12:00 13:00-18:00, sat 10:00-16:00; sun-mon 20:00-24:00", "UTC");
    assert_int_equal(h.set, 1);
    assert_int_equal(h.n_win[1], 3); /* monday: two windows + sun-mon evening */
    assert_int_equal(h.win[1][0].open, 9 * 60);
    assert_int_equal(h.win[1][2].close, 1440);
    assert_int_equal(h.n_win[6], 1);
    assert_int_equal(h.n_win[0], 1);
    assert_int_equal(h.n_win[2], 2);
    parse_ok(&h, "daily 00:00-24:00", "");
    for (int d = 0; d < 7; d++)
        assert_int_equal(h.n_win[d], 1);
}

static void test_parse_errors(void **state) {
    (void)state;
    static const char *bad[] = {
        "mon 09:00", "funday 09:00-10:00", "mon 10:00-09:00", "mon 09:00-25:00",
        "mon",       "mon 9:00-10:00",     "mon 24:00-24:00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hours_spec h;
        cg_err err = {{0}, {0}};
        hours_init(&h);
        if (hours_parse_week(&h, bad[i], &err) == 0) fail_msg("accepted '%s'", bad[i]);
    }
    hours_spec h;
    cg_err err = {{0}, {0}};
    hours_init(&h);
    assert_int_equal(hours_set_tz(&h, "Mars/Olympus", &err), -1);
    assert_int_equal(hours_set_tz(&h, "../etc/passwd", &err), -1);
    assert_int_equal(hours_parse_holidays(&h, "2026-13-01", &err), -1);
    assert_int_equal(hours_parse_holidays(&h, "2026-10-01 2026-10-02", &err), -1);
    hours_init(&h);
    assert_int_equal(hours_parse_holidays(&h, " 2026-10-01 , 2026-10-02,", &err), 0);
    assert_int_equal(h.n_holidays, 2);
    assert_int_equal(h.holidays[1], 20261002);
}

static void test_unset_is_always_open(void **state) {
    (void)state;
    hours_spec h;
    hours_init(&h);
    int64_t t = utc(2026, 11, 23, 3, 0);
    assert_true(hours_open(&h, t));
    assert_int_equal(hours_next_open(&h, t), t);
    assert_int_equal(hours_next_change(&h, t), 0);
    assert_int_equal(hours_add(&h, t, 60), t + 60000);
    assert_false(hours_counted(&h));
    cg_err err = {{0}, {0}};
    assert_int_equal(hours_parse_holidays(&h, "2026-12-25", &err), 0); /* holidays alone count */
    assert_true(hours_counted(&h));
    hours_init(&h);
    assert_int_equal(hours_parse_week(&h, "mon-fri 09:00-18:00", &err), 0);
    assert_true(hours_counted(&h));
}

/* 2026-11-23 is a Monday. Shanghai is UTC+8 without DST. */
static void test_open_and_next_opening_shanghai(void **state) {
    (void)state;
    hours_spec h;
    parse_ok(&h, "mon-fri 09:00-18:00, sat 10:00-16:00", "Asia/Shanghai");
    assert_true(hours_open(&h, utc(2026, 11, 23, 1, 0)));   /* Mon 09:00 local */
    assert_false(hours_open(&h, utc(2026, 11, 23, 0, 59))); /* Mon 08:59 */
    assert_false(hours_open(&h, utc(2026, 11, 23, 10, 0))); /* Mon 18:00: closes */
    /* Friday 20:00 local -> Saturday 10:00 local */
    int64_t fri = utc(2026, 11, 27, 12, 0);
    assert_int_equal(hours_next_open(&h, fri), utc(2026, 11, 28, 2, 0));
    assert_int_equal(hours_next_change(&h, fri), utc(2026, 11, 28, 2, 0));
    /* Saturday 17:00 local -> Monday 09:00 local */
    assert_int_equal(hours_next_open(&h, utc(2026, 11, 28, 9, 0)), utc(2026, 11, 30, 1, 0));
    /* open now: next change is the closing */
    assert_int_equal(hours_next_change(&h, utc(2026, 11, 23, 2, 0)), utc(2026, 11, 23, 10, 0));
    char out[32];
    hours_format(&h, utc(2026, 11, 28, 2, 0), NULL, out, sizeof(out));
    assert_string_equal(out, "2026-11-28 10:00");
}

static void test_holidays_are_closed(void **state) {
    (void)state;
    hours_spec h;
    cg_err err = {{0}, {0}};
    parse_ok(&h, "mon-fri 09:00-18:00", "Asia/Shanghai");
    assert_int_equal(hours_parse_holidays(&h, "2026-11-23, 2026-11-24", &err), 0);
    assert_false(hours_open(&h, utc(2026, 11, 23, 2, 0)));
    assert_int_equal(hours_next_open(&h, utc(2026, 11, 23, 2, 0)), utc(2026, 11, 25, 1, 0));
}

/* New York: DST ends on 2026-11-01 (EDT UTC-4 -> EST UTC-5). */
static void test_dst_change(void **state) {
    (void)state;
    hours_spec h;
    parse_ok(&h, "daily 09:00-17:00", "America/New_York");
    assert_int_equal(hours_next_open(&h, utc(2026, 10, 31, 22, 0)), utc(2026, 11, 1, 14, 0));
    assert_int_equal(hours_next_open(&h, utc(2026, 10, 30, 22, 0)), utc(2026, 10, 31, 13, 0));
}

static void test_add_counts_business_time(void **state) {
    (void)state;
    hours_spec h;
    parse_ok(&h, "mon-fri 09:00-18:00", "UTC");
    /* Friday 17:00 + 2 h -> Monday 10:00 */
    assert_int_equal(hours_add(&h, utc(2026, 11, 27, 17, 0), 7200), utc(2026, 11, 30, 10, 0));
    /* closed (Sunday) + 60 s -> Monday 09:01 */
    assert_int_equal(hours_add(&h, utc(2026, 11, 29, 12, 0), 60), utc(2026, 11, 30, 9, 1));
    /* within one window */
    assert_int_equal(hours_add(&h, utc(2026, 11, 23, 9, 0), 3600), utc(2026, 11, 23, 10, 0));
}

static void test_adjacent_windows_merge(void **state) {
    (void)state;
    hours_spec h;
    parse_ok(&h, "daily 00:00-24:00", "UTC");
    int64_t t = utc(2026, 11, 23, 12, 0);
    assert_true(hours_open(&h, t));
    assert_int_equal(hours_next_change(&h, t), 0); /* never closes */
    parse_ok(&h, "mon 20:00-24:00, tue 00:00-02:00", "UTC");
    assert_int_equal(hours_next_change(&h, utc(2026, 11, 23, 21, 0)), utc(2026, 11, 24, 2, 0));
}

/* hours_open_at answers as hours_open / hours_next_open at every time, from its memo between
 * the changes (one look per state), and looks again when the time leaves the span it knows. */
static void test_open_at_keeps_a_memo(void **state) {
    (void)state;
    hours_spec h;
    parse_ok(&h, "mon-fri 09:00-18:00", "Asia/Shanghai");
    hours_state m;
    memset(&m, 0, sizeof(m));
    int64_t t0 = utc(2026, 11, 27, 9, 0); /* Fri 17:00 local */
    for (int64_t t = t0; t < t0 + 4 * 86400000LL; t += 15 * 60000) {
        int open = hours_open_at(&h, &m, t);
        assert_int_equal(open, hours_open(&h, t));
        if (!open) assert_int_equal(m.opens_at, hours_next_open(&h, t));
        assert_true(m.from <= t && t < m.until);
    }
    /* closed over the weekend: one look covers Fri 18:00 .. Mon 09:00 */
    assert_false(hours_open_at(&h, &m, utc(2026, 11, 28, 3, 0)));
    assert_int_equal(m.until, utc(2026, 11, 30, 1, 0));
    int64_t from = m.from;
    assert_false(hours_open_at(&h, &m, utc(2026, 11, 29, 3, 0)));
    assert_int_equal(m.from, from);                              /* from the memo */
    assert_true(hours_open_at(&h, &m, utc(2026, 11, 30, 1, 0))); /* opens: looked again */
    assert_int_equal(m.until, utc(2026, 11, 30, 10, 0));
    assert_true(hours_open_at(&h, &m, utc(2026, 11, 23, 2, 0))); /* earlier: looked again */
    assert_int_equal(m.from, utc(2026, 11, 23, 2, 0));
    hours_spec always;
    hours_init(&always);
    memset(&m, 0, sizeof(m));
    assert_true(hours_open_at(&always, &m, t0));
    assert_int_equal(m.until, INT64_MAX);
}

static void test_tz_is_restored(void **state) {
    (void)state;
    setenv("TZ", "Europe/Paris", 1);
    tzset();
    hours_spec h;
    parse_ok(&h, "daily 09:00-17:00", "Asia/Tokyo");
    hours_open(&h, utc(2026, 11, 23, 3, 0));
    assert_string_equal(getenv("TZ"), "Europe/Paris");
    unsetenv("TZ");
    tzset();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_week),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_unset_is_always_open),
        cmocka_unit_test(test_open_and_next_opening_shanghai),
        cmocka_unit_test(test_holidays_are_closed),
        cmocka_unit_test(test_dst_change),
        cmocka_unit_test(test_add_counts_business_time),
        cmocka_unit_test(test_adjacent_windows_merge),
        cmocka_unit_test(test_open_at_keeps_a_memo),
        cmocka_unit_test(test_tz_is_restored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
