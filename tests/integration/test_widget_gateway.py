"""The gateway's side of the one-tag widget: who may frame the widget's frame page
(/widget-frame.html: frame-ancestors 'self' + allowed_origins; every other page none), a bad
allowed_origins entry stops the start, and attachment URLs other than http(s) are refused from
customers and agents (javascript: links never reach a transcript)."""
import pytest

from chat import agent, customer, new_cmid
from desk import run
from test_http_guard import request

SHOP = "http://localhost:4321"


def frame_ancestors(h):
    """The frame-ancestors directive of a response's policies ('' when none names it)."""
    for policy in h.get("content-security-policy", "").split(","):
        for d in policy.split(";"):
            if d.strip().startswith("frame-ancestors"):
                return d.strip()
    return ""


def test_only_the_frame_page_may_be_framed_and_only_by_allowed_origins(procs):
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": f"{SHOP}, https://shop.example"})
    status, h, body = request(gw, "/widget-frame.html")
    assert status == 200 and "widget-app.js" in body, (status, body[:200])
    assert frame_ancestors(h) == f"frame-ancestors 'self' {SHOP} https://shop.example", h
    assert "default-src 'self'" in h["content-security-policy"], h
    for path in ("/", "/agent/", "/widget.js", "/healthz", "/nope"):
        _, h, _ = request(gw, path)
        assert frame_ancestors(h) == "frame-ancestors 'none'", (path, h)
        assert h["x-frame-options"] == "DENY", (path, h)


def test_without_allowed_origins_only_the_gateway_frames_the_widget(procs):
    gw = procs.gateway()
    _, h, _ = request(gw, "/widget-frame.html")
    assert frame_ancestors(h) == "frame-ancestors 'self'", h


@pytest.mark.parametrize("bad", ["http://x;script-src *", "https://shop.example 'unsafe-inline'",
                                 "http://a\"b"])
def test_an_allowed_origin_that_is_no_origin_stops_the_start(procs, bad):
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": bad}, wait_ready=False)
    assert gw.proc.wait(15) != 0
    gw.wait_log("allowed_origins: ", 5)
    assert "is not an origin like https://shop.example" in gw.text()


BAD_URLS = ["javascript:alert(document.cookie)", "JavaScript:alert(1)", " javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "//evil.example/x",
            "wechat-media:123"]


def test_attachment_urls_must_be_http_or_https(procs):
    gw = procs.gateway()
    procs.router({"CHATGW_BLOCK_MS": 200})
    token = procs.agent_token("alice", "Alice", skills=("general",), cap=2)

    async def scenario():
        c = await customer(gw)
        for i, url in enumerate(BAD_URLS):
            cmid = new_cmid()
            att = [{"url": "https://ok.example/a.png", "mime": "image/png"},
                   {"url": url, "mime": "text/html", "name": "x"}]
            await c.send({"type": "attachment", "cmid": cmid, "attachments": att})
            e = await c.expect(lambda f, m=cmid: f.get("cmid") == m, what=f"answer to {url!r}")
            assert e["type"] == "error" and e["code"] == "bad_value", (url, e)
            assert "attachments[1].url" in e["text"] and "http" in e["text"], e
        ok = await c.say("see the photo", attachments=[{"url": "HTTPS://ok.example/a.png",
                                                         "mime": "image/png"}])
        assert ok["type"] == "ack" and ok["seq"] > 0, ok
        conv = ok["conv"]
        a = await agent(gw, token)
        await a.expect(lambda f: f.get("type") == "assigned" and f.get("conv") == conv,
                       what="the assignment")
        cmid = new_cmid("a")
        await a.send({"type": "text", "cmid": cmid, "conv": conv, "text": "click",
                      "attachments": [{"url": "javascript:alert(1)", "mime": "text/html"}]})
        e = await a.expect(lambda f: f.get("cmid") == cmid, what="the agent's refusal")
        assert e["type"] == "error" and e["code"] == "bad_value" and "attachments[0].url" in e["text"], e
        # nothing of the refused frames was stored: the customer's transcript has no javascript:
        assert not any("javascript" in str(f).lower() for f in c.frames if f.get("seq")), c.frames

    run(scenario())
