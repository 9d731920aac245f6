"""A conversation's live messages go to its current assignee only (issue 12 item 4): once it is
transferred (to an agent or a queue), closed unresolved, taken back by an offer timeout or by an
SLA reassign, or closed, the agent it left stops getting its messages (it keeps what it had, up to
the event that moved it), and the gateway stops following it for that agent (no pub/sub channel
left behind: the agent-subscription leak of item 11).

Real redis-server, gateway and router, real WebSocket clients. Time is injected into the router
(CHATGW_TEST_CLOCK) for the offer and SLA timers. "Nothing more arrives" is checked against a
barrier, never a sleep: after the move, a second conversation is assigned to the same agent and
its customer writes; the gateway relays one pub/sub connection in order, so a message of the old
conversation published before the barrier's would have reached the agent before it."""
from chat import agent, customer, new_cmid
from conftest import InjectedClock, wait_until
from desk import Monitor, conv_hash, run, s

CONFIG = """
[router]
default_queue = general
default_locale = en
timer_tick_ms = 50
sla_first_response_s = chat:{first}, email:0
sla_next_response_s = chat:0, email:0
idle_close_s = 0
offer_timeout_s = {offer}
offer_max_misses = 9

[queue general]
mode = push

[queue tech]
mode = push

[templates en]
requeued = ANOTHER AGENT
"""


def desk(procs, tmp_path, offer=0, first=0, clock=None, **env):
    path = tmp_path / "assignee.ini"
    path.write_text(CONFIG.format(offer=offer, first=first), encoding="utf-8")
    gw = procs.gateway()
    e = {"CHATGW_CONFIG": str(path), "CHATGW_BLOCK_MS": 200, **env}
    if clock:
        e.update(clock.env)
    procs.router(e)
    return gw


async def online(gw, procs, r, name, skills=("general",)):
    a = await agent(gw, procs.agent_token(name, name.title(), skills=skills, cap=1))
    wait_until(lambda: r.zscore("cg:{t:default}:avail:general", name) is not None
               or r.sismember(f"cg:{{t:default}}:online:{skills[0]}", name), 5, f"{name} online")
    return a


def texts(a, conv):
    return [f.get("text") for f in a.frames if f.get("conv") == conv and f.get("type") == "text"]


async def barrier(gw, a, name):
    """A new conversation assigned to agent a (free again): once its customer's text reached a,
    everything published before it has been relayed."""
    c2 = await customer(gw)
    conv2 = (await c2.say(f"barrier for {name}"))["conv"]
    await a.expect_type("assigned", conv=conv2, timeout=10)
    await a.expect(lambda f: f.get("conv") == conv2 and f.get("text") == f"barrier for {name}",
                   timeout=10, what="the barrier text")
    return c2


def channels(r):
    return {s(c) for c in r.pubsub_channels("cg:{t:default}:c:*")}


async def first_assigned(gw, amy):
    c = await customer(gw)
    conv = (await c.say("hello"))["conv"]
    await amy.expect_type("assigned", conv=conv)
    await amy.expect(lambda f: f.get("conv") == conv and f.get("text") == "hello",
                     what="the customer's first text")
    return c, conv


async def after_move(gw, c, conv, amy, new=None):
    """The customer (and the new agent, if any) write after the move; the new agent gets it all,
    amy none of it."""
    assert (await c.say("after the move"))["type"] == "ack"
    if new:
        await new.expect(lambda f: f.get("conv") == conv and f.get("text") == "after the move",
                         what="the customer's text at the new agent")
        assert (await new.say("new agent here", conv=conv))["type"] == "ack"
        await c.expect(lambda f: f.get("text") == "new agent here", what="the new agent's text")
    c2 = await barrier(gw, amy, "amy")
    assert "after the move" not in texts(amy, conv)
    assert "new agent here" not in texts(amy, conv)
    return c2


def test_a_live_assignment_reaches_the_agent_without_a_round_trip(procs, redis_srv, tmp_path):
    """The live notice on the agent's channel names the assignee, the channel and the queue: the
    gateway tells the agent at once (no HMGET of the conversation first, one Redis round trip
    less between a customer's first message and its agent) and follows the conversation."""
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        a = await online(gw, procs, r, "amy")
        c = await customer(gw)
        mon = Monitor(r).start()
        conv = (await c.say("hello"))["conv"]
        f = await a.expect_type("assigned", conv=conv)
        await a.say("hi, I am Amy", conv=conv)
        await c.expect(lambda x: x.get("text") == "hi, I am Amy", what="the agent's reply")
        seen = mon.stop()
        for x in (a, c):
            await x.close()
        return conv, f, seen

    conv, f, seen = run(scenario())
    assert (f["agent_id"], f["agent_name"], f["channel"], f["queue"]) == \
        ("amy", "Amy", "web", "general")
    looked_up = [rest for name, rest in seen if name == "HMGET" and conv in rest
                 and rest.replace('"', "").endswith(" channel queue state agent")]
    assert looked_up == [], looked_up


def test_transfer_to_an_agent_stops_delivery_to_the_old_one(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        amy = await online(gw, procs, r, "amy")
        c, conv = await first_assigned(gw, amy)
        bob = await online(gw, procs, r, "bob")
        await amy.send({"type": "transfer", "conv": conv, "agent_id": "bob", "text": "yours",
                        "cmid": new_cmid()})
        await bob.expect_type("assigned", conv=conv)
        moved = await amy.expect_type("transferred", conv=conv)  # it keeps the event itself
        assert moved["agent_id"] == "bob"
        c2 = await after_move(gw, c, conv, amy, new=bob)
        assert not [f for f in amy.frames if f.get("conv") == conv and f.get("seq", 0) >
                    moved["seq"]]
        for x in (amy, bob, c, c2):
            await x.close()
    run(scenario())


def test_transfer_to_a_queue_stops_delivery(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        amy = await online(gw, procs, r, "amy")
        c, conv = await first_assigned(gw, amy)
        await amy.send({"type": "transfer", "conv": conv, "queue": "tech", "cmid": new_cmid()})
        await amy.expect_type("transferred", conv=conv)
        wait_until(lambda: conv_hash(r, conv).get("queue") == "tech", 5, "in the tech queue")
        c2 = await after_move(gw, c, conv, amy)
        # a tech agent signing in gets it, with the text amy never saw
        tom = await online(gw, procs, r, "tom", skills=("tech",))
        await tom.expect(lambda f: f.get("conv") == conv and f.get("text") == "after the move",
                         what="the waiting text at the tech agent")
        for x in (amy, tom, c, c2):
            await x.close()
    run(scenario())


def test_unresolved_close_stops_delivery_to_the_agent_who_gave_up(procs, redis_srv, tmp_path):
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        amy = await online(gw, procs, r, "amy")
        c, conv = await first_assigned(gw, amy)
        bob = await online(gw, procs, r, "bob")
        await amy.send({"type": "close", "conv": conv, "code": "unresolved", "cmid": new_cmid()})
        await bob.expect_type("assigned", conv=conv)
        await c.expect(lambda f: f.get("text") == "ANOTHER AGENT", what="the requeued text")
        c2 = await after_move(gw, c, conv, amy, new=bob)
        for x in (amy, bob, c, c2):
            await x.close()
    run(scenario())


def test_offer_timeout_stops_delivery_to_the_agent_who_missed_it(procs, redis_srv, tmp_path):
    r = redis_srv.r
    clock = InjectedClock(tmp_path)
    gw = desk(procs, tmp_path, offer=5, clock=clock)

    async def scenario():
        amy = await online(gw, procs, r, "amy")
        c, conv = await first_assigned(gw, amy)
        wait_until(lambda: r.zscore("cg:{t:default}:timers", f"offer:{conv}"), 5, "the offer timer")
        bob = await online(gw, procs, r, "bob")
        clock.advance(6000)
        await bob.expect_type("assigned", conv=conv, timeout=10)
        await amy.expect(lambda f: f.get("type") == "text" and f.get("conv") == conv
                         and "did not answer" in f.get("text", ""), what="the miss notice")
        c2 = await after_move(gw, c, conv, amy, new=bob)
        for x in (amy, bob, c, c2):
            await x.close()
    run(scenario())


def test_offer_timeout_with_nobody_free_stops_delivery(procs, redis_srv, tmp_path):
    """Taken back into the queue with no other agent: no logged event says so; the agent's notice
    does."""
    r = redis_srv.r
    clock = InjectedClock(tmp_path)
    gw = desk(procs, tmp_path, offer=5, clock=clock)

    async def scenario():
        amy = await online(gw, procs, r, "amy")
        c, conv = await first_assigned(gw, amy)
        wait_until(lambda: r.zscore("cg:{t:default}:timers", f"offer:{conv}"), 5, "the offer timer")
        clock.advance(6000)
        await amy.expect(lambda f: f.get("type") == "text" and f.get("conv") == conv
                         and "did not answer" in f.get("text", ""), what="the miss notice")
        assert conv_hash(r, conv)["state"] == "queued"  # not offered to amy again
        assert (await c.say("after the move"))["type"] == "ack"
        # no barrier conversation (amy may get this one back): wait for the gateway's decision
        gw.wait_log(f"stops following conversation {conv}", 10)
        assert "after the move" not in texts(amy, conv)
        for x in (amy, c):
            await x.close()
    run(scenario())


def test_sla_reassign_stops_delivery_to_the_slow_agent(procs, redis_srv, tmp_path):
    r = redis_srv.r
    clock = InjectedClock(tmp_path)
    gw = desk(procs, tmp_path, first=1, clock=clock, CHATGW_SLA_ACTION="reassign")

    async def scenario():
        amy = await online(gw, procs, r, "amy")
        c, conv = await first_assigned(gw, amy)
        wait_until(lambda: r.zscore("cg:{t:default}:timers", f"first:{conv}"), 5, "the first-response timer")
        bob = await online(gw, procs, r, "bob")
        clock.advance(2000)
        await bob.expect_type("assigned", conv=conv, timeout=10)
        assert conv_hash(r, conv)["prev_agent"] == "amy"
        c2 = await after_move(gw, c, conv, amy, new=bob)
        for x in (amy, bob, c, c2):
            await x.close()
    run(scenario())


def test_closed_conversations_do_not_pile_up_subscriptions(procs, redis_srv, tmp_path):
    """An agent that stays signed in and closes conversation after conversation keeps following
    the last 16 it closed (their survey and rating reach it), no more: the gateway's pub/sub
    channels of the older ones are left (the agent-subscription leak of item 11)."""
    r = redis_srv.r
    gw = desk(procs, tmp_path)

    async def scenario():
        amy = await online(gw, procs, r, "amy")
        convs = []
        for i in range(20):
            c, conv = await first_assigned(gw, amy)
            await amy.send({"type": "close", "conv": conv, "code": "resolved",
                            "cmid": new_cmid()})
            await c.expect_type("closed", conv=conv)
            await amy.expect_type("closed", conv=conv)
            await c.close()
            convs.append(conv)
        want = {f"cg:{{t:default}}:c:{c}" for c in convs[-16:]}
        wait_until(lambda: channels(r) == want, 5, "only the last 16 closed followed")
        await amy.close()
        wait_until(lambda: channels(r) == set(), 5, "nothing followed once amy left")
    run(scenario())
