/* test_peer.c -- the client address of a request: TCP peer, or X-Forwarded-For behind trusted
 * proxies only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/peer.h"

static const char *client(const char *peer, const char *xff, const char *trusted, int want_rc) {
    static char out[PEER_ADDR_MAX];
    assert_int_equal(peer_client(peer, xff, trusted, out, sizeof(out)), want_rc);
    return out;
}

static void test_untrusted_peer_ignores_the_header(void **state) {
    (void)state;
    assert_string_equal(client("203.0.113.9", "1.2.3.4", "", 0), "203.0.113.9");
    assert_string_equal(client("203.0.113.9", "1.2.3.4", "10.0.0.1", 0), "203.0.113.9");
    assert_string_equal(client("203.0.113.9", NULL, "", 0), "203.0.113.9");
}

static void test_trusted_proxy_rightmost_untrusted_hop(void **state) {
    (void)state;
    const char *tp = "10.0.0.1, 10.0.0.2";
    /* the client may prepend anything; the hop the first trusted proxy saw counts */
    assert_string_equal(client("10.0.0.1", "6.6.6.6, 198.51.100.4", tp, 1), "198.51.100.4");
    assert_string_equal(client("10.0.0.1", "198.51.100.4, 10.0.0.2", tp, 1), "198.51.100.4");
    assert_string_equal(client("10.0.0.1", " 198.51.100.4 ", tp, 1), "198.51.100.4");
    assert_string_equal(client("10.0.0.1", "2001:DB8:0::1", tp, 1), "2001:db8::1");
}

static void test_trusted_proxy_bad_or_missing_header_is_the_proxy(void **state) {
    (void)state;
    const char *tp = "10.0.0.1";
    assert_string_equal(client("10.0.0.1", NULL, tp, 0), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "", tp, 0), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "1.2.3.4, junk", tp, 0), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "10.0.0.1", tp, 0), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "1.2.3.4,", tp, 0), "10.0.0.1");
}

static void test_listed_compares_addresses(void **state) {
    (void)state;
    assert_int_equal(peer_listed("::1", "127.0.0.1, 0::1"), 1);
    assert_int_equal(peer_listed("127.0.0.2", "127.0.0.1"), 0);
    assert_int_equal(peer_listed("127.0.0.1", ""), 0);
    assert_int_equal(peer_listed("nonsense", "nonsense"), 0);
    char out[PEER_ADDR_MAX];
    assert_int_equal(peer_client("not-an-ip", NULL, "", out, sizeof(out)), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untrusted_peer_ignores_the_header),
        cmocka_unit_test(test_trusted_proxy_rightmost_untrusted_hop),
        cmocka_unit_test(test_trusted_proxy_bad_or_missing_header_is_the_proxy),
        cmocka_unit_test(test_listed_compares_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
