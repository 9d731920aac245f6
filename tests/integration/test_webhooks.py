"""Inbound webhooks (/channels/*): WeChat, Telegram, WhatsApp, Messenger and e-mail against the real
gateway and router binaries and a real redis-server. Requests go through http.client; nothing
sleeps: Redis is polled with wait_until and agents wait for WebSocket frames."""
import base64
import email.header
import email.message
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import socket
import struct
import time
import urllib.parse

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import conftest
from chat import agent
from conftest import wait_until
from desk import run

WECHAT_TOKEN = "AAAAA"
WECOM_TOKEN, WECOM_KEY, WECOM_ID = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", \
    "wx5823bf96d3bd56c7"
TG_SECRET = "tg-secret_0123456789"
META_SECRET = "test_app_secret"
META_VERIFY = "verify-me-42"
MAIL_TOKEN = "mail-bridge-token-0123456789abcdef"

SECRETS = {
    "CHATGW_WECHAT_TOKEN": WECHAT_TOKEN,
    "CHATGW_TELEGRAM_SECRET": TG_SECRET,
    "CHATGW_META_APP_SECRET": META_SECRET,
    "CHATGW_META_VERIFY_TOKEN": META_VERIFY,
    "CHATGW_EMAIL_TOKEN": MAIL_TOKEN,
}


def request(gw, method, path, body=None, headers=None, query=None):
    """One HTTP request on a new connection; returns (status, body bytes, headers)."""
    if query:
        path += "?" + urllib.parse.urlencode(query)
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), r
    finally:
        c.close()


def send_headers_only(gw, path, headers):
    """Announce a body and wait for the answer without sending it (refused on Content-Length)."""
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        c.putrequest("POST", path)
        for k, v in headers.items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def send_chunked(gw, path, headers, body, chunk=8192):
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        c.putrequest("POST", path)
        for k, v in headers.items():
            c.putheader(k, v)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        try:
            for i in range(0, len(body), chunk):
                part = body[i:i + chunk]
                c.send(b"%x\r\n" % len(part) + part + b"\r\n")
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: the answer is already there
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# ---- Redis inspection ----

def cust_conv(r, customer):
    v = r.hget(f"cg:{{t:default}}:cust:{customer}", "conv")
    return v.decode() if v else None


def log_msgs(r, conv):
    return [msgpack.unpackb(f[b"m"], raw=False) for _, f in r.xrange(f"cg:{{t:default}}:conv:{conv}:log")]


def customer_msgs(r, conv):
    return [m for m in log_msgs(r, conv) if m.get("role") == "customer"]


def stored_count(r):
    """Customer messages in every conversation log."""
    n = 0
    for k in r.scan_iter("cg:{t:default}:conv:*:log"):
        n += len(customer_msgs(r, k.decode().split(":")[4]))
    return n


def routed_to_agent(procs, gw, conv, text):
    """An agent with the skill general signs in, is assigned conv and sees the customer's text."""
    token = procs.agent_token("alice", "Alice", cap=2)

    async def scenario():
        a = await agent(gw, token)
        await a.expect_type("assigned", conv=conv)
        f = await a.expect(lambda f: f.get("type") == "text" and f.get("role") == "customer"
                           and f.get("conv") == conv, what="customer text")
        assert f["text"] == text
        await a.close()
        return f
    return run(scenario())


@pytest.fixture
def desk(procs):
    gw = procs.gateway(SECRETS)
    procs.router()
    return gw


# ---- WeChat ----

def wx_sign(token, ts, nonce, *extra):
    return hashlib.sha1("".join(sorted([token, ts, nonce, *extra])).encode()).hexdigest()


def now_s(delta=0):
    """The current unix time (plus delta seconds) as the platforms write it: requests are
    accepted within a window around the gateway's clock."""
    return str(int(time.time()) + delta)


def wx_query(token=WECHAT_TOKEN, ts=None, nonce="1514711492", **kw):
    ts = ts or now_s()
    q = {"signature": wx_sign(token, ts, nonce), "timestamp": ts, "nonce": nonce}
    q.update(kw)
    return q


def wx_text(openid, msgid, text, to="gh_desk", created=None):
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{created or now_s()}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{msgid}</MsgId></xml>").encode()


def wx_encrypt(key43, appid, plain, random16=b"0123456789abcdef"):
    key = base64.b64decode(key43 + "=")
    data = random16 + struct.pack(">I", len(plain)) + plain + appid.encode()
    pad = 32 - len(data) % 32
    data += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode()


def test_wechat_verification_vector(desk):
    # the documented vector: token AAAAA
    q = {"signature": "f464b24fc39322e44b38aa78f5edd27bd1441696", "timestamp": "1714036504",
         "nonce": "1514711492", "echostr": "echo-8412"}
    assert q["signature"] == wx_sign("AAAAA", "1714036504", "1514711492")
    st, body, _ = request(desk, "GET", "/channels/wechat", query=q)
    assert (st, body) == (200, b"echo-8412")
    q["signature"] = "0" * 40
    st, body, _ = request(desk, "GET", "/channels/wechat", query=q)
    assert st == 403 and b"echo" not in body


def test_wechat_message_stored_routed_and_deduplicated(desk, procs, redis_srv):
    r = redis_srv.r
    openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    body = wx_text(openid, "6054768590064713728", "你好，订单在哪里？")
    st, resp, h = request(desk, "POST", "/channels/wechat", body, query=wx_query())
    assert (st, resp) == (200, b"success") and h.getheader("content-type") == "text/plain"
    conv = cust_conv(r, f"wechat:{openid}")
    msgs = customer_msgs(r, conv)
    assert len(msgs) == 1
    m = msgs[0]
    assert m["channel"] == "wechat" and m["dir"] == "in" and m["text"] == "你好，订单在哪里？"
    assert m["sender_id"] == f"wechat:{openid}" and m["cmid"] == "wx:6054768590064713728"
    assert m["meta"]["platform_chat_id"] == openid
    assert r.hget(f"cg:{{t:default}}:conv:{conv}", "channel") == b"wechat"
    # WeChat retries the same MsgId: acknowledged, not stored again
    n = r.xlen(f"cg:{{t:default}}:conv:{conv}:log")
    st, resp, _ = request(desk, "POST", "/channels/wechat", body,
                          query=wx_query(ts=now_s(6), nonce="77"))
    assert (st, resp) == (200, b"success")
    assert len(customer_msgs(r, conv)) == 1
    routed_to_agent(procs, desk, conv, "你好，订单在哪里？")
    assert len(customer_msgs(r, conv)) == 1 and r.xlen(f"cg:{{t:default}}:conv:{conv}:log") >= n


def test_wechat_refusals(desk, redis_srv):
    body = wx_text("oUser1", "1", "hi")
    bad = wx_query()
    bad["signature"] = "f" * 40
    assert request(desk, "POST", "/channels/wechat", body, query=bad)[0] == 403
    assert request(desk, "POST", "/channels/wechat", body)[0] == 403  # no signature at all
    st, resp, _ = request(desk, "POST", "/channels/wechat", b"<xml><MsgType>te", query=wx_query())
    assert st == 400 and resp.startswith(b"malformed XML")
    doctype = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Content>&a;</Content></xml>'
    assert request(desk, "POST", "/channels/wechat", doctype, query=wx_query())[0] == 400
    big = wx_text("oUser1", "2", "x" * (256 * 1024))
    assert request(desk, "POST", "/channels/wechat", big, query=wx_query())[0] == 413
    st, _ = send_chunked(desk, "/channels/wechat?" + urllib.parse.urlencode(wx_query()), {}, big)
    assert st == 413
    assert request(desk, "PUT", "/channels/wechat", b"x", query=wx_query())[0] == 405
    assert stored_count(redis_srv.r) == 0


def test_wechat_ignored_event_not_stored(desk, redis_srv):
    created = now_s()
    ev = (b"<xml><ToUserName><![CDATA[gh_desk]]></ToUserName><FromUserName><![CDATA[oEvUser]]>"
          b"</FromUserName><CreateTime>" + created.encode() + b"</CreateTime>"
          b"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>")
    st, resp, _ = request(desk, "POST", "/channels/wechat", ev, query=wx_query())
    assert (st, resp) == (200, b"success")
    assert redis_srv.r.hget("cg:{t:default}:cust:wechat:oEvUser", "conv") is None
    assert stored_count(redis_srv.r) == 0
    # subscribe: the follower arrived -- a join opens the conversation, no text yet
    sub = ev.replace(b"unsubscribe", b"subscribe")
    assert request(desk, "POST", "/channels/wechat", sub, query=wx_query())[:2] == (200, b"success")
    conv = cust_conv(redis_srv.r, "wechat:oEvUser")
    assert [m["type"] for m in customer_msgs(redis_srv.r, conv)] == ["join"]
    assert customer_msgs(redis_srv.r, conv)[0]["cmid"] == f"wx:ev:oEvUser:{created}"


def test_wechat_safe_mode(procs, redis_srv):
    gw = procs.gateway({"CHATGW_WECHAT_TOKEN": WECOM_TOKEN, "CHATGW_WECHAT_AES_KEY": WECOM_KEY,
                        "CHATGW_WECHAT_APPID": WECOM_ID})
    enc = wx_encrypt(WECOM_KEY, WECOM_ID, wx_text("oSafeUser", "9001", "安全模式"))
    env = (f"<xml><ToUserName><![CDATA[gh_desk]]></ToUserName>"
           f"<Encrypt><![CDATA[{enc}]]></Encrypt></xml>").encode()
    ts, nonce = now_s(), "123456"
    q = wx_query(WECOM_TOKEN, ts, nonce, encrypt_type="aes",
                 msg_signature=wx_sign(WECOM_TOKEN, ts, nonce, enc))
    st, resp, _ = request(gw, "POST", "/channels/wechat", env, query=q)
    assert (st, resp) == (200, b"success")
    conv = cust_conv(redis_srv.r, "wechat:oSafeUser")
    assert [m["text"] for m in customer_msgs(redis_srv.r, conv)] == ["安全模式"]
    # a forged Encrypt (signature over something else) never reaches the decryption
    q["msg_signature"] = wx_sign(WECOM_TOKEN, ts, nonce, enc + "x")
    assert request(gw, "POST", "/channels/wechat", env, query=q)[0] == 403
    # encrypted for another app id
    enc2 = wx_encrypt(WECOM_KEY, "wxother", wx_text("oSafeUser", "9002", "x"))
    env2 = f"<xml><Encrypt><![CDATA[{enc2}]]></Encrypt></xml>".encode()
    q2 = wx_query(WECOM_TOKEN, ts, nonce, encrypt_type="aes",
                  msg_signature=wx_sign(WECOM_TOKEN, ts, nonce, enc2))
    assert request(gw, "POST", "/channels/wechat", env2, query=q2)[0] == 403
    assert len(customer_msgs(redis_srv.r, conv)) == 1


# ---- Telegram ----

def tg_update(update_id, text, user=777000111, **extra):
    u = {"update_id": update_id,
         "message": {"message_id": update_id, "date": 1714036504,
                     "chat": {"id": user, "type": "private"},
                     "from": {"id": user, "is_bot": False, "first_name": "Ming", "last_name": "Li"},
                     "text": text}}
    u.update(extra)
    return json.dumps(u).encode()


TG_HDR = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}


def test_telegram_message_stored_routed_and_deduplicated(desk, procs, redis_srv):
    r = redis_srv.r
    body = tg_update(900001, "where is my parcel?")
    st, resp, _ = request(desk, "POST", "/channels/telegram", body, TG_HDR)
    assert st == 200
    conv = cust_conv(r, "telegram:777000111")
    [m] = customer_msgs(r, conv)
    assert m["text"] == "where is my parcel?" and m["channel"] == "telegram"
    assert m["cmid"] == "tg:900001" and m["sender_name"] == "Ming Li"
    assert request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 200  # retry
    assert len(customer_msgs(r, conv)) == 1
    # the same update chunked is still the same update
    assert send_chunked(desk, "/channels/telegram", TG_HDR, body, chunk=7)[0] == 200
    assert len(customer_msgs(r, conv)) == 1
    routed_to_agent(procs, desk, conv, "where is my parcel?")


def test_telegram_refusals_and_ignored(desk, redis_srv):
    body = tg_update(1, "hi")
    assert request(desk, "POST", "/channels/telegram", body,
                   {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET + "x"})[0] == 403
    assert request(desk, "POST", "/channels/telegram", body)[0] == 403
    st, resp, _ = request(desk, "POST", "/channels/telegram", b'{"update_id": 1, "message":',
                          TG_HDR)
    assert st == 400 and resp.startswith(b"malformed JSON")
    assert send_headers_only(desk, "/channels/telegram",
                             dict(TG_HDR, **{"Content-Length": str(256 * 1024 + 1)}))[0] == 413
    big = tg_update(2, "x" * (300 * 1024))
    assert send_chunked(desk, "/channels/telegram", TG_HDR, big)[0] == 413
    assert request(desk, "GET", "/channels/telegram")[0] == 405
    edited = json.dumps({"update_id": 3, "edited_message": json.loads(body)["message"]}).encode()
    assert request(desk, "POST", "/channels/telegram", edited, TG_HDR)[0] == 200
    assert stored_count(redis_srv.r) == 0


# ---- WhatsApp and Messenger ----

def meta_sig(body, secret=META_SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wa_body(messages=(), statuses=(), contacts=()):
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1234"}}
    if messages:
        value["messages"] = list(messages)
        value["contacts"] = list(contacts)
    if statuses:
        value["statuses"] = list(statuses)
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "waba", "changes": [{"field": "messages",
                                                             "value": value}]}]}).encode()


def wa_text(wamid, text, frm="8613800138000"):
    return {"from": frm, "id": wamid, "timestamp": now_s(), "type": "text",
            "text": {"body": text}}


def test_meta_signature_vector():
    assert meta_sig(b'{"text":"\\u4f60\\u597d"}') == \
        "sha256=9eabc21075cd3ce675e35e4968b15a6462026a6130356aca49af2aeb1cd7035a"


def test_whatsapp_verification(desk):
    q = {"hub.mode": "subscribe", "hub.verify_token": META_VERIFY, "hub.challenge": "1158201444"}
    assert request(desk, "GET", "/channels/whatsapp", query=q)[:2] == (200, b"1158201444")
    assert request(desk, "GET", "/channels/messenger", query=q)[:2] == (200, b"1158201444")
    assert request(desk, "GET", "/channels/whatsapp",
                   query=dict(q, **{"hub.verify_token": "nope"}))[0] == 403
    assert request(desk, "GET", "/channels/whatsapp",
                   query=dict(q, **{"hub.mode": "unsubscribe"}))[0] == 403


def test_whatsapp_messages_stored_routed_and_deduplicated(desk, procs, redis_srv):
    r = redis_srv.r
    long_wamid = "wamid.HBgNODYxMzgwMDEzODAwMBUCABIYFjNFQjBDMEE2QjQ4RjY0QjU1RTg1QUQA"
    body = wa_body([wa_text(long_wamid, "你好"), wa_text("wamid.second", "second line")],
                   contacts=[{"profile": {"name": "Wang Fang"}, "wa_id": "8613800138000"}])
    assert b"\\u4f60\\u597d" in body  # Meta's escaping: the signature is over these bytes
    st, _, _ = request(desk, "POST", "/channels/whatsapp", body,
                       {"X-Hub-Signature-256": meta_sig(body),
                        "Content-Type": "application/json"})
    assert st == 200
    conv = cust_conv(r, "whatsapp:8613800138000")
    msgs = customer_msgs(r, conv)
    assert [m["text"] for m in msgs] == ["你好", "second line"]
    assert msgs[0]["sender_name"] == "Wang Fang" and msgs[0]["channel"] == "whatsapp"
    assert len(msgs[0]["cmid"]) <= 64 and not msgs[0]["cmid"].startswith("cg:")
    assert msgs[1]["cmid"] == "wa:wamid.second"
    # redelivery of the same body: nothing new
    assert request(desk, "POST", "/channels/whatsapp", body,
                   {"X-Hub-Signature-256": meta_sig(body)})[0] == 200
    assert len(customer_msgs(r, conv)) == 2
    routed_to_agent(procs, desk, conv, "你好")


def test_whatsapp_refusals_and_statuses(desk, redis_srv):
    body = wa_body([wa_text("wamid.x1", "hi")])
    # the same JSON written as raw UTF-8 does not verify with the escaped body's signature
    sig = meta_sig(body)
    assert request(desk, "POST", "/channels/whatsapp", body.replace(b"hi", b"ho"),
                   {"X-Hub-Signature-256": sig})[0] == 403
    assert request(desk, "POST", "/channels/whatsapp", body)[0] == 403
    assert request(desk, "POST", "/channels/whatsapp", body,
                   {"X-Hub-Signature-256": meta_sig(body, "other")})[0] == 403
    bad = b'{"entry": [}'
    st, resp, _ = request(desk, "POST", "/channels/whatsapp", bad,
                          {"X-Hub-Signature-256": meta_sig(bad)})
    assert st == 400 and resp.startswith(b"malformed JSON")
    big = wa_body([wa_text("wamid.big", "x" * (260 * 1024))])
    assert request(desk, "POST", "/channels/whatsapp", big,
                   {"X-Hub-Signature-256": meta_sig(big)})[0] == 413
    statuses = wa_body(statuses=[{"id": "wamid.out1", "status": "delivered",
                                  "timestamp": "1714036504", "recipient_id": "8613800138000"}])
    assert request(desk, "POST", "/channels/whatsapp", statuses,
                   {"X-Hub-Signature-256": meta_sig(statuses)})[0] == 200
    assert stored_count(redis_srv.r) == 0


def test_messenger_message_and_echo(desk, procs, redis_srv):
    r = redis_srv.r
    now_ms = int(time.time() * 1000)

    def body(*events):
        return json.dumps({"object": "page", "entry": [{"id": "pg1", "time": now_ms,
                                                        "messaging": list(events)}]}).encode()
    msg = {"sender": {"id": "24842375012345678"}, "recipient": {"id": "pg1"},
           "timestamp": now_ms, "message": {"mid": "m_AbC-123", "text": "Bonjour"}}
    echo = {"sender": {"id": "pg1"}, "recipient": {"id": "24842375012345678"},
            "timestamp": now_ms + 1000,
            "message": {"mid": "m_echo", "text": "our reply", "is_echo": True}}
    b = body(echo)
    assert request(desk, "POST", "/channels/messenger", b, {"X-Hub-Signature-256": meta_sig(b)})[0] \
        == 200
    assert stored_count(r) == 0
    b = body(msg)
    assert request(desk, "POST", "/channels/messenger", b,
                   {"X-Hub-Signature-256": meta_sig(b, "wrong")})[0] == 403
    assert request(desk, "POST", "/channels/messenger", b, {"X-Hub-Signature-256": meta_sig(b)})[0] \
        == 200
    assert request(desk, "POST", "/channels/messenger", b, {"X-Hub-Signature-256": meta_sig(b)})[0] \
        == 200
    conv = cust_conv(r, "messenger:24842375012345678")
    [m] = customer_msgs(r, conv)
    assert m["text"] == "Bonjour" and m["cmid"] == "fb:m_AbC-123" and m["channel"] == "messenger"
    routed_to_agent(procs, desk, conv, "Bonjour")


# ---- e-mail ----

MAIL_HDR = {"Authorization": f"Bearer {MAIL_TOKEN}", "Content-Type": "message/rfc822"}


def gbk_mail(msgid, subject="订单问题", body="你好，我的订单还没到。镕", frm="张三 <zhang@example.cn>",
             **headers):
    m = email.message.Message()
    m["From"] = email.header.Header(frm.split(" <")[0], "gb2312").encode() + " <" + \
        frm.split(" <")[1] if " <" in frm else frm
    m["To"] = "support@desk.example"
    m["Subject"] = email.header.Header(subject, "gb2312").encode()
    m["Date"] = email.utils.formatdate(1714036504)
    m["Message-ID"] = f"<{msgid}>"
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m["MIME-Version"] = "1.0"
    m.set_payload(base64.encodebytes(body.encode("gbk")).decode())
    m["Content-Type"] = 'text/plain; charset="gb2312"'
    m["Content-Transfer-Encoding"] = "base64"
    return m.as_bytes()


def test_email_gbk_mail_threaded_reply_and_dedup(desk, procs, redis_srv):
    r = redis_srv.r
    raw = gbk_mail("first-1@example.cn")
    st, _, _ = request(desk, "POST", "/channels/email", raw, MAIL_HDR)
    assert st == 200
    conv = cust_conv(r, "email:zhang@example.cn")
    [m] = customer_msgs(r, conv)
    assert m["text"].startswith("你好，我的订单还没到。镕") and m["channel"] == "email"
    assert m["meta"]["subject"] == "订单问题" and m["sender_name"] == "张三"
    assert r.get("cg:{t:default}:mailid:first-1@example.cn") == conv.encode()
    assert request(desk, "POST", "/channels/email", raw, MAIL_HDR)[0] == 200  # the bridge retries
    assert len(customer_msgs(r, conv)) == 1
    routed_to_agent(procs, desk, conv, m["text"])
    # the desk's reply went out with this Message-ID (recorded by whoever sends it)
    r.set("cg:{t:default}:mailid:cg-0123456789abcdef0123456789abcdef@desk.example", conv)
    idx = len(procs.all[0].lines)
    reply = gbk_mail("second-2@example.cn", subject="回复：订单问题", body="谢谢！\n\n> old quote",
                     In_Reply_To="<cg-0123456789abcdef0123456789abcdef@desk.example>",
                     References="<first-1@example.cn> "
                                "<cg-0123456789abcdef0123456789abcdef@desk.example>")
    assert request(desk, "POST", "/channels/email", reply, MAIL_HDR)[0] == 200
    procs.all[0].wait_log("threaded by Message-ID into conv " + conv, 5, idx)
    assert [x["text"] for x in customer_msgs(r, conv)][1].startswith("谢谢！")
    # a conversation token in the subject names the conversation too
    tok = gbk_mail("third-3@example.cn", subject=f"Re: 订单问题 [#cg-{conv}]", body="third")
    idx = len(procs.all[0].lines)
    assert request(desk, "POST", "/channels/email", tok, MAIL_HDR)[0] == 200
    procs.all[0].wait_log("threaded by token into conv " + conv, 5, idx)
    assert [x["text"] for x in customer_msgs(r, conv)][2] == "third"
    # somebody else answering in that thread does not write into it
    other = gbk_mail("other-4@example.org", frm="mallory@example.org",
                     subject=f"Re: x [#cg-{conv}]", body="not yours")
    assert request(desk, "POST", "/channels/email", other, MAIL_HDR)[0] == 200
    assert len(customer_msgs(r, conv)) == 3
    oconv = cust_conv(r, "email:mallory@example.org")
    assert oconv and oconv != conv
    assert [x["text"] for x in customer_msgs(r, oconv)] == ["not yours"]


def test_email_auto_reply_and_refusals(desk, redis_srv):
    auto = gbk_mail("auto-1@example.cn", subject="自动回复: 订单问题", body="我正在休假",
                    Auto_Submitted="auto-replied")
    st, resp, _ = request(desk, "POST", "/channels/email", auto, MAIL_HDR)
    assert st == 202 and b"automatic" in resp
    assert request(desk, "POST", "/channels/email", auto,
                   {"Authorization": "Bearer wrong"})[0] == 403
    assert request(desk, "POST", "/channels/email", auto)[0] == 403
    st, resp, _ = request(desk, "POST", "/channels/email", b"this is not a mail", MAIL_HDR)
    assert st == 400 and resp.startswith(b"malformed e-mail")
    assert send_headers_only(desk, "/channels/email",
                             dict(MAIL_HDR, **{"Content-Length": str(1024 * 1024 + 1)}))[0] == 413
    # 300 KiB is over the JSON limit but fine for mail
    big = gbk_mail("big-1@example.cn", body="大" * 100000)
    assert request(desk, "POST", "/channels/email", big, MAIL_HDR)[0] == 200
    assert stored_count(redis_srv.r) == 1


# ---- common behaviour ----

def test_disabled_channels_are_404(procs, redis_srv):
    gw = procs.gateway()
    for path in ("/channels/wechat", "/channels/telegram", "/channels/whatsapp",
                 "/channels/messenger", "/channels/email"):
        assert request(gw, "POST", path, b"{}", {"Authorization": "Bearer "})[0] == 404, path
    assert request(gw, "GET", "/channels/wechat", query=wx_query(echostr="e"))[0] == 404
    assert request(gw, "GET", "/channels/whatsapp",
                   query={"hub.mode": "subscribe", "hub.verify_token": "",
                          "hub.challenge": "1"})[0] == 404
    assert request(gw, "GET", "/channels/unknown")[0] == 404
    assert request(gw, "GET", "/healthz")[0] == 200


def test_redis_down_is_503_then_retry_stores(desk, redis_srv):
    body = tg_update(5001, "stored after the outage")
    redis_srv.kill()
    assert request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 503
    redis_srv.start()
    wait_until(lambda: request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 200, 15,
               "the retry to be accepted")
    conv = cust_conv(redis_srv.r, "telegram:777000111")
    assert [m["text"] for m in customer_msgs(redis_srv.r, conv)] == ["stored after the outage"]


def test_client_gone_before_answer(desk, redis_srv):
    """The platform hangs up before the answer: the message is stored all the same and the
    gateway carries on."""
    bodies = [tg_update(7000 + i, f"m{i}") for i in range(20)]
    for b in bodies:
        s = socket.create_connection(("127.0.0.1", desk.port))
        s.sendall(b"POST /channels/telegram HTTP/1.1\r\nHost: x\r\n"
                  b"X-Telegram-Bot-Api-Secret-Token: " + TG_SECRET.encode() +
                  b"\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
        s.close()
    wait_until(lambda: stored_count(redis_srv.r) == 20, 10, "20 messages stored")
    assert request(desk, "GET", "/healthz")[0] == 200
    assert request(desk, "POST", "/channels/telegram", bodies[0], TG_HDR)[0] == 200
    assert stored_count(redis_srv.r) == 20


def test_keep_alive_requests(desk, redis_srv):
    c = http.client.HTTPConnection("127.0.0.1", desk.port, timeout=10)
    for i in range(3):
        c.request("POST", "/channels/telegram", body=tg_update(8000 + i, f"k{i}"), headers=TG_HDR)
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"ok\n"
    c.request("POST", "/channels/telegram", body=b"[]", headers=TG_HDR)
    r = c.getresponse()
    assert r.status == 400
    r.read()
    c.close()
    assert stored_count(redis_srv.r) == 3


def raw_exchange(gw, data):
    """Send raw bytes, read until the server closes; returns the status code."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
    return int(got.split(b" ", 2)[1])


def test_chunked_framing(desk, redis_srv):
    head = (b"POST /channels/telegram HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"X-Telegram-Bot-Api-Secret-Token: " + TG_SECRET.encode() + b"\r\n\r\n")
    body = tg_update(9100, "chunk ext and trailer")
    framed = b"%x;name=value\r\n" % 10 + body[:10] + b"\r\n" + \
        b"%X\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert raw_exchange(desk, head + framed) == 200
    assert stored_count(redis_srv.r) == 1
    assert raw_exchange(desk, head + b"zz\r\n" + body) == 400
    assert raw_exchange(desk, head + b"5\r\n" + body[:5] + b"XX") == 400
    assert raw_exchange(desk, head + b"1" * 20 + b"\r\n") == 400
    assert stored_count(redis_srv.r) == 1


# ---- hardening: authentication before the body, caps, deadline, budget, replays ----

def headers_only(gw, path, headers, timeout=5):
    """Send only the request head, announcing a body that never comes; returns (status, body,
    headers) of the answer the gateway gives without it."""
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=timeout)
    try:
        c.putrequest("POST", path)
        for k, v in headers.items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read(), r
    finally:
        c.close()


def test_secrets_checked_before_the_body(desk, redis_srv):
    """A wrong header secret or WeChat query is refused at once: the announced body is never
    waited for (the old gateway read the whole body first)."""
    big = {"Content-Length": "60000"}
    st, body, r = headers_only(desk, "/channels/telegram",
                               dict(big, **{"X-Telegram-Bot-Api-Secret-Token": "wrong"}))
    assert (st, body) == (403, b"forbidden: bad secret token\n")
    assert r.getheader("connection") == "close"
    assert headers_only(desk, "/channels/telegram", big)[:2] == \
        (403, b"forbidden: no secret token\n")
    assert headers_only(desk, "/channels/email",
                        dict(big, Authorization="Bearer wrong"))[:2] == \
        (403, b"forbidden: bad bearer token\n")
    bad = wx_query()
    bad["signature"] = "0" * 40
    assert headers_only(desk, "/channels/wechat?" + urllib.parse.urlencode(bad), big)[0] == 403
    stale = wx_query(ts=now_s(-301))
    st, body, _ = headers_only(desk, "/channels/wechat?" + urllib.parse.urlencode(stale), big)
    assert st == 403 and body.startswith(b"forbidden: timestamp 30") and b"behind" in body
    ahead = wx_query(ts=now_s(400))
    st, body, _ = headers_only(desk, "/channels/wechat?" + urllib.parse.urlencode(ahead), big)
    assert st == 403 and b"ahead of the server clock" in body
    # unknown paths and wrong methods do not wait for a body either
    assert headers_only(desk, "/channels/nope", big)[0] == 404
    # and a good secret still works, on the same gateway
    assert request(desk, "POST", "/channels/telegram", tg_update(1, "hi"), TG_HDR)[0] == 200
    assert stored_count(redis_srv.r) == 1


def test_per_channel_body_caps(procs, redis_srv):
    gw = procs.gateway(dict(SECRETS, CHATGW_TELEGRAM_MAX_BODY="2048"))
    body = tg_update(42, "x" * 3000)
    st, resp, _ = headers_only(gw, "/channels/telegram",
                               dict(TG_HDR, **{"Content-Length": str(len(body))}))
    assert (st, resp) == (413, b"body too large\n")
    assert send_chunked(gw, "/channels/telegram", TG_HDR, body, chunk=512)[0] == 413
    assert request(gw, "POST", "/channels/telegram", tg_update(43, "small"), TG_HDR)[0] == 200
    # WhatsApp keeps its own (default 256 KiB) cap
    wa = wa_body([wa_text("wamid.cap", "y" * 3000)])
    assert request(gw, "POST", "/channels/whatsapp", wa, {"X-Hub-Signature-256": meta_sig(wa)})[0] \
        == 200
    # WeChat's default cap is 64 KiB
    wx = wx_text("oCapUser", "77", "z" * 70000)
    assert request(gw, "POST", "/channels/wechat", wx, query=wx_query())[0] == 413
    assert stored_count(redis_srv.r) == 2


def trickle(gw, head, total, budget_s=20.0, step=0.05):
    """Send head, then the body one byte at a time (each byte resets a per-read timeout) until
    the gateway answers or total bytes are sent or budget_s is over; returns the answer's bytes
    up to the close (b"" when none came) and how many body bytes were sent."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=step)
    sent, got = 0, b""
    end = time.monotonic() + budget_s
    try:
        s.sendall(head)
        while sent < total and time.monotonic() < end:
            try:
                s.sendall(b"x")
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                b = s.recv(4096)
                if not b:
                    break
                got += b
                if b"\r\n\r\n" in got:
                    break
            except socket.timeout:
                pass
        s.settimeout(5)
        while True:  # the rest of the answer, until the gateway closes
            try:
                b = s.recv(4096)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            got += b
    finally:
        s.close()
    return got, sent


def test_body_deadline_is_not_reset_by_trickled_bytes(procs, redis_srv):
    gw = procs.gateway(dict(SECRETS, CHATGW_WEBHOOK_DEADLINE_MS="500"))
    head = (b"POST /channels/telegram HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"X-Telegram-Bot-Api-Secret-Token: " + TG_SECRET.encode() + b"\r\n\r\n")
    got, sent = trickle(gw, head, 1000)
    assert got.startswith(b"HTTP/1.1 408"), (got[:80], sent, gw.text()[-2000:])
    assert b"did not arrive within the deadline" in got
    assert sent < 1000  # answered while the body was still trickling in
    # the next client is served normally
    assert request(gw, "POST", "/channels/telegram", tg_update(44, "on time"), TG_HDR)[0] == 200


def test_unauthenticated_body_budget(procs, redis_srv):
    """Meta bodies are authenticated only once read (HMAC): while being read they hold a share
    of a budget across connections; beyond it: 503 with Retry-After, nothing read."""
    gw = procs.gateway(dict(SECRETS, CHATGW_WEBHOOK_UNAUTH_BUDGET="65536",
                            CHATGW_WEBHOOK_DEADLINE_MS="600000"))
    holder = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    holder.sendall(b"POST /channels/whatsapp HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: 40000\r\n\r\n" + b"{" * 100)
    forged = wa_body([wa_text("wamid.forged", "x" * 30000)])
    hdr = {"X-Hub-Signature-256": meta_sig(forged, "not-the-secret")}
    last = {}

    def refused():
        last["r"] = request(gw, "POST", "/channels/whatsapp", forged, hdr)
        return last["r"][0] == 503
    wait_until(refused, 10, "503 while the budget is held")
    st, body, r = last["r"]
    assert body == b"busy: too many unauthenticated request bodies in flight; retry later\n"
    assert r.getheader("retry-after") == "600"
    # authenticated channels are not affected
    assert request(gw, "POST", "/channels/telegram", tg_update(45, "still fine"), TG_HDR)[0] == 200
    # a small Meta body still fits next to the held one
    ok = wa_body([wa_text("wamid.small", "small")])
    assert request(gw, "POST", "/channels/whatsapp", ok, {"X-Hub-Signature-256": meta_sig(ok)})[0] \
        == 200
    holder.close()  # its share goes back
    wait_until(lambda: request(gw, "POST", "/channels/whatsapp", forged, hdr)[0] == 403, 10,
               "the forged body to be read (and refused on its signature)")
    assert stored_count(redis_srv.r) == 2


def close_by_agent(procs, gw, r, conv):
    """An agent is assigned conv and closes it (code spam: no survey)."""
    token = procs.agent_token("closer", "Closer", cap=5)

    async def scenario():
        a = await agent(gw, token)
        await a.expect_type("assigned", conv=conv)
        await a.send({"type": "close", "conv": conv, "code": "spam", "cmid": "close-" + conv})
        await a.expect(lambda f: f.get("type") == "closed" and f.get("conv") == conv,
                       what="closed")
        await a.close()
    run(scenario())
    wait_until(lambda: r.hget(f"cg:{{t:default}}:conv:{conv}", "state") == b"closed", 10, "conv closed")


def test_wechat_replay_after_close_and_stale_create_time(desk, procs, redis_srv):
    r = redis_srv.r
    openid = "oReplayUser_1"
    body = wx_text(openid, "7001", "first")
    assert request(desk, "POST", "/channels/wechat", body, query=wx_query())[:2] == \
        (200, b"success")
    conv = cust_conv(r, f"wechat:{openid}")
    assert r.get("cg:{t:default}:seen:wx:7001") == conv.encode()
    assert 0 < r.ttl("cg:{t:default}:seen:wx:7001") <= 86400
    close_by_agent(procs, desk, r, conv)
    # replayed (a fresh signed query around the same captured body): no new conversation
    st, resp, _ = request(desk, "POST", "/channels/wechat", body,
                          query=wx_query(ts=now_s(2), nonce="99"))
    assert (st, resp) == (200, b"success")
    assert cust_conv(r, f"wechat:{openid}") == conv
    assert len(customer_msgs(r, conv)) == 1
    assert len(list(r.scan_iter("cg:{t:default}:conv:*:log"))) == 1
    # a message created outside +-300 s is refused
    old = wx_text(openid, "7002", "old", created=now_s(-1000))
    st, resp, _ = request(desk, "POST", "/channels/wechat", old, query=wx_query())
    assert st == 403 and resp == b"forbidden: CreateTime outside +-300 s of the server clock\n"
    assert r.get("cg:{t:default}:seen:wx:7002") is None
    # a new message of the same customer opens a new conversation as usual
    assert request(desk, "POST", "/channels/wechat", wx_text(openid, "7003", "again"),
                   query=wx_query())[:2] == (200, b"success")
    assert cust_conv(r, f"wechat:{openid}") != conv


def test_wechat_encryption_required_when_key_is_set(procs, redis_srv):
    gw = procs.gateway({"CHATGW_WECHAT_TOKEN": WECOM_TOKEN, "CHATGW_WECHAT_AES_KEY": WECOM_KEY,
                        "CHATGW_WECHAT_APPID": WECOM_ID})
    plain = wx_text("oDowngrade", "8001", "plain text")
    for extra in ({}, {"encrypt_type": "raw"}):
        st, resp, _ = request(gw, "POST", "/channels/wechat", plain,
                              query=wx_query(WECOM_TOKEN, **extra))
        assert st == 403 and resp.startswith(b"forbidden: plain-text message refused"), resp
    assert stored_count(redis_srv.r) == 0
    enc = wx_encrypt(WECOM_KEY, WECOM_ID, plain)
    env = f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>".encode()
    ts, nonce = now_s(), "5"
    q = wx_query(WECOM_TOKEN, ts, nonce, encrypt_type="aes",
                 msg_signature=wx_sign(WECOM_TOKEN, ts, nonce, enc))
    assert request(gw, "POST", "/channels/wechat", env, query=q)[:2] == (200, b"success")
    assert stored_count(redis_srv.r) == 1


def test_meta_stale_events_and_replays_dropped(desk, procs, redis_srv):
    r = redis_srv.r
    old = dict(wa_text("wamid.old", "from yesterday"), timestamp=now_s(-25 * 3600))
    b = wa_body([old])
    assert request(desk, "POST", "/channels/whatsapp", b, {"X-Hub-Signature-256": meta_sig(b)})[0] \
        == 200
    assert stored_count(r) == 0
    b = wa_body([wa_text("wamid.fresh", "fresh")])
    assert request(desk, "POST", "/channels/whatsapp", b, {"X-Hub-Signature-256": meta_sig(b)})[0] \
        == 200
    conv = cust_conv(r, "whatsapp:8613800138000")
    assert [m["text"] for m in customer_msgs(r, conv)] == ["fresh"]
    close_by_agent(procs, desk, r, conv)
    assert request(desk, "POST", "/channels/whatsapp", b, {"X-Hub-Signature-256": meta_sig(b)})[0] \
        == 200
    assert cust_conv(r, "whatsapp:8613800138000") == conv
    assert stored_count(r) == 1


def test_telegram_replay_after_close(desk, procs, redis_srv):
    r = redis_srv.r
    body = tg_update(880001, "only once")
    assert request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 200
    conv = cust_conv(r, "telegram:777000111")
    close_by_agent(procs, desk, r, conv)
    assert request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 200
    assert cust_conv(r, "telegram:777000111") == conv
    assert stored_count(r) == 1


def test_mail_in_takes_408_as_temporary():
    """A 408 (the body missed the gateway's deadline) must not bounce a mail: the MTA retries."""
    import importlib.machinery
    import importlib.util
    path = os.path.join(conftest.ROOT, "tools", "chatgw-mail-in")
    loader = importlib.machinery.SourceFileLoader("chatgw_mail_in", path)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(mod)
    assert mod.status_exit(408) == mod.EX_TEMPFAIL
    assert mod.status_exit(413) == mod.EX_DATAERR and mod.status_exit(503) == mod.EX_TEMPFAIL


def test_failed_store_gives_the_replay_claim_up(desk, redis_srv):
    """The replay memory never loses a message: when the store fails after the claim, the claim
    is given up (503), and the platform's retry is stored."""
    r = redis_srv.r
    r.execute_command("FUNCTION", "DELETE", "chatgw")  # cg_message now fails
    body = tg_update(990001, "stored on the retry")
    assert request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 503
    wait_until(lambda: r.get("cg:{t:default}:seen:tg:990001") is None, 5, "the claim to be given up")
    # the gateway loads its functions again when it reconnects
    r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    wait_until(lambda: request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 200, 15,
               "the retry to be stored")
    conv = cust_conv(r, "telegram:777000111")
    assert [m["text"] for m in customer_msgs(r, conv)] == ["stored on the retry"]
    assert r.get("cg:{t:default}:seen:tg:990001") == conv.encode()


def test_replay_claim_states(desk, redis_srv):
    """What the claim finds decides: another request storing the id right now -> 503 (retry
    later), nothing stored; a known conversation -> acknowledged as a replay, nothing stored."""
    r = redis_srv.r
    body = tg_update(990002, "claimed elsewhere")
    r.set("cg:{t:default}:seen:tg:990002", "p", ex=15)
    st, resp, _ = request(desk, "POST", "/channels/telegram", body, TG_HDR)
    assert (st, resp) == (503, b"storage unavailable; retry later\n")
    assert r.get("cg:{t:default}:seen:tg:990002") == b"p"  # not ours to give up
    r.set("cg:{t:default}:seen:tg:990002", "0123456789abcdef0123456789abcdef", ex=60)
    assert request(desk, "POST", "/channels/telegram", body, TG_HDR)[:2] == (200, b"ok\n")
    assert stored_count(r) == 0 and cust_conv(r, "telegram:777000111") is None
    r.delete("cg:{t:default}:seen:tg:990002")
    assert request(desk, "POST", "/channels/telegram", body, TG_HDR)[0] == 200
    assert stored_count(r) == 1
