"""GET /metrics: Prometheus text format, valid for promtool, values that follow the desk."""
import asyncio
import re
import shutil
import subprocess
import urllib.request

import pytest

from chat import agent, customer
from conftest import wait_until


def scrape(gw):
    with urllib.request.urlopen(gw.base + "/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{[^}}]*{re.escape(want)}[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_metrics_follow_queues_and_connections(procs):
    gw = procs.gateway()
    procs.router()
    token = procs.agent_token("lee", cap=1)

    async def scenario():
        a = await agent(gw, token)
        c1 = await customer(gw)
        ack1 = await c1.say("first")
        await a.expect_type("assigned", conv=ack1["conv"])
        c2 = await customer(gw)
        await c2.say("second, waiting")  # cap 1: waits
        await c2.expect(lambda f: f.get("position") == 1)
        text = scrape(gw)
        assert value(text, "chatgw_queue_waiting", queue="general") == 1
        assert value(text, "chatgw_queue_agents_available", queue="general") == 0
        assert value(text, "chatgw_queue_oldest_wait_seconds", queue="general") >= 0
        assert value(text, "chatgw_gateway_connections", role="customer") == 2
        assert value(text, "chatgw_gateway_connections", role="agent") == 1
        assert value(text, "chatgw_gateway_messages_in_total") >= 2
        assert value(text, "chatgw_redis_up") == 1
        for x in (a, c1, c2):
            await x.close()
        return text

    text = asyncio.run(asyncio.wait_for(scenario(), 30))
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool missing (Debian package prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # POST is refused
    req = urllib.request.Request(gw.base + "/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405


def test_metrics_when_redis_is_down(procs, redis_srv):
    gw = procs.gateway()
    redis_srv.kill()
    wait_until(lambda: value(scrape(gw), "chatgw_redis_up") == 0, 10, "redis_up 0")
