"""The status an agent connects with (hello "code", docs/protocol.md), end to end: real
redis-server, gateway and router, real WebSocket clients.

An agent whose hello says away is never offered a waiting conversation on connect (the gateway
sends one event, connect_away, and the routers set the socket and the status in one step);
presence online then brings the assignment. Without a code an agent connects online, as before. Any other code is refused
with bad_value, and the connection may say hello again.

Also: an away agent re-announced by its stalled gateway (reaped, then running again) comes back
away.

Run: BUILD=build /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_console_status.py
"""
import signal

import pytest
import redis as redislib

from chat import Client, agent, customer, new_cmid
from conftest import wait_until
from desk import conv_hash, run, s


def desk(procs):
    gw = procs.gateway()
    procs.router({"CHATGW_BLOCK_MS": 200})
    return gw


def connected(r, agent_id):
    """The router processed the agent's connect: its socket is in cg:{t:default}:agent:<a>:socks (the
    connect's cg_presence call, which also makes the offers, is one atomic function call)."""
    return r.scard(f"cg:{{t:default}}:agent:{agent_id}:socks") == 1


async def waiting(gw, r, text):
    """A customer whose first message is queued (no agent yet): (client, conv)."""
    c = await customer(gw)
    conv = (await c.say(text))["conv"]
    wait_until(lambda: conv_hash(r, conv).get("state") == "queued", 10, f"{conv} queued")
    return c, conv


def test_hello_away_gets_nothing_until_online(procs, redis_srv):
    gw = desk(procs)
    r = redis_srv.r

    async def scenario():
        c, conv = await waiting(gw, r, "is anyone there?")

        a = await Client.connect(gw.ws, "/ws/agent")
        await a.hello(token=procs.agent_token("alice"), code="away")
        wait_until(lambda: connected(r, "alice"), 10, "alice's connect processed")
        # the connect found the agent away: nothing offered, the customer still waits
        assert s(r.hget("cg:{t:default}:agent:alice", "status")) == "away"
        assert conv_hash(r, conv)["state"] == "queued"
        assert r.zscore("cg:{t:default}:queue:general", conv) is not None
        assert not r.zscore("cg:{t:default}:avail:general", "alice")
        assert not [f for f in a.frames if f.get("type") == "assigned"]

        # the agent goes online: the waiting conversation is its
        await a.send({"type": "presence", "code": "online", "cmid": "p1"})
        await a.expect_type("ack", cmid="p1")
        await a.expect_type("assigned", conv=conv, agent_id="alice")
        await c.expect_type("assigned", conv=conv)
        assert s(r.hget("cg:{t:default}:agent:alice", "status")) == "online"
        assert conv_hash(r, conv)["agent"] == "alice"
        await a.close()
        await c.close()

    run(scenario())


def test_hello_online_and_default_connect_online(procs, redis_srv):
    gw = desk(procs)
    r = redis_srv.r

    async def scenario():
        # no code: online at once, as every agent tool connected so far
        c1, conv = await waiting(gw, r, "first customer")
        bob = await agent(gw, procs.agent_token("bob"))
        await bob.expect_type("assigned", conv=conv, agent_id="bob")
        assert s(r.hget("cg:{t:default}:agent:bob", "status")) == "online"

        # code online: the same
        c2, conv2 = await waiting(gw, r, "second customer")
        carol = await Client.connect(gw.ws, "/ws/agent")
        await carol.hello(token=procs.agent_token("carol"), code="online")
        await carol.expect_type("assigned", conv=conv2, agent_id="carol")
        assert s(r.hget("cg:{t:default}:agent:carol", "status")) == "online"
        for x in (bob, carol, c1, c2):
            await x.close()

    run(scenario())


def test_hello_away_then_reconnect_keeps_the_chosen_status(procs, redis_srv):
    """A console reload: the away agent's socket closes and a new one says hello away again;
    the customer waiting meanwhile is not offered to it."""
    gw = desk(procs)
    r = redis_srv.r
    token = procs.agent_token("dora")

    async def scenario():
        a = await Client.connect(gw.ws, "/ws/agent")
        await a.hello(token=token, code="away")
        wait_until(lambda: connected(r, "dora"), 10, "dora's connect processed")
        await a.close()
        wait_until(lambda: s(r.hget("cg:{t:default}:agent:dora", "status")) == "offline", 10, "dora offline")

        c, conv = await waiting(gw, r, "hello?")
        b = await Client.connect(gw.ws, "/ws/agent")
        await b.hello(token=token, code="away")
        wait_until(lambda: connected(r, "dora"), 10, "dora's new connect processed")
        assert s(r.hget("cg:{t:default}:agent:dora", "status")) == "away"
        assert conv_hash(r, conv)["state"] == "queued"
        assert not [f for f in b.frames if f.get("type") == "assigned"]
        await b.close()
        await c.close()

    run(scenario())


def test_hello_code_other_than_online_or_away_is_refused(procs, redis_srv):
    gw = desk(procs)
    r = redis_srv.r

    async def scenario():
        a = await Client.connect(gw.ws, "/ws/agent")
        cmid = new_cmid("h")
        await a.send({"type": "hello", "token": procs.agent_token("erin"), "code": "busy",
                      "cmid": cmid})
        err = await a.expect_type("error", cmid=cmid)
        assert err["code"] == "bad_value"
        assert "'code'" in err["text"] and "busy" in err["text"], err
        assert not r.exists("cg:{t:default}:agent:erin")
        # not signed in, but still connected: a valid hello is accepted
        await a.hello(token=procs.agent_token("erin"), code="away")
        wait_until(lambda: connected(r, "erin"), 10, "erin's connect processed")
        assert s(r.hget("cg:{t:default}:agent:erin", "status")) == "away"

        # a customer's hello carries no status: a code is ignored, as before
        c = await Client.connect(gw.ws, "/ws/customer")
        w = await c.hello(code="away")
        assert w["role"] == "customer"
        await c.close()
        await a.close()

    run(scenario())


def test_away_agent_stays_away_when_its_stalled_gateway_announces_it_again(procs, redis_srv):
    """A gateway silent for three heartbeats is reaped (its agents offline); when it runs again it
    announces its agent connections again. An agent whose own choice was away comes back away:
    the conversation waiting meanwhile is not offered to it."""
    r = redis_srv.r
    gw = procs.gateway({"CHATGW_HEARTBEAT_MS": 200})
    router = procs.router({"CHATGW_GATEWAY_REAP_MS": 100, "CHATGW_BLOCK_MS": 200})
    wait_until(lambda: r.exists("cg:{t:default}:gw:gw1"), 5, "gw1 beating")

    async def scenario():
        a = await Client.connect(gw.ws, "/ws/agent")
        await a.hello(token=procs.agent_token("fred"), code="away")
        wait_until(lambda: connected(r, "fred"), 10, "fred's connect processed")
        sock1 = r.smembers("cg:{t:default}:agent:fred:socks")
        c, conv = await waiting(gw, r, "waiting through a stall")
        gw.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: s(r.hget("cg:{t:default}:agent:fred", "status")) == "offline", 10,
                       "fred reaped while gw1 is stopped")
            router.wait_log("gateway gw1 stopped heartbeating: 1 agent sockets dropped")
        finally:
            gw.proc.send_signal(signal.SIGCONT)
        gw.wait_log("had expired: 1 agent connections announced again")
        wait_until(lambda: connected(r, "fred") and r.smembers("cg:{t:default}:agent:fred:socks") != sock1,
                   10, "fred's connect under a new socket id processed")
        assert s(r.hget("cg:{t:default}:agent:fred", "status")) == "away"
        assert conv_hash(r, conv)["state"] == "queued"
        assert not [f for f in a.frames if f.get("type") == "assigned"]
        await a.close()
        await c.close()

    run(scenario())


def test_a_connect_away_is_one_step(procs, redis_srv):
    """What the gateway sends for a hello with code away: one presence event, connect_away, that
    sets the socket and the status in one step (cg_presence with status away), as the routers
    call it. With a customer waiting and the agent free, nothing is offered to it, with any
    number of routers; an older disconnect of its previous console (a reload) or an older
    online run after it leave it away."""
    procs.router()  # loads the library
    r = redis_srv.r
    t = "cg:{t:default}"
    ts, now = "1800000000000", "1800000000005"
    conv = "waiting-conv"
    r.hset(f"{t}:conv:{conv}", mapping={"state": "new", "customer": "cu", "channel": "web",
                                        "created": ts, "seq": 0})
    r.execute_command("FCALL", "cg_enqueue", 1, t, conv, "general", 5, now)
    assert conv_hash(r, conv)["state"] == "queued"

    def connect(a, sock, status="", at=ts):
        return r.execute_command("FCALL", "cg_presence", 1, t, a, sock, 1, a, 1, "general", now,
                                 at, status)

    assert connect("gina", "gw9:2", "away") == []  # nothing offered
    assert conv_hash(r, conv)["state"] == "queued"
    # the previous console's disconnect, older, processed after (another router)
    r.execute_command("FCALL", "cg_presence", 1, t, "gina", "gw9:1", 0, "", "", "", now,
                      "1799999999000")
    r.execute_command("FCALL", "cg_status", 1, t, "gina", "online", now, "1799999999500")
    assert s(r.hget(f"{t}:agent:gina", "status")) == "away"
    assert r.smembers(f"{t}:agent:gina:socks") == {b"gw9:2"}
    assert r.zscore(f"{t}:avail:general", "gina") is None
    assert conv_hash(r, conv)["state"] == "queued"
    # connect_online: online in the same step, and offered the waiting conversation
    rows = connect("hank", "gw9:3", "online")
    assert [s(x[0]) for x in rows] == [conv] and conv_hash(r, conv)["agent"] == "hank"
    assert s(r.hget(f"{t}:agent:hank", "status")) == "online"
    # a status the agent chose later than this connect's time wins over it
    r.execute_command("FCALL", "cg_status", 1, t, "ivy", "away", now, "1800000000900")
    connect("ivy", "gw9:4", "online")
    assert s(r.hget(f"{t}:agent:ivy", "status")) == "away"
    with pytest.raises(redislib.exceptions.ResponseError, match="BADARG status must be online"):
        connect("jo", "gw9:5", "busy")
