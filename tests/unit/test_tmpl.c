/* test_tmpl.c -- texts per locale (router/tmpl.c): [templates <locale>] sections, the choice of a
 * customer's locale and {name} rendering. Pure, so compiled in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../router/tmpl.c"

static char tmp_path[64];

static const char *write_tmp(const char *text) {
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/test_tmpl_XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

static void test_render(void **state) {
    (void)state;
    char out[128];
    tmpl_var vars[] = {{"position", "3"}, {"wait", "6 min"}};
    tmpl_render("You are number {position}; wait {wait}. {unknown} {position", vars, 2, out,
                sizeof(out));
    assert_string_equal(out, "You are number 3; wait 6 min. {unknown} {position");
    tmpl_render("排在第 {position} 位", vars, 2, out, sizeof(out));
    assert_string_equal(out, "排在第 3 位");
    tmpl_render("", vars, 2, out, sizeof(out));
    assert_string_equal(out, "");
}

static void test_render_cuts_whole_characters(void **state) {
    (void)state;
    char out[8];
    tmpl_render("ab您好啊", NULL, 0, out, sizeof(out)); /* 2 + 3 + 3: only 您 fits */
    assert_string_equal(out, "ab您");
    tmpl_var vars[] = {{"t", "您好啊"}};
    tmpl_render("x{t}", vars, 1, out, sizeof(out));
    assert_string_equal(out, "x您好");
}

static void test_load_and_pick(void **state) {
    (void)state;
    tmpl_set s;
    cg_err err = {{0}, {0}};
    const char *path =
        write_tmp("[router]\ngreeting_text = x\n"
                  "[templates zh-CN]\ngreeting = 您好\nqueued = 排队 {position}\n"
                  "[templates en]\ngreeting = Hello\n[queue general]\nmode = push\n");
    assert_int_equal(tmpl_load(path, &s, &err), 0);
    unlink(path);
    assert_int_equal(s.n, 2);
    assert_string_equal(tmpl_pick(&s, "zh-CN", "zh-CN", TMPL_GREETING), "您好");
    assert_string_equal(tmpl_pick(&s, "zh-cn", "zh-CN", TMPL_GREETING), "您好");
    assert_string_equal(tmpl_pick(&s, "zh-TW", "en", TMPL_GREETING), "您好"); /* language */
    assert_string_equal(tmpl_pick(&s, "en-US", "zh-CN", TMPL_GREETING), "Hello");
    assert_string_equal(tmpl_pick(&s, "fr", "en", TMPL_GREETING), "Hello"); /* default */
    assert_string_equal(tmpl_pick(&s, "", "zh-CN", TMPL_GREETING), "您好");
    /* en has no queued: the default locale's */
    assert_string_equal(tmpl_pick(&s, "en", "zh-CN", TMPL_QUEUED), "排队 {position}");
    assert_null(tmpl_pick(&s, "en", "en", TMPL_QUEUED));
    assert_null(tmpl_pick(&s, "en", "zh-CN", TMPL_OFF_HOURS));
    assert_non_null(strstr(tmpl_builtin(TMPL_OFF_HOURS), "{opens_at}"));
    assert_string_equal(tmpl_key_name(TMPL_COMPLAINT_ACK), "complaint_ack");
    tmpl_set_free(&s);
}

static void test_load_errors(void **state) {
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[templates en]\ngreting = Hi\n", "unknown key in [templates en]"},
        {"[templates en]\ngreeting = a\ngreeting = b\n", "given twice"},
        {"[templates e n!]\ngreeting = a\n", "not a locale name"},
        {"[templates]\ngreeting = a\n", "needs a locale"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tmpl_set s;
        cg_err err = {{0}, {0}};
        const char *path = write_tmp(cases[i].text);
        int rc = tmpl_load(path, &s, &err);
        unlink(path);
        assert_int_equal(rc, -1);
        if (!strstr(err.msg, cases[i].want)) fail_msg("'%s' not in '%s'", cases[i].want, err.msg);
    }
    tmpl_set s;
    cg_err err = {{0}, {0}};
    assert_int_equal(tmpl_load(NULL, &s, &err), 0);
    assert_int_equal(s.n, 0);
    tmpl_set_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_render_cuts_whole_characters),
        cmocka_unit_test(test_load_and_pick),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
