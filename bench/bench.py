"""make bench: start redis + gateway + router (real binaries), run bench.mjs, print the numbers.

  /usr/bin/python3 bench/bench.py [--customers N] [--agents M] [--messages K]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from conftest import Procs, RedisServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--messages", type=int, default=20)
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", HERE], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        srv = RedisServer(tmp)
        srv.start()
        procs = Procs(srv, tmp)
        try:
            # one address, many customers: the per-source limits are off for the load
            env = {"CHATGW_LOG_LEVEL": "info", "CHATGW_RATE_MSGS": 100000,
                   "CHATGW_RATE_BURST": 100000, "CHATGW_MAX_CONNS_PER_IP": 0,
                   "CHATGW_CONV_PER_IP": 0, "CHATGW_CONV_PER_CUSTOMER": 0}
            gw = procs.gateway(env, wait_ready=False)
            gw.wait_log(gw.ready_line, 15)
            r = procs.router({"CHATGW_LOG_LEVEL": "info"}, wait_ready=False)
            r.wait_log(r.ready_line, 15)
            cap = math.ceil(args.customers / args.agents)
            tokens = [procs.agent_token(f"bench-agent-{i}", cap=cap) for i in range(args.agents)]
            cfg = {"url": gw.ws, "customers": args.customers, "messages": args.messages,
                   "tokens": tokens}
            out = subprocess.run(["node", os.path.join(HERE, "bench.mjs"), json.dumps(cfg)],
                                 capture_output=True, text=True, timeout=600)
            sys.stderr.write(out.stderr)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            info = srv.r.info("commandstats")
            calls = sum(v["calls"] for v in info.values())
            res["redis_commands_total"] = calls
            res["redis_commands_per_message"] = round(calls / max(1, res["messages"]), 2)
            # client round trips (what gateway and router send; FCALL internals excluded)
            top = ("fcall", "xreadgroup", "xack", "xrange", "xadd", "publish", "hmget", "smembers",
                   "get", "set", "subscribe", "xautoclaim")
            res["redis_calls_per_message"] = {
                k: round(info[f"cmdstat_{k}"]["calls"] / max(1, res["messages"]), 3)
                for k in top if f"cmdstat_{k}" in info}
            print(json.dumps(res, indent=2))
            print(f"bench: {res['messages']} messages, {res['messages_per_sec']} msg/s, "
                  f"c->a p50 {res['customer_to_agent_ms']['p50']} ms p99 "
                  f"{res['customer_to_agent_ms']['p99']} ms, a->c p50 "
                  f"{res['agent_to_customer_ms']['p50']} ms p99 {res['agent_to_customer_ms']['p99']} ms, "
                  f"lost {res['lost']} duplicated {res['duplicated']} reordered {res['reordered']}")
            return out.returncode
        finally:
            procs.teardown()
            srv.kill()


if __name__ == "__main__":
    sys.exit(main())
