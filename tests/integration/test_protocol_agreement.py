"""docs/protocol.md and the gateway agree (issue 11 section 6): each test runs one statement of the
protocol document against the real binaries (redis-server, gateway, router, chatgw-token) and
fails when either side drifts. The item of the issue each one pins is named in its docstring."""
import base64
import json
import os
import re
import socket
import subprocess

from chat import Client, agent, customer, new_cmid
from conftest import BUILD, ROOT, wait_until
from desk import conv_hash, run
from test_http_guard import request, upgrade

CONFIG = """
[router]
default_queue = general
default_locale = en
timer_tick_ms = 50
idle_close_s = 0

[queue general]
mode = push
"""

DOC = os.path.join(ROOT, "docs", "protocol.md")


def doc():
    with open(DOC, encoding="utf-8") as f:
        return " ".join(f.read().split())  # one line: sentences wrap anywhere


def desk(procs, tmp_path, router=True, **gw_env):
    path = tmp_path / "proto.ini"
    path.write_text(CONFIG, encoding="utf-8")
    gw = procs.gateway({"CHATGW_CONFIG": str(path), **gw_env})
    if router:
        procs.router({"CHATGW_CONFIG": str(path), "CHATGW_BLOCK_MS": 200})
    return gw


def claims(token):
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


async def online(gw, procs, r, name="alice"):
    a = await agent(gw, procs.agent_token(name, name.title(), skills=("general",), cap=4))
    wait_until(lambda: r.zscore("cg:{t:default}:avail:general", name) is not None, 5,
               f"{name} online")
    return a


# ---- item: welcome.conv ---------------------------------------------------------------------------

def test_welcome_conv_is_absent_first_then_the_current_conversation(procs, redis_srv, tmp_path):
    """welcome.conv: absent while the customer has no conversation; then its current one, also
    after it was closed (the next message opens a new one)."""
    gw = desk(procs, tmp_path)

    async def scenario():
        c = await customer(gw)
        assert "conv" not in c.welcome, c.welcome
        conv = (await c.say("hello"))["conv"]
        c2 = await customer(gw, token=c.welcome["token"])
        assert c2.welcome["conv"] == conv, c2.welcome
        await c.send({"type": "close", "cmid": new_cmid()})
        await c.expect_type("closed", conv=conv)
        c3 = await customer(gw, token=c.welcome["token"])
        assert c3.welcome["conv"] == conv, c3.welcome
        conv2 = (await c3.say("again"))["conv"]
        assert conv2 != conv
    run(scenario())
    d = doc()
    assert "`conv` is absent while the customer has none" in d


# ---- item: replay covers only the latest conversation; last_seq only with conv --------------------

def test_replay_is_the_current_conversation_and_last_seq_needs_conv(procs, redis_srv, tmp_path):
    """Replay after hello: only the current conversation; last_seq is honoured only together with
    a conv naming it (without conv, or with another conversation, the replay starts at seq 1)."""
    gw = desk(procs, tmp_path)

    async def scenario():
        c = await customer(gw)
        old = (await c.say("first"))["conv"]
        await c.send({"type": "close", "cmid": new_cmid()})
        await c.expect_type("closed", conv=old)
        ack = await c.say("second")
        conv = ack["conv"]
        assert conv != old
        tok = c.welcome["token"]
        # last_seq without conv: ignored, replay from seq 1 of the current conversation only
        c2 = await customer(gw, token=tok, last_seq=ack["seq"])
        first = await c2.expect(lambda f: f.get("seq"), what="a replayed frame")
        assert first["conv"] == conv and first["seq"] == 1, first
        # conv + last_seq: from last_seq + 1
        c3 = await customer(gw, token=tok, conv=conv, last_seq=ack["seq"])
        await c3.say("third")
        got = [f for f in c3.frames if f.get("seq") and f.get("type") != "ack"]
        assert got and min(f["seq"] for f in got) == ack["seq"] + 1, got
        # conv of the older conversation: nothing of it, the current one from seq 1
        c4 = await customer(gw, token=tok, conv=old, last_seq=1)
        first = await c4.expect(lambda f: f.get("seq"), what="a replayed frame")
        assert first["conv"] == conv and first["seq"] == 1, first
        assert not [f for f in c4.frames if f.get("conv") == old]
    run(scenario())
    assert "only the customer's current conversation" in doc()


# ---- item: the agent's `assigned` notice ----------------------------------------------------------

def test_agent_gets_an_assigned_notice_without_seq_and_the_logged_one(procs, redis_srv, tmp_path):
    """An assignment reaches the agent twice: first the notice from its agent channel (no seq,
    with channel and queue), then the conversation's transcript from seq 1, in which the logged
    `assigned` event has its seq. A reconnect gets the same pair."""
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        a = await online(gw, procs, r)
        c = await customer(gw)
        conv = (await c.say("hello"))["conv"]
        notice = await a.expect(lambda f: f.get("type") == "assigned" and f.get("conv") == conv,
                                what="the assigned notice")
        assert "seq" not in notice and notice["channel"] == "web" and notice["queue"] == "general"
        logged = await a.expect(lambda f: f.get("type") == "assigned" and f.get("conv") == conv,
                                what="the logged assigned")
        assert logged["seq"] >= 1 and logged["agent_id"] == "alice", logged
        first = next(f for f in a.frames if f.get("conv") == conv and f.get("seq"))
        assert first["seq"] == 1, first
        a2 = await agent(gw, procs.agent_token("alice", "Alice", skills=("general",), cap=4))
        n2 = await a2.expect(lambda f: f.get("type") == "assigned" and f.get("conv") == conv)
        assert "seq" not in n2
        l2 = await a2.expect(lambda f: f.get("type") == "assigned" and f.get("conv") == conv)
        assert l2["seq"] == logged["seq"]
    run(scenario())
    assert "first a notice without `seq`" in doc()


# ---- item: an echo may arrive before its ack ------------------------------------------------------

def test_ack_and_echo_carry_the_same_id_and_seq_in_either_order(procs, redis_srv, tmp_path):
    """The sender gets both the ack and the message itself (same id, seq, cmid); the document says
    either may come first."""
    gw = desk(procs, tmp_path, router=False)

    async def scenario():
        c = await customer(gw)
        cmid = new_cmid()
        await c.send({"type": "text", "cmid": cmid, "text": "hi"})
        ack, echo = await c.expect_unordered(
            lambda f: f.get("type") == "ack" and f.get("cmid") == cmid,
            lambda f: f.get("type") == "text" and f.get("cmid") == cmid)
        assert (ack["id"], ack["seq"], ack["conv"]) == (echo["id"], echo["seq"], echo["conv"])
    run(scenario())
    assert "so either may arrive first" in doc()


# ---- item: a duplicate-cmid ack lacks the id ------------------------------------------------------

def test_a_duplicate_cmid_is_acked_with_the_original_id_and_seq(procs, redis_srv, tmp_path):
    """A re-sent cmid is acked with the original message's id and seq, nothing stored again."""
    gw = desk(procs, tmp_path, router=False)

    async def scenario():
        c = await customer(gw)
        cmid = new_cmid()
        first = await c.say("once", cmid=cmid)
        again = await c.say("once", cmid=cmid)
        assert again["type"] == "ack", again
        assert (again["id"], again["seq"], again["conv"]) == (first["id"], first["seq"],
                                                              first["conv"]), (first, again)
        # from another connection of the same customer too
        c2 = await customer(gw, token=c.welcome["token"], conv=first["conv"],
                            last_seq=first["seq"])
        third = await c2.say("once", cmid=cmid)
        assert (third["id"], third["seq"]) == (first["id"], first["seq"]), third
        assert int(conv_hash(redis_srv.r, first["conv"])["seq"]) == first["seq"]
    run(scenario())
    assert "acked with the original `id` and `seq`" in doc()


# ---- item: rating error texts ---------------------------------------------------------------------

def test_rating_errors_say_1_to_5(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path, router=False)

    async def scenario():
        c = await customer(gw)
        for bad in (6, 0, -1, None):
            cmid = new_cmid()
            await c.send({"type": "rating", "cmid": cmid, **({} if bad is None else
                                                             {"rating": bad})})
            err = await c.expect(lambda f: f.get("cmid") == cmid, what="the error")
            assert err["type"] == "error", (bad, err)
            if bad is None:
                assert err["code"] == "missing_field" and "'rating'" in err["text"], err
            else:
                assert err["code"] == "bad_value", (bad, err)
                assert err["text"] == "field 'rating' must be within 1..5", err
    run(scenario())
    assert "\"field 'rating' must be within 1..5\"" in doc()


# ---- item: typing/read need conv for agents -------------------------------------------------------

def test_agent_typing_and_read_need_conv(procs, redis_srv, tmp_path):
    """An agent's typing and read name the conversation: without conv they are refused with
    missing_field naming it (a read used to be dropped silently)."""
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        a = await online(gw, procs, r)
        for t, extra in (("typing", {}), ("read", {"last_seq": 1})):
            cmid = new_cmid()
            await a.send({"type": t, "cmid": cmid, **extra})
            err = await a.expect(lambda f: f.get("cmid") == cmid, what=f"{t} refused")
            assert err["type"] == "error" and err["code"] == "missing_field", err
            assert "'conv'" in err["text"], err
        # with conv they are relayed to the customer
        c = await customer(gw)
        conv = (await c.say("hello"))["conv"]
        await a.expect(lambda f: f.get("type") == "assigned" and f.get("seq"))
        await a.send({"type": "read", "conv": conv, "last_seq": 1})
        await a.send({"type": "typing", "conv": conv})
        await c.expect_type("read", conv=conv)
        await c.expect_type("typing", conv=conv)
    run(scenario())
    assert "agents add `conv` to both" in doc()


# ---- item: the presence ack -----------------------------------------------------------------------

def test_presence_with_cmid_is_acked_without_seq(procs, redis_srv, tmp_path):
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        a = await online(gw, procs, r)
        cmid = new_cmid()
        await a.send({"type": "presence", "code": "away", "cmid": cmid})
        ack = await a.expect(lambda f: f.get("cmid") == cmid, what="the presence ack")
        assert ack["type"] == "ack" and ack["id"] and "seq" not in ack and "conv" not in ack, ack
        wait_until(lambda: r.zscore("cg:{t:default}:avail:general", "alice") is None, 5,
                   "alice away")
    run(scenario())
    assert "A `presence` with a `cmid` is acked" in doc()


# ---- item: refused handshakes get an HTTP status ---------------------------------------------------

def test_refused_handshakes_answer_http_403_with_the_reason(procs):
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": "https://shop.example"})
    status, body = upgrade(gw, origin="https://evil.example")
    assert status == 403 and "Origin not allowed" in body, (status, body)
    status, body = upgrade(gw, path="/ws/nope")
    assert status == 404 and "unknown WebSocket path" in body, (status, body)
    assert "refused with HTTP 403 and a text naming the problem" in doc()


def raw_handshake(gw, headers, path="/ws/customer", before=b""):
    """One upgrade request over a raw socket, after the bytes `before` (whole requests answered
    first: their answers are skipped). Returns (status line, lower-case headers, body, closed):
    a refusal is read to the end of the connection (closed is True when the gateway closed it
    after its answer), a 101 up to the end of its headers."""
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        if before:
            s.sendall(before)
            got = b""
            while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                got += s.recv(65536)  # /healthz answers a JSON object
        s.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.startswith(b"HTTP/1.1 101"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        closed = not data.startswith(b"HTTP/1.1 101")
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    hd = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hd[k.strip().lower()] = v.strip()
    return lines[0], hd, body.decode("utf-8", "replace"), closed


WS_HEADERS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
SUPPORTED = "supported: chatgw.json.v1, chatgw.msgpack.v1"


def test_a_handshake_offering_only_unknown_subprotocols_answers_400_naming_them(procs):
    """Issue 11 section 6: a handshake whose Sec-WebSocket-Protocol names none of the gateway's
    subprotocols was closed without any HTTP status (libwebsockets refused it before the gateway's
    callbacks ran); now it is answered 400 naming what was offered and what is served, and the
    connection is closed. One of ours anywhere in the list is still chosen (the first of ours in
    the client's order), and no header at all still gets chatgw.json.v1."""
    gw = procs.gateway()
    for offered, text in (
            ("chatgw.xml.v1", "unknown subprotocol: chatgw.xml.v1"),
            ("chatgw.xml.v1, chat", "unknown subprotocols: chatgw.xml.v1, chat"),
            ("chatgw.JSON.v1", "unknown subprotocol: chatgw.JSON.v1")):  # names match exactly
        status, hd, body, closed = raw_handshake(gw, {**WS_HEADERS,
                                                      "Sec-WebSocket-Protocol": offered})
        assert re.fullmatch(r"HTTP/1\.[01] 400 Bad Request", status), (offered, status, body)
        assert body == f"{text}; {SUPPORTED}\n", (offered, body)
        assert hd["content-type"].startswith("text/plain"), hd
        assert hd["x-content-type-options"] == "nosniff", hd  # the security headers too
        assert closed, offered
    for offered, chosen in (("chatgw.xml.v1, chatgw.msgpack.v1", "chatgw.msgpack.v1"),
                            ("chatgw.json.v1, chatgw.msgpack.v1", "chatgw.json.v1"),
                            ("x, chatgw.msgpack.v1, chatgw.json.v1", "chatgw.msgpack.v1")):
        status, hd, _, closed = raw_handshake(gw, {**WS_HEADERS,
                                                   "Sec-WebSocket-Protocol": offered})
        assert status == "HTTP/1.1 101 Switching Protocols" and not closed, (offered, status)
        assert hd["sec-websocket-protocol"] == chosen, (offered, hd)
    status, hd, _, _ = raw_handshake(gw, WS_HEADERS)
    assert status == "HTTP/1.1 101 Switching Protocols", status
    assert "sec-websocket-protocol" not in hd, hd

    async def scenario():  # no subprotocol asked for: JSON in text frames
        c = await Client.connect(gw.ws, "/ws/customer", proto=None)
        assert c.ws.subprotocol is None
        await c.ws.send(json.dumps({"type": "hello"}))
        welcome = await c.ws.recv()
        assert isinstance(welcome, str) and json.loads(welcome)["type"] == "welcome", welcome
        await c.ws.close()
    run(scenario())
    d = doc()
    assert "the default when none is asked for" in d
    assert f"`unknown subprotocol: chatgw.xml.v1; {SUPPORTED}`" in d
    assert "without an HTTP status" not in d


def test_the_other_handshakes_libwebsockets_would_drop_answer_400(procs):
    """What libwebsockets 4.1 would close without a word is answered 400 with a text naming the
    problem: a malformed subprotocol list, one longer than 126 bytes, a name longer than 62
    bytes, no Sec-WebSocket-Key, a Connection header without upgrade. The limits are lws' own:
    a list of 126 bytes and a name of 62 still reach the subprotocol choice."""
    gw = procs.gateway()
    def names(first):  # first + 4 names of 20 bytes + chatgw.json.v1: 103 + first bytes
        return ", ".join(["x" * first] + ["x" * 20] * 4 + ["chatgw.json.v1"])
    assert len(names(23)) == 127 and len(names(22)) == 126
    cases = (
        ({"Sec-WebSocket-Protocol": "7, chatgw.json.v1"},
         f"malformed Sec-WebSocket-Protocol header; {SUPPORTED}\n"),
        ({"Sec-WebSocket-Protocol": names(23)},
         f"Sec-WebSocket-Protocol header too long (at most 126 bytes); {SUPPORTED}\n"),
        ({"Sec-WebSocket-Protocol": "x" * 63 + ", chatgw.json.v1"},
         f"subprotocol name too long (at most 62 bytes); {SUPPORTED}\n"),
        ({"Sec-WebSocket-Key": None}, "missing Sec-WebSocket-Key header\n"),
        ({"Connection": "keep-alive"}, "the Connection header must list upgrade\n"),
    )
    for change, text in cases:
        h = {k: v for k, v in {**WS_HEADERS, **change}.items() if v is not None}
        status, _, body, closed = raw_handshake(gw, h)
        assert re.fullmatch(r"HTTP/1\.[01] 400 Bad Request", status), (change, status, body)
        assert body == text and closed, (change, body)
    for offered in (names(22), "x" * 62 + ", chatgw.json.v1"):
        status, hd, _, _ = raw_handshake(gw, {**WS_HEADERS, "Sec-WebSocket-Protocol": offered})
        assert status == "HTTP/1.1 101 Switching Protocols", (offered, status)
        assert hd["sec-websocket-protocol"] == "chatgw.json.v1", hd
    d = doc()
    assert "refused with HTTP 400" in d


def test_refusal_order_and_plain_requests_to_the_websocket_paths(procs):
    """The path (404) and the Origin and Host checks (403) come before the subprotocol; a plain
    request to a WebSocket path is a 404 like any unknown page (400 with a bad Host)."""
    gw = procs.gateway({"CHATGW_ALLOWED_ORIGINS": "https://shop.example",
                        "CHATGW_ALLOWED_HOSTS": "127.0.0.1"})
    bad = {**WS_HEADERS, "Sec-WebSocket-Protocol": "chatgw.xml.v1"}
    status, _, body, _ = raw_handshake(gw, bad, path="/ws/nope")
    assert " 404 " in status and body == "unknown WebSocket path\n", (status, body)
    status, _, body, _ = raw_handshake(gw, {**bad, "Origin": "https://evil.example"})
    assert " 403 " in status and body == "Origin not allowed (allowed_origins)\n", (status, body)
    status, _, _, _ = raw_handshake(gw, {**WS_HEADERS, "Origin": "https://shop.example",
                                         "Sec-WebSocket-Protocol": "chatgw.json.v1"})
    assert status == "HTTP/1.1 101 Switching Protocols", status
    status, _, body = request(gw, "/ws/customer")
    assert status == 404 and body == "not found\n", (status, body)
    status, _, body = request(gw, "/ws/customer", host="evil.example")
    assert status == 400 and "Host not allowed" in body, (status, body)


def test_an_upgrade_to_another_protocol_gets_403_also_on_a_kept_alive_connection(procs):
    """An Upgrade other than websocket gets libwebsockets' 403 and the connection ends, on a fresh
    connection and on one that served a request before. The second is the path of
    CVE-2025-11677 in lws 4.1.6: lws frees the request's headers, then hands the upgrade callback
    a pointer into them and, when it returns 0, reads it itself (the gateway's ASan build reported
    a heap-use-after-free there before it handled HTTP_CONFIRM_UPGRADE; see upgrade.c). The
    gateway keeps serving."""
    gw = procs.gateway()
    healthz = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n".encode()
    for before in (b"", healthz):
        status, _, body, closed = raw_handshake(gw, {**WS_HEADERS, "Upgrade": "foo"},
                                                before=before)
        assert " 403 " in status and closed, (before, status, body)
    status, _, body = request(gw, "/healthz")
    assert status == 200 and '"status":"ok"' in body, (status, body)


# ---- item: survey text and its exceptions ---------------------------------------------------------

def test_the_documented_survey_text_is_the_shipped_one_and_exceptions_are_listed():
    with open(os.path.join(ROOT, "config", "chatgw.ini"), encoding="utf-8") as f:
        ini = f.read()
    en = re.search(r"\[templates en\][^\[]*?\nsurvey = (.*)", ini).group(1).strip()
    d = doc()
    assert f'"text":"{en}"' in d, en
    for words in ("`no_survey_resolutions`", "`abandoned`", "`survey_window_s` is 0"):
        assert words in d, words


# ---- item: the first queue snapshot has ts -------------------------------------------------------

def test_every_queue_snapshot_has_ts_the_first_too(procs, redis_srv, tmp_path):
    """Without any router (no stored snapshot yet) the gateway's empty snapshot has ts too, older
    than any snapshot a router makes; a router's snapshot then follows."""
    gw = desk(procs, tmp_path, router=False)
    r = redis_srv.r

    async def scenario():
        a = await agent(gw, procs.agent_token("alice", "Alice", skills=("general",), cap=1))
        first = await a.expect_type("queue", queue="general")
        assert first.get("ts") == 1 and "items" not in first, first
    run(scenario())
    procs.router({"CHATGW_CONFIG": str(tmp_path / "proto.ini"), "CHATGW_BLOCK_MS": 200})

    async def scenario2():
        a = await online(gw, procs, r)
        snaps = []
        while not any(s.get("ts", 0) > 1 for s in snaps):
            snaps.append(await a.expect_type("queue", queue="general"))
        assert all("ts" in s for s in snaps), snaps
        assert [s["ts"] for s in snaps] == sorted(s["ts"] for s in snaps), snaps
    run(scenario2())
    assert "`ts` 1" in doc()


# ---- item: chatgw-token --bridge mints a usable token --------------------------------------------

def test_chatgw_token_bridge_mints_a_token_a_bridge_connects_with(procs):
    out = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--bridge", "wx-1"],
                         capture_output=True, check=True, env={"PATH": os.environ["PATH"]})
    token = out.stdout.decode().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token), token
    assert "bridge_token" in out.stderr.decode()
    again = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--bridge", "wx-1"],
                           capture_output=True, check=True, env={"PATH": os.environ["PATH"]})
    assert again.stdout.decode().strip() != token  # random each time
    bad = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--bridge", "wx-1", "--ttl", "60"],
                         capture_output=True, env={"PATH": os.environ["PATH"]})
    assert bad.returncode == 2 and b"--bridge" in bad.stderr, bad
    gw = procs.gateway({"CHATGW_BRIDGE_TOKEN": token})

    async def scenario():
        b = await Client.connect(gw.ws, "/ws/bridge")
        w = await b.hello(token=token, channel="wechat", sender_name="wx-1")
        assert w["type"] == "welcome" and w["sender_id"] == "bridge:wx-1", w
    run(scenario())


# ---- item: the tokens' default lifetimes ---------------------------------------------------------

def test_token_default_lifetimes_are_the_documented_ones(procs):
    gw = procs.gateway()

    async def scenario():
        c = await customer(gw)
        cl = claims(c.welcome["token"])
        assert cl["exp"] - cl["iat"] == 2592000, cl
    run(scenario())
    tok = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--agent", "bob"], check=True,
                         capture_output=True, env=procs._env({})).stdout.decode().strip()
    cl = claims(tok)
    assert cl["exp"] - cl["iat"] == 86400, cl
    d = doc()
    assert "`customer_token_ttl` (30 days by default)" in d
    assert "`chatgw-token` mints agent tokens for 1 day (`--ttl`)" in d
    with open(os.path.join(ROOT, "docs", "configuration.md"), encoding="utf-8") as f:
        cfg = " ".join(f.read().split())
    assert "1 day (86400) by default, at most `token_max_ttl`" in cfg
    assert "`customer_token_ttl` (30 days by default)" in cfg


# ---- item: the close default ----------------------------------------------------------------------

def test_an_agent_close_needs_a_code_and_the_console_preselects_the_first(procs, redis_srv,
                                                                        tmp_path):
    """There is no default resolution on the wire (an agent's close without code is refused); the
    console preselects the first of the configured resolutions, as both documents say."""
    gw = desk(procs, tmp_path)
    r = redis_srv.r

    async def scenario():
        a = await online(gw, procs, r)
        c = await customer(gw)
        conv = (await c.say("hello"))["conv"]
        await a.expect(lambda f: f.get("type") == "assigned" and f.get("seq"))
        cmid = new_cmid()
        await a.send({"type": "close", "cmid": cmid, "conv": conv})
        err = await a.expect(lambda f: f.get("cmid") == cmid, what="the refusal")
        assert err["type"] == "error" and err["code"] == "missing_field", err
        assert "'code'" in err["text"], err
        assert conv_hash(r, conv)["state"] == "assigned"
    run(scenario())
    assert "there is no default resolution on the wire" in doc()
    with open(os.path.join(ROOT, "docs", "configuration.md"), encoding="utf-8") as f:
        assert "preselects the first of `resolutions`" in " ".join(f.read().split())
    with open(os.path.join(ROOT, "gateway", "www", "agent.js"), encoding="utf-8") as f:
        js = f.read()
    assert "desk.resolutions.length ? desk.resolutions.slice()" in js


def test_a_cmid_resent_after_a_close_keeps_the_customer_in_its_current_conversation(
        procs, redis_srv, tmp_path):
    """A cmid of a closed conversation re-sent from the next one is a duplicate: acked with the
    original id, seq and conv, and the customer's session stays in its current conversation (it
    used to move back to the closed one, so that the next message opened a third conversation
    and left the second waiting)."""
    gw = desk(procs, tmp_path)

    async def scenario():
        c = await customer(gw)
        a1 = await c.say("first", cmid="x-1")
        await c.send({"type": "close", "cmid": new_cmid()})
        await c.expect_type("closed", conv=a1["conv"])
        a2 = await c.say("second")
        assert a2["conv"] != a1["conv"]
        again = await c.say("first", cmid="x-1")
        assert (again["id"], again["seq"], again["conv"]) == (a1["id"], a1["seq"], a1["conv"])
        a3 = await c.say("third")
        assert a3["conv"] == a2["conv"], (a2, a3)
        c2 = await customer(gw, token=c.welcome["token"])
        assert c2.welcome["conv"] == a2["conv"]
    run(scenario())
    assert "the customer's current conversation does not change" in doc()
