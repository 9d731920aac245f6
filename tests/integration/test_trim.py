"""Work streams stay bounded (router/trim.c, FCALL cg_trim): cg:{t:default}:in and cg:{t:default}:out:<channel> keep
only what their consumer group still needs. Real redis-server, gateway, router and WebSocket
clients (customers, an agent, a WeChat bridge); trim_interval_ms is short, and each check awaits
Redis state (wait_until), never a fixed sleep."""

from chat import agent, customer
from conftest import wait_until
from desk import run, s
from test_bridge import ENV, ack, bridge, is_out, post_wechat
from test_webhooks import cust_conv

TRIM = {"CHATGW_TRIM_INTERVAL_MS": 50, "CHATGW_BLOCK_MS": 200}


def ids(r, stream):
    return [s(i) for i, _ in r.xrange(stream)]


def key(i):
    a, b = s(i).split("-")
    return int(a), int(b)


def test_inbound_stream_keeps_only_what_routers_still_need(procs, redis_srv):
    r = redis_srv.r
    gw = procs.gateway()
    router = procs.router(dict(TRIM, CHATGW_CLAIM_IDLE_MS=600000))

    async def say_many(n):
        out = []
        for i in range(n):
            c = await customer(gw)
            out.append((await c.say(f"question {i}"))["conv"])
            await c.close()
        return out

    convs = run(say_many(5))
    # everything was routed (each conversation queued), then cg:in shrank to its last entry
    wait_until(lambda: all(s(r.hget(f"cg:{{t:default}}:conv:{c}", "state")) == "queued" for c in convs), 10,
               "conversations queued")
    wait_until(lambda: r.xlen("cg:{t:default}:in") <= 1, 10, "cg:{t:default}:in trimmed")

    # a router that read an entry and died before acknowledging it: that entry and everything
    # after it stays until it is acknowledged
    router.stop()
    more = run(say_many(3))
    ghost = r.xreadgroup("routers", "ghost", {"cg:{t:default}:in": ">"}, count=1)[0][1][0][0]
    procs.router(dict(TRIM, CHATGW_CLAIM_IDLE_MS=600000))
    wait_until(lambda: all(s(r.hget(f"cg:{{t:default}}:conv:{c}", "state")) == "queued" for c in more[1:]), 10,
               "the other entries routed")
    wait_until(lambda: ids(r, "cg:{t:default}:in")[0] == s(ghost), 10, "trimmed down to the pending entry")
    left = ids(r, "cg:{t:default}:in")
    assert left[0] == s(ghost) and len(left) >= 3  # the pending entry and the later ones
    assert r.xpending("cg:{t:default}:in", "routers")["pending"] == 1
    # acknowledged: the next trims drop it too
    r.xack("cg:{t:default}:in", "routers", ghost)
    wait_until(lambda: key(ids(r, "cg:{t:default}:in")[0]) > key(ghost), 10, "pending entry trimmed after ack")


def test_outbound_stream_trimmed_only_after_bridges_ack(procs, redis_srv):
    r = redis_srv.r
    gw = procs.gateway(ENV)
    procs.router(TRIM)
    openid = "oTrim0000000000000000000000"

    async def scenario():
        # nobody has read cg:out:wechat yet: it is kept whole
        post_wechat(gw, openid, "7000000000000000001", "hello")
        conv = cust_conv(r, f"wechat:{openid}")
        wait_until(lambda: r.xlen("cg:{t:default}:out:wechat") >= 2, 10, "greeting and auto-reply out")
        n0 = r.xlen("cg:{t:default}:out:wechat")
        c = await customer(gw)  # a cg:in entry, so a trim round is observable
        await c.say("tick")
        wait_until(lambda: r.xlen("cg:{t:default}:in") <= 1, 10, "a trim round ran")
        assert r.xlen("cg:{t:default}:out:wechat") == n0
        # a bridge reads and acknowledges everything but the agent's reply
        b = await bridge(gw, "wechat", "wx-trim")
        a = await agent(gw, procs.agent_token("alice", "Alice"))
        await a.expect_type("assigned", conv=conv)
        reply = (await a.say("on its way", conv=conv))["seq"]
        got = await b.expect(lambda f: is_out(conv, "agent")(f) and f["seq"] == reply,
                             what="agent reply")
        acked = set()

        async def ack_others_until(pred, what):
            """Ack every frame but the reply (also those arriving after it: the router may log
            "has joined" after the agent's first text) until pred() holds; bounded."""
            for _ in range(500):
                for f in b.frames:
                    if is_out(conv)(f) and f is not got and f["seq"] not in acked:
                        acked.add(f["seq"])
                        await ack(b, f)
                if pred():
                    return
                try:
                    await b.expect(lambda f: is_out(conv)(f), timeout=0.02, what="more frames")
                except AssertionError:
                    pass
            raise AssertionError(f"timed out waiting for {what}")

        await ack_others_until(lambda: r.xpending("cg:{t:default}:out:wechat", "bridges")["pending"] == 1,
                               "only the reply pending")
        await ack_others_until(lambda: s(r.xrange("cg:{t:default}:out:wechat")[0][1][b"s"]) == str(reply),
                               "trimmed down to the unacknowledged reply")
        await ack(b, got)
        wait_until(lambda: r.xlen("cg:{t:default}:out:wechat") <= 1
                   and r.xpending("cg:{t:default}:out:wechat", "bridges")["pending"] == 0, 10,
                   "all acknowledged and trimmed")
        for x in (a, b, c):
            await x.close()

    run(scenario())
