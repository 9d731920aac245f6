"""Slow-loris against the webhooks (--target webhook) or the WebSocket endpoints (--target ws), on
loopback: what N slow connections cost the gateway.

Starts redis-server and the real gateway (secrets for Telegram, WeChat and Meta set), then keeps
--conns attacker connections open for --seconds: each sends a request head that announces a body
and then trickles it, one byte per --trickle seconds, the way a slow-loris does (every byte resets
a per-read timeout). When the gateway answers or closes, the connection is counted by the answer's
status and opened again after --reopen seconds. The kinds rotate: a WhatsApp body (only its HMAC
authenticates it: 100 kB or 200 B announced), a Telegram request with a wrong secret token, a
WeChat request with a bad query signature. Meanwhile a normal client posts a valid Telegram
update every half second and must get 200 each time. The gateway's RSS is sampled all along
(/proc/<pid>/status: VmRSS, and VmHWM for the peak).

--target ws: the attacker kinds rotate over a WebSocket upgrade whose request head never ends (a
header byte per --trickle seconds), a connection that completes the upgrade and then trickles
one message (a frame header announcing 1,000 bytes, then one byte per --trickle seconds: closed
after frame_timeout_ms), and one that completes the upgrade and never says hello (closed after
hello_timeout_ms). The normal client connects as a customer every half second, says hello and
one text, and must get its ack each time (latency: connect to ack).

Connections come from 127.0.0.2..127.0.0.9 so that ports do not run out; the default 10,000
connections stay under the 20,000 open files each process may have (the gateway holds one per
connection, this script one per connection).

  /usr/bin/python3 bench/webhook_slowloris.py [--target webhook|ws] [--conns 10000]
      [--seconds 30] [--build build] [--reopen 5] [--nofile 2048] [--timeline]
      [--env CHATGW_MAX_CONNS_PER_IP=0]

Note: libwebsockets 4.1 keeps every connection's timeout in one sorted list (O(n) per insertion):
when connections arrive faster than they are answered, thousands pile up, every accept gets
slower and the gateway stalls (perf: ~80 % in lws_dll2_add_sorted). --nofile caps how many
connections lws holds at once and shows the difference.
"""
import argparse
import asyncio
import hashlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
import http.client
import resource
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import conftest  # noqa: E402
from conftest import RedisServer, free_port, wait_until  # noqa: E402

TG_SECRET = "tg-secret_0123456789"
SECRETS = {"CHATGW_TELEGRAM_SECRET": TG_SECRET, "CHATGW_WECHAT_TOKEN": "AAAAA",
           "CHATGW_META_APP_SECRET": "meta-secret", "CHATGW_LOG_LEVEL": "info"}
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]


def head(kind, i):
    """The request head of attacker connection kind."""
    if kind == "meta_big":
        return (b"POST /channels/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\nContent-Length: 100000\r\n\r\n")
    if kind == "meta_small":
        return (b"POST /channels/whatsapp HTTP/1.1\r\nHost: x\r\n"
                b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\nContent-Length: 200\r\n\r\n")
    if kind == "tg_bad":
        return (b"POST /channels/telegram HTTP/1.1\r\nHost: x\r\n"
                b"X-Telegram-Bot-Api-Secret-Token: guessed-%d\r\nContent-Length: 60000\r\n\r\n" % i)
    ts = str(int(time.time())).encode()
    return (b"POST /channels/wechat?signature=" + b"0" * 40 + b"&timestamp=" + ts +
            b"&nonce=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n" % i)


KINDS = ["meta_big", "meta_small", "tg_bad", "wx_bad"]
WS_KINDS = ["ws_head", "ws_frame", "ws_silent"]
WS_UPGRADE = (b"GET /ws/customer HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n")
# a masked text frame announcing 1,000 bytes (16-bit length), mask key 0: the payload follows
WS_FRAME_HEAD = bytes([0x81, 0x80 | 126, 0x03, 0xE8, 0, 0, 0, 0])


def ws_start(kind):
    """What a WebSocket attacker sends first: the upgrade head, whole or not."""
    return WS_UPGRADE if kind == "ws_head" else WS_UPGRADE + b"\r\n"


def ws_trickle(kind, upgraded):
    """The next slow byte: one more header byte, one more payload byte, or nothing."""
    if kind == "ws_head":
        return b"X"
    if kind == "ws_frame" and upgraded:
        return b"{"
    return b""


class Stats:
    def __init__(self):
        self.opened = 0
        self.open_now = 0
        self.open_samples = []
        self.answers = {}
        self.connect_errors = 0


async def attacker(i, args, stats, stop):
    """One slot: open, send the head, trickle until answered or closed; again."""
    loop = asyncio.get_running_loop()
    kinds = WS_KINDS if args.target == "ws" else KINDS
    kind = kinds[i % len(kinds)]
    ws = args.target == "ws"
    await asyncio.sleep(args.ramp * i / args.conns)
    while not stop.is_set():
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((SOURCES[i % len(SOURCES)], 0))
            await loop.sock_connect(s, ("127.0.0.1", args.port))
        except OSError:
            stats.connect_errors += 1
            s.close()
            await asyncio.sleep(args.reopen)
            continue
        stats.opened += 1
        stats.open_now += 1
        status, upgraded = "closed", False
        try:
            await loop.sock_sendall(s, ws_start(kind) if ws else head(kind, i))
            while not stop.is_set():
                try:
                    got = await asyncio.wait_for(loop.sock_recv(s, 4096), args.trickle)
                    if not got:
                        break
                    if got.startswith(b"HTTP/1.1 101 ") and not upgraded:
                        upgraded = True  # the upgrade went through: now the slow part
                        if kind == "ws_frame":
                            await loop.sock_sendall(s, WS_FRAME_HEAD)
                        continue
                    if got.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):  # lws refuses in 1.0
                        status = got[9:12].decode()
                        break
                    if upgraded and got[0] & 0x0F == 0x8:  # a close frame: its code
                        status = "ws close %d" % int.from_bytes(got[2:4], "big")
                        break
                except asyncio.TimeoutError:
                    more = ws_trickle(kind, upgraded) if ws else b"{"
                    if more:
                        await loop.sock_sendall(s, more)
        except OSError:
            status = "reset"
        finally:
            stats.open_now -= 1
            s.close()
        if not stop.is_set():
            stats.answers[status] = stats.answers.get(status, 0) + 1
            await asyncio.sleep(args.reopen)


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """CPU seconds (user + system) the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def normal_post(port, n):
    body = json.dumps({"update_id": 5_000_000 + n, "message": {
        "message_id": n, "date": int(time.time()), "chat": {"id": 4242, "type": "private"},
        "from": {"id": 4242, "is_bot": False, "first_name": "Normal"}, "text": f"normal {n}"}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t = time.monotonic()
    try:
        c.request("POST", "/channels/telegram", body=body,
                  headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
        r = c.getresponse()
        r.read()
        return r.status, time.monotonic() - t
    except OSError as e:
        return f"error {e}", time.monotonic() - t
    finally:
        c.close()


def normal_ws(port, n):
    """A customer connects, says hello and one text: (ack or what came instead, seconds)."""
    import websockets

    async def go():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/customer",
                                      subprotocols=["chatgw.json.v1"], open_timeout=10) as c:
            await c.send(json.dumps({"type": "hello"}))
            while json.loads(await asyncio.wait_for(c.recv(), 10)).get("type") != "welcome":
                pass
            await c.send(json.dumps({"type": "text", "cmid": f"n{n}", "text": f"normal {n}"}))
            while True:
                f = json.loads(await asyncio.wait_for(c.recv(), 10))
                if f.get("cmid") == f"n{n}":
                    return f.get("type")
    t = time.monotonic()
    try:
        got = asyncio.run(go())
        return (200 if got == "ack" else got), time.monotonic() - t
    except Exception as e:  # noqa: BLE001 -- what went wrong is the figure
        return f"error {type(e).__name__}", time.monotonic() - t


async def run(args, pid):
    stats = Stats()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(attacker(i, args, stats, stop)) for i in range(args.conns)]
    samples, normal = [], []
    loop = asyncio.get_running_loop()
    end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        samples.append(rss_kb(pid))
        stats.open_samples.append(stats.open_now)
        if args.timeline:
            print(f"  t={args.seconds - (end - time.monotonic()):5.1f}s rss={samples[-1] / 1024:6.1f}MB "
                  f"fds={len(os.listdir(f'/proc/{pid}/fd')):5d} cpu={cpu_s(pid):6.2f}s "
                  f"attacker_open={stats.open_now:5d} answers={sum(stats.answers.values())}",
                  flush=True)
        n += 1
        probe = normal_ws if args.target == "ws" else normal_post
        normal.append(await loop.run_in_executor(None, probe, args.port, n))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats, samples, normal


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=("webhook", "ws"), default="webhook")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--trickle", type=float, default=1.0, help="seconds between body bytes")
    ap.add_argument("--reopen", type=float, default=1.0, help="seconds before a slot reconnects")
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds over which slots start")
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--nofile", type=int, default=0,
                    help="the gateway's open-files limit (libwebsockets accepts at most that many "
                         "connections); 0: inherited")
    ap.add_argument("--timeline", action="store_true", help="print every sample")
    ap.add_argument("--keep-log", help="copy the gateway's log there")
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the gateway")
    args = ap.parse_args()
    build = os.path.join(conftest.ROOT, args.build)
    with tempfile.TemporaryDirectory() as tmp:
        srv = RedisServer(tmp)
        srv.start()
        args.port = free_port()
        env = dict(os.environ, CHATGW_REDIS_URL=srv.url, CHATGW_JWT_SECRET=conftest.JWT_SECRET,
                   CHATGW_LISTEN=f"127.0.0.1:{args.port}", CHATGW_GATEWAY_ID="slowloris",
                   **SECRETS, **dict(kv.split("=", 1) for kv in args.env))
        # stderr to a file, not a pipe: a reader starved by the attack would block the gateway
        log_path = os.path.join(tmp, "gateway.log")
        with open(log_path, "w") as log_file:
            def limit():
                if args.nofile:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
            gw = subprocess.Popen([os.path.join(build, "chatgw-gateway")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=log_file, cwd=conftest.ROOT,
                                  preexec_fn=limit)
        try:
            wait_until(lambda: "gateway slowloris ready" in open(log_path).read(), 15,
                       "the gateway to be ready")
            pid = gw.pid
            print(f"gateway pid {pid}", flush=True)
            base = rss_kb(pid)
            stats, samples, normal = asyncio.run(run(args, pid))
            peak = rss_kb(pid, "VmHWM")
        finally:
            gw.terminate()
            gw.wait(15)
            srv.kill()
            with open(log_path) as f:
                lines = f.readlines()
            if args.keep_log:
                with open(args.keep_log, "w") as f:
                    f.writelines(lines)
            log = [ln for ln in lines if " WARN " in ln or " ERROR " in ln]
    ok = [t for st, t in normal if st == 200]
    print(f"gateway {args.build} ({args.target}, open files {args.nofile or 'inherited'}): {args.conns} slow connections for {args.seconds:.0f} s "
          f"(trickle 1 B / {args.trickle} s, reopen after {args.reopen} s)")
    print(f"  RSS: before {base / 1024:.1f} MB, during max {max(samples) / 1024:.1f} MB "
          f"(median {statistics.median(samples) / 1024:.1f} MB), peak VmHWM {peak / 1024:.1f} MB, "
          f"cost {(max(samples) - base) / 1024:.1f} MB")
    print(f"  attacker: {stats.opened} connections opened, open at once: max "
          f"{max(stats.open_samples)}, median {statistics.median(stats.open_samples):.0f}; "
          f"answers {dict(sorted(stats.answers.items()))}; connect errors {stats.connect_errors}")
    print(f"  normal client: {len(ok)}/{len(normal)} answered (200 / ack); latency median "
          f"{statistics.median(ok) * 1000 if ok else float('nan'):.1f} ms, max "
          f"{max(ok) * 1000 if ok else float('nan'):.1f} ms; others "
          f"{[st for st, _ in normal if st != 200][:5]}")
    print(f"  gateway warnings/errors: {len(log)}; last: {[ln.strip()[:160] for ln in log[-3:]]}")


if __name__ == "__main__":
    main()
