"""chatgw-router against a real redis-server: inbound messages are injected exactly as the gateway
does (FCALL cg_message ... log for customer content, XADD cg:{t:default}:in for agent command frames), and the
results are read back from Redis (conversation logs, hashes) and its pub/sub channels.

Run: BUILD=build/h-router /usr/bin/python3 -m pytest -q tests/integration/test_router.py
"""
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest

from conftest import load_libraries, wait_until
from desk import conv_hash, message_map, s, store, stored

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- helpers ------------------------------------------------------------------------------------

def now_ms():
    return int(time.time() * 1000)


def new_id():
    return uuid.uuid4().hex


def load_functions(r):
    """What a gateway does on connect (tests that inject before any router runs need it)."""
    load_libraries(r)


def customer_send(r, customer, text, conv="", cmid=None, channel="web"):
    """A customer's text, stored like the gateway does. Returns (conv, seq, dup)."""
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": cmid or new_id(), "channel": channel,
         "dir": "in", "role": "customer", "sender_id": customer, "ts": now_ms(), "text": text}
    res = store(r, conv, m["cmid"], "customer", customer, msgpack.packb(m),
                  new_id(), channel, now_ms(), "log", text[:160])
    return s(res[0]), res[1], res[2]


_last_ts = [0]


def command(r, m, conv=""):
    """An agent command frame, queued for the routers like the gateway does (ts increasing, as
    one gateway stamps the frames of one socket)."""
    m = dict(m)
    _last_ts[0] = max(now_ms(), _last_ts[0] + 1)
    m.setdefault("v", 1)
    m.setdefault("id", new_id())
    m.setdefault("ts", _last_ts[0])
    m.setdefault("role", "agent")
    return r.xadd("cg:{t:default}:in", {"c": conv or m.get("conv", ""), "s": 0, "m": msgpack.packb(m)})


def presence(r, agent, code, sock="gw1:1", skills=("general",), cap=1, name=None):
    m = {"type": "presence", "code": code, "sender_id": agent}
    if code in ("connect", "disconnect"):
        m.update({"sock": sock, "sender_name": name or agent.title(), "skills": list(skills),
                  "cap": cap})
    return command(r, m)


def staff(r, queue="general"):
    """An online agent of queue with no free slot (cap 0): the queue is staffed, so waiting
    customers get their position rather than the no_agent reply."""
    presence(r, f"busy-{queue}", "connect", sock=f"gwbusy:{queue}", skills=(queue,), cap=1)
    wait_until(lambda: r.sismember(f"cg:{{t:default}}:online:{queue}", f"busy-{queue}"), 5, f"{queue} staffed")
    r.hset(f"cg:{{t:default}}:agent:busy-{queue}", "cap", 0)  # a cap of 0 is not on the wire: no free slot


def close(r, agent, conv, code="resolved", cmid=None):
    return command(r, {"type": "close", "conv": conv, "code": code, "sender_id": agent,
                       "cmid": cmid or new_id()})


def pick(r, agent, conv, cmid=None):
    return command(r, {"type": "pick", "conv": conv, "sender_id": agent, "cmid": cmid or new_id()})


def log_of(r, conv):
    """The conversation log as [(seq, msg dict)]."""
    out = []
    for eid, fields in r.xrange(f"cg:{{t:default}}:conv:{conv}:log"):
        out.append((int(s(eid).split("-")[0]), msgpack.unpackb(fields[b"m"], raw=False)))
    return out


def agent_hash(r, agent):
    return {s(k): s(v) for k, v in r.hgetall(f"cg:{{t:default}}:agent:{agent}").items()}


def events(r, conv, typ):
    return [m for _, m in log_of(r, conv) if m.get("type") == typ]


def wait_log_len(r, conv, n, timeout=10):
    return wait_until(lambda: (lambda l: l if len(l) >= n else None)(log_of(r, conv)), timeout,
                 f"{n} entries in the log of {conv}")


def wait_assigned(r, conv, timeout=10):
    return wait_until(lambda: events(r, conv, "assigned"), timeout, f"conv {conv} to be announced")[0]


def wait_drained(r, timeout=10):
    """Every cg:{t:default}:in entry processed and acked, nothing left to announce."""
    def done():
        info = r.xinfo_groups("cg:{t:default}:in")
        return (info and info[0]["pending"] == 0 and info[0].get("lag") in (0, None)
                and r.scard("cg:{t:default}:outbox:assign") == 0
                and s(info[0]["last-delivered-id"]) == s(r.xinfo_stream("cg:{t:default}:in")["last-generated-id"]))
    wait_until(done, timeout, "cg:{t:default}:in to be drained")


class AgentFeed:
    """Messages published on cg:{t:default}:a:<agent> (8-byte prefix + msgpack)."""

    def __init__(self, r, agent):
        self.ps = r.pubsub()
        self.ps.subscribe(f"cg:{{t:default}}:a:{agent}")
        # the server's confirmation: from here on nothing published is missed
        wait_until(lambda: (self.ps.get_message(timeout=0.05) or {}).get("type") == "subscribe", 5,
              "the subscription")

    def next(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.ps.get_message(timeout=max(0.01, deadline - time.monotonic()))
            if msg and msg["type"] == "message":
                data = msg["data"]
                assert data[:8] == b"\0" * 8
                return msgpack.unpackb(data[8:], raw=False)
        raise AssertionError("nothing published on the agent channel")

    def close(self):
        self.ps.close()


@pytest.fixture
def feeds(redis_srv):
    opened = []

    def open_feed(agent):
        f = AgentFeed(redis_srv.r, agent)
        opened.append(f)
        return f
    yield open_feed
    for f in opened:
        f.close()


FAST = {"CHATGW_BLOCK_MS": 200, "CHATGW_CLAIM_IDLE_MS": 1000}
_ids = iter(range(1, 1000))


def start_router(procs, env=None):
    """A router that has loaded the functions and is reading (its "router <id> ready" line; the
    connection's own "ready" lines come earlier)."""
    rid = f"rt{next(_ids)}"
    p = procs.router(dict(env or FAST, CHATGW_ROUTER_ID=rid), wait_ready=False)
    p.router_id = rid
    p.wait_log(f"router {rid} ready", 15)
    return p


# ---- tests --------------------------------------------------------------------------------------

def test_new_conversation_greeting_then_position(redis_srv, procs):
    r = redis_srv.r
    router = start_router(procs, FAST)
    staff(r)
    conv, seq, dup = customer_send(r, "cust1", "where is my order?")
    assert (seq, dup) == (1, 0)
    log = wait_log_len(r, conv, 3)
    (s1, m1), (s2, m2), (s3, m3) = log[:3]
    assert (s1, m1["role"], m1["text"]) == (1, "customer", "where is my order?")
    assert (s2, m2["type"], m2["role"]) == (2, "text", "bot")
    assert m2["text"].startswith("Hello!")
    assert (s3, m3["type"], m3["role"], m3["position"]) == (3, "text", "bot", 1)
    assert "number 1 in the queue" in m3["text"] and m3["wait"] == 120
    h = conv_hash(r, conv)
    assert (h["state"], h["queue"], h["preview"]) == ("queued", "general", "where is my order?")
    # a second message while waiting: another position reply, still no duplicate greeting
    customer_send(r, "cust1", "hello?")
    log = wait_log_len(r, conv, 5)
    assert [m["type"] for _, m in log] == ["text"] * 5
    assert sum(1 for _, m in log if m.get("text", "").startswith("Hello!")) == 1
    # the queue snapshot
    snap = wait_until(lambda: r.get("cg:{t:default}:qsnap:general"), 5, "queue snapshot")
    q = msgpack.unpackb(snap, raw=False)
    assert q["type"] == "queue" and q["queue"] == "general"
    assert [i["conv"] for i in q["items"]] == [conv]
    assert q["items"][0]["position"] == 1 and q["items"][0]["preview"] == "where is my order?"
    wait_drained(r)
    assert router.proc.poll() is None


def test_agent_connect_assigns_waiting_conversation(redis_srv, procs, feeds):
    r = redis_srv.r
    start_router(procs, FAST)
    conv, _, _ = customer_send(r, "cust1", "hi")
    wait_log_len(r, conv, 3)
    feed = feeds("alice")
    presence(r, "alice", "connect", cap=2, name="Alice")
    ev = wait_assigned(r, conv)
    assert (ev["agent_id"], ev["agent_name"], ev["queue"], ev["role"]) == \
        ("alice", "Alice", "general", "system")
    assert ev["text"] == "Alice has joined"
    note = feed.next()
    assert (note["type"], note["conv"], note["agent_id"], note["queue"]) == \
        ("assigned", conv, "alice", "general")
    h = conv_hash(r, conv)
    assert (h["state"], h["agent"], h["assign_no"]) == ("assigned", "alice", "1")
    a = agent_hash(r, "alice")
    assert (a["status"], a["load"], a["cap"]) == ("online", "1", "2")
    assert r.smembers("cg:{t:default}:agent:alice:convs") == {conv.encode()}
    # still room: alice is available, a new customer is assigned at once without waiting
    conv2, _, _ = customer_send(r, "cust2", "hello")
    ev2 = wait_assigned(r, conv2)
    assert ev2["agent_id"] == "alice"
    types = [m["type"] for _, m in log_of(r, conv2)]
    assert types == ["text", "text", "assigned"]
    wait_drained(r)
    # steady state: the customer writes again, nothing is announced twice
    customer_send(r, "cust2", "thanks")
    wait_drained(r)
    assert len(events(r, conv2, "assigned")) == 1


def test_capacity_one_then_close_assigns_next(redis_srv, procs, feeds):
    r = redis_srv.r
    start_router(procs, FAST)
    feed = feeds("bob")
    presence(r, "bob", "connect", cap=1)
    wait_until(lambda: r.zscore("cg:{t:default}:avail:general", "bob") is not None, 5, "bob available")
    c1, _, _ = customer_send(r, "c1", "first")
    assert wait_assigned(r, c1)["agent_id"] == "bob"
    assert feed.next()["conv"] == c1
    c2, _, _ = customer_send(r, "c2", "second")
    log2 = wait_log_len(r, c2, 3)
    assert log2[2][1]["position"] == 1
    assert conv_hash(r, c2)["state"] == "queued"
    assert r.zscore("cg:{t:default}:avail:general", "bob") is None  # full
    close(r, "bob", c1, code="resolved_workaround")
    closed = wait_until(lambda: events(r, c1, "closed"), 10, "closed event")[0]
    assert (closed["code"], closed["role"]) == ("resolved_workaround", "system")
    assert closed["text"].startswith("This conversation has been closed")
    assert wait_assigned(r, c2)["agent_id"] == "bob"
    assert feed.next()["conv"] == c2
    h1 = conv_hash(r, c1)
    assert (h1["state"], h1["resolution"]) == ("closed", "resolved_workaround")
    assert agent_hash(r, "bob")["load"] == "1"
    assert r.smembers("cg:{t:default}:agent:bob:convs") == {c2.encode()}
    # the customer of the closed conversation writes again: a new conversation
    c3, _, _ = customer_send(r, "c1", "one more thing")
    assert c3 != c1
    wait_until(lambda: conv_hash(r, c3).get("state") == "queued", 10, "new conversation queued")
    wait_drained(r)


def test_pick_from_queue(redis_srv, procs, feeds):
    r = redis_srv.r
    start_router(procs, FAST)
    presence(r, "carol", "connect", cap=2)
    presence(r, "carol", "away")
    wait_until(lambda: agent_hash(r, "carol").get("status") == "away", 5, "carol away")
    conv, _, _ = customer_send(r, "cust", "help")
    wait_log_len(r, conv, 3)
    assert conv_hash(r, conv)["state"] == "queued"  # away agents get nothing pushed
    feed = feeds("carol")
    pick(r, "carol", conv)
    ev = wait_assigned(r, conv)
    assert ev["agent_id"] == "carol"
    assert feed.next()["conv"] == conv
    assert r.zcard("cg:{t:default}:queue:general") == 0
    # picking it again (or a conversation that is not waiting) is refused with an error
    dave = feeds("dave")
    presence(r, "dave", "connect", cap=1)
    pick(r, "dave", conv, cmid="p-7")
    err = dave.next()
    assert (err["type"], err["code"], err["cmid"], err["conv"]) == \
        ("error", "pick_failed", "p-7", conv)
    assert len(events(r, conv, "assigned")) == 1
    wait_drained(r)


def test_close_by_wrong_agent_is_refused(redis_srv, procs, feeds):
    r = redis_srv.r
    start_router(procs, FAST)
    presence(r, "erin", "connect", cap=1)
    presence(r, "frank", "connect", cap=1, sock="gw2:9")
    wait_until(lambda: r.zcard("cg:{t:default}:avail:general") == 2, 5, "two agents available")
    conv, _, _ = customer_send(r, "cust", "hello")
    owner = wait_assigned(r, conv)["agent_id"]
    other = "frank" if owner == "erin" else "erin"
    feed = feeds(other)
    close(r, other, conv, cmid="k-1")
    err = feed.next()
    assert (err["type"], err["code"], err["cmid"]) == ("error", "not_assigned", "k-1")
    assert conv_hash(r, conv)["state"] == "assigned"
    # the owner closes it; a second close by someone else says closed
    close(r, owner, conv)
    wait_until(lambda: events(r, conv, "closed"), 5, "closed")
    close(r, other, conv, cmid="k-2")
    err = feed.next()
    assert (err["code"], err["cmid"]) == ("closed", "k-2")
    # the owner's repeated close is harmless: no error, no second closed event
    close(r, owner, conv)
    wait_drained(r)
    assert len(events(r, conv, "closed")) == 1


def test_agent_disconnect_and_undecodable_entries(redis_srv, procs):
    r = redis_srv.r
    router = start_router(procs, FAST)
    r.xadd("cg:{t:default}:in", {"c": "x", "s": 1, "m": b"\xc1garbage"})
    r.xadd("cg:{t:default}:in", {"c": "x", "s": 1})
    presence(r, "gina", "connect", cap=1, sock="gw1:1")
    presence(r, "gina", "connect", cap=1, sock="gw2:1")
    presence(r, "gina", "disconnect", sock="gw1:1")
    wait_until(lambda: r.scard("cg:{t:default}:agent:gina:socks") == 1, 5, "one socket left")
    assert agent_hash(r, "gina")["status"] == "online"
    presence(r, "gina", "disconnect", sock="gw2:1")
    wait_until(lambda: agent_hash(r, "gina").get("status") == "offline", 5, "gina offline")
    assert r.zscore("cg:{t:default}:avail:general", "gina") is None
    conv, _, _ = customer_send(r, "cust", "anyone?")
    wait_log_len(r, conv, 3)
    assert conv_hash(r, conv)["state"] == "queued"  # never to an offline agent
    wait_drained(r)
    router.wait_log("dropped")


def test_two_routers_many_customers_and_agents(redis_srv, procs):
    r = redis_srv.r
    start_router(procs, FAST)
    start_router(procs, FAST)
    agents = [f"agent{i}" for i in range(5)]
    for i, a in enumerate(agents):
        presence(r, a, "connect", cap=3, sock=f"gw{i % 2}:{i}")
    presence(r, "ghost", "connect", cap=3, sock="gw9:1")
    presence(r, "ghost", "disconnect", sock="gw9:1")
    presence(r, "sleepy", "connect", cap=3, sock="gw9:2")
    presence(r, "sleepy", "away")
    wait_until(lambda: agent_hash(r, "sleepy").get("status") == "away"
          and agent_hash(r, "ghost").get("status") == "offline"
          and r.zcard("cg:{t:default}:avail:general") == 5, 10, "agents ready")

    stop = threading.Event()
    overload = []

    def watch_loads():
        import redis as redislib
        rr = redislib.Redis(port=redis_srv.port)
        while not stop.is_set():
            for a in agents:
                load = int(rr.hget(f"cg:{{t:default}}:agent:{a}", "load") or 0)
                if load > 3 or rr.scard(f"cg:{{t:default}}:agent:{a}:convs") > 3:
                    overload.append((a, load))
            time.sleep(0.005)
        rr.close()
    watcher = threading.Thread(target=watch_loads)
    watcher.start()
    try:
        with ThreadPoolExecutor(10) as ex:
            convs = list(ex.map(lambda i: customer_send(r, f"cust{i}", f"question {i}")[0],
                                range(50)))
        assert len(set(convs)) == 50
        # agents close what they have, concurrently, until every conversation was served
        closed = set()
        deadline = time.monotonic() + 60
        while len(closed) < 50:
            assert time.monotonic() < deadline, f"only {len(closed)} of 50 served"
            for a in agents:
                for c in r.smembers(f"cg:{{t:default}}:agent:{a}:convs"):
                    c = s(c)
                    if c not in closed and events(r, c, "assigned"):
                        closed.add(c)
                        close(r, a, c)
            time.sleep(0.02)
        wait_until(lambda: all(conv_hash(r, c).get("state") == "closed" for c in convs), 20,
              "every conversation closed")
        wait_drained(r, 20)
    finally:
        stop.set()
        watcher.join()
    assert not overload, overload[:5]
    for c in convs:
        h = conv_hash(r, c)
        ev = events(r, c, "assigned")
        assert len(ev) == 1 and h["assign_no"] == "1", (c, ev, h)
        assert ev[0]["agent_id"] == h["agent"] and h["agent"] in agents
        assert len(events(r, c, "closed")) == 1
        texts = [m["text"] for _, m in log_of(r, c) if m.get("role") == "bot"]
        assert sum(1 for t in texts if t.startswith("Hello!")) == 1
    for a in agents:
        h = agent_hash(r, a)
        assert h["load"] == "0" and r.scard(f"cg:{{t:default}}:agent:{a}:convs") == 0
    for a in ("ghost", "sleepy"):  # offline / away: never assigned anything
        assert agent_hash(r, a).get("load", "0") == "0"
        assert r.scard(f"cg:{{t:default}}:agent:{a}:convs") == 0


def test_pending_entries_of_a_dead_consumer_are_claimed(redis_srv, procs):
    r = redis_srv.r
    load_functions(r)
    r.xgroup_create("cg:{t:default}:in", "routers", id="0", mkstream=True)
    convs = [customer_send(r, f"cust{i}", f"hi {i}")[0] for i in range(5)]
    got = r.xreadgroup("routers", "dead", {"cg:{t:default}:in": ">"}, count=10)
    assert len(got[0][1]) == 5
    assert r.xpending("cg:{t:default}:in", "routers")["pending"] == 5
    router = start_router(procs, {"CHATGW_CLAIM_IDLE_MS": 200, "CHATGW_BLOCK_MS": 200})
    for c in convs:
        log = wait_log_len(r, c, 3)
        assert log[2][1]["role"] == "bot"  # the waiting reply
    router.wait_log("claimed")
    wait_until(lambda: r.xpending("cg:{t:default}:in", "routers")["pending"] == 0, 10, "no pending entry")


def test_router_killed_mid_burst_another_finishes(redis_srv, procs):
    r = redis_srv.r
    env = {"CHATGW_CLAIM_IDLE_MS": 300, "CHATGW_BLOCK_MS": 200, "CHATGW_READ_COUNT": 8}
    first = start_router(procs, env)
    for i in range(4):
        presence(r, f"ag{i}", "connect", cap=2, sock=f"gw:{i}")
    pipe = r.pipeline(transaction=False)
    for i in range(40):
        m = {"v": 1, "type": "text", "id": new_id(), "cmid": new_id(), "channel": "web",
             "dir": "in", "role": "customer", "sender_id": f"cust{i}", "ts": now_ms(),
             "text": f"burst {i}"}
        pipe.fcall("cg_message", 1, "cg:{t:default}",
                   message_map("", m["cmid"], "customer", f"cust{i}", msgpack.packb(m), new_id(),
                               "web", now_ms(), "log", m["text"]))
    convs = [s(stored(res)[0]) for res in pipe.execute()]
    first.wait_log("conv ", 10)  # it is in the middle of the burst
    assert first.kill9() == -signal.SIGKILL
    left = r.xpending("cg:{t:default}:in", "routers")["pending"]
    second = start_router(procs, env)
    for c in convs:
        wait_until(lambda: conv_hash(r, c).get("state") in ("queued", "assigned")
              and len(log_of(r, c)) >= 3, 15, f"conv {c} routed")
    wait_drained(r, 15)
    assigned = 0
    for c in convs:
        log = log_of(r, c)
        bot = [m for _, m in log if m.get("role") == "bot"]
        assert sum(1 for m in bot if m["text"].startswith("Hello!")) == 1, log
        ev = events(r, c, "assigned")
        assert len(ev) <= 1
        assigned += len(ev)
        if conv_hash(r, c)["state"] == "assigned":
            assert len(ev) == 1
    assert assigned == 8
    for i in range(4):
        assert agent_hash(r, f"ag{i}")["load"] == "2"
    if left:  # what the dead router had read and not acked was taken over
        second.wait_log("claimed")


def test_redis_restart_router_carries_on(redis_srv, procs):
    r = redis_srv.r
    router = start_router(procs, FAST)
    redis_srv.kill()
    time.sleep(0.3)
    redis_srv.start()  # empty: no persistence
    router.wait_log("Redis functions loaded", 15,
                    start=router.wait_log(f"router {router.router_id} ready") + 1)
    wait_until(lambda: r.exists("cg:{t:default}:in"), 10, "group re-created")
    conv, _, _ = customer_send(r, "cust", "back?")
    wait_log_len(r, conv, 3, 15)
    wait_drained(r)


def test_sigterm_clean_shutdown(redis_srv, procs):
    router = start_router(procs, FAST)
    assert router.stop(signal.SIGTERM) == 0
    assert "clean shutdown" in router.text()
    router2 = start_router(procs, FAST)
    customer_send(redis_srv.r, "cust", "hi")
    assert router2.stop(signal.SIGINT) == 0
    assert "clean shutdown" in router2.text()
