"""Idempotency by sender + client message id (issue 10, item 5), at the level of the Redis
functions against a bare redis-server (the libraries as the binaries carry them; times are
arguments, nothing waits): a retried first message yields one conversation, also after the last
chat closed and through another gateway; a re-send after a close is a duplicate; an agent's cmid
equal to a customer's is not; the desk's own cmids stay per conversation."""
import uuid

import msgpack

from conftest import load_libraries, wait_until
from desk import conv_hash, log_of, s, store

NOW = 1_800_000_000_000  # an injected clock: every call gets its time


def new_id():
    return uuid.uuid4().hex


def append(r, role, sender, cmid, text, conv="", newconv=None, now=NOW, mode="log"):
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": cmid, "channel": "web",
         "dir": "in" if role == "customer" else "out", "role": role, "sender_id": sender,
         "ts": now, "text": text}
    res = store(r, conv, cmid, role, sender, msgpack.packb(m),
                  newconv if newconv is not None else new_id(), "web", now, mode, text[:160])
    return s(res[0]), res[1], res[2]


def assign_and_close(r, conv, agent="amy", now=NOW):
    """Queue conv, let an agent take it, close it (the route functions, as the router calls
    them)."""
    r.fcall("cg_presence", 1, "cg:{t:default}", agent, f"gw1:{agent}", 1, agent, 1, "general", now)
    r.fcall("cg_enqueue", 1, "cg:{t:default}", conv, "general", 5, now)
    assert conv_hash(r, conv)["agent"] == agent
    r.fcall("cg_close", 1, "cg:{t:default}", conv, agent, "resolved", now + 1000)
    assert conv_hash(r, conv)["state"] == "closed"


def convs_of(r, customer):
    return {s(k).split(":")[4] for k in r.scan_iter("cg:{t:default}:conv:*")
            if not s(k).endswith(":log") and s(r.hget(k, "customer")) == customer}


def test_retried_first_message_opens_one_conversation(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    c1, seq, dup = append(r, "customer", "cu1", "m1", "hello")
    # the same frame again before its ack, through another gateway (another newconv id)
    c1b, seq_b, dup_b = append(r, "customer", "cu1", "m1", "hello", newconv=new_id())
    assert (c1b, seq_b, dup_b) == (c1, seq, 1) and dup == 0
    assert convs_of(r, "cu1") == {c1}


def test_first_message_after_a_closed_chat_retried_elsewhere_is_one(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    c1, _, _ = append(r, "customer", "cu2", "a1", "first chat")
    assign_and_close(r, c1)
    # the returning customer's first message opens a new conversation ...
    c2, seq, dup = append(r, "customer", "cu2", "b1", "second chat", newconv=new_id())
    assert c2 != c1 and (seq, dup) == (1, 0)
    # ... and its retry through another connection finds it: that connection's session still
    # names the closed conversation (its hello came before), and its gateway mints another newconv
    again = append(r, "customer", "cu2", "b1", "second chat", conv=c1, newconv=new_id())
    assert again == (c2, 1, 1)
    assert convs_of(r, "cu2") == {c1, c2}
    assert [m["text"] for m in log_of(r, c2)] == ["second chat"]


def test_a_resend_after_close_is_a_duplicate(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    c1, seq, _ = append(r, "customer", "cu3", "x1", "where is my parcel?")
    assign_and_close(r, c1)
    assert append(r, "customer", "cu3", "x1", "where is my parcel?", newconv=new_id()) == (c1, seq, 1)
    assert convs_of(r, "cu3") == {c1}


def test_a_message_in_the_conversation_it_named_remembers_only_its_number(redis_srv):
    """The idempotency key of a message stored where it named holds its number alone (33 AOF
    bytes fewer per message); one that opened or found its conversation holds conv:seq."""
    r = redis_srv.r
    load_libraries(r)
    key = "cg:{t:default}:idem:customer:cu8:"
    c1, _, _ = append(r, "customer", "cu8", "n1", "hello")  # named none: opened c1
    assert s(r.get(key + "n1")) == f"{c1}:1"
    _, seq, _ = append(r, "customer", "cu8", "n2", "more", conv=c1)
    assert s(r.get(key + "n2")) == str(seq)
    assert append(r, "customer", "cu8", "n2", "more", conv=c1) == (c1, seq, 1)
    assert append(r, "customer", "cu8", "n2", "more") == (c1, seq, 1)  # found by the customer
    # a key as the previous library wrote it (conv:seq) is still understood
    r.set(key + "old", f"{c1}:{seq}")
    assert append(r, "customer", "cu8", "old", "more", conv=c1) == (c1, seq, 1)


def test_a_retry_through_a_session_that_names_a_newer_conversation_finds_the_first(redis_srv):
    """A message stored in the conversation it named, that conversation closed, the customer
    opened another, then the first message's retry comes through a session that names the new
    one (or none): the answer is the first conversation and number, nothing is stored again."""
    r = redis_srv.r
    load_libraries(r)
    c1, _, _ = append(r, "customer", "cu9", "q0", "first")
    _, seq, _ = append(r, "customer", "cu9", "q1", "where is my parcel?", conv=c1)
    assign_and_close(r, c1)
    c2, _, _ = append(r, "customer", "cu9", "q2", "hello again", conv=c1, newconv=new_id())
    assert c2 != c1
    assert append(r, "customer", "cu9", "q1", "where is my parcel?", conv=c2) == (c1, seq, 1)
    assert append(r, "customer", "cu9", "q1", "where is my parcel?") == (c1, seq, 1)
    assert [m["text"] for m in log_of(r, c2)] == ["hello again"]
    assert convs_of(r, "cu9") == {c1, c2}


def test_an_agent_cmid_equal_to_the_customers_is_not_a_duplicate(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv, _, _ = append(r, "customer", "cu4", "same", "hi")
    r.fcall("cg_presence", 1, "cg:{t:default}", "bob", "gw1:bob", 1, "bob", 1, "general", NOW)
    r.fcall("cg_enqueue", 1, "cg:{t:default}", conv, "general", 5, NOW)
    got = append(r, "agent", "bob", "same", "hello, how can I help?", conv=conv)
    assert got[2] == 0 and got[1] > 1
    assert [m["text"] for m in log_of(r, conv)][-1] == "hello, how can I help?"
    # and the agent's own retry is a duplicate
    assert append(r, "agent", "bob", "same", "hello, how can I help?", conv=conv) == (conv, got[1], 1)


def test_desk_cmids_are_per_conversation(redis_srv):
    """The router's deterministic cmids (cg:greet ...) repeat across conversations."""
    r = redis_srv.r
    load_libraries(r)
    a, _, _ = append(r, "customer", "cu5", "p", "one")
    b, _, _ = append(r, "customer", "cu6", "p", "two")
    assert a != b  # the same cmid from two customers: two messages
    ga = append(r, "bot", "chatgw", "cg:greet", "Hello!", conv=a, mode="sys")
    gb = append(r, "bot", "chatgw", "cg:greet", "Hello!", conv=b, mode="sys")
    assert ga[2] == 0 and gb[2] == 0
    assert append(r, "bot", "chatgw", "cg:greet", "Hello!", conv=a, mode="sys") == (a, ga[1], 1)


def test_idempotency_memory_is_bounded(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv, _, _ = append(r, "customer", "cu7", "t1", "hi")
    append(r, "bot", "chatgw", "cg:greet", "Hello!", conv=conv, mode="sys")
    keys = [s(k) for k in r.scan_iter("cg:{t:default}:idem:*")]
    assert sorted(keys) == sorted(["cg:{t:default}:idem:customer:cu7:t1", f"cg:{{t:default}}:idem:{conv}:cg:greet"])
    for k in keys:
        assert 0 < r.ttl(k) <= 86400


def test_the_idempotency_ttl_is_configurable(redis_srv, procs, tmp_path):
    """[router] idempotency_ttl_s, published with the desk's timings: a busy desk may keep message
    ids for less than the default day (their memory is ~230 B each for that long)."""
    r = redis_srv.r
    path = tmp_path / "ttl.ini"
    path.write_text("[router]\nidempotency_ttl_s = 600\n", encoding="utf-8")
    procs.router({"CHATGW_CONFIG": str(path)})
    wait_until(lambda: r.hget("cg:{t:default}:deskcfg", "idem_ttl_s") == b"600", 5, "published")
    append(r, "customer", "cu8", "t8", "hi")
    assert 0 < r.ttl("cg:{t:default}:idem:customer:cu8:t8") <= 600


# ---- the End-chat crash window ------------------------------------------------------------------

def test_end_chat_processed_again_answers_again(redis_srv):
    """cg_customer_close is the first step of ending a chat; a router that dies after it and before
    telling both sides has its entry processed again: the second call answers as the first (no
    new assignments), so the rest is done then."""
    r = redis_srv.r
    load_libraries(r)
    waiting, _, _ = append(r, "customer", "cw1", "w1", "anyone?")
    r.fcall("cg_enqueue", 1, "cg:{t:default}", waiting, "general", 5, NOW)
    first = r.fcall("cg_customer_close", 1, "cg:{t:default}", waiting, "cw1", NOW + 1)
    again = r.fcall("cg_customer_close", 1, "cg:{t:default}", waiting, "cw1", NOW + 2)
    assert [s(x) for x in first] == [s(x) for x in again] == ["abandoned", "web", "", "general"]

    assigned, _, _ = append(r, "customer", "cw2", "w2", "hello")
    r.fcall("cg_presence", 1, "cg:{t:default}", "amy", "gw1:amy", 1, "amy", 1, "general", NOW)
    r.fcall("cg_enqueue", 1, "cg:{t:default}", assigned, "general", 5, NOW)
    first = r.fcall("cg_customer_close", 1, "cg:{t:default}", assigned, "cw2", NOW + 1)
    again = r.fcall("cg_customer_close", 1, "cg:{t:default}", assigned, "cw2", NOW + 2)
    assert s(first[0]) == s(again[0]) == "ended" and s(again[4]) == "amy" and again[5] == []
    assert conv_hash(r, assigned)["state"] == "closed"

    # closed by its agent: the customer's End chat finds nothing to do
    other, _, _ = append(r, "customer", "cw3", "w3", "hi")
    r.fcall("cg_presence", 1, "cg:{t:default}", "bob", "gw1:bob", 1, "bob", 1, "general", NOW)
    r.fcall("cg_enqueue", 1, "cg:{t:default}", other, "general", 5, NOW)
    agent = conv_hash(r, other)["agent"]
    r.fcall("cg_close", 1, "cg:{t:default}", other, agent, "resolved", NOW + 1)
    assert [s(x) for x in r.fcall("cg_customer_close", 1, "cg:{t:default}", other, "cw3", NOW + 2)] == ["already"]


def test_end_chat_entry_redelivered_after_a_router_died_is_done_once(redis_srv, procs):
    """The End chat is one call (cg_customer_end): the close and everything the customer is told
    happen together or not at all. A router that died after the call and before XACK leaves the
    entry to be delivered again: it finds the conversation closed and writes nothing twice."""
    r = redis_srv.r
    load_libraries(r)
    conv, _, _ = append(r, "customer", "cw4", "w4", "hello")
    r.fcall("cg_presence", 1, "cg:{t:default}", "amy", "gw1:amy", 1, "amy", 1, "general", NOW)
    r.fcall("cg_enqueue", 1, "cg:{t:default}", conv, "general", 5, NOW)
    m = {"v": 1, "type": "close", "id": new_id(), "cmid": "end1", "channel": "web", "dir": "in",
         "role": "customer", "sender_id": "cw4", "conv": conv, "ts": NOW + 1,
         "code": "customer_left"}  # as the gateway sends it
    for _ in range(2):  # the entry, and the same entry delivered again
        r.xadd("cg:{t:default}:in", {"c": conv, "s": 0, "m": msgpack.packb(m)})
    procs.router()

    def both_done():
        groups = r.xinfo_groups("cg:{t:default}:in")
        last = r.xinfo_stream("cg:{t:default}:in")["last-generated-id"]
        return groups and groups[0]["last-delivered-id"] == last and not groups[0]["pending"]
    wait_until(both_done, 10, "both entries done")
    types = [e["type"] for e in log_of(r, conv)]
    assert types.count("closed") == 1 and types.count("survey") == 1, types
    assert conv_hash(r, conv)["resolution"] == "customer_left"


# ---- a first message retried during a Redis pause -----------------------------------------------

def test_first_message_retried_during_a_redis_pause_is_one_conversation(redis_srv, procs):
    """A returning customer (its last chat ended) writes again while Redis pauses: the first
    message goes out on one gateway and, unanswered, again with the same cmid through another
    gateway whose session still names the ended chat (as a client retries); once Redis is back,
    both tries are answered with the same conversation and seq: one new conversation, one
    message."""
    import asyncio
    import os
    import signal

    from chat import customer
    from desk import run
    r = redis_srv.r
    gw1, gw2 = procs.gateway(), procs.gateway()
    procs.router()

    async def send_until_acked(c, cmid, text):
        while True:
            await c.send({"type": "text", "cmid": cmid, "text": text})
            f = await c.expect(lambda f: f.get("cmid") == cmid and f.get("type") in ("ack", "error"),
                               timeout=15, what="an answer")
            if f["type"] == "ack":
                return f
            assert f["code"] == "unavailable" and f["retry"], f
            await asyncio.sleep(0.05)  # the client's retry delay, not a synchronisation

    async def scenario():
        c1 = await customer(gw1)
        first = (await c1.say("my first chat"))["conv"]
        await c1.send({"type": "close", "cmid": "end-1"})  # End chat
        await c1.expect_type("closed", conv=first)
        c2 = await customer(gw2, token=c1.welcome["token"])  # its session: the ended chat
        os.kill(redis_srv.proc.pid, signal.SIGSTOP)
        try:
            await c1.send({"type": "text", "cmid": "again-1", "text": "me again"})
            await c2.send({"type": "text", "cmid": "again-1", "text": "me again"})
        finally:
            os.kill(redis_srv.proc.pid, signal.SIGCONT)
        a1 = await send_until_acked(c1, "again-1", "me again")
        a2 = await send_until_acked(c2, "again-1", "me again")
        for c in (c1, c2):
            await c.close()
        return c1.welcome["sender_id"], first, a1, a2

    sender, first, a1, a2 = run(scenario())
    assert (a1["conv"], a1["seq"]) == (a2["conv"], a2["seq"]) and a1["conv"] != first
    assert convs_of(r, sender) == {first, a1["conv"]}
    assert [m["text"] for m in log_of(r, a1["conv"]) if m.get("role") == "customer"] == ["me again"]


def test_an_agents_closed_sockets_are_remembered_within_bounds(redis_srv):
    """cg:agent:<a>:gone remembers closed sockets so a late connect is ignored; an agent that
    reconnects all day keeps only the latest 256 (the 60-minute soak grew Redis by them)."""
    r = redis_srv.r
    load_libraries(r)
    for i in range(300):
        sock = f"gw1:{i}"
        r.fcall("cg_presence", 1, "cg:{t:default}", "amy", sock, 1, "amy", 1, "general", NOW + 2 * i)
        r.fcall("cg_presence", 1, "cg:{t:default}", "amy", sock, 0, "amy", 1, "general",
                NOW + 2 * i + 1)
    gone = "cg:{t:default}:agent:amy:gone"
    assert r.zcard(gone) == 256
    assert r.zscore(gone, "gw1:299") is not None and r.zscore(gone, "gw1:0") is None
    # a late connect of a recently closed socket is still ignored
    r.fcall("cg_presence", 1, "cg:{t:default}", "amy", "gw1:299", 1, "amy", 1, "general", NOW + 700)
    assert not r.sismember("cg:{t:default}:agent:amy:socks", "gw1:299")
