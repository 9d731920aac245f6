"""Regressions found by `make chaos` (bench/chaos.py)."""
import asyncio
import socket

import websockets

import chat
from chat import JSON, Client, customer
from desk import run


def test_ack_is_not_lost_when_the_send_queue_is_full(procs):
    """A client whose send queue is full of logged messages (it reads slowly, or a reconnect's
    catch-up of several conversations filled it) still gets the ack of what it sends: the ack
    used to be dropped, and the client waited for it forever (chaos: agents with a few long
    conversations stalled after each reconnect)."""
    gw = procs.gateway({"CHATGW_SEND_QUEUE_MAX": 8, "CHATGW_RATE_MSGS": 100000,
                        "CHATGW_RATE_BURST": 100000})

    async def scenario():
        writer = await customer(gw)
        token = writer.welcome["token"]
        conv = (await writer.say("first"))["conv"]
        # a second tab of the same customer that reads nothing: a tiny receive buffer, and
        # the client library buffers at most one message
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", gw.port))
        ws = await websockets.connect(gw.ws + "/ws/customer", sock=sock, subprotocols=[JSON],
                                      max_size=2**24, max_queue=1, read_limit=4096,
                                      ping_interval=None)
        slow = Client(ws, JSON)
        await slow.hello(token=token, conv=conv, last_seq=1)
        # more than every buffer on the way holds (kernel socket buffers up to 4 MiB)
        big = "x" * 30000
        for i in range(300):
            assert (await writer.say(big, cmid=f"big-{i}"))["type"] == "ack"
        await ws.send('{"type":"text","cmid":"slow-1","text":"from the slow tab"}')
        await writer.expect(lambda f: f.get("cmid") == "slow-1", what="the slow tab's text")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # now read it all
        ack = await slow.expect_type("ack", timeout=60, cmid="slow-1")
        assert ack["conv"] == conv, ack
        await writer.close()
        ws.transport.abort()  # a close handshake would first wait for megabytes it never read
        chat.OPEN.discard(slow)  # nothing left to close (the library's close of an aborted
        # transport can fail in odd ways at the scenario's end)

    run(scenario(), timeout=120)
