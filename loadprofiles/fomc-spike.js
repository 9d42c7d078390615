// profile: fomc-spike
// description: FOMC rate decision: steady afternoon trading at 50k traders, then a 30-second surge to 70k traders with a 12x order and 6x tick burst.
//
// Models 13:45-14:10 ET on an FOMC day. Production numbers (sources and assumptions):
//   - Assumed 50,000 concurrent traders in the afternoon (two thirds of the 75,000 at the NYSE open),
//     each watching 40-80 instruments (~40 messages/s each) [capacity review].
//   - At 14:00:00 the statement: +20,000 traders connect within 10 s and stay for the 30-second surge;
//     orders jump from 400/s to 5,000/s; ticks to the 2.5 million/s peak (feed multiplier 6 over the
//     ~417k ticks/s base), then x3 for two minutes, then x2.
//   - Page load after the rebuild: p95 < 320 ms, p99 < 580 ms (default thresholds on http_req_duration{kind:page}).
//   - Assumed: sessions lognormal, mean 25 min, sigma 0.8; dashboard refresh every 60 s.
// Timeline at TIME_SCALE=1 (duration_s 1530, peak 70,000 trader VUs at SCALE=1):
//   0-120 s ramp to 50,000, 400 orders/s, feed x1.5 | 120-840 s steady | 840-850 s announcement: to 70,000,
//   5,000 orders/s, feed x6 | 850-870 s hold (the 30-second surge ends at 870 s) | 870-990 s back to
//   55,000, 600 orders/s, feed x3 | 990-1470 s steady, feed x2 | 1470-1530 s wind down to 0, feed x1.
// Knobs: SCALE (default 0.001 -> 70 VUs), TIME_SCALE (default 1). Here: SCALE=0.0006 TIME_SCALE=0.05 runs 77 s
// with 42 trader VUs at peak (the surge then lasts 1.5 s). Env and metrics: see README.md.

import { entryPoints } from './lib/trader.js';

export const profile = {
  name: 'fomc-spike',
  description: 'FOMC rate decision: steady afternoon trading at 50k traders, then a 30-second surge to 70k traders with a 12x order and 6x tick burst.',
  models: 'FOMC statement at 14:00 ET: a 30-second surge of connects, orders and ticks on top of steady afternoon trading, then a fading aftermath.',
  sources: [
    'capacity review: 75,000 concurrent traders at the NYSE open, 40-80 instruments each, ~40 messages/s each',
    'market data: 2.5 million ticks/s at peak (reached again in the surge)',
    'rebuild targets: page load p95 < 320 ms, p99 < 580 ms',
    'assumption: afternoon concurrency 50,000, +20,000 within 10 s of the statement',
    'assumption: orders 400/s steady, 5,000/s in the surge, 600/s after',
    'assumption: session length lognormal mean 25 min sigma 0.8; dashboard refresh 60 s',
  ],
  production: {
    peak_traders: 70000,
    symbols_per_trader: [40, 80],
    messages_per_trader_per_s: 40,
    peak_ticks_per_s: 2500000,
    page_load_ms: { p95: 320, p99: 580 },
    session_mean_s: 1500,
    session_sigma: 0.8,
    dashboard_refresh_s: 60,
    stages: [
      { duration_s: 120, traders: 50000, orders_per_s: 400 },
      { duration_s: 720, traders: 50000, orders_per_s: 400 },
      { duration_s: 10, traders: 70000, orders_per_s: 5000 },
      { duration_s: 20, traders: 70000, orders_per_s: 5000 },
      { duration_s: 120, traders: 55000, orders_per_s: 600 },
      { duration_s: 480, traders: 55000, orders_per_s: 600 },
      { duration_s: 60, traders: 0, orders_per_s: 0 },
    ],
    // The statement is at 840 s.
    feed_schedule: [
      { at_s: 0, multiplier: 1.5 },
      { at_s: 840, multiplier: 6 },
      { at_s: 870, multiplier: 3 },
      { at_s: 990, multiplier: 2 },
      { at_s: 1470, multiplier: 1 },
    ],
  },
  defaults: { scale: 0.001, time_scale: 1 },
  duration_s: 1530,
};

// k6 looks for these by name in the main script: options, the two scenarios' functions, setup, teardown.
export const { options, setup, teardown, trader, orders } = entryPoints(profile);
