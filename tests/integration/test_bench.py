"""make bench does not rot: tiny runs of bench/bench.py against the real binaries (started by
tools/run.sh, as `make run` does), checking the verdict and the JSON fields, never timings."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BUILD, ROOT

BENCH = os.path.join(ROOT, "bench", "bench.py")
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench  # noqa: E402
import servers  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="node is not installed (make deps installs it)")


def run_bench(*args):
    env = dict(os.environ, BUILD=os.path.relpath(BUILD, ROOT))
    p = subprocess.run([sys.executable, BENCH, *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    lines = p.stdout.strip().splitlines()
    assert lines, p.stderr[-3000:]
    return p.returncode, json.loads(lines[-1]) if lines[-1].startswith("{") else None, p


def test_tiny_relay_run_loses_nothing_and_reports_every_figure():
    rc, res, p = run_bench("--conversations", "20", "--rate", "2", "--duration", "2",
                           "--procs", "2", "--agents", "4", "--probe", "10")
    assert rc == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert res["ok"] and res["lost"] == 0 and res["dup_c2a"] == 0 and res["dup_a2c"] == 0
    assert res["not_ready"] == 0 and res["seq_gaps"] == 0 and res["backlog"]["left"] == 0
    assert res["sent_c2a"] == res["delivered_c2a"] == res["delivered_a2c"] == 80
    assert res["offered_c2a_per_s"] == 40 and res["achieved_c2a_per_s"] > 0
    for d in ("c2a_ms", "a2c_ms", "c2a_accepted_ms", "a2c_accepted_ms"):
        assert set(res[d]) == {"p50", "p99", "p999", "max"} and res[d]["p50"] is not None
    assert set(res["cpu_us_per_msg"]) >= {"gateway", "router", "redis", "server", "load0", "load1"}
    assert None not in res["cpu_us_per_msg"].values()  # every process sampled till the end
    assert res["errors"] == {} and res["retries"] == 0
    assert res["server_log"]["error"] == 0 and res["sanitizer_reports"] == 0
    rd = res["redis"]
    assert rd["fcall_per_customer_msg"] > 0 and rd["cmds_per_customer_msg"] > 0
    assert "aof_bytes_per_msg" in rd
    for part in ("customer_msg", "agent_reply"):
        pr = res["probe"][part]
        assert any(k.startswith("fcall ") for k in pr["round_trips"]), pr
        assert pr["in_functions_per_msg"] > 0 and pr["aof_bytes_per_msg"] > 0
    assert len(res["loadavg"]["start"]) == 3
    assert "c2a ms p50 / p99 / p999 / max" in p.stdout  # the table


def test_tiny_assign_run_assigns_every_conversation():
    rc, res, p = run_bench("--mode", "assign", "--burst", "20", "--idle", "3", "--agents", "4",
                           "--procs", "2")
    assert rc == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert res["unassigned"] == 0 and res["burst_assigned"] == 20
    assert res["idle_assign_ms"]["p99"] is not None and res["burst_assign_ms"]["p99"] is not None
    assert res["burst_assigned_per_s"] > 0 and res["burst_fcall_per_conv"] > 0
    assert res["sanitizer_reports"] == 0


def test_side_by_side_skips_cleanly_without_the_floor(tmp_path):
    rc, res, p = run_bench("--target", "both", "--floor-dir", str(tmp_path / "none"))
    assert rc == 0 and res is None
    assert "side-by-side skipped" in p.stdout


def test_floor_relay_under_the_same_tiny_load():
    floor = bench.floor_dir_default()
    if not os.path.isfile(os.path.join(floor, "relay.c")):
        pytest.skip(f"no floor relay at {floor}")
    rc, res, p = run_bench("--target", "floor", "--conversations", "10", "--rate", "2",
                           "--duration", "1", "--probe", "0")
    assert rc == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert res["bench"] == "floor" and res["lost"] == 0 and res["delivered_a2c"] == 20
    assert set(res["cpu_us_per_msg"]) >= {"relay", "redis", "server"}


def _report(sent, recv, replies=0, got_back=0):
    return {"sent_per_conv": sent, "recv": recv, "dup": 0, "replies": replies,
            "got_back": got_back, "dup_back": 0, "seq_gaps": 0, "seq_dups": 0}


def test_losses_are_judged_over_every_load_process():
    # conversation 0 sent k 0..2; its agent lives in the other process and got k 0 and 2
    ok = bench.merge_losses([_report({"0": 3}, {}, 0, 2), _report({}, {"0": [0, 1, 2]}, 2)])
    assert ok["lost_c2a"] == 0 and ok["dup_c2a"] == 0 and ok["lost_a2c"] == 0
    lost = bench.merge_losses([_report({"0": 3}, {}, 0, 1), _report({}, {"0": [0, 2]}, 2)])
    assert lost["lost_c2a"] == 1 and lost["lost_a2c"] == 1
    # k 1 arrived at agents in both processes: one duplicate
    dup = bench.merge_losses([_report({"0": 2}, {"0": [1]}), _report({}, {"0": [0, 1]})])
    assert dup["dup_c2a"] == 1 and dup["lost_c2a"] == 0


def test_server_log_problems_count_warnings_errors_and_sanitizer_reports():
    out = ("2026-12-03T07:02:26.724Z gateway[1] WARN redis: no reply after 5000 ms\n"
           "2026-12-03T07:02:26.725Z gateway[1] INFO fine\n"
           "==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x6\n")
    p = subprocess.Popen(["printf", "%s", out], stdout=subprocess.PIPE)
    log = servers.LogTail(p)
    p.wait()
    log.thread.join(5)
    got = log.problems(0)
    assert (got["warn"], got["error"], got["sanitizer"]) == (1, 0, 1)
    assert got["first"][0].startswith("==1==ERROR: AddressSanitizer")
