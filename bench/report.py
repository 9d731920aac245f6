"""The human-readable tables of `make bench` (the JSON line is printed by bench.py)."""


def _ms(d):
    return " / ".join("-" if d[k] is None else f"{d[k]:g}" for k in ("p50", "p99", "p999", "max"))


def _acc(d):
    if not d or d["p50"] is None:
        return "-"
    return f"{d['p50']:g} / {d['p99']:g}"


def _kv(d, fmt="{:g}"):
    return ", ".join(f"{k} {'-' if v is None else fmt.format(v)}" for k, v in d.items()) or "none"


def _log(g):
    return f"{g['warn']} / {g['error']}" + "".join(f"\n      {l[:160]}" for l in g["first"])


def _load(r):
    m = r["machine"]
    return (f"{r['loadavg']['start'][0]:.2f} -> {r['loadavg']['end'][0]:.2f}; {m['cores']} cores "
            f"{m['busy_pct']}% busy, other processes {m['others_pct_of_one_core']}% of one core")


def print_relay(r):
    rd = r["redis"]
    print(f"\n== {r['bench']}: {r['conversations']} conversations x {r['rate_per_conv']:g} msg/s, "
          f"{r['duration_s']:g} s, {r['procs']} load processes"
          + (f", {r['agents']} agents" if r["agents"] else "")
          + f" (warm-up {r['warmup_s']} s, load average {_load(r)})")
    rows = [
        ("offered c2a msg/s", f"{r['offered_c2a_per_s']:g}"),
        ("achieved c2a / a2c msg/s", f"{r['achieved_c2a_per_s']:g} / {r['achieved_a2c_per_s']:g}"),
        ("sent / delivered c2a / a2c", f"{r['sent_c2a']} / {r['delivered_c2a']} / {r['delivered_a2c']}"),
        ("c2a ms p50 / p99 / p999 / max", _ms(r["c2a_ms"])),
        ("a2c ms p50 / p99 / p999 / max", _ms(r["a2c_ms"])),
        ("accepted c2a / a2c ms p50 / p99 (from the frame's ts)",
         _acc(r.get("c2a_accepted_ms")) + "  |  " + _acc(r.get("a2c_accepted_ms"))),
        ("lost c2a / a2c", f"{r['lost_c2a']} / {r['lost_a2c']}"),
        ("duplicated c2a / a2c", f"{r['dup_c2a']} / {r['dup_a2c']}"),
        ("seq gaps / dups", f"{r['seq_gaps']} / {r['seq_dups']}"),
        ("not ready after warm-up", str(r["not_ready"])),
        ("error frames (retry ones re-sent)", _kv(r["errors"]) + f" ({r['retries']} re-sent)"),
        ("server log warnings / errors", _log(r["server_log"])),
        ("CPU us per delivered msg", _kv(r["cpu_us_per_msg"])),
        ("system calls per delivered msg", _kv(r["syscalls_per_msg"])),
        ("CPU % of one core", _kv(r["cpu_pct"])),
        ("Redis cmds per msg / per customer msg + answer",
         f"{rd['cmds_per_msg']} / {rd['cmds_per_customer_msg']}"
         f" (FCALL {rd['fcall_per_customer_msg']} per customer msg + answer)"),
        ("  by command, per customer msg + answer",
         _kv({k: v for k, v in list(rd["by_command_per_customer_msg"].items())[:12] if v})),
        ("AOF bytes per msg", "- (AOF rewritten meanwhile)" if rd["aof_rewritten"] else str(rd["aof_bytes_per_msg"])),
        ("generator lag ms p99 / max", f"{r['generator_lag_ms']['p99']} / {r['generator_lag_ms']['max']}"),
    ]
    b = r["backlog"]
    if r["bench"] == "chatgw":
        rows.append(("routers' backlog (cg:{t:default}:in unread / pending) max", f"{b['max_unread']} / {b['max_pending']}"
                     f"; caught up {b['caught_up_after_s']} s after the last send; left {b['left']}"))
    rows.append(("all delivered after the last send", f"{b['delivered_after_s']} s"))
    pr = r.get("probe")
    if pr and "error" not in pr:
        for label, key in (("customer msg", "customer_msg"), ("agent reply", "agent_reply")):
            p = pr[key]
            rows += [
                (f"probe: 1 {label} ({pr['messages']} under MONITOR)",
                 f"{p['round_trips_per_msg']} round trips + {p['in_functions_per_msg']} in functions,"
                 f" {p['aof_bytes_per_msg']} AOF bytes"),
                ("  round trips", _kv(p["round_trips"])),
                ("  in functions", _kv(p["in_functions"])),
            ]
    elif pr:
        rows.append(("probe", pr["error"]))
    _rows(rows)
    _noise(r)
    print("  verdict: " + ("ok" if r["ok"] else "FAILED (lost, duplicated, not ready or backlog left)"))


def print_assign(r):
    print(f"\n== {r['bench']} assignment: {r['agents']} agents, {r['procs']} load processes "
          f"(load average {_load(r)})")
    _rows([
        (f"idle: {r['idle_n']} one at a time ({r['idle_gap_ms']:g} ms apart), ms p50 / p99 / p999 / max",
         _ms(r["idle_assign_ms"])),
        (f"burst: {r['burst_n']} at once, assigned", f"{r['burst_assigned']} "
         f"({r['burst_assigned_per_s']:g} /s)"),
        ("burst ms p50 / p99 / p999 / max", _ms(r["burst_assign_ms"])),
        ("burst CPU us per conversation", _kv(r["burst_cpu_us_per_conv"])),
        ("burst Redis cmds / FCALL per conversation",
         f"{r['burst_redis_cmds_per_conv']} / {r['burst_fcall_per_conv']}"),
        ("error frames", _kv(r["errors"])),
        ("server log warnings / errors", _log(r["server_log"])),
    ])
    _noise(r)
    print("  verdict: " + ("ok" if r["ok"] else f"FAILED ({r['unassigned']} not assigned)"))


def print_comparison(s):
    f, c = s["floor"], s["chatgw"]
    print("\n== side by side (same load, one after the other)")
    _rows([
        ("c2a p50 ms floor / chatgw", f"{f['c2a_ms']['p50']} / {c['c2a_ms']['p50']}"),
        ("c2a p99 ms floor / chatgw", f"{f['c2a_ms']['p99']} / {c['c2a_ms']['p99']}"
         f" (ratio {s['c2a_p99_ratio']})"),
        ("chatgw c2a p99 <= max(100, 3 x floor p99)",
         f"{'yes' if s['c2a_p99_within_bound'] else 'no'} (bound {s['c2a_p99_bound_ms']} ms)"),
        ("server CPU us per msg floor / chatgw",
         f"{f['cpu_us_per_msg']['server']} / {c['cpu_us_per_msg']['server']}"),
        ("server system calls per msg floor / chatgw",
         f"{f['syscalls_per_msg']['server']} / {c['syscalls_per_msg']['server']}"),
        ("lost floor / chatgw", f"{f['lost']} / {c['lost']}"),
    ])


def _noise(r):
    """A warning line when other processes took a noticeable share of the machine."""
    o = r["machine"]["others_pct_of_one_core"]
    if o is not None and o > 25:
        print(f"  WARNING: other processes used {o}% of one core during the window: these figures"
              " measure a shared machine; compare only within one run (make bench-floor)")


def _rows(rows):
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
