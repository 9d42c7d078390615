// Where k6's time goes per quotes frame and per record (bench/k6_record_cost.py runs it): VUS traders on the
// sandbox gateway, each subscribed to 40-80 Zipf-drawn symbols, handle every frame one way (VARIANT) for
// HOLD_S seconds. Variants add one step each, so the differences are the steps' costs:
//   idle      connect, never subscribe (the fixed cost: VUs, sockets, the run)
//   dispatch  an empty onmessage (k6's WebSocket read, event loop hand-off, the JS callback)
//   header    + fseq and record count read from the frame's first bytes (the sampled trader's common path)
//   parse     + JSON.parse of every frame
//   check     + frame-gap and per-symbol seq checks of every record
//   trend     + one latency Trend sample per record, no tags
//   tagged    + the exchange and version tags on each sample (the trader before sampling)
// Counts are kept in JS and added to k6 metrics once per session, so counting costs nothing per frame.
import http from 'k6/http';
import { Counter, Trend } from 'k6/metrics';
import { setTimeout } from 'k6/timers';
import { WebSocket } from 'k6/experimental/websockets';

const VARIANT = __ENV.VARIANT || 'tagged';
const VARIANTS = ['idle', 'dispatch', 'header', 'parse', 'check', 'trend', 'tagged'];
if (!VARIANTS.includes(VARIANT)) throw new Error(`VARIANT must be one of ${VARIANTS.join(', ')}`);
const STEP = VARIANTS.indexOf(VARIANT);
const HOLD_S = Number(__ENV.HOLD_S || 20);
const HEAD = '{"type":"quotes","fseq":';

const frames = new Counter('bench_frames');
const records = new Counter('bench_records');
const gaps = new Counter('bench_gaps');
const latency = new Trend('bench_latency_ms', true);

export const options = {
  scenarios: { t: { executor: 'constant-vus', vus: Number(__ENV.VUS || 20), duration: `${HOLD_S}s`, gracefulStop: '5s' } },
  thresholds: { bench_latency_ms: ['p(99)<250'] }, // as the trader's Trend has one (k6 keeps its samples)
  summaryTrendStats: ['med', 'p(99)', 'count'],
};

export function setup() {
  return { symbols: JSON.parse(http.get(`${__ENV.FEED_URL}/v1/symbols`).body).symbols.filter((s) => s.weight > 0) };
}

function draw(universe, k) {
  const keyed = universe.map((s) => ({ s: s.symbol, key: Math.log(1 - Math.random()) / s.weight }));
  keyed.sort((a, b) => b.key - a.key);
  return keyed.slice(0, k).map((e) => e.s);
}

export default function (data) {
  const symbols = draw(data.symbols, 40 + Math.floor(Math.random() * 41));
  const ws = new WebSocket(__ENV.WS_URL);
  const last = {};
  let nf = 0; let nr = 0; let ng = 0; let fseq = 0; let tags = {}; const byExchange = {};
  ws.onopen = () => { if (STEP > 0) ws.send(JSON.stringify({ op: 'subscribe', symbols })); };
  ws.onmessage = (event) => {
    if (STEP === 1) { nf++; return; }
    const text = event.data;
    if (STEP === 2) {
      if (!text.startsWith(HEAD)) return;
      const end = text.indexOf(',', HEAD.length);
      const f = Number(text.substring(HEAD.length, end));
      const n = Number(text.substring(end + 5, text.indexOf(',', end + 5)));
      if (f !== fseq + 1) ng++;
      fseq = f; nf++; nr += n;
      return;
    }
    const msg = JSON.parse(text);
    if (msg.type !== 'quotes') { if (msg.type === 'hello') tags = { version: msg.version }; return; }
    nf++; nr += msg.quotes.length;
    if (STEP === 3) return;
    if (msg.fseq !== fseq + 1) ng++;
    fseq = msg.fseq;
    const now = Date.now();
    const skipped = msg.skipped || {};
    for (const rec of msg.quotes) {
      const prev = last[rec.symbol];
      if (prev !== undefined && rec.session === prev.session && rec.seq > prev.seq + 1 + (skipped[rec.symbol] || 0)) ng++;
      last[rec.symbol] = { session: rec.session, seq: rec.seq };
      if (STEP === 5) latency.add(now - rec.ts_ns / 1e6);
      if (STEP === 6) {
        let t = byExchange[rec.exchange];
        if (t === undefined) t = byExchange[rec.exchange] = Object.assign({ exchange: rec.exchange }, tags);
        latency.add(now - rec.ts_ns / 1e6, t);
      }
    }
  };
  setTimeout(() => { ws.close(); frames.add(nf); records.add(nr); gaps.add(ng); }, (HOLD_S - 2) * 1000);
}
