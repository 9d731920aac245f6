"""Catch-up from the conversation log backs off when Redis answers with an error (issue 12 item
11): the gateway used to re-send the failing XRANGE at once, spinning a core and flooding Redis.
The error is made deterministic by putting a string where the conversation's log stream should be
(WRONGTYPE); the retries then come after 50, 100, 200, 400, 800 ms ... up to 2 s, and the reader
is caught up as soon as the log is back. Real redis-server, gateway, router, WebSocket client.

Also: the frames queued for one connection leave in one write (issue 10, item 6)."""
import msgpack
import pytest

from chat import JSON, MSGPACK, Client, customer
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


def scraped(gw, name):
    import urllib.request

    from conftest import METRICS_TOKEN
    req = urllib.request.Request(gw.base + "/metrics",
                                 headers={"Authorization": "Bearer " + METRICS_TOKEN})
    with urllib.request.urlopen(req, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + "{"):
                return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("proto", [JSON, MSGPACK])
def test_queued_frames_leave_in_few_writes(procs, redis_srv, proto):
    """A customer coming back to a conversation of 60 messages gets them from the log: the frames
    queued for its connection leave several per write (one buffer of whole frames), every frame
    intact and in order, short ones, ones of a few hundred bytes and ones over 64 KiB of JSON
    framing (16-bit lengths) alike."""
    gw = procs.gateway({"CHATGW_RATE_MSGS": 100000, "CHATGW_RATE_BURST": 100000})
    texts = [("x" * n) + f" #{i}" for i, n in enumerate([5, 200, 3000] * 20)]

    async def first():
        c = await customer(gw)
        conv = None
        for t in texts:
            ack = await c.say(t)
            assert ack["type"] == "ack", ack
            conv = ack["conv"]
        await c.close()
        return c.welcome["token"], conv

    token, conv = run(first())
    frames0, writes0 = scraped(gw, "chatgw_gateway_frames_out_total"), \
        scraped(gw, "chatgw_gateway_ws_writes_total")

    async def resume():
        c = await Client.connect(gw.ws, "/ws/customer", proto)
        await c.hello(token=token, conv=conv, last_seq=0)
        for i, t in enumerate(texts):
            f = await c.expect(lambda f: f.get("type") == "text" and f.get("seq"), timeout=10,
                               what=f"message {i + 1}")
            assert (f["seq"], f["text"]) == (i + 1, t)
        await c.close()

    run(resume())
    frames = scraped(gw, "chatgw_gateway_frames_out_total") - frames0
    writes = scraped(gw, "chatgw_gateway_ws_writes_total") - writes0
    assert frames >= len(texts)  # the welcome and the 60 messages
    assert writes * 3 <= frames, (writes, frames)
