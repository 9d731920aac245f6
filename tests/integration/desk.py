"""Small helpers the integration tests share: running a scenario, and reading a conversation
back from Redis the way the desk stores it (cg:{t:default}:conv:<conv> hash, cg:{t:default}:conv:<conv>:log stream)."""
import asyncio

import msgpack


def run(coro, timeout=60):
    """Run an async scenario to completion, failing it after timeout seconds; the connections it
    left open are closed at its end."""
    from chat import close_all

    async def scenario():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            await close_all()
    return asyncio.run(scenario())


def s(v):
    """bytes from redis-py as str (other values unchanged)."""
    return v.decode() if isinstance(v, bytes) else v


def named(res):
    """An event function's answer (redis/event.lua answer(): {kind, name1, value1, ...}) as
    (kind, {name: value}); strings as str, nested arrays (a ROW, a list of ROWs) as lists of
    them."""
    def val(v):
        return [val(x) for x in v] if isinstance(v, list) else s(v)
    assert isinstance(res, list) and res and len(res) % 2 == 1, res
    return s(res[0]), {s(res[i]): val(res[i + 1]) for i in range(1, len(res), 2)}


def conv_hash(r, conv):
    """The conversation's hash as {str: str}."""
    return {s(k): s(v) for k, v in r.hgetall(f"cg:{{t:default}}:conv:{conv}").items()}


def log_of(r, conv):
    """The conversation's transcript, oldest first, as decoded msg dicts."""
    return [msgpack.unpackb(f[b"m"], raw=False) for _, f in r.xrange(f"cg:{{t:default}}:conv:{conv}:log")]


def message_map(conv, cmid, role, sender, payload, newconv="", channel="", now=0, mode="log",
                preview="", *attrs):
    """cg_message's one argument (redis/conv.lua): the msgpack map of these fields (attrs: name,
    value pairs), strings as msgpack str (Redis's cmsgpack reads no bin types)."""
    m = {"conv": conv, "cmid": cmid, "role": role, "sender": sender, "payload": payload,
         "newconv": newconv, "channel": channel, "now": int(now), "mode": mode}
    if preview:
        m["preview"] = preview
    if attrs:
        m["attrs"] = dict(zip(attrs[::2], attrs[1::2]))
    return msgpack.packb(m, use_bin_type=False)


def stored(res):
    """cg_message's answer ('stored' with conv, seq, dup) as [conv, seq, dup]."""
    kind, f = named(res)
    assert kind == "stored", res
    return [f["conv"].encode(), int(f["seq"]), int(f["dup"])]


def store(r, *args):
    """FCALL cg_message with the fields in message_map's order, as the gateway and the event
    functions store a message: [conv (bytes), seq, dup]."""
    return stored(r.fcall("cg_message", 1, "cg:{t:default}", message_map(*args)))


def append_text(r, role, sender, text, conv="", now=1_800_000_000_000, cmid=None):
    """A text stored the way the gateway stores it (FCALL cg_message ... log), for tests of the
    Redis functions alone: (conv, seq, dup)."""
    import uuid
    m = {"v": 1, "type": "text", "id": uuid.uuid4().hex, "cmid": cmid or uuid.uuid4().hex,
         "channel": "web", "dir": "in" if role == "customer" else "out", "role": role,
         "sender_id": sender, "ts": now, "text": text}
    res = store(r, conv, m["cmid"], role, sender, msgpack.packb(m), uuid.uuid4().hex, "web", now,
                "log", text[:160])
    return s(res[0]), res[1], res[2]


class Monitor:
    """The commands Redis runs between start() and stop(), as MONITOR shows them: a thread reads
    them; stop() sends a marker (ECHO) and returns [(NAME, rest of the line)] up to it."""
    END = "end-of-monitor"

    def __init__(self, r):
        import threading
        self.r, self.seen, self.ready = r, [], threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self):
        with self.r.monitor() as mon:
            self.ready.set()
            for ev in mon.listen():
                cmd = ev["command"]
                if cmd == f"ECHO {self.END}":
                    return
                name, _, rest = cmd.partition(" ")
                self.seen.append((name.upper(), rest))

    def start(self):
        self.thread.start()
        assert self.ready.wait(10), "MONITOR did not start"
        return self

    def stop(self):
        self.r.echo(self.END)
        self.thread.join(10)
        assert not self.thread.is_alive(), "MONITOR did not see its end marker"
        return self.seen

    # What the processes call on their own clocks, whatever the test does: the router's timer
    # claim, outbox, reaper, trim and queue snapshots, the gateways' heartbeat work.
    BACKGROUND = ("cg_timer_claim", "cg_outbox_announce", "cg_gw_reap", "cg_trim", "cg_queue_list")

    def fcalls(self, background=False):
        """The functions called, in order (after stop()); without the periodic BACKGROUND ones
        unless background is true (a tick may fall in any window)."""
        names = [rest.split(" ", 1)[0].strip('"') for name, rest in self.seen if name == "FCALL"]
        return names if background else [f for f in names if f not in self.BACKGROUND]
