"""WebSocket keepalive: the gateway pings every ws_ping_interval seconds and drops a peer that
stops answering; a client that answers stays connected."""
import asyncio
import json
import socket

from websockets.client import ClientConnection
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from chat import customer
from desk import run


class SilentPeer:
    """A WebSocket client that never answers a ping: websockets' sans-I/O connection parses the
    frames, and the pongs it queues are thrown away instead of sent."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=1)
        self.conn = ClientConnection(parse_uri(f"ws://127.0.0.1:{port}/ws/customer"),
                                     subprotocols=["chatgw.json.v1"])
        self.conn.send_request(self.conn.connect())
        self._flush()
        self.pings = 0
        self.frames = []
        self.eof = False
        while not any(isinstance(e, Response) for e in self.frames):  # the 101
            assert not self.poll(), "upgrade refused"
        assert self.frames[0].status_code == 101, self.frames[0]

    def _flush(self):
        for data in self.conn.data_to_send():
            if data:
                self.sock.sendall(data)

    def send(self, obj):
        self.conn.send_text(json.dumps(obj).encode())
        self._flush()

    def poll(self):
        """Read what arrived (up to 1 s); True once the gateway closed the TCP connection."""
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return True
        self.conn.receive_data(data)
        for ev in self.conn.events_received():
            if getattr(ev, "opcode", None) == Opcode.PING:
                self.pings += 1
            else:
                self.frames.append(ev)
        list(self.conn.data_to_send())  # the pongs: never sent
        return False

    def close(self):
        self.sock.close()


def test_silent_peer_is_closed_and_a_ponging_client_stays(procs):
    gw = procs.gateway({"CHATGW_WS_PING_INTERVAL": "1"})

    async def scenario():
        good = await customer(gw)  # websockets answers pings by itself
        silent = SilentPeer(gw.port)
        silent.send({"type": "hello"})
        try:
            for _ in range(20):  # bounded: 20 reads of at most 1 s (the gateway needs ~3 s)
                if await asyncio.to_thread(silent.poll):
                    break
            assert silent.eof, "the gateway kept a peer that never answered its pings"
            assert silent.pings >= 1, "the gateway never pinged"
            assert any(getattr(f, "opcode", None) == Opcode.TEXT for f in silent.frames)  # welcome
        finally:
            silent.close()
        # the client that answered has been connected longer than the silent one and still works
        ack = await good.say("still here")
        assert ack["type"] == "ack" and ack["seq"] >= 1
        await good.close()

    run(scenario())


def test_bad_ping_interval_stops_the_gateway_with_a_clear_error(procs):
    gw = procs.gateway({"CHATGW_WS_PING_INTERVAL": "5000"}, wait_ready=False)
    gw.wait_log("CHATGW_WS_PING_INTERVAL", 10)
    assert gw.proc.wait(10) == 2
    assert "CHATGW_WS_PING_INTERVAL" in gw.text() and "3600" in gw.text(), gw.text()
