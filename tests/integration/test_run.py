"""`make run` (tools/run.sh): embedded redis, gateway and router, demo agent link, clean Ctrl-C."""
import asyncio
import os
import re
import signal
import stat
import subprocess
import urllib.request

from chat import agent
from conftest import BUILD, ROOT, Proc, free_port


class _Gw:  # what chat.agent() needs
    def __init__(self, port):
        self.ws = f"ws://127.0.0.1:{port}"


def assert_private(top):
    """Nothing under top (AOF, log, secret, socket) is open to group or others."""
    paths = [top] + [os.path.join(d, n) for d, ds, fs in os.walk(top) for n in ds + fs]
    assert len(paths) > 4, paths
    for path in paths:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_make_run_starts_everything_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = dict(os.environ, BUILD=os.path.relpath(BUILD, ROOT), CHATGW_LISTEN=f"127.0.0.1:{port}",
               CHATGW_VAR_DIR=str(tmp_path / "var"), CHATGW_GATEWAY_ID="gwrun",
               CHATGW_ROUTER_ID="rtrun")
    env.pop("REDIS_URL", None)
    env.pop("CHATGW_JWT_SECRET", None)
    # a var/ left by an older run.sh, readable by everyone: run.sh makes it private
    (tmp_path / "var").mkdir(mode=0o755)
    (tmp_path / "var" / "old.log").write_text("x")
    os.chmod(tmp_path / "var" / "old.log", 0o644)
    # stdout (the banner) joins stderr, which the harness reads
    p = Proc("run.sh", ["setsid", "bash", "-c", 'exec bash "$0" 1>&2',
                        os.path.join(ROOT, "tools", "run.sh")], env)
    try:
        i = p.wait_log("agent console", 20)
        url = re.search(r"(http://\S+/agent#token=(\S+))", p.lines[i])
        assert url, p.lines[i]
        p.wait_log("gateway gwrun ready", 10)
        p.wait_log("router rtrun ready", 10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        metrics_token = (tmp_path / "var" / "metrics_token").read_text()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": "Bearer " + metrics_token})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and b"chatgw_redis_up 1" in r.read()
        assert (tmp_path / "var" / "appendonlydir").is_dir()  # AOF on, data under var/
        assert_private(tmp_path / "var")

        j = p.wait_log("supervisor      :", 10)
        sup = re.search(r"(http://\S+/agent#token=(\S+))", p.lines[j])
        assert sup, p.lines[j]
        assert "UNREACHABLE" not in p.text()  # the demo agents serve every shipped queue

        async def login():
            a = await agent(_Gw(port), url.group(2))
            assert a.welcome["sender_id"] == "demo-agent"
            await a.close()
            b = await agent(_Gw(port), sup.group(2))
            assert b.welcome["sender_id"] == "demo-supervisor"
            await b.close()
        asyncio.run(asyncio.wait_for(login(), 20))
    finally:
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        p.proc.wait(20)
        p.reader.join(5)
    out = p.text()
    assert "chatgw stopped." in out
    assert out.count("clean shutdown") == 2, out[-2000:]
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "var")], capture_output=True, text=True)
    assert left.stdout == "", f"processes left running: {left.stdout}"
