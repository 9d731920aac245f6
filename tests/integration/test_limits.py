"""Per-source limits (issue 12 item 6): open connections per client address (429
too_many_connections), new conversations per address and per customer (limit_reached),
fragmented messages that never finish (closed 1008), malformed frames that take rate-limit
tokens, and the counters of all of them at /metrics."""
import asyncio
import http.client
import re
import urllib.request

import websockets

from chat import Client, customer
from conftest import METRICS_TOKEN, InjectedClock, wait_until
from desk import run


def request(gw, path="/healthz", headers=None):
    """(status, body) of one HTTP request on its own connection."""
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def upgrade(gw, headers=None):
    """A WebSocket upgrade by hand (http.client reads a refusal): (status, body)."""
    h = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "chatgw.json.v1"}
    h.update(headers or {})
    return request(gw, "/ws/customer", h)


def metric(gw, name, **labels):
    """The sum of the samples `name{...}` at /metrics that carry labels (0 when none)."""
    req = urllib.request.Request(gw.base + "/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    body = urllib.request.urlopen(req, timeout=5).read().decode()
    total = 0.0
    for lab, v in re.findall(r"^" + re.escape(name) + r"(\{[^}]*\})? (\S+)$", body, re.M):
        if all(f'{k}="{x}"' in lab for k, x in labels.items()):
            total += float(v)
    return total


async def connect_when_free(gw, timeout=5.0):
    """A customer connection as soon as the gateway has a slot for it (polling: a refused
    handshake is answered 429 at once)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            return await Client.connect(gw.ws, "/ws/customer")
        except (websockets.exceptions.InvalidStatusCode, websockets.exceptions.InvalidMessage):
            if loop.time() > end:
                raise AssertionError("no connection slot freed")
            await asyncio.sleep(0.05)


def test_connections_per_address_are_limited(procs):
    gw = procs.gateway({"CHATGW_MAX_CONNS_PER_IP": 3})

    async def scenario():
        held = [await Client.connect(gw.ws, "/ws/customer") for _ in range(3)]
        # the fourth, WebSocket or HTTP, is refused at the handshake with a clear code
        status, body = upgrade(gw)
        assert status == 429 and "too_many_connections" in body, (status, body)
        status, body = request(gw)
        assert status == 429 and "too_many_connections" in body, (status, body)
        # a connection that ends gives its place back (once the gateway has seen it end: the
        # probe's own HTTP connection holds a slot too until the gateway has closed it)
        await held.pop().close()
        held.append(await connect_when_free(gw))
        for c in held:
            await c.close()

    run(scenario())
    # (/metrics is a connection too: read once the others are closed)
    wait_until(lambda: request(gw)[0] == 200, 5, "slots free again")
    assert metric(gw, "chatgw_gateway_connections_refused_total") == 2


def test_forwarded_for_counts_only_behind_trusted_proxies(procs):
    gw = procs.gateway({"CHATGW_MAX_CONNS_PER_IP": 2, "CHATGW_TRUSTED_PROXIES": "127.0.0.1"})

    async def scenario():
        a = {"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}
        held = [await Client.connect(gw.ws, "/ws/customer", extra_headers=a) for _ in range(2)]
        status, body = upgrade(gw, a)
        assert status == 429 and "too_many_connections" in body, (status, body)
        # another client behind the same proxy has its own budget (the forged left part of
        # the header does not matter, only the hop the proxy saw)
        held.append(await Client.connect(gw.ws, "/ws/customer",
                                         extra_headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.2"}))
        for c in held:
            await c.close()

    run(scenario())


def test_malformed_frames_take_rate_limit_tokens(procs, tmp_path):
    clock = InjectedClock(tmp_path)  # frozen: no token comes back during the test
    gw = procs.gateway({"CHATGW_RATE_MSGS": 1, "CHATGW_RATE_BURST": 3, **clock.env})

    async def scenario():
        c = await Client.connect(gw.ws, "/ws/customer")
        for _ in range(3):
            await c.send_raw("{not json")
            await c.expect(lambda f: f.get("code") == "bad_json", what="bad_json")
        # a flood of garbage is refused like a flood of valid frames, and after 10 x rate_burst
        # refusals in a row the connection is closed (one frame at a time: the close comes
        # after the 31st answer, with nothing unread that would turn it into a reset)
        for i in range(31):
            await c.send_raw("{not json" if i % 2 else "\x00garbage")
            f = await c.expect_type("error")
            assert f["code"] == "rate_limited" and f["retry"] is True, f
        closed = await c.expect_closed()
        assert (closed.code, closed.reason) == (1008, "flood")

    run(scenario())
    assert metric(gw, "chatgw_gateway_frames_malformed_total") == 3
    assert metric(gw, "chatgw_gateway_frames_rate_limited_total") == 31


def test_unfinished_fragmented_message_is_closed(procs):
    gw = procs.gateway({"CHATGW_FRAME_TIMEOUT_MS": 300})

    async def scenario():
        other = await customer(gw)
        c = await customer(gw)
        never = asyncio.Event()

        async def fragments():
            yield '{"type":"text","cmid":"frag-1",'
            await never.wait()  # the rest never comes
            yield '"text":"x"}'

        sender = asyncio.ensure_future(c.ws.send(fragments()))
        closed = await c.expect_closed(timeout=10)
        assert (closed.code, closed.reason) == (1008, "message not finished in time")
        never.set()
        sender.cancel()
        # a message sent in fragments that finish in time is taken
        async def whole():
            yield '{"type":"text","cmid":"frag-2",'
            yield '"text":"in two parts"}'
        await other.ws.send(whole())
        ack = await other.expect(lambda f: f.get("cmid") == "frag-2", what="ack")
        assert ack["type"] == "ack", ack
        assert (await other.say("still here"))["type"] == "ack"
        await other.close()

    run(scenario())
    assert metric(gw, "chatgw_gateway_frame_timeouts_total") == 1


def test_new_conversations_per_address(procs):
    gw = procs.gateway({"CHATGW_CONV_PER_IP": 2, "CHATGW_CONV_PER_CUSTOMER": 0,
                        "CHATGW_TRUSTED_PROXIES": "127.0.0.1"})

    async def scenario():
        convs = set()
        for i in range(2):
            c = await customer(gw)
            ack = await c.say(f"hello {i}")
            assert ack["type"] == "ack", ack
            convs.add(ack["conv"])
            # more messages into an open conversation are not new conversations
            assert (await c.say("and more"))["type"] == "ack"
            await c.close()
        assert len(convs) == 2
        c = await customer(gw)
        f = await c.say("a third new customer from the same address")
        assert f["type"] == "error" and f["code"] == "limit_reached", f
        assert "conv_per_ip" in f["text"]
        await c.close()
        # another address (behind the trusted proxy) is not affected
        d = await Client.connect(gw.ws, "/ws/customer",
                                 extra_headers={"X-Forwarded-For": "198.51.100.7"})
        await d.hello()
        assert (await d.say("hi"))["type"] == "ack"
        await d.close()

    run(scenario())
    assert metric(gw, "chatgw_gateway_conversations_refused_total", limit="conv_per_ip") == 1


def test_new_conversations_per_customer(procs, redis_srv):
    gw = procs.gateway({"CHATGW_CONV_PER_CUSTOMER": 2, "CHATGW_CONV_PER_IP": 0})
    procs.router({"CHATGW_BLOCK_MS": 200})

    async def scenario():
        c = await customer(gw)
        token = c.welcome["token"]
        for i in range(2):
            ack = await c.say(f"conversation {i}")
            assert ack["type"] == "ack", ack
            await c.send({"type": "close", "cmid": f"end-{i}"})
            await c.expect_type("closed", conv=ack["conv"])
        f = await c.say("a third one")
        assert f["type"] == "error" and f["code"] == "limit_reached", f
        assert "conv_per_customer" in f["text"]
        await c.close()
        # a new session of the same customer (its token) knows the count from Redis
        c = await customer(gw, token=token)
        f = await c.say("again")
        assert f["type"] == "error" and f["code"] == "limit_reached", f
        await c.close()
        # the window is in Redis: when it ends the customer may open one again
        redis_srv.r.delete(f"cg:{{t:default}}:lim:conv:{c.welcome['sender_id']}")
        c = await customer(gw, token=token)
        assert (await c.say("after the window"))["type"] == "ack"
        await c.close()

    run(scenario())
    assert metric(gw, "chatgw_gateway_conversations_refused_total",
                  limit="conv_per_customer") == 2


def test_customer_at_the_limit_keeps_writing_to_an_open_conversation(procs):
    """The limit refuses only what opens a conversation: a second tab (or a reconnect) of a
    customer at its limit still writes into the open one; once another tab ends it, this tab's
    next message would open one and is refused."""
    gw = procs.gateway({"CHATGW_CONV_PER_CUSTOMER": 1, "CHATGW_CONV_PER_IP": 0})
    procs.router({"CHATGW_BLOCK_MS": 200})

    async def scenario():
        a = await customer(gw)
        conv = (await a.say("first tab"))["conv"]
        b = await customer(gw, token=a.welcome["token"])
        ack = await b.say("second tab, same conversation")
        assert ack["type"] == "ack" and ack["conv"] == conv, ack
        await a.send({"type": "close", "cmid": "end-a"})
        await b.expect_type("closed", conv=conv)  # b learns it from the conversation
        f = await b.say("this would open a second one")
        assert f["type"] == "error" and f["code"] == "limit_reached", f
        for x in (a, b):
            await x.close()

    run(scenario())


def test_connections_count_from_accept_and_floods_are_closed_there(procs):
    """A connection counts against its address from its accept (a request head that never ends
    holds a slot too); at twice max_conns_per_ip open, further connections from the address
    are closed at accept, without an answer (a 429 costs a header buffer and a parse)."""
    import socket
    gw = procs.gateway({"CHATGW_MAX_CONNS_PER_IP": 3, "CHATGW_LOG_LEVEL": "info"})
    heads = []
    try:
        for _ in range(3):  # request heads that never end
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            heads.append(s)
        status, body = request(gw)  # the 4th connection's request
        assert status == 429 and "too_many_connections" in body, (status, body)
        for _ in range(3):  # 6 = 2 x 3 open: from now on closed at accept
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            heads.append(s)
        wait_until(lambda: status_or_none(gw) is None, what="a connection closed at accept")
    finally:
        for s in heads:
            s.close()
    # the slots come back when the connections end
    wait_until(lambda: status_or_none(gw) == 200, what="a slot freed")


def status_or_none(gw):
    """A request's status, or None when the connection was closed without an answer."""
    try:
        return request(gw)[0]
    except (ConnectionError, http.client.HTTPException, OSError):
        return None
