/* test_log.c -- log_mask (ASCII, UTF-8, small buffers), level parsing, the line format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

static void test_mask(void **state) {
    (void)state;
    char out[64];
    assert_string_equal(log_mask("alice@example.com", out, sizeof(out)), "a***************m");
    assert_string_equal(log_mask("abcde", out, sizeof(out)), "a***e");
    assert_string_equal(log_mask("abcd", out, sizeof(out)), "****");
    assert_string_equal(log_mask("a", out, sizeof(out)), "****");
    assert_string_equal(log_mask("", out, sizeof(out)), "****");
    assert_string_equal(log_mask(NULL, out, sizeof(out)), "-");
    /* UTF-8: code points, not bytes */
    assert_string_equal(log_mask("张小明同学", out, sizeof(out)), "张***学");
    assert_string_equal(log_mask("张小明", out, sizeof(out)), "张*明");
    assert_string_equal(log_mask("张三", out, sizeof(out)), "****"); /* 6 bytes, 2 code points */
    assert_string_equal(log_mask("Zoë Müller", out, sizeof(out)), "Z********r");
    assert_string_equal(log_mask("😀abc😀", out, sizeof(out)), "😀***😀");
    /* invalid UTF-8 is never copied into a log line */
    assert_string_equal(log_mask("\xff"
                                 "abcd"
                                 "\xc3",
                                 out, sizeof(out)),
                        "?****?");
    /* result too large for out: "****", truncated to fit */
    char small[6];
    assert_string_equal(log_mask("alice@example.com", small, sizeof(small)), "****");
    char tiny[3];
    assert_string_equal(log_mask("alice@example.com", tiny, sizeof(tiny)), "**");
    char exact[6];
    assert_string_equal(log_mask("abcde", exact, sizeof(exact)), "a***e");
}

static void test_level_parse(void **state) {
    (void)state;
    log_level l;
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("info", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_level_parse("INFO", &l), -1);
    assert_int_equal(log_level_parse("verbose", &l), -1);
    assert_int_equal(log_level_parse(NULL, &l), -1);
}

/* Redirects stderr into a pipe, logs, and checks the exact line shape. */
static void test_line_format(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(2);
    dup2(fds[1], 2);
    log_init("unit", LOG_INFO);
    log_debug("hidden %d", 1);
    log_info("hello %s", "world");
    log_error("two\nlines");
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    char buf[512] = {0};
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    assert_true(n > 0);

    char want[512];
    regex_t re;
    snprintf(want, sizeof(want),
             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z unit\\[%ld\\] "
             "INFO hello world\n"
             "[0-9TZ:.-]{24} unit\\[%ld\\] ERROR two\\?lines\n$",
             (long)getpid(), (long)getpid());
    assert_int_equal(regcomp(&re, want, REG_EXTENDED), 0);
    int m = regexec(&re, buf, 0, NULL, 0);
    regfree(&re);
    if (m != 0) fail_msg("unexpected log output: %s", buf);
    log_init("chatgw", LOG_INFO);
}

/* A message longer than the line buffer is cut, still one line. */
static void test_long_line(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(2);
    dup2(fds[1], 2);
    char big[5000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_warn("%s", big);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    static char buf[8192];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    assert_true(n > 100 && n <= 2048);
    buf[n] = '\0';
    assert_int_equal(buf[n - 1], '\n');
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
    assert_memory_equal(buf + n - 4, "...", 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_long_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
