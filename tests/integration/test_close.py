"""How conversations end, against the real gateway and router binaries and a real redis-server:
resolution codes (unknown refused, unresolved back to the queue for another agent), the
satisfaction survey after a close on web (rating frame) and e-mail (a one-digit reply), idle
auto-close and the complaint follow-up task. Durations are configured short; nothing sleeps:
WebSocket frames are awaited and Redis is polled with wait_until.

Run: BUILD=build/h-csat /usr/bin/python3 -m pytest -q tests/integration/test_close.py
"""
import email.message
import email.utils
import itertools

import msgpack

from chat import agent, customer, new_cmid
from conftest import load_libraries, wait_until
from desk import Monitor, conv_hash, log_of, named, run, s, store

MAIL_TOKEN = "mail-bridge-token-0123456789abcdef"
MAIL_HDR = {"Authorization": f"Bearer {MAIL_TOKEN}", "Content-Type": "message/rfc822"}
_mails = itertools.count(1)

CONFIG = """
[router]
default_queue = general
default_locale = en
timer_tick_ms = 100
idle_close_s = {idle}
complaint_followup_s = {followup}
survey_window_s = 60

[queue general]
mode = push

[queue complaints]
mode = pull

[rule complaint]
queue = complaints
keywords = complaint

[templates en]
survey = Please rate this conversation from 1 to 5
rating_thanks = THANKS {{rating}}
idle_closed = IDLE {{idle}}
requeued = ANOTHER AGENT

[templates zh-CN]
survey = 请为本次服务评分 1-5
requeued = 正在为您转接其他客服
"""


def desk(procs, tmp_path, idle=0, followup=0):
    path = tmp_path / "close.ini"
    path.write_text(CONFIG.format(idle=idle, followup=followup), encoding="utf-8")
    gw = procs.gateway({"CHATGW_EMAIL_TOKEN": MAIL_TOKEN})
    procs.router({"CHATGW_CONFIG": str(path), "CHATGW_BLOCK_MS": 200})
    return gw


def conversations(r):
    return {s(k).split(":")[4] for k in r.scan_iter("cg:{t:default}:conv:*") if not s(k).endswith(":log")}


def outbound(r, channel, conv):
    out = []
    for _, f in r.xrange(f"cg:{{t:default}}:out:{channel}"):
        if s(f[b"c"]) == conv:
            out.append(msgpack.unpackb(f[b"m"], raw=False))
    return out


def post_mail(gw, body, frm="li@example.com", subject="Order"):
    import http.client
    m = email.message.Message()
    m["From"] = frm
    m["To"] = "support@desk.example"
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate()
    m["Message-ID"] = f"<mail-{next(_mails)}@example.com>"
    m["Content-Type"] = 'text/plain; charset="utf-8"'
    m.set_payload(body.encode("utf-8"), "utf-8")
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        c.request("POST", "/channels/email", body=m.as_bytes(), headers=MAIL_HDR)
        resp = c.getresponse()
        resp.read()
        return resp.status
    finally:
        c.close()


async def close_conv(a, conv, code):
    cmid = new_cmid("close")
    await a.send({"type": "close", "conv": conv, "code": code, "cmid": cmid})
    return cmid


# ---- one call per end: what Redis runs for a close ------------------------------------------------

def test_an_agent_close_and_an_end_chat_are_one_call_each(procs, redis_srv, tmp_path):
    """The router tells both sides of a close in the close's own call (cg_agent_close,
    cg_customer_end): no cg_message, cg_after_close or PUBLISH of its own afterwards."""
    r = redis_srv.r
    gw = desk(procs, tmp_path)
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw, identity={"locale": "en"})
        conv = (await c.say("my order"))["conv"]
        await a.expect_type("assigned", conv=conv)
        mon = Monitor(r).start()
        await close_conv(a, conv, "resolved")
        await c.expect_type("closed", conv=conv)
        await c.expect_type("survey", conv=conv)
        wait_until(lambda: not r.xpending("cg:{t:default}:in", "routers")["pending"], 10,
                   "the close entry acknowledged")
        mon.stop()
        assert mon.fcalls() == ["cg_agent_close"], mon.seen
        # the customer's End chat in a new conversation, assigned to alice again
        conv2 = (await c.say("one more thing"))["conv"]
        await a.expect_type("assigned", conv=conv2)
        mon = Monitor(r).start()
        await c.send({"type": "close", "conv": conv2, "cmid": new_cmid("end")})
        await c.expect_type("closed", conv=conv2)
        await a.expect(lambda f: f.get("conv") == conv2 and "ended" in f.get("text", ""),
                       what="the agent's notice")
        wait_until(lambda: not r.xpending("cg:{t:default}:in", "routers")["pending"], 10,
                   "the end entry acknowledged")
        mon.stop()
        routers = [f for f in mon.fcalls() if f != "cg_message"]  # the gateway stores the frame
        assert routers == ["cg_customer_end"], mon.seen

    run(scenario())


# ---- web: resolved close, survey, rating frame ---------------------------------------------------

def test_resolved_close_survey_and_rating_on_web(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw, identity={"locale": "zh-CN"})
        conv = (await c.say("我的订单"))["conv"]
        await a.expect_type("assigned", conv=conv)
        await close_conv(a, conv, "resolved")
        closed = await c.expect_type("closed", conv=conv)
        assert closed["code"] == "resolved"
        survey = await c.expect_type("survey", conv=conv)
        assert survey["text"] == "请为本次服务评分 1-5" and survey["seq"] > closed["seq"]
        h = conv_hash(r, conv)
        assert h["state"] == "closed" and h["resolution"] == "resolved"
        assert int(h["survey_until"]) - int(h["closed_at"]) == 60000
        # the widget's rating frame attaches to the closed conversation
        await c.send({"type": "rating", "rating": 4, "conv": conv, "cmid": "rate-1"})
        ack = await c.expect(lambda f: f.get("cmid") == "rate-1" and f["type"] in ("ack", "error"),
                             what="rating ack")
        assert ack["type"] == "ack" and ack["conv"] == conv
        thanks = await c.expect(lambda f: f.get("type") == "text" and f.get("role") == "bot"
                                and f.get("text", "").startswith("THANKS"), what="thanks")
        assert thanks["text"] == "THANKS 4" and thanks["conv"] == conv
        h = conv_hash(r, conv)
        assert h["rating"] == "4" and int(h["rated_at"]) >= int(h["closed_at"])
        rated = [m for m in log_of(r, conv) if m["type"] == "rating"]
        assert [(m["role"], m["rating"]) for m in rated] == [("customer", 4)]
        assert conversations(r) == {conv}  # no new conversation
        assert s(r.hget(f"cg:{{t:default}}:cust:{c.welcome['sender_id']}", "conv")) == conv
        # a rating with no surveyed conversation is refused, opens nothing; the text sent after
        # it on the same socket is stored after it was refused
        c2 = await customer(gw)
        await c2.send({"type": "rating", "rating": 5, "cmid": "rate-2"})
        conv2 = (await c2.say("a question"))["conv"]
        assert conversations(r) == {conv, conv2}
        assert [m["type"] for m in log_of(r, conv2) if m["role"] == "customer"] == ["text"]
        err = [f for f in c2.frames if f.get("cmid") == "rate-2"]
        assert [(f["type"], f["code"]) for f in err] == [("error", "closed")]
        assert "no survey" in err[0]["text"]
        # writing after that is a new conversation, as before
        new = (await c.say("one more thing"))["conv"]
        assert new != conv
        for x in (a, c, c2):
            await x.close()
    run(scenario())


# ---- resolution codes: unresolved goes back, unknown refused -----------------------------------

def test_unresolved_goes_to_another_agent_and_unknown_code_refused(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)
    t1 = procs.agent_token("amy", "Amy", cap=1)
    t2 = procs.agent_token("bob", "Bob", cap=1)

    async def scenario():
        a1 = await agent(gw, t1)
        c = await customer(gw)
        conv = (await c.say("still broken"))["conv"]
        await a1.expect_type("assigned", conv=conv)
        a2 = await agent(gw, t2)
        wait_until(lambda: r.zscore("cg:{t:default}:avail:general", "bob") is not None, 5, "bob available")
        # an unknown code: refused to the agent with its cmid, nothing changes
        cmid = await close_conv(a1, conv, "fixed-it")
        err = await a1.expect(lambda f: f.get("type") == "error" and f.get("cmid") == cmid,
                              what="bad_value error")
        assert err["code"] == "bad_value" and err["conv"] == conv and "fixed-it" in err["text"]
        assert conv_hash(r, conv)["state"] == "assigned"
        # unresolved: not closed, back in the queue, taken by the free agent at once
        await close_conv(a1, conv, "unresolved")
        await a2.expect_type("assigned", conv=conv)
        told = await c.expect(lambda f: f.get("type") == "text" and f.get("text") ==
                              "ANOTHER AGENT", what="customer told")
        assert told["conv"] == conv
        joined = await c.expect_type("assigned", conv=conv)
        assert joined["agent_id"] == "bob"
        h = conv_hash(r, conv)
        assert (h["state"], h["agent"], h["prev_agent"], h["prio"]) == ("assigned", "bob", "amy",
                                                                        "9")
        assert "resolution" not in h and "closed_at" not in h
        assert not [m for m in log_of(r, conv) if m["type"] in ("closed", "survey")]
        assert s(r.hget("cg:{t:default}:agent:amy", "load")) == "0"
        assert r.smembers("cg:{t:default}:agent:amy:convs") == set()
        # amy is free again: the next conversation is hers
        c2 = await customer(gw)
        conv2 = (await c2.say("hello"))["conv"]
        await a1.expect_type("assigned", conv=conv2)
        # bob can close it for good
        await close_conv(a2, conv, "resolved_workaround")
        await c.expect_type("closed", conv=conv, code="resolved_workaround")
        for x in (a1, a2, c, c2):
            await x.close()
    run(scenario())


def test_unresolved_with_nobody_free_waits_first_in_line(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)
    t1 = procs.agent_token("amy", "Amy", cap=1)

    async def scenario():
        a1 = await agent(gw, t1)
        c1 = await customer(gw)
        conv1 = (await c1.say("first"))["conv"]
        await a1.expect_type("assigned", conv=conv1)
        c2 = await customer(gw)
        conv2 = (await c2.say("second, waiting"))["conv"]
        wait_until(lambda: conv_hash(r, conv2).get("state") == "queued", 5, "conv2 queued")
        await close_conv(a1, conv1, "unresolved")
        # amy is not given her unresolved conversation back; it waits ahead of conv2
        await c1.expect(lambda f: f.get("text") == "ANOTHER AGENT", what="customer told")
        wait_until(lambda: r.zrange("cg:{t:default}:queue:general", 0, -1) == [conv1.encode(),
                                                                   conv2.encode()],
                   5, "conv1 first in line")
        assert conv_hash(r, conv1)["state"] == "queued"
        assert s(r.hget("cg:{t:default}:agent:amy", "load")) == "0"
        for x in (a1, c1, c2):
            await x.close()
    run(scenario())


# ---- e-mail: survey in the outbound mail, a digit reply is the rating ----------------------------

def test_email_survey_and_digit_reply(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)
    token = procs.agent_token("alice", "Alice")
    assert post_mail(gw, "Where is my parcel?") == 200
    conv = wait_until(lambda: s(r.hget("cg:{t:default}:cust:email:li@example.com", "conv")), 5, "conv")

    async def scenario():
        a = await agent(gw, token)
        await a.expect_type("assigned", conv=conv)
        await close_conv(a, conv, "resolved")
        await a.close()
    run(scenario())
    survey = wait_until(lambda: [m for m in outbound(r, "email", conv) if m["type"] == "survey"],
                        5, "survey mailed")
    assert survey[0]["text"] == "Please rate this conversation from 1 to 5"
    # the reply "５" (full-width, with whitespace) is the rating, no new conversation
    assert post_mail(gw, " \uff15 \n", subject="Re: Order") == 200
    wait_until(lambda: conv_hash(r, conv).get("rating") == "5", 5, "rating stored")
    thanks = wait_until(lambda: [m for m in outbound(r, "email", conv)
                                 if m.get("text") == "THANKS 5"], 5, "thanks mailed")
    assert thanks
    log = log_of(r, conv)
    assert [m["rating"] for m in log if m["type"] == "rating" and m["role"] == "system"] == [5]
    assert conversations(r) == {conv}
    # anything else after the close is a new conversation
    assert post_mail(gw, "Another question", subject="New") == 200
    new = wait_until(lambda: (s(r.hget("cg:{t:default}:cust:email:li@example.com", "conv")) or conv) != conv
                     and s(r.hget("cg:{t:default}:cust:email:li@example.com", "conv")), 5, "new conversation")
    assert conversations(r) == {conv, new}


def test_digit_sent_before_the_close_is_a_message_not_a_rating(procs, redis_srv, tmp_path):
    """The router may get to a message only after the close (it was down, or behind): a "5" the
    customer wrote while the conversation was open stays a message, never a thanked rating."""
    r = redis_srv.r
    path = tmp_path / "close.ini"
    path.write_text(CONFIG.format(idle=0, followup=0), encoding="utf-8")
    env = {"CHATGW_CONFIG": str(path), "CHATGW_BLOCK_MS": 200}
    gw = procs.gateway({"CHATGW_EMAIL_TOKEN": MAIL_TOKEN})
    router = procs.router(env)
    token = procs.agent_token("alice", "Alice")

    async def assigned(a, conv):
        await a.expect_type("assigned", conv=conv)

    async def scenario_start():
        a = await agent(gw, token)
        assert post_mail(gw, "Where is my parcel?", frm="qian@example.com") == 200
        conv = wait_until(lambda: s(r.hget("cg:{t:default}:cust:email:qian@example.com", "conv")), 5, "conv")
        await assigned(a, conv)
        await a.close()
        return conv
    conv = run(scenario_start())
    router.stop()
    assert post_mail(gw, " 5 ", frm="qian@example.com", subject="Re: Order") == 200
    entry = [i for i, f in r.xrange("cg:{t:default}:in") if s(f[b"c"]) == conv][-1]
    assert b"r" not in r.xrange("cg:{t:default}:in", entry, entry)[0][1]
    # the agent's close is processed first (as another router would), then this router starts
    now = int(r.time()[0]) * 1000
    assert s(r.fcall("cg_close", 1, "cg:{t:default}", conv, "alice", "resolved", now)[0]) == "closed"
    r.fcall("cg_after_close", 1, "cg:{t:default}", conv, now + 60000, 0)
    procs.router(env)

    def processed():
        g = [g for g in r.xinfo_groups("cg:{t:default}:in") if s(g["name"]) == "routers"][0]
        last = s(g["last-delivered-id"])
        done = tuple(map(int, last.split("-"))) >= tuple(map(int, s(entry).split("-")))
        return done and not r.xpending_range("cg:{t:default}:in", "routers", entry, entry, 1)
    wait_until(processed, 10, "the digit's entry processed")
    h = conv_hash(r, conv)
    assert "rating" not in h
    assert not [m for m in log_of(r, conv) if m["type"] == "rating"]
    assert not [m for m in outbound(r, "email", conv) if (m.get("text") or "").startswith("THANKS")]
    # an answer after the close is the rating
    assert post_mail(gw, "4", frm="qian@example.com", subject="Re: Order") == 200
    wait_until(lambda: conv_hash(r, conv).get("rating") == "4", 5, "rating stored")
    wait_until(lambda: [m for m in outbound(r, "email", conv) if m.get("text") == "THANKS 4"], 5,
               "thanks mailed")


def test_spam_close_sends_no_survey(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw)
        conv = (await c.say("buy cheap watches"))["conv"]
        await a.expect_type("assigned", conv=conv)
        await close_conv(a, conv, "spam")
        await c.expect_type("closed", conv=conv)
        # the next conversation's close is surveyed: everything of the first was written by then
        c2 = await customer(gw)
        conv2 = (await c2.say("a real question"))["conv"]
        await a.expect_type("assigned", conv=conv2)
        await close_conv(a, conv2, "resolved")
        await c2.expect_type("survey", conv=conv2)
        assert not [m for m in log_of(r, conv) if m["type"] == "survey"]
        assert conv_hash(r, conv).get("survey_until", "0") == "0"
        # so a "rating" for it is refused: no survey to answer
        await c.send({"type": "rating", "rating": 5, "conv": conv, "cmid": "rate-spam"})
        err = await c.expect(lambda f: f.get("cmid") == "rate-spam", what="rating refused")
        assert err["type"] == "error" and err["code"] == "closed"
        for x in (a, c, c2):
            await x.close()
    run(scenario())


# ---- the customer ends the conversation ("End chat") ---------------------------------------------

def test_customer_leaves_the_queue_abandoned(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        c = await customer(gw)
        # nothing to end yet
        await c.send({"type": "close", "cmid": "end-0"})
        err = await c.expect(lambda f: f.get("cmid") == "end-0", what="refusal")
        assert (err["type"], err["code"]) == ("error", "closed")
        conv = (await c.say("is anyone there?"))["conv"]
        wait_until(lambda: conv_hash(r, conv).get("state") == "queued", 5, "queued")
        await c.send({"type": "close", "cmid": "end-1"})
        # the ack and the closed event travel different paths: either may come first
        _, closed = await c.expect_unordered(
            lambda f: f.get("cmid") == "end-1" and f["type"] == "ack",
            lambda f: f.get("type") == "closed" and f.get("conv") == conv, what="ack and closed")
        assert closed["code"] == "abandoned"
        h = conv_hash(r, conv)
        assert (h["state"], h["resolution"], h["closed_by"]) == ("closed", "abandoned", "customer")
        assert r.zscore("cg:{t:default}:queue:general", conv) is None
        assert r.zscore("cg:{t:default}:timers", f"pos:{conv}") is None
        assert s(r.hget("cg:{t:default}:kpi:queue:general", "abandoned")) == "1"
        assert not [m for m in log_of(r, conv) if m["type"] == "survey"]
        # an agent coming online later gets nothing from it
        a = await agent(gw, procs.agent_token("alice", "Alice"))
        await a.expect(lambda f: f.get("type") == "queue" and f.get("queue") == "general",
                       what="queue snapshot")
        assert s(r.hget("cg:{t:default}:agent:alice", "load")) in (None, "0")
        assert conv_hash(r, conv)["state"] == "closed"
        for x in (a, c):
            await x.close()
    run(scenario())


def test_customer_ends_an_assigned_conversation(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        a = await agent(gw, procs.agent_token("alice", "Alice"))
        c = await customer(gw)
        conv = (await c.say("where is my parcel"))["conv"]
        await a.expect_type("assigned", conv=conv)
        assert (await a.say("It ships today.", conv=conv))["type"] == "ack"
        await c.send({"type": "close", "cmid": "end-1", "code": "whatever"})
        closed = await c.expect_type("closed", conv=conv)
        assert closed["code"] == "customer_left"  # the gateway sets it, not the client
        await c.expect_type("survey", conv=conv)
        await a.expect(lambda f: f.get("type") == "text" and f.get("role") == "system"
                       and "customer ended" in f.get("text", ""), what="notice to the agent")
        h = conv_hash(r, conv)
        assert (h["resolution"], h["closed_by"]) == ("customer_left", "customer")
        assert s(r.hget("cg:{t:default}:agent:alice", "load")) == "0"
        assert not r.sismember("cg:{t:default}:agent:alice:convs", conv)
        # answered before it ended: closed, not abandoned
        assert s(r.hget("cg:{t:default}:kpi:queue:general", "closed")) == "1"
        assert r.hget("cg:{t:default}:kpi:queue:general", "abandoned") in (None, b"0")
        # the agent may no longer write there
        assert (await a.say("hello?", conv=conv))["type"] == "error"
        for x in (a, c):
            await x.close()
    run(scenario())


# ---- idle auto-close ------------------------------------------------------------------------------

def test_idle_conversation_closed_no_response(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path, idle=1)
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw)
        conv = (await c.say("hello?"))["conv"]
        await a.expect_type("assigned", conv=conv)
        assert r.zscore("cg:{t:default}:timers", f"idle:{conv}") is not None
        idle = await c.expect(lambda f: f.get("type") == "text" and
                              f.get("text", "").startswith("IDLE"), 10, "idle notice")
        assert idle["text"] == "IDLE 1 min"
        closed = await c.expect_type("closed", conv=conv)
        assert closed["code"] == "no_response"
        await c.expect_type("survey", conv=conv)
        notice = await a.expect(lambda f: f.get("type") == "text" and f.get("role") == "system"
                                and "no_response" in f.get("text", ""), 10, "agent notice")
        assert notice["conv"] == conv
        h = conv_hash(r, conv)
        assert (h["state"], h["resolution"]) == ("closed", "no_response")
        assert s(r.hget("cg:{t:default}:agent:alice", "load")) == "0"
        assert r.zscore("cg:{t:default}:timers", f"idle:{conv}") is None
        for x in (a, c):
            await x.close()
    run(scenario())


def test_messages_move_the_idle_close(procs, redis_srv, tmp_path):
    """The idle timer armed at the assignment stays where it is while both sides write (no write
    per message: a timer that fires early reads the log's last message); a close drops it."""
    r = redis_srv.r
    gw = desk(procs, tmp_path, idle=60)
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw)
        conv = (await c.say("hello"))["conv"]
        await a.expect_type("assigned", conv=conv)
        first = wait_until(lambda: r.zscore("cg:{t:default}:timers", f"idle:{conv}"), 5, "idle armed")
        await a.say("hi, how can I help?", conv=conv)
        await c.expect(lambda f: f.get("text") == "hi, how can I help?", what="the reply")
        assert r.zscore("cg:{t:default}:timers", f"idle:{conv}") == first
        await close_conv(a, conv, "spam")
        await c.expect_type("closed", conv=conv, code="spam")
        wait_until(lambda: r.zscore("cg:{t:default}:timers", f"idle:{conv}") is None, 5, "idle dropped")
        for x in (a, c):
            await x.close()
    run(scenario())


def test_an_idle_timer_that_fires_early_rearms_itself(redis_srv):
    """The Redis functions alone, with an injected clock: the timer armed at the assignment fires
    while a message came since; it is armed again idle_close_s after that message, and then
    closes the conversation."""
    r = redis_srv.r
    load_libraries(r)
    t, now, idle_ms = "cg:{t:default}", 1_800_000_000_000, 60_000
    r.fcall("cg_deskcfg", 1, t, "ready", "1", "first_s:web", "0", "next_s:web", "0",
            "idle_close_s", str(idle_ms // 1000))
    r.fcall("cg_presence", 1, t, "amy", "gw1:1", 1, "Amy", 1, "general", now)
    conv = "c-idle"
    r.hset(f"{t}:conv:{conv}", mapping={"state": "new", "customer": "cu", "channel": "web",
                                        "created": now, "seq": 0})
    r.fcall("cg_enqueue", 1, t, conv, "general", 5, now)
    assert conv_hash(r, conv)["agent"] == "amy"
    r.zadd(f"{t}:timers", {f"idle:{conv}": now + idle_ms})  # as the router arms it
    m = {"v": 1, "type": "text", "id": "m1", "cmid": "a1", "channel": "web", "dir": "out",
         "role": "agent", "sender_id": "amy", "ts": now + 30_000, "text": "still there?"}
    store(r, conv, "a1", "agent", "amy", msgpack.packb(m), "", "web",
            now + 30_000, "log", "")

    def fire(at):
        kind, claimed = named(r.fcall("cg_timer_claim", 1, t, msgpack.packb(
            {"now": at, "lease": 5000, "limit": 10})))
        [member], lease = claimed["members"], claimed["lease"]
        return r.fcall("cg_close_fire", 1, t, member, lease, at, "", "")

    assert [s(x) for x in fire(now + idle_ms)] == ["done"]
    assert r.zscore(f"{t}:timers", f"idle:{conv}") == now + 30_000 + idle_ms
    assert conv_hash(r, conv)["state"] == "assigned"
    closed = fire(now + 30_000 + idle_ms)
    assert s(closed[0]) == "idle" and conv_hash(r, conv)["resolution"] == "no_response"


# ---- complaint follow-up ------------------------------------------------------------------------

def test_resolved_complaint_gets_followup_task(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path, followup=1)
    token = procs.agent_token("cara", "Cara", skills=("complaints",))

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw)
        conv = (await c.say("I want to file a complaint"))["conv"]
        ticket = wait_until(lambda: conv_hash(r, conv).get("ticket"), 5, "ticket")
        await a.send({"type": "pick", "conv": conv, "cmid": new_cmid("pick")})
        await a.expect_type("assigned", conv=conv)
        await close_conv(a, conv, "resolved")
        await c.expect_type("closed", conv=conv)
        # a second later the follow-up task waits in the complaints queue, shown to agents
        snap = await a.expect(lambda f: f.get("type") == "queue" and any(
            "Follow-up" in i.get("preview", "") for i in f.get("items", [])), 10, "follow-up")
        [item] = [i for i in snap["items"] if "Follow-up" in i.get("preview", "")]
        task = item["conv"]
        assert item["preview"] == f"Follow-up {ticket}" and item["priority"] == 9
        h = conv_hash(r, task)
        assert (h["state"], h["queue"], h["followup_of"], h["followup_ticket"]) == \
            ("queued", "complaints", conv, ticket)
        assert h["customer"] == conv_hash(r, conv)["customer"] and "ticket" not in h
        assert conv_hash(r, conv)["followup_conv"] == task
        # it is the customer's current conversation now: the live session is moved there by the
        # closed one's followup event, and the task opens with the text followup
        assert s(r.hget(f"cg:{{t:default}}:cust:{c.welcome['sender_id']}", "conv")) == task
        ev = await c.expect_type("followup", conv=conv)
        assert "text" not in ev
        hello = await c.expect(lambda f: f.get("conv") == task and f.get("type") == "text",
                               what="the follow-up's first text")
        assert hello["role"] == "bot" and hello["seq"] == 1
        assert hello["text"] == f"We are following up on your complaint {ticket}. " \
                                "An agent will continue with you here."
        # the agent picks it and writes: the customer gets it, and its answer goes there too
        await a.send({"type": "pick", "conv": task, "cmid": new_cmid("pick")})
        await a.expect_type("assigned", conv=task)
        ack = await a.say("We are following up on your complaint.", conv=task)
        assert ack["type"] == "ack"
        got = await c.expect(lambda f: f.get("conv") == task and f.get("role") == "agent",
                             what="the agent's follow-up at the customer")
        assert got["text"] == "We are following up on your complaint."
        assert (await c.say("thanks, all good now"))["conv"] == task
        # closing the follow-up (no ticket of its own) queues nothing more
        await close_conv(a, task, "resolved")
        wait_until(lambda: conv_hash(r, task).get("state") == "closed", 5, "task closed")
        assert r.zscore("cg:{t:default}:timers", f"followup:{task}") is None
        for x in (a, c):
            await x.close()
    run(scenario())


def test_unresolved_or_plain_close_queues_no_followup(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path, followup=3600)
    token = procs.agent_token("cara", "Cara", skills=("complaints", "general"), cap=2)

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw)
        conv = (await c.say("complaint about billing"))["conv"]
        wait_until(lambda: conv_hash(r, conv).get("ticket"), 5, "ticket")
        await a.send({"type": "pick", "conv": conv, "cmid": new_cmid("pick")})
        await a.expect_type("assigned", conv=conv)
        await close_conv(a, conv, "resolved")
        await c.expect_type("closed", conv=conv)
        wait_until(lambda: r.zscore("cg:{t:default}:timers", f"followup:{conv}"), 5, "follow-up armed")
        c2 = await customer(gw)
        conv2 = (await c2.say("just a question"))["conv"]
        await a.expect_type("assigned", conv=conv2)
        await close_conv(a, conv2, "resolved")
        await c2.expect_type("closed", conv=conv2)
        assert r.zscore("cg:{t:default}:timers", f"followup:{conv2}") is None  # not a complaint
        for x in (a, c, c2):
            await x.close()
    run(scenario())
