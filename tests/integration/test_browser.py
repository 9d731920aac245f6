"""The customer widget and the agent console in a real browser (Debian's chromium, headless,
driven by playwright-core from tests/browser/two_tabs.mjs) against a real gateway and router.

Needs node and /usr/bin/chromium (make deps installs both); tests/browser/node_modules is installed
with `npm ci` when missing (the npm registry is the only thing fetched: never a browser build).
Screenshots: build/browser-*.png."""
import os
import shutil
import subprocess
import threading

import pytest

from conftest import ROOT

BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "two_tabs.mjs")
RESTART_SCRIPT = os.path.join(BROWSER_DIR, "restart.mjs")
TRANSFER_SCRIPT = os.path.join(BROWSER_DIR, "transfer.mjs")
CANNED_SCRIPT = os.path.join(BROWSER_DIR, "canned.mjs")
STATUS_SCRIPT = os.path.join(BROWSER_DIR, "console_status.mjs")
DAY_SCRIPT = os.path.join(BROWSER_DIR, "console_day.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")


def _tail(text, n=4000):
    return text if len(text) <= n else "…" + text[-n:]

def run_scenario(script, args, gw, router):
    """Run a browser scenario (node script BASE_URL args...) to its end and fail with its output
    and both processes' logs unless every step passed."""
    name = os.path.basename(script)
    try:
        r = subprocess.run([NODE, script, gw.base, *args], cwd=ROOT,
                           env=dict(os.environ, CHROMIUM=CHROMIUM), capture_output=True, text=True,
                           timeout=240)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"{name} did not finish within 240 s:\n{_tail(out)}")
    print(r.stdout)
    assert r.returncode == 0, (
        f"{name} exited {r.returncode}\n--- output:\n{_tail(r.stdout + r.stderr, 8000)}"
        f"\n--- gateway log:\n{_tail(gw.text(), 3000)}\n--- router log:\n{_tail(router.text(), 3000)}")
    last = r.stdout.splitlines()[-1]
    assert "0 failed" in last and not last.startswith("browser: 0 passed"), last



@pytest.fixture(scope="module")
def playwright_installed():
    if not NODE:
        pytest.skip("node is not installed (apt-get install nodejs npm; make deps does)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; make deps does)")
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        npm = shutil.which("npm")
        assert npm, "npm is missing: cannot install tests/browser/node_modules (apt-get install npm)"
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        r = subprocess.run([npm, "ci", "--prefix", BROWSER_DIR, "--no-audit", "--no-fund"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"npm ci --prefix tests/browser failed:\n{_tail(r.stdout + r.stderr)}"


def test_widget_and_agent_console_in_two_tabs(playwright_installed, procs):
    gw = procs.gateway()
    router = procs.router()
    token = procs.agent_token("alice", "Alice", skills=("general",), cap=2)
    run_scenario(SCRIPT, [token], gw, router)


def run_restart_scenario(procs, gw, router, token, env=None):
    """Drive restart.mjs (env: more environment for it, e.g. CUSTOMER_LOCALE): stop the gateway
    when it says @@STOP, start a new one on the same address when it says @@START; fail unless
    every step passed."""
    p = subprocess.Popen([NODE, RESTART_SCRIPT, gw.base, token], cwd=ROOT,
                         env=dict(os.environ, CHROMIUM=CHROMIUM, **(env or {})), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    watchdog = threading.Timer(240, p.kill)
    watchdog.start()
    out = []
    gateways = [gw]
    try:
        for line in p.stdout:
            out.append(line)
            cmd = line.strip()
            if cmd == "@@STOP":
                gateways[-1].stop()
                p.stdin.write("stopped\n")
                p.stdin.flush()
            elif cmd == "@@START":
                gateways.append(procs.gateway({"CHATGW_LISTEN": f"127.0.0.1:{gw.port}"}))
                p.stdin.write("started\n")
                p.stdin.flush()
        rc = p.wait(30)
    finally:
        watchdog.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    text = "".join(out)
    print(text)
    logs = "".join(f"\n--- {g.name} log:\n{_tail(g.text(), 2000)}" for g in gateways)
    assert rc == 0, (f"restart.mjs exited {rc}\n--- output:\n{_tail(text, 8000)}{logs}"
                     f"\n--- router log:\n{_tail(router.text(), 2000)}")
    assert len(gateways) == 2, f"the script never asked for the gateway to start again:\n{text}"


def test_widget_and_agent_console_survive_a_gateway_restart(playwright_installed, procs):
    """Stop the gateway mid-conversation, type on both sides, start a new gateway on the same
    address: both pages reconnect, re-send with the same cmid, and show every message once."""
    gw = procs.gateway()
    router = procs.router()
    token = procs.agent_token("alice", "Alice", skills=("general",), cap=2)
    run_restart_scenario(procs, gw, router, token)


TRANSFER_CONFIG = """
[router]
default_queue = general
default_locale = en
sla_first_response_s = chat:0, email:0
sla_next_response_s = chat:0, email:0
idle_close_s = 0
survey_window_s = 600
offer_timeout_s = 0
sticky_window_s = 0

[queue general]
mode = push

[queue tech_support]
mode = push

[queue complaints]
mode = pull

[rule complaint]
queue = complaints
complaint_class = ordinary
keywords = complaint
order = 1

[templates en]
complaint_ack = Your complaint has been registered as {ticket}.
"""


def test_agent_console_transfer_and_category(playwright_installed, procs, tmp_path):
    """Two agent consoles and a customer: the agent who gets the conversation transfers it to the
    other with a note through the console (after an unknown queue is refused next to the control);
    the note is shown to the desk only; the new agent re-classifies it to complaint (an internal
    line) and an unknown category shows the router's refusal (tests/browser/transfer.mjs)."""
    config = tmp_path / "transfer.ini"
    config.write_text(TRANSFER_CONFIG, encoding="utf-8")
    gw = procs.gateway()
    router = procs.router({"CHATGW_CONFIG": str(config), "CHATGW_BLOCK_MS": 200})
    alice = procs.agent_token("alice", "Alice", skills=("general", "tech_support"), cap=2)
    bob = procs.agent_token("bob", "Bob", skills=("general", "tech_support"), cap=2)
    run_scenario(TRANSFER_SCRIPT, [alice, bob], gw, router)


CANNED_CONFIG = """
[router]
default_queue = general
default_locale = en
sla_first_response_s = chat:0, email:0
sla_next_response_s = chat:0, email:0
idle_close_s = 0
survey_window_s = 0
offer_timeout_s = 0

[queue general]
mode = push

[canned general]
shipping = 订单付款后 24 小时内发货 — orders ship within 24 hours.
greeting = Hello! <b>Thanks</b> for contacting us.
"""


def test_agent_console_canned_replies(playwright_installed, procs, tmp_path):
    """The agent opens the conversation, picks a canned reply of its queue (fetched from
    GET /canned with the console's token), edits it in the composer and sends it; the customer
    page shows it (tests/browser/canned.mjs)."""
    config = tmp_path / "canned.ini"
    config.write_text(CANNED_CONFIG, encoding="utf-8")
    gw = procs.gateway()
    router = procs.router({"CHATGW_CONFIG": str(config), "CHATGW_BLOCK_MS": 200})
    alice = procs.agent_token("alice", "Alice", skills=("general",), cap=2)
    run_scenario(CANNED_SCRIPT, [alice], gw, router)


def test_agent_console_status_is_the_agents_choice(playwright_installed, procs):
    """A fresh console connects Away and is assigned nothing while a customer waits; clicking
    Online brings the conversation; a reload keeps Online (nothing re-offered, the next customer
    assigned at once) and, after choosing Away, keeps Away (tests/browser/console_status.mjs)."""
    gw = procs.gateway()
    router = procs.router({"CHATGW_BLOCK_MS": 200})
    alice = procs.agent_token("alice", "Alice", skills=("general",), cap=3)
    run_scenario(STATUS_SCRIPT, [alice], gw, router)


DESK_AWAY_CONFIG = """
[router]
default_queue = general
default_locale = en
timer_tick_ms = 50
sla_first_response_s = chat:0, email:0
sla_next_response_s = chat:0, email:0
idle_close_s = 0
survey_window_s = 0
offer_timeout_s = 1
offer_max_misses = 1
sticky_window_s = 0

[queue general]
mode = push
"""


def test_agent_console_keeps_the_desks_away_across_a_reload(playwright_installed, procs, tmp_path):
    """The online console misses its offer: the desk takes the conversation back and sets the
    agent away; the console shows Away and, after a reload, still says away in its hello: the
    waiting conversation is not offered to it again (tests/browser/console_status.mjs desk-away)."""
    config = tmp_path / "desk_away.ini"
    config.write_text(DESK_AWAY_CONFIG, encoding="utf-8")
    gw = procs.gateway()
    router = procs.router({"CHATGW_CONFIG": str(config), "CHATGW_BLOCK_MS": 200})
    alice = procs.agent_token("alice", "Alice", skills=("general",), cap=3)
    run_scenario(STATUS_SCRIPT, [alice, "desk-away"], gw, router)


CONSOLE_DAY_CONFIG = """
[router]
default_queue = general
default_locale = en
sla_first_response_s = chat:0, email:0
sla_next_response_s = chat:0, email:0
idle_close_s = 0
survey_window_s = 600
offer_timeout_s = 0
sticky_window_s = 0

[queue general]
mode = push
name_zh = 综合咨询
name_en = General

[rule complaint]
queue = general
keywords = complaint

[canned general]
shipping = Orders ship within 24 hours; delivery takes 2-4 days.
greeting = Hello! How can I help you today?
"""


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_agent_console_working_day(playwright_installed, procs, tmp_path, locale):
    """The console in the browser's language (zh-CN and en): notifications, sound and title badge
    for offers and messages, the customer panel, "/" canned search, read receipts, shortcuts, End
    chat with the configured resolutions after a confirmation, the language switch, the phone
    layout (tests/browser/console_day.mjs). DOC_SCREENSHOT=<png> also writes the README picture."""
    config = tmp_path / "day.ini"
    config.write_text(CONSOLE_DAY_CONFIG, encoding="utf-8")
    gw = procs.gateway()
    router = procs.router({"CHATGW_CONFIG": str(config), "CHATGW_BLOCK_MS": 200})
    alice = procs.agent_token("alice", "Alice", skills=("general",), cap=3)
    run_scenario(DAY_SCRIPT, [alice, locale], gw, router)
