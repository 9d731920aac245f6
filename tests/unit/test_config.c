/* test_config.c -- cfg_load / cfg_set: defaults, file, environment, and every error naming its
 * place (file:line: key, or the variable). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"

static char redis_url[32];
static long long port, workers;
static int debug;
static char name[8];

static const cfg_opt opts[] = {
    {"redis_url", CFG_STR, "redis://localhost", redis_url, sizeof(redis_url), 0, 0, "redis"},
    {"port", CFG_INT, "8080", &port, 0, 1, 65535, "listen port"},
    {"workers", CFG_INT, NULL, &workers, 0, 0, 0, "unbounded"},
    {"debug", CFG_BOOL, "no", &debug, 0, 0, 0, "debug"},
    {"name", CFG_STR, NULL, name, sizeof(name), 0, 0, "name"},
    {NULL, CFG_STR, NULL, NULL, 0, 0, 0, NULL},
};

static char tmp_path[64];

/* Writes text to a new temporary file; its name is in tmp_path. */
static const char *write_tmp(const char *text) {
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/test_config_XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

static void clear_env(void) {
    unsetenv("CHATGW_REDIS_URL");
    unsetenv("CHATGW_PORT");
    unsetenv("CHATGW_WORKERS");
    unsetenv("CHATGW_DEBUG");
    unsetenv("CHATGW_NAME");
}

static int setup(void **state) {
    (void)state;
    clear_env();
    tmp_path[0] = '\0';
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (tmp_path[0]) unlink(tmp_path);
    clear_env();
    return 0;
}

/* Loads text as a config file and expects failure with exactly "<file>:<rest>". */
static void expect_file_error(const char *text, const char *rest) {
    cg_err e = {{0}, {0}};
    const char *path = write_tmp(text);
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s:%s", path, rest);
    assert_string_equal(e.msg, want);
    assert_string_equal(e.code, "bad_config");
    unlink(path);
    tmp_path[0] = '\0';
}

static void test_defaults(void **state) {
    (void)state;
    cg_err e;
    port = 1;
    debug = 1;
    name[0] = 'x';
    workers = 5;
    assert_int_equal(cfg_load(opts, NULL, NULL, NULL, &e), 0);
    assert_string_equal(redis_url, "redis://localhost");
    assert_int_equal(port, 8080);
    assert_int_equal(workers, 0);
    assert_int_equal(debug, 0);
    assert_string_equal(name, "");
    assert_int_equal(cfg_load(opts, "", NULL, NULL, &e), 0);
}

static void test_file_values(void **state) {
    (void)state;
    cg_err e;
    const char *path = write_tmp("; comment\n# another\n[server]\nport = 9000\ndebug = ON\n\n"
                                 "[redis]\nredis_url = redis://r:6380/2\nworkers = -12\n"
                                 "name = abcdefg\n");
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), 0);
    assert_int_equal(port, 9000);
    assert_int_equal(debug, 1);
    assert_string_equal(redis_url, "redis://r:6380/2");
    assert_int_equal(workers, -12);
    assert_string_equal(name, "abcdefg");
}

static void test_env_wins(void **state) {
    (void)state;
    cg_err e;
    const char *path = write_tmp("port = 9000\ndebug = yes\n");
    setenv("CHATGW_PORT", "9100", 1);
    setenv("CHATGW_DEBUG", "false", 1);
    setenv("CHATGW_NAME", "", 1);
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), 0);
    assert_int_equal(port, 9100);
    assert_int_equal(debug, 0);
    assert_string_equal(name, "");
}

static void test_env_errors(void **state) {
    (void)state;
    cg_err e;
    setenv("CHATGW_PORT", "70000", 1);
    assert_int_equal(cfg_load(opts, NULL, NULL, NULL, &e), -1);
    assert_string_equal(e.msg, "environment CHATGW_PORT: 70000 is out of range [1, 65535]");
    unsetenv("CHATGW_PORT");
    setenv("CHATGW_DEBUG", "maybe", 1);
    assert_int_equal(cfg_load(opts, NULL, NULL, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "environment CHATGW_DEBUG: 'maybe' is not a boolean"));
    unsetenv("CHATGW_DEBUG");
    setenv("CHATGW_NAME", "12345678", 1);
    assert_int_equal(cfg_load(opts, NULL, NULL, NULL, &e), -1);
    assert_string_equal(e.msg, "environment CHATGW_NAME: too long (max 7)");
}

static void test_file_errors(void **state) {
    (void)state;
    expect_file_error("port = 1\n\nbogus = 3\n", "3: key 'bogus': unknown key");
    expect_file_error("[a]\nport = 0\n", "2: key 'port': 0 is out of range [1, 65535]");
    expect_file_error("port = 65536\n", "1: key 'port': 65536 is out of range [1, 65535]");
    expect_file_error("port = 12ab\n", "1: key 'port': '12ab' is not a whole number");
    expect_file_error("port = 1.5\n", "1: key 'port': '1.5' is not a whole number");
    expect_file_error("port =\n", "1: key 'port': '' is not a whole number");
    expect_file_error("\n\n\n\ndebug = sure\n",
                      "5: key 'debug': 'sure' is not a boolean (yes/no, true/false, on/off, 1/0)");
    expect_file_error("name = 12345678\n", "1: key 'name': too long (max 7)");
    expect_file_error("port = 1\nthis is not ini\n", "2: syntax error");
    expect_file_error("[unclosed\n", "1: syntax error");
    /* the first error wins, whichever kind */
    expect_file_error("junk\nbogus = 1\n", "1: syntax error");
    expect_file_error("bogus = 1\njunk\n", "1: key 'bogus': unknown key");

    /* a line longer than inih's buffer is refused, and later line numbers stay right */
    char text[600];
    snprintf(text, sizeof(text), "port = 1\nredis_url = %0300d\n", 0);
    expect_file_error(text, "2: line too long (max 198 characters)");
    snprintf(text, sizeof(text), "; %0300d\nport = 1\n\nbogus = 2\n", 0);
    expect_file_error(text, "1: line too long (max 198 characters)");
}

static void test_missing_file(void **state) {
    (void)state;
    cg_err e;
    assert_int_equal(cfg_load(opts, "/nonexistent/chatgw.ini", NULL, NULL, &e), -1);
    assert_string_equal(e.msg, "/nonexistent/chatgw.ini: cannot open: No such file or directory");
}

/* extra: accepts keys of "[queue NAME]" sections, refuses "forbidden". */
typedef struct seen {
    int n;
    char last[128];
    int conts; /* calls with cont = 1 */
} seen;

static int extra(void *priv, const char *section, const char *key, const char *value, int cont,
                 cg_err *err) {
    seen *s = priv;
    if (strcmp(key, "forbidden") == 0) return cg_err_set(err, "x", "not allowed here");
    if (strncmp(section, "queue ", 6) != 0) return cg_err_set(err, "x", "unknown key");
    s->n++;
    s->conts += cont;
    snprintf(s->last, sizeof(s->last), "%s/%s/%s", section, key, value);
    return 0;
}

static void test_extra(void **state) {
    (void)state;
    cg_err e;
    seen s = {0};
    const char *path = write_tmp("port = 81\n[queue presales]\nskills = a,b\nport = 82\n"
                                 "[queue support]\nprio = 5\n");
    assert_int_equal(cfg_load(opts, path, extra, &s, &e), 0);
    assert_int_equal(s.n, 3); /* skills, port (of the queue section, not the table's) and prio */
    assert_string_equal(s.last, "queue support/prio/5");
    assert_int_equal(port, 81); /* a named section never sets a table key */
    unlink(path);

    path = write_tmp("[queue a]\nx = 1\n\n[queue b]\nforbidden = 1\n");
    assert_int_equal(cfg_load(opts, path, extra, &s, &e), -1);
    char want[128];
    snprintf(want, sizeof(want), "%s:5: key 'forbidden': not allowed here", path);
    assert_string_equal(e.msg, want);
}

/* A value continued on indented lines (inih's multi-line values) is one value: a text key gets
 * every line, joined by one space, never just the last line (the bug behind 0 s complaint
 * deadlines); named sections get each line with cont = 1. */
static void test_continuation_lines(void **state) {
    (void)state;
    cg_err e;
    const char *path = write_tmp("[router]\nredis_url = a:1/2,\n  b:3/4,\n\tc:5\nport = 81\n");
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), 0);
    assert_string_equal(redis_url, "a:1/2, b:3/4, c:5");
    assert_int_equal(port, 81);
    unlink(path);

    /* the same key again on an unindented line replaces it, as before */
    path = write_tmp("redis_url = first\nredis_url = second\n");
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), 0);
    assert_string_equal(redis_url, "second");
    unlink(path);

    /* an indented key right after a section header is a key, not a continuation */
    path = write_tmp("redis_url = x\n[router]\n  redis_url = y\n");
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), 0);
    assert_string_equal(redis_url, "y");
    unlink(path);

    /* numbers and booleans do not continue; the joined text is checked as a whole */
    path = write_tmp("port = 80\n  81\n");
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), -1);
    char want[200];
    snprintf(want, sizeof(want),
             "%s:2: key 'port': a continuation line: only text values may span several lines",
             path);
    assert_string_equal(e.msg, want);
    unlink(path);
    path = write_tmp("name = abc\n  defg\n");
    assert_int_equal(cfg_load(opts, path, NULL, NULL, &e), -1);
    snprintf(want, sizeof(want), "%s:2: key 'name': too long (max 7)", path);
    assert_string_equal(e.msg, want);
    unlink(path);

    seen s = {0};
    path = write_tmp("[queue a]\nkeywords = x, y,\n  z\nkeywords = w\n");
    assert_int_equal(cfg_load(opts, path, extra, &s, &e), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.conts, 1);
    assert_string_equal(s.last, "queue a/keywords/w");
}

static void test_set(void **state) {
    (void)state;
    cg_err e;
    assert_int_equal(cfg_set(opts, "port", "443", &e), 0);
    assert_int_equal(port, 443);
    assert_int_equal(cfg_set(opts, "debug", "TRUE", &e), 0);
    assert_int_equal(debug, 1);
    assert_int_equal(cfg_set(opts, "debug", "0", &e), 0);
    assert_int_equal(debug, 0);
    assert_int_equal(cfg_set(opts, "name", "1234567", &e), 0);
    assert_string_equal(name, "1234567");
    assert_int_equal(cfg_set(opts, "name", "12345678", &e), -1);
    assert_string_equal(e.msg, "key 'name': too long (max 7)");
    assert_string_equal(name, "1234567"); /* unchanged on error */
    assert_int_equal(cfg_set(opts, "nope", "1", &e), -1);
    assert_string_equal(e.msg, "key 'nope': unknown key");
    assert_int_equal(cfg_set(opts, "workers", "-9223372036854775808", &e), 0);
    assert_int_equal(cfg_set(opts, "workers", "9223372036854775808", &e), -1);
    assert_int_equal(cfg_set(opts, "port", " 80", &e), -1);
}

static void test_bad_default(void **state) {
    (void)state;
    cg_err e;
    long long v;
    const cfg_opt bad[] = {
        {"level", CFG_INT, "11", &v, 0, 1, 10, NULL},
        {NULL, CFG_STR, NULL, NULL, 0, 0, 0, NULL},
    };
    assert_int_equal(cfg_load(bad, NULL, NULL, NULL, &e), -1);
    assert_string_equal(e.msg, "default of key 'level': 11 is out of range [1, 10]");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extra, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continuation_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_default, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
