"""Routing beyond the least-loaded agent, end to end (real redis-server, gateway, router and
WebSocket clients), with short configured durations: transfer to an agent or a queue with a note
(which only the desk sees), re-classification by an agent, offer timeout (reassignment, notices,
away after N misses), sticky return to the last agent, and overflow into other queues after
overflow_after_s.

Run: BUILD=build/h-route /usr/bin/python3 -m pytest -q tests/integration/test_routing.py
"""
import asyncio

import msgpack
import pytest

from chat import agent, customer, new_cmid
from conftest import wait_until
from desk import Monitor, conv_hash, log_of, run, s
from test_close import MAIL_TOKEN, outbound, post_mail

CONFIG = """
[router]
default_queue = general
default_locale = en
timer_tick_ms = 50
sla_first_response_s = chat:0, email:0
sla_next_response_s = chat:0, email:0
idle_close_s = 0
survey_window_s = 0
offer_timeout_s = {offer}
offer_max_misses = 2
sticky_window_s = {sticky}

[queue general]
mode = push

[queue tech_support]
mode = push
overflow = general
overflow_after_s = {after}

[queue complaints]
mode = pull

[rule tech]
queue = tech_support
keywords = router
order = 1

[rule complaint]
queue = complaints
complaint_class = serious
keywords = complaint
order = 2

[rule faq]
queue = general
keywords = faq
order = 3

[templates en]
complaint_ack = TICKET {{ticket}}
"""


def desk(procs, tmp_path, offer=0, sticky=86400, after=3600):
    path = tmp_path / "routing.ini"
    path.write_text(CONFIG.format(offer=offer, sticky=sticky, after=after), encoding="utf-8")
    gw = procs.gateway({"CHATGW_EMAIL_TOKEN": MAIL_TOKEN})
    procs.router({"CHATGW_CONFIG": str(path), "CHATGW_BLOCK_MS": 200})
    return gw


def notice(conv=None, contains=""):
    return lambda f: (f.get("type") == "text" and f.get("role") == "system"
                      and (conv is None or f.get("conv") == conv) and contains in f.get("text", ""))


async def wait_online(r, agent_id):
    """Poll (bounded) until the router processed the agent's connect."""
    for _ in range(1000):
        if s(r.hget(f"cg:{{t:default}}:agent:{agent_id}", "status")) == "online":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{agent_id} not online")


async def online(gw, procs, agent_id, skills=("general",), cap=1):
    """An agent connected and known online by the router."""
    a = await agent(gw, procs.agent_token(agent_id, skills=skills, cap=cap))
    await wait_online(procs.redis.r, agent_id)
    return a


# ---- transfer ---------------------------------------------------------------------------------

def test_transfer_to_agent_and_queue_with_note(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        alice = await online(gw, procs, "alice", cap=2)
        c = await customer(gw)
        conv = (await c.say("I want to change my address"))["conv"]
        await alice.expect_type("assigned", conv=conv)

        bob = await online(gw, procs, "bob", cap=2)
        tina = await online(gw, procs, "tina", skills=("tech_support",))
        # to an agent, with a note
        await alice.send({"type": "transfer", "conv": conv, "agent_id": "bob",
                          "text": "VIP, address in Hangzhou", "cmid": "t1"})
        await alice.expect_type("ack", cmid="t1")
        await bob.expect_type("assigned", conv=conv, agent_id="bob")
        # the new agent reads the note in the transcript; the customer sees only who took over
        ev = await bob.expect_type("transferred", conv=conv)
        assert ev["agent_id"] == "bob" and ev["text"] == "VIP, address in Hangzhou"
        ev = await c.expect_type("transferred", conv=conv)
        assert ev["agent_name"] == "bob" and "text" not in ev and "agent_id" not in ev
        h = conv_hash(r, conv)
        assert h["state"] == "assigned" and h["agent"] == "bob" and h["prev_agent"] == "alice"
        assert s(r.hget("cg:{t:default}:agent:alice", "load")) == "0"
        assert not r.sismember("cg:{t:default}:agent:alice:convs", conv)
        # the old agent may no longer write, the new one may
        err = await alice.say("still there?", conv=conv)
        assert err["type"] == "error"
        assert (await bob.say("Hello, I take over", conv=conv))["type"] == "ack"

        # to a queue: its available agent gets it, the note is in the transcript
        await bob.send({"type": "transfer", "conv": conv, "queue": "tech_support",
                        "text": "router question", "cmid": "t2"})
        await tina.expect_type("assigned", conv=conv, agent_id="tina")
        ev = await c.expect_type("transferred", conv=conv, queue="tech_support")
        assert "text" not in ev
        ev = await tina.expect_type("transferred", conv=conv, queue="tech_support")
        assert ev["text"] == "router question"
        h = conv_hash(r, conv)
        assert h["queue"] == "tech_support" and h["agent"] == "tina" and h["prev_agent"] == "bob"
        assert s(r.hget("cg:{t:default}:agent:bob", "load")) == "0"
        types = [m["type"] for m in log_of(r, conv)]
        assert types.count("transferred") == 2 and types.count("assigned") == 3
        notes = [m.get("text") for m in log_of(r, conv) if m["type"] == "transferred"]
        assert notes == ["VIP, address in Hangzhou", "router question"]

        # to an offline agent: refused, nothing changes
        await tina.send({"type": "transfer", "conv": conv, "agent_id": "carol", "cmid": "t3"})
        e = await tina.expect_type("error", cmid="t3")
        assert e["code"] == "transfer_failed" and "carol is not online" in e["text"]
        assert e["conv"] == conv
        assert conv_hash(r, conv)["agent"] == "tina"
        # a conversation that is not yours
        await alice.send({"type": "transfer", "conv": conv, "agent_id": "bob", "cmid": "t4"})
        e = await alice.expect_type("error", cmid="t4")
        assert e["code"] == "not_assigned"
        # without a target: refused by the gateway
        await tina.send({"type": "transfer", "conv": conv, "cmid": "t5"})
        e = await tina.expect_type("error", cmid="t5")
        assert e["code"] == "missing_field"
        for x in (alice, bob, tina, c):
            await x.close()

    run(scenario())


def test_transfer_to_queue_without_agents_waits_at_its_priority(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        alice = await online(gw, procs, "alice", cap=2)
        c1 = await customer(gw)
        conv1 = (await c1.say("question one"))["conv"]
        await alice.expect_type("assigned", conv=conv1)
        await alice.send({"type": "transfer", "conv": conv1, "queue": "tech_support",
                          "cmid": "t1"})
        await c1.expect_type("transferred", queue="tech_support")
        wait_until(lambda: r.zscore("cg:{t:default}:queue:tech_support", conv1) is not None, 5,
                   "conversation waiting in tech_support")
        h = conv_hash(r, conv1)
        assert h["state"] == "queued" and "agent" not in h
        # the freed slot still serves the agent's own queue, never this conversation back
        c2 = await customer(gw)
        conv2 = (await c2.say("question two"))["conv"]
        await alice.expect_type("assigned", conv=conv2)
        assert conv_hash(r, conv1)["state"] == "queued"
        # an unknown queue is refused
        await alice.send({"type": "transfer", "conv": conv2, "queue": "nope", "cmid": "t2"})
        e = await alice.expect_type("error", cmid="t2")
        assert e["code"] == "transfer_failed" and "nope" in e["text"]
        for x in (alice, c1, c2):
            await x.close()

    run(scenario())


def test_transfer_note_never_reaches_an_email_customer(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        alice = await online(gw, procs, "alice")
        assert post_mail(gw, "Where is my parcel?", frm="zhao@example.com") == 200
        conv = wait_until(lambda: s(r.hget("cg:{t:default}:cust:email:zhao@example.com", "conv")), 5, "conv")
        await alice.expect_type("assigned", conv=conv)
        bob = await online(gw, procs, "bob")
        await alice.send({"type": "transfer", "conv": conv, "agent_id": "bob",
                          "text": "INTERNAL angry customer", "cmid": "t1"})
        await bob.expect_type("assigned", conv=conv, agent_id="bob")
        assert (await bob.say("We are on it.", conv=conv))["type"] == "ack"
        # the mail out of the conversation: the new agent's reply, never the internal note
        wait_until(lambda: any(m.get("text") == "We are on it." for m in outbound(r, "email", conv)),
                   5, "reply mailed")
        out = outbound(r, "email", conv)
        assert not [m for m in out if m["type"] == "transferred"]
        assert not [m for m in out if "INTERNAL" in (m.get("text") or "")]
        assert [m for m in log_of(r, conv) if m["type"] == "transferred"][0]["text"] == \
            "INTERNAL angry customer"
        for x in (alice, bob):
            await x.close()

    run(scenario())


# ---- re-classification ----------------------------------------------------------------------

def test_agent_reclassifies_into_a_complaint(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        alice = await online(gw, procs, "alice")
        c = await customer(gw)
        conv = (await c.say("the parcel arrived broken"))["conv"]
        await alice.expect_type("assigned", conv=conv)
        assert conv_hash(r, conv)["category"] == "default"
        # unknown category, then a good one
        await alice.send({"type": "classify", "conv": conv, "code": "nonsense", "cmid": "k1"})
        e = await alice.expect_type("error", cmid="k1")
        assert e["code"] == "bad_value" and "nonsense" in e["text"]
        await alice.send({"type": "classify", "conv": conv, "code": "complaint", "cmid": "k2"})
        _, ev = await alice.expect_unordered(  # the event may overtake the command's ack
            lambda f: f.get("type") == "ack" and f.get("cmid") == "k2",
            lambda f: f.get("type") == "classified" and f.get("conv") == conv,
            what="the ack of k2 and the classified event")
        assert ev["code"] == "complaint" and "default" in ev["text"] and "alice" in ev["text"]
        # the customer gets the complaint number, and only a bare trace of the change
        seen = await c.expect_type("classified", conv=conv)
        assert "code" not in seen and "text" not in seen
        ack = await c.expect(lambda f: f.get("type") == "text" and "TICKET TS-" in f.get("text", ""),
                             what="complaint acknowledgement")
        h = conv_hash(r, conv)
        assert h["category"] == "complaint" and h["prev_category"] == "default"
        assert h["reclassified_by"] == "alice" and h["complaint_class"] == "serious"
        assert ack["text"] == "TICKET " + h["ticket"]
        assert r.zscore("cg:{t:default}:timers", f"complaint_resolve:{conv}") is not None
        # the conversation stays with its agent, in its queue
        assert h["agent"] == "alice" and h["queue"] == "general"
        # the same category again; someone else's conversation; a missing code
        await alice.send({"type": "classify", "conv": conv, "code": "complaint", "cmid": "k3"})
        e = await alice.expect_type("error", cmid="k3")
        assert e["code"] == "classify_failed"
        bob = await online(gw, procs, "bob")
        await bob.send({"type": "classify", "conv": conv, "code": "faq", "cmid": "k4"})
        assert (await bob.expect_type("error", cmid="k4"))["code"] == "not_assigned"
        await bob.send({"type": "classify", "conv": conv, "cmid": "k5"})
        assert (await bob.expect_type("error", cmid="k5"))["code"] == "missing_field"
        # back to an ordinary category: recorded, the complaint number stays
        await alice.send({"type": "classify", "conv": conv, "code": "faq", "cmid": "k6"})
        await alice.expect(lambda f: f.get("type") == "classified" and f.get("code") == "faq",
                           what="second classified event")
        h2 = conv_hash(r, conv)
        assert h2["category"] == "faq" and h2["prev_category"] == "complaint"
        assert h2["ticket"] == h["ticket"]
        cls = [m for m in log_of(r, conv) if m["type"] == "classified"]
        assert [m["code"] for m in cls] == ["complaint", "faq"]
        # a customer reading the transcript again (catch-up from storage) sees no category either
        again = await customer(gw, token=c.welcome["token"], conv=conv, last_seq=0)
        seqs = [int(s(i).split("-")[0]) for i, f in r.xrange(f"cg:{{t:default}}:conv:{conv}:log")
                if msgpack.unpackb(f[b"m"], raw=False)["type"] == "classified"]
        assert len(seqs) == 2
        for seq in seqs:
            f = await again.expect(lambda f: f.get("seq") == seq, what=f"seq {seq} again")
            assert f["type"] == "classified" and "code" not in f and "text" not in f
        await again.close()
        for x in (alice, bob, c):
            await x.close()

    run(scenario())


# ---- offer timeout ----------------------------------------------------------------------------

def test_offer_timeout_reassigns_and_sets_away(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path, offer=1)
    r = redis_srv.r

    async def scenario():
        a = {n: await online(gw, procs, n) for n in ("alice", "bob")}
        c = await customer(gw)
        conv = (await c.say("hello?"))["conv"]
        first = (await c.expect_type("assigned"))["agent_id"]
        other = "bob" if first == "alice" else "alice"
        await a[first].expect_type("assigned", conv=conv)
        # nobody answers: first -> other -> first (its second miss: away) -> other
        mon = Monitor(r).start()
        await a[other].expect_type("assigned", conv=conv, timeout=5)
        await a[first].expect(notice(conv, "did not answer"), timeout=5, what="miss notice")
        mon.stop()
        # one call: taken back, the agent told, the next agent's assignment announced
        fired = mon.fcalls()
        assert fired.count("cg_route_timer") == 1 and "cg_announce" not in fired, mon.seen
        assert s(r.hget(f"cg:{{t:default}}:conv:{conv}", "prev_agent")) == first
        await a[first].expect_type("assigned", conv=conv, timeout=5)
        await a[other].expect(notice(conv, "did not answer"), timeout=5, what="miss notice")
        await a[other].expect_type("assigned", conv=conv, timeout=5)
        await a[first].expect(notice(None, "set to away"), timeout=5, what="away notice")
        await a[first].expect_type("presence", code="away", timeout=5)
        assert s(r.hget(f"cg:{{t:default}}:agent:{first}", "status")) == "away"
        assert s(r.hget(f"cg:{{t:default}}:agent:{first}", "load")) == "0"
        assert s(r.hget(f"cg:{{t:default}}:agent:{other}", "offer_misses")) == "1"
        # the answer cancels the timer and resets the misses
        assert (await a[other].say("Sorry for the wait!", conv=conv))["type"] == "ack"
        wait_until(lambda: r.zscore("cg:{t:default}:timers", f"offer:{conv}") is None, 5, "timer cancelled")
        wait_until(lambda: r.hget(f"cg:{{t:default}}:agent:{other}", "offer_misses") is None, 5, "misses reset")
        h = conv_hash(r, conv)
        assert h["agent"] == other and h["assign_no"] == "4"
        assigned = [m for m in log_of(r, conv) if m["type"] == "assigned"]
        assert [m["agent_id"] for m in assigned] == [first, other, first, other]
        # each offer was taken back only after offer_timeout_s (the timer, not an early fire)
        for before, after in zip(assigned, assigned[1:]):
            assert after["ts"] - before["ts"] >= 1000
        for x in list(a.values()) + [c]:
            await x.close()

    run(scenario())


def test_offer_timeout_is_for_chats_not_email(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path, offer=1)
    r = redis_srv.r

    async def scenario():
        alice = await online(gw, procs, "alice", cap=2)
        assert post_mail(gw, "Where is my invoice?", frm="sun@example.com") == 200
        mail = wait_until(lambda: s(r.hget("cg:{t:default}:cust:email:sun@example.com", "conv")), 5, "conv")
        await alice.expect_type("assigned", conv=mail)
        # a chat assigned after it: its timer is armed by the same router connection, later
        c = await customer(gw)
        chat = (await c.say("hello"))["conv"]
        await alice.expect_type("assigned", conv=chat)
        wait_until(lambda: r.zscore("cg:{t:default}:timers", f"offer:{chat}") is not None, 5, "chat offer timer")
        assert r.zscore("cg:{t:default}:timers", f"offer:{mail}") is None
        for x in (alice, c):
            await x.close()

    run(scenario())


# ---- sticky routing ---------------------------------------------------------------------------

@pytest.mark.parametrize("sticky", [86400, 0])
def test_returning_customer_goes_to_last_agent(procs, redis_srv, tmp_path, sticky):
    gw = desk(procs, tmp_path, sticky=sticky)
    r = redis_srv.r

    async def scenario():
        a = {n: await online(gw, procs, n, cap=2) for n in ("alice", "bob")}
        c = await customer(gw)
        conv1 = (await c.say("first visit"))["conv"]
        served = (await c.expect_type("assigned"))["agent_id"]
        other = "bob" if served == "alice" else "alice"
        assert (await a[served].say("Hi, how can I help?", conv=conv1))["type"] == "ack"
        cust = c.welcome["sender_id"]
        if sticky:
            wait_until(lambda: s(r.hget(f"cg:{{t:default}}:cust:{cust}", "last_agent")) == served, 5,
                       "last_agent stored")
        await a[served].send({"type": "close", "conv": conv1, "code": "resolved",
                              "cmid": new_cmid()})
        await c.expect_type("closed")
        # normal routing would now pick the other agent (same load, idle longer)
        conv2 = (await c.say("I am back"))["conv"]
        assert conv2 != conv1
        got = await c.expect(lambda f: f.get("type") == "assigned" and f.get("conv") == conv2,
                             what="second assignment")
        assert got["agent_id"] == (served if sticky else other)
        for x in list(a.values()) + [c]:
            await x.close()

    run(scenario())


# ---- overflow ---------------------------------------------------------------------------------

def test_overflow_pushes_to_idle_agent_of_overflow_queue(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path, after=1)
    r = redis_srv.r

    async def scenario():
        gen = await online(gw, procs, "gina")
        c = await customer(gw)
        conv = (await c.say("my router is broken"))["conv"]
        wait_until(lambda: conv_hash(r, conv).get("queue") == "tech_support", 5, "queued in tech")
        asg = await gen.expect_type("assigned", conv=conv, timeout=5)
        h = conv_hash(r, conv)
        assert h["agent"] == "gina" and h["queue"] == "tech_support"
        assert int(h["assigned_at"]) - int(h["queued_at"]) >= 1000
        assert asg["queue"] == "tech_support"
        for x in (gen, c):
            await x.close()

    run(scenario())


def test_overflow_listed_then_assigned_when_a_slot_frees(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path, after=1)
    r = redis_srv.r

    async def scenario():
        gen = await online(gw, procs, "gina")
        c0 = await customer(gw)
        conv0 = (await c0.say("where is my parcel"))["conv"]
        await gen.expect_type("assigned", conv=conv0)
        c1 = await customer(gw)
        conv1 = (await c1.say("router setup help"))["conv"]
        # after overflow_after_s the general queue's agents see it in their list
        snap = await gen.expect(lambda f: f.get("type") == "queue" and f.get("queue") == "general"
                                and any(i["conv"] == conv1 for i in f.get("items", [])),
                                timeout=5, what="general list with the overflowing conversation")
        assert r.sismember("cg:{t:default}:overflowing", "tech_support")
        assert conv_hash(r, conv1)["state"] == "queued"
        assert snap["items"][0]["conv"] == conv1
        # the freed slot takes it
        await gen.send({"type": "close", "conv": conv0, "code": "resolved", "cmid": new_cmid()})
        await gen.expect_type("assigned", conv=conv1)
        assert conv_hash(r, conv1)["agent"] == "gina"
        for x in (gen, c0, c1):
            await x.close()

    run(scenario())


def test_overflow_pick(procs, redis_srv, tmp_path):
    """An agent of the overflow queue may pick an overflowing conversation, not before."""
    gw = desk(procs, tmp_path, after=1)
    r = redis_srv.r

    async def scenario():
        gen = await online(gw, procs, "gina", cap=2)
        await gen.send({"type": "presence", "code": "away", "cmid": "p1"})
        await gen.expect_type("ack", cmid="p1")
        c = await customer(gw)
        conv = (await c.say("router lights blink"))["conv"]
        wait_until(lambda: conv_hash(r, conv).get("state") == "queued", 5, "queued")
        await gen.send({"type": "pick", "conv": conv, "cmid": "k1"})
        e = await gen.expect_type("error", cmid="k1")
        assert e["code"] == "pick_failed"
        await gen.expect(lambda f: f.get("type") == "queue" and f.get("queue") == "general"
                         and any(i["conv"] == conv for i in f.get("items", [])),
                         timeout=5, what="overflowing conversation listed")
        await gen.send({"type": "pick", "conv": conv, "cmid": "k2"})
        await gen.expect_type("assigned", conv=conv)
        assert conv_hash(r, conv)["agent"] == "gina"
        for x in (gen, c):
            await x.close()

    run(scenario())
