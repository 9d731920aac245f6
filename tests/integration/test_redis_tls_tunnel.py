"""Redis over TLS the documented way (docs/deployment.md, "Redis over TLS"): chatgw's hiredis
0.14 has no TLS, so a redis-server with only a TLS port is reached through stunnel in client mode
(verifying the server's certificate and name) on a local plain port; the gateway and the router
use redis://user:password@127.0.0.1:<tunnel> and a message flows end to end."""
import asyncio
import os
import shutil
import subprocess

import pytest
import redis

from chat import agent, customer
from conftest import Procs, RedisServer, free_port, wait_until
from test_gateway_tls import make_cert

pytestmark = pytest.mark.skipif(not shutil.which("stunnel4"),
                                reason="stunnel4 is not installed (make deps installs it)")


class TlsRedisBehindStunnel(RedisServer):
    """redis-server listening on a TLS port only, and stunnel's plain end in front of it."""

    def __init__(self, workdir):
        super().__init__(workdir)
        self.tls_port, self.tunnel_port = self.port, free_port()
        self.url = f"redis://chatgw:tunnel-pw@127.0.0.1:{self.tunnel_port}"
        self.r = redis.Redis(host="127.0.0.1", port=self.tunnel_port, username="chatgw",
                             password="tunnel-pw")
        self.stunnel = None

    def start(self):
        crt, key = make_cert(self.dir, "redis")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.tls_port), "--bind", "127.0.0.1",
             "--tls-cert-file", crt, "--tls-key-file", key, "--tls-ca-cert-file", crt,
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--user", "default", "off",
             "--user", "chatgw", "on", ">tunnel-pw", "~cg:*", "&cg:*", "+@all", "-@dangerous", "+config|get",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conf = os.path.join(self.dir, "stunnel.conf")
        with open(conf, "w") as f:  # the stunnel configuration docs/deployment.md shows
            f.write(f"foreground = yes\npid =\n[redis]\nclient = yes\n"
                    f"accept = 127.0.0.1:{self.tunnel_port}\nconnect = 127.0.0.1:{self.tls_port}\n"
                    f"verifyChain = yes\nCAfile = {crt}\ncheckHost = localhost\n")
        self.stunnel = subprocess.Popen(["stunnel4", conf], stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(self.dir, "stunnel.log"), "w"))

        def up():
            try:
                return self.r.ping()
            except redis.exceptions.ConnectionError:
                for p in (self.proc, self.stunnel):
                    if p.poll() is not None:
                        raise AssertionError(f"{p.args[0]} exited at start")
                return False
        wait_until(up, 10, "redis-server to answer PING through stunnel")

    def kill(self):
        super().kill()
        if self.stunnel and self.stunnel.poll() is None:
            self.stunnel.terminate()
            self.stunnel.wait(10)


@pytest.fixture
def tunnel_procs(tmp_path):
    srv = TlsRedisBehindStunnel(str(tmp_path))
    try:
        srv.start()
    except BaseException:
        srv.kill()  # nothing of a failed start may outlive the test
        raise
    p = Procs(srv, str(tmp_path))
    yield p
    reports = p.teardown()
    srv.kill()
    if reports:
        pytest.fail("\n\n".join(reports))


def test_gateway_and_router_through_a_tls_tunnel(tunnel_procs):
    srv = tunnel_procs.redis
    # the Redis port itself does not speak plain RESP: only TLS reaches it
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="127.0.0.1", port=srv.tls_port, socket_timeout=3).ping()
    gw = tunnel_procs.gateway()
    tunnel_procs.router()
    token = tunnel_procs.agent_token("tom", "Tom", cap=1)

    async def scenario():
        a = await agent(gw, token)
        c = await customer(gw)
        ack = await c.say("hello through stunnel")
        assert ack["type"] == "ack", ack
        await a.expect_type("assigned", conv=ack["conv"])
        await a.say("answer through stunnel", conv=ack["conv"])
        await c.expect(lambda f: f.get("text") == "answer through stunnel")
        await c.close()
        await a.close()
        return ack["conv"]

    conv = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert srv.r.exists(f"cg:{{t:default}}:conv:{conv}")
