"""The ends of a conversation as one call each (redis/event.lua: cg_agent_close, cg_customer_end,
cg_close_timer), table-driven against a bare redis-server running the library: the texts come in
every locale (router/variant.c) and the call picks by the conversation's locale; times are
arguments (an injected clock), nothing waits.

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_core_close.py
"""
import msgpack
import pytest
import redis

from conftest import load_libraries
from desk import conv_hash, log_of, named, store
from test_core_events import NOW, TENANT, call, customer_text, event, new_id, timers

# Three variants as the router packs them for [templates zh-CN] then [templates en]: [1] the
# default, [2] zh-CN, [3] en; '=' names a section, '~' the first section of a language.
LOCALES = {"=zh-cn": 2, "~zh": 2, "=en": 3, "~en": 3}
WHICH = ["default", "zh", "en"]


def payload(type_, text, **extra):
    m = {"v": 1, "type": type_, "id": new_id(), "dir": "out", "role": "system",
         "sender_id": "chatgw", "ts": NOW}
    if text:
        m["text"] = text
    m.update(extra)
    return msgpack.packb(m)


def variants(type_, what, off=(), **extra):
    """One payload per variant whose text says which variant it is ("" for those in off)."""
    return [b"" if w in off else payload(type_, f"{what} {w}", **extra) for w in WHICH]


def pack(a):
    return msgpack.packb(a, use_bin_type=False)


def assigned_conv(r, locale="en", customer="cu1"):
    """A conversation of customer with locale, assigned to amy at once."""
    r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 2, "general", NOW)
    conv = customer_text(r, customer, "hello")
    _, res = call(r, event(conv, greet="", locale=locale))
    assert res["result"] == "assigned", res
    return conv


def close_map(conv, **over):
    a = {"conv": conv, "agent": "amy", "now": NOW + 1000, "resolution": "resolved",
         "entry": "1-1", "unresolved": 0, "survey_until": NOW + 61_000, "followup_due": 0,
         "locales": LOCALES, "closed": variants("closed", "closed", code="resolved"),
         "survey": variants("survey", "survey"), "requeued": variants("text", "requeued")}
    a.update(over)
    return a


def agent_close(r, conv, **over):
    return r.fcall("cg_agent_close", 1, TENANT, pack(close_map(conv, **over)))


# the conversation's locale -> the variant the customer gets (tmpl_find's rule)
PICKS = [("zh-CN", "zh"), ("zh-TW", "zh"), ("ZH_hk", "zh"), ("EN-us", "en"), ("en", "en"),
         ("fr", "default"), ("", "default")]


@pytest.mark.parametrize("locale,which", PICKS, ids=[p[0] or "none" for p in PICKS])
def test_an_agent_close_tells_the_customer_in_its_locale(redis_srv, locale, which):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r, locale)
    assert named(agent_close(r, conv)) == ("closed", {"channel": "web", "queue": "general",
                                                      "rows": []})
    log = log_of(r, conv)
    assert [(m["type"], m.get("text")) for m in log[-2:]] == [
        ("closed", f"closed {which}"), ("survey", f"survey {which}")]
    assert log[-2]["code"] == "resolved"
    h = conv_hash(r, conv)
    assert h["state"] == "closed" and h["survey_until"] == str(NOW + 61_000)
    assert r.hget(f"{TENANT}:agent:amy", "load") == b"0"


def test_an_agent_close_processed_twice_writes_once(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r)
    assert named(agent_close(r, conv))[0] == "closed"
    before = len(log_of(r, conv))
    assert named(agent_close(r, conv)) == ("already", {"channel": "web", "queue": "general",
                                                       "rows": []})
    assert len(log_of(r, conv)) == before


# (what the map changes) -> (the answer, the state, the types the call appended)
CLOSES = [
    ("no survey (spam)", {"resolution": "spam", "survey_until": 0,
                          "closed": variants("closed", "closed", code="spam")},
     "closed", "closed", ["closed"]),
    ("unresolved: back to the queue", {"resolution": "unresolved", "unresolved": 1},
     "requeued", "queued", ["text"]),
    ("unresolved, requeued text off", {"resolution": "unresolved", "unresolved": 1,
                                        "requeued": variants("text", "rq", off=WHICH)},
     "requeued", "queued", []),
]


@pytest.mark.parametrize("name,over,answer,state,types", CLOSES, ids=[c[0] for c in CLOSES])
def test_an_agent_close_variants(redis_srv, name, over, answer, state, types):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r)
    before = len(log_of(r, conv))
    what, res = named(agent_close(r, conv, **over))
    assert what == answer and conv_hash(r, conv)["state"] == state
    assert (res["channel"], res["queue"], res["rows"]) == ("web", "general", [])
    assert [m["type"] for m in log_of(r, conv)[before:]] == types
    if answer == "requeued":
        assert conv_hash(r, conv)["prev_agent"] == "amy"
        if types:
            assert log_of(r, conv)[-1]["text"] == "requeued en"


def test_an_agent_close_refusals_are_named(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r)
    with pytest.raises(redis.exceptions.ResponseError, match="NOTASSIGNED"):
        agent_close(r, conv, agent="bob")
    with pytest.raises(redis.exceptions.ResponseError, match="BADARG a msgpack map with conv, agent"):
        r.fcall("cg_agent_close", 1, TENANT, pack({"conv": conv, "now": NOW}))
    assert conv_hash(r, conv)["state"] == "assigned"


# ---- cg_customer_end -------------------------------------------------------------------------

def end_map(conv, customer="cu1", **over):
    notice = payload("text", f"The customer ended conversation {conv}.", conv=conv)
    a = {"conv": conv, "customer": customer, "now": NOW + 2000, "notice": notice,
         "locales": LOCALES, "closed_abandoned": variants("closed", "abandoned", code="abandoned"),
         "closed_left": variants("closed", "left", code="customer_left"),
         "survey": variants("survey", "survey"), "survey_until": NOW + 62_000, "followup_due": 0}
    a.update(over)
    return a


def customer_end(r, conv, **over):
    return r.fcall("cg_customer_end", 1, TENANT, pack(end_map(conv, **over)))


def test_a_waiting_customer_ends_the_chat_in_one_call(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = customer_text(r, "cu1", "hello")
    call(r, event(conv, greet="", locale="zh-CN"))  # nobody online: queued
    assert named(customer_end(r, conv)) == ("abandoned", {"queue": "general"})
    assert conv_hash(r, conv)["resolution"] == "abandoned"
    assert [(m["type"], m.get("text")) for m in log_of(r, conv)[1:]] == [("closed", "abandoned zh")]
    assert not r.zscore(f"{TENANT}:queue:general", conv)
    assert named(customer_end(r, conv)) == ("already", {})
    assert len(log_of(r, conv)) == 2


def test_an_assigned_customer_ends_the_chat_in_one_call(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r, "en-GB")
    sub = r.pubsub()
    sub.subscribe(f"{TENANT}:a:amy")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert named(customer_end(r, conv)) == ("ended", {"queue": "general", "agent": "amy",
                                                      "rows": []})
    assert [(m["type"], m.get("text")) for m in log_of(r, conv)[-2:]] == [
        ("closed", "left en"), ("survey", "survey en")]
    got = sub.get_message(timeout=5)
    assert got and got["data"][:8] == b"\0" * 8
    notice = msgpack.unpackb(got["data"][8:], raw=False)
    assert notice["conv"] == conv and "ended" in notice["text"]
    h = conv_hash(r, conv)
    assert (h["state"], h["resolution"], h["closed_by"]) == ("closed", "customer_left", "customer")
    n = len(log_of(r, conv))
    assert named(customer_end(r, conv)) == ("already", {})  # re-processed: nothing again
    assert len(log_of(r, conv)) == n
    sub.close()


def test_someone_elses_end_is_refused(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r)
    with pytest.raises(redis.exceptions.ResponseError, match="NOTYOURS"):
        customer_end(r, conv, customer="cu2")
    with pytest.raises(redis.exceptions.ResponseError, match="BADARG a msgpack map with conv, customer"):
        r.fcall("cg_customer_end", 1, TENANT, pack({"conv": conv, "now": NOW}))
    assert conv_hash(r, conv)["state"] == "assigned"


# ---- cg_close_timer: the idle close ------------------------------------------------------------

def idle_map(conv, lease, now, **over):
    notice = payload("text", f"Conversation {conv} was closed after 600 s without messages.",
                     conv=conv)
    a = {"member": f"idle:{conv}", "lease": str(lease), "now": now, "newconv": new_id(),
         "followup_queue": "complaints", "notice": notice, "locales": LOCALES,
         "idle_closed": variants("text", "idle"), "closed": variants("closed", "closed",
                                                                      code="no_response"),
         "survey": variants("survey", "survey"), "survey_until": now + 60_000, "followup_due": 0}
    a.update(over)
    return a


def test_an_idle_conversation_is_closed_in_one_call(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r, "zh-CN")
    due = NOW + 600_000
    r.zadd(f"{TENANT}:timers", {f"idle:{conv}": due})
    res = named(r.fcall("cg_close_timer", 1, TENANT, pack(idle_map(conv, due, due + 1))))
    assert res == ("idle", {"conv": conv, "agent": "amy", "queue": "general", "rows": []})
    assert [(m["type"], m.get("text")) for m in log_of(r, conv)[-3:]] == [
        ("text", "idle zh"), ("closed", "closed zh"), ("survey", "survey zh")]
    assert conv_hash(r, conv)["resolution"] == "no_response"
    # the same timer fired again (another router's claim of the old lease): stale, nothing written
    n = len(log_of(r, conv))
    res = named(r.fcall("cg_close_timer", 1, TENANT, pack(idle_map(conv, due, due + 2))))
    assert res == ("stale", {}) and len(log_of(r, conv)) == n


def test_an_idle_timer_after_a_message_rearms_itself(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    r.fcall("cg_deskcfg", 1, TENANT, "ready", 1, "idle_close_s", 600)
    conv = assigned_conv(r)
    due = NOW + 600_000
    r.zadd(f"{TENANT}:timers", {f"idle:{conv}": due})
    customer_text(r, "cu1", "still there?", now=NOW + 300_000)  # the last message moves
    # the desk's own messages after it are no activity of either side
    bot = msgpack.packb({"v": 1, "type": "text", "id": new_id(), "channel": "web", "dir": "out",
                         "role": "bot", "sender_id": "chatgw", "ts": NOW + 400_000,
                         "text": "an agent will be with you"})
    store(r, conv, "cg:x", "bot", "chatgw", bot, "", "web",
            NOW + 400_000, "log", "")
    before = conv_hash(r, conv)
    res = named(r.fcall("cg_close_timer", 1, TENANT, pack(idle_map(conv, due, due + 1))))
    assert res == ("done", {}) and conv_hash(r, conv)["state"] == "assigned"
    assert timers(r)[f"idle:{conv}"] == NOW + 900_000
    # messages write nothing for the idle close: the time is read from the log when it fires
    assert "act_at" not in before
    res = named(r.fcall("cg_close_timer", 1, TENANT, pack(idle_map(conv, NOW + 900_000,
                                                                   NOW + 900_000))))
    assert res[0] == "idle" and conv_hash(r, conv)["resolution"] == "no_response"


def test_a_bad_timer_map_is_named(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    with pytest.raises(redis.exceptions.ResponseError, match="BADARG a msgpack map with member"):
        r.fcall("cg_close_timer", 1, TENANT, pack({"member": "idle:x", "now": NOW}))


# ---- cg_agent_transfer -------------------------------------------------------------------------

def test_a_transfer_writes_its_event_with_the_targets_name_in_one_call(redis_srv):
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r)
    r.fcall("cg_presence", 1, TENANT, "bob", "gw1:2", 1, "Bob Li", 2, "general", NOW)
    ev = payload("transferred", "VIP, address in Hangzhou", agent_id="bob")
    a = {"conv": conv, "agent": "amy", "now": NOW + 5, "to_agent": "bob", "to_queue": "",
         "pos_ms": 0, "entry": "9-1", "transferred": ev}
    what, res = named(r.fcall("cg_agent_transfer", 1, TENANT, pack(a)))
    assert (what, res["channel"], res["locale"], res["queue"]) == \
        ("transferred", "web", "en", "general")
    assert res["row"][:3] == [conv, "bob", "Bob Li"], res
    assert res["rows"] == [res["row"]]  # every assignment of the call, announced in it
    [t] = [m for m in log_of(r, conv) if m["type"] == "transferred"]
    assert (t["agent_id"], t["agent_name"], t["text"]) == ("bob", "Bob Li", "VIP, address in Hangzhou")
    assert conv_hash(r, conv)["agent"] == "bob"
    # the same entry again: refused (amy no longer has it), nothing written twice
    with pytest.raises(redis.exceptions.ResponseError, match="NOTASSIGNED"):
        r.fcall("cg_agent_transfer", 1, TENANT, pack(a))
    assert len([m for m in log_of(r, conv) if m["type"] == "transferred"]) == 1
    with pytest.raises(redis.exceptions.ResponseError, match="BADARG a msgpack map with conv, agent"):
        r.fcall("cg_agent_transfer", 1, TENANT, pack({"conv": conv, "now": NOW}))


def test_the_freed_slot_is_announced_in_the_close_call(redis_srv):
    """With the `assigned` msg in the map, the conversation the freed slot takes is announced in
    the close's own call (its event with the agent's name, the outbox left, the timers armed)."""
    r = redis_srv.r
    load_libraries(r)
    conv = assigned_conv(r)  # amy (cap 2) ...
    other = assigned_conv(r, customer="cu2")  # ... is full now
    waiting = customer_text(r, "cu3", "me too")
    from test_core_events import call as customer_msg
    customer_msg(r, event(waiting, greet=""))
    assert conv_hash(r, waiting)["state"] == "queued" and other
    shell = payload("assigned", "{name} has joined")
    what, res = named(agent_close(r, conv, assigned=shell, offer_ms=30_000, idle_ms=600_000))
    assert what == "closed" and [x[0] for x in res["rows"]] == [waiting]
    [a] = [m for m in log_of(r, waiting) if m["type"] == "assigned"]
    assert (a["agent_id"], a["text"]) == ("amy", "Amy has joined")
    assert not r.sismember(f"{TENANT}:outbox:assign", waiting)
    assert timers(r)[f"idle:{waiting}"] == NOW + 1000 + 600_000
