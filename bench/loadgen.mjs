// One open-loop load process of `make bench` (bench/bench.py starts several and merges them).
//
//   node bench/loadgen.mjs '<json config>'
//
// config: {target: 'chatgw' | 'floor', url, worker, first, count (this process' customers are the
//          conversations first .. first+count-1), tokens: [agent JWTs] (chatgw), rate (messages per
//          second per conversation), seed, conc (parallel connects), answer_hello (bool)}
//
// The orchestrator drives it with JSON lines on stdin and reads JSON lines on stdout:
//   {cmd:'agents'}                          -> {ev:'agents_up', n}
//   {cmd:'customers', warm, timeout_s}      -> {ev:'ready', ready, not_ready, warm_ms}
//       warm: each customer sends "hello" and is ready once the agent's answer came back (its
//       conversation is assigned and both directions work); else: connected, `welcome` received.
//   {cmd:'go', t0_us, dur_s}                -> {ev:'sent', sent, lag}   the timed load
//   {cmd:'first', t0_us, gap_us, gfrom, n}  -> {ev:'sent', sent}        assignment: conversation
//       gfrom+j sends its first message ("hello") at t0_us + j*gap_us (those this process owns)
//   {cmd:'probe', n, answered}              -> {ev:'sent', sent}        one text on each of the
//       first n customers, answered by the agent or not (bench.py counts Redis commands meanwhile)
//   {cmd:'stat'}                            -> {ev:'stat', sent, got, replies, gotBack, assigned}
//   {cmd:'report'}                          -> {ev:'report', ...} and exits
//
// Open loop: every conversation sends at the fixed rate whatever the server does; its send times
// are fixed before the run (a seeded random phase, then one message every 1/rate s) and latency
// is counted from the SCHEDULED send time, so a stalled server (or generator) shows as latency
// instead of silently lowering the offered load (no coordinated omission). `lag` says how late
// this process actually sent. Times are CLOCK_MONOTONIC microseconds (process.hrtime), the same
// clock in every process and in bench.py.
//
// Texts: customer "b <conv> <k> <scheduled us>" (timed), "q ..." (probe, answered "R ...") or
// "p ..." (probe, not answered); agent answer "r <conv> <k> <agent receive us>". <conv> is the
// conversation's index, <k> counts that customer's messages: lost and duplicated are found per
// (conv, k) by bench.py. The first text ("hello") has no digits: keyword rules (e.g. "315") match
// substrings of a conversation's first message.
import WebSocket from 'ws';

const cfg = JSON.parse(process.argv[2]);
const nowUs = () => Number(process.hrtime.bigint()) / 1e3;
// The wall clock in us, to compare with a delivered frame's `ts` (ms: when a gateway accepted it)
const wallUs = () => (performance.timeOrigin + performance.now()) * 1e3;

// ---------------------------------------------------------------- what this process measured
const S = {
  sent: 0, probeSent: 0, lag: [], // timed sends and how late they left (us)
  lat: [], got: 0, dup: 0, replies: 0, lastGot: 0, // customer -> agent, at the agents
  recv: new Map(), // conv index -> Set of k received by an agent here
  latBack: [], gotBack: 0, dupBack: 0, lastGotBack: 0, // agent -> customer, at the customers
  // the same from the frame's `ts`, the time the gateway accepted (stored) it: what a message
  // waited before it was read (a busy answer, a socket not read under overload) is not in it
  latAcc: [], latAccBack: [],
  seqGaps: 0, seqDups: 0, errors: {}, retries: 0, // every logged frame must be last seq + 1
  firstSent: {}, assignedAt: {}, // conv id -> us (assignment)
};
const sentPerConv = {}; // conv index -> messages sent (k = 0 .. n-1)

function seqCheck(state, f) {
  if (!f.seq || f.type === 'ack') return;
  const last = state.get(f.conv) || 0;
  if (f.seq === last + 1) state.set(f.conv, f.seq);
  else if (f.seq <= last) S.seqDups++;
  else { S.seqGaps += f.seq - last - 1; state.set(f.conv, f.seq); }
}
function countError(code) { S.errors[code] = (S.errors[code] || 0) + 1; }

// An agent got a customer's text (any target); answer(text, cmid) sends the agent's reply.
// Kinds: b timed (answered r), q probe answered (R), p probe unanswered. ts: the frame's ts (ms),
// when there is one (chatgw).
function agentGotText(text, answer, ts) {
  const now = nowUs();
  const [kind, i, k, t] = text.split(' ');
  if (kind !== 'b' && kind !== 'p' && kind !== 'q') return;
  let set = S.recv.get(i);
  if (!set) S.recv.set(i, (set = new Set()));
  if (set.has(k)) { S.dup++; return; }
  set.add(k);
  S.got++;
  if (kind === 'p') return;
  S.replies++;
  if (kind === 'q') { answer(`R ${i} ${k} 0`, `a${i}-${k}`); return; }
  S.lastGot = now;
  S.lat.push(now - Number(t));
  if (typeof ts === 'number') S.latAcc.push(wallUs() - ts * 1e3);
  answer(`r ${i} ${k} ${Math.round(now)}`, `a${i}-${k}`);
}

// A customer got the agent's text.
function customerGotText(c, text, ts) {
  const now = nowUs();
  if (text === 'w') { c.ready = true; return; }
  const [kind, , k, t] = text.split(' ');
  if (kind !== 'r' && kind !== 'R') return;
  if (c.got.has(k)) { S.dupBack++; return; }
  c.got.add(k);
  S.gotBack++;
  if (kind === 'R') return;
  S.lastGotBack = now;
  S.latBack.push(now - Number(t));
  if (typeof ts === 'number') S.latAccBack.push(wallUs() - ts * 1e3);
}

// ---------------------------------------------------------------- chatgw (docs/protocol.md)
function open(path, proto) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(cfg.url + path, proto, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function welcomed(ws, what) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(what + ': no welcome in 30 s')), 30000);
    ws.on('message', function h(data) {
      const f = JSON.parse(data);
      if (f.type !== 'welcome' && f.type !== 'error') return;
      clearTimeout(t);
      ws.off('message', h);
      if (f.type === 'welcome') resolve(f); else reject(new Error(`${what}: error ${f.code}`));
    });
  });
}

// Frames sent and not acked yet, by cmid (unique per connection). A refusal marked `retry` (e.g.
// `unavailable`: nothing was stored) is sent again with the same cmid after a backoff, as a client
// must (docs/protocol.md, Errors); its latency still counts from the first scheduled send.
class Outbox {
  constructor(ws) { this.ws = ws; this.frames = new Map(); }
  send(frame) {
    const text = JSON.stringify(frame);
    this.frames.set(frame.cmid, { text, tries: 0 });
    this.ws.send(text);
  }
  acked(f) { this.frames.delete(f.cmid); }
  refused(f) {
    const e = this.frames.get(f.cmid);
    if (!e) return;
    if (!f.retry) { this.frames.delete(f.cmid); return; } // refused for good: it will be lost
    S.retries++;
    setTimeout(() => {
      if (this.frames.get(f.cmid) === e && this.ws.readyState === WebSocket.OPEN) this.ws.send(e.text);
    }, Math.min(2000, 100 * 2 ** e.tries++));
  }
}

const chatgw = {
  async agent(token) {
    const ws = await open('/ws/agent', ['chatgw.json.v1']);
    const seqs = new Map(), warmed = new Set(), out = new Outbox(ws);
    const reply = (conv) => (text, cmid) => out.send({ type: 'text', conv, cmid, text });
    ws.on('message', (data) => {
      const f = JSON.parse(data);
      if (f.type === 'error') { countError(f.code); out.refused(f); return; }
      if (f.type === 'ack') { out.acked(f); return; }
      seqCheck(seqs, f);
      if (f.type === 'assigned') {
        if (S.assignedAt[f.conv] === undefined) S.assignedAt[f.conv] = nowUs();
        return;
      }
      if (f.type !== 'text' || f.role !== 'customer' || typeof f.text !== 'string') return;
      if (f.text !== 'hello') { agentGotText(f.text, reply(f.conv), f.ts); return; }
      if (!cfg.answer_hello || warmed.has(f.conv)) return;
      warmed.add(f.conv);
      reply(f.conv)('w', 'aw' + warmed.size);
    });
    const w = welcomed(ws, 'agent');
    ws.send(JSON.stringify({ type: 'hello', token, code: 'online' }));
    await w;
    return ws;
  },

  async customer(i) {
    const ws = await open('/ws/customer', ['chatgw.json.v1']);
    const c = { i, ws, conv: '', k: 0, ready: false, got: new Set(), seqs: new Map(), t1: 0 };
    const out = new Outbox(ws);
    ws.on('message', (data) => {
      const f = JSON.parse(data);
      if (f.type === 'error') { countError(f.code); out.refused(f); return; }
      if (f.type === 'ack') {
        out.acked(f);
        if (f.cmid === 'w' && !c.conv) { c.conv = f.conv; S.firstSent[f.conv] = c.t1; }
        return;
      }
      seqCheck(c.seqs, f);
      if (f.type === 'text' && f.role === 'agent' && typeof f.text === 'string') customerGotText(c, f.text, f.ts);
    });
    const w = welcomed(ws, 'customer');
    ws.send(JSON.stringify({ type: 'hello', sender_name: 'bench' }));
    await w;
    c.first = (t) => { c.t1 = t; out.send({ type: 'text', cmid: 'w', text: 'hello' }); };
    c.send = (text) => out.send({ type: 'text', cmid: 'c' + c.k, text });
    c.close = () => ws.terminate();
    return c;
  },
};

// ---------------------------------------------------------------- the floor relay (relay.c)
// /c/<i> and /a/<i>, subprotocol "relay", raw text; one agent socket per conversation.
const floor = {
  async agent() { throw new Error('the floor has no agent logins'); },
  async customer(i) {
    const ws = await open('/c/' + i, 'relay'), agent = await open('/a/' + i, 'relay');
    const c = { i, ws, agent, conv: String(i), k: 0, ready: false, got: new Set() };
    agent.on('message', (m) => {
      const text = m.toString();
      if (text === 'hello') agent.send('w');
      else agentGotText(text, (t) => agent.send(t));
    });
    ws.on('message', (m) => customerGotText(c, m.toString()));
    c.first = () => ws.send('hello');
    c.send = (text) => ws.send(text);
    c.close = () => { ws.terminate(); agent.terminate(); };
    return c;
  },
};

const T = { chatgw, floor }[cfg.target];
const agents = [], custs = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Customer c sends its next text, scheduled at t (us).
function sendText(c, kind, t) {
  c.send(`${kind} ${c.i} ${c.k} ${Math.round(t)}`);
  c.k++;
  sentPerConv[c.i] = c.k;
}

// Call fn(entry, now) at (never before) the time entry.t (us) of each entry of the sorted list.
function runAt(times, fn) {
  return new Promise((resolve) => {
    let p = 0;
    const step = () => {
      const now = nowUs();
      while (p < times.length && times[p].t <= now) fn(times[p++], now);
      if (p === times.length) { resolve(); return; }
      setTimeout(step, Math.max(0, Math.floor((times[p].t - now) / 1000)));
    };
    step();
  });
}

// Seeded PRNG (mulberry32): the schedule is the same for the same seed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The timed load: each ready conversation, at a random phase, then every 1/rate s, until dur_s.
function schedule(t0, durS) {
  const period = 1e6 / cfg.rate, end = t0 + durS * 1e6, out = [];
  for (const c of custs) {
    if (!c.ready) continue;
    const phase = rng(cfg.seed * 1000003 + c.i)() * period;
    for (let t = t0 + phase; t < end; t += period) out.push({ t, c });
  }
  return out.sort((a, b) => a.t - b.t);
}

const pct = (a, p) => {
  if (!a.length) return null;
  const s = Float64Array.from(a).sort();
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

async function connectCustomers(warm, timeoutS) {
  const t0 = Date.now();
  for (let j = 0; j < cfg.count; j += cfg.conc) {
    const n = Math.min(cfg.conc, cfg.count - j);
    const batch = await Promise.all(Array.from({ length: n }, (_, x) => T.customer(cfg.first + j + x)));
    for (const c of batch) {
      if (warm) c.first(nowUs());
      else c.ready = true;
      custs.push(c);
    }
  }
  const deadline = Date.now() + timeoutS * 1000;
  while (custs.some((c) => !c.ready) && Date.now() < deadline) await sleep(50);
  const notReady = custs.filter((c) => !c.ready).length;
  return { ready: custs.length - notReady, not_ready: notReady, warm_ms: Date.now() - t0 };
}

const handlers = {
  async agents() {
    for (let j = 0; j < cfg.tokens.length; j += 20)
      agents.push(...await Promise.all(cfg.tokens.slice(j, j + 20).map((t) => T.agent(t))));
    return { ev: 'agents_up', n: agents.length };
  },
  async customers(m) {
    return { ev: 'ready', ...await connectCustomers(m.warm, m.timeout_s) };
  },
  async go(m) {
    await runAt(schedule(m.t0_us, m.dur_s), (e, now) => {
      sendText(e.c, 'b', e.t);
      S.sent++;
      S.lag.push(now - e.t);
    });
    const lagMs = (p) => +(pct(S.lag, p) / 1000).toFixed(3);
    return { ev: 'sent', sent: S.sent, lag: { p50: lagMs(0.5), p99: lagMs(0.99), max: lagMs(1) } };
  },
  async first(m) {
    const list = custs.filter((c) => c.i >= m.gfrom && c.i < m.gfrom + m.n)
      .map((c) => ({ t: m.t0_us + (c.i - m.gfrom) * m.gap_us, c }));
    await runAt(list, (e) => e.c.first(e.t));
    return { ev: 'sent', sent: list.length };
  },
  async probe(m) {
    const list = custs.filter((c) => c.ready).slice(0, m.n);
    const t = nowUs();
    for (const c of list) { sendText(c, m.answered ? 'q' : 'p', t); S.probeSent++; }
    return { ev: 'sent', sent: list.length };
  },
  async stat() {
    return { ev: 'stat', sent: S.sent + S.probeSent, got: S.got, replies: S.replies, gotBack: S.gotBack,
      assigned: Object.keys(S.assignedAt).length };
  },
  async report() {
    const recv = {};
    for (const [i, set] of S.recv) recv[i] = [...set].map(Number);
    const round = (a) => a.map((x) => Math.round(x));
    return {
      ev: 'report', worker: cfg.worker, sent: S.sent, probe_sent: S.probeSent,
      sent_per_conv: sentPerConv, recv, got: S.got, dup: S.dup, replies: S.replies,
      got_back: S.gotBack, dup_back: S.dupBack, last_got_us: S.lastGot, last_got_back_us: S.lastGotBack,
      lat_us: round(S.lat), lat_back_us: round(S.latBack), seq_gaps: S.seqGaps, seq_dups: S.seqDups,
      acc_lat_us: round(S.latAcc), acc_lat_back_us: round(S.latAccBack),
      errors: S.errors, retries: S.retries, first_sent: S.firstSent, assigned_at: S.assignedAt,
    };
  },
};

// One JSON line on stdout; resolves once it is written out (a report can be megabytes).
function emit(obj) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));
}

// Commands are handled one after the other, except `stat`, which answers at once.
let chain = Promise.resolve();
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const m = JSON.parse(buf.slice(0, nl));
    buf = buf.slice(nl + 1);
    if (m.cmd === 'stat') { handlers.stat().then(emit); continue; }
    chain = chain.then(() => handlers[m.cmd](m)).then(emit).then(() => {
      if (m.cmd !== 'report') return;
      for (const c of custs) c.close();
      for (const a of agents) a.terminate();
      process.exit(0);
    });
  }
});
process.stdin.on('end', () => process.exit(0)); // the orchestrator is gone
process.on('unhandledRejection', (e) => {
  process.stderr.write(`loadgen ${cfg.worker}: ${e && e.stack || e}\n`);
  process.exit(1);
});
