"""Catch-up from the conversation log backs off when Redis answers with an error (issue 12 item
11): the gateway used to re-send the failing XRANGE at once, spinning a core and flooding Redis.
The error is made deterministic by putting a string where the conversation's log stream should be
(WRONGTYPE); the retries then come after 50, 100, 200, 400, 800 ms ... up to 2 s, and the reader
is caught up as soon as the log is back. Real redis-server, gateway, router, WebSocket client."""
import msgpack

from chat import Client, customer
from conftest import wait_until
from desk import run


def xrange_failures(r):
    return r.info("commandstats").get("cmdstat_xrange", {}).get("failed_calls", 0)


def test_catch_up_errors_are_retried_with_backoff_then_heal(procs, redis_srv):
    r = redis_srv.r
    gw = procs.gateway()
    procs.router()

    async def first():
        c = await customer(gw)
        ack = await c.say("kept in the log")
        await c.close()
        return c.welcome["token"], ack["conv"]

    token, conv = run(first())
    log = f"cg:{{t:default}}:conv:{conv}:log"
    r.rename(log, "aside")
    r.set(log, "not a stream")
    before = xrange_failures(r)

    async def resume():
        c = await Client.connect(gw.ws, "/ws/customer")
        await c.hello(token=token, conv=conv, last_seq=0)
        # a live message with a gap (seq 2 while the client has nothing): the gateway must read
        # the log, which fails
        r.publish(f"cg:{{t:default}}:c:{conv}", (2).to_bytes(8, "big") + msgpack.packb(
            {"v": 1, "type": "text", "id": "f" * 32, "role": "bot", "text": "live"}))
        # five failures: retried after 50, 100, 200, 400 ms, the next one 800 ms later (the old
        # gateway re-sent it at once: thousands by now)
        n = wait_until(lambda: (lambda k: k if k >= 5 else None)(xrange_failures(r) - before),
                       10, "five failed catch-ups")
        assert n <= 6, f"{n} failed XRANGE calls: no backoff"
        gw.wait_log("retrying in 800 ms", 10)
        assert "WRONGTYPE" in next(l for l in gw.lines if l and "retrying in 50 ms" in l)
        # the log is back: the next retry (at most 2 s later) delivers what the client lacks
        r.delete(log)
        r.rename("aside", log)
        got = await c.expect(lambda f: f.get("text") == "kept in the log", timeout=10,
                             what="the caught-up text")
        assert got["seq"] == 1 and got["conv"] == conv
        await c.close()

    run(resume())
