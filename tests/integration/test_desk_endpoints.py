"""The agent console's desk endpoints against a real gateway and router (gateway/desk.c,
gateway/custinfo.c): GET /desk (resolutions, categories and queues as the router published them
in cg:deskcfg / cg:queues / cg:queuecfg, online agents with name and load) and
GET /customer?conv=<conv> (the customer panel of a conversation assigned to the asking agent).

Run: /usr/bin/python3 -m pytest -q tests/integration/test_desk_endpoints.py
"""
import json
import time
import urllib.error
import urllib.request

import jwt

from chat import agent, customer, new_cmid
from conftest import JWT_SECRET, wait_until
from desk import run

CONFIG = """
[router]
default_queue = general
default_locale = en
resolutions = resolved, duplicate ,spam,Bad Code,resolved,unresolved
unresolved_resolutions = unresolved

[queue general]
mode = push
name_zh = 综合
name_en = General

[queue billing]
mode = pull
name_en = Billing

[rule refund]
queue = billing
keywords = refund

[rule complaint]
queue = billing
keywords = complaint
"""

DESK = "cg:{t:default}:deskcfg"


def get(gw, path, token=None, auth=None):
    """GET path -> (status, parsed JSON body or the text)."""
    req = urllib.request.Request(f"{gw.base}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status, body = r.status, r.read().decode()
            assert r.headers["Content-Type"].startswith("application/json")
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def signed(role, sub, exp_in, jti="desk-test-1"):
    now = int(time.time())
    claims = {"role": role, "sub": sub, "skills": ["general"], "cap": 1, "iat": now - 60,
              "exp": now + exp_in, "jti": jti}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def start(procs, tmp_path):
    path = tmp_path / "desk.ini"
    path.write_text(CONFIG, encoding="utf-8")
    router = procs.router({"CHATGW_CONFIG": str(path), "CHATGW_BLOCK_MS": 200})
    gw = procs.gateway({"CHATGW_CONFIG": str(path)})
    return router, gw


def test_desk_lists_what_the_router_published_and_who_is_online(redis_srv, procs, tmp_path):
    r = redis_srv.r
    _, gw = start(procs, tmp_path)
    wait_until(lambda: r.hget(DESK, "categories"), 10, "desk lists published")
    # the router publishes the configured lists as they are; the gateway cleans them
    assert r.hget(DESK, "categories").decode().split(",")[0] == "default"
    assert set(r.hget(DESK, "categories").decode().split(",")) == {"default", "complaint", "refund"}
    assert r.hget(DESK, "resolutions") == b"resolved, duplicate ,spam,Bad Code,resolved,unresolved"
    ann = procs.agent_token("ann", "Ann", skills=("general", "billing"), cap=3)
    bob = procs.agent_token("bob", "Bob", skills=("general",), cap=2)

    async def scenario():
        a = await agent(gw, ann)
        b = await agent(gw, bob)
        await b.send({"type": "presence", "code": "online"})
        wait_until(lambda: r.sismember("cg:{t:default}:online:general", "bob"), 10, "bob online")
        wait_until(lambda: r.sismember("cg:{t:default}:online:general", "ann"), 10, "ann online")
        status, desk = get(gw, "/desk", ann)
        assert status == 200, desk
        assert desk["resolutions"] == ["resolved", "duplicate", "spam", "unresolved"]
        assert desk["unresolved"] == ["unresolved"]
        assert desk["categories"][0] == "default"
        assert sorted(desk["categories"]) == ["complaint", "default", "refund"]
        queues = {q["name"]: q for q in desk["queues"]}
        assert [q["name"] for q in desk["queues"]] == sorted(queues)
        assert queues["general"]["name_zh"] == "综合" and queues["general"]["name_en"] == "General"
        assert queues["general"]["mode"] == "push" and queues["billing"]["mode"] == "pull"
        assert queues["general"]["online"] == 2
        # the asking agent is left out; the others with name, status, load and capacity
        ids = [x["id"] for x in desk["agents"]]
        assert "ann" not in ids and "bob" in ids
        bobs = [x for x in desk["agents"] if x["id"] == "bob"][0]
        assert bobs["name"] == "Bob" and bobs["cap"] == 2 and bobs["load"] == 0
        assert bobs["queues"] == ["general"]
        # bob sees ann with her two queues
        status, desk = get(gw, "/desk", bob)
        assert status == 200
        anns = [x for x in desk["agents"] if x["id"] == "ann"][0]
        assert sorted(anns["queues"]) == ["billing", "general"] and anns["cap"] == 3
        for x in (a, b):
            await x.close()
    run(scenario())

    # no token, a bad one, a customer's, an expired one, a non-bearer scheme: 401
    assert get(gw, "/desk")[0] == 401
    assert get(gw, "/desk", "not.a.token")[0] == 401
    assert get(gw, "/desk", auth=f"Basic {ann}")[0] == 401
    assert get(gw, "/desk", signed("customer", "c1", 3600))[0] == 401
    assert get(gw, "/desk", signed("agent", "zed", -10))[0] == 401
    assert get(gw, "/desk", signed("agent", "zed", 3600))[0] == 200  # the helper is right
    # a revoked token: 401 with the reason
    r.set("cg:{t:default}:revoked:desk-test-1", 1)
    status, body = get(gw, "/desk", signed("agent", "zed", 3600))
    assert (status, body["reason"]) == (401, "token revoked")
    # POST is refused
    for path in ("/desk", "/customer?conv=x"):
        req = urllib.request.Request(f"{gw.base}{path}", data=b"x", method="POST")
        req.add_header("Authorization", f"Bearer {ann}")
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError(f"POST {path} accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 405
    # not published yet: 503 with the reason
    r.delete(DESK)
    status, body = get(gw, "/desk", ann)
    assert (status, body["reason"]) == (503, "not_published")
    # Redis down: 503
    redis_srv.kill()
    wait_until(lambda: get(gw, "/desk", ann)[0] == 503, 10, "503 while redis is down")


def test_customer_panel_for_the_assigned_agent_only(redis_srv, procs, tmp_path):
    r = redis_srv.r
    _, gw = start(procs, tmp_path)
    ann = procs.agent_token("ann", "Ann", skills=("general",), cap=2)
    bob = procs.agent_token("bob", "Bob", skills=("general",), cap=2)

    async def scenario():
        a = await agent(gw, ann)
        await a.send({"type": "presence", "code": "online"})
        c = await customer(gw, identity={"locale": "zh-CN", "name": "Li Lei"})
        first = (await c.say("hello"))["conv"]
        await a.expect_type("assigned", conv=first)
        assert (await a.say("how can I help?", conv=first))["type"] == "ack"
        await a.send({"type": "close", "conv": first, "code": "resolved", "cmid": new_cmid("close")})
        await c.expect_type("closed", conv=first)
        await c.send({"type": "rating", "rating": 4, "conv": first, "cmid": "rate-1"})
        wait_until(lambda: r.hget(f"cg:{{t:default}}:conv:{first}", "rating") == b"4", 10, "rated")
        second = (await c.say("one more thing"))["conv"]
        assert second != first
        await a.expect_type("assigned", conv=second)

        status, panel = get(gw, f"/customer?conv={second}", ann)
        assert status == 200, panel
        assert panel["conv"] == second and panel["customer"] == c.welcome["sender_id"]
        assert panel["channel"] == "web" and panel["locale"] == "zh-CN"
        assert panel["queue"] == "general" and panel["created"] > 0
        # the customer's earlier conversations (cg:cust:<customer>:convs), this one not among them
        assert panel["last_agent"] == "ann"
        assert panel["earlier"] == [{"conv": first, "created": panel["earlier"][0]["created"],
                                     "state": "closed", "resolution": "resolved", "rating": 4,
                                     "channel": "web"}]
        # a conversation that follows up an earlier one (as complaint follow-ups do) names it
        # first, and once
        r.hset(f"cg:{{t:default}}:conv:{second}", "followup_of", first)
        status, panel = get(gw, f"/customer?conv={second}", ann)
        assert status == 200 and [e["conv"] for e in panel["earlier"]] == [first]
        # the closed conversation stays its last agent's (the console shows it read-only)
        status, panel = get(gw, f"/customer?conv={first}", ann)
        assert (status, panel["rating"]) == (200, 4)
        status, body = get(gw, f"/customer?conv={second}", bob)
        assert (status, body["error"]) == (403, "forbidden")
        assert get(gw, "/customer?conv=0123456789abcdef0123456789abcdef", ann)[0] == 404
        assert get(gw, "/customer?conv=bad%20id", ann)[0] == 400
        assert get(gw, "/customer?conv=" + "a" * 65, ann)[0] == 400
        assert get(gw, "/customer", ann)[0] == 400
        assert get(gw, f"/customer?conv={second}")[0] == 401
        assert get(gw, f"/customer?conv={second}", signed("customer", c.welcome["sender_id"], 60))[0] == 401
        for x in (a, c):
            await x.close()
        return second
    second = run(scenario())
    # Redis down: 503 with the reason
    redis_srv.kill()
    wait_until(lambda: get(gw, f"/customer?conv={second}", ann)[0] == 503, 10, "503 while redis is down")
