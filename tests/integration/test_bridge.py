"""Channel bridges (/ws/bridge): the desk's messages out to the platforms, rendered, acked,
delivered again after a reconnect; pushes in; the reference e-mail bridge (tools/chatgw-mail-in,
tools/chatgw-mail-out). Real redis-server, gateway and router; a bridge WebSocket client and an
agent client."""
import asyncio
import email
import email.message
import email.policy
import email.utils
import json
import os
import subprocess
import time

import msgpack
import pytest

from chat import Client, agent
from conftest import ROOT, wait_until
from desk import log_of, s, store
from test_webhooks import (MAIL_TOKEN, SECRETS, cust_conv, customer_msgs, request, wx_query,
                           wx_text)

BRIDGE_TOKEN = "bridge-token-0123456789abcdef-XYZ"
ENV = dict(SECRETS, CHATGW_BRIDGE_TOKEN=BRIDGE_TOKEN,
           CHATGW_EMAIL_FROM="Support Desk <support@desk.example>",
           CHATGW_EMAIL_DOMAIN="desk.example")
MAIL_HDR = {"Authorization": f"Bearer {MAIL_TOKEN}", "Content-Type": "message/rfc822"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


@pytest.fixture
def desk(procs):
    gw = procs.gateway(ENV)
    procs.router()
    return gw


async def bridge(gw, channel, name=None, token=BRIDGE_TOKEN):
    b = await Client.connect(gw.ws, "/ws/bridge")
    hello = {"token": token, "channel": channel}
    if name:
        hello["sender_name"] = name
    await b.hello(**hello)
    return b


def is_out(conv, role=None):
    return lambda f: (f.get("type") in ("text", "attachment", "assigned", "closed")
                      and f.get("conv") == conv and f.get("seq")
                      and (role is None or f.get("role") == role))


async def ack(b, f):
    await b.send({"type": "ack", "id": f["id"]})


def pending(r, channel):
    try:
        return r.xpending(f"cg:{{t:default}}:out:{channel}", "bridges")["pending"]
    except Exception:
        return None


def post_wechat(gw, openid, msgid, text):
    st, resp, _ = request(gw, "POST", "/channels/wechat", wx_text(openid, msgid, text),
                          query=wx_query())
    assert (st, resp) == (200, b"success")


# ---- orphans ----

def test_entries_of_a_bridge_that_never_returns_go_to_another(procs, redis_srv):
    """wx-1 takes the desk's messages and is gone for good without acking: once they have been
    idle bridge_claim_idle_ms, wx-2 (another bridge of the channel) gets them."""
    r = redis_srv.r
    gw = procs.gateway(dict(ENV, CHATGW_BRIDGE_CLAIM_IDLE_MS=300))
    procs.router()
    openid = "oOrphan00000000000000000000"

    async def scenario():
        b1 = await bridge(gw, "wechat", "wx-1")
        post_wechat(gw, openid, "7100000000000000001", "anyone there?")
        conv = cust_conv(r, f"wechat:{openid}")
        greet = await b1.expect(is_out(conv, "bot"), what="greeting on wx-1")
        await b1.close()
        assert r.xpending_range("cg:{t:default}:out:wechat", "bridges", "-", "+", 10, consumername="wx-1")
        b2 = await bridge(gw, "wechat", "wx-2")
        again = await b2.expect(lambda f: is_out(conv, "bot")(f) and f["seq"] == greet["seq"],
                                what="the greeting again, on wx-2")
        assert again["native"] == greet["native"]
        # everything out of the conversation (wx-1 held some of it) reaches wx-2
        want = {int(f[b"s"]) for _, f in r.xrange("cg:{t:default}:out:wechat") if s(f[b"c"]) == conv}
        while want - {f["seq"] for f in b2.frames if is_out(conv)(f)}:
            await b2.expect(lambda f: is_out(conv)(f), what=f"seqs {sorted(want)}")
        for f in [f for f in b2.frames if is_out(conv)(f)]:
            await ack(b2, f)

        def left_on(name):
            return {s(c["name"]): c["pending"]
                    for c in r.xinfo_consumers("cg:{t:default}:out:wechat", "bridges")}.get(name, 0)
        for _ in range(1000):  # acks are fire-and-forget: poll Redis, bounded
            if left_on("wx-1") == 0 and left_on("wx-2") == 0:
                break
            await asyncio.sleep(0.01)
        assert (left_on("wx-1"), left_on("wx-2")) == (0, 0)
        await b2.close()

    run(scenario())


# ---- WeChat ----

def test_wechat_reply_rendered_acked_and_redelivered(desk, procs, redis_srv):
    r = redis_srv.r
    openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    token = procs.agent_token("alice", "Alice", cap=2)

    async def scenario():
        b = await bridge(desk, "wechat", "wx-1")
        assert b.welcome["role"] == "bridge" and b.welcome["channel"] == "wechat"
        post_wechat(desk, openid, "6054768590064713728", "你好，订单在哪里？")
        conv = cust_conv(r, f"wechat:{openid}")
        assert r.hget(f"cg:{{t:default}}:conv:{conv}", "chat_id") == openid.encode()
        # the router's greeting and queue auto-reply reach the bridge, rendered
        greet = await b.expect(is_out(conv, "bot"), what="greeting")
        body = json.loads(greet["native"])
        assert body["touser"] == openid and body["msgtype"] == "text"
        assert body["text"]["content"] == greet["text"]
        assert greet["meta"]["platform_chat_id"] == openid
        await ack(b, greet)
        a = await agent(desk, token)
        await a.expect_type("assigned", conv=conv)
        await a.expect(lambda f: f.get("role") == "customer" and f.get("conv") == conv)
        ack1 = await a.say("您好，已经发货了 \"SF123\"", conv=conv)
        assert ack1["type"] == "ack"
        reply = await b.expect(is_out(conv, "agent"), what="agent reply")
        assert reply["seq"] == ack1["seq"] and reply["dir"] == "out"
        assert json.loads(reply["native"]) == {"touser": openid, "msgtype": "text",
                                               "text": {"content": "您好，已经发货了 \"SF123\""}}
        # ack everything but the agent's reply, then drop the connection
        got = [f for f in b.frames if is_out(conv)(f)]
        for f in got:
            if f is not reply and f is not greet:
                await ack(b, f)
        unacked = {reply["seq"]}
        await asyncio.sleep(0.2)  # acks are fire-and-forget: let them reach Redis
        wait_until(lambda: pending(r, "wechat") == 1, 5, "one pending entry")
        await b.close()
        # another reply while no bridge is connected: it waits in the stream
        ack2 = await a.say("还在吗？", conv=conv)
        b2 = await bridge(desk, "wechat", "wx-1")
        f1 = await b2.expect(is_out(conv), what="redelivered reply")
        assert f1["seq"] in unacked and f1["native"] == reply["native"]
        f2 = await b2.expect(is_out(conv), what="the reply written while away")
        assert f2["seq"] == ack2["seq"]
        seqs = [f["seq"] for f in b2.frames if is_out(conv)(f)]
        assert sorted(seqs) == sorted(unacked | {ack2["seq"]})  # acked ones not repeated
        await ack(b2, f1)
        await ack(b2, f2)
        # an unknown id is refused, the connection stays
        await b2.send({"type": "ack", "id": "nope", "cmid": "k1"})
        err = await b2.expect_type("error", cmid="k1")
        assert err["code"] == "bad_value"
        wait_until(lambda: pending(r, "wechat") == 0, 5, "no pending entry")
        await a.close()
        await b2.close()
    run(scenario())


def test_bridge_push_stored_like_a_webhook(desk, procs, redis_srv):
    r = redis_srv.r

    async def scenario():
        b = await bridge(desk, "wechat")
        assert b.welcome["sender_name"] == "default"
        push = {"type": "text", "cmid": "p-1", "sender_id": "oPush1", "sender_name": "小王",
                "meta": {"platform_msg_id": "900001"}, "text": "桥接消息"}
        await b.send(push)
        a1 = await b.expect_type("ack", cmid="p-1")
        conv = cust_conv(r, "wechat:oPush1")
        assert a1["conv"] == conv and a1["seq"] == 1
        [m] = customer_msgs(r, conv)
        assert m["cmid"] == "wx:900001" and m["channel"] == "wechat" and m["text"] == "桥接消息"
        assert m["meta"]["platform_chat_id"] == "oPush1"
        # the platform's retry (or the same MsgId from the webhook) is not stored twice
        await b.send(dict(push, cmid="p-2"))
        a2 = await b.expect_type("ack", cmid="p-2")
        assert a2["seq"] == 1 and len(customer_msgs(r, conv)) == 1
        post_wechat(desk, "oPush1", "900001", "桥接消息")
        assert len(customer_msgs(r, conv)) == 1
        # refusals: no sender, no platform id, a desk-only type
        await b.send({"type": "text", "cmid": "p-3", "meta": {"platform_msg_id": "1"},
                      "text": "x"})
        assert (await b.expect_type("error", cmid="p-3"))["code"] == "missing_field"
        await b.send({"type": "text", "cmid": "p-4", "sender_id": "u", "text": "x"})
        assert (await b.expect_type("error", cmid="p-4"))["code"] == "missing_field"
        await b.send({"type": "close", "cmid": "p-5", "conv": conv, "code": "x"})
        assert (await b.expect_type("error", cmid="p-5"))["code"] == "bad_type"
        await b.close()
    run(scenario())


def test_bad_bridge_token_closed_1008(desk, procs):
    async def scenario():
        for tok in ("wrong-token", "", BRIDGE_TOKEN[:-1]):
            b = await Client.connect(desk.ws, "/ws/bridge")
            await b.send({"type": "hello", "token": tok, "channel": "wechat"})
            err = await b.expect_type("error")
            assert err["code"] == "bad_token"
            closed = await b.expect_closed()
            assert closed.code == 1008
        # the first frame must be hello
        b = await Client.connect(desk.ws, "/ws/bridge")
        await b.send({"type": "ack", "id": "1-0"})
        assert (await b.expect_type("error"))["code"] == "hello_required"
        await b.close()
    run(scenario())


def test_no_bridge_token_configured_refuses_every_bridge(procs):
    gw = procs.gateway(SECRETS)

    async def scenario():
        b = await Client.connect(gw.ws, "/ws/bridge")
        await b.send({"type": "hello", "token": "", "channel": "wechat"})
        assert (await b.expect_type("error"))["code"] == "bad_token"
        assert (await b.expect_closed()).code == 1008
    run(scenario())


# ---- e-mail ----

def utf8_mail(msgid, subject, body, frm="张三 <zhang@example.cn>", **headers):
    m = email.message.EmailMessage()
    m["From"] = frm
    m["To"] = "support@desk.example"
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(1714036504)
    m["Message-ID"] = f"<{msgid}>"
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m.as_bytes()


def parse_mime(native):
    return email.message_from_bytes(native.encode(), policy=email.policy.default)


def test_email_reply_rendered_as_mime_and_threads_back(desk, procs, redis_srv):
    r = redis_srv.r
    token = procs.agent_token("alice", "Alice", cap=2)

    async def scenario():
        b = await bridge(desk, "email", "mail-1")
        raw = utf8_mail("first-1@example.cn", "订单问题 A-1093", "你好，我的订单还没到。")
        assert request(desk, "POST", "/channels/email", raw, MAIL_HDR)[0] == 200
        conv = cust_conv(r, "email:zhang@example.cn")
        a = await agent(desk, token)
        await a.expect_type("assigned", conv=conv)
        ack1 = await a.say("您好，包裹明天到。", conv=conv)
        f = await b.expect(is_out(conv, "agent"), what="agent reply")
        assert f["seq"] == ack1["seq"]
        mail = parse_mime(f["native"])
        assert mail["To"].addresses[0].addr_spec == "zhang@example.cn"
        assert str(mail["Subject"]).startswith("Re: 订单问题 A-1093")
        assert f"[#cg-{conv}]" in str(mail["Subject"])
        assert mail["In-Reply-To"] == "<first-1@example.cn>"
        assert mail["From"].addresses[0].addr_spec == "support@desk.example"
        assert mail.get_content_charset() == "utf-8"
        assert mail.get_content().strip() == "您好，包裹明天到。"
        mid = mail["Message-ID"].strip("<>")
        assert mid.endswith("@desk.example")
        assert r.get(f"cg:{{t:default}}:mailid:{mid}") == conv.encode()
        for x in [x for x in b.frames if is_out(conv)(x)]:
            await ack(b, x)
        # the customer answers that mail (no token in the subject): threaded by Message-ID
        idx = len(procs.all[0].lines)
        ans = utf8_mail("second-2@example.cn", "Re: your answer", "谢谢！",
                        In_Reply_To=f"<{mid}>", References=f"<first-1@example.cn> <{mid}>")
        assert request(desk, "POST", "/channels/email", ans, MAIL_HDR)[0] == 200
        procs.all[0].wait_log("threaded by Message-ID into conv " + conv, 5, idx)
        await a.expect(lambda x: x.get("role") == "customer" and x.get("text") == "谢谢！"
                       and x.get("conv") == conv, what="the threaded answer")
        # the next reply answers the customer's latest mail, in the same thread
        await a.say("不客气", conv=conv)
        f2 = await b.expect(lambda x: is_out(conv, "agent")(x) and x.get("text") == "不客气")
        mail2 = parse_mime(f2["native"])
        assert mail2["In-Reply-To"] == "<second-2@example.cn>"
        assert "<first-1@example.cn>" in mail2["References"]
        assert str(mail2["Subject"]).startswith("Re: 订单问题 A-1093")
        await ack(b, f2)
        await a.close()
        await b.close()
    run(scenario())


# ---- the reference e-mail bridge (tools/) ----

MAIL_IN = os.path.join(ROOT, "tools", "chatgw-mail-in")
MAIL_OUT = os.path.join(ROOT, "tools", "chatgw-mail-out")


def mail_in(gw_url, raw, token=MAIL_TOKEN):
    env = dict(os.environ, CHATGW_GATEWAY_URL=gw_url, CHATGW_EMAIL_TOKEN=token)
    return subprocess.run(["/usr/bin/python3", MAIL_IN], input=raw, env=env, capture_output=True,
                          timeout=30)


def test_mail_in_tool_exit_codes(desk, procs, redis_srv):
    r = redis_srv.r
    raw = utf8_mail("tool-1@example.cn", "via the MTA pipe", "piped in")
    p = mail_in(desk.base, raw)
    assert p.returncode == 0, p.stderr
    conv = cust_conv(r, "email:zhang@example.cn")
    assert [m["text"] for m in customer_msgs(r, conv)] == ["piped in"]
    assert mail_in(desk.base, raw, token="wrong").returncode == 77  # EX_NOPERM
    assert mail_in(desk.base, b"not a mail").returncode == 65  # EX_DATAERR
    from conftest import free_port
    p = mail_in(f"http://127.0.0.1:{free_port()}", raw)  # the gateway is down
    assert p.returncode == 75, p.stderr  # EX_TEMPFAIL: the MTA retries


def test_mail_out_tool_sends_through_sendmail_and_acks(desk, procs, redis_srv, tmp_path):
    r = redis_srv.r
    token = procs.agent_token("alice", "Alice", cap=2)
    outdir = tmp_path / "sent"
    outdir.mkdir()
    fake = tmp_path / "fake-sendmail"
    fake.write_text("#!/bin/sh\n# a sendmail -t -i stand-in: keep the mail, or fail when told\n"
                    f"[ -e {tmp_path}/fail ] && exit 75\n"
                    f"cat > {outdir}/mail.$$.$(date +%s%N).eml\n")
    fake.chmod(0o755)
    env = dict(os.environ, CHATGW_GATEWAY_URL=desk.base, CHATGW_BRIDGE_TOKEN=BRIDGE_TOKEN,
               CHATGW_SENDMAIL=f"{fake} -t -i", CHATGW_BRIDGE_NAME="mail-out-test")
    (tmp_path / "fail").write_text("")
    p = subprocess.Popen(["/usr/bin/python3", MAIL_OUT], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        raw = utf8_mail("out-1@example.cn", "发票", "请开发票")
        assert request(desk, "POST", "/channels/email", raw, MAIL_HDR)[0] == 200
        conv = cust_conv(r, "email:zhang@example.cn")

        async def reply():
            a = await agent(desk, token)
            await a.expect_type("assigned", conv=conv)
            await a.say("发票已开好。", conv=conv)
            await a.close()
        run(reply())
        # sendmail fails: nothing acked, the entries stay pending
        wait_until(lambda: (pending(r, "email") or 0) >= 1, 10, "pending entries")
        assert not list(outdir.iterdir())
        os.unlink(tmp_path / "fail")

        def sent_reply():
            for f in outdir.iterdir():
                m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
                if m.get_content().strip() == "发票已开好。":
                    return m
            return None
        # the bridge retries (reconnects), sendmail succeeds, the bridge acks
        m = wait_until(sent_reply, 30, "the reply in the sendmail spool")
        assert m["To"].addresses[0].addr_spec == "zhang@example.cn"
        assert str(m["Subject"]).startswith("Re: 发票")
        assert m["In-Reply-To"] == "<out-1@example.cn>"
        wait_until(lambda: pending(r, "email") == 0, 15, "every entry acked")
    finally:
        p.terminate()
        out = p.communicate(timeout=10)[0]
    assert p.returncode in (0, -15), out


def test_bridge_push_in_native_form(desk, procs, redis_srv):
    """A bridge may push the platform's own body: parsed by the channel module, stored and
    de-duplicated exactly like the webhook's; bodies without messages are acked, not stored."""
    r = redis_srv.r
    xml = ("<xml><ToUserName><![CDATA[gh_desk]]></ToUserName>"
           "<FromUserName><![CDATA[oNative1]]></FromUserName><CreateTime>1714036504</CreateTime>"
           "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[原生消息]]></Content>"
           "<MsgId>900777</MsgId></xml>")
    update = {"update_id": 5005, "message": {"message_id": 7, "date": 1714036504,
              "chat": {"id": -1001234567890123, "type": "private"},
              "from": {"id": 42, "first_name": "Ann"}, "text": "native hello"}}
    statuses = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [
            {"id": "wamid.X", "status": "delivered", "timestamp": "1714036504",
             "recipient_id": "15550001111"}]}}]}]}

    async def scenario():
        wx = await bridge(desk, "wechat", name="wx-native")
        await wx.send({"type": "text", "cmid": "n-1", "native": xml})
        ack = await wx.expect_type("ack", cmid="n-1")
        conv = cust_conv(r, "wechat:oNative1")
        assert ack["conv"] == conv and ack["seq"] == 1
        [m] = customer_msgs(r, conv)
        assert m["text"] == "原生消息" and m["cmid"] == "wx:900777"
        await wx.send({"type": "text", "cmid": "n-2", "native": xml})  # a retry
        assert (await wx.expect_type("ack", cmid="n-2"))["seq"] == 1
        assert len(customer_msgs(r, conv)) == 1
        await wx.send({"type": "text", "cmid": "n-3", "native": "<xml><broken"})
        assert (await wx.expect_type("error", cmid="n-3"))["code"] in ("bad_xml", "bad_value")

        tg = await bridge(desk, "telegram", name="tg-native")
        await tg.send({"type": "text", "cmid": "t-1", "native": json.dumps(update)})
        ack = await tg.expect_type("ack", cmid="t-1")
        [m] = customer_msgs(r, ack["conv"])
        assert m["text"] == "native hello" and m["meta"]["platform_chat_id"] == "-1001234567890123"

        wa = await bridge(desk, "whatsapp", name="wa-native")
        await wa.send({"type": "text", "cmid": "w-1", "native": json.dumps(statuses)})
        ack = await wa.expect_type("ack", cmid="w-1")
        assert "seq" not in ack  # acknowledged, nothing stored

        em = await bridge(desk, "email", name="em-native")
        await em.send({"type": "text", "cmid": "e-1", "native": "From: a@b\r\n\r\nhi"})
        e = await em.expect_type("error", cmid="e-1")
        assert e["code"] == "bad_value" and "/channels/email" in e["text"]
        for b in (wx, tg, wa, em):
            await b.close()
    run(scenario())


# ---- hardening: nothing stalls the bridges, nobody but the product steers them (issue 12) ----

# The headers email_render_reply builds; a mail with any other is not the gateway's rendering.
BUILT_HEADERS = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references",
                 "mime-version", "content-type", "content-transfer-encoding"}
RECORDING_SENDMAIL = """#!/bin/sh
# a sendmail -t -i stand-in: keeps every mail it is given; refuses one holding FAILME (67 =
# EX_NOUSER: this mail can never go), like an MTA refusing a recipient
f={outdir}/mail.$$.$(date +%s%N).eml
cat > "$f"
if grep -q FAILME "$f"; then rm -f "$f"; echo "550 5.1.1 mailbox unavailable" >&2; exit 67; fi
exit 0
"""


def start_mail_out(gw, tmp_path, name="mail-out-test"):
    """tools/chatgw-mail-out with a sendmail that records its stdin: (process, spool dir)."""
    outdir = tmp_path / "spool"
    outdir.mkdir()
    fake = tmp_path / "recording-sendmail"
    fake.write_text(RECORDING_SENDMAIL.format(outdir=outdir))
    fake.chmod(0o755)
    env = dict(os.environ, CHATGW_GATEWAY_URL=gw.base, CHATGW_BRIDGE_TOKEN=BRIDGE_TOKEN,
               CHATGW_SENDMAIL=f"{fake} -t -i", CHATGW_BRIDGE_NAME=name)
    p = subprocess.Popen(["/usr/bin/python3", MAIL_OUT], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    return p, outdir


def stop_mail_out(p):
    p.terminate()
    out = p.communicate(timeout=10)[0]
    assert p.returncode in (0, -15), out
    return out.decode("utf-8", "replace")


def spooled(outdir):
    """Every mail the fake sendmail was given: [(raw bytes, parsed)]."""
    return [(f.read_bytes(), email.message_from_bytes(f.read_bytes(), policy=email.policy.default))
            for f in sorted(outdir.iterdir())]


def spooled_with(outdir, text):
    return [m for _, m in spooled(outdir) if m.get_content().strip() == text]


async def assigned_email_conv(gw, r, a, addr, msgid, subject="help", body="hi"):
    """A customer mail from addr, assigned to the connected agent a: its conv."""
    raw = utf8_mail(msgid, subject, body, frm=addr)
    assert request(gw, "POST", "/channels/email", raw, MAIL_HDR)[0] == 200
    conv = cust_conv(r, f"email:{addr}")
    await a.expect_type("assigned", conv=conv)
    return conv


def dead_letters(r, channel="email"):
    """cg:{t:default}:dead:<channel> entries as {field: str} (the msgpack msg `m` as bytes)."""
    return [{s(k): v if k == b"m" else s(v) for k, v in f.items()}
            for _, f in r.xrange(f"cg:{{t:default}}:dead:{channel}")]


def fcall_agent_text(r, conv, agent_id, cmid, body):
    """Store an agent message the way the gateway does (cg_message), with whatever fields body
    has: what a client could get stored before the gateway refused native/meta."""
    m = dict({"v": 1, "type": "text", "role": "agent", "dir": "out", "channel": "email",
              "sender_id": agent_id, "id": cmid + "-id", "ts": int(time.time() * 1000)}, **body)
    return store(r, conv, cmid, "agent", agent_id, msgpack.packb(m), "", "email",
                   str(int(time.time() * 1000)), "log")


def test_clients_cannot_steer_bridges(desk, procs, redis_srv, tmp_path):
    """native and meta are the product's: an agent (or customer) frame carrying them is refused
    with a reason; a message stored with them anyway never reaches a bridge with them, and the
    e-mail bridge's output (sendmail -t's stdin) holds only the headers the gateway built."""
    r = redis_srv.r
    token = procs.agent_token("alice", "Alice", cap=4)
    evil_mail = ("From: support@desk.example\r\nTo: victim@evil.example\r\n"
                 "Bcc: list@evil.example\r\nSubject: hi\r\n\r\nspam from the desk")
    evil_meta = {"platform_chat_id": "victim@evil.example", "platform_msg_id": "evil-1",
                 "thread_id": "evil-2@evil.example", "in_reply_to": "evil-3@evil.example",
                 "subject": "x\r\nBcc: list@evil.example"}
    p, outdir = start_mail_out(desk, tmp_path)
    try:
        async def scenario():
            a = await agent(desk, token)
            conv = await assigned_email_conv(desk, r, a, "zhang@example.cn", "steer-1@example.cn")
            await a.send({"type": "text", "cmid": "n1", "conv": conv, "text": "hello",
                          "native": evil_mail})
            e = await a.expect_type("error", cmid="n1")
            assert e["code"] == "bad_value" and "'native'" in e["text"], e
            await a.send({"type": "text", "cmid": "m1", "conv": conv, "text": "hello",
                          "meta": evil_meta})
            e = await a.expect_type("error", cmid="m1")
            assert e["code"] == "bad_value" and "'meta'" in e["text"], e
            c = await Client.connect(desk.ws, "/ws/customer")
            await c.hello()
            await c.send({"type": "text", "cmid": "c1", "text": "hi",
                          "meta": {"subject": "x"}})
            assert (await c.expect_type("error", cmid="c1"))["code"] == "bad_value"
            await c.close()
            # stored anyway (as before the refusal), and in a conversation whose address the
            # gateway cannot render (data from before ingestion was checked)
            r.hset(f"cg:{{t:default}}:conv:{conv}", "chat_id", '"zhang;x"@example.cn')
            _, seq1, _ = fcall_agent_text(r, conv, "alice", "legacy-1",
                                          {"text": "legacy", "native": evil_mail,
                                           "meta": evil_meta})
            r.hset(f"cg:{{t:default}}:conv:{conv}", "chat_id", "zhang@example.cn")
            fcall_agent_text(r, conv, "alice", "legacy-2",
                             {"text": "legacy two", "native": evil_mail, "meta": evil_meta})
            await a.say("Your parcel ships today.", conv=conv)
            await a.close()
            return conv, seq1
        conv, seq1 = run(scenario())
        wait_until(lambda: spooled_with(outdir, "Your parcel ships today."), 20, "the reply sent")
        wait_until(lambda: pending(r, "email") == 0, 15, "every entry acked")
    finally:
        out = stop_mail_out(p)
    mails = spooled(outdir)
    assert mails, out
    for raw, m in mails:
        assert b"evil" not in raw, raw
        assert {k.lower() for k in m.keys()} <= BUILT_HEADERS, m.keys()
        assert [a.addr_spec for a in m["To"].addresses] == ["zhang@example.cn"]
    assert spooled_with(outdir, "legacy two")  # rendered by the gateway, not copied
    assert not spooled_with(outdir, "legacy")  # no address it could render: dead letter
    assert (conv, str(seq1), "gateway") in [(d["c"], d["s"], d["by"]) for d in dead_letters(r)]


def test_unrenderable_reply_dead_lettered_and_bridge_moves_on(desk, procs, redis_srv, tmp_path):
    """A mail whose From a reply cannot go to is refused at ingestion (webhook, mail-in tool,
    bridge push); a reply the gateway still cannot render (data stored before that check) goes to
    cg:{t:default}:dead:email, the agent sees why, and the bridge goes on with the next replies; a mail the
    MTA refuses for good is reported by the bridge (failure ack) and dead-lettered the same way."""
    r = redis_srv.r
    token = procs.agent_token("alice", "Alice", cap=4)
    bad = utf8_mail("bad-from-1@example.cn", "hi", "hello", frm='"john;doe"@example.cn')
    st, body, _ = request(desk, "POST", "/channels/email", bad, MAIL_HDR)
    assert st == 400 and b"From address cannot be answered" in body, (st, body)
    pin = mail_in(desk.base, bad)
    assert pin.returncode == 65 and b"From address cannot be answered" in pin.stderr, pin
    assert cust_conv(r, 'email:"john;doe"@example.cn') is None
    p, outdir = start_mail_out(desk, tmp_path)
    try:
        async def scenario():
            b = await bridge(desk, "email", "em-push")
            await b.send({"type": "text", "cmid": "p1", "sender_id": "ann@example.cn",
                          "meta": {"platform_msg_id": "push-1@example.cn",
                                   "platform_chat_id": '"a;b"@example.cn'}, "text": "hi"})
            e = await b.expect_type("error", cmid="p1")
            assert e["code"] == "bad_value" and "cannot be answered" in e["text"], e
            await b.close()
            a = await agent(desk, token)
            c1 = await assigned_email_conv(desk, r, a, "li@example.cn", "dl-1@example.cn")
            r.hset(f"cg:{{t:default}}:conv:{c1}", "mail_last", "not a message id")  # stored before the check
            k1 = await a.say("First answer, cannot be rendered.", conv=c1)
            ev = await a.expect(lambda f: f.get("type") == "escalated" and f.get("conv") == c1
                                and f"Message {k1['seq']} " in f.get("text", ""),
                                what="the desk told why")
            assert ev["code"] == "undeliverable" and "In-Reply-To" in ev["text"], ev
            c2 = await assigned_email_conv(desk, r, a, "wang@example.cn", "dl-2@example.cn")
            await a.say("Second answer, fine.", conv=c2)
            k3 = await a.say("Third answer FAILME", conv=c2)
            ev = await a.expect(lambda f: f.get("type") == "escalated" and f.get("conv") == c2,
                                what="the bridge's failure, told to the desk")
            assert ev["code"] == "undeliverable" and "exited 67" in ev["text"], ev
            assert f"Message {k3['seq']} " in ev["text"]
            await a.say("Fourth answer, fine.", conv=c2)
            await a.close()
            return c1, k1["seq"], c2, k3["seq"]
        c1, seq1, c2, seq3 = run(scenario())
        for text in ("Second answer, fine.", "Fourth answer, fine."):
            wait_until(lambda: spooled_with(outdir, text), 20, f"'{text}' sent")
        wait_until(lambda: pending(r, "email") == 0, 15, "nothing left pending")
    finally:
        out = stop_mail_out(p)
    assert not spooled_with(outdir, "First answer, cannot be rendered."), out
    dead = {(d["c"], d["s"]): d for d in dead_letters(r)}
    d1, d3 = dead[(c1, str(seq1))], dead[(c2, str(seq3))]
    assert (d1["by"], d1["code"]) == ("gateway", "bad_value") and "In-Reply-To" in d1["reason"]
    assert (d3["by"], d3["code"]) == ("bridge:mail-out-test", "undeliverable")
    assert "exited 67" in d3["reason"] and "FAILME" in msgpack.unpackb(d3["m"])["text"]
    # the transcripts keep the notices, for the desk only: never sent to a bridge
    notes = [m for m in log_of(r, c1) + log_of(r, c2) if m["type"] == "escalated"]
    assert notes and {m["code"] for m in notes} == {"undeliverable"}
    out_types = [msgpack.unpackb(f[b"m"])["type"] for _, f in r.xrange("cg:{t:default}:out:email")]
    assert "escalated" not in out_types


def test_api_bridge_gets_only_product_fields(desk, procs, redis_srv):
    """An api bridge gets the normalized message as the format: still only what the product set
    (meta from the conversation's address, no native, no identity claims), whatever was stored."""
    r = redis_srv.r
    token = procs.agent_token("alice", "Alice", cap=2)

    async def scenario():
        b = await bridge(desk, "api", "api-1")
        await b.send({"type": "text", "cmid": "p1", "sender_id": "u-77",
                      "meta": {"platform_msg_id": "m-1"}, "text": "hello from the app"})
        conv = (await b.expect_type("ack", cmid="p1"))["conv"]
        a = await agent(desk, token)
        await a.expect_type("assigned", conv=conv)
        _, seq, _ = fcall_agent_text(r, conv, "alice", "legacy-api", {
            "channel": "api", "text": "stored with steering fields",
            "native": '{"to":"someone-else"}', "identity": {"account": "evil"},
            "meta": {"platform_chat_id": "someone-else", "subject": "evil"}})
        f = await b.expect(lambda x: is_out(conv, "agent")(x) and x["seq"] == seq)
        assert "native" not in f and "identity" not in f, f
        assert f["meta"] == {"platform_chat_id": "u-77"}, f
        await ack(b, f)
        await a.close()
        await b.close()
    run(scenario())
