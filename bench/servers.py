"""The systems under test of `make bench`: chatgw as `make run` starts it, and the floor relay.

Both start on free ports, expose the pids whose CPU is sampled (`cpu_pids`), a redis-py client of
their Redis (`redis`) and a WebSocket base URL (`url`), and `stop()` everything they started.
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from conftest import SANITIZER_MARKS, RedisServer, free_port  # noqa: E402


def children(pid):
    """[(comm, pid, argv)] of the live processes whose parent is pid (read from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == pid:
            out.append((st[st.index("(") + 1:st.rindex(")")], int(d), argv))
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


class LogTail:
    """Reads a process's output (stdout and stderr joined) into .lines, in a thread."""

    def __init__(self, proc):
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc):
        for raw in proc.stdout:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def wait_for(self, substr, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            i = 0
            while True:
                for line in self.lines[i:]:
                    if line is None:
                        raise RuntimeError(f"exited before logging {substr!r}:\n" + self.text())
                    if substr in line:
                        return line
                i = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no {substr!r} within {timeout} s:\n" + self.text())
                self.cond.wait(left)

    def problems(self, start=0):
        """Warnings, errors and sanitizer reports logged from line `start` on: counts and the
        first few lines."""
        with self.cond:
            lines = [l for l in self.lines[start:] if l is not None]
        warn = [l for l in lines if "] WARN " in l]
        err = [l for l in lines if "] ERROR " in l]
        san = [l for l in lines if any(m in l for m in SANITIZER_MARKS)]
        return {"warn": len(warn), "error": len(err), "sanitizer": len(san),
                "first": (san + err + warn)[:3]}

    def text(self, last=40):
        return "\n".join(l for l in self.lines[-last:] if l is not None)


class Chatgw:
    """tools/run.sh (what `make run` runs): embedded redis-server (unix socket, AOF on), one
    gateway, one router. Rate limits raised (agents answer dozens of customers a second)."""

    name = "chatgw"

    def __init__(self, build, workdir, env=None):
        self.build = build
        self.workdir = workdir
        self.var = os.path.join(workdir, "var")
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.secret = secrets.token_hex(32)
        self.env = dict(os.environ)
        self.env.pop("REDIS_URL", None)  # the embedded redis, as `make run` without REDIS_URL
        self.env.update({"BUILD": build, "CHATGW_VAR_DIR": self.var,
                         "CHATGW_LISTEN": f"127.0.0.1:{self.port}", "CHATGW_JWT_SECRET": self.secret,
                         "CHATGW_GATEWAY_ID": "bench-gw", "CHATGW_ROUTER_ID": "bench-rt",
                         "CHATGW_RATE_MSGS": "100000", "CHATGW_RATE_BURST": "100000",
                         # one address, many customers: the per-source limits are off for the load
                         "CHATGW_MAX_CONNS_PER_IP": "0", "CHATGW_CONV_PER_IP": "0",
                         "CHATGW_CONV_PER_CUSTOMER": "0"})
        self.env.update(env or {})
        self.proc = None
        self.pids = {}
        self.redis = None
        self.own_calls = {}  # commands bench.py sent, by commandstats name (not counted)

    def start(self):
        # Its own session: a Ctrl-C in the terminal reaches bench.py, which stops run.sh itself.
        self.proc = subprocess.Popen(["bash", os.path.join(ROOT, "tools", "run.sh")], env=self.env,
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.log = LogTail(self.proc)
        self.log.wait_for("gateway bench-gw ready", 30)
        self.log.wait_for("router bench-rt ready", 30)
        self.log.wait_for("chatgw is running", 30)  # after its short-lived helper commands
        # the servers, not `chatgw-router --check-config` or `chatgw-token`: no arguments
        kids = {comm: pid for comm, pid, argv in children(self.proc.pid)
                if comm == "redis-server" or len(argv) == 1}
        self.pids = {"gateway": kids.get("chatgw-gateway"), "router": kids.get("chatgw-router"),
                     "redis": kids.get("redis-server")}
        missing = [k for k, v in self.pids.items() if not v]
        if missing:
            raise RuntimeError(f"run.sh children not found: {missing} (have {kids})")
        self.redis = redis.Redis(unix_socket_path=os.path.join(self.var, "redis.sock"))
        self.redis.ping()

    @property
    def cpu_pids(self):
        return self.pids

    def backlog(self):
        """Entries of cg:{t:default}:in the routers have not finished: (unread, pending); unread is None when
        Redis cannot count them (then 1 if any is unread)."""
        self.own_calls["xinfo|groups"] = self.own_calls.get("xinfo|groups", 0) + 1
        g = next((g for g in self.redis.xinfo_groups("cg:{t:default}:in") if g["name"] == b"routers"), None)
        if g is None:
            return 0, 0
        unread = g.get("lag")
        if unread is None:
            self.own_calls["xinfo|stream"] = self.own_calls.get("xinfo|stream", 0) + 1
            last = self.redis.xinfo_stream("cg:{t:default}:in")["last-generated-id"]
            unread = int(g["last-delivered-id"] != last)
        return unread, g["pending"]

    def agent_token(self, agent_id, cap, skills):
        out = subprocess.run([os.path.join(ROOT, self.build, "chatgw-token"), "--agent", agent_id,
                              "--name", agent_id, "--skills", skills, "--cap", str(cap),
                              "--ttl", "86400"], env=self.env, check=True, capture_output=True)
        return out.stdout.decode().strip()

    def stop(self):
        """SIGTERM to run.sh (it stops gateway and router, then redis); whatever is still alive
        after 30 s is killed."""
        if self.redis is not None:
            self.redis.connection_pool.disconnect()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.pids.values():
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.log.thread.join(5)
        self.proc = None


class Floor:
    """The floor relay (../shared/bench/relay.c, mode redis): every message XADDed to one stream
    and delivered after a blocking XREAD returns it; its own redis-server (TCP, AOF on)."""

    name = "floor"

    def __init__(self, build, workdir, floor_dir):
        self.src = os.path.join(floor_dir, "relay.c")
        self.bin = os.path.join(ROOT, build, "bench", "floor-relay")
        self.workdir = os.path.join(workdir, "floor")
        self.port = self.url = None
        self.srv = None
        self.proc = None
        self.redis = None
        self.own_calls = {}

    def compile(self):
        if os.path.exists(self.bin) and os.path.getmtime(self.bin) >= os.path.getmtime(self.src):
            return
        os.makedirs(os.path.dirname(self.bin), exist_ok=True)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libwebsockets", "libuv",
                                "hiredis"], check=True, capture_output=True, text=True).stdout.split()
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", self.bin, self.src] + flags,
                       check=True)

    def start(self):
        self.compile()
        rdir = os.path.join(self.workdir, "redis")
        os.makedirs(rdir, exist_ok=True)
        self.srv = RedisServer(rdir)
        self.srv.start()
        self.redis = self.srv.r
        for attempt in range(3):
            if self._start_relay():
                return
            print(f"bench: the floor relay did not listen on {self.port} in 10 s ({self._why()});"
                  " trying another port", file=sys.stderr)
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("the floor relay does not listen:\n" + self.log.text())

    def _start_relay(self):
        """Start relay.c on a free port (chosen after Redis took its own); True once it accepts."""
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([self.bin, str(self.port), "redis", str(self.srv.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.log = LogTail(self.proc)
        deadline = time.monotonic() + 10
        while not _accepts(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError("the floor relay exited:\n" + self.log.text())
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _why(self):
        """What the relay is doing (for the message when it does not listen)."""
        try:
            with open(f"/proc/{self.proc.pid}/wchan") as f:
                wchan = f.read()
            socks = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
            mine = [l.split()[3] for l in socks.splitlines() if f"pid={self.proc.pid}," in l]
            return f"waiting in {wchan or '-'}, listening on {mine or 'nothing'}; log: {self.log.text(5)!r}"
        except OSError as e:
            return repr(e)

    @property
    def cpu_pids(self):
        return {"relay": self.proc.pid, "redis": self.srv.proc.pid}

    def backlog(self):
        return 0, 0  # the relay delivers what its XREAD returns: nothing is left behind

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.thread.join(5)
        if self.srv is not None:
            self.srv.kill()
        self.proc = self.srv = None


def _accepts(port):
    """True once something accepts TCP connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def floor_dir_default():
    return os.environ.get("FLOOR_DIR") or os.path.join(os.path.dirname(ROOT), "shared", "bench")


def have_node():
    return shutil.which("node") is not None
