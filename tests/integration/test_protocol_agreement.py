"""docs/protocol.md and the gateway agree (issue 11 section 6): each test runs one statement of the
protocol document against the real binaries (redis-server, gateway, router, chatgw-token) and
fails when either side drifts. The item of the issue each one pins is named in its docstring."""
import base64
import http.client
import json
import os
import re
import subprocess

import pytest

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


def test_an_unknown_subprotocol_is_closed_without_a_status_as_documented(procs):
    """The one refusal without an HTTP status (libwebsockets decides it before the gateway's
    callbacks run; see the report of issue 11 section 6): when it gets a status, change the
    document and this test together."""
    gw = procs.gateway()
    h = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "chatgw.xml.v1"}
    with pytest.raises(http.client.RemoteDisconnected):
        request(gw, "/ws/customer", headers=h)
    h["Sec-WebSocket-Protocol"] = "chatgw.xml.v1, chatgw.json.v1"
    status, hd, _ = request(gw, "/ws/customer", headers=h)
    assert status == 101 and hd["sec-websocket-protocol"] == "chatgw.json.v1", (status, hd)
    assert "the one refusal without an HTTP status" in doc()


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
