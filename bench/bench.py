"""make bench: an open-loop benchmark of chatgw as `make run` starts it (and of the floor relay).

  /usr/bin/python3 bench/bench.py [--conversations N] [--rate R] [--duration S] [--procs P]
                                  [--agents A] [--mode relay|assign] [--target chatgw|floor|both]

relay (default): N conversations, each assigned to one of A agents before timing starts; then
each customer sends R texts a second for S seconds on a schedule fixed in advance, from P Node
load processes (bench/loadgen.mjs), and the agent serving the conversation answers every text.
Latency is counted from the scheduled send time. Printed: offered and achieved rates, c2a / a2c
p50 / p99 / p999, lost and duplicated (the run fails on any), error frames by code, CPU per
delivered message of every process, Redis commands and AOF bytes per message, and (a probe under
MONITOR after the timed window) which commands are client round trips and which run inside
functions. assign: idle assignment (one conversation at a time) and a burst of new conversations.
--target both: the floor relay (../shared/bench/relay.c) and then chatgw under the same load.
The last line printed is the result as one JSON object.
"""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from loadprocs import LoadProcs, ensure_node_modules  # noqa: E402
from measure import (Monitor, Syscalls, cpu_delta, cpu_snapshot, loadavg,  # noqa: E402
                     machine_cpu, percentiles, redis_delta, redis_snapshot)
from servers import Chatgw, Floor, floor_dir_default  # noqa: E402
import report  # noqa: E402

SKILLS = "general,presales,faq,tech_support,after_sales,complaints,supervisors"
MAX_CAP = 100  # chatgw-token --cap


def now_us():
    return time.monotonic_ns() / 1000


def wait_until(pred, timeout, interval=0.05):
    """Poll pred() until truthy or timeout s; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def wait_progress(check, quiet_s, max_s, interval=0.1):
    """Poll check() -> (done, progress) until done, or until progress has not changed for
    quiet_s seconds, or max_s passed; returns done."""
    start = last = time.monotonic()
    seen = None
    while True:
        done, progress = check()
        now = time.monotonic()
        if done:
            return True
        if progress != seen:
            seen, last = progress, now
        if now - last > quiet_s or now - start > max_s:
            return False
        time.sleep(interval)


def agent_tokens(server, n_agents, n_convs):
    """Tokens of n_agents agents with room for n_convs conversations between them."""
    if server.name != "chatgw":
        return []
    cap = math.ceil(n_convs / n_agents)
    if cap > MAX_CAP:
        raise SystemExit(f"bench: {n_convs} conversations need at least "
                         f"{math.ceil(n_convs / MAX_CAP)} agents (cap <= {MAX_CAP})")
    return [server.agent_token(f"bench-agent-{i}", cap, SKILLS) for i in range(n_agents)]


class BacklogSampler:
    """Samples the server's backlog (entries the routers have not handled) twice a second."""

    def __init__(self, server):
        self.server, self.max_unread, self.max_pending = server, 0, 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.wait(0.5):
            unread, pending = self.server.backlog()
            self.max_unread = max(self.max_unread, unread)
            self.max_pending = max(self.max_pending, pending)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(5)


class Window:
    """CPU of every process, Redis counters and the load average between start() and stop()."""

    def __init__(self, server, load):
        self.server, self.pids = server, {**server.cpu_pids, **load.pids}

    def _redis(self):
        return redis_snapshot(self.server.redis, self.server.own_calls)

    def start(self):
        self.log0 = len(self.server.log.lines)
        self.load0, self.cpu0, self.machine0 = loadavg(), cpu_snapshot(self.pids), machine_cpu()
        self.redis0, self.t0 = self._redis(), time.monotonic()
        self.sys = Syscalls(self.server.cpu_pids).start()

    def stop(self):
        """Ends the window. `machine`: how busy all cores were, and the share of one core that
        processes other than the measured ones (other builds, bench.py itself) took."""
        self.seconds = time.monotonic() - self.t0
        self.cpu = cpu_delta(self.cpu0, cpu_snapshot(self.pids))
        self.syscalls = self.sys.stop()
        busy, total = (b - a for a, b in zip(self.machine0, machine_cpu()))
        ours = sum(v or 0 for v in self.cpu.values())
        self.machine = {"cores": os.cpu_count(),
                        "busy_pct": round(100 * busy / total, 1) if total else None,
                        "others_pct_of_one_core": round(100 * (busy - ours) / self.seconds, 1)}
        self.redis = redis_delta(self.redis0, self._redis())
        self.load1 = loadavg()
        self.log = self.server.log.problems(self.log0)

    def cpu_us_per(self, n, server_names):
        """CPU us per unit (n of them) of every process, and of the server's processes together."""
        out = {k: round(v * 1e6 / n, 1) if v is not None and n else None
               for k, v in self.cpu.items()}
        parts = [self.cpu[k] for k in server_names]
        out["server"] = round(sum(parts) * 1e6 / n, 1) if n and None not in parts else None
        return out

    def syscalls_per(self, n):
        """System calls per unit (n of them) of every server process, and of them together."""
        out = {k: round(v / n, 2) if v is not None and n else None
               for k, v in self.syscalls.items()}
        vals = list(self.syscalls.values())
        out["server"] = round(sum(vals) / n, 2) if n and vals and None not in vals else None
        return out

    def cpu_pct(self):
        return {k: round(100 * v / self.seconds, 1) if v is not None else None
                for k, v in self.cpu.items()}


def merge_losses(reports):
    """Lost / duplicated per (conversation, k) over every load process."""
    sent = {}
    for r in reports:
        for i, n in r["sent_per_conv"].items():
            sent[i] = sent.get(i, 0) + n
    seen, copies = {}, 0
    for r in reports:
        for i, ks in r["recv"].items():
            seen.setdefault(i, set()).update(ks)
            copies += len(ks)
    unique = sum(len(s) for s in seen.values())
    replies = sum(r["replies"] for r in reports)
    got_back = sum(r["got_back"] for r in reports)
    return {"lost_c2a": sum(sent.values()) - unique,
            "dup_c2a": sum(r["dup"] for r in reports) + copies - unique,
            "lost_a2c": replies - got_back, "dup_a2c": sum(r["dup_back"] for r in reports),
            "seq_gaps": sum(r["seq_gaps"] for r in reports),
            "seq_dups": sum(r["seq_dups"] for r in reports)}


def sum_errors(reports):
    out = {}
    for r in reports:
        for code, n in r["errors"].items():
            out[code] = out.get(code, 0) + n
    return out


def redis_figures(win, customer_msgs, msgs):
    """Redis work of the window per message (both directions) and per customer message (which
    here includes the agent's answer to it); AOF bytes unless the AOF was rewritten meanwhile."""
    calls = win.redis["calls"]
    total = sum(calls.values())
    per = (lambda x: round(x / customer_msgs, 2)) if customer_msgs else (lambda x: None)
    aof = win.redis["aof_bytes"]
    return {"cmds_per_msg": round(total / msgs, 2) if msgs else None,
            "cmds_per_customer_msg": per(total),
            "fcall_per_customer_msg": per(calls.get("fcall", 0)),
            "by_command_per_customer_msg": {k: per(v) for k, v in
                                            sorted(calls.items(), key=lambda kv: -kv[1])},
            "aof_bytes_per_msg": round(aof / msgs) if aof is not None and msgs else None,
            "aof_rewritten": win.redis["aof_rewritten"]}


def probe_once(server, load, n, procs, answered):
    """n customer texts (answered or not) under MONITOR, once the server is idle: the Redis
    commands, split into client round trips and commands inside functions, and AOF bytes."""
    before = load.stat()
    r0 = redis_snapshot(server.redis, server.own_calls)
    with Monitor(server.redis) as mon:
        sent = sum(x["sent"] for x in load.call(
            {"cmd": "probe", "n": math.ceil(n / procs), "answered": answered}, "sent", 30))

        def done():
            st = load.stat()
            return (st["got"] >= before["got"] + sent
                    and (not answered or st["gotBack"] >= before["gotBack"] + sent)
                    and server.backlog() == (0, 0))
        wait_until(done, 30)
    d = redis_delta(r0, redis_snapshot(server.redis, server.own_calls))
    if mon.error or not sent:
        raise RuntimeError(mon.error or "nothing sent")
    return sent, mon.top, mon.inner, d["aof_bytes"]


def probe(server, load, n, procs):
    """After the timed window: one customer message alone (probe 1: not answered) and one
    answered (probe 2), so the agent's reply is probe 2 - probe 1. Per message: Redis round
    trips and in-function commands by name, AOF bytes (exact even when the AOF was rewritten
    during the timed window). Background work (timers, heartbeats) in the probe's ~1 s counts."""
    if n <= 0:
        return None
    try:
        n1, top1, in1, aof1 = probe_once(server, load, n, procs, False)
        n2, top2, in2, aof2 = probe_once(server, load, n, procs, True)
    except RuntimeError as e:
        return {"error": str(e)}

    def per(counts, k, minus=None, k2=1):
        out = {c: v / k - (minus or {}).get(c, 0) / k2 for c, v in counts.items()}
        for c, v in (minus or {}).items():
            out.setdefault(c, -v / k2)
        return {c: round(v, 2) for c, v in sorted(out.items(), key=lambda kv: -kv[1])
                if round(v, 2) > 0}

    def part(top, inner, aof):
        return {"round_trips_per_msg": round(sum(top.values()), 2),
                "in_functions_per_msg": round(sum(inner.values()), 2),
                "round_trips": top, "in_functions": inner,
                "aof_bytes_per_msg": None if aof is None else round(aof)}
    cust = part(per(top1, n1), per(in1, n1), None if aof1 is None else aof1 / n1)
    reply = part(per(top2, n2, top1, n1), per(in2, n2, in1, n1),
                 None if aof1 is None or aof2 is None else aof2 / n2 - aof1 / n1)
    return {"messages": n1, "customer_msg": cust, "agent_reply": reply}


def run_relay(server, a):
    tokens = agent_tokens(server, a.agents, a.conversations)
    load = LoadProcs(server.name, server.url, a.conversations, a.procs, tokens, server.workdir,
                     rate=a.rate, seed=a.seed)
    try:
        load.call({"cmd": "agents"}, "agents_up", 120)
        ready = load.call({"cmd": "customers", "warm": True, "timeout_s": a.warm_timeout},
                          "ready", a.warm_timeout + 300)
        win = Window(server, load)
        t0 = now_us() + 300_000
        load.send({"cmd": "go", "t0_us": t0, "dur_s": a.duration})
        time.sleep(max(0, (t0 - now_us()) / 1e6))
        win.start()
        with BacklogSampler(server) as backlog:
            sent = load.collect("sent", a.duration + 120)
        n_sent = sum(s["sent"] for s in sent)
        t_sent = time.monotonic()

        def delivered():
            st = load.stat()
            return (st["got"] >= st["sent"] and st["gotBack"] >= st["replies"],
                    (st["got"], st["gotBack"]))
        wait_progress(delivered, a.drain, a.max_drain)
        t_delivered = time.monotonic()

        def caught_up():
            b = server.backlog()
            return b == (0, 0), b
        wait_progress(caught_up, a.drain, a.max_drain)
        t_idle = time.monotonic()
        win.stop()
        left = server.backlog()
        pr = probe(server, load, a.probe, a.procs)
        reports = load.call({"cmd": "report"}, "report", 120)
    finally:
        load.stop()

    lat = [x for r in reports for x in r["lat_us"]]
    lat_back = [x for r in reports for x in r["lat_back_us"]]
    last = max([r["last_got_us"] for r in reports] + [t0])
    last_back = max([r["last_got_back_us"] for r in reports] + [t0])
    losses = merge_losses(reports)
    not_ready = sum(r["not_ready"] for r in ready)
    n_ready = sum(r["ready"] for r in ready)
    delivered = len(lat) + len(lat_back)
    names = ["gateway", "router", "redis"] if server.name == "chatgw" else ["relay", "redis"]
    res = {
        "bench": server.name, "mode": "relay", "conversations": a.conversations,
        "agents": len(tokens), "rate_per_conv": a.rate, "duration_s": a.duration, "procs": a.procs,
        "warmup_s": round(max(r["warm_ms"] for r in ready) / 1000, 2), "not_ready": not_ready,
        "offered_c2a_per_s": round(n_ready * a.rate, 1),
        "sent_c2a": n_sent, "delivered_c2a": len(lat), "delivered_a2c": len(lat_back),
        "achieved_c2a_per_s": round(len(lat) / max(1e-6, (last - t0) / 1e6), 1),
        "achieved_a2c_per_s": round(len(lat_back) / max(1e-6, (last_back - t0) / 1e6), 1),
        "c2a_ms": percentiles(lat), "a2c_ms": percentiles(lat_back),
        # from the time a gateway accepted each message (the frame's ts): chatgw only
        "c2a_accepted_ms": percentiles([x for r in reports for x in r.get("acc_lat_us", [])]),
        "a2c_accepted_ms": percentiles([x for r in reports for x in r.get("acc_lat_back_us", [])]),
        "lost": losses["lost_c2a"] + losses["lost_a2c"], **losses,
        "errors": sum_errors(reports),
        "cpu_us_per_msg": win.cpu_us_per(delivered, names), "cpu_pct": win.cpu_pct(),
        "syscalls_per_msg": win.syscalls_per(delivered),
        "window_s": round(win.seconds, 2), "server_log": win.log, "machine": win.machine,
        "retries": sum(r["retries"] for r in reports),
        "backlog": {"max_unread": backlog.max_unread, "max_pending": backlog.max_pending,
                    "delivered_after_s": round(t_delivered - t_sent, 2),
                    "caught_up_after_s": round(t_idle - t_sent, 2), "left": left[0] + left[1]},
        "redis": redis_figures(win, n_sent, delivered), "probe": pr,
        "generator_lag_ms": {"p99": max(s["lag"]["p99"] or 0 for s in sent),
                             "max": max(s["lag"]["max"] or 0 for s in sent)},
        "loadavg": {"start": win.load0, "end": win.load1},
    }
    res["ok"] = (res["lost"] == 0 and res["dup_c2a"] == 0 and res["dup_a2c"] == 0
                 and res["seq_gaps"] == 0 and res["seq_dups"] == 0 and not_ready == 0
                 and res["backlog"]["left"] == 0)
    return res


def run_assign(server, a):
    """Idle: a.idle conversations one after the other (a.idle_gap_ms apart, agents free); then a
    burst of a.burst new conversations whose first messages are all scheduled at one instant.
    Latency: scheduled first message -> the agent's `assigned`."""
    n = a.idle + a.burst
    tokens = agent_tokens(server, a.agents, n)
    load = LoadProcs(server.name, server.url, n, a.procs, tokens, server.workdir,
                     answer_hello=False)
    try:
        load.call({"cmd": "agents"}, "agents_up", 120)
        load.call({"cmd": "customers", "warm": False, "timeout_s": a.warm_timeout}, "ready",
                  a.warm_timeout + 300)
        t_idle = now_us() + 300_000
        load.call({"cmd": "first", "t0_us": t_idle, "gap_us": a.idle_gap_ms * 1000, "gfrom": 0,
                   "n": a.idle}, "sent", a.idle * a.idle_gap_ms / 1000 + 60)
        wait_until(lambda: load.stat()["assigned"] >= a.idle, 30)
        win = Window(server, load)
        t_burst = now_us() + 300_000
        load.send({"cmd": "first", "t0_us": t_burst, "gap_us": 0, "gfrom": a.idle, "n": a.burst})
        time.sleep(max(0, (t_burst - now_us()) / 1e6))
        win.start()
        load.collect("sent", 120)
        def all_assigned():
            got = load.stat()["assigned"]
            return got >= n, got
        wait_progress(all_assigned, a.drain, a.max_drain)

        def caught_up():  # greetings, timers: their CPU counts
            b = server.backlog()
            return b == (0, 0), b
        wait_progress(caught_up, a.drain, a.max_drain)
        win.stop()
        reports = load.call({"cmd": "report"}, "report", 120)
    finally:
        load.stop()

    first, assigned = {}, {}
    for r in reports:
        first.update(r["first_sent"])
        for conv, t in r["assigned_at"].items():
            assigned[conv] = min(t, assigned.get(conv, t))
    idle = [assigned[c] - t for c, t in first.items() if t < t_burst and c in assigned]
    burst = [assigned[c] - t for c, t in first.items() if t >= t_burst and c in assigned]
    burst_end = max([assigned[c] for c, t in first.items() if t >= t_burst and c in assigned]
                    + [t_burst])
    unassigned = n - len(idle) - len(burst)
    names = ["gateway", "router", "redis"]
    res = {
        "bench": server.name, "mode": "assign", "agents": len(tokens), "procs": a.procs,
        "idle_n": a.idle, "idle_gap_ms": a.idle_gap_ms, "idle_assign_ms": percentiles(idle),
        "burst_n": a.burst, "burst_assigned": len(burst),
        "burst_assigned_per_s": round(len(burst) / max(1e-6, (burst_end - t_burst) / 1e6), 1),
        "burst_assign_ms": percentiles(burst), "unassigned": unassigned,
        "errors": sum_errors(reports),
        "burst_cpu_us_per_conv": win.cpu_us_per(len(burst), names), "cpu_pct": win.cpu_pct(),
        "burst_redis_cmds_per_conv": round(sum(win.redis["calls"].values()) / len(burst), 1)
        if burst else None,
        "burst_fcall_per_conv": round(win.redis["calls"].get("fcall", 0) / len(burst), 2)
        if burst else None,
        "window_s": round(win.seconds, 2), "loadavg": {"start": win.load0, "end": win.load1},
        "server_log": win.log, "machine": win.machine,
    }
    res["ok"] = unassigned == 0
    return res


def run_target(name, a, workdir):
    if name == "floor":
        server = Floor(a.build, workdir, a.floor_dir)
    else:
        server = Chatgw(a.build, os.path.join(workdir, "chatgw"))
    os.makedirs(server.workdir, exist_ok=True)
    try:
        server.start()
        res = (run_assign if a.mode == "assign" else run_relay)(server, a)
    finally:
        server.stop()
    # ASan builds (BUILD=build/asan) report leaks at exit: the whole log counts
    san = server.log.problems(0)
    res["sanitizer_reports"] = san["sanitizer"]
    if san["sanitizer"]:
        res["ok"] = False
        print("bench: sanitizer report in the server's output:\n  " + "\n  ".join(san["first"]))
    return res


def side_by_side(a, workdir):
    """The floor, then chatgw, under the same load; the ratio of their c2a p99."""
    floor = run_target("floor", a, workdir)
    report.print_relay(floor)
    chat = run_target("chatgw", a, workdir)
    report.print_relay(chat)
    fp, cp = floor["c2a_ms"]["p99"], chat["c2a_ms"]["p99"]
    ratio = round(cp / fp, 2) if fp and cp is not None else None
    bound = max(100.0, 3 * fp) if fp is not None else None
    out = {"side_by_side": True, "floor": floor, "chatgw": chat, "c2a_p99_ratio": ratio,
           "c2a_p99_bound_ms": bound,
           "c2a_p99_within_bound": cp is not None and bound is not None and cp <= bound,
           "ok": floor["ok"] and chat["ok"]}
    report.print_comparison(out)
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("relay", "assign"), default="relay")
    ap.add_argument("--target", choices=("chatgw", "floor", "both"), default="chatgw")
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=3.0, help="texts per second per conversation")
    ap.add_argument("--duration", type=float, default=30, help="timed seconds")
    ap.add_argument("--procs", type=int, default=2, help="load processes")
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--drain", type=float, default=10,
                    help="after the last send, a message is lost once nothing arrived for this "
                         "many seconds")
    ap.add_argument("--max-drain", type=float, default=300,
                    help="after the last send, wait at most this many seconds for the rest")
    ap.add_argument("--warm-timeout", type=float, default=180)
    ap.add_argument("--probe", type=int, default=200, help="messages sent under MONITOR")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--burst", type=int, default=2000, help="assign: new conversations at once")
    ap.add_argument("--idle", type=int, default=100, help="assign: conversations one at a time")
    ap.add_argument("--idle-gap-ms", type=float, default=50)
    ap.add_argument("--floor-dir", default=floor_dir_default())
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    a = ap.parse_args(argv)
    if a.conversations < 1 or a.procs < 1 or a.agents < 1 or a.rate <= 0 or a.duration <= 0:
        ap.error("--conversations, --procs, --agents, --rate and --duration must be positive")
    if a.target != "chatgw" and a.mode == "assign":
        ap.error("--mode assign measures chatgw only")
    return a


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    a = parse_args(argv)
    if a.target != "chatgw" and not os.path.isfile(os.path.join(a.floor_dir, "relay.c")):
        print(f"bench: no floor relay at {a.floor_dir}/relay.c (set FLOOR_DIR or --floor-dir); "
              "side-by-side skipped")
        return 0
    ensure_node_modules()
    # Ctrl-C / SIGTERM: every process started runs in its own session; `finally` stops them.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        with tempfile.TemporaryDirectory(prefix="chatgw-bench-") as workdir:
            if a.target == "both":
                res = side_by_side(a, workdir)
            else:
                res = run_target(a.target, a, workdir)
                (report.print_assign if a.mode == "assign" else report.print_relay)(res)
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, separators=(",", ":")))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
