"""Canned replies per queue: [canned <queue>] sections published by a real router
(FCALL cg_canned_set → cg:{t:default}:canned:<queue>) and read by agents from a real gateway with
GET /canned?queue=<queue> and their console token; reload on SIGHUP; start-up validation.

Run: BUILD=build/h-canned /usr/bin/python3 -m pytest -q tests/integration/test_canned.py
"""
import json
import os
import signal
import time
import urllib.error
import urllib.request

import jwt

from conftest import JWT_SECRET, wait_until
from test_router import FAST, ROOT

CONFIG = """
[router]
default_queue = general
[queue faq]
name_en = FAQ
[queue billing]
name_en = Billing
[canned faq]
shipping = Orders ship within 24 hours; delivery takes {days} days.
returns_zh = 签收后 7 天内可无理由退货。
a_first = Hello {name}, how can I help?
[canned billing]
refund_steps = 1. Open "My orders".
  2. Choose "Request a refund".
"""

FAQ_REPLIES = [
    {"name": "a_first", "text": "Hello {name}, how can I help?"},
    {"name": "returns_zh", "text": "签收后 7 天内可无理由退货。"},
    {"name": "shipping", "text": "Orders ship within 24 hours; delivery takes {days} days."},
]


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def get(gw, query, token=None, auth=None):
    """GET /canned?<query> -> (status, content type, body text)."""
    req = urllib.request.Request(f"{gw.base}/canned?{query}" if query else f"{gw.base}/canned")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def signed(role, skills, exp_in):
    """A token signed with the gateway's secret (PyJWT), for claims chatgw-token cannot mint."""
    now = int(time.time())
    claims = {"role": role, "sub": "x1", "skills": list(skills), "cap": 1, "iat": now - 60,
              "exp": now + exp_in, "jti": "canned-test-1"}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def canned_hash(r, queue):
    return {k.decode(): v.decode() for k, v in r.hgetall(f"cg:{{t:default}}:canned:{queue}").items()}


def start(procs, tmp_path, text=CONFIG):
    path = write(str(tmp_path / "canned.ini"), text)
    router = procs.router(dict(FAST, CHATGW_CONFIG=path))
    gw = procs.gateway({"CHATGW_CONFIG": path})
    return path, router, gw


def test_agents_read_the_canned_replies_of_their_queues(redis_srv, procs, tmp_path):
    r = redis_srv.r
    _, _, gw = start(procs, tmp_path)
    wait_until(lambda: len(canned_hash(r, "billing")) == 1, 10, "canned replies published")
    assert canned_hash(r, "billing") == {
        "refund_steps": '1. Open "My orders".\n2. Choose "Request a refund".'}
    assert not r.exists("cg:{t:default}:canned:general")  # a queue without replies has no hash

    token = procs.agent_token("ann", skills=("faq", "billing"))
    status, ctype, body = get(gw, "queue=faq", token)
    assert status == 200, body
    assert ctype.startswith("application/json")
    assert json.loads(body) == {"queue": "faq", "replies": FAQ_REPLIES}
    status, _, body = get(gw, "queue=billing", token)
    assert status == 200
    assert json.loads(body)["replies"] == [
        {"name": "refund_steps", "text": '1. Open "My orders".\n2. Choose "Request a refund".'}]

    # a skill of the agent without canned replies: an empty list
    status, _, body = get(gw, "queue=general", procs.agent_token("gus", skills=("general",)))
    assert (status, json.loads(body)) == (200, {"queue": "general", "replies": []})

    # no token, a bad one, an expired one, a customer's, a non-bearer scheme: 401
    assert get(gw, "queue=faq")[0] == 401
    assert get(gw, "queue=faq", "not.a.token")[0] == 401
    assert get(gw, "queue=faq", token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"))[0] \
        == 401
    assert get(gw, "queue=faq", auth=f"Basic {token}")[0] == 401
    assert get(gw, "queue=faq", signed("agent", ("faq",), 3600))[0] == 200  # the helper is right
    assert get(gw, "queue=faq", signed("agent", ("faq",), -10))[0] == 401  # expired
    assert get(gw, "queue=faq", signed("customer", ("faq",), 3600))[0] == 401
    # a queue outside the token's skills: 403
    only_faq = procs.agent_token("bob", skills=("faq",))
    assert get(gw, "queue=billing", only_faq)[0] == 403
    # a missing or invalid queue name: 400
    assert get(gw, "", token)[0] == 400
    assert get(gw, "queue=", token)[0] == 400
    assert get(gw, "queue=Bad%20Name", token)[0] == 400
    assert get(gw, "queue=" + "q" * 65, token)[0] == 400
    # POST is refused
    req = urllib.request.Request(f"{gw.base}/canned?queue=faq", data=b"x", method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("POST accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405

    # Redis down: 503
    redis_srv.kill()
    wait_until(lambda: get(gw, "queue=faq", token)[0] == 503, 10, "503 while redis is down")


def test_reload_replaces_the_canned_replies(redis_srv, procs, tmp_path):
    r = redis_srv.r
    path, router, gw = start(procs, tmp_path)
    wait_until(lambda: len(canned_hash(r, "faq")) == 3, 10, "canned replies published")
    token = procs.agent_token("ann", skills=("faq", "billing"))

    changed = CONFIG.replace("delivery takes {days} days.", "delivery takes 2-4 days.") \
                    .replace("[canned billing]\nrefund_steps = 1. Open \"My orders\".\n"
                             "  2. Choose \"Request a refund\".\n", "")
    assert changed != CONFIG and "[canned billing]" not in changed
    write(path, changed)
    router.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: canned_hash(r, "faq").get("shipping")
               == "Orders ship within 24 hours; delivery takes 2-4 days.", 10, "reload published")
    wait_until(lambda: not r.exists("cg:{t:default}:canned:billing"), 10, "billing's replies removed")
    status, _, body = get(gw, "queue=faq", token)
    assert status == 200
    assert json.loads(body)["replies"][2] == {
        "name": "shipping", "text": "Orders ship within 24 hours; delivery takes 2-4 days."}
    assert json.loads(get(gw, "queue=billing", token)[2])["replies"] == []

    # an invalid file keeps the running set
    start_at = len(router.lines)
    write(path, changed + "[canned nowhere]\nx = y\n")
    router.proc.send_signal(signal.SIGHUP)
    router.wait_log("keeping the running configuration", 10, start_at)
    assert len(canned_hash(r, "faq")) == 3

    # a queue dropped from the file loses its replies
    write(path, CONFIG.replace("[queue billing]\nname_en = Billing\n", "")
            .replace("[canned billing]\nrefund_steps = 1. Open \"My orders\".\n"
                     "  2. Choose \"Request a refund\".\n", ""))
    r.hset("cg:{t:default}:canned:billing", "stale", "x")
    router.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not r.exists("cg:{t:default}:canned:billing"), 10, "dropped queue's replies removed")


def test_invalid_canned_section_stops_the_router(redis_srv, procs, tmp_path):
    cases = [
        ("[queue faq]\nmode = push\n\n[canned nowhere]\nhello = Hi!\n",
         ":5: key 'hello': unknown queue 'nowhere'"),
        ("[queue faq]\nmode = push\n[canned faq]\nBad-Name = Hi\n",
         ":4: key 'Bad-Name': not a reply name: 1-64 of a-z 0-9 _ -"),
        ("[queue faq]\nmode = push\n[canned faq]\nlong = " + "x" * 190 + "\n" + ("  " + "y" * 190 + "\n") * 10,
         ":14: key 'long': the text is too long (max 2000 bytes)"),
        (b"[queue faq]\nmode = push\n[canned faq]\nbad = caf\xe9\n",
         ":4: key 'bad': the text is not UTF-8"),
        ("[queue faq]\nmode = push\n[canned faq]\nempty =\n", ":4: key 'empty': empty text"),
    ]
    for i, (text, want) in enumerate(cases):
        path = str(tmp_path / f"bad{i}.ini")
        with open(path, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
        p = procs.router({"CHATGW_CONFIG": path}, wait_ready=False)
        assert p.proc.wait(10) != 0
        p.reader.join(5)
        assert f"{path}{want}" in p.text(), p.text()


def test_shipped_config_publishes_canned_replies(redis_srv, procs):
    r = redis_srv.r
    procs.router(dict(FAST, CHATGW_CONFIG=os.path.join(ROOT, "config", "chatgw.ini")))
    wait_until(lambda: len(canned_hash(r, "tech_support")) == 2, 10, "shipped replies published")
    assert canned_hash(r, "faq")["shipping_time_en"] == (
        "Orders ship within 24 hours of payment and usually arrive in 2-4 days (5-7 days for "
        "remote areas).")
    assert canned_hash(r, "after_sales")["refund_steps_zh"] == (
        "退款步骤：\n1. 在“我的订单”中点击“申请退款”；\n2. 选择原因并上传照片；\n"
        "3. 审核通过后 1-3 个工作日原路退回。")
    assert set(canned_hash(r, "faq")) == {"shipping_time_zh", "shipping_time_en",
                                          "return_policy_zh", "return_policy_en"}
