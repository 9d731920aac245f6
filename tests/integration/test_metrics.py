"""GET /metrics: Prometheus text format, valid for promtool, values that follow the desk."""
import asyncio
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from chat import agent, customer
from conftest import METRICS_TOKEN, wait_until


def scrape(gw):
    req = urllib.request.Request(gw.base + "/metrics",
                                 headers={"Authorization": "Bearer " + METRICS_TOKEN})
    with urllib.request.urlopen(req, timeout=5) as r:
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
        assert value(text, "chatgw_gateway_connections", role="pending") == 0
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


def http_status(url, headers=None):
    """(status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_need_the_bearer_token(procs):
    gw = procs.gateway()
    for headers in ({}, {"Authorization": "Bearer wrong-token"},
                    {"Authorization": "Bearer " + METRICS_TOKEN + "x"},
                    {"Authorization": "Basic " + METRICS_TOKEN}):
        status, body = http_status(gw.base + "/metrics", headers)
        assert status == 401, (headers, status)
        assert "metrics_token" in body and "chatgw_" not in body, body
    assert "chatgw_redis_up" in scrape(gw)
    # no token configured: /metrics is off, and says why
    off = procs.gateway({"CHATGW_METRICS_TOKEN": ""})
    status, body = http_status(off.base + "/metrics",
                               {"Authorization": "Bearer " + METRICS_TOKEN})
    assert status == 403 and "metrics_token is not set" in body, (status, body)
    assert "Bearer" not in off.text() and METRICS_TOKEN not in gw.text()  # never logged


def test_metrics_when_redis_is_down(procs, redis_srv):
    gw = procs.gateway()
    redis_srv.kill()
    wait_until(lambda: value(scrape(gw), "chatgw_redis_up") == 0, 10, "redis_up 0")


def test_metrics_families_without_activity_and_agent_cap(procs, redis_srv):
    """The desk's counter families are there (zero) for a configured queue with no activity; at
    most 10 000 agents are exported (the first by id) and the cut is logged."""
    r = redis_srv.r
    gw = procs.gateway()
    procs.router()
    wait_until(lambda: r.sismember("cg:{t:default}:queues", "general"), 10, "queues published")
    text = scrape(gw)
    for fam, kind in (("first_response_seconds", "summary"), ("response_seconds", "summary"),
                      ("resolution_seconds", "summary"), ("closed_total", "counter"),
                      ("resolved_total", "counter"), ("fcr_total", "counter"),
                      ("rated_total", "counter"), ("csat_good_total", "counter"),
                      ("abandoned_total", "counter"), ("sla_breaches_total", "counter"),
                      ("fcr_ratio", "gauge"), ("csat_ratio", "gauge")):
        assert f"# TYPE chatgw_queue_{fam} {kind}\n" in text
        if fam != "abandoned_total":
            assert f"# TYPE chatgw_agent_{fam} {kind}\n" in text
    assert value(text, "chatgw_queue_closed_total", queue="general") == 0
    assert value(text, "chatgw_queue_first_response_seconds_count", queue="general") == 0
    assert value(text, "chatgw_queue_fcr_ratio", queue="general") is None  # no data: absent

    ids = [f"a{i:05d}" for i in range(10005)]
    p = r.pipeline(transaction=False)
    for i in range(0, len(ids), 1000):
        p.sadd("cg:{t:default}:kpi:agents", *ids[i:i + 1000])
    p.hset("cg:{t:default}:kpi:agent:a00000", mapping={"closed": 4, "fcr": 1})
    p.hset("cg:{t:default}:kpi:agent:a10004", mapping={"closed": 7})
    p.execute()
    start = len(gw.lines)
    text = scrape(gw)
    gw.wait_log("10005 agents have counters; exporting the first 10000", 5, start)
    closed = re.findall(r'^chatgw_agent_closed_total\{agent="([^"]*)"\} (\S+)$', text, re.M)
    assert len(closed) == 10000 and closed[0] == ("a00000", "4") and closed[-1][0] == "a09999"
    assert value(text, "chatgw_agent_fcr_ratio", agent="a00000") == 0.25
