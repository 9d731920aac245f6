"""rediss:// (issue 12, item 8): the gateway, the router and the tools reach a redis-server that
listens on a TLS port only, through chatgw's in-process TLS relay (common/rtls.c): the server's
certificate is verified against CHATGW_REDIS_TLS_CA and its name; an ACL user and password
travel inside TLS; a client certificate is sent when Redis wants one; a wrong CA is one clear
error (and /healthz 503), not a silent hang; a Redis restart under TLS and routing resumes.

Certificates: a test CA, a server certificate for 127.0.0.1 / localhost and a client certificate
signed by it, and a second CA that signed nothing of this server's, all made with the openssl
CLI in the test's directory."""
import asyncio
import os
import subprocess

import pytest
import redis

from chat import agent, customer
from conftest import BUILD, ROOT, Proc, Procs, RedisServer, wait_until
from test_redis_auth import healthz

USER, PASSWORD = "chatgw", "tls-Acl:pass@word-7"
ACL_ARGS = ["--user", "default", "off",
            "--user", USER, "on", f">{PASSWORD}", "~cg:*", "&cg:*", "+@all", "-@dangerous",
            "+config|get",
            "--user", "admin", "on", ">admin-pw", "~*", "&*", "+@all"]


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d, name):
    crt, key = os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "2", "-subj", f"/CN={name}", "-keyout", key, "-out", crt,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def make_leaf(d, name, ca, ca_key, san=None):
    """A certificate signed by ca (with subjectAltName san when given): (cert, key)."""
    crt, key, csr = (os.path.join(d, f"{name}.{x}") for x in ("crt", "key", "csr"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-out", crt, "-extfile", ext)
    return crt, key


class TlsFiles:
    """What RedisServer(tls=...) takes: CA, server pair, client pair, tls-auth-clients."""

    def __init__(self, d, auth_clients=False, client=False):
        self.ca, ca_key = make_ca(d, "test-ca")
        self.server_cert, self.server_key = make_leaf(d, "redis-server", self.ca, ca_key,
                                                      "IP:127.0.0.1,DNS:localhost")
        self.client_cert = self.client_key = None
        self.client_pair = make_leaf(d, "chatgw-client", self.ca, ca_key)
        if client:
            self.client_cert, self.client_key = self.client_pair
        self.other_ca, _ = make_ca(d, "other-ca")
        self.auth_clients = auth_clients


def start_tls_redis(tmp_path, **tls):
    srv = RedisServer(str(tmp_path), tls=TlsFiles(str(tmp_path), **tls), args=ACL_ARGS)
    t = srv.tls
    srv.url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{srv.port}"
    srv.r = redis.Redis(host="127.0.0.1", port=srv.port, username="admin", password="admin-pw",
                        ssl=True, ssl_ca_certs=t.ca, ssl_certfile=t.client_pair[0],
                        ssl_keyfile=t.client_pair[1])
    try:
        srv.start()
    except BaseException:
        srv.kill()
        raise
    return srv


def procs_on_tls_redis(tmp_path, **tls):
    """Procs on a TLS-only redis-server (start_tls_redis); everything torn down after the test."""
    srv = start_tls_redis(tmp_path, **tls)
    p = Procs(srv, str(tmp_path))
    yield p
    reports = p.teardown()
    srv.kill()
    if reports:
        pytest.fail("\n\n".join(reports))


@pytest.fixture
def tls_procs(tmp_path):
    yield from procs_on_tls_redis(tmp_path)


@pytest.fixture
def mtls_procs(tmp_path):
    yield from procs_on_tls_redis(tmp_path, auth_clients=True)


def tool(name, args, env):
    return subprocess.run([os.path.join(BUILD, name), *args], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, **env))


async def one_exchange(gw, token, text):
    a = await agent(gw, token)
    c = await customer(gw)
    ack = await c.say(f"customer: {text}")
    assert ack["type"] == "ack", ack
    await a.expect_type("assigned", conv=ack["conv"])
    await a.say(f"agent: {text}", conv=ack["conv"])
    await c.expect(lambda f: f.get("text") == f"agent: {text}")
    await c.close()
    await a.close()
    return ack["conv"]


def test_gateway_router_and_tools_over_rediss_with_an_acl_user(tls_procs):
    srv = tls_procs.redis
    # the server speaks TLS only: a plain client gets nowhere on its one port
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=3).ping()
    tls_procs.run_dir = os.path.join(tls_procs.tmpdir, "run")
    os.mkdir(tls_procs.run_dir)
    gw = tls_procs.gateway({"TMPDIR": tls_procs.run_dir})
    router = tls_procs.router({"TMPDIR": tls_procs.run_dir})
    gw.wait_log(f"ready (127.0.0.1:{srv.port} (TLS))")
    token = tls_procs.agent_token("tess", "Tess", cap=2)
    conv = asyncio.run(asyncio.wait_for(one_exchange(gw, token, "over rediss"), 30))
    assert srv.r.exists(f"cg:{{t:default}}:conv:{conv}")
    assert healthz(gw) == 200
    # every connection of chatgw is the ACL user's, over TLS
    clients = [c for c in srv.r.client_list() if c["user"] != "admin"]
    assert clients and {c["user"] for c in clients} == {USER}, clients

    env = dict(srv.env, CHATGW_REDIS_URL=srv.url)
    out = tool("chatgw-token", ["--revoke", "jti-over-tls"], env)
    assert out.returncode == 0, out.stderr
    assert srv.r.exists("cg:{t:default}:revoked:jti-over-tls")
    out = tool("chatgw-export", [], env)
    assert out.returncode == 0, out.stderr
    assert f'"conv":"{conv}"' in out.stdout.replace(" ", "")
    srv.r.set("cg:old-layout-key", "1")
    out = subprocess.run([os.path.join(ROOT, "tools", "chatgw-migrate-keys"), "--dry-run"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, **env))
    assert out.returncode == 0, out.stderr
    assert "cg:old-layout-key -> cg:{t:default}:old-layout-key" in out.stdout, out.stdout
    # --check-config asks the same Redis for its agents (tess connected above)
    out = subprocess.run([os.path.join(BUILD, "chatgw-router"), "--check-config", "--config",
                          os.path.join(ROOT, "config", "chatgw.ini")],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, **env))
    assert "agents: 1 (the agents known to Redis)" in out.stdout, out.stdout + out.stderr
    # a wrong password is Redis' own refusal, told through the relay
    bad = srv.url.replace(PASSWORD, "not-the-password-9")
    out = tool("chatgw-token", ["--revoke", "x1"], dict(env, CHATGW_REDIS_URL=bad))
    assert out.returncode == 1 and "Redis refused AUTH: WRONGPASS" in out.stderr, out.stderr
    for p in (gw, router):
        assert PASSWORD not in p.text(), f"{p.name} logged the password"
    # the relay's private sockets: 0700 directories under $TMPDIR, gone after a clean stop
    dirs = os.listdir(tls_procs.run_dir)
    assert dirs and all(d.startswith("chatgw-rtls-") for d in dirs), dirs
    assert all(os.stat(os.path.join(tls_procs.run_dir, d)).st_mode & 0o777 == 0o700 for d in dirs)
    assert gw.stop() == 0 and router.stop() == 0
    assert os.listdir(tls_procs.run_dir) == []


def test_wrong_ca_is_one_clear_error_and_healthz_503(tls_procs):
    srv = tls_procs.redis
    wrong = {"CHATGW_REDIS_TLS_CA": srv.tls.other_ca}
    gw = tls_procs.gateway(wrong, wait_ready=False)
    router = tls_procs.router(wrong, wait_ready=False)
    for p in (gw, router):
        p.wait_log("certificate verify failed")
        p.wait_log("check redis_tls_ca")
    wait_until(lambda: healthz(gw) == 503, 10, "healthz 503 with a wrong CA")
    # it keeps retrying (back-off) without repeating the error at error level
    first = gw.wait_log("reconnecting in")
    again = gw.wait_log("(again)", start=first)
    assert "certificate verify failed: self-signed certificate in certificate chain" in \
        gw.lines[again]
    errors = [l for l in gw.lines if l and " ERROR " in l and "certificate verify failed" in l]
    assert len(errors) == 2, errors  # one per connection (redis, redis-sub), not one per retry
    assert not any(gw.ready_line in l for l in gw.lines if l)
    assert PASSWORD not in gw.text() and PASSWORD not in router.text()

    out = tool("chatgw-token", ["--revoke", "x2"],
               dict(wrong, CHATGW_REDIS_URL=srv.url))
    assert out.returncode == 1, out.stderr
    assert "certificate verify failed" in out.stderr and "redis_tls_ca" in out.stderr, out.stderr
    assert PASSWORD not in out.stderr

    # the certificate is good but names another server
    out = tool("chatgw-token", ["--revoke", "x3"],
               dict(srv.env, CHATGW_REDIS_URL=srv.url,
                    CHATGW_REDIS_TLS_SERVER_NAME="redis.example.org"))
    assert out.returncode == 1 and "does not name this server" in out.stderr, out.stderr
    # the same, given the right CA and the name the certificate carries: fine
    out = tool("chatgw-token", ["--revoke", "x4"],
               dict(srv.env, CHATGW_REDIS_URL=srv.url, CHATGW_REDIS_TLS_SERVER_NAME="localhost"))
    assert out.returncode == 0, out.stderr


def test_client_certificate_when_redis_wants_one(mtls_procs):
    srv = mtls_procs.redis
    gw_without = mtls_procs.gateway(wait_ready=False)  # the CA only, no client pair
    first = gw_without.wait_log("check redis_tls_cert and redis_tls_key")
    assert "certificate required" in gw_without.lines[first], gw_without.lines[first]
    # retried with back-off, told once per connection (redis, redis-sub), not once per retry
    gw_without.wait_log("(again)", start=gw_without.wait_log("reconnecting in 1000 ms", start=first))
    errors = [l for l in gw_without.lines if l and " ERROR " in l and "certificate" in l]
    assert len(errors) == 2, "\n".join(errors)
    cert, key = srv.tls.client_pair
    with_cert = {"CHATGW_REDIS_TLS_CERT": cert, "CHATGW_REDIS_TLS_KEY": key}
    gw = mtls_procs.gateway(with_cert)
    mtls_procs.router(with_cert)
    token = mtls_procs.agent_token("mia", "Mia", cap=1)
    asyncio.run(asyncio.wait_for(one_exchange(gw, token, "with a client certificate"), 30))
    assert healthz(gw) == 200 and healthz(gw_without) == 503
    # an unusable key file is refused at start, naming the key and the file
    bad = mtls_procs.gateway({"CHATGW_REDIS_TLS_CERT": cert, "CHATGW_REDIS_TLS_KEY": "/nonexistent"},
                             wait_ready=False)
    assert bad.proc.wait(15) != 0
    bad.reader.join(5)
    assert "redis_tls_key /nonexistent: cannot load it" in bad.text(), bad.text()


def test_redis_restart_under_tls_and_routing_resumes(tls_procs):
    srv = tls_procs.redis
    gw = tls_procs.gateway()
    router = tls_procs.router()
    token = tls_procs.agent_token("ron", "Ron", cap=3)
    asyncio.run(asyncio.wait_for(one_exchange(gw, token, "before the restart"), 30))
    mark_gw, mark_router = len(gw.lines), len(router.lines)
    srv.kill()
    gw.wait_log("connection lost", start=mark_gw)
    gw.wait_log(f"cannot connect to 127.0.0.1:{srv.port}: connection refused", start=mark_gw)
    wait_until(lambda: healthz(gw) == 503, 10, "healthz 503 while Redis is down")
    srv.start()
    gw.wait_log("redis: ready", start=mark_gw, timeout=15)
    router.wait_log("ready (127.0.0.1", start=mark_router, timeout=15)
    wait_until(lambda: healthz(gw) == 200, 15, "healthz 200 after the restart")
    asyncio.run(asyncio.wait_for(one_exchange(gw, token, "after the restart"), 30))


def test_the_routers_tls_keys_come_from_its_configuration_file(tls_procs, tmp_path):
    """redis_tls_ca in the router's file (no CHATGW_REDIS_TLS_* in its environment): the router
    verifies Redis with it; a wrong CA there is the named certificate error."""
    srv = tls_procs.redis
    shipped = open(os.path.join(ROOT, "config", "chatgw.ini"), encoding="utf-8").read()

    def router_with(ca, name):
        path = tmp_path / f"{name}.ini"
        path.write_text(shipped.replace("[common]\n", f"[common]\nredis_tls_ca = {ca}\n", 1),
                        encoding="utf-8")
        env = tls_procs._env({"CHATGW_ROUTER_ID": name, "CHATGW_CONFIG": str(path)})
        for k in ("CHATGW_REDIS_TLS_CA", "CHATGW_REDIS_TLS_CERT", "CHATGW_REDIS_TLS_KEY"):
            env.pop(k, None)
        p = Proc(name, [os.path.join(BUILD, "chatgw-router")], env)
        tls_procs.all.append(p)
        return p

    good = router_with(srv.tls.ca, "router-file")
    good.wait_log("router router-file ready", 15)
    bad = router_with(srv.tls.other_ca, "router-badca")
    bad.wait_log("certificate verify failed", 15)
