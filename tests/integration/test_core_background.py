"""The calls every router makes on its own clock (router/timers.c cg_timer_claim, router/reap.c
cg_gw_reap), table-driven against a bare redis-server running the library as the binaries carry
it: their answers by name (redis/lib.lua answer()); times are arguments, nothing waits.

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_core_background.py
"""
import msgpack
import pytest

from conftest import load_libraries
from desk import message_map, named, s
from test_core_events import NOW, TENANT


def timers(r):
    return {s(m): int(sc) for m, sc in r.zrange(f"{TENANT}:timers", 0, -1, withscores=True)}


# (the timers armed: member -> due, limit) -> the members claimed, in due order
CLAIMS = [
    ("nothing due", {"pos:c1": NOW + 1}, 10, []),
    ("the due ones, first due first", {"first:c2": NOW, "pos:c1": NOW - 5, "idle:c3": NOW + 9},
     10, ["pos:c1", "first:c2"]),
    ("at most limit", {"pos:c1": NOW - 2, "first:c2": NOW - 1}, 1, ["pos:c1"]),
]


@pytest.mark.parametrize("name,armed,limit,members", CLAIMS, ids=[c[0] for c in CLAIMS])
def test_due_timers_are_claimed_with_one_lease(redis_srv, name, armed, limit, members):
    r = redis_srv.r
    load_libraries(r)
    r.zadd(f"{TENANT}:timers", armed)
    kind, res = named(r.fcall("cg_timer_claim", 1, TENANT,
                              msgpack.packb({"now": NOW, "lease": 5000, "limit": limit})))
    assert (kind, res) == ("claimed", {"lease": str(NOW + 5000), "members": members})
    after = timers(r)
    assert {m: after[m] for m in members} == {m: NOW + 5000 for m in members}  # leased
    assert {m: d for m, d in after.items() if m not in members} == \
        {m: d for m, d in armed.items() if m not in members}  # the others untouched


def connect(r, agent, sock):
    r.fcall("cg_presence", 1, TENANT, agent, sock, 1, agent.title(), 1, "general", NOW)


# (the gateway's liveness key now: None = expired, or its boot; limit) -> the answer for it
REAPS = [
    ("alive: nothing", "100", 10, [], 0),
    ("expired: its sockets dropped", None, 10, [("gone", "gw1", 2, ["amy", "bob"])], 0),
    ("restarted: the sockets of its earlier run", "200", 10,
     [("restarted", "gw1", 2, ["amy", "bob"])], 0),
    ("more than limit: the rest next call", None, 1, [("gone", "gw1", 1, ["amy"])], 1),
]


@pytest.mark.parametrize("name,boot,limit,gateways,more", REAPS, ids=[c[0] for c in REAPS])
def test_a_dead_gateways_sockets_are_reaped_with_a_named_answer(redis_srv, name, boot, limit,
                                                                  gateways, more):
    r = redis_srv.r
    load_libraries(r)
    r.set(f"{TENANT}:gw:gw1", "100")  # its run at the connects
    r.sadd(f"{TENANT}:gateways", "gw1")
    connect(r, "amy", "gw1:1")
    connect(r, "bob", "gw1:2")
    if boot is None:
        r.delete(f"{TENANT}:gw:gw1")
    else:
        r.set(f"{TENANT}:gw:gw1", boot)
    kind, res = named(r.fcall("cg_gw_reap", 1, TENANT,
                              msgpack.packb({"now": NOW + 1000, "limit": limit})))
    assert (kind, res["assigned"], res["more"]) == ("reaped", 0, more), res
    got = [(k, g["gateway"], g["dropped"], g["agents"]) for k, g in map(named, res["gateways"])]
    assert got == gateways
    gone = {a for g in gateways for a in g[3]}
    for agent in ("amy", "bob"):
        status = s(r.hget(f"{TENANT}:agent:{agent}", "status"))
        assert (status == "offline") == (agent in gone), (agent, status)


# ---- a rolling upgrade: the calls of the previous release, answered as it expects ------------

def test_the_previous_releases_calls_get_the_previous_answers(redis_srv):
    """Processes of the release before keep running beside this library until they are replaced
    (docs/architecture.md, "Library versions"): their positional calls of cg_timer_claim,
    cg_gw_reap and cg_append get the answers of that release."""
    r = redis_srv.r
    load_libraries(r)
    r.zadd(f"{TENANT}:timers", {"pos:c1": NOW - 1, "first:c2": NOW + 10})
    lease = str(NOW + 5000).encode()
    assert r.fcall("cg_timer_claim", 1, TENANT, NOW, 5000, 10) == [[b"pos:c1", lease]]
    r.sadd(f"{TENANT}:gateways", "gw1")
    connect(r, "amy", "gw1:1")
    assert r.fcall("cg_gw_reap", 1, TENANT, NOW + 1000, 10) == \
        [[[b"gw1", 1, b"gone", [b"amy"]]], 0, 0]
    m = {"v": 1, "type": "text", "id": "m1", "cmid": "k1", "channel": "web", "dir": "in",
         "role": "customer", "sender_id": "cu1", "ts": NOW, "text": "hello"}
    old = r.fcall("cg_append", 1, TENANT, "", "k1", "customer", "cu1", msgpack.packb(m), "conv-k",
                  "web", NOW, "log", "hello")
    assert old == [b"conv-k", 1, 0]
    # the same message through this release's call: a duplicate, answered by name
    again = named(r.fcall("cg_message", 1, TENANT, message_map(
        "", "k1", "customer", "cu1", msgpack.packb(m), "conv-x", "web", NOW, "log", "hello")))
    assert again == ("stored", {"conv": "conv-k", "seq": 1, "dup": 1})
