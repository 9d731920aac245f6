"""The load processes of `make bench`: several `node bench/loadgen.mjs`, driven in JSON lines.

Each process owns a contiguous slice of the conversations (customers) and every procs-th agent;
the router may give a conversation to an agent in another process, which is why lost and
duplicated messages and latencies are only judged after merging (bench.py).
"""
import json
import os
import queue
import signal
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def ensure_node_modules():
    if not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", HERE], check=True,
                       stdout=subprocess.DEVNULL)


class LoadProcs:
    def __init__(self, target, url, conversations, procs, tokens, workdir, rate=0.0, seed=1,
                 conc=100, answer_hello=True):
        self.events = queue.Queue()
        self.errfiles = []
        self.early = []  # events read while waiting for another kind
        self.procs = []
        per = -(-conversations // procs)
        for w in range(procs):
            first = w * per
            cfg = {"target": target, "url": url, "worker": w, "first": first,
                   "count": max(0, min(per, conversations - first)), "tokens": tokens[w::procs],
                   "rate": rate, "seed": seed, "conc": conc, "answer_hello": answer_hello}
            err = open(os.path.join(workdir, f"load{w}.err"), "w+b")
            self.errfiles.append(err)
            p = subprocess.Popen(["node", os.path.join(HERE, "loadgen.mjs"), json.dumps(cfg)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                 start_new_session=True)
            threading.Thread(target=self._read, args=(w, p), daemon=True).start()
            self.procs.append(p)

    def _read(self, w, p):
        try:
            for line in p.stdout:
                self.events.put((w, json.loads(line)))
        except ValueError as e:
            self.errfiles[w].write(f"\nbench: unreadable line from load{w}: {e}\n".encode())
        self.events.put((w, None))

    def stderr(self, w, last=2000):
        f = self.errfiles[w]
        f.flush()
        f.seek(0)
        return f.read().decode("utf-8", "replace")[-last:] or "(nothing on stderr)"

    @property
    def pids(self):
        return {f"load{w}": p.pid for w, p in enumerate(self.procs)}

    def send(self, msg, only=None):
        for w, p in enumerate(self.procs):
            if only is None or w == only:
                p.stdin.write((json.dumps(msg) + "\n").encode())
                p.stdin.flush()

    def collect(self, ev, timeout):
        """One `ev` event from every process, as a list by worker; fails on a dead process."""
        got = {}
        for w, m in list(self.early):
            if m.get("ev") == ev and w not in got:
                got[w] = m
                self.early.remove((w, m))
        deadline = time.monotonic() + timeout
        while len(got) < len(self.procs):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [w for w in range(len(self.procs)) if w not in got]
                raise RuntimeError(f"load processes {missing}: no {ev!r} in {timeout} s")
            try:
                w, m = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if m is None and w in got:
                continue  # it answered, then exited (after `report`)
            if m is None:
                raise RuntimeError(f"load process {w} exited (code {self.procs[w].wait()}) "
                                   f"while waiting for {ev!r}: {self.stderr(w)}")
            if m.get("ev") == ev and w not in got:
                got[w] = m
            else:
                self.early.append((w, m))
        return [got[w] for w in range(len(self.procs))]

    def call(self, msg, ev, timeout):
        self.send(msg)
        return self.collect(ev, timeout)

    def stat(self):
        """Counters summed over the processes."""
        out = {}
        for r in self.call({"cmd": "stat"}, "stat", 30):
            for k, v in r.items():
                if k != "ev":
                    out[k] = out.get(k, 0) + v
        return out

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.errfiles:
            f.close()
