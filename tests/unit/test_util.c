/* test_util.c -- constant-time compare, host:port parsing, randomness, strlcpy, numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/wait.h>
#include <unistd.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

static void test_ct_equal(void **state) {
    (void)state;
    assert_int_equal(cg_ct_equal("secret", 6, "secret", 6), 1);
    assert_int_equal(cg_ct_equal("secret", 6, "secreT", 6), 0);
    assert_int_equal(cg_ct_equal("secret", 6, "Secret", 6), 0);
    assert_int_equal(cg_ct_equal("secret", 6, "secret2", 7), 0);
    assert_int_equal(cg_ct_equal("secret2", 7, "secret", 6), 0);
    /* a prefix padded with NUL is still a different length */
    assert_int_equal(cg_ct_equal("ab\0", 3, "ab", 2), 0);
    assert_int_equal(cg_ct_equal("", 0, "", 0), 1);
    assert_int_equal(cg_ct_equal(NULL, 0, NULL, 0), 1);
    assert_int_equal(cg_ct_equal(NULL, 0, "a", 1), 0);
    assert_int_equal(cg_ct_equal("a", 1, NULL, 0), 0);
    /* lengths that differ by a multiple of 256 */
    char a[300], b[44];
    memset(a, 'x', sizeof(a));
    memset(b, 'x', sizeof(b));
    assert_int_equal(cg_ct_equal(a, 300, b, 44), 0);
    assert_int_equal(cg_ct_equal(a, 44, b, 44), 1);
}

static void test_hostport(void **state) {
    (void)state;
    char host[64];
    int port = 0;
    assert_int_equal(cg_parse_hostport("localhost:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 8080);
    assert_int_equal(cg_parse_hostport("0.0.0.0:1", host, sizeof(host), &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 1);
    assert_int_equal(cg_parse_hostport("[::1]:65535", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    assert_int_equal(cg_parse_hostport("[fe80::1%eth0]:443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "fe80::1%eth0");

    const char *bad[] = {"localhost", "localhost:",
                         ":8080",     "h:0",
                         "h:65536",   "h:-1",
                         "h:+80",     "h:80x",
                         "h: 80",     "::1:80",
                         "[::1]80",   "[::1",
                         "[]:80",     "h:99999999999999999999",
                         "",          "h:1:2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        port = 0;
        if (cg_parse_hostport(bad[i], host, sizeof(host), &port) != -1)
            fail_msg("accepted '%s'", bad[i]);
    }
    /* host longer than the buffer */
    char small[4];
    assert_int_equal(cg_parse_hostport("abcd:1", small, sizeof(small), &port), -1);
    assert_int_equal(cg_parse_hostport("abc:1", small, sizeof(small), &port), 0);
}

/* Ids come from a pool of random bytes (util.c): a forked child must not hand out the ids its
 * parent hands out next, and a long run of ids has no repeat across pool refills. */
static void test_id_pool(void **state) {
    (void)state;
    char first[33];
    assert_int_equal(cg_id_new(first), 0); /* the pool is filled now */
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char child[33];
        if (cg_id_new(child) != 0) _exit(1);
        _exit(write(fd[1], child, 32) == 32 ? 0 : 1);
    }
    char parent[33], child[33] = {0};
    assert_int_equal(cg_id_new(parent), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(read(fd[0], child, 32), 32);
    close(fd[0]);
    close(fd[1]);
    assert_string_not_equal(parent, child);
    static char seen[300][33];
    for (int i = 0; i < 300; i++) { /* ~5 pools of 64 ids */
        assert_int_equal(cg_id_new(seen[i]), 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
    }
}

static void test_rand_hex(void **state) {
    (void)state;
    char a[65], b[65];
    assert_int_equal(cg_rand_hex(a, 32), 0);
    assert_int_equal(cg_rand_hex(b, 32), 0);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_string_not_equal(a, b);

    char big[2 * 200 + 1];
    assert_int_equal(cg_rand_hex(big, 200), 0); /* more than one RNG chunk */
    assert_int_equal(strlen(big), 400);
    assert_int_equal(strspn(big, "0123456789abcdef"), 400);

    char z[1] = {'x'};
    assert_int_equal(cg_rand_hex(z, 0), 0);
    assert_int_equal(z[0], '\0');

    char id1[33], id2[33];
    assert_int_equal(cg_id_new(id1), 0);
    assert_int_equal(cg_id_new(id2), 0);
    assert_int_equal(strlen(id1), 32);
    assert_int_equal(strspn(id1, "0123456789abcdef"), 32);
    assert_string_not_equal(id1, id2);
}

static void test_strlcpy(void **state) {
    (void)state;
    char d[4];
    assert_int_equal(cg_strlcpy(d, "ab", sizeof(d)), 2);
    assert_string_equal(d, "ab");
    assert_int_equal(cg_strlcpy(d, "abcdef", sizeof(d)), 6);
    assert_string_equal(d, "abc");
    d[0] = 'q';
    assert_int_equal(cg_strlcpy(d, "abc", 0), 3);
    assert_int_equal(d[0], 'q');
}

static void test_parse_ll(void **state) {
    (void)state;
    long long v;
    assert_int_equal(cg_parse_ll("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(cg_parse_ll("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(cg_parse_ll("+5", 0, 10, &v), 0);
    assert_int_equal(cg_parse_ll("9223372036854775807", LLONG_MIN, LLONG_MAX, &v), 0);
    assert_true(v == LLONG_MAX);
    assert_int_equal(cg_parse_ll("9223372036854775808", LLONG_MIN, LLONG_MAX, &v), -1);
    assert_int_equal(cg_parse_ll("101", 0, 100, &v), -1);
    assert_int_equal(cg_parse_ll("", 0, 100, &v), -1);
    assert_int_equal(cg_parse_ll("-", 0, 100, &v), -1);
    assert_int_equal(cg_parse_ll(" 1", 0, 100, &v), -1);
    assert_int_equal(cg_parse_ll("1 ", 0, 100, &v), -1);
    assert_int_equal(cg_parse_ll("0x10", 0, 100, &v), -1);
    assert_int_equal(cg_parse_ll(NULL, 0, 100, &v), -1);
}

static void test_clock(void **state) {
    (void)state;
    int64_t ms = cg_now_ms(), s = cg_now_s();
    assert_true(s > 1700000000);
    assert_true(ms / 1000 - s <= 1 && s - ms / 1000 <= 1);
}

static void test_ident(void **state) {
    (void)state;
    assert_int_equal(cg_ident_ok("alice.w@desk-1_x", 64, "_.@-", 0), 1);
    assert_int_equal(cg_ident_ok("x:socks", 64, "_.@-", 0), 0);
    assert_int_equal(cg_ident_ok("a b", 64, "_.@-", 0), 0);
    assert_int_equal(cg_ident_ok("", 64, "_.@-", 0), 0);
    assert_int_equal(cg_ident_ok("abc", 2, "", 0), 0);
    assert_int_equal(cg_ident_ok("ab", 2, "", 0), 1);
    assert_int_equal(cg_ident_ok("faq_en-2", 64, "_-", 1), 1);
    assert_int_equal(cg_ident_ok("FAQ", 64, "_-", 1), 0);
    assert_int_equal(cg_ident_ok("caf\xc3\xa9", 64, "_-", 0), 0);
}

static void test_name_check(void **state) {
    (void)state;
    char why[64] = "";
    assert_int_equal(
        cg_name_check("Zo\xc3\xab \xe5\xbc\xa0 O'Brien (VIP) \xf0\x9f\x98\x80", why, sizeof(why)),
        0);
    assert_int_equal(cg_name_check("", why, sizeof(why)), 0);
    struct {
        const char *s, *why;
    } bad[] = {
        {"a\x07"
         "b",
         "control character U+0007"},
        {"line\nbreak", "control character U+000A"},
        {"tab\t", "control character U+0009"},
        {"del\x7f", "control character U+007F"},
        {"c1\xc2\x85", "control character U+0085"},
        {"ls\xe2\x80\xa8", "control character U+2028"},
        {"evil\xe2\x80\xaegnp.exe", "bidirectional control U+202E"},
        {"\xe2\x80\xaaleft", "bidirectional control U+202A"},
        {"iso\xe2\x81\xa6x", "bidirectional control U+2066"},
        {"pdi\xe2\x81\xa9", "bidirectional control U+2069"},
        {"rlm\xe2\x80\x8f", "bidirectional control U+200F"},
        {"alm\xd8\x9c", "bidirectional control U+061C"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cg_name_check(bad[i].s, why, sizeof(why)) != -1) fail_msg("accepted %s", bad[i].why);
        assert_string_equal(why, bad[i].why);
    }
    char name[64];
    snprintf(name, sizeof(name), "%s",
             "\xe2\x80\xae"
             "Bob\x07 \xe5\xbc\xa0\xe2\x81\xa6!\xc2\x85");
    assert_int_equal(cg_name_clean(name), 4);
    assert_string_equal(name, "Bob \xe5\xbc\xa0!");
    assert_int_equal(cg_name_check(name, why, sizeof(why)), 0);
    snprintf(name, sizeof(name), "%s", "Zo\xc3\xab");
    assert_int_equal(cg_name_clean(name), 0);
    assert_string_equal(name, "Zo\xc3\xab");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_equal),   cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_rand_hex),   cmocka_unit_test(test_id_pool),
        cmocka_unit_test(test_strlcpy),    cmocka_unit_test(test_parse_ll),
        cmocka_unit_test(test_clock),      cmocka_unit_test(test_ident),
        cmocka_unit_test(test_name_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
