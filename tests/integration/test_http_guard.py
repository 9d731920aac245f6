"""HTTP hardening of the gateway's listener: 404 for unknown paths, security headers on every
answer, Host validation (allowed_hosts) and the Origin check of WebSocket upgrades."""
import http.client

import pytest
from websockets.exceptions import InvalidMessage

from chat import Client
from desk import run

SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options",
                    "referrer-policy")


def request(gw, path, host=None, method="GET", headers=None):
    """(status, headers as a lower-case dict, body) of one request; host overrides Host."""
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        h = dict(headers or {})
        if host is not None:
            h["Host"] = host
        c.request(method, path, headers=h)
        r = c.getresponse()
        h = {}
        for k, v in r.getheaders():  # a repeated header (two CSPs) is one comma list
            h[k.lower()] = h[k.lower()] + ", " + v if k.lower() in h else v
        return r.status, h, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def upgrade(gw, path="/ws/customer", host=None, origin=None):
    """A WebSocket upgrade request by hand: (status, body). http.client, unlike the websockets
    client, reads the refusal (lws answers refused upgrades as HTTP/1.0)."""
    h = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "chatgw.json.v1"}
    if origin is not None:
        h["Origin"] = origin
    status, _, body = request(gw, path, host=host, headers=h)
    return status, body


def test_unknown_paths_answer_404(procs):
    gw = procs.gateway()
    for path in ("/nope", "/healthzz", "/healthz/x", "/agent/missing.js", "/metricsx",
                 "/x/../../etc/passwd"):
        status, _, body = request(gw, path)
        assert status == 404, (path, status, body)
        assert "status" not in body, body  # not the health answer
    status, _, body = request(gw, "/healthz")
    assert status == 200 and '"status":"ok"' in body


def test_security_headers_on_pages_scripts_and_json(procs):
    gw = procs.gateway()
    for path in ("/", "/agent/", "/widget.js", "/agent.css", "/healthz", "/nope"):
        status, h, _ = request(gw, path)
        for name in SECURITY_HEADERS:
            assert name in h, (path, name, h)
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
    # the pages carry no inline <style> or style="" that this policy would block
    for path in ("/", "/agent/"):
        _, _, body = request(gw, path)
        assert "<style" not in body and "style=" not in body, path


def test_malformed_host_is_refused_with_400(procs):
    gw = procs.gateway()
    for host in ("bad host", "a/b", "x" * 300, "h:99999999", "h:", "[::1"):
        status, _, body = request(gw, "/healthz", host=host)
        assert status == 400, (host, status)
        assert "Host" in body, body
    assert request(gw, "/healthz", host=f"127.0.0.1:{gw.port}")[0] == 200
    assert request(gw, "/healthz", host="[::1]:80")[0] == 200


def test_allowed_hosts(procs):
    gw = procs.gateway({"CHATGW_ALLOWED_HOSTS": "desk.example, 127.0.0.1:%d" % 1})
    status, _, body = request(gw, "/healthz", host=f"127.0.0.1:{gw.port}")
    assert status == 400 and "Host not allowed" in body, (status, body)
    assert request(gw, "/healthz", host="rebind.attacker.example")[0] == 400
    assert request(gw, "/healthz", host="DESK.example:8443")[0] == 200  # no port: any port
    assert request(gw, "/healthz", host="127.0.0.1:1")[0] == 200

    async def scenario():
        # a DNS-rebinding page: Origin and Host both name the attacker, "same origin"
        status, body = upgrade(gw, host="rebind.attacker.example",
                               origin="http://rebind.attacker.example")
        assert status == 403 and "Host not allowed" in body, (status, body)
        with pytest.raises(InvalidMessage):
            await Client.connect("ws://rebind.attacker.example", "/ws/customer",
                                 origin="http://rebind.attacker.example", host="127.0.0.1",
                                 port=gw.port)
        ok = await Client.connect("ws://desk.example", "/ws/customer", host="127.0.0.1",
                                  port=gw.port)
        await ok.hello()
        await ok.close()

    run(scenario())


def test_oversized_origin_is_refused(procs):
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": "https://shop.example"})

    async def scenario():
        for origin in ("https://" + "a" * 300 + ".example", "https://shop.example/" + "x" * 260):
            status, body = upgrade(gw, origin=origin)
            assert status == 403 and "Origin header too long" in body, (status, body)
            with pytest.raises(InvalidMessage):
                await Client.connect(gw.ws, "/ws/customer", origin=origin)
        status, body = upgrade(gw, origin="https://evil.example")
        assert status == 403 and "Origin not allowed" in body, (status, body)
        status, body = upgrade(gw, path="/ws/nowhere")
        assert status == 404 and "unknown WebSocket path" in body, (status, body)
        ok = await Client.connect(gw.ws, "/ws/customer", origin="https://shop.example")
        await ok.hello()
        await ok.close()

    run(scenario())


def read_responses(sock, n, timeout=5):
    """n HTTP/1.1 responses read from sock: [(status, headers dict, body)] (Content-Length
    framed), or fewer when the connection ends first."""
    import socket as _s
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            try:
                chunk = sock.recv(65536)
            except _s.timeout:
                return out
            if not chunk:
                return out
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in
                   (l.split(":", 1) for l in lines[1:] if ":" in l)}
        size = int(headers.get("content-length", "0"))
        while len(buf) < size:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        out.append((int(lines[0].split()[1]), headers, buf[:size]))
        buf = buf[size:]
    return out


@pytest.mark.parametrize("second", ["/healthz", "/nowhere"])
def test_pipelined_requests_get_whole_answers_in_order(procs, second):
    """Two requests in one packet on a kept-alive connection: each gets its status, headers and
    body, in order (the body of the first used to wait for a WRITEABLE callback while the
    second's headers were written: two header blocks, no bodies)."""
    import json
    import socket
    gw = procs.gateway()
    s = socket.create_connection(("127.0.0.1", gw.port))
    req = "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n"
    s.sendall((req.format("/healthz", gw.port) + req.format(second, gw.port)).encode())
    got = read_responses(s, 2)
    s.close()
    assert len(got) == 2, got
    (st1, h1, b1), (st2, h2, b2) = got
    assert st1 == 200 and json.loads(b1)["status"] == "ok", got
    if second == "/healthz":
        assert st2 == 200 and json.loads(b2)["status"] == "ok", got
    else:
        assert st2 == 404 and b2 == b"not found\n", got
