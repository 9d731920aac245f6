"""The event functions of the core (redis/event.lua), table-driven against a bare redis-server
running the library as the binaries carry it: one call per event, its arguments one msgpack map
of named fields; times are arguments (an injected clock), nothing waits.

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_core_events.py
"""
import uuid

import msgpack
import pytest
import redis

from conftest import load_libraries
from desk import conv_hash, log_of, message_map, named, s, store

NOW = 1_800_000_000_000
TENANT = "cg:{t:default}"


def new_id():
    return uuid.uuid4().hex


def customer_text(r, customer, text, now=NOW):
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": new_id(), "channel": "web", "dir": "in",
         "role": "customer", "sender_id": customer, "ts": now, "text": text}
    res = store(r, "", m["cmid"], "customer", customer, msgpack.packb(m),
                  new_id(), "web", now, "log", text)
    return s(res[0])


def greeting(text="Hello, how can we help?"):
    return msgpack.packb({"v": 1, "type": "text", "id": new_id(), "channel": "web", "dir": "out",
                          "role": "bot", "sender_id": "chatgw", "ts": NOW, "text": text})


def event(conv, **over):
    a = {"conv": conv, "now": NOW, "sender": "chatgw", "channel": "web", "queue": "general",
         "prio": 5, "category": "default", "locale": "en", "pos_ms": 30000, "sticky_ms": 0,
         "greet": greeting(), "first_due": NOW + 60_000, "next_due": NOW + 120_000}
    a.update(over)
    return {k: v for k, v in a.items() if v is not None}


def call(r, args):
    """cg_customer_msg's answer as (kind, {name: value}) (desk.named)."""
    # bytes go as msgpack str: the cmsgpack of Redis does not read the bin types
    return named(r.fcall("cg_customer_msg", 1, TENANT, msgpack.packb(args, use_bin_type=False)))


def timers(r):
    return {s(m): int(sc) for m, sc in r.zrange(f"{TENANT}:timers", 0, -1, withscores=True)}


# (what is online, what the map changes) -> (the answer's first word, its state, log entries)
CASES = [
    ("nobody online: queued", False, {}, "queued", "queued", 2),
    ("an agent free: assigned at once", True, {}, "assigned", "assigned", 2),
    ("no greeting configured", True, {"greet": ""}, "assigned", "assigned", 1),
    ("no first-response deadline", False, {"first_due": 0}, "queued", "queued", 2),
]


@pytest.mark.parametrize("name,online,over,answer,state,logged", CASES, ids=[c[0] for c in CASES])
def test_a_new_conversation_in_one_call(redis_srv, name, online, over, answer, state, logged):
    r = redis_srv.r
    load_libraries(r)
    if online:
        r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 2, "general", NOW)
    conv = customer_text(r, "cu1", "where is my parcel?")
    what, res = call(r, event(conv, **over))
    assert what == "new" and res["result"] == answer and "how" not in res, (what, res)
    h = conv_hash(r, conv)
    assert h["state"] == state and h["queue"] == "general" and h["locale"] == "en"
    assert len(log_of(r, conv)) == logged  # the customer's text, then the greeting
    if logged == 2:
        assert log_of(r, conv)[1]["text"] == "Hello, how can we help?"
    due = over.get("first_due", NOW + 60_000)
    assert timers(r).get(f"first:{conv}") == (due or None)
    if answer == "assigned":
        assert res["row"][:2] == [conv, "amy"] and h["agent"] == "amy"
    else:
        assert {k: res[k] for k in ("position", "queue_length", "held", "staffed", "free")} == \
            {"position": 1, "queue_length": 1, "held": 0, "staffed": 0, "free": 0}


def test_any_other_state_changes_nothing_and_answers_it(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = customer_text(r, "cu1", "hello")
    call(r, event(conv))
    before = (conv_hash(r, conv), len(log_of(r, conv)), timers(r))
    what, info = call(r, event(conv, queue="sales", greet=greeting("again?")))
    assert (what, info["state"], info["channel"], info["queue"], info["position"]) == \
        ("info", "queued", "web", "general", 1)
    assert (info["in_outbox"], info["row"], info["locale"], info["staffed"]) == (0, [], "en", 0)
    assert "told" not in info
    assert (conv_hash(r, conv), len(log_of(r, conv)), timers(r)) == before
    what, info = call(r, event("no-such-conversation"))
    assert (what, info["state"], info["staffed"]) == ("info", "", 1)


# the conversation's state before the call -> (the answer's kind, its state or result)
KINDS = [
    ("none", "info", ""),
    ("new", "new", "queued"),
    ("queued", "info", "queued"),
    ("assigned", "info", "assigned"),
    ("closed", "info", "closed"),
]


@pytest.mark.parametrize("before,kind,state", KINDS, ids=[k[0] for k in KINDS])
def test_the_answers_kind_follows_the_state(redis_srv, before, kind, state):
    """'new' exactly when the conversation was new (the call enqueued it: never 'already'), else
    'info' with the state it has, never 'new' (or '' when there is none): the router has no
    enqueue of its own to do (router/conv.c)."""
    r = redis_srv.r
    load_libraries(r)
    conv = "no-such-conversation" if before == "none" else customer_text(r, "cu1", "hello")
    if before in ("assigned", "closed"):
        r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 2, "general", NOW)
    if before != "none" and before != "new":
        call(r, event(conv, greet=""))
    if before == "closed":
        r.fcall("cg_close", 1, TENANT, conv, "amy", "resolved", NOW)
    assert conv_hash(r, conv).get("state", "") == ("" if before == "none" else before)
    what, res = call(r, event(conv, greet=""))
    assert (what, res.get("state") if what == "info" else res["result"]) == (kind, state), res


def test_the_same_event_twice_greets_once(redis_srv):
    """A router that died after the call and before XACK: the entry runs again and finds the
    conversation queued."""
    r = redis_srv.r
    load_libraries(r)
    conv = customer_text(r, "cu1", "hello")
    assert call(r, event(conv))[0] == "new"
    assert call(r, event(conv))[0] == "info"
    assert [m.get("text") for m in log_of(r, conv)] == ["hello", "Hello, how can we help?"]


@pytest.mark.parametrize("bad", [b"", b"\x93\x01\x02\x03", msgpack.packb({"now": NOW}),
                                 msgpack.packb({"conv": "x"}), b"not msgpack at all \xc1"])
def test_a_bad_map_is_named(redis_srv, bad):
    r = redis_srv.r
    load_libraries(r)
    with pytest.raises(redis.exceptions.ResponseError, match="BADARG a msgpack map"):
        r.fcall("cg_customer_msg", 1, TENANT, bad)


# ---- cg_announce: an assignment announced in one call --------------------------------------------

def assigned(r, conv, agent="amy", name="Amy"):
    """(event, notice) payloads as the router builds them for conv's assignment to agent."""
    ev = {"v": 1, "type": "assigned", "id": new_id(), "channel": "web", "dir": "out",
          "role": "system", "sender_id": "chatgw", "ts": NOW, "agent_id": agent,
          "agent_name": name, "queue": "general", "text": f"{name} has joined"}
    notice = dict(ev, conv=conv, cmid="cg:asg:1")
    return msgpack.packb(ev), msgpack.packb(notice)


def announce(r, conv, **over):
    ev, notice = assigned(r, conv)
    a = {"conv": conv, "agent": "amy", "assign_no": 1, "now": NOW, "channel": "web",
         "event": ev, "notice": notice, "offer_due": NOW + 30_000, "idle_due": NOW + 600_000}
    a.update(over)
    return r.fcall("cg_announce", 1, TENANT, msgpack.packb(a, use_bin_type=False))


def test_an_assignment_is_announced_in_one_call(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 2, "general", NOW)
    conv = customer_text(r, "cu1", "hello")
    what, res = call(r, event(conv, greet=""))
    assert res["result"] == "assigned" and r.sismember(f"{TENANT}:outbox:assign", conv)
    sub = r.pubsub()
    sub.subscribe(f"{TENANT}:a:amy")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert named(announce(r, conv)) == ("announced", {"seq": 2})  # after the customer's text
    assert [m["type"] for m in log_of(r, conv)] == ["text", "assigned"]
    got = sub.get_message(timeout=5)
    assert got and got["data"][:8] == b"\0" * 8
    notice = msgpack.unpackb(got["data"][8:], raw=False)
    assert (notice["type"], notice["conv"], notice["cmid"]) == ("assigned", conv, "cg:asg:1")
    assert not r.sismember(f"{TENANT}:outbox:assign", conv)
    assert timers(r)[f"offer:{conv}"] == NOW + 30_000 and conv_hash(r, conv)["offer_no"] == "1"
    assert timers(r)[f"idle:{conv}"] == NOW + 600_000
    # announced again (a router that died before its XACK): the log keeps one event
    assert named(announce(r, conv))[0] == "announced"
    assert [m["type"] for m in log_of(r, conv)] == ["text", "assigned"]
    sub.close()


@pytest.mark.parametrize("over", [{"assign_no": 2}, {"agent": "bob"}], ids=["older", "other"])
def test_a_stale_assignment_is_not_announced(redis_srv, over):
    r = redis_srv.r
    load_libraries(r)
    r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 2, "general", NOW)
    conv = customer_text(r, "cu1", "hello")
    call(r, event(conv, greet=""))
    assert named(announce(r, conv, offer_due=0, **over)) == ("stale", {})
    assert [m["type"] for m in log_of(r, conv)] == ["text"]
    assert f"offer:{conv}" not in timers(r) and f"idle:{conv}" not in timers(r)
    assert not r.sismember(f"{TENANT}:outbox:assign", conv)


def test_a_bad_announcement_is_named(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    with pytest.raises(redis.exceptions.ResponseError, match="BADARG a msgpack map with conv"):
        r.fcall("cg_announce", 1, TENANT, msgpack.packb({"conv": "x", "agent": "amy"}))


def test_a_conversation_assigned_at_once_is_announced_in_the_same_call(redis_srv):
    """With the `assigned` msg in the map, cg_customer_msg announces the assignment it made
    itself (cg_announce's work: the event with the agent's name, its notice, the outbox, the offer
    and idle timers): a new conversation is one router call."""
    r = redis_srv.r
    load_libraries(r)
    r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy Wu", 2, "general", NOW)
    conv = customer_text(r, "cu1", "hello")
    sub = r.pubsub()
    sub.subscribe(f"{TENANT}:a:amy")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    ev = msgpack.packb({"v": 1, "type": "assigned", "id": new_id(), "dir": "out", "role": "system",
                        "sender_id": "chatgw", "ts": NOW, "text": "{name} has joined"})
    what, res = call(r, event(conv, greet="", assigned=ev, offer_ms=30_000, idle_ms=600_000))
    assert (what, res["result"], res["how"]) == ("new", "assigned", "announced")
    [a] = [m for m in log_of(r, conv) if m["type"] == "assigned"]
    assert (a["agent_id"], a["agent_name"], a["queue"], a["text"]) == \
        ("amy", "Amy Wu", "general", "Amy Wu has joined")
    got = sub.get_message(timeout=5)
    notice = msgpack.unpackb(got["data"][8:], raw=False)
    assert (notice["type"], notice["conv"], notice["cmid"], notice["channel"]) == \
        ("assigned", conv, "cg:asg:1", "web")
    assert not r.sismember(f"{TENANT}:outbox:assign", conv)
    assert timers(r)[f"offer:{conv}"] == NOW + 30_000 and timers(r)[f"idle:{conv}"] == NOW + 600_000
    sub.close()


def bot(text):
    return msgpack.packb({"v": 1, "type": "text", "id": new_id(), "dir": "out", "role": "bot",
                          "sender_id": "chatgw", "ts": NOW, "text": text})


def waiting(**over):
    """The waiting-reply fields of the map (router/conv.c conv_waiting_fields), one locale."""
    a = {"wait_cmid": "cg:pos:1-1", "avg_handle_ms": 120_000, "locales": {"=en": 2, "~en": 2},
         "queued": [bot("Q {position} {wait}")] * 2, "no_agent": [bot("NOBODY")] * 2,
         "dur_min": ["min", "min"], "dur_hour": ["h", "h"]}
    a.update(over)
    return a


# (who is online, the map's extra fields) -> the waiting reply the call writes itself
WAITS = [
    ("a busy agent: place and wait", "busy", {}, "Q 1 2 min", 1, 120),
    ("nobody online: honest reply", None, {}, "NOBODY", None, None),
    ("off hours (held queue; a free agent: no wait)", "closed",
     {"off_hours": [bot("OFF at 09:00")] * 2}, "OFF at 09:00", 1, 0),
]


@pytest.mark.parametrize("name,who,over,text,position,wait", WAITS, ids=[w[0] for w in WAITS])
def test_a_waiting_conversation_is_told_in_the_same_call(redis_srv, name, who, over, text,
                                                         position, wait):
    r = redis_srv.r
    load_libraries(r)
    if who == "busy":  # online, cap 1, with a conversation already
        r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 1, "general", NOW)
        call(r, event(customer_text(r, "cu0", "first"), greet=""))
    if who == "closed":
        r.sadd(f"{TENANT}:closed", "general")
        r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 1, "general", NOW)
    conv = customer_text(r, "cu1", "hello")
    what, res = call(r, event(conv, greet="", **waiting(**over)))
    assert (what, res["result"], res["how"]) == ("new", "queued", "told"), res
    [m] = [m for m in log_of(r, conv) if m.get("role") == "bot"]
    assert (m["text"], m.get("position"), m.get("wait"), m["queue"]) == (text, position, wait,
                                                                         "general")


def test_a_waiting_customers_next_message_is_answered_in_the_same_call(redis_srv):
    """Another message while the conversation waits: its timers and the waiting reply again in
    the one call; a message classified into another queue, with neither the desk's timings
    published nor that queue's deadlines in the map, is left to the router (they may count the
    queue's business hours)."""
    r = redis_srv.r
    load_libraries(r)
    r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 1, "general", NOW)
    call(r, event(customer_text(r, "cu0", "first"), greet=""))  # amy is busy now
    conv = customer_text(r, "cu1", "hello")
    assert call(r, event(conv, greet="", **waiting()))[1]["how"] == "told"
    customer_text(r, "cu1", "anyone?")
    what, info = call(r, event(conv, greet="", **waiting(wait_cmid="cg:pos:2-1")))
    assert (what, info["state"], info["told"]) == ("info", "queued", 1)
    assert [m["text"] for m in log_of(r, conv) if m.get("role") == "bot"] == ["Q 1 2 min"] * 2
    what, info = call(r, event(conv, greet="", queue="sales", **waiting(wait_cmid="cg:pos:3-1")))
    assert what == "info" and "told" not in info  # another queue: the router's


# A waiting conversation in general gets a message the router classified into sales: (the desk's
# timings as published, the map's dues) -> its own queue's deadlines armed in the call (told) or
# left to the router (None)
LATER = NOW + 5_000
OTHER = [
    ("no business hours: from the desk's timings", ["first_s:web", "60", "next_s:web", "120"],
     None, 1, LATER + 60_000),
    ("business hours: the router's dues for it", ["first_s:web", "60", "hours:general", "1"],
     {"general": [LATER + 3_600_000, 0], "billing": [1, 2]}, 1, LATER + 3_600_000),
    ("business hours, no dues (an earlier router): the router's", ["first_s:web", "60",
                                                                   "hours:general", "1"],
     None, None, None),
    ("timings not published: the router's", None, None, None, None),
]


@pytest.mark.parametrize("name,desk,dues,told,first", OTHER, ids=[o[0] for o in OTHER])
def test_a_message_classified_into_another_queue_arms_its_own_queues_deadlines(
        redis_srv, name, desk, dues, told, first):
    """One call for every customer message: the deadlines of the queue the conversation is in,
    not of the one this message classified into, armed in the call (redis/event.lua
    customer_dues; the router sends dues of the queues that count business hours)."""
    r = redis_srv.r
    load_libraries(r)
    if desk:
        r.fcall("cg_deskcfg", 1, TENANT, "ready", "1", *desk)
    conv = customer_text(r, "cu1", "hello")
    what, res = call(r, event(conv, greet="", first_due=0, next_due=0, **waiting()))
    assert (what, res["result"]) == ("new", "queued") and f"first:{conv}" not in timers(r)
    customer_text(r, "cu1", "my invoice is wrong", now=LATER)
    over = {"dues": dues} if dues else {}
    what, info = call(r, event(conv, greet="", now=LATER, queue="sales", first_due=LATER + 1,
                               next_due=LATER + 2, **waiting(wait_cmid="cg:pos:2-1"), **over))
    assert (what, info["queue"], info.get("told")) == ("info", "general", told), info
    assert timers(r).get(f"first:{conv}") == first


def test_an_answer_names_its_fields_in_sorted_order(redis_srv):
    """answer() (redis/event.lua): {kind, name1, value1, ...}, names sorted, so the same event
    gets the same bytes back; a ROW stays an array."""
    r = redis_srv.r
    load_libraries(r)
    conv = customer_text(r, "cu1", "hello")
    call(r, event(conv, greet=""))
    raw = r.fcall("cg_customer_msg", 1, TENANT, msgpack.packb(event(conv), use_bin_type=False))
    names = [s(x) for x in raw[1::2]]
    assert s(raw[0]) == "info" and len(raw) % 2 == 1
    assert names == sorted(names) and len(names) == 12, names
    assert raw[2 + 2 * names.index("row")] == []  # queued: no ROW, an empty array


def customer_msg(r, customer, text, channel="web"):
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": new_id(), "channel": channel,
         "dir": "in", "role": "customer", "sender_id": customer, "ts": NOW, "text": text}
    res = store(r, "", m["cmid"], "customer", customer, msgpack.packb(m),
                  new_id(), channel, NOW, "log", text)
    return s(res[0])


OFF = {"off_hours": [bot("Closed, open at {opens_at}")] * 2,
       "closed": {"general": "2027-01-04 09:00", "sales": "2027-02-01 08:00"}}

# A queued customer's next message: (who is online, its channel, the map's extra fields) -> the
# waiting reply the call writes again ((text, position, wait) or None: nothing), and told (the
# call armed the response timers too)
NEXT = [
    ("queued: the place in line again", "busy", "web", {}, ("Q 1 2 min", 1, 120), 1),
    ("nobody online: said once", None, "web", {}, None, 1),
    ("the queue is closed now: off_hours with opens_at", "closed", "web", OFF,
     ("Closed, open at 2027-01-04 09:00", 1, 0), 1),
    ("classified into another queue: the reply of the queue it waits in", "closed", "web",
     dict(OFF, queue="sales"), ("Closed, open at 2027-01-04 09:00", 1, 0), None),
    ("held, but its queue is not among the closed: the place in line", "closed", "web",
     dict(OFF, closed={"sales": "2027-02-01 08:00"}), ("Q 1 1 min", 1, 0), 1),
    ("e-mail: the one acknowledgement only", "busy", "email", {}, None, 1),
    ("a pull queue, nobody online: said once", "pull", "web", {}, None, 1),
]


@pytest.mark.parametrize("name,who,channel,over,said,told", NEXT, ids=[n[0] for n in NEXT])
def test_a_queued_customers_next_message_gets_the_waiting_reply_in_the_call(
        redis_srv, name, who, channel, over, said, told):
    """The waiting reply is decided in the call only (redis/event.lua waiting_reply): for the
    queue the conversation waits in, whatever queue this message classified into; the router
    sends the texts and the queues closed now (router/conv.c conv_waiting_fields)."""
    r = redis_srv.r
    load_libraries(r)
    if who in ("busy", "closed"):  # online, cap 1
        r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 1, "general", NOW)
    if who == "busy":  # with a conversation already
        call(r, event(customer_text(r, "cu0", "first"), greet=""))
    if who == "closed":  # outside its business hours: the queue holds
        r.sadd(f"{TENANT}:closed", "general")
    if who == "pull":  # the queue holds too, open, and nobody serves it
        r.hset(f"{TENANT}:queuecfg:general", "mode", "pull")
    texts = waiting(email_ack=[bot("ACK")] * 2)
    conv = customer_msg(r, "cu1", "hello", channel)
    first = {k: v for k, v in over.items() if k != "queue"}
    what, res = call(r, event(conv, greet="", channel=channel, **dict(texts, **first)))
    assert (what, res["result"], res["how"]) == ("new", "queued", "told"), res
    before = [m for m in log_of(r, conv) if m.get("role") == "bot"]
    assert len(before) == 1  # the waiting reply of the new conversation
    customer_msg(r, "cu1", "anyone there?", channel)
    what, info = call(r, event(conv, greet="", channel=channel,
                               **dict(texts, wait_cmid="cg:pos:2-1", **over)))
    assert (what, info["state"], info["queue"], info.get("told")) == \
        ("info", "queued", "general", told), info
    after = [m for m in log_of(r, conv) if m.get("role") == "bot"][len(before):]
    assert [(m["text"], m.get("position"), m.get("wait")) for m in after] == \
        ([said] if said else [])
    assert all(m["queue"] == "general" for m in after)
    # the same entry again (a router that died before its XACK): nothing written twice
    call(r, event(conv, greet="", channel=channel, **dict(texts, wait_cmid="cg:pos:2-1", **over)))
    assert len([m for m in log_of(r, conv) if m.get("role") == "bot"]) == len(before) + len(after)


# ---- cg_message: the message store's arguments by name ---------------------------------------

def test_cg_message_names_what_is_wrong_with_its_map(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    bad = [(b"\xc1", "BADARG a msgpack map of the message is expected"),
           (msgpack.packb([1, 2]), "BADARG payload, role and now"),
           (msgpack.packb({"role": "customer", "now": NOW}), "BADARG payload, role and now"),
           (message_map("", "c1", "customer", "cu9", b"\x80", "n1", "web", NOW, "log", "",
                        "colour", "red"), "BADARG unknown attribute colour")]
    for arg, want in bad:
        with pytest.raises(redis.exceptions.ResponseError, match=want):
            r.fcall("cg_message", 1, TENANT, arg)
    # attrs is a map: the reply address lands on the conversation it opened
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": "e1", "channel": "email", "dir": "in",
         "role": "customer", "sender_id": "email:a@example.com", "ts": NOW, "text": "hello"}
    res = named(r.fcall("cg_message", 1, TENANT, message_map(
        "", "e1", "customer", "email:a@example.com", msgpack.packb(m), "conv-e1", "email", NOW,
        "log", "hello", "subject", "Order 7", "chat_id", "a@example.com")))
    assert res == ("stored", {"conv": "conv-e1", "seq": 1, "dup": 0})
    h = conv_hash(r, "conv-e1")
    assert (h["subject"], h["chat_id"], h["channel"]) == ("Order 7", "a@example.com", "email")
    again = named(r.fcall("cg_message", 1, TENANT, message_map(
        "", "e1", "customer", "email:a@example.com", msgpack.packb(m), "conv-e2", "email", NOW,
        "log", "hello")))
    assert again == ("stored", {"conv": "conv-e1", "seq": 1, "dup": 1})
