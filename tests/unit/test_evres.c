/* test_evres.c -- common/evres.c on replies parsed by hiredis's own reader from RESP2 bytes, as
 * the event functions (redis/event.lua answer()) send them: fields by name, a missing field or
 * a malformed answer read as NULL / "" / 0, never out of bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../common/evres.h"

/* The reply hiredis parses from the RESP2 bytes resp (freed by the caller: freeReplyObject). */
static redisReply *parse(const char *resp) {
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    void *rep = NULL;
    assert_int_equal(redisReaderGetReply(rd, &rep), REDIS_OK);
    assert_non_null(rep);
    redisReaderFree(rd);
    return rep;
}

/* {'missed', 'agent', 'amy', 'away', 1, 'misses', '3', 'rows', {{'c1', 'bob'}}} */
static const char *MISSED = "*9\r\n$6\r\nmissed\r\n$5\r\nagent\r\n$3\r\namy\r\n$4\r\naway\r\n:1\r\n"
                            "$6\r\nmisses\r\n$1\r\n3\r\n$4\r\nrows\r\n*1\r\n*2\r\n$2\r\nc1\r\n"
                            "$3\r\nbob\r\n";

static void test_fields_by_name(void **state) {
    (void)state;
    redisReply *rep = parse(MISSED);
    char kind[16], agent[8], small[3];
    assert_int_equal(evres_kind(rep, kind, sizeof(kind)), 0);
    assert_string_equal(kind, "missed");
    evres_str(rep, "agent", agent, sizeof(agent));
    assert_string_equal(agent, "amy");
    evres_str(rep, "misses", small, sizeof(small));
    assert_string_equal(small, "3");
    evres_str(rep, "away", small, sizeof(small)); /* an integer as text */
    assert_string_equal(small, "1");
    assert_int_equal(evres_int(rep, "away"), 1);
    assert_int_equal(evres_int(rep, "misses"), 3); /* a number sent as a string */
    const redisReply *rows = evres_get(rep, "rows");
    assert_non_null(rows);
    assert_int_equal(rows->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rows->elements, 1);
    /* a value is never taken for a name: "amy" is agent's value */
    assert_null(evres_get(rep, "amy"));
    assert_null(evres_get(rep, "missed")); /* the kind is no field */
    freeReplyObject(rep);
}

static void test_missing_fields_read_as_nothing(void **state) {
    (void)state;
    redisReply *rep = parse(MISSED);
    char out[8] = "x";
    assert_null(evres_get(rep, "queue"));
    evres_str(rep, "queue", out, sizeof(out));
    assert_string_equal(out, "");
    assert_int_equal(evres_int(rep, "queue"), 0);
    assert_int_equal(evres_int(rep, "agent"), 0); /* not a number */
    freeReplyObject(rep);
}

static void test_malformed_answers(void **state) {
    (void)state;
    char kind[16] = "x", out[8] = "x";
    /* a name without its value (an even array): not read past the end */
    redisReply *odd = parse("*4\r\n$4\r\ntold\r\n$4\r\nconv\r\n$2\r\nc1\r\n$5\r\nqueue\r\n");
    assert_int_equal(evres_kind(odd, kind, sizeof(kind)), 0);
    assert_string_equal(evres_get(odd, "conv")->str, "c1");
    assert_null(evres_get(odd, "queue"));
    freeReplyObject(odd);
    /* an error, an integer, an empty array, a kind that is no string: no answer */
    const char *bad[] = {"-BADARG x\r\n", ":1\r\n", "*0\r\n", "*1\r\n:5\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *rep = parse(bad[i]);
        assert_int_equal(evres_kind(rep, kind, sizeof(kind)), -1);
        assert_string_equal(kind, "");
        assert_null(evres_get(rep, "conv"));
        evres_str(rep, "conv", out, sizeof(out));
        assert_string_equal(out, "");
        assert_int_equal(evres_int(rep, "conv"), 0);
        freeReplyObject(rep);
    }
    assert_int_equal(evres_kind(NULL, kind, sizeof(kind)), -1);
    assert_null(evres_get(NULL, "conv"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_by_name),
        cmocka_unit_test(test_missing_fields_read_as_nothing),
        cmocka_unit_test(test_malformed_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
