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


def conv_hash(r, conv):
    """The conversation's hash as {str: str}."""
    return {s(k): s(v) for k, v in r.hgetall(f"cg:{{t:default}}:conv:{conv}").items()}


def log_of(r, conv):
    """The conversation's transcript, oldest first, as decoded msg dicts."""
    return [msgpack.unpackb(f[b"m"], raw=False) for _, f in r.xrange(f"cg:{{t:default}}:conv:{conv}:log")]


def append_text(r, role, sender, text, conv="", now=1_800_000_000_000, cmid=None):
    """A text stored the way the gateway stores it (FCALL cg_append ... log), for tests of the
    Redis functions alone: (conv, seq, dup)."""
    import uuid
    m = {"v": 1, "type": "text", "id": uuid.uuid4().hex, "cmid": cmid or uuid.uuid4().hex,
         "channel": "web", "dir": "in" if role == "customer" else "out", "role": role,
         "sender_id": sender, "ts": now, "text": text}
    res = r.fcall("cg_append", 1, "cg:{t:default}", conv, m["cmid"], role, sender,
                  msgpack.packb(m), uuid.uuid4().hex, "web", now, "log", text[:160])
    return s(res[0]), res[1], res[2]
