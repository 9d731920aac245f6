"""make chaos: load while processes die, then check that nothing acknowledged was lost,
duplicated or reordered (issue 12 item 14).

  /usr/bin/python3 bench/chaos.py [--seconds 60] [--seed 1] [--customers 20] [--agents 4]
                                  [--gateways 2] [--routers 2] [--fsync always|everysec]
                                  [--redis-kill | --no-redis-kill]

Starts a real redis-server (AOF on, appendfsync --fsync), --gateways gateways and --routers
routers (the real binaries), and drives --customers customers and --agents agents over real
WebSockets (python websockets) for --seconds seconds. Customers send numbered texts one at a time
and wait for each ack; agents answer every customer message. Meanwhile a fault loop, seeded by
--seed, picks a process (a router, a gateway or Redis) every 1-4 s and either kill -9s it
(restarted 0.2-1.5 s later, gateways on their port, Redis on its AOF) or SIGSTOPs it (SIGCONT
0.3-3 s later). Clients do what docs/protocol.md says: on a lost connection or an unanswered
frame they reconnect (to any gateway), say hello with their token and resume point (conv +
last_seq), and send the unacknowledged frame again with the same cmid; a frame refused with
retry true is sent again.

Then the faults stop, every process is brought back, and the clients get up to --settle seconds
to have everything acknowledged and delivered. Checked, for every acknowledged message:
  lost        its conversation's log (cg:{t:default}:conv:<conv>:log) has no entry with the acked seq and
              its cmid, or its receiver never got it (customer messages: some agent; agent
              messages: the customer)
  duplicated  its cmid appears more than once in the log, or one connection received a seq twice
  reordered   one sender's acked messages are not in sending order in the log, or one connection
              received a conversation's seqs out of order (a gap)
A frame still unacknowledged after --settle (the system did not recover) fails the run too, and
so does a sanitizer report in any process's log (BUILD=build/asan make chaos).
Prints a summary (messages acked, faults injected by kind, reconnects, lost, duplicated,
reordered, ack latency p50/p99/max) and exits 1 on any loss, duplicate or reordering.

Redis and kill -9: Redis write()s its AOF before it sends the replies of the commands it holds,
with either appendfsync setting; everysec only defers the fsync. So a kill -9 of the Redis
process loses nothing acknowledged with the default everysec (what `make run` uses, and the
default here); what everysec risks is a crash of the machine (the page cache not yet on disk:
about the last second), which a process kill cannot show. --fsync always runs the same load with
an fsync per write; --no-redis-kill only SIGSTOPs Redis. See docs/deployment.md.
"""
import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import redis
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
JWT_SECRET = "chaos-test-secret-0123456789abcdef0123"
PROTO = "chatgw.json.v1"
ACK_TIMEOUT = 4.0
DEBUG = os.environ.get("CHAOS_DEBUG") == "1"  # an unanswered frame is sent again (after a reconnect) after this long

CONFIG = """[router]
default_queue = general
claim_idle_ms = 2000
block_ms = 300
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


# ---- processes ----

class Svc:
    """One restartable process: argv + env, stderr appended to a log file."""

    def __init__(self, name, argv, env, logdir):
        self.name, self.argv, self.env = name, argv, env
        self.log = open(os.path.join(logdir, f"{name}.log"), "ab")
        self.proc = None
        self.stopped = False

    def start(self):
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        self.stopped = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def sigstop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)
            self.stopped = True

    def sigcont(self):
        if self.alive() and self.stopped:
            self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def terminate(self):
        self.sigcont()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Cluster:
    def __init__(self, tmp, args):
        self.tmp = tmp
        self.redis_port = free_port()
        self.r = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=5)
        self.redis = Svc("redis", ["redis-server", "--port", str(self.redis_port), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "yes",
                                   "--appendfsync", args.fsync, "--dir", tmp],
                         dict(os.environ), tmp)
        cfg = os.path.join(tmp, "chaos.ini")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        base = dict(os.environ)
        base.update({"CHATGW_CONFIG": cfg, "CHATGW_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}",
                     "CHATGW_JWT_SECRET": JWT_SECRET, "CHATGW_LOG_LEVEL": "info"})
        self.env = base
        self.gateways, self.ports = [], []
        for i in range(args.gateways):
            port = free_port()
            e = dict(base, CHATGW_LISTEN=f"127.0.0.1:{port}", CHATGW_GATEWAY_ID=f"chaos-gw{i + 1}",
                     CHATGW_WWW_DIR=os.path.join(ROOT, "gateway", "www"),
                     CHATGW_RATE_MSGS="100000", CHATGW_RATE_BURST="100000",
                     CHATGW_MAX_CONNS_PER_IP="0", CHATGW_CONV_PER_IP="0",
                     CHATGW_CONV_PER_CUSTOMER="0", CHATGW_HEARTBEAT_MS="500")
            self.gateways.append(Svc(f"gw{i + 1}", [os.path.join(BUILD, "chatgw-gateway")], e, tmp))
            self.ports.append(port)
        self.routers = [Svc(f"router{i + 1}", [os.path.join(BUILD, "chatgw-router")],
                            dict(base, CHATGW_ROUTER_ID=f"chaos-router{i + 1}"), tmp)
                        for i in range(args.routers)]
        self.all = [self.redis] + self.gateways + self.routers

    def start(self):
        self.redis.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.r.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        for s in self.gateways + self.routers:
            s.start()

    def agent_token(self, agent_id, cap):
        out = subprocess.run([os.path.join(BUILD, "chatgw-token"), "--agent", agent_id, "--name",
                              agent_id, "--skills", "general", "--cap", str(cap), "--ttl", "86400"],
                             env=self.env, check=True, capture_output=True)
        return out.stdout.decode().strip()

    def heal(self):
        for s in self.all:
            s.sigcont()
            if not s.alive():
                s.start()

    def stop(self):
        for s in self.gateways + self.routers + [self.redis]:
            s.terminate()


# ---- the fault loop ----

async def faults(cl, rnd, until, stats, redis_kill):
    targets = cl.gateways + cl.routers + [cl.redis]
    while time.monotonic() < until:
        await asyncio.sleep(rnd.uniform(1.0, 4.0))
        if time.monotonic() >= until:
            break
        t = rnd.choice(targets)
        kind = "router" if t in cl.routers else "gateway" if t in cl.gateways else "redis"
        if rnd.random() < 0.5 and (kind != "redis" or redis_kill):
            t.kill9()
            stats[f"kill9_{kind}"] = stats.get(f"kill9_{kind}", 0) + 1
            await asyncio.sleep(rnd.uniform(0.2, 1.5))
            t.start()
        else:
            t.sigstop()
            stats[f"sigstop_{kind}"] = stats.get(f"sigstop_{kind}", 0) + 1
            await asyncio.sleep(rnd.uniform(0.3, 3.0))
            t.sigcont()


# ---- clients ----

class Receiver:
    """What one client received: per connection, each conversation's seqs must follow one
    another (start: the resume point of the hello, else 1) with no logged message skipped (a
    jump over numbers no message has is the number skip after Redis lost writes: redis/desk.lua
    SEQ_SKIP; check() looks the jumps up in the logs); over all its connections, the union of
    seqs per conversation."""

    def __init__(self):
        self.got = {}  # conv -> set of seqs
        self.dup = 0
        self.jumps = []  # (who, conv, last, seq): gaps unless the log has nothing in between
        self.problems = []

    def connection(self, start):
        return dict(start)  # conv -> last seq seen on this connection

    def frame(self, conn, who, f):
        seq, conv = f.get("seq"), f.get("conv")
        if not seq or f.get("type") == "ack" or not conv:
            return
        last = conn.get(conv, 0)
        if seq <= last:
            self.dup += 1
            self.problems.append(f"{who}: {conv[:8]} seq {seq} after {last} on one connection")
        elif seq != last + 1:
            self.jumps.append((who, conv, last, seq))
        conn[conv] = max(last, seq)
        self.got.setdefault(conv, set()).add(seq)

    def contiguous(self, conv):
        s, n = self.got.get(conv, set()), 0
        while n + 1 in s:
            n += 1
        return n


class Stats:
    def __init__(self):
        self.reconnects = 0
        self.sent = 0
        self.errors = {}
        self.latency = []

    def error(self, code):
        self.errors[code] = self.errors.get(code, 0) + 1


async def connect(url):
    return await websockets.connect(url, subprotocols=[PROTO], open_timeout=3, close_timeout=1,
                                    ping_interval=None, max_size=2**24)


class Customer:
    def __init__(self, i, cl, st):
        self.i, self.cl, self.st = i, cl, st
        self.token = None
        self.sub = None
        self.conv = ""
        self.k = 0
        self.pending = None  # [cmid, text, t0, k]
        self.acked = []  # (k, cmid, conv, seq)
        self.recv = Receiver()
        self.sending = True

    async def run(self, stop):
        attempt = 0
        while not stop.is_set():
            port = self.cl.ports[(self.i + attempt) % len(self.cl.ports)]
            attempt += 1
            try:
                ws = await connect(f"ws://127.0.0.1:{port}/ws/customer")
            except Exception:
                self.st.reconnects += 1
                await asyncio.sleep(0.2)
                continue
            try:
                await self.session(ws, stop)
            except (websockets.exceptions.ConnectionClosed, OSError, asyncio.TimeoutError):
                pass
            finally:
                await ws.close()
            if not stop.is_set():
                self.st.reconnects += 1
                await asyncio.sleep(0.1)

    async def session(self, ws, stop):
        hello = {"type": "hello"}
        if self.token:
            hello.update(token=self.token)
            if self.conv:
                hello.update(conv=self.conv, last_seq=self.recv.contiguous(self.conv))
        await ws.send(json.dumps(hello))
        conn = None
        acked = asyncio.Event()
        while True:  # the welcome
            f = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if f.get("type") == "welcome":
                self.token, self.sub = f.get("token") or self.token, f["sender_id"]
                if f.get("conv") and f["conv"] != self.conv:
                    self.conv = f["conv"]
                start = {self.conv: hello.get("last_seq", 0)} if self.conv else {}
                conn = self.recv.connection(start)
                break
            if f.get("type") == "error":
                self.st.error(f.get("code"))
                return  # unavailable: reconnect

        async def reader():
            async for data in ws:
                f = json.loads(data)
                self.recv.frame(conn, f"customer{self.i}", f)
                if f.get("type") == "ack" and self.pending and f.get("cmid") == self.pending[0]:
                    cmid, _, t0, k = self.pending
                    if f["conv"] != self.conv:
                        conn.setdefault(f["conv"], 0)
                        self.conv = f["conv"]
                    self.acked.append((k, cmid, f["conv"], f["seq"]))
                    self.st.latency.append(time.monotonic() - t0)
                    self.pending = None
                    acked.set()
                elif f.get("type") == "error" and self.pending and f.get("cmid") == self.pending[0]:
                    self.st.error(f.get("code"))
                    if not f.get("retry"):
                        self.pending = None  # refused for good: not acked, not counted
                    acked.set()

        rt = asyncio.ensure_future(reader())
        try:
            while not stop.is_set():
                if self.pending is None:
                    if not self.sending:
                        await asyncio.sleep(0.1)
                        if rt.done():
                            rt.result()
                        continue
                    self.k += 1
                    self.pending = [f"cu{self.i}-{self.k}", f"c|{self.i}|{self.k}",
                                    time.monotonic(), self.k]
                cmid, text, _, _ = self.pending
                acked.clear()
                await ws.send(json.dumps({"type": "text", "cmid": cmid, "text": text}))
                self.st.sent += 1
                done, _ = await asyncio.wait([rt, asyncio.ensure_future(acked.wait())],
                                             timeout=ACK_TIMEOUT,
                                             return_when=asyncio.FIRST_COMPLETED)
                if rt in done:
                    rt.result()  # raises ConnectionClosed: reconnect
                    return
                if not done:
                    return  # no answer: reconnect and send it again
                if self.pending is not None:
                    await asyncio.sleep(0.2)  # retry true: the same frame again
                else:
                    await asyncio.sleep(random.uniform(0.05, 0.25))
        finally:
            rt.cancel()


class Agent:
    def __init__(self, i, token, cl, st):
        self.i, self.token, self.cl, self.st = i, token, cl, st
        self.name = f"chaos-agent-{i}"
        self.replied = {}  # conv -> highest customer seq answered
        # the outbox, in order: cmid -> (frame, t0, n, sent at). Only its head is in flight (a
        # frame refused with retry true is sent again before any later one: pipelining past
        # it would store the later ones first)
        self.pending = {}
        self.inflight = None
        self.n = 0
        self.acked = []  # (n, cmid, conv, seq)
        self.recv = Receiver()

    async def run(self, stop):
        attempt = 0
        while not stop.is_set():
            port = self.cl.ports[(self.i + attempt) % len(self.cl.ports)]
            attempt += 1
            try:
                ws = await connect(f"ws://127.0.0.1:{port}/ws/agent")
            except Exception:
                self.st.reconnects += 1
                await asyncio.sleep(0.2)
                continue
            try:
                await self.session(ws, stop)
            except (websockets.exceptions.ConnectionClosed, OSError, asyncio.TimeoutError):
                pass
            finally:
                await ws.close()
            if not stop.is_set():
                self.st.reconnects += 1
                await asyncio.sleep(0.1)

    async def pump(self, ws, delay=0.0):
        """Send the head of the outbox unless a frame is in flight."""
        if delay:
            await asyncio.sleep(delay)
        if self.inflight is not None or not self.pending:
            return
        cmid = next(iter(self.pending))
        frame, t0, n, _ = self.pending[cmid]
        now = time.monotonic()
        self.pending[cmid] = (frame, t0 or now, n, now)  # latency counts from the first send
        self.inflight = cmid
        try:
            await ws.send(json.dumps(frame))
        except websockets.exceptions.ConnectionClosed:
            if delay:
                return  # a retry after the connection went: the next connection sends it
            raise
        self.st.sent += 1

    async def session(self, ws, stop):
        await ws.send(json.dumps({"type": "hello", "token": self.token, "code": "online"}))
        conn = self.recv.connection({})
        welcomed = asyncio.Event()
        last_rx = [time.monotonic()]

        async def reader():
            async for data in ws:
                last_rx[0] = time.monotonic()
                await self.frame(ws, conn, welcomed, json.loads(data))
                if stop.is_set():
                    return

        async def watchdog():
            """No welcome, or an unanswered frame, while nothing at all arrives for ACK_TIMEOUT:
            reconnect. (While frames arrive the answer may be queued behind them: an agent's
            reconnect replays its conversations' transcripts, which can take longer than that.)"""
            while True:
                await asyncio.sleep(0.5)
                now = time.monotonic()
                if now - last_rx[0] <= ACK_TIMEOUT:
                    continue
                head = self.pending.get(self.inflight)
                if not welcomed.is_set() or (head and now - head[3] > ACK_TIMEOUT):
                    return

        async def stopped():
            await stop.wait()

        tasks = [asyncio.ensure_future(x) for x in (reader(), watchdog(), stopped())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()

    async def frame(self, ws, conn, welcomed, f):
        t = f.get("type")
        if DEBUG and self.pending and t in ("ack", "error", "welcome", "assigned"):
            print(f"{time.monotonic():.2f} {self.name} got {t} {f.get('cmid')} {f.get('code')} "
                  f"inflight {self.inflight}", file=sys.stderr)
        if t == "welcome":
            welcomed.set()
            self.inflight = None
            await self.pump(ws)  # unacknowledged: the same cmid again
            return
        if t == "error" and not welcomed.is_set():
            self.st.error(f.get("code"))
            raise asyncio.TimeoutError()  # unavailable: reconnect
        self.recv.frame(conn, self.name, f)
        if t == "ack" and f.get("cmid") == self.inflight:
            frame, t0, n, _ = self.pending.pop(f["cmid"])
            self.acked.append((n, f["cmid"], f["conv"], f["seq"]))
            self.st.latency.append(time.monotonic() - t0)
            self.inflight = None
            await self.pump(ws)
        elif t == "error" and f.get("cmid") == self.inflight:
            self.st.error(f.get("code"))
            self.inflight = None
            if not f.get("retry"):
                self.pending.pop(f["cmid"])  # refused for good: not acked, not counted
                await self.pump(ws)
            else:
                asyncio.ensure_future(self.pump(ws, 0.2))
        elif t == "text" and f.get("role") == "customer" and f.get("seq"):
            conv, seq = f["conv"], f["seq"]
            if seq > self.replied.get(conv, 0):
                self.replied[conv] = seq
                self.n += 1
                cmid = f"ag{self.i}-{conv[:12]}-{seq}"
                self.pending[cmid] = ({"type": "text", "conv": conv, "cmid": cmid,
                                       "text": f"r|{conv}|{seq}"}, None, self.n, 0)
                await self.pump(ws)


# ---- the checks ----

def read_logs(r, convs):
    """conv -> {seq: (cmid, sender)} from cg:{t:default}:conv:<conv>:log."""
    logs = {}
    for conv in convs:
        entries = {}
        for eid, f in r.xrange(f"cg:{{t:default}}:conv:{conv}:log"):
            seq = int(eid.decode().split("-")[0])
            m = msgpack.unpackb(f[b"m"], raw=False)
            entries[seq] = (m.get("cmid", ""), m.get("sender_id", ""))
        logs[conv] = entries
    return logs


def gaps_of(recv, logs):
    """recv's jumps over a logged message (a skip over numbers no message has is no gap)."""
    out = []
    for who, conv, last, seq in recv.jumps:
        if any(last < n < seq for n in logs.get(conv, {})):
            out.append(f"{who}: {conv[:8]} seq {seq} after {last} on one connection")
    return out


def check(customers, agents, logs):
    res = {"acked": 0, "lost": 0, "duplicated": 0, "reordered": 0,
           "lost_at_receiver": 0, "dup_at_receiver": 0, "gaps_at_receiver": 0, "seq_skips": 0}
    problems = []
    agent_got = {}
    for a in agents:
        for conv, s in a.recv.got.items():
            agent_got.setdefault(conv, set()).update(s)
        res["dup_at_receiver"] += a.recv.dup
        gaps = gaps_of(a.recv, logs)
        res["gaps_at_receiver"] += len(gaps)
        res["seq_skips"] += len(a.recv.jumps) - len(gaps)
        problems += (a.recv.problems + gaps)[:5]
    cust_of = {}
    for c in customers:
        res["dup_at_receiver"] += c.recv.dup
        gaps = gaps_of(c.recv, logs)
        res["gaps_at_receiver"] += len(gaps)
        res["seq_skips"] += len(c.recv.jumps) - len(gaps)
        problems += (c.recv.problems + gaps)[:5]
        for _, _, conv, _ in c.acked:
            cust_of[conv] = c
    senders = [(c.sub, c.acked, lambda conv, seq: seq in agent_got.get(conv, ())) for c in customers]
    for a in agents:
        senders.append((a.name, a.acked,
                        lambda conv, seq: conv in cust_of and seq in cust_of[conv].recv.got.get(conv, ())))
    for sender, acked, received in senders:
        last = {}
        for n, cmid, conv, seq in sorted(acked):
            res["acked"] += 1
            log = logs.get(conv, {})
            if log.get(seq) != (cmid, sender):
                res["lost"] += 1
                problems.append(f"lost: {sender} {cmid} acked as {conv[:8]}:{seq}, log has {log.get(seq)}")
            copies = sum(1 for v in log.values() if v == (cmid, sender))
            if copies > 1:
                res["duplicated"] += copies - 1
                problems.append(f"duplicated: {sender} {cmid} {copies} times in {conv[:8]}")
            if seq <= last.get(conv, 0):
                res["reordered"] += 1
                problems.append(f"reordered: {sender} {cmid} seq {seq} after {last[conv]} in {conv[:8]}")
            last[conv] = max(last.get(conv, 0), seq)
            if not received(conv, seq):
                res["lost_at_receiver"] += 1
                problems.append(f"not received: {sender} {cmid} {conv[:8]}:{seq}")
    return res, problems


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_reports(tmp):
    """Names of the process logs with a sanitizer report (a BUILD=build/asan run)."""
    bad = []
    for f in sorted(os.listdir(tmp)):
        if f.endswith(".log"):
            with open(os.path.join(tmp, f), encoding="utf-8", errors="replace") as fh:
                if any(m in fh.read() for m in SANITIZER_MARKS):
                    bad.append(f)
    return bad


def plant(r, customers):
    """Damage one conversation the way a bug would, so that the checks can be seen to fail
    (--plant; expect lost, duplicated and reordered >= 1): a customer's first acked message
    removed from the log, its second stored again at the end, its third and fourth stored (and
    acked) in the opposite order. The log is rebuilt (stream ids only grow)."""
    c = next(c for c in customers if len(c.acked) >= 4)
    acked = sorted(c.acked)
    (k1, _, conv, s1), (_, _, _, s2), (k3, m3, _, s3), (k4, m4, _, s4) = acked[:4]
    key = f"cg:{{t:default}}:conv:{conv}:log"
    entries = [(int(e.decode().split("-")[0]), f) for e, f in r.xrange(key)]
    by_seq = dict(entries)
    r.delete(key)
    for seq, f in entries:
        if seq == s1:
            continue
        f = by_seq[s4] if seq == s3 else by_seq[s3] if seq == s4 else f
        r.xadd(key, f, id=f"{seq}-0")
    r.xadd(key, by_seq[s2], id=f"{entries[-1][0] + 1}-0")
    c.acked = [(k, cm, cv, s4 if k == k3 else s3 if k == k4 else sq) for k, cm, cv, sq in c.acked]


async def main_async(args):
    rnd = random.Random(args.seed)
    random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="chatgw-chaos-") as tmp:
        cl = Cluster(tmp, args)
        cl.start()
        st = Stats()
        fstats = {}
        try:
            await asyncio.sleep(0.5)
            cap = max(1, args.customers)
            agents = [Agent(i, cl.agent_token(f"chaos-agent-{i}", cap), cl, st)
                      for i in range(args.agents)]
            customers = [Customer(i, cl, st) for i in range(args.customers)]
            stop = asyncio.Event()
            tasks = [asyncio.ensure_future(x.run(stop)) for x in agents + customers]
            t0 = time.monotonic()
            await faults(cl, rnd, t0 + args.seconds, fstats, args.redis_kill)
            # settle: no new messages, everything back up, until every pending frame is acked
            # and every acked message has reached its receiver (or --settle runs out)
            for c in customers:
                c.sending = False
            cl.heal()
            deadline = time.monotonic() + args.settle
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                cl.heal()
                left = sum(1 for c in customers if c.pending) + sum(len(a.pending) for a in agents)
                if left:
                    print(f"chaos: settling, {left} frames not acked yet", file=sys.stderr)
                if any(c.pending for c in customers) or any(a.pending for a in agents):
                    continue
                logs = read_logs(cl.r, {conv for x in customers + agents for _, _, conv, _ in x.acked})
                res, _ = check(customers, agents, logs)
                if not res["lost_at_receiver"]:
                    break
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            convs = {conv for x in customers + agents for _, _, conv, _ in x.acked}
            if args.plant:  # the checker's own test: remove, duplicate and swap acked entries
                plant(cl.r, customers)
            logs = read_logs(cl.r, convs)
            res, problems = check(customers, agents, logs)
            unacked = sum(1 for c in customers if c.pending) + sum(len(a.pending) for a in agents)
            now = time.monotonic()
            for a in agents:
                if a.pending:
                    head = a.pending.get(a.inflight)
                    problems.append(f"{a.name}: {len(a.pending)} answers not acked, in flight "
                                    f"{a.inflight} sent {now - head[3] if head else -1:.1f} s ago")
            for c in customers:
                if c.pending:
                    problems.append(f"customer{c.i}: {c.pending[0]} not acked")
        finally:
            cl.stop()
            sanitizer = sanitizer_reports(tmp)
            if args.keep_logs:
                os.makedirs(args.keep_logs, exist_ok=True)
                for f in os.listdir(tmp):
                    if f.endswith(".log"):
                        subprocess.run(["cp", os.path.join(tmp, f), args.keep_logs])
    lat = st.latency
    summary = dict(seconds=args.seconds, seed=args.seed, fsync=args.fsync, customers=args.customers,
                   agents=args.agents, gateways=args.gateways, routers=args.routers,
                   messages_acked=res["acked"],
                   customer_messages_acked=sum(len(c.acked) for c in customers),
                   agent_messages_acked=sum(len(a.acked) for a in agents), frames_sent=st.sent, unacked_at_end=unacked,
                   faults=sum(fstats.values()), faults_by_kind=fstats, reconnects=st.reconnects,
                   errors=st.errors, lost=res["lost"], duplicated=res["duplicated"],
                   reordered=res["reordered"], lost_at_receiver=res["lost_at_receiver"],
                   dup_on_a_connection=res["dup_at_receiver"],
                   gaps_on_a_connection=res["gaps_at_receiver"],
                   seq_skips_after_redis_restarts=res["seq_skips"],
                   ack_latency_ms={"p50": round(pct(lat, 50) * 1000, 1),
                                   "p99": round(pct(lat, 99) * 1000, 1),
                                   "max": round(max(lat or [0]) * 1000, 1)})
    print(json.dumps(summary, indent=2))
    for p in problems[:20]:
        print("  " + p)
    bad = sum(res[k] for k in res if k not in ("acked", "seq_skips")) + unacked  # unacked: did not recover
    if sanitizer:
        print("sanitizer reports in: " + ", ".join(sanitizer))
        bad += len(sanitizer)
    print(f"chaos: {res['acked']} messages acked, {summary['faults']} faults, {st.reconnects} "
          f"reconnects, lost {res['lost']} (+{res['lost_at_receiver']} at the receiver), duplicated "
          f"{res['duplicated']} (+{res['dup_at_receiver']} on a connection), reordered "
          f"{res['reordered']} (+{res['gaps_at_receiver']} gaps on a connection; "
          f"{res['seq_skips']} number skips after Redis restarts), ack p99 "
          f"{summary['ack_latency_ms']['p99']} ms, {unacked} never acked: {'FAIL' if bad else 'ok'}")
    return 1 if bad or not res["acked"] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--settle", type=float, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--customers", type=int, default=20)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--gateways", type=int, default=2)
    ap.add_argument("--routers", type=int, default=2)
    ap.add_argument("--fsync", choices=("always", "everysec"), default="everysec")
    ap.add_argument("--redis-kill", dest="redis_kill", action="store_true", default=True)
    ap.add_argument("--no-redis-kill", dest="redis_kill", action="store_false")
    ap.add_argument("--plant", action="store_true",
                    help="damage the logs before checking (the checks must then fail)")
    ap.add_argument("--keep-logs", help="copy the processes' logs into this directory")
    args = ap.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
