/* test_rlib.c -- library versions, the load verdict, retryable errors, start-up back-off. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/rlib.h"

static redisReply reply(int type, const char *str, long long integer) {
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = type;
    r.str = (char *)str;
    r.len = str ? strlen(str) : 0;
    r.integer = integer;
    return r;
}

static long long version_of(const char *code) {
    return rlib_version((const unsigned char *)code, strlen(code));
}

static void test_version(void **state) {
    (void)state;
    assert_int_equal(version_of("#!lua name=x\nlocal VERSION = 7 -- raise it\n"), 7);
    assert_int_equal(version_of("local VERSION = 12\n"), 12);
    assert_int_equal(version_of("#!lua name=x\n-- no version\n"), -1);
    assert_int_equal(version_of("x local VERSION = 3\n"), -1); /* only at a line start */
    assert_int_equal(version_of("local VERSION = \n"), -1);
    /* the length bounds the scan: a version past it is not seen */
    const char *code = "#!lua\nlocal VERSION = 5\n";
    assert_int_equal(rlib_version((const unsigned char *)code, 8), -1);
}

static void test_check(void **state) {
    (void)state;
    long long theirs = 99;
    redisReply r = reply(REDIS_REPLY_INTEGER, NULL, 3);
    assert_int_equal(rlib_check(&r, 3, &theirs), RLIB_KEEP);
    assert_int_equal(theirs, 3);
    assert_int_equal(rlib_check(&r, 4, &theirs), RLIB_LOAD);
    assert_int_equal(rlib_check(&r, 2, &theirs), RLIB_NEWER);
    r = reply(REDIS_REPLY_ERROR, "ERR Function not found", 0);
    assert_int_equal(rlib_check(&r, 1, &theirs), RLIB_LOAD);
    assert_int_equal(theirs, 0);
    r = reply(REDIS_REPLY_ERROR, "LOADING Redis is loading the dataset in memory", 0);
    assert_int_equal(rlib_check(&r, 1, &theirs), RLIB_RETRY);
    assert_int_equal(theirs, -1);
    assert_int_equal(rlib_check(NULL, 1, &theirs), RLIB_RETRY);
    r = reply(REDIS_REPLY_ERROR, "ERR something else", 0);
    assert_int_equal(rlib_check(&r, 1, &theirs), RLIB_RETRY);
}

static void test_transient(void **state) {
    (void)state;
    const char *yes[] = {"LOADING Redis is loading",
                         "BUSY Redis is busy running a script",
                         "MASTERDOWN Link with MASTER is down",
                         "TRYAGAIN",
                         "READONLY You can't",
                         "NOSCRIPT No matching script",
                         "CLUSTERDOWN The cluster is down"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        redisReply r = reply(REDIS_REPLY_ERROR, yes[i], 0);
        assert_int_equal(rlib_transient(&r), 1);
    }
    redisReply r = reply(REDIS_REPLY_ERROR, "LOADINGX no", 0);
    assert_int_equal(rlib_transient(&r), 0);
    r = reply(REDIS_REPLY_ERROR, "ERR Function not found", 0);
    assert_int_equal(rlib_transient(&r), 0);
    assert_int_equal(rlib_missing(&r), 1);
    r = reply(REDIS_REPLY_STATUS, "LOADING", 0);
    assert_int_equal(rlib_transient(&r), 0);
    assert_int_equal(rlib_transient(NULL), 0);
}

/* EXEC's answer to the load transaction: the FUNCTION LOAD answer is its last element. */
static void test_load_result(void **state) {
    (void)state;
    redisReply del1 = reply(REDIS_REPLY_ERROR, "ERR Library not found", 0);
    redisReply del2 = reply(REDIS_REPLY_STATUS, "OK", 0);
    redisReply load = reply(REDIS_REPLY_STRING, "chatgw", 0);
    redisReply *el[3] = {&del1, &del2, &load};
    redisReply exec = reply(REDIS_REPLY_ARRAY, NULL, 0);
    exec.elements = 3;
    exec.element = el;
    assert_ptr_equal(rlib_load_result(&exec), &load);
    redisReply abort = reply(REDIS_REPLY_ERROR, "EXECABORT Transaction discarded", 0);
    assert_ptr_equal(rlib_load_result(&abort), &abort);
    assert_null(rlib_load_result(NULL));
}

/* CONFIG GET appendonly appendfsync, as Redis answers it: [name, value, ...]. */
static rlib_durability durability(const char *aof, const char *fsync, char *text, size_t n) {
    redisReply k1 = reply(REDIS_REPLY_STRING, "appendonly", 0);
    redisReply v1 = reply(REDIS_REPLY_STRING, aof, 0);
    redisReply k2 = reply(REDIS_REPLY_STRING, "appendfsync", 0);
    redisReply v2 = reply(REDIS_REPLY_STRING, fsync, 0);
    redisReply *el[4] = {&k1, &v1, &k2, &v2};
    redisReply r = reply(REDIS_REPLY_ARRAY, NULL, 0);
    r.elements = 4;
    r.element = el;
    return rlib_durability_of(&r, text, n);
}

static void test_durability(void **state) {
    (void)state;
    char t[256];
    assert_int_equal(durability("yes", "everysec", t, sizeof(t)), RLIB_DURABLE);
    assert_non_null(strstr(t, "appendfsync everysec"));
    assert_int_equal(durability("yes", "always", t, sizeof(t)), RLIB_DURABLE);
    assert_int_equal(durability("no", "everysec", t, sizeof(t)), RLIB_WEAK);
    assert_non_null(strstr(t, "appendonly is no"));
    assert_int_equal(durability("yes", "no", t, sizeof(t)), RLIB_WEAK);
    assert_non_null(strstr(t, "appendfsync is no"));
    redisReply e = reply(REDIS_REPLY_ERROR, "NOPERM this user has no permissions", 0);
    assert_int_equal(rlib_durability_of(&e, t, sizeof(t)), RLIB_UNKNOWN);
    assert_non_null(strstr(t, "NOPERM"));
    assert_int_equal(rlib_durability_of(NULL, t, sizeof(t)), RLIB_UNKNOWN);
    redisReply empty = reply(REDIS_REPLY_ARRAY, NULL, 0);
    assert_int_equal(rlib_durability_of(&empty, t, sizeof(t)), RLIB_UNKNOWN);
}

static void test_backoff(void **state) {
    (void)state;
    unsigned d = rlib_backoff(0);
    assert_int_equal(d, RLIB_BACKOFF_MIN_MS);
    unsigned prev = 0;
    for (int i = 0; i < 20; i++) {
        d = rlib_backoff(d);
        assert_true(d >= prev && d <= RLIB_BACKOFF_MAX_MS);
        prev = d;
    }
    assert_int_equal(d, RLIB_BACKOFF_MAX_MS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),    cmocka_unit_test(test_check),
        cmocka_unit_test(test_transient),  cmocka_unit_test(test_load_result),
        cmocka_unit_test(test_durability), cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
