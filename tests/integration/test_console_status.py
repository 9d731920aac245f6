"""The status an agent connects with (hello "code", docs/protocol.md), end to end: real
redis-server, gateway and router, real WebSocket clients.

An agent whose hello says away is never offered a waiting conversation on connect (the gateway
queues its away status ahead of the connect, with the same time); presence online then brings
the assignment. Without a code an agent connects online, as before. Any other code is refused
with bad_value, and the connection may say hello again.

Run: BUILD=build /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_console_status.py
"""
from chat import Client, agent, customer, new_cmid
from conftest import wait_until
from desk import conv_hash, run, s


def desk(procs):
    gw = procs.gateway()
    procs.router({"CHATGW_BLOCK_MS": 200})
    return gw


def connected(r, agent_id):
    """The router processed the agent's connect: its socket is in cg:agent:<a>:socks (the
    connect's cg_presence call, which also makes the offers, is one atomic function call)."""
    return r.scard(f"cg:agent:{agent_id}:socks") == 1


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
        assert s(r.hget("cg:agent:alice", "status")) == "away"
        assert conv_hash(r, conv)["state"] == "queued"
        assert r.zscore("cg:queue:general", conv) is not None
        assert not r.zscore("cg:avail:general", "alice")
        assert not [f for f in a.frames if f.get("type") == "assigned"]

        # the agent goes online: the waiting conversation is its
        await a.send({"type": "presence", "code": "online", "cmid": "p1"})
        await a.expect_type("ack", cmid="p1")
        await a.expect_type("assigned", conv=conv, agent_id="alice")
        await c.expect_type("assigned", conv=conv)
        assert s(r.hget("cg:agent:alice", "status")) == "online"
        assert conv_hash(r, conv)["agent"] == "alice"

    run(scenario())


def test_hello_online_and_default_connect_online(procs, redis_srv):
    gw = desk(procs)
    r = redis_srv.r

    async def scenario():
        # no code: online at once, as every agent tool connected so far
        _, conv = await waiting(gw, r, "first customer")
        bob = await agent(gw, procs.agent_token("bob"))
        await bob.expect_type("assigned", conv=conv, agent_id="bob")
        assert s(r.hget("cg:agent:bob", "status")) == "online"

        # code online: the same
        _, conv2 = await waiting(gw, r, "second customer")
        carol = await Client.connect(gw.ws, "/ws/agent")
        await carol.hello(token=procs.agent_token("carol"), code="online")
        await carol.expect_type("assigned", conv=conv2, agent_id="carol")
        assert s(r.hget("cg:agent:carol", "status")) == "online"

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
        wait_until(lambda: s(r.hget("cg:agent:dora", "status")) == "offline", 10, "dora offline")

        _, conv = await waiting(gw, r, "hello?")
        b = await Client.connect(gw.ws, "/ws/agent")
        await b.hello(token=token, code="away")
        wait_until(lambda: connected(r, "dora"), 10, "dora's new connect processed")
        assert s(r.hget("cg:agent:dora", "status")) == "away"
        assert conv_hash(r, conv)["state"] == "queued"
        assert not [f for f in b.frames if f.get("type") == "assigned"]

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
        assert not r.exists("cg:agent:erin")
        # not signed in, but still connected: a valid hello is accepted
        await a.hello(token=procs.agent_token("erin"), code="away")
        wait_until(lambda: connected(r, "erin"), 10, "erin's connect processed")
        assert s(r.hget("cg:agent:erin", "status")) == "away"

        # a customer's hello carries no status: a code is ignored, as before
        c = await Client.connect(gw.ws, "/ws/customer")
        w = await c.hello(code="away")
        assert w["role"] == "customer"

    run(scenario())
