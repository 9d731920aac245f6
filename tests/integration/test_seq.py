"""Sequence numbers are never reused, also after Redis lost writes (issue 10, item 5).

A lost write is made for real: Redis runs without AOF, SAVEs a snapshot, hands out more numbers,
is killed with SIGKILL and starts again from the snapshot, so the numbers it handed out after
the snapshot are gone from its memory while clients have them (what appendfsync everysec does to
the last second before a crash, and no AOF to everything since the last snapshot).

Run: BUILD=build /usr/bin/python3 -m pytest -q tests/integration/test_seq.py
"""
import os
import subprocess


from chat import agent, customer
from conftest import load_libraries, wait_until
from desk import append_text, run, s

NOW = 1_800_000_000_000
TENANT = "cg:{t:default}"


def append(r, role, sender, text, conv="", now=NOW):
    """(conv, seq) of a text stored as the gateway stores it."""
    return append_text(r, role, sender, text, conv, now)[:2]


def log_seqs(r, conv):
    return [int(s(e[0]).split("-")[0]) for e in r.xrange(f"{TENANT}:conv:{conv}:log")]


def snapshot_mode(redis_srv):
    """No AOF from here on: what Redis keeps over a crash is its last SAVE."""
    redis_srv.r.config_set("appendonly", "no")


def crash_to_snapshot(redis_srv):
    """SIGKILL redis-server and start it again on its last snapshot (dump.rdb)."""
    redis_srv.kill()
    redis_srv.proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_srv.port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", redis_srv.dir,
         "--logfile", os.path.join(redis_srv.dir, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            return redis_srv.r.ping()
        except Exception:  # noqa: BLE001 -- connection refused or LOADING while it starts
            assert redis_srv.proc.poll() is None, "redis-server exited"
            return False
    wait_until(up, 15, "redis-server to answer after the crash")


def test_numbers_lost_with_a_crash_are_not_handed_out_again(redis_srv):
    r = redis_srv.r
    snapshot_mode(redis_srv)
    load_libraries(r)
    conv, first = append(r, "customer", "cu1", "one")
    assert first == 1
    append(r, "customer", "cu1", "two", conv)
    r.save()
    handed_out = [append(r, "customer", "cu1", t, conv)[1] for t in ("three", "four", "five")]
    assert handed_out == [3, 4, 5]

    crash_to_snapshot(redis_srv)
    assert log_seqs(r, conv) == [1, 2]  # the snapshot's: 3..5 are lost, clients have them
    _, after = append(r, "customer", "cu1", "six", conv)
    assert after > max(handed_out)
    _, next_one = append(r, "customer", "cu1", "seven", conv)
    assert next_one == after + 1  # one skip per conversation and run, then one by one
    assert log_seqs(r, conv) == [1, 2, after, next_one]
    # a conversation opened after the restart counts from 1
    other, seq = append(r, "customer", "cu2", "new here")
    assert seq == 1 and other != conv


def test_every_run_of_the_library_skips_once(redis_srv):
    """Any new run (a Redis start, a load of the library) skips once per conversation: it cannot
    know whether the writes before it were kept."""
    r = redis_srv.r
    load_libraries(r)
    conv, _ = append(r, "customer", "cu1", "one")
    assert append(r, "customer", "cu1", "two", conv)[1] == 2
    load_libraries(r)  # FUNCTION LOAD REPLACE: a new run
    third = append(r, "customer", "cu1", "three", conv)[1]
    assert third > 2 + 1000
    assert append(r, "customer", "cu1", "four", conv)[1] == third + 1


def test_the_desk_talks_on_across_lost_writes(redis_srv, procs):
    """The real gateway and router: an assigned chat, then a crash that loses the last messages.
    The next messages on both sides get numbers above every number either side saw, and each
    side receives the other's (the gateways' catch-up steps over the hole in the log)."""
    r = redis_srv.r
    gw = procs.gateway()
    # the gateway's start-up check of the persistence settings (docs/deployment.md)
    gw.wait_log("redis: appendonly yes, appendfsync everysec: a crash of Redis loses nothing")
    snapshot_mode(redis_srv)
    procs.router()
    token = procs.agent_token("alice", "Alice")

    async def scenario():
        a = await agent(gw, token)
        wait_until(lambda: s(r.hget(f"{TENANT}:agent:alice", "status")) == "online", 5, "online")
        c = await customer(gw)
        conv = (await c.say("hello"))["conv"]
        await a.expect_type("assigned", conv=conv, timeout=15)
        await a.say("hi, how can I help?", conv=conv)
        await c.expect(lambda f: f.get("text") == "hi, how can I help?", what="the agent's hi")
        r.save()
        lost = [(await c.say("this one is lost"))["seq"],
                (await a.say("and this answer too", conv=conv))["seq"]]
        await c.expect(lambda f: f.get("text") == "and this answer too", what="the lost answer")
        seen = max(f["seq"] for f in c.logged(conv) + a.logged(conv) + [{"seq": x} for x in lost])

        crash_to_snapshot(redis_srv)
        gw.wait_log("redis: appendonly is no: a restart of Redis loses every acknowledged")
        wait_until(lambda: s(r.hget(f"{TENANT}:agent:alice", "status")) == "online"
                   and r.smembers(f"{TENANT}:agent:alice:socks"), 15, "alice online again")

        async def say_until_stored(who, text, **kw):
            while True:  # `unavailable` (retry) until the gateway has its library back
                f = await who.say(text, **kw)
                if f["type"] == "ack":
                    return f
                assert f.get("code") == "unavailable", f
                wait_until(lambda: gw.text().count("redis: available again") >= 1, 15,
                           "the gateway back")

        ack = await say_until_stored(c, "are you still there?", conv=conv)
        assert ack["seq"] > seen, (ack, seen)
        got = await a.expect(lambda f: f.get("text") == "are you still there?", timeout=15,
                             what="the customer's message after the crash")
        assert got["seq"] == ack["seq"]
        reply = await say_until_stored(a, "yes, still here", conv=conv)
        assert reply["seq"] == ack["seq"] + 1
        await c.expect(lambda f: f.get("text") == "yes, still here", timeout=15,
                       what="the agent's reply after the crash")

    run(scenario())
