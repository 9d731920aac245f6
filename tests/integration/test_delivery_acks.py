"""Answers to a client's frames are never dropped (issue 12 item 10): a client that sends a burst
without reading, on a gateway with a tiny send queue, gets an ack for every frame it sent; the
gateway holds off reading from it (backpressure) instead of dropping acks. Logged messages may
still be skipped and read again from the log. Real redis-server, gateway, router and WebSocket
clients; nothing sleeps: frames are awaited."""
import json

from chat import Client, customer
from desk import run

N = 400


def test_every_frame_of_a_burst_is_acked_by_a_slow_reader(procs):
    gw = procs.gateway({"CHATGW_SEND_QUEUE_MAX": 8, "CHATGW_RATE_MSGS": 100000,
                        "CHATGW_RATE_BURST": 100000})
    procs.router()

    async def scenario():
        c = await customer(gw)
        conv = (await c.say("first"))["conv"]
        cmids = [f"burst-{i}" for i in range(N)]
        # one write of N frames, not reading anything meanwhile
        c.ws.transport.write(b"".join(_frame(json.dumps(
            {"type": "text", "cmid": m, "text": f"t {m}"}).encode()) for m in cmids))
        acked = set()

        def take(f):
            if f.get("cmid") in cmids and f["type"] in ("ack", "error"):
                assert f["type"] == "ack", f  # never an error either
                acked.add(f["cmid"])
            return len(acked) == N
        await c.expect(take, timeout=30, what=f"acks of all {N} frames")
        # the logged copies all arrive too (from the log where the queue was full), in order
        await c.expect(lambda f: f.get("type") == "text" and f.get("text") == f"t burst-{N - 1}",
                       timeout=30, what="the last text from the log")
        seqs = [f["seq"] for f in c.logged(conv) if f.get("type") == "text"]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        await c.close()

    run(scenario())
    gw.wait_log("reading paused", 5)  # backpressure engaged rather than dropping


def test_a_client_that_never_reads_is_held_off_not_answered_less(procs):
    """A client that does not read at all: once its answers fill the reserve, the gateway stops
    reading its frames; when it reads again, every frame it managed to send is answered."""
    gw = procs.gateway({"CHATGW_SEND_QUEUE_MAX": 8, "CHATGW_RATE_MSGS": 100000,
                        "CHATGW_RATE_BURST": 100000})
    procs.router()

    async def scenario():
        c = await Client.connect(gw.ws, "/ws/customer", max_queue=1, read_limit=256)
        await c.hello()
        await c.say("first")
        # typing frames with a bad cmid are refused with an error each (an answer, no Redis)
        bad = [f"x{i}" for i in range(N)]
        c.ws.transport.write(b"".join(_frame(json.dumps(
            {"type": "text", "cmid": m, "text": ""}).encode()) for m in bad))
        answered = set()

        def take(f):
            if f.get("cmid") in bad and f["type"] in ("ack", "error"):
                assert f["type"] == "error", f
                answered.add(f["cmid"])
            return len(answered) == N
        await c.expect(take, timeout=30, what=f"answers to all {N} frames")
        await c.close()

    run(scenario())


def _frame(payload):
    """A masked client text frame (RFC 6455 5.2), written raw so that a burst leaves in one write
    without the client library reading in between."""
    import os
    head = bytearray([0x81])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    else:
        head.append(0x80 | 126)
        head += n.to_bytes(2, "big")
    mask = os.urandom(4)
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
