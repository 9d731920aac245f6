"""Gateway heartbeats and the routers' reaper: a gateway that dies (kill -9) does not leave its
agents looking online; live gateways' agents are never reaped; a clean stop works as before; a
gateway restarted with the same id, or one that was silent for three heartbeats while alive,
ends with exactly its real agent sockets.

Run: BUILD=build/h-hb /usr/bin/python3 -m pytest -q tests/integration/test_heartbeat.py
"""
import signal
import threading

from chat import agent, customer
from conftest import wait_until
from desk import conv_hash, run, s

HB = {"CHATGW_HEARTBEAT_MS": 200}            # liveness key lives 600 ms
REAP = {"CHATGW_GATEWAY_REAP_MS": 100}


def status(r, a):
    return s(r.hget(f"cg:{{t:default}}:agent:{a}", "status"))


def socks(r, a):
    return {s(x) for x in r.smembers(f"cg:{{t:default}}:agent:{a}:socks")}


def online(r, a, skill="general"):
    return (status(r, a) == "online" and socks(r, a)
            and r.zscore(f"cg:{{t:default}}:avail:{skill}", a) is not None
            and r.sismember(f"cg:{{t:default}}:online:{skill}", a))


def reaped(r, a, skill="general"):
    """No socket left: offline, out of cg:{t:default}:avail / cg:{t:default}:online."""
    return (not socks(r, a) and status(r, a) == "offline"
            and r.zscore(f"cg:{{t:default}}:avail:{skill}", a) is None
            and not r.sismember(f"cg:{{t:default}}:online:{skill}", a))


class Watch:
    """Samples an agent's state on its own Redis connection until stopped: `bad` gets every
    sample where the agent was not online."""

    def __init__(self, redis_srv, a, skill):
        import redis as redislib
        self.r = redislib.Redis(host="127.0.0.1", port=redis_srv.port)
        self.a, self.skill, self.bad = a, skill, []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.wait(0.005):
            if not online(self.r, self.a, self.skill):
                self.bad.append((status(self.r, self.a), socks(self.r, self.a)))

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        self.r.close()
        return self.bad


def gateways_beating(r, *ids):
    return all(r.exists(f"cg:{{t:default}}:gw:{g}") and r.sismember("cg:{t:default}:gateways", g) for g in ids)


def test_killed_gateway_agents_are_reaped(redis_srv, procs):
    r = redis_srv.r
    gw1 = procs.gateway(HB)
    gw2 = procs.gateway(HB)
    router = procs.router(REAP)
    alice = procs.agent_token("alice", "Alice", cap=2)
    bob = procs.agent_token("bob", "Bob", skills=("billing",), cap=2)
    wait_until(lambda: gateways_beating(r, "gw1", "gw2"), 5, "both gateways beating")
    assert 0 < r.pttl("cg:{t:default}:gw:gw1") <= 600

    async def scenario():
        a1 = await agent(gw1, alice)
        b = await agent(gw2, bob)
        wait_until(lambda: online(r, "alice") and online(r, "bob", "billing"), 5, "both online")
        (sock1,) = socks(r, "alice")
        assert sock1.startswith("gw1:")
        assert r.zscore("cg:{t:default}:gw:gw1:socks", f"{sock1} alice") == float(s(r.get("cg:{t:default}:gw:gw1")))
        watch = Watch(redis_srv, "bob", "billing")
        # a conversation assigned to alice before her gateway dies stays hers
        c0 = await customer(gw2)
        conv0 = (await c0.say("before the crash"))["conv"]
        await a1.expect_type("assigned", conv=conv0)

        gw1.kill9()
        wait_until(lambda: reaped(r, "alice"), 10, "alice's socket reaped")
        router.wait_log("gateway gw1 stopped heartbeating: 1 agent sockets dropped (1 agents: alice)")
        assert not r.sismember("cg:{t:default}:gateways", "gw1") and not r.exists("cg:{t:default}:gw:gw1:socks")
        assert r.zscore("cg:{t:default}:agent:alice:gone", sock1) is not None
        h0 = conv_hash(r, conv0)
        assert (h0["state"], h0["agent"]) == ("assigned", "alice")
        assert r.sismember("cg:{t:default}:agent:alice:convs", conv0)
        assert s(r.hget("cg:{t:default}:agent:alice", "load")) == "1"

        # nobody serves general now: a new customer waits (and is told nobody is online), alice
        # gets nothing while offline
        c1 = await customer(gw2)
        conv1 = (await c1.say("anyone there?"))["conv"]
        await c1.expect(lambda f: f.get("type") == "text" and f.get("queue") == "general"
                        and f.get("text", "").startswith("Nobody"), what="no_agent reply")
        h1 = conv_hash(r, conv1)
        assert h1["state"] == "queued" and "agent" not in h1
        assert r.zscore("cg:{t:default}:queue:general", conv1) is not None

        # alice comes back through gateway 2: the waiting one is assigned, the old one is back
        a2 = await agent(gw2, alice)
        await a2.expect(lambda f: f.get("type") == "text" and f.get("conv") == conv0
                        and f.get("text") == "before the crash", what="conv0 transcript")
        if not [f for f in a2.frames if f.get("type") == "assigned" and f.get("conv") == conv1]:
            await a2.expect_type("assigned", conv=conv1)  # not before the transcript
        await c1.expect_type("assigned", agent_id="alice")
        # full now (cap 2): online, not available
        wait_until(lambda: status(r, "alice") == "online" and socks(r, "alice")
                   and r.sismember("cg:{t:default}:online:general", "alice"), 5, "alice online through gw2")
        assert r.zscore("cg:{t:default}:avail:general", "alice") is None
        (sock2,) = socks(r, "alice")
        assert sock2.startswith("gw2:")
        assert conv_hash(r, conv1)["agent"] == "alice"
        assert not watch.stop(), "bob (on a live gateway) was not online throughout"
        assert online(r, "bob", "billing") and r.sismember("cg:{t:default}:gateways", "gw2")
        for c in (c0, c1, a2, b):
            await c.close()

    run(scenario())
    assert "restarted" not in router.text()


def test_clean_stop_still_disconnects(redis_srv, procs):
    r = redis_srv.r
    gw1 = procs.gateway(HB)
    gw2 = procs.gateway(HB)
    procs.router(REAP)
    alice = procs.agent_token("alice")
    bob = procs.agent_token("bob", skills=("billing",))
    wait_until(lambda: gateways_beating(r, "gw1", "gw2"), 5, "both gateways beating")

    async def scenario():
        a = await agent(gw1, alice)
        b = await agent(gw2, bob)
        wait_until(lambda: online(r, "alice") and online(r, "bob", "billing"), 5, "both online")
        assert gw1.stop(signal.SIGTERM) == 0
        assert "clean shutdown" in gw1.text()
        await a.expect_closed()
        wait_until(lambda: reaped(r, "alice"), 5, "alice offline")
        wait_until(lambda: not r.sismember("cg:{t:default}:gateways", "gw1"), 5, "gw1 out of cg:{t:default}:gateways")
        assert not r.exists("cg:{t:default}:gw:gw1") and not r.exists("cg:{t:default}:gw:gw1:socks")
        assert online(r, "bob", "billing") and gateways_beating(r, "gw2")
        await b.close()

    run(scenario())
    wait_until(lambda: reaped(r, "bob", "billing"), 5, "bob offline after his close")


def test_gateway_restarted_with_the_same_id(redis_srv, procs):
    """kill -9, then the same gateway id again before its key expired: the sockets of the first
    run are dropped (the key holds the new run's boot), the new run's sockets are not."""
    r = redis_srv.r
    gw1 = procs.gateway({"CHATGW_HEARTBEAT_MS": 5000})  # key lives 15 s: not expired below
    router = procs.router(REAP)
    alice = procs.agent_token("alice")
    wait_until(lambda: gateways_beating(r, "gw1"), 5, "gw1 beating")
    boot1 = s(r.get("cg:{t:default}:gw:gw1"))

    async def scenario():
        a1 = await agent(gw1, alice)
        wait_until(lambda: online(r, "alice"), 5, "alice online")
        (sock1,) = socks(r, "alice")
        gw1.kill9()
        procs.n = 0  # the harness names gateways gw<n>: the next one is gw1 again
        again = procs.gateway(HB)
        assert again.ready_line == "gateway gw1 ready"
        again.wait_log("still held by an earlier run")
        wait_until(lambda: reaped(r, "alice"), 10, "the first run's socket reaped")
        router.wait_log("gateway gw1 restarted: sockets of its previous run: 1 agent sockets")
        assert s(r.get("cg:{t:default}:gw:gw1")) != boot1 and r.sismember("cg:{t:default}:gateways", "gw1")
        # socket ids never repeat across runs: alice's new socket is not taken for a closed one
        a2 = await agent(again, alice)
        wait_until(lambda: online(r, "alice"), 5, "alice online through the new run")
        (sock2,) = socks(r, "alice")
        assert sock2 != sock1 and sock2.startswith("gw1:")
        c = await customer(again)
        conv = (await c.say("hello again"))["conv"]
        await a2.expect_type("assigned", conv=conv)
        for x in (a2, c):
            await x.close()
        await a1.expect_closed()

    run(scenario())


def test_stalled_gateway_comes_back(redis_srv, procs):
    """A live gateway silent for three heartbeats (here: stopped) is reaped; when it runs again
    its next beat finds its key gone and it announces its agents under new socket ids."""
    r = redis_srv.r
    gw1 = procs.gateway(HB)
    router = procs.router(REAP)
    alice = procs.agent_token("alice")
    wait_until(lambda: gateways_beating(r, "gw1"), 5, "gw1 beating")

    async def scenario():
        a = await agent(gw1, alice)
        wait_until(lambda: online(r, "alice"), 5, "alice online")
        (sock1,) = socks(r, "alice")
        gw1.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: reaped(r, "alice"), 10, "alice reaped while gw1 is stopped")
            router.wait_log("gateway gw1 stopped heartbeating: 1 agent sockets dropped")
        finally:
            gw1.proc.send_signal(signal.SIGCONT)
        gw1.wait_log("had expired: 1 agent connections announced again")
        wait_until(lambda: online(r, "alice") and socks(r, "alice") != {sock1}, 5,
                   "alice online again under a new socket id")
        assert r.sismember("cg:{t:default}:gateways", "gw1") and r.exists("cg:{t:default}:gw:gw1")
        c = await customer(gw1)
        conv = (await c.say("still there?"))["conv"]
        await a.expect_type("assigned", conv=conv)
        await a.close()
        wait_until(lambda: reaped(r, "alice"), 5, "alice offline after her close")
        assert not r.exists("cg:{t:default}:gw:gw1:socks")
        await c.close()

    run(scenario())
