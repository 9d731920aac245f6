/* test_csat.c -- csat_digit(): which customer texts are a survey answer (router/csat.c; the same
 * rule as survey_answer in redis/conv.lua). The router functions csat.c calls are stubbed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../router/csat.c"

/* ---- stubs: csat.c's calls into the rest of the router (not used by csat_digit) ---- */

const char *say_template(const router *r, const char *locale, tmpl_key k) {
    return "";
}

void say_survey(job *j, const char *conv, const char *channel, const char *text) {}

void say_rating(job *j, const char *conv, const char *channel, int rating, const char *cmid) {}

void say_tmpl(job *j, const char *conv, const char *channel, const char *locale, tmpl_key k,
              const tmpl_var *vars, size_t n_vars, const char *cmid, const char *queue,
              uint32_t position, uint32_t wait_s) {}

static int digit(const char *s) {
    return csat_digit(s, strlen(s));
}

static void test_digits(void **state) {
    (void)state;
    assert_int_equal(digit("1"), 1);
    assert_int_equal(digit("5"), 5);
    assert_int_equal(digit(" 4 \r\n"), 4);
    assert_int_equal(digit("\t3"), 3);
    assert_int_equal(digit("\xef\xbc\x91"), 1);    /* １ */
    assert_int_equal(digit(" \xef\xbc\x95\n"), 5); /* ５ */
}

static void test_not_digits(void **state) {
    (void)state;
    assert_int_equal(digit(""), 0);
    assert_int_equal(digit("   "), 0);
    assert_int_equal(digit("0"), 0);
    assert_int_equal(digit("6"), 0);
    assert_int_equal(digit("55"), 0);
    assert_int_equal(digit("5 stars"), 0);
    assert_int_equal(digit("\xef\xbc\x90"), 0); /* ０ */
    assert_int_equal(digit("\xef\xbc\x96"), 0); /* ６ */
    assert_int_equal(digit("\xef\xbc"), 0);     /* cut */
    assert_int_equal(csat_digit(NULL, 0), 0);
    assert_int_equal(csat_digit("5", 0), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digits),
        cmocka_unit_test(test_not_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
