"""What a WebSocket connection that has not said hello costs the gateway (issue 12, target:
10,000 slow-loris connections under 50 MB). Such a connection gets no session until its first
whole message (gateway/ws.c), lws reads it through a 1 KiB receive buffer, and a message being
reassembled starts in a 256-byte buffer: measured ~2.5 KiB of gateway RSS per connection that
completed the upgrade and sent nothing or one trickled byte of a message (8-8.7 KiB before).

The test holds a few hundred such connections, waits until the gateway counts them all
(/healthz "connections"), and compares the growth of its VmRSS with the documented bound of
WAITING_CONN_BOUND bytes per connection: generous for allocator noise, well under the old cost."""
import json
import os
import socket
import urllib.request

import pytest

from chat import customer
from conftest import wait_until
from desk import run

WAITING_CONN_BOUND = 4096  # bytes of gateway RSS per connection without hello (docs/architecture.md)
N = 600  # half silent, half with one trickled byte of a message

UPGRADE = (b"GET /ws/customer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chatgw.json.v1\r\n\r\n")
# a masked text frame announcing 1,000 bytes (mask key 0), and the first byte of its payload
TRICKLED = bytes([0x81, 0x80 | 126, 0x03, 0xE8, 0, 0, 0, 0]) + b"{"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connections(gw):
    with urllib.request.urlopen(gw.base + "/healthz", timeout=5) as r:
        return json.loads(r.read())["connections"]


def open_waiting(gw, n, first=0):
    """n upgraded connections that never say hello (every other one trickles a message)."""
    out = []
    for i in range(first, first + n):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(UPGRADE)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            assert chunk, "closed during the upgrade"
            got += chunk
        assert got.startswith(b"HTTP/1.1 101 "), got[:80]
        if i % 2:
            s.sendall(TRICKLED)
        out.append(s)
    return out


@pytest.mark.skipif(bool(os.environ.get("ASAN_OPTIONS")),
                    reason="under ASan (make asan) redzones and the allocation quarantine make RSS "
                           "no measure of what a connection costs")
def test_connections_without_hello_cost_little(procs):
    gw = procs.gateway({"CHATGW_MAX_CONNS_PER_IP": 0, "CHATGW_HELLO_TIMEOUT_MS": 600000,
                        "CHATGW_FRAME_TIMEOUT_MS": 600000, "CHATGW_LOG_LEVEL": "info"})
    socks = []
    try:
        # one-time allocations (lws' tables, the first heap arenas) out of the figure
        socks += open_waiting(gw, 50)
        wait_until(lambda: connections(gw) == 50, what="50 connections counted")
        before = rss_kb(gw.pid)
        socks += open_waiting(gw, N, first=50)
        wait_until(lambda: connections(gw) == 50 + N, what=f"{50 + N} connections counted")
        grown = (rss_kb(gw.pid) - before) * 1024
        assert grown <= N * WAITING_CONN_BOUND, (
            f"{N} connections without hello grew the gateway's RSS by {grown} bytes: "
            f"{grown / N:.0f} per connection, bound {WAITING_CONN_BOUND}")
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: connections(gw) == 0, what="the connections to be gone")


def test_trickled_first_message_is_closed_in_time(procs):
    """A connection without a session whose first message never ends is closed 1008 like any
    other (the session is made for the close)."""
    gw = procs.gateway({"CHATGW_FRAME_TIMEOUT_MS": 300, "CHATGW_LOG_LEVEL": "info"})
    s = open_waiting(gw, 2)
    try:
        s[1].settimeout(10)
        got = b""
        while len(got) < 4 or len(got) < 2 + got[1]:
            chunk = s[1].recv(256)
            assert chunk, "closed without a close frame"
            got += chunk
        assert got[0] == 0x88, got  # a close frame
        assert int.from_bytes(got[2:4], "big") == 1008, got
        assert got[4:2 + got[1]] == b"message not finished in time", got
    finally:
        for c in s:
            c.close()
    wait_until(lambda: connections(gw) == 0, what="the connections to be gone")


def test_connection_without_hello_is_closed_after_hello_timeout(procs):
    """hello_timeout_ms holds for connections without a session (no message at all) and for
    ones whose first message was not a hello (closed 1008 "no hello in time", from ws.c's own
    deadline queue); a customer that said hello stays."""
    gw = procs.gateway({"CHATGW_HELLO_TIMEOUT_MS": 300, "CHATGW_LOG_LEVEL": "info"})
    silent = open_waiting(gw, 1)[0]
    noise = open_waiting(gw, 1)[0]
    noise.sendall(bytes([0x81, 0x80 | 2, 0, 0, 0, 0]) + b"{}")  # a message, not a hello

    async def scenario():
        c = await customer(gw)
        for s in (silent, noise):
            s.settimeout(10)
            got = b""
            while True:  # whatever came before (an error answer), then the close and the end
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            # a close frame: 1008 and its reason
            assert b"\x88\x12\x03\xf0no hello in time" in got, got
        assert (await c.say("still here"))["type"] == "ack"
        await c.close()

    try:
        run(scenario())
    finally:
        silent.close()
        noise.close()
    wait_until(lambda: connections(gw) == 0, what="the connections to be gone")
