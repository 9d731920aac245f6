/* test_classify.c -- the routing model: comma lists, matching (router/classify.c) and the
 * [queue]/[rule]/[priority]/[canned] sections of the configuration with their errors
 * (router/rcfg.c).
 * Both are pure, so they are compiled into this test directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../router/classify.c"
#include "../../router/hours.c"
#include "../../router/rcfg.c"

static char default_queue[CLS_NAME_MAX];

static const cfg_opt opts[] = {
    {"default_queue", CFG_STR, "general", default_queue, sizeof(default_queue), 0, 0, "queue"},
    {NULL, CFG_STR, NULL, NULL, 0, 0, 0, NULL},
};

static char tmp_path[64];

/* Writes text to a new temporary file; its name is in tmp_path. */
static const char *write_tmp(const char *text) {
    if (tmp_path[0]) unlink(tmp_path);
    snprintf(tmp_path, sizeof(tmp_path), "/tmp/test_classify_XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return tmp_path;
}

static int setup(void **state) {
    (void)state;
    unsetenv("CHATGW_DEFAULT_QUEUE");
    tmp_path[0] = '\0';
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (tmp_path[0]) unlink(tmp_path);
    tmp_path[0] = '\0';
    return 0;
}

/* Load text; expect success. */
static void load_ok(const char *text, cls_set *s) {
    cg_err err = {{0}, {0}};
    int rc = rcfg_load(opts, write_tmp(text), default_queue, s, &err);
    if (rc != 0) fail_msg("unexpected error: %s", err.msg);
}

/* Load text; expect an error whose message (after the path) starts with want. */
static void load_err(const char *text, const char *want) {
    cg_err err = {{0}, {0}};
    cls_set s;
    cls_set_init(&s);
    assert_int_equal(rcfg_load(opts, write_tmp(text), default_queue, &s, &err), -1);
    assert_int_equal(s.n_queues, 0);
    size_t n = strlen(tmp_path);
    if (strncmp(err.msg, tmp_path, n) != 0 || strncmp(err.msg + n, want, strlen(want)) != 0)
        fail_msg("got '%s', want '%s%s'", err.msg, tmp_path, want);
}

static const char *const model = "[router]\n"
                                 "default_queue = general\n"
                                 "[queue complaints]\n"
                                 "name_zh = 投诉\n"
                                 "name_en = Complaints\n"
                                 "priority = 7\n"
                                 "overflow = supervisors\n"
                                 "overflow_after_s = 300\n"
                                 "[queue after_sales]\n"
                                 "priority = 6\n"
                                 "[queue supervisors]\n"
                                 "mode = pull\n"
                                 "[queue email_desk]\n"
                                 "mode = push\n"
                                 "[rule complaint]\n"
                                 "queue = complaints\n"
                                 "keywords = 投诉, 差评, Complaint\n"
                                 "order = 10\n"
                                 "[rule refund]\n"
                                 "queue = after_sales\n"
                                 "keywords = 退款，退货、Refund\n"
                                 "keywords = broken\n"
                                 "  damaged\n"
                                 "order = 20\n"
                                 "[rule mail]\n"
                                 "queue = email_desk\n"
                                 "channel = email\n"
                                 "priority = 3\n"
                                 "order = 30\n"
                                 "[rule first]\n"
                                 "queue = general\n"
                                 "keywords = hello\n"
                                 "tier = gold, VIP\n"
                                 "order = 5\n"
                                 "[priority vip]\n"
                                 "tier = vip\n"
                                 "priority = 8\n"
                                 "[priority damaged]\n"
                                 "keywords = 破损, damaged\n"
                                 "priority = 6\n"
                                 "[gateway]\n"
                                 "whatever = ignored\n";

static void classify(const cls_set *s, const char *text, const char *channel, const char *tier,
                     const char *queue, int prio, const char *rule) {
    cls_input in = {.text = text, .channel = channel, .tier = tier};
    cls_result res;
    cls_classify(s, &in, &res);
    if (strcmp(res.queue, queue) != 0 || res.priority != prio || strcmp(res.rule, rule) != 0)
        fail_msg("'%s' (%s, %s): got %s/%d/%s, want %s/%d/%s", text ? text : "", channel,
                 tier ? tier : "", res.queue, res.priority, res.rule, queue, prio, rule);
}

static void test_list(void **state) {
    (void)state;
    cls_list l = {0};
    assert_int_equal(cls_list_add(&l, " Refund ,退款，破损、 ,, Log In "), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.items[0], "refund");
    assert_string_equal(l.items[1], "退款");
    assert_string_equal(l.items[2], "破损");
    assert_string_equal(l.items[3], "log in");
    assert_int_equal(cls_list_add(&l, ""), 0);
    assert_int_equal(l.n, 4);
    cls_list_free(&l);
}

static void test_contains(void **state) {
    (void)state;
    assert_true(cls_contains("I want a REFUND now", "refund"));
    assert_true(cls_contains("我要投诉，商品破损", "破损"));
    assert_true(cls_contains("x", "x"));
    assert_false(cls_contains("refun", "refund"));
    assert_false(cls_contains("anything", ""));
    assert_false(cls_contains(NULL, "a"));
    assert_false(cls_contains("商品", "品商"));
}

static void test_model(void **state) {
    (void)state;
    cls_set s;
    load_ok(model, &s);
    assert_int_equal(s.n_queues, 5); /* four configured + the default queue */
    const cls_queue *q = cls_queue_find(&s, "complaints");
    assert_non_null(q);
    assert_string_equal(q->name_zh, "投诉");
    assert_string_equal(q->name_en, "Complaints");
    assert_int_equal(q->priority, 7);
    assert_int_equal(q->mode, CLS_PUSH);
    assert_int_equal(q->overflow.n, 1);
    assert_string_equal(q->overflow.items[0], "supervisors");
    assert_int_equal(q->overflow_after_s, 300);
    assert_int_equal(cls_queue_find(&s, "supervisors")->mode, CLS_PULL);
    q = cls_queue_find(&s, "general");
    assert_true(q->implicit);
    assert_int_equal(q->priority, CLS_PRIO_DEFAULT);
    /* sorted by order */
    assert_string_equal(s.rules[0].name, "first");
    assert_string_equal(s.rules[1].name, "complaint");
    assert_int_equal(cls_rule_find(&s, "refund")->keywords.n, 5);

    classify(&s, "我要投诉，商品破损", "web", "", "complaints", 7, "complaint");
    classify(&s, "I would like a Refund please", "web", NULL, "after_sales", 6, "refund");
    classify(&s, "the box arrived damaged", "web", NULL, "after_sales", 6, "refund");
    classify(&s, "where is my order?", "web", NULL, "general", 5, "");
    classify(&s, NULL, "web", NULL, "general", 5, "");
    classify(&s, "where is my order?", "email", NULL, "email_desk", 3, "mail");
    /* the priority rule raises the rule's priority, never lowers it */
    classify(&s, "where is my order?", "email", "VIP", "email_desk", 8, "mail");
    classify(&s, "商品破损了", "email", NULL, "email_desk", 6, "mail");
    classify(&s, "where is my order?", "web", "vip", "general", 8, "");
    /* all conditions of a rule must hold: keyword and tier */
    classify(&s, "hello there", "web", "gold", "general", 5, "first");
    classify(&s, "hello, a complaint", "web", "gold", "general", 5, "first");
    classify(&s, "hello, a complaint", "web", "silver", "complaints", 7, "complaint");
    cls_set_free(&s);
}

static void test_no_file(void **state) {
    (void)state;
    cg_err err = {{0}, {0}};
    cls_set s;
    setenv("CHATGW_DEFAULT_QUEUE", "support", 1);
    assert_int_equal(rcfg_load(opts, NULL, default_queue, &s, &err), 0);
    unsetenv("CHATGW_DEFAULT_QUEUE");
    assert_int_equal(s.n_queues, 1);
    assert_string_equal(s.queues[0].name, "support");
    classify(&s, "anything", "web", NULL, "support", 5, "");
    cls_set_free(&s);
}

static void test_errors(void **state) {
    (void)state;
    load_err("[queue faq]\nmode = push\ncolour = red\n",
             ":3: key 'colour': unknown key in [queue faq]");
    load_err("[queue faq]\nmode = fast\n", ":2: key 'mode': 'fast' is not push or pull");
    load_err("[queue faq]\npriority = 10\n", ":2: key 'priority': 10 is out of range [0, 9]");
    load_err("[queue faq]\npriority = high\n", ":2: key 'priority': 'high' is not a whole number");
    load_err("[queue faq]\nmode = pull\nmode = push\n",
             ":3: key 'mode': given twice in the same section");
    load_err("[rule r]\nkeywords = a\nqueue = nowhere\n",
             ":3: key 'queue': unknown queue 'nowhere'");
    load_err("[rule r]\nkeywords = a\npriority = -1\n",
             ":3: key 'priority': -1 is out of range [0, 9]");
    load_err("[rule r]\nkeywords = a\nfoo = 1\n", ":3: key 'foo': unknown key in [rule r]");
    load_err("[rule r]\nkeywords = a\nchannel = web, fax\n",
             ":3: key 'channel': 'fax' is not a channel");
    load_err("[queue faq]\nmode = push\n[rule r]\nkeywords = a\n",
             ":4: key 'keywords': [rule r] has no 'queue'");
    load_err("[priority p]\nkeywords = a\n", ":2: key 'keywords': [priority p] has no 'priority'");
    load_err("[priority p]\npriority = 9\n",
             ":2: key 'priority': [priority p] needs keywords, channel or tier");
    load_err("[priority p]\nqueue = faq\n", ":2: key 'queue': unknown key in [priority p]");
    load_err("[queue a]\noverflow = b\n", ":2: key 'overflow': unknown queue 'b'");
    load_err("[queue a]\noverflow = a\n", ":2: key 'overflow': queue 'a' cannot overflow");
    load_err("[queue Bad Name]\nmode = push\n", ":2: key 'mode': [queue Bad Name]: the name");
    load_err("[queue]\nmode = push\n", ":2: key 'mode': [queue]: the name");
    load_err("[router]\nqueue_mode = push\n", ":2: key 'queue_mode': unknown key in [router]");
}

static void test_default_queue_references(void **state) {
    (void)state;
    cls_set s;
    /* a rule may target the default queue without a section; overflow too */
    load_ok("[router]\ndefault_queue = lobby\n[rule r]\nqueue = lobby\nkeywords = x\n"
            "[queue vip]\noverflow = lobby\n",
            &s);
    assert_non_null(cls_queue_find(&s, "lobby"));
    classify(&s, "x", "web", NULL, "lobby", 5, "r");
    cls_set_free(&s);
}

/* [canned <queue>] sections: replies of configured queues (and the default queue), continuation
 * lines, and the errors of names, texts and queues. */
static void test_canned(void **state) {
    (void)state;
    cls_set s;
    load_ok("[router]\ndefault_queue = general\n"
            "[canned faq]\n"
            "shipping = Ships in {days} days.\n"
            "returns_zh = 签收后 7 天内可退货。\n"
            "[queue faq]\nmode = push\n"
            "[canned general]\n"
            "steps = 1. Open the order.\n"
            "  2. Ask for a refund.\n",
            &s);
    assert_int_equal(s.n_canned, 3);
    assert_string_equal(s.canned[0].queue, "faq");
    assert_string_equal(s.canned[0].name, "shipping");
    assert_string_equal(s.canned[0].text, "Ships in {days} days.");
    assert_string_equal(s.canned[1].text, "签收后 7 天内可退货。");
    assert_string_equal(s.canned[2].queue, "general");
    assert_string_equal(s.canned[2].text, "1. Open the order.\n2. Ask for a refund.");
    cls_set_free(&s);

    /* exactly 2000 bytes is fine, one more is not */
    char text[4096] = "[queue q]\nmode = push\n[canned q]\nlong = ";
    for (int i = 0; i <= 10; i++) { /* 190 + 10 * (1 + 180): lines are at most 198 bytes */
        strcat(text, i ? "\n  " : "");
        for (int k = 0; k < (i ? 180 : 190); k++)
            strcat(text, i ? "y" : "x");
    }
    strcat(text, "\n");
    load_ok(text, &s);
    assert_int_equal(s.canned[0].len, 2000);
    cls_set_free(&s);
    strcat(text, "  z\n");
    load_err(text, ":15: key 'long': the text is too long (max 2000 bytes)");

    /* at most CLS_CANNED_PER_QUEUE per queue */
    static char many[32768];
    snprintf(many, sizeof(many), "[queue q]\nmode = push\n[canned q]\n");
    for (int i = 0; i <= CLS_CANNED_PER_QUEUE; i++) {
        char line[32];
        snprintf(line, sizeof(line), "r%d = t\n", i);
        strcat(many, line);
    }
    load_err(many, ":204: key 'r200': more than 200 canned replies in [canned q]");

    load_err("[canned nowhere]\nhello = Hi\n", ":2: key 'hello': unknown queue 'nowhere'");
    load_err("[queue q]\nmode = push\n[canned q]\nHello = Hi\n",
             ":4: key 'Hello': not a reply name: 1-64 of a-z 0-9 _ -");
    load_err("[queue q]\nmode = push\n[canned q]\nbad = caf\xe9\n",
             ":4: key 'bad': the text is not UTF-8");
    load_err("[queue q]\nmode = push\n[canned q]\nempty =\n", ":4: key 'empty': empty text");
    load_err("[canned Bad]\nx = y\n", ":2: key 'x': [canned Bad]: the name must be");
    load_err("[queue q]\nmode = push\n[canned q]\nhi = Hello\nhi = Hi again\n",
             ":5: key 'hi': reply 'hi' given twice in [canned q]");
}

/* Multi-line values in routing sections: lists take every line's items, a single value may not
 * continue. */
static void test_continuation_lines(void **state) {
    (void)state;
    cls_set s;
    load_ok("[queue q]\nmode = push\noverflow = a,\n  b\nholidays = 2026-10-01,\n  2026-10-02\n"
            "hours = mon-fri 09:00-18:00,\n  sat 10:00-16:00\n"
            "[queue a]\nmode = push\n[queue b]\nmode = push\n"
            "[rule r]\nqueue = q\nkeywords = x, y,\n  z\nchannel = web,\n  email\n",
            &s);
    const cls_queue *q = cls_queue_find(&s, "q");
    assert_non_null(q);
    assert_int_equal(q->overflow.n, 2);
    assert_string_equal(q->overflow.items[1], "b");
    assert_int_equal(q->hours.n_holidays, 2);
    const cls_rule *r = cls_rule_find(&s, "r");
    assert_int_equal(r->keywords.n, 3);
    assert_string_equal(r->keywords.items[2], "z");
    assert_int_equal(r->channels.n, 2);
    cls_set_free(&s);
    load_err("[queue q]\nmode = push\npriority = 5\n  6\n",
             ":4: key 'priority': a continuation line: only lists and canned texts");
    load_err("[rule r]\nqueue = general\n  other\n",
             ":3: key 'queue': a continuation line: only lists and canned texts");
}

/* 1 when list l has item. */
static int list_has(const cls_list *l, const char *item) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], item) == 0) return 1;
    return 0;
}

/* The shipped configuration, as parsed: every multi-line value has the items or lines of all its
 * lines (first and last checked for each). complaint_sla is checked through the router binary
 * (tests/integration/test_config_shipped.py). */
static void test_shipped_config_multiline_values(void **state) {
    (void)state;
    cls_set s;
    cls_set_init(&s);
    /* the routing sections, as they are (the process sections hold keys of other tables) */
    FILE *f = fopen("config/chatgw.ini", "r");
    assert_non_null(f);
    static char text[65536];
    char line[512];
    size_t used = 0;
    int skip = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '[')
            skip = !strncmp(line, "[router]", 8) || !strncmp(line, "[common]", 8) ||
                   !strncmp(line, "[gateway]", 9);
        if (skip) continue;
        assert_true(used + strlen(line) < sizeof(text));
        memcpy(text + used, line, strlen(line) + 1);
        used += strlen(line);
    }
    fclose(f);
    load_ok(text, &s);
    static const struct {
        const char *rule, *first, *last;
    } kw[] = {{"complaint", "投诉", "terrible service"},
              {"after_sales", "退货", "invoice"},
              {"tech_support", "无法登录", "not working"},
              {"presales", "价格", "which model"},
              {"faq", "发货", "order status"}};
    for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
        const cls_rule *r = cls_rule_find(&s, kw[i].rule);
        if (!r) fail_msg("rule %s missing", kw[i].rule);
        if (!list_has(&r->keywords, kw[i].first) || !list_has(&r->keywords, kw[i].last))
            fail_msg("rule %s: keywords lack '%s' or '%s'", kw[i].rule, kw[i].first, kw[i].last);
    }
    int found = 0;
    for (size_t i = 0; i < s.n_canned; i++) {
        const cls_canned *c = &s.canned[i];
        if (strcmp(c->name, "refund_steps_zh") == 0) {
            assert_string_equal(c->text,
                                "退款步骤：\n1. 在“我的订单”中点击“申请退款”；\n"
                                "2. 选择原因并上传照片；\n3. 审核通过后 1-3 个工作日原路退回。");
            found++;
        }
        if (strcmp(c->name, "refund_steps_en") == 0) {
            assert_non_null(strstr(c->text, "To get a refund:\n1. open"));
            assert_non_null(strstr(c->text, "\n3. once approved, the money goes back"));
            found++;
        }
    }
    assert_int_equal(found, 2);
    cls_set_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_contains),
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_queue_references, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continuation_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_config_multiline_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
