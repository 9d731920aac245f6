"""What one message costs inside Redis (issue 10, item 6: on the hot path at most 1 FCALL and 8
Redis commands per customer message), counted with MONITOR on a bare redis-server running the
library as the binaries carry it; times are arguments (an injected clock), nothing waits.

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_core_cost.py
"""
import uuid

import msgpack

from conftest import load_libraries
from desk import append_text, s, store

NOW = 1_800_000_000_000
TENANT = "cg:{t:default}"
END = "end-of-probe"


def new_id():
    return uuid.uuid4().hex


def append(r, role, sender, text, conv="", now=NOW):
    return append_text(r, role, sender, text, conv, now)


def commands_of(r, call):
    """The commands Redis runs for call() (a function of r), as MONITOR shows them: [(name,
    args)], the FCALL itself first."""
    with r.monitor() as mon:
        call()
        r.echo(END)
        seen = []
        for ev in mon.listen():
            cmd = ev["command"]
            if cmd == f"ECHO {END}":
                return seen
            name, _, rest = cmd.partition(" ")
            seen.append((name.upper(), rest))


def assigned_chat(r):
    """A customer's conversation assigned to agent amy, with the desk's timings published and
    the first answer given (the steady state of a chat)."""
    load_libraries(r)
    r.fcall("cg_deskcfg", 1, TENANT, "ready", "1", "first_s:web", "60", "next_s:web", "120",
            "idle_close_s", "600")
    r.fcall("cg_presence", 1, TENANT, "amy", "gw1:1", 1, "Amy", 2, "general", NOW)
    conv, _, _ = append(r, "customer", "cu1", "hello")
    r.fcall("cg_enqueue", 1, TENANT, conv, "general", 5, NOW)
    assert s(r.hget(f"{TENANT}:conv:{conv}", "agent")) == "amy"
    append(r, "agent", "amy", "hi, how can I help?", conv, NOW + 1000)
    return conv


def test_a_customer_text_costs_one_fcall_and_at_most_8_commands(redis_srv):
    r = redis_srv.r
    conv = assigned_chat(r)
    for i in range(3):  # every turn costs the same: nothing is read again once remembered
        t = NOW + 10_000 * (i + 1)
        cmds = commands_of(r, lambda: append(r, "customer", "cu1", f"question {i}", conv, t))
        names = [n for n, _ in cmds]
        assert names[0] == "FCALL" and names.count("FCALL") == 1, names
        assert len(names) <= 8, names
        assert "HGETALL" not in names and "GET" not in names, names  # desk timings remembered
        answer = commands_of(r, lambda: append(r, "agent", "amy", f"answer {i}", conv, t + 500))
        assert [n for n, _ in answer].count("FCALL") == 1
    seqs = [int(s(e[0]).split("-")[0]) for e in r.xrange(f"{TENANT}:conv:{conv}:log")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_new_desk_timings_are_used_at_once(redis_srv):
    """The library remembers the desk's timings; cg_deskcfg replaces them, and the next message
    goes by the new ones."""
    r = redis_srv.r
    conv = assigned_chat(r)
    t = NOW + 10_000
    append(r, "customer", "cu1", "first", conv, t)
    assert r.zscore(f"{TENANT}:timers", f"next:{conv}") == t + 120_000
    append(r, "agent", "amy", "answer", conv, t + 1)  # the next-response deadline is met
    # the timer is left armed (no write per answer); it finds nobody waiting when it fires
    assert r.zscore(f"{TENANT}:timers", f"next:{conv}") == t + 120_000
    r.fcall("cg_deskcfg", 1, TENANT, "ready", "1", "first_s:web", "60", "next_s:web", "90",
            "idle_close_s", "900")
    append(r, "customer", "cu1", "second", conv, t + 2)
    assert r.zscore(f"{TENANT}:timers", f"next:{conv}") == t + 2 + 90_000
    # a queue that counts business hours leaves the message to the routers (cg:in)
    r.fcall("cg_deskcfg", 1, TENANT, "ready", "1", "hours:general", "1")
    before = r.xlen(f"{TENANT}:in")
    append(r, "customer", "cu1", "third", conv, t + 2)
    assert r.xlen(f"{TENANT}:in") == before + 1


def test_a_retry_after_the_conversation_moved_on_is_still_a_duplicate(redis_srv):
    """The id is claimed after the checks; a retry that fails them (the agent's conversation was
    closed meanwhile) still answers as the first try did, not with the error."""
    r = redis_srv.r
    conv = assigned_chat(r)
    m = {"v": 1, "type": "text", "id": new_id(), "cmid": "a-1", "channel": "web", "dir": "out",
         "role": "agent", "sender_id": "amy", "ts": NOW, "text": "bye"}

    def send():
        return store(r, conv, "a-1", "agent", "amy", msgpack.packb(m),
                       new_id(), "web", NOW + 2000, "log", "")
    first = send()
    r.fcall("cg_close", 1, TENANT, conv, "amy", "resolved", NOW + 3000)
    again = send()
    assert again == [first[0], first[1], 1]


def fire(r, member, now):
    lease = str(int(r.zscore(f"{TENANT}:timers", member)))
    return [s(x) if isinstance(x, bytes) else x
            for x in r.fcall("cg_timer_fire", 1, TENANT, member, lease, now, 0, 0, "escalate",
                             "supervisors")]


def test_an_answer_leaves_the_next_response_timer_armed_and_it_fires_right(redis_srv):
    """The lazy rule: an answer writes no timer (no ZREM per answer, no ZADD per question while
    one is armed); the timer works out at its fire whether somebody waits and since when."""
    r = redis_srv.r
    conv = assigned_chat(r)
    t = NOW + 10_000
    append(r, "customer", "cu1", "q1", conv, t)
    cmds = commands_of(r, lambda: append(r, "agent", "amy", "a1", conv, t + 1000))
    assert "ZREM" not in [n for n, _ in cmds], cmds
    member = f"next:{conv}"
    # a second question at t + 60 s: the armed timer (due t + 120 s) is not moved later (ZADD LT
    # changes nothing: nothing goes to the AOF)
    cmds = commands_of(r, lambda: append(r, "customer", "cu1", "q2", conv, t + 60_000))
    assert "ZADD" not in [n for n, _ in cmds] or \
        r.zscore(f"{TENANT}:timers", member) == t + 120_000, cmds
    # fired at t + 120 s: the wait began at t + 60 s, due t + 180 s: re-armed, no breach
    assert fire(r, member, t + 120_000) == ["done"]
    assert r.zscore(f"{TENANT}:timers", member) == t + 180_000
    assert not r.hget(f"{TENANT}:kpi:queue:general", "sla:next")
    # fired at its due with the customer still waiting: the breach
    res = fire(r, member, t + 180_000)
    assert res[:3] == ["breach", "next", conv], res
    # answered, then fired: nothing, and the timer is gone
    append(r, "customer", "cu1", "q3", conv, t + 200_000)
    append(r, "agent", "amy", "a3", conv, t + 201_000)
    assert fire(r, member, t + 320_000) == ["done"]
    assert r.zscore(f"{TENANT}:timers", member) is None


# ---- response times: held in the conversation, added to the counters at its close ----------

def kpi(r, who):
    return {s(k): int(v) for k, v in r.hgetall(f"{TENANT}:kpi:{who}").items()}


def held(r):
    return sorted((s(k), s(n), ms, c) for k, n, ms, c in
                  r.execute_command("FCALL_RO", "cg_kpi_pending", 1, TENANT))


def test_an_answer_holds_its_response_time_in_the_conversation_until_the_close(redis_srv):
    """An agent's answer writes no counter hash (about 200 AOF bytes): it adds its response time
    to the conversation's rt, which cg_kpi_pending adds up live and the close hands over."""
    r = redis_srv.r
    conv = assigned_chat(r)  # the customer waited 1,000 ms for amy's first answer
    base = {k: kpi(r, k) for k in ("queue:general", "agent:amy")}
    assert "response_n" not in base["queue:general"] and "response_n" not in base["agent:amy"]
    append(r, "customer", "cu1", "where is my order?", conv, NOW + 10_000)
    cmds = commands_of(r, lambda: append(r, "agent", "amy", "today", conv, NOW + 12_500))
    assert not [c for c in cmds if c[0] in ("HSET", "HINCRBY") and ":kpi:" in c[1]], cmds
    assert s(r.hget(f"{TENANT}:conv:{conv}", "rt")) == "general\tamy\t3500\t2"
    assert r.sismember(f"{TENANT}:kpi:pending", conv)
    assert held(r) == [("agent", "amy", 3500, 2), ("queue", "general", 3500, 2)]
    assert r.fcall("cg_close", 1, TENANT, conv, "amy", "resolved", NOW + 20_000)[0] == b"closed"
    for who in ("queue:general", "agent:amy"):
        assert (kpi(r, who)["response_ms"], kpi(r, who)["response_n"]) == (3500, 2)
    assert r.hget(f"{TENANT}:conv:{conv}", "rt") is None
    assert not r.sismember(f"{TENANT}:kpi:pending", conv) and held(r) == []


def test_an_answer_of_another_agent_hands_the_first_agents_times_over(redis_srv):
    """After a reassignment, the first answer of the new agent adds what the conversation held
    for the old one to the old one's counters; the new agent's times are held anew."""
    r = redis_srv.r
    conv = assigned_chat(r)
    r.hset(f"{TENANT}:conv:{conv}", "agent", "bob")  # as a transfer or reassignment leaves it
    append(r, "customer", "cu1", "anyone?", conv, NOW + 10_000)
    append(r, "agent", "bob", "me", conv, NOW + 10_400)
    assert (kpi(r, "agent:amy")["response_ms"], kpi(r, "agent:amy")["response_n"]) == (1000, 1)
    assert "response_n" not in kpi(r, "agent:bob")
    assert held(r) == [("agent", "bob", 400, 1), ("queue", "general", 400, 1)]
    assert s(r.hget(f"{TENANT}:conv:{conv}", "rt")) == "general\tbob\t400\t1"


def test_a_customer_leaving_a_requeued_conversation_hands_its_times_over(redis_srv):
    """Answered, sent back to its queue (unresolved), then the customer leaves: the close of a
    waiting conversation hands the held times over too."""
    r = redis_srv.r
    conv = assigned_chat(r)
    r.hset(f"{TENANT}:conv:{conv}", mapping={"state": "queued"})
    r.hdel(f"{TENANT}:conv:{conv}", "agent")
    res = r.fcall("cg_customer_close", 1, TENANT, conv, "cu1", NOW + 5_000)
    assert s(res[0]) == "abandoned"
    assert (kpi(r, "queue:general")["response_ms"], kpi(r, "agent:amy")["response_n"]) == (1000, 1)
    assert held(r) == []


def test_a_chat_writes_at_most_600_aof_bytes_per_message(tmp_path):
    """Issue 10, item 6: <= 600 AOF bytes per message, with 32-character ids (as the widget's
    cmids) in an assigned conversation: every agent answer, and the customer's texts on average
    (a question that moves the next-response deadline earlier also writes that ZADD)."""
    import glob
    import os

    from conftest import RedisServer
    srv = RedisServer(str(tmp_path), args=["--appendonly", "yes", "--appenddirname", "aof"])
    srv.start()
    try:
        r = srv.r
        conv = assigned_chat(r)
        aof = glob.glob(os.path.join(str(tmp_path), "aof", "*.incr.aof"))[0]
        cust, agent = [], []
        for i in range(4):
            t = NOW + 10_000 * (i + 1)
            before = os.path.getsize(aof)
            append(r, "customer", "cu1", f"question number {i}", conv, t)
            mid = os.path.getsize(aof)
            append(r, "agent", "amy", f"answer number {i}", conv, t + 500)
            cust.append(mid - before)
            agent.append(os.path.getsize(aof) - mid)
        assert max(agent) <= 600, agent
        assert sum(cust) / len(cust) <= 600, cust
    finally:
        srv.kill()
