"""What `make bench` samples around its timed window: CPU of each process (/proc/<pid>/stat),
system calls of each server process (perf stat, when perf can count them), Redis commands (INFO
commandstats), AOF size (INFO persistence), load average, and the split of one message's Redis
commands into client round trips and commands run inside functions (MONITOR).
"""
import os
import shutil
import signal
import subprocess
import threading
import time

import redis

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Commands only bench.py sends (never chatgw); not counted. (It also polls XINFO GROUPS, which
# functions call too: those calls are counted by the caller and subtracted.)
OWN_COMMANDS = {"info", "monitor", "ping"}


def cpu_seconds(pid):
    """utime + stime of a process (all its threads) and of its waited-for children (Redis's AOF
    rewrites), in seconds; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()  # fields from the 3rd (state) on
    return sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime


class Syscalls:
    """System calls of each process between start() and stop(), counted by `perf stat -e
    raw_syscalls:sys_enter -p <pid>` (a kernel tracepoint counter: nothing is traced or slowed).
    counts: name -> calls, or None where perf is missing or may not count (not root, a locked
    perf_event_paranoid)."""

    EVENT = "raw_syscalls:sys_enter"

    def __init__(self, pids):
        self.pids, self.procs, self.counts = dict(pids), {}, {}

    def start(self):
        perf = shutil.which("perf")
        for name, pid in self.pids.items():
            if not perf or not pid:
                continue
            try:
                self.procs[name] = subprocess.Popen(
                    [perf, "stat", "-x", ",", "-e", self.EVENT, "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            except OSError:
                pass
        return self

    def stop(self):
        self.counts = {name: None for name in self.pids}
        for name, p in self.procs.items():
            p.send_signal(signal.SIGINT)
            try:
                _, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                continue
            for line in err.splitlines():  # "<count>,,raw_syscalls:sys_enter,..."
                f = line.split(",")
                if len(f) > 2 and f[2] == self.EVENT and f[0].isdigit():
                    self.counts[name] = int(f[0])
        return self.counts


def cpu_snapshot(pids):
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_delta(before, after):
    return {k: (after[k] - before[k]) if before.get(k) is not None and after.get(k) is not None
            else None for k in before}


def machine_cpu():
    """(busy, total) CPU seconds of every core since boot, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return (total - idle) / CLK_TCK, total / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def redis_snapshot(r, own=None):
    """{command: calls} from INFO commandstats less own (commands bench.py sent itself, by
    name), and the AOF size and rewrite count."""
    stats = r.info("commandstats")
    calls = {k[len("cmdstat_"):]: v["calls"] for k, v in stats.items()}
    for k, n in list((own or {}).items()):
        calls[k] = calls.get(k, 0) - n
    pers = r.info("persistence")
    return {"calls": calls, "aof_size": pers.get("aof_current_size", 0),
            "aof_rewrites": pers.get("aof_rewrites", 0)}


def redis_delta(before, after):
    calls = {k: n - before["calls"].get(k, 0) for k, n in after["calls"].items()
             if k not in OWN_COMMANDS and n - before["calls"].get(k, 0) > 0}
    rewrote = after["aof_rewrites"] != before["aof_rewrites"]
    return {"calls": calls, "aof_bytes": None if rewrote else after["aof_size"] - before["aof_size"],
            "aof_rewritten": rewrote}


class Monitor:
    """MONITOR in a thread: counts commands by name, split into those clients sent (round trips)
    and those run inside a function or script (`[0 lua]`). Heavy for Redis: only around a small
    probe, never during the timed window."""

    def __init__(self, r):
        pool = r.connection_pool
        kw = dict(pool.connection_kwargs)
        self.r = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **kw))
        self.top, self.inner = {}, {}
        self.stopping = False
        self.error = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = self.r.connection_pool.get_connection("MONITOR")
        try:
            conn.send_command("MONITOR")
            conn.read_response()
            self.started.set()
            while not self.stopping:
                if not conn.can_read(timeout=0.2):
                    continue
                line = conn.read_response()
                client, name = self.parse(line.decode("utf-8", "replace"))
                if name in OWN_COMMANDS or (name == "xinfo" and client != "lua"):
                    continue  # chatgw sends no XINFO itself (only its functions do)
                d = self.inner if client == "lua" else self.top
                d[name] = d.get(name, 0) + 1
        except Exception as e:  # reported; the bench goes on without the split
            self.error = repr(e)
            self.started.set()
        finally:
            conn.disconnect()

    @staticmethod
    def parse(line):
        """'<time> [<db> <client>] "<command>" "<arg>"...' -> (client, command name, with the
        function's name after FCALL). The client (lua, unix:..., host:port) holds no ']';
        arguments may, so only the command and its first argument are taken."""
        head, _, rest = line.partition("] ")
        client = head[head.index("[") + 1:].split(" ", 1)[1]
        parts = rest.split('"', 4)  # '', name, ' ', first argument, ...
        name = parts[1].lower()
        if name in ("fcall", "fcall_ro") and len(parts) > 3:
            name += " " + parts[3]  # which function
        return client, name

    def __enter__(self):
        self.thread.start()
        self.started.wait(5)
        time.sleep(0.05)  # MONITOR is acknowledged before the thread reads: let it settle
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join(5)
        self.r.connection_pool.disconnect()


def percentiles(values_us):
    """p50 / p99 / p999 / max in ms of a list of microseconds (None when empty)."""
    if not values_us:
        return {"p50": None, "p99": None, "p999": None, "max": None}
    s = sorted(values_us)

    def at(p):
        return round(s[min(len(s) - 1, int(p * len(s)))] / 1000, 2)
    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": round(s[-1] / 1000, 2)}
