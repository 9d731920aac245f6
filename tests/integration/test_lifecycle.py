"""Loading and health (docs/architecture.md, "Loading and health"): routing resumes after every
Redis restart, also when Redis answers LOADING for a while; a newer library is never replaced by
an older process, a missing or older one is loaded, a deleted one comes back; /healthz and
/metrics follow Redis (paused, loading) and the routers' health keys; clients get a retryable
`unavailable` with a wait hint during a pause, logged once; a killed router's pending entries are
claimed by another, dead consumers are removed; a killed gateway's agents go offline.

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_lifecycle.py
"""
import asyncio
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request

import pytest
from concurrent.futures import ThreadPoolExecutor

import redis as redislib

from chat import agent, customer
from conftest import BUILD, METRICS_TOKEN, ROOT, wait_until
from desk import log_of, run, s
from test_router import customer_send, start_router, wait_log_len

FAST = {"CHATGW_BLOCK_MS": 200}  # claim_idle_ms, stall_ms, ...: the defaults under test


def http_get(url):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + METRICS_TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def healthz(gw):
    code, body = http_get(gw.base + "/healthz")
    return code, json.loads(body)


def lua(name, version=None, without_version=False):
    """The library <name> as the binaries carry it (build/gen/redis/<name>.lua), with its VERSION
    changed or its version function cut."""
    with open(os.path.join(BUILD, "gen", "redis", f"{name}.lua")) as f:
        src = f.read()
    if version is not None:
        src = re.sub(r"local VERSION = \d+ ", f"local VERSION = {version} ", src, count=1)
    if without_version:
        src = re.sub(r"local VERSION = .*\nredis.register_function\{function_name = 'chatgw_version'"
                     r".*\n.*callback = function\(\) return VERSION end\}\n", "", src, count=1)
        assert "'chatgw_version'" not in src
    return src


def lib_code(r, lib):
    (entry,) = r.function_list(library=lib, withcode=True)
    d = {s(entry[i]): entry[i + 1] for i in range(0, len(entry), 2)}
    return s(d["library_code"])


def ours(name):
    """The VERSION of library <name> as the binaries carry it."""
    return int(re.search(r"local VERSION = (\d+) ", lua(name)).group(1))


def version(r, lib):
    return r.fcall_ro(f"{lib}_version", 1, "cg:{t:default}")


def fill(r, n=20000):
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"filler:{i}", "x" * 16)
    pipe.execute()


def restart_loading(redis_srv, key_delay_us):
    """Kill redis-server and start it again on its AOF so that loading each key takes
    key_delay_us and clients are answered (LOADING) while it loads; return once it answered
    LOADING at least once and then PONG."""
    redis_srv.kill()
    redis_srv.proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_srv.port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--dir", redis_srv.dir,
         "--logfile", os.path.join(redis_srv.dir, "redis.log"),
         "--key-load-delay", str(key_delay_us), "--loading-process-events-interval-bytes", "1024"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = redislib.Redis(host="127.0.0.1", port=redis_srv.port, socket_timeout=5)
    seen = []

    def answered():
        try:
            return probe.ping()
        except redislib.exceptions.BusyLoadingError:
            seen.append("LOADING")
        except redislib.exceptions.ConnectionError:
            assert redis_srv.proc.poll() is None, "redis-server exited"
        return False
    wait_until(answered, 30, "redis-server to load its AOF", interval=0.005)
    probe.close()
    assert seen, "redis-server never answered LOADING: the AOF loaded too fast"


# ---- restarts ------------------------------------------------------------------------------------

def test_routing_resumes_after_every_redis_restart_while_loading(redis_srv, procs):
    """Each restart makes Redis answer LOADING to the router's start-up for a while; the router
    routes a new customer every time."""
    r = redis_srv.r
    fill(r)
    router = start_router(procs, FAST)
    for i in range(5):
        restart_loading(redis_srv, 50)
        # a kill -9 may take the last second of writes with it (appendfsync everysec), the
        # library load included: the router loads it again; wait for that, as a gateway would
        wait_until(lambda: router.text().count("ready again") >= i + 1, 15, "the router ready")
        conv, _, _ = customer_send(r, f"cust{i}", f"after restart {i}")
        wait_log_len(r, conv, 3, 15)  # the customer's text, the greeting, the queue notice
    assert router.text().count("ready again") >= 5
    assert "Redis not ready: LOADING" in router.text()


def test_desk_through_a_slow_redis_restart(redis_srv, procs):
    """/healthz says loading (503) while Redis loads its AOF for seconds, 200 after; the agent
    connected through the gateway is online again and gets the next customer."""
    r = redis_srv.r
    fill(r)
    gw = procs.gateway()
    start_router(procs, FAST)
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        wait_until(lambda: s(r.hget("cg:{t:default}:agent:alice", "status")) == "online", 5, "online")
        with ThreadPoolExecutor(1) as ex:
            done = ex.submit(restart_loading, redis_srv, 300)  # loads for several seconds
            wait_until(lambda: healthz(gw)[1]["redis"] == "loading", 15, "/healthz: loading")
            code, body = healthz(gw)
            assert code == 503 and body["reason"] == "redis loading", body
            done.result()
        wait_until(lambda: healthz(gw)[0] == 200, 10, "/healthz 200 once loaded")
        wait_until(lambda: s(r.hget("cg:{t:default}:agent:alice", "status")) == "online"
                   and r.smembers("cg:{t:default}:agent:alice:socks"), 10, "alice online again")
        c = await customer(gw)
        conv = (await c.say("hello after the restart"))["conv"]
        await a.expect_type("assigned", conv=conv, timeout=15)
        await c.close()
        await a.close()

    run(scenario())
    assert gw.text().count("redis: unavailable (") == 1
    gw.wait_log("redis: available again")


# ---- versions ------------------------------------------------------------------------------------

def test_newer_library_is_kept(redis_srv, procs):
    r = redis_srv.r
    r.function_load(lua("chatgw", version=99), replace=True)
    gw = procs.gateway()
    router = start_router(procs, FAST)
    mine = ours("chatgw")
    router.wait_log(f"library chatgw version 99 is newer than ours ({mine}): keeping it")
    gw.wait_log(f"library chatgw version 99 is newer than ours ({mine}): keeping it")
    wait_until(lambda: r.get(f"cg:{{t:default}}:health:router:{router.router_id}") == b"ok", 5, "health ok")
    assert version(r, "chatgw") == 99
    assert "local VERSION = 99 " in lib_code(r, "chatgw")
    assert "loading ours" not in router.text() + gw.text()
    conv, _, _ = customer_send(r, "cust", "hi")
    wait_log_len(r, conv, 3)


def test_missing_or_older_library_is_loaded(redis_srv, procs):
    r = redis_srv.r
    r.function_load(lua("chatgw", without_version=True), replace=True)  # before versions existed
    router = start_router(procs, FAST)
    mine = ours("chatgw")
    router.wait_log(f"library chatgw: Redis holds version 0, loading ours ({mine})")
    assert version(r, "chatgw") == mine
    assert f"local VERSION = {mine} " in lib_code(r, "chatgw")
    r.function_load(lua("chatgw", version=mine - 1), replace=True)
    router.wait_log(f"library chatgw: Redis holds version {mine - 1}, loading ours ({mine})")
    wait_until(lambda: version(r, "chatgw") == mine, 5, "ours loaded over the older one")


# The two libraries of the releases before the one-library core, as far as their names go: the
# version functions they answered and a function name the core library holds too.
LEGACY = {
    "chatgw_conv": (3, "cg_append"),
    "chatgw_route": (6, "cg_enqueue"),
}


def legacy_lib(name):
    v, fn = LEGACY[name]
    return (f"#!lua name={name}\n"
            f"redis.register_function{{function_name = '{name}_version', flags = {{'no-writes'}},\n"
            f"    callback = function() return {v} end}}\n"
            f"redis.register_function{{function_name = '{fn}',\n"
            f"    callback = function() return redis.error_reply('ERR legacy') end}}\n")


@pytest.mark.parametrize("who", ["router", "gateway"])
def test_legacy_libraries_are_replaced(redis_srv, procs, who):
    """A Redis holding the two libraries of the releases before (chatgw_conv, chatgw_route): the
    first new process replaces both with chatgw in one transaction, and the old processes of a
    rolling upgrade, asking their version functions, are told a newer library is there."""
    r = redis_srv.r
    for name in LEGACY:
        r.function_load(legacy_lib(name))
    p = start_router(procs, FAST) if who == "router" else procs.gateway()
    p.wait_log(f"library chatgw: Redis holds version 0, loading ours ({ours('chatgw')})")
    wait_until(lambda: [s(e[1]) for e in r.function_list()] == ["chatgw"], 10,
               "chatgw alone")
    for name, (old, _) in LEGACY.items():
        assert r.fcall_ro(f"{name}_version", 1, "cg:{t:default}") > old
    if who == "gateway":
        start_router(procs, FAST)
    conv, _, _ = customer_send(r, "cust", "hi")
    wait_log_len(r, conv, 3)


def test_deleted_library_comes_back(redis_srv, procs):
    r = redis_srv.r
    router = start_router(procs, FAST)
    r.function_delete("chatgw")
    wait_until(lambda: any(s(e[1]) == "chatgw" for e in r.function_list()), 10,
               "chatgw loaded again")
    r.function_flush()
    wait_until(lambda: len(r.function_list()) == 1, 10, "the library loaded again")
    conv, _, _ = customer_send(r, "cust", "still there?")
    wait_log_len(r, conv, 3)
    assert router.text().count("Redis functions loaded") >= 2


def test_gateway_alone_restores_its_library(redis_srv, procs):
    r = redis_srv.r
    gw = procs.gateway()
    r.function_flush()
    wait_until(lambda: any(s(e[1]) == "chatgw" for e in r.function_list()), 10,
               "chatgw loaded again by the gateway")

    async def scenario():
        c = await customer(gw)
        assert (await c.say("stored?"))["type"] == "ack"
        await c.close()

    run(scenario())


# ---- health ---------------------------------------------------------------------------------------

def test_healthz_and_clients_during_a_redis_pause(redis_srv, procs):
    gw = procs.gateway()
    start_router(procs, FAST)
    wait_until(lambda: healthz(gw)[0] == 200 and healthz(gw)[1].get("routers"), 10, "healthy")

    async def scenario():
        c = await customer(gw)
        await c.say("before the pause")
        os.kill(redis_srv.proc.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: healthz(gw)[0] == 503, 4, "/healthz 503 while Redis is paused")
            code, body = healthz(gw)
            assert body["status"] == "unavailable" and body["redis"] == "not answering", body
            assert body["reason"] == "redis not answering"
            for i in range(3):
                e = await c.say(f"during the pause {i}")
                assert (e["type"], e["code"], e["retry"], e["wait"]) == ("error", "unavailable",
                                                                         True, 2), e
        finally:
            os.kill(redis_srv.proc.pid, signal.SIGCONT)
        wait_until(lambda: healthz(gw)[0] == 200, 10, "/healthz 200 after the pause")
        ack = await c.say("after the pause")
        assert ack["type"] == "ack", ack
        await c.close()

    run(scenario())
    gw.wait_log("redis: available again")
    assert gw.text().count("redis: unavailable (not answering)") == 1
    assert gw.text().count("redis: available again") == 1


def test_router_health_key_healthz_and_metrics(redis_srv, procs):
    r = redis_srv.r
    gw = procs.gateway()
    router = start_router(procs, dict(FAST, CHATGW_STALL_MS=500))
    key = f"cg:{{t:default}}:health:router:{router.router_id}"
    wait_until(lambda: r.get(key) == b"ok", 5, "health key ok")
    assert 0 < r.pttl(key) <= 3000
    assert r.zscore("cg:{t:default}:routers", router.router_id) is not None
    wait_until(lambda: healthz(gw)[1].get("routers") == {router.router_id: "ok"}, 5, "listed")
    metrics = http_get(gw.base + "/metrics")[1]
    assert f'chatgw_router_ok{{router="{router.router_id}"}} 1' in metrics
    assert f'chatgw_router_state{{router="{router.router_id}",state="ok"}} 1' in metrics

    # cg:in is not a stream any more: reading fails, the router says it is stalled
    r.delete("cg:{t:default}:in")
    r.set("cg:{t:default}:in", "not a stream")
    wait_until(lambda: s(r.get(key) or b"").startswith("stalled: "), 10, "health key stalled")
    assert "WRONGTYPE" in s(r.get(key))
    wait_until(lambda: healthz(gw)[0] == 503, 5, "/healthz 503 for a stalled router")
    body = healthz(gw)[1]
    assert body["reason"].startswith(f"router {router.router_id}: stalled: "), body
    assert body["redis"] == "up"
    metrics = http_get(gw.base + "/metrics")[1]
    assert f'chatgw_router_ok{{router="{router.router_id}"}} 0' in metrics
    assert f'chatgw_router_state{{router="{router.router_id}",state="stalled"}} 1' in metrics

    r.delete("cg:{t:default}:in")  # the group is created again, reading resumes
    wait_until(lambda: r.get(key) == b"ok", 10, "health key ok again")
    wait_until(lambda: healthz(gw)[0] == 200, 5, "/healthz 200 again")
    conv, _, _ = customer_send(r, "cust", "hi")
    wait_log_len(r, conv, 3)

    # a killed router's key expires: listed as gone, /healthz stays 200 (no router is not an error)
    router.kill9()
    wait_until(lambda: healthz(gw)[1]["routers"].get(router.router_id) == "gone", 10, "gone")
    assert healthz(gw)[0] == 200
    assert f'chatgw_router_state{{router="{router.router_id}",state="gone"}} 1' in \
        http_get(gw.base + "/metrics")[1]


def test_router_that_cannot_create_its_group_is_stalled(redis_srv, procs):
    r = redis_srv.r
    r.set("cg:{t:default}:in", "not a stream")
    router = procs.router(dict(FAST, CHATGW_ROUTER_ID="stuck"), wait_ready=False)
    router.wait_log("XGROUP CREATE failed: WRONGTYPE")
    wait_until(lambda: s(r.get("cg:{t:default}:health:router:stuck") or b"").startswith("stalled: WRONGTYPE"),
               10, "stalled")
    r.delete("cg:{t:default}:in")
    router.wait_log("router stuck ready", 10)
    wait_until(lambda: r.get("cg:{t:default}:health:router:stuck") == b"ok", 5, "ok")


# ---- consumers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [None, "shipped"])
def test_killed_router_pending_entries_are_claimed(redis_srv, procs, config):
    """A router that read an entry and died: another router takes it within seconds, with the
    default claim_idle_ms and with the shipped configuration's (config/chatgw.ini)."""
    r = redis_srv.r
    first = start_router(procs, {"CHATGW_BLOCK_MS": 60000})
    wait_until(lambda: any(c["cmd"] == "xreadgroup" and "b" in c["flags"]
                           for c in r.client_list()), 5, "first blocked in XREADGROUP")
    os.kill(first.pid, signal.SIGSTOP)  # the entry goes to it, it does nothing with it
    try:
        conv, _, _ = customer_send(r, "cust", "are you there?")
        wait_until(lambda: r.xpending("cg:{t:default}:in", "routers")["pending"] == 1, 5, "entry read by first")
        (c,) = r.xpending("cg:{t:default}:in", "routers")["consumers"]
        assert s(c["name"]) == first.router_id
    finally:
        first.kill9()
    env = dict(FAST)
    if config:
        env["CHATGW_CONFIG"] = os.path.join(os.path.dirname(__file__), "..", "..", "config",
                                            "chatgw.ini")
    second = start_router(procs, env)
    wait_log_len(r, conv, 3, 8)
    second.wait_log("claimed 1 idle entries")
    wait_until(lambda: r.xpending("cg:{t:default}:in", "routers")["pending"] == 0, 5, "acked")


def test_dead_consumers_are_removed(redis_srv, procs):
    r = redis_srv.r
    r.xgroup_create("cg:{t:default}:in", "routers", id="0", mkstream=True)
    r.xgroup_createconsumer("cg:{t:default}:in", "routers", "ghost")
    r.xadd("cg:{t:default}:in", {"c": "", "s": "0", "m": b"\x80"})
    r.xreadgroup("routers", "holder", {"cg:{t:default}:in": ">"}, count=1)  # holder keeps one pending
    router = start_router(procs, dict(FAST, CHATGW_DEAD_CONSUMER_MS=300,
                                      CHATGW_CLAIM_IDLE_MS=600000))

    def names():
        return {s(c["name"]) for c in r.xinfo_consumers("cg:{t:default}:in", "routers")}
    wait_until(lambda: "ghost" not in names(), 10, "ghost removed")
    assert "holder" in names()  # looked at in the same pass: it has an entry pending
    router.wait_log("consumer ghost of cg:in removed")
    assert "consumer holder" not in router.text()


# ---- gateways ------------------------------------------------------------------------------------

def test_killed_gateway_agents_offline_quickly(redis_srv, procs):
    """Default heartbeat_ms and gateway_reap_ms: the agents of a gateway killed with kill -9 are
    offline within a few seconds (bounded wait of 8 s)."""
    r = redis_srv.r
    gw = procs.gateway()
    start_router(procs, FAST)
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        wait_until(lambda: s(r.hget("cg:{t:default}:agent:alice", "status")) == "online", 5, "online")
        gw.kill9()
        wait_until(lambda: s(r.hget("cg:{t:default}:agent:alice", "status")) == "offline"
                   and not r.smembers("cg:{t:default}:agent:alice:socks"), 8, "alice offline")
        try:
            await a.close()
        except Exception:
            pass

    run(scenario())


def test_overload_busy_with_retry_and_nothing_accepted_lost(redis_srv, procs):
    """More messages than redis_max_in_flight wait on a stalled Redis: the ones past the bound
    get busy (retry, wait hint) and the sender is not read meanwhile; once Redis answers, the
    client's re-sends are stored: every message once, each acknowledged one in the log."""
    gw = procs.gateway({"CHATGW_REDIS_MAX_IN_FLIGHT": 16, "CHATGW_RATE_MSGS": 10000,
                        "CHATGW_RATE_BURST": 10000})
    r = redis_srv.r
    n = 60

    async def scenario():
        c = await customer(gw)
        await c.say("first")  # the conversation exists
        os.kill(redis_srv.proc.pid, signal.SIGSTOP)
        try:
            for i in range(n):
                await c.send({"type": "text", "cmid": f"m{i}", "text": f"message {i}"})
            busy = await c.expect(lambda f: f.get("type") == "error" and f.get("code") == "busy",
                                  what="a busy error")
            assert busy["retry"] is True and busy["wait"] > 0, busy
            c._idx = 0  # the answers are read from every frame below
        finally:
            os.kill(redis_srv.proc.pid, signal.SIGCONT)
        acked, refused, seen = {}, set(), 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(acked) < n:  # every frame answered: ack, or busy/unavailable and sent again
            assert loop.time() < deadline, f"acked {len(acked)} of {n}"
            while seen < len(c.frames):
                f = c.frames[seen]
                seen += 1
                if f.get("type") == "ack" and f.get("cmid", "").startswith("m"):
                    acked[f["cmid"]] = f["seq"]
                elif f.get("type") == "error" and f.get("cmid", "").startswith("m"):
                    assert f["code"] in ("busy", "unavailable") and f["retry"], f
                    refused.add(f["cmid"])
                    await c.send({"type": "text", "cmid": f["cmid"],
                                  "text": f"message {f['cmid'][1:]}"})
            if len(acked) < n:
                try:
                    await c._recv_one(max(0.1, deadline - loop.time()))
                except asyncio.TimeoutError:
                    pass
        await c.close()
        return acked, refused, c.welcome["sender_id"]

    acked, refused, _ = run(scenario())
    assert refused, "nothing was refused: the bound was never reached"
    conv = s(r.hget(f"cg:{{t:default}}:cust:{_}", "conv"))
    texts = [m["text"] for m in log_of(r, conv) if m.get("role") == "customer"]
    assert sorted(texts) == sorted(["first"] + [f"message {i}" for i in range(n)])
    assert len(set(acked.values())) == n  # one seq each
