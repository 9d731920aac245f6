"""The reverse-proxy configuration of docs/deployment.md, run for real: the ```nginx block of the
doc (only its ports, upstream address and certificate swapped for the test's) in Debian's nginx,
in front of the real gateway and router. A browser-like WebSocket client (Origin of the proxied
site) speaks wss through it, a message is routed and answered; /healthz passes, /metrics is
refused from outside the allowed network, plain http is redirected to https."""
import asyncio
import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from chat import Client
from conftest import ROOT, free_port, wait_until
from test_gateway_tls import make_cert

pytestmark = pytest.mark.skipif(not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"),
                                reason="nginx is not installed (make deps installs nginx-light)")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def doc_nginx_block():
    with open(os.path.join(ROOT, "docs", "deployment.md")) as f:
        doc = f.read()
    blocks = re.findall(r"```nginx\n(.*?)```", doc, re.S)
    assert len(blocks) == 1, "docs/deployment.md has one nginx configuration"
    return blocks[0]


def swap(conf, old, new):
    assert old in conf, f"the documented nginx block no longer has {old!r}"
    return conf.replace(old, new)


@pytest.fixture
def nginx(procs, tmp_path):
    gw = procs.gateway()
    procs.router()
    crt, key = make_cert(str(tmp_path), "proxy")
    https_port, http_port = free_port(), free_port()
    conf = doc_nginx_block()
    conf = swap(conf, "server 127.0.0.1:8080;", f"server 127.0.0.1:{gw.port};")
    conf = swap(conf, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    conf = swap(conf, "listen 80;", f"listen 127.0.0.1:{http_port};")
    conf = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {crt};", conf)
    conf = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", conf)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    temp = "".join(f"{k}_temp_path {prefix}/{k};\n" for k in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    full = (f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\naccess_log off;\n{temp}{conf}\n}}\n")
    (prefix / "nginx.conf").write_text(full)
    check = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ctx = ssl.create_default_context(cafile=crt)

    def up():
        if proc.poll() is not None:
            raise AssertionError("nginx exited: " + (prefix / "error.log").read_text())
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{https_port}/healthz", timeout=2,
                                   context=ctx).read()
            return True
        except (urllib.error.URLError, OSError):
            return False
    try:
        wait_until(up, 10, "nginx to proxy /healthz")
        yield {"gw": gw, "https": https_port, "http": http_port, "ctx": ctx}
    finally:
        proc.terminate()
        proc.wait(10)


def get(url, ctx=None):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(url, timeout=5) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def test_documented_nginx_config_proxies_wss(nginx, procs):
    site = f"https://127.0.0.1:{nginx['https']}"
    wss = f"wss://127.0.0.1:{nginx['https']}"
    ctx = nginx["ctx"]
    status, _, body = get(site + "/healthz", ctx)
    assert status == 200 and json.loads(body)["redis"] == "up"
    assert get(site + "/metrics", ctx)[0] == 403
    status, headers, _ = get(f"http://127.0.0.1:{nginx['http']}/agent?x=1")
    assert status == 301 and headers["Location"] == f"https://127.0.0.1/agent?x=1"
    token = procs.agent_token("nia", "Nia", cap=1)

    async def scenario():
        # as the widget and the console served by the proxied site: same Origin as the page
        a = await Client.connect(wss, "/ws/agent", origin=site, ssl=ctx)
        await a.hello(token=token)
        c = await Client.connect(wss, "/ws/customer", origin=site, ssl=ctx)
        await c.hello()
        ack = await c.say("hello through nginx")
        assert ack["type"] == "ack", ack
        await a.expect_type("assigned", conv=ack["conv"])
        await a.say("answer through nginx", conv=ack["conv"])
        await c.expect(lambda f: f.get("text") == "answer through nginx")
        await c.close()
        await a.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
