"""Nobody stranded (issue 11, item 1): the shipped configuration as the real router parses it,
`chatgw-router --check-config`, and customers of every shipped queue served by the agents
`make run` creates; a customer nobody online can serve gets an honest reply and is counted.

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_stranded.py"""
import os
import re
import subprocess
import urllib.request

from chat import agent, customer
from conftest import BUILD, METRICS_TOKEN, ROOT, wait_until
from desk import conv_hash, log_of, run, s

SHIPPED = os.path.join(ROOT, "config", "chatgw.ini")
ROUTER = os.path.join(BUILD, "chatgw-router")


def make_run_skills():
    """The skill lists of the agents tools/run.sh creates, read from the script itself."""
    text = open(os.path.join(ROOT, "tools", "run.sh"), encoding="utf-8").read()
    agent_skills = re.search(r"^agent_skills=(\S+)$", text, re.M).group(1)
    sup = re.search(r"^supervisor_skills=(\S+)$", text, re.M).group(1)
    return [agent_skills, sup.replace("$agent_skills", agent_skills)]


def check_config(*args, config=SHIPPED, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CHATGW_")}
    e.update(env or {})
    return subprocess.run([ROUTER, "--check-config", "--config", config, *args],
                          capture_output=True, text=True, env=e, timeout=30)


# ---- the shipped configuration, parsed -----------------------------------------------------------

def test_shipped_complaint_deadlines_are_parsed_from_every_line():
    """complaint_sla spans two lines in config/chatgw.ini; a continuation line used to replace the
    value, leaving three classes with 0 s deadlines (breached a second after the ticket)."""
    p = check_config("--skills", "general")
    assert p.returncode in (0, 1), p.stderr
    got = dict(re.findall(r"^complaint (\w+): respond (\d+ s, resolve \d+) s$", p.stdout, re.M))
    assert got == {"ordinary": "86400 s, resolve 172800", "serious": "43200 s, resolve 86400",
                   "system_failure": "1800 s, resolve 7200", "media": "3600 s, resolve 86400"}


def test_check_config_with_make_run_agents_reaches_every_queue():
    skills = make_run_skills()
    p = check_config(*sum((["--skills", x] for x in skills), []))
    assert p.returncode == 0, p.stdout + p.stderr
    queues = re.findall(r"^queue (\S+) \((push|pull)\): served by", p.stdout, re.M)
    assert {q for q, _ in queues} == {"general", "presales", "faq", "tech_support",
                                      "after_sales", "complaints", "supervisors"}
    assert "UNREACHABLE" not in p.stdout


def test_check_config_reports_unreachable_queues(tmp_path):
    p = check_config("--skills", "general")
    assert p.returncode == 1
    bad = set(re.findall(r"^queue (\S+) \(\w+\): UNREACHABLE", p.stdout, re.M))
    assert bad == {"presales", "faq", "tech_support", "after_sales", "complaints", "supervisors"}
    assert "6 queues no agent can reach" in p.stdout
    # a queue with no agent of its own that overflows into a served one is reachable
    cfg = tmp_path / "o.ini"
    cfg.write_text("[queue general]\nmode = push\n[queue vip]\nmode = push\noverflow = general\n"
                   "overflow_after_s = 60\n")
    p = check_config("--skills", "general", config=str(cfg))
    assert p.returncode == 0, p.stdout
    assert "queue vip (push): no agent of its own; reached through overflow into general" in p.stdout
    # an invalid file: exit 2 and the problem named
    cfg.write_text("[queue general]\nmode = sideways\n")
    p = check_config(config=str(cfg))
    assert p.returncode == 2 and "'sideways' is not push or pull" in p.stderr


def test_check_config_takes_the_agents_redis_knows(redis_srv):
    r = redis_srv.r
    r.hset("cg:{t:default}:agent:ann", mapping={"skills": "general,faq", "status": "offline"})
    r.hset("cg:{t:default}:agent:sup", mapping={"skills": "supervisors"})
    r.sadd("cg:{t:default}:agent:ann:socks", "gw:1")  # not an agent hash: skipped
    p = check_config(env={"CHATGW_REDIS_URL": redis_srv.url})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "agents: 2 (the agents known to Redis)" in p.stdout
    bad = set(re.findall(r"^queue (\S+) \(\w+\): UNREACHABLE", p.stdout, re.M))
    assert bad == {"presales", "after_sales"}  # tech_support, complaints overflow to supervisors
    assert "queue complaints (push): no agent of its own; reached through overflow" in p.stdout


# ---- the shipped desk, live ---------------------------------------------------------------------

def shipped_desk(procs):
    env = {"CHATGW_CONFIG": SHIPPED, "CHATGW_RATE_MSGS": 1000, "CHATGW_RATE_BURST": 1000}
    gw = procs.gateway(env)
    procs.router(env)
    return gw


def test_everyday_words_reach_make_run_agents(procs, redis_srv):
    """Everyday messages the shipped rules send to other queues than general (returns, damaged
    goods, prices, shipping, log-in trouble, complaints) are all assigned to the agents
    `make run` creates: none waits in a queue nobody serves."""
    r = redis_srv.r
    gw = shipped_desk(procs)
    skills = make_run_skills()
    tokens = [procs.agent_token("demo-agent", skills=skills[0].split(","), cap=10),
              procs.agent_token("demo-supervisor", skills=skills[1].split(","), cap=10)]
    words = {"我要退货": "after_sales", "the item arrived damaged": "after_sales",
             "5G 手机多少钱": "presales", "我的快递到哪了": "faq", "无法登录": "tech_support",
             "我要投诉": "complaints", "你好": "general"}

    async def scenario():
        agents = [await agent(gw, t) for t in tokens]
        convs = {}
        for text, queue in words.items():
            c = await customer(gw)
            convs[(await c.say(text))["conv"]] = queue
            await c.close()
        for a in agents:
            await a.close()
        return convs

    convs = run(scenario())
    for conv, queue in convs.items():
        wait_until(lambda: conv_hash(r, conv).get("state") == "assigned", 10, f"{queue} assigned")
        assert conv_hash(r, conv)["queue"] == queue
    assert r.hgetall("cg:{t:default}:kpi:queue:after_sales").get(b"no_agent") is None


def test_nobody_online_gets_an_honest_reply_and_a_metric(procs, redis_srv):
    """Nobody who serves the queue is online: the customer is told so in its language (no
    queue position that nobody will reach), chatgw_queue_no_agent_total counts it, no position
    updates follow; an agent of the queue who comes online gets the conversation."""
    r = redis_srv.r
    gw = shipped_desk(procs)
    token = procs.agent_token("ann", skills=("after_sales",), cap=2)

    async def scenario():
        zh = await customer(gw)
        conv = (await zh.say("我要退货"))["conv"]
        reply = await zh.expect(lambda f: f.get("type") == "text" and f.get("role") == "bot"
                                and f.get("queue") == "after_sales", what="the waiting reply")
        assert "没有能处理此问题的客服在线" in reply["text"] and "position" not in reply
        assert reply["code"] == "no_agent"  # which text it is: the widget asks for an e-mail
        await zh.say("我的邮箱 wang@example.cn")  # the contact, as asked: no second reply
        en = await customer(gw, identity={"locale": "en"})
        conv_en = (await en.say("my parcel arrived damaged"))["conv"]
        reply = await en.expect(lambda f: f.get("type") == "text" and f.get("role") == "bot"
                                and f.get("queue") == "after_sales", what="the waiting reply")
        assert reply["text"].startswith("Sorry, nobody who can help")
        a = await agent(gw, token)
        await a.expect_type("assigned", conv=conv)
        await a.expect_type("assigned", conv=conv_en)
        for c in (zh, en, a):
            await c.close()
        return conv

    conv = run(scenario())
    assert s(r.hget("cg:{t:default}:kpi:queue:after_sales", "no_agent")) == "2"
    assert not [m for m in log_of(r, conv) if m.get("position")]
    told = [m for m in log_of(r, conv) if m.get("role") == "bot" and m.get("queue")]
    assert len(told) == 1, told  # said once, not again for the contact
    metrics = wait_until(lambda: _scrape(gw), 5, "metrics")
    assert 'chatgw_queue_no_agent_total{queue="after_sales"} 2' in metrics


def _scrape(gw):
    req = urllib.request.Request(gw.base + "/metrics",
                                 headers={"Authorization": "Bearer " + METRICS_TOKEN})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()
