"""The desk's service metrics per queue and per agent at GET /metrics, end to end (real
redis-server, gateway, router and WebSocket clients): first response, response and resolution
times, closed / resolved / first-contact resolutions, CSAT (a replaced rating counts once),
abandonment and SLA breaches by kind. Every expected time is computed from what the desk stored
(conversation hashes, message timestamps in the transcript), never from the test's clock; nothing
sleeps: frames are awaited and Redis is polled with wait_until.

Run: BUILD=build/h-metrics /usr/bin/python3 -m pytest -q tests/integration/test_desk_metrics.py
"""
import asyncio
import re
import shutil
import subprocess
import urllib.request

import pytest

from chat import agent, customer, new_cmid
from conftest import METRICS_TOKEN, wait_until
from desk import conv_hash, log_of, run, s

CONFIG = """
[router]
default_queue = general
default_locale = en
timer_tick_ms = 50
sla_first_response_s = chat:{first}, email:0
sla_next_response_s = chat:0, email:0
sla_action = raise_priority
idle_close_s = {idle}
survey_window_s = 60
offer_timeout_s = 0

[queue general]
mode = push

[queue faq]
mode = push

[rule faq]
queue = faq
keywords = faq
"""

# an agent id with every character a label value must escape. Tokens refuse such ids now (sub is
# [A-Za-z0-9_.@-]), but counters an older version wrote may carry one: seeded into Redis below.
ODD = 'carol "q"\\x\ny'
ODD_LABEL = 'carol \\"q\\"\\\\x\\ny'
CAROL = "carol.q@desk-1"


def desk(procs, tmp_path, first=0, idle=0):
    path = tmp_path / "metrics.ini"
    path.write_text(CONFIG.format(first=first, idle=idle), encoding="utf-8")
    gw = procs.gateway()
    procs.router({"CHATGW_CONFIG": str(path), "CHATGW_BLOCK_MS": 200})
    return gw


async def online(gw, procs, agent_id, cap=2):
    a = await agent(gw, procs.agent_token(agent_id, skills=("faq",), cap=cap))
    r = procs.redis.r
    for _ in range(1000):  # bounded poll: the router processed the connect
        if s(r.hget(f"cg:{{t:default}}:agent:{agent_id}", "status")) == "online":
            return a
        await asyncio.sleep(0.01)
    raise AssertionError(f"{agent_id} not online")


async def close_conv(a, conv, code):
    await a.send({"type": "close", "conv": conv, "code": code, "cmid": new_cmid("close")})


async def rate(c, conv, n):
    cmid = new_cmid("rate")
    await c.send({"type": "rating", "rating": n, "conv": conv, "cmid": cmid})
    ack = await c.expect(lambda f: f.get("cmid") == cmid and f["type"] in ("ack", "error"))
    assert ack["type"] == "ack", ack


# ---- the exposition format --------------------------------------------------------------------

def scrape(gw):
    req = urllib.request.Request(gw.base + "/metrics",
                                 headers={"Authorization": "Bearer " + METRICS_TOKEN})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
        return r.read().decode()


LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse(text):
    """{(name, ((label, value), ...)): float}; checks HELP/TYPE come first and each family's
    lines are contiguous."""
    out, typed, seen, current = {}, {}, set(), None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, kind = line.split(" ")
            assert fam not in typed, f"family {fam} twice"
            typed[fam] = kind
            current = fam
            continue
        if line.startswith("#") or not line:
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        assert m, f"bad line {line!r}"
        name, labels, value = m.groups()
        fam = name
        if typed.get(current) == "summary" and name in (current + "_sum", current + "_count"):
            fam = current
        assert fam == current, f"{name} outside its family ({current})"
        pairs = tuple((k, unescape(v)) for k, v in LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in seen, f"duplicate series {key}"
        seen.add(key)
        out[key] = float(value)
    return out


def val(m, name, **labels):
    want = {k.rstrip("_"): v for k, v in labels.items()}
    for (n, pairs), v in m.items():
        if n == name and dict(pairs) == want:
            return v
    return None


def promtool_ok(text):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool missing (Debian package prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def check_entity(m, who, name, want):
    """want: field -> expected value; the summaries' _sum in seconds (ms resolution)."""
    for field, v in want.items():
        metric = f"chatgw_{who}_{field}"
        got = val(m, metric, **{who: name})
        if v is None:
            assert got is None, f"{metric}{{{name}}} = {got}, expected absent"
        elif metric.endswith("_sum"):
            assert got == pytest.approx(v, abs=0.0005), f"{metric}{{{name}}} = {got}, want {v}"
        else:
            assert got == pytest.approx(v), f"{metric}{{{name}}} = {got}, want {v}"


# ---- answered, transferred, spam; ratings ------------------------------------------------------

def test_times_closes_fcr_and_csat_per_queue_and_agent(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        alice = await online(gw, procs, "alice")
        # A: answered twice, resolved by its first agent, rated 2 then 5 (counts once, as 5)
        ca = await customer(gw)
        a = (await ca.say("faq: where is my order?"))["conv"]
        await alice.expect_type("assigned", conv=a)
        await alice.say("Hello, let me look", conv=a)
        await ca.say("thanks")
        await ca.say("it was order 42")  # same wait: the first unanswered message counts
        await alice.say("It ships today", conv=a)
        await alice.say("Anything else?", conv=a)  # answers nothing
        await close_conv(alice, a, "resolved")
        await ca.expect_type("survey", conv=a)
        await rate(ca, a, 2)
        await rate(ca, a, 5)

        # C: spam, closed without a word
        cc = await customer(gw)
        c = (await cc.say("faq: cheap watches"))["conv"]
        await alice.expect_type("assigned", conv=c)
        await close_conv(alice, c, "spam")
        await cc.expect_type("closed", conv=c)

        # B: answered by alice, transferred to bob, resolved by bob: not a first-contact one
        cb = await customer(gw)
        b = (await cb.say("faq: refund please"))["conv"]
        await alice.expect_type("assigned", conv=b)
        await alice.say("A colleague will help", conv=b)
        bob = await online(gw, procs, "bob")
        await alice.send({"type": "transfer", "conv": b, "agent_id": "bob", "cmid": "t1"})
        await bob.expect_type("assigned", conv=b, agent_id="bob")
        await cb.say("ok?")
        await bob.say("Refunded", conv=b)
        await close_conv(bob, b, "resolved_workaround")
        await cb.expect_type("survey", conv=b)
        await rate(cb, b, 3)
        for x in (alice, bob, ca, cb, cc):
            await x.close()
        return a, b, c

    a, b, c = run(scenario())
    ha, hb, hc = (conv_hash(r, x) for x in (a, b, c))
    assert hc["resolution"] == "spam" and "first_reply_at" not in hc
    assert hb["prev_agent"] == "alice" and hb["agent"] == "bob" and hb["rating"] == "3"
    assert ha["assign_no"] == "1" and ha["rating"] == "5"

    def ts(conv, sender, text):
        return [x["ts"] for x in log_of(r, conv) if x.get("text") == text
                and x.get("sender_id") == sender][0]

    def frt(h):
        return (int(h["first_reply_at"]) - int(h["queued_at"])) / 1000

    def res(h):
        return (int(h["closed_at"]) - int(h["queued_at"])) / 1000

    cust_a, cust_b = ha["customer"], hb["customer"]
    rt_a = (ts(a, "alice", "Hello, let me look") - ts(a, cust_a, "faq: where is my order?")
            + ts(a, "alice", "It ships today") - ts(a, cust_a, "thanks")) / 1000
    rt_b_alice = (ts(b, "alice", "A colleague will help")
                  - ts(b, cust_b, "faq: refund please")) / 1000
    rt_b_bob = (ts(b, "bob", "Refunded") - ts(b, cust_b, "ok?")) / 1000

    text = scrape(gw)
    promtool_ok(text)
    m = parse(text)
    check_entity(m, "queue", "faq", {
        "first_response_seconds_count": 2, "first_response_seconds_sum": frt(ha) + frt(hb),
        "response_seconds_count": 4, "response_seconds_sum": rt_a + rt_b_alice + rt_b_bob,
        "resolution_seconds_count": 2, "resolution_seconds_sum": res(ha) + res(hb),
        "closed_total": 3, "resolved_total": 2, "fcr_total": 1, "rated_total": 2,
        "csat_good_total": 1, "abandoned_total": 0, "fcr_ratio": 1 / 3, "csat_ratio": 0.5})
    check_entity(m, "agent", "alice", {
        "first_response_seconds_count": 2, "first_response_seconds_sum": frt(ha) + frt(hb),
        "response_seconds_count": 3, "response_seconds_sum": rt_a + rt_b_alice,
        "resolution_seconds_count": 1, "resolution_seconds_sum": res(ha),
        "closed_total": 2, "resolved_total": 1, "fcr_total": 1, "rated_total": 1,
        "csat_good_total": 1, "fcr_ratio": 0.5, "csat_ratio": 1.0,
        "abandoned_total": None})  # a queue-only family
    check_entity(m, "agent", "bob", {
        "first_response_seconds_count": 0, "first_response_seconds_sum": 0,
        "response_seconds_count": 1, "response_seconds_sum": rt_b_bob,
        "resolution_seconds_count": 1, "resolution_seconds_sum": res(hb),
        "closed_total": 1, "resolved_total": 1, "fcr_total": 0, "rated_total": 1,
        "csat_good_total": 0, "fcr_ratio": 0, "csat_ratio": 0})
    # a configured queue without any activity: zero counters, no ratios
    check_entity(m, "queue", "general", {
        "closed_total": 0, "response_seconds_count": 0, "first_response_seconds_sum": 0,
        "fcr_ratio": None, "csat_ratio": None})
    assert not [k for k in m if k[0] == "chatgw_queue_sla_breaches_total"]


# ---- abandonment and SLA breaches ----------------------------------------------------------------

def test_abandonment_and_sla_breaches(procs, redis_srv, tmp_path):
    """First-response SLA 1 s (raise_priority), idle close 3 s. X waits with nobody online and
    breaches its SLA in the queue, its customer leaves, an agent comes, X is idle-closed without
    an answer: abandoned. Y is assigned at once, breaches while assigned (the agent's breach),
    is answered, then idle-closed: no_response but not abandoned."""
    r = redis_srv.r
    gw = desk(procs, tmp_path, first=1, idle=3)

    async def scenario():
        cx = await customer(gw)
        x = (await cx.say("faq: is anyone there?"))["conv"]
        await cx.expect(lambda f: f.get("queue") == "faq" and f.get("type") == "text")
        await asyncio.to_thread(wait_until, lambda: conv_hash(r, x).get("sla_breaches") == "1",
                                10, "X's breach")
        await cx.close()  # the customer leaves while waiting
        carol = await online(gw, procs, CAROL)
        await carol.expect_type("assigned", conv=x)
        cy = await customer(gw)
        y = (await cy.say("faq: my parcel"))["conv"]
        await carol.expect_type("assigned", conv=y)
        await asyncio.to_thread(wait_until, lambda: conv_hash(r, y).get("sla_breaches") == "1",
                                10, "Y's breach")
        await carol.say("Here I am", conv=y)
        await cy.expect_type("closed", conv=y, timeout=15)
        await asyncio.to_thread(wait_until, lambda: conv_hash(r, x).get("state") == "closed",
                                10, "X idle-closed")
        await carol.close()
        await cy.close()
        return x, y

    x, y = run(scenario())
    hx, hy = conv_hash(r, x), conv_hash(r, y)
    assert hx["resolution"] == hy["resolution"] == "no_response"
    assert "first_reply_at" not in hx and hy["agent"] == CAROL
    cust_y = hy["customer"]
    logy = log_of(r, y)
    rt_y = ([e["ts"] for e in logy if e.get("text") == "Here I am"][0]
            - [e["ts"] for e in logy if e.get("sender_id") == cust_y][0]) / 1000
    frt_y = (int(hy["first_reply_at"]) - int(hy["queued_at"])) / 1000

    r.sadd("cg:{t:default}:kpi:agents", ODD)
    r.hincrby(f"cg:{{t:default}}:kpi:agent:{ODD}", "closed", 1)
    text = scrape(gw)
    promtool_ok(text)
    assert f'agent="{ODD_LABEL}"' in text
    m = parse(text)
    assert val(m, "chatgw_agent_closed_total", agent=ODD) == 1
    check_entity(m, "queue", "faq", {
        "closed_total": 2, "resolved_total": 0, "fcr_total": 0, "abandoned_total": 1,
        "no_agent_total": 1,  # X started waiting with nobody online; Y was assigned at once
        "first_response_seconds_count": 1, "first_response_seconds_sum": frt_y,
        "response_seconds_count": 1, "response_seconds_sum": rt_y, "fcr_ratio": 0,
        "csat_ratio": None})
    check_entity(m, "agent", CAROL, {
        "closed_total": 2, "resolved_total": 0, "first_response_seconds_count": 1,
        "response_seconds_count": 1, "response_seconds_sum": rt_y})
    assert val(m, "chatgw_queue_sla_breaches_total", queue="faq", kind="first") == 2
    assert val(m, "chatgw_agent_sla_breaches_total", agent=CAROL, kind="first") == 1
    assert val(m, "chatgw_queue_sla_breaches_total", queue="general", kind="first") is None


# ---- response times of open conversations -------------------------------------------------------

def test_response_times_of_open_conversations_are_exported_live(procs, redis_srv, tmp_path):
    """A conversation holds its answers' response times until it closes (issue 10: AOF bytes per
    answer); /metrics adds what open conversations hold, so an answer counts at once, and the
    close does not count it twice."""
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        alice = await online(gw, procs, "alice")
        c1 = await customer(gw)
        conv = (await c1.say("faq: is my parcel lost?"))["conv"]
        await alice.expect_type("assigned", conv=conv)
        await alice.say("Let me check", conv=conv)
        h = conv_hash(r, conv)
        log = log_of(r, conv)
        rt = ([e["ts"] for e in log if e.get("text") == "Let me check"][0]
              - [e["ts"] for e in log if e.get("sender_id") == h["customer"]][0]) / 1000
        assert h["state"] == "assigned" and h["rt"].startswith("faq\talice\t")
        assert not r.hget("cg:{t:default}:kpi:queue:faq", "response_n")  # held, not counted
        open_m = parse(await asyncio.to_thread(scrape, gw))
        await close_conv(alice, conv, "resolved")
        await c1.expect_type("closed", conv=conv)
        return conv, rt, open_m

    conv, rt, open_m = run(scenario())
    for who, name in (("queue", "faq"), ("agent", "alice")):
        check_entity(open_m, who, name, {"response_seconds_count": 1, "response_seconds_sum": rt})
    assert "rt" not in conv_hash(r, conv)
    text = scrape(gw)
    promtool_ok(text)
    closed_m = parse(text)
    for who, name in (("queue", "faq"), ("agent", "alice")):
        check_entity(closed_m, who, name, {"response_seconds_count": 1,
                                           "response_seconds_sum": rt, "closed_total": 1})
