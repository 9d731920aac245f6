"""Soak: connection churn against the real binaries, with the memory of the gateway and of Redis
sampled all along (issue 12 item 11).

  /usr/bin/python3 bench/soak.py [--minutes 60] [--warmup-minutes M] [--agents 8]
                                 [--customers 40] [--wave 300] [--wave-every-s 120] [--csv out.csv]

Starts a redis-server, a router and a gateway (BUILD, default build/), then:
  setup     every agent signs in; every customer opens a conversation (one text), which the router
            assigns to an agent. These are the only durable writes of the run.
  churn     until the end: agents reconnect in a loop (each hello re-announces the agent's
            conversations: `assigned`, a conversation watch, catch-up of the transcript from seq 1,
            presence connect/disconnect for the routers), customers reconnect with their token and
            resume point and send `typing` (relayed, not stored); every --wave-every-s seconds a
            wave of --wave anonymous customers connects at once and disconnects at once.
  samples   every --sample-s seconds: the gateway's VmRSS (/proc), Redis used_memory and its RSS.
The steady state stores nothing durable on purpose (transcripts are kept by design and grow with
traffic): what must stay flat is what connections cost. The baseline is the median of the samples
of the last minute of the warm-up, the end value the median of the last minute; the run fails
(exit 1) when the gateway RSS or Redis used_memory grew by more than --max-growth (5 %) between
them. Prints one line per sample and a summary (JSON on the last line).
"""
import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time

import websockets.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from chat import Client, Closed  # noqa: E402
from conftest import Procs, RedisServer  # noqa: E402

# What a worker's cycle may end with: it is counted in `errors` and the worker goes on (a refused
# upgrade is an InvalidStatusCode or, for lws' HTTP/1.0 refusals, an InvalidMessage).
CYCLE_ERRORS = (Closed, OSError, AssertionError, asyncio.TimeoutError,
                websockets.exceptions.WebSocketException)


def key_memory(r):
    """Redis memory by key pattern (ids and agent numbers replaced by *): {pattern: bytes}."""
    out = {}
    for k in r.scan_iter(count=1000):
        name = k.decode(errors="replace")
        pat = re.sub(r"[0-9a-f]{32}", "*", name)
        pat = re.sub(r"soak-agent-[0-9]+", "soak-agent-*", pat)
        out[pat] = out.get(pat, 0) + (r.memory_usage(k) or 0)
    return out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, args, gw, srv, tokens):
        self.a = args
        self.gw = gw
        self.srv = srv
        self.tokens = tokens
        self.customers = []  # (token, conv)
        self.churn_convs = set()
        self.warm_s = 0
        self.keys_warm = self.keys_end = None
        self.samples = []  # (t_s, gw_rss_kb, redis_used, redis_rss)
        self.counts = {"agent_cycles": 0, "customer_cycles": 0, "waves": 0, "errors": 0,
                       "assigned_seen": 0, "assign_cycles": 0}
        self.t0 = time.monotonic()
        self.stop_at = self.t0 + args.minutes * 60

    def sample(self):
        info = self.srv.r.info("memory")
        s = (round(time.monotonic() - self.t0, 1), rss_kb(self.gw.pid), info["used_memory"],
             info["used_memory_rss"])
        self.samples.append(s)
        print(f"t={s[0]:7.1f}s gateway_rss_kb={s[1]} redis_used={s[2]} redis_rss={s[3]} "
              f"{json.dumps(self.counts)}", flush=True)

    async def setup(self):
        agents = []
        for t in self.tokens:
            a = await Client.connect(self.gw.ws, "/ws/agent")
            await a.hello(token=t)
            agents.append(a)
        for i in range(self.a.customers):
            c = await Client.connect(self.gw.ws, "/ws/customer")
            w = await c.hello()
            ack = await c.say(f"soak question {i}")
            self.customers.append((w["token"], ack["conv"]))
            await c.close()
        # wait until every conversation is assigned (the agents got `assigned`)
        for a in agents:
            try:
                while True:
                    await a.expect_type("assigned", timeout=2)
            except AssertionError:
                pass
        for a in agents:
            await a.close()

    async def agent_loop(self, token):
        while time.monotonic() < self.stop_at:
            try:
                a = await Client.connect(self.gw.ws, "/ws/agent")
                await a.hello(token=token)
                until = time.monotonic() + self.a.agent_session_s
                closed = set()
                while True:  # the re-announced conversations (and, with --assign-churn, new ones)
                    try:
                        f = await a.expect_type("assigned", timeout=0.3)
                    except AssertionError:
                        if time.monotonic() >= until:
                            break
                        continue
                    self.counts["assigned_seen"] += 1
                    conv = f["conv"]
                    if conv not in self.churn_convs or conv in closed:
                        continue
                    closed.add(conv)  # an assign-churn conversation: answer it and close it
                    await a.send({"type": "text", "conv": conv, "text": "done", "cmid": "x"})
                    await a.send({"type": "close", "conv": conv, "code": "resolved", "cmid": "y"})
                await a.send({"type": "presence", "code": "online", "cmid": "p"})
                await a.close()
                self.counts["agent_cycles"] += 1
            except CYCLE_ERRORS:
                self.counts["errors"] += 1
                await asyncio.sleep(0.5)
            await asyncio.sleep(self.a.pause_s)

    async def assign_loop(self):
        """--assign-churn: a new customer opens a conversation, an agent gets it, answers and
        closes it; the customer leaves. Durable: every cycle stores a conversation."""
        while time.monotonic() < self.stop_at:
            try:
                c = await Client.connect(self.gw.ws, "/ws/customer")
                await c.hello()
                ack = await c.say("assign churn")
                self.churn_convs.add(ack["conv"])
                await c.expect_type("closed", timeout=30, conv=ack["conv"])
                await c.close()
                self.counts["assign_cycles"] += 1
            except CYCLE_ERRORS:
                self.counts["errors"] += 1
                await asyncio.sleep(0.5)
            await asyncio.sleep(self.a.pause_s)

    async def customer_loop(self, k):
        n = len(self.customers)
        i = k
        while time.monotonic() < self.stop_at:
            token, conv = self.customers[i % n]
            i += self.a.customer_workers
            try:
                c = await Client.connect(self.gw.ws, "/ws/customer")
                await c.hello(token=token, conv=conv, last_seq=1)
                await c.send({"type": "typing", "cmid": "t"})
                await c.expect(lambda f: f.get("seq", 0) >= 2, timeout=5, what="catch-up")
                await c.close()
                self.counts["customer_cycles"] += 1
            except CYCLE_ERRORS:
                self.counts["errors"] += 1
                await asyncio.sleep(0.5)
            await asyncio.sleep(self.a.pause_s)

    async def wave(self, n):
        """n anonymous customers connect at once, say hello, and all disconnect."""
        async def one():
            c = await Client.connect(self.gw.ws, "/ws/customer")
            await c.hello()
            return c
        conns = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        ok = [c for c in conns if isinstance(c, Client)]
        self.counts["errors"] += n - len(ok)
        await asyncio.gather(*(c.close() for c in ok), return_exceptions=True)
        self.counts["waves"] += 1

    async def wave_loop(self):
        while time.monotonic() + self.a.wave_every_s < self.stop_at:
            await asyncio.sleep(self.a.wave_every_s)
            await self.wave(self.a.wave)

    async def sample_loop(self):
        warm_at = self.t0 + self.warm_s
        while time.monotonic() < self.stop_at:
            self.sample()
            if self.keys_warm is None and time.monotonic() >= warm_at:
                self.keys_warm = key_memory(self.srv.r)
            await asyncio.sleep(self.a.sample_s)
        self.sample()
        self.keys_end = key_memory(self.srv.r)

    async def run(self):
        await self.setup()
        self.t0 = time.monotonic()
        self.stop_at = self.t0 + self.a.minutes * 60
        tasks = [self.agent_loop(t) for t in self.tokens]
        tasks += [self.customer_loop(k) for k in range(self.a.customer_workers)]
        tasks += [self.assign_loop() for _ in range(self.a.assign_churn)]
        tasks += [self.wave_loop(), self.sample_loop()]
        await asyncio.gather(*tasks)


def window(samples, lo, hi, col):
    vals = [s[col] for s in samples if lo <= s[0] <= hi]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--warmup-minutes", type=float, default=None,
                    help="default: a sixth of --minutes, at most 10")
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--customers", type=int, default=40)
    ap.add_argument("--customer-workers", type=int, default=8)
    ap.add_argument("--wave", type=int, default=300)
    ap.add_argument("--wave-every-s", type=float, default=120)
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--pause-s", type=float, default=0.1,
                    help="pause between two cycles of one worker (spares the CPU)")
    ap.add_argument("--agent-session-s", type=float, default=1.0,
                    help="how long an agent connection stays before it disconnects")
    ap.add_argument("--assign-churn", type=int, default=0,
                    help="workers opening conversations that agents close (stores data: Redis "
                         "memory grows with it by design)")
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    warm = args.warmup_minutes if args.warmup_minutes is not None else min(10, args.minutes / 6)
    with tempfile.TemporaryDirectory() as tmp:
        srv = RedisServer(tmp)
        srv.start()
        procs = Procs(srv, tmp)
        try:
            # all clients come from 127.0.0.1: a wave of --wave connections on top of the
            # workers must not meet the per-address connection limit (default 200)
            env = {"CHATGW_LOG_LEVEL": "info", "CHATGW_RATE_MSGS": 100000,
                   "CHATGW_RATE_BURST": 100000, "CHATGW_MAX_CONNS_PER_IP": 0}
            gw = procs.gateway(env, wait_ready=False)
            gw.wait_log(gw.ready_line, 15)
            cfg = os.path.join(tmp, "router.ini")
            with open(cfg, "w") as f:
                # idle_close_s = 0: the setup's conversations stay open for the whole run (by
                # default they close after 30 min, and the agents' hellos re-announce nothing)
                f.write("[router]\ndefault_queue = general\nidle_close_s = 0\n"
                        "[queue general]\nmode = push\n")
            rt = procs.router({"CHATGW_LOG_LEVEL": "info", "CHATGW_CONFIG": cfg,
                               "CHATGW_TRIM_INTERVAL_MS": 1000}, wait_ready=False)
            rt.wait_log(rt.ready_line, 15)
            cap = -(-args.customers // args.agents) + 2 * args.assign_churn
            tokens = [procs.agent_token(f"soak-agent-{i}", cap=cap, ttl=86400)
                      for i in range(args.agents)]
            soak = Soak(args, gw, srv, tokens)
            soak.warm_s = warm * 60
            asyncio.run(soak.run())
        finally:
            procs.teardown()
            srv.kill()
    end = soak.samples[-1][0]
    w0 = warm * 60
    res = {"minutes": args.minutes, "warmup_minutes": warm, "counts": soak.counts}
    ok = True
    for name, col in (("gateway_rss_kb", 1), ("redis_used_memory", 2), ("redis_rss", 3)):
        base = window(soak.samples, max(0, w0 - 60), w0, col)
        last = window(soak.samples, end - 60, end, col)
        growth = (last - base) / base if base else 0.0
        res[name] = {"baseline": base, "end": last, "growth_pct": round(100 * growth, 2),
                     "min": min(s[col] for s in soak.samples),
                     "max": max(s[col] for s in soak.samples)}
        if name != "redis_rss" and growth > args.max_growth:  # RSS of Redis: reported only
            ok = False
    if soak.keys_warm is not None and soak.keys_end is not None:
        grew = {k: soak.keys_end.get(k, 0) - soak.keys_warm.get(k, 0)
                for k in set(soak.keys_warm) | set(soak.keys_end)}
        res["redis_keys_grown_bytes"] = dict(sorted(
            ((k, v) for k, v in grew.items() if v), key=lambda kv: -abs(kv[1]))[:8])
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("t_s,gateway_rss_kb,redis_used_memory,redis_rss\n")
            for s in soak.samples:
                f.write(",".join(str(x) for x in s) + "\n")
    res["ok"] = ok
    print(json.dumps(res))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
