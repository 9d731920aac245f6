"""The gateway serves https:// and wss:// itself when tls_cert and tls_key are set (issue 12,
item 8): a self-signed certificate made with openssl in the test's directory, the real gateway
and router, python websockets over wss and urllib over https trusting that certificate; plain
ws:// and http:// are refused on that port; bad TLS settings stop the start with a clear error;
SIGTERM still ends in a clean shutdown (uv_loop_close == 0, also under ASan)."""
import asyncio
import json
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
import websockets

from chat import Client, new_cmid
from conftest import ROOT
from test_browser import SCRIPT, playwright_installed, run_scenario  # noqa: F401 (fixture)


def make_cert(d, name):
    """A self-signed EC certificate for 127.0.0.1 / localhost: (cert path, key path)."""
    cert, key = os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def cert(tmp_path):
    return make_cert(str(tmp_path), "gw")


def https_get(url, ctx):
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_wss_and_https_with_own_certificate(procs, cert):
    crt, key = cert
    gw = procs.gateway({"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": key})
    procs.router()
    gw.wait_log(f"listening on https://127.0.0.1:{gw.port}")
    token = procs.agent_token("tia", "Tia", cap=2)
    ctx = ssl.create_default_context(cafile=crt)
    https, wss = f"https://127.0.0.1:{gw.port}", f"wss://127.0.0.1:{gw.port}"

    status, body = https_get(https + "/healthz", ctx)
    assert status == 200 and json.loads(body)["redis"] == "up"
    status, body = https_get(https + "/", ctx)
    assert status == 200 and "<html" in body.lower()

    async def scenario():
        a = await Client.connect(wss, "/ws/agent", ssl=ctx)
        await a.hello(token=token)
        c = await Client.connect(wss, "/ws/customer", ssl=ctx)
        await c.hello()
        ack = await c.say("hello over wss")
        assert ack["type"] == "ack", ack
        await a.expect_type("assigned", conv=ack["conv"])
        await a.send({"type": "text", "conv": ack["conv"], "text": "answer over wss",
                      "cmid": new_cmid()})
        await c.expect(lambda f: f.get("text") == "answer over wss")
        # the same port does not speak plain WebSocket any more
        with pytest.raises((websockets.exceptions.InvalidHandshake, websockets.exceptions.
                            ConnectionClosed, OSError, asyncio.TimeoutError)):
            await websockets.connect(f"ws://127.0.0.1:{gw.port}/ws/customer",
                                     subprotocols=["chatgw.json.v1"], open_timeout=5)
        await c.close()
        await a.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    # nor plain HTTP, and a client that does not trust the certificate is refused
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/healthz", timeout=5).read()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(https + "/healthz", timeout=5,
                               context=ssl.create_default_context())

    assert gw.stop() == 0
    assert "clean shutdown" in gw.text()


def start_fails(procs, env, *expect):
    """Start a gateway with env; it must exit non-zero logging every string in expect."""
    gw = procs.gateway(env, wait_ready=False)
    assert gw.proc.wait(15) != 0
    gw.reader.join(5)
    for e in expect:
        assert e in gw.text(), gw.text()
    assert not any(l and "listening" in l for l in gw.lines)


def test_bad_tls_settings_stop_the_start(procs, cert, tmp_path):
    crt, key = cert
    other_crt, other_key = make_cert(str(tmp_path), "other")
    start_fails(procs, {"CHATGW_TLS_CERT": crt},
                "tls_cert and tls_key go together: tls_key is not set")
    start_fails(procs, {"CHATGW_TLS_KEY": key},
                "tls_cert and tls_key go together: tls_cert is not set")
    missing = str(tmp_path / "nope.key")
    start_fails(procs, {"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": missing},
                f"tls_key '{missing}': No such file or directory")
    start_fails(procs, {"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": other_key},
                f"{other_key[-40:]}' does not match tls_cert '", f"{crt[-40:]}'")
    start_fails(procs, {"CHATGW_TLS_CERT": key, "CHATGW_TLS_KEY": key},
                f"{key[-40:]}' is not a PEM certificate")
    start_fails(procs, {"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": crt},
                "is not an unencrypted PEM private key")
    enc = str(tmp_path / "enc.key")
    subprocess.run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:x", "-out", enc],
                   check=True, capture_output=True)
    start_fails(procs, {"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": enc},
                "is not an unencrypted PEM private key")
    if os.geteuid() != 0:  # root reads any file
        unreadable = str(tmp_path / "unreadable.key")
        with open(unreadable, "w") as f:
            f.write(open(key).read())
        os.chmod(unreadable, 0)
        start_fails(procs, {"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": unreadable},
                    "Permission denied")


def test_gateway_offers_http11_only(procs, cert):
    """ALPN: lws 4.1.6 would take h2, whose static files come out cut short (0 or 4107 bytes of
    chatcore.js) and whose WebSockets carry no Host header for the same-origin check."""
    crt, key = cert
    gw = procs.gateway({"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": key})
    ctx = ssl.create_default_context(cafile=crt)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
    for name in ("index.html", "chatcore.js", "widget.js", "agent.js"):
        with open(os.path.join(ROOT, "gateway", "www", name), encoding="utf-8") as f:
            want = f.read()
        path = "/" if name == "index.html" else "/" + name
        status, body = https_get(f"https://127.0.0.1:{gw.port}{path}",
                                 ssl.create_default_context(cafile=crt))
        assert status == 200 and body == want, f"{name} served over TLS differs"


def test_widget_and_console_in_chromium_over_https(playwright_installed, procs, cert,
                                                   monkeypatch):
    """The whole two-tab browser scenario (tests/browser/two_tabs.mjs) with the pages served over
    https and their WebSockets over wss (the pages pick wss:// on an https:// page)."""
    crt, key = cert
    gw = procs.gateway({"CHATGW_TLS_CERT": crt, "CHATGW_TLS_KEY": key})
    router = procs.router()
    token = procs.agent_token("alice", "Alice", skills=("general",), cap=2)
    gw.base = f"https://127.0.0.1:{gw.port}"
    monkeypatch.setenv("BROWSER_IGNORE_HTTPS_ERRORS", "1")
    run_scenario(SCRIPT, [token], gw, router)
