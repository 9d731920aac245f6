"""The routing timers and the outbox of the core (redis/event.lua cg_route_timer and
cg_outbox_announce), table-driven against a bare redis-server running the library as the
binaries carry it: one call each, what the call assigns announced in it; times are arguments (an
injected clock), nothing waits.

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_core_route.py
"""
import msgpack
import pytest

from conftest import load_libraries
from desk import log_of, named, s
from test_core_events import NOW, TENANT, call, customer_text, event, new_id, timers

OFFER_MS = 30_000


def shell(type_, **f):
    m = {"v": 1, "type": type_, "id": new_id(), "dir": "out", "role": "system",
         "sender_id": "chatgw", "ts": NOW}
    m.update(f)
    return msgpack.packb(m)


def rows_fields():
    """What the router adds to every event map (router/say.c say_rows_fields)."""
    return {"assigned": shell("assigned", text="{name} has joined"), "offer_ms": OFFER_MS,
            "idle_ms": 0}


def online(r, agent, cap=1, queue="general"):
    r.fcall("cg_presence", 1, TENANT, agent, f"gw1:{agent}", 1, agent.title(), cap, queue, NOW)


def pack(a):
    return msgpack.packb(a, use_bin_type=False)


def route_timer(r, member, now, **over):
    lease = r.zscore(f"{TENANT}:timers", member)
    a = {"member": member, "lease": str(int(lease)) if lease is not None else "1", "now": now,
         "max_misses": 2, "missed": shell("text", text="You did not answer {conv}."),
         "away": shell("text", text="Away after {misses} misses."),
         "away_status": shell("presence", code="away")}
    a.update(rows_fields())
    a.update(over)
    return r.fcall("cg_route_timer", 1, TENANT, pack(a))


def notices(sub):
    out = []
    while True:
        got = sub.get_message(timeout=0.2)
        if got is None:
            return out
        if got["type"] == "message":
            out.append(msgpack.unpackb(got["data"][8:], raw=False))


def new_conv(r, customer):
    conv = customer_text(r, customer, "hello")
    call(r, event(conv, greet="", **rows_fields()))
    return conv


def subscribe(r, *agents):
    sub = r.pubsub()
    sub.subscribe(*[f"{TENANT}:a:{a}" for a in agents])
    for _ in agents:
        assert sub.get_message(timeout=5)["type"] == "subscribe"
    return sub


# (misses the agent had before, max_misses) -> (away after this miss)
MISSES = [
    ("first miss", 0, 2, 0),
    ("second miss: away", 1, 2, 1),
    ("never away", 5, 0, 0),
]


@pytest.mark.parametrize("name,before,max_misses,away", MISSES, ids=[m[0] for m in MISSES])
def test_an_offer_timeout_is_one_call(redis_srv, name, before, max_misses, away):
    """offer:<conv> fired: taken back, offered to the next agent and announced, the agent who did
    not answer told (and set away at max_misses), all in the one call."""
    r = redis_srv.r
    load_libraries(r)
    online(r, "amy")
    conv = new_conv(r, "cu1")
    assert s(r.hget(f"{TENANT}:conv:{conv}", "agent")) == "amy"
    online(r, "bob")
    if before:
        r.hset(f"{TENANT}:agent:amy", "offer_misses", before)
    sub = subscribe(r, "amy", "bob")
    due = timers(r)[f"offer:{conv}"]
    what, res = named(route_timer(r, f"offer:{conv}", due, max_misses=max_misses))
    rows = res.pop("rows")
    assert (what, res) == ("missed", {"conv": conv, "agent": "amy", "misses": before + 1,
                                      "away": away, "queue": "general"})
    assert [x[1] for x in rows] == ["bob"]
    h = r.hgetall(f"{TENANT}:conv:{conv}")
    assert (s(h[b"agent"]), s(h[b"prev_agent"]), s(h[b"assign_no"])) == ("bob", "amy", "2")
    assert not r.sismember(f"{TENANT}:outbox:assign", conv)
    assert timers(r)[f"offer:{conv}"] == due + OFFER_MS  # armed for bob's offer
    assert [m["agent_id"] for m in log_of(r, conv) if m["type"] == "assigned"] == ["amy", "bob"]
    got = notices(sub)
    to_amy = [m for m in got if m["type"] != "assigned"]
    assert to_amy[0]["text"] == f"You did not answer {conv}." and to_amy[0]["conv"] == conv
    if away:
        assert to_amy[1]["text"] == f"Away after {before + 1} misses."
        assert (to_amy[2]["type"], to_amy[2]["code"], to_amy[2]["agent_id"]) == \
            ("presence", "away", "amy")
        assert s(r.hget(f"{TENANT}:agent:amy", "status")) == "away"
    else:
        assert len(to_amy) == 1
    [a] = [m for m in got if m["type"] == "assigned"]
    assert (a["conv"], a["agent_id"]) == (conv, "bob")
    sub.close()


def test_a_stale_or_answered_offer_does_nothing(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    online(r, "amy")
    conv = new_conv(r, "cu1")
    due = timers(r)[f"offer:{conv}"]
    assert named(route_timer(r, f"offer:{conv}", due, lease="12")) == ("stale", {})
    r.hset(f"{TENANT}:conv:{conv}", "offer_no", "0")  # answered: the assignment is no longer offered
    assert named(route_timer(r, f"offer:{conv}", due)) == ("done", {})
    assert s(r.hget(f"{TENANT}:conv:{conv}", "agent")) == "amy"


def test_an_overflow_timer_assigns_and_announces_in_the_call(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    r.fcall("cg_queuecfg", 1, TENANT, NOW, "general", "push", 5, "", "", "vip", 60, 0, 0,
            "vip", "push", 5, "", "", "", 0, 0, 0)
    conv = new_conv(r, "cu1")
    assert s(r.hget(f"{TENANT}:conv:{conv}", "state")) == "queued"
    online(r, "vic", queue="vip")
    due = timers(r)[f"overflow:general"]
    assert due == NOW + 60_000
    sub = subscribe(r, "vic")
    what, res = named(route_timer(r, "overflow:general", due))
    assert (what, res["queue"], res["to"]) == ("overflow", "general", ["vip"])
    assert [(x[0], x[1]) for x in res["rows"]] == [(conv, "vic")]
    [a] = [m for m in notices(sub) if m["type"] == "assigned"]
    assert a["conv"] == conv
    assert not r.sismember(f"{TENANT}:outbox:assign", conv)


def test_a_bad_route_timer_map_is_named(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    with pytest.raises(Exception, match="BADARG a msgpack map with member, lease and now"):
        r.fcall("cg_route_timer", 1, TENANT, pack({"member": "offer:x"}))


def test_the_outbox_is_announced_in_one_call(redis_srv):
    """Assignments of a call that did not announce them (a queue's configuration, a router that
    died before announcing) are announced by one cg_outbox_announce; one no longer assigned is
    dropped from the outbox."""
    r = redis_srv.r
    load_libraries(r)
    convs = [customer_text(r, f"cu{i}", "hi") for i in range(3)]
    for c in convs:
        call(r, event(c, greet=""))  # no announce fields: left in the outbox
    online(r, "amy", cap=3)  # cg_presence alone: what it assigns stays in the outbox
    assert r.scard(f"{TENANT}:outbox:assign") == 3
    r.hset(f"{TENANT}:conv:{convs[2]}", "state", "closed")
    sub = subscribe(r, "amy")
    a = {"now": NOW, "limit": 10}
    a.update(rows_fields())
    what, res = named(r.fcall("cg_outbox_announce", 1, TENANT, pack(a)))
    assert what == "outbox" and sorted(x[0] for x in res["rows"]) == sorted(convs[:2])
    assert r.scard(f"{TENANT}:outbox:assign") == 0
    assert sorted(m["conv"] for m in notices(sub) if m["type"] == "assigned") == sorted(convs[:2])
    for c in convs[:2]:
        assert [m["agent_id"] for m in log_of(r, c) if m["type"] == "assigned"] == ["amy"]
    sub.close()
