// Shared code of the openbell load profiles: env knobs, scaling of a production profile into k6 options,
// the virtual trader (WebSocket session + page loads), order submission, and the feed rate schedule.
//
// A profile file declares its production numbers in an exported `profile` object and calls buildOptions(),
// setupRun(), teardownRun(), traderSession() and submitOrder() from here. Units: durations in seconds at
// TIME_SCALE=1 unless a name ends in _ms; rates per second unless stated.

import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';
import { setInterval, clearInterval, setTimeout, clearTimeout } from 'k6/timers';
// k6 v1.1.0 (the pinned binary) has no `k6/websockets` yet: the same module ships there as
// `k6/experimental/websockets`. Switch the specifier when k6 is upgraded to a release that promotes it.
import { WebSocket } from 'k6/experimental/websockets';

// ---- metrics (declared at import so every profile's thresholds can name them) ----------------------------
// `ws_sessions` is k6's own counter of WebSocket connection attempts (one per trader session): the
// websockets module already emits it, so adding to it here would count each session twice.
export const wsMessages = new Counter('ws_messages');          // quote records received (not snapshots)
export const wsSeqGaps = new Counter('ws_seq_gaps');           // per-symbol seq holes not explained by `skipped`
export const wsRecordsChecked = new Counter('ws_records_checked'); // records whose seq was checked (probe traders)
export const wsFrameGaps = new Counter('ws_frame_gaps');       // quote frames missing by `fseq`
export const wsConnectErrors = new Counter('ws_connect_errors'); // sessions that never opened
export const wsDisconnects = new Counter('ws_disconnects');    // sessions the server/network closed early
// receipt - exchange ts_ns, tag exchange: every record of the probe traders, every record of 1 in
// SAMPLE_FRAMES frames of the others (its count over ws_messages is the share sampled).
export const wsPushLatency = new Trend('ws_push_latency_ms', true);
export const wsSubscribeLatency = new Trend('ws_subscribe_ms', true); // subscribe sent -> subscribed+snapshot
export const orderErrors = new Rate('order_errors');           // share of orders not accepted after the retry
// How late this client's own event loop runs a timer: a frame is handled at least that late, so it is the
// part of ws_push_latency_ms that the client (k6 on a busy machine), not the platform, added.
export const clientDelay = new Trend('client_delay_ms', true);
export const orderRetries = new Counter('order_retries');      // first attempts answered 503/network error

// ---- knobs --------------------------------------------------------------------------------------------------
const SYMBOLS_MIN = 40;   // instruments a trader watches (production: 40-80)
const SYMBOLS_MAX = 80;
const QUOTE_CHUNK = 500;  // symbols per REST quote request in setup (gateway --max-symbols is 1000)
const SESSION_CAP = 6;    // longest session, in multiples of the mean (caps the lognormal tail)
const STOP_MARGIN_MS = 1000; // sessions end this long before the traders scenario does
const DELAY_PROBE_MS = 250; // how often a session measures its event loop's lateness (client_delay_ms)
// A quotes frame starts {"type":"quotes","fseq":N,"n":R,...} (the gateway keeps that order), so a trader that
// only counts reads fseq and n from the first bytes instead of parsing every record.
const QUOTES_HEAD = '{"type":"quotes","fseq":';
const COUNT_KEY = ',"n":';

function wholeNumber(name, fallback, min, max = Number.MAX_SAFE_INTEGER) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ' up'}, got "${raw}"`);
  }
  return value;
}

function positiveNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

function trimSlash(url) {
  return url.replace(/\/+$/, '');
}

/** The run's environment: URLs, SCALE (fraction of production users), TIME_SCALE (wall-time factor). */
export function env() {
  const base = __ENV.BASE_URL ? trimSlash(__ENV.BASE_URL) : '';
  return {
    baseUrl: base,
    // Derived from BASE_URL when absent: HAProxy serves /ws on the same port as the REST routes.
    wsUrl: __ENV.WS_URL || (base ? base.replace(/^http/, 'ws') + '/ws' : ''),
    feedUrl: __ENV.FEED_URL ? trimSlash(__ENV.FEED_URL) : '',
    feedSchedule: (__ENV.FEED_SCHEDULE || 'on').toLowerCase() !== 'off',
    scale: positiveNumber('SCALE', 0.001),
    timeScale: positiveNumber('TIME_SCALE', 1),
    accounts: Math.floor(positiveNumber('ACCOUNTS', 1000)),
    symbols: __ENV.SYMBOLS || '',
    // Calibration (`openbell sandbox calibrate`): hold the profile's peak for CALIBRATE_S wall seconds.
    calibrateS: __ENV.CALIBRATE_S ? positiveNumber('CALIBRATE_S', 30) : null,
    calibrateRampS: positiveNumber('CALIBRATE_RAMP_S', 5),
    // Observation: how many traders check every record, and 1 in how many frames the others parse.
    probeTraders: wholeNumber('PROBE_TRADERS', 10, 1),
    sampleFrames: wholeNumber('SAMPLE_FRAMES', 32, 1),
    // The gateway batch window (subscribe's batch_ms) the traders ask for; 0: none, every fetch's records at once.
    batchMs: wholeNumber('BATCH_MS', 0, 0, 1000),
  };
}

const ENV = env();

// ---- scaling --------------------------------------------------------------------------------------------------
/** Production users (or orders/min) -> this run's target: round(x * SCALE), at least 1 unless x is 0. */
export function scaled(x) {
  return x <= 0 ? 0 : Math.max(1, Math.round(x * ENV.scale));
}

/** Production seconds -> this run's seconds: s * TIME_SCALE, at least 1 s (0 stays 0). */
export function scaledSeconds(s) {
  return s <= 0 ? 0 : Math.max(1, s * ENV.timeScale);
}

function k6Duration(seconds) {
  return `${Math.round(seconds * 1000)}ms`;
}

function parseThresholds() {
  const raw = __ENV.OPENBELL_THRESHOLDS;
  if (!raw) return {};
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new Error(`OPENBELL_THRESHOLDS is not valid JSON: ${e}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error('OPENBELL_THRESHOLDS must be a JSON object {"metric{tag:value}": ["expr", ...]}');
  }
  for (const [metric, exprs] of Object.entries(parsed)) {
    // k6 also accepts a bare string or {threshold, abortOnFail} objects; normalise to a list.
    parsed[metric] = Array.isArray(exprs) ? exprs : [exprs];
  }
  return parsed;
}

// Defaults are the production targets after the rebuild; the runner's SLO-derived thresholds are added to
// a metric's list (both must hold, so the stricter wins); an empty list drops that metric's defaults.
const DEFAULT_THRESHOLDS = {
  'http_req_duration{kind:page}': ['p(95)<320', 'p(99)<580'],
  'http_req_failed{kind:page}': ['rate<0.01'],
  'ws_push_latency_ms': ['p(99)<250'],
  'ws_seq_gaps': ['count==0'],
  'ws_frame_gaps': ['count==0'],
  'ws_messages': ['count>0'],
  'order_errors': ['rate<0.01'],
  'checks': ['rate>0.99'],
};

function mergeThresholds(defaults, extra) {
  const merged = {};
  for (const [metric, exprs] of Object.entries(defaults)) merged[metric] = [...exprs];
  for (const [metric, exprs] of Object.entries(extra)) {
    if (exprs.length === 0) {
      delete merged[metric];
      continue;
    }
    merged[metric] = [...new Set([...(merged[metric] || []), ...exprs])];
  }
  return merged;
}

function checkProfile(profile) {
  const total = profile.production.stages.reduce((sum, st) => sum + st.duration_s, 0);
  if (total !== profile.duration_s) {
    throw new Error(`profile ${profile.name}: duration_s ${profile.duration_s} != sum of stages ${total}`);
  }
}

/**
 * The run's stages in wall seconds with this run's targets: the profile's stages, scaled; or, when calibrating
 * (CALIBRATE_S), its peak held steady: the most traders it ever has and its peak order rate, reached over
 * CALIBRATE_RAMP_S and held for CALIBRATE_S (the feed held at its peak multiplier, see feedSteps).
 */
export function runStages(profile) {
  const prod = profile.production;
  if (ENV.calibrateS !== null) {
    const traders = scaled(Math.max(...prod.stages.map((st) => st.traders)));
    const ordersPerMin = scaled(Math.max(...prod.stages.map((st) => st.orders_per_s)) * 60);
    return [{ seconds: ENV.calibrateRampS, traders, ordersPerMin }, { seconds: ENV.calibrateS, traders, ordersPerMin }];
  }
  return prod.stages.map((st) => ({
    seconds: scaledSeconds(st.duration_s), traders: scaled(st.traders), ordersPerMin: scaled(st.orders_per_s * 60),
  }));
}

/**
 * k6 options for a profile: a ramping-vus `traders` scenario (targets = production traders x SCALE) and a
 * ramping-arrival-rate `orders` scenario (production orders/s x SCALE, per minute so small scales keep
 * resolution), both on the same stage timeline (durations x TIME_SCALE); thresholds = defaults + env.
 */
export function buildOptions(profile) {
  checkProfile(profile);
  const stages = runStages(profile);
  const traderStages = stages.map((st) => ({ duration: k6Duration(st.seconds), target: st.traders }));
  const orderStages = stages.map((st) => ({ duration: k6Duration(st.seconds), target: st.ordersPerMin }));
  const peakPerMinute = Math.max(...orderStages.map((st) => st.target));
  const peakPerSecond = peakPerMinute / 60;
  const scenarios = {
    traders: {
      executor: 'ramping-vus',
      exec: 'trader',
      startVUs: 0,
      stages: traderStages,
      // A seat removed by a ramp-down is not refilled, but its trader stays until the session ends (up to
      // the 6x-mean cap): concurrency decays as sessions end, as it does after the bell. Sessions never
      // outlast the stages (traderSession cuts them), so nothing is left for gracefulStop to interrupt.
      gracefulRampDown: k6Duration(scaledSeconds(profile.production.session_mean_s * SESSION_CAP)),
      gracefulStop: '3s',
    },
  };
  if (peakPerMinute > 0) {
    scenarios.orders = {
      executor: 'ramping-arrival-rate',
      exec: 'orders',
      startRate: 0,
      timeUnit: '1m',
      stages: orderStages,
      // An order takes well under 0.5 s; a 503 retry holds its VU for up to 1 s more.
      preAllocatedVUs: Math.max(2, Math.ceil(peakPerSecond * 0.5)),
      maxVUs: Math.max(10, Math.ceil(peakPerSecond * 2)),
      gracefulStop: '3s',
    };
  }
  return {
    scenarios,
    thresholds: mergeThresholds(DEFAULT_THRESHOLDS, parseThresholds()),
    tags: { profile: profile.name },
    discardResponseBodies: true, // only setup reads bodies (responseType: 'text' there)
    setupTimeout: '120s',
    teardownTimeout: '60s',
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
  };
}

// ---- setup / teardown: universe, reference prices, feed schedule ---------------------------------------------
const CONTROL = { responseType: 'text', tags: { kind: 'control' }, timeout: '10s' };

function zipfFallback(list) {
  // SYMBOLS="AAPL,MSFT:0.5,..." (optional :weight); unweighted names get the feed's 1/i^1.1 by position.
  return list.split(',').map((s) => s.trim()).filter(Boolean).map((item, i) => {
    const [symbol, weight] = item.split(':');
    return { symbol, exchange: 'unknown', weight: weight ? Number(weight) : 1 / Math.pow(i + 1, 1.1) };
  });
}

function loadUniverse() {
  if (ENV.feedUrl) {
    const res = http.get(`${ENV.feedUrl}/v1/symbols`, Object.assign({}, CONTROL, { tags: { kind: 'control', name: 'GET feed /v1/symbols' } }));
    if (res.status === 200) {
      const symbols = JSON.parse(res.body).symbols.filter((s) => s.weight > 0);
      if (symbols.length > 0) return symbols;
    }
    console.warn(`GET ${ENV.feedUrl}/v1/symbols -> ${res.status} ${res.error || ''}; falling back to SYMBOLS`);
  }
  const symbols = zipfFallback(ENV.symbols);
  if (symbols.length === 0) throw new Error('no universe: set FEED_URL (feed /v1/symbols) or SYMBOLS=A,B,...');
  return symbols;
}

function referencePrices(symbols) {
  // Orders are priced near the live quote, as a trader's ticket would be; unknown names fall back to 100.
  const prices = {};
  for (let i = 0; i < symbols.length; i += QUOTE_CHUNK) {
    const names = symbols.slice(i, i + QUOTE_CHUNK).map((s) => s.symbol);
    const res = http.get(`${ENV.baseUrl}/v1/quotes?symbols=${names.map(encodeURIComponent).join(',')}`,
      Object.assign({}, CONTROL, { tags: { kind: 'control', name: 'GET /v1/quotes (setup)' } }));
    if (res.status !== 200) continue;
    for (const q of JSON.parse(res.body).quotes) {
      const price = q.last || q.bid || q.ask;
      if (price > 0) prices[q.symbol] = price;
    }
  }
  return prices;
}

function feedSteps(profile) {
  if (ENV.calibrateS !== null) {
    return [{ at_s: 0, multiplier: Math.max(...profile.production.feed_schedule.map((st) => st.multiplier)) }];
  }
  // at_s scaled like every other duration; steps must stay strictly increasing after rounding.
  const steps = [];
  for (const step of profile.production.feed_schedule) {
    let at = step.at_s <= 0 ? 0 : Math.round(step.at_s * ENV.timeScale * 1000) / 1000;
    if (steps.length > 0 && at <= steps[steps.length - 1].at_s) at = steps[steps.length - 1].at_s + 0.001;
    steps.push({ at_s: Math.round(at * 1000) / 1000, multiplier: step.multiplier });
  }
  return steps;
}

/** setup(): universe, reference prices and, unless FEED_SCHEDULE=off, the feed's rate schedule. */
export function setupRun(profile) {
  if (!ENV.baseUrl) throw new Error('BASE_URL is required (HAProxy, e.g. http://127.0.0.1:8080)');
  const symbols = loadUniverse();
  const feed = { scheduled: false, restoreMultiplier: null, steps: [] };
  if (ENV.feedUrl && ENV.feedSchedule) {
    const before = http.get(`${ENV.feedUrl}/v1/rate`, Object.assign({}, CONTROL, { tags: { kind: 'control', name: 'GET feed /v1/rate' } }));
    if (before.status === 200) feed.restoreMultiplier = JSON.parse(before.body).multiplier;
    feed.steps = feedSteps(profile);
    const res = http.post(`${ENV.feedUrl}/v1/schedule`, JSON.stringify({ steps: feed.steps, ramp: false }),
      Object.assign({}, CONTROL, { headers: { 'Content-Type': 'application/json' }, tags: { kind: 'control', name: 'POST feed /v1/schedule' } }));
    feed.scheduled = res.status === 200;
    if (!feed.scheduled) console.warn(`POST ${ENV.feedUrl}/v1/schedule -> ${res.status} ${res.body || res.error}`);
  }
  return { symbols, prices: referencePrices(symbols), feed };
}

/** teardown(): cancel the feed schedule and put back the multiplier the feed had before the run. */
export function teardownRun(profile, data) {
  if (!data || !data.feed || !data.feed.scheduled) return;
  http.del(`${ENV.feedUrl}/v1/schedule`, null, Object.assign({}, CONTROL, { tags: { kind: 'control', name: 'DELETE feed /v1/schedule' } }));
  // DELETE holds the multiplier reached so far; the run should not leave the feed at its bell rate.
  if (data.feed.restoreMultiplier !== null) {
    http.post(`${ENV.feedUrl}/v1/rate`, JSON.stringify({ multiplier: data.feed.restoreMultiplier }),
      Object.assign({}, CONTROL, { headers: { 'Content-Type': 'application/json' }, tags: { kind: 'control', name: 'POST feed /v1/rate' } }));
  }
}

// ---- random draws ----------------------------------------------------------------------------------------------
function randInt(lo, hi) {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}

/** k distinct symbols drawn by weight without replacement (Efraimidis-Spirakis: top k of log(u)/w). */
export function drawSymbols(universe, k) {
  const keyed = universe.map((s) => ({ s: s.symbol, key: Math.log(1 - Math.random()) / s.weight }));
  keyed.sort((a, b) => b.key - a.key);
  return keyed.slice(0, Math.min(k, keyed.length)).map((e) => e.s);
}

let cumulative = null; // per-VU cache of cumulative weights for single weighted draws (orders)

function drawOne(universe) {
  if (cumulative === null) {
    let sum = 0;
    cumulative = universe.map((s) => (sum += s.weight));
  }
  const x = Math.random() * cumulative[cumulative.length - 1];
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cumulative[mid] < x) lo = mid + 1; else hi = mid;
  }
  return universe[lo].symbol;
}

/** Session length in ms: lognormal with the profile's mean and sigma (production seconds) x TIME_SCALE. */
export function sessionLengthMs(meanS, sigma) {
  const u1 = 1 - Math.random();
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * Math.random());
  const mu = Math.log(meanS) - (sigma * sigma) / 2; // so the mean, not the median, is meanS
  const s = Math.min(Math.exp(mu + sigma * z), meanS * SESSION_CAP); // one seat must not idle all run
  return scaledSeconds(s) * 1000;
}

function uuid() {
  if (typeof crypto !== 'undefined' && crypto.randomUUID) return crypto.randomUUID();
  const hex = () => Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
  const h = hex() + hex() + hex() + hex();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// ---- the trader ------------------------------------------------------------------------------------------------
let backoffMs = 0; // per VU: wait before the next connect after a failure or a server close

function page(name, url, tags) {
  // Async so the WebSocket keeps being read while a page request is in flight (a blocking call would
  // stall frame reads and show up as push latency that the platform did not cause).
  return http.asyncRequest('GET', url, null, { tags: Object.assign({ kind: 'page', name }, tags) })
    .then((res) => { check(res, { [`${name} 200`]: (r) => r.status === 200 }); });
}

/**
 * One trader session (one iteration of the `traders` scenario): connect, subscribe to 40-80 Zipf-drawn
 * symbols, load the page (quote snapshot, top-by-volume dashboard, positions), refresh the dashboard every
 * `dashboard_refresh_s` (wall seconds, not time-scaled: it is a rate), check continuity, leave after a
 * lognormal session length.
 */
export function traderSession(profile, data) {
  if (backoffMs > 0) {
    sleep(backoffMs / 1000);
    backoffMs = 0;
  }
  const prod = profile.production;
  const symbols = drawSymbols(data.symbols, randInt(SYMBOLS_MIN, SYMBOLS_MAX));
  const account = `acct-${randInt(1, ENV.accounts)}`;
  // The trader leaves by the end of the stages at the latest, so k6 never has to interrupt a session.
  const runMs = runStages(profile).reduce((sum, st) => sum + st.seconds * 1000, 0);
  const leftMs = exec.scenario.startTime + runMs - STOP_MARGIN_MS - Date.now();
  const lengthMs = Math.max(0, Math.min(sessionLengthMs(prod.session_mean_s, prod.session_sigma), leftMs));
  if (lengthMs < STOP_MARGIN_MS) {
    // Too late to open a page: idle until the stages are over (k6 then starts no further iteration).
    sleep(Math.max(0.1, (leftMs + STOP_MARGIN_MS) / 1000 + 0.1));
    return;
  }
  // Observation: a probe trader parses every frame (every record's seq checked, every latency sampled);
  // the others read each frame's fseq and record count from its first bytes and parse 1 in sampleFrames
  // frames, picked by fseq before their content is seen, so the latency sample is unbiased. With at most
  // PROBE_TRADERS traders at the peak every trader is a probe (the whole stream checked, as at small scale);
  // above, every stride-th session of the scenario is (so about PROBE_TRADERS of the traders at any time).
  const peak = Math.max(...runStages(profile).map((st) => st.traders));
  const stride = Math.max(1, Math.round(peak / ENV.probeTraders));
  const probe = exec.scenario.iterationInTest % stride === 0;
  const sampleFrames = probe ? 1 : ENV.sampleFrames;
  const samplePhase = randInt(0, sampleFrames - 1);
  const batchMs = ENV.batchMs || 0;
  const last = {}; // symbol -> {session, seq} of the last record seen on this connection (probe traders)
  let fseq = 0;
  let received = 0; // records since the last flush into ws_messages (one sample per flush, not per frame)
  let checked = 0;  // of those, records whose seq was checked
  let opened = false;
  let leaving = false;
  let subscribedAt = 0;
  let tags = {};
  let exchangeTags = {};
  let refresh = null;
  let ending = null;
  let probeTimer = null;

  const ws = new WebSocket(ENV.wsUrl);

  const follow = (rec, skipped) => {
    const prev = last[rec.symbol];
    if (prev !== undefined) {
      let expected;
      if (rec.session > prev.session) expected = 1 + skipped;   // feed restarted: seq counts from 1 again
      else if (rec.session === prev.session) expected = prev.seq + 1 + skipped;
      if (expected !== undefined && rec.seq > expected) wsSeqGaps.add(rec.seq - expected, tags);
    }
    last[rec.symbol] = { session: rec.session, seq: rec.seq };
  };

  const flush = () => {
    if (received > 0) wsMessages.add(received, tags);
    if (checked > 0) wsRecordsChecked.add(checked, tags);
    received = 0;
    checked = 0;
  };

  // Every record of a parsed frame: its push latency (tagged by exchange) and, on a probe, its seq.
  const records = (msg, now) => {
    const skipped = msg.skipped || {};
    for (const rec of msg.quotes) {
      if (probe) follow(rec, skipped[rec.symbol] || 0);
      // Tag objects are cached per exchange: this loop runs for every record parsed.
      let byExchange = exchangeTags[rec.exchange];
      if (byExchange === undefined) byExchange = exchangeTags[rec.exchange] = Object.assign({ exchange: rec.exchange }, tags);
      wsPushLatency.add(now - rec.ts_ns / 1e6, byExchange);
    }
    if (probe) checked += msg.quotes.length;
    return msg.quotes.length;
  };

  ws.onopen = () => {
    opened = true;
    check(true, { 'ws connected': (ok) => ok });
    subscribedAt = Date.now();
    ws.send(JSON.stringify(batchMs > 0 ? { op: 'subscribe', symbols, batch_ms: batchMs } : { op: 'subscribe', symbols }));
    const q = symbols.map(encodeURIComponent).join(',');
    page('GET /v1/quotes', `${ENV.baseUrl}/v1/quotes?symbols=${q}`);
    page('GET /v1/analytics/top', `${ENV.baseUrl}/v1/analytics/top?by=volume&minutes=5`);
    page('GET /v1/positions', `${ENV.baseUrl}/v1/positions?account=${account}`);
    refresh = setInterval(() => {
      page('GET /v1/analytics/top', `${ENV.baseUrl}/v1/analytics/top?by=volume&minutes=5`, { refresh: 'true' });
    }, prod.dashboard_refresh_s * 1000);
    let due = Date.now() + DELAY_PROBE_MS;
    probeTimer = setInterval(() => {
      const now = Date.now();
      clientDelay.add(Math.max(0, now - due), tags);
      due = now + DELAY_PROBE_MS;
      flush();
    }, DELAY_PROBE_MS);
  };

  ws.onmessage = (event) => {
    const data = event.data;
    if (data.startsWith(QUOTES_HEAD)) {
      const now = Date.now();
      const end = data.indexOf(',', QUOTES_HEAD.length);
      const frameSeq = Number(data.substring(QUOTES_HEAD.length, end));
      let n = -1; // unknown: a gateway that does not send n yet, so the frame is parsed
      if (data.startsWith(COUNT_KEY, end)) n = Number(data.substring(end + COUNT_KEY.length, data.indexOf(',', end + COUNT_KEY.length)));
      if (frameSeq !== fseq + 1) wsFrameGaps.add(Math.max(0, frameSeq - fseq - 1), tags);
      fseq = frameSeq;
      if (n < 0 || frameSeq % sampleFrames === samplePhase) n = records(JSON.parse(data), now);
      received += n;
      return;
    }
    const msg = JSON.parse(data);
    if (msg.type === 'hello') {
      tags = { version: msg.version }; // canary traders are told apart by the version that serves them
      exchangeTags = {};
    } else if (msg.type === 'subscribed') {
      wsSubscribeLatency.add(Date.now() - subscribedAt, tags);
      if (probe) for (const rec of msg.snapshot || []) follow(rec, 0); // the snapshot is each symbol's baseline
    } else if (msg.type === 'error') {
      check(msg, { 'ws no protocol error': () => false });
      console.warn(`gateway error: ${msg.error}`);
    }
  };

  ws.onerror = (event) => {
    if (!opened) {
      wsConnectErrors.add(1);
      check(false, { 'ws connected': (ok) => ok });
      backoffMs = 500 + Math.random() * 1000; // jittered, so a refused crowd does not reconnect in lockstep
    }
    if (__ENV.K6_DEBUG_WS) console.warn(`ws error: ${event.error}`);
  };

  ws.onclose = () => {
    flush();
    if (refresh !== null) clearInterval(refresh);
    if (probeTimer !== null) clearInterval(probeTimer);
    if (ending !== null) clearTimeout(ending);
    if (opened && !leaving) {
      // The server (drain, write timeout) or the network ended the session early. Reconnect after the
      // gateway's default drain hint, 1-1.5 s: this k6 build does not expose the close frame's reason.
      wsDisconnects.add(1, tags);
      backoffMs = 1000 + Math.random() * 500;
    }
  };

  ending = setTimeout(() => {
    leaving = true;
    ws.close();
  }, lengthMs);
}

// ---- orders ----------------------------------------------------------------------------------------------------
const ORDER_TAGS = { kind: 'order', name: 'POST /v1/orders' };

/**
 * One order (one iteration of the `orders` scenario): a Zipf-drawn symbol priced within 0.2% of its
 * reference quote, a random account of ACCOUNTS, a fresh idempotency key; on 503 or a network error it is
 * retried once with the SAME key after Retry-After (capped at 1 s, jittered), so it can never fill twice.
 */
export function submitOrder(data) {
  const symbol = drawOne(data.symbols);
  const ref = data.prices[symbol] || 100;
  const body = JSON.stringify({
    account: `acct-${randInt(1, ENV.accounts)}`,
    symbol,
    side: Math.random() < 0.5 ? 'buy' : 'sell',
    qty: randInt(1, 20) * 25,
    price: Math.max(0.01, Math.round(ref * (1 + (Math.random() - 0.5) * 0.004) * 100) / 100),
  });
  const params = { headers: { 'Content-Type': 'application/json', 'Idempotency-Key': uuid() }, tags: ORDER_TAGS, timeout: '10s' };
  let res = http.post(`${ENV.baseUrl}/v1/orders`, body, params);
  if (res.status === 503 || res.status === 0) {
    orderRetries.add(1);
    const after = Math.min(Number(res.headers['Retry-After']) || 1, 1);
    sleep(after * (0.5 + Math.random() / 2));
    res = http.post(`${ENV.baseUrl}/v1/orders`, body, Object.assign({}, params, { tags: Object.assign({ retry: 'true' }, ORDER_TAGS) }));
  }
  const ok = res.status === 201 || res.status === 200; // 200 = an idempotent replay of the same order
  orderErrors.add(!ok, { status: String(res.status) });
  check(res, { 'order accepted': () => ok });
}

/**
 * Everything a profile's script exports to k6, bound to that profile: `options` (scenarios and thresholds),
 * `setup` / `teardown` (universe, feed schedule), and the `trader` and `orders` scenario functions.
 */
export function entryPoints(profile) {
  return {
    options: buildOptions(profile),
    setup: () => setupRun(profile),
    teardown: (data) => teardownRun(profile, data),
    trader: (data) => traderSession(profile, data),
    orders: (data) => submitOrder(data),
  };
}
