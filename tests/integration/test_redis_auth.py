"""Redis with an ACL user and password (issue 12, item 8): the gateway, the router and
chatgw-export reach a redis-server whose default user is off through
redis://user:password@host:port; a wrong or missing password is a clear error in the log (and
/healthz 503) that never prints the password. The same over TLS (rediss://): test_redis_tls.py."""
import asyncio
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest
import redis

from chat import agent, customer
from conftest import BUILD, Procs, RedisServer, wait_until

USER, PASSWORD = "chatgw", "Ai7-acl:pass@word"  # ':' and '@' inside on purpose
# what docs/deployment.md recommends: every key and channel of chatgw starts with cg:, and
# nothing needs an admin command (FLUSHALL, CONFIG SET, KEYS, DEBUG, SHUTDOWN, ...); CONFIG GET
# lets the gateway check the persistence settings at start
ACL = "~cg:* &cg:* +@all -@dangerous +config|get"


class AclRedis(RedisServer):
    """redis-server from a config file: the default user is off, one ACL user may do anything."""

    def __init__(self, workdir):
        super().__init__(workdir)
        # the test's own client: an admin user (CLIENT LIST is beyond what chatgw may do)
        self.r = redis.Redis(host="127.0.0.1", port=self.port, username="admin",
                             password="admin-pw")
        self.url = self.url_with(USER, PASSWORD)

    def url_with(self, user, password):
        return f"redis://{user}:{password}@127.0.0.1:{self.port}"

    def start(self):
        conf = os.path.join(self.dir, "redis-acl.conf")
        with open(conf, "w") as f:
            f.write(f'port {self.port}\nbind 127.0.0.1\nsave ""\nappendonly no\n'
                    f'dir {self.dir}\nlogfile {os.path.join(self.dir, "redis.log")}\n'
                    f"user default off\nuser {USER} on >{PASSWORD} {ACL}\n"
                    "user admin on >admin-pw ~* &* +@all\n")
        self.proc = subprocess.Popen(["redis-server", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            try:
                return self.r.ping()
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise AssertionError("redis-server exited at start")
                return False
        wait_until(up, 10, "redis-server to answer PING")


@pytest.fixture
def acl_redis(tmp_path):
    srv = AclRedis(str(tmp_path))
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def acl_procs(acl_redis, tmp_path):
    p = Procs(acl_redis, str(tmp_path))
    yield p
    reports = p.teardown()
    if reports:
        pytest.fail("\n\n".join(reports))


def healthz(gw):
    try:
        with urllib.request.urlopen(gw.base + "/healthz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def export(url):
    return subprocess.run([os.path.join(BUILD, "chatgw-export"), "--redis", url],
                          capture_output=True, text=True, timeout=30)


def test_acl_user_gateway_router_export(acl_procs, acl_redis):
    # anonymous access is really refused by this server
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=acl_redis.port).ping()
    gw = acl_procs.gateway()
    router = acl_procs.router()
    token = acl_procs.agent_token("ana", "Ana", cap=2)
    # this server keeps no AOF: the gateway's start-up check says what that loses
    gw.wait_log("redis: appendonly is no: a restart of Redis loses every acknowledged message")

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw)
        ack = await c.say("hello over an ACL user")
        assert ack["type"] == "ack", ack
        await a.expect_type("assigned", conv=ack["conv"])
        await a.say("answer", conv=ack["conv"])
        await c.expect(lambda f: f.get("text") == "answer")
        await c.close()
        await a.close()
        return ack["conv"]

    conv = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert healthz(gw) == 200
    clients = [c for c in acl_redis.r.client_list() if c["user"] != "admin"]
    assert clients and {c["user"] for c in clients} == {USER}, clients
    assert not any("NOPERM" in (l or "") for p in (gw, router) for l in p.lines)

    out = export(acl_redis.url)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["conv"] for line in out.stdout.splitlines()] == [conv]
    out = subprocess.run([os.path.join(BUILD, "chatgw-export")], capture_output=True, text=True,
                         timeout=30, env=dict(os.environ, CHATGW_REDIS_URL=acl_redis.url))
    assert out.returncode == 0 and json.loads(out.stdout)["conv"] == conv, out.stderr
    for p in (gw, router):
        assert PASSWORD not in p.text(), f"{p.name} logged the password"


def test_wrong_or_missing_password_is_a_clear_error(acl_procs, acl_redis):
    bad = "not-the-pass-41"
    gw = acl_procs.gateway({"CHATGW_REDIS_URL": acl_redis.url_with(USER, bad)}, wait_ready=False)
    gw.wait_log(f"AUTH to 127.0.0.1:{acl_redis.port} failed: WRONGPASS")
    gw.wait_log("check the user and password in redis_url")
    wait_until(lambda: healthz(gw) == 503, 10, "healthz 503")
    router = acl_procs.router({"CHATGW_REDIS_URL": acl_redis.url_with(USER, bad)},
                              wait_ready=False)
    router.wait_log("failed: WRONGPASS")
    # no credentials at all: the server's NOAUTH is reported at connect, not on a later command
    gw2 = acl_procs.gateway({"CHATGW_REDIS_URL": f"redis://127.0.0.1:{acl_redis.port}"},
                            wait_ready=False)
    gw2.wait_log("PING to 127.0.0.1:")
    gw2.wait_log("NOAUTH")
    wait_until(lambda: healthz(gw2) == 503, 10, "healthz 503 without credentials")
    assert not any(gw.ready_line in l for l in gw.lines if l)

    out = export(acl_redis.url_with(USER, bad))
    assert out.returncode == 1 and "Redis refused AUTH: WRONGPASS" in out.stderr, out.stderr
    out = export(f"redis://127.0.0.1:{acl_redis.port}")
    assert out.returncode == 1 and "NOAUTH" in out.stderr, out.stderr
    for p in (gw, router):
        assert bad not in p.text(), f"{p.name} logged the password"
    assert bad not in out.stderr
