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
