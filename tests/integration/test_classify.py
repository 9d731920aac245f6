"""Router configuration and classification against a real router and a real redis-server: queues,
classification and priority rules from a config file (CHATGW_CONFIG), pull queues, start-up
validation and reload on SIGHUP.

Run: BUILD=build/h-cfg /usr/bin/python3 -m pytest -q tests/integration/test_classify.py
"""
import os
import signal

import msgpack

from conftest import wait_until
from desk import conv_hash, s, store
from test_router import (FAST, ROOT, agent_hash, close, events, new_id, now_ms, pick, presence,
                         wait_assigned, wait_drained)

SHIPPED = os.path.join(ROOT, "config", "chatgw.ini")
_ids = iter(range(1, 1000))


def send(r, customer, text, tier="", channel="web"):
    """A customer's first text with an identity tier, stored like the gateway does. -> conv."""
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": new_id(), "channel": channel,
         "dir": "in", "role": "customer", "sender_id": customer, "ts": now_ms(), "text": text}
    if tier:
        m["identity"] = {"customer_id": customer, "tier": tier}
    res = store(r, "", m["cmid"], "customer", customer, msgpack.packb(m),
                  new_id(), channel, now_ms(), "log", text[:160])
    return s(res[0])


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def router_with(procs, config):
    rid = f"cls{next(_ids)}"
    p = procs.router(dict(FAST, CHATGW_CONFIG=config, CHATGW_ROUTER_ID=rid), wait_ready=False)
    p.wait_log(f"router {rid} ready", 15)
    return p


def queued(r, conv):
    return wait_until(lambda: conv_hash(r, conv) if conv_hash(r, conv).get("state") == "queued"
                 and len(events(r, conv, "text")) >= 3 else None, 10, f"{conv} queued")


def qcfg(r, queue):
    return {s(k): s(v) for k, v in r.hgetall(f"cg:{{t:default}}:queuecfg:{queue}").items()}


def test_shipped_config_classifies_and_publishes_queues(redis_srv, procs):
    r = redis_srv.r
    router_with(procs, SHIPPED)
    wait_until(lambda: r.scard("cg:{t:default}:queues") == 7, 10, "queue configuration published")
    assert qcfg(r, "complaints") == {"mode": "push", "prio": "7", "name_zh": "投诉与建议",
                                     "name_en": "Complaints and suggestions",
                                     "overflow": "supervisors", "overflow_after_s": "300"}
    assert qcfg(r, "supervisors")["mode"] == "pull"

    c1 = send(r, "zh1", "我要投诉，商品破损")
    h = queued(r, c1)
    assert (h["queue"], h["category"]) == ("complaints", "complaint")
    assert int(h["prio"]) > 5  # complaint with damaged goods: above a normal conversation
    c2 = send(r, "en1", "Hi, I would like a REFUND for order 42")
    h = queued(r, c2)
    assert (h["queue"], h["category"], h["prio"]) == ("after_sales", "after_sales", "6")
    c3 = send(r, "en2", "good morning")
    h = queued(r, c3)
    assert (h["queue"], h["category"], h["prio"]) == ("general", "default", "5")
    # the position auto-reply names the queue the conversation went to
    assert events(r, c1, "text")[-1]["queue"] == "complaints"
    wait_drained(r)


def test_vip_is_served_before_an_earlier_normal_conversation(redis_srv, procs):
    r = redis_srv.r
    router_with(procs, SHIPPED)
    normal = send(r, "n1", "where is my order?")
    assert queued(r, normal)["prio"] == "4"  # faq
    vip = send(r, "v1", "where is my order?", tier="VIP")
    h = queued(r, vip)
    assert (h["queue"], h["prio"]) == ("faq", "8")
    assert [s(c) for c in r.zrange("cg:{t:default}:queue:faq", 0, -1)] == [vip, normal]
    presence(r, "amy", "connect", cap=1, skills=("faq",))
    assert wait_assigned(r, vip)["agent_id"] == "amy"
    wait_drained(r)
    assert conv_hash(r, normal)["state"] == "queued"
    close(r, "amy", vip)
    assert wait_assigned(r, normal)["agent_id"] == "amy"
    wait_drained(r)


PULL_CONFIG = """
[router]
default_queue = general
[queue general]
mode = push
[queue desk]
name_en = Desk
mode = pull
priority = 5
[rule desk]
queue = desk
keywords = invoice
"""


def test_pull_queue_never_auto_assigns_but_can_be_picked(redis_srv, procs, tmp_path):
    r = redis_srv.r
    router_with(procs, write(str(tmp_path / "pull.ini"), PULL_CONFIG))
    wait_until(lambda: qcfg(r, "desk").get("mode") == "pull", 10, "desk published")
    presence(r, "pat", "connect", cap=3, skills=("desk", "general"))
    wait_until(lambda: r.zscore("cg:{t:default}:avail:general", "pat") is not None, 5, "pat available")
    conv = send(r, "c1", "I need an invoice")
    h = queued(r, conv)  # not assigned on enqueue although pat has capacity
    assert (h["queue"], h["category"]) == ("desk", "desk")
    # not on presence / status changes either
    presence(r, "pat", "connect", cap=3, skills=("desk", "general"), sock="gw2:7")
    presence(r, "pat", "away")
    presence(r, "pat", "online")
    # nor when a slot is freed by a close
    other = send(r, "c2", "hello")
    assert wait_assigned(r, other)["agent_id"] == "pat"
    close(r, "pat", other)
    wait_until(lambda: events(r, other, "closed"), 10, "closed")
    wait_drained(r)
    assert conv_hash(r, conv)["state"] == "queued"
    assert agent_hash(r, "pat")["load"] == "0"
    assert not events(r, conv, "assigned")
    # the agent picks it
    pick(r, "pat", conv)
    ev = wait_assigned(r, conv)
    assert (ev["agent_id"], ev["queue"]) == ("pat", "desk")
    wait_drained(r)


def test_invalid_config_stops_the_router(redis_srv, procs, tmp_path):
    cases = [
        ("[queue faq]\nmode = push\nmood = calm\n", ":3: key 'mood': unknown key in [queue faq]"),
        ("[queue faq]\n\nmode = sometimes\n", ":3: key 'mode': 'sometimes' is not push or pull"),
        ("[rule r]\nkeywords = x\nqueue = nowhere\n", ":3: key 'queue': unknown queue 'nowhere'"),
        ("[queue faq]\npriority = 12\n", ":2: key 'priority': 12 is out of range [0, 9]"),
        ("[rule r]\nqueue = general\npriority = 10\n", ":3: key 'priority': 10 is out of range"),
    ]
    for i, (text, want) in enumerate(cases):
        path = write(str(tmp_path / f"bad{i}.ini"), text)
        p = procs.router({"CHATGW_CONFIG": path}, wait_ready=False)
        assert p.proc.wait(10) != 0
        p.reader.join(5)
        assert f"{path}{want}" in p.text(), p.text()


V1 = """
[router]
default_queue = general
[queue qa]
mode = pull
[queue qb]
mode = push
[rule alpha]
queue = qa
keywords = alpha
"""

V2 = """
[router]
default_queue = general
[queue qa]
mode = push
[queue qb]
name_zh = 乙
mode = push
priority = 2
[rule alpha]
queue = qa
keywords = alpha
[rule beta]
queue = qb
keywords = beta, 测试
"""


def test_sighup_reload(redis_srv, procs, tmp_path):
    r = redis_srv.r
    path = write(str(tmp_path / "router.ini"), V1)
    router = router_with(procs, path)
    wait_until(lambda: qcfg(r, "qa").get("mode") == "pull", 10, "v1 published")
    presence(r, "quinn", "connect", cap=2, skills=("qa",))
    wait_until(lambda: agent_hash(r, "quinn").get("status") == "online", 5, "quinn online")
    a1 = send(r, "c1", "alpha one")
    assert queued(r, a1)["queue"] == "qa"  # pull: waits although quinn is free
    b1 = send(r, "c2", "beta one")
    assert queued(r, b1)["queue"] == "general"

    # an invalid file: logged, the running configuration stays
    bad = V2 + "[queue qc]\nmode = maybe\n"
    write(path, bad)
    mark = len(router.lines)
    router.proc.send_signal(signal.SIGHUP)
    router.wait_log("keeping the running configuration", 10, start=mark)
    assert f"{path}:{bad.count(chr(10))}: key 'mode': 'maybe' is not push or pull" in router.text()
    b2 = send(r, "c3", "beta two")
    assert queued(r, b2)["queue"] == "general"
    assert qcfg(r, "qa")["mode"] == "pull"
    assert conv_hash(r, a1)["state"] == "queued"

    # a valid changed file: new rule, qa becomes push (its waiting conversation is served now)
    write(path, V2)
    mark = len(router.lines)
    router.proc.send_signal(signal.SIGHUP)
    router.wait_log("queue configuration published", 10, start=router.wait_log("reload:", 10,
                                                                                start=mark))
    assert qcfg(r, "qb") == {"mode": "push", "prio": "2", "name_zh": "乙", "name_en": "",
                             "overflow": "", "overflow_after_s": "0"}
    assert wait_assigned(r, a1)["agent_id"] == "quinn"
    b3 = send(r, "c4", "beta three")
    h = queued(r, b3)
    assert (h["queue"], h["category"], h["prio"]) == ("qb", "beta", "2")
    b4 = send(r, "c5", "这是测试")
    assert queued(r, b4)["queue"] == "qb"
    wait_drained(r)
    assert router.proc.poll() is None
    assert router.stop(signal.SIGTERM) == 0
