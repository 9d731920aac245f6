"""A small WebSocket client for the chatgw protocol (docs/protocol.md), for tests and the bench."""
import asyncio
import weakref
import itertools
import json

import msgpack
import websockets

JSON = "chatgw.json.v1"
MSGPACK = "chatgw.msgpack.v1"
_cmids = itertools.count(1)


def new_cmid(prefix="c"):
    return f"{prefix}-{next(_cmids)}"


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"connection closed {code} {reason}")
        self.code = code
        self.reason = reason


OPEN = weakref.WeakSet()  # clients not closed yet


class Client:
    """One connection. Every received frame is kept in .frames (in order)."""

    def __init__(self, ws, proto):
        self.ws = ws
        self.proto = proto
        self.frames = []
        self._idx = 0
        self.welcome = None

    @classmethod
    async def connect(cls, base_ws, path, proto=JSON, origin=None, **kw):
        # close_timeout 1: a test that leaves a connection open does not idle 10 s at its end
        kw.setdefault("close_timeout", 1)
        ws = await websockets.connect(base_ws + path, subprotocols=[proto] if proto else None,
                                      origin=origin, max_size=2**24, open_timeout=10,
                                      ping_interval=None, **kw)
        c = cls(ws, proto or JSON)
        c.loop = asyncio.get_running_loop()
        OPEN.add(c)
        return c

    async def send(self, obj):
        if self.proto == MSGPACK:
            await self.ws.send(msgpack.packb(obj, use_bin_type=True))
        else:
            await self.ws.send(json.dumps(obj, ensure_ascii=False))

    async def send_raw(self, data):
        await self.ws.send(data)

    async def _recv_one(self, timeout):
        try:
            data = await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.exceptions.ConnectionClosed as e:
            raise Closed(e.code, e.reason)
        f = msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else json.loads(data)
        self.frames.append(f)
        return f

    async def expect(self, pred, timeout=10.0, what="frame"):
        """Return the first frame (not yet consumed by expect) matching pred."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._idx < len(self.frames):
                f = self.frames[self._idx]
                self._idx += 1
                if pred(f):
                    return f
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {self.frames[-8:]}")
            try:
                await self._recv_one(left)
            except asyncio.TimeoutError:
                pass

    async def expect_unordered(self, *preds, timeout=10.0, what="frames"):
        """Return the first frames (not yet consumed) matching each pred, in any order of arrival
        (e.g. a command's ack and the event it caused travel different paths); consumes up to
        the last of them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found, last = [], self._idx - 1
            for pred in preds:
                i = next((k for k in range(self._idx, len(self.frames))
                          if k not in found and pred(self.frames[k])), None)
                if i is None:
                    break
                found.append(i)
                last = max(last, i)
            if len(found) == len(preds):
                self._idx = last + 1
                return [self.frames[i] for i in found]
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {self.frames[-8:]}")
            try:
                await self._recv_one(left)
            except asyncio.TimeoutError:
                pass

    async def expect_type(self, t, timeout=10.0, **fields):
        return await self.expect(
            lambda f: f.get("type") == t and all(f.get(k) == v for k, v in fields.items()),
            timeout, f"{t} {fields}")

    async def expect_closed(self, timeout=10.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError("connection not closed in time")
            try:
                await self._recv_one(left)
            except Closed as e:
                return e
            except asyncio.TimeoutError:
                pass

    async def hello(self, **fields):
        await self.send(dict(type="hello", **fields))
        f = await self.expect(lambda f: f.get("type") in ("welcome", "error"), what="welcome")
        if f["type"] == "error":
            raise AssertionError(f"hello refused: {f}")
        self.welcome = f
        return f

    async def say(self, text, **fields):
        """Send a text and wait for its ack; returns the ack."""
        cmid = fields.pop("cmid", None) or new_cmid()
        await self.send(dict(type="text", cmid=cmid, text=text, **fields))
        return await self.expect(
            lambda f: f.get("cmid") == cmid and f.get("type") in ("ack", "error"), what="ack")

    def logged(self, conv=None):
        """Logged frames (with seq) received, in order, optionally for one conversation."""
        return [f for f in self.frames if f.get("seq") and f.get("type") != "ack"
                and (conv is None or f.get("conv") == conv)]

    async def close(self):
        OPEN.discard(self)
        await self.ws.close()


async def close_all():
    """Close every client a scenario left open (desk.run does, at the scenario's end)."""
    loop = asyncio.get_running_loop()
    for c in list(OPEN):
        if getattr(c, "loop", loop) is not loop:
            # left open by a scenario run on another (finished) event loop, which took its
            # connection with it: nothing to close from here (awaiting it would raise)
            OPEN.discard(c)
            continue
        try:
            await asyncio.wait_for(c.close(), 2)
        except (asyncio.TimeoutError, websockets.exceptions.WebSocketException, OSError):
            pass


async def customer(gw, **hello):
    c = await Client.connect(gw.ws, "/ws/customer", hello.pop("proto", JSON))
    await c.hello(**hello)
    return c


async def agent(gw, token, proto=JSON):
    a = await Client.connect(gw.ws, "/ws/agent", proto)
    await a.hello(token=token)
    return a
