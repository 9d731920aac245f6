"""Time-driven behaviour of the router against a real redis-server: locale templates, position
updates, e-mail acknowledgement, business hours, SLA timers (first/next response, escalation,
exactly once with two routers, surviving a restart) and complaint tickets. Messages are injected
exactly as the gateway does (FCALL cg_message ... log; XADD cg:{t:default}:in for agent presence); results are
read back from Redis and pub/sub.

Time is injected (conftest.InjectedClock, CHATGW_TEST_CLOCK): the routers' clock moves only when a test
advances it, so nothing here sleeps and no assertion depends on how fast the machine is. A test
that must show something did NOT happen first waits for a later timer that the router fires in
the same or a later pass.

Run: BUILD=build/h-sla /usr/bin/python3 -m pytest -q tests/integration/test_sla.py
"""
import datetime
import os
import signal
import time
import uuid

import msgpack

import pytest

from conftest import InjectedClock, wait_until
from desk import Monitor, conv_hash, log_of, s, store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ids = iter(range(1, 1000))
_last_ts = [0]

BASE = """
[router]
default_queue = general
default_locale = en
position_update_s = 1
position_update_max_s = 2
timer_tick_ms = 100
sla_first_response_s = {first}
sla_next_response_s = {next}
default_timezone = UTC

[queue general]
mode = push
{hours}

[queue supervisors]
mode = pull
priority = 8

[queue complaints]
mode = push
priority = 7

[rule media]
queue = complaints
keywords = journalist
complaint_class = media
order = 1

[rule complaint]
queue = complaints
keywords = complaint
order = 2

[templates en]
greeting = HELLO
queued = QUEUED {{position}} {{wait}}
position_update = UPDATE {{position}} {{wait}}
off_hours = OFF {{opens_at}}
email_ack = ACK {{reply_within}}
complaint_ack = TICKET {{ticket}}
no_agent = NOAGENT

[templates zh-CN]
greeting = 您好
queued = 排队 {{position}}
"""


# ---- helpers ------------------------------------------------------------------------------------


CLOCK = [None]  # this test's InjectedClock (fixture clock)


@pytest.fixture(autouse=True)
def clock(tmp_path):
    c = InjectedClock(tmp_path)
    CLOCK[0] = c
    yield c
    CLOCK[0] = None


def now_ms():
    return CLOCK[0].ms


def new_id():
    return uuid.uuid4().hex


def config(tmp_path, first="chat:0, email:0", nxt="chat:0, email:0", hours="", name="sla.ini"):
    path = str(tmp_path / name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(BASE.format(first=first, next=nxt, hours=hours))
    return path


def router(procs, cfg, **env):
    rid = f"sla{next(_ids)}"
    e = {"CHATGW_CONFIG": cfg, "CHATGW_ROUTER_ID": rid, "CHATGW_BLOCK_MS": 200,
         "CHATGW_CLAIM_IDLE_MS": 1000, **CLOCK[0].env}
    e.update(env)
    p = procs.router(e, wait_ready=False)
    p.wait_log(f"router {rid} ready", 15)
    return p


def send(r, customer, text, conv="", channel="web", locale="en"):
    """A customer's message, stored like the gateway does, 1 ms after the previous event (so
    arrivals keep their order). -> conv."""
    CLOCK[0].advance(1)
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": new_id(), "channel": channel,
         "dir": "in", "role": "customer", "sender_id": customer, "ts": now_ms(), "text": text}
    if locale:
        m["identity"] = {"customer_id": customer, "locale": locale}
    res = store(r, conv, m["cmid"], "customer", customer, msgpack.packb(m),
                  new_id(), channel, now_ms(), "log", text[:160])
    return s(res[0])


def agent_says(r, agent, conv, text):
    """An assigned agent's reply, stored like the gateway does."""
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": new_id(), "channel": "web",
         "dir": "out", "role": "agent", "sender_id": agent, "conv": conv, "ts": now_ms(),
         "text": text}
    store(r, conv, m["cmid"], "agent", agent, msgpack.packb(m), "", "web",
            now_ms(), "log")


def presence(r, agent, skills=("general",), cap=1, sock=None):
    _last_ts[0] = max(now_ms(), _last_ts[0] + 1)
    m = {"v": 1, "id": new_id(), "ts": _last_ts[0], "role": "agent", "type": "presence",
         "code": "connect", "sender_id": agent, "sock": sock or f"gw1:{agent}",
         "sender_name": agent.title(), "skills": list(skills), "cap": cap}
    r.xadd("cg:{t:default}:in", {"c": "", "s": 0, "m": msgpack.packb(m)})


def staff(r, queue="general"):
    """An online agent of queue with no free slot (cap 0): the queue is staffed, so waiting
    customers get their position rather than the no_agent reply."""
    presence(r, f"busy-{queue}", skills=(queue,), cap=1, sock=f"gw1:busy-{new_id()}")
    wait_until(lambda: r.sismember(f"cg:{{t:default}}:online:{queue}", f"busy-{queue}"), 5, f"{queue} staffed")
    r.hset(f"cg:{{t:default}}:agent:busy-{queue}", "cap", 0)  # a cap of 0 is not on the wire: no free slot


def bot_texts(r, conv, prefix=""):
    return [m for m in log_of(r, conv)
            if m.get("type") == "text" and m.get("role") == "bot"
            and m.get("text", "").startswith(prefix)]


def wait_bot(r, conv, prefix, n=1, timeout=10):
    return wait_until(lambda: (lambda l: l if len(l) >= n else None)(bot_texts(r, conv, prefix)),
                      timeout, f"{n} bot text(s) '{prefix}' in {conv}")


def breaches(r):
    return [{s(k): s(v) for k, v in f.items()} for _, f in r.xrange("cg:{t:default}:events")
            if f.get(b"type") == b"sla_breach"]


def timer(r, member):
    return r.zscore("cg:{t:default}:timers", member)


class AgentFeed:
    """Messages published on cg:{t:default}:a:<agent> (8-byte prefix + msgpack)."""

    def __init__(self, r, agent):
        self.ps = r.pubsub()
        self.ps.subscribe(f"cg:{{t:default}}:a:{agent}")
        wait_until(lambda: (self.ps.get_message(timeout=0.05) or {}).get("type") == "subscribe",
                   5, "the subscription")

    def next_of(self, typ, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.ps.get_message(timeout=max(0.01, deadline - time.monotonic()))
            if msg and msg["type"] == "message":
                m = msgpack.unpackb(msg["data"][8:], raw=False)
                if m.get("type") == typ:
                    return m
        raise AssertionError(f"no {typ} published on the agent channel")

    def close(self):
        self.ps.close()


# ---- templates ----------------------------------------------------------------------------------

def test_texts_follow_the_customer_locale(redis_srv, procs, tmp_path):
    r = redis_srv.r
    router(procs, config(tmp_path))
    staff(r)
    zh = send(r, "zh1", "你好", locale="zh-CN")
    assert wait_bot(r, zh, "您好") and wait_bot(r, zh, "排队 1")
    en = send(r, "en1", "hello", locale="en-US")  # language match: en
    assert wait_bot(r, en, "HELLO") and wait_bot(r, en, "QUEUED 2 4 min")
    fr = send(r, "fr1", "bonjour", locale="fr")  # unknown: default_locale en
    assert wait_bot(r, fr, "HELLO")
    assert conv_hash(r, zh)["locale"] == "zh-CN"


# ---- position updates and e-mail ----------------------------------------------------------------

def test_position_updates_only_when_changed_or_after_max(redis_srv, procs, tmp_path, clock):
    """position_update_s 1, position_update_max_s 2: checked every second, told when the position
    changed or 2 s passed since the last one."""
    r = redis_srv.r
    router(procs, config(tmp_path))
    staff(r)
    a = send(r, "ca", "first")
    wait_bot(r, a, "QUEUED 1")
    b = send(r, "cb", "second")
    t0 = wait_bot(r, b, "QUEUED 2")[0]["ts"]
    assert t0 == clock.ms and timer(r, f"pos:{b}") == t0 + 1000
    # 1 s: unchanged, not told; the check is re-armed for the next second
    clock.advance(1000)
    wait_until(lambda: timer(r, f"pos:{b}") == t0 + 2000, 5, "b's position checked")
    assert not bot_texts(r, b, "UPDATE")
    # 2 s: unchanged, but the maximum passed: told
    clock.advance(1000)
    u1 = wait_bot(r, b, "UPDATE", 1, 5)[0]
    assert (u1["position"], u1["ts"]) == (2, t0 + 2000)
    # a is assigned: b moves up and hears it at the next check
    presence(r, "amy")
    wait_until(lambda: conv_hash(r, a).get("state") == "assigned", 5, "a assigned")
    clock.advance(1000)
    u2 = wait_bot(r, b, "UPDATE", 2, 5)[1]
    assert (u2["position"], u2["ts"], u2["text"]) == (1, t0 + 3000, "UPDATE 1 2 min")
    # unchanged again: not at the next check, only after the maximum
    clock.advance(1000)
    wait_until(lambda: timer(r, f"pos:{b}") == t0 + 5000, 5, "b's position checked")
    assert len(bot_texts(r, b, "UPDATE")) == 2
    clock.advance(1000)
    u3 = wait_bot(r, b, "UPDATE", 3, 5)[2]
    assert (u3["position"], u3["ts"]) == (1, t0 + 5000)
    assert timer(r, f"pos:{a}") is None  # assigned: no more updates
    assigned_at = int(conv_hash(r, a)["assigned_at"])
    assert [m["ts"] for m in bot_texts(r, a, "UPDATE")] == [t0 + 2000] and t0 + 2000 <= assigned_at


@pytest.mark.parametrize("channel", ["telegram", "wechat", "whatsapp", "messenger"])
def test_position_updates_reach_social_customers_through_their_bridge(redis_srv, procs, tmp_path,
                                                                     clock, channel):
    """A waiting customer of a social channel is told its place like a web customer (a chat
    channel): the queued text and the position updates are desk messages of its conversation,
    so they go to cg:out:<channel> for the channel's bridges, with position and wait."""
    r = redis_srv.r
    router(procs, config(tmp_path))
    staff(r)
    first = send(r, f"{channel}:u1", "first", channel=channel)
    wait_bot(r, first, "QUEUED 1")
    c = send(r, f"{channel}:u2", "second", channel=channel)
    wait_bot(r, c, "QUEUED 2")

    def out():
        return [msgpack.unpackb(f[b"m"], raw=False) for _, f in
                r.xrange(f"cg:{{t:default}}:out:{channel}") if s(f[b"c"]) == c]
    assert [m["text"] for m in out() if m.get("role") == "bot"] == ["HELLO", "QUEUED 2 4 min"]
    presence(r, "amy")  # the first is assigned: the second moves up
    wait_until(lambda: conv_hash(r, first).get("state") == "assigned", 5, "first assigned")
    clock.advance(1000)
    wait_until(lambda: [m for m in out() if m.get("text", "").startswith("UPDATE")], 5,
               "the position update in the bridge's stream")
    [u] = [m for m in out() if m.get("text", "").startswith("UPDATE")]
    assert (u["position"], u["text"]) == (1, "UPDATE 1 2 min")


def test_customer_told_once_when_everybody_serving_the_queue_leaves(redis_srv, procs, tmp_path,
                                                                    clock):
    """A waiting customer was told its position; the only agent of the queue goes offline: the
    next check tells it nobody is online (once), and positions come back with the agent."""
    r = redis_srv.r
    router(procs, config(tmp_path))
    presence(r, "bee", sock="gw1:bee-1")  # cap 1: busy with the first customer
    wait_until(lambda: r.sismember("cg:{t:default}:online:general", "bee"), 5, "bee online")
    first = send(r, "first1", "hello")
    wait_until(lambda: conv_hash(r, first).get("agent") == "bee", 5, "bee busy")
    c = send(r, "left1", "hello")
    wait_bot(r, c, "QUEUED 1")
    _last_ts[0] = max(now_ms(), _last_ts[0] + 1)
    r.xadd("cg:{t:default}:in", {"c": "", "s": 0, "m": msgpack.packb(
        {"v": 1, "id": new_id(), "ts": _last_ts[0], "role": "agent", "type": "presence",
         "code": "disconnect", "sender_id": "bee", "sock": "gw1:bee-1", "skills": ["general"]})})
    wait_until(lambda: not r.sismember("cg:{t:default}:online:general", "bee"), 5, "nobody online")
    clock.advance(1000)
    told = wait_bot(r, c, "NOAGENT")[0]
    assert "position" not in told
    # the next checks say nothing more
    due = timer(r, f"pos:{c}")
    clock.advance(3000)
    wait_until(lambda: (timer(r, f"pos:{c}") or 0) > due + 2000, 5, "position checked again")
    assert len(bot_texts(r, c, "NOAGENT")) == 1 and not bot_texts(r, c, "UPDATE")
    # bee is back (still busy with the first customer): the position is told again
    presence(r, "bee", sock="gw1:bee-2")
    wait_until(lambda: r.sismember("cg:{t:default}:online:general", "bee"), 5, "bee back")
    clock.advance(1000)
    assert wait_bot(r, c, "UPDATE 1")[0]["position"] == 1
    assert conv_hash(r, c)["state"] == "queued"


def entries_added(r):
    return r.xinfo_stream("cg:{t:default}:in")["entries-added"]


def test_steady_state_needs_no_router(redis_srv, procs, tmp_path, clock):
    """In an assigned conversation a customer's and its agent's texts set their own timers inside
    cg_message (response SLAs; the idle close counts from the log's last message, read when its
    timer fires)
    and never reach cg:{t:default}:in; with business hours on the queue they go to the routers as
    before (the deadline counts open hours)."""
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:60", nxt="chat:30"), CHATGW_IDLE_CLOSE_S=600)
    wait_until(lambda: s(r.hget("cg:{t:default}:deskcfg", "ready")) == "1", 5, "timings published")
    presence(r, "amy")
    wait_until(lambda: r.sismember("cg:{t:default}:online:general", "amy"), 5, "amy online")
    c = send(r, "st1", "hello")
    wait_until(lambda: conv_hash(r, c).get("state") == "assigned", 5, "assigned")
    wait_until(lambda: timer(r, f"first:{c}"), 5, "first-response timer")
    # the assignment is announced in the router's next call, which arms the idle timer
    wait_until(lambda: timer(r, f"idle:{c}"), 5, "idle timer armed at the announcement")
    added = entries_added(r)
    agent_says(r, "amy", c, "Hi, how can I help?")
    assert timer(r, f"first:{c}") is None and conv_hash(r, c)["first_reply_at"] == str(clock.ms)
    idle_at = timer(r, f"idle:{c}")  # armed at the assignment, not moved by messages
    assert idle_at is not None
    clock.advance(5000)
    send(r, "st1", "my parcel is late", conv=c)
    assert timer(r, f"next:{c}") == clock.ms + 30_000
    assert timer(r, f"idle:{c}") == idle_at
    assert entries_added(r) == added  # neither text went to the routers
    # the next-response breach still fires (the routers' timers), without cg:in
    clock.advance(30_000)
    wait_until(lambda: breaches(r), 5, "next-response breach")
    assert [(e["conv"], e["kind"]) for e in breaches(r)] == [(c, "next")]


def test_queue_with_business_hours_leaves_the_timers_to_the_router(redis_srv, procs, tmp_path,
                                                                   clock):
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:60", nxt="chat:30",
                         hours="hours = daily 00:00-24:00\ntimezone = UTC"))
    wait_until(lambda: s(r.hget("cg:{t:default}:deskcfg", "hours:general")) == "1", 5, "timings published")
    presence(r, "amy")
    c = send(r, "st2", "hello")
    wait_until(lambda: conv_hash(r, c).get("state") == "assigned", 5, "assigned")
    agent_says(r, "amy", c, "Hi")
    added = entries_added(r)
    send(r, "st2", "still there?", conv=c)
    assert entries_added(r) == added + 1
    wait_until(lambda: timer(r, f"next:{c}"), 5, "next-response timer armed by the router")


def close_cmd(r, agent, conv):
    _last_ts[0] = max(now_ms(), _last_ts[0] + 1)
    m = {"v": 1, "id": new_id(), "ts": _last_ts[0], "role": "agent", "type": "close",
         "conv": conv, "code": "resolved", "sender_id": agent, "cmid": new_id()}
    r.xadd("cg:{t:default}:in", {"c": conv, "s": 0, "m": msgpack.packb(m)})


def test_wait_estimate_uses_measured_handling_time(redis_srv, procs, tmp_path, clock):
    r = redis_srv.r
    router(procs, config(tmp_path))
    presence(r, "amy")
    wait_until(lambda: r.sismember("cg:{t:default}:online:general", "amy"), 5, "amy online")
    c1 = send(r, "m1", "first")
    wait_until(lambda: conv_hash(r, c1).get("state") == "assigned", 5, "c1 assigned")
    c2 = send(r, "m2", "second")
    assert wait_bot(r, c2, "QUEUED 1")[0]["wait"] == 120  # avg_handle_s: nothing measured yet
    clock.advance(90_000)  # c1 is handled for 90 s
    close_cmd(r, "amy", c1)  # c2 is assigned to amy
    wait_until(lambda: r.hget("cg:{t:default}:stats:general", "avg_ms"), 5, "handling time measured")
    h1 = conv_hash(r, c1)
    assert int(s(r.hget("cg:{t:default}:stats:general", "avg_ms"))) == int(h1["closed_at"]) - int(h1["assigned_at"])
    c3 = send(r, "m3", "third")
    m = wait_bot(r, c3, "QUEUED 1")[0]
    assert m["wait"] == (int(h1["closed_at"]) - int(h1["assigned_at"]) + 999) // 1000
    assert m["text"] == "QUEUED 1 2 min"


@pytest.mark.parametrize("agents", [1, 5])
def test_wait_estimate_counts_the_agents_serving_the_queue(redis_srv, procs, tmp_path, clock,
                                                            agents):
    """{wait} spreads the conversations before the customer over the slots of the agents online
    for the queue (avg_handle_s 120 while nothing is measured): with every slot busy, the third
    in line waits 3 x 120 s with one agent, 3 x 120 / 5 = 72 s with five; the position updates
    say the same."""
    r = redis_srv.r
    router(procs, config(tmp_path))
    for i in range(agents):
        presence(r, f"ag{i}")
    wait_until(lambda: r.scard("cg:{t:default}:online:general") == agents, 5, "agents online")
    for i in range(agents):  # every slot busy
        c = send(r, f"busy{i}", "hello")
        wait_until(lambda: conv_hash(r, c).get("state") == "assigned", 5, "assigned")
    waiting = []
    for p in range(1, 4):  # one after the other: their arrival order is their place in line
        waiting.append(send(r, f"w{p - 1}", "hello"))
        m = wait_bot(r, waiting[-1], "QUEUED")[0]
        want = -(-p * 120 // agents)  # whole seconds, rounded up
        assert (m["position"], m["wait"]) == (p, want), m
        assert m["text"] == f"QUEUED {p} {-(-want // 60)} min"
    # the first in line ends the chat (nothing measured): the third is second now, and its
    # position update says the new estimate
    _last_ts[0] = max(now_ms(), _last_ts[0] + 1)
    end = {"v": 1, "id": new_id(), "ts": _last_ts[0], "role": "customer", "type": "close",
           "channel": "web", "dir": "in",
           "channel": "web", "dir": "in", "conv": waiting[0], "sender_id": "w0", "cmid": new_id(),
           "code": "customer_left"}  # as the gateway sends it
    r.xadd("cg:{t:default}:in", {"c": waiting[0], "s": 0, "m": msgpack.packb(end)})
    wait_until(lambda: conv_hash(r, waiting[0]).get("state") == "closed", 5, "w0 left")
    clock.advance(1000)
    m = wait_bot(r, waiting[2], "UPDATE")[0]
    assert (m["position"], m["wait"]) == (2, -(-2 * 120 // agents)), m


def test_an_agents_load_is_the_sum_of_its_conversations_channel_weights(redis_srv, procs, tmp_path,
                                                                       clock):
    """channel_weights (default chat:1, email:0.5), as Omni-Channel's capacity units: an agent of
    cap 1 takes two e-mails at once, a chat only with a whole unit free; closing an e-mail gives
    back half a unit, which the next waiting e-mail takes, while the chat waits on."""
    r = redis_srv.r
    router(procs, config(tmp_path))
    presence(r, "amy")  # cap 1
    wait_until(lambda: r.sismember("cg:{t:default}:online:general", "amy"), 5, "amy online")

    def state(c):
        return conv_hash(r, c).get("state")
    mails = []
    for i in range(2):
        mails.append(send(r, f"mail{i}@example.com", "where is my order?", channel="email"))
        wait_until(lambda: state(mails[-1]) == "assigned", 5, f"e-mail {i} assigned")
    assert s(r.hget("cg:{t:default}:agent:amy", "load")) == "1"
    assert conv_hash(r, mails[0])["weight"] == "0.5"
    chat = send(r, "webby", "hello")
    wait_until(lambda: state(chat) == "queued", 5, "the chat waits: no whole unit free")
    third = send(r, "mail2@example.com", "and my refund?", channel="email")
    wait_until(lambda: state(third) == "queued", 5, "the third e-mail waits")
    close_cmd(r, "amy", mails[0])
    wait_until(lambda: state(mails[0]) == "closed", 5, "an e-mail closed")
    # half a unit back: the chat (first in line) does not fit, so it keeps waiting and nothing
    # else is taken past it; the agent stays at 0.5
    wait_until(lambda: s(r.hget("cg:{t:default}:agent:amy", "load")) == "0.5", 5, "load 0.5")
    assert state(chat) == "queued" and state(third) == "queued"
    close_cmd(r, "amy", mails[1])
    wait_until(lambda: state(chat) == "assigned", 5, "a whole unit free: the chat is taken")
    assert s(r.hget("cg:{t:default}:agent:amy", "load")) == "1" and state(third) == "queued"


def test_channel_weights_are_checked(tmp_path):
    path = tmp_path / "w.ini"
    path.write_text("[router]\nchannel_weights = chat:1, email:zero\n", encoding="utf-8")
    import subprocess
    out = subprocess.run([os.path.join(os.environ.get("BUILD", "build"), "chatgw-router"),
                          "--check-config"], env=dict(os.environ, CHATGW_CONFIG=str(path)),
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and "channel_weights" in out.stderr + out.stdout, out


RINGS = """
[router]
default_queue = tech_support
default_locale = en
timer_tick_ms = 100
sla_first_response_s = chat:0, email:0
sla_next_response_s = chat:0, email:0

[queue tech_support]
mode = push
rings = 30:general, 90:supervisors

[queue general]
mode = push

[queue supervisors]
mode = push
"""


def test_bullseye_rings_widen_who_may_take_a_waiting_conversation(redis_srv, procs, tmp_path,
                                                                   clock):
    """[queue tech_support] rings = 30:general, 90:supervisors (as Genesys' bullseye): nobody of
    tech_support is online; after 30 s of waiting the general agents may take a conversation
    (ring 1), after 90 s the supervisors too (ring 2, general still included). The ring reached
    is kept on the conversation and shown in the queue snapshots."""
    r = redis_srv.r
    path = tmp_path / "rings.ini"
    path.write_text(RINGS, encoding="utf-8")
    router(procs, str(path))
    presence(r, "gen", skills=("general",))
    presence(r, "sup", skills=("supervisors",))
    wait_until(lambda: r.sismember("cg:{t:default}:online:supervisors", "sup"), 5, "agents online")
    c1 = send(r, "r1", "my router blinks red")
    wait_until(lambda: conv_hash(r, c1).get("state") == "queued", 5, "c1 waits in tech_support")
    clock.advance(29_000)
    c2 = send(r, "r2", "mine too")  # queued 29 s after c1
    wait_until(lambda: conv_hash(r, c2).get("state") == "queued", 5, "c2 waits")
    assert conv_hash(r, c1)["state"] == "queued"  # 29 s: its own queue only
    clock.advance(1_000)  # c1 reaches ring 1: general's free agent takes it
    wait_until(lambda: conv_hash(r, c1).get("state") == "assigned", 5, "c1 assigned in ring 1")
    h1 = conv_hash(r, c1)
    assert (h1["agent"], h1["ring"]) == ("gen", "1")
    clock.advance(29_000)  # c2 reaches ring 1: gen is busy, sup is not in ring 1 yet
    wait_until(lambda: conv_hash(r, c2).get("ring") == "1", 5, "c2 in ring 1")
    assert conv_hash(r, c2)["state"] == "queued"
    def snapshot():
        return msgpack.unpackb(r.get("cg:{t:default}:qsnap:tech_support"), raw=False)
    wait_until(lambda: [i for i in snapshot().get("items", [])
                        if i["conv"] == c2 and i.get("ring") == 1], 5, "ring 1 in the queue snapshot")
    snap = snapshot()
    clock.advance(60_000)  # 90 s: ring 2, the supervisors' agent takes it
    wait_until(lambda: conv_hash(r, c2).get("state") == "assigned", 5, "c2 assigned in ring 2")
    h2 = conv_hash(r, c2)
    assert (h2["agent"], h2["ring"]) == ("sup", "2")
    assert snap["queue"] == "tech_support"


def test_rings_are_checked(tmp_path):
    import subprocess
    for bad, why in [("rings = 30:nowhere", "unknown queue 'nowhere'"),
                     ("rings = soon:general", "is not <seconds"),
                     ("rings = 30:tech_support", "cannot ring itself"),
                     ("rings = 30:general\noverflow = general", "rings or overflow")]:
        path = tmp_path / "bad.ini"
        path.write_text(RINGS.replace("rings = 30:general, 90:supervisors", bad), encoding="utf-8")
        out = subprocess.run([os.path.join(os.environ.get("BUILD", "build"), "chatgw-router"),
                              "--check-config", "--config", str(path)],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode != 0 and why in out.stderr + out.stdout, (bad, out)


def test_email_gets_one_acknowledgement_and_no_updates(redis_srv, procs, tmp_path, clock):
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:60, email:7200"))
    c = send(r, "mail1", "Where is my order?", channel="email")
    ack = wait_bot(r, c, "ACK")[0]
    assert ack["text"] == "ACK 2 h"
    send(r, "mail1", "Any news?", conv=c, channel="email")
    wait_until(lambda: len(log_of(r, c)) >= 4, 5, "second e-mail logged")
    assert timer(r, f"pos:{c}") is None
    # past position_update_max_s: a chat customer waiting as long gets an update, the e-mail not
    staff(r)
    chat = send(r, "chat1", "hello")
    wait_bot(r, chat, "QUEUED")
    clock.advance(2000)
    wait_bot(r, chat, "UPDATE")
    texts = [m["text"] for m in bot_texts(r, c)]
    assert texts == ["HELLO", "ACK 2 h"], texts
    assert timer(r, f"first:{c}") is not None  # e-mail still has its 2 h first-response timer


# ---- business hours -----------------------------------------------------------------------------

def closed_window():
    """A daily window (UTC) that excludes now, and its next opening as the router formats it."""
    now = datetime.datetime.fromtimestamp(now_ms() / 1000, datetime.timezone.utc)
    start = (now + datetime.timedelta(hours=2)).replace(second=0, microsecond=0)
    if start.date() != now.date() or start.hour >= 23:
        start = (now - datetime.timedelta(hours=3)).replace(second=0, microsecond=0)
        opens = start + datetime.timedelta(days=1)
    else:
        opens = start
    spec = f"daily {start:%H:%M}-{start.hour + 1:02d}:{start:%M}"
    return spec, opens.strftime("%Y-%m-%d %H:%M")


def test_off_hours_reply_then_assigned_when_reload_opens_the_desk(redis_srv, procs, tmp_path,
                                                                   clock):
    r = redis_srv.r
    spec, opens_at = closed_window()
    cfg = config(tmp_path, hours=f"hours = {spec}\ntimezone = UTC\nholidays = 2000-01-01")
    rt = router(procs, cfg)
    wait_until(lambda: r.sismember("cg:{t:default}:closed", "general"), 5, "general closed")
    assert r.zscore("cg:{t:default}:timers", "hours:general") is not None  # re-published when it opens
    presence(r, "amy")
    wait_until(lambda: r.sismember("cg:{t:default}:online:general", "amy"), 5, "amy online")
    # one after the other: the router queues each at its own time (the injected clock moves
    # only when the test moves it, so two messages read in one pass would share a time)
    c1 = send(r, "night1", "hello?")
    off = wait_bot(r, c1, "OFF")[0]
    assert (off["text"], off["code"]) == (f"OFF {opens_at}", "off_hours")  # the widget asks an e-mail
    c2 = send(r, "night2", "anyone?")
    wait_bot(r, c2, "OFF")
    assert conv_hash(r, c1)["state"] == "queued" and conv_hash(r, c2)["state"] == "queued"
    # no position updates while closed: the checks run (re-armed) but tell nothing
    due = timer(r, f"pos:{c1}")
    clock.advance(3000)
    wait_until(lambda: (timer(r, f"pos:{c1}") or 0) > due + 2000, 5, "c1's position checked")
    assert not bot_texts(r, c1, "UPDATE")
    # the desk opens (reload with hours including now): the oldest waiting one is assigned at once
    config(tmp_path, hours="hours = daily 00:00-24:00\ntimezone = UTC")
    rt.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: conv_hash(r, c1).get("state") == "assigned", 5, "c1 assigned on reload")
    assert conv_hash(r, c1)["agent"] == "amy" and conv_hash(r, c2)["state"] == "queued"
    assert not r.sismember("cg:{t:default}:closed", "general")
    assert r.zscore("cg:{t:default}:timers", "hours:general") is None  # always open now


def test_a_waiting_customers_message_for_another_queue_gets_the_reply_of_its_own(
        redis_srv, procs, tmp_path, clock):
    """The waiting reply is the queue's the conversation waits in, whatever queue a later message
    classifies into: the router sends the queues closed now with their next opening
    (router/conv.c conv_closed_fields) and the call decides (redis/event.lua waiting_reply)."""
    r = redis_srv.r
    spec, opens_at = closed_window()
    router(procs, config(tmp_path, hours=f"hours = {spec}\ntimezone = UTC"))
    wait_until(lambda: r.sismember("cg:{t:default}:closed", "general"), 5, "general closed")
    c = send(r, "night3", "hello?")
    wait_bot(r, c, "OFF")
    mon = Monitor(r).start()
    send(r, "night3", "this is a complaint", conv=c)  # classified into complaints, open
    offs = wait_bot(r, c, "OFF", n=2)
    wait_until(lambda: not r.xpending("cg:{t:default}:in", "routers")["pending"], 5,
               "the router done with the message")
    mon.stop()
    assert [(m["text"], m["queue"]) for m in offs] == [(f"OFF {opens_at}", "general")] * 2
    assert not bot_texts(r, c, "QUEUED") and not bot_texts(r, c, "TICKET")
    assert conv_hash(r, c)["queue"] == "general"
    # one call for the message, general's own deadlines in it (the router sends the dues of the
    # queues that count business hours): nothing armed afterwards in a call of its own
    fired = mon.fcalls()
    assert fired == ["cg_message", "cg_customer_msg"], mon.seen


# ---- SLA timers ---------------------------------------------------------------------------------

def test_first_response_breach_escalates_and_notifies_supervisor(redis_srv, procs, tmp_path, ):
    """Escalation keeps the conversation in its queue, first in line, and pushes it to a
    supervisor with a free slot at once (the supervisors queue is pull-only: escalations are
    pushed all the same)."""
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:1"))
    staff(r)
    feed = AgentFeed(r, "sue")
    try:
        c = send(r, "late1", "hello, anybody?")
        wait_bot(r, c, "QUEUED")
        presence(r, "sue", skills=("supervisors",))
        wait_until(lambda: r.sismember("cg:{t:default}:online:supervisors", "sue"), 5, "sue online")
        CLOCK[0].advance(1000)
        note = feed.next_of("text", 5)
        assert note["conv"] == c and "first" in note["text"] and "escalated" in note["text"]
        wait_until(lambda: conv_hash(r, c).get("agent") == "sue", 5, "pushed to sue")
        h = conv_hash(r, c)
        assert (h["state"], h["queue"], h["prio"], h["escalated"], h["escalated_to"],
                h["sla_breaches"]) == ("assigned", "general", "9", "1", "supervisors", "1")
        assert r.zscore("cg:{t:default}:queue:general", c) is None  # taken
        ev = breaches(r)
        assert [(e["conv"], e["kind"], e["action"]) for e in ev] == [(c, "first", "escalate")]
        # the transcript records it (rule 19), as a desk-only event
        esc = wait_until(lambda: [m for m in log_of(r, c) if m["type"] == "escalated"], 5,
                         "escalated event in the transcript")
        assert len(esc) == 1 and esc[0]["role"] == "system"
        assert (esc[0]["code"], esc[0]["queue"]) == ("first", "general")
        assert "escalated to supervisors" in esc[0]["text"]
    finally:
        feed.close()


def test_escalated_conversation_stays_visible_and_assignable(redis_srv, procs, tmp_path):
    """With no supervisor free, an escalated conversation waits in its own queue at the head:
    the supervisors see it in their queue list, and an agent of its own queue who gets a free
    slot takes it (nobody is stranded in a pull queue ordinary agents never see)."""
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:1"))
    staff(r)
    presence(r, "sam", skills=("supervisors",))
    wait_until(lambda: r.sismember("cg:{t:default}:online:supervisors", "sam"), 5, "sam online")
    r.hset("cg:{t:default}:agent:sam", "cap", 0)  # online, no free slot
    c = send(r, "late2", "second")
    wait_bot(r, c, "QUEUED")
    CLOCK[0].advance(1000)
    wait_until(lambda: conv_hash(r, c).get("escalated_to") == "supervisors", 5, "escalated")
    h = conv_hash(r, c)
    assert (h["state"], h["queue"], h["prio"]) == ("queued", "general", "9")
    assert s(r.zrange("cg:{t:default}:queue:general", 0, 0)[0]) == c
    assert r.sismember("cg:{t:default}:escalated:supervisors", c)
    # the supervisors' queue list shows it
    assert [s(row[0]) for row in r.fcall("cg_queue_list", 1, "cg:{t:default}", "supervisors", 10)] == [c]
    # an agent of general with a free slot takes it
    presence(r, "amy")
    wait_until(lambda: conv_hash(r, c).get("agent") == "amy", 5, "assigned to amy")
    assert r.fcall("cg_queue_list", 1, "cg:{t:default}", "supervisors", 10) == []


def test_supervisor_picks_escalated_conversation(redis_srv, procs, tmp_path):
    """An away supervisor gets nothing pushed but may pick an escalated conversation."""
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:1"))
    staff(r)
    _last_ts[0] = max(now_ms(), _last_ts[0] + 1)
    r.xadd("cg:{t:default}:in", {"c": "", "s": 0, "m": msgpack.packb(
        {"v": 1, "id": new_id(), "ts": _last_ts[0], "role": "agent", "type": "presence",
         "code": "away", "sender_id": "sue"})})
    presence(r, "sue", skills=("supervisors",))  # connects away: stays away
    wait_until(lambda: r.scard("cg:{t:default}:agent:sue:socks") == 1, 5, "sue connected")
    assert s(r.hget("cg:{t:default}:agent:sue", "status")) == "away"
    c = send(r, "late3", "help")
    wait_bot(r, c, "QUEUED")
    CLOCK[0].advance(1000)
    wait_until(lambda: r.sismember("cg:{t:default}:escalated:supervisors", c), 5, "escalated")
    assert conv_hash(r, c)["state"] == "queued"
    res = r.fcall("cg_pick", 1, "cg:{t:default}", c, "sue", now_ms())
    assert s(res[0]) == "assigned" and s(res[1]) == "general"
    assert conv_hash(r, c)["agent"] == "sue"


def test_agent_reply_cancels_first_response_then_next_response_breach(redis_srv, procs, tmp_path):
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:2", nxt="chat:1"))
    presence(r, "amy")
    wait_until(lambda: r.sismember("cg:{t:default}:online:general", "amy"), 5, "amy online")
    c = send(r, "quick1", "hi")
    wait_until(lambda: conv_hash(r, c).get("state") == "assigned", 5, "assigned")
    due = timer(r, f"first:{c}")
    assert due is not None
    agent_says(r, "amy", c, "Hello, how can I help?")
    wait_until(lambda: timer(r, f"first:{c}") is None, 5, "first-response timer cancelled")
    assert "first_reply_at" in conv_hash(r, c)
    CLOCK[0].set(due + 500)  # past the old deadline
    # the customer writes again and the agent stays silent: next-response breach (the only one:
    # the first-response timer, cancelled, does not fire in the same pass), still assigned
    send(r, "quick1", "hello?", conv=c)
    wait_until(lambda: timer(r, f"next:{c}"), 5, "next-response timer armed")
    CLOCK[0].advance(1000)
    wait_until(lambda: breaches(r), 5, "next-response breach")
    assert [(e["kind"], e["action"]) for e in breaches(r)] == [("next", "escalate")]
    h = conv_hash(r, c)
    assert (h["state"], h["agent"], h["escalated"], h["sla_breaches"]) == (
        "assigned", "amy", "1", "1")


def test_breach_action_reassign(redis_srv, procs, tmp_path):
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:1"), CHATGW_SLA_ACTION="reassign")
    feed = AgentFeed(r, "amy")
    try:
        presence(r, "amy")
        wait_until(lambda: r.sismember("cg:{t:default}:online:general", "amy"), 5, "amy online")
        c = send(r, "slow1", "hello")
        wait_until(lambda: conv_hash(r, c).get("agent") == "amy", 5, "assigned to amy")
        presence(r, "bob")  # longer idle than amy once amy's slot is freed
        wait_until(lambda: r.sismember("cg:{t:default}:online:general", "bob"), 5, "bob online")
        CLOCK[0].advance(1000)
        wait_until(lambda: conv_hash(r, c).get("agent") == "bob", 5, "reassigned to bob")
        h = conv_hash(r, c)
        assert (h["state"], h["prev_agent"], h["assign_no"], h["sla_breaches"]) == (
            "assigned", "amy", "2", "1")
        note = feed.next_of("text", 5)  # amy is told it was taken from her
        assert note["conv"] == c and "requeued" in note["text"]
        assert [e["action"] for e in breaches(r)] == ["reassign"]
        assert not r.sismember("cg:{t:default}:agent:amy:convs", c) and r.sismember("cg:{t:default}:agent:bob:convs", c)
        assert s(r.hget("cg:{t:default}:agent:amy", "load")) == "0"
    finally:
        feed.close()


def test_breach_action_raise_priority(redis_srv, procs, tmp_path):
    r = redis_srv.r
    router(procs, config(tmp_path, first="chat:1"), CHATGW_SLA_ACTION="raise_priority")
    c = send(r, "slow2", "hello")
    wait_until(lambda: timer(r, f"first:{c}"), 5, "first-response timer armed")
    CLOCK[0].advance(1000)
    wait_until(lambda: breaches(r), 5, "breach")
    h = conv_hash(r, c)
    assert (h["state"], h["queue"], h["prio"]) == ("queued", "general", "7")
    assert r.zscore("cg:{t:default}:queue:general", c) == 2e13 + int(h["queued_at"])


def test_two_routers_a_breach_fires_once(redis_srv, procs, tmp_path):
    r = redis_srv.r
    cfg = config(tmp_path, first="chat:1")
    router(procs, cfg)
    router(procs, cfg)
    convs = [send(r, f"two{i}", "waiting") for i in range(6)]
    wait_until(lambda: all(timer(r, f"first:{c}") for c in convs), 5, "six timers armed")
    CLOCK[0].advance(1000)
    wait_until(lambda: len(breaches(r)) >= 6, 10, "six breaches")
    # a later breach: both routers' passes after the first six are done when it is recorded
    late = send(r, "two-late", "waiting")
    wait_until(lambda: timer(r, f"first:{late}"), 5, "the late timer armed")
    CLOCK[0].advance(1000)
    wait_until(lambda: len(breaches(r)) >= 7, 10, "the late breach")
    ev = [e for e in breaches(r) if e["conv"] != late]
    assert sorted(e["conv"] for e in ev) == sorted(convs)
    assert all(conv_hash(r, c)["sla_breaches"] == "1" for c in convs)


def test_timer_fires_after_router_restart(redis_srv, procs, tmp_path):
    r = redis_srv.r
    cfg = config(tmp_path, first="chat:2")
    rt = router(procs, cfg)
    c = send(r, "restart1", "hello")
    wait_until(lambda: timer(r, f"first:{c}") is not None, 5, "timer armed")
    due = timer(r, f"first:{c}")
    assert rt.stop() == 0
    CLOCK[0].set(due + 300)  # due while no router runs
    assert breaches(r) == []
    router(procs, cfg)
    wait_until(lambda: breaches(r), 5, "breach after restart")
    assert [(e["conv"], e["kind"]) for e in breaches(r)] == [(c, "first")]
    assert conv_hash(r, c)["escalated_to"] == "supervisors"


# ---- complaints ---------------------------------------------------------------------------------

def test_tickets_per_customer_are_limited(redis_srv, procs, tmp_path):
    """tickets_per_customer 1: the customer's second complaint (another conversation) is still a
    complaint but gets no new ticket: it is told its ticket, no deadlines are armed, and the
    queue counts it (tickets_limited)."""
    r = redis_srv.r
    router(procs, config(tmp_path), CHATGW_TICKETS_PER_CUSTOMER=1)
    c1 = send(r, "angry9", "I want to file a complaint")
    t1 = wait_bot(r, c1, "TICKET")[0]["text"]
    r.fcall("cg_customer_close", 1, "cg:{t:default}", c1, "angry9", now_ms())
    c2 = send(r, "angry9", "another complaint, again")
    assert c2 != c1
    assert wait_bot(r, c2, "TICKET")[0]["text"] == t1
    h2 = conv_hash(r, c2)
    assert h2["ticket"] == t1.split()[1] and h2["queue"] == "complaints"
    assert timer(r, f"complaint_respond:{c2}") is None and timer(r, f"complaint_resolve:{c2}") is None
    assert s(r.hget("cg:{t:default}:kpi:queue:complaints", "tickets_limited")) == "1"
    # another customer is not limited
    c3 = send(r, "angry10", "a complaint of mine")
    assert wait_bot(r, c3, "TICKET")[0]["text"] != t1


def test_complaints_get_consecutive_ticket_numbers(redis_srv, procs, tmp_path):
    r = redis_srv.r
    router(procs, config(tmp_path))
    staff(r, "complaints")  # each message then gets the waiting reply (what the test waits for)
    day = datetime.datetime.fromtimestamp(now_ms() / 1000, datetime.timezone.utc).strftime("%Y%m%d")
    c1 = send(r, "angry1", "I want to file a complaint")
    t1 = wait_bot(r, c1, "TICKET")[0]["text"]
    c2 = send(r, "angry2", "A journalist will hear about this complaint")
    t2 = wait_bot(r, c2, "TICKET")[0]["text"]
    assert t1 == f"TICKET TS-{day}-000001" and t2 == f"TICKET TS-{day}-000002"
    h1, h2 = conv_hash(r, c1), conv_hash(r, c2)
    assert (h1["ticket"], h1["complaint_class"]) == (f"TS-{day}-000001", "ordinary")
    assert (h2["ticket"], h2["complaint_class"]) == (f"TS-{day}-000002", "media")
    at = int(h2["complaint_at"])
    assert timer(r, f"complaint_respond:{c2}") == at + 3600 * 1000
    assert timer(r, f"complaint_resolve:{c2}") == at + 86400 * 1000
    assert timer(r, f"complaint_respond:{c1}") == int(h1["complaint_at"]) + 86400 * 1000
    # a further message from the same customer does not make a new ticket
    send(r, "angry1", "complaint again", conv=c1)
    wait_until(lambda: len(log_of(r, c1)) >= 6, 5, "second message handled")
    assert len(bot_texts(r, c1, "TICKET")) == 1
    assert int(r.get(f"cg:{{t:default}}:complaint:seq:{day}")) == 2
