// chatgw load generator: N customers and M agents, one conversation per customer.
//
//   node bench.mjs '<json config>'   config: {url, customers, messages, tokens: [agent tokens]}
//
// Each customer sends `messages` texts, one at a time: the agent serving it answers each, and the
// customer sends the next when the answer arrives. Measured: customer->agent and agent->customer
// latency (same process clock; a conversation's first message also waits for its assignment,
// so it is reported apart as first_message_to_agent_ms), messages per second, and per conversation, at both ends, lost,
// duplicated and reordered messages (by sequence number and by message index). Prints one JSON
// line with the results, last.
import WebSocket from 'ws';

const cfg = JSON.parse(process.argv[2]);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const c2a = [], a2c = [], first = [];
const problems = {lost: 0, duplicated: 0, reordered: 0, errors: 0};

function open(path) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(cfg.url + path, ['chatgw.json.v1']);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// Track seq order per (receiver, conv): every logged frame must be last+1.
function seqCheck(state, f) {
  if (!f.seq || f.type === 'ack') return;
  const last = state.get(f.conv) || 0;
  if (f.seq === last + 1) state.set(f.conv, f.seq);
  else if (f.seq <= last) problems.duplicated++;
  else { problems.lost += f.seq - last - 1; state.set(f.conv, f.seq); }
}

async function agent(token) {
  const ws = await open('/ws/agent');
  const seqs = new Map();
  const seen = new Map(); // conv -> last index received
  let n = 0;
  ws.on('message', (data) => {
    const f = JSON.parse(data);
    seqCheck(seqs, f);
    if (f.type === 'error') problems.errors++;
    if (f.type !== 'text' || f.role !== 'customer' || !f.text.startsWith('b|')) return;
    const [, i, k, t] = f.text.split('|');
    (Number(k) === 0 ? first : c2a).push(now() - Number(t));
    const prev = seen.get(f.conv);
    if (prev !== undefined && Number(k) <= prev) problems.reordered++;
    seen.set(f.conv, Number(k));
    ws.send(JSON.stringify({type: 'text', conv: f.conv, cmid: `a${i}-${k}-${n++}`,
                            text: `r|${i}|${k}|${now()}`}));
  });
  ws.send(JSON.stringify({type: 'hello', token}));
  return ws;
}

function customer(i) {
  return new Promise(async (resolve, reject) => {
    const ws = await open('/ws/customer');
    const seqs = new Map();
    let k = 0, lastReply = -1, t0 = 0;
    const send = () => ws.send(JSON.stringify({type: 'text', cmid: `c${i}-${k}`,
                                               text: `b|${i}|${k}|${now()}`}));
    ws.on('message', (data) => {
      const f = JSON.parse(data);
      seqCheck(seqs, f);
      if (f.type === 'error') { problems.errors++; return; }
      if (f.type === 'welcome') { t0 = now(); send(); return; }
      if (f.type !== 'text' || f.role !== 'agent' || !f.text.startsWith('r|')) return;
      const [, , rk, t] = f.text.split('|');
      a2c.push(now() - Number(t));
      if (Number(rk) !== lastReply + 1) problems.reordered++;
      lastReply = Number(rk);
      if (++k < cfg.messages) send();
      else resolve({ws, ms: now() - t0});
    });
    ws.once('error', reject);
    ws.send(JSON.stringify({type: 'hello'}));
  });
}

function pct(a, p) {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  return +s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))].toFixed(3);
}

const agents = await Promise.all(cfg.tokens.map(agent));
const t0 = now();
const done = await Promise.all(Array.from({length: cfg.customers}, (_, i) => customer(i)));
const secs = (now() - t0) / 1000;
const total = first.length + c2a.length + a2c.length;
const result = {
  customers: cfg.customers, agents: cfg.tokens.length, messages_per_customer: cfg.messages,
  seconds: +secs.toFixed(3), messages: total, messages_per_sec: +(total / secs).toFixed(1),
  first_message_to_agent_ms: {p50: pct(first, 50), p99: pct(first, 99), max: pct(first, 100)},
  customer_to_agent_ms: {p50: pct(c2a, 50), p99: pct(c2a, 99), max: pct(c2a, 100)},
  agent_to_customer_ms: {p50: pct(a2c, 50), p99: pct(a2c, 99), max: pct(a2c, 100)},
  ...problems,
};
for (const d of done) d.ws.close();
for (const a of agents) a.close();
console.log(JSON.stringify(result));
process.exit(problems.lost || problems.duplicated || problems.reordered ? 1 : 0);
