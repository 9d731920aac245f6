"""Integration harness: a real redis-server and the real chatgw binaries on free ports.

Fixtures:
  redis_srv  -- a fresh redis-server per test (.url, .port, .r, .kill(), .start()); a test that
                needs Redis over TLS builds RedisServer(dir, tls=...) itself (test_redis_tls.py)
  procs      -- starts gateways/routers (procs.gateway(env), procs.router(env)) and mints tokens
                (procs.agent_token(...)); everything is stopped at the end of the test, and any
                sanitizer report in a process's stderr fails the test.
Run with /usr/bin/python3 (Debian's websockets, redis, msgpack, pytest).
"""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
JWT_SECRET = "integration-test-secret-0123456789abcdef"
METRICS_TOKEN = "integration-metrics-token-0123456789"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")


def load_libraries(r):
    """Load the Redis function library as the binaries carry it (build/gen/redis/chatgw.lua: the
    schema's prelude and the domain parts of redis/, assembled by make build)."""
    with open(os.path.join(BUILD, "gen", "redis", "chatgw.lua"), encoding="utf-8") as f:
        r.function_load(f.read(), replace=True)


class InjectedClock:
    """An injected clock for the chatgw processes (CHATGW_TEST_CLOCK, common/util.c): their time
    is what this file says, and moves only when the test moves it, so a test of timers advances
    time instead of waiting for it. Starts at the real time (rounded to the second)."""

    def __init__(self, workdir, start_ms=None):
        self.path = os.path.join(str(workdir), "clock")
        self.set(start_ms if start_ms is not None else int(time.time()) * 1000)

    def set(self, ms):
        self.ms = int(ms)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(self.ms))
        os.replace(tmp, self.path)

    def advance(self, ms):
        self.set(self.ms + ms)
        return self.ms

    @property
    def env(self):
        return {"CHATGW_TEST_CLOCK": self.path}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, what="condition", interval=0.01):
    """Poll pred() until it is truthy (returns its value) or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """redis-server on a free port. tls (optional): an object with .ca, .server_cert,
    .server_key, .client_cert, .client_key (paths; the client pair may be None) and
    .auth_clients (bool): the server then listens on a TLS port only (port 0), .url is
    rediss://, .r talks TLS, and .env gives the chatgw processes the CA (and client pair).
    args: more redis-server arguments (e.g. ACL users)."""

    def __init__(self, workdir, tls=None, args=()):
        self.port = free_port()
        self.dir = workdir
        self.proc = None
        self.tls = tls
        self.args = list(args)
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}"
        kw = {}
        if tls:
            kw = dict(ssl=True, ssl_ca_certs=tls.ca, ssl_certfile=tls.client_cert,
                      ssl_keyfile=tls.client_key)
        self.r = redis.Redis(host="127.0.0.1", port=self.port, **kw)

    @property
    def env(self):
        """What a chatgw process needs besides CHATGW_REDIS_URL to reach this server."""
        if not self.tls:
            return {}
        e = {"CHATGW_REDIS_TLS_CA": self.tls.ca}
        if self.tls.client_cert:
            e.update(CHATGW_REDIS_TLS_CERT=self.tls.client_cert,
                     CHATGW_REDIS_TLS_KEY=self.tls.client_key)
        return e

    def _listen_args(self):
        if not self.tls:
            return ["--port", str(self.port)]
        t = self.tls
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", t.server_cert,
                "--tls-key-file", t.server_key, "--tls-ca-cert-file", t.ca,
                "--tls-auth-clients", "yes" if t.auth_clients else "no"]

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", *self._listen_args(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log"),
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                return self.r.ping()
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise AssertionError("redis-server exited at start")
                return False
        wait_until(up, 10, "redis-server to answer PING")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.r.connection_pool.disconnect()


class Proc:
    """A chatgw process whose stderr is read line by line into .lines."""

    def __init__(self, name, args, env):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=ROOT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF marker
            self.cond.notify_all()

    @property
    def pid(self):
        return self.proc.pid

    def text(self):
        return "\n".join(l for l in self.lines if l is not None)

    def wait_log(self, substr, timeout=10.0, start=0):
        """Block until a stderr line (from index start) contains substr; return its index."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        raise AssertionError(f"{self.name} exited before logging {substr!r}:\n"
                                             + self.text()[-3000:])
                    if substr in line:
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: no {substr!r} within {timeout}s:\n"
                                         + self.text()[-3000:])
                self.cond.wait(left)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout}s on signal {sig}")
        self.reader.join(5)
        return self.proc.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def sanitizer_report(self):
        t = self.text()
        for m in SANITIZER_MARKS:
            if m in t:
                return t
        return None


class Procs:
    def __init__(self, redis_srv, tmpdir):
        self.redis = redis_srv
        self.tmpdir = tmpdir
        self.all = []
        self.n = 0

    def _env(self, extra):
        env = dict(os.environ)
        env.update(getattr(self.redis, "env", {}))
        env.update({"CHATGW_REDIS_URL": self.redis.url, "CHATGW_JWT_SECRET": JWT_SECRET,
                    "CHATGW_LOG_LEVEL": "debug"})
        env.update({k: str(v) for k, v in (extra or {}).items()})
        return env

    def gateway(self, env=None, wait_ready=True):
        self.n += 1
        port = free_port()
        e = self._env({"CHATGW_LISTEN": f"127.0.0.1:{port}", "CHATGW_GATEWAY_ID": f"gw{self.n}",
                       "CHATGW_WWW_DIR": os.path.join(ROOT, "gateway", "www"),
                       "CHATGW_METRICS_TOKEN": METRICS_TOKEN})
        e.update({k: str(v) for k, v in (env or {}).items()})
        assert e["CHATGW_GATEWAY_ID"] == f"gw{self.n}", "tests wait for 'gateway gw<n> ready'"
        p = Proc(f"gateway{self.n}", [os.path.join(BUILD, "chatgw-gateway")], e)
        p.port = port
        p.base = f"http://127.0.0.1:{port}"
        p.ws = f"ws://127.0.0.1:{port}"
        p.ready_line = f"gateway gw{self.n} ready"
        self.all.append(p)
        if wait_ready:
            p.wait_log(p.ready_line, 15)
        return p

    def router(self, env=None, wait_ready=True):
        self.n += 1
        e = self._env({"CHATGW_ROUTER_ID": f"router{self.n}"})
        e.update({k: str(v) for k, v in (env or {}).items()})
        p = Proc(f"router{self.n}", [os.path.join(BUILD, "chatgw-router")], e)
        p.ready_line = f"router {e['CHATGW_ROUTER_ID']} ready"
        self.all.append(p)
        if wait_ready:
            p.wait_log(p.ready_line, 15)
        return p

    def agent_token(self, agent_id, name=None, skills=("general",), cap=1, ttl=3600):
        """Mint an agent token with the real chatgw-token tool."""
        args = [os.path.join(BUILD, "chatgw-token"), "--agent", agent_id,
                "--name", name or agent_id, "--skills", ",".join(skills), "--cap", str(cap),
                "--ttl", str(ttl)]
        out = subprocess.run(args, env=self._env({}), check=True, capture_output=True)
        return out.stdout.decode().strip()

    def teardown(self):
        reports = []
        for p in self.all:
            try:
                p.stop()
            except AssertionError as e:
                reports.append(str(e))
            rep = p.sanitizer_report()
            if rep:
                reports.append(f"sanitizer report in {p.name}:\n{rep[-6000:]}")
        return reports


@pytest.fixture
def redis_srv(tmp_path):
    srv = RedisServer(str(tmp_path))
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def procs(redis_srv, tmp_path):
    p = Procs(redis_srv, str(tmp_path))
    yield p
    reports = p.teardown()
    if reports:
        pytest.fail("\n\n".join(reports))
