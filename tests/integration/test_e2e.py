"""End to end: real redis-server, real gateway and router binaries, real WebSocket clients."""
import asyncio
import json
import signal
import urllib.error
import urllib.request

import msgpack
import pytest

from chat import MSGPACK, Client, agent, customer, new_cmid
from conftest import wait_until
from desk import run


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def is_text(role=None, **kw):
    return lambda f: f.get("type") == "text" and (role is None or f.get("role") == role) and \
        all(f.get(k) == v for k, v in kw.items())


@pytest.fixture
def desk(procs):
    """One gateway and one router."""
    gw = procs.gateway()
    procs.router()
    return gw


def test_healthz_follows_redis(procs, redis_srv):
    gw = procs.gateway()
    code, body = http_get(gw.base + "/healthz")
    assert code == 200 and json.loads(body)["redis"] == "up"
    redis_srv.kill()
    wait_until(lambda: http_get(gw.base + "/healthz")[0] == 503, 10, "healthz 503")
    assert json.loads(http_get(gw.base + "/healthz")[1])["status"] == "unavailable"
    redis_srv.start()
    wait_until(lambda: http_get(gw.base + "/healthz")[0] == 200, 15, "healthz 200 again")


def test_static_pages_served(desk):
    code, body = http_get(desk.base + "/")
    assert code == 200 and "<html" in body.lower()
    code, body = http_get(desk.base + "/agent/")
    assert code == 200 and "<html" in body.lower()


def test_customer_agent_full_scenario(desk, procs):
    """An honest auto-reply while nobody is online, assignment on login, replies both ways,
    capacity 1: the second customer waits with its position and is assigned the instant the
    first conversation closes."""
    token = procs.agent_token("alice", "Alice", cap=1)

    async def scenario():
        c1 = await customer(desk, sender_name="Wang")
        assert c1.welcome["token"] and c1.welcome["sender_id"]
        ack = await c1.say("Hello, where is my order 12345?")
        assert ack["type"] == "ack" and ack["seq"] == 1
        conv1 = ack["conv"]
        # greeting, then (nobody online) no queue position but the honest no_agent reply
        await c1.expect(lambda f: f.get("type") == "text" and f.get("role") in ("system", "bot"),
                        what="greeting")
        na = await c1.expect(lambda f: f.get("type") == "text" and f.get("role") == "bot"
                             and f.get("queue") == "general", what="no_agent reply")
        assert na["text"].startswith("Nobody who can help") and "position" not in na

        a = await agent(desk, token)
        asg = await a.expect_type("assigned", conv=conv1)
        assert asg["agent_id"] == "alice"
        first = await a.expect(is_text(role="customer", conv=conv1), what="customer text")
        assert first["text"] == "Hello, where is my order 12345?" and first["seq"] == 1
        await c1.expect_type("assigned", agent_id="alice")

        r = await a.say("It ships today.", conv=conv1)
        assert r["type"] == "ack", r
        got = await c1.expect(is_text(role="agent"), what="agent reply")
        assert got["text"] == "It ships today." and got["sender_name"] == "Alice"
        await c1.say("Thanks!")
        await a.expect(is_text(role="customer", text="Thanks!"), what="customer reply")

        # capacity 1: a second customer waits with position 1
        c2 = await customer(desk)
        ack2 = await c2.say("I need help too")
        conv2 = ack2["conv"]
        assert conv2 != conv1
        pos2 = await c2.expect(lambda f: f.get("type") == "text" and f.get("position"),
                               what="position of second customer")
        assert pos2["position"] == 1
        assert not [f for f in a.frames if f.get("type") == "assigned" and f.get("conv") == conv2]

        # closing the first frees the slot: the second is assigned at once
        await a.send({"type": "close", "conv": conv1, "code": "resolved", "cmid": new_cmid()})
        await c1.expect_type("closed")
        await a.expect_type("assigned", conv=conv2)
        await c2.expect_type("assigned", agent_id="alice")
        await a.expect(is_text(role="customer", conv=conv2, text="I need help too"))
        for c in (c1, c2, a):
            await c.close()

    run(scenario())


def test_resume_without_gap_or_duplicate(desk, procs):
    token = procs.agent_token("bob", cap=2)

    async def scenario():
        a = await agent(desk, token)
        c = await customer(desk)
        ack = await c.say("first")
        conv = ack["conv"]
        await a.expect_type("assigned", conv=conv)
        await a.say("reply 1", conv=conv)
        await c.expect(is_text(role="agent", text="reply 1"))
        last = max(f["seq"] for f in c.logged(conv))
        tok = c.welcome["token"]
        await c.close()
        # while the customer is away
        for i in range(2, 6):
            r = await a.say(f"reply {i}", conv=conv)
            assert r["type"] == "ack"
        c2 = await customer(desk, token=tok, conv=conv, last_seq=last)
        assert c2.welcome["conv"] == conv and c2.welcome["sender_id"] == c.welcome["sender_id"]
        await c2.expect(is_text(role="agent", text="reply 5"))
        seqs = [f["seq"] for f in c2.logged(conv)]
        assert seqs == list(range(last + 1, last + 1 + len(seqs))), seqs
        assert [f["text"] for f in c2.logged(conv) if f.get("role") == "agent"] == \
            [f"reply {i}" for i in range(2, 6)]
        # a fresh tab without last_seq gets the whole transcript, in order
        c3 = await customer(desk, token=tok)
        await c3.expect(is_text(role="agent", text="reply 5"))
        assert [f["seq"] for f in c3.logged(conv)] == list(range(1, seqs[-1] + 1))
        for x in (a, c2, c3):
            await x.close()

    run(scenario())


def test_resend_same_cmid_is_not_duplicated(desk, redis_srv):
    async def scenario():
        c = await customer(desk)
        a1 = await c.say("once", cmid="same-1")
        a2 = await c.say("once", cmid="same-1")
        assert a1["seq"] == a2["seq"] and a1["conv"] == a2["conv"]
        n = redis_srv.r.xlen(f"cg:{{t:default}}:conv:{a1['conv']}:log")
        texts = [f for f in c.frames if f.get("type") == "text" and f.get("text") == "once"]
        await c.close()
        return a1["conv"], n, texts

    conv, n, _ = run(scenario())
    entries = redis_srv.r.xrange(f"cg:{{t:default}}:conv:{conv}:log")
    customer_entries = [e for e in entries if b"once" in e[1][b"m"]]
    assert len(customer_entries) == 1


def test_stored_customer_message_leaves_out_its_customer_id(desk, procs, redis_srv):
    """A customer's identity.customer_id equals its sender_id: the log entry leaves it out (34
    bytes of every customer message on disk), and the agent, a resumed customer tab and
    chatgw-export still get it, with the rest of the identity as the widget said it."""
    token = procs.agent_token("dana")

    async def scenario():
        c = await customer(desk, identity={"order_no": "A-7", "locale": "en"})
        ack = await c.say("where is my parcel")
        a = await agent(desk, token)
        f = await a.expect(is_text(role="customer", conv=ack["conv"]))
        c2 = await customer(desk, token=c.welcome["token"])
        g = await c2.expect(is_text(role="customer", text="where is my parcel"))
        for x in (a, c, c2):
            await x.close()
        return ack["conv"], c.welcome["sender_id"], f, g

    conv, sender, f, g = run(scenario())
    for got in (f, g):
        assert got["sender_id"] == sender
        assert got["identity"] == {"customer_id": sender, "order_no": "A-7", "locale": "en"}
    entries = redis_srv.r.xrange(f"cg:{{t:default}}:conv:{conv}:log")
    stored = [msgpack.unpackb(e[1][b"m"]) for e in entries]
    mine = [i for i, m in enumerate(stored) if m.get("text") == "where is my parcel"]
    assert len(mine) == 1 and stored[mine[0]]["identity"] == {"order_no": "A-7", "locale": "en"}
    assert entries[mine[0]][1][b"m"].count(sender.encode()) == 1  # sender_id only


def test_msgpack_subprotocol(desk, procs):
    token = procs.agent_token("carol")

    async def scenario():
        c = await customer(desk, proto=MSGPACK)
        assert c.ws.subprotocol == MSGPACK
        ack = await c.say("你好，我的订单还没到")
        a = await agent(desk, token, proto=MSGPACK)
        f = await a.expect(is_text(role="customer", conv=ack["conv"]))
        assert f["text"] == "你好，我的订单还没到"
        await c.close()
        await a.close()

    run(scenario())


def test_bad_input_gets_clear_errors_and_others_unaffected(desk, procs):
    token = procs.agent_token("dave", cap=5)

    async def scenario():
        bystander = await customer(desk)
        a = await agent(desk, token)
        b_ack = await bystander.say("I am a normal customer")
        await a.expect_type("assigned", conv=b_ack["conv"])

        x = await Client.connect(desk.ws, "/ws/customer")
        await x.send({"type": "text", "text": "no hello"})
        assert (await x.expect_type("error"))["code"] == "hello_required"
        await x.hello()
        await x.send_raw("{not json")
        assert (await x.expect_type("error"))["code"] == "bad_json"
        await x.send({"type": "teleport"})
        e = await x.expect_type("error")
        assert e["code"] == "bad_type"
        await x.send({"type": "text", "cmid": "m1"})
        e = await x.expect_type("error", cmid="m1")
        assert e["code"] == "missing_field" and "text" in e["text"]
        await x.send({"type": "pick", "conv": "x", "cmid": "m2"})
        assert (await x.expect_type("error", cmid="m2"))["code"] == "bad_type"
        await x.send({"type": "text", "cmid": "m3", "text": "x" * 40000})
        assert (await x.expect_type("error", cmid="m3"))["code"] == "too_large"
        await x.send({"type": "text", "cmid": "m4", "text": 5})
        assert (await x.expect_type("error", cmid="m4"))["code"] == "bad_value"
        # still usable after all that
        ok = await x.say("still here")
        assert ok["type"] == "ack"

        # invalid UTF-8 in a text frame: RFC 6455 close 1007
        y = await Client.connect(desk.ws, "/ws/customer")
        await y.hello()
        await y.ws.ensure_open()
        await y.ws.write_frame(True, 0x1, b'{"type":"text","text":"\xff\xfe"}')
        assert (await y.expect_closed()).code == 1007

        # too big: close 1009
        z = await Client.connect(desk.ws, "/ws/customer")
        await z.hello()
        await z.send_raw("a" * 70000)
        assert (await z.expect_closed()).code == 1009

        # msgpack garbage
        m = await Client.connect(desk.ws, "/ws/customer", MSGPACK)
        await m.hello()
        await m.send_raw(b"\xc1\xff\x00")
        assert (await m.expect_type("error"))["code"] == "bad_msgpack"

        # bad agent token: error then close 1008
        bad = await Client.connect(desk.ws, "/ws/agent")
        await bad.send({"type": "hello", "token": token[:-4] + "AAAA"})
        assert (await bad.expect_type("error"))["code"] == "bad_token"
        assert (await bad.expect_closed()).code == 1008

        # flood: rate_limited with retry
        f = await Client.connect(desk.ws, "/ws/customer")
        await f.hello()
        for i in range(120):
            await f.send({"type": "typing"})
        e = await f.expect_type("error", code="rate_limited")
        assert e["retry"] is True

        # the bystander's conversation carried on throughout
        r = await a.say("still serving you", conv=b_ack["conv"])
        assert r["type"] == "ack"
        await bystander.expect(is_text(role="agent", text="still serving you"))
        for c in (bystander, a, x, m, f):
            await c.close()

    run(scenario())


def test_expired_agent_token_refused(desk, procs):
    import jwt as pyjwt
    import time
    from conftest import JWT_SECRET
    tok = pyjwt.encode({"role": "agent", "sub": "eve", "exp": int(time.time()) - 10},
                       JWT_SECRET, algorithm="HS256")
    none_tok = pyjwt.encode({"role": "agent", "sub": "eve"}, None, algorithm="none")

    async def scenario():
        for t, code in ((tok, "expired_token"), (none_tok, "bad_token")):
            c = await Client.connect(desk.ws, "/ws/agent")
            await c.send({"type": "hello", "token": t})
            assert (await c.expect_type("error"))["code"] == code
            assert (await c.expect_closed()).code == 1008

    run(scenario())


def test_redis_down_retryable_then_recovers(procs, redis_srv):
    gw = procs.gateway()
    procs.router()

    async def scenario():
        c = await customer(gw)
        await c.say("before")
        redis_srv.kill()
        wait_until(lambda: http_get(gw.base + "/healthz")[0] == 503, 10, "gateway sees redis down")
        await c.send({"type": "text", "cmid": "during-1", "text": "during"})
        e = await c.expect_type("error", cmid="during-1")
        assert e["code"] == "unavailable" and e["retry"] is True
        redis_srv.start()
        wait_until(lambda: http_get(gw.base + "/healthz")[0] == 200, 15, "gateway reconnects")
        ack = await c.say("during", cmid="during-1")
        assert ack["type"] == "ack" and ack["seq"] >= 1
        await c.close()

    run(scenario())


def test_origin_allowlist(procs):
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": "https://shop.example"})

    async def scenario():
        ok = await Client.connect(gw.ws, "/ws/customer", origin="https://shop.example")
        await ok.hello()
        same = await Client.connect(gw.ws, "/ws/customer", origin=gw.base)
        await same.hello()
        with pytest.raises(Exception):
            await Client.connect(gw.ws, "/ws/customer", origin="https://evil.example")
        with pytest.raises(Exception):
            await Client.connect(gw.ws, "/ws/nowhere")
        await ok.close()
        await same.close()

    run(scenario())


def test_two_gateways_relay(procs):
    gw1 = procs.gateway()
    gw2 = procs.gateway()
    procs.router()
    token = procs.agent_token("frank")

    async def scenario():
        c = await customer(gw1)
        a = await agent(gw2, token)
        ack = await c.say("across gateways")
        await a.expect_type("assigned", conv=ack["conv"])
        await a.expect(is_text(role="customer", text="across gateways"))
        await a.say("answer from gw2", conv=ack["conv"])
        await c.expect(is_text(role="agent", text="answer from gw2"))
        await c.close()
        await a.close()

    run(scenario())


def test_clean_shutdown(procs):
    gw = procs.gateway()
    r = procs.router()
    token = procs.agent_token("gina")

    async def scenario():
        c = await customer(gw)
        a = await agent(gw, token)
        await c.say("hello")
        # the gateway stops with both connections open: it closes them (1001 going away)
        assert await asyncio.to_thread(gw.stop, signal.SIGTERM) == 0
        for x in (c, a):
            closed = await x.expect_closed()
            assert closed.code == 1001, closed

    run(scenario())
    assert "clean shutdown" in gw.text()
    assert r.stop(signal.SIGTERM) == 0


def test_agent_connecting_while_redis_down_is_announced_when_it_returns(procs, redis_srv):
    gw = procs.gateway()
    procs.router()
    token = procs.agent_token("hana")
    redis_srv.kill()
    wait_until(lambda: http_get(gw.base + "/healthz")[0] == 503, 10, "gateway sees redis down")

    async def scenario():
        a = await agent(gw, token)  # welcome needs no Redis
        redis_srv.start()
        wait_until(lambda: http_get(gw.base + "/healthz")[0] == 200, 15, "gateway reconnects")
        c = await customer(gw)
        ack = await c.say("anyone there?")
        await a.expect_type("assigned", conv=ack["conv"], timeout=15)
        await a.expect(is_text(role="customer", text="anyone there?"))
        await c.close()
        await a.close()

    run(scenario())


def test_agent_sees_live_queue_and_picks(desk, procs):
    """Away agents get nothing pushed; they see the waiting list change live and can pick."""
    token = procs.agent_token("ivy", "Ivy", cap=2)

    async def scenario():
        a = await agent(desk, token)
        await a.expect_type("queue", queue="general")  # the snapshot after welcome
        await a.send({"type": "presence", "code": "away", "cmid": "p1"})
        await a.expect_type("ack", cmid="p1")
        c = await customer(desk)
        ack = await c.say("Do you ship to Hangzhou?")
        conv = ack["conv"]
        snap = await a.expect(lambda f: f.get("type") == "queue" and any(
            i["conv"] == conv for i in f.get("items", [])), what="queue with the new conversation")
        item = next(i for i in snap["items"] if i["conv"] == conv)
        assert item["position"] == 1 and item["channel"] == "web"
        assert item["preview"].startswith("Do you ship") and item["since"] > 0
        assert not [f for f in a.frames if f.get("type") == "assigned"]  # away: nothing pushed
        await a.send({"type": "pick", "conv": conv, "cmid": "k1"})
        seen = set()  # the assignment and the queue update may arrive in either order

        def assigned_and_dequeued(f):
            if f.get("type") == "assigned" and f.get("conv") == conv:
                seen.add("assigned")
            if f.get("type") == "queue" and not any(i["conv"] == conv for i in f.get("items", [])):
                seen.add("dequeued")
            return len(seen) == 2
        await a.expect(assigned_and_dequeued, what="assigned, and a queue without it")
        await c.expect_type("assigned", agent_id="ivy")
        # picking it again fails with a reason
        await a.send({"type": "pick", "conv": conv, "cmid": "k2"})
        e = await a.expect_type("error", cmid="k2")
        assert e["code"] == "pick_failed"
        await c.close()
        await a.close()

    run(scenario())


def test_customer_cannot_claim_a_tier(desk, redis_srv):
    import msgpack

    async def scenario():
        c = await customer(desk, identity={"tier": "vip", "order_no": "A-1001", "locale": "zh-CN"})
        ack = await c.say("我的订单怎么还没发货")
        await c.close()
        return ack["conv"]

    conv = run(scenario())
    entry = redis_srv.r.xrange(f"cg:{{t:default}}:conv:{conv}:log", "1-0", "1-0")[0]
    identity = msgpack.unpackb(entry[1][b"m"], raw=False)["identity"]
    assert identity.get("order_no") == "A-1001" and identity.get("locale") == "zh-CN"
    assert "tier" not in identity


def test_burst_of_assignments_with_a_full_send_queue(procs):
    """Many conversations assigned at once to an agent whose send queue is tiny: notices may be
    dropped, but every conversation is followed and every customer message arrives (from the
    log). Found by make bench at 500 customers."""
    gw = procs.gateway({"CHATGW_SEND_QUEUE_MAX": 8})
    procs.router()
    token = procs.agent_token("max", cap=30)

    async def scenario():
        texts = []
        for i in range(20):
            c = await customer(gw)
            await c.say(f"burst {i}")
            texts.append(f"burst {i}")
            await c.close()
        a = await agent(gw, token)  # all 20 are assigned at once
        got = set()
        await a.expect(lambda f: (f.get("type") == "text" and f.get("role") == "customer"
                                  and got.add(f["text"])) or got == set(texts),
                       timeout=20, what="all 20 customer messages")
        await a.close()

    run(scenario())
