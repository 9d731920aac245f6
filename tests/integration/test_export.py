"""chatgw-export: transcripts as JSON Lines by date, queue, state, or a reproducible sample."""
import asyncio
import datetime
import json
import os
import subprocess

from chat import agent, customer, new_cmid
from conftest import BUILD


def export(redis_srv, *args):
    out = subprocess.run([os.path.join(BUILD, "chatgw-export"), "--redis", redis_srv.url, *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_export_transcripts(procs, redis_srv):
    gw = procs.gateway()
    procs.router()
    token = procs.agent_token("kim", "Kim", cap=10)

    async def scenario():
        a = await agent(gw, token)
        convs = []
        for i in range(6):
            c = await customer(gw)
            ack = await c.say(f"question {i}: 我的退款呢?")
            await a.expect_type("assigned", conv=ack["conv"])
            await a.say(f"answer {i}", conv=ack["conv"])
            await c.expect(lambda f: f.get("text") == f"answer {i}")
            convs.append(ack["conv"])
            await c.close()
        await a.send({"type": "close", "conv": convs[0], "code": "resolved", "cmid": new_cmid()})
        await a.expect(lambda f: f.get("type") == "closed" and f.get("conv") == convs[0])
        await a.close()
        return convs

    convs = asyncio.run(asyncio.wait_for(scenario(), 60))
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")

    rows = export(redis_srv)
    assert sorted(r["conv"] for r in rows) == sorted(convs)
    first = next(r for r in rows if r["conv"] == convs[0])
    assert first["state"] == "closed" and first["resolution"] == "resolved"
    assert first["agent"] == "kim" and first["queue"] == "general" and first["channel"] == "web"
    seqs = [m["seq"] for m in first["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))
    texts = [m.get("text") for m in first["messages"]]
    assert "question 0: 我的退款呢?" in texts and "answer 0" in texts
    types = [m["type"] for m in first["messages"]]
    assert types[types.index("closed"):] in (["closed"], ["closed", "survey"])  # survey follows

    assert [r["conv"] for r in export(redis_srv, "--state", "closed")] == [convs[0]]
    assert len(export(redis_srv, "--from", today, "--to", today, "--queue", "general")) == 6
    assert export(redis_srv, "--to", "2000-01-01") == []
    assert export(redis_srv, "--queue", "complaints") == []
    # sampling: 0 % none, 100 % all, 50 % the same subset for the same seed
    assert export(redis_srv, "--sample", "0") == []
    assert len(export(redis_srv, "--sample", "100")) == 6
    s1 = sorted(r["conv"] for r in export(redis_srv, "--sample", "50", "--seed", "7"))
    s2 = sorted(r["conv"] for r in export(redis_srv, "--sample", "50", "--seed", "7"))
    assert s1 == s2 and set(s1) <= set(convs)
